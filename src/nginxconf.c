/*
 * nginxconf.c - see nginxconf.h. Renders the complete, standalone
 * nginx.conf of the local stack into a buffer.
 *
 * Owns: every directive of the generated file: the run-directory layout
 * nginx uses (pid, logs, temp paths under run_dir so it never touches
 * /var), limits and timeouts, the FastCGI hand-off, static assets, the
 * internal X-Accel-Redirect location for blobs, and the JSON/HTML error
 * pages nginx produces by itself.
 *
 * Must never: start processes, write files, or emit a value it has not
 * checked: every path and the listen address are validated first and the
 * whole rendering fails (returns false) instead of producing a file nginx
 * would misread.
 *
 * Layout inside run_dir (the stack creates the directories):
 *   nginx.pid, nginx.lock, error.log,
 *   tmp/{client_body,fastcgi,proxy,uwsgi,scgi}
 *
 * The worker sends a blob by answering with
 *   X-Accel-Redirect: /_verstak_blobs/<h0h1>/<h2h3>/<sha256>
 * plus Content-Type and Content-Disposition (nginx keeps those two from the
 * upstream answer on an X-Accel-Redirect, but not the security headers,
 * which the internal location therefore adds itself).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1	/* geteuid */
#endif
#include "nginxconf.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The four headers API.md section 1.7 puts on every response. */
static const char *const security_headers[][2] = {
	{ "Content-Security-Policy",
	  "default-src 'self'; base-uri 'self'; form-action 'self'; "
	  "frame-ancestors 'none'; img-src 'self' data:; script-src 'self'; "
	  "style-src 'self'" },
	{ "X-Content-Type-Options", "nosniff" },
	{ "Referrer-Policy", "same-origin" },
	{ "X-Frame-Options", "DENY" },
};

/* An error nginx answers by itself. "match" is the status nginx raises
 * (494 is its internal "header too large"), "status" what an /api/ client
 * receives with the JSON body; non-API paths get nginx's own HTML page. */
struct ngx_err {
	const char *name;   /* its location: /_verstak_error/<name> */
	int match;
	int status;
	const char *error;
	const char *code;
	/* false when nginx raises the error from a header filter that runs
	 * after add_header (Range: 416), so the headers are already set */
	bool add_headers;
};

/* Errors any location may produce (bad request, timeouts, body limit,
 * the worker pool not answering). 405 here only covers TRACE, which nginx
 * rejects before choosing a location. */
static const struct ngx_err generic_errors[] = {
	{ "err_400", 400, 400, "invalid request", "invalid_request", true },
	{ "err_405", 405, 405, "method not allowed", "method_not_allowed", true },
	{ "err_408", 408, 408, "request timed out", "request_timeout", true },
	{ "err_413", 413, 413, "request body is too large", "request_too_large",
	  true },
	{ "err_414", 414, 414, "request URI is too long", "invalid_request", true },
	{ "err_494", 494, 400, "request header is too large", "invalid_request",
	  true },
	{ "err_500", 500, 500, "internal error", "internal_error", true },
	{ "err_502", 502, 502, "service unavailable", "internal_error", true },
	{ "err_503", 503, 503, "service unavailable", "internal_error", true },
	{ "err_504", 504, 504, "service unavailable", "internal_error", true },
};

/* The blob upload route's own body limit (API.md 3.8 step 1: an
 * over-cap body is blob_too_large, not the generic request_too_large). */
static const struct ngx_err blob_upload_413 =
	{ "blob_413", 413, 413, "blob is too large", "blob_too_large", true };

/* Extra errors of the internal blob location (API.md section 3.8): the file
 * vanished, is unreadable, or a Range cannot be satisfied. */
