/*
 * roost.h - the public interface of libroost, Roost's client library.
 *
 * This is the one header an application includes. It declares error codes,
 * allocator and logging hooks, and (as the library grows) the opaque
 * handles of the client API. Every external symbol starts with roost_ and
 * every macro or enum constant with ROOST_, so a static libroost linked into
 * an application cannot collide with the application's own names.
 *
 * Threading: unless a function says otherwise, a handle may be used by one
 * thread at a time; distinct handles are independent. The library keeps no
 * mutable global state.
 */
#ifndef ROOST_ROOST_H
#define ROOST_ROOST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ROOST_VERSION_MAJOR 0
#define ROOST_VERSION_MINOR 1
#define ROOST_VERSION_PATCH 0
#define ROOST_VERSION_STRING "0.1.0"

/*
 * Error codes. This list is the only place codes are defined: it generates
 * the enum, roost_strerror() and roost_errname(). A code's number is part of
 * the ABI and the wire protocol; codes are appended, never renumbered or
 * removed.
 *
 * X(NAME, number, "message")
 */
#define ROOST_ERRORS(X)                                                        \
    X(OK, 0, "success")                                                        \
    X(ENOMEM, 1, "out of memory")                                              \
    X(EINVAL, 2, "invalid argument")                                           \
    X(ETOOSMALL, 3, "output buffer too small")                                 \
    X(ETRUNCATED, 4, "input truncated")                                        \
    X(ETOOBIG, 5, "size exceeds limit")                                        \
    X(EWIRETYPE, 6, "wrong wire type for field")                               \
    X(EUNKNOWNFIELD, 7, "unknown field")                                       \
    X(EDEPTH, 8, "message nesting too deep")                                   \
    X(EDECODE, 9, "malformed message")                                         \
    X(EMISSING, 10, "required field missing")                                  \
    X(EIO, 11, "input/output error")                                           \
    X(ECRYPTO, 12, "cryptographic library failure")                            \
    X(ETLS, 13, "TLS protocol error")                                          \
    X(EAUTH, 14, "peer authentication failed")                                 \
    X(ETIMEDOUT, 15, "operation timed out")                                    \
    X(ECLOSED, 16, "connection closed")                                        \
    X(EAGAIN, 17, "operation would block")                                     \
    X(ECANCELED, 18, "operation canceled")                                     \
    X(EBUDGET, 19, "privacy budget would be exceeded")                         \
    X(ELEDGER, 20, "privacy ledger missing, corrupt or tampered")              \
    X(EDATA, 21, "malformed dataset")                                          \
    X(ESPEC, 22, "invalid model specification")                                \
    X(ESTORE, 23, "storage error")                                             \
    X(ECONFIG, 24, "invalid configuration")                                    \
    X(EPROTO, 25, "protocol violation")                                        \
    X(EHASH, 26, "checksum mismatch")                                          \
    X(ENOTSUP, 27, "not supported")                                            \
    X(ESTATE, 28, "operation not valid in this state")                         \
    X(ENONFINITE, 29, "non-finite value")                                      \
    X(EREFUSED, 30, "refused by peer")                                         \
    X(ENOENT, 31, "not found")                                                 \
    X(ESHAPE, 32, "shape mismatch")                                            \
    X(ENORM, 33, "norm exceeds bound")                                         \
    X(ESTALE, 34, "stale or foreign round")                                    \
    X(EDUPLICATE, 35, "duplicate")                                             \
    X(EOVERFLOW, 36, "arithmetic overflow")

/* Error codes. Functions return int so that codes can be compared without
 * casts; 0 is ROOST_OK. */
enum roost_err {
#define ROOST_ERR_ENUM_(name, num, msg) ROOST_##name = num,
    ROOST_ERRORS(ROOST_ERR_ENUM_)
#undef ROOST_ERR_ENUM_
        ROOST_ERR_COUNT_ /* one past the largest code; not a code */
};

/*
 * roost_strerror - a static, human-readable description of an error code.
 * Never allocates, never returns NULL; unknown codes give "unknown error".
 * Any thread may call it.
 */
const char *roost_strerror(int code);

