/*
 * points.c — training points: the fitting aggregates' shared state (with its
 * combine / serialise functions for parallel query), source queries, options
 */
#include "postgres.h"

#include <sys/mman.h>

#include "access/parallel.h"
#include "catalog/pg_type.h"
#include "executor/execParallel.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/nodeFuncs.h"
#include "utils/builtins.h"
#include "utils/dsa.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "windowapi.h"

#include "points.h"

/* Create an empty point set in the current memory context */
CmlPoints *
CmlPointsCreate(void)
{
	CmlPoints  *pts = palloc0(sizeof(CmlPoints));

	pts->cap = 1024;
	pts->ll = palloc(sizeof(double) * 2 * pts->cap);
	return pts;
}

/*
 * Ask for transparent huge pages for a large array (where the system offers
 * them on request, /sys/kernel/mm/transparent_hugepage/enabled = madvise):
 * the arrays of a million points otherwise fault in 4 kB at a time.  Only a
 * hint, and only for arrays of 8 MB or more.
 */
void
CmlAdviseHugePages(void *p, Size size)
{
#ifdef MADV_HUGEPAGE
	if (size >= 8 * 1024 * 1024)
	{
		uintptr_t	lo = TYPEALIGN(2 * 1024 * 1024, (uintptr_t) p);
		uintptr_t	hi = TYPEALIGN_DOWN(2 * 1024 * 1024, (uintptr_t) p + size);

		if (hi > lo)
			(void) madvise((void *) lo, hi - lo, MADV_HUGEPAGE);
	}
#endif
}

/* Refuse an array of cap points (for `need` of them) past the allocator's limit */
static void
CheckPointCapacity(int64 cap, int64 need)
{
	if ((Size) cap > MaxAllocHugeSize / (2 * sizeof(double)))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many points to cluster (%lld)", (long long) need)));
}

/* Make room for at least `need` points */
static void
CmlPointsReserve(CmlPoints *pts, int64 need)
{
	if (need <= pts->cap)
		return;
	while (pts->cap < need)
		pts->cap *= 2;
	CheckPointCapacity(pts->cap, need);
	pts->ll = repalloc_huge(pts->ll, sizeof(double) * 2 * pts->cap);
	CmlAdviseHugePages(pts->ll, sizeof(double) * 2 * pts->cap);
	if (pts->label)
		pts->label = repalloc_huge(pts->label, sizeof(int32) * pts->cap);
}

/* Add one validated point (growing keeps the arrays in their memory context) */
static inline void
PointsAdd(CmlPoints *pts, double lat, double lon)
{
	if (unlikely(!CmlLatLonValid(lat, lon)))
		CmlCheckLatLon(lat, lon);
	if (unlikely(pts->n == pts->cap))
		CmlPointsReserve(pts, pts->n + 1);
	pts->ll[2 * pts->n] = lat;
	pts->ll[2 * pts->n + 1] = lon;
	pts->n++;
}

/* Add one validated point */
void
CmlPointsAdd(CmlPoints *pts, double lat, double lon)
{
	PointsAdd(pts, lat, lon);
}

/* Add one validated point with its zone label */
void
CmlPointsAddLabelled(CmlPoints *pts, double lat, double lon, int32 label)
{
	if (pts->label == NULL)
	{
		if (pts->n > 0)
			elog(ERROR, "cannot label a point set that has unlabelled points. Please report a bug.");
		pts->label = palloc(sizeof(int32) * pts->cap);
	}
	CmlPointsAdd(pts, lat, lon);
	pts->label[pts->n - 1] = label;
}

/* Unit vectors of all points, allocated (huge) in the current context */
CmlVec3 *
CmlPointsToVectors(const CmlPoints *pts)
{
	CmlVec3    *v = palloc_extended(sizeof(CmlVec3) * Max(pts->n, 1), MCXT_ALLOC_HUGE);

	for (int64 i = 0; i < pts->n; i++)
		v[i] = CmlLatLonToVec(pts->ll[2 * i], pts->ll[2 * i + 1]);
	return v;
}

/* Name of a jsonb value type for messages */
static const char *
OptTypeName(enum jbvType t)
{
	switch (t)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		default:
			return "object or array";
	}
}

