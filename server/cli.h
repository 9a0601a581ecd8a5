/*
 * cli.h - what the roost program's commands share: the command table entry
 * point signature, a stderr logger, and small argument parsing helpers that
 * refuse bad numbers with a message naming the flag.
 */
#ifndef ROOST_SERVER_CLI_H
#define ROOST_SERVER_CLI_H

#include <roost/roost.h>

#include <stdbool.h>
#include <stdint.h>

/* Exit statuses of the program. */
enum {
    ROOST_EXIT_OK = 0,
    ROOST_EXIT_FAIL = 1,  /* the command ran and failed */
    ROOST_EXIT_USAGE = 2, /* bad arguments, or a command not built */
};

/* A command's entry point: argv[0] is the command name. Returns an exit
 * status. */
typedef int (*roost_cmd_fn)(int argc, char **argv);

/* Command entry points (one per command source file). */
int roost_cmd_dp(int argc, char **argv);    /* cmd_dp.c */
int roost_cmd_pki(int argc, char **argv);   /* cmd_pki.c */
int roost_cmd_serve(int argc, char **argv); /* cmd_serve.c */
int roost_cmd_train(int argc, char **argv); /* cmd_train.c */

/* Commands over the coordinator's database (server/store.c). */
int roost_cmd_audit(int argc, char **argv);  /* cmd_audit.c */
int roost_cmd_report(int argc, char **argv); /* cmd_report.c */
int roost_cmd_status(int argc, char **argv); /* cmd_status.c */
int roost_cmd_sim(int argc, char **argv);    /* cmd_sim.c */
int roost_cmd_client(int argc, char **argv); /* cmd_client.c */

/* The program's logger: writes "roost: level: message" lines to stderr.
 * arg is unused. */
void roost_cli_log_stderr(void *arg, int level, const char *message);

/* v as "%.4g" into out (cap bytes), or "-" when it is NaN or infinite
 * (a figure that was not measured). */
void roost_cli_number(char *out, size_t cap, double v);

/* v as a JSON number with `decimals` digits after the point, or null when
 * it is NaN or infinite (which printf writes as "nan"/"inf", no JSON
 * parser reads, and which means "not measured"). %f of a large finite
 * double takes over 300 characters: out needs ROOST_CLI_JSON_NUMBER_CAP
 * bytes, since a cut number would be another, wrong one. Returns out. */
#define ROOST_CLI_JSON_NUMBER_CAP 400
const char *roost_cli_json_number(char *out, size_t cap, double v,
                                  int decimals);

/* Parse helpers: on failure they print "roost CMD: FLAG: reason" to stderr
 * and return false. None accepts leading white space; parse_u64 accepts
 * digits only (no sign); parse_double refuses NaN, infinities and values
 * out of double's range (overflow and underflow, "out of range"). */
bool roost_cli_parse_double(const char *cmd, const char *flag, const char *text,
                            double *out);
bool roost_cli_parse_u64(const char *cmd, const char *flag, const char *text,
                         uint64_t *out);
bool roost_cli_parse_int(const char *cmd, const char *flag, const char *text,
                         long min, long max, long *out);

#endif
