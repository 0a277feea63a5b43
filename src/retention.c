/*
 * retention.c - see retention.h.
 *
 * Deletions run in batches of BATCH rows, each its own write
 * transaction: a first run on a server that never cleaned up (months of
 * audit rows) must not hold the write lock, and with it every push, for
 * seconds. Timestamps are compared as strings, as DATA.md 5 prescribes
 * for the section-5 format.
 */
#include "retention.h"
#include "audit.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 500
#define RETRY_S 60	/* a failed scheduled run is tried again after */
#define STR_(x) #x
#define STR(x) STR_(x)

/* One batch each; ?1 is the cut-off timestamp. */
static const char SQL_SESSIONS[] =
	"DELETE FROM server_sessions WHERE rowid IN (SELECT rowid FROM"
	" server_sessions WHERE expires_at <= ?1 LIMIT " STR(BATCH) ")";
static const char SQL_EMAIL_TOKENS[] =
	"DELETE FROM server_email_tokens WHERE rowid IN (SELECT rowid FROM"
	" server_email_tokens WHERE expires_at <= ?1 LIMIT " STR(BATCH) ")";
static const char SQL_IDEMPOTENCY[] =
	"DELETE FROM server_idempotency_keys WHERE rowid IN (SELECT rowid FROM"
	" server_idempotency_keys WHERE created_at < ?1 LIMIT " STR(BATCH) ")";
static const char SQL_AUDIT[] =
	"DELETE FROM server_audit_log WHERE rowid IN (SELECT rowid FROM"
	" server_audit_log WHERE created_at < ?1 LIMIT " STR(BATCH) ")";

static const char SQL_LEASE_GET[] =
	"SELECT expires_at FROM vs_leases WHERE name = 'retention'";
static const char SQL_LEASE_SET[] =
	"INSERT INTO vs_leases (name, holder, expires_at)"
	" VALUES ('retention', ?1, ?2) ON CONFLICT(name) DO UPDATE SET"
	" holder = excluded.holder, expires_at = excluded.expires_at";

/* A worker asked to stop (SIGTERM/SIGINT, blocked while it works) ends
 * the cleanup between two batches; the next run does the rest. */
static bool
stop_pending(void)
{
	sigset_t pending;

	return sigpending(&pending) == 0 &&
	       (sigismember(&pending, SIGTERM) == 1 ||
		sigismember(&pending, SIGINT) == 1);
}

/* Deletes rows matching sql at cutoff, batch after batch. */
static enum vs_db_status
delete_all(struct vs_db *db, const char *sql, const char *cutoff,
	   int64_t *count)
{
	for (;;) {
		enum vs_db_status s = vs_db_begin_write(db);
		sqlite3_stmt *st;
		int rc, n;

		if (s != VS_DB_OK)
			return s;
		st = vs_db_stmt(db, sql);
		if (st == NULL) {
			vs_db_rollback(db);
			return VS_DB_ERROR;
		}
		rc = sqlite3_bind_text(st, 1, cutoff, -1, SQLITE_STATIC);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(st);
		if (rc != SQLITE_DONE) {
			s = vs_db_status_of(db, rc, "retention");
			vs_db_rollback(db);
			return s == VS_DB_OK ? VS_DB_ERROR : s;
		}
		n = sqlite3_changes(db->h);
		if ((s = vs_db_commit(db)) != VS_DB_OK)
			return s;
		*count += n;
		if (n < BATCH || stop_pending())
			return VS_DB_OK;
	}
}

/* The timestamp `amount` units before now; false when that is before
 * the epoch (nothing can be that old) or does not fit. */
static bool
cutoff(time_t now, int64_t amount, int64_t unit, char out[VS_TS_LEN])
{
	if (amount < 0 || amount > (int64_t)now / unit)
		return false;
	vs_timestamp(now - (time_t)(amount * unit), out);
	return true;
}

enum vs_db_status
vs_retention_run(struct vs_db *db, const char *blobs_dir,
		 const struct vs_retention *cfg, time_t now, bool with_gc,
		 struct vs_retention_report *r)
{
	char now_ts[VS_TS_LEN], idem_ts[VS_TS_LEN], audit_ts[VS_TS_LEN];
	enum vs_db_status s = VS_DB_OK, s2;
	bool idem, audit;
	int64_t temp_s;

	memset(r, 0, sizeof(*r));
	vs_timestamp(now, now_ts);
	/* A retention longer than the epoch is old keeps everything: the
	 * cut-off would come out before 1970, where timestamps lose their
	 * four-digit year and no longer compare as strings. */
	idem = cutoff(now, cfg->idempotency_hours, 3600, idem_ts);
	audit = cutoff(now, cfg->audit_days, 86400, audit_ts);
	/* Each kind on its own: one that fails does not keep the others. */
	if ((s2 = delete_all(db, SQL_SESSIONS, now_ts, &r->sessions)) != VS_DB_OK)
		s = s2;
	if ((s2 = delete_all(db, SQL_EMAIL_TOKENS, now_ts,
			     &r->email_tokens)) != VS_DB_OK)
		s = s2;
	if (idem && (s2 = delete_all(db, SQL_IDEMPOTENCY, idem_ts,
				     &r->idempotency)) != VS_DB_OK)
		s = s2;
	if (audit && (s2 = delete_all(db, SQL_AUDIT, audit_ts,
				      &r->audit)) != VS_DB_OK)
		s = s2;
	temp_s = cfg->temp_upload_hours > (int64_t)now / 3600 ? (int64_t)now :
		cfg->temp_upload_hours * 3600;
	if (with_gc && !stop_pending()) {
		struct vs_gc_opts o = {
			.grace_seconds = temp_s,
			.temp_seconds = temp_s,
			.now = now,
		};
		if ((s2 = vs_gc_run(db, blobs_dir, &o, &r->gc)) != VS_DB_OK)
			s = s2;
	} else {
		vs_gc_temps(blobs_dir, now - (time_t)temp_s, &r->gc);
	}
	return s;
}

