-- k-means: aggregate, window function, options, errors
\set SHOW_CONTEXT never
SET extra_float_digits = 0;

-- four tight groups of 100 points around Paris landmarks
CREATE TABLE pts AS
SELECT i AS id, g,
       (ARRAY[48.8606, 48.8584, 48.8530, 48.8867])[g] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499, 2.3431])[g] + ((i * 104729) % 101 - 50) * 0.00001 AS lon
  FROM generate_series(1, 400) i, LATERAL (SELECT 1 + i % 4 AS g) x;

-- the aggregate finds the four groups: each zone holds exactly one group
WITH m AS (SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"seed": 1}') AS model FROM pts)
SELECT count(DISTINCT g) AS groups, count(DISTINCT cinematic_ml.predict_cluster(m.model, lat, lon)) AS zones,
       count(DISTINCT (g, cinematic_ml.predict_cluster(m.model, lat, lon))) AS pairs
  FROM pts, m;

-- zones sorted by centroid: sizes and rounded centroids
WITH m AS (SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"seed": 1}') AS model FROM pts)
SELECT (z->>'n_points')::int AS n, round((z->>'lat')::numeric, 4) AS lat, round((z->>'lon')::numeric, 4) AS lon,
       (z->>'radius_m')::float8 BETWEEN 1 AND 1000 AS radius_ok
  FROM m, jsonb_array_elements(cinematic_ml.model_info(m.model)->'zones') z
 ORDER BY 2, 3;

-- same seed, same model (byte for byte); the window function agrees with the aggregate
SELECT (SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"seed": 3, "n_init": 2}') FROM pts)
     = (SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"seed": 3, "n_init": 2}') FROM pts) AS deterministic;
WITH m AS (SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"seed": 5}') AS model FROM pts),
     w AS (SELECT id, lat, lon, cinematic_ml.cluster_kmeans(lat, lon, 4, '{"seed": 5}') OVER () AS c FROM pts)
SELECT count(*) FILTER (WHERE c <> cinematic_ml.predict_cluster(m.model, lat, lon)) AS disagreements FROM w, m;

-- tiles of 32 points: sets around a tile's size, with duplicates (coordinates rounded to
-- 0.001 degree) and without; every label is its point's nearest center, so the window
-- function agrees with predict on every row
WITH s AS (
  SELECT n, k, i,
         48.85 + CASE WHEN n % 2 = 1 THEN round((0.01 * sin(i * 1.7) * (1 + i % 3))::numeric, 3)
                      ELSE 0.01 * sin(i * 1.7) * (1 + i % 3) END AS lat,
         2.35 + CASE WHEN n % 2 = 1 THEN round((0.02 * cos(i * 2.3))::numeric, 3)
                     ELSE 0.02 * cos(i * 2.3) END AS lon
    FROM (VALUES (1, 1), (5, 3), (31, 4), (32, 4), (33, 5), (64, 7), (65, 7), (3000, 12), (3001, 40)) c(n, k),
         generate_series(1, n) i),
     m AS (SELECT n, k, cinematic_ml.kmeans_fit(lat, lon, k, '{"seed": 1, "n_init": 2}') AS model
             FROM s GROUP BY n, k),
     w AS (SELECT n, k, lat, lon,
                  cinematic_ml.cluster_kmeans(lat, lon, k, '{"seed": 1, "n_init": 2}') OVER (PARTITION BY n, k) AS c
             FROM s)
SELECT n, k, count(*) AS points, (cinematic_ml.model_info(m.model)->>'n_zones')::int AS zones,
       count(*) FILTER (WHERE c <> cinematic_ml.predict_cluster(m.model, lat, lon)) AS disagreements
  FROM w JOIN m USING (n, k)
 GROUP BY n, k, m.model ORDER BY n;

-- one model per group with GROUP BY, and FILTER
SELECT g, cinematic_ml.model_info(cinematic_ml.kmeans_fit(lat, lon, 2))->>'n_train' AS n
  FROM pts GROUP BY g ORDER BY g;
SELECT cinematic_ml.model_info(cinematic_ml.kmeans_fit(lat, lon, 1) FILTER (WHERE g = 1))->>'n_train' FROM pts;
-- empty group: NULL, like other aggregates
SELECT cinematic_ml.kmeans_fit(lat, lon, 1) IS NULL AS is_null FROM pts WHERE false;
-- NULL coordinates are skipped; the window function labels them NULL
SELECT cinematic_ml.model_info(cinematic_ml.kmeans_fit(lat, lon, 1))->>'n_train'
  FROM (SELECT lat, lon FROM pts UNION ALL SELECT NULL, 2.0 UNION ALL SELECT 48.0, NULL) s;
SELECT count(*) FILTER (WHERE c IS NULL) AS null_labels
  FROM (SELECT cinematic_ml.cluster_kmeans(lat, lon, 2) OVER () AS c
          FROM (SELECT lat, lon FROM pts UNION ALL SELECT NULL, 2.0) s) t;

-- parallel query: same model as a single process
CREATE TABLE many AS SELECT * FROM pts, generate_series(1, 100) r;
ANALYZE many;
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT cinematic_ml.kmeans_fit(lat, lon, 4) FROM many;
SELECT md5(cinematic_ml.kmeans_fit(lat, lon, 4, '{"seed": 2, "n_init": 1}')) AS par FROM many \gset
RESET max_parallel_workers_per_gather;
SET max_parallel_workers_per_gather = 0;
-- the same model, byte for byte: k-means draws its seeds in a canonical order
SELECT md5(cinematic_ml.kmeans_fit(lat, lon, 4, '{"seed": 2, "n_init": 1}')) = :'par' AS same_model FROM many;
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;

