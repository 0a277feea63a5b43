/*
 * smtp.c - one SMTP submission in a child process (see smtp.h).
 *
 * Owns: the libesmtp session (server, envelope, message callback, phase
 * timeouts, SASL through auth-client), the TLS connection for both TLS
 * modes (connect with timeout, STARTTLS negotiation, OpenSSL handshake
 * verified against smtp_host, SNI) and the loopback relay that carries
 * libesmtp's SMTP over it, the reasons reported for a failure, and the
 * process plumbing: a supervised child for synchronous sends and a
 * detached (double-fork) sender for the background.
 *
 * Must never: run libesmtp in the caller's process, return from a child
 * into the caller's code (children end with _exit and never touch the
 * inherited SQLite connection), log the message or a password, send a
 * password over plaintext to a host that is not loopback, continue
 * without TLS when TLS was asked for, or accept a certificate OpenSSL
 * did not verify for smtp_host.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* close_range, pipe2, accept4 */
#endif
#include "smtp.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <auth-client.h>
#include <libesmtp.h>

/* The child writes one result line to the supervisor ("OK" or
 * "ERR <reason>"); reasons are short and never hold a secret. */
#define RESULT_MAX 400
/* The fd the dialogue child writes its result line to. */
#define RESULT_FD 3

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static void
wipe_free(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void
vs_smtp_job_free(struct vs_smtp_job *job)
{
	free(job->host);
	free(job->port);
	free(job->user);
	wipe_free(job->pass);
	free(job->security);
	free(job->from);
	free(job->to);
	/* The message carries a token: wipe it too. */
	wipe_free(job->message);
	free(job->what);
	memset(job, 0, sizeof(*job));
}

unsigned
vs_smtp_deadline_s(void)
{
	const char *v = getenv(VS_SMTP_TIMEOUT_ENV);
	char *end;
	long n;

	if (v == NULL || *v == '\0')
		return VS_SMTP_DEADLINE_S;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || n < 1 || n > VS_SMTP_DEADLINE_S)
		return VS_SMTP_DEADLINE_S;
	return (unsigned)n;
}

/* 10 s, and always a second below the deadline so that a short test
 * deadline still reports the connect timeout as such. */
static unsigned
connect_timeout_s(void)
{
	unsigned d = vs_smtp_deadline_s();

	d = d > 1 ? d - 1 : 1;
	return d < VS_SMTP_CONNECT_S ? d : VS_SMTP_CONNECT_S;
}

bool
vs_smtp_host_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (host == NULL)
		return false;
	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return false;
}

static bool
host_is_ip(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 ||
	       inet_pton(AF_INET6, host, buf) == 1;
}

/* Server text goes into log lines and the CLI's answer: printable ASCII
 * only, bounded. */
static void
copy_printable(char *dst, size_t cap, const char *src)
{
	size_t n = 0;

	for (; src != NULL && *src != '\0' && n + 1 < cap; src++)
		if ((unsigned char)*src >= 0x20 && (unsigned char)*src < 0x7f)
			dst[n++] = *src;
	dst[n] = '\0';
}

enum security { SEC_NONE, SEC_STARTTLS, SEC_TLS };

/* DATA.md 6: anything but "none" and "tls" means STARTTLS required. */
static enum security
parse_security(const char *s)
{
	if (s != NULL && strcmp(s, "none") == 0)
		return SEC_NONE;
	if (s != NULL && strcmp(s, "tls") == 0)
		return SEC_TLS;
	return SEC_STARTTLS;
}

/* A host libesmtp can take as "host:port": a DNS name or an IPv4
 * literal. libesmtp splits at the first ':', so IPv6 literals cannot
 * be given to it. */
