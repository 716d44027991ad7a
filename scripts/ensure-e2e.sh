#!/usr/bin/env bash
# Prerequisites of the browser and Node tests (tests/e2e), installed from the project's own files.
# Idempotent: quick when everything is already there. Run by `make test` before pytest.
#   - Debian's Chromium at /usr/bin/chromium (Playwright drives it; no browser is downloaded)
#   - node and npm (Debian's nodejs/npm when missing)
#   - tests/e2e/js/node_modules from package-lock.json (npm ci), redone when the lock file changes
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/node-deps.sh
source scripts/node-deps.sh

CHROMIUM=/usr/bin/chromium

mapfile -t missing < <(node_packages_missing)
[ -x "$CHROMIUM" ] || missing+=(chromium fonts-liberation)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install ensure-e2e "${missing[@]}"
fi
[ -x "$CHROMIUM" ] || { echo "ensure-e2e: $CHROMIUM still missing after apt-get install chromium" >&2; exit 1; }

npm_ci_if_changed ensure-e2e tests/e2e/js openai
