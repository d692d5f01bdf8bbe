#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # conditions given to wait_for / eval expand when evaluated;
# cleanup and the functions named in those conditions are called indirectly
# The background worker's S3 exports against a real, SigV4-verifying S3 server (a single-node
# Ceph RADOS Gateway, scripts/s3server.sh). Everything here is uploaded by the worker draining
# cinematic_ml.exports, never by export_now(). A PostgreSQL cluster of its own (worker for one
# database, naptime 1 s) and a gateway of its own, both on free ports, removed at the end.
#
# Checks:
#  1. a schedule (every 2 s) retrains a model whose source data drifted (auto_promote): job_runs
#     and the registry show version 2; the worker exports it: v2.cml = the model's bytes (read
#     back with awscli), v2.zones.json has run_id/created_at_utc/metrics/zones[{cluster, lat, lon,
#     radius_m}], latest.json points at version 2, exports rows are done with an ETag and the URI
#  2. a wrong secret (credentials file, reload): exports are failed with the server's 403
#     SignatureDoesNotMatch, a failed model_events row, attempts growing with capped exponential
#     backoff (next_attempt_at in the future); the right secret back: they complete by themselves
#  3. the S3 server stopped: exports fail (cannot connect) and wait; restarted: they complete
#  4. the worker SIGKILLed mid-queue (30 versions, uploads slowed by a delaying TCP proxy): the
#     postmaster restarts everything, the export left running is reset to pending, every version
#     ends done and the bucket holds exactly one .cml and one .zones.json per version
#  5. SIGTERM while an upload waits on a server that never answers (long s3_timeout): the worker
#     is gone within a second; restarted, it completes the interrupted export
#  and no secret in the server log or the tables; no crash other than the SIGKILL of check 4.
#
# Exit 0 pass, 1 fail, 77 skip (Ceph packages missing and not installable, or the gateway does
# not start). Needs the extension installed (make install). About 1.5 to 2 minutes.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$HERE/lib/common.sh"
# shellcheck source=lib/s3.sh
source "$HERE/lib/s3.sh"

ROOT=${CML_ROOT:-$(cd "$HERE/../.." && pwd)}
PGCLUSTER=$ROOT/scripts/pgcluster.sh
S3SERVER=$ROOT/scripts/s3server.sh
PYTHON=/usr/bin/python3
DB=cml_worker_s3
BUCKET=cml-worker-test
PREFIX=wk/exports

note() { echo "# $*"; }

# ---------------------------------------------------------------- packages
s3_require_ceph curl
if [[ ! -x "$PYTHON" ]]; then
	echo "FAILED: $PYTHON is needed for the test's small TCP servers"
	exit 1
fi
if [[ ! -f "$("$PGBIN/pg_config" --sharedir)/extension/cinematic_ml.control" ]]; then
	echo "FAILED: the cinematic_ml extension is not installed (make install)"
	exit 1
fi

# ---------------------------------------------------------------- set-up and clean-up
WORK=$(mktemp -d /tmp/cml-worker-s3.XXXXXX)
chmod 0755 "$WORK"
PGDIR=$WORK/pg
S3DIR=$WORK/s3
LOG=$PGDIR/log
HELPERS=() # pids of the small TCP servers started here

cleanup() {
	local rc=$? p
	set +e
	for p in "${HELPERS[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	if ((rc != 0 && rc != 77)) && [[ -r "$LOG" ]]; then
		echo "--- last lines of the server log $LOG"
		tail -n 40 "$LOG"
	fi
	PG_WIPE=1 "$PGCLUSTER" stop "$PGDIR" >/dev/null 2>&1
	"$S3SERVER" wipe "$S3DIR" >/dev/null 2>&1
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # seconds condition: poll every 0.1 s
	local end=$((SECONDS + $1))
	while ((SECONDS < end)); do
		eval "$2" && return 0
		sleep 0.1
	done
	eval "$2"
}

# ---------------------------------------------------------------- the S3 server
t=$SECONDS
if ! s3_start "$S3DIR" "$WORK/s3.env" 2>"$WORK/s3.err"; then
	cat "$WORK/s3.err"
	echo "SKIP: the Ceph RADOS Gateway could not be started (see above)"
	exit 77
