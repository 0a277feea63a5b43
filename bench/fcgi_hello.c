/*
 * fcgi_hello.c - the transport's ceiling for the benchmarks: a FastCGI
 * worker that answers every request with a fixed small JSON body, run in
 * the same pool, behind the same generated nginx, as the real worker.
 * Not part of the server.
 */
#include <fcgiapp.h>
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop;

static void
on_term(int sig)
{
	(void)sig;
	stop = 1;
}

int
main(void)
{
	static const char reply[] =
		"Status: 200 OK\r\nContent-Type: application/json\r\n"
		"Content-Length: 16\r\n\r\n{\"status\":\"ok\"}\n";
	struct sigaction sa;
	FCGX_Request req;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	if (FCGX_Init() != 0 || FCGX_InitRequest(&req, 0, FCGI_FAIL_ACCEPT_ON_INTR) != 0)
		return 1;
	while (!stop && FCGX_Accept_r(&req) >= 0) {
		char buf[4096];
		while (FCGX_GetStr(buf, sizeof(buf), req.in) > 0)
			;
		FCGX_PutStr(reply, (int)sizeof(reply) - 1, req.out);
		FCGX_Finish_r(&req);
	}
	return 0;
}
