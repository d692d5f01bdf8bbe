#!/usr/bin/python3
"""Benchmark pictures, drawn with gnuplot (gnuplot-nox, pngcairo terminal).

    bench/plots.py [--csv ../shared/data/paris_filming_locations.csv] [--only map|time]

map   bench/results/paris_zones.png: the Paris shoots coloured by DBSCAN zone
      (cinematic_ml.cluster_dbscan(lat, lon, 100, 10) OVER (), noise in light grey), with
      a circle of radius_m around each zone centroid from cinematic_ml.zones() of a model
      trained with cinematic_ml.train(..., 'dbscan', '{"eps_m":100,"min_points":10}').
      The points are the real "Lieux de tournage a Paris" CSV when it exists (default
      ../shared/data/paris_filming_locations.csv, relative to the repository), otherwise the
      ~15,000 synthetic shoots of scripts/demo.sql (its generator, run through psql).
      Needs a server: PGHOST/PGPORT when both are set (database cml_plots, created if
      missing), otherwise a throwaway cluster from scripts/pgcluster.sh, removed at the end.
time  bench/results/time_vs_points.png: seconds against points, log-log, one line per
      method that was measured at two sizes or more in bench/results/dbscan.csv or
      bench/results/bench.csv (the latest measurement of each method and size), plus the
      growth series of bench/results/growth.csv (squares; for each method the latest run
      that measured two sizes or more) and a dotted slope-1 guide through the growth bare
      scan. Rows that were skipped or scaled from a subset are left out. No server needed.
"""
import argparse
import csv
import io
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
PGBIN = "/usr/lib/postgresql/15/bin"
LAT0, LON0 = 48.8566, 2.3522          # Hotel de Ville: the origin of the km axes
KM_PER_DEG = 6371.0 * math.pi / 180.0
LINE_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                "#000000", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#843c39"]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def xy(lat, lon):
    return ((lon - LON0) * KM_PER_DEG * math.cos(math.radians(LAT0)), (lat - LAT0) * KM_PER_DEG)


class Server:
    """PGHOST/PGPORT when both are set, otherwise a throwaway cluster."""

    def __init__(self):
        self.dir = None
        self.env = dict(os.environ)
        if not (os.environ.get("PGHOST") and os.environ.get("PGPORT")):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = str(s.getsockname()[1])
            s.close()
            self.dir = tempfile.mkdtemp(prefix="cml_plots.")
            print(f"plots: starting a throwaway cluster in {self.dir} on port {port}", file=sys.stderr)
            subprocess.run([os.path.join(ROOT, "scripts/pgcluster.sh"), "start", self.dir, port], check=True)
            self.env.update(PGHOST=self.dir, PGPORT=port)
        self.env.setdefault("PGUSER", "postgres")
        self.env["PATH"] = PGBIN + ":" + self.env.get("PATH", "")

    def psql(self, db, *args, stdin=None):
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, *args],
                           input=stdin, text=True, capture_output=True, env=self.env)
        if r.returncode != 0:
            sys.stderr.write(r.stdout + r.stderr)
            raise SystemExit(f"plots: psql failed (database {db})")
        return r.stdout

    def close(self):
        if self.dir:
            env = dict(os.environ, PG_WIPE="1")
            subprocess.run([os.path.join(ROOT, "scripts/pgcluster.sh"), "stop", self.dir], env=env)


