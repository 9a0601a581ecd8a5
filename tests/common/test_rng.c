/*
 * test_rng.c - the CSPRNG layer: deterministic mode reproduces, secure mode
 * does not repeat, splits are independent, bounded and uniform helpers stay
 * in range and are not grossly biased; the keystream is AES-256-CTR's
 * (known answer, and OpenSSL's EVP) on both the VAES and the EVP path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "common/rng.h"
#include "common/rng_int.h"

#include <openssl/evp.h>

static void
deterministic_reproduces(void **state)
{
    (void)state;
    roost_rng *a, *b, *c;
    assert_int_equal(roost_rng_create_insecure_deterministic(&a, NULL, 42, 0),
                     ROOST_OK);
    assert_int_equal(roost_rng_create_insecure_deterministic(&b, NULL, 42, 0),
                     ROOST_OK);
    assert_int_equal(roost_rng_create_insecure_deterministic(&c, NULL, 42, 1),
                     ROOST_OK);
    assert_true(roost_rng_is_insecure(a));
    unsigned char x[10000], y[10000], z[10000];
    assert_int_equal(roost_rng_bytes(a, x, sizeof(x)), ROOST_OK);
    assert_int_equal(roost_rng_bytes(b, y, sizeof(y)), ROOST_OK);
    assert_int_equal(roost_rng_bytes(c, z, sizeof(z)), ROOST_OK);
    assert_memory_equal(x, y, sizeof(x));
    assert_memory_not_equal(x, z, sizeof(x));
    roost_rng_destroy(a);
    roost_rng_destroy(b);
    roost_rng_destroy(c);
    roost_rng_destroy(NULL);
}

static void
secure_differs_and_is_not_insecure(void **state)
{
    (void)state;
    roost_rng *a, *b;
    assert_int_equal(roost_rng_create(&a, NULL), ROOST_OK);
    assert_int_equal(roost_rng_create(&b, NULL), ROOST_OK);
    assert_false(roost_rng_is_insecure(a));
    uint64_t x[4], y[4];
    assert_int_equal(roost_rng_bytes(a, x, sizeof(x)), ROOST_OK);
    assert_int_equal(roost_rng_bytes(b, y, sizeof(y)), ROOST_OK);
    assert_memory_not_equal(x, y, sizeof(x));
    roost_rng_destroy(a);
    roost_rng_destroy(b);
}

static void
split_children_are_independent(void **state)
{
    (void)state;
    roost_rng *p, *c1, *c2;
    assert_int_equal(roost_rng_create_insecure_deterministic(&p, NULL, 7, 0),
                     ROOST_OK);
    assert_int_equal(roost_rng_split(p, &c1), ROOST_OK);
    assert_int_equal(roost_rng_split(p, &c2), ROOST_OK);
    assert_true(roost_rng_is_insecure(c1));
    uint64_t a, b;
    assert_int_equal(roost_rng_u64(c1, &a), ROOST_OK);
    assert_int_equal(roost_rng_u64(c2, &b), ROOST_OK);
    assert_true(a != b);
    roost_rng_destroy(c1);
    roost_rng_destroy(c2);
    roost_rng_destroy(p);
}

static void
below_and_uniform_in_range(void **state)
{
    (void)state;
    roost_rng *r;
    assert_int_equal(roost_rng_create_insecure_deterministic(&r, NULL, 1, 0),
                     ROOST_OK);
    unsigned counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint64_t v;
        assert_int_equal(roost_rng_below(r, 7, &v), ROOST_OK);
        assert_true(v < 7);
        counts[v]++;
    }
    /* Each bucket expects 10000 with sd ~93; 600 is > 6 sd. */
    for (int k = 0; k < 7; k++)
        assert_in_range(counts[k], 9400, 10600);
    uint64_t v;
    assert_int_equal(roost_rng_below(r, 0, &v), ROOST_EINVAL);
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        double u;
        assert_int_equal(roost_rng_uniform(r, &u), ROOST_OK);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
    }
    /* mean 0.5, sd of the mean ~0.0009 */
    assert_true(sum / 100000 > 0.495 && sum / 100000 < 0.505);
    roost_rng_destroy(r);
}

/* The stream does not depend on how it is requested: small requests
 * through the internal buffer and large ones written directly give the
 * same bytes in the same order. */
static void
stream_independent_of_request_sizes(void **state)
{
    (void)state;
    enum { TOTAL = 50000 };
    static unsigned char whole[TOTAL], pieces[TOTAL];
    roost_rng *a, *b;
    assert_int_equal(roost_rng_create_insecure_deterministic(&a, NULL, 11, 3),
                     ROOST_OK);
    assert_int_equal(roost_rng_create_insecure_deterministic(&b, NULL, 11, 3),
                     ROOST_OK);
    assert_int_equal(roost_rng_bytes(a, whole, TOTAL), ROOST_OK);
    const size_t sizes[] = {1, 7, 4096, 13, 8191, 5000, 64, 4095, 12000};
    size_t off = 0, k = 0;
    while (off < TOTAL) {
        size_t take = sizes[k++ % (sizeof(sizes) / sizeof(sizes[0]))];
        if (take > TOTAL - off)
            take = TOTAL - off;
        assert_int_equal(roost_rng_bytes(b, pieces + off, take), ROOST_OK);
        off += take;
    }
    assert_memory_equal(whole, pieces, TOTAL);
    uint64_t x, y;
    assert_int_equal(roost_rng_u64(a, &x), ROOST_OK);
    assert_int_equal(roost_rng_u64(b, &y), ROOST_OK);
    assert_true(x == y);
    roost_rng_destroy(a);
    roost_rng_destroy(b);
}

