-- cinematic_ml end-to-end demo (run by scripts/demo.sh).
--
--   psql -X -v ON_ERROR_STOP=1 -v csv=/abs/path/paris_filming_locations.csv -f scripts/demo.sql
--
-- With a non-empty :csv the real "Lieux de tournage a Paris" file is loaded
-- (header + 12 columns: location_id, year, shoot_type, title, director, producer,
-- address, postal_code, start_date, end_date, lat, lon) through psql's \copy, so
-- the file is read by psql, not by the server. Without it, ~15,000 Paris-like
-- points are generated in plain SQL (deterministic: setseed(0.42)).
--
-- The extension calls are at the end, in one block that is easy to edit.

\set ON_ERROR_STOP on
\set QUIET on
\pset footer off
\if :{?csv}
\else
\set csv ''
\endif

\echo
\echo '=== 1. The data: one row per film shoot, with its year and location ==='
SET client_min_messages = warning;
DROP TABLE IF EXISTS shoots;
RESET client_min_messages;
CREATE TABLE shoots (
    id   bigserial PRIMARY KEY,
    year int,
    lat  float8,
    lon  float8
);

SELECT (:'csv' <> '') AS have_csv \gset
\if :have_csv
\echo Loading the real data set from :csv
CREATE TEMP TABLE shoots_csv (
    location_id text, year text, shoot_type text, title text, director text,
    producer text, address text, postal_code text, start_date text, end_date text,
    lat text, lon text
);
-- \copy takes the rest of its line verbatim (no :variables), so build the command.
\set copy_cmd '\\copy shoots_csv FROM ' :'csv' ' WITH (FORMAT csv, HEADER true)'
:copy_cmd

INSERT INTO shoots (year, lat, lon)
SELECT year::int, lat::float8, lon::float8
FROM shoots_csv
WHERE year ~ '^\s*[0-9]{4}\s*$'
  AND lat ~ '^\s*-?[0-9]+(\.[0-9]+)?\s*$'
  AND lon ~ '^\s*-?[0-9]+(\.[0-9]+)?\s*$'
ORDER BY year::int, location_id;

SELECT count(*) AS csv_rows,
       count(*) - (SELECT count(*) FROM shoots) AS rows_skipped_no_coordinates
FROM shoots_csv;
\else
\echo 'No CSV given: generating ~15,000 synthetic Paris shoots (20 landmark hotspots + 20% background)'
SELECT setseed(0.42) \g /dev/null

-- Hotspots: real landmark coordinates, a spread (sigma, metres) and a weight for
-- 2016-2019 and for 2020-2023, so that the later years drift east (canal, Belleville).
CREATE TEMP TABLE landmarks (id int, name text, lat float8, lon float8,
                             sigma_m float8, w_early int, w_late int);
INSERT INTO landmarks VALUES
    ( 1, 'Louvre',                  48.8606, 2.3376, 120, 10,  8),
    ( 2, 'Eiffel Tower',            48.8584, 2.2945, 150,  9,  7),
    ( 3, 'Notre-Dame',              48.8530, 2.3499,  90,  8,  5),
    ( 4, 'Montmartre / Sacre-Coeur',48.8867, 2.3431, 110,  9,  9),
    ( 5, 'Opera Garnier',           48.8720, 2.3316,  80,  6,  5),
    ( 6, 'Bastille',                48.8532, 2.3692,  70,  5,  5),
    ( 7, 'Republique',              48.8674, 2.3636,  60,  5,  6),
    ( 8, 'Canal Saint-Martin',      48.8722, 2.3649,  80,  3,  9),
    ( 9, 'Marais / Place des Vosges',48.8556,2.3655, 100,  6,  6),
    (10, 'Belleville',              48.8722, 2.3767, 100,  2,  6),
    (11, 'Buttes-Chaumont',         48.8809, 2.3828, 140,  3,  5),
    (12, 'Bercy',                   48.8358, 2.3825, 120,  3,  3),
    (13, 'Invalides',               48.8560, 2.3125, 100,  4,  3),
    (14, 'Arc de Triomphe',         48.8738, 2.2950, 100,  5,  4),
    (15, 'Pont Neuf',               48.8570, 2.3413,  50,  5,  4),
    (16, 'Saint-Germain-des-Pres',  48.8540, 2.3336,  90,  6,  5),
    (17, 'Pigalle',                 48.8820, 2.3376,  70,  4,  5),
    (18, 'Gare du Nord',            48.8809, 2.3553,  60,  3,  3),
    (19, 'Montparnasse',            48.8421, 2.3219, 100,  4,  3),
    (20, 'Jardin du Luxembourg',    48.8462, 2.3372, 120,  5,  4);

-- Each landmark's slice [lo, hi) of [0, 1) per era, proportional to its weight.
CREATE TEMP TABLE landmark_cdf AS
SELECT l.id, l.lat, l.lon, l.sigma_m, e.era,
       (sum(e.w) OVER w - e.w)::float8 / sum(e.w) OVER (PARTITION BY e.era) AS lo,
       (sum(e.w) OVER w)::float8 / sum(e.w) OVER (PARTITION BY e.era) AS hi
FROM landmarks l
CROSS JOIN LATERAL (VALUES ('early', l.w_early), ('late', l.w_late)) AS e(era, w)
WINDOW w AS (PARTITION BY e.era ORDER BY l.id);

-- All the random draws, in a fixed order: year, background-or-hotspot, which
-- hotspot, and two uniforms for Box-Muller (or for the background position).
CREATE TEMP TABLE draws AS
SELECT n,
       2016 + floor(random() * 8)::int AS year,
       random() AS u_kind,
       random() AS u_pick,
       random() AS u1,
       random() AS u2
FROM generate_series(1, 15000) AS n;

