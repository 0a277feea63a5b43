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
#include <time.h>
#include <unistd.h>

/* How long a worker pauses when accept fails for want of descriptors or
 * memory: the connection stays queued, so retrying at once would spin. */
#define OUT_OF_PAUSE_MS 100
/* At most one warning about it per this many milliseconds. */
#define OUT_OF_WARN_MS 10000

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
	l->waitmask = *waitmask;
	l->stop = stop;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return false;
	l->inet = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
	if (l->inet && addrs != NULL && *addrs != '\0') {
		l->allowed = strdup(addrs);
		if (l->allowed == NULL)
			return false;
	}
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
	return sigismember(&p, SIGTERM) == 1 || sigismember(&p, SIGINT) == 1;
}

/* Whether the peer's address is in the comma-separated allow list, as
 * libfcgi checks FCGI_WEB_SERVER_ADDRS (by the address's text; an IPv4
 * peer of an IPv6 socket by its IPv4 text). */
static bool
peer_allowed(const struct vs_listener *l, const struct sockaddr_storage *ss)
{
	char text[INET6_ADDRSTRLEN];
	const struct in6_addr *a6;
	size_t n;

	if (l->allowed == NULL)
		return true;
	if (ss->ss_family == AF_INET) {
		if (inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
			      text, sizeof(text)) == NULL)
			return false;
	} else if (ss->ss_family == AF_INET6) {
		a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6) ?
		    inet_ntop(AF_INET, &a6->s6_addr[12], text, sizeof(text)) == NULL :
		    inet_ntop(AF_INET6, a6, text, sizeof(text)) == NULL)
			return false;
	} else {
		return false;
	}
	n = strlen(text);
	for (const char *p = l->allowed;;) {
		size_t len = strcspn(p, ",");
		const char *b = p, *e = p + len;

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - b) == n && memcmp(b, text, n) == 0)
			return true;
		if (p[len] == '\0')
			return false;
		p += len + 1;
	}
}

/* TCP: what libfcgi's accept did. False: the connection was refused. */
static bool
inet_accepted(const struct vs_listener *l, int fd,
	      const struct sockaddr_storage *ss)
{
	int one = 1;

	if (!peer_allowed(l, ss)) {
		vs_log_warn("refused a FastCGI connection from an address not"
			    " in FCGI_WEB_SERVER_ADDRS");
		(void)close(fd);
		return false;
	}
	/* Answers go out in several records: no Nagle delay between them. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		vs_log_warn("cannot set TCP_NODELAY: %s", strerror(errno));
	return true;
}

/* Out of descriptors or memory: the connection stays queued, so the
 * socket stays readable; pause without watching it. */
static void
pause_out_of(struct vs_listener *l, int err)
{
	struct timespec t = { 0, OUT_OF_PAUSE_MS * 1000000L };
	long long now = vs_mono_ms();

	if (l->warned_ms == 0 || now - l->warned_ms >= OUT_OF_WARN_MS) {
		vs_log_warn("accept: %s; pausing and trying again",
			    strerror(err));
		l->warned_ms = now;
	}
	(void)ppoll(NULL, 0, &t, &l->waitmask);
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
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			/* With answers parked, their settle frees some. */
			if (!may_wait)
				return VS_CONN_NONE;
			pause_out_of(l, errno);
			continue;
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
