/*
 * predict.c — predict functions and the per-backend model cache
 *
 * A statement resolves its model once, on its first row: one registry read
 * under the statement's snapshot says which version is active (or which
 * versions the champion / challenger aliases name), and a pinned pointer to
 * the deserialised version is kept in fn_extra: no catalog or table access
 * per row, and the statement sees one version from start to end, in every
 * parallel worker too.  Versions are immutable, so deserialised models (and
 * their search indexes) are cached per backend by (name, version); the
 * registry's triggers send a relcache invalidation whose callback only sets a
 * flag, and the next statement drops what may be gone (a deleted version, a
 * recreated extension).  Models given as values are cached by their bytes.
 * Nothing here writes, so predict runs on a hot standby.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
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
	bytea	   *raw;			/* models given as values: their bytes; NULL for registry versions */
	MemoryContext cxt;			/* owns name, raw and model */
	int			pins;			/* statements using it now */
	bool		stale;
	struct CachedModel *next;
} CachedModel;

/* Which versions a model name resolves to, read once per statement */
typedef struct Route
{
	int32		active;			/* 0 when none */
	int32		champion;		/* alias 'champion', 0 when unset */
	int32		challenger;		/* alias 'challenger', 0 when unset */
	double		share;			/* settings.challenger_share */
} Route;

static MemoryContext CacheCxt = NULL;
static CachedModel *cache_head = NULL;
static bool registry_changed = true;

/* the registry tables whose changes invalidate the cache (models, versions, aliases) */
#define N_WATCHED 3
static Oid	watched_relids[N_WATCHED];

/* The registry changed: the next statement reloads (callbacks only set a flag) */
static void
RegistryInvalCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || !OidIsValid(watched_relids[0]))
		registry_changed = true;
	for (int i = 0; i < N_WATCHED; i++)
		if (relid == watched_relids[i])
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

/* Apply a pending invalidation: every entry becomes stale */
static void
ApplyInvalidation(void)
{
	Oid			nsp;

	if (!registry_changed)
		return;
	for (CachedModel *e = cache_head; e; e = e->next)
		if (e->raw == NULL)		/* values are content-addressed: never stale */
			e->stale = true;
	registry_changed = false;
	nsp = RegistrySchema();
	watched_relids[0] = get_relname_relid("model_versions", nsp);
	watched_relids[1] = get_relname_relid("model_aliases", nsp);
	watched_relids[2] = get_relname_relid("models", nsp);
	SweepCache();
	if (CacheCxt == NULL)
		CacheCxt = AllocSetContextCreate(TopMemoryContext, "cinematic_ml model cache",
										 ALLOCSET_SMALL_SIZES);
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

/* An int4 column of the SPI result's first row, 0 when NULL */
static int32
SpiInt(int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

/* The route query, planned once per backend */
static SPIPlanPtr route_plan = NULL;

/*
 * The versions a model name resolves to: active, champion, challenger, share.
 *
 * Read once per statement, under the statement's snapshot.  A promotion's
 * invalidation is broadcast only after its commit became visible to new
 * snapshots, so a route kept until the invalidation arrives could be older
 * than the statement's snapshot, while parallel workers (empty caches) read
 * the registry under that snapshot: one statement, two versions.  Reading
 * the route with the snapshot keeps every call site and every worker of a
 * statement on the version the snapshot sees as active; the models
 * themselves stay cached by (name, version).
 */
static void
GetRoute(const char *name, Route *r)
{
	Datum		args[1];
	int			ret;
	bool		isnull;

	args[0] = CStringGetTextDatum(name);
	SPI_connect();
	if (route_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};
		SPIPlanPtr	plan;

		plan = SPI_prepare("SELECT m.model_name IS NOT NULL,"
						   " (SELECT v.version FROM cinematic_ml.model_versions v"
						   "   WHERE v.model_name = $1 AND v.status = 'active'),"
						   " (SELECT a.version FROM cinematic_ml.model_aliases a"
						   "   WHERE a.model_name = $1 AND a.alias = 'champion'),"
						   " (SELECT a.version FROM cinematic_ml.model_aliases a"
						   "   WHERE a.model_name = $1 AND a.alias = 'challenger'),"
						   " coalesce((m.settings->>'challenger_share')::float8, 0)"
						   " FROM (SELECT 1) one LEFT JOIN cinematic_ml.models m ON m.model_name = $1",
						   1, argtypes);
		if (plan == NULL)
			elog(ERROR, "could not plan the model registry query: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep the model registry query plan");
		route_plan = plan;
	}
	ret = SPI_execute_plan(route_plan, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the model registry: %s", SPI_result_code_string(ret));
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name)));
	r->active = SpiInt(2);
	r->champion = SpiInt(3);
	r->challenger = SpiInt(4);
	r->share = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	SPI_finish();
}

