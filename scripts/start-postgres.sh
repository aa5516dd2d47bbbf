#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the tests, on loopback, as the postgres user.
# Prints the SQLAlchemy URL of its `postgres` database; tests create their own databases in it.
#   usage: scripts/start-postgres.sh [DIR] [PORT]     (defaults: /tmp/dockyard-pg, 55432)
set -euo pipefail
dir=${1:-/tmp/dockyard-pg}
port=${2:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -x "$bin/initdb" ]] || { echo "no PostgreSQL server found: apt-get install -y postgresql" >&2; exit 1; }
url="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
if su postgres -s /bin/sh -c "$bin/pg_isready -q -h 127.0.0.1 -p $port" 2>/dev/null; then
  echo "$url"; exit 0
fi
mkdir -p "$dir"; chown postgres "$dir"; chmod a+x "$(dirname "$dir")"  # the postgres user must reach it
if [[ ! -f "$dir/PG_VERSION" ]]; then
  su postgres -s /bin/sh -c "$bin/initdb -D '$dir' -A trust -U postgres --no-sync" >/dev/null
fi
# fsync off: a test server, thrown away; max_connections for 3 servers x pools + tests
su postgres -s /bin/sh -c "$bin/pg_ctl -D '$dir' -l '$dir/server.log' -w -t 60 -o \"-h 127.0.0.1 -p $port -k /tmp -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400\" start" >/dev/null
echo "$url"
