/*
 * template.c - see template.h.
 *
 * A template is compiled once into a flat list of nodes; a section node
 * records where its body ends, so rendering is a walk over index ranges
 * with a chain of value scopes (innermost list item first).
 */
#include "template.h"
#include "locale.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEMPLATE_MAX_BYTES (1 << 20)
#define MAX_SECTION_DEPTH 16
#define MAX_PARTIAL_DEPTH 8

/* ------------------------------------------------------------------ */
/* Values                                                             */
/* ------------------------------------------------------------------ */

enum tv_kind { TV_STR, TV_BOOL, TV_LIST };

struct tvar {
	char *name;
	enum tv_kind kind;
	char *str;
	bool b;
	struct vs_tdata **items;
	size_t n, cap;
};

struct vs_tdata {
	struct tvar *v;
	size_t n, cap;
	bool *oom;          /* the root's flag, shared by every item */
	bool oom_root;
};

struct vs_tdata *
vs_td_new(void)
{
	struct vs_tdata *d = calloc(1, sizeof(*d));

	if (d != NULL)
		d->oom = &d->oom_root;
	return d;
}

static void
tvar_clear(struct tvar *v)
{
	free(v->str);
	v->str = NULL;
	for (size_t i = 0; i < v->n; i++)
		vs_td_free(v->items[i]);
	free(v->items);
	v->items = NULL;
	v->n = v->cap = 0;
	v->b = false;
}

void
vs_td_free(struct vs_tdata *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n; i++) {
		tvar_clear(&d->v[i]);
		free(d->v[i].name);
	}
	free(d->v);
	free(d);
}

static struct tvar *
find_var(const struct vs_tdata *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->v[i].name, name) == 0)
			return &d->v[i];
	return NULL;
}

/* The variable name in d, created or emptied; NULL on OOM (flagged). */
static struct tvar *
slot(struct vs_tdata *d, const char *name, enum tv_kind kind, bool keep_list)
{
	struct tvar *v;

	if (d == NULL)
		return NULL;
	v = find_var(d, name);
	if (v != NULL) {
		if (!(keep_list && v->kind == TV_LIST && kind == TV_LIST))
			tvar_clear(v);
		v->kind = kind;
		return v;
	}
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct tvar *nv = realloc(d->v, cap * sizeof(*nv));
		if (nv == NULL)
			goto oom;
		d->v = nv;
		d->cap = cap;
	}
	v = &d->v[d->n];
	memset(v, 0, sizeof(*v));
	v->name = strdup(name);
	if (v->name == NULL)
		goto oom;
	v->kind = kind;
	d->n++;
	return v;
oom:
	*d->oom = true;
	return NULL;
}

void
vs_td_str(struct vs_tdata *d, const char *name, const char *val)
{
	struct tvar *v = slot(d, name, TV_STR, false);

	if (v == NULL)
		return;
	v->str = strdup(val != NULL ? val : "");
	if (v->str == NULL)
		*d->oom = true;
}

void
vs_td_printf(struct vs_tdata *d, const char *name, const char *fmt, ...)
{
	struct tvar *v = slot(d, name, TV_STR, false);
	va_list ap;
	int n;

	if (v == NULL)
		return;
	va_start(ap, fmt);
	n = vasprintf(&v->str, fmt, ap);
	va_end(ap);
	if (n < 0) {
		v->str = NULL;
		*d->oom = true;
	}
}

void
vs_td_bool(struct vs_tdata *d, const char *name, bool b)
{
	struct tvar *v = slot(d, name, TV_BOOL, false);

	if (v != NULL)
		v->b = b;
}

void
vs_td_list(struct vs_tdata *d, const char *name)
{
	(void)slot(d, name, TV_LIST, true);
}

struct vs_tdata *
vs_td_item(struct vs_tdata *d, const char *name)
{
	struct tvar *v = slot(d, name, TV_LIST, true);
	struct vs_tdata *it;

	if (v == NULL)
		return NULL;
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 8;
		struct vs_tdata **ni = realloc(v->items, cap * sizeof(*ni));
		if (ni == NULL) {
			*d->oom = true;
			return NULL;
		}
		v->items = ni;
		v->cap = cap;
	}
	it = calloc(1, sizeof(*it));
	if (it == NULL) {
		*d->oom = true;
		return NULL;
	}
	it->oom = d->oom;
	v->items[v->n++] = it;
	return it;
}

