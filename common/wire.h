/*
 * wire.h - the wire codec: one encoded roost.v1.Envelope per buffer.
 *
 * The transport adds and strips the 4-byte length prefix of each frame;
 * this module turns one frame's payload into a Roost__V1__Envelope and
 * back (docs/wire.md). Decoding is hardened for untrusted peers: a
 * validator walks the raw protobuf bytes against the generated descriptors
 * and enforces every limit below BEFORE protobuf-c allocates anything, and
 * the allocation that follows runs under a byte budget.
 *
 * Strict v1 policy: unknown field numbers, unknown enum values, singular
 * fields that appear twice, two members of a oneof, unpacked encodings of
 * packed repeated fields, strings that are not UTF-8 or contain NUL, and
 * hash fields that are neither empty nor 32 bytes are all rejected. The
 * protocol version is negotiated at check-in, so a peer never needs to
 * skip what it does not understand, and silently dropping fields would
 * hide a version mismatch.
 *
 * All functions are reentrant; none keeps state between calls.
 */
#ifndef ROOST_COMMON_WIRE_H
#define ROOST_COMMON_WIRE_H

#include <roost/roost.h>

#include "common/error.h"

#include "roost.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* The protocol version this schema describes (CheckIn.protocol_version). */
#define ROOST_WIRE_PROTOCOL_VERSION 1u

/* Default limits (roost_wire_limits_default). */
#define ROOST_WIRE_DEFAULT_MAX_MESSAGE_BYTES (2u * 1024u * 1024u) /* 2 MiB */
#define ROOST_WIRE_DEFAULT_MAX_STRING_BYTES 4096u
#define ROOST_WIRE_DEFAULT_MAX_REPEATED 64u
#define ROOST_WIRE_DEFAULT_MAX_CHUNK_FLOATS 262144u /* 1 MiB of float32 */
#define ROOST_WIRE_DEFAULT_MAX_DEPTH 8u
#define ROOST_WIRE_DEFAULT_MAX_ALLOC_BYTES (4u * 1024u * 1024u) /* 4 MiB */
/* Hard ceiling for max_depth (the validator keeps a fixed-size path). */
#define ROOST_WIRE_MAX_DEPTH_CAP 32u
/* Length of every SHA-256 field (model_hash, delta_sha256). */
#define ROOST_WIRE_HASH_BYTES 32u

/*
 * Decoder limits. Every frame is checked against them before any
 * allocation. A zero field means "use the default".
 *
 *  max_message_bytes  whole frame payload (default 2 MiB; a full chunk of
 *                     262144 floats is 1 MiB plus a few bytes).
 *  max_string_bytes   any string field; fields with a smaller limit in the
 *                     schema comments keep it (min of the two). Default
 *                     4096 (ModelSpec.spec).
 *  max_repeated       elements of a repeated field other than a packed
 *                     float vector (CheckIn.capabilities). Default 64.
 *  max_chunk_floats   floats in one packed float field (ParamChunk.values).
 *                     Default 262144.
 *  max_depth          nesting of messages; the Envelope is depth 0, its
 *                     body depth 1. Default 8, at most 32.
 *  max_alloc_bytes    bytes protobuf-c may hold allocated at once while
 *                     unpacking (including its scratch space and our
 *                     per-allocation bookkeeping). Default 4 MiB.
 */
typedef struct roost_wire_limits {
    size_t max_message_bytes;
    size_t max_string_bytes;
    size_t max_repeated;
    size_t max_chunk_floats;
    unsigned max_depth;
    size_t max_alloc_bytes;
} roost_wire_limits;

/* roost_wire_limits_default - fill *limits with the defaults above. */
void roost_wire_limits_default(roost_wire_limits *limits);

/*
 * roost_wire_encoded_size - the encoded length of env, in bytes, in *len.
 * Returns ROOST_EINVAL when env or len is NULL, ROOST_EMISSING when no
 * body member is set.
 */
int roost_wire_encoded_size(const Roost__V1__Envelope *env, size_t *len);

