-- ---------------------------------------------------------------------------
-- Models as values: describe, fit (aggregates, window functions, queries)
-- ---------------------------------------------------------------------------

CREATE FUNCTION model_info(model bytea) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'model_info'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION model_info(bytea) IS
    'Describe a cinematic_ml model: format, algorithm, parameters, training summary, zones';

CREATE FUNCTION fit(source_query text, algorithm text, params jsonb) RETURNS bytea
    AS 'MODULE_PATHNAME', 'fit'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION fit(text, text, jsonb) IS
    'Fit a model on the (lat, lon) rows of a query run with the caller''s rights, without registering it';

-- shared state functions of the fitting aggregates
CREATE FUNCTION _points_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'cml_points_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION _points_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'cml_points_serialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION _points_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'cml_points_deserialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- k-means
CREATE FUNCTION _kmeans_fit_trans(internal, float8, float8, int, jsonb) RETURNS internal
    AS 'MODULE_PATHNAME', 'kmeans_fit_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION _kmeans_fit_trans(internal, float8, float8, int) RETURNS internal
    AS 'MODULE_PATHNAME', 'kmeans_fit_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION _kmeans_fit_final(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'kmeans_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE kmeans_fit(lat float8, lon float8, k int, options jsonb) (
    SFUNC = _kmeans_fit_trans, STYPE = internal, FINALFUNC = _kmeans_fit_final,
    COMBINEFUNC = _points_combine, SERIALFUNC = _points_serialize,
    DESERIALFUNC = _points_deserialize, PARALLEL = SAFE
);
CREATE AGGREGATE kmeans_fit(lat float8, lon float8, k int) (
    SFUNC = _kmeans_fit_trans, STYPE = internal, FINALFUNC = _kmeans_fit_final,
    COMBINEFUNC = _points_combine, SERIALFUNC = _points_serialize,
    DESERIALFUNC = _points_deserialize, PARALLEL = SAFE
);
COMMENT ON AGGREGATE kmeans_fit(float8, float8, int, jsonb) IS
    'Fit k-means on the group''s points; options: seed, n_init, max_iter, tol';
COMMENT ON AGGREGATE kmeans_fit(float8, float8, int) IS
    'Fit k-means on the group''s points with default options';

CREATE FUNCTION cluster_kmeans(lat float8, lon float8, k int, options jsonb) RETURNS int
    AS 'MODULE_PATHNAME', 'cluster_kmeans' LANGUAGE C IMMUTABLE WINDOW PARALLEL SAFE;
CREATE FUNCTION cluster_kmeans(lat float8, lon float8, k int) RETURNS int
    AS 'MODULE_PATHNAME', 'cluster_kmeans' LANGUAGE C IMMUTABLE WINDOW PARALLEL SAFE;
COMMENT ON FUNCTION cluster_kmeans(float8, float8, int, jsonb) IS
    'Window function: k-means zone of each row of the window partition (NULL for NULL coordinates)';
COMMENT ON FUNCTION cluster_kmeans(float8, float8, int) IS
    'Window function: k-means zone of each row of the window partition (NULL for NULL coordinates)';

-- DBSCAN
CREATE FUNCTION _dbscan_fit_trans(internal, float8, float8, float8, int) RETURNS internal
    AS 'MODULE_PATHNAME', 'dbscan_fit_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION _dbscan_fit_final(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'dbscan_fit_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE dbscan_fit(lat float8, lon float8, eps_m float8, min_points int) (
    SFUNC = _dbscan_fit_trans, STYPE = internal, FINALFUNC = _dbscan_fit_final,
    COMBINEFUNC = _points_combine, SERIALFUNC = _points_serialize,
    DESERIALFUNC = _points_deserialize, PARALLEL = SAFE
);
COMMENT ON AGGREGATE dbscan_fit(float8, float8, float8, int) IS
    'Fit DBSCAN (haversine metres, min_points counts the point itself) on the group''s points';

CREATE FUNCTION cluster_dbscan(lat float8, lon float8, eps_m float8, min_points int) RETURNS int
    AS 'MODULE_PATHNAME', 'cluster_dbscan' LANGUAGE C IMMUTABLE WINDOW PARALLEL SAFE;
COMMENT ON FUNCTION cluster_dbscan(float8, float8, float8, int) IS
    'Window function: DBSCAN zone of each row of the window partition, -1 for noise';
