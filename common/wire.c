/*
 * wire.c - encode and decode one roost.v1.Envelope, with every limit
 * checked before protobuf-c allocates anything.
 *
 * Decoding is two passes over the frame. The first (walk) is our own
 * validator: it reads the raw protobuf encoding generically, driven by the
 * ProtobufCMessageDescriptor tables protoc-c generated, so it follows the
 * schema without a hand-written case per message. It allocates nothing
 * and bounds everything protobuf-c would later allocate: string and bytes
 * lengths, repeated counts, nesting depth; and it rejects what the strict
 * v1 policy (wire.h) forbids. Only a frame that passes is handed to
 * protobuf_c_message_unpack, whose allocations go through a wrapper that
 * charges a byte budget, so a disagreement between the two parsers still
 * cannot make the decoder allocate without bound.
 *
 * Why packed fields must be packed: protobuf-c keeps a 32-byte scratch
 * record per field occurrence while unpacking, so 262144 unpacked floats
 * (5 bytes each on the wire) would cost it 8 MiB of scratch for a 1.3 MiB
 * frame. Our encoder always packs, so the unpacked form is refused.
 *
 * Invariants of the validator: pos <= n at every step; a length is
 * compared against the bytes remaining before it is added to pos; depth
 * never exceeds limits->max_depth <= ROOST_WIRE_MAX_DEPTH_CAP, so the
 * recursion and the fixed path arrays are bounded.
 *
 * No state outside the caller's stack; no locking needed.
 */
#include "common/wire.h"

#include "common/alloc.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Protobuf wire types. */
enum {
    WT_VARINT = 0,
    WT_I64 = 1,
    WT_LEN = 2,
    WT_SGROUP = 3,
    WT_EGROUP = 4,
    WT_I32 = 5
};

/* The validator tracks seen fields in a 64-bit mask. */
#define WIRE_MAX_FIELDS 64u

/*
 * Per-field rules that the descriptors cannot express: tighter string
 * limits, and the fields that hold a SHA-256. Fields not listed use
 * limits->max_string_bytes. Keep in sync with the comments in
 * proto/roost.proto and the table in docs/wire.md.
 */
typedef struct wire_field_rule {
    const ProtobufCMessageDescriptor *msg;
    const char *field;
    size_t max_len;
    bool sha256;
} wire_field_rule;

static const wire_field_rule wire_rules[] = {
    {&roost__v1__check_in__descriptor, "software_version", 64, false},
    {&roost__v1__check_in__descriptor, "capabilities", 64, false},
    {&roost__v1__check_in__descriptor, "model_hash", ROOST_WIRE_HASH_BYTES,
     true},
    {&roost__v1__check_in__descriptor, "display_label", 128, false},
    {&roost__v1__model_spec__descriptor, "spec", 4096, false},
    {&roost__v1__task__descriptor, "model_hash", ROOST_WIRE_HASH_BYTES, true},
    {&roost__v1__come_back_later__descriptor, "reason", 1024, false},
    {&roost__v1__update__descriptor, "delta_sha256", ROOST_WIRE_HASH_BYTES,
     true},
    {&roost__v1__decline__descriptor, "message", 1024, false},
    {&roost__v1__ack__descriptor, "reason", 1024, false},
    {&roost__v1__error__descriptor, "message", 1024, false},
};

typedef struct wire_vctx {
    const roost_wire_limits *lim;
    roost_errmsg *em;
    /* The message type and the field being read at each level, for
     * error paths such as "Task.model.spec". */
    const ProtobufCMessageDescriptor *msg[ROOST_WIRE_MAX_DEPTH_CAP + 1];
    const char *field[ROOST_WIRE_MAX_DEPTH_CAP + 1];
} wire_vctx;

void
roost_wire_limits_default(roost_wire_limits *limits)
{
    limits->max_message_bytes = ROOST_WIRE_DEFAULT_MAX_MESSAGE_BYTES;
    limits->max_string_bytes = ROOST_WIRE_DEFAULT_MAX_STRING_BYTES;
    limits->max_repeated = ROOST_WIRE_DEFAULT_MAX_REPEATED;
    limits->max_chunk_floats = ROOST_WIRE_DEFAULT_MAX_CHUNK_FLOATS;
    limits->max_depth = ROOST_WIRE_DEFAULT_MAX_DEPTH;
    limits->max_alloc_bytes = ROOST_WIRE_DEFAULT_MAX_ALLOC_BYTES;
}

