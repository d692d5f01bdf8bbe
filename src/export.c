/*
 * export.c — model versions to S3 and back: the objects of an export,
 * export_now() for operators, _s3_get() behind import_model()
 *
 * Layout in the bucket (keys are a function of model and version only, so a
 * retried export overwrites the same objects):
 *   PREFIX/MODEL/vVERSION.cml          the model bytea, unchanged
 *   PREFIX/MODEL/vVERSION.zones.json   {run_id, created_at_utc, metrics, zones[{cluster, lat, lon, radius_m}]}
 *   PREFIX/MODEL/latest.json           {model_name, version, uri, zones_uri, updated_at_utc}
 */
#include "postgres.h"

#include <sys/time.h>
#include <time.h>

#include "catalog/pg_type.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "model.h"
#include "s3.h"

/* The largest object _s3_get() reads */
#define CML_S3_GET_MAX ((Size) (MaxAllocSize - VARHDRSZ))

/* One object of an export, ready to send */
typedef struct ExportObject
{
	char	   *key;
	StringInfoData body;
	const char *content_type;
} ExportObject;

/* Current UTC time as ISO 8601 with microseconds */
static void
UtcNow(char *buf, size_t size)
{
	struct timeval tv;
	struct tm	tm;
	char		base[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%06ldZ", base, (long) tv.tv_usec);
}

/* run_id of a version: MODEL-vVERSION-<first 12 hex digits of its SHA-256> */
static char *
RunId(const CmlExportItem *item, const char *sha256)
{
	return psprintf("%s-v%d-%.12s", item->model_name, item->version, sha256);
}

/* Body of vN.zones.json: the shape the original Cinematic Paris API reads */
static void
BuildZonesJson(StringInfo buf, const CmlExportItem *item, const CmlModel *m,
			   const char *sha256, const char *model_uri)
{
	char		now[40];

	appendStringInfoString(buf, "{\"run_id\": ");
	escape_json(buf, RunId(item, sha256));
	appendStringInfoString(buf, ", \"created_at_utc\": ");
	if (item->created_at_utc != NULL)
		escape_json(buf, item->created_at_utc);
	else
	{
		UtcNow(now, sizeof(now));
		escape_json(buf, now);
	}
	appendStringInfoString(buf, ", \"model_name\": ");
	escape_json(buf, item->model_name);
	appendStringInfo(buf, ", \"version\": %d, \"algorithm\": ", item->version);
	escape_json(buf, CmlAlgorithmName(m->algorithm));
	appendStringInfoString(buf, ", \"sha256\": ");
	escape_json(buf, sha256);
	appendStringInfoString(buf, ", \"model_uri\": ");
	escape_json(buf, model_uri);
	appendStringInfo(buf, ", \"metrics\": %s, \"zones\": [",
					 item->metrics_json != NULL && item->metrics_json[0] != '\0' ? item->metrics_json : "{}");
	for (int i = 0; i < m->n_zones; i++)
	{
		const CmlZone *z = &m->zones[i];

		appendStringInfo(buf, "%s{\"cluster\": %d, \"lat\": ", i > 0 ? ", " : "", i);
		CmlAppendJsonFloat(buf, z->lat);
		appendStringInfoString(buf, ", \"lon\": ");
		CmlAppendJsonFloat(buf, z->lon);
		appendStringInfoString(buf, ", \"radius_m\": ");
		CmlAppendJsonFloat(buf, z->radius_m);
		appendStringInfo(buf, ", \"n_points\": " INT64_FORMAT "}", z->n_points);
	}
	appendStringInfoString(buf, "]}\n");
}

/* Body of latest.json */
static void
BuildLatestJson(StringInfo buf, const CmlExportItem *item)
{
	char		now[40];
	char	   *cml = psprintf("v%d.cml", item->version);
	char	   *zones = psprintf("v%d.zones.json", item->version);

	UtcNow(now, sizeof(now));
	appendStringInfoString(buf, "{\"model_name\": ");
	escape_json(buf, item->model_name);
	appendStringInfo(buf, ", \"version\": %d, \"uri\": ", item->version);
	escape_json(buf, CmlS3Uri(NULL, CmlS3ObjectKey(item->model_name, cml)));
	appendStringInfoString(buf, ", \"zones_uri\": ");
	escape_json(buf, CmlS3Uri(NULL, CmlS3ObjectKey(item->model_name, zones)));
	if (item->sha256 != NULL && strlen(item->sha256) >= 12)
	{
		appendStringInfoString(buf, ", \"run_id\": ");
		escape_json(buf, RunId(item, item->sha256));
		appendStringInfoString(buf, ", \"sha256\": ");
		escape_json(buf, item->sha256);
	}
	appendStringInfoString(buf, ", \"updated_at_utc\": ");
	escape_json(buf, now);
	appendStringInfoString(buf, "}\n");
}

/*
 * Prepare the objects of an item (may ereport: a damaged model, out of
 * memory).  Returns the number of objects; *head_key is set for "latest"
 * (the version's model object, which must exist before latest.json may
 * point at it).
 */
static int
PrepareObjects(const CmlExportItem *item, ExportObject *objs, char **head_key)
{
	*head_key = NULL;
	if (item->model_name == NULL || item->kind == NULL)
		elog(ERROR, "export item without model name or kind");
	if (strcmp(item->kind, "version") == 0)
	{
		char		sha[PG_SHA256_DIGEST_LENGTH * 2 + 1];
		CmlModel   *m;

		if (item->model == NULL)
			elog(ERROR, "export of version %d of model \"%s\" without its model value",
				 item->version, item->model_name);
		if (!CmlSha256Hex(VARDATA_ANY(item->model), VARSIZE_ANY_EXHDR(item->model), sha))
			elog(ERROR, "could not compute the SHA-256 of the model");
		if (item->sha256 != NULL && pg_strcasecmp(item->sha256, sha) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the model value of version %d of model \"%s\" does not match its recorded sha256",
							item->version, item->model_name)));
		/* validates the model completely: nothing is sent when it is damaged */
		m = CmlModelDeserialize(item->model);

		objs[0].key = CmlS3ObjectKey(item->model_name, psprintf("v%d.cml", item->version));
		initStringInfo(&objs[0].body);
		appendBinaryStringInfo(&objs[0].body, VARDATA_ANY(item->model), VARSIZE_ANY_EXHDR(item->model));
		objs[0].content_type = "application/octet-stream";

		objs[1].key = CmlS3ObjectKey(item->model_name, psprintf("v%d.zones.json", item->version));
		initStringInfo(&objs[1].body);
		BuildZonesJson(&objs[1].body, item, m, sha, CmlS3Uri(NULL, objs[0].key));
		objs[1].content_type = "application/json";
		return 2;
	}
	if (strcmp(item->kind, "latest") == 0)
	{
		objs[0].key = CmlS3ObjectKey(item->model_name, "latest.json");
		initStringInfo(&objs[0].body);
		BuildLatestJson(&objs[0].body, item);
		objs[0].content_type = "application/json";
		*head_key = CmlS3ObjectKey(item->model_name, psprintf("v%d.cml", item->version));
		return 1;
	}
	elog(ERROR, "unknown export kind \"%s\"", item->kind);
	return 0;					/* keep compiler quiet */
}

