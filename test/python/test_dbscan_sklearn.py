#!/usr/bin/python3
"""DBSCAN parity with scikit-learn: same zones, same noise, the same label on every row.

scikit-learn runs DBSCAN(eps = eps_m / 6371000, min_samples = min_points,
metric='haversine', algorithm='ball_tree') on the radians of (lat, lon), in the
same order as the SQL (ORDER BY id).  cinematic_ml numbers its clusters by their
first core point in input order and gives a border point the smallest-numbered
neighbouring cluster, which is what scikit-learn's expansion does, so the labels
must be identical, not just equivalent.

Checked for each case: the window function cluster_dbscan (whole-partition frame,
and the default frame of OVER (ORDER BY id): the function reads the partition,
not the frame), model_info(dbscan_fit(...)) n_zones / n_noise, and dbscan_fit
under a forced parallel plan.

1. Generated data (always runs): 20,000 points in blobs with noise and duplicates.
2. The shared Paris data, when present: all rows (eps 100, min 10 -> 207 zones),
   2016-2019 (160), 2020-2023 (125), and two other settings.

Exit 0 when everything passed, 1 on any failure, 77 when the Paris CSV is absent
(after the generated-data checks passed: a regression there still fails).
"""
import os
import time

import numpy as np
from psycopg2.extras import execute_values
from sklearn.cluster import DBSCAN

from cmltest import PARIS_CSV, R, Checks, database, load_paris

c = Checks()

PARALLEL = ("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; "
            "SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2")
SERIAL = ("RESET parallel_setup_cost; RESET parallel_tuple_cost; "
          "RESET min_parallel_table_scan_size; RESET max_parallel_workers_per_gather")


def sklearn_labels(lat, lon, eps_m, min_points):
    X = np.radians(np.column_stack([np.asarray(lat, float), np.asarray(lon, float)]))
    t0 = time.time()
    labels = DBSCAN(eps=eps_m / R, min_samples=min_points, metric="haversine",
                    algorithm="ball_tree").fit(X).labels_
    return labels, time.time() - t0


def compare(cur, table, where, eps_m, min_points, expect_zones=None):
    """All the checks of one case; where is a SQL condition on table (or TRUE)."""
    what = f"{table} [{where}] eps {eps_m} m, min_points {min_points}"
    cur.execute(f"SELECT lat, lon FROM {table} WHERE {where} ORDER BY id")
    pts = cur.fetchall()
    ref, t_sk = sklearn_labels([p[0] for p in pts], [p[1] for p in pts], eps_m, min_points)
    ref_zones = len(set(ref.tolist()) - {-1})
    ref_noise = int((ref == -1).sum())

    t0 = time.time()
    cur.execute(f"""SELECT cinematic_ml.cluster_dbscan(lat, lon, %s, %s)
                           OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
                      FROM {table} WHERE {where} ORDER BY id""", (eps_m, min_points))
    ours = np.array([r[0] for r in cur.fetchall()])
    t_us = time.time() - t0
    zones = len(set(ours.tolist()) - {-1})
    noise = int((ours == -1).sum())
    c.check(zones == ref_zones, f"{what}: {zones} zones, scikit-learn {ref_zones}")
    c.check(noise == ref_noise, f"{what}: {noise} noise points, scikit-learn {ref_noise}")
    diff = np.flatnonzero(ours != ref)
    c.check(len(ours) == len(ref) and diff.size == 0,
            f"{what}: identical labels on all {len(ref)} rows"
            + (f" ({diff.size} differ, first at row {diff[0]}: {ours[diff[0]]} vs {ref[diff[0]]})" if diff.size else "")
            + f"; time {t_us:.2f}s vs scikit-learn {t_sk:.2f}s")
    if expect_zones is not None:
        c.check(ref_zones == expect_zones and zones == expect_zones,
                f"{what}: the documented {expect_zones} zones")

    cur.execute(f"""SELECT cinematic_ml.cluster_dbscan(lat, lon, %s, %s) OVER (ORDER BY id)
                      FROM {table} WHERE {where} ORDER BY id""", (eps_m, min_points))
    c.check(np.array_equal(np.array([r[0] for r in cur.fetchall()]), ref),
            f"{what}: the default frame of OVER (ORDER BY id) gives the same labels")

    fit = f"SELECT cinematic_ml.model_info(cinematic_ml.dbscan_fit(lat, lon, %s, %s)) FROM {table} WHERE {where}"
    cur.execute(fit, (eps_m, min_points))
    info = cur.fetchone()[0]
    c.check(info["n_zones"] == ref_zones and info["n_noise"] == ref_noise,
            f"{what}: dbscan_fit model has n_zones {info['n_zones']}, n_noise {info['n_noise']}")

    cur.execute(PARALLEL)
    cur.execute("EXPLAIN (COSTS OFF) " + fit, (eps_m, min_points))
    plan = "\n".join(r[0] for r in cur.fetchall())
    cur.execute(fit, (eps_m, min_points))
    pinfo = cur.fetchone()[0]
    cur.execute(SERIAL)
    c.check("Partial Aggregate" in plan and "Gather" in plan,
            f"{what}: the forced plan is parallel (partial aggregates combined)")
    c.check(pinfo["n_zones"] == ref_zones and pinfo["n_noise"] == ref_noise,
            f"{what}: parallel dbscan_fit gives n_zones {pinfo['n_zones']}, n_noise {pinfo['n_noise']}")