static bool
host_ok(const char *h, char *err, size_t errlen)
{
	size_t n = h != NULL ? strlen(h) : 0;

	if (n == 0) {
		snprintf(err, errlen, "no SMTP host is configured");
		return false;
	}
	if (n > 253 || strspn(h, "abcdefghijklmnopqrstuvwxyz"
			      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != n) {
		snprintf(err, errlen, "the SMTP host must be a host name or an"
			 " IPv4 address (IPv6 literals are not supported)");
		return false;
	}
	return true;
}

static bool
port_ok(const char *p, char *err, size_t errlen)
{
	char *end;
	long n;

	errno = 0;
	n = (p != NULL && *p >= '0' && *p <= '9') ? strtol(p, &end, 10) : -1;
	if (n < 1 || n > 65535 || errno != 0 || *end != '\0') {
		snprintf(err, errlen, "the SMTP port must be a number from 1"
			 " to 65535");
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* TLS context                                                        */
/* ------------------------------------------------------------------ */

/* What the TLS callbacks need; stored as the SSL_CTX's app data. */
struct tls_info {
	const char *host;
	bool host_is_ip;
	char err[160];          /* first verification failure */
};

static struct tls_info *
tls_info_of(const SSL *ssl)
{
	return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

/* Records why OpenSSL rejected the chain or the name (the handshake
 * fails right after, SSL_VERIFY_PEER). */
static int
verify_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(x,
		SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_info *ti = ssl != NULL ? tls_info_of(ssl) : NULL;

	if (!ok && ti != NULL && ti->err[0] == '\0')
		snprintf(ti->err, sizeof(ti->err), "%s",
			 X509_verify_cert_error_string(
				 X509_STORE_CTX_get_error(x)));
	return ok;
}

/* A client context that verifies the chain against the system's trust
 * store (SSL_CERT_FILE / SSL_CERT_DIR honoured) and the name against
 * smtp_host; TLS 1.2 at least. */
static SSL_CTX *
make_tls_ctx(struct tls_info *ti, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	X509_VERIFY_PARAM *param;
	int ok;

	if (ctx == NULL) {
		snprintf(err, errlen, "cannot create a TLS context");
		return NULL;
	}
	param = SSL_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_hostflags(param,
		X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
	     SSL_CTX_set_default_verify_paths(ctx) == 1 &&
	     (ti->host_is_ip ?
	      X509_VERIFY_PARAM_set1_ip_asc(param, ti->host) == 1 :
	      X509_VERIFY_PARAM_set1_host(param, ti->host, 0) == 1) &&
	     SSL_CTX_set_app_data(ctx, ti) == 1;
	if (!ok) {
		SSL_CTX_free(ctx);
		snprintf(err, errlen, "cannot set up TLS verification");
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
	return ctx;
}

/* Whether OpenSSL verified this connection for smtp_host: the chain
 * (verify result) and the name (the host/IP check is part of it). */
static bool
openssl_verified(const SSL *ssl)
{
	return ssl != NULL && SSL_get_verify_result(ssl) == X509_V_OK &&
	       SSL_get0_peer_certificate(ssl) != NULL;
}

/* One submission's state, shared by the relay set-up and the libesmtp
 * callbacks. */
struct dialogue {
	const struct vs_smtp_job *job;
	enum security sec;
	struct tls_info tls;
	bool starttls_missing;  /* D22: reported, nothing sent */
	/* AUTH progress, read off the protocol monitor. */
	bool auth_pending, auth_ok, auth_failed;
	int auth_code;
	char line[512];
	size_t linelen;
};

/* Phase timeouts a second below the deadline, so a silent server is
 * reported as such before the supervisor kills the child. */
static long
phase_timeout_ms(void)
{
	unsigned d = vs_smtp_deadline_s();

	return (long)(d > 1 ? d - 1 : 1) * 1000L;
}

/* ------------------------------------------------------------------ */
/* TLS connection: implicit TLS or STARTTLS, done here                */
/* ------------------------------------------------------------------ */

/* Connects to host:port, each address within timeout_s; a blocking
 * socket or -1 with a reason. */
static int
connect_timeout(const char *host, const char *port, unsigned timeout_s,
		char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host,
			 gai_strerror(rc));
		return -1;
	}
	snprintf(err, errlen, "cannot connect to %s:%s", host, port);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct pollfd p;
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
			    SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 &&
		    errno != EINPROGRESS)
			soerr = errno;
		p.fd = fd;
		p.events = POLLOUT;
		rc = soerr != 0 ? -1 : poll(&p, 1, (int)timeout_s * 1000);
		if (rc == 0)
			snprintf(err, errlen, "connecting to %s:%s timed out"
				 " after %u s", host, port, timeout_s);
		if (rc > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr,
					 &len) == 0 && soerr == 0 &&
		    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0) {
			freeaddrinfo(res);
			return fd;
		}
		if (soerr != 0)
			snprintf(err, errlen, "cannot connect to %s:%s: %s",
				 host, port, strerror(soerr));
		(void)close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return -1;
}

/* Bounds every blocking read and write on fd. */
static void
set_io_timeout(int fd, long ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
			      .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	/* Best effort: the supervisor's deadline bounds the child anyway. */
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* One SMTP reply read from the plaintext connection before TLS. raw
 * keeps the lines as received (the greeting is replayed to libesmtp). */
struct reply {
	int code;
	bool starttls;          /* an EHLO line says STARTTLS */
	bool overflow;          /* raw could not hold every line */
	char raw[1024];
	size_t len;
};

/* Reads one line (byte by byte: nothing after the reply may be
 * consumed, the TLS handshake follows it). */
static bool
read_line(int fd, char *line, size_t cap, size_t *len)
{
	*len = 0;
	for (;;) {
		char c;
		ssize_t n = recv(fd, &c, 1, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = 0;	/* closed, not timed out */
		if (n <= 0)
			return false;
		if (*len + 1 < cap)
			line[(*len)++] = c;
		if (c == '\n') {
			line[*len] = '\0';
			return true;
		}
	}
}

static bool
read_reply(int fd, const char *host, struct reply *r, char *err,
	   size_t errlen)
{
	char line[512];
	size_t n;

	memset(r, 0, sizeof(*r));
	for (;;) {
		if (!read_line(fd, line, sizeof(line), &n)) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				snprintf(err, errlen, "%s did not answer within"
					 " %ld s (timed out)", host,
					 phase_timeout_ms() / 1000);
			else
				snprintf(err, errlen, "%s closed the"
					 " connection", host);
			return false;
		}
		if (n < 4 || line[0] < '2' || line[0] > '5') {
			snprintf(err, errlen, "%s sent a malformed reply", host);
			return false;
		}
		r->code = atoi(line);
		if (strncasecmp(line + 4, "STARTTLS", 8) == 0 &&
		    strchr(" \r\n", line[12]) != NULL)
			r->starttls = true;
		if (r->len + n < sizeof(r->raw)) {
			memcpy(r->raw + r->len, line, n);
			r->len += n;
		} else {
			r->overflow = true;
		}
		if (line[3] != '-')
			break;
	}
	/* A reply too long to keep is replayed as its bare code. */
	if (r->overflow)
		r->len = (size_t)snprintf(r->raw, sizeof(r->raw), "%d ok\r\n",
					  r->code);
	return true;
}

static bool
send_line(int fd, const char *line)
{
	return vs_write_all(fd, line, strlen(line));
}

/* The name this client gives in EHLO: the node name, as libesmtp. */
static void
ehlo_name(char *buf, size_t cap)
{
	struct utsname u;

	if (uname(&u) == 0 && u.nodename[0] != '\0' &&
	    strspn(u.nodename, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQR"
		   "STUVWXYZ0123456789.-") == strlen(u.nodename))
		snprintf(buf, cap, "%s", u.nodename);
	else
		snprintf(buf, cap, "localhost");
}

/* STARTTLS on the plaintext connection (D22): greeting, EHLO, STARTTLS
 * must be offered and accepted, else the session ends here and nothing
 * is sent. The greeting is kept for libesmtp, which will send its own
 * EHLO over TLS, as RFC 3207 requires after STARTTLS. */
static bool
starttls_negotiate(int fd, const char *host, struct reply *greeting,
		   bool *missing, char *err, size_t errlen)
{
	struct reply r;
	char name[300], cmd[320];

	if (!read_reply(fd, host, greeting, err, errlen))
		return false;
	if (greeting->code != 220) {
		snprintf(err, errlen, "%s refused the session (%d)", host,
			 greeting->code);
		return false;
	}
	ehlo_name(name, sizeof(name));
	snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", name);
	if (!send_line(fd, cmd) || !read_reply(fd, host, &r, err, errlen))
		return false;
	if (r.code != 250 || !r.starttls) {
		*missing = true;
		(void)send_line(fd, "QUIT\r\n");
		snprintf(err, errlen, "%s does not offer STARTTLS, which"
			 " security \"starttls\" requires; nothing was sent",
			 host);
		return false;
	}
	if (!send_line(fd, "STARTTLS\r\n") ||
	    !read_reply(fd, host, &r, err, errlen))
		return false;
	if (r.code != 220) {
		snprintf(err, errlen, "%s refused STARTTLS (%d); nothing was"
			 " sent", host, r.code);
		return false;
	}
	return true;
}

/* The TLS handshake on the connected socket, verified for smtp_host
 * (SSL_VERIFY_PEER with the host or IP set on the context). */
static SSL *
tls_handshake(int fd, SSL_CTX *ctx, struct tls_info *ti, char *err,
	      size_t errlen)
{
	SSL *ssl = SSL_new(ctx);
	int rc, e;

	/* SNI: many servers choose their certificate by it (never for an
	 * IP address, RFC 6066). */
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 ||
	    (!ti->host_is_ip && SSL_set_tlsext_host_name(ssl, ti->host) != 1)) {
		snprintf(err, errlen, "cannot create the TLS connection");
		SSL_free(ssl);
		return NULL;
	}
	rc = SSL_connect(ssl);
	if (rc != 1 || !openssl_verified(ssl)) {
		e = rc != 1 ? SSL_get_error(ssl, rc) : SSL_ERROR_NONE;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			/* SO_RCVTIMEO/SO_SNDTIMEO ran out mid-handshake. */
			snprintf(err, errlen, "%s did not complete the TLS"
				 " handshake within %ld s (timed out)",
				 ti->host, phase_timeout_ms() / 1000);
		else if (ti->err[0] != '\0')
			snprintf(err, errlen, "TLS certificate verification"
				 " failed for %s: %s", ti->host, ti->err);
		else
			snprintf(err, errlen, "TLS handshake with %s failed",
				 ti->host);
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

/* ------------------------------------------------------------------ */
/* Loopback relay: libesmtp speaks SMTP, this thread does the TLS      */
/* ------------------------------------------------------------------ */

/*
 * libesmtp 1.1 has no implicit TLS, and its STARTTLS deadlocks against
 * TLS 1.3 servers: the NewSessionTicket records that arrive after the
 * handshake make it wait for the EHLO reply before it has sent EHLO.
 * So this module owns the TLS connection and relays the plaintext to
 * libesmtp over a loopback socket that only this process may use.
 */
struct relay {
	SSL *ssl;
	int tls_fd;             /* to the server, TLS on top */
	int listen_fd;          /* 127.0.0.1:port for libesmtp */
	int stop[2];            /* main thread -> relay: give up */
	char server[32];        /* "127.0.0.1:port" for smtp_set_server */
	struct reply greeting;  /* STARTTLS: replayed to libesmtp */
	pthread_t thread;
	bool running;
};

/* The accepted connection must come from a socket of this very process
 * (libesmtp's): another local user racing for the port would otherwise
 * get to talk through our TLS session. */
static bool
peer_is_ours(int acc, int listen_fd)
{
	struct sockaddr_in peer, mine, sa;
	socklen_t len = sizeof(peer);
	long max = sysconf(_SC_OPEN_MAX);

	if (getpeername(acc, (struct sockaddr *)&peer, &len) != 0 ||
	    peer.sin_family != AF_INET)
		return false;
	len = sizeof(mine);
	if (getsockname(listen_fd, (struct sockaddr *)&mine, &len) != 0)
		return false;
	if (max < 0 || max > 65536)
		max = 65536;
	for (int fd = 0; fd < max; fd++) {
		if (fd == acc || fd == listen_fd)
			continue;
		len = sizeof(sa);
		if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
		    sa.sin_family != AF_INET || sa.sin_port != peer.sin_port ||
		    sa.sin_addr.s_addr != peer.sin_addr.s_addr)
			continue;
		len = sizeof(sa);
		if (getpeername(fd, (struct sockaddr *)&sa, &len) == 0 &&
		    sa.sin_port == mine.sin_port)
			return true;
	}
	return false;
}

/* Waits for fd to become ready for events (phase timeout). */
static bool
wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int rc;

	while ((rc = poll(&p, 1, (int)phase_timeout_ms())) < 0 &&
	       errno == EINTR)
		;
	return rc > 0;
}

/* SSL_write on the non-blocking socket, retried with the same
 * arguments as OpenSSL requires. */
static bool
write_tls(SSL *ssl, int fd, const char *buf, size_t n)
{
	while (n > 0) {
		size_t w = 0;
		int rc = SSL_write_ex(ssl, buf, n, &w), e;

		if (rc == 1) {
			buf += w;
			n -= w;
			continue;
		}
		e = SSL_get_error(ssl, rc);
		if (!wait_fd(fd, e == SSL_ERROR_WANT_WRITE ? POLLOUT :
			     e == SSL_ERROR_WANT_READ ? POLLIN : 0) ||
		    (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ))
			return false;
	}
	return true;
}

/* Moves every decrypted byte OpenSSL has to libesmtp. Post-handshake
 * records (session tickets) yield no data: WANT_READ, back to poll. */
static bool
drain_tls(struct relay *r, int acc)
{
	char buf[16384];

	for (;;) {
		size_t n = 0;
		int rc = SSL_read_ex(r->ssl, buf, sizeof(buf), &n), e;

		if (rc == 1) {
			if (!vs_write_all(acc, buf, n))
				return false;
			continue;
		}
		e = SSL_get_error(r->ssl, rc);
		if (e == SSL_ERROR_WANT_READ)
			return true;
		if (e != SSL_ERROR_WANT_WRITE || !wait_fd(r->tls_fd, POLLOUT))
			return false;
	}
}

/* Waits for libesmtp's connection on the loopback listener; -1 when
 * told to stop or on error. */
static int
relay_accept(struct relay *r)
{
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = r->listen_fd, .events = POLLIN },
			{ .fd = r->stop[0], .events = POLLIN },
		};
		int acc;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (p[1].revents != 0)
			return -1;
		acc = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (acc < 0)
			continue;
		if (peer_is_ours(acc, r->listen_fd))
			return acc;
		vs_log_warn("smtp: refused a foreign connection to the TLS"
			    " relay");
		(void)close(acc);
	}
}

