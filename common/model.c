/*
 * model.c - spec parser, parameter layout, and the forward/backward passes
 * of dense, conv2d, maxpool, relu and tanh layers with a softmax
 * cross-entropy loss, all on OpenBLAS sgemm.
 *
 * Execution plan. The parsed layers become "ops": a dense or conv layer
 * absorbs an activation that directly follows it (bias + activation are
 * applied in one pass over the GEMM output, and the backward pass takes the
 * activation's derivative from the stored output), maxpool and any other
 * activation stay ops of their own. A maxpool right after a conv takes over
 * the conv's bias and activation (applied to the pooled values, see
 * struct op's pool_fused) and, in the backward pass, the derivative.
 *
 * Memory layout. Flat tensors are batch x features, row-major. Spatial
 * tensors (conv and pool outputs) are stored channel-major across the
 * batch, C x B x (H*W) ("CBHW"): then one sgemm covers a chunk of several
 * examples of a conv layer, W (Cout x Cin*k*k) times the im2col matrix
 * (Cin*k*k x examples*H*W), and writes straight into the output, which is
 * already the next layer's input layout. Chunks are sized so the im2col
 * matrix (and the input-gradient columns of the backward pass) stay in
 * cache between being written and being read by the GEMM; the backward
 * pass rebuilds them rather than keeping a batch-sized copy in memory. With one
 * channel CBHW and BCHW coincide, so the 1x28x28 input is used in place; a
 * dense layer after a multi-channel spatial tensor transposes into its own flat
 * buffer (PyTorch's flatten order C, H, W).
 *
 * Invariants. Every buffer is sized for max_batch when the workspace is
 * created; the training calls only index into them, never allocate. After a
 * forward pass, out[i] holds op i's output for the current batch (for a
 * conv with pool_fused, its GEMM output before bias and activation); after a
 * backward pass, gout[i] of a dense or conv op holds that op's delta (the
 * gradient with respect to its pre-activation output), which is what pass 2
 * of the per-example API reuses.
 *
 * No locking: a roost_model is read-only after creation; a workspace
 * belongs to one thread at a time.
 */
#include "common/model.h"

#include "common/alloc.h"

#include <cblas.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

enum op_kind { OP_DENSE, OP_CONV, OP_POOL, OP_RELU, OP_TANH };
enum act_kind { ACT_NONE, ACT_RELU, ACT_TANH };

struct op {
    enum op_kind kind;
    enum act_kind act; /* fused activation of a dense or conv op */
    size_t spec_index; /* index of the layer in the spec */
    /* Input and output shapes per example. Flat tensors have h = w = 1. */
    size_t in_c, in_h, in_w, out_c, out_h, out_w;
    size_t in_size, out_size;
    bool in_cbhw;  /* input stored C x B x HW with C > 1 */
    bool out_cbhw; /* output stored C x B x HW with C > 1 */
    size_t k;      /* conv kernel or pool size */
    size_t kdim;   /* conv: in_c * k * k; dense: in_size */
    size_t w_off, b_off;
    /* A conv op followed directly by a maxpool leaves its raw GEMM output
     * (no bias, no activation) in out, and the pool applies the bias and
     * activation to the pooled values instead: max commutes with adding a
     * per-channel constant and with a nondecreasing activation, so the
     * result is the same at 1/k^2 of the element-wise work. The pool's
     * backward pass then applies the activation's derivative, taken from its
     * own output, while it writes the conv's delta. Set on both ops; the
     * pool's act and b_off are the conv's. */
    bool pool_fused;
};

struct roost_model {
    const roost_allocator *alloc;
    char *spec;
    size_t n_ops;
    struct op ops[ROOST_MODEL_MAX_LAYERS];
    size_t n_params;
    size_t n_layout;
    roost_param_info layout[2 * ROOST_MODEL_MAX_LAYERS];
    size_t in_c, in_h, in_w, in_dim;
    size_t classes;
    bool input_cbhw; /* the first op wants CBHW and C > 1 */
};

struct roost_workspace {
    const roost_model *m;
    size_t max_batch;
    size_t batch;       /* batch of the last forward pass */
    size_t correct;     /* last loss: examples whose top logit was right */
    bool have_pass1;    /* deltas of a per-example pass 1 are saved */
    const float *input; /* the current batch's input (maybe ws->xin) */
    float *xin;         /* transposed input when input_cbhw */
    float *out[ROOST_MODEL_MAX_LAYERS];
    float *gout[ROOST_MODEL_MAX_LAYERS];
    float *flat[ROOST_MODEL_MAX_LAYERS]; /* dense: flattened CBHW input */
    uint32_t *argmax[ROOST_MODEL_MAX_LAYERS];
    float *col;       /* conv im2col chunk, shared */
    float *dcol;      /* conv input-gradient columns of a chunk, shared */
    float *pad;       /* zero-padded planes of a conv chunk, shared */
    float *flatgrad;  /* dense input gradient before transposing, shared */
    float *scratch;   /* per-example conv weight gradient, shared */
    void *block;      /* one allocation holding every float buffer */
    uint32_t *iblock; /* argmax indices */
    size_t bytes;
};

/* ------------------------------------------------------------------ spec */

static const struct {
    const char *name;
    const char *spec;
} presets[] = {
    {"mlp", "dense:200,relu,dense:200,relu,dense:10"},
    {"cnn", "conv:32x5,relu,maxpool:2,conv:64x5,relu,maxpool:2,dense:512,relu,"
            "dense:10"},
    {"logreg", "dense:10"},
};

/* One layer as written in the spec. */
struct layer_tok {
    enum op_kind kind;
    size_t a, b; /* dense: units; conv: channels, kernel; pool: size */
    size_t pos;  /* 1-based character position */
};

/* parse_num - a decimal number in [1, max] at s[*i..]; advances *i. */
static bool
parse_num(const char *s, size_t *i, size_t max, size_t *out)
{
    size_t v = 0, start = *i;
    while (isdigit((unsigned char)s[*i])) {
        v = v * 10 + (size_t)(s[*i] - '0');
        if (v > max) {
            *i = start;
            return false;
        }
        (*i)++;
    }
    if (*i == start || v == 0) {
        *i = start;
        return false;
    }
    *out = v;
    return true;
}

