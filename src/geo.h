/*
 * geo.h — the one geometry of cinematic_ml
 *
 * Points are WGS84 degrees on a sphere of radius 6,371,000 m.  Every algorithm
 * works on 3-D unit vectors: the chord between two unit vectors is a monotonic
 * function of the great-circle distance, so neighbour tests, nearest-centroid
 * searches and grids have no seam at the antimeridian or the poles.  Distances
 * shown to users are great-circle (haversine) metres.
 */
#ifndef CML_GEO_H
#define CML_GEO_H

#include <math.h>

#define CML_EARTH_RADIUS_M 6371000.0

typedef struct CmlVec3
{
	double		x;
	double		y;
	double		z;
} CmlVec3;

/* Raise a precise ERROR unless (lat, lon) is a finite WGS84 coordinate */
extern void CmlCheckLatLon(double lat, double lon);

/* True when (lat, lon) is a finite WGS84 coordinate (no error raised) */
static inline bool
CmlLatLonValid(double lat, double lon)
{
	return isfinite(lat) && isfinite(lon) &&
		lat >= -90.0 && lat <= 90.0 && lon >= -180.0 && lon <= 180.0;
}

/*
 * Sine and cosine of an angle in degrees, within a few units in the last place
 * of libm's (absolute error under 1e-15) and about three times faster: the
 * nearest multiple k of 1.40625 degrees (360 / 256, exact in binary) from a
 * table, the rest (at most 0.70 degrees) by short Taylor polynomials, then
 * the angle-sum formulas.  The table is filled when the library loads.
 */
#define CML_SINCOS_STEP_DEG 1.40625
/* the polynomials' coefficients (geo.c's AVX2 code uses them too) */
#define CML_SIN_C3 (-1.0 / 6)
#define CML_SIN_C5 (1.0 / 120)
#define CML_SIN_C7 (-1.0 / 5040)
#define CML_SIN_C9 (1.0 / 362880)
#define CML_COS_C2 (-0.5)
#define CML_COS_C4 (1.0 / 24)
#define CML_COS_C6 (-1.0 / 720)
#define CML_COS_C8 (1.0 / 40320)
extern double CmlSinTable[256];
extern double CmlCosTable[256];

static inline void
CmlSinCosDeg(double deg, double *s, double *c)
{
	double		k = rint(deg * (1.0 / CML_SINCOS_STEP_DEG));
	double		d = (deg - k * CML_SINCOS_STEP_DEG) * (M_PI / 180.0);
	double		d2 = d * d;
	double		sd = d + d * d2 * (CML_SIN_C3 + d2 * (CML_SIN_C5 + d2 * (CML_SIN_C7 + d2 * CML_SIN_C9)));
	double		cd = 1.0 + d2 * (CML_COS_C2 + d2 * (CML_COS_C4 + d2 * (CML_COS_C6 + d2 * CML_COS_C8)));
	int			i = ((int) k) & 255;

	*s = CmlSinTable[i] * cd + CmlCosTable[i] * sd;
	*c = CmlCosTable[i] * cd - CmlSinTable[i] * sd;
}

/*
 * CmlLatLonToVec of n coordinates, and CmlChord2ToMetres of n values in place
 * (below), with AVX2 when cml_use_avx2 (cinematic_ml.use_avx2) and the CPU has it
 */
extern bool cml_use_avx2;
extern void CmlLatLonToVecs(const double *ll, int64 stride, CmlVec3 *out, int64 n);
extern void CmlChord2ToMetresN(double *v, int64 n);

/* Coordinate in degrees of a (not necessarily unit) non-zero vector */
extern void CmlVecToLatLon(CmlVec3 v, double *lat, double *lon);

#ifdef CML_PLANAR_EXPERIMENT
/*
 * Benchmark-only build (bench/planar_experiment.sh, never installed for use):
 * what a city-only implementation would compute, a 2-D local projection
 * around Paris scaled to the unit sphere, distances in two coordinates.
 */
static inline CmlVec3
CmlLatLonToVec(double lat, double lon)
{
	CmlVec3		v = {lon * (M_PI / 180.0) * 0.65825, lat * (M_PI / 180.0), 0.0};

	return v;
}

static inline double
CmlChord2(CmlVec3 a, CmlVec3 b)
{
	double		dx = a.x - b.x;
	double		dy = a.y - b.y;

	return dx * dx + dy * dy;
}
#else
/* Unit vector of a coordinate in degrees (any finite degrees within +-1e6) */
static inline CmlVec3
CmlLatLonToVec(double lat, double lon)
{
	double		sphi,
				cphi,
				slam,
				clam;
	CmlVec3		v;

	CmlSinCosDeg(lat, &sphi, &cphi);
	CmlSinCosDeg(lon, &slam, &clam);
	v.x = cphi * clam;
	v.y = cphi * slam;
	v.z = sphi;
	return v;
}

/* Squared chord between two unit vectors */
static inline double
CmlChord2(CmlVec3 a, CmlVec3 b)
{
	double		dx = a.x - b.x;
	double		dy = a.y - b.y;
	double		dz = a.z - b.z;

	return dx * dx + dy * dy + dz * dz;
}
#endif							/* CML_PLANAR_EXPERIMENT */

