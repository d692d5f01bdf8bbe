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
