#!/usr/bin/env bash
# Point predictions under load: cinematic_ml.predict() against a plain SQL nearest-centroid function.
#
#   bench/pgbench_predict.sh                 # 60 s per method, 8 clients
#   DURATION=10 bench/pgbench_predict.sh     # a quick run
#
# Uses the server named by PGHOST/PGPORT when both are set (database cml_bench_pgbench, created if
# missing; cinematic_ml must be installed), otherwise a throwaway cluster (scripts/pgcluster.sh on a
# free port, removed at the end). Generates ~100k Paris-like points in SQL (20 landmark blobs with
# sigma 50-150 m, 20 % uniform noise over 48.815-48.902 N, 2.25-2.42 E; setseed(0.42)), trains the
# k-means model 'bench' (k=16, seed 1) and copies its zones into a small `centroids` table.
#
# Then pgbench (-M prepared, CLIENTS=8 clients, THREADS=2 threads, DURATION=60 s, one point per
# transaction, uniform in the Paris box) runs each method:
#   predict   SELECT * FROM cinematic_ml.predict(:lat::float8, :lon::float8, 'bench')
#   sql       SELECT * FROM nearest_zone(:lat::float8, :lon::float8): a LANGUAGE sql function scanning the 16
#             centroids ordered by equirectangular distance, LIMIT 1, returning cluster,
#             is_hotspot and the haversine distance (what users would otherwise write)
# Latency percentiles come from pgbench's per-transaction log (--log), which records each
# transaction's latency in microseconds. Prints a Markdown table (TPS, average, p50, p99, p99.9, max).
# Environment: DURATION (60), CLIENTS (8), THREADS (2), N (100000), BENCH_DB (cml_bench_pgbench),
# RATE (unset: as fast as possible; set: pgbench -R RATE, a fixed arrival rate in transactions per
# second, and the logged latency then includes the time a transaction waited for a free client).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PGBIN=/usr/lib/postgresql/15/bin
export PATH="$PGBIN:$PATH"
DURATION=${DURATION:-60}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
N=${N:-100000}
RATE=${RATE:-}
rate_args=()
[[ -n "$RATE" ]] && rate_args=(-R "$RATE")
DB=${BENCH_DB:-cml_bench_pgbench}

CLUSTER_DIR=""
WORK=$(mktemp -d /tmp/cml_pgbench.XXXXXX)
cleanup() {
	if [[ -n "$CLUSTER_DIR" ]]; then
		PG_WIPE=1 scripts/pgcluster.sh stop "$CLUSTER_DIR" || true
	fi
	rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n "${PGHOST:-}" && -n "${PGPORT:-}" ]]; then
	echo "pgbench_predict: using the server at PGHOST=$PGHOST PGPORT=$PGPORT" >&2
	export PGUSER=${PGUSER:-postgres}
else
	port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	CLUSTER_DIR=$(mktemp -d /tmp/cml_pgbench_pg.XXXXXX)
	echo "pgbench_predict: starting a throwaway cluster in $CLUSTER_DIR on port $port" >&2
	PG_EXTRA_CONF="shared_buffers = '256MB'
max_connections = 50" scripts/pgcluster.sh start "$CLUSTER_DIR" "$port"
	eval "$(scripts/pgcluster.sh env "$CLUSTER_DIR")"
	export PGHOST PGPORT PGUSER
fi

