#!/usr/bin/env bash
# pg_dump keeps the registry (issue 2.5): dump a database with models, versions, events,
# drift checks, aliases and a schedule; restore it into a new database; the rows, the model
# bytes and the predictions are the same, and new versions and events continue the numbering.
set -euo pipefail
SRC=cml_dump_src
DST=cml_dump_dst
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $SRC" -c "DROP DATABASE IF EXISTS $DST" >/dev/null 2>&1 || true; rm -rf "${DUMPDIR:-}"; }
trap cleanup EXIT
cleanup
DUMPDIR=$(mktemp -d /tmp/cml-dump.XXXXXX)
chown postgres "$DUMPDIR"
DUMP=$DUMPDIR/registry.dump
q -d postgres -c "CREATE DATABASE $SRC"
q -d $SRC >/dev/null <<'SQL'
SET client_min_messages = error;
CREATE EXTENSION cinematic_ml;
CREATE TABLE pts AS
SELECT i AS id, (ARRAY[48.8606, 48.8584, 48.8530])[1 + i % 3] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499])[1 + i % 3] + ((i * 104729) % 101 - 50) * 0.00001 AS lon
  FROM generate_series(1, 900) i;
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM pts', 'kmeans', '{"k": 3, "seed": 1}');
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM pts WHERE id % 2 = 0', 'dbscan', '{"eps_m": 80, "min_points": 5}');
UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'paris' AND version = 2;
INSERT INTO cinematic_ml.model_aliases VALUES ('paris', 'challenger', 1);
UPDATE cinematic_ml.models SET settings = '{"cooldown": "1 hour"}' WHERE model_name = 'paris';
SELECT cinematic_ml.drift('paris', 'SELECT lat, lon FROM pts');
SELECT cinematic_ml.schedule('paris', cron => '0 3 * * *');
SQL
snapshot() { # db
	q -d "$1" -c "SELECT (SELECT string_agg(model_name || ':' || algorithm || ':' || settings::text, ',') FROM cinematic_ml.models),
	                     (SELECT string_agg(version || ':' || status || ':' || sha256 || ':' || (sha256 = encode(sha256(model), 'hex')), ',' ORDER BY version) FROM cinematic_ml.model_versions),
	                     (SELECT string_agg(event_id || ':' || event, ',' ORDER BY event_id) FROM cinematic_ml.model_events),
	                     (SELECT string_agg(check_id || ':' || verdict, ',') FROM cinematic_ml.drift_checks),
	                     (SELECT string_agg(alias || ':' || version, ',') FROM cinematic_ml.model_aliases),
	                     (SELECT string_agg(model_name || ':' || cron, ',') FROM cinematic_ml.schedules),
	                     (SELECT string_agg(kind || ':' || version, ',' ORDER BY version, kind) FROM cinematic_ml.exports),
	                     (SELECT sum(cinematic_ml.predict_cluster(lat, lon, 'paris') * id) FROM pts)"
}
before=$(snapshot $SRC)
runuser -u postgres -- pg_dump -Fc -h "$PGHOST" -p "$PGPORT" -f "$DUMP" $SRC
q -d postgres -c "CREATE DATABASE $DST"
runuser -u postgres -- pg_restore -h "$PGHOST" -p "$PGPORT" -d $DST --exit-on-error "$DUMP"
after=$(snapshot $DST)
fail=0
if [[ "$before" == "$after" ]]; then
	echo "ok     registry rows, model bytes (sha256) and predictions survive pg_dump / pg_restore"
else
	echo "FAILED registry differs after restore"; echo "before: $before"; echo "after:  $after"; fail=1
fi
next=$(q -d $DST -c "SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM pts', 'kmeans', '{\"k\": 2}')")
ev=$(q -d $DST -c "SELECT count(*) = count(DISTINCT event_id) FROM cinematic_ml.model_events")
if [[ "$next" == 3 && "$ev" == t ]]; then
	echo "ok     after the restore a new training is version 3 and event ids continue"
else
	echo "FAILED numbering after restore: version '$next', distinct events '$ev'"; fail=1
fi
exit "$fail"