def paris_map(csv_path, out):
    srv = Server()
    try:
        db = "cml_plots"
        if srv.psql("postgres", "-At", "-c", f"SELECT 1 FROM pg_database WHERE datname = '{db}'").strip() != "1":
            srv.psql("postgres", "-c", f"CREATE DATABASE {db}")
        srv.psql(db, "-c", "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS cinematic_ml")
        if csv_path and os.path.exists(csv_path):
            source = "the real Paris filming locations (opendata.paris.fr)"
            rows = []
            with open(csv_path, newline="", encoding="utf-8") as f:
                for r in csv.DictReader(f):
                    try:
                        rows.append((float(r["lat"]), float(r["lon"])))
                    except (ValueError, TypeError, KeyError):
                        pass
            buf = "".join(f"{a!r}\t{b!r}\n" for a, b in rows)
            srv.psql(db, "-c", "DROP TABLE IF EXISTS shoots; CREATE TABLE shoots (lat float8, lon float8)")
            srv.psql(db, "-c", "\\copy shoots FROM STDIN", stdin=buf)
        else:
            source = "synthetic Paris-like shoots (scripts/demo.sql's generator)"
            # Run only the data part of the demo: everything before its extension block.
            demo = open(os.path.join(ROOT, "scripts/demo.sql")).read()
            cut = demo.index("-- The extension.")
            srv.psql(db, stdin=demo[:cut])
        print(f"plots: map of {source}", file=sys.stderr)
        srv.psql(db, "-c", """
            SET client_min_messages = warning;
            DELETE FROM cinematic_ml.model_versions WHERE model_name = 'plot_zones';
            DELETE FROM cinematic_ml.models WHERE model_name = 'plot_zones';
            SELECT cinematic_ml.train('plot_zones',
                'SELECT lat, lon FROM shoots WHERE lat BETWEEN 48.80 AND 48.92 AND lon BETWEEN 2.22 AND 2.47',
                'dbscan', '{"eps_m":100,"min_points":10}')""")
        pts = srv.psql(db, "-At", "-F", "\t", "-c", """
            SELECT lat, lon, cinematic_ml.cluster_dbscan(lat, lon, 100, 10) OVER ()
              FROM shoots WHERE lat BETWEEN 48.80 AND 48.92 AND lon BETWEEN 2.22 AND 2.47""")
        zones = srv.psql(db, "-At", "-F", "\t", "-c",
                         "SELECT zone_id, lat, lon, radius_m, n_points FROM cinematic_ml.zones('plot_zones')")
    finally:
        srv.close()

    tmp = tempfile.mkdtemp(prefix="cml_plotdata.")
    try:
        noise, members, n_total = [], [], 0
        for line in pts.splitlines():
            lat, lon, z = line.split("\t")
            x, y = xy(float(lat), float(lon))
            n_total += 1
            if int(z) < 0:
                noise.append(f"{x} {y}\n")
            else:
                members.append(f"{x} {y} {int(z) % len(PALETTE)}\n")
        zl = []
        for line in zones.splitlines():
            zid, lat, lon, radius, n = line.split("\t")
            x, y = xy(float(lat), float(lon))
            zl.append(f"{x} {y} {float(radius) / 1000.0}\n")
        for name, data in (("noise", noise), ("members", members), ("zones", zl)):
            with open(os.path.join(tmp, name), "w") as f:
                f.writelines(data or ["NaN NaN 0\n"])
        pal = ", ".join(f'{i} "{c}"' for i, c in enumerate(PALETTE))
        title = (f"Paris film shoots: {len(zl)} DBSCAN zones (eps 100 m, min 10 points), "
                 f"{len(noise):,} of {n_total:,} points are noise")
        gnuplot(f"""
set terminal pngcairo size 1400,1100 font "DejaVu Sans,11" noenhanced
set output "{out}"
set title "{title}\\n{source}; circles: radius_m from cinematic_ml.zones()"
set size ratio -1
set xlabel "km east of the Hotel de Ville"
set ylabel "km north of the Hotel de Ville"
set xrange [-8:8]
set yrange [-5.5:6]
set grid lc rgb "#eeeeee"
set palette defined ({pal})
set cbrange [0:{len(PALETTE) - 1}]
unset colorbox
set key top left box opaque
plot "{tmp}/noise" using 1:2 with points pt 7 ps 0.35 lc rgb "#cccccc" title "noise", \\
     "{tmp}/members" using 1:2:3 with points pt 7 ps 0.45 lc palette title "zone members (colour = zone id mod {len(PALETTE)})", \\
     "{tmp}/zones" using 1:2:3 with circles lc rgb "black" lw 1.2 fs empty title "zone radius_m"
""")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"plots: wrote {out}", file=sys.stderr)


