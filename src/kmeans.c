/*
 * kmeans.c — k-means on the sphere's 3-D unit vectors
 *
 * k-means++ seeding (greedy, 2 + ln k local trials, as scikit-learn), several
 * initialisations keeping the lowest inertia, and Lloyd's iterations
 * accelerated with Hamerly's bounds: the bounds only skip distance
 * computations that cannot change an assignment, so the result is the one
 * plain Lloyd reaches from the same seeds.  Inertia is the sum of squared
 * chord distances in metres (scikit-learn on unit vectors scaled by the
 * Earth's radius gives the same number).
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "windowapi.h"

#include "points.h"

typedef struct KmeansOptions
{
	int32		k;
	int64		seed;
	int32		n_init;
	int32		max_iter;
	double		tol;
} KmeansOptions;

/* Defaults, then the options jsonb; with_k when k may be given in it (train) */
static void
KmeansParseOptions(Jsonb *options, bool with_k, KmeansOptions *o)
{
	CmlOptSpec	spec[] = {
		{"seed", CML_OPT_INT64, 0, 9007199254740991.0, &o->seed},
		{"n_init", CML_OPT_INT, 1, 1000, &o->n_init},
		{"max_iter", CML_OPT_INT, 1, 100000, &o->max_iter},
		{"tol", CML_OPT_FLOAT, 0, 1, &o->tol},
		{"k", CML_OPT_INT, 1, CML_MAX_K, &o->k},
	};

	o->seed = 0;
	o->n_init = 10;
	o->max_iter = 300;
	o->tol = 1e-4;
	if (with_k)
		o->k = 0;
	CmlParseOptions(options, with_k ? "k-means parameters" : "k-means options",
					spec, with_k ? lengthof(spec) : lengthof(spec) - 1);
}

/* Raise the error for an unusable k */
static void
CheckK(int32 k, int64 n)
{
	if (k < 1 || k > CML_MAX_K)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be between 1 and %d, not %d", CML_MAX_K, k)));
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no points to cluster"),
				 errdetail("The input is empty or every row has a NULL coordinate.")));
	if (k > n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k = %d is larger than the number of points (%lld)", k, (long long) n)));
}

/* Greedy k-means++ seeding; errors when there are fewer than k distinct points */
static void
SeedCenters(const CmlVec3 *x, int64 n, int32 k, pg_prng_state *rng,
			CmlVec3 *centers, double *d2, double *cum, double *trial_d2)
{
	int			trials = 2 + (int) log((double) k);
	double		pot = 0.0;
	double	   *best_d2 = palloc_extended(sizeof(double) * n, MCXT_ALLOC_HUGE);

	centers[0] = x[(int64) (pg_prng_double(rng) * n)];
	for (int64 i = 0; i < n; i++)
	{
		d2[i] = CmlChord2(x[i], centers[0]);
		pot += d2[i];
	}

	for (int32 c = 1; c < k; c++)
	{
		double		best_pot = -1.0;
		int64		best_idx = -1;
		double		acc = 0.0;

		CHECK_FOR_INTERRUPTS();
		if (!(pot > 0.0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("k = %d is larger than the number of distinct points (%d)", k, c),
					 errhint("Use a smaller k, or DBSCAN for data with many duplicates.")));
		for (int64 i = 0; i < n; i++)
		{
			acc += d2[i];
			cum[i] = acc;
		}
		for (int t = 0; t < trials; t++)
		{
			double		r = pg_prng_double(rng) * acc;
			int64		lo = 0,
						hi = n - 1;
			double		tpot = 0.0;
			CmlVec3		cand;

			/* first index whose cumulative potential exceeds r */
			while (lo < hi)
			{
				int64		mid = lo + (hi - lo) / 2;

				if (cum[mid] > r)
					hi = mid;
				else
					lo = mid + 1;
			}
			while (lo > 0 && d2[lo] == 0.0)
				lo--;
			cand = x[lo];
			for (int64 i = 0; i < n; i++)
			{
				double		d = CmlChord2(x[i], cand);

				trial_d2[i] = d < d2[i] ? d : d2[i];
				tpot += trial_d2[i];
			}
			if (best_idx < 0 || tpot < best_pot)
			{
				double	   *swap = best_d2;

				best_pot = tpot;
				best_idx = lo;
				best_d2 = trial_d2;
				trial_d2 = swap;
			}
		}
		centers[c] = x[best_idx];
		memcpy(d2, best_d2, sizeof(double) * n);
		pot = best_pot;
	}
}

