/*
 * test_wire.c - the wire codec: every message type round-trips with every
 * field set; every class of malformed input is rejected with its
 * documented code and a message naming the field, before anything is
 * allocated; the allocation budget and allocator failures are honoured
 * without leaks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"
#include "common/alloc.h"
#include "tests/common/wire_samples.h"

/* ---- a growable byte buffer to hand-craft protobuf encodings ---------- */

typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
} bbuf;

static void
bb_put(bbuf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void
bb_varint(bbuf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            tmp[n] |= 0x80;
        n++;
    } while (v != 0);
    bb_put(b, tmp, n);
}

static void
bb_tag(bbuf *b, uint32_t field, unsigned wt)
{
    bb_varint(b, ((uint64_t)field << 3) | wt);
}

/* field as a length-delimited value holding data[0..n). */
static void
bb_len(bbuf *b, uint32_t field, const void *data, size_t n)
{
    bb_tag(b, field, 2);
    bb_varint(b, n);
    bb_put(b, data, n);
}

static void
bb_free(bbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Wrap a body (already encoded) into an Envelope with oneof member `field`
 * and return the frame in *out. */
static void
envelope_of(bbuf *out, uint32_t field, const bbuf *body)
{
    bb_len(out, field, body->p, body->n);
}

/* ---- a counting allocator --------------------------------------------- */

typedef struct counting {
    size_t live;        /* blocks currently allocated */
    size_t allocations; /* successful allocations so far */
    long fail_after;    /* fail once this many succeeded; -1 = never */
} counting;

static void *
counting_malloc(void *arg, size_t size)
{
    counting *c = arg;
    if (c->fail_after >= 0 && c->allocations >= (size_t)c->fail_after)
        return NULL;
    void *p = malloc(size);
    if (p != NULL) {
        c->live++;
        c->allocations++;
    }
    return p;
}

static void *
counting_realloc(void *arg, void *ptr, size_t size)
{
    (void)arg;
    (void)ptr;
    (void)size;
    fail(); /* the codec never reallocates */
    return NULL;
}

static void
counting_free(void *arg, void *ptr)
{
    counting *c = arg;
    if (ptr != NULL) {
        assert_true(c->live > 0);
        c->live--;
        free(ptr);
    }
}

static roost_allocator
counting_allocator(counting *c)
{
    c->live = 0;
    c->allocations = 0;
    c->fail_after = -1;
    roost_allocator a = {counting_malloc, counting_realloc, counting_free, c};
    return a;
}

/* decode expecting failure code `want`; also checks that nothing was
 * allocated and *out stays NULL. Returns the message. */
static const char *
expect_reject(const uint8_t *p, size_t n, const roost_wire_limits *lim,
              int want)
{
    static roost_errmsg em;
    counting c;
    roost_allocator a = counting_allocator(&c);
    Roost__V1__Envelope *env = (Roost__V1__Envelope *)&c; /* poison */
    int rc = roost_wire_decode(&a, p, n, lim, &env, &em);
    if (rc != want)
        print_error("got %s (%s), want %s\n", roost_errname(rc), em.text,
                    roost_errname(want));
    assert_int_equal(rc, want);
    assert_null(env);
    assert_int_equal(c.allocations, 0);
    assert_true(strlen(em.text) > 0);
    return em.text;
}

/* ---- round trips -------------------------------------------------------- */

static void
roundtrip_every_message_type(void **state)
{
    (void)state;
    static wire_samples s;
    wire_samples_fill(&s);
    for (int i = 0; i < WIRE_SAMPLE_COUNT; i++) {
        size_t need = 0, len = 0, len2 = 0;
        uint8_t buf[4096], buf2[4096];
        /* Size query and too-small buffers write nothing. */
        assert_int_equal(roost_wire_encode(&s.env[i], NULL, 0, &need),
                         ROOST_ETOOSMALL);
        size_t q;
        assert_int_equal(roost_wire_encoded_size(&s.env[i], &q), ROOST_OK);
        assert_int_equal(q, need);
        memset(buf, 0xee, sizeof(buf));
        assert_int_equal(roost_wire_encode(&s.env[i], buf, need - 1, &len),
                         ROOST_ETOOSMALL);
        assert_int_equal(len, need);
        assert_int_equal(buf[0], 0xee);
        assert_int_equal(roost_wire_encode(&s.env[i], buf, need, &len),
                         ROOST_OK);
        assert_int_equal(len, need);

        counting c;
        roost_allocator a = counting_allocator(&c);
        Roost__V1__Envelope *env = NULL;
        roost_errmsg em;
        int rc = roost_wire_decode(&a, buf, len, NULL, &env, &em);
        if (rc != ROOST_OK)
            print_error("sample %d: %s\n", i, em.text);
        assert_int_equal(rc, ROOST_OK);
        assert_int_equal(env->body_case, s.env[i].body_case);
        assert_true(c.live > 0);
        /* Every field is non-default, so any field lost or altered in
         * decoding would change the re-encoded bytes. */
        assert_int_equal(roost_wire_encode(env, buf2, sizeof(buf2), &len2),
                         ROOST_OK);
        assert_int_equal(len2, len);
        assert_memory_equal(buf, buf2, len);
        roost_wire_free(&a, env);
        assert_int_equal(c.live, 0);
    }
}

static void
roundtrip_field_values(void **state)
{
    (void)state;
    static wire_samples s;
    wire_samples_fill(&s);
    uint8_t buf[4096];
    size_t len;
    Roost__V1__Envelope *env;
    roost_errmsg em;

    assert_int_equal(roost_wire_encode(&s.env[1], buf, sizeof(buf), &len),
                     ROOST_OK);
    assert_int_equal(roost_wire_decode(NULL, buf, len, NULL, &env, &em),
                     ROOST_OK);
    assert_string_equal(roost_wire_body_name(env), "Task");
    const Roost__V1__Task *t = env->task;
    assert_int_equal(t->round_id, 42);
    assert_int_equal(t->kind, ROOST__V1__TASK_KIND__TASK_KIND_TRAIN);
    assert_string_equal(t->model->spec, "dense:200,relu,dense:10");
    assert_int_equal(t->model->input_height, 28);
    assert_int_equal(t->model_hash.len, 32);
    assert_memory_equal(t->model_hash.data, s.model_hash, 32);
    assert_true(t->training->learning_rate == 0.05);
    assert_true(t->dp->noise_multiplier == 1.1);
    assert_true(t->dp->poisson);
    assert_int_equal(t->deadline_unix_ms, UINT64_C(1795000000000));
    roost_wire_free(NULL, env);

    assert_int_equal(roost_wire_encode(&s.env[3], buf, sizeof(buf), &len),
                     ROOST_OK);
    assert_int_equal(roost_wire_decode(NULL, buf, len, NULL, &env, &em),
                     ROOST_OK);
    assert_int_equal(env->param_chunk->n_values, WIRE_SAMPLE_FLOATS);
    assert_memory_equal(env->param_chunk->values, s.values, sizeof(s.values));
    roost_wire_free(NULL, env);

    assert_int_equal(roost_wire_encode(&s.env[0], buf, sizeof(buf), &len),
                     ROOST_OK);
    assert_int_equal(roost_wire_decode(NULL, buf, len, NULL, &env, &em),
                     ROOST_OK);
    assert_int_equal(env->check_in->n_capabilities, 3);
    assert_string_equal(env->check_in->capabilities[2], "dp-sgd");
    assert_string_equal(env->check_in->display_label, s.display_label);
    roost_wire_free(NULL, env);
    roost_wire_free(NULL, NULL);
}

static void
encode_argument_errors(void **state)
{
    (void)state;
    Roost__V1__Envelope empty = ROOST__V1__ENVELOPE__INIT;
    uint8_t buf[16];
    size_t len;
    assert_int_equal(roost_wire_encode(&empty, buf, sizeof(buf), &len),
                     ROOST_EMISSING);
    assert_int_equal(roost_wire_encode(NULL, buf, sizeof(buf), &len),
                     ROOST_EINVAL);
    assert_int_equal(roost_wire_encode(&empty, NULL, 4, &len), ROOST_EINVAL);
    assert_string_equal(roost_wire_body_name(&empty), "none");
    Roost__V1__Envelope *env = NULL;
    assert_int_equal(roost_wire_decode(NULL, NULL, 4, NULL, &env, NULL),
                     ROOST_EINVAL);
    assert_int_equal(roost_wire_decode(NULL, buf, 0, NULL, NULL, NULL),
                     ROOST_EINVAL);
    roost_wire_limits lim = {0};
    lim.max_depth = ROOST_WIRE_MAX_DEPTH_CAP + 1;
    assert_int_equal(roost_wire_decode(NULL, buf, 0, &lim, &env, NULL),
                     ROOST_EINVAL);
    roost_wire_limits d;
    roost_wire_limits_default(&d);
    assert_int_equal(d.max_message_bytes, 2u * 1024u * 1024u);
    assert_int_equal(d.max_chunk_floats, 262144);
}

/* ---- malformed input ---------------------------------------------------- */

static void
truncated_at_every_offset(void **state)
{
    (void)state;
    static wire_samples s;
    wire_samples_fill(&s);
    for (int i = 0; i < WIRE_SAMPLE_COUNT; i++) {
        uint8_t buf[4096];
        size_t len;
        assert_int_equal(roost_wire_encode(&s.env[i], buf, sizeof(buf), &len),
                         ROOST_OK);
        /* Copy each prefix to an exact-size heap block so ASan catches any
         * read past the end. The Envelope holds one field (the body), so
         * every proper non-empty prefix ends inside it. */
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *p = malloc(cut ? cut : 1);
            assert_non_null(p);
            memcpy(p, buf, cut);
            expect_reject(p, cut, NULL,
                          cut == 0 ? ROOST_EMISSING : ROOST_ETRUNCATED);
            free(p);
        }
    }
}

