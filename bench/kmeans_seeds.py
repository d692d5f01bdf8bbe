#!/usr/bin/python3
"""k-means quality over seeds: cinematic_ml kmeans_fit against scikit-learn's KMeans (Lloyd,
greedy k-means++), the same n_init, on the benchmark's points (table pts of bench.py's
database), for seeds 1..N. One seed compares two random draws; the medians compare the methods.

    PGHOST=... PGPORT=... PGUSER=... /usr/bin/python3 bench/kmeans_seeds.py [--k 16] [--n-init 3] [--seeds 8]
"""
import argparse
import json
import os

import numpy as np
import psycopg2
from sklearn.cluster import KMeans

EARTH_RADIUS_M = 6371000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=os.environ.get("BENCH_DB", "cml_bench"))
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--n-init", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=8)
    a = ap.parse_args()

    conn = psycopg2.connect(dbname=a.db)
    cur = conn.cursor()
    cur.execute("SET max_parallel_workers_per_gather = 0")
    cur.execute("SELECT lat, lon FROM pts")
    ll = np.radians(np.array(cur.fetchall(), dtype=float))
    # the same 3-D vectors (times R) as the extension's, so inertias are comparable
    x = np.stack([np.cos(ll[:, 0]) * np.cos(ll[:, 1]), np.cos(ll[:, 0]) * np.sin(ll[:, 1]),
                  np.sin(ll[:, 0])], 1) * EARTH_RADIUS_M
    ours, theirs = [], []
    print(f"{len(x):,} points, k={a.k}, n_init={a.n_init}")
    print("seed  cinematic_ml  scikit-learn  difference")
    for seed in range(1, a.seeds + 1):
        cur.execute("SELECT (cinematic_ml.model_info(cinematic_ml.kmeans_fit(lat, lon, %s, %s))"
                    "->>'inertia')::float8 FROM pts",
                    (a.k, json.dumps({"seed": seed, "n_init": a.n_init})))
        ours.append(cur.fetchone()[0])
        theirs.append(KMeans(a.k, n_init=a.n_init, random_state=seed, algorithm="lloyd")
                      .fit(x).inertia_)
        print(f"{seed:4d}  {ours[-1]:.5e}   {theirs[-1]:.5e}   {100 * (ours[-1] / theirs[-1] - 1):+.2f} %")
    mo, mt = np.median(ours), np.median(theirs)
    print(f"median {mo:.5e}   {mt:.5e}   {100 * (mo / mt - 1):+.2f} %")


if __name__ == "__main__":
    main()
