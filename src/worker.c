/*
 * worker.c — the background worker: runs due retrains and drains the export queue
 *
 * With shared_preload_libraries = 'cinematic_ml', one worker runs for each
 * database listed in cinematic_ml.database.  Each pass: mark runs and exports
 * left in flight by a crash (first pass only), run every due schedule (each
 * in its own transaction, as the schedule's owner, failures recorded), then
 * upload queued exports outside any transaction and record each outcome,
 * retrying failures with capped exponential backoff and jitter.  It sleeps on
 * its latch between passes; SIGHUP reloads the settings, SIGTERM stops it.
 * A standby never starts it (BgWorkerStart_RecoveryFinished); a database
 * without the extension is polled quietly.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

#include "s3.h"
#include "worker.h"

PGDLLEXPORT void CmlWorkerMain(Datum arg);

static char *cml_databases = NULL;
static int	cml_naptime_s = 10;
static int	cml_export_batch = 20;
static bool cml_preloaded = false;

/* Define the worker's settings and, when preloaded, register one worker per database */
void
CmlWorkerInit(void)
{
	List	   *names;
	ListCell   *lc;
	char	   *raw;
	int			i = 0;

	DefineCustomIntVariable("cinematic_ml.worker_naptime",
							"Seconds the background worker sleeps between passes.",
							NULL, &cml_naptime_s, 10, 1, 3600, PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cinematic_ml.export_batch",
							"Exports the background worker uploads per pass.",
							NULL, &cml_export_batch, 20, 1, 10000, PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	/* a server-start setting can only be defined while preloading */
	if (!process_shared_preload_libraries_in_progress)
		return;
	cml_preloaded = true;
	DefineCustomStringVariable("cinematic_ml.database",
							   "Databases where the cinematic_ml background worker runs (comma-separated).",
							   "Read at server start.",
							   &cml_databases, "", PGC_POSTMASTER, 0, NULL, NULL, NULL);

	raw = pstrdup(cml_databases);
	if (!SplitIdentifierString(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in cinematic_ml.database")));
	foreach(lc, names)
	{
		BackgroundWorker worker;
		const char *db = (const char *) lfirst(lc);

		if (strlen(db) >= BGW_EXTRALEN)
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("database name \"%s\" in cinematic_ml.database is too long", db)));
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 5;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "cinematic_ml");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "CmlWorkerMain");
		snprintf(worker.bgw_name, BGW_MAXLEN, "cinematic_ml worker for %s", db);
		snprintf(worker.bgw_type, BGW_MAXLEN, "cinematic_ml worker");
		strlcpy(worker.bgw_extra, db, BGW_EXTRALEN);
		worker.bgw_main_arg = Int32GetDatum(i++);
		RegisterBackgroundWorker(&worker);
	}
}

PG_FUNCTION_INFO_V1(worker_configured);
/* worker_configured() -> text: NULL when a worker serves this database, else why not */
Datum
worker_configured(PG_FUNCTION_ARGS)
{
	List	   *names;
	ListCell   *lc;
	char	   *raw;
	const char *db = get_database_name(MyDatabaseId);

	if (!cml_preloaded)
		PG_RETURN_TEXT_P(cstring_to_text("cinematic_ml is not in shared_preload_libraries: no background worker runs"));
	raw = pstrdup(cml_databases);
	if (SplitIdentifierString(raw, ',', &names))
		foreach(lc, names)
			if (strcmp((const char *) lfirst(lc), db) == 0)
				PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("database \"%s\" is not listed in cinematic_ml.database", db)));
}