static void
frame_over_limit(void **state)
{
    (void)state;
    static wire_samples s;
    wire_samples_fill(&s);
    uint8_t buf[4096];
    size_t len;
    assert_int_equal(roost_wire_encode(&s.env[3], buf, sizeof(buf), &len),
                     ROOST_OK);
    roost_wire_limits lim = {0};
    lim.max_message_bytes = len - 1;
    const char *m = expect_reject(buf, len, &lim, ROOST_ETOOBIG);
    assert_non_null(strstr(m, "exceeds limit"));
    lim.max_message_bytes = len;
    Roost__V1__Envelope *env;
    assert_int_equal(roost_wire_decode(NULL, buf, len, &lim, &env, NULL),
                     ROOST_OK);
    roost_wire_free(NULL, env);
}

static void
string_over_limit_names_field(void **state)
{
    (void)state;
    size_t big = 70000;
    char *spec = malloc(big);
    assert_non_null(spec);
    memset(spec, 'd', big);
    bbuf model = {0}, task = {0}, frame = {0};
    bb_len(&model, 1, spec, big);
    bb_len(&task, 4, model.p, model.n);
    envelope_of(&frame, 2, &task);
    const char *m = expect_reject(frame.p, frame.n, NULL, ROOST_ETOOBIG);
    assert_string_equal(m, "Task.model.spec: length 70000 exceeds limit 4096");

    /* A per-field limit tighter than max_string_bytes: display_label. */
    bb_free(&frame);
    bbuf ci = {0};
    bb_len(&ci, 7, spec, 129);
    envelope_of(&frame, 1, &ci);
    m = expect_reject(frame.p, frame.n, NULL, ROOST_ETOOBIG);
    assert_string_equal(m,
                        "CheckIn.display_label: length 129 exceeds limit 128");
    /* ... and the configurable one, which wins when smaller. */
    roost_wire_limits lim = {0};
    lim.max_string_bytes = 100;
    m = expect_reject(frame.p, frame.n, &lim, ROOST_ETOOBIG);
    assert_string_equal(m,
                        "CheckIn.display_label: length 129 exceeds limit 100");
    free(spec);
    bb_free(&model);
    bb_free(&task);
    bb_free(&frame);
    bb_free(&ci);
}

