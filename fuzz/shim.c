/*
 * fuzz/shim.c — just enough of the PostgreSQL backend to run cinematic_ml's
 * model and options code in a libFuzzer process (see shim.h)
 */
#include "postgres.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/jsonapi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "shim.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define SHIM_ASAN 1
#endif
#endif
#ifndef SHIM_ASAN
#define ASAN_POISON_MEMORY_REGION(p, n) ((void) (p), (void) (n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void) (p), (void) (n))
#endif

/* ---------------------------------------------------------------- memory */

#define CHUNK_MAGIC UINT64CONST(0xC41C0FFEEC41C0FF)
#define CXT_MAGIC UINT64CONST(0x5A5A0C0C7E7E1234)

typedef struct ShimCxt ShimCxt;

/* Header before every allocation; poisoned while the caller owns the chunk */
typedef struct ShimChunk
{
	uint64		magic;
	ShimCxt    *cxt;
	struct ShimChunk *prev;
	struct ShimChunk *next;
	Size		size;
	uint64		pad;			/* keeps the payload 16-byte aligned */
} ShimChunk;

struct ShimCxt
{
	uint64		magic;
	const char *name;
	ShimCxt    *parent;
	ShimCxt    *firstchild;
	ShimCxt    *next;			/* sibling */
	ShimCxt    *prev;
	ShimChunk  *chunks;
};

/* TopMemoryContext with two children: the per-input context and ErrorContext */
static ShimCxt FuzzCxt;
static ShimCxt ErrorCxtData;
static ShimCxt TopCxt = {CXT_MAGIC, "TopMemoryContext", NULL, &FuzzCxt, NULL, NULL, NULL};
static ShimCxt FuzzCxt = {CXT_MAGIC, "fuzz input", &TopCxt, NULL, &ErrorCxtData, NULL, NULL};
static ShimCxt ErrorCxtData = {CXT_MAGIC, "ErrorContext", &TopCxt, NULL, NULL, &FuzzCxt, NULL};

MemoryContext CurrentMemoryContext = (MemoryContext) &FuzzCxt;
MemoryContext TopMemoryContext = (MemoryContext) &TopCxt;
MemoryContext ErrorContext = (MemoryContext) &ErrorCxtData;
MemoryContext CurTransactionContext = (MemoryContext) &FuzzCxt;
MemoryContext TopTransactionContext = (MemoryContext) &FuzzCxt;
MemoryContext PortalContext = (MemoryContext) &FuzzCxt;
MemoryContext MessageContext = (MemoryContext) &FuzzCxt;

Size		ShimMaxAlloc = (Size) 256 * 1024 * 1024;

static ShimCxt *
AsCxt(MemoryContext c)
{
	ShimCxt    *cxt = (ShimCxt *) c;

	if (cxt == NULL || cxt->magic != CXT_MAGIC)
	{
		fprintf(stderr, "fuzz shim: invalid memory context %p\n", (void *) c);
		abort();
	}
	return cxt;
}

static void
LinkChild(ShimCxt *parent, ShimCxt *child)
{
	child->parent = parent;
	child->prev = NULL;
	child->next = parent->firstchild;
	if (parent->firstchild)
		parent->firstchild->prev = child;
	parent->firstchild = child;
}

/* Free the chunks of a context and delete its children (the context itself stays) */
static void
CxtReset(ShimCxt *cxt)
{
	while (cxt->firstchild)
		MemoryContextDelete((MemoryContext) cxt->firstchild);
	while (cxt->chunks)
	{
		ShimChunk  *ch = cxt->chunks;

		ASAN_UNPOISON_MEMORY_REGION(ch, sizeof(ShimChunk));
		cxt->chunks = ch->next;
		if (cxt->chunks)
		{
			ASAN_UNPOISON_MEMORY_REGION(cxt->chunks, sizeof(ShimChunk));
			cxt->chunks->prev = NULL;
			ASAN_POISON_MEMORY_REGION(cxt->chunks, sizeof(ShimChunk));
		}
		ch->magic = 0;
		free(ch);
	}
}

void
ShimResetMemory(void)
{
	CxtReset(&FuzzCxt);
	CxtReset(&ErrorCxtData);
	CurrentMemoryContext = (MemoryContext) &FuzzCxt;
}

