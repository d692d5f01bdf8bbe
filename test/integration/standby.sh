#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # bash -c '...' scripts get their values as "$1"...
# Hot standby: predict runs on a streaming replica and follows promotions made on the primary.
#
# A second cluster on this machine, cloned from the test cluster with pg_basebackup -R over the
# primary's Unix socket ($CML_PGDIR), started with scripts/pgcluster.sh on its own socket
# directory and port, preloading cinematic_ml with cinematic_ml.database naming the test
# database (the background worker must not start on a standby). Then, on the primary: a fresh
# database, the extension, a model trained (version 1). Checks, after each change has been
# replayed (pg_current_wal_insert_lsn() on the primary <= pg_last_wal_replay_lsn() on the
# standby; the insert position, not pg_current_wal_lsn(): the test cluster runs with
# synchronous_commit = off, so a commit record can still sit unwritten in the WAL buffers):
#   - one long-lived standby session predicts with version 1, the same answers as the primary,
#     from its per-backend cache (the standby's statistics: cache hits, no reload);
#   - a new candidate (version 2) does not change what it serves;
#   - UPDATE ... SET status = 'active' on the primary: that session's NEXT statement serves
#     version 2 (the relcache invalidation is replayed to standby backends), also under parallel
#     query; a rollback on the primary brings version 1 back the same way;
#   - predict writes nothing: it works on the standby, and on the primary a transaction that
#     predicts gets no transaction id; train(), retrain() and the promotion UPDATE fail on the
#     standby with the read-only error, and the session keeps serving;
#   - the standby has no cinematic_ml worker and its log no cinematic_ml error, crash or worker
#     activity; the per-backend cache shows in the standby's statistics (loads, hits).
# The standby is stopped and removed at the end; the primary's database is dropped.
#
# Needs, on the primary, wal_level replica or logical and max_wal_senders > 0 (the defaults;
# skipped otherwise) and replication connections over the Unix socket: the initdb default
# pg_hba.conf (which scripts/pgcluster.sh keeps) has "local replication all trust"; when no
# "local replication" line is there, this test appends one to $CML_PGDATA/pg_hba.conf, reloads,
# and removes it at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$HERE/lib/common.sh"

ROOT=${CML_ROOT:-$(cd "$HERE/../.." && pwd)}
PGCLUSTER=${CML_PGCLUSTER:-$ROOT/scripts/pgcluster.sh}
DB=cml_standby
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

for v in PGHOST PGPORT CML_PGDATA; do
	if [[ -z "${!v:-}" ]]; then
		echo "SKIP: $v is not set (run me from scripts/test.sh, or export what it exports)"
		exit 77
	fi
done
PRIMARY_SOCKET=$PGHOST
PRIMARY="host=$PRIMARY_SOCKET port=$PGPORT user=postgres dbname=$DB"

qp() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$PRIMARY" "$@"; }
qpg() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }
as_pg() {
	if [[ "$(id -un)" == postgres ]]; then "$@"; else runuser -u postgres -- "$@"; fi
}

