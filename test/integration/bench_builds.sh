#!/usr/bin/env bash
# The benchmark's C kernel timer (bench/geometry_cost.c, `make bench-geometry`) builds
# against the extension's src/geo.h, warning-free, and runs: it includes the server's
# header outside the server, so a change to geo.h can break `make bench` without any
# other test noticing (it did once). Not a benchmark: the timings printed are ignored.
set -euo pipefail
cd "$(dirname "$0")/../.."
d=$(mktemp -d /tmp/cml-bench-build.XXXXXX)
trap 'rm -rf "$d"' EXIT
${CC:-gcc} -O2 -Wall -Wextra -Werror -o "$d/geometry_cost" bench/geometry_cost.c -lm
"$d/geometry_cost" > "$d/out.txt"
grep -q '^assignment pass, k=16' "$d/out.txt"
echo "ok     bench/geometry_cost.c builds warning-free against src/geo.h and runs"
