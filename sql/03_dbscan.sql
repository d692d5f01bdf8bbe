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
