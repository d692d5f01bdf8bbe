/*
 * drift.c — drift statistics between a model's baseline and a current window
 *
 * One report carries every statistic, its threshold and its verdict:
 *
 *  1. the original Cinematic Paris rule: zones recomputed on the window with
 *     the model's algorithm and parameters, relative change of n_zones,
 *     mean_points_per_zone and mean_zone_radius_m vs the baseline;
 *  2. zone-share drift: the window's points assigned to the baseline zones plus
 *     an outside / noise category, against the training counts: a chi-square
 *     test of homogeneity on the 2 x K table (both samples are samples, so the
 *     test is honest whatever their sizes; categories with an expected count
 *     below 5 are pooled) and two effect sizes, PSI and the Jensen-Shannon
 *     distance (base 2); drifted only when significant AND material;
 *  3. geometry: per baseline zone, its fate in the recomputed zones (MONIC
 *     transitions: survived, split, disappeared; current zones merged or
 *     emerged), centroid shift in metres and radius change.
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "points.h"

/* Every threshold of a drift check (per-model settings, overridable per call) */
typedef struct DriftSettings
{
	double		rel_n_zones;
	double		rel_mean_points;
	double		rel_mean_radius;
	double		p_value;
	double		psi;
	double		js;
	double		max_centroid_shift_m;
	int32		min_points;
	double		min_expected;
	int32		min_zone_points;
	int32		seed_rule;
	int32		share_rule;
	int32		geometry_rule;
} DriftSettings;

/* MONIC overlap thresholds: a match takes half a zone, a split part a quarter */
#define MATCH_SHARE 0.5
#define SPLIT_SHARE 0.25

/* Defaults, then the settings jsonb */
static void
ParseDriftSettings(Jsonb *settings, DriftSettings *s)
{
	CmlOptSpec	spec[] = {
		{"rel_n_zones", CML_OPT_FLOAT, 0, 1e6, &s->rel_n_zones},
		{"rel_mean_points", CML_OPT_FLOAT, 0, 1e6, &s->rel_mean_points},
		{"rel_mean_radius", CML_OPT_FLOAT, 0, 1e6, &s->rel_mean_radius},
		{"p_value", CML_OPT_FLOAT, 0, 1, &s->p_value},
		{"psi", CML_OPT_FLOAT, 0, 1e6, &s->psi},
		{"js", CML_OPT_FLOAT, 0, 1, &s->js},
		{"max_centroid_shift_m", CML_OPT_FLOAT, 0, 2.1e7, &s->max_centroid_shift_m},
		{"min_points", CML_OPT_INT, 1, PG_INT32_MAX, &s->min_points},
		{"min_expected", CML_OPT_FLOAT, 0, 1e9, &s->min_expected},
		{"min_zone_points", CML_OPT_INT, 1, PG_INT32_MAX, &s->min_zone_points},
		{"seed_rule", CML_OPT_INT, 0, 1, &s->seed_rule},
		{"share_rule", CML_OPT_INT, 0, 1, &s->share_rule},
		{"geometry_rule", CML_OPT_INT, 0, 1, &s->geometry_rule},
	};

	s->rel_n_zones = 0.20;
	s->rel_mean_points = 0.30;
	s->rel_mean_radius = 0.30;
	s->p_value = 0.01;
	s->psi = 0.2;
	s->js = 0.1;
	s->max_centroid_shift_m = 150.0;
	s->min_points = 200;
	s->min_expected = 5.0;
	s->min_zone_points = 30;
	s->seed_rule = 1;
	s->share_rule = 1;
	s->geometry_rule = 1;
	CmlParseOptions(settings, "drift settings", spec, lengthof(spec));
}

/* The effective drift settings as a JSON object */
static void
AppendDriftSettings(StringInfo buf, const DriftSettings *s)
{
	appendStringInfo(buf, "{\"rel_n_zones\": %g, \"rel_mean_points\": %g, \"rel_mean_radius\": %g, "
					 "\"p_value\": %g, \"psi\": %g, \"js\": %g, \"max_centroid_shift_m\": %g, \"min_points\": %d, "
					 "\"min_expected\": %g, \"min_zone_points\": %d, \"seed_rule\": %d, \"share_rule\": %d, \"geometry_rule\": %d}",
					 s->rel_n_zones, s->rel_mean_points, s->rel_mean_radius, s->p_value, s->psi, s->js,
					 s->max_centroid_shift_m, s->min_points, s->min_expected, s->min_zone_points,
					 s->seed_rule, s->share_rule, s->geometry_rule);
}

