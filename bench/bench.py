#!/usr/bin/python3
"""cinematic_ml benchmarks: predict and k-means against what a user would otherwise use.

Run through bench/run.sh (which starts a throwaway cluster unless PGHOST/PGPORT are set).
Connects with the usual libpq environment (PGHOST, PGPORT, PGUSER) to database BENCH_DB
(default cml_bench), creating it and the extensions cinematic_ml and postgis if needed.

Workloads
  predict  k-means model k=16; sum(predict_cluster(...)) over N points vs a bare scan, a plain
           SQL nearest-centroid subquery and a PostGIS KNN subquery (single process, then
           2 parallel workers for predict and the bare scan).
  kmeans   kmeans_fit(lat, lon, k) for k = 16 and 64 vs scikit-learn's Lloyd KMeans on the same
           3-D representation (unit vectors x 6,371,000 m) and PostGIS ST_ClusterKMeans;
           kmeans_fit k=16 n_init=1 again with 2 parallel workers (plan checked).
  growth   at 100k, 1M and 10M points (--growth-sizes), each in its own table growth_<n>:
           bare scan, kmeans_fit k=16 n_init=1, predict_cluster with that model, dbscan_fit
           eps 20 m min 50, predict_cluster with that model; time, backend peak memory and the
           time ratio per 10x points.

Prints a table, evaluates the targets and writes bench/results/bench.csv (rewritten) and
bench/results/growth.csv (appended).
"""
import argparse
import csv
import datetime
import io
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402

GEN_VERSION = 1  # bump when gen.py changes what it generates


# --------------------------------------------------------------------------- helpers

def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def connect(dbname):
    conn = psycopg2.connect(dbname=dbname, application_name="cml_bench")
    conn.autocommit = True
    return conn


def q1(cur, sql, args=None):
    cur.execute(sql, args)
    return cur.fetchone()


