#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # bash -c '...' scripts get their values as "$1"...
# Concurrency: predictions under a storm of promotions and rollbacks, and two retrains at once.
#
# Three versions of model 'conc' that predict differently (k-means k=3, k-means k=6, DBSCAN)
# and a table of 4,000 probe points whose checksum sum(id * (cluster + 2)) under each version
# is computed beforehand with the model-value variant predict_cluster(bytea, lat, lon).
#
# Phase 1 (DURATION s, default 20): pgbench -M prepared runs
#   - 6 clients: one statement with three predict call sites over the 4,000 points
#     (predict(...).model_version, predict(...).cluster and predict_cluster(...)); it records
#     the number of distinct versions, the version and both checksums into a results table;
#   - 2 clients: the same under forced parallel query (Partial Aggregate in 2 workers + the
#     leader, each process resolving the model itself);
# while one psql session promotes and rolls back (plain UPDATE ... SET status = 'active',
# the cycle 2, 3, 2, 1, ... about every 50 ms) and after each UPDATE another long-lived
# session (which has the previous version cached) asks predict() for the version.
# Checks: pgbench ran without a single error; every statement saw exactly one version and its
# checksums are that version's; all three versions were served; the first statement after
# each promotion saw the new version; every status change is in the audit log, once; one
# active version at the end.
#
# Phase 2: two cinematic_ml.retrain('conc', true) at the same time (the source query sleeps
# 2 s so they overlap): one trains version 4, the other returns {"action": "skipped",
# "reason": "another retrain of this model is running"}; no duplicate version, one active
# version; predict is not blocked meanwhile.
#
# Runs against the cluster scripts/test.sh started (PGHOST/PGPORT/PGUSER), in its own
# database (cml_concurrency), dropped at the end.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$HERE/lib/common.sh"

DB=cml_concurrency
DURATION=${CML_CONC_DURATION:-20}
SERIAL_CLIENTS=6
PARALLEL_CLIENTS=2
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
PARALLEL_OPTIONS="-c max_parallel_workers_per_gather=2 -c parallel_setup_cost=0 -c parallel_tuple_cost=0 -c min_parallel_table_scan_size=0"

q() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$DB" "$@"; }
qpg() { psql -X -q -v ON_ERROR_STOP=1 -At -d postgres "$@"; }

WORK=""
BG_PIDS=()
GDB_PID=""
cleanup() {
	local pid
	if [[ -n "$GDB_PID" ]]; then
		# never kill gdb while it holds a backend stopped: let it detach
		touch "$WORK/release"
		for _ in $(seq 1 150); do
			kill -0 "$GDB_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill "$GDB_PID" 2>/dev/null || true
	fi
	for pid in "${BG_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${BG_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	session_close_all
	qpg -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
	[[ -z "$WORK" ]] || rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v pgbench >/dev/null; then
	echo "SKIP: pgbench is missing (package postgresql-15)"
	exit 77
fi
if [[ "$(qpg -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'cinematic_ml'")" != 1 ]]; then
	echo "FAILED: the cinematic_ml extension is not installed in this cluster"
	exit 1
fi

WORK=$(mktemp -d /tmp/cml-concurrency.XXXXXX)
qpg -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"

# ---------------------------------------------------------------- set-up
q >/dev/null <<'SQL'
CREATE EXTENSION cinematic_ml;
-- six hotspots of 500 points each
CREATE TABLE conc_train AS
SELECT i AS id,
       (ARRAY[48.8606, 48.8584, 48.8530, 48.8867, 48.8738, 48.8462])[1 + i % 6] + ((i * 7919) % 101 - 50) * 0.00002 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499, 2.3431, 2.2950, 2.3712])[1 + i % 6] + ((i * 104729) % 101 - 50) * 0.00003 AS lon
  FROM generate_series(1, 3000) i;
