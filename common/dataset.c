/*
 * dataset.c - IDX parsing (plain or gzip) and the in-memory dataset.
 *
 * One parser serves files and memory: an idx_reader delivers decoded bytes
 * from either a FILE or a buffer, through zlib when the input starts with
 * the gzip magic 1f 8b. The parser reads the header first, validates every
 * field, computes the payload size with overflow checks and compares it
 * with the cap, and only then allocates. It then reads exactly the
 * declared payload and requires the input to end there, so a gzip member
 * that inflates beyond its header (a "gzip bomb") is refused after at most
 * one extra decoded byte, and memory never exceeds what the header
 * declared.
 *
 * Invariants of a roost_dataset: count > 0, dim = channels * height *
 * width > 0, count * dim * sizeof(float) does not overflow, every label <
 * num_classes <= 256. It is immutable after creation: no locking needed
 * for concurrent readers.
 */
#include "common/dataset.h"

#include "common/alloc.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_IMAGES4 0x00000804u
#define IDX_TYPE_UBYTE 0x08u
#define IDX_MAX_DIMS 4u
#define READER_CHUNK 16384u

struct roost_dataset {
    const roost_allocator *alloc;
    size_t count;
    size_t dim;
    uint32_t channels;
    uint32_t height;
    uint32_t width;
    uint32_t num_classes;
    float *features;
    uint8_t *labels;
};

/* ---------------------------------------------------------------------- */
/* The byte source: a FILE or a memory buffer, optionally through zlib.   */
/* ---------------------------------------------------------------------- */

typedef struct idx_reader {
    FILE *fp;           /* file source, or NULL */
    const uint8_t *mem; /* memory source when fp is NULL */
    size_t mem_len;
    size_t mem_pos;
    const roost_allocator *alloc;
    const char *name; /* for messages */
    roost_errmsg *em;
    bool gzip;    /* input is a gzip stream */
    bool z_ready; /* inflateInit2 succeeded */
    bool z_end;   /* inflate reported Z_STREAM_END */
    z_stream zs;
    uint8_t inbuf[READER_CHUNK]; /* raw bytes read from fp for zlib */
} idx_reader;

/* zlib's allocation hooks, routed to the Roost allocator. */
static voidpf
reader_zalloc(voidpf opaque, uInt items, uInt size)
{
    return roost_alloc_calloc((const roost_allocator *)opaque, items, size);
}

static void
reader_zfree(voidpf opaque, voidpf ptr)
{
    roost_alloc_free((const roost_allocator *)opaque, ptr);
}

/* raw_read - up to n undecoded bytes of the input; *got 0 means EOF. */
static int
raw_read(idx_reader *r, uint8_t *dst, size_t n, size_t *got)
{
    if (r->fp != NULL) {
        *got = fread(dst, 1, n, r->fp);
        if (*got < n && ferror(r->fp))
            return roost_fail(r->em, ROOST_EIO, "%s: read error", r->name);
        return ROOST_OK;
    }
    size_t left = r->mem_len - r->mem_pos;
    *got = n < left ? n : left;
    if (*got > 0)
        memcpy(dst, r->mem + r->mem_pos, *got);
    r->mem_pos += *got;
    return ROOST_OK;
}

/* reader_refill - give zlib more compressed input; *eof when none is left.
 * A memory source is handed to zlib in place, without copying. */
static int
reader_refill(idx_reader *r, bool *eof)
{
    *eof = false;
    if (r->fp == NULL) {
        size_t left = r->mem_len - r->mem_pos;
        if (left == 0) {
            *eof = true;
            return ROOST_OK;
        }
        size_t take = left < UINT_MAX ? left : UINT_MAX;
        /* zlib never writes through next_in; its type lacks const only
         * for historical reasons. */
        r->zs.next_in = (Bytef *)(uintptr_t)(r->mem + r->mem_pos);
        r->zs.avail_in = (uInt)take;
        r->mem_pos += take;
        return ROOST_OK;
    }
    size_t got;
    int rc = raw_read(r, r->inbuf, sizeof(r->inbuf), &got);
    if (rc != ROOST_OK)
        return rc;
    if (got == 0) {
        *eof = true;
        return ROOST_OK;
    }
    r->zs.next_in = r->inbuf;
    r->zs.avail_in = (uInt)got;
    return ROOST_OK;
}