SDIR=""
HBA_ADDED=""
cleanup() {
	session_close_all
	if [[ -n "$SDIR" ]]; then
		PG_WIPE=1 "$PGCLUSTER" stop "$SDIR" >/dev/null 2>&1 || true
		rm -rf -- "$SDIR"
	fi
	qpg -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
	if [[ -n "$HBA_ADDED" ]]; then
		# remove exactly the line this test appended
		grep -vxF "$HBA_ADDED" "$CML_PGDATA/pg_hba.conf" >"$CML_PGDATA/pg_hba.conf.cml_tmp" &&
			cat "$CML_PGDATA/pg_hba.conf.cml_tmp" >"$CML_PGDATA/pg_hba.conf" &&
			rm -f "$CML_PGDATA/pg_hba.conf.cml_tmp"
		qpg -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- prerequisites
if [[ "$(qpg -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'cinematic_ml'")" != 1 ]]; then
	echo "FAILED: the cinematic_ml extension is not installed in this cluster"
	exit 1
fi
wal_level=$(qpg -c "SHOW wal_level")
senders=$(qpg -c "SHOW max_wal_senders")
if [[ "$wal_level" == minimal || "$senders" == 0 ]]; then
	echo "SKIP: the primary cannot stream (wal_level = $wal_level, max_wal_senders = $senders; both need a restart)"
	exit 77
fi
if [[ "$(qpg -c "SELECT count(*) FROM pg_hba_file_rules
                  WHERE type = 'local' AND 'replication' = ANY (database) AND error IS NULL")" == 0 ]]; then
	HBA_ADDED="local replication all trust # added by test/integration/standby.sh"
	echo "# pg_hba.conf has no 'local replication' line: appending '$HBA_ADDED' and reloading"
	echo "$HBA_ADDED" >>"$CML_PGDATA/pg_hba.conf"
	qpg -c "SELECT pg_reload_conf()" >/dev/null
	sleep 0.5
fi

# ---------------------------------------------------------------- the standby
qpg -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
SDIR=$(mktemp -d /tmp/cml-standby.XXXXXX)
chmod 0755 "$SDIR"
[[ "$(id -un)" == postgres ]] || chown postgres: "$SDIR"
SPORT=$((56600 + RANDOM % 300))
t0=$SECONDS
if ! as_pg "$PGBIN/pg_basebackup" -h "$PRIMARY_SOCKET" -p "$PGPORT" -U postgres -D "$SDIR/data" \
	-R -X stream -c fast --no-sync >"$SDIR/basebackup.log" 2>&1; then
	echo "FAILED: pg_basebackup from the primary (socket $PRIMARY_SOCKET, port $PGPORT):"
	sed 's/^/  /' "$SDIR/basebackup.log"
	exit 1
fi
# pgcluster.sh rewrites pgcluster.conf (port, socket directory, preload) for the standby;
# the primary_conninfo -R wrote to postgresql.auto.conf points at the primary's socket
if ! PG_EXTRA_CONF="shared_preload_libraries = 'cinematic_ml'
cinematic_ml.database = '$DB'
cinematic_ml.worker_naptime = 1
hot_standby = on
max_parallel_workers_per_gather = 2" "$PGCLUSTER" start "$SDIR" "$SPORT" >/dev/null; then
	echo "FAILED: the standby did not start; its log:"
	tail -n 30 "$SDIR/log" 2>/dev/null | sed 's/^/  /'
	exit 1
fi
echo "# standby: $SDIR (socket), port $SPORT, cloned and started in $((SECONDS - t0)) s"
STANDBY="host=$SDIR port=$SPORT user=postgres dbname=$DB"
qs() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$STANDBY" "$@"; }
qspg() { psql -X -q -v ON_ERROR_STOP=1 -At -d "host=$SDIR port=$SPORT user=postgres dbname=postgres" "$@"; }

expect "the standby is in recovery and streams from the primary" \
	"$(qspg -c "SELECT pg_is_in_recovery() || ' ' || (SELECT status FROM pg_stat_wal_receiver)")" "true streaming"
expect "the standby preloads cinematic_ml with cinematic_ml.database = $DB" \
	"$(qspg -c "SELECT current_setting('shared_preload_libraries') || ' ' || current_setting('cinematic_ml.database')")" \
	"cinematic_ml $DB"

# ---------------------------------------------------------------- version 1
qpg -c "CREATE DATABASE $DB"
qp >/dev/null <<'SQL'
CREATE EXTENSION cinematic_ml;
CREATE TABLE sb_points AS
SELECT i::bigint AS id,
       (ARRAY[48.8606, 48.8584, 48.8530, 48.8867, 48.8738, 48.8462])[1 + i % 6] + ((i * 7919) % 101 - 50) * 0.00002 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499, 2.3431, 2.2950, 2.3712])[1 + i % 6] + ((i * 104729) % 101 - 50) * 0.00003 AS lon
  FROM generate_series(1, 20000) i;
