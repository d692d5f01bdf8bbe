#!/usr/bin/python3
"""
test_geometry.py — cinematic_ml's geometry at its seams.

Every check runs on generated data whose answer is known independently of the
extension (scikit-learn, or exact spherical geometry computed here in numpy):

  1. antimeridian  a cluster straddling longitude +-180 plus a far cluster:
                   DBSCAN and k-means give it one zone, centroid on the
                   antimeridian, radius = max haversine of its members; a sparse
                   chain across the seam (no full grid cell) stays one DBSCAN zone
  2. poles         clusters around both poles with points exactly at +-90
                   (any longitude): one zone each, centroid at the pole, radius;
                   a sparse chain over each pole stays one DBSCAN zone
  3. continental   30 cities on every continent (200 Gaussian points each) plus
                   scattered noise: DBSCAN labels == sklearn DBSCAN(haversine),
                   k-means inertia within 1 % of sklearn KMeans on 3-D unit
                   vectors x 6,371,000 m (the same metric)
  4. rotation      the continental set turned by 180 degrees of longitude: same
                   DBSCAN labels, same k-means inertia (same seed), same
                   predict_cluster / is_hotspot / distance_m on rotated probes,
                   same zone metrics
  5. edges         lat 90.0000001 / lon 180.0000001 / NaN / +-Infinity rejected
                   with SQLSTATE 22003; lon -180 and 180 accepted and the same place
  6. large zones   two clusters of 12,000 and 6,000 points (one across +-180):
                   k-means and DBSCAN zones' radius / mean / p90 against numpy
                   (zones large enough for the p90s' sampled brackets)

Run:  PGHOST=... PGPORT=... PGUSER=... /usr/bin/python3 test/python/test_geometry.py
Creates and drops database cml_t_geometry.  Exit 0 when every check passes, 1 otherwise.
One line per check.  Deterministic (fixed seeds).
"""
import io
import math
import os
import sys
import time

import numpy as np
import psycopg2
from sklearn.cluster import DBSCAN, KMeans

R = 6371000.0                   # the extension's sphere (metres)
DBNAME = "cml_t_geometry"
OUT_OF_RANGE = "22003"          # numeric_value_out_of_range

# ----------------------------------------------------------------- reporting

RESULTS = []
_T0 = time.monotonic()
_last = [time.monotonic()]


def check(name, ok, detail="", bug=None):
    """Record and print one check; bug = text shown when it fails because of a known extension bug."""
    now = time.monotonic()
    dt = now - _last[0]
    _last[0] = now
    ok = bool(ok)
    RESULTS.append((name, ok))
    line = "%s %-62s %s [%.2fs]" % ("ok  " if ok else "FAIL", name, detail, dt)
    if not ok and bug:
        line += "\n     ^^^ EXTENSION BUG: " + bug
    print(line, flush=True)
    return ok


def section(title):
    print("# " + title, flush=True)
    _last[0] = time.monotonic()


# ----------------------------------------------------------------- geometry (numpy)

def to_vec(lat, lon):
    """Unit vectors (n, 3) of degrees."""
    p = np.radians(np.asarray(lat, dtype=float))
    q = np.radians(np.asarray(lon, dtype=float))
    c = np.cos(p)
    return np.stack([c * np.cos(q), c * np.sin(q), np.sin(p)], axis=-1)


def vec_to_latlon(v):
    h = math.hypot(v[0], v[1])
    return math.degrees(math.atan2(v[2], h)), math.degrees(math.atan2(v[1], v[0]))


