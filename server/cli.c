/*
 * cli.c - helpers shared by the roost program's commands. The program is
 * the only place in Roost that writes to stderr on its own.
 */
#include "server/cli.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void
roost_cli_log_stderr(void *arg, int level, const char *message)
{
    (void)arg;
    fprintf(stderr, "roost: %s: %s\n", roost_log_level_name(level), message);
}

/* Whether text starts like a number: the strto* functions skip leading
 * white space (and strtoull accepts and negates a '-'), so a value such as
 * " -1" would otherwise parse; a command-line value has none. */
static bool
starts_clean(const char *text)
{
    return text[0] != '\0' && !isspace((unsigned char)text[0]);
}

bool
roost_cli_parse_double(const char *cmd, const char *flag, const char *text,
                       double *out)
{
    char *end = NULL;
    errno = 0;
    double v = starts_clean(text) ? strtod(text, &end) : 0.0;
    if (!starts_clean(text) || *end != '\0' || !isfinite(v) ||
        (errno != 0 && errno != ERANGE)) {
        fprintf(stderr, "roost %s: %s: '%s' is not a finite number\n", cmd,
                flag, text);
        return false;
    }
    if (errno == ERANGE) {
        /* Overflow gives HUGE_VAL (refused above as not finite);
         * underflow gives a value too small to represent exactly. */
        fprintf(stderr, "roost %s: %s: '%s' is out of range\n", cmd, flag,
                text);
        return false;
    }
    *out = v;
    return true;
}

bool
roost_cli_parse_u64(const char *cmd, const char *flag, const char *text,
                    uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    /* Digits only: no sign (strtoull would turn "-1" into 2^64 - 1) and no
     * leading white space (which strtoull skips, sign and all). */
    if (text[0] < '0' || text[0] > '9') {
        fprintf(stderr, "roost %s: %s: '%s' is not a non-negative integer\n",
                cmd, flag, text);
        return false;
    }
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "roost %s: %s: '%s' is not a non-negative integer\n",
                cmd, flag, text);
        return false;
    }
    if (errno != 0) {
        fprintf(stderr,
                "roost %s: %s: '%s' is too large (at most %" PRIu64 ")\n", cmd,
                flag, text, UINT64_MAX);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

bool
roost_cli_parse_int(const char *cmd, const char *flag, const char *text,
                    long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = starts_clean(text) ? strtol(text, &end, 10) : 0;
    if (!starts_clean(text) || *end != '\0') {
        fprintf(stderr, "roost %s: %s: '%s' is not an integer\n", cmd, flag,
                text);
        return false;
    }
    if (errno != 0) {
        fprintf(stderr, "roost %s: %s: '%s' is outside [%ld, %ld]\n", cmd, flag,
                text, min, max);
        return false;
    }
    if (v < min || v > max) {
        fprintf(stderr, "roost %s: %s: %ld is outside [%ld, %ld]\n", cmd, flag,
                v, min, max);
        return false;
    }
    *out = v;
    return true;
}

void
roost_cli_number(char *out, size_t cap, double v)
{
    if (isfinite(v))
        snprintf(out, cap, "%.4g", v);
    else
        snprintf(out, cap, "-");
}

const char *
roost_cli_json_number(char *out, size_t cap, double v, int decimals)
{
    if (isfinite(v))
        snprintf(out, cap, "%.*f", decimals, v);
    else
        snprintf(out, cap, "null");
    return out;
}
