/*
 * worker.c - see worker.h.
 *
 * Signals: a stop request must never interrupt a request half-way (a
 * push must commit or roll back, not die between the two), yet an idle
 * worker must leave at once. So SIGTERM/SIGINT/SIGQUIT stay blocked, except
 * while listener.c waits for a connection; a busy worker looks at its
 * pending signals before each accept.
 *
 * Accepting: listener.c accepts; the connection is then handed to
 * libfcgi, whose own accept is never used (its requests have no
 * listening socket).
 *
 * Group commit: a push whose fsync the db module deferred (db.h,
 * vs_db_defer_begin) is parked with its answer, and the worker accepts
 * the next connection that is already waiting; when none is, or
 * PARK_MAX answers wait, one vs_db_settle makes all their commits
 * durable and the answers go out (or, if that fsync failed, 500s). A
 * worker never waits for a new connection with an answer parked, and
 * settles before it handles a request of any other route, so a parked
 * answer waits only for pushes that were already queued.
 */
#include "worker.h"
#include "app.h"
#include "listener.h"
#include "log.h"
#include "request.h"
#include "retention.h"
#include "response.h"
#include "router.h"
#include "template.h"
#include "util.h"

#include <errno.h>
#include <fastcgi.h>
#include <fcgiapp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Response buffers are reused between requests; past this size they are
 * released so one large answer does not pin memory for the worker's life. */
#define KEEP_BUFFER_BYTES (1u << 20)

/* How many answers may wait for one shared fsync (see the top). */
#define PARK_MAX 8

static volatile sig_atomic_t stop_requested;
/* For the log line at exit: answers held back, and the settles that
 * sent them. */
static unsigned long long n_parked, n_settles;

static void
on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static bool
install_signals(sigset_t *stopset)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* no SA_RESTART: epoll_pwait must return */
	if (sigaction(SIGTERM, &sa, NULL) != 0 ||
	    sigaction(SIGINT, &sa, NULL) != 0 ||
	    /* multiwatch 1.0.0 sends SIGQUIT when told "-s TERM" (checked:
	     * its children get QUIT), and QUIT's default kills at once */
	    sigaction(SIGQUIT, &sa, NULL) != 0)
		return false;
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) != 0)
		return false;
	sigemptyset(stopset);
	sigaddset(stopset, SIGTERM);
	sigaddset(stopset, SIGINT);
	sigaddset(stopset, SIGQUIT);
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

/* FastCGI record layout (FastCGI 1.0 specification, section 3.3). */
#define FCGI_HEADER_LEN 8
#define FCGI_VERSION_1 1
#define FCGI_STDOUT_TYPE 6
/* The largest record content that needs no padding (a multiple of 8). */
#define FCGI_MAX_CONTENT 65528
#define MAX_RECORDS 64

static void
record_header(unsigned char *h, int type, int request_id, size_t len)
{
	h[0] = FCGI_VERSION_1;
	h[1] = (unsigned char)type;
	h[2] = (unsigned char)((request_id >> 8) & 0xff);
	h[3] = (unsigned char)(request_id & 0xff);
	h[4] = (unsigned char)((len >> 8) & 0xff);
	h[5] = (unsigned char)(len & 0xff);
	h[6] = 0;	/* no padding */
	h[7] = 0;
}

/*
 * Writes head then body as few large FCGI_STDOUT records in one writev.
 * libfcgi's own stream copies everything into an 8 KiB buffer and writes
 * one record per buffer: for a 70 KiB pull page that is ten system calls
 * here, ten reads in nginx, and a copy of the page. Here the page goes
 * from the response buffer to the socket directly.
 *
 * With end set, the same writev also carries the end of the stream and
 * FCGI_END_REQUEST (status 0, request complete), which libfcgi would
 * otherwise write in FCGX_Finish_r with a system call of its own, and
 * nginx would read with one more wakeup; see finish_fast().
 */