INSERT INTO shoots (year, lat, lon)
SELECT d.year,
       CASE WHEN d.u_kind < 0.20
            THEN 48.815 + d.u1 * (48.902 - 48.815)                     -- background, uniform
            ELSE c.lat + bm.z1 * c.sigma_m / 111320.0 END,              -- metres -> degrees
       CASE WHEN d.u_kind < 0.20
            THEN 2.25 + d.u2 * (2.42 - 2.25)
            ELSE c.lon + bm.z2 * c.sigma_m / (111320.0 * cos(radians(c.lat))) END
FROM draws d
JOIN landmark_cdf c
  ON c.era = CASE WHEN d.year <= 2019 THEN 'early' ELSE 'late' END
 AND d.u_pick >= c.lo AND d.u_pick < c.hi
CROSS JOIN LATERAL (                                                    -- Box-Muller
    SELECT sqrt(-2 * ln(1 - d.u1)) * cos(2 * pi() * d.u2) AS z1,
           sqrt(-2 * ln(1 - d.u1)) * sin(2 * pi() * d.u2) AS z2) AS bm
ORDER BY d.n;
\endif

ANALYZE shoots;
SELECT count(*) AS shoots, min(year) AS first_year, max(year) AS last_year,
       round(min(lat)::numeric, 4) AS min_lat, round(max(lat)::numeric, 4) AS max_lat,
       round(min(lon)::numeric, 4) AS min_lon, round(max(lon)::numeric, 4) AS max_lon
FROM shoots;
SELECT year, count(*) AS shoots FROM shoots GROUP BY year ORDER BY year;

-- ------------------------------------------------------------------------------
-- The extension. Every statement below is echoed before its result.
-- ------------------------------------------------------------------------------
\set ECHO queries

\echo
\echo '=== 2. Train version 1 of model "paris" on 2016-2019 (k-means, 16 zones) ==='
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots WHERE year <= 2019', 'kmeans', '{"k":16,"seed":42}');

\echo
\echo '=== 3. Train version 2 on all years, 2016-2023 ==='
SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'kmeans', '{"k":16,"seed":42}');

\echo
\echo '=== 4. A DBA promotes version 2 with a plain UPDATE (the previous active version is archived) ==='
UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'paris' AND version = 2;  -- promote
SELECT model_name, version, status FROM cinematic_ml.model_versions WHERE model_name = 'paris' ORDER BY version;

\echo
\echo '=== 5. The audit log: every training and promotion ==='
SELECT * FROM cinematic_ml.model_events ORDER BY event_id;

\echo
\echo '=== 6. Is the Louvre a cinematic hotspot? (active model, no model argument) ==='
SELECT * FROM cinematic_ml.predict(48.8606, 2.3376);
SELECT cinematic_ml.predict_cluster(48.8606, 2.3376);

\echo
\echo '=== 7. Label every shoot in one table scan: the busiest zones ==='
\timing on
SELECT cinematic_ml.predict_cluster(lat, lon) AS zone, count(*) AS shoots
FROM shoots GROUP BY 1 ORDER BY 2 DESC LIMIT 5;
\timing off

\echo
\echo '=== 8. The zones of the active version: centroid, size, radius, density ==='
SELECT * FROM cinematic_ml.zones('paris');

\echo '=== 9. DBSCAN hotspots on 2016-2019 (the original pipeline''s rule: haversine, eps 100 m, min 10 points) ==='
SELECT cinematic_ml.train('hotspots', 'SELECT lat, lon FROM shoots WHERE year <= 2019', 'dbscan', '{"eps_m":100,"min_points":10}');
SELECT metrics->'n_zones' AS zones, metrics->'noise_share' AS noise_share,
       round((metrics->>'mean_points_per_zone')::numeric, 1) AS mean_points_per_zone,
       round((metrics->>'mean_zone_radius_m')::numeric, 1) AS mean_zone_radius_m
  FROM cinematic_ml.model_versions WHERE model_name = 'hotspots';
SELECT * FROM cinematic_ml.predict(48.8606, 2.3376, 'hotspots');
SELECT zone_id, round(lat::numeric, 5) AS lat, round(lon::numeric, 5) AS lon, n_points,
       round(radius_m::numeric, 1) AS radius_m, round(density_per_km2::numeric) AS per_km2
  FROM cinematic_ml.zones('hotspots') ORDER BY n_points DESC LIMIT 10;


\echo
\echo '=== 10. Has the city changed? A drift check of 2020-2023 against the 2016-2019 hotspots ==='
SELECT r->>'verdict' AS verdict, r->'reasons' AS reasons FROM cinematic_ml.drift('hotspots', 'SELECT lat, lon FROM shoots WHERE year >= 2020') r;
SELECT check_id, verdict, rel_n_zones, rel_mean_points, rel_mean_radius, round(p_value::numeric, 6) AS p_value,
       round(psi::numeric, 3) AS psi, round(js_distance::numeric, 3) AS js, round(max_centroid_shift_m::numeric) AS max_shift_m
  FROM cinematic_ml.drift_history;

\echo
\echo '=== 11. The retrain policy: the window is now 2020-2023; retrain only if the city really changed ==='
UPDATE cinematic_ml.models SET source_query = 'SELECT lat, lon FROM shoots WHERE year >= 2020', auto_promote = true
 WHERE model_name = 'hotspots';
SELECT cinematic_ml.retrain('hotspots') - 'gate' AS decision;
SELECT model_name, version, status, n_rows, (metrics->>'n_zones')::int AS zones FROM cinematic_ml.model_versions
 WHERE model_name = 'hotspots' ORDER BY version;
SELECT * FROM cinematic_ml.active_models;

\set ECHO none
\echo
\echo 'Done.'