static void *
ChunkAlloc(MemoryContext context, Size size, int flags)
{
	ShimCxt    *cxt = AsCxt(context);
	ShimChunk  *ch;
	bool		huge = (flags & MCXT_ALLOC_HUGE) != 0;

	if (huge ? !AllocHugeSizeIsValid(size) : !AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	if (size > ShimMaxAlloc)
	{
		if (flags & MCXT_ALLOC_NO_OOM)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu (fuzz shim cap %zu).", size, ShimMaxAlloc)));
	}
	ch = malloc(sizeof(ShimChunk) + size);
	if (ch == NULL)
	{
		if (flags & MCXT_ALLOC_NO_OOM)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu.", size)));
	}
	ch->magic = CHUNK_MAGIC;
	ch->cxt = cxt;
	ch->size = size;
	ch->prev = NULL;
	ch->next = cxt->chunks;
	if (cxt->chunks)
	{
		ASAN_UNPOISON_MEMORY_REGION(cxt->chunks, sizeof(ShimChunk));
		cxt->chunks->prev = ch;
		ASAN_POISON_MEMORY_REGION(cxt->chunks, sizeof(ShimChunk));
	}
	cxt->chunks = ch;
	ASAN_POISON_MEMORY_REGION(ch, sizeof(ShimChunk));
	if (flags & MCXT_ALLOC_ZERO)
		memset(ch + 1, 0, size);
	else
		memset(ch + 1, 0x7F, size);	/* like CLOBBER_FREED_MEMORY: garbage, not zeros */
	return ch + 1;
}

static ShimChunk *
ChunkOf(void *pointer, const char *what)
{
	ShimChunk  *ch = ((ShimChunk *) pointer) - 1;

	if (pointer == NULL)
	{
		fprintf(stderr, "fuzz shim: %s(NULL)\n", what);
		abort();
	}
	ASAN_UNPOISON_MEMORY_REGION(ch, sizeof(ShimChunk));
	if (ch->magic != CHUNK_MAGIC)
	{
		fprintf(stderr, "fuzz shim: %s of a pointer palloc did not return (%p)\n", what, pointer);
		abort();
	}
	return ch;
}

void
pfree(void *pointer)
{
	ShimChunk  *ch = ChunkOf(pointer, "pfree");
	ShimCxt    *cxt = ch->cxt;

	if (ch->prev)
	{
		ASAN_UNPOISON_MEMORY_REGION(ch->prev, sizeof(ShimChunk));
		ch->prev->next = ch->next;
		ASAN_POISON_MEMORY_REGION(ch->prev, sizeof(ShimChunk));
	}
	else
		cxt->chunks = ch->next;
	if (ch->next)
	{
		ASAN_UNPOISON_MEMORY_REGION(ch->next, sizeof(ShimChunk));
		ch->next->prev = ch->prev;
		ASAN_POISON_MEMORY_REGION(ch->next, sizeof(ShimChunk));
	}
	ch->magic = 0;
	free(ch);
}

static void *
Realloc(void *pointer, Size size, int flags)
{
	ShimChunk  *ch = ChunkOf(pointer, "repalloc");
	Size		old = ch->size;
	ShimCxt    *cxt = ch->cxt;
	void	   *p;

	ASAN_POISON_MEMORY_REGION(ch, sizeof(ShimChunk));
	/* always move, so that a stale pointer is a use-after-free ASan sees */
	p = ChunkAlloc((MemoryContext) cxt, size, flags);
	memcpy(p, pointer, Min(old, size));
	pfree(pointer);
	return p;
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return ChunkAlloc(context, size, 0);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return ChunkAlloc(context, size, MCXT_ALLOC_ZERO);
}

void *
MemoryContextAllocZeroAligned(MemoryContext context, Size size)
{
	return ChunkAlloc(context, size, MCXT_ALLOC_ZERO);
}

void *
MemoryContextAllocExtended(MemoryContext context, Size size, int flags)
{
	return ChunkAlloc(context, size, flags);
}

void *
MemoryContextAllocHuge(MemoryContext context, Size size)
{
	return ChunkAlloc(context, size, MCXT_ALLOC_HUGE);
}

void *
palloc(Size size)
{
	return ChunkAlloc(CurrentMemoryContext, size, 0);
}

void *
palloc0(Size size)
{
	return ChunkAlloc(CurrentMemoryContext, size, MCXT_ALLOC_ZERO);
}

void *
palloc_extended(Size size, int flags)
{
	return ChunkAlloc(CurrentMemoryContext, size, flags);
}

void *
repalloc(void *pointer, Size size)
{
	return Realloc(pointer, size, 0);
}

void *
repalloc_huge(void *pointer, Size size)
{
	return Realloc(pointer, size, MCXT_ALLOC_HUGE);
}

void *
repalloc_extended(void *pointer, Size size, int flags)
{
	return Realloc(pointer, size, flags);
}

/* the overflow-checked array allocators of recent 15.x minor releases */
void *
palloc_mul(Size s1, Size s2)
{
	return palloc(mul_size(s1, s2));
}

void *
palloc0_mul(Size s1, Size s2)
{
	return palloc0(mul_size(s1, s2));
}

void *
palloc_mul_extended(Size s1, Size s2, int flags)
{
	return palloc_extended(mul_size(s1, s2), flags);
}

void *
repalloc_mul(void *p, Size s1, Size s2)
{
	return repalloc(p, mul_size(s1, s2));
}

void *
repalloc_mul_extended(void *p, Size s1, Size s2, int flags)
{
	return repalloc_extended(p, mul_size(s1, s2), flags);
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	Size		len = strlen(string) + 1;
	char	   *p = ChunkAlloc(context, len, 0);

	memcpy(p, string, len);
	return p;
}

char *
pstrdup(const char *in)
{
	return MemoryContextStrdup(CurrentMemoryContext, in);
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

MemoryContext
AllocSetContextCreateInternal(MemoryContext parent, const char *name,
							  Size minContextSize, Size initBlockSize, Size maxBlockSize)
{
	ShimCxt    *cxt = calloc(1, sizeof(ShimCxt));

	if (cxt == NULL)
		abort();
	cxt->magic = CXT_MAGIC;
	cxt->name = name;
	LinkChild(parent ? AsCxt(parent) : &TopCxt, cxt);
	return (MemoryContext) cxt;
}

MemoryContext
GenerationContextCreate(MemoryContext parent, const char *name, Size minContextSize,
						Size initBlockSize, Size maxBlockSize)
{
	return AllocSetContextCreateInternal(parent, name, 0, 0, 0);
}

MemoryContext
SlabContextCreate(MemoryContext parent, const char *name, Size blockSize, Size chunkSize)
{
	return AllocSetContextCreateInternal(parent, name, 0, 0, 0);
}

void
MemoryContextReset(MemoryContext context)
{
	CxtReset(AsCxt(context));
}

void
MemoryContextResetOnly(MemoryContext context)
{
	CxtReset(AsCxt(context));
}

void
MemoryContextDelete(MemoryContext context)
{
	ShimCxt    *cxt = AsCxt(context);

	if (cxt == &TopCxt || cxt == &FuzzCxt || cxt == &ErrorCxtData)
	{
		fprintf(stderr, "fuzz shim: MemoryContextDelete of %s\n", cxt->name);
		abort();
	}
	if ((MemoryContext) cxt == CurrentMemoryContext)
	{
		/* the backend would go on allocating in freed memory: report it */
		fprintf(stderr, "fuzz shim: MemoryContextDelete of the current context \"%s\"\n", cxt->name);
		abort();
	}
	CxtReset(cxt);
	if (cxt->prev)
		cxt->prev->next = cxt->next;
	else if (cxt->parent)
		cxt->parent->firstchild = cxt->next;
	if (cxt->next)
		cxt->next->prev = cxt->prev;
	cxt->magic = 0;
	free(cxt);
}

void
MemoryContextSetParent(MemoryContext context, MemoryContext new_parent)
{
	ShimCxt    *cxt = AsCxt(context);

	if (cxt->prev)
		cxt->prev->next = cxt->next;
	else if (cxt->parent)
		cxt->parent->firstchild = cxt->next;
	if (cxt->next)
		cxt->next->prev = cxt->prev;
	LinkChild(AsCxt(new_parent), cxt);
}

/* ---------------------------------------------------------------- sizes */

Size
add_size(Size s1, Size s2)
{
	Size		result = s1 + s2;

	if (result < s1 || result < s2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("requested shared memory size overflows size_t")));
	return result;
}

Size
mul_size(Size s1, Size s2)
{
	Size		result;

	if (s1 == 0 || s2 == 0)
		return 0;
	result = s1 * s2;
	if (result / s2 != s1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("requested shared memory size overflows size_t")));
	return result;
}

