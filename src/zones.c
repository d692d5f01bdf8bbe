/*
 * zones.c — per-zone figures (centroid, radius, p90, mean distance) and the
 * clustering quality metrics (simplified silhouette, Davies-Bouldin)
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "points.h"

/* qsort comparator for doubles */
static int
CompareDoubles(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* The k-th smallest value of a[0..n-1] (a is reordered) */
static double
SelectKth(double *a, int64 n, int64 k)
{
	int64		lo = 0,
				hi = n - 1;

	while (lo < hi)
	{
		double		pivot = a[lo + (hi - lo) / 2];
		int64		i = lo,
					j = hi;

		while (i <= j)
		{
			while (a[i] < pivot)
				i++;
			while (a[j] > pivot)
				j--;
			if (i <= j)
			{
				double		t = a[i];

				a[i] = a[j];
				a[j] = t;
				i++;
				j--;
			}
		}
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			return a[k];
	}
	return a[k];
}

/*
 * The silhouette samples at most this many points, and at most this many
 * point-to-centroid distances (each sample's to every zone, at worst): the
 * standard error of its mean is below 0.0023 (0.01 with 2,000 zones)
 */
#define SILHOUETTE_SAMPLES 200000.0
#define SILHOUETTE_BUDGET 20000000.0

/* Up to this many zones, the silhouette visits the other zones by distance */
#define SILHOUETTE_SORTED_MAX 256

/* How many sorted neighbours (nz - 1 for each zone) the silhouette uses: 0 for none */
int64
CmlZoneNeighbourCount(int32 nz)
{
	return nz >= 2 && nz <= SILHOUETTE_SORTED_MAX ? (int64) nz * (nz - 1) : 0;
}

/*
 * Squared chord from v to the nearest centroid of a zone other than z, v
 * being at squared chord a2 from z's (nb: the centroids' sorted neighbours,
 * or NULL): the second nearest of all when z's is the nearest
 */
static double
NearestOtherZone(const CmlVec3 *unit, int32 nz, const CmlNeighbour *nb, CmlVec3 v, int32 z,
				 double a2)
{
	double		b1;
	double		b2;
	int32		best;

	if (nb != NULL)
		best = CmlNearestTwoSorted(v, unit, nb + (int64) z * (nz - 1), nz, z, a2, &b1, &b2);
	else
		best = CmlNearestTwo(v, unit, nz, &b1, &b2);
	return best == z ? b2 : b1;
}

/*
 * The zone figures come in three steps, so that k-means can run the middle
 * one by chunks in its parallel workers: CmlZoneCentroids (counts and
 * centroids), CmlZoneScan over ranges of points (each point's distance to
 * its centroid, and per range the sums, maxima and silhouette terms), and
 * CmlZoneFinish, which adds up the ranges in order.  CmlComputeZones does
 * the three on one range.
 */

/* Fill model->zones' counts and centroids (model->n_zones set; label -1 = noise) */
void
CmlZoneCentroids(CmlModel *m, const CmlVec3 *x, const int32 *labels, int64 n,
				 const CmlVec3 *centers)
{
	int32		nz = m->n_zones;
	CmlVec3    *sum = palloc0(sizeof(CmlVec3) * Max(nz, 1));
	int64	   *cnt = palloc0(sizeof(int64) * Max(nz, 1));
	int64		noise = 0;

	for (int64 i = 0; i < n; i++)
	{
		int32		z = labels[i];

		if (z < 0)
		{
			noise++;
			continue;
		}
		sum[z].x += x[i].x;
		sum[z].y += x[i].y;
		sum[z].z += x[i].z;
		cnt[z]++;
	}
	CmlZoneCentroidsOfSums(m, sum, cnt, noise, x, labels, n, centers);
	pfree(sum);
	pfree(cnt);
}

/*
 * The same from each zone's sum of unit vectors and count of points (x and
 * labels for a zone whose sum is nil)
 */
void
CmlZoneCentroidsOfSums(CmlModel *m, const CmlVec3 *sum, const int64 *cnt, int64 n_noise,
					   const CmlVec3 *x, const int32 *labels, int64 n, const CmlVec3 *centers)
{
	int32		nz = m->n_zones;

	m->zones = palloc0(sizeof(CmlZone) * Max(nz, 1));
	m->n_noise = n_noise;
	for (int32 z = 0; z < nz; z++)
	{
		CmlZone    *zone = &m->zones[z];
		CmlVec3		u = sum[z];

		zone->n_points = cnt[z];
		if (zone->n_points == 0)
			elog(ERROR, "zone %d has no points. Please report a bug.", z);
		/* a zone spread evenly around the globe has no mean direction: use a member */
		if (!CmlVecNormalize(&u))
		{
			for (int64 i = 0; i < n; i++)
				if (labels[i] == z)
				{
					u = x[i];
					break;
				}
		}
		CmlVecToLatLon(u, &zone->lat, &zone->lon);
		zone->unit = CmlLatLonToVec(zone->lat, zone->lon);
		zone->center = centers ? centers[z] : zone->unit;
	}
}

/* CmlZoneScan's points at a time */
#define ZONE_SCAN_BLOCK 64

/* The silhouette takes every stride-th point (a sample when the data is large) */
int64
CmlZoneStride(int64 n, int32 nz)
{
	double		samples = Min(SILHOUETTE_SAMPLES, SILHOUETTE_BUDGET / Max(nz, 1));
	int64		stride = (int64) ceil((double) n / samples);

	return Max(stride, 1);
}

/*
 * Points [i0, i1): each one's distance to its zone's centroid (unit[]) into
 * dist[i]; per zone, the sum and the largest of them into dsum[] and dmax[]
 * (nz each, zeroed here); the silhouette terms of the sampled points into
 * sil[0] (their sum) and sil[1] (their number).  nb: CmlSortedNeighbours of
 * unit[], or NULL.
 */
void
CmlZoneScan(const CmlVec3 *unit, int32 nz, const CmlNeighbour *nb, const CmlVec3 *x,
			const int32 *labels, int64 i0, int64 i1, int64 stride, double *dist,
			double *dsum, double *dmax, double *sil)
{
	/* the first multiple of stride from i0 on */
	int64		sample = (i0 + stride - 1) / stride * stride;

	memset(dsum, 0, sizeof(double) * nz);
	memset(dmax, 0, sizeof(double) * nz);
	sil[0] = sil[1] = 0.0;
	/* by blocks: the squared chords, their metres at once, then the tallies */
	for (int64 b0 = i0; b0 < i1; b0 += ZONE_SCAN_BLOCK)
	{
		int64		len = Min(ZONE_SCAN_BLOCK, i1 - b0);
		double		a2[ZONE_SCAN_BLOCK];
		double		dm[ZONE_SCAN_BLOCK];

		CHECK_FOR_INTERRUPTS();
		for (int64 j = 0; j < len; j++)
		{
			int32		z = labels[b0 + j];

			a2[j] = z < 0 ? 0.0 : CmlChord2(x[b0 + j], unit[z]);
		}
		memcpy(dm, a2, sizeof(double) * len);
		CmlChord2ToMetresN(dm, len);
		for (int64 j = 0; j < len; j++)
		{
			int64		i = b0 + j;
			int32		z = labels[i];
			bool		sampled = (i == sample);
			double		d = dm[j];

			if (sampled)
				sample += stride;
			if (z < 0)
				continue;
			/* below a micrometre is rounding of the centroid, not distance */
			if (d < 1e-6)
				d = 0.0;
			dist[i] = d;
			dsum[z] += d;
			if (d > dmax[z])
				dmax[z] = d;
			/* simplified silhouette: own centroid vs nearest other centroid */
			if (sampled && nz >= 2)
			{
				double		b = CmlChord2ToMetres(NearestOtherZone(unit, nz, nb, x[i], z, a2[j]));

				if (Max(d, b) > 0.0)
					sil[0] += (b - d) / Max(d, b);
				sil[1] += 1.0;
			}
		}
	}
}

/* Every P90_STRIDE-th point is in the p90s' sample, whose brackets are ... */
#define P90_STRIDE 64
#define P90_MIN_SAMPLE 64		/* ... of zones with this many sampled points at least */

/* The rank (from 0) of a zone's 90th percentile among its cnt distances */
static inline int64
P90Rank(int64 cnt)
{
	return Max((int64) ceil(0.9 * cnt) - 1, 0);
}

/*
 * Each zone's 90th percentile of its points' distances (dist, by labels),
 * the rank-th smallest one, rank = ceil(0.9 count) - 1, with `scratch` (n
 * doubles) as room.  A sample of the points gives each zone a bracket, two
 * of its distances around that rank with a wide margin; one pass counts the
 * distances below the bracket and keeps those in it, among which the one of
 * the rank is selected.  A zone whose bracket misses (unlikely) or whose
 * sample is small has all its distances grouped and selected among.
 */
static void
ZoneP90s(CmlModel *m, const int32 *labels, int64 n, const double *dist, double *scratch)
{
	int32		nz = m->n_zones;
	int64	   *start = palloc0(sizeof(int64) * (nz + 1));
	int64	   *scount = palloc0(sizeof(int64) * (nz + 1));
	int64	   *below = palloc0(sizeof(int64) * Max(nz, 1));
	int64	   *len = palloc0(sizeof(int64) * Max(nz, 1));
	int64	   *cap = palloc0(sizeof(int64) * Max(nz, 1));
	double	   *lo = palloc(sizeof(double) * Max(nz, 1));
	double	   *hi = palloc(sizeof(double) * Max(nz, 1));
	bool	   *all = palloc0(sizeof(bool) * Max(nz, 1));
	double	   *sample;
	int64	   *sfill;
	bool		any_all = false;

	for (int32 z = 0; z < nz; z++)
		start[z + 1] = start[z] + m->zones[z].n_points;
	/* the sample, by zone */
	for (int64 i = 0; i < n; i += P90_STRIDE)
		if (labels[i] >= 0)
			scount[labels[i] + 1]++;
	for (int32 z = 0; z < nz; z++)
		scount[z + 1] += scount[z];
	sample = palloc(sizeof(double) * Max(scount[nz], 1));
	sfill = palloc(sizeof(int64) * Max(nz, 1));
	memcpy(sfill, scount, sizeof(int64) * Max(nz, 1));
	for (int64 i = 0; i < n; i += P90_STRIDE)
		if (labels[i] >= 0)
			sample[sfill[labels[i]]++] = dist[i];

	/* each zone's bracket: four standard errors of the sample's quantile, and more */
	for (int32 z = 0; z < nz; z++)
	{
		int64		cnt = m->zones[z].n_points;
		int64		s = scount[z + 1] - scount[z];
		double		q = (P90Rank(cnt) + 0.5) / cnt;
		double		margin = 4.0 * sqrt(q * (1.0 - q) * s) + 2.0;
		int64		ilo = (int64) floor(q * s - margin);
		int64		ihi = (int64) ceil(q * s + margin);

		if (s < P90_MIN_SAMPLE)
		{
			all[z] = any_all = true;
			continue;
		}
		qsort(sample + scount[z], s, sizeof(double), CompareDoubles);
		lo[z] = ilo < 0 ? -INFINITY : sample[scount[z] + ilo];
		hi[z] = ihi >= s ? INFINITY : sample[scount[z] + ihi];
		cap[z] = Min(cnt, (int64) ((double) (Min(ihi, s - 1) - Max(ilo, 0) + 1) / s * cnt * 1.5) + 256);
	}

	/* the distances below each bracket counted, those in it kept */
	for (int64 i = 0; i < n; i++)
	{
		int32		z = labels[i];
		double		d;

		if (z < 0 || all[z])
			continue;
		d = dist[i];
		if (d < lo[z])
			below[z]++;
		else if (d <= hi[z])
		{
			if (len[z] < cap[z])
				scratch[start[z] + len[z]] = d;
			len[z]++;
		}
	}
	for (int32 z = 0; z < nz; z++)
	{
		int64		rank = P90Rank(m->zones[z].n_points);

		if (all[z])
			continue;
		if (len[z] <= cap[z] && rank >= below[z] && rank < below[z] + len[z])
			m->zones[z].p90_m = SelectKth(scratch + start[z], len[z], rank - below[z]);
		else
			all[z] = any_all = true;
	}

	/* the other zones: all their distances grouped, each zone's in its place */
	if (any_all)
	{
		memcpy(sfill, start, sizeof(int64) * Max(nz, 1));
		for (int64 i = 0; i < n; i++)
			if (labels[i] >= 0 && all[labels[i]])
				scratch[sfill[labels[i]]++] = dist[i];
		for (int32 z = 0; z < nz; z++)
			if (all[z])
				m->zones[z].p90_m = SelectKth(scratch + start[z], m->zones[z].n_points,
											   P90Rank(m->zones[z].n_points));
	}
	pfree(start);
	pfree(scount);
	pfree(below);
	pfree(len);
	pfree(cap);
	pfree(lo);
	pfree(hi);
	pfree(all);
	pfree(sample);
	pfree(sfill);
}

/*
 * The zone figures and quality metrics from the tallies of nparts ranges
 * (dsum, dmax: nz per range; sil: 2 per range), added up in range order,
 * and every point's distance (dist; for the p90s, scratch: room for n
 * doubles, or NULL for memory of its own)
 */
void
CmlZoneFinish(CmlModel *m, const int32 *labels, int64 n, const double *dist, int32 nparts,
			  const double *dsum, const double *dmax, const double *sil, double *scratch)
{
	int32		nz = m->n_zones;
	double	   *room = scratch ? scratch :
		palloc_extended(sizeof(double) * Max(n, 1), MCXT_ALLOC_HUGE);
	double		sil_sum = 0.0;
	double		sil_n = 0.0;

	for (int32 p = 0; p < nparts; p++)
	{
		for (int32 z = 0; z < nz; z++)
		{
			m->zones[z].mean_m += dsum[(int64) p * nz + z];
			m->zones[z].radius_m = Max(m->zones[z].radius_m, dmax[(int64) p * nz + z]);
		}
		sil_sum += sil[2 * p];
		sil_n += sil[2 * p + 1];
	}

	ZoneP90s(m, labels, n, dist, room);
	for (int32 z = 0; z < nz; z++)
	{
		CmlZone    *zone = &m->zones[z];
		int64		cnt = zone->n_points;

		zone->mean_m /= cnt;
		zone->radius_chord2 = CmlMetresToChord2(zone->radius_m);
		/* rounding must not put the mean above the max */
		if (zone->mean_m > zone->radius_m)
			zone->mean_m = zone->radius_m;
	}
	CHECK_FOR_INTERRUPTS();
	m->silhouette = sil_n > 0.0 ? sil_sum / sil_n : NAN;

	/* Davies-Bouldin: mean over zones of the worst (S_i + S_j) / M_ij */
	m->davies_bouldin = NAN;
	if (nz >= 2 && nz <= 20000)
	{
		double		db = 0.0;
		int32		used = 0;

		for (int32 i = 0; i < nz; i++)
		{
			double		worst = -1.0;

			for (int32 j = 0; j < nz; j++)
			{
				double		mij;

				if (j == i)
					continue;
				mij = CmlVecDistance(m->zones[i].unit, m->zones[j].unit);
				if (mij > 0.0)
				{
					double		r = (m->zones[i].mean_m + m->zones[j].mean_m) / mij;

					if (r > worst)
						worst = r;
				}
			}
			if (worst >= 0.0)
			{
				db += worst;
				used++;
			}
			if ((i & 0xFF) == 0)
				CHECK_FOR_INTERRUPTS();
		}
		if (used > 0)
			m->davies_bouldin = db / used;
	}
	if (room != scratch)
		pfree(room);
}

/*
 * Fill model->zones from labelled unit vectors (label -1 = noise).
 * model->n_zones must be set.  centers, when given, are the k-means 3-D means
 * used for assignment; otherwise a zone's center is its unit centroid.
 */
void
CmlComputeZones(CmlModel *m, const CmlVec3 *x, const int32 *labels, int64 n,
				const CmlVec3 *centers)
{
	int32		nz = m->n_zones;
	CmlVec3    *unit = palloc(sizeof(CmlVec3) * Max(nz, 1));
	int64		nnb;
	CmlNeighbour  *nb = NULL;
	double	   *dist = palloc_extended(sizeof(double) * Max(n, 1), MCXT_ALLOC_HUGE);
	double	   *dsum = palloc(sizeof(double) * Max(nz, 1));
	double	   *dmax = palloc(sizeof(double) * Max(nz, 1));
	double		sil[2];

	CmlZoneCentroids(m, x, labels, n, centers);
	for (int32 z = 0; z < nz; z++)
		unit[z] = m->zones[z].unit;
	nnb = CmlZoneNeighbourCount(nz);
	if (nnb > 0)
	{
		nb = palloc(sizeof(CmlNeighbour) * nnb);
		CmlSortedNeighbours(unit, nz, nb);
	}
	CmlZoneScan(unit, nz, nb, x, labels, 0, n, CmlZoneStride(n, nz), dist, dsum, dmax, sil);
	CmlZoneFinish(m, labels, n, dist, 1, dsum, dmax, sil, NULL);
	pfree(unit);
	if (nb)
		pfree(nb);
	pfree(dist);
	pfree(dsum);
	pfree(dmax);
}

/* Median of n values (a is sorted in place); NaN when n = 0 */
static double
Median(double *a, int n)
{
	if (n == 0)
		return NAN;
	qsort(a, n, sizeof(double), CompareDoubles);
	return (n % 2) ? a[n / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2]);
}