/*
 * roost_errname - the symbolic name of a code, e.g. "ROOST_EBUDGET".
 * Static string, never NULL ("ROOST_UNKNOWN" for unknown codes). Any
 * thread may call it.
 */
const char *roost_errname(int code);

/* roost_version_string - the library's version, e.g. "0.1.0" (static;
 * any thread). */
const char *roost_version_string(void);

/*
 * Allocator hooks. An embedder may route every heap allocation of a handle
 * through its own functions by passing a roost_allocator to that handle's
 * create function; NULL there means the C library's malloc/realloc/free.
 * The functions must behave like their C counterparts (realloc(NULL, n) ==
 * malloc(n); free(NULL) does nothing). They may be called from any thread
 * that uses the handle. arg is passed through unchanged.
 */
typedef struct roost_allocator {
    void *(*malloc_fn)(void *arg, size_t size);
    void *(*realloc_fn)(void *arg, void *ptr, size_t size);
    void (*free_fn)(void *arg, void *ptr);
    void *arg;
} roost_allocator;

/* Log levels, most severe first. */
enum roost_log_level {
    ROOST_LOG_ERROR = 0,
    ROOST_LOG_WARN = 1,
    ROOST_LOG_INFO = 2,
    ROOST_LOG_DEBUG = 3
};

/*
 * Logging callback. The library never writes to stderr by itself; it hands
 * each message (NUL-terminated, without a trailing newline, valid only
 * during the call) to this function. It runs on whichever thread produced
 * the message, so it must be thread-safe if handles are used from several
 * threads.
 */
typedef void (*roost_log_fn)(void *arg, int level, const char *message);

/* roost_log_level_name - "error", "warn", "info", "debug" (static, never
 * NULL; "?" for other values; any thread). */
const char *roost_log_level_name(int level);

/* ===================================================================
 * The client: an app's device taking part in a federation.
 *
 * Setup: fill a roost_config (typed setters; the config is copied by
 * roost_client_create and may be destroyed right after), then create a
 * roost_client. Drive it either with roost_client_run (blocks until done,
 * canceled or failed) or from the app's own event loop: wait until
 * roost_client_fd is readable or the timeout of the last
 * roost_client_step has passed, then call roost_client_step again.
 *
 * What the library does for every task: check the round's privacy cost
 * against the durable ledger and decline when the budget would be
 * exceeded; train with DP-SGD (Poisson sampling, per-example clipping,
 * Gaussian noise from a CSPRNG); record the privacy event durably; only
 * then upload the clipped, noised update over TLS 1.3 with the device's
 * certificate. The app supplies data (roost_data_provider) and may supply
 * its own model (roost_trainer).
 * =================================================================== */

typedef struct roost_config roost_config;
typedef struct roost_client roost_client;

/*
 * The app's local data. get() copies examples indices[0..n) into x (n
 * rows of channels*height*width floats) and labels (n bytes, each <
 * num_classes); it returns 0 or a ROOST_E* code. indices, x and labels
 * belong to the library and are valid only during the call. The library
 * calls it from the thread that drives the client, at the start of each
 * task, and keeps its own copy only for the duration of the task; a
 * failure declines that task (the client goes on). count is at most
 * UINT32_MAX, and a shape whose row size overflows is refused.
 */
typedef struct roost_data_provider {
    size_t count;
    uint32_t channels, height, width;
    uint32_t num_classes;
    int (*get)(void *arg, const uint32_t *indices, size_t n, float *x,
               uint8_t *labels);
    void *arg;
} roost_data_provider;

/* Storage for roost_data_provider_memory; caller-owned, must outlive the
 * client. Its fields are private to the library. */
typedef struct roost_memory_data {
    const float *x;
    const uint8_t *labels;
    size_t dim;
} roost_memory_data;

/*
 * roost_data_provider_memory - a provider over caller-owned arrays: x is
 * count rows of channels*height*width floats, labels count bytes. The
 * arrays and storage must outlive the client. Returns ROOST_OK or
 * ROOST_EINVAL (a NULL pointer, a zero count or dimension, or num_classes
 * outside 2..256, the range roost_config_set_data accepts).
 */
