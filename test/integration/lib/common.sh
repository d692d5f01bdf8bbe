# shellcheck shell=bash
# Helpers shared by test/integration/*.sh (sourced, not run; scripts/test.sh runs only
# test/integration/*.sh, not this directory).
#
#   ok / not_ok / check WHAT COMMAND...   TAP-like lines; FAILS counts the failures
#   check_eventually SECS WHAT COMMAND...  check, COMMAND retried for up to SECS s (e.g. a row a
#                                          background worker is updating at that very moment)
#   expect WHAT GOT WANT                   ok when GOT == WANT, else not ok showing both
#   finish                                 print the summary line, exit 0 or 1
#   elapsed                                seconds since the script started
#   session_open NAME [psql args...]       a long-lived psql session (one backend), fed
#                                          through a FIFO: the same connection for every
#                                          session_run, as an application keeps it open
#   session_run NAME SQL [TIMEOUT]         run SQL (ending in ';') in it; its output lines
#                                          (stdout and stderr, -At format) land in
#                                          SESSION_OUT; status 1 when a line has ERROR: /
#                                          FATAL: / PANIC:, 2 when the session died or
#                                          did not answer within TIMEOUT s (default 60)
#   session_send NAME SQL / session_wait NAME [TIMEOUT]
#                                          the two halves of session_run, for a statement
#                                          that blocks while the script does something else
#   session_close NAME / session_close_all
#   lsn_wait_replay PRIMARY_CONN STANDBY_CONN [TIMEOUT]
#                                          wait until the standby replayed the primary's
#                                          WAL insert position (connection strings;
#                                          the standby's in key=value form)

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
export PATH="$PGBIN:$PATH"

FAILS=0
CHECKS=0
T_START=${EPOCHREALTIME/,/.}

elapsed() {
	awk -v a="$T_START" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.1f", b - a }'
}
ok() {
	CHECKS=$((CHECKS + 1))
	echo "ok $CHECKS - $*"
}
not_ok() {
	CHECKS=$((CHECKS + 1))
	FAILS=$((FAILS + 1))
	echo "not ok $CHECKS - $*"
}
check() { # what command...
	local what=$1
	shift
	if "$@"; then ok "$what"; else not_ok "$what"; fi
}
check_eventually() { # secs what command...
	local end=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		if ((SECONDS >= end)); then
			not_ok "$what"
			return 0
		fi
		sleep 0.2
	done
	ok "$what"
}
expect() { # what got want: ok when got == want, else show both
	if [[ "$2" == "$3" ]]; then
		ok "$1"
	else
		not_ok "$1"
		echo "#   got:  $2"
		echo "#   want: $3"
	fi
}
finish() {
	if ((FAILS == 0)); then
		echo "# $(basename "$0"): all $CHECKS checks passed in $(elapsed) s"
		exit 0
	fi
	echo "# $(basename "$0"): $FAILS of $CHECKS checks FAILED ($(elapsed) s)"
	exit 1
}

# ---------------------------------------------------------------- long-lived sessions
declare -A _SESS_IN=() _SESS_OUT=() _SESS_PID=() _SESS_N=()
SESSION_OUT=()
_SESS_DIR=""

session_open() { # name [psql args...]
	local name=$1 in out fdin fdout
	shift
	if [[ -z "$_SESS_DIR" ]]; then
		_SESS_DIR=$(mktemp -d /tmp/cml-sessions.XXXXXX)
	fi
	in="$_SESS_DIR/$name.in"
	out="$_SESS_DIR/$name.out"
	rm -f "$in" "$out"
	mkfifo "$in" "$out"
	# a session whose psql died must make session_run fail, not kill the script
	trap '' PIPE
	# psql reads the FIFO until it is closed; -At: bare values, one per line
	psql -X -q -At "$@" <"$in" >"$out" 2>&1 &
	_SESS_PID[$name]=$!
	exec {fdin}>"$in"
	exec {fdout}<"$out"
	_SESS_IN[$name]=$fdin
	_SESS_OUT[$name]=$fdout
	_SESS_N[$name]=0
	session_run "$name" "SELECT 'session ready';" 30
}

session_run() { # name sql [timeout]
	session_send "$1" "$2" || return 2
	session_wait "$1" "${3:-60}"
}

# session_send NAME SQL: send without waiting (e.g. a statement that will block);
# session_wait NAME [TIMEOUT] then collects its output like session_run
session_send() { # name sql
	local name=$1 sql=$2 fdin=${_SESS_IN[$1]:-}
	SESSION_OUT=()
	[[ -n "$fdin" ]] || return 2
	_SESS_N[$name]=$((${_SESS_N[$name]} + 1))
	# shellcheck disable=SC2261 # $fdin is a file descriptor number
	printf '%s\n\\echo __cml_session_%s_%s__\n' "$sql" "$name" "${_SESS_N[$name]}" >&"$fdin" 2>/dev/null || return 2
}

session_wait() { # name [timeout]
	local name=$1 timeout=${2:-60} marker line rc=0 fdout=${_SESS_OUT[$1]:-}
	SESSION_OUT=()
	[[ -n "$fdout" ]] || return 2
	marker="__cml_session_${name}_${_SESS_N[$name]}__"
	while true; do
		if ! IFS= read -r -t "$timeout" line <&"$fdout"; then
			return 2 # EOF (psql exited) or timeout
		fi
		[[ "$line" != "$marker" ]] || break
		SESSION_OUT+=("$line")
		[[ ! "$line" =~ (^|:\ )(ERROR|FATAL|PANIC):\  ]] || rc=1
	done
	return "$rc"
}

session_close() { # name
	local name=$1 pid fd
	pid=${_SESS_PID[$name]:-}
	[[ -n "$pid" ]] || return 0
	fd=${_SESS_IN[$name]}
	exec {fd}>&- 2>/dev/null || true
	# psql sees the end of its input and quits; do not wait forever on a stuck one
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	fd=${_SESS_OUT[$name]}
	exec {fd}<&- 2>/dev/null || true
	unset "_SESS_PID[$name]" "_SESS_IN[$name]" "_SESS_OUT[$name]"
}

session_close_all() {
	local name
	for name in "${!_SESS_PID[@]}"; do
		session_close "$name"
	done
	[[ -z "$_SESS_DIR" ]] || rm -rf -- "$_SESS_DIR"
	_SESS_DIR=""
}

# ---------------------------------------------------------------- replication
lsn_wait_replay() { # primary_conninfo standby_conninfo [timeout]
	local primary=$1 standby=$2 timeout=${3:-60} target t0=$SECONDS caught
	# the insert position: with synchronous_commit = off (scripts/pgcluster.sh) the last
	# commit record may not be written yet, so pg_current_wal_lsn() can be behind it
	target=$(psql -X -At -d "$primary" -c "SELECT pg_current_wal_insert_lsn()") || return 1
	while ((SECONDS - t0 < timeout)); do
		# on the standby's postgres database: one just created on the primary is not
		# there until replayed (the last dbname in a conninfo string wins)
		caught=$(psql -X -At -d "$standby dbname=postgres" \
			-c "SELECT pg_last_wal_replay_lsn() >= '$target'::pg_lsn") || return 1
		[[ "$caught" != t ]] || return 0
		sleep 0.1
	done
	echo "# the standby did not replay up to $target within ${timeout}s" >&2
	return 1
}
