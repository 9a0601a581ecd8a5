/*
 * fuzz_idx.c - libFuzzer target for the IDX reader (common/dataset.c),
 * through roost_idx_parse_buffer and roost_dataset_from_idx_buffers,
 * which share every line of parsing and gzip handling with the file
 * loader (only the raw byte source differs).
 *
 * Input layout: byte 0 selects the mode (low two bits), the rest is the
 * payload.
 *   mode 0: the payload is one label blob (magic 0x00000801)
 *   mode 1: the payload is one image blob (0x00000803 or 0x00000804)
 *   mode 2, 3: bytes 1-2 (big-endian) give the label blob's length L, then
 *           L bytes of labels, then the image blob; parsed into a dataset.
 *           Mode 3 declares 10 classes, mode 2 infers them.
 * The decoded-size cap is 1 MiB so that a header claiming a gigabyte is
 * refused quickly instead of exercising the allocator.
 *
 * Every accepted result is checked against the parser's promises (counts
 * match dimensions, features in [0, 1], labels below the class count);
 * a broken promise traps.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/dataset.h"

#define FUZZ_MAX_BYTES ((size_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_array(const roost_idx_array *arr, uint32_t magic)
{
    size_t count = 1;
    uint32_t want_dims = magic == 0x00000801u ? 1 : 3;
    if (arr->ndims != want_dims && !(want_dims == 3 && arr->ndims == 4))
        __builtin_trap();
    for (uint32_t d = 0; d < arr->ndims; d++) {
        if (arr->dims[d] == 0)
            __builtin_trap();
        if (__builtin_mul_overflow(count, arr->dims[d], &count))
            __builtin_trap();
    }
    if (count != arr->count || count > FUZZ_MAX_BYTES)
        __builtin_trap();
    /* Touch every byte so the sanitizer sees any short allocation. */
    unsigned sum = 0;
    for (size_t i = 0; i < arr->count; i++)
        sum += arr->data[i];
    (void)sum;
}

static void
check_dataset(const roost_dataset *ds, uint32_t declared)
{
    size_t n = roost_dataset_count(ds), dim = roost_dataset_dim(ds);
    uint32_t classes = roost_dataset_num_classes(ds);
    if (n == 0 || dim == 0 || classes == 0 || classes > 256)
        __builtin_trap();
    if (declared != 0 && classes != declared)
        __builtin_trap();
    if ((size_t)roost_dataset_channels(ds) * roost_dataset_height(ds) *
            roost_dataset_width(ds) !=
        dim)
        __builtin_trap();
    const float *x = roost_dataset_features(ds);
    const uint8_t *y = roost_dataset_labels(ds);
    for (size_t i = 0; i < n * dim; i++)
        if (!(x[i] >= 0.0f && x[i] <= 1.0f))
            __builtin_trap();
    for (size_t i = 0; i < n; i++)
        if (y[i] >= classes)
            __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] & 3u;
    data++;
    size--;
    roost_errmsg em;
    if (mode < 2) {
        uint32_t magic = mode == 0 ? 0x00000801u : 0x00000803u;
        roost_idx_array arr;
        int rc = roost_idx_parse_buffer(&arr, NULL, data, size, magic,
                                        FUZZ_MAX_BYTES, "fuzz", &em);
        if (rc == ROOST_OK)
            check_array(&arr, magic);
        else if (arr.data != NULL || em.text[0] == '\0')
            __builtin_trap();
        roost_idx_array_free(&arr, NULL);
        return 0;
    }
    if (size < 2)
        return 0;
    size_t label_len = (size_t)data[0] << 8 | data[1];
    data += 2;
    size -= 2;
    if (label_len > size)
        label_len = size;
    roost_dataset_opts opts = {.max_bytes = FUZZ_MAX_BYTES,
                               .num_classes = mode == 3 ? 10 : 0};
    roost_dataset *ds;
    int rc = roost_dataset_from_idx_buffers(&ds, NULL, data + label_len,
                                            size - label_len, data, label_len,
                                            &opts, &em);
    if (rc == ROOST_OK)
        check_dataset(ds, opts.num_classes);
    else if (ds != NULL || em.text[0] == '\0')
        __builtin_trap();
    roost_dataset_destroy(ds);
    return 0;
}
