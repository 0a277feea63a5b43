/*
 * ratelimit.c - fixed-window rate limits shared by every worker through
 * the vs_rate_buckets table (see ratelimit.h; API.md 9; D15, D16, D18,
 * D19).
 *
 * Owns: the action table, bucket keys, the one write transaction per
 * check, windows that start at a bucket's first hit and end on their own
 * schedule, Retry-After, one rate_limit_exceeded audit row per bucket
 * per window (the `audited` column), and bounded storage.
 *
 * Must never: store an account value in clear (only its SHA-256), extend
 * a window on a refused request, delete a bucket whose own window is
 * still open (no purge by another action's window, no eviction when
 * full), or be called inside another transaction.
 *
 * Storage bound (D18): expired buckets (window_end <= now) are deleted
 * on every 64th call of a process, at most PURGE_BATCH rows at a time
 * (found through the window_end index), and the same step re-counts the
 * table. While the count is at or above the cap (100 000 rows), a key
 * without a row first triggers a purge batch, and if the table is still
 * full it does not get a row: it is charged to a shared overflow bucket
 * of its action and kind (`<action>:overflow:ip`,
 * `<action>:overflow:account`), limited like any bucket. So flooding
 * fresh keys fills the overflow bucket and gets refused; it never frees
 * a live bucket (the price: while full, genuinely new clients of that
 * action share one bucket). The count is a per-process estimate (exact
 * after each re-count, then adjusted by this process's inserts and
 * purges), so the table can exceed the cap by at most the rows other
 * workers add between two re-counts (2 per call).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* inet_pton/inet_ntop, IN6_IS_ADDR_V4MAPPED */
#endif
#include "ratelimit.h"
#include "audit.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* API.md 9. */
const struct vs_rl_action VS_RL_PAIR = { "pair", 5, 15 * 60 };
const struct vs_rl_action VS_RL_DEVICE_REGISTER = { "device-register", 5, 15 * 60 };
const struct vs_rl_action VS_RL_AUTH_TEST = { "auth-test", 10, 10 * 60 };
const struct vs_rl_action VS_RL_LOGIN = { "login", 10, 10 * 60 };
const struct vs_rl_action VS_RL_REGISTER = { "register", 5, 60 * 60 };
const struct vs_rl_action VS_RL_FORGOT = { "forgot", 5, 60 * 60 };
const struct vs_rl_action VS_RL_RESET = { "reset", 8, 60 * 60 };
const struct vs_rl_action VS_RL_ADMIN_RESET = { "admin-reset", 8, 60 * 60 };

#define PURGE_EVERY 64
#define PURGE_BATCH 1000
#define MAX_BUCKETS_DEFAULT 100000
#define KEY_MAX 256
#define IP_VERBATIM_MAX 64
#define STR_(x) #x
#define STR(x) STR_(x)

/* ------------------------------------------------------------------ */
/* Process-local state                                                */
/* ------------------------------------------------------------------ */

static long long (*rl_clock)(void);
static unsigned long rl_calls;		/* checks made by this process */
static long long rl_rows = -1;		/* table size estimate; -1 unknown */
static long long rl_max_buckets = MAX_BUCKETS_DEFAULT;

void
vs_rate_limit_set_clock(long long (*now)(void))
{
	rl_clock = now;
}

void
vs_rate_limit_set_max_buckets(long long n)
{
	rl_max_buckets = n > 0 ? n : MAX_BUCKETS_DEFAULT;
	rl_calls = 0;	/* the next call purges and re-counts */
	rl_rows = -1;
}

static long long
now_s(void)
{
	return rl_clock != NULL ? rl_clock() : (long long)time(NULL);
}

/* ------------------------------------------------------------------ */
/* Keys                                                               */
/* ------------------------------------------------------------------ */

/* The IP part of a key: canonical IPv4 (also for IPv4-mapped IPv6),
 * the /64 of an IPv6 address (D18: one customer network, one bucket),
 * or, for something unparseable, its first IP_VERBATIM_MAX bytes. */
