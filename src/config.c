/*
 * config.c - see config.h. Owns <data>/config.yml: reading it with
 * libyaml (DATA.md 3), building the effective settings (defaults, then
 * the transient overrides of DATA.md 2) and writing the file back
 * atomically in the reference's layout.
 *
 * Must never: write an override value into the file (D26: only cfg->file
 * is ever saved), omit allow_registration when false (D4), write the file
 * at load time, or leave a .config-* temp file behind after a failed save.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "config.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <yaml.h>

#define DEFAULT_SERVER_NAME "Verstak Sync Server"
#define DEFAULT_LOCALE "en"

/* One integer key of a nested map: its name, where it lives and its
 * default. The same tables drive reading, defaults and writing, so the
 * three can never disagree on names or order (DATA.md 3's table order). */
struct int_key {
	const char *name;
	size_t off;
	int64_t def;
};

static const struct int_key limit_keys[] = {
	{ "max_json_body", offsetof(struct vs_limits, max_json_body), 2097152 },
	{ "max_push_operations", offsetof(struct vs_limits, max_push_operations), 100 },
	{ "max_payload_json", offsetof(struct vs_limits, max_payload_json), 262144 },
	{ "max_pull_page", offsetof(struct vs_limits, max_pull_page), 100 },
	{ "max_blob_bytes", offsetof(struct vs_limits, max_blob_bytes), 268435456 },
	{ "max_vault_blob_bytes", offsetof(struct vs_limits, max_vault_blob_bytes), 4294967296LL },
	{ "max_user_blob_bytes", offsetof(struct vs_limits, max_user_blob_bytes), 8589934592LL },
};

static const struct int_key retention_keys[] = {
	{ "idempotency_hours", offsetof(struct vs_retention, idempotency_hours), 24 },
	{ "audit_days", offsetof(struct vs_retention, audit_days), 90 },
	{ "temp_upload_hours", offsetof(struct vs_retention, temp_upload_hours), 24 },
};

#define NKEYS(a) (sizeof(a) / sizeof((a)[0]))

static int64_t *
int_slot(void *base, const struct int_key *k)
{
	return (int64_t *)(void *)((char *)base + k->off);
}

static int64_t
int_get(const void *base, const struct int_key *k)
{
	return *(const int64_t *)(const void *)((const char *)base + k->off);
}

/* Writes a reason into err (which may be NULL) and returns false, so a
 * failure path is one line. */
static bool __attribute__((format(printf, 3, 4)))
failf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return false;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return false;
}

/* ------------------------------------------------------------------ */
/* Settings lifetime                                                   */
/* ------------------------------------------------------------------ */

static size_t
strv_len(char *const *v)
{
	size_t n = 0;

	while (v != NULL && v[n] != NULL)
		n++;
	return n;
}

static void
strv_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* Appends a copy of s to the NULL-terminated vector *v (which may be
 * NULL); the vector stays valid on failure. */
static bool
strv_push(char ***v, const char *s)
{
	size_t n = strv_len(*v);
	char *copy = strdup(s);
	char **nv;

	if (copy == NULL)
		return false;
	nv = realloc(*v, (n + 2) * sizeof(*nv));
	if (nv == NULL) {
		free(copy);
		return false;
	}
	nv[n] = copy;
	nv[n + 1] = NULL;
	*v = nv;
	return true;
}

/* An allocated, empty vector: the effective copy always has one. */
static char **
strv_empty(void)
{
	return calloc(1, sizeof(char *));
}

static bool
strv_dup(char *const *src, char ***out)
{
	*out = NULL;
	if (src == NULL)
		return true;
	*out = strv_empty();
	if (*out == NULL)
		return false;
	for (size_t i = 0; src[i] != NULL; i++) {
		if (!strv_push(out, src[i])) {
			strv_free(*out);
			*out = NULL;
			return false;
		}
	}
	return true;
}

static void
admins_free(struct vs_admin *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(a[i].username);
		free(a[i].password_hash);
	}
	free(a);
}

static void
settings_free(struct vs_settings *s)
{
	free(s->listen);
	strv_free(s->trusted_proxies);
	free(s->public_url);
	free(s->default_locale);
	free(s->server_name);
	admins_free(s->admins, s->n_admins);
	memset(s, 0, sizeof(*s));
}

/* Duplicates a string field; NULL stays NULL. */
static bool
dup_field(char **dst, const char *src)
{
	*dst = NULL;
	if (src == NULL)
		return true;
	*dst = strdup(src);
	return *dst != NULL;
}

static bool
admins_dup(struct vs_settings *dst, const struct vs_settings *src)
{
	dst->admins = NULL;
	dst->n_admins = 0;
	if (src->n_admins == 0)
		return true;
	dst->admins = calloc(src->n_admins, sizeof(*dst->admins));
	if (dst->admins == NULL)
		return false;
	dst->n_admins = src->n_admins;
	for (size_t i = 0; i < src->n_admins; i++) {
		if (!dup_field(&dst->admins[i].username, src->admins[i].username) ||
		    !dup_field(&dst->admins[i].password_hash,
			       src->admins[i].password_hash))
			return false;
	}
	return true;
}

/* Deep copy; on failure dst is freed and zeroed. */
static bool
settings_copy(struct vs_settings *dst, const struct vs_settings *src)
{
	*dst = *src;
	dst->listen = dst->public_url = dst->default_locale = NULL;
	dst->server_name = NULL;
	dst->trusted_proxies = NULL;
	dst->admins = NULL;
	dst->n_admins = 0;
	if (dup_field(&dst->listen, src->listen) &&
	    dup_field(&dst->public_url, src->public_url) &&
	    dup_field(&dst->default_locale, src->default_locale) &&
	    dup_field(&dst->server_name, src->server_name) &&
	    strv_dup(src->trusted_proxies, &dst->trusted_proxies) &&
	    admins_dup(dst, src))
		return true;
	settings_free(dst);
	return false;
}

