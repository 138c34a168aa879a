#!/bin/sh
# pre-promote gate for PostgreSQL: refuse the promotion (exit 1) when this
# standby's database is not running or has not replayed what it received,
# so that the next-ranked agent takes over instead.
set -eu
: "${PGDATA:?PGDATA must name the data directory}"
pg_ctl status -D "$PGDATA" >/dev/null || { echo "postgres is not running" >&2; exit 1; }
lag=$(psql -Atc "select coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)")
[ "${lag%.*}" -le "${MASTERSHIP_PG_MAX_LAG:-0}" ] || { echo "replay lags by $lag bytes" >&2; exit 1; }