/*
 * A new cache entry for a model's bytes, in a memory context of its own
 * (freed again if the bytes do not deserialise).  keep_raw keeps a copy of
 * the bytes (models given as values are looked up by them).
 */
static CachedModel *
NewCacheEntry(const bytea *raw, const char *name, int32 version, bool keep_raw)
{
	MemoryContext cxt = AllocSetContextCreate(CacheCxt, "cinematic_ml model", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	CachedModel *e;

	PG_TRY();
	{
		e = palloc0(sizeof(CachedModel));
		e->name = name ? pstrdup(name) : NULL;
		e->version = version;
		e->cxt = cxt;
		if (keep_raw)
		{
			Size		len = VARSIZE_ANY_EXHDR(raw);

			e->raw = palloc(len + VARHDRSZ);
			SET_VARSIZE(e->raw, len + VARHDRSZ);
			memcpy(VARDATA(e->raw), VARDATA_ANY(raw), len);
		}
		e->model = CmlModelDeserialize(keep_raw ? e->raw : raw);
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
	e->next = cache_head;
	cache_head = e;
	return e;
}

/* A version of a model, from the cache or loaded */
static CachedModel *
GetVersion(const char *name, int32 version)
{
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		args[2];
	int			ret;
	bool		isnull;
	CachedModel *e;
	bytea	   *raw;

	for (e = cache_head; e; e = e->next)
		if (!e->stale && e->raw == NULL && e->version == version && strcmp(e->name, name) == 0)
		{
			CmlStatsAdd(e->name, CML_STAT_CACHE_HITS, 1);
			return e;
		}

	args[0] = CStringGetTextDatum(name);
	args[1] = Int32GetDatum(version);
	SPI_connect();
	ret = SPI_execute_with_args("SELECT model FROM cinematic_ml.model_versions "
								"WHERE model_name = $1 AND version = $2",
								2, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the model registry: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" has no version %d", name, version)));

	raw = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	e = NewCacheEntry(raw, name, version, false);
	SPI_finish();
	CmlStatsModelLoaded(e->name, e->version);
	return e;
}

/* What a statement remembers about its model(s) (fn_extra) */
typedef struct PredictCall
{
	bool		resolved;
	char	   *name;			/* the name it was resolved for; NULL = default */
	Size		name_len;
	CachedModel *entry[2];		/* pinned: the served version; [1] the challenger when routed */
	double		share;			/* routed calls: challenger share */
	uint64		count[2];		/* predictions per entry, added to the stats at the end */
	/* for the bytea variants */
	CachedModel *value;			/* pinned */
	Pointer		value_arg;		/* the argument it was resolved for */
	bool		value_stable;	/* the argument is a constant or a parameter */
	char	   *value_key;		/* the argument as passed (inline bytes or TOAST pointer) */
	Size		value_key_len;
} PredictCall;

/* Add the statement's counts to the stats and unpin its models */
static void
ReleaseCall(PredictCall *pc)
{
	if (pc->entry[0])
		CmlStatsAdd(pc->entry[0]->name, CML_STAT_PREDICTIONS, pc->count[0] + pc->count[1]);
	if (pc->entry[1])
		CmlStatsAdd(pc->entry[1]->name, CML_STAT_PREDICTIONS_CHALLENGER, pc->count[1]);
	for (int i = 0; i < 2; i++)
	{
		if (pc->entry[i])
			pc->entry[i]->pins--;
		pc->entry[i] = NULL;
		pc->count[i] = 0;
	}
	pc->resolved = false;
	if (pc->name)
		pfree(pc->name);
	pc->name = NULL;
}

