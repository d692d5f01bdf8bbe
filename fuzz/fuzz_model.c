/*
 * fuzz/fuzz_model.c — libFuzzer target over the model bytea (format v1)
 *
 * Input: the bytes of a model bytea (what `encode(model, 'hex')` shows), so
 * the seeds are real models and a crash file is a bytea to replay in SQL.
 *
 * Each input goes through CmlModelDeserialize twice:
 *   1. as it is: exercises magic / version / length / checksum rejection;
 *   2. when it is long enough for a header and its length field or CRC-32C
 *      is wrong, with both fixed up (length = input size, CRC of the body),
 *      so that mutations reach the field validation behind the checksum.
 *      (model.c has no compile-time switch to skip the check; see README.)
 * Every ERROR must be XX001 (data_corrupted) or 0A000 (feature_not_supported).
 *
 * A model that deserialises must then behave:
 *   - CmlModelSerialize gives back exactly the input bytes (nothing read is
 *     dropped or altered, no field left unchecked that the writer changes);
 *   - CmlModelPrepare, CmlPredict and CmlPredictZone on 40 points (exact and
 *     nearby core points and centroids, poles, the antimeridian, random
 *     points) raise no error and answer in range; for DBSCAN the core index
 *     agrees with a brute-force search over the core points;
 *   - model_info (CmlModelInfoJsonb), zone_metrics(bytea) and
 *     zones_geojson(bytea) raise no error, and the JSON text they build is
 *     accepted by PostgreSQL's own JSON parser (the shim's jsonb_in).
 * Anything else aborts, which libFuzzer reports as a crash.
 *
 * Environment: CML_FUZZ_DUMP_FIXED=FILE writes the fixed-up input of the
 * last run (replay it in SQL with pg_read_binary_file or \copy).
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "fmgr.h"
#include "utils/jsonb.h"

#include "model.h"
#include "shim.h"

extern Datum zone_metrics_model(PG_FUNCTION_ARGS);
extern Datum zones_geojson_model(PG_FUNCTION_ARGS);

static const int deserialize_allowed[] = {ERRCODE_DATA_CORRUPTED, ERRCODE_FEATURE_NOT_SUPPORTED, 0};
static const int none_allowed[] = {0};

#define FAIL(...) \
	do { \
		fprintf(stderr, "fuzz_model: " __VA_ARGS__); \
		fputc('\n', stderr); \
		abort(); \
	} while (0)

typedef struct Run
{
	bytea	   *raw;
	CmlModel   *model;
	uint64		rng;
} Run;

static void
DoDeserialize(void *arg)
{
	Run		   *run = arg;

	run->model = CmlModelDeserialize(run->raw);
}

/* xorshift64* */
static uint64
Rand(Run *run)
{
	run->rng ^= run->rng >> 12;
	run->rng ^= run->rng << 25;
	run->rng ^= run->rng >> 27;
	return run->rng * UINT64CONST(2685821657736338717);
}

static double
RandUnit(Run *run)
{
	return (Rand(run) >> 11) * (1.0 / 9007199254740992.0);
}

/* The point at a distance (metres) and bearing from (lat, lon), kept a valid coordinate */
static void
Destination(double lat, double lon, double dist, double brg, double *olat, double *olon)
{
	double		phi1 = lat * M_PI / 180.0;
	double		lam1 = lon * M_PI / 180.0;
	double		ang = dist / CML_EARTH_RADIUS_M;
	double		s = sin(phi1) * cos(ang) + cos(phi1) * sin(ang) * cos(brg);
	double		phi2 = asin(Min(1.0, Max(-1.0, s)));
	double		lam2 = lam1 + atan2(sin(brg) * sin(ang) * cos(phi1), cos(ang) - sin(phi1) * sin(phi2));

	*olat = Min(90.0, Max(-90.0, phi2 * 180.0 / M_PI));
	*olon = remainder(lam2 * 180.0 / M_PI, 360.0);
	if (!(*olon >= -180.0 && *olon <= 180.0))
		*olon = 0.0;
}