def latest_series():
    """{label: {n: seconds}} from the result CSVs, the latest measurement of each (method, n)."""
    series = {}
    f = os.path.join(RESULTS, "dbscan.csv")
    if os.path.exists(f):
        for r in csv.DictReader(open(f, newline="")):
            try:
                s = float(r["seconds"])
            except ValueError:
                continue          # skipped
            series.setdefault("DBSCAN: " + r["method"], {})[int(r["n"])] = (r["utc"], s)
    f = os.path.join(RESULTS, "bench.csv")
    if os.path.exists(f):
        for r in csv.DictReader(open(f, newline="")):
            if r.get("scaled_from_rows"):
                continue
            try:
                s, n = float(r["seconds"]), int(r["rows"])
            except ValueError:
                continue
            series.setdefault(f"{r['workload']}: {r['method']}", {})[n] = (r["run_at"], s)
    out = {}
    for label, d in series.items():
        if len(d) >= 2:
            out[label] = {n: s for n, (_, s) in sorted(d.items())}
    # the growth series (bench.py, appended to growth.csv): for each method, the latest run
    # that measured it at two sizes or more, so that one line is one run
    f = os.path.join(RESULTS, "growth.csv")
    if os.path.exists(f):
        runs = {}
        for r in csv.DictReader(open(f, newline="")):
            try:
                s, n = float(r["seconds"]), int(r["n"])
            except (ValueError, KeyError):
                continue
            runs.setdefault(r["method"], {}).setdefault(r["run_at"], {})[n] = s
        for method, by_run in runs.items():
            full = [(at, d) for at, d in by_run.items() if len(d) >= 2]
            if full:
                at, d = max(full)
                who = "" if method.startswith("bare scan") else "cinematic_ml "
                out[f"growth: {who}{method}"] = dict(sorted(d.items()))
    return out


def time_vs_points(out):
    series = latest_series()
    if not series:
        print("plots: no method has results at two sizes or more; time_vs_points.png not drawn", file=sys.stderr)
        return
    tmp = tempfile.mkdtemp(prefix="cml_plotdata.")
    try:
        plots = []
        guide = None
        for i, (label, d) in enumerate(sorted(series.items())):
            p = os.path.join(tmp, f"s{i}")
            with open(p, "w") as f:
                for n, s in d.items():
                    f.write(f"{n} {s}\n")
            lw = 2.5 if "cinematic_ml" in label else 1.5
            growth = label.startswith("growth:")
            pt, dt = (5, 1) if growth else (7, 1)
            if growth and "bare scan" in label:
                dt = 2
                n0 = min(d)
                guide = (n0, d[n0])
            title = label.replace('"', "'")
            colour = LINE_COLOURS[i % len(LINE_COLOURS)]
            plots.append(f'"{p}" using 1:2 with linespoints lw {lw} dt {dt} pt {pt} ps 1.2 lc rgb "{colour}" '
                         f'title "{title}"')
        if guide:
            # a slope-1 line a third below the growth bare scan's first point: linear time runs parallel to it
            plots.append(f'{guide[1] / 3!r} * x / {guide[0]!r} with lines lc rgb "#777777" dt 3 lw 1.5 '
                         f'title "slope 1 (time proportional to points), for reference"')
        gnuplot(f"""
set terminal pngcairo size 1400,1050 font "DejaVu Sans,11"
set output "{out}"
set title "Seconds (y) against points (x), log-log: latest run of each method and size, 2-core VM"
set logscale xy
set format x "10^{{%L}}"
set format y "10^{{%L}}"
unset xlabel
set ylabel "seconds"
set grid xtics ytics mxtics mytics lc rgb "#dddddd"
set key below left Left reverse box opaque noenhanced maxcols 2 width 2
plot {", ".join(plots)}
""")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"plots: wrote {out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=os.path.join(ROOT, "..", "shared", "data", "paris_filming_locations.csv"),
                    help="the real Paris filming locations CSV (synthetic points when it does not exist)")
    ap.add_argument("--only", choices=["map", "time"])
    args = ap.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    if args.only in (None, "time"):
        time_vs_points(os.path.join(RESULTS, "time_vs_points.png"))
    if args.only in (None, "map"):
        paris_map(os.path.normpath(args.csv), os.path.join(RESULTS, "paris_zones.png"))


if __name__ == "__main__":
    main()
