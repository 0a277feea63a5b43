/*
 * locale.c - see locale.h.
 */
#include "locale.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

const char *const vs_locales[VS_LOCALE_COUNT] = { "en", "ru" };

bool
vs_locale_supported(const char *s)
{
	return s != NULL && (strcmp(s, "en") == 0 || strcmp(s, "ru") == 0);
}

const char *
vs_locale_default(const char *configured)
{
	if (configured != NULL && strcmp(configured, "ru") == 0)
		return "ru";
	return "en";
}

static bool
is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* Does the language tag s[0..n) name lang ("ru" matches "ru" and
 * "ru-RU", never "rus")? Case-insensitive as tags are. */
static bool
tag_is(const char *s, size_t n, const char *lang)
{
	size_t l = strlen(lang);

	if (n < l || strncasecmp(s, lang, l) != 0)
		return false;
	return n == l || s[l] == '-';
}

const char *
vs_locale_from_accept(const char *h)
{
	const char *p = h;

	if (h == NULL)
		return NULL;
	while (*p != '\0') {
		const char *end = strchr(p, ',');
		const char *stop = end != NULL ? end : p + strlen(p);
		const char *semi;
		const char *s = p, *e;

		/* The tag is what precedes any ";q=..." parameter; q-values
		 * are ignored on purpose (API.md 14: header order). */
		semi = memchr(p, ';', (size_t)(stop - p));
		e = semi != NULL ? semi : stop;
		while (s < e && is_ows(*s))
			s++;
		while (e > s && is_ows(e[-1]))
			e--;
		if (tag_is(s, (size_t)(e - s), "ru"))
			return "ru";
		if (tag_is(s, (size_t)(e - s), "en"))
			return "en";
		if (end == NULL)
			break;
		p = end + 1;
	}
	return NULL;
}

const char *
vs_locale_pick(const char *cookie, const char *accept_language,
	       const char *configured_default)
{
	const char *def = vs_locale_default(configured_default);
	const char *al;

	if (cookie != NULL) {
		if (vs_locale_supported(cookie))
			return strcmp(cookie, "ru") == 0 ? "ru" : "en";
		if (strcmp(cookie, "system") != 0)
			return def;	/* an unknown value: the default */
	}
	al = vs_locale_from_accept(accept_language);
	return al != NULL ? al : def;
}

const char *
vs_locale_cookie_value(const char *field)
{
	if (field != NULL && strcmp(field, "ru") == 0)
		return "ru";
	if (field != NULL && strcmp(field, "en") == 0)
		return "en";
	return "system";
}
