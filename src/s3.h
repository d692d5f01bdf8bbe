/*
 * s3.h — S3 export and import: a libcurl client with AWS SigV4 signing
 *
 * Nothing here raises an ERROR during a transfer or touches the database:
 * callers gather what to send in a short transaction, commit, transfer, and
 * record the result in another transaction (the worker), or accept that the
 * caller's own transaction stays open (export_now).
 *
 * Credentials never live in a GUC value: they come from the server's
 * environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN),
 * else from the AWS shared credentials file named by the superuser-only
 * cinematic_ml.s3_credentials_file (profile $AWS_PROFILE, else "default").
 * They are read afresh for every request, kept in malloc'd memory that is
 * zeroed when the request ends, and never appear in an error text.
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
	/* added by s3.c (keep the fields above first) */
	bool		interrupted;	/* stopped by a cancel, a shutdown or postmaster death */
	char		uri[1024];		/* s3://BUCKET/KEY of the main object of the request */
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

/*
 * Upload one item (one or two objects); fills res; no ereport: an error
 * while preparing the objects (e.g. a damaged model) is caught and returned
 * in res->error before any network call.  When res->interrupted is set the
 * caller should CHECK_FOR_INTERRUPTS().
 */
extern bool CmlExportItemToS3(const CmlExportItem *item, CmlS3Result *res);

/*
 * Requests (s3.c).  They raise no ERROR for anything the network or the
 * server does; only running out of memory can ereport, and then every curl
 * resource and every copy of a credential is still released.
 */
extern bool CmlS3Put(const char *key, const char *body, size_t len,
					 const char *content_type, CmlS3Result *res);
extern bool CmlS3Head(const char *key, CmlS3Result *res);
extern bytea *CmlS3Get(const char *bucket, const char *key, Size max_bytes, CmlS3Result *res);

/* Object key PREFIX/MODEL/FILE (no prefix segment when the prefix is empty) */
extern char *CmlS3ObjectKey(const char *model_name, const char *file);

/* s3://BUCKET/KEY (bucket NULL = the configured bucket) */
extern char *CmlS3Uri(const char *bucket, const char *key);

/* true when a bucket name is acceptable (3-63 of a-z 0-9 . -, starting and ending alphanumeric) */
extern bool CmlS3ValidBucket(const char *name);

/* Lower-case hex SHA-256 (65 bytes with the NUL) via pg_cryptohash; false on failure */
extern bool CmlSha256Hex(const void *data, size_t len, char *hex);

#endif							/* CML_S3_H */
