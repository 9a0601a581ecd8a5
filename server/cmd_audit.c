/*
 * cmd_audit.c - `roost audit --db FILE [--anchor ROUND:HEX]`: verify the
 * hash chain over the committed rounds of a coordinator database.
 *
 * Exit 0 when every round's record hash matches its rows and links to the
 * round before, every kept checkpoint matches its model hash, and (with
 * --anchor) the given round's record hash equals the one recorded
 * elsewhere. Exit 1 naming the first round at fault otherwise, or when the
 * file cannot be read; exit 2 on bad arguments. The file is opened
 * read-only and never modified. What the chain can and cannot prove is in
 * docs/store.md.
 */
#include "server/cli.h"
#include "server/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char audit_usage[] =
    "usage: roost audit --db FILE [--anchor ROUND:HEX]\n"
    "\n"
    "Verify the hash chain over the committed rounds of a coordinator\n"
    "database: each round's record hash must match its rows (round,\n"
    "participants, updates, metrics, run) and link to the round before;\n"
    "kept checkpoints must match their model hash. The file is opened\n"
    "read-only.\n"
    "\n"
    "  --db FILE           the coordinator's SQLite file\n"
    "  --anchor ROUND:HEX  also require round ROUND's record hash to be HEX\n"
    "                      (64 hex digits), e.g. a head hash published or\n"
    "                      kept off the machine; this detects a history\n"
    "                      truncated or rewritten as a whole\n"
    "\n"
    "Exit status: 0 intact, 1 tampered or unreadable, 2 bad arguments.\n";

static bool
parse_hex32(const char *text, uint8_t out[ROOST_STORE_HASH_LEN])
{
    if (strlen(text) != 2 * ROOST_STORE_HASH_LEN)
        return false;
    for (size_t i = 0; i < ROOST_STORE_HASH_LEN; i++) {
        unsigned v = 0;
        for (size_t k = 0; k < 2; k++) {
            char c = text[2 * i + k];
            unsigned d;
            if (c >= '0' && c <= '9')
                d = (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                d = (unsigned)(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                d = (unsigned)(c - 'A' + 10);
            else
                return false;
            v = v * 16 + d;
        }
        out[i] = (uint8_t)v;
    }
    return true;
}

/* ROUND:HEX */
static bool
parse_anchor(const char *text, int64_t *round, uint8_t hash[32])
{
    const char *colon = strchr(text, ':');
    if (colon == NULL || colon == text || (size_t)(colon - text) > 19)
        return false;
    char num[20];
    memcpy(num, text, (size_t)(colon - text));
    num[colon - text] = '\0';
    uint64_t r = 0;
    if (!roost_cli_parse_u64("audit", "--anchor", num, &r) || r == 0 ||
        r > INT64_MAX)
        return false;
    *round = (int64_t)r;
    return parse_hex32(colon + 1, hash);
}

int
roost_cmd_audit(int argc, char **argv)
{
    const char *db = NULL;
    bool have_anchor = false;
    int64_t anchor_round = 0;
    uint8_t anchor[ROOST_STORE_HASH_LEN];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(audit_usage, stdout);
            return ROOST_EXIT_OK;
        }
        if ((strcmp(argv[i], "--db") == 0 ||
             strcmp(argv[i], "--anchor") == 0) &&
            i + 1 >= argc) {
            fprintf(stderr, "roost audit: %s needs a value\n", argv[i]);
            return ROOST_EXIT_USAGE;
        }
        if (strcmp(argv[i], "--db") == 0) {
            db = argv[++i];
        } else if (strcmp(argv[i], "--anchor") == 0) {
            if (!parse_anchor(argv[++i], &anchor_round, anchor)) {
                fprintf(stderr,
                        "roost audit: --anchor: '%s' is not ROUND:HEX "
                        "(round >= 1, 64 hex digits)\n",
                        argv[i]);
                return ROOST_EXIT_USAGE;
            }
            have_anchor = true;
        } else {
            fprintf(stderr,
                    "roost audit: unknown flag '%s' (see 'roost audit "
                    "--help')\n",
                    argv[i]);
            return ROOST_EXIT_USAGE;
        }
    }
    if (db == NULL) {
        fprintf(stderr, "roost audit: --db FILE is required\n");
        return ROOST_EXIT_USAGE;
    }

    roost_store *s = NULL;
    roost_errmsg em;
    int err = roost_store_open(&s, db, ROOST_STORE_READONLY, &em);
    if (err != ROOST_OK) {
        fprintf(stderr, "roost audit: %s\n", em.text);
        return ROOST_EXIT_FAIL;
    }
    int64_t bad = 0, n_rounds = 0;
    uint8_t head[ROOST_STORE_HASH_LEN];
    char hex[65];
    /* The anchor is checked in the snapshot the chain was verified in: a
     * round committed in between was not verified. */
    err = roost_store_read_begin(s, &em);
    if (err == ROOST_OK)
        err = roost_store_verify_chain(s, &bad, &n_rounds, head, &em);
    int status = ROOST_EXIT_OK;
    if (err == ROOST_EHASH) {
        printf("roost audit: %s: TAMPERED: first bad round %" PRId64 ": %s\n",
               db, bad, em.text);
        status = ROOST_EXIT_FAIL;
    } else if (err != ROOST_OK) {
        fprintf(stderr, "roost audit: %s: cannot verify: %s\n", db, em.text);
        status = ROOST_EXIT_FAIL;
    } else if (have_anchor) {
        uint8_t got[ROOST_STORE_HASH_LEN];
        err = roost_store_record_hash(s, anchor_round, got, &em);
        if (err == ROOST_ENOENT) {
            printf("roost audit: %s: TAMPERED: anchored round %" PRId64
                   " is missing (history truncated; the chain has %" PRId64
                   " rounds)\n",
                   db, anchor_round, n_rounds);
            status = ROOST_EXIT_FAIL;
        } else if (err != ROOST_OK) {
            fprintf(stderr, "roost audit: %s: %s\n", db, em.text);
            status = ROOST_EXIT_FAIL;
        } else if (memcmp(got, anchor, ROOST_STORE_HASH_LEN) != 0) {
            roost_store_hex(got, hex);
            printf("roost audit: %s: TAMPERED: round %" PRId64
                   ": record hash %s differs from the anchor (history "
                   "rewritten)\n",
                   db, anchor_round, hex);
            status = ROOST_EXIT_FAIL;
        }
    }
    roost_store_read_end(s);
    if (status == ROOST_EXIT_OK) {
        roost_store_hex(head, hex);
        printf("roost audit: %s: chain intact: %" PRId64 " rounds", db,
               n_rounds);
        if (n_rounds > 0)
            printf(", head record hash %s", hex);
        if (have_anchor)
            printf(", anchor at round %" PRId64 " matches", anchor_round);
        printf("\n");
    }
    roost_store_close(s);
    return status;
}
