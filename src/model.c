/*
 * model.c — the model bytea: serialise, validate, describe, predict
 */
#include "postgres.h"

#include "common/int.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "port/pg_crc32c.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "model.h"

#ifdef WORDS_BIGENDIAN
#error "cinematic_ml model format v1 is little-endian; big-endian hosts are not supported yet"
#endif

/* Raise the error for a damaged model */
#define CORRUPT(...) \
	ereport(ERROR, \
			(errcode(ERRCODE_DATA_CORRUPTED), \
			 errmsg("invalid cinematic_ml model: " __VA_ARGS__)))

typedef struct Reader
{
	const char *p;
	const char *end;
} Reader;

/* Ensure n more bytes can be read */
static inline void
NeedBytes(Reader *r, size_t n, const char *what)
{
	if ((size_t) (r->end - r->p) < n)
		CORRUPT("truncated while reading %s", what);
}

#define DEFINE_GET(name, type) \
static inline type \
name(Reader *r, const char *what) \
{ \
	type v; \
	NeedBytes(r, sizeof(type), what); \
	memcpy(&v, r->p, sizeof(type)); \
	r->p += sizeof(type); \
	return v; \
}
DEFINE_GET(GetU16, uint16)
DEFINE_GET(GetU32, uint32)
DEFINE_GET(GetI32, int32)
DEFINE_GET(GetI64, int64)
DEFINE_GET(GetU64, uint64)
DEFINE_GET(GetF64, double)

/* Read a float that must be finite */
static double
GetFinite(Reader *r, const char *what)
{
	double		v = GetF64(r, what);

	if (!isfinite(v))
		CORRUPT("%s is not finite", what);
	return v;
}

/* Read a float that must be finite and >= 0 */
static double
GetNonNegative(Reader *r, const char *what)
{
	double		v = GetFinite(r, what);

	if (v < 0.0)
		CORRUPT("%s is negative", what);
	return v;
}

#define PUT(buf, v) appendBinaryStringInfo((buf), (const char *) &(v), sizeof(v))

/* Human name of an algorithm */
const char *
CmlAlgorithmName(CmlAlgorithm alg)
{
	switch (alg)
	{
		case CML_ALG_KMEANS:
			return "kmeans";
		case CML_ALG_DBSCAN:
			return "dbscan";
	}
	return "unknown";
}

/* Serialise a model to format v1 */
bytea *
CmlModelSerialize(const CmlModel *m)
{
	StringInfoData buf;
	uint16		version = CML_FORMAT_VERSION;
	uint16		alg = (uint16) m->algorithm;
	uint32		zero32 = 0;
	int64		zero64 = 0;
	uint32		total;
	pg_crc32c	crc;
	bytea	   *result;
	/* the header and counts take less than 256 bytes */
	double		need = 256.0 + (double) m->n_zones * 9 * sizeof(double) +
		(double) m->n_core * (2 * sizeof(double) + sizeof(int32));

	/*
	 * a bytea holds at most 1 GB (so the total length fits its uint32): say
	 * so before the buffer fails to grow
	 */
	if (need > (double) MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the model is too large to store: %.0f bytes (%lld core points), over the 1 GB a value can hold",
						need, (long long) m->n_core),
				 errhint("For DBSCAN, fewer points become core points with a larger min_points or a smaller eps_m.")));

	initStringInfo(&buf);
	/* reserve room for the varlena header, then the model header */
	appendStringInfoSpaces(&buf, VARHDRSZ);
	appendBinaryStringInfo(&buf, CML_MODEL_MAGIC, 4);
	PUT(&buf, version);
	PUT(&buf, alg);
	PUT(&buf, zero32);			/* reserved */
	PUT(&buf, zero32);			/* total length, patched below */
	PUT(&buf, zero32);			/* crc, patched below */
	PUT(&buf, zero32);			/* reserved */

	PUT(&buf, m->k);
	PUT(&buf, m->n_init);
	PUT(&buf, m->max_iter);
	PUT(&buf, m->min_points);
	PUT(&buf, m->seed);
	PUT(&buf, m->tol);
	PUT(&buf, m->eps_m);
	PUT(&buf, zero64);

	PUT(&buf, m->n_train);
	PUT(&buf, m->n_noise);
	PUT(&buf, m->inertia);
	PUT(&buf, m->silhouette);
	PUT(&buf, m->davies_bouldin);
	PUT(&buf, m->n_iter);
	PUT(&buf, m->n_zones);

	for (int i = 0; i < m->n_zones; i++)
	{
		const CmlZone *z = &m->zones[i];

		PUT(&buf, z->n_points);
		PUT(&buf, z->lat);
		PUT(&buf, z->lon);
		PUT(&buf, z->radius_m);
		PUT(&buf, z->p90_m);
		PUT(&buf, z->mean_m);
		PUT(&buf, z->center.x);
		PUT(&buf, z->center.y);
		PUT(&buf, z->center.z);
	}

	PUT(&buf, m->n_core);
	for (int64 i = 0; i < m->n_core; i++)
	{
		PUT(&buf, m->core_lat[i]);
		PUT(&buf, m->core_lon[i]);
		PUT(&buf, m->core_zone[i]);
	}

	total = (uint32) (buf.len - VARHDRSZ);
	memcpy(buf.data + VARHDRSZ + 12, &total, sizeof(uint32));
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, buf.data + VARHDRSZ + CML_HEADER_SIZE, total - CML_HEADER_SIZE);
	FIN_CRC32C(crc);
	memcpy(buf.data + VARHDRSZ + 16, &crc, sizeof(uint32));

	result = (bytea *) buf.data;
	SET_VARSIZE(result, buf.len);
	return result;
}

