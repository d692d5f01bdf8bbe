/*
 * geo.c — coordinate validation and spherical distances
 */
#include "postgres.h"

#include "common/shortest_dec.h"

#include "geo.h"

double		CmlSinTable[256];
double		CmlCosTable[256];

/* Fill CmlSinCosDeg's table (libm's values) when the library loads */
static void CmlSinCosInit(void) __attribute__((constructor));
static void
CmlSinCosInit(void)
{
	for (int i = 0; i < 256; i++)
		sincos(i * CML_SINCOS_STEP_DEG * (M_PI / 180.0), &CmlSinTable[i], &CmlCosTable[i]);
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
