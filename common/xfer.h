/*
 * xfer.h - moving float32 parameter vectors as bounded ParamChunk messages.
 *
 * A vector of num_params floats travels as chunk_count ParamChunk messages,
 * after the Task (global parameters, coordinator -> client) or the Update
 * (delta, client -> coordinator) that announces num_params, chunk_count and
 * the vector's SHA-256. No message ever holds more than one chunk, so the
 * model size is not limited by the frame size.
 *
 * Chunk layout: chunk i carries values[offset .. offset + n) where offset
 * is the sum of the lengths of chunks 0..i-1; every chunk holds 1 ..
 * max_chunk_floats values; the chunks tile [0, num_params) exactly. The
 * sender makes every chunk but the last exactly chunk_floats long; the
 * receiver accepts any tiling that satisfies the rules above.
 *
 * Order policy: chunks must arrive in index order. One TLS stream delivers
 * in order anyway, and in-order arrival lets the receiver hash the vector
 * incrementally as it copies, with no second pass and no bitmap. A chunk
 * with an index already received is ROOST_EDUPLICATE; one with a later
 * index than expected (a gap or reordering) is ROOST_EPROTO.
 *
 * Parameter hash: SHA-256 over the vector's float32 values, each as its 4
 * IEEE-754 bytes in little-endian order, in index order, with nothing
 * before, between or after them (so num_params * 4 bytes in all; the empty
 * vector hashes to SHA-256 of the empty string). On little-endian hosts
 * that is simply the bytes of the float array.
 *
 * Threading: a receiver belongs to one thread at a time; the sender state
 * is a plain struct owned by the caller.
 */
#ifndef ROOST_COMMON_XFER_H
#define ROOST_COMMON_XFER_H

#include <roost/roost.h>

#include "common/error.h"

#include "roost.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROOST_XFER_HASH_BYTES 32u
/* Largest chunk, in floats; equal to the decoder's default limit. */
#define ROOST_XFER_MAX_CHUNK_FLOATS 262144u
/* Default chunk length when the caller passes 0. */
#define ROOST_XFER_DEFAULT_CHUNK_FLOATS 65536u

/*
 * roost_xfer_hash_floats - the parameter hash (above) of v[0..n) into
 * out. v may be NULL when n == 0. ROOST_ECRYPTO if OpenSSL fails.
 */
int roost_xfer_hash_floats(const float *v, size_t n,
                           uint8_t out[ROOST_XFER_HASH_BYTES]);

/*
 * roost_xfer_plan - the number of chunks a vector of num_params floats
 * takes with chunks of chunk_floats floats (0 = default). ROOST_EINVAL
 * when chunk_floats > ROOST_XFER_MAX_CHUNK_FLOATS; ROOST_EOVERFLOW when
 * the count does not fit in uint32_t.
 */
int roost_xfer_plan(size_t num_params, size_t chunk_floats,
                    uint32_t *chunk_count);

/* Sender state: fill with roost_xfer_sender_init, then call
 * roost_xfer_sender_next until *done. The fields are private. */
typedef struct roost_xfer_sender {
    const float *values;
    size_t num_params;
    size_t chunk_floats;
    uint64_t round_id;
    uint64_t task_id;
    uint32_t chunk_count;
    uint32_t next;
} roost_xfer_sender;

/*
 * roost_xfer_sender_init - prepare to send values[0..num_params) in chunks
 * of chunk_floats (0 = default). values is borrowed and must stay valid
 * and unchanged until the last chunk has been encoded. Returns as
 * roost_xfer_plan; *chunk_count (may be NULL) receives the count to
 * announce in the Task or Update.
 */
int roost_xfer_sender_init(roost_xfer_sender *s, const float *values,
                           size_t num_params, size_t chunk_floats,
                           uint64_t round_id, uint64_t task_id,
                           uint32_t *chunk_count);

/*
 * roost_xfer_sender_next - fill *chunk with the next chunk, or set *done
 * when every chunk has been produced (chunk is then untouched). The
 * chunk's values pointer points INTO the sender's array: the chunk may be
 * encoded but must not be freed with protobuf-c or modified. Returns
 * ROOST_OK or ROOST_EINVAL for NULL arguments.
 */
int roost_xfer_sender_next(roost_xfer_sender *s, Roost__V1__ParamChunk *chunk,
                           bool *done);

/* What the receiver expects, from the Task or Update header. */
typedef struct roost_xfer_expect {
    uint64_t round_id;
    uint64_t task_id;
    size_t num_params;
    uint32_t chunk_count;
    /* Largest chunk accepted, in floats; 0 = ROOST_XFER_MAX_CHUNK_FLOATS. */
    size_t max_chunk_floats;
    uint8_t sha256[ROOST_XFER_HASH_BYTES];
} roost_xfer_expect;

typedef struct roost_xfer_receiver roost_xfer_receiver;

/*
 * roost_xfer_receiver_create - a receiver that assembles the vector
 * described by *expect into dst[0..dst_cap), which the caller owns and
 * must keep valid until the receiver is destroyed. alloc may be NULL.
 *
 * Returns ROOST_OK; ROOST_EINVAL for NULL arguments (dst may be NULL only
 * when num_params == 0) or an impossible plan (chunk_count 0 for a
 * non-empty vector, more chunks than floats, or too few chunks to carry
 * num_params at max_chunk_floats each); ROOST_ETOOSMALL when dst_cap <
 * num_params; ROOST_ENOMEM; ROOST_ECRYPTO; ROOST_EHASH when num_params
 * is 0 (complete at once) and the hash is not that of the empty vector.
 * *out is NULL on failure.
 */
int roost_xfer_receiver_create(roost_xfer_receiver **out,
                               const roost_allocator *alloc,
                               const roost_xfer_expect *expect, float *dst,
                               size_t dst_cap, roost_errmsg *em);

/*
 * roost_xfer_receiver_add - accept the next chunk: checks round and task
 * ids, index, offset and length, copies the values into dst and feeds the
 * hash. When the last chunk arrives the hash is finished and compared:
 * *complete becomes true only if it matches.
 *
 * Returns:
 *  ROOST_OK          accepted (*complete tells whether it was the last)
 *  ROOST_ESTALE      round_id or task_id differ from the expected ones
 *  ROOST_EDUPLICATE  index already received
 *  ROOST_EPROTO      index later than the next expected one (gap or
 *                    reordering), or a chunk after completion (which
 *                    leaves the completed vector valid)
 *  ROOST_ESHAPE      offset not where the previous chunk ended (overlap or
 *                    hole), empty or over-long chunk, chunk running past
 *                    num_params, index >= chunk_count, last chunk not
 *                    ending at num_params or a non-last chunk ending there
 *  ROOST_EHASH       all chunks arrived but the SHA-256 differs
 *  ROOST_ECRYPTO     OpenSSL failed
 * Any other error (not EDUPLICATE, not EPROTO after completion) leaves
 * the receiver failed: later calls return ROOST_ESTATE, and dst may hold
 * partial data.
 */
int roost_xfer_receiver_add(roost_xfer_receiver *r,
                            const Roost__V1__ParamChunk *chunk, bool *complete,
                            roost_errmsg *em);

/* roost_xfer_receiver_complete - true when every chunk arrived and the
 * hash matched. */
bool roost_xfer_receiver_complete(const roost_xfer_receiver *r);

/* roost_xfer_receiver_received - number of floats accepted so far. */
size_t roost_xfer_receiver_received(const roost_xfer_receiver *r);

/* roost_xfer_receiver_destroy - frees r (not dst); NULL does nothing. */
void roost_xfer_receiver_destroy(roost_xfer_receiver *r);

#endif
