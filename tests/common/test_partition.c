/*
 * test_partition.c - the partitioners: every index assigned exactly once,
 * no empty client, reproducible by seed; label shards give each client
 * exactly S shards (so at most S labels); Dirichlet proportions have the
 * variance of Dir(alpha) and get more skewed as alpha shrinks; specs parse
 * and bad ones are refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/dataset.h"
#include "common/partition.h"
#include "test_util.h"

/* Balanced synthetic labels: example i has label i % classes. */
static uint8_t *
balanced_labels(size_t n, uint32_t classes)
{
    uint8_t *labels = malloc(n);
    assert_non_null(labels);
    for (size_t i = 0; i < n; i++)
        labels[i] = (uint8_t)(i % classes);
    return labels;
}

/* Every index 0..n-1 exactly once, clients non-empty and ascending. */
static void
assert_exact_cover(const roost_partition *p, size_t n)
{
    assert_int_equal(roost_partition_total(p), n);
    unsigned char *seen = calloc(n, 1);
    assert_non_null(seen);
    size_t total = 0;
    for (uint32_t c = 0; c < roost_partition_num_clients(p); c++) {
        size_t m;
        const uint32_t *idx = roost_partition_client(p, c, &m);
        assert_true(m >= 1);
        for (size_t j = 0; j < m; j++) {
            assert_true(idx[j] < n);
            assert_int_equal(seen[idx[j]], 0);
            seen[idx[j]] = 1;
            if (j > 0)
                assert_true(idx[j - 1] < idx[j]);
        }
        total += m;
    }
    assert_int_equal(total, n);
    free(seen);
}

static bool
partitions_equal(const roost_partition *a, const roost_partition *b)
{
    if (roost_partition_num_clients(a) != roost_partition_num_clients(b))
        return false;
    for (uint32_t c = 0; c < roost_partition_num_clients(a); c++) {
        size_t na, nb;
        const uint32_t *ia = roost_partition_client(a, c, &na);
        const uint32_t *ib = roost_partition_client(b, c, &nb);
        if (na != nb || memcmp(ia, ib, na * sizeof(uint32_t)) != 0)
            return false;
    }
    return true;
}

static roost_partition *
make(const char *spec_text, const uint8_t *labels, size_t n, uint32_t classes,
     uint32_t clients, uint64_t seed)
{
    roost_partition_spec spec;
    roost_errmsg em;
    roost_partition *p;
    assert_int_equal(roost_partition_spec_parse(&spec, spec_text, &em),
                     ROOST_OK);
    int rc = roost_partition_create(&p, NULL, &spec, labels, n, classes,
                                    clients, seed, &em);
    if (rc != ROOST_OK)
        print_error("%s\n", em.text);
    assert_int_equal(rc, ROOST_OK);
    return p;
}

/* Number of distinct labels client c holds, and the largest class share. */
static uint32_t
client_label_stats(const roost_partition *p, uint32_t c, const uint8_t *labels,
                   double *max_share)
{
    size_t hist[256] = {0}, m, top = 0;
    const uint32_t *idx = roost_partition_client(p, c, &m);
    for (size_t j = 0; j < m; j++)
        hist[labels[idx[j]]]++;
    uint32_t distinct = 0;
    for (int k = 0; k < 256; k++) {
        distinct += hist[k] > 0;
        if (hist[k] > top)
            top = hist[k];
    }
    if (max_share != NULL)
        *max_share = (double)top / (double)m;
    return distinct;
}

static void
iid_equal_split_and_deterministic(void **state)
{
    (void)state;
    const size_t n = 6001;
    uint8_t *labels = balanced_labels(n, 10);
    roost_partition *a = make("iid", labels, n, 10, 7, 42);
    roost_partition *b = make("iid", labels, n, 10, 7, 42);
    roost_partition *c = make("iid", labels, n, 10, 7, 43);
    assert_exact_cover(a, n);
    for (uint32_t k = 0; k < 7; k++) {
        size_t m;
        roost_partition_client(a, k, &m);
        assert_true(m == n / 7 || m == n / 7 + 1);
    }
    assert_true(partitions_equal(a, b));
    assert_false(partitions_equal(a, c));
    /* IID needs no labels. */
    roost_partition_spec spec = {.kind = ROOST_PARTITION_IID};
    roost_partition *d;
    assert_int_equal(
        roost_partition_create(&d, NULL, &spec, NULL, n, 0, 7, 42, NULL),
        ROOST_OK);
    assert_true(partitions_equal(a, d));
    /* One client per example. */
    roost_partition *e = make("iid", labels, 50, 10, 50, 1);
    assert_exact_cover(e, 50);
    roost_partition_destroy(a);
    roost_partition_destroy(b);
    roost_partition_destroy(c);
    roost_partition_destroy(d);
    roost_partition_destroy(e);
    roost_partition_destroy(NULL);
    free(labels);
}

