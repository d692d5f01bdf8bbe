#!/usr/bin/python3
"""BI tools and operators (issue 7): the views read through psycopg2 as a read-only role,
prediction views that follow promotions, the shared-memory statistics (needs the preload),
metrics() in the Prometheus text format, health(), and a reset that only an admin may do."""
import re

import psycopg2

from cmltest import Checks, database

c = Checks()
with database("cml_t_bi") as conn:
    cur = conn.cursor()
    cur.execute("SHOW shared_preload_libraries")
    preloaded = "cinematic_ml" in cur.fetchone()[0]
    cur.execute("""
        CREATE TABLE shoots AS
        SELECT i AS id, 'shoot ' || i AS title,
               (ARRAY[48.8606, 48.8584, 48.8530])[1 + i % 3] + ((i * 7919) % 101 - 50) * 0.00001 AS lat,
               (ARRAY[2.3376, 2.2945, 2.3499])[1 + i % 3] + ((i * 104729) % 101 - 50) * 0.00001 AS lon
          FROM generate_series(1, 3000) i;
        SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'kmeans', '{"k": 3, "seed": 1}');
        SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots WHERE id % 2 = 0', 'kmeans', '{"k": 3, "seed": 2}');
        SELECT cinematic_ml.drift('paris', 'SELECT lat, lon FROM shoots');
        SELECT cinematic_ml.create_prediction_view('shoot_predictions', 'shoots', 'lat', 'lon', 'paris');
        DROP ROLE IF EXISTS cml_bi;
        CREATE ROLE cml_bi LOGIN IN ROLE cinematic_ml_reader;
        GRANT SELECT ON shoots, shoot_predictions TO cml_bi;
    """)

    # a BI tool: a read-only role through a real client library
    bi = psycopg2.connect(dbname=conn.get_dsn_parameters()["dbname"], user="cml_bi")
    bi.set_session(readonly=True, autocommit=True)
    bc = bi.cursor()
    for view in ("active_models", "active_zones", "model_history", "drift_history", "export_status", "stats"):
        bc.execute(f"SELECT * FROM cinematic_ml.{view}")
        rows = bc.fetchall()
        # row-level security: a reader sees only the drift checks it ran itself
        want = 0 if view == "drift_history" else 1
        c.check(len(rows) >= want and (view != "drift_history" or not rows),
                f"read-only role reads cinematic_ml.{view}: {len(rows)} rows, columns "
                f"{', '.join(d.name for d in bc.description[:6])}...")
    bc.execute("SELECT model_version, count(*) FROM shoot_predictions GROUP BY 1")
    before = bc.fetchall()
    cur.execute("UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'paris' AND version = 2")
    bc.execute("SELECT model_version, count(*) FROM shoot_predictions GROUP BY 1")
    after = bc.fetchall()
    c.check(before == [(1, 3000)] and after == [(2, 3000)],
            f"the prediction view follows the promotion with no refresh: {before} -> {after}")
    try:
        bc.execute("SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'kmeans', '{\"k\": 2}')")
        c.check(False, "the read-only role cannot train")
    except psycopg2.Error as e:
        c.check(e.pgcode in ("42501", "25006"), f"the read-only role cannot train ({e.pgcode})")

    cur.execute("SELECT * FROM cinematic_ml.health()")
    h = cur.fetchall()
    c.check(h[0][0] == "paris" and h[0][1] == 2 and h[0][2] and h[0][7],
            f"health(): {h[0]}")

    if not preloaded:
        cur.execute("SELECT note FROM cinematic_ml.stats")
        note = cur.fetchone()[0]
        c.check("shared_preload_libraries" in note, f"without the preload the stats view says so: {note}")
    else:
        cur.execute("SELECT cinematic_ml.stats_reset()")
        cur.execute("SELECT sum(cinematic_ml.predict_cluster(lat, lon, 'paris')) FROM shoots")
        cur.execute("SELECT sum(cinematic_ml.predict_cluster(lat, lon, 'paris')) FROM shoots WHERE id <= 1000")
        cur.execute("SELECT cinematic_ml.predict_cluster(48.86, 2.33, 'paris')")
        cur.execute("SELECT predictions, model_loads + cache_hits, trainings, promotions, drift_checks, last_load_version "
                    "FROM cinematic_ml.stats WHERE model_name = 'paris'")
        row = cur.fetchone()
        c.check(row[0] == 4001, f"predictions counted exactly across statements: {row[0]} (4001)")
        c.check(row[1] == 3, f"one model resolution per statement (loads + cache hits = {row[1]})")
        c.check(row[5] == 2, f"last loaded version {row[5]} (2)")
        cur.execute("SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots', 'kmeans', '{\"k\": 3, \"seed\": 3}')")
        cur.execute("UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = 'paris' AND version = 1")
        cur.execute("SELECT cinematic_ml.drift('paris', 'SELECT lat, lon FROM shoots')")
        cur.execute("SELECT trainings, training_ms >= 0, rollbacks, drift_checks FROM cinematic_ml.stats WHERE model_name = 'paris'")
        row = cur.fetchone()
        c.check(row[0] == 1 and row[2] == 1 and row[3] == 1, f"trainings, rollbacks and drift checks counted: {row}")
        cur.execute("SELECT cinematic_ml.metrics()")
        text = cur.fetchone()[0]
        sample = re.search(r'^cinematic_ml_predictions_total\{model="paris"\} (\d+)$', text, re.M)
        ok = sample is not None and int(sample.group(1)) == 4001 and "# TYPE cinematic_ml_predictions_total counter" in text
        ok = ok and all(re.match(r'^(# (HELP|TYPE) .*|[a-z_]+\{model="[^"]*"\} \d+)$', l) for l in text.strip().split("\n"))
        c.check(ok, "metrics() is valid Prometheus text with the same counts")
        try:
            bc.execute("SELECT cinematic_ml.stats_reset()")
            c.check(False, "a reader cannot reset the statistics")
        except psycopg2.Error as e:
            c.check(e.pgcode == "42501", f"a reader cannot reset the statistics ({e.pgcode})")
        # champion / challenger: the stats separate the two
        cur.execute("INSERT INTO cinematic_ml.model_aliases VALUES ('paris', 'champion', 1), ('paris', 'challenger', 2)")
        cur.execute("UPDATE cinematic_ml.models SET settings = '{\"challenger_share\": 0.25}' WHERE model_name = 'paris'")
        cur.execute("SELECT cinematic_ml.stats_reset('paris')")
        cur.execute("SELECT count(*) FILTER (WHERE p.model_version = 2) FROM generate_series(1, 2000) k, "
                    "LATERAL cinematic_ml.predict(48.86, 2.33, 'paris', 'user-' || k) p")
        routed = cur.fetchone()[0]
        cur.execute("SELECT predictions, predictions_challenger FROM cinematic_ml.stats WHERE model_name = 'paris'")
        row = cur.fetchone()
        c.check(row == (2000, routed) and 350 < routed < 650,
                f"routed predictions: {row[0]} in all, {row[1]} to the challenger ({routed} routed, ~25 %)")
        cur.execute("SELECT cinematic_ml.stats_reset('paris')")
        cur.execute("SELECT predictions FROM cinematic_ml.stats WHERE model_name = 'paris'")
        c.check(cur.fetchone()[0] == 0, "an admin resets one model's counters")
    bi.close()
    cur.execute("DROP VIEW shoot_predictions")
    cur.execute("DROP OWNED BY cml_bi; DROP ROLE cml_bi")
c.exit()
