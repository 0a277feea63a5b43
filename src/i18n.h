/*
 * i18n.h - the message catalogs of the web pages (API.md 14, D1).
 *
 * Owns: reading <template dir>/i18n/en.txt and ru.txt ("key = value"
 * lines, UTF-8, '#' comments), refusing a catalog with a malformed line,
 * a duplicate or an empty text, and refusing the pair unless both hold
 * exactly the same keys; lookups by (locale, key).
 * Must never: hand out a key or a placeholder as user text (a missing
 * key is an error for the caller, never a fallback string), or escape
 * anything (the template layer escapes every text it emits).
 */
#ifndef VS_I18N_H
#define VS_I18N_H

#include <stdbool.h>
#include <stddef.h>

struct vs_i18n_entry {
	const char *key;
	const char *text;
};

struct vs_catalog {
	char *buf;                      /* the file; entries point into it */
	struct vs_i18n_entry *e;        /* sorted by key */
	size_t n;
};

/* Catalogs in the order of vs_locales (en, ru). */
struct vs_i18n {
	struct vs_catalog cat[2];
};

/* Loads dir/en.txt and dir/ru.txt. On failure err says which file and
 * line, and nothing needs freeing. */
bool vs_i18n_load(struct vs_i18n *i, const char *dir, char *err, size_t errlen);
/* Parses one catalog from text (copied); name is used in messages. */
bool vs_catalog_parse(struct vs_catalog *c, const char *text, size_t len,
		      const char *name, char *err, size_t errlen);
void vs_catalog_free(struct vs_catalog *c);
void vs_i18n_free(struct vs_i18n *i);

/* The text for key in locale ("en" or "ru"; anything else reads as
 * "en"); NULL when the key does not exist. */
const char *vs_i18n_get(const struct vs_i18n *i, const char *locale,
			const char *key);
/* True when key exists in every catalog. */
bool vs_i18n_has(const struct vs_i18n *i, const char *key);
/* Is s shaped like a catalog key (letters, digits, '_', '.'; a dot
 * inside)? Used to vet keys that arrive in query strings. */
bool vs_i18n_key_shaped(const char *s);

#endif