/* Parse and validate a model; every length, count and number is checked */
CmlModel *
CmlModelDeserialize(const bytea *raw)
{
	Reader		r;
	Reader	   *rd = &r;
	CmlModel   *m = palloc0(sizeof(CmlModel));
	size_t		len = VARSIZE_ANY_EXHDR(raw);
	uint16		version;
	uint16		alg;
	uint32		total;
	uint32		stored_crc;
	pg_crc32c	crc;
	int64		sum_points = 0;

	r.p = VARDATA_ANY(raw);
	r.end = r.p + len;

	if (len < 4 || memcmp(r.p, CML_MODEL_MAGIC, 4) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid cinematic_ml model: bad magic number"),
				 errdetail("The value is not a cinematic_ml model.")));
	r.p += 4;
	version = GetU16(rd, "format version");
	if (version > CML_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cinematic_ml model format version %u is newer than this library supports (%d)",
						version, CML_FORMAT_VERSION),
				 errhint("Update the cinematic_ml extension to read this model.")));
	if (version == 0)
		CORRUPT("format version 0");
	alg = GetU16(rd, "algorithm");
	if (alg != CML_ALG_KMEANS && alg != CML_ALG_DBSCAN)
		CORRUPT("unknown algorithm %u", alg);
	m->algorithm = (CmlAlgorithm) alg;
	if (GetU32(rd, "reserved field") != 0)
		CORRUPT("reserved field is not zero");
	total = GetU32(rd, "length");
	if (total != len)
		CORRUPT("length field says %u bytes but the value has %zu", total, len);
	stored_crc = GetU32(rd, "checksum");
	if (GetU32(rd, "reserved field") != 0)
		CORRUPT("reserved field is not zero");
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, r.p, r.end - r.p);
	FIN_CRC32C(crc);
	if (crc != stored_crc)
		CORRUPT("checksum mismatch (stored %08X, computed %08X)", stored_crc, crc);

	/* parameters */
	m->k = GetI32(rd, "k");
	m->n_init = GetI32(rd, "n_init");
	m->max_iter = GetI32(rd, "max_iter");
	m->min_points = GetI32(rd, "min_points");
	m->seed = GetU64(rd, "seed");
	m->tol = GetNonNegative(rd, "tol");
	m->eps_m = GetNonNegative(rd, "eps_m");
	if (GetI64(rd, "reserved field") != 0)
		CORRUPT("reserved field is not zero");
	if (m->algorithm == CML_ALG_KMEANS)
	{
		if (m->k < 1 || m->k > CML_MAX_K)
			CORRUPT("k %d is out of range", m->k);
		/* the bounds of the k-means options, so a model's parameters can fit again */
		if (m->n_init < 1 || m->n_init > 1000 || m->max_iter < 1 || m->max_iter > 100000 ||
			m->tol > 1.0 || m->seed > UINT64CONST(9007199254740991))
			CORRUPT("k-means parameters out of range");
	}
	else
	{
		/* the bounds of training: eps at least a millimetre */
		if (!(m->eps_m >= 0.001 && m->eps_m <= 1e300) || m->min_points < 1)
			CORRUPT("eps_m %g or min_points %d is out of range", m->eps_m, m->min_points);
	}

	/* training summary */
	m->n_train = GetI64(rd, "n_train");
	m->n_noise = GetI64(rd, "n_noise");
	m->inertia = GetNonNegative(rd, "inertia");
	m->silhouette = GetF64(rd, "silhouette");
	m->davies_bouldin = GetF64(rd, "davies_bouldin");
	m->n_iter = GetI32(rd, "n_iter");
	m->n_zones = GetI32(rd, "n_zones");
	if (m->n_train < 0 || m->n_noise < 0 || m->n_noise > m->n_train)
		CORRUPT("inconsistent point counts");
	if (!isnan(m->silhouette) && !(m->silhouette >= -1.0 && m->silhouette <= 1.0))
		CORRUPT("silhouette %g is out of range", m->silhouette);
	if (!isnan(m->davies_bouldin) && !(m->davies_bouldin >= 0.0 && isfinite(m->davies_bouldin)))
		CORRUPT("Davies-Bouldin index %g is out of range", m->davies_bouldin);
	if (m->n_iter < 0)
		CORRUPT("negative iteration count");
	if (m->n_zones < 0 || m->n_zones > CML_MAX_ZONES)
		CORRUPT("zone count %d is out of range", m->n_zones);
	if (m->algorithm == CML_ALG_KMEANS && (m->n_zones != m->k || m->n_noise != 0))
		CORRUPT("k-means model has %d zones for k = %d", m->n_zones, m->k);

	/* zones */
	NeedBytes(rd, (size_t) m->n_zones * CML_ZONE_SIZE, "zones");
	m->zones = palloc0(sizeof(CmlZone) * Max(m->n_zones, 1));
	for (int i = 0; i < m->n_zones; i++)
	{
		CmlZone    *z = &m->zones[i];

		z->n_points = GetI64(rd, "zone size");
		z->lat = GetFinite(rd, "zone latitude");
		z->lon = GetFinite(rd, "zone longitude");
		z->radius_m = GetNonNegative(rd, "zone radius");
		z->p90_m = GetNonNegative(rd, "zone p90 radius");
		z->mean_m = GetNonNegative(rd, "zone mean distance");
		z->center.x = GetFinite(rd, "zone center");
		z->center.y = GetFinite(rd, "zone center");
		z->center.z = GetFinite(rd, "zone center");
		if (z->n_points < 1 || z->n_points > m->n_train)
			CORRUPT("zone %d has %lld points", i, (long long) z->n_points);
		if (pg_add_s64_overflow(sum_points, z->n_points, &sum_points))
			CORRUPT("zone sizes overflow");
		if (!CmlLatLonValid(z->lat, z->lon))
			CORRUPT("zone %d centroid (%g, %g) is not a WGS84 coordinate", i, z->lat, z->lon);
		if (z->p90_m > z->radius_m * (1 + 1e-9) || z->mean_m > z->radius_m * (1 + 1e-9) ||
			z->radius_m > M_PI * CML_EARTH_RADIUS_M)
			CORRUPT("zone %d radii are inconsistent", i);
		{
			double		n2 = z->center.x * z->center.x + z->center.y * z->center.y +
				z->center.z * z->center.z;

			if (!(n2 > 0.0 && n2 <= 1.0 + 1e-9))
				CORRUPT("zone %d center is not inside the unit sphere", i);
		}
		z->unit = CmlLatLonToVec(z->lat, z->lon);
		z->radius_chord2 = CmlMetresToChord2(z->radius_m);
	}
	if (sum_points != m->n_train - m->n_noise)
		CORRUPT("zone sizes and noise do not add up to the training count");

	/* core points */
	m->n_core = GetI64(rd, "core point count");
	if (m->n_core < 0 || (m->algorithm == CML_ALG_KMEANS && m->n_core != 0) ||
		m->n_core > m->n_train)
		CORRUPT("core point count %lld is invalid", (long long) m->n_core);
	/* divide, never multiply: a huge count must not wrap into a plausible size */
	if ((size_t) (r.end - r.p) % CML_CORE_SIZE != 0 ||
		(size_t) m->n_core != (size_t) (r.end - r.p) / CML_CORE_SIZE)
		CORRUPT("%zu bytes of core points for %lld core points",
				(size_t) (r.end - r.p), (long long) m->n_core);
	if (m->n_core > 0)
	{
		m->core_lat = palloc_extended(sizeof(double) * m->n_core, MCXT_ALLOC_HUGE);
		m->core_lon = palloc_extended(sizeof(double) * m->n_core, MCXT_ALLOC_HUGE);
		m->core_zone = palloc_extended(sizeof(int32) * m->n_core, MCXT_ALLOC_HUGE);
		for (int64 i = 0; i < m->n_core; i++)
		{
			m->core_lat[i] = GetF64(rd, "core point");
			m->core_lon[i] = GetF64(rd, "core point");
			m->core_zone[i] = GetI32(rd, "core point zone");
			if (!CmlLatLonValid(m->core_lat[i], m->core_lon[i]))
				CORRUPT("core point %lld is not a WGS84 coordinate", (long long) i);
			if (m->core_zone[i] < 0 || m->core_zone[i] >= m->n_zones)
				CORRUPT("core point %lld has zone %d", (long long) i, m->core_zone[i]);
		}
	}
	if (m->algorithm == CML_ALG_DBSCAN && m->n_zones > 0 && m->n_core == 0)
		CORRUPT("DBSCAN model has zones but no core points");
	return m;
}

