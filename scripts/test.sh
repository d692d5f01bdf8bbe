#!/usr/bin/env bash
# The full cinematic_ml test suite (what .ci/run executes).
#
#   scripts/test.sh
#
# 1. scripts/deps.sh                      (SKIP_DEPS=1 to skip)
# 2. make clean && make, make install
# 3. a throwaway PostgreSQL 15 cluster (scripts/pgcluster.sh) in a mktemp dir,
#    Unix socket only, preloading cinematic_ml and pg_cron
# 4. regress:     make installcheck (pg_regress: sql/*.sql vs expected/*.out)
#    tap:         pg_prove on test/*.sql in a fresh database cml_tap (pgtap created)
#    integration: every test/integration/*.sh (bash) and test/python/*.py (python3)
# 5. stop and remove the cluster, print a summary; exit non-zero if anything failed.
#
# Environment:
#   TEST_ONLY=regress|tap|integration   run only these parts (comma-separated list)
#   KEEP_CLUSTER=1                      leave the cluster running afterwards
#   SKIP_DEPS=1                         do not run scripts/deps.sh
#   TEST_EXTRA_CONF                     more postgresql.conf lines for the cluster
#   TEST_PRELOAD                        shared_preload_libraries (default cinematic_ml,pg_cron)
#   TEST_TIMEOUT                        seconds allowed per part / script (default 1800)
#
# Integration scripts get PGHOST, PGPORT, PGUSER (=postgres) and PGDATABASE
# (=postgres, where pg_cron lives) for the running cluster, plus
#   CML_ROOT      repository root          CML_PGDIR   cluster directory (socket, log)
#   CML_PGDATA    data directory           CML_PGLOG   server log file
#   CML_PGCLUSTER path of scripts/pgcluster.sh (to restart with other settings)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PGBIN=/usr/lib/postgresql/15/bin
PG_CONFIG=${PG_CONFIG:-$PGBIN/pg_config}
export PATH="$PGBIN:$PATH"
PGCLUSTER="$ROOT/scripts/pgcluster.sh"
TEST_TIMEOUT=${TEST_TIMEOUT:-1800}
TAP_DB=cml_tap

# ---------------------------------------------------------------- bookkeeping
PART_NAME=()
PART_RESULT=()
PART_SECS=()
PART_NOTE=()
N_PASSED=0 # test units (regress tests, TAP tests, scripts) that passed
N_FAILED=0
UNITS_PASSED=0 # set by a part to report how many tests it ran
UNITS_FAILED=0
UNITS_NOTE="" # set by a part to replace the note in the summary
CLUSTER_DIR=""
CURRENT_PART="" # set while a part runs
CURRENT_T0=""
CHILD="" # the running `timeout` (leader of its own process group), see run_logged
INTERRUPTED=0
CLEANED=0

if [[ -t 1 ]]; then
	BOLD=$'\e[1m' RED=$'\e[31m' GREEN=$'\e[32m' YELLOW=$'\e[33m' RESET=$'\e[0m'
else
	BOLD="" RED="" GREEN="" YELLOW="" RESET=""
fi

banner() {
	printf '\n%s==== %s ====%s\n' "$BOLD" "$*" "$RESET"
}

now() {
	echo "${EPOCHREALTIME/,/.}"
}

record() { # name result seconds note
	PART_NAME+=("$1")
	PART_RESULT+=("$2")
	PART_SECS+=("$3")
	PART_NOTE+=("${4:-}")
}

# run_part NAME FUNCTION [ARGS...]: time FUNCTION and record PASS/FAIL.
# A part may set UNITS_PASSED / UNITS_FAILED to the number of tests it ran.
run_part() {
	local name=$1 rc=0 t0 secs note=""
	shift
	banner "$name"
	UNITS_PASSED=0
	UNITS_FAILED=0
	UNITS_NOTE=""
	t0=$(now)
	CURRENT_PART=$name CURRENT_T0=$t0
	"$@" || rc=$?
	CURRENT_PART=""
	secs=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
	if ((rc == 77)); then
		# exit status 77: the test skipped itself (e.g. the shared Paris data is absent)
		record "$name" SKIP "$secs" "${UNITS_NOTE:-skipped by the test}"
		return 0
	fi
	if ((rc == 0)); then
		if ((UNITS_PASSED > 0)); then
			note="$UNITS_PASSED passed"
		fi
		[[ -z "$UNITS_NOTE" ]] || note=$UNITS_NOTE
		N_PASSED=$((N_PASSED + UNITS_PASSED))
		record "$name" PASS "$secs" "$note"
	else
		if ((UNITS_FAILED > 0)); then
			note="$UNITS_FAILED failed"
		else
			UNITS_FAILED=1
			note="exit status $rc"
		fi
		((UNITS_PASSED == 0)) || note="$UNITS_PASSED passed, $note"
		((rc != 124)) || note="$note (timeout ${TEST_TIMEOUT}s)"
		N_PASSED=$((N_PASSED + UNITS_PASSED))
		N_FAILED=$((N_FAILED + UNITS_FAILED))
		record "$name" FAIL "$secs" "$note"
	fi
	return "$rc"
}

