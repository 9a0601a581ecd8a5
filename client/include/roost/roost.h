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
 * Static string, never NULL ("ROOST_UNKNOWN" for unknown codes).
 */
const char *roost_errname(int code);

/* roost_version_string - the library's version, e.g. "0.1.0" (static). */
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

/* roost_log_level_name - "error", "warn", "info", "debug" (static). */
const char *roost_log_level_name(int level);

#ifdef __cplusplus
}
#endif

#endif /* ROOST_ROOST_H */