static const struct ngx_err blob_errors[] = {
	{ "blob_403", 403, 500, "blob is unavailable", "blob_unavailable", true },
	{ "blob_404", 404, 404, "blob not found", "blob_not_found", true },
	{ "blob_416", 416, 416, "requested range not satisfiable",
	  "internal_error", false },
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
/* Where error_page sends nginx's own errors (internal: 404 to clients). */
#define ERR_PREFIX "/_verstak_error/"
/* nginx's body timeout on the upload location: this much after the
 * workers' stall limit, so the worker's 408 always comes first. */
#define UPLOAD_NGINX_GRACE_S 15
/* How long an upload may wait for a free upload worker (nginx's FastCGI
 * send/read timeouts on the blob location; 60 s elsewhere). */
#define UPLOAD_QUEUE_WAIT_S 300

/* A byte that would end or change the meaning of an nginx token: quotes,
 * statement and block delimiters, variables ($), comments (#), escapes,
 * white space and control characters. */
static bool
conf_byte_bad(unsigned char c)
{
	if (c < 0x20 || c == 0x7f)
		return true;
	return strchr(" \"';{}$#\\", c) != NULL;
}

/* Absolute path made only of bytes that are safe in an unquoted token. */
static bool
conf_path_ok(const char *s)
{
	if (s == NULL || s[0] != '/')
		return false;
	for (const char *p = s; *p != '\0'; p++)
		if (conf_byte_bad((unsigned char)*p))
			return false;
	return true;
}

/* host:port, [v6]:port or a bare port: letters, digits and . : [ ] - _ */
static bool
conf_listen_ok(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || strchr(".:[]-_", c) != NULL))
			return false;
	}
	return true;
}

static bool
params_ok(const struct vs_nginx_params *p)
{
	return p != NULL && conf_path_ok(p->run_dir) &&
	       conf_path_ok(p->fcgi_socket) && conf_path_ok(p->upload_socket) &&
	       conf_path_ok(p->static_dir) && p->upload_stall_seconds >= 1 &&
	       conf_path_ok(p->blobs_dir) && conf_listen_ok(p->listen) &&
	       p->max_body_bytes > 0;
}

/* Length of dir without trailing slashes ("/" stays "/"), so "<dir>/"
 * never doubles a slash in alias directives. */
static int
dir_len(const char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	return (int)n;
}

static void
emit_security_headers(struct vs_buf *b, const char *indent)
{
	for (size_t i = 0; i < N_ELEMS(security_headers); i++)
		vs_buf_printf(b, "%sadd_header %s \"%s\" always;\n", indent,
			      security_headers[i][0], security_headers[i][1]);
}

static void
emit_error_pages(struct vs_buf *b, const char *indent,
		 const struct ngx_err *errs, size_t n, int skip)
{
	for (size_t i = 0; i < n; i++)
		if (errs[i].match != skip)
			vs_buf_printf(b, "%serror_page %d " ERR_PREFIX "%s;\n", indent,
				      errs[i].match, errs[i].name);
}

/* One internal location per error: JSON for /api/ (the desktop reads
 * "<html" in an error body as "not a Verstak server"), nginx's HTML page
 * otherwise. `types {}` makes default_type apply whatever the URI's
 * extension is. Not named locations: nginx cannot redirect to one when
 * the request line itself was refused (a %00 in the path, a URI over
 * the header buffer), as no URI exists yet, and answered those with an
 * HTML 500; an error page given as a URI sets one. */
static void
emit_error_location(struct vs_buf *b, const struct ngx_err *e)
{
	vs_buf_printf(b, "\n        location = " ERR_PREFIX "%s {\n"
		       "            internal;\n", e->name);
	vs_buf_puts(b, "            types { }\n"
		       "            default_type application/json;\n");
	if (e->add_headers)
		emit_security_headers(b, "            ");
	vs_buf_printf(b,
		"            if ($vs_api) {\n"
		"                return %d '{\"error\":\"%s\",\"code\":\"%s\"}\\n';\n"
		"            }\n"
		"            return %d;\n"
		"        }\n",
		e->status, e->error, e->code, e->match);
}

static void
emit_main(struct vs_buf *b, const struct vs_nginx_params *p)
{
	vs_buf_printf(b,
		"# nginx.conf of the Verstak Sync Server local stack.\n"
		"# Generated at every start (edits are lost); nginx runs as\n"
		"#   nginx -p %s -c %s/nginx.conf -e %s/error.log\n"
		"# Everything it writes stays in this directory.\n\n",
		p->run_dir, p->run_dir, p->run_dir);
	vs_buf_puts(b, "daemon off;\n");
	if (p->worker_processes > 0)
		vs_buf_printf(b, "worker_processes %d;\n", p->worker_processes);
	else
		vs_buf_puts(b, "worker_processes auto;\n");
	vs_buf_printf(b, "pid %s/nginx.pid;\n", p->run_dir);
	vs_buf_printf(b, "lock_file %s/nginx.lock;\n", p->run_dir);
	/* "error", not "warn": every blob upload would log that its body
	 * went to a temp file, which is normal here. */
	vs_buf_printf(b, "error_log %s/error.log error;\n", p->run_dir);
	/* Without a user directive an nginx master running as root switches
	 * its workers to "nobody", who can reach neither the 0600 socket nor
	 * the 0750 run directory. The stack is meant for an unprivileged
	 * account; when it is root anyway, keep the workers as that user. */
	if (geteuid() == 0)
		vs_buf_puts(b, "# started as root: workers keep that account\n"
			       "user root root;\n");
	vs_buf_puts(b, "\nevents {\n    worker_connections 1024;\n}\n\n");
}

