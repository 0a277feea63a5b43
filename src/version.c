/*
 * version.c - see version.h.
 */
#ifdef HAVE_CONFIG_H
#include "build-config.h"
#endif
#include "version.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif
#ifndef BUILD_COMMIT
#define BUILD_COMMIT "unknown"
#endif

const char *
vs_version(void)
{
	return PACKAGE_VERSION;
}

const char *
vs_build_commit(void)
{
	return BUILD_COMMIT;
}
