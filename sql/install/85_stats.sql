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
