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
