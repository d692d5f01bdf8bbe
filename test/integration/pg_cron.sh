#!/usr/bin/env bash
# The real pg_cron schedules cinematic_ml.retrain() (issue 4.5). Needs a cluster that preloads
# pg_cron with cron.database_name = 'postgres' (scripts/test.sh starts one). pg_cron 1.4 fires
# at minute boundaries, so this waits up to ~2 minutes.
set -euo pipefail
q() { psql -X -q -v ON_ERROR_STOP=1 -d postgres -At "$@"; }

if [[ "$(q -c "SHOW shared_preload_libraries")" != *pg_cron* ]]; then
	echo "SKIP: pg_cron is not preloaded in this cluster"
	exit 77
fi
cleanup() {
	q -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'cml-retrain'" >/dev/null 2>&1 || true
	q -c "DROP EXTENSION IF EXISTS cinematic_ml CASCADE" -c "DROP TABLE IF EXISTS cron_shoots" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

q <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_cron;
CREATE EXTENSION cinematic_ml;
-- era 1: four hotspots; era 2: the first one moved 600 m north
CREATE TABLE cron_shoots AS
SELECT era, (ARRAY[48.8606, 48.8584, 48.8530, 48.8867])[1 + i % 4] + CASE WHEN era = 2 AND i % 4 = 0 THEN 0.0054 ELSE 0 END
           + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499, 2.3431])[1 + i % 4] + ((i * 104729) % 101 - 50) * 0.000014 AS lon
  FROM generate_series(1, 2) era, generate_series(1, 800) i;
CREATE TABLE cron_era (era int);
INSERT INTO cron_era VALUES (1);
SELECT cinematic_ml.train('cronparis', 'SELECT lat, lon FROM cron_shoots WHERE era = (SELECT era FROM cron_era)',
                          'kmeans', '{"k": 4, "seed": 1}');
UPDATE cinematic_ml.models SET auto_promote = true WHERE model_name = 'cronparis';
-- the city changes; the scheduled job should notice and promote a new version
UPDATE cron_era SET era = 2;
SELECT cron.schedule('cml-retrain', '* * * * *', $$SELECT cinematic_ml.retrain('cronparis')$$);
SQL
echo "scheduled; waiting for pg_cron to fire (minute boundary)"

for _ in $(seq 1 150); do
	status=$(q -c "SELECT d.status FROM cron.job_run_details d JOIN cron.job j USING (jobid)
	                WHERE j.jobname = 'cml-retrain' AND d.status IN ('succeeded', 'failed') ORDER BY d.runid LIMIT 1")
	[[ -z "$status" ]] || break
	sleep 1
done
q -c "SELECT d.status, d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = 'cml-retrain'"
fail=0
[[ "$status" == succeeded ]] || { echo "FAILED: the cron job did not succeed (status '${status:-none}')"; fail=1; }
active=$(q -c "SELECT version FROM cinematic_ml.model_versions WHERE model_name = 'cronparis' AND status = 'active'")
[[ "$active" == 2 ]] || { echo "FAILED: version 2 should be active after the scheduled retrain, got '$active'"; fail=1; }
events=$(q -c "SELECT string_agg(event, ',' ORDER BY event_id) FROM cinematic_ml.model_events WHERE model_name = 'cronparis'")
echo "events: $events"
[[ "$events" == *trained,archived,promoted* ]] || { echo "FAILED: expected trained, archived, promoted in the audit log"; fail=1; }
checks=$(q -c "SELECT count(*) FROM cinematic_ml.drift_checks WHERE model_name = 'cronparis' AND verdict = 'drifted'")
[[ "$checks" -ge 1 ]] || { echo "FAILED: the drift check should be recorded"; fail=1; }
((fail == 0)) && echo "ok: pg_cron ran retrain(), which detected drift and promoted version 2"
exit "$fail"
