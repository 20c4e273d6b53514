#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for the TPC-C comparison, from Debian's packages.
#
#   scripts/postgres.sh start DIR PORT   # initdb DIR if new, start on 127.0.0.1:PORT, print settings
#   scripts/postgres.sh stop DIR
#
# fsync and synchronous_commit stay on (the defaults), like OrdoDB's fsync'd
# RocksDB; shared_buffers and max_connections are raised for the benchmark.
# The server runs as the `postgres` user when started by root (initdb
# refuses root). Connect with postgres://postgres@127.0.0.1:PORT/postgres.
set -euo pipefail
cmd=${1:?usage: postgres.sh start DIR PORT | stop DIR}
dir=${2:?data directory}
bin=/usr/lib/postgresql/15/bin
# The client package alone also creates $bin (psql lives there): look for the
# server's own programs.
if [ ! -x "$bin/initdb" ] || [ ! -x "$bin/pg_ctl" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing postgresql-15 (Debian package)..." >&2
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-15 >/dev/null
fi
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    port=${3:?port}
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >/dev/null
      cat >> "$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 300
shared_buffers = 1GB
fsync = on
synchronous_commit = on
full_page_writes = on
max_wal_size = 4GB
CONF
    fi
    as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
    "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc \
      "SELECT name || ' = ' || setting FROM pg_settings WHERE name IN ('server_version','fsync','synchronous_commit','full_page_writes','shared_buffers','max_connections','default_transaction_isolation','wal_level') ORDER BY name"
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