/* Upload one item (one or two objects); fills res; no ereport */
bool
CmlExportItemToS3(const CmlExportItem *item, CmlS3Result *res)
{
	MemoryContext cxt;
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = false;

	memset(res, 0, sizeof(*res));
	if (!CmlS3Configured())
	{
		strlcpy(res->error, "cinematic_ml.s3_bucket is not set", sizeof(res->error));
		return false;
	}
	cxt = AllocSetContextCreate(CurrentMemoryContext, "cinematic_ml export", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ExportObject objs[2];
		char	   *head_key;
		int			n = PrepareObjects(item, objs, &head_key);
		char		etag[sizeof(res->etag)] = "";
		char		uri[sizeof(res->uri)] = "";

		ok = true;
		if (head_key != NULL && !CmlS3Head(head_key, res))
		{
			ok = false;
			if (res->http_status == 404)
				snprintf(res->error, sizeof(res->error),
						 "%s does not exist yet: latest.json would point at a missing object (export the version first)",
						 res->uri);
		}
		for (int i = 0; ok && i < n; i++)
		{
			ok = CmlS3Put(objs[i].key, objs[i].body.data, objs[i].body.len, objs[i].content_type, res);
			/* the result names the first object: the model (or latest.json) */
			if (ok && i == 0)
			{
				strlcpy(etag, res->etag, sizeof(etag));
				strlcpy(uri, res->uri, sizeof(uri));
			}
		}
		if (ok)
		{
			strlcpy(res->etag, etag, sizeof(res->etag));
			strlcpy(res->uri, uri, sizeof(res->uri));
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			PG_RE_THROW();
		FlushErrorState();
		ok = false;
		res->ok = false;
		res->http_status = 0;
		strlcpy(res->error, edata->message ? edata->message : "unknown error", sizeof(res->error));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
	res->ok = ok;
	return ok;
}

/* ---------------------------------------------------------------- SQL functions */

/* The bucket must be set before anything is sent */
static void
RequireBucket(void)
{
	if (!CmlS3Configured())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cinematic_ml.s3_bucket is not set"),
				 errhint("Set it, e.g. ALTER SYSTEM SET cinematic_ml.s3_bucket = 'my-bucket'; SELECT pg_reload_conf(); "
						 "and cinematic_ml.s3_endpoint for an S3-compatible server.")));
}

