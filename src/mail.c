/*
 * mail.c - the e-mails the server sends (see mail.h, API.md 13).
 *
 * Owns: reading server_smtp_config (DATA.md 6), the link base (D20),
 * the localized texts (D1), the message itself (RFC 2047 subject, Date,
 * Message-ID, MIME headers and transfer encoding, D23), the address
 * checks on From and To, the development-token log line, and handing a
 * finished job to smtp.c (background for tokens, D21; synchronous for
 * the administrator's test mail).
 *
 * Must never: block a request on the network, log a token unless
 * development_token_logging is on, build a link from request input, put
 * a byte outside printable ASCII into a header, or put an address into
 * a header that failed e-mail normalisation (no header injection).
 */
#include "mail.h"
#include "log.h"
#include "users.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sqlite3.h>

/* vs_email_normalize needs at least this much room. */
#define ADDR_MAX 256
/* RFC 5322 2.1.1: a line is at most 998 characters. */
#define LINE_MAX_7BIT 998
/* Raw bytes per RFC 2047 encoded word: 39 bytes are 52 base64
 * characters, so "Subject: =?UTF-8?B?...?=" stays within 76. */
#define EW_BYTES 39
/* Body base64 lines (RFC 2045: at most 76 characters). */
#define B64_LINE_BYTES 57

/* ------------------------------------------------------------------ */
/* Settings (DATA.md 6)                                               */
/* ------------------------------------------------------------------ */

static const char sql_settings[] =
	"SELECT key, value FROM server_smtp_config";

void
vs_smtp_settings_free(struct vs_smtp_settings *s)
{
	free(s->host);
	free(s->port);
	free(s->user);
	if (s->pass != NULL) {
		memset(s->pass, 0, strlen(s->pass));
		free(s->pass);
	}
	free(s->security);
	free(s->from);
	free(s->server_url);
	memset(s, 0, sizeof(*s));
}

/* The field for a key, or NULL for keys this server does not use. */
static char **
settings_field(struct vs_smtp_settings *s, const char *key)
{
	static const struct { const char *key; size_t off; } map[] = {
		{ "smtp_host", offsetof(struct vs_smtp_settings, host) },
		{ "smtp_port", offsetof(struct vs_smtp_settings, port) },
		{ "smtp_user", offsetof(struct vs_smtp_settings, user) },
		{ "smtp_pass", offsetof(struct vs_smtp_settings, pass) },
		{ "smtp_security", offsetof(struct vs_smtp_settings, security) },
		{ "smtp_from", offsetof(struct vs_smtp_settings, from) },
		{ "server_url", offsetof(struct vs_smtp_settings, server_url) },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(key, map[i].key) == 0)
			return (char **)(void *)((char *)s + map[i].off);
	return NULL;
}

static bool
settings_defaults(struct vs_smtp_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->host = strdup("");
	s->port = strdup("");
	s->user = strdup("");
	s->pass = strdup("");
	s->security = strdup("");
	s->from = strdup("");
	s->server_url = strdup("");
	return s->host && s->port && s->user && s->pass && s->security &&
	       s->from && s->server_url;
}

/* Stores one row; values are trimmed (the Go server's forms trim). */
static bool
settings_take(struct vs_smtp_settings *s, const char *key, const char *val)
{
	char **field = settings_field(s, key);
	char *copy;

	if (field == NULL)
		return true;
	copy = strdup(val != NULL ? val : "");
	if (copy == NULL)
		return false;
	/* The password is kept exactly as stored: spaces may be part of it. */
	if (strcmp(key, "smtp_pass") != 0)
		vs_trim(copy);
	free(*field);
	*field = copy;
	return true;
}

