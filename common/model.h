/*
 * model.h - feed-forward models described by a spec string, trained with
 * OpenBLAS.
 *
 * A model is a sequence of layers written as a comma-separated spec:
 *
 *   dense:N     fully connected layer with N outputs (flattens its input)
 *   conv:CxK    2-D convolution, C output channels, KxK kernel (K odd),
 *               stride 1, "same" zero padding
 *   maxpool:K   KxK max pooling with stride K (output size floor(H/K))
 *   relu, tanh  element-wise activations
 *
 * The last layer must be dense; its outputs are the class logits and the
 * loss is softmax cross-entropy. Presets: "mlp" (the FedAvg 2NN
 * dense:200,relu,dense:200,relu,dense:10), "cnn" (the FedAvg CNN
 * conv:32x5,relu,maxpool:2,conv:64x5,relu,maxpool:2,dense:512,relu,dense:10,
 * 1,663,370 parameters on 1x28x28) and "logreg" (dense:10).
 *
 * All parameters live in ONE contiguous float32 vector described by a
 * layout table (name, shape, offset), so an update, a checkpoint and a wire
 * payload are the same array. Weights use PyTorch's shapes: dense
 * [out, in], conv [out, in, k, k], bias [out].
 *
 * Objects:
 *   roost_model      the architecture and layout; immutable after create,
 *                    so any number of threads may share one.
 *   roost_workspace  every activation, gradient and scratch buffer for one
 *                    model at batch sizes up to max_batch, allocated once;
 *                    the training calls never allocate. One thread at a
 *                    time per workspace.
 * Parameter and gradient vectors are caller-owned arrays of
 * roost_model_param_count() floats.
 *
 * BLAS threads: the library never calls openblas_set_num_threads (that is
 * process-global state); programs choose (roost train --threads).
 */
#ifndef ROOST_COMMON_MODEL_H
#define ROOST_COMMON_MODEL_H

#include <roost/roost.h>

#include "common/error.h"
#include "common/rng.h"

#include <stddef.h>
#include <stdint.h>

typedef struct roost_model roost_model;
typedef struct roost_workspace roost_workspace;
typedef struct roost_sgd roost_sgd;

/* Limits on what a spec may ask for (a spec can arrive over the wire). */
#define ROOST_MODEL_MAX_LAYERS 64
#define ROOST_MODEL_MAX_UNITS 65536 /* dense outputs, conv channels */
#define ROOST_MODEL_MAX_KERNEL 15   /* conv and pool kernel size */
#define ROOST_MODEL_MAX_PARAMS ((size_t)1 << 28) /* 1 GiB of float32 */
#define ROOST_MODEL_MAX_CLASSES 256
#define ROOST_MODEL_NAME_CAP 32

/* One entry of the layout table: a parameter tensor inside the vector. */
typedef struct roost_param_info {
    char name[ROOST_MODEL_NAME_CAP]; /* e.g. "conv1.weight", "dense3.bias" */
    uint32_t ndims;                  /* 1..4 */
    uint32_t shape[4];
    size_t offset; /* in floats from the start of the vector */
    size_t count;  /* product of shape */
} roost_param_info;

/*
 * roost_model_create - parse spec (a preset name or a layer list) for
 * inputs of channels x height x width and build the model. alloc may be
 * NULL; the model keeps the pointer. On a bad spec returns ROOST_ESPEC and
 * em says where (character position, 1-based) and why; ROOST_EINVAL for
 * NULL or zero arguments; ROOST_ETOOBIG when the model would exceed the
 * limits above; ROOST_ENOMEM. *out is NULL on failure.
 */
int roost_model_create(roost_model **out, const roost_allocator *alloc,
                       const char *spec, uint32_t channels, uint32_t height,
                       uint32_t width, roost_errmsg *em);

/* roost_model_destroy - free the model; NULL does nothing. */
void roost_model_destroy(roost_model *m);

/* roost_model_spec - the expanded spec (presets replaced by their layer
 * list), owned by the model. */
const char *roost_model_spec(const roost_model *m);
/* Number of float32 parameters. */
size_t roost_model_param_count(const roost_model *m);
/* Floats per input example (channels * height * width). */
size_t roost_model_input_dim(const roost_model *m);
/* Number of classes (outputs of the last dense layer). */
uint32_t roost_model_num_classes(const roost_model *m);
/* Number of entries of the layout table, and entry i (i < count). */
size_t roost_model_layout_count(const roost_model *m);
const roost_param_info *roost_model_layout(const roost_model *m, size_t i);

