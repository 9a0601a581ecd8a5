/*
 * ledger.h - the device's privacy budget ledger: a small SQLite file that
 * holds every privacy event the device has spent and its budget, and
 * enforces the budget before anything derived from private data leaves.
 *
 * Epsilon is never stored: every check recomputes it from all the events
 * with the accountant (dp/accountant.h), at the budget's delta, charged
 * for the discrete noise sampler's distance from the ideal Gaussian from
 * each event's draws, mu and beta (roost_dp_epsilon_sampled).
 *
 * The contract, in the order a client uses it for one round:
 *
 *   1. plan    roost_ledger_plan(l, &event, &eps_after): would this event
 *              keep the device within budget? ROOST_EBUDGET if not (the
 *              client must then decline the task without training).
 *   2. train   locally, with the event's (q, sigma, steps).
 *   3. charge  roost_ledger_charge(l, &event, &receipt, &eps_after): checks
 *              the budget again inside a write transaction and appends the
 *              event; returns only after the transaction is committed with
 *              synchronous=EXTRA in rollback-journal mode, i.e. fsync'd to
 *              stable storage (journal, database and directory).
 *   4. release roost_ledger_release(l, &receipt): confirms the receipt's
 *              event is in the committed ledger. Nothing derived from the
 *              round's private data (the update, its metrics) may leave the
 *              device unless release returned ROOST_OK for the receipt of
 *              the charge that covers it. A process killed anywhere in this
 *              sequence has either no event and sent nothing, or a durable
 *              event (possibly for an update it never sent: the ledger
 *              over-counts, never under-counts).
 *
 * Integrity: open refuses (ROOST_ELEDGER) a missing ledger unless
 * ROOST_LEDGER_CREATE is given, a file that is not a ledger (wrong
 * application_id or schema version), a file SQLite finds corrupt
 * (integrity_check), and any break of the hash chain: each event row
 * stores SHA-256(prev_hash, its fields) and the head row stores the count
 * and last hash, the first prev_hash binding the budget and a random
 * ledger id. Every plan and charge re-verifies the whole chain. The client
 * must refuse to train on any error from this module; it never assumes
 * that nothing was spent. See docs/privacy.md ("Ledger") for what a local
 * file can and cannot prove against someone who controls the device.
 *
 * Threading: a roost_ledger is used by one thread at a time. Several
 * handles (or processes) may share one file: charge serialises them with
 * SQLite's write lock and re-reads the events inside its transaction.
 */
#ifndef ROOST_DP_LEDGER_H
#define ROOST_DP_LEDGER_H

#include <roost/roost.h>

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct roost_ledger roost_ledger;

/* The budget: epsilon may not exceed epsilon_max at this delta. */
typedef struct roost_ledger_budget {
    double epsilon_max; /* > 0, finite */
    double delta;       /* 0 < delta < 1 */
} roost_ledger_budget;

/* Most events a ledger holds (bounds the memory and time of verifying an
 * untrusted file: every check reads them all). A device charging one event
 * per round never gets near it; a full ledger refuses further charges
 * with ROOST_ETOOBIG. */
#define ROOST_LEDGER_MAX_EVENTS (1 << 20)

/* Longest task id stored with an event, in bytes. */
#define ROOST_LEDGER_TASK_ID_MAX 255

/* Most noise draws one event may record (fits SQLite's signed 64-bit
 * integers with room to spare). */
#define ROOST_LEDGER_MAX_DRAWS ((uint64_t)1 << 62)

/* One privacy event: steps noisy steps at Poisson rate q with noise
 * multiplier sigma, for a round and task of the coordinator, whose noise
 * came from a sampler at per-draw distance (mu, beta) from the ideal
 * Gaussian (roost_noise_closeness) that drew `draws` values in all
 * (coordinates x steps). An event with q > 0 and steps > 0 must record
 * draws >= steps; it is refused otherwise. */
typedef struct roost_ledger_event {
    double q;            /* 0 <= q <= 1 */
    double sigma;        /* > 0 */
    uint64_t steps;      /* <= INT64_MAX */
    double delta;        /* the task's delta, 0 < delta < 1; recorded only:
                            epsilon is always computed at the budget's */
    int64_t round_id;    /* coordinator's round */
    const char *task_id; /* NUL-terminated, <= ROOST_LEDGER_TASK_ID_MAX
                            bytes; NULL means "" */
    int64_t time_unix;   /* seconds since the epoch; 0 means now */
    uint64_t draws;      /* noise values drawn, <= ROOST_LEDGER_MAX_DRAWS */
    double mu, beta;     /* the sampler's per-draw terms, >= 0, finite */
} roost_ledger_event;

/* Proof of a durable charge, for release. Plain data the caller keeps. */
typedef struct roost_ledger_receipt {
    uint64_t seq;           /* the event's position, from 1 */
    unsigned char hash[32]; /* the event's chain hash */
} roost_ledger_receipt;