/* Unpin a statement's model value */
static void
ReleaseValue(PredictCall *pc)
{
	if (pc->value)
		pc->value->pins--;
	pc->value = NULL;
	pc->value_arg = NULL;
}

/* Unpin at the end of the statement */
static void
UnpinCallback(void *arg)
{
	ReleaseCall((PredictCall *) arg);
	ReleaseValue((PredictCall *) arg);
	SweepCache();
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

/* Has the statement resolved this name (NULL = default) already? */
static bool
SameName(const PredictCall *pc, text *name_text)
{
	if (!pc->resolved)
		return false;
	if (name_text == NULL || pc->name == NULL)
		return name_text == NULL && pc->name == NULL;
	return pc->name_len == VARSIZE_ANY_EXHDR(name_text) &&
		memcmp(pc->name, VARDATA_ANY(name_text), pc->name_len) == 0;
}

/* Pin a version as the statement's entry i */
static void
PinEntry(PredictCall *pc, int i, CachedModel *e)
{
	e->pins++;
	pc->entry[i] = e;
}

/*
 * The model for this call: by name (NULL = default), resolved once per
 * statement.  routed: serve the champion (alias, else the active version)
 * and send a share of routing keys to the challenger alias.
 */
static CachedModel *
ResolveModel(FunctionCallInfo fcinfo, text *name_text, bool routed, text *key)
{
	PredictCall *pc = GetCall(fcinfo);
	CachedModel *e;

	if (!SameName(pc, name_text))
	{
		char	   *name;
		Route		route;
		Route	   *r = &route;
		int32		serve;

		ReleaseCall(pc);
		ApplyInvalidation();
		name = name_text ? text_to_cstring(name_text) : ResolveDefaultName();
		GetRoute(name, r);
		serve = (routed && r->champion) ? r->champion : r->active;
		if (serve == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("model \"%s\" has no active version", name),
					 errhint("Promote one: UPDATE cinematic_ml.model_versions SET status = 'active' WHERE model_name = '%s' AND version = ...", name)));
		PinEntry(pc, 0, GetVersion(name, serve));
		pc->share = 0;
		if (routed && r->challenger && r->share > 0)
		{
			PinEntry(pc, 1, GetVersion(name, r->challenger));
			pc->share = r->share;
		}
		pc->name = name_text ? MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, name) : NULL;
		pc->name_len = pc->name ? strlen(pc->name) : 0;
		pc->resolved = true;
	}
	e = pc->entry[0];
	if (pc->entry[1] != NULL && key != NULL)
	{
		/* a stable hash of the key: the same key always gets the same version */
		uint32		h = hash_bytes((const unsigned char *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));

		if ((double) h < pc->share * 4294967296.0)
		{
			pc->count[1]++;
			return pc->entry[1];
		}
	}
	pc->count[0]++;
	return e;
}

/* The model for a call by name (NULL = default) */
static CachedModel *
ModelByName(FunctionCallInfo fcinfo, text *name_text)
{
	return ResolveModel(fcinfo, name_text, false, NULL);
}

/* At most this many models given as values stay cached in a backend */
#define MAX_VALUE_MODELS 8

/* A model given as a value: cached per backend by its bytes (content-addressed) */
static CachedModel *
GetModelByValue(const bytea *raw)
{
	Size		len = VARSIZE_ANY_EXHDR(raw);
	CachedModel *e;
	CachedModel *lru = NULL;
	int			nvalues = 0;
	static uint64 clock = 0;

	if (CacheCxt == NULL)
		CacheCxt = AllocSetContextCreate(TopMemoryContext, "cinematic_ml model cache",
										 ALLOCSET_SMALL_SIZES);
	for (e = cache_head; e; e = e->next)
	{
		if (e->raw == NULL || e->stale)
			continue;
		if (VARSIZE(e->raw) - VARHDRSZ == len && memcmp(VARDATA(e->raw), VARDATA_ANY(raw), len) == 0)
		{
			e->version = (int32) ++clock;	/* value entries: version is the LRU clock */
			return e;
		}
		nvalues++;
		if (e->pins == 0 && (lru == NULL || e->version < lru->version))
			lru = e;
	}
	if (nvalues >= MAX_VALUE_MODELS && lru != NULL)
	{
		lru->stale = true;
		SweepCache();
	}

	return NewCacheEntry(raw, NULL, (int32) ++clock, true);
}

