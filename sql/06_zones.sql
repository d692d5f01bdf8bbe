-- Zone metrics (city-level figures) and GeoJSON
\set SHOW_CONTEXT never
SET extra_float_digits = 0;

CREATE TABLE zpts AS
SELECT i AS id, 1 + i % 3 AS g,
       (ARRAY[48.8606, 48.8584, 48.8530])[1 + i % 3] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499])[1 + i % 3] + ((i * 104729) % 101 - 50) * 0.00001 AS lon
  FROM generate_series(1, 300) i;

-- the figures of any labelled data: three zones of 100, no noise
SELECT m->'n_zones' AS n_zones, m->'n_noise' AS n_noise, m->'mean_points_per_zone' AS mean_pts,
       m->'std_points_per_zone' AS std_pts, round((m->>'mean_zone_radius_m')::numeric) AS mean_radius_m,
       (m->>'silhouette')::float8 > 0.9 AS separated
  FROM (SELECT cinematic_ml.zone_metrics(lat, lon, g) AS m FROM zpts) s;
-- negative and NULL clusters are noise; rows with NULL coordinates are skipped
SELECT m->'n_points' AS n_points, m->'n_zones' AS n_zones, m->'n_noise' AS n_noise, m->'noise_share' AS noise_share
  FROM (SELECT cinematic_ml.zone_metrics(lat, lon, CASE WHEN id <= 30 THEN -1 WHEN id <= 60 THEN NULL ELSE g END) AS m
          FROM (SELECT id, g, lat, lon FROM zpts UNION ALL SELECT 0, 1, NULL, 2.0) u) s;
-- cluster ids need not be dense
SELECT (cinematic_ml.zone_metrics(lat, lon, g * 1000))->'n_zones' AS n_zones FROM zpts;
-- one set of figures per group; empty input gives NULL
SELECT g, (cinematic_ml.zone_metrics(lat, lon, 0))->'n_zones' AS n_zones FROM zpts GROUP BY g ORDER BY g;
SELECT cinematic_ml.zone_metrics(lat, lon, g) IS NULL AS is_null FROM zpts WHERE false;
-- every point noise: zero zones, well defined
SELECT cinematic_ml.zone_metrics(lat, lon, -1)->'n_zones' AS n_zones,
       cinematic_ml.zone_metrics(lat, lon, -1)->'mean_points_per_zone' AS mean_pts FROM zpts;

-- the figures of a registered model equal those of its labelled training data
SELECT cinematic_ml.train('zm', 'SELECT lat, lon FROM zpts', 'dbscan', '{"eps_m": 150, "min_points": 5}');
SELECT (cinematic_ml.zone_metrics('zm') - 'silhouette' - 'davies_bouldin')
     = (SELECT cinematic_ml.zone_metrics(lat, lon, cinematic_ml.predict_cluster(lat, lon, 'zm'))
               - 'silhouette' - 'davies_bouldin' FROM zpts) AS same_figures;
SELECT cinematic_ml.zone_metrics('zm')->'n_zones' AS n_zones, cinematic_ml.zone_metrics('zm', 1)->'n_noise' AS n_noise;
SELECT cinematic_ml.zone_metrics('nope');

-- GeoJSON: a centroid and a closed radius ring per zone, [lon, lat] order
WITH g AS (SELECT cinematic_ml.zones_geojson('zm') AS j)
SELECT j->>'type' AS type, jsonb_array_length(j->'features') AS features,
       j->'features'->0->'geometry'->>'type' AS first, j->'features'->1->'geometry'->>'type' AS second,
       jsonb_array_length(j->'features'->1->'geometry'->'coordinates'->0) AS ring_points,
       j->'features'->1->'geometry'->'coordinates'->0->0 = j->'features'->1->'geometry'->'coordinates'->0->64 AS closed,
       round((j->'features'->0->'geometry'->'coordinates'->>0)::numeric, 2) AS lon,
       round((j->'features'->0->'geometry'->'coordinates'->>1)::numeric, 2) AS lat,
       j->'features'->0->'properties' ?& ARRAY['cluster', 'n_points', 'radius_m', 'density_per_km2', 'share'] AS props
  FROM g;
-- the ring lies at the zone's radius (great-circle metres)
WITH z AS (SELECT * FROM cinematic_ml.zones('zm') WHERE zone_id = 0),
     ring AS (SELECT (p->>0)::float8 AS lon, (p->>1)::float8 AS lat
                FROM jsonb_array_elements(cinematic_ml.zones_geojson('zm')->'features'->1->'geometry'->'coordinates'->0) p)
SELECT max(abs(2 * 6371000 * asin(sqrt(sin(radians(ring.lat - z.lat) / 2) ^ 2
           + cos(radians(z.lat)) * cos(radians(ring.lat)) * sin(radians(ring.lon - z.lon) / 2) ^ 2)) - z.radius_m)) < 0.001 AS on_radius
  FROM z, ring;
DROP TABLE zpts;