skip_part() { # name reason
	record "$1" SKIP 0.0 "$2"
}

print_summary() {
	local i colour
	banner "summary"
	printf '%-32s %-6s %9s  %s\n' part result seconds notes
	printf '%-32s %-6s %9s  %s\n' "----" "------" "-------" "-----"
	for i in "${!PART_NAME[@]}"; do
		case "${PART_RESULT[$i]}" in
		PASS) colour=$GREEN ;;
		FAIL) colour=$RED ;;
		*) colour=$YELLOW ;;
		esac
		printf '%-32s %s%-6s%s %9s  %s\n' "${PART_NAME[$i]}" "$colour" "${PART_RESULT[$i]}" "$RESET" \
			"${PART_SECS[$i]}" "${PART_NOTE[$i]}"
	done
}

any_failed() {
	local r
	for r in "${PART_RESULT[@]}"; do
		[[ "$r" != FAIL ]] || return 0
	done
	return 1
}

cleanup() {
	local rc=$? skipped=0 r
	((CLEANED == 0)) || return 0
	CLEANED=1
	trap - INT TERM
	if [[ -n "$CHILD" ]]; then
		# Interrupted while a test ran: stop it and everything it started.
		kill -TERM -- "-$CHILD" 2>/dev/null || kill -TERM "$CHILD" 2>/dev/null || true
		wait "$CHILD" 2>/dev/null || true
		CHILD=""
	fi
	if [[ -n "$CLUSTER_DIR" ]]; then
		# Crashes and assertion failures are easy to miss in a test's own output.
		if [[ -r "$CLUSTER_DIR/log" ]] && grep -Eq 'terminated by signal|TRAP:|PANIC:' "$CLUSTER_DIR/log"; then
			banner "server crashes in $CLUSTER_DIR/log"
			grep -E -A 1 'terminated by signal|TRAP:|PANIC:' "$CLUSTER_DIR/log" | head -n 60
			record "server log" FAIL 0.0 "backend crash or PANIC, see above"
		fi
		if [[ "${KEEP_CLUSTER:-0}" == 1 ]]; then
			echo
			echo "KEEP_CLUSTER=1: cluster left running in $CLUSTER_DIR (log: $CLUSTER_DIR/log). Use:"
			"$PGCLUSTER" env "$CLUSTER_DIR"
			echo "Stop it with: PG_WIPE=1 $PGCLUSTER stop $CLUSTER_DIR"
		else
			PG_WIPE=1 "$PGCLUSTER" stop "$CLUSTER_DIR" || echo "warning: could not stop cluster in $CLUSTER_DIR" >&2
		fi
	fi
	if ((INTERRUPTED)); then
		if [[ -n "$CURRENT_PART" ]]; then
			record "$CURRENT_PART" FAIL "$(awk -v a="$CURRENT_T0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')" "interrupted"
		else
			record interrupted FAIL 0.0 "stopped by a signal"
		fi
		N_FAILED=$((N_FAILED + 1))
	fi
	print_summary
	for r in "${PART_RESULT[@]}"; do
		[[ "$r" != SKIP ]] || skipped=$((skipped + 1))
	done
	if ((INTERRUPTED)); then
		rc=130
	elif any_failed; then
		rc=1
		# A failed infrastructure step (build, cluster, ...) counts as a failed test.
		((N_FAILED > 0)) || N_FAILED=1
	elif ((rc != 0)); then
		# Stopped by an unexpected error in this script.
		((N_FAILED > 0)) || N_FAILED=1
	elif ((N_PASSED == 0)); then
		echo "warning: no test was run" >&2
	fi
	echo
	# Plain closing line read by CI.
	printf 'test.sh: %d passed, %d failed, %d skipped\n' "$N_PASSED" "$N_FAILED" "$skipped"
	exit "$rc"
}
trap cleanup EXIT
trap 'INTERRUPTED=1; exit 130' INT TERM

