/*
 * gen_wire_corpus.c - writes the seed corpus of fuzz_wire: one encoded
 * sample Envelope of each body type (tests/common/wire_samples.c), named
 * after the body, into the directory given as the only argument.
 *   gen_wire_corpus tests/fuzz/corpus/wire
 */
#include "common/wire.h"

#include "tests/common/wire_samples.h"

#include <stdio.h>
#include <stdlib.h>

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    static wire_samples s;
    wire_samples_fill(&s);
    for (int i = 0; i < WIRE_SAMPLE_COUNT; i++) {
        uint8_t buf[4096];
        size_t len;
        if (roost_wire_encode(&s.env[i], buf, sizeof(buf), &len) != ROOST_OK) {
            fprintf(stderr, "encode failed for sample %d\n", i);
            return 1;
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.bin", argv[1],
                 roost_wire_body_name(&s.env[i]));
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
            perror(path);
            return 1;
        }
    }
    return 0;
}
