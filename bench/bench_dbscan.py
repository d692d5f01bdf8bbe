#!/usr/bin/python3
"""DBSCAN benchmark: cinematic_ml against PostGIS ST_ClusterDBSCAN and scikit-learn.

    PGHOST=... PGPORT=... PGUSER=... bench/bench_dbscan.py [--n 1000000] [--eps 20] [--min-points 50]
    bench/bench_dbscan.py --n 10000000          # the 10M run

Not part of the test suite.  Generates N Paris-like points (Gaussian blobs of 30-150 m
sigma around 20 landmarks, plus 20% uniform noise; deterministic for a seed) into its own
database (default cml_bench_dbscan, kept between runs and reused when N and the seed are
unchanged), then times, each on the same points:

  cinematic_ml  dbscan_fit(lat, lon, eps, min)            aggregate -> model, one process
  cinematic_ml  dbscan_fit, default parallel settings      (partial aggregates, 2 workers)
  cinematic_ml  cluster_dbscan(lat, lon, eps, min) OVER () window function -> labels
  PostGIS       ST_ClusterDBSCAN(g, eps, minpoints) OVER () on Lambert-93 (EPSG:2154) points,
                transformed beforehand (outside the timing): PostGIS clusters in planar units
  scikit-learn  DBSCAN(metric='haversine', algorithm='ball_tree') on radians, in a child
                process (fit only; loading the points is not timed)

The comparison runs at 100,000 points (every method) and at N.  At N, PostGIS and
scikit-learn run only when an extrapolation from the 100k run (quadratic: the neighbour
pairs grow with N times the density) fits the time budget, and scikit-learn only when its
memory does (its neighbour lists are held in full); otherwise the table says so.
--force runs them anyway.  Zones and noise are compared with scikit-learn (same metric:
haversine on R = 6,371,000 m, so they must be equal; labels too); PostGIS clusters in
Lambert-93 metres (a conformal projection, scale error ~1e-4 here) and labels noise NULL, so
its counts may differ by a few.

Prints a table (seconds, ratio to cinematic_ml's one-process dbscan_fit, zones, noise) and
appends rows to bench/results/dbscan.csv with the machine, PostgreSQL version and git commit.
"""
import argparse
import csv
import datetime
import io
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import psycopg2

R_EARTH_M = 6371000.0
M_PER_DEG = R_EARTH_M * np.pi / 180.0
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# ~20 places film crews love: the blobs' centres
LANDMARKS = [
    (48.8584, 2.2945), (48.8606, 2.3376), (48.8530, 2.3499), (48.8867, 2.3431),
    (48.8738, 2.2950), (48.8656, 2.3212), (48.8720, 2.3316), (48.8462, 2.3464),
    (48.8462, 2.3372), (48.8606, 2.3522), (48.8532, 2.3692), (48.8710, 2.3650),
    (48.8809, 2.3828), (48.8614, 2.3933), (48.8600, 2.3266), (48.8616, 2.2893),
    (48.8556, 2.3655), (48.8809, 2.3553), (48.8400, 2.3790), (48.8421, 2.3219),
]
BBOX = (48.815, 48.902, 2.25, 2.42)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def paris_points(n, seed):
    """(lat, lon) arrays of n points: 80% in blobs of sigma 30-150 m, 20% uniform noise, shuffled."""
    rng = np.random.default_rng(seed)
    centres = np.array(LANDMARKS)
    m = len(centres)
    sigma = rng.uniform(30.0, 150.0, m)
    n_noise = n // 5
    which = rng.integers(0, m, n - n_noise)
    lat = centres[which, 0] + rng.standard_normal(n - n_noise) * sigma[which] / M_PER_DEG
    lon = centres[which, 1] + rng.standard_normal(n - n_noise) * sigma[which] / (
        M_PER_DEG * np.cos(np.radians(centres[which, 0])))
    lat = np.concatenate([lat, rng.uniform(BBOX[0], BBOX[1], n_noise)])
    lon = np.concatenate([lon, rng.uniform(BBOX[2], BBOX[3], n_noise)])
    order = rng.permutation(n)
    return lat[order], lon[order]


def connect(dbname):
    conn = psycopg2.connect(dbname=dbname)
    conn.autocommit = True
    return conn


def ensure_database(dbname):
    admin = connect("postgres")
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{dbname}"')
    admin.close()
    conn = connect(dbname)
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS cinematic_ml")
        try:
            cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg2.Error as e:
            log(f"PostGIS unavailable: {e}".strip())
    return conn