/* Replaces *field with a copy of value (NULL allowed). */
static bool
set_field(char **field, const char *value)
{
	char *copy = NULL;

	if (value != NULL && (copy = strdup(value)) == NULL)
		return false;
	free(*field);
	*field = copy;
	return true;
}

/* ------------------------------------------------------------------ */
/* Values shared by load and overrides                                 */
/* ------------------------------------------------------------------ */

bool
vs_config_valid_proxy(const char *entry)
{
	char buf[64];
	unsigned char addr[16];
	char *slash;
	long bits, prefix = 0;
	size_t n;

	if (entry == NULL || (n = strlen(entry)) == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, entry, n + 1);
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, addr) == 1)
		bits = 32;
	else if (inet_pton(AF_INET6, buf, addr) == 1)
		bits = 128;
	else
		return false;
	if (slash == NULL)
		return true;	/* a bare address is /32 or /128 */
	/* Only 1-3 plain digits: no sign, no space, no hex. */
	n = strlen(slash + 1);
	if (n == 0 || n > 3)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)slash[1 + i]))
			return false;
		prefix = prefix * 10 + (slash[1 + i] - '0');
	}
	return prefix <= bits;
}

static bool
is_blank(const char *s)
{
	if (s == NULL)
		return true;
	for (; *s != '\0'; s++)
		if (!isspace((unsigned char)*s))
			return false;
	return true;
}

/* Trimmed copy of s[0..n); NULL on OOM. */
static char *
trimmed_copy(const char *s, size_t n)
{
	char *c = strndup(s, n);

	return c == NULL ? NULL : vs_trim(c);
}

/* Appends the trimmed entry (skipping blank ones) to *out after checking
 * it. "what" names the source for the message. */
static bool
push_proxy(char ***out, const char *raw, size_t n, const char *what,
	   char *err, size_t errlen)
{
	char *e = trimmed_copy(raw, n);
	bool ok;

	if (e == NULL)
		return failf(err, errlen, "out of memory");
	if (*e == '\0') {
		free(e);
		return true;
	}
	if (!vs_config_valid_proxy(e)) {
		failf(err, errlen,
		      "%s: invalid trusted proxy \"%.64s\" (expected an IP address or CIDR)",
		      what, e);
		free(e);
		return false;
	}
	ok = strv_push(out, e);
	free(e);
	return ok || failf(err, errlen, "out of memory");
}

/* Effective trusted_proxies from a list (file copy): trimmed, blank
 * entries skipped, every entry checked. */
static bool
proxies_from_list(char *const *list, char ***out, const char *what,
		  char *err, size_t errlen)
{
	*out = strv_empty();
	if (*out == NULL)
		return failf(err, errlen, "out of memory");
	for (size_t i = 0; list != NULL && list[i] != NULL; i++) {
		if (!push_proxy(out, list[i], strlen(list[i]), what, err,
				errlen)) {
			strv_free(*out);
			*out = NULL;
			return false;
		}
	}
	return true;
}

/* Same from a comma-separated string (VERSTAK_TRUSTED_PROXIES). */
static bool
proxies_from_csv(const char *csv, char ***out, char *err, size_t errlen)
{
	const char *p = csv;

	*out = strv_empty();
	if (*out == NULL)
		return failf(err, errlen, "out of memory");
	for (;;) {
		size_t n = strcspn(p, ",");
		if (!push_proxy(out, p, n, "VERSTAK_TRUSTED_PROXIES", err,
				errlen)) {
			strv_free(*out);
			*out = NULL;
			return false;
		}
		if (p[n] == '\0')
			return true;
		p += n + 1;
	}
}

static char *
loopback_listen(int64_t port)
{
	char buf[48];

	snprintf(buf, sizeof(buf), "127.0.0.1:%lld", (long long)port);
	return strdup(buf);
}

/* The web.* rules of DATA.md 3 applied to the effective copy. */
static bool
normalise_web(struct vs_settings *e)
{
	const char *loc = e->default_locale;

	if (loc == NULL || (strcmp(loc, "en") != 0 && strcmp(loc, "ru") != 0))
		if (!set_field(&e->default_locale, DEFAULT_LOCALE))
			return false;
	if (is_blank(e->server_name) &&
	    !set_field(&e->server_name, DEFAULT_SERVER_NAME))
		return false;
	if (e->public_url == NULL && !set_field(&e->public_url, ""))
		return false;
	return true;
}

static void
apply_int_defaults(void *base, const struct int_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int64_t *v = int_slot(base, &keys[i]);
		if (*v <= 0)	/* "value <= 0 means default" */
			*v = keys[i].def;
	}
}