/* The i-th query point of a run */
static void
QueryPoint(Run *run, int i, double *lat, double *lon)
{
	const CmlModel *m = run->model;
	double		eps = m->algorithm == CML_ALG_DBSCAN ? m->eps_m : 1000.0;
	double		scale = (i % 3 == 0) ? eps * 0.5 : (i % 3 == 1) ? eps : eps * 2.0;

	switch (i % 8)
	{
		case 0:
		case 1:
		case 2:
			if (m->n_core > 0)
			{
				int64		c = (int64) (Rand(run) % (uint64) m->n_core);

				if (i % 8 == 0)
				{
					*lat = m->core_lat[c];
					*lon = m->core_lon[c];
				}
				else
					Destination(m->core_lat[c], m->core_lon[c], RandUnit(run) * scale,
						   RandUnit(run) * 2 * M_PI, lat, lon);
				return;
			}
			/* FALLTHROUGH */
		case 3:
		case 4:
			if (m->n_zones > 0)
			{
				int			z = (int) (Rand(run) % (uint64) m->n_zones);

				Destination(m->zones[z].lat, m->zones[z].lon,
					   RandUnit(run) * (m->zones[z].radius_m * 1.5 + 1.0),
					   RandUnit(run) * 2 * M_PI, lat, lon);
				return;
			}
			/* FALLTHROUGH */
		case 5:
			*lat = (Rand(run) & 1) ? 90.0 : -90.0;
			*lon = RandUnit(run) * 360.0 - 180.0;
			return;
		case 6:
			*lat = RandUnit(run) * 180.0 - 90.0;
			*lon = (Rand(run) & 1) ? 180.0 : -180.0;
			return;
		default:
			*lat = RandUnit(run) * 180.0 - 90.0;
			*lon = RandUnit(run) * 360.0 - 180.0;
			return;
	}
}

/*
 * Brute force DBSCAN membership: every zone with a core within eps (with
 * tolerance).  Not instrumented for coverage: the oracle's comparisons are
 * not the code under test and would slow the fuzzer down.
 */
__attribute__((no_sanitize("coverage")))
static void
CheckDbscanAnswer(const CmlModel *m, const CmlVec3 *cores, CmlVec3 v, int32 zone,
				  double lat, double lon)
{
	double		ce2 = CmlMetresToChord2(m->eps_m);
	double		tol = ce2 * 1e-9 + 1e-24;
	bool		must = false;
	bool		zone_ok = false;

	for (int64 i = 0; i < m->n_core; i++)
	{
		double		d = CmlChord2(v, cores[i]);

		if (d <= ce2 - tol)
			must = true;
		if (d <= ce2 + tol && m->core_zone[i] == zone)
			zone_ok = true;
	}
	if (zone >= 0 && !zone_ok)
		FAIL("DBSCAN predict (%.17g, %.17g) -> zone %d, but no core of that zone is within eps %.17g m",
			 lat, lon, zone, m->eps_m);
	if (zone < 0 && must)
		FAIL("DBSCAN predict (%.17g, %.17g) -> noise, but a core is within eps %.17g m",
			 lat, lon, m->eps_m);
}