PG_FUNCTION_INFO_V1(drift_settings);
/* drift_settings(jsonb) -> jsonb: validate drift thresholds and fill in the defaults */
Datum
drift_settings(PG_FUNCTION_ARGS)
{
	DriftSettings s;
	StringInfoData buf;

	ParseDriftSettings(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0), &s);
	initStringInfo(&buf);
	AppendDriftSettings(&buf, &s);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* ---------- the chi-square distribution ---------- */

/* log Gamma(x), x > 0 (Lanczos) */
static double
LogGamma(double x)
{
	static const double c[6] = {76.18009172947146, -86.50532032941677, 24.01409824083091,
	-1.231739572450155, 0.1208650973866179e-2, -0.5395239384953e-5};
	double		y = x;
	double		tmp = x + 5.5;
	double		ser = 1.000000000190015;

	tmp -= (x + 0.5) * log(tmp);
	for (int j = 0; j < 6; j++)
		ser += c[j] / ++y;
	return -tmp + log(2.5066282746310005 * ser / x);
}

/* Regularised upper incomplete gamma Q(a, x) */
static double
GammaQ(double a, double x)
{
	double		gln = LogGamma(a);

	if (x <= 0.0)
		return 1.0;
	if (x < a + 1.0)
	{
		/* series for P, then Q = 1 - P */
		double		ap = a,
					sum = 1.0 / a,
					del = sum;

		for (int n = 0; n < 10000; n++)
		{
			ap += 1.0;
			del *= x / ap;
			sum += del;
			if (fabs(del) < fabs(sum) * 1e-15)
				break;
		}
		return Max(0.0, 1.0 - sum * exp(-x + a * log(x) - gln));
	}
	else
	{
		/* continued fraction for Q (modified Lentz) */
		double		b = x + 1.0 - a,
					cc = 1.0 / 1e-300,
					d = 1.0 / b,
					h = d;

		for (int i = 1; i < 10000; i++)
		{
			double		an = -i * (i - a);
			double		del;

			b += 2.0;
			d = an * d + b;
			if (fabs(d) < 1e-300)
				d = 1e-300;
			cc = b + an / cc;
			if (fabs(cc) < 1e-300)
				cc = 1e-300;
			d = 1.0 / d;
			del = d * cc;
			h *= del;
			if (fabs(del - 1.0) < 1e-15)
				break;
		}
		return Min(1.0, exp(-x + a * log(x) - gln) * h);
	}
}

/* Upper tail of the chi-square distribution */
static double
ChiSquarePValue(double stat, int df)
{
	if (df <= 0)
		return 1.0;
	return GammaQ(0.5 * df, 0.5 * stat);
}

/* ---------- helpers ---------- */

/* Relative change, 1.0 when the baseline is 0 (the original rule) */
static double
RelChange(double cur, double base)
{
	if (base == 0.0)
		return (cur == 0.0) ? 0.0 : 1.0;
	return fabs(cur - base) / fabs(base);
}

/* Append "key": float */
static void
AppendKeyFloat(StringInfo buf, const char *key, double v, bool comma)
{
	appendStringInfo(buf, "%s\"%s\": ", comma ? ", " : "", key);
	CmlAppendJsonFloat(buf, v);
}

/* Append a JSON array of strings */
static void
AppendStringArray(StringInfo buf, List *items)
{
	ListCell   *lc;
	bool		first = true;

	appendStringInfoChar(buf, '[');
	foreach(lc, items)
	{
		appendStringInfo(buf, "%s", first ? "" : ", ");
		escape_json(buf, (const char *) lfirst(lc));
		first = false;
	}
	appendStringInfoChar(buf, ']');
}

/*
 * Baseline category of a point: its zone, or -1 (outside / noise).  DBSCAN:
 * the DBSCAN rule.  k-means: inside the nearest zone's p90 radius, a rule the
 * training points obey by construction for 90% of each zone, so the baseline
 * and the window are measured the same way (the max radius would put no
 * training point outside and bias the test).
 */
