/*
 * dataset.h - labelled image datasets in memory, loaded from IDX files
 * (the MNIST / Fashion-MNIST format), plain or gzip-compressed.
 *
 * A roost_dataset holds `count` examples; example i is the float32 row
 * features[i * dim .. (i + 1) * dim) (pixel / 255, in [0, 1], laid out
 * channels x height x width) and the label labels[i] < num_classes.
 * A dataset is immutable after creation, so any number of threads may read
 * one at the same time; create and destroy are not concurrent with reads.
 *
 * IDX files are untrusted input: every header field is validated before
 * anything is allocated, the decoded size is capped (gzip bombs), and every
 * rejection returns a code and a message naming the file and the problem.
 * docs/data.md describes the format and each rule.
 */
#ifndef ROOST_COMMON_DATASET_H
#define ROOST_COMMON_DATASET_H

#include <roost/roost.h>

#include "common/error.h"

#include <stddef.h>
#include <stdint.h>

/* Which half of a dataset with a fixed train/test split to load. */
enum roost_split { ROOST_SPLIT_TRAIN = 0, ROOST_SPLIT_TEST = 1 };

/* Default cap on the decoded (uncompressed) size of one IDX file. */
#define ROOST_IDX_DEFAULT_MAX_BYTES ((size_t)1 << 30)

/* Where Debian's dataset-fashion-mnist package installs the files; the
 * environment variable ROOST_FMNIST_DIR overrides it. */
#define ROOST_FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

typedef struct roost_dataset roost_dataset;

/* Options of the IDX loaders. Zero-initialise, then set what you need. */
typedef struct roost_dataset_opts {
    /* Cap on the decoded bytes of each IDX file (header + payload);
     * 0 means ROOST_IDX_DEFAULT_MAX_BYTES. A file whose header declares
     * more is refused with ROOST_ETOOBIG before anything is allocated. */
    size_t max_bytes;
    /* Declared number of classes, 1..256; every label must be below it.
     * 0 means "infer": num_classes = max label + 1. */
    uint32_t num_classes;
} roost_dataset_opts;

/*
 * roost_dataset_load_idx - load an image IDX file (magic 0x00000803:
 * uint8, n x rows x cols; or 0x00000804: n x channels x rows x cols) and a
 * label IDX file (magic 0x00000801: uint8, n). Either file may be gzip
 * (detected by the bytes 1f 8b). alloc may be NULL (C library); the
 * dataset keeps the pointer, so *alloc must outlive it. num_classes is
 * inferred (max label + 1) and the cap is the default.
 *
 * Returns ROOST_OK; ROOST_EINVAL (NULL argument); ROOST_ENOENT (a file
 * does not exist); ROOST_EIO (open/read failure); ROOST_EDATA (malformed
 * file: bad magic or type, dimension count, zero dimension, overflowing
 * size, truncated, trailing bytes, corrupt gzip, count mismatch, label out
 * of range); ROOST_ETOOBIG (declared size above the cap); ROOST_ENOMEM.
 * em (may be NULL) receives the detail. On failure *out is NULL.
 */
int roost_dataset_load_idx(roost_dataset **out, const roost_allocator *alloc,
                           const char *images_path, const char *labels_path,
                           roost_errmsg *em);

/* roost_dataset_load_idx_opts - as roost_dataset_load_idx, with options
 * (opts may be NULL for the defaults). */
int
roost_dataset_load_idx_opts(roost_dataset **out, const roost_allocator *alloc,
                            const char *images_path, const char *labels_path,
                            const roost_dataset_opts *opts, roost_errmsg *em);

/*
 * roost_dataset_load_fmnist - load Fashion-MNIST's train (60000) or test
 * (10000) split from dir: {train,t10k}-{images-idx3,labels-idx1}-ubyte,
 * with ".gz" or without. dir NULL means $ROOST_FMNIST_DIR if set, else
 * ROOST_FMNIST_DEFAULT_DIR. The class count is declared as 10. A missing
 * file gives ROOST_ENOENT with a message naming the path and the Debian
 * package (dataset-fashion-mnist). Other returns as roost_dataset_load_idx.
 */
int roost_dataset_load_fmnist(roost_dataset **out, const roost_allocator *alloc,
                              const char *dir, int split, roost_errmsg *em);