/* Parse a flat jsonb object of numeric options; unknown keys and bad values are errors */
void
CmlParseOptions(Jsonb *options, const char *what, const CmlOptSpec *spec, int nspec)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			depth = 0;

	if (options == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what)));

	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		char	   *key;
		const CmlOptSpec *s = NULL;
		double		num;

		if (tok == WJB_BEGIN_OBJECT)
		{
			depth++;
			continue;
		}
		if (tok != WJB_KEY || depth != 1)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		for (int i = 0; i < nspec; i++)
			if (strcmp(spec[i].name, key) == 0)
				s = &spec[i];
		if (s == NULL)
		{
			StringInfoData known;

			initStringInfo(&known);
			for (int i = 0; i < nspec; i++)
				appendStringInfo(&known, "%s%s", i ? ", " : "", spec[i].name);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown key \"%s\" in %s", key, what),
					 errhint("Known keys: %s.", known.data)));
		}
		tok = JsonbIteratorNext(&it, &v, true);
		if (tok != WJB_VALUE || v.type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" in %s must be a number, not %s", key, what,
							tok == WJB_VALUE ? OptTypeName(v.type) : "object or array")));
		num = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
												 NumericGetDatum(v.val.numeric)));
		if (!isfinite(num) || num < s->min || num > s->max)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" in %s is %g, out of range [%g, %g]",
							key, what, num, s->min, s->max)));
		if (s->type != CML_OPT_FLOAT && num != floor(num))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" in %s must be an integer, not %g", key, what, num)));
		switch (s->type)
		{
			case CML_OPT_INT:
				*(int32 *) s->dest = (int32) num;
				break;
			case CML_OPT_INT64:
				*(int64 *) s->dest = (int64) num;
				break;
			case CML_OPT_FLOAT:
				*(double *) s->dest = num;
				break;
		}
	}
}

/* Convert a numeric column value to float8 */
static double
NumericDatumToDouble(Datum d, Oid type)
{
	switch (type)
	{
		case FLOAT8OID:
			return DatumGetFloat8(d);
		case FLOAT4OID:
			return (double) DatumGetFloat4(d);
		case INT2OID:
			return (double) DatumGetInt16(d);
		case INT4OID:
			return (double) DatumGetInt32(d);
		case INT8OID:
			return (double) DatumGetInt64(d);
		case NUMERICOID:
			return DatumGetFloat8(DirectFunctionCall1(numeric_float8, d));
	}
	elog(ERROR, "unexpected column type %u. Please report a bug.", type);
	return 0;
}

/* True for the types a coordinate column may have */
static bool
IsCoordinateType(Oid type)
{
	return type == FLOAT8OID || type == FLOAT4OID || type == NUMERICOID ||
		type == INT2OID || type == INT4OID || type == INT8OID;
}

/*
 * Run a source query with the caller's rights and collect its (lat, lon) rows.
 * Rows with a NULL coordinate are skipped; an invalid coordinate is an error.
 * The result is allocated in the caller's memory context.
 */
CmlPoints *
CmlPointsFromQuery(const char *query, const char *what)
{
	MemoryContext callerCxt = CurrentMemoryContext;
	CmlPoints  *pts;
	SPIPlanPtr	plan;
	Portal		portal;
	int64		rowno = 0;

	pts = CmlPointsCreate();

	SPI_connect();
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (!SPI_is_cursor_plan(plan))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a single SELECT returning (lat, lon)", what)));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	for (;;)
	{
		TupleDesc	tupdesc;

		SPI_cursor_fetch(portal, true, 10000);
		if (SPI_processed == 0)
			break;
		tupdesc = SPI_tuptable->tupdesc;
		if (rowno == 0)
		{
			Oid			t1 = tupdesc->natts >= 1 ? SPI_gettypeid(tupdesc, 1) : InvalidOid;
			Oid			t2 = tupdesc->natts >= 2 ? SPI_gettypeid(tupdesc, 2) : InvalidOid;

			if (tupdesc->natts != 2 || !IsCoordinateType(t1) || !IsCoordinateType(t2))
			{
				StringInfoData types;

				initStringInfo(&types);
				for (int c = 1; c <= tupdesc->natts; c++)
					appendStringInfo(&types, "%s%s", c > 1 ? ", " : "",
									 format_type_be(SPI_gettypeid(tupdesc, c)));
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("%s must return two numeric columns (lat, lon)", what),
						 errdetail("It returns %d column(s): (%s).", tupdesc->natts, types.data)));
			}
		}
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			bool		null1,
						null2;
			Datum		d1 = SPI_getbinval(tup, tupdesc, 1, &null1);
			Datum		d2 = SPI_getbinval(tup, tupdesc, 2, &null2);
			MemoryContext old;

			rowno++;
			if (null1 || null2)
				continue;
			old = MemoryContextSwitchTo(callerCxt);
			CmlPointsAdd(pts, NumericDatumToDouble(d1, SPI_gettypeid(tupdesc, 1)),
						 NumericDatumToDouble(d2, SPI_gettypeid(tupdesc, 2)));
			MemoryContextSwitchTo(old);
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	SPI_finish();
	return pts;
}

