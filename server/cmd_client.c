/*
 * cmd_client.c - `roost client`: one stand-alone federated client on a
 * shard of Fashion-MNIST, built on the public libroost API exactly as an
 * application would use it (roost_config, roost_client_run), for
 * integration tests and for trying Roost across machines.
 */
#include "server/cli.h"

#include <roost/roost.h>

#include "common/dataset.h"
#include "common/partition.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct client_args {
    const char *connect, *server_name, *ca, *cert, *key;
    const char *ledger;
    double epsilon, delta;
    bool create_ledger;
    const char *data_dir, *partition;
    uint32_t shard, shards;
    uint64_t partition_seed;
    uint64_t rounds;
    const char *label;
    bool seeded;
    uint64_t seed;
    bool allow_eval;
    bool allow_no_dp;
    int log_level;
    long reconnect_min_ms, reconnect_max_ms;
};

static roost_client *running_client;

static void
on_signal(int sig)
{
    (void)sig;
    roost_client_cancel(running_client); /* only sets a flag */
}

static void
usage(FILE *out)
{
    fputs("usage: roost client --connect tcp://HOST:PORT --ca FILE --cert "
          "FILE --key FILE\n"
          "                    --ledger FILE [--create-ledger] --shard K/N "
          "[flags]\n"
          "Run one federated client on shard K of N of Fashion-MNIST's "
          "training set.\n\n"
          "  --connect URL        coordinator endpoint, tcp://HOST:PORT\n"
          "                       (a DNS name, an IPv4 address or an\n"
          "                       IPv6 address in brackets; port 1..65535)\n"
          "  --server-name NAME   name the server certificate must carry\n"
          "                       (default: HOST)\n"
          "  --ca/--cert/--key F  deployment CA, this device's certificate "
          "and key\n"
          "  --ledger FILE        privacy ledger (SQLite)\n"
          "  --create-ledger      create the ledger if missing (first run)\n"
          "  --epsilon E          privacy budget (default 8)\n"
          "  --delta D            budget delta (default 1e-5)\n"
          "  --shard K/N          this client's share of the data (0 <= K < "
          "N)\n"
          "  --partition P        iid | shards[:S] | dirichlet:ALPHA "
          "(default iid)\n"
          "  --partition-seed S   seed of the partition (default 1)\n"
          "  --data DIR           Fashion-MNIST directory\n"
          "  --rounds N           stop after N accepted updates\n"
          "  --reconnect MIN:MAX  reconnect backoff bounds in ms (default "
          "100:30000)\n"
          "  --label TEXT         display label sent at check-in (UTF-8,\n"
          "                       at most 128 bytes)\n"
          "  --allow-eval         answer federated evaluation tasks (loss and\n"
          "                       accuracy on the local data, sent WITHOUT\n"
          "                       differential privacy)\n"
          "  --allow-no-dp        INSECURE: also train for tasks without DP\n"
          "                       (updates not clipped, noised or charged to\n"
          "                       the budget); by default they are declined\n"
          "  --insecure-seed S    INSECURE: fixed seed for all randomness, "
          "DP noise included\n"
          "  --verbose            log protocol events to stderr\n",
          out);
}

