/*
 * s3.c — S3 requests with libcurl and AWS SigV4: settings, credentials,
 * PUT / HEAD / GET of one object
 *
 * Every request: CURLOPT_AWS_SIGV4 ("aws:amz:REGION:s3") with an explicit
 * x-amz-content-sha256 (the real SHA-256 of the body, from pg_cryptohash),
 * CURLOPT_NOSIGNAL, connect and total timeouts, a progress callback that
 * aborts the transfer on a query cancel, a termination request or the death
 * of the postmaster, and no ereport inside any curl callback.  curl handles,
 * header lists, response buffers and credentials are released in PG_FINALLY,
 * so even an out-of-memory error leaks nothing and leaves no secret behind.
 */
#include "postgres.h"

#include <ctype.h>
#include <curl/curl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "miscadmin.h"
#include "storage/pmsignal.h"
#include "utils/guc.h"
#include "utils/resowner.h"

#include "s3.h"

/* Settings */
char	   *cml_s3_endpoint = NULL;
char	   *cml_s3_region = NULL;
char	   *cml_s3_bucket = NULL;
char	   *cml_s3_prefix = NULL;
bool		cml_s3_path_style = true;
char	   *cml_s3_credentials_file = NULL;
int			cml_s3_connect_timeout_ms = 5000;
int			cml_s3_timeout_ms = 60000;

/* The largest S3 error document kept to extract <Code> and <Message> */
#define S3_ERROR_BODY_MAX (64 * 1024)
/* The largest credentials file read */
#define S3_CREDENTIALS_FILE_MAX (256 * 1024)

/* Credentials for one request, in malloc'd memory zeroed on release */
typedef struct S3Credentials
{
	char	   *access_key;
	char	   *secret_key;
	char	   *session_token;	/* NULL when none */
} S3Credentials;

/* A growable response body (malloc'd: filled inside curl callbacks) */
typedef struct S3Buffer
{
	char	   *data;
	size_t		len;
	size_t		cap;
	size_t		max;
	bool		too_large;
} S3Buffer;

/* The body of an upload, read by curl */
typedef struct S3Upload
{
	const char *data;
	size_t		len;
	size_t		pos;
} S3Upload;

/* State shared with the curl callbacks: plain memory, no palloc */
typedef struct S3Call
{
	S3Buffer	body;
	S3Upload	upload;
	char		etag[128];
	bool		interrupted;
	bool		postmaster_died;
} S3Call;

static bool curl_ready = false;

/* ---------------------------------------------------------------- settings */

