/*
 * worker.h - the FastCGI worker: one request handled at a time, many
 * processes side by side on one listening socket (fd 0, as spawn-fcgi,
 * multiwatch and the local stack hand it over; the worker makes it
 * non-blocking). A push's answer may wait, parked, while the worker
 * handles the requests already queued behind it, so that their commits
 * share one fsync (worker.c).
 *
 * Owns: the accept loop, adapting libfcgi to the request layer, holding
 * answers back until their commits are durable, writing the response,
 * draining unread bodies, and the graceful stop (SIGTERM or SIGINT:
 * finish the request in hand and send the parked answers, then exit).
 * Must never: interpret a route; that is the router's job; nor send an
 * answer whose commit vs_db_settle has not made durable.
 */
#ifndef VS_WORKER_H
#define VS_WORKER_H

#include <stdbool.h>

/* The progress deadline of a request body, in seconds: a read from
 * nginx that brings no byte for this long fails, and an upload answers
 * 408 request_timeout (DEFECTS D25). 60, or VERSTAK_UPLOAD_STALL_SECONDS
 * (1-3600; tests use a few seconds). The local stack reads it too, to
 * set nginx's own body timeout after it. */
int vs_worker_stall_seconds(void);

/* Runs until stopped; returns a process exit status. upload_pool only
 * changes the log tag: every worker serves every route, the pools differ
 * in what nginx sends them. */
int vs_worker_run(const char *data_dir, bool upload_pool);

#endif