/* Distance to the nearest and second nearest center */
static inline int32
NearestTwo(CmlVec3 p, const CmlVec3 *c, int32 k, double *d1, double *d2)
{
	int32		best = 0;
	double		b1 = CmlChord2(p, c[0]);
	double		b2 = INFINITY;

	for (int32 j = 1; j < k; j++)
	{
		double		d = CmlChord2(p, c[j]);

		if (d < b1)
		{
			b2 = b1;
			b1 = d;
			best = j;
		}
		else if (d < b2)
			b2 = d;
	}
	*d1 = sqrt(b1);
	*d2 = sqrt(b2);
	return best;
}

typedef struct KmeansRun
{
	CmlVec3    *centers;
	int32	   *labels;
	double		inertia;		/* in squared unit-sphere chords */
	int32		n_iter;
} KmeansRun;

/* One k-means run from k-means++ seeds: Lloyd with Hamerly's bounds */
static void
KmeansOnce(const CmlVec3 *x, int64 n, const KmeansOptions *o, double tol_abs,
		   pg_prng_state *rng, double *work, KmeansRun *run)
{
	int32		k = o->k;
	CmlVec3    *c = run->centers;
	int32	   *a = run->labels;
	double	   *u = work;
	double	   *l = work + n;
	CmlVec3    *sum = palloc(sizeof(CmlVec3) * k);
	int64	   *cnt = palloc(sizeof(int64) * k);
	double	   *p = palloc(sizeof(double) * k);
	double	   *s = palloc(sizeof(double) * k);
	bool		strict = false;
	int32		it;

	SeedCenters(x, n, k, rng, c, u, l, work + 2 * n);

	/* first assignment: every distance; the sums then follow each reassignment */
	memset(sum, 0, sizeof(CmlVec3) * k);
	memset(cnt, 0, sizeof(int64) * k);
	for (int64 i = 0; i < n; i++)
	{
		int32		j = NearestTwo(x[i], c, k, &u[i], &l[i]);

		a[i] = j;
		sum[j].x += x[i].x;
		sum[j].y += x[i].y;
		sum[j].z += x[i].z;
		cnt[j]++;
	}

	for (it = 0; it < o->max_iter; it++)
	{
		double		shift = 0.0;
		double		pmax = 0.0,
					pmax2 = 0.0;
		int32		jmax = -1;
		int64		changed = 0;

		CHECK_FOR_INTERRUPTS();

		/* re-seed empty clusters on the points farthest from their centers */
		for (int32 j = 0; j < k; j++)
		{
			double		far = -1.0;
			int64		fi = -1;

			if (cnt[j] > 0)
				continue;
			for (int64 i = 0; i < n; i++)
			{
				double		d;

				if (cnt[a[i]] <= 1)
					continue;
				d = CmlChord2(x[i], c[a[i]]);
				if (d > far)
				{
					far = d;
					fi = i;
				}
			}
			if (fi < 0)
				elog(ERROR, "k-means could not re-seed an empty cluster. Please report a bug.");
			sum[a[fi]].x -= x[fi].x;
			sum[a[fi]].y -= x[fi].y;
			sum[a[fi]].z -= x[fi].z;
			cnt[a[fi]]--;
			sum[j] = x[fi];
			cnt[j] = 1;
			a[fi] = j;
			u[fi] = 0.0;
			l[fi] = 0.0;
		}

		/* M-step: the means of the current assignment */
		for (int32 j = 0; j < k; j++)
		{
			CmlVec3		nc;

			nc.x = sum[j].x / cnt[j];
			nc.y = sum[j].y / cnt[j];
			nc.z = sum[j].z / cnt[j];
			p[j] = CmlChord2(nc, c[j]);
			shift += p[j];
			p[j] = sqrt(p[j]);
			c[j] = nc;
			if (p[j] > pmax)
			{
				pmax2 = pmax;
				pmax = p[j];
				jmax = j;
			}
			else if (p[j] > pmax2)
				pmax2 = p[j];
		}
		if (shift <= tol_abs)
			break;

		/* half the distance from each center to its nearest other center */
		for (int32 j = 0; j < k; j++)
		{
			double		m = INFINITY;

			for (int32 j2 = 0; j2 < k; j2++)
				if (j2 != j)
				{
					double		d = CmlChord2(c[j], c[j2]);

					if (d < m)
						m = d;
				}
			s[j] = 0.5 * sqrt(m);
		}

		/*
		 * E-step with Hamerly's test, in one pass: the bounds follow the
		 * centers' moves, and a tiny slack keeps rounding from skipping a
		 * real change.
		 */
		for (int64 i = 0; i < n; i++)
		{
			int32		ai = a[i];
			double		z;
			int32		b;

			u[i] += p[ai];
			l[i] -= (ai == jmax) ? pmax2 : pmax;
			z = Max(s[ai], l[i]) * (1.0 - 1e-12);
			if (u[i] <= z)
				continue;
			u[i] = sqrt(CmlChord2(x[i], c[ai]));
			if (u[i] <= z)
				continue;
			b = NearestTwo(x[i], c, k, &u[i], &l[i]);
			if (b != ai)
			{
				sum[ai].x -= x[i].x;
				sum[ai].y -= x[i].y;
				sum[ai].z -= x[i].z;
				cnt[ai]--;
				sum[b].x += x[i].x;
				sum[b].y += x[i].y;
				sum[b].z += x[i].z;
				cnt[b]++;
				a[i] = b;
				changed++;
			}
		}
		if (changed == 0)
		{
			strict = true;
			it++;
			break;
		}
	}

	/* final assignment to the final centers (already exact after a strict convergence) */
	if (!strict)
		for (int64 i = 0; i < n; i++)
			a[i] = NearestTwo(x[i], c, k, &u[i], &l[i]);

	run->inertia = 0.0;
	for (int64 i = 0; i < n; i++)
		run->inertia += CmlChord2(x[i], c[a[i]]);
	run->n_iter = Min(it + 1, o->max_iter);
	pfree(sum);
	pfree(cnt);
	pfree(p);
	pfree(s);
}

