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