/* cfg->eff = defaults + cfg->file. Every string of eff is non-NULL. */
static bool
build_eff(struct vs_config *cfg, char *err, size_t errlen)
{
	struct vs_settings *e = &cfg->eff;
	char **proxies;

	if (!proxies_from_list(cfg->file.trusted_proxies, &proxies,
			       cfg->path, err, errlen))
		return false;
	if (!settings_copy(e, &cfg->file)) {
		strv_free(proxies);
		return failf(err, errlen, "out of memory");
	}
	strv_free(e->trusted_proxies);
	e->trusted_proxies = proxies;
	if (e->port <= 0)
		e->port = VS_DEFAULT_PORT;
	apply_int_defaults(&e->limits, limit_keys, NKEYS(limit_keys));
	apply_int_defaults(&e->retention, retention_keys, NKEYS(retention_keys));
	if (!normalise_web(e))
		return failf(err, errlen, "out of memory");
	if (is_blank(e->listen)) {
		free(e->listen);
		if ((e->listen = loopback_listen(e->port)) == NULL)
			return failf(err, errlen, "out of memory");
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Reading config.yml                                                  */
/* ------------------------------------------------------------------ */

struct rd {
	yaml_document_t *doc;
	const char *path;
	char *err;
	size_t errlen;
};

/* Reason tied to the line of node n (libyaml counts from 0). */
static bool __attribute__((format(printf, 3, 4)))
fail_at(struct rd *r, const yaml_node_t *n, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return failf(r->err, r->errlen, "%s: line %lu: %s", r->path,
		     (unsigned long)n->start_mark.line + 1, what);
}

static const char *
sval(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* A plain ~, null or empty scalar: Go's decoder treats it as "absent". */
static bool
is_null(const yaml_node_t *n)
{
	const char *v;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	v = sval(n);
	return *v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static bool
read_string(struct rd *r, const yaml_node_t *n, const char *key, char **out)
{
	free(*out);
	*out = NULL;
	if (is_null(n))
		return true;
	if (n->type != YAML_SCALAR_NODE)
		return fail_at(r, n, "%s: expected a string", key);
	/* An escaped \0 cannot live in a C string: refuse it instead of
	 * silently cutting the value. */
	if (strlen(sval(n)) != n->data.scalar.length)
		return fail_at(r, n, "%s: NUL character in value", key);
	*out = strdup(sval(n));
	return *out != NULL || failf(r->err, r->errlen, "out of memory");
}

/* Integer forms of YAML (decimal, 0x, 0o, 0b, '_' separators). */
static bool
parse_int(const char *s, int64_t *out)
{
	char buf[96], *end;
	size_t j = 0;
	int base = 10;
	const char *p = s;
	long long v;
	bool neg = false;

	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		base = 16, p += 2;
	else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
		base = 8, p += 2;
	else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B'))
		base = 2, p += 2;
	if (neg)
		buf[j++] = '-';
	for (; *p != '\0'; p++) {
		if (*p == '_')
			continue;
		/* Only digits: strtoll would otherwise take a sign or
		 * spaces in the middle. */
		if (!isxdigit((unsigned char)*p) || j + 1 >= sizeof(buf))
			return false;
		buf[j++] = *p;
	}
	buf[j] = '\0';
	if (j == 0 || (neg && j == 1))
		return false;
	errno = 0;
	v = strtoll(buf, &end, base);
	if (errno != 0 || *end != '\0')
		return false;
	*out = (int64_t)v;
	return true;
}

static bool
read_int(struct rd *r, const yaml_node_t *n, const char *key, int64_t *out)
{
	*out = 0;
	if (is_null(n))
		return true;
	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
	    !parse_int(sval(n), out))
		return fail_at(r, n, "%s: expected an integer", key);
	return true;
}

/* true/false plus the YAML 1.1 spellings Go's decoder accepts for bools. */
static bool
read_bool(struct rd *r, const yaml_node_t *n, const char *key, bool *out)
{
	static const char *const yes[] = { "true", "True", "TRUE", "yes",
		"Yes", "YES", "on", "On", "ON", "y", "Y" };
	static const char *const no[] = { "false", "False", "FALSE", "no",
		"No", "NO", "off", "Off", "OFF", "n", "N" };

	if (n->type == YAML_SCALAR_NODE &&
	    n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
		for (size_t i = 0; i < NKEYS(yes); i++) {
			if (strcmp(sval(n), yes[i]) == 0) {
				*out = true;
				return true;
			}
			if (strcmp(sval(n), no[i]) == 0) {
				*out = false;
				return true;
			}
		}
	}
	return fail_at(r, n, "%s: expected true or false", key);
}

typedef bool (*pair_fn)(struct rd *r, const char *key, yaml_node_t *val,
			void *ctx);

/* Calls fn for every scalar key of the mapping; duplicate keys are an
 * error, as in the reference's decoder. */
static bool
each_pair(struct rd *r, const yaml_node_t *map, pair_fn fn, void *ctx)
{
	yaml_node_pair_t *first = map->data.mapping.pairs.start;
	yaml_node_pair_t *top = map->data.mapping.pairs.top;

	for (yaml_node_pair_t *p = first; p < top; p++) {
		yaml_node_t *k = yaml_document_get_node(r->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(r->doc, p->value);

		if (k == NULL || v == NULL || k->type != YAML_SCALAR_NODE)
			continue;	/* not a key we could know */
		for (yaml_node_pair_t *q = first; q < p; q++) {
			yaml_node_t *k2 = yaml_document_get_node(r->doc, q->key);
			if (k2 != NULL && k2->type == YAML_SCALAR_NODE &&
			    k2->data.scalar.length == k->data.scalar.length &&
			    memcmp(k2->data.scalar.value, k->data.scalar.value,
				   k->data.scalar.length) == 0)
				return fail_at(r, k, "key \"%.64s\" already defined",
					       sval(k));
		}
		if (strlen(sval(k)) != k->data.scalar.length)
			continue;	/* embedded NUL: unknown key */
		if (!fn(r, sval(k), v, ctx))
			return false;
	}
	return true;
}

static bool
read_map(struct rd *r, const yaml_node_t *n, const char *key, pair_fn fn,
	 void *ctx)
{
	if (is_null(n))
		return true;
	if (n->type != YAML_MAPPING_NODE)
		return fail_at(r, n, "%s: expected a mapping", key);
	return each_pair(r, n, fn, ctx);
}

struct int_map {
	void *base;
	const struct int_key *keys;
	size_t n;
	const char *section;
};

static bool
int_field(struct rd *r, const char *key, yaml_node_t *v, void *ctx)
{
	struct int_map *m = ctx;
	char name[96];

	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(key, m->keys[i].name) == 0) {
			snprintf(name, sizeof(name), "%s.%s", m->section, key);
			return read_int(r, v, name, int_slot(m->base, &m->keys[i]));
		}
	}
	return true;	/* unknown keys are ignored */
}

static bool
web_field(struct rd *r, const char *key, yaml_node_t *v, void *ctx)
{
	struct vs_settings *s = ctx;

	if (strcmp(key, "default_locale") == 0)
		return read_string(r, v, "web.default_locale", &s->default_locale);
	if (strcmp(key, "server_name") == 0)
		return read_string(r, v, "web.server_name", &s->server_name);
	if (strcmp(key, "allow_registration") == 0) {
		s->allow_registration = true;	/* null reads as absent */
		return is_null(v) ||
		       read_bool(r, v, "web.allow_registration",
				 &s->allow_registration);
	}
	return true;
}

static bool
admin_field(struct rd *r, const char *key, yaml_node_t *v, void *ctx)
{
	struct vs_admin *a = ctx;

	if (strcmp(key, "username") == 0)
		return read_string(r, v, "admin.username", &a->username);
	if (strcmp(key, "password_hash") == 0)
		return read_string(r, v, "admin.password_hash", &a->password_hash);
	return true;
}

static bool
read_admins(struct rd *r, const yaml_node_t *n, struct vs_settings *s)
{
	yaml_node_item_t *it;

	if (is_null(n))
		return true;
	if (n->type != YAML_SEQUENCE_NODE)
		return fail_at(r, n, "admin: expected a list");
	for (it = n->data.sequence.items.start;
	     it < n->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(r->doc, *it);
		struct vs_admin *na;

		if (item == NULL || is_null(item))
			continue;	/* an empty entry names nobody */
		if (item->type != YAML_MAPPING_NODE)
			return fail_at(r, item, "admin: each entry must be a mapping");
		na = realloc(s->admins, (s->n_admins + 1) * sizeof(*na));
		if (na == NULL)
			return failf(r->err, r->errlen, "out of memory");
		s->admins = na;
		memset(&na[s->n_admins], 0, sizeof(*na));
		s->n_admins++;
		if (!each_pair(r, item, admin_field, &na[s->n_admins - 1]))
			return false;
	}
	return true;
}

/* The file copy keeps entries as written; each is checked here so the
 * message can name its line. */
static bool
read_proxies(struct rd *r, const yaml_node_t *n, struct vs_settings *s)
{
	yaml_node_item_t *it;

	strv_free(s->trusted_proxies);
	s->trusted_proxies = NULL;
	if (is_null(n))
		return true;
	if (n->type != YAML_SEQUENCE_NODE)
		return fail_at(r, n, "trusted_proxies: expected a list");
	if ((s->trusted_proxies = strv_empty()) == NULL)
		return failf(r->err, r->errlen, "out of memory");
	for (it = n->data.sequence.items.start;
	     it < n->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(r->doc, *it);
		char *v = NULL, *t;
		bool ok;

		if (item == NULL)
			continue;
		if (!read_string(r, item, "trusted_proxies", &v))
			return false;
		if (v == NULL)
			continue;
		if ((t = trimmed_copy(v, strlen(v))) == NULL) {
			free(v);
			return failf(r->err, r->errlen, "out of memory");
		}
		ok = *t == '\0' || vs_config_valid_proxy(t);
		free(t);
		if (!ok) {
			fail_at(r, item,
				"trusted_proxies: invalid entry \"%.64s\" (expected an IP address or CIDR)",
				v);
			free(v);
			return false;
		}
		ok = strv_push(&s->trusted_proxies, v);
		free(v);
		if (!ok)
			return failf(r->err, r->errlen, "out of memory");
	}
	return true;
}

static bool
top_field(struct rd *r, const char *key, yaml_node_t *v, void *ctx)
{
	struct vs_settings *s = ctx;
	struct int_map lim = { &s->limits, limit_keys, NKEYS(limit_keys), "limits" };
	struct int_map ret = { &s->retention, retention_keys,
			       NKEYS(retention_keys), "retention" };

	if (strcmp(key, "port") == 0)
		return read_int(r, v, key, &s->port);
	if (strcmp(key, "listen") == 0)
		return read_string(r, v, key, &s->listen);
	if (strcmp(key, "trusted_proxies") == 0)
		return read_proxies(r, v, s);
	if (strcmp(key, "public_url") == 0)
		return read_string(r, v, key, &s->public_url);
	if (strcmp(key, "development_token_logging") == 0) {
		s->development_token_logging = false;
		return is_null(v) ||
		       read_bool(r, v, key, &s->development_token_logging);
	}
	if (strcmp(key, "web") == 0)
		return read_map(r, v, key, web_field, s);
	if (strcmp(key, "limits") == 0)
		return read_map(r, v, key, int_field, &lim);
	if (strcmp(key, "retention") == 0)
		return read_map(r, v, key, int_field, &ret);
	if (strcmp(key, "admin") == 0)
		return read_admins(r, v, s);
	return true;	/* unknown keys are ignored (DATA.md 3) */
}

/* libyaml's own description of a syntax error, with its position. */
static bool
parser_error(const yaml_parser_t *p, const char *path, char *err,
	     size_t errlen)
{
	const char *problem = p->problem != NULL ? p->problem : "syntax error";

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return failf(err, errlen, "%s: out of memory", path);
	case YAML_READER_ERROR:
		return failf(err, errlen, "%s: invalid input at byte %lu: %s",
			     path, (unsigned long)p->problem_offset, problem);
	default:
		break;
	}
	if (p->context != NULL)
		return failf(err, errlen,
			     "%s: line %lu, column %lu: %s %s (from line %lu)",
			     path, (unsigned long)p->problem_mark.line + 1,
			     (unsigned long)p->problem_mark.column + 1,
			     p->context, problem,
			     (unsigned long)p->context_mark.line + 1);
	return failf(err, errlen, "%s: line %lu, column %lu: %s", path,
		     (unsigned long)p->problem_mark.line + 1,
		     (unsigned long)p->problem_mark.column + 1, problem);
}

/* Parses the open file into s (the file copy). */
static bool
parse_file(FILE *f, const char *path, struct vs_settings *s, char *err,
	   size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	struct rd r = { &doc, path, err, errlen };
	bool ok;

	if (!yaml_parser_initialize(&parser))
		return failf(err, errlen, "out of memory");
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		parser_error(&parser, path, err, errlen);
		yaml_parser_delete(&parser);
		return false;
	}
	root = yaml_document_get_root_node(&doc);
	if (root == NULL || is_null(root))
		ok = true;	/* empty file: every default applies */
	else if (root->type != YAML_MAPPING_NODE)
		ok = fail_at(&r, root, "the top level must be a mapping");
	else
		ok = each_pair(&r, root, top_field, s);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return ok;
}

