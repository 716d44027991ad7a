#!/usr/bin/env bash
# Prints the path of a working Python 3.13, the version Azure Functions runs by default, or says how to get one.
# Looks in pyenv's versions first (the newest 3.13.x), then for python3.13 on PATH. A pyenv shim on PATH is
# not enough by itself: it answers "command not found" unless PYENV_VERSION names a 3.13, so each candidate
# is run before it is trusted.
set -euo pipefail

candidates=()
if command -v pyenv >/dev/null 2>&1; then
  root="$(pyenv root)"
  while IFS= read -r found; do
    candidates+=("$found")
  done < <(ls -d "$root"/versions/3.13.*/bin/python3.13 2>/dev/null | sort -V -r)
fi
if command -v python3.13 >/dev/null 2>&1; then
  candidates+=("$(command -v python3.13)")
fi

for python in "${candidates[@]+"${candidates[@]}"}"; do
  if "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1; then
    echo "$python"
    exit 0
  fi
done

{
  echo "Python 3.13 was not found (looked in \$(pyenv root)/versions/3.13.*/bin and for python3.13 on PATH)."
  echo "Install it, for example with 'pyenv install 3.13', or Debian's python3.13 and python3.13-venv packages."
} >&2
exit 1
