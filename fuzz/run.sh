#!/usr/bin/env bash
# Run the libFuzzer targets (built by `make fuzz`) for a time budget each.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      default 60 s, targets model and options
#
# 1. replays fuzz/regressions/TARGET/* (every crash found so far) — must pass;
# 2. fuzzes each target for SECONDS, the targets side by side (one core each),
#    starting from the committed seeds in fuzz/corpus/TARGET plus what earlier
#    runs found (fuzz/build/corpus/TARGET, not committed);
# 3. prints executions, executions per second, coverage and crashes per target.
# A crash leaves its input in fuzz/build/artifacts/ and fails the run: replay it
# with `fuzz/build/fuzz_TARGET FILE`, keep it as fuzz/regressions/TARGET/NAME.
#
# Environment: FUZZ_JOBS=1 runs the targets one after the other;
# FUZZ_ARGS adds libFuzzer options (e.g. "-use_value_profile=1");
# FUZZ_IGNORE_KNOWN=1 builds in fuzz/build-known without the UBSan checks of the
# bugs listed in fuzz/known_bugs.ignorelist (reported, not fixed yet), so that a
# campaign goes past them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SECS=${1:-60}
shift || true
TARGETS=("$@")
((${#TARGETS[@]} > 0)) || TARGETS=(model options)
OUT=fuzz/build
MAKE_ARGS=()
if [[ "${FUZZ_IGNORE_KNOWN:-0}" == 1 ]]; then
	OUT=fuzz/build-known
	MAKE_ARGS=(FUZZ_OUT="$OUT" FUZZ_IGNORELIST=fuzz/known_bugs.ignorelist)
fi

declare -A MAXLEN=([model]=16384 [options]=4096)

make -s fuzz "${MAKE_ARGS[@]}"
mkdir -p "$OUT/artifacts" "$OUT/logs"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:malloc_context_size=8}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

rc=0
# 1. regressions
for t in "${TARGETS[@]}"; do
	bin=$OUT/fuzz_$t
	[[ -x "$bin" ]] || { echo "run.sh: no target $bin" >&2; exit 2; }
	shopt -s nullglob
	files=(fuzz/regressions/"$t"/* fuzz/corpus/"$t"/*)
	mkdir -p "fuzz/build/corpus/$t"
	shopt -u nullglob
	if ((${#files[@]} > 0)); then
		if "$bin" -runs=1 "${files[@]}" >"$OUT/logs/replay_$t.log" 2>&1; then
			echo "replay $t: ${#files[@]} inputs (regressions + seeds) pass"
		else
			echo "replay $t: FAILED, see $OUT/logs/replay_$t.log" >&2
			tail -n 30 "$OUT/logs/replay_$t.log" >&2
			rc=1
		fi
	fi
done

# 2. fuzzing
pids=()
for t in "${TARGETS[@]}"; do
	mkdir -p "fuzz/build/corpus/$t"
	dict=()
	[[ -f fuzz/$t.dict ]] && dict=(-dict="fuzz/$t.dict")
	# shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
	cmd=("$OUT/fuzz_$t" -max_total_time="$SECS" -max_len="${MAXLEN[$t]:-4096}" -timeout=20
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-"
		"${dict[@]}" ${FUZZ_ARGS:-} "fuzz/build/corpus/$t" "fuzz/corpus/$t")
	echo "fuzzing $t for ${SECS}s: ${cmd[*]}"
	if [[ "${FUZZ_JOBS:-2}" == 1 ]]; then
		"${cmd[@]}" >"$OUT/logs/fuzz_$t.log" 2>&1 || true
	else
		"${cmd[@]}" >"$OUT/logs/fuzz_$t.log" 2>&1 &
		pids+=($!)
	fi
done
for p in "${pids[@]}"; do
	wait "$p" || true
done

# 3. summary
printf '\n%-8s %12s %10s %8s %8s %8s  %s\n' target executions exec/s cov corpus crashes result
for t in "${TARGETS[@]}"; do
	log=$OUT/logs/fuzz_$t.log
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+' || true)
	corp=$(grep -Eo 'corp: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+' || true)
	crashes=$(grep -c 'Test unit written to' "$log" || true)
	result=pass
	if ((crashes > 0)) || grep -qE '^==[0-9]+==ERROR|runtime error:|^fuzz(_model|_options)?: |deadly signal' "$log"; then
		result="CRASH (see $log)"
		rc=1
	fi
	printf '%-8s %12s %10s %8s %8s %8s  %s\n' "$t" "${runs:-?}" "${speed:-?}" "${cov:-?}" "${corp:-?}" "$crashes" "$result"
done
if ((rc != 0)); then
	echo
	for t in "${TARGETS[@]}"; do
		grep -E -m 3 -A 12 '^==[0-9]+==ERROR|runtime error:|^fuzz(_model|_options)?: |deadly signal' "$OUT/logs/fuzz_$t.log" || true
	done
fi
exit "$rc"
