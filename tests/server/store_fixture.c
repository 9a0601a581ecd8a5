/*
 * store_fixture.c - a helper for tests/server/test_audit.sh: builds a
 * coordinator database of synthetic rounds, and applies raw SQL to it the
 * way an attacker with the sqlite3 shell would (foreign keys off), so the
 * shell test needs no sqlite3 program.
 *
 *   store_fixture create DB ROUNDS [CLIENTS [PARAMS]]
 *   store_fixture sql DB "SQL"
 *   store_fixture head DB          prints "ROUND:HEX" of the last round
 */
#include "server/store.h"
#include "server/store_fixture.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
create(const char *path, long rounds, long clients, long params)
{
    roost_store *s = NULL;
    roost_errmsg em;
    if (roost_store_open(&s, path, ROOST_STORE_CREATE, &em) != ROOST_OK) {
        fprintf(stderr, "store_fixture: %s\n", em.text);
        return 1;
    }
    int64_t run = fixture_add_run(s, (size_t)params);
    int rc =
        run > 0 && fixture_commit_rounds(s, run, 1, rounds, (size_t)clients,
                                         (size_t)params) == 0
            ? 0
            : 1;
    if (rc == 0 &&
        roost_store_note_open_round(s, rounds + 1, 0, clients, &em) != ROOST_OK)
        rc = 1;
    roost_store_close(s);
    return rc;
}

static int
raw_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "store_fixture: %s: %s\n", sql,
                msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        sqlite3_close(db);
        return 1;
    }
    sqlite3_close(db);
    return 0;
}

static int
head(const char *path)
{
    roost_store *s = NULL;
    roost_errmsg em;
    roost_store_head h;
    if (roost_store_open(&s, path, ROOST_STORE_READONLY, &em) != ROOST_OK ||
        roost_store_last_committed_round(s, &h, &em) != ROOST_OK) {
        fprintf(stderr, "store_fixture: %s\n", em.text);
        roost_store_close(s);
        return 1;
    }
    char hex[65];
    roost_store_hex(h.record_hash, hex);
    printf("%lld:%s\n", (long long)h.round_id, hex);
    roost_store_close(s);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "create") == 0) {
        long rounds = atol(argv[3]);
        long clients = argc > 4 ? atol(argv[4]) : 10;
        long params = argc > 5 ? atol(argv[5]) : 1000;
        if (rounds < 0 || clients < 0 || params < 1)
            return 2;
        return create(argv[2], rounds, clients, params);
    }
    if (argc == 4 && strcmp(argv[1], "sql") == 0)
        return raw_sql(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "head") == 0)
        return head(argv[2]);
    fprintf(stderr, "usage: store_fixture create DB ROUNDS [CLIENTS [PARAMS]]"
                    "\n       store_fixture sql DB SQL\n"
                    "       store_fixture head DB\n");
    return 2;
}