bool
vs_td_ok(const struct vs_tdata *d)
{
	return d != NULL && !*d->oom;
}

/* ------------------------------------------------------------------ */
/* Escaping                                                           */
/* ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if none. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned long c, min;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2; c = s[0] & 0x1fu; min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3; c = s[0] & 0x0fu; min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4; c = s[0] & 0x07u; min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3fu);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return len;
}

bool
vs_html_escape(struct vs_buf *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str), i = 0, run = 0;

	/* Copies runs of harmless bytes in one append each. */
	while (i < n) {
		const char *rep = NULL;
		size_t len = 1;

		switch (s[i]) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default:
			len = utf8_len(s + i, n - i);
			if (len == 0) {
				rep = "\xef\xbf\xbd";	/* U+FFFD */
				len = 1;
			}
		}
		if (rep == NULL) {
			run += len;
			i += len;
			continue;
		}
		if (run > 0)
			vs_buf_append(out, s + i - run, run);
		run = 0;
		vs_buf_puts(out, rep);
		i += len;
	}
	if (run > 0)
		vs_buf_append(out, s + i - run, run);
	return !out->oom;
}

/* ------------------------------------------------------------------ */
/* Compiling                                                          */
/* ------------------------------------------------------------------ */

enum nkind { N_TEXT, N_VAR, N_TR, N_SEC, N_INV, N_PARTIAL };

struct node {
	enum nkind k;
	const char *text;   /* N_TEXT: into the source */
	size_t len;
	char *name;         /* other kinds: name, key or partial */
	size_t end;         /* sections: index after the body */
};

struct tpl {
	char *name;
	char *src;
	struct node *nodes;
	size_t n, cap;
};

struct vs_tpl_set {
	struct tpl *t;
	size_t n;
	struct vs_i18n i18n;
};

static void
tpl_free(struct tpl *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->nodes[i].name);
	free(t->nodes);
	free(t->src);
	free(t->name);
	memset(t, 0, sizeof(*t));
}

static struct node *
add_node(struct tpl *t, enum nkind k)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 32;
		struct node *nn = realloc(t->nodes, cap * sizeof(*nn));
		if (nn == NULL)
			return NULL;
		t->nodes = nn;
		t->cap = cap;
	}
	memset(&t->nodes[t->n], 0, sizeof(t->nodes[0]));
	t->nodes[t->n].k = k;
	return &t->nodes[t->n++];
}

static bool
name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* Trimmed tag body must be a name; returns a copy or NULL. */
static char *
tag_name(const char *s, size_t n)
{
	char *r;

	while (n > 0 && *s == ' ') {
		s++;
		n--;
	}
	while (n > 0 && s[n - 1] == ' ')
		n--;
	if (n == 0)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return NULL;
	r = malloc(n + 1);
	if (r != NULL) {
		memcpy(r, s, n);
		r[n] = '\0';
	}
	return r;
}

/* A tag alone on its line (only blanks around it) takes its line with
 * it, so section markup laid out one tag per line leaves no blank lines
 * in the page. *after gets how many bytes after the tag to skip;
 * *before how many blanks before it (on that line) to drop. */
static bool
standalone(const char *src, const char *open, const char *end,
	   size_t *before, size_t *after)
{
	const char *ls = open, *q = end;

	while (ls > src && (ls[-1] == ' ' || ls[-1] == '\t'))
		ls--;
	if (ls > src && ls[-1] != '\n')
		return false;
	while (*q == ' ' || *q == '\t')
		q++;
	if (*q == '\r')
		q++;
	if (*q != '\n' && *q != '\0')
		return false;
	if (*q == '\n')
		q++;
	*before = (size_t)(open - ls);
	*after = (size_t)(q - end);
	return true;
}

/* Drops the blanks before a standalone tag from the text node that ends
 * at the tag, and returns where compiling goes on. */
static const char *
skip_standalone(struct tpl *t, const char *open, const char *end)
{
	size_t before, after;

	if (!standalone(t->src, open, end, &before, &after))
		return end;
	/* The text before the tag is the last node, or the one before it
	 * when the tag itself was just added (an opening or a partial). */
	for (size_t i = t->n; i > 0 && i + 2 > t->n; i--) {
		struct node *nd = &t->nodes[i - 1];
		if (nd->k == N_TEXT && nd->text + nd->len == open &&
		    nd->len >= before) {
			nd->len -= before;
			break;
		}
	}
	return end + after;
}