def vm_hwm_mb(pid):
    """Peak resident set (VmHWM) of a local process in MB, or None when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


LOAD_SAMPLES = []


def sample_load(samples=5, pause=0.02):
    """Other processes running right now: the mean of /proc/loadavg's running count minus
    this process, over a few samples taken while the benchmark itself is idle."""
    vals = []
    try:
        for _ in range(samples):
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
            vals.append(max(0, running - 1))
            time.sleep(pause)
    except (OSError, ValueError, IndexError):
        return None
    v = sum(vals) / len(vals)
    LOAD_SAMPLES.append(v)
    return v


class Backend:
    """A fresh server connection whose peak memory we can read afterwards."""

    def __init__(self, dbname, settings):
        self.conn = connect(dbname)
        self.cur = self.conn.cursor()
        self.pid = q1(self.cur, "SELECT pg_backend_pid()")[0]
        sample_load()
        for k, v in settings.items():
            self.cur.execute(f"SET {k} = %s", (str(v),))

    def timed(self, sql, args=None, fetch=True):
        t0 = time.perf_counter()
        self.cur.execute(sql, args)
        res = self.cur.fetchall() if fetch else None
        return time.perf_counter() - t0, res

    def peak_mb(self):
        return vm_hwm_mb(self.pid)

    def close(self):
        self.conn.close()


SERIAL = {"max_parallel_workers_per_gather": 0}
# 2 workers, and no size or setup-cost threshold keeping a small table from getting them
PARALLEL2 = {"max_parallel_workers_per_gather": 2, "min_parallel_table_scan_size": 0,
             "parallel_setup_cost": 0}


def best_of(dbname, settings, sql, runs, args=None):
    """Best and median wall time of `runs` runs on one fresh backend, its result and peak MB."""
    b = Backend(dbname, settings)
    try:
        times = []
        res = None
        for _ in range(runs):
            t, res = b.timed(sql, args)
            times.append(t)
        return min(times), statistics.median(times), res, b.peak_mb()
    finally:
        b.close()


def repeat_fast(a, first, again):
    """Best of --fit-runs when the first run took under --fit-repeat-below seconds, else the first.

    first: seconds of the run already made; again(): seconds of one more run.
    Returns (best seconds, number of runs)."""
    times = [first]
    if first < a.fit_repeat_below:
        for _ in range(a.fit_runs - 1):
            times.append(again())
    return min(times), len(times)


def explain(cur, sql):
    cur.execute("EXPLAIN " + sql)
    return "\n".join(r[0] for r in cur.fetchall())


# --------------------------------------------------------------------------- results

class Results:
    def __init__(self):
        self.rows = []

    def add(self, workload, method, rows, seconds, ref=None, peak_mb=None, runs=1,
            scaled_from=None, inertia=None, note="", median=None):
        busy = max(LOAD_SAMPLES) if LOAD_SAMPLES else None
        LOAD_SAMPLES.clear()
        r = dict(workload=workload, method=method, rows=rows, seconds=seconds, ref=ref,
                 peak_mb=peak_mb, runs=runs, scaled_from=scaled_from, inertia=inertia,
                 note=note, median=median, ratio=None, busy=busy)
        self.rows.append(r)
        return r

    def find(self, workload, method):
        for r in self.rows:
            if r["workload"] == workload and r["method"] == method:
                return r
        return None

    def resolve_ratios(self):
        for r in self.rows:
            if r["ref"]:
                ref = self.find(r["workload"], r["ref"])
                if ref and ref["seconds"]:
                    r["ratio"] = r["seconds"] / ref["seconds"]


def fmt_s(x):
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 100 else f"{x:.1f}"


def fmt_rows(r):
    if r["scaled_from"]:
        return f"{r['rows']:,} (x{r['rows'] // r['scaled_from']} from {r['scaled_from']:,})"
    return f"{r['rows']:,}"


def table_lines(results):
    head = ["workload", "method", "rows", "seconds", "runs", "ratio to ref", "ref", "peak MB", "notes"]
    body = []
    for r in results.rows:
        body.append([
            r["workload"], r["method"], fmt_rows(r), fmt_s(r["seconds"]), str(r["runs"]),
            "-" if r["ratio"] is None else (f"{r['ratio']:.3f}" if r["ratio"] < 10 else f"{r['ratio']:.1f}"),
            r["ref"] or "-",
            "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}",
            r["note"],
        ])
    return head, body


def print_rows(head, body, out=sys.stdout):
    """A text table: columns padded to their widest cell, the notes column left ragged."""
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    widths[-1] = len(head[-1])
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line, file=out)
    print("-" * len(line), file=out)
    for b in body:
        print("  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip(), file=out)


def markdown_rows(head, body):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in body:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in b) + " |")
    return "\n".join(lines)


def print_table(results, out=sys.stdout):
    print_rows(*table_lines(results), out=out)


def markdown_table(results):
    return markdown_rows(*table_lines(results))


# --------------------------------------------------------------------------- setup

def ensure_database(dbname):
    conn = psycopg2.connect(dbname="postgres")
    conn.autocommit = True
    cur = conn.cursor()
    if q1(cur, "SELECT count(*) FROM pg_database WHERE datname = %s", (dbname,))[0] == 0:
        log(f"creating database {dbname}")
        cur.execute(f'CREATE DATABASE "{dbname}"')
    conn.close()
    conn = connect(dbname)
    cur = conn.cursor()
    # the database belongs to the benchmark: recreate the extension so that its SQL objects
    # match the installed library (the version number does not change between builds)
    cur.execute("DROP EXTENSION IF EXISTS cinematic_ml CASCADE")
    cur.execute("CREATE EXTENSION cinematic_ml")
    cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    conn.close()


def setup_points(dbname, n, seed, subset, regen):
    """pts(id, lat, lon), pts_sub (first `subset` ids), pts_geo(id, g2154, geog), pts_geo_sub."""
    conn = connect(dbname)
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS bench_meta (k text PRIMARY KEY, v jsonb)")
    want = {"n": n, "seed": seed, "subset": subset, "gen": GEN_VERSION}
    have = q1(cur, "SELECT v FROM bench_meta WHERE k = 'points'")
    tables_ok = q1(cur, "SELECT count(*) FROM pg_class WHERE relname IN "
                   "('pts','pts_sub','pts_geo','pts_geo_sub') AND relkind = 'r'")[0] == 4
    if not regen and have and have[0] == want and tables_ok:
        log(f"reusing pts ({n:,} points, seed {seed})")
        conn.close()
        return
    log(f"generating {n:,} Paris-like points (seed {seed})")
    t0 = time.perf_counter()
    lat, lon = gen.paris_points(n, seed)
    cur.execute("DROP TABLE IF EXISTS pts, pts_sub, pts_geo, pts_geo_sub")
    cur.execute("CREATE TABLE pts (id int4 PRIMARY KEY, lat float8 NOT NULL, lon float8 NOT NULL)")
    cur.copy_expert("COPY pts FROM STDIN (FORMAT binary)", gen.copy_binary(lat, lon))
    cur.execute("CREATE TABLE pts_sub AS SELECT * FROM pts WHERE id <= %s ORDER BY id", (subset,))
    cur.execute("ALTER TABLE pts_sub ADD PRIMARY KEY (id)")
    # PostGIS representations, computed once outside every timing
    geo_sql = ("SELECT id, ST_Transform(ST_SetSRID(ST_MakePoint(lon, lat), 4326), 2154)"
               "::geometry(Point, 2154) AS g2154, ST_SetSRID(ST_MakePoint(lon, lat), 4326)"
               "::geography(Point, 4326) AS geog FROM {} ORDER BY id")
    cur.execute("CREATE TABLE pts_geo AS " + geo_sql.format("pts"))
    cur.execute("CREATE TABLE pts_geo_sub AS " + geo_sql.format("pts_sub"))
    for t in ("pts", "pts_sub", "pts_geo", "pts_geo_sub"):
        cur.execute(f"VACUUM (FREEZE, ANALYZE) {t}")
    cur.execute("INSERT INTO bench_meta VALUES ('points', %s) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                (json.dumps(want),))
    # the new tables' pages written out now, not by the checkpointer during the timings
    cur.execute("CHECKPOINT")
    log(f"points ready in {time.perf_counter() - t0:.1f} s")
    conn.close()


def setup_model(dbname):
    """Train model 'bench' (k=16) and make this version the active one; centroids table."""
    conn = connect(dbname)
    cur = conn.cursor()
    t0 = time.perf_counter()
    ver = q1(cur, "SELECT cinematic_ml.train('bench', 'SELECT lat, lon FROM pts', 'kmeans', "
                  "'{\"k\":16,\"seed\":1,\"n_init\":1}')")[0]
    train_s = time.perf_counter() - t0
    cur.execute("UPDATE cinematic_ml.model_versions SET status = 'active' "
                "WHERE model_name = 'bench' AND version = %s AND status <> 'active'", (ver,))
    others = q1(cur, "SELECT count(*) FROM cinematic_ml.model_versions "
                     "WHERE status = 'active' AND model_name <> 'bench'")[0]
    cur.execute("DROP TABLE IF EXISTS centroids")
    cur.execute("CREATE TABLE centroids AS SELECT zone_id AS cluster, lat, lon, "
                "ST_Transform(ST_SetSRID(ST_MakePoint(lon, lat), 4326), 2154)::geometry(Point, 2154) AS g2154, "
                "ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography(Point, 4326) AS geog "
                "FROM cinematic_ml.zones('bench')")
    cur.execute("CREATE INDEX centroids_g2154 ON centroids USING gist (g2154)")
    cur.execute("CREATE INDEX centroids_geog ON centroids USING gist (geog)")
    cur.execute("VACUUM ANALYZE centroids")
    conn.close()
    return ver, train_s, others


# --------------------------------------------------------------------------- predict workload

def predict_workload(a, res, notes):
    db = a.db
    ver, train_s, others = setup_model(db)
    log(f"model 'bench' v{ver} trained in {train_s:.2f} s")
    # predict_cluster(lat, lon) needs a default model when several are active (bench_db is
    # trained below)
    settings = dict(SERIAL, **{"cinematic_ml.default_model": "bench"})
    psettings = dict(PARALLEL2, **{"cinematic_ml.default_model": "bench"})
    if others:
        notes.append(f"{others} other active model(s) in the database")
    n = a.n
    W = "predict"
    R = a.runs

    def run(method, sql, ref, rows=n, sets=settings, note=""):
        best, med, out, peak = best_of(db, sets, sql, R)
        log(f"{method}: best {best:.3f} s, median {med:.3f} s")
        return res.add(W, method, rows, best, ref=ref, peak_mb=peak, runs=R, median=med,
                       note=note), out

    bare = "bare scan sum(lat+lon)"
    run(bare, "SELECT sum(lat + lon) FROM pts", None)
    # the floor for any C function of two float8 returning int4 (fmgr call + int4 sum)
    run("floor: sum(btfloat8cmp(lat, lon))", "SELECT sum(btfloat8cmp(lat, lon)) FROM pts", bare,
        note="a built-in C function of (float8, float8) -> int4")
    sums = {}
    r, out = run("predict_cluster(lat, lon)", "SELECT sum(cinematic_ml.predict_cluster(lat, lon)) FROM pts", bare)
    sums["default"] = out[0][0]
    r, out = run("predict_cluster(lat, lon, 'bench')",
                 "SELECT sum(cinematic_ml.predict_cluster(lat, lon, 'bench')) FROM pts", bare)
    sums["named"] = out[0][0]
    r, out = run("predict_cluster(model bytea, lat, lon)",
                 "SELECT sum(cinematic_ml.predict_cluster(m, lat, lon)) FROM pts, "
                 "(SELECT model m FROM cinematic_ml.model_versions WHERE status = 'active' "
                 "AND model_name = 'bench') s", bare)
    sums["bytea"] = out[0][0]
    if len(set(sums.values())) != 1:
        notes.append(f"WARNING: the predict variants disagree: {sums}")
    for r in res.rows:
        if r["workload"] == W and r["method"].startswith("predict_cluster"):
            r["note"] = f"sum of ids {out[0][0]}"

    # nearest-centroid subqueries: full N when affordable, else a subset scaled linearly
    ref_pred = "predict_cluster(lat, lon)"
    subqueries = [
        ("SQL nearest-centroid subquery",
         "SELECT sum((SELECT c.cluster FROM centroids c ORDER BY (c.lat - p.lat)^2 + "
         "((c.lon - p.lon) * cos(radians(p.lat)))^2 LIMIT 1)) FROM {} p", "pts", "pts_sub",
         "equirectangular distance to zones() centroids"),
        ("PostGIS KNN geometry(2154) <->",
         "SELECT sum((SELECT c.cluster FROM centroids c ORDER BY c.g2154 <-> p.g2154 LIMIT 1)) FROM {} p",
         "pts_geo", "pts_geo_sub", "GiST index on 16 centroids; point geometries precomputed"),
        ("PostGIS KNN geography <->",
         "SELECT sum((SELECT c.cluster FROM centroids c ORDER BY c.geog <-> p.geog LIMIT 1)) FROM {} p",
         "pts_geo", "pts_geo_sub", "GiST index on 16 centroids; sphere distance"),
    ]
    conn = connect(db)
    cur = conn.cursor()
    sub_rows = q1(cur, "SELECT count(*) FROM pts_sub")[0]
    for method, tmpl, full_t, sub_t, note in subqueries:
        # one probe run on the subset tells whether the full N fits the time budget
        b = Backend(db, settings)
        t_probe, _ = b.timed(tmpl.format(sub_t))
        b.close()
        est_full = t_probe * n / sub_rows
        if sub_rows >= n or est_full * R <= a.subquery_budget:
            run(method, tmpl.format(full_t), ref_pred, note=note)
        else:
            runs = max(1, R)
            best, med, out, peak = best_of(db, settings, tmpl.format(sub_t), runs)
            scale = n / sub_rows
            log(f"{method}: subset of {sub_rows:,}: best {best:.3f} s -> x{scale:g} = {best * scale:.2f} s")
            res.add(W, method, n, best * scale, ref=ref_pred, peak_mb=peak, runs=runs,
                    scaled_from=sub_rows, median=med * scale,
                    note=note + f"; measured {best:.3f} s on {sub_rows:,} rows, scaled linearly")

    # agreement of the answers on the subset
    agree = q1(cur, """
        SELECT count(*),
               count(*) FILTER (WHERE a = s),
               count(*) FILTER (WHERE a = k),
               count(*) FILTER (WHERE a = g)
          FROM (SELECT cinematic_ml.predict_cluster(p.lat, p.lon, 'bench') a,
                       (SELECT c.cluster FROM centroids c ORDER BY (c.lat - p.lat)^2 +
                               ((c.lon - p.lon) * cos(radians(p.lat)))^2 LIMIT 1) s,
                       (SELECT c.cluster FROM centroids c ORDER BY c.g2154 <-> q.g2154 LIMIT 1) k,
                       (SELECT c.cluster FROM centroids c ORDER BY c.geog <-> q.geog LIMIT 1) g
                  FROM pts_sub p JOIN pts_geo_sub q USING (id)) x""")
    tot = agree[0]
    notes.append(f"predict agreement with the nearest-centroid subqueries on {tot:,} points: "
                 f"SQL {100.0 * agree[1] / tot:.3f} %, KNN 2154 {100.0 * agree[2] / tot:.3f} %, "
                 f"KNN geography {100.0 * agree[3] / tot:.3f} % (differences sit on zone borders)")

    dbscan_predict(a, db, settings, run, bare, res, notes)

    # 2 parallel workers: predict and the bare scan
    pb = Backend(db, psettings)
    plans = {}
    for key, sql in (("bare", "SELECT sum(lat + lon) FROM pts"),
                     ("predict", "SELECT sum(cinematic_ml.predict_cluster(lat, lon)) FROM pts")):
        plan = explain(pb.cur, sql)
        plans[key] = ("Parallel Seq Scan" in plan and "Partial Aggregate" in plan)
        if not plans[key]:
            notes.append(f"WARNING: the {key} query did not get a parallel plan:\n{plan}")
    pb.close()
    pbare = "bare scan, 2 workers"
    r, _ = run(pbare, "SELECT sum(lat + lon) FROM pts", None, sets=psettings,
               note="Parallel Seq Scan + Partial Aggregate" if plans["bare"] else "NOT parallel")
    r, out = run("predict_cluster(lat, lon), 2 workers",
                 "SELECT sum(cinematic_ml.predict_cluster(lat, lon)) FROM pts", pbare, sets=psettings,
                 note="Parallel Seq Scan + Partial Aggregate" if plans["predict"] else "NOT parallel")
    if out[0][0] != sums["default"]:
        notes.append(f"WARNING: parallel predict sum {out[0][0]} differs from serial {sums['default']}")
    # how many workers were really launched
    pb = Backend(db, psettings)
    pb.cur.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT sum(cinematic_ml.predict_cluster(lat, lon)) FROM pts")
    launched = [l[0].strip() for l in pb.cur.fetchall() if "Workers Launched" in l[0]]
    pb.close()
    notes.append("parallel predict: " + (launched[0] if launched else "no Gather node"))
    conn.close()


DB_PRED_EPS_M, DB_PRED_MIN_POINTS = 20.0, 6   # on the bench points: thousands of zones


def dbscan_predict(a, db, settings, run, bare, res, notes):
    """predict_cluster with a DBSCAN model of thousands of zones, trained on the same points,
    against the bare scan and against what a PostGIS user would write: the zone of the nearest
    labelled point within eps (KNN on a GiST index), on the subset, scaled."""
    W = "predict"
    conn = connect(db)
    cur = conn.cursor()
    params = json.dumps({"eps_m": DB_PRED_EPS_M, "min_points": DB_PRED_MIN_POINTS})
    t0 = time.perf_counter()
    ver = q1(cur, "SELECT cinematic_ml.train('bench_db', 'SELECT lat, lon FROM pts', 'dbscan', %s)",
             (params,))[0]
    train_s = time.perf_counter() - t0
    cur.execute("UPDATE cinematic_ml.model_versions SET status = 'active' "
                "WHERE model_name = 'bench_db' AND version = %s AND status <> 'active'", (ver,))
    info = q1(cur, "SELECT cinematic_ml.model_info(model) FROM cinematic_ml.model_versions "
                   "WHERE model_name = 'bench_db' AND version = %s", (ver,))[0]
    zones, cores = int(info["n_zones"]), int(info["n_core"])
    log(f"model 'bench_db' v{ver} (DBSCAN eps {DB_PRED_EPS_M:g} m, min {DB_PRED_MIN_POINTS}): "
        f"{zones:,} zones, {cores:,} core points, trained in {train_s:.2f} s")
    label = f"DBSCAN predict_cluster(lat, lon, 'bench_db')"
    r, out = run(label, "SELECT sum(cinematic_ml.predict_cluster(lat, lon, 'bench_db')) FROM pts", bare,
                 note=f"{zones:,} zones, {cores:,} core points (eps {DB_PRED_EPS_M:g} m, min "
                      f"{DB_PRED_MIN_POINTS}, trained on the same points)")
    r["zones"] = zones

    # PostGIS: the labelled training points (labels from cluster_dbscan, identical to
    # scikit-learn's and ST_ClusterDBSCAN's), the zone of the nearest one within eps
    cur.execute("DROP TABLE IF EXISTS db_labelled")
    cur.execute("CREATE TABLE db_labelled AS SELECT g.g2154, l.c AS zone FROM "
                "(SELECT id, cinematic_ml.cluster_dbscan(lat, lon, %s, %s) OVER () AS c FROM pts) l "
                "JOIN pts_geo g USING (id) WHERE l.c >= 0", (DB_PRED_EPS_M, DB_PRED_MIN_POINTS))
    cur.execute("CREATE INDEX db_labelled_g ON db_labelled USING gist (g2154)")
    cur.execute("VACUUM ANALYZE db_labelled")
    nlab = q1(cur, "SELECT count(*) FROM db_labelled")[0]
    sub_rows = q1(cur, "SELECT count(*) FROM pts_sub")[0]
    knn = ("SELECT sum(coalesce((SELECT l.zone FROM db_labelled l WHERE ST_DWithin(l.g2154, p.g2154, {eps}) "
           "ORDER BY l.g2154 <-> p.g2154 LIMIT 1), -1)) FROM {t} p")
    # EPSG:2154 metres are within 0.1 % of the sphere's here, so eps is the same number
    sql = knn.format(eps=DB_PRED_EPS_M, t="pts_geo_sub")
    best, med, _, peak = best_of(db, settings, sql, max(1, min(a.runs, 3)))
    scale = a.n / sub_rows
    res.add(W, "PostGIS: zone of the nearest labelled point within eps (KNN)", a.n, best * scale, ref=label,
            peak_mb=peak, runs=max(1, min(a.runs, 3)), scaled_from=sub_rows, median=med * scale,
            note=f"GiST index on {nlab:,} labelled points (geometry 2154); measured {best:.3f} s on "
                 f"{sub_rows:,} rows, scaled linearly")
    agree = q1(cur, f"""
        SELECT count(*), count(*) FILTER (WHERE a = b)
          FROM (SELECT cinematic_ml.predict_cluster(p.lat, p.lon, 'bench_db') a,
                       coalesce((SELECT l.zone FROM db_labelled l
                                  WHERE ST_DWithin(l.g2154, q.g2154, {DB_PRED_EPS_M})
                                  ORDER BY l.g2154 <-> q.g2154 LIMIT 1), -1) b
                  FROM pts_sub p JOIN pts_geo_sub q USING (id)) x""")
    notes.append(f"DBSCAN predict agreement with the PostGIS nearest-labelled-point rule on {agree[0]:,} "
                 f"points: {100.0 * agree[1] / agree[0]:.3f} % (cinematic_ml follows the DBSCAN rule: the "
                 f"nearest core point within eps; a border point is not a core)")
    cur.execute("DROP TABLE db_labelled")
    conn.close()


# --------------------------------------------------------------------------- k-means workload

def sklearn_worker(npy, k, n_init, seed):
    """Run in a subprocess: fit scikit-learn on the saved points, print a JSON line."""
    from sklearn.cluster import KMeans
    X = np.load(npy)
    t0 = time.perf_counter()
    km = KMeans(n_clusters=k, algorithm="lloyd", n_init=n_init, init="k-means++",
                random_state=seed).fit(X)
    t = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"seconds": t, "inertia": float(km.inertia_), "n_iter": int(km.n_iter_),
                      "peak_mb": peak}))


def sklearn_sweep_worker(npy, k, n_init, seeds):
    """Run in a subprocess: fits for seeds 1..seeds, print their inertias as JSON."""
    from sklearn.cluster import KMeans
    X = np.load(npy)
    out = []
    t0 = time.perf_counter()
    for s in range(1, seeds + 1):
        km = KMeans(n_clusters=k, algorithm="lloyd", n_init=n_init, init="k-means++", random_state=s).fit(X)
        out.append(float(km.inertia_))
    print(json.dumps({"inertias": out, "seconds": time.perf_counter() - t0}))


def sign_test_p(wins, losses):
    """Two-sided sign test: how likely a split at least this uneven is between two methods
    that are equally good (ties left out)."""
    n, m = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(m + 1)) / 2.0 ** n
    return min(1.0, 2 * tail)


def quality_name(tool, seeds, n_init):
    return f"quality: {tool}, {seeds} seeds x n_init={n_init}"


def quality_sweep(a, db, npy, k, res, W):
    """Inertia over seeds 1..N, extension vs scikit-learn, with one init and with the bench's
    init count: both run greedy k-means++ and Lloyd, so one seed compares two random draws;
    which method finds better local optima shows in the medians and in the paired wins."""
    for n_init in sorted({1, a.n_init}):
        log(f"{W}: quality sweep over {a.quality_seeds} seeds, n_init={n_init}")
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--sklearn-sweep", npy, str(k),
                              str(n_init), str(a.quality_seeds)], check=True, capture_output=True, text=True)
        sk = json.loads(out.stdout.strip().splitlines()[-1])
        b = Backend(db, SERIAL)
        ext = []
        t0 = time.perf_counter()
        for s in range(1, a.quality_seeds + 1):
            b.cur.execute("SELECT (cinematic_ml.model_info(cinematic_ml.kmeans_fit(lat, lon, %s, %s))->>'inertia')::float8 "
                          "FROM pts", (k, json.dumps({"seed": s, "n_init": n_init})))
            ext.append(b.cur.fetchone()[0])
        ext_s = time.perf_counter() - t0
        b.close()
        sk_med = statistics.median(sk["inertias"])
        wins = sum(e < t * (1 - 1e-9) for e, t in zip(ext, sk["inertias"]))
        losses = sum(e > t * (1 + 1e-9) for e, t in zip(ext, sk["inertias"]))
        for tool, vals, secs in (("scikit-learn", sk["inertias"], sk["seconds"]), ("cinematic_ml", ext, ext_s)):
            med = statistics.median(vals)
            note = (f"median inertia {med:.6g} m2 ({100 * (med / sk_med - 1):+.2f} % vs scikit-learn's), "
                    f"best {min(vals):.6g}, worst {max(vals):.6g}; seconds = all {len(vals)} fits")
            if tool == "cinematic_ml":
                note += (f"; lower inertia than scikit-learn at {wins} seeds, higher at {losses} "
                         f"(sign test p = {sign_test_p(wins, losses):.2f})")
            r = res.add(W, quality_name(tool, a.quality_seeds, n_init), a.n, secs, runs=1, inertia=med, note=note)
            r["wins"], r["losses"] = wins, losses


def run_sklearn(npy, k, n_init, seed, threads):
    sample_load()
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--sklearn-worker", npy,
                          str(k), str(n_init), str(seed)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def inertia_of_labels(X, labels, k=None):
    """Sum of squared distances of X to the means of its labels (m^2)."""
    labels = np.asarray(labels, dtype=np.int64)
    kk = int(labels.max()) + 1 if k is None else k
    cnt = np.bincount(labels, minlength=kk).astype(float)
    tot = 0.0
    sums = np.zeros((kk, 3))
    for d in range(3):
        sums[:, d] = np.bincount(labels, weights=X[:, d], minlength=kk)
    means = sums / np.maximum(cnt, 1)[:, None]
    diff = X - means[labels]
    tot = float(np.einsum("ij,ij->", diff, diff))
    return tot


def fetch_points(db):
    conn = connect(db)
    cur = conn.cursor()
    buf = io.BytesIO()
    t0 = time.perf_counter()
    cur.copy_expert("COPY (SELECT id, lat, lon FROM pts ORDER BY id) TO STDOUT (FORMAT binary)", buf)
    t = time.perf_counter() - t0
    conn.close()
    raw = buf.getvalue()
    rec = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("id", ">i4"), ("l2", ">i4"), ("lat", ">f8"),
                    ("l3", ">i4"), ("lon", ">f8")])
    body = raw[19:-2]
    arr = np.frombuffer(body, dtype=rec)
    return arr["id"].astype(np.int64), arr["lat"].astype(float), arr["lon"].astype(float), t


def copy_labels(cur, sql, n):
    """(id, label) rows of a query through COPY, as a label array indexed by id - 1."""
    buf = io.StringIO()
    cur.copy_expert(f"COPY ({sql}) TO STDOUT", buf)
    buf.seek(0)
    a = np.loadtxt(buf, dtype=np.int64, ndmin=2)
    labels = np.full(n, -1, dtype=np.int64)
    labels[a[:, 0] - 1] = a[:, 1]
    return labels


def parallel_kmeans(a, db, k, n, res, notes, W):
    """kmeans_fit(k, n_init=1) with 2 parallel workers, against the serial row just measured
    (same statement, same repeat rule): the plan, the workers launched, the model."""
    opts = json.dumps({"seed": a.seed_fit, "n_init": 1})
    fit_sql = "SELECT cinematic_ml.kmeans_fit(lat, lon, %s, %s) FROM pts"
    serial = res.find(W, "cinematic_ml kmeans_fit n_init=1")
    log(f"{W}: kmeans_fit n_init=1 with 2 parallel workers")
    b = Backend(db, PARALLEL2)
    try:
        plan = explain(b.cur, b.cur.mogrify(fit_sql, (k, opts)).decode())
        plan_ok = "Parallel Seq Scan" in plan and "Partial Aggregate" in plan
        if not plan_ok:
            notes.append(f"WARNING: {W}: kmeans_fit did not get a parallel plan:\n{plan}")
        t, out = b.timed(fit_sql, (k, opts))
        t, nr = repeat_fast(a, t, lambda: b.timed(fit_sql, (k, opts))[0])
        peak = b.peak_mb()
        info = q1(b.cur, "SELECT cinematic_ml.model_info(%s)", (psycopg2.Binary(bytes(out[0][0])),))[0]
        b.cur.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + b.cur.mogrify(fit_sql, (k, opts)).decode())
        launched = [l[0].strip() for l in b.cur.fetchall() if "Workers Launched" in l[0]]
        # the fit's own workers (after the Gather's): its DEBUG1 line
        b.cur.execute("SET client_min_messages = debug1")
        del b.conn.notices[:]
        b.cur.execute(fit_sql, (k, opts))
        b.cur.execute("RESET client_min_messages")
        fit_workers = [m.split("DEBUG:")[-1].strip() for m in b.conn.notices if "parallel workers launched" in m]
    finally:
        b.close()
    inertia = float(info["inertia"])
    note = ("Parallel Seq Scan + Partial Aggregate" if plan_ok else "NOT parallel") + "; " + \
        (launched[0] if launched else "no Gather node") + "; " + \
        (fit_workers[0] if fit_workers else "the fit ran in the leader alone") + f"; inertia {inertia:.6g} m2"
    if serial and serial["inertia"] is not None:
        note += " (same model as serial)" if inertia == serial["inertia"] else \
            f" (DIFFERS from serial {serial['inertia']:.6g})"
    note += "; peak MB is the leader's"
    r = res.add(W, "cinematic_ml kmeans_fit n_init=1, 2 workers", n, t,
                ref="cinematic_ml kmeans_fit n_init=1" if serial else None, peak_mb=peak, runs=nr,
                inertia=inertia, note=note)
    r["parallel_ok"] = plan_ok and bool(launched) and launched[0].endswith(": 2")
    log(f"{W}: 2 workers {t:.3f} s against {serial['seconds'] if serial else float('nan'):.3f} s serial; "
        f"{launched[0] if launched else 'no Gather'}")


def kmeans_workload(a, res, notes):
    db = a.db
    n = a.n
    n_init = a.n_init
    log("fetching the points for scikit-learn")
    ids, lat, lon, fetch_s = fetch_points(db)
    assert len(ids) == n and np.all(ids == np.arange(1, n + 1))
    X = gen.unit_vectors_m(lat, lon)
    notes.append(f"fetching {n:,} points to Python (binary COPY) took {fetch_s:.2f} s, "
                 "not counted in scikit-learn's time")
    tmp = tempfile.mkdtemp(prefix="cml_bench_")
    npy = os.path.join(tmp, "X.npy")
    np.save(npy, X)
    sk_threads = os.cpu_count()
    try:
        for k in a.ks:
            W = f"k-means k={k}"
            sk_ref = f"scikit-learn n_init={n_init}, {sk_threads} threads"
            log(f"{W}: scikit-learn ({sk_threads} threads)")
            sk = run_sklearn(npy, k, n_init, a.seed_fit, None)
            best, nr = repeat_fast(a, sk["seconds"], lambda: run_sklearn(npy, k, n_init, a.seed_fit, None)["seconds"])
            res.add(W, sk_ref, n, best, peak_mb=sk["peak_mb"], inertia=sk["inertia"], runs=nr,
                    note=f"inertia {sk['inertia']:.6g} m2, {sk['n_iter']} iter (best init)")
            if a.sklearn_1thread:
                log(f"{W}: scikit-learn (1 thread)")
                sk1 = run_sklearn(npy, k, n_init, a.seed_fit, 1)
                best, nr = repeat_fast(a, sk1["seconds"], lambda: run_sklearn(npy, k, n_init, a.seed_fit, 1)["seconds"])
                res.add(W, f"scikit-learn n_init={n_init}, 1 thread", n, best, ref=sk_ref, runs=nr,
                        peak_mb=sk1["peak_mb"], inertia=sk1["inertia"],
                        note=f"inertia {sk1['inertia']:.6g} m2")

            # the extension, one process (deterministic: see the parallel check below)
            for ni in sorted({n_init, 1}, reverse=True):
                log(f"{W}: kmeans_fit n_init={ni}")
                opts = json.dumps({"seed": a.seed_fit, "n_init": ni})
                b = Backend(db, SERIAL)
                fit_sql = "SELECT cinematic_ml.kmeans_fit(lat, lon, %s, %s) FROM pts"
                t, out = b.timed(fit_sql, (k, opts))
                t, nr = repeat_fast(a, t, lambda: b.timed(fit_sql, (k, opts))[0])
                peak = b.peak_mb()
                model = bytes(out[0][0])
                info = q1(b.cur, "SELECT cinematic_ml.model_info(%s)", (psycopg2.Binary(model),))[0]
                inertia = float(info["inertia"])
                note = f"inertia {inertia:.6g} m2"
                if ni == n_init:
                    rel = inertia / sk["inertia"] - 1.0
                    note += f" ({100 * rel:+.3f} % vs scikit-learn), {info.get('n_iter')} iter"
                    # cross-check the reported inertia from the model's own labels
                    b.cur.execute("SELECT id, cinematic_ml.predict_cluster(%s, lat, lon) FROM pts ORDER BY id",
                                  (psycopg2.Binary(model),))
                    lab = np.array([r[1] for r in b.cur.fetchall()], dtype=np.int64)
                    rec = inertia_of_labels(X, lab, k)
                    note += f"; from its labels {rec:.6g} m2"
                    if abs(rec - inertia) > 1e-6 * inertia and rec > inertia:
                        notes.append(f"WARNING: {W}: model_info inertia {inertia:.9g} < inertia of its "
                                     f"labels {rec:.9g}")
                else:
                    note += f", {info.get('n_iter')} iter"
                b.close()
                meth = f"cinematic_ml kmeans_fit n_init={ni}"
                res.add(W, meth, n, t, ref=sk_ref if ni == n_init else None, peak_mb=peak, runs=nr,
                        inertia=inertia, note=note)

            if k in a.parallel_ks:
                parallel_kmeans(a, db, k, n, res, notes, W)

            # window function of the extension and PostGIS's, on the same rows
            pg_rows = min(n, a.postgis_kmeans_rows)
            pg_tab = "pts_geo" if pg_rows == n else "pts_geo_sub"
            cm_tab = "pts" if pg_rows == n else "pts_sub"
            if pg_rows != n:
                c = connect(db)
                pg_rows = q1(c.cursor(), f"SELECT count(*) FROM {pg_tab}")[0]
                c.close()
            opts1 = json.dumps({"seed": a.seed_fit, "n_init": 1})
            log(f"{W}: cluster_kmeans() OVER () on {pg_rows:,} rows")
            b = Backend(db, SERIAL)
            win_sql = (f"SELECT count(c), sum(c) FROM (SELECT cinematic_ml.cluster_kmeans(lat, lon, %s, %s) "
                       f"OVER () c FROM {cm_tab}) s")
            t, out = b.timed(win_sql, (k, opts1))
            t, nr = repeat_fast(a, t, lambda: b.timed(win_sql, (k, opts1))[0])
            res.add(W, "cinematic_ml cluster_kmeans() OVER (), n_init=1", pg_rows, t, peak_mb=b.peak_mb(), runs=nr,
                    note="window function: labels every row")
            b.close()
            log(f"{W}: PostGIS ST_ClusterKMeans on {pg_rows:,} rows")
            b = Backend(db, SERIAL)
            pg_sql = f"SELECT count(c), sum(c) FROM (SELECT ST_ClusterKMeans(g2154, %s) OVER () c FROM {pg_tab}) s"
            t, out = b.timed(pg_sql, (k,))
            t, pg_runs = repeat_fast(a, t, lambda: b.timed(pg_sql, (k,))[0])
            peak = b.peak_mb()
            sum_timed = out[0][1]
            # labels (a second, untimed run) for its inertia on the 3-D representation
            lab = copy_labels(b.cur, f"SELECT id, ST_ClusterKMeans(g2154, {int(k)}) OVER () FROM {pg_tab}", n)
            b.close()
            sel = lab >= 0
            pg_inertia = inertia_of_labels(X[sel], lab[sel])
            note = "one init, planar EPSG:2154; "
            if pg_rows == n:
                note += f"inertia {pg_inertia:.6g} m2 ({100 * (pg_inertia / sk['inertia'] - 1):+.3f} % vs scikit-learn)"
            else:
                note += f"inertia {pg_inertia:.6g} m2 on its {pg_rows:,} rows"
            if int(lab[sel].sum()) != int(sum_timed):
                note += "; labels differ between two runs"
            res.add(W, "PostGIS ST_ClusterKMeans() OVER ()", pg_rows, t, peak_mb=peak, runs=pg_runs,
                    inertia=pg_inertia, note=note)
            if k in a.quality_ks and a.quality_seeds > 0:
                quality_sweep(a, db, npy, k, res, W)
            # ratios against PostGIS: what a PostGIS user would run instead
            pgm = "PostGIS ST_ClusterKMeans() OVER ()"
            for r in res.rows:
                if r["workload"] == W and r["method"] in ("cinematic_ml cluster_kmeans() OVER (), n_init=1",) \
                        and r["rows"] == pg_rows:
                    r["ref"] = pgm
                if r["workload"] == W and r["method"] == "cinematic_ml kmeans_fit n_init=1" and pg_rows == n:
                    r["ref"] = pgm
    finally:
        try:
            os.remove(npy)
            os.rmdir(tmp)
        except OSError:
            pass

    # determinism under parallel aggregation (the aggregate's input order changes from run to run)
    if a.parallel_check:
        log("k-means determinism check with 2 parallel workers")
        b = Backend(db, PARALLEL2)
        plan = explain(b.cur, "SELECT cinematic_ml.kmeans_fit(lat, lon, 16, '{\"seed\":1,\"n_init\":1}') FROM pts")
        vals = []
        for _ in range(3):
            b.cur.execute("SELECT cinematic_ml.model_info(cinematic_ml.kmeans_fit(lat, lon, 16, "
                          "'{\"seed\":1,\"n_init\":1}'))->>'inertia' FROM pts")
            vals.append(float(b.cur.fetchone()[0]))
        b.close()
        par = "Partial Aggregate" in plan
        if len(set(vals)) > 1:
            notes.append("BUG: kmeans_fit(lat, lon, 16, '{\"seed\":1,\"n_init\":1}') with 2 parallel workers "
                         "gives a different model on each run (inertias " +
                         ", ".join(f"{v:.6g}" for v in vals) + "): the k-means++ draws index the points in "
                         "the order the partial states were combined")
        else:
            notes.append(f"kmeans_fit is deterministic under {'parallel' if par else 'serial'} aggregation "
                         f"(3 runs, inertia {vals[0]:.6g})")


# --------------------------------------------------------------------------- growth series

GROWTH_EPS_M, GROWTH_MIN_POINTS = 20.0, 50      # the DBSCAN bench's parameters
GROWTH_CHUNK = 1_000_000                        # rows per binary COPY when loading a growth table
GROWTH_STEP_MAX = 12.5                          # near-linear: time x <= this per 10x points


def vm_mem_mb(pid):
    """(VmHWM, VmHWM - RssShmem - RssFile) of a local process in MB, or (None, None).

    VmHWM counts every shared-buffer page the backend touched and the mapped binaries; the
    second figure subtracts both as they stand after the query (they only grow while a
    query runs), which leaves an estimate of the backend's own peak memory (palloc'd
    arrays, sort space, ...)."""
    vals = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in ("VmHWM", "RssShmem", "RssFile"):
                    vals[key] = int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None, None
    if "VmHWM" not in vals:
        return None, None
    return vals["VmHWM"], vals["VmHWM"] - vals.get("RssShmem", 0.0) - vals.get("RssFile", 0.0)


def load_growth_table(db, n, seed):
    """growth_<n>(id, lat, lon): n points of gen.paris_points(n, seed), loaded by binary COPY
    FREEZE in chunks inside the transaction that creates the table (no WAL with
    wal_level=minimal, no hint-bit writes later). Reused when bench_meta says it matches."""
    table = f"growth_{n}"
    conn = connect(db)
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS bench_meta (k text PRIMARY KEY, v jsonb)")
    want = {"n": n, "seed": seed, "gen": GEN_VERSION}
    have = q1(cur, "SELECT v FROM bench_meta WHERE k = %s", (table,))
    exists = q1(cur, "SELECT count(*) FROM pg_class WHERE relname = %s AND relkind = 'r'", (table,))[0] == 1
    if have and have[0] == want and exists:
        log(f"growth: reusing {table}")
        conn.close()
        return table, 0.0
    log(f"growth: generating and loading {n:,} points into {table}")
    t0 = time.perf_counter()
    lat, lon = gen.paris_points(n, seed)
    t_gen = time.perf_counter() - t0
    conn.autocommit = False
    cur.execute(f"DROP TABLE IF EXISTS {table}")
    cur.execute(f"CREATE TABLE {table} (id int4 NOT NULL, lat float8 NOT NULL, lon float8 NOT NULL)")
    for s in range(0, n, GROWTH_CHUNK):
        e = min(n, s + GROWTH_CHUNK)
        cur.copy_expert(f"COPY {table} FROM STDIN (FORMAT binary, FREEZE)",
                        gen.copy_binary(lat[s:e], lon[s:e], id0=s + 1))
    conn.commit()
    del lat, lon
    t_copy = time.perf_counter() - t0 - t_gen
    conn.autocommit = True
    cur.execute(f"VACUUM (FREEZE, ANALYZE) {table}")
    cur.execute("INSERT INTO bench_meta VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                (table, json.dumps(want)))
    size = q1(cur, "SELECT pg_size_pretty(pg_table_size(%s::regclass))", (table,))[0]
    total = time.perf_counter() - t0
    log(f"growth: {table} ready in {total:.1f} s (generate {t_gen:.1f} s, binary COPY {t_copy:.1f} s, "
        f"vacuum+analyze {total - t_gen - t_copy:.1f} s), {size}")
    conn.close()
    return table, total


def growth_measure(a, db, settings, sql, args=None):
    """Best of --growth-runs runs of one query on a fresh backend, fits included: the same
    number of runs at every size, so that a single slow run at 10M cannot pass for growth.
    Returns (best, median, runs, peak MB, private peak MB, last result)."""
    b = Backend(db, settings)
    try:
        times = []
        t, out = b.timed(sql, args)
        times.append(t)
        for _ in range(a.growth_runs - 1):
            t, out = b.timed(sql, args)
            times.append(t)
        peak, priv = vm_mem_mb(b.pid)
        return min(times), statistics.median(times), len(times), peak, priv, out
    finally:
        b.close()


def register_growth_model(db, name, fit_sql, fit_args):
    """Fit again (untimed) and register the model under `name` as its only, active, version."""
    conn = connect(db)
    cur = conn.cursor()
    for k, v in SERIAL.items():
        cur.execute(f"SET {k} = %s", (str(v),))
    cur.execute("DELETE FROM cinematic_ml.model_versions WHERE model_name = %s", (name,))
    cur.execute("DELETE FROM cinematic_ml.models WHERE model_name = %s", (name,))
    cur.execute(f"SELECT cinematic_ml.register_model(%s, ({fit_sql}))", (name, *fit_args))
    info = q1(cur, "SELECT metrics, length(model) FROM cinematic_ml.model_versions WHERE model_name = %s", (name,))
    conn.close()
    return info[0], info[1]


GROWTH_METHODS = [
    # (key, label)
    ("bare", "bare scan sum(lat+lon)"),
    ("km_fit", "kmeans_fit k=16 n_init=1"),
    ("km_pred", "predict_cluster(lat, lon, name), k-means k=16"),
    ("db_fit", f"dbscan_fit eps {GROWTH_EPS_M:g} m min {GROWTH_MIN_POINTS}"),
    ("db_pred", f"predict_cluster(lat, lon, name), DBSCAN eps {GROWTH_EPS_M:g} m"),
]


def growth_workload(a, notes):
    """Train and predict at each of --growth-sizes: time, peak memory, growth per 10x points."""
    db = a.db
    rows = []
    label = dict(GROWTH_METHODS)
    km_opts = json.dumps({"seed": a.seed_fit, "n_init": 1})
    for n in a.growth_sizes:
        table, load_s = load_growth_table(db, n, a.seed)
        sample_load()

        def add(key, best, med, runs, peak, priv, note=""):
            busy = max(LOAD_SAMPLES) if LOAD_SAMPLES else None
            LOAD_SAMPLES.clear()
            r = dict(key=key, method=label[key], n=n, seconds=best, median=med, runs=runs, peak_mb=peak,
                          private_mb=priv, note=note, busy=busy, step=None, exponent=None, vs_bare=None)
            rows.append(r)
            log(f"growth {n:>10,} {label[key]:<48} {best:8.3f} s (runs {runs}), peak {peak or 0:.0f} MB, "
                f"private {priv or 0:.0f} MB {note}")
            return r

        best, med, runs, peak, priv, out = growth_measure(a, db, SERIAL, f"SELECT sum(lat + lon) FROM {table}")
        bare = add("bare", best, med, runs, peak, priv, f"load {load_s:.1f} s" if load_s else "table reused")

        # each algorithm: the fit, then predict with the same model registered by name
        # (k-means k=16 one init; DBSCAN with the DBSCAN bench's parameters)
        algorithms = [
            ("km", "SELECT cinematic_ml.kmeans_fit(lat, lon, 16, %s) AS m FROM {}", (km_opts,),
             lambda info: f"inertia {float(info['inertia']):.6g} m2, {info.get('n_iter')} iter"),
            ("db", "SELECT cinematic_ml.dbscan_fit(lat, lon, %s, %s) AS m FROM {}",
             (GROWTH_EPS_M, GROWTH_MIN_POINTS),
             lambda info: f"{info.get('n_zones')} zones, {info.get('n_noise')} noise"),
        ]
        for key, fit_tmpl, fit_args, describe in algorithms:
            fit_sql = fit_tmpl.format(table)
            best, med, runs, peak, priv, out = growth_measure(a, db, SERIAL, f"SELECT length(m) FROM ({fit_sql}) s",
                                                              fit_args)
            name = f"growth_{key}_{n}"
            info, size = register_growth_model(db, name, fit_sql, fit_args)
            add(f"{key}_fit", best, med, runs, peak, priv, f"{describe(info)}, model {size:,} B")
            best, med, runs, peak, priv, out = growth_measure(
                a, db, SERIAL, f"SELECT sum(cinematic_ml.predict_cluster(lat, lon, %s)) FROM {table}", (name,))
            r = add(f"{key}_pred", best, med, runs, peak, priv, f"sum of ids {out[0][0]}")
            r["vs_bare"] = best / bare["seconds"]
        if a.growth_drop:
            c = connect(db)
            c.cursor().execute(f"DROP TABLE {table}")
            c.cursor().execute("DELETE FROM bench_meta WHERE k = %s", (table,))
            c.close()

    # growth per 10x points between consecutive sizes
    for key, _ in GROWTH_METHODS:
        series = sorted((r for r in rows if r["key"] == key), key=lambda r: r["n"])
        for prev, cur_ in zip(series, series[1:]):
            decades = math.log10(cur_["n"] / prev["n"])
            ratio = cur_["seconds"] / prev["seconds"]
            cur_["exponent"] = math.log10(ratio) / decades
            cur_["step"] = ratio ** (1.0 / decades)
            if prev["private_mb"] and cur_["private_mb"]:
                cur_["mem_step"] = (cur_["private_mb"] / prev["private_mb"]) ** (1.0 / decades)
    return rows


def growth_summary(rows):
    """One line per method: time (and private memory) per 10x points at each step."""
    out = []
    for key, label in GROWTH_METHODS:
        series = sorted((r for r in rows if r["key"] == key), key=lambda r: r["n"])
        if len(series) < 2:
            continue
        steps = [f"{p['n']:,}->{c['n']:,}: x{c['step']:.1f}" for p, c in zip(series, series[1:])]
        worst = max(c["step"] for c in series[1:])
        mem = [f"x{c['mem_step']:.1f}" for c in series[1:] if c.get("mem_step")]
        out.append((key, label, worst, f"time per 10x points {', '.join(steps)} (exponent "
                    + ", ".join(f"{c['exponent']:.2f}" for c in series[1:]) + ")"
                    + (f"; private memory per 10x {', '.join(mem)}" if mem else "")))
    return out


def growth_table_lines(rows):
    head = ["method", "points", "seconds", "runs", "x per 10x points", "vs bare scan", "peak MB",
            "private MB", "notes"]
    body = []
    for r in rows:
        body.append([r["method"], f"{r['n']:,}", fmt_s(r["seconds"]), str(r["runs"]),
                     "-" if r["step"] is None else f"{r['step']:.2f} (n^{r['exponent']:.2f})",
                     "-" if r["vs_bare"] is None else f"{r['vs_bare']:.2f}x",
                     "-" if r["peak_mb"] is None else f"{r['peak_mb']:.0f}",
                     "-" if r["private_mb"] is None else f"{r['private_mb']:.0f}", r["note"]])
    return head, body


def print_growth(rows, out=sys.stdout):
    print_rows(*growth_table_lines(rows), out=out)


def growth_markdown(rows):
    return markdown_rows(*growth_table_lines(rows))


def append_growth_csv(path, rows, env, a):
    """Append (never rewrite) one row per (method, size) to growth.csv."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cols = ["run_at", "method", "n", "seconds", "runs", "median_seconds", "x_per_10x", "exponent",
            "ratio_to_bare_scan", "peak_mb", "private_peak_mb", "other_running", "note", "seed", "sizes",
            "git_head", "git_dirty", "pg_version", "pg_settings", "cinematic_ml", "cpu_model", "cpus", "mem_gb",
            "uname", "library"]
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(cols)
        for r in rows:
            w.writerow([env["run_at"], r["method"], r["n"], f"{r['seconds']:.6f}", r["runs"],
                        f"{r['median']:.6f}", "" if r["step"] is None else f"{r['step']:.4f}",
                        "" if r["exponent"] is None else f"{r['exponent']:.4f}",
                        "" if r["vs_bare"] is None else f"{r['vs_bare']:.4f}",
                        "" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}",
                        "" if r["private_mb"] is None else f"{r['private_mb']:.1f}",
                        "" if r["busy"] is None else f"{r['busy']:.1f}", r["note"], a.seed,
                        " ".join(str(x) for x in a.growth_sizes), env["git_head"], env["git_dirty"],
                        env["pg_version"], env["pg_settings"], env["cinematic_ml"], env["cpu_model"], env["cpus"],
                        f"{mem_gb:.0f}", env["uname"], env["library"]])


