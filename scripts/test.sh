#!/bin/sh
# One command from a fresh Debian 12 machine to every test:
#   1. installs the packages (as root),
#   2. builds with -Werror and runs `make check` (Check unit tests and the
#      integration tests that start real nginx + worker pools),
#   3. runs `make distcheck` (the tarball builds and passes on its own),
#   4. builds again with AddressSanitizer + UndefinedBehaviorSanitizer and
#      runs the whole `make check` a second time.
# Ends with one summary line "N passed, M failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
"$top/scripts/deps.sh" test || exit 1

jobs=$(nproc)
passed=0
failed=0
summary() {
	# Counts single tests, not programs: every Check program logs
	# "Checks: N, Failures: F, Errors: E", every Python integration
	# program logs "RESULT tests=N failures=F".
	dir=$1
	for log in $(find "$dir/tests" -name '*.log' 2>/dev/null); do
		line=$(grep -h "Checks: " "$log" | tail -n1)
		if [ -n "$line" ]; then
			n=$(echo "$line" | sed 's/.*Checks: \([0-9]*\).*/\1/')
			f=$(echo "$line" | sed 's/.*Failures: \([0-9]*\).*/\1/')
			e=$(echo "$line" | sed 's/.*Errors: \([0-9]*\).*/\1/')
			passed=$((passed + n - f - e)); failed=$((failed + f + e))
			continue
		fi
		line=$(grep -h "^RESULT tests=" "$log" | tail -n1)
		if [ -n "$line" ]; then
			n=$(echo "$line" | sed 's/.*tests=\([0-9]*\).*/\1/')
			f=$(echo "$line" | sed 's/.*failures=\([0-9]*\).*/\1/')
			passed=$((passed + n - f)); failed=$((failed + f))
		elif grep -qE "^:test-result: (FAIL|ERROR)" "${log%.log}.trs" 2>/dev/null; then
			failed=$((failed + 1))
		fi
	done
}
step() {
	echo "== $*"
}
status=0

autoreconf -fi || exit 1

step "build and make check"
rm -rf build/check && mkdir -p build/check
(cd build/check && "$top/configure" -q && make -j"$jobs" && make check) || status=1
summary build/check
[ $status -ne 0 ] && cat build/check/test-suite.log 2>/dev/null | tail -n 80

step "make distcheck"
(cd build/check && make distcheck -j"$jobs" >distcheck.log 2>&1) || {
	status=1; failed=$((failed + 1)); tail -n 60 build/check/distcheck.log
	# distcheck leaves its tree behind on failure: show why each failing
	# test failed, not only that it did.
	for trs in $(grep -lE "^:test-result: (FAIL|ERROR)" \
			build/check/verstak-sync-server-*/_build/sub/tests/*/*.trs 2>/dev/null); do
		echo "-- ${trs%.trs}.log"; tail -n 80 "${trs%.trs}.log"
	done; }
[ $status -eq 0 ] && grep -q "archives ready for distribution" build/check/distcheck.log && passed=$((passed + 1))

step "ASan + UBSan build and make check"
rm -rf build/asan && mkdir -p build/asan
san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
(cd build/asan && "$top/configure" -q CFLAGS="-O1 -g $san" LDFLAGS="$san" &&
	make -j"$jobs" && VS_SANITIZED=1 make check) || status=1
summary build/asan
[ $status -ne 0 ] && tail -n 80 build/asan/test-suite.log 2>/dev/null

echo "$passed passed, $failed failed"
exit $status
