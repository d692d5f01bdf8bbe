-- cinematic_ml 0.1.0: the install script as released (frozen; do not edit).
-- cinematic_ml: geographic clustering models inside PostgreSQL.
-- This install script is assembled by the Makefile from sql/install/*.sql in name order.

\echo Use "CREATE EXTENSION cinematic_ml" to load this file. \quit

-- Two roles: one that predicts and reads, one that trains and governs.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cinematic_ml_reader') THEN
        CREATE ROLE cinematic_ml_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cinematic_ml_admin') THEN
        CREATE ROLE cinematic_ml_admin NOLOGIN;
    END IF;
END
$$;
-- an admin can do everything a reader can
GRANT cinematic_ml_reader TO cinematic_ml_admin;
COMMENT ON ROLE cinematic_ml_reader IS 'cinematic_ml: may predict and read zones, registry and views';
COMMENT ON ROLE cinematic_ml_admin IS 'cinematic_ml: may train, promote, roll back and configure models';

REVOKE ALL ON SCHEMA @extschema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO cinematic_ml_reader;
-- ---------------------------------------------------------------------------
-- Models as values: describe, fit (aggregates, window functions, queries)
-- ---------------------------------------------------------------------------

CREATE FUNCTION model_info(model bytea) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'model_info'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION model_info(bytea) IS
    'Describe a cinematic_ml model: format, algorithm, parameters, training summary, zones';

CREATE FUNCTION fit(source_query text, algorithm text, params jsonb) RETURNS bytea
    AS 'MODULE_PATHNAME', 'fit'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION fit(text, text, jsonb) IS
    'Fit a model on the (lat, lon) rows of a query run with the caller''s rights, without registering it';

-- shared state functions of the fitting aggregates
CREATE FUNCTION _points_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'cml_points_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION _points_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'cml_points_serialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION _points_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'cml_points_deserialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- k-means
CREATE FUNCTION _kmeans_fit_trans(internal, float8, float8, int, jsonb) RETURNS internal
    AS 'MODULE_PATHNAME', 'kmeans_fit_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION _kmeans_fit_trans(internal, float8, float8, int) RETURNS internal
    AS 'MODULE_PATHNAME', 'kmeans_fit_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION _kmeans_fit_final(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'kmeans_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE kmeans_fit(lat float8, lon float8, k int, options jsonb) (
    SFUNC = _kmeans_fit_trans, STYPE = internal, FINALFUNC = _kmeans_fit_final,
    COMBINEFUNC = _points_combine, SERIALFUNC = _points_serialize,
    DESERIALFUNC = _points_deserialize, PARALLEL = SAFE
);
CREATE AGGREGATE kmeans_fit(lat float8, lon float8, k int) (
    SFUNC = _kmeans_fit_trans, STYPE = internal, FINALFUNC = _kmeans_fit_final,
    COMBINEFUNC = _points_combine, SERIALFUNC = _points_serialize,
    DESERIALFUNC = _points_deserialize, PARALLEL = SAFE
);
COMMENT ON AGGREGATE kmeans_fit(float8, float8, int, jsonb) IS
    'Fit k-means on the group''s points; options: seed, n_init, max_iter, tol';
COMMENT ON AGGREGATE kmeans_fit(float8, float8, int) IS
    'Fit k-means on the group''s points with default options';

CREATE FUNCTION cluster_kmeans(lat float8, lon float8, k int, options jsonb) RETURNS int
    AS 'MODULE_PATHNAME', 'cluster_kmeans' LANGUAGE C IMMUTABLE WINDOW PARALLEL SAFE;
CREATE FUNCTION cluster_kmeans(lat float8, lon float8, k int) RETURNS int
    AS 'MODULE_PATHNAME', 'cluster_kmeans' LANGUAGE C IMMUTABLE WINDOW PARALLEL SAFE;
COMMENT ON FUNCTION cluster_kmeans(float8, float8, int, jsonb) IS
    'Window function: k-means zone of each row of the window partition (NULL for NULL coordinates)';
COMMENT ON FUNCTION cluster_kmeans(float8, float8, int) IS
    'Window function: k-means zone of each row of the window partition (NULL for NULL coordinates)';

-- DBSCAN
CREATE FUNCTION _dbscan_fit_trans(internal, float8, float8, float8, int) RETURNS internal
    AS 'MODULE_PATHNAME', 'dbscan_fit_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION _dbscan_fit_final(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'dbscan_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE dbscan_fit(lat float8, lon float8, eps_m float8, min_points int) (
    SFUNC = _dbscan_fit_trans, STYPE = internal, FINALFUNC = _dbscan_fit_final,
    COMBINEFUNC = _points_combine, SERIALFUNC = _points_serialize,
    DESERIALFUNC = _points_deserialize, PARALLEL = SAFE
);
COMMENT ON AGGREGATE dbscan_fit(float8, float8, float8, int) IS
    'Fit DBSCAN (haversine metres, min_points counts the point itself) on the group''s points';

CREATE FUNCTION cluster_dbscan(lat float8, lon float8, eps_m float8, min_points int) RETURNS int
    AS 'MODULE_PATHNAME', 'cluster_dbscan' LANGUAGE C IMMUTABLE WINDOW PARALLEL SAFE;
COMMENT ON FUNCTION cluster_dbscan(float8, float8, float8, int) IS
    'Window function: DBSCAN zone of each row of the window partition, -1 for noise';
-- ---------------------------------------------------------------------------
-- The registry: models, their versions, the audit log
-- ---------------------------------------------------------------------------

CREATE TABLE models (
    model_name   text PRIMARY KEY
                 CHECK (model_name ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$'),
    algorithm    text NOT NULL CHECK (algorithm IN ('kmeans', 'dbscan')),
    params       jsonb NOT NULL DEFAULT '{}',
    source_query text NOT NULL,
    auto_promote boolean NOT NULL DEFAULT false,
    settings     jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE models IS
    'cinematic_ml: one row per model name: algorithm, parameters, source query, promotion policy';

CREATE TABLE model_versions (
    model_name  text NOT NULL REFERENCES models ON UPDATE RESTRICT ON DELETE RESTRICT,
    version     int NOT NULL CHECK (version > 0),
    model       bytea NOT NULL,
    sha256      text NOT NULL,
    metrics     jsonb NOT NULL,
    n_rows      bigint NOT NULL,
    status      text NOT NULL DEFAULT 'candidate'
                CHECK (status IN ('candidate', 'active', 'archived', 'rejected')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  name NOT NULL DEFAULT current_user,
    promoted_at timestamptz,
    promoted_by name,
    PRIMARY KEY (model_name, version)
);
-- at most one active version per model, enforced by the database
CREATE UNIQUE INDEX model_versions_one_active ON model_versions (model_name) WHERE status = 'active';
COMMENT ON TABLE model_versions IS
    'cinematic_ml: every trained version; UPDATE ... SET status = ''active'' promotes (or rolls back)';

CREATE TABLE model_events (
    event_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_name   text NOT NULL,
    version      int,
    event        text NOT NULL CHECK (event IN ('trained', 'promoted', 'rolled_back', 'archived',
                                                'demoted', 'rejected', 'deleted', 'exported',
                                                'failed', 'held', 'skipped')),
    from_version int,
    to_version   int,
    detail       jsonb NOT NULL DEFAULT '{}',
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    by_user      name NOT NULL DEFAULT current_user
);
CREATE INDEX model_events_model ON model_events (model_name, event_id);
COMMENT ON TABLE model_events IS 'cinematic_ml: audit log of trainings, promotions, rollbacks and failures';

-- pg_dump keeps the registry's rows
SELECT pg_catalog.pg_extension_config_dump('models', '');
SELECT pg_catalog.pg_extension_config_dump('model_versions', '');
SELECT pg_catalog.pg_extension_config_dump('model_events', '');
SELECT pg_catalog.pg_extension_config_dump('model_events_event_id_seq', '');

-- Status changes: promotion archives the previous active version; every change is audited
CREATE FUNCTION _version_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prev int;
    -- why the change happened, when the policy (retrain) made it
    note jsonb := coalesce(nullif(current_setting('cinematic_ml.audit_note', true), '')::jsonb, '{}');
BEGIN
    -- a row stamped before this transaction is being restored (pg_restore, a plain dump):
    -- its history is restored too, so nothing is archived or audited again
    IF TG_OP = 'INSERT' AND NEW.created_at < now() THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF OLD.status = 'active' THEN
            RAISE EXCEPTION 'cannot delete the active version % of model "%"', OLD.version, OLD.model_name
                USING ERRCODE = 'object_in_use',
                      HINT = 'Promote another version first.';
        END IF;
        INSERT INTO @extschema@.model_events (model_name, version, event, detail)
        VALUES (OLD.model_name, OLD.version, 'deleted', jsonb_build_object('status', OLD.status));
        -- a deleted version is no longer exported (uploaded objects stay)
        DELETE FROM @extschema@.exports e
         WHERE e.model_name = OLD.model_name AND e.version = OLD.version AND e.status IN ('pending', 'failed');
        RETURN OLD;
    END IF;

    IF TG_OP = 'UPDATE' THEN
        IF NEW.model_name IS DISTINCT FROM OLD.model_name OR NEW.version IS DISTINCT FROM OLD.version
           OR NEW.model IS DISTINCT FROM OLD.model OR NEW.sha256 IS DISTINCT FROM OLD.sha256
           OR NEW.metrics IS DISTINCT FROM OLD.metrics OR NEW.n_rows IS DISTINCT FROM OLD.n_rows
           OR NEW.created_at IS DISTINCT FROM OLD.created_at OR NEW.created_by IS DISTINCT FROM OLD.created_by THEN
            RAISE EXCEPTION 'a model version is immutable except for its status'
                USING ERRCODE = 'feature_not_supported';
        END IF;
        IF NEW.status = OLD.status THEN
            RETURN NEW;
        END IF;
    END IF;

    IF NEW.status = 'active' THEN
        -- serialise promotions of one model
        PERFORM 1 FROM @extschema@.models WHERE model_name = NEW.model_name FOR UPDATE;
        SELECT version INTO prev FROM @extschema@.model_versions
         WHERE model_name = NEW.model_name AND status = 'active' AND version <> NEW.version;
        IF prev IS NOT NULL THEN
            UPDATE @extschema@.model_versions SET status = 'archived'
             WHERE model_name = NEW.model_name AND version = prev;
        END IF;
        NEW.promoted_at := now();
        NEW.promoted_by := current_user;
        INSERT INTO @extschema@.model_events (model_name, version, event, from_version, to_version, detail)
        VALUES (NEW.model_name, NEW.version,
                CASE WHEN prev IS NOT NULL AND prev > NEW.version THEN 'rolled_back' ELSE 'promoted' END,
                prev, NEW.version, note);
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO @extschema@.model_events (model_name, version, event, detail)
        VALUES (NEW.model_name, NEW.version,
                CASE NEW.status WHEN 'archived' THEN 'archived'
                                WHEN 'rejected' THEN 'rejected'
                                ELSE 'demoted' END,
                note || jsonb_build_object('from_status', OLD.status, 'to_status', NEW.status));
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER version_guard
    BEFORE INSERT OR UPDATE OR DELETE ON model_versions
    FOR EACH ROW EXECUTE FUNCTION _version_guard();

-- Tell every backend's model cache at commit (plain DML sends no invalidation)
CREATE FUNCTION _registry_invalidate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'registry_invalidate' LANGUAGE C;
CREATE TRIGGER registry_invalidate
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON model_versions
    FOR EACH STATEMENT EXECUTE FUNCTION _registry_invalidate();

-- _train(): fit on the source query (caller's rights) and register a new version with the
-- given status; NULL status = the model's policy (first version or auto_promote: active)
CREATE FUNCTION _train(model_name text, source_query text, algorithm text, params jsonb,
                       status text, note jsonb DEFAULT '{}') RETURNS int
-- no pinned search_path: the source query must resolve names as the caller does
LANGUAGE plpgsql AS $$
DECLARE
    m        @extschema@.models;
    started  timestamptz := clock_timestamp();
    blob     bytea;
    info     jsonb;
    ver      int;
    st       text := status;
    dur_ms   float8;
BEGIN
    IF model_name IS NULL OR source_query IS NULL OR algorithm IS NULL OR params IS NULL THEN
        RAISE EXCEPTION 'train() arguments must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF model_name !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid model name "%"', model_name
            USING ERRCODE = 'invalid_name',
                  HINT = 'Use 1 to 63 letters, digits, "_", "." or "-", not starting with "." or "-".';
    END IF;
    IF algorithm NOT IN ('kmeans', 'dbscan') THEN
        RAISE EXCEPTION 'unknown algorithm "%"', algorithm
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use ''kmeans'' or ''dbscan''.';
    END IF;

    INSERT INTO @extschema@.models AS t (model_name, algorithm, params, source_query)
    VALUES (_train.model_name, _train.algorithm, _train.params, _train.source_query)
    ON CONFLICT ON CONSTRAINT models_pkey DO NOTHING;
    -- one training of a model at a time
    SELECT * INTO m FROM @extschema@.models t WHERE t.model_name = _train.model_name FOR UPDATE;

    blob := @extschema@.fit(source_query, algorithm, params);
    info := @extschema@.model_info(blob);
    dur_ms := extract(epoch FROM clock_timestamp() - started) * 1000;

    UPDATE @extschema@.models t
       SET algorithm = _train.algorithm, params = _train.params, source_query = _train.source_query
     WHERE t.model_name = _train.model_name;

    SELECT coalesce(max(v.version), 0) + 1 INTO ver
      FROM @extschema@.model_versions v WHERE v.model_name = _train.model_name;
    IF st IS NULL THEN
        st := CASE WHEN ver = 1 OR m.auto_promote THEN 'active' ELSE 'candidate' END;
    END IF;

    INSERT INTO @extschema@.model_events (model_name, version, event, detail)
    VALUES (_train.model_name, ver, 'trained',
            note || jsonb_build_object('rows', info->'n_train', 'duration_ms', round(dur_ms::numeric, 3),
                                       'status', st, 'algorithm', algorithm, 'params', params));
    PERFORM set_config('cinematic_ml.audit_note', note::text, true);
    INSERT INTO @extschema@.model_versions (model_name, version, model, sha256, metrics, n_rows, status)
    VALUES (_train.model_name, ver, blob, pg_catalog.encode(pg_catalog.sha256(blob), 'hex'),
            info || jsonb_build_object('duration_ms', round(dur_ms::numeric, 3)),
            (info->>'n_train')::bigint, st);
    PERFORM set_config('cinematic_ml.audit_note', '', true);
    RETURN ver;
END
$$;

-- train(): fit on the source query (caller's rights) and register a new version
CREATE FUNCTION train(model_name text, source_query text, algorithm text DEFAULT 'kmeans',
                      params jsonb DEFAULT '{}') RETURNS int
LANGUAGE sql AS $$ SELECT @extschema@._train(model_name, source_query, algorithm, params, NULL) $$;
COMMENT ON FUNCTION train(text, text, text, jsonb) IS
    'Fit a model on a source query (run with the caller''s rights) and register it as a new version';

-- The model of a version (default: the active one), with the errors users expect
CREATE FUNCTION _model_version(model_name text, version int) RETURNS bytea
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    blob bytea;
BEGIN
    SELECT v.model INTO blob
      FROM @extschema@.model_versions v
     WHERE v.model_name = _model_version.model_name
       AND (CASE WHEN _model_version.version IS NULL THEN v.status = 'active'
                 ELSE v.version = _model_version.version END);
    IF blob IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM @extschema@.models m WHERE m.model_name = _model_version.model_name) THEN
            RAISE EXCEPTION 'model "%" does not exist', model_name USING ERRCODE = 'undefined_object';
        ELSIF version IS NULL THEN
            RAISE EXCEPTION 'model "%" has no active version', model_name
                USING ERRCODE = 'object_not_in_prerequisite_state';
        ELSE
            RAISE EXCEPTION 'model "%" has no version %', model_name, version
                USING ERRCODE = 'undefined_object';
        END IF;
    END IF;
    RETURN blob;
END
$$;

-- zones of a model version (default: the active one)
CREATE FUNCTION zones(model_name text, version int DEFAULT NULL)
RETURNS TABLE (zone_id int, lat float8, lon float8, n_points bigint, radius_m float8,
               p90_radius_m float8, mean_distance_m float8, density_per_km2 float8, share float8)
LANGUAGE sql STABLE AS $$
    SELECT z.cluster, z.lat, z.lon, z.n_points, z.radius_m, z.p90_radius_m, z.mean_distance_m,
           CASE WHEN z.radius_m > 0 THEN z.n_points / (pi() * (z.radius_m / 1000.0) ^ 2) END,
           z.n_points::float8 / (i.info->>'n_train')::float8
      FROM (SELECT @extschema@.model_info(@extschema@._model_version(model_name, version)) AS info) i,
           jsonb_to_recordset(i.info->'zones')
           AS z(cluster int, lat float8, lon float8, n_points bigint, radius_m float8,
                p90_radius_m float8, mean_distance_m float8)
     ORDER BY z.cluster
$$;
COMMENT ON FUNCTION zones(text, int) IS
    'One row per zone of a model version (default: the active one): centroid, size, radii, density, share';

CREATE VIEW active_zones AS
SELECT v.model_name, v.version, z.*
  FROM model_versions v, LATERAL zones(v.model_name, v.version) z
 WHERE v.status = 'active';
COMMENT ON VIEW active_zones IS 'cinematic_ml: every zone of every active model version';

GRANT SELECT ON models, model_versions, model_events, active_zones TO cinematic_ml_reader;
GRANT INSERT, UPDATE, DELETE ON models, model_versions TO cinematic_ml_admin;
GRANT INSERT ON model_events TO cinematic_ml_admin;
REVOKE ALL ON FUNCTION train(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION _train(text, text, text, jsonb, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _train(text, text, text, jsonb, text, jsonb) TO cinematic_ml_admin;
GRANT EXECUTE ON FUNCTION train(text, text, text, jsonb) TO cinematic_ml_admin;
REVOKE ALL ON FUNCTION fit(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fit(text, text, jsonb) TO cinematic_ml_admin;
-- ---------------------------------------------------------------------------
-- Predict: by model name (cached per backend, one version per statement) or by model value
-- ---------------------------------------------------------------------------

CREATE FUNCTION predict_cluster(lat float8, lon float8) RETURNS int
    AS 'MODULE_PATHNAME', 'predict_cluster_by_name' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION predict_cluster(lat float8, lon float8, model_name text) RETURNS int
    AS 'MODULE_PATHNAME', 'predict_cluster_by_name' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION predict_cluster(model bytea, lat float8, lon float8) RETURNS int
    AS 'MODULE_PATHNAME', 'predict_cluster_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION predict_cluster(float8, float8) IS
    'Zone of a point under the default model''s active version, -1 when outside every zone';
COMMENT ON FUNCTION predict_cluster(float8, float8, text) IS
    'Zone of a point under the named model''s active version, -1 when outside every zone';
COMMENT ON FUNCTION predict_cluster(bytea, float8, float8) IS
    'Zone of a point under a model value, -1 when outside every zone';

CREATE FUNCTION is_hotspot(lat float8, lon float8) RETURNS boolean
    AS 'MODULE_PATHNAME', 'is_hotspot_by_name' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION is_hotspot(lat float8, lon float8, model_name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'is_hotspot_by_name' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION is_hotspot(model bytea, lat float8, lon float8) RETURNS boolean
    AS 'MODULE_PATHNAME', 'is_hotspot_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION is_hotspot(float8, float8) IS
    'True when the point lies inside a zone (k-means: within the nearest zone''s radius; DBSCAN: within eps of a core point)';
COMMENT ON FUNCTION is_hotspot(float8, float8, text) IS
    'True when the point lies inside a zone of the named model';
COMMENT ON FUNCTION is_hotspot(bytea, float8, float8) IS
    'True when the point lies inside a zone of a model value';

CREATE FUNCTION predict(lat float8, lon float8,
                        OUT cluster int, OUT is_hotspot boolean, OUT distance_m float8,
                        OUT zone_radius_m float8, OUT model_name text, OUT model_version int)
    AS 'MODULE_PATHNAME', 'predict_by_name' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION predict(lat float8, lon float8, model_name text,
                        OUT cluster int, OUT is_hotspot boolean, OUT distance_m float8,
                        OUT zone_radius_m float8, OUT model_name text, OUT model_version int)
    AS 'MODULE_PATHNAME', 'predict_by_name' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION predict(model bytea, lat float8, lon float8,
                        OUT cluster int, OUT is_hotspot boolean, OUT distance_m float8,
                        OUT zone_radius_m float8, OUT model_name text, OUT model_version int)
    AS 'MODULE_PATHNAME', 'predict_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION predict(float8, float8) IS
    'The full answer for a point under the default model: cluster, is_hotspot, distance_m, zone_radius_m, model_name, model_version';
COMMENT ON FUNCTION predict(float8, float8, text) IS
    'The full answer for a point under the named model';
COMMENT ON FUNCTION predict(bytea, float8, float8) IS
    'The full answer for a point under a model value (model_name and model_version are NULL)';
-- ---------------------------------------------------------------------------
-- Zone metrics (city-level figures) and GeoJSON
-- ---------------------------------------------------------------------------

CREATE FUNCTION zone_metrics(model bytea) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'zone_metrics_model' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION zone_metrics(bytea) IS
    'City-level zone figures of a model: n_zones, mean_points_per_zone, mean_zone_radius_m, noise share, spread, density, quality';

CREATE FUNCTION zone_metrics(model_name text, version int DEFAULT NULL) RETURNS jsonb
    LANGUAGE sql STABLE AS $$ SELECT @extschema@.zone_metrics(@extschema@._model_version(model_name, version)) $$;
COMMENT ON FUNCTION zone_metrics(text, int) IS
    'City-level zone figures of a model version (default: the active one)';

CREATE FUNCTION _zone_metrics_trans(internal, float8, float8, int) RETURNS internal
    AS 'MODULE_PATHNAME', 'zone_metrics_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION _zone_metrics_final(internal) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'zone_metrics_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE AGGREGATE zone_metrics(lat float8, lon float8, cluster int) (
    SFUNC = _zone_metrics_trans, STYPE = internal, FINALFUNC = _zone_metrics_final,
    COMBINEFUNC = _points_combine, SERIALFUNC = _points_serialize,
    DESERIALFUNC = _points_deserialize, PARALLEL = SAFE
);
COMMENT ON AGGREGATE zone_metrics(float8, float8, int) IS
    'City-level zone figures of any labelled points (a NULL or negative cluster is noise)';

CREATE FUNCTION zones_geojson(model bytea) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'zones_geojson_model' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION zones_geojson(bytea) IS
    'GeoJSON FeatureCollection of a model''s zones: centroids and radius circles, with their figures';
CREATE FUNCTION zones_geojson(model_name text, version int DEFAULT NULL) RETURNS jsonb
    LANGUAGE sql STABLE AS $$ SELECT @extschema@.zones_geojson(@extschema@._model_version(model_name, version)) $$;
COMMENT ON FUNCTION zones_geojson(text, int) IS
    'GeoJSON FeatureCollection of a model version''s zones (default: the active one), for QGIS or Leaflet';
-- ---------------------------------------------------------------------------
-- Drift checks and the retraining policy
-- ---------------------------------------------------------------------------

CREATE TABLE drift_checks (
    check_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_name       text NOT NULL REFERENCES models ON DELETE CASCADE,
    baseline_version int NOT NULL,
    checked_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    checked_by       name NOT NULL DEFAULT current_user,
    n_points         bigint NOT NULL,
    verdict          text NOT NULL CHECK (verdict IN ('drifted', 'stable', 'insufficient_data')),
    reasons          text[] NOT NULL,
    report           jsonb NOT NULL
);
CREATE INDEX drift_checks_model ON drift_checks (model_name, check_id);
COMMENT ON TABLE drift_checks IS 'cinematic_ml: every drift check with its full report';
SELECT pg_catalog.pg_extension_config_dump('drift_checks', '');
SELECT pg_catalog.pg_extension_config_dump('drift_checks_check_id_seq', '');

CREATE FUNCTION _drift_report(baseline bytea, current_query text, settings jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'drift_report' LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION _drift_settings(settings jsonb) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'drift_settings' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION evaluate(model bytea, query text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'evaluate_model' LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION evaluate(bytea, text) IS
    'How well a model fits a query''s (lat, lon) points: noise share, simplified silhouette, Davies-Bouldin, inertia per point';

-- The settings of a model: every key known, every value checked, defaults filled in.
-- Drift thresholds are checked again (and used) by _drift_report; policy keys here.
CREATE FUNCTION _check_settings(s jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k        text;
    drift_keys text[] := ARRAY['rel_n_zones', 'rel_mean_points', 'rel_mean_radius', 'p_value', 'psi', 'js',
                               'max_centroid_shift_m', 'min_points', 'min_expected', 'min_zone_points',
                               'seed_rule', 'share_rule', 'geometry_rule'];
    policy_keys text[] := ARRAY['window_query', 'min_new_rows', 'cooldown', 'consecutive', 'baking_window',
                                'gate_noise_share', 'gate_silhouette', 'gate_davies_bouldin', 'gate_inertia',
                                'challenger_share'];
    defaults jsonb := '{"window_query": null, "min_new_rows": 0, "cooldown": "0", "consecutive": 1,
                        "baking_window": "0", "gate_noise_share": 0.05, "gate_silhouette": 0.05,
                        "gate_davies_bouldin": 0.25, "gate_inertia": 0.25, "challenger_share": 0}';
BEGIN
    IF s IS NULL OR jsonb_typeof(s) <> 'object' THEN
        RAISE EXCEPTION 'settings must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    s := defaults || s;
    FOR k IN SELECT jsonb_object_keys(s) LOOP
        IF NOT (k = ANY (drift_keys) OR k = ANY (policy_keys)) THEN
            RAISE EXCEPTION 'unknown key "%" in settings', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Known keys: ' || array_to_string(drift_keys || policy_keys, ', ') || '.';
        END IF;
    END LOOP;
    IF s->'window_query' <> 'null' AND jsonb_typeof(s->'window_query') <> 'string' THEN
        RAISE EXCEPTION '"window_query" must be a string (a query returning lat, lon)' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH k IN ARRAY ARRAY['min_new_rows', 'consecutive'] LOOP
        IF jsonb_typeof(s->k) <> 'number' OR (s->>k)::numeric <> trunc((s->>k)::numeric)
           OR (s->>k)::numeric < (CASE k WHEN 'consecutive' THEN 1 ELSE 0 END) OR (s->>k)::numeric > 2147483647 THEN
            RAISE EXCEPTION '"%" must be a whole number of at least %, not %', k,
                  CASE k WHEN 'consecutive' THEN 1 ELSE 0 END, s->k USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOREACH k IN ARRAY ARRAY['gate_noise_share', 'gate_silhouette', 'gate_davies_bouldin', 'gate_inertia', 'challenger_share'] LOOP
        IF jsonb_typeof(s->k) <> 'number' OR (s->>k)::numeric < 0
           OR (s->>k)::numeric > (CASE k WHEN 'challenger_share' THEN 1 ELSE 1000 END) THEN
            RAISE EXCEPTION '"%" must be a number between 0 and %, not %', k,
                  CASE k WHEN 'challenger_share' THEN 1 ELSE 1000 END, s->k USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    FOREACH k IN ARRAY ARRAY['cooldown', 'baking_window'] LOOP
        BEGIN
            IF jsonb_typeof(s->k) <> 'string' OR (s->>k)::interval < interval '0' THEN
                RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value';
            END IF;
        EXCEPTION WHEN invalid_parameter_value OR invalid_datetime_format OR datetime_field_overflow THEN
            RAISE EXCEPTION '"%" must be a non-negative interval such as ''6 hours'', not %', k, s->k
                USING ERRCODE = 'invalid_parameter_value';
        END;
    END LOOP;
    -- drift thresholds: checked and completed by the same code that uses them
    RETURN s || @extschema@._drift_settings(jsonb_strip_nulls(
        (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(s) e WHERE e.key = ANY (drift_keys))));
END
$$;
COMMENT ON FUNCTION _check_settings(jsonb) IS 'Validate settings and fill in the defaults';

CREATE FUNCTION settings(model_name text, overrides jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s jsonb;
BEGIN
    SELECT m.settings INTO s FROM @extschema@.models m WHERE m.model_name = settings.model_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" does not exist', model_name USING ERRCODE = 'undefined_object';
    END IF;
    IF overrides IS NULL OR jsonb_typeof(overrides) <> 'object' THEN
        RAISE EXCEPTION 'settings must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN @extschema@._check_settings(s || overrides);
END
$$;

-- settings are checked when they are written, not only when they are used
CREATE FUNCTION _models_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM @extschema@._check_settings(NEW.settings);
    RETURN NEW;
END
$$;
CREATE TRIGGER models_guard BEFORE INSERT OR UPDATE OF settings ON models
    FOR EACH ROW EXECUTE FUNCTION _models_guard();
COMMENT ON FUNCTION settings(text, jsonb) IS
    'Effective drift thresholds and retrain policy of a model (models.settings over the defaults, then overrides)';

-- drift(): compare a window of points with the active version's baseline; recorded in drift_checks
CREATE FUNCTION drift(model_name text, current_query text, settings jsonb DEFAULT '{}') RETURNS jsonb
-- no pinned search_path: the window query must resolve names as the caller does
LANGUAGE plpgsql AS $$
DECLARE
    s      jsonb := @extschema@.settings(model_name, settings);
    v      @extschema@.model_versions;
    rep    jsonb;
    id     bigint;
BEGIN
    IF current_query IS NULL THEN
        RAISE EXCEPTION 'the window query must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO v FROM @extschema@.model_versions mv WHERE mv.model_name = drift.model_name AND mv.status = 'active';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" has no baseline: no version is active', model_name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Train it, or promote a version.';
    END IF;
    rep := @extschema@._drift_report(v.model, current_query,
               s - ARRAY['window_query', 'min_new_rows', 'cooldown', 'consecutive', 'baking_window',
                         'gate_noise_share', 'gate_silhouette', 'gate_davies_bouldin', 'gate_inertia',
                         'challenger_share']);
    rep := jsonb_build_object('model_name', model_name, 'baseline_version', v.version,
                              'window_query', current_query, 'checked_at', clock_timestamp()) || rep;
    INSERT INTO @extschema@.drift_checks (model_name, baseline_version, n_points, verdict, reasons, report)
    VALUES (model_name, v.version, (rep->>'n_current')::bigint, rep->>'verdict',
            ARRAY(SELECT jsonb_array_elements_text(rep->'reasons')), rep)
    RETURNING check_id INTO id;
    RETURN jsonb_build_object('check_id', id) || rep;
END
$$;
COMMENT ON FUNCTION drift(text, text, jsonb) IS
    'Drift report of a window of (lat, lon) points against the active version: original rule, zone shares, geometry, verdict';

CREATE FUNCTION check_drift(model_name text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s jsonb := @extschema@.settings(model_name);
BEGIN
    RETURN @extschema@.drift(model_name,
        coalesce(s->>'window_query', (SELECT m.source_query FROM @extschema@.models m WHERE m.model_name = check_drift.model_name)));
END
$$;
COMMENT ON FUNCTION check_drift(text) IS
    'Drift check of the model''s configured window (settings.window_query, default: its source query)';

-- retrain(): the policy, end to end; every decision lands in model_events
CREATE FUNCTION retrain(model_name text, force boolean DEFAULT false) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    m        @extschema@.models;
    s        jsonb;
    act      @extschema@.model_versions;
    rep      jsonb;
    win      text;
    last_tr  timestamptz;
    recent   text[];
    reason   text;
    ver      int;
    prev     int;
    ev_a     jsonb;
    ev_c     jsonb;
    failures text[] := '{}';
    result   jsonb;
BEGIN
    SELECT * INTO m FROM @extschema@.models t WHERE t.model_name = retrain.model_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" does not exist', model_name USING ERRCODE = 'undefined_object';
    END IF;
    s := @extschema@.settings(model_name);
    win := coalesce(s->>'window_query', m.source_query);

    -- one retrain of a model at a time: the second one reports instead of waiting
    IF NOT pg_try_advisory_xact_lock(1668113, hashtext(model_name)) THEN
        INSERT INTO @extschema@.model_events (model_name, event, detail)
        VALUES (model_name, 'skipped', jsonb_build_object('reason', 'another retrain of this model is running'));
        RETURN jsonb_build_object('action', 'skipped', 'reason', 'another retrain of this model is running');
    END IF;

    SELECT * INTO act FROM @extschema@.model_versions v WHERE v.model_name = retrain.model_name AND v.status = 'active';

    -- a version promoted less than baking_window ago is rolled back if it fails its drift check
    IF act.version IS NOT NULL AND NOT force AND (s->>'baking_window')::interval > interval '0'
       AND act.promoted_at + (s->>'baking_window')::interval > now() THEN
        rep := @extschema@.drift(model_name, win);
        SELECT e.from_version INTO prev FROM @extschema@.model_events e
         WHERE e.model_name = retrain.model_name AND e.to_version = act.version AND e.event IN ('promoted', 'rolled_back')
         ORDER BY e.event_id DESC LIMIT 1;
        IF rep->>'verdict' = 'drifted' AND prev IS NOT NULL THEN
            PERFORM set_config('cinematic_ml.audit_note',
                jsonb_build_object('reason', 'failed its drift check during the baking window',
                                   'check_id', rep->'check_id', 'reasons', rep->'reasons')::text, true);
            UPDATE @extschema@.model_versions v SET status = 'active'
             WHERE v.model_name = retrain.model_name AND v.version = prev;
            PERFORM set_config('cinematic_ml.audit_note', '', true);
            RETURN jsonb_build_object('action', 'rolled_back', 'from_version', act.version, 'to_version', prev,
                                      'reason', 'failed its drift check during the baking window',
                                      'check_id', rep->'check_id');
        END IF;
        INSERT INTO @extschema@.model_events (model_name, version, event, detail)
        VALUES (model_name, act.version, 'skipped',
                jsonb_build_object('reason', 'baking', 'check_id', rep->'check_id', 'verdict', rep->'verdict'));
        RETURN jsonb_build_object('action', 'skipped', 'reason', 'baking', 'check_id', rep->'check_id',
                                  'verdict', rep->'verdict');
    END IF;

    IF force THEN
        reason := 'forced';
    ELSIF act.version IS NULL THEN
        reason := 'no baseline';
    ELSE
        SELECT max(e.at) INTO last_tr FROM @extschema@.model_events e
         WHERE e.model_name = retrain.model_name AND e.event = 'trained';
        IF last_tr + (s->>'cooldown')::interval > now() THEN
            result := jsonb_build_object('action', 'skipped', 'reason', 'cooldown',
                                         'until', last_tr + (s->>'cooldown')::interval);
        ELSE
            rep := @extschema@.drift(model_name, win);
            IF (rep->>'n_current')::bigint < (s->>'min_new_rows')::bigint THEN
                result := jsonb_build_object('action', 'skipped', 'reason', 'too few rows in the window',
                                             'rows', rep->'n_current', 'min_new_rows', s->'min_new_rows');
            ELSIF rep->>'verdict' = 'insufficient_data' THEN
                result := jsonb_build_object('action', 'skipped', 'reason', 'insufficient data', 'details', rep->'reasons');
            ELSIF rep->>'verdict' = 'stable' THEN
                result := jsonb_build_object('action', 'skipped', 'reason', 'no drift');
            ELSE
                SELECT array_agg(d.verdict) INTO recent FROM (
                    SELECT dc.verdict FROM @extschema@.drift_checks dc
                     WHERE dc.model_name = retrain.model_name ORDER BY dc.check_id DESC
                     LIMIT (s->>'consecutive')::int) d;
                IF coalesce(array_length(recent, 1), 0) < (s->>'consecutive')::int
                   OR EXISTS (SELECT 1 FROM unnest(recent) r WHERE r <> 'drifted') THEN
                    result := jsonb_build_object('action', 'held', 'reason',
                        format('drifted, but %s consecutive drifted checks are required', s->>'consecutive'));
                ELSE
                    reason := 'drifted';
                END IF;
            END IF;
            result := coalesce(result, '{}') || jsonb_build_object('check_id', rep->'check_id', 'verdict', rep->'verdict');
        END IF;
        IF reason IS NULL THEN
            INSERT INTO @extschema@.model_events (model_name, version, event, detail)
            VALUES (model_name, act.version, CASE WHEN result->>'action' = 'held' THEN 'held' ELSE 'skipped' END, result);
            RETURN result;
        END IF;
    END IF;

    -- train a candidate; a failure leaves the registry as it was, recorded
    BEGIN
        ver := @extschema@._train(model_name, m.source_query, m.algorithm, m.params,
                                  CASE WHEN act.version IS NULL THEN 'active' ELSE 'candidate' END,
                                  jsonb_build_object('reason', reason, 'check_id', rep->'check_id'));
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO @extschema@.model_events (model_name, event, detail)
        VALUES (model_name, 'failed', jsonb_build_object('reason', reason, 'error', SQLERRM, 'sqlstate', SQLSTATE));
        RETURN jsonb_build_object('action', 'failed', 'reason', reason, 'error', SQLERRM, 'sqlstate', SQLSTATE);
    END;
    IF act.version IS NULL THEN
        RETURN jsonb_build_object('action', 'promoted', 'version', ver, 'reason', reason);
    END IF;

    -- quality gate: the candidate against the active version on the same recent data
    ev_a := @extschema@.evaluate(act.model, win);
    ev_c := @extschema@.evaluate((SELECT v.model FROM @extschema@.model_versions v
                                  WHERE v.model_name = retrain.model_name AND v.version = ver), win);
    IF (ev_c->>'n_zones')::int = 0 THEN
        failures := failures || 'the candidate has no zone'::text;
    END IF;
    IF (ev_c->>'noise_share')::float8 > (ev_a->>'noise_share')::float8 + (s->>'gate_noise_share')::float8 THEN
        failures := failures || format('noise share %s > %s + %s', ev_c->>'noise_share', ev_a->>'noise_share', s->>'gate_noise_share');
    END IF;
    IF (ev_c->>'silhouette')::float8 < (ev_a->>'silhouette')::float8 - (s->>'gate_silhouette')::float8 THEN
        failures := failures || format('silhouette %s < %s - %s', ev_c->>'silhouette', ev_a->>'silhouette', s->>'gate_silhouette');
    END IF;
    IF (ev_c->>'davies_bouldin')::float8 > (ev_a->>'davies_bouldin')::float8 * (1 + (s->>'gate_davies_bouldin')::float8) THEN
        failures := failures || format('Davies-Bouldin %s > %s x (1 + %s)', ev_c->>'davies_bouldin', ev_a->>'davies_bouldin', s->>'gate_davies_bouldin');
    END IF;
    IF m.algorithm = 'kmeans'
       AND (ev_c->>'inertia_per_point')::float8 > (ev_a->>'inertia_per_point')::float8 * (1 + (s->>'gate_inertia')::float8) THEN
        failures := failures || format('inertia per point %s > %s x (1 + %s)', ev_c->>'inertia_per_point', ev_a->>'inertia_per_point', s->>'gate_inertia');
    END IF;
    result := jsonb_build_object('version', ver, 'reason', reason, 'check_id', rep->'check_id',
                                 'gate', jsonb_build_object('active', ev_a, 'candidate', ev_c, 'failures', to_jsonb(failures)));

    IF array_length(failures, 1) > 0 THEN
        PERFORM set_config('cinematic_ml.audit_note', (result || '{"reason": "failed the quality gate"}')::text, true);
        UPDATE @extschema@.model_versions v SET status = 'rejected' WHERE v.model_name = retrain.model_name AND v.version = ver;
        PERFORM set_config('cinematic_ml.audit_note', '', true);
        RETURN jsonb_build_object('action', 'rejected') || result;
    ELSIF m.auto_promote THEN
        PERFORM set_config('cinematic_ml.audit_note', (result || '{"action": "auto-promoted"}')::text, true);
        UPDATE @extschema@.model_versions v SET status = 'active' WHERE v.model_name = retrain.model_name AND v.version = ver;
        PERFORM set_config('cinematic_ml.audit_note', '', true);
        RETURN jsonb_build_object('action', 'promoted') || result;
    END IF;
    INSERT INTO @extschema@.model_events (model_name, version, event, detail)
    VALUES (model_name, ver, 'held', result || '{"awaiting": "a DBA to promote the candidate"}');
    RETURN jsonb_build_object('action', 'candidate') || result;
END
$$;
COMMENT ON FUNCTION retrain(text, boolean) IS
    'Run the retrain policy: drift check, candidate, quality gate, promotion or hold; returns what it did';

GRANT SELECT ON drift_checks TO cinematic_ml_reader;
GRANT INSERT ON drift_checks TO cinematic_ml_admin;
REVOKE ALL ON FUNCTION drift(text, text, jsonb), check_drift(text), retrain(text, boolean),
              _drift_report(bytea, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION drift(text, text, jsonb), check_drift(text), retrain(text, boolean),
              _drift_report(bytea, text, jsonb) TO cinematic_ml_admin;

-- a reader sees the drift checks they ran; an admin sees all
ALTER TABLE drift_checks ENABLE ROW LEVEL SECURITY;
CREATE POLICY drift_checks_read ON drift_checks FOR SELECT
    USING (checked_by = current_user OR pg_has_role(current_user, 'cinematic_ml_admin', 'MEMBER'));
CREATE POLICY drift_checks_write ON drift_checks FOR INSERT
    WITH CHECK (pg_has_role(current_user, 'cinematic_ml_admin', 'MEMBER'));
-- ---------------------------------------------------------------------------
-- The export queue, schedules and run history (drained / run by the background worker)
-- ---------------------------------------------------------------------------

-- Every new version is queued for S3 in the transaction that creates it; a promotion queues
-- the model's latest.json. The worker (or export_now) uploads outside any transaction.
CREATE TABLE exports (
    model_name      text NOT NULL,
    version         int NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('version', 'latest')),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    queued_at       timestamptz NOT NULL DEFAULT now(),
    exported_at     timestamptz,
    http_status     int,
    etag            text,
    uri             text,
    last_error      text,
    PRIMARY KEY (model_name, version, kind)
);
COMMENT ON TABLE exports IS 'cinematic_ml: S3 export queue and status per version (kind version) and per promotion (kind latest)';
SELECT pg_catalog.pg_extension_config_dump('exports', '');

CREATE FUNCTION _enqueue_export() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.created_at < now() THEN
        RETURN NEW;             -- a restored row: its exports are restored too
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO @extschema@.exports (model_name, version, kind)
        VALUES (NEW.model_name, NEW.version, 'version') ON CONFLICT DO NOTHING;
    END IF;
    IF NEW.status = 'active' AND (TG_OP = 'INSERT' OR OLD.status <> 'active') THEN
        -- one latest.json per model: the newest promotion wins
        DELETE FROM @extschema@.exports
         WHERE model_name = NEW.model_name AND kind = 'latest' AND status IN ('pending', 'failed');
        INSERT INTO @extschema@.exports (model_name, version, kind)
        VALUES (NEW.model_name, NEW.version, 'latest')
        ON CONFLICT (model_name, version, kind)
        DO UPDATE SET status = 'pending', attempts = 0, next_attempt_at = now(), queued_at = now(), last_error = NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER enqueue_export
    AFTER INSERT OR UPDATE OF status ON model_versions
    FOR EACH ROW EXECUTE FUNCTION _enqueue_export();

-- register_model(): a model value (imported, or fitted elsewhere) as a new version
CREATE FUNCTION register_model(model_name text, model bytea, note jsonb DEFAULT '{}') RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    info jsonb := @extschema@.model_info(model);   -- validates the bytea
    m    @extschema@.models;
    ver  int;
    st   text;
BEGIN
    IF model_name !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid model name "%"', model_name USING ERRCODE = 'invalid_name';
    END IF;
    INSERT INTO @extschema@.models (model_name, algorithm, params, source_query)
    VALUES (model_name, info->>'algorithm', info->'params', '-- registered model value, no source query')
    ON CONFLICT ON CONSTRAINT models_pkey DO NOTHING;
    SELECT * INTO m FROM @extschema@.models t WHERE t.model_name = register_model.model_name FOR UPDATE;
    SELECT coalesce(max(v.version), 0) + 1 INTO ver FROM @extschema@.model_versions v WHERE v.model_name = register_model.model_name;
    st := CASE WHEN ver = 1 OR m.auto_promote THEN 'active' ELSE 'candidate' END;
    INSERT INTO @extschema@.model_events (model_name, version, event, detail)
    VALUES (model_name, ver, 'trained', note || jsonb_build_object('rows', info->'n_train', 'status', st,
                                                                  'algorithm', info->'algorithm', 'registered', true));
    INSERT INTO @extschema@.model_versions (model_name, version, model, sha256, metrics, n_rows, status)
    VALUES (model_name, ver, model, encode(sha256(model), 'hex'), info, (info->>'n_train')::bigint, st);
    RETURN ver;
END
$$;
COMMENT ON FUNCTION register_model(text, bytea, jsonb) IS
    'Register a model value (e.g. imported from S3, or from kmeans_fit/dbscan_fit) as a new version of a model';

GRANT SELECT ON exports TO cinematic_ml_reader;
GRANT INSERT, UPDATE, DELETE ON exports TO cinematic_ml_admin;
REVOKE ALL ON FUNCTION register_model(text, bytea, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION register_model(text, bytea, jsonb) TO cinematic_ml_admin;

-- ---------------------------------------------------------------------------
-- Schedules and their run history
-- ---------------------------------------------------------------------------

CREATE FUNCTION cron_next(expr text, after timestamptz DEFAULT now()) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'cron_next' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cron_next(text, timestamptz) IS
    'First minute after a time that a five-field cron expression matches (evaluated in UTC)';

CREATE FUNCTION _next_run(every interval, cron text, after timestamptz) RETURNS timestamptz
    LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN every IS NOT NULL THEN after + every ELSE @extschema@.cron_next(cron, after) END
$$;

CREATE TABLE schedules (
    model_name  text PRIMARY KEY REFERENCES models ON DELETE CASCADE,
    every       interval CHECK (every >= interval '1 second'),
    cron        text,
    enabled     boolean NOT NULL DEFAULT true,
    next_run_at timestamptz NOT NULL,
    last_run_at timestamptz,
    run_as      name NOT NULL DEFAULT current_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((every IS NULL) <> (cron IS NULL))
);
-- a schedule is checked when written, so the worker never meets a bad one
CREATE FUNCTION _schedules_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.cron IS NOT NULL THEN
        PERFORM @extschema@.cron_next(NEW.cron, now());
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER schedules_guard BEFORE INSERT OR UPDATE ON schedules
    FOR EACH ROW EXECUTE FUNCTION _schedules_guard();
COMMENT ON TABLE schedules IS 'cinematic_ml: when the background worker runs retrain() for a model (as run_as)';
SELECT pg_catalog.pg_extension_config_dump('schedules', '');

CREATE TABLE job_runs (
    run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_name  text NOT NULL,
    run_as      name NOT NULL,
    status      text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    pid         int,
    result      jsonb,
    error       text
);
CREATE INDEX job_runs_model ON job_runs (model_name, run_id);
COMMENT ON TABLE job_runs IS 'cinematic_ml: every scheduled retrain run: start, end, outcome, error';
SELECT pg_catalog.pg_extension_config_dump('job_runs', '');
SELECT pg_catalog.pg_extension_config_dump('job_runs_run_id_seq', '');

CREATE FUNCTION _worker_configured() RETURNS text
    AS 'MODULE_PATHNAME', 'worker_configured' LANGUAGE C STABLE;

-- schedule(): retrain a model every interval, or on a cron expression, in the background worker
CREATE FUNCTION schedule(model_name text, every interval DEFAULT NULL, cron text DEFAULT NULL,
                         enabled boolean DEFAULT true) RETURNS timestamptz
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    nxt  timestamptz;
    why  text := @extschema@._worker_configured();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.models m WHERE m.model_name = schedule.model_name) THEN
        RAISE EXCEPTION 'model "%" does not exist', model_name USING ERRCODE = 'undefined_object';
    END IF;
    IF (every IS NULL) = (cron IS NULL) THEN
        RAISE EXCEPTION 'give exactly one of every (an interval) or cron (an expression)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF every IS NOT NULL AND every < interval '1 second' THEN
        RAISE EXCEPTION 'every must be at least 1 second, not %', every USING ERRCODE = 'invalid_parameter_value';
    END IF;
    nxt := @extschema@._next_run(every, cron, now());
    INSERT INTO @extschema@.schedules AS s (model_name, every, cron, enabled, next_run_at, run_as)
    VALUES (model_name, every, cron, enabled, nxt, current_user)
    ON CONFLICT ON CONSTRAINT schedules_pkey DO UPDATE
       SET every = EXCLUDED.every, cron = EXCLUDED.cron, enabled = EXCLUDED.enabled,
           next_run_at = EXCLUDED.next_run_at, run_as = EXCLUDED.run_as;
    IF why IS NOT NULL THEN
        RAISE WARNING 'the schedule is stored, but no background worker will run it: %', why
            USING HINT = 'Add cinematic_ml to shared_preload_libraries and this database to cinematic_ml.database, then restart; or call retrain() from pg_cron.';
    END IF;
    RETURN nxt;
END
$$;
COMMENT ON FUNCTION schedule(text, interval, text, boolean) IS
    'Retrain a model every interval or on a cron expression (UTC) in the background worker; returns the next run time';

CREATE FUNCTION unschedule(model_name text) RETURNS boolean
LANGUAGE sql AS $$
    WITH d AS (DELETE FROM @extschema@.schedules s WHERE s.model_name = unschedule.model_name RETURNING 1)
    SELECT count(*) > 0 FROM d
$$;
COMMENT ON FUNCTION unschedule(text) IS 'Remove a model''s schedule; false when it had none';

CREATE FUNCTION _export_uri(model_name text, version int) RETURNS text
    LANGUAGE sql STABLE AS $$
    SELECT format('s3://%s/%s%s/v%s.cml', current_setting('cinematic_ml.s3_bucket', true),
                  coalesce(nullif(current_setting('cinematic_ml.s3_prefix', true), '') || '/', ''),
                  model_name, version)
$$;

GRANT SELECT ON schedules, job_runs TO cinematic_ml_reader;
GRANT INSERT, UPDATE, DELETE ON schedules TO cinematic_ml_admin;
REVOKE ALL ON FUNCTION schedule(text, interval, text, boolean), unschedule(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION schedule(text, interval, text, boolean), unschedule(text) TO cinematic_ml_admin;

-- a reader sees the runs of schedules they own; an admin sees all
ALTER TABLE job_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_runs_read ON job_runs FOR SELECT
    USING (run_as = current_user OR pg_has_role(current_user, 'cinematic_ml_admin', 'MEMBER'));
-- ---------------------------------------------------------------------------
-- S3 export and import (settings: cinematic_ml.s3_*; credentials from the server's
-- environment or the superuser-only cinematic_ml.s3_credentials_file, never a GUC value)
-- ---------------------------------------------------------------------------

-- export_now(): an operator's synchronous export of one version (+ latest.json when active)
CREATE FUNCTION export_now(model_name text, version int) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'export_now' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION export_now(text, int) IS
    'Upload one model version to S3 now (PREFIX/MODEL/vN.cml and vN.zones.json, plus latest.json when it is the active version); records the outcome in exports and model_events and returns it';

-- _s3_get(): one object, through the configured endpoint and credentials
CREATE FUNCTION _s3_get(uri text) RETURNS bytea
    AS 'MODULE_PATHNAME', 's3_get' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION _s3_get(text) IS
    'Read s3://BUCKET/KEY through the configured endpoint and credentials (non-superusers: the configured bucket only)';

-- import_model(): a model exported to S3 (by this or another database) as a new version
CREATE FUNCTION import_model(uri text, model_name text DEFAULT NULL) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    -- s3://BUCKET/[PREFIX/]MODEL/FILE: the model name defaults to the segment before the file
    parts text[] := regexp_match(uri, '^s3://[^/]+/(?:.*/)?([^/]+)/[^/]+$');
    name  text := coalesce(import_model.model_name, parts[1]);