/* Copies bytes both ways until either side ends or the main thread
 * says stop. */
static void
relay_pump(struct relay *r, int acc)
{
	char buf[16384];

	if (r->greeting.len > 0 &&
	    !vs_write_all(acc, r->greeting.raw, r->greeting.len))
		return;
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = acc, .events = POLLIN },
			{ .fd = r->tls_fd, .events = POLLIN },
			{ .fd = r->stop[0], .events = POLLIN },
		};
		ssize_t m;

		if (!drain_tls(r, acc)) {
			(void)shutdown(acc, SHUT_RDWR);
			return;
		}
		if (poll(p, 3, -1) < 0 && errno != EINTR)
			return;
		if (p[2].revents != 0)
			return;
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		m = read(acc, buf, sizeof(buf));
		if (m < 0 && errno == EINTR)
			continue;
		if (m <= 0 || !write_tls(r->ssl, r->tls_fd, buf, (size_t)m)) {
			(void)SSL_shutdown(r->ssl);
			return;
		}
	}
}

static void *
relay_main(void *arg)
{
	struct relay *r = arg;
	int acc = relay_accept(r);

	if (acc >= 0) {
		relay_pump(r, acc);
		(void)close(acc);
	}
	return NULL;
}

static bool
relay_listen(struct relay *r, char *err, size_t errlen)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (r->listen_fd < 0 ||
	    bind(r->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(r->listen_fd, 1) != 0 ||
	    getsockname(r->listen_fd, (struct sockaddr *)&sa, &len) != 0) {
		snprintf(err, errlen, "cannot open the TLS relay: %s",
			 strerror(errno));
		return false;
	}
	snprintf(r->server, sizeof(r->server), "127.0.0.1:%u",
		 (unsigned)ntohs(sa.sin_port));
	return true;
}

