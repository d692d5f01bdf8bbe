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

	if ((size_t) buf.len - VARHDRSZ > PG_UINT32_MAX || buf.len > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("model is too large to store (%d bytes)", buf.len)));

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

/* At most this many cells in a k-means zone grid (about 1 MB), and not smaller than 20 m */
#define ZONE_GRID_MAX_CELLS 262144
#define ZONE_GRID_MIN_CELL_M 20.0

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
 * A lat/lon grid over a k-means model's zones.  A cell stores a zone when
 * that zone is the nearest for every point of the cell: with p0 the cell's
 * center and rho an upper bound of the chord from p0 to any point of the
 * cell, the nearest center b of p0 wins for the whole cell when
 * d(p0, b) + rho < d(p0, s) - rho for the second nearest s (triangle
 * inequality).  Such a cell answers predict_cluster with no trigonometry;
 * other cells, and points outside the grid, take the exact search.  No grid
 * near the poles or for zones spread over more than 60 degrees.
 */
static CmlZoneGrid *
ZoneGridBuild(const CmlModel *m)
{
	double		latmin = 90,
				latmax = -90,
				lonmin = 180,
				lonmax = -180,
				rmax = 0;
	double		lat0,
				lon0,
				height_m,
				width_m,
				cell_m,
				dlat,
				dlon,
				coslat;
	int32		nlat,
				nlon;
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
	rmax = rmax * 1.1 + 100.0;
	latmin -= rmax / 111195.0;
	latmax += rmax / 111195.0;
	if (latmin < -80.0 || latmax > 80.0 || lonmax - lonmin > 60.0 || latmax - latmin > 60.0)
		return NULL;
	/* the smallest cosine of the box: degrees of longitude are shortest there */
	coslat = cos(Max(fabs(latmin), fabs(latmax)) * M_PI / 180.0);
	lonmin -= rmax / (111195.0 * coslat);
	lonmax += rmax / (111195.0 * coslat);
	if (lonmin < -180.0 || lonmax > 180.0)
		return NULL;
	height_m = (latmax - latmin) * 111195.0;
	width_m = (lonmax - lonmin) * 111195.0 * cos(Min(fabs(latmin), fabs(latmax)) * M_PI / 180.0);
	cell_m = Max(ZONE_GRID_MIN_CELL_M, sqrt(height_m * width_m / ZONE_GRID_MAX_CELLS));
	dlat = cell_m / 111195.0;
	dlon = cell_m / (111195.0 * coslat);
	nlat = (int32) ceil((latmax - latmin) / dlat);
	nlon = (int32) ceil((lonmax - lonmin) / dlon);
	if ((double) nlat * nlon > 2.0 * ZONE_GRID_MAX_CELLS)
		return NULL;
	lat0 = latmin;
	lon0 = lonmin;

	g = palloc(sizeof(CmlZoneGrid));
	g->lat0 = lat0;
	g->lon0 = lon0;
	g->inv_dlat = 1.0 / dlat;
	g->inv_dlon = 1.0 / dlon;
	g->nlat = nlat;
	g->nlon = nlon;
	g->cell = palloc(sizeof(int32) * nlat * nlon);

	/* sines and cosines of the grid's lines and cell centers: vectors need no more trigonometry */
	{
		double	   *sla = palloc(sizeof(double) * (2 * nlat + 1));
		double	   *cla = palloc(sizeof(double) * (2 * nlat + 1));
		double	   *slo = palloc(sizeof(double) * (2 * nlon + 1));
		double	   *clo = palloc(sizeof(double) * (2 * nlon + 1));

		/* index 2i: the line i; 2i + 1: the center of cell i */
		for (int32 i = 0; i <= 2 * nlat; i++)
			sincos((lat0 + 0.5 * i * dlat) * (M_PI / 180.0), &sla[i], &cla[i]);
		for (int32 j = 0; j <= 2 * nlon; j++)
			sincos((lon0 + 0.5 * j * dlon) * (M_PI / 180.0), &slo[j], &clo[j]);
#define GRID_VEC(i, j) ((CmlVec3) {cla[i] * clo[j], cla[i] * slo[j], sla[i]})
		for (int32 i = 0; i < nlat; i++)
		{
			for (int32 j = 0; j < nlon; j++)
			{
				CmlVec3		p0 = GRID_VEC(2 * i + 1, 2 * j + 1);
				double		rho = 0;
				int32		best;
				double		d1,
							d2;

				/* the farthest point of a small lat/lon cell from its center is a corner */
				rho = Max(rho, CmlChord2(p0, GRID_VEC(2 * i, 2 * j)));
				rho = Max(rho, CmlChord2(p0, GRID_VEC(2 * i, 2 * j + 2)));
				rho = Max(rho, CmlChord2(p0, GRID_VEC(2 * i + 2, 2 * j)));
				rho = Max(rho, CmlChord2(p0, GRID_VEC(2 * i + 2, 2 * j + 2)));
				rho = sqrt(rho) * 1.01 + 1e-12; /* margin for curvature and rounding */
				NearestTwoCenters(m, p0, &best, &d1, &d2);
				g->cell[i * nlon + j] = (d1 + rho < d2 - rho) ? best : -1;
			}
			CHECK_FOR_INTERRUPTS();
		}
#undef GRID_VEC
		pfree(sla);
		pfree(cla);
		pfree(slo);
		pfree(clo);
	}
	return g;
}

/* Build what predict needs (the DBSCAN core index, the k-means zone grid) */
void
CmlModelPrepare(CmlModel *m)
{
	if (m->algorithm == CML_ALG_DBSCAN && m->n_core > 0 && m->core_index == NULL)
		m->core_index = CmlCoreIndexBuild(m);
	if (m->algorithm == CML_ALG_KMEANS && m->zone_grid == NULL)
		m->zone_grid = ZoneGridBuild(m);
}

/* The zone of a point (predict_cluster): from the k-means grid when it knows, else exact */
int32
CmlPredictCluster(const CmlModel *m, double lat, double lon)
{
	const CmlZoneGrid *g = m->zone_grid;

	if (g != NULL)
	{
		double		fi = (lat - g->lat0) * g->inv_dlat;
		double		fj = (lon - g->lon0) * g->inv_dlon;

		if (fi >= 0 && fj >= 0 && fi < g->nlat && fj < g->nlon)
		{
			int32		zone = g->cell[(int32) fi * g->nlon + (int32) fj];

			if (zone >= 0)
				return zone;
		}
	}
	if (m->algorithm == CML_ALG_KMEANS && m->n_zones == 1)
		return 0;
	return CmlPredictZone(m, CmlLatLonToVec(lat, lon), NULL, NULL);
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
