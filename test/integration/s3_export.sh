#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup runs from the EXIT trap (shellcheck takes the exit in finish for the end)
# S3 export and import against a real, SigV4-verifying S3 server: a single-node Ceph RADOS
# Gateway on 127.0.0.1 (scripts/s3server.sh), started here on free ports and wiped at the end.
#
# Checks: export_now() uploads the exact model bytes, a zones JSON of the documented shape and
# a latest.json that follows the active version (read back with an independent client: awscli,
# else curl --aws-sigv4); keys are idempotent; import_model() gives a model that predicts like
# the original; a wrong secret is a recorded failure with the server's SignatureDoesNotMatch and
# no secret anywhere (result, tables, server log, pg_settings); a stopped server, a server that
# never answers and a statement timeout end quickly with a clear error; the credentials file
# setting is hidden from non-superusers.
#
# Runs against the cluster scripts/test.sh started (PGHOST/PGPORT/PGUSER, CML_PGLOG); uses its
# own database and restores the cinematic_ml.s3_* settings it changes. Exit 77 (skip) when the
# Ceph packages are missing and cannot be installed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$HERE/lib/common.sh"
# shellcheck source=lib/s3.sh
source "$HERE/lib/s3.sh"

ROOT=${CML_ROOT:-$(cd "$HERE/../.." && pwd)}
S3SERVER=$ROOT/scripts/s3server.sh
DB=cml_s3_export
BUCKET=cml-export-test
PREFIX=it/exports
SETTINGS=(cinematic_ml.s3_endpoint cinematic_ml.s3_bucket cinematic_ml.s3_prefix
	cinematic_ml.s3_region cinematic_ml.s3_path_style cinematic_ml.s3_credentials_file)

export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -At "$@"; }
qpg() { psql -X -q -v ON_ERROR_STOP=1 -d postgres -At "$@"; }
# run SQL with :'r' bound to a value (psql interpolates variables in scripts, not in -c)
qr() { # value sql
	q -v r="$1" <<<"$2"
}