bool
vs_smtp_settings_load(struct vs_app *app, struct vs_smtp_settings *s)
{
	sqlite3_stmt *st;
	int rc;

	if (!settings_defaults(s)) {
		vs_smtp_settings_free(s);
		vs_log_error("smtp settings: out of memory");
		return false;
	}
	st = vs_db_stmt(&app->db, sql_settings);
	if (st == NULL) {
		vs_smtp_settings_free(s);
		return false;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(st, 0);
		const char *v = (const char *)sqlite3_column_text(st, 1);

		if (k != NULL && !settings_take(s, k, v)) {
			rc = SQLITE_NOMEM;
			break;
		}
	}
	(void)sqlite3_reset(st);	/* rc holds the outcome */
	if (rc != SQLITE_DONE) {
		(void)vs_db_status_of(&app->db, rc, "smtp settings");
		vs_smtp_settings_free(s);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Link base (API.md 13.1, D20)                                       */
/* ------------------------------------------------------------------ */

/* An absolute http(s) URL with a host and no space or control byte. */
static bool
url_usable(const char *u)
{
	const char *rest;

	if (strncasecmp(u, "https://", 8) == 0)
		rest = u + 8;
	else if (strncasecmp(u, "http://", 7) == 0)
		rest = u + 7;
	else
		return false;
	if (*rest == '\0' || *rest == '/')
		return false;
	for (const unsigned char *p = (const unsigned char *)u; *p; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return false;
	return true;
}

char *
vs_mail_link_base(const char *server_url, const char *public_url)
{
	const char *pick = server_url;
	char *base;
	size_t n;

	if (pick == NULL || strspn(pick, " \t\r\n") == strlen(pick))
		pick = public_url;
	if (pick == NULL)
		return NULL;
	base = strdup(pick);
	if (base == NULL)
		return NULL;
	vs_trim(base);
	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		base[--n] = '\0';
	if (!url_usable(base)) {
		free(base);
		return NULL;
	}
	return base;
}

/* ------------------------------------------------------------------ */
/* Texts (API.md 13.3, D1)                                            */
/* ------------------------------------------------------------------ */

struct text { const char *subject, *lead; };

/* [which][0 = en, 1 = ru]. The test mail has one text (API.md 13.3). */
static const struct text texts[3][2] = {
	[VS_MAIL_TEXT_CONFIRM] = {
		{ "Verstak \xe2\x80\x94 email confirmation",
		  "Confirm registration:" },
		{ "Verstak \xe2\x80\x94 \xd0\xbf\xd0\xbe\xd0\xb4\xd1\x82\xd0\xb2"
		  "\xd0\xb5\xd1\x80\xd0\xb6\xd0\xb4\xd0\xb5\xd0\xbd\xd0\xb8\xd0"
		  "\xb5 email",
		  "\xd0\x9f\xd0\xbe\xd0\xb4\xd1\x82\xd0\xb2\xd0\xb5\xd1\x80\xd0"
		  "\xb4\xd0\xb8\xd1\x82\xd0\xb5 \xd1\x80\xd0\xb5\xd0\xb3\xd0\xb8"
		  "\xd1\x81\xd1\x82\xd1\x80\xd0\xb0\xd1\x86\xd0\xb8\xd1\x8e:" },
	},
	[VS_MAIL_TEXT_RESET] = {
		{ "Verstak \xe2\x80\x94 password reset",
		  "Reset your password:" },
		{ "Verstak \xe2\x80\x94 \xd1\x81\xd0\xb1\xd1\x80\xd0\xbe\xd1\x81"
		  " \xd0\xbf\xd0\xb0\xd1\x80\xd0\xbe\xd0\xbb\xd1\x8f",
		  "\xd0\xa1\xd0\xb1\xd1\x80\xd0\xbe\xd1\x81\xd0\xb8\xd1\x82\xd1"
		  "\x8c \xd0\xbf\xd0\xb0\xd1\x80\xd0\xbe\xd0\xbb\xd1\x8c:" },
	},
	[VS_MAIL_TEXT_TEST] = {
		{ "Test from Verstak Sync",
		  "This is a test email from Verstak Sync Server." },
		{ "Test from Verstak Sync",
		  "This is a test email from Verstak Sync Server." },
	},
};

void
vs_mail_text(enum vs_mail_text which, const char *locale,
	     const char **subject, const char **lead)
{
	int lang = (locale != NULL && strcmp(locale, "ru") == 0) ? 1 : 0;

	if ((unsigned)which > VS_MAIL_TEXT_TEST)
		which = VS_MAIL_TEXT_TEST;
	*subject = texts[which][lang].subject;
	*lead = texts[which][lang].lead;
}

/* ------------------------------------------------------------------ */
/* Message composition (D23)                                          */
/* ------------------------------------------------------------------ */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static bool
put_base64(struct vs_buf *b, const unsigned char *p, size_t n)
{
	char out[4];

	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		size_t left = n - i;

		if (left > 1)
			v |= (unsigned)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		out[0] = b64_alphabet[(v >> 18) & 63];
		out[1] = b64_alphabet[(v >> 12) & 63];
		out[2] = left > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
		out[3] = left > 2 ? b64_alphabet[v & 63] : '=';
		if (!vs_buf_append(b, out, 4))
			return false;
	}
	return true;
}

static bool
printable_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/* The longest prefix of s (at most max bytes) that does not cut a
 * UTF-8 sequence, so each encoded word decodes on its own. */
static size_t
utf8_prefix(const char *s, size_t len, size_t max)
{
	size_t take = len < max ? len : max;

	while (take > 0 && take < len && ((unsigned char)s[take] & 0xc0) == 0x80)
		take--;
	return take > 0 ? take : (len < max ? len : max);
}

/* "Subject: " + the text, or RFC 2047 encoded words (UTF-8, "B"), one
 * per line, folded with CRLF SP. */
static bool
put_subject(struct vs_buf *b, const char *subject)
{
	size_t len = strlen(subject), i = 0;

	if (printable_ascii(subject))
		return vs_buf_printf(b, "Subject: %s\r\n", subject);
	if (!vs_buf_puts(b, "Subject:"))
		return false;
	while (i < len) {
		size_t take = utf8_prefix(subject + i, len - i, EW_BYTES);

		if ((i > 0 && !vs_buf_puts(b, "\r\n")) ||
		    !vs_buf_puts(b, " =?UTF-8?B?") ||
		    !put_base64(b, (const unsigned char *)subject + i, take) ||
		    !vs_buf_puts(b, "?="))
			return false;
		i += take;
	}
	return vs_buf_puts(b, "\r\n");
}

/* RFC 5322 date in UTC with English names (no locale involved). */
static bool
put_date(struct vs_buf *b, time_t now)
{
	static const char days[7][4] = {
		"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (gmtime_r(&now, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11)
		return false;
	return vs_buf_printf(b, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
			     days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
			     tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
			     tm.tm_sec);
}

/* A host name usable on the right of a Message-ID: letters, digits,
 * dots and hyphens only. */
static bool
msgid_host_ok(const char *h, size_t n)
{
	return n > 0 && n < 254 && h[0] != '.' && h[n - 1] != '.' &&
	       strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789.-") >= n;
}

/* The host of the base URL ("https://host:port/path" -> host). */
static bool
base_host(const char *base, const char **h, size_t *n)
{
	const char *p = strstr(base != NULL ? base : "", "://");

	if (p == NULL)
		return false;
	p += 3;
	*h = p;
	*n = strcspn(p, ":/?#");
	return msgid_host_ok(p, *n);
}

/* <32 random hex @ domain of From, else host of the base>. */
static bool
put_message_id(struct vs_buf *b, const char *from, const char *base)
{
	char rnd[33];
	const char *at = strrchr(from, '@');
	const char *h = "verstak.invalid";
	size_t n = strlen(h);

	if (!vs_random_hex(16, rnd))
		return false;
	if (at != NULL && msgid_host_ok(at + 1, strlen(at + 1))) {
		h = at + 1;
		n = strlen(h);
	} else if (!base_host(base, &h, &n)) {
		h = "verstak.invalid";
		n = strlen(h);
	}
	return vs_buf_printf(b, "Message-ID: <%s@%.*s>\r\n", rnd, (int)n, h);
}

/* 7bit is enough for printable ASCII lines within the line limit. */
static bool
body_is_7bit(const char *body)
{
	size_t line = 0;

	for (const unsigned char *p = (const unsigned char *)body; *p; p++) {
		if (*p == '\r' || *p == '\n') {
			line = 0;
			continue;
		}
		if (*p < 0x20 || *p > 0x7e || ++line > LINE_MAX_7BIT)
			return false;
	}
	return true;
}

/* The body in base64, 76-character lines. */
static bool
put_body_base64(struct vs_buf *b, const char *body)
{
	size_t len = strlen(body);

	for (size_t i = 0; i < len; i += B64_LINE_BYTES) {
		size_t take = len - i < B64_LINE_BYTES ? len - i : B64_LINE_BYTES;

		if (!put_base64(b, (const unsigned char *)body + i, take) ||
		    !vs_buf_puts(b, "\r\n"))
			return false;
	}
	return true;
}

/* The body text: the lead line, then the URL alone on its own line. */
static char *
body_text(const char *lead, const char *url)
{
	struct vs_buf b;

	vs_buf_init(&b);
	if (!vs_buf_puts(&b, lead) || !vs_buf_puts(&b, "\r\n") ||
	    (url != NULL && (!vs_buf_puts(&b, url) ||
			     !vs_buf_puts(&b, "\r\n")))) {
		vs_buf_free(&b);
		return NULL;
	}
	return b.data;
}

/* Addresses reach the headers only after normalisation (API.md 13.4:
 * no CR, LF, brackets or display names), and only when unchanged by it,
 * which also keeps them ASCII. */
static bool
address_ok(const char *addr)
{
	char norm[ADDR_MAX];

	return addr != NULL && vs_email_normalize(addr, norm, sizeof(norm)) &&
	       strcmp(norm, addr) == 0 && printable_ascii(addr);
}

char *
vs_mail_compose(enum vs_mail_text which, const char *locale,
		const char *url, const char *from, const char *to,
		const char *base, time_t now)
{
	const char *subject, *lead;
	struct vs_buf b;
	char *body;
	bool seven, ok;

	if (!address_ok(from) || !address_ok(to))
		return NULL;
	if (url != NULL && strpbrk(url, "\r\n") != NULL)
		return NULL;
	vs_mail_text(which, locale, &subject, &lead);
	body = body_text(lead, url);
	if (body == NULL)
		return NULL;
	seven = body_is_7bit(body);
	vs_buf_init(&b);
	ok = vs_buf_printf(&b, "From: %s\r\nTo: %s\r\n", from, to) &&
	     put_subject(&b, subject) && put_date(&b, now) &&
	     put_message_id(&b, from, base) &&
	     vs_buf_puts(&b, "MIME-Version: 1.0\r\n"
			 "Content-Type: text/plain; charset=UTF-8\r\n") &&
	     vs_buf_printf(&b, "Content-Transfer-Encoding: %s\r\n\r\n",
			   seven ? "7bit" : "base64") &&
	     (seven ? vs_buf_puts(&b, body) : put_body_base64(&b, body));
	free(body);
	if (!ok) {
		vs_buf_free(&b);
		return NULL;
	}
	return b.data;
}

/* ------------------------------------------------------------------ */
/* Token mails                                                        */
/* ------------------------------------------------------------------ */

static const char *
kind_name(enum vs_mail_kind kind)
{
	return kind == VS_MAIL_RESET ? "reset" : "confirm";
}

/* Tokens are hex (DATA.md 5); anything else must not reach a URL. */
static bool
token_ok(const char *t)
{
	size_t n = t != NULL ? strlen(t) : 0;

	return n > 0 && n <= 128 && vs_is_lower_hex(t, n);
}

/* Mail needs host, port and sender (API.md 13.2). */
static bool
settings_sendable(const struct vs_smtp_settings *s)
{
	return s->host[0] != '\0' && s->port[0] != '\0' && s->from[0] != '\0';
}

static char *
token_url(const char *base, enum vs_mail_kind kind, const char *token)
{
	struct vs_buf b;

	vs_buf_init(&b);
	if (!vs_buf_printf(&b, "%s%s%s", base, kind == VS_MAIL_RESET ?
			   "/reset?token=" : "/api/v1/auth/confirm?token=",
			   token)) {
		vs_buf_free(&b);
		return NULL;
	}
	return b.data;
}

/* Copies the settings into a job and hands it the message; on failure
 * the message still belongs to the caller. */
static bool
fill_job(struct vs_smtp_job *job, const struct vs_smtp_settings *s,
	 const char *from, const char *to, char *message, const char *what)
{
	job->host = strdup(s->host);
	job->port = strdup(s->port);
	job->user = strdup(s->user);
	job->pass = strdup(s->pass);
	job->security = strdup(s->security);
	job->from = strdup(from);
	job->to = strdup(to);
	job->what = strdup(what);
	if (job->host && job->port && job->user && job->pass &&
	    job->security && job->from && job->to && job->what) {
		job->message = message;
		return true;
	}
	vs_smtp_job_free(job);	/* message stays with the caller */
	return false;
}

/* No usable SMTP settings: the development token, or a note (13.2). */
static enum vs_mail_plan
without_smtp(struct vs_app *app, const struct vs_smtp_settings *s,
	     enum vs_mail_kind kind, const char *to, const char *token)
{
	if (app->cfg.eff.development_token_logging) {
		vs_log_warn("development token (%s) for %s: %s",
			    kind_name(kind), to, token);
		return VS_MAIL_DEV_LOGGED;
	}
	vs_log_warn("mail (%s) to %s not sent: %s", kind_name(kind), to,
		    s->host[0] == '\0' ? "mail is not configured (smtp_host"
		    " is empty)" : "mail settings are incomplete (smtp_port"
		    " and smtp_from are required)");
	return VS_MAIL_OFF;
}

/* Settings are usable: link base, From check, message, job. */
static enum vs_mail_plan
with_smtp(struct vs_app *app, const struct vs_smtp_settings *s,
	  enum vs_mail_kind kind, const char *to, const char *locale,
	  const char *token, struct vs_smtp_job *job)
{
	char from[ADDR_MAX], *base, *url = NULL, *msg = NULL;
	enum vs_mail_plan plan = VS_MAIL_FAILED;

	if (!vs_email_normalize(s->from, from, sizeof(from))) {
		vs_log_warn("mail (%s) to %s not sent: smtp_from is not a"
			    " valid e-mail address", kind_name(kind), to);
		return VS_MAIL_BAD_ADDRESS;
	}
	base = vs_mail_link_base(s->server_url, app->cfg.eff.public_url);
	if (base == NULL) {
		vs_log_warn("mail (%s) to %s not sent: no link base; set"
			    " server_url (smtp settings) or public_url to the"
			    " server's absolute http(s) address",
			    kind_name(kind), to);
		return VS_MAIL_NO_BASE;
	}
	url = token_url(base, kind, token);
	if (url != NULL)
		msg = vs_mail_compose(kind == VS_MAIL_RESET ?
				      VS_MAIL_TEXT_RESET : VS_MAIL_TEXT_CONFIRM,
				      locale, url, from, to, base, time(NULL));
	if (msg != NULL && fill_job(job, s, from, to, msg, kind_name(kind))) {
		plan = VS_MAIL_SEND;
	} else {
		vs_log_error("mail (%s) to %s not sent: cannot compose the"
			     " message", kind_name(kind), to);
		free(msg);
	}
	if (url != NULL) {
		memset(url, 0, strlen(url));	/* holds the token */
		free(url);
	}
	free(base);
	return plan;
}

enum vs_mail_plan
vs_mail_prepare_token(struct vs_app *app, enum vs_mail_kind kind,
		      const char *to, const char *locale, const char *token,
		      struct vs_smtp_job *job)
{
	struct vs_smtp_settings s;
	char to_n[ADDR_MAX];
	enum vs_mail_plan plan;

	memset(job, 0, sizeof(*job));
	if (!vs_email_normalize(to, to_n, sizeof(to_n))) {
		vs_log_warn("mail (%s) not sent: the recipient address is"
			    " invalid", kind_name(kind));
		return VS_MAIL_BAD_ADDRESS;
	}
	if (!token_ok(token)) {
		vs_log_error("mail (%s) to %s not sent: malformed token",
			     kind_name(kind), to_n);
		return VS_MAIL_FAILED;
	}
	if (!vs_smtp_settings_load(app, &s)) {
		vs_log_error("mail (%s) to %s not sent: cannot read the smtp"
			     " settings", kind_name(kind), to_n);
		return VS_MAIL_FAILED;
	}
	if (!settings_sendable(&s))
		plan = without_smtp(app, &s, kind, to_n, token);
	else
		plan = with_smtp(app, &s, kind, to_n, locale, token, job);
	vs_smtp_settings_free(&s);
	return plan;
}

bool
vs_mail_send_token(struct vs_app *app, enum vs_mail_kind kind,
		   const char *to, const char *locale, const char *token)
{
	struct vs_smtp_job job;
	bool ok;

	switch (vs_mail_prepare_token(app, kind, to, locale, token, &job)) {
	case VS_MAIL_SEND:
		/* All reading is done: the child never needs the database. */
		ok = vs_smtp_send_detached(&job);
		vs_smtp_job_free(&job);
		return ok;
	case VS_MAIL_DEV_LOGGED:
		return true;
	case VS_MAIL_OFF:
	case VS_MAIL_NO_BASE:
	case VS_MAIL_BAD_ADDRESS:
	case VS_MAIL_FAILED:
		break;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Test mail                                                          */
/* ------------------------------------------------------------------ */

bool
vs_mail_send_test(const struct vs_smtp_settings *s, const char *to,
		  char *err, size_t errlen)
{
	char from[ADDR_MAX], to_n[ADDR_MAX], *msg;
	struct vs_smtp_job job;
	bool ok;

	memset(&job, 0, sizeof(job));
	if (s->host[0] == '\0') {
		snprintf(err, errlen, "mail is not configured (smtp_host is"
			 " empty)");
		return false;
	}
	if (s->port[0] == '\0' || s->from[0] == '\0') {
		snprintf(err, errlen, "mail settings are incomplete"
			 " (smtp_port and smtp_from are required)");
		return false;
	}
	if (!vs_email_normalize(s->from, from, sizeof(from))) {
		snprintf(err, errlen, "smtp_from is not a valid e-mail address");
		return false;
	}
	if (to == NULL || *to == '\0')
		to = from;
	if (!vs_email_normalize(to, to_n, sizeof(to_n))) {
		snprintf(err, errlen, "the recipient address is invalid");
		return false;
	}
	msg = vs_mail_compose(VS_MAIL_TEXT_TEST, "en", NULL, from, to_n, NULL,
			      time(NULL));
	if (msg == NULL || !fill_job(&job, s, from, to_n, msg, "test")) {
		free(msg);
		snprintf(err, errlen, "out of memory");
		return false;
	}
	ok = vs_smtp_send(&job, err, errlen);
	vs_smtp_job_free(&job);
	return ok;
}