/* Fill zero fields of *in with defaults into *out; EINVAL for a depth over
 * the cap. */
static int
wire_resolve_limits(const roost_wire_limits *in, roost_wire_limits *out,
                    roost_errmsg *em)
{
    roost_wire_limits_default(out);
    if (in == NULL)
        return ROOST_OK;
    if (in->max_message_bytes)
        out->max_message_bytes = in->max_message_bytes;
    if (in->max_string_bytes)
        out->max_string_bytes = in->max_string_bytes;
    if (in->max_repeated)
        out->max_repeated = in->max_repeated;
    if (in->max_chunk_floats)
        out->max_chunk_floats = in->max_chunk_floats;
    if (in->max_depth)
        out->max_depth = in->max_depth;
    if (in->max_alloc_bytes)
        out->max_alloc_bytes = in->max_alloc_bytes;
    if (out->max_depth > ROOST_WIRE_MAX_DEPTH_CAP)
        return roost_fail(em, ROOST_EINVAL, "wire limits: max_depth %u > %u",
                          out->max_depth, ROOST_WIRE_MAX_DEPTH_CAP);
    return ROOST_OK;
}

/*
 * Write the path of `field` read at `level` into buf: "Envelope.task" at
 * level 0, otherwise the body's type name followed by the field names
 * below it ("Task.model.spec"). field may be NULL (unknown field).
 */
static void
wire_path(const wire_vctx *c, unsigned level, const char *field, char *buf,
          size_t cap)
{
    size_t used = 0;
    const char *parts[ROOST_WIRE_MAX_DEPTH_CAP + 2];
    size_t n_parts = 0;
    if (level == 0) {
        parts[n_parts++] = c->msg[0]->short_name;
    } else {
        parts[n_parts++] = c->msg[1]->short_name;
        for (unsigned l = 1; l < level; l++)
            parts[n_parts++] = c->field[l];
    }
    if (field != NULL)
        parts[n_parts++] = field;
    buf[0] = '\0';
    for (size_t i = 0; i < n_parts && used < cap; i++) {
        int w =
            snprintf(buf + used, cap - used, "%s%s", i ? "." : "", parts[i]);
        if (w < 0)
            return;
        used += (size_t)w;
    }
}

static int wire_vfail(const wire_vctx *c, unsigned level, const char *field,
                      int code, const char *fmt, ...) ROOST_PRINTF(5, 6);

/* Record "<path>: <detail>" in the caller's errmsg and return code. */
static int
wire_vfail(const wire_vctx *c, unsigned level, const char *field, int code,
           const char *fmt, ...)
{
    char path[128];
    char detail[128];
    va_list ap;
    wire_path(c, level, field, path, sizeof(path));
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return roost_fail(c->em, code, "%s: %s", path, detail);
}

/*
 * Read a varint of at most max_bytes bytes from p[0..n). ETRUNCATED when
 * the input ends inside it; EDECODE when it is longer than max_bytes or
 * does not fit in 64 bits.
 */
static int
wire_read_varint(const uint8_t *p, size_t n, size_t max_bytes, uint64_t *v,
                 size_t *used)
{
    uint64_t r = 0;
    for (size_t i = 0; i < max_bytes; i++) {
        if (i == n)
            return ROOST_ETRUNCATED;
        uint8_t b = p[i];
        if (i == 9 && b > 1)
            return ROOST_EDECODE;
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *v = r;
            *used = i + 1;
            return ROOST_OK;
        }
    }
    return ROOST_EDECODE;
}

/* The wire type a (non-packed) value of this type uses. */
static unsigned
wire_type_of(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return WT_I32;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return WT_I64;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return WT_LEN;
    default:
        return WT_VARINT;
    }
}

static const wire_field_rule *
wire_rule_for(const ProtobufCMessageDescriptor *d,
              const ProtobufCFieldDescriptor *f)
{
    for (size_t i = 0; i < sizeof(wire_rules) / sizeof(wire_rules[0]); i++)
        if (wire_rules[i].msg == d && strcmp(wire_rules[i].field, f->name) == 0)
            return &wire_rules[i];
    return NULL;
}

/*
 * Well-formed UTF-8 (no overlong forms, no surrogates, nothing above
 * U+10FFFF) without NUL: protobuf-c hands strings out NUL-terminated, so an
 * embedded NUL would silently cut them short. Returns the offset of the
 * first bad byte, or n when all is well. Exported (wire.h) so that a
 * sender can refuse, when it is set, a string the decoder would refuse.
 */