/* Append one export outcome as a JSON object */
static void
AppendOutcome(StringInfo buf, const char *kind, const char *status, const CmlS3Result *res,
			  const char *zones_uri)
{
	appendStringInfoString(buf, "{\"kind\": ");
	escape_json(buf, kind);
	appendStringInfoString(buf, ", \"status\": ");
	escape_json(buf, status);
	appendStringInfo(buf, ", \"ok\": %s, \"http_status\": ", res->ok ? "true" : "false");
	if (res->http_status > 0)
		appendStringInfo(buf, "%ld", res->http_status);
	else
		appendStringInfoString(buf, "null");
	appendStringInfoString(buf, ", \"etag\": ");
	if (res->etag[0])
		escape_json(buf, res->etag);
	else
		appendStringInfoString(buf, "null");
	appendStringInfoString(buf, ", \"uri\": ");
	if (res->uri[0])
		escape_json(buf, res->uri);
	else
		appendStringInfoString(buf, "null");
	if (zones_uri != NULL)
	{
		appendStringInfoString(buf, ", \"zones_uri\": ");
		escape_json(buf, zones_uri);
	}
	appendStringInfoString(buf, ", \"error\": ");
	if (res->ok)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, res->error);
	appendStringInfoChar(buf, '}');
}

/* Record one outcome in exports and model_events (SPI connected) */
static void
RecordOutcome(const CmlExportItem *item, const CmlS3Result *res)
{
	Oid			types[8] = {TEXTOID, INT4OID, TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = "        ";
	int			ret;

	values[0] = CStringGetTextDatum(item->model_name);
	values[1] = Int32GetDatum(item->version);
	values[2] = CStringGetTextDatum(item->kind);
	values[3] = CStringGetTextDatum(res->ok ? "done" : "failed");
	values[4] = Int32GetDatum((int32) res->http_status);
	if (res->http_status <= 0)
		nulls[4] = 'n';
	values[5] = CStringGetTextDatum(res->etag);
	if (res->etag[0] == '\0')
		nulls[5] = 'n';
	values[6] = CStringGetTextDatum(res->uri);
	if (res->uri[0] == '\0')
		nulls[6] = 'n';
	values[7] = CStringGetTextDatum(res->error);
	if (res->ok)
		nulls[7] = 'n';

	ret = SPI_execute_with_args(
								"INSERT INTO cinematic_ml.exports AS e (model_name, version, kind, status, attempts, http_status,"
								"                                       etag, uri, last_error, exported_at)"
								" VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, CASE WHEN $4 = 'done' THEN now() END)"
								" ON CONFLICT (model_name, version, kind) DO UPDATE"
								"   SET status = EXCLUDED.status, attempts = e.attempts + 1, http_status = EXCLUDED.http_status,"
								"       etag = coalesce(EXCLUDED.etag, e.etag), uri = coalesce(EXCLUDED.uri, e.uri),"
								"       last_error = EXCLUDED.last_error,"
								"       exported_at = CASE WHEN EXCLUDED.status = 'done' THEN now() ELSE e.exported_at END",
								8, types, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not record the export: %s", SPI_result_code_string(ret));
	ret = SPI_execute_with_args(
								"INSERT INTO cinematic_ml.model_events (model_name, version, event, detail)"
								" VALUES ($1, $2, CASE WHEN $4 = 'done' THEN 'exported' ELSE 'failed' END,"
								"         jsonb_strip_nulls(jsonb_build_object('what', 'export', 'kind', $3, 'via', 'export_now',"
								"                                              'http_status', $5, 'etag', $6, 'uri', $7, 'error', $8)))",
								8, types, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not record the export event: %s", SPI_result_code_string(ret));
}

PG_FUNCTION_INFO_V1(export_now);
/*
 * export_now(model_name, version) -> jsonb: upload one version now (and
 * latest.json when it is the active one), record the outcome in exports and
 * model_events, and return it.  A failed upload is a result, not an ERROR,
 * so that it stays recorded.  The transfer runs inside the caller's
 * transaction, which holds only the AccessShareLock of the read (no row lock).
 */
Datum
export_now(PG_FUNCTION_ARGS)
{
	char	   *model_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		version = PG_GETARG_INT32(1);
	MemoryContext callcxt = CurrentMemoryContext;
	CmlExportItem item = {0};
	CmlExportItem latest;
	CmlS3Result vres;
	CmlS3Result lres;
	bool		active;
	bool		isnull;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	int			ret;
	StringInfoData out;
	char	   *zones_uri;

	RequireBucket();

	/* read the version */
	values[0] = CStringGetTextDatum(model_name);
	values[1] = Int32GetDatum(version);
	SPI_connect();
	ret = SPI_execute_with_args("SELECT v.model, v.metrics::text, v.sha256,"
								" to_char(v.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
								" v.status = 'active'"
								" FROM cinematic_ml.model_versions v WHERE v.model_name = $1 AND v.version = $2",
								2, types, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the model registry: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" has no version %d", model_name, version)));
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	td = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(callcxt);

		item.model_name = model_name;
		item.version = version;
		item.kind = "version";
		item.model = DatumGetByteaPCopy(SPI_getbinval(tup, td, 1, &isnull));
		item.metrics_json = pstrdup(SPI_getvalue(tup, td, 2));
		item.sha256 = pstrdup(SPI_getvalue(tup, td, 3));
		item.created_at_utc = pstrdup(SPI_getvalue(tup, td, 4));
		active = DatumGetBool(SPI_getbinval(tup, td, 5, &isnull));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();

	/* the transfers */
	CmlExportItemToS3(&item, &vres);
	if (vres.interrupted)
		CHECK_FOR_INTERRUPTS();
	latest = item;
	latest.kind = "latest";
	memset(&lres, 0, sizeof(lres));
	if (active && vres.ok)
	{
		CmlExportItemToS3(&latest, &lres);
		if (lres.interrupted)
			CHECK_FOR_INTERRUPTS();
	}

	/* record and report */
	SPI_connect();
	RecordOutcome(&item, &vres);
	if (active && vres.ok)
		RecordOutcome(&latest, &lres);
	SPI_finish();

	zones_uri = CmlS3Uri(NULL, CmlS3ObjectKey(model_name, psprintf("v%d.zones.json", version)));
	initStringInfo(&out);
	appendStringInfoString(&out, "{\"model_name\": ");
	escape_json(&out, model_name);
	appendStringInfo(&out, ", \"version\": %d, \"active\": %s, \"ok\": %s, \"exports\": [",
					 version, active ? "true" : "false",
					 (vres.ok && (!active || lres.ok)) ? "true" : "false");
	AppendOutcome(&out, "version", vres.ok ? "done" : "failed", &vres, zones_uri);
	if (active)
	{
		appendStringInfoString(&out, ", ");
		if (vres.ok)
			AppendOutcome(&out, "latest", lres.ok ? "done" : "failed", &lres, NULL);
		else
		{
			strlcpy(lres.error, "not attempted: the version's export failed", sizeof(lres.error));
			AppendOutcome(&out, "latest", "skipped", &lres, NULL);
		}
	}
	appendStringInfoString(&out, "]}");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}

/* Split s3://BUCKET/KEY; ERROR when malformed */
static void
ParseS3Uri(const char *uri, char **bucket, char **key)
{
	const char *p;
	const char *slash;

	if (strncmp(uri, "s3://", 5) != 0 || (slash = strchr(uri + 5, '/')) == NULL || slash[1] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid S3 URI \"%s\"", uri),
				 errhint("Use s3://BUCKET/KEY.")));
	*bucket = pnstrdup(uri + 5, slash - (uri + 5));
	*key = pstrdup(slash + 1);
	if (!CmlS3ValidBucket(*bucket))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid bucket name \"%s\" in S3 URI", *bucket)));
	/* curl would squash "." and ".." segments, so that the signed path differs */
	for (p = *key; p != NULL; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
	{
		size_t		len = strcspn(p, "/");

		if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("S3 key \"%s\" contains a \".\" or \"..\" segment", *key)));
	}
	for (p = *key; *p; p++)
		if ((unsigned char) *p < ' ' || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("S3 key contains a control character")));
}