/*
 * roost_dataset_create_from_arrays - a dataset holding copies of the
 * caller's arrays: features (count x channels*height*width floats, must be
 * finite) and labels (count bytes, each < num_classes, 1 <= num_classes <=
 * 256). count, channels, height and width must be positive. Returns
 * ROOST_OK, ROOST_EINVAL (NULL pointer, zero size, num_classes out of
 * range), ROOST_EOVERFLOW (sizes overflow), ROOST_EDATA (label out of
 * range, non-finite feature), ROOST_ENOMEM.
 */
int roost_dataset_create_from_arrays(roost_dataset **out,
                                     const roost_allocator *alloc, size_t count,
                                     uint32_t channels, uint32_t height,
                                     uint32_t width, const float *features,
                                     const uint8_t *labels,
                                     uint32_t num_classes, roost_errmsg *em);

/* roost_dataset_destroy - free the dataset; NULL does nothing. */
void roost_dataset_destroy(roost_dataset *ds);

/* Number of examples (> 0). */
size_t roost_dataset_count(const roost_dataset *ds);
/* Features per example: channels * height * width. */
size_t roost_dataset_dim(const roost_dataset *ds);
uint32_t roost_dataset_channels(const roost_dataset *ds);
uint32_t roost_dataset_height(const roost_dataset *ds);
uint32_t roost_dataset_width(const roost_dataset *ds);
/* Number of classes: declared, or max label + 1 when inferred. */
uint32_t roost_dataset_num_classes(const roost_dataset *ds);
/* Row-major count x dim float32 features, owned by the dataset. */
const float *roost_dataset_features(const roost_dataset *ds);
/* count labels, each < num_classes, owned by the dataset. */
const uint8_t *roost_dataset_labels(const roost_dataset *ds);
/* Features of example i (i < count): dim floats. */
const float *roost_dataset_example(const roost_dataset *ds, size_t i);

/*
 * roost_dataset_gather - copy examples indices[0..n) into x (n * dim
 * floats, caller-owned) and their labels into y (n bytes; y may be NULL),
 * e.g. to assemble a minibatch for one GEMM. Every index is checked
 * (< count) before anything is written. Returns ROOST_OK or ROOST_EINVAL.
 */
int roost_dataset_gather(const roost_dataset *ds, const uint32_t *indices,
                         size_t n, float *x, uint8_t *y);

/*
 * roost_dataset_create_subset - a new dataset holding copies of examples
 * indices[0..n) of ds (n >= 1, each < count; repeats allowed), with ds's
 * shape and class count; e.g. one simulated client's data from a
 * partition. Returns ROOST_OK, ROOST_EINVAL, ROOST_EOVERFLOW or
 * ROOST_ENOMEM; *out is NULL on failure.
 */
int roost_dataset_create_subset(roost_dataset **out,
                                const roost_allocator *alloc,
                                const roost_dataset *ds,
                                const uint32_t *indices, size_t n,
                                roost_errmsg *em);

/* ---- The IDX parser itself (shared by the file loaders and the fuzzer). */

/* One decoded IDX array of unsigned bytes. data is owned by the caller
 * after a successful parse and freed with roost_idx_array_free. */
typedef struct roost_idx_array {
    uint32_t ndims;   /* 1..4 */
    uint32_t dims[4]; /* each > 0 */
    size_t count;     /* product of dims */
    uint8_t *data;    /* count bytes */
} roost_idx_array;

/*
 * roost_idx_parse_buffer - decode one IDX blob (plain, or gzip when it
 * starts 1f 8b) from memory with exactly the code the file loader uses.
 * expect_magic is 0x00000801 (labels), 0x00000803 or 0x00000804 (images;
 * either of these two is accepted when 0x00000803 is asked for). name is
 * used in messages. max_bytes 0 means the default cap. Returns as
 * roost_dataset_load_idx; on failure out->data is NULL.
 */
int roost_idx_parse_buffer(roost_idx_array *out, const roost_allocator *alloc,
                           const void *buf, size_t len, uint32_t expect_magic,
                           size_t max_bytes, const char *name,
                           roost_errmsg *em);

/* roost_idx_array_free - free a parsed array's data (arr may be NULL). */
void roost_idx_array_free(roost_idx_array *arr, const roost_allocator *alloc);

/*
 * roost_dataset_from_idx_buffers - parse an image blob and a label blob
 * from memory into a dataset (the in-memory twin of
 * roost_dataset_load_idx_opts, used by the fuzzer).
 */
int roost_dataset_from_idx_buffers(roost_dataset **out,
                                   const roost_allocator *alloc,
                                   const void *images, size_t images_len,
                                   const void *labels, size_t labels_len,
                                   const roost_dataset_opts *opts,
                                   roost_errmsg *em);

#endif
