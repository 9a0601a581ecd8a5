/*
 * error.c - the tables generated from the ROOST_ERRORS X-macro, and the
 * per-operation error message helpers. Everything here is reentrant: the
 * tables are constant and messages live in caller-owned structs.
 */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>

const char *
roost_strerror(int code)
{
    switch (code) {
#define ROOST_ERR_TEXT_(name, num, msg)                                        \
    case num:                                                                  \
        return msg;
        ROOST_ERRORS(ROOST_ERR_TEXT_)
#undef ROOST_ERR_TEXT_
    default:
        return "unknown error";
    }
}

const char *
roost_errname(int code)
{
    switch (code) {
#define ROOST_ERR_NAME_(name, num, msg)                                        \
    case num:                                                                  \
        return "ROOST_" #name;
        ROOST_ERRORS(ROOST_ERR_NAME_)
#undef ROOST_ERR_NAME_
    default:
        return "ROOST_UNKNOWN";
    }
}

int
roost_fail(roost_errmsg *em, int code, const char *fmt, ...)
{
    if (em != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(em->text, sizeof(em->text), fmt, ap);
        va_end(ap);
    }
    return code;
}

void
roost_errmsg_clear(roost_errmsg *em)
{
    if (em != NULL)
        em->text[0] = '\0';
}

const char *
roost_errmsg_text(const roost_errmsg *em)
{
    return em != NULL ? em->text : "";
}
