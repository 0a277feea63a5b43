/*
 * multipart.h - an incremental multipart/form-data parser (RFC 7578,
 * RFC 2046 section 5.1) fed with chunks of any size.
 *
 * Owns: the Content-Type check (multipart/form-data with a boundary),
 * the preamble, delimiter and close-delimiter lines (CRLF, or bare LF
 * when the first delimiter line uses it, as Go's reader accepts), each
 * part's header block (bounded, folded lines) and its
 * Content-Disposition parameters (quoted or token values, RFC 2231
 * filename*), and the part content, handed to a callback in place.
 *
 * Must never: buffer part content (memory stays fixed whatever the body's
 * size), allocate, or decide what a route accepts (how many parts, which
 * names): the caller's callbacks do that.
 */
#ifndef VS_MULTIPART_H
#define VS_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 2046 allows 70; some clients use a little more. */
#define VS_MP_BOUNDARY_MAX 200
/* One part's whole header block; a form part needs a few hundred bytes. */
#define VS_MP_HEADER_MAX 8192

struct vs_mp_part {
	const char *name;     /* form name; "" when absent or not form-data */
	const char *filename; /* "" when absent */
};

/* Each callback returns 0 to go on, anything else to stop the parser
 * (vs_mp_feed then returns VS_MP_ABORTED). */
struct vs_mp_callbacks {
	/* A part's header block is complete; strings live until return. */
	int (*part_begin)(void *ud, const struct vs_mp_part *part);
	/* Part content, in order, in spans of any length (never 0). */
	int (*part_data)(void *ud, const char *data, size_t n);
	/* The part's content ended; last: it was the closing delimiter,
	 * else a delimiter line announcing another part. */
	int (*part_end)(void *ud, bool last);
};

enum vs_mp_rc {
	VS_MP_OK = 0,     /* all input so far accepted */
	VS_MP_NO_PARTS,   /* the close delimiter came before any part */
	VS_MP_MALFORMED,  /* syntax error, or the input ended too early */
	VS_MP_ABORTED,    /* a callback stopped the parser */
};

struct vs_mp {
	const struct vs_mp_callbacks *cb;
	void *ud;
	/* "\r\n--" boundary; in LF mode the delimiter starts one later. */
	char delim[4 + VS_MP_BOUNDARY_MAX + 1];
	size_t delim_len;
	bool lf_mode;
	int state;
	size_t matched;       /* bytes of a delimiter matched so far */
	enum vs_mp_rc rc;     /* sticky */
	unsigned parts;       /* parts begun */
	size_t hdr_len, line_start;
	char hdr[VS_MP_HEADER_MAX];
	char values[VS_MP_HEADER_MAX]; /* decoded parameter values */
};

/* Checks content_type (multipart/form-data with a usable boundary) and
 * prepares p. False when the body is not a multipart form. */
bool vs_mp_init(struct vs_mp *p, const char *content_type,
		const struct vs_mp_callbacks *cb, void *ud);
/* Parses the next n bytes. Errors are sticky. */
enum vs_mp_rc vs_mp_feed(struct vs_mp *p, const char *data, size_t n);
/* The input ended: VS_MP_OK only after a complete close delimiter. */
enum vs_mp_rc vs_mp_finish(struct vs_mp *p);

#endif