/* Starts the relay thread with SIGALRM blocked in it, so an alarm only
 * ever interrupts the main thread. */
static bool
relay_spawn(struct relay *r, char *err, size_t errlen)
{
	sigset_t block, old;
	int rc;

	if (pipe2(r->stop, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "cannot create a pipe: %s",
			 strerror(errno));
		return false;
	}
	if (fcntl(r->tls_fd, F_SETFL, fcntl(r->tls_fd, F_GETFL) |
		  O_NONBLOCK) != 0) {
		snprintf(err, errlen, "cannot set up the TLS relay: %s",
			 strerror(errno));
		return false;
	}
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	(void)pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = pthread_create(&r->thread, NULL, relay_main, r);
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the TLS relay: %s",
			 strerror(rc));
		return false;
	}
	r->running = true;
	return true;
}

/* Connection, STARTTLS when asked, handshake, relay. */
static bool
relay_start(struct relay *r, struct dialogue *d, SSL_CTX *ctx, char *err,
	    size_t errlen)
{
	const struct vs_smtp_job *job = d->job;

	char label[300];

	r->tls_fd = connect_timeout(job->host, job->port, connect_timeout_s(),
				    err, errlen);
	if (r->tls_fd < 0)
		return false;
	set_io_timeout(r->tls_fd, phase_timeout_ms());
	snprintf(label, sizeof(label), "%s:%s", job->host, job->port);
	if (d->sec == SEC_STARTTLS &&
	    !starttls_negotiate(r->tls_fd, label, &r->greeting,
				&d->starttls_missing, err, errlen))
		return false;
	r->ssl = tls_handshake(r->tls_fd, ctx, &d->tls, err, errlen);
	return r->ssl != NULL && relay_listen(r, err, errlen) &&
	       relay_spawn(r, err, errlen);
}