/*
 * roost_wire_encode - serialise env into buf[0..cap). On success *len is
 * the number of bytes written. When cap is too small (including buf ==
 * NULL with cap == 0, the size query) nothing is written, *len is the
 * length needed and ROOST_ETOOSMALL is returned. ROOST_EMISSING when no
 * body member is set; ROOST_EINVAL for NULL env or len, or buf == NULL
 * with cap > 0. The encoder trusts env (it is built by our own code); it
 * does not apply the decoder's limits.
 */
int roost_wire_encode(const Roost__V1__Envelope *env, uint8_t *buf, size_t cap,
                      size_t *len);

/*
 * roost_wire_encode_reuse - encode env into a caller-kept buffer *buf of
 * *cap bytes, growing it (through alloc; NULL = libc) when the message
 * does not fit, so senders reuse one buffer for every message. On success
 * *len is the encoded length. On ROOST_ENOMEM the old buffer is kept.
 * Other codes as roost_wire_encode.
 */
int roost_wire_encode_reuse(const roost_allocator *alloc,
                            const Roost__V1__Envelope *env, uint8_t **buf,
                            size_t *cap, size_t *len);

/*
 * roost_wire_validate - run only the allocation-free validator over one
 * frame (what roost_wire_decode does before unpacking). limits NULL means
 * the defaults. Returns ROOST_OK or the code roost_wire_decode would give,
 * with detail in em (which may be NULL).
 */
int roost_wire_validate(const uint8_t *buf, size_t len,
                        const roost_wire_limits *limits, roost_errmsg *em);

/*
 * roost_wire_decode - validate and unpack one frame payload.
 *
 * alloc: allocator for the decoded message (NULL = libc); the same
 * allocator must be passed to roost_wire_free. limits: NULL = defaults.
 * On success *out owns the message (free it with roost_wire_free); on
 * failure *out is NULL, nothing is leaked and em (may be NULL) names the
 * message and field, e.g. "Task.model.spec: length 70000 exceeds limit
 * 4096".
 *
 * Returns:
 *  ROOST_OK
 *  ROOST_EINVAL        NULL out, or NULL buf with len > 0, or bad limits
 *  ROOST_ETOOBIG       frame, string, bytes or repeated count over a limit,
 *                      or the allocation budget exhausted while unpacking
 *  ROOST_ETRUNCATED    a varint, fixed value or length-delimited field runs
 *                      past the end of its enclosing message
 *  ROOST_EWIRETYPE     wire type does not match the field's declared type
 *                      (also: unpacked encoding of a packed field)
 *  ROOST_EUNKNOWNFIELD field number not in this schema version
 *  ROOST_EDEPTH        nesting deeper than max_depth
 *  ROOST_EDUPLICATE    a singular field twice, or two members of a oneof
 *  ROOST_EMISSING      the Envelope carries no body
 *  ROOST_EDECODE       anything else malformed: overlong varint, field
 *                      number 0, packed length not a multiple of the
 *                      element size, invalid UTF-8 or NUL in a string,
 *                      unknown enum value, hash neither 0 nor 32 bytes
 *  ROOST_ENOMEM        the allocator failed (within the budget)
 */
int roost_wire_decode(const roost_allocator *alloc, const uint8_t *buf,
                      size_t len, const roost_wire_limits *limits,
                      Roost__V1__Envelope **out, roost_errmsg *em);

/* roost_wire_free - free a message from roost_wire_decode with the same
 * allocator. NULL env does nothing. */
void roost_wire_free(const roost_allocator *alloc, Roost__V1__Envelope *env);

/* roost_wire_utf8_bad_offset - the offset of the first byte of s[0..n)
 * that makes it something the decoder refuses in a string field (not
 * well-formed UTF-8: overlong forms, surrogates, code points above
 * U+10FFFF; or a NUL), or n when the whole text is acceptable. Reentrant. */
size_t roost_wire_utf8_bad_offset(const uint8_t *s, size_t n);

/* roost_wire_body_name - the short name of env's body type ("Task", ...)
 * or "none"; a static string, for logs. */
const char *roost_wire_body_name(const Roost__V1__Envelope *env);

#endif
