/*
 * config.h - the data directory's config.yml (DATA.md section 3).
 *
 * Owns: reading config.yml with libyaml, applying defaults ("value <= 0
 * means default"), applying the transient command-line and environment
 * overrides, and saving the file atomically (temp file in the data
 * directory, mode 0640, fsync, rename, directory fsync).
 *
 * Must never: write an override into the file (D26), drop
 * allow_registration when false (D4), or write anything at startup when
 * nothing changed.
 */
#ifndef VS_CONFIG_H
#define VS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#define VS_DEFAULT_PORT 47732

struct vs_admin {
	char *username;
	char *password_hash;
};

struct vs_limits {
	int64_t max_json_body;        /* 2 MiB */
	int64_t max_push_operations;  /* 100 */
	int64_t max_payload_json;     /* 256 KiB */
	int64_t max_pull_page;        /* 100 */
	int64_t max_blob_bytes;       /* 256 MiB */
	int64_t max_vault_blob_bytes; /* 4 GiB */
	int64_t max_user_blob_bytes;  /* 8 GiB */
};

struct vs_retention {
	int64_t idempotency_hours; /* 24 */
	int64_t audit_days;        /* 90 */
	int64_t temp_upload_hours; /* 24 */
};

/* One set of settings. The loader keeps two: what the file says (saved
 * back as is, plus the one change being made) and the effective one
 * (file + defaults + overrides) that the server runs with. */
struct vs_settings {
	int64_t port;                 /* 0 = absent */
	char *listen;                 /* NULL = absent */
	char **trusted_proxies;       /* NULL-terminated; NULL = none */
	char *public_url;
	bool development_token_logging;
	char *default_locale;         /* web.default_locale */
	bool allow_registration;      /* web.allow_registration, absent = true */
	char *server_name;            /* web.server_name */
	struct vs_limits limits;      /* 0 = absent in the file copy */
	struct vs_retention retention;
	struct vs_admin *admins;
	size_t n_admins;
};

/* Which config.yml a load read (vs_config_refresh_admins compares). */
struct vs_config_stamp {
	bool present;                 /* the file existed */
	uint64_t dev, ino, size;
	int64_t mtime_ns, ctime_ns;
};

struct vs_config {
	char *data_dir;
	char *path;                   /* <data>/config.yml */
	bool file_exists;
	struct vs_settings file;      /* as read (for saving) */
	struct vs_settings eff;       /* defaults + file + overrides; every
				       * string and trusted_proxies non-NULL */
	bool public_url_overridden;   /* VERSTAK_PUBLIC_URL applied to eff */
	struct vs_config_stamp stamp; /* the file the admin lists come from */
};

/* Transient overrides from argv/env; NULL/0 = not given. */
struct vs_overrides {
	const char *listen;           /* --listen */
	int port;                     /* --port */
	const char *env_listen;       /* VERSTAK_LISTEN */
	const char *env_public_url;   /* VERSTAK_PUBLIC_URL */
	const char *env_trusted_proxies; /* VERSTAK_TRUSTED_PROXIES, comma-separated */
};

/* Loads <data_dir>/config.yml (absent = all defaults). On failure returns
 * false and writes a human-readable reason into err (errlen bytes). */
bool vs_config_load(struct vs_config *cfg, const char *data_dir,
		    char *err, size_t errlen);
/* Applies overrides to cfg->eff only; validates trusted_proxies.
 * Returns false with a reason on an invalid value. */
bool vs_config_apply_overrides(struct vs_config *cfg,
			       const struct vs_overrides *ov,
			       char *err, size_t errlen);
void vs_config_free(struct vs_config *cfg);

/* Re-reads the admin list (only that) when config.yml is not the file
 * last read: another process (the CLI's --admin-user, a hand edit, the
 * reference server) may add, remove or re-password an admin while
 * workers run, and an admin's identity must follow the file (D31).
 * Replaces the admins of cfg->file and cfg->eff; everything else keeps
 * its start-up value (limits and the rest need a restart). False with a
 * reason when the file cannot be read or parsed; the lists are then
 * left as they were and the caller must not trust them. */
bool vs_config_refresh_admins(struct vs_config *cfg, char *err, size_t errlen);

/* Creates or replaces the admin (bcrypt hash given) in both copies and
 * saves the file atomically. */
bool vs_config_set_admin(struct vs_config *cfg, const char *username,
			 const char *password_hash, char *err, size_t errlen);
/* Console "web settings" (DATA.md 3): sets web.default_locale,
 * web.allow_registration, web.server_name and public_url (NULL or "" =
 * remove) in both copies (eff keeps a VERSTAK_PUBLIC_URL override and
 * applies the locale/server_name defaults) and saves atomically. On
 * failure nothing in memory changes. */
bool vs_config_set_web(struct vs_config *cfg, const char *default_locale,
		       bool allow_registration, const char *server_name,
		       const char *public_url, char *err, size_t errlen);
/* Saves cfg->file atomically (mode 0640). */
bool vs_config_save(const struct vs_config *cfg, char *err, size_t errlen);

/* Effective listen address "host:port" (precedence per DATA.md 2). */
const char *vs_config_listen(const struct vs_config *cfg);

/* Validates one trusted_proxies entry (address or CIDR). */
bool vs_config_valid_proxy(const char *entry);

#endif
