#!/bin/sh
# on-role-change hook: keep the agent's role in a file the service reads.
#
#   mastership agent ... -on-role-change agent/hook/examples/role-file.sh
#
# Writes "$ROLE $EPOCH.$EPOCH_ID $MASTER $MASTER_ADDR" to
# $MASTERSHIP_STATE_DIR/GROUP-ID/role (default /run/mastership), atomically:
# a reader sees the old line or the new one, never half of one. The epoch is
# the fencing token: a service that stamps its writes with it, and a store
# that refuses stamps older than the newest it saw, cannot take a write from
# a deposed master.
set -eu
role=$1 group=$3 id=$4
dir=${MASTERSHIP_STATE_DIR:-/run/mastership}/$group-$id
mkdir -p "$dir"
tmp=$(mktemp "$dir/.role.XXXXXX")
printf '%s %s.%s %s %s\n' "$role" "$MASTERSHIP_EPOCH" "$MASTERSHIP_EPOCH_ID" \
	"${MASTERSHIP_MASTER:--}" "${MASTERSHIP_MASTER_ADDR:--}" >"$tmp"
mv -f "$tmp" "$dir/role"