# ---------------------------------------------------------------- packages
# shellcheck disable=SC2119 # no commands needed beyond the Ceph ones
s3_require_ceph
if [[ "$(qpg -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'cinematic_ml'")" != 1 ]]; then
	echo "FAILED: the cinematic_ml extension is not installed in this cluster"
	exit 1
fi

# ---------------------------------------------------------------- set-up and clean-up
WORK=$(mktemp -d /tmp/cml-s3-export.XXXXXX)
chmod 0755 "$WORK"
S3DIR=$WORK/s3
BLACKHOLE_PID=""
SAVED_SETTINGS=$WORK/saved-settings.sql

# The settings this test changes, as they are in postgresql.auto.conf now
qpg -c "SELECT format('ALTER SYSTEM SET %s = %L;', name, setting) FROM pg_file_settings
         WHERE name LIKE 'cinematic_ml.s3%' AND sourcefile LIKE '%postgresql.auto.conf' AND applied IS NOT NULL" \
	>"$SAVED_SETTINGS"

cleanup() {
	local rc=$?
	set +e
	if [[ -n "$BLACKHOLE_PID" ]]; then
		kill "$BLACKHOLE_PID" 2>/dev/null
		wait "$BLACKHOLE_PID" 2>/dev/null
	fi
	for s in "${SETTINGS[@]}"; do
		qpg -c "ALTER SYSTEM RESET $s" >/dev/null 2>&1
	done
	[[ -s "$SAVED_SETTINGS" ]] && psql -X -q -d postgres -f "$SAVED_SETTINGS" >/dev/null 2>&1
	qpg -c "SELECT pg_reload_conf()" >/dev/null 2>&1
	qpg -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
	qpg -c "DROP DATABASE IF EXISTS ${DB}_other WITH (FORCE)" >/dev/null 2>&1
	qpg -c "DROP ROLE IF EXISTS cml_s3_nobody" -c "DROP ROLE IF EXISTS cml_s3_admin" >/dev/null 2>&1
	"$S3SERVER" wipe "$S3DIR" >/dev/null 2>&1
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

# Set cluster-wide settings (ALTER SYSTEM), reload, and wait until new sessions see them
set_system() { # name value [name value ...]
	local args=("$@") i
	for ((i = 0; i < ${#args[@]}; i += 2)); do
		qpg -c "ALTER SYSTEM SET ${args[i]} = '${args[i + 1]}'"
	done
	qpg -c "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 1 100); do
		[[ "$(qpg -c "SHOW ${args[-2]}")" == "${args[-1]}" ]] && return 0
		sleep 0.05
	done
	echo "the reloaded setting ${args[-2]} did not take effect" >&2
	return 1
}

# ---------------------------------------------------------------- the S3 server
t=$SECONDS
s3_start "$S3DIR" "$WORK/s3.env"
"$S3SERVER" mkbucket "$S3DIR" "$BUCKET"
echo "# S3 server at $S3_ENDPOINT (started in $((SECONDS - t)) s)"

# credentials files, readable by the server's OS user only
CRED=$WORK/credentials
WRONG=$WORK/credentials.wrong
WRONG_SECRET=WrongSecretKey0000000000000000000000cml9
s3_credentials "$CRED" "$S3_SECRET_KEY"
s3_credentials "$WRONG" "$WRONG_SECRET"
s3_client_note

set_system cinematic_ml.s3_endpoint "$S3_ENDPOINT" cinematic_ml.s3_region "$S3_REGION" \
	cinematic_ml.s3_prefix "$PREFIX" cinematic_ml.s3_credentials_file "$CRED" cinematic_ml.s3_bucket "$BUCKET"

# ---------------------------------------------------------------- models
qpg -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
q >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION cinematic_ml;
-- four hotspots, then the first one moved 600 m north
CREATE TABLE shoots AS
SELECT era, (ARRAY[48.8606, 48.8584, 48.8530, 48.8867])[1 + i % 4] + CASE WHEN era = 2 AND i % 4 = 0 THEN 0.0054 ELSE 0 END
           + ((i * 7919) % 101 - 50) * 0.00002 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499, 2.3431])[1 + i % 4] + ((i * 104729) % 101 - 50) * 0.00003 AS lon
  FROM generate_series(1, 2) era, generate_series(1, 600) i;
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots WHERE era = 1', 'kmeans', '{"k": 4, "seed": 7}');
SELECT cinematic_ml.train('parisdb', 'SELECT lat, lon FROM shoots WHERE era = 1', 'dbscan', '{"eps_m": 120, "min_points": 8}');
-- a few hundred probe points around the city
CREATE TABLE probes AS
SELECT i, 48.845 + ((i * 37) % 101) * 0.00045 AS lat, 2.285 + ((i * 53) % 103) * 0.00075 AS lon
  FROM generate_series(1, 400) i;
SQL

qpg -c "DROP ROLE IF EXISTS cml_s3_nobody" -c "CREATE ROLE cml_s3_nobody LOGIN"
qpg -c "DROP ROLE IF EXISTS cml_s3_admin" -c "CREATE ROLE cml_s3_admin LOGIN IN ROLE cinematic_ml_admin"

# ---------------------------------------------------------------- the bucket must be set
out=$(q -c "SET cinematic_ml.s3_bucket = ''" -c "\set VERBOSITY verbose" -c "SELECT cinematic_ml.export_now('paris', 1)" 2>&1 || true)
check "export_now without a bucket is ERROR 55000 naming cinematic_ml.s3_bucket" \
	grep -q "55000: cinematic_ml.s3_bucket is not set" <<<"$out"

# ---------------------------------------------------------------- export of the active version
res=$(q -c "SELECT cinematic_ml.export_now('paris', 1)")
echo "# export_now('paris', 1) = $res"
check "export_now('paris', 1) succeeds for the version and latest.json" \
	test "$(qr "$res" "SELECT (r->>'ok')::bool AND jsonb_array_length(r->'exports') = 2
	                      AND r->'exports'->0->>'status' = 'done' AND r->'exports'->1->>'status' = 'done'
	                 FROM (SELECT :'r'::jsonb r) s")" = t
check "exports rows say done, attempts 1, HTTP 200, an ETag and the URI" \
	test "$(q -c "SELECT string_agg(format('%s:%s:%s:%s:%s:%s', kind, status, attempts, http_status, etag <> '', uri), ' ' ORDER BY kind)
	                 FROM cinematic_ml.exports WHERE model_name = 'paris' AND version = 1")" \
	= "latest:done:1:200:t:s3://$BUCKET/$PREFIX/paris/latest.json version:done:1:200:t:s3://$BUCKET/$PREFIX/paris/v1.cml"
check "model_events records the exports" \
	test "$(q -c "SELECT count(*) FROM cinematic_ml.model_events WHERE model_name = 'paris' AND event = 'exported'")" = 2

s3get "$PREFIX/paris/v1.cml" "$WORK/v1.cml"
s3get "$PREFIX/paris/v1.zones.json" "$WORK/v1.zones.json"
s3get "$PREFIX/paris/latest.json" "$WORK/latest1.json"
check "the uploaded v1.cml has the model's exact bytes (size and SHA-256)" \
	test "$(stat -c %s "$WORK/v1.cml") $(sha256sum "$WORK/v1.cml" | cut -c1-64)" \
	= "$(q -c "SELECT length(model) || ' ' || encode(sha256(model), 'hex') FROM cinematic_ml.model_versions WHERE model_name = 'paris' AND version = 1")"

zones_check=$(q -v j="$(cat "$WORK/v1.zones.json")" <<'SQL'
WITH j AS (SELECT :'j'::jsonb AS j),
     v AS (SELECT * FROM cinematic_ml.model_versions WHERE model_name = 'paris' AND version = 1),
     z AS (SELECT * FROM cinematic_ml.zones('paris', 1))
SELECT concat_ws(',',
    CASE WHEN j ?& ARRAY['run_id', 'created_at_utc', 'metrics', 'zones'] THEN NULL ELSE 'keys' END,
    CASE WHEN j->>'run_id' = 'paris-v1-' || left(v.sha256, 12) THEN NULL ELSE 'run_id' END,
    CASE WHEN (j->>'created_at_utc')::timestamptz = date_trunc('microseconds', v.created_at) THEN NULL ELSE 'created_at_utc' END,
    CASE WHEN jsonb_typeof(j->'metrics') = 'object' AND (j->'metrics'->>'n_train')::int = v.n_rows THEN NULL ELSE 'metrics' END,
    CASE WHEN jsonb_array_length(j->'zones') = (SELECT count(*) FROM z) THEN NULL ELSE 'zone count' END,
    CASE WHEN NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements(j->'zones') e
         WHERE NOT (e ?& ARRAY['cluster', 'lat', 'lon', 'radius_m'])
            OR NOT EXISTS (SELECT 1 FROM z WHERE z.zone_id = (e->>'cluster')::int
                              AND abs(z.lat - (e->>'lat')::float8) < 1e-9 AND abs(z.lon - (e->>'lon')::float8) < 1e-9
                              AND abs(z.radius_m - (e->>'radius_m')::float8) < 1e-6))
         THEN NULL ELSE 'zones' END)
  FROM j, v
SQL
)
check "v1.zones.json has run_id, created_at_utc, metrics and zones[{cluster, lat, lon, radius_m}] matching the model${zones_check:+ (wrong: $zones_check)}" \
	test -z "$zones_check"

latest_check() { # file version
	qr "$(cat "$1")" "SELECT concat_ws(',',
	    CASE WHEN j->>'model_name' = 'paris' THEN NULL ELSE 'model_name' END,
	    CASE WHEN (j->>'version')::int = $2 THEN NULL ELSE 'version' END,
	    CASE WHEN j->>'uri' = 's3://$BUCKET/$PREFIX/paris/v$2.cml' THEN NULL ELSE 'uri' END,
	    CASE WHEN j->>'zones_uri' = 's3://$BUCKET/$PREFIX/paris/v$2.zones.json' THEN NULL ELSE 'zones_uri' END,
	    CASE WHEN (j->>'updated_at_utc')::timestamptz BETWEEN now() - interval '10 minutes' AND now() + interval '1 minute'
	         THEN NULL ELSE 'updated_at_utc' END)
	  FROM (SELECT :'r'::jsonb AS j) s"
}
lc=$(latest_check "$WORK/latest1.json" 1)
check "latest.json points at the active version 1${lc:+ (wrong: $lc)}" test -z "$lc"

# ---------------------------------------------------------------- a candidate, then its promotion
q -c "SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots WHERE era = 2', 'kmeans', '{\"k\": 4, \"seed\": 7}')" >/dev/null
res=$(q -c "SELECT cinematic_ml.export_now('paris', 2)")
check "export_now of a candidate uploads the version only" \
	test "$(qr "$res" "SELECT (r->>'ok')::bool AND NOT (r->>'active')::bool AND jsonb_array_length(r->'exports') = 1
	                 FROM (SELECT :'r'::jsonb r) s")" = t
s3get "$PREFIX/paris/latest.json" "$WORK/latest1b.json"
lc=$(latest_check "$WORK/latest1b.json" 1)
check "latest.json still points at version 1${lc:+ (wrong: $lc)}" test -z "$lc"
q -c "UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'paris' AND version = 2"
res=$(q -c "SELECT cinematic_ml.export_now('paris', 2)")
s3get "$PREFIX/paris/latest.json" "$WORK/latest2.json"
lc=$(latest_check "$WORK/latest2.json" 2)
check "after the promotion, latest.json points at version 2${lc:+ (wrong: $lc)}" test -z "$lc"

# idempotent keys: the same version goes to the same objects, with the same content
etag1=$(q -c "SELECT etag FROM cinematic_ml.exports WHERE model_name = 'paris' AND version = 1 AND kind = 'version'")
res=$(q -c "SELECT cinematic_ml.export_now('paris', 1)")
check "re-exporting version 1 writes the same key with the same ETag, attempts counted" \
	test "$(qr "$res" "SELECT :'r'::jsonb->'exports'->0->>'etag' = '$etag1' AND attempts = 2
	                 FROM cinematic_ml.exports WHERE model_name = 'paris' AND version = 1 AND kind = 'version'")" = t
keys=$(s3ls "$PREFIX/paris/" | sort | tr '\n' ' ')
check "the bucket holds one object per key: latest.json, v1.cml, v1.zones.json, v2.cml, v2.zones.json" \
	test "$keys" = "$PREFIX/paris/latest.json $PREFIX/paris/v1.cml $PREFIX/paris/v1.zones.json $PREFIX/paris/v2.cml $PREFIX/paris/v2.zones.json "

# ---------------------------------------------------------------- import
q -c "SELECT cinematic_ml.export_now('parisdb', 1)" >/dev/null
q -c "SELECT cinematic_ml.import_model('s3://$BUCKET/$PREFIX/paris/v1.cml', 'paris_copy')" >/dev/null
q -c "SELECT cinematic_ml.import_model('s3://$BUCKET/$PREFIX/parisdb/v1.cml', 'parisdb_copy')" >/dev/null
check "import_model registers the exact bytes, with the URI in the audit log" \
	test "$(q -c "SELECT count(*) FROM cinematic_ml.model_versions c JOIN cinematic_ml.model_versions o USING (sha256)
	               JOIN cinematic_ml.model_events e ON e.model_name = c.model_name AND e.event = 'trained'
	              WHERE (c.model_name, o.model_name) IN (('paris_copy', 'paris'), ('parisdb_copy', 'parisdb'))
	                AND o.version = 1 AND e.detail->>'imported_from' LIKE 's3://$BUCKET/$PREFIX/%/v1.cml'")" = 2
# archived version 1 of 'paris' vs its imported copy, and the DBSCAN model vs its copy
diffs=$(q -c "SELECT count(*) FROM probes p,
                LATERAL (SELECT model FROM cinematic_ml.model_versions WHERE model_name = 'paris' AND version = 1) o
               WHERE cinematic_ml.predict_cluster(o.model, p.lat, p.lon) IS DISTINCT FROM cinematic_ml.predict_cluster(p.lat, p.lon, 'paris_copy')
                  OR cinematic_ml.is_hotspot(o.model, p.lat, p.lon) IS DISTINCT FROM cinematic_ml.is_hotspot(p.lat, p.lon, 'paris_copy')
                  OR cinematic_ml.predict_cluster(p.lat, p.lon, 'parisdb') IS DISTINCT FROM cinematic_ml.predict_cluster(p.lat, p.lon, 'parisdb_copy')
                  OR cinematic_ml.is_hotspot(p.lat, p.lon, 'parisdb') IS DISTINCT FROM cinematic_ml.is_hotspot(p.lat, p.lon, 'parisdb_copy')")

# the round trip between two databases: import into another database, predict the same
qpg -c "DROP DATABASE IF EXISTS ${DB}_other WITH (FORCE)" -c "CREATE DATABASE ${DB}_other" >/dev/null
probe_answers() { # database model
	psql -X -q -v ON_ERROR_STOP=1 -d "$1" -At -c "SELECT string_agg(cinematic_ml.predict_cluster(48.83 + i * 0.0007, 2.27 + j * 0.0009, '$2')::text, ',' ORDER BY i, j)
	                                               FROM generate_series(0, 79) i, generate_series(0, 99) j"
}
psql -X -q -v ON_ERROR_STOP=1 -d "${DB}_other" -At -c "CREATE EXTENSION cinematic_ml" \
	-c "SELECT cinematic_ml.import_model('s3://$BUCKET/$PREFIX/parisdb/v1.cml', 'parisdb')" >/dev/null
check "a model imported into another database predicts exactly as in the first (8,000 points)" \
	test "$(probe_answers "$DB" parisdb)" = "$(probe_answers "${DB}_other" parisdb)"
varied=$(q -c "SELECT count(DISTINCT cinematic_ml.predict_cluster(p.lat, p.lon, 'parisdb_copy')) FROM probes p")
check "imported k-means and DBSCAN models predict like the originals on 400 points ($diffs differ, $varied DBSCAN labels seen)" \
	test "$diffs" = 0 -a "$varied" -ge 3
out=$(q -c "SELECT cinematic_ml.import_model('s3://$BUCKET/$PREFIX/paris/v99.cml')" 2>&1 || true)
check "import_model of a missing object reports the server's NoSuchKey" grep -q "HTTP 404 NoSuchKey" <<<"$out"
out=$(q -c "SELECT cinematic_ml.import_model('s3://$BUCKET/$PREFIX/paris/v1.zones.json', 'zz')" 2>&1 || true)
check "import_model of something that is not a model is refused by register_model" grep -q "invalid cinematic_ml model" <<<"$out"

# a non-superuser member of cinematic_ml_admin exports and imports (its grants suffice)
out=$(psql -X -q -v ON_ERROR_STOP=1 -At -d "$DB" -U cml_s3_admin \
	-c "SELECT cinematic_ml.export_now('parisdb', 1)->>'ok'" \
	-c "SELECT cinematic_ml.import_model('s3://$BUCKET/$PREFIX/parisdb/v1.cml', 'parisdb_admin')" 2>&1 || true)
check "a non-superuser cinematic_ml_admin can export_now and import_model" test "$out" = $'true\n1'

# ---------------------------------------------------------------- a wrong secret
set_system cinematic_ml.s3_credentials_file "$WRONG"
before=$(q -c "SELECT attempts FROM cinematic_ml.exports WHERE model_name = 'paris' AND version = 1 AND kind = 'version'")
res=$(q -c "SELECT cinematic_ml.export_now('paris', 1)")
echo "# with a wrong secret: $res"
check "a wrong secret is a failed export with the server's SignatureDoesNotMatch (HTTP 403)" \
	test "$(qr "$res" "SELECT NOT (r->>'ok')::bool AND r->'exports'->0->>'status' = 'failed'
	                     AND (r->'exports'->0->>'http_status')::int = 403
	                     AND r->'exports'->0->>'error' LIKE '%SignatureDoesNotMatch%'
	                FROM (SELECT :'r'::jsonb r) s")" = t
check "the exports row says failed with the error and attempts counted" \
	test "$(q -c "SELECT status = 'failed' AND attempts = $before + 1 AND http_status = 403 AND last_error LIKE '%SignatureDoesNotMatch%'
	                FROM cinematic_ml.exports WHERE model_name = 'paris' AND version = 1 AND kind = 'version'")" = t
check "the failure is in model_events" \
	test "$(q -c "SELECT count(*) FROM cinematic_ml.model_events WHERE model_name = 'paris' AND event = 'failed'
	                AND detail->>'error' LIKE '%SignatureDoesNotMatch%'")" = 1
out=$(q -c "SELECT cinematic_ml._s3_get('s3://$BUCKET/$PREFIX/paris/v1.cml')" 2>&1 || true)
check "_s3_get with a wrong secret errors with the server's message" grep -q "HTTP 403 SignatureDoesNotMatch" <<<"$out"

# ---------------------------------------------------------------- the server stopped
set_system cinematic_ml.s3_credentials_file "$CRED"
"$S3SERVER" stop "$S3DIR"
t=$SECONDS
res=$(q -c "SELECT cinematic_ml.export_now('paris', 2)")
secs=$((SECONDS - t))
echo "# with the server stopped (${secs}s): $res"
check "a stopped server is a recorded failure (connection refused) within seconds" \
	test "$(qr "$res" "SELECT NOT (r->>'ok')::bool AND r->'exports'->0->>'error' LIKE '%onnect%'
	                     AND e.status = 'failed' AND e.last_error LIKE '%onnect%'
	                FROM (SELECT :'r'::jsonb r) s, cinematic_ml.exports e
	               WHERE e.model_name = 'paris' AND e.version = 2 AND e.kind = 'version'")" = t -a "$secs" -le 5

# a server that accepts connections and never answers: the timeouts end the request
pick_port BLACKHOLE_PORT
silent_server BLACKHOLE_PID "$BLACKHOLE_PORT" 60
t=$(date +%s%N)
res=$(q -c "SET cinematic_ml.s3_endpoint = 'http://127.0.0.1:$BLACKHOLE_PORT'" -c "SET cinematic_ml.s3_timeout = '2s'" \
	-c "SELECT cinematic_ml.export_now('paris', 2)->'exports'->0->>'error'")
ms=$((($(date +%s%N) - t) / 1000000))
echo "# silent server, s3_timeout = 2s (${ms} ms): $res"
check "cinematic_ml.s3_timeout ends a request to a silent server" \
	test "$(grep -c 'timed out' <<<"$res")" = 1 -a "$ms" -ge 1900 -a "$ms" -lt 6000
t=$(date +%s%N)
out=$(q -c "SET cinematic_ml.s3_endpoint = 'http://127.0.0.1:$BLACKHOLE_PORT'" -c "SET statement_timeout = '1s'" \
	-c "SELECT cinematic_ml.export_now('paris', 2)" 2>&1 || true)
ms=$((($(date +%s%N) - t) / 1000000))
echo "# silent server, statement_timeout = 1s (${ms} ms): $out"
check "a statement timeout (query cancel) interrupts a transfer at once" \
	test "$(grep -c 'canceling statement due to statement timeout' <<<"$out")" = 1 -a "$ms" -lt 4000
kill "$BLACKHOLE_PID" 2>/dev/null || true
wait "$BLACKHOLE_PID" 2>/dev/null || true
BLACKHOLE_PID=""

# ---------------------------------------------------------------- privileges
out=$(psql -X -At -d "$DB" -U cml_s3_nobody -c "SHOW cinematic_ml.s3_credentials_file" 2>&1 || true)
check "SHOW cinematic_ml.s3_credentials_file is refused to a non-superuser" grep -q "must be superuser" <<<"$out"
check "pg_settings hides the credentials file from a non-superuser" \
	test "$(psql -X -At -d "$DB" -U cml_s3_nobody -c "SELECT count(*) FROM pg_settings WHERE name = 'cinematic_ml.s3_credentials_file'")" = 0
out=$(psql -X -At -d "$DB" -U cml_s3_nobody -c "SET cinematic_ml.s3_endpoint = 'http://127.0.0.1:1'" 2>&1 || true)
check "a non-superuser cannot redirect exports (SET cinematic_ml.s3_endpoint)" grep -q "permission denied" <<<"$out"
out=$(psql -X -At -d "$DB" -U cml_s3_nobody -c "SELECT cinematic_ml.export_now('paris', 1)" 2>&1 || true)
check "export_now is not executable by PUBLIC" grep -q "permission denied" <<<"$out"
out=$(psql -X -At -d "$DB" -U cml_s3_admin -c "SELECT cinematic_ml._s3_get('s3://another-bucket/x.cml')" 2>&1 || true)
check "a non-superuser admin may read only the configured bucket" grep -q "only superusers may read from a bucket other than" <<<"$out"

# ---------------------------------------------------------------- no secret anywhere
leaks=""
for secret in "$S3_SECRET_KEY" "$WRONG_SECRET"; do
	for what in exports model_events pg_settings; do
		if [[ "$what" == pg_settings ]]; then
			text=$(q -c "SELECT s::text FROM pg_settings s")
		else
			text=$(q -c "SELECT t::text FROM cinematic_ml.$what t")
		fi
		[[ -n "$text" ]] || not_ok "the $what scan read nothing"
		if grep -qF "$secret" <<<"$text"; then leaks="$leaks [$what]"; fi
	done
	if [[ -r "${CML_PGLOG:-}" ]] && grep -qF "$secret" "$CML_PGLOG"; then leaks="$leaks [server log]"; fi
done
[[ -r "${CML_PGLOG:-}" ]] || echo "# note: no readable server log (CML_PGLOG), not scanned"
check "no secret in exports, model_events, pg_settings or the server log${leaks:+ (found in$leaks)}" test -z "$leaks"

finish