/* reader_open - peek at the first two bytes to choose plain or gzip. */
static int
reader_open(idx_reader *r)
{
    uint8_t head[2];
    size_t got;
    int rc = raw_read(r, head, sizeof(head), &got);
    if (rc != ROOST_OK)
        return rc;
    r->gzip = got == 2 && head[0] == 0x1f && head[1] == 0x8b;
    if (!r->gzip) {
        /* Plain: rewind by the peeked bytes. */
        if (r->fp != NULL) {
            if (got > 0 && fseek(r->fp, 0, SEEK_SET) != 0)
                return roost_fail(r->em, ROOST_EIO, "%s: cannot seek", r->name);
        } else {
            r->mem_pos = 0;
        }
        return ROOST_OK;
    }
    memset(&r->zs, 0, sizeof(r->zs));
    r->zs.zalloc = reader_zalloc;
    r->zs.zfree = reader_zfree;
    /* zlib takes a non-const opaque pointer and hands it back unchanged. */
    r->zs.opaque = (voidpf)(uintptr_t)r->alloc;
    /* 16 + MAX_WBITS: gzip wrapper only, with its CRC-32 and length check. */
    int zrc = inflateInit2(&r->zs, 16 + MAX_WBITS);
    if (zrc != Z_OK)
        return roost_fail(r->em, zrc == Z_MEM_ERROR ? ROOST_ENOMEM : ROOST_EIO,
                          "%s: cannot initialise zlib", r->name);
    r->z_ready = true;
    /* Feed the two peeked bytes back: they are part of the stream. */
    if (r->fp != NULL) {
        r->inbuf[0] = head[0];
        r->inbuf[1] = head[1];
        r->zs.next_in = r->inbuf;
        r->zs.avail_in = 2;
    } else {
        r->mem_pos = 0;
    }
    return ROOST_OK;
}

static void
reader_close(idx_reader *r)
{
    if (r->z_ready)
        inflateEnd(&r->zs);
    r->z_ready = false;
}

/* reader_decode - up to n decoded bytes; *got < n only at end of data. */
static int
reader_decode(idx_reader *r, uint8_t *dst, size_t n, size_t *got)
{
    *got = 0;
    if (!r->gzip) {
        while (*got < n) {
            size_t part;
            int rc = raw_read(r, dst + *got, n - *got, &part);
            if (rc != ROOST_OK)
                return rc;
            if (part == 0)
                break;
            *got += part;
        }
        return ROOST_OK;
    }
    while (*got < n && !r->z_end) {
        if (r->zs.avail_in == 0) {
            bool eof;
            int rc = reader_refill(r, &eof);
            if (rc != ROOST_OK)
                return rc;
            if (eof)
                return roost_fail(r->em, ROOST_EDATA,
                                  "%s: gzip stream truncated (no end marker)",
                                  r->name);
        }
        size_t want = n - *got;
        r->zs.next_out = dst + *got;
        r->zs.avail_out = (uInt)(want < UINT_MAX ? want : UINT_MAX);
        uInt before = r->zs.avail_out;
        int zrc = inflate(&r->zs, Z_NO_FLUSH);
        *got += before - r->zs.avail_out;
        if (zrc == Z_STREAM_END) {
            r->z_end = true;
        } else if (zrc == Z_MEM_ERROR) {
            return roost_fail(r->em, ROOST_ENOMEM, "%s: zlib out of memory",
                              r->name);
        } else if (zrc == Z_BUF_ERROR && r->zs.avail_in != 0) {
            /* No progress with input and output room left: cannot happen
             * with a sane zlib, but never spin on it. */
            return roost_fail(r->em, ROOST_EDATA, "%s: inflate stalled",
                              r->name);
        } else if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            return roost_fail(r->em, ROOST_EDATA, "%s: corrupt gzip data: %s",
                              r->name,
                              r->zs.msg != NULL ? r->zs.msg : "inflate error");
        }
    }
    return ROOST_OK;
}

