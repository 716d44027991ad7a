#!/usr/bin/env bash
# Microsoft's Kusto language service (npm @kusto/language-service-next), which tests/infra/test_kusto.py
# runs offline in Node to check every KQL query of infra/kql against the schemas of the tables it reads.
# Idempotent: quick when it is there.
#   - node and npm (Debian's nodejs/npm when missing)
#   - tests/infra/kusto/node_modules from package-lock.json (npm ci), redone when the lock file changes
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/node-deps.sh
source scripts/node-deps.sh

ensure_node ensure-kusto

npm_ci_if_changed ensure-kusto tests/infra/kusto @kusto/language-service-next
