#!/bin/sh
# on-role-change hook for PostgreSQL streaming replication (an example to
# adapt): the master's database is promoted, a back-up's follows the master
# as a standby. Needs PGDATA and pg_ctl on PATH; MASTERSHIP_PG_PORT (5432)
# and MASTERSHIP_PG_USER (replicator) name the replication connection.
#
#   PGDATA=/var/lib/postgresql/16/main mastership agent ... \
#     -on-role-change agent/hook/examples/postgres.sh -pre-promote agent/hook/examples/postgres-pre-promote.sh
#
# Runs are one at a time and carry the latest state, so the script only has
# to bring the database to the role it is given.
set -eu
role=$1
: "${PGDATA:?PGDATA must name the data directory}"
port=${MASTERSHIP_PG_PORT:-5432}
user=${MASTERSHIP_PG_USER:-replicator}

case $role in
master)
	# A standby becomes the primary; a primary stays one.
	if [ -f "$PGDATA/standby.signal" ]; then
		pg_ctl promote -D "$PGDATA" -w
	fi
	;;
backup)
	[ -n "${MASTERSHIP_MASTER_ADDR:-}" ] || exit 0 # no master known yet
	host=${MASTERSHIP_MASTER_ADDR%:*}
	conninfo="host=$host port=$port user=$user application_name=mastership-$MASTERSHIP_ID"
	# Follow the master as a standby (postgresql.auto.conf is what
	# ALTER SYSTEM writes; the last setting wins).
	printf "primary_conninfo = '%s'\n" "$conninfo" >>"$PGDATA/postgresql.auto.conf"
	touch "$PGDATA/standby.signal"
	pg_ctl restart -D "$PGDATA" -m fast -w
	;;
recovering | quarantined)
	# The agent is realigning its own state: stop serving reads.
	pg_ctl stop -D "$PGDATA" -m fast -w || true
	;;
stopped) ;;
esac