static void
relay_stop(struct relay *r)
{
	if (r->running) {
		(void)vs_write_all(r->stop[1], "x", 1);
		(void)pthread_join(r->thread, NULL);
	}
	if (r->ssl != NULL)
		SSL_free(r->ssl);
	for (int i = 0; i < 2; i++)
		if (r->stop[i] >= 0)
			(void)close(r->stop[i]);
	if (r->listen_fd >= 0)
		(void)close(r->listen_fd);
	if (r->tls_fd >= 0)
		(void)close(r->tls_fd);
}

/* ------------------------------------------------------------------ */
/* The libesmtp dialogue                                              */
/* ------------------------------------------------------------------ */

/* Connect timeout for libesmtp's own blocking connect() (security
 * "none"): SIGALRM without SA_RESTART makes connect() fail with EINTR;
 * the event callback cancels the alarm once connected. */
static volatile sig_atomic_t g_connected;
static volatile sig_atomic_t g_connect_timeouts;
static unsigned g_connect_s;

static void
on_alarm(int sig)
{
	(void)sig;
	if (!g_connected) {
		g_connect_timeouts++;
		alarm(g_connect_s);	/* the next address gets its own */
	}
}

static void
on_event(smtp_session_t s, int ev, void *arg, ...)
{
	(void)s;
	(void)arg;
	if (ev == SMTP_EV_CONNECT) {
		g_connected = 1;
		alarm(0);
	}
}

/* One complete reply line from the server while AUTH is under way. */
static void
auth_reply_line(struct dialogue *d, const char *line)
{
	int code;

	if (strlen(line) < 4 || line[3] == '-')
		return;		/* continuation of a multi-line reply */
	code = atoi(line);
	if (code == 334)
		return;		/* challenge: the exchange goes on */
	d->auth_pending = false;
	if (code == 235) {
		d->auth_ok = true;
	} else {
		d->auth_failed = true;
		d->auth_code = code;
	}
}

/* The protocol monitor: only watches for AUTH and its outcome. The
 * written data holds the credentials, so nothing of it is kept. */
static void
on_monitor(const char *buf, int len, int writing, void *arg)
{
	struct dialogue *d = arg;

	if (writing == SMTP_CB_WRITING) {
		if (len >= 5 && strncasecmp(buf, "AUTH ", 5) == 0)
			d->auth_pending = true;
		return;
	}
	if (writing != SMTP_CB_READING || !d->auth_pending)
		return;
	for (int i = 0; i < len; i++) {
		if (buf[i] == '\n') {
			d->line[d->linelen] = '\0';
			auth_reply_line(d, d->line);
			d->linelen = 0;
		} else if (d->linelen + 1 < sizeof(d->line)) {
			d->line[d->linelen++] = buf[i];
		}
	}
}