BEGIN
    IF uri IS NULL THEN
        RAISE EXCEPTION 'the URI must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF uri !~ '^s3://[^/]+/.' THEN
        RAISE EXCEPTION 'invalid S3 URI "%"', uri
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use s3://BUCKET/PREFIX/MODEL/vN.cml.';
    END IF;
    IF name IS NULL THEN
        RAISE EXCEPTION 'cannot tell the model name from "%"', uri
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the model name as the second argument.';
    END IF;
    -- register_model() validates the bytes (a damaged or foreign object is an error)
    RETURN @extschema@.register_model(name, @extschema@._s3_get(uri),
                                      jsonb_build_object('imported_from', uri));
END
$$;
COMMENT ON FUNCTION import_model(text, text) IS
    'Register a model exported to S3 (s3://BUCKET/PREFIX/MODEL/vN.cml) as a new version; the name defaults to MODEL';

REVOKE ALL ON FUNCTION export_now(text, int), _s3_get(text), import_model(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION export_now(text, int), _s3_get(text), import_model(text, text) TO cinematic_ml_admin;
-- ---------------------------------------------------------------------------
-- Views for BI tools and operators
-- ---------------------------------------------------------------------------

CREATE VIEW active_models WITH (security_invoker = true) AS
SELECT m.model_name, m.algorithm, v.version, v.promoted_at, v.promoted_by, v.created_at AS trained_at,
       v.created_by AS trained_by, v.n_rows, (v.metrics->>'n_zones')::int AS n_zones,
       (v.metrics->>'noise_share')::float8 AS noise_share, (v.metrics->>'silhouette')::float8 AS silhouette,
       (v.metrics->>'davies_bouldin')::float8 AS davies_bouldin, m.auto_promote,
       d.checked_at AS last_drift_check, d.verdict AS last_drift_verdict,
       e.status AS last_export_status, e.exported_at AS last_exported_at
  FROM models m
  JOIN model_versions v ON v.model_name = m.model_name AND v.status = 'active'
  LEFT JOIN LATERAL (SELECT dc.checked_at, dc.verdict FROM drift_checks dc
                      WHERE dc.model_name = m.model_name ORDER BY dc.check_id DESC LIMIT 1) d ON true
  LEFT JOIN exports e ON e.model_name = v.model_name AND e.version = v.version AND e.kind = 'version';
COMMENT ON VIEW active_models IS 'cinematic_ml: one row per model with an active version: quality, last drift check, last export';

CREATE VIEW model_history AS
SELECT v.model_name, v.version, v.status, v.created_at AS trained_at, v.created_by AS trained_by,
       v.promoted_at, v.promoted_by, v.n_rows, v.sha256, v.metrics - 'zones' AS metrics,
       (SELECT e.detail FROM model_events e WHERE e.model_name = v.model_name AND e.version = v.version
           AND e.event = 'trained' ORDER BY e.event_id LIMIT 1) AS training
  FROM model_versions v;
COMMENT ON VIEW model_history IS 'cinematic_ml: every version with its status, metrics, who trained and promoted it, when';

CREATE VIEW drift_history WITH (security_invoker = true) AS
SELECT d.check_id, d.model_name, d.baseline_version, d.checked_at, d.checked_by, d.n_points, d.verdict, d.reasons,
       (d.report->'seed_rule'->'rel_change'->>'n_zones')::float8 AS rel_n_zones,
       (d.report->'seed_rule'->'rel_change'->>'mean_points_per_zone')::float8 AS rel_mean_points,
       (d.report->'seed_rule'->'rel_change'->>'mean_zone_radius_m')::float8 AS rel_mean_radius,
       (d.report->'share_drift'->>'p_value')::float8 AS p_value,
       (d.report->'share_drift'->>'psi')::float8 AS psi,
       (d.report->'share_drift'->>'js_distance')::float8 AS js_distance,
       (d.report->'geometry'->>'max_centroid_shift_m')::float8 AS max_centroid_shift_m
  FROM drift_checks d;
COMMENT ON VIEW drift_history IS 'cinematic_ml: every drift check with its headline statistics and verdict';

CREATE VIEW export_status AS
SELECT e.model_name, e.version, e.kind, e.status, e.attempts, e.queued_at, e.exported_at, e.next_attempt_at,
       e.http_status, e.etag, e.uri, e.last_error
  FROM exports e;
COMMENT ON VIEW export_status IS 'cinematic_ml: S3 export of every version and promotion: status, attempts, errors';

-- A plain view of a table plus its predictions: it follows promotions with no refresh
CREATE FUNCTION create_prediction_view(view_name text, source regclass, lat_column name, lon_column name,
                                       model_name text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    cols text[];
    sql  text;
BEGIN
    IF view_name IS NULL OR source IS NULL OR lat_column IS NULL OR lon_column IS NULL THEN
        RAISE EXCEPTION 'view_name, source, lat_column and lon_column must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT array_agg(a.attname::text) INTO cols FROM pg_attribute a
     WHERE a.attrelid = source AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT (lat_column = ANY (cols)) THEN
        RAISE EXCEPTION 'column "%" does not exist in %', lat_column, source USING ERRCODE = 'undefined_column';
    END IF;
    IF NOT (lon_column = ANY (cols)) THEN
        RAISE EXCEPTION 'column "%" does not exist in %', lon_column, source USING ERRCODE = 'undefined_column';
    END IF;
    IF 'cluster' = ANY (cols) OR 'is_hotspot' = ANY (cols) OR 'distance_m' = ANY (cols) OR 'model_version' = ANY (cols) THEN
        RAISE EXCEPTION '% already has a column named cluster, is_hotspot, distance_m or model_version', source
            USING ERRCODE = 'duplicate_column';
    END IF;
    IF model_name IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @extschema@.models m WHERE m.model_name = create_prediction_view.model_name) THEN
        RAISE EXCEPTION 'model "%" does not exist', model_name USING ERRCODE = 'undefined_object';
    END IF;
    sql := format('CREATE VIEW %s AS SELECT s.*, p.cluster, p.is_hotspot, p.distance_m, p.model_version '
                  'FROM %s s LEFT JOIN LATERAL @extschema@.predict(s.%I::float8, s.%I::float8%s) p ON true',
                  view_name, source, lat_column, lon_column,
                  CASE WHEN model_name IS NULL THEN '' ELSE format(', %L', model_name) END);
    EXECUTE sql;
    RETURN sql;
END
$$;
COMMENT ON FUNCTION create_prediction_view(text, regclass, name, name, text) IS
    'Create a plain view source.* + cluster, is_hotspot, distance_m, model_version that follows promotions';

GRANT SELECT ON active_models, model_history, drift_history, export_status TO cinematic_ml_reader;
-- ---------------------------------------------------------------------------
-- Statistics (shared memory, with shared_preload_libraries), Prometheus metrics, health
-- ---------------------------------------------------------------------------

CREATE FUNCTION stats_available() RETURNS boolean
    AS 'MODULE_PATHNAME', 'stats_available' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION stats_available() IS 'True when the statistics are kept (cinematic_ml in shared_preload_libraries)';

CREATE FUNCTION _stats_rows(
    OUT model_name text, OUT predictions bigint, OUT predictions_challenger bigint, OUT model_loads bigint,
    OUT cache_hits bigint, OUT trainings bigint, OUT training_ms bigint, OUT promotions bigint,
    OUT rollbacks bigint, OUT drift_checks bigint, OUT drift_drifted bigint, OUT drift_insufficient bigint,
    OUT exports_succeeded bigint, OUT exports_failed bigint, OUT retrains_failed bigint,
    OUT last_load_at timestamptz, OUT last_load_version int, OUT stats_reset_at timestamptz)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'stats_rows' LANGUAGE C VOLATILE;

-- without the preload: one row per model that says what is missing, instead of an error
CREATE FUNCTION stats(
    OUT model_name text, OUT predictions bigint, OUT predictions_challenger bigint, OUT model_loads bigint,
    OUT cache_hits bigint, OUT trainings bigint, OUT training_ms bigint, OUT promotions bigint,
    OUT rollbacks bigint, OUT drift_checks bigint, OUT drift_drifted bigint, OUT drift_insufficient bigint,
    OUT exports_succeeded bigint, OUT exports_failed bigint, OUT retrains_failed bigint,
    OUT last_load_at timestamptz, OUT last_load_version int, OUT stats_reset_at timestamptz, OUT note text)
RETURNS SETOF record LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF @extschema@.stats_available() THEN
        RETURN QUERY SELECT s.*, NULL::text FROM @extschema@._stats_rows() s;
    ELSE
        RETURN QUERY SELECT m.model_name, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
                            NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint,
                            NULL::bigint, NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::int, NULL::timestamptz,
                            'statistics need cinematic_ml in shared_preload_libraries'::text
                       FROM @extschema@.models m;
    END IF;
END
$$;
COMMENT ON FUNCTION stats() IS
    'Per-model counters: predictions, model loads, cache hits, trainings, drift checks, exports (needs the preload)';
CREATE VIEW stats AS SELECT * FROM stats();
COMMENT ON VIEW stats IS 'cinematic_ml: per-model counters since the last reset, in the manner of pg_stat_statements';

CREATE FUNCTION stats_reset(model_name text DEFAULT NULL) RETURNS void
    AS 'MODULE_PATHNAME', 'stats_reset' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION stats_reset(text) IS 'Zero the counters of one model, or of all';

CREATE FUNCTION metrics() RETURNS text
    AS 'MODULE_PATHNAME', 'stats_metrics' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION metrics() IS 'The counters in the Prometheus text exposition format';

CREATE FUNCTION _stats_event() RETURNS trigger
    AS 'MODULE_PATHNAME', 'stats_event_trigger' LANGUAGE C;
CREATE TRIGGER stats_event AFTER INSERT ON model_events FOR EACH ROW EXECUTE FUNCTION _stats_event();
CREATE TRIGGER stats_event AFTER INSERT ON drift_checks FOR EACH ROW EXECUTE FUNCTION _stats_event();

-- health(): the /ready of the original API, one row per model
CREATE FUNCTION health(OUT model_name text, OUT active_version int, OUT model_loadable boolean,
                       OUT load_error text, OUT worker_running boolean, OUT last_export_status text,
                       OUT last_drift_verdict text, OUT ready boolean)
RETURNS SETOF record LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m record;
    w boolean := EXISTS (SELECT 1 FROM pg_stat_activity a
                          WHERE a.backend_type = 'cinematic_ml worker' AND a.datname = current_database());
BEGIN
    FOR m IN SELECT t.model_name, v.version, v.model
               FROM @extschema@.models t
               LEFT JOIN @extschema@.model_versions v ON v.model_name = t.model_name AND v.status = 'active'
              ORDER BY t.model_name LOOP
        model_name := m.model_name;
        active_version := m.version;
        load_error := NULL;
        model_loadable := false;
        IF m.model IS NULL THEN
            load_error := 'no active version';
        ELSE
            BEGIN
                PERFORM @extschema@.model_info(m.model);
                model_loadable := true;
            EXCEPTION WHEN OTHERS THEN
                load_error := SQLERRM;
            END;
        END IF;
        worker_running := w;
        SELECT e.status INTO last_export_status FROM @extschema@.exports e
         WHERE e.model_name = m.model_name ORDER BY e.queued_at DESC LIMIT 1;
        SELECT d.verdict INTO last_drift_verdict FROM @extschema@.drift_checks d
         WHERE d.model_name = m.model_name ORDER BY d.check_id DESC LIMIT 1;
        ready := model_loadable;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION health() IS
    'Per model: active version, loadable, worker running, last export and drift verdict, ready to serve';

GRANT SELECT ON stats TO cinematic_ml_reader;
REVOKE ALL ON FUNCTION stats_reset(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stats_reset(text) TO cinematic_ml_admin;
-- ---------------------------------------------------------------------------
-- Champion / challenger: named aliases per model, audited, and routed predictions
-- ---------------------------------------------------------------------------

CREATE TABLE model_aliases (
    model_name text NOT NULL,
    alias      text NOT NULL CHECK (alias ~ '^[a-z][a-z0-9_-]{0,62}$'),
    version    int NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by name NOT NULL DEFAULT current_user,
    PRIMARY KEY (model_name, alias),
    FOREIGN KEY (model_name, version) REFERENCES model_versions (model_name, version)
);
COMMENT ON TABLE model_aliases IS
    'cinematic_ml: named pointers to versions (champion, challenger, ...); move one with a plain UPDATE';

CREATE TABLE alias_history (
    change_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_name   text NOT NULL,
    alias        text NOT NULL,
    from_version int,
    to_version   int,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    by_user      name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE alias_history IS 'cinematic_ml: append-only history of every alias move';
SELECT pg_catalog.pg_extension_config_dump('model_aliases', '');
SELECT pg_catalog.pg_extension_config_dump('alias_history', '');
SELECT pg_catalog.pg_extension_config_dump('alias_history_change_id_seq', '');

CREATE FUNCTION _alias_audit() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.updated_at < now() THEN
        RETURN NEW;             -- a restored row: its history is restored too
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.model_name <> OLD.model_name OR NEW.alias <> OLD.alias) THEN
        RAISE EXCEPTION 'an alias cannot be renamed; delete it and create another' USING ERRCODE = 'feature_not_supported';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
        NEW.updated_by := current_user;
    END IF;
    INSERT INTO @extschema@.alias_history (model_name, alias, from_version, to_version)
    VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.model_name ELSE NEW.model_name END,
            CASE WHEN TG_OP = 'DELETE' THEN OLD.alias ELSE NEW.alias END,
            CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.version END,
            CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.version END);
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER alias_audit BEFORE INSERT OR UPDATE OR DELETE ON model_aliases
    FOR EACH ROW EXECUTE FUNCTION _alias_audit();
CREATE FUNCTION _alias_history_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alias_history is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON alias_history
    FOR EACH STATEMENT EXECUTE FUNCTION _alias_history_append_only();
-- alias moves and model settings (challenger_share) reach every backend's cache at commit
CREATE TRIGGER registry_invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON model_aliases
    FOR EACH STATEMENT EXECUTE FUNCTION _registry_invalidate();
CREATE TRIGGER registry_invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON models
    FOR EACH STATEMENT EXECUTE FUNCTION _registry_invalidate();

CREATE FUNCTION predict(lat float8, lon float8, model_name text, routing_key text,
                        OUT cluster int, OUT is_hotspot boolean, OUT distance_m float8,
                        OUT zone_radius_m float8, OUT model_name text, OUT model_version int)
    AS 'MODULE_PATHNAME', 'predict_routed' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION predict(float8, float8, text, text) IS
    'Champion / challenger: a stable hash of routing_key sends settings.challenger_share of keys to the challenger alias, the rest to the champion alias (default: the active version)';

CREATE FUNCTION _compare_models(a bytea, b bytea, query text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'compare_models' LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- compare_versions(): how two versions assign a query's points
CREATE FUNCTION compare_versions(model_name text, query text, version_a int DEFAULT NULL, version_b int DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    va int := coalesce(version_a, (SELECT a.version FROM @extschema@.model_aliases a
                                    WHERE a.model_name = compare_versions.model_name AND a.alias = 'champion'),
                                  (SELECT v.version FROM @extschema@.model_versions v
                                    WHERE v.model_name = compare_versions.model_name AND v.status = 'active'));
    vb int := coalesce(version_b, (SELECT a.version FROM @extschema@.model_aliases a
                                    WHERE a.model_name = compare_versions.model_name AND a.alias = 'challenger'));
BEGIN
    IF va IS NULL OR vb IS NULL THEN
        RAISE EXCEPTION 'model "%" needs two versions to compare (champion or active, and challenger)', model_name
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Give version_a and version_b, or set the aliases.';
    END IF;
    RETURN jsonb_build_object('model_name', model_name, 'version_a', va, 'version_b', vb) ||
           @extschema@._compare_models(@extschema@._model_version(model_name, va),
                                       @extschema@._model_version(model_name, vb), query);
END
$$;
COMMENT ON FUNCTION compare_versions(text, text, int, int) IS
    'Compare two versions'' zone assignments on a query''s points: agreement, adjusted Rand index, hotspot agreement';

GRANT SELECT ON model_aliases, alias_history TO cinematic_ml_reader;
GRANT INSERT, UPDATE, DELETE ON model_aliases TO cinematic_ml_admin;