# ---------------------------------------------------------------- options
RUN_REGRESS=1 RUN_TAP=1 RUN_INTEGRATION=1
if [[ -n "${TEST_ONLY:-}" ]]; then
	RUN_REGRESS=0 RUN_TAP=0 RUN_INTEGRATION=0
	IFS=', ' read -r -a only <<<"$TEST_ONLY"
	for p in "${only[@]}"; do
		case "$p" in
		regress) RUN_REGRESS=1 ;;
		tap) RUN_TAP=1 ;;
		integration) RUN_INTEGRATION=1 ;;
		*)
			echo "test.sh: unknown TEST_ONLY part '$p' (use regress, tap, integration)" >&2
			exit 2
			;;
		esac
	done
fi

# run_logged OUTFILE COMMAND...: run COMMAND under `timeout`, its output going to
# OUTFILE and shown as it comes. COMMAND runs in the background so that a signal
# reaches our trap at once; `timeout` leads its own process group, which cleanup
# terminates as a whole.
run_logged() {
	local out=$1 rc=0 tailpid
	shift
	: >"$out"
	timeout -k 10 "$TEST_TIMEOUT" "$@" >"$out" 2>&1 </dev/null &
	CHILD=$!
	tail -s 0.2 -n +1 -f --pid="$CHILD" "$out" &
	tailpid=$!
	wait "$CHILD" || rc=$?
	CHILD=""
	wait "$tailpid" || true
	return "$rc"
}

# ---------------------------------------------------------------- parts
do_deps() {
	"$ROOT/scripts/deps.sh"
}

do_build() {
	if [[ ! -f Makefile ]]; then
		echo "no Makefile in $ROOT" >&2
		return 1
	fi
	make PG_CONFIG="$PG_CONFIG" clean && make -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
}

do_install() {
	make PG_CONFIG="$PG_CONFIG" install
}

