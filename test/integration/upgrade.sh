#!/usr/bin/env bash
# ALTER EXTENSION cinematic_ml UPDATE (issue 8.6): install the previous release, use it, update;
# the registry rows and models stay usable, and the updated database has exactly the objects
# of a fresh install of the current version.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CUR=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$ROOT/cinematic_ml.control")
OLD=$(ls "$ROOT"/sql/releases/cinematic_ml--*.sql | sed 's/.*cinematic_ml--\(.*\)\.sql/\1/' | sort -V | tail -n 1)
A=cml_upgrade_old
B=cml_upgrade_new
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $A" -c "DROP DATABASE IF EXISTS $B" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
fail=0
check() { if eval "$2"; then echo "ok     $1"; else echo "FAILED $1"; fail=1; fi; }

q -d postgres -c "CREATE DATABASE $A" -c "CREATE DATABASE $B"
q -d $A >/dev/null <<SQL
SET client_min_messages = error;
CREATE EXTENSION cinematic_ml VERSION '$OLD';
CREATE TABLE pts AS
SELECT i AS id, (ARRAY[48.8606, 48.8584, 48.8530])[1 + i % 3] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499])[1 + i % 3] + ((i * 104729) % 101 - 50) * 0.00001 AS lon
  FROM generate_series(1, 900) i;
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM pts', 'kmeans', '{"k": 3, "seed": 1}');
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM pts', 'dbscan', '{"eps_m": 80, "min_points": 5}');
UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'paris' AND version = 2;
SELECT cinematic_ml.drift('paris', 'SELECT lat, lon FROM pts');
SQL
before=$(q -d $A -c "SELECT string_agg(version || ':' || status || ':' || sha256, ',' ORDER BY version) FROM cinematic_ml.model_versions")
answers=$(q -d $A -c "SELECT sum(cinematic_ml.predict_cluster(lat, lon, 'paris') * id) FROM pts")
q -d $A -c "ALTER EXTENSION cinematic_ml UPDATE"
check "ALTER EXTENSION cinematic_ml UPDATE: $OLD -> $CUR" \
	'[[ "$(q -d $A -c "SELECT extversion FROM pg_extension WHERE extname = '\''cinematic_ml'\''")" == "$CUR" ]]'
check "the registry rows and model bytes are kept" \
	'[[ "$(q -d $A -c "SELECT string_agg(version || '\'':'\'' || status || '\'':'\'' || sha256, '\'','\'' ORDER BY version) FROM cinematic_ml.model_versions")" == "$before" ]]'
check "the models predict as before the update" \
	'[[ "$(q -d $A -c "SELECT sum(cinematic_ml.predict_cluster(lat, lon, '\''paris'\'') * id) FROM pts")" == "$answers" ]]'
check "training continues the version numbering" \
	'[[ "$(q -d $A -c "SELECT cinematic_ml.train('\''paris'\'', '\''SELECT lat, lon FROM pts'\'', '\''kmeans'\'', '\''{\"k\": 2}'\'')")" == 3 ]]'

q -d $B -c "SET client_min_messages = error" -c "CREATE EXTENSION cinematic_ml"
objects() { # database: the extension's objects and their definitions, comparable across databases
	q -d "$1" -c "SELECT string_agg(d, E'\n' ORDER BY d) FROM (
	    SELECT pg_describe_object(classid, objid, 0) || ' ' || coalesce(
	             CASE classid WHEN 'pg_proc'::regclass THEN (SELECT CASE WHEN p.prokind = 'a'
	                                                                    THEN 'aggregate ' || pg_get_function_identity_arguments(p.oid)
	                                                                    ELSE pg_get_functiondef(p.oid) END
	                                                           FROM pg_proc p WHERE p.oid = objid)
	                          WHEN 'pg_class'::regclass THEN (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
	                                                           || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''), ', ' ORDER BY a.attnum)
	                                                           FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	                                                          WHERE a.attrelid = objid AND a.attnum > 0 AND NOT a.attisdropped)
	                          WHEN 'pg_trigger'::regclass THEN pg_get_triggerdef(objid)
	             END, '') AS d
	      FROM pg_depend WHERE refclassid = 'pg_extension'::regclass
	       AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cinematic_ml') AND deptype = 'e') s"
}
obj_a=$(objects $A)
obj_b=$(objects $B)
check "the extension's objects are listed ($(wc -l <<<"$obj_b") objects)" '[[ $(wc -l <<<"$obj_b") -gt 100 ]]'
check "an updated database has exactly the objects of a fresh $CUR install" '[[ "$obj_a" == "$obj_b" ]]'
((fail == 0)) && echo "upgrade: all checks passed"
exit "$fail"