/*
 * Lat/lon grids of proven cells.  A cell of a grid stores the answer of
 * predict_cluster for every point of the cell, or CML_GRID_UNKNOWN; a point in
 * a known cell costs two multiplications and a load, with no trigonometry.
 * The proofs use the triangle inequality on chords from the cell's center
 * p0, with rho an upper bound of the chord from p0 to any point of the cell.
 * No grid near the poles, across the antimeridian or for data spread over
 * more than 60 degrees: those points take the exact search.
 */
#define GRID_MAX_SPAN_DEG 60.0
#define METRES_PER_DEGREE (CML_EARTH_RADIUS_M * M_PI / 180.0)

/* Sines and cosines of a grid's lines (index 2i) and cell centers (2i + 1) */
typedef struct GridTrig
{
	double	   *sla;
	double	   *cla;
	double	   *slo;
	double	   *clo;
	double	   *rho;			/* per row of cells: chord from center to the farthest corner */
} GridTrig;

/* A proven answer as a cell stores it: zones past int16 are searched */
static inline int16
GridValue(int32 zone)
{
	return zone < PG_INT16_MAX ? (int16) zone : CML_GRID_UNKNOWN;
}

#define GRID_VEC(t, i, j) \
	((CmlVec3) {(t)->cla[i] * (t)->clo[j], (t)->cla[i] * (t)->slo[j], (t)->sla[i]})

/*
 * A grid over a box widened by margin_m, cells of at least min_cell_m and at
 * most max_cells of them; NULL when the box is unsuitable or the cells would
 * have to be larger than max_cell_m.
 */
static CmlZoneGrid *
GridCreate(double latmin, double latmax, double lonmin, double lonmax, double margin_m,
		   double min_cell_m, double max_cell_m, double max_cells, GridTrig *t)
{
	double		coslat,
				height_m,
				width_m,
				cell_m,
				dlat,
				dlon;
	CmlZoneGrid *g;

	latmin -= margin_m / METRES_PER_DEGREE;
	latmax += margin_m / METRES_PER_DEGREE;
	if (latmin < -80.0 || latmax > 80.0 || lonmax - lonmin > GRID_MAX_SPAN_DEG ||
		latmax - latmin > GRID_MAX_SPAN_DEG)
		return NULL;
	/* the smallest cosine of the box: degrees of longitude are shortest there */
	coslat = cos(Max(fabs(latmin), fabs(latmax)) * M_PI / 180.0);
	lonmin -= margin_m / (METRES_PER_DEGREE * coslat);
	lonmax += margin_m / (METRES_PER_DEGREE * coslat);
	if (lonmin < -180.0 || lonmax > 180.0)
		return NULL;
	height_m = (latmax - latmin) * METRES_PER_DEGREE;
	width_m = (lonmax - lonmin) * METRES_PER_DEGREE *
		cos(Min(fabs(latmin), fabs(latmax)) * M_PI / 180.0);
	cell_m = Max(min_cell_m, sqrt(height_m * width_m / max_cells));
	if (cell_m > max_cell_m)
		return NULL;
	dlat = cell_m / METRES_PER_DEGREE;
	dlon = cell_m / (METRES_PER_DEGREE * coslat);

	g = palloc(sizeof(CmlZoneGrid));
	g->lat0 = latmin;
	g->lon0 = lonmin;
	g->inv_dlat = 1.0 / dlat;
	g->inv_dlon = 1.0 / dlon;
	g->nlat = (int32) ceil((latmax - latmin) / dlat);
	g->nlon = (int32) ceil((lonmax - lonmin) / dlon);
	if ((double) g->nlat * g->nlon > 2.0 * max_cells)
	{
		pfree(g);
		return NULL;
	}
	g->cell = palloc_extended(sizeof(int16) * g->nlat * g->nlon, MCXT_ALLOC_HUGE);
	g->sub_f = 0;
	g->nblock = 0;
	g->block = NULL;
	g->sub = NULL;

	t->sla = palloc(sizeof(double) * (2 * g->nlat + 1));
	t->cla = palloc(sizeof(double) * (2 * g->nlat + 1));
	t->slo = palloc(sizeof(double) * (2 * g->nlon + 1));
	t->clo = palloc(sizeof(double) * (2 * g->nlon + 1));
	t->rho = palloc(sizeof(double) * g->nlat);
	for (int32 i = 0; i <= 2 * g->nlat; i++)
		sincos((latmin + 0.5 * i * dlat) * (M_PI / 180.0), &t->sla[i], &t->cla[i]);
	for (int32 j = 0; j <= 2 * g->nlon; j++)
		sincos((lonmin + 0.5 * j * dlon) * (M_PI / 180.0), &t->slo[j], &t->clo[j]);
	/* every cell of a row has the same shape; the farthest point of a small cell is a corner */
	for (int32 i = 0; i < g->nlat; i++)
	{
		CmlVec3		p0 = GRID_VEC(t, 2 * i + 1, 1);
		double		r = 0;

		r = Max(r, CmlChord2(p0, GRID_VEC(t, 2 * i, 0)));
		r = Max(r, CmlChord2(p0, GRID_VEC(t, 2 * i, 2)));
		r = Max(r, CmlChord2(p0, GRID_VEC(t, 2 * i + 2, 0)));
		r = Max(r, CmlChord2(p0, GRID_VEC(t, 2 * i + 2, 2)));
		t->rho[i] = sqrt(r) * 1.01 + 1e-12;	/* margin for curvature and rounding */
	}
	return g;
}