static bool
fcgi_write_stdout(FCGX_Request *req, const struct vs_buf *head,
		  const struct vs_buf *body, bool end)
{
	const char *seg[2] = { head->data, body->data };
	size_t seglen[2] = { head->len, body->len };
	unsigned char hdr[MAX_RECORDS][FCGI_HEADER_LEN];
	unsigned char tail[2 * FCGI_HEADER_LEN + sizeof(FCGI_EndRequestBody)];
	struct iovec iov[3 * MAX_RECORDS + 1], *v = iov;
	size_t total = head->len + body->len, k = 0, si = 0, so = 0;
	int iovcnt = 0;

	if ((total + FCGI_MAX_CONTENT - 1) / FCGI_MAX_CONTENT > MAX_RECORDS)
		return false;	/* larger than any answer; see can_finish_fast */
	for (size_t off = 0; off < total; k++) {
		size_t n = total - off < FCGI_MAX_CONTENT ? total - off : FCGI_MAX_CONTENT;
		unsigned char *h = hdr[k];

		record_header(h, FCGI_STDOUT_TYPE, req->requestId, n);
		iov[iovcnt].iov_base = h;
		iov[iovcnt++].iov_len = FCGI_HEADER_LEN;
		off += n;
		/* The record's content: the rest of the current segment,
		 * maybe continued in the next one. */
		while (n > 0) {
			size_t take;
			while (seglen[si] - so == 0) {
				si++;
				so = 0;
			}
			take = seglen[si] - so < n ? seglen[si] - so : n;
			iov[iovcnt].iov_base = (void *)(seg[si] + so);
			iov[iovcnt++].iov_len = take;
			so += take;
			n -= take;
		}
	}
	if (end) {
		FCGI_EndRequestBody *eb = (FCGI_EndRequestBody *)(void *)
			(tail + 2 * FCGI_HEADER_LEN);

		record_header(tail, FCGI_STDOUT_TYPE, req->requestId, 0);
		record_header(tail + FCGI_HEADER_LEN, FCGI_END_REQUEST,
			      req->requestId, sizeof(*eb));
		memset(eb, 0, sizeof(*eb));	/* appStatus 0 */
		eb->protocolStatus = FCGI_REQUEST_COMPLETE;
		iov[iovcnt].iov_base = tail;
		iov[iovcnt++].iov_len = sizeof(tail);
	}
	/* writev may stop short on a full socket buffer: go on from there. */
	while (iovcnt > 0) {
		ssize_t w = writev(req->ipcFd, v, iovcnt);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		while (iovcnt > 0 && (size_t)w >= v->iov_len) {
			w -= (ssize_t)v->iov_len;
			v++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			v->iov_base = (char *)v->iov_base + w;
			v->iov_len -= (size_t)w;
		}
	}
	return true;
}

static size_t
drain_limit(const struct vs_app *app)
{
	int64_t lim = app->cfg.eff.limits.max_blob_bytes + (1 << 20);
	if (app->cfg.eff.limits.max_json_body + (1 << 20) > lim)
		lim = app->cfg.eff.limits.max_json_body + (1 << 20);
	return (size_t)lim;
}

/* The response fits the records fcgi_write_stdout builds (always, for
 * what this server answers) and the request was read to its end. */
static bool
fits_records(const struct vs_buf *head, const struct vs_buf *body)
{
	size_t total = head->len + body->len;

	return (total + FCGI_MAX_CONTENT - 1) / FCGI_MAX_CONTENT <= MAX_RECORDS;
}

#define STALL_DEFAULT_S 60
#define STALL_MAX_S 3600

int
vs_worker_stall_seconds(void)
{
	const char *v = getenv("VERSTAK_UPLOAD_STALL_SECONDS");
	char *end;
	long n;

	if (v == NULL || *v == '\0')
		return STALL_DEFAULT_S;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < 1 || n > STALL_MAX_S)
		return STALL_DEFAULT_S;
	return (int)n;
}

/*
 * The progress deadline (D25). nginx streams an upload's body to the
 * upload pool as the client sends it (nginxconf.c), so a client that
 * stops sending leaves this worker blocked in read. With a receive
 * timeout on the connection the read fails after `seconds` without a
 * byte; libfcgi then marks the input stream broken (every later read
 * ends at once), blobs.c answers 408 request_timeout and removes its
 * temp file, and nginx passes the answer on. Bodies nginx buffered
 * arrive at once, so for them the limit never fires.
 */
static void
set_stall_limit(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds, .tv_usec = 0 };

	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
		vs_log_warn("cannot set the body read deadline: %s",
			    strerror(errno));
}

/*
 * libfcgi ends every connection with a lingering close: shutdown, then
 * poll and read until nginx closes its side, so that unread request
 * bytes never make the kernel reset the connection before nginx has
 * read the answer. When the request was read to its end (libfcgi saw
 * the empty FCGI_STDIN record) nothing is left unread, and when the
 * END_REQUEST went out in our own writev the answer is complete: the
 * worker closes at once and goes back to accept, instead of waiting a
 * round trip for nginx. The stream is marked closed so FCGX_Finish_r
 * writes nothing more; it then has no descriptor left to close.
 */