fi
"$S3SERVER" mkbucket "$S3DIR" "$BUCKET" 2>/dev/null
note "S3 server at $S3_ENDPOINT (started in $((SECONDS - t)) s)"
pick_port PROXY_PORT
pick_port HOLE_PORT
pick_port PG_PORT

# credentials files, readable by the server's OS user only
CRED=$WORK/credentials
WRONG=$WORK/credentials.wrong
WRONG_SECRET=WrongWorkerSecret000000000000000000000cml7
s3_credentials "$CRED" "$S3_SECRET_KEY"
s3_credentials "$WRONG" "$WRONG_SECRET"
s3_client_note

# ---------------------------------------------------------------- the PostgreSQL cluster
# synchronous_commit on: check 4 crashes the server, and an asynchronous commit may then be lost
# shellcheck disable=SC2153 # PG_PORT is set by pick_port
PG_EXTRA_CONF="shared_preload_libraries = 'cinematic_ml'
cinematic_ml.database = '$DB'
cinematic_ml.worker_naptime = 1
synchronous_commit = on
cinematic_ml.s3_endpoint = '$S3_ENDPOINT'
cinematic_ml.s3_region = '$S3_REGION'
cinematic_ml.s3_bucket = '$BUCKET'
cinematic_ml.s3_prefix = '$PREFIX'
cinematic_ml.s3_credentials_file = '$CRED'" "$PGCLUSTER" start "$PGDIR" "$PG_PORT" >/dev/null
export PGHOST=$PGDIR PGPORT=$PG_PORT PGUSER=postgres PGDATABASE=$DB
export PGOPTIONS="-c client_min_messages=warning"
q() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
qpg() { q -d postgres "$@"; }
qj() { # json [sql]: run sql (else stdin) with :'j' bound to the json text
	if (($# > 1)); then q -v j="$1" <<<"$2"; else q -v j="$1"; fi
}
worker_pid() { qpg -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'cinematic_ml worker'" 2>/dev/null || true; }
reloads() { grep -c "cinematic_ml worker for database \"$DB\" reloaded its settings" "$LOG" || true; }
# ALTER SYSTEM SET name = value (value '' = RESET) ..., reload, wait until the worker reloaded
set_system() {
	local n0 args=("$@") i
	# shellcheck disable=SC2034 # read by the wait_for condition
	n0=$(reloads)
	for ((i = 0; i < ${#args[@]}; i += 2)); do
		if [[ -z "${args[i + 1]}" ]]; then
			qpg -c "ALTER SYSTEM RESET ${args[i]}"
		else
			qpg -c "ALTER SYSTEM SET ${args[i]} = '${args[i + 1]}'"
		fi
	done
	qpg -c "SELECT pg_reload_conf()" >/dev/null
	if [[ -n "$(worker_pid)" ]] && ! wait_for 10 '(( $(reloads) > n0 ))'; then
		echo "the worker did not reload its settings" >&2
		return 1
	fi
}
# one row of an export as status:attempts:http_status (empty when absent)
export_state() { # model version kind
	q -c "SELECT status || ':' || attempts || ':' || coalesce(http_status::text, '') FROM cinematic_ml.exports
	       WHERE model_name = '$1' AND version = $2 AND kind = '$3'" 2>/dev/null || true
}
all_done() { # model: every export of the model is done (and there is one)
	[[ "$(q -c "SELECT count(*) > 0 AND bool_and(status = 'done') FROM cinematic_ml.exports WHERE model_name = '$1'" 2>/dev/null)" == t ]]
}

qpg -c "CREATE DATABASE $DB"
wait_for 15 '[[ -n "$(worker_pid)" ]]' || true
[[ -n "$(worker_pid)" ]] || {
	echo "FAILED: no cinematic_ml worker started for $DB"
	exit 1
}
q >/dev/null <<'SQL'
CREATE EXTENSION cinematic_ml;
-- four hotspots; in era 2 the first one moved 600 m north
CREATE TABLE pts AS
SELECT era, (ARRAY[48.8606, 48.8584, 48.8530, 48.8867])[1 + i % 4] + CASE WHEN era = 2 AND i % 4 = 0 THEN 0.0054 ELSE 0 END
           + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499, 2.3431])[1 + i % 4] + ((i * 104729) % 101 - 50) * 0.000014 AS lon
  FROM generate_series(1, 2) era, generate_series(1, 800) i;
CREATE TABLE cur_era (era int);
INSERT INTO cur_era VALUES (1);
-- a model value for register_model(): k-means with k zones, shifted east by d degrees
CREATE FUNCTION fit(k int, d float8) RETURNS bytea LANGUAGE sql AS $$
    SELECT cinematic_ml.kmeans_fit(lat, lon + d, k, '{"seed": 3}') FROM pts WHERE era = 1
$$;
SQL
note "cluster and gateway ready ($(elapsed) s)"

# ================================================================ 1. a scheduled retrain, exported
q >/dev/null <<'SQL'
SELECT cinematic_ml.train('drift', 'SELECT lat, lon FROM pts WHERE era = (SELECT era FROM cur_era)', 'kmeans', '{"k": 4, "seed": 1}');
UPDATE cinematic_ml.models SET auto_promote = true WHERE model_name = 'drift';
SELECT cinematic_ml.schedule('drift', every => '2 seconds');
SQL
# a run without drift first, then the source data drifts
wait_for 10 '[[ "$(q -c "SELECT count(*) FROM cinematic_ml.job_runs WHERE model_name = '\''drift'\'' AND status = '\''succeeded'\''")" -ge 1 ]]' || true
q -c "UPDATE cur_era SET era = 2"
wait_for 15 '[[ "$(q -c "SELECT version FROM cinematic_ml.model_versions WHERE model_name = '\''drift'\'' AND status = '\''active'\''")" == 2 ]]' || true
q -c "SELECT cinematic_ml.unschedule('drift')" >/dev/null
wait_for 15 '[[ "$(export_state drift 2 version)" == done:* && "$(export_state drift 2 latest)" == done:* ]]' || true
note "check 1 settled ($(elapsed) s)"

