/*
 * request.c - see request.h. All request parsing lives here so handlers
 * only ever see decoded, bounded values.
 */
#include "request.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static const char *
src_param(const struct vs_request_source *src, const char *name)
{
	const char *v = src->param(src->ctx, name);
	return v;
}

static const char *
param_or_empty(const struct vs_request_source *src, const char *name)
{
	const char *v = src_param(src, name);
	return v == NULL ? "" : v;
}

static bool
kv_push(struct vs_kvlist *l, char *k, char *v)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 8;
		struct vs_kv *nv = realloc(l->v, ncap * sizeof(*nv));
		if (nv == NULL)
			return false;
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n].key = k;
	l->v[l->n].val = v;
	l->n++;
	return true;
}

void
vs_kvlist_free(struct vs_kvlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].val);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

const char *
vs_kv_get(const struct vs_kvlist *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].key, key) == 0)
			return l->v[i].val;
	return NULL;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *
vs_url_decode(const char *s, size_t len, bool plus_space)
{
	char *out = malloc(len + 1);
	size_t j = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '%') {
			int hi, lo;
			hi = i + 1 < len ? hexval((unsigned char)s[i + 1]) : -1;
			lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
			if (hi < 0 || lo < 0) {
				free(out);
				return NULL;
			}
			c = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+' && plus_space) {
			c = ' ';
		}
		if (c == '\0') {
			/* An embedded NUL would cut C strings short and let two
			 * different inputs look the same; refuse it. */
			free(out);
			return NULL;
		}
		out[j++] = c;
	}
	out[j] = '\0';
	return out;
}

/* Parses "a=1&b=2" (also ';'-free: Go's parser rejects ';' too). */
bool
vs_form_parse(const char *s, size_t len, struct vs_kvlist *out)
{
	size_t i = 0;

	while (i < len) {
		size_t start = i, eq = (size_t)-1;
		char *k, *v;

		while (i < len && s[i] != '&') {
			if (s[i] == ';')
				return false;
			if (s[i] == '=' && eq == (size_t)-1)
				eq = i;
			i++;
		}
		if (i > start) {
			size_t kend = eq == (size_t)-1 ? i : eq;
			k = vs_url_decode(s + start, kend - start, true);
			v = eq == (size_t)-1 ? strdup("")
					     : vs_url_decode(s + eq + 1, i - eq - 1, true);
			if (k == NULL || v == NULL || !kv_push(out, k, v)) {
				free(k);
				free(v);
				return false;
			}
		}
		i++;
	}
	return true;
}

static bool
parse_cookies(const char *h, struct vs_kvlist *out)
{
	const char *p = h;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ';');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', n);

		if (eq != NULL) {
			const char *ks = p, *ke = eq, *vs = eq + 1, *ve = p + n;
			while (ks < ke && isspace((unsigned char)*ks))
				ks++;
			while (ke > ks && isspace((unsigned char)ke[-1]))
				ke--;
			while (vs < ve && isspace((unsigned char)*vs))
				vs++;
			while (ve > vs && isspace((unsigned char)ve[-1]))
				ve--;
			if (ve - vs >= 2 && *vs == '"' && ve[-1] == '"') {
				vs++;
				ve--;
			}
			if (ke > ks) {
				char *k = strndup(ks, (size_t)(ke - ks));
				char *v = strndup(vs, (size_t)(ve - vs));
				if (k == NULL || v == NULL || !kv_push(out, k, v)) {
					free(k);
					free(v);
					return false;
				}
			}
		}
		p = end ? end + 1 : NULL;
	}
	return true;
}

char *
vs_path_clean(const char *p)
{
	size_t n = strlen(p);
	char *out = malloc(n + 2);
	size_t w = 0, r = 0;
	bool trailing = n > 1 && p[n - 1] == '/';

	if (out == NULL)
		return NULL;
	out[w++] = '/';
	while (r < n) {
		if (p[r] == '/') {
			r++;
		} else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
			r++;
		} else if (p[r] == '.' && p[r + 1] == '.' &&
			   (r + 2 == n || p[r + 2] == '/')) {
			r += 2;
			/* Back up to the previous segment, never above root. */
			if (w > 1) {
				w--;
				while (w > 1 && out[w - 1] != '/')
					w--;
				if (w > 1)
					w--;
			}
		} else {
			if (w > 1)
				out[w++] = '/';
			while (r < n && p[r] != '/')
				out[w++] = p[r++];
		}
	}
	if (trailing && w > 1)
		out[w++] = '/';
	out[w] = '\0';
	return out;
}

