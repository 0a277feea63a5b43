/*
 * mail.h - the e-mails the server sends (API.md 13): confirmation and
 * password-reset links, and the administrator's test mail.
 *
 * Owns: reading the SMTP settings (server_smtp_config, DATA.md 6), the
 * link base (server_url, else public_url; neither = no mail and a
 * warning, D20), the message text in both languages with RFC 2047
 * subjects, Date, Message-ID and a transfer encoding (D1, D23), address
 * normalisation of From and To, and handing the SMTP dialogue (libesmtp,
 * smtp.c) to a detached background process so an HTTP answer never
 * waits for a mail server (D21). With no SMTP host configured and
 * development_token_logging on, the token is written to the log instead.
 *
 * Must never: block a request on the network, log a token unless
 * development_token_logging is on, or build a link from the request's
 * Host header.
 */
#ifndef VS_MAIL_H
#define VS_MAIL_H

#include <stdbool.h>
#include <stddef.h>

#include "app.h"
#include "smtp.h"

#include <time.h>

enum vs_mail_kind {
	VS_MAIL_CONFIRM,   /* <base>/api/v1/auth/confirm?token=<token> */
	VS_MAIL_RESET,     /* <base>/reset?token=<token> */
};

/* Sends (in the background) the confirm or reset mail for token to `to`
 * in locale "en" or "ru". Returns false only when nothing could be
 * attempted locally (bad address, settings unreadable, fork failed);
 * the caller's answer to the client does not change either way. */
bool vs_mail_send_token(struct vs_app *app, enum vs_mail_kind kind,
			const char *to, const char *locale, const char *token);

/* SMTP settings as stored (DATA.md 6); strings are never NULL. */
struct vs_smtp_settings {
	char *host, *port, *user, *pass, *security, *from, *server_url;
};
bool vs_smtp_settings_load(struct vs_app *app, struct vs_smtp_settings *s);
void vs_smtp_settings_free(struct vs_smtp_settings *s);

/* Sends the test mail synchronously (bounded by the SMTP timeouts);
 * for the CLI and the admin console. err receives a short reason. */
bool vs_mail_send_test(const struct vs_smtp_settings *s, const char *to,
		       char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Building blocks (mail.c), for the unit tests and the admin console   */
/* ------------------------------------------------------------------ */

/* The link base (API.md 13.1): server_url, else public_url, white space
 * and trailing '/' removed. NULL when the chosen value is empty or not
 * an absolute http(s) URL without spaces or control characters (D20:
 * then no mail with a link is sent). malloc'd. */
char *vs_mail_link_base(const char *server_url, const char *public_url);

/* The three mails of API.md 13.3. */
enum vs_mail_text {
	VS_MAIL_TEXT_CONFIRM,
	VS_MAIL_TEXT_RESET,
	VS_MAIL_TEXT_TEST,
};

/* Subject and first body line in locale "ru" or (anything else) "en";
 * static strings. */
void vs_mail_text(enum vs_mail_text which, const char *locale,
		  const char **subject, const char **lead);

/* The whole message, CRLF line ends: From, To, Subject (RFC 2047 "B"
 * encoded words when not ASCII), Date, Message-ID (<random@host of
 * from, else of base>), MIME-Version, Content-Type, Content-Transfer-
 * Encoding (7bit for short ASCII bodies, else base64), a blank line and
 * the body: the lead line and, when url is not NULL, the URL alone on
 * the next line. from and to must be normalised addresses; every header
 * line is 7-bit ASCII. NULL on bad input or out of memory. */
char *vs_mail_compose(enum vs_mail_text which, const char *locale,
		      const char *url, const char *from, const char *to,
		      const char *base, time_t now);

/* What vs_mail_send_token decides before anything is sent. */
enum vs_mail_plan {
	VS_MAIL_SEND,         /* job filled in: hand it to smtp.c */
	VS_MAIL_DEV_LOGGED,   /* no usable SMTP settings: token logged */
	VS_MAIL_OFF,          /* no usable SMTP settings, nothing logged */
	VS_MAIL_NO_BASE,      /* D20: neither server_url nor public_url */
	VS_MAIL_BAD_ADDRESS,  /* To or smtp_from fails normalisation */
	VS_MAIL_FAILED,       /* settings unreadable, bad token, no memory */
};

/* Everything vs_mail_send_token does except starting the sender: reads
 * the settings, logs the D20 warning, the development token or "mail
 * not configured", and on VS_MAIL_SEND fills job (free it with
 * vs_smtp_job_free; it is zeroed otherwise). vs_mail_send_token
 * returns true for VS_MAIL_SEND once the sender runs and for
 * VS_MAIL_DEV_LOGGED, false for every other plan. */
enum vs_mail_plan vs_mail_prepare_token(struct vs_app *app,
					enum vs_mail_kind kind, const char *to,
					const char *locale, const char *token,
					struct vs_smtp_job *job);

#endif