/* ---------- window functions: one fit per partition, a label per row ---------- */

/* Labels of one window partition, computed on its first row */
typedef struct WindowLabels
{
	bool		done;
	int32		labels[FLEXIBLE_ARRAY_MEMBER];	/* -2 = NULL coordinate */
} WindowLabels;

/*
 * The current row's label: on the partition's first call, collect its
 * (lat, lon) rows (arguments 0 and 1), fit, and keep every row's label in
 * partition memory.  False for a row with a NULL coordinate.
 */
bool
CmlWindowLabel(FunctionCallInfo fcinfo, CmlWindowFitFn fit, int32 *label)
{
	WindowObject winobj = PG_WINDOW_OBJECT();
	int64		nrows = WinGetPartitionRowCount(winobj);
	WindowLabels *wl;

	wl = WinGetPartitionLocalMemory(winobj,
									add_size(offsetof(WindowLabels, labels),
											 mul_size(sizeof(int32), nrows)));
	if (!wl->done)
	{
		CmlPoints  *pts = CmlPointsCreate();
		int64	   *rowof = palloc_extended(sizeof(int64) * Max(nrows, 1), MCXT_ALLOC_HUGE);

		for (int64 r = 0; r < nrows; r++)
		{
			bool		n1,
						n2,
						isout;
			Datum		lat = WinGetFuncArgInPartition(winobj, 0, r, WINDOW_SEEK_HEAD, false, &n1, &isout);
			Datum		lon = WinGetFuncArgInPartition(winobj, 1, r, WINDOW_SEEK_HEAD, false, &n2, &isout);

			wl->labels[r] = -2;
			if (n1 || n2)
				continue;
			rowof[pts->n] = r;
			CmlPointsAdd(pts, DatumGetFloat8(lat), DatumGetFloat8(lon));
		}
		if (pts->n > 0)
		{
			int32	   *labels = palloc_extended(sizeof(int32) * pts->n, MCXT_ALLOC_HUGE);

			fit(fcinfo, pts, labels);
			for (int64 i = 0; i < pts->n; i++)
				wl->labels[rowof[i]] = labels[i];
			pfree(labels);
		}
		pfree(rowof);
		pfree(pts->ll);
		pfree(pts);
		wl->done = true;
	}
	*label = wl->labels[WinGetCurrentPosition(winobj)];
	return *label != -2;
}

/* ---------- aggregate state shared by kmeans_fit and dbscan_fit ---------- */

/*
 * At most this many points are reserved from the planner's estimate (64 MB:
 * an estimate far above the rows that come must not fail where the kernel
 * counts reserved memory, vm.overcommit_memory = 2)
 */
#define PRESIZE_MAX_POINTS (4.0 * 1024 * 1024)

/* A new aggregate state in the aggregate context */
static CmlPoints *
NewAggState(FunctionCallInfo fcinfo, MemoryContext aggcxt)
{
	MemoryContext old = MemoryContextSwitchTo(aggcxt);
	CmlPoints  *pts = CmlPointsCreate();

	/*
	 * An aggregate without groups (all the rows in one state): room for the
	 * rows the planner expects (a little more), so that the array need not
	 * grow and be moved; pages are only touched as points come in
	 */
	if (fcinfo->context && IsA(fcinfo->context, AggState) &&
		((AggState *) fcinfo->context)->aggstrategy == AGG_PLAIN)
	{
		Plan	   *input = outerPlan(((AggState *) fcinfo->context)->ss.ps.plan);
		double		rows = input ? input->plan_rows : 0.0;

		if (rows > pts->cap && rows < PRESIZE_MAX_POINTS)
			CmlPointsReserve(pts, (int64) (rows * 1.02) + 1024);
	}
	MemoryContextSwitchTo(old);
	return pts;
}