int roost_data_provider_memory(roost_data_provider *out,
                               roost_memory_data *storage, const float *x,
                               const uint8_t *labels, size_t count,
                               uint32_t channels, uint32_t height,
                               uint32_t width, uint32_t num_classes);

/*
 * An app's own model. The library keeps sampling, clipping, noise, the
 * ledger and transport; the trainer supplies per-example gradients in two
 * passes over a batch of at most max_batch examples:
 *   prepare        called once per task with the coordinator's model spec
 *                  and parameter count; refuse (ROOST_ENOTSUP) a model
 *                  you cannot run. May be NULL.
 *   example_norms  forward and backward over the batch: norms_sq[i] =
 *                  squared L2 norm of example i's loss gradient over ALL
 *                  parameters; *loss_sum = sum of the losses (may be NULL).
 *   weighted_grad  grad = sum_i weights[i] * g_i for the same batch
 *                  (weights: batch floats; grad: num_params floats,
 *                  overwritten).
 * Every pointer passed in belongs to the library and is valid only during
 * the call. A nonzero return declines the task (nothing is charged or
 * sent) and the client goes on.
 * PRIVACY: the guarantee holds only if the norms are the true norms and
 * the weighted sum is exact. A trainer that under-reports a norm lets an
 * example exceed the clip bound, and the reported epsilon is then wrong.
 * All three run on the thread that drives the client.
 */
typedef struct roost_trainer {
    int (*prepare)(void *arg, const char *model_spec, uint32_t channels,
                   uint32_t height, uint32_t width, size_t num_params);
    int (*example_norms)(void *arg, const float *params, const float *x,
                         const uint8_t *labels, size_t batch, double *norms_sq,
                         double *loss_sum);
    int (*weighted_grad)(void *arg, const float *weights, float *grad);
    size_t max_batch;
    void *arg;
} roost_trainer;

/* What a progress callback reports. */
enum roost_client_event {
    ROOST_EVENT_CONNECTED = 1,    /* TLS session up, checked in */
    ROOST_EVENT_TASK = 2,         /* selected for a round */
    ROOST_EVENT_UPLOADED = 3,     /* privacy event charged, update sent */
    ROOST_EVENT_ACCEPTED = 4,     /* the coordinator aggregated it */
    ROOST_EVENT_DECLINED = 5,     /* this client refused a task */
    ROOST_EVENT_DISCONNECTED = 6, /* connection lost; reconnecting */
};

typedef struct roost_client_progress {
    int event;             /* enum roost_client_event */
    int64_t round_id;      /* 0 when not about a round */
    double epsilon_spent;  /* from the ledger's accountant */
    double epsilon_budget; /* the ledger's budget */
    uint64_t rounds;       /* updates accepted so far */
} roost_client_progress;

/* Runs on the thread that drives the client, from inside
 * roost_client_step (or run); progress is valid only during the call. The
 * callback may call roost_client_cancel, roost_client_epsilon and
 * roost_client_errmsg, but must not call roost_client_step, run or
 * destroy on the same client. The same holds for the log callback. */
typedef void (*roost_progress_fn)(void *arg,
                                  const roost_client_progress *progress);

/* roost_config_create - an empty configuration. alloc (may be NULL: the C
 * library) is used by the config and by clients created from it; the
 * struct is borrowed and must outlive them. Returns ROOST_OK,
 * ROOST_EINVAL (out NULL) or ROOST_ENOMEM (*out NULL). A config is used by
 * one thread at a time. */
int roost_config_create(roost_config **out, const roost_allocator *alloc);
/* roost_config_destroy - NULL does nothing. */
void roost_config_destroy(roost_config *cfg);

/* Setters copy their strings and structs (the caller keeps its own). Each
 * returns ROOST_OK, ROOST_EINVAL (NULL or out-of-range argument) or
 * ROOST_ENOMEM; on any error the config is left as it was. */