/* reader_expect_end - the input must end exactly here: no decoded byte
 * left, and for gzip a complete stream (CRC checked) with nothing after
 * it. */
static int
reader_expect_end(idx_reader *r, size_t declared)
{
    uint8_t extra;
    size_t got;
    int rc = reader_decode(r, &extra, 1, &got);
    if (rc != ROOST_OK)
        return rc;
    if (got != 0) {
        if (r->gzip)
            return roost_fail(r->em, ROOST_EDATA,
                              "%s: gzip data inflates beyond the %zu bytes "
                              "its header declares",
                              r->name, declared);
        return roost_fail(r->em, ROOST_EDATA,
                          "%s: trailing bytes after the %zu bytes the header "
                          "declares",
                          r->name, declared);
    }
    if (r->gzip) {
        bool eof = r->zs.avail_in == 0;
        if (eof) {
            rc = reader_refill(r, &eof);
            if (rc != ROOST_OK)
                return rc;
        }
        if (!eof)
            return roost_fail(r->em, ROOST_EDATA,
                              "%s: trailing bytes after the gzip stream "
                              "(multi-member gzip is not supported)",
                              r->name);
    }
    return ROOST_OK;
}

/* ---------------------------------------------------------------------- */
/* IDX parsing.                                                           */
/* ---------------------------------------------------------------------- */

static uint32_t
load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

static int
read_header_bytes(idx_reader *r, uint8_t *dst, size_t n, const char *what)
{
    size_t got;
    int rc = reader_decode(r, dst, n, &got);
    if (rc != ROOST_OK)
        return rc;
    if (got < n)
        return roost_fail(r->em, ROOST_EDATA,
                          "%s: truncated header (%s: %zu of %zu bytes)",
                          r->name, what, got, n);
    return ROOST_OK;
}