/* The aggregate's state, created in the aggregate context on first use */
static CmlPoints *
PointsAggState(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext aggcxt;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "%s called in non-aggregate context", fname);
	if (!PG_ARGISNULL(0))
		return (CmlPoints *) PG_GETARG_POINTER(0);
	return NewAggState(fcinfo, aggcxt);
}

/* Equal parameters (NaN equals NaN: the final function reports it) */
static inline bool
SameParam(double a, double b)
{
	return a == b || (isnan(a) && isnan(b));
}

/* Record the group's parameters, which must not change from row to row */
static void
SetParams(CmlPoints *pts, double p0, double p1, Jsonb *options, MemoryContext cxt)
{
	if (!pts->has_params)
	{
		pts->param[0] = p0;
		pts->param[1] = p1;
		if (options != NULL)
		{
			pts->options = MemoryContextAlloc(cxt, VARSIZE(options));
			memcpy(pts->options, options, VARSIZE(options));
		}
		pts->has_params = true;
	}
	else if (!SameParam(pts->param[0], p0) || !SameParam(pts->param[1], p1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("clustering parameters must be the same for every row of a group")));
}

/* Add the row's point unless a coordinate is NULL */
static inline void
AddRow(FunctionCallInfo fcinfo, CmlPoints *pts)
{
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		return;
	PointsAdd(pts, PG_GETARG_FLOAT8(1), PG_GETARG_FLOAT8(2));
}

/* A group's first row (or a changed k): the state made or checked, the row added */
static pg_noinline Datum
KmeansFitTransFirst(FunctionCallInfo fcinfo)
{
	MemoryContext aggcxt;
	CmlPoints  *pts;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "kmeans_fit_trans called in non-aggregate context");
	if (PG_ARGISNULL(0))
	{
		pts = NewAggState(fcinfo, aggcxt);
		pts->linkable = true;
	}
	else
		pts = (CmlPoints *) PG_GETARG_POINTER(0);
	if (unlikely(!pts->has_params))
		SetParams(pts, PG_GETARG_INT32(3), 0,
				  (PG_NARGS() > 4 && !PG_ARGISNULL(4)) ? PG_GETARG_JSONB_P(4) : NULL,
				  aggcxt);
	else if (unlikely(pts->param[0] != PG_GETARG_INT32(3)))
		SetParams(pts, PG_GETARG_INT32(3), 0, NULL, aggcxt);
	AddRow(fcinfo, pts);
	PG_RETURN_POINTER(pts);
}

PG_FUNCTION_INFO_V1(kmeans_fit_trans);
/*
 * One call per row: the options are read on a group's first row only (the
 * other rows' options are ignored), k is checked on every row
 */
Datum
kmeans_fit_trans(PG_FUNCTION_ARGS)
{
	CmlPoints  *pts;

	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("k must not be NULL")));
	/* every row but a group's first: a state (only an aggregate has one), the same k */
	if (likely(!PG_ARGISNULL(0)))
	{
		pts = (CmlPoints *) PG_GETARG_POINTER(0);
		if (likely(pts->has_params && pts->param[0] == PG_GETARG_INT32(3)))
		{
			AddRow(fcinfo, pts);
			PG_RETURN_POINTER(pts);
		}
	}
	return KmeansFitTransFirst(fcinfo);
}

PG_FUNCTION_INFO_V1(dbscan_fit_trans);
Datum
dbscan_fit_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	CmlPoints  *pts = PointsAggState(fcinfo, "dbscan_fit_trans");

	AggCheckCallContext(fcinfo, &aggcxt);
	if (PG_ARGISNULL(3) || PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("eps_m and min_points must not be NULL")));
	SetParams(pts, PG_GETARG_FLOAT8(3), PG_GETARG_INT32(4), NULL, aggcxt);
	AddRow(fcinfo, pts);
	PG_RETURN_POINTER(pts);
}