static void
ip_part(const char *ip, char *out, size_t outlen)
{
	char buf[INET6_ADDRSTRLEN + 16];
	struct in6_addr a6;
	struct in_addr a4;
	size_t n;
	char *pct;

	if (ip == NULL)
		ip = "";
	n = strlen(ip);
	if (n >= 2 && ip[0] == '[' && ip[n - 1] == ']') {
		ip++;
		n -= 2;
	}
	if (n < sizeof(buf)) {
		memcpy(buf, ip, n);
		buf[n] = '\0';
		pct = strchr(buf, '%');	/* zone id: fe80::1%eth0 */
		if (pct != NULL)
			*pct = '\0';
		if (inet_pton(AF_INET, buf, &a4) == 1 &&
		    inet_ntop(AF_INET, &a4, out, (socklen_t)outlen) != NULL)
			return;
		if (inet_pton(AF_INET6, buf, &a6) == 1) {
			if (IN6_IS_ADDR_V4MAPPED(&a6)) {
				memcpy(&a4, &a6.s6_addr[12], 4);
				if (inet_ntop(AF_INET, &a4, out,
					      (socklen_t)outlen) != NULL)
					return;
			} else {
				memset(&a6.s6_addr[8], 0, 8);
				if (inet_ntop(AF_INET6, &a6, out,
					      (socklen_t)outlen) != NULL &&
				    strlen(out) + 4 < outlen) {
					strcat(out, "/64");
					return;
				}
			}
		}
	}
	snprintf(out, outlen, "%.*s", IP_VERBATIM_MAX, ip);
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
	       c == '\v' || c == '\f';
}

/* SHA-256 hex of the trimmed, ASCII-lowercased account: the table never
 * holds a login or an e-mail address in clear. */
static bool
account_hash(const char *account, char hex[65])
{
	const char *s = account, *e;
	char *copy;
	size_t n;

	while (is_space(*s))
		s++;
	for (e = s + strlen(s); e > s && is_space(e[-1]); e--)
		;
	n = (size_t)(e - s);
	copy = malloc(n + 1);
	if (copy == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		copy[i] = (s[i] >= 'A' && s[i] <= 'Z') ?
			(char)(s[i] - 'A' + 'a') : s[i];
	copy[n] = '\0';
	vs_sha256_hex(copy, n, hex);
	/* The account may be an e-mail address: do not leave it behind. */
	memset(copy, 0, n);
	free(copy);
	return true;
}

/* ------------------------------------------------------------------ */
/* One check                                                          */
/* ------------------------------------------------------------------ */

struct rl_ctx {
	struct vs_db *db;
	const struct vs_rl_action *a;
	long long now;
	long retry;	/* set when a bucket refuses */
	const char *client_ip;	/* recorded in the audit row (D17) */
};

struct bucket {
	bool exists;
	long long window_end;
	long long count;
	bool audited;
};

static enum vs_rl
rl_of(enum vs_db_status s)
{
	return s == VS_DB_OK ? VS_RL_OK :
	       s == VS_DB_BUSY ? VS_RL_BUSY : VS_RL_ERROR;
}

static const char sql_get[] =
	"SELECT window_end, count, audited FROM vs_rate_buckets"
	" WHERE bucket = ?1";
static const char sql_hit[] =
	"UPDATE vs_rate_buckets SET count = count + 1 WHERE bucket = ?1";
/* A new window starts at this hit: insert, or restart an old row. */
static const char sql_start[] =
	"INSERT INTO vs_rate_buckets"
	" (bucket, window_start, window_end, count, audited)"
	" VALUES (?1, ?2, ?3, 1, 0)"
	" ON CONFLICT(bucket) DO UPDATE SET"
	" window_start = excluded.window_start,"
	" window_end = excluded.window_end, count = 1, audited = 0";
static const char sql_audited[] =
	"UPDATE vs_rate_buckets SET audited = 1 WHERE bucket = ?1";
static const char sql_purge[] =
	"DELETE FROM vs_rate_buckets WHERE rowid IN"
	" (SELECT rowid FROM vs_rate_buckets WHERE window_end <= ?1"
	" LIMIT " STR(PURGE_BATCH) ")";
static const char sql_count[] = "SELECT COUNT(*) FROM vs_rate_buckets";

/* Runs a statement without rows: ?1 = key, optional ?2/?3 integers. */
static enum vs_rl
exec_key(struct rl_ctx *c, const char *sql, const char *key, int nints,
	 long long i2, long long i3, const char *ctx)
{
	sqlite3_stmt *st = vs_db_stmt(c->db, sql);
	int rc;

	if (st == NULL)
		return VS_RL_ERROR;
	rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && nints >= 1)
		rc = sqlite3_bind_int64(st, 2, i2);
	if (rc == SQLITE_OK && nints >= 2)
		rc = sqlite3_bind_int64(st, 3, i3);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	(void)sqlite3_reset(st);	/* repeats rc */
	if (rc == SQLITE_DONE)
		return VS_RL_OK;
	if (rc == SQLITE_ROW)
		return VS_RL_ERROR;
	return rl_of(vs_db_status_of(c->db, rc, ctx));
}