static void
shards_two_labels_per_client(void **state)
{
    (void)state;
    /* 30 clients x 2 shards = 60 shards of 100; each class (600) is
     * exactly 6 shards, so no shard straddles two labels. */
    const size_t n = 6000;
    uint8_t *labels = balanced_labels(n, 10);
    roost_partition *p = make("shards", labels, n, 10, 30, 7);
    assert_exact_cover(p, n);
    uint32_t two = 0;
    for (uint32_t c = 0; c < 30; c++) {
        size_t m;
        roost_partition_client(p, c, &m);
        assert_int_equal(m, 200);
        uint32_t distinct = client_label_stats(p, c, labels, NULL);
        assert_true(distinct >= 1 && distinct <= 2);
        two += distinct == 2;
    }
    /* Random dealing gives most clients two different labels. */
    assert_true(two >= 20);
    roost_partition *q = make("shards:2", labels, n, 10, 30, 7);
    roost_partition *r = make("shards:2", labels, n, 10, 30, 8);
    assert_true(partitions_equal(p, q));
    assert_false(partitions_equal(p, r));
    roost_partition_destroy(p);
    roost_partition_destroy(q);
    roost_partition_destroy(r);

    /* shards:3 with sizes that do not divide: 7 clients x 3 = 21 shards
     * of 6000/21 (285 or 286); at most 3 labels + straddles. Each shard
     * is within one class or straddles one boundary, so <= 6 labels, and
     * sizes are 3 shards' worth. */
    p = make("shards:3", labels, n, 10, 7, 9);
    assert_exact_cover(p, n);
    for (uint32_t c = 0; c < 7; c++) {
        size_t m;
        roost_partition_client(p, c, &m);
        assert_true(m >= 3 * (n / 21) && m <= 3 * (n / 21 + 1));
        assert_true(client_label_stats(p, c, labels, NULL) <= 6);
    }
    roost_partition_destroy(p);
    free(labels);
}

static void
shards_on_fashion_mnist(void **state)
{
    (void)state;
    roost_dataset *ds;
    roost_errmsg em;
    int rc = roost_dataset_load_fmnist(&ds, NULL, NULL, ROOST_SPLIT_TRAIN, &em);
    if (rc != ROOST_OK)
        print_error("%s\n", em.text);
    assert_int_equal(rc, ROOST_OK);
    /* The FedAvg paper's setup: 100 clients, 200 shards of 300. */
    const uint8_t *labels = roost_dataset_labels(ds);
    size_t n = roost_dataset_count(ds);
    roost_partition *p = make("shards", labels, n, 10, 100, 2017);
    assert_exact_cover(p, n);
    for (uint32_t c = 0; c < 100; c++) {
        size_t m;
        roost_partition_client(p, c, &m);
        assert_int_equal(m, 600);
        assert_true(client_label_stats(p, c, labels, NULL) <= 2);
    }
    roost_partition_destroy(p);
    roost_dataset_destroy(ds);
}

/* Mean over clients of the largest class share. */
static double
mean_max_share(const roost_partition *p, const uint8_t *labels)
{
    double sum = 0.0;
    uint32_t k = roost_partition_num_clients(p);
    for (uint32_t c = 0; c < k; c++) {
        double share;
        client_label_stats(p, c, labels, &share);
        sum += share;
    }
    return sum / k;
}

static void
dirichlet_skew_follows_alpha(void **state)
{
    (void)state;
    const size_t n = 6000;
    uint8_t *labels = balanced_labels(n, 10);
    roost_partition *skewed = make("dirichlet:0.05", labels, n, 10, 20, 3);
    roost_partition *mid = make("dirichlet:0.5", labels, n, 10, 20, 3);
    roost_partition *flat = make("dirichlet:1000", labels, n, 10, 20, 3);
    assert_exact_cover(skewed, n);
    assert_exact_cover(mid, n);
    assert_exact_cover(flat, n);
    double s = mean_max_share(skewed, labels);
    double m = mean_max_share(mid, labels);
    double f = mean_max_share(flat, labels);
    print_message("mean largest class share: alpha 0.05 %.3f, 0.5 %.3f, "
                  "1000 %.3f\n",
                  s, m, f);
    assert_true(s > 0.7);
    assert_true(s > m && m > f);
    /* Near uniform: ten classes of ~30 examples per client. */
    assert_true(f < 0.2);
    roost_partition *again = make("dirichlet:0.05", labels, n, 10, 20, 3);
    roost_partition *other = make("dirichlet:0.05", labels, n, 10, 20, 4);
    assert_true(partitions_equal(skewed, again));
    assert_false(partitions_equal(skewed, other));
    roost_partition_destroy(skewed);
    roost_partition_destroy(mid);
    roost_partition_destroy(flat);
    roost_partition_destroy(again);
    roost_partition_destroy(other);
    free(labels);
}