PG_FUNCTION_INFO_V1(zone_metrics_trans);
/* zone_metrics(lat, lon, cluster): a NULL or negative cluster is noise */
Datum
zone_metrics_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	MemoryContext old;
	CmlPoints  *pts = PointsAggState(fcinfo, "zone_metrics_trans");

	AggCheckCallContext(fcinfo, &aggcxt);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_POINTER(pts);
	old = MemoryContextSwitchTo(aggcxt);
	CmlPointsAddLabelled(pts, PG_GETARG_FLOAT8(1), PG_GETARG_FLOAT8(2),
						 PG_ARGISNULL(3) ? -1 : Max(PG_GETARG_INT32(3), -1));
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(pts);
}

/* Points that run r of pts holds: from its start (returned) to *end */
static int64
RunStart(const CmlPoints *pts, int32 r, int64 *end)
{
	if (pts->run_ll == NULL)
	{
		*end = pts->n;
		return 0;
	}
	*end = pts->run_end[r];
	return r > 0 ? pts->run_end[r - 1] : 0;
}

/* Copy linked runs (run_ll) into one array, ll, with room for `cap` points */
static void
MaterializeRuns(CmlPoints *pts, int64 cap, MemoryContext cxt)
{
	double	   *ll;

	if (pts->run_ll == NULL)
		return;
	cap = Max(cap, Max(pts->n, 1));
	CheckPointCapacity(cap, cap);
	ll = MemoryContextAllocHuge(cxt, sizeof(double) * 2 * cap);
	CmlAdviseHugePages(ll, sizeof(double) * 2 * cap);
	for (int32 r = 0; r < pts->nruns; r++)
	{
		int64		end;
		int64		start = RunStart(pts, r, &end);

		memcpy(ll + 2 * start, pts->run_ll[r], sizeof(double) * 2 * (end - start));
	}
	pts->ll = ll;
	pts->cap = cap;
	pfree(pts->run_ll);
	pfree(pts->run_end);
	pts->run_ll = NULL;
	pts->run_end = NULL;
	pts->nruns = 0;
}

/*
 * Append b's points to a by linking b's arrays (runs), without a copy: when
 * both are k-means' partial states, unlabelled, and not too many runs in
 * all.  False when a copy is needed.
 */
static bool
LinkRuns(CmlPoints *a, const CmlPoints *b, MemoryContext cxt)
{
	int32		na = a->n == 0 ? 0 : (a->run_ll ? a->nruns : 1);
	int32		nb = b->run_ll ? b->nruns : 1;

	if (!a->linkable || !b->linkable || b->n == 0 || a->label != NULL || b->label != NULL ||
		na + nb > CML_LINK_MAX_RUNS)
		return false;
	if (a->run_ll == NULL)
	{
		a->run_ll = MemoryContextAlloc(cxt, sizeof(double *) * CML_LINK_MAX_RUNS);
		a->run_end = MemoryContextAlloc(cxt, sizeof(int64) * CML_LINK_MAX_RUNS);
		a->run_ll[0] = a->ll;
		a->run_end[0] = a->n;
		a->nruns = na;
	}
	for (int32 r = 0; r < nb; r++)
	{
		a->run_ll[a->nruns] = b->run_ll ? b->run_ll[r] : b->ll;
		a->run_end[a->nruns] = a->n + (b->run_ll ? b->run_end[r] : b->n);
		a->nruns++;
	}
	a->n += b->n;
	return true;
}

