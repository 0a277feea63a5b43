/*
 * options.c - see options.h.
 */
#include "options.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
vs_options_usage(FILE *f)
{
	fputs(
"usage: verstak-sync-server [--data DIR] [--listen ADDR:PORT | --port PORT]\n"
"                           [--workers N] [--upload-workers N]\n"
"                           [--admin-user NAME PASSWORD-SOURCE]\n"
"       verstak-sync-server --admin-user NAME PASSWORD-SOURCE --init-admin [--data DIR]\n"
"       verstak-sync-server --fcgi-worker [--upload-pool] --data DIR\n"
"       verstak-sync-server migrate --data DIR\n"
"       verstak-sync-server user add|confirm|block|unblock|list|delete --data DIR ...\n"
"       verstak-sync-server gc --data DIR [--grace-hours N]\n"
"       verstak-sync-server smtp set|show|test --data DIR ...\n"
"       verstak-sync-server sequence show|advance --data DIR [--by N]\n"
"       verstak-sync-server --version | --help\n"
"\n"
"Without a subcommand it runs the local stack: a private nginx on ADDR:PORT\n"
"(default 127.0.0.1:47732, or VERSTAK_LISTEN, or listen/port in config.yml)\n"
"in front of a supervised pool of N FastCGI workers (default: two per core)\n"
"and a second pool for blob uploads (default: four per core).\n"
"Started by spawn-fcgi or multiwatch with a listening socket on standard\n"
"input, it runs as one FastCGI worker instead.\n"
"\n"
"  --data DIR             data directory (default ./server-data)\n"
"  --listen ADDR:PORT     listen address (not written to config.yml)\n"
"  --port PORT            deprecated: listen on 127.0.0.1:PORT\n"
"  --workers N            number of FastCGI workers\n"
"  --upload-workers N     number of FastCGI workers for blob uploads\n"
"  --admin-user NAME      create or replace this administrator, then start\n"
"  --admin-pass PASSWORD  the administrator's password (visible in ps: prefer\n"
"                         --admin-pass-file or --admin-pass-stdin)\n"
"  --admin-pass-file FILE read the password from FILE (trimmed)\n"
"  --admin-pass-stdin     read the password from standard input (trimmed)\n"
"  --init-admin           set the administrator and exit\n"
"  --version              print the version and exit\n"
"\n"
"Environment: VERSTAK_LISTEN, VERSTAK_PUBLIC_URL, VERSTAK_TRUSTED_PROXIES,\n"
"VERSTAK_BOOTSTRAP_ADMIN_USER, VERSTAK_BOOTSTRAP_ADMIN_PASSWORD,\n"
"VERSTAK_REQUIRE_ADMIN, VERSTAK_UPLOAD_STALL_SECONDS (default 60: an upload\n"
"that sends nothing for this long is answered 408).\n", f);
}

static bool
parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return false;
	*out = (int)v;
	return true;
}

bool
vs_listen_split(const char *listen, char *host, size_t hostlen, int *port)
{
	const char *colon;
	size_t hlen;
	const char *h = listen;

	if (listen == NULL || *listen == '\0')
		return false;
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (close == NULL || close[1] != ':')
			return false;
		h = listen + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL)
			return false;
		hlen = (size_t)(colon - listen);
		if (memchr(listen, ':', hlen) != NULL)
			return false;	/* bare IPv6 needs brackets */
	}
	if (hlen >= hostlen)
		return false;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	return parse_int(colon + 1, 1, 65535, port);
}

static const char *
need_value(int argc, char **argv, int *i, char *err, size_t errlen)
{
	if (*i + 1 >= argc) {
		snprintf(err, errlen, "%s needs a value", argv[*i]);
		return NULL;
	}
	return argv[++*i];
}