/* idx_parse - the one parser behind files, buffers and the fuzzer. */
static int
idx_parse(idx_reader *r, roost_idx_array *out, uint32_t expect_magic,
          size_t max_bytes)
{
    uint8_t head[4 + 4 * IDX_MAX_DIMS];
    int rc = reader_open(r);
    if (rc != ROOST_OK)
        return rc;
    rc = read_header_bytes(r, head, 4, "magic");
    if (rc != ROOST_OK)
        return rc;
    uint32_t magic = load_be32(head);
    bool want_images = expect_magic != IDX_MAGIC_LABELS;
    if (head[0] != 0 || head[1] != 0)
        return roost_fail(r->em, ROOST_EDATA,
                          "%s: bad magic 0x%08x (not an IDX file)", r->name,
                          (unsigned)magic);
    if (head[2] != IDX_TYPE_UBYTE)
        return roost_fail(r->em, ROOST_EDATA,
                          "%s: element type 0x%02x not supported (only 0x08, "
                          "unsigned byte)",
                          r->name, (unsigned)head[2]);
    uint32_t ndims = head[3];
    bool ndims_ok = want_images ? (ndims == 3 || ndims == 4) : ndims == 1;
    if (!ndims_ok)
        return roost_fail(r->em, ROOST_EDATA,
                          "%s: magic 0x%08x has %u dimensions; %s", r->name,
                          (unsigned)magic, (unsigned)ndims,
                          want_images ? "images need 3 (n x rows x cols) or "
                                        "4 (n x channels x rows x cols)"
                                      : "labels need 1 (n)");
    rc = read_header_bytes(r, head + 4, 4 * (size_t)ndims, "dimensions");
    if (rc != ROOST_OK)
        return rc;
    size_t count = 1;
    for (uint32_t d = 0; d < ndims; d++) {
        out->dims[d] = load_be32(head + 4 + 4 * d);
        if (out->dims[d] == 0)
            return roost_fail(r->em, ROOST_EDATA, "%s: dimension %u is zero",
                              r->name, (unsigned)d);
        if (!roost_size_mul(count, out->dims[d], &count))
            return roost_fail(r->em, ROOST_EDATA,
                              "%s: dimensions overflow the address space",
                              r->name);
    }
    out->ndims = ndims;
    size_t header_len = 4 + 4 * (size_t)ndims;
    /* The cap covers header and data (dataset.h), so the message names
     * that sum: the data alone may well be below the cap. */
    size_t total;
    if (!roost_size_add(count, header_len, &total))
        return roost_fail(r->em, ROOST_ETOOBIG,
                          "%s: header declares %zu bytes of data plus %zu of "
                          "header, above the limit of %zu",
                          r->name, count, header_len, max_bytes);
    if (total > max_bytes)
        return roost_fail(r->em, ROOST_ETOOBIG,
                          "%s: header declares %zu bytes (%zu of header, %zu "
                          "of data), above the limit of %zu",
                          r->name, total, header_len, count, max_bytes);
    uint8_t *data = roost_alloc_malloc(r->alloc, count);
    if (data == NULL)
        return roost_fail(r->em, ROOST_ENOMEM, "%s: cannot allocate %zu bytes",
                          r->name, count);
    size_t got;
    rc = reader_decode(r, data, count, &got);
    if (rc == ROOST_OK && got < count)
        rc = roost_fail(r->em, ROOST_EDATA,
                        "%s: truncated data: header declares %zu bytes, file "
                        "holds %zu",
                        r->name, count, got);
    if (rc == ROOST_OK)
        rc = reader_expect_end(r, count);
    if (rc != ROOST_OK) {
        roost_alloc_free(r->alloc, data);
        return rc;
    }
    out->count = count;
    out->data = data;
    return ROOST_OK;
}

static void
idx_array_reset(roost_idx_array *arr)
{
    memset(arr, 0, sizeof(*arr));
}

static int
idx_parse_with(idx_reader *r, roost_idx_array *out, uint32_t expect_magic,
               size_t max_bytes)
{
    idx_array_reset(out);
    if (max_bytes == 0)
        max_bytes = ROOST_IDX_DEFAULT_MAX_BYTES;
    int rc = idx_parse(r, out, expect_magic, max_bytes);
    reader_close(r);
    if (rc != ROOST_OK)
        idx_array_reset(out);
    return rc;
}

int
roost_idx_parse_buffer(roost_idx_array *out, const roost_allocator *alloc,
                       const void *buf, size_t len, uint32_t expect_magic,
                       size_t max_bytes, const char *name, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL output");
    idx_array_reset(out);
    if (buf == NULL && len > 0)
        return roost_fail(em, ROOST_EINVAL, "NULL buffer");
    if (expect_magic != IDX_MAGIC_LABELS && expect_magic != IDX_MAGIC_IMAGES &&
        expect_magic != IDX_MAGIC_IMAGES4)
        return roost_fail(em, ROOST_EINVAL,
                          "unknown IDX magic 0x%08x asked for",
                          (unsigned)expect_magic);
    /* The reader carries a 16 KiB staging buffer for files; memory sources
     * never touch it, but it lives in the struct, so allocate the struct
     * rather than put it on a possibly small stack. */
    idx_reader *r = roost_alloc_calloc(alloc, 1, sizeof(*r));
    if (r == NULL)
        return roost_fail(em, ROOST_ENOMEM, "cannot allocate IDX reader");
    r->mem = buf;
    r->mem_len = len;
    r->alloc = alloc;
    r->name = name != NULL ? name : "IDX buffer";
    r->em = em;
    int rc = idx_parse_with(r, out, expect_magic, max_bytes);
    roost_alloc_free(alloc, r);
    return rc;
}