PG_FUNCTION_INFO_V1(cml_points_combine);
Datum
cml_points_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	MemoryContext old;
	CmlPoints  *a;
	CmlPoints  *b;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "cml_points_combine called in non-aggregate context");
	if (PG_ARGISNULL(1))
		PG_RETURN_POINTER(PG_ARGISNULL(0) ? NULL : PG_GETARG_POINTER(0));
	b = (CmlPoints *) PG_GETARG_POINTER(1);
	if (PG_ARGISNULL(0))
	{
		/* a state deserialised in the aggregate context is taken over, not copied */
		if (GetMemoryChunkContext(b) == aggcxt &&
			GetMemoryChunkContext(b->ll) == aggcxt &&
			(b->label == NULL || GetMemoryChunkContext(b->label) == aggcxt))
			PG_RETURN_POINTER(b);
		old = MemoryContextSwitchTo(aggcxt);
		a = CmlPointsCreate();
		a->linkable = b->linkable;
		MemoryContextSwitchTo(old);
	}
	else
		a = (CmlPoints *) PG_GETARG_POINTER(0);

	if (b->has_params)
		SetParams(a, b->param[0], b->param[1], b->options, aggcxt);
	/* k-means' partial states of parallel workers: b's arrays stay where they are */
	if (LinkRuns(a, b, aggcxt))
		PG_RETURN_POINTER(a);
	MaterializeRuns(a, a->n + b->n, aggcxt);
	old = MemoryContextSwitchTo(aggcxt);
	CmlPointsReserve(a, a->n + b->n);
	MemoryContextSwitchTo(old);
	if (b->label != NULL && a->label == NULL)
	{
		if (a->n > 0)
			elog(ERROR, "cannot combine labelled and unlabelled points. Please report a bug.");
		a->label = MemoryContextAlloc(aggcxt, sizeof(int32) * a->cap);
	}
	for (int32 r = 0; r < (b->run_ll ? b->nruns : 1); r++)
	{
		int64		end;
		int64		start = RunStart(b, r, &end);

		memcpy(a->ll + 2 * (a->n + start), b->run_ll ? b->run_ll[r] : b->ll,
			   sizeof(double) * 2 * (end - start));
	}
	if (b->label != NULL)
		memcpy(a->label + a->n, b->label, sizeof(int32) * b->n);
	a->n += b->n;
	PG_RETURN_POINTER(a);
}

/*
 * ---------- Partial states between processes ----------
 *
 * A partial state of many points does not carry them in its bytea.
 *
 * - A parallel worker's would go through its tuple queue, 64 kB at a time,
 *   which the leader drains only once its own share of the scan is done,
 *   into fresh buffers.  The worker puts the points in the parallel query's
 *   shared memory area instead (the executor's DSA, which lives until the
 *   Gather node is shut down, after the final function) and sends where
 *   they are; the leader copies them out and frees them.  A state left
 *   unread (an error, a LIMIT) goes with the area at the end of the query.
 * - The leader's own partial state of an ungrouped aggregate stays where it
 *   is, in that aggregate's context, which lives until the plan ends or is
 *   scanned again, after the final function: the bytea carries its address,
 *   and the combine links or copies its arrays.
 *
 * Grouped partial states of the leader may be spilled and their memory
 * reused (hash aggregation) while the tuples that name them wait in a sort,
 * so they go inline, as does a state that finds no room in shared memory.
 */
#define BY_REFERENCE_MIN_POINTS 16384

/* Where a serialised state's points are */
typedef enum StatePlace
{
	STATE_INLINE,				/* in the bytea */
	STATE_SHARED,				/* in the parallel query's shared memory area */
	STATE_LOCAL					/* in the leader's own partial state */
} StatePlace;

/*
 * The shared memory area of the parallel query this worker runs, and the plan
 * node the worker runs (the Gather's child), by which the leader finds the
 * area; NULL in the leader and outside parallel query
 */
static dsa_area *
WorkerQueryArea(FunctionCallInfo fcinfo, int *plan_node_id)
{
	EState	   *es;

	if (!IsParallelWorker() || fcinfo->context == NULL || !IsA(fcinfo->context, AggState))
		return NULL;
	es = ((AggState *) fcinfo->context)->ss.ps.state;
	if (es->es_query_dsa == NULL || es->es_plannedstmt == NULL ||
		es->es_plannedstmt->planTree == NULL)
		return NULL;
	*plan_node_id = es->es_plannedstmt->planTree->plan_node_id;
	return es->es_query_dsa;
}

typedef struct GatherAreaSearch
{
	int			plan_node_id;	/* the workers' plan node */
	dsa_area   *area;			/* found: its Gather's shared memory area */
} GatherAreaSearch;

