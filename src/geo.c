/*
 * geo.c — coordinate validation and spherical distances
 */
#include "postgres.h"

#include "common/shortest_dec.h"

#include "geo.h"

double		CmlSinTable[256];
double		CmlCosTable[256];

/* cinematic_ml.use_avx2 */
bool		cml_use_avx2 = true;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CML_HAVE_AVX2_PATH 1
static bool CmlHaveAvx2 = false;
static bool CmlAvx2Agrees(void);
#endif

/* Fill CmlSinCosDeg's table (libm's values) when the library loads */
static void CmlSinCosInit(void) __attribute__((constructor));
static void
CmlSinCosInit(void)
{
	for (int i = 0; i < 256; i++)
		sincos(i * CML_SINCOS_STEP_DEG * (M_PI / 180.0), &CmlSinTable[i], &CmlCosTable[i]);
#ifdef CML_HAVE_AVX2_PATH
	__builtin_cpu_init();
	CmlHaveAvx2 = __builtin_cpu_supports("avx2") && CmlAvx2Agrees();
#endif
}

#ifdef CML_HAVE_AVX2_PATH
/*
 * CmlSinCosDeg of four angles with AVX2, operation for operation (no fused
 * multiply-add: AVX2 only), so the same doubles
 */
static inline __attribute__((target("avx2"), always_inline)) void
SinCosDeg4(__m256d deg, __m256d *s, __m256d *c)
{
	__m256d		k = _mm256_round_pd(_mm256_mul_pd(deg, _mm256_set1_pd(1.0 / CML_SINCOS_STEP_DEG)),
									_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m256d		d = _mm256_mul_pd(_mm256_sub_pd(deg, _mm256_mul_pd(k, _mm256_set1_pd(CML_SINCOS_STEP_DEG))),
								  _mm256_set1_pd(M_PI / 180.0));
	__m256d		d2 = _mm256_mul_pd(d, d);
	__m256d		ps;
	__m256d		pc;
	__m256d		sd;
	__m256d		cd;
	__m128i		i = _mm_and_si128(_mm256_cvttpd_epi32(k), _mm_set1_epi32(255));
	__m256d		ts = _mm256_i32gather_pd(CmlSinTable, i, 8);
	__m256d		tc = _mm256_i32gather_pd(CmlCosTable, i, 8);

	/* CmlSinCosDeg's polynomials, in the same order */
	ps = _mm256_add_pd(_mm256_set1_pd(CML_SIN_C7), _mm256_mul_pd(d2, _mm256_set1_pd(CML_SIN_C9)));
	ps = _mm256_add_pd(_mm256_set1_pd(CML_SIN_C5), _mm256_mul_pd(d2, ps));
	ps = _mm256_add_pd(_mm256_set1_pd(CML_SIN_C3), _mm256_mul_pd(d2, ps));
	sd = _mm256_add_pd(d, _mm256_mul_pd(_mm256_mul_pd(d, d2), ps));
	pc = _mm256_add_pd(_mm256_set1_pd(CML_COS_C6), _mm256_mul_pd(d2, _mm256_set1_pd(CML_COS_C8)));
	pc = _mm256_add_pd(_mm256_set1_pd(CML_COS_C4), _mm256_mul_pd(d2, pc));
	pc = _mm256_add_pd(_mm256_set1_pd(CML_COS_C2), _mm256_mul_pd(d2, pc));
	cd = _mm256_add_pd(_mm256_set1_pd(1.0), _mm256_mul_pd(d2, pc));
	*s = _mm256_add_pd(_mm256_mul_pd(ts, cd), _mm256_mul_pd(tc, sd));
	*c = _mm256_sub_pd(_mm256_mul_pd(tc, cd), _mm256_mul_pd(ts, sd));
}

/* CmlChord2ToMetresN by fours (returns how many it did) */
static __attribute__((target("avx2"))) int64
Chord2ToMetresAvx2(double *v, int64 n)
{
	int64		i = 0;

	for (; i + 4 <= n; i += 4)
	{
		__m256d		h = _mm256_mul_pd(_mm256_sqrt_pd(_mm256_loadu_pd(v + i)), _mm256_set1_pd(0.5));
		__m256d		h2;
		__m256d		p;

		/* CmlAsin's series, when it is the one for all four */
		if (_mm256_movemask_pd(_mm256_cmp_pd(h, _mm256_set1_pd(CML_ASIN_SERIES_MAX), _CMP_LT_OQ)) != 0xF)
		{
			for (int j = 0; j < 4; j++)
				v[i + j] = CmlChord2ToMetres(v[i + j]);
			continue;
		}
		h2 = _mm256_mul_pd(h, h);
		p = _mm256_add_pd(_mm256_set1_pd(CML_ASIN_C9), _mm256_mul_pd(h2, _mm256_set1_pd(CML_ASIN_C11)));
		p = _mm256_add_pd(_mm256_set1_pd(CML_ASIN_C7), _mm256_mul_pd(h2, p));
		p = _mm256_add_pd(_mm256_set1_pd(CML_ASIN_C5), _mm256_mul_pd(h2, p));
		p = _mm256_add_pd(_mm256_set1_pd(CML_ASIN_C3), _mm256_mul_pd(h2, p));
		p = _mm256_add_pd(h, _mm256_mul_pd(_mm256_mul_pd(h, h2), p));
		_mm256_storeu_pd(v + i, _mm256_mul_pd(_mm256_set1_pd(2.0 * CML_EARTH_RADIUS_M), p));
	}
	return i;
}

/* CmlLatLonToVecs by fours (returns how many it did) */
static __attribute__((target("avx2"))) int64
LatLonToVecsAvx2(const double *ll, int64 stride, CmlVec3 *out, int64 n)
{
	int64		i = 0;

	for (; i + 4 <= n; i += 4)
	{
		const double *p = ll + i * stride;
		__m256d		lat = _mm256_set_pd(p[3 * stride], p[2 * stride], p[stride], p[0]);
		__m256d		lon = _mm256_set_pd(p[3 * stride + 1], p[2 * stride + 1], p[stride + 1], p[1]);
		__m256d		sphi;
		__m256d		cphi;
		__m256d		slam;
		__m256d		clam;
		double		vx[4];
		double		vy[4];
		double		vz[4];

		SinCosDeg4(lat, &sphi, &cphi);
		SinCosDeg4(lon, &slam, &clam);
		_mm256_storeu_pd(vx, _mm256_mul_pd(cphi, clam));
		_mm256_storeu_pd(vy, _mm256_mul_pd(cphi, slam));
		_mm256_storeu_pd(vz, sphi);
		for (int j = 0; j < 4; j++)
		{
			out[i + j].x = vx[j];
			out[i + j].y = vy[j];
			out[i + j].z = vz[j];
		}
	}
	return i;
}

/*
 * True when the AVX2 paths give CmlLatLonToVec's and CmlChord2ToMetres's
 * bits on a probe (edges, signs, table steps, city points; short and long
 * chords): they are written to, and this keeps a compiler or CPU that would
 * not from changing a model
 */
static bool
CmlAvx2Agrees(void)
{
	static const double probe[][2] = {
		{0.0, 0.0}, {-0.0, -0.0}, {90.0, 180.0}, {-90.0, -180.0}, {48.8566, 2.3522},
		{48.8606, 2.3376}, {-33.8688, 151.2093}, {40.7128, -74.006}, {0.703125, -0.703125},
		{1.40625, 179.296875}, {89.9999999, 179.9999999}, {-45.0, 135.0}, {1e-300, -1e-300},
		{35.6762, 139.6503}, {-89.5, -0.70312500001}, {12.3456789012345, -98.7654321098765}
	};
	const int	n = lengthof(probe);
	CmlVec3		v[lengthof(probe)];
	double		m[lengthof(probe)];
	double		w[lengthof(probe)];

	if (LatLonToVecsAvx2(&probe[0][0], 2, v, n) != n)
		return false;
	for (int i = 0; i < n; i++)
	{
		CmlVec3		u = CmlLatLonToVec(probe[i][0], probe[i][1]);

		if (memcmp(&v[i], &u, sizeof(CmlVec3)) != 0)
			return false;
	}
	/* squared chords: the first eight small (the series), the others not */
	for (int i = 0; i < n; i++)
	{
		m[i] = CmlChord2(v[i], v[(i + 1) % n]) * (i < 8 ? 1e-6 : 1.0);
		w[i] = CmlChord2ToMetres(m[i]);
	}
	if (Chord2ToMetresAvx2(m, n) != n || memcmp(m, w, sizeof(m)) != 0)
		return false;
	return true;
}
#endif

/* CmlChord2ToMetres of v[0 .. n - 1] in place, the same to the bit */
void
CmlChord2ToMetresN(double *v, int64 n)
{
	int64		i = 0;

#ifdef CML_HAVE_AVX2_PATH
	if (CmlHaveAvx2 && cml_use_avx2)
		i = Chord2ToMetresAvx2(v, n);
#endif
	for (; i < n; i++)
		v[i] = CmlChord2ToMetres(v[i]);
}

/*
 * The unit vectors of n coordinates, the same as CmlLatLonToVec's to the
 * bit: the (lat, lon) pairs are `stride` doubles apart from ll on; out may
 * be the same memory, each vector written where its pair was (or before)
 */
void
CmlLatLonToVecs(const double *ll, int64 stride, CmlVec3 *out, int64 n)
{
	int64		i = 0;

#ifdef CML_HAVE_AVX2_PATH
	if (CmlHaveAvx2 && cml_use_avx2)
		i = LatLonToVecsAvx2(ll, stride, out, n);
#endif
	for (; i < n; i++)
		out[i] = CmlLatLonToVec(ll[i * stride], ll[i * stride + 1]);
}

/* Raise a precise ERROR unless (lat, lon) is a finite WGS84 coordinate */
void
CmlCheckLatLon(double lat, double lon)
{
	char		text[DOUBLE_SHORTEST_DECIMAL_LEN];

	/* the shortest text that reads back as the same double names the value exactly */
	if (!isfinite(lat) || lat < -90.0 || lat > 90.0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("latitude %s is out of range", (double_to_shortest_decimal_buf(lat, text), text)),
				 errdetail("Latitude must be a finite number of WGS84 degrees in [-90, 90]."),
				 (isfinite(lat) && fabs(lat) > 1000.0) ?
				 errhint("The value looks like projected metres (e.g. Lambert-93), not degrees.") : 0));
	if (!isfinite(lon) || lon < -180.0 || lon > 180.0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("longitude %s is out of range", (double_to_shortest_decimal_buf(lon, text), text)),
				 errdetail("Longitude must be a finite number of WGS84 degrees in [-180, 180]."),
				 (isfinite(lon) && fabs(lon) > 1000.0) ?
				 errhint("The value looks like projected metres (e.g. Lambert-93), not degrees.") : 0));
}