/* The share of class k given to client c is a Dir(alpha) coordinate, whose
 * variance is (1/K)(1 - 1/K) / (K alpha + 1). Check it over 256 classes,
 * for an alpha below 1 (the boosted Gamma path) and above 1. */
static void
dirichlet_variance_matches(void **state)
{
    (void)state;
    const uint32_t classes = 256, clients = 10;
    const size_t per_class = 2000, n = per_class * classes;
    uint8_t *labels = balanced_labels(n, classes);
    const char *specs[] = {"dirichlet:0.3", "dirichlet:3"};
    const double alphas[] = {0.3, 3.0};
    size_t *counts = calloc((size_t)classes * clients, sizeof(size_t));
    assert_non_null(counts);
    for (int t = 0; t < 2; t++) {
        roost_partition *p = make(specs[t], labels, n, classes, clients, 11);
        memset(counts, 0, (size_t)classes * clients * sizeof(size_t));
        for (uint32_t c = 0; c < clients; c++) {
            size_t m;
            const uint32_t *idx = roost_partition_client(p, c, &m);
            for (size_t j = 0; j < m; j++)
                counts[(size_t)labels[idx[j]] * clients + c]++;
        }
        double sum2 = 0.0, mean = 1.0 / clients;
        for (size_t i = 0; i < (size_t)classes * clients; i++) {
            double share = (double)counts[i] / (double)per_class;
            sum2 += (share - mean) * (share - mean);
        }
        double var = sum2 / (double)(classes * clients);
        double expect = mean * (1.0 - mean) / (clients * alphas[t] + 1.0);
        print_message("alpha %g: share variance %.5f, Dirichlet %.5f\n",
                      alphas[t], var, expect);
        assert_rel_near(var, expect, 0.2);
        roost_partition_destroy(p);
    }
    free(counts);
    free(labels);
}

static void
dirichlet_never_leaves_a_client_empty(void **state)
{
    (void)state;
    /* alpha this small puts almost each class on one client, so most of
     * 200 clients would be empty without the fix-up. */
    const size_t n = 1000;
    uint8_t *labels = balanced_labels(n, 10);
    roost_partition *p = make("dirichlet:0.001", labels, n, 10, 200, 5);
    assert_exact_cover(p, n);
    /* Extreme: as many clients as examples. */
    roost_partition *q = make("dirichlet:0.01", labels, n, 10, 1000, 5);
    assert_exact_cover(q, n);
    roost_partition_destroy(p);
    roost_partition_destroy(q);
    free(labels);
}

static void
specs_parse_and_format(void **state)
{
    (void)state;
    roost_partition_spec spec;
    char buf[64];
    size_t len;
    assert_int_equal(roost_partition_spec_parse(&spec, "iid", NULL), ROOST_OK);
    assert_int_equal(spec.kind, ROOST_PARTITION_IID);
    assert_int_equal(roost_partition_spec_parse(&spec, "shards", NULL),
                     ROOST_OK);
    assert_int_equal(spec.kind, ROOST_PARTITION_SHARDS);
    assert_int_equal(spec.shards_per_client, 2);
    assert_int_equal(roost_partition_spec_parse(&spec, "shards:5", NULL),
                     ROOST_OK);
    assert_int_equal(spec.shards_per_client, 5);
    assert_int_equal(roost_partition_spec_format(&spec, buf, sizeof(buf), &len),
                     ROOST_OK);
    assert_string_equal(buf, "shards:5");
    assert_int_equal(roost_partition_spec_parse(&spec, "dirichlet:0.5", NULL),
                     ROOST_OK);
    assert_int_equal(spec.kind, ROOST_PARTITION_DIRICHLET);
    assert_near(spec.alpha, 0.5, 0.0);
    assert_int_equal(roost_partition_spec_format(&spec, buf, sizeof(buf), &len),
                     ROOST_OK);
    assert_string_equal(buf, "dirichlet:0.5");
    assert_int_equal(roost_partition_spec_format(&spec, buf, 4, &len),
                     ROOST_ETOOSMALL);
    assert_int_equal(len, strlen("dirichlet:0.5"));
    roost_partition_spec again;
    assert_int_equal(roost_partition_spec_parse(&spec, "dirichlet:.1", NULL),
                     ROOST_OK);
    assert_int_equal(roost_partition_spec_format(&spec, buf, sizeof(buf), &len),
                     ROOST_OK);
    assert_int_equal(roost_partition_spec_parse(&again, buf, NULL), ROOST_OK);
    assert_true(again.alpha == spec.alpha);
}

