-- Model format v1: describe, validate, refuse damage
\set SHOW_CONTEXT never
SET extra_float_digits = 0;

CREATE TABLE pts AS
SELECT i AS id,
       48.85 + (i % 4) * 0.01 + ((i * 7919) % 100) * 0.00001 AS lat,
       2.35 + (i % 4) * 0.01 + ((i * 104729) % 100) * 0.00001 AS lon
  FROM generate_series(1, 400) i;

CREATE TABLE m AS SELECT cinematic_ml.kmeans_fit(lat, lon, 4, '{"seed": 7}') AS model FROM pts;

-- the header: magic, format version 1, algorithm 1
SELECT substring(model FROM 1 FOR 4) AS magic,
       get_byte(model, 4) AS version, get_byte(model, 6) AS algorithm,
       length(model) AS bytes
  FROM m;

SELECT info->>'format_version' AS format_version, info->>'algorithm' AS algorithm,
       info->'params' AS params, info->>'n_train' AS n_train, info->>'n_zones' AS n_zones,
       jsonb_array_length(info->'zones') AS zones
  FROM (SELECT cinematic_ml.model_info(model) AS info FROM m) s;

-- zone sizes add up to the training rows
SELECT sum((z->>'n_points')::int) FROM m, jsonb_array_elements(cinematic_ml.model_info(model)->'zones') z;

-- not a model
SELECT cinematic_ml.model_info('\x'::bytea);
SELECT cinematic_ml.model_info('hello world'::bytea);
-- truncated
SELECT cinematic_ml.model_info(substring(model FROM 1 FOR 30)) FROM m;
SELECT cinematic_ml.model_info(substring(model FROM 1 FOR length(model) - 1)) FROM m;
-- one flipped byte in the body: the checksum catches it (the values vary with the model: SQLSTATE only)
\set VERBOSITY sqlstate
SELECT cinematic_ml.model_info(set_byte(model, 100, get_byte(model, 100) # 1)) FROM m;
\set VERBOSITY default
-- a newer format than this library knows
SELECT cinematic_ml.model_info(set_byte(model, 4, 2)) FROM m;
-- format version 0, unknown algorithm, non-zero reserved field
SELECT cinematic_ml.model_info(set_byte(model, 4, 0)) FROM m;
SELECT cinematic_ml.model_info(set_byte(model, 6, 9)) FROM m;
SELECT cinematic_ml.model_info(set_byte(model, 8, 1)) FROM m;
-- a wrong length field
SELECT cinematic_ml.model_info(set_byte(model, 12, get_byte(model, 12) # 1)) FROM m;
-- extra bytes at the end
SELECT cinematic_ml.model_info(model || '\x00'::bytea) FROM m;
-- predict refuses damage the same way
\set VERBOSITY sqlstate
SELECT cinematic_ml.predict_cluster(set_byte(model, 100, get_byte(model, 100) # 1), 48.85, 2.35) FROM m;
\set VERBOSITY default
-- a damaged model loses nothing: the original still works
SELECT cinematic_ml.predict_cluster(model, 48.85, 2.35) >= 0 AS ok FROM m;
DROP TABLE pts, m;
