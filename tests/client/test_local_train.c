/*
 * test_local_train.c - the local trainer's plain (non-DP) minibatch loop:
 * the training loss and accuracy it reports for an epoch are means over
 * the epoch's examples, also when the last minibatch is partial.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "client/src/local_train.h"
#include "test_util.h"

/*
 * Five examples in minibatches of 4: one full batch and one of a single
 * example. With a learning rate too small to move any float parameter the
 * model is the same for every step, so the epoch's mean training loss and
 * accuracy must be the evaluation of the initial parameters on all five
 * examples, each example weighted once (not the mean of the two batch
 * means, which would count the lone example as much as the other four).
 */
static void
partial_last_batch_weighs_each_example_once(void **state)
{
    (void)state;
    enum { N = 5, DIM = 6 };
    roost_errmsg em;
    roost_model *m;
    assert_int_equal(
        roost_model_create(&m, NULL, "dense:4,tanh,dense:3", 1, 2, 3, &em),
        ROOST_OK);
    roost_rng *rng;
    assert_int_equal(roost_rng_create_insecure_deterministic(&rng, NULL, 77, 0),
                     ROOST_OK);
    size_t np = roost_model_param_count(m);
    float *global = calloc(np, sizeof(float));
    float *params = calloc(np, sizeof(float));
    assert_non_null(global);
    assert_non_null(params);
    assert_int_equal(roost_model_init_params(m, global, rng), ROOST_OK);
    float x[N * DIM];
    uint8_t y[N];
    for (size_t i = 0; i < N * DIM; i++) {
        double u;
        assert_int_equal(roost_rng_uniform(rng, &u), ROOST_OK);
        x[i] = (float)(4.0 * u - 2.0);
    }
    for (size_t i = 0; i < N; i++)
        y[i] = (uint8_t)(i % 3);
    roost_dataset *ds;
    assert_int_equal(
        roost_dataset_create_from_arrays(&ds, NULL, N, 1, 2, 3, x, y, 3, &em),
        ROOST_OK);
    double want_loss, want_acc;
    assert_int_equal(roost_local_evaluate(m, NULL, ds, NULL, N, global,
                                          &want_loss, &want_acc, &em),
                     ROOST_OK);
    roost_local_task task = {
        .local_epochs = 1, .batch_size = 4, .learning_rate = 1e-30};
    roost_local_source src = {.model = m};
    roost_local_trainer *t;
    assert_int_equal(roost_local_trainer_create(&t, NULL, &src, ds, NULL, N,
                                                global, params, &task, rng,
                                                &em),
                     ROOST_OK);
    bool done = false;
    int steps = 0;
    while (!done) {
        assert_int_equal(roost_local_trainer_step(t, &done, &em), ROOST_OK);
        steps++;
    }
    assert_int_equal(steps, 2);
    /* Only the zero biases can move, by about 1e-30. */
    for (size_t j = 0; j < np; j++)
        assert_true(fabsf(params[j] - global[j]) < 1e-20f);
    roost_local_result res;
    roost_local_trainer_result(t, &res);
    assert_rel_near(res.loss, want_loss, 1e-5);
    assert_near(res.accuracy, want_acc, 1e-12);
    roost_local_trainer_destroy(t);
    roost_dataset_destroy(ds);
    roost_rng_destroy(rng);
    roost_model_destroy(m);
    free(global);
    free(params);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(partial_last_batch_weighs_each_example_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