/* ---------------------------------------------------------------- strings */

size_t
pvsnprintf(char *buf, size_t len, const char *fmt, va_list args)
{
	int			nprinted = vsnprintf(buf, len, fmt, args);

	if (unlikely(nprinted < 0))
		elog(ERROR, "vsnprintf failed: %m with format string \"%s\"", fmt);
	if ((size_t) nprinted < len)
		return (size_t) nprinted;
	if (unlikely((size_t) nprinted > MaxAllocSize - 1))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("out of memory")));
	return nprinted + 1;
}

char *
psprintf(const char *fmt,...)
{
	int			save_errno = errno;
	size_t		len = 128;

	for (;;)
	{
		char	   *result;
		va_list		args;
		size_t		newlen;

		result = (char *) palloc(len);
		errno = save_errno;
		va_start(args, fmt);
		newlen = pvsnprintf(result, len, fmt, args);
		va_end(args);
		if (newlen < len)
			return result;
		pfree(result);
		len = newlen;
	}
}

StringInfo
makeStringInfo(void)
{
	StringInfo	res = (StringInfo) palloc(sizeof(StringInfoData));

	initStringInfo(res);
	return res;
}

void
initStringInfo(StringInfo str)
{
	int			size = 1024;

	str->data = (char *) palloc(size);
	str->maxlen = size;
	resetStringInfo(str);
}

void
resetStringInfo(StringInfo str)
{
	str->data[0] = '\0';
	str->len = 0;
	str->cursor = 0;
}

int
appendStringInfoVA(StringInfo str, const char *fmt, va_list args)
{
	int			avail;
	size_t		nprinted;

	avail = str->maxlen - str->len;
	if (avail < 16)
		return 32;
	nprinted = pvsnprintf(str->data + str->len, (size_t) avail, fmt, args);
	if (nprinted < (size_t) avail)
	{
		str->len += (int) nprinted;
		return 0;
	}
	str->data[str->len] = '\0';
	return (int) nprinted;
}