if [[ "$(psql -X -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]]; then
	psql -X -q -d postgres -c "CREATE DATABASE $DB"
fi

echo "pgbench_predict: generating $N points, training model 'bench' (k-means, k=16)" >&2
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -v n="$N" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cinematic_ml;
DROP TABLE IF EXISTS pts, centroids CASCADE;
SELECT setseed(0.42) \g /dev/null
CREATE TEMP TABLE landmarks (id int, lat float8, lon float8, sigma_m float8, w float8);
INSERT INTO landmarks VALUES
    ( 1, 48.8606, 2.3376, 120, 10), ( 2, 48.8584, 2.2945, 150, 9), ( 3, 48.8530, 2.3499,  90, 8),
    ( 4, 48.8867, 2.3431, 110,  9), ( 5, 48.8720, 2.3316,  80, 6), ( 6, 48.8532, 2.3692,  70, 5),
    ( 7, 48.8674, 2.3636,  60,  5), ( 8, 48.8722, 2.3649,  80, 5), ( 9, 48.8556, 2.3655, 100, 6),
    (10, 48.8722, 2.3767, 100,  4), (11, 48.8809, 2.3828, 140, 4), (12, 48.8358, 2.3825, 120, 3),
    (13, 48.8560, 2.3125, 100,  4), (14, 48.8738, 2.2950, 100, 5), (15, 48.8570, 2.3413,  50, 5),
    (16, 48.8540, 2.3336,  90,  6), (17, 48.8820, 2.3376,  70, 4), (18, 48.8809, 2.3553,  60, 3),
    (19, 48.8421, 2.3219, 100,  4), (20, 48.8462, 2.3372, 120, 5);
CREATE TEMP TABLE cdf AS
SELECT id, lat, lon, sigma_m,
       (sum(w) OVER (ORDER BY id) - w) / sum(w) OVER () AS lo,
       sum(w) OVER (ORDER BY id) / sum(w) OVER () AS hi
FROM landmarks;
CREATE TABLE pts AS
SELECT d.n AS id,
       CASE WHEN d.u_kind < 0.20 THEN 48.815 + d.u1 * (48.902 - 48.815)
            ELSE c.lat + sqrt(-2 * ln(1 - d.u1)) * cos(2 * pi() * d.u2) * c.sigma_m / 111320.0 END AS lat,
       CASE WHEN d.u_kind < 0.20 THEN 2.25 + d.u2 * (2.42 - 2.25)
            ELSE c.lon + sqrt(-2 * ln(1 - d.u1)) * sin(2 * pi() * d.u2) * c.sigma_m
                         / (111320.0 * cos(radians(c.lat))) END AS lon
FROM (SELECT n, random() AS u_kind, random() AS u_pick, random() AS u1, random() AS u2
        FROM generate_series(1, :n) n) d
JOIN cdf c ON d.u_pick >= c.lo AND d.u_pick < c.hi;
ANALYZE pts;
DELETE FROM cinematic_ml.model_versions WHERE model_name = 'bench';
DELETE FROM cinematic_ml.models WHERE model_name = 'bench';
SELECT cinematic_ml.train('bench', 'SELECT lat, lon FROM pts', 'kmeans', '{"k":16,"seed":1}') \g /dev/null
CREATE TABLE centroids AS
SELECT zone_id AS cluster, lat, lon, radius_m FROM cinematic_ml.zones('bench');
ANALYZE centroids;
-- What users would otherwise write: nearest centroid in plain SQL.
CREATE OR REPLACE FUNCTION nearest_zone(p_lat float8, p_lon float8,
                                        OUT cluster int, OUT is_hotspot boolean, OUT distance_m float8,
                                        OUT zone_radius_m float8)
LANGUAGE sql STABLE AS $$
    SELECT c.cluster, d.m <= c.radius_m, d.m, c.radius_m
      FROM centroids c,
           LATERAL (SELECT 2 * 6371000 * asin(sqrt(sin(radians(c.lat - p_lat) / 2) ^ 2
                     + cos(radians(p_lat)) * cos(radians(c.lat)) * sin(radians(c.lon - p_lon) / 2) ^ 2)) AS m) d
     ORDER BY (c.lat - p_lat) ^ 2 + ((c.lon - p_lon) * cos(radians(p_lat))) ^ 2
     LIMIT 1 $$;
SQL

# Agreement check on 2,000 random points.
agree=$(psql -X -At -d "$DB" -c "
SELECT count(*) FILTER (WHERE p.cluster = s.cluster) || '/' || count(*)
  FROM (SELECT 48.815 + random() * 0.087 AS lat, 2.25 + random() * 0.17 AS lon FROM generate_series(1, 2000)) q,
       LATERAL cinematic_ml.predict(q.lat, q.lon, 'bench') p, LATERAL nearest_zone(q.lat, q.lon) s")
echo "pgbench_predict: predict and nearest_zone agree on $agree random points" >&2

cat >"$WORK/predict.sql" <<'EOF'
\set lat random(48815, 48902) / 1000.0
\set lon random(2250, 2420) / 1000.0
SELECT * FROM cinematic_ml.predict(:lat::float8, :lon::float8, 'bench');
EOF
cat >"$WORK/sql.sql" <<'EOF'
\set lat random(48815, 48902) / 1000.0
\set lon random(2250, 2420) / 1000.0
SELECT * FROM nearest_zone(:lat::float8, :lon::float8);
EOF

results=()
for method in predict sql; do
	echo "pgbench_predict: $method: $CLIENTS clients, $THREADS threads, ${DURATION}s, -M prepared" >&2
	out=$(cd "$WORK" && pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$DURATION" "${rate_args[@]}" \
		--log --log-prefix="log_$method" -f "$WORK/$method.sql" "$DB" 2>&1) || { echo "$out" >&2; exit 1; }
	echo "$out" | grep -E "^(tps|latency|number of (transactions|failed))" >&2
	tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1)
	# per-transaction log: client_id transaction_no time_us script_no epoch epoch_us
	stats=$(cat "$WORK/log_$method".* | awk '{print $3}' | sort -n | awk '
		{ v[NR] = $1; s += $1 }
		END {
			n = NR
			i50 = int(0.50 * n); if (i50 < 1) i50 = 1
			i99 = int(0.99 * n); if (i99 < 1) i99 = 1
			i999 = int(0.999 * n); if (i999 < 1) i999 = 1
			printf "%d %.3f %.3f %.3f %.3f %.3f", n, s / n / 1000, v[i50] / 1000, v[i99] / 1000, v[i999] / 1000, v[n] / 1000
		}')
	rm -f "$WORK/log_$method".*
	results+=("$method $tps $stats")
done

echo
echo "pgbench, $CLIENTS clients, $THREADS threads, -M prepared${RATE:+, -R $RATE}, ${DURATION} s each, $(nproc) cores, model k=16 on $N points"
echo
echo "| method | transactions | TPS | avg ms | p50 ms | p99 ms | p99.9 ms | max ms | p99 < 1 ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for r in "${results[@]}"; do
	read -r method tps n avg p50 p99 p999 max <<<"$r"
	case $method in
	predict) label="cinematic_ml.predict(lat, lon, 'bench')" ;;
	sql) label="SQL nearest_zone(lat, lon) over 16 centroids" ;;
	esac
	ok=$(awk -v p="$p99" 'BEGIN { print (p < 1.0) ? "yes" : "no" }')
	printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n' "$label" "$n" "$tps" "$avg" "$p50" "$p99" "$p999" "$max" "$ok"
done
