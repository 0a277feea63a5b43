/*
 * main.c - entry point: picks the mode and hands over.
 *
 * Modes: the local stack (default), a FastCGI worker (--fcgi-worker, or
 * a listening socket on standard input as spawn-fcgi passes it), the
 * admin bootstrap (--admin-user ... [--init-admin]), and subcommands
 * (migrate, user, smtp, gc, sequence). Start-up follows DATA.md 2: data directory, config,
 * overrides, admin, database (created and migrated), blobs/, listen.
 *
 * Must never: serve requests itself (worker.c does) or hold a database
 * connection while the stack runs (workers open their own).
 */
#include "admin_cli.h"
#include "app.h"
#include "config.h"
#include "db.h"
#include "gc.h"
#include "log.h"
#include "options.h"
#include "retention.h"
#include "sequence_cli.h"
#include "smtp_cli.h"
#include "stack.h"
#include "user_cli.h"
#include "util.h"
#include "version.h"
#include "worker.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef NGINX_PATH
#define NGINX_PATH "/usr/sbin/nginx"
#endif

/* spawn-fcgi and multiwatch start us with the listening socket as fd 0. */
static bool
stdin_is_listening_socket(void)
{
	int v = 0;
	socklen_t len = sizeof(v);

	return getsockopt(STDIN_FILENO, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 &&
	       v != 0;
}

/* Static assets for nginx: see vs_find_share_dir. */
static char *
find_static_dir(void)
{
#ifndef VS_STATIC_DIR
#define VS_STATIC_DIR NULL
#endif
#ifndef VS_SOURCE_STATIC_DIR
#define VS_SOURCE_STATIC_DIR NULL
#endif
	return vs_find_share_dir("VERSTAK_STATIC_DIR", "static", VS_STATIC_DIR,
				 VS_SOURCE_STATIC_DIR);
}

/* Two workers per core: a worker spends much of a write waiting for its
 * fsync (db.c), and a second one per core keeps the core busy meanwhile
 * (the README's benchmark: pull +30 %, single-op push +22 % on 2 cores
 * against one per core). Each worker is ~9 MiB. */
static int
default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 2 : n > 32 ? 64 : (int)(2 * n);
}

/* Four upload workers per core: an upload spends most of its time in
 * the disk (three fsyncs and the commit's) or waiting for a client's
 * bytes, and a slow client holds its worker for the whole transfer
 * (nginx streams the body, nginxconf.c). bench/blobs.py: 4 -> 8 upload
 * workers on 2 cores gave +10-15 % unique 1 MiB uploads. */
static int
default_upload_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 4 : n > 32 ? 128 : (int)(4 * n);
}

/* Config, overrides, admin, database: everything before listening. */
static bool
prepare_data_dir(const struct vs_options *o, struct vs_config *cfg,
		 char *err, size_t errlen)
{
	struct vs_overrides ov;
	struct vs_db db;
	char *changed = NULL;
	bool ok = false;

	memset(&ov, 0, sizeof(ov));
	memset(&db, 0, sizeof(db));
	if (!vs_mkdir_p(o->data_dir, 0750)) {
		snprintf(err, errlen, "cannot create %s: %s", o->data_dir,
			 strerror(errno));
		return false;
	}
	if (!vs_config_load(cfg, o->data_dir, err, errlen))
		return false;
	ov.listen = o->listen;
	ov.port = o->port;
	vs_app_env_overrides(&ov);
	if (!vs_config_apply_overrides(cfg, &ov, err, errlen))
		return false;
	if (!vs_admin_bootstrap(cfg, o, &changed, err, errlen))
		return false;
	if (vs_db_open(&db, o->data_dir, err, errlen) != VS_DB_OK)
		goto out;
	vs_db_reset_shared(&db);	/* no worker runs yet */
	if (vs_db_migrate(&db, err, errlen) != VS_DB_OK)
		goto out;
	if (changed != NULL && !vs_admin_drop_sessions(&db, changed)) {
		snprintf(err, errlen, "cannot end the sessions of administrator %s",
			 changed);
		goto out;
	}
	char *blobs = vs_path_join(o->data_dir, "blobs");
	if (blobs == NULL || !vs_mkdir_p(blobs, 0750)) {
		snprintf(err, errlen, "cannot create the blobs directory");
		free(blobs);
		goto out;
	}
	/* DATA.md 2: retention once at start-up, before anyone listens. */
	vs_retention_startup(&db, blobs, &cfg->eff.retention);
	free(blobs);
	ok = true;
out:
	if (db.h != NULL)
		vs_db_close(&db);
	free(changed);
	return ok;
}

/* D40: the desktop inlines text files up to 2 MiB in payload_json; as
 * a JSON string inside JSON that needs about 2.5 MiB. The built-in
 * defaults stay the Go server's so both read config.yml alike; the
 * quick start writes desktop-ready limits, and anyone running with less
 * is told at start-up. */
#define DESKTOP_PAYLOAD_BYTES (2621440)

static void
warn_small_limits(const struct vs_config *cfg)
{
	const struct vs_limits *l = &cfg->eff.limits;

	if (l->max_payload_json < DESKTOP_PAYLOAD_BYTES)
		vs_log_warn("limits.max_payload_json is %lld bytes: desktop clients "
			    "inline text files up to 2 MiB (about %d bytes of payload); "
			    "larger ones will stop their sync with payload_too_large. "
			    "See doc/OPERATIONS.md (D40).",
			    (long long)l->max_payload_json, DESKTOP_PAYLOAD_BYTES);
	if (l->max_json_body < 2 * DESKTOP_PAYLOAD_BYTES)
		vs_log_warn("limits.max_json_body is %lld bytes: a push batch carrying "
			    "large text files will be refused with request_too_large "
			    "(doc/OPERATIONS.md, D40).", (long long)l->max_json_body);
}