void
roost_idx_array_free(roost_idx_array *arr, const roost_allocator *alloc)
{
    if (arr == NULL)
        return;
    roost_alloc_free(alloc, arr->data);
    idx_array_reset(arr);
}

/* idx_parse_file - open path and parse it. ENOENT is reported as such so
 * callers can point at the package that provides the file. */
static int
idx_parse_file(roost_idx_array *out, const roost_allocator *alloc,
               const char *path, uint32_t expect_magic, size_t max_bytes,
               roost_errmsg *em)
{
    idx_array_reset(out);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        int err = errno;
        char why[128];
        if (strerror_r(err, why, sizeof(why)) != 0)
            snprintf(why, sizeof(why), "errno %d", err);
        return roost_fail(em, err == ENOENT ? ROOST_ENOENT : ROOST_EIO,
                          "%s: cannot open: %s", path, why);
    }
    idx_reader *r = roost_alloc_calloc(alloc, 1, sizeof(*r));
    if (r == NULL) {
        fclose(fp);
        return roost_fail(em, ROOST_ENOMEM, "cannot allocate IDX reader");
    }
    r->fp = fp;
    r->alloc = alloc;
    r->name = path;
    r->em = em;
    int rc = idx_parse_with(r, out, expect_magic, max_bytes);
    roost_alloc_free(alloc, r);
    fclose(fp);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Datasets.                                                              */
/* ---------------------------------------------------------------------- */

/* dataset_alloc - an empty dataset with room for count x dim features and
 * count labels; shapes must already be validated. */
static int
dataset_alloc(roost_dataset **out, const roost_allocator *alloc, size_t count,
              uint32_t channels, uint32_t height, uint32_t width,
              roost_errmsg *em)
{
    size_t dim, cells, bytes;
    *out = NULL;
    if (!roost_size_mul(channels, height, &dim) ||
        !roost_size_mul(dim, width, &dim) ||
        !roost_size_mul(count, dim, &cells) ||
        !roost_size_mul(cells, sizeof(float), &bytes))
        return roost_fail(em, ROOST_EOVERFLOW,
                          "dataset of %zu x %u x %u x %u floats overflows",
                          count, (unsigned)channels, (unsigned)height,
                          (unsigned)width);
    roost_dataset *ds = roost_alloc_calloc(alloc, 1, sizeof(*ds));
    if (ds == NULL)
        return roost_fail(em, ROOST_ENOMEM, "cannot allocate dataset");
    ds->alloc = alloc;
    ds->count = count;
    ds->dim = dim;
    ds->channels = channels;
    ds->height = height;
    ds->width = width;
    ds->features = roost_alloc_malloc(alloc, bytes);
    ds->labels = roost_alloc_malloc(alloc, count);
    if (ds->features == NULL || ds->labels == NULL) {
        roost_dataset_destroy(ds);
        return roost_fail(em, ROOST_ENOMEM,
                          "cannot allocate %zu bytes of features", bytes);
    }
    *out = ds;
    return ROOST_OK;
}

/* check_labels - every label below the declared class count (or, when
 * declared is 0, infer max + 1); sets *num_classes. */
static int
check_labels(const uint8_t *labels, size_t count, uint32_t declared,
             const char *name, uint32_t *num_classes, roost_errmsg *em)
{
    if (declared > 256)
        return roost_fail(em, ROOST_EINVAL,
                          "declared class count %u above 256 (labels are "
                          "bytes)",
                          (unsigned)declared);
    uint32_t max_label = 0;
    for (size_t i = 0; i < count; i++) {
        if (declared != 0 && labels[i] >= declared)
            return roost_fail(em, ROOST_EDATA,
                              "%s: label %u of example %zu is out of range "
                              "(%u classes)",
                              name, (unsigned)labels[i], i, (unsigned)declared);
        if (labels[i] > max_label)
            max_label = labels[i];
    }
    *num_classes = declared != 0 ? declared : max_label + 1;
    return ROOST_OK;
}