/* Check an endpoint: empty, or http(s)://host[:port][/path] without credentials */
static bool
CheckEndpoint(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	const char *host;

	if (v == NULL || v[0] == '\0')
		return true;
	if (strncmp(v, "http://", 7) == 0)
		host = v + 7;
	else if (strncmp(v, "https://", 8) == 0)
		host = v + 8;
	else
	{
		GUC_check_errdetail("The endpoint must start with http:// or https://.");
		return false;
	}
	if (*host == '\0' || *host == '/')
	{
		GUC_check_errdetail("The endpoint has no host.");
		return false;
	}
	for (const char *p = host; *p; p++)
	{
		if (*p == '@')
		{
			GUC_check_errdetail("The endpoint must not contain credentials; use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or cinematic_ml.s3_credentials_file.");
			return false;
		}
		if (*p == '?' || *p == '#' || (unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f)
		{
			GUC_check_errdetail("The endpoint must be a plain URL without query, fragment or spaces.");
			return false;
		}
	}
	return true;
}

/* Check a region name: 1-32 of a-z, 0-9 and - */
static bool
CheckRegion(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	size_t		n = v ? strlen(v) : 0;

	if (n == 0 || n > 32 || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
	{
		GUC_check_errdetail("A region is 1 to 32 lower-case letters, digits or \"-\", e.g. us-east-1.");
		return false;
	}
	return true;
}

/* true when a bucket name is acceptable (3-63 of a-z 0-9 . -, starting and ending alphanumeric) */
bool
CmlS3ValidBucket(const char *v)
{
	size_t		n = strlen(v);

	if (n < 3 || n > 63 || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n)
		return false;
	if (!isalnum((unsigned char) v[0]) || !isalnum((unsigned char) v[n - 1]))
		return false;
	return true;
}

/* Check a bucket name: empty (exports off) or a valid S3 bucket name */
static bool
CheckBucket(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' || CmlS3ValidBucket(*newval))
		return true;
	GUC_check_errdetail("A bucket name is 3 to 63 lower-case letters, digits, \".\" or \"-\", starting and ending with a letter or digit.");
	return false;
}

/* Check a key prefix: segments of A-Z a-z 0-9 _ . - separated by single slashes */
static bool
CheckPrefix(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;
	const char *seg;

	if (v == NULL || v[0] == '\0')
		return true;
	if (strlen(v) > 512 ||
		strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-/") != strlen(v))
	{
		GUC_check_errdetail("The prefix may contain letters, digits, \"_\", \".\", \"-\" and \"/\" (at most 512).");
		return false;
	}
	seg = v;
	for (;;)
	{
		const char *end = strchr(seg, '/');
		size_t		len = end ? (size_t) (end - seg) : strlen(seg);

		if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
		{
			GUC_check_errdetail("The prefix must not start or end with \"/\", nor contain \"//\", \".\" or \"..\" segments.");
			return false;
		}
		if (end == NULL)
			break;
		seg = end + 1;
	}
	return true;
}

/* Check a credentials file name: empty or an absolute path */
static bool
CheckCredentialsFile(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' || (*newval)[0] == '/')
		return true;
	GUC_check_errdetail("The credentials file must be given as an absolute path.");
	return false;
}

/* Define the S3 settings */
void
CmlS3Init(void)
{
	/*
	 * All PGC_SUSET: only a superuser (or a role granted SET on the parameter)
	 * changes where models go; postgresql.conf / ALTER SYSTEM values are
	 * reloaded on SIGHUP, so the worker sees changes without a restart, and a
	 * superuser may still override one in a session (e.g. for export_now).
	 */
	DefineCustomStringVariable("cinematic_ml.s3_endpoint",
							   "S3 endpoint URL, e.g. http://127.0.0.1:7480.",
							   "Empty means AWS: https://s3.REGION.amazonaws.com (path style) or https://BUCKET.s3.REGION.amazonaws.com.",
							   &cml_s3_endpoint,
							   "",
							   PGC_SUSET,
							   0,
							   CheckEndpoint, NULL, NULL);
	DefineCustomStringVariable("cinematic_ml.s3_region",
							   "Region used in the SigV4 signature.",
							   NULL,
							   &cml_s3_region,
							   "us-east-1",
							   PGC_SUSET,
							   0,
							   CheckRegion, NULL, NULL);
	DefineCustomStringVariable("cinematic_ml.s3_bucket",
							   "Bucket that model versions are exported to; empty disables exports.",
							   NULL,
							   &cml_s3_bucket,
							   "",
							   PGC_SUSET,
							   0,
							   CheckBucket, NULL, NULL);
	DefineCustomStringVariable("cinematic_ml.s3_prefix",
							   "Key prefix of exported objects: PREFIX/MODEL/vVERSION.cml.",
							   NULL,
							   &cml_s3_prefix,
							   "cinematic_ml",
							   PGC_SUSET,
							   0,
							   CheckPrefix, NULL, NULL);
	DefineCustomBoolVariable("cinematic_ml.s3_path_style",
							 "Use path-style URLs (ENDPOINT/BUCKET/KEY) rather than virtual-host style.",
							 "S3-compatible servers usually need path style.",
							 &cml_s3_path_style,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("cinematic_ml.s3_credentials_file",
							   "AWS shared credentials file used when the server's environment has no AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.",
							   "Profile $AWS_PROFILE, else default. The file holds the secrets, never this setting.",
							   &cml_s3_credentials_file,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY,
							   CheckCredentialsFile, NULL, NULL);
	DefineCustomIntVariable("cinematic_ml.s3_connect_timeout",
							"Time allowed to connect to the S3 endpoint.",
							NULL,
							&cml_s3_connect_timeout_ms,
							5000, 100, 600000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cinematic_ml.s3_timeout",
							"Time allowed for one S3 request, connection included.",
							NULL,
							&cml_s3_timeout_ms,
							60000, 1000, 3600000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* true when a bucket is configured */
bool
CmlS3Configured(void)
{
	return cml_s3_bucket != NULL && cml_s3_bucket[0] != '\0';
}

/* ---------------------------------------------------------------- helpers */

/* Copy a message into a result's error field (truncated) */
static void
SetError(CmlS3Result *res, const char *fmt,...) pg_attribute_printf(2, 3);

static void
SetError(CmlS3Result *res, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(res->error, sizeof(res->error), fmt, ap);
	va_end(ap);
	res->ok = false;
}

/* Overwrite and free a malloc'd secret */
static void
FreeSecret(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

/* Release credentials */
static void
FreeCredentials(S3Credentials *c)
{
	FreeSecret(c->access_key);
	FreeSecret(c->secret_key);
	FreeSecret(c->session_token);
	c->access_key = c->secret_key = c->session_token = NULL;
}

/* A malloc'd copy of s[0..n) with surrounding blanks and quotes removed; NULL when out of memory */
static char *
TrimmedCopy(const char *s, size_t n)
{
	char	   *r;

	while (n > 0 && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		n--;
	if (n >= 2 && ((s[0] == '"' && s[n - 1] == '"') || (s[0] == '\'' && s[n - 1] == '\'')))
		s++, n -= 2;
	r = malloc(n + 1);
	if (r == NULL)
		return NULL;
	memcpy(r, s, n);
	r[n] = '\0';
	return r;
}

/* Parse an AWS shared credentials file (ini); no palloc, no ereport */
static bool
ParseCredentialsFile(char *text, const char *profile, S3Credentials *c, CmlS3Result *res)
{
	bool		in_profile = false;
	bool		seen_profile = false;
	char	   *line = text;

	while (line != NULL && *line != '\0')
	{
		char	   *next = strchr(line, '\n');
		size_t		len = next ? (size_t) (next - line) : strlen(line);
		char	   *p = line;
		char	   *eq;

		line = next ? next + 1 : NULL;
		while (len > 0 && (*p == ' ' || *p == '\t'))
			p++, len--;
		if (len == 0 || *p == '#' || *p == ';')
			continue;
		if (*p == '[')
		{
			char	   *close = memchr(p, ']', len);
			size_t		nlen;
			char	   *name;

			if (close == NULL)
				continue;
			name = p + 1;
			nlen = close - name;
			while (nlen > 0 && (*name == ' ' || *name == '\t'))
				name++, nlen--;
			while (nlen > 0 && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t'))
				nlen--;
			/* "[profile x]" belongs to the config file, but accept it */
			if (nlen > 8 && strncmp(name, "profile ", 8) == 0)
				name += 8, nlen -= 8;
			in_profile = (nlen == strlen(profile) && strncmp(name, profile, nlen) == 0);
			seen_profile |= in_profile;
			continue;
		}
		if (!in_profile)
			continue;
		eq = memchr(p, '=', len);
		if (eq == NULL)
			continue;
		{
			size_t		klen = eq - p;
			char	  **target = NULL;

			while (klen > 0 && (p[klen - 1] == ' ' || p[klen - 1] == '\t'))
				klen--;
			if (klen == 17 && strncasecmp(p, "aws_access_key_id", 17) == 0)
				target = &c->access_key;
			else if (klen == 21 && strncasecmp(p, "aws_secret_access_key", 21) == 0)
				target = &c->secret_key;
			else if (klen == 17 && strncasecmp(p, "aws_session_token", 17) == 0)
				target = &c->session_token;
			if (target != NULL)
			{
				FreeSecret(*target);
				*target = TrimmedCopy(eq + 1, len - (eq + 1 - p));
				if (*target == NULL)
				{
					SetError(res, "out of memory while reading the S3 credentials");
					return false;
				}
			}
		}
	}
	if (!seen_profile)
	{
		SetError(res, "S3 credentials: profile \"%.64s\" not found in cinematic_ml.s3_credentials_file", profile);
		return false;
	}
	return true;
}

/*
 * Load the credentials: the server's environment first, else the shared
 * credentials file.  Errors name the setting, never a value read.
 */
static bool
LoadCredentials(S3Credentials *c, CmlS3Result *res)
{
	const char *env_key = getenv("AWS_ACCESS_KEY_ID");
	const char *env_secret = getenv("AWS_SECRET_ACCESS_KEY");
	const char *profile = getenv("AWS_PROFILE");

	memset(c, 0, sizeof(*c));
	if (env_key && env_key[0] && env_secret && env_secret[0])
	{
		const char *env_token = getenv("AWS_SESSION_TOKEN");

		c->access_key = strdup(env_key);
		c->secret_key = strdup(env_secret);
		if (env_token && env_token[0])
			c->session_token = strdup(env_token);
		if (!c->access_key || !c->secret_key || (env_token && env_token[0] && !c->session_token))
		{
			FreeCredentials(c);
			SetError(res, "out of memory while reading the S3 credentials");
			return false;
		}
		return true;
	}
	if (cml_s3_credentials_file != NULL && cml_s3_credentials_file[0] != '\0')
	{
		FILE	   *f;
		struct stat st;
		char	   *text;
		size_t		n;
		bool		ok;

		if (profile == NULL || profile[0] == '\0')
			profile = "default";
		f = fopen(cml_s3_credentials_file, "r");
		if (f == NULL)
		{
			SetError(res, "could not open cinematic_ml.s3_credentials_file: %s", strerror(errno));
			return false;
		}
		if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > S3_CREDENTIALS_FILE_MAX)
		{
			fclose(f);
			SetError(res, "cinematic_ml.s3_credentials_file is not a regular file of at most %d bytes",
					 S3_CREDENTIALS_FILE_MAX);
			return false;
		}
		text = malloc(st.st_size + 1);
		if (text == NULL)
		{
			fclose(f);
			SetError(res, "out of memory while reading the S3 credentials");
			return false;
		}
		n = fread(text, 1, st.st_size, f);
		ok = !ferror(f);
		fclose(f);
		text[n] = '\0';
		if (!ok)
			SetError(res, "could not read cinematic_ml.s3_credentials_file");
		else
			ok = ParseCredentialsFile(text, profile, c, res);
		explicit_bzero(text, n);
		free(text);
		if (ok && (c->access_key == NULL || c->access_key[0] == '\0' ||
				   c->secret_key == NULL || c->secret_key[0] == '\0'))
		{
			SetError(res, "S3 credentials: profile \"%.64s\" in cinematic_ml.s3_credentials_file lacks aws_access_key_id or aws_secret_access_key",
					 profile);
			ok = false;
		}
		if (ok && c->session_token != NULL && c->session_token[0] == '\0')
		{
			FreeSecret(c->session_token);
			c->session_token = NULL;
		}
		if (!ok)
			FreeCredentials(c);
		return ok;
	}
	SetError(res, "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the server's environment, or cinematic_ml.s3_credentials_file");
	return false;
}

/* Replace every occurrence of a secret in a result's error by "[redacted]" (defence in depth) */
static void
Redact(CmlS3Result *res, const char *secret)
{
	char		out[sizeof(res->error)];
	size_t		slen;
	size_t		o = 0;
	const char *p = res->error;

	if (secret == NULL || (slen = strlen(secret)) < 4 || strstr(p, secret) == NULL)
		return;
	while (*p && o < sizeof(out) - 1)
	{
		if (strncmp(p, secret, slen) == 0)
		{
			o += strlcpy(out + o, "[redacted]", sizeof(out) - o);
			o = Min(o, sizeof(out) - 1);
			p += slen;
		}
		else
			out[o++] = *p++;
	}
	out[o] = '\0';
	memcpy(res->error, out, sizeof(out));
	explicit_bzero(out, sizeof(out));
}

/* Lower-case hex SHA-256 (65 bytes with the NUL) via pg_cryptohash; false on failure */
bool
CmlSha256Hex(const void *data, size_t len, char *hex)
{
	ResourceOwner saved = CurrentResourceOwner;
	ResourceOwner volatile tmp = NULL;
	pg_cryptohash_ctx *volatile ctx = NULL;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	volatile bool ok = false;

	/*
	 * pg_cryptohash remembers its context in CurrentResourceOwner; outside a
	 * transaction (the worker's transfers) there is none, so lend one.
	 */
	if (saved == NULL)
		tmp = CurrentResourceOwner = ResourceOwnerCreate(NULL, "cinematic_ml sha256");
	PG_TRY();
	{
		ctx = pg_cryptohash_create(PG_SHA256);
		if (ctx != NULL &&
			pg_cryptohash_init(ctx) == 0 &&
			pg_cryptohash_update(ctx, (const uint8 *) data, len) == 0 &&
			pg_cryptohash_final(ctx, digest, sizeof(digest)) == 0)
			ok = true;
	}
	PG_FINALLY();
	{
		if (ctx != NULL)
			pg_cryptohash_free(ctx);
		CurrentResourceOwner = saved;
		if (tmp != NULL)
		{
			ResourceOwnerRelease(tmp, RESOURCE_RELEASE_BEFORE_LOCKS, false, false);
			ResourceOwnerDelete(tmp);
		}
	}
	PG_END_TRY();
	if (!ok)
		return false;
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	return true;
}

/* Object key PREFIX/MODEL/FILE (no prefix segment when the prefix is empty) */
char *
CmlS3ObjectKey(const char *model_name, const char *file)
{
	if (cml_s3_prefix == NULL || cml_s3_prefix[0] == '\0')
		return psprintf("%s/%s", model_name, file);
	return psprintf("%s/%s/%s", cml_s3_prefix, model_name, file);
}

/* s3://BUCKET/KEY (bucket NULL = the configured bucket) */
char *
CmlS3Uri(const char *bucket, const char *key)
{
	return psprintf("s3://%s/%s", bucket ? bucket : cml_s3_bucket, key);
}

/* Append a key, percent-encoding everything but unreserved characters and "/" (as SigV4 expects) */
static void
AppendEncodedKey(StringInfo buf, const char *key)
{
	for (const unsigned char *p = (const unsigned char *) key; *p; p++)
	{
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' || *p == '/')
			appendStringInfoChar(buf, (char) *p);
		else
			appendStringInfo(buf, "%%%02X", *p);
	}
}

/* URL of an object: path style ENDPOINT/BUCKET/KEY, or virtual-host style */
static char *
ObjectUrl(const char *bucket, const char *key)
{
	StringInfoData buf;
	const char *ep = cml_s3_endpoint ? cml_s3_endpoint : "";
	size_t		eplen = strlen(ep);

	initStringInfo(&buf);
	while (eplen > 0 && ep[eplen - 1] == '/')
		eplen--;
	if (eplen == 0)
	{
		if (cml_s3_path_style)
			appendStringInfo(&buf, "https://s3.%s.amazonaws.com/%s/", cml_s3_region, bucket);
		else
			appendStringInfo(&buf, "https://%s.s3.%s.amazonaws.com/", bucket, cml_s3_region);
	}
	else if (cml_s3_path_style)
	{
		appendBinaryStringInfo(&buf, ep, eplen);
		appendStringInfo(&buf, "/%s/", bucket);
	}
	else
	{
		const char *host = strstr(ep, "://") + 3;	/* checked by CheckEndpoint */

		appendBinaryStringInfo(&buf, ep, host - ep);
		appendStringInfo(&buf, "%s.", bucket);
		appendBinaryStringInfo(&buf, host, ep + eplen - host);
		appendStringInfoChar(&buf, '/');
	}
	AppendEncodedKey(&buf, key);
	return buf.data;
}

/* ---------------------------------------------------------------- curl callbacks (no ereport) */

/* Append received bytes to the response buffer, up to its limit */
static size_t
WriteBody(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	S3Call	   *call = (S3Call *) userdata;
	S3Buffer   *b = &call->body;
	size_t		n = size * nmemb;

	if (n > b->max - b->len)
	{
		b->too_large = true;
		return 0;				/* aborts the transfer */
	}
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 16384;
		char	   *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->data, cap);
		if (p == NULL)
			return 0;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* Feed the upload body to curl */
static size_t
ReadUpload(char *buffer, size_t size, size_t nitems, void *userdata)
{
	S3Upload   *u = &((S3Call *) userdata)->upload;
	size_t		n = Min(size * nitems, u->len - u->pos);

	memcpy(buffer, u->data + u->pos, n);
	u->pos += n;
	return n;
}

/* Rewind the upload (curl may resend the body) */
static int
SeekUpload(void *userdata, curl_off_t offset, int origin)
{
	S3Upload   *u = &((S3Call *) userdata)->upload;

	if (origin != SEEK_SET || offset < 0 || (size_t) offset > u->len)
		return CURL_SEEKFUNC_CANTSEEK;
	u->pos = (size_t) offset;
	return CURL_SEEKFUNC_OK;
}

/* Keep the ETag response header */
static size_t
ReadHeader(char *buffer, size_t size, size_t nitems, void *userdata)
{
	S3Call	   *call = (S3Call *) userdata;
	size_t		n = size * nitems;

	if (n > 5 && strncasecmp(buffer, "etag:", 5) == 0)
	{
		const char *v = buffer + 5;
		size_t		len = n - 5;
		size_t		out = 0;

		for (size_t i = 0; i < len && out < sizeof(call->etag) - 1; i++)
		{
			char		c = v[i];

			if (c == '"' || c == ' ' || c == '\t' || c == '\r' || c == '\n')
				continue;
			call->etag[out++] = c;
		}
		call->etag[out] = '\0';
	}
	return n;
}

/* Abort the transfer on a cancel, a termination request or postmaster death */
static int
Progress(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	S3Call	   *call = (S3Call *) clientp;

	if (InterruptPending && (QueryCancelPending || ProcDiePending))
	{
		call->interrupted = true;
		return 1;
	}
	if (!PostmasterIsAlive())
	{
		call->postmaster_died = true;
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- requests */

/* Copy the text of <Tag>...</Tag> from an XML error document (printable ASCII only) */
static void
XmlElement(const char *xml, const char *tag, char *out, size_t outsize)
{
	char		open[32];
	char		close[32];
	const char *start;
	const char *end;
	size_t		o = 0;

	out[0] = '\0';
	if (xml == NULL)
		return;
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	start = strstr(xml, open);
	if (start == NULL)
		return;
	start += strlen(open);
	end = strstr(start, close);
	if (end == NULL)
		return;
	for (const char *p = start; p < end && o < outsize - 1; p++)
		out[o++] = (*p >= ' ' && *p < 0x7f) ? *p : ' ';
	out[o] = '\0';
}

/* Describe a failed HTTP response: status, S3 <Code> and <Message> */
static void
DescribeHttpError(CmlS3Result *res, const char *method, long status, const char *body)
{
	char		code[96];
	char		message[320];

	XmlElement(body, "Code", code, sizeof(code));
	XmlElement(body, "Message", message, sizeof(message));
	if (code[0] == '\0')
	{
		if (status == 404)
			strlcpy(code, "NotFound", sizeof(code));
		else if (status == 403)
			strlcpy(code, "Forbidden", sizeof(code));
	}
	SetError(res, "S3 %s failed: HTTP %ld%s%s%s%s", method, status,
			 code[0] ? " " : "", code, message[0] ? ": " : "", message);
}

/*
 * Perform one request.  body/len: the upload (PUT) or NULL; out: receives the
 * response body of a successful GET (malloc'd, caller frees) or NULL.
 */
static bool
S3Request(const char *method, const char *bucket, const char *key,
		  const char *body, size_t len, const char *content_type,
		  S3Buffer *out, size_t max_body, CmlS3Result *res)
{
	char		payload_hash[PG_SHA256_DIGEST_LENGTH * 2 + 1];
	char	   *url;
	char	   *hdr_hash;
	char	   *volatile hdr_type = NULL;
	char	   *sigv4;
	S3Credentials creds;
	S3Call	   *volatile call = NULL;
	CURL	   *volatile curl = NULL;
	struct curl_slist *volatile headers = NULL;
	char	   *volatile hdr_token = NULL;
	volatile bool ok = false;

	res->ok = false;
	res->http_status = 0;
	res->interrupted = false;
	res->etag[0] = '\0';
	res->error[0] = '\0';
	if (bucket == NULL || bucket[0] == '\0')
	{
		SetError(res, "cinematic_ml.s3_bucket is not set");
		return false;
	}
	if (!CmlSha256Hex(body ? body : "", body ? len : 0, payload_hash))
	{
		SetError(res, "could not compute the SHA-256 of the request body");
		return false;
	}
	url = ObjectUrl(bucket, key);
	hdr_hash = psprintf("x-amz-content-sha256: %s", payload_hash);
	if (content_type)
		hdr_type = psprintf("Content-Type: %s", content_type);
	sigv4 = psprintf("aws:amz:%s:s3", cml_s3_region);

	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		{
			SetError(res, "could not initialise libcurl");
			return false;
		}
		curl_ready = true;
	}
	if (!LoadCredentials(&creds, res))
		return false;

	PG_TRY();
	{
		char		errbuf[CURL_ERROR_SIZE];
		CURLcode	rc;
		struct curl_slist *h;

		call = calloc(1, sizeof(S3Call));
		curl = curl_easy_init();
		if (call == NULL || curl == NULL)
			SetError(res, "could not create an S3 request (out of memory)");
		else
		{
			call->body.max = out ? max_body : S3_ERROR_BODY_MAX;
			call->upload.data = body;
			call->upload.len = body ? len : 0;
			errbuf[0] = '\0';

			h = curl_slist_append(headers, hdr_hash);
			if (h)
				headers = h;
			if (h && hdr_type)
			{
				h = curl_slist_append(headers, hdr_type);
				if (h)
					headers = h;
			}
			if (h && creds.session_token)
			{
				/* the token is a secret too: malloc'd, zeroed afterwards */
				size_t		tlen = strlen("x-amz-security-token: ") + strlen(creds.session_token) + 1;

				hdr_token = malloc(tlen);
				if (hdr_token)
				{
					snprintf(hdr_token, tlen, "x-amz-security-token: %s", creds.session_token);
					h = curl_slist_append(headers, hdr_token);
					if (h)
						headers = h;
				}
				else
					h = NULL;
			}
			if (h == NULL)
				SetError(res, "could not create an S3 request (out of memory)");
			else
			{
				curl_easy_setopt(curl, CURLOPT_URL, url);
				curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
				curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
#if LIBCURL_VERSION_NUM >= 0x075500
				curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
				curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
				curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
				curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) cml_s3_connect_timeout_ms);
				curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) cml_s3_timeout_ms);
				curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sigv4);
				curl_easy_setopt(curl, CURLOPT_USERNAME, creds.access_key);
				curl_easy_setopt(curl, CURLOPT_PASSWORD, creds.secret_key);
				curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
				curl_easy_setopt(curl, CURLOPT_USERAGENT, "cinematic_ml");
				curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
				curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, Progress);
				curl_easy_setopt(curl, CURLOPT_XFERINFODATA, call);
				curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, ReadHeader);
				curl_easy_setopt(curl, CURLOPT_HEADERDATA, call);
				curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteBody);
				curl_easy_setopt(curl, CURLOPT_WRITEDATA, call);
				if (strcmp(method, "PUT") == 0)
				{
					curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
					curl_easy_setopt(curl, CURLOPT_READFUNCTION, ReadUpload);
					curl_easy_setopt(curl, CURLOPT_READDATA, call);
					curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, SeekUpload);
					curl_easy_setopt(curl, CURLOPT_SEEKDATA, call);
					curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t) call->upload.len);
				}
				else if (strcmp(method, "HEAD") == 0)
					curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);

				rc = curl_easy_perform(curl);
				curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &res->http_status);
				strlcpy(res->etag, call->etag, sizeof(res->etag));

				if (call->interrupted || call->postmaster_died)
				{
					res->interrupted = true;
					SetError(res, "S3 %s interrupted: %s", method,
							 call->postmaster_died ? "the postmaster died" : "query canceled or server shutting down");
				}
				else if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && call->body.too_large && res->http_status >= 300))
				{
					if (call->body.too_large)
						SetError(res, "S3 %s failed: the object is larger than %zu bytes", method, max_body);
					else
						SetError(res, "S3 %s failed: %s", method,
								 errbuf[0] ? errbuf : curl_easy_strerror(rc));
				}
				else if (res->http_status < 200 || res->http_status > 299)
					DescribeHttpError(res, method, res->http_status, call->body.data);
				else
				{
					ok = true;
					res->ok = true;
					if (out != NULL)
					{
						*out = call->body;
						call->body.data = NULL;
					}
				}
				/* defence in depth: no secret in an error text, whatever a server echoes */
				Redact(res, creds.secret_key);
				Redact(res, creds.session_token);
			}
		}
	}
	PG_FINALLY();
	{
		if (curl != NULL)
			curl_easy_cleanup(curl);
		if (headers != NULL)
			curl_slist_free_all(headers);
		FreeSecret(hdr_token);
		FreeCredentials(&creds);
		if (call != NULL)
		{
			free(call->body.data);
			free(call);
		}
	}
	PG_END_TRY();
	return ok;
}

