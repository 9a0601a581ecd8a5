/*
 * test_xfer.c - chunked parameter transfer: a vector split by the sender
 * and carried through the real wire codec reassembles bit-exactly; the
 * hash follows its written definition; corrupted, duplicate, missing,
 * overlapping and out-of-range chunks are each rejected with their code.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"
#include "common/xfer.h"

#define N_FLOATS 1000
#define CHUNK 64 /* 16 chunks, the last one 40 floats */

typedef struct fixture {
    float src[N_FLOATS];
    float dst[N_FLOATS];
    Roost__V1__ParamChunk chunks[32];
    uint32_t count;
    roost_xfer_expect expect;
} fixture;

static int
setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    for (int i = 0; i < N_FLOATS; i++)
        f->src[i] = (float)i * 0.001f - 0.25f;
    roost_xfer_sender s;
    if (roost_xfer_sender_init(&s, f->src, N_FLOATS, CHUNK, 7, 70, &f->count) !=
        ROOST_OK)
        return -1;
    for (uint32_t i = 0;; i++) {
        bool done;
        if (roost_xfer_sender_next(&s, &f->chunks[i], &done) != ROOST_OK)
            return -1;
        if (done)
            break;
    }
    f->expect.round_id = 7;
    f->expect.task_id = 70;
    f->expect.num_params = N_FLOATS;
    f->expect.chunk_count = f->count;
    if (roost_xfer_hash_floats(f->src, N_FLOATS, f->expect.sha256) != ROOST_OK)
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    free(*state);
    return 0;
}

static roost_xfer_receiver *
receiver(fixture *f)
{
    roost_xfer_receiver *r = NULL;
    roost_errmsg em;
    assert_int_equal(
        roost_xfer_receiver_create(&r, NULL, &f->expect, f->dst, N_FLOATS, &em),
        ROOST_OK);
    return r;
}

static void
add_ok(roost_xfer_receiver *r, const Roost__V1__ParamChunk *c, bool last)
{
    bool complete = !last;
    roost_errmsg em;
    int rc = roost_xfer_receiver_add(r, c, &complete, &em);
    if (rc != ROOST_OK)
        print_error("%s\n", em.text);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(complete, last);
}

static void
add_fails(roost_xfer_receiver *r, const Roost__V1__ParamChunk *c, int want)
{
    bool complete = true;
    roost_errmsg em = {{0}};
    int rc = roost_xfer_receiver_add(r, c, &complete, &em);
    if (rc != want)
        print_error("got %s (%s), want %s\n", roost_errname(rc), em.text,
                    roost_errname(want));
    assert_int_equal(rc, want);
    assert_false(complete);
    assert_true(strlen(em.text) > 0);
}

static void
hash_definition(void **state)
{
    (void)state;
    /* SHA-256 of the little-endian float32 bytes of {1, -2.5, 3.25},
     * computed independently with Python's hashlib and struct('<3f'). */
    static const uint8_t want[32] = {
        0x03, 0xfb, 0xa9, 0x48, 0x78, 0x3e, 0xfb, 0x30, 0x43, 0x16, 0xe2,
        0x08, 0x5b, 0x5c, 0xc2, 0x66, 0x2a, 0xab, 0xd7, 0x8f, 0xac, 0xc0,
        0x5b, 0xb7, 0xa0, 0xce, 0xe0, 0xaa, 0xf7, 0x25, 0x67, 0x32};
    static const uint8_t empty[32] = {
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
        0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
        0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};
    const float v[3] = {1.0f, -2.5f, 3.25f};
    uint8_t h[32];
    assert_int_equal(roost_xfer_hash_floats(v, 3, h), ROOST_OK);
    assert_memory_equal(h, want, 32);
    assert_int_equal(roost_xfer_hash_floats(NULL, 0, h), ROOST_OK);
    assert_memory_equal(h, empty, 32);
    assert_int_equal(roost_xfer_hash_floats(NULL, 3, h), ROOST_EINVAL);
}

static void
plan_and_sender(void **state)
{
    fixture *f = *state;
    uint32_t n;
    assert_int_equal(roost_xfer_plan(1000, 64, &n), ROOST_OK);
    assert_int_equal(n, 16);
    assert_int_equal(roost_xfer_plan(1024, 64, &n), ROOST_OK);
    assert_int_equal(n, 16);
    assert_int_equal(roost_xfer_plan(0, 64, &n), ROOST_OK);
    assert_int_equal(n, 0);
    assert_int_equal(roost_xfer_plan(10, 0, &n), ROOST_OK);
    assert_int_equal(n, 1);
    assert_int_equal(roost_xfer_plan(10, ROOST_XFER_MAX_CHUNK_FLOATS + 1, &n),
                     ROOST_EINVAL);
    assert_int_equal(f->count, 16);
    size_t total = 0;
    for (uint32_t i = 0; i < f->count; i++) {
        assert_int_equal(f->chunks[i].index, i);
        assert_int_equal(f->chunks[i].offset, total);
        assert_int_equal(f->chunks[i].round_id, 7);
        assert_int_equal(f->chunks[i].task_id, 70);
        assert_int_equal(f->chunks[i].n_values, i + 1 < f->count ? 64 : 40);
        total += f->chunks[i].n_values;
    }
    assert_int_equal(total, N_FLOATS);
}