check "1: a scheduled run retrained the drifted model and job_runs shows version 2 promoted" \
	test "$(q -c "SELECT count(*) FROM cinematic_ml.job_runs WHERE model_name = 'drift' AND status = 'succeeded'
	               AND result->>'action' = 'promoted' AND (result->>'version')::int = 2 AND finished_at IS NOT NULL")" = 1
check "1: job_runs also records the runs that found no drift" \
	test "$(q -c "SELECT count(*) > 0 FROM cinematic_ml.job_runs WHERE model_name = 'drift' AND result->>'reason' = 'no drift'")" = t
check "1: the registry has version 2 active and version 1 archived" \
	test "$(q -c "SELECT string_agg(version || ':' || status, ' ' ORDER BY version) FROM cinematic_ml.model_versions WHERE model_name = 'drift'")" \
	= "1:archived 2:active"
rows=$(q -c "SELECT string_agg(format('%s:%s:%s:%s:%s', version, kind, status, http_status, coalesce(uri, '-')), ' ' ORDER BY version, kind)
               FROM cinematic_ml.exports WHERE model_name = 'drift' AND etag ~ '^[0-9a-f]{32}$'")
# the worker records the URI of every object it uploaded, latest.json included
exp_rows="1:latest:done:200:s3://$BUCKET/$PREFIX/drift/latest.json 1:version:done:200:s3://$BUCKET/$PREFIX/drift/v1.cml 2:latest:done:200:s3://$BUCKET/$PREFIX/drift/latest.json 2:version:done:200:s3://$BUCKET/$PREFIX/drift/v2.cml"
[[ "$rows" =~ ^$exp_rows$ ]] || note "exports rows: $rows"
check "1: exports rows of both versions are done with HTTP 200, an ETag and (kind version) the URI of vN.cml" \
	eval '[[ "$rows" =~ ^$exp_rows$ ]]'
check "1: the version's ETag is the MD5 of the model bytes" \
	test "$(q -c "SELECT e.etag = md5(v.model) FROM cinematic_ml.exports e JOIN cinematic_ml.model_versions v USING (model_name, version)
	               WHERE e.model_name = 'drift' AND e.version = 2 AND e.kind = 'version'")" = t
check "1: model_events records both exports of version 2 (exported)" \
	test "$(q -c "SELECT string_agg(detail->>'kind', ',' ORDER BY detail->>'kind') FROM cinematic_ml.model_events
	               WHERE model_name = 'drift' AND version = 2 AND event = 'exported'")" = latest,version

s3get "$PREFIX/drift/v2.cml" "$WORK/v2.cml" || true
s3get "$PREFIX/drift/v2.zones.json" "$WORK/v2.zones.json" || true
s3get "$PREFIX/drift/latest.json" "$WORK/latest.json" || true
check "1: v2.cml read back from the bucket has the model's exact bytes (size and SHA-256)" \
	test "$(stat -c %s "$WORK/v2.cml" 2>/dev/null) $(sha256sum "$WORK/v2.cml" 2>/dev/null | cut -c1-64)" \
	= "$(q -c "SELECT length(model) || ' ' || encode(sha256(model), 'hex') FROM cinematic_ml.model_versions WHERE model_name = 'drift' AND version = 2")"
zc=$(qj "$(cat "$WORK/v2.zones.json" 2>/dev/null || echo '{}')" <<'SQL'
WITH j AS (SELECT :'j'::jsonb AS j),
     v AS (SELECT * FROM cinematic_ml.model_versions WHERE model_name = 'drift' AND version = 2),
     z AS (SELECT * FROM cinematic_ml.zones('drift', 2))
SELECT concat_ws(',',
    CASE WHEN j ?& ARRAY['run_id', 'created_at_utc', 'metrics', 'zones'] THEN NULL ELSE 'keys' END,
    CASE WHEN j->>'run_id' = 'drift-v2-' || left(v.sha256, 12) THEN NULL ELSE 'run_id' END,
    CASE WHEN (j->>'created_at_utc') ~ 'Z$' AND (j->>'created_at_utc')::timestamptz = date_trunc('microseconds', v.created_at)
         THEN NULL ELSE 'created_at_utc' END,
    CASE WHEN jsonb_typeof(j->'metrics') = 'object' AND (j->'metrics'->>'n_train')::int = v.n_rows THEN NULL ELSE 'metrics' END,
    CASE WHEN jsonb_array_length(j->'zones') = (SELECT count(*) FROM z) AND jsonb_array_length(j->'zones') = 4
         THEN NULL ELSE 'zone count' END,
    CASE WHEN NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements(j->'zones') e
         WHERE NOT (e ?& ARRAY['cluster', 'lat', 'lon', 'radius_m'])
            OR NOT EXISTS (SELECT 1 FROM z WHERE z.zone_id = (e->>'cluster')::int
                              AND abs(z.lat - (e->>'lat')::float8) < 1e-9 AND abs(z.lon - (e->>'lon')::float8) < 1e-9
                              AND abs(z.radius_m - (e->>'radius_m')::float8) < 1e-6))
         THEN NULL ELSE 'zones' END)
  FROM j, v
SQL
) || zc="unreadable"
check "1: v2.zones.json has run_id, created_at_utc, metrics and zones[{cluster, lat, lon, radius_m}] of version 2${zc:+ (wrong: $zc)}" \
	test -z "$zc"
