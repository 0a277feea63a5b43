#!/bin/sh
# Builds the server out of tree and installs it under ./build:
#   build/bin/verstak-sync-server
#   build/share/verstak-sync-server/{static,templates}
# Extra arguments go to configure (e.g. CFLAGS=...).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] && [ configure -nt Makefile.am ] || autoreconf -fi
mkdir -p build/obj
cd build/obj
commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ ! -f Makefile ] || [ "$top/configure" -nt Makefile ] || [ $# -gt 0 ]; then
	"$top/configure" --prefix="$top/build" BUILD_COMMIT="$commit" "$@"
fi
make -j"$(nproc)"
make install >/dev/null
echo "built $top/build/bin/verstak-sync-server"
