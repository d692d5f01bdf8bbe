/*
 * stats.c — per-model counters in shared memory, in the manner of pg_stat_statements
 *
 * A fixed array of slots (cinematic_ml.max_tracked_models), claimed under an
 * LWLock the first time a model is seen and never moved; counters are
 * atomics, so updating one takes no lock.  predict() counts rows locally
 * and adds them once per statement, so a prediction costs no shared-memory
 * traffic.  Without shared_preload_libraries every call is a no-op and the
 * SQL functions say what is missing.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "executor/spi.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "stats.h"

#define STAT_NAME_LEN 64

typedef struct StatSlot
{
	pg_atomic_uint32 used;		/* 1 once name is set */
	char		name[STAT_NAME_LEN];
	pg_atomic_uint64 counter[CML_STAT_COUNT];
	pg_atomic_uint64 last_load_at;	/* TimestampTz */
	pg_atomic_uint32 last_load_version;
} StatSlot;

typedef struct StatShared
{
	LWLock	   *lock;
	pg_atomic_uint64 reset_at;	/* TimestampTz */
	int			nslots;
	StatSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} StatShared;

static int	cml_max_tracked = 256;
static StatShared *stats = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static const char *const stat_names[CML_STAT_COUNT] = {
	"predictions", "predictions_challenger", "model_loads", "cache_hits", "trainings",
	"training_ms", "promotions", "rollbacks", "drift_checks", "drift_drifted",
	"drift_insufficient", "exports_succeeded", "exports_failed", "retrains_failed"
};

/* Size of the shared area */
static Size
StatsSize(void)
{
	return add_size(offsetof(StatShared, slots), mul_size(cml_max_tracked, sizeof(StatSlot)));
}

/* Ask for shared memory and a lock */
static void
StatsShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(StatsSize());
	RequestNamedLWLockTranche("cinematic_ml", 1);
}

