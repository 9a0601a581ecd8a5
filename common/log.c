/*
 * log.c - message formatting for the logging callback. Reentrant: the
 * message is formatted on the caller's stack.
 */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>

#define ROOST_LOG_LINE_CAP 1024

void
roost_log(const roost_logger *lg, int level, const char *fmt, ...)
{
    if (lg == NULL || lg->fn == NULL || level > lg->max_level)
        return;
    char line[ROOST_LOG_LINE_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    lg->fn(lg->arg, level, line);
}

const char *
roost_log_level_name(int level)
{
    switch (level) {
    case ROOST_LOG_ERROR:
        return "error";
    case ROOST_LOG_WARN:
        return "warn";
    case ROOST_LOG_INFO:
        return "info";
    case ROOST_LOG_DEBUG:
        return "debug";
    default:
        return "?";
    }
}