size_t
roost_wire_utf8_bad_offset(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        if (b == 0)
            return i;
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp;
        if (b >= 0xc2 && b <= 0xdf) {
            extra = 1;
            cp = b & 0x1fu;
        } else if (b >= 0xe0 && b <= 0xef) {
            extra = 2;
            cp = b & 0x0fu;
        } else if (b >= 0xf0 && b <= 0xf4) {
            extra = 3;
            cp = b & 0x07u;
        } else {
            return i;
        }
        if (n - i <= extra)
            return i;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((extra == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (extra == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return i;
        i += extra + 1;
    }
    return n;
}

/* Element size of a packed fixed-width type, 0 for varint types. */
static size_t
wire_packed_elem_size(ProtobufCType t)
{
    switch (wire_type_of(t)) {
    case WT_I32:
        return 4;
    case WT_I64:
        return 8;
    default:
        return 0;
    }
}

/*
 * Range checks on a varint value of field f: protobuf-c would silently
 * keep only the low 32 bits of a 32-bit field, so a value that does not
 * fit is malformed; enum values must be listed in the schema (v1 enums
 * are closed).
 */
static int
wire_check_varint(const wire_vctx *c, unsigned level,
                  const ProtobufCFieldDescriptor *f, uint64_t v)
{
    int64_t sv = (int64_t)v;
    switch (f->type) {
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_INT32:
        if (sv < INT32_MIN || sv > INT32_MAX)
            return wire_vfail(c, level, f->name, ROOST_EDECODE,
                              "value %lld out of int32 range", (long long)sv);
        if (f->type == PROTOBUF_C_TYPE_ENUM &&
            protobuf_c_enum_descriptor_get_value(f->descriptor, (int)sv) ==
                NULL)
            return wire_vfail(c, level, f->name, ROOST_EDECODE,
                              "unknown enum value %lld", (long long)sv);
        return ROOST_OK;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_SINT32:
        if (v > UINT32_MAX)
            return wire_vfail(c, level, f->name, ROOST_EDECODE,
                              "value %llu out of 32-bit range",
                              (unsigned long long)v);
        return ROOST_OK;
    default:
        return ROOST_OK;
    }
}

static int wire_walk(wire_vctx *c, const ProtobufCMessageDescriptor *d,
                     const uint8_t *p, size_t n, unsigned level,
                     uint64_t *seen_out);

/* A length-delimited value of field f (at p[0..len), len already checked
 * against the enclosing message) for repeated-count accounting in *count.
 */
static int
wire_check_len_value(wire_vctx *c, const ProtobufCMessageDescriptor *d,
                     const ProtobufCFieldDescriptor *f, const uint8_t *p,
                     uint64_t len, size_t remaining, unsigned level,
                     size_t *count)
{
    const char *fn = f->name;
    if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_BYTES) {
        const wire_field_rule *rule = wire_rule_for(d, f);
        size_t limit = c->lim->max_string_bytes;
        if (rule != NULL && rule->sha256) {
            if (len != 0 && len != ROOST_WIRE_HASH_BYTES)
                return wire_vfail(c, level, fn, ROOST_EDECODE,
                                  "length %llu, a SHA-256 must be 0 or %u "
                                  "bytes",
                                  (unsigned long long)len,
                                  ROOST_WIRE_HASH_BYTES);
        } else if (rule != NULL && rule->max_len < limit) {
            limit = rule->max_len;
        }
        if (len > limit)
            return wire_vfail(c, level, fn, ROOST_ETOOBIG,
                              "length %llu exceeds limit %zu",
                              (unsigned long long)len, limit);
        if (len > remaining)
            return wire_vfail(c, level, fn, ROOST_ETRUNCATED,
                              "length %llu but only %zu bytes remain",
                              (unsigned long long)len, remaining);
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            size_t bad = roost_wire_utf8_bad_offset(p, (size_t)len);
            if (bad != (size_t)len)
                return wire_vfail(c, level, fn, ROOST_EDECODE,
                                  "invalid UTF-8 or NUL at byte %zu", bad);
        }
        *count = 1;
        return ROOST_OK;
    }
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (len > remaining)
            return wire_vfail(c, level, fn, ROOST_ETRUNCATED,
                              "length %llu but only %zu bytes remain",
                              (unsigned long long)len, remaining);
        if (level + 1 > c->lim->max_depth)
            return wire_vfail(c, level, fn, ROOST_EDEPTH,
                              "nesting depth %u exceeds limit %u", level + 1,
                              c->lim->max_depth);
        uint64_t seen;
        *count = 1;
        return wire_walk(c, f->descriptor, p, (size_t)len, level + 1, &seen);
    }

    /* A packed run of scalars. */
    bool is_float = f->type == PROTOBUF_C_TYPE_FLOAT;
    size_t limit = is_float ? c->lim->max_chunk_floats : c->lim->max_repeated;
    size_t elem = wire_packed_elem_size(f->type);
    uint64_t n_elems;
    if (elem != 0) {
        if (len % elem != 0)
            return wire_vfail(c, level, fn, ROOST_EDECODE,
                              "packed length %llu is not a multiple of %zu",
                              (unsigned long long)len, elem);
        n_elems = len / elem;
        if (n_elems > limit)
            return wire_vfail(c, level, fn, ROOST_ETOOBIG,
                              "%llu elements exceed limit %zu",
                              (unsigned long long)n_elems, limit);
        if (len > remaining)
            return wire_vfail(c, level, fn, ROOST_ETRUNCATED,
                              "length %llu but only %zu bytes remain",
                              (unsigned long long)len, remaining);
    } else {
        if (len > remaining)
            return wire_vfail(c, level, fn, ROOST_ETRUNCATED,
                              "length %llu but only %zu bytes remain",
                              (unsigned long long)len, remaining);
        n_elems = 0;
        size_t off = 0;
        while (off < (size_t)len) {
            uint64_t v;
            size_t used;
            int rc =
                wire_read_varint(p + off, (size_t)len - off, 10, &v, &used);
            if (rc != ROOST_OK)
                return wire_vfail(c, level, fn, rc,
                                  "bad varint at packed offset %zu", off);
            off += used;
            rc = wire_check_varint(c, level, f, v);
            if (rc != ROOST_OK)
                return rc;
            if (++n_elems > limit)
                return wire_vfail(c, level, fn, ROOST_ETOOBIG,
                                  "more than %zu elements", limit);
        }
    }
    *count = (size_t)n_elems;
    return ROOST_OK;
}