/* dataset_from_arrays - assemble a dataset from parsed image and label
 * arrays; names are for messages. */
static int
dataset_from_arrays(roost_dataset **out, const roost_allocator *alloc,
                    const roost_idx_array *images, const char *images_name,
                    const roost_idx_array *labels, const char *labels_name,
                    uint32_t declared_classes, roost_errmsg *em)
{
    *out = NULL;
    size_t count = images->dims[0];
    if (labels->dims[0] != images->dims[0])
        return roost_fail(em, ROOST_EDATA,
                          "%s holds %u images but %s holds %u labels",
                          images_name, (unsigned)images->dims[0], labels_name,
                          (unsigned)labels->dims[0]);
    uint32_t channels = 1, height, width;
    if (images->ndims == 4) {
        channels = images->dims[1];
        height = images->dims[2];
        width = images->dims[3];
    } else {
        height = images->dims[1];
        width = images->dims[2];
    }
    uint32_t num_classes = 0; /* set by check_labels when it succeeds */
    int rc = check_labels(labels->data, count, declared_classes, labels_name,
                          &num_classes, em);
    if (rc != ROOST_OK)
        return rc;
    roost_dataset *ds;
    rc = dataset_alloc(&ds, alloc, count, channels, height, width, em);
    if (rc != ROOST_OK)
        return rc;
    ds->num_classes = num_classes;
    size_t cells = count * ds->dim; /* checked in dataset_alloc */
    for (size_t i = 0; i < cells; i++)
        ds->features[i] = (float)images->data[i] / 255.0f;
    memcpy(ds->labels, labels->data, count);
    *out = ds;
    return ROOST_OK;
}