/* Coordinate in degrees of a non-zero vector */
void
CmlVecToLatLon(CmlVec3 v, double *lat, double *lon)
{
	double		h = sqrt(v.x * v.x + v.y * v.y);

	*lat = atan2(v.z, h) * (180.0 / M_PI);
	/* at a pole the longitude is arbitrary: report 0 */
	*lon = (h > 0.0) ? atan2(v.y, v.x) * (180.0 / M_PI) : 0.0;
	if (*lat > 90.0)
		*lat = 90.0;
	if (*lat < -90.0)
		*lat = -90.0;
}

/* Haversine distance in metres between two coordinates in degrees */
double
CmlHaversine(double lat1, double lon1, double lat2, double lon2)
{
	double		p1 = lat1 * (M_PI / 180.0);
	double		p2 = lat2 * (M_PI / 180.0);
	double		dphi = p2 - p1;
	double		dlam = (lon2 - lon1) * (M_PI / 180.0);
	double		s1 = sin(dphi * 0.5);
	double		s2 = sin(dlam * 0.5);
	double		a = s1 * s1 + cos(p1) * cos(p2) * s2 * s2;

	if (a > 1.0)
		a = 1.0;
	return 2.0 * CML_EARTH_RADIUS_M * asin(sqrt(a));
}