static int
parse_spec(const char *s, struct layer_tok *toks, size_t *n_out,
           roost_errmsg *em)
{
    size_t n = 0, i = 0;
    for (;;) {
        while (s[i] == ' ')
            i++;
        size_t pos = i + 1;
        const char *t = s + i;
        size_t len = 0;
        while (t[len] != ',' && t[len] != '\0' && t[len] != ' ')
            len++;
        if (len == 0)
            return roost_fail(em, ROOST_ESPEC,
                              "model spec position %zu: empty layer", pos);
        if (n == ROOST_MODEL_MAX_LAYERS)
            return roost_fail(em, ROOST_ESPEC,
                              "model spec position %zu: more than %d layers",
                              pos, ROOST_MODEL_MAX_LAYERS);
        struct layer_tok *lt = &toks[n];
        lt->pos = pos;
        lt->a = lt->b = 0;
        size_t j;
        if (len == 4 && strncmp(t, "relu", 4) == 0) {
            lt->kind = OP_RELU;
            j = 4;
        } else if (len == 4 && strncmp(t, "tanh", 4) == 0) {
            lt->kind = OP_TANH;
            j = 4;
        } else if (strncmp(t, "dense:", 6) == 0) {
            lt->kind = OP_DENSE;
            j = 6;
            if (!parse_num(t, &j, ROOST_MODEL_MAX_UNITS, &lt->a))
                return roost_fail(em, ROOST_ESPEC,
                                  "model spec position %zu: dense needs a "
                                  "unit count in 1..%d (dense:N)",
                                  pos + j, ROOST_MODEL_MAX_UNITS);
        } else if (strncmp(t, "conv:", 5) == 0) {
            lt->kind = OP_CONV;
            j = 5;
            if (!parse_num(t, &j, ROOST_MODEL_MAX_UNITS, &lt->a))
                return roost_fail(em, ROOST_ESPEC,
                                  "model spec position %zu: conv needs a "
                                  "channel count in 1..%d (conv:CxK)",
                                  pos + j, ROOST_MODEL_MAX_UNITS);
            if (t[j] != 'x')
                return roost_fail(em, ROOST_ESPEC,
                                  "model spec position %zu: expected 'x' "
                                  "then the kernel size (conv:CxK)",
                                  pos + j);
            j++;
            if (!parse_num(t, &j, ROOST_MODEL_MAX_KERNEL, &lt->b))
                return roost_fail(em, ROOST_ESPEC,
                                  "model spec position %zu: conv kernel size "
                                  "must be in 1..%d",
                                  pos + j, ROOST_MODEL_MAX_KERNEL);
            if (lt->b % 2 == 0)
                return roost_fail(em, ROOST_ESPEC,
                                  "model spec position %zu: conv kernel size "
                                  "%zu is even; 'same' padding needs an odd "
                                  "kernel",
                                  pos, lt->b);
        } else if (strncmp(t, "maxpool:", 8) == 0) {
            lt->kind = OP_POOL;
            j = 8;
            if (!parse_num(t, &j, ROOST_MODEL_MAX_KERNEL, &lt->a))
                return roost_fail(em, ROOST_ESPEC,
                                  "model spec position %zu: maxpool size "
                                  "must be in 1..%d",
                                  pos + j, ROOST_MODEL_MAX_KERNEL);
        } else {
            return roost_fail(em, ROOST_ESPEC,
                              "model spec position %zu: unknown layer '%.*s' "
                              "(expected dense:N, conv:CxK, maxpool:K, relu "
                              "or tanh)",
                              pos, (int)(len > 24 ? 24 : len), t);
        }
        if (j != len)
            return roost_fail(em, ROOST_ESPEC,
                              "model spec position %zu: unexpected '%c' "
                              "in layer '%.*s'",
                              pos + j, t[j], (int)(len > 24 ? 24 : len), t);
        n++;
        i += len;
        while (s[i] == ' ')
            i++;
        if (s[i] == '\0')
            break;
        if (s[i] != ',')
            return roost_fail(em, ROOST_ESPEC,
                              "model spec position %zu: expected ',' between "
                              "layers",
                              i + 1);
        i++;
    }
    *n_out = n;
    return ROOST_OK;
}

/* add_param - append a layout entry; the caller checked the counts. */
static void
add_param(roost_model *m, const char *kind, size_t index, const char *what,
          uint32_t ndims, const size_t *shape)
{
    roost_param_info *p = &m->layout[m->n_layout++];
    snprintf(p->name, sizeof(p->name), "%s%zu.%s", kind, index, what);
    p->ndims = ndims;
    p->count = 1;
    for (uint32_t d = 0; d < 4; d++) {
        p->shape[d] = d < ndims ? (uint32_t)shape[d] : 0;
        if (d < ndims)
            p->count *= shape[d];
    }
    p->offset = m->n_params;
    m->n_params += p->count;
}

static int
build_ops(roost_model *m, const struct layer_tok *toks, size_t n,
          roost_errmsg *em)
{
    size_t c = m->in_c, h = m->in_h, w = m->in_w;
    bool spatial = true; /* the input is an image (maybe 1x1) */
    /* The input arrives BCHW; it is stored CBHW (transposed on entry) only
     * when a conv or pool reads it, and then the tensors of the
     * element-wise ops before that conv or pool are CBHW too. */
    bool cbhw = false;
    size_t total = 0;
    if (toks[n - 1].kind != OP_DENSE)
        return roost_fail(em, ROOST_ESPEC,
                          "model spec position %zu: the last layer must be "
                          "dense (it produces the class logits)",
                          toks[n - 1].pos);
    if (toks[n - 1].a > ROOST_MODEL_MAX_CLASSES)
        return roost_fail(em, ROOST_ESPEC,
                          "model spec position %zu: %zu classes (at most %d)",
                          toks[n - 1].pos, toks[n - 1].a,
                          ROOST_MODEL_MAX_CLASSES);
    m->n_ops = 0;
    for (size_t i = 0; i < n; i++) {
        const struct layer_tok *t = &toks[i];
        struct op *o = &m->ops[m->n_ops];
        memset(o, 0, sizeof(*o));
        o->kind = t->kind;
        o->spec_index = i;
        o->in_c = c;
        o->in_h = h;
        o->in_w = w;
        o->in_size = c * h * w;
        if ((t->kind == OP_CONV || t->kind == OP_POOL) && !cbhw) {
            m->input_cbhw = c > 1;
            cbhw = true;
            for (size_t j = 0; j < m->n_ops; j++)
                m->ops[j].in_cbhw = m->ops[j].out_cbhw = c > 1;
        }
        o->in_cbhw = cbhw && c > 1;
        size_t wshape[4], bshape[1];
        switch (t->kind) {
        case OP_DENSE: {
            size_t in = c * h * w;
            size_t nw;
            if (!roost_size_mul(in, t->a, &nw) || nw > ROOST_MODEL_MAX_PARAMS)
                return roost_fail(em, ROOST_ETOOBIG,
                                  "model spec position %zu: dense layer too "
                                  "large",
                                  t->pos);
            o->kdim = in;
            o->out_c = t->a;
            o->out_h = o->out_w = 1;
            wshape[0] = t->a;
            wshape[1] = in;
            bshape[0] = t->a;
            total += nw + t->a;
            if (total > ROOST_MODEL_MAX_PARAMS)
                break;
            o->w_off = m->n_params;
            add_param(m, "dense", i, "weight", 2, wshape);
            o->b_off = m->n_params;
            add_param(m, "dense", i, "bias", 1, bshape);
            c = t->a;
            h = w = 1;
            spatial = false;
            cbhw = false;
            break;
        }
        case OP_CONV: {
            if (!spatial)
                return roost_fail(em, ROOST_ESPEC,
                                  "model spec position %zu: conv after a "
                                  "dense layer (its input is not an image)",
                                  t->pos);
            o->k = t->b;
            o->kdim = c * t->b * t->b;
            size_t nw;
            if (!roost_size_mul(o->kdim, t->a, &nw) ||
                nw > ROOST_MODEL_MAX_PARAMS)
                return roost_fail(em, ROOST_ETOOBIG,
                                  "model spec position %zu: conv layer too "
                                  "large",
                                  t->pos);
            total += nw + t->a;
            if (total > ROOST_MODEL_MAX_PARAMS)
                break;
            wshape[0] = t->a;
            wshape[1] = c;
            wshape[2] = wshape[3] = t->b;
            bshape[0] = t->a;
            o->w_off = m->n_params;
            add_param(m, "conv", i, "weight", 4, wshape);
            o->b_off = m->n_params;
            add_param(m, "conv", i, "bias", 1, bshape);
            c = t->a;
            break;
        }
        case OP_POOL:
            if (!spatial)
                return roost_fail(em, ROOST_ESPEC,
                                  "model spec position %zu: maxpool after a "
                                  "dense layer (its input is not an image)",
                                  t->pos);
            if (t->a > h || t->a > w)
                return roost_fail(em, ROOST_ESPEC,
                                  "model spec position %zu: maxpool:%zu on a "
                                  "%zux%zu input",
                                  t->pos, t->a, h, w);
            o->k = t->a;
            h /= t->a;
            w /= t->a;
            if (m->n_ops > 0 && m->ops[m->n_ops - 1].kind == OP_CONV) {
                struct op *conv = &m->ops[m->n_ops - 1];
                conv->pool_fused = o->pool_fused = true;
                o->act = conv->act;
                o->b_off = conv->b_off;
            }
            break;
        case OP_RELU:
        case OP_TANH:
            break;
        }
        if (total > ROOST_MODEL_MAX_PARAMS)
            return roost_fail(em, ROOST_ETOOBIG,
                              "model spec position %zu: more than %zu "
                              "parameters",
                              t->pos, ROOST_MODEL_MAX_PARAMS);
        o->out_c = c;
        o->out_h = h;
        o->out_w = w;
        o->out_size = c * h * w;
        o->out_cbhw = cbhw && c > 1;
        /* Fuse an activation into the dense or conv layer before it. */
        if ((t->kind == OP_RELU || t->kind == OP_TANH) && m->n_ops > 0) {
            struct op *prev = &m->ops[m->n_ops - 1];
            if ((prev->kind == OP_DENSE || prev->kind == OP_CONV) &&
                prev->act == ACT_NONE) {
                prev->act = t->kind == OP_RELU ? ACT_RELU : ACT_TANH;
                continue;
            }
        }
        m->n_ops++;
    }
    m->classes = toks[n - 1].a;
    return ROOST_OK;
}