/* The message callback: libesmtp rewinds with len == NULL, then reads
 * until *len is 0. libesmtp frees *ctx. */
static const char *
on_message(void **ctx, int *len, void *arg)
{
	const char *msg = arg;
	size_t *pos = *ctx;
	size_t total = strlen(msg);

	if (pos == NULL) {
		pos = malloc(sizeof(*pos));
		if (pos == NULL) {
			if (len != NULL)
				*len = 0;
			return NULL;
		}
		*ctx = pos;
		*pos = 0;
	}
	if (len == NULL) {
		*pos = 0;
		return NULL;
	}
	*len = (int)(total - *pos);
	*pos = total;
	return msg + total - (size_t)*len;
}

/* SASL asks for the user and the password. */
static int
on_auth_interact(auth_client_request_t req, char **result, int fields,
		 void *arg)
{
	const struct vs_smtp_job *job = arg;

	for (int i = 0; i < fields; i++) {
		if (req[i].flags & AUTH_USER)
			result[i] = job->user;
		else if (req[i].flags & AUTH_PASS)
			result[i] = job->pass;
		else
			return 0;	/* realms etc.: not supported */
	}
	return 1;
}

static bool
set_timeouts(smtp_session_t s)
{
	long ms = phase_timeout_ms();
	static const int which[] = {
		Timeout_GREETING, Timeout_ENVELOPE, Timeout_DATA,
		Timeout_TRANSFER, Timeout_DATA2,
	};

	for (size_t i = 0; i < sizeof(which) / sizeof(which[0]); i++)
		if (smtp_set_timeout(s, which[i] |
				     Timeout_OVERRIDE_RFC2822_MINIMUM, ms) == 0)
			return false;
	return true;
}

/* The reason for a session that did not deliver, most specific first. */
static void
explain(const struct dialogue *d, smtp_message_t msg, int started,
	long elapsed_ms, char *err, size_t errlen)
{
	const smtp_status_t *st = smtp_message_transfer_status(msg);
	const smtp_status_t *rp = smtp_reverse_path_status(msg);
	long phase_ms = phase_timeout_ms();
	char text[200], ebuf[128];

	if (g_connect_timeouts > 0 && !g_connected) {
		snprintf(err, errlen, "connecting to %s:%s timed out after"
			 " %u s", d->job->host, d->job->port, g_connect_s);
	} else if (d->auth_failed) {
		snprintf(err, errlen, "authentication as the configured user"
			 " failed (server reply %d)", d->auth_code);
	} else if (rp != NULL && rp->code >= 400) {
		copy_printable(text, sizeof(text), rp->text);
		snprintf(err, errlen, "the server refused the sender: %d %s",
			 rp->code, text);
	} else if (st != NULL && st->code >= 400) {
		copy_printable(text, sizeof(text), st->text);
		snprintf(err, errlen, "the server refused the message: %d %s",
			 st->code, text);
	} else if (smtp_errno() == SMTP_ERR_DROPPED_CONNECTION &&
		   elapsed_ms + 200 >= phase_ms) {
		/* libesmtp reports its own phase timeout as a drop. */
		snprintf(err, errlen, "%s:%s did not answer within %ld s"
			 " (timed out)", d->job->host, d->job->port,
			 phase_ms / 1000);
	} else if (!started || smtp_errno() != 0) {
		copy_printable(text, sizeof(text),
			       smtp_strerror(smtp_errno(), ebuf, sizeof(ebuf)));
		snprintf(err, errlen, "SMTP session with %s:%s failed: %s",
			 d->job->host, d->job->port,
			 text[0] != '\0' ? text : "unknown error");
	} else {
		snprintf(err, errlen, "the server did not accept the message");
	}
}

/* Server, callbacks, envelope and message: libesmtp calls that only
 * fail on a programming error or out of memory. libesmtp's own STARTTLS
 * stays off: TLS, when asked for, is the relay's. */
static bool
build_session(smtp_session_t s, struct dialogue *d, const char *server,
	      auth_context_t auth, smtp_message_t *msgp)
{
	const struct vs_smtp_job *job = d->job;
	smtp_message_t msg;

	if (smtp_set_server(s, server) == 0 || !set_timeouts(s) ||
	    smtp_set_eventcb(s, on_event, d) == 0 ||
	    smtp_set_monitorcb(s, on_monitor, d, 0) == 0 ||
	    smtp_starttls_enable(s, Starttls_DISABLED) == 0)
		return false;
	if (auth != NULL && smtp_auth_set_context(s, auth) == 0)
		return false;
	msg = smtp_add_message(s);
	if (msg == NULL || smtp_set_reverse_path(msg, job->from) == 0 ||
	    smtp_add_recipient(msg, job->to) == NULL ||
	    smtp_set_messagecb(msg, on_message, job->message) == 0)
		return false;
	*msgp = msg;
	return true;
}

/* AUTH set-up: SASL with our credentials. Plaintext mechanisms (PLAIN,
 * LOGIN) are allowed: the channel is TLS, or loopback (precheck). */