PG_FUNCTION_INFO_V1(s3_get);
/*
 * _s3_get(uri) -> bytea: GET s3://BUCKET/KEY through the configured endpoint
 * and credentials.  Non-superusers may read only the configured bucket (the
 * server's credentials may reach others).
 */
Datum
s3_get(PG_FUNCTION_ARGS)
{
	char	   *uri = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *bucket;
	char	   *key;
	CmlS3Result res;
	bytea	   *data;

	ParseS3Uri(uri, &bucket, &key);
	if (!superuser())
	{
		RequireBucket();
		if (strcmp(bucket, cml_s3_bucket) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("only superusers may read from a bucket other than cinematic_ml.s3_bucket (\"%s\")",
							cml_s3_bucket)));
	}
	memset(&res, 0, sizeof(res));
	data = CmlS3Get(bucket, key, CML_S3_GET_MAX, &res);
	if (data == NULL)
	{
		if (res.interrupted)
			CHECK_FOR_INTERRUPTS();
		ereport(ERROR,
				(errcode(res.http_status == 404 ? ERRCODE_UNDEFINED_OBJECT :
						 res.http_status == 0 ? ERRCODE_CONNECTION_FAILURE :
						 ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not read \"%s\": %s", uri, res.error)));
	}
	PG_RETURN_BYTEA_P(data);
}
