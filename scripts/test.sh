#!/usr/bin/env bash
# Runs hostwatch's whole test suite on a fresh Debian machine with Rust and Node.js: installs what
# the tests need (Debian's chromium for the page test, playwright-core from npm), builds, then
# runs every test, slow ones included (HOSTWATCH_SLOW_TESTS=1).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "test.sh: installing Debian's chromium for the page test"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --silent)

cargo build --workspace --bins --quiet
export HOSTWATCH_SLOW_TESTS=1
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace "$@"
else
  cargo test --workspace "$@"
fi