bool
vs_options_parse(int argc, char **argv, struct vs_options *o, char *err,
		 size_t errlen)
{
	int sources = 0;

	memset(o, 0, sizeof(*o));
	o->data_dir = "./server-data";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;

		if (strcmp(a, "--version") == 0 || strcmp(a, "-version") == 0) {
			o->mode = VS_MODE_VERSION;
			return true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			o->mode = VS_MODE_HELP;
			return true;
		} else if (strcmp(a, "--fcgi-worker") == 0) {
			o->mode = VS_MODE_WORKER;
		} else if (strcmp(a, "--upload-pool") == 0) {
			o->upload_pool = true;
		} else if (strcmp(a, "--admin-pass-stdin") == 0) {
			o->admin_pass_stdin = true;
			sources++;
		} else if (strcmp(a, "--init-admin") == 0) {
			o->init_admin = true;
		} else if (strcmp(a, "--data") == 0) {
			if ((v = need_value(argc, argv, &i, err, errlen)) == NULL)
				return false;
			o->data_dir = v;
		} else if (strcmp(a, "--listen") == 0) {
			char host[256];
			int port;
			if ((v = need_value(argc, argv, &i, err, errlen)) == NULL)
				return false;
			if (!vs_listen_split(v, host, sizeof(host), &port)) {
				snprintf(err, errlen, "--listen wants HOST:PORT");
				return false;
			}
			o->listen = v;
		} else if (strcmp(a, "--port") == 0) {
			if ((v = need_value(argc, argv, &i, err, errlen)) == NULL)
				return false;
			if (!parse_int(v, 1, 65535, &o->port)) {
				snprintf(err, errlen, "--port wants a number from 1 to 65535");
				return false;
			}
		} else if (strcmp(a, "--workers") == 0) {
			if ((v = need_value(argc, argv, &i, err, errlen)) == NULL)
				return false;
			if (!parse_int(v, 1, 256, &o->workers)) {
				snprintf(err, errlen, "--workers wants a number from 1 to 256");
				return false;
			}
		} else if (strcmp(a, "--upload-workers") == 0) {
			if ((v = need_value(argc, argv, &i, err, errlen)) == NULL)
				return false;
			if (!parse_int(v, 1, 256, &o->upload_workers)) {
				snprintf(err, errlen, "--upload-workers wants a number from 1 to 256");
				return false;
			}
		} else if (strcmp(a, "--admin-user") == 0) {
			if ((v = need_value(argc, argv, &i, err, errlen)) == NULL)
				return false;
			o->admin_user = v;
		} else if (strcmp(a, "--admin-pass") == 0) {
			if ((v = need_value(argc, argv, &i, err, errlen)) == NULL)
				return false;
			o->admin_pass = v;
			sources++;
		} else if (strcmp(a, "--admin-pass-file") == 0) {
			if ((v = need_value(argc, argv, &i, err, errlen)) == NULL)
				return false;
			o->admin_pass_file = v;
			sources++;
		} else {
			snprintf(err, errlen, "unknown argument: %s", a);
			return false;
		}
	}
	if (o->admin_user != NULL && sources != 1) {
		snprintf(err, errlen, sources == 0
			 ? "--admin-user needs --admin-pass, --admin-pass-file or --admin-pass-stdin"
			 : "give only one of --admin-pass, --admin-pass-file, --admin-pass-stdin");
		return false;
	}
	if (o->admin_user == NULL && sources > 0) {
		snprintf(err, errlen, "a password source needs --admin-user");
		return false;
	}
	if (o->init_admin && o->admin_user == NULL &&
	    getenv("VERSTAK_BOOTSTRAP_ADMIN_PASSWORD") == NULL) {
		snprintf(err, errlen, "--init-admin needs --admin-user and a password source");
		return false;
	}
	if (o->upload_pool && o->mode != VS_MODE_WORKER) {
		snprintf(err, errlen, "--upload-pool goes with --fcgi-worker");
		return false;
	}
	if (o->admin_user != NULL && o->admin_user[0] == '\0') {
		snprintf(err, errlen, "--admin-user must not be empty");
		return false;
	}
	return true;
}