static enum vs_rl
read_bucket(struct rl_ctx *c, const char *key, struct bucket *b)
{
	sqlite3_stmt *st = vs_db_stmt(c->db, sql_get);
	enum vs_rl r = VS_RL_OK;
	int rc;

	memset(b, 0, sizeof(*b));
	if (st == NULL)
		return VS_RL_ERROR;
	rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		b->exists = true;
		b->window_end = sqlite3_column_int64(st, 0);
		b->count = sqlite3_column_int64(st, 1);
		b->audited = sqlite3_column_int(st, 2) != 0;
	} else if (rc != SQLITE_DONE) {
		r = rl_of(vs_db_status_of(c->db, rc, "rate bucket"));
	}
	(void)sqlite3_reset(st);
	return r;
}

/* Deletes a batch of buckets whose own window has ended (D16: never one
 * that is still open, whatever action is being checked), found through
 * the window_end index, and takes them off the estimate. */
static enum vs_rl
purge(struct rl_ctx *c)
{
	sqlite3_stmt *st = vs_db_stmt(c->db, sql_purge);
	int rc;

	if (st == NULL)
		return VS_RL_ERROR;
	rc = sqlite3_bind_int64(st, 1, c->now);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	(void)sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return rl_of(vs_db_status_of(c->db, rc, "rate purge"));
	if (rl_rows >= 0) {
		rl_rows -= sqlite3_changes(c->db->h);
		if (rl_rows < 0)
			rl_rows = 0;
	}
	return VS_RL_OK;
}

/* Every PURGE_EVERY calls (and on a process's first call): purge, then
 * re-count the table, which also picks up other workers' rows. */
static enum vs_rl
maintain(struct rl_ctx *c)
{
	sqlite3_stmt *st;
	enum vs_rl r;
	int rc;

	if (rl_calls++ % PURGE_EVERY != 0 && rl_rows >= 0)
		return VS_RL_OK;
	r = purge(c);
	if (r != VS_RL_OK)
		return r;
	st = vs_db_stmt(c->db, sql_count);
	if (st == NULL)
		return VS_RL_ERROR;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		rl_rows = sqlite3_column_int64(st, 0);
	(void)sqlite3_reset(st);
	if (rc != SQLITE_ROW)
		return rl_of(vs_db_status_of(c->db, rc, "rate count"));
	return VS_RL_OK;
}

/* Whether a new key must go to the overflow bucket. At the cap, expired
 * rows are purged first: when nothing has expired that costs one index
 * seek, so a flood of new keys stays cheap. */
static enum vs_rl
table_full(struct rl_ctx *c, bool *full)
{
	enum vs_rl r;

	*full = rl_rows >= rl_max_buckets;
	if (!*full)
		return VS_RL_OK;
	r = purge(c);
	*full = rl_rows >= rl_max_buckets;
	return r;
}

/* A refusal: Retry-After, and the audit row once per bucket per window
 * (D19). The window itself is left alone. */
