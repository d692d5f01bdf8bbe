#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for tests and demos.
#
#   scripts/pgcluster.sh start DIR [PORT]   initdb (first time) + start, wait until ready
#   scripts/pgcluster.sh stop  DIR [PORT]   stop (fast); with PG_WIPE=1 also remove DIR
#   scripts/pgcluster.sh env   DIR [PORT]   print "export PGHOST=... PGPORT=... PGUSER=postgres"
#   scripts/pgcluster.sh psql  DIR [PORT] [psql args...]
#   scripts/pgcluster.sh status DIR [PORT]
#
# The server runs as the OS user `postgres` (it refuses root), keeps its data in
# DIR/data, its log in DIR/log and its Unix socket in DIR; it listens on no TCP
# address (listen_addresses = ''), uses trust authentication and fsync = off.
# PORT defaults to the port the cluster was started with (kept in DIR/port), else 55432.
# PG_EXTRA_CONF: lines appended to postgresql.conf on start, e.g.
#   PG_EXTRA_CONF="shared_preload_libraries = 'cinematic_ml,pg_cron'"
# Typical use:
#   dir=$(mktemp -d); scripts/pgcluster.sh start "$dir"; eval "$(scripts/pgcluster.sh env "$dir")"
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
DEFAULT_PORT=55432
PGOSUSER=${PGOSUSER:-postgres}

usage() {
	sed -n '2,9s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

(($# >= 2)) || usage
cmd=$1
dir=$2
shift 2

[[ "$dir" == /* ]] || dir="$PWD/$dir"
dir=${dir%/}

port=""
if (($# > 0)) && [[ "$1" =~ ^[0-9]+$ ]]; then
	port=$1
	shift
fi
if [[ -z "$port" ]]; then
	if [[ -r "$dir/port" ]]; then
		port=$(<"$dir/port")
	else
		port=$DEFAULT_PORT
	fi
fi

data="$dir/data"
log="$dir/log"

# Run a command as the postgres OS user (directly when we already are that user).
as_pg() {
	if [[ "$(id -un)" == "$PGOSUSER" ]]; then
		"$@"
	else
		runuser -u "$PGOSUSER" -- "$@"
	fi
}

print_env() {
	printf 'export PGHOST=%q PGPORT=%q PGUSER=postgres\n' "$dir" "$port"
}

is_running() {
	[[ -f "$data/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1
}

start() {
	mkdir -p "$dir"
	if [[ "$(id -u)" == 0 ]]; then
		chown "$PGOSUSER": "$dir"
	fi
	chmod 0755 "$dir"

	if [[ ! -f "$data/PG_VERSION" ]]; then
		as_pg "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C \
			>"$dir/initdb.log" 2>&1 || {
			cat "$dir/initdb.log" >&2
			echo "pgcluster.sh: initdb failed in $data" >&2
			exit 1
		}
	fi

	if is_running; then
		echo "pgcluster.sh: already running in $data" >&2
		exit 0
	fi

	# Settings this script owns live in an include file that is rewritten on every
	# start, so PG_EXTRA_CONF and PORT can change between restarts.
	local conf="$data/pgcluster.conf"
	{
		echo "# written by scripts/pgcluster.sh on every start"
		echo "listen_addresses = ''"
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
		echo "fsync = off"
		echo "synchronous_commit = off"
		echo "full_page_writes = off"
		echo "max_worker_processes = 16"
		echo "lc_messages = 'C'"
		echo "log_line_prefix = '%m [%p] %q%u@%d '"
		echo "log_min_messages = warning"
		if [[ -n "${PG_EXTRA_CONF:-}" ]]; then
			echo "# PG_EXTRA_CONF"
			printf '%s\n' "$PG_EXTRA_CONF"
		fi
	} | as_pg tee "$conf" >/dev/null
	if ! grep -q "^include_if_exists = 'pgcluster.conf'" "$data/postgresql.conf"; then
		echo "include_if_exists = 'pgcluster.conf'" | as_pg tee -a "$data/postgresql.conf" >/dev/null
	fi
	echo "$port" | as_pg tee "$dir/port" >/dev/null

	if ! as_pg "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "-p $port" start >/dev/null; then
		echo "pgcluster.sh: server failed to start; last lines of $log:" >&2
		tail -n 30 "$log" >&2 || true
		exit 1
	fi
}

stop() {
	if [[ -f "$data/postmaster.pid" ]]; then
		as_pg "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null ||
			as_pg "$PGBIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null || true
	fi
	if [[ "${PG_WIPE:-0}" == 1 ]]; then
		# Only remove what looks like one of our cluster directories.
		if [[ -n "$dir" && "$dir" != / && (-f "$dir/port" || -f "$data/PG_VERSION" || -f "$dir/initdb.log") ]]; then
			rm -rf -- "$dir"
		else
			echo "pgcluster.sh: not wiping $dir: not a pgcluster.sh directory" >&2
		fi
	fi
}

case "$cmd" in
start) start ;;
stop) stop ;;
env) print_env ;;
status)
	if is_running; then
		echo "running: $data (socket $dir, port $port)"
	else
		echo "not running: $data"
		exit 3
	fi
	;;
psql)
	PGHOST=$dir PGPORT=$port PGUSER=${PGUSER:-postgres} exec "$PGBIN/psql" -X "$@"
	;;
*) usage ;;
esac