# --------------------------------------------------------------------------- targets

PARALLEL_DROP = 0.95   # "the time drops": 2 workers at least 5 % faster than none (beyond run-to-run noise)


def evaluate_targets(res, a, growth_rows=()):
    out = []

    def chk(name, ok, detail):
        out.append((name, ok, detail))

    W = "predict"
    bare = res.find(W, "bare scan sum(lat+lon)")
    # (the model-value form is reported, not a target: a model read per row from a table is
    # compared with the previous row's by its bytes, as any value must be)
    for m in ("predict_cluster(lat, lon)", "predict_cluster(lat, lon, 'bench')"):
        r = res.find(W, m)
        if r and bare:
            x = r["seconds"] / bare["seconds"]
            chk(f"{m} <= 1.5x bare scan", x <= 1.5, f"{x:.2f}x")
    r = res.find(W, "predict_cluster(lat, lon), 2 workers")
    pb = res.find(W, "bare scan, 2 workers")
    if r and pb:
        x = r["seconds"] / pb["seconds"]
        chk("predict_cluster(lat, lon) <= 1.5x bare scan, 2 workers", x <= 1.5, f"{x:.2f}x")
    ps = res.find(W, "predict_cluster(lat, lon)")
    if r and ps:
        x = r["seconds"] / ps["seconds"]
        chk(f"predict_cluster(lat, lon): time drops with 2 parallel workers (< {PARALLEL_DROP}x serial)",
            x < PARALLEL_DROP, f"{x:.2f}x ({r['seconds']:.3f} s against {ps['seconds']:.3f} s); {r['note']}")
    d = res.find(W, "DBSCAN predict_cluster(lat, lon, 'bench_db')")
    if d and bare:
        x = d["seconds"] / bare["seconds"]
        chk(f"DBSCAN predict_cluster ({d.get('zones', '?'):,} zones) <= 2x bare scan", x <= 2.0, f"{x:.2f}x")
        kp = res.find(W, "PostGIS: zone of the nearest labelled point within eps (KNN)")
        if kp:
            x = kp["seconds"] / d["seconds"]
            chk("DBSCAN predict_cluster >= 25x faster than a PostGIS KNN subquery", x >= 25, f"{x:.1f}x")
    p = res.find(W, "predict_cluster(lat, lon)")
    for m in ("SQL nearest-centroid subquery", "PostGIS KNN geometry(2154) <->", "PostGIS KNN geography <->"):
        r = res.find(W, m)
        if r and p:
            x = r["seconds"] / p["seconds"]
            chk(f"predict_cluster >= 25x faster than {m}", x >= 25, f"{x:.1f}x")
    sk_threads = os.cpu_count()
    for k in a.ks:
        W = f"k-means k={k}"
        sk = res.find(W, f"scikit-learn n_init={a.n_init}, {sk_threads} threads")
        ext = res.find(W, f"cinematic_ml kmeans_fit n_init={a.n_init}")
        ext1 = res.find(W, "cinematic_ml kmeans_fit n_init=1")
        pg = res.find(W, "PostGIS ST_ClusterKMeans() OVER ()")
        win = res.find(W, "cinematic_ml cluster_kmeans() OVER (), n_init=1")
        if sk and ext:
            x = ext["seconds"] / sk["seconds"]
            chk(f"k={k}: kmeans_fit n_init={a.n_init} <= 0.5x scikit-learn's time", x <= 0.5, f"{x:.2f}x")
            # one seed compares two random draws: the target when the sweep over seeds did not run
            swept = res.find(W, quality_name("cinematic_ml", a.quality_seeds, a.n_init))
            if not swept:
                rel = ext["inertia"] / sk["inertia"] - 1
                chk(f"k={k}: seed {a.seed_fit}, n_init={a.n_init}: inertia within 1 % of scikit-learn's "
                    f"(or better); one seed, one random draw each (--quality-seeds compares the methods)",
                    rel <= 0.01, f"{100 * rel:+.3f} %")
        par = res.find(W, "cinematic_ml kmeans_fit n_init=1, 2 workers")
        if par and ext1:
            x = par["seconds"] / ext1["seconds"]
            chk(f"k={k}: kmeans_fit n_init=1: time drops with 2 parallel workers (< {PARALLEL_DROP}x serial)",
                x < PARALLEL_DROP and par.get("parallel_ok", False),
                f"{x:.2f}x ({par['seconds']:.3f} s against {ext1['seconds']:.3f} s)"
                + ("" if par.get("parallel_ok") else "; the plan was NOT parallel with 2 workers launched"))
        for n_init in sorted({1, a.n_init}):
            qs = res.find(W, quality_name("scikit-learn", a.quality_seeds, n_init))
            qe = res.find(W, quality_name("cinematic_ml", a.quality_seeds, n_init))
            if qs and qe:
                rel = qe["inertia"] / qs["inertia"] - 1
                p = sign_test_p(qe["wins"], qe["losses"])
                chk(f"k={k}: inertia no worse than scikit-learn's, n_init={n_init}: median over "
                    f"{a.quality_seeds} seeds no higher", rel <= 0,
                    f"median {100 * rel:+.3f} %; lower at {qe['wins']} seeds, higher at {qe['losses']} (p = {p:.2f})")
        if pg and ext1 and pg["rows"] == ext1["rows"]:
            x = pg["seconds"] / ext1["seconds"]
            chk(f"k={k}: kmeans_fit (one init) >= 10x faster than ST_ClusterKMeans (one init)", x >= 10,
                f"{x:.1f}x")
        if pg and win and pg["rows"] == win["rows"]:
            x = pg["seconds"] / win["seconds"]
            chk(f"k={k}: cluster_kmeans() OVER () >= 10x faster than ST_ClusterKMeans() OVER ()", x >= 10,
                f"{x:.1f}x")
    for key, label, worst, detail in growth_summary(growth_rows):
        if key == "bare":
            continue
        chk(f"growth: {label} near-linear (<= {GROWTH_STEP_MAX:g}x time per 10x points)", worst <= GROWTH_STEP_MAX,
            detail)
    return out