-- probe points spread over the area
CREATE TABLE probe_points AS
SELECT i::bigint AS id, 48.84 + ((i * 7919) % 1000) * 0.00005 AS lat, 2.28 + ((i * 104729) % 1000) * 0.0001 AS lon
  FROM generate_series(1, 4000) i;
ANALYZE probe_points;
SELECT cinematic_ml.train('conc', 'SELECT lat, lon FROM conc_train', 'kmeans', '{"k": 3, "seed": 1}');
SELECT cinematic_ml.train('conc', 'SELECT lat, lon FROM conc_train', 'kmeans', '{"k": 6, "seed": 2}');
SELECT cinematic_ml.train('conc', 'SELECT lat, lon FROM conc_train', 'dbscan', '{"eps_m": 120, "min_points": 8}');
-- what each version predicts for the probe points, computed from the model values
CREATE TABLE expected AS
SELECT v.version, sum(p.id * (cinematic_ml.predict_cluster(v.model, p.lat, p.lon) + 2)) AS ck
  FROM cinematic_ml.model_versions v, probe_points p
 WHERE v.model_name = 'conc'
 GROUP BY v.version;
CREATE TABLE results (
    kind   text NOT NULL,
    client int NOT NULL,
    nv     int,
    vmin   int,
    vmax   int,
    ck     bigint,
    ck2    bigint,
    at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
SQL
expect "three versions registered, version 1 active, with three different predictions" \
	"$(q -c "SELECT string_agg(v.version || ':' || v.status, ',' ORDER BY v.version) || ' ' || count(DISTINCT e.ck)
	              FROM cinematic_ml.model_versions v JOIN expected e USING (version) WHERE v.model_name = 'conc'")" \
	"1:active,2:candidate,3:candidate 3"

cat >"$WORK/serial.sql" <<'SQL'
SELECT count(DISTINCT (p).model_version) AS nv, min((p).model_version) AS vmin, max((p).model_version) AS vmax,
       sum(id * ((p).cluster + 2)) AS ck, sum(id * (cinematic_ml.predict_cluster(lat, lon, 'conc') + 2)) AS ck2
  FROM (SELECT id, lat, lon, cinematic_ml.predict(lat, lon, 'conc') AS p FROM probe_points) s \gset
INSERT INTO results (kind, client, nv, vmin, vmax, ck, ck2) VALUES ('serial', :client_id, :nv, :vmin, :vmax, :ck, :ck2);
SQL
# count(DISTINCT) cannot run in parallel: min/max of the version instead
cat >"$WORK/parallel.sql" <<'SQL'
SELECT min((p).model_version) AS vmin, max((p).model_version) AS vmax,
       sum(id * ((p).cluster + 2)) AS ck, sum(id * (cinematic_ml.predict_cluster(lat, lon, 'conc') + 2)) AS ck2
  FROM (SELECT id, lat, lon, cinematic_ml.predict(lat, lon, 'conc') AS p FROM probe_points) s \gset
INSERT INTO results (kind, client, vmin, vmax, ck, ck2) VALUES ('parallel', :client_id, :vmin, :vmax, :ck, :ck2);
SQL

plan=$(PGOPTIONS="$PGOPTIONS $PARALLEL_OPTIONS" q -c "EXPLAIN (ANALYZE, COSTS OFF) $(sed -n '1,3p' "$WORK/parallel.sql" | sed 's/ \\gset$//')" 2>&1) || true
check "the parallel statement predicts in parallel workers (Partial Aggregate under Gather)" \
	bash -c '[[ "$1" == *"Partial Aggregate"* && "$1" =~ Workers\ Launched:\ [12] ]]' _ "$plan" ||
	printf '# %s\n' "$plan"

# ---------------------------------------------------------------- phase 1
echo "# phase 1: pgbench ${DURATION}s ($SERIAL_CLIENTS + $PARALLEL_CLIENTS parallel clients) while versions are promoted and rolled back"
session_open promoter -d "$DB"
session_open observer -d "$DB"
session_run observer "SELECT (cinematic_ml.predict(48.8606, 2.3376, 'conc')).model_version;"
expect "the observer session has version 1 cached" "${SESSION_OUT[*]}" 1

pgbench -n -M prepared -T "$DURATION" -c "$SERIAL_CLIENTS" -j 2 -f "$WORK/serial.sql" "$DB" \
	>"$WORK/pgbench-serial.out" 2>&1 &
PGB1=$!
BG_PIDS+=("$PGB1")
PGOPTIONS="$PGOPTIONS $PARALLEL_OPTIONS" pgbench -n -M prepared -T "$DURATION" -c "$PARALLEL_CLIENTS" -j 1 \
	-f "$WORK/parallel.sql" "$DB" >"$WORK/pgbench-parallel.out" 2>&1 &
PGB2=$!
BG_PIDS+=("$PGB2")

events_before=$(q -c "SELECT coalesce(max(event_id), 0) FROM cinematic_ml.model_events")
cycle=(2 3 2 1)
updates=0
update_errors=0
stale_reads=0
observer_errors=0
first_error=""
while kill -0 "$PGB1" 2>/dev/null || kill -0 "$PGB2" 2>/dev/null; do
	target=${cycle[$((updates % 4))]}
	if session_run promoter "UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'conc' AND version = $target;" 30; then
		updates=$((updates + 1))
	else
		update_errors=$((update_errors + 1))
		[[ -n "$first_error" ]] || first_error="UPDATE to $target: ${SESSION_OUT[*]}"
		((update_errors < 5)) || break
		continue
	fi
	# the promotion has committed: the next statement of another session must see it
	if session_run observer "SELECT (cinematic_ml.predict(48.8606, 2.3376, 'conc')).model_version;" 30; then
		if [[ "${SESSION_OUT[*]}" != "$target" ]]; then
			stale_reads=$((stale_reads + 1))
			[[ -n "$first_error" ]] || first_error="after promoting $target the observer saw version ${SESSION_OUT[*]}"
		fi
	else
		observer_errors=$((observer_errors + 1))
		[[ -n "$first_error" ]] || first_error="observer: ${SESSION_OUT[*]}"
	fi
	sleep 0.05
done
rc1=0 rc2=0
wait "$PGB1" || rc1=$?
wait "$PGB2" || rc2=$?
BG_PIDS=()
echo "# promoter: $updates status changes (UPDATE ... SET status = 'active'), $update_errors errors"
[[ -z "$first_error" ]] || echo "# first problem: $first_error"

pgbench_ok() { # kind rc outfile
	local kind=$1 rc=$2 out=$3 n failed
	n=$(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$out")
	failed=$(sed -nE 's/^number of failed transactions: ([0-9]+).*/\1/p' "$out")
	echo "# pgbench $kind: exit $rc, ${n:-?} transactions (SELECT + INSERT), ${failed:-?} failed" \
		"($(sed -nE 's/^(latency average = .*)/\1/p' "$out"))"
	if [[ "$rc" == 0 && -n "$n" && "$n" -ge 20 && "$failed" == 0 ]] && ! grep -q 'aborted\|ERROR\|error:' "$out"; then
		return 0
	fi
	sed 's/^/#   /' "$out" | head -n 40
	return 1
}
check "pgbench (serial statements) ran without any error" pgbench_ok serial "$rc1" "$WORK/pgbench-serial.out"
check "pgbench (parallel statements) ran without any error" pgbench_ok parallel "$rc2" "$WORK/pgbench-parallel.out"
check "the promoter's $updates UPDATEs all succeeded (and there were at least 50)" \
	test "$update_errors" == 0 -a "$updates" -ge 50
check "after each of the $updates promotions the next statement of another session saw the new version" \
	test "$stale_reads" == 0 -a "$observer_errors" == 0

summary=$(q -c "SELECT kind, count(*), count(*) FILTER (WHERE nv IS DISTINCT FROM 1 AND kind = 'serial'),
                       count(*) FILTER (WHERE vmin IS DISTINCT FROM vmax),
                       count(*) FILTER (WHERE r.ck IS DISTINCT FROM e.ck OR r.ck2 IS DISTINCT FROM e.ck),
                       string_agg(DISTINCT vmin::text, ',')
                  FROM results r LEFT JOIN expected e ON e.version = r.vmin
                 GROUP BY kind ORDER BY kind")
echo "# per kind: statements, with several versions (count distinct), with several versions (min<>max), with wrong predictions, versions seen"
sed 's/^/#   /' <<<"$summary"
bad=$(q -c "SELECT count(*) FROM results r LEFT JOIN expected e ON e.version = r.vmin
             WHERE (kind = 'serial' AND nv IS DISTINCT FROM 1) OR vmin IS DISTINCT FROM vmax
                OR r.ck IS DISTINCT FROM e.ck OR r.ck2 IS DISTINCT FROM e.ck")
check "every statement's predictions came from exactly one version (max distinct versions per statement = 1, checksums match it)" \
	test "$bad" == 0 -a "$(q -c "SELECT count(*) FROM results")" -gt 0
if [[ "$bad" != 0 ]]; then
	q -c "SELECT r.*, e.ck AS expected_ck FROM results r LEFT JOIN expected e ON e.version = r.vmin
	       WHERE (kind = 'serial' AND nv IS DISTINCT FROM 1) OR vmin IS DISTINCT FROM vmax
	          OR r.ck IS DISTINCT FROM e.ck OR r.ck2 IS DISTINCT FROM e.ck LIMIT 10" | sed 's/^/#   /'
fi
expect "all three versions were served during the run (promotions happened mid-run)" \
	"$(q -c "SELECT string_agg(DISTINCT vmin::text, ',') FROM results")" "1,2,3"
expect "the parallel statements also saw all three versions" \
	"$(q -c "SELECT string_agg(DISTINCT vmin::text, ',') FROM results WHERE kind = 'parallel'")" "1,2,3"
audit=$(q -c "SELECT count(*) FILTER (WHERE event IN ('promoted', 'rolled_back')) || ' ' ||
                     count(*) FILTER (WHERE event = 'archived') || ' ' ||
                     count(*) FILTER (WHERE event = 'rolled_back')
                FROM cinematic_ml.model_events WHERE model_name = 'conc' AND event_id > $events_before")
read -r n_prom n_arch n_rb <<<"$audit"
echo "# audit log: $n_prom promotions/rollbacks ($n_rb rollbacks), $n_arch archivals"
check "each status change is audited once (promoted/rolled_back = archived = $updates UPDATEs)" \
	test "$n_prom" == "$updates" -a "$n_arch" == "$updates" -a "$n_rb" -ge 1
expected_active=${cycle[$(((updates - 1) % 4))]}
expect "exactly one active version at the end, the last one promoted ($expected_active)" \
	"$(q -c "SELECT string_agg(version::text, ',') FROM cinematic_ml.model_versions WHERE model_name = 'conc' AND status = 'active'")" \
	"$expected_active"

# ---------------------------------------------------------------- phase 2
echo "# phase 2: two concurrent retrain('conc', true)"
# a training that lasts 2 s, so the two calls overlap
q -c "UPDATE cinematic_ml.models SET source_query = 'SELECT lat, lon FROM conc_train WHERE (SELECT pg_sleep(2)::text) IS NOT NULL'
       WHERE model_name = 'conc'"
psql -X -q -At -d "$DB" -c "SELECT cinematic_ml.retrain('conc', true)" >"$WORK/retrain1.out" 2>&1 &
R1=$!
psql -X -q -At -d "$DB" -c "SELECT cinematic_ml.retrain('conc', true)" >"$WORK/retrain2.out" 2>&1 &
R2=$!
BG_PIDS+=("$R1" "$R2")
sleep 0.5
t0=${EPOCHREALTIME/,/.}
session_run observer "SELECT (cinematic_ml.predict(48.8606, 2.3376, 'conc')).model_version;" 30 || true
during=${SESSION_OUT[*]}
t1=${EPOCHREALTIME/,/.}
rr1=0 rr2=0
wait "$R1" || rr1=$?
wait "$R2" || rr2=$?
BG_PIDS=()
out1=$(<"$WORK/retrain1.out")
out2=$(<"$WORK/retrain2.out")
echo "# retrain 1 (exit $rr1): $out1"
echo "# retrain 2 (exit $rr2): $out2"
actions=$(q -v a="$out1" -v b="$out2" <<'SQL'
SELECT string_agg(coalesce(j->>'action', '?'), ',' ORDER BY coalesce(j->>'action', '?') = 'skipped')
  FROM (VALUES (:'a'), (:'b')) t(s), LATERAL (SELECT CASE WHEN s LIKE '{%' THEN s::jsonb END) x(j);
SQL
)
skipped_reason=$(q -v a="$out1" -v b="$out2" <<'SQL'
SELECT string_agg(s::jsonb->>'reason', ',') FROM (VALUES (:'a'), (:'b')) t(s)
 WHERE s LIKE '{%' AND s::jsonb->>'action' = 'skipped';
SQL
)
check "both retrain() calls succeeded" test "$rr1" == 0 -a "$rr2" == 0
check "one retrain trained (candidate/rejected), the other one was skipped (got: $actions)" \
	bash -c '[[ "$1" =~ ^(candidate|rejected|promoted),skipped$ ]]' _ "$actions"
expect "the skipped one says why: another retrain of this model is running" \
	"$skipped_reason" "another retrain of this model is running"
check "predict answered during the retrains, unblocked (version $expected_active, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s)" \
	bash -c '[[ "$1" == "$2" ]] && awk -v a="$3" -v b="$4" "BEGIN { exit !(b - a < 1) }"' _ "$during" "$expected_active" "$t0" "$t1"
expect "registry: versions 1..4 without duplicates, exactly one active (still $expected_active)" \
	"$(q -c "SELECT string_agg(version::text, ',' ORDER BY version) || ' ' || count(*) FILTER (WHERE status = 'active') || ' ' ||
	                     string_agg(version::text, ',') FILTER (WHERE status = 'active')
	                FROM cinematic_ml.model_versions WHERE model_name = 'conc'")" "1,2,3,4 1 $expected_active"
expect "audit log: one 'trained' event for version 4 and one 'skipped' event" \
	"$(q -c "SELECT count(*) FILTER (WHERE event = 'trained' AND version = 4) || ',' ||
	                     count(*) FILTER (WHERE event = 'skipped' AND detail->>'reason' = 'another retrain of this model is running')
	                FROM cinematic_ml.model_events WHERE model_name = 'conc'")" "1,1"
session_run observer "SELECT (cinematic_ml.predict(48.8606, 2.3376, 'conc')).model_version;" 30 || true
expect "the observer session still serves the active version $expected_active" "${SESSION_OUT[*]}" "$expected_active"

# ---------------------------------------------------------------- phase 3
# The window phase 1 can only hit by chance: a promotion's commit is visible to new snapshots
# (ProcArrayEndTransaction) a moment before its invalidation is sent (AtEOXact_Inval). gdb
# holds the promoting backend at AtEOXact_Inval, so every statement in between runs in it.
window_check() {
	local ppid target wait_ok=0
	if ! command -v gdb >/dev/null || ((EUID != 0)); then
		echo "# phase 3 skipped: needs gdb (package gdb) and root"
		return 0
	fi
	target=$([[ "$expected_active" == 1 ]] && echo 2 || echo 1)
	# big enough (~0.1 s) for the leader and both workers to take a share of the rows
	q -c "CREATE TABLE probe_big AS SELECT p.* FROM probe_points p, generate_series(1, 10)" -c "ANALYZE probe_big"
	echo "# phase 3: promote $target with the promoter held (gdb) between 'commit visible' and 'invalidation sent'"
	session_run reader "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
	                    SELECT (cinematic_ml.predict(48.8606, 2.3376, 'conc')).model_version;" || return 1
	[[ "${SESSION_OUT[*]}" == "$expected_active" ]] || { not_ok "phase 3: the reader should start with version $expected_active cached (${SESSION_OUT[*]})"; return 0; }
	session_run promoter "SELECT pg_backend_pid();"
	ppid=${SESSION_OUT[0]}
	rm -f "$WORK/release"
	gdb -p "$ppid" -batch -ex 'break AtEOXact_Inval' -ex 'continue' \
		-ex "shell for i in \$(seq 1 300); do [ -e '$WORK/release' ] && break; sleep 0.1; done" \
		-ex 'detach' >"$WORK/gdb.out" 2>&1 &
	GDB_PID=$!
	for _ in $(seq 1 100); do
		! grep -q '^TracerPid:[[:space:]]*[1-9]' "/proc/$ppid/status" 2>/dev/null || { wait_ok=1; break; }
		kill -0 "$GDB_PID" 2>/dev/null || break
		sleep 0.1
	done
	if ((wait_ok == 0)); then
		wait "$GDB_PID" 2>/dev/null || true
		GDB_PID=""
		echo "# phase 3 skipped: gdb could not attach to the backend (no ptrace here?):"
		sed 's/^/#   /' "$WORK/gdb.out" | tail -n 5
		return 0
	fi
	session_send promoter "UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'conc' AND version = $target;"
	# wait until the promotion is visible to new snapshots (the promoter is then stopped in its commit)
	wait_ok=0
	for _ in $(seq 1 100); do
		if [[ "$(q -c "SELECT status FROM cinematic_ml.model_versions WHERE model_name = 'conc' AND version = $target")" == active ]]; then
			wait_ok=1
			break
		fi
		sleep 0.1
	done
	local serial="" parallel=""
	if ((wait_ok)); then
		session_run reader "SELECT (cinematic_ml.predict(48.8606, 2.3376, 'conc')).model_version || ' ' ||
		                           (SELECT version FROM cinematic_ml.model_versions WHERE model_name = 'conc' AND status = 'active');" 30 || true
		serial=${SESSION_OUT[*]}
		session_run reader "SELECT min((p).model_version) || ' ' || max((p).model_version)
		                      FROM (SELECT cinematic_ml.predict(lat, lon, 'conc') AS p FROM probe_big) s;" 30 || true
		parallel=${SESSION_OUT[*]}
	fi
	touch "$WORK/release"
	wait "$GDB_PID" 2>/dev/null || true
	GDB_PID=""
	session_wait promoter 30 || true
	if ! grep -q 'Breakpoint 1,' "$WORK/gdb.out" || ((wait_ok == 0)); then
		not_ok "phase 3: could not hold the promoter in its commit (visible: $wait_ok)"
		sed 's/^/#   /' "$WORK/gdb.out" | tail -n 8
		return 0
	fi
	read -r pv sv <<<"$serial"
	echo "# in the window: a plain statement's predict served version ${pv:-?}; its snapshot has version ${sv:-?} active"
	read -r vmin vmax <<<"$parallel"
	expect "in that window a parallel statement still serves one version (leader and 2 workers: versions ${vmin:-?}..${vmax:-?})" \
		"${vmin:-x}" "${vmax:-y}"
	expect "in that window predict serves the version its statement's snapshot sees as active (predict ${pv:-?}, snapshot ${sv:-?})" \
		"${pv:-x}" "${sv:-y}"
	session_run reader "SELECT (cinematic_ml.predict(48.8606, 2.3376, 'conc')).model_version;" 30 || true
	expect "once the promotion is complete the next statement serves version $target" "${SESSION_OUT[*]}" "$target"
}
session_open reader -d "$DB"
window_check

finish
