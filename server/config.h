/*
 * config.h - the coordinator's configuration: an INI file (libinih), then
 * command-line overrides, then cross-field checks.
 *
 * One table in config.c lists every key: section, name, type, default,
 * limits and help text, and where the value lives in roost_serve_config.
 * That table alone drives parsing, validation, the defaults, the effective
 * configuration `roost serve --check-config` prints and the commented
 * sample `roost serve --print-default-config` writes (deploy/roost.conf is
 * that output; a test keeps them equal). This is Redis's config table.
 *
 * Values:
 *   bool       true|false|yes|no|on|off|1|0
 *   integer    decimal, within the key's range
 *   number     a finite decimal number within the key's range
 *   duration   an integer with a unit: ms, s, min, h or d ("90s", "10min");
 *              a bare 0 is allowed. A bare non-zero number is refused, so
 *              a seconds/milliseconds mix-up cannot pass silently.
 *   size       bytes, optionally with KiB, MiB or GiB ("16MiB")
 *   string     the rest of the line (inline comments start with " ;")
 *   choice     one of the names listed in the key's help
 *   shape      CxHxW, e.g. 1x28x28
 *
 * Every rejection -- an unknown section or key, a key given twice, a value
 * that does not parse or is out of range, a line inih cannot parse, a line
 * too long -- is ROOST_ECONFIG with a message "FILE:LINE: reason".
 *
 * Usage:
 *     roost_serve_config cfg;
 *     roost_config_init(&cfg);                      table defaults
 *     roost_config_load_file(&cfg, path, &em);      the file
 *     roost_config_set(&cfg, "round.timeout", "5min", "--set", &em);
 *     roost_config_finish(&cfg, &em);               derived values, checks
 *     ... cfg.coord is ready for roost_coord_create (add store, log) ...
 *     roost_config_free(&cfg);
 *
 * Threading: a roost_serve_config is used by one thread; the key table is
 * read-only.
 */
#ifndef ROOST_SERVER_CONFIG_H
#define ROOST_SERVER_CONFIG_H

#include "common/error.h"
#include "server/coord.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Upper bound on the number of keys in the table (a static assertion in
 * config.c keeps the table within it). */
#define ROOST_CONFIG_MAX_KEYS 96

/* Where a key's value came from (roost_serve_config.origin). */
#define ROOST_CONFIG_FROM_DEFAULT 0
#define ROOST_CONFIG_FROM_FLAG (-1)
/* A positive origin is the line of the file that set it. */

/*
 * Everything `roost serve` needs. Strings are owned by the struct (heap
 * copies, freed by roost_config_free). coord is what roost_coord_create
 * takes: its model_spec and run_name point into this struct's strings, so
 * the struct must outlive the coordinator; store, log, eval_set and the
 * round callback are the caller's to fill.
 */
typedef struct roost_serve_config {
    /* [server] transport, files, limits, logging */
    char *listen;    /* ZeroMQ endpoint, "tcp://HOST:PORT" */
    char *ca_file;   /* deployment CA certificate (PEM) */
    char *cert_file; /* the coordinator's certificate */
    char *key_file;  /* its private key */
    char *crl_file;  /* the CA's CRL */
    uint32_t max_sessions;
    uint64_t max_frame;            /* bytes */
    uint64_t handshake_timeout_ms; /* >= 100 */
    uint64_t idle_timeout_ms;      /* 0: never */
    char *state_dir;               /* relative paths below resolve here */
    char *database;                /* the SQLite file */
    char *log_file;                /* "" : stderr */
    int log_level;                 /* ROOST_LOG_ERROR .. ROOST_LOG_DEBUG */
    char *run_name;                /* "" : none */
    uint32_t keep_last;            /* checkpoint retention */
    uint32_t keep_every;

    /* [model] */
    char *model_spec;

    /* [evaluation] */
    bool eval_enabled;
    char *eval_dir; /* Fashion-MNIST style IDX files (test split) */

    /* [round] [training] [dp] [aggregation] and the model shape/seed */
    roost_coord_config coord;

    /* Where each key got its value: ROOST_CONFIG_FROM_DEFAULT, _FROM_FLAG,
     * or the file line; indexed like the key table. */
    int origin[ROOST_CONFIG_MAX_KEYS];
    /* The file loaded (for messages and --check-config), or NULL. */
    char *source;
} roost_serve_config;

