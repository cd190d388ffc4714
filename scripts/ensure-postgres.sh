#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl, postgres) are on this machine; the tests
# start their own throwaway server from them (tests/postgres.py). Idempotent: installs the Debian
# `postgresql` package only when no initdb is found, and only when running as root.
# The Python driver (psycopg2-binary) comes from the `dev` extra that scripts/test.sh installs.
set -euo pipefail

find_initdb() {
  local candidate
  # Newest version first, like tests/postgres.py.
  while IFS= read -r candidate; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V -r)
  command -v initdb 2>/dev/null
}

if initdb_path=$(find_initdb); then
  echo "postgres: using $(dirname "$initdb_path")"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "postgres: no initdb found (looked in /usr/lib/postgresql/*/bin and PATH) and not root;" \
       "install the server, e.g. 'sudo apt-get install postgresql', then rerun." >&2
  exit 1
fi

echo "postgres: server binaries missing; installing the Debian 'postgresql' package..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null

# The package may create and start a system cluster (port 5432); the tests do not use it,
# so stop it again rather than leave a server running on the CI machine.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters --no-header 2>/dev/null | while read -r ver name _port status _rest; do
    if [ "$status" = online ]; then
      pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
    fi
  done || true
fi

if ! initdb_path=$(find_initdb); then
  echo "postgres: installed the 'postgresql' package but still found no initdb" >&2
  exit 1
fi
echo "postgres: installed; using $(dirname "$initdb_path")"