static void
stamp_of(const struct stat *st, struct vs_config_stamp *out)
{
	memset(out, 0, sizeof(*out));
	out->present = true;
	out->dev = (uint64_t)st->st_dev;
	out->ino = (uint64_t)st->st_ino;
	out->size = (uint64_t)st->st_size;
	out->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 +
			st->st_mtim.tv_nsec;
	out->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 +
			st->st_ctim.tv_nsec;
}

/* Reads config.yml into cfg->file; an absent file is not an error. */
static bool
read_file(struct vs_config *cfg, char *err, size_t errlen)
{
	struct stat st;
	FILE *f = fopen(cfg->path, "re");
	bool ok;

	if (f == NULL) {
		if (errno == ENOENT)
			return true;
		return failf(err, errlen, "cannot open %s: %s", cfg->path,
			     strerror(errno));
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return failf(err, errlen, "%s: not a regular file", cfg->path);
	}
	cfg->file_exists = true;
	stamp_of(&st, &cfg->stamp);
	ok = parse_file(f, cfg->path, &cfg->file, err, errlen);
	if (fclose(f) != 0 && ok)
		return failf(err, errlen, "cannot read %s: %s", cfg->path,
			     strerror(errno));
	return ok;
}

bool
vs_config_load(struct vs_config *cfg, const char *data_dir, char *err,
	       size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->file.allow_registration = true;	/* absent = true (D4) */
	if (data_dir == NULL || *data_dir == '\0')
		return failf(err, errlen, "no data directory given");
	cfg->data_dir = strdup(data_dir);
	cfg->path = vs_path_join(data_dir, "config.yml");
	if (cfg->data_dir == NULL || cfg->path == NULL) {
		vs_config_free(cfg);
		return failf(err, errlen, "out of memory");
	}
	if (!read_file(cfg, err, errlen) || !build_eff(cfg, err, errlen)) {
		vs_config_free(cfg);
		return false;
	}
	return true;
}

