/*
 * stack.h - the local stack: a private nginx in front of two supervised
 * pools of FastCGI workers (every route; blob uploads), all under
 * <data>/run/, no root needed.
 *
 * Owns: the run directory, the listening unix sockets each pool shares,
 * spawning workers (this binary re-executed with --fcgi-worker and the
 * socket on fd 0), replacing a worker that dies, starting nginx with a
 * generated configuration, and the graceful stop on SIGINT/SIGTERM that
 * leaves no process behind.
 *
 * Must never: serve a request itself, or touch the database (the caller
 * has migrated it before vs_stack_run).
 */
#ifndef VS_STACK_H
#define VS_STACK_H

#include <stddef.h>

struct vs_stack_opts {
	const char *self_exe;     /* absolute path of this binary */
	const char *data_dir;     /* absolute path */
	const char *listen_host;  /* e.g. "127.0.0.1" or "::1" */
	int listen_port;
	int workers;              /* >= 1: every route */
	int upload_workers;       /* >= 1: blob uploads (streamed bodies) */
	int upload_stall_seconds; /* the workers' body deadline (worker.h) */
	const char *nginx_path;   /* nginx binary */
	const char *static_dir;   /* static assets served by nginx */
	long long max_body_bytes; /* client_max_body_size */
	/* Optional command prefix for workers (e.g. "valgrind --leak-check=full"),
	 * split on spaces; from VERSTAK_WORKER_WRAPPER. NULL = none. */
	const char *worker_wrapper;
};

/* Runs until SIGINT/SIGTERM (returns 0) or a fatal start-up error
 * (returns nonzero after logging why and cleaning up). */
int vs_stack_run(const struct vs_stack_opts *o);

#endif
