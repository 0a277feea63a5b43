/*
 * listener.h - the worker's listening socket (fd 0, as spawn-fcgi,
 * multiwatch and the local stack hand it over).
 *
 * Owns: making the socket non-blocking, waiting for a connection (epoll
 * with EPOLLEXCLUSIVE, so one connection wakes one idle worker; the stop
 * signals are let in only there), accepting, what libfcgi's own accept
 * did for TCP sockets (TCP_NODELAY, the FCGI_WEB_SERVER_ADDRS allow
 * list), retrying transient accept failures without spinning (out of
 * descriptors, it takes the connection with a spare one and closes it,
 * so it neither spins nor leaves it queued for nobody), and
 * noticing a stop request between two requests of a busy worker.
 * Must never: read from a connection (libfcgi and worker.c do), nor let
 * a stop signal in anywhere but the wait.
 */
#ifndef VS_LISTENER_H
#define VS_LISTENER_H

#include <signal.h>
#include <stdbool.h>

struct vs_listener {
	int fd;
	int epfd;
	bool inet;		/* AF_INET or AF_INET6: TCP rules apply */
	/* FCGI_WEB_SERVER_ADDRS parsed: IPv4 and IPv6 addresses (an
	 * IPv4 one also matches its IPv4-mapped IPv6 form); NULL: any. */
	struct vs_listener_addr *allowed;
	int nallowed;
	int spare;		/* kept free for when descriptors run out */
	long long refused_ms;	/* last "refused a connection" warning */
	sigset_t waitmask;	/* the mask while waiting: stop signals in */
	volatile sig_atomic_t *stop;	/* set by the stop signal handler */
	long long warned_ms;	/* last "accept: out of ..." warning */
};

struct vs_listener_addr {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char a[16];
};

enum vs_conn { VS_CONN_GOT, VS_CONN_NONE, VS_CONN_STOP, VS_CONN_FAIL };

/* fd: the listening socket; waitmask: the signal mask to wait with;
 * stop: the flag the stop signals' handler sets (they are blocked
 * everywhere else). False with errno set when the socket is unusable. */
bool vs_listener_open(struct vs_listener *l, int fd, const sigset_t *waitmask,
		      volatile sig_atomic_t *stop);
/*
 * The next connection, blocking (*fd, VS_CONN_GOT). With may_wait false
 * it never waits: VS_CONN_NONE when no connection is queued. VS_CONN_STOP
 * once a stop signal has arrived (also one still pending: a busy worker
 * never waits, so it looks before each accept); VS_CONN_FAIL on an error
 * that retrying cannot cure (logged).
 */
enum vs_conn vs_listener_next(struct vs_listener *l, bool may_wait, int *fd);
void vs_listener_close(struct vs_listener *l);

#endif
