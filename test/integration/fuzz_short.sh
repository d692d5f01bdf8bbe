#!/usr/bin/env bash
# A short libFuzzer run in the suite (issue 8.1): build the targets outside the server
# (clang, ASan, UBSan), replay every crash found so far, then fuzz the model deserialiser
# and the option parsers for FUZZ_SECONDS (default 20) each. Longer on demand:
# `make fuzz && fuzz/run.sh 600`.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v clang-14 >/dev/null; then
	echo "SKIP: clang-14 is not installed (scripts/deps.sh installs it)"
	exit 77
fi
make -s fuzz >/dev/null
fuzz/run.sh "${FUZZ_SECONDS:-20}"