static auth_context_t
make_auth(const struct vs_smtp_job *job)
{
	auth_context_t a;

	auth_client_init();
	a = auth_create_context();
	if (a == NULL)
		return NULL;
	if (auth_set_mechanism_flags(a, AUTH_PLUGIN_PLAIN, 0) == 0 ||
	    auth_set_interact_cb(a, on_auth_interact, (void *)job) == 0) {
		(void)auth_destroy_context(a);
		return NULL;
	}
	return a;
}

static bool
install_alarm(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* no SA_RESTART: connect() must give up */
	g_connected = 0;
	g_connect_timeouts = 0;
	g_connect_s = connect_timeout_s();
	return sigaction(SIGALRM, &sa, NULL) == 0;
}

/* Runs libesmtp against server ("host:port" or the relay). */
static bool
run_session(struct dialogue *d, const char *server, char *err,
	    size_t errlen)
{
	const struct vs_smtp_job *job = d->job;
	auth_context_t auth = NULL;
	smtp_session_t s = smtp_create_session();
	smtp_message_t msg = NULL;
	const smtp_status_t *st;
	bool ok = false;
	uint64_t t0;
	int started;

	if (job->user[0] != '\0' && (auth = make_auth(job)) == NULL) {
		snprintf(err, errlen, "cannot set up SMTP authentication");
		goto out;
	}
	if (s == NULL || !build_session(s, d, server, auth, &msg) ||
	    !install_alarm()) {
		snprintf(err, errlen, "cannot set up the SMTP session");
		goto out;
	}
	t0 = vs_mono_ms();
	alarm(g_connect_s);
	started = smtp_start_session(s);
	alarm(0);
	st = smtp_message_transfer_status(msg);
	ok = started && st != NULL && st->code >= 200 && st->code < 300;
	if (!ok)
		explain(d, msg, started, (long)(vs_mono_ms() - t0), err, errlen);
	else if (job->user[0] != '\0' && !d->auth_ok)
		vs_log_warn("smtp: %s:%s accepted the mail without"
			    " authentication", job->host, job->port);
out:
	if (s != NULL)
		(void)smtp_destroy_session(s);
	if (auth != NULL)
		(void)auth_destroy_context(auth);
	return ok;
}

/* Checks the settings before anything touches the network. */
static bool
precheck(const struct dialogue *d, char *err, size_t errlen)
{
	const struct vs_smtp_job *job = d->job;

	if (!host_ok(job->host, err, errlen) ||
	    !port_ok(job->port, err, errlen))
		return false;
	if (job->from[0] == '\0' || job->to[0] == '\0') {
		snprintf(err, errlen, "sender or recipient missing");
		return false;
	}
	if (d->sec == SEC_NONE && job->user[0] != '\0' &&
	    !vs_smtp_host_is_loopback(job->host)) {
		snprintf(err, errlen, "refusing to send the SMTP password"
			 " unencrypted to %s (security \"none\" allows"
			 " authentication only to a loopback host)", job->host);
		return false;
	}
	return true;
}

/* The whole dialogue, in the current (child) process. */
static bool
dialogue(const struct vs_smtp_job *job, char *err, size_t errlen)
{
	struct dialogue d;
	struct relay r = { .tls_fd = -1, .listen_fd = -1, .stop = { -1, -1 } };
	char server[300];
	SSL_CTX *ctx = NULL;
	bool ok = false;

	memset(&d, 0, sizeof(d));
	d.job = job;
	d.sec = parse_security(job->security);
	d.tls.host = job->host;
	d.tls.host_is_ip = host_is_ip(job->host);
	if (!precheck(&d, err, errlen))
		return false;
	snprintf(server, sizeof(server), "%s:%s", job->host, job->port);
	if (d.sec != SEC_NONE) {
		ctx = make_tls_ctx(&d.tls, err, errlen);
		if (ctx == NULL || !relay_start(&r, &d, ctx, err, errlen))
			goto out;
		snprintf(server, sizeof(server), "%s", r.server);
	}
	ok = run_session(&d, server, err, errlen);
out:
	relay_stop(&r);
	SSL_CTX_free(ctx);
	return ok;
}

/* ------------------------------------------------------------------ */
/* Processes                                                          */
/* ------------------------------------------------------------------ */

/* A fresh start for a child of a worker or CLI: default signal
 * handling (the worker's handlers jump into its accept loop), nothing
 * blocked, SIGPIPE ignored (a closed socket must not kill the sender),
 * /dev/null on stdin/stdout and no other inherited descriptor except
 * stderr (the log) and keep_fd, which ends up as RESULT_FD when
 * keep_fd >= 0. The parent's SQLite file descriptors close with the
 * rest; this process never calls SQLite. */
