/*
 * options.h - the command line of the server modes (DATA.md 2 and the
 * issue's modes): local stack, FastCGI worker, admin bootstrap, version
 * and help. Subcommands (user, gc, migrate, ...) parse their own
 * arguments in their own files.
 *
 * Owns: turning argv into a validated struct; the listen-address syntax.
 * Must never: touch the data directory.
 */
#ifndef VS_OPTIONS_H
#define VS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum vs_mode {
	VS_MODE_STACK = 0,
	VS_MODE_WORKER,
	VS_MODE_VERSION,
	VS_MODE_HELP,
};

struct vs_options {
	enum vs_mode mode;
	const char *data_dir;        /* default ./server-data */
	const char *listen;          /* --listen */
	int port;                    /* --port, 0 = not given */
	int workers;                 /* 0 = number of cores */
	int upload_workers;          /* 0 = default_upload_workers() */
	bool upload_pool;            /* a worker of the upload pool */
	const char *admin_user;
	const char *admin_pass;      /* --admin-pass (argv) */
	const char *admin_pass_file;
	bool admin_pass_stdin;
	bool init_admin;
};

/* Parses argv; on error writes a message (for stderr) into err. */
bool vs_options_parse(int argc, char **argv, struct vs_options *o,
		      char *err, size_t errlen);

/* Splits "host:port" / "[v6]:port" / ":port". host gets "" for ":port". */
bool vs_listen_split(const char *listen, char *host, size_t hostlen, int *port);

void vs_options_usage(FILE *f);

#endif
