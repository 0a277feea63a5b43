/*
 * app.h - what one worker process holds for its whole life: the effective
 * configuration, its database connection, the data and blob paths, the
 * trusted-proxy list, its start time and small caches (blob probe).
 *
 * Owns: opening all of that in the right order (DATA.md 2: config, then
 * overrides, then database, then blobs/) and closing it.
 * Must never: hold per-request state, or cache authentication state
 * (DATA.md 1: external tools may change the database at any time).
 */
#ifndef VS_APP_H
#define VS_APP_H

#include <stdbool.h>
#include <time.h>

#include "config.h"
#include "db.h"
#include "request.h"

struct vs_app {
	struct vs_config cfg;
	struct vs_db db;
	char *data_dir;
	char *blobs_dir;
	time_t started_at;
	struct vs_cidr *trusted;
	size_t ntrusted;
	/* Cached result of the blobs/ write probe (D38). */
	time_t probe_at;
	bool probe_ok;
};

/* Loads config (+ overrides from the environment), opens the database,
 * migrates it when migrate is true, ensures blobs/. */
bool vs_app_open(struct vs_app *app, const char *data_dir, bool migrate,
		 char *err, size_t errlen);
void vs_app_close(struct vs_app *app);

/* Reads VERSTAK_LISTEN, VERSTAK_PUBLIC_URL, VERSTAK_TRUSTED_PROXIES. */
void vs_app_env_overrides(struct vs_overrides *ov);

#endif
