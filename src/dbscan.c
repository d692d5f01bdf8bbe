/*
 * dbscan.c — DBSCAN on the sphere, and the core-point index predict uses
 *
 * Semantics are scikit-learn's: a point is core when at least min_points
 * points (itself included) lie within eps_m great-circle metres; clusters are
 * the connected components of core points; a border point joins the cluster
 * with the smallest number among its core neighbours; the rest is noise (-1).
 * Clusters are numbered by their first core point in input order, which gives
 * exactly scikit-learn's labels for the same input order.
 *
 * Neighbour search uses a grid of 3-D cells over the unit vectors (no seam at
 * the antimeridian or the poles).  Cells have a diagonal no longer than eps,
 * so a cell with min_points points is all core and the cores of one cell are
 * one cluster (the grid algorithm of Gunawan, 2013); only cells up to two
 * steps apart can hold neighbours.  Time and memory are linear in the points
 * for a bounded density.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "windowapi.h"

#include "points.h"

/* Smallest eps: below a millimetre the coordinates' own precision dominates */
#define MIN_EPS_M 0.001

typedef struct CellKey
{
	int64		x;
	int64		y;
	int64		z;
} CellKey;

typedef struct CellEntry
{
	CellKey		key;
	int32		id;
	char		status;
} CellEntry;

/* Mix the three cell coordinates */
static inline uint32
CellHash(CellKey k)
{
	uint64		h = (uint64) k.x * UINT64CONST(0x9E3779B97F4A7C15);

	h ^= (uint64) k.y * UINT64CONST(0xC2B2AE3D27D4EB4F);
	h ^= (uint64) k.z * UINT64CONST(0x165667B19E3779F9);
	return (uint32) (h ^ (h >> 32));
}

#define SH_PREFIX cellhash
#define SH_ELEMENT_TYPE CellEntry
#define SH_KEY_TYPE CellKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) CellHash(k)
#define SH_EQUAL(tb, a, b) ((a).x == (b).x && (a).y == (b).y && (a).z == (b).z)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* Cell of a unit vector for cells of side 1/inv_h */
static inline CellKey
CellOf(CmlVec3 v, double inv_h)
{
	CellKey		k;

	k.x = (int64) floor((v.x + 1.0) * inv_h);
	k.y = (int64) floor((v.y + 1.0) * inv_h);
	k.z = (int64) floor((v.z + 1.0) * inv_h);
	return k;
}

/* Validate DBSCAN parameters */
static void
CheckDbscanParams(double eps_m, int32 min_points)
{
	if (!isfinite(eps_m) || eps_m < MIN_EPS_M)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("eps_m must be a finite distance of at least %g metres, not %g",
						MIN_EPS_M, eps_m)));
	if (min_points < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("min_points must be at least 1, not %d", min_points)));
}

/* DBSCAN parameters from train()'s jsonb: both keys are required */
void
CmlDbscanParseParams(Jsonb *params, double *eps_m, int32 *min_points)
{
	CmlOptSpec	spec[] = {
		{"eps_m", CML_OPT_FLOAT, 0, 1e300, eps_m},
		{"min_points", CML_OPT_INT, 1, PG_INT32_MAX, min_points},
	};

	*eps_m = NAN;
	*min_points = 0;
	CmlParseOptions(params, "DBSCAN parameters", spec, lengthof(spec));
	if (isnan(*eps_m) || *min_points == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("DBSCAN parameters must give \"eps_m\" and \"min_points\""),
				 errhint("For example '{\"eps_m\": 100, \"min_points\": 10}'.")));
	CheckDbscanParams(*eps_m, *min_points);
}

/* Union-find root with path halving */
static inline int32
FindRoot(int32 *parent, int32 c)
{
	while (parent[c] != c)
	{
		parent[c] = parent[parent[c]];
		c = parent[c];
	}
	return c;
}

/*
 * Cluster unit vectors; labels[i] gets the zone of point i or -1, core[i]
 * whether it is a core point.  Returns the number of zones.
 */
