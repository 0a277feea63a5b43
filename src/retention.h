/*
 * retention.h - retention cleanup (DATA.md 8, DEFECTS D14).
 *
 * What expires by itself is deleted: sessions and e-mail tokens past
 * expires_at, idempotency records older than retention.idempotency_hours,
 * audit rows older than retention.audit_days, temp uploads older than
 * retention.temp_upload_hours. Once at start-up (the launcher, and
 * `migrate` before a system deployment's workers), then hourly: after an
 * answer, a worker checks at most once a minute whether the run is due,
 * and the one that claims the lease in vs_leases runs it, with blob
 * garbage collection (D13), and records a retention_cleanup audit row.
 * Expired rate-limit buckets are dropped by ratelimit.c as it goes.
 *
 * Owns: the cleanup statements, the "retention" lease, the schedule.
 * Must never: delete server_ops, server_revisions, server_tombstones,
 * server_blob_refs, users or devices; hold the write lock for more than
 * one batch of deletions at a time; run in two processes at once on the
 * schedule.
 */
#ifndef VS_RETENTION_H
#define VS_RETENTION_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "db.h"
#include "gc.h"

/* How often the scheduled run happens, and how often a worker asks. */
#define VS_RETENTION_INTERVAL_S 3600
#define VS_RETENTION_CHECK_S 60

struct vs_retention_report {
	int64_t sessions;       /* expired sessions deleted */
	int64_t email_tokens;   /* expired e-mail tokens deleted */
	int64_t idempotency;    /* old idempotency records deleted */
	int64_t audit;          /* old audit rows deleted */
	struct vs_gc_report gc; /* temp uploads; blobs too when with_gc */
};

/* One cleanup at time now. with_gc adds the blob collector (whose grace
 * period is retention.temp_upload_hours); without it only temp uploads
 * are removed from blobs/. VS_DB_OK unless the database failed (what
 * was deleted until then stays deleted and is reported). */
enum vs_db_status vs_retention_run(struct vs_db *db, const char *blobs_dir,
				   const struct vs_retention *cfg, time_t now,
				   bool with_gc,
				   struct vs_retention_report *r);

/* Claims the scheduled run: true when no process ran it within interval
 * seconds before now (the lease then says "next run at now + interval",
 * for everyone). *due is false when another process has it. */
enum vs_db_status vs_retention_claim(struct vs_db *db, time_t now,
				     int64_t interval, bool *due);

/* Start-up: claims the lease (so the first scheduled run is an interval
 * away) and cleans up, without the blob collector. Failures are logged;
 * the start goes on. */
void vs_retention_startup(struct vs_db *db, const char *blobs_dir,
			  const struct vs_retention *cfg);

/* The worker's hook after each answer: cheap unless a check is due
 * (every VS_RETENTION_CHECK_S), and then runs the scheduled cleanup if
 * this process claims it. */
void vs_retention_tick(struct vs_db *db, const char *blobs_dir,
		       const struct vs_retention *cfg);

#endif