static enum vs_rl
refuse(struct rl_ctx *c, const char *key, const struct bucket *b)
{
	char msg[64];
	enum vs_rl r;

	c->retry = b->window_end - c->now > 0 ?
		(long)(b->window_end - c->now) : 1;
	if (b->audited)
		return VS_RL_LIMITED;
	r = exec_key(c, sql_audited, key, 0, 0, 0, "rate audited");
	if (r != VS_RL_OK)
		return r;
	snprintf(msg, sizeof(msg), "rate limit: %s", c->a->name);
	/* DATA.md 7: user and device are '' for this event; the client
	 * address is recorded, as resolved behind trusted proxies (D17). */
	r = rl_of(vs_audit(c->db, "rate_limit_exceeded", "", "",
			   c->client_ip != NULL ? c->client_ip : "", msg));
	return r == VS_RL_OK ? VS_RL_LIMITED : r;
}

/* Consumes one unit from key (or, for a new key while the table is
 * full, from overflow_key). */
static enum vs_rl
consume(struct rl_ctx *c, const char *key, const char *overflow_key)
{
	long long w = c->a->window_seconds;
	struct bucket b;
	enum vs_rl r = read_bucket(c, key, &b);

	if (r != VS_RL_OK)
		return r;
	/* A window ending after now + w cannot come from this clock (it
	 * went backwards, or the row is stale soft state): restart it
	 * rather than block for longer than one window. */
	if (b.exists && b.window_end > c->now && b.window_end <= c->now + w) {
		if (b.count >= c->a->limit)
			return refuse(c, key, &b);
		return exec_key(c, sql_hit, key, 0, 0, 0, "rate hit");
	}
	if (!b.exists && overflow_key != NULL) {
		bool full;

		r = table_full(c, &full);
		if (r != VS_RL_OK)
			return r;
		if (full)
			return consume(c, overflow_key, NULL);
	}
	r = exec_key(c, sql_start, key, 2, c->now, c->now + w, "rate start");
	if (r == VS_RL_OK && !b.exists && rl_rows >= 0)
		rl_rows++;
	return r;
}

/* The checks of one request; runs inside the write transaction. */
static enum vs_rl
check(struct rl_ctx *c, const char *client_ip, const char *account)
{
	char key[KEY_MAX], ovf[KEY_MAX], ip[KEY_MAX / 2], hex[65];
	enum vs_rl r = maintain(c);

	if (r != VS_RL_OK)
		return r;
	ip_part(client_ip, ip, sizeof(ip));
	snprintf(key, sizeof(key), "%s:ip:%s", c->a->name, ip);
	snprintf(ovf, sizeof(ovf), "%s:overflow:ip", c->a->name);
	r = consume(c, key, ovf);
	/* The IP bucket first: when it refuses, the account bucket is
	 * not touched (API.md 9). */
	if (r != VS_RL_OK || account == NULL)
		return r;
	if (!account_hash(account, hex)) {
		vs_log_error("ratelimit: out of memory");
		return VS_RL_ERROR;
	}
	snprintf(key, sizeof(key), "%s:account:%s", c->a->name, hex);
	snprintf(ovf, sizeof(ovf), "%s:overflow:account", c->a->name);
	return consume(c, key, ovf);
}

enum vs_rl
vs_rate_limit(struct vs_db *db, const struct vs_rl_action *a,
	      const char *client_ip, const char *account, long *retry_after)
{
	struct rl_ctx c = { .db = db, .a = a, .retry = 0, .client_ip = client_ip };
	enum vs_db_status s;
	enum vs_rl r;

	if (retry_after != NULL)
		*retry_after = 0;
	if (db == NULL || a == NULL || a->limit < 1 || a->window_seconds < 1)
		return VS_RL_ERROR;
	s = vs_db_begin_write(db);
	if (s != VS_DB_OK)
		return rl_of(s);
	/* The clock is read with the lock held, so the time spent waiting
	 * for it does not shorten anyone's window. */
	c.now = now_s();
	r = check(&c, client_ip, account);
	if (r != VS_RL_OK && r != VS_RL_LIMITED) {
		vs_db_rollback(db);
		rl_rows = -1;	/* our count may include rolled-back rows */
		return r;
	}
	s = vs_db_commit(db);
	if (s != VS_DB_OK) {
		rl_rows = -1;
		return rl_of(s);
	}
	if (r == VS_RL_LIMITED && retry_after != NULL)
		*retry_after = c.retry;
	return r;
}
