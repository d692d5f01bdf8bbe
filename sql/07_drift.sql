-- Drift checks: the report, its verdicts, and bad input
\set SHOW_CONTEXT never
SET extra_float_digits = 0;

CREATE TABLE dpts AS
SELECT era, i,
       (ARRAY[48.8606, 48.8584, 48.8530, 48.8867])[1 + i % 4] + CASE WHEN era = 2 AND i % 4 = 0 THEN 0.0054 ELSE 0 END
           + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499, 2.3431])[1 + i % 4] + ((i * 104729) % 101 - 50) * 0.000014 AS lon
  FROM generate_series(1, 2) era, generate_series(1, 800) i;
SELECT cinematic_ml.train('drifty', 'SELECT lat, lon FROM dpts WHERE era = 1', 'kmeans', '{"k": 4, "seed": 1}');

-- the same data: stable; every statistic has its threshold and verdict
SELECT r->>'verdict' AS verdict, r->'reasons' AS reasons, r->'seed_rule'->'rel_change' AS rel_change,
       r->'share_drift'->>'significant' AS significant, r->'geometry'->'transitions' AS transitions,
       r ?& ARRAY['check_id', 'model_name', 'baseline_version', 'settings', 'seed_rule', 'share_drift', 'geometry'] AS complete
  FROM cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts WHERE era = 1') r;
-- a hotspot moved 600 m: drifted, with the reasons
SELECT r->>'verdict' AS verdict, jsonb_array_length(r->'reasons') AS n_reasons,
       r->'share_drift'->>'drifted' AS share, r->'geometry'->'transitions' AS transitions
  FROM cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts WHERE era = 2') r;
-- thresholds per call: with the rules off, nothing can drift
SELECT r->>'verdict' AS verdict FROM cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts WHERE era = 2',
       '{"seed_rule": 0, "share_rule": 0, "geometry_rule": 0}') r;
-- too little data
SELECT r->>'verdict' AS verdict, r->'reasons' AS reasons
  FROM cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts WHERE era = 2 LIMIT 50') r;
-- every check is recorded
SELECT check_id, baseline_version, n_points, verdict FROM cinematic_ml.drift_checks ORDER BY check_id;
-- the effective settings
SELECT cinematic_ml.settings('drifty');

-- errors: nothing is recorded
SELECT cinematic_ml.drift('nope', 'SELECT lat, lon FROM dpts');
SELECT cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts WHERE false');
SELECT cinematic_ml.drift('drifty', 'SELECT lat FROM dpts');
SELECT cinematic_ml.drift('drifty', 'SELEC lat, lon FROM dpts');
SELECT cinematic_ml.drift('drifty', NULL);
SELECT cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts', '{"p_valu": 0.05}');
SELECT cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts', '{"p_value": 2}');
SELECT cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts', '{"psi": "big"}');
SELECT cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts', '[1]');
SELECT cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts', '{"cooldown": "soon"}');
SELECT cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts', '{"consecutive": 0}');
SELECT cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts', '{"min_new_rows": 1.5}');
-- settings are checked when written
UPDATE cinematic_ml.models SET settings = '{"consecutiv": 2}' WHERE model_name = 'drifty';
UPDATE cinematic_ml.models SET settings = '{"baking_window": "-1 day"}' WHERE model_name = 'drifty';
UPDATE cinematic_ml.model_versions SET status = 'archived' WHERE model_name = 'drifty';
SELECT cinematic_ml.drift('drifty', 'SELECT lat, lon FROM dpts');
SELECT count(*) AS checks FROM cinematic_ml.drift_checks;
DROP TABLE dpts;
