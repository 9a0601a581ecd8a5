/*
 * fuzz_wire.c - libFuzzer target for the wire decoder.
 *
 * Every input must either be rejected with an error code, or decode; a
 * decoded message must re-encode, the re-encoding must decode again, and
 * the second re-encoding must equal the first (encode(decode(x)) is a
 * fixed point). A frame that passes the validator but that protobuf-c
 * refuses is a validator gap and aborts too. Tight limits run alongside the
 * defaults so the limit paths (depth, repeated counts, allocation budget) are
 * exercised too. ASan and UBSan catch memory errors and leaks.
 */
#include "common/wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_one(const uint8_t *data, size_t size, const roost_wire_limits *limits)
{
    Roost__V1__Envelope *a = NULL, *b = NULL;
    roost_errmsg em;
    int rc = roost_wire_decode(NULL, data, size, limits, &a, &em);
    if (rc != ROOST_OK) {
        /* protobuf-c refusing a frame the validator passed is a gap in the
         * validator: a finding, not a rejection. */
        if (a != NULL || strstr(em.text, "after validation") != NULL)
            abort();
        return;
    }
    size_t n1 = 0, n2 = 0;
    if (roost_wire_encode(a, NULL, 0, &n1) != ROOST_ETOOSMALL)
        abort();
    uint8_t *e1 = malloc(n1 ? n1 : 1);
    if (e1 == NULL)
        abort();
    if (roost_wire_encode(a, e1, n1, &n1) != ROOST_OK)
        abort();
    /* The re-encoding is canonical and never longer than the input. */
    if (n1 > size)
        abort();
    if (roost_wire_decode(NULL, e1, n1, limits, &b, &em) != ROOST_OK)
        abort();
    uint8_t *e2 = malloc(n1 ? n1 : 1);
    if (e2 == NULL)
        abort();
    if (roost_wire_encode(b, e2, n1, &n2) != ROOST_OK || n2 != n1 ||
        memcmp(e1, e2, n1) != 0)
        abort();
    free(e1);
    free(e2);
    roost_wire_free(NULL, a);
    roost_wire_free(NULL, b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(data, size, NULL);
    roost_wire_limits tight = {
        .max_message_bytes = 4096,
        .max_string_bytes = 16,
        .max_repeated = 2,
        .max_chunk_floats = 8,
        .max_depth = 2,
        .max_alloc_bytes = 2048,
    };
    check_one(data, size, &tight);
    return 0;
}