/*
 * roost_model_init_params - fill params (param_count floats) with a fresh
 * initialisation drawn from rng: He-uniform U(-sqrt(6/fan_in), +) for
 * weights followed by relu, Glorot-uniform U(-sqrt(6/(fan_in+fan_out)), +)
 * otherwise; biases zero. Initialisation needs no secrecy, so a seeded
 * (insecure deterministic) rng is the right choice for reproducibility.
 * Returns ROOST_OK or the rng's error.
 */
int roost_model_init_params(const roost_model *m, float *params,
                            roost_rng *rng);

/* FLOPs (multiply-add = 2) of the GEMMs of one training step (forward and
 * backward) at batch size batch; used for GFLOP/s figures. */
double roost_model_train_flops(const roost_model *m, size_t batch);

/* One GEMM of a training step, for benchmarks that time a plain sgemm of
 * exactly the shapes the model issues (row-major, C = op(A) op(B)). */
typedef struct roost_gemm_shape {
    int trans_a, trans_b; /* 0 or 1 */
    size_t m, n, k;
} roost_gemm_shape;

/* roost_model_gemm_shapes - write up to cap shapes of one training step at
 * batch size batch to out; *count receives the total number (so cap 0
 * asks for the count). */
void roost_model_gemm_shapes(const roost_model *m, size_t batch,
                             roost_gemm_shape *out, size_t cap, size_t *count);

/*
 * roost_workspace_create - buffers for m at batch sizes 1..max_batch. The
 * workspace refers to m, which must outlive it. Returns ROOST_OK,
 * ROOST_EINVAL (max_batch 0), ROOST_ETOOBIG (buffers beyond SIZE_MAX or
 * 16 GiB), ROOST_ENOMEM; *out is NULL on failure.
 */
int roost_workspace_create(roost_workspace **out, const roost_model *m,
                           size_t max_batch, roost_errmsg *em);
/* roost_workspace_destroy - NULL does nothing. */
void roost_workspace_destroy(roost_workspace *ws);
/* Of the batch behind the workspace's last loss (training step, gradient
 * or evaluation batch): how many examples had their largest logit at
 * their label, i.e. were classified correctly before the update. */
size_t roost_workspace_correct(const roost_workspace *ws);
/* Bytes held by the workspace's buffers. */
size_t roost_workspace_bytes(const roost_workspace *ws);
size_t roost_workspace_max_batch(const roost_workspace *ws);

/*
 * roost_model_grad - one fused forward and backward pass over a batch:
 * grad = (1/batch) * sum_i dloss_i/dparams (overwritten, param_count
 * floats), *loss_out = mean cross-entropy (may be NULL).
 * x: batch x input_dim floats, row-major (channels x height x width per
 * row); labels: batch bytes, each < num_classes.
 * Returns ROOST_OK, ROOST_EINVAL (batch 0 or > max_batch, label out of
 * range, NULL pointer).
 */
int roost_model_grad(roost_workspace *ws, const float *params, const float *x,
                     const uint8_t *labels, size_t batch, float *grad,
                     double *loss_out);

/*
 * roost_model_sgd_step - one training step with the update fused into the
 * backward pass: the same result as roost_model_grad followed by
 * roost_sgd_step(opt, params, grad, global_params), up to float rounding,
 * but with no gradient vector: each layer's weight-gradient GEMM writes
 * into the optimiser's velocity (or, without momentum, straight into the
 * weights) and the layer is updated while that memory is in cache. This
 * is the fast path for small batches. opt must be for param_count floats;
 * global_params as for roost_sgd_step. params is updated in place.
 */
int roost_model_sgd_step(roost_workspace *ws, float *params, const float *x,
                         const uint8_t *labels, size_t batch, roost_sgd *opt,
                         const float *global_params, double *loss_out);

