#!/usr/bin/env bash
# The cinematic_ml end-to-end demo.
#
#   scripts/demo.sh [path/to/paris_filming_locations.csv]
#
# Installs what is missing (scripts/deps.sh), builds and installs the extension,
# starts a throwaway PostgreSQL 15 cluster (Unix socket only), runs
# CREATE EXTENSION cinematic_ml and scripts/demo.sql, then removes the cluster.
# Given the real CSV it trains on it; otherwise on ~15,000 synthetic Paris points.
#
# Environment: SKIP_DEPS=1 skips scripts/deps.sh; KEEP_CLUSTER=1 leaves the
# cluster running to explore afterwards; DEMO_PRELOAD (default cinematic_ml) is
# shared_preload_libraries, empty for none; DEMO_EXTENSION (default cinematic_ml).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PGBIN=/usr/lib/postgresql/15/bin
PG_CONFIG=${PG_CONFIG:-$PGBIN/pg_config}
export PATH="$PGBIN:$PATH"
PGCLUSTER="$ROOT/scripts/pgcluster.sh"
EXTENSION=${DEMO_EXTENSION:-cinematic_ml}
PRELOAD=${DEMO_PRELOAD-cinematic_ml}

if (($# > 1)); then
	echo "usage: scripts/demo.sh [path/to/paris_filming_locations.csv]" >&2
	exit 2
fi
csv=""
if (($# == 1)); then
	if [[ ! -f "$1" || ! -r "$1" ]]; then
		echo "demo.sh: cannot read CSV file '$1'" >&2
		exit 1
	fi
	csv=$(realpath -- "$1")
fi

step() {
	printf '\n\033[1m>>> %s\033[0m\n' "$*"
}

CLUSTER_DIR=""
BUILD_LOG=$(mktemp /tmp/cml-demo-build.XXXXXX)
cleanup() {
	local rc=$?
	trap - INT TERM
	rm -f "$BUILD_LOG"
	if [[ -n "$CLUSTER_DIR" ]]; then
		if ((rc != 0)) && [[ -r "$CLUSTER_DIR/log" ]]; then
			echo "demo.sh: failed; last lines of the server log:" >&2
			tail -n 15 "$CLUSTER_DIR/log" >&2
		fi
		if [[ "${KEEP_CLUSTER:-0}" == 1 ]]; then
			echo
			echo "KEEP_CLUSTER=1: the cluster is still running. To connect:"
			"$PGCLUSTER" env "$CLUSTER_DIR"
			echo "psql -X    # then, when done: PG_WIPE=1 $PGCLUSTER stop $CLUSTER_DIR"
		else
			PG_WIPE=1 "$PGCLUSTER" stop "$CLUSTER_DIR" || true
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a noisy command; show its output only if it fails.
quietly() {
	if ! "$@" >"$BUILD_LOG" 2>&1; then
		cat "$BUILD_LOG" >&2
		echo "demo.sh: failed: $*" >&2
		return 1
	fi
}

if [[ "${SKIP_DEPS:-0}" != 1 ]]; then
	step "Checking Debian packages (scripts/deps.sh)"
	"$ROOT/scripts/deps.sh"
fi

step "Building and installing the extension (make, make install)"
quietly make -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
quietly make PG_CONFIG="$PG_CONFIG" install

step "Starting a throwaway PostgreSQL 15 cluster"
CLUSTER_DIR=$(mktemp -d /tmp/cml-demo.XXXXXX)
port=55432
while [[ -e "/tmp/.s.PGSQL.$port" ]] || grep -qs "$(printf ':%04X ' "$port")" /proc/net/tcp /proc/net/tcp6; do
	port=$((port + 1))
done
conf=""
[[ -z "$PRELOAD" ]] || conf="shared_preload_libraries = '$PRELOAD'"
PG_EXTRA_CONF="$conf" "$PGCLUSTER" start "$CLUSTER_DIR" "$port"
eval "$("$PGCLUSTER" env "$CLUSTER_DIR")"
export PGHOST PGPORT PGUSER
export PGDATABASE=postgres
echo "socket directory $PGHOST, port $PGPORT (no TCP listener), log $CLUSTER_DIR/log"

step "CREATE EXTENSION $EXTENSION"
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION $EXTENSION CASCADE"
psql -X -q -At -c "SELECT 'installed ' || extname || ' ' || extversion FROM pg_extension WHERE extname = '$EXTENSION'"

if [[ -n "$csv" ]]; then
	step "Running scripts/demo.sql on $csv"
else
	step "Running scripts/demo.sql on synthetic data (pass the CSV path to use the real data)"
fi
psql -X -v ON_ERROR_STOP=1 -v csv="$csv" -f "$ROOT/scripts/demo.sql"
