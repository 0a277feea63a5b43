/*
 * log.c - see log.h. Writes "<time> <tag>[pid] LEVEL message" lines to
 * stderr in one write(2) each, so lines from several workers sharing a
 * file never interleave mid-line.
 */
#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static const char *log_tag = "verstak";

void
vs_log_set_tag(const char *tag)
{
	log_tag = tag;
}

static void
vs_log_v(const char *level, const char *fmt, va_list ap)
{
	char line[2048], ts[VS_TS_LEN];
	int n, m;

	vs_now_ts(ts);
	n = snprintf(line, sizeof(line), "%s %s[%ld] %s ", ts, log_tag,
		     (long)getpid(), level);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)vs_write_all(STDERR_FILENO, line, (size_t)n);
}

#define VS_LOG_FN(name, level)                                  \
	void name(const char *fmt, ...)                         \
	{                                                       \
		va_list ap;                                     \
		va_start(ap, fmt);                              \
		vs_log_v(level, fmt, ap);                       \
		va_end(ap);                                     \
	}
VS_LOG_FN(vs_log_info, "INFO")
VS_LOG_FN(vs_log_warn, "WARN")
VS_LOG_FN(vs_log_error, "ERROR")