static bool
stamp_equal(const struct vs_config_stamp *a, const struct vs_config_stamp *b)
{
	if (a->present != b->present)
		return false;
	return !a->present ||
	       (a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
		a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns);
}

/* Changed in the last two seconds (or "in the future"): a second write
 * within the file system's timestamp granularity could leave the same
 * stamp, so such a file is read again on every refresh. */
static bool
recently_changed(const struct vs_config_stamp *st)
{
	struct timespec ts;
	int64_t now_ns;

	if (!st->present)
		return false;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return true;
	now_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	return now_ns - st->mtime_ns < INT64_C(2000000000) ||
	       now_ns - st->ctime_ns < INT64_C(2000000000);
}

bool
vs_config_refresh_admins(struct vs_config *cfg, char *err, size_t errlen)
{
	struct vs_config_stamp now;
	struct vs_config fresh;
	struct stat st;
	struct vs_admin *a;
	size_t n;

	memset(&now, 0, sizeof(now));
	if (stat(cfg->path, &st) == 0)
		stamp_of(&st, &now);
	else if (errno != ENOENT)
		return failf(err, errlen, "cannot read %s: %s", cfg->path,
			     strerror(errno));
	if (stamp_equal(&now, &cfg->stamp) && !recently_changed(&now))
		return true;
	if (!vs_config_load(&fresh, cfg->data_dir, err, errlen))
		return false;
	/* Swap the lists: fresh takes the old ones and frees them. */
	a = cfg->file.admins;
	n = cfg->file.n_admins;
	cfg->file.admins = fresh.file.admins;
	cfg->file.n_admins = fresh.file.n_admins;
	fresh.file.admins = a;
	fresh.file.n_admins = n;
	a = cfg->eff.admins;
	n = cfg->eff.n_admins;
	cfg->eff.admins = fresh.eff.admins;
	cfg->eff.n_admins = fresh.eff.n_admins;
	fresh.eff.admins = a;
	fresh.eff.n_admins = n;
	cfg->stamp = fresh.stamp;
	vs_config_free(&fresh);
	return true;
}

void
vs_config_free(struct vs_config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->data_dir);
	free(cfg->path);
	settings_free(&cfg->file);
	settings_free(&cfg->eff);
	memset(cfg, 0, sizeof(*cfg));
}

/* ------------------------------------------------------------------ */
/* Overrides (DATA.md 2, D26: eff only)                                */
/* ------------------------------------------------------------------ */

static bool
given(const char *s)
{
	return s != NULL && *s != '\0';
}

/* The listen override by DATA.md 2's precedence (--listen > --port >
 * VERSTAK_LISTEN), or NULL when none is given; *oom is set when one was
 * given but could not be allocated. */
