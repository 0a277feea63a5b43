/*
 * version.h - the build's version and commit, as --version and the
 * health endpoint report them. The only file that reads the generated
 * build-config.h.
 */
#ifndef VS_VERSION_H
#define VS_VERSION_H

const char *vs_version(void);
const char *vs_build_commit(void);

#endif
