/*
 * fuzz/fuzz_options.c — libFuzzer target over the jsonb options parsers
 *
 * Input: JSON text, as a user would pass it to train(), kmeans_fit(...,
 * options) or drift(..., settings).  The text is parsed by PostgreSQL's own
 * JSON parser (libpgcommon's jsonapi, the parser jsonb_in uses); the binary
 * jsonb container is stood in for by the shim (see shim.c), which reproduces
 * what CmlParseOptions relies on: the root flags, key order and de-duplication,
 * the iterator's tokens, and numeric_float8's conversion and range errors.
 * PostgreSQL's jsonb_util.c and numeric.c themselves are not linked (they
 * need most of the backend), so this target fuzzes cinematic_ml's parsing
 * logic, not PostgreSQL's jsonb.
 *
 * Each jsonb goes through CmlKmeansCheckParams (k-means parameters, with k),
 * CmlDbscanParseParams, drift_settings(jsonb) (whose JSON output must be
 * valid) and CmlParseOptions with a specification of every option type at
 * extreme ranges, whose results must lie in range.  Allowed errors: 22023
 * (invalid_parameter_value) and 22003 (numeric_value_out_of_range); for the
 * text itself also 22P02 (bad JSON), 22021 (bad UTF-8), 54001 (too deep).
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "fmgr.h"
#include "utils/jsonb.h"

#include "points.h"
#include "shim.h"

extern Datum drift_settings(PG_FUNCTION_ARGS);

static const int text_allowed[] = {ERRCODE_INVALID_TEXT_REPRESENTATION, ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
	ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, ERRCODE_STATEMENT_TOO_COMPLEX, 0};
static const int options_allowed[] = {ERRCODE_INVALID_PARAMETER_VALUE, ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, 0};

#define FAIL(...) \
	do { \
		fprintf(stderr, "fuzz_options: " __VA_ARGS__); \
		fputc('\n', stderr); \
		abort(); \
	} while (0)

typedef struct Run
{
	const char *text;
	int			len;
	Jsonb	   *jb;
} Run;

static void
DoParseText(void *arg)
{
	Run		   *run = arg;

	run->jb = ShimJsonbFromText(run->text, run->len);
}

static void
DoKmeans(void *arg)
{
	CmlKmeansCheckParams(((Run *) arg)->jb);
}

static void
DoDbscan(void *arg)
{
	double		eps_m;
	int32		min_points;

	CmlDbscanParseParams(((Run *) arg)->jb, &eps_m, &min_points);
	if (!(isfinite(eps_m) && eps_m >= 0.001) || min_points < 1)
		FAIL("DBSCAN parameters accepted eps_m %g, min_points %d", eps_m, min_points);
}

static void
DoDrift(void *arg)
{
	Datum		d = PointerGetDatum(((Run *) arg)->jb);
	bool		isnull;

	(void) ShimCall(drift_settings, 1, &d, &isnull);
}

static void
DoGeneric(void *arg)
{
	int32		i32 = 7;
	int32		small = 7;
	int64		i64 = 7;
	double		f = 7;
	double		unit = 0.5;
	CmlOptSpec	spec[] = {
		{"i", CML_OPT_INT, PG_INT32_MIN, PG_INT32_MAX, &i32},
		{"small", CML_OPT_INT, 1, 100, &small},
		{"j", CML_OPT_INT64, -9007199254740991.0, 9007199254740991.0, &i64},
		{"f", CML_OPT_FLOAT, -1e308, 1e308, &f},
		{"unit", CML_OPT_FLOAT, 0, 1, &unit},
		{"k", CML_OPT_INT, 1, 100000, &small},
		{"eps_m", CML_OPT_FLOAT, 0, 1e300, &f},
	};

	CmlParseOptions(((Run *) arg)->jb, "fuzz options", spec, lengthof(spec));
	if (small < 1 || small > 100000 || !isfinite(f) || !(unit >= 0 && unit <= 1) ||
		i64 < -INT64CONST(9007199254740991) || i64 > INT64CONST(9007199254740991))
		FAIL("CmlParseOptions accepted a value out of range: small %d, f %g, unit %g, j %lld",
			 small, f, unit, (long long) i64);
}

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	Run			run;
	char	   *text;
	int			rc;

	/* a SQL text value holds no NUL */
	if (size > 65536 || memchr(data, 0, size) != NULL)
		return 0;
	ShimResetMemory();
	text = palloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	run.text = text;
	run.len = (int) size;
	run.jb = NULL;

	rc = ShimTry(DoParseText, &run);
	ShimExpectSqlstate(rc, text_allowed, "jsonb_in");
	if (rc == 0)
	{
		ShimExpectSqlstate(ShimTry(DoKmeans, &run), options_allowed, "CmlKmeansCheckParams");
		ShimExpectSqlstate(ShimTry(DoDbscan, &run), options_allowed, "CmlDbscanParseParams");
		ShimExpectSqlstate(ShimTry(DoDrift, &run), options_allowed, "drift_settings");
		ShimExpectSqlstate(ShimTry(DoGeneric, &run), options_allowed, "CmlParseOptions");
	}
	ShimResetMemory();
	return 0;
}