/* Create or attach the shared area */
static void
StatsShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	stats = ShmemInitStruct("cinematic_ml stats", StatsSize(), &found);
	if (!found)
	{
		stats->lock = &(GetNamedLWLockTranche("cinematic_ml"))->lock;
		stats->nslots = cml_max_tracked;
		pg_atomic_init_u64(&stats->reset_at, (uint64) GetCurrentTimestamp());
		for (int i = 0; i < stats->nslots; i++)
		{
			StatSlot   *s = &stats->slots[i];

			pg_atomic_init_u32(&s->used, 0);
			s->name[0] = '\0';
			for (int c = 0; c < CML_STAT_COUNT; c++)
				pg_atomic_init_u64(&s->counter[c], 0);
			pg_atomic_init_u64(&s->last_load_at, 0);
			pg_atomic_init_u32(&s->last_load_version, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Define the setting and, when preloaded, install the shared-memory hooks */
void
CmlStatsInit(void)
{
	/* a server-start setting can only be defined while preloading */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("cinematic_ml.max_tracked_models",
							"Models whose statistics are kept in shared memory.",
							NULL, &cml_max_tracked, 256, 1, 100000, PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = StatsShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = StatsShmemStartup;
}

/* The slot of a model, or NULL (lock-free: slots are never moved or freed) */
static StatSlot *
FindSlot(const char *model)
{
	if (stats == NULL)
		return NULL;
	for (int i = 0; i < stats->nslots; i++)
	{
		StatSlot   *s = &stats->slots[i];

		if (pg_atomic_read_u32(&s->used) == 0)
			return NULL;		/* slots are claimed in order */
		if (strncmp(s->name, model, STAT_NAME_LEN) == 0)
			return s;
	}
	return NULL;
}

/* Make sure a model has a slot */
void
CmlStatsTrack(const char *model)
{
	if (stats == NULL || FindSlot(model) != NULL)
		return;
	LWLockAcquire(stats->lock, LW_EXCLUSIVE);
	if (FindSlot(model) == NULL)
	{
		for (int i = 0; i < stats->nslots; i++)
		{
			StatSlot   *s = &stats->slots[i];

			if (pg_atomic_read_u32(&s->used) == 0)
			{
				strlcpy(s->name, model, STAT_NAME_LEN);
				pg_write_barrier();
				pg_atomic_write_u32(&s->used, 1);
				break;
			}
		}
	}
	LWLockRelease(stats->lock);
}

/* Add to a counter */
void
CmlStatsAdd(const char *model, CmlStat stat, uint64 delta)
{
	StatSlot   *s = FindSlot(model);

	if (s != NULL && delta > 0)
		pg_atomic_fetch_add_u64(&s->counter[stat], delta);
}

/* A backend loaded a version of a model */
void
CmlStatsModelLoaded(const char *model, int32 version)
{
	StatSlot   *s;

	CmlStatsTrack(model);
	s = FindSlot(model);
	if (s == NULL)
		return;
	pg_atomic_fetch_add_u64(&s->counter[CML_STAT_MODEL_LOADS], 1);
	pg_atomic_write_u64(&s->last_load_at, (uint64) GetCurrentTimestamp());
	pg_atomic_write_u32(&s->last_load_version, (uint32) version);
}

/* Error for the SQL functions that need the preload */
static void
RequirePreload(void)
{
	if (stats == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cinematic_ml statistics are not available"),
				 errdetail("They live in shared memory, which needs the library preloaded."),
				 errhint("Add cinematic_ml to shared_preload_libraries and restart the server.")));
}

PG_FUNCTION_INFO_V1(stats_available);
/* stats_available() -> bool */
Datum
stats_available(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(stats != NULL);
}

PG_FUNCTION_INFO_V1(stats_rows);
/* stats() -> one row per tracked model */
Datum
stats_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	RequirePreload();
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < stats->nslots; i++)
	{
		StatSlot   *s = &stats->slots[i];
		Datum		values[CML_STAT_COUNT + 4];
		bool		nulls[CML_STAT_COUNT + 4] = {0};
		uint64		load_at;

		if (pg_atomic_read_u32(&s->used) == 0)
			break;
		values[0] = CStringGetTextDatum(s->name);
		for (int c = 0; c < CML_STAT_COUNT; c++)
			values[1 + c] = Int64GetDatum((int64) pg_atomic_read_u64(&s->counter[c]));
		load_at = pg_atomic_read_u64(&s->last_load_at);
		values[CML_STAT_COUNT + 1] = TimestampTzGetDatum((TimestampTz) load_at);
		nulls[CML_STAT_COUNT + 1] = load_at == 0;
		values[CML_STAT_COUNT + 2] = Int32GetDatum((int32) pg_atomic_read_u32(&s->last_load_version));
		nulls[CML_STAT_COUNT + 2] = load_at == 0;
		values[CML_STAT_COUNT + 3] = TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&stats->reset_at));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(stats_reset);
/* stats_reset(model text DEFAULT NULL): zero the counters of one model or all */
Datum
stats_reset(PG_FUNCTION_ARGS)
{
	char	   *model = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));

	RequirePreload();
	for (int i = 0; i < stats->nslots; i++)
	{
		StatSlot   *s = &stats->slots[i];

		if (pg_atomic_read_u32(&s->used) == 0)
			break;
		if (model != NULL && strncmp(s->name, model, STAT_NAME_LEN) != 0)
			continue;
		for (int c = 0; c < CML_STAT_COUNT; c++)
			pg_atomic_write_u64(&s->counter[c], 0);
	}
	if (model == NULL)
		pg_atomic_write_u64(&stats->reset_at, (uint64) GetCurrentTimestamp());
	PG_RETURN_VOID();
}

/* Escape a Prometheus label value */
static void
AppendLabel(StringInfo buf, const char *v)
{
	for (const char *p = v; *p; p++)
	{
		if (*p == '\\' || *p == '"')
			appendStringInfoChar(buf, '\\');
		if (*p == '\n')
		{
			appendStringInfoString(buf, "\\n");
			continue;
		}
		appendStringInfoChar(buf, *p);
	}
}

