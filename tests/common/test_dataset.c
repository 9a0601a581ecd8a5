/*
 * test_dataset.c - the IDX loader on the real Fashion-MNIST files and on
 * malformed files written to a temporary directory: bad magic and type,
 * wrong dimension count, zero and overflowing dimensions, the size cap,
 * truncation, trailing bytes, corrupt gzip, a gzip bomb, count mismatch,
 * labels out of range, missing files. Also datasets built from arrays,
 * and that failures leak nothing through the allocator hooks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/dataset.h"
#include "test_util.h"

/* ---- helpers ---------------------------------------------------------- */

static char tmpdir[256];

static int
setup_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/roost-test-dataset-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown_tmpdir(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *
tmp_path(const char *name)
{
    static char path[2][400];
    static int which;
    which ^= 1;
    snprintf(path[which], sizeof(path[which]), "%s/%s", tmpdir, name);
    return path[which];
}

static void
write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* A growable byte buffer for building IDX blobs. */
typedef struct buf {
    unsigned char *p;
    size_t len, cap;
} buf;

static void
buf_put(buf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void
buf_be32(buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    buf_put(b, x, 4);
}

/* An IDX header: magic 00 00 08 ndims, then the dimensions. */
static void
buf_header(buf *b, unsigned ndims, const uint32_t *dims)
{
    buf_be32(b, 0x00000800u | ndims);
    for (unsigned d = 0; d < ndims; d++)
        buf_be32(b, dims[d]);
}

/* gzip - deflate in (len bytes) into a gzip member, plus `zeros` extra
 * zero bytes of uncompressed data appended (for the bomb). */
static buf
gzip_bytes(const void *in, size_t len, size_t zeros)
{
    buf out = {0};
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(
        deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY),
        Z_OK);
    static unsigned char zero_block[1 << 16];
    unsigned char chunk[1 << 16];
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    for (;;) {
        int flush = Z_NO_FLUSH;
        if (zs.avail_in == 0) {
            if (zeros > 0) {
                size_t take =
                    zeros < sizeof(zero_block) ? zeros : sizeof(zero_block);
                zs.next_in = zero_block;
                zs.avail_in = (uInt)take;
                zeros -= take;
            } else {
                flush = Z_FINISH;
            }
        }
        zs.next_out = chunk;
        zs.avail_out = sizeof(chunk);
        int rc = deflate(&zs, flush);
        buf_put(&out, chunk, sizeof(chunk) - zs.avail_out);
        if (rc == Z_STREAM_END)
            break;
        assert_true(rc == Z_OK || rc == Z_BUF_ERROR);
    }
    deflateEnd(&zs);
    return out;
}

/* Three 2x2 images with pixels 0, 51, ..., and labels 0, 7, 3. */
static buf
tiny_images(void)
{
    buf b = {0};
    uint32_t dims[3] = {3, 2, 2};
    buf_header(&b, 3, dims);
    for (unsigned i = 0; i < 12; i++) {
        unsigned char px = (unsigned char)(i * 255 / 11);
        buf_put(&b, &px, 1);
    }
    return b;
}

static buf
tiny_labels(void)
{
    buf b = {0};
    uint32_t dims[1] = {3};
    buf_header(&b, 1, dims);
    unsigned char l[3] = {0, 7, 3};
    buf_put(&b, l, 3);
    return b;
}

/* expect_load_fails - write images and labels blobs, load them, expect
 * code and a message containing every given fragment. */
static void
expect_load_fails(const buf *images, const buf *labels,
                  const roost_dataset_opts *opts, int code,
                  const char *fragment)
{
    const char *ip = tmp_path("images");
    const char *lp = tmp_path("labels");
    write_file(ip, images->p, images->len);
    write_file(lp, labels->p, labels->len);
    roost_dataset *ds = (roost_dataset *)&ds;
    roost_errmsg em;
    int rc = roost_dataset_load_idx_opts(&ds, NULL, ip, lp, opts, &em);
    if (rc != code || strstr(em.text, fragment) == NULL)
        print_error("got %s \"%s\", expected %s \"...%s...\"\n",
                    roost_errname(rc), em.text, roost_errname(code), fragment);
    assert_int_equal(rc, code);
    assert_null(ds);
    assert_non_null(strstr(em.text, fragment));
    /* The in-memory entry point shares the parser: same verdict. */
    rc = roost_dataset_from_idx_buffers(&ds, NULL, images->p, images->len,
                                        labels->p, labels->len, opts, &em);
    assert_int_equal(rc, code);
    assert_null(ds);
}

/* ---- real data -------------------------------------------------------- */

static void
check_fmnist(int split, size_t count, size_t per_class)
{
    roost_dataset *ds;
    roost_errmsg em;
    int rc = roost_dataset_load_fmnist(&ds, NULL, NULL, split, &em);
    if (rc != ROOST_OK)
        print_error("%s\n", em.text);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(roost_dataset_count(ds), count);
    assert_int_equal(roost_dataset_dim(ds), 784);
    assert_int_equal(roost_dataset_channels(ds), 1);
    assert_int_equal(roost_dataset_height(ds), 28);
    assert_int_equal(roost_dataset_width(ds), 28);
    assert_int_equal(roost_dataset_num_classes(ds), 10);
    size_t hist[10] = {0};
    const uint8_t *labels = roost_dataset_labels(ds);
    for (size_t i = 0; i < count; i++) {
        assert_true(labels[i] < 10);
        hist[labels[i]]++;
    }
    for (int k = 0; k < 10; k++)
        assert_int_equal(hist[k], per_class);
    const float *x = roost_dataset_features(ds);
    double sum = 0.0;
    size_t ones = 0;
    for (size_t i = 0; i < count * 784; i++) {
        assert_true(x[i] >= 0.0f && x[i] <= 1.0f);
        sum += (double)x[i];
        ones += x[i] == 1.0f;
    }
    /* Fashion-MNIST's mean pixel is about 0.286; full-white pixels exist. */
    assert_near(sum / (double)(count * 784), 0.286, 0.01);
    assert_true(ones > 0);
    assert_ptr_equal(roost_dataset_example(ds, 2), x + 2 * 784);
    roost_dataset_destroy(ds);
}

static void
fmnist_train(void **state)
{
    (void)state;
    check_fmnist(ROOST_SPLIT_TRAIN, 60000, 6000);
}

static void
fmnist_test(void **state)
{
    (void)state;
    check_fmnist(ROOST_SPLIT_TEST, 10000, 1000);
}

static void
fmnist_first_example_is_an_ankle_boot(void **state)
{
    (void)state;
    roost_dataset *ds;
    assert_int_equal(
        roost_dataset_load_fmnist(&ds, NULL, NULL, ROOST_SPLIT_TRAIN, NULL),
        ROOST_OK);
    /* Class 9 is "ankle boot"; the first training image is one. */
    assert_int_equal(roost_dataset_labels(ds)[0], 9);
    assert_int_equal(roost_dataset_labels(ds)[1], 0);
    roost_dataset_destroy(ds);
}

static void
fmnist_plain_files_and_missing_dir(void **state)
{
    (void)state;
    /* Decompressed copies are accepted under the un-gzipped names. */
    const char *src = getenv("ROOST_FMNIST_DIR");
    if (src == NULL)
        src = ROOST_FMNIST_DEFAULT_DIR;
    const char *names[2] = {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    for (int i = 0; i < 2; i++) {
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "gzip -dc '%s/%s.gz' > '%s'", src, names[i],
                 tmp_path(names[i]));
        assert_int_equal(system(cmd), 0);
    }
    roost_dataset *ds;
    roost_errmsg em;
    int rc =
        roost_dataset_load_fmnist(&ds, NULL, tmpdir, ROOST_SPLIT_TEST, &em);
    if (rc != ROOST_OK)
        print_error("%s\n", em.text);
    assert_int_equal(rc, ROOST_OK);
    assert_int_equal(roost_dataset_count(ds), 10000);
    roost_dataset_destroy(ds);
    for (int i = 0; i < 2; i++)
        unlink(tmp_path(names[i]));

    /* The train split is absent there: the error names path and package. */
    rc = roost_dataset_load_fmnist(&ds, NULL, tmpdir, ROOST_SPLIT_TRAIN, &em);
    assert_int_equal(rc, ROOST_ENOENT);
    assert_null(ds);
    assert_non_null(strstr(em.text, "train-images-idx3-ubyte"));
    assert_non_null(strstr(em.text, tmpdir));
    assert_non_null(strstr(em.text, "dataset-fashion-mnist"));
    assert_int_equal(roost_dataset_load_fmnist(&ds, NULL, tmpdir, 7, &em),
                     ROOST_EINVAL);
}

/* ---- small valid files ------------------------------------------------ */

static void
tiny_plain_and_gzip_load(void **state)
{
    (void)state;
    buf img = tiny_images(), lab = tiny_labels();
    buf img_gz = gzip_bytes(img.p, img.len, 0);
    buf lab_gz = gzip_bytes(lab.p, lab.len, 0);
    const buf *imgs[2] = {&img, &img_gz}, *labs[2] = {&lab, &lab_gz};
    for (int gi = 0; gi < 2; gi++) {
        for (int gl = 0; gl < 2; gl++) {
            write_file(tmp_path("i"), imgs[gi]->p, imgs[gi]->len);
            write_file(tmp_path("l"), labs[gl]->p, labs[gl]->len);
            roost_dataset *ds;
            roost_errmsg em;
            int rc = roost_dataset_load_idx(&ds, NULL, tmp_path("i"),
                                            tmp_path("l"), &em);
            if (rc != ROOST_OK)
                print_error("%s\n", em.text);
            assert_int_equal(rc, ROOST_OK);
            assert_int_equal(roost_dataset_count(ds), 3);
            assert_int_equal(roost_dataset_dim(ds), 4);
            /* Inferred: max label 7 + 1. */
            assert_int_equal(roost_dataset_num_classes(ds), 8);
            const float *x = roost_dataset_features(ds);
            assert_near((double)x[0], 0.0, 0.0);
            assert_near((double)x[11], 1.0, 0.0);
            assert_near((double)x[5], (double)(5 * 255 / 11) / 255.0, 1e-7);
            assert_int_equal(roost_dataset_labels(ds)[1], 7);
            roost_dataset_destroy(ds);
        }
    }
    /* A declared class count is honoured. */
    roost_dataset_opts opts = {.num_classes = 10};
    roost_dataset *ds;
    assert_int_equal(roost_dataset_from_idx_buffers(&ds, NULL, img_gz.p,
                                                    img_gz.len, lab.p, lab.len,
                                                    &opts, NULL),
                     ROOST_OK);
    assert_int_equal(roost_dataset_num_classes(ds), 10);
    roost_dataset_destroy(ds);
    roost_dataset_destroy(NULL);
    /* Four dimensions: n x channels x rows x cols. */
    buf img4 = {0};
    uint32_t dims[4] = {3, 2, 1, 2};
    buf_header(&img4, 4, dims);
    buf_put(&img4, img.p + 16, 12);
    assert_int_equal(roost_dataset_from_idx_buffers(&ds, NULL, img4.p, img4.len,
                                                    lab.p, lab.len, NULL, NULL),
                     ROOST_OK);
    assert_int_equal(roost_dataset_channels(ds), 2);
    assert_int_equal(roost_dataset_height(ds), 1);
    assert_int_equal(roost_dataset_width(ds), 2);
    assert_int_equal(roost_dataset_dim(ds), 4);
    roost_dataset_destroy(ds);
    free(img.p);
    free(lab.p);
    free(img_gz.p);
    free(lab_gz.p);
    free(img4.p);
}

static void
parse_buffer_single_array(void **state)
{
    (void)state;
    buf lab = tiny_labels();
    roost_idx_array arr;
    assert_int_equal(roost_idx_parse_buffer(&arr, NULL, lab.p, lab.len,
                                            0x00000801, 0, "lab", NULL),
                     ROOST_OK);
    assert_int_equal(arr.ndims, 1);
    assert_int_equal(arr.dims[0], 3);
    assert_int_equal(arr.count, 3);
    assert_int_equal(arr.data[1], 7);
    roost_idx_array_free(&arr, NULL);
    assert_null(arr.data);
    roost_idx_array_free(NULL, NULL);
    roost_errmsg em;
    assert_int_equal(roost_idx_parse_buffer(&arr, NULL, lab.p, 0, 0x00000801, 0,
                                            "empty", &em),
                     ROOST_EDATA);
    assert_non_null(strstr(em.text, "empty: truncated header"));
    assert_null(arr.data);
    assert_int_equal(roost_idx_parse_buffer(&arr, NULL, lab.p, lab.len,
                                            0x00000802, 0, "lab", &em),
                     ROOST_EINVAL);
    free(lab.p);
}

/* ---- malformed files -------------------------------------------------- */

static void
bad_magic_and_type(void **state)
{
    (void)state;
    buf img = tiny_images(), lab = tiny_labels();
    img.p[0] = 0x12;
    expect_load_fails(&img, &lab, NULL, ROOST_EDATA, "bad magic");
    img.p[0] = 0;
    img.p[2] = 0x0D; /* float32 */
    expect_load_fails(&img, &lab, NULL, ROOST_EDATA, "element type 0x0d");
    img.p[2] = 0x08;
    /* Files swapped: a label file where images are expected. */
    expect_load_fails(&lab, &img, NULL, ROOST_EDATA, "labels need 1");
    /* Five dimensions. */
    img.p[3] = 5;
    expect_load_fails(&img, &lab, NULL, ROOST_EDATA, "has 5 dimensions");
    free(img.p);
    free(lab.p);
}

static void
zero_and_overflowing_dimensions(void **state)
{
    (void)state;
    buf lab = tiny_labels();
    buf img = {0};
    uint32_t zero[3] = {3, 0, 2};
    buf_header(&img, 3, zero);
    expect_load_fails(&img, &lab, NULL, ROOST_EDATA, "dimension 1 is zero");
    img.len = 0;
    uint32_t overflow[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 2};
    buf_header(&img, 4, overflow);
    expect_load_fails(&img, &lab, NULL, ROOST_EDATA, "overflow");
    /* Big but representable: refused by the cap before any allocation. */
    img.len = 0;
    uint32_t huge[3] = {0xffffffffu, 0xffffu, 1};
    buf_header(&img, 3, huge);
    expect_load_fails(&img, &lab, NULL, ROOST_ETOOBIG, "above the limit");
    /* The cap is configurable: the tiny file (16 + 12 bytes) fits in 28,
     * not in 27. */
    free(img.p);
    img = tiny_images();
    roost_dataset_opts opts = {.max_bytes = 27};
    expect_load_fails(&img, &lab, &opts, ROOST_ETOOBIG, "limit of 27");
    /* The message names the figure that is compared with the cap (header
     * and data), not the 12 data bytes alone, which are below it. */
    expect_load_fails(&img, &lab, &opts, ROOST_ETOOBIG,
                      "declares 28 bytes (16 of header, 12 of data), above "
                      "the limit of 27");
    opts.max_bytes = 28;
    roost_dataset *ds;
    assert_int_equal(roost_dataset_from_idx_buffers(&ds, NULL, img.p, img.len,
                                                    lab.p, lab.len, &opts,
                                                    NULL),
                     ROOST_OK);
    roost_dataset_destroy(ds);
    free(img.p);
    free(lab.p);
}

static void
truncated_and_trailing(void **state)
{
    (void)state;
    buf img = tiny_images(), lab = tiny_labels();
    size_t full = img.len;
    img.len = full - 1;
    expect_load_fails(&img, &lab, NULL, ROOST_EDATA, "truncated data");
    img.len = 10; /* inside the dimensions */
    expect_load_fails(&img, &lab, NULL, ROOST_EDATA, "truncated header");
    img.len = full;
    unsigned char extra = 0;
    buf_put(&img, &extra, 1);
    expect_load_fails(&img, &lab, NULL, ROOST_EDATA, "trailing bytes");
    /* gzip: truncated compressed stream, corrupt stream, bytes after it. */
    img.len = full;
    buf gz = gzip_bytes(img.p, img.len, 0);
    size_t gz_full = gz.len;
    gz.len = gz_full - 6;
    expect_load_fails(&gz, &lab, NULL, ROOST_EDATA, "gzip stream truncated");
    gz.len = gz_full;
    gz.p[gz_full - 5] ^= 0xff; /* the length/CRC trailer */
    expect_load_fails(&gz, &lab, NULL, ROOST_EDATA, "corrupt gzip");
    gz.p[gz_full - 5] ^= 0xff;
    buf_put(&gz, "junk", 4);
    expect_load_fails(&gz, &lab, NULL, ROOST_EDATA, "after the gzip stream");
    free(gz.p);
    free(img.p);
    free(lab.p);
}

static void
gzip_bomb_refused(void **state)
{
    (void)state;
    /* The header declares one 1x1 image; the member inflates to 256 MiB.
     * The loader must stop one byte past the declared size. */
    buf lab = {0};
    uint32_t ldims[1] = {1};
    buf_header(&lab, 1, ldims);
    unsigned char zero = 0;
    buf_put(&lab, &zero, 1);
    buf img = {0};
    uint32_t dims[3] = {1, 1, 1};
    buf_header(&img, 3, dims);
    buf_put(&img, &zero, 1);
    buf bomb = gzip_bytes(img.p, img.len, (size_t)256 << 20);
    print_message("bomb: %zu compressed bytes inflate to %zu\n", bomb.len,
                  img.len + ((size_t)256 << 20));
    assert_true(bomb.len < (size_t)1 << 20);
    expect_load_fails(&bomb, &lab, NULL, ROOST_EDATA,
                      "inflates beyond the 1 bytes its header declares");
    free(bomb.p);
    /* A header declaring more than the cap is refused before inflating. */
    img.len = 0;
    uint32_t big[4] = {65536, 128, 128, 2};
    buf_header(&img, 4, big);
    bomb = gzip_bytes(img.p, img.len, 1 << 20);
    expect_load_fails(&bomb, &lab, NULL, ROOST_ETOOBIG, "above the limit");
    free(bomb.p);
    free(img.p);
    free(lab.p);
}

static void
count_mismatch_and_label_range(void **state)
{
    (void)state;
    buf img = tiny_images(), lab = {0};
    uint32_t two[1] = {2};
    buf_header(&lab, 1, two);
    buf_put(&lab, "\0\1", 2);
    expect_load_fails(&img, &lab, NULL, ROOST_EDATA, "holds 3 images but");
    free(lab.p);
    lab = tiny_labels(); /* labels 0, 7, 3 */
    roost_dataset_opts opts = {.num_classes = 5};
    expect_load_fails(&img, &lab, &opts, ROOST_EDATA,
                      "label 7 of example 1 is out of range (5 classes)");
    opts.num_classes = 300;
    expect_load_fails(&img, &lab, &opts, ROOST_EINVAL, "above 256");
    free(img.p);
    free(lab.p);
}

static void
missing_file(void **state)
{
    (void)state;
    buf lab = tiny_labels();
    write_file(tmp_path("l"), lab.p, lab.len);
    roost_dataset *ds;
    roost_errmsg em;
    const char *missing = tmp_path("no-such-file");
    assert_int_equal(
        roost_dataset_load_idx(&ds, NULL, missing, tmp_path("l"), &em),
        ROOST_ENOENT);
    assert_null(ds);
    assert_non_null(strstr(em.text, "no-such-file"));
    /* A directory is not a file. */
    int rc = roost_dataset_load_idx(&ds, NULL, tmpdir, tmp_path("l"), &em);
    assert_true(rc == ROOST_EIO || rc == ROOST_EDATA);
    assert_int_equal(roost_dataset_load_idx(&ds, NULL, NULL, "x", &em),
                     ROOST_EINVAL);
    assert_int_equal(roost_dataset_load_idx(NULL, NULL, "x", "y", &em),
                     ROOST_EINVAL);
    free(lab.p);
}

/* ---- arrays and allocator hooks --------------------------------------- */

static void
from_arrays(void **state)
{
    (void)state;
    float x[6] = {0.5f, -1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
    uint8_t y[3] = {1, 0, 1};
    roost_dataset *ds;
    roost_errmsg em;
    assert_int_equal(
        roost_dataset_create_from_arrays(&ds, NULL, 3, 1, 1, 2, x, y, 2, &em),
        ROOST_OK);
    x[0] = 9.0f; /* copied, not referenced */
    assert_near((double)roost_dataset_features(ds)[0], 0.5, 0.0);
    assert_near((double)roost_dataset_example(ds, 2)[1], 5.0, 0.0);
    assert_int_equal(roost_dataset_num_classes(ds), 2);
    assert_int_equal(roost_dataset_dim(ds), 2);
    roost_dataset_destroy(ds);

    assert_int_equal(
        roost_dataset_create_from_arrays(&ds, NULL, 3, 1, 1, 2, x, y, 1, &em),
        ROOST_EDATA);
    assert_null(ds);
    x[3] = (float)NAN;
    assert_int_equal(
        roost_dataset_create_from_arrays(&ds, NULL, 3, 1, 1, 2, x, y, 2, &em),
        ROOST_EDATA);
    assert_non_null(strstr(em.text, "not finite"));
    assert_int_equal(
        roost_dataset_create_from_arrays(&ds, NULL, 0, 1, 1, 2, x, y, 2, &em),
        ROOST_EINVAL);
    assert_int_equal(
        roost_dataset_create_from_arrays(&ds, NULL, 3, 1, 1, 2, x, y, 257, &em),
        ROOST_EINVAL);
    /* One example of 2^96 features: the size check fires before any
     * feature is read. */
    assert_int_equal(roost_dataset_create_from_arrays(&ds, NULL, 1, 0xffffffffu,
                                                      0xffffffffu, 0xffffffffu,
                                                      x, y, 2, &em),
                     ROOST_EOVERFLOW);
    assert_null(ds);
}

static void
gather_and_subset(void **state)
{
    (void)state;
    float x[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    uint8_t y[4] = {0, 1, 2, 3};
    roost_dataset *ds, *sub;
    roost_errmsg em;
    assert_int_equal(
        roost_dataset_create_from_arrays(&ds, NULL, 4, 1, 1, 2, x, y, 5, &em),
        ROOST_OK);
    uint32_t idx[3] = {3, 0, 3};
    float bx[6];
    uint8_t by[3];
    assert_int_equal(roost_dataset_gather(ds, idx, 3, bx, by), ROOST_OK);
    assert_near((double)bx[0], 6.0, 0.0);
    assert_near((double)bx[3], 1.0, 0.0);
    assert_near((double)bx[5], 7.0, 0.0);
    assert_int_equal(by[0], 3);
    assert_int_equal(by[1], 0);
    assert_int_equal(roost_dataset_gather(ds, idx, 3, bx, NULL), ROOST_OK);
    /* A bad index anywhere: nothing written. */
    uint32_t bad[2] = {1, 4};
    bx[0] = -1.0f;
    assert_int_equal(roost_dataset_gather(ds, bad, 2, bx, by), ROOST_EINVAL);
    assert_near((double)bx[0], -1.0, 0.0);

    assert_int_equal(roost_dataset_create_subset(&sub, NULL, ds, idx, 3, &em),
                     ROOST_OK);
    assert_int_equal(roost_dataset_count(sub), 3);
    assert_int_equal(roost_dataset_num_classes(sub), 5);
    assert_int_equal(roost_dataset_labels(sub)[2], 3);
    assert_near((double)roost_dataset_example(sub, 1)[1], 1.0, 0.0);
    roost_dataset_destroy(sub);
    assert_int_equal(roost_dataset_create_subset(&sub, NULL, ds, bad, 2, &em),
                     ROOST_EINVAL);
    assert_null(sub);
    assert_non_null(strstr(em.text, "index 4"));
    assert_int_equal(roost_dataset_create_subset(&sub, NULL, ds, idx, 0, &em),
                     ROOST_EINVAL);
    roost_dataset_destroy(ds);
}

/* A counting allocator: every failure path must give back all it took. */
typedef struct counting {
    long live;
    long calls;
    long fail_at; /* fail the n-th malloc (1-based); 0 never */
} counting;

static void *
count_malloc(void *arg, size_t size)
{
    counting *c = arg;
    if (c->fail_at != 0 && ++c->calls == c->fail_at)
        return NULL;
    void *p = malloc(size);
    if (p != NULL)
        c->live++;
    return p;
}

static void *
count_realloc(void *arg, void *ptr, size_t size)
{
    counting *c = arg;
    void *p = realloc(ptr, size);
    if (ptr == NULL && p != NULL)
        c->live++;
    return p;
}

static void
count_free(void *arg, void *ptr)
{
    counting *c = arg;
    if (ptr != NULL)
        c->live--;
    free(ptr);
}

static void
allocation_failures_leak_nothing(void **state)
{
    (void)state;
    buf img = tiny_images(), lab = tiny_labels();
    buf img_gz = gzip_bytes(img.p, img.len, 0);
    counting c = {0};
    roost_allocator a = {count_malloc, count_realloc, count_free, &c};
    /* Fail each allocation in turn until the load succeeds. */
    int ok = 0;
    for (long n = 1; n < 200 && !ok; n++) {
        c.live = 0;
        c.calls = 0;
        c.fail_at = n;
        roost_dataset *ds;
        int rc = roost_dataset_from_idx_buffers(&ds, &a, img_gz.p, img_gz.len,
                                                lab.p, lab.len, NULL, NULL);
        if (rc == ROOST_OK) {
            ok = 1;
            roost_dataset_destroy(ds);
        } else {
            assert_int_equal(rc, ROOST_ENOMEM);
            assert_null(ds);
        }
        assert_int_equal(c.live, 0);
    }
    assert_true(ok);
    /* Malformed input through a custom allocator leaks nothing either. */
    c.fail_at = 0;
    img_gz.len -= 6;
    roost_dataset *ds;
    assert_int_equal(roost_dataset_from_idx_buffers(&ds, &a, img_gz.p,
                                                    img_gz.len, lab.p, lab.len,
                                                    NULL, NULL),
                     ROOST_EDATA);
    assert_int_equal(c.live, 0);
    free(img.p);
    free(lab.p);
    free(img_gz.p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fmnist_train),
        cmocka_unit_test(fmnist_test),
        cmocka_unit_test(fmnist_first_example_is_an_ankle_boot),
        cmocka_unit_test(fmnist_plain_files_and_missing_dir),
        cmocka_unit_test(tiny_plain_and_gzip_load),
        cmocka_unit_test(parse_buffer_single_array),
        cmocka_unit_test(bad_magic_and_type),
        cmocka_unit_test(zero_and_overflowing_dimensions),
        cmocka_unit_test(truncated_and_trailing),
        cmocka_unit_test(gzip_bomb_refused),
        cmocka_unit_test(count_mismatch_and_label_range),
        cmocka_unit_test(missing_file),
        cmocka_unit_test(from_arrays),
        cmocka_unit_test(gather_and_subset),
        cmocka_unit_test(allocation_failures_leak_nothing),
    };
    return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
