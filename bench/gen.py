"""Paris-like points for the benchmarks: Gaussian blobs around landmarks plus uniform noise.

Deterministic for a given (n, seed): numpy's PCG64 generator, rows shuffled so that
any prefix of ids (id <= m) is a uniform random sample of the whole set.
"""
import io
import struct

import numpy as np

R_EARTH_M = 6371000.0
M_PER_DEG = R_EARTH_M * np.pi / 180.0  # metres per degree of latitude on the sphere

# (name, lat, lon): ~20 places film crews love
LANDMARKS = [
    ("Tour Eiffel", 48.8584, 2.2945),
    ("Louvre", 48.8606, 2.3376),
    ("Notre-Dame", 48.8530, 2.3499),
    ("Sacre-Coeur", 48.8867, 2.3431),
    ("Arc de Triomphe", 48.8738, 2.2950),
    ("Concorde", 48.8656, 2.3212),
    ("Opera Garnier", 48.8720, 2.3316),
    ("Pantheon", 48.8462, 2.3464),
    ("Luxembourg", 48.8462, 2.3372),
    ("Centre Pompidou", 48.8606, 2.3522),
    ("Bastille", 48.8532, 2.3692),
    ("Canal Saint-Martin", 48.8710, 2.3650),
    ("Buttes-Chaumont", 48.8809, 2.3828),
    ("Pere-Lachaise", 48.8614, 2.3933),
    ("Orsay", 48.8600, 2.3266),
    ("Trocadero", 48.8616, 2.2893),
    ("Place des Vosges", 48.8556, 2.3655),
    ("Gare du Nord", 48.8809, 2.3553),
    ("Bercy", 48.8400, 2.3790),
    ("Montparnasse", 48.8421, 2.3219),
]
BBOX = (48.815, 48.902, 2.25, 2.42)  # lat_min, lat_max, lon_min, lon_max
NOISE_SHARE = 0.20


def paris_points(n, seed):
    """Return (lat, lon) float64 arrays of n points."""
    rng = np.random.default_rng(seed)
    m = len(LANDMARKS)
    centres = np.array([(la, lo) for _, la, lo in LANDMARKS])
    sigma_m = rng.uniform(30.0, 150.0, size=m)
    weights = rng.gamma(2.0, 1.0, size=m)
    weights /= weights.sum()

    n_noise = int(round(n * NOISE_SHARE))
    n_blob = n - n_noise
    which = rng.choice(m, size=n_blob, p=weights)
    s = sigma_m[which]
    lat_b = centres[which, 0] + rng.standard_normal(n_blob) * s / M_PER_DEG
    lon_b = centres[which, 1] + rng.standard_normal(n_blob) * s / (
        M_PER_DEG * np.cos(np.radians(centres[which, 0])))
    lat_n = rng.uniform(BBOX[0], BBOX[1], size=n_noise)
    lon_n = rng.uniform(BBOX[2], BBOX[3], size=n_noise)
    lat = np.concatenate([lat_b, lat_n])
    lon = np.concatenate([lon_b, lon_n])
    perm = rng.permutation(n)
    return lat[perm], lon[perm]


def copy_binary(lat, lon, id0=1):
    """A PostgreSQL binary COPY stream of rows (id int4, lat float8, lon float8), ids from id0."""
    n = len(lat)
    rec = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("id", ">i4"), ("l2", ">i4"), ("lat", ">f8"),
                    ("l3", ">i4"), ("lon", ">f8")])
    a = np.empty(n, dtype=rec)
    a["nf"] = 3
    a["l1"] = 4
    a["id"] = np.arange(id0, id0 + n, dtype=np.int64)
    a["l2"] = 8
    a["lat"] = lat
    a["l3"] = 8
    a["lon"] = lon
    buf = io.BytesIO()
    buf.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
    buf.write(a.tobytes())
    buf.write(struct.pack(">h", -1))
    buf.seek(0)
    return buf


def unit_vectors_m(lat, lon):
    """The extension's k-means representation: 3-D unit vectors times the Earth's radius (m)."""
    phi = np.radians(lat)
    lam = np.radians(lon)
    c = np.cos(phi)
    return np.column_stack([c * np.cos(lam), c * np.sin(lam), np.sin(phi)]) * R_EARTH_M