lc=$(qj "$(cat "$WORK/latest.json" 2>/dev/null || echo '{}')" "SELECT concat_ws(',',
	    CASE WHEN j->>'model_name' = 'drift' THEN NULL ELSE 'model_name' END,
	    CASE WHEN (j->>'version')::int = a.version THEN NULL ELSE 'version' END,
	    CASE WHEN j->>'uri' = 's3://$BUCKET/$PREFIX/drift/v' || a.version || '.cml' THEN NULL ELSE 'uri' END,
	    CASE WHEN j->>'zones_uri' = 's3://$BUCKET/$PREFIX/drift/v' || a.version || '.zones.json' THEN NULL ELSE 'zones_uri' END)
	  FROM (SELECT :'j'::jsonb AS j) s,
	       (SELECT version FROM cinematic_ml.model_versions WHERE model_name = 'drift' AND status = 'active') a") || lc="unreadable"
check "1: latest.json points at the active version (2)${lc:+ (wrong: $lc)}" test -z "$lc"

# ================================================================ 2. a wrong secret, then the right one
set_system cinematic_ml.s3_credentials_file "$WRONG"
q -c "SELECT cinematic_ml.register_model('sec', fit(3, 0))" >/dev/null
# three failed attempts: 1-2 s, then 2-4 s apart
wait_for 20 '[[ "$(export_state sec 1 version)" == failed:[3-9]:* ]]' || true
echo "# with the wrong secret: $(q -c "SELECT format('%s %s attempts=%s http=%s next_in=%s s error=%s', kind, status, attempts, http_status,
        round(extract(epoch FROM next_attempt_at - now())::numeric, 1), last_error)
   FROM cinematic_ml.exports WHERE model_name = 'sec' ORDER BY kind DESC LIMIT 1")"