static char *
listen_override(const struct vs_overrides *ov, bool *oom)
{
	char *s;

	if (given(ov->listen))
		s = strdup(ov->listen);
	else if (ov->port > 0)
		s = loopback_listen(ov->port);
	else if (given(ov->env_listen))
		s = strdup(ov->env_listen);
	else
		return NULL;
	*oom = s == NULL;
	return s;
}

bool
vs_config_apply_overrides(struct vs_config *cfg, const struct vs_overrides *ov,
			  char *err, size_t errlen)
{
	char *listen, *url = NULL, **proxies = NULL;
	bool oom = false;

	if (ov == NULL)
		return true;
	if (ov->port < 0 || ov->port > 65535)
		return failf(err, errlen, "--port: %d is not a valid port",
			     ov->port);
	/* Everything is prepared first so a failure changes nothing. */
	if (given(ov->env_trusted_proxies) &&
	    !proxies_from_csv(ov->env_trusted_proxies, &proxies, err, errlen))
		return false;
	listen = listen_override(ov, &oom);
	if (!is_blank(ov->env_public_url)) {
		url = trimmed_copy(ov->env_public_url, strlen(ov->env_public_url));
		oom = oom || url == NULL;
	}
	if (oom) {
		free(listen);
		free(url);
		strv_free(proxies);
		return failf(err, errlen, "out of memory");
	}
	if (listen != NULL) {
		free(cfg->eff.listen);
		cfg->eff.listen = listen;
		if (!given(ov->listen) && ov->port > 0)
			cfg->eff.port = ov->port;
	}
	if (url != NULL) {
		free(cfg->eff.public_url);
		cfg->eff.public_url = url;
		cfg->public_url_overridden = true;
	}
	if (proxies != NULL) {
		strv_free(cfg->eff.trusted_proxies);
		cfg->eff.trusted_proxies = proxies;
	}
	return true;
}

const char *
vs_config_listen(const struct vs_config *cfg)
{
	return cfg->eff.listen;
}

/* ------------------------------------------------------------------ */
/* Writing config.yml                                                  */
/* ------------------------------------------------------------------ */

/* Decodes one UTF-8 sequence at s; returns its length (0 = invalid:
 * overlong, surrogate, out of range or truncated). */
static size_t
utf8_next(const unsigned char *s, uint32_t *cp)
{
	size_t n;
	uint32_t c = s[0], min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if ((c & 0xE0) == 0xC0)
		n = 2, c &= 0x1F, min = 0x80;
	else if ((c & 0xF0) == 0xE0)
		n = 3, c &= 0x0F, min = 0x800;
	else if ((c & 0xF8) == 0xF0)
		n = 4, c &= 0x07, min = 0x10000;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return n;
}

/* Code points that may appear as themselves inside a double-quoted
 * scalar: printable (YAML 1.2 c-printable) and not a line break libyaml
 * would fold (U+0085, U+2028, U+2029). */
static bool
literal_ok(uint32_t c)
{
	if (c == '"' || c == '\\')
		return false;
	if (c >= 0x20 && c <= 0x7E)
		return true;
	if (c == 0x85 || c == 0x2028 || c == 0x2029)
		return false;
	return (c >= 0xA0 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD) ||
	       (c >= 0x10000 && c <= 0x10FFFF);
}

static void
put_escape(struct vs_buf *b, uint32_t c)
{
	switch (c) {
	case '"': vs_buf_puts(b, "\\\""); return;
	case '\\': vs_buf_puts(b, "\\\\"); return;
	case '\n': vs_buf_puts(b, "\\n"); return;
	case '\t': vs_buf_puts(b, "\\t"); return;
	case '\r': vs_buf_puts(b, "\\r"); return;
	default: break;
	}
	if (c < 0x100)
		vs_buf_printf(b, "\\x%02X", (unsigned)c);
	else if (c < 0x10000)
		vs_buf_printf(b, "\\u%04X", (unsigned)c);
	else
		vs_buf_printf(b, "\\U%08X", (unsigned)c);
}

/* Double-quoted scalar; false when s is not valid UTF-8 (which no YAML
 * reader could read back). */
static bool
put_quoted(struct vs_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	vs_buf_puts(b, "\"");
	while (*p != '\0') {
		uint32_t c;
		size_t n = utf8_next(p, &c);
		if (n == 0)
			return false;
		if (literal_ok(c))
			vs_buf_append(b, p, n);
		else
			put_escape(b, c);
		p += n;
	}
	vs_buf_puts(b, "\"");
	return true;
}

/* Would s read back as something other than this string if unquoted
 * (a null, a bool or a number)? */
static bool
looks_typed(const char *s)
{
	static const char *const words[] = { "~", "null", "true", "false",
		"yes", "no", "on", "off", "y", "n" };
	char *end;

	for (size_t i = 0; i < NKEYS(words); i++)
		if (strcasecmp(s, words[i]) == 0)
			return true;
	if (s[0] == '0' && s[1] != '\0' && strchr("oObBxX", s[1]) != NULL)
		return true;
	(void)strtod(s, &end);
	if (*end == '\0')
		return true;
	(void)strtoll(s, &end, 0);
	return *end == '\0';
}

/* ASCII letter or digit, whatever the process locale says. */
static bool
ascii_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z');
}

/* Plain (unquoted) only for a conservative character set that can never
 * start an indicator or a comment, e.g. "127.0.0.1:48150",
 * "Verstak Sync Server", bcrypt hashes and URLs without '#'. Everything
 * else is double-quoted. */
static bool
plain_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || !(ascii_alnum((unsigned char)s[0]) || s[0] == '/' ||
			s[0] == '$'))
		return false;
	if (s[n - 1] == ' ' || s[n - 1] == ':')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!ascii_alnum(c) && strchr(" ._/:@+-$=?&%", c) == NULL)
			return false;
		if (c == ':' && s[i + 1] == ' ')
			return false;
	}
	return !looks_typed(s);
}

