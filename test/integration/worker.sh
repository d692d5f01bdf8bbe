#!/usr/bin/env bash
# The background worker (issue 5.1, 5.5): a throwaway cluster of its own that preloads
# cinematic_ml with a worker for one database. Checks: it waits quietly without the
# extension; a schedule retrains a drifting model and records every run; a failing job is
# recorded and the worker lives on; SIGHUP reloads; SIGTERM stops it within a second and the
# postmaster restarts it; after a crash (SIGKILL) runs in flight are marked failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PGCLUSTER="$ROOT/scripts/pgcluster.sh"
DIR=$(mktemp -d /tmp/cml-worker.XXXXXX)
PORT=$((56400 + RANDOM % 500))
cleanup() { PG_WIPE=1 "$PGCLUSTER" stop "$DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
PG_EXTRA_CONF="shared_preload_libraries = 'cinematic_ml'
cinematic_ml.database = 'cml_worker'
cinematic_ml.worker_naptime = 1
synchronous_commit = on" "$PGCLUSTER" start "$DIR" "$PORT" >/dev/null
eval "$("$PGCLUSTER" env "$DIR")"
export PGHOST PGPORT PGUSER
LOG="$DIR/log"
q() { psql -X -q -v ON_ERROR_STOP=1 -At -d cml_worker "$@"; }
fail=0
check() { if eval "$2"; then echo "ok     $1"; else echo "FAILED $1"; fail=1; fi; }
worker_pid() { q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cinematic_ml worker'" 2>/dev/null || true; }
wait_for() { # seconds condition
	for _ in $(seq 1 $(($1 * 10))); do eval "$2" && return 0; sleep 0.1; done
	return 1
}

psql -X -q -d postgres -c "CREATE DATABASE cml_worker"
wait_for 10 '[[ -n "$(worker_pid)" ]]' || true
pid1=$(worker_pid)
sleep 2
check "the worker runs for cml_worker and waits quietly without the extension" \
	'[[ -n "$pid1" ]] && ! grep -q "cinematic_ml worker.*ERROR\|ERROR.*cinematic_ml" "$LOG"'

q >/dev/null <<'SQL'
CREATE EXTENSION cinematic_ml;
CREATE TABLE w_points AS
SELECT era, (ARRAY[48.8606, 48.8584, 48.8530, 48.8867])[1 + i % 4] + CASE WHEN era = 2 AND i % 4 = 0 THEN 0.0054 ELSE 0 END
           + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499, 2.3431])[1 + i % 4] + ((i * 104729) % 101 - 50) * 0.000014 AS lon
  FROM generate_series(1, 2) era, generate_series(1, 800) i;
CREATE TABLE w_era (era int);
INSERT INTO w_era VALUES (1);
SELECT cinematic_ml.train('w', 'SELECT lat, lon FROM w_points WHERE era = (SELECT era FROM w_era)', 'kmeans', '{"k": 4, "seed": 1}');
UPDATE cinematic_ml.models SET auto_promote = true;
SELECT cinematic_ml.schedule('w', every => '1 second');
SQL
wait_for 10 '[[ "$(q -c "SELECT count(*) FROM cinematic_ml.job_runs WHERE status = '\''succeeded'\''")" -ge 2 ]]' || true
check "scheduled runs succeed and are recorded (no drift yet)" \
	'[[ "$(q -c "SELECT count(*) FROM cinematic_ml.job_runs WHERE status = '\''succeeded'\'' AND result->>'\''reason'\'' = '\''no drift'\''")" -ge 2 ]]'
q -c "UPDATE w_era SET era = 2"
wait_for 15 '[[ "$(q -c "SELECT version FROM cinematic_ml.model_versions WHERE model_name = '\''w'\'' AND status = '\''active'\''")" == 2 ]]' || true
check "the source data drifted: a scheduled run trained and promoted version 2" \
	'[[ "$(q -c "SELECT version FROM cinematic_ml.model_versions WHERE model_name = '\''w'\'' AND status = '\''active'\''")" == 2 ]]'
check "the run history shows it" \
	'[[ "$(q -c "SELECT count(*) FROM cinematic_ml.job_runs WHERE result->>'\''action'\'' = '\''promoted'\''")" == 1 ]]'

# a failing job: recorded, and the worker lives on
q -c "UPDATE cinematic_ml.models SET source_query = 'SELECT lat, lon FROM w_points WHERE 1/0 = 1' WHERE model_name = 'w'"
q -c "SELECT cinematic_ml.schedule('w', every => '1 second')" >/dev/null
wait_for 10 '[[ "$(q -c "SELECT count(*) FROM cinematic_ml.job_runs WHERE status = '\''failed'\'' OR result->>'\''action'\'' = '\''failed'\''")" -ge 1 ]]' || true
check "a failing retrain is recorded as failed" \
	'[[ "$(q -c "SELECT count(*) FROM cinematic_ml.job_runs WHERE status = '\''failed'\'' OR result->>'\''action'\'' = '\''failed'\''")" -ge 1 ]]'
check "a bad cron expression is refused when written" \
	'! q -c "UPDATE cinematic_ml.schedules SET every = NULL, cron = '\''61 * * * *'\'' WHERE model_name = '\''w'\''" 2>/dev/null'
sleep 2
check "the worker survived the failures (same process)" '[[ "$(worker_pid)" == "$pid1" ]]'
q -c "SELECT cinematic_ml.unschedule('w')" >/dev/null