/* Find the Gather (Merge) node below the leader's aggregate that ran plan_node_id */
static bool
FindGatherArea(PlanState *ps, void *context)
{
	GatherAreaSearch *search = (GatherAreaSearch *) context;
	ParallelExecutorInfo *pei = NULL;

	if (ps == NULL)
		return false;
	if (IsA(ps, GatherState))
		pei = ((GatherState *) ps)->pei;
	else if (IsA(ps, GatherMergeState))
		pei = ((GatherMergeState *) ps)->pei;
	if (pei != NULL && outerPlan(ps->plan) != NULL &&
		outerPlan(ps->plan)->plan_node_id == search->plan_node_id)
	{
		search->area = pei->area;
		return true;
	}
	return planstate_tree_walker(ps, FindGatherArea, context);
}

PG_FUNCTION_INFO_V1(cml_points_serialize);
Datum
cml_points_serialize(PG_FUNCTION_ARGS)
{
	CmlPoints  *pts = (CmlPoints *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	Size		point_bytes = mul_size(pts->n, 2 * sizeof(double));
	Size		label_bytes = pts->label ? mul_size(pts->n, sizeof(int32)) : 0;
	Size		need;
	int32		optlen = pts->options ? VARSIZE(pts->options) : 0;
	bool		linkable = pts->linkable && pts->label == NULL && pts->n > 0;
	StatePlace	place = STATE_INLINE;
	dsa_area   *area;
	dsa_pointer shared = InvalidDsaPointer;
	int			plan_node_id = 0;

	/* workers' states are single arrays; a combined one in the leader is not serialised */
	if (pts->n >= BY_REFERENCE_MIN_POINTS && pts->run_ll == NULL)
	{
		if ((area = WorkerQueryArea(fcinfo, &plan_node_id)) != NULL)
		{
			shared = dsa_allocate_extended(area, point_bytes + label_bytes,
										   DSA_ALLOC_HUGE | DSA_ALLOC_NO_OOM);
			if (DsaPointerIsValid(shared))
			{
				char	   *dest = dsa_get_address(area, shared);

				memcpy(dest, pts->ll, point_bytes);
				if (pts->label != NULL)
					memcpy(dest + point_bytes, pts->label, label_bytes);
				place = STATE_SHARED;
			}
		}
		else if (!IsParallelWorker() && fcinfo->context != NULL &&
				 IsA(fcinfo->context, AggState) &&
				 ((AggState *) fcinfo->context)->aggstrategy == AGG_PLAIN)
			place = STATE_LOCAL;
	}
	/* inline, the points go as they are, in one array */
	if (place == STATE_INLINE)
		MaterializeRuns(pts, pts->n, CurrentMemoryContext);

	need = add_size(64 + optlen, place == STATE_INLINE ? point_bytes + label_bytes : 0);
	if (need > MaxAllocSize - VARHDRSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("partial clustering state of %lld points exceeds 1 GB",
						(long long) pts->n),
				 errhint("Set max_parallel_workers_per_gather = 0 to cluster this many points in one process.")));
	pq_begintypsend(&buf);
	enlargeStringInfo(&buf, (int) need);
	pq_sendbyte(&buf, place);
	pq_sendint64(&buf, pts->n);
	if (place == STATE_LOCAL)
	{
		/* the state itself carries the rest */
		pq_sendint32(&buf, MyProcPid);
		pq_sendint64(&buf, (int64) (uintptr_t) pts);
		PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
	}
	pq_sendbyte(&buf, pts->has_params);
	pq_sendfloat8(&buf, pts->param[0]);
	pq_sendfloat8(&buf, pts->param[1]);
	pq_sendint32(&buf, optlen);
	pq_sendbyte(&buf, pts->label != NULL);
	pq_sendbyte(&buf, linkable);
	if (optlen > 0)
		pq_sendbytes(&buf, (const char *) pts->options, optlen);
	if (place == STATE_SHARED)
	{
		pq_sendint32(&buf, plan_node_id);
		pq_sendint64(&buf, (int64) shared);
	}
	else
	{
		pq_sendbytes(&buf, (const char *) pts->ll, (int) point_bytes);
		if (pts->label != NULL)
			pq_sendbytes(&buf, (const char *) pts->label, (int) label_bytes);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* The leader's own partial state named by a serialised one (STATE_LOCAL) */
static CmlPoints *
LocalState(StringInfo buf, int64 n)
{
	CmlPoints  *own;

	if (pq_getmsgint(buf, 4) != MyProcPid)
		elog(ERROR, "invalid partial clustering state. Please report a bug.");
	own = (CmlPoints *) (uintptr_t) pq_getmsgint64(buf);
	if (own->n != n || own->run_ll != NULL)
		elog(ERROR, "invalid partial clustering state. Please report a bug.");
	elog(DEBUG1, "partial clustering state of the leader taken by reference");
	return own;
}

/* Copy a worker's points (STATE_SHARED) out of the query's shared memory, and free them */
static void
CopySharedPoints(FunctionCallInfo fcinfo, StringInfo buf, CmlPoints *pts)
{
	GatherAreaSearch search;
	dsa_pointer shared;
	const char *src;

	search.plan_node_id = pq_getmsgint(buf, 4);
	search.area = NULL;
	shared = (dsa_pointer) pq_getmsgint64(buf);
	if (fcinfo->context == NULL || !IsA(fcinfo->context, AggState) ||
		!FindGatherArea(outerPlanState((AggState *) fcinfo->context), &search))
		elog(ERROR, "partial clustering state in shared memory not found. Please report a bug.");
	src = dsa_get_address(search.area, shared);
	memcpy(pts->ll, src, sizeof(double) * 2 * pts->n);
	if (pts->label != NULL)
		memcpy(pts->label, src + sizeof(double) * 2 * pts->n, sizeof(int32) * pts->n);
	dsa_free(search.area, shared);
	elog(DEBUG1, "partial clustering state of a worker read from shared memory");
}

PG_FUNCTION_INFO_V1(cml_points_deserialize);
Datum
cml_points_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	MemoryContext aggcxt;
	MemoryContext old;
	StringInfoData buf;
	CmlPoints  *pts;
	int64		n;
	int32		optlen;
	bool		labelled;
	StatePlace	place;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "cml_points_deserialize called in non-aggregate context");
	/* read the bytea in place */
	buf.data = VARDATA_ANY(raw);
	buf.len = VARSIZE_ANY_EXHDR(raw);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	place = (StatePlace) pq_getmsgbyte(&buf);
	n = pq_getmsgint64(&buf);
	if (place == STATE_LOCAL)
		PG_RETURN_POINTER(LocalState(&buf, n));
	old = MemoryContextSwitchTo(aggcxt);
	pts = palloc0(sizeof(CmlPoints));
	pts->has_params = pq_getmsgbyte(&buf);
	pts->param[0] = pq_getmsgfloat8(&buf);
	pts->param[1] = pq_getmsgfloat8(&buf);
	optlen = pq_getmsgint(&buf, 4);
	labelled = pq_getmsgbyte(&buf);
	pts->linkable = pq_getmsgbyte(&buf);
	if (optlen > 0)
	{
		pts->options = palloc(optlen);
		pq_copymsgbytes(&buf, (char *) pts->options, optlen);
	}
	/* exactly the room needed: a combine takes this state over */
	if (n < 0 || (Size) n > MaxAllocHugeSize / (2 * sizeof(double)))
		elog(ERROR, "invalid partial clustering state. Please report a bug.");
	pts->n = n;
	pts->cap = Max(n, 1);
	pts->ll = palloc_extended(sizeof(double) * 2 * pts->cap, MCXT_ALLOC_HUGE);
	CmlAdviseHugePages(pts->ll, sizeof(double) * 2 * pts->cap);
	if (labelled)
		pts->label = palloc_extended(sizeof(int32) * pts->cap, MCXT_ALLOC_HUGE);
	if (place == STATE_SHARED)
		CopySharedPoints(fcinfo, &buf, pts);
	else if (place == STATE_INLINE &&
			 (Size) (buf.len - buf.cursor) == (Size) n * (2 * sizeof(double) + (labelled ? sizeof(int32) : 0)))
	{
		pq_copymsgbytes(&buf, (char *) pts->ll, (int) (n * 2 * sizeof(double)));
		if (labelled)
			pq_copymsgbytes(&buf, (char *) pts->label, (int) (n * sizeof(int32)));
	}
	else
		elog(ERROR, "invalid partial clustering state. Please report a bug.");
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(pts);
}