static int32
BaselineCategory(const CmlModel *m, double lat, double lon)
{
	bool		hot;
	double		dist;
	int32		zone = CmlPredictZone(m, CmlLatLonToVec(lat, lon), &hot, &dist);

	if (m->algorithm == CML_ALG_KMEANS)
		return dist <= m->zones[zone].p90_m ? zone : -1;
	return hot ? zone : -1;
}

/* Training points of zone z in its category (k-means: within the p90 radius) */
static double
BaselineInside(const CmlModel *m, int z)
{
	int64		cnt = m->zones[z].n_points;

	return m->algorithm == CML_ALG_KMEANS ? (double) (int64) ceil(0.9 * cnt) : (double) cnt;
}

PG_FUNCTION_INFO_V1(drift_report);
/*
 * drift_report(baseline model bytea, current_query text, settings jsonb) -> jsonb
 * The statistics only; the SQL function drift() adds the model's identity and
 * records the check.
 */
Datum
drift_report(PG_FUNCTION_ARGS)
{
	CmlModel   *base = CmlModelDeserialize(PG_GETARG_BYTEA_PP(0));
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *settings = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	DriftSettings s;
	CmlPoints  *pts;
	int64		n;
	int			nb;				/* baseline categories: zones + outside */
	double	   *bcount;
	double	   *ccount;
	int32	   *bcat;
	StringInfoData buf;
	List	   *reasons = NIL;
	bool		insufficient = false;
	bool		drifted = false;
	CmlModel   *cur = NULL;
	int32	   *clabels = NULL;

	ParseDriftSettings(settings, &s);
	CmlModelPrepare(base);
	pts = CmlPointsFromQuery(query, "window query");
	n = pts->n;
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("the drift window is empty"),
				 errdetail("The window query returned no row with both coordinates."),
				 errhint("Check the model's window_query setting or the query given to drift().")));
	nb = base->n_zones + 1;

	/* baseline counts: training zone sizes and noise; current: assignment to baseline zones */
	bcount = palloc0(sizeof(double) * nb);
	ccount = palloc0(sizeof(double) * nb);
	bcount[nb - 1] = base->n_noise;
	for (int i = 0; i < base->n_zones; i++)
	{
		bcount[i] = BaselineInside(base, i);
		bcount[nb - 1] += base->zones[i].n_points - bcount[i];
	}
	bcat = palloc_extended(sizeof(int32) * Max(n, 1), MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < n; i++)
	{
		int32		c = BaselineCategory(base, pts->ll[2 * i], pts->ll[2 * i + 1]);

		bcat[i] = c;
		ccount[c >= 0 ? c : nb - 1] += 1.0;
		if ((i & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"algorithm\": \"%s\", \"n_baseline\": " INT64_FORMAT ", \"n_current\": " INT64_FORMAT,
					 CmlAlgorithmName(base->algorithm), base->n_train, n);
	appendStringInfoString(&buf, ", \"settings\": ");
	AppendDriftSettings(&buf, &s);

	if (n < s.min_points)
	{
		insufficient = true;
		reasons = lappend(reasons, psprintf("only " INT64_FORMAT " points in the window (minimum %d)", n, s.min_points));
	}

	/* 1. the original rule, zones recomputed on the window */
	if (!insufficient)
	{
		double		bm_pts,
					bm_rad,
					cm_pts,
					cm_rad;
		double		r_nz,
					r_pts,
					r_rad;
		bool		collapsed;
		bool		seed_drift;

		if (base->algorithm == CML_ALG_KMEANS)
		{
			StringInfoData opts;

			initStringInfo(&opts);
			appendStringInfo(&opts, "{\"seed\": " UINT64_FORMAT ", \"n_init\": %d, \"max_iter\": %d, \"tol\": %.17g}",
							 base->seed, base->n_init, base->max_iter, base->tol);
			cur = CmlKmeansFitPoints(pts, Min(base->k, (int32) n), false,
									 DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(opts.data))),
									 &clabels);
		}
		else
			cur = CmlDbscanFitPoints(pts, base->eps_m, base->min_points, &clabels);
		CmlCityFigures(base, &bm_pts, &bm_rad);
		CmlCityFigures(cur, &cm_pts, &cm_rad);
		r_nz = RelChange(cur->n_zones, base->n_zones);
		r_pts = RelChange(cm_pts, bm_pts);
		r_rad = RelChange(cm_rad, bm_rad);
		collapsed = cur->n_zones == 0;
		seed_drift = collapsed || r_nz > s.rel_n_zones || r_pts > s.rel_mean_points || r_rad > s.rel_mean_radius;
		appendStringInfo(&buf, ", \"seed_rule\": {\"baseline\": {\"n_zones\": %d", base->n_zones);
		AppendKeyFloat(&buf, "mean_points_per_zone", bm_pts, true);
		AppendKeyFloat(&buf, "mean_zone_radius_m", bm_rad, true);
		appendStringInfo(&buf, "}, \"current\": {\"n_zones\": %d", cur->n_zones);
		AppendKeyFloat(&buf, "mean_points_per_zone", cm_pts, true);
		AppendKeyFloat(&buf, "mean_zone_radius_m", cm_rad, true);
		appendStringInfoString(&buf, "}, \"rel_change\": {");
		AppendKeyFloat(&buf, "n_zones", r_nz, false);
		AppendKeyFloat(&buf, "mean_points_per_zone", r_pts, true);
		AppendKeyFloat(&buf, "mean_zone_radius_m", r_rad, true);
		appendStringInfo(&buf, "}, \"thresholds\": {\"n_zones\": %g, \"mean_points_per_zone\": %g, \"mean_zone_radius_m\": %g}"
						 ", \"collapsed\": %s, \"enabled\": %s, \"drifted\": %s}",
						 s.rel_n_zones, s.rel_mean_points, s.rel_mean_radius,
						 collapsed ? "true" : "false", s.seed_rule ? "true" : "false",
						 seed_drift ? "true" : "false");
		if (s.seed_rule && seed_drift)
		{
			drifted = true;
			if (collapsed)
				reasons = lappend(reasons, pstrdup("original rule: the window has no zone"));
			if (r_nz > s.rel_n_zones)
				reasons = lappend(reasons, psprintf("original rule: n_zones %d -> %d (change %.3f > %g)",
													base->n_zones, cur->n_zones, r_nz, s.rel_n_zones));
			if (r_pts > s.rel_mean_points)
				reasons = lappend(reasons, psprintf("original rule: mean points per zone %.1f -> %.1f (change %.3f > %g)",
													bm_pts, cm_pts, r_pts, s.rel_mean_points));
			if (r_rad > s.rel_mean_radius)
				reasons = lappend(reasons, psprintf("original rule: mean zone radius %.1f m -> %.1f m (change %.3f > %g)",
													bm_rad, cm_rad, r_rad, s.rel_mean_radius));
		}
	}

	/* 2. zone shares: chi-square test of homogeneity + PSI + Jensen-Shannon */
	{
		double		nbase = 0,
					ncur = 0,
					psi = 0,
					js = 0,
					chi2 = 0,
					pval = 1.0;
		int			df = 0,
					kept = 0;
		bool	   *pooled = palloc0(sizeof(bool) * nb);
		double		pool_b = 0,
					pool_c = 0;
		int			npooled = 0;
		bool		significant,
					material,
					share_drift;

		for (int j = 0; j < nb; j++)
		{
			nbase += bcount[j];
			ncur += ccount[j];
		}
		if (n > 0 && nbase > 0)
		{
			double		ntot = nbase + ncur;

			/* effect sizes on all categories: PSI with half-count smoothing, JS distance base 2 */
			for (int j = 0; j < nb; j++)
			{
				double		b = (bcount[j] + 0.5) / (nbase + 0.5 * nb);
				double		c = (ccount[j] + 0.5) / (ncur + 0.5 * nb);
				double		bp = bcount[j] / nbase;
				double		cp = ccount[j] / ncur;
				double		mp = 0.5 * (bp + cp);

				psi += (c - b) * log(c / b);
				if (bp > 0)
					js += 0.5 * bp * log2(bp / mp);
				if (cp > 0)
					js += 0.5 * cp * log2(cp / mp);
			}
			js = sqrt(Max(js, 0.0));

			/* the test: pool categories with a small expected count */
			for (int j = 0; j < nb; j++)
			{
				double		tot = bcount[j] + ccount[j];

				if (tot == 0)
				{
					pooled[j] = true;
					continue;
				}
				if (Min(nbase, ncur) * tot / ntot < s.min_expected)
				{
					pooled[j] = true;
					pool_b += bcount[j];
					pool_c += ccount[j];
					npooled++;
				}
			}
			for (int pass = 0; pass < 2; pass++)
			{
				chi2 = 0;
				kept = 0;
				for (int j = 0; j <= nb; j++)
				{
					double		ob,
								oc,
								tot;

					if (j < nb)
					{
						if (pooled[j])
							continue;
						ob = bcount[j];
						oc = ccount[j];
					}
					else
					{
						if (pool_b + pool_c == 0)
							continue;
						ob = pool_b;
						oc = pool_c;
					}
					tot = ob + oc;
					{
						double		eb = nbase * tot / ntot;
						double		ec = ncur * tot / ntot;

						chi2 += (ob - eb) * (ob - eb) / eb + (oc - ec) * (oc - ec) / ec;
					}
					kept++;
				}
				/* a pool still too small joins the smallest kept category */
				if (pass == 0 && pool_b + pool_c > 0 && Min(nbase, ncur) * (pool_b + pool_c) / ntot < s.min_expected)
				{
					int			smallest = -1;

					for (int j = 0; j < nb; j++)
						if (!pooled[j] && (smallest < 0 || bcount[j] + ccount[j] < bcount[smallest] + ccount[smallest]))
							smallest = j;
					if (smallest >= 0)
					{
						pooled[smallest] = true;
						pool_b += bcount[smallest];
						pool_c += ccount[smallest];
						npooled++;
						continue;
					}
				}
				break;
			}
			df = kept - 1;
			pval = ChiSquarePValue(chi2, df);
		}
		if (!insufficient && df < 1)
		{
			insufficient = true;
			reasons = lappend(reasons, psprintf("fewer than two zone categories with %g expected points", s.min_expected));
		}
		significant = df >= 1 && pval < s.p_value;
		material = psi >= s.psi || js >= s.js;
		share_drift = !insufficient && significant && material;

		appendStringInfo(&buf, ", \"share_drift\": {\"outside_rule\": \"%s\", \"categories\": [",
						 base->algorithm == CML_ALG_KMEANS ? "beyond the nearest zone's p90 radius" : "not within eps of a core point");
		for (int j = 0; j < nb; j++)
		{
			if (j == nb - 1)
				appendStringInfo(&buf, "%s{\"zone\": \"outside\"", j ? ", " : "");
			else
				appendStringInfo(&buf, "%s{\"zone\": %d", j ? ", " : "", j);
			appendStringInfo(&buf, ", \"baseline\": %.0f, \"current\": %.0f", bcount[j], ccount[j]);
			AppendKeyFloat(&buf, "baseline_share", nbase > 0 ? bcount[j] / nbase : 0.0, true);
			AppendKeyFloat(&buf, "current_share", ncur > 0 ? ccount[j] / ncur : 0.0, true);
			appendStringInfo(&buf, ", \"pooled\": %s}", pooled[j] ? "true" : "false");
		}
		appendStringInfoString(&buf, "]");
		AppendKeyFloat(&buf, "chi2", chi2, true);
		appendStringInfo(&buf, ", \"df\": %d, \"pooled_categories\": %d", df, npooled);
		AppendKeyFloat(&buf, "p_value", pval, true);
		AppendKeyFloat(&buf, "psi", psi, true);
		AppendKeyFloat(&buf, "js_distance", js, true);
		appendStringInfo(&buf, ", \"thresholds\": {\"p_value\": %g, \"psi\": %g, \"js\": %g}, \"significant\": %s, "
						 "\"material\": %s, \"enabled\": %s, \"drifted\": %s}",
						 s.p_value, s.psi, s.js, significant ? "true" : "false", material ? "true" : "false",
						 s.share_rule ? "true" : "false", share_drift ? "true" : "false");
		if (s.share_rule && share_drift)
		{
			drifted = true;
			reasons = lappend(reasons, psprintf("zone shares: chi-square p = %.3g < %g, PSI %.3f, JS distance %.3f",
												pval, s.p_value, psi, js));
		}
	}

	/* 3. geometry and MONIC transitions */
	if (cur != NULL)
	{
		int			nc = cur->n_zones;
		double	   *m;			/* (nb) x (nc + 1): baseline category x current label (last = noise) */
		double	   *brow;
		double	   *ccol;
		int			n_surv = 0,
					n_split = 0,
					n_merge = 0,
					n_dis = 0,
					n_emer = 0;
		double		max_shift = 0;
		int			max_shift_zone = -1;
		bool		geo_drift;
		double		bnoise = base->n_train ? (double) base->n_noise / base->n_train : 0.0;
		double		cnoise = n ? ccount[nb - 1] / n : 0.0;

		m = palloc0(sizeof(double) * nb * (nc + 1));
		brow = palloc0(sizeof(double) * nb);
		ccol = palloc0(sizeof(double) * (nc + 1));
		for (int64 i = 0; i < n; i++)
		{
			int			r = bcat[i] >= 0 ? bcat[i] : nb - 1;
			int			c = clabels[i] >= 0 ? clabels[i] : nc;

			m[r * (nc + 1) + c] += 1;
			brow[r] += 1;
			ccol[c] += 1;
		}
		appendStringInfoString(&buf, ", \"geometry\": {\"zones\": [");
		for (int i = 0; i < base->n_zones; i++)
		{
			const CmlZone *bz = &base->zones[i];
			int			best = -1,
						parts = 0;
			const char *status;

			for (int j = 0; j < nc; j++)
			{
				if (brow[i] > 0 && m[i * (nc + 1) + j] / brow[i] >= SPLIT_SHARE)
					parts++;
				if (best < 0 || m[i * (nc + 1) + j] > m[i * (nc + 1) + best])
					best = j;
			}
			if (brow[i] < s.min_zone_points || best < 0 || m[i * (nc + 1) + best] == 0)
				status = (brow[i] < s.min_zone_points && bz->n_points * (double) n / Max(base->n_train, 1) < s.min_zone_points)
					? "too_small" : "disappeared";
			else if (parts >= 2)
				status = "split";
			else if (m[i * (nc + 1) + best] / brow[i] >= MATCH_SHARE)
				status = "survived";
			else
				status = "disappeared";
			if (strcmp(status, "survived") == 0)
				n_surv++;
			else if (strcmp(status, "split") == 0)
				n_split++;
			else if (strcmp(status, "disappeared") == 0)
				n_dis++;
			appendStringInfo(&buf, "%s{\"zone\": %d, \"status\": \"%s\", \"current_points\": %.0f",
							 i ? ", " : "", i, status, brow[i]);
			if (strcmp(status, "survived") == 0 || strcmp(status, "split") == 0)
			{
				const CmlZone *cz = &cur->zones[best];
				double		shift = CmlVecDistance(bz->unit, cz->unit);

				appendStringInfo(&buf, ", \"matched_zone\": %d", best);
				AppendKeyFloat(&buf, "centroid_shift_m", shift, true);
				AppendKeyFloat(&buf, "baseline_radius_m", bz->radius_m, true);
				AppendKeyFloat(&buf, "current_radius_m", cz->radius_m, true);
				AppendKeyFloat(&buf, "radius_change_rel", RelChange(cz->radius_m, bz->radius_m), true);
				if (strcmp(status, "survived") == 0 && shift > max_shift)
				{
					max_shift = shift;
					max_shift_zone = i;
				}
			}
			appendStringInfoChar(&buf, '}');
		}
		appendStringInfoString(&buf, "], \"current_zones\": [");
		for (int j = 0; j < nc; j++)
		{
			int			sources = 0;
			double		from_outside = ccol[j] > 0 ? m[(nb - 1) * (nc + 1) + j] / ccol[j] : 0;
			const char *status;

			for (int i = 0; i < base->n_zones; i++)
				if (ccol[j] > 0 && m[i * (nc + 1) + j] / ccol[j] >= SPLIT_SHARE &&
					brow[i] > 0 && m[i * (nc + 1) + j] / brow[i] >= MATCH_SHARE)
					sources++;
			if (sources >= 2)
			{
				status = "merged";
				n_merge++;
			}
			else if (from_outside >= MATCH_SHARE)
			{
				status = "emerged";
				n_emer++;
			}
			else
				status = "continued";
			appendStringInfo(&buf, "%s{\"zone\": %d, \"status\": \"%s\", \"n_points\": " INT64_FORMAT,
							 j ? ", " : "", j, status, cur->zones[j].n_points);
			AppendKeyFloat(&buf, "lat", cur->zones[j].lat, true);
			AppendKeyFloat(&buf, "lon", cur->zones[j].lon, true);
			AppendKeyFloat(&buf, "radius_m", cur->zones[j].radius_m, true);
			appendStringInfoChar(&buf, '}');
		}
		geo_drift = !insufficient && max_shift > s.max_centroid_shift_m;
		appendStringInfo(&buf, "], \"transitions\": {\"survived\": %d, \"split\": %d, \"merged\": %d, "
						 "\"disappeared\": %d, \"emerged\": %d}",
						 n_surv, n_split, n_merge, n_dis, n_emer);
		appendStringInfoString(&buf, ", \"noise_share\": {");
		AppendKeyFloat(&buf, "baseline", bnoise, false);
		AppendKeyFloat(&buf, "current_outside", cnoise, true);
		AppendKeyFloat(&buf, "current_recomputed", n ? (double) cur->n_noise / n : 0.0, true);
		appendStringInfoChar(&buf, '}');
		AppendKeyFloat(&buf, "max_centroid_shift_m", max_shift, true);
		appendStringInfo(&buf, ", \"max_shift_zone\": %d, \"threshold_m\": %g, \"enabled\": %s, \"drifted\": %s}",
						 max_shift_zone, s.max_centroid_shift_m, s.geometry_rule ? "true" : "false",
						 geo_drift ? "true" : "false");
		if (s.geometry_rule && geo_drift)
		{
			drifted = true;
			reasons = lappend(reasons, psprintf("geometry: zone %d moved %.0f m (> %g m)",
												max_shift_zone, max_shift, s.max_centroid_shift_m));
		}
	}

	appendStringInfo(&buf, ", \"verdict\": \"%s\", \"reasons\": ",
					 insufficient ? "insufficient_data" : drifted ? "drifted" : "stable");
	AppendStringArray(&buf, reasons);
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