/* Start a short transaction with a snapshot and SPI */
static void
BeginWork(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commit the transaction started by BeginWork */
static void
EndWork(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Run a statement with text parameters; elog on failure */
static void
Exec(const char *sql, int nargs, const char **values, int expected)
{
	Oid			types[8];
	Datum		args[8];
	char		nulls[8] = {0};
	int			ret;

	Assert(nargs <= 8);
	for (int i = 0; i < nargs; i++)
	{
		types[i] = TEXTOID;
		args[i] = values[i] ? CStringGetTextDatum(values[i]) : (Datum) 0;
		nulls[i] = values[i] ? ' ' : 'n';
	}
	ret = SPI_execute_with_args(sql, nargs, nargs ? types : NULL, nargs ? args : NULL,
								nargs ? nulls : NULL, false, 0);
	if (ret != expected)
		elog(ERROR, "cinematic_ml worker: \"%s\" failed: %s", sql, SPI_result_code_string(ret));
}

/* True when the extension is installed in this database (call inside a transaction) */
static bool
ExtensionReady(void)
{
	return OidIsValid(get_extension_oid("cinematic_ml", true));
}

/* After a crash or a restart: what was in flight did not finish */
static void
RecoverInFlight(void)
{
	Exec("UPDATE cinematic_ml.job_runs SET status = 'failed', finished_at = now(), "
		 "error = 'interrupted: the worker stopped or crashed during the run' WHERE status = 'running'",
		 0, NULL, SPI_OK_UPDATE);
	Exec("UPDATE cinematic_ml.exports SET status = 'pending', next_attempt_at = now(), "
		 "last_error = 'interrupted: the worker stopped or crashed during the upload' WHERE status = 'running'",
		 0, NULL, SPI_OK_UPDATE);
}

/* Record an error raised in a job or an export and clean up the aborted transaction */
static char *
CatchError(MemoryContext keep)
{
	ErrorData  *edata;
	char	   *msg;

	MemoryContextSwitchTo(keep);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	msg = pstrdup(edata->message ? edata->message : "unknown error");
	FreeErrorData(edata);
	pgstat_report_activity(STATE_IDLE, NULL);
	return msg;
}

/* A claimed schedule run, in TopMemoryContext */
typedef struct ClaimedRun
{
	char	   *run_id;
	char	   *model;
	char	   *owner;
} ClaimedRun;

/* Claim the next due schedule: a run row, the next run time; NULL when none is due */
static pg_noinline ClaimedRun *
ClaimDueSchedule(void)
{
	int			ret;
	ClaimedRun *run = NULL;

	BeginWork("cinematic_ml: looking for due schedules");
	ret = SPI_execute("WITH due AS ("
					  "  SELECT s.model_name, s.run_as FROM cinematic_ml.schedules s"
					  "   WHERE s.enabled AND s.next_run_at <= now()"
					  "   ORDER BY s.next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED),"
					  " bump AS ("
					  "  UPDATE cinematic_ml.schedules s SET last_run_at = now(),"
					  "         next_run_at = cinematic_ml._next_run(s.every, s.cron, now())"
					  "    FROM due WHERE s.model_name = due.model_name)"
					  " INSERT INTO cinematic_ml.job_runs (model_name, run_as, status, pid)"
					  " SELECT model_name, run_as, 'running', pg_backend_pid() FROM due"
					  " RETURNING run_id::text, model_name, run_as",
					  false, 0);
	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "cinematic_ml worker: could not claim a schedule: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		run = palloc(sizeof(ClaimedRun));
		run->run_id = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		run->model = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
		run->owner = pstrdup(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));
		MemoryContextSwitchTo(old);
	}
	EndWork();
	return run;
}