/*
 * Per-example gradients for DP-SGD, in two passes that never materialise
 * batch full gradients.
 *
 * Pass 1, roost_model_example_norms: forward and backward over the batch,
 * keeping every layer's input activation and output delta in the
 * workspace, and writing norms_sq[i] = ||g_i||^2, the squared L2 norm over
 * ALL parameters of example i's gradient g_i = dloss_i/dparams (loss NOT
 * divided by the batch size). Dense layers use the outer-product identity
 * ||delta_i a_i^T||^2 = ||delta_i||^2 ||a_i||^2 ("ghost norm"); conv layers
 * compute the Cout x (Cin k k) per-example weight gradient from the im2col
 * matrix one example at a time into a small scratch. *loss_sum_out (may be
 * NULL) receives sum_i loss_i.
 *
 * Pass 2, roost_model_weighted_grad: grad = sum_i weights[i] * g_i for the
 * batch of the preceding pass 1 on the same workspace (e.g. weights[i] =
 * min(1, C / ||g_i||) gives the clipped sum of DP-SGD). Each layer's
 * weight gradient is one GEMM with the delta matrix row-scaled by the
 * weights; nothing is recomputed but the scaling. The saved deltas are
 * consumed: call pass 1 again before another pass 2.
 *
 * Returns ROOST_OK, ROOST_EINVAL (as roost_model_grad), ROOST_ESTATE (pass
 * 2 without a pass 1).
 */
int roost_model_example_norms(roost_workspace *ws, const float *params,
                              const float *x, const uint8_t *labels,
                              size_t batch, double *norms_sq,
                              double *loss_sum_out);
int roost_model_weighted_grad(roost_workspace *ws, const float *weights,
                              float *grad);
/* roost_model_weighted_grad_add - as roost_model_weighted_grad but adds
 * sum_i weights[i] * g_i to grad (for summing micro-batches without a
 * second buffer). */
int roost_model_weighted_grad_add(roost_workspace *ws, const float *weights,
                                  float *grad);

/*
 * roost_model_forward - logits (batch x num_classes, owned by the
 * workspace, valid until its next use) for a batch; for prediction.
 */
int roost_model_forward(roost_workspace *ws, const float *params,
                        const float *x, size_t batch, const float **logits);

/*
 * roost_model_evaluate - mean cross-entropy and accuracy (in [0, 1]) of
 * params on n examples (x: n x input_dim, labels: n), in batches of the
 * workspace's max_batch. Either output may be NULL. ROOST_EINVAL on n 0 or
 * a label out of range.
 */
int roost_model_evaluate(roost_workspace *ws, const float *params,
                         const float *x, const uint8_t *labels, size_t n,
                         double *loss_out, double *accuracy_out);

/* ------------------------------------------------------------------ SGD */

/* SGD hyper-parameters, PyTorch's semantics: with
 * d = grad + weight_decay * w + prox_mu * (w - w_global),
 * v = momentum * v + d (v starts at 0), w -= lr * v. */
typedef struct roost_sgd_config {
    float lr;
    float momentum;     /* 0 disables the velocity buffer */
    float weight_decay; /* L2 coefficient, 0 for none */
    float prox_mu;      /* FedProx mu, 0 for none */
} roost_sgd_config;

/* roost_sgd_create - an optimiser for vectors of n floats. Returns
 * ROOST_OK, ROOST_EINVAL (n 0, negative or non-finite hyper-parameter),
 * ROOST_ENOMEM. */
int roost_sgd_create(roost_sgd **out, const roost_allocator *alloc, size_t n,
                     const roost_sgd_config *cfg, roost_errmsg *em);
void roost_sgd_destroy(roost_sgd *opt);
/* roost_sgd_reset - forget the velocity (e.g. at the start of a round). */
void roost_sgd_reset(roost_sgd *opt);
/* roost_sgd_set_lr - change the learning rate (schedules); ROOST_EINVAL
 * unless lr is finite and >= 0. */
int roost_sgd_set_lr(roost_sgd *opt, float lr);
/* roost_sgd_state - the optimiser's settings, its velocity buffer (NULL
 * without momentum) and its vector length; for fused update paths. */
void roost_sgd_state(roost_sgd *opt, roost_sgd_config *cfg, float **velocity,
                     size_t *n);
/* roost_sgd_step - update params in place from grad. global_params is the
 * FedProx anchor w_global (n floats); it may be NULL when prox_mu is 0. */
int roost_sgd_step(roost_sgd *opt, float *params, const float *grad,
                   const float *global_params);
/* roost_sgd_step_range - roost_sgd_step on coordinates [off, off + count)
 * only (params, grad and global_params are still whole vectors): a step
 * done range by range equals one whole step. ROOST_EINVAL if the range
 * does not fit. */
int roost_sgd_step_range(roost_sgd *opt, float *params, const float *grad,
                         const float *global_params, size_t off, size_t count);

#endif
