#!/usr/bin/env bash
# Regenerate the model seed corpus (fuzz/corpus/model/*.bin) from real models that
# the installed extension fits, in a scratch database of a running cluster.
#
#   PGHOST=... PGPORT=... PGUSER=postgres fuzz/make_corpus.sh
#
# Uses ../shared/data/paris_filming_locations.csv when it is there, else only the
# synthetic points.  Each file holds the model bytea's bytes (encode(model, 'hex')
# decoded), the input format of fuzz_model.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/fuzz/corpus/model
CSV=$ROOT/../shared/data/paris_filming_locations.csv
DB=cml_fuzz_corpus
q() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$DB" "$@"; }
psql -X -q -At -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
trap 'psql -X -q -At -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT
q -c "SET client_min_messages = error" -c "CREATE EXTENSION cinematic_ml"
q -c "CREATE TABLE shoots(location_id text, year int, shoot_type text, title text, director text, producer text,
                          address text, postal_code text, start_date date, end_date date, lat float8, lon float8)"
if [[ -r "$CSV" ]]; then
	q -c "\\copy shoots FROM '$CSV' CSV HEADER"
else
	q -c "INSERT INTO shoots(location_id, year, lat, lon)
	      SELECT lpad(i::text, 6, '0'), 2016 + i % 8, 48.8566 + ((i * 7919) % 1000 - 500) * 0.00015,
	             2.3522 + ((i * 104729) % 1000 - 500) * 0.0002 FROM generate_series(1, 4000) i"
fi
WORLD="(VALUES (0,179.9),(0.5,-179.9),(89.9,0),(89.95,120),(-89.9,10),(-89.95,-60),(48.8,2.3),(48.9,2.4),(-33.9,151.2),(40.7,-74.0)) v(lat,lon)"
q <<SQL
CREATE TABLE seeds(name text PRIMARY KEY, model bytea);
INSERT INTO seeds SELECT 'kmeans_k1_small', cinematic_ml.kmeans_fit(lat, lon, 1) FROM (SELECT * FROM shoots ORDER BY location_id LIMIT 20) s;
INSERT INTO seeds SELECT 'kmeans_k3_small', cinematic_ml.kmeans_fit(lat, lon, 3) FROM (SELECT * FROM shoots ORDER BY location_id LIMIT 50) s;
INSERT INTO seeds SELECT 'kmeans_k8_opts', cinematic_ml.kmeans_fit(lat, lon, 8, '{"seed": 42, "n_init": 3, "max_iter": 50, "tol": 0.001}') FROM shoots WHERE year = 2019;
INSERT INTO seeds SELECT 'kmeans_k16_paris', cinematic_ml.kmeans_fit(lat, lon, 16) FROM shoots;
INSERT INTO seeds SELECT 'kmeans_world_k4', cinematic_ml.kmeans_fit(lat, lon, 4) FROM $WORLD;
INSERT INTO seeds SELECT 'dbscan_small', cinematic_ml.dbscan_fit(lat, lon, 300, 3) FROM (SELECT * FROM shoots ORDER BY location_id LIMIT 40) s;
INSERT INTO seeds SELECT 'dbscan_nozones', cinematic_ml.dbscan_fit(lat, lon, 1, 50) FROM (SELECT * FROM shoots ORDER BY location_id LIMIT 30) s;
INSERT INTO seeds SELECT 'dbscan_2019_e100_m10', cinematic_ml.dbscan_fit(lat, lon, 100, 10) FROM shoots WHERE year = 2019;
INSERT INTO seeds SELECT 'dbscan_world_e500km', cinematic_ml.dbscan_fit(lat, lon, 500000, 2) FROM $WORLD;
INSERT INTO seeds SELECT 'dbscan_tiny_eps', cinematic_ml.dbscan_fit(lat, lon, 0.001, 1) FROM (SELECT * FROM shoots ORDER BY location_id LIMIT 25) s;
INSERT INTO seeds SELECT 'dbscan_dups', cinematic_ml.dbscan_fit(lat, lon, 10, 2) FROM (VALUES (1.0,1.0),(1.0,1.0),(1.0,1.0),(1.00001,1.0),(5,5)) v(lat,lon);
SQL
mkdir -p "$OUT"
for name in $(q -c "SELECT name FROM seeds WHERE model IS NOT NULL ORDER BY name"); do
	q -c "SELECT encode(model, 'hex') FROM seeds WHERE name = '$name'" | xxd -r -p >"$OUT/$name.bin"
	echo "$OUT/$name.bin: $(stat -c %s "$OUT/$name.bin") bytes"
done