static void
child_reset(int keep_fd)
{
	struct sigaction sa;
	sigset_t none;
	int null_fd;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);

	if (keep_fd >= 0 && keep_fd != RESULT_FD) {
		if (dup2(keep_fd, RESULT_FD) < 0)
			_exit(3);
	}
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd >= 0) {
		(void)dup2(null_fd, STDIN_FILENO);
		(void)dup2(null_fd, STDOUT_FILENO);
	}
	(void)close_range(keep_fd >= 0 ? RESULT_FD + 1 : RESULT_FD, ~0U, 0);
}

/* The dialogue child: run it, write the result line, _exit. */
static void __attribute__((noreturn))
dialogue_child(const struct vs_smtp_job *job, int result_fd)
{
	char err[RESULT_MAX - 8], line[RESULT_MAX];
	bool ok;
	int n;

	child_reset(result_fd);
	err[0] = '\0';
	ok = dialogue(job, err, sizeof(err));
	n = snprintf(line, sizeof(line), ok ? "OK\n" : "ERR %s\n", err);
	if (n > 0)
		(void)vs_write_all(RESULT_FD, line, (size_t)n);
	_exit(ok ? 0 : 1);
}

/* Reads the child's result line until EOF or the deadline into buf
 * (always NUL-terminated). Returns the bytes read, -1 on timeout. */
static ssize_t
read_result(int fd, char *buf, size_t cap, uint64_t deadline)
{
	size_t len = 0;
	ssize_t ret = 0;

	for (;;) {
		uint64_t now = vs_mono_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int rc;

		if (now >= deadline) {
			ret = -1;
			break;
		}
		rc = poll(&p, 1, (int)(deadline - now));
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0) {
			ret = rc == 0 ? -1 : 0;
			break;
		}
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (len += (size_t)n) >= cap - 1)
			break;
	}
	buf[len] = '\0';
	return ret < 0 ? -1 : (ssize_t)len;
}

static void
reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* Interprets the result line of a child. */
static bool
parse_result(const char *buf, char *err, size_t errlen)
{
	if (strncmp(buf, "OK", 2) == 0)
		return true;
	if (strncmp(buf, "ERR ", 4) == 0) {
		copy_printable(err, errlen, buf + 4);
		return false;
	}
	snprintf(err, errlen, "the SMTP sender ended without a result");
	return false;
}

bool
vs_smtp_send(const struct vs_smtp_job *job, char *err, size_t errlen)
{
	unsigned deadline_s = vs_smtp_deadline_s();
	char buf[RESULT_MAX];
	int pfd[2];
	pid_t pid;
	ssize_t n;

	if (pipe2(pfd, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "cannot create a pipe: %s",
			 strerror(errno));
		return false;
	}
	pid = fork();
	if (pid < 0) {
		snprintf(err, errlen, "cannot fork: %s", strerror(errno));
		(void)close(pfd[0]);
		(void)close(pfd[1]);
		return false;
	}
	if (pid == 0) {
		(void)close(pfd[0]);
		dialogue_child(job, pfd[1]);
	}
	(void)close(pfd[1]);
	n = read_result(pfd[0], buf, sizeof(buf),
			vs_mono_ms() + (uint64_t)deadline_s * 1000u);
	(void)close(pfd[0]);
	if (n < 0) {
		/* D21: the whole dialogue is bounded, whatever it waits on. */
		(void)kill(pid, SIGKILL);
		reap(pid);
		snprintf(err, errlen, "no answer from %s:%s within %u s"
			 " (timed out)", job->host, job->port, deadline_s);
		return false;
	}
	reap(pid);
	return parse_result(buf, err, errlen);
}

/* The detached sender: supervises one dialogue and logs the outcome. */
static void __attribute__((noreturn))
detached_sender(const struct vs_smtp_job *job)
{
	char err[RESULT_MAX];

	child_reset(-1);
	/* Shows in ps/top; the command line stays the worker's. */
	(void)prctl(PR_SET_NAME, "vs-mail-sender", 0, 0, 0);
	err[0] = '\0';
	if (vs_smtp_send(job, err, sizeof(err)))
		vs_log_info("mail (%s) to %s sent via %s:%s", job->what,
			    job->to, job->host, job->port);
	else
		vs_log_error("mail (%s) to %s not sent: %s", job->what,
			     job->to, err);
	_exit(0);
}

bool
vs_smtp_send_detached(const struct vs_smtp_job *job)
{
	pid_t pid, done;
	int status = 0;

	pid = fork();
	if (pid < 0) {
		vs_log_error("mail (%s) to %s not sent: cannot fork: %s",
			     job->what, job->to, strerror(errno));
		return false;
	}
	if (pid == 0) {
		/* The intermediate child: a new session, then the sender is
		 * orphaned at once, so no zombie stays with the caller. */
		pid_t grandchild;

		(void)setsid();
		grandchild = fork();
		if (grandchild == 0)
			detached_sender(job);
		_exit(grandchild < 0 ? 1 : 0);
	}
	while ((done = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	/* ECHILD: the caller reaps children automatically (SIGCHLD
	 * ignored); the intermediate child exits at once either way. */
	if (done == pid && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
		vs_log_error("mail (%s) to %s not sent: cannot start the"
			     " sender", job->what, job->to);
		return false;
	}
	return true;
}
