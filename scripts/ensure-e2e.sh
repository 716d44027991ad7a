#!/usr/bin/env bash
# Prerequisites of the browser and Node tests (tests/e2e), installed from the project's own files.
# Idempotent: quick when everything is already there. Run by `make test` before pytest.
#   - Debian's Chromium at /usr/bin/chromium (Playwright drives it; no browser is downloaded)
#   - node and npm (Debian's nodejs/npm when missing)
#   - tests/e2e/js/node_modules from package-lock.json (npm ci), redone when the lock file changes
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=/usr/bin/chromium
JS_DIR=tests/e2e/js
STAMP="$JS_DIR/node_modules/.ensure-e2e.lock.sha256"

apt_install() {
  local runner=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      runner=(sudo)
    else
      echo "ensure-e2e: $* not installed and this is not root (nor passwordless sudo)." >&2
      echo "ensure-e2e: install it once with: sudo apt-get update && sudo apt-get install -y $*" >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-e2e: $* missing and apt-get is not available (the tests expect Debian or Ubuntu)." >&2
    exit 1
  fi
  echo "ensure-e2e: apt-get install $*"
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium fonts-liberation)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi
[ -x "$CHROMIUM" ] || { echo "ensure-e2e: $CHROMIUM still missing after apt-get install chromium" >&2; exit 1; }

lock_sum=$(sha256sum "$JS_DIR/package-lock.json" "$JS_DIR/package.json" | sha256sum | cut -d' ' -f1)
if [ ! -d "$JS_DIR/node_modules/openai" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$lock_sum" ]; then
  echo "ensure-e2e: npm ci in $JS_DIR"
  (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$STAMP"
fi