static int32
DbscanVectors(const CmlVec3 *x, int64 n, double eps_m, int32 min_points,
			  int32 *labels, bool *core)
{
	double		ce2 = CmlMetresToChord2(eps_m);
	double		h = sqrt(ce2) / sqrt(3.0) * (1.0 - 1e-9);
	double		inv_h = 1.0 / h;
	cellhash_hash *cells;
	int32		ncell = 0;
	int32	   *cell_of = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
	int64	   *start;
	int64	   *fill;
	int64	   *order = palloc_extended(sizeof(int64) * n, MCXT_ALLOC_HUGE);
	CmlVec3    *cx = palloc_extended(sizeof(CmlVec3) * n, MCXT_ALLOC_HUGE);
	bool	   *ccore = palloc_extended(sizeof(bool) * n, MCXT_ALLOC_HUGE);
	CellKey    *keys;
	int64	   *nb_start;
	int32	   *nb;
	int64		nb_len = 0,
				nb_cap;
	bool	   *cell_has_core;
	int32	   *parent;
	int32	   *cluster_id;
	int32		nzones = 0;

	/* cells numbered in order of first appearance */
	cells = cellhash_create(CurrentMemoryContext, 1024, NULL);
	keys = palloc(sizeof(CellKey) * 1024);
	for (int64 i = 0; i < n; i++)
	{
		bool		found;
		CellKey		k = CellOf(x[i], inv_h);
		CellEntry  *e = cellhash_insert(cells, k, &found);

		if (!found)
		{
			if (ncell == PG_INT32_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("too many grid cells for DBSCAN")));
			if ((ncell & (ncell - 1)) == 0 && ncell >= 1024)
				keys = repalloc_huge(keys, sizeof(CellKey) * (Size) ncell * 2);
			e->id = ncell;
			keys[ncell++] = k;
		}
		cell_of[i] = e->id;
	}

	/* points grouped by cell (counting sort, input order kept within a cell) */
	start = palloc_extended(sizeof(int64) * ((Size) ncell + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	fill = palloc_extended(sizeof(int64) * ((Size) ncell + 1), MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < n; i++)
		start[cell_of[i] + 1]++;
	for (int32 c = 0; c < ncell; c++)
		start[c + 1] += start[c];
	memcpy(fill, start, sizeof(int64) * ncell);
	for (int64 i = 0; i < n; i++)
	{
		int64		p = fill[cell_of[i]]++;

		order[p] = i;
		cx[p] = x[i];
	}
	CHECK_FOR_INTERRUPTS();

	/* the existing cells within two steps of each cell */
	nb_start = palloc_extended(sizeof(int64) * ((Size) ncell + 1), MCXT_ALLOC_HUGE);
	nb_cap = Max((int64) ncell * 8, 1024);
	nb = palloc_extended(sizeof(int32) * nb_cap, MCXT_ALLOC_HUGE);
	for (int32 c = 0; c < ncell; c++)
	{
		nb_start[c] = nb_len;
		for (int dx = -2; dx <= 2; dx++)
			for (int dy = -2; dy <= 2; dy++)
				for (int dz = -2; dz <= 2; dz++)
				{
					CellKey		k = {keys[c].x + dx, keys[c].y + dy, keys[c].z + dz};
					CellEntry  *e;

					if (dx == 0 && dy == 0 && dz == 0)
						continue;
					e = cellhash_lookup(cells, k);
					if (e == NULL)
						continue;
					if (nb_len == nb_cap)
					{
						nb_cap *= 2;
						nb = repalloc_huge(nb, sizeof(int32) * nb_cap);
					}
					nb[nb_len++] = e->id;
				}
		if ((c & 0x3FFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	nb_start[ncell] = nb_len;

	/* core points: a full cell is all core, otherwise count up to min_points */
	cell_has_core = palloc_extended(sizeof(bool) * Max(ncell, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (int32 c = 0; c < ncell; c++)
	{
		int64		cnt = start[c + 1] - start[c];

		for (int64 p = start[c]; p < start[c + 1]; p++)
		{
			int64		count = cnt;

			for (int64 j = nb_start[c]; j < nb_start[c + 1] && count < min_points; j++)
			{
				int32		d = nb[j];

				for (int64 q = start[d]; q < start[d + 1]; q++)
					if (CmlChord2(cx[p], cx[q]) <= ce2 && ++count >= min_points)
						break;
			}
			ccore[p] = count >= min_points;
			if (ccore[p])
				cell_has_core[c] = true;
		}
		if ((c & 0xFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}

	/* clusters: cells with cores joined when two of their cores are neighbours */
	parent = palloc_extended(sizeof(int32) * Max(ncell, 1), MCXT_ALLOC_HUGE);
	for (int32 c = 0; c < ncell; c++)
		parent[c] = c;
	for (int32 c = 0; c < ncell; c++)
	{
		if (!cell_has_core[c])
			continue;
		for (int64 j = nb_start[c]; j < nb_start[c + 1]; j++)
		{
			int32		d = nb[j];
			bool		joined = false;

			if (d < c || !cell_has_core[d] || FindRoot(parent, c) == FindRoot(parent, d))
				continue;
			for (int64 p = start[c]; p < start[c + 1] && !joined; p++)
			{
				if (!ccore[p])
					continue;
				for (int64 q = start[d]; q < start[d + 1]; q++)
					if (ccore[q] && CmlChord2(cx[p], cx[q]) <= ce2)
					{
						joined = true;
						break;
					}
			}
			if (joined)
				parent[FindRoot(parent, d)] = FindRoot(parent, c);
		}
		if ((c & 0xFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}

	/* number clusters by their first core point in input order */
	cluster_id = palloc_extended(sizeof(int32) * Max(ncell, 1), MCXT_ALLOC_HUGE);
	for (int32 c = 0; c < ncell; c++)
		cluster_id[c] = -1;
	for (int64 p = 0; p < n; p++)
		core[order[p]] = ccore[p];
	for (int64 i = 0; i < n; i++)
	{
		int32		r;

		labels[i] = -1;
		if (!core[i])
			continue;
		r = FindRoot(parent, cell_of[i]);
		if (cluster_id[r] < 0)
			cluster_id[r] = nzones++;
		labels[i] = cluster_id[r];
	}

	/* border points join the smallest-numbered cluster among their core neighbours */
	for (int32 c = 0; c < ncell; c++)
	{
		for (int64 p = start[c]; p < start[c + 1]; p++)
		{
			int32		best = cell_has_core[c] ? cluster_id[FindRoot(parent, c)] : PG_INT32_MAX;

			if (ccore[p])
				continue;
			for (int64 j = nb_start[c]; j < nb_start[c + 1]; j++)
			{
				int32		d = nb[j];
				int32		id;

				if (!cell_has_core[d])
					continue;
				id = cluster_id[FindRoot(parent, d)];
				if (id >= best)
					continue;
				for (int64 q = start[d]; q < start[d + 1]; q++)
					if (ccore[q] && CmlChord2(cx[p], cx[q]) <= ce2)
					{
						best = id;
						break;
					}
			}
			if (best != PG_INT32_MAX)
				labels[order[p]] = best;
		}
		if ((c & 0xFFF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	return nzones;
}

/* Fit DBSCAN on a point set; labels (if wanted) in the caller's context */
CmlModel *
CmlDbscanFitPoints(const CmlPoints *pts, double eps_m, int32 min_points, int32 **labels_out)
{
	MemoryContext callerCxt = CurrentMemoryContext;
	MemoryContext cxt;
	CmlModel   *model;
	CmlVec3    *x;
	int32	   *labels;
	bool	   *core;
	int64		n = pts->n;
	int64		c;

	CheckDbscanParams(eps_m, min_points);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no points to cluster"),
				 errdetail("The input is empty or every row has a NULL coordinate.")));

	cxt = AllocSetContextCreate(CurrentMemoryContext, "cinematic_ml DBSCAN",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);
	x = CmlPointsToVectors(pts);
	labels = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
	core = palloc_extended(sizeof(bool) * n, MCXT_ALLOC_HUGE);

	MemoryContextSwitchTo(callerCxt);
	model = palloc0(sizeof(CmlModel));
	model->algorithm = CML_ALG_DBSCAN;
	model->eps_m = eps_m;
	model->min_points = min_points;
	model->n_train = n;

	MemoryContextSwitchTo(cxt);
	model->n_zones = DbscanVectors(x, n, eps_m, min_points, labels, core);

	MemoryContextSwitchTo(callerCxt);
	CmlComputeZones(model, x, labels, n, NULL);
	model->n_core = 0;
	for (int64 i = 0; i < n; i++)
		model->n_core += core[i];
	model->core_lat = palloc_extended(sizeof(double) * Max(model->n_core, 1), MCXT_ALLOC_HUGE);
	model->core_lon = palloc_extended(sizeof(double) * Max(model->n_core, 1), MCXT_ALLOC_HUGE);
	model->core_zone = palloc_extended(sizeof(int32) * Max(model->n_core, 1), MCXT_ALLOC_HUGE);
	c = 0;
	for (int64 i = 0; i < n; i++)
		if (core[i])
		{
			model->core_lat[c] = pts->ll[2 * i];
			model->core_lon[c] = pts->ll[2 * i + 1];
			model->core_zone[c] = labels[i];
			c++;
		}
	if (labels_out)
	{
		*labels_out = palloc_extended(sizeof(int32) * Max(n, 1), MCXT_ALLOC_HUGE);
		memcpy(*labels_out, labels, sizeof(int32) * n);
	}
	MemoryContextDelete(cxt);
	return model;
}

/* ---------- the core-point index used by predict ---------- */

/*
 * Cells of side eps; each cell that has a core point within one step lists
 * the core cells around it, so a query does one hash look-up and scans a few
 * short runs of core points.  A cell whose neighbourhood holds one zone only
 * answers at the first core point within eps.
 */
struct CmlCoreIndex
{
	double		ce2;
	double		inv_h;
	cellhash_hash *cells;		/* cell -> query bucket id */
	CmlVec3    *core;			/* core points grouped by their cell */
	int32	   *zone;
	int64	   *run_start;		/* per core cell: its run in core[] */
	int32	   *bucket_start;	/* per bucket: its runs in bucket_runs[] */
	int32	   *bucket_runs;
	int32	   *bucket_zone;	/* the only zone around, or -1 when mixed */
};

/* Build the index over a model's core points */
CmlCoreIndex *
CmlCoreIndexBuild(const CmlModel *m)
{
	CmlCoreIndex *ix = palloc0(sizeof(CmlCoreIndex));
	int64		n = m->n_core;
	cellhash_hash *own = cellhash_create(CurrentMemoryContext, 256, NULL);
	int32		nown = 0;
	int32	   *own_of = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
	CellKey    *own_key;
	int64	   *fill;
	CmlVec3    *v = palloc_extended(sizeof(CmlVec3) * n, MCXT_ALLOC_HUGE);
	int32		nbucket = 0;
	int32	   *bucket_count;
	int64		total = 0;
	int32	   *bucket_fill;

	ix->ce2 = CmlMetresToChord2(m->eps_m);
	ix->inv_h = 1.0 / (sqrt(ix->ce2) * (1.0 + 1e-9));

	/* core points grouped by cell */
	own_key = palloc(sizeof(CellKey) * Max(n, 1));
	for (int64 i = 0; i < n; i++)
	{
		bool		found;
		CellEntry  *e;

		v[i] = CmlLatLonToVec(m->core_lat[i], m->core_lon[i]);
		e = cellhash_insert(own, CellOf(v[i], ix->inv_h), &found);
		if (!found)
		{
			e->id = nown;
			own_key[nown++] = e->key;
		}
		own_of[i] = e->id;
	}
	ix->run_start = palloc_extended(sizeof(int64) * ((Size) nown + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (int64 i = 0; i < n; i++)
		ix->run_start[own_of[i] + 1]++;
	for (int32 c = 0; c < nown; c++)
		ix->run_start[c + 1] += ix->run_start[c];
	fill = palloc_extended(sizeof(int64) * Max(nown, 1), MCXT_ALLOC_HUGE);
	memcpy(fill, ix->run_start, sizeof(int64) * nown);
	ix->core = palloc_extended(sizeof(CmlVec3) * Max(n, 1), MCXT_ALLOC_HUGE);
	ix->zone = palloc_extended(sizeof(int32) * Max(n, 1), MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < n; i++)
	{
		int64		p = fill[own_of[i]]++;

		ix->core[p] = v[i];
		ix->zone[p] = m->core_zone[i];
	}

	/* query buckets: every cell within one step of a core cell */
	ix->cells = cellhash_create(CurrentMemoryContext, (uint32) Min((int64) nown * 9, PG_INT32_MAX / 2), NULL);
	bucket_count = palloc_extended(sizeof(int32) * ((Size) nown * 27 + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (int32 c = 0; c < nown; c++)
		for (int dx = -1; dx <= 1; dx++)
			for (int dy = -1; dy <= 1; dy++)
				for (int dz = -1; dz <= 1; dz++)
				{
					CellKey		k = {own_key[c].x + dx, own_key[c].y + dy, own_key[c].z + dz};
					bool		found;
					CellEntry  *e = cellhash_insert(ix->cells, k, &found);

					if (!found)
						e->id = nbucket++;
					bucket_count[e->id]++;
					total++;
				}
	ix->bucket_start = palloc_extended(sizeof(int32) * ((Size) nbucket + 1), MCXT_ALLOC_HUGE);
	ix->bucket_start[0] = 0;
	for (int32 b = 0; b < nbucket; b++)
		ix->bucket_start[b + 1] = ix->bucket_start[b] + bucket_count[b];
	ix->bucket_runs = palloc_extended(sizeof(int32) * Max(total, 1), MCXT_ALLOC_HUGE);
	ix->bucket_zone = palloc_extended(sizeof(int32) * Max(nbucket, 1), MCXT_ALLOC_HUGE);
	bucket_fill = palloc_extended(sizeof(int32) * Max(nbucket, 1), MCXT_ALLOC_HUGE);
	memcpy(bucket_fill, ix->bucket_start, sizeof(int32) * nbucket);
	for (int32 b = 0; b < nbucket; b++)
		ix->bucket_zone[b] = -2;	/* nothing seen yet */
	for (int32 c = 0; c < nown; c++)
	{
		/* one zone for the whole run, or -1 */
		int32		runzone = ix->zone[ix->run_start[c]];

		for (int64 p = ix->run_start[c]; p < ix->run_start[c + 1]; p++)
			if (ix->zone[p] != runzone)
				runzone = -1;
		for (int dx = -1; dx <= 1; dx++)
			for (int dy = -1; dy <= 1; dy++)
				for (int dz = -1; dz <= 1; dz++)
				{
					CellKey		k = {own_key[c].x + dx, own_key[c].y + dy, own_key[c].z + dz};
					CellEntry  *e = cellhash_lookup(ix->cells, k);
					int32		b = e->id;

					ix->bucket_runs[bucket_fill[b]++] = c;
					if (ix->bucket_zone[b] == -2)
						ix->bucket_zone[b] = runzone;
					else if (ix->bucket_zone[b] != runzone)
						ix->bucket_zone[b] = -1;
				}
	}
	pfree(bucket_count);
	pfree(bucket_fill);
	pfree(own_of);
	pfree(fill);
	pfree(v);
	pfree(own_key);
	cellhash_destroy(own);
	return ix;
}

/* Zone of the nearest core point within eps, or -1 */
int32
CmlCoreIndexLookup(const CmlModel *m, CmlVec3 v)
{
	const CmlCoreIndex *ix = m->core_index;
	CellEntry  *e;
	int32		b;
	int32		uniform;
	double		best = INFINITY;
	int32		bestzone = -1;

	if (ix == NULL)
		return -1;
	e = cellhash_lookup(ix->cells, CellOf(v, ix->inv_h));
	if (e == NULL)
		return -1;
	b = e->id;
	uniform = ix->bucket_zone[b];
	for (int32 r = ix->bucket_start[b]; r < ix->bucket_start[b + 1]; r++)
	{
		int32		c = ix->bucket_runs[r];

		for (int64 p = ix->run_start[c]; p < ix->run_start[c + 1]; p++)
		{
			double		d = CmlChord2(v, ix->core[p]);

			if (d <= ix->ce2)
			{
				if (uniform >= 0)
					return uniform;
				if (d < best)
				{
					best = d;
					bestzone = ix->zone[p];
				}
			}
		}
	}
	return bestzone;
}

PG_FUNCTION_INFO_V1(dbscan_fit_final);
Datum
dbscan_fit_final(PG_FUNCTION_ARGS)
{
	CmlPoints  *pts;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	pts = (CmlPoints *) PG_GETARG_POINTER(0);
	if (pts->n == 0)
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(CmlModelSerialize(CmlDbscanFitPoints(pts, pts->param[0],
														   (int32) pts->param[1], NULL)));
}

/* Labels of one window partition, computed on its first row */
typedef struct DbscanWindow
{
	bool		done;
	int32		labels[FLEXIBLE_ARRAY_MEMBER];	/* -2 = NULL coordinate */
} DbscanWindow;

PG_FUNCTION_INFO_V1(cluster_dbscan);
Datum
cluster_dbscan(PG_FUNCTION_ARGS)
{
	WindowObject winobj = PG_WINDOW_OBJECT();
	int64		nrows = WinGetPartitionRowCount(winobj);
	DbscanWindow *wl;
	int32		label;

	wl = WinGetPartitionLocalMemory(winobj,
									add_size(offsetof(DbscanWindow, labels),
											 mul_size(sizeof(int32), nrows)));
	if (!wl->done)
	{
		CmlPoints  *pts = CmlPointsCreate();
		int64	   *rowof = palloc_extended(sizeof(int64) * Max(nrows, 1), MCXT_ALLOC_HUGE);
		int32	   *labels;
		bool		n1,
					n2;
		Datum		eps = WinGetFuncArgCurrent(winobj, 2, &n1);
		Datum		minpts = WinGetFuncArgCurrent(winobj, 3, &n2);

		if (n1 || n2)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("eps_m and min_points must not be NULL")));
		CheckDbscanParams(DatumGetFloat8(eps), DatumGetInt32(minpts));
		for (int64 r = 0; r < nrows; r++)
		{
			bool		isout;
			Datum		lat = WinGetFuncArgInPartition(winobj, 0, r, WINDOW_SEEK_HEAD, false, &n1, &isout);
			Datum		lon = WinGetFuncArgInPartition(winobj, 1, r, WINDOW_SEEK_HEAD, false, &n2, &isout);

			wl->labels[r] = -2;
			if (n1 || n2)
				continue;
			rowof[pts->n] = r;
			CmlPointsAdd(pts, DatumGetFloat8(lat), DatumGetFloat8(lon));
		}
		if (pts->n > 0)
		{
			CmlDbscanFitPoints(pts, DatumGetFloat8(eps), DatumGetInt32(minpts), &labels);
			for (int64 i = 0; i < pts->n; i++)
				wl->labels[rowof[i]] = labels[i];
		}
		wl->done = true;
	}
	label = wl->labels[WinGetCurrentPosition(winobj)];
	if (label == -2)
		PG_RETURN_NULL();
	PG_RETURN_INT32(label);
}
