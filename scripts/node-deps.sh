#!/usr/bin/env bash
# Functions the ensure-*.sh scripts share (sourced, not run): Debian packages and npm lock files.

# apt_install TAG PACKAGE...: install Debian packages, as root or with passwordless sudo.
apt_install() {
  local tag=$1
  shift
  local runner=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      runner=(sudo)
    else
      echo "$tag: $* not installed and this is not root (nor passwordless sudo)." >&2
      echo "$tag: install it once with: sudo apt-get update && sudo apt-get install -y $*" >&2
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$tag: $* missing and apt-get is not available (the tests expect Debian or Ubuntu)." >&2
    exit 1
  fi
  echo "$tag: apt-get install $*"
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# node_packages_missing: the Debian packages still needed for node and npm (none when both are there).
node_packages_missing() {
  command -v node >/dev/null 2>&1 || echo nodejs
  command -v npm >/dev/null 2>&1 || echo npm
}

# ensure_node TAG: node and npm, from Debian's packages when either is missing.
ensure_node() {
  local missing
  mapfile -t missing < <(node_packages_missing)
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "$1" "${missing[@]}"
  fi
}

# npm_ci_if_changed TAG DIR PACKAGE: `npm ci` in DIR unless node_modules/PACKAGE exists and the lock file is unchanged.
npm_ci_if_changed() {
  local tag=$1 dir=$2 package=$3
  local stamp="$dir/node_modules/.$tag.lock.sha256"
  local lock_sum
  lock_sum=$(sha256sum "$dir/package-lock.json" "$dir/package.json" | sha256sum | cut -d' ' -f1)
  if [ ! -d "$dir/node_modules/$package" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
    echo "$tag: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" >"$stamp"
  fi
}