check "2: the version export is failed with the server's HTTP 403 SignatureDoesNotMatch in last_error" \
	test "$(q -c "SELECT status = 'failed' AND http_status = 403 AND last_error LIKE '%HTTP 403 SignatureDoesNotMatch%' AND etag IS NULL
	               FROM cinematic_ml.exports WHERE model_name = 'sec' AND version = 1 AND kind = 'version'")" = t
check "2: the latest.json export waits, untried, until its version is uploaded" \
	test "$(q -c "SELECT status || ':' || attempts FROM cinematic_ml.exports WHERE model_name = 'sec' AND version = 1 AND kind = 'latest'")" = pending:0
check "2: every attempt is a failed model_events row with the server's error" \
	test "$(q -c "SELECT count(*) >= 3 AND count(*) = (SELECT attempts FROM cinematic_ml.exports WHERE model_name = 'sec' AND kind = 'version')
	                 AND bool_and(detail->>'error' LIKE '%SignatureDoesNotMatch%' AND (detail->>'http_status')::int = 403)
	               FROM cinematic_ml.model_events WHERE model_name = 'sec' AND event = 'failed' AND detail->>'kind' = 'version'")" = t
# the gaps between attempts double (with jitter 0.5-1): about 1-2 s, then 2-4 s
gaps=$(q -c "SELECT string_agg(round(extract(epoch FROM gap)::numeric, 2)::text, ' ' ORDER BY event_id) FROM (
               SELECT event_id, at - lag(at) OVER (ORDER BY event_id) AS gap FROM cinematic_ml.model_events
                WHERE model_name = 'sec' AND event = 'failed' AND detail->>'kind' = 'version') g WHERE gap IS NOT NULL")
check "2: attempts are retried with exponential backoff (gaps between failures: $gaps s)" \
	awk -v g="$gaps" 'BEGIN { n = split(g, a, " "); if (n < 2) exit 1;
	  for (i = 1; i <= n; i++) { lo = 2 ^ i * 0.5 - 0.1; hi = 2 ^ i + 1.5; if (a[i] < lo || a[i] > hi) exit 1 } }'
check_eventually 10 "2: next_attempt_at is in the future, 2^attempts x [0.5, 1] s after the last failure" \
	test "$(q -c "SELECT e.next_attempt_at > now() AND e.next_attempt_at - m.at BETWEEN 2 ^ e.attempts * 0.5 * interval '1 s' - interval '0.1 s'
	                                                                   AND 2 ^ e.attempts * interval '1 s' + interval '0.1 s'
	               FROM cinematic_ml.exports e,
	                    (SELECT max(at) AS at FROM cinematic_ml.model_events WHERE model_name = 'sec' AND event = 'failed'
	                       AND detail->>'kind' = 'version') m
	              WHERE e.model_name = 'sec' AND e.kind = 'version' AND e.status = 'failed'")" = t
t=$SECONDS
# the right secret back; nothing is re-queued by hand: the next attempt (at most 2^attempts s
# away) succeeds
set_system cinematic_ml.s3_credentials_file "$CRED"
wait_for 40 'all_done sec' || true
note "the right secret restored: exports of 'sec' done after $((SECONDS - t)) s"
check "2: with the right secret back, both exports complete by themselves (done, ETag = MD5 of the model)" \
	test "$(q -c "SELECT count(*) = 2 AND bool_and(e.status = 'done' AND e.last_error IS NULL AND e.http_status = 200)
	                 AND bool_or(e.kind = 'version' AND e.etag = md5(v.model))
	               FROM cinematic_ml.exports e JOIN cinematic_ml.model_versions v USING (model_name, version) WHERE e.model_name = 'sec'")" = t
s3get "$PREFIX/sec/v1.cml" "$WORK/sec.cml" || true
check "2: and sec/v1.cml in the bucket has the model's bytes" \
	test "$(sha256sum "$WORK/sec.cml" 2>/dev/null | cut -c1-64)" = "$(q -c "SELECT sha256 FROM cinematic_ml.model_versions WHERE model_name = 'sec'")"
