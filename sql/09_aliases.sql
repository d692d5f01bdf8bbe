-- Champion / challenger: aliases, routed predictions, comparison
\set SHOW_CONTEXT never
SET extra_float_digits = 0;

CREATE TABLE cc_points AS
SELECT i AS id, (ARRAY[48.8606, 48.8584, 48.8530])[1 + i % 3] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499])[1 + i % 3] + ((i * 104729) % 101 - 50) * 0.00001 AS lon
  FROM generate_series(1, 600) i;
SELECT cinematic_ml.train('cc', 'SELECT lat, lon FROM cc_points', 'kmeans', '{"k": 3, "seed": 1}');
SELECT cinematic_ml.train('cc', 'SELECT lat, lon FROM cc_points', 'kmeans', '{"k": 2, "seed": 1}');
INSERT INTO cinematic_ml.model_aliases (model_name, alias, version) VALUES ('cc', 'champion', 1), ('cc', 'challenger', 2);

-- without a share, everyone gets the champion
SELECT model_version, count(*) FROM generate_series(1, 1000) k,
       LATERAL cinematic_ml.predict(48.8606, 2.3376, 'cc', 'user-' || k) GROUP BY 1 ORDER BY 1;
-- 30 % of the keys go to the challenger, by a stable hash of the key
UPDATE cinematic_ml.models SET settings = '{"challenger_share": 0.3}' WHERE model_name = 'cc';
SELECT model_version, count(*) FROM generate_series(1, 1000) k,
       LATERAL cinematic_ml.predict(48.8606, 2.3376, 'cc', 'user-' || k) GROUP BY 1 ORDER BY 1;
-- the same key always gets the same version
SELECT count(*) AS disagreements FROM generate_series(1, 200) k,
       LATERAL cinematic_ml.predict(48.8606, 2.3376, 'cc', 'user-' || k) a,
       LATERAL cinematic_ml.predict(48.8584, 2.2945, 'cc', 'user-' || k) b
 WHERE a.model_version <> b.model_version;
-- plain predict still serves the active version
SELECT model_version FROM cinematic_ml.predict(48.8606, 2.3376, 'cc');

-- moving an alias is a plain UPDATE, audited; the history is append-only
UPDATE cinematic_ml.model_aliases SET version = 2 WHERE model_name = 'cc' AND alias = 'champion';
SELECT model_version, count(*) FROM generate_series(1, 1000) k,
       LATERAL cinematic_ml.predict(48.8606, 2.3376, 'cc', 'user-' || k) GROUP BY 1 ORDER BY 1;
SELECT alias, from_version, to_version, by_user = current_user AS by_me FROM cinematic_ml.alias_history ORDER BY change_id;
DELETE FROM cinematic_ml.alias_history;
UPDATE cinematic_ml.model_aliases SET alias = 'other' WHERE alias = 'champion';

-- compare two versions' assignments
UPDATE cinematic_ml.model_aliases SET version = 1 WHERE model_name = 'cc' AND alias = 'champion';
SELECT r->'version_a' AS a, r->'version_b' AS b, r->'n_points' AS n, round((r->>'mapped_agreement')::numeric, 3) AS mapped,
       round((r->>'adjusted_rand_index')::numeric, 3) AS ari
  FROM cinematic_ml.compare_versions('cc', 'SELECT lat, lon FROM cc_points') r;
SELECT round((r->>'adjusted_rand_index')::numeric, 3) AS self_ari
  FROM cinematic_ml.compare_versions('cc', 'SELECT lat, lon FROM cc_points', 1, 1) r;

-- errors
INSERT INTO cinematic_ml.model_aliases (model_name, alias, version) VALUES ('cc', 'staging', 9);
\set VERBOSITY terse
INSERT INTO cinematic_ml.model_aliases (model_name, alias, version) VALUES ('cc', 'Bad Alias', 1);
\set VERBOSITY default
UPDATE cinematic_ml.models SET settings = '{"challenger_share": 1.5}' WHERE model_name = 'cc';
SELECT (p).cluster >= 0 AS has_zone, (p).model_version FROM (SELECT cinematic_ml.predict(48.8606, 2.3376, 'cc', 'x') AS p) s;
DELETE FROM cinematic_ml.model_aliases WHERE model_name = 'cc' AND alias = 'challenger';
SELECT cinematic_ml.compare_versions('cc', 'SELECT lat, lon FROM cc_points');
SELECT cinematic_ml.predict(48.8606, 2.3376, 'nope', 'x');
DROP TABLE cc_points;