/* "pid@host": who claimed the lease, for an operator reading the table. */
static void
holder_name(char *out, size_t n)
{
	char host[64];

	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "?");
	host[sizeof(host) - 1] = '\0';
	snprintf(out, n, "%ld@%s", (long)getpid(), host);
}

/* Sets the lease's expiry, whatever it was (a failed run's retry). */
static enum vs_db_status
lease_set(struct vs_db *db, int64_t expires_at)
{
	enum vs_db_status s;
	sqlite3_stmt *st;
	char holder[96];
	int rc;

	if ((s = vs_db_begin_write(db)) != VS_DB_OK)
		return s;
	holder_name(holder, sizeof(holder));
	if ((st = vs_db_stmt(db, SQL_LEASE_SET)) == NULL) {
		vs_db_rollback(db);
		return VS_DB_ERROR;
	}
	rc = sqlite3_bind_text(st, 1, holder, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, expires_at);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE) {
		s = vs_db_status_of(db, rc, "retention lease");
		vs_db_rollback(db);
		return s == VS_DB_OK ? VS_DB_ERROR : s;
	}
	return vs_db_commit(db);
}

enum vs_db_status
vs_retention_claim(struct vs_db *db, time_t now, int64_t interval, bool *due)
{
	enum vs_db_status s;
	sqlite3_stmt *st;
	char holder[96];
	int rc;

	*due = false;
	if ((s = vs_db_begin_write(db)) != VS_DB_OK)
		return s;
	if ((st = vs_db_stmt(db, SQL_LEASE_GET)) == NULL) {
		vs_db_rollback(db);
		return VS_DB_ERROR;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && sqlite3_column_int64(st, 0) > (int64_t)now) {
		vs_db_rollback(db);	/* someone ran it recently */
		return VS_DB_OK;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		goto fail;
	holder_name(holder, sizeof(holder));
	if ((st = vs_db_stmt(db, SQL_LEASE_SET)) == NULL) {
		vs_db_rollback(db);
		return VS_DB_ERROR;
	}
	rc = sqlite3_bind_text(st, 1, holder, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, (int64_t)now + interval);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		goto fail;
	if ((s = vs_db_commit(db)) == VS_DB_OK)
		*due = true;
	return s;
fail:
	s = vs_db_status_of(db, rc, "retention lease");
	vs_db_rollback(db);
	return s == VS_DB_OK ? VS_DB_ERROR : s;
}

static void
log_report(const char *when, const struct vs_retention_report *r)
{
	vs_log_info("retention (%s): deleted %" PRId64 " expired sessions, %"
		    PRId64 " e-mail tokens, %" PRId64 " idempotency records, %"
		    PRId64 " audit rows; removed %" PRId64 " temp uploads, %"
		    PRId64 " unreferenced blobs, %" PRId64 " stray blob files",
		    when, r->sessions, r->email_tokens, r->idempotency, r->audit,
		    r->gc.temps, r->gc.blobs, r->gc.stray);
}

/* VERSTAK_RETENTION_INTERVAL_SECONDS shortens the schedule (tests; an
 * operator who wants it more often). */
static int64_t
interval_s(void)
{
	const char *e = getenv("VERSTAK_RETENTION_INTERVAL_SECONDS");
	char *end;
	long long v;

	if (e == NULL || *e == '\0')
		return VS_RETENTION_INTERVAL_S;
	v = strtoll(e, &end, 10);
	if (*end != '\0' || v < 1 || v > 7 * 86400)
		return VS_RETENTION_INTERVAL_S;
	return v;
}

void
vs_retention_startup(struct vs_db *db, const char *blobs_dir,
		     const struct vs_retention *cfg)
{
	struct vs_retention_report r;
	time_t now = time(NULL);
	bool due;

	/* Claimed or not, start-up cleans up once (DATA.md 2); the claim
	 * only moves the first scheduled run an interval away. */
	(void)vs_retention_claim(db, now, interval_s(), &due);
	if (vs_retention_run(db, blobs_dir, cfg, now, false, &r) != VS_DB_OK)
		vs_log_warn("retention at start-up did not finish (see above)");
	log_report("start-up", &r);
}

void
vs_retention_tick(struct vs_db *db, const char *blobs_dir,
		  const struct vs_retention *cfg)
{
	static time_t next_check;
	struct vs_retention_report r;
	time_t now = time(NULL);
	int64_t interval;
	bool due = false;

	if (now < next_check || db->tx_depth > 0)
		return;
	interval = interval_s();
	/* Workers started together spread their checks over the minute. */
	next_check = now + (interval < VS_RETENTION_CHECK_S ? interval :
			    VS_RETENTION_CHECK_S + getpid() % 20);
	if (vs_retention_claim(db, now, interval, &due) != VS_DB_OK || !due)
		return;
	if (vs_retention_run(db, blobs_dir, cfg, now, true, &r) != VS_DB_OK) {
		/* Busy or failing: someone tries again in a minute, not an
		 * interval from now. */
		vs_log_warn("scheduled retention did not finish (see above)");
		(void)lease_set(db, now + (interval < RETRY_S ? interval : RETRY_S));
	}
	log_report("scheduled", &r);
	if (vs_audit(db, "retention_cleanup", NULL, NULL, NULL,
		     "scheduled retention cleanup") != VS_DB_OK)
		vs_log_warn("retention: the audit row was not written");
}
