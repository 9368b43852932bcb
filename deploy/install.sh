#!/usr/bin/env bash
# Installs tandem-agent on a host without the Debian package:
#   /usr/bin/tandem-agent                         the binary (0755)
#   /etc/systemd/system/tandem-agent@.service     the templated unit (0644)
#   /etc/tandem/                                  configs (0750, root:tandem)
#   /etc/tandem/example.toml.sample               an annotated example (0640)
# and the `tandem` system user and group, then reloads systemd.
#
# Usage: deploy/install.sh [--binary PATH] [--root DIR] [--dry-run]
#   --binary PATH  the binary to install (default: target/release/tandem-agent
#                  of this repository, or of $CARGO_TARGET_DIR when set)
#   --root DIR     install into DIR instead of / (for tests and packaging);
#                  the user, ownership and systemctl steps are only printed
#   --dry-run      print every step, change nothing
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$script_dir")

binary="${CARGO_TARGET_DIR:-$repo_dir/target}/release/tandem-agent"
root=""
dry_run=0

usage() { sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; shift 2 ;;
    --root=*) root=${1#*=}; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

if [ -n "$root" ]; then
  root=${root%/}
  [ -n "$root" ] || die "--root /: leave --root out to install into the system"
fi
if [ ! -x "$binary" ]; then
  [ "$dry_run" -eq 1 ] || die "no executable at $binary (build it with: cargo build --release -p tandem-agent, or pass --binary PATH)"
  printf 'warning: no executable at %s yet\n' "$binary" >&2
fi
if [ -z "$root" ] && [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  die "installing into the system needs root (or use --root DIR / --dry-run)"
fi

unit_src="$script_dir/tandem-agent@.service"
example_src="$script_dir/example.toml"
[ -f "$unit_src" ] || die "missing $unit_src"
[ -f "$example_src" ] || die "missing $example_src"

# Prints a command and runs it (only prints it with --dry-run).
run() {
  if [ "$dry_run" -eq 1 ]; then
    printf 'would run:'
  else
    printf '+'
  fi
  printf ' %q' "$@"
  printf '\n'
  if [ "$dry_run" -eq 0 ]; then
    "$@"
  fi
}

# Steps that change the host itself (users, ownership, systemd): run for a
# real install, only printed when installing into a scratch root.
host() {
  if [ -n "$root" ]; then
    printf 'would run (not with --root):'
    printf ' %q' "$@"
    printf '\n'
  else
    run "$@"
  fi
}

# The tandem system user and group (home: the state directories' parent).
if [ -n "$root" ] || ! getent passwd tandem >/dev/null; then
  if [ -z "$root" ] && getent group tandem >/dev/null; then
    group_opt=(--gid tandem)
  else
    group_opt=(--user-group)
  fi
  host useradd --system "${group_opt[@]}" --home-dir /var/lib/tandem --no-create-home \
    --shell /usr/sbin/nologin --comment "Tandem database sync" tandem
fi

run install -D -m 0755 "$binary" "$root/usr/bin/tandem-agent"
run install -D -m 0644 "$unit_src" "$root/etc/systemd/system/tandem-agent@.service"
run install -d -m 0750 "$root/etc/tandem"
run install -m 0640 "$example_src" "$root/etc/tandem/example.toml.sample"
host chown root:tandem "$root/etc/tandem" "$root/etc/tandem/example.toml.sample"

if [ -n "$root" ] || [ -d /run/systemd/system ]; then
  host systemctl daemon-reload
else
  printf 'systemd is not running: skipping systemctl daemon-reload\n'
fi

cat <<EOF

Next, for an integration called NAME:
  cp /etc/tandem/example.toml.sample /etc/tandem/NAME.toml   # set state_dir = "/var/lib/tandem/NAME"
  chown root:tandem /etc/tandem/NAME.toml && chmod 0640 /etc/tandem/NAME.toml
  tandem-agent install-triggers --config /etc/tandem/NAME.toml
  systemctl enable --now tandem-agent@NAME
  journalctl -u tandem-agent@NAME -f
EOF
