/*
 * test_mail.c - unit tests for src/mail.c and src/smtp.c: the messages
 * of API.md 13.3 in both locales (decoded here: RFC 2047 subject,
 * base64 body), 7-bit headers with Date and Message-ID (D23), the URL
 * once on its own line (D1), the link base rules (D20), header
 * injection through To/From, the plans of vs_mail_prepare_token, and
 * the background sender (D21): vs_mail_send_token returns at once
 * against a server that never answers, and delivers to a small fake
 * SMTP server.
 *
 * Must never: reach a real mail server (only loopback listeners owned
 * by the test), or wait longer than the shortened SMTP deadline.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* mkdtemp, nftw, getline */
#endif
#include "app.h"
#include "mail.h"
#include "smtp.h"
#include "util.h"
#include "test_rm.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef"
#define BASE "https://sync.example.com"

/* Expected texts, written out here independently of mail.c's table. */
static const char *const exp_subject[3][2] = {
	{ "Verstak — email confirmation", "Verstak — подтверждение email" },
	{ "Verstak — password reset", "Verstak — сброс пароля" },
	{ "Test from Verstak Sync", "Test from Verstak Sync" },
};
static const char *const exp_lead[3][2] = {
	{ "Confirm registration:", "Подтвердите регистрацию:" },
	{ "Reset your password:", "Сбросить пароль:" },
	{ "This is a test email from Verstak Sync Server.",
	  "This is a test email from Verstak Sync Server." },
};

/* ------------------------------------------------------------------ */
/* Decoding helpers                                                   */
/* ------------------------------------------------------------------ */

static int
b64_val(char c)
{
	const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			"0123456789+/";
	const char *p = c != '\0' ? strchr(a, c) : NULL;

	return p != NULL ? (int)(p - a) : -1;
}

/* Decodes base64 (ignoring CR/LF) into a malloc'd NUL-terminated
 * string; fails the test on a bad character. */
static char *
b64_decode(const char *in, size_t n)
{
	char *out = malloc(n + 1);
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;

	ck_assert_ptr_nonnull(out);
	for (size_t i = 0; i < n; i++) {
		int v;

		if (in[i] == '\r' || in[i] == '\n' || in[i] == '=')
			continue;
		v = b64_val(in[i]);
		ck_assert_msg(v >= 0, "bad base64 byte 0x%02x", in[i]);
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (char)((acc >> bits) & 0xff);
		}
	}
	out[o] = '\0';
	return out;
}

/* A minimal UTF-8 validity check (no overlong checks needed here). */
static bool
utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		int extra = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 :
			    (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;

		if (extra < 0)
			return false;
		p++;
		for (int i = 0; i < extra; i++, p++)
			if ((*p & 0xc0) != 0x80)
				return false;
	}
	return true;
}

struct parsed {
	char *headers;  /* unfolded, "\n"-separated "Name: value" lines */
	char *body;     /* decoded body */
	char *subject;  /* decoded subject */
	char *raw_body;
};

static void
parsed_free(struct parsed *p)
{
	free(p->headers);
	free(p->body);
	free(p->subject);
	free(p->raw_body);
}

/* The value of header name (first match) in unfolded headers; static
 * buffer. */
static const char *
header(const struct parsed *p, const char *name)
{
	static char val[1024];
	size_t n = strlen(name);
	const char *line = p->headers;

	while (line != NULL && *line != '\0') {
		const char *end = strchr(line, '\n');
		size_t len = end != NULL ? (size_t)(end - line) : strlen(line);

		if (len > n + 1 && strncasecmp(line, name, n) == 0 &&
		    line[n] == ':') {
			const char *v = line + n + 1;

			while (*v == ' ')
				v++;
			snprintf(val, sizeof(val), "%.*s",
				 (int)(len - (size_t)(v - line)), v);
			return val;
		}
		line = end != NULL ? end + 1 : NULL;
	}
	return NULL;
}

/* Decodes a Subject value made of RFC 2047 "B" words or plain text;
 * each word must decode to valid UTF-8 on its own. */
