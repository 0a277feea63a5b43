/*
 * log.h - one-line log records to standard error (nginx and the
 * supervisor collect them). Never pass a secret (token, password,
 * session id) to these functions.
 */
#ifndef VS_LOG_H
#define VS_LOG_H

void vs_log_set_tag(const char *tag);
void vs_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vs_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vs_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
