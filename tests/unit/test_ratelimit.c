/*
 * test_ratelimit.c - unit tests for src/ratelimit.c: limits and windows
 * of API.md 9, Retry-After, the IP-then-account order, buckets shared by
 * connections and kept across reopening (D15), windows that end on
 * their own schedule (D16), IPv6 /64 keys and bounded storage that never
 * frees a live bucket (D18), one audit row per bucket per window (D19),
 * and account keys stored only as hashes.
 *
 * Must never: depend on the wall clock (a test clock drives the
 * limiter).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw */
#endif
#include "db.h"
#include "ratelimit.h"
#include "util.h"
#include "test_rm.h"

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 1700000000LL

/* ------------------------------------------------------------------ */
/* Helpers                                                            */
/* ------------------------------------------------------------------ */

static char tmpdir[64];
static struct vs_db db;
static long long fake_now;
static long last_retry;

static long long
fake_clock(void)
{
	return fake_now;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return vs_test_remove(path);
}

static void
open_handle(struct vs_db *h)
{
	char err[256];

	ck_assert_msg(vs_db_open(h, tmpdir, err, sizeof(err)) == VS_DB_OK,
		      "open: %s", err);
	ck_assert_msg(vs_db_migrate(h, err, sizeof(err)) == VS_DB_OK,
		      "migrate: %s", err);
}