int
roost_model_create(roost_model **out, const roost_allocator *alloc,
                   const char *spec, uint32_t channels, uint32_t height,
                   uint32_t width, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "model: NULL output pointer");
    *out = NULL;
    if (spec == NULL || channels == 0 || height == 0 || width == 0)
        return roost_fail(em, ROOST_EINVAL,
                          "model: NULL spec or zero input dimension");
    /* Two steps: channels * height fits 64 bits, but times width it can
     * wrap (to 0 for 2^22 x 2^21 x 2^21); bounded first, it cannot. */
    uint64_t plane = (uint64_t)channels * height;
    if (plane > ROOST_MODEL_MAX_PARAMS ||
        plane * width > ROOST_MODEL_MAX_PARAMS)
        return roost_fail(em, ROOST_ETOOBIG, "model: input too large");
    const char *text = spec;
    for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
        if (strcmp(spec, presets[i].name) == 0)
            text = presets[i].spec;
    if (strlen(text) > 4096)
        return roost_fail(em, ROOST_ESPEC, "model spec longer than 4096 bytes");

    struct layer_tok toks[ROOST_MODEL_MAX_LAYERS];
    size_t n = 0;
    int rc = parse_spec(text, toks, &n, em);
    if (rc != ROOST_OK)
        return rc;

    roost_model *m = roost_alloc_calloc(alloc, 1, sizeof(*m));
    if (m == NULL)
        return roost_fail(em, ROOST_ENOMEM, "model: out of memory");
    m->alloc = alloc;
    m->in_c = channels;
    m->in_h = height;
    m->in_w = width;
    m->in_dim = (size_t)channels * height * width;
    rc = build_ops(m, toks, n, em);
    if (rc == ROOST_OK) {
        size_t len = strlen(text) + 1;
        m->spec = roost_alloc_malloc(alloc, len);
        if (m->spec == NULL)
            rc = roost_fail(em, ROOST_ENOMEM, "model: out of memory");
        else
            memcpy(m->spec, text, len);
    }
    if (rc != ROOST_OK) {
        roost_model_destroy(m);
        return rc;
    }
    *out = m;
    return ROOST_OK;
}

void
roost_model_destroy(roost_model *m)
{
    if (m == NULL)
        return;
    roost_alloc_free(m->alloc, m->spec);
    roost_alloc_free(m->alloc, m);
}

const char *
roost_model_spec(const roost_model *m)
{
    return m->spec;
}

size_t
roost_model_param_count(const roost_model *m)
{
    return m->n_params;
}

size_t
roost_model_input_dim(const roost_model *m)
{
    return m->in_dim;
}

uint32_t
roost_model_num_classes(const roost_model *m)
{
    return (uint32_t)m->classes;
}

size_t
roost_model_layout_count(const roost_model *m)
{
    return m->n_layout;
}

const roost_param_info *
roost_model_layout(const roost_model *m, size_t i)
{
    return i < m->n_layout ? &m->layout[i] : NULL;
}

int
roost_model_init_params(const roost_model *m, float *params, roost_rng *rng)
{
    for (size_t i = 0; i < m->n_ops; i++) {
        const struct op *o = &m->ops[i];
        if (o->kind != OP_DENSE && o->kind != OP_CONV)
            continue;
        size_t kk = o->kind == OP_CONV ? o->k * o->k : 1;
        double fan_in = (double)o->kdim;
        double fan_out = (double)(o->out_c * kk);
        double bound = o->act == ACT_RELU ? sqrt(6.0 / fan_in)
                                          : sqrt(6.0 / (fan_in + fan_out));
        size_t nw = o->out_c * o->kdim;
        float *wp = params + o->w_off;
        for (size_t j = 0; j < nw; j++) {
            double u;
            int rc = roost_rng_uniform(rng, &u);
            if (rc != ROOST_OK)
                return rc;
            wp[j] = (float)((2.0 * u - 1.0) * bound);
        }
        memset(params + o->b_off, 0, o->out_c * sizeof(float));
    }
    return ROOST_OK;
}

/* ----------------------------------------------------------- GEMM shapes */

void
roost_model_gemm_shapes(const roost_model *m, size_t batch,
                        roost_gemm_shape *out, size_t cap, size_t *count)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_ops; i++) {
        const struct op *o = &m->ops[i];
        roost_gemm_shape s[3];
        size_t ns = 0;
        if (o->kind == OP_DENSE) {
            s[ns++] = (roost_gemm_shape){0, 1, batch, o->out_c, o->kdim};
            s[ns++] = (roost_gemm_shape){1, 0, o->out_c, o->kdim, batch};
            if (i > 0)
                s[ns++] = (roost_gemm_shape){0, 0, batch, o->kdim, o->out_c};
        } else if (o->kind == OP_CONV) {
            size_t nn = batch * o->in_h * o->in_w;
            s[ns++] = (roost_gemm_shape){0, 0, o->out_c, nn, o->kdim};
            s[ns++] = (roost_gemm_shape){0, 1, o->out_c, o->kdim, nn};
            if (i > 0)
                s[ns++] = (roost_gemm_shape){1, 0, o->kdim, nn, o->out_c};
        }
        for (size_t j = 0; j < ns; j++, n++)
            if (n < cap)
                out[n] = s[j];
    }
    *count = n;
}

double
roost_model_train_flops(const roost_model *m, size_t batch)
{
    roost_gemm_shape s[3 * ROOST_MODEL_MAX_LAYERS];
    size_t n;
    roost_model_gemm_shapes(m, batch, s, sizeof(s) / sizeof(s[0]), &n);
    double f = 0;
    for (size_t i = 0; i < n; i++)
        f += 2.0 * (double)s[i].m * (double)s[i].n * (double)s[i].k;
    return f;
}

/* ------------------------------------------------------------ workspace */

/* Floats of im2col matrix per conv chunk. 1 MiB (the L2 size of the
 * cores this was tuned on) measured best: the FedAvg CNN's second conv
 * then runs one example (196 columns) per chunk, its first 13. Whole-batch
 * matrices (20 MiB at batch 32) were 10-15% slower end to end. */
#define CONV_CHUNK_FLOATS ((size_t)1 << 18)

/* Examples per chunk of conv op o at batch size B (at least 1). */
static size_t
conv_chunk(const struct op *o, size_t B)
{
    size_t per = o->kdim * o->in_h * o->in_w;
    size_t nb = per > 0 ? CONV_CHUNK_FLOATS / per : B;
    if (nb < 1)
        nb = 1;
    return nb < B ? nb : B;
}