PG_FUNCTION_INFO_V1(evaluate_model);
/*
 * evaluate(model bytea, query text) -> jsonb: how well a model fits the
 * query's points (the quality gate compares two versions on the same window):
 * noise share (k-means: points outside every zone radius), simplified
 * silhouette and Davies-Bouldin of the assignment, inertia per assigned point.
 */
Datum
evaluate_model(PG_FUNCTION_ARGS)
{
	CmlModel   *m = CmlModelDeserialize(PG_GETARG_BYTEA_PP(0));
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	CmlPoints  *pts;
	CmlVec3    *x;
	int32	   *label;
	int32	   *dense;
	int32		nused = 0;
	int64		noise = 0,
				assigned = 0;
	double		inertia = 0;
	CmlModel	tmp = {0};
	StringInfoData buf;

	CmlModelPrepare(m);
	pts = CmlPointsFromQuery(query, "evaluation query");
	if (pts->n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no points to evaluate the model on")));
	x = CmlPointsToVectors(pts);
	label = palloc_extended(sizeof(int32) * pts->n, MCXT_ALLOC_HUGE);
	dense = palloc(sizeof(int32) * Max(m->n_zones, 1));
	for (int i = 0; i < m->n_zones; i++)
		dense[i] = -1;
	for (int64 i = 0; i < pts->n; i++)
	{
		bool		hot;
		double		dist;
		int32		zone = CmlPredictZone(m, x[i], &hot, &dist);

		if (!hot)
			noise++;
		if (zone < 0)
		{
			label[i] = -1;
			continue;
		}
		assigned++;
		inertia += CmlChord2(x[i], m->zones[zone].center);
		if (dense[zone] < 0)
			dense[zone] = nused++;
		label[i] = dense[zone];
	}
	tmp.algorithm = CML_ALG_DBSCAN;
	tmp.n_train = pts->n;
	tmp.n_zones = nused;
	CmlComputeZones(&tmp, x, label, pts->n, NULL);

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"n_points\": " INT64_FORMAT ", \"n_zones\": %d, \"zones_used\": %d",
					 pts->n, m->n_zones, nused);
	AppendKeyFloat(&buf, "noise_share", (double) noise / pts->n, true);
	AppendKeyFloat(&buf, "silhouette", tmp.silhouette, true);
	AppendKeyFloat(&buf, "davies_bouldin", tmp.davies_bouldin, true);
	AppendKeyFloat(&buf, "inertia_per_point", assigned ? inertia * CML_EARTH_RADIUS_M * CML_EARTH_RADIUS_M / assigned : NAN, true);
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* n choose 2 */
static inline double
Choose2(double n)
{
	return n * (n - 1.0) / 2.0;
}

PG_FUNCTION_INFO_V1(compare_models);
/*
 * compare_models(a, b, query) -> jsonb: how two models assign the query's
 * points: identical labels, labels after mapping each zone of a to its most
 * frequent zone of b, hotspot agreement, and the adjusted Rand index of the
 * two partitions (noise / outside counts as one more label).
 */
Datum
compare_models(PG_FUNCTION_ARGS)
{
	CmlModel   *a = CmlModelDeserialize(PG_GETARG_BYTEA_PP(0));
	CmlModel   *b = CmlModelDeserialize(PG_GETARG_BYTEA_PP(1));
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(2));
	CmlPoints  *pts;
	int			na = a->n_zones + 1,
				nb = b->n_zones + 1;
	double	   *tab;
	double	   *rows,
			   *cols;
	int64		same = 0,
				hot_same = 0,
				mapped = 0;
	double		idx = 0,
				sa = 0,
				sb = 0,
				expected,
				maxidx,
				ari;
	StringInfoData buf;

	if ((double) na * nb > 5e7)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many zones to compare (%d x %d)", a->n_zones, b->n_zones)));
	CmlModelPrepare(a);
	CmlModelPrepare(b);
	pts = CmlPointsFromQuery(query, "comparison query");
	if (pts->n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no points to compare the models on")));
	tab = palloc0_array(double, (Size) na * nb);
	rows = palloc0_array(double, na);
	cols = palloc0_array(double, nb);
	for (int64 i = 0; i < pts->n; i++)
	{
		CmlVec3		v = CmlLatLonToVec(pts->ll[2 * i], pts->ll[2 * i + 1]);
		bool		ha,
					hb;
		double		dist;
		int32		za = CmlPredictZone(a, v, &ha, &dist);
		int32		zb = CmlPredictZone(b, v, &hb, &dist);

		tab[(za + 1) * nb + zb + 1] += 1;
		rows[za + 1] += 1;
		cols[zb + 1] += 1;
		same += za == zb;
		hot_same += ha == hb;
		if ((i & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	for (int i = 0; i < na; i++)
	{
		double		best = 0;

		for (int j = 0; j < nb; j++)
		{
			idx += Choose2(tab[i * nb + j]);
			best = Max(best, tab[i * nb + j]);
		}
		mapped += (int64) best;
		sa += Choose2(rows[i]);
	}
	for (int j = 0; j < nb; j++)
		sb += Choose2(cols[j]);
	expected = sa * sb / Choose2((double) pts->n);
	maxidx = 0.5 * (sa + sb);
	ari = (maxidx - expected) != 0 ? (idx - expected) / (maxidx - expected) : 1.0;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"n_points\": " INT64_FORMAT ", \"n_zones_a\": %d, \"n_zones_b\": %d",
					 pts->n, a->n_zones, b->n_zones);
	AppendKeyFloat(&buf, "same_label_share", (double) same / pts->n, true);
	AppendKeyFloat(&buf, "mapped_agreement", (double) mapped / pts->n, true);
	AppendKeyFloat(&buf, "hotspot_agreement", (double) hot_same / pts->n, true);
	AppendKeyFloat(&buf, "adjusted_rand_index", ari, true);
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