/* Run one due schedule: retrain as the schedule's owner, in its own transaction */
static bool
RunOneSchedule(MemoryContext loopcxt)
{
	ClaimedRun *run = ClaimDueSchedule();
	char	   *volatile result = NULL;
	char	   *volatile error = NULL;

	if (run == NULL)
		return false;

	PG_TRY();
	{
		Oid			save_userid;
		int			save_sec;
		const char *args[1] = {run->model};

		BeginWork(psprintf("cinematic_ml: retrain('%s')", run->model));
		GetUserIdAndSecContext(&save_userid, &save_sec);
		SetUserIdAndSecContext(get_role_oid(run->owner, false), save_sec | SECURITY_LOCAL_USERID_CHANGE);
		Exec("SELECT cinematic_ml.retrain($1)::text", 1, args, SPI_OK_SELECT);
		SetUserIdAndSecContext(save_userid, save_sec);
		result = MemoryContextStrdup(loopcxt, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		EndWork();
	}
	PG_CATCH();
	{
		error = CatchError(loopcxt);
	}
	PG_END_TRY();

	BeginWork("cinematic_ml: recording a run");
	{
		const char *args[3] = {run->run_id, result, error};

		Exec("UPDATE cinematic_ml.job_runs SET finished_at = now(),"
			 " status = CASE WHEN $3 IS NULL THEN 'succeeded' ELSE 'failed' END,"
			 " result = $2::jsonb, error = $3 WHERE run_id = $1::bigint",
			 3, args, SPI_OK_UPDATE);
	}
	EndWork();
	if (error)
		ereport(LOG,
				(errmsg("cinematic_ml worker: retrain of model \"%s\" failed: %s", run->model, error)));
	pfree(run->run_id);
	pfree(run->model);
	pfree(run->owner);
	pfree(run);
	return true;
}

/* Upload the next due export; false when there is none */
static bool
ExportOne(MemoryContext loopcxt)
{
	int			ret;
	CmlExportItem item = {0};
	static CmlS3Result res;		/* static: survives the longjmp of a caught error */
	bytea	   *model = NULL;
	char	   *keys[3];
	char	   *error = NULL;
	char		status[16];

	memset(&res, 0, sizeof(res));
	BeginWork("cinematic_ml: looking for exports");
	/*
	 * The next due export of a version that still exists; a model's
	 * latest.json only once the version it points at is uploaded.
	 */
	ret = SPI_execute("WITH next AS ("
					  "  SELECT e.model_name, e.version, e.kind FROM cinematic_ml.exports e"
					  "    JOIN cinematic_ml.model_versions mv"
					  "      ON mv.model_name = e.model_name AND mv.version = e.version"
					  "   WHERE e.status IN ('pending', 'failed') AND e.next_attempt_at <= now()"
					  "     AND (e.kind = 'version' OR NOT EXISTS ("
					  "          SELECT 1 FROM cinematic_ml.exports x WHERE x.model_name = e.model_name"
					  "             AND x.version = e.version AND x.kind = 'version' AND x.status <> 'done'))"
					  "   ORDER BY e.next_attempt_at, e.queued_at LIMIT 1 FOR UPDATE OF e SKIP LOCKED)"
					  " UPDATE cinematic_ml.exports e SET status = 'running', attempts = e.attempts + 1"
					  "   FROM next, cinematic_ml.model_versions v"
					  "  WHERE e.model_name = next.model_name AND e.version = next.version AND e.kind = next.kind"
					  "    AND v.model_name = e.model_name AND v.version = e.version"
					  " RETURNING e.model_name, e.version, e.kind, v.model, v.metrics::text, v.sha256,"
					  "   to_char(v.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
					  false, 0);
	if (ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "cinematic_ml worker: could not claim an export: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	td = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(loopcxt);
		bool		isnull;

		item.model_name = pstrdup(SPI_getvalue(tup, td, 1));
		item.version = DatumGetInt32(SPI_getbinval(tup, td, 2, &isnull));
		item.kind = pstrdup(SPI_getvalue(tup, td, 3));
		model = DatumGetByteaPCopy(SPI_getbinval(tup, td, 4, &isnull));
		item.model = model;
		item.metrics_json = pstrdup(SPI_getvalue(tup, td, 5));
		item.sha256 = pstrdup(SPI_getvalue(tup, td, 6));
		item.created_at_utc = pstrdup(SPI_getvalue(tup, td, 7));
		MemoryContextSwitchTo(old);
	}
	EndWork();
	if (item.model_name == NULL)
		return false;

	/* the transfer: no transaction, no locks */
	pgstat_report_activity(STATE_RUNNING, psprintf("cinematic_ml: uploading %s v%d (%s)",
												   item.model_name, item.version, item.kind));
	PG_TRY();
	{
		CmlExportItemToS3(&item, &res);
	}
	PG_CATCH();
	{
		/* e.g. a model that cannot be read: recorded, retried with backoff */
		ErrorData  *edata;

		MemoryContextSwitchTo(loopcxt);
		edata = CopyErrorData();
		FlushErrorState();
		res.ok = false;
		strlcpy(res.error, edata->message ? edata->message : "unknown error", sizeof(res.error));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	CHECK_FOR_INTERRUPTS();

	strlcpy(status, res.ok ? "done" : "failed", sizeof(status));
	keys[0] = (char *) item.model_name;
	keys[1] = psprintf("%d", item.version);
	keys[2] = (char *) item.kind;
	PG_TRY();
	{
		const char *args[8] = {keys[0], keys[1], keys[2], status,
			psprintf("%ld", res.http_status), res.etag[0] ? res.etag : NULL,
			res.ok ? NULL : res.error, (res.ok && res.uri[0]) ? res.uri : NULL};

		BeginWork("cinematic_ml: recording an export");
		Exec("UPDATE cinematic_ml.exports SET status = $4, http_status = nullif($5, '0')::int,"
			 " etag = coalesce($6, etag), last_error = $7,"
			 " exported_at = CASE WHEN $4 = 'done' THEN now() END,"
			 " uri = coalesce($8, CASE WHEN $3 = 'version' THEN cinematic_ml._export_uri($1, $2::int) ELSE uri END),"
			 " next_attempt_at = CASE WHEN $4 = 'done' THEN next_attempt_at"
			 "   ELSE now() + least(300, 2 ^ least(attempts, 16)) * (0.5 + random() / 2) * interval '1 second' END"
			 " WHERE model_name = $1 AND version = $2::int AND kind = $3",
			 8, args, SPI_OK_UPDATE);
		/* the version is up: its latest.json need not wait for its own backoff */
		Exec("UPDATE cinematic_ml.exports SET next_attempt_at = now()"
			 " WHERE $4 = 'done' AND $3 = 'version' AND model_name = $1 AND version = $2::int"
			 "   AND kind = 'latest' AND status IN ('pending', 'failed')",
			 4, args, SPI_OK_UPDATE);
		Exec("INSERT INTO cinematic_ml.model_events (model_name, version, event, detail)"
			 " VALUES ($1, $2::int, CASE WHEN $4 = 'done' THEN 'exported' ELSE 'failed' END,"
			 "  jsonb_strip_nulls(jsonb_build_object('what', 'export', 'kind', $3, 'http_status', nullif($5, '0')::int,"
			 "                                      'etag', $6, 'error', $7)))",
			 7, args, SPI_OK_INSERT);
		EndWork();
	}
	PG_CATCH();
	{
		error = CatchError(loopcxt);
		ereport(LOG, (errmsg("cinematic_ml worker: could not record an export: %s", error)));
	}
	PG_END_TRY();
	if (!res.ok)
		ereport(LOG,
				(errmsg("cinematic_ml worker: export of model \"%s\" version %d (%s) failed: %s",
						item.model_name, item.version, item.kind, res.error)));
	return true;
}

/* Entry point of a worker: the database name is in bgw_extra */
void
CmlWorkerMain(Datum arg)
{
	char		dbname[BGW_EXTRALEN];
	MemoryContext loopcxt;
	volatile bool recovered = false;

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	pgstat_report_appname("cinematic_ml worker");
	ereport(LOG, (errmsg("cinematic_ml worker started for database \"%s\"", dbname)));

	loopcxt = AllocSetContextCreate(TopMemoryContext, "cinematic_ml worker loop", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		volatile bool ready;
		volatile int work = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ereport(LOG,
					(errmsg("cinematic_ml worker for database \"%s\" reloaded its settings (naptime %d s)",
							dbname, cml_naptime_s)));
		}
		MemoryContextSwitchTo(loopcxt);

		PG_TRY();
		{
			BeginWork("cinematic_ml: checking the extension");
			ready = ExtensionReady();
			if (ready && !recovered)
			{
				RecoverInFlight();
				recovered = true;
			}
			EndWork();
		}
		PG_CATCH();
		{
			char	   *msg = CatchError(loopcxt);

			ereport(LOG, (errmsg("cinematic_ml worker: %s", msg)));
			ready = false;
		}
		PG_END_TRY();

		if (ready)
		{
			PG_TRY();
			{
				/* due schedules, each in its own transaction */
				while (work < 100 && RunOneSchedule(loopcxt))
				{
					work++;
					CHECK_FOR_INTERRUPTS();
				}
				/* the export queue, when a bucket is configured */
				if (CmlS3Configured())
				{
					int			n = 0;

					while (n < cml_export_batch && ExportOne(loopcxt))
					{
						n++;
						CHECK_FOR_INTERRUPTS();
					}
					work += n;
				}
			}
			PG_CATCH();
			{
				/* never fatal to the worker: log, sleep, try again */
				char	   *msg = CatchError(loopcxt);

				ereport(LOG, (errmsg("cinematic_ml worker: %s", msg)));
				work = 0;
			}
			PG_END_TRY();
		}

		MemoryContextReset(loopcxt);
		if (work > 0)
			continue;			/* more may be due: look again before sleeping */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 cml_naptime_s * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