/* FIPS-197-style known answer: AES-256 under the zero key of the zero
 * block is dc95c078a2408989ad48a21492842087, and that is the first
 * keystream block (counter 0). */
static void
keystream_known_answer(void **state)
{
    (void)state;
    static const unsigned char expect[16] = {0xdc, 0x95, 0xc0, 0x78, 0xa2, 0x40,
                                             0x89, 0x89, 0xad, 0x48, 0xa2, 0x14,
                                             0x92, 0x84, 0x20, 0x87};
    const unsigned char key[32] = {0};
    for (int vaes = 0; vaes < 2; vaes++) {
        roost_rng *r;
        assert_int_equal(roost_rng_debug_create_with_key(&r, key), ROOST_OK);
        assert_true(roost_rng_is_insecure(r));
        (void)roost_rng_debug_use_vaes(r, vaes != 0);
        unsigned char got[16];
        assert_int_equal(roost_rng_bytes(r, got, sizeof(got)), ROOST_OK);
        assert_memory_equal(got, expect, sizeof(expect));
        roost_rng_destroy(r);
    }
}

/* Request sizes that cross the buffer, whole blocks and partial blocks in
 * every combination. */
static const size_t odd_sizes[] = {1,   15,   16,    17, 4096,  4097, 3,   8192,
                                   100, 4111, 65536, 9,  20000, 4095, 4208};

/* The stream equals OpenSSL's EVP_aes_256_ctr with a zero IV, on each
 * path, whatever the request sizes, and switching paths mid-stream. */
static void
keystream_is_aes256_ctr_on_both_paths(void **state)
{
    (void)state;
    enum { TOTAL = 300000 };
    static unsigned char ref[TOTAL], got[TOTAL];
    static const unsigned char zero[TOTAL];
    unsigned char key[32];
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(37 * i + 5);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char iv[16] = {0};
    int outl = 0;
    assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), NULL, key, iv),
                     1);
    assert_int_equal(EVP_EncryptUpdate(ctx, ref, &outl, zero, TOTAL), 1);
    assert_int_equal(outl, TOTAL);
    EVP_CIPHER_CTX_free(ctx);

    bool have_vaes = false;
    for (int mode = 0; mode < 3; mode++) {
        /* 0: EVP only, 1: VAES (if the CPU has it), 2: alternating. */
        roost_rng *r;
        memset(got, 0, TOTAL);
        assert_int_equal(roost_rng_debug_create_with_key(&r, key), ROOST_OK);
        bool on = roost_rng_debug_use_vaes(r, mode != 0);
        if (mode == 1)
            have_vaes = on;
        size_t off = 0, k = 0;
        while (off < TOTAL) {
            size_t take =
                odd_sizes[k % (sizeof(odd_sizes) / sizeof(*odd_sizes))];
            if (take > TOTAL - off)
                take = TOTAL - off;
            if (mode == 2)
                (void)roost_rng_debug_use_vaes(r, k % 2 == 0);
            assert_int_equal(roost_rng_bytes(r, got + off, take), ROOST_OK);
            off += take;
            k++;
        }
        assert_memory_equal(got, ref, TOTAL);
        roost_rng_destroy(r);
        /* A first request goes straight to the block generator: every
         * remainder of whole blocks modulo 16 (its vector tail), then a
         * partial block. */
        for (size_t blocks = 256; blocks < 256 + 17; blocks++) {
            size_t n = 16 * blocks + (blocks % 3);
            assert_int_equal(roost_rng_debug_create_with_key(&r, key),
                             ROOST_OK);
            (void)roost_rng_debug_use_vaes(r, mode != 0);
            memset(got, 0, n);
            assert_int_equal(roost_rng_bytes(r, got, n), ROOST_OK);
            assert_memory_equal(got, ref, n);
            roost_rng_destroy(r);
        }
    }
    if (!have_vaes)
        print_message("note: this CPU has no VAES/AVX-512; EVP path only\n");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deterministic_reproduces),
        cmocka_unit_test(secure_differs_and_is_not_insecure),
        cmocka_unit_test(split_children_are_independent),
        cmocka_unit_test(below_and_uniform_in_range),
        cmocka_unit_test(stream_independent_of_request_sizes),
        cmocka_unit_test(keystream_known_answer),
        cmocka_unit_test(keystream_is_aes256_ctr_on_both_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
