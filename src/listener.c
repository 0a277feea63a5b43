/*
 * listener.c - see listener.h.
 *
 * Why the worker accepts by itself instead of in libfcgi: to take "the
 * next connection, if one is already queued" (worker.c parks answers
 * while it does), accept must not block, and the socket is shared by
 * every worker of the pool, so its O_NONBLOCK is too: every worker waits
 * in epoll instead of in accept. libfcgi then gets the accepted
 * descriptor (worker.c).
 */
#include "listener.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* How long a worker pauses when accept fails for want of descriptors or
 * memory: the connection stays queued, so retrying at once would spin. */
#define OUT_OF_PAUSE_MS 100
/* At most one warning about it per this many milliseconds. */
#define OUT_OF_WARN_MS 10000

static bool parse_allowed(struct vs_listener *l, const char *list);

bool
vs_listener_open(struct vs_listener *l, int fd, const sigset_t *waitmask,
		 volatile sig_atomic_t *stop)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
				  .data.fd = fd };
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	const char *addrs = getenv("FCGI_WEB_SERVER_ADDRS");
	int flags;

	memset(l, 0, sizeof(*l));
	l->fd = fd;
	l->epfd = -1;
	l->spare = -1;
	l->waitmask = *waitmask;
	l->stop = stop;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return false;
	l->inet = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
	if (l->inet && addrs != NULL && *addrs != '\0' &&
	    !parse_allowed(l, addrs))
		goto fail;
	l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (l->spare < 0)
		goto fail;
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
		goto fail;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
		goto fail;
	return true;
fail:
	vs_listener_close(l);
	return false;
}

void
vs_listener_close(struct vs_listener *l)
{
	if (l->epfd >= 0)
		(void)close(l->epfd);
	l->epfd = -1;
	if (l->spare >= 0)
		(void)close(l->spare);
	l->spare = -1;
	free(l->allowed);
	l->allowed = NULL;
}

static bool
stop_pending(const struct vs_listener *l)
{
	sigset_t p;

	if (*l->stop)
		return true;
	if (sigpending(&p) != 0)
		return false;
	return sigismember(&p, SIGTERM) == 1 || sigismember(&p, SIGINT) == 1 ||
	       sigismember(&p, SIGQUIT) == 1;
}

/* One entry of the allow list: IPv4 as inet_aton reads it (what
 * libfcgi's inet_addr accepted, short forms included), or IPv6. */
static bool
parse_entry(const char *text, struct vs_listener_addr *out)
{
	struct in_addr v4;

	memset(out, 0, sizeof(*out));
	if (inet_aton(text, &v4) != 0) {
		out->family = AF_INET;
		memcpy(out->a, &v4, 4);
		return true;
	}
	if (inet_pton(AF_INET6, text, out->a) == 1) {
		out->family = AF_INET6;
		return true;
	}
	return false;
}

/* Parses FCGI_WEB_SERVER_ADDRS (comma-separated; blanks and empty
 * entries ignored). An entry that is no address fails the start, where
 * libfcgi silently ignored it: a typo must not open the socket to all. */
static bool
parse_allowed(struct vs_listener *l, const char *list)
{
	int cap = 1;

	for (const char *p = list; *p != '\0'; p++)
		cap += *p == ',';
	l->allowed = calloc((size_t)cap, sizeof(*l->allowed));
	if (l->allowed == NULL)
		return false;
	for (const char *p = list;;) {
		size_t len = strcspn(p, ",");
		const char *b = p, *e = p + len;
		char entry[INET6_ADDRSTRLEN + 8];

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > b) {
			if ((size_t)(e - b) >= sizeof(entry))
				goto bad;
			memcpy(entry, b, (size_t)(e - b));
			entry[e - b] = '\0';
			if (!parse_entry(entry, &l->allowed[l->nallowed]))
				goto bad;
			l->nallowed++;
		}
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	if (l->nallowed > 0)
		return true;
bad:
	vs_log_error("FCGI_WEB_SERVER_ADDRS: not a list of addresses: %s",
		     list);
	errno = EINVAL;
	return false;
}

/* The peer as an allow-list address (IPv4-mapped IPv6 as IPv4) and as
 * text for the log. */
static void
peer_of(const struct sockaddr_storage *ss, struct vs_listener_addr *a,
	char *text, size_t size)
{
	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		a->family = AF_INET;
		memcpy(a->a, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a6 =
			&((const struct sockaddr_in6 *)ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			a->family = AF_INET;
			memcpy(a->a, &a6->s6_addr[12], 4);
		} else {
			a->family = AF_INET6;
			memcpy(a->a, a6, 16);
		}
	}
	if (a->family == 0 ||
	    inet_ntop(a->family, a->a, text, (socklen_t)size) == NULL)
		(void)snprintf(text, size, "?");
}