/* Upload one object to the configured bucket */
bool
CmlS3Put(const char *key, const char *body, size_t len, const char *content_type, CmlS3Result *res)
{
	bool		ok = S3Request("PUT", cml_s3_bucket, key, body, len, content_type, NULL, 0, res);

	strlcpy(res->uri, CmlS3Uri(NULL, key), sizeof(res->uri));
	return ok;
}

/* Check that an object exists in the configured bucket */
bool
CmlS3Head(const char *key, CmlS3Result *res)
{
	bool		ok = S3Request("HEAD", cml_s3_bucket, key, NULL, 0, NULL, NULL, 0, res);

	strlcpy(res->uri, CmlS3Uri(NULL, key), sizeof(res->uri));
	return ok;
}

/* Download one object: a palloc'd bytea, or NULL with res->error set */
bytea *
CmlS3Get(const char *bucket, const char *key, Size max_bytes, CmlS3Result *res)
{
	S3Buffer	out = {0};
	bytea	   *volatile result = NULL;

	if (!S3Request("GET", bucket, key, NULL, 0, NULL, &out, max_bytes, res))
		return NULL;
	strlcpy(res->uri, CmlS3Uri(bucket, key), sizeof(res->uri));
	PG_TRY();
	{
		result = (bytea *) palloc(VARHDRSZ + out.len);
		SET_VARSIZE(result, VARHDRSZ + out.len);
		if (out.len > 0)
			memcpy(VARDATA(result), out.data, out.len);
	}
	PG_FINALLY();
	{
		free(out.data);
	}
	PG_END_TRY();
	return result;
}