# SIGHUP reloads the settings
psql -X -q -d postgres -c "ALTER SYSTEM SET cinematic_ml.worker_naptime = 2" -c "SELECT pg_reload_conf()" >/dev/null
wait_for 10 'grep -q "reloaded its settings (naptime 2 s)" "$LOG"' || true
check "SIGHUP: the worker reloads its settings" 'grep -q "reloaded its settings (naptime 2 s)" "$LOG" && [[ "$(worker_pid)" == "$pid1" ]]'

# SIGTERM: a prompt stop, then the postmaster restarts it
t0=$(date +%s.%N)
kill -TERM "$pid1"
wait_for 5 '! kill -0 "$pid1" 2>/dev/null' || true
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
check "SIGTERM stops the worker within a second (${secs}s)" 'awk -v s="$secs" "BEGIN { exit !(s < 1.0) }"'
wait_for 15 '[[ -n "$(worker_pid)" && "$(worker_pid)" != "$pid1" ]]' || true
pid2=$(worker_pid)
check "the postmaster restarts it" '[[ -n "$pid2" && "$pid2" != "$pid1" ]]'

# a crash: SIGKILL during a long run; after the restart the run is marked failed
q >/dev/null <<'SQL'
UPDATE cinematic_ml.models SET source_query = 'SELECT lat + 0 * length(pg_sleep(0.02)::text), lon FROM w_points WHERE era = 1' WHERE model_name = 'w';
SELECT cinematic_ml.schedule('w', every => '1 hour');
UPDATE cinematic_ml.schedules SET next_run_at = now() WHERE model_name = 'w';
SQL
wait_for 15 '[[ "$(q -c "SELECT count(*) FROM cinematic_ml.job_runs WHERE status = '\''running'\''")" -ge 1 ]]' || true
running=$(q -c "SELECT run_id FROM cinematic_ml.job_runs WHERE status = 'running'")
kill -KILL "$(worker_pid)" 2>/dev/null || true
wait_for 30 'q -c "SELECT 1" >/dev/null 2>&1' || true
wait_for 20 '[[ -n "$(worker_pid)" ]]' || true
wait_for 10 '[[ "$(q -c "SELECT status FROM cinematic_ml.job_runs WHERE run_id = ${running:-0}")" == failed ]]' || true
check "after a crash the run in flight (run ${running:-none}) is marked failed" \
	'[[ -n "$running" && "$(q -c "SELECT status || '\'': '\'' || error FROM cinematic_ml.job_runs WHERE run_id = $running")" == "failed: interrupted"* ]]'
check "and the worker is back" '[[ -n "$(worker_pid)" ]]'
# (synchronous_commit is on above: with it off, a crash may forget the last claims)
q -c "SELECT cinematic_ml.unschedule('w')" >/dev/null

# the export queue: a deleted version leaves it, and never blocks the others (no S3 server
# needed: the endpoint is a closed port, so every attempt fails and is counted)
psql -X -q -d postgres -c "ALTER SYSTEM SET cinematic_ml.s3_bucket = 'models'" \
	-c "ALTER SYSTEM SET cinematic_ml.s3_endpoint = 'http://127.0.0.1:9'" -c "SELECT pg_reload_conf()" >/dev/null
q >/dev/null <<'SQL'
SELECT cinematic_ml.register_model('orphan', (SELECT model FROM cinematic_ml.model_versions WHERE model_name = 'w' AND version = 1));
SELECT cinematic_ml.register_model('orphan', (SELECT model FROM cinematic_ml.model_versions WHERE model_name = 'w' AND version = 2));
DELETE FROM cinematic_ml.model_versions WHERE model_name = 'orphan' AND version = 2;
SELECT cinematic_ml.register_model('other', (SELECT model FROM cinematic_ml.model_versions WHERE model_name = 'w' AND version = 1));
SQL
wait_for 20 '[[ "$(q -c "SELECT min(attempts) FROM cinematic_ml.exports WHERE model_name = '\''other'\'' AND kind = '\''version'\''")" -ge 1 ]]' || true
check "a deleted version's export leaves the queue and does not block the others" \
	'[[ "$(q -c "SELECT count(*) FROM cinematic_ml.exports WHERE model_name = '\''orphan'\'' AND version = 2")" == 0
	   && "$(q -c "SELECT min(attempts) FROM cinematic_ml.exports WHERE model_name = '\''other'\'' AND kind = '\''version'\''")" -ge 1 ]]'
check "latest.json waits until its version is uploaded" \
	'[[ "$(q -c "SELECT attempts FROM cinematic_ml.exports WHERE model_name = '\''other'\'' AND kind = '\''latest'\''")" == 0 ]]'
check "failed uploads are recorded with the error and a later next attempt" \
	'[[ "$(q -c "SELECT bool_and(status = '\''failed'\'' AND last_error <> '\'''\'' AND next_attempt_at > now() - interval '\''1 second'\'') FROM cinematic_ml.exports WHERE model_name = '\''other'\'' AND kind = '\''version'\''")" == t ]]'

# without a worker for this database, schedule() says so
psql -X -q -d postgres -c "CREATE DATABASE cml_noworker"
msg=$(psql -X -q -d cml_noworker -c "CREATE EXTENSION cinematic_ml" -c "CREATE TABLE p AS SELECT 48.85 + i * 0.0001 AS lat, 2.35 AS lon FROM generate_series(1, 50) i" \
	-c "SELECT cinematic_ml.train('n', 'SELECT lat, lon FROM p', 'kmeans', '{\"k\": 2}')" -c "SELECT cinematic_ml.schedule('n', every => '1 hour')" 2>&1 >/dev/null)
check "schedule() warns when no worker serves the database" '[[ "$msg" == *"not listed in cinematic_ml.database"* ]]'
((fail == 0)) && echo "worker: all checks passed"
exit "$fail"
