/*
 * worker.h - the FastCGI worker: one request at a time, many processes
 * side by side on one listening socket (fd 0, as spawn-fcgi, multiwatch
 * and the local stack hand it over).
 *
 * Owns: the accept loop, adapting libfcgi to the request layer, writing
 * the response, draining unread bodies, and the graceful stop (SIGTERM
 * or SIGINT: finish the request in hand, then exit).
 * Must never: interpret a route; that is the router's job.
 */
#ifndef VS_WORKER_H
#define VS_WORKER_H

/* Runs until stopped; returns a process exit status. */
int vs_worker_run(const char *data_dir);

#endif