/*
 * asin(h) for 0 <= h <= 1.  Below 1/64 (distances under ~200 km, nearly all
 * of a city's), its Taylor series to h^11: the first term left out is below
 * 2e-22 of the result, far under a double's rounding, and it is 5x faster
 * than libm's asin (which the zone metrics call for every point).
 */
#define CML_ASIN_SERIES_MAX 0.015625
#define CML_ASIN_C3 (1.0 / 6.0)
#define CML_ASIN_C5 (3.0 / 40.0)
#define CML_ASIN_C7 (5.0 / 112.0)
#define CML_ASIN_C9 (35.0 / 1152.0)
#define CML_ASIN_C11 (63.0 / 2816.0)

static inline double
CmlAsin(double h)
{
	if (h < CML_ASIN_SERIES_MAX)
	{
		double		h2 = h * h;

		return h + h * h2 * (CML_ASIN_C3 + h2 * (CML_ASIN_C5 + h2 * (CML_ASIN_C7 +
																 h2 * (CML_ASIN_C9 + h2 * CML_ASIN_C11))));
	}
	return asin(h);
}

/* Great-circle metres from a squared chord of unit vectors */
static inline double
CmlChord2ToMetres(double chord2)
{
	double		half = sqrt(chord2) * 0.5;

	if (half > 1.0)
		half = 1.0;
	return 2.0 * CML_EARTH_RADIUS_M * CmlAsin(half);
}

/* Squared chord of unit vectors that corresponds to a great-circle distance in metres */
static inline double
CmlMetresToChord2(double metres)
{
	double		ang = metres / CML_EARTH_RADIUS_M;
	double		c;

	if (ang >= M_PI)
		return 4.0;
	c = 2.0 * sin(ang * 0.5);
	return c * c;
}

/* Great-circle distance in metres between two unit vectors */
static inline double
CmlVecDistance(CmlVec3 a, CmlVec3 b)
{
	return CmlChord2ToMetres(CmlChord2(a, b));
}

/* Haversine distance in metres between two coordinates in degrees */
extern double CmlHaversine(double lat1, double lon1, double lat2, double lon2);

/* Normalise a vector to unit length; false when it is (nearly) zero */
extern bool CmlVecNormalize(CmlVec3 *v);

/* Another point of a set (a center, a zone's centroid) and its chord distance */
typedef struct CmlNeighbour
{
	double		d;
	int32		j;
} CmlNeighbour;

/*
 * For each of the k points c[], its k - 1 others sorted by chord distance
 * (then index), at nb + j (k - 1): lists that let a nearest-point search stop
 * where the triangle inequality rules out the rest
 */
extern void CmlSortedNeighbours(const CmlVec3 *c, int32 k, CmlNeighbour *nb);

/* Keep the two smallest squared chords seen, *b1 <= *b2, ties to the lowest index */
static inline void
CmlKeepTwo(double d, int32 j, double *b1, double *b2, int32 *best)
{
	if (d < *b1 || (d == *b1 && j < *best))
	{
		*b2 = *b1;
		*b1 = d;
		*best = j;
	}
	else if (d < *b2)
		*b2 = d;
}

/*
 * The nearest of the k points c[] to x, with the squared chords to the
 * nearest and second nearest into *b1 and *b2 (INFINITY if k = 1)
 */
static inline int32
CmlNearestTwo(CmlVec3 x, const CmlVec3 *c, int32 k, double *b1, double *b2)
{
	int32		best = 0;
	double		d1 = CmlChord2(x, c[0]);
	double		d2 = INFINITY;

	for (int32 j = 1; j < k; j++)
		CmlKeepTwo(CmlChord2(x, c[j]), j, &d1, &d2, &best);
	*b1 = d1;
	*b2 = d2;
	return best;
}

/*
 * The same, knowing the squared chord da2 from x to c[a] and a's others
 * sorted (nb: CmlSortedNeighbours' list for a): they are visited by their
 * distance to a, and the search stops where that distance, less x's to a,
 * exceeds the second nearest found (margins cover rounding).  The same
 * answer as CmlNearestTwo, ties included.
 */
static inline int32
CmlNearestTwoSorted(CmlVec3 x, const CmlVec3 *c, const CmlNeighbour *nb, int32 k, int32 a,
					double da2, double *b1, double *b2)
{
	int32		best = a;
	double		ua = sqrt(da2);
	double		d1 = da2;
	double		d2 = INFINITY;

	for (int32 t = 0; t < k - 1; t++)
	{
		double		gap = nb[t].d - ua - 1e-15;

		if (gap > 0.0 && gap * gap > d2 * (1.0 + 1e-9))
			break;
		CmlKeepTwo(CmlChord2(x, c[nb[t].j]), nb[t].j, &d1, &d2, &best);
	}
	*b1 = d1;
	*b2 = d2;
	return best;
}

#endif							/* CML_GEO_H */