int
roost_workspace_create(roost_workspace **out, const roost_model *m,
                       size_t max_batch, roost_errmsg *em)
{
    if (out == NULL || m == NULL)
        return roost_fail(em, ROOST_EINVAL, "workspace: NULL argument");
    *out = NULL;
    if (max_batch == 0 || max_batch > ((size_t)1 << 24))
        return roost_fail(em, ROOST_EINVAL,
                          "workspace: batch size must be in 1..%zu",
                          (size_t)1 << 24);
    /* First pass: count floats (and indices) with overflow checks; second
     * pass: carve them out of one block. */
    size_t per[ROOST_MODEL_MAX_LAYERS][4]; /* out, gout, flat, col */
    size_t pool_idx[ROOST_MODEL_MAX_LAYERS];
    size_t total = 0, itotal = 0, col_max = 0, dcol = 0, flatgrad = 0;
    size_t scratch = 0, pad = 0;
    bool ok = true;
    size_t xin = 0;
    if (m->input_cbhw)
        ok = roost_size_mul(m->in_dim, max_batch, &xin) &&
             roost_size_add(total, xin, &total);
    for (size_t i = 0; ok && i < m->n_ops; i++) {
        const struct op *o = &m->ops[i];
        size_t a = 0, fl = 0, col = 0;
        ok = roost_size_mul(o->out_size, max_batch, &a);
        /* BLAS takes int dimensions: every batch matrix must index with
         * an int. */
        size_t in_all;
        ok = ok && a <= INT_MAX &&
             roost_size_mul(o->in_size, max_batch, &in_all) &&
             in_all <= INT_MAX;
        per[i][0] = per[i][1] = a;
        pool_idx[i] = 0;
        if (ok && o->kind == OP_DENSE && o->in_cbhw) {
            ok = roost_size_mul(o->in_size, max_batch, &fl);
            if (fl > flatgrad)
                flatgrad = fl;
        }
        if (ok && o->kind == OP_CONV) {
            size_t nn;
            ok = roost_size_mul(o->in_h * o->in_w, conv_chunk(o, max_batch),
                                &nn) &&
                 roost_size_mul(nn, o->kdim, &col);
            if (col > col_max)
                col_max = col;
            if (col > dcol && i > 0)
                dcol = col;
            col = 0;
            if (o->out_c * o->kdim > scratch)
                scratch = o->out_c * o->kdim;
            size_t planes = 0, pl = 0;
            ok = ok &&
                 roost_size_mul(o->in_c, conv_chunk(o, max_batch), &planes) &&
                 roost_size_mul((o->in_h + o->k - 1) * (o->in_w + o->k - 1),
                                planes, &pl);
            if (pl > pad)
                pad = pl;
        }
        if (ok && o->kind == OP_POOL) {
            pool_idx[i] = a;
            ok = roost_size_add(itotal, a, &itotal);
        }
        per[i][2] = fl;
        per[i][3] = col;
        for (int j = 0; ok && j < 4; j++)
            ok = roost_size_add(total, per[i][j], &total);
    }
    ok = ok && roost_size_add(total, col_max, &total) &&
         roost_size_add(total, dcol, &total) &&
         roost_size_add(total, flatgrad, &total) &&
         roost_size_add(total, scratch, &total) &&
         roost_size_add(total, pad, &total);
    size_t bytes = 0, ibytes = 0;
    ok = ok && roost_size_mul(total, sizeof(float), &bytes) &&
         roost_size_mul(itotal, sizeof(uint32_t), &ibytes);
    if (!ok || bytes + ibytes > ((size_t)16 << 30))
        return roost_fail(em, ROOST_ETOOBIG,
                          "workspace: buffers for batch %zu exceed 16 GiB",
                          max_batch);

    roost_workspace *ws = roost_alloc_calloc(m->alloc, 1, sizeof(*ws));
    if (ws == NULL)
        return roost_fail(em, ROOST_ENOMEM, "workspace: out of memory");
    ws->m = m;
    ws->max_batch = max_batch;
    ws->block = roost_alloc_malloc(m->alloc, bytes ? bytes : 1);
    ws->iblock = roost_alloc_malloc(m->alloc, ibytes ? ibytes : 1);
    if (ws->block == NULL || ws->iblock == NULL) {
        roost_workspace_destroy(ws);
        return roost_fail(em, ROOST_ENOMEM,
                          "workspace: out of memory (%zu bytes)",
                          bytes + ibytes);
    }
    ws->bytes = bytes + ibytes;
    float *p = ws->block;
    uint32_t *ip = ws->iblock;
    if (xin) {
        ws->xin = p;
        p += xin;
    }
    for (size_t i = 0; i < m->n_ops; i++) {
        ws->out[i] = p;
        p += per[i][0];
        ws->gout[i] = p;
        p += per[i][1];
        ws->flat[i] = per[i][2] ? p : NULL;
        p += per[i][2];
        p += per[i][3];
        ws->argmax[i] = pool_idx[i] ? ip : NULL;
        ip += pool_idx[i];
    }
    ws->col = col_max ? p : NULL;
    p += col_max;
    ws->dcol = dcol ? p : NULL;
    p += dcol;
    ws->flatgrad = flatgrad ? p : NULL;
    p += flatgrad;
    ws->scratch = scratch ? p : NULL;
    p += scratch;
    ws->pad = pad ? p : NULL;
    *out = ws;
    return ROOST_OK;
}

void
roost_workspace_destroy(roost_workspace *ws)
{
    if (ws == NULL)
        return;
    roost_alloc_free(ws->m->alloc, ws->block);
    roost_alloc_free(ws->m->alloc, ws->iblock);
    roost_alloc_free(ws->m->alloc, ws);
}

size_t
roost_workspace_bytes(const roost_workspace *ws)
{
    return ws->bytes;
}

size_t
roost_workspace_max_batch(const roost_workspace *ws)
{
    return ws->max_batch;
}

/* --------------------------------------------------------------- kernels */

/* Transpose between B x C x HW (BCHW) and C x B x HW (CBHW). */
static void
bchw_to_cbhw(const float *src, float *dst, size_t B, size_t C, size_t HW)
{
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++)
            memcpy(dst + (c * B + b) * HW, src + (b * C + c) * HW,
                   HW * sizeof(float));
}

static void
cbhw_to_bchw(const float *src, float *dst, size_t B, size_t C, size_t HW)
{
    for (size_t c = 0; c < C; c++)
        for (size_t b = 0; b < B; b++)
            memcpy(dst + (b * C + c) * HW, src + (c * B + b) * HW,
                   HW * sizeof(float));
}

/* Copy 4 floats; a constant-size memcpy compiles to one vector move. */
static inline void
copy4(float *restrict dst, const float *restrict src)
{
    memcpy(dst, src, 4 * sizeof(float));
}

/* Copy n floats. Rows are short (W floats, 14 or 28 in the FedAvg CNN) and
 * there are hundreds of thousands per step, so rows of up to 16 floats are
 * copied in straight-line, overlapping 4-float blocks: a memcpy call per
 * row (which is what the compiler makes of a copy loop) costs more than the
 * copy itself. */
static inline void
copy_row(float *restrict dst, const float *restrict src, size_t n)
{
    if (n >= 4 && n <= 8) {
        copy4(dst, src);
        copy4(dst + n - 4, src + n - 4);
    } else if (n > 8 && n <= 16) {
        copy4(dst, src);
        copy4(dst + 4, src + 4);
        copy4(dst + n - 8, src + n - 8);
        copy4(dst + n - 4, src + n - 4);
    } else if (n > 16) {
        memcpy(dst, src, n * sizeof(float));
    } else {
        if (n > 0)
            dst[0] = src[0];
        if (n > 1)
            dst[1] = src[1];
        if (n > 2)
            dst[2] = src[2];
    }
}

/* dst[j] += src[j] for j < n, 4 at a time (see copy_row). */
static inline void
add_row(float *restrict dst, const float *restrict src, size_t n)
{
    size_t j = 0;
    for (; j + 4 <= n; j += 4)
        for (size_t l = 0; l < 4; l++)
            dst[j + l] += src[j + l];
    for (; j < n; j++)
        dst[j] += src[j];
}

/*
 * im2col for stride 1, same padding, of examples b0 .. b0+n-1: x is
 * C x B x (H*W) (CBHW), col is (C*K*K) x (n*H*W), row (c, kh, kw), column
 * (b - b0, oh, ow). The chunk's planes are first copied into pad
 * (C x n x (H+K-1) x (W+K-1), zero borders), so that every row of col is a
 * plain copy of W floats without bounds tests.
 */
static void
im2col(const float *x, size_t C, size_t B, size_t H, size_t W, size_t K,
       size_t b0, size_t n, float *pad, float *col)
{
    size_t HW = H * W, N = n * HW, P = K / 2;
    size_t Hp = H + K - 1, Wp = W + K - 1, HWp = Hp * Wp;
    for (size_t j = 0; j < C * n * HWp; j++)
        pad[j] = 0.0f;
    for (size_t c = 0; c < C; c++)
        for (size_t b = 0; b < n; b++) {
            const float *xp = x + (c * B + b0 + b) * HW;
            float *pp = pad + (c * n + b) * HWp + P * Wp + P;
            for (size_t h = 0; h < H; h++)
                copy_row(pp + h * Wp, xp + h * W, W);
        }
    for (size_t c = 0; c < C; c++)
        for (size_t kh = 0; kh < K; kh++)
            for (size_t kw = 0; kw < K; kw++) {
                float *row = col + ((c * K + kh) * K + kw) * N;
                for (size_t b = 0; b < n; b++) {
                    const float *src = pad + (c * n + b) * HWp + kh * Wp + kw;
                    float *dst = row + b * HW;
                    for (size_t oh = 0; oh < H; oh++)
                        copy_row(dst + oh * W, src + oh * Wp, W);
                }
            }
}