static void
lengths_claiming_more_than_remains(void **state)
{
    (void)state;
    /* Envelope.task claims 1 GiB with 3 bytes present. */
    bbuf f = {0};
    bb_tag(&f, 2, 2);
    bb_varint(&f, 1u << 30);
    bb_put(&f, "\x08\x01\x10", 3);
    const char *m = expect_reject(f.p, f.n, NULL, ROOST_ETRUNCATED);
    assert_non_null(strstr(m, "Envelope.task"));
    bb_free(&f);

    /* Nested bomb: the Task fits in the frame but its ModelSpec claims
     * more than the Task holds (though less than the frame). */
    bbuf task = {0}, frame = {0};
    bb_tag(&task, 4, 2);
    bb_varint(&task, 50);
    bb_put(&task, "\x08\x01", 2);
    envelope_of(&frame, 2, &task);
    uint8_t pad[60] = {0};
    bb_put(&frame, pad, sizeof(pad)); /* bytes after the Task, so the
                                       * frame could hold the claim */
    m = expect_reject(frame.p, frame.n, NULL, ROOST_ETRUNCATED);
    assert_string_equal(m, "Task.model: length 50 but only 2 bytes remain");
    bb_free(&task);
    bb_free(&frame);

    /* A length varint longer than 5 bytes, and a varint of 11 bytes. */
    static const uint8_t long_len[] = {0x12, 0x80, 0x80, 0x80,
                                       0x80, 0x80, 0x00};
    expect_reject(long_len, sizeof(long_len), NULL, ROOST_EDECODE);
    bbuf chunk = {0};
    bb_tag(&chunk, 1, 0);
    for (int i = 0; i < 10; i++)
        bb_put(&chunk, "\xff", 1);
    bb_put(&chunk, "\x01", 1);
    envelope_of(&frame, 4, &chunk);
    expect_reject(frame.p, frame.n, NULL, ROOST_EDECODE);
    bb_free(&chunk);
    bb_free(&frame);
    /* A 10-byte varint whose last byte overflows 64 bits. */
    bb_tag(&chunk, 1, 0);
    for (int i = 0; i < 9; i++)
        bb_put(&chunk, "\xff", 1);
    bb_put(&chunk, "\x02", 1);
    envelope_of(&frame, 4, &chunk);
    expect_reject(frame.p, frame.n, NULL, ROOST_EDECODE);
    bb_free(&chunk);
    bb_free(&frame);
    /* Fixed-width value cut short inside its message. */
    bb_tag(&chunk, 4, 1);
    bb_put(&chunk, "\0\0\0\0", 4);
    envelope_of(&frame, 9, &chunk); /* EvaluationResult.loss: double */
    m = expect_reject(frame.p, frame.n, NULL, ROOST_ETRUNCATED);
    assert_string_equal(
        m, "EvaluationResult.loss: 8-byte value but only 4 bytes remain");
    bb_free(&chunk);
    bb_free(&frame);
}