int
roost_dataset_load_idx_opts(roost_dataset **out, const roost_allocator *alloc,
                            const char *images_path, const char *labels_path,
                            const roost_dataset_opts *opts, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL output");
    *out = NULL;
    if (images_path == NULL || labels_path == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL path");
    size_t max_bytes = opts != NULL ? opts->max_bytes : 0;
    uint32_t declared = opts != NULL ? opts->num_classes : 0;
    roost_idx_array labels, images;
    int rc = idx_parse_file(&labels, alloc, labels_path, IDX_MAGIC_LABELS,
                            max_bytes, em);
    if (rc != ROOST_OK)
        return rc;
    rc = idx_parse_file(&images, alloc, images_path, IDX_MAGIC_IMAGES,
                        max_bytes, em);
    if (rc == ROOST_OK) {
        rc = dataset_from_arrays(out, alloc, &images, images_path, &labels,
                                 labels_path, declared, em);
        roost_idx_array_free(&images, alloc);
    }
    roost_idx_array_free(&labels, alloc);
    return rc;
}

int
roost_dataset_load_idx(roost_dataset **out, const roost_allocator *alloc,
                       const char *images_path, const char *labels_path,
                       roost_errmsg *em)
{
    return roost_dataset_load_idx_opts(out, alloc, images_path, labels_path,
                                       NULL, em);
}

int
roost_dataset_from_idx_buffers(roost_dataset **out,
                               const roost_allocator *alloc, const void *images,
                               size_t images_len, const void *labels,
                               size_t labels_len,
                               const roost_dataset_opts *opts, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL output");
    *out = NULL;
    size_t max_bytes = opts != NULL ? opts->max_bytes : 0;
    uint32_t declared = opts != NULL ? opts->num_classes : 0;
    roost_idx_array lab, img;
    int rc = roost_idx_parse_buffer(&lab, alloc, labels, labels_len,
                                    IDX_MAGIC_LABELS, max_bytes, "labels", em);
    if (rc != ROOST_OK)
        return rc;
    rc = roost_idx_parse_buffer(&img, alloc, images, images_len,
                                IDX_MAGIC_IMAGES, max_bytes, "images", em);
    if (rc == ROOST_OK) {
        rc = dataset_from_arrays(out, alloc, &img, "images", &lab, "labels",
                                 declared, em);
        roost_idx_array_free(&img, alloc);
    }
    roost_idx_array_free(&lab, alloc);
    return rc;
}

/* fmnist_path - dir/base.gz if it can be opened, else dir/base;
 * ROOST_ENOENT naming the path and the Debian package when neither
 * exists, ROOST_EIO when one exists but cannot be opened. */
static int
fmnist_path(char *buf, size_t cap, const char *dir, const char *base,
            roost_errmsg *em)
{
    static const char *const suffixes[2] = {".gz", ""};
    for (int i = 0; i < 2; i++) {
        int n = snprintf(buf, cap, "%s/%s%s", dir, base, suffixes[i]);
        if (n < 0 || (size_t)n >= cap)
            return roost_fail(em, ROOST_EINVAL, "Fashion-MNIST path too long");
        FILE *fp = fopen(buf, "rb");
        if (fp != NULL) {
            fclose(fp);
            return ROOST_OK;
        }
        int err = errno;
        if (err != ENOENT) {
            char why[128];
            if (strerror_r(err, why, sizeof(why)) != 0)
                snprintf(why, sizeof(why), "errno %d", err);
            return roost_fail(em, ROOST_EIO, "%s: cannot open: %s", buf, why);
        }
    }
    return roost_fail(em, ROOST_ENOENT,
                      "Fashion-MNIST file %s[.gz] not found; install the "
                      "Debian package dataset-fashion-mnist or set "
                      "ROOST_FMNIST_DIR",
                      buf);
}

int
roost_dataset_load_fmnist(roost_dataset **out, const roost_allocator *alloc,
                          const char *dir, int split, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL output");
    *out = NULL;
    if (split != ROOST_SPLIT_TRAIN && split != ROOST_SPLIT_TEST)
        return roost_fail(em, ROOST_EINVAL, "unknown split %d", split);
    if (dir == NULL) {
        const char *env = getenv("ROOST_FMNIST_DIR");
        dir = env != NULL && env[0] != '\0' ? env : ROOST_FMNIST_DEFAULT_DIR;
    }
    const char *prefix = split == ROOST_SPLIT_TRAIN ? "train" : "t10k";
    char base[64], images_path[4096], labels_path[4096];
    snprintf(base, sizeof(base), "%s-images-idx3-ubyte", prefix);
    int rc = fmnist_path(images_path, sizeof(images_path), dir, base, em);
    if (rc != ROOST_OK)
        return rc;
    snprintf(base, sizeof(base), "%s-labels-idx1-ubyte", prefix);
    rc = fmnist_path(labels_path, sizeof(labels_path), dir, base, em);
    if (rc != ROOST_OK)
        return rc;
    roost_dataset_opts opts = {.max_bytes = 0, .num_classes = 10};
    return roost_dataset_load_idx_opts(out, alloc, images_path, labels_path,
                                       &opts, em);
}

int
roost_dataset_create_from_arrays(roost_dataset **out,
                                 const roost_allocator *alloc, size_t count,
                                 uint32_t channels, uint32_t height,
                                 uint32_t width, const float *features,
                                 const uint8_t *labels, uint32_t num_classes,
                                 roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL output");
    *out = NULL;
    if (features == NULL || labels == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL features or labels");
    if (count == 0 || channels == 0 || height == 0 || width == 0)
        return roost_fail(
            em, ROOST_EINVAL, "empty dataset shape %zu x %u x %u x %u", count,
            (unsigned)channels, (unsigned)height, (unsigned)width);
    if (num_classes == 0 || num_classes > 256)
        return roost_fail(em, ROOST_EINVAL,
                          "class count %u outside 1..256 (labels are bytes)",
                          (unsigned)num_classes);
    uint32_t checked;
    int rc = check_labels(labels, count, num_classes, "labels", &checked, em);
    if (rc != ROOST_OK)
        return rc;
    /* Validate before allocating: the shape must be representable and
     * every feature finite. */
    size_t dim, cells, bytes;
    if (!roost_size_mul(channels, height, &dim) ||
        !roost_size_mul(dim, width, &dim) ||
        !roost_size_mul(count, dim, &cells) ||
        !roost_size_mul(cells, sizeof(float), &bytes))
        return roost_fail(em, ROOST_EOVERFLOW,
                          "dataset of %zu x %u x %u x %u floats overflows",
                          count, (unsigned)channels, (unsigned)height,
                          (unsigned)width);
    for (size_t i = 0; i < cells; i++)
        if (!isfinite(features[i]))
            return roost_fail(em, ROOST_EDATA,
                              "feature %zu of example %zu is not finite",
                              i % dim, i / dim);
    roost_dataset *ds;
    rc = dataset_alloc(&ds, alloc, count, channels, height, width, em);
    if (rc != ROOST_OK)
        return rc;
    memcpy(ds->features, features, bytes);
    memcpy(ds->labels, labels, count);
    ds->num_classes = num_classes;
    *out = ds;
    return ROOST_OK;
}

int
roost_dataset_gather(const roost_dataset *ds, const uint32_t *indices, size_t n,
                     float *x, uint8_t *y)
{
    if (ds == NULL || (n > 0 && (indices == NULL || x == NULL)))
        return ROOST_EINVAL;
    for (size_t j = 0; j < n; j++)
        if (indices[j] >= ds->count)
            return ROOST_EINVAL;
    for (size_t j = 0; j < n; j++) {
        memcpy(x + j * ds->dim, ds->features + (size_t)indices[j] * ds->dim,
               ds->dim * sizeof(float));
        if (y != NULL)
            y[j] = ds->labels[indices[j]];
    }
    return ROOST_OK;
}

int
roost_dataset_create_subset(roost_dataset **out, const roost_allocator *alloc,
                            const roost_dataset *ds, const uint32_t *indices,
                            size_t n, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "NULL output");
    *out = NULL;
    if (ds == NULL || indices == NULL || n == 0)
        return roost_fail(em, ROOST_EINVAL, "empty subset");
    for (size_t j = 0; j < n; j++)
        if (indices[j] >= ds->count)
            return roost_fail(em, ROOST_EINVAL,
                              "subset index %u out of range (%zu examples)",
                              (unsigned)indices[j], ds->count);
    roost_dataset *sub;
    int rc =
        dataset_alloc(&sub, alloc, n, ds->channels, ds->height, ds->width, em);
    if (rc != ROOST_OK)
        return rc;
    sub->num_classes = ds->num_classes;
    /* Cannot fail: indices and buffers are checked above. */
    (void)roost_dataset_gather(ds, indices, n, sub->features, sub->labels);
    *out = sub;
    return ROOST_OK;
}

void
roost_dataset_destroy(roost_dataset *ds)
{
    if (ds == NULL)
        return;
    roost_alloc_free(ds->alloc, ds->features);
    roost_alloc_free(ds->alloc, ds->labels);
    roost_alloc_free(ds->alloc, ds);
}

size_t
roost_dataset_count(const roost_dataset *ds)
{
    return ds->count;
}

size_t
roost_dataset_dim(const roost_dataset *ds)
{
    return ds->dim;
}

uint32_t
roost_dataset_channels(const roost_dataset *ds)
{
    return ds->channels;
}

uint32_t
roost_dataset_height(const roost_dataset *ds)
{
    return ds->height;
}

uint32_t
roost_dataset_width(const roost_dataset *ds)
{
    return ds->width;
}

uint32_t
roost_dataset_num_classes(const roost_dataset *ds)
{
    return ds->num_classes;
}

const float *
roost_dataset_features(const roost_dataset *ds)
{
    return ds->features;
}

const uint8_t *
roost_dataset_labels(const roost_dataset *ds)
{
    return ds->labels;
}

const float *
roost_dataset_example(const roost_dataset *ds, size_t i)
{
    return ds->features + i * ds->dim;
}