note "check 2 done ($(elapsed) s)"

# ================================================================ 3. the S3 server stopped for a while
"$S3SERVER" stop "$S3DIR" 2>/dev/null
q -c "SELECT cinematic_ml.register_model('down', fit(3, 0.001))" >/dev/null
wait_for 15 '[[ "$(export_state down 1 version)" == failed:[2-9]:* ]]' || true
echo "# with the server stopped: $(q -c "SELECT format('attempts=%s next_in=%s s error=%s', attempts,
        round(extract(epoch FROM next_attempt_at - now())::numeric, 1), last_error)
   FROM cinematic_ml.exports WHERE model_name = 'down' AND kind = 'version'")"
check "3: with the server stopped the export fails (cannot connect, no HTTP status) and waits for its next attempt" \
	test "$(q -c "SELECT status = 'failed' AND attempts >= 2 AND http_status IS NULL AND last_error ~* 'connect'
	                 AND next_attempt_at > now()
	               FROM cinematic_ml.exports WHERE model_name = 'down' AND version = 1 AND kind = 'version'")" = t
check "3: each failure is a model_events row" \
	test "$(q -c "SELECT count(*) >= 2 FROM cinematic_ml.model_events WHERE model_name = 'down' AND event = 'failed'
	               AND detail->>'kind' = 'version' AND detail->>'error' ~* 'connect'")" = t
t=$SECONDS
"$S3SERVER" start "$S3DIR" >/dev/null 2>"$WORK/s3.err" || cat "$WORK/s3.err"
note "S3 server restarted in $((SECONDS - t)) s"
wait_for 40 'all_done down' || true
note "after the restart the exports of 'down' were done in $((SECONDS - t)) s"
check "3: after the server is back the exports complete (done, ETag = MD5 of the model)" \
	test "$(q -c "SELECT count(*) = 2 AND bool_and(e.status = 'done') AND bool_or(e.kind = 'version' AND e.etag = md5(v.model))
	               FROM cinematic_ml.exports e JOIN cinematic_ml.model_versions v USING (model_name, version) WHERE e.model_name = 'down'")" = t
keys=$(s3ls "$PREFIX/" | sort | tr '\n' ' ')
check "3: the objects uploaded before the stop are still there" \
	test "$keys" = "$PREFIX/down/latest.json $PREFIX/down/v1.cml $PREFIX/down/v1.zones.json $PREFIX/drift/latest.json $PREFIX/drift/v1.cml $PREFIX/drift/v1.zones.json $PREFIX/drift/v2.cml $PREFIX/drift/v2.zones.json $PREFIX/sec/latest.json $PREFIX/sec/v1.cml $PREFIX/sec/v1.zones.json "
note "check 3 done ($(elapsed) s)"

# ================================================================ 4. SIGKILL of the worker mid-queue
# A TCP proxy that holds every new connection 0.2 s before relaying it to the gateway: the
# queue then takes several seconds, long enough to kill the worker in the middle of an upload.
# (The Host header, hence the SigV4 signature, names the proxy; the gateway checks it as sent.)
"$PYTHON" - "$PROXY_PORT" "$RGW_PORT" 0.2 150 <<'PY' &
import asyncio, sys
lport, uport, delay, life = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])

async def pipe(r, w):
    try:
        while True:
            b = await r.read(65536)
            if not b:
                break
            w.write(b)
            await w.drain()
    except Exception:
        pass
    finally:
        try:
            w.close()
        except Exception:
            pass

async def handle(cr, cw):
    await asyncio.sleep(delay)
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", uport)
    except Exception:
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))

async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", lport)
    async with srv:
        await asyncio.sleep(life)   # bounded: stops by itself

asyncio.run(main())
PY
HELPERS+=($!)
wait_for 5 'listening "$PROXY_PORT"' || true
set_system cinematic_ml.s3_endpoint "http://127.0.0.1:$PROXY_PORT"
q >/dev/null <<'SQL'
DO $$
BEGIN
    FOR n IN 1..30 LOOP
        PERFORM cinematic_ml.register_model('bulk', fit(2 + n % 4, n * 1e-5));
    END LOOP;
