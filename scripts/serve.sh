#!/bin/sh
# One command from a fresh Debian 12 machine to a running server:
# installs the packages (as root), builds, and serves the local stack at
# http://127.0.0.1:47732 with ./server-data. Extra arguments go to the
# server (e.g. --admin-user admin --admin-pass-stdin).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh" run
"$top/scripts/build.sh"
cd "$top"
# A new data directory gets the desktop-ready limits (D40); an existing
# config.yml is never touched.
if [ ! -e ./server-data/config.yml ]; then
	mkdir -p -m 0750 ./server-data
	install -m 0640 scripts/config.yml.default ./server-data/config.yml
fi
exec ./build/bin/verstak-sync-server --data ./server-data "$@"
