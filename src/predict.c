/*
 * predict.c — predict functions and the per-backend model cache
 *
 * A statement resolves its model once, on its first row, and keeps a pinned
 * pointer to it in fn_extra: no catalog or table access per row, and the
 * statement sees one version from start to end.  The cache lives for the
 * backend; the registry's trigger sends a relcache invalidation for
 * model_versions when a version changes, whose callback only sets a flag, and
 * the next statement reloads.  Nothing here writes, so predict runs on a hot
 * standby and in parallel workers.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "model.h"
#include "predict.h"
#include "stats.h"

char	   *cml_default_model = NULL;

typedef struct CachedModel
{
	char	   *name;
	int32		version;
	CmlModel   *model;
	MemoryContext cxt;			/* owns name and model */
	int			pins;			/* statements using it now */
	bool		stale;
	struct CachedModel *next;
} CachedModel;

static MemoryContext CacheCxt = NULL;
static CachedModel *cache_head = NULL;
static bool registry_changed = true;
static Oid	registry_relid = InvalidOid;

/* The registry changed: the next statement reloads (callbacks only set a flag) */
static void
RegistryInvalCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == registry_relid || registry_relid == InvalidOid)
		registry_changed = true;
}

/* Register the invalidation callback (called once from _PG_init) */
void
CmlPredictInit(void)
{
	CacheRegisterRelcacheCallback(RegistryInvalCallback, (Datum) 0);
}

/* Free cache entries that are stale and no longer pinned */
static void
SweepCache(void)
{
	CachedModel **pp = &cache_head;

	while (*pp)
	{
		CachedModel *e = *pp;

		if (e->stale && e->pins == 0)
		{
			*pp = e->next;
			MemoryContextDelete(e->cxt);
		}
		else
			pp = &e->next;
	}
}

/* Apply a pending invalidation: every entry becomes stale */
static void
ApplyInvalidation(void)
{
	if (!registry_changed)
		return;
	for (CachedModel *e = cache_head; e; e = e->next)
		e->stale = true;
	registry_changed = false;
	registry_relid = InvalidOid;
	SweepCache();
}

/* OID of the extension's schema, or an error when the extension is missing */
static Oid
RegistrySchema(void)
{
	Oid			nsp = get_namespace_oid("cinematic_ml", true);

	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("schema \"cinematic_ml\" does not exist"),
				 errhint("Run CREATE EXTENSION cinematic_ml.")));
	return nsp;
}

/* The model name to use when none is given */
static char *
ResolveDefaultName(void)
{
	MemoryContext callerCxt = CurrentMemoryContext;
	int			ret;
	char	   *name;
	StringInfoData list;

	if (cml_default_model != NULL && cml_default_model[0] != '\0')
		return pstrdup(cml_default_model);

	SPI_connect();
	ret = SPI_execute("SELECT model_name FROM cinematic_ml.model_versions "
					  "WHERE status = 'active' ORDER BY model_name", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the model registry: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		name = MemoryContextStrdup(callerCxt, name);
		SPI_finish();
		return name;
	}
	initStringInfo(&list);
	for (uint64 i = 0; i < SPI_processed && i < 20; i++)
		appendStringInfo(&list, "%s%s", i ? ", " : "",
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no model has an active version"),
				 errhint("Train one with cinematic_ml.train(), or name the model.")));
	ereport(ERROR,
			(errcode(ERRCODE_AMBIGUOUS_PARAMETER),
			 errmsg("several models have an active version: %s", list.data),
			 errhint("Name the model, or set cinematic_ml.default_model.")));
	return NULL;				/* keep compiler quiet */
}