static void
emit_http_settings(struct vs_buf *b, const struct vs_nginx_params *p)
{
	const char *r = p->run_dir;

	vs_buf_puts(b,
		"    access_log off;  # errors still go to error_log\n"
		"    server_tokens off;\n"
		"    sendfile on;\n"
		"    tcp_nopush on;\n"
		"    gzip off;  # responses are never compressed (API.md 1.1)\n"
		"    absolute_redirect off;\n"
		"    types { }\n"
		"    default_type application/octet-stream;\n\n");
	vs_buf_printf(b,
		"    client_body_temp_path %s/tmp/client_body;\n"
		"    fastcgi_temp_path %s/tmp/fastcgi;\n"
		"    proxy_temp_path %s/tmp/proxy;\n"
		"    uwsgi_temp_path %s/tmp/uwsgi;\n"
		"    scgi_temp_path %s/tmp/scgi;\n\n", r, r, r, r, r);
	vs_buf_printf(b,
		"    large_client_header_buffers 4 16k;  # 16 KiB header block\n"
		"    client_max_body_size %lld;\n"
		"    client_body_buffer_size 128k;\n", p->max_body_bytes);
	/* nginx's body and send timeouts run between two successive reads or
	 * writes, so a slow but moving blob transfer never hits them: the
	 * progress-based limit DEFECTS D25 asks for. */
	vs_buf_puts(b,
		"    # body/send timeouts count from the last read/write (progress-\n"
		"    # based, DEFECTS D25), not from the start of the transfer\n"
		"    client_header_timeout 10s;\n"
		"    client_body_timeout 60s;\n"
		"    send_timeout 60s;\n"
		"    keepalive_timeout 120s;\n"
		"    reset_timedout_connection on;\n\n");
	vs_buf_printf(b,
		"    # $vs_api: the original request is under /api/, so errors nginx\n"
		"    # answers itself must be JSON. The request line survives internal\n"
		"    # redirects and exists even when nginx refused it (then\n"
		"    # $request_uri is empty).\n"
		"    map $request $vs_api {\n"
		"        \"~^[^ ]+ +(https?://[^/]*)?/api/\" 1;\n"
		"        default 0;\n"
		"    }\n"
		"    # POST anywhere under /api/v1/blobs/ is an upload (API.md 3.8):\n"
		"    # the upload pool; everything else there, the worker pool\n"
		"    map $request_method $vs_blob_pool {\n"
		"        POST unix:%s;\n"
		"        default unix:%s;\n"
		"    }\n"
		"    # Allow header for static 405s (empty = header not sent)\n"
		"    map $request_method $vs_static_allow {\n"
		"        GET \"\";\n"
		"        HEAD \"\";\n"
		"        default \"GET, HEAD\";\n"
		"    }\n\n", p->upload_socket, p->fcgi_socket);
}