/*
 * Validate the message of type d encoded in p[0..n) at nesting level
 * `level`. On success *seen_out has bit i set for each field index i that
 * occurred.
 */
static int
wire_walk(wire_vctx *c, const ProtobufCMessageDescriptor *d, const uint8_t *p,
          size_t n, unsigned level, uint64_t *seen_out)
{
    uint64_t seen = 0;
    size_t counts[WIRE_MAX_FIELDS] = {0};
    size_t pos = 0;

    c->msg[level] = d;
    if (d->n_fields > WIRE_MAX_FIELDS)
        return wire_vfail(c, level, NULL, ROOST_EINVAL,
                          "schema has %u fields, validator handles %u",
                          d->n_fields, WIRE_MAX_FIELDS);
    while (pos < n) {
        uint64_t tag;
        size_t used;
        /* protobuf-c reads tags of at most 5 bytes. */
        int rc = wire_read_varint(p + pos, n - pos, 5, &tag, &used);
        if (rc != ROOST_OK || tag > UINT32_MAX)
            return wire_vfail(c, level, NULL,
                              rc == ROOST_OK ? ROOST_EDECODE : rc,
                              "bad field tag at offset %zu", pos);
        pos += used;
        uint32_t number = (uint32_t)(tag >> 3);
        unsigned wt = (unsigned)(tag & 7);
        if (number == 0)
            return wire_vfail(c, level, NULL, ROOST_EDECODE,
                              "field number 0 at offset %zu", pos - used);
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(d, number);
        if (f == NULL)
            return wire_vfail(c, level, NULL, ROOST_EUNKNOWNFIELD,
                              "unknown field number %u (wire type %u)", number,
                              wt);
        size_t idx = (size_t)(f - d->fields);
        const char *fn = f->name;
        c->field[level] = fn;

        bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
        bool packed = repeated && (f->flags & PROTOBUF_C_FIELD_FLAG_PACKED);
        unsigned expect = packed ? WT_LEN : wire_type_of(f->type);
        if (wt != expect)
            return wire_vfail(c, level, fn, ROOST_EWIRETYPE,
                              "wire type %u, expected %u%s", wt, expect,
                              packed ? " (packed)" : "");
        uint64_t bit = (uint64_t)1 << idx;
        if (!repeated && (seen & bit))
            return wire_vfail(c, level, fn, ROOST_EDUPLICATE,
                              "singular field appears twice");
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            for (unsigned j = 0; j < d->n_fields; j++) {
                const ProtobufCFieldDescriptor *g = &d->fields[j];
                if (j != idx && (seen & ((uint64_t)1 << j)) &&
                    (g->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                    g->quantifier_offset == f->quantifier_offset)
                    return wire_vfail(c, level, fn, ROOST_EDUPLICATE,
                                      "oneof already holds '%s'", g->name);
            }
        }
        seen |= bit;

        size_t count = 1;
        switch (wt) {
        case WT_VARINT: {
            uint64_t v;
            rc = wire_read_varint(p + pos, n - pos, 10, &v, &used);
            if (rc != ROOST_OK)
                return wire_vfail(c, level, fn, rc, "bad varint at offset %zu",
                                  pos);
            rc = wire_check_varint(c, level, f, v);
            if (rc != ROOST_OK)
                return rc;
            pos += used;
            break;
        }
        case WT_I64:
        case WT_I32: {
            size_t width = wt == WT_I64 ? 8 : 4;
            if (n - pos < width)
                return wire_vfail(c, level, fn, ROOST_ETRUNCATED,
                                  "%zu-byte value but only %zu bytes remain",
                                  width, n - pos);
            pos += width;
            break;
        }
        default: { /* WT_LEN; expect is never a group type */
            uint64_t len;
            /* protobuf-c reads lengths of at most 5 bytes. */
            rc = wire_read_varint(p + pos, n - pos, 5, &len, &used);
            if (rc != ROOST_OK)
                return wire_vfail(c, level, fn, rc, "bad length at offset %zu",
                                  pos);
            pos += used;
            rc = wire_check_len_value(c, d, f, p + pos, len, n - pos, level,
                                      &count);
            if (rc != ROOST_OK)
                return rc;
            pos += (size_t)len;
            break;
        }
        }
        if (repeated) {
            size_t limit = f->type == PROTOBUF_C_TYPE_FLOAT
                               ? c->lim->max_chunk_floats
                               : c->lim->max_repeated;
            if (count > limit - counts[idx])
                return wire_vfail(c, level, fn, ROOST_ETOOBIG,
                                  "more than %zu elements", limit);
            counts[idx] += count;
        }
    }
    *seen_out = seen;
    return ROOST_OK;
}

