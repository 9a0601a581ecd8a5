/*
 * main.c - the roost program: dispatch to one command per subcommand.
 *
 * The command table below is the single list of commands. A command whose
 * implementation is not built yet has a NULL entry point: it still answers
 * `--help` (so the interface is visible), but running it exits with status 2
 * and says it is not built.
 */
#include "server/cli.h"

#include <stdio.h>
#include <string.h>

struct roost_command {
    const char *name;
    const char *summary;
    const char *usage; /* full help text for `roost NAME --help` */
    roost_cmd_fn run;  /* NULL: not built in this version */
};

static const struct roost_command commands[] = {
    {"serve", "run the coordinator daemon",
     "usage: roost serve --config FILE [--check-config FILE] [flags]\n"
     "Run the coordinator: select clients, run rounds, record them in "
     "SQLite.\n",
     roost_cmd_serve},
    {"client", "run a stand-alone client process",
     "usage: roost client --connect HOST:PORT --data DIR --shard K/N [flags]\n"
     "Run one federated client on a dataset shard.\n",
     roost_cmd_client},
    {"sim", "simulate many clients in one process",
     "usage: roost sim --clients N --per-round K --rounds R [flags]\n"
     "Run virtual clients against the real coordinator logic.\n",
     roost_cmd_sim},
    {"train", "train a model centrally (to check it before federating)",
     "usage: roost train --model mlp|cnn|logreg|SPEC [flags]\n"
     "Train on Fashion-MNIST and report loss, accuracy and samples/s.\n",
     roost_cmd_train},
    {"dp", "privacy accounting: epsilon for a plan, sigma for a target",
     "usage: roost dp epsilon --q Q --sigma S --steps T --delta D [--json]\n"
     "       roost dp sigma --q Q --steps T --epsilon E --delta D [--json]\n"
     "       roost dp ledger --path FILE [--json]\n",
     roost_cmd_dp},
    {"pki", "certificate authority, server and client certificates",
     "usage: roost pki init|server|request|sign|revoke|crl [flags]\n",
     roost_cmd_pki},
    {"status", "show the coordinator's current state from its database",
     "usage: roost status --db FILE [--json]\n", roost_cmd_status},
    {"report", "write a self-contained HTML report of a run",
     "usage: roost report --db FILE -o report.html\n", roost_cmd_report},
    {"audit", "verify the hash chain over committed rounds",
     "usage: roost audit --db FILE [--anchor ROUND:HEX]\n", roost_cmd_audit},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void
print_help(FILE *out)
{
    fprintf(out,
            "roost %s - federated learning with differential privacy\n\n"
            "usage: roost COMMAND [ARGS]\n"
            "       roost COMMAND --help\n"
            "       roost --version\n\n"
            "commands:\n",
            roost_version_string());
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-8s %s%s\n", commands[i].name, commands[i].summary,
                commands[i].run ? "" : " (not built yet)");
}

static int
is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stderr);
        return ROOST_EXIT_USAGE;
    }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        print_help(stdout);
        return ROOST_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("roost %s\n", roost_version_string());
        return ROOST_EXIT_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const struct roost_command *c = &commands[i];
        if (strcmp(argv[1], c->name) != 0)
            continue;
        if (c->run == NULL) {
            if (argc > 2 && is_help(argv[2])) {
                fputs(c->usage, stdout);
                printf("\n'roost %s' is not built yet in this version.\n",
                       c->name);
                return ROOST_EXIT_OK;
            }
            fprintf(stderr,
                    "roost: '%s' is not built yet in this version (%s)\n",
                    c->name, roost_version_string());
            return ROOST_EXIT_USAGE;
        }
        return c->run(argc - 1, argv + 1);
    }
    fprintf(stderr, "roost: unknown command '%s' (see 'roost --help')\n",
            argv[1]);
    return ROOST_EXIT_USAGE;
}
