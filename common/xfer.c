/*
 * xfer.c - chunked transfer of float32 vectors: the sender's slicing, the
 * receiver's checks and copy, and the SHA-256 parameter hash (xfer.h).
 *
 * Receiver invariants: chunks 0 .. next_index-1 have been accepted, they
 * tile dst[0 .. next_offset) exactly, and the hash context has absorbed
 * exactly those floats in order. `failed` latches on any error except a
 * duplicate, because after a bad chunk the stream position is unknown.
 * No locking: a receiver belongs to one thread at a time.
 */
#include "common/xfer.h"

#include "common/alloc.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

struct roost_xfer_receiver {
    const roost_allocator *alloc;
    roost_xfer_expect expect;
    float *dst;
    EVP_MD_CTX *md;
    uint32_t next_index;
    size_t next_offset;
    bool complete;
    bool failed;
};

/* Feed v[0..n) to md as little-endian float32 bytes. */
static int
xfer_hash_update(EVP_MD_CTX *md, const float *v, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The in-memory bytes are already the defined encoding. */
    if (n > 0 && EVP_DigestUpdate(md, v, n * sizeof(float)) != 1)
        return ROOST_ECRYPTO;
    return ROOST_OK;
#else
    unsigned char block[4096];
    while (n > 0) {
        size_t take = n < sizeof(block) / 4 ? n : sizeof(block) / 4;
        for (size_t i = 0; i < take; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            block[4 * i + 0] = (unsigned char)(u & 0xff);
            block[4 * i + 1] = (unsigned char)((u >> 8) & 0xff);
            block[4 * i + 2] = (unsigned char)((u >> 16) & 0xff);
            block[4 * i + 3] = (unsigned char)(u >> 24);
        }
        if (EVP_DigestUpdate(md, block, take * 4) != 1)
            return ROOST_ECRYPTO;
        v += take;
        n -= take;
    }
    return ROOST_OK;
#endif
}

int
roost_xfer_hash_floats(const float *v, size_t n,
                       uint8_t out[ROOST_XFER_HASH_BYTES])
{
    if (out == NULL || (v == NULL && n > 0))
        return ROOST_EINVAL;
    size_t bytes;
    if (!roost_size_mul(n, sizeof(float), &bytes))
        return ROOST_EOVERFLOW;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL)
        return ROOST_ENOMEM;
    unsigned int len = 0;
    int rc = ROOST_ECRYPTO;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
        xfer_hash_update(md, v, n) == ROOST_OK &&
        EVP_DigestFinal_ex(md, out, &len) == 1 && len == ROOST_XFER_HASH_BYTES)
        rc = ROOST_OK;
    EVP_MD_CTX_free(md);
    return rc;
}

int
roost_xfer_plan(size_t num_params, size_t chunk_floats, uint32_t *chunk_count)
{
    if (chunk_count == NULL)
        return ROOST_EINVAL;
    if (chunk_floats == 0)
        chunk_floats = ROOST_XFER_DEFAULT_CHUNK_FLOATS;
    if (chunk_floats > ROOST_XFER_MAX_CHUNK_FLOATS)
        return ROOST_EINVAL;
    size_t count = num_params / chunk_floats + (num_params % chunk_floats != 0);
    if (count > UINT32_MAX)
        return ROOST_EOVERFLOW;
    *chunk_count = (uint32_t)count;
    return ROOST_OK;
}

int
roost_xfer_sender_init(roost_xfer_sender *s, const float *values,
                       size_t num_params, size_t chunk_floats,
                       uint64_t round_id, uint64_t task_id,
                       uint32_t *chunk_count)
{
    if (s == NULL || (values == NULL && num_params > 0))
        return ROOST_EINVAL;
    if (chunk_floats == 0)
        chunk_floats = ROOST_XFER_DEFAULT_CHUNK_FLOATS;
    uint32_t count;
    int rc = roost_xfer_plan(num_params, chunk_floats, &count);
    if (rc != ROOST_OK)
        return rc;
    s->values = values;
    s->num_params = num_params;
    s->chunk_floats = chunk_floats;
    s->round_id = round_id;
    s->task_id = task_id;
    s->chunk_count = count;
    s->next = 0;
    if (chunk_count != NULL)
        *chunk_count = count;
    return ROOST_OK;
}

