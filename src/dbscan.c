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
 * steps apart can hold neighbours.
 *
 * The cells are not hashed: the points are sorted by the lexicographic order
 * of their cell's (x, y, z) (a radix sort of packed keys), and each pass walks
 * the cells in that order.  The neighbours of a cell lie in 25 columns
 * (x + dx, y + dy), each a run of consecutive cells ordered by z; as the walk
 * moves forward, the start of every column's window moves forward too, so a
 * pointer per column finds it by merging instead of searching (NbWalker).  A
 * pass costs about 25 comparisons per cell whatever the density, where a hash
 * would pay 124 random look-ups per cell, most of them for the empty cells
 * that a 3-D grid puts off the sphere's surface.
 *
 * Time is linear in the points for a bounded density and memory is linear.
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

/*
 * Slack, in unit-vector coordinates, added around a cell's box before testing
 * a distance against it: a point's cell comes from a rounded product, so the
 * point may lie a few units in the last place outside the box its cell
 * number describes.  1e-13 is a hundred times that and still negligible
 * against the smallest cell (9e-11, for eps = 1 mm).
 */
#define BOX_SLACK 1e-13

typedef struct CellKey
{
	int64		x;
	int64		y;
	int64		z;
} CellKey;

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

static inline bool
KeyLess(CellKey a, CellKey b)
{
	if (a.x != b.x)
		return a.x < b.x;
	if (a.y != b.y)
		return a.y < b.y;
	return a.z < b.z;
}

/*
 * Squared distance from a point to the box of a cell of side h, less the
 * slack: a lower bound of the squared chord to any point of that cell.
 */
static inline double
BoxDist2(const CmlVec3 *v, CellKey k, double h)
{
	double		d2 = 0.0;
	double		lo,
				g;

	lo = (double) k.x * h - 1.0;
	g = Max(lo - v->x, v->x - (lo + h)) - BOX_SLACK;
	if (g > 0.0)
		d2 += g * g;
	lo = (double) k.y * h - 1.0;
	g = Max(lo - v->y, v->y - (lo + h)) - BOX_SLACK;
	if (g > 0.0)
		d2 += g * g;
	lo = (double) k.z * h - 1.0;
	g = Max(lo - v->z, v->z - (lo + h)) - BOX_SLACK;
	if (g > 0.0)
		d2 += g * g;
	return d2;
}

