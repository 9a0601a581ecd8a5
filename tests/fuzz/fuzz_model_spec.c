/*
 * fuzz_model_spec.c - libFuzzer target for the model spec parser, which
 * reads specs that arrive over the wire in a task.
 *
 * Input: byte 0 picks the channels (1..4), bytes 1 and 2 the height and
 * width (1..32); the rest is the spec text. Accepted models small enough
 * to run cheaply also get a workspace and one fused gradient, one
 * per-example pass 1 and one pass 2, so the shape bookkeeping behind every
 * accepted spec is exercised under ASan.
 */
#include "common/model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > 4096 + 3)
        return 0;
    uint32_t c = 1u + data[0] % 4u, h = 1u + data[1] % 32u,
             w = 1u + data[2] % 32u;
    char spec[4097];
    memcpy(spec, data + 3, size - 3);
    spec[size - 3] = '\0';
    roost_model *m;
    roost_errmsg em;
    if (roost_model_create(&m, NULL, spec, c, h, w, &em) != ROOST_OK)
        return 0;
    size_t np = roost_model_param_count(m), dim = roost_model_input_dim(m);
    if (np > 4096 || dim > 256 || strlen(spec) > 64) {
        roost_model_destroy(m);
        return 0;
    }
    roost_workspace *ws;
    if (roost_workspace_create(&ws, m, 2, &em) == ROOST_OK) {
        float *params = calloc(np, sizeof(float));
        float *grad = calloc(np, sizeof(float));
        float *x = calloc(2 * dim, sizeof(float));
        if (params && grad && x) {
            for (size_t i = 0; i < np; i++)
                params[i] = (float)(i % 7) * 0.1f - 0.3f;
            for (size_t i = 0; i < 2 * dim; i++)
                x[i] = (float)(i % 5) * 0.2f;
            uint8_t labels[2] = {0, (uint8_t)(roost_model_num_classes(m) - 1)};
            double loss, norms[2];
            float weights[2] = {0.5f, 1.0f};
            roost_model_grad(ws, params, x, labels, 2, grad, &loss);
            roost_model_example_norms(ws, params, x, labels, 2, norms, NULL);
            roost_model_weighted_grad(ws, weights, grad);
        }
        free(params);
        free(grad);
        free(x);
        roost_workspace_destroy(ws);
    }
    roost_model_destroy(m);
    return 0;
}
