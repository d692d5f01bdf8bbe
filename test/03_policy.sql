-- pgTAP: the retrain policy end to end; every decision lands in model_events
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cinematic_ml CASCADE;
CREATE EXTENSION cinematic_ml;
CREATE EXTENSION IF NOT EXISTS dblink;
DROP TABLE IF EXISTS pol_points, pol_noise CASCADE;
-- era 1: four hotspots; era 2: the first hotspot has moved 600 m north and grown
CREATE TABLE pol_points AS
SELECT era, i,
       (ARRAY[48.8606, 48.8584, 48.8530, 48.8867])[z] + CASE WHEN era = 2 AND z = 1 THEN 0.0054 ELSE 0 END
           + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499, 2.3431])[z] + ((i * 104729) % 101 - 50) * 0.000014 AS lon
  FROM generate_series(1, 2) era, generate_series(1, 1200) i,
       LATERAL (SELECT CASE WHEN era = 2 AND i % 3 = 0 THEN 1 ELSE 1 + i % 4 END AS z) x;
CREATE TABLE pol_noise AS
SELECT 48.815 + ((i * 7919) % 1000) * 0.000087 AS lat, 2.25 + ((i * 104729) % 1000) * 0.00017 AS lon
  FROM generate_series(1, 1200) i;

SELECT plan(22);

-- no model yet: retrain is an error; no baseline: retrain trains it
SELECT throws_ok($$SELECT cinematic_ml.retrain('nope')$$, '42704', 'model "nope" does not exist', 'unknown model');
SELECT cinematic_ml.train('pol', 'SELECT lat, lon FROM pol_points WHERE era = 1', 'kmeans', '{"k": 4, "seed": 1}');
UPDATE cinematic_ml.models SET settings = '{"window_query": "SELECT lat, lon FROM pol_points WHERE era = 1"}' WHERE model_name = 'pol';

SELECT is(cinematic_ml.retrain('pol')->>'action', 'skipped', 'unchanged data: no retrain');
SELECT is((SELECT detail->>'reason' FROM cinematic_ml.model_events WHERE model_name = 'pol' ORDER BY event_id DESC LIMIT 1),
          'no drift', 'the decision and its reason are audited');
SELECT is((SELECT verdict FROM cinematic_ml.drift_checks WHERE model_name = 'pol' ORDER BY check_id DESC LIMIT 1),
          'stable', 'the check is recorded in drift_checks');

-- the city changes
UPDATE cinematic_ml.models SET source_query = 'SELECT lat, lon FROM pol_points WHERE era = 2',
       settings = '{"window_query": "SELECT lat, lon FROM pol_points WHERE era = 2"}' WHERE model_name = 'pol';
SELECT is(cinematic_ml.check_drift('pol')->>'verdict', 'drifted', 'check_drift sees the change');
SELECT is(cinematic_ml.retrain('pol')->>'action', 'candidate', 'drift: a candidate passes the gate and waits for a DBA');
SELECT is((SELECT status FROM cinematic_ml.model_versions WHERE model_name = 'pol' AND version = 2), 'candidate', 'version 2 is a candidate');
SELECT ok((SELECT detail ? 'gate' AND event = 'held' FROM cinematic_ml.model_events WHERE model_name = 'pol' ORDER BY event_id DESC LIMIT 1),
          'the held event carries the quality gate');

-- cooldown
UPDATE cinematic_ml.models SET settings = settings || '{"cooldown": "1 hour"}' WHERE model_name = 'pol';
SELECT is(cinematic_ml.retrain('pol')->>'reason', 'cooldown', 'cooldown after a training');
-- consecutive checks
UPDATE cinematic_ml.models SET settings = settings || '{"cooldown": "0", "consecutive": 3}' WHERE model_name = 'pol';
SELECT is(cinematic_ml.retrain('pol')->>'action', 'candidate', 'two earlier drifted checks + this one = 3 consecutive');
UPDATE cinematic_ml.models SET settings = settings - 'window_query' || '{"consecutive": 2}' WHERE model_name = 'pol';
SELECT cinematic_ml.drift('pol', 'SELECT lat, lon FROM pol_points WHERE era = 1') IS NOT NULL AS checked;
SELECT is(cinematic_ml.retrain('pol')->>'action', 'held', 'a stable check breaks the run of drifted checks: held');