/* Open flags. */
enum {
    /* Create the ledger with the given budget if the file does not exist
     * (atomically: built under a temporary name, then linked into place).
     * Use it only when the application knows no ledger existed before
     * (first run); otherwise a deleted ledger would silently become a fresh
     * budget. Without it, a missing file is ROOST_ELEDGER. */
    ROOST_LEDGER_CREATE = 1u << 0
};

/*
 * roost_ledger_open - open (or, with ROOST_LEDGER_CREATE, create) the
 * ledger at path and verify it completely. budget: required with
 * ROOST_LEDGER_CREATE (an existing ledger's budget must then equal it,
 * else ROOST_ECONFIG), ignored (may be NULL) otherwise. alloc may be NULL.
 * em may be NULL and receives the reason on failure. Returns ROOST_OK,
 * ROOST_EINVAL, ROOST_ENOMEM, ROOST_ELEDGER (missing, not a ledger,
 * corrupt, tampered), ROOST_ECONFIG, ROOST_ESTORE (SQLite or file system
 * failure); *out is NULL on failure.
 */
int roost_ledger_open(roost_ledger **out, const roost_allocator *alloc,
                      const char *path, unsigned flags,
                      const roost_ledger_budget *budget, roost_errmsg *em);

/* roost_ledger_close - close the file and free; NULL does nothing. */
void roost_ledger_close(roost_ledger *l);

/* roost_ledger_errmsg - detail of the handle's last failure ("" if none);
 * valid until the next call on l. */
const char *roost_ledger_errmsg(const roost_ledger *l);

/* roost_ledger_get_budget - the stored budget. */
void roost_ledger_get_budget(const roost_ledger *l, roost_ledger_budget *out);

/*
 * roost_ledger_spent - re-verify the ledger and compute the epsilon spent
 * so far (0 with no events), with the best RDP order (may be NULL) and the
 * number of events (may be NULL).
 */
int roost_ledger_spent(roost_ledger *l, double *eps, double *best_order,
                       uint64_t *n_events);

/* The noise sampler's figures over the events the last successful open,
 * spent, plan or charge verified (a charge's own event included). */
typedef struct roost_ledger_sampler_info {
    double draws;               /* noise values recorded, summed */
    double n_mu, n_beta;        /* sums of draws * mu and draws * beta */
    uint64_t unrecorded_events; /* events written by schema version 1, which
                                   recorded no draws and are charged as the
                                   ideal Gaussian */
} roost_ledger_sampler_info;

void roost_ledger_sampler(const roost_ledger *l,
                          roost_ledger_sampler_info *out);

/*
 * roost_ledger_plan - re-verify the ledger and compute the epsilon after
 * adding ev (*eps_after, may be NULL; set also when the budget is
 * exceeded). ROOST_EBUDGET, with a message giving the spent, the would-be
 * and the maximum epsilon, when it would exceed epsilon_max. ROOST_EINVAL
 * for an invalid event; ROOST_ELEDGER if the file no longer verifies.
 */
int roost_ledger_plan(roost_ledger *l, const roost_ledger_event *ev,
                      double *eps_after);

/*
 * roost_ledger_charge - in one write transaction: re-verify, check the
 * budget (ROOST_EBUDGET as plan), append ev to the chain, commit durably.
 * On ROOST_OK the event is on stable storage and *receipt identifies it;
 * *eps_after (may be NULL) is the epsilon including it. On any error
 * nothing was appended; ROOST_ETOOBIG when the ledger already holds
 * ROOST_LEDGER_MAX_EVENTS events.
 */
int roost_ledger_charge(roost_ledger *l, const roost_ledger_event *ev,
                        roost_ledger_receipt *receipt, double *eps_after);

/*
 * roost_ledger_release - ROOST_OK when the receipt's event is present,
 * committed and unchanged in the ledger file: only then may the update it
 * covers leave the device. ROOST_ELEDGER otherwise (unknown or altered
 * receipt, or a transaction still open).
 */
int roost_ledger_release(roost_ledger *l, const roost_ledger_receipt *receipt);

/* Points of a charge at which the test hook runs (for crash tests). */
enum roost_ledger_point {
    ROOST_LEDGER_POINT_BEGUN = 1,     /* write transaction open */
    ROOST_LEDGER_POINT_INSERTED = 2,  /* event row written, head not yet */
    ROOST_LEDGER_POINT_PRECOMMIT = 3, /* head updated, COMMIT not yet */
    ROOST_LEDGER_POINT_COMMITTED = 4  /* committed; charge not yet returned */
};

/* roost_ledger_set_hook - TEST ONLY: fn(arg, point) runs at each point of
 * every later charge, on the charging thread (a crash test raises SIGKILL
 * there). fn NULL removes it. */
typedef void (*roost_ledger_hook_fn)(void *arg, int point);
void roost_ledger_set_hook(roost_ledger *l, roost_ledger_hook_fn fn, void *arg);

#endif
