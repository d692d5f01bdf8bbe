-- pgTAP: registry behaviour, promotion, rollback, audit, cache invalidation across sessions
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cinematic_ml CASCADE;
CREATE EXTENSION cinematic_ml;
CREATE EXTENSION IF NOT EXISTS dblink;
DROP TABLE IF EXISTS tap_shoots;
CREATE TABLE tap_shoots AS
SELECT i AS id, 2016 + i % 8 AS year,
       (ARRAY[48.8606, 48.8584, 48.8530])[1 + i % 3] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499])[1 + i % 3] + ((i * 104729) % 101 - 50) * 0.00001 AS lon
  FROM generate_series(1, 600) i;

SELECT plan(24);

SELECT has_table('cinematic_ml', 'models', 'models table');
SELECT has_table('cinematic_ml', 'model_versions', 'model_versions table');
SELECT has_table('cinematic_ml', 'model_events', 'model_events table');
SELECT has_index('cinematic_ml', 'model_versions', 'model_versions_one_active', 'one active version per model is an index');

SELECT is(cinematic_ml.train('tap', 'SELECT lat, lon FROM tap_shoots WHERE year <= 2019', 'kmeans', '{"k": 3, "seed": 1}'), 1, 'first train gives version 1');
SELECT is((SELECT status FROM cinematic_ml.model_versions WHERE model_name = 'tap' AND version = 1), 'active', 'first version is active');
SELECT is(cinematic_ml.train('tap', 'SELECT lat, lon FROM tap_shoots', 'kmeans', '{"k": 3, "seed": 2}'), 2, 'second train gives version 2');
SELECT is((SELECT status FROM cinematic_ml.model_versions WHERE model_name = 'tap' AND version = 2), 'candidate', 'second version is a candidate');

-- a second session caches version 1
SELECT dblink_connect('other', format('host=%s port=%s dbname=%s user=%s',
       split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port'),
       current_database(), current_user));
SELECT is((SELECT v FROM dblink('other', 'SELECT model_version FROM cinematic_ml.predict(48.8606, 2.3376, ''tap'')') AS t(v int)),
          1, 'other session predicts with version 1');

UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'tap' AND version = 2;
SELECT is((SELECT array_agg(status ORDER BY version) FROM cinematic_ml.model_versions WHERE model_name = 'tap'),
          ARRAY['archived', 'active'], 'promotion archives the previous active version');
SELECT is((SELECT v FROM dblink('other', 'SELECT model_version FROM cinematic_ml.predict(48.8606, 2.3376, ''tap'')') AS t(v int)),
          2, 'other session sees the promotion on its next statement (cache invalidated)');

UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'tap' AND version = 1;
SELECT is((SELECT v FROM dblink('other', 'SELECT model_version FROM cinematic_ml.predict(48.8606, 2.3376, ''tap'')') AS t(v int)),
          1, 'other session sees the rollback');
SELECT results_eq(
    $$SELECT event, from_version, to_version FROM cinematic_ml.model_events
       WHERE model_name = 'tap' AND event IN ('promoted', 'rolled_back') ORDER BY event_id$$,
    $$VALUES ('promoted'::text, NULL::int, 1), ('promoted', 1, 2), ('rolled_back', 2, 1)$$,
    'audit log records promotions and the rollback with from -> to');
SELECT ok((SELECT bool_and(by_user = current_user AND at IS NOT NULL) FROM cinematic_ml.model_events WHERE model_name = 'tap'),
          'audit rows say who and when');

-- a statement sees one version from start to end even if a promotion commits meanwhile
SELECT is((SELECT n FROM dblink('other',
    $q$SELECT count(DISTINCT (cinematic_ml.predict(lat, lon, 'tap')).model_version)
         FROM tap_shoots, LATERAL (SELECT CASE WHEN id = 300
              THEN dblink_exec(format('host=%s port=%s dbname=%s', split_part(current_setting('unix_socket_directories'), ',', 1),
                                      current_setting('port'), current_database()),
                               'UPDATE cinematic_ml.model_versions SET status = ''active'' WHERE model_name = ''tap'' AND version = 2')
              END) x$q$) AS t(n bigint)), 1::bigint, 'one statement, one version, across a concurrent promotion');
SELECT is((SELECT v FROM dblink('other', 'SELECT model_version FROM cinematic_ml.predict(48.8606, 2.3376, ''tap'')') AS t(v int)),
          2, 'the next statement sees the concurrent promotion');

SELECT throws_ok($$DELETE FROM cinematic_ml.model_versions WHERE model_name = 'tap' AND version = 2$$,
                 '55006', 'cannot delete the active version 2 of model "tap"', 'deleting the active version is refused');
SELECT lives_ok($$DELETE FROM cinematic_ml.model_versions WHERE model_name = 'tap' AND version = 1$$,
                'an archived version can be deleted');
SELECT is((SELECT count(*)::int FROM cinematic_ml.model_events WHERE model_name = 'tap' AND event = 'deleted'), 1, 'deletion is audited');
SELECT throws_ok($$UPDATE cinematic_ml.model_versions SET metrics = '{}' WHERE model_name = 'tap'$$,
                 '0A000', NULL, 'versions are immutable except for status');

-- concurrent trainings of one model: serialised, no duplicate version numbers
SELECT dblink_send_query('other', $$SELECT cinematic_ml.train('tap', 'SELECT lat, lon FROM tap_shoots', 'kmeans', '{"k": 3, "n_init": 50}')$$);
SELECT cinematic_ml.train('tap', 'SELECT lat, lon FROM tap_shoots', 'kmeans', '{"k": 3}');
SELECT * FROM dblink_get_result('other') AS t(v int);
SELECT is((SELECT count(DISTINCT version)::int FROM cinematic_ml.model_versions WHERE model_name = 'tap'), 3,
          'two concurrent trains give two distinct new versions');
SELECT is((SELECT count(*)::int FROM cinematic_ml.model_versions WHERE model_name = 'tap' AND status = 'active'), 1,
          'still exactly one active version');

-- pg_dump keeps the registry rows
SELECT ok((SELECT bool_and(c.oid = ANY (e.extconfig))
             FROM pg_extension e, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE e.extname = 'cinematic_ml' AND n.nspname = 'cinematic_ml'
              AND c.relname IN ('models', 'model_versions', 'model_events')),
          'registry tables are extension configuration tables (dumped by pg_dump)');
SELECT is((SELECT count(*)::int FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'cinematic_ml' AND p.prosecdef
              AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')), 0,
          'every SECURITY DEFINER function pins its search_path');

SELECT dblink_disconnect('other');
SELECT * FROM finish();
DROP TABLE tap_shoots;
DROP EXTENSION cinematic_ml;