static bool
can_finish_fast(FCGX_Request *freq)
{
	return !freq->keepConnection && FCGX_HasSeenEOF(freq->in) == EOF &&
	       FCGX_GetError(freq->in) == 0;
}

/* How long an upload worker keeps reading a body it has already
 * answered (see answer_then_linger). */
#define LINGER_BUDGET_MS 2000

/*
 * The upload pool's end of a request whose body was not read to its
 * end (refused before or while reading it: 401, 413, 400, 408...).
 * nginx streams that body as the client sends it, so reading the rest
 * first, as the worker pool does, would hold this worker for as long as
 * a client keeps trickling bytes, and the answer with it. Instead the
 * answer goes out at once, end-of-request records included (nginx
 * passes an answer on while the body still comes, and then closes its
 * side); then the worker reads and drops what is still arriving, for
 * at most LINGER_BUDGET_MS, so that unread bytes rarely turn its close
 * into a reset, and closes. Returns whether the answer was written.
 */
static bool
answer_then_linger(FCGX_Request *freq, const struct vs_buf *head,
		   const struct vs_buf *body)
{
	long long end = vs_mono_ms() + LINGER_BUDGET_MS;
	char trash[16384];
	bool ok = fcgi_write_stdout(freq, head, body, true);
	int fd = freq->ipcFd;

	freq->out->wasFCloseCalled = 1;
	freq->out->isClosed = 1;
	if (ok && shutdown(fd, SHUT_WR) == 0) {
		for (;;) {
			long long left = end - vs_mono_ms();
			struct pollfd p = { .fd = fd, .events = POLLIN };

			if (left <= 0 || poll(&p, 1, (int)left) <= 0 ||
			    read(fd, trash, sizeof(trash)) <= 0)
				break;
		}
	}
	if (close(fd) != 0)
		vs_log_warn("closing the FastCGI connection: %s",
			    strerror(errno));
	freq->ipcFd = -1;
	return ok;
}

static void
finish_fast(FCGX_Request *freq)
{
	freq->out->wasFCloseCalled = 1;
	freq->out->isClosed = 1;
	if (close(freq->ipcFd) != 0)
		vs_log_warn("closing the FastCGI connection: %s",
			    strerror(errno));
	freq->ipcFd = -1;
}

/* The slow path: libfcgi's own stream (and its FCGX_Finish_r). */
static bool
fcgi_put_all(FCGX_Request *freq, const struct vs_buf *head,
	     const struct vs_buf *body)
{
	return FCGX_PutStr(head->data, (int)head->len, freq->out) ==
		(int)head->len &&
	       (body->len == 0 ||
		FCGX_PutStr(body->data, (int)body->len, freq->out) ==
		(int)body->len);
}

/* One request and its answer; PARK_MAX of them can wait at once. */
struct slot {
	FCGX_Request freq;
	struct vs_response res;
	struct vs_buf out;
	bool body_eof;	/* the request body was read to its end */
};

/* Routes the request and leaves its answer in sl->res; the body is read
 * to its end unless the upload pool answers first. */
