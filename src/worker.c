/*
 * worker.c - see worker.h.
 *
 * Signals: a stop request must never interrupt a request half-way (a
 * push must commit or roll back, not die between the two), yet an idle
 * worker blocked in accept() must leave at once. So SIGTERM/SIGINT are
 * blocked while a request is handled and unblocked only around accept;
 * if one arrives while we wait there, the handler jumps out of the
 * accept (nothing of libfcgi's state is used afterwards: we exit).
 */
#include "worker.h"
#include "app.h"
#include "log.h"
#include "request.h"
#include "response.h"
#include "router.h"

#include <errno.h>
#include <fcgiapp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Response buffers are reused between requests; past this size they are
 * released so one large answer does not pin memory for the worker's life. */
#define KEEP_BUFFER_BYTES (1u << 20)

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t in_accept;
static sigjmp_buf accept_jmp;

static void
on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
	if (in_accept) {
		in_accept = 0;
		siglongjmp(accept_jmp, 1);
	}
}

static bool
install_signals(sigset_t *stopset)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* no SA_RESTART: accept must return */
	if (sigaction(SIGTERM, &sa, NULL) != 0 ||
	    sigaction(SIGINT, &sa, NULL) != 0)
		return false;
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) != 0)
		return false;
	sigemptyset(stopset);
	sigaddset(stopset, SIGTERM);
	sigaddset(stopset, SIGINT);
	return true;
}

static const char *
fcgi_param(void *ctx, const char *name)
{
	FCGX_Request *req = ctx;
	return FCGX_GetParam(name, req->envp);
}

static ssize_t
fcgi_read(void *ctx, char *buf, size_t n)
{
	FCGX_Request *req = ctx;
	int got;

	if (n > (size_t)0x7fffffff)
		n = 0x7fffffff;
	got = FCGX_GetStr(buf, (int)n, req->in);
	if (got < 0 || (got == 0 && FCGX_GetError(req->in) != 0))
		return -1;
	return got;
}

static size_t
drain_limit(const struct vs_app *app)
{
	int64_t lim = app->cfg.eff.limits.max_blob_bytes + (1 << 20);
	if (app->cfg.eff.limits.max_json_body + (1 << 20) > lim)
		lim = app->cfg.eff.limits.max_json_body + (1 << 20);
	return (size_t)lim;
}

static void
serve_one(struct vs_app *app, FCGX_Request *freq, struct vs_response *res,
	  struct vs_buf *out)
{
	struct vs_request_source src = { fcgi_param, fcgi_read, freq };
	struct vs_request req;
	struct vs_ctx ctx;

	vs_res_reset(res);
	vs_buf_reset(out);
	if (!vs_request_init(&req, &src, app->trusted, app->ntrusted)) {
		vs_res_internal(res);
	} else {
		ctx.app = app;
		ctx.req = &req;
		ctx.res = res;
		vs_route(&ctx);
		if (app->db.tx_depth > 0) {
			/* A handler returned with a transaction open: never
			 * leave it for the next request. */
			vs_log_error("transaction left open by %s %s",
				     req.method, req.path);
			vs_db_rollback(&app->db);
		}
	}
	/* Read what the handler did not, so nginx never sees the
	 * connection close while it is still sending the body. */
	vs_request_drain(&req, drain_limit(app));
	if (res->body.oom || res->headers.oom) {
		vs_res_reset(res);
		vs_res_internal(res);
	}
	if (!vs_res_serialize(res, out)) {
		vs_log_error("out of memory writing a response");
	} else if (FCGX_PutStr(out->data, (int)out->len, freq->out) !=
		   (int)out->len) {
		vs_log_warn("client went away before the response was written");
	}
	vs_request_free(&req);
	if (res->body.cap > KEEP_BUFFER_BYTES)
		vs_buf_free(&res->body);
	if (out->cap > KEEP_BUFFER_BYTES)
		vs_buf_free(out);
}

int
vs_worker_run(const char *data_dir)
{
	struct vs_app app;
	FCGX_Request freq;
	struct vs_response res;
	struct vs_buf out;
	sigset_t stopset;
	char err[512];
	volatile int status = 0;

	vs_log_set_tag("verstak-worker");
	if (!install_signals(&stopset)) {
		vs_log_error("cannot install signal handlers: %s", strerror(errno));
		return 1;
	}
	/* Blocked except while waiting in accept (see the top comment). */
	if (sigprocmask(SIG_BLOCK, &stopset, NULL) != 0)
		return 1;
	if (!vs_app_open(&app, data_dir, true, err, sizeof(err))) {
		vs_log_error("cannot start: %s", err);
		vs_app_close(&app);
		return 1;
	}
	if (FCGX_Init() != 0 || FCGX_InitRequest(&freq, 0, FCGI_FAIL_ACCEPT_ON_INTR) != 0) {
		vs_log_error("cannot initialise libfcgi");
		vs_app_close(&app);
		return 1;
	}
	vs_res_init(&res);
	vs_buf_init(&out);
	for (;;) {
		int rc;

		if (sigsetjmp(accept_jmp, 1) != 0)
			break;	/* stop signal while idle */
		in_accept = 1;
		if (sigprocmask(SIG_UNBLOCK, &stopset, NULL) != 0) {
			in_accept = 0;
			status = 1;
			break;
		}
		rc = stop_requested ? -1 : FCGX_Accept_r(&freq);
		in_accept = 0;
		(void)sigprocmask(SIG_BLOCK, &stopset, NULL);
		if (stop_requested)
			break;
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			vs_log_error("accept failed: %s", strerror(errno));
			status = 1;
			break;
		}
		serve_one(&app, &freq, &res, &out);
		FCGX_Finish_r(&freq);
	}
	FCGX_Finish_r(&freq);
	FCGX_Free(&freq, 0);
	vs_res_free(&res);
	vs_buf_free(&out);
	vs_app_close(&app);
	return status;
}
