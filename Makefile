# cinematic_ml — PGXS build
EXTENSION = cinematic_ml
EXTVERSION = 0.1.1

MODULE_big = cinematic_ml
OBJS = \
	src/cinematic_ml.o \
	src/geo.o \
	src/model.o \
	src/points.o \
	src/kmeans.o \
	src/dbscan.o \
	src/zones.o \
	src/drift.o \
	src/predict.o \
	src/registry.o \
	src/cron.o \
	src/stats.o \
	src/s3.o \
	src/export.o \
	src/worker.o

# The install script is assembled from one file per subsystem (sql/install/NN_*.sql),
# in name order, so each subsystem keeps its SQL beside its peers.
INSTALL_PARTS = $(sort $(wildcard sql/install/*.sql))
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
# released install scripts stay installable (frozen), and every release has an update path
DATA = $(wildcard sql/releases/$(EXTENSION)--*.sql) $(wildcard sql/upgrade/$(EXTENSION)--*--*.sql)

REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/[0-9]*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK = -lcurl -lm

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_PARTS)
	cat $^ > $@

EXTRA_CLEAN = $(EXTENSION)--$(EXTVERSION).sql results regression.diffs regression.out

# every object depends on the headers (PGXS does not track them)
$(OBJS): $(wildcard src/*.h)

# ---------------------------------------------------------------- fuzzing
# `make fuzz`: libFuzzer targets built outside the server with clang, ASan and
# UBSan (fuzz/README.md); `fuzz/run.sh [seconds]` runs them.  Not part of the
# extension's build or `make installcheck`.
FUZZ_CC ?= clang-14
FUZZ_OUT ?= fuzz/build
FUZZ_SRC = model geo zones dbscan points kmeans drift
FUZZ_TARGETS = $(FUZZ_OUT)/fuzz_model $(FUZZ_OUT)/fuzz_options
FUZZ_SAN ?= -fsanitize=address,undefined -fno-sanitize-recover=all
# FUZZ_IGNORELIST=fuzz/known_bugs.ignorelist: leave out the UBSan checks of bugs
# already reported (fuzz/run.sh does this with FUZZ_IGNORE_KNOWN=1, in fuzz/build-known)
FUZZ_IGNORELIST ?=
FUZZ_SAN += $(if $(FUZZ_IGNORELIST),-fsanitize-ignorelist=$(FUZZ_IGNORELIST))
# no -fwrapv (unlike the server build): UBSan then reports signed overflow
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer -fno-strict-aliasing $(FUZZ_SAN) \
	-fsanitize=fuzzer-no-link -Wall -Wno-ignored-attributes -Wno-unused-parameter \
	-Wno-missing-field-initializers -Wno-sign-compare -D_GNU_SOURCE \
	-I$(srcdir)/src -I$(srcdir)/fuzz -I$(shell $(PG_CONFIG) --includedir-server)
FUZZ_PGLIBS = $(shell $(PG_CONFIG) --pkglibdir)/libpgcommon_shlib.a \
	$(shell $(PG_CONFIG) --pkglibdir)/libpgport_shlib.a -lm
FUZZ_LDFLAGS = $(FUZZ_SAN) -fsanitize=fuzzer
FUZZ_OBJS = $(patsubst %,$(FUZZ_OUT)/src_%.o,$(FUZZ_SRC)) $(FUZZ_OUT)/shim.o

.PHONY: fuzz fuzz-clean
fuzz: $(FUZZ_TARGETS)

$(FUZZ_OUT)/src_%.o: src/%.c $(wildcard src/*.h) | $(FUZZ_OUT)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_OUT)/%.o: fuzz/%.c fuzz/shim.h $(wildcard src/*.h) | $(FUZZ_OUT)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_OUT)/stubs.o: $(FUZZ_OBJS) fuzz/gen_stubs.sh | $(FUZZ_OUT)
	fuzz/gen_stubs.sh $(FUZZ_OUT)/stubs.c "$(FUZZ_CC)" "$(FUZZ_LDFLAGS)" $(FUZZ_OBJS) $(FUZZ_PGLIBS)
	$(FUZZ_CC) -g -O1 -c $(FUZZ_OUT)/stubs.c -o $@

$(FUZZ_OUT)/fuzz_%: $(FUZZ_OUT)/fuzz_%.o $(FUZZ_OBJS) $(FUZZ_OUT)/stubs.o
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(FUZZ_PGLIBS)

$(FUZZ_OUT):
	mkdir -p $@

fuzz-clean:
	rm -rf fuzz/build fuzz/build-known

# ---------------------------------------------------------------------------
# make bench: bench/run.sh (predict with k-means and DBSCAN models, k-means, the growth series
# 100k/1M/10M, parallel query), then the DBSCAN bench at its default size
# (1,000,000 points) and the pictures (bench/plots.py). Uses PGHOST/PGPORT when both are set,
# otherwise throwaway clusters (scripts/pgcluster.sh), removed afterwards. See bench/README.md.
# BENCH_ARGS are passed to bench/run.sh, BENCH_DBSCAN_ARGS to bench/bench_dbscan.py.
# bench/pgbench_predict.sh (point predictions under load, ~2.5 min) is run separately.
.PHONY: bench
bench:
	bench/run.sh $(BENCH_ARGS)
	@set -e; \
	if [ -n "$$PGHOST" ] && [ -n "$$PGPORT" ]; then \
		/usr/bin/python3 bench/bench_dbscan.py $(BENCH_DBSCAN_ARGS); \
	else \
		d=$$(mktemp -d /tmp/cml_bench_dbscan.XXXXXX); \
		port=$$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
		trap 'PG_WIPE=1 scripts/pgcluster.sh stop '"$$d" EXIT; \
		PG_EXTRA_CONF="$$(printf "shared_buffers = '1GB'\nwork_mem = '64MB'")" \
			scripts/pgcluster.sh start "$$d" "$$port"; \
		PGHOST=$$d PGPORT=$$port PGUSER=postgres /usr/bin/python3 bench/bench_dbscan.py $(BENCH_DBSCAN_ARGS); \
	fi
	/usr/bin/python3 bench/plots.py
	$(MAKE) --no-print-directory bench-geometry

# what the worldwide geometry costs the city case: 3-D kernels against a 2-D projection
.PHONY: bench-geometry
bench-geometry:
	@set -e; d=$$(mktemp -d /tmp/cml_geometry.XXXXXX); trap 'rm -rf '"$$d" EXIT; \
	$(CC) -O2 -o $$d/geometry_cost bench/geometry_cost.c -lm; \
	$$d/geometry_cost | tee bench/results/geometry_cost.txt
