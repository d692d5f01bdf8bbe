# cinematic_ml — PGXS build
EXTENSION = cinematic_ml
EXTVERSION = 0.1.0

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
DATA = $(wildcard sql/upgrade/$(EXTENSION)--*--*.sql)

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