int
roost_wire_validate(const uint8_t *buf, size_t len,
                    const roost_wire_limits *limits, roost_errmsg *em)
{
    roost_wire_limits lim;
    roost_errmsg_clear(em);
    int rc = wire_resolve_limits(limits, &lim, em);
    if (rc != ROOST_OK)
        return rc;
    if (buf == NULL && len > 0)
        return roost_fail(em, ROOST_EINVAL, "wire: NULL buffer");
    if (len > lim.max_message_bytes)
        return roost_fail(em, ROOST_ETOOBIG,
                          "Envelope: frame of %zu bytes exceeds limit %zu", len,
                          lim.max_message_bytes);
    wire_vctx c;
    memset(&c, 0, sizeof(c));
    c.lim = &lim;
    c.em = em;
    uint64_t seen = 0;
    rc = wire_walk(&c, &roost__v1__envelope__descriptor, buf, len, 0, &seen);
    if (rc != ROOST_OK)
        return rc;
    if (seen == 0)
        return roost_fail(em, ROOST_EMISSING, "Envelope: no body");
    return ROOST_OK;
}

/*
 * The allocator protobuf-c sees during unpack: each block carries a header
 * with its total size so frees can be credited back to the budget. The
 * header is max_align_t-sized so the payload keeps malloc's alignment.
 */
typedef struct wire_budget {
    const roost_allocator *alloc;
    size_t limit;
    size_t used;
    bool over;
    bool oom;
} wire_budget;

#define WIRE_HDR sizeof(max_align_t)

static void *
wire_budget_alloc(void *arg, size_t size)
{
    wire_budget *b = arg;
    size_t total;
    if (!roost_size_add(size, WIRE_HDR, &total) || total > b->limit - b->used) {
        b->over = true;
        return NULL;
    }
    unsigned char *base = roost_alloc_malloc(b->alloc, total);
    if (base == NULL) {
        b->oom = true;
        return NULL;
    }
    memcpy(base, &total, sizeof(total));
    b->used += total;
    return base + WIRE_HDR;
}

