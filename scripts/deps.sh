#!/bin/sh
# Installs the Debian 12 packages this project needs to build, run and
# test. As root it runs apt-get; otherwise it prints the exact command to
# run and fails, so nothing half-installed is mistaken for a set-up.
# Usage: scripts/deps.sh [run|test]   (test adds what the test suite uses)
set -eu

RUN_PKGS="nginx-light spawn-fcgi multiwatch sqlite3 ca-certificates"
BUILD_PKGS="build-essential autoconf automake pkg-config libfcgi-dev \
libsqlite3-dev libcjson-dev libssl-dev libesmtp-dev check libyaml-dev \
libcrypt-dev"
# chromium, nodejs and npm: the headless browser walk of the web pages
# (tests/integration/test_browser.py; npm fetches playwright-core).
TEST_PKGS="python3 valgrind curl python3-aiosmtpd openssl chromium nodejs npm"

what=${1:-run}
pkgs="$BUILD_PKGS $RUN_PKGS"
[ "$what" = test ] && pkgs="$pkgs $TEST_PKGS"

missing=""
for p in $pkgs; do
	# A nodejs package from elsewhere (NodeSource) bundles npm and
	# conflicts with Debian's npm package: its npm command is enough.
	if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then
		continue
	fi
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "These Debian packages are missing:$missing" >&2
	echo "Install them as root, then run this again:" >&2
	echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# --no-install-recommends keeps a server box small; nothing here needs
# the recommended extras.
apt-get install -y -q --no-install-recommends $missing