void
appendStringInfo(StringInfo str, const char *fmt,...)
{
	int			save_errno = errno;

	for (;;)
	{
		va_list		args;
		int			needed;

		errno = save_errno;
		va_start(args, fmt);
		needed = appendStringInfoVA(str, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(str, needed);
	}
}

void
appendStringInfoString(StringInfo str, const char *s)
{
	appendBinaryStringInfo(str, s, strlen(s));
}

void
appendStringInfoChar(StringInfo str, char ch)
{
	if (str->len + 1 >= str->maxlen)
		enlargeStringInfo(str, 1);
	str->data[str->len] = ch;
	str->len++;
	str->data[str->len] = '\0';
}

void
appendStringInfoSpaces(StringInfo str, int count)
{
	if (count > 0)
	{
		enlargeStringInfo(str, count);
		while (--count >= 0)
			str->data[str->len++] = ' ';
		str->data[str->len] = '\0';
	}
}

void
appendBinaryStringInfo(StringInfo str, const char *data, int datalen)
{
	enlargeStringInfo(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
	str->data[str->len] = '\0';
}

void
appendBinaryStringInfoNT(StringInfo str, const char *data, int datalen)
{
	enlargeStringInfo(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
}

void
enlargeStringInfo(StringInfo str, int needed)
{
	int			newlen;

	if (needed < 0)
		elog(ERROR, "invalid string enlargement request size: %d", needed);
	if (((Size) needed) >= (MaxAllocSize - (Size) str->len))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("out of memory"),
				 errdetail("Cannot enlarge string buffer containing %d bytes by %d more bytes.",
						   str->len, needed)));
	needed += str->len + 1;
	if (needed <= str->maxlen)
		return;
	newlen = 2 * str->maxlen;
	while (needed > newlen)
		newlen = 2 * newlen;
	if (newlen > (int) MaxAllocSize)
		newlen = (int) MaxAllocSize;
	str->data = (char *) repalloc(str->data, newlen);
	str->maxlen = newlen;
}

/* ---------------------------------------------------------------- errors */

sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;
volatile sig_atomic_t InterruptPending = false;
volatile sig_atomic_t QueryCancelPending = false;
volatile sig_atomic_t ProcDiePending = false;
volatile uint32 InterruptHoldoffCount = 0;
volatile uint32 QueryCancelHoldoffCount = 0;
volatile uint32 CritSectionCount = 0;
int			work_mem = 4096;
int			maintenance_work_mem = 65536;
bool		IsUnderPostmaster = false;

void
ProcessInterrupts(void)
{
	InterruptPending = false;
}

typedef struct ShimError
{
	int			elevel;
	int			sqlerrcode;
	char		message[512];
	bool		active;
} ShimError;

static ShimError cur_error;
static char last_error[600];
static int	last_sqlstate;

/* Format into a throw-away buffer, so that every vararg is read as the format says */
static void
FormatInto(char *dst, size_t dstlen, const char *fmt, va_list args)
{
	char	   *tmp;
	size_t		len = 256;

	for (;;)
	{
		va_list		copy;
		size_t		need;

		tmp = MemoryContextAlloc(ErrorContext, len);
		va_copy(copy, args);
		need = pvsnprintf(tmp, len, fmt, copy);
		va_end(copy);
		if (need < len)
			break;
		len = need;
	}
	if (dst)
		strlcpy(dst, tmp, dstlen);
}

bool
errstart(int elevel, const char *domain)
{
	if (elevel < ERROR)
	{
		/* still formatted (errfinish does nothing with it) */
		cur_error.elevel = elevel;
		cur_error.sqlerrcode = 0;
		cur_error.active = true;
		return true;
	}
	if (cur_error.active && cur_error.elevel >= ERROR)
	{
		fprintf(stderr, "fuzz shim: error raised while reporting an error\n");
		abort();
	}
	cur_error.elevel = elevel;
	cur_error.sqlerrcode = 0;
	cur_error.message[0] = '\0';
	cur_error.active = true;
	return true;
}

/* DEBUG messages are never interesting here (the server's answer at the default level) */
bool
message_level_is_interesting(int elevel)
{
	return elevel >= WARNING;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

int
errcode(int sqlerrcode)
{
	cur_error.sqlerrcode = sqlerrcode;
	return 0;
}

int
errmsg(const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	FormatInto(cur_error.message, sizeof(cur_error.message), fmt, args);
	va_end(args);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	FormatInto(cur_error.message, sizeof(cur_error.message), fmt, args);
	va_end(args);
	return 0;
}

#define DISCARD_FORMAT(name) \
int \
name(const char *fmt,...) \
{ \
	va_list		args; \
	va_start(args, fmt); \
	FormatInto(NULL, 0, fmt, args); \
	va_end(args); \
	return 0; \
}
DISCARD_FORMAT(errdetail)
DISCARD_FORMAT(errdetail_internal)
DISCARD_FORMAT(errdetail_log)
DISCARD_FORMAT(errhint)
DISCARD_FORMAT(errcontext_msg)

int
errmsg_plural(const char *fmt_singular, const char *fmt_plural, unsigned long n,...)
{
	va_list		args;

	va_start(args, n);
	FormatInto(cur_error.message, sizeof(cur_error.message), n == 1 ? fmt_singular : fmt_plural, args);
	va_end(args);
	return 0;
}

int
errdetail_plural(const char *fmt_singular, const char *fmt_plural, unsigned long n,...)
{
	va_list		args;

	va_start(args, n);
	FormatInto(NULL, 0, n == 1 ? fmt_singular : fmt_plural, args);
	va_end(args);
	return 0;
}

int
set_errcontext_domain(const char *domain)
{
	return 0;
}

int
errposition(int cursorpos)
{
	return 0;
}

int
errcode_for_file_access(void)
{
	cur_error.sqlerrcode = ERRCODE_IO_ERROR;
	return 0;
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	int			elevel = cur_error.elevel;

	cur_error.active = false;
	if (elevel < ERROR)
		return;
	if (cur_error.sqlerrcode == 0)
		cur_error.sqlerrcode = ERRCODE_INTERNAL_ERROR;
	snprintf(last_error, sizeof(last_error), "%s (%s:%d %s)", cur_error.message,
			 filename ? filename : "?", lineno, funcname ? funcname : "?");
	last_sqlstate = cur_error.sqlerrcode;
	if (elevel > ERROR)
	{
		/* FATAL or PANIC from a SQL function ends the backend: a crash for us */
		fprintf(stderr, "fuzz shim: elevel %d: %s\n", elevel, last_error);
		abort();
	}
	if (PG_exception_stack == NULL)
	{
		fprintf(stderr, "fuzz shim: ERROR outside ShimTry: %s\n", last_error);
		abort();
	}
	error_context_stack = NULL;
	siglongjmp(*PG_exception_stack, 1);
}

void
pg_re_throw(void)
{
	if (PG_exception_stack == NULL)
		abort();
	siglongjmp(*PG_exception_stack, 1);
}

void
FlushErrorState(void)
{
	cur_error.active = false;
}

int
ShimTry(void (*fn) (void *), void *arg)
{
	sigjmp_buf	local;
	sigjmp_buf *save = PG_exception_stack;
	MemoryContext savecxt = CurrentMemoryContext;
	volatile int rc = 0;

	cur_error.active = false;
	last_error[0] = '\0';
	if (sigsetjmp(local, 0) == 0)
	{
		PG_exception_stack = &local;
		fn(arg);
	}
	else
	{
		rc = last_sqlstate;
		CurrentMemoryContext = savecxt;
	}
	PG_exception_stack = save;
	InterruptPending = false;
	return rc;
}

const char *
ShimLastError(void)
{
	return last_error;
}

const char *
ShimSqlstateText(int sqlstate)
{
	static char buf[6];

	for (int i = 0; i < 5; i++)
	{
		buf[i] = PGUNSIXBIT(sqlstate);
		sqlstate >>= 6;
	}
	buf[5] = '\0';
	return buf;
}

void
ShimExpectSqlstate(int sqlstate, const int *allowed, const char *what)
{
	static int	verbose = -1;

	if (verbose < 0)
		verbose = getenv("CML_FUZZ_VERBOSE") != NULL;
	if (verbose)
		fprintf(stderr, "fuzz: %s: %s%s%s\n", what, sqlstate ? ShimSqlstateText(sqlstate) : "ok",
				sqlstate ? " " : "", sqlstate ? ShimLastError() : "");
	if (sqlstate == 0)
		return;
	for (const int *a = allowed; *a; a++)
		if (*a == sqlstate)
			return;
	fprintf(stderr, "fuzz: %s raised unexpected SQLSTATE %s: %s\n", what,
			ShimSqlstateText(sqlstate), ShimLastError());
	abort();
}

/* ---------------------------------------------------------------- CRC-32C */

static uint32 crc_table[256];

uint32
ShimCrc32c(const void *data, size_t len)
{
	return pg_comp_crc32c(0xFFFFFFFF, data, len) ^ 0xFFFFFFFF;
}

static pg_crc32c
ShimCompCrc32c(pg_crc32c crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	if (crc_table[1] == 0)
		for (uint32 i = 0; i < 256; i++)
		{
			uint32		c = i;

			for (int k = 0; k < 8; k++)
				c = (c & 1) ? (c >> 1) ^ 0x82F63B78 : c >> 1;
			crc_table[i] = c;
		}
	while (len-- > 0)
		crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return crc;
}

pg_crc32c	(*pg_comp_crc32c) (pg_crc32c crc, const void *data, size_t len) = ShimCompCrc32c;

/* ---------------------------------------------------------------- fmgr */

struct varlena *
pg_detoast_datum(struct varlena *datum)
{
	if (VARATT_IS_EXTERNAL(datum) || VARATT_IS_COMPRESSED(datum))
		elog(ERROR, "fuzz shim: toasted datum");
	if (VARATT_IS_SHORT(datum))
	{
		Size		len = VARSIZE_SHORT(datum) - VARHDRSZ_SHORT;
		struct varlena *copy = palloc(len + VARHDRSZ);

		SET_VARSIZE(copy, len + VARHDRSZ);
		memcpy(VARDATA(copy), VARDATA_SHORT(datum), len);
		return copy;
	}
	return datum;
}

struct varlena *
pg_detoast_datum_packed(struct varlena *datum)
{
	if (VARATT_IS_EXTERNAL(datum) || VARATT_IS_COMPRESSED(datum))
		elog(ERROR, "fuzz shim: toasted datum");
	return datum;
}

struct varlena *
pg_detoast_datum_copy(struct varlena *datum)
{
	Size		len;
	struct varlena *copy;

	datum = pg_detoast_datum(datum);
	len = VARSIZE(datum);
	copy = palloc(len);
	memcpy(copy, datum, len);
	return copy;
}

Datum
ShimCall(PGFunction fn, int nargs, const Datum *args, bool *isnull)
{
	LOCAL_FCINFO(fcinfo, FUNC_MAX_ARGS);
	FmgrInfo	flinfo;
	Datum		result;

	memset(&flinfo, 0, sizeof(flinfo));
	flinfo.fn_addr = fn;
	flinfo.fn_nargs = nargs;
	flinfo.fn_strict = true;
	flinfo.fn_mcxt = CurrentMemoryContext;
	InitFunctionCallInfoData(*fcinfo, &flinfo, nargs, InvalidOid, NULL, NULL);
	for (int i = 0; i < nargs; i++)
	{
		fcinfo->args[i].value = args[i];
		fcinfo->args[i].isnull = false;
	}
	result = fn(fcinfo);
	*isnull = fcinfo->isnull;
	return result;
}

Datum
DirectFunctionCall1Coll(PGFunction func, Oid collation, Datum arg1)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	result = (*func) (fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "function %p returned NULL", (void *) func);
	return result;
}

Datum
DirectFunctionCall2Coll(PGFunction func, Oid collation, Datum arg1, Datum arg2)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 2, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = arg2;
	fcinfo->args[1].isnull = false;
	result = (*func) (fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "function %p returned NULL", (void *) func);
	return result;
}