# --------------------------------------------------------------------------- environment

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=HERE).stdout.strip()
    except OSError:
        return ""


def library_fingerprint():
    """sha256 (first 16 hex) and mtime of the installed cinematic_ml.so, or None."""
    import hashlib
    libdir = sh("pg_config --pkglibdir") or "/usr/lib/postgresql/15/lib"
    path = os.path.join(libdir, "cinematic_ml.so")
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        mtime = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
        return f"{digest} ({mtime.strftime('%Y-%m-%dT%H:%M:%SZ')})"
    except OSError:
        return None


def environment(db):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    conn = connect(db)
    cur = conn.cursor()
    pgver = q1(cur, "SELECT version()")[0]
    settings = {}
    for s in ("shared_buffers", "work_mem", "jit", "max_parallel_workers_per_gather",
              "min_dynamic_shared_memory"):
        settings[s] = q1(cur, f"SHOW {s}")[0]
    extver = q1(cur, "SELECT extversion FROM pg_extension WHERE extname = 'cinematic_ml'")[0]
    postgis = q1(cur, "SELECT postgis_lib_version()")[0]
    conn.close()
    import sklearn
    return {
        "uname": sh("uname -a"),
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "pg_version": pgver,
        "pg_settings": ", ".join(f"{k}={v}" for k, v in settings.items()),
        "cinematic_ml": extver,
        "postgis": postgis,
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "git_head": sh("git rev-parse HEAD"),
        "library": library_fingerprint() or "",
        "git_dirty": "yes" if sh("git status --porcelain --untracked-files=no -- ../src ../sql") else "no",
        "run_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_csv(path, res, env, a):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cols = ["run_at", "workload", "method", "rows", "seconds", "runs", "median_seconds", "scaled_from_rows",
            "ratio", "ref", "peak_mb", "inertia_m2", "other_running", "note", "n", "n_init", "git_head", "git_dirty",
            "pg_version", "pg_settings", "cinematic_ml", "postgis", "sklearn", "numpy", "cpu_model", "cpus",
            "uname", "library"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in res.rows:
            w.writerow([env["run_at"], r["workload"], r["method"], r["rows"], f"{r['seconds']:.6f}", r["runs"],
                        "" if r["median"] is None else f"{r['median']:.6f}", r["scaled_from"] or "",
                        "" if r["ratio"] is None else f"{r['ratio']:.4f}", r["ref"] or "",
                        "" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}",
                        "" if r["inertia"] is None else f"{r['inertia']:.6f}",
                        "" if r["busy"] is None else f"{r['busy']:.1f}", r["note"], a.n, a.n_init,
                        env["git_head"], env["git_dirty"], env["pg_version"], env["pg_settings"],
                        env["cinematic_ml"], env["postgis"], env["sklearn"], env["numpy"], env["cpu_model"],
                        env["cpus"], env["uname"], env["library"]])


