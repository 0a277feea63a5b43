/*
 * devices.h - the paired-devices store (server_devices and the
 * server_user_devices link).
 *
 * Owns: every SQL statement on server_devices and server_user_devices:
 * lookup by token hash and by legacy plaintext key, creating a device
 * with a fresh token (only its SHA-256 and display hints are stored),
 * revoking (the first revocation time is kept, D37), the throttled
 * last_seen refresh (D38), and the console's newest-devices list.
 * Must never: store or log a device token in clear.
 */
#ifndef VS_DEVICES_H
#define VS_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include "db.h"

/* Tokens: 32 random bytes as 64 hex chars. */
#define VS_TOKEN_HEX 64

struct vs_device {
	char *id;
	char *name;
	char *user_id;         /* "" when none */
	char *vault_id;        /* "" when none */
	char *client_version;  /* "" when NULL */
	char *last_seen;       /* "" when NULL */
	char *revoked_at;      /* "" when not revoked */
	char *created_at;
	char *scope_vault;     /* vault_id, or legacy:<user_id> when empty */
};

void vs_device_free(struct vs_device *d);

/* Finds the device a credential authenticates (token hash first, then a
 * legacy key with legacy_api_key = 1). *found false when none. */
enum vs_db_status vs_device_find_credential(struct vs_db *db,
					    const char *credential,
					    struct vs_device *d, bool *found);
enum vs_db_status vs_device_find_id(struct vs_db *db, const char *id,
				    struct vs_device *d, bool *found);

struct vs_new_device {
	const char *user_id;
	const char *vault_id;
	const char *name;
	const char *client_version; /* "" when unknown */
	const char *last_ip;        /* NULL: not recorded */
	bool set_last_seen;         /* pairing sets last_seen = created_at */
};

/* Inserts the device and its user link inside the caller's write
 * transaction. Fills id (dev_ + 24 hex) and token (64 hex). */
enum vs_db_status vs_device_create(struct vs_db *db,
				   const struct vs_new_device *nd,
				   char id[29], char token[VS_TOKEN_HEX + 1]);

/* Sets revoked_at = now unless already set (D37) and ends the device's
 * "device" sessions; inside the caller's write transaction. */
enum vs_db_status vs_device_revoke(struct vs_db *db, const char *id);

/* Refreshes last_seen when the stored value is older than a minute
 * (D38); updates d->last_seen. Failure to write is logged, not fatal. */
void vs_device_touch(struct vs_db *db, struct vs_device *d);

/* Is the user blocked? *found false when the user row is missing. */
enum vs_db_status vs_device_owner_blocked(struct vs_db *db, const char *user_id,
					  bool *blocked, bool *found);

/* One row of the admin console's device lists: strings, "" for NULL;
 * user is the owner's user name ("" when the owner row is missing). */
struct vs_device_summary {
	char *id, *name, *user, *vault_id, *client_version, *last_seen,
	     *revoked_at, *created_at;
};
/* The newest limit devices (created_at, then id, descending), with
 * their owner's user name. *out is NULL when there are none. */
enum vs_db_status vs_device_recent(struct vs_db *db, int limit,
				   struct vs_device_summary **out, size_t *n);
void vs_device_summaries_free(struct vs_device_summary *d, size_t n);

#endif