/* Points per km^2 of a zone's radius disc; NaN for a zero radius */
static double
ZoneDensity(const CmlZone *z)
{
	double		r_km = z->radius_m / 1000.0;

	return r_km > 0.0 ? z->n_points / (M_PI * r_km * r_km) : NAN;
}

/*
 * The original pipeline's city figures: mean points per zone and mean zone
 * radius (0 without zones), shared by zone_metrics and the drift rule
 */
void
CmlCityFigures(const CmlModel *m, double *mean_points, double *mean_radius)
{
	double		sn = 0,
				sr = 0;

	for (int i = 0; i < m->n_zones; i++)
	{
		sn += m->zones[i].n_points;
		sr += m->zones[i].radius_m;
	}
	*mean_points = m->n_zones ? sn / m->n_zones : 0.0;
	*mean_radius = m->n_zones ? sr / m->n_zones : 0.0;
}

/*
 * Append the city-level zone figures as JSON members (no braces): the
 * original pipeline's n_zones, mean_points_per_zone and mean_zone_radius_m,
 * plus noise share, size spread, radii, densities and quality.
 */
void
CmlAppendZoneMetrics(StringInfo buf, const CmlModel *m)
{
	int			nz = m->n_zones;
	double	   *v = palloc(sizeof(double) * Max(nz, 1));
	double		sum_n2 = 0,
				sum_p90 = 0,
				sum_d = 0,
				area = 0;
	int			nd = 0;
	double		min_n = nz ? INFINITY : 0,
				max_n = 0;
	double		mean_n,
				mean_r;

	for (int i = 0; i < nz; i++)
	{
		const CmlZone *z = &m->zones[i];
		double		d = ZoneDensity(z);

		sum_n2 += (double) z->n_points * z->n_points;
		sum_p90 += z->p90_m;
		area += M_PI * (z->radius_m / 1000.0) * (z->radius_m / 1000.0);
		if (isfinite(d))
		{
			sum_d += d;
			nd++;
		}
		min_n = Min(min_n, z->n_points);
		max_n = Max(max_n, z->n_points);
	}
	CmlCityFigures(m, &mean_n, &mean_r);

	appendStringInfo(buf, "\"n_points\": " INT64_FORMAT ", \"n_zones\": %d, \"n_noise\": " INT64_FORMAT
					 ", \"noise_share\": ", m->n_train, nz, m->n_noise);
	CmlAppendJsonFloat(buf, m->n_train > 0 ? (double) m->n_noise / m->n_train : 0.0);
	appendStringInfoString(buf, ", \"mean_points_per_zone\": ");
	CmlAppendJsonFloat(buf, mean_n);
	for (int i = 0; i < nz; i++)
		v[i] = m->zones[i].n_points;
	appendStringInfoString(buf, ", \"median_points_per_zone\": ");
	CmlAppendJsonFloat(buf, nz ? Median(v, nz) : 0.0);
	appendStringInfoString(buf, ", \"min_points_per_zone\": ");
	CmlAppendJsonFloat(buf, min_n);
	appendStringInfoString(buf, ", \"max_points_per_zone\": ");
	CmlAppendJsonFloat(buf, max_n);
	appendStringInfoString(buf, ", \"std_points_per_zone\": ");
	CmlAppendJsonFloat(buf, nz ? sqrt(Max(sum_n2 / nz - mean_n * mean_n, 0.0)) : 0.0);
	appendStringInfoString(buf, ", \"mean_zone_radius_m\": ");
	CmlAppendJsonFloat(buf, mean_r);
	for (int i = 0; i < nz; i++)
		v[i] = m->zones[i].radius_m;
	appendStringInfoString(buf, ", \"median_zone_radius_m\": ");
	CmlAppendJsonFloat(buf, nz ? Median(v, nz) : 0.0);
	appendStringInfoString(buf, ", \"mean_p90_radius_m\": ");
	CmlAppendJsonFloat(buf, nz ? sum_p90 / nz : 0.0);
	appendStringInfoString(buf, ", \"mean_density_per_km2\": ");
	CmlAppendJsonFloat(buf, nd ? sum_d / nd : NAN);
	nd = 0;
	for (int i = 0; i < nz; i++)
	{
		double		d = ZoneDensity(&m->zones[i]);

		if (isfinite(d))
			v[nd++] = d;
	}
	appendStringInfoString(buf, ", \"median_density_per_km2\": ");
	CmlAppendJsonFloat(buf, Median(v, nd));
	appendStringInfoString(buf, ", \"zone_area_km2\": ");
	CmlAppendJsonFloat(buf, area);
	appendStringInfoString(buf, ", \"silhouette\": ");
	CmlAppendJsonFloat(buf, m->silhouette);
	appendStringInfoString(buf, ", \"davies_bouldin\": ");
	CmlAppendJsonFloat(buf, m->davies_bouldin);
	pfree(v);
}

