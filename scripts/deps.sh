#!/usr/bin/env bash
# Install the Debian 12 packages cinematic_ml needs to build, test, benchmark and
# run its demo. Idempotent and quiet: only missing packages are installed, and
# nothing is printed when everything is already there. Runs as root (or via sudo).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
	build-essential                        # gcc, make
	pkgconf                                # pkg-config for libcurl flags
	postgresql-15                          # server + client (pgbench, psql)
	postgresql-contrib                     # contrib modules
	postgresql-server-dev-15               # PGXS, server headers
	postgresql-15-pgtap                    # pgTAP extension
	libtap-parser-sourcehandler-pgtap-perl # pg_prove
	postgresql-15-cron                     # pg_cron
	postgresql-15-postgis-3                # PostGIS (benchmarks, comparisons)
	libcurl4-openssl-dev                   # libcurl with CURLOPT_AWS_SIGV4
	python3-sklearn                        # reference implementation / benchmarks
	python3-psycopg2                       # python integration tests
	python3-numpy
	gnuplot-nox                            # benchmark plots
	radosgw                                # S3 integration test: Ceph RADOS Gateway (SigV4-verifying)
	ceph-mon                               #   its single monitor
	ceph-osd                               #   its single OSD (memstore)
	ceph-common                            #   ceph, radosgw-admin, monmaptool
	awscli                                 # independent S3 client to read exports back
	gdb                                    # holds a backend mid-commit in the concurrency test
	valgrind                               # on demand: CML_VALGRIND=1 test/integration/valgrind.sh
	clang-14                               # on demand: make fuzz (libFuzzer)
	libclang-rt-14-dev                     #   its sanitizer and fuzzer runtimes
)

# Packages dpkg reports as not fully installed.
missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	if [[ "$status" != "installed" ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi

SUDO=()
if ((EUID != 0)); then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo -E)
	else
		echo "deps.sh: must run as root to install: ${missing[*]}" >&2
		exit 1
	fi
fi

apt_install() {
	"${SUDO[@]}" apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${missing[@]}"
}

echo "deps.sh: installing ${missing[*]}"
if ! apt_install; then
	echo "deps.sh: install failed; running apt-get update and retrying" >&2
	"${SUDO[@]}" apt-get update -q
	apt_install
fi
