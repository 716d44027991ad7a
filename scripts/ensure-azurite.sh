#!/usr/bin/env bash
# Azurite, Microsoft's Azure Storage emulator, for `make run` and the tests (the relay's block list
# and token budget tables), installed from the project's own files. Idempotent: quick when it is there.
#   - node and npm (Debian's nodejs/npm when missing)
#   - devhost/azurite/node_modules from package-lock.json (npm ci), redone when the lock file changes
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/node-deps.sh
source scripts/node-deps.sh

ensure_node ensure-azurite

npm_ci_if_changed ensure-azurite devhost/azurite azurite
