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