def generated_points():
    """20,000 points: blobs of 30-150 m around 12 centres in Paris, 20% uniform noise,
    and 1,000 exact duplicates of earlier points (real data repeats addresses)."""
    rng = np.random.default_rng(20240611)
    n_blob, n_noise, n_dup = 15000, 4000, 1000
    centres = np.column_stack([rng.uniform(48.83, 48.89, 12), rng.uniform(2.28, 2.40, 12)])
    sigma_m = rng.uniform(30, 150, 12)
    which = rng.integers(0, 12, n_blob)
    lat = centres[which, 0] + rng.normal(0, 1, n_blob) * sigma_m[which] / 111195.0
    lon = centres[which, 1] + rng.normal(0, 1, n_blob) * sigma_m[which] / (111195.0 * np.cos(np.radians(centres[which, 0])))
    lat = np.concatenate([lat, rng.uniform(48.80, 48.92, n_noise)])
    lon = np.concatenate([lon, rng.uniform(2.24, 2.42, n_noise)])
    dup = rng.integers(0, len(lat), n_dup)
    lat = np.concatenate([lat, lat[dup]])
    lon = np.concatenate([lon, lon[dup]])
    order = rng.permutation(len(lat))
    return [(i + 1, float(lat[j]), float(lon[j])) for i, j in enumerate(order)]


with database("cml_t_dbscan") as conn:
    with conn.cursor() as cur:
        # 1. generated data
        cur.execute("CREATE TABLE gen (id int PRIMARY KEY, lat float8, lon float8)")
        execute_values(cur, "INSERT INTO gen VALUES %s", generated_points(), page_size=5000)
        cur.execute("ANALYZE gen")
        for eps_m, min_points in ((20, 10), (50, 40), (8, 3)):
            compare(cur, "gen", "TRUE", eps_m, min_points)

        # 2. the shared Paris data
        paris = os.path.exists(PARIS_CSV)
        if paris:
            load_paris(conn)
            compare(cur, "shoots", "TRUE", 100, 10, expect_zones=207)
            compare(cur, "shoots", "year <= 2019", 100, 10, expect_zones=160)
            compare(cur, "shoots", "year >= 2020", 100, 10, expect_zones=125)
            compare(cur, "shoots", "TRUE", 50, 5)
            compare(cur, "shoots", "TRUE", 250, 30)
        else:
            print(f"SKIP: shared Paris data not found at {PARIS_CSV}; only the generated-data checks ran")

if c.failed:
    c.exit()
if not paris:
    raise SystemExit(77)
c.exit()