static bool
put_scalar(struct vs_buf *b, const char *s)
{
	if (s == NULL)
		s = "";
	if (!plain_ok(s))
		return put_quoted(b, s);
	vs_buf_puts(b, s);	/* OOM is checked once, on the whole buffer */
	return true;
}

/* "key: value\n" for a non-empty string; empty/absent is omitted. */
static bool
put_str_key(struct vs_buf *b, const char *indent, const char *key,
	    const char *v)
{
	if (v == NULL || *v == '\0')
		return true;
	vs_buf_printf(b, "%s%s: ", indent, key);
	if (!put_scalar(b, v))
		return false;
	vs_buf_puts(b, "\n");
	return true;
}

static bool
put_int_map(struct vs_buf *b, const char *section, const void *base,
	    const struct int_key *keys, size_t n)
{
	bool any = false;

	for (size_t i = 0; i < n; i++)
		any = any || int_get(base, &keys[i]) != 0;
	if (!any)
		return true;
	vs_buf_printf(b, "%s:\n", section);
	for (size_t i = 0; i < n; i++) {
		int64_t v = int_get(base, &keys[i]);
		if (v != 0)
			vs_buf_printf(b, "    %s: %lld\n", keys[i].name,
				      (long long)v);
	}
	return true;
}

static bool
put_admins(struct vs_buf *b, const struct vs_settings *s)
{
	if (s->n_admins == 0) {
		vs_buf_puts(b, "admin: []\n");
		return true;
	}
	vs_buf_puts(b, "admin:\n");
	for (size_t i = 0; i < s->n_admins; i++) {
		const struct vs_admin *a = &s->admins[i];
		/* Both keys always: an entry must stay an entry. */
		vs_buf_puts(b, "    - username: ");
		if (!put_scalar(b, a->username))
			return false;
		vs_buf_puts(b, "\n      password_hash: ");
		if (!put_scalar(b, a->password_hash))
			return false;
		vs_buf_puts(b, "\n");
	}
	return true;
}

static bool
put_proxies(struct vs_buf *b, char *const *v)
{
	if (strv_len(v) == 0)
		return true;
	vs_buf_puts(b, "trusted_proxies:\n");
	for (size_t i = 0; v[i] != NULL; i++) {
		vs_buf_puts(b, "    - ");
		if (!put_scalar(b, v[i]))
			return false;
		vs_buf_puts(b, "\n");
	}
	return true;
}

/* The file copy in the reference's key order and layout (DATA.md 3):
 * empty, zero and false values are omitted, except allow_registration
 * (D4) and admin. */
static bool
render(struct vs_buf *b, const struct vs_settings *s, char *err,
       size_t errlen)
{
	bool ok = true;

	if (s->port != 0)
		vs_buf_printf(b, "port: %lld\n", (long long)s->port);
	ok = ok && put_str_key(b, "", "listen", s->listen);
	ok = ok && put_proxies(b, s->trusted_proxies);
	ok = ok && put_str_key(b, "", "public_url", s->public_url);
	if (ok && s->development_token_logging)
		vs_buf_puts(b, "development_token_logging: true\n");
	if (ok)
		vs_buf_puts(b, "web:\n");
	ok = ok && put_str_key(b, "    ", "default_locale", s->default_locale);
	if (ok)
		vs_buf_printf(b, "    allow_registration: %s\n",
			      s->allow_registration ? "true" : "false");
	ok = ok && put_str_key(b, "    ", "server_name", s->server_name);
	ok = ok && put_int_map(b, "limits", &s->limits, limit_keys,
			       NKEYS(limit_keys));
	ok = ok && put_int_map(b, "retention", &s->retention, retention_keys,
			       NKEYS(retention_keys));
	ok = ok && put_admins(b, s);
	if (!ok)
		return failf(err, errlen, "a setting is not valid UTF-8");
	if (b->oom)
		return failf(err, errlen, "out of memory");
	return true;
}

/* When run as root (e.g. `sudo ... --admin-user`), the new file keeps
 * the owner of the file it replaces, or else of the data directory, so
 * the service account can still read it (DATA.md 1). */
static bool
keep_owner(int fd, const char *path, const char *dir)
{
	struct stat want, have;

	if (geteuid() != 0)
		return true;
	if (stat(path, &want) != 0 && stat(dir, &want) != 0)
		return true;
	if (fstat(fd, &have) != 0)
		return false;
	if (have.st_uid == want.st_uid && have.st_gid == want.st_gid)
		return true;
	return fchown(fd, want.st_uid, want.st_gid) == 0;
}

/* Writes data to the fresh temp file tmp and fsyncs it; returns the open
 * fd, or -1 with the temp file already removed. */
static int
write_temp(const char *tmp, const struct vs_config *cfg, const char *data,
	   size_t len, char *err, size_t errlen)
{
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		      0640);
	const char *step;

	if (fd < 0) {
		/* Nothing of ours exists: an EEXIST file is not ours to
		 * remove. */
		failf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	/* fchmod because the umask may have taken bits from 0640. */
	if (fchmod(fd, 0640) != 0)
		step = "chmod";
	else if (!keep_owner(fd, cfg->path, cfg->data_dir))
		step = "chown";
	else if (!vs_write_all(fd, data, len))
		step = "write";
	else if (fsync(fd) != 0)
		step = "fsync";
	else
		return fd;
	failf(err, errlen, "cannot %s %s: %s", step, tmp, strerror(errno));
	close(fd);
	unlink(tmp);
	return -1;
}