static void
wrong_wire_types(void **state)
{
    (void)state;
    /* Envelope.task sent as a varint. */
    static const uint8_t a[] = {0x10, 0x01};
    const char *m = expect_reject(a, sizeof(a), NULL, ROOST_EWIRETYPE);
    assert_string_equal(m, "Envelope.task: wire type 0, expected 2");
    /* Task.round_id as fixed64. */
    bbuf body = {0}, frame = {0};
    bb_tag(&body, 1, 1);
    bb_put(&body, "\1\0\0\0\0\0\0\0", 8);
    envelope_of(&frame, 2, &body);
    m = expect_reject(frame.p, frame.n, NULL, ROOST_EWIRETYPE);
    assert_string_equal(m, "Task.round_id: wire type 1, expected 0");
    bb_free(&body);
    bb_free(&frame);
    /* ParamChunk.values unpacked (one float with wire type 5). */
    bb_tag(&body, 5, 5);
    bb_put(&body, "\0\0\x80\x3f", 4);
    envelope_of(&frame, 4, &body);
    m = expect_reject(frame.p, frame.n, NULL, ROOST_EWIRETYPE);
    assert_string_equal(m,
                        "ParamChunk.values: wire type 5, expected 2 (packed)");
    bb_free(&body);
    bb_free(&frame);
    /* A group start on a known field. */
    bb_tag(&body, 2, 3);
    envelope_of(&frame, 3, &body);
    expect_reject(frame.p, frame.n, NULL, ROOST_EWIRETYPE);
    bb_free(&body);
    bb_free(&frame);
    /* A string field with a 32-bit wire type. */
    bb_tag(&body, 2, 5);
    bb_put(&body, "abcd", 4);
    envelope_of(&frame, 8, &body);
    expect_reject(frame.p, frame.n, NULL, ROOST_EWIRETYPE);
    bb_free(&body);
    bb_free(&frame);
}

