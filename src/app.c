/*
 * app.c - see app.h.
 */
#include "app.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void
vs_app_env_overrides(struct vs_overrides *ov)
{
	const char *v;

	if ((v = getenv("VERSTAK_LISTEN")) != NULL && *v != '\0')
		ov->env_listen = v;
	if ((v = getenv("VERSTAK_PUBLIC_URL")) != NULL && *v != '\0')
		ov->env_public_url = v;
	if ((v = getenv("VERSTAK_TRUSTED_PROXIES")) != NULL && *v != '\0')
		ov->env_trusted_proxies = v;
}

static bool
load_trusted(struct vs_app *app, char *err, size_t errlen)
{
	char **tp = app->cfg.eff.trusted_proxies;
	size_t n = 0;

	while (tp != NULL && tp[n] != NULL)
		n++;
	if (n == 0)
		return true;
	app->trusted = calloc(n, sizeof(*app->trusted));
	if (app->trusted == NULL) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (!vs_cidr_parse(tp[i], &app->trusted[i])) {
			snprintf(err, errlen, "invalid trusted_proxies entry");
			return false;
		}
	}
	app->ntrusted = n;
	return true;
}

bool
vs_app_open(struct vs_app *app, const char *data_dir, bool migrate,
	    char *err, size_t errlen)
{
	struct vs_overrides ov;
	const char *started;

	memset(app, 0, sizeof(*app));
	app->started_at = time(NULL);
	started = getenv("VERSTAK_STARTED_AT");
	if (started != NULL && *started != '\0') {
		char *end;
		long long t = strtoll(started, &end, 10);
		if (*end == '\0' && t > 0 && t <= (long long)app->started_at)
			app->started_at = (time_t)t;
	}
	app->data_dir = strdup(data_dir);
	app->blobs_dir = vs_path_join(data_dir, "blobs");
	if (app->data_dir == NULL || app->blobs_dir == NULL) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	if (!vs_mkdir_p(data_dir, 0750)) {
		snprintf(err, errlen, "cannot create data directory %s: %s",
			 data_dir, strerror(errno));
		return false;
	}
	if (!vs_config_load(&app->cfg, data_dir, err, errlen))
		return false;
	memset(&ov, 0, sizeof(ov));
	vs_app_env_overrides(&ov);
	if (!vs_config_apply_overrides(&app->cfg, &ov, err, errlen))
		return false;
	if (!load_trusted(app, err, errlen))
		return false;
	if (vs_db_open(&app->db, data_dir, err, errlen) != VS_DB_OK)
		return false;
	if (migrate && vs_db_migrate(&app->db, err, errlen) != VS_DB_OK)
		return false;
	if (!vs_mkdir_p(app->blobs_dir, 0750)) {
		snprintf(err, errlen, "cannot create %s: %s", app->blobs_dir,
			 strerror(errno));
		return false;
	}
	return true;
}

void
vs_app_close(struct vs_app *app)
{
	if (app->db.h != NULL)
		vs_db_close(&app->db);
	vs_config_free(&app->cfg);
	free(app->trusted);
	free(app->data_dir);
	free(app->blobs_dir);
	memset(app, 0, sizeof(*app));
}