static void
GridTrigFree(GridTrig *t)
{
	pfree(t->sla);
	pfree(t->cla);
	pfree(t->slo);
	pfree(t->clo);
	pfree(t->rho);
}

/* k-means: at most this many cells (512 kB), and not smaller than 20 m */
#define KMEANS_GRID_MAX_CELLS 262144
#define KMEANS_GRID_MIN_CELL_M 20.0

/* Nearest and second nearest raw center of a unit vector: chord lengths */
static void
NearestTwoCenters(const CmlModel *m, CmlVec3 v, int32 *best, double *d1, double *d2)
{
	double		b1 = INFINITY,
				b2 = INFINITY;

	*best = 0;
	for (int32 i = 0; i < m->n_zones; i++)
	{
		double		d = CmlChord2(v, m->zones[i].center);

		if (d < b1)
		{
			b2 = b1;
			b1 = d;
			*best = i;
		}
		else if (d < b2)
			b2 = d;
	}
	*d1 = sqrt(b1);
	*d2 = sqrt(b2);
}

/*
 * k-means: the nearest center b of p0 is the nearest for the whole cell when
 * d(p0, b) + rho < d(p0, s) - rho for the second nearest center s.
 */
static CmlZoneGrid *
KmeansGridBuild(const CmlModel *m)
{
	double		latmin = 90,
				latmax = -90,
				lonmin = 180,
				lonmax = -180,
				rmax = 0;
	GridTrig	t;
	CmlZoneGrid *g;

	if (m->n_zones < 2)
		return NULL;
	for (int32 i = 0; i < m->n_zones; i++)
	{
		latmin = Min(latmin, m->zones[i].lat);
		latmax = Max(latmax, m->zones[i].lat);
		lonmin = Min(lonmin, m->zones[i].lon);
		lonmax = Max(lonmax, m->zones[i].lon);
		rmax = Max(rmax, m->zones[i].radius_m);
	}
	/* the zones and their radii, with a margin */
	g = GridCreate(latmin, latmax, lonmin, lonmax, rmax * 1.1 + 100.0,
				   KMEANS_GRID_MIN_CELL_M, INFINITY, KMEANS_GRID_MAX_CELLS, &t);
	if (g == NULL)
		return NULL;
	for (int32 i = 0; i < g->nlat; i++)
	{
		double		rho = t.rho[i];

		for (int32 j = 0; j < g->nlon; j++)
		{
			int32		best;
			double		d1,
						d2;

			NearestTwoCenters(m, GRID_VEC(&t, 2 * i + 1, 2 * j + 1), &best, &d1, &d2);
			g->cell[i * g->nlon + j] = (d1 + rho < d2 - rho) ? GridValue(best) : CML_GRID_UNKNOWN;
		}
		CHECK_FOR_INTERRUPTS();
	}
	GridTrigFree(&t);
	return g;
}

/* DBSCAN: at most this many cells (512 kB), of eps / 2 or more, never over 4 eps */
#define DBSCAN_GRID_MAX_CELLS 262144
/* and at most this many sub-cells where cells are refined (4 MB) */
#define DBSCAN_GRID_MAX_SUBCELLS 2097152
/* a bin with at most this many cores is used core by core, not by its bounds */
#define DBSCAN_BIN_EXACT 4
#define DBSCAN_BIN_EXACT_REFINE 16
/* at most this many distances for refining (a few tenths of a second), the rest is searched */
#define DBSCAN_REFINE_BUDGET 100000000

/*
 * What is known about the cores around a cell's center p0: u1 bounds from
 * above the distance to some core of zone z1; la bounds from below the
 * distance to every core of zone za, which is the smallest such bound, and lb
 * bounds from below the distance to every core of any other zone.
 */
typedef struct CoreProof
{
	float		u1;
	float		la;
	float		lb;
	int32		z1;
	int32		za;
} CoreProof;

/* the label of bounds that hold for cores of several zones (za only, never z1) */
#define CORE_PROOF_MIXED (-2)

static inline void
CoreProofInit(CoreProof *p)
{
	p->u1 = INFINITY;
	p->la = INFINITY;
	p->lb = INFINITY;
	p->z1 = -1;
	p->za = -1;
}

