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