int
roost_xfer_sender_next(roost_xfer_sender *s, Roost__V1__ParamChunk *chunk,
                       bool *done)
{
    if (s == NULL || chunk == NULL || done == NULL)
        return ROOST_EINVAL;
    if (s->next >= s->chunk_count) {
        *done = true;
        return ROOST_OK;
    }
    size_t offset = (size_t)s->next * s->chunk_floats;
    size_t n = s->num_params - offset;
    if (n > s->chunk_floats)
        n = s->chunk_floats;
    roost__v1__param_chunk__init(chunk);
    chunk->round_id = s->round_id;
    chunk->task_id = s->task_id;
    chunk->index = s->next;
    chunk->offset = offset;
    chunk->n_values = n;
    /* protobuf-c's struct has no const; the chunk only borrows the floats
     * for encoding (documented in xfer.h), so dropping const is safe. */
    chunk->values = (float *)(uintptr_t)(s->values + offset);
    s->next++;
    *done = false;
    return ROOST_OK;
}

static int xfer_finish(roost_xfer_receiver *r, roost_errmsg *em);

int
roost_xfer_receiver_create(roost_xfer_receiver **out,
                           const roost_allocator *alloc,
                           const roost_xfer_expect *expect, float *dst,
                           size_t dst_cap, roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "xfer: NULL out");
    *out = NULL;
    if (expect == NULL || (dst == NULL && expect->num_params > 0))
        return roost_fail(em, ROOST_EINVAL, "xfer: NULL expect or dst");
    size_t max_chunk = expect->max_chunk_floats ? expect->max_chunk_floats
                                                : ROOST_XFER_MAX_CHUNK_FLOATS;
    size_t n = expect->num_params;
    uint32_t count = expect->chunk_count;
    size_t min_chunks = n / max_chunk + (n % max_chunk != 0);
    if ((n == 0) != (count == 0) || count > n || count < min_chunks)
        return roost_fail(em, ROOST_EINVAL,
                          "xfer: %u chunks cannot carry %zu floats at 1..%zu "
                          "per chunk",
                          count, n, max_chunk);
    if (dst_cap < n)
        return roost_fail(em, ROOST_ETOOSMALL,
                          "xfer: buffer holds %zu floats, vector has %zu",
                          dst_cap, n);

    roost_xfer_receiver *r = roost_alloc_malloc(alloc, sizeof(*r));
    if (r == NULL)
        return roost_fail(em, ROOST_ENOMEM, "xfer: out of memory");
    memset(r, 0, sizeof(*r));
    r->alloc = alloc;
    r->expect = *expect;
    r->expect.max_chunk_floats = max_chunk;
    r->dst = dst;
    r->md = EVP_MD_CTX_new();
    if (r->md == NULL || EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1) {
        roost_xfer_receiver_destroy(r);
        return roost_fail(em, ROOST_ECRYPTO, "xfer: SHA-256 init failed");
    }
    if (n == 0) {
        /* Nothing will arrive: the empty vector is complete now, if the
         * announced hash is that of the empty string. */
        int rc = xfer_finish(r, em);
        if (rc != ROOST_OK) {
            roost_xfer_receiver_destroy(r);
            return rc;
        }
    }
    *out = r;
    return ROOST_OK;
}

/* Finish the hash and compare; sets complete on a match. */
static int
xfer_finish(roost_xfer_receiver *r, roost_errmsg *em)
{
    uint8_t got[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(r->md, got, &len) != 1 ||
        len != ROOST_XFER_HASH_BYTES) {
        r->failed = true;
        return roost_fail(em, ROOST_ECRYPTO, "xfer: SHA-256 final failed");
    }
    if (CRYPTO_memcmp(got, r->expect.sha256, ROOST_XFER_HASH_BYTES) != 0) {
        r->failed = true;
        return roost_fail(em, ROOST_EHASH,
                          "xfer: SHA-256 of the %zu received floats does not "
                          "match the announced hash",
                          r->next_offset);
    }
    r->complete = true;
    return ROOST_OK;
}