static void
unknown_fields_rejected(void **state)
{
    (void)state;
    /* A field number beyond the Envelope's oneof. */
    static const uint8_t a[] = {0x52, 0x00}; /* field 10, LEN 0 */
    const char *m = expect_reject(a, sizeof(a), NULL, ROOST_EUNKNOWNFIELD);
    assert_string_equal(m, "Envelope: unknown field number 10 (wire type 2)");
    /* Field 99 inside a Task nested in a valid frame, after valid fields. */
    bbuf body = {0}, frame = {0};
    bb_tag(&body, 1, 0);
    bb_varint(&body, 7);
    bb_tag(&body, 99, 0);
    bb_varint(&body, 1);
    envelope_of(&frame, 2, &body);
    m = expect_reject(frame.p, frame.n, NULL, ROOST_EUNKNOWNFIELD);
    assert_string_equal(m, "Task: unknown field number 99 (wire type 0)");
    bb_free(&body);
    bb_free(&frame);
    /* Inside ModelSpec: the path names the enclosing field. */
    bbuf model = {0};
    bb_tag(&model, 7, 0);
    bb_varint(&model, 1);
    bb_len(&body, 4, model.p, model.n);
    envelope_of(&frame, 2, &body);
    m = expect_reject(frame.p, frame.n, NULL, ROOST_EUNKNOWNFIELD);
    assert_string_equal(m, "Task.model: unknown field number 7 (wire type 0)");
    bb_free(&model);
    bb_free(&body);
    bb_free(&frame);
    /* Field number 0 is malformed, not unknown. */
    static const uint8_t z[] = {0x02, 0x00};
    expect_reject(z, sizeof(z), NULL, ROOST_EDECODE);
}

static void
nesting_depth_limit(void **state)
{
    (void)state;
    static wire_samples s;
    wire_samples_fill(&s);
    uint8_t buf[4096];
    size_t len;
    assert_int_equal(roost_wire_encode(&s.env[1], buf, sizeof(buf), &len),
                     ROOST_OK);
    /* Envelope (0) -> Task (1) -> ModelSpec (2). */
    roost_wire_limits lim = {0};
    lim.max_depth = 1;
    const char *m = expect_reject(buf, len, &lim, ROOST_EDEPTH);
    assert_string_equal(m, "Task.model: nesting depth 2 exceeds limit 1");
    lim.max_depth = 2;
    Roost__V1__Envelope *env;
    assert_int_equal(roost_wire_decode(NULL, buf, len, &lim, &env, NULL),
                     ROOST_OK);
    roost_wire_free(NULL, env);
}