ANALYZE sb_points;
SELECT cinematic_ml.train('sb', 'SELECT lat, lon FROM sb_points', 'kmeans', '{"k": 3, "seed": 1}');
SQL
# what each version predicts, summed over the points (computed on the primary)
checksum_sql="SELECT sum(id * (cinematic_ml.predict_cluster(lat, lon, 'sb') + 2)) FROM sb_points"
ck1=$(qp -c "$checksum_sql")
expect "the primary has version 1 active" \
	"$(qp -c "SELECT version || ':' || status FROM cinematic_ml.model_versions WHERE model_name = 'sb'")" "1:active"
check "the standby replays the new database, the extension and version 1" lsn_wait_replay "$PRIMARY" "$STANDBY" 60

session_open standby -d "$STANDBY"
session_run standby "SELECT pg_backend_pid();"
spid=${SESSION_OUT[*]}
predict_sql="SELECT (cinematic_ml.predict(48.8606, 2.3376, 'sb')).model_version || ' ' || ($checksum_sql);"
session_run standby "$predict_sql" || true
expect "the standby session predicts with version 1, the same answers as the primary" \
	"${SESSION_OUT[*]}" "1 $ck1"
session_run standby "SELECT cinematic_ml.is_hotspot(48.8606, 2.3376, 'sb') || ' ' ||
                            (SELECT count(*) FROM cinematic_ml.zones('sb')) || ' ' ||
                            (SELECT count(*) FROM cinematic_ml.active_zones WHERE model_name = 'sb') || ' ' ||
                            (cinematic_ml.model_info((SELECT model FROM cinematic_ml.model_versions WHERE model_name = 'sb'))->>'algorithm');" || true
expect "is_hotspot, zones(), active_zones and model_info() work on the standby" \
	"${SESSION_OUT[*]}" "true 3 3 kmeans"

# ---------------------------------------------------------------- version 2: candidate, then promoted
qp -c "SELECT cinematic_ml.train('sb', 'SELECT lat, lon FROM sb_points', 'kmeans', '{\"k\": 6, \"seed\": 2}')" >/dev/null
lsn_wait_replay "$PRIMARY" "$STANDBY" 60 || true
session_run standby "$predict_sql" || true
expect "a new candidate (version 2) replayed: the session still serves version 1" "${SESSION_OUT[*]}" "1 $ck1"

# the session serves from its cache while nothing changes: hits grow, no load
stats_sql="SELECT model_loads || ' ' || cache_hits FROM cinematic_ml.stats WHERE model_name = 'sb';"
session_run standby "$stats_sql" || true
read -r loads0 hits0 _ <<<"${SESSION_OUT[*]} 0 0"
session_run standby "$predict_sql" || true
session_run standby "$predict_sql" || true
session_run standby "$stats_sql" || true
read -r loads1 hits1 _ <<<"${SESSION_OUT[*]} 0 0"
check "while nothing changes the session predicts from its cache (model loads $loads0 -> $loads1, cache hits $hits0 -> $hits1)" \
	test "$loads1" == "$loads0" -a "$hits1" -gt "$hits0"

qp -c "UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'sb' AND version = 2"
ck2=$(qp -c "$checksum_sql")
[[ "$ck2" != "$ck1" ]] || not_ok "versions 1 and 2 should predict differently ($ck1)"
check "the promotion is replayed" lsn_wait_replay "$PRIMARY" "$STANDBY" 60
session_run standby "$predict_sql" || true
expect "promoted on the primary: the same standby session's next statement serves version 2" \
	"${SESSION_OUT[*]}" "2 $ck2"
session_run standby "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
                     SELECT min((p).model_version) || ' ' || max((p).model_version) || ' ' || sum(id * ((p).cluster + 2))
                       FROM (SELECT id, cinematic_ml.predict(lat, lon, 'sb') AS p FROM sb_points) s;
                     RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;" || true
expect "and so does a parallel statement on the standby (leader and workers)" "${SESSION_OUT[*]}" "2 2 $ck2"

