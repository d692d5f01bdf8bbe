/*
 * predict_grid.c — what a k-means predict could cost per row (a standalone prototype,
 * not part of the extension; see bench/README.md "Why predict misses 1.5x").
 *
 * Input (written by bench/proto/run_proto.py): int32 k, k x (cx, cy, cz, ulat, ulon) doubles
 * (3-D means and unit centroids of the model's zones), int64 n, n x (lat, lon) doubles.
 *
 * Variants, each timed over all n points, best of R:
 *   current   what CmlPredict did for predict_cluster up to commit a795fd6: unit vector
 *             (sincos x2), 16 squared chords over the CmlZone array, then the great-circle
 *             distance to the chosen zone (asin), which predict_cluster throws away
 *   nodist    the same without the unused distance: what CmlPredictZone does since a795fd6
 *   soa       nodist with the centers in a flat array and |c|^2/2 - v.c (3 FMAs per center)
 *   grid      a lat/lon grid built once per model: a cell whose every point has the same
 *             nearest center (proved with a bound on the cell's extent) stores it; other
 *             cells, and points outside the grid, fall back to the exact search
 * Every variant's answer is compared with `current`.
 *
 *   cc -O2 -o predict_grid predict_grid.c -lm && ./predict_grid points.bin [cell_m]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define R_EARTH 6371000.0
#define DEG (M_PI / 180.0)

typedef struct { double x, y, z; } V3;
/* the extension's CmlZone layout (96 bytes) */
typedef struct { int64_t n; double lat, lon, radius, p90, mean; V3 center, unit; } Zone;

static int k;
static Zone *zones;
static double *cxs, *cys, *czs, *hs;	/* SoA: center and |c|^2 / 2 */

static inline V3 tovec(double lat, double lon)
{
	double phi = lat * DEG, lam = lon * DEG, c = cos(phi);
	V3 v = {c * cos(lam), c * sin(lam), sin(phi)};
	return v;
}
static inline double chord2(V3 a, V3 b)
{
	double dx = a.x - b.x, dy = a.y - b.y, dz = a.z - b.z;
	return dx * dx + dy * dy + dz * dz;
}

static volatile double sink;

static int predict_current(double lat, double lon)
{
	V3 v = tovec(lat, lon);
	int best = 0;
	double bd = chord2(v, zones[0].center);
	for (int i = 1; i < k; i++)
	{
		double d = chord2(v, zones[i].center);
		if (d < bd) { bd = d; best = i; }
	}
	{
		double half = sqrt(chord2(v, zones[best].unit)) * 0.5;
		sink = 2.0 * R_EARTH * asin(half > 1 ? 1 : half);
	}
	return best;
}

static int predict_nodist(double lat, double lon)
{
	V3 v = tovec(lat, lon);
	int best = 0;
	double bd = chord2(v, zones[0].center);
	for (int i = 1; i < k; i++)
	{
		double d = chord2(v, zones[i].center);
		if (d < bd) { bd = d; best = i; }
	}
	return best;
}

static int predict_soa(double lat, double lon)
{
	V3 v = tovec(lat, lon);
	int best = 0;
	double bd = hs[0] - (v.x * cxs[0] + v.y * cys[0] + v.z * czs[0]);
	for (int i = 1; i < k; i++)
	{
		double d = hs[i] - (v.x * cxs[i] + v.y * cys[i] + v.z * czs[i]);
		if (d < bd) { bd = d; best = i; }
	}
	return best;
}

/* ---- grid ---- */
static double g_lat0, g_lon0, g_inv_dlat, g_inv_dlon;
static int g_nlat, g_nlon;
static int16_t *g_cell;

static void grid_build(double lat0, double lat1, double lon0, double lon1, double cell_m,
					   double *unique_share)
{
	double dlat = cell_m / (R_EARTH * DEG);
	double coslat = cos(fmax(fabs(lat0), fabs(lat1)) * DEG);
	double dlon = cell_m / (R_EARTH * DEG * (coslat > 0.01 ? coslat : 0.01));
	int64_t unique = 0;

	g_nlat = (int) ceil((lat1 - lat0) / dlat);
	g_nlon = (int) ceil((lon1 - lon0) / dlon);
	g_lat0 = lat0;
	g_lon0 = lon0;
	g_inv_dlat = 1.0 / dlat;
	g_inv_dlon = 1.0 / dlon;
	g_cell = malloc(sizeof(int16_t) * g_nlat * g_nlon);
	for (int i = 0; i < g_nlat; i++)
	{
		double la0 = lat0 + i * dlat, la1 = la0 + dlat;
		/* the parallel closest to the equator has the longest degree of longitude */
		double cmax = (la0 <= 0 && la1 >= 0) ? 1.0 : cos(fmin(fabs(la0), fabs(la1)) * DEG);
		/* any point of the cell is within this arc (radians) of the cell's centre: half
		 * the meridian extent plus half the longest parallel extent (an L1 path); a chord
		 * is never longer than its arc */
		double rho = 0.5 * (dlat * DEG + cmax * dlon * DEG) * (1 + 1e-9) + 1e-12;
		for (int j = 0; j < g_nlon; j++)
		{
			double lo0 = lon0 + j * dlon;
			V3 q = tovec(la0 + 0.5 * dlat, lo0 + 0.5 * dlon);
			double dmin_max = INFINITY;
			int cand = -1, ncand = 0;
			double D[512];
			for (int c = 0; c < k; c++)
			{
				D[c] = sqrt(chord2(q, zones[c].center));
				if (D[c] + rho < dmin_max)
					dmin_max = D[c] + rho;
			}
			for (int c = 0; c < k; c++)
				if (D[c] - rho <= dmin_max)
				{
					ncand++;
					cand = c;
				}
			g_cell[i * g_nlon + j] = (ncand == 1) ? cand : -1;
			unique += (ncand == 1);
		}
	}
	*unique_share = (double) unique / ((double) g_nlat * g_nlon);
}