/* The zone metrics of a model as a jsonb object */
static Datum
ZoneMetricsJsonb(const CmlModel *m)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	CmlAppendZoneMetrics(&buf, m);
	appendStringInfoChar(&buf, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

PG_FUNCTION_INFO_V1(zone_metrics_model);
/* zone_metrics(model bytea) -> jsonb */
Datum
zone_metrics_model(PG_FUNCTION_ARGS)
{
	return ZoneMetricsJsonb(CmlModelDeserialize(PG_GETARG_BYTEA_PP(0)));
}

/* qsort comparator for int32 */
static int
CompareInt32(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

PG_FUNCTION_INFO_V1(zone_metrics_final);
/* zone_metrics(lat, lon, cluster) aggregate: the figures of any labelled data */
Datum
zone_metrics_final(PG_FUNCTION_ARGS)
{
	CmlPoints  *pts;
	CmlModel	m = {0};
	int32	   *ids;
	int32	   *dense;
	int32		nz = 0;
	CmlVec3    *x;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	pts = (CmlPoints *) PG_GETARG_POINTER(0);
	if (pts->n == 0)
		PG_RETURN_NULL();

	/* map cluster ids to 0..nz-1 in ascending order; negative ids are noise */
	ids = palloc_extended(sizeof(int32) * pts->n, MCXT_ALLOC_HUGE);
	memcpy(ids, pts->label, sizeof(int32) * pts->n);
	qsort(ids, pts->n, sizeof(int32), CompareInt32);
	for (int64 i = 0; i < pts->n; i++)
		if (ids[i] >= 0 && (nz == 0 || ids[nz - 1] != ids[i]))
			ids[nz++] = ids[i];
	if (nz > CML_MAX_ZONES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many distinct clusters (%d, at most %d)", nz, CML_MAX_ZONES)));
	dense = palloc_extended(sizeof(int32) * pts->n, MCXT_ALLOC_HUGE);
	for (int64 i = 0; i < pts->n; i++)
	{
		int32	   *hit;

		if (pts->label[i] < 0)
		{
			dense[i] = -1;
			continue;
		}
		hit = bsearch(&pts->label[i], ids, nz, sizeof(int32), CompareInt32);
		dense[i] = (int32) (hit - ids);
	}
	x = CmlPointsToVectors(pts);
	m.algorithm = CML_ALG_DBSCAN;
	m.n_train = pts->n;
	m.n_zones = nz;
	CmlComputeZones(&m, x, dense, pts->n, NULL);
	return ZoneMetricsJsonb(&m);
}

/* Append a GeoJSON position [lon, lat] */
static void
AppendPosition(StringInfo buf, double lat, double lon)
{
	appendStringInfoChar(buf, '[');
	CmlAppendJsonFloat(buf, lon);
	appendStringInfoString(buf, ", ");
	CmlAppendJsonFloat(buf, lat);
	appendStringInfoChar(buf, ']');
}

#define CIRCLE_VERTICES 64

PG_FUNCTION_INFO_V1(zones_geojson_model);
/*
 * zones_geojson(model bytea): a FeatureCollection with, per zone, the centroid
 * (Point) and its radius circle (Polygon of 64 vertices on the sphere).  Ring
 * longitudes stay continuous around the centroid, so a circle crossing the
 * antimeridian may have longitudes beyond +-180.
 */
Datum
zones_geojson_model(PG_FUNCTION_ARGS)
{
	CmlModel   *m = CmlModelDeserialize(PG_GETARG_BYTEA_PP(0));
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"type\": \"FeatureCollection\", \"features\": [");
	for (int i = 0; i < m->n_zones; i++)
	{
		const CmlZone *z = &m->zones[i];
		double		phi1 = z->lat * M_PI / 180.0;
		double		lam1 = z->lon * M_PI / 180.0;
		double		ang = z->radius_m / CML_EARTH_RADIUS_M;
		StringInfoData props;

		initStringInfo(&props);
		appendStringInfo(&props, "{\"cluster\": %d, \"n_points\": " INT64_FORMAT ", \"radius_m\": ",
						 i, z->n_points);
		CmlAppendJsonFloat(&props, z->radius_m);
		appendStringInfoString(&props, ", \"p90_radius_m\": ");
		CmlAppendJsonFloat(&props, z->p90_m);
		appendStringInfoString(&props, ", \"mean_distance_m\": ");
		CmlAppendJsonFloat(&props, z->mean_m);
		appendStringInfoString(&props, ", \"density_per_km2\": ");
		CmlAppendJsonFloat(&props, ZoneDensity(z));
		appendStringInfoString(&props, ", \"share\": ");
		CmlAppendJsonFloat(&props, m->n_train ? (double) z->n_points / m->n_train : 0.0);

		appendStringInfo(&buf, "%s{\"type\": \"Feature\", \"geometry\": {\"type\": \"Point\", \"coordinates\": ",
						 i ? ", " : "");
		AppendPosition(&buf, z->lat, z->lon);
		appendStringInfo(&buf, "}, \"properties\": %s, \"kind\": \"centroid\"}}", props.data);
		/* the radius circle: destination points at the radius, every 360/64 degrees */
		appendStringInfo(&buf, ", {\"type\": \"Feature\", \"geometry\": {\"type\": \"Polygon\", \"coordinates\": [[");
		for (int v = 0; v <= CIRCLE_VERTICES; v++)
		{
			double		brg = -2.0 * M_PI * (v % CIRCLE_VERTICES) / CIRCLE_VERTICES;	/* counter-clockwise */
			double		phi2 = asin(Min(1.0, Max(-1.0, sin(phi1) * cos(ang) + cos(phi1) * sin(ang) * cos(brg))));
			double		lam2 = lam1 + atan2(sin(brg) * sin(ang) * cos(phi1),
											cos(ang) - sin(phi1) * sin(phi2));

			if (v)
				appendStringInfoString(&buf, ", ");
			AppendPosition(&buf, phi2 * 180.0 / M_PI, lam2 * 180.0 / M_PI);
		}
		appendStringInfo(&buf, "]]}, \"properties\": %s, \"kind\": \"radius\"}}", props.data);
		pfree(props.data);
	}
	appendStringInfoString(&buf, "]}");
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}