static void
setup(void)
{
	strcpy(tmpdir, "/tmp/vs_test_rl_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	open_handle(&db);
	fake_now = T0;
	vs_rate_limit_set_clock(fake_clock);
	vs_rate_limit_set_max_buckets(0);
}

static void
teardown(void)
{
	vs_db_close(&db);
	vs_rate_limit_set_clock(NULL);
	if (tmpdir[0] != '\0')
		(void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

static enum vs_rl
rl_on(struct vs_db *h, const struct vs_rl_action *a, const char *ip,
      const char *account)
{
	return vs_rate_limit(h, a, ip, account, &last_retry);
}

static enum vs_rl
rl(const struct vs_rl_action *a, const char *ip, const char *account)
{
	return rl_on(&db, a, ip, account);
}

/* One integer from a query with an optional text parameter; -1 when no
 * row. */
static long long
query_int(const char *sql, const char *p1)
{
	sqlite3_stmt *st = NULL;
	long long v = -1;
	int rc;

	ck_assert_int_eq(sqlite3_prepare_v2(db.h, sql, -1, &st, NULL),
			 SQLITE_OK);
	if (p1 != NULL)
		ck_assert_int_eq(sqlite3_bind_text(st, 1, p1, -1,
						   SQLITE_STATIC), SQLITE_OK);
	rc = sqlite3_step(st);
	ck_assert(rc == SQLITE_ROW || rc == SQLITE_DONE);
	if (rc == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	ck_assert_int_eq(sqlite3_finalize(st), SQLITE_OK);
	return v;
}

static long long
bucket_count(const char *key)
{
	return query_int("SELECT count FROM vs_rate_buckets WHERE bucket = ?1",
			 key);
}

static long long
bucket_end(const char *key)
{
	return query_int("SELECT window_end FROM vs_rate_buckets"
			 " WHERE bucket = ?1", key);
}

static long long
audit_rows(void)
{
	return query_int("SELECT COUNT(*) FROM server_audit_log WHERE"
			 " event_type = 'rate_limit_exceeded'", NULL);
}

/* The account key as API.md 9 defines it, computed independently. */
static const char *
acct_key(const char *action, const char *lowered)
{
	static char key[128];
	char hex[65];

	vs_sha256_hex(lowered, strlen(lowered), hex);
	snprintf(key, sizeof(key), "%s:account:%s", action, hex);
	return key;
}

static void
fast_sync(struct vs_db *h)
{
	/* Tests only: thousands of commits without an fsync each. */
	ck_assert_int_eq(vs_db_exec(h, "PRAGMA synchronous=OFF"), VS_DB_OK);
}

/* ------------------------------------------------------------------ */
/* Limits and windows                                                 */
/* ------------------------------------------------------------------ */

START_TEST(test_actions_table)
{
	ck_assert_str_eq(VS_RL_PAIR.name, "pair");
	ck_assert_int_eq(VS_RL_PAIR.limit, 5);
	ck_assert_int_eq(VS_RL_PAIR.window_seconds, 900);
	ck_assert_str_eq(VS_RL_DEVICE_REGISTER.name, "device-register");
	ck_assert_int_eq(VS_RL_DEVICE_REGISTER.limit, 5);
	ck_assert_int_eq(VS_RL_DEVICE_REGISTER.window_seconds, 900);
	ck_assert_str_eq(VS_RL_AUTH_TEST.name, "auth-test");
	ck_assert_int_eq(VS_RL_AUTH_TEST.limit, 10);
	ck_assert_int_eq(VS_RL_AUTH_TEST.window_seconds, 600);
	ck_assert_str_eq(VS_RL_LOGIN.name, "login");
	ck_assert_int_eq(VS_RL_LOGIN.limit, 10);
	ck_assert_int_eq(VS_RL_LOGIN.window_seconds, 600);
	ck_assert_str_eq(VS_RL_REGISTER.name, "register");
	ck_assert_int_eq(VS_RL_REGISTER.limit, 5);
	ck_assert_int_eq(VS_RL_REGISTER.window_seconds, 3600);
	ck_assert_str_eq(VS_RL_FORGOT.name, "forgot");
	ck_assert_int_eq(VS_RL_FORGOT.limit, 5);
	ck_assert_int_eq(VS_RL_FORGOT.window_seconds, 3600);
	ck_assert_str_eq(VS_RL_RESET.name, "reset");
	ck_assert_int_eq(VS_RL_RESET.limit, 8);
	ck_assert_int_eq(VS_RL_RESET.window_seconds, 3600);
	ck_assert_str_eq(VS_RL_ADMIN_RESET.name, "admin-reset");
	ck_assert_int_eq(VS_RL_ADMIN_RESET.limit, 8);
	ck_assert_int_eq(VS_RL_ADMIN_RESET.window_seconds, 3600);
}
END_TEST

START_TEST(test_pair_limit)
{
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", "alice"),
				 VS_RL_OK);
		ck_assert_int_eq(last_retry, 0);
		fake_now += 10;
	}
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", "alice"), VS_RL_LIMITED);
	ck_assert_int_gt(last_retry, 0);
	ck_assert_int_le(last_retry, 900);
	ck_assert_int_eq(last_retry, 900 - 50);
	/* The window began at the first hit and ends 900 s later. */
	fake_now = T0 + 899;
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", "alice"), VS_RL_LIMITED);
	ck_assert_int_eq(last_retry, 1);
	fake_now = T0 + 900;
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", "alice"), VS_RL_OK);
	/* A new window starts at this hit. */
	ck_assert_int_eq(bucket_end("pair:ip:192.0.2.1"), T0 + 1800);
	ck_assert_int_eq(bucket_count("pair:ip:192.0.2.1"), 1);
}
END_TEST

START_TEST(test_refusal_does_not_extend)
{
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", NULL), VS_RL_OK);
	for (int i = 0; i < 20; i++) {
		fake_now += 40;
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", NULL),
				 VS_RL_LIMITED);
	}
	ck_assert_int_eq(bucket_end("pair:ip:192.0.2.1"), T0 + 900);
	ck_assert_int_eq(bucket_count("pair:ip:192.0.2.1"), 5);
	fake_now = T0 + 900;
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", NULL), VS_RL_OK);
}
END_TEST

START_TEST(test_ip_refusal_leaves_account)
{
	const char *victim = acct_key("pair", "victim");

	/* The victim's account bucket has 2 hits from elsewhere. */
	ck_assert_int_eq(rl(&VS_RL_PAIR, "198.51.100.7", "victim"), VS_RL_OK);
	ck_assert_int_eq(rl(&VS_RL_PAIR, "198.51.100.7", "victim"), VS_RL_OK);
	ck_assert_int_eq(bucket_count(victim), 2);
	/* An address that used up its own bucket on other accounts... */
	for (int i = 0; i < 5; i++) {
		char acct[16];

		snprintf(acct, sizeof(acct), "user%d", i);
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.9", acct), VS_RL_OK);
	}
	/* ...is refused at its IP bucket without touching the victim's. */
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.9", "victim"),
				 VS_RL_LIMITED);
	ck_assert_int_eq(bucket_count(victim), 2);
}
END_TEST

START_TEST(test_account_limit)
{
	char ip[32];

	for (int i = 0; i < 5; i++) {
		snprintf(ip, sizeof(ip), "203.0.113.%d", i + 1);
		ck_assert_int_eq(rl(&VS_RL_PAIR, ip, "bob"), VS_RL_OK);
	}
	/* Trimmed and lowercased: the same account. */
	ck_assert_int_eq(rl(&VS_RL_PAIR, "203.0.113.99", "  BOB\t"),
			 VS_RL_LIMITED);
	ck_assert_int_eq(last_retry, 900);
	/* The IP bucket of that request was still charged. */
	ck_assert_int_eq(bucket_count("pair:ip:203.0.113.99"), 1);
	ck_assert_int_eq(rl(&VS_RL_PAIR, "203.0.113.99", "carol"), VS_RL_OK);
}
END_TEST

