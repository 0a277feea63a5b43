/*
 * smtp.h - one SMTP submission (API.md 13.2), always in a child process
 * under a hard deadline.
 *
 * Owns: the dialogue with libesmtp (security modes none / starttls /
 * tls, D22; certificate and host-name verification; AUTH only over an
 * encrypted connection or to a loopback host), the timeouts (connect
 * 10 s, the whole dialogue at most 30 s, D21), and the processes that
 * carry it out: a supervised child for a synchronous send, a detached
 * double-forked sender for the background.
 *
 * Must never: run the dialogue in the calling process (a silent server
 * would pin it), touch the caller's SQLite connection in a child, let a
 * child return into the caller's code (children only _exit), log the
 * message (it carries a token) or the password, or fall back to
 * plaintext when TLS was asked for.
 *
 * TLS: libesmtp 1.1 has no implicit TLS, and its STARTTLS can wait for
 * the EHLO reply before sending EHLO when a TLS 1.3 server's session
 * tickets arrive just after the handshake (it then hangs until the
 * phase timeout; seen in about one session in ten). So for
 * `tls` and `starttls` this module connects, negotiates STARTTLS itself
 * (required: no STARTTLS offered = nothing sent), completes the
 * OpenSSL handshake (verified against smtp_host, with SNI), and lets
 * libesmtp speak plain SMTP to a relay thread on a loopback socket that
 * only this process may use. `none` is libesmtp straight to the server.
 */
#ifndef VS_SMTP_H
#define VS_SMTP_H

#include <stdbool.h>
#include <stddef.h>

/* Whole-dialogue deadline (D21) and the connect timeout, in seconds. */
#define VS_SMTP_DEADLINE_S 30
#define VS_SMTP_CONNECT_S 10
/* Tests shorten the deadline with this variable (1..30 seconds). */
#define VS_SMTP_TIMEOUT_ENV "VERSTAK_SMTP_TIMEOUT_SECONDS"

/* Everything one submission needs; every string is owned (malloc'd). */
struct vs_smtp_job {
	char *host, *port, *user, *pass, *security;
	char *from, *to;   /* envelope: already normalised addresses */
	char *message;     /* the whole RFC 5322 message, CRLF line ends */
	char *what;        /* short label for log lines, e.g. "reset" */
};

/* Frees the strings (the password is wiped first) and zeroes the job. */
void vs_smtp_job_free(struct vs_smtp_job *job);

/* The deadline in force: VS_SMTP_DEADLINE_S, or the test override. */
unsigned vs_smtp_deadline_s(void);

/* Sends synchronously: the dialogue runs in a child that is killed at
 * the deadline, so this returns within it. err gets a short reason
 * (never a secret) on failure. */
bool vs_smtp_send(const struct vs_smtp_job *job, char *err, size_t errlen);

/* Hands the job to a detached sender (double fork, new session, only
 * stderr inherited) and returns at once; the sender logs the outcome.
 * False only when the sender could not be started. */
bool vs_smtp_send_detached(const struct vs_smtp_job *job);

/* Whether host names the local machine: "localhost" or a 127.0.0.0/8
 * or ::1 literal. AUTH is allowed over plaintext only to such a host. */
bool vs_smtp_host_is_loopback(const char *host);

#endif
