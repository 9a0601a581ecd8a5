/*
 * wire_samples.c - builds the sample Envelopes (wire_samples.h). Every
 * field gets a value different from its proto3 default, so that a field
 * dropped by the codec changes the re-encoded bytes.
 */
#include "wire_samples.h"

#include <string.h>

void
wire_samples_fill(wire_samples *s)
{
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < 32; i++) {
        s->model_hash[i] = (uint8_t)(0xa0 + i);
        s->delta_hash[i] = (uint8_t)(0x10 + 3 * i);
    }
    for (int i = 0; i < WIRE_SAMPLE_FLOATS; i++)
        s->values[i] = (float)i * 0.25f - 7.5f;

    roost__v1__check_in__init(&s->check_in);
    strcpy(s->software_version, "0.1.0");
    strcpy(s->cap_train, "train");
    strcpy(s->cap_eval, "evaluate");
    strcpy(s->cap_dp, "dp-sgd");
    strcpy(s->display_label, "pixel-7 \xc3\xa9t\xc3\xa9");
    s->caps[0] = s->cap_train;
    s->caps[1] = s->cap_eval;
    s->caps[2] = s->cap_dp;
    s->check_in.software_version = s->software_version;
    s->check_in.protocol_version = 1;
    s->check_in.n_capabilities = 3;
    s->check_in.capabilities = s->caps;
    s->check_in.model_hash.len = 32;
    s->check_in.model_hash.data = s->model_hash;
    s->check_in.epsilon_remaining = 7.25;
    s->check_in.budget_delta = 1e-5;
    s->check_in.display_label = s->display_label;

    roost__v1__model_spec__init(&s->model);
    strcpy(s->spec, "dense:200,relu,dense:10");
    s->model.spec = s->spec;
    s->model.input_channels = 1;
    s->model.input_height = 28;
    s->model.input_width = 28;
    s->model.num_classes = 10;
    s->model.num_params = 159010;
    roost__v1__training_params__init(&s->training);
    s->training.local_epochs = 2;
    s->training.batch_size = 64;
    s->training.learning_rate = 0.05;
    s->training.momentum = 0.9;
    s->training.weight_decay = 1e-4;
    s->training.prox_mu = 0.01;
    roost__v1__dp_params__init(&s->dp);
    s->dp.enabled = 1;
    s->dp.noise_multiplier = 1.1;
    s->dp.clip_norm = 1.0;
    s->dp.sampling_rate = 0.01;
    s->dp.expected_batch_size = 60;
    s->dp.delta = 1e-5;
    s->dp.poisson = 1;
    roost__v1__task__init(&s->task);
    s->task.round_id = 42;
    s->task.task_id = 4242;
    s->task.kind = ROOST__V1__TASK_KIND__TASK_KIND_TRAIN;
    s->task.model = &s->model;
    s->task.model_hash.len = 32;
    s->task.model_hash.data = s->model_hash;
    s->task.parameters_follow = 1;
    s->task.param_chunk_count = 3;
    s->task.training = &s->training;
    s->task.dp = &s->dp;
    s->task.deadline_unix_ms = UINT64_C(1795000000000);

    roost__v1__come_back_later__init(&s->come_back_later);
    strcpy(s->cbl_reason, "round full");
    s->come_back_later.retry_after_ms = 30000;
    s->come_back_later.reason = s->cbl_reason;

    roost__v1__param_chunk__init(&s->chunk);
    s->chunk.round_id = 42;
    s->chunk.task_id = 4242;
    s->chunk.index = 2;
    s->chunk.offset = 200;
    s->chunk.n_values = WIRE_SAMPLE_FLOATS;
    s->chunk.values = s->values;

    roost__v1__metrics__init(&s->metrics);
    s->metrics.loss = 0.4375;
    s->metrics.accuracy = 0.875;
    roost__v1__dp_report__init(&s->dp_report);
    s->dp_report.noise_multiplier = 1.1;
    s->dp_report.clip_norm = 1.0;
    s->dp_report.sampling_rate = 0.01;
    s->dp_report.steps = 200;
    s->dp_report.delta = 1e-5;
    s->dp_report.epsilon_spent = 0.31;
    roost__v1__update__init(&s->update);
    s->update.round_id = 42;
    s->update.task_id = 4242;
    s->update.num_examples = 600;
    s->update.num_params = 159010;
    s->update.chunk_count = 3;
    s->update.delta_sha256.len = 32;
    s->update.delta_sha256.data = s->delta_hash;
    s->update.metrics = &s->metrics;
    s->update.dp = &s->dp_report;

    roost__v1__decline__init(&s->decline);
    strcpy(s->decline_message, "epsilon 7.9 > 8");
    s->decline.round_id = 42;
    s->decline.task_id = 4242;
    s->decline.reason =
        ROOST__V1__DECLINE_REASON__DECLINE_REASON_BUDGET_EXHAUSTED;
    s->decline.message = s->decline_message;

    roost__v1__ack__init(&s->ack);
    strcpy(s->ack_reason, "update norm too large");
    s->ack.round_id = 42;
    s->ack.task_id = 4242;
    s->ack.accepted = 1;
    s->ack.error_code = 33;
    s->ack.reason = s->ack_reason;

    roost__v1__error__init(&s->error);
    strcpy(s->error_message, "unsupported protocol version");
    s->error.code = 25;
    s->error.message = s->error_message;

    roost__v1__evaluation_result__init(&s->evaluation);
    s->evaluation.round_id = 42;
    s->evaluation.task_id = 4243;
    s->evaluation.num_examples = 1000;
    s->evaluation.loss = 0.52;
    s->evaluation.accuracy = 0.81;

    for (int i = 0; i < WIRE_SAMPLE_COUNT; i++)
        roost__v1__envelope__init(&s->env[i]);
    s->env[0].body_case = ROOST__V1__ENVELOPE__BODY_CHECK_IN;
    s->env[0].check_in = &s->check_in;
    s->env[1].body_case = ROOST__V1__ENVELOPE__BODY_TASK;
    s->env[1].task = &s->task;
    s->env[2].body_case = ROOST__V1__ENVELOPE__BODY_COME_BACK_LATER;
    s->env[2].come_back_later = &s->come_back_later;
    s->env[3].body_case = ROOST__V1__ENVELOPE__BODY_PARAM_CHUNK;
    s->env[3].param_chunk = &s->chunk;
    s->env[4].body_case = ROOST__V1__ENVELOPE__BODY_UPDATE;
    s->env[4].update = &s->update;
    s->env[5].body_case = ROOST__V1__ENVELOPE__BODY_DECLINE;
    s->env[5].decline = &s->decline;
    s->env[6].body_case = ROOST__V1__ENVELOPE__BODY_ACK;
    s->env[6].ack = &s->ack;
    s->env[7].body_case = ROOST__V1__ENVELOPE__BODY_ERROR;
    s->env[7].error = &s->error;
    s->env[8].body_case = ROOST__V1__ENVELOPE__BODY_EVALUATION_RESULT;
    s->env[8].evaluation_result = &s->evaluation;
}