/* Every chunk goes through encode and decode, as on a real connection. */
static void
split_wire_reassemble(void **state)
{
    fixture *f = *state;
    roost_xfer_receiver *r = receiver(f);
    for (uint32_t i = 0; i < f->count; i++) {
        Roost__V1__Envelope env = ROOST__V1__ENVELOPE__INIT, *got = NULL;
        env.body_case = ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK;
        env.param_chunk = &f->chunks[i];
        uint8_t buf[1024];
        size_t len;
        assert_int_equal(roost_wire_encode(&env, buf, sizeof(buf), &len),
                         ROOST_OK);
        assert_int_equal(roost_wire_decode(NULL, buf, len, NULL, &got, NULL),
                         ROOST_OK);
        assert_false(roost_xfer_receiver_complete(r));
        add_ok(r, got->param_chunk, i + 1 == f->count);
        roost_wire_free(NULL, got);
    }
    assert_true(roost_xfer_receiver_complete(r));
    assert_int_equal(roost_xfer_receiver_received(r), N_FLOATS);
    assert_memory_equal(f->dst, f->src, sizeof(f->src));
    /* Nothing more is accepted once complete, and the result stands. */
    bool complete = false;
    assert_int_equal(roost_xfer_receiver_add(r, &f->chunks[0], &complete, NULL),
                     ROOST_EPROTO);
    assert_true(complete);
    assert_true(roost_xfer_receiver_complete(r));
    roost_xfer_receiver_destroy(r);
    roost_xfer_receiver_destroy(NULL);
}

static void
corruption_gives_ehash(void **state)
{
    fixture *f = *state;
    roost_xfer_receiver *r = receiver(f);
    float saved = f->src[300];
    f->src[300] = saved + 1e-6f; /* one float of chunk 4, one ulp-ish */
    for (uint32_t i = 0; i + 1 < f->count; i++)
        add_ok(r, &f->chunks[i], false);
    add_fails(r, &f->chunks[f->count - 1], ROOST_EHASH);
    assert_false(roost_xfer_receiver_complete(r));
    f->src[300] = saved;
    /* The failure latches. */
    add_fails(r, &f->chunks[f->count - 1], ROOST_ESTATE);
    roost_xfer_receiver_destroy(r);

    /* A wrong announced hash with intact data fails the same way. */
    f->expect.sha256[0] ^= 1;
    r = receiver(f);
    for (uint32_t i = 0; i + 1 < f->count; i++)
        add_ok(r, &f->chunks[i], false);
    add_fails(r, &f->chunks[f->count - 1], ROOST_EHASH);
    roost_xfer_receiver_destroy(r);
    f->expect.sha256[0] ^= 1;
}

static void
duplicate_is_ignored_with_edup(void **state)
{
    fixture *f = *state;
    roost_xfer_receiver *r = receiver(f);
    add_ok(r, &f->chunks[0], false);
    add_ok(r, &f->chunks[1], false);
    add_fails(r, &f->chunks[1], ROOST_EDUPLICATE);
    add_fails(r, &f->chunks[0], ROOST_EDUPLICATE);
    /* A duplicate does not poison the stream. */
    for (uint32_t i = 2; i < f->count; i++)
        add_ok(r, &f->chunks[i], i + 1 == f->count);
    assert_memory_equal(f->dst, f->src, sizeof(f->src));
    roost_xfer_receiver_destroy(r);
}

static void
missing_and_reordered(void **state)
{
    fixture *f = *state;
    roost_xfer_receiver *r = receiver(f);
    add_ok(r, &f->chunks[0], false);
    add_fails(r, &f->chunks[2], ROOST_EPROTO); /* chunk 1 missing */
    add_fails(r, &f->chunks[1], ROOST_ESTATE);
    roost_xfer_receiver_destroy(r);
}

