#!/usr/bin/python3
"""Parallel query hands partial states of many points over by reference (src/points.c,
"Partial states between processes"): a worker's points through the query's shared memory
area, the leader's own by address.  Every fitting aggregate must give what one process gives,
plain, grouped (a sort between the Gather and the final aggregate), under a LIMIT and in a
subquery scanned again for each outer row; and the DEBUG1 lines must show the states really
went by reference (one per participant with enough points, as EXPLAIN ANALYZE counts them)."""
import json
import time

import psycopg2
import psycopg2.errors

from cmltest import Checks, database

MIN_POINTS = 16384  # BY_REFERENCE_MIN_POINTS in src/points.c
PARALLEL = ("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; "
            "SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2")
SERIAL = "SET max_parallel_workers_per_gather = 0"

c = Checks()
with database("cml_t_parallel") as conn:
    cur = conn.cursor()
    cur.execute("""
        CREATE TABLE big AS
        SELECT i % 3 AS g, (i * 7) % 5 AS zone,
               48.80 + 0.1 * ((i::int8 * 7919) % 100003) / 100003.0 + 0.002 * sin(i) AS lat,
               2.25 + 0.2 * ((i::int8 * 104729) % 100019) / 100019.0 + 0.002 * cos(i) AS lon
          FROM generate_series(1, 300000) i;
        ANALYZE big;
    """)

    def rows(settings, sql):
        if settings:
            cur.execute(settings)
        cur.execute(sql)
        return cur.fetchall()

    def both(sql):
        """The query's rows with 2 parallel workers and in one process."""
        return rows(PARALLEL, sql), rows(SERIAL, sql)

    # the plain aggregate: which participants had enough points, and what their states said
    # (first without the leader's share, so that the workers' states are large for sure)
    fit = "cinematic_ml.kmeans_fit(lat, lon, 8, '{\"seed\": 5, \"n_init\": 1}')"

    def participants(leader_participates):
        cur.execute(PARALLEL)
        cur.execute(f"SET parallel_leader_participation = {'on' if leader_participates else 'off'}")
        cur.execute("SET client_min_messages = debug1")
        del conn.notices[:]
        cur.execute(f"EXPLAIN (ANALYZE, VERBOSE, FORMAT JSON) SELECT {fit} FROM big")
        plan = cur.fetchone()[0][0]["Plan"]
        cur.execute("RESET client_min_messages; RESET parallel_leader_participation")
        gather = plan["Plans"][0]
        scan = gather["Plans"][0]["Plans"][0]
        workers = [w["Actual Rows"] for w in scan.get("Workers", [])]
        shape_ok = (plan["Node Type"] == "Aggregate" and gather["Node Type"] == "Gather"
                    and scan["Node Type"] == "Seq Scan" and scan.get("Parallel Aware"))
        return (shape_ok, gather.get("Workers Launched", 0), workers, 300000 - sum(workers),
                sum("read from shared memory" in n for n in conn.notices),
                sum("of the leader taken by reference" in n for n in conn.notices))

    shape_ok, launched, workers, leader, shared, local = participants(False)
    c.check(shape_ok and launched >= 1 and leader == 0 and shared == sum(w >= MIN_POINTS for w in workers)
            and shared >= 1 and local == 0,
            f"plan: Finalize Aggregate, Gather, Partial Aggregate, Parallel Seq Scan; without the leader's "
            f"share, {launched} workers with {workers} points: {shared} states from shared memory")
    shape_ok, launched, workers, leader, shared, local = participants(True)
    c.check(shape_ok and shared == sum(w >= MIN_POINTS for w in workers) and local == (leader >= MIN_POINTS),
            f"with the leader's share: {shared} states from shared memory for workers with {workers} points, "
            f"{local} by address for the leader's {leader}")
    par, ser = both(f"SELECT md5({fit}) FROM big")
    c.check(par == ser, f"kmeans_fit: the same model with 2 workers and in one process ({ser[0][0]})")
    ser_plain = ser

    # the same aggregate twice in one query: one shared state, serialised once per aggregate
    par, ser = both(f"SELECT md5({fit}), md5({fit}) FROM big")
    c.check(par == ser and par[0][0] == par[0][1], "kmeans_fit twice in one query: the same model twice")

    # grouped: the workers' states by shared memory, the leader's inline
    q = f"SELECT g, md5({fit}) FROM big GROUP BY g ORDER BY g"
    par, ser = both(q)
    c.check(par == ser and len(ser) == 3, f"kmeans_fit by group: the same 3 models ({len(par)} groups)")
    cur.execute(PARALLEL)
    cur.execute("SET enable_hashagg = off")
    cur.execute("EXPLAIN (COSTS OFF) " + q)
    shape = " / ".join(r[0].strip(" ->") for r in cur.fetchall())
    par = rows("", q)
    cur.execute("RESET enable_hashagg")
    c.check(par == ser and "Gather" in shape and "Sort" in shape,
            f"kmeans_fit by group through a sort: the same models ({shape})")
    par, ser = both(f"SELECT g, md5({fit}) FROM big GROUP BY g ORDER BY g LIMIT 1")
    c.check(par == ser, "kmeans_fit by group under a LIMIT: the same first model")

    # the aggregate scanned again for each outer row (the inner side of a nested loop):
    # its Gather runs three times in one query
    q = (f"SELECT r, s.m FROM generate_series(0, 2) r LEFT JOIN (SELECT md5({fit}) AS m FROM big) s "
         "ON s.m > r::text ORDER BY r")
    cur.execute(PARALLEL + "; SET enable_material = off; SET enable_hashjoin = off; SET enable_mergejoin = off")
    cur.execute("EXPLAIN (COSTS OFF) " + q)
    shape = " / ".join(r[0].strip(" ->") for r in cur.fetchall())
    par = rows("", q)
    cur.execute("RESET enable_material; RESET enable_hashjoin; RESET enable_mergejoin")
    ser = rows(SERIAL, q)
    c.check(par == ser and len(par) == 3 and "Nested Loop Left Join" in shape
            and shape.index("Function Scan") < shape.index("Gather"),
            f"kmeans_fit on the inner side of a nested loop, 3 rescans: the same model ({shape})")

    # cancelled at every stage (scan, handover, fit): a clean error, no worker left behind,
    # and the next fit the same (states in shared memory go with the query's area)
    cur.execute(PARALLEL)
    t0 = time.perf_counter()
    cur.execute(f"SELECT md5({fit}) FROM big")
    full_ms = (time.perf_counter() - t0) * 1000
    cancelled = 0
    for i in range(1, 25):
        cur.execute(f"SET statement_timeout = '{max(1, int(full_ms * i / 25))}ms'")
        try:
            cur.execute(f"SELECT md5({fit}) FROM big")
        except psycopg2.errors.QueryCanceled:
            cancelled += 1
    cur.execute("RESET statement_timeout")
    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'")
    left = cur.fetchone()[0]
    par = rows(PARALLEL, f"SELECT md5({fit}) FROM big")
    c.check(cancelled > 0 and left == 0 and par == ser_plain,
            f"cancelled at 24 points of a {full_ms:.0f} ms parallel fit ({cancelled} cancelled): "
            f"{left} workers left, the next fit the same model")

    # DBSCAN numbers its zones in input order, and a border point joins the smallest-numbered
    # zone among its core neighbours, so zone sizes may differ with the order the workers'
    # states arrive in (README, "DBSCAN numbering"); what the order cannot change: the points,
    # the core points, the noise and the number of zones
    q = ("WITH m AS (SELECT cinematic_ml.model_info(cinematic_ml.dbscan_fit(lat, lon, 40, 8)) AS i FROM big) "
         "SELECT i->>'n_train', i->>'n_core', i->>'n_noise', i->>'n_zones' FROM m")
    par, ser = both(q)
    c.check(par == ser, f"dbscan_fit: the same points, core points, noise and zones with 2 workers "
                        f"({ser[0][0]} points, {ser[0][1]} core, {ser[0][2]} noise, {ser[0][3]} zones)")

    # labelled points (zone_metrics): the same figures
    q = "SELECT cinematic_ml.zone_metrics(lat, lon, zone) FROM big"
    par, ser = both(q)

    def close(a, b):
        """Equal up to the rounding of sums taken in another order; the silhouette, from a
        sample of 200,000 of the 300,000 points taken in input order, within its error"""
        def near(k):
            if not isinstance(a[k], float):
                return a[k] == b[k]
            if k == "silhouette":
                return abs(a[k] - b[k]) < 0.005
            return abs(a[k] - b[k]) <= 1e-6 * max(abs(a[k]), abs(b[k]))
        return a.keys() == b.keys() and all(near(k) for k in a)
    c.check(close(par[0][0], ser[0][0]), "zone_metrics: the same figures with 2 workers"
            + ("" if close(par[0][0], ser[0][0]) else f": {par[0][0]} against {ser[0][0]}"))

c.exit()