/* Learn that a core of zone z is at most u and the cores of zone z at least l from p0 */
static inline void
CoreProofAdd(CoreProof *p, double u, double l, int32 z)
{
	if (u < p->u1)
	{
		p->u1 = u;
		p->z1 = z;
	}
	if (z == p->za)
		p->la = Min(p->la, l);
	else if (l < p->la)
	{
		p->lb = p->la;
		p->la = l;
		p->za = z;
	}
	else
		p->lb = Min(p->lb, l);
}

/*
 * The answer for every point within rho of p0 (chords; ce is eps): -1 when
 * every core is beyond eps + rho; z1 when that core is within eps - rho and
 * every core of another zone farther than it by more than 2 rho, so it is
 * within eps of each point and nearer than every other zone's core.  Floats
 * carry about 7 digits: the bounds keep a relative margin of 1e-5.
 */
static inline int32
CoreProofResult(const CoreProof *p, double rho, double ce)
{
	double		u1 = (double) p->u1 * (1.0 + 1e-5) + rho * (1.0 + 1e-5);
	double		lother = (double) (p->za != p->z1 ? p->la : p->lb) * (1.0 - 1e-5);

	if ((double) p->la * (1.0 - 1e-5) > ce + rho * (1.0 + 1e-5))
		return -1;
	if (u1 <= ce * (1.0 - 1e-9) && u1 < lother - rho * (1.0 + 1e-5))
		return p->z1;
	return CML_GRID_UNKNOWN;
}

/* The cores of a DBSCAN model binned by the cells of its grid */
typedef struct CoreBins
{
	int32		nbin;
	int32	   *cell_bin;		/* per cell: its bin, or -1 */
	int32	   *bin_cell;		/* per bin: its cell */
	int64	   *bin_start;		/* per bin, and one more: its cores */
	CmlVec3    *core;			/* by bin */
	int32	   *core_zone;
	int32	   *bin_zone;		/* the zone of all its cores, or -2 */
	CmlVec3    *rep;			/* the core nearest to the cell's center */
	CmlVec3    *center;			/* the cell's center */
	double	   *rho;			/* the cell's rho */
} CoreBins;

/*
 * Learn from a bin about the cores around p0: core by core when it has at
 * most exact_max, else by bounds: its core nearest to the cell's center (an
 * upper bound for its zone) and its cell's box (a lower bound for all its
 * cores; for a bin of several zones, one that counts against every zone).
 * Returns the distances computed.
 */
static inline int64
CoreProofAddBin(CoreProof *p, const CoreBins *b, int32 bin, CmlVec3 p0, int64 exact_max)
{
	int64		first = b->bin_start[bin];
	int64		end = b->bin_start[bin + 1];
	double		box;

	if (end - first <= exact_max)
	{
		for (int64 c = first; c < end; c++)
		{
			double		d = sqrt(CmlChord2(p0, b->core[c]));

			CoreProofAdd(p, d, d, b->core_zone[c]);
		}
		return end - first;
	}
	box = sqrt(CmlChord2(p0, b->center[bin])) - b->rho[bin];
	if (b->bin_zone[bin] < 0)
		CoreProofAdd(p, INFINITY, box, CORE_PROOF_MIXED);
	else
		CoreProofAdd(p, sqrt(CmlChord2(p0, b->rep[bin])), box, b->bin_zone[bin]);
	return 2;
}

/* Bin a model's cores by the cells of grid g */
static void
CoreBinsBuild(CoreBins *b, const CmlModel *m, const CmlZoneGrid *g, const GridTrig *t)
{
	int64		ncell = (int64) g->nlat * g->nlon;
	int64		n = m->n_core;
	int32	   *cell_of = palloc_extended(sizeof(int32) * n, MCXT_ALLOC_HUGE);
	int64	   *fill;

	b->cell_bin = palloc_extended(sizeof(int32) * ncell, MCXT_ALLOC_HUGE);
	memset(b->cell_bin, -1, sizeof(int32) * ncell);
	b->nbin = 0;
	for (int64 c = 0; c < n; c++)
	{
		int32		i = (int32) floor((m->core_lat[c] - g->lat0) * g->inv_dlat);
		int32		j = (int32) floor((m->core_lon[c] - g->lon0) * g->inv_dlon);

		/* the grid's margin keeps every core inside */
		i = Min(Max(i, 0), g->nlat - 1);
		j = Min(Max(j, 0), g->nlon - 1);
		cell_of[c] = i * g->nlon + j;
		if (b->cell_bin[cell_of[c]] < 0)
			b->cell_bin[cell_of[c]] = b->nbin++;
	}
	b->bin_cell = palloc(sizeof(int32) * b->nbin);
	b->bin_start = palloc0(sizeof(int64) * (b->nbin + 1));
	b->bin_zone = palloc(sizeof(int32) * b->nbin);
	b->rep = palloc(sizeof(CmlVec3) * b->nbin);
	b->center = palloc(sizeof(CmlVec3) * b->nbin);
	b->rho = palloc(sizeof(double) * b->nbin);
	b->core = palloc_extended(sizeof(CmlVec3) * Max(n, 1), MCXT_ALLOC_HUGE);
	b->core_zone = palloc_extended(sizeof(int32) * Max(n, 1), MCXT_ALLOC_HUGE);
	for (int64 c = 0; c < n; c++)
		b->bin_start[b->cell_bin[cell_of[c]] + 1]++;
	for (int32 k = 0; k < b->nbin; k++)
		b->bin_start[k + 1] += b->bin_start[k];
	fill = palloc(sizeof(int64) * Max(b->nbin, 1));
	memcpy(fill, b->bin_start, sizeof(int64) * b->nbin);
	for (int64 c = 0; c < n; c++)
	{
		int32		k = b->cell_bin[cell_of[c]];

		b->bin_cell[k] = cell_of[c];
		b->core[fill[k]] = CmlLatLonToVec(m->core_lat[c], m->core_lon[c]);
		b->core_zone[fill[k]++] = m->core_zone[c];
	}
	for (int32 k = 0; k < b->nbin; k++)
	{
		int32		i = b->bin_cell[k] / g->nlon;
		int32		j = b->bin_cell[k] % g->nlon;
		double		best = INFINITY;

		b->center[k] = GRID_VEC(t, 2 * i + 1, 2 * j + 1);
		b->rho[k] = t->rho[i];
		b->bin_zone[k] = b->core_zone[b->bin_start[k]];
		for (int64 c = b->bin_start[k]; c < b->bin_start[k + 1]; c++)
		{
			double		d = CmlChord2(b->center[k], b->core[c]);

			if (b->core_zone[c] != b->bin_zone[k])
				b->bin_zone[k] = -2;
			if (d < best)
			{
				best = d;
				b->rep[k] = b->core[c];
			}
		}
	}
	pfree(fill);
	pfree(cell_of);
}