-- parallel workers for the fit itself (from 200,000 points and 32 centers): the same model,
-- byte for byte
CREATE TABLE big AS
  SELECT 48.80 + 0.1 * ((i::int8 * 7919) % 100003) / 100003.0 + 0.002 * sin(i) AS lat,
         2.25 + 0.2 * ((i::int8 * 104729) % 100019) / 100019.0 + 0.002 * cos(i) AS lon
    FROM generate_series(1, 300000) i;
SET parallel_setup_cost = 1e9;  -- a serial scan: only the fit is parallel
SET max_parallel_workers_per_gather = 1;  -- 2 participants: as many as any machine allows
SET client_min_messages = debug1;
SELECT md5(cinematic_ml.kmeans_fit(lat, lon, 32, '{"seed": 3, "n_init": 2}')) AS par FROM big \gset
RESET client_min_messages;
SET max_parallel_workers_per_gather = 0;
SELECT md5(cinematic_ml.kmeans_fit(lat, lon, 32, '{"seed": 3, "n_init": 2}')) = :'par' AS same_model FROM big;
-- cancelled while the workers run: a clean error, and no worker left behind
SET max_parallel_workers_per_gather = 2;
SET statement_timeout = '300ms';
SELECT cinematic_ml.kmeans_fit(lat, lon, 400, '{"n_init": 50}') FROM big;
RESET statement_timeout;
SELECT count(*) AS workers_left FROM pg_stat_activity WHERE backend_type = 'parallel worker';
SELECT md5(cinematic_ml.kmeans_fit(lat, lon, 32, '{"seed": 3, "n_init": 2}')) = :'par' AS same_model_again FROM big;
RESET max_parallel_workers_per_gather; RESET parallel_setup_cost;
-- AVX2 (where the CPU has it) or not: the same model, byte for byte
SET max_parallel_workers_per_gather = 0;
SELECT md5(cinematic_ml.kmeans_fit(lat, lon, 32, '{"seed": 3, "n_init": 2}')) = :'par' AS same_model_avx2,
       md5(cinematic_ml.dbscan_fit(lat, lon, 30, 5)) AS db FROM big \gset
SET cinematic_ml.use_avx2 = off;
SELECT :'same_model_avx2' AS same_with_avx2,
       md5(cinematic_ml.kmeans_fit(lat, lon, 32, '{"seed": 3, "n_init": 2}')) = :'par' AS same_without_avx2,
       md5(cinematic_ml.dbscan_fit(lat, lon, 30, 5)) = :'db' AS same_dbscan_without_avx2
  FROM big;
RESET cinematic_ml.use_avx2; RESET max_parallel_workers_per_gather;
-- a parallel scan of 300,000 points: the partial states go by reference (the
-- workers' through shared memory, the leader's by address; test_parallel_states.py
-- checks that they do), the same model
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT md5(cinematic_ml.kmeans_fit(lat, lon, 4, '{"seed": 2, "n_init": 1}')) AS par,
       cinematic_ml.model_info(cinematic_ml.dbscan_fit(lat, lon, 30, 5))->>'n_zones' AS par_zones FROM big \gset
SET max_parallel_workers_per_gather = 0;
SELECT md5(cinematic_ml.kmeans_fit(lat, lon, 4, '{"seed": 2, "n_init": 1}')) = :'par' AS same_model,
       cinematic_ml.model_info(cinematic_ml.dbscan_fit(lat, lon, 30, 5))->>'n_zones' = :'par_zones' AS same_zones
  FROM big;
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;
DROP TABLE big;

-- errors
SELECT cinematic_ml.kmeans_fit(lat, lon, 0) FROM pts;
SELECT cinematic_ml.kmeans_fit(lat, lon, 401) FROM pts;
SELECT cinematic_ml.kmeans_fit(lat, lon, 5) FROM (SELECT 48.0 AS lat, 2.0 AS lon FROM generate_series(1, 10) UNION ALL SELECT 48.1, 2.1) s;
SELECT cinematic_ml.kmeans_fit(lat, lon, NULL) FROM pts;
SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"sed": 1}') FROM pts;
SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"n_init": 0}') FROM pts;
SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"n_init": 1.5}') FROM pts;
SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"tol": "small"}') FROM pts;
SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '[1, 2]') FROM pts;
SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"k": 4}') FROM pts;
SELECT cinematic_ml.kmeans_fit(lat, lon, (i % 2 + 1)::int) FROM (SELECT lat, lon, row_number() OVER () i FROM pts) s;
SELECT cinematic_ml.kmeans_fit(lat, lon, 2) FROM (VALUES (48.0, 2.0), ('NaN', 2.0)) v(lat, lon);
SELECT cinematic_ml.kmeans_fit(lat, lon, 2) FROM (VALUES (48.0, 2.0), (48.0, 'Infinity')) v(lat, lon);
SELECT cinematic_ml.kmeans_fit(lat, lon, 2) FROM (VALUES (48.0, 2.0), (6862000.0, 652000.0)) v(lat, lon);
SELECT cinematic_ml.kmeans_fit(lat, lon, 2) FROM (VALUES (48.0, 2.0), (48.0, -180.5)) v(lat, lon);
SELECT cinematic_ml.cluster_kmeans(lat, lon, 0) OVER () FROM pts LIMIT 1;
SELECT cinematic_ml.cluster_kmeans(lat, lon, 500) OVER () FROM pts LIMIT 1;
DROP TABLE pts, many;