/*
 * col2im: the adjoint of im2col (same chunk arguments); writes the chunk's
 * examples of dx (C x B x HW), summing the columns into the zero-bordered
 * planes of pad first so that the inner loop has no bounds tests and dx
 * needs no zeroing beforehand.
 */
static void
col2im(const float *col, size_t C, size_t B, size_t H, size_t W, size_t K,
       size_t b0, size_t n, float *pad, float *dx)
{
    size_t HW = H * W, N = n * HW, P = K / 2;
    size_t Hp = H + K - 1, Wp = W + K - 1, HWp = Hp * Wp;
    for (size_t j = 0; j < C * n * HWp; j++)
        pad[j] = 0.0f;
    for (size_t c = 0; c < C; c++)
        for (size_t kh = 0; kh < K; kh++)
            for (size_t kw = 0; kw < K; kw++) {
                const float *row = col + ((c * K + kh) * K + kw) * N;
                for (size_t b = 0; b < n; b++) {
                    float *dst = pad + (c * n + b) * HWp + kh * Wp + kw;
                    const float *src = row + b * HW;
                    for (size_t oh = 0; oh < H; oh++)
                        add_row(dst + oh * Wp, src + oh * W, W);
                }
            }
    for (size_t c = 0; c < C; c++)
        for (size_t b = 0; b < n; b++) {
            float *xp = dx + (c * B + b0 + b) * HW;
            const float *pp = pad + (c * n + b) * HWp + P * Wp + P;
            for (size_t h = 0; h < H; h++)
                copy_row(xp + h * W, pp + h * Wp, W);
        }
}

/* y[r][j] = act(y[r][j] + bias[r]) on a rows x cols matrix (conv). */
static void
bias_act_rows(float *y, const float *bias, size_t rows, size_t cols,
              enum act_kind act)
{
    for (size_t r = 0; r < rows; r++) {
        float *p = y + r * cols, bv = bias[r];
        if (act == ACT_RELU)
            for (size_t j = 0; j < cols; j++) {
                float v = p[j] + bv;
                p[j] = v > 0.0f ? v : 0.0f;
            }
        else if (act == ACT_TANH)
            for (size_t j = 0; j < cols; j++)
                p[j] = tanhf(p[j] + bv);
        else
            for (size_t j = 0; j < cols; j++)
                p[j] += bv;
    }
}

/* y[r][j] = act(y[r][j] + bias[j]) on a rows x cols matrix (dense). */
static void
bias_act_cols(float *y, const float *bias, size_t rows, size_t cols,
              enum act_kind act)
{
    for (size_t r = 0; r < rows; r++) {
        float *p = y + r * cols;
        if (act == ACT_RELU)
            for (size_t j = 0; j < cols; j++) {
                float v = p[j] + bias[j];
                p[j] = v > 0.0f ? v : 0.0f;
            }
        else if (act == ACT_TANH)
            for (size_t j = 0; j < cols; j++)
                p[j] = tanhf(p[j] + bias[j]);
        else
            for (size_t j = 0; j < cols; j++)
                p[j] += bias[j];
    }
}

/* g *= act'(y) where y is the activation's output. */
static void
act_backward(float *g, const float *y, size_t n, enum act_kind act)
{
    if (act == ACT_RELU) {
        for (size_t j = 0; j < n; j++)
            g[j] = y[j] > 0.0f ? g[j] : 0.0f;
    } else if (act == ACT_TANH) {
        for (size_t j = 0; j < n; j++)
            g[j] *= 1.0f - y[j] * y[j];
    }
}

/* act(v) for one value. */
static inline float
act_apply(float v, enum act_kind act)
{
    if (act == ACT_RELU)
        return v > 0.0f ? v : 0.0f;
    if (act == ACT_TANH)
        return tanhf(v);
    return v;
}

/*
 * maxpool_forward - KxK max pooling, stride K, of the C x B planes of x
 * (plane c * B + b). With bias non-NULL (a conv's bias and activation fused
 * into the pool) each output is act(max + bias[c]); arg gets the index of
 * the maximum within its plane.
 */
static void
maxpool_forward(const float *x, float *y, uint32_t *arg, size_t C, size_t B,
                size_t H, size_t W, size_t K, const float *bias,
                enum act_kind act)
{
    size_t OH = H / K, OW = W / K;
    for (size_t p = 0; p < C * B; p++) {
        const float *xp = x + p * H * W;
        float *yp = y + p * OH * OW;
        uint32_t *ap = arg + p * OH * OW;
        float bv = bias != NULL ? bias[p / B] : 0.0f;
        if (K == 2) {
            /* The 2x2 case (both pools of the FedAvg CNN) as selects the
             * compiler can vectorise: the larger of each column pair, then
             * of the two columns; ties go to the top row, then the left
             * column (any maximum is a valid subgradient). The bias and
             * activation follow in their own pass over the row. */
            for (size_t oh = 0; oh < OH; oh++) {
                const float *r0 = xp + 2 * oh * W, *r1 = r0 + W;
                float *yr = yp + oh * OW;
                uint32_t *ar = ap + oh * OW;
                uint32_t base = (uint32_t)(2 * oh * W), w32 = (uint32_t)W;
                for (size_t ow = 0; ow < OW; ow++) {
                    float a = r0[2 * ow], b = r0[2 * ow + 1];
                    float c = r1[2 * ow], d = r1[2 * ow + 1];
                    float m0 = c > a ? c : a, m1 = d > b ? d : b;
                    /* Comparison results as integers, not branches: the
                     * data decides them at random. */
                    uint32_t dn0 = c > a, dn1 = d > b, rt = m1 > m0;
                    uint32_t dn = dn0 ^ ((dn0 ^ dn1) & (0u - rt));
                    float mx = m1 > m0 ? m1 : m0;
                    yr[ow] = bias != NULL ? act_apply(mx + bv, act) : mx;
                    ar[ow] = base + (uint32_t)(2 * ow) + rt + dn * w32;
                }
            }
            continue;
        }
        for (size_t oh = 0; oh < OH; oh++)
            for (size_t ow = 0; ow < OW; ow++) {
                size_t best = oh * K * W + ow * K;
                float mx = xp[best];
                for (size_t i = 0; i < K; i++)
                    for (size_t j = 0; j < K; j++) {
                        size_t idx = (oh * K + i) * W + ow * K + j;
                        if (xp[idx] > mx) {
                            mx = xp[idx];
                            best = idx;
                        }
                    }
                yp[oh * OW + ow] = bias != NULL ? act_apply(mx + bv, act) : mx;
                ap[oh * OW + ow] = (uint32_t)best;
            }
    }
}

/*
 * maxpool_backward - the input gradient of a max pool: each output's
 * gradient, times the derivative of the activation fused into the pool
 * (taken from the pool's output y), goes to its argmax; every other input
 * gets 0. Plane by plane, zeroed and then scattered while in L1, so gx is
 * written once; with the activation folded in, the conv before the pool
 * needs no derivative pass of its own.
 */
