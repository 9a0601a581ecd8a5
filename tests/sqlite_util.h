/*
 * sqlite_util.h - read a test's SQLite file behind the library's back, as
 * any other reader (or an attacker inspecting it) would. Header-only, for
 * the cmocka tests that check what the store or the ledger wrote.
 */
#ifndef ROOST_TESTS_SQLITE_UTIL_H
#define ROOST_TESTS_SQLITE_UTIL_H

#include <sqlite3.h>
#include <stdint.h>

/* sql_int - the first column of the first row of sql (a count, a PRAGMA)
 * on the file at path, opened read-only. */
static int64_t
sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

#endif
