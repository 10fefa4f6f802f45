#!/usr/bin/env bash
# Runs hostwatch's whole test suite on a fresh Debian machine with Rust and Node.js: installs what
# the tests need (Debian's chromium for the page test, Debian's prometheus, nginx and redis-server
# for the interop and scale-out tests, Python's websockets, playwright-core and eventsource from npm),
# builds, then runs every test, slow ones included (HOSTWATCH_SLOW_TESTS=1).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's chromium drives the page test; Debian's prometheus package provides promtool, which
# checks /metrics, and the Prometheus server the interop test runs against the collector. Each
# is installed only when missing. prometheus goes without its recommended node exporter, which
# the tests do not need.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_UPDATED=""
apt_install() {
  if [ -z "$APT_UPDATED" ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
if [ ! -x /usr/bin/chromium ]; then
  echo "test.sh: installing Debian's chromium for the page test"
  apt_install chromium
fi
if [ ! -x /usr/bin/promtool ]; then
  echo "test.sh: installing Debian's prometheus for promtool (the /metrics test)"
  apt_install --no-install-recommends prometheus
fi
if [ ! -x /usr/sbin/nginx ]; then
  echo "test.sh: installing Debian's nginx for the reverse-proxy test (the README's config)"
  apt_install --no-install-recommends nginx
fi
# Debian's redis-server is the shared engine the scale-out tests start on a port of their own.
if [ ! -x /usr/bin/redis-server ]; then
  echo "test.sh: installing Debian's redis-server for the scale-out tests"
  apt_install --no-install-recommends redis-server
fi
# The TLS test makes its certificates with openssl and talks https with curl; the install test
# checks the unit with systemd-analyze.
for tool in openssl:openssl curl:curl systemd-analyze:systemd; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    echo "test.sh: installing ${tool##*:} for ${tool%%:*}"
    apt_install "${tool##*:}"
  fi
done
# Python's websockets closes /live and /ingest as third-party clients do (tests/interop).
if ! python3 -c "import websockets" >/dev/null 2>&1; then
  echo "test.sh: installing Python's websockets for the close-handshake test"
  # A Debian-managed Python refuses plain pip installs (PEP 668); the test only needs the module.
  python3 -m pip install --quiet websockets \
    || python3 -m pip install --quiet --break-system-packages websockets
fi
# Python's aiosmtpd is the real SMTP server the email notification tests send to (tests/alerts).
if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
  echo "test.sh: installing Python's aiosmtpd for the email notification test"
  python3 -m pip install --quiet aiosmtpd \
    || python3 -m pip install --quiet --break-system-packages aiosmtpd
fi
(cd tests/browser && npm ci --no-audit --no-fund --silent)
# npm's eventsource, the standard SSE client the reverse-proxy test runs through nginx.
(cd tests/interop && npm ci --no-audit --no-fund --silent)
# Node's ws, the reference broadcaster of the fan-out comparison (tests/tests/fanout_ref.rs).
(cd bench/ref-broadcaster && npm ci --no-audit --no-fund --silent)

cargo build --workspace --bins --quiet
export HOSTWATCH_SLOW_TESTS=1
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace "$@"
else
  cargo test --workspace "$@"
fi