/* ---------------------------------------------------------------- jsonb */

/*
 * The server's jsonb is a binary tree built by jsonb_in from the text; the
 * shim keeps the parsed tree instead and hands out a varlena whose root
 * header carries the real JB_FOBJECT / JB_FARRAY / JB_FSCALAR flags (so
 * JB_ROOT_IS_* work) followed by a pointer to the tree.  Objects are
 * canonicalised as jsonb does: keys sorted by (length, bytes), a repeated key
 * keeps its last value.  Numbers keep their text; numeric_float8 converts it
 * as numeric_out + float8in would.
 */
typedef struct SJNode
{
	enum jbvType type;			/* jbvNull, jbvString, jbvNumeric, jbvBool, jbvArray, jbvObject */
	char	   *str;			/* string, or number text */
	int			len;
	bool		boolean;
	bool		rawScalar;		/* root scalar, wrapped in a one-element array */
	Numeric		numeric;
	int			n;				/* elements or pairs */
	int			cap;
	char	  **keys;
	int		   *keylens;
	int		   *order;
	struct SJNode **vals;
	struct SJNode *parent;
	char	   *pending_key;	/* object: key waiting for its value */
} SJNode;

typedef struct SJParse
{
	SJNode	   *root;
	SJNode	   *cur;
	int			depth;
} SJParse;

