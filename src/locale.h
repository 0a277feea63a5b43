/*
 * locale.h - which language a page or a mail is in (API.md 14).
 *
 * Owns: the list of supported locales (en, ru), the default
 * (web.default_locale when supported, else en), the verstak_locale
 * cookie's meaning (ru/en force, system defers to Accept-Language) and
 * the Accept-Language rule (header order, q-values ignored).
 * Must never: return anything but "en" or "ru" from a pick, or trust a
 * cookie value as a locale without checking it.
 */
#ifndef VS_LOCALE_H
#define VS_LOCALE_H

#include <stdbool.h>

#define VS_LOCALE_COUNT 2
/* The supported locales, "en" first (the fallback). */
extern const char *const vs_locales[VS_LOCALE_COUNT];

/* True for exactly "en" or "ru". */
bool vs_locale_supported(const char *s);
/* web.default_locale if supported, else "en". */
const char *vs_locale_default(const char *configured);
/* First Accept-Language entry whose tag is en/en-* or ru/ru-*; NULL if
 * none. */
const char *vs_locale_from_accept(const char *accept_language);
/* The request's locale from the verstak_locale cookie value (NULL when
 * absent), the Accept-Language header (NULL or "" when absent) and the
 * configured default. */
const char *vs_locale_pick(const char *cookie, const char *accept_language,
			   const char *configured_default);
/* The value stored in verstak_locale for a POST /locale field: "ru",
 * "en" or "system" (anything else). */
const char *vs_locale_cookie_value(const char *field);

#endif
