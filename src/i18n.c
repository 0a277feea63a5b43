/*
 * i18n.c - see i18n.h. Catalog files are small (a few hundred lines), so
 * each is read whole, split in place, and its entries sorted once for
 * binary search.
 */
#include "i18n.h"
#include "locale.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CATALOG_MAX_BYTES (1 << 20)

static bool
key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.';
}

bool
vs_i18n_key_shaped(const char *s)
{
	size_t n;

	if (s == NULL || *s == '\0')
		return false;
	n = strlen(s);
	if (n > 128 || s[0] == '.' || s[n - 1] == '.' || strchr(s, '.') == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!key_char(s[i]) || (s[i] == '.' && s[i + 1] == '.'))
			return false;
	return true;
}

static int
entry_cmp(const void *a, const void *b)
{
	const struct vs_i18n_entry *x = a, *y = b;
	return strcmp(x->key, y->key);
}

static char *
trim_span(char *s, char *e)
{
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		e--;
	*e = '\0';
	return s;
}

void
vs_catalog_free(struct vs_catalog *c)
{
	free(c->buf);
	free(c->e);
	memset(c, 0, sizeof(*c));
}

/* Splits one "key = value" line; false with a reason on a bad line. */
static bool
parse_line(char *line, char *end, const char **key, const char **text,
	   const char **why)
{
	char *eq = memchr(line, '=', (size_t)(end - line));
	char *k, *v;

	if (eq == NULL) {
		*why = "missing '='";
		return false;
	}
	v = trim_span(eq + 1, end);
	k = trim_span(line, eq);
	if (!vs_i18n_key_shaped(k)) {
		*why = "malformed key";
		return false;
	}
	if (*v == '\0') {
		*why = "empty text";
		return false;
	}
	*key = k;
	*text = v;
	return true;
}

bool
vs_catalog_parse(struct vs_catalog *c, const char *text, size_t len,
		 const char *name, char *err, size_t errlen)
{
	size_t cap = 64, lineno = 0;
	char *p, *end;

	memset(c, 0, sizeof(*c));
	c->buf = malloc(len + 1);
	c->e = malloc(cap * sizeof(*c->e));
	if (c->buf == NULL || c->e == NULL)
		goto oom;
	memcpy(c->buf, text, len);
	c->buf[len] = '\0';
	if (strlen(c->buf) != len) {
		snprintf(err, errlen, "%s: contains a NUL byte", name);
		goto fail;
	}
	for (p = c->buf; p < c->buf + len; p = end + 1) {
		const char *why = NULL, *k, *v;
		char *s;

		end = strchr(p, '\n');
		if (end == NULL)
			end = c->buf + len;
		lineno++;
		*end = '\0';
		s = trim_span(p, end);
		if (*s == '\0' || *s == '#')
			continue;
		if (!parse_line(s, s + strlen(s), &k, &v, &why)) {
			snprintf(err, errlen, "%s:%zu: %s", name, lineno, why);
			goto fail;
		}
		if (c->n == cap) {
			struct vs_i18n_entry *ne;
			cap *= 2;
			ne = realloc(c->e, cap * sizeof(*ne));
			if (ne == NULL)
				goto oom;
			c->e = ne;
		}
		c->e[c->n].key = k;
		c->e[c->n].text = v;
		c->n++;
	}
	qsort(c->e, c->n, sizeof(*c->e), entry_cmp);
	for (size_t i = 1; i < c->n; i++) {
		if (strcmp(c->e[i - 1].key, c->e[i].key) == 0) {
			snprintf(err, errlen, "%s: duplicate key %s", name,
				 c->e[i].key);
			goto fail;
		}
	}
	return true;
oom:
	snprintf(err, errlen, "%s: out of memory", name);
fail:
	vs_catalog_free(c);
	return false;
}

static bool
read_whole(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0;
	bool ok = false;

	*out = NULL;
	if (f == NULL) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return false;
	}
	buf = malloc(CATALOG_MAX_BYTES + 1);
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	n = fread(buf, 1, CATALOG_MAX_BYTES + 1, f);
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read %s", path);
		goto out;
	}
	if (n > CATALOG_MAX_BYTES) {
		snprintf(err, errlen, "%s is too large", path);
		goto out;
	}
	*out = buf;
	*len = n;
	buf = NULL;
	ok = true;
out:
	free(buf);
	(void)fclose(f);	/* read-only: nothing to lose */
	return ok;
}

static const char *
lookup(const struct vs_catalog *c, const char *key)
{
	struct vs_i18n_entry probe = { key, NULL };
	const struct vs_i18n_entry *hit;

	if (c->n == 0)
		return NULL;
	hit = bsearch(&probe, c->e, c->n, sizeof(*c->e), entry_cmp);
	return hit != NULL ? hit->text : NULL;
}

/* Both catalogs must hold the same keys: a key present in one language
 * only would show a user the other language, or nothing. */
static bool
same_keys(const struct vs_i18n *i, char *err, size_t errlen)
{
	for (size_t a = 0; a < VS_LOCALE_COUNT; a++) {
		for (size_t b = 0; b < VS_LOCALE_COUNT; b++) {
			const struct vs_catalog *x = &i->cat[a], *y = &i->cat[b];
			for (size_t k = 0; k < x->n; k++) {
				if (lookup(y, x->e[k].key) == NULL) {
					snprintf(err, errlen,
						 "key %s is in %s.txt but not in %s.txt",
						 x->e[k].key, vs_locales[a],
						 vs_locales[b]);
					return false;
				}
			}
		}
	}
	return true;
}

bool
vs_i18n_load(struct vs_i18n *i, const char *dir, char *err, size_t errlen)
{
	memset(i, 0, sizeof(*i));
	for (size_t l = 0; l < VS_LOCALE_COUNT; l++) {
		char path[4096], *text = NULL;
		size_t len = 0;
		bool ok;

		if ((size_t)snprintf(path, sizeof(path), "%s/%s.txt", dir,
				     vs_locales[l]) >= sizeof(path)) {
			snprintf(err, errlen, "catalog path too long");
			vs_i18n_free(i);
			return false;
		}
		if (!read_whole(path, &text, &len, err, errlen)) {
			vs_i18n_free(i);
			return false;
		}
		ok = vs_catalog_parse(&i->cat[l], text, len, path, err, errlen);
		free(text);
		if (!ok) {
			vs_i18n_free(i);
			return false;
		}
	}
	if (!same_keys(i, err, errlen)) {
		vs_i18n_free(i);
		return false;
	}
	return true;
}

void
vs_i18n_free(struct vs_i18n *i)
{
	for (size_t l = 0; l < VS_LOCALE_COUNT; l++)
		vs_catalog_free(&i->cat[l]);
}

const char *
vs_i18n_get(const struct vs_i18n *i, const char *locale, const char *key)
{
	size_t l = (locale != NULL && strcmp(locale, "ru") == 0) ? 1 : 0;

	if (i == NULL || key == NULL)
		return NULL;
	return lookup(&i->cat[l], key);
}

bool
vs_i18n_has(const struct vs_i18n *i, const char *key)
{
	for (size_t l = 0; l < VS_LOCALE_COUNT; l++)
		if (lookup(&i->cat[l], key) == NULL)
			return false;
	return true;
}