qp -c "UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'sb' AND version = 1"
lsn_wait_replay "$PRIMARY" "$STANDBY" 60 || true
session_run standby "$predict_sql" || true
expect "rolled back on the primary: the session's next statement serves version 1 again" "${SESSION_OUT[*]}" "1 $ck1"
session_run standby "SELECT pg_backend_pid();"
expect "all of it in one standby backend (pid $spid)" "${SESSION_OUT[*]}" "$spid"

# ---------------------------------------------------------------- read-only
expect "predict writes nothing: on the primary a transaction that predicts gets no transaction id" \
	"$(qp -c "BEGIN" -c "$checksum_sql" -c "SELECT count(*) FROM cinematic_ml.predict(48.86, 2.35, 'sb')" \
		-c "SELECT coalesce(pg_current_xact_id_if_assigned()::text, 'none')" -c "COMMIT" | tail -n 1)" none
session_run standby "SELECT cinematic_ml.train('sb', 'SELECT lat, lon FROM sb_points', 'kmeans', '{\"k\": 4}');" || true
train_out=${SESSION_OUT[*]}
check "train() on the standby fails with the read-only error" \
	bash -c '[[ "$1" == *"ERROR:"*"read-only transaction"* ]]' _ "$train_out" || echo "#   got: $train_out"
session_run standby "SELECT cinematic_ml.retrain('sb', true);" || true
check "retrain() on the standby fails with the read-only error" \
	bash -c '[[ "$1" == *"ERROR:"*"read-only transaction"* ]]' _ "${SESSION_OUT[*]}" || echo "#   got: ${SESSION_OUT[*]}"
session_run standby "UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'sb' AND version = 2;" || true
check "promoting on the standby fails with the read-only error" \
	bash -c '[[ "$1" == *"ERROR:"*"read-only transaction"* ]]' _ "${SESSION_OUT[*]}" || echo "#   got: ${SESSION_OUT[*]}"
session_run standby "$predict_sql" || true
expect "after those errors the session still serves version 1" "${SESSION_OUT[*]}" "1 $ck1"
expect "the primary still has versions 1 (active) and 2 (archived), nothing else" \
	"$(qp -c "SELECT string_agg(version || ':' || status, ',' ORDER BY version) FROM cinematic_ml.model_versions")" \
	"1:active,2:archived"

# ---------------------------------------------------------------- the standby's worker, stats, log
session_run standby "SELECT model_loads || ' ' || (cache_hits > 0) || ' ' || last_load_version
                       FROM cinematic_ml.stats WHERE model_name = 'sb';" || true
echo "# standby statistics for 'sb': model_loads, cache hits > 0, last_load_version = ${SESSION_OUT[*]}"
read -r loads hits lastv <<<"${SESSION_OUT[*]}"
check "the standby's statistics show the cache at work (loads >= 3, cache hits, last load version 1)" \
	test "${loads:-0}" -ge 3 -a "${hits:-}" == true -a "${lastv:-}" == 1
sleep 1 # cinematic_ml.worker_naptime = 1: a worker, had it started, would have run by now
expect "no cinematic_ml worker runs on the standby" \
	"$(qspg -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'cinematic_ml worker'")" 0
expect "the standby's health() says no worker runs" \
	"$(qs -c "SELECT string_agg(model_name || ':' || worker_running, ',') FROM cinematic_ml.health()")" "sb:false"
session_close standby
worker_lines=$(grep -E 'cinematic_ml worker|background worker "cinematic_ml|terminated by signal|PANIC|TRAP:' "$SDIR/log" || true)
cml_errors=$(grep -E '(ERROR|FATAL):' "$SDIR/log" | grep -v 'read-only transaction' || true)
check "the standby's log has no cinematic_ml worker activity, crash or unexpected error" \
	test -z "$worker_lines$cml_errors" || printf '#   %s\n' "$worker_lines" "$cml_errors"

# ---------------------------------------------------------------- stop it
if PG_WIPE=1 "$PGCLUSTER" stop "$SDIR" >/dev/null 2>&1 && [[ ! -e "$SDIR" ]]; then
	ok "the standby is stopped and removed"
	SDIR=""
else
	not_ok "the standby is stopped and removed ($SDIR)"
fi
finish