/* The coordinator: endpoint "tcp://HOST:PORT"; server_name is the name its
 * certificate must carry (NULL: HOST, without brackets; otherwise 1..253
 * printable ASCII characters without spaces). Required. HOST is
 * a DNS name or an IPv4 address (letters, digits, '-', '.', '_'; at most
 * 253 characters) or an IPv6 address in brackets ("tcp://[::1]:7443"),
 * PORT a decimal number in 1..65535. Anything else -- a missing host or
 * port, a port that is not a number, a malformed IPv6 literal -- is
 * ROOST_EINVAL, so that a typo is reported here instead of the client
 * retrying to connect forever. */
int roost_config_set_server(roost_config *cfg, const char *endpoint,
                            const char *server_name);
/* PEM files: the deployment CA, this device's certificate and key.
 * Required. */
int roost_config_set_tls(roost_config *cfg, const char *ca_file,
                         const char *cert_file, const char *key_file);
/* The privacy ledger file and the budget (epsilon > 0, 0 < delta < 1).
 * create: 1 creates the ledger if the file is missing; 0 refuses to run
 * without it (use 0 once a ledger was created: a missing ledger then
 * means it was lost, and spent budget must not be forgotten). Required. */
int roost_config_set_ledger(roost_config *cfg, const char *path, double epsilon,
                            double delta, int create);
/* The local data. Required. The struct is copied; arg is borrowed. */
int roost_config_set_data(roost_config *cfg, const roost_data_provider *data);
/* An app's own model; without it the built-in BLAS trainer runs the
 * coordinator's model spec. */
int roost_config_set_trainer(roost_config *cfg, const roost_trainer *trainer);
/* Logging (default: silent): messages of level <= max_level (enum
 * roost_log_level) go to fn; fn NULL is silent. arg is borrowed. */
int roost_config_set_log(roost_config *cfg, roost_log_fn fn, void *arg,
                         int max_level);
/* Progress events (default: none); fn may be NULL, arg is borrowed. */
int roost_config_set_progress(roost_config *cfg, roost_progress_fn fn,
                              void *arg);
/* Stop after this many accepted updates (0: run until canceled or the
 * budget is exhausted). */
int roost_config_set_max_rounds(roost_config *cfg, uint64_t rounds);
/* Reconnect backoff bounds in ms (default 100 .. 30000), with jitter. */
int roost_config_set_reconnect(roost_config *cfg, int min_ms, int max_ms);
/* Federated evaluation (default 0: off). With allow 1 the client answers
 * the coordinator's evaluation tasks with the loss and accuracy of the
 * global model on its local data. Those figures are computed from the
 * private data and released WITHOUT differential privacy (no noise, no
 * ledger charge); leave this off when that matters. Clients with their own
 * trainer (roost_config_set_trainer) always decline evaluation tasks. */
int roost_config_set_allow_evaluation(roost_config *cfg, int allow);
/* INSECURE (default 0: off). By default the client declines every
 * training task that does not ask for DP-SGD: the device, not the
 * coordinator, decides that its data is only released clipped, noised and
 * charged to its budget. With allow 1 it also trains for tasks without
 * DP; those updates are NOT private and are NOT charged to the ledger.
 * For deployments where the data is not sensitive, and for tests. */
int roost_config_set_allow_no_dp_insecure(roost_config *cfg, int allow);
/* A display label sent at check-in (not an identity): NULL or UTF-8 text
 * of at most 128 bytes, the limit of the wire schema. Text the coordinator
 * would refuse (longer, or not well-formed UTF-8: overlong forms,
 * surrogates, code points above U+10FFFF) is ROOST_EINVAL. */
int roost_config_set_label(roost_config *cfg, const char *label);
/* INSECURE, tests only: derive all randomness (DP noise included) from
 * seed, which makes the noise predictable and voids the privacy
 * guarantee. */
int roost_config_set_insecure_seed(roost_config *cfg, uint64_t seed);