static void
wire_budget_free(void *arg, void *ptr)
{
    wire_budget *b = arg;
    if (ptr == NULL)
        return;
    unsigned char *base = (unsigned char *)ptr - WIRE_HDR;
    size_t total;
    memcpy(&total, base, sizeof(total));
    if (b->limit != SIZE_MAX) /* SIZE_MAX: freeing after decode returned */
        b->used -= total;
    roost_alloc_free(b->alloc, base);
}

int
roost_wire_decode(const roost_allocator *alloc, const uint8_t *buf, size_t len,
                  const roost_wire_limits *limits, Roost__V1__Envelope **out,
                  roost_errmsg *em)
{
    if (out == NULL)
        return roost_fail(em, ROOST_EINVAL, "wire: NULL out");
    *out = NULL;
    roost_wire_limits lim;
    int rc = wire_resolve_limits(limits, &lim, em);
    if (rc != ROOST_OK)
        return rc;
    rc = roost_wire_validate(buf, len, &lim, em);
    if (rc != ROOST_OK)
        return rc;

    wire_budget b = {alloc, lim.max_alloc_bytes, 0, false, false};
    ProtobufCAllocator pa = {wire_budget_alloc, wire_budget_free, &b};
    ProtobufCMessage *m = protobuf_c_message_unpack(
        &roost__v1__envelope__descriptor, &pa, len, buf);
    if (m == NULL) {
        if (b.over)
            return roost_fail(em, ROOST_ETOOBIG,
                              "Envelope: decoding needs more than %zu bytes "
                              "of memory",
                              lim.max_alloc_bytes);
        if (b.oom)
            return roost_fail(em, ROOST_ENOMEM, "Envelope: out of memory");
        /* The validator accepted what protobuf-c refused: a validator gap,
         * reported rather than hidden. */
        return roost_fail(em, ROOST_EDECODE,
                          "Envelope: rejected by protobuf-c after validation");
    }
    *out = (Roost__V1__Envelope *)m;
    return ROOST_OK;
}

void
roost_wire_free(const roost_allocator *alloc, Roost__V1__Envelope *env)
{
    if (env == NULL)
        return;
    wire_budget b = {alloc, SIZE_MAX, 0, false, false};
    ProtobufCAllocator pa = {wire_budget_alloc, wire_budget_free, &b};
    protobuf_c_message_free_unpacked(&env->base, &pa);
}

int
roost_wire_encoded_size(const Roost__V1__Envelope *env, size_t *len)
{
    if (env == NULL || len == NULL)
        return ROOST_EINVAL;
    if (env->body_case == ROOST__V1__ENVELOPE__BODY__NOT_SET)
        return ROOST_EMISSING;
    *len = protobuf_c_message_get_packed_size(&env->base);
    return ROOST_OK;
}

int
roost_wire_encode(const Roost__V1__Envelope *env, uint8_t *buf, size_t cap,
                  size_t *len)
{
    size_t need;
    if (buf == NULL && cap > 0)
        return ROOST_EINVAL;
    int rc = roost_wire_encoded_size(env, &need);
    if (rc != ROOST_OK)
        return rc;
    *len = need;
    if (need > cap)
        return ROOST_ETOOSMALL;
    size_t wrote = protobuf_c_message_pack(&env->base, buf);
    if (wrote != need)
        return ROOST_EINVAL; /* only a corrupt message can do this */
    return ROOST_OK;
}

int
roost_wire_encode_reuse(const roost_allocator *alloc,
                        const Roost__V1__Envelope *env, uint8_t **buf,
                        size_t *cap, size_t *len)
{
    if (buf == NULL || cap == NULL)
        return ROOST_EINVAL;
    int rc = roost_wire_encode(env, *buf, *cap, len);
    if (rc != ROOST_ETOOSMALL)
        return rc;
    uint8_t *grown = roost_alloc_realloc(alloc, *buf, *len);
    if (grown == NULL)
        return ROOST_ENOMEM;
    *buf = grown;
    *cap = *len;
    return roost_wire_encode(env, *buf, *cap, len);
}

const char *
roost_wire_body_name(const Roost__V1__Envelope *env)
{
    if (env == NULL)
        return "none";
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &roost__v1__envelope__descriptor, (unsigned)env->body_case);
    if (f == NULL)
        return "none";
    return ((const ProtobufCMessageDescriptor *)f->descriptor)->short_name;
}