PG_FUNCTION_INFO_V1(stats_metrics);
/* metrics() -> text in the Prometheus exposition format */
Datum
stats_metrics(PG_FUNCTION_ARGS)
{
	StringInfoData buf;

	RequirePreload();
	initStringInfo(&buf);
	for (int c = 0; c < CML_STAT_COUNT; c++)
	{
		bool		gauge_ms = (c == CML_STAT_TRAINING_MS);

		appendStringInfo(&buf, "# HELP cinematic_ml_%s%s cinematic_ml %s per model since the last reset.\n",
						 stat_names[c], gauge_ms ? "_total" : "_total", stat_names[c]);
		appendStringInfo(&buf, "# TYPE cinematic_ml_%s_total counter\n", stat_names[c]);
		for (int i = 0; i < stats->nslots; i++)
		{
			StatSlot   *s = &stats->slots[i];

			if (pg_atomic_read_u32(&s->used) == 0)
				break;
			appendStringInfo(&buf, "cinematic_ml_%s_total{model=\"", stat_names[c]);
			AppendLabel(&buf, s->name);
			appendStringInfo(&buf, "\"} " UINT64_FORMAT "\n", pg_atomic_read_u64(&s->counter[c]));
		}
	}
	appendStringInfoString(&buf, "# HELP cinematic_ml_loaded_version Version last loaded by a backend.\n"
						   "# TYPE cinematic_ml_loaded_version gauge\n");
	for (int i = 0; i < stats->nslots; i++)
	{
		StatSlot   *s = &stats->slots[i];

		if (pg_atomic_read_u32(&s->used) == 0)
			break;
		if (pg_atomic_read_u64(&s->last_load_at) == 0)
			continue;
		appendStringInfoString(&buf, "cinematic_ml_loaded_version{model=\"");
		AppendLabel(&buf, s->name);
		appendStringInfo(&buf, "\"} %u\n", pg_atomic_read_u32(&s->last_load_version));
	}
	PG_RETURN_TEXT_P(cstring_to_text(buf.data));
}

/* A member of a jsonb object, or NULL */
static JsonbValue *
JsonbMember(Datum d, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(&DatumGetJsonbP(d)->root, JB_FOBJECT, &k);
}

PG_FUNCTION_INFO_V1(stats_event_trigger);
/*
 * AFTER INSERT trigger on model_events and drift_checks: count trainings
 * (and their duration), promotions, rollbacks, exports, failures, checks.
 */
Datum
stats_event_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tup;
	bool		isnull;
	char	   *model;
	char	   *event;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "stats_event_trigger must be called as a trigger");
	tup = td->tg_trigtuple;
	if (stats == NULL)
		return PointerGetDatum(tup);
	desc = RelationGetDescr(td->tg_relation);
	model = SPI_getvalue(tup, desc, SPI_fnumber(desc, "model_name"));
	if (model == NULL)
		return PointerGetDatum(tup);
	CmlStatsTrack(model);
	if (strcmp(RelationGetRelationName(td->tg_relation), "drift_checks") == 0)
	{
		char	   *verdict = SPI_getvalue(tup, desc, SPI_fnumber(desc, "verdict"));

		CmlStatsAdd(model, CML_STAT_DRIFT_CHECKS, 1);
		if (verdict && strcmp(verdict, "drifted") == 0)
			CmlStatsAdd(model, CML_STAT_DRIFT_DRIFTED, 1);
		else if (verdict && strcmp(verdict, "insufficient_data") == 0)
			CmlStatsAdd(model, CML_STAT_DRIFT_INSUFFICIENT, 1);
		return PointerGetDatum(tup);
	}
	event = SPI_getvalue(tup, desc, SPI_fnumber(desc, "event"));
	if (event == NULL)
		return PointerGetDatum(tup);
	if (strcmp(event, "trained") == 0)
	{
		Datum		d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "detail"), &isnull);
		JsonbValue *ms = isnull ? NULL : JsonbMember(d, "duration_ms");

		CmlStatsAdd(model, CML_STAT_TRAININGS, 1);
		if (ms != NULL && ms->type == jbvNumeric)
			CmlStatsAdd(model, CML_STAT_TRAINING_MS,
						(uint64) Max(0.0, DatumGetFloat8(DirectFunctionCall1(numeric_float8,
																				NumericGetDatum(ms->val.numeric)))));
	}
	else if (strcmp(event, "promoted") == 0)
		CmlStatsAdd(model, CML_STAT_PROMOTIONS, 1);
	else if (strcmp(event, "rolled_back") == 0)
		CmlStatsAdd(model, CML_STAT_ROLLBACKS, 1);
	else if (strcmp(event, "exported") == 0)
		CmlStatsAdd(model, CML_STAT_EXPORTS_OK, 1);
	else if (strcmp(event, "failed") == 0)
	{
		Datum		d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "detail"), &isnull);
		JsonbValue *what = isnull ? NULL : JsonbMember(d, "what");
		bool		export = what != NULL && what->type == jbvString &&
			what->val.string.len == 6 && memcmp(what->val.string.val, "export", 6) == 0;
		CmlStatsAdd(model, export ? CML_STAT_EXPORTS_FAILED : CML_STAT_RETRAINS_FAILED, 1);
	}
	return PointerGetDatum(tup);
}
