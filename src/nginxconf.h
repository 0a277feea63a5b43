/*
 * nginxconf.h - renders the nginx configuration for the local stack.
 *
 * Owns: the text of the generated nginx.conf (listen address, FastCGI
 * upstreams on two unix sockets: the worker pool and the upload pool,
 * static assets, body limits, temp paths under
 * the run directory, headers). The shipped nginx/verstak.conf for system
 * deployments follows the same routing.
 * Must never: start processes or write outside the buffer it is given.
 */
#ifndef VS_NGINXCONF_H
#define VS_NGINXCONF_H

#include <stdbool.h>
#include "util.h"

struct vs_nginx_params {
	const char *run_dir;      /* pid, logs, temp paths live here */
	const char *listen;       /* "127.0.0.1:47732" or "[::1]:47732" */
	const char *fcgi_socket;  /* unix socket path of the worker pool */
	const char *upload_socket; /* unix socket path of the upload pool */
	const char *static_dir;   /* directory with app.css, app.js, logo.svg */
	const char *blobs_dir;    /* <data>/blobs (internal X-Accel location) */
	long long max_body_bytes; /* client_max_body_size in bytes */
	int worker_processes;     /* nginx worker_processes */
	int upload_stall_seconds; /* the workers' stall limit (>= 1) */
};

bool vs_nginx_render(const struct vs_nginx_params *p, struct vs_buf *out);

#endif
