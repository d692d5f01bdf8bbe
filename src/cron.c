/*
 * cron.c — five-field cron expressions for schedules (evaluated in UTC)
 *
 * minute hour day-of-month month day-of-week; each field is "*", a number,
 * a range "a-b", a step "*\/n" or "a-b/n", or a comma-separated list of
 * those.  Day of week 0 and 7 are Sunday.  When both day fields are
 * restricted a day matches either (the classic cron rule).
 */
#include "postgres.h"

#include "fmgr.h"
#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

typedef struct CronSpec
{
	bool		minute[60];
	bool		hour[24];
	bool		dom[32];
	bool		month[13];
	bool		dow[8];
	bool		dom_star;
	bool		dow_star;
} CronSpec;

/* Raise the error for a malformed expression */
static void
CronError(const char *expr, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid cron expression \"%s\": %s", expr, what),
			 errhint("Use five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * *'.")));
}

/* Parse a whole number in [lo, hi] at *p */
static int
CronNumber(const char **p, int lo, int hi, const char *expr, const char *field)
{
	long		v = 0;
	int			digits = 0;

	while (**p >= '0' && **p <= '9')
	{
		v = v * 10 + (**p - '0');
		(*p)++;
		if (++digits > 4)
			break;
	}
	if (digits == 0 || v < lo || v > hi)
		CronError(expr, psprintf("the %s field needs numbers from %d to %d", field, lo, hi));
	return (int) v;
}

/* Parse one field into set[lo..hi]; returns true when the field is "*" */
static bool
CronField(const char **p, bool *set, int lo, int hi, const char *expr, const char *field)
{
	bool		star = false;

	while (**p == ' ' || **p == '\t')
		(*p)++;
	if (**p == '\0')
		CronError(expr, "fewer than five fields");
	for (;;)
	{
		int			a,
					b,
					step = 1;

		if (**p == '*')
		{
			(*p)++;
			a = lo;
			b = hi;
			star = true;
		}
		else
		{
			a = CronNumber(p, lo, hi, expr, field);
			b = a;
			if (**p == '-')
			{
				(*p)++;
				b = CronNumber(p, lo, hi, expr, field);
				if (b < a)
					CronError(expr, psprintf("the range %d-%d in the %s field is empty", a, b, field));
			}
		}
		if (**p == '/')
		{
			(*p)++;
			step = CronNumber(p, 1, hi, expr, field);
			star = false;
		}
		for (int v = a; v <= b; v += step)
			set[v] = true;
		if (**p != ',')
			break;
		(*p)++;
		star = false;
	}
	if (**p != ' ' && **p != '\t' && **p != '\0')
		CronError(expr, psprintf("unexpected character '%c' in the %s field", **p, field));
	return star;
}

/* Parse a whole expression */
static void
CronParse(const char *expr, CronSpec *c)
{
	const char *p = expr;

	memset(c, 0, sizeof(CronSpec));
	CronField(&p, c->minute, 0, 59, expr, "minute");
	CronField(&p, c->hour, 0, 23, expr, "hour");
	c->dom_star = CronField(&p, c->dom, 1, 31, expr, "day-of-month");
	CronField(&p, c->month, 1, 12, expr, "month");
	c->dow_star = CronField(&p, c->dow, 0, 7, expr, "day-of-week");
	if (c->dow[7])
		c->dow[0] = true;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '\0')
		CronError(expr, "more than five fields");
}

/* Does the day (UTC fields) match the day rules? */
static bool
CronDayMatches(const CronSpec *c, const struct pg_tm *tm)
{
	int			wday = j2day(date2j(tm->tm_year, tm->tm_mon, tm->tm_mday));
	bool		d = c->dom[tm->tm_mday];
	bool		w = c->dow[wday];

	if (c->dom_star || c->dow_star)
		return d && w;
	return d || w;
}

PG_FUNCTION_INFO_V1(cron_next);
/* cron_next(expr, after) -> the first matching minute strictly after `after` (UTC) */
Datum
cron_next(PG_FUNCTION_ARGS)
{
	char	   *expr = text_to_cstring(PG_GETARG_TEXT_PP(0));
	TimestampTz after = PG_GETARG_TIMESTAMPTZ(1);
	CronSpec	c;
	struct pg_tm tm;
	fsec_t		fsec;
	TimestampTz result;

	CronParse(expr, &c);
	if (TIMESTAMP_NOT_FINITE(after) || timestamp2tm(after, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	tm.tm_sec = 0;
	fsec = 0;
	tm.tm_min++;
	/* at most eight years of candidate minutes, skipping whole months, days and hours */
	for (int guard = 0; guard < 8 * 366 * 24 * 60; guard++)
	{
		if (tm.tm_min >= 60)
		{
			tm.tm_min = 0;
			tm.tm_hour++;
		}
		if (tm.tm_hour >= 24)
		{
			tm.tm_hour = 0;
			tm.tm_mday++;
		}
		if (tm.tm_mday > day_tab[isleap(tm.tm_year)][tm.tm_mon - 1])
		{
			tm.tm_mday = 1;
			tm.tm_mon++;
		}
		if (tm.tm_mon > 12)
		{
			tm.tm_mon = 1;
			tm.tm_year++;
		}
		if (!c.month[tm.tm_mon])
		{
			tm.tm_mon++;
			tm.tm_mday = 1;
			tm.tm_hour = 0;
			tm.tm_min = 0;
			if (tm.tm_mon > 12)
			{
				tm.tm_mon = 1;
				tm.tm_year++;
			}
			continue;
		}
		if (!CronDayMatches(&c, &tm))
		{
			tm.tm_mday++;
			tm.tm_hour = 0;
			tm.tm_min = 0;
			continue;
		}
		if (!c.hour[tm.tm_hour])
		{
			tm.tm_hour++;
			tm.tm_min = 0;
			continue;
		}
		if (!c.minute[tm.tm_min])
		{
			tm.tm_min++;
			continue;
		}
		if (tm2timestamp(&tm, fsec, NULL, &result) != 0)
			break;
		PG_RETURN_TIMESTAMPTZ(result);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("cron expression \"%s\" never matches", expr)));
	PG_RETURN_NULL();
}
