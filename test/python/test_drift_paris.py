#!/usr/bin/python3
"""The drift report on the real Paris data gives the original pipeline's figures (issue 4.3).

Model: DBSCAN eps 100 m, min 10, trained on 2016-2019; window: 2020-2023. The original
Cinematic Paris rule is recomputed here in Python the way the original pipeline did it
(scikit-learn haversine DBSCAN, zone centroid = mean of lat/lon, radius = max haversine
distance to it, relative changes vs the baseline, thresholds 0.20 / 0.30 / 0.30).
"""
import numpy as np
from sklearn.cluster import DBSCAN

from cmltest import R, Checks, database, load_paris


def haversine(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * R * np.arcsin(np.sqrt(a))


def original_metrics(pts):
    X = np.radians(pts)
    labels = DBSCAN(eps=100 / R, min_samples=10, metric="haversine", algorithm="ball_tree").fit(X).labels_
    zones = [pts[labels == z] for z in sorted(set(labels) - {-1})]
    radii = [haversine(z[:, 0].mean(), z[:, 1].mean(), z[:, 0], z[:, 1]).max() for z in zones]
    return {"n_zones": len(zones),
            "mean_points_per_zone": float(np.mean([len(z) for z in zones])) if zones else 0.0,
            "mean_zone_radius_m": float(np.mean(radii)) if zones else 0.0}


def rel(cur, base):
    return 1.0 if base == 0 else abs(cur - base) / base


c = Checks()
with database("cml_t_drift_paris") as conn:
    rows = load_paris(conn)
    arr = np.array([(r[2], r[3]) for r in rows])
    years = np.array([r[1] for r in rows])
    base = original_metrics(arr[years <= 2019])
    curr = original_metrics(arr[years >= 2020])
    with conn.cursor() as cur:
        cur.execute("SELECT cinematic_ml.train('paris', 'SELECT lat, lon FROM shoots WHERE year <= 2019 ORDER BY id', "
                    "'dbscan', '{\"eps_m\": 100, \"min_points\": 10}')")
        cur.execute("SELECT cinematic_ml.drift('paris', 'SELECT lat, lon FROM shoots WHERE year >= 2020 ORDER BY id')")
        rep = cur.fetchone()[0]
    sr = rep["seed_rule"]
    c.check(sr["baseline"]["n_zones"] == base["n_zones"] == 160, f"baseline zones {sr['baseline']['n_zones']} = Python {base['n_zones']} = 160")
    c.check(sr["current"]["n_zones"] == curr["n_zones"] == 125, f"window zones {sr['current']['n_zones']} = Python {curr['n_zones']} = 125")
    for side, ref in (("baseline", base), ("current", curr)):
        for key in ("mean_points_per_zone", "mean_zone_radius_m"):
            ours = sr[side][key]
            c.check(abs(ours - ref[key]) <= 1e-3 * max(1.0, abs(ref[key])),
                    f"{side} {key}: {ours:.4f} vs original rule {ref[key]:.4f}")
    for key in ("n_zones", "mean_points_per_zone", "mean_zone_radius_m"):
        ours = sr["rel_change"][key]
        theirs = rel(curr[key], base[key])
        c.check(abs(ours - theirs) <= 1e-3, f"relative change of {key}: {ours:.4f} vs original rule {theirs:.4f}")
    orig_drift = (curr["n_zones"] == 0 or rel(curr["n_zones"], base["n_zones"]) > 0.20
                  or rel(curr["mean_points_per_zone"], base["mean_points_per_zone"]) > 0.30
                  or rel(curr["mean_zone_radius_m"], base["mean_zone_radius_m"]) > 0.30)
    c.check(sr["drifted"] == orig_drift, f"original-rule verdict {sr['drifted']} = Python {orig_drift}")
    print(f"report verdict: {rep['verdict']}; reasons: {rep['reasons']}")
    print(f"share drift: p = {rep['share_drift']['p_value']:.3g}, PSI = {rep['share_drift']['psi']:.3f}, "
          f"JS = {rep['share_drift']['js_distance']:.3f}; transitions: {rep['geometry']['transitions']}")
    c.check(rep["verdict"] in ("drifted", "stable"), f"a verdict with reasons: {rep['verdict']}")
c.exit()