static void
maxpool_backward(const float *gy, float *gx, const uint32_t *arg,
                 const float *y, size_t planes, size_t H, size_t W, size_t K,
                 enum act_kind act)
{
    size_t OHW = (H / K) * (W / K), HW = H * W;
    for (size_t p = 0; p < planes; p++) {
        float *restrict xp = gx + p * HW;
        const float *gp = gy + p * OHW, *yp = y + p * OHW;
        const uint32_t *ap = arg + p * OHW;
        for (size_t j = 0; j < HW; j++)
            xp[j] = 0.0f;
        if (act == ACT_RELU) {
            for (size_t j = 0; j < OHW; j++)
                xp[ap[j]] = yp[j] > 0.0f ? gp[j] : 0.0f;
        } else if (act == ACT_TANH) {
            for (size_t j = 0; j < OHW; j++)
                xp[ap[j]] = gp[j] * (1.0f - yp[j] * yp[j]);
        } else {
            for (size_t j = 0; j < OHW; j++)
                xp[ap[j]] = gp[j];
        }
    }
}

/* The sum of n floats in 16 interleaved partial sums, so that the compiler
 * vectorises it (it may not reorder a single running float sum). */
static float
sum_floats(const float *x, size_t n)
{
    float acc[16] = {0};
    size_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (size_t l = 0; l < 16; l++)
            acc[l] += x[j + l];
    float s = 0.0f;
    for (; j < n; j++)
        s += x[j];
    for (size_t l = 0; l < 16; l++)
        s += acc[l];
    return s;
}

/* ------------------------------------------------------- forward/backward */

static const float *
op_input(const roost_workspace *ws, size_t i)
{
    return i == 0 ? ws->input : ws->out[i - 1];
}

static void
forward(roost_workspace *ws, const float *params, const float *x, size_t B)
{
    const roost_model *m = ws->m;
    ws->batch = B;
    ws->have_pass1 = false;
    if (m->input_cbhw) {
        bchw_to_cbhw(x, ws->xin, B, m->in_c, m->in_h * m->in_w);
        ws->input = ws->xin;
    } else {
        ws->input = x;
    }
    for (size_t i = 0; i < m->n_ops; i++) {
        const struct op *o = &m->ops[i];
        const float *in = op_input(ws, i);
        float *y = ws->out[i];
        switch (o->kind) {
        case OP_DENSE:
            if (o->in_cbhw) {
                cbhw_to_bchw(in, ws->flat[i], B, o->in_c, o->in_h * o->in_w);
                in = ws->flat[i];
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B,
                        (int)o->out_c, (int)o->kdim, 1.0f, in, (int)o->kdim,
                        params + o->w_off, (int)o->kdim, 0.0f, y,
                        (int)o->out_c);
            bias_act_cols(y, params + o->b_off, B, o->out_c, o->act);
            break;
        case OP_CONV: {
            size_t HW = o->in_h * o->in_w, nn = B * HW;
            size_t nb = conv_chunk(o, B);
            for (size_t b0 = 0; b0 < B; b0 += nb) {
                size_t n = B - b0 < nb ? B - b0 : nb;
                im2col(in, o->in_c, B, o->in_h, o->in_w, o->k, b0, n, ws->pad,
                       ws->col);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                            (int)o->out_c, (int)(n * HW), (int)o->kdim, 1.0f,
                            params + o->w_off, (int)o->kdim, ws->col,
                            (int)(n * HW), 0.0f, y + b0 * HW, (int)nn);
            }
            if (!o->pool_fused)
                bias_act_rows(y, params + o->b_off, o->out_c, nn, o->act);
            break;
        }
        case OP_POOL:
            maxpool_forward(in, y, ws->argmax[i], o->in_c, B, o->in_h, o->in_w,
                            o->k, o->pool_fused ? params + o->b_off : NULL,
                            o->act);
            break;
        case OP_RELU:
            for (size_t j = 0; j < B * o->out_size; j++)
                y[j] = in[j] > 0.0f ? in[j] : 0.0f;
            break;
        case OP_TANH:
            for (size_t j = 0; j < B * o->out_size; j++)
                y[j] = tanhf(in[j]);
            break;
        }
    }
}

/*
 * softmax_xent - loss of the logits in the last op's output; writes
 * scale * (softmax - onehot) into its gout. Returns the summed loss.
 */
static double
softmax_xent(roost_workspace *ws, const uint8_t *labels, size_t B, float scale)
{
    const roost_model *m = ws->m;
    size_t last = m->n_ops - 1, K = m->classes;
    const float *z = ws->out[last];
    float *g = ws->gout[last];
    double loss = 0.0;
    size_t correct = 0;
    for (size_t b = 0; b < B; b++) {
        const float *zb = z + b * K;
        float *gb = g + b * K;
        float mx = zb[0];
        size_t top = 0;
        for (size_t k = 1; k < K; k++)
            if (zb[k] > mx) {
                mx = zb[k];
                top = k;
            }
        correct += top == labels[b];
        float s = 0.0f;
        for (size_t k = 0; k < K; k++) {
            gb[k] = expf(zb[k] - mx);
            s += gb[k];
        }
        /* log(s) + (max - z_y) in double: summed in float, large logits
         * (where a float's spacing exceeds the loss) would round the
         * small log-sum term away. The difference of two floats is exact
         * in double. */
        loss += log((double)s) + ((double)mx - (double)zb[labels[b]]);
        float inv = scale / s;
        for (size_t k = 0; k < K; k++)
            gb[k] *= inv;
        gb[labels[b]] -= scale;
    }
    ws->correct = correct;
    return loss;
}

size_t
roost_workspace_correct(const roost_workspace *ws)
{
    return ws->correct;
}

/* Which parts of the backward pass to run. */
enum bwd_mode {
    BWD_GRAD,  /* weight gradients now, summed over the batch */
    BWD_NORMS, /* per-example squared norms instead of weight gradients */
    BWD_FUSED, /* apply the SGD update layer by layer (no gradient vector) */
};

/* Where a layer's weight gradient G goes: dst = alpha * G + beta * dst
 * (beta 0 overwrites, 1 accumulates), dst indexed by the layout offsets. */
struct wdst {
    float *base;
    float alpha, beta;
};

/* A fused SGD step (roost_model_sgd_step): the optimiser's settings and
 * buffers. */
struct fused {
    float lr, mom, wd, mu;
    float *v;            /* velocity, NULL without momentum */
    const float *anchor; /* FedProx w_global, NULL when mu is 0 */
    float *w;            /* the parameters being updated */
};

/* dst = alpha * colsum/rowsum + beta * dst, with beta 0 never reading dst
 * (it may hold garbage). */
static void
bias_store(float *dst, size_t j, float sum, struct wdst t)
{
    dst[j] = t.beta == 0.0f ? t.alpha * sum : t.alpha * sum + t.beta * dst[j];
}

/* conv_dx - the input gradient of conv op i (delta in gout[i]) into gin,
 * chunk by chunk through the cache-sized column buffer. */
static void
conv_dx(roost_workspace *ws, size_t i, const float *params, float *gin)
{
    const struct op *o = &ws->m->ops[i];
    size_t B = ws->batch, HW = o->in_h * o->in_w, nn = B * HW;
    size_t nb = conv_chunk(o, B);
    const float *d = ws->gout[i];
    for (size_t b0 = 0; b0 < B; b0 += nb) {
        size_t n = B - b0 < nb ? B - b0 : nb, cols = n * HW;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)o->kdim,
                    (int)cols, (int)o->out_c, 1.0f, params + o->w_off,
                    (int)o->kdim, d + b0 * HW, (int)nn, 0.0f, ws->dcol,
                    (int)cols);
        col2im(ws->dcol, o->in_c, B, o->in_h, o->in_w, o->k, b0, n, ws->pad,
               gin);
    }
}

/*
 * conv_dw - the weight gradient of conv op i into dst (if dst.base is not
 * NULL) and/or each example's squared gradient norm added to norms_sq (if
 * not NULL), rebuilding the im2col matrix chunk by chunk so each chunk is
 * used from cache.
 */