static int predict_grid(double lat, double lon)
{
	double fi = (lat - g_lat0) * g_inv_dlat, fj = (lon - g_lon0) * g_inv_dlon;
	if (fi >= 0 && fj >= 0 && fi < g_nlat && fj < g_nlon)
	{
		int c = g_cell[(int) fi * g_nlon + (int) fj];
		if (c >= 0)
			return c;
	}
	return predict_soa(lat, lon);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef int (*pf) (double, double);

static double bench(pf f, const double *ll, int64_t n, int *out, int runs)
{
	double best = INFINITY;
	for (int r = 0; r < runs; r++)
	{
		double t0 = now();
		int64_t s = 0;
		for (int64_t i = 0; i < n; i++)
		{
			int c = f(ll[2 * i], ll[2 * i + 1]);
			s += c;
			if (out)
				out[i] = c;
		}
		sink = (double) s;
		double t = now() - t0;
		if (t < best)
			best = t;
	}
	return best;
}

int main(int argc, char **argv)
{
	FILE *f;
	int64_t n;
	double *ll;
	int *ref, *got;
	double cell_m = argc > 2 ? atof(argv[2]) : 25.0;
	double lat0 = 90, lat1 = -90, lon0 = 180, lon1 = -180, share;

	if (argc < 2 || !(f = fopen(argv[1], "rb")))
	{
		fprintf(stderr, "usage: %s points.bin [cell_m]\n", argv[0]);
		return 2;
	}
	if (fread(&k, 4, 1, f) != 1 || k < 1 || k > 512)
		return 1;
	zones = calloc(k, sizeof(Zone));
	cxs = malloc(8 * k); cys = malloc(8 * k); czs = malloc(8 * k); hs = malloc(8 * k);
	for (int i = 0; i < k; i++)
	{
		double z[5];
		if (fread(z, 8, 5, f) != 5)
			return 1;
		zones[i].center = (V3) {z[0], z[1], z[2]};
		zones[i].lat = z[3];
		zones[i].lon = z[4];
		zones[i].unit = tovec(z[3], z[4]);
		cxs[i] = z[0]; cys[i] = z[1]; czs[i] = z[2];
		hs[i] = 0.5 * (z[0] * z[0] + z[1] * z[1] + z[2] * z[2]);
		/* the grid covers the zones' centroids +- 3 km: a model would use its zones' radii */
		lat0 = fmin(lat0, z[3]); lat1 = fmax(lat1, z[3]);
		lon0 = fmin(lon0, z[4]); lon1 = fmax(lon1, z[4]);
	}
	if (fread(&n, 8, 1, f) != 1)
		return 1;
	ll = malloc(16 * n);
	if (fread(ll, 16, n, f) != (size_t) n)
		return 1;
	fclose(f);
	ref = malloc(sizeof(int) * n);
	got = malloc(sizeof(int) * n);
	{
		double mlat = 3000.0 / (R_EARTH * DEG), mlon = mlat / cos(0.5 * (lat0 + lat1) * DEG);
		double t0 = now();
		grid_build(lat0 - mlat, lat1 + mlat, lon0 - mlon, lon1 + mlon, cell_m, &share);
		printf("grid %d x %d cells of %.0f m (%.0f KB), built in %.1f ms, %.1f %% of cells with one center\n",
			   g_nlat, g_nlon, cell_m, g_nlat * g_nlon * 2 / 1024.0, (now() - t0) * 1e3, 100 * share);
	}
	{
		struct { const char *name; pf fn; } vs[] = {
			{"with distance (CmlPredict before a795fd6)", predict_current},
			{"zone only (CmlPredictZone since a795fd6)", predict_nodist},
			{"soa (flat centers, |c|^2/2 - v.c)", predict_soa},
			{"grid (cell lookup, exact fallback)", predict_grid},
		};
		double tref = bench(predict_current, ll, n, ref, 5);
		int64_t fallback = 0;
		for (int64_t i = 0; i < n; i++)
		{
			double fi = (ll[2 * i] - g_lat0) * g_inv_dlat, fj = (ll[2 * i + 1] - g_lon0) * g_inv_dlon;
			if (!(fi >= 0 && fj >= 0 && fi < g_nlat && fj < g_nlon) || g_cell[(int) fi * g_nlon + (int) fj] < 0)
				fallback++;
		}
		for (unsigned v = 0; v < sizeof(vs) / sizeof(vs[0]); v++)
		{
			double t = v == 0 ? tref : bench(vs[v].fn, ll, n, got, 5);
			int64_t diff = 0;
			if (v > 0)
				for (int64_t i = 0; i < n; i++)
					diff += (got[i] != ref[i]);
			printf("%-45s %6.1f ns/row  %6.1f ms  differs on %lld rows\n", vs[v].name,
				   t / n * 1e9, t * 1e3, (long long) diff);
		}
		printf("grid: %.2f %% of the points fall back to the exact search\n", 100.0 * fallback / n);
	}
	return 0;
}