END
$$;
SQL
pid=$(worker_pid)
# kill when a few versions are done and one is being uploaded
wait_for 30 '[[ "$(q -c "SELECT count(*) FILTER (WHERE status = '\''done'\'') >= 5 AND count(*) FILTER (WHERE status = '\''running'\'') = 1
                          FROM cinematic_ml.exports WHERE model_name = '\''bulk'\''" 2>/dev/null)" == t ]]' || true
activity=$(qpg -c "SELECT query FROM pg_stat_activity WHERE pid = $pid")
kill -KILL "$pid"
note "SIGKILL of the worker $pid while '$activity'"
wait_for 30 'qpg -c "SELECT 1" >/dev/null 2>&1' || true
wait_for 20 '[[ -n "$(worker_pid)" && "$(worker_pid)" != "$pid" ]]' || true
t=$SECONDS
wait_for 60 'all_done bulk' || true
note "after the crash the queue was drained in $((SECONDS - t)) s"
# what the worker was doing when it died, as the postmaster logged it: "uploading bulk vN (KIND)"
inflight=$(sed -n 's/.*DETAIL:  Failed process was running: cinematic_ml: uploading bulk v\([0-9]*\) (\([a-z]*\))$/\1:\2/p' "$LOG" | tail -n 1)
check "4: the SIGKILL made the postmaster reinitialize and restart the worker" \
	test "$(grep -c 'terminated by signal 9' "$LOG")" -ge 1 -a -n "$(worker_pid)" -a "$(worker_pid)" != "$pid"
check "4: an export was in flight when the worker was killed (${inflight:-none})" test -n "$inflight"
if [[ -n "$inflight" ]]; then
	check "4: the export left running by the crash was reset and retried (attempts 2, done)" \
		test "$(q -c "SELECT status || ':' || attempts FROM cinematic_ml.exports WHERE model_name = 'bulk'
		               AND version = ${inflight%%:*} AND kind = '${inflight#*:}'")" = done:2
fi
check "4: all 30 versions (and latest.json) end done, each version's ETag the MD5 of its bytes" \
	test "$(q -c "SELECT count(*) FILTER (WHERE e.kind = 'version') = 30 AND count(*) = 31 AND bool_and(e.status = 'done')
	                 AND bool_and(e.kind = 'latest' OR e.etag = md5(v.model))
	               FROM cinematic_ml.exports e JOIN cinematic_ml.model_versions v USING (model_name, version) WHERE e.model_name = 'bulk'")" = t
check "4: no export row is left running or pending anywhere" \
	test "$(q -c "SELECT count(*) FROM cinematic_ml.exports WHERE status <> 'done'")" = 0
expected=$({
	echo "$PREFIX/bulk/latest.json"
	for n in $(seq 1 30); do echo "$PREFIX/bulk/v$n.cml" "$PREFIX/bulk/v$n.zones.json"; done
} | tr ' ' '\n' | sort | tr '\n' ' ')
keys=$(s3ls "$PREFIX/bulk/" | sort | tr '\n' ' ')
check "4: the bucket holds exactly one .cml and one .zones.json per version (61 keys with latest.json)" \
	test "$keys" = "$expected"
if [[ -n "$inflight" ]]; then
	v=${inflight%%:*}
	s3get "$PREFIX/bulk/v$v.cml" "$WORK/bulk.cml" || true
	check "4: bulk/v$v.cml (the upload interrupted by the crash) has the model's bytes" \
		test "$(sha256sum "$WORK/bulk.cml" 2>/dev/null | cut -c1-64)" = "$(q -c "SELECT sha256 FROM cinematic_ml.model_versions WHERE model_name = 'bulk' AND version = $v")"
fi
set_system cinematic_ml.s3_endpoint "$S3_ENDPOINT"
note "check 4 done ($(elapsed) s)"