START_TEST(test_actions_independent)
{
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", "a"), VS_RL_OK);
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", "a"), VS_RL_LIMITED);
	ck_assert_int_eq(rl(&VS_RL_DEVICE_REGISTER, "192.0.2.1", "a"),
			 VS_RL_OK);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(rl(&VS_RL_RESET, "192.0.2.1", NULL), VS_RL_OK);
	ck_assert_int_eq(rl(&VS_RL_RESET, "192.0.2.1", NULL), VS_RL_LIMITED);
	ck_assert_int_eq(last_retry, 3600);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Shared and persistent (D15)                                        */
/* ------------------------------------------------------------------ */

START_TEST(test_two_connections)
{
	struct vs_db other;

	open_handle(&other);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(rl_on(i % 2 ? &other : &db, &VS_RL_PAIR,
				       "192.0.2.1", "alice"), VS_RL_OK);
	ck_assert_int_eq(rl_on(&other, &VS_RL_PAIR, "192.0.2.1", "alice"),
			 VS_RL_LIMITED);
	ck_assert_int_eq(rl_on(&db, &VS_RL_PAIR, "192.0.2.1", "alice"),
			 VS_RL_LIMITED);
	vs_db_close(&other);
}
END_TEST

START_TEST(test_survives_reopen)
{
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", "alice"),
				 VS_RL_OK);
	vs_db_close(&db);
	open_handle(&db);
	fake_now += 60;
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", "alice"),
				 VS_RL_OK);
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", "alice"), VS_RL_LIMITED);
	ck_assert_int_eq(last_retry, 840);
}
END_TEST

START_TEST(test_busy_inside_transaction)
{
	/* Must not be called inside a transaction: an error, not a hang. */
	ck_assert_int_eq(vs_db_begin_write(&db), VS_DB_OK);
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", NULL), VS_RL_ERROR);
	vs_db_rollback(&db);
}
END_TEST

START_TEST(test_busy)
{
	struct vs_db other;

	open_handle(&other);
	vs_db_set_busy_budget_ms(&db, 50);
	ck_assert_int_eq(vs_db_begin_write(&other), VS_DB_OK);
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", NULL), VS_RL_BUSY);
	vs_db_rollback(&other);
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", NULL), VS_RL_OK);
	vs_db_close(&other);
}
END_TEST

/* ------------------------------------------------------------------ */
/* D16: a bucket lives until its own window ends                      */
/* ------------------------------------------------------------------ */

START_TEST(test_d16_own_window)
{
	char ip[32];

	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(rl(&VS_RL_FORGOT, "192.0.2.1", "a@b.c"),
				 VS_RL_OK);
	ck_assert_int_eq(rl(&VS_RL_FORGOT, "192.0.2.1", "a@b.c"),
			 VS_RL_LIMITED);
	/* 21 minutes later, plenty of other traffic (more than one purge
	 * period, and the login windows of 10 min have long ended). */
	fake_now = T0 + 21 * 60;
	for (int i = 0; i < 200; i++) {
		snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 250, i % 250);
		ck_assert_int_ne(rl(i % 2 ? &VS_RL_LOGIN : &VS_RL_AUTH_TEST,
				    ip, "someone"), VS_RL_ERROR);
	}
	ck_assert_int_eq(rl(&VS_RL_FORGOT, "192.0.2.1", "a@b.c"),
			 VS_RL_LIMITED);
	ck_assert_int_eq(last_retry, 3600 - 21 * 60);
	/* A new address, same account: the account bucket holds too. */
	ck_assert_int_eq(rl(&VS_RL_FORGOT, "192.0.2.2", "a@b.c"),
			 VS_RL_LIMITED);
	fake_now = T0 + 3599;
	ck_assert_int_eq(rl(&VS_RL_FORGOT, "192.0.2.1", "a@b.c"),
			 VS_RL_LIMITED);
	fake_now = T0 + 3600;
	ck_assert_int_eq(rl(&VS_RL_FORGOT, "192.0.2.1", "a@b.c"), VS_RL_OK);
}
END_TEST

