/*
 * cli.c - helpers shared by the roost program's commands. The program is
 * the only place in Roost that writes to stderr on its own.
 */
#include "server/cli.h"

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

bool
roost_cli_parse_double(const char *cmd, const char *flag, const char *text,
                       double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(v)) {
        fprintf(stderr, "roost %s: %s: '%s' is not a finite number\n", cmd,
                flag, text);
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
    if (text[0] == '-' || text[0] == '\0') {
        fprintf(stderr, "roost %s: %s: '%s' is not a non-negative integer\n",
                cmd, flag, text);
        return false;
    }
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0' || errno != 0) {
        fprintf(stderr, "roost %s: %s: '%s' is not a non-negative integer\n",
                cmd, flag, text);
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
    long v = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0) {
        fprintf(stderr, "roost %s: %s: '%s' is not an integer\n", cmd, flag,
                text);
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