/* Compiles t->src. err gets "name:line: reason". */
static bool
compile(struct tpl *t, char *err, size_t errlen)
{
	size_t stack[MAX_SECTION_DEPTH], depth = 0;
	const char *p = t->src;

#define FAIL(...) do { \
		int line_ = 1; \
		for (const char *q_ = t->src; q_ < p; q_++) \
			line_ += *q_ == '\n'; \
		snprintf(err, errlen, "%s.html:%d: ", t->name, line_); \
		size_t used_ = strlen(err); \
		snprintf(err + used_, errlen - used_, __VA_ARGS__); \
		return false; \
	} while (0)

	while (*p != '\0') {
		const char *open = strstr(p, "{{"), *close, *body;
		struct node *nd;
		enum nkind k;
		size_t blen;
		char *name;

		if (open == NULL)
			open = p + strlen(p);
		if (open > p) {
			if ((nd = add_node(t, N_TEXT)) == NULL)
				FAIL("out of memory");
			nd->text = p;
			nd->len = (size_t)(open - p);
			p = open;
			continue;
		}
		close = strstr(p + 2, "}}");
		if (close == NULL)
			FAIL("unclosed tag");
		body = p + 2;
		blen = (size_t)(close - body);
		if (blen > 0 && body[0] == '!') {
			p = skip_standalone(t, p, close + 2);
			continue;
		}
		k = N_VAR;
		if (blen >= 2 && body[0] == 't' && body[1] == ':') {
			k = N_TR;
			body += 2;
			blen -= 2;
		} else if (blen > 0 && strchr("#^/>", body[0]) != NULL) {
			k = body[0] == '#' ? N_SEC : body[0] == '^' ? N_INV :
			    body[0] == '>' ? N_PARTIAL : N_TEXT /* close */;
			body++;
			blen--;
		}
		name = tag_name(body, blen);
		if (name == NULL)
			FAIL("malformed tag {{%.*s}}", (int)(close - p - 2), p + 2);
		if (k == N_TEXT) {	/* a closing tag */
			if (depth == 0 ||
			    strcmp(t->nodes[stack[depth - 1]].name, name) != 0) {
				free(name);
				FAIL("unexpected closing tag");
			}
			free(name);
			t->nodes[stack[--depth]].end = t->n;
			p = skip_standalone(t, p, close + 2);
			continue;
		}
		if (k == N_TR && !vs_i18n_key_shaped(name)) {
			free(name);
			FAIL("malformed translation key");
		}
		if ((nd = add_node(t, k)) == NULL) {
			free(name);
			FAIL("out of memory");
		}
		nd->name = name;
		if (k == N_SEC || k == N_INV) {
			if (depth == MAX_SECTION_DEPTH)
				FAIL("sections nested too deep");
			stack[depth++] = t->n - 1;
		}
		p = (k == N_VAR || k == N_TR) ? close + 2
					      : skip_standalone(t, p, close + 2);
	}
	if (depth > 0)
		FAIL("section {{%s}} is not closed", t->nodes[stack[depth - 1]].name);
#undef FAIL
	return true;
}

static const struct tpl *
find_tpl(const struct vs_tpl_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->t[i].name, name) == 0)
			return &set->t[i];
	return NULL;
}

/* Every partial exists and every translation key is in every catalog. */
static bool
check_refs(const struct vs_tpl_set *set, char *err, size_t errlen)
{
	for (size_t i = 0; i < set->n; i++) {
		const struct tpl *t = &set->t[i];
		for (size_t j = 0; j < t->n; j++) {
			const struct node *nd = &t->nodes[j];
			if (nd->k == N_PARTIAL && find_tpl(set, nd->name) == NULL) {
				snprintf(err, errlen, "%s.html: unknown partial %s",
					 t->name, nd->name);
				return false;
			}
			if (nd->k == N_TR && !vs_i18n_has(&set->i18n, nd->name)) {
				snprintf(err, errlen,
					 "%s.html: key %s is missing from a catalog",
					 t->name, nd->name);
				return false;
			}
		}
	}
	return true;
}

static bool
read_file(const char *path, char **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	*out = NULL;
	if (f == NULL) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return false;
	}
	buf = malloc(TEMPLATE_MAX_BYTES + 1);
	if (buf == NULL) {
		(void)fclose(f);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	n = fread(buf, 1, TEMPLATE_MAX_BYTES + 1, f);
	if (ferror(f) || n > TEMPLATE_MAX_BYTES || memchr(buf, '\0', n) != NULL) {
		(void)fclose(f);
		free(buf);
		snprintf(err, errlen, "cannot read %s (error, NUL or too large)", path);
		return false;
	}
	(void)fclose(f);	/* read-only */
	buf[n] = '\0';
	*out = buf;
	return true;
}

