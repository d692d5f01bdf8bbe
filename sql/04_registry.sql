-- Registry: train, versions, promotion, rollback, audit, errors
\set SHOW_CONTEXT never
SET extra_float_digits = 0;

CREATE TABLE shoots AS
SELECT i AS id, 2016 + i % 8 AS year, g,
       (ARRAY[48.8606, 48.8584, 48.8530, 48.8867])[g] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499, 2.3431])[g] + ((i * 104729) % 101 - 50) * 0.00001 AS lon,
       'x'::text AS label
  FROM generate_series(1, 800) i, LATERAL (SELECT 1 + i % 4 AS g) x;

-- the first version becomes active, later ones are candidates
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots WHERE year <= 2019', 'kmeans', '{"k": 4, "seed": 1}');
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'kmeans', '{"k": 4, "seed": 1}');
SELECT model_name, version, status, n_rows, length(sha256) AS sha_len, sha256 = encode(sha256(model), 'hex') AS sha_ok,
       metrics->>'n_zones' AS zones, metrics ? 'silhouette' AND metrics ? 'davies_bouldin' AND metrics ? 'inertia'
           AND metrics ? 'duration_ms' AS metrics_ok
  FROM cinematic_ml.model_versions ORDER BY version;
SELECT model_name, algorithm, params, source_query, auto_promote FROM cinematic_ml.models;

-- predict uses the only active model
SELECT cluster, is_hotspot, model_name, model_version FROM cinematic_ml.predict(48.8606, 2.3376);
SELECT cinematic_ml.predict_cluster(48.8606, 2.3376) = cinematic_ml.predict_cluster(48.8606, 2.3376, 'paris') AS same;

-- promotion is a plain UPDATE; the previous active version is archived in the same statement
UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'paris' AND version = 2;
SELECT version, status, promoted_by IS NOT NULL AS has_promoter FROM cinematic_ml.model_versions ORDER BY version;
SELECT model_version FROM cinematic_ml.predict(48.8606, 2.3376);
-- promoting an older version is a rollback
UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'paris' AND version = 1;
SELECT model_version FROM cinematic_ml.predict(48.8606, 2.3376);
SELECT event, version, from_version, to_version, detail - 'duration_ms' AS detail
  FROM cinematic_ml.model_events ORDER BY event_id;

-- the active version cannot be deleted; others can, audited
DELETE FROM cinematic_ml.model_versions WHERE model_name = 'paris' AND version = 1;
-- versions are immutable except for their status
UPDATE cinematic_ml.model_versions SET model = '\x00' WHERE version = 2;
UPDATE cinematic_ml.model_versions SET n_rows = 1 WHERE version = 2;
-- at most one active version, even when set directly
INSERT INTO cinematic_ml.model_versions (model_name, version, model, sha256, metrics, n_rows, status)
SELECT model_name, 3, model, sha256, metrics, n_rows, 'active' FROM cinematic_ml.model_versions WHERE version = 2;
SELECT version, status FROM cinematic_ml.model_versions ORDER BY version;
\set VERBOSITY terse
UPDATE cinematic_ml.model_versions SET status = 'bogus' WHERE version = 2;
\set VERBOSITY default

-- auto_promote: a new version goes straight to active
UPDATE cinematic_ml.models SET auto_promote = true WHERE model_name = 'paris';
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots WHERE g <> 4', 'kmeans', '{"k": 3, "seed": 1}');
SELECT version, status FROM cinematic_ml.model_versions ORDER BY version;
SELECT model_version FROM cinematic_ml.predict(48.8606, 2.3376);

-- zones of the active version and of a given one
SELECT zone_id, n_points, round(share::numeric, 4) AS share, radius_m > 0 AS r_ok, density_per_km2 > 0 AS d_ok
  FROM cinematic_ml.zones('paris') ORDER BY zone_id;
SELECT count(*) FROM cinematic_ml.zones('paris', 2);
SELECT model_name, version, count(*) FROM cinematic_ml.active_zones GROUP BY 1, 2;

-- a second model: the default becomes ambiguous until named or configured
SELECT cinematic_ml.train('hot', 'SELECT lat, lon FROM shoots', 'dbscan', '{"eps_m": 100, "min_points": 10}');
SELECT cinematic_ml.predict_cluster(48.8606, 2.3376);
SET cinematic_ml.default_model = 'hot';
SELECT model_name, model_version FROM cinematic_ml.predict(48.8606, 2.3376);
RESET cinematic_ml.default_model;
SELECT cluster >= 0 AS in_zone, is_hotspot, model_name FROM cinematic_ml.predict(48.8606, 2.3376, 'hot');

-- errors: unknown model, no active version, unknown version
SELECT cinematic_ml.predict_cluster(48.8606, 2.3376, 'nope');
SELECT * FROM cinematic_ml.zones('nope');
SELECT * FROM cinematic_ml.zones('paris', 99);
UPDATE cinematic_ml.model_versions SET status = 'archived' WHERE model_name = 'hot';
SELECT cinematic_ml.predict_cluster(48.8606, 2.3376, 'hot');
SELECT * FROM cinematic_ml.zones('hot');

-- errors in train(): nothing is registered
SELECT count(*) AS versions_before FROM cinematic_ml.model_versions;
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'hdbscan', '{}');
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'kmeans', '{}');
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'kmeans', '{"k": 0}');
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'dbscan', '{"eps_m": 100}');
SELECT cinematic_ml.train('paris', 'SELECT lat FROM shoots', 'kmeans', '{"k": 2}');
SELECT cinematic_ml.train('paris', 'SELECT lat, lon, year FROM shoots', 'kmeans', '{"k": 2}');
SELECT cinematic_ml.train('paris', 'SELECT lat, label FROM shoots', 'kmeans', '{"k": 2}');
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots WHERE false', 'kmeans', '{"k": 2}');
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM no_such_table', 'kmeans', '{"k": 2}');
SELECT cinematic_ml.train('paris', 'DELETE FROM shoots', 'kmeans', '{"k": 2}');
SELECT cinematic_ml.train('bad name!', 'SELECT lat, lon FROM shoots', 'kmeans', '{"k": 2}');
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'kmeans', '{"k": 900}');
SELECT count(*) AS versions_after, (SELECT count(*) FROM shoots) AS shoots FROM cinematic_ml.model_versions;
SELECT count(*) AS models FROM cinematic_ml.models;
DROP TABLE shoots;