# --------------------------------------------------------------------------- main

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--sklearn-sweep":
        sklearn_sweep_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--sklearn-worker":
        sklearn_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return 0

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=os.environ.get("BENCH_DB", "cml_bench"))
    ap.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", 1000000)), help="points (1,000,000)")
    ap.add_argument("--seed", type=int, default=1, help="data generator seed (1)")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", 5)),
                    help="runs per predict query, best kept (5)")
    ap.add_argument("--subset", type=int, default=100000,
                    help="rows of the subset used when a subquery is too slow at N (100,000)")
    ap.add_argument("--subquery-budget", type=float, default=float(os.environ.get("BENCH_SUBQUERY_BUDGET", 60)),
                    help="seconds allowed for all runs of one subquery at full N before falling back to "
                         "the subset (60)")
    ap.add_argument("--n-init", type=int, default=int(os.environ.get("BENCH_N_INIT", 3)),
                    help="n_init for kmeans_fit and scikit-learn (3)")
    ap.add_argument("--seed-fit", type=int, default=1, help="k-means seed / random_state (1)")
    ap.add_argument("--ks", default=os.environ.get("BENCH_KS", "16,64"), help="k values (16,64)")
    ap.add_argument("--postgis-kmeans-rows", type=int,
                    default=int(os.environ.get("BENCH_POSTGIS_KMEANS_ROWS", 10 ** 9)),
                    help="run ST_ClusterKMeans on the subset when N exceeds this (default: always full N)")
    ap.add_argument("--fit-repeat-below", type=float, default=5.0,
                    help="k-means fits faster than this many seconds run --fit-runs times, best kept (5)")
    ap.add_argument("--fit-runs", type=int, default=5,
                    help="runs of a fast k-means fit, either method, best kept (5: on a shared 2-core VM "
                         "the best of 3 varied by 20 %% between runs of the same build)")
    ap.add_argument("--quality-seeds", type=int, default=int(os.environ.get("BENCH_QUALITY_SEEDS", 30)),
                    help="fits over this many seeds (one init, and the bench's n_init), both "
                         "implementations, to compare the inertia distributions (30; 0 skips)")
    ap.add_argument("--quality-ks", default="16", help="k values of the quality sweep (16)")
    ap.add_argument("--no-sklearn-1thread", dest="sklearn_1thread", action="store_false",
                    help="skip the single-threaded scikit-learn runs")
    ap.add_argument("--no-parallel-check", dest="parallel_check", action="store_false")
    ap.add_argument("--parallel-ks", default="16,64",
                    help="k values for which kmeans_fit n_init=1 also runs with 2 parallel workers (16; '' skips)")
    ap.add_argument("--growth-sizes", default=os.environ.get("BENCH_GROWTH_SIZES", "100000,1000000,10000000"),
                    help="growth series: train and predict at these sizes, each in its own table "
                         "growth_<n> (100000,1000000,10000000; 'none' skips)")
    ap.add_argument("--no-growth", dest="growth_sizes", action="store_const", const="none",
                    help="skip the growth series (same as --growth-sizes none)")
    ap.add_argument("--growth-runs", type=int, default=3,
                    help="runs per growth query (fits included, at every size), best kept (3)")
    ap.add_argument("--growth-drop", action="store_true",
                    help="drop each growth_<n> table after use (default: keep it for the next run)")
    ap.add_argument("--growth-csv", default=os.path.join(HERE, "results", "growth.csv"),
                    help="growth rows are appended here (bench/results/growth.csv)")
    ap.add_argument("--only", choices=["predict", "kmeans", "growth"], default=os.environ.get("BENCH_ONLY") or None)
    ap.add_argument("--regen", action="store_true", help="regenerate the points even if they match")
    ap.add_argument("--csv", default=os.path.join(HERE, "results", "bench.csv"))
    a = ap.parse_args()
    a.ks = [int(x) for x in a.ks.split(",") if x.strip()]
    a.quality_ks = [int(x) for x in a.quality_ks.split(",") if x.strip()]
    a.subset = min(a.subset, a.n)
    a.parallel_ks = [int(x) for x in a.parallel_ks.split(",") if x.strip()]
    gs = a.growth_sizes.strip().lower()
    a.growth_sizes = [] if gs in ("", "0", "none", "no") else \
        sorted({int(float(x)) for x in a.growth_sizes.split(",") if x.strip()})

    t_start = time.perf_counter()
    ensure_database(a.db)
    env = environment(a.db)
    if a.only in (None, "predict", "kmeans"):
        setup_points(a.db, a.n, a.seed, a.subset, a.regen)
    res = Results()
    notes = []
    growth_rows = []
    if a.only in (None, "predict"):
        predict_workload(a, res, notes)
    if a.only in (None, "kmeans"):
        kmeans_workload(a, res, notes)
    if a.only in (None, "growth") and a.growth_sizes:
        growth_rows = growth_workload(a, notes)
    res.resolve_ratios()
    busy = [(r["busy"], r["workload"], r["method"]) for r in res.rows if r["busy"] is not None]
    busy += [(r["busy"], "growth", f"{r['method']} at {r['n']:,}") for r in growth_rows if r["busy"] is not None]
    if busy:
        worst = max(busy)
        if worst[0] >= 0.5:
            notes.insert(0, f"WARNING: other processes were running on this {os.cpu_count()}-CPU machine "
                            f"(up to {worst[0]:.1f} besides the benchmark, before '{worst[1]}: {worst[2]}'); "
                            "timings are unreliable: run again on a quiet machine (column other_running "
                            "in the CSV)")
    lib_end = library_fingerprint() or ""
    if lib_end != env["library"]:
        notes.insert(0, f"WARNING: cinematic_ml.so was reinstalled during the run ({env['library']} -> "
                        f"{lib_end}): later measurements may come from another build; run again")
        env["library"] = f"{env['library']} -> {lib_end}"

    print()
    if res.rows:
        print(f"cinematic_ml benchmarks: {a.n:,} Paris-like points, seed {a.seed}; predict: best of {a.runs}; "
              f"k-means: best of {a.fit_runs} when under {a.fit_repeat_below:g} s, else one run; n_init={a.n_init}, "
              f"seed {a.seed_fit}")
    else:
        print(f"cinematic_ml growth series: {', '.join(f'{x:,}' for x in a.growth_sizes)} Paris-like points, "
              f"seed {a.seed}")
    print(f"git {env['git_head'][:12]}{' (src/sql modified)' if env['git_dirty'] == 'yes' else ''}, "
          f"{env['pg_version'].split(',')[0]}, PostGIS {env['postgis']}, scikit-learn {env['sklearn']}, "
          f"{env['cpu_model']} x{env['cpus']}")
    print(f"server: {env['pg_settings']}")
    print()
    if res.rows:
        print_table(res)
        print()
    if growth_rows:
        print(f"growth series (seed {a.seed}; one process, no parallel workers; k-means k=16 n_init=1, "
              f"DBSCAN eps {GROWTH_EPS_M:g} m min {GROWTH_MIN_POINTS}; predict by model name):")
        print_growth(growth_rows)
        for key, label, worst, detail in growth_summary(growth_rows):
            print(f"  {label}: {detail}")
        print()
    targets = evaluate_targets(res, a, growth_rows)
    print("targets:")
    for name, ok, detail in targets:
        print(f"  [{'MET ' if ok else 'MISS'}] {name}: {detail}")
    if notes:
        print()
        print("notes:")
        for nline in notes:
            print("  - " + nline)
    wrote = []
    if res.rows:
        write_csv(a.csv, res, env, a)
        wrote.append(a.csv)
    if growth_rows:
        append_growth_csv(a.growth_csv, growth_rows, env, a)
        wrote.append(a.growth_csv + " (appended)")
    md = os.path.join(os.path.dirname(a.csv), "latest.md")
    os.makedirs(os.path.dirname(md), exist_ok=True)
    with open(md, "w") as f:
        f.write(f"{a.n:,} points; git {env['git_head'][:12]}; {env['pg_version'].split(',')[0]}; "
                f"{env['cpu_model']} x{env['cpus']}; {env['pg_settings']}\n\n")
        if res.rows:
            f.write(markdown_table(res) + "\n\n")
        if growth_rows:
            f.write(f"Growth series (seed {a.seed}, sizes {', '.join(f'{x:,}' for x in a.growth_sizes)}):\n\n")
            f.write(growth_markdown(growth_rows) + "\n\n")
            for key, label, worst, detail in growth_summary(growth_rows):
                f.write(f"- {label}: {detail}\n")
            f.write("\n")
        for name, ok, detail in targets:
            f.write(f"- {'met' if ok else '**missed**'}: {name}: {detail}\n")
        for nline in notes:
            f.write(f"- {nline}\n")
    print()
    wrote.append(md)
    print(f"wrote {', '.join(wrote)} in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
