/*
 * zones.c — per-zone figures (centroid, radius, p90, mean distance) and the
 * clustering quality metrics (simplified silhouette, Davies-Bouldin)
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"

#include "model.h"

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

/* At most this many point-to-centroid distances go into the silhouette */
#define SILHOUETTE_BUDGET 20000000.0

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
	CmlVec3    *sum = palloc0(sizeof(CmlVec3) * Max(nz, 1));
	int64	   *start = palloc0(sizeof(int64) * (nz + 1));
	double	   *dist = palloc_extended(sizeof(double) * Max(n, 1), MCXT_ALLOC_HUGE);
	int64	   *fill;
	double		sil_sum = 0.0;
	int64		sil_n = 0;
	int64		stride;

	m->zones = palloc0(sizeof(CmlZone) * Max(nz, 1));
	m->n_noise = 0;
	for (int64 i = 0; i < n; i++)
	{
		int32		z = labels[i];

		if (z < 0)
		{
			m->n_noise++;
			continue;
		}
		sum[z].x += x[i].x;
		sum[z].y += x[i].y;
		sum[z].z += x[i].z;
		m->zones[z].n_points++;
	}
	for (int32 z = 0; z < nz; z++)
	{
		CmlZone    *zone = &m->zones[z];
		CmlVec3		u = sum[z];

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
		start[z + 1] = start[z] + zone->n_points;
	}

	/* distances to the centroid, grouped by zone */
	fill = palloc(sizeof(int64) * Max(nz, 1));
	memcpy(fill, start, sizeof(int64) * Max(nz, 1));
	for (int64 i = 0; i < n; i++)
	{
		int32		z = labels[i];
		double		d;

		if (z < 0)
			continue;
		d = CmlVecDistance(x[i], m->zones[z].unit);
		/* below a micrometre is rounding of the centroid, not distance */
		if (d < 1e-6)
			d = 0.0;
		dist[fill[z]++] = d;
		m->zones[z].mean_m += d;
		if (d > m->zones[z].radius_m)
			m->zones[z].radius_m = d;
	}
	for (int32 z = 0; z < nz; z++)
	{
		CmlZone    *zone = &m->zones[z];
		int64		cnt = zone->n_points;
		int64		rank = (int64) ceil(0.9 * cnt) - 1;

		zone->mean_m /= cnt;
		zone->p90_m = SelectKth(dist + start[z], cnt, Max(rank, 0));
		/* rounding must not put the mean above the max */
		if (zone->mean_m > zone->radius_m)
			zone->mean_m = zone->radius_m;
	}
	CHECK_FOR_INTERRUPTS();

	/* simplified silhouette: own centroid vs nearest other centroid (sampled when huge) */
	m->silhouette = NAN;
	if (nz >= 2)
	{
		stride = (int64) ceil((double) n * nz / SILHOUETTE_BUDGET);
		if (stride < 1)
			stride = 1;
		for (int64 i = 0; i < n; i += stride)
		{
			int32		z = labels[i];
			double		a,
						b = INFINITY;

			if (z < 0)
				continue;
			a = CmlChord2(x[i], m->zones[z].unit);
			for (int32 j = 0; j < nz; j++)
				if (j != z)
				{
					double		d = CmlChord2(x[i], m->zones[j].unit);

					if (d < b)
						b = d;
				}
			a = CmlChord2ToMetres(a);
			b = CmlChord2ToMetres(b);
			if (Max(a, b) > 0.0)
				sil_sum += (b - a) / Max(a, b);
			sil_n++;
			if ((sil_n & 0xFFFF) == 0)
				CHECK_FOR_INTERRUPTS();
		}
		if (sil_n > 0)
			m->silhouette = sil_sum / sil_n;
	}

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
	pfree(sum);
	pfree(start);
	pfree(fill);
	pfree(dist);
}