/* Latch the failure and record the message. */
static int
xfer_reject(roost_xfer_receiver *r, roost_errmsg *em, int code,
            const char *what, uint32_t index)
{
    r->failed = true;
    return roost_fail(em, code, "xfer: chunk %u: %s", index, what);
}

int
roost_xfer_receiver_add(roost_xfer_receiver *r,
                        const Roost__V1__ParamChunk *chunk, bool *complete,
                        roost_errmsg *em)
{
    if (r == NULL || chunk == NULL || complete == NULL ||
        (chunk->values == NULL && chunk->n_values > 0))
        return roost_fail(em, ROOST_EINVAL, "xfer: NULL argument");
    *complete = r->complete;
    if (r->failed)
        return roost_fail(em, ROOST_ESTATE, "xfer: receiver already failed");
    const roost_xfer_expect *e = &r->expect;
    uint32_t idx = chunk->index;
    if (chunk->round_id != e->round_id || chunk->task_id != e->task_id) {
        r->failed = true;
        return roost_fail(em, ROOST_ESTALE,
                          "xfer: chunk %u for round %llu task %llu, expected "
                          "round %llu task %llu",
                          idx, (unsigned long long)chunk->round_id,
                          (unsigned long long)chunk->task_id,
                          (unsigned long long)e->round_id,
                          (unsigned long long)e->task_id);
    }
    if (r->complete) /* the assembled vector stays valid */
        return roost_fail(em, ROOST_EPROTO,
                          "xfer: chunk %u after the vector was complete", idx);
    if (idx < r->next_index)
        return roost_fail(em, ROOST_EDUPLICATE,
                          "xfer: chunk %u already received", idx);
    if (idx >= e->chunk_count)
        return xfer_reject(r, em, ROOST_ESHAPE, "index beyond chunk_count",
                           idx);
    if (idx > r->next_index)
        return xfer_reject(r, em, ROOST_EPROTO,
                           "arrived before an earlier chunk (gap or "
                           "reordering)",
                           idx);
    if (chunk->offset != r->next_offset)
        return xfer_reject(r, em, ROOST_ESHAPE,
                           "offset does not continue the previous chunk "
                           "(overlap or hole)",
                           idx);
    size_t n = chunk->n_values;
    if (n == 0 || n > e->max_chunk_floats)
        return xfer_reject(r, em, ROOST_ESHAPE,
                           "length outside 1..max_chunk_floats", idx);
    if (n > e->num_params - r->next_offset)
        return xfer_reject(r, em, ROOST_ESHAPE, "runs past num_params", idx);
    bool last = idx + 1 == e->chunk_count;
    bool ends = n == e->num_params - r->next_offset;
    if (last != ends)
        return xfer_reject(r, em, ROOST_ESHAPE,
                           last ? "last chunk does not end the vector"
                                : "vector ends before the last chunk",
                           idx);
    memcpy(r->dst + r->next_offset, chunk->values, n * sizeof(float));
    if (xfer_hash_update(r->md, chunk->values, n) != ROOST_OK)
        return xfer_reject(r, em, ROOST_ECRYPTO, "SHA-256 update failed", idx);
    r->next_offset += n;
    r->next_index++;
    if (last) {
        int rc = xfer_finish(r, em);
        if (rc != ROOST_OK)
            return rc;
    }
    *complete = r->complete;
    return ROOST_OK;
}

bool
roost_xfer_receiver_complete(const roost_xfer_receiver *r)
{
    return r != NULL && r->complete;
}

size_t
roost_xfer_receiver_received(const roost_xfer_receiver *r)
{
    return r != NULL ? r->next_offset : 0;
}

void
roost_xfer_receiver_destroy(roost_xfer_receiver *r)
{
    if (r == NULL)
        return;
    EVP_MD_CTX_free(r->md);
    roost_alloc_free(r->alloc, r);
}
