/*
 * log.h - logging through a caller-supplied callback. The library never
 * writes to stderr itself; a handle without a callback is silent.
 */
#ifndef ROOST_COMMON_LOG_H
#define ROOST_COMMON_LOG_H

#include "common/error.h"

typedef struct roost_logger {
    roost_log_fn fn; /* NULL: discard */
    void *arg;
    int max_level; /* messages above this level are dropped */
} roost_logger;

/* roost_log - format and deliver a message (lg may be NULL). Formats into a
 * stack buffer; never allocates. Long messages are truncated. */
void roost_log(const roost_logger *lg, int level, const char *fmt, ...)
    ROOST_PRINTF(3, 4);

#endif