static void
repeated_counts_over_limit(void **state)
{
    (void)state;
    bbuf body = {0}, frame = {0};
    /* 65 capabilities (limit 64). */
    for (int i = 0; i < 65; i++)
        bb_len(&body, 3, "train", 5);
    envelope_of(&frame, 1, &body);
    const char *m = expect_reject(frame.p, frame.n, NULL, ROOST_ETOOBIG);
    assert_string_equal(m, "CheckIn.capabilities: more than 64 elements");
    bb_free(&body);
    bb_free(&frame);

    /* 262145 floats in one packed run (limit 262144). */
    size_t nf = ROOST_WIRE_DEFAULT_MAX_CHUNK_FLOATS + 1;
    float *f = calloc(nf, sizeof(float));
    assert_non_null(f);
    bb_len(&body, 5, f, nf * sizeof(float));
    envelope_of(&frame, 4, &body);
    m = expect_reject(frame.p, frame.n, NULL, ROOST_ETOOBIG);
    assert_string_equal(
        m, "ParamChunk.values: 262145 elements exceed limit 262144");
    bb_free(&body);
    bb_free(&frame);

    /* Two packed runs that are each within the limit but not together. */
    roost_wire_limits lim = {0};
    lim.max_chunk_floats = 10;
    bb_len(&body, 5, f, 6 * sizeof(float));
    bb_len(&body, 5, f, 5 * sizeof(float));
    envelope_of(&frame, 4, &body);
    m = expect_reject(frame.p, frame.n, &lim, ROOST_ETOOBIG);
    assert_string_equal(m, "ParamChunk.values: more than 10 elements");
    bb_free(&body);
    bb_free(&frame);

    /* A packed float run whose length is not a multiple of 4. */
    bb_len(&body, 5, f, 7);
    envelope_of(&frame, 4, &body);
    expect_reject(frame.p, frame.n, NULL, ROOST_EDECODE);
    bb_free(&body);
    bb_free(&frame);
    free(f);
}

static void
duplicates_and_oneof(void **state)
{
    (void)state;
    /* Two different oneof members. */
    static const uint8_t two[] = {0x0a, 0x00, 0x12, 0x00};
    const char *m = expect_reject(two, sizeof(two), NULL, ROOST_EDUPLICATE);
    assert_string_equal(m, "Envelope.task: oneof already holds 'check_in'");
    /* The same member twice (protobuf-c would merge them). */
    static const uint8_t same[] = {0x12, 0x00, 0x12, 0x00};
    expect_reject(same, sizeof(same), NULL, ROOST_EDUPLICATE);
    /* A singular scalar twice. */
    bbuf body = {0}, frame = {0};
    bb_tag(&body, 1, 0);
    bb_varint(&body, 1);
    bb_tag(&body, 1, 0);
    bb_varint(&body, 2);
    envelope_of(&frame, 7, &body);
    m = expect_reject(frame.p, frame.n, NULL, ROOST_EDUPLICATE);
    assert_string_equal(m, "Ack.round_id: singular field appears twice");
    bb_free(&body);
    bb_free(&frame);
}