/*
 * Fit k-means on unit vectors.  Runs in its own memory context; the labels
 * (if wanted) and the model are returned in the caller's context.
 */
static CmlModel *
KmeansFitVectors(const CmlVec3 *x, int64 n, const KmeansOptions *o, int32 **labels_out)
{
	MemoryContext callerCxt = CurrentMemoryContext;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "cinematic_ml k-means",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	pg_prng_state rng;
	double		mean[3] = {0, 0, 0};
	double		var = 0.0;
	double		tol_abs;
	double	   *work = palloc_extended(sizeof(double) * 3 * n, MCXT_ALLOC_HUGE);
	KmeansRun	best = {0};
	KmeansRun	cur;
	CmlModel   *model;

	CheckK(o->k, n);

	/* scikit-learn's tolerance: tol times the mean per-dimension variance */
	for (int64 i = 0; i < n; i++)
	{
		mean[0] += x[i].x;
		mean[1] += x[i].y;
		mean[2] += x[i].z;
	}
	for (int d = 0; d < 3; d++)
		mean[d] /= n;
	for (int64 i = 0; i < n; i++)
		var += (x[i].x - mean[0]) * (x[i].x - mean[0]) +
			(x[i].y - mean[1]) * (x[i].y - mean[1]) +
			(x[i].z - mean[2]) * (x[i].z - mean[2]);
	tol_abs = o->tol * var / n / 3.0;

	pg_prng_seed(&rng, (uint64) o->seed);
	cur.centers = palloc(sizeof(CmlVec3) * o->k);
	cur.labels = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
	best.centers = palloc(sizeof(CmlVec3) * o->k);
	best.labels = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
	best.inertia = INFINITY;
	for (int32 r = 0; r < o->n_init; r++)
	{
		KmeansOnce(x, n, o, tol_abs, &rng, work, &cur);
		if (cur.inertia < best.inertia)
		{
			KmeansRun	swap = best;

			best = cur;
			cur = swap;
		}
	}

	MemoryContextSwitchTo(callerCxt);
	model = palloc0(sizeof(CmlModel));
	model->algorithm = CML_ALG_KMEANS;
	model->k = o->k;
	model->n_init = o->n_init;
	model->max_iter = o->max_iter;
	model->seed = (uint64) o->seed;
	model->tol = o->tol;
	model->n_train = n;
	model->n_zones = o->k;
	model->n_iter = best.n_iter;
	model->inertia = best.inertia * CML_EARTH_RADIUS_M * CML_EARTH_RADIUS_M;
	CmlComputeZones(model, x, best.labels, n, best.centers);
	if (labels_out)
	{
		*labels_out = palloc_extended(sizeof(int32) * Max(n, 1), MCXT_ALLOC_HUGE);
		memcpy(*labels_out, best.labels, sizeof(int32) * n);
	}
	MemoryContextDelete(cxt);
	(void) old;
	return model;
}