/* "name.html" with a plain name -> "name"; NULL when not a template. */
static char *
template_name(const char *file)
{
	size_t n = strlen(file);
	char *r;

	if (n <= 5 || strcmp(file + n - 5, ".html") != 0)
		return NULL;
	for (size_t i = 0; i < n - 5; i++)
		if (!name_char(file[i]) || file[i] == '.')
			return NULL;
	r = strndup(file, n - 5);
	return r;
}

static bool
add_template(struct vs_tpl_set *set, const char *dir, const char *file,
	     char *name, size_t *cap, char *err, size_t errlen)
{
	struct tpl *t;
	char *path;

	if (set->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 32;
		struct tpl *nt = realloc(set->t, nc * sizeof(*nt));
		if (nt == NULL) {
			free(name);
			snprintf(err, errlen, "out of memory");
			return false;
		}
		set->t = nt;
		*cap = nc;
	}
	t = &set->t[set->n++];
	memset(t, 0, sizeof(*t));
	t->name = name;
	path = vs_path_join(dir, file);
	if (path == NULL) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	if (!read_file(path, &t->src, err, errlen)) {
		free(path);
		return false;
	}
	free(path);
	return compile(t, err, errlen);
}

struct vs_tpl_set *
vs_tpl_load(const char *dir, char *err, size_t errlen)
{
	struct vs_tpl_set *set = calloc(1, sizeof(*set));
	char *i18n_dir = NULL;
	struct dirent *de;
	size_t cap = 0;
	DIR *dh = NULL;
	bool ok = false;

	if (set == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	i18n_dir = vs_path_join(dir, "i18n");
	if (i18n_dir == NULL) {
		snprintf(err, errlen, "out of memory");
		free(set);
		return NULL;
	}
	if (!vs_i18n_load(&set->i18n, i18n_dir, err, errlen)) {
		free(i18n_dir);
		free(set);
		return NULL;
	}
	free(i18n_dir);
	dh = opendir(dir);
	if (dh == NULL) {
		snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
		goto out;
	}
	while ((de = readdir(dh)) != NULL) {
		char *name = template_name(de->d_name);
		if (name == NULL)
			continue;
		if (!add_template(set, dir, de->d_name, name, &cap, err, errlen))
			goto out;
	}
	if (set->n == 0) {
		snprintf(err, errlen, "no templates in %s", dir);
		goto out;
	}
	ok = check_refs(set, err, errlen);
out:
	if (dh != NULL)
		(void)closedir(dh);
	if (!ok) {
		vs_tpl_free(set);
		return NULL;
	}
	return set;
}

void
vs_tpl_free(struct vs_tpl_set *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->n; i++)
		tpl_free(&set->t[i]);
	free(set->t);
	vs_i18n_free(&set->i18n);
	free(set);
}

bool
vs_tpl_exists(const struct vs_tpl_set *set, const char *name)
{
	return set != NULL && find_tpl(set, name) != NULL;
}

const struct vs_i18n *
vs_tpl_i18n(const struct vs_tpl_set *set)
{
	return set != NULL ? &set->i18n : NULL;
}

void
vs_tpl_each_key(const struct vs_tpl_set *set,
		void (*fn)(const char *key, void *arg), void *arg)
{
	for (size_t i = 0; i < set->n; i++)
		for (size_t j = 0; j < set->t[i].n; j++)
			if (set->t[i].nodes[j].k == N_TR)
				fn(set->t[i].nodes[j].name, arg);
}

/* ------------------------------------------------------------------ */
/* Rendering                                                          */
/* ------------------------------------------------------------------ */

struct scope {
	const struct vs_tdata *d;
	const struct scope *up;
};

struct render {
	const struct vs_tpl_set *set;
	const char *locale;
	struct vs_buf *out;
	int partial_depth;
};

static const struct tvar *
lookup(const struct scope *sc, const char *name)
{
	for (; sc != NULL; sc = sc->up) {
		const struct tvar *v = find_var(sc->d, name);
		if (v != NULL)
			return v;
	}
	return NULL;
}

static bool render_tpl(struct render *r, const struct tpl *t,
		       const struct scope *sc);