static void
conv_dw(roost_workspace *ws, size_t i, struct wdst dst, double *norms_sq)
{
    const struct op *o = &ws->m->ops[i];
    size_t B = ws->batch, HW = o->in_h * o->in_w, nn = B * HW;
    size_t nb = conv_chunk(o, B), nw = o->out_c * o->kdim;
    const float *d = ws->gout[i];
    const float *in = op_input(ws, i);
    if (dst.base != NULL)
        for (size_t c = 0; c < o->out_c; c++)
            bias_store(dst.base + o->b_off, c, sum_floats(d + c * nn, nn), dst);
    for (size_t b0 = 0; b0 < B; b0 += nb) {
        size_t n = B - b0 < nb ? B - b0 : nb, cols = n * HW;
        im2col(in, o->in_c, B, o->in_h, o->in_w, o->k, b0, n, ws->pad, ws->col);
        if (dst.base != NULL)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)o->out_c,
                        (int)o->kdim, (int)cols, dst.alpha, d + b0 * HW,
                        (int)nn, ws->col, (int)cols, b0 == 0 ? dst.beta : 1.0f,
                        dst.base + o->w_off, (int)o->kdim);
        /* Per example: g_b = delta_b (Cout x HW) col_b^T (HW x Cin k k),
         * column blocks of the delta and of the chunk's im2col matrix. */
        for (size_t b = 0; norms_sq != NULL && b < n; b++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)o->out_c,
                        (int)o->kdim, (int)HW, 1.0f, d + (b0 + b) * HW, (int)nn,
                        ws->col + b * HW, (int)cols, 0.0f, ws->scratch,
                        (int)o->kdim);
            double s = 0.0;
            for (size_t j = 0; j < nw; j++)
                s += (double)(ws->scratch[j] * ws->scratch[j]);
            for (size_t c = 0; c < o->out_c; c++) {
                const float *dc = d + c * nn + (b0 + b) * HW;
                float bs = 0.0f;
                for (size_t j = 0; j < HW; j++)
                    bs += dc[j];
                s += (double)(bs * bs);
            }
            norms_sq[b0 + b] += s;
        }
    }
}

/* weight_grad - dW, db of a dense or conv op from its delta (already in
 * gout[i]) and saved input, stored as dst says. */
static void
weight_grad(roost_workspace *ws, size_t i, struct wdst dst)
{
    const struct op *o = &ws->m->ops[i];
    size_t B = ws->batch;
    const float *d = ws->gout[i];
    if (o->kind == OP_CONV) {
        conv_dw(ws, i, dst, NULL);
        return;
    }
    const float *in = o->in_cbhw ? ws->flat[i] : op_input(ws, i);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)o->out_c,
                (int)o->kdim, (int)B, dst.alpha, d, (int)o->out_c, in,
                (int)o->kdim, dst.beta, dst.base + o->w_off, (int)o->kdim);
    for (size_t j = 0; j < o->out_c; j++) {
        float s = 0.0f;
        for (size_t b = 0; b < B; b++)
            s += d[b * o->out_c + j];
        bias_store(dst.base + o->b_off, j, s, dst);
    }
}

/* sum_sq - sum of v[j]^2 in double, over eight independent partial sums:
 * a single running sum is a chain of dependent additions that the
 * compiler may not reorder, and on a 784-wide input it cost as much as
 * the layer's GEMM share; eight lanes vectorise and keep the products
 * exact (a float squared is exact in double). With AVX2 (a clone chosen
 * at load time) the eight lanes are two 4-double registers instead of
 * four SSE2 pairs; the operations and their order are the same, and no
 * FMA is allowed, so both clones give identical sums. (Not under
 * ThreadSanitizer, whose instrumented ifunc resolver would run before its
 * runtime is up; clang spells the check __has_feature.) */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ROOST_MODEL_NO_CLONES 1
#endif
#endif
#if defined(__GNUC__) && defined(__x86_64__) &&                                \
    !defined(__SANITIZE_THREAD__) && !defined(ROOST_MODEL_NO_CLONES)
__attribute__((target_clones("avx2", "default")))
#endif
static double
sum_sq(const float *v, size_t n)
{
    double acc[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    size_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (size_t l = 0; l < 8; l++)
            acc[l] += (double)v[j + l] * (double)v[j + l];
    for (size_t l = 0; j < n; j++, l++)
        acc[l] += (double)v[j] * (double)v[j];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) +
           ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* example_norms_dense - add each example's squared gradient norm of dense
 * op i's parameters to norms_sq. */
static void
example_norms_dense(roost_workspace *ws, size_t i, double *norms_sq)
{
    const struct op *o = &ws->m->ops[i];
    size_t B = ws->batch;
    const float *d = ws->gout[i];
    /* g_b = delta_b a_b^T (+ delta_b for the bias):
     * ||g_b||^2 = ||delta_b||^2 (||a_b||^2 + 1). */
    const float *in = o->in_cbhw ? ws->flat[i] : op_input(ws, i);
    for (size_t b = 0; b < B; b++) {
        double dn = sum_sq(d + b * o->out_c, o->out_c);
        double an = sum_sq(in + b * o->kdim, o->kdim);
        norms_sq[b] += dn * (an + 1.0);
    }
}

/* Fused SGD around one layer's weight-gradient GEMM, on its parameter
 * range [off, off + n) (weights then bias, contiguous). Without momentum
 * the decay and proximal terms are applied first and the GEMM then adds
 * -lr * G into the weights; with momentum the GEMM forms
 * v = momentum * v + G, the terms are added to v, and w -= lr * v. Both
 * equal roost_sgd_step's d = G + wd*w + mu*(w - w_global) update. */
static void
fused_pre(const struct fused *f, size_t off, size_t n)
{
    if (f->v != NULL || (f->wd == 0.0f && f->anchor == NULL))
        return;
    float *restrict w = f->w + off;
    const float lr = f->lr, wd = f->wd, mu = f->mu;
    if (f->anchor == NULL) {
        for (size_t j = 0; j < n; j++)
            w[j] -= lr * wd * w[j];
    } else {
        const float *restrict a = f->anchor + off;
        for (size_t j = 0; j < n; j++)
            w[j] -= lr * (wd * w[j] + mu * (w[j] - a[j]));
    }
}

static void
fused_post(const struct fused *f, size_t off, size_t n)
{
    if (f->v == NULL)
        return;
    float *restrict w = f->w + off, *restrict v = f->v + off;
    const float lr = f->lr, wd = f->wd, mu = f->mu;
    if (f->anchor != NULL) {
        const float *restrict a = f->anchor + off;
        for (size_t j = 0; j < n; j++) {
            float vj = v[j] + wd * w[j] + mu * (w[j] - a[j]);
            v[j] = vj;
            w[j] -= lr * vj;
        }
    } else if (f->wd != 0.0f) {
        for (size_t j = 0; j < n; j++) {
            float vj = v[j] + wd * w[j];
            v[j] = vj;
            w[j] -= lr * vj;
        }
    } else {
        for (size_t j = 0; j < n; j++)
            w[j] -= lr * v[j];
    }
}

static struct wdst
fused_dst(const struct fused *f)
{
    if (f->v != NULL)
        return (struct wdst){f->v, 1.0f, f->mom};
    return (struct wdst){f->w, -f->lr, 1.0f};
}

/*
 * backward - from the loss delta in the last op's gout down to the first
 * op. Per dense or conv op: the activation derivative, then the input
 * gradient (with the weights as they were in the forward pass), then, by
 * mode, the weight gradient into grad, the per-example norms, or the fused
 * SGD update of that layer's parameters (f).
 */
static void
backward(roost_workspace *ws, const float *params, enum bwd_mode mode,
         float *grad, double *norms_sq, const struct fused *f)
{
    const roost_model *m = ws->m;
    size_t B = ws->batch;
    for (size_t ii = m->n_ops; ii-- > 0;) {
        const struct op *o = &m->ops[ii];
        float *g = ws->gout[ii];
        float *gin = ii > 0 ? ws->gout[ii - 1] : NULL;
        switch (o->kind) {
        case OP_DENSE:
        case OP_CONV: {
            if (!o->pool_fused)
                act_backward(g, ws->out[ii], B * o->out_size, o->act);
            if (gin != NULL && o->kind == OP_CONV) {
                conv_dx(ws, ii, params, gin);
            } else if (gin != NULL) {
                float *dst = o->in_cbhw ? ws->flatgrad : gin;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B,
                            (int)o->kdim, (int)o->out_c, 1.0f, g, (int)o->out_c,
                            params + o->w_off, (int)o->kdim, 0.0f, dst,
                            (int)o->kdim);
                if (o->in_cbhw)
                    bchw_to_cbhw(dst, gin, B, o->in_c, o->in_h * o->in_w);
            }
            size_t n = o->b_off + o->out_c - o->w_off;
            if (mode == BWD_GRAD) {
                weight_grad(ws, ii, (struct wdst){grad, 1.0f, 0.0f});
            } else if (mode == BWD_FUSED) {
                fused_pre(f, o->w_off, n);
                weight_grad(ws, ii, fused_dst(f));
                fused_post(f, o->w_off, n);
            } else if (o->kind == OP_CONV) {
                conv_dw(ws, ii, (struct wdst){NULL, 0.0f, 0.0f}, norms_sq);
            } else {
                example_norms_dense(ws, ii, norms_sq);
            }
            break;
        }
        case OP_POOL:
            if (gin != NULL)
                maxpool_backward(g, gin, ws->argmax[ii], ws->out[ii],
                                 o->in_c * B, o->in_h, o->in_w, o->k,
                                 o->pool_fused ? o->act : ACT_NONE);
            break;
        case OP_RELU:
        case OP_TANH:
            if (gin != NULL) {
                const float *y = ws->out[ii];
                size_t n = B * o->out_size;
                for (size_t j = 0; j < n; j++)
                    gin[j] = g[j];
                act_backward(gin, y, n,
                             o->kind == OP_RELU ? ACT_RELU : ACT_TANH);
            }
            break;
        }
    }
}