def has_postgis(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
        r = cur.fetchone()
    return r[0] if r else None


def setup_points(conn, table, n, seed, postgis):
    """Table of n points (id, lat, lon[, g in EPSG:2154]), reused when it already holds them."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS bench_meta (tab text PRIMARY KEY, n bigint, seed bigint, postgis bool)")
        cur.execute("SELECT n, seed, postgis FROM bench_meta WHERE tab = %s", (table,))
        r = cur.fetchone()
        if r == (n, seed, bool(postgis)):
            return
        log(f"generating {n:,} points into {table}")
        lat, lon = paris_points(n, seed)
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (id int, lat float8, lon float8)")
        step = 1_000_000
        for s in range(0, n, step):
            buf = io.StringIO()
            for i in range(s, min(n, s + step)):
                buf.write(f"{i + 1}\t{lat[i]!r}\t{lon[i]!r}\n")
            buf.seek(0)
            cur.copy_expert(f"COPY {table} FROM STDIN", buf)
        if postgis:
            log("transforming to Lambert-93 (EPSG:2154), outside the timing")
            cur.execute(f"ALTER TABLE {table} ADD COLUMN g geometry(Point, 2154)")
            cur.execute(f"UPDATE {table} SET g = ST_Transform(ST_SetSRID(ST_MakePoint(lon, lat), 4326), 2154)")
        cur.execute(f"VACUUM ANALYZE {table}")
        cur.execute("INSERT INTO bench_meta VALUES (%s, %s, %s, %s) ON CONFLICT (tab) DO UPDATE "
                    "SET n = EXCLUDED.n, seed = EXCLUDED.seed, postgis = EXCLUDED.postgis",
                    (table, n, seed, bool(postgis)))


def timed(conn, sql, args, settings, runs, timeout_s=None):
    """Best wall time of runs executions and the last result row; None on timeout."""
    best, row = None, None
    with conn.cursor() as cur:
        for s in settings:
            cur.execute(s)
        cur.execute("SET statement_timeout = %s", (int(timeout_s * 1000) if timeout_s else 0,))
        for _ in range(runs):
            t0 = time.perf_counter()
            try:
                cur.execute(sql, args)
            except psycopg2.errors.QueryCanceled:
                cur.execute("RESET ALL")
                return None, None
            row = cur.fetchone()
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        cur.execute("RESET ALL")
    return best, row


SERIAL = ["SET max_parallel_workers_per_gather = 0", "SET work_mem = '1GB'"]
PARALLEL = ["RESET max_parallel_workers_per_gather", "SET work_mem = '1GB'"]

SKLEARN_CHILD = r"""
import json, sys, time, resource
import numpy as np
from sklearn.cluster import DBSCAN
a = json.loads(sys.argv[1])
limit = a["mem_limit"]
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
X = np.load(a["npy"])
base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    labels = DBSCAN(eps=a["eps"] / 6371000.0, min_samples=a["min"], metric="haversine",
                    algorithm="ball_tree", n_jobs=a["jobs"]).fit(X).labels_
except MemoryError:
    print(json.dumps({"error": "MemoryError"})); sys.exit(0)
dt = time.perf_counter() - t0
np.save(a["out"], labels.astype(np.int32))
print(json.dumps({"seconds": dt, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "base_kb": base_kb}))
"""


def run_sklearn(conn, table, eps, min_points, jobs, timeout_s, mem_limit):
    with conn.cursor() as cur:
        cur.execute(f"SELECT lat, lon FROM {table} ORDER BY id")
        X = np.radians(np.array(cur.fetchall(), dtype=float))
    work = os.path.join(HERE, "dbscan")
    os.makedirs(work, exist_ok=True)
    npy, out = os.path.join(work, "points.npy"), os.path.join(work, "labels.npy")
    np.save(npy, X)
    args = json.dumps({"npy": npy, "out": out, "eps": eps, "min": min_points, "jobs": jobs,
                       "mem_limit": mem_limit})
    try:
        p = subprocess.run(["/usr/bin/python3", "-c", SKLEARN_CHILD, args], capture_output=True,
                           text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, None, f"timed out after {timeout_s:.0f}s"
    finally:
        os.unlink(npy)
    if p.returncode != 0 or not p.stdout.strip():
        return None, None, "failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    if "error" in r:
        return None, None, r["error"]
    labels = np.load(out)
    os.unlink(out)
    return r["seconds"], labels, (r["maxrss_kb"] / 1024, r["base_kb"] / 1024)


def cml_labels(conn, table, eps, min_points):
    with conn.cursor() as cur:
        cur.execute("SET work_mem = '1GB'")
        cur.execute(f"SELECT cinematic_ml.cluster_dbscan(lat, lon, %s, %s) OVER (ORDER BY id ROWS BETWEEN "
                    f"UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) FROM {table} ORDER BY id", (eps, min_points))
        return np.array([r[0] for r in cur.fetchall()], dtype=np.int32)


def bench_size(conn, a, n, table, postgis, ref100k, results):
    """Every method on one table; ref100k: {method: (seconds, rss_mb)} of the 100k run, or None."""
    eps, mp = a.eps, a.min_points
    rows = []

    def add(method, seconds, zones=None, noise=None, note=""):
        rows.append({"n": n, "method": method, "seconds": seconds, "zones": zones, "noise": noise, "note": note})
        log(f"{n:>10,} {method:<52} {'-' if seconds is None else f'{seconds:.3f}s'} zones={zones} noise={noise} {note}")

    runs = a.runs if n <= 2_000_000 else 1
    fit = f"SELECT cinematic_ml.model_info(cinematic_ml.dbscan_fit(lat, lon, %s, %s)) FROM {table}"
    t, r = timed(conn, fit, (eps, mp), SERIAL, runs)
    add("cinematic_ml dbscan_fit (1 process)", t, r[0]["n_zones"], r[0]["n_noise"], f"best of {runs}")
    t, r = timed(conn, fit, (eps, mp), PARALLEL, runs)
    add("cinematic_ml dbscan_fit (parallel)", t, r[0]["n_zones"], r[0]["n_noise"], f"best of {runs}")
    win = (f"SELECT count(DISTINCT c) FILTER (WHERE c >= 0), count(*) FILTER (WHERE c < 0) FROM "
           f"(SELECT cinematic_ml.cluster_dbscan(lat, lon, %s, %s) OVER () AS c FROM {table}) s")
    t, r = timed(conn, win, (eps, mp), SERIAL, runs)
    add("cinematic_ml cluster_dbscan() OVER ()", t, r[0], r[1], f"best of {runs}")

    def too_long(method):
        """Reason to skip a method at n, from its 100k run, or None."""
        if a.force or ref100k is None or n <= 100_000:
            return None
        base = ref100k.get(method)
        if base is None or base[0] is None:
            return "did not complete at 100k"
        est = base[0] * (n / 100_000) ** 2
        if est > a.budget:
            return f"skipped: ~{est:,.0f}s extrapolated from 100k (> budget {a.budget:.0f}s)"
        if base[1] is not None:
            peak, start = base[1]
            est_gb = (start + (peak - start) * (n / 100_000) ** 2) / 1024
            if est_gb > a.sklearn_mem_gb:
                return (f"skipped: ~{est_gb:,.0f} GB (neighbour lists) extrapolated from 100k "
                        f"(> --sklearn-mem-gb {a.sklearn_mem_gb:.0f})")
        return None

    if postgis:
        m = "PostGIS ST_ClusterDBSCAN() OVER () (2154)"
        why = too_long(m)
        if why:
            add(m, None, note=why)
        else:
            q = (f"SELECT count(DISTINCT c), count(*) - count(c) FROM "
                 f"(SELECT ST_ClusterDBSCAN(g, eps := %s, minpoints := %s) OVER () AS c FROM {table}) s")
            t, r = timed(conn, q, (eps, mp), SERIAL, 1, a.budget)
            add(m, t, r[0] if r else None, r[1] if r else None,
                "single run" if t is not None else f"statement_timeout {a.budget:.0f}s")
        results.setdefault(n, {})[m] = (rows[-1]["seconds"], None)
    else:
        add("PostGIS ST_ClusterDBSCAN() OVER () (2154)", None, note="PostGIS not installed")

    m = f"scikit-learn DBSCAN haversine ball_tree (n_jobs={a.jobs})"
    why = too_long(m)
    if why:
        add(m, None, note=why)
        results.setdefault(n, {})[m] = (None, None)
    else:
        t, labels, info = run_sklearn(conn, table, eps, mp, a.jobs, a.budget,
                                      int(a.sklearn_mem_gb * 2 ** 30))
        if labels is not None:
            rss = info
            note = f"peak RSS {info[0]:.0f} MB ({info[0] - info[1]:.0f} MB in the fit)"
            zones, noise = len(set(labels.tolist()) - {-1}), int((labels == -1).sum())
            ours = cml_labels(conn, table, eps, mp)
            same = np.array_equal(ours, labels)
            note += "; labels identical to cinematic_ml" if same else \
                f"; LABELS DIFFER from cinematic_ml on {int((ours != labels).sum())} rows"
            add(m, t, zones, noise, note)
        else:
            add(m, None, note=info)
            rss = None
        results.setdefault(n, {})[m] = (t, rss)
    for r in rows:
        results.setdefault(n, {}).setdefault(r["method"], (r["seconds"], None))
    return rows


def environment(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT version()")
        pg = cur.fetchone()[0]
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        commit += "+dirty" if dirty else ""
    except OSError:
        commit = "?"
    import sklearn
    return {"machine": f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GB",
            "pg_version": pg.split(" on ")[0], "git_commit": commit, "sklearn": sklearn.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="points (default 1,000,000; e.g. 10000000)")
    ap.add_argument("--eps", type=float, default=20.0, help="eps in metres (default 20)")
    ap.add_argument("--min-points", type=int, default=50, help="min_points (default 50)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--runs", type=int, default=3, help="runs of each cinematic_ml query, best kept")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds allowed to PostGIS / scikit-learn per run")
    ap.add_argument("--sklearn-mem-gb", type=float, default=12.0, help="memory allowed to scikit-learn")
    ap.add_argument("--jobs", type=int, default=1, help="scikit-learn n_jobs (default 1, like one backend)")
    ap.add_argument("--force", action="store_true", help="run PostGIS and scikit-learn at N whatever the estimate")
    ap.add_argument("--db", default="cml_bench_dbscan")
    ap.add_argument("--csv", default=os.path.join(HERE, "results", "dbscan.csv"))
    a = ap.parse_args()

    conn = ensure_database(a.db)
    postgis = has_postgis(conn)
    env = environment(conn)
    env["postgis"] = postgis or "absent"
    log(json.dumps(env))

    results, rows = {}, []
    sizes = [100_000] + ([a.n] if a.n != 100_000 else [])
    for n in sizes:
        table = f"pts_{n}"
        setup_points(conn, table, n, a.seed, postgis)
        rows += bench_size(conn, a, n, table, postgis, results.get(100_000) if n > 100_000 else None, results)

    # ratios against cinematic_ml's one-process dbscan_fit at the same n
    for r in rows:
        ref = next(x["seconds"] for x in rows if x["n"] == r["n"] and x["method"] == "cinematic_ml dbscan_fit (1 process)")
        r["ratio"] = r["seconds"] / ref if r["seconds"] and ref else None

    print()
    print(f"DBSCAN eps {a.eps:g} m, min_points {a.min_points}, Paris-like points (seed {a.seed}); "
          f"{env['machine']}; {env['pg_version']}; PostGIS {env['postgis']}; scikit-learn {env['sklearn']}; "
          f"commit {env['git_commit']}")
    hdr = f"{'points':>11}  {'method':<52} {'seconds':>9} {'x cml':>7} {'zones':>6} {'noise':>8}  note"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        s = "-" if r["seconds"] is None else f"{r['seconds']:.3f}"
        x = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['n']:>11,}  {r['method']:<52} {s:>9} {x:>7} {'' if r['zones'] is None else r['zones']:>6} "
              f"{'' if r['noise'] is None else r['noise']:>8}  {r['note']}")
    for n in sorted({r["n"] for r in rows}):
        ours = next(r for r in rows if r["n"] == n and r["method"].startswith("cinematic_ml dbscan_fit (1"))
        sk = next((r for r in rows if r["n"] == n and r["method"].startswith("scikit-learn") and r["zones"] is not None), None)
        if sk:
            same = ours["zones"] == sk["zones"] and ours["noise"] == sk["noise"]
            print(f"{n:,} points: zones/noise cinematic_ml {ours['zones']}/{ours['noise']}, scikit-learn "
                  f"{sk['zones']}/{sk['noise']}: {'equal' if same else 'DIFFERENT'}")
        else:
            print(f"{n:,} points: scikit-learn did not run, no zone comparison")

    os.makedirs(os.path.dirname(a.csv), exist_ok=True)
    new = not os.path.exists(a.csv)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with open(a.csv, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["utc", "machine", "pg_version", "postgis", "sklearn", "git_commit", "n", "eps_m",
                        "min_points", "method", "seconds", "ratio_to_cml_fit", "zones", "noise", "note"])
        for r in rows:
            w.writerow([stamp, env["machine"], env["pg_version"], env["postgis"], env["sklearn"], env["git_commit"],
                        r["n"], a.eps, a.min_points, r["method"],
                        "" if r["seconds"] is None else f"{r['seconds']:.4f}",
                        "" if r["ratio"] is None else f"{r['ratio']:.3f}",
                        "" if r["zones"] is None else r["zones"], "" if r["noise"] is None else r["noise"], r["note"]])
    print(f"\nappended {len(rows)} rows to {os.path.relpath(a.csv, ROOT)}")


if __name__ == "__main__":
    main()
