/*
 * clock.h - a POSIX clock read in milliseconds.
 *
 * Which clock is the caller's choice, and it matters: intervals and
 * deadlines come from CLOCK_MONOTONIC (or CLOCK_BOOTTIME), which no
 * wall-clock step (an NTP correction, `date -s`) moves; dates (records,
 * certificate validity) come from CLOCK_REALTIME.
 */
#ifndef ROOST_COMMON_CLOCK_H
#define ROOST_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on clock id (its own origin), or INT64_MIN if the clock
 * cannot be read (one the kernel does not have). */
static inline int64_t
roost_clock_ms(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return INT64_MIN;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
