/*
 * fuzz_config.c - the coordinator's configuration parser (server/config.c)
 * on arbitrary file contents: parse, derive and check, print the effective
 * configuration, free. Nothing may crash, leak or invoke undefined
 * behaviour, whatever the bytes; a rejection must come with a message.
 * Seeds in corpus/config: the generated sample and a few small files.
 */
#include "server/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    roost_serve_config cfg;
    if (roost_config_init(&cfg) != ROOST_OK) {
        free(text);
        return 0;
    }
    roost_errmsg em;
    roost_errmsg_clear(&em);
    int rc = roost_config_load_string(&cfg, text, "fuzz.conf", &em);
    if (rc == ROOST_OK)
        rc = roost_config_finish(&cfg, &em);
    if (rc != ROOST_OK && em.text[0] == '\0')
        abort(); /* every refusal says why */
    if (rc == ROOST_OK) {
        FILE *sink = fopen("/dev/null", "w");
        if (sink != NULL) {
            roost_config_write(&cfg, sink, false);
            fclose(sink);
        }
    }
    roost_config_free(&cfg);
    free(text);
    return 0;
}
