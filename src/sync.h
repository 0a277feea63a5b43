/*
 * sync.h - push and pull of the operation log (SYNC.md 2 and 3).
 *
 * Owns: every SQL statement on server_ops, server_revisions,
 * server_tombstones and server_idempotency_keys; the push checks in the
 * contract's order; sequence allocation through server_revisions inside
 * one BEGIN IMMEDIATE transaction (S1, S2); advisory conflicts found
 * through the entity index; op_id dedup (same scope = accepted, another
 * scope = 409 op_id_conflict, D5); idempotency replay; tombstones; blob
 * reference checks of file ops against server_blob_refs; and pull in one
 * read snapshot (D41).
 *
 * Must never: take the scope from the request body, or answer before the
 * transaction committed.
 */
#ifndef VS_SYNC_H
#define VS_SYNC_H

#include <stddef.h>

#include "config.h"
#include "db.h"
#include "response.h"

struct vs_scope {
	const char *user_id;
	const char *vault_id;   /* vault_id, or legacy:<user_id> */
	const char *device_id;  /* the authenticated device */
};

/* A push whose body has been read (at most max_json_body bytes). Writes
 * the status and JSON answer into res. */
void vs_sync_push(struct vs_db *db, const struct vs_limits *lim,
		  const struct vs_scope *sc, const char *body, size_t len,
		  struct vs_response *res);

/* A pull whose body has been read. */
void vs_sync_pull(struct vs_db *db, const struct vs_limits *lim,
		  const struct vs_scope *sc, const char *body, size_t len,
		  struct vs_response *res);

/*
 * Restored backups (DEFECTS, further hardening). Restoring an older copy
 * of server.db rewinds the sequence counter, while devices keep cursors
 * from the newer log. Pull answers 409 cursor_ahead to a cursor beyond
 * the highest sequence ever issued, instead of silently showing nothing
 * below it; vs_sync_advance moves the counter past every cursor a device
 * may hold, so new ops reach all of them.
 */
#define VS_SYNC_ADVANCE_MAX ((int64_t)1 << 50)
/* The highest sequence ever issued (0 for an empty log). */
enum vs_db_status vs_sync_issued(struct vs_db *db, int64_t *issued);
/* Moves the counter to issued + by (1 <= by <= VS_SYNC_ADVANCE_MAX) in
 * one write transaction; the next op gets issued + by + 1. */
enum vs_db_status vs_sync_advance(struct vs_db *db, int64_t by,
				  int64_t *before, int64_t *after);

/* The SQL of the conflict scan and of pull, exposed so tests can check
 * their query plans (the conflict scan must use idx_server_ops_entity,
 * pull idx_server_ops_scope_sequence). */
extern const char vs_sync_sql_conflicts[];
extern const char vs_sync_sql_pull_max[];
extern const char vs_sync_sql_pull_page[];

#endif
