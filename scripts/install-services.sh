#!/usr/bin/env bash
# Installs the real servers the tests and the demo talk to on loopback, once per machine:
#   - Pebble and pebble-challtestsrv (ACME), cfssl (CFSSL), Chromium (the status page's browser test, headless):
#     Debian packages;
#   - Azurite (Azure Storage emulator): the npm version pinned in tools/azurite/package-lock.json.
# Under CI=true anything that cannot be installed is a failure; elsewhere it is reported and the tests that need
# it fail with a message saying what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1 || missing+=(pebble)
command -v cfssl >/dev/null 2>&1 || missing+=(golang-cfssl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "cannot install ${missing[*]} (not root, no sudo): install them with apt-get" >&2
    [ "${CI:-}" = "true" ] && exit 1
  fi
fi

if [ ! -x tools/azurite/node_modules/.bin/azurite-table ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "installing Azurite from tools/azurite/package-lock.json"
    (cd tools/azurite && npm ci --no-audit --no-fund --silent)
  else
    echo "cannot install Azurite: npm is missing" >&2
    [ "${CI:-}" = "true" ] && exit 1
  fi
fi
exit 0
