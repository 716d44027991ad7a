#!/usr/bin/env bash
# Run checkov over infra/ (Bicep framework) in its own virtualenv.
#
# checkov pins many libraries tightly, so it lives in .venv-checkov rather than
# the project's .venv. The venv is created on first use and reused after that;
# it is rebuilt when CHECKOV_VERSION changes. Exits non-zero when a check fails.
set -euo pipefail

CHECKOV_VERSION="3.3.30"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CHECKOV_VENV:-$ROOT/.venv-checkov}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.checkov-$CHECKOV_VERSION"

if [[ ! -f "$STAMP" ]]; then
    echo "checkov.sh: installing checkov $CHECKOV_VERSION into $VENV (first run takes a few minutes)" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
    touch "$STAMP"
fi

cd "$ROOT"
# --config-file pins the framework and the directory; the skips themselves are
# inline (#checkov:skip=...) next to the resource they concern, with the reason.
exec "$VENV/bin/checkov" --config-file infra/.checkov.yaml "$@"
