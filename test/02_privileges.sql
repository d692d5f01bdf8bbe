-- pgTAP: the two roles, the caller's rights in train(), no privilege leaks
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cinematic_ml CASCADE;
CREATE EXTENSION cinematic_ml;
DROP TABLE IF EXISTS priv_points, priv_secret;
DROP ROLE IF EXISTS cml_tap_reader;
DROP ROLE IF EXISTS cml_tap_admin;
DROP ROLE IF EXISTS cml_tap_nobody;
CREATE ROLE cml_tap_reader IN ROLE cinematic_ml_reader;
CREATE ROLE cml_tap_admin IN ROLE cinematic_ml_admin;
CREATE ROLE cml_tap_nobody;
CREATE TABLE priv_points AS
SELECT (ARRAY[48.8606, 48.8584])[1 + i % 2] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945])[1 + i % 2] + ((i * 104729) % 101 - 50) * 0.00001 AS lon
  FROM generate_series(1, 200) i;
CREATE TABLE priv_secret AS SELECT * FROM priv_points;
GRANT SELECT ON priv_points TO cml_tap_admin, cml_tap_reader;
SELECT cinematic_ml.train('priv', 'SELECT lat, lon FROM priv_points', 'kmeans', '{"k": 2, "seed": 1}');

SELECT plan(23);

SELECT ok(pg_has_role('cinematic_ml_admin', 'cinematic_ml_reader', 'MEMBER'), 'an admin is also a reader');

SET ROLE cml_tap_reader;
SELECT lives_ok($$SELECT cinematic_ml.predict_cluster(48.8606, 2.3376, 'priv')$$, 'reader can predict');
SELECT lives_ok($$SELECT * FROM cinematic_ml.predict(48.8606, 2.3376)$$, 'reader can call predict()');
SELECT lives_ok($$SELECT * FROM cinematic_ml.active_zones$$, 'reader can read active_zones');
SELECT lives_ok($$SELECT * FROM cinematic_ml.model_events$$, 'reader can read the audit log');
SELECT throws_ok($$SELECT cinematic_ml.train('priv', 'SELECT lat, lon FROM priv_points', 'kmeans', '{"k": 2}')$$,
                 '42501', NULL, 'reader cannot train');
SELECT throws_ok($$UPDATE cinematic_ml.model_versions SET status = 'archived' WHERE model_name = 'priv'$$,
                 '42501', NULL, 'reader cannot promote or demote');
SELECT throws_ok($$UPDATE cinematic_ml.models SET auto_promote = true$$, '42501', NULL, 'reader cannot change settings');
SELECT throws_ok($$INSERT INTO cinematic_ml.model_events (model_name, event) VALUES ('priv', 'promoted')$$,
                 '42501', NULL, 'reader cannot write the audit log');
RESET ROLE;

SET ROLE cml_tap_admin;
SELECT is(cinematic_ml.train('priv', 'SELECT lat, lon FROM priv_points', 'kmeans', '{"k": 2, "seed": 3}'), 2, 'admin can train');
SELECT throws_ok($$SELECT cinematic_ml.train('priv', 'SELECT lat, lon FROM priv_secret', 'kmeans', '{"k": 2}')$$,
                 '42501', 'permission denied for table priv_secret', 'train runs the source query with the caller''s rights');
SELECT lives_ok($$UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'priv' AND version = 2$$,
                'admin can promote');
SELECT throws_ok($$DELETE FROM cinematic_ml.model_events$$, '42501', NULL, 'the audit log is append-only, even for an admin');
SELECT lives_ok($$SELECT cinematic_ml.drift('priv', 'SELECT lat, lon FROM priv_points')$$, 'admin can check drift');
RESET ROLE;
SET client_min_messages = error;
SELECT lives_ok($$SELECT cinematic_ml.schedule('priv', every => '1 hour')$$, 'superuser can schedule');
RESET client_min_messages;
INSERT INTO cinematic_ml.job_runs (model_name, run_as, status) VALUES ('priv', 'postgres', 'succeeded');
SET ROLE cml_tap_reader;
SELECT throws_ok($$SELECT cinematic_ml.schedule('priv', every => '1 hour')$$, '42501', NULL, 'reader cannot schedule');
SELECT throws_ok($$UPDATE cinematic_ml.schedules SET enabled = false$$, '42501', NULL, 'reader cannot change schedules');
SELECT is((SELECT count(*)::int FROM cinematic_ml.job_runs), 0, 'a reader does not see the run history of others');
SELECT is((SELECT count(*)::int FROM cinematic_ml.drift_checks), 0, 'a reader does not see drift checks run by others');
SELECT is((SELECT count(*)::int FROM cinematic_ml.drift_history), 0, 'not through the drift_history view either');
RESET ROLE;
SELECT is((SELECT by_user::text FROM cinematic_ml.model_events WHERE model_name = 'priv' AND event = 'promoted'
            ORDER BY event_id DESC LIMIT 1), 'cml_tap_admin', 'the audit row names the admin who promoted');

SET ROLE cml_tap_nobody;
SELECT throws_ok($$SELECT cinematic_ml.predict_cluster(48.8606, 2.3376, 'priv')$$, '42501', NULL,
                 'a role without cinematic_ml_reader cannot use the schema');
SELECT throws_ok($$SELECT * FROM cinematic_ml.model_versions$$, '42501', NULL,
                 'a role without cinematic_ml_reader cannot read the registry');
RESET ROLE;

SELECT * FROM finish();
DROP TABLE priv_points, priv_secret;
DROP EXTENSION cinematic_ml;
DROP ROLE cml_tap_reader;
DROP ROLE cml_tap_admin;
DROP ROLE cml_tap_nobody;