static void
bad_specs_refused(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "IID",
        "iid ",
        "shards:",
        "shards:0",
        "shards:-1",
        "shards: 2",
        "shards:2x",
        "shards:+2",
        "shards:99999999999999999999",
        "dirichlet",
        "dirichlet:",
        "dirichlet:0",
        "dirichlet:-1",
        "dirichlet:abc",
        "dirichlet:inf",
        "dirichlet:nan",
        "dirichlet:1e9",
        "dirichlet:0.5x",
        "dirichlet:1e-9",
        "random",
        "shards:1000001",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        roost_partition_spec spec;
        roost_errmsg em;
        int rc = roost_partition_spec_parse(&spec, bad[i], &em);
        if (rc != ROOST_ECONFIG)
            print_error("spec \"%s\" gave %d\n", bad[i], rc);
        assert_int_equal(rc, ROOST_ECONFIG);
        assert_true(strlen(em.text) > 0);
    }
    roost_errmsg em;
    roost_partition_spec spec;
    assert_int_equal(roost_partition_spec_parse(&spec, "dirichlet", &em),
                     ROOST_ECONFIG);
    assert_non_null(strstr(em.text, "dirichlet:0.5"));
    assert_int_equal(roost_partition_spec_parse(NULL, "iid", NULL),
                     ROOST_EINVAL);
}

static void
bad_arguments_refused(void **state)
{
    (void)state;
    const size_t n = 100;
    uint8_t *labels = balanced_labels(n, 10);
    roost_partition_spec iid = {.kind = ROOST_PARTITION_IID};
    roost_partition_spec shards = {.kind = ROOST_PARTITION_SHARDS,
                                   .shards_per_client = 2};
    roost_partition_spec dir = {.kind = ROOST_PARTITION_DIRICHLET,
                                .alpha = 0.0};
    roost_partition *p = (roost_partition *)&p; /* must be reset to NULL */
    roost_errmsg em;
    assert_int_equal(
        roost_partition_create(&p, NULL, &iid, labels, n, 10, 0, 1, &em),
        ROOST_EINVAL);
    assert_null(p);
    assert_int_equal(
        roost_partition_create(&p, NULL, &iid, labels, n, 10, 101, 1, &em),
        ROOST_EINVAL);
    assert_int_equal(
        roost_partition_create(&p, NULL, &iid, labels, 0, 10, 1, 1, &em),
        ROOST_EINVAL);
    /* 51 clients x 2 shards > 100 examples. */
    assert_int_equal(
        roost_partition_create(&p, NULL, &shards, labels, n, 10, 51, 1, &em),
        ROOST_EINVAL);
    assert_int_equal(
        roost_partition_create(&p, NULL, &shards, NULL, n, 10, 5, 1, &em),
        ROOST_EINVAL);
    /* Label 9 with a declared 9 classes. */
    assert_int_equal(
        roost_partition_create(&p, NULL, &shards, labels, n, 9, 5, 1, &em),
        ROOST_EDATA);
    assert_non_null(strstr(em.text, "label 9"));
    assert_int_equal(
        roost_partition_create(&p, NULL, &dir, labels, n, 10, 5, 1, &em),
        ROOST_EINVAL);
    assert_null(p);
    free(labels);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(iid_equal_split_and_deterministic),
        cmocka_unit_test(shards_two_labels_per_client),
        cmocka_unit_test(shards_on_fashion_mnist),
        cmocka_unit_test(dirichlet_skew_follows_alpha),
        cmocka_unit_test(dirichlet_variance_matches),
        cmocka_unit_test(dirichlet_never_leaves_a_client_empty),
        cmocka_unit_test(specs_parse_and_format),
        cmocka_unit_test(bad_specs_refused),
        cmocka_unit_test(bad_arguments_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