# ================================================================ 5. SIGTERM during an upload
# a server that accepts connections and never answers
silent_server hole_pid "$HOLE_PORT" 120
HELPERS+=("$hole_pid")
set_system cinematic_ml.s3_endpoint "http://127.0.0.1:$HOLE_PORT" cinematic_ml.s3_timeout 10min
q -c "SELECT cinematic_ml.register_model('hang', fit(3, 0.002))" >/dev/null
pid=$(worker_pid)
wait_for 15 '[[ "$(qpg -c "SELECT query FROM pg_stat_activity WHERE pid = $pid AND state = '\''active'\''")" == "cinematic_ml: uploading hang v1"* ]]' || true
sleep 1 # well inside the transfer
activity=$(qpg -c "SELECT query FROM pg_stat_activity WHERE pid = $pid")
t0=$(date +%s%N)
kill -TERM "$pid"
while [[ -d /proc/$pid ]] && (($(date +%s%N) - t0 < 5000000000)); do sleep 0.01; done
ms=$((($(date +%s%N) - t0) / 1000000))
note "SIGTERM while '$activity': the worker was gone after $ms ms"
check "5: the worker was uploading (pg_stat_activity: $activity)" test "${activity#cinematic_ml: uploading hang v1}" != "$activity"
check "5: SIGTERM during the upload stops the worker within a second ($ms ms)" test "$ms" -lt 1000
check "5: it stopped as told (terminating ... due to administrator command), not by a crash" \
	grep -q 'FATAL:  terminating background worker "cinematic_ml worker" due to administrator command' "$LOG"
# the right endpoint back; the postmaster restarts the worker (bgw_restart_time 5 s), which
# resets the interrupted export to pending and completes it
set_system cinematic_ml.s3_endpoint "$S3_ENDPOINT" cinematic_ml.s3_timeout ""
t=$SECONDS
wait_for 40 'all_done hang' || true
note "the restarted worker completed the exports of 'hang' $((SECONDS - t)) s later"
check "5: the restarted worker completes the interrupted export (done, attempts >= 2)" \
	test "$(q -c "SELECT count(*) = 2 AND bool_and(status = 'done') AND max(attempts) >= 2 FROM cinematic_ml.exports WHERE model_name = 'hang'")" = t
note "check 5 done ($(elapsed) s)"

# ================================================================ everywhere
leaks=""
for secret in "$S3_SECRET_KEY" "$WRONG_SECRET"; do
	for tbl in exports model_events job_runs model_versions; do
		if q -c "SELECT t::text FROM cinematic_ml.$tbl t" | grep -qF "$secret"; then leaks="$leaks [$tbl]"; fi
	done
	if qpg -c "SELECT s::text FROM pg_settings s" | grep -qF "$secret"; then leaks="$leaks [pg_settings]"; fi
	if grep -qF "$secret" "$LOG"; then leaks="$leaks [server log]"; fi
done
check "no secret in exports, model_events, job_runs, pg_settings or the server log${leaks:+ (found in$leaks)}" test -z "$leaks"
crashes=$(grep -E 'terminated by signal|TRAP:|PANIC:' "$LOG" | grep -v 'terminated by signal 9: Killed' || true)
check "no crash in the server log but the SIGKILL of check 4${crashes:+ (found: $crashes)}" test -z "$crashes"

# latest.json racing ahead of its version: an export of kind latest claimed before the version's
# objects exist is refused (HEAD 404) and retried with backoff
races=$(q -c "SELECT count(*) FROM cinematic_ml.model_events WHERE event = 'failed' AND detail->>'kind' = 'latest'
               AND detail->>'error' LIKE '%does not exist yet%'")
note "latest.json exports refused because their version was not uploaded yet (then retried): $races"
note "latest.json done after its version's objects, per model: $(q -c "SELECT string_agg(format('%s v%s %s s', l.model_name, l.version,
        round(extract(epoch FROM l.exported_at - v.exported_at)::numeric, 1)), ', ' ORDER BY l.model_name)
   FROM cinematic_ml.exports l JOIN cinematic_ml.exports v ON v.model_name = l.model_name AND v.version = l.version AND v.kind = 'version'
  WHERE l.kind = 'latest'")"
check "every latest.json export ended done and names the active version" \
	test "$(q -c "SELECT bool_and(e.status = 'done' AND e.version = a.version) FROM cinematic_ml.exports e
	               JOIN cinematic_ml.model_versions a ON a.model_name = e.model_name AND a.status = 'active'
	              WHERE e.kind = 'latest' AND e.version = (SELECT max(version) FROM cinematic_ml.exports l
	                                                        WHERE l.model_name = e.model_name AND l.kind = 'latest')")" = t

finish