/* Load the active version of a model into a new cache entry */
static CachedModel *
LoadModel(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	int			ret;
	bool		isnull;
	CachedModel *e;
	MemoryContext cxt;
	MemoryContext old;
	bytea	   *raw;
	int32		version;

	(void) RegistrySchema();
	args[0] = CStringGetTextDatum(name);
	SPI_connect();
	ret = SPI_execute_with_args("SELECT version, model FROM cinematic_ml.model_versions "
								"WHERE model_name = $1 AND status = 'active'",
								1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the model registry: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
	{
		ret = SPI_execute_with_args("SELECT 1 FROM cinematic_ml.models WHERE model_name = $1",
									1, argtypes, args, NULL, true, 0);
		if (ret == SPI_OK_SELECT && SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("model \"%s\" has no active version", name),
					 errhint("Promote one: UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = '%s' AND version = ...", name)));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	}
	version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	if (CacheCxt == NULL)
		CacheCxt = AllocSetContextCreate(TopMemoryContext, "cinematic_ml model cache",
										 ALLOCSET_SMALL_SIZES);
	cxt = AllocSetContextCreate(CacheCxt, "cinematic_ml model", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		raw = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		e = palloc0(sizeof(CachedModel));
		e->name = pstrdup(name);
		e->version = version;
		e->cxt = cxt;
		e->model = CmlModelDeserialize(raw);
		CmlModelPrepare(e->model);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	SPI_finish();

	if (registry_relid == InvalidOid)
		registry_relid = get_relname_relid("model_versions", RegistrySchema());
	e->next = cache_head;
	cache_head = e;
	CmlStatsModelLoaded(e->name, e->version);
	return e;
}

/* What a statement remembers about its model (fn_extra) */
typedef struct PredictCall
{
	CachedModel *entry;			/* pinned; NULL when not resolved */
	uint64		count;			/* predictions of this statement, added to the stats at its end */
	char	   *name;			/* the name it was resolved for; NULL = default */
	/* for the bytea variants */
	bytea	   *raw;
	CmlModel   *model;
	MemoryContext cxt;
} PredictCall;

/* Unpin at the end of the statement */
static void
UnpinCallback(void *arg)
{
	PredictCall *pc = (PredictCall *) arg;

	if (pc->entry)
	{
		CmlStatsAdd(pc->entry->name, CML_STAT_PREDICTIONS, pc->count);
		pc->count = 0;
		pc->entry->pins--;
		pc->entry = NULL;
		SweepCache();
	}
}

/* The statement's state, created on its first row */
static PredictCall *
GetCall(FunctionCallInfo fcinfo)
{
	PredictCall *pc = (PredictCall *) fcinfo->flinfo->fn_extra;

	if (pc == NULL)
	{
		MemoryContextCallback *cb;

		pc = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(PredictCall));
		cb = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(MemoryContextCallback));
		cb->func = UnpinCallback;
		cb->arg = pc;
		MemoryContextRegisterResetCallback(fcinfo->flinfo->fn_mcxt, cb);
		fcinfo->flinfo->fn_extra = pc;
	}
	return pc;
}

/* The model for this call: by name (NULL = default), resolved once per statement */
static CachedModel *
ModelByName(FunctionCallInfo fcinfo, text *name_text)
{
	PredictCall *pc = GetCall(fcinfo);
	char	   *name;
	CachedModel *e;

	if (pc->entry != NULL)
	{
		if ((name_text == NULL && pc->name == NULL) ||
			(name_text != NULL && pc->name != NULL &&
			 strlen(pc->name) == VARSIZE_ANY_EXHDR(name_text) &&
			 memcmp(pc->name, VARDATA_ANY(name_text), VARSIZE_ANY_EXHDR(name_text)) == 0))
		{
			pc->count++;
			return pc->entry;
		}
		/* a different model on this row: release the old one */
		CmlStatsAdd(pc->entry->name, CML_STAT_PREDICTIONS, pc->count);
		pc->count = 0;
		pc->entry->pins--;
		pc->entry = NULL;
		if (pc->name)
			pfree(pc->name);
		pc->name = NULL;
	}

	ApplyInvalidation();
	name = name_text ? text_to_cstring(name_text) : ResolveDefaultName();
	for (e = cache_head; e; e = e->next)
		if (!e->stale && strcmp(e->name, name) == 0)
			break;
	if (e == NULL)
		e = LoadModel(name);
	else
		CmlStatsAdd(e->name, CML_STAT_CACHE_HITS, 1);
	e->pins++;
	pc->entry = e;
	pc->count = 1;
	pc->name = name_text ? MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, name) : NULL;
	return e;
}

/* The model given as a bytea argument, deserialised once while it stays the same */
static CmlModel *
ModelFromBytea(FunctionCallInfo fcinfo, int argno)
{
	PredictCall *pc = GetCall(fcinfo);
	Datum		d = PG_GETARG_DATUM(argno);
	bytea	   *raw;

	if (pc->model != NULL && (Pointer) pc->raw == DatumGetPointer(d))
		return pc->model;
	raw = PG_GETARG_BYTEA_PP(argno);
	if (pc->model != NULL &&
		VARSIZE_ANY_EXHDR(raw) == VARSIZE_ANY_EXHDR(pc->raw) &&
		memcmp(VARDATA_ANY(raw), VARDATA_ANY(pc->raw), VARSIZE_ANY_EXHDR(raw)) == 0)
	{
		pc->raw = (bytea *) DatumGetPointer(d);
		return pc->model;
	}
	if (pc->cxt == NULL)
		pc->cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "cinematic_ml model argument",
										ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(pc->cxt);
	pc->model = NULL;
	{
		MemoryContext old = MemoryContextSwitchTo(pc->cxt);
		bytea	   *copy = palloc(VARSIZE_ANY_EXHDR(raw) + VARHDRSZ);
		CmlModel   *m;

		SET_VARSIZE(copy, VARSIZE_ANY_EXHDR(raw) + VARHDRSZ);
		memcpy(VARDATA(copy), VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw));
		m = CmlModelDeserialize(copy);
		CmlModelPrepare(m);
		MemoryContextSwitchTo(old);
		pc->model = m;
		pc->raw = copy;
	}
	return pc->model;
}

