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
