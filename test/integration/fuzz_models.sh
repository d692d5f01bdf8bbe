#!/usr/bin/env bash
# Damaged models inside the server (hardening, issue point 6): thousands of random
# and mutated model byteas — bit flips, truncations, extensions, random bytes,
# field overwrites at the format's offsets, most with their length field and
# CRC-32C recomputed so that the mutation reaches the field validation — go
# through model_info(bytea), predict_cluster(bytea, lat, lon), predict(bytea,
# lat, lon), zone_metrics(bytea) and zones_geojson(bytea); the models that are
# accepted also through evaluate() and the drift report.  The libFuzzer seeds
# and regressions (fuzz/corpus/model, fuzz/regressions/model) are replayed too;
# the regressions named reject_*.bin are damaged models that must be refused.
#
# Pass: no backend crash (no "terminated by signal" in the server log, a new
# connection works at the end) and every call either succeeds or fails with an
# expected SQLSTATE: XX001 data_corrupted, 0A000 feature_not_supported, 22003
# (and, for evaluate/drift on accepted models, any non-internal error class).
# XX000 (internal error), 22P02 (the extension built invalid JSON) or a lost
# connection fail the test.  Prints the outcome counts by function and SQLSTATE.
#
# Environment: CML_FUZZ_MODELS_N (default 10000 mutants), CML_FUZZ_MODELS_SECS
# (time budget for the mutants, default 45), CML_FUZZ_MODELS_SEED (default 1),
# CML_FUZZ_MODELS_REJECT=0 skips the reject_*.bin checks (valgrind.sh uses it).
set -euo pipefail
DB=cml_fuzz_models
ROOT=${CML_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
q() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
cleanup() { q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT

if ! /usr/bin/python3 -c 'import psycopg2' 2>/dev/null; then
	echo "SKIP: python3-psycopg2 is not installed"
	exit 77
fi

log_start=0
if [[ -n "${CML_PGLOG:-}" && -r "${CML_PGLOG}" ]]; then
	log_start=$(stat -c %s "$CML_PGLOG")
fi

cleanup
q -d postgres -c "CREATE DATABASE $DB"
q -d $DB >/dev/null <<'SQL'
SET client_min_messages = error;
CREATE EXTENSION cinematic_ml;
-- three dense blobs, a sparse ring and a few points across the antimeridian and poles
CREATE TABLE fz_points AS
SELECT (ARRAY[48.8606, 48.8584, 48.8530])[1 + i % 3] + ((i * 7919) % 101 - 50) * 0.00002 AS lat,
       (ARRAY[2.3376, 2.2945, 2.3499])[1 + i % 3] + ((i * 104729) % 101 - 50) * 0.00002 AS lon
  FROM generate_series(1, 600) i
UNION ALL
SELECT 48.85 + 0.05 * sin(i), 2.35 + 0.08 * cos(i) FROM generate_series(1, 60) i
UNION ALL
VALUES (0.0, 179.999), (0.001, -179.999), (89.999, 10.0), (89.9991, -170.0), (-89.999, 0.0);
CREATE TABLE fz_seeds(name text PRIMARY KEY, model bytea NOT NULL);
INSERT INTO fz_seeds
SELECT 'kmeans_k1', cinematic_ml.kmeans_fit(lat, lon, 1) FROM (SELECT * FROM fz_points LIMIT 30) s
UNION ALL SELECT 'kmeans_k3', cinematic_ml.kmeans_fit(lat, lon, 3, '{"seed": 7}') FROM fz_points
UNION ALL SELECT 'kmeans_k8', cinematic_ml.kmeans_fit(lat, lon, 8, '{"seed": 1, "n_init": 2}') FROM fz_points
UNION ALL SELECT 'dbscan_e80_m5', cinematic_ml.dbscan_fit(lat, lon, 80, 5) FROM fz_points
UNION ALL SELECT 'dbscan_e300_m3', cinematic_ml.dbscan_fit(lat, lon, 300, 3) FROM (SELECT * FROM fz_points LIMIT 80) s
UNION ALL SELECT 'dbscan_world', cinematic_ml.dbscan_fit(lat, lon, 500000, 1) FROM (SELECT * FROM fz_points OFFSET 655) s
UNION ALL SELECT 'dbscan_no_zone', cinematic_ml.dbscan_fit(lat, lon, 1, 100) FROM (SELECT * FROM fz_points LIMIT 20) s;
SQL

export FZ_DB=$DB FZ_ROOT=$ROOT
rc=0
/usr/bin/python3 - <<'PY' || rc=$?
import glob, os, random, struct, sys, time
import psycopg2

DB = os.environ["FZ_DB"]
ROOT = os.environ["FZ_ROOT"]
N = int(os.environ.get("CML_FUZZ_MODELS_N", "10000"))
SECS = float(os.environ.get("CML_FUZZ_MODELS_SECS", "45"))
SEED = int(os.environ.get("CML_FUZZ_MODELS_SEED", "1"))
OUTDIR = os.environ.get("CML_PGDIR") or "/tmp"
rng = random.Random(SEED)

# ---------------------------------------------------------------- CRC-32C
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    TABLE.append(c)

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

def fixup(b):
    """Length field = size and CRC-32C of the body, as a valid writer would."""
    b = bytearray(b)
    if len(b) >= 24 and b[:4] == b"CMLM":
        struct.pack_into("<I", b, 12, len(b))
        struct.pack_into("<I", b, 16, crc32c(bytes(b[24:])))
    return bytes(b)

# ---------------------------------------------------------------- format v1 offsets
HDR, PAR, SUM, ZONE, CORE = 24, 48, 48, 72, 20
BODY = HDR + PAR + SUM  # 120: the first zone
FIELDS = [  # (offset, struct format) of fixed fields
    (4, "<H"), (6, "<H"), (8, "<I"), (12, "<I"), (16, "<I"), (20, "<I"),
    (24, "<i"), (28, "<i"), (32, "<i"), (36, "<i"), (40, "<Q"), (48, "<d"), (56, "<d"), (64, "<q"),
    (72, "<q"), (80, "<q"), (88, "<d"), (96, "<d"), (104, "<d"), (112, "<i"), (116, "<i"),
]
ZONE_FIELDS = [(0, "<q")] + [(o, "<d") for o in range(8, 72, 8)]
CORE_FIELDS = [(0, "<d"), (8, "<d"), (16, "<i")]
INTERESTING = {
    "<H": [0, 1, 2, 3, 0xFFFF],
    "<I": [0, 1, 24, 0x7FFFFFFF, 0xFFFFFFFF],
    "<i": [0, 1, -1, 2, 100000, 100001, 1000000, 1000001, 2**31 - 1, -2**31],
    "<q": [0, 1, -1, 2, 2**31, 2**62, 2**62 + 1, 2**63 - 1, -2**63],
    "<Q": [0, 1, 2**63, 2**64 - 1],
    "<d": [float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 5e-324, 1e-300, 1e-9, 0.5, 1.0,
           1.0000001, -1.0, 90.0, 90.00000001, -90.0, 180.0, 180.00000001, -180.0, 1e300, 2.0015e7,
           20015086.796, 2.1e7, 6371000.0],
}

def nz_of(b):
    return struct.unpack_from("<i", b, 116)[0] if len(b) >= 120 else 0

RANGE = {"<H": (0, 2**16 - 1), "<I": (0, 2**32 - 1), "<i": (-2**31, 2**31 - 1),
         "<q": (-2**63, 2**63 - 1), "<Q": (0, 2**64 - 1)}

def overwrite(b, off, fmt, v):
    if fmt in RANGE:
        v = min(max(v, RANGE[fmt][0]), RANGE[fmt][1])
    b = bytearray(b)
    size = struct.calcsize(fmt)
    if off + size <= len(b):
        struct.pack_into(fmt, b, off, v)
    return bytes(b)

def field_mutation(b):
    nz = max(0, min(nz_of(b), (len(b) - BODY) // ZONE))
    choice = rng.random()
    if choice < 0.5 or nz == 0:
        off, fmt = rng.choice(FIELDS)
    elif choice < 0.8:
        zo, fmt = rng.choice(ZONE_FIELDS)
        off = HDR + PAR + SUM + ZONE * rng.randrange(nz) + zo
    else:
        core_at = HDR + PAR + SUM + ZONE * nz
        ncore = (len(b) - core_at - 8) // CORE
        if ncore <= 0 or rng.random() < 0.3:
            off, fmt = core_at, "<q"
        else:
            co, fmt = rng.choice(CORE_FIELDS)
            off = core_at + 8 + CORE * rng.randrange(ncore) + co
    vals = INTERESTING[fmt]
    if len(b) >= off + struct.calcsize(fmt) and rng.random() < 0.3:
        cur = struct.unpack_from(fmt, b, off)[0]
        if fmt != "<d":
            v = cur + rng.choice([-2, -1, 1, 2])
        else:
            v = cur * rng.choice([-1.0, 0.5, 2.0, 1.0 + 1e-9, 1e10])
    else:
        v = rng.choice(vals)
    return overwrite(b, off, fmt, v)

def structural(b):
    """Consistent-looking but damaged: zone/core counts changed with the body resized."""
    b = bytearray(b)
    if len(b) < BODY:
        return bytes(b)
    nz = max(0, min(nz_of(b), (len(b) - BODY) // ZONE))
    kind = rng.randrange(4)
    if kind == 0 and nz > 0:          # drop a zone (k and n_zones follow)
        zi = rng.randrange(nz)
        del b[BODY + ZONE * zi:BODY + ZONE * (zi + 1)]
        b = bytearray(overwrite(overwrite(b, 116, "<i", nz - 1), 24, "<i", nz - 1))
    elif kind == 1 and nz > 0:        # duplicate a zone
        zi = rng.randrange(nz)
        b[BODY + ZONE * nz:BODY + ZONE * nz] = b[BODY + ZONE * zi:BODY + ZONE * (zi + 1)]
        b = bytearray(overwrite(overwrite(b, 116, "<i", nz + 1), 24, "<i", nz + 1))
    elif kind == 2:                   # core count says more or fewer than the body holds
        core_at = BODY + ZONE * nz
        if core_at + 8 <= len(b):
            n = struct.unpack_from("<q", b, core_at)[0]
            b = bytearray(overwrite(b, core_at, "<q", n + rng.choice([-1, 1, 2**62, -(2**62)])))
    else:                             # training counts shuffled
        b = bytearray(overwrite(b, 72, "<q", rng.choice([0, 1, 2**62, 2**63 - 1])))
    return bytes(b)

def mutate(seed):
    kind = rng.randrange(7)
    b = bytearray(seed)
    fix = rng.random() < 0.85
    if kind == 0:                     # bit flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b) * 8)
            b[i // 8] ^= 1 << (i % 8)
        name = "bitflip"
    elif kind == 1:                   # truncation
        b = b[:rng.randrange(len(b))]
        name = "truncate"
    elif kind == 2:                   # extension
        b += bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 8, 19, 20, 21, 72, rng.randrange(300)])))
        name = "extend"
    elif kind == 3:                   # random bytes, sometimes behind a plausible header
        n = rng.randrange(300)
        b = bytearray(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.5 and n >= 8:
            b[:8] = b"CMLM" + struct.pack("<HH", 1, rng.choice([1, 2]))
        name = "random"
    elif kind == 4:                   # byte overwrites anywhere
        for _ in range(rng.randint(1, 4)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        name = "bytes"
    elif kind == 5:
        for _ in range(rng.randint(1, 3)):
            b = bytearray(field_mutation(bytes(b)))
        name = "field"
        fix = rng.random() < 0.95
    else:
        b = bytearray(structural(bytes(b)))
        name = "structural"
        fix = rng.random() < 0.95
    b = bytes(b)
    return (fixup(b) if fix else b), name + ("+crc" if fix else "")

# ---------------------------------------------------------------- the calls
POINTS = [(48.8606, 2.3376), (48.85, 2.35), (0.0, 0.0), (90.0, 0.0), (-90.0, 123.0),
          (0.0, 180.0), (0.0005, -179.9995), (89.9995, 10.0)]
CALLS = [
    ("model_info", "SELECT cinematic_ml.model_info(%s)", False),
    ("predict_cluster", "SELECT cinematic_ml.predict_cluster(%s, %s, %s)", True),
    ("predict", "SELECT * FROM cinematic_ml.predict(%s, %s, %s)", True),
    ("zone_metrics", "SELECT cinematic_ml.zone_metrics(%s)", False),
    ("zones_geojson", "SELECT cinematic_ml.zones_geojson(%s)", False),
]
DEEP = [  # only for models the server accepted
    ("evaluate", "SELECT cinematic_ml.evaluate(%s, 'SELECT lat, lon FROM fz_points')"),
    ("drift_report", "SELECT cinematic_ml._drift_report(%s, 'SELECT lat, lon FROM fz_points', '{}')"),
]
ALLOWED = {"XX001", "0A000", "22003"}

def bad_deep(state):
    return state.startswith("XX") and state != "XX001" or state == "22P02"

counts = {}
examples = {}  # (function, SQLSTATE) -> first message
failures = []
crashes = 0
conn = None

def connect():
    global conn
    for _ in range(60):
        try:
            conn = psycopg2.connect(dbname=DB)
            conn.autocommit = True
            return
        except psycopg2.OperationalError:
            time.sleep(1)
    raise SystemExit("cannot reconnect to the server")

def save(model, why):
    path = os.path.join(OUTDIR, "fuzz_models_fail_%d.bin" % len(failures))
    with open(path, "wb") as f:
        f.write(model)
    failures.append("%s (input saved as %s, hex %s...)" % (why, path, model[:48].hex()))

def call(fname, sql, args, model, allowed_check):
    global crashes
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            cur.fetchall()
        state = "ok"
    except psycopg2.Error as e:
        if conn.closed or isinstance(e, (psycopg2.OperationalError, psycopg2.InterfaceError)) and e.pgcode is None:
            crashes += 1
            save(model, "%s lost the connection: %s" % (fname, str(e).strip()[:200]))
            time.sleep(2)
            connect()
            state = "CONNECTION LOST"
        else:
            state = e.pgcode or "?"
            examples.setdefault((fname, state), (e.pgerror or str(e)).strip().splitlines()[0][:150])
            if not allowed_check(state):
                save(model, "%s raised %s: %s" % (fname, state, (e.pgerror or str(e)).strip()[:300]))
    counts.setdefault(fname, {}).setdefault(state, 0)
    counts[fname][state] += 1
    return state

def run(model):
    accepted = False
    for fname, sql, with_point in CALLS:
        if with_point:
            lat, lon = rng.choice(POINTS)
            args = (psycopg2.Binary(model), lat, lon)
        else:
            args = (psycopg2.Binary(model),)
        st = call(fname, sql, args, model, lambda s: s in ALLOWED)
        if fname == "model_info" and st == "ok":
            accepted = True
        if crashes > 3:
            return accepted
    if accepted:
        for fname, sql in DEEP:
            call(fname, sql, (psycopg2.Binary(model),), model, lambda s: not bad_deep(s))
    return accepted

connect()
with conn.cursor() as cur:
    cur.execute("SELECT name, model FROM fz_seeds ORDER BY name")
    seeds = [(n, bytes(m)) for n, m in cur.fetchall()]

# 1. the libFuzzer seeds and regressions, as they are and with length/CRC fixed up
replayed = 0
for path in sorted(glob.glob(os.path.join(ROOT, "fuzz/corpus/model/*")) +
                   glob.glob(os.path.join(ROOT, "fuzz/regressions/model/*"))):
    with open(path, "rb") as f:
        data = f.read()
    for m in {data, fixup(data)}:
        run(m)
        replayed += 1
    # reject_*: damaged models that once got through the validation; every call must refuse them
    if os.path.basename(path).startswith("reject_") and os.environ.get("CML_FUZZ_MODELS_REJECT", "1") == "1":
        for fname, sql, with_point in CALLS:
            args = (psycopg2.Binary(fixup(data)),) + ((48.86, 2.35) if with_point else ())
            st = call(fname, sql, args, fixup(data), lambda s: s in ALLOWED)
            if st not in ("XX001", "0A000"):
                failures.append("%s: %s accepted a damaged model (%s), expected XX001"
                                % (os.path.basename(path), fname, st))

# 2. the seeds themselves must load and answer
for name, m in seeds:
    if run(m) is not True:
        failures.append("seed model %s was not accepted by model_info" % name)

# 3. mutants
t0 = time.time()
kinds = {}
accepted = 0
done = 0
for i in range(N):
    if time.time() - t0 > SECS or crashes > 3:
        break
    base = rng.choice(seeds)[1]
    if rng.random() < 0.15:           # mutants of mutants
        base, _ = mutate(base)
    model, kind = mutate(base)
    kinds[kind] = kinds.get(kind, 0) + 1
    accepted += bool(run(model))
    done += 1
elapsed = time.time() - t0

with conn.cursor() as cur:
    cur.execute("SELECT 1")
conn.close()

print("replayed %d fuzz corpus/regression inputs; %d seed models" % (replayed, len(seeds)))
print("%d mutants in %.1f s (seed %d), %d accepted by model_info" % (done, elapsed, SEED, accepted))
print("mutations: " + ", ".join("%s %d" % kv for kv in sorted(kinds.items())))
print("%-16s %s" % ("function", "outcomes by SQLSTATE"))
for fname in [c[0] for c in CALLS] + [d[0] for d in DEEP]:
    if fname in counts:
        print("%-16s %s" % (fname, ", ".join("%s %d" % kv for kv in sorted(counts[fname].items()))))
print("first message per function and SQLSTATE:")
for (fname, state), msg in sorted(examples.items()):
    print("  %-16s %s %s" % (fname, state, msg))
if done < min(N, 1000):
    failures.append("only %d mutants ran" % done)
if failures:
    print("\nFAILED:")
    for f in failures[:30]:
        print("  " + f)
    sys.exit(1)
PY

# the postmaster log: no backend died while we ran
if [[ -n "${CML_PGLOG:-}" && -r "${CML_PGLOG}" ]]; then
	if tail -c +"$((log_start + 1))" "$CML_PGLOG" | grep -E 'terminated by signal|TRAP:|PANIC:'; then
		echo "FAILED a backend crashed (server log $CML_PGLOG)"
		rc=1
	else
		echo "ok     server log: no backend terminated by a signal"
	fi
fi
if [[ "$(q -d postgres -c 'SELECT 1')" == 1 ]]; then
	echo "ok     a new connection works"
else
	echo "FAILED no new connection"
	rc=1
fi
exit "$rc"
