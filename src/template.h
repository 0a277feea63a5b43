/*
 * template.h - the HTML template layer: page files from templates/,
 * rendered with values that are always HTML-escaped.
 *
 * Syntax (nothing else between "{{" and "}}" is accepted at load time):
 *   {{name}}               the value, HTML-escaped
 *   {{t:key}}              the catalog text for the page's locale, escaped
 *   {{#name}}...{{/name}}  section: once if name is true or a non-empty
 *                          string, once per item if it is a list (the
 *                          item's values shadow the outer ones)
 *   {{^name}}...{{/name}}  inverted section: when name is absent, false,
 *                          "" or an empty list
 *   {{>name}}              another template (partial) rendered in place
 *   {{! comment }}         dropped
 *
 * Owns: finding the template directory (VERSTAK_TEMPLATE_DIR, next to
 * the binary, the install path, the source tree), loading every *.html
 * file and the catalogs once per process, checking at load time that
 * every tag parses, every section closes, every partial exists and
 * every {{t:key}} exists in every catalog, and rendering.
 * Must never: emit a value unescaped (there is deliberately no raw-output
 * tag), or render a page with a text missing from a catalog.
 */
#ifndef VS_TEMPLATE_H
#define VS_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "i18n.h"
#include "util.h"

/* ---- Values handed to a template ---------------------------------- */

struct vs_tdata;

/* A new, empty set of values; NULL on OOM. */
struct vs_tdata *vs_td_new(void);
void vs_td_free(struct vs_tdata *d);
/* Sets name to a copy of val (NULL reads as ""), replacing any value. */
void vs_td_str(struct vs_tdata *d, const char *name, const char *val);
void vs_td_printf(struct vs_tdata *d, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void vs_td_bool(struct vs_tdata *d, const char *name, bool v);
/* Appends an item to the list name (created empty on first use) and
 * returns it, owned by d; NULL on OOM. vs_td_list(d, name) makes an
 * empty list, so an inverted section over it renders. */
struct vs_tdata *vs_td_item(struct vs_tdata *d, const char *name);
void vs_td_list(struct vs_tdata *d, const char *name);
/* False when any setter on d or its items ran out of memory. */
bool vs_td_ok(const struct vs_tdata *d);

/* ---- Templates ---------------------------------------------------- */

struct vs_tpl_set;

/* Loads every *.html of dir and the catalogs of dir/i18n. NULL with a
 * reason in err when anything fails to load or check. */
struct vs_tpl_set *vs_tpl_load(const char *dir, char *err, size_t errlen);
void vs_tpl_free(struct vs_tpl_set *set);

bool vs_tpl_exists(const struct vs_tpl_set *set, const char *name);
const struct vs_i18n *vs_tpl_i18n(const struct vs_tpl_set *set);
/* Calls fn for every {{t:key}} of every template (tests use it). */
void vs_tpl_each_key(const struct vs_tpl_set *set,
		     void (*fn)(const char *key, void *arg), void *arg);

/* Renders template name (file name without .html) in locale, appending
 * to out. False (out unusable) when name is unknown, a value is of the
 * wrong kind for its tag, or out ran out of memory. */
bool vs_tpl_render(const struct vs_tpl_set *set, const char *name,
		   const char *locale, const struct vs_tdata *d,
		   struct vs_buf *out);

/* Appends s HTML-escaped (& < > " ' and invalid UTF-8 as U+FFFD). */
bool vs_html_escape(struct vs_buf *out, const char *s);

/* The directory templates are loaded from (see the top comment); a
 * malloc'd path, NULL on OOM. */
char *vs_template_dir(void);

/* The process's template set, loaded on first use from
 * vs_template_dir(); NULL (logged once per attempt) when it cannot load. */
const struct vs_tpl_set *vs_tpl_global(void);
/* Frees the process's set (tests and leak checkers). */
void vs_tpl_global_free(void);

#endif