static int
run_stack(const struct vs_options *o, struct vs_config *cfg)
{
	struct vs_stack_opts so;
	char host[256], self[PATH_MAX];
	char *data_abs = NULL, *static_dir = NULL;
	int port, rc = 1;
	ssize_t n;

	if (!vs_listen_split(vs_config_listen(cfg), host, sizeof(host), &port)) {
		vs_log_error("invalid listen address %s", vs_config_listen(cfg));
		return 1;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		vs_log_error("cannot find this program's path: %s", strerror(errno));
		return 1;
	}
	self[n] = '\0';
	data_abs = realpath(o->data_dir, NULL);
	static_dir = find_static_dir();
	if (data_abs == NULL || static_dir == NULL) {
		vs_log_error("cannot resolve paths: %s", strerror(errno));
		goto out;
	}
	memset(&so, 0, sizeof(so));
	so.self_exe = self;
	so.data_dir = data_abs;
	so.listen_host = host[0] != '\0' ? host : "0.0.0.0";
	so.listen_port = port;
	so.workers = o->workers > 0 ? o->workers : default_workers();
	so.upload_workers = o->upload_workers > 0 ? o->upload_workers :
						     default_upload_workers();
	so.upload_stall_seconds = vs_worker_stall_seconds();
	so.nginx_path = getenv("VERSTAK_NGINX") ? getenv("VERSTAK_NGINX") : NGINX_PATH;
	so.static_dir = static_dir;
	so.max_body_bytes = cfg->eff.limits.max_blob_bytes + (1 << 20);
	if (cfg->eff.limits.max_json_body + (1 << 20) > so.max_body_bytes)
		so.max_body_bytes = cfg->eff.limits.max_json_body + (1 << 20);
	so.worker_wrapper = getenv("VERSTAK_WORKER_WRAPPER");
	rc = vs_stack_run(&so);
out:
	free(data_abs);
	free(static_dir);
	return rc;
}

static int
cmd_migrate(int argc, char **argv)
{
	const char *data = "./server-data";
	char err[512];
	struct vs_app app;
	int rc = 0;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
			data = argv[++i];
		} else {
			fprintf(stderr, "usage: verstak-sync-server migrate --data DIR\n");
			return 2;
		}
	}
	/* Run before the workers start (systemd's ExecStartPre): the shared
	 * state is reset first, so a storage failure of the last run does
	 * not refuse the migration's own writes. */
	if (!vs_app_open(&app, data, false, err, sizeof(err))) {
		rc = 1;
	} else {
		vs_db_reset_shared(&app.db);
		if (vs_db_migrate(&app.db, err, sizeof(err)) != VS_DB_OK)
			rc = 1;
		else	/* the system deployment's start-up (DATA.md 2) */
			vs_retention_startup(&app.db, app.blobs_dir,
					     &app.cfg.eff.retention);
	}
	if (rc != 0)
		fprintf(stderr, "verstak-sync-server: %s\n", err);
	vs_app_close(&app);
	return rc;
}

int
main(int argc, char **argv)
{
	struct vs_options o;
	struct vs_config cfg;
	char err[512];
	int rc;

	if (argc > 1 && strcmp(argv[1], "migrate") == 0)
		return cmd_migrate(argc, argv);
	if (argc > 1 && strcmp(argv[1], "user") == 0)
		return vs_user_cli(argc, argv);
	if (argc > 1 && strcmp(argv[1], "smtp") == 0)
		return vs_smtp_cli(argc, argv);
	if (argc > 1 && strcmp(argv[1], "gc") == 0)
		return vs_gc_cli(argc, argv);
	if (argc > 1 && strcmp(argv[1], "sequence") == 0)
		return vs_sequence_cli(argc, argv);
	if (!vs_options_parse(argc, argv, &o, err, sizeof(err))) {
		fprintf(stderr, "verstak-sync-server: %s\n(see --help)\n", err);
		return 2;
	}
	switch (o.mode) {
	case VS_MODE_VERSION:
		printf("verstak-sync-server %s (%s)\n", vs_version(), vs_build_commit());
		return 0;
	case VS_MODE_HELP:
		vs_options_usage(stdout);
		return 0;
	case VS_MODE_WORKER:
		return vs_worker_run(o.data_dir, o.upload_pool);
	case VS_MODE_STACK:
		break;
	}
	if (o.admin_user == NULL && !o.init_admin && o.listen == NULL &&
	    o.port == 0 && o.workers == 0 &&
	    o.upload_workers == 0 && stdin_is_listening_socket())
		return vs_worker_run(o.data_dir, o.upload_pool);

	vs_log_set_tag("verstak-sync-server");
	memset(&cfg, 0, sizeof(cfg));
	if (!prepare_data_dir(&o, &cfg, err, sizeof(err))) {
		fprintf(stderr, "verstak-sync-server: %s\n", err);
		vs_config_free(&cfg);
		return 1;
	}
	if (o.init_admin) {
		vs_config_free(&cfg);
		return 0;
	}
	warn_small_limits(&cfg);
	rc = run_stack(&o, &cfg);
	vs_config_free(&cfg);
	return rc;
}