bool
vs_cidr_parse(const char *s, struct vs_cidr *out)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	int max;

	if (alen == 0 || alen >= sizeof(buf))
		return false;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return false;
	}
	out->prefix = max;
	if (slash != NULL) {
		char *end;
		long v;
		if (slash[1] == '\0' || !isdigit((unsigned char)slash[1]))
			return false;
		v = strtol(slash + 1, &end, 10);
		if (*end != '\0' || v < 0 || v > max)
			return false;
		out->prefix = (int)v;
	}
	return true;
}

static bool
addr_parse(const char *ip, int *family, unsigned char addr[16])
{
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, ip, addr) == 1) {
		*family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, ip, addr) == 1) {
		static const unsigned char v4mapped[12] = {
			0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(addr, v4mapped, 12) == 0) {
			/* ::ffff:a.b.c.d is an IPv4 client on a dual-stack
			 * socket: treat it as a.b.c.d, as the reference. */
			memmove(addr, addr + 12, 4);
			memset(addr + 4, 0, 12);
			*family = AF_INET;
			return true;
		}
		*family = AF_INET6;
		return true;
	}
	return false;
}

bool
vs_cidr_contains(const struct vs_cidr *c, const char *ip)
{
	unsigned char a[16];
	int fam, bits = c->prefix, i = 0;

	if (!addr_parse(ip, &fam, a) || fam != c->family)
		return false;
	for (; bits >= 8; bits -= 8, i++)
		if (a[i] != c->addr[i])
			return false;
	if (bits > 0) {
		unsigned char mask = (unsigned char)(0xff << (8 - bits));
		if ((a[i] & mask) != (c->addr[i] & mask))
			return false;
	}
	return true;
}

static bool
is_trusted(const char *ip, const struct vs_cidr *t, size_t nt)
{
	for (size_t i = 0; i < nt; i++)
		if (vs_cidr_contains(&t[i], ip))
			return true;
	return false;
}

/* Writes the canonical text form of ip into out; false if not an IP. */
static bool
canon_ip(const char *ip, char *out, size_t outlen)
{
	unsigned char a[16];
	int fam;

	return addr_parse(ip, &fam, a) &&
	       inet_ntop(fam, a, out, (socklen_t)outlen) != NULL;
}

/* API.md 1.8 / D17: behind trusted proxies the client is the right-most
 * X-Forwarded-For entry that is not itself a trusted proxy; if every
 * entry is trusted, the left-most valid one. The client controls the
 * left part of the header, so it is never preferred. */
static void
resolve_client(struct vs_request *r, const struct vs_cidr *t, size_t nt)
{
	const char *peer = param_or_empty(r->src, "REMOTE_ADDR");
	const char *xff, *xfp;
	char tok[64], first_valid[64] = "", chosen[64] = "";
	size_t len;

	if (!canon_ip(peer, r->client_ip, sizeof(r->client_ip)))
		snprintf(r->client_ip, sizeof(r->client_ip), "%s",
			 *peer ? peer : "unknown");
	r->https = strcasecmp(param_or_empty(r->src, "HTTPS"), "on") == 0;
	if (nt == 0 || !is_trusted(r->client_ip, t, nt))
		return;

	xfp = param_or_empty(r->src, "HTTP_X_FORWARDED_PROTO");
	while (isspace((unsigned char)*xfp))
		xfp++;
	len = strlen(xfp);
	while (len > 0 && isspace((unsigned char)xfp[len - 1]))
		len--;
	if (len == 5 && strncasecmp(xfp, "https", 5) == 0)
		r->https = true;

	xff = param_or_empty(r->src, "HTTP_X_FORWARDED_FOR");
	len = strlen(xff);
	/* Walk the list from the right. */
	while (len > 0) {
		size_t end = len, start;
		while (end > 0 && isspace((unsigned char)xff[end - 1]))
			end--;
		start = end;
		while (start > 0 && xff[start - 1] != ',')
			start--;
		len = start > 0 ? start - 1 : 0;
		while (start < end && isspace((unsigned char)xff[start]))
			start++;
		if (end - start == 0 || end - start >= sizeof(tok))
			continue;
		memcpy(tok, xff + start, end - start);
		tok[end - start] = '\0';
		char canon[64];
		if (!canon_ip(tok, canon, sizeof(canon)))
			continue;
		snprintf(first_valid, sizeof(first_valid), "%s", canon);
		if (chosen[0] == '\0' && !is_trusted(canon, t, nt))
			snprintf(chosen, sizeof(chosen), "%s", canon);
	}
	if (chosen[0] != '\0')
		snprintf(r->client_ip, sizeof(r->client_ip), "%s", chosen);
	else if (first_valid[0] != '\0')
		snprintf(r->client_ip, sizeof(r->client_ip), "%s", first_valid);
}

