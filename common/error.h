/*
 * error.h - error codes (defined in the public header) and the per-handle
 * error message that carries detail from OpenSSL, ZeroMQ, SQLite or a
 * parser, in the way sqlite3_errmsg() does.
 */
#ifndef ROOST_COMMON_ERROR_H
#define ROOST_COMMON_ERROR_H

#include <roost/roost.h>

#include <stddef.h>

#define ROOST_ERRMSG_CAP 256

/* A message describing the last failure of a handle or an operation. */
typedef struct roost_errmsg {
    char text[ROOST_ERRMSG_CAP];
} roost_errmsg;

#if defined(__GNUC__)
#define ROOST_PRINTF(fmt_idx, arg_idx)                                         \
    __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define ROOST_PRINTF(fmt_idx, arg_idx)
#endif

/*
 * roost_fail - record a formatted message in em (which may be NULL) and
 * return code, so a failing path reads `return roost_fail(em, ROOST_EX,
 * "...")`. The message is truncated to fit; never allocates.
 */
int roost_fail(roost_errmsg *em, int code, const char *fmt, ...)
    ROOST_PRINTF(3, 4);

/* roost_errmsg_clear - set the message to the empty string (em may be NULL). */
void roost_errmsg_clear(roost_errmsg *em);

/* roost_errmsg_text - the message, or "" when em is NULL. */
const char *roost_errmsg_text(const roost_errmsg *em);

#endif