static int
check_batch(const roost_workspace *ws, const float *params, const float *x,
            const uint8_t *labels, size_t batch)
{
    if (ws == NULL || params == NULL || x == NULL || batch == 0 ||
        batch > ws->max_batch)
        return ROOST_EINVAL;
    if (labels != NULL)
        for (size_t b = 0; b < batch; b++)
            if (labels[b] >= ws->m->classes)
                return ROOST_EINVAL;
    return ROOST_OK;
}

int
roost_model_grad(roost_workspace *ws, const float *params, const float *x,
                 const uint8_t *labels, size_t batch, float *grad,
                 double *loss_out)
{
    if (labels == NULL || grad == NULL)
        return ROOST_EINVAL;
    int rc = check_batch(ws, params, x, labels, batch);
    if (rc != ROOST_OK)
        return rc;
    forward(ws, params, x, batch);
    double loss = softmax_xent(ws, labels, batch, 1.0f / (float)batch);
    backward(ws, params, BWD_GRAD, grad, NULL, NULL);
    if (loss_out != NULL)
        *loss_out = loss / (double)batch;
    return ROOST_OK;
}

int
roost_model_sgd_step(roost_workspace *ws, float *params, const float *x,
                     const uint8_t *labels, size_t batch, roost_sgd *opt,
                     const float *global_params, double *loss_out)
{
    if (labels == NULL || opt == NULL)
        return ROOST_EINVAL;
    int rc = check_batch(ws, params, x, labels, batch);
    if (rc != ROOST_OK)
        return rc;
    roost_sgd_config cfg;
    float *velocity;
    size_t n;
    roost_sgd_state(opt, &cfg, &velocity, &n);
    if (n != ws->m->n_params || (cfg.prox_mu > 0.0f && global_params == NULL))
        return ROOST_EINVAL;
    forward(ws, params, x, batch);
    double loss = softmax_xent(ws, labels, batch, 1.0f / (float)batch);
    struct fused f = {.lr = cfg.lr,
                      .mom = cfg.momentum,
                      .wd = cfg.weight_decay,
                      .mu = cfg.prox_mu,
                      .v = velocity,
                      .anchor = cfg.prox_mu > 0.0f ? global_params : NULL,
                      .w = params};
    backward(ws, params, BWD_FUSED, NULL, NULL, &f);
    if (loss_out != NULL)
        *loss_out = loss / (double)batch;
    return ROOST_OK;
}

int
roost_model_example_norms(roost_workspace *ws, const float *params,
                          const float *x, const uint8_t *labels, size_t batch,
                          double *norms_sq, double *loss_sum_out)
{
    if (labels == NULL || norms_sq == NULL)
        return ROOST_EINVAL;
    int rc = check_batch(ws, params, x, labels, batch);
    if (rc != ROOST_OK)
        return rc;
    forward(ws, params, x, batch);
    double loss = softmax_xent(ws, labels, batch, 1.0f);
    for (size_t b = 0; b < batch; b++)
        norms_sq[b] = 0.0;
    backward(ws, params, BWD_NORMS, NULL, norms_sq, NULL);
    ws->have_pass1 = true;
    if (loss_sum_out != NULL)
        *loss_sum_out = loss;
    return ROOST_OK;
}

static int
weighted_grad(roost_workspace *ws, const float *weights, float *grad,
              bool accumulate)
{
    if (ws == NULL || weights == NULL || grad == NULL)
        return ROOST_EINVAL;
    if (!ws->have_pass1)
        return ROOST_ESTATE;
    const roost_model *m = ws->m;
    size_t B = ws->batch;
    /* Parameters that no dense or conv op owns do not exist, so every
     * entry of grad is written below. */
    for (size_t i = 0; i < m->n_ops; i++) {
        const struct op *o = &m->ops[i];
        float *d = ws->gout[i];
        if (o->kind == OP_DENSE) {
            for (size_t b = 0; b < B; b++) {
                float wb = weights[b];
                float *row = d + b * o->out_c;
                for (size_t j = 0; j < o->out_c; j++)
                    row[j] *= wb;
            }
        } else if (o->kind == OP_CONV) {
            size_t HW = o->in_h * o->in_w, nn = B * HW;
            for (size_t c = 0; c < o->out_c; c++)
                for (size_t b = 0; b < B; b++) {
                    float wb = weights[b];
                    float *blk = d + c * nn + b * HW;
                    for (size_t j = 0; j < HW; j++)
                        blk[j] *= wb;
                }
        } else {
            continue;
        }
        weight_grad(ws, i, (struct wdst){grad, 1.0f, accumulate ? 1.0f : 0.0f});
    }
    ws->have_pass1 = false;
    return ROOST_OK;
}

int
roost_model_weighted_grad(roost_workspace *ws, const float *weights,
                          float *grad)
{
    return weighted_grad(ws, weights, grad, false);
}

int
roost_model_weighted_grad_add(roost_workspace *ws, const float *weights,
                              float *grad)
{
    return weighted_grad(ws, weights, grad, true);
}

int
roost_model_forward(roost_workspace *ws, const float *params, const float *x,
                    size_t batch, const float **logits)
{
    if (logits == NULL)
        return ROOST_EINVAL;
    int rc = check_batch(ws, params, x, NULL, batch);
    if (rc != ROOST_OK)
        return rc;
    forward(ws, params, x, batch);
    *logits = ws->out[ws->m->n_ops - 1];
    return ROOST_OK;
}

int
roost_model_evaluate(roost_workspace *ws, const float *params, const float *x,
                     const uint8_t *labels, size_t n, double *loss_out,
                     double *accuracy_out)
{
    if (ws == NULL || params == NULL || x == NULL || labels == NULL || n == 0)
        return ROOST_EINVAL;
    const roost_model *m = ws->m;
    size_t K = m->classes, correct = 0;
    double loss = 0.0;
    for (size_t start = 0; start < n; start += ws->max_batch) {
        size_t B = n - start < ws->max_batch ? n - start : ws->max_batch;
        const uint8_t *lb = labels + start;
        int rc = check_batch(ws, params, x + start * m->in_dim, lb, B);
        if (rc != ROOST_OK)
            return rc;
        forward(ws, params, x + start * m->in_dim, B);
        const float *z = ws->out[m->n_ops - 1];
        for (size_t b = 0; b < B; b++) {
            const float *zb = z + b * K;
            size_t best = 0;
            for (size_t k = 1; k < K; k++)
                if (zb[k] > zb[best])
                    best = k;
            correct += best == lb[b];
        }
        loss += softmax_xent(ws, lb, B, 1.0f);
    }
    if (loss_out != NULL)
        *loss_out = loss / (double)n;
    if (accuracy_out != NULL)
        *accuracy_out = (double)correct / (double)n;
    return ROOST_OK;
}