static void
handle_one(struct vs_app *app, struct slot *sl, bool upload_pool)
{
	struct vs_request_source src = { fcgi_param, fcgi_read, &sl->freq };
	struct vs_request req;
	struct vs_ctx ctx;

	vs_res_reset(&sl->res);
	vs_buf_reset(&sl->out);
	sl->body_eof = true;
	if (!vs_request_init(&req, &src, app->trusted, app->ntrusted)) {
		vs_res_internal(&sl->res);
	} else {
		ctx.app = app;
		ctx.req = &req;
		ctx.res = &sl->res;
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
	 * connection close while it is still sending the body; the upload
	 * pool answers first instead (answer_then_linger). */
	if (!upload_pool || req.body_eof)
		vs_request_drain(&req, drain_limit(app));
	sl->body_eof = req.body_eof;
	if (sl->res.body.oom || sl->res.headers.oom) {
		vs_res_reset(&sl->res);
		vs_res_internal(&sl->res);
	}
	vs_request_free(&req);
}

/* Writes sl's answer and ends its request. */
static void
send_one(struct slot *sl, bool upload_pool)
{
	FCGX_Request *freq = &sl->freq;
	struct vs_response *res = &sl->res;
	struct vs_buf *out = &sl->out;

	if (!vs_res_head(res, out)) {
		vs_log_error("out of memory writing a response");
	} else if (upload_pool && !sl->body_eof && fits_records(out, &res->body)) {
		if (!answer_then_linger(freq, out, &res->body))
			vs_log_warn("client went away before the response was written");
	} else if (!fits_records(out, &res->body)) {
		if (!fcgi_put_all(freq, out, &res->body))
			vs_log_warn("client went away before the response was written");
	} else {
		bool fast = can_finish_fast(freq);

		if (!fcgi_write_stdout(freq, out, &res->body, fast))
			vs_log_warn("client went away before the response was written");
		if (fast)
			finish_fast(freq);
	}
	FCGX_Finish_r(freq);
	/* nginx asked to keep the connection (fastcgi_keep_conn): this
	 * loop accepts a connection per request, so end this one. */
	if (freq->ipcFd >= 0) {
		(void)close(freq->ipcFd);
		freq->ipcFd = -1;
	}
	if (res->body.cap > KEEP_BUFFER_BYTES)
		vs_buf_free(&res->body);
	if (out->cap > KEEP_BUFFER_BYTES)
		vs_buf_free(out);
}

/*
 * Requests in hand: parked ones wait for the next settle. Slots go from
 * the free list to a request and back; a parked one stays out until its
 * settle. PARK_MAX slots: the worker settles as soon as PARK_MAX wait,
 * so one is always free for the next request.
 */
struct slots {
	struct slot slot[PARK_MAX];
	struct slot *free[PARK_MAX], *parked[PARK_MAX];
	int nfree, nparked;
};

static void
slots_init(struct slots *sl)
{
	memset(sl, 0, sizeof(*sl));
	for (int i = 0; i < PARK_MAX; i++) {
		/* No listening socket: libfcgi must never accept by itself
		 * (a failed request makes it try, and fail at once). */
		(void)FCGX_InitRequest(&sl->slot[i].freq, -1, 0);
		vs_res_init(&sl->slot[i].res);
		vs_buf_init(&sl->slot[i].out);
		sl->free[sl->nfree++] = &sl->slot[i];
	}
}

static void
slots_free(struct slots *sl)
{
	for (int i = 0; i < PARK_MAX; i++) {
		FCGX_Free(&sl->slot[i].freq, 1);
		vs_res_free(&sl->slot[i].res);
		vs_buf_free(&sl->slot[i].out);
	}
}

/* Makes the parked answers' commits durable, then sends them: as they
 * are, or as 500s when the fsync failed (the commits stay, unanswered;
 * a client's retry is answered as a same-scope duplicate). Only answers
 * whose handling deferred something are ever parked. */
static void
settle_parked(struct vs_app *app, struct slots *sl)
{
	enum vs_db_status s;

	if (sl->nparked == 0)
		return;
	s = vs_db_settle(&app->db);
	n_parked += (unsigned long long)sl->nparked;
	n_settles++;
	for (int i = 0; i < sl->nparked; i++) {
		struct slot *p = sl->parked[i];

		if (s != VS_DB_OK) {
			vs_res_reset(&p->res);
			vs_res_internal(&p->res);
		}
		send_one(p, false);
		sl->free[sl->nfree++] = p;
	}
	sl->nparked = 0;
}

int
vs_worker_run(const char *data_dir, bool upload_pool)
{
	static struct slots sl;
	struct vs_app app;
	struct vs_listener ln;
	sigset_t stopset, waitmask;
	char err[512];
	int status = 0;
	int stall_s = vs_worker_stall_seconds();

	vs_log_set_tag(upload_pool ? "verstak-upload" : "verstak-worker");
	if (!install_signals(&stopset)) {
		vs_log_error("cannot install signal handlers: %s", strerror(errno));
		return 1;
	}
	/* Blocked except while waiting for a connection (the top comment). */
	if (sigprocmask(SIG_BLOCK, &stopset, &waitmask) != 0)
		return 1;
	(void)sigdelset(&waitmask, SIGTERM);
	(void)sigdelset(&waitmask, SIGINT);
	(void)sigdelset(&waitmask, SIGQUIT);
	/* Commit combining is for pushes (combine.h), which nginx never
	 * sends this pool: its workers leave the commit table's slots to
	 * the workers that use them. */
	if (upload_pool && setenv("VERSTAK_COMBINE", "0", 1) != 0) {
		vs_log_error("cannot start: %s", strerror(errno));
		return 1;
	}
	if (!vs_app_open(&app, data_dir, true, err, sizeof(err))) {
		vs_log_error("cannot start: %s", err);
		vs_app_close(&app);
		return 1;
	}
	/* Without the shared object this worker would run at FULL and show
	 * every committed op, while the others hide the unsynced ones
	 * (writelock.h): one such worker could let a cursor pass an op a
	 * power cut takes back. */
	if (app.db.wlock.shm == NULL) {
		vs_log_error("cannot start: no shared writer queue in /dev/shm");
		vs_app_close(&app);
		return 1;
	}
	/* Pages are rendered from files: a worker that cannot load them
	 * stops here, at start, instead of failing on its first page. */
	if (vs_tpl_global() == NULL) {
		vs_log_error("cannot start: the page templates did not load");
		vs_app_close(&app);
		return 1;
	}
	if (!vs_listener_open(&ln, FCGI_LISTENSOCK_FILENO, &waitmask,
			      &stop_requested)) {
		vs_log_error("cannot start: the listening socket (fd 0): %s",
			     strerror(errno));
		vs_app_close(&app);
		return 1;
	}
	if (FCGX_Init() != 0) {
		vs_log_error("cannot initialise libfcgi");
		vs_listener_close(&ln);
		vs_app_close(&app);
		return 1;
	}
	slots_init(&sl);
	for (;;) {
		struct slot *cur;
		unsigned long deferrals;
		enum vs_conn c;
		int fd;

		c = vs_listener_next(&ln, sl.nparked == 0, &fd);
		if (c == VS_CONN_NONE) {
			settle_parked(&app, &sl);
			vs_retention_tick(&app.db, app.blobs_dir,
					  &app.cfg.eff.retention);
			continue;
		}
		if (c != VS_CONN_GOT) {
			status = c == VS_CONN_FAIL;
			break;
		}
		/* Parked answers never wait for a peer that has sent
		 * nothing yet (nginx sends at once; anything else may not). */
		if (sl.nparked > 0) {
			struct pollfd p = { .fd = fd, .events = POLLIN };

			if (poll(&p, 1, 0) != 1)
				settle_parked(&app, &sl);
		}
		cur = sl.free[--sl.nfree];
		set_stall_limit(fd, stall_s);
		cur->freq.ipcFd = fd;
		/* So that the FCGX_Finish_r inside FCGX_Accept_r leaves the
		 * descriptor open; the request's own flags replace it. */
		cur->freq.keepConnection = 1;
		if (FCGX_Accept_r(&cur->freq) < 0) {
			/* Not a request (libfcgi closed it): the next one. */
			cur->freq.ipcFd = -1;
			sl.free[sl.nfree++] = cur;
			continue;
		}
		/* Parked answers wait only for pushes queued behind them,
		 * never for a slow request of another route. */
		if (sl.nparked > 0 &&
		    !vs_route_groups_commits(
			    FCGX_GetParam("REQUEST_METHOD", cur->freq.envp),
			    FCGX_GetParam("REQUEST_URI", cur->freq.envp)))
			settle_parked(&app, &sl);
		deferrals = vs_db_deferrals(&app.db);
		app.db.may_defer = !upload_pool;
		handle_one(&app, cur, upload_pool);
		app.db.may_defer = false;
		if (vs_db_deferrals(&app.db) != deferrals) {
			sl.parked[sl.nparked++] = cur;
			if (sl.nparked == PARK_MAX) {
				settle_parked(&app, &sl);
				vs_retention_tick(&app.db, app.blobs_dir,
						  &app.cfg.eff.retention);
			}
			continue;
		}
		send_one(cur, upload_pool);
		sl.free[sl.nfree++] = cur;
		/* The answer is out: upkeep here delays no client (D14),
		 * unless answers are parked (they get theirs after it). */
		if (sl.nparked == 0)
			vs_retention_tick(&app.db, app.blobs_dir,
					  &app.cfg.eff.retention);
	}
	/* Stopping: what is parked was committed; answer it first. */
	settle_parked(&app, &sl);
	if (n_settles > 0)
		vs_log_info("group commit: %llu answers held back, sent after %llu"
			    " syncs", n_parked, n_settles);
	slots_free(&sl);
	vs_listener_close(&ln);
	vs_tpl_global_free();
	vs_app_close(&app);
	return status;
}
