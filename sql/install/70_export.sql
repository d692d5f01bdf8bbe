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
