#!/usr/bin/python3
"""Export the active 'bench' model's centers and the pts table, then run predict_grid.

    PGHOST=... PGPORT=... bench/proto/run_proto.py [--db cml_bench] [--cell-m 25]

Needs the database bench/run.sh builds (BENCH_KEEP_CLUSTER=1 keeps a throwaway one).
"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))


def zone_centers(model):
    """(cx, cy, cz, lat, lon) of each zone of a format-v1 k-means model (see src/model.h)."""
    if model[:4] != b"CMLM":
        raise SystemExit("not a cinematic_ml model")
    # header 24, parameters 48, training summary 48 (src/model.h says 56, but
    # CmlModelSerialize writes 5 x 8 + 2 x 4 bytes)
    off = 24 + 48 + 48
    n_zones = struct.unpack_from("<i", model, off - 4)[0]
    out = []
    for i in range(n_zones):
        _n, lat, lon, _r, _p90, _mean, cx, cy, cz = struct.unpack_from("<q8d", model, off + 72 * i)
        out.append((cx, cy, cz, lat, lon))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=os.environ.get("BENCH_DB", "cml_bench"))
    ap.add_argument("--cell-m", default="25")
    a = ap.parse_args()
    conn = psycopg2.connect(dbname=a.db)
    cur = conn.cursor()
    cur.execute("SELECT model FROM cinematic_ml.model_versions WHERE model_name = 'bench' AND status = 'active'")
    zones = zone_centers(bytes(cur.fetchone()[0]))
    tmp = tempfile.mkdtemp(prefix="cml_proto_")
    path = os.path.join(tmp, "points.bin")
    with open(path, "wb") as f:
        f.write(struct.pack("<i", len(zones)))
        for z in zones:
            f.write(struct.pack("<5d", *z))
        cur.execute("SELECT count(*) FROM pts")
        f.write(struct.pack("<q", cur.fetchone()[0]))
        cur.execute("SELECT lat, lon FROM pts ORDER BY id")
        while True:
            rows = cur.fetchmany(100000)
            if not rows:
                break
            f.write(b"".join(struct.pack("<2d", la, lo) for la, lo in rows))
    conn.close()
    exe = os.path.join(tmp, "predict_grid")
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "predict_grid.c"), "-lm"], check=True)
    r = subprocess.run([exe, path, a.cell_m])
    os.remove(path)
    os.remove(exe)
    os.rmdir(tmp)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