# A TCP port nobody listens on (the cluster itself only uses a Unix socket,
# but keeping the number unique avoids confusing anyone who looks).
free_port() {
	local port hex
	for ((port = 55432 + RANDOM % 2000; port < 65000; port++)); do
		printf -v hex ':%04X ' "$port"
		if ! grep -qs "$hex" /proc/net/tcp /proc/net/tcp6 && ! compgen -G "/tmp/.s.PGSQL.$port*" >/dev/null; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

do_cluster() {
	local port
	CLUSTER_DIR=$(mktemp -d /tmp/cml-test.XXXXXX)
	port=$(free_port)
	PG_EXTRA_CONF="shared_preload_libraries = '${TEST_PRELOAD:-cinematic_ml,pg_cron}'
cron.database_name = 'postgres'
cron.host = '$CLUSTER_DIR'
${TEST_EXTRA_CONF:-}" "$PGCLUSTER" start "$CLUSTER_DIR" "$port" || return 1
	eval "$("$PGCLUSTER" env "$CLUSTER_DIR")"
	export PGHOST PGPORT PGUSER
	export PGDATABASE=postgres
	export CML_ROOT="$ROOT" CML_PGDIR="$CLUSTER_DIR" CML_PGDATA="$CLUSTER_DIR/data"
	export CML_PGLOG="$CLUSTER_DIR/log" CML_PGCLUSTER="$PGCLUSTER"
	echo "cluster: $CLUSTER_DIR (socket), port $PGPORT, log $CML_PGLOG"
	psql -X -q -A -t -v ON_ERROR_STOP=1 -c "SELECT 'shared_preload_libraries = ' || current_setting('shared_preload_libraries')"
}

do_regress() {
	local out="$CLUSTER_DIR/installcheck.out" rc=0 line
	rm -f regression.diffs regression.out
	run_logged "$out" make PG_CONFIG="$PG_CONFIG" installcheck || rc=$?
	# "All 12 tests passed." / "3 of 12 tests failed." (", N failed tests ignored" may follow)
	line=$(grep -Eo '(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed)' "$out" | tail -n 1 || true)
	if [[ "$line" =~ ^All\ ([0-9]+) ]]; then
		UNITS_PASSED=${BASH_REMATCH[1]}
	elif [[ "$line" =~ ^([0-9]+)\ of\ ([0-9]+) ]]; then
		UNITS_FAILED=${BASH_REMATCH[1]}
		UNITS_PASSED=$((BASH_REMATCH[2] - BASH_REMATCH[1]))
		((rc != 0)) || rc=1
	elif ((rc == 0)); then
		UNITS_NOTE="no pg_regress test ran (REGRESS empty?)"
	fi
	if ((rc != 0)) && [[ -s regression.diffs ]]; then
		banner "regression.diffs"
		head -n 2000 regression.diffs
		(($(wc -l <regression.diffs) <= 2000)) || echo "... (truncated; see $ROOT/regression.diffs)"
	fi
	return "$rc"
}

do_tap() {
	local out="$CLUSTER_DIR/pg_prove.out" rc=0 tests failed failed_units
	psql -X -q -v ON_ERROR_STOP=1 -d postgres \
		-c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $TAP_DB" -c "CREATE DATABASE $TAP_DB" || return 1
	psql -X -q -v ON_ERROR_STOP=1 -d "$TAP_DB" -c "CREATE EXTENSION pgtap" || return 1
	run_logged "$out" pg_prove -d "$TAP_DB" --failures --comments --timer --nocolor "${TAP_FILES[@]}" || rc=$?
	tests=$(sed -nE 's/^Files=[0-9]+, Tests=([0-9]+),.*/\1/p' "$out" | tail -n 1)
	# Summary report lines: "test/x.sql (Wstat: 768 (exited 3) Tests: 2 Failed: 1)".
	# Failed tests are subtracted from Tests=; a file that failed without a failed
	# test (an SQL error, a bad plan) counts as one failure.
	read -r failed failed_units < <(sed -nE 's/.*\(Wstat: .*Tests: [0-9]+ Failed: ([0-9]+)\)$/\1/p' "$out" |
		awk '{ f += $1; u += ($1 > 0 ? $1 : 1) } END { print f + 0, u + 0 }')
	if [[ -n "$tests" ]]; then
		UNITS_FAILED=$failed_units
		UNITS_PASSED=$((tests - failed))
		((UNITS_PASSED >= 0)) || UNITS_PASSED=0
	fi
	# A file that died before its plan (e.g. an SQL error) fails without a failed test.
	if ((rc != 0 && UNITS_FAILED == 0)); then
		UNITS_FAILED=1
	fi
	return "$rc"
}

run_script() { # interpreter script
	local rc=0 out
	out="$CLUSTER_DIR/$(basename "$2").out"
	run_logged "$out" "$1" "$2" || rc=$?
	((rc != 0)) || UNITS_PASSED=1
	((rc != 77)) || UNITS_NOTE=$(grep -m1 -i 'skip' "$out" | cut -c1-100)
	return "$rc"
}

# ---------------------------------------------------------------- main
shopt -s nullglob
TAP_FILES=(test/*.sql)
INTEGRATION_FILES=(test/integration/*.sh)
PYTHON_FILES=(test/python/test_*.py)

if [[ "${SKIP_DEPS:-0}" == 1 ]]; then
	skip_part deps "SKIP_DEPS=1"
else
	run_part deps do_deps || true
fi

ready=0
if run_part build do_build && run_part install do_install && run_part cluster do_cluster; then
	ready=1
fi

if ((RUN_REGRESS)); then
	if ((!ready)); then
		skip_part regress "no cluster"
	elif ! compgen -G 'sql/*.sql' >/dev/null; then
		skip_part regress "no sql/*.sql"
	else
		run_part regress do_regress || true
	fi
fi

if ((RUN_TAP)); then
	if ((!ready)); then
		skip_part tap "no cluster"
	elif ((${#TAP_FILES[@]} == 0)); then
		skip_part tap "no test/*.sql"
	else
		run_part tap do_tap || true
	fi
fi

if ((RUN_INTEGRATION)); then
	if ((${#INTEGRATION_FILES[@]} + ${#PYTHON_FILES[@]} == 0)); then
		skip_part integration "no test/integration/*.sh or test/python/*.py"
	else
		for f in "${INTEGRATION_FILES[@]}"; do
			if ((ready)); then
				run_part "$f" run_script bash "$f" || true
			else
				skip_part "$f" "no cluster"
			fi
		done
		for f in "${PYTHON_FILES[@]}"; do
			if ((ready)); then
				run_part "$f" run_script /usr/bin/python3 "$f" || true
			else
				skip_part "$f" "no cluster"
			fi
		done
	fi
fi
# cleanup (EXIT trap) stops the cluster, prints the summary and sets the exit status.