START_TEST(test_purge_expired_only)
{
	char ip[32];

	ck_assert_int_eq(rl(&VS_RL_LOGIN, "192.0.2.1", NULL), VS_RL_OK);
	ck_assert_int_eq(rl(&VS_RL_FORGOT, "192.0.2.1", NULL), VS_RL_OK);
	fake_now = T0 + 700;	/* login window over, forgot still open */
	for (int i = 0; i < 130; i++) {
		snprintf(ip, sizeof(ip), "10.1.0.%d", i);
		ck_assert_int_eq(rl(&VS_RL_PAIR, ip, NULL), VS_RL_OK);
	}
	ck_assert_int_eq(bucket_count("login:ip:192.0.2.1"), -1);
	ck_assert_int_eq(bucket_count("forgot:ip:192.0.2.1"), 1);
}
END_TEST

/* ------------------------------------------------------------------ */
/* D18: IPv6 /64 keys, bounded storage without eviction               */
/* ------------------------------------------------------------------ */

START_TEST(test_d18_ipv6_prefix)
{
	char ip[64];

	for (int i = 1; i <= 5; i++) {
		snprintf(ip, sizeof(ip), "2001:db8:1:2::%x", i);
		ck_assert_int_eq(rl(&VS_RL_PAIR, ip, NULL), VS_RL_OK);
	}
	ck_assert_int_eq(rl(&VS_RL_PAIR, "2001:db8:1:2:ffff:1:2:3", NULL),
			 VS_RL_LIMITED);
	ck_assert_int_eq(bucket_count("pair:ip:2001:db8:1:2::/64"), 5);
	/* Another /64 is another bucket; so is IPv4. */
	ck_assert_int_eq(rl(&VS_RL_PAIR, "2001:db8:1:3::1", NULL), VS_RL_OK);
	/* Bracketed, zone ids and upper case normalise to the same key. */
	ck_assert_int_eq(rl(&VS_RL_PAIR, "[2001:DB8:1:3::9]", NULL), VS_RL_OK);
	ck_assert_int_eq(bucket_count("pair:ip:2001:db8:1:3::/64"), 2);
	/* IPv4-mapped IPv6 is the IPv4 address. */
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.44", NULL), VS_RL_OK);
	ck_assert_int_eq(rl(&VS_RL_PAIR, "::ffff:192.0.2.44", NULL), VS_RL_OK);
	ck_assert_int_eq(bucket_count("pair:ip:192.0.2.44"), 2);
}
END_TEST

START_TEST(test_d18_flood_keeps_blocked)
{
	char ip[64];

	fast_sync(&db);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(rl(&VS_RL_LOGIN, "192.0.2.66", "target"),
				 VS_RL_OK);
	for (int i = 5; i < 10; i++)
		ck_assert_int_eq(rl(&VS_RL_LOGIN, "192.0.2.66", NULL),
				 VS_RL_OK);
	ck_assert_int_eq(rl(&VS_RL_LOGIN, "192.0.2.66", NULL), VS_RL_LIMITED);
	/* 20 000 fresh buckets (distinct /64s), as an attacker would. */
	for (int i = 0; i < 20000; i++) {
		snprintf(ip, sizeof(ip), "2001:db8:%x:%x::1", i / 65536,
			 i % 65536);
		ck_assert_int_eq(rl(&VS_RL_LOGIN, ip, NULL), VS_RL_OK);
		if (i % 1000 == 0)
			fake_now++;
	}
	ck_assert_int_ge(query_int("SELECT COUNT(*) FROM vs_rate_buckets",
				   NULL), 20001);
	ck_assert_int_eq(rl(&VS_RL_LOGIN, "192.0.2.66", NULL), VS_RL_LIMITED);
	ck_assert_int_eq(bucket_count("login:ip:192.0.2.66"), 10);
}
END_TEST

START_TEST(test_d18_cap_overflow)
{
	char ip[64];
	long long rows;
	int refused = 0;

	fast_sync(&db);
	vs_rate_limit_set_max_buckets(100);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.66", NULL), VS_RL_OK);
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.66", NULL), VS_RL_LIMITED);
	for (int i = 0; i < 1000; i++) {
		snprintf(ip, sizeof(ip), "10.2.%d.%d", i / 250, i % 250);
		if (rl(&VS_RL_PAIR, ip, NULL) == VS_RL_LIMITED)
			refused++;
	}
	/* Storage stays near the cap; new keys beyond it share the
	 * overflow bucket, which is limited like any other. */
	rows = query_int("SELECT COUNT(*) FROM vs_rate_buckets", NULL);
	ck_assert_int_le(rows, 100 + 1);
	ck_assert_int_eq(bucket_count("pair:overflow:ip"), 5);
	ck_assert_int_ge(refused, 1000 - 100 - 5);
	/* The blocked bucket was not evicted. */
	ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.66", NULL), VS_RL_LIMITED);
	/* Existing live buckets keep working normally. */
	ck_assert_int_eq(bucket_count("pair:ip:10.2.0.0"), 1);
	ck_assert_int_eq(rl(&VS_RL_PAIR, "10.2.0.0", NULL), VS_RL_OK);
	ck_assert_int_eq(bucket_count("pair:ip:10.2.0.0"), 2);
	/* Once windows end, expired rows are purged and keys get their
	 * own buckets again. */
	fake_now += 900;
	for (int i = 0; i < 70; i++) {
		snprintf(ip, sizeof(ip), "10.3.0.%d", i);
		ck_assert_int_eq(rl(&VS_RL_PAIR, ip, NULL), VS_RL_OK);
	}
	ck_assert_int_eq(bucket_count("pair:ip:10.3.0.69"), 1);
}
END_TEST