/*
 * Refine an undecided cell (i, j) into f x f sub-cells, proven from the
 * cores of the bins within (wlat, wlon) cells that can reach the cell; bins
 * is room for the bins' numbers.
 */
static int64
RefineCell(CmlZoneGrid *g, const CoreBins *b, const GridTrig *t, int32 i, int32 j,
		   int32 wlat, int32 wlon, double ce, int32 *bins, int16 *out)
{
	int32		f = g->sub_f;
	double		dlat = 1.0 / g->inv_dlat,
				dlon = 1.0 / g->inv_dlon;
	double		rho = t->rho[i] / f * 1.01 + 1e-12;
	CmlVec3		c0 = GRID_VEC(t, 2 * i + 1, 2 * j + 1);
	int32		nbins = 0;
	int64		work = 0;
	double		sla[CML_GRID_MAX_F],
				cla[CML_GRID_MAX_F],
				slo[CML_GRID_MAX_F],
				clo[CML_GRID_MAX_F];

	/* a bin whose cores are all beyond eps + rho of every sub-cell center cannot matter */
	for (int32 ni = Max(0, i - wlat); ni <= Min(g->nlat - 1, i + wlat); ni++)
		for (int32 nj = Max(0, j - wlon); nj <= Min(g->nlon - 1, j + wlon); nj++)
		{
			int32		bin = b->cell_bin[ni * g->nlon + nj];

			if (bin >= 0 && sqrt(CmlChord2(c0, b->center[bin])) - b->rho[bin] - t->rho[i] <=
				(ce + rho) * (1.0 + 1e-9))
				bins[nbins++] = bin;
		}
	for (int32 s = 0; s < f; s++)
	{
		sincos((g->lat0 + (i + (s + 0.5) / f) * dlat) * (M_PI / 180.0), &sla[s], &cla[s]);
		sincos((g->lon0 + (j + (s + 0.5) / f) * dlon) * (M_PI / 180.0), &slo[s], &clo[s]);
	}
	for (int32 si = 0; si < f; si++)
	{
		for (int32 sj = 0; sj < f; sj++)
		{
			CmlVec3		p0 = {cla[si] * clo[sj], cla[si] * slo[sj], sla[si]};
			CoreProof	p;

			CoreProofInit(&p);
			for (int32 r = 0; r < nbins; r++)
				work += CoreProofAddBin(&p, b, bins[r], p0, DBSCAN_BIN_EXACT_REFINE);
			out[si * f + sj] = GridValue(CoreProofResult(&p, rho, ce));
		}
	}
	return work;
}

/*
 * DBSCAN: predict answers the zone of the nearest core point within eps, or
 * -1 (CoreProofResult proves a cell's answer).  The cores are binned by cell;
 * each bin tells the cells within reach (eps + rho of both cells) about its
 * cores: work linear in the cells with cores.  Undecided cells near cores
 * are then split into sub-cells of about eps / 4, proven the same way.
 */
