/*
 * edge_client.c - an app that embeds libroost with its own data and its
 * own event loop.
 *
 * The "app" here keeps 28x28 grey images and labels in memory (a real app
 * would read them from its storage; this one synthesises two classes of
 * striped images so that it needs no files). It hands them to the library
 * through the in-memory data provider, and drives the client from a poll()
 * loop with roost_client_step, the way an app with its own event loop
 * would. The library does the rest: DP-SGD, the privacy ledger, TLS.
 *
 *   edge_client tcp://HOST:PORT CA.crt DEVICE.crt DEVICE.key LEDGER.db
 */
#include <roost/roost.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#define N_EXAMPLES 600
#define SIDE 28

/* The app's data: class 0 has horizontal stripes, class 1 vertical. */
static void
make_data(float *x, uint8_t *labels)
{
    unsigned state = 12345;
    for (int i = 0; i < N_EXAMPLES; i++) {
        labels[i] = (uint8_t)(i % 2);
        for (int r = 0; r < SIDE; r++)
            for (int c = 0; c < SIDE; c++) {
                int on = labels[i] ? (c / 4) % 2 : (r / 4) % 2;
                state = state * 1103515245u + 12345u; /* pixel jitter */
                float jitter = (float)((state >> 16) & 0xff) / 2550.0f;
                x[(size_t)i * SIDE * SIDE + (size_t)r * SIDE + (size_t)c] =
                    (on ? 0.8f : 0.1f) + jitter;
            }
    }
}

static void
on_progress(void *arg, const roost_client_progress *p)
{
    (void)arg;
    static const char *what[] = {
        "",         "connected", "selected",    "uploaded",
        "accepted", "declined",  "disconnected"};
    printf("edge: %-12s round %lld, epsilon %.3f of %.3f, %llu rounds\n",
           p->event >= 1 && p->event <= 6 ? what[p->event] : "?",
           (long long)p->round_id, p->epsilon_spent, p->epsilon_budget,
           (unsigned long long)p->rounds);
}

static void
on_log(void *arg, int level, const char *message)
{
    (void)arg;
    fprintf(stderr, "edge: roost %s: %s\n", roost_log_level_name(level),
            message);
}

int
main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr,
                "usage: %s tcp://HOST:PORT CA.crt DEVICE.crt "
                "DEVICE.key LEDGER.db\n",
                argv[0]);
        return 2;
    }
    float *x = malloc(sizeof(float) * N_EXAMPLES * SIDE * SIDE);
    uint8_t *labels = malloc(N_EXAMPLES);
    if (x == NULL || labels == NULL)
        return 1;
    make_data(x, labels);

    roost_memory_data storage;
    roost_data_provider data;
    roost_config *cfg = NULL;
    int rc = roost_data_provider_memory(&data, &storage, x, labels, N_EXAMPLES,
                                        1, SIDE, SIDE, 10);
    if (rc == ROOST_OK)
        rc = roost_config_create(&cfg, NULL);
    if (rc == ROOST_OK)
        rc = roost_config_set_server(cfg, argv[1], NULL);
    if (rc == ROOST_OK)
        rc = roost_config_set_tls(cfg, argv[2], argv[3], argv[4]);
    /* A budget of epsilon 4 at delta 1e-5 for the life of this device;
     * create the ledger on first run. */
    if (rc == ROOST_OK)
        rc = roost_config_set_ledger(cfg, argv[5], 4.0, 1e-5, 1);
    if (rc == ROOST_OK)
        rc = roost_config_set_data(cfg, &data);
    if (rc == ROOST_OK)
        rc = roost_config_set_progress(cfg, on_progress, NULL);
    if (rc == ROOST_OK)
        rc = roost_config_set_log(cfg, on_log, NULL, ROOST_LOG_WARN);
    if (rc == ROOST_OK)
        rc = roost_config_set_max_rounds(cfg, 3);
    if (rc != ROOST_OK) {
        fprintf(stderr, "edge: configuration: %s\n", roost_strerror(rc));
        return 1;
    }

    roost_client *client = NULL;
    char err[256];
    rc = roost_client_create(&client, cfg, err, sizeof(err));
    roost_config_destroy(cfg); /* the client keeps its own copy */
    if (rc != ROOST_OK) {
        fprintf(stderr, "edge: %s: %s\n", roost_errname(rc), err);
        return 1;
    }

    /* The app's event loop: wait on the client's descriptor (and, in a
     * real app, on its own), then let the client do a bounded step. */
    int fd = -1;
    roost_client_fd(client, &fd);
    for (;;) {
        int timeout = 0;
        rc = roost_client_step(client, &timeout);
        if (rc != ROOST_OK)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (timeout > 0)
            poll(&pfd, 1, timeout);
    }
    double spent = 0, budget = 0;
    roost_client_epsilon(client, &spent, &budget);
    printf("edge: stopped: %s (%s); epsilon spent %.3f of %.3f\n",
           roost_errname(rc), roost_client_errmsg(client), spent, budget);
    roost_client_destroy(client);
    free(x);
    free(labels);
    return rc == ROOST_ECLOSED ? 0 : 1;
}
