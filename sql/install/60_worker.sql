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