static bool
peer_allowed(struct vs_listener *l, const struct sockaddr_storage *ss)
{
	struct vs_listener_addr a;
	char text[INET6_ADDRSTRLEN];
	long long now;

	if (l->allowed == NULL)
		return true;
	peer_of(ss, &a, text, sizeof(text));
	for (int i = 0; i < l->nallowed; i++)
		if (a.family == l->allowed[i].family &&
		    memcmp(a.a, l->allowed[i].a, a.family == AF_INET ? 4 : 16) == 0)
			return true;
	now = vs_mono_ms();
	if (l->refused_ms == 0 || now - l->refused_ms >= OUT_OF_WARN_MS) {
		vs_log_warn("refused a FastCGI connection from %s: not in"
			    " FCGI_WEB_SERVER_ADDRS", text);
		l->refused_ms = now;
	}
	return false;
}

/* TCP: what libfcgi's accept did. False: the connection was refused. */
static bool
inet_accepted(struct vs_listener *l, int fd, const struct sockaddr_storage *ss)
{
	int one = 1;

	if (!peer_allowed(l, ss)) {
		(void)close(fd);
		return false;
	}
	/* Answers go out in several records: no Nagle delay between them. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		vs_log_warn("cannot set TCP_NODELAY: %s", strerror(errno));
	return true;
}

/* Out of descriptors or memory. Linux checks for a free descriptor
 * before it looks at the queue, so accept fails so whether a connection
 * waits or not. Descriptors: the spare one is given up to take the
 * connection, which is closed at once (nginx answers 502 at once instead
 * of waiting: EPOLLEXCLUSIVE woke only this worker), and taken back;
 * false when nothing was queued, and the caller waits for a connection.
 * Memory: a pause, then true (try again). At most one warning per 10 s. */
static bool
out_of(struct vs_listener *l, int err)
{
	struct timespec t = { 0, OUT_OF_PAUSE_MS * 1000000L };
	long long now = vs_mono_ms();
	bool fds = (err == EMFILE || err == ENFILE) && l->spare >= 0;

	if (l->warned_ms == 0 || now - l->warned_ms >= OUT_OF_WARN_MS) {
		vs_log_warn("accept: %s; %s", strerror(err), fds ?
			    "closing connections until descriptors are back" :
			    "pausing and trying again");
		l->warned_ms = now;
	}
	if (fds) {
		int fd, e;

		(void)close(l->spare);
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		e = errno;
		if (fd >= 0)
			(void)close(fd);
		l->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd >= 0)
			return true;
		if (e == EAGAIN || e == EWOULDBLOCK)
			return false;
	}
	(void)ppoll(NULL, 0, &t, &l->waitmask);
	return true;
}

enum vs_conn
vs_listener_next(struct vs_listener *l, bool may_wait, int *fd)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct epoll_event ev;

		if (stop_pending(l))
			return VS_CONN_STOP;
		*fd = accept4(l->fd, (struct sockaddr *)&ss, &len,
			      SOCK_CLOEXEC);
		if (*fd >= 0) {
			if (l->inet && !inet_accepted(l, *fd, &ss))
				continue;
			return VS_CONN_GOT;
		}
		switch (errno) {
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			break;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
		/* the network's, on TCP sockets (what libfcgi retried) */
		case ECONNRESET:
		case ETIMEDOUT:
		case EHOSTUNREACH:
		case ENETUNREACH:
		case ENETDOWN:
		case EHOSTDOWN:
		case ENONET:
		case ENOPROTOOPT:
		case EOPNOTSUPP:
		case EPERM:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			/* With answers parked, their settle frees some. */
			if (!may_wait)
				return VS_CONN_NONE;
			if (out_of(l, errno))
				continue;
			break;	/* none queued: wait for one */
		default:
			vs_log_error("accept failed: %s", strerror(errno));
			return VS_CONN_FAIL;
		}
		if (!may_wait)
			return VS_CONN_NONE;
		if (epoll_pwait(l->epfd, &ev, 1, -1, &l->waitmask) < 0 &&
		    errno != EINTR) {
			vs_log_error("epoll_pwait failed: %s", strerror(errno));
			return VS_CONN_FAIL;
		}
	}
}