static char *
decode_subject(const char *v)
{
	char *out = calloc(1, strlen(v) + 1);
	const char *p = v;

	ck_assert_ptr_nonnull(out);
	if (strstr(v, "=?") == NULL) {
		strcpy(out, v);
		return out;
	}
	while (*p != '\0') {
		const char *start, *end;
		char *word;

		while (*p == ' ' || *p == '\t')
			p++;	/* white space between words is dropped */
		if (*p == '\0')
			break;
		ck_assert_msg(strncmp(p, "=?UTF-8?B?", 10) == 0,
			      "not an encoded word: %s", p);
		start = p + 10;
		end = strstr(start, "?=");
		ck_assert_ptr_nonnull(end);
		ck_assert_msg(end - p + 2 <= 75, "encoded word too long");
		word = b64_decode(start, (size_t)(end - start));
		ck_assert_msg(utf8_valid(word), "word splits a character");
		strcat(out, word);
		free(word);
		p = end + 2;
	}
	return out;
}

/* Splits a message, checks the header syntax (7-bit, CRLF, line
 * lengths) and decodes subject and body. */
static void
parse_message(const char *msg, struct parsed *p)
{
	const char *sep = strstr(msg, "\r\n\r\n");
	size_t hlen;
	const char *cte;

	memset(p, 0, sizeof(*p));
	ck_assert_ptr_nonnull(sep);
	hlen = (size_t)(sep - msg) + 2;
	p->headers = calloc(1, hlen + 1);
	ck_assert_ptr_nonnull(p->headers);
	for (size_t i = 0, o = 0, col = 0; i < hlen; i++) {
		unsigned char c = (unsigned char)msg[i];

		ck_assert_msg(c < 0x80, "8-bit byte in the headers");
		if (c == '\r') {
			ck_assert_int_eq(msg[i + 1], '\n');
			ck_assert_msg(col <= 78, "header line of %zu chars", col);
			col = 0;
			i++;
			/* Folding: CRLF followed by white space continues. */
			if (i + 1 < hlen && (msg[i + 1] == ' ' || msg[i + 1] == '\t'))
				continue;
			p->headers[o++] = '\n';
			continue;
		}
		ck_assert_msg(c >= 0x20 && c != 0x7f, "control byte in headers");
		ck_assert_msg(c != '\n', "bare LF in the headers");
		col++;
		p->headers[o++] = (char)c;
	}
	p->raw_body = strdup(sep + 4);
	ck_assert_ptr_nonnull(p->raw_body);
	cte = header(p, "Content-Transfer-Encoding");
	ck_assert_ptr_nonnull(cte);
	if (strcmp(cte, "base64") == 0) {
		p->body = b64_decode(p->raw_body, strlen(p->raw_body));
	} else {
		ck_assert_str_eq(cte, "7bit");
		for (const char *c = p->raw_body; *c; c++)
			ck_assert_msg((unsigned char)*c < 0x80, "8-bit in 7bit");
		p->body = strdup(p->raw_body);
	}
	ck_assert_ptr_nonnull(header(p, "Subject"));
	p->subject = decode_subject(header(p, "Subject"));
}