/* Normalise a vector to unit length; false when it is (nearly) zero */
bool
CmlVecNormalize(CmlVec3 *v)
{
	double		n = sqrt(v->x * v->x + v->y * v->y + v->z * v->z);

	if (!(n > 1e-12))
		return false;
	v->x /= n;
	v->y /= n;
	v->z /= n;
	return true;
}

/* By distance, then index */
static inline int
CompareNeighbours(const CmlNeighbour *a, const CmlNeighbour *b)
{
	if (a->d != b->d)
		return a->d < b->d ? -1 : 1;
	return a->j < b->j ? -1 : a->j > b->j ? 1 : 0;
}

#define ST_SORT sort_neighbours
#define ST_ELEMENT_TYPE CmlNeighbour
#define ST_COMPARE(a, b) CompareNeighbours(a, b)
#define ST_SCOPE static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

/* Each point's others sorted by chord distance (see geo.h) */
void
CmlSortedNeighbours(const CmlVec3 *c, int32 k, CmlNeighbour *nb)
{
	for (int32 j = 0; j < k; j++)
	{
		CmlNeighbour *nj = nb + (int64) j * (k - 1);
		int32		t = 0;

		for (int32 j2 = 0; j2 < k; j2++)
			if (j2 != j)
			{
				nj[t].d = sqrt(CmlChord2(c[j], c[j2]));
				nj[t].j = j2;
				t++;
			}
		sort_neighbours(nj, k - 1);
	}
}
