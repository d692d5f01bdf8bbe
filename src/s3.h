/*
 * s3.h — S3 export and import: a libcurl client with AWS SigV4 signing
 *
 * Nothing here raises an ERROR during a transfer or touches the database:
 * callers gather what to send in a short transaction, commit, transfer, and
 * record the result in another transaction (the worker), or accept that the
 * caller's own transaction stays open (export_now).
 */
#ifndef CML_S3_H
#define CML_S3_H

#include "lib/stringinfo.h"

/* Settings (GUCs, defined by CmlS3Init) */
extern char *cml_s3_endpoint;		/* e.g. http://127.0.0.1:7480; empty = AWS */
extern char *cml_s3_region;
extern char *cml_s3_bucket;
extern char *cml_s3_prefix;
extern bool cml_s3_path_style;
extern char *cml_s3_credentials_file;	/* superuser-only */
extern int	cml_s3_connect_timeout_ms;
extern int	cml_s3_timeout_ms;

/* Outcome of one request; error never contains a credential */
typedef struct CmlS3Result
{
	bool		ok;
	long		http_status;	/* 0 when no response */
	char		etag[128];
	char		error[512];
} CmlS3Result;

/* One version to export: everything needed, gathered beforehand */
typedef struct CmlExportItem
{
	const char *model_name;
	int32		version;
	const char *kind;			/* "version" (vN.cml + vN.zones.json) or "latest" (latest.json) */
	const bytea *model;			/* the model bytea (kind "version") */
	const char *metrics_json;	/* model_versions.metrics as JSON text */
	const char *sha256;
	const char *created_at_utc; /* ISO 8601, UTC */
} CmlExportItem;

extern void CmlS3Init(void);

/* true when a bucket is configured */
extern bool CmlS3Configured(void);

/* Upload one item (one or two objects); fills res; no ereport */
extern bool CmlExportItemToS3(const CmlExportItem *item, CmlS3Result *res);

#endif							/* CML_S3_H */
