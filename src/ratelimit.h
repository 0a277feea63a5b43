/*
 * ratelimit.h - fixed-window rate limits shared by every worker (API.md
 * 9; DEFECTS D15, D16, D18, D19), kept in the vs_rate_buckets table so
 * they hold across processes and restarts.
 *
 * Owns: bucket keys (<action>:ip:<ip or IPv6 /64> and
 * <action>:account:<sha256 of trimmed lowercased account>), windows that
 * start at a bucket's first hit and end on their own schedule, the
 * Retry-After value, one rate_limit_exceeded audit row per bucket per
 * window, and bounded storage that never drops a live bucket.
 * Must never: store an account value in clear, or let one action's
 * traffic expire another action's buckets.
 */
#ifndef VS_RATELIMIT_H
#define VS_RATELIMIT_H

#include <stdbool.h>
#include "db.h"

enum vs_rl {
	VS_RL_OK = 0,
	VS_RL_LIMITED,  /* 429; *retry_after set (seconds, >= 1) */
	VS_RL_ERROR,    /* 500 */
	VS_RL_BUSY,     /* 503 */
};

struct vs_rl_action {
	const char *name;      /* "pair", "login", ... */
	int limit;             /* requests per window */
	int window_seconds;
};

extern const struct vs_rl_action VS_RL_PAIR, VS_RL_DEVICE_REGISTER,
	VS_RL_AUTH_TEST, VS_RL_LOGIN, VS_RL_REGISTER, VS_RL_FORGOT,
	VS_RL_RESET, VS_RL_ADMIN_RESET;

/* Consumes one unit from the IP bucket and, when account is non-NULL,
 * from the account bucket (not touched if the IP bucket refuses). Runs
 * its own write transaction (must not be called inside one). */
enum vs_rl vs_rate_limit(struct vs_db *db, const struct vs_rl_action *a,
			 const char *client_ip, const char *account,
			 long *retry_after);

/* Test hook: the clock the limiter uses (NULL = time()). */
void vs_rate_limit_set_clock(long long (*now)(void));

/* Test hook: the table-size cap above which new keys are charged to the
 * per-action overflow buckets (<= 0 = the default, 100000). Also makes
 * the next call purge and re-count the table. */
void vs_rate_limit_set_max_buckets(long long n);

#endif