static void
semantic_checks(void **state)
{
    (void)state;
    bbuf body = {0}, frame = {0};
    /* A model hash of 5 bytes. */
    bb_len(&body, 5, "12345", 5);
    envelope_of(&frame, 2, &body);
    const char *m = expect_reject(frame.p, frame.n, NULL, ROOST_EDECODE);
    assert_string_equal(
        m, "Task.model_hash: length 5, a SHA-256 must be 0 or 32 bytes");
    bb_free(&body);
    bb_free(&frame);
    /* An unknown enum value. */
    bb_tag(&body, 3, 0);
    bb_varint(&body, 77);
    envelope_of(&frame, 6, &body);
    m = expect_reject(frame.p, frame.n, NULL, ROOST_EDECODE);
    assert_string_equal(m, "Decline.reason: unknown enum value 77");
    bb_free(&body);
    bb_free(&frame);
    /* An enum value beyond int32 whose low 32 bits are a valid value:
     * protobuf-c would keep only those bits. */
    bb_tag(&body, 3, 0);
    bb_varint(&body, (UINT64_C(1) << 32) | 1);
    envelope_of(&frame, 6, &body);
    m = expect_reject(frame.p, frame.n, NULL, ROOST_EDECODE);
    assert_string_equal(m, "Decline.reason: value 4294967297 out of int32 "
                           "range");
    bb_free(&body);
    bb_free(&frame);
    /* The same for a uint32 field (Error.code). */
    bb_tag(&body, 1, 0);
    bb_varint(&body, (UINT64_C(1) << 32) | 25);
    envelope_of(&frame, 8, &body);
    m = expect_reject(frame.p, frame.n, NULL, ROOST_EDECODE);
    assert_string_equal(m, "Error.code: value 4294967321 out of 32-bit range");
    bb_free(&body);
    bb_free(&frame);
    /* Invalid UTF-8 (overlong '/'), a surrogate and an embedded NUL. */
    static const char *bad[] = {"ab\xc0\xaf", "x\xed\xa0\x80", "ab\0cd",
                                "\xf4\x90\x80\x80", "trunc\xe2\x82"};
    static const size_t bad_len[] = {4, 4, 5, 4, 7};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bb_len(&body, 2, bad[i], bad_len[i]);
        envelope_of(&frame, 8, &body);
        m = expect_reject(frame.p, frame.n, NULL, ROOST_EDECODE);
        assert_non_null(strstr(m, "Error.message: invalid UTF-8 or NUL"));
        bb_free(&body);
        bb_free(&frame);
    }
    /* An empty envelope and an envelope with an empty body. */
    expect_reject((const uint8_t *)"", 0, NULL, ROOST_EMISSING);
    static const uint8_t empty_body[] = {0x42, 0x00};
    Roost__V1__Envelope *env;
    assert_int_equal(roost_wire_decode(NULL, empty_body, sizeof(empty_body),
                                       NULL, &env, NULL),
                     ROOST_OK);
    assert_int_equal(env->body_case, ROOST__V1__ENVELOPE__BODY_ERROR);
    roost_wire_free(NULL, env);
}

static void
allocation_budget(void **state)
{
    (void)state;
    static wire_samples s;
    wire_samples_fill(&s);
    uint8_t buf[4096];
    size_t len;
    assert_int_equal(roost_wire_encode(&s.env[3], buf, sizeof(buf), &len),
                     ROOST_OK);
    counting c;
    roost_allocator a = counting_allocator(&c);
    Roost__V1__Envelope *env = NULL;
    roost_errmsg em;
    /* 100 floats need 400 bytes plus the messages: 256 is too little. */
    roost_wire_limits lim = {0};
    lim.max_alloc_bytes = 256;
    assert_int_equal(roost_wire_decode(&a, buf, len, &lim, &env, &em),
                     ROOST_ETOOBIG);
    assert_null(env);
    assert_non_null(strstr(em.text, "256 bytes of memory"));
    assert_int_equal(c.live, 0);
    lim.max_alloc_bytes = 4096;
    assert_int_equal(roost_wire_decode(&a, buf, len, &lim, &env, &em),
                     ROOST_OK);
    roost_wire_free(&a, env);
    assert_int_equal(c.live, 0);

    /* Allocator failure at every allocation of a Task: ENOMEM, no leak. */
    assert_int_equal(roost_wire_encode(&s.env[1], buf, sizeof(buf), &len),
                     ROOST_OK);
    int ok = 0;
    for (long k = 0; k < 100 && !ok; k++) {
        a = counting_allocator(&c);
        c.fail_after = k;
        int rc = roost_wire_decode(&a, buf, len, NULL, &env, &em);
        if (rc == ROOST_OK) {
            ok = 1;
            assert_true(k > 1);
            roost_wire_free(&a, env);
        } else {
            assert_int_equal(rc, ROOST_ENOMEM);
            assert_null(env);
        }
        assert_int_equal(c.live, 0);
    }
    assert_true(ok);
}

