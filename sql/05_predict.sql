-- Predict: by name and by value, NULLs, bad coordinates, k-means hotspot rule
\set SHOW_CONTEXT never
SET extra_float_digits = 0;

CREATE TABLE pts AS
SELECT i AS id, g,
       (ARRAY[48.8606, 48.8584])[g] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945])[g] + ((i * 104729) % 101 - 50) * 0.00001 AS lon
  FROM generate_series(1, 200) i, LATERAL (SELECT 1 + i % 2 AS g) x;
SELECT cinematic_ml.train('two', 'SELECT lat, lon FROM pts', 'kmeans', '{"k": 2, "seed": 1}');
CREATE TABLE m AS SELECT model FROM cinematic_ml.model_versions WHERE model_name = 'two';
-- other tests left active models behind: name the default
SET cinematic_ml.default_model = 'two';

-- by name and by value agree on every row
SELECT count(*) FILTER (WHERE cinematic_ml.predict_cluster(lat, lon) <> cinematic_ml.predict_cluster(m.model, lat, lon)) AS diff
  FROM pts, m;
-- every training point is within its zone's radius (k-means hotspot rule)
SELECT bool_and(cinematic_ml.is_hotspot(lat, lon)) AS all_hot FROM pts;
-- far away: nearest zone, not a hotspot, distance in metres (Louvre -> Lyon ~ 392 km)
SELECT cluster >= 0 AS has_zone, is_hotspot, round(distance_m / 1000) AS km
  FROM cinematic_ml.predict(45.7640, 4.8357);
-- by value: no name or version
SELECT cluster >= 0 AS has_zone, model_name IS NULL AS no_name, model_version IS NULL AS no_version
  FROM m, cinematic_ml.predict(m.model, 48.8606, 2.3376);

-- NULL in, NULL out
SELECT cinematic_ml.predict_cluster(NULL, 2.0) IS NULL AS a, cinematic_ml.is_hotspot(48.0, NULL) IS NULL AS b,
       cinematic_ml.predict_cluster(NULL::bytea, 48.0, 2.0) IS NULL AS c;
SELECT * FROM cinematic_ml.predict(NULL, 2.0);

-- bad coordinates name the value
SELECT cinematic_ml.predict_cluster(91, 2.0);
SELECT cinematic_ml.predict_cluster(-90.5, 2.0);
SELECT cinematic_ml.predict_cluster(48.0, 180.5);
SELECT cinematic_ml.predict_cluster('NaN', 2.0);
SELECT cinematic_ml.predict_cluster(48.0, '-Infinity');
-- swapped / projected coordinates (Lambert-93 metres in lat/lon)
SELECT cinematic_ml.predict_cluster(6862000.0, 652000.0);
SELECT cinematic_ml.is_hotspot(m.model, 2.35, 48.85) FROM m;
-- the edges of the range are valid
SELECT cinematic_ml.predict_cluster(90, 180) >= 0 AS a, cinematic_ml.predict_cluster(-90, -180) >= 0 AS b;

-- predict is STABLE and PARALLEL SAFE: a parallel scan gives the same answer
CREATE TABLE many AS SELECT p.* FROM pts p, generate_series(1, 200);
ANALYZE many;
SELECT sum(cinematic_ml.predict_cluster(lat, lon)) AS serial FROM many;
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT sum(cinematic_ml.predict_cluster(lat, lon)) FROM many;
SELECT sum(cinematic_ml.predict_cluster(lat, lon)) AS parallel FROM many;
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;

-- the k-means zone grid (cells whose nearest zone is proven) answers exactly like the full search,
-- on a lattice that crosses every zone border
SELECT count(*) AS lattice, count(*) FILTER (WHERE cinematic_ml.predict_cluster(m.model, lat, lon)
                                              <> (cinematic_ml.predict(m.model, lat, lon)).cluster) AS differ
  FROM m, generate_series(0, 199) i, generate_series(0, 199) j,
       LATERAL (SELECT 48.850 + i * 0.00008 AS lat, 2.285 + j * 0.00030 AS lon) p;

-- a model value computed per row: each row is predicted with its own model
WITH two AS (SELECT cinematic_ml.kmeans_fit(lat, lon, 2, '{"seed": 1}') AS m1,
                    cinematic_ml.kmeans_fit(lat, lon, 1) AS m2 FROM pts)
SELECT sum(cinematic_ml.predict_cluster(substring(CASE WHEN id % 2 = 0 THEN m1 ELSE m2 END FROM 1), lat, lon))
     = sum(CASE WHEN id % 2 = 0 THEN cinematic_ml.predict_cluster(m1, lat, lon) ELSE 0 END) AS per_row_models
  FROM pts, two;
DROP TABLE pts, many, m;
