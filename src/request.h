/*
 * request.h - one HTTP request as handlers see it.
 *
 * Owns: turning the front server's parameters (FastCGI params) into a
 * parsed request: method, decoded path, query parameters, cookies, the
 * headers handlers need, client IP and HTTPS per API.md 1.8 (forwarding
 * headers honoured only from trusted proxies, right-most untrusted
 * address, D17), and reading the body with a cap.
 *
 * Must never: call libfcgi directly (the worker hands in a parameter
 * getter and a body reader), or interpret a route's fields.
 */
#ifndef VS_REQUEST_H
#define VS_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util.h"

struct vs_kv {
	char *key;
	char *val;
};

struct vs_kvlist {
	struct vs_kv *v;
	size_t n, cap;
};

struct vs_cidr {
	int family;               /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int prefix;
};

/* Where the request comes from: the worker adapts FastCGI to this. */
struct vs_request_source {
	const char *(*param)(void *ctx, const char *name);
	/* Reads up to n body bytes; 0 at end, -1 on error. */
	ssize_t (*read)(void *ctx, char *buf, size_t n);
	void *ctx;
};

enum vs_body_rc {
	VS_BODY_OK = 0,
	VS_BODY_TOO_LARGE,  /* 413 request_too_large */
	VS_BODY_IO,         /* the front server went away mid-body */
};

struct vs_request {
	const struct vs_request_source *src;
	const char *method;       /* never NULL */
	char *raw_path;           /* path part of REQUEST_URI, undecoded */
	char *path;               /* percent-decoded */
	const char *query;        /* raw query string, "" if none */
	struct vs_kvlist params;  /* decoded query parameters */
	struct vs_kvlist cookies;
	const char *content_type; /* "" if none */
	const char *authorization;
	const char *host;
	const char *origin;
	const char *accept_language;
	char client_ip[64];
	bool https;
	/* body, after vs_request_read_body */
	char *body;
	size_t body_len;
	bool body_read;
	bool body_eof;            /* the whole body was consumed */
};

/* Parses everything but the body. trusted: proxies from config (may be
 * NULL/0). Returns false only on allocation failure. */
bool vs_request_init(struct vs_request *r, const struct vs_request_source *src,
		     const struct vs_cidr *trusted, size_t ntrusted);
void vs_request_free(struct vs_request *r);

/* Any request header by its CGI name ("HTTP_X_CSRF_TOKEN"); NULL if absent. */
const char *vs_request_param(const struct vs_request *r, const char *name);
const char *vs_request_query(const struct vs_request *r, const char *name);
const char *vs_request_cookie(const struct vs_request *r, const char *name);

/* Reads the whole body, at most cap bytes; more is VS_BODY_TOO_LARGE. */
enum vs_body_rc vs_request_read_body(struct vs_request *r, size_t cap);
/* Streaming: reads up to n body bytes into buf (for bodies too large to
 * hold, e.g. blob uploads). Returns 0 at the end of the body (marked as
 * consumed), -1 when the front server went away or stalled. */
ssize_t vs_request_read_some(struct vs_request *r, char *buf, size_t n);
/* Reads and discards what is left of the body (bounded by limit bytes),
 * so the front server never sees the connection close mid-upload. */
void vs_request_drain(struct vs_request *r, size_t limit);

/* application/x-www-form-urlencoded parsing into list; false on a
 * malformed escape or OOM. */
bool vs_form_parse(const char *s, size_t len, struct vs_kvlist *out);
const char *vs_kv_get(const struct vs_kvlist *l, const char *key);
void vs_kvlist_free(struct vs_kvlist *l);

/* Percent-decoding ('+' as space only when plus_space). Returns a malloc'd
 * string, NULL on a malformed escape, an embedded NUL, or OOM. */
char *vs_url_decode(const char *s, size_t len, bool plus_space);

/* Cleans a path like Go's path.Clean, keeping a trailing slash. Returns
 * malloc'd string. */
char *vs_path_clean(const char *p);

/* Parses "addr" or "addr/prefix". */
bool vs_cidr_parse(const char *s, struct vs_cidr *out);
bool vs_cidr_contains(const struct vs_cidr *c, const char *ip);

#endif