/* ------------------------------------------------------------------ */
/* D19: one audit row per bucket per window                           */
/* ------------------------------------------------------------------ */

START_TEST(test_d19_one_audit_row)
{
	sqlite3_stmt *st = NULL;

	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", NULL), VS_RL_OK);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", NULL),
				 VS_RL_LIMITED);
	ck_assert_int_eq(audit_rows(), 1);
	ck_assert_int_eq(sqlite3_prepare_v2(db.h,
		"SELECT user_id, device_id, ip, message FROM server_audit_log",
		-1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "");
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 1), "");
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 2),
			 "192.0.2.1");
	ck_assert_str_eq((const char *)sqlite3_column_text(st, 3),
			 "rate limit: pair");
	ck_assert_int_eq(sqlite3_finalize(st), SQLITE_OK);
	/* The next window may write one more. */
	fake_now += 900;
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", NULL), VS_RL_OK);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(rl(&VS_RL_PAIR, "192.0.2.1", NULL),
				 VS_RL_LIMITED);
	ck_assert_int_eq(audit_rows(), 2);
}
END_TEST

START_TEST(test_d19_account_bucket_audited_once)
{
	char ip[32];

	for (int i = 0; i < 5; i++) {
		snprintf(ip, sizeof(ip), "203.0.113.%d", i);
		ck_assert_int_eq(rl(&VS_RL_REGISTER, ip, "x@y.z"), VS_RL_OK);
	}
	for (int i = 0; i < 50; i++) {
		snprintf(ip, sizeof(ip), "198.51.100.%d", i);
		ck_assert_int_eq(rl(&VS_RL_REGISTER, ip, "x@y.z"),
				 VS_RL_LIMITED);
	}
	ck_assert_int_eq(audit_rows(), 1);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Account keys are hashes                                            */
/* ------------------------------------------------------------------ */

START_TEST(test_account_hashed)
{
	ck_assert_int_eq(rl(&VS_RL_LOGIN, "192.0.2.1", " Alice@Example.COM "),
			 VS_RL_OK);
	ck_assert_int_eq(bucket_count(acct_key("login", "alice@example.com")),
			 1);
	ck_assert_int_eq(query_int("SELECT COUNT(*) FROM vs_rate_buckets WHERE"
				   " bucket LIKE '%alice%' OR bucket LIKE"
				   " '%example%'", NULL), 0);
	ck_assert_int_eq(query_int("SELECT COUNT(*) FROM vs_rate_buckets",
				   NULL), 2);
}
END_TEST

/* ------------------------------------------------------------------ */

static Suite *
rl_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *tc = tcase_create("limits");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_actions_table);
	tcase_add_test(tc, test_pair_limit);
	tcase_add_test(tc, test_refusal_does_not_extend);
	tcase_add_test(tc, test_ip_refusal_leaves_account);
	tcase_add_test(tc, test_account_limit);
	tcase_add_test(tc, test_actions_independent);
	tcase_add_test(tc, test_two_connections);
	tcase_add_test(tc, test_survives_reopen);
	tcase_add_test(tc, test_busy_inside_transaction);
	tcase_add_test(tc, test_busy);
	tcase_add_test(tc, test_d16_own_window);
	tcase_add_test(tc, test_purge_expired_only);
	tcase_add_test(tc, test_d18_ipv6_prefix);
	tcase_add_test(tc, test_d18_flood_keeps_blocked);
	tcase_add_test(tc, test_d18_cap_overflow);
	tcase_add_test(tc, test_d19_one_audit_row);
	tcase_add_test(tc, test_d19_account_bucket_audited_once);
	tcase_add_test(tc, test_account_hashed);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(rl_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