/*
 * The model given as a bytea argument: resolved once while the argument stays
 * the same.  A constant or parameter cannot change, so its address identifies
 * it.  Otherwise the argument as passed is compared with the last one: the
 * same inline bytes (compressed or not) are the same model, and so is the same
 * TOAST pointer, which names an immutable value, so a model read from a table
 * is neither fetched nor decompressed again for every row.
 */
static CmlModel *
ModelFromBytea(FunctionCallInfo fcinfo, int argno)
{
	PredictCall *pc = GetCall(fcinfo);
	Pointer		arg = DatumGetPointer(PG_GETARG_DATUM(argno));
	bool		keyed = !VARATT_IS_EXTERNAL(arg) || VARATT_IS_EXTERNAL_ONDISK(arg);
	Size		keylen = keyed ? VARSIZE_ANY(arg) : 0;
	bytea	   *raw;

	if (pc->value != NULL)
	{
		if (pc->value_arg == arg && pc->value_stable)
			return pc->value->model;
		if (keyed && pc->value_key_len == keylen && memcmp(pc->value_key, arg, keylen) == 0)
			return pc->value->model;
	}
	raw = PG_GETARG_BYTEA_PP(argno);
	if (pc->value == NULL || VARSIZE(pc->value->raw) - VARHDRSZ != VARSIZE_ANY_EXHDR(raw) ||
		memcmp(VARDATA(pc->value->raw), VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw)) != 0)
	{
		CachedModel *e = GetModelByValue(raw);

		if (pc->value)
			pc->value->pins--;
		else
			pc->value_stable = get_fn_expr_arg_stable(fcinfo->flinfo, argno);
		e->pins++;
		pc->value = e;
	}
	pc->value_arg = arg;
	if (pc->value_key)
		pfree(pc->value_key);
	pc->value_key = keyed ? MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, keylen) : NULL;
	pc->value_key_len = keylen;
	if (keyed)
		memcpy(pc->value_key, arg, keylen);
	return pc->value->model;
}

/* Validated zone of the call's (lat, lon) at argument positions */
static int32
PredictZoneArgs(FunctionCallInfo fcinfo, const CmlModel *m, int latarg, bool *hot)
{
	double		lat = PG_GETARG_FLOAT8(latarg);
	double		lon = PG_GETARG_FLOAT8(latarg + 1);

	CmlCheckLatLon(lat, lon);
	return CmlPredictCluster(m, lat, lon, hot);
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

	PG_RETURN_INT32(PredictZoneArgs(fcinfo, e->model, 0, NULL));
}

PG_FUNCTION_INFO_V1(predict_cluster_bytea);
Datum
predict_cluster_bytea(PG_FUNCTION_ARGS)
{
	CmlModel   *m = ModelFromBytea(fcinfo, 0);

	PG_RETURN_INT32(PredictZoneArgs(fcinfo, m, 1, NULL));
}

PG_FUNCTION_INFO_V1(is_hotspot_by_name);
Datum
is_hotspot_by_name(PG_FUNCTION_ARGS)
{
	CachedModel *e = ModelByName(fcinfo, PG_NARGS() > 2 ? PG_GETARG_TEXT_PP(2) : NULL);
	bool		hot;

	(void) PredictZoneArgs(fcinfo, e->model, 0, &hot);
	PG_RETURN_BOOL(hot);
}

PG_FUNCTION_INFO_V1(is_hotspot_bytea);
Datum
is_hotspot_bytea(PG_FUNCTION_ARGS)
{
	CmlModel   *m = ModelFromBytea(fcinfo, 0);
	bool		hot;

	(void) PredictZoneArgs(fcinfo, m, 1, &hot);
	PG_RETURN_BOOL(hot);
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

PG_FUNCTION_INFO_V1(predict_routed);
/* predict(lat, lon, model_name, routing_key): champion / challenger by a stable hash of the key */
Datum
predict_routed(PG_FUNCTION_ARGS)
{
	CachedModel *e = ResolveModel(fcinfo, PG_GETARG_TEXT_PP(2), true, PG_GETARG_TEXT_PP(3));
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