def haversine(lat1, lon1, lat2, lon2):
    """Great-circle metres (numpy broadcasting)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2, dtype=float) - np.asarray(lon1, dtype=float))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * R * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def mean_direction(lat, lon):
    s = to_vec(lat, lon).sum(axis=0)
    return vec_to_latlon(s / np.linalg.norm(s))


def lon_diff(a, b):
    """a - b in degrees, in [-180, 180)."""
    return (np.asarray(a, dtype=float) - b + 180.0) % 360.0 - 180.0


def wrap_lon(lon):
    """Into [-180, 180] (values above 180 go round)."""
    lon = np.asarray(lon, dtype=float)
    return np.where(lon > 180.0, lon - 360.0, np.where(lon < -180.0, lon + 360.0, lon))


def rotate180(lon):
    lon = np.asarray(lon, dtype=float)
    return np.where(lon <= 0.0, lon + 180.0, lon - 180.0)


def offset(lat0, lon0, north_m, east_m):
    """Points at metric offsets from (lat0, lon0): exact on the sphere (tangent plane -> great circle)."""
    north_m = np.asarray(north_m, dtype=float)
    east_m = np.asarray(east_m, dtype=float)
    d = np.hypot(north_m, east_m) / R                  # angular distance
    brg = np.arctan2(east_m, north_m)                  # bearing from north
    p0, l0 = math.radians(lat0), math.radians(lon0)
    sp = math.sin(p0) * np.cos(d) + math.cos(p0) * np.sin(d) * np.cos(brg)
    p = np.arcsin(np.clip(sp, -1.0, 1.0))
    l = l0 + np.arctan2(np.sin(brg) * np.sin(d) * math.cos(p0), np.cos(d) - math.sin(p0) * sp)
    return np.degrees(p), wrap_lon(np.degrees(l))


def rel_diff(a, b):
    a, b = float(a), float(b)
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


# ----------------------------------------------------------------- database helpers

def admin_connect():
    conn = psycopg2.connect(dbname=os.environ.get("PGDATABASE", "postgres"))
    conn.autocommit = True
    return conn


def load_points(cur, table, lat, lon):
    cur.execute("DROP TABLE IF EXISTS %s" % table)
    cur.execute("CREATE TABLE %s (id int PRIMARY KEY, lat float8 NOT NULL, lon float8 NOT NULL)" % table)
    buf = io.StringIO()
    for i, (a, b) in enumerate(zip(lat, lon)):
        buf.write("%d\t%r\t%r\n" % (i, float(a), float(b)))
    buf.seek(0)
    cur.copy_expert("COPY %s FROM STDIN" % table, buf)
    cur.execute("ANALYZE %s" % table)
    # what the database holds must be bit-identical to what numpy uses
    cur.execute("SELECT lat, lon FROM %s ORDER BY id" % table)
    back = np.array(cur.fetchall(), dtype=float)
    assert np.array_equal(back[:, 0], lat) and np.array_equal(back[:, 1], lon), "float round trip"


def fit_dbscan(cur, name, table, eps_m, min_points):
    cur.execute("INSERT INTO fitted VALUES (%%s, (SELECT cinematic_ml.dbscan_fit(lat, lon, %%s, %%s ORDER BY id) FROM %s))" % table,
                (name, float(eps_m), int(min_points)))
    return model_info(cur, name)


def fit_kmeans(cur, name, table, k, options):
    cur.execute("INSERT INTO fitted VALUES (%%s, (SELECT cinematic_ml.kmeans_fit(lat, lon, %%s, %%s::jsonb ORDER BY id) FROM %s))" % table,
                (name, int(k), options))
    return model_info(cur, name)


def model_info(cur, name):
    cur.execute("SELECT cinematic_ml.model_info(model) FROM fitted WHERE name = %s", (name,))
    return cur.fetchone()[0]


def window_dbscan(cur, table, eps_m, min_points):
    cur.execute("SELECT cinematic_ml.cluster_dbscan(lat, lon, %%s, %%s) OVER "
                "(ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) "
                "FROM %s ORDER BY id" % table, (float(eps_m), int(min_points)))
    return np.array([r[0] for r in cur.fetchall()], dtype=int)


def window_kmeans(cur, table, k, options):
    cur.execute("SELECT cinematic_ml.cluster_kmeans(lat, lon, %%s, %%s::jsonb) OVER "
                "(ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) "
                "FROM %s ORDER BY id" % table, (int(k), options))
    return np.array([r[0] for r in cur.fetchall()], dtype=int)


def predict_all(cur, name, table):
    """(cluster, is_hotspot, distance_m) arrays for every row of table, by id."""
    cur.execute("SELECT cinematic_ml.predict_cluster(f.model, p.lat, p.lon), "
                "       cinematic_ml.is_hotspot(f.model, p.lat, p.lon), "
                "       (cinematic_ml.predict(f.model, p.lat, p.lon)).distance_m "
                "FROM %s p, fitted f WHERE f.name = %%s ORDER BY p.id" % table, (name,))
    rows = cur.fetchall()
    return (np.array([r[0] for r in rows], dtype=int),
            np.array([r[1] for r in rows], dtype=bool),
            np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=float))


def same_answers(cur, names, points):
    """Do these (lat, lon), one place written several ways, get one answer from each model?
    cluster, is_hotspot and zone_radius_m exactly; distance_m within 1e-9 relative or 1e-6 m."""
    ok, parts = True, []
    for name in names:
        rows = []
        for a, b in points:
            cur.execute("SELECT (p).cluster, (p).is_hotspot, (p).distance_m, (p).zone_radius_m "
                        "FROM (SELECT cinematic_ml.predict(model, %s, %s) AS p FROM fitted WHERE name = %s) s",
                        (a, b, name))
            rows.append(cur.fetchone())
        d = [r[2] for r in rows]
        spread = max(d) - min(d)
        same = (len({(r[0], r[1], r[3]) for r in rows}) == 1
                and spread <= max(1e-9 * max(d), 1e-6))
        ok &= same
        parts.append("%s: cluster %s hotspot %s distance %.6f m (spread %.1e m)%s"
                     % (name, rows[0][0], rows[0][1], d[0], spread, "" if same else " DIFFER %s" % rows))
    return ok, "(%s)" % "; ".join(parts)


def sk_dbscan(lat, lon, eps_m, min_points):
    X = np.radians(np.column_stack([lat, lon]))
    return DBSCAN(eps=eps_m / R, min_samples=min_points, metric="haversine").fit(X).labels_


def zone_geometry_checks(tag, info, zone, lat, lon, members):
    """Centroid = mean direction of the members; radius/mean/p90 = haversine figures to the centroid."""
    z = info["zones"][zone]
    mlat, mlon = lat[members], lon[members]
    d = haversine(mlat, mlon, z["lat"], z["lon"])
    ok = True
    ok &= check("%s: zone n_points = members" % tag, z["n_points"] == len(mlat),
                "(%d vs %d)" % (z["n_points"], len(mlat)))
    elat, elon = mean_direction(mlat, mlon)
    shift = float(haversine(elat, elon, z["lat"], z["lon"]))
    ok &= check("%s: centroid = mean direction of members" % tag, shift <= 1e-3,
                "(reported %.9f, %.9f; numpy %.9f, %.9f; %.2e m apart)" % (z["lat"], z["lon"], elat, elon, shift))
    rr = rel_diff(z["radius_m"], d.max())
    ok &= check("%s: radius_m = max haversine to centroid" % tag, rr <= 1e-6,
                "(%.6f m vs %.6f m, rel %.1e)" % (z["radius_m"], d.max(), rr))
    rm = rel_diff(z["mean_distance_m"], d.mean())
    ds = np.sort(d)
    p90 = ds[max(int(math.ceil(0.9 * len(ds))) - 1, 0)]
    rp = rel_diff(z["p90_radius_m"], p90)
    ok &= check("%s: mean_distance_m and p90_radius_m" % tag, rm <= 1e-6 and rp <= 1e-6,
                "(mean %.3f vs %.3f, p90 %.3f vs %.3f)" % (z["mean_distance_m"], d.mean(), z["p90_radius_m"], p90))
    return ok


def test_chain(cur, tag, table, lat, lon, eps, minp, pole=None):
    """A sparse chain of points crossing a seam: no grid cell is full, so only the
    point-to-point neighbour test across the seam can keep it one cluster."""
    load_points(cur, table, lat, lon)
    sk = sk_dbscan(lat, lon, eps, minp)
    check("%s data: sklearn sees one cluster, no noise" % tag, sk.max() == 0 and sk.min() == 0,
          "(%d points, labels %s)" % (len(lat), sorted(set(sk.tolist()))))
    win = window_dbscan(cur, table, eps, minp)
    check("%s: DBSCAN window labels == sklearn (one cluster)" % tag, np.array_equal(win, sk),
          "(labels %s, %d differ)" % (sorted(set(win.tolist())), (win != sk).sum()))
    info = fit_dbscan(cur, table, table, eps, minp)
    ok = check("%s: dbscan_fit gives 1 zone, 0 noise" % tag, info["n_zones"] == 1 and info["n_noise"] == 0,
               "(n_zones %d, n_noise %d)" % (info["n_zones"], info["n_noise"]))
    if ok:
        z = info["zones"][0]
        if pole is None:
            check("%s: centroid on the antimeridian" % tag, abs(float(lon_diff(z["lon"], 180.0))) <= 0.05,
                  "(lat %.6f, lon %.9f)" % (z["lat"], z["lon"]))
        else:
            check("%s: centroid latitude within 0.01 deg of %+g" % (tag, pole), abs(z["lat"] - pole) <= 0.01,
                  "(lat %.9f, lon %.3f)" % (z["lat"], z["lon"]))
        zone_geometry_checks(tag, info, 0, lat, lon, np.ones(len(lat), dtype=bool))


# ----------------------------------------------------------------- 1. antimeridian

def test_antimeridian(cur):
    section("1. cluster straddling the antimeridian (65 N, 180) + a far cluster")
    rng = np.random.default_rng(20240601)
    # 300 points, 500 m north-south, 2.5 km east-west (about +-0.15 degrees of longitude at 65 N)
    alat, alon = offset(65.0, 180.0, rng.normal(0, 500, 300), rng.normal(0, 2500, 300))
    # points exactly on the seam, written both ways, and at +-179.9
    alat = np.concatenate([alat, [65.0, 65.0, 65.0005, 64.9995, 65.0, 65.0]])
    alon = np.concatenate([alon, [180.0, -180.0, 180.0, -180.0, 179.95, -179.95]])
    blat, blon = offset(-33.9, 18.4, rng.normal(0, 500, 200), rng.normal(0, 500, 200))
    lat = np.concatenate([alat, blat])
    lon = np.concatenate([alon, blon])
    na = len(alat)
    is_a = np.arange(len(lat)) < na
    check("data: straddling cluster spans both sides of +-180",
          (alon > 179.9).sum() >= 5 and (alon < -179.9).sum() >= 5,
          "(%d points east of 179.9, %d west of -179.9)" % ((alon > 179.9).sum(), (alon < -179.9).sum()))
    load_points(cur, "am", lat, lon)

    eps, minp = 2000.0, 5
    sk = sk_dbscan(lat, lon, eps, minp)
    check("data: sklearn DBSCAN sees 2 clusters, the straddling one whole",
          sk.max() + 1 == 2 and len(set(sk[is_a]) - {-1}) == 1,
          "(sklearn: %d clusters, %d noise)" % (sk.max() + 1, (sk == -1).sum()))

    # DBSCAN
    info = fit_dbscan(cur, "am_db", "am", eps, minp)
    win = window_dbscan(cur, "am", eps, minp)
    pred, hot, _ = predict_all(cur, "am_db", "am")
    check("DBSCAN window labels == sklearn", np.array_equal(win, sk),
          "(%d differ)" % (win != sk).sum())
    az = set(pred[is_a]) - {-1}
    zone = min(az) if az else -1
    check("DBSCAN: 2 zones, ONE for the straddling cluster",
          info["n_zones"] == 2 and len(az) == 1 and not np.any(pred[~is_a] == zone),
          "(n_zones %d, zones of straddling points %s)" % (info["n_zones"], sorted(az)))
    if zone >= 0:
        members = pred == zone
        check("DBSCAN: the zone holds points on both sides of the seam",
              np.any(members & (lon > 179.9)) and np.any(members & (lon < -179.9)), "")
        check("DBSCAN: aggregate zone == window labels == predict on training points",
              np.array_equal(members, win == zone) and np.array_equal(pred >= 0, hot), "")
        z = info["zones"][zone]
        dl = abs(float(lon_diff(z["lon"], 180.0)))
        check("DBSCAN: centroid longitude within 0.05 deg of +-180", dl <= 0.05,
              "(lon %.9f, lat %.6f)" % (z["lon"], z["lat"]))
        zone_geometry_checks("DBSCAN", info, zone, lat, lon, members)

    # k-means
    opts = '{"seed": 7, "n_init": 5}'
    info = fit_kmeans(cur, "am_km", "am", 2, opts)
    win = window_kmeans(cur, "am", 2, opts)
    pred, hot, dist = predict_all(cur, "am_km", "am")
    az = set(pred[is_a])
    zone = min(az)
    check("k-means k=2: ONE zone for the straddling cluster",
          len(az) == 1 and not np.any(pred[~is_a] == zone) and np.array_equal(pred, win),
          "(zones of straddling points %s; predict == window labels: %s)" % (sorted(az), np.array_equal(pred, win)))
    members = pred == zone
    z = info["zones"][zone]
    dl = abs(float(lon_diff(z["lon"], 180.0)))
    check("k-means: centroid longitude within 0.05 deg of +-180", dl <= 0.05,
          "(lon %.9f, lat %.6f)" % (z["lon"], z["lat"]))
    zone_geometry_checks("k-means", info, zone, lat, lon, members)
    check("k-means: every training point is a hotspot (within its zone's radius)", hot.all(),
          "(%d not)" % (~hot).sum())

    # a sparse chain along 65 N across the seam, 1500 m apart, eps 2000 m, min 3
    east = (np.arange(41) - 20.5) * 1500.0
    clat, clon = offset(65.0, 180.0, np.zeros(41), east)
    test_chain(cur, "chain across +-180", "am_chain", clat, clon, 2000.0, 3)

    # the seam itself: 180 and -180 are the same place for predict
    # (sin(pi) != sin(-pi) in floating point, so distance_m may differ in its last digits)
    ok, detail = same_answers(cur, ["am_db", "am_km"], [(65.0, 180.0), (65.0, -180.0)])
    check("predict(65, 180) == predict(65, -180) for both models", ok, detail)


# ----------------------------------------------------------------- 6. large zones

def test_large_zones(cur):
    section("6. large zones: 12,000 + 6,000 points, radius / mean / p90 against numpy")
    rng = np.random.default_rng(6006)
    alat, alon = offset(-16.5, 180.0, rng.normal(0, 3000, 12000), rng.normal(0, 6000, 12000))
    blat, blon = offset(48.86, 2.34, rng.normal(0, 800, 6000), rng.normal(0, 1200, 6000))
    lat = np.concatenate([alat, blat])
    lon = np.concatenate([alon, blon])
    is_a = np.arange(len(lat)) < len(alat)
    load_points(cur, "large", lat, lon)
    info = fit_kmeans(cur, "large_km", "large", 2, '{"seed": 3, "n_init": 1}')
    pred, _, _ = predict_all(cur, "large_km", "large")
    check("k-means k=2: one zone per cluster", len(set(pred[is_a])) == 1 and len(set(pred[~is_a])) == 1
          and pred[0] != pred[-1], "(zones %s / %s)" % (sorted(set(pred[is_a])), sorted(set(pred[~is_a]))))
    for zone in sorted(set(pred)):
        zone_geometry_checks("k-means zone %d (%d points)" % (zone, (pred == zone).sum()), info, zone, lat, lon,
                             pred == zone)
    info = fit_dbscan(cur, "large_db", "large", 400.0, 5)
    win = window_dbscan(cur, "large", 400.0, 5)
    for zone in range(info["n_zones"]):
        if (win == zone).sum() >= 4096:
            zone_geometry_checks("DBSCAN zone %d (%d points)" % (zone, (win == zone).sum()), info, zone, lat, lon,
                                 win == zone)


# ----------------------------------------------------------------- 2. poles

def test_poles(cur):
    section("2. clusters around the North and South Poles (points exactly at +-90)")
    rng = np.random.default_rng(424242)
    exact_lons = [-180.0, -135.0, -90.0, -0.0, 0.0, 45.0, 90.0, 179.999, 180.0]
    parts = []
    for pole in (90.0, -90.0):
        n = 260
        plat, plon = offset(pole, 0.0, rng.normal(0, 3000, n), rng.normal(0, 3000, n))
        # the offset from the pole puts the points' longitudes all round the clock
        plon = np.where(np.abs(plat) == 90.0, 0.0, plon)
        parts.append((np.concatenate([plat, [pole] * len(exact_lons)]),
                      np.concatenate([plon, exact_lons])))
    lat = np.concatenate([parts[0][0], parts[1][0]])
    lon = np.concatenate([parts[0][1], parts[1][1]])
    is_n = lat > 0
    check("data: all north points above 89.5, all south below -89.5, lons all round",
          np.all(lat[is_n] > 89.5) and np.all(lat[~is_n] < -89.5) and lon.min() < -170 and lon.max() > 170,
          "(max distance from the pole %.0f m)" % float(haversine(np.abs(lat), lon, 90.0, 0.0).max()))
    load_points(cur, "poles", lat, lon)

    eps, minp = 2000.0, 5
    sk = sk_dbscan(lat, lon, eps, minp)
    check("data: sklearn DBSCAN sees one cluster per pole",
          sk.max() + 1 == 2 and len(set(sk[is_n]) - {-1}) == 1 and len(set(sk[~is_n]) - {-1}) == 1,
          "(sklearn: %d clusters, %d noise)" % (sk.max() + 1, (sk == -1).sum()))

    info_db = fit_dbscan(cur, "poles_db", "poles", eps, minp)
    win = window_dbscan(cur, "poles", eps, minp)
    check("DBSCAN window labels == sklearn", np.array_equal(win, sk), "(%d differ)" % (win != sk).sum())
    pred_db, _, _ = predict_all(cur, "poles_db", "poles")
    info_km = fit_kmeans(cur, "poles_km", "poles", 2, '{"seed": 3}')
    pred_km, hot_km, _ = predict_all(cur, "poles_km", "poles")

    for alg, info, pred in (("DBSCAN", info_db, pred_db), ("k-means", info_km, pred_km)):
        check("%s: 2 zones" % alg, info["n_zones"] == 2, "(n_zones %d)" % info["n_zones"])
        for pole, sel, nm in ((90.0, is_n, "North"), (-90.0, ~is_n, "South")):
            zs = set(pred[sel]) - {-1}
            ok = check("%s: ONE zone for the %s Pole cluster, exact-pole points in it" % (alg, nm),
                       len(zs) == 1 and not np.any(np.isin(pred[~sel], list(zs)))
                       and np.all(pred[sel & (np.abs(lat) == 90.0)] == min(zs or {-9})),
                       "(zones %s)" % sorted(zs))
            if not ok or not zs:
                continue
            zone = min(zs)
            z = info["zones"][zone]
            check("%s: %s centroid latitude within 0.01 deg of %+g" % (alg, nm, pole), abs(z["lat"] - pole) <= 0.01,
                  "(lat %.9f, lon %.3f)" % (z["lat"], z["lon"]))
            zone_geometry_checks("%s %s" % (alg, nm), info, zone, lat, lon, pred == zone)
    check("k-means: every training point is a hotspot", hot_km.all(), "(%d not)" % (~hot_km).sum())

    # a sparse chain over each pole (up meridian 0, down meridian 180), 1500 m apart, the two
    # points nearest the pole 750 m from it on opposite meridians (no point at the pole to bridge them)
    for pole, nm in ((90.0, "North"), (-90.0, "South")):
        sdist = (np.arange(41) - 20.5) * 1500.0
        clat = np.sign(pole) * (90.0 - np.abs(sdist) / R * 180.0 / math.pi)
        clon = np.where(sdist > 0, 0.0, 180.0)
        test_chain(cur, "chain across the %s Pole" % nm, "pole_chain_%s" % nm[0].lower(), clat, clon, 2000.0, 3, pole)

    # at the pole the longitude does not matter
    lons = [-180.0, -179.5, -90.0, 0.0, 33.3, 90.0, 179.5, 180.0]
    for pole in (90.0, -90.0):
        ok, detail = same_answers(cur, ["poles_db", "poles_km"], [(pole, l) for l in lons])
        check("predict(%+g, any lon) is one answer per model" % pole, ok, detail)


# ----------------------------------------------------------------- 3. continental

CITIES = [
    # (name, lat, lon) — all continents, both sides of Greenwich and of the antimeridian
    ("London", 51.507, -0.128), ("Paris", 48.857, 2.352), ("Madrid", 40.417, -3.704),
    ("Reykjavik", 64.147, -21.943), ("Tromso", 69.649, 18.956), ("Longyearbyen", 78.223, 15.646),
    ("Accra", 5.603, -0.187), ("Lagos", 6.524, 3.379), ("Nairobi", -1.286, 36.817),
    ("Cape Town", -33.925, 18.424), ("Cairo", 30.044, 31.236), ("Moscow", 55.756, 37.617),
    ("Mumbai", 19.076, 72.878), ("Singapore", 1.352, 103.820), ("Tokyo", 35.690, 139.692),
    ("Anadyr", 64.734, 177.514), ("Petropavlovsk", 53.037, 158.656), ("Sydney", -33.869, 151.209),
    ("Auckland", -36.848, 174.763), ("Suva", -18.124, 178.450), ("Apia", -13.833, -171.767),
    ("Honolulu", 21.307, -157.858), ("Anchorage", 61.218, -149.900), ("Vancouver", 49.283, -123.121),
    ("Mexico City", 19.433, -99.133), ("New York", 40.713, -74.006), ("Lima", -12.046, -77.043),
    ("Sao Paulo", -23.551, -46.633), ("Ushuaia", -54.801, -68.303), ("McMurdo", -77.846, 166.676),
]
CONT_EPS, CONT_MIN = 6000.0, 8
KM_OPTS = '{"seed": 0, "n_init": 10}'


def continental_data():
    rng = np.random.default_rng(31415)
    lats, lons = [], []
    for _, clat, clon in CITIES:
        s = rng.uniform(5000, 20000)
        a, b = offset(clat, clon, rng.normal(0, s, 200), rng.normal(0, s, 200))
        lats.append(a)
        lons.append(b)
        # scattered noise up to 150 km from the city
        r = 150000 * np.sqrt(rng.uniform(0, 1, 10))
        t = rng.uniform(0, 2 * math.pi, 10)
        a, b = offset(clat, clon, r * np.cos(t), r * np.sin(t))
        lats.append(a)
        lons.append(b)
    lat = np.concatenate(lats)
    lon = np.concatenate(lons)
    perm = rng.permutation(len(lat))          # input order mixes the cities
    return lat[perm], lon[perm]


def inertia_of(lat, lon, labels):
    x = to_vec(lat, lon) * R
    tot = 0.0
    for c in np.unique(labels):
        m = x[labels == c]
        tot += ((m - m.mean(axis=0)) ** 2).sum()
    return tot


def test_continental(cur, lat, lon):
    section("3. continental data set: %d cities x 200 points + %d noise points (%d rows)"
            % (len(CITIES), 10 * len(CITIES), len(lat)))
    load_points(cur, "cont", lat, lon)

    t = time.monotonic()
    sk = sk_dbscan(lat, lon, CONT_EPS, CONT_MIN)
    t_sk = time.monotonic() - t
    t = time.monotonic()
    win = window_dbscan(cur, "cont", CONT_EPS, CONT_MIN)
    t_win = time.monotonic() - t
    nz_sk, nn_sk = sk.max() + 1, int((sk == -1).sum())
    nz_w, nn_w = win.max() + 1, int((win == -1).sum())
    check("DBSCAN eps %g m min %d: zone count == sklearn" % (CONT_EPS, CONT_MIN), nz_w == nz_sk,
          "(%d vs %d)" % (nz_w, nz_sk))
    check("DBSCAN: noise count == sklearn", nn_w == nn_sk, "(%d vs %d)" % (nn_w, nn_sk))
    check("DBSCAN: window labels identical to sklearn (same numbering)", np.array_equal(win, sk),
          "(%d of %d differ; window %.2fs, sklearn %.2fs)" % ((win != sk).sum(), len(sk), t_win, t_sk))

    info = fit_dbscan(cur, "cont_db", "cont", CONT_EPS, CONT_MIN)
    sizes = np.bincount(sk[sk >= 0], minlength=nz_sk)
    check("DBSCAN aggregate: n_zones, n_noise and per-zone n_points == sklearn",
          info["n_zones"] == nz_sk and info["n_noise"] == nn_sk
          and [z["n_points"] for z in info["zones"]] == sizes.tolist(),
          "(n_zones %d, n_noise %d)" % (info["n_zones"], info["n_noise"]))
    # every zone's centroid and radius against sklearn's membership
    worst_r, worst_c = 0.0, 0.0
    for zi, z in enumerate(info["zones"][:nz_sk]):
        m = sk == zi
        d = haversine(lat[m], lon[m], z["lat"], z["lon"])
        worst_r = max(worst_r, rel_diff(z["radius_m"], d.max()))
        elat, elon = mean_direction(lat[m], lon[m])
        worst_c = max(worst_c, float(haversine(elat, elon, z["lat"], z["lon"])))
    check("DBSCAN: every zone's centroid and radius_m match sklearn's members",
          worst_r <= 1e-6 and worst_c <= 1e-3, "(worst radius rel %.1e, worst centroid shift %.1e m)" % (worst_r, worst_c))

    t = time.monotonic()
    info = fit_kmeans(cur, "cont_km", "cont", len(CITIES), KM_OPTS)
    t_km = time.monotonic() - t
    t = time.monotonic()
    km = KMeans(n_clusters=len(CITIES), n_init=10, random_state=0).fit(to_vec(lat, lon) * R)
    t_skm = time.monotonic() - t
    rel = rel_diff(info["inertia"], km.inertia_)
    check("k-means k=%d: inertia within 1%% of sklearn KMeans (3-D x R)" % len(CITIES),
          rel <= 0.01 and info["inertia"] <= km.inertia_ * 1.01,
          "(cml %.6e m2, sklearn %.6e m2, rel %.1e; cml %.2fs, sklearn %.2fs)" % (info["inertia"], km.inertia_, rel, t_km, t_skm))
    # the same metric: the reported inertia is the sum of squared 3-D metres to the means of its labels
    wl = window_kmeans(cur, "cont", len(CITIES), KM_OPTS)
    mine = inertia_of(lat, lon, wl)
    check("k-means: reported inertia == squared 3-D metres of its own labels",
          rel_diff(info["inertia"], mine) <= 1e-9, "(%.9e vs %.9e)" % (info["inertia"], mine))
    pred, _, _ = predict_all(cur, "cont_km", "cont")
    check("k-means: window labels == predict_cluster on the training points == one zone per city",
          np.array_equal(wl, pred) and len(set(wl)) == len(CITIES),
          "(%d differ, %d distinct)" % ((wl != pred).sum(), len(set(wl))))
    return sk


# ----------------------------------------------------------------- 4. rotation

def probes(lat, lon):
    rng = np.random.default_rng(2718)
    g_lat, g_lon = np.meshgrid(np.arange(-85.0, 86.0, 5.0), np.arange(-180.0, 180.0, 5.0))
    plat = [g_lat.ravel(), [90.0, -90.0, 0.0, 0.0, 65.0]]
    plon = [g_lon.ravel(), [0.0, 0.0, 180.0, -180.0, 179.99]]
    for _, clat, clon in CITIES:
        r = 40000 * np.sqrt(rng.uniform(0, 1, 25))
        t = rng.uniform(0, 2 * math.pi, 25)
        a, b = offset(clat, clon, r * np.cos(t), r * np.sin(t))
        plat.append(a)
        plon.append(b)
    # and some training points themselves (exact core / border / noise points)
    idx = rng.choice(len(lat), 300, replace=False)
    plat.append(lat[idx])
    plon.append(lon[idx])
    return np.concatenate(plat), np.concatenate(plon)


def test_rotation(cur, lat, lon, sk):
    section("4. rotation invariance: the continental set turned by 180 degrees of longitude")
    rlon = rotate180(lon)
    check("data: rotated longitudes in [-180, 180], Greenwich cities now straddle the antimeridian",
          rlon.min() >= -180 and rlon.max() <= 180 and (rlon > 179.9).sum() > 0 and (rlon < -179.9).sum() > 0,
          "(%d rotated points beyond +-179.9)" % ((np.abs(rlon) > 179.9).sum()))
    load_points(cur, "cont_rot", lat, rlon)

    win_r = window_dbscan(cur, "cont_rot", CONT_EPS, CONT_MIN)
    check("DBSCAN: rotated labels identical to the original (and sklearn)", np.array_equal(win_r, sk),
          "(%d differ)" % (win_r != sk).sum())

    info_o = model_info(cur, "cont_km")
    info_r = fit_kmeans(cur, "cont_km_rot", "cont_rot", len(CITIES), KM_OPTS)
    rel = rel_diff(info_o["inertia"], info_r["inertia"])
    check("k-means same seed: inertia equal within 1e-6", rel <= 1e-6,
          "(%.9e vs %.9e, rel %.1e)" % (info_o["inertia"], info_r["inertia"], rel))
    info_dbo = model_info(cur, "cont_db")
    info_dbr = fit_dbscan(cur, "cont_db_rot", "cont_rot", CONT_EPS, CONT_MIN)

    for alg, a, b in (("DBSCAN", info_dbo, info_dbr), ("k-means", info_o, info_r)):
        ra = sorted(z["radius_m"] for z in a["zones"])
        rb = sorted(z["radius_m"] for z in b["zones"])
        worst = max([rel_diff(x, y) for x, y in zip(ra, rb)] or [0.0])
        check("%s: zone metrics identical (n_zones, n_points, sorted radius_m)" % alg,
              a["n_zones"] == b["n_zones"] and a["n_noise"] == b["n_noise"]
              and sorted(z["n_points"] for z in a["zones"]) == sorted(z["n_points"] for z in b["zones"])
              and worst <= 1e-9,
              "(n_zones %d/%d, worst radius rel %.1e)" % (a["n_zones"], b["n_zones"], worst))
        same_ids = len(a["zones"]) == len(b["zones"]) and all(
            za["n_points"] == zb["n_points"] and abs(za["lat"] - zb["lat"]) <= 1e-9
            and abs(float(lon_diff(zb["lon"], za["lon"] + 180.0))) <= 1e-9
            for za, zb in zip(a["zones"], b["zones"]))
        check("%s: zone k of the rotated model = zone k turned by 180 deg" % alg, same_ids, "")

    plat, plon = probes(lat, lon)
    load_points(cur, "probe", plat, plon)
    load_points(cur, "probe_rot", plat, rotate180(plon))
    for alg, mo, mr in (("DBSCAN", "cont_db", "cont_db_rot"), ("k-means", "cont_km", "cont_km_rot")):
        c1, h1, d1 = predict_all(cur, mo, "probe")
        c2, h2, d2 = predict_all(cur, mr, "probe_rot")
        dd = np.abs(d1 - d2)
        worst = float(np.max(dd / np.maximum(np.maximum(d1, d2), 1e-300)))
        check("%s: predict_cluster identical on %d rotated probes" % (alg, len(plat)), np.array_equal(c1, c2),
              "(%d differ; %d probes in a zone)" % ((c1 != c2).sum(), (c1 >= 0).sum()))
        check("%s: is_hotspot identical on rotated probes" % alg, np.array_equal(h1, h2),
              "(%d differ; %d hotspots)" % ((h1 != h2).sum(), h1.sum()))
        check("%s: distance_m equal (rel 1e-9, or 1e-6 m) on rotated probes" % alg,
              np.all(dd <= np.maximum(1e-9 * np.maximum(d1, d2), 1e-6)),
              "(worst rel %.1e, worst abs %.1e m)" % (worst, float(dd.max())))

    # drift: the same window, rotated with the model, gives the same report
    for alg, mo, mr in (("DBSCAN", "cont_db", "cont_db_rot"), ("k-means", "cont_km", "cont_km_rot")):
        reports = []
        for name, table in ((mo, "cont"), (mr, "cont_rot")):
            cur.execute("SELECT cinematic_ml.register_model(%s, model) FROM fitted WHERE name = %s", ("g_" + name, name))
            cur.execute("SELECT cinematic_ml.drift(%%s, 'SELECT lat, lon FROM %s WHERE id %%%% 3 = 0 ORDER BY id')" % table,
                        ("g_" + name,))
            reports.append(cur.fetchone()[0])
        a, b = reports
        figs = [(a["seed_rule"]["rel_change"][k], b["seed_rule"]["rel_change"][k])
                for k in ("n_zones", "mean_points_per_zone", "mean_zone_radius_m")]
        figs += [(a["share_drift"][k], b["share_drift"][k]) for k in ("chi2", "psi", "js_distance")]
        figs += [(a["geometry"]["max_centroid_shift_m"], b["geometry"]["max_centroid_shift_m"])]
        worst = max(abs(x - y) / max(abs(x), abs(y), 1e-9) for x, y in figs)
        check("%s: drift report identical on the rotated window (verdict %s)" % (alg, a["verdict"]),
              a["verdict"] == b["verdict"] and a["geometry"]["transitions"] == b["geometry"]["transitions"]
              and worst <= 1e-6, "(worst rel %.1e)" % worst)


# ----------------------------------------------------------------- 5. edges

def sqlstate_of(cur, sql, args=None):
    """None when the statement succeeds, else its SQLSTATE and message."""
    try:
        cur.execute(sql, args)
        cur.fetchall()
        return None, None
    except psycopg2.Error as e:
        return e.pgcode, (e.diag.message_primary or str(e))


def test_edges(cur):
    section("5. coordinate validation at the edges")
    nan, inf = float("nan"), float("inf")
    bad = [(90.0000001, 0.0), (-90.0000001, 0.0), (0.0, 180.0000001), (0.0, -180.0000001),
           (nan, 0.0), (0.0, nan), (inf, 0.0), (0.0, inf), (-inf, 0.0), (0.0, -inf), (1e9, 0.0),
           # the next doubles beyond the bounds
           (float(np.nextafter(90.0, 91.0)), 0.0), (float(np.nextafter(-90.0, -91.0)), 0.0),
           (0.0, float(np.nextafter(180.0, 181.0))), (0.0, float(np.nextafter(-180.0, -181.0)))]
    for name in ("am_db", "am_km"):
        got = []
        for a, b in bad:
            for fn in ("predict_cluster", "is_hotspot", "predict"):
                st, _ = sqlstate_of(cur, "SELECT cinematic_ml.%s(model, %%s, %%s) FROM fitted WHERE name = %%s" % fn,
                                    (a, b, name))
                if st != OUT_OF_RANGE:
                    got.append("%s(%r, %r) -> %s" % (fn, a, b, st))
        check("%s: predict/is_hotspot/predict_cluster reject %d bad coordinates with 22003" % (name, len(bad)),
              not got, "(%s)" % "; ".join(got[:4]))
    got = []
    for a, b in bad:
        for sql in ("SELECT cinematic_ml.dbscan_fit(lat, lon, 100, 1) FROM (VALUES (0::float8, 0::float8), (%s, %s)) v(lat, lon)",
                    "SELECT cinematic_ml.kmeans_fit(lat, lon, 1) FROM (VALUES (0::float8, 0::float8), (%s, %s)) v(lat, lon)",
                    "SELECT cinematic_ml.cluster_dbscan(lat, lon, 100, 1) OVER () FROM (VALUES (0::float8, 0::float8), (%s, %s)) v(lat, lon)",
                    "SELECT cinematic_ml.cluster_kmeans(lat, lon, 1) OVER () FROM (VALUES (0::float8, 0::float8), (%s, %s)) v(lat, lon)"):
            st, _ = sqlstate_of(cur, sql, (a, b))
            if st != OUT_OF_RANGE:
                got.append("%s (%r, %r) -> %s" % (sql.split("(")[0][7:], a, b, st))
    check("aggregates and window functions reject the same coordinates with 22003", not got, "(%s)" % "; ".join(got[:4]))

    good = [(90.0, 0.0), (-90.0, 0.0), (0.0, 180.0), (0.0, -180.0), (90.0, 180.0), (-90.0, -180.0), (89.9999999, 179.9999999)]
    got = []
    for a, b in good:
        for name in ("am_db", "am_km"):
            st, msg = sqlstate_of(cur, "SELECT cinematic_ml.predict(model, %s, %s) FROM fitted WHERE name = %s", (a, b, name))
            if st is not None:
                got.append("%s(%r, %r) -> %s %s" % (name, a, b, st, msg))
    check("lat +-90 and lon +-180 are accepted by predict", not got, "(%s)" % "; ".join(got[:4]))

    # -180 and 180 are the same place for the fitting functions too
    cur.execute("SELECT cinematic_ml.model_info(cinematic_ml.dbscan_fit(lat, lon, 1, 2)), "
                "       cinematic_ml.model_info(cinematic_ml.kmeans_fit(lat, lon, 1)), "
                "       array_agg(lat) FROM (VALUES (10::float8, 180::float8), (10, -180)) v(lat, lon)")
    db, km, _ = cur.fetchone()
    check("dbscan_fit: (10, 180) and (10, -180) are one place (eps 1 m, min 2 -> one zone)",
          db["n_zones"] == 1 and db["n_noise"] == 0 and db["zones"][0]["radius_m"] < 1e-6,
          "(n_zones %d, radius %s)" % (db["n_zones"], [z["radius_m"] for z in db["zones"]]))
    check("kmeans_fit: (10, 180) and (10, -180) -> centroid on the seam, radius 0",
          abs(float(lon_diff(km["zones"][0]["lon"], 180.0))) < 1e-9 and km["zones"][0]["radius_m"] < 1e-6
          and abs(km["zones"][0]["lat"] - 10.0) < 1e-9,
          "(%s)" % {k: km["zones"][0][k] for k in ("lat", "lon", "radius_m")})
    cur.execute("SELECT cinematic_ml.cluster_dbscan(lat, lon, 1, 2) OVER () FROM "
                "(VALUES (-90::float8, -180::float8), (-90, 0), (-90, 77.7), (90, 180), (90, 1)) v(lat, lon)")
    lab = [r[0] for r in cur.fetchall()]
    check("cluster_dbscan: the pole at any longitude is one place", lab == [0, 0, 0, 1, 1], "(labels %s)" % lab)

    # STRICT scalars return NULL for a NULL coordinate; aggregates skip the row
    cur.execute("SELECT cinematic_ml.predict_cluster(model, NULL, 0), cinematic_ml.is_hotspot(model, 0, NULL) "
                "FROM fitted WHERE name = 'am_km'")
    r = cur.fetchone()
    cur.execute("SELECT cinematic_ml.model_info(cinematic_ml.dbscan_fit(lat, lon, 100, 1))->'n_train' "
                "FROM (VALUES (0::float8, 0::float8), (NULL, 1), (2, NULL)) v(lat, lon)")
    n = cur.fetchone()[0]
    check("NULL coordinate: predict NULL, aggregate skips the row", r == (None, None) and n == 1, "(%s, n_train %s)" % (r, n))

    # the message must name the rejected value, not a rounded one that is valid
    msgs = []
    for a, b, want in ((90.0000001, 0.0, "90.0000001"), (0.0, -180.0000001, "-180.0000001"),
                       (float(np.nextafter(90.0, 91.0)), 0.0, "90.00000000000001"),
                       (0.0, float(np.nextafter(-180.0, -181.0)), "-180.00000000000003")):
        st, msg = sqlstate_of(cur, "SELECT cinematic_ml.predict_cluster(model, %s, %s) FROM fitted WHERE name = 'am_km'", (a, b))
        msgs.append((want, msg))
    check("error message names the exact rejected value", all(w in (m or "") for w, m in msgs),
          "(%s)" % "; ".join(repr(m) for _, m in msgs),
          bug="src/geo.c CmlCheckLatLon prints the value with %.15g, which rounds the doubles "
              "just beyond a bound onto the bound: lat 90.00000000000001 is reported as 'latitude 90 "
              "is out of range' (a valid value). Fix: format with %.17g, or float8out's shortest "
              "exact form (float_to_shortest_decimal / double_to_shortest_decimal_buf from "
              "common/shortest_dec.h), as PostgreSQL's own messages do.")


# ----------------------------------------------------------------- main

def main():
    for var in ("PGHOST", "PGPORT", "PGUSER"):
        if var not in os.environ:
            print("note: %s is not set, using libpq's default" % var)
    admin = admin_connect()
    acur = admin.cursor()
    acur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DBNAME)
    acur.execute("CREATE DATABASE %s" % DBNAME)
    conn = None
    try:
        conn = psycopg2.connect(dbname=DBNAME)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SET client_min_messages = warning")
        cur.execute("CREATE EXTENSION cinematic_ml")
        cur.execute("CREATE TABLE fitted (name text PRIMARY KEY, model bytea NOT NULL)")
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'cinematic_ml'")
        print("# cinematic_ml %s, numpy %s, psycopg2 %s" % (cur.fetchone()[0], np.__version__, psycopg2.__version__.split()[0]))

        sections = [
            ("antimeridian", lambda: test_antimeridian(cur)),
            ("poles", lambda: test_poles(cur)),
        ]
        for name, fn in sections:
            _run_section(name, fn)
        lat, lon = continental_data()
        sk = _run_section("continental", lambda: test_continental(cur, lat, lon))
        if sk is not None:
            _run_section("rotation", lambda: test_rotation(cur, lat, lon, sk))
        else:
            check("rotation invariance (needs the continental section)", False, "(skipped)")
        _run_section("edges", lambda: test_edges(cur))
        _run_section("large zones", lambda: test_large_zones(cur))
    finally:
        if conn is not None:
            conn.close()
        acur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DBNAME)
        admin.close()

    failed = [n for n, ok in RESULTS if not ok]
    print("# %d checks, %d failed, %.1fs" % (len(RESULTS), len(failed), time.monotonic() - _T0))
    for n in failed:
        print("#   FAILED: " + n)
    return 1 if failed else 0


def _run_section(name, fn):
    """Run one section; an unexpected exception is a failed check, not a crash of the whole file."""
    t = time.monotonic()
    try:
        return fn()
    except Exception as e:      # noqa: BLE001 - report and go on
        check("%s: section ran to the end" % name, False, "(%s: %s)" % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else ""))
        return None
    finally:
        print("#   %s: %.2fs" % (name, time.monotonic() - t), flush=True)


if __name__ == "__main__":
    sys.exit(main())
