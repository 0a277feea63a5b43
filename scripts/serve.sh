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
exec ./build/bin/verstak-sync-server --data ./server-data "$@"