/* Value types of the table. */
typedef enum roost_config_type {
    ROOST_CONFIG_BOOL,
    ROOST_CONFIG_U32,
    ROOST_CONFIG_U64,
    ROOST_CONFIG_SIZE_T, /* a count held in a size_t */
    ROOST_CONFIG_DOUBLE,
    ROOST_CONFIG_DURATION, /* uint64_t milliseconds */
    ROOST_CONFIG_BYTES,    /* uint64_t or size_t bytes (see is_size_t) */
    ROOST_CONFIG_STRING,   /* char * owned by the config */
    ROOST_CONFIG_CHOICE,   /* int index into choices */
    ROOST_CONFIG_STRATEGY, /* roost_strategy_kind */
    ROOST_CONFIG_SHAPE,    /* three consecutive uint32_t: C, H, W */
} roost_config_type;

/* Flags of a key. */
enum {
    ROOST_CONFIG_MIN_OPEN = 1 << 0,     /* value must be > min, not >= */
    ROOST_CONFIG_MAX_OPEN = 1 << 1,     /* value must be < max */
    ROOST_CONFIG_ZERO_OK = 1 << 2,      /* 0 is allowed below min (means off) */
    ROOST_CONFIG_SIZE_T_FIELD = 1 << 3, /* BYTES stored in a size_t */
};

/* One row of the table. */
typedef struct roost_config_key {
    const char *section;
    const char *name;
    roost_config_type type;
    size_t offset;   /* into roost_serve_config */
    const char *def; /* default, as text in the file's syntax */
    double min, max; /* numeric types, in the stored unit (ms, bytes) */
    unsigned flags;
    const char *const *choices; /* CHOICE: NULL-terminated names */
    const char *help;           /* one or more sentences */
} roost_config_key;

/* The table: roost_config_key_count() rows, in file order. */
size_t roost_config_key_count(void);
const roost_config_key *roost_config_key_at(size_t i);
/* The row for "section.name", or NULL. */
const roost_config_key *roost_config_key_find(const char *section,
                                              const char *name);

/* roost_config_init - every key at its default. Aborts only if the table's
 * own defaults do not parse (a programming error caught by the tests);
 * returns ROOST_ENOMEM if a string default cannot be copied. */
int roost_config_init(roost_serve_config *cfg);

/* roost_config_free - free the strings; cfg may be NULL. */
void roost_config_free(roost_serve_config *cfg);

/*
 * roost_config_load_file - apply an INI file. Returns ROOST_OK;
 * ROOST_ENOENT / ROOST_EIO (cannot open or read: em names the file);
 * ROOST_ECONFIG ("path:line: reason"); ROOST_ENOMEM. On failure cfg keeps
 * whatever the earlier lines set: throw it away.
 */
int roost_config_load_file(roost_serve_config *cfg, const char *path,
                           roost_errmsg *em);

/* roost_config_load_string - the same for text in memory; name is used
 * in messages in place of the path. */
int roost_config_load_string(roost_serve_config *cfg, const char *text,
                             const char *name, roost_errmsg *em);

/*
 * roost_config_set - override one key from the command line: key is
 * "section.name". origin names the flag in messages ("--set"). Returns
 * ROOST_OK or ROOST_ECONFIG ("ORIGIN section.name: reason").
 */
int roost_config_set(roost_serve_config *cfg, const char *key,
                     const char *value, const char *origin, roost_errmsg *em);

/*
 * roost_config_finish - resolve the derived values (min_clients and
 * min_available 0 mean clients_per_round; strategy hyper-parameters not
 * set take the chosen strategy's defaults; relative database path under
 * state_dir) and check what involves several keys, naming the file line of
 * the key at fault. ROOST_OK, ROOST_ECONFIG or ROOST_ENOMEM. Call once.
 */
int roost_config_finish(roost_serve_config *cfg, roost_errmsg *em);

/*
 * roost_config_write - print cfg as an INI file. With sample true: every
 * key with its help as comments and its default value (the format of
 * deploy/roost.conf; cfg is ignored and may be NULL). Otherwise: the
 * effective value of every key, each annotated with where it came from.
 */
void roost_config_write(const roost_serve_config *cfg, FILE *out, bool sample);

/* roost_config_format_value - the value of key in cfg as the file syntax
 * writes it, into buf. */
void roost_config_format_value(const roost_serve_config *cfg,
                               const roost_config_key *key, char *buf,
                               size_t cap);

#endif
