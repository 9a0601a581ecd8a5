/*
 * bench_wire.c - cost of moving one full parameter chunk (262144 floats,
 * 1 MiB; the largest the decoder accepts by default) through the wire
 * codec and the chunk receiver, next to baselines measured in the same
 * run:
 *   - memcpy of the 1 MiB into a reused buffer (the floor for any copy),
 *   - memcpy into a freshly malloc'd 1 MiB block (what a decoder that
 *     allocates per message pays; glibc's adaptive mmap threshold usually
 *     hands back the block just freed, so page faults are rare here),
 *   - SHA-256 of the 1 MiB (OpenSSL),
 * and the Roost paths:
 *   - roost_wire_validate (the allocation-free pass alone; for a packed
 *     float chunk it reads only the headers, so its cost does not grow
 *     with the chunk and its "GB/s" is not a throughput),
 *   - roost_wire_decode + roost_wire_free (validate, budgeted protobuf-c
 *     unpack, free),
 *   - roost_wire_encode into a reused buffer,
 *   - roost_xfer_receiver_add of the decoded chunk (copy + SHA-256).
 * Figures are GB/s of payload (1 MiB per operation) per second of this
 * thread's CPU time, median of several runs, with the ratio to the
 * reused-buffer memcpy. 1 MiB fits in a Zen 4 core's L2, so the memcpy
 * baseline is a cache-to-cache copy. Not a pass/fail test.
 *
 * Usage: bench_wire [runs (default 7)]
 */
#include "common/wire.h"
#include "common/xfer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK_FLOATS ROOST_WIRE_DEFAULT_MAX_CHUNK_FLOATS
#define REPS 64

static double
cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_state {
    float *values;
    float *dst;
    uint8_t *frame;
    size_t frame_len;
    uint8_t *out;
    size_t out_cap;
    uint8_t hash[ROOST_XFER_HASH_BYTES];
    Roost__V1__Envelope env;
    Roost__V1__ParamChunk chunk;
    volatile unsigned sink;
} bench_state;

enum {
    OP_MEMCPY,
    OP_MEMCPY_FRESH,
    OP_SHA256,
    OP_VALIDATE,
    OP_DECODE,
    OP_ENCODE,
    OP_RECEIVE,
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "memcpy, reused buffer (baseline)",
    "memcpy into fresh malloc",
    "SHA-256 (OpenSSL)",
    "roost_wire_validate",
    "roost_wire_decode + free",
    "roost_wire_encode",
    "roost_xfer_receiver_add",
};

/* One operation on one full chunk; returns nonzero on failure. */
static int
run_op(bench_state *s, int op)
{
    switch (op) {
    case OP_MEMCPY:
        memcpy(s->dst, s->values, CHUNK_FLOATS * sizeof(float));
        s->sink += (unsigned)s->dst[CHUNK_FLOATS / 2];
        return 0;
    case OP_MEMCPY_FRESH: {
        float *p = malloc(CHUNK_FLOATS * sizeof(float));
        if (p == NULL)
            return 1;
        memcpy(p, s->values, CHUNK_FLOATS * sizeof(float));
        s->sink += (unsigned)p[CHUNK_FLOATS / 2];
        free(p);
        return 0;
    }
    case OP_SHA256:
        return roost_xfer_hash_floats(s->values, CHUNK_FLOATS, s->hash);
    case OP_VALIDATE:
        return roost_wire_validate(s->frame, s->frame_len, NULL, NULL);
    case OP_DECODE: {
        Roost__V1__Envelope *e = NULL;
        int rc =
            roost_wire_decode(NULL, s->frame, s->frame_len, NULL, &e, NULL);
        if (rc == ROOST_OK)
            s->sink += (unsigned)e->param_chunk->n_values;
        roost_wire_free(NULL, e);
        return rc;
    }
    case OP_ENCODE: {
        size_t len;
        return roost_wire_encode(&s->env, s->out, s->out_cap, &len);
    }
    default: {
        roost_xfer_expect ex = {0};
        ex.num_params = CHUNK_FLOATS;
        ex.chunk_count = 1;
        memcpy(ex.sha256, s->hash, sizeof(ex.sha256));
        roost_xfer_receiver *r = NULL;
        bool done = false;
        int rc = roost_xfer_receiver_create(&r, NULL, &ex, s->dst, CHUNK_FLOATS,
                                            NULL);
        if (rc == ROOST_OK)
            rc = roost_xfer_receiver_add(r, &s->chunk, &done, NULL);
        roost_xfer_receiver_destroy(r);
        return rc != ROOST_OK || !done;
    }
    }
}

int
main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    if (runs < 1 || runs > 100) {
        fprintf(stderr, "usage: %s [runs 1..100]\n", argv[0]);
        return 2;
    }
    static bench_state s;
    s.values = malloc(CHUNK_FLOATS * sizeof(float));
    s.dst = malloc(CHUNK_FLOATS * sizeof(float));
    if (s.values == NULL || s.dst == NULL)
        return 1;
    for (size_t i = 0; i < CHUNK_FLOATS; i++)
        s.values[i] = (float)i * 1e-6f - 0.1f;
    memset(s.dst, 0, CHUNK_FLOATS * sizeof(float));
    roost__v1__param_chunk__init(&s.chunk);
    s.chunk.n_values = CHUNK_FLOATS;
    s.chunk.values = s.values;
    s.chunk.index = 0;
    roost__v1__envelope__init(&s.env);
    s.env.body_case = ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK;
    s.env.param_chunk = &s.chunk;
    if (roost_wire_encoded_size(&s.env, &s.frame_len) != ROOST_OK)
        return 1;
    s.frame = malloc(s.frame_len);
    s.out_cap = s.frame_len;
    s.out = malloc(s.out_cap);
    if (s.frame == NULL || s.out == NULL ||
        roost_wire_encode(&s.env, s.frame, s.frame_len, &s.frame_len) !=
            ROOST_OK ||
        roost_xfer_hash_floats(s.values, CHUNK_FLOATS, s.hash) != ROOST_OK)
        return 1;
    memset(s.out, 0, s.out_cap);

    printf("bench_wire: one ParamChunk of %u floats (%zu-byte frame), "
           "%d ops x %d runs, median, GB/s of payload per CPU second\n",
           (unsigned)CHUNK_FLOATS, s.frame_len, REPS, runs);
    double gbps[OP_COUNT];
    for (int op = 0; op < OP_COUNT; op++) {
        double rates[100];
        for (int r = 0; r < runs; r++) {
            if (run_op(&s, op) != 0) { /* warm-up and correctness */
                fprintf(stderr, "%s failed\n", op_names[op]);
                return 1;
            }
            double t0 = cpu_s();
            for (int k = 0; k < REPS; k++)
                if (run_op(&s, op) != 0)
                    return 1;
            double dt = cpu_s() - t0;
            rates[r] =
                (double)REPS * (double)(CHUNK_FLOATS * sizeof(float)) / dt;
        }
        qsort(rates, (size_t)runs, sizeof(double), cmp_double);
        gbps[op] = rates[runs / 2] * 1e-9;
    }
    for (int op = 0; op < OP_COUNT; op++)
        printf("  %-34s %7.2f GB/s  %6.1f us/chunk  ratio to memcpy %.2f\n",
               op_names[op], gbps[op],
               (double)(CHUNK_FLOATS * sizeof(float)) / (gbps[op] * 1e3),
               gbps[op] / gbps[OP_MEMCPY]);
    free(s.values);
    free(s.dst);
    free(s.frame);
    free(s.out);
    return 0;
}