/*
 * roost_client_create - validate the configuration, open (or create) the
 * ledger -- refusing a missing, corrupt or tampered one -- load the TLS
 * files and start connecting. On failure the reason is copied into
 * errmsg (when not NULL; at most errmsg_cap bytes, NUL-terminated) and
 * *out is set to NULL (when out is not NULL). Returns:
 *   ROOST_OK
 *   ROOST_EINVAL   out or cfg is NULL
 *   ROOST_ECONFIG  a required setting is missing, or a setting is bad
 *                  (the device key does not match its certificate; the
 *                  ledger exists with a different budget)
 *   ROOST_EIO      a TLS file (CA, certificate, key) cannot be read or is
 *                  not PEM; the network socket cannot be made
 *   ROOST_ELEDGER  the ledger is missing (and create is 0), not a
 *                  ledger, corrupt or tampered
 *   ROOST_ESTORE   the ledger file cannot be opened or written
 *   ROOST_ECRYPTO  OpenSSL or the random source failed
 *   ROOST_ENOMEM
 */
int roost_client_create(roost_client **out, const roost_config *cfg,
                        char *errmsg, size_t errmsg_cap);
/* roost_client_destroy - close the connection and the ledger; NULL does
 * nothing. Not while another thread is inside run or step, nor from a
 * callback. A task in hand is abandoned (nothing charged, nothing sent,
 * unless it was already charged and sent). */
void roost_client_destroy(roost_client *c);

/*
 * roost_client_step - do one bounded piece of work (network I/O, or one
 * training step) and return. *timeout_ms receives how long the app may
 * wait (on roost_client_fd) before calling again; 0 means call again at
 * once (timeout_ms may be NULL). Returns ROOST_OK while there is more to
 * do; ROOST_ECLOSED when max_rounds were contributed (done); ROOST_EBUDGET
 * when the privacy budget is exhausted (a task would exceed it, or nothing
 * of it remains: a budget spent to exactly 0 is exhausted, also when the
 * client starts with it); ROOST_ELEDGER or ROOST_ESTORE when
 * the ledger can no longer be read or written (nothing more is sent);
 * ROOST_ENOTSUP when the coordinator refuses this client's protocol
 * version; ROOST_ECANCELED after roost_client_cancel; ROOST_EINVAL when c
 * is NULL; another code on an error (see roost_client_errmsg). EBUDGET,
 * ELEDGER, ESTORE, ENOTSUP, ECLOSED and ECANCELED are final: the client
 * takes no further part and later calls return a final code again. Network
 * loss, and sessions the client drops over a coordinator's error or a malformed
 * message, are not errors: the client reconnects with backoff. So is a
 * session whose coordinator certificate expires: the client closes it when
 * the certificate's notAfter passes (and logs why), and the handshakes of
 * its reconnections verify the certificate afresh (refused, and retried
 * with backoff, until the coordinator presents a valid one). Call from one
 * thread.
 */
int roost_client_step(roost_client *c, int *timeout_ms);
/* roost_client_run - step until done, canceled or failed; returns what the
 * last step returned (ROOST_ECLOSED when max_rounds were reached), or
 * ROOST_EINVAL when c is NULL. */
int roost_client_run(roost_client *c);
/* roost_client_fd - a descriptor that becomes readable when the client
 * has network work (level-triggered use is not guaranteed: always call
 * step after a wake-up and honour its timeout). The descriptor belongs to
 * the library: poll it, never read, write or close it; it stays the same
 * for the client's life. Returns ROOST_OK, or ROOST_EINVAL (c or fd NULL).
 */
int roost_client_fd(roost_client *c, int *fd);
/* roost_client_cancel - ask run/step to stop soon. Any thread, any time
 * (async-signal-safe: it only sets a flag). */
void roost_client_cancel(roost_client *c);
/* Detail of the last error (owned by the handle, valid until the next
 * call on it; "" for NULL). */
const char *roost_client_errmsg(const roost_client *c);
/* roost_client_epsilon - epsilon spent (recomputed by the ledger's
 * accountant from every recorded event, so it re-reads and verifies the
 * ledger file) and the budget. Returns ROOST_OK; ROOST_EINVAL (a NULL
 * argument); ROOST_ELEDGER, ROOST_ESTORE or ROOST_ENOMEM when the ledger
 * cannot be read or no longer verifies (*spent is then unspecified). Same
 * thread as step. */
int roost_client_epsilon(roost_client *c, double *spent, double *budget);

#ifdef __cplusplus
}
#endif

#endif /* ROOST_ROOST_H */