static SJNode *
NewNode(enum jbvType type)
{
	SJNode	   *n = palloc0(sizeof(SJNode));

	n->type = type;
	return n;
}

static void
AddChild(SJParse *ps, SJNode *child)
{
	SJNode	   *p = ps->cur;

	if (p == NULL)
	{
		ps->root = child;
		return;
	}
	if (p->n == p->cap)
	{
		int			cap = p->cap ? 2 * p->cap : 4;
		SJNode	  **vals = palloc(sizeof(SJNode *) * cap);
		char	  **keys = palloc(sizeof(char *) * cap);
		int		   *keylens = palloc(sizeof(int) * cap);
		int		   *order = palloc(sizeof(int) * cap);

		if (p->n)
		{
			memcpy(vals, p->vals, sizeof(SJNode *) * p->n);
			memcpy(keys, p->keys, sizeof(char *) * p->n);
			memcpy(keylens, p->keylens, sizeof(int) * p->n);
			memcpy(order, p->order, sizeof(int) * p->n);
		}
		p->vals = vals;
		p->keys = keys;
		p->keylens = keylens;
		p->order = order;
		p->cap = cap;
	}
	p->vals[p->n] = child;
	p->keys[p->n] = p->pending_key;
	p->keylens[p->n] = p->pending_key ? (int) strlen(p->pending_key) : 0;
	p->order[p->n] = p->n;
	p->n++;
	p->pending_key = NULL;
}

static void
SJObjectStart(void *state)
{
	SJParse    *ps = state;
	SJNode	   *n = NewNode(jbvObject);

	if (++ps->depth > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("stack depth limit exceeded")));
	AddChild(ps, n);
	n->parent = ps->cur;
	ps->cur = n;
}

static void
SJArrayStart(void *state)
{
	SJParse    *ps = state;
	SJNode	   *n = NewNode(jbvArray);

	if (++ps->depth > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("stack depth limit exceeded")));
	AddChild(ps, n);
	n->parent = ps->cur;
	ps->cur = n;
}

static int
KeyCmp(const SJNode *o, int a, int b)
{
	if (o->keylens[a] != o->keylens[b])
		return o->keylens[a] < o->keylens[b] ? -1 : 1;
	return memcmp(o->keys[a], o->keys[b], o->keylens[a]);
}

static void
SJObjectEnd(void *state)
{
	SJParse    *ps = state;
	SJNode	   *o = ps->cur;
	int			w = 0;

	/* insertion sort by (key length, key bytes, later first), then keep the first of each key */
	for (int i = 1; i < o->n; i++)
		for (int j = i; j > 0; j--)
		{
			int			c = KeyCmp(o, j - 1, j);

			if (c < 0 || (c == 0 && o->order[j - 1] > o->order[j]))
				break;
			{
				SJNode	   *tv = o->vals[j];
				char	   *tk = o->keys[j];
				int			tl = o->keylens[j];
				int			to = o->order[j];

				o->vals[j] = o->vals[j - 1];
				o->keys[j] = o->keys[j - 1];
				o->keylens[j] = o->keylens[j - 1];
				o->order[j] = o->order[j - 1];
				o->vals[j - 1] = tv;
				o->keys[j - 1] = tk;
				o->keylens[j - 1] = tl;
				o->order[j - 1] = to;
			}
		}
	for (int i = 0; i < o->n; i++)
	{
		if (w > 0 && KeyCmp(o, w - 1, i) == 0)
			continue;
		o->vals[w] = o->vals[i];
		o->keys[w] = o->keys[i];
		o->keylens[w] = o->keylens[i];
		o->order[w] = o->order[i];
		w++;
	}
	o->n = w;
	ps->cur = o->parent;
	ps->depth--;
}