static CmlZoneGrid *
DbscanGridBuild(const CmlModel *m)
{
	double		latmin = 90,
				latmax = -90,
				lonmin = 180,
				lonmax = -180;
	double		ce = sqrt(CmlMetresToChord2(m->eps_m));
	double		rho_max = 0,
				reach_m,
				coslat,
				cell_m;
	int64		ncell;
	int32		wlat,
				wlon,
				nrefine = 0;
	int64		work = 0;
	int32	   *bins;
	CoreProof  *proof;
	CoreBins	b;
	GridTrig	t;
	CmlZoneGrid *g;

	if (m->n_core == 0 || m->n_zones == 0)
		return NULL;
	for (int64 c = 0; c < m->n_core; c++)
	{
		latmin = Min(latmin, m->core_lat[c]);
		latmax = Max(latmax, m->core_lat[c]);
		lonmin = Min(lonmin, m->core_lon[c]);
		lonmax = Max(lonmax, m->core_lon[c]);
	}
	/* cells of at most 4 eps: the margin holds every cell a core can reach */
	g = GridCreate(latmin, latmax, lonmin, lonmax, 8.0 * m->eps_m,
				   m->eps_m * 0.5, m->eps_m * 4.0, DBSCAN_GRID_MAX_CELLS, &t);
	if (g == NULL)
		return NULL;
	ncell = (int64) g->nlat * g->nlon;
	for (int32 i = 0; i < g->nlat; i++)
		rho_max = Max(rho_max, t.rho[i]);
	/* the cells whose centers can be within eps + 2 rho of a bin's center (arcs exceed chords a little) */
	reach_m = (ce + 2.0 * rho_max) * CML_EARTH_RADIUS_M * 1.01;
	coslat = cos(Max(fabs(g->lat0), fabs(g->lat0 + g->nlat / g->inv_dlat)) * M_PI / 180.0);
	wlat = (int32) ceil(reach_m * g->inv_dlat / METRES_PER_DEGREE) + 1;
	wlon = (int32) ceil(reach_m * g->inv_dlon / (METRES_PER_DEGREE * coslat)) + 1;
	cell_m = METRES_PER_DEGREE / g->inv_dlat;
	g->sub_f = Min(CML_GRID_MAX_F, Max(2, (int32) ceil(cell_m / (m->eps_m / 3.0))));

	CoreBinsBuild(&b, m, g, &t);
	proof = palloc_extended(sizeof(CoreProof) * ncell, MCXT_ALLOC_HUGE);
	for (int64 x = 0; x < ncell; x++)
		CoreProofInit(&proof[x]);
	for (int32 k = 0; k < b.nbin; k++)
	{
		int32		bi = b.bin_cell[k] / g->nlon;
		int32		bj = b.bin_cell[k] % g->nlon;

		for (int32 i = Max(0, bi - wlat); i <= Min(g->nlat - 1, bi + wlat); i++)
			for (int32 j = Max(0, bj - wlon); j <= Min(g->nlon - 1, bj + wlon); j++)
				CoreProofAddBin(&proof[(int64) i * g->nlon + j], &b, k,
								GRID_VEC(&t, 2 * i + 1, 2 * j + 1), DBSCAN_BIN_EXACT);
		if ((k & 255) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	for (int32 i = 0; i < g->nlat; i++)
		for (int32 j = 0; j < g->nlon; j++)
		{
			int64		x = (int64) i * g->nlon + j;

			g->cell[x] = GridValue(CoreProofResult(&proof[x], t.rho[i], ce));
			nrefine += g->cell[x] == CML_GRID_UNKNOWN;
		}
	pfree(proof);

	/* sub-cells for the undecided cells, as many as fit */
	nrefine = Min(nrefine, DBSCAN_GRID_MAX_SUBCELLS / (g->sub_f * g->sub_f));
	if (nrefine > 0)
	{
		g->block = palloc_extended(sizeof(int32) * ncell, MCXT_ALLOC_HUGE);
		g->sub = palloc_extended(sizeof(int16) * nrefine * g->sub_f * g->sub_f, MCXT_ALLOC_HUGE);
	}
	bins = palloc(sizeof(int32) * (2 * wlat + 1) * (2 * wlon + 1));
	for (int64 x = 0; x < ncell && g->nblock < nrefine && work < DBSCAN_REFINE_BUDGET; x++)
	{
		if (g->cell[x] != CML_GRID_UNKNOWN)
			continue;
		work += RefineCell(g, &b, &t, (int32) (x / g->nlon), (int32) (x % g->nlon), wlat, wlon,
						   ce, bins, g->sub + (int64) g->nblock * g->sub_f * g->sub_f);
		g->cell[x] = CML_GRID_REFINED;
		g->block[x] = g->nblock++;
		if ((g->nblock & 255) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	pfree(bins);
	GridTrigFree(&t);
	pfree(b.cell_bin);
	pfree(b.bin_cell);
	pfree(b.bin_start);
	pfree(b.core);
	pfree(b.core_zone);
	pfree(b.bin_zone);
	pfree(b.rep);
	pfree(b.center);
	pfree(b.rho);
	if (message_level_is_interesting(DEBUG1))
	{
		int64		nknown = 0,
					nnoise = 0,
					sknown = 0;

		for (int64 x = 0; x < ncell; x++)
		{
			nknown += g->cell[x] >= -1;
			nnoise += g->cell[x] == -1;
		}
		for (int64 x = 0; x < (int64) g->nblock * g->sub_f * g->sub_f; x++)
			sknown += g->sub[x] != CML_GRID_UNKNOWN;
		elog(DEBUG1, "cinematic_ml: DBSCAN grid of %d x %d cells of %.1f m (%d bins): %lld known (%lld noise), %d refined into %d x %d: %lld of their sub-cells known",
			 g->nlat, g->nlon, cell_m, b.nbin, (long long) nknown, (long long) nnoise,
			 g->nblock, g->sub_f, g->sub_f, (long long) sknown);
	}
	return g;
}

/* Build what predict needs (the DBSCAN core index and grid, the k-means grid) */
void
CmlModelPrepare(CmlModel *m)
{
	if (m->algorithm == CML_ALG_DBSCAN && m->n_core > 0 && m->core_index == NULL)
	{
		m->core_index = CmlCoreIndexBuild(m);
		m->zone_grid = DbscanGridBuild(m);
	}
	if (m->algorithm == CML_ALG_KMEANS && m->zone_grid == NULL)
		m->zone_grid = KmeansGridBuild(m);
}

/* The grid's answer for a point, or CML_GRID_UNKNOWN */
static inline int32
GridLookup(const CmlZoneGrid *g, double lat, double lon)
{
	double		fi = (lat - g->lat0) * g->inv_dlat;
	double		fj = (lon - g->lon0) * g->inv_dlon;
	int32		i,
				j,
				x,
				zone;

	if (!(fi >= 0 && fj >= 0 && fi < g->nlat && fj < g->nlon))
		return CML_GRID_UNKNOWN;
	i = (int32) fi;
	j = (int32) fj;
	x = i * g->nlon + j;
	zone = g->cell[x];
	if (zone == CML_GRID_REFINED)
	{
		/* a refined cell: its sub-cell */
		int32		f = g->sub_f;
		int32		si = Min((int32) ((fi - i) * f), f - 1);
		int32		sj = Min((int32) ((fj - j) * f), f - 1);

		zone = g->sub[(int64) g->block[x] * f * f + si * f + sj];
	}
	return zone;
}

/*
 * The zone of a point (predict_cluster, is_hotspot): from the grid when it
 * knows, else the exact search.  A k-means hotspot needs the distance to the
 * zone's centroid, so it always takes the exact search; a DBSCAN hotspot is
 * any point with a zone.
 */
int32
CmlPredictCluster(const CmlModel *m, double lat, double lon, bool *is_hotspot)
{
	if (m->zone_grid != NULL && (is_hotspot == NULL || m->algorithm == CML_ALG_DBSCAN))
	{
		int32		zone = GridLookup(m->zone_grid, lat, lon);

		if (zone != CML_GRID_UNKNOWN)
		{
			if (is_hotspot)
				*is_hotspot = zone >= 0;
			return zone;
		}
	}
	if (is_hotspot == NULL && m->algorithm == CML_ALG_KMEANS && m->n_zones == 1)
		return 0;
	return CmlPredictZone(m, CmlLatLonToVec(lat, lon), is_hotspot, NULL);
}


/* Zone whose centroid is nearest on the sphere; -1 without zones */
static int32
NearestCentroid(const CmlModel *m, CmlVec3 v, double *chord2)
{
	int32		best = -1;
	double		bestd = 5.0;

	for (int32 i = 0; i < m->n_zones; i++)
	{
		double		d = CmlChord2(v, m->zones[i].unit);

		if (d < bestd)
		{
			bestd = d;
			best = i;
		}
	}
	*chord2 = bestd;
	return best;
}

/*
 * The zone of a point, and when asked whether it is a hotspot and its
 * distance to the zone's centroid (k-means only; NaN for DBSCAN).  k-means:
 * the nearest 3-D mean (the training rule), a hotspot within that zone's
 * radius, compared as chords so no inverse trigonometry runs per row.
 * DBSCAN: one look-up in the core index.
 */
int32
CmlPredictZone(const CmlModel *m, CmlVec3 v, bool *is_hotspot, double *distance_m)
{
	int32		best;

	if (is_hotspot)
		*is_hotspot = false;
	if (distance_m)
		*distance_m = NAN;
	if (m->n_zones == 0)
		return -1;
	if (m->algorithm == CML_ALG_DBSCAN)
	{
		int32		zone = CmlCoreIndexLookup(m, v);

		if (is_hotspot)
			*is_hotspot = zone >= 0;
		return zone;
	}
	best = 0;
	{
		double		bestd = CmlChord2(v, m->zones[0].center);

		for (int32 i = 1; i < m->n_zones; i++)
		{
			double		d = CmlChord2(v, m->zones[i].center);

			if (d < bestd)
			{
				bestd = d;
				best = i;
			}
		}
	}
	if (is_hotspot || distance_m)
	{
		double		c2 = CmlChord2(v, m->zones[best].unit);

		/* the slack keeps the farthest training point inside despite rounding */
		if (is_hotspot)
			*is_hotspot = c2 <= m->zones[best].radius_chord2 * (1.0 + 1e-12);
		if (distance_m)
			*distance_m = CmlChord2ToMetres(c2);
	}
	return best;
}

/* Predict one point with the distances predict() reports */
void
CmlPredict(const CmlModel *m, double lat, double lon, CmlPrediction *out)
{
	CmlVec3		v = CmlLatLonToVec(lat, lon);
	int32		zone = CmlPredictZone(m, v, &out->is_hotspot, &out->distance_m);
	double		chord2;

	out->cluster = zone;
	out->zone_radius_m = NAN;
	if (m->n_zones == 0)
		return;
	if (m->algorithm == CML_ALG_DBSCAN)
	{
		/* the distance to the point's zone, or to the nearest zone for noise */
		if (zone < 0)
		{
			zone = NearestCentroid(m, v, &chord2);
			out->distance_m = CmlChord2ToMetres(chord2);
		}
		else
			out->distance_m = CmlVecDistance(v, m->zones[zone].unit);
	}
	out->zone_radius_m = m->zones[zone].radius_m;
}

/* Append a float as JSON (null when not finite) */
void
CmlAppendJsonFloat(StringInfo buf, double v)
{
	if (isfinite(v))
		appendStringInfo(buf, "%.15g", v);
	else
		appendStringInfoString(buf, "null");
}

/* Describe a model as jsonb */
Datum
CmlModelInfoJsonb(const CmlModel *m)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"format_version\": %d, \"algorithm\": \"%s\", ",
					 CML_FORMAT_VERSION, CmlAlgorithmName(m->algorithm));
	appendStringInfoString(&buf, "\"geometry\": \"sphere-3d\", \"earth_radius_m\": 6371000, ");
	if (m->algorithm == CML_ALG_KMEANS)
	{
		appendStringInfo(&buf, "\"params\": {\"k\": %d, \"seed\": " UINT64_FORMAT
						 ", \"n_init\": %d, \"max_iter\": %d, \"tol\": ",
						 m->k, m->seed, m->n_init, m->max_iter);
		CmlAppendJsonFloat(&buf, m->tol);
		appendStringInfoString(&buf, "}, ");
	}
	else
	{
		appendStringInfoString(&buf, "\"params\": {\"eps_m\": ");
		CmlAppendJsonFloat(&buf, m->eps_m);
		appendStringInfo(&buf, ", \"min_points\": %d}, ", m->min_points);
	}
	appendStringInfo(&buf, "\"n_train\": " INT64_FORMAT ", \"n_iter\": %d, \"n_core\": " INT64_FORMAT
					 ", \"inertia\": ", m->n_train, m->n_iter, m->n_core);
	CmlAppendJsonFloat(&buf, m->inertia);
	appendStringInfoString(&buf, ", \"inertia_per_point\": ");
	CmlAppendJsonFloat(&buf, m->n_train > m->n_noise ? m->inertia / (m->n_train - m->n_noise) : 0.0);
	appendStringInfoString(&buf, ", ");
	CmlAppendZoneMetrics(&buf, m);
	appendStringInfoString(&buf, ", \"zones\": [");
	for (int i = 0; i < m->n_zones; i++)
	{
		const CmlZone *z = &m->zones[i];

		appendStringInfo(&buf, "%s{\"cluster\": %d, \"n_points\": " INT64_FORMAT ", \"lat\": ",
						 i > 0 ? ", " : "", i, z->n_points);
		CmlAppendJsonFloat(&buf, z->lat);
		appendStringInfoString(&buf, ", \"lon\": ");
		CmlAppendJsonFloat(&buf, z->lon);
		appendStringInfoString(&buf, ", \"radius_m\": ");
		CmlAppendJsonFloat(&buf, z->radius_m);
		appendStringInfoString(&buf, ", \"p90_radius_m\": ");
		CmlAppendJsonFloat(&buf, z->p90_m);
		appendStringInfoString(&buf, ", \"mean_distance_m\": ");
		CmlAppendJsonFloat(&buf, z->mean_m);
		appendStringInfoString(&buf, "}");
	}
	appendStringInfoString(&buf, "]}");
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}