static bool
parse(int argc, char **argv, struct client_args *a)
{
    memset(a, 0, sizeof(*a));
    a->epsilon = 8.0;
    a->delta = 1e-5;
    a->partition = "iid";
    a->partition_seed = 1;
    a->log_level = ROOST_LOG_WARN;
    a->reconnect_min_ms = 100;
    a->reconnect_max_ms = 30000;
    bool have_shard = false;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            usage(stdout);
            exit(ROOST_EXIT_OK);
        }
        if (strcmp(f, "--create-ledger") == 0) {
            a->create_ledger = true;
            continue;
        }
        if (strcmp(f, "--verbose") == 0) {
            a->log_level = ROOST_LOG_INFO;
            continue;
        }
        if (strcmp(f, "--allow-eval") == 0) {
            a->allow_eval = true;
            continue;
        }
        if (strcmp(f, "--allow-no-dp") == 0) {
            a->allow_no_dp = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "roost client: %s needs a value (see --help)\n", f);
            return false;
        }
        i++;
        if (strcmp(f, "--connect") == 0)
            a->connect = v;
        else if (strcmp(f, "--server-name") == 0)
            a->server_name = v;
        else if (strcmp(f, "--ca") == 0)
            a->ca = v;
        else if (strcmp(f, "--cert") == 0)
            a->cert = v;
        else if (strcmp(f, "--key") == 0)
            a->key = v;
        else if (strcmp(f, "--ledger") == 0)
            a->ledger = v;
        else if (strcmp(f, "--data") == 0)
            a->data_dir = v;
        else if (strcmp(f, "--partition") == 0)
            a->partition = v;
        else if (strcmp(f, "--label") == 0)
            a->label = v;
        else if (strcmp(f, "--epsilon") == 0) {
            if (!roost_cli_parse_double("client", f, v, &a->epsilon))
                return false;
        } else if (strcmp(f, "--delta") == 0) {
            if (!roost_cli_parse_double("client", f, v, &a->delta))
                return false;
        } else if (strcmp(f, "--rounds") == 0) {
            if (!roost_cli_parse_u64("client", f, v, &a->rounds))
                return false;
        } else if (strcmp(f, "--partition-seed") == 0) {
            if (!roost_cli_parse_u64("client", f, v, &a->partition_seed))
                return false;
        } else if (strcmp(f, "--insecure-seed") == 0) {
            if (!roost_cli_parse_u64("client", f, v, &a->seed))
                return false;
            a->seeded = true;
        } else if (strcmp(f, "--reconnect") == 0) {
            char extra;
            if (sscanf(v, "%ld:%ld%c", &a->reconnect_min_ms,
                       &a->reconnect_max_ms, &extra) != 2 ||
                a->reconnect_min_ms <= 0 ||
                a->reconnect_max_ms < a->reconnect_min_ms ||
                a->reconnect_max_ms > 3600000) {
                fprintf(stderr,
                        "roost client: --reconnect: '%s' is not "
                        "MIN:MAX milliseconds with 0 < MIN <= MAX\n",
                        v);
                return false;
            }
        } else if (strcmp(f, "--shard") == 0) {
            unsigned k, n;
            char extra;
            if (sscanf(v, "%u/%u%c", &k, &n, &extra) != 2 || n == 0 || k >= n) {
                fprintf(stderr,
                        "roost client: --shard: '%s' is not K/N with "
                        "0 <= K < N\n",
                        v);
                return false;
            }
            a->shard = k;
            a->shards = n;
            have_shard = true;
        } else {
            fprintf(stderr, "roost client: unknown flag '%s' (see --help)\n",
                    f);
            return false;
        }
    }
    const char *missing = a->connect == NULL  ? "--connect"
                          : a->ca == NULL     ? "--ca"
                          : a->cert == NULL   ? "--cert"
                          : a->key == NULL    ? "--key"
                          : a->ledger == NULL ? "--ledger"
                          : !have_shard       ? "--shard"
                                              : NULL;
    if (missing != NULL) {
        fprintf(stderr, "roost client: %s is required (see --help)\n", missing);
        return false;
    }
    return true;
}

static void
on_progress(void *arg, const roost_client_progress *p)
{
    const char *label = arg;
    static const char *names[] = {
        "",         "connected", "task",        "uploaded",
        "accepted", "declined",  "disconnected"};
    const char *name = p->event >= 1 && p->event <= 6 ? names[p->event] : "?";
    fprintf(stderr, "roost client %s: %s; epsilon %.4f of %.4f; %llu rounds\n",
            label, name, p->epsilon_spent, p->epsilon_budget,
            (unsigned long long)p->rounds);
}

