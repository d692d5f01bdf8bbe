#!/usr/bin/env bash
# cinematic_ml benchmarks: predict and k-means vs a bare scan, plain SQL, PostGIS and scikit-learn.
#
#   bench/run.sh [bench.py options]        e.g. bench/run.sh --n 200000 --runs 3
#
# Builds and installs the extension (BENCH_SKIP_BUILD=1 to skip), then runs bench/bench.py
# against the server named by PGHOST/PGPORT when both are set, otherwise against a throwaway
# cluster (scripts/pgcluster.sh in a mktemp dir, on a free port) that is removed afterwards.
#
# Environment:
#   BENCH_DB          database to use (default cml_bench; created with the extensions if missing)
#   BENCH_N           points (default 1000000)          BENCH_RUNS     runs per predict query (5)
#   BENCH_N_INIT      k-means n_init (3)                BENCH_KS       k values (16,64)
#   BENCH_ONLY        predict | kmeans | growth         BENCH_PG_CONF  extra postgresql.conf lines
#   BENCH_GROWTH_SIZES  growth series sizes (100000,1000000,10000000; none skips)
#   BENCH_KEEP_CLUSTER=1  leave the throwaway cluster running (its env is printed)
# Results: the table on stdout, bench/results/bench.csv (rewritten), bench/results/growth.csv
# (appended) and bench/results/latest.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PGBIN=/usr/lib/postgresql/15/bin
export PATH="$PGBIN:$PATH"
PYTHON=/usr/bin/python3

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
	echo "bench: make && make install" >&2
	make -s PG_CONFIG="$PGBIN/pg_config" >/dev/null
	make -s PG_CONFIG="$PGBIN/pg_config" install >/dev/null
fi

CLUSTER_DIR=""
cleanup() {
	if [[ -n "$CLUSTER_DIR" ]]; then
		if [[ "${BENCH_KEEP_CLUSTER:-0}" == 1 ]]; then
			echo "bench: cluster left running: $(scripts/pgcluster.sh env "$CLUSTER_DIR")" >&2
		else
			PG_WIPE=1 scripts/pgcluster.sh stop "$CLUSTER_DIR" || true
		fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n "${PGHOST:-}" && -n "${PGPORT:-}" ]]; then
	echo "bench: using the server at PGHOST=$PGHOST PGPORT=$PGPORT" >&2
	export PGUSER=${PGUSER:-postgres}
else
	port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	CLUSTER_DIR=$(mktemp -d /tmp/cml_bench.XXXXXX)
	echo "bench: starting a throwaway cluster in $CLUSTER_DIR on port $port" >&2
	# a server sized like a small production box rather than initdb's 128 MB defaults
	# wal_level = minimal: the growth series' binary COPY into a table created in the same
	# transaction writes no WAL (10M rows, ~500 MB); nothing timed depends on it;
	# min_dynamic_shared_memory: parallel queries' shared segments (a parallel k-means fit's
	# points) come from memory set aside at startup, not from the OS at each query
	PG_EXTRA_CONF="shared_buffers = '1GB'
work_mem = '64MB'
max_parallel_workers = 8
min_dynamic_shared_memory = '256MB'
wal_level = minimal
max_wal_senders = 0
max_wal_size = '4GB'
${BENCH_PG_CONF:-}" scripts/pgcluster.sh start "$CLUSTER_DIR" "$port"
	eval "$(scripts/pgcluster.sh env "$CLUSTER_DIR")"
	export PGHOST PGPORT PGUSER
fi

"$PYTHON" bench/bench.py "$@"