static int
count_occurrences(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* Date: "Ddd, DD Mon YYYY HH:MM:SS +0000" */
static bool
date_ok(const char *d)
{
	char wd[4], mon[4], zone[6];
	int day, year, h, m, s;

	return d != NULL && strlen(d) == 31 &&
	       sscanf(d, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d %5s",
		      wd, &day, mon, &year, &h, &m, &s, zone) == 8 &&
	       strcmp(zone, "+0000") == 0 && strstr("SunMonTueWedThuFriSat", wd)
	       && strstr("JanFebMarAprMayJunJulAugSepOctNovDec", mon);
}

/* ------------------------------------------------------------------ */
/* Composition                                                        */
/* ------------------------------------------------------------------ */

static void
check_one(enum vs_mail_text which, const char *locale, const char *url)
{
	int lang = strcmp(locale, "ru") == 0 ? 1 : 0;
	char *msg = vs_mail_compose(which, locale, url, "noreply@example.com",
				    "user@example.org", BASE, 1700000000);
	struct parsed p;
	char expect_body[512];
	const char *id;

	ck_assert_ptr_nonnull(msg);
	parse_message(msg, &p);
	ck_assert_str_eq(p.subject, exp_subject[which][lang]);
	if (url != NULL)
		snprintf(expect_body, sizeof(expect_body), "%s\r\n%s\r\n",
			 exp_lead[which][lang], url);
	else
		snprintf(expect_body, sizeof(expect_body), "%s\r\n",
			 exp_lead[which][lang]);
	ck_assert_str_eq(p.body, expect_body);
	if (url != NULL) {
		char own_line[300];

		ck_assert_int_eq(count_occurrences(p.body, url), 1);
		snprintf(own_line, sizeof(own_line), "\r\n%s\r\n", url);
		ck_assert_ptr_nonnull(strstr(p.body, own_line));
	}
	ck_assert_ptr_null(strstr(p.body, "%!"));
	ck_assert_ptr_null(strstr(p.body, "Translation unavailable"));
	ck_assert_ptr_null(strstr(p.subject, "Translation unavailable"));
	ck_assert_str_eq(header(&p, "From"), "noreply@example.com");
	ck_assert_str_eq(header(&p, "To"), "user@example.org");
	ck_assert_str_eq(header(&p, "MIME-Version"), "1.0");
	ck_assert_str_eq(header(&p, "Content-Type"),
			 "text/plain; charset=UTF-8");
	ck_assert_msg(date_ok(header(&p, "Date")), "Date: %s",
		      header(&p, "Date"));
	ck_assert_str_eq(header(&p, "Date"), "Tue, 14 Nov 2023 22:13:20 +0000");
	id = header(&p, "Message-ID");
	ck_assert_ptr_nonnull(id);
	ck_assert_int_eq((int)strlen(id), 1 + 32 + 1 + 11 + 1);
	ck_assert_int_eq(id[0], '<');
	for (int i = 1; i <= 32; i++)
		ck_assert_msg(strchr("0123456789abcdef", id[i]) != NULL,
			      "Message-ID %s", id);
	ck_assert_str_eq(id + 33, "@example.com>");
	/* A non-ASCII body is never sent as raw 8-bit. */
	if (lang == 1 && which != VS_MAIL_TEXT_TEST)
		ck_assert_str_eq(header(&p, "Content-Transfer-Encoding"),
				 "base64");
	parsed_free(&p);
	free(msg);
}

START_TEST(test_compose_all)
{
	const char *confirm = BASE "/api/v1/auth/confirm?token=" TOKEN;
	const char *reset = BASE "/reset?token=" TOKEN;

	check_one(VS_MAIL_TEXT_CONFIRM, "en", confirm);
	check_one(VS_MAIL_TEXT_CONFIRM, "ru", confirm);
	check_one(VS_MAIL_TEXT_RESET, "en", reset);
	check_one(VS_MAIL_TEXT_RESET, "ru", reset);
	check_one(VS_MAIL_TEXT_TEST, "en", NULL);
	check_one(VS_MAIL_TEXT_TEST, "ru", NULL);
	/* An unknown locale falls back to English. */
	check_one(VS_MAIL_TEXT_RESET, "de", reset);
}
END_TEST

START_TEST(test_subject_words)
{
	char *msg = vs_mail_compose(VS_MAIL_TEXT_CONFIRM, "ru", BASE "/x",
				    "a@example.com", "b@example.com", BASE, 0);
	const char *s, *e;
	int words = 0;

	ck_assert_ptr_nonnull(msg);
	s = strstr(msg, "\r\nSubject:");
	ck_assert_ptr_nonnull(s);
	e = strstr(s + 2, "\r\nDate:");
	ck_assert_ptr_nonnull(e);
	for (const char *p = s; p < e && (p = strstr(p, "=?UTF-8?B?")) != NULL
	     && p < e; p++)
		words++;
	/* 44 bytes of UTF-8: two words, folded onto two lines. */
	ck_assert_int_eq(words, 2);
	ck_assert_ptr_nonnull(strstr(s, "?=\r\n =?UTF-8?B?"));
	free(msg);
}
END_TEST

START_TEST(test_ascii_body_is_7bit)
{
	char *msg = vs_mail_compose(VS_MAIL_TEXT_RESET, "en",
				    BASE "/reset?token=" TOKEN,
				    "a@example.com", "b@example.com", BASE, 0);

	ck_assert_ptr_nonnull(msg);
	ck_assert_ptr_nonnull(strstr(msg, "Content-Transfer-Encoding: 7bit\r\n"));
	ck_assert_ptr_nonnull(strstr(msg, "\r\n\r\nReset your password:\r\n"
				     BASE "/reset?token=" TOKEN "\r\n"));
	free(msg);
}
END_TEST

START_TEST(test_message_id_host)
{
	/* A domain literal in From: the base's host is used instead. */
	char *msg = vs_mail_compose(VS_MAIL_TEXT_TEST, "en", NULL,
				    "a@[192.0.2.1]", "b@example.com",
				    "https://links.example.net:8443/base", 0);

	ck_assert_ptr_nonnull(msg);
	ck_assert_ptr_nonnull(strstr(msg, "@links.example.net>\r\n"));
	free(msg);
	msg = vs_mail_compose(VS_MAIL_TEXT_TEST, "en", NULL, "a@[192.0.2.1]",
			      "b@example.com", NULL, 0);
	ck_assert_ptr_nonnull(msg);
	ck_assert_ptr_nonnull(strstr(msg, "@verstak.invalid>\r\n"));
	free(msg);
}
END_TEST

START_TEST(test_header_injection_refused)
{
	static const char *const bad[] = {
		"victim@example.com\r\nBcc: all@example.com",
		"victim@example.com\nBcc: all@example.com",
		"Evil <victim@example.com>",
		"victim@example.com, other@example.com",
		"Victim@Example.com",   /* not normalised */
		"",
		"victim@exa\xc3\xa9mple.com",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_ptr_null(vs_mail_compose(VS_MAIL_TEXT_TEST, "en",
			NULL, bad[i], "ok@example.com", NULL, 0));
		ck_assert_ptr_null(vs_mail_compose(VS_MAIL_TEXT_TEST, "en",
			NULL, "ok@example.com", bad[i], NULL, 0));
	}
	/* A URL with a line break could add body lines: refused too. */
	ck_assert_ptr_null(vs_mail_compose(VS_MAIL_TEXT_RESET, "en",
		BASE "/reset\r\nX: y", "a@example.com", "b@example.com",
		BASE, 0));
}
END_TEST

/* ------------------------------------------------------------------ */
/* Link base (D20)                                                    */
/* ------------------------------------------------------------------ */

static void
base_is(const char *server_url, const char *public_url, const char *want)
{
	char *b = vs_mail_link_base(server_url, public_url);

	if (want == NULL) {
		ck_assert_msg(b == NULL, "base(%s, %s) = %s", server_url,
			      public_url, b);
	} else {
		ck_assert_ptr_nonnull(b);
		ck_assert_str_eq(b, want);
	}
	free(b);
}

START_TEST(test_link_base)
{
	base_is("https://a.example/", "https://b.example", "https://a.example");
	base_is("", "http://b.example//", "http://b.example");
	base_is("   ", "https://b.example/sync/", "https://b.example/sync");
	base_is(NULL, "https://b.example", "https://b.example");
	base_is(" https://a.example/x/ ", "", "https://a.example/x");
	base_is("", "", NULL);
	base_is(NULL, NULL, NULL);
	base_is("", NULL, NULL);
	/* A server_url that is set but unusable is not replaced. */
	base_is("ftp://a.example", "https://b.example", NULL);
	base_is("https://", "", NULL);
	base_is("https:///path", "", NULL);
	base_is("https://a b.example", "", NULL);
	base_is("https://a.example/\x01", "", NULL);
	base_is("a.example", "", NULL);
}
END_TEST

START_TEST(test_loopback_and_deadline)
{
	ck_assert(vs_smtp_host_is_loopback("localhost"));
	ck_assert(vs_smtp_host_is_loopback("LOCALHOST"));
	ck_assert(vs_smtp_host_is_loopback("127.0.0.1"));
	ck_assert(vs_smtp_host_is_loopback("127.9.8.7"));
	ck_assert(vs_smtp_host_is_loopback("::1"));
	ck_assert(!vs_smtp_host_is_loopback("128.0.0.1"));
	ck_assert(!vs_smtp_host_is_loopback("localhost.example.com"));
	ck_assert(!vs_smtp_host_is_loopback("mail.example.com"));
	ck_assert(!vs_smtp_host_is_loopback(NULL));

	ck_assert_int_eq(unsetenv(VS_SMTP_TIMEOUT_ENV), 0);
	ck_assert_uint_eq(vs_smtp_deadline_s(), 30);
	ck_assert_int_eq(setenv(VS_SMTP_TIMEOUT_ENV, "3", 1), 0);
	ck_assert_uint_eq(vs_smtp_deadline_s(), 3);
	ck_assert_int_eq(setenv(VS_SMTP_TIMEOUT_ENV, "300", 1), 0);
	ck_assert_uint_eq(vs_smtp_deadline_s(), 30);
	ck_assert_int_eq(setenv(VS_SMTP_TIMEOUT_ENV, "x", 1), 0);
	ck_assert_uint_eq(vs_smtp_deadline_s(), 30);
	ck_assert_int_eq(unsetenv(VS_SMTP_TIMEOUT_ENV), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* With a data directory                                              */
/* ------------------------------------------------------------------ */

static char tmpdir[64];
static struct vs_app app;

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return vs_test_remove(path);
}

static void
setup(void)
{
	char err[256];

	strcpy(tmpdir, "/tmp/vs_test_mail_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	ck_assert_msg(vs_app_open(&app, tmpdir, true, err, sizeof(err)),
		      "open: %s", err);
	ck_assert_int_eq(setenv(VS_SMTP_TIMEOUT_ENV, "2", 1), 0);
}

static void
teardown(void)
{
	vs_app_close(&app);
	if (tmpdir[0] != '\0')
		(void)nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	tmpdir[0] = '\0';
}

static void
set_kv(const char *key, const char *value)
{
	sqlite3_stmt *st = NULL;

	ck_assert_int_eq(sqlite3_prepare_v2(app.db.h,
		"INSERT OR REPLACE INTO server_smtp_config (key, value)"
		" VALUES (?1, ?2)", -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC),
			 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
	ck_assert_int_eq(sqlite3_finalize(st), SQLITE_OK);
}

static void
set_public_url(const char *u)
{
	free(app.cfg.eff.public_url);
	app.cfg.eff.public_url = strdup(u);
	ck_assert_ptr_nonnull(app.cfg.eff.public_url);
}

static void
configure(const char *host, const char *port)
{
	set_kv("smtp_host", host);
	set_kv("smtp_port", port);
	set_kv("smtp_security", "none");
	set_kv("smtp_from", "NoReply@Example.com");
}

/* Runs fn with stderr going to a file; returns the file's path. */
static int saved_stderr = -1;
static char logpath[128];

static void
capture_start(void)
{
	int fd;

	snprintf(logpath, sizeof(logpath), "%s/log.txt", tmpdir);
	fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	saved_stderr = dup(STDERR_FILENO);
	ck_assert_int_ge(saved_stderr, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	ck_assert_int_eq(close(fd), 0);
}

static void
capture_stop(void)
{
	ck_assert_int_ge(dup2(saved_stderr, STDERR_FILENO), 0);
	ck_assert_int_eq(close(saved_stderr), 0);
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (f == NULL)
		return strdup("");
	ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

/* Waits up to ms for path to contain text. */
static bool
wait_for(const char *path, const char *text, int ms)
{
	for (int waited = 0; waited <= ms; waited += 50) {
		char *s = slurp(path);
		bool found = strstr(s, text) != NULL;

		free(s);
		if (found)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

START_TEST(test_plan_not_configured)
{
	struct vs_smtp_job job;
	char *log;

	capture_start();
	app.cfg.eff.development_token_logging = false;
	ck_assert_int_eq(vs_mail_prepare_token(&app, VS_MAIL_CONFIRM,
		"u@example.com", "en", TOKEN, &job), VS_MAIL_OFF);
	ck_assert_ptr_null(job.message);
	ck_assert(!vs_mail_send_token(&app, VS_MAIL_CONFIRM, "u@example.com",
				      "en", TOKEN));
	app.cfg.eff.development_token_logging = true;
	ck_assert_int_eq(vs_mail_prepare_token(&app, VS_MAIL_RESET,
		"U@Example.com", "en", TOKEN, &job), VS_MAIL_DEV_LOGGED);
	ck_assert(vs_mail_send_token(&app, VS_MAIL_RESET, "u@example.com",
				     "ru", TOKEN));
	/* Host set, port and sender missing: still "not configured". */
	set_kv("smtp_host", "127.0.0.1");
	ck_assert_int_eq(vs_mail_prepare_token(&app, VS_MAIL_RESET,
		"u@example.com", "en", TOKEN, &job), VS_MAIL_DEV_LOGGED);
	app.cfg.eff.development_token_logging = false;
	ck_assert_int_eq(vs_mail_prepare_token(&app, VS_MAIL_RESET,
		"u@example.com", "en", TOKEN, &job), VS_MAIL_OFF);
	capture_stop();
	log = slurp(logpath);
	ck_assert_ptr_nonnull(strstr(log, "mail is not configured"));
	ck_assert_ptr_nonnull(strstr(log, "development token (reset) for"
				     " u@example.com: " TOKEN));
	ck_assert_ptr_nonnull(strstr(log, "incomplete"));
	/* The token appears only in the development lines. */
	ck_assert_int_eq(count_occurrences(log, TOKEN), 3);
	free(log);
}
END_TEST

START_TEST(test_plan_no_base)
{
	struct vs_smtp_job job;
	char *log;

	configure("127.0.0.1", "25");
	set_public_url("");
	capture_start();
	ck_assert_int_eq(vs_mail_prepare_token(&app, VS_MAIL_RESET,
		"u@example.com", "en", TOKEN, &job), VS_MAIL_NO_BASE);
	ck_assert_ptr_null(job.message);
	ck_assert(!vs_mail_send_token(&app, VS_MAIL_RESET, "u@example.com",
				      "en", TOKEN));
	capture_stop();
	log = slurp(logpath);
	ck_assert_ptr_nonnull(strstr(log, "no link base"));
	ck_assert_ptr_null(strstr(log, TOKEN));
	free(log);
}
END_TEST

/* The prepared job's message, parsed. */
static void
prepared(enum vs_mail_kind kind, const char *locale, struct vs_smtp_job *job,
	 struct parsed *p)
{
	ck_assert_int_eq(vs_mail_prepare_token(&app, kind, "User@Example.ORG",
		locale, TOKEN, job), VS_MAIL_SEND);
	ck_assert_ptr_nonnull(job->message);
	parse_message(job->message, p);
}

START_TEST(test_plan_send)
{
	struct vs_smtp_job job;
	struct parsed p;

	configure("127.0.0.1", "2525");
	set_public_url("https://public.example/");
	prepared(VS_MAIL_RESET, "ru", &job, &p);
	ck_assert_str_eq(job.to, "user@example.org");
	ck_assert_str_eq(job.from, "noreply@example.com");
	ck_assert_str_eq(job.host, "127.0.0.1");
	ck_assert_str_eq(job.port, "2525");
	ck_assert_str_eq(job.what, "reset");
	ck_assert_str_eq(header(&p, "To"), "user@example.org");
	ck_assert_str_eq(p.subject, exp_subject[1][1]);
	ck_assert_str_eq(p.body, "Сбросить пароль:\r\n"
			 "https://public.example/reset?token=" TOKEN "\r\n");
	parsed_free(&p);
	vs_smtp_job_free(&job);

	/* server_url wins over public_url (13.1). */
	set_kv("server_url", "https://links.example/base/");
	prepared(VS_MAIL_CONFIRM, "en", &job, &p);
	ck_assert_str_eq(p.body, "Confirm registration:\r\n"
			 "https://links.example/base/api/v1/auth/confirm?token="
			 TOKEN "\r\n");
	ck_assert_str_eq(p.subject, exp_subject[0][0]);
	parsed_free(&p);
	vs_smtp_job_free(&job);
}
END_TEST

START_TEST(test_plan_bad_input)
{
	struct vs_smtp_job job;

	configure("127.0.0.1", "2525");
	set_public_url("https://public.example");
	capture_start();
	ck_assert_int_eq(vs_mail_prepare_token(&app, VS_MAIL_RESET,
		"u@example.com\r\nBcc: x@example.com", "en", TOKEN, &job),
		VS_MAIL_BAD_ADDRESS);
	ck_assert_int_eq(vs_mail_prepare_token(&app, VS_MAIL_RESET,
		"Someone <u@example.com>", "en", TOKEN, &job),
		VS_MAIL_BAD_ADDRESS);
	ck_assert_int_eq(vs_mail_prepare_token(&app, VS_MAIL_RESET,
		"u@example.com", "en", "not-a-token", &job), VS_MAIL_FAILED);
	set_kv("smtp_from", "noreply@example.com\r\nBcc: x@example.com");
	ck_assert_int_eq(vs_mail_prepare_token(&app, VS_MAIL_RESET,
		"u@example.com", "en", TOKEN, &job), VS_MAIL_BAD_ADDRESS);
	ck_assert(!vs_mail_send_token(&app, VS_MAIL_RESET, "u@example.com",
				      "en", TOKEN));
	capture_stop();
	ck_assert_ptr_null(job.message);
}
END_TEST

START_TEST(test_settings_load)
{
	struct vs_smtp_settings s;

	ck_assert(vs_smtp_settings_load(&app, &s));
	ck_assert_str_eq(s.host, "");
	ck_assert_str_eq(s.pass, "");
	ck_assert_str_eq(s.server_url, "");
	vs_smtp_settings_free(&s);
	set_kv("smtp_host", " mail.example.com ");
	set_kv("smtp_pass", " secret with spaces ");
	set_kv("unknown_key", "x");
	ck_assert(vs_smtp_settings_load(&app, &s));
	ck_assert_str_eq(s.host, "mail.example.com");
	ck_assert_str_eq(s.pass, " secret with spaces ");
	vs_smtp_settings_free(&s);
}
END_TEST

START_TEST(test_send_test_refusals)
{
	struct vs_smtp_settings s;
	char err[256];

	ck_assert(vs_smtp_settings_load(&app, &s));
	ck_assert(!vs_mail_send_test(&s, NULL, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "not configured"));
	vs_smtp_settings_free(&s);

	/* AUTH over plaintext to a non-loopback host: refused before any
	 * connection (the name does not even resolve). */
	configure("smtp.example.invalid", "25");
	set_kv("smtp_user", "me");
	set_kv("smtp_pass", "secret-password");
	ck_assert(vs_smtp_settings_load(&app, &s));
	ck_assert(!vs_mail_send_test(&s, NULL, err, sizeof(err)));
	ck_assert_msg(strstr(err, "refusing to send the SMTP password") != NULL,
		      "%s", err);
	ck_assert_ptr_null(strstr(err, "secret-password"));
	ck_assert(!vs_mail_send_test(&s, "x@example.com\r\nBcc: y@example.com",
				     err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "recipient"));
	vs_smtp_settings_free(&s);
}
END_TEST

/* A listener that accepts connections (the kernel does) and never says
 * a word. */
static int
silent_listener(int *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

START_TEST(test_background_returns_at_once)
{
	char port[16];
	int lport, lfd = silent_listener(&lport), st;
	double t0, took;
	char *log;

	snprintf(port, sizeof(port), "%d", lport);
	configure("127.0.0.1", port);
	set_public_url("https://public.example");
	capture_start();
	t0 = now_s();
	ck_assert(vs_mail_send_token(&app, VS_MAIL_RESET, "u@example.com",
				     "en", TOKEN));
	took = now_s() - t0;
	/* No child is left for the caller to reap (double fork). */
	errno = 0;
	ck_assert_int_eq(waitpid(-1, &st, WNOHANG), -1);
	ck_assert_int_eq(errno, ECHILD);
	ck_assert_msg(took < 1.0, "vs_mail_send_token took %.2f s", took);
	/* The sender gives up by itself within the (shortened) deadline. */
	ck_assert_msg(wait_for(logpath, "mail (reset) to u@example.com not"
			       " sent", 5000), "no failure logged");
	capture_stop();
	log = slurp(logpath);
	ck_assert_ptr_null(strstr(log, TOKEN));
	free(log);
	close(lfd);
}
END_TEST

START_TEST(test_sync_send_times_out)
{
	struct vs_smtp_settings s;
	char port[16], err[256];
	int lport, lfd = silent_listener(&lport);
	double t0, took;

	snprintf(port, sizeof(port), "%d", lport);
	configure("127.0.0.1", port);
	ck_assert(vs_smtp_settings_load(&app, &s));
	t0 = now_s();
	ck_assert(!vs_mail_send_test(&s, NULL, err, sizeof(err)));
	took = now_s() - t0;
	ck_assert_msg(took < 3.0, "send_test took %.2f s", took);
	ck_assert_msg(err[0] != '\0', "no reason");
	vs_smtp_settings_free(&s);
	close(lfd);
}
END_TEST

/* A fake SMTP server in a child process: one session, the DATA goes to
 * outpath. Just enough protocol for libesmtp. */
static void
reply(int fd, const char *s)
{
	if (!vs_write_all(fd, s, strlen(s)))
		_exit(3);
}

static void __attribute__((noreturn))
fake_smtp(int lfd, const char *outpath)
{
	int c = accept(lfd, NULL, NULL);
	FILE *in, *out;
	char *line = NULL;
	size_t cap = 0;
	bool data = false;

	if (c < 0 || (in = fdopen(c, "r")) == NULL ||
	    (out = fopen(outpath, "w")) == NULL)
		_exit(2);
	reply(c, "220 fake ESMTP\r\n");
	while (getline(&line, &cap, in) > 0) {
		if (data) {
			if (strcmp(line, ".\r\n") == 0) {
				data = false;
				fflush(out);
				reply(c, "250 queued\r\n");
			} else {
				fputs(line, out);
			}
		} else if (strncasecmp(line, "EHLO", 4) == 0) {
			reply(c, "250 fake\r\n");
		} else if (strncasecmp(line, "DATA", 4) == 0) {
			data = true;
			reply(c, "354 go on\r\n");
		} else if (strncasecmp(line, "QUIT", 4) == 0) {
			reply(c, "221 bye\r\n");
			break;
		} else {
			reply(c, "250 ok\r\n");
		}
	}
	fclose(out);
	_exit(0);
}

START_TEST(test_background_delivers)
{
	char port[16], outpath[128], *msg;
	int lport, lfd = silent_listener(&lport), st;
	pid_t server;
	struct parsed p;

	snprintf(outpath, sizeof(outpath), "%s/delivered.eml", tmpdir);
	server = fork();
	ck_assert_int_ge(server, 0);
	if (server == 0)
		fake_smtp(lfd, outpath);
	close(lfd);
	snprintf(port, sizeof(port), "%d", lport);
	configure("127.0.0.1", port);
	set_public_url("https://public.example");
	capture_start();
	ck_assert(vs_mail_send_token(&app, VS_MAIL_CONFIRM, "u@example.com",
				     "ru", TOKEN));
	ck_assert_msg(wait_for(logpath, "mail (confirm) to u@example.com sent",
			       5000), "no success logged");
	capture_stop();
	ck_assert_int_eq(waitpid(server, &st, 0), server);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	msg = slurp(outpath);
	parse_message(msg, &p);
	ck_assert_str_eq(p.subject, exp_subject[0][1]);
	ck_assert_str_eq(p.body, "Подтвердите регистрацию:\r\n"
			 "https://public.example/api/v1/auth/confirm?token="
			 TOKEN "\r\n");
	/* libesmtp passes our headers through and adds none of its own. */
	ck_assert_int_eq(count_occurrences(msg, "\r\nDate:"), 1);
	ck_assert_int_eq(count_occurrences(msg, "Message-ID:") +
			 count_occurrences(msg, "Message-Id:"), 1);
	ck_assert_int_eq(count_occurrences(msg, "\r\nTo:"), 1);
	ck_assert_int_eq(strncmp(msg, "From: noreply@example.com\r\n", 27), 0);
	parsed_free(&p);
	free(msg);
}
END_TEST

static Suite *
mail_suite(void)
{
	Suite *s = suite_create("mail");
	TCase *tc = tcase_create("compose");
	TCase *db = tcase_create("plans");

	tcase_add_test(tc, test_compose_all);
	tcase_add_test(tc, test_subject_words);
	tcase_add_test(tc, test_ascii_body_is_7bit);
	tcase_add_test(tc, test_message_id_host);
	tcase_add_test(tc, test_header_injection_refused);
	tcase_add_test(tc, test_link_base);
	tcase_add_test(tc, test_loopback_and_deadline);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(db, setup, teardown);
	tcase_set_timeout(db, 30);
	tcase_add_test(db, test_settings_load);
	tcase_add_test(db, test_plan_not_configured);
	tcase_add_test(db, test_plan_no_base);
	tcase_add_test(db, test_plan_send);
	tcase_add_test(db, test_plan_bad_input);
	tcase_add_test(db, test_send_test_refusals);
	tcase_add_test(db, test_background_returns_at_once);
	tcase_add_test(db, test_sync_send_times_out);
	tcase_add_test(db, test_background_delivers);
	suite_add_tcase(s, db);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(mail_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