/* Validate train()'s k-means parameters, which must give k */
void
CmlKmeansCheckParams(Jsonb *params)
{
	KmeansOptions o;

	KmeansParseOptions(params, true, &o);
	if (o.k == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k-means parameters must give \"k\""),
				 errhint("For example '{\"k\": 16}'.")));
}

/* A point and its input position, sorted by (lat, lon) */
typedef struct OrderedPoint
{
	double		lat;
	double		lon;
	int64		pos;
} OrderedPoint;

/* Order of two points by (lat, lon) */
static inline int
ComparePointOrder(const OrderedPoint *a, const OrderedPoint *b)
{
	if (a->lat != b->lat)
		return a->lat < b->lat ? -1 : 1;
	if (a->lon != b->lon)
		return a->lon < b->lon ? -1 : 1;
	return 0;
}

#define ST_SORT sort_points
#define ST_ELEMENT_TYPE OrderedPoint
#define ST_COMPARE(a, b) ComparePointOrder(a, b)
#define ST_SCOPE static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

/* Fit k-means on a point set; k_in_options when k comes from the options (train) */
CmlModel *
CmlKmeansFitPoints(const CmlPoints *pts, int32 k, bool k_in_options, Jsonb *options,
				   int32 **labels_out)
{
	KmeansOptions o;
	CmlVec3    *x;
	CmlModel   *model;
	OrderedPoint *order;
	int32	   *sorted_labels = NULL;

	if (k_in_options)
		CmlKmeansCheckParams(options);
	KmeansParseOptions(options, k_in_options, &o);
	if (!k_in_options)
		o.k = k;
	CheckK(o.k, pts->n);

	/*
	 * Fit on the points in a canonical order, so the model depends only on
	 * the set of points and the seed: not on the scan order, nor on the order
	 * in which parallel workers' partial states were combined.
	 */
	order = palloc_extended(sizeof(OrderedPoint) * Max(pts->n, 1), MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < pts->n; i++)
	{
		order[i].lat = pts->ll[2 * i];
		order[i].lon = pts->ll[2 * i + 1];
		order[i].pos = i;
	}
	sort_points(order, pts->n);
	x = palloc_extended(sizeof(CmlVec3) * pts->n, MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < pts->n; i++)
		x[i] = CmlLatLonToVec(order[i].lat, order[i].lon);
	model = KmeansFitVectors(x, pts->n, &o, labels_out ? &sorted_labels : NULL);
	if (labels_out)
	{
		/* back to the caller's order */
		*labels_out = palloc_extended(sizeof(int32) * Max(pts->n, 1), MCXT_ALLOC_HUGE);
		for (int64 i = 0; i < pts->n; i++)
			(*labels_out)[order[i].pos] = sorted_labels[i];
		pfree(sorted_labels);
	}
	pfree(x);
	pfree(order);
	return model;
}

PG_FUNCTION_INFO_V1(kmeans_fit_final);
Datum
kmeans_fit_final(PG_FUNCTION_ARGS)
{
	CmlPoints  *pts;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	pts = (CmlPoints *) PG_GETARG_POINTER(0);
	if (pts->n == 0)
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(CmlModelSerialize(CmlKmeansFitPoints(pts, (int32) pts->param[0], false,
															pts->options, NULL)));
}

/* The window's k-means labels */
static void
KmeansWindowFit(FunctionCallInfo fcinfo, const CmlPoints *pts, int32 *labels)
{
	WindowObject winobj = PG_WINDOW_OBJECT();
	bool		isnull;
	Datum		d = WinGetFuncArgCurrent(winobj, 2, &isnull);
	Jsonb	   *options = NULL;
	int32	   *fitted;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("k must not be NULL")));
	if (PG_NARGS() > 3)
	{
		Datum		o = WinGetFuncArgCurrent(winobj, 3, &isnull);

		if (!isnull)
			options = DatumGetJsonbP(o);
	}
	(void) CmlKmeansFitPoints(pts, DatumGetInt32(d), false, options, &fitted);
	memcpy(labels, fitted, sizeof(int32) * pts->n);
	pfree(fitted);
}

PG_FUNCTION_INFO_V1(cluster_kmeans);
/* cluster_kmeans(lat, lon, k [, options]) OVER (...): each row's k-means zone */
Datum
cluster_kmeans(PG_FUNCTION_ARGS)
{
	int32		label;

	if (!CmlWindowLabel(fcinfo, KmeansWindowFit, &label))
		PG_RETURN_NULL();
	PG_RETURN_INT32(label);
}