static inline bool
VecEqual(CmlVec3 a, CmlVec3 b)
{
	return a.x == b.x && a.y == b.y && a.z == b.z;
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

/* ---------- sorting points by cell ---------- */

/* Number of bits needed to write r */
static inline int
BitsFor(uint64 r)
{
	int			b = 0;

	while (b < 64 && (r >> b) != 0)
		b++;
	return b;
}

#define RADIX_BITS 11
#define RADIX_SIZE (1 << RADIX_BITS)

/*
 * Stable LSD radix sort of (key, idx) pairs on the low `bits` bits of key.
 * *key and *idx may be replaced by the sorted copies (the old ones freed).
 */
static void
RadixSort(uint64 **keyp, int64 **idxp, int64 n, int bits)
{
	int			passes = (bits + RADIX_BITS - 1) / RADIX_BITS;
	uint64	   *key = *keyp;
	int64	   *idx = *idxp;
	uint64	   *key2;
	int64	   *idx2;
	int64	   *count;

	if (passes == 0 || n < 2)
		return;
	count = palloc0(sizeof(int64) * RADIX_SIZE * passes);
	for (int64 i = 0; i < n; i++)
		for (int p = 0; p < passes; p++)
			count[p * RADIX_SIZE + ((key[i] >> (p * RADIX_BITS)) & (RADIX_SIZE - 1))]++;
	key2 = palloc_extended(sizeof(uint64) * n, MCXT_ALLOC_HUGE);
	idx2 = palloc_extended(sizeof(int64) * n, MCXT_ALLOC_HUGE);
	for (int p = 0; p < passes; p++)
	{
		int64	   *cnt = count + p * RADIX_SIZE;
		int			shift = p * RADIX_BITS;
		int64		sum = 0;

		/* a digit that all keys share changes nothing */
		if (cnt[(key[0] >> shift) & (RADIX_SIZE - 1)] == n)
			continue;
		for (int b = 0; b < RADIX_SIZE; b++)
		{
			int64		c = cnt[b];

			cnt[b] = sum;
			sum += c;
		}
		for (int64 i = 0; i < n; i++)
		{
			int64		pos = cnt[(key[i] >> shift) & (RADIX_SIZE - 1)]++;

			key2[pos] = key[i];
			idx2[pos] = idx[i];
		}
		{
			uint64	   *tk = key;
			int64	   *ti = idx;

			key = key2;
			idx = idx2;
			key2 = tk;
			idx2 = ti;
		}
		CHECK_FOR_INTERRUPTS();
	}
	pfree(key2);
	pfree(idx2);
	pfree(count);
	*keyp = key;
	*idxp = idx;
}

typedef struct KeyedPoint
{
	CellKey		k;
	int64		i;
} KeyedPoint;

static int
CompareKeyedPoints(const void *a, const void *b)
{
	const KeyedPoint *pa = a;
	const KeyedPoint *pb = b;

	if (KeyLess(pa->k, pb->k))
		return -1;
	if (KeyLess(pb->k, pa->k))
		return 1;
	return pa->i < pb->i ? -1 : pa->i > pb->i;
}

/*
 * Points grouped by grid cell, the cells in lexicographic order of their keys
 * and the points of a cell in input order.
 *
 * Usually a cell's key is packed in one word: the offsets of (x, y, z) from
 * the bounding box's corner, plus two, in bit fields wide enough for the box
 * plus two cells on each side.  Then the neighbour at (dx, dy, dz) has the key
 * packed + dx * 2^sx + dy * 2^sy + dz (no field can borrow or overflow), and
 * the packed order is the lexicographic order.  Data spread so far that the
 * fields need more than 64 bits keep the full keys and compare them.
 */
typedef struct Grid
{
	int32		ncell;
	double		h;				/* cell side */
	uint64	   *pk;				/* per cell: packed key, or NULL */
	CellKey    *key;			/* per cell: full key, when not packed */
	CellKey		base;			/* the cell whose packed key is zero */
	int			sx;				/* shift of the x field */
	int			sy;				/* shift of the y field */
	int64	   *start;			/* per cell, and one more: its points */
	CmlVec3    *v;				/* the points grouped by cell */
	int64	   *order;			/* input index of each grouped point */
	double		rot[3][3];		/* the grid's frame: row i is grid axis i */
} Grid;

/*
 * The grid works on the points in a frame of its own (a rotation, so chords
 * do not change).  For data gathered around a mean direction (a city, a
 * country) the first axis is that direction and the other two span the
 * tangent plane, the last one along a column: the points then fill one or two
 * layers of cells across the first axis, and of the 25 columns around a cell
 * only those of its layer hold points.  Data spread over the sphere keeps the
 * input axes, ordered so that a column runs along the surface (the smallest
 * component of the mean direction last).
 */
static void
GridChooseAxes(Grid *g, const CmlVec3 *x, int64 n)
{
	double		m[3] = {0, 0, 0};
	double		len;

	for (int64 i = 0; i < n; i++)
	{
		m[0] += x[i].x;
		m[1] += x[i].y;
		m[2] += x[i].z;
	}
	len = sqrt(m[0] * m[0] + m[1] * m[1] + m[2] * m[2]);
	memset(g->rot, 0, sizeof(g->rot));
	if (n > 0 && len > 0.5 * n)
	{
		double		nrm[3] = {m[0] / len, m[1] / len, m[2] / len};
		double		t1[3],
					t2[3],
					tl;
		int			e = 0;

		/* the tangent axis t1 from the input axis least aligned with the normal */
		for (int i = 1; i < 3; i++)
			if (fabs(nrm[i]) < fabs(nrm[e]))
				e = i;
		t1[0] = (e == 0) - nrm[e] * nrm[0];
		t1[1] = (e == 1) - nrm[e] * nrm[1];
		t1[2] = (e == 2) - nrm[e] * nrm[2];
		tl = sqrt(t1[0] * t1[0] + t1[1] * t1[1] + t1[2] * t1[2]);
		for (int i = 0; i < 3; i++)
			t1[i] /= tl;
		t2[0] = nrm[1] * t1[2] - nrm[2] * t1[1];
		t2[1] = nrm[2] * t1[0] - nrm[0] * t1[2];
		t2[2] = nrm[0] * t1[1] - nrm[1] * t1[0];
		memcpy(g->rot[0], nrm, sizeof(nrm));
		memcpy(g->rot[1], t2, sizeof(t2));
		memcpy(g->rot[2], t1, sizeof(t1));
	}
	else
	{
		int			a[3] = {0, 1, 2};

		for (int i = 0; i < 3; i++)
			m[i] = fabs(m[i]);
		/* sort the axes by decreasing mean component */
		for (int i = 1; i < 3; i++)
			for (int j = i; j > 0 && m[a[j]] > m[a[j - 1]]; j--)
			{
				int			t = a[j];

				a[j] = a[j - 1];
				a[j - 1] = t;
			}
		for (int i = 0; i < 3; i++)
			g->rot[i][a[i]] = 1.0;
	}
}

/* A vector in the grid's frame */
static inline CmlVec3
GridFrame(const double rot[3][3], CmlVec3 v)
{
	CmlVec3		r;

	r.x = rot[0][0] * v.x + rot[0][1] * v.y + rot[0][2] * v.z;
	r.y = rot[1][0] * v.x + rot[1][1] * v.y + rot[1][2] * v.z;
	r.z = rot[2][0] * v.x + rot[2][1] * v.y + rot[2][2] * v.z;
	return r;
}

/* The key of cell c */
static inline CellKey
GridKey(const Grid *g, int32 c)
{
	CellKey		k;
	uint64		p;

	if (g->pk == NULL)
		return g->key[c];
	p = g->pk[c];
	k.x = g->base.x + (int64) (p >> g->sx);
	k.y = g->base.y + (int64) ((p >> g->sy) & ((UINT64CONST(1) << (g->sx - g->sy)) - 1));
	k.z = g->base.z + (int64) (p & ((UINT64CONST(1) << g->sy) - 1));
	return k;
}

static void
GridBuild(Grid *g, const CmlVec3 *x, int64 n, double h)
{
	double		inv_h = 1.0 / h;
	CellKey		lo,
				hi;
	int			bx,
				by,
				bz;
	int64		ncell;

	memset(g, 0, sizeof(Grid));
	g->h = h;
	GridChooseAxes(g, x, n);
	lo = hi = CellOf(GridFrame(g->rot, x[0]), inv_h);
	for (int64 i = 1; i < n; i++)
	{
		CellKey		k = CellOf(GridFrame(g->rot, x[i]), inv_h);

		lo.x = Min(lo.x, k.x);
		lo.y = Min(lo.y, k.y);
		lo.z = Min(lo.z, k.z);
		hi.x = Max(hi.x, k.x);
		hi.y = Max(hi.y, k.y);
		hi.z = Max(hi.z, k.z);
	}
	/* room for two more cells on each side, and no field all ones */
	bx = BitsFor(hi.x - lo.x + 5);
	by = BitsFor(hi.y - lo.y + 5);
	bz = BitsFor(hi.z - lo.z + 5);

	if (bx + by + bz <= 64)
	{
		uint64	   *key = palloc_extended(sizeof(uint64) * n, MCXT_ALLOC_HUGE);
		int64	   *idx = palloc_extended(sizeof(int64) * n, MCXT_ALLOC_HUGE);

		g->sy = bz;
		g->sx = by + bz;
		g->base.x = lo.x - 2;
		g->base.y = lo.y - 2;
		g->base.z = lo.z - 2;
		for (int64 i = 0; i < n; i++)
		{
			CellKey		k = CellOf(GridFrame(g->rot, x[i]), inv_h);

			key[i] = ((uint64) (k.x - g->base.x) << g->sx) |
				((uint64) (k.y - g->base.y) << g->sy) |
				(uint64) (k.z - g->base.z);
			idx[i] = i;
		}
		RadixSort(&key, &idx, n, bx + by + bz);
		ncell = 1;
		for (int64 p = 1; p < n; p++)
			ncell += key[p] != key[p - 1];
		if (ncell > PG_INT32_MAX - 1)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many grid cells for DBSCAN")));
		g->ncell = (int32) ncell;
		g->pk = palloc_extended(sizeof(uint64) * (ncell + 1), MCXT_ALLOC_HUGE);
		g->start = palloc_extended(sizeof(int64) * (ncell + 1), MCXT_ALLOC_HUGE);
		ncell = 0;
		for (int64 p = 0; p < n; p++)
			if (p == 0 || key[p] != key[p - 1])
			{
				g->pk[ncell] = key[p];
				g->start[ncell++] = p;
			}
		g->start[ncell] = n;
		g->pk[ncell] = PG_UINT64_MAX;	/* sentinel, above every key */
		pfree(key);
		g->order = idx;
	}
	else
	{
		KeyedPoint *kp = palloc_extended(sizeof(KeyedPoint) * n, MCXT_ALLOC_HUGE);

		for (int64 i = 0; i < n; i++)
		{
			kp[i].k = CellOf(GridFrame(g->rot, x[i]), inv_h);
			kp[i].i = i;
		}
		qsort(kp, n, sizeof(KeyedPoint), CompareKeyedPoints);
		ncell = 1;
		for (int64 p = 1; p < n; p++)
			ncell += KeyLess(kp[p - 1].k, kp[p].k);
		if (ncell > PG_INT32_MAX - 1)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many grid cells for DBSCAN")));
		g->ncell = (int32) ncell;
		g->key = palloc_extended(sizeof(CellKey) * ncell, MCXT_ALLOC_HUGE);
		g->start = palloc_extended(sizeof(int64) * (ncell + 1), MCXT_ALLOC_HUGE);
		g->order = palloc_extended(sizeof(int64) * n, MCXT_ALLOC_HUGE);
		ncell = 0;
		for (int64 p = 0; p < n; p++)
		{
			if (p == 0 || KeyLess(kp[p - 1].k, kp[p].k))
			{
				g->key[ncell] = kp[p].k;
				g->start[ncell++] = p;
			}
			g->order[p] = kp[p].i;
		}
		g->start[ncell] = n;
		pfree(kp);
	}
	CHECK_FOR_INTERRUPTS();

	g->v = palloc_extended(sizeof(CmlVec3) * n, MCXT_ALLOC_HUGE);
	for (int64 p = 0; p < n; p++)
		g->v[p] = GridFrame(g->rot, x[g->order[p]]);
}

/* ---------- neighbour cells by merging ---------- */

/* The 25 columns around a cell, nearest first */
static const int8 ColumnDx[25] = {0, -1, 1, 0, 0, -1, -1, 1, 1, -2, 2, 0, 0,
	-2, -2, 2, 2, -1, -1, 1, 1, -2, -2, 2, 2};
static const int8 ColumnDy[25] = {0, 0, 0, -1, 1, -1, 1, -1, 1, 0, 0, -2, 2,
	-1, 1, -1, 1, -2, 2, -2, 2, -2, 2, -2, 2};

/* Most cells within two steps of a cell, itself excluded */
#define MAX_NB 124

/*
 * Finds, among a subset of a grid's cells (sel, ascending), the cells within
 * two steps of a sequence of cells of the grid that never goes back: each
 * column keeps a pointer to the first selected cell not before its window,
 * which only moves forward.
 */
typedef struct NbWalker
{
	const Grid *g;
	const int32 *sel;			/* the selected cells, or NULL for all */
	int32		nsel;
	uint64	   *pk;				/* packed keys of the selected cells */
	CellKey    *key;			/* full keys of the selected cells */
	uint64		off[25];		/* packed offset of each column */
	int32		ptr[25];
} NbWalker;

static void
NbWalkerInit(NbWalker *w, const Grid *g, const int32 *sel, int32 nsel)
{
	w->g = g;
	w->sel = sel;
	w->nsel = nsel;
	w->pk = NULL;
	w->key = NULL;
	if (g->pk != NULL)
	{
		if (sel == NULL)
			w->pk = g->pk;
		else
		{
			w->pk = palloc_extended(sizeof(uint64) * (nsel + 1), MCXT_ALLOC_HUGE);
			for (int32 i = 0; i < nsel; i++)
				w->pk[i] = g->pk[sel[i]];
			w->pk[nsel] = PG_UINT64_MAX;
		}
		for (int j = 0; j < 25; j++)
			w->off[j] = (uint64) ((int64) ColumnDx[j] * ((int64) 1 << g->sx) +
								  (int64) ColumnDy[j] * ((int64) 1 << g->sy));
	}
	else
	{
		if (sel == NULL)
			w->key = g->key;
		else
		{
			w->key = palloc_extended(sizeof(CellKey) * Max(nsel, 1), MCXT_ALLOC_HUGE);
			for (int32 i = 0; i < nsel; i++)
				w->key[i] = g->key[sel[i]];
		}
	}
	memset(w->ptr, 0, sizeof(w->ptr));
}

static void
NbWalkerFree(NbWalker *w)
{
	if (w->sel != NULL && w->pk != NULL)
		pfree(w->pk);
	if (w->sel != NULL && w->key != NULL)
		pfree(w->key);
}

/*
 * The selected cells within two steps of grid cell c, c itself excluded, as
 * grid cell numbers, nearest columns first.  With forward, only those after
 * c in key order (each pair of cells is then seen once).
 */
static int
NbWalk(NbWalker *w, int32 c, int32 *out, bool forward)
{
	int32		nsel = w->nsel;
	const int32 *sel = w->sel;
	int			n = 0;

	if (w->pk != NULL)
	{
		/* the walker's key array ends with a sentinel above every key */
		const uint64 *pk = w->pk;
		uint64		k = w->g->pk[c];

		for (int j = 0; j < 25; j++)
		{
			uint64		lo,
						hi;
			int32		p;

			if (forward && (ColumnDx[j] < 0 || (ColumnDx[j] == 0 && ColumnDy[j] < 0)))
				continue;
			lo = k + w->off[j] - 2;
			hi = lo + 4;
			if (forward && j == 0)
				lo = k + 1;
			p = w->ptr[j];
			while (pk[p] < lo)
				p++;
			w->ptr[j] = p;
			for (; pk[p] <= hi; p++)
				if (pk[p] != k)
					out[n++] = p;
		}
	}
	else
	{
		const CellKey *key = w->key;
		CellKey		k = w->g->key[c];

		for (int j = 0; j < 25; j++)
		{
			CellKey		t;
			int32		p;

			if (forward && (ColumnDx[j] < 0 || (ColumnDx[j] == 0 && ColumnDy[j] < 0)))
				continue;
			t.x = k.x + ColumnDx[j];
			t.y = k.y + ColumnDy[j];
			t.z = (forward && j == 0) ? k.z + 1 : k.z - 2;
			p = w->ptr[j];
			while (p < nsel && KeyLess(key[p], t))
				p++;
			w->ptr[j] = p;
			for (; p < nsel && key[p].x == t.x && key[p].y == t.y && key[p].z <= k.z + 2; p++)
				if (j != 0 || key[p].z != k.z)
					out[n++] = p;
		}
	}
	if (sel != NULL)
		for (int i = 0; i < n; i++)
			out[i] = sel[out[i]];
	return n;
}

static inline bool
Touching(CellKey a, CellKey b)
{
	return Abs(a.x - b.x) <= 1 && Abs(a.y - b.y) <= 1 && Abs(a.z - b.z) <= 1;
}

/* ---------- DBSCAN ---------- */

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
 * Whether some core of cell c lies within eps of some core of cell d.  Cores
 * come first in their cell (cend = end of the cores); a point equal to the
 * one before it has the same answer and is skipped.
 */
static bool
CellsLinked(const Grid *g, const int64 *cend, int32 c, int32 d, double ce2)
{
	const CmlVec3 *v = g->v;
	CellKey		kd = GridKey(g, d);

	for (int64 p = g->start[c]; p < cend[c]; p++)
	{
		if (p > g->start[c] && VecEqual(v[p], v[p - 1]))
			continue;
		if (BoxDist2(&v[p], kd, g->h) > ce2)
			continue;
		for (int64 q = g->start[d]; q < cend[d]; q++)
			if (CmlChord2(v[p], v[q]) <= ce2)
				return true;
		CHECK_FOR_INTERRUPTS();
	}
	return false;
}

typedef struct RootFirst
{
	int64		first;			/* smallest input index of a core of the cluster */
	int32		root;
} RootFirst;

static int
CompareRootFirst(const void *a, const void *b)
{
	int64		fa = ((const RootFirst *) a)->first;
	int64		fb = ((const RootFirst *) b)->first;

	return fa < fb ? -1 : fa > fb;
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

	/*
	 * The diagonal of a cell stays below eps even for a point that rounding
	 * puts in the next cell (a few units in the last place of 2).
	 */
	double		h = sqrt(ce2 / 3.0) * (1.0 - 1e-9) - 4e-15;
	Grid		g;
	int32		ncell;
	int64	   *cend;
	int32	   *nb = palloc(sizeof(int32) * MAX_NB);
	NbWalker	w;
	int32	   *cc;				/* the cells that have cores, in key order */
	int32		ncc = 0;
	int32	   *parent;
	int32	   *cluster_id;
	RootFirst  *roots;
	int32		nroots = 0;
	bool	   *flag = NULL;
	CmlVec3    *tv = NULL;
	int64	   *to = NULL;
	int64		tcap = 0;

	GridBuild(&g, x, n, h);
	ncell = g.ncell;
	cend = palloc_extended(sizeof(int64) * ncell, MCXT_ALLOC_HUGE);

	/*
	 * Core points.  A cell with min_points points is all core.  Otherwise a
	 * point counts its neighbours until min_points, and stops early when the
	 * points left in the neighbourhood cannot get it there; a cell whose whole
	 * neighbourhood has fewer than min_points points has no core at all.  The
	 * cores of a cell are then moved before its other points (keeping their
	 * order).
	 */
	NbWalkerInit(&w, &g, NULL, ncell);
	for (int32 c = 0; c < ncell; c++)
	{
		int64		s = g.start[c];
		int64		cnt = g.start[c + 1] - s;
		int64		total = cnt;
		int			nnb;
		int64		ncore = 0;

		if ((c & 0x3FF) == 0)
			CHECK_FOR_INTERRUPTS();
		if (cnt >= min_points)
		{
			cend[c] = g.start[c + 1];
			continue;
		}
		nnb = NbWalk(&w, c, nb, false);
		for (int j = 0; j < nnb; j++)
			total += g.start[nb[j] + 1] - g.start[nb[j]];
		if (total < min_points)
		{
			cend[c] = s;
			continue;
		}
		if (cnt > tcap)
		{
			tcap = Max(cnt, 64);
			if (flag)
			{
				pfree(flag);
				pfree(tv);
				pfree(to);
			}
			flag = palloc_extended(sizeof(bool) * tcap, MCXT_ALLOC_HUGE);
			tv = palloc_extended(sizeof(CmlVec3) * tcap, MCXT_ALLOC_HUGE);
			to = palloc_extended(sizeof(int64) * tcap, MCXT_ALLOC_HUGE);
		}
		for (int64 p = s; p < s + cnt; p++)
		{
			int64		count = cnt;
			int64		rest = total - cnt;

			CHECK_FOR_INTERRUPTS();
			for (int j = 0; j < nnb && count < min_points; j++)
			{
				int32		d = nb[j];
				int64		dn = g.start[d + 1] - g.start[d];

				if (count + rest < min_points)
					break;
				rest -= dn;
				if (dn >= 4 && BoxDist2(&g.v[p], GridKey(&g, d), h) > ce2)
					continue;
				for (int64 q = g.start[d]; q < g.start[d + 1]; q++)
					if (CmlChord2(g.v[p], g.v[q]) <= ce2 && ++count >= min_points)
						break;
			}
			flag[p - s] = count >= min_points;
			ncore += flag[p - s];
		}
		cend[c] = s + ncore;
		if (ncore > 0 && ncore < cnt)
		{
			int64		a = 0,
						b = ncore;

			for (int64 i = 0; i < cnt; i++)
			{
				int64		t = flag[i] ? a++ : b++;

				tv[t] = g.v[s + i];
				to[t] = g.order[s + i];
			}
			memcpy(&g.v[s], tv, sizeof(CmlVec3) * cnt);
			memcpy(&g.order[s], to, sizeof(int64) * cnt);
		}
	}

	/* the cells that have cores */
	for (int32 c = 0; c < ncell; c++)
		ncc += cend[c] > g.start[c];
	cc = palloc_extended(sizeof(int32) * Max(ncc, 1), MCXT_ALLOC_HUGE);
	ncc = 0;
	for (int32 c = 0; c < ncell; c++)
		if (cend[c] > g.start[c])
			cc[ncc++] = c;

	/*
	 * Clusters: cells with cores joined when two of their cores are
	 * neighbours, each pair of cells seen once.  A cell tries the cells that
	 * touch it first: in a dense area they join everything, so the pairs two
	 * steps apart, whose test may scan both cells in full, are mostly found
	 * already joined.
	 */
	parent = palloc_extended(sizeof(int32) * Max(ncell, 1), MCXT_ALLOC_HUGE);
	for (int32 c = 0; c < ncell; c++)
		parent[c] = c;
	NbWalkerInit(&w, &g, cc, ncc);
	for (int32 i = 0; i < ncc; i++)
	{
		int32		c = cc[i];
		CellKey		kc = GridKey(&g, c);
		int			nnb = NbWalk(&w, c, nb, true);
		int32		rc = FindRoot(parent, c);

		if ((i & 0x3FF) == 0)
			CHECK_FOR_INTERRUPTS();
		for (int touching = 1; touching >= 0; touching--)
			for (int j = 0; j < nnb; j++)
			{
				int32		d = nb[j];
				int32		rd;

				if (Touching(kc, GridKey(&g, d)) != touching)
					continue;
				rd = FindRoot(parent, d);
				if (rc != rd && CellsLinked(&g, cend, c, d, ce2))
					parent[rd] = rc;
			}
	}
	NbWalkerFree(&w);

	/*
	 * Number the clusters by their first core point in input order: the
	 * cores of a cell keep input order, so a cell's first core is its
	 * smallest.
	 */
	roots = palloc_extended(sizeof(RootFirst) * Max(ncc, 1), MCXT_ALLOC_HUGE);
	cluster_id = palloc_extended(sizeof(int32) * Max(ncell, 1), MCXT_ALLOC_HUGE);
	for (int32 c = 0; c < ncell; c++)
		cluster_id[c] = -1;
	for (int32 i = 0; i < ncc; i++)
	{
		int32		c = cc[i];
		int32		r = FindRoot(parent, c);
		int64		first = g.order[g.start[c]];

		if (cluster_id[r] < 0)
		{
			cluster_id[r] = nroots;
			roots[nroots].root = r;
			roots[nroots++].first = first;
		}
		else if (first < roots[cluster_id[r]].first)
			roots[cluster_id[r]].first = first;
	}
	qsort(roots, nroots, sizeof(RootFirst), CompareRootFirst);
	for (int32 i = 0; i < nroots; i++)
		cluster_id[roots[i].root] = i;
	for (int32 c = 0; c < ncell; c++)
		cluster_id[c] = cluster_id[FindRoot(parent, c)];

	for (int64 i = 0; i < n; i++)
	{
		labels[i] = -1;
		core[i] = false;
	}
	for (int32 i = 0; i < ncc; i++)
	{
		int32		c = cc[i];

		for (int64 p = g.start[c]; p < cend[c]; p++)
		{
			labels[g.order[p]] = cluster_id[c];
			core[g.order[p]] = true;
		}
	}

	/*
	 * Border points join the smallest-numbered cluster among their core
	 * neighbours.  The cores of the own cell are all within eps; neighbour
	 * cells of a smaller cluster are tried by ascending number, so the first
	 * one within reach is the answer.
	 */
	if (ncc > 0)
	{
		NbWalkerInit(&w, &g, cc, ncc);
		for (int32 c = 0; c < ncell; c++)
		{
			int32		own = cend[c] > g.start[c] ? cluster_id[c] : PG_INT32_MAX;
			int			nnb;
			int			ncand = 0;

			if ((c & 0x3FF) == 0)
				CHECK_FOR_INTERRUPTS();
			if (cend[c] == g.start[c + 1])
				continue;
			nnb = NbWalk(&w, c, nb, false);
			/* candidate cells of a smaller cluster, sorted by cluster (insertion sort) */
			for (int j = 0; j < nnb; j++)
			{
				int32		d = nb[j];
				int32		id = cluster_id[d];
				int			k;

				if (id >= own)
					continue;
				for (k = ncand; k > 0 && cluster_id[nb[k - 1]] > id; k--)
					nb[k] = nb[k - 1];
				nb[k] = d;
				ncand++;
			}
			for (int64 p = cend[c]; p < g.start[c + 1]; p++)
			{
				int32		best = own;

				for (int j = 0; j < ncand && best == own; j++)
				{
					int32		d = nb[j];

					if (BoxDist2(&g.v[p], GridKey(&g, d), h) > ce2)
						continue;
					for (int64 q = g.start[d]; q < cend[d]; q++)
						if (CmlChord2(g.v[p], g.v[q]) <= ce2)
						{
							best = cluster_id[d];
							break;
						}
				}
				if (best != PG_INT32_MAX)
					labels[g.order[p]] = best;
			}
		}
		NbWalkerFree(&w);
	}
	return nroots;
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
 * Cells of side a little over eps, so the cores within eps of a point lie in
 * its cell or the 26 around it.  Every cell with a core within one step (a
 * bucket) knows those core cells, the one zone of their cores (or that they
 * are mixed), and a 4 x 4 x 4 bitmap of covered sub-cells: a sub-cell next to
 * (or holding) a sub-cell with a core is within eps of that core at every
 * point, since two neighbouring sub-cells fit in a box of diagonal 0.87 eps.
 * So a point in a covered sub-cell of a one-zone bucket has its answer with
 * no distance computed; a point outside every bucket has none; the rest scan
 * the bucket's core cells (the nearest core within eps; any one when the
 * bucket has one zone).  Duplicate cores are kept once, and buckets that
 * cannot meet the sphere's surface are left out.  A query costs one hash
 * probe, which also holds the zone and the bitmap; memory is linear in the
 * distinct cores.
 *
 * The buckets come from sorting the (bucket, core cell) pairs by the packed
 * key, so each bucket is inserted in the hash once.  Keys that do not pack
 * (data spread very far for a tiny eps) use a hash of full keys instead.
 */

/* splitmix64's finaliser */
static inline uint64
Mix64(uint64 h)
{
	h ^= h >> 30;
	h *= UINT64CONST(0xBF58476D1CE4E5B9);
	h ^= h >> 27;
	h *= UINT64CONST(0x94D049BB133111EB);
	h ^= h >> 31;
	return h;
}

/* A bucket in the packed-key hash */
typedef struct BucketEntry
{
	uint64		key;
	uint64		cover;			/* covered sub-cells */
	int32		zone;			/* the one zone of the cores around, or -1 */
	int32		id;				/* bucket number */
	char		status;
} BucketEntry;

#define SH_PREFIX buckethash
#define SH_ELEMENT_TYPE BucketEntry
#define SH_KEY_TYPE uint64
#define SH_KEY key
#define SH_HASH_KEY(tb, k) ((uint32) Mix64(k))
#define SH_EQUAL(tb, a, b) ((a) == (b))
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* A bucket in the full-key hash */
typedef struct CellEntry
{
	CellKey		key;
	int32		id;
	char		status;
} CellEntry;

static inline uint32
CellHash(CellKey k)
{
	return (uint32) Mix64((uint64) k.x * UINT64CONST(0x9E3779B97F4A7C15) ^
						  (uint64) k.y * UINT64CONST(0xC2B2AE3D27D4EB4F) ^
						  (uint64) k.z * UINT64CONST(0x165667B19E3779F9));
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

/* Sub-cell bitmaps: bit sx + 4 sy + 16 sz */
#define SUB_X0 UINT64CONST(0x1111111111111111)	/* sx = 0 */
#define SUB_X3 UINT64CONST(0x8888888888888888)	/* sx = 3 */
#define SUB_Y0 UINT64CONST(0x000F000F000F000F)
#define SUB_Y3 UINT64CONST(0xF000F000F000F000)
#define SUB_Z0 UINT64CONST(0x000000000000FFFF)
#define SUB_Z3 UINT64CONST(0xFFFF000000000000)

/*
 * The sub-cells of a bucket covered by the cores of the cell at offset
 * (ox, oy, oz) (each -1, 0 or 1) from it, whose occupied sub-cells are occ:
 * a core covers the sub-cells next to its own, so from a neighbour only the
 * layer facing the bucket reaches in, one sub-cell deep.
 */
static uint64
CoverFrom(uint64 m, int ox, int oy, int oz)
{
	if (ox < 0)
		m = (m & SUB_X3) >> 3;
	else if (ox > 0)
		m = (m & SUB_X0) << 3;
	else
		m = m | ((m << 1) & ~SUB_X0) | ((m >> 1) & ~SUB_X3);
	if (oy < 0)
		m = (m & SUB_Y3) >> 12;
	else if (oy > 0)
		m = (m & SUB_Y0) << 12;
	else
		m = m | ((m << 4) & ~SUB_Y0) | ((m >> 4) & ~SUB_Y3);
	if (oz < 0)
		m = (m & SUB_Z3) >> 48;
	else if (oz > 0)
		m = (m & SUB_Z0) << 48;
	else
		m = m | (m << 16) | (m >> 16);
	return m;
}

/* Cell and sub-cell (bit number) of a point in grid axes */
static inline CellKey
SubCellOf(CmlVec3 v, double inv_s, int *bit)
{
	double		tx = (v.x + 1.0) * inv_s;
	double		ty = (v.y + 1.0) * inv_s;
	double		tz = (v.z + 1.0) * inv_s;
	CellKey		k;

	k.x = (int64) floor(tx);
	k.y = (int64) floor(ty);
	k.z = (int64) floor(tz);
	*bit = (int) ((tx - (double) k.x) * 4.0) +
		4 * (int) ((ty - (double) k.y) * 4.0) +
		16 * (int) ((tz - (double) k.z) * 4.0);
	return k;
}

/* Whether the box of a cell of side s can hold a unit vector */
static inline bool
CellMeetsSphere(CellKey k, double s)
{
	double		lo[3] = {(double) k.x * s - 1.0, (double) k.y * s - 1.0, (double) k.z * s - 1.0};
	double		in = 0.0,
				out = 0.0;

	for (int i = 0; i < 3; i++)
	{
		double		hi = lo[i] + s;
		double		near = lo[i] > 0.0 ? lo[i] : (hi < 0.0 ? hi : 0.0);

		in += near * near;
		out += Max(lo[i] * lo[i], hi * hi);
	}
	return in <= 1.0 + 1e-9 && out >= 1.0 - 1e-9;
}

struct CmlCoreIndex
{
	double		ce2;
	double		s;				/* cell side */
	double		inv_s;
	double		rot[3][3];		/* the grid's frame, as in Grid */
	/* packed keys (see Grid): base cell, shifts, and the box of the buckets */
	bool		packed;
	CellKey		base;
	int			sx;
	int			sy;
	CellKey		lo;
	CellKey		hi;
	buckethash_hash *pkhash;	/* packed key -> bucket */
	cellhash_hash *fullhash;	/* full key -> bucket, when not packed */
	int32		nbucket;
	int32	   *bucket_zone;	/* for the full-key hash */
	uint64	   *bucket_cover;	/* for the full-key hash */
	int32	   *bucket_start;	/* per bucket, and one more: its core cells */
	int32	   *bucket_cells;
	int32		ncell;			/* core cells */
	CellKey    *cell_key;
	int64	   *cell_start;		/* per core cell, and one more: its cores */
	int64		ncore;			/* distinct cores */
	CmlVec3    *core;			/* grid axes */
	int32	   *zone;
};

/* Memory held by an index */
static Size
CoreIndexBytes(const CmlCoreIndex *ix)
{
	Size		b = sizeof(CmlCoreIndex);

	if (ix->pkhash)
		b += (Size) ix->pkhash->size * sizeof(BucketEntry);
	if (ix->fullhash)
		b += (Size) ix->fullhash->size * sizeof(CellEntry) +
			(Size) ix->nbucket * (sizeof(int32) + sizeof(uint64));
	if (ix->bucket_start)
		b += (Size) (ix->nbucket + 1) * sizeof(int32) +
			(Size) ix->bucket_start[ix->nbucket] * sizeof(int32);
	return b + (Size) ix->ncell * (sizeof(CellKey) + sizeof(int64)) +
		(Size) ix->ncore * (sizeof(CmlVec3) + sizeof(int32));
}

/* Build the index over a model's core points, in the current context */
CmlCoreIndex *
CmlCoreIndexBuild(const CmlModel *m)
{
	MemoryContext callerCxt = CurrentMemoryContext;
	MemoryContext tmp;
	CmlCoreIndex *ix = palloc0(sizeof(CmlCoreIndex));
	int64		n = m->n_core;
	CmlVec3    *v;
	Grid		g;
	int64		ncore = 0;
	int32		ncell;
	uint64	   *occ;
	int32	   *cell_zone;
	uint64	   *pair_key;
	int64	   *pair;
	int64		npair = 0;
	int32		nbucket = 0;

	if (n == 0)
		return ix;
	ix->ce2 = CmlMetresToChord2(m->eps_m);
	ix->s = sqrt(ix->ce2) * (1.0 + 1e-9) + 4e-15;
	ix->inv_s = 1.0 / ix->s;

	tmp = AllocSetContextCreate(callerCxt, "cinematic_ml core index build",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(tmp);
	v = palloc_extended(sizeof(CmlVec3) * n, MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < n; i++)
		v[i] = CmlLatLonToVec(m->core_lat[i], m->core_lon[i]);
	GridBuild(&g, v, n, ix->s);
	pfree(v);
	ncell = g.ncell;
	memcpy(ix->rot, g.rot, sizeof(ix->rot));
	ix->packed = g.pk != NULL;
	ix->base = g.base;
	ix->sx = g.sx;
	ix->sy = g.sy;

	/*
	 * Distinct cores of each cell (a core equal to the one before it in its
	 * cell is dropped: duplicates usually fill a cell alone), the cell's zone
	 * and its occupied sub-cells.
	 */
	occ = palloc_extended(sizeof(uint64) * ncell, MCXT_ALLOC_HUGE);
	cell_zone = palloc_extended(sizeof(int32) * ncell, MCXT_ALLOC_HUGE);
	MemoryContextSwitchTo(callerCxt);
	ix->ncell = ncell;
	ix->cell_key = palloc_extended(sizeof(CellKey) * ncell, MCXT_ALLOC_HUGE);
	ix->cell_start = palloc_extended(sizeof(int64) * (ncell + 1), MCXT_ALLOC_HUGE);
	ix->core = palloc_extended(sizeof(CmlVec3) * n, MCXT_ALLOC_HUGE);
	ix->zone = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
	for (int32 c = 0; c < ncell; c++)
	{
		ix->cell_key[c] = GridKey(&g, c);
		ix->cell_start[c] = ncore;
		occ[c] = 0;
		cell_zone[c] = m->core_zone[g.order[g.start[c]]];
		for (int64 p = g.start[c]; p < g.start[c + 1]; p++)
		{
			int32		z = m->core_zone[g.order[p]];
			int			bit;

			if (p > g.start[c] && VecEqual(g.v[p], g.v[p - 1]))
				continue;
			if (z != cell_zone[c])
				cell_zone[c] = -1;
			(void) SubCellOf(g.v[p], ix->inv_s, &bit);
			occ[c] |= UINT64CONST(1) << bit;
			ix->core[ncore] = g.v[p];
			ix->zone[ncore++] = z;
		}
	}
	ix->cell_start[ncell] = ncore;
	ix->ncore = ncore;
	if (ncore < n)
	{
		ix->core = repalloc_huge(ix->core, sizeof(CmlVec3) * ncore);
		ix->zone = repalloc_huge(ix->zone, sizeof(int32) * ncore);
	}

	/* (bucket, core cell, offset) for each bucket that meets the sphere */
	MemoryContextSwitchTo(tmp);
	pair_key = palloc_extended(sizeof(uint64) * ncell * 27, MCXT_ALLOC_HUGE);
	pair = palloc_extended(sizeof(int64) * ncell * 27, MCXT_ALLOC_HUGE);
	ix->lo = ix->hi = ix->cell_key[0];
	for (int32 c = 0; c < ncell; c++)
	{
		for (int o = 0; o < 27; o++)
		{
			CellKey		k = ix->cell_key[c];

			k.x += o % 3 - 1;
			k.y += (o / 3) % 3 - 1;
			k.z += o / 9 - 1;
			if (!CellMeetsSphere(k, ix->s))
				continue;
			ix->lo.x = Min(ix->lo.x, k.x);
			ix->lo.y = Min(ix->lo.y, k.y);
			ix->lo.z = Min(ix->lo.z, k.z);
			ix->hi.x = Max(ix->hi.x, k.x);
			ix->hi.y = Max(ix->hi.y, k.y);
			ix->hi.z = Max(ix->hi.z, k.z);
			/* the packed key, or a stand-in ordering the pairs by core cell */
			pair_key[npair] = ix->packed ? g.pk[c] + (uint64) ((int64) (o % 3 - 1) * ((int64) 1 << g.sx) +
															  (int64) ((o / 3) % 3 - 1) * ((int64) 1 << g.sy) +
															  (o / 9 - 1)) : (uint64) c;
			pair[npair++] = (int64) c * 27 + o;
		}
		if ((c & 0x3FF) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	if (ix->packed)
		RadixSort(&pair_key, &pair, npair, g.sx + BitsFor(g.pk[ncell - 1] >> g.sx));

	/* the buckets, in order */
	MemoryContextSwitchTo(callerCxt);
	ix->bucket_cells = palloc_extended(sizeof(int32) * Max(npair, 1), MCXT_ALLOC_HUGE);
	if (ix->packed)
	{
		ix->bucket_start = palloc_extended(sizeof(int32) * (npair + 1), MCXT_ALLOC_HUGE);
		ix->pkhash = buckethash_create(callerCxt, (uint32) Min(npair / 4 + 16, PG_INT32_MAX / 4), NULL);
		for (int64 i = 0; i < npair;)
		{
			uint64		key = pair_key[i];
			uint64		cover = 0;
			int32		zone = -2;
			int64		j;
			bool		found;
			BucketEntry *e;

			ix->bucket_start[nbucket] = (int32) i;
			for (j = i; j < npair && pair_key[j] == key; j++)
			{
				int32		c = (int32) (pair[j] / 27);
				int			o = (int) (pair[j] % 27);

				ix->bucket_cells[j] = c;
				zone = zone == -2 || zone == cell_zone[c] ? cell_zone[c] : -1;
				/* the core cell lies at minus the offset from the bucket */
				cover |= CoverFrom(occ[c], 1 - o % 3, 1 - (o / 3) % 3, 1 - o / 9);
				/* the bucket's own cell first: a point there is likely near its cores */
				if (o == 13 && j > i)
				{
					ix->bucket_cells[j] = ix->bucket_cells[i];
					ix->bucket_cells[i] = c;
				}
			}
			e = buckethash_insert(ix->pkhash, key, &found);
			e->cover = cover;
			e->zone = zone;
			e->id = nbucket++;
			i = j;
			if ((nbucket & 0x3FF) == 0)
				CHECK_FOR_INTERRUPTS();
		}
		ix->bucket_start[nbucket] = (int32) npair;
	}
	else
	{
		/* pairs by core cell: count, then fill */
		int32	   *count;
		int32	   *fill;

		ix->fullhash = cellhash_create(callerCxt, (uint32) Min(npair / 4 + 16, PG_INT32_MAX / 4), NULL);
		MemoryContextSwitchTo(tmp);
		count = palloc_extended(sizeof(int32) * (npair + 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		for (int64 i = 0; i < npair; i++)
		{
			CellKey		k = ix->cell_key[pair[i] / 27];
			int			o = (int) (pair[i] % 27);
			bool		found;
			CellEntry  *e;

			k.x += o % 3 - 1;
			k.y += (o / 3) % 3 - 1;
			k.z += o / 9 - 1;
			e = cellhash_insert(ix->fullhash, k, &found);
			if (!found)
				e->id = nbucket++;
			count[e->id]++;
			pair_key[i] = e->id;
		}
		MemoryContextSwitchTo(callerCxt);
		ix->bucket_start = palloc_extended(sizeof(int32) * (nbucket + 1), MCXT_ALLOC_HUGE);
		ix->bucket_zone = palloc_extended(sizeof(int32) * Max(nbucket, 1), MCXT_ALLOC_HUGE);
		ix->bucket_cover = palloc_extended(sizeof(uint64) * Max(nbucket, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
		MemoryContextSwitchTo(tmp);
		fill = palloc_extended(sizeof(int32) * Max(nbucket, 1), MCXT_ALLOC_HUGE);
		ix->bucket_start[0] = 0;
		for (int32 b = 0; b < nbucket; b++)
		{
			ix->bucket_start[b + 1] = ix->bucket_start[b] + count[b];
			fill[b] = ix->bucket_start[b];
			ix->bucket_zone[b] = -2;
		}
		for (int64 i = 0; i < npair; i++)
		{
			int32		b = (int32) pair_key[i];
			int32		c = (int32) (pair[i] / 27);
			int			o = (int) (pair[i] % 27);

			ix->bucket_cells[fill[b]++] = c;
			ix->bucket_zone[b] = ix->bucket_zone[b] == -2 || ix->bucket_zone[b] == cell_zone[c] ? cell_zone[c] : -1;
			ix->bucket_cover[b] |= CoverFrom(occ[c], 1 - o % 3, 1 - (o / 3) % 3, 1 - o / 9);
		}
	}
	ix->nbucket = nbucket;
	MemoryContextSwitchTo(callerCxt);
	MemoryContextDelete(tmp);
	elog(DEBUG1, "cinematic_ml core index: %lld cores (%lld distinct), %d cells, %d buckets, %zu bytes",
		 (long long) n, (long long) ncore, ncell, nbucket, CoreIndexBytes(ix));
	return ix;
}

/* Zone of the nearest core point within eps, or -1 */
int32
CmlCoreIndexLookup(const CmlModel *m, CmlVec3 v0)
{
	const CmlCoreIndex *ix = m->core_index;
	CmlVec3		v;
	CellKey		k;
	int			bit;
	int32		b;
	int32		uniform;
	double		best = INFINITY;
	int32		bestzone = -1;

	if (ix == NULL || ix->ncell == 0)
		return -1;
	v = GridFrame(ix->rot, v0);
	k = SubCellOf(v, ix->inv_s, &bit);
	if (k.x < ix->lo.x || k.x > ix->hi.x || k.y < ix->lo.y || k.y > ix->hi.y ||
		k.z < ix->lo.z || k.z > ix->hi.z)
		return -1;
	if (ix->packed)
	{
		uint64		key = ((uint64) (k.x - ix->base.x) << ix->sx) |
			((uint64) (k.y - ix->base.y) << ix->sy) | (uint64) (k.z - ix->base.z);
		BucketEntry *e = buckethash_lookup(ix->pkhash, key);

		if (e == NULL)
			return -1;
		uniform = e->zone;
		if (uniform >= 0 && (e->cover >> bit) & 1)
			return uniform;
		b = e->id;
	}
	else
	{
		CellEntry  *e = cellhash_lookup(ix->fullhash, k);

		if (e == NULL)
			return -1;
		b = e->id;
		uniform = ix->bucket_zone[b];
		if (uniform >= 0 && (ix->bucket_cover[b] >> bit) & 1)
			return uniform;
	}
	for (int32 r = ix->bucket_start[b]; r < ix->bucket_start[b + 1]; r++)
	{
		int32		c = ix->bucket_cells[r];

		if (BoxDist2(&v, ix->cell_key[c], ix->s) > ix->ce2)
			continue;
		for (int64 p = ix->cell_start[c]; p < ix->cell_start[c + 1]; p++)
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

/* The window's DBSCAN labels: labels only, no model, so no zone figures and no zone limit */
static void
DbscanWindowFit(FunctionCallInfo fcinfo, const CmlPoints *pts, int32 *labels)
{
	WindowObject winobj = PG_WINDOW_OBJECT();
	bool		n1,
				n2;
	Datum		eps = WinGetFuncArgCurrent(winobj, 2, &n1);
	Datum		minpts = WinGetFuncArgCurrent(winobj, 3, &n2);
	CmlVec3    *x;
	bool	   *core;

	if (n1 || n2)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("eps_m and min_points must not be NULL")));
	CheckDbscanParams(DatumGetFloat8(eps), DatumGetInt32(minpts));
	x = CmlPointsToVectors(pts);
	core = palloc_extended(sizeof(bool) * pts->n, MCXT_ALLOC_HUGE);
	(void) DbscanVectors(x, pts->n, DatumGetFloat8(eps), DatumGetInt32(minpts), labels, core);
	pfree(x);
	pfree(core);
}

PG_FUNCTION_INFO_V1(cluster_dbscan);
/* cluster_dbscan(lat, lon, eps_m, min_points) OVER (...): each row's zone, -1 for noise */
Datum
cluster_dbscan(PG_FUNCTION_ARGS)
{
	int32		label;

	if (!CmlWindowLabel(fcinfo, DbscanWindowFit, &label))
		PG_RETURN_NULL();
	PG_RETURN_INT32(label);
}