bool
vs_request_init(struct vs_request *r, const struct vs_request_source *src,
		const struct vs_cidr *trusted, size_t ntrusted)
{
	const char *uri, *q, *cookie;
	size_t plen;

	memset(r, 0, sizeof(*r));
	r->src = src;
	r->method = param_or_empty(src, "REQUEST_METHOD");
	uri = src_param(src, "REQUEST_URI");
	if (uri == NULL || *uri == '\0')
		uri = param_or_empty(src, "DOCUMENT_URI");
	q = strchr(uri, '?');
	plen = q ? (size_t)(q - uri) : strlen(uri);
	r->raw_path = strndup(uri, plen);
	if (r->raw_path == NULL)
		return false;
	r->path = vs_url_decode(uri, plen, false);
	if (r->path == NULL) {
		/* A malformed escape: keep the raw text; no route matches it. */
		r->path = strdup(r->raw_path);
		if (r->path == NULL)
			return false;
	}
	if (r->path[0] != '/') {
		char *p = malloc(strlen(r->path) + 2);
		if (p == NULL)
			return false;
		p[0] = '/';
		strcpy(p + 1, r->path);
		free(r->path);
		r->path = p;
	}
	r->query = param_or_empty(src, "QUERY_STRING");
	/* Pair by pair, so a bad parameter reads as absent without hiding
	 * the others (as the reference's URL.Query()). */
	for (const char *s = r->query; *s != '\0';) {
		size_t n = strcspn(s, "&");
		(void)vs_form_parse(s, n, &r->params);
		s += n;
		if (*s == '&')
			s++;
	}
	cookie = src_param(src, "HTTP_COOKIE");
	if (cookie != NULL && !parse_cookies(cookie, &r->cookies))
		return false;
	r->content_type = param_or_empty(src, "CONTENT_TYPE");
	r->authorization = param_or_empty(src, "HTTP_AUTHORIZATION");
	r->host = param_or_empty(src, "HTTP_HOST");
	r->origin = param_or_empty(src, "HTTP_ORIGIN");
	r->accept_language = param_or_empty(src, "HTTP_ACCEPT_LANGUAGE");
	resolve_client(r, trusted, ntrusted);
	return true;
}

void
vs_request_free(struct vs_request *r)
{
	free(r->raw_path);
	free(r->path);
	free(r->body);
	vs_kvlist_free(&r->params);
	vs_kvlist_free(&r->cookies);
	memset(r, 0, sizeof(*r));
}

const char *
vs_request_param(const struct vs_request *r, const char *name)
{
	return src_param(r->src, name);
}

const char *
vs_request_query(const struct vs_request *r, const char *name)
{
	return vs_kv_get(&r->params, name);
}

const char *
vs_request_cookie(const struct vs_request *r, const char *name)
{
	/* First occurrence wins: browsers send the more specific path first. */
	return vs_kv_get(&r->cookies, name);
}

enum vs_body_rc
vs_request_read_body(struct vs_request *r, size_t cap)
{
	struct vs_buf b;
	char chunk[16384];

	if (r->body_read)
		return r->body_len > cap ? VS_BODY_TOO_LARGE : VS_BODY_OK;
	vs_buf_init(&b);
	for (;;) {
		ssize_t n = r->src->read(r->src->ctx, chunk, sizeof(chunk));
		if (n < 0) {
			vs_buf_free(&b);
			return VS_BODY_IO;
		}
		if (n == 0) {
			r->body_eof = true;
			break;
		}
		if (b.len + (size_t)n > cap) {
			/* Over the cap: stop buffering; the rest is drained
			 * by the worker before it answers. */
			vs_buf_free(&b);
			r->body_read = true;
			r->body_len = cap + 1;
			return VS_BODY_TOO_LARGE;
		}
		if (!vs_buf_append(&b, chunk, (size_t)n)) {
			vs_buf_free(&b);
			return VS_BODY_IO;
		}
	}
	if (b.data == NULL && !vs_buf_append(&b, "", 0)) {
		vs_buf_free(&b);
		return VS_BODY_IO;
	}
	r->body = b.data;
	r->body_len = b.len;
	r->body_read = true;
	return VS_BODY_OK;
}

ssize_t
vs_request_read_some(struct vs_request *r, char *buf, size_t n)
{
	ssize_t got;

	if (r->body_eof)
		return 0;
	got = r->src->read(r->src->ctx, buf, n);
	if (got == 0)
		r->body_eof = true;
	return got;
}

void
vs_request_drain(struct vs_request *r, size_t limit)
{
	char chunk[16384];
	size_t total = 0;

	if (r->body_eof)
		return;
	while (total < limit) {
		ssize_t n = r->src->read(r->src->ctx, chunk, sizeof(chunk));
		if (n <= 0)
			break;
		total += (size_t)n;
	}
	r->body_eof = true;
}