/* Validated prediction of the call's (lat, lon) at argument positions */
static void
PredictArgs(FunctionCallInfo fcinfo, const CmlModel *m, int latarg, CmlPrediction *out)
{
	double		lat = PG_GETARG_FLOAT8(latarg);
	double		lon = PG_GETARG_FLOAT8(latarg + 1);

	CmlCheckLatLon(lat, lon);
	CmlPredict(m, lat, lon, out);
}

PG_FUNCTION_INFO_V1(predict_cluster_by_name);
Datum
predict_cluster_by_name(PG_FUNCTION_ARGS)
{
	CachedModel *e = ModelByName(fcinfo, PG_NARGS() > 2 ? PG_GETARG_TEXT_PP(2) : NULL);
	CmlPrediction p;

	PredictArgs(fcinfo, e->model, 0, &p);
	PG_RETURN_INT32(p.cluster);
}

PG_FUNCTION_INFO_V1(predict_cluster_bytea);
Datum
predict_cluster_bytea(PG_FUNCTION_ARGS)
{
	CmlModel   *m = ModelFromBytea(fcinfo, 0);
	CmlPrediction p;

	PredictArgs(fcinfo, m, 1, &p);
	PG_RETURN_INT32(p.cluster);
}

PG_FUNCTION_INFO_V1(is_hotspot_by_name);
Datum
is_hotspot_by_name(PG_FUNCTION_ARGS)
{
	CachedModel *e = ModelByName(fcinfo, PG_NARGS() > 2 ? PG_GETARG_TEXT_PP(2) : NULL);
	CmlPrediction p;

	PredictArgs(fcinfo, e->model, 0, &p);
	PG_RETURN_BOOL(p.is_hotspot);
}

PG_FUNCTION_INFO_V1(is_hotspot_bytea);
Datum
is_hotspot_bytea(PG_FUNCTION_ARGS)
{
	CmlModel   *m = ModelFromBytea(fcinfo, 0);
	CmlPrediction p;

	PredictArgs(fcinfo, m, 1, &p);
	PG_RETURN_BOOL(p.is_hotspot);
}

/* The predict() record */
static Datum
PredictRecord(FunctionCallInfo fcinfo, const CmlPrediction *p, const char *name, int32 version)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "predict must return a record. Please report a bug.");
	values[0] = Int32GetDatum(p->cluster);
	values[1] = BoolGetDatum(p->is_hotspot);
	values[2] = Float8GetDatum(p->distance_m);
	values[3] = Float8GetDatum(p->zone_radius_m);
	nulls[2] = isnan(p->distance_m);
	nulls[3] = isnan(p->zone_radius_m);
	if (name)
	{
		values[4] = CStringGetTextDatum(name);
		values[5] = Int32GetDatum(version);
	}
	else
		nulls[4] = nulls[5] = true;
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls));
}

PG_FUNCTION_INFO_V1(predict_by_name);
Datum
predict_by_name(PG_FUNCTION_ARGS)
{
	CachedModel *e = ModelByName(fcinfo, PG_NARGS() > 2 ? PG_GETARG_TEXT_PP(2) : NULL);
	CmlPrediction p;

	PredictArgs(fcinfo, e->model, 0, &p);
	return PredictRecord(fcinfo, &p, e->name, e->version);
}

PG_FUNCTION_INFO_V1(predict_bytea);
Datum
predict_bytea(PG_FUNCTION_ARGS)
{
	CmlModel   *m = ModelFromBytea(fcinfo, 0);
	CmlPrediction p;

	PredictArgs(fcinfo, m, 1, &p);
	return PredictRecord(fcinfo, &p, NULL, 0);
}

PG_FUNCTION_INFO_V1(model_info);
Datum
model_info(PG_FUNCTION_ARGS)
{
	return CmlModelInfoJsonb(CmlModelDeserialize(PG_GETARG_BYTEA_PP(0)));
}
