#!/usr/bin/env bash
# Usage: scripts/find-python.sh 3.13
# Prints the path of a working Python of that minor version, or says how to get one and exits 1.
# Looks in pyenv's versions first (the newest patch release), then for python3.N on PATH. A pyenv shim on
# PATH is not enough by itself: it answers "command not found" unless PYENV_VERSION names that version, so
# each candidate is run before it is trusted.
set -euo pipefail

version="${1:?usage: $0 MAJOR.MINOR (for example 3.13)}"
if ! [[ "$version" =~ ^3\.[0-9]+$ ]]; then
  echo "find-python: expected a version such as 3.13, not '$version'" >&2
  exit 2
fi
minor="${version#3.}"

candidates=()
if command -v pyenv >/dev/null 2>&1; then
  root="$(pyenv root)"
  while IFS= read -r found; do
    candidates+=("$found")
  done < <(ls -d "$root"/versions/"$version".*/bin/python"$version" 2>/dev/null | sort -V -r)
fi
if command -v "python$version" >/dev/null 2>&1; then
  candidates+=("$(command -v "python$version")")
fi

for python in "${candidates[@]+"${candidates[@]}"}"; do
  if "$python" -c "import sys; sys.exit(sys.version_info[:2] != (3, $minor))" >/dev/null 2>&1; then
    echo "$python"
    exit 0
  fi
done

{
  echo "Python $version was not found (looked in \$(pyenv root)/versions/$version.*/bin and for python$version on PATH)."
  echo "Install it, for example with 'pyenv install $version', or Debian's python$version and python$version-venv packages."
} >&2
exit 1