static void
emit_fastcgi_params(struct vs_buf *b)
{
	static const char *const params[][2] = {
		{ "REQUEST_METHOD", "$request_method" },
		{ "REQUEST_URI", "$request_uri" },
		{ "DOCUMENT_URI", "$document_uri" },
		{ "QUERY_STRING", "$query_string" },
		{ "CONTENT_TYPE", "$content_type" },
		{ "CONTENT_LENGTH", "$content_length" },
		{ "SERVER_PROTOCOL", "$server_protocol" },
		{ "REMOTE_ADDR", "$remote_addr" },
		{ "REMOTE_PORT", "$remote_port" },
		{ "SERVER_ADDR", "$server_addr" },
		{ "SERVER_PORT", "$server_port" },
		{ "SERVER_NAME", "$server_name" },
		{ "GATEWAY_INTERFACE", "CGI/1.1" },
	};

	vs_buf_puts(b,
		"        # FastCGI parameters (inline: nothing from /etc/nginx)\n");
	for (size_t i = 0; i < N_ELEMS(params); i++)
		vs_buf_printf(b, "        fastcgi_param %s %s;\n", params[i][0],
			      params[i][1]);
	vs_buf_puts(b,
		"        fastcgi_param HTTPS $https if_not_empty;\n"
		"        # a client \"Proxy:\" header must not become HTTP_PROXY\n"
		"        fastcgi_param HTTP_PROXY \"\";\n");
	/* Each worker serves exactly one connection at a time. A kept-alive
	 * FastCGI connection would pin an idle worker to one nginx process
	 * while requests queue for the others, so the pool would starve. */
	vs_buf_puts(b,
		"        # No FastCGI keepalive: each worker serves one connection at a\n"
		"        # time, and an idle connection nginx kept open would pin a\n"
		"        # worker and starve the pool. One connection per request.\n"
		"        fastcgi_keep_conn off;\n"
		"        fastcgi_request_buffering on;\n"
		"        fastcgi_buffering on;\n"
		"        # room for a ~70 KiB JSON answer without a temp file\n"
		"        fastcgi_buffer_size 128k;\n"
		"        fastcgi_buffers 8 128k;\n"
		"        fastcgi_connect_timeout 10s;\n"
		"        fastcgi_send_timeout 60s;\n"
		"        fastcgi_read_timeout 60s;\n"
		"        # the application's own error answers pass through as they are\n"
		"        fastcgi_intercept_errors off;\n\n");
}

static void
emit_app_location(struct vs_buf *b, const struct vs_nginx_params *p)
{
	vs_buf_printf(b,
		"        # Everything else goes to the worker pool. The application\n"
		"        # adds the security headers to its own answers: no add_header\n"
		"        # here, or they would appear twice.\n"
		"        location / {\n"
		"            fastcgi_pass unix:%s;\n"
		"        }\n\n", p->fcgi_socket);
}

static void
emit_static_locations(struct vs_buf *b, const struct vs_nginx_params *p)
{
	vs_buf_printf(b,
		"        # Static assets (API.md 8): GET/HEAD only, no directory\n"
		"        # listing, cacheable with nginx's ETag/Last-Modified.\n"
		"        location /static/ {\n"
		"            alias %.*s/;\n"
		"            autoindex off;\n"
		"            log_not_found off;\n"
		"            if ($request_method !~ ^(GET|HEAD)$) {\n"
		"                return 405;\n"
		"            }\n"
		"            location ~ /$ {\n"
		"                return 404;\n"
		"            }\n"
		"            types {\n"
		"                text/css css;\n"
		"                text/javascript js;\n"
		"                image/svg+xml svg;\n"
		"                image/png png;\n"
		"                image/x-icon ico;\n"
		"                font/woff2 woff2;\n"
		"                text/plain txt;\n"
		"            }\n"
		"            default_type application/octet-stream;\n"
		"            charset utf-8;\n"
		"            charset_types text/css text/javascript text/plain;\n"
		"            add_header Cache-Control \"public, max-age=3600\";\n"
		"            add_header Allow $vs_static_allow always;\n",
		dir_len(p->static_dir), p->static_dir);
	emit_security_headers(b, "            ");
	/* An error_page here replaces the inherited list; 405 stays local so
	 * it keeps its Allow header. */
	emit_error_pages(b, "            ", generic_errors,
			 N_ELEMS(generic_errors), 405);
	vs_buf_puts(b, "        }\n\n"
		       "        location = /static/ {\n");
	emit_security_headers(b, "            ");
	vs_buf_puts(b, "            return 404;\n"
		       "        }\n\n");
}

/*
 * The blob subtree. A POST anywhere under it is an upload (API.md 3.8),
 * and uploads go to their own pool of workers (stack.h, chosen by the
 * map $vs_blob_pool), with nginx streaming the body to the worker as it
 * arrives instead of buffering it whole first (fastcgi_request_buffering
 * off; a GET, the download check, has no body to stream):
 *  - a stalled upload can then be answered: the worker reads with a
 *    progress deadline (worker.c) and sends 408 request_timeout; nginx's
 *    own body timeout would only close the connection (DEFECTS D25), so
 *    it is set later than the worker's;
 *  - a slow client holds an upload worker, never a sync worker;
 *  - nginx writes no temp file and holds one buffer per upload.
 * An upload that finds every upload worker busy waits in the socket's
 * queue; the FastCGI timeouts here bound that wait (then 504).
 * An over-cap body still gets the contract's blob_too_large from nginx.
 */