/* temp file, fsync, rename over config.yml, fsync of the directory. */
static bool
write_atomic(const struct vs_config *cfg, const char *data, size_t len,
	     char *err, size_t errlen)
{
	char name[sizeof(".config-") + 32], hex[33];
	char *tmp;
	int fd;

	if (!vs_random_hex(16, hex))
		return failf(err, errlen, "random number generator failed");
	snprintf(name, sizeof(name), ".config-%s", hex);
	if ((tmp = vs_path_join(cfg->data_dir, name)) == NULL)
		return failf(err, errlen, "out of memory");
	fd = write_temp(tmp, cfg, data, len, err, errlen);
	if (fd < 0) {
		free(tmp);
		return false;
	}
	if (close(fd) != 0) {
		failf(err, errlen, "cannot close %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (rename(tmp, cfg->path) != 0) {
		failf(err, errlen, "cannot rename %s to %s: %s", tmp, cfg->path,
		      strerror(errno));
		goto fail;
	}
	free(tmp);
	/* The new name must survive a crash too. */
	if (!vs_fsync_dir(cfg->data_dir))
		return failf(err, errlen,
			     "%s was replaced but fsync of %s failed: %s",
			     cfg->path, cfg->data_dir, strerror(errno));
	return true;
fail:
	unlink(tmp);
	free(tmp);
	return false;
}

bool
vs_config_save(const struct vs_config *cfg, char *err, size_t errlen)
{
	struct vs_buf b;
	bool ok;

	if (cfg == NULL || cfg->data_dir == NULL || cfg->path == NULL)
		return failf(err, errlen, "configuration not loaded");
	vs_buf_init(&b);
	ok = render(&b, &cfg->file, err, errlen) &&
	     write_atomic(cfg, b.data, b.len, err, errlen);
	vs_buf_free(&b);
	return ok;
}

/* ------------------------------------------------------------------ */
/* Changes: prepared on copies, saved, then swapped in, so a failed     */
/* save leaves memory as it was.                                        */
/* ------------------------------------------------------------------ */

static bool
commit(struct vs_config *cfg, struct vs_settings *nfile,
       struct vs_settings *neff, char *err, size_t errlen)
{
	struct vs_config tmp = *cfg;

	tmp.file = *nfile;
	if (!vs_config_save(&tmp, err, errlen)) {
		settings_free(nfile);
		settings_free(neff);
		return false;
	}
	settings_free(&cfg->file);
	settings_free(&cfg->eff);
	cfg->file = *nfile;
	cfg->eff = *neff;
	return true;
}

/* Replaces the hash of every entry named username, else appends one. */
static bool
admins_set(struct vs_settings *s, const char *username, const char *hash)
{
	struct vs_admin *na;
	bool found = false;

	for (size_t i = 0; i < s->n_admins; i++) {
		if (s->admins[i].username == NULL ||
		    strcmp(s->admins[i].username, username) != 0)
			continue;
		if (!set_field(&s->admins[i].password_hash, hash))
			return false;
		found = true;
	}
	if (found)
		return true;
	na = realloc(s->admins, (s->n_admins + 1) * sizeof(*na));
	if (na == NULL)
		return false;
	s->admins = na;
	memset(&na[s->n_admins], 0, sizeof(*na));
	s->n_admins++;
	return set_field(&na[s->n_admins - 1].username, username) &&
	       set_field(&na[s->n_admins - 1].password_hash, hash);
}

/* Copies both settings for a change; false (reason set) on OOM. */
static bool
copy_both(const struct vs_config *cfg, struct vs_settings *nf,
	  struct vs_settings *ne, char *err, size_t errlen)
{
	if (!settings_copy(nf, &cfg->file))
		return failf(err, errlen, "out of memory");
	if (!settings_copy(ne, &cfg->eff)) {
		settings_free(nf);
		return failf(err, errlen, "out of memory");
	}
	return true;
}

bool
vs_config_set_admin(struct vs_config *cfg, const char *username,
		    const char *password_hash, char *err, size_t errlen)
{
	struct vs_settings nf, ne;

	if (username == NULL || *username == '\0')
		return failf(err, errlen, "admin username is empty");
	if (password_hash == NULL || *password_hash == '\0')
		return failf(err, errlen, "admin password hash is empty");
	if (!copy_both(cfg, &nf, &ne, err, errlen))
		return false;
	if (!admins_set(&nf, username, password_hash) ||
	    !admins_set(&ne, username, password_hash)) {
		settings_free(&nf);
		settings_free(&ne);
		return failf(err, errlen, "out of memory");
	}
	return commit(cfg, &nf, &ne, err, errlen);
}

/* Sets the four console fields in one settings copy. */
static bool
web_set(struct vs_settings *s, const char *locale, bool allow,
	const char *server_name, const char *public_url, bool set_url)
{
	s->allow_registration = allow;
	return set_field(&s->default_locale, locale) &&
	       set_field(&s->server_name, server_name) &&
	       (!set_url || set_field(&s->public_url, public_url));
}

bool
vs_config_set_web(struct vs_config *cfg, const char *default_locale,
		  bool allow_registration, const char *server_name,
		  const char *public_url, char *err, size_t errlen)
{
	struct vs_settings nf, ne;

	if (!copy_both(cfg, &nf, &ne, err, errlen))
		return false;
	/* A VERSTAK_PUBLIC_URL override keeps winning in eff (D26). */
	if (!web_set(&nf, default_locale, allow_registration, server_name,
		     public_url, true) ||
	    !web_set(&ne, default_locale, allow_registration, server_name,
		     public_url, !cfg->public_url_overridden) ||
	    !normalise_web(&ne)) {
		settings_free(&nf);
		settings_free(&ne);
		return failf(err, errlen, "out of memory");
	}
	return commit(cfg, &nf, &ne, err, errlen);
}