int
roost_cmd_client(int argc, char **argv)
{
    struct client_args a;
    if (!parse(argc, argv, &a))
        return ROOST_EXIT_USAGE;
    roost_errmsg em;
    roost_dataset *train = NULL;
    roost_partition *part = NULL;
    roost_config *cfg = NULL;
    roost_client *c = NULL;
    float *x = NULL;
    uint8_t *y = NULL;
    int status = ROOST_EXIT_FAIL;
    /* Room for one byte more than the 128 a label may have, so that a
     * longer --label stays too long here (and is refused below) instead of
     * being cut, possibly inside a UTF-8 sequence. */
    char label[130];
    snprintf(label, sizeof(label), "%s", a.label ? a.label : "");
    if (label[0] == '\0')
        snprintf(label, sizeof(label), "%u/%u", a.shard, a.shards);

    int rc = roost_dataset_load_fmnist(&train, NULL, a.data_dir,
                                       ROOST_SPLIT_TRAIN, &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost client: %s\n", em.text);
        goto out;
    }
    roost_partition_spec spec;
    rc = roost_partition_spec_parse(&spec, a.partition, &em);
    if (rc == ROOST_OK)
        rc = roost_partition_create(
            &part, NULL, &spec, roost_dataset_labels(train),
            roost_dataset_count(train), roost_dataset_num_classes(train),
            a.shards, a.partition_seed, &em);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost client: --partition: %s\n", em.text);
        status = ROOST_EXIT_USAGE;
        goto out;
    }
    size_t n = 0;
    const uint32_t *idx = roost_partition_client(part, a.shard, &n);
    size_t dim = roost_dataset_dim(train);
    x = malloc(n * dim * sizeof(float));
    y = malloc(n);
    if (x == NULL || y == NULL ||
        roost_dataset_gather(train, idx, n, x, y) != ROOST_OK) {
        fprintf(stderr, "roost client: cannot copy the shard\n");
        goto out;
    }
    roost_memory_data storage;
    roost_data_provider data;
    if (roost_data_provider_memory(
            &data, &storage, x, y, n, roost_dataset_channels(train),
            roost_dataset_height(train), roost_dataset_width(train),
            roost_dataset_num_classes(train)) != ROOST_OK) {
        fprintf(stderr, "roost client: the shard cannot serve as local data "
                        "(no examples, or a shape the client refuses)\n");
        goto out;
    }
    roost_dataset_destroy(train);
    train = NULL;

    if (roost_config_create(&cfg, NULL) != ROOST_OK)
        goto out;
    rc = roost_config_set_server(cfg, a.connect, NULL);
    if (rc != ROOST_OK) {
        fprintf(stderr,
                "roost client: --connect: '%s' is not tcp://HOST:PORT "
                "(HOST a DNS name, an IPv4 address or [IPv6 address], PORT "
                "1..65535)\n",
                a.connect);
        status = ROOST_EXIT_USAGE;
        goto out;
    }
    if (a.server_name != NULL &&
        roost_config_set_server(cfg, a.connect, a.server_name) != ROOST_OK) {
        fprintf(stderr,
                "roost client: --server-name: '%s' is not a host name (1..253 "
                "printable characters without spaces)\n",
                a.server_name);
        status = ROOST_EXIT_USAGE;
        goto out;
    }
    rc = roost_config_set_ledger(cfg, a.ledger, a.epsilon, a.delta,
                                 a.create_ledger);
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost client: --epsilon must be > 0 and --delta in "
                        "(0, 1)\n");
        status = ROOST_EXIT_USAGE;
        goto out;
    }
    roost_config_set_tls(cfg, a.ca, a.cert, a.key);
    roost_config_set_data(cfg, &data);
    roost_config_set_log(cfg, roost_cli_log_stderr, NULL, a.log_level);
    roost_config_set_progress(cfg, on_progress, label);
    roost_config_set_max_rounds(cfg, a.rounds);
    roost_config_set_allow_evaluation(cfg, a.allow_eval ? 1 : 0);
    roost_config_set_allow_no_dp_insecure(cfg, a.allow_no_dp ? 1 : 0);
    roost_config_set_reconnect(cfg, (int)a.reconnect_min_ms,
                               (int)a.reconnect_max_ms);
    if (roost_config_set_label(cfg, label) != ROOST_OK) {
        fprintf(stderr, "roost client: --label must be UTF-8 text of at most "
                        "128 bytes\n");
        status = ROOST_EXIT_USAGE;
        goto out;
    }
    if (a.seeded)
        roost_config_set_insecure_seed(cfg, a.seed);
    char err[256];
    rc = roost_client_create(&c, cfg, err, sizeof(err));
    if (rc != ROOST_OK) {
        fprintf(stderr, "roost client: %s: %s\n", roost_errname(rc), err);
        goto out;
    }
    running_client = c;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    rc = roost_client_run(c);
    double spent = 0, budget = 0;
    roost_client_epsilon(c, &spent, &budget);
    if (rc == ROOST_ECLOSED || rc == ROOST_ECANCELED) {
        fprintf(stderr, "roost client %s: done (%s); epsilon %.4f of %.4f\n",
                label, roost_client_errmsg(c), spent, budget);
        status = ROOST_EXIT_OK;
    } else {
        fprintf(stderr, "roost client %s: %s: %s\n", label, roost_errname(rc),
                roost_client_errmsg(c));
    }
out:
    running_client = NULL;
    roost_client_destroy(c);
    roost_config_destroy(cfg);
    roost_partition_destroy(part);
    roost_dataset_destroy(train);
    free(x);
    free(y);
    return status;
}
