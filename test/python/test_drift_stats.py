#!/usr/bin/python3
"""Drift checks are honest statistics (issue 4.2), on generated data.

A city of Gaussian hotspots (weights drawn once, points drawn as a multinomial sample):
  - 200 resamples of unchanged data (1,000 points each): false-alarm rate of the verdict <= 5 %,
    and the share test alone rejects near its nominal 1 %;
  - 10 % of the mass moving from one zone to another: detected in >= 95 % of 100 trials;
  - one zone moving 300 m: detected in >= 95 % of 100 trials;
for a k-means model (k = 8) and for a DBSCAN model (eps 60 m, min 8, with 10 % scattered noise).
Same window, same answer.
"""
import math
import time

import numpy as np
from psycopg2.extras import execute_values

from cmltest import Checks, database

RNG = np.random.default_rng(20261123)
CENTRES = [(48.8606, 2.3376), (48.8584, 2.2945), (48.8530, 2.3499), (48.8867, 2.3431),
           (48.8720, 2.3316), (48.8532, 2.3691), (48.8675, 2.3637), (48.8323, 2.3550)]
WEIGHTS = np.array([0.20, 0.16, 0.14, 0.12, 0.11, 0.10, 0.09, 0.08])
SIGMA_M = 60.0
N = 1000


def sample(n, weights=WEIGHTS, move=None, noise=0.0, rng=RNG):
    """n points: a share `noise` uniform over Paris, the rest from the hotspots;
    move = (zone, dlat_m) shifts one hotspot north by dlat_m metres."""
    pts = []
    n_noise = rng.binomial(n, noise) if noise else 0
    counts = rng.multinomial(n - n_noise, weights / weights.sum())
    for z, (c, (lat, lon)) in enumerate(zip(counts, CENTRES)):
        if move and move[0] == z:
            lat += move[1] / 111195.0
        dy = rng.normal(0, SIGMA_M, c) / 111195.0
        dx = rng.normal(0, SIGMA_M, c) / (111195.0 * math.cos(math.radians(lat)))
        pts += list(zip(lat + dy, lon + dx))
    pts += list(zip(rng.uniform(48.815, 48.902, n_noise), rng.uniform(2.25, 2.42, n_noise)))
    return pts


def run(cur, c, name, algo, params, noise):
    cur.execute("DROP TABLE IF EXISTS w")
    cur.execute("CREATE TABLE w (trial int, scenario text, lat float8, lon float8)")
    rows = [(0, 'baseline', la, lo) for la, lo in sample(N, noise=noise)]
    moved = WEIGHTS.copy()
    moved[0] -= 0.10
    moved[5] += 0.10
    for t in range(200):
        rows += [(t, 'same', la, lo) for la, lo in sample(N, noise=noise)]
    for t in range(100):
        rows += [(t, 'mass', la, lo) for la, lo in sample(N, weights=moved, noise=noise)]
        rows += [(t, 'move', la, lo) for la, lo in sample(N, move=(2, 300.0), noise=noise)]
    execute_values(cur, "INSERT INTO w VALUES %s", rows, page_size=10000)
    cur.execute("CREATE INDEX ON w (scenario, trial)")
    cur.execute("ANALYZE w")
    cur.execute("SELECT cinematic_ml.train(%s, 'SELECT lat, lon FROM w WHERE scenario = ''baseline''', %s, %s)",
                (name, algo, params))

    def trials(scenario, count):
        t0 = time.time()
        cur.execute("""SELECT r->>'verdict', (r->'share_drift'->>'p_value')::float8
                         FROM generate_series(0, %s - 1) t,
                              LATERAL cinematic_ml.drift(%s, format('SELECT lat, lon FROM w WHERE scenario = %%L AND trial = %%s', %s::text, t)) r""",
                    (count, name, scenario))
        res = cur.fetchall()
        return ([v for v, _ in res].count('drifted') / count, sum(p < 0.01 for _, p in res) / count,
                [v for v, _ in res].count('insufficient_data'), time.time() - t0)

    fa, share_rej, insuff, secs = trials('same', 200)
    c.check(fa <= 0.05, f"{algo}: false alarms on 200 unchanged resamples: {fa:.1%} (<= 5 %); "
                        f"share test alone rejects {share_rej:.1%} (nominal 1 %); {insuff} insufficient; {secs:.1f}s")
    det, _, _, secs = trials('mass', 100)
    c.check(det >= 0.95, f"{algo}: 10 % of the mass moving between zones detected in {det:.0%} of 100 trials (>= 95 %); {secs:.1f}s")
    det, _, _, secs = trials('move', 100)
    c.check(det >= 0.95, f"{algo}: one zone moving 300 m detected in {det:.0%} of 100 trials (>= 95 %); {secs:.1f}s")

    cur.execute("""SELECT a - 'check_id' - 'checked_at' = b - 'check_id' - 'checked_at'
                     FROM cinematic_ml.drift(%s, 'SELECT lat, lon FROM w WHERE scenario = ''mass'' AND trial = 7') a,
                          cinematic_ml.drift(%s, 'SELECT lat, lon FROM w WHERE scenario = ''mass'' AND trial = 7') b""",
                (name, name))
    c.check(cur.fetchone()[0], f"{algo}: same window, same report")


c = Checks()
with database("cml_t_drift_stats") as conn:
    with conn.cursor() as cur:
        run(cur, c, 'km', 'kmeans', '{"k": 8, "seed": 1}', noise=0.0)
        run(cur, c, 'db', 'dbscan', '{"eps_m": 60, "min_points": 8}', noise=0.10)
c.exit()