static void
SJArrayEnd(void *state)
{
	SJParse    *ps = state;

	ps->cur = ps->cur->parent;
	ps->depth--;
}

static void
SJFieldStart(void *state, char *fname, bool isnull)
{
	SJParse    *ps = state;

	ps->cur->pending_key = fname;
}

/* numeric_in's limit on the exponent of a number (|e| > 2 * NUMERIC_MAX_PRECISION) */
static void
CheckNumericText(const char *s)
{
	const char *e = strpbrk(s, "eE");
	long		exp = 0;
	bool		neg = false;

	if (e == NULL)
		return;
	e++;
	if (*e == '+' || *e == '-')
		neg = *e++ == '-';
	for (; *e >= '0' && *e <= '9'; e++)
		if (exp < 100000)
			exp = exp * 10 + (*e - '0');
	if (exp > 2000)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value overflows numeric format")));
	(void) neg;
}

static void
SJScalar(void *state, char *token, JsonTokenType tokentype)
{
	SJParse    *ps = state;
	SJNode	   *n;

	switch (tokentype)
	{
		case JSON_TOKEN_STRING:
			n = NewNode(jbvString);
			n->str = token;
			n->len = (int) strlen(token);
			break;
		case JSON_TOKEN_NUMBER:
			{
				Size		len = strlen(token);
				struct varlena *num = palloc(VARHDRSZ + len + 1);

				CheckNumericText(token);
				n = NewNode(jbvNumeric);
				n->str = token;
				n->len = (int) len;
				SET_VARSIZE(num, VARHDRSZ + len + 1);
				memcpy(VARDATA(num), token, len + 1);
				n->numeric = (Numeric) num;
				break;
			}
		case JSON_TOKEN_TRUE:
		case JSON_TOKEN_FALSE:
			n = NewNode(jbvBool);
			n->boolean = tokentype == JSON_TOKEN_TRUE;
			break;
		default:
			n = NewNode(jbvNull);
			break;
	}
	if (ps->cur == NULL)
	{
		/* a root scalar is stored as a one-element raw-scalar array */
		SJNode	   *arr = NewNode(jbvArray);

		arr->rawScalar = true;
		ps->root = arr;
		ps->cur = arr;
		AddChild(ps, n);
		ps->cur = NULL;
		return;
	}
	AddChild(ps, n);
}

/* The fake container of a node: the header word, then (unaligned) the node pointer */
#define SJ_CONTAINER_SIZE (sizeof(uint32) + sizeof(SJNode *))

static JsonbContainer *
ContainerOf(SJNode *n)
{
	char	   *c = palloc(SJ_CONTAINER_SIZE);
	uint32		header = (uint32) n->n;

	if (n->type == jbvObject)
		header |= JB_FOBJECT;
	else
		header |= JB_FARRAY | (n->rawScalar ? JB_FSCALAR : 0);
	memcpy(c, &header, sizeof(uint32));
	memcpy(c + sizeof(uint32), &n, sizeof(SJNode *));
	return (JsonbContainer *) c;
}

static SJNode *
NodeOf(const JsonbContainer *c)
{
	SJNode	   *n;

	memcpy(&n, (const char *) c + sizeof(uint32), sizeof(SJNode *));
	return n;
}

Jsonb *
ShimJsonbFromText(const char *text, int len)
{
	char	   *copy = pnstrdup(text, len);
	JsonLexContext *lex;
	JsonSemAction sem;
	SJParse		ps = {0};
	JsonParseErrorType rc;
	Jsonb	   *jb;
	JsonbContainer *root;

	len = (int) strlen(copy);
	if (pg_encoding_verifymbstr(PG_UTF8, copy, len) != len)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("invalid byte sequence for encoding \"UTF8\"")));
	lex = makeJsonLexContextCstringLen(copy, len, PG_UTF8, true);
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &ps;
	sem.object_start = SJObjectStart;
	sem.object_end = SJObjectEnd;
	sem.array_start = SJArrayStart;
	sem.array_end = SJArrayEnd;
	sem.object_field_start = SJFieldStart;
	sem.scalar = SJScalar;
	rc = pg_parse_json(lex, &sem);
	if (rc != JSON_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type json"),
				 errdetail("JsonParseErrorType %d near byte %d.", (int) rc,
						   (int) (lex->token_start ? lex->token_start - lex->input : 0))));
	if (ps.root == NULL)
		elog(ERROR, "fuzz shim: no JSON value");
	root = ContainerOf(ps.root);
	jb = palloc(VARHDRSZ + SJ_CONTAINER_SIZE);
	SET_VARSIZE(jb, VARHDRSZ + SJ_CONTAINER_SIZE);
	memcpy(&jb->root, root, SJ_CONTAINER_SIZE);
	return jb;
}