-- auto-promotion
UPDATE cinematic_ml.models SET auto_promote = true, settings = '{"consecutive": 1}' WHERE model_name = 'pol';
SELECT is(cinematic_ml.retrain('pol')->>'action', 'promoted', 'auto_promote: the candidate is promoted');
SELECT ok((SELECT detail->>'action' = 'auto-promoted' AND from_version = 1 FROM cinematic_ml.model_events
            WHERE model_name = 'pol' AND event = 'promoted' ORDER BY event_id DESC LIMIT 1),
          'the promotion event says why and from which version');
SELECT is(cinematic_ml.retrain('pol')->>'action', 'skipped', 'after promotion the new baseline matches the data');

-- the quality gate rejects a worse candidate (trained on noise, judged on the hotspots)
UPDATE cinematic_ml.models SET source_query = 'SELECT lat, lon FROM pol_noise',
       settings = '{"window_query": "SELECT lat, lon FROM pol_points WHERE era = 2"}' WHERE model_name = 'pol';
SELECT is(cinematic_ml.retrain('pol', true)->>'action', 'rejected', 'a candidate worse than the active version is rejected');
SELECT is((SELECT count(*)::int FROM cinematic_ml.model_versions WHERE model_name = 'pol' AND status = 'rejected'), 1, 'it is kept as rejected');

-- a failing retrain leaves the registry as it was, with the failure recorded
CREATE TEMP TABLE before AS SELECT version, status FROM cinematic_ml.model_versions WHERE model_name = 'pol';
UPDATE cinematic_ml.models SET source_query = 'SELECT lat, lon FROM no_such_table' WHERE model_name = 'pol';
SELECT is(cinematic_ml.retrain('pol', true)->>'action', 'failed', 'a failing training is reported');
SELECT set_eq('SELECT version, status FROM cinematic_ml.model_versions WHERE model_name = ''pol''', 'SELECT * FROM before',
              'the registry is unchanged');
SELECT alike((SELECT detail->>'error' FROM cinematic_ml.model_events WHERE model_name = 'pol' AND event = 'failed'),
            '%no_such_table%', 'the failure and its error are recorded');

-- baking window: a promoted version that fails its drift check is rolled back
UPDATE cinematic_ml.models SET source_query = 'SELECT lat, lon FROM pol_points WHERE era = 2',
       settings = '{"baking_window": "1 hour", "window_query": "SELECT lat, lon FROM pol_points WHERE era = 1"}' WHERE model_name = 'pol';
SELECT is(cinematic_ml.retrain('pol')->>'action', 'rolled_back', 'baking: the new version fails on the window and is rolled back');
SELECT is((SELECT version FROM cinematic_ml.model_versions WHERE model_name = 'pol' AND status = 'active'), 1, 'version 1 is active again');

-- two concurrent retrains: the second reports instead of training twice
SELECT dblink_connect('other', format('host=%s port=%s dbname=%s user=%s',
       split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port'), current_database(), current_user));
SELECT dblink_exec('other', 'BEGIN');
SELECT * FROM dblink('other', $$SELECT pg_advisory_xact_lock(1668113, hashtext('pol'))::text$$) AS t(x text);
SELECT is(cinematic_ml.retrain('pol', true)->>'reason', 'another retrain of this model is running', 'a concurrent retrain reports');
SELECT dblink_exec('other', 'ROLLBACK');
SELECT dblink_disconnect('other');

SELECT * FROM finish();
DROP TABLE pol_points, pol_noise;
DROP EXTENSION cinematic_ml;