static void
DoUse(void *arg)
{
	Run		   *run = arg;
	CmlModel   *m = run->model;
	bytea	   *again;
	bool		isnull;
	Datum		d;
	CmlVec3    *cores = palloc(sizeof(CmlVec3) * Max(m->n_core, 1));

	/* round trip: the writer gives back the very bytes the reader accepted */
	again = CmlModelSerialize(m);
	if (VARSIZE(again) - VARHDRSZ != VARSIZE_ANY_EXHDR(run->raw) ||
		memcmp(VARDATA(again), VARDATA_ANY(run->raw), VARSIZE_ANY_EXHDR(run->raw)) != 0)
	{
		size_t		n = Min(VARSIZE(again) - VARHDRSZ, VARSIZE_ANY_EXHDR(run->raw));
		size_t		at = 0;

		while (at < n && VARDATA(again)[at] == VARDATA_ANY(run->raw)[at])
			at++;
		FAIL("serialise(deserialise(x)) != x: %zu vs %zu bytes, first difference at byte %zu",
			 (size_t) (VARSIZE(again) - VARHDRSZ), (size_t) VARSIZE_ANY_EXHDR(run->raw), at);
	}

	CmlModelPrepare(m);
	for (int64 i = 0; i < m->n_core; i++)
		cores[i] = CmlLatLonToVec(m->core_lat[i], m->core_lon[i]);
	for (int i = 0; i < 40; i++)
	{
		double		lat,
					lon;
		CmlPrediction p;
		bool		hot;
		double		dist;
		int32		zone;
		CmlVec3		v;

		QueryPoint(run, i, &lat, &lon);
		if (!CmlLatLonValid(lat, lon))
			FAIL("harness made an invalid point (%g, %g)", lat, lon);
		v = CmlLatLonToVec(lat, lon);
		CmlPredict(m, lat, lon, &p);
		zone = CmlPredictZone(m, v, &hot, &dist);
		if (p.cluster != zone || p.is_hotspot != hot)
			FAIL("CmlPredict and CmlPredictZone disagree at (%.17g, %.17g): %d/%d vs %d/%d",
				 lat, lon, p.cluster, p.is_hotspot, zone, hot);
		if (p.cluster < -1 || p.cluster >= m->n_zones)
			FAIL("cluster %d out of range for %d zones", p.cluster, m->n_zones);
		if (m->n_zones == 0)
		{
			if (p.cluster != -1 || p.is_hotspot)
				FAIL("a model without zones answered cluster %d", p.cluster);
			continue;
		}
		if (m->algorithm == CML_ALG_KMEANS && p.cluster < 0)
			FAIL("k-means answered -1 with %d zones", m->n_zones);
		if (!(p.distance_m >= 0.0 && p.distance_m <= M_PI * CML_EARTH_RADIUS_M * 1.000001))
			FAIL("distance %g m out of range", p.distance_m);
		if (!isfinite(p.zone_radius_m) || p.zone_radius_m < 0.0)
			FAIL("zone radius %g out of range", p.zone_radius_m);
		if (m->algorithm == CML_ALG_DBSCAN)
		{
			if ((zone >= 0) != hot)
				FAIL("DBSCAN hotspot flag %d for zone %d", hot, zone);
			CheckDbscanAnswer(m, cores, v, zone, lat, lon);
		}
	}

	/* model_info, zone_metrics(bytea), zones_geojson(bytea): valid JSON, no error */
	(void) CmlModelInfoJsonb(m);
	d = PointerGetDatum(run->raw);
	(void) ShimCall(zone_metrics_model, 1, &d, &isnull);
	(void) ShimCall(zones_geojson_model, 1, &d, &isnull);
}

/* Fix the length field and the CRC-32C of a candidate model in place; true when changed */
static bool
FixUp(char *p, size_t len)
{
	uint32		total = (uint32) len;
	uint32		crc;
	bool		changed = false;

	if (len < CML_HEADER_SIZE || memcmp(p, CML_MODEL_MAGIC, 4) != 0)
		return false;
	if (memcmp(p + 12, &total, 4) != 0)
	{
		memcpy(p + 12, &total, 4);
		changed = true;
	}
	crc = ShimCrc32c(p + CML_HEADER_SIZE, len - CML_HEADER_SIZE);
	if (memcmp(p + 16, &crc, 4) != 0)
	{
		memcpy(p + 16, &crc, 4);
		changed = true;
	}
	return changed;
}

static void
RunOne(Run *run, const char *what)
{
	int			rc = ShimTry(DoDeserialize, run);

	ShimExpectSqlstate(rc, deserialize_allowed, what);
	if (rc != 0)
		return;
	rc = ShimTry(DoUse, run);
	ShimExpectSqlstate(rc, none_allowed, "using a model that deserialised");
}

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	Run			run;
	const char *dump = getenv("CML_FUZZ_DUMP_FIXED");

	if (size > 16 * 1024 * 1024)
		return 0;
	ShimResetMemory();
	memset(&run, 0, sizeof(run));
	run.raw = palloc(VARHDRSZ + size);
	SET_VARSIZE(run.raw, VARHDRSZ + size);
	if (size)
		memcpy(VARDATA(run.raw), data, size);
	run.rng = ShimCrc32c(data, size) | (UINT64CONST(0x9E3779B9) << 32);

	RunOne(&run, "CmlModelDeserialize (input as is)");
	if (FixUp(VARDATA(run.raw), size))
	{
		run.model = NULL;
		RunOne(&run, "CmlModelDeserialize (length and CRC fixed up)");
	}
	if (dump)
	{
		FILE	   *f = fopen(dump, "wb");

		if (f)
		{
			fwrite(VARDATA(run.raw), 1, size, f);
			fclose(f);
		}
	}
	ShimResetMemory();
	return 0;
}
