-- Views for BI tools and prediction views
\set SHOW_CONTEXT never
SET extra_float_digits = 0;

CREATE TABLE bi_shoots AS
SELECT i AS id, 'shoot ' || i AS title,
       (ARRAY[48.8606, 48.8584])[1 + i % 2] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945])[1 + i % 2] + ((i * 104729) % 101 - 50) * 0.00001 AS lon
  FROM generate_series(1, 100) i;
INSERT INTO bi_shoots VALUES (0, 'no coordinates', NULL, NULL);
SELECT cinematic_ml.train('bi', 'SELECT lat, lon FROM bi_shoots', 'kmeans', '{"k": 2, "seed": 1}');
SELECT cinematic_ml.train('bi', 'SELECT lat, lon FROM bi_shoots WHERE id <= 60', 'kmeans', '{"k": 2, "seed": 2}');

SELECT model_name, algorithm, version, n_zones, n_rows, last_drift_verdict, last_export_status
  FROM cinematic_ml.active_models WHERE model_name = 'bi';
SELECT model_name, version, status, n_rows, metrics ? 'zones' AS has_zones, training->>'status' AS trained_as
  FROM cinematic_ml.model_history WHERE model_name = 'bi' ORDER BY version;
SELECT model_name, version, kind, status FROM cinematic_ml.export_status WHERE model_name = 'bi' ORDER BY version, kind;

-- a prediction view follows promotions with no refresh
SELECT cinematic_ml.create_prediction_view('bi_predictions', 'bi_shoots', 'lat', 'lon', 'bi');
SELECT model_version, count(*), count(cluster) AS predicted FROM bi_predictions GROUP BY 1 ORDER BY 1;
UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'bi' AND version = 2;
SELECT model_version, count(*), count(cluster) AS predicted FROM bi_predictions GROUP BY 1 ORDER BY 1;
SELECT id, title, cluster IS NOT NULL AS has_cluster FROM bi_predictions WHERE id IN (0, 1) ORDER BY id;
-- errors
SELECT cinematic_ml.create_prediction_view('bad1', 'bi_shoots', 'latitude', 'lon');
SELECT cinematic_ml.create_prediction_view('bad2', 'no_such_table', 'lat', 'lon');
SELECT cinematic_ml.create_prediction_view('bad3', 'bi_shoots', 'lat', 'lon', 'nope');
SELECT cinematic_ml.create_prediction_view('bad4', 'bi_predictions', 'lat', 'lon');
DROP VIEW bi_predictions;
DROP TABLE bi_shoots;
