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
