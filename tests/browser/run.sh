#!/usr/bin/env bash
# Real-browser end-to-end tests: headless Debian Chromium drives the marketplace
# and the tobira OP, both started from their binaries.
#
#   TOBIRA_BIN       default <repo>/target/release/tobira
#   MARKETPLACE_BIN  default <repo>/target/release/marketplace
#
# Screenshots and server logs land in tests/browser/artifacts/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
# A Japanese font, so that screenshots show text rather than empty boxes.
if ! fc-list :lang=ja 2>/dev/null | grep -q .; then
  echo "installing a Japanese font (fonts-ipafont-gothic)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-ipafont-gothic
fi

TOBIRA_BIN="$(realpath -m "${TOBIRA_BIN:-$repo/target/release/tobira}")"
MARKETPLACE_BIN="$(realpath -m "${MARKETPLACE_BIN:-$repo/target/release/marketplace}")"
export TOBIRA_BIN MARKETPLACE_BIN

cd "$here"
npm ci --no-audit --no-fund
npm test