static void
emit_blob_api_location(struct vs_buf *b, const struct vs_nginx_params *p)
{
	vs_buf_printf(b,
		"        # Blob uploads (POST) go to the upload pool with the body\n"
		"        # streamed as it arrives; the worker answers a stall after\n"
		"        # %d s with 408, so nginx's own body timeout (which only\n"
		"        # closes the connection) comes later. Download checks (GET)\n"
		"        # go to the worker pool. error_page here replaces the\n"
		"        # inherited list, so it is repeated with 413 changed.\n"
		"        location /api/v1/blobs/ {\n"
		"            fastcgi_pass $vs_blob_pool;\n"
		"            fastcgi_request_buffering off;\n"
		"            client_body_buffer_size 256k;\n"
		"            client_body_timeout %ds;\n"
		"            # an upload may wait this long for a free upload worker\n"
		"            fastcgi_send_timeout %ds;\n"
		"            fastcgi_read_timeout %ds;\n",
		p->upload_stall_seconds,
		p->upload_stall_seconds + UPLOAD_NGINX_GRACE_S,
		UPLOAD_QUEUE_WAIT_S, UPLOAD_QUEUE_WAIT_S);
	emit_error_pages(b, "            ", generic_errors,
			 N_ELEMS(generic_errors), 413);
	vs_buf_printf(b, "            error_page 413 " ERR_PREFIX "%s;\n"
		       "        }\n\n", blob_upload_413.name);
}

static void
emit_blob_location(struct vs_buf *b, const struct vs_nginx_params *p)
{
	vs_buf_printf(b,
		"        # Blob downloads: the worker checks auth, scope and size, then\n"
		"        # answers \"X-Accel-Redirect: /_verstak_blobs/aa/bb/<sha256>\" and\n"
		"        # nginx sends the file (Range, If-Modified-Since, sendfile)\n"
		"        # without holding a worker. internal: clients cannot ask for it.\n"
		"        # Content-Type and Content-Disposition are kept from the\n"
		"        # worker; the empty types map makes the fallback octet-stream.\n"
		"        location /_verstak_blobs/ {\n"
		"            internal;\n"
		"            alias %.*s/;\n"
		"            types { }\n"
		"            default_type application/octet-stream;\n",
		dir_len(p->blobs_dir), p->blobs_dir);
	emit_security_headers(b, "            ");
	emit_error_pages(b, "            ", generic_errors,
			 N_ELEMS(generic_errors), 0);
	emit_error_pages(b, "            ", blob_errors, N_ELEMS(blob_errors), 0);
	vs_buf_puts(b, "        }\n");
}

static void
emit_server(struct vs_buf *b, const struct vs_nginx_params *p)
{
	vs_buf_printf(b,
		"    server {\n"
		"        listen %s;\n"
		"        server_name _;\n\n", p->listen);
	vs_buf_puts(b, "        # Errors nginx answers itself (JSON under /api/)\n");
	emit_error_pages(b, "        ", generic_errors, N_ELEMS(generic_errors), 0);
	vs_buf_puts(b, "\n");
	emit_fastcgi_params(b);
	emit_app_location(b, p);
	emit_blob_api_location(b, p);
	emit_static_locations(b, p);
	emit_blob_location(b, p);
	for (size_t i = 0; i < N_ELEMS(generic_errors); i++)
		emit_error_location(b, &generic_errors[i]);
	for (size_t i = 0; i < N_ELEMS(blob_errors); i++)
		emit_error_location(b, &blob_errors[i]);
	emit_error_location(b, &blob_upload_413);
	vs_buf_puts(b, "    }\n");
}

bool
vs_nginx_render(const struct vs_nginx_params *p, struct vs_buf *out)
{
	if (!params_ok(p))
		return false;
	emit_main(out, p);
	vs_buf_puts(out, "http {\n");
	emit_http_settings(out, p);
	emit_server(out, p);
	vs_buf_puts(out, "}\n");
	return !out->oom;
}