static void
overlapping_and_out_of_range(void **state)
{
    fixture *f = *state;
    Roost__V1__ParamChunk c;
    roost_xfer_receiver *r;

    /* Overlap: chunk 1 starting one float early. */
    r = receiver(f);
    add_ok(r, &f->chunks[0], false);
    c = f->chunks[1];
    c.offset -= 1;
    add_fails(r, &c, ROOST_ESHAPE);
    roost_xfer_receiver_destroy(r);

    /* Hole: chunk 1 starting one float late. */
    r = receiver(f);
    add_ok(r, &f->chunks[0], false);
    c = f->chunks[1];
    c.offset += 1;
    add_fails(r, &c, ROOST_ESHAPE);
    roost_xfer_receiver_destroy(r);

    /* Index beyond chunk_count. */
    r = receiver(f);
    c = f->chunks[0];
    c.index = f->count;
    add_fails(r, &c, ROOST_ESHAPE);
    roost_xfer_receiver_destroy(r);

    /* Last chunk running past num_params. */
    r = receiver(f);
    for (uint32_t i = 0; i + 1 < f->count; i++)
        add_ok(r, &f->chunks[i], false);
    c = f->chunks[f->count - 1];
    c.n_values += 1; /* rejected before anything is read */
    add_fails(r, &c, ROOST_ESHAPE);
    roost_xfer_receiver_destroy(r);

    /* Last chunk ending short of num_params. */
    r = receiver(f);
    for (uint32_t i = 0; i + 1 < f->count; i++)
        add_ok(r, &f->chunks[i], false);
    c = f->chunks[f->count - 1];
    c.n_values -= 1;
    add_fails(r, &c, ROOST_ESHAPE);
    roost_xfer_receiver_destroy(r);

    /* Empty chunk, and a chunk over the receiver's maximum. */
    r = receiver(f);
    c = f->chunks[0];
    c.n_values = 0;
    add_fails(r, &c, ROOST_ESHAPE);
    roost_xfer_receiver_destroy(r);
    f->expect.max_chunk_floats = 32;
    f->expect.chunk_count = 32;
    r = receiver(f);
    add_fails(r, &f->chunks[0], ROOST_ESHAPE);
    roost_xfer_receiver_destroy(r);
    f->expect.max_chunk_floats = 0;
    f->expect.chunk_count = f->count;

    /* Foreign round or task. */
    r = receiver(f);
    c = f->chunks[0];
    c.round_id = 6;
    add_fails(r, &c, ROOST_ESTALE);
    roost_xfer_receiver_destroy(r);
}

static void
receiver_create_checks(void **state)
{
    fixture *f = *state;
    roost_xfer_receiver *r = (roost_xfer_receiver *)f; /* poison */
    roost_xfer_expect e = f->expect;
    assert_int_equal(
        roost_xfer_receiver_create(&r, NULL, &e, f->dst, N_FLOATS - 1, NULL),
        ROOST_ETOOSMALL);
    assert_null(r);
    e.chunk_count = 0;
    assert_int_equal(
        roost_xfer_receiver_create(&r, NULL, &e, f->dst, N_FLOATS, NULL),
        ROOST_EINVAL);
    e.chunk_count = N_FLOATS + 1; /* more chunks than floats */
    assert_int_equal(
        roost_xfer_receiver_create(&r, NULL, &e, f->dst, N_FLOATS, NULL),
        ROOST_EINVAL);
    e.chunk_count = 3; /* 1000 floats cannot fit in 3 chunks of <= 100 */
    e.max_chunk_floats = 100;
    assert_int_equal(
        roost_xfer_receiver_create(&r, NULL, &e, f->dst, N_FLOATS, NULL),
        ROOST_EINVAL);
    assert_null(r);

    /* The empty vector is complete at once if its hash is right. */
    roost_xfer_expect z = {0};
    assert_int_equal(roost_xfer_hash_floats(NULL, 0, z.sha256), ROOST_OK);
    assert_int_equal(roost_xfer_receiver_create(&r, NULL, &z, NULL, 0, NULL),
                     ROOST_OK);
    assert_true(roost_xfer_receiver_complete(r));
    roost_xfer_receiver_destroy(r);
    z.sha256[5] ^= 0x40;
    assert_int_equal(roost_xfer_receiver_create(&r, NULL, &z, NULL, 0, NULL),
                     ROOST_EHASH);
    assert_null(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_definition),
        cmocka_unit_test_setup_teardown(plan_and_sender, setup, teardown),
        cmocka_unit_test_setup_teardown(split_wire_reassemble, setup, teardown),
        cmocka_unit_test_setup_teardown(corruption_gives_ehash, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(duplicate_is_ignored_with_edup, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(missing_and_reordered, setup, teardown),
        cmocka_unit_test_setup_teardown(overlapping_and_out_of_range, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(receiver_create_checks, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
