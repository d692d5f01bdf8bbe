-- DBSCAN: aggregate, window function, semantics, errors
\set SHOW_CONTEXT never
SET extra_float_digits = 0;

-- a line of points 10 m apart (0.00009 degrees of latitude ~ 10.0 m), a gap, and a lone point
CREATE TABLE line AS
SELECT i AS id, 48.85 + i * 0.00009 AS lat, 2.35 AS lon FROM generate_series(0, 9) i
UNION ALL SELECT 100 + i, 48.86 + i * 0.00009, 2.35 FROM generate_series(0, 4) i
UNION ALL SELECT 200, 48.87, 2.35;

-- min_points counts the point itself: with eps 10.5 m each inner point has 3 (itself + 2)
SELECT id, cinematic_ml.cluster_dbscan(lat, lon, 10.5, 3) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS c
  FROM line ORDER BY id;
-- min_points 1: every point is core; the lone point is its own zone
SELECT count(DISTINCT c) AS zones, count(*) FILTER (WHERE c = -1) AS noise
  FROM (SELECT cinematic_ml.cluster_dbscan(lat, lon, 10.5, 1) OVER () AS c FROM line) s;
-- eps too small: all noise, a valid model with zero zones
SELECT info->>'n_zones' AS zones, info->>'n_noise' AS noise, info->>'n_core' AS core
  FROM (SELECT cinematic_ml.model_info(cinematic_ml.dbscan_fit(lat, lon, 5, 2)) AS info FROM line) s;
SELECT cinematic_ml.predict_cluster(cinematic_ml.dbscan_fit(lat, lon, 5, 2), 48.85, 2.35),
       cinematic_ml.is_hotspot(cinematic_ml.dbscan_fit(lat, lon, 5, 2), 48.85, 2.35) FROM line;
-- predict follows the DBSCAN rule: within eps of a core point
WITH m AS (SELECT cinematic_ml.dbscan_fit(lat, lon, 10.5, 3) AS model FROM line)
SELECT p.lat, cinematic_ml.predict_cluster(m.model, p.lat, 2.35) AS c, cinematic_ml.is_hotspot(m.model, p.lat, 2.35) AS hot
  FROM m, (VALUES (48.85), (48.8501), (48.86036), (48.8605), (48.87)) p(lat);

-- a single point, and all points identical
SELECT cinematic_ml.model_info(cinematic_ml.dbscan_fit(48.85, 2.35, 100, 1))->>'n_zones' AS one_point;
SELECT info->>'n_zones' AS zones, info->'zones'->0->>'n_points' AS n, info->'zones'->0->>'radius_m' AS radius
  FROM (SELECT cinematic_ml.model_info(cinematic_ml.dbscan_fit(48.85, 2.35, 100, 10)) AS info
          FROM generate_series(1, 50)) s;

-- errors
SELECT cinematic_ml.dbscan_fit(lat, lon, 0, 3) FROM line;
SELECT cinematic_ml.dbscan_fit(lat, lon, -5, 3) FROM line;
SELECT cinematic_ml.dbscan_fit(lat, lon, 'NaN', 3) FROM line;
SELECT cinematic_ml.dbscan_fit(lat, lon, 'Infinity', 3) FROM line;
SELECT cinematic_ml.dbscan_fit(lat, lon, 10, 0) FROM line;
SELECT cinematic_ml.dbscan_fit(lat, lon, NULL, 3) FROM line;
SELECT cinematic_ml.cluster_dbscan(lat, lon, 10, 0) OVER () FROM line LIMIT 1;
-- huge eps: everything is one zone
SELECT cinematic_ml.model_info(cinematic_ml.dbscan_fit(lat, lon, 1e9, 2))->>'n_zones' AS zones FROM line;
DROP TABLE line;

-- predict_cluster and is_hotspot read a grid of cells whose answer is proven (the nearest core
-- within eps, or noise); they answer exactly like the full search of predict(), here with many
-- zones a few metres apart, on a lattice 1 m apart that crosses every zone's border
SELECT setseed(0.42);
CREATE TABLE clumps AS
SELECT 48.8500 + (i / 20) * 0.00030 + (random() - 0.5) * 0.00012 AS lat,
       2.3500 + (i % 20) * 0.00045 + (random() - 0.5) * 0.00018 AS lon
  FROM generate_series(0, 399) i, generate_series(1, 6) r;
CREATE TABLE clump_model AS SELECT cinematic_ml.dbscan_fit(lat, lon, 6, 3) AS model FROM clumps;
SELECT (cinematic_ml.model_info(model)->>'n_zones')::int > 50 AS many_zones FROM clump_model;
SELECT count(*) AS lattice,
       count(*) FILTER (WHERE z >= 0) > 1000 AS some_in_zones,
       count(*) FILTER (WHERE z < 0) > 1000 AS some_noise,
       count(*) FILTER (WHERE z <> (cinematic_ml.predict(model, lat, lon)).cluster) AS differ,
       count(*) FILTER (WHERE cinematic_ml.is_hotspot(model, lat, lon) <> (z >= 0)) AS hotspot_differ
  FROM (SELECT model, lat, lon, cinematic_ml.predict_cluster(model, lat, lon) AS z
          FROM clump_model, generate_series(0, 149) i, generate_series(0, 149) j,
               LATERAL (SELECT 48.8497 + i * 0.000009 AS lat, 2.3497 + j * 0.0000137 AS lon) p) s;
DROP TABLE clumps, clump_model;
