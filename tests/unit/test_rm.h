/*
 * test_rm.h - removal of one entry of a test's temporary directory.
 *
 * A database file takes its shared-memory writer queue (writelock.h)
 * and commit table (combine.h) with it: otherwise every test database would leave an object in
 * /dev/shm, and a later file that reuses the inode number would inherit
 * a stale durable watermark.
 */
#ifndef VS_TEST_RM_H
#define VS_TEST_RM_H

#include <stdio.h>
#include <string.h>

#include "combine.h"
#include "writelock.h"

static inline int
vs_test_remove(const char *path)
{
	static const char db[] = "/server.db";
	size_t n = strlen(path), k = sizeof(db) - 1;

	if (n >= k && strcmp(path + n - k, db) == 0) {
		(void)vs_wlock_unlink(path);
		(void)vs_combine_unlink(path);
	}
	return remove(path);
}

#endif