static bool
truthy(const struct tvar *v)
{
	if (v == NULL)
		return false;
	switch (v->kind) {
	case TV_STR: return v->str != NULL && v->str[0] != '\0';
	case TV_BOOL: return v->b;
	case TV_LIST: return v->n > 0;
	}
	return false;
}

static bool
render_range(struct render *r, const struct tpl *t, size_t from, size_t to,
	     const struct scope *sc)
{
	size_t i = from;

	while (i < to) {
		const struct node *nd = &t->nodes[i];
		const struct tvar *v;
		const char *text;

		switch (nd->k) {
		case N_TEXT:
			vs_buf_append(r->out, nd->text, nd->len);
			i++;
			break;
		case N_VAR:
			v = lookup(sc, nd->name);
			if (v != NULL && v->kind != TV_STR) {
				vs_log_error("template %s: {{%s}} is not a string",
					     t->name, nd->name);
				return false;
			}
			if (v != NULL && !vs_html_escape(r->out, v->str))
				return false;
			i++;
			break;
		case N_TR:
			text = vs_i18n_get(&r->set->i18n, r->locale, nd->name);
			if (text == NULL)	/* checked at load; never here */
				return false;
			if (!vs_html_escape(r->out, text))
				return false;
			i++;
			break;
		case N_INV:
			v = lookup(sc, nd->name);
			if (!truthy(v) &&
			    !render_range(r, t, i + 1, nd->end, sc))
				return false;
			i = nd->end;
			break;
		case N_SEC:
			v = lookup(sc, nd->name);
			if (v != NULL && v->kind == TV_LIST) {
				for (size_t k = 0; k < v->n; k++) {
					struct scope inner = { v->items[k], sc };
					if (!render_range(r, t, i + 1, nd->end,
							  &inner))
						return false;
				}
			} else if (truthy(v) &&
				   !render_range(r, t, i + 1, nd->end, sc)) {
				return false;
			}
			i = nd->end;
			break;
		case N_PARTIAL:
			if (!render_tpl(r, find_tpl(r->set, nd->name), sc))
				return false;
			i++;
			break;
		}
	}
	return !r->out->oom;
}

static bool
render_tpl(struct render *r, const struct tpl *t, const struct scope *sc)
{
	bool ok;

	if (t == NULL)
		return false;
	if (r->partial_depth >= MAX_PARTIAL_DEPTH) {
		vs_log_error("template %s: partials nested too deep", t->name);
		return false;
	}
	r->partial_depth++;
	ok = render_range(r, t, 0, t->n, sc);
	r->partial_depth--;
	return ok;
}

bool
vs_tpl_render(const struct vs_tpl_set *set, const char *name,
	      const char *locale, const struct vs_tdata *d, struct vs_buf *out)
{
	struct render r = { set, vs_locale_supported(locale) ? locale : "en",
			    out, 0 };
	struct scope top = { d, NULL };
	const struct tpl *t;

	if (set == NULL || d == NULL || !vs_td_ok(d))
		return false;
	t = find_tpl(set, name);
	if (t == NULL) {
		vs_log_error("no template named %s", name);
		return false;
	}
	return render_tpl(&r, t, &top);
}

/* ------------------------------------------------------------------ */
/* Where templates live, and the process's set                        */
/* ------------------------------------------------------------------ */

char *
vs_template_dir(void)
{
#ifndef VS_TEMPLATE_DIR
#define VS_TEMPLATE_DIR NULL
#endif
#ifndef VS_SOURCE_TEMPLATE_DIR
#define VS_SOURCE_TEMPLATE_DIR NULL
#endif
	return vs_find_share_dir("VERSTAK_TEMPLATE_DIR", "templates",
				 VS_TEMPLATE_DIR, VS_SOURCE_TEMPLATE_DIR);
}

static struct vs_tpl_set *global_set;

const struct vs_tpl_set *
vs_tpl_global(void)
{
	char err[512], *dir;

	if (global_set != NULL)
		return global_set;
	dir = vs_template_dir();
	if (dir == NULL) {
		vs_log_error("templates: out of memory");
		return NULL;
	}
	global_set = vs_tpl_load(dir, err, sizeof(err));
	if (global_set == NULL)
		vs_log_error("cannot load the templates from %s: %s", dir, err);
	free(dir);
	return global_set;
}

void
vs_tpl_global_free(void)
{
	vs_tpl_free(global_set);
	global_set = NULL;
}
