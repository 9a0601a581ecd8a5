/*
 * wire_samples.h - one Envelope of every body type with every field set to
 * a non-default value, shared by the wire tests and the generator of the
 * fuzz seed corpus (tests/fuzz/gen_wire_corpus.c).
 */
#ifndef ROOST_TESTS_WIRE_SAMPLES_H
#define ROOST_TESTS_WIRE_SAMPLES_H

#include "roost.pb-c.h"

#include <stdint.h>

#define WIRE_SAMPLE_COUNT 9
#define WIRE_SAMPLE_FLOATS 100

/* Storage for the samples; env[i] points into the other members, so the
 * struct must not be copied or moved after wire_samples_fill. */
typedef struct wire_samples {
    Roost__V1__Envelope env[WIRE_SAMPLE_COUNT];
    Roost__V1__CheckIn check_in;
    char software_version[16];
    char cap_train[16], cap_eval[16], cap_dp[16];
    char *caps[3];
    char display_label[32];
    uint8_t model_hash[32];
    uint8_t delta_hash[32];
    Roost__V1__Task task;
    Roost__V1__ModelSpec model;
    char spec[64];
    Roost__V1__TrainingParams training;
    Roost__V1__DpParams dp;
    Roost__V1__ComeBackLater come_back_later;
    char cbl_reason[32];
    Roost__V1__ParamChunk chunk;
    float values[WIRE_SAMPLE_FLOATS];
    Roost__V1__Update update;
    Roost__V1__Metrics metrics;
    Roost__V1__DpReport dp_report;
    Roost__V1__Decline decline;
    char decline_message[32];
    Roost__V1__Ack ack;
    char ack_reason[32];
    Roost__V1__Error error;
    char error_message[32];
    Roost__V1__EvaluationResult evaluation;
} wire_samples;

/* Fill s; afterwards s->env[i] has body_case i + 1. */
void wire_samples_fill(wire_samples *s);

#endif
