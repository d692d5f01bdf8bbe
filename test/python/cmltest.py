"""Shared helpers for the Python integration tests (run by scripts/test.sh).

Each test gets its own database, created from the environment's PGHOST/PGPORT/PGUSER,
and dropped at the end. Exit status: 0 pass, 1 fail, 77 skip.
"""
import contextlib
import os
import sys

import psycopg2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARIS_CSV = os.path.join(os.path.dirname(ROOT), "shared", "data", "paris_filming_locations.csv")
R = 6371000.0


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(77)


@contextlib.contextmanager
def database(name):
    admin = psycopg2.connect(dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    conn = psycopg2.connect(dbname=name)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE EXTENSION cinematic_ml")
    try:
        yield conn
    finally:
        conn.close()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def load_paris(conn, table="shoots"):
    """Load the shared Paris CSV (id, year, lat, lon) or skip the test when it is absent."""
    import csv
    from psycopg2.extras import execute_values
    if not os.path.exists(PARIS_CSV):
        skip(f"shared Paris data not found at {PARIS_CSV}")
    rows = []
    with open(PARIS_CSV, newline="", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f)):
            rows.append((i + 1, int(r["year"]), float(r["lat"]), float(r["lon"])))
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, year int, lat float8, lon float8)")
        execute_values(cur, f"INSERT INTO {table} VALUES %s", rows, page_size=5000)
        cur.execute(f"ANALYZE {table}")
    return rows


def unit_vectors(lat, lon):
    import numpy as np
    la = np.radians(np.asarray(lat, dtype=float))
    lo = np.radians(np.asarray(lon, dtype=float))
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


class Checks:
    def __init__(self):
        self.failed = 0

    def check(self, ok, what):
        print(("ok     " if ok else "FAILED ") + what, flush=True)
        if not ok:
            self.failed += 1

    def exit(self):
        print("FAILED checks: %d" % self.failed if self.failed else "all checks passed")
        sys.exit(1 if self.failed else 0)