static void
CheckNumberToken(void *state, char *token, JsonTokenType tokentype)
{
	if (tokentype == JSON_TOKEN_NUMBER)
		CheckNumericText(token);
}

/*
 * jsonb_in as the SQL functions call it on the JSON text they build: the text
 * must pass PostgreSQL's JSON parser (and numeric_in's exponent limit), else
 * 22P02 / 22003 as in the server.  Only validated: returns an empty object.
 */
Datum
jsonb_in(PG_FUNCTION_ARGS)
{
	char	   *json = PG_GETARG_CSTRING(0);
	int			len = (int) strlen(json);
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType rc;

	if (pg_encoding_verifymbstr(PG_UTF8, json, len) != len)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("invalid byte sequence for encoding \"UTF8\"")));
	lex = makeJsonLexContextCstringLen(json, len, PG_UTF8, false);
	memset(&sem, 0, sizeof(sem));
	sem.scalar = CheckNumberToken;
	rc = pg_parse_json(lex, &sem);
	if (rc != JSON_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type json"),
				 errdetail("JsonParseErrorType %d near byte %d.", (int) rc,
						   (int) (lex->token_start ? lex->token_start - lex->input : 0))));
	PG_RETURN_POINTER(ShimJsonbFromText("{}", 2));
}

JsonbIterator *
JsonbIteratorInit(JsonbContainer *container)
{
	JsonbIterator *it = palloc0(sizeof(JsonbIterator));
	SJNode	   *n = NodeOf(container);

	it->container = container;
	it->nElems = n->n;
	it->isScalar = n->rawScalar;
	it->curIndex = 0;
	it->state = n->type == jbvObject ? JBI_OBJECT_START : JBI_ARRAY_START;
	return it;
}

static void
FillValue(SJNode *n, JsonbValue *v)
{
	v->type = n->type;
	switch (n->type)
	{
		case jbvString:
			v->val.string.val = n->str;
			v->val.string.len = n->len;
			break;
		case jbvNumeric:
			v->val.numeric = n->numeric;
			break;
		case jbvBool:
			v->val.boolean = n->boolean;
			break;
		case jbvNull:
			break;
		default:
			v->type = jbvBinary;
			v->val.binary.data = ContainerOf(n);
			v->val.binary.len = (int) SJ_CONTAINER_SIZE;
			break;
	}
}

JsonbIteratorToken
JsonbIteratorNext(JsonbIterator **it, JsonbValue *val, bool skipNested)
{
	SJNode	   *n;
	SJNode	   *child;

	if (*it == NULL)
		return WJB_DONE;
recurse:
	n = NodeOf((*it)->container);
	switch ((*it)->state)
	{
		case JBI_ARRAY_START:
			val->type = jbvArray;
			val->val.array.nElems = n->n;
			val->val.array.rawScalar = n->rawScalar;
			val->val.array.elems = NULL;
			(*it)->state = JBI_ARRAY_ELEM;
			return WJB_BEGIN_ARRAY;
		case JBI_ARRAY_ELEM:
			if ((*it)->curIndex >= n->n)
			{
				JsonbIterator *parent = (*it)->parent;

				pfree(*it);
				*it = parent;
				return WJB_END_ARRAY;
			}
			child = n->vals[(*it)->curIndex++];
			FillValue(child, val);
			if (val->type == jbvBinary && !skipNested)
			{
				JsonbIterator *c = JsonbIteratorInit(val->val.binary.data);

				c->parent = *it;
				*it = c;
				goto recurse;
			}
			return WJB_ELEM;
		case JBI_OBJECT_START:
			val->type = jbvObject;
			val->val.object.nPairs = n->n;
			val->val.object.pairs = NULL;
			(*it)->state = JBI_OBJECT_KEY;
			return WJB_BEGIN_OBJECT;
		case JBI_OBJECT_KEY:
			if ((*it)->curIndex >= n->n)
			{
				JsonbIterator *parent = (*it)->parent;

				pfree(*it);
				*it = parent;
				return WJB_END_OBJECT;
			}
			val->type = jbvString;
			val->val.string.val = n->keys[(*it)->curIndex];
			val->val.string.len = n->keylens[(*it)->curIndex];
			(*it)->state = JBI_OBJECT_VALUE;
			return WJB_KEY;
		case JBI_OBJECT_VALUE:
			(*it)->state = JBI_OBJECT_KEY;
			child = n->vals[(*it)->curIndex++];
			FillValue(child, val);
			if (val->type == jbvBinary && !skipNested)
			{
				JsonbIterator *c = JsonbIteratorInit(val->val.binary.data);

				c->parent = *it;
				*it = c;
				goto recurse;
			}
			return WJB_VALUE;
	}
	elog(ERROR, "fuzz shim: bad iterator state");
	return WJB_DONE;
}

/* numeric_float8 of a shim number: numeric_out then float8in */
Datum
numeric_float8(PG_FUNCTION_ARGS)
{
	struct varlena *num = (struct varlena *) PG_GETARG_POINTER(0);
	const char *s = VARDATA(num);
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0')
		elog(ERROR, "fuzz shim: bad number text \"%s\"", s);
	if (errno == ERANGE && (v == 0.0 || isinf(v)))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("\"%s\" is out of range for type double precision", s)));
	if (v == 0.0)
		v = 0.0;				/* numeric has no negative zero */
	PG_RETURN_FLOAT8(v);
}