static void
validate_matches_decode(void **state)
{
    (void)state;
    static wire_samples s;
    wire_samples_fill(&s);
    uint8_t buf[4096];
    size_t len;
    assert_int_equal(roost_wire_encode(&s.env[4], buf, sizeof(buf), &len),
                     ROOST_OK);
    assert_int_equal(roost_wire_validate(buf, len, NULL, NULL), ROOST_OK);
    assert_int_equal(roost_wire_validate(buf, len - 1, NULL, NULL),
                     ROOST_ETRUNCATED);
}

/* For the encoder's reusable buffer, which does grow with realloc (the
 * decoder's allocator above forbids realloc). */
static void *grow_realloc(void *arg, void *p, size_t n);

static void *
grow_malloc(void *arg, size_t n)
{
    return grow_realloc(arg, NULL, n);
}

static void *
grow_realloc(void *arg, void *p, size_t n)
{
    size_t *reallocs = arg;
    (*reallocs)++;
    return realloc(p, n);
}

static void
grow_free(void *arg, void *p)
{
    (void)arg;
    free(p);
}

static void
encode_reuse_grows_once_and_reuses(void **state)
{
    (void)state;
    static wire_samples s;
    wire_samples_fill(&s);
    size_t grows = 0;
    roost_allocator a = {grow_malloc, grow_realloc, grow_free, &grows};
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0, biggest = 0;
    for (int i = 0; i < WIRE_SAMPLE_COUNT; i++) {
        size_t need;
        assert_int_equal(roost_wire_encoded_size(&s.env[i], &need), ROOST_OK);
        assert_int_equal(
            roost_wire_encode_reuse(&a, &s.env[i], &buf, &cap, &len), ROOST_OK);
        assert_int_equal(len, need);
        if (need > biggest)
            biggest = need;
        assert_int_equal(cap, biggest); /* grown only when needed */
        Roost__V1__Envelope *back = NULL;
        assert_int_equal(roost_wire_decode(NULL, buf, len, NULL, &back, NULL),
                         ROOST_OK);
        assert_int_equal(back->body_case, s.env[i].body_case);
        roost_wire_free(NULL, back);
    }
    /* Grown only when a message did not fit: never more often than there
     * are samples, and the buffer ends at the largest message. */
    assert_true(grows >= 1 && grows <= WIRE_SAMPLE_COUNT);
    assert_int_equal(cap, biggest);
    roost_alloc_free(&a, buf);
    Roost__V1__Envelope empty;
    roost__v1__envelope__init(&empty);
    assert_int_equal(roost_wire_encode_reuse(NULL, &empty, &buf, &cap, &len),
                     ROOST_EMISSING);
    assert_int_equal(roost_wire_encode_reuse(NULL, &s.env[0], NULL, &cap, &len),
                     ROOST_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_every_message_type),
        cmocka_unit_test(roundtrip_field_values),
        cmocka_unit_test(encode_argument_errors),
        cmocka_unit_test(encode_reuse_grows_once_and_reuses),
        cmocka_unit_test(truncated_at_every_offset),
        cmocka_unit_test(frame_over_limit),
        cmocka_unit_test(string_over_limit_names_field),
        cmocka_unit_test(lengths_claiming_more_than_remains),
        cmocka_unit_test(wrong_wire_types),
        cmocka_unit_test(unknown_fields_rejected),
        cmocka_unit_test(nesting_depth_limit),
        cmocka_unit_test(repeated_counts_over_limit),
        cmocka_unit_test(duplicates_and_oneof),
        cmocka_unit_test(semantic_checks),
        cmocka_unit_test(allocation_budget),
        cmocka_unit_test(validate_matches_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
