/*
 * geometry_cost.c — what the worldwide geometry costs the city case (issue #9, point 3).
 *
 * cinematic_ml computes on 3-D unit vectors (no seam at the antimeridian or the poles). A
 * city-only implementation could use a 2-D local projection instead (x = R cos(lat0) lon,
 * y = R lat), which is wrong away from lat0 but cheaper. This program times, on the same
 * 1,000,000 Paris-like points, the kernels whose cost depends on that choice, in both forms:
 *
 *   convert   (lat, lon) to the working representation: CmlLatLonToVec (3-D) against 2 multiplies
 *   assign    one k-means assignment pass, k = 16 and 64: squared distances in 3 or 2 coordinates
 *   metres    a squared distance to metres: 2 R asin(c / 2) (3-D chord) against sqrt (plane)
 *
 * Each is the best of 7 runs; a checksum keeps the compiler from dropping the work. It is not
 * part of the extension: `make bench-geometry` (and `make bench`) builds and runs it and keeps
 * the table in bench/results/geometry_cost.txt.
 *
 *   cc -O2 -o geometry_cost geometry_cost.c -lm (the -O2 the extension is built with) && ./geometry_cost [n]
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* the extension's own conversion (CmlLatLonToVec, CmlSinCosDeg); geo.h is written for
 * the server, with PostgreSQL's integer type names */
typedef int32_t int32;
typedef int64_t int64;
#include "../src/geo.h"

double		CmlSinTable[256];
double		CmlCosTable[256];

#define R_EARTH 6371000.0
#define DEG (M_PI / 180.0)
#define RUNS 7

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static double
uniform(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (double) ((rng_state * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

static double
gaussian(void)
{
	double		u = uniform(),
				v = uniform();

	return sqrt(-2.0 * log(u + 1e-300)) * cos(2.0 * M_PI * v);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* 20 Paris landmarks, sigma 30-150 m, and 20 % uniform noise (like bench/gen.py) */
static void
paris_points(long n, double *lat, double *lon)
{
	static const double lm[20][2] = {
		{48.8584, 2.2945}, {48.8606, 2.3376}, {48.8530, 2.3499}, {48.8867, 2.3431},
		{48.8738, 2.2950}, {48.8656, 2.3212}, {48.8720, 2.3316}, {48.8462, 2.3464},
		{48.8462, 2.3372}, {48.8606, 2.3522}, {48.8532, 2.3692}, {48.8710, 2.3650},
		{48.8809, 2.3828}, {48.8614, 2.3933}, {48.8600, 2.3266}, {48.8826, 2.3226},
		{48.8417, 2.3206}, {48.8330, 2.3560}, {48.8955, 2.3400}, {48.8400, 2.3000}};

	for (long i = 0; i < n; i++)
	{
		if (uniform() < 0.2)
		{
			lat[i] = 48.815 + 0.087 * uniform();
			lon[i] = 2.25 + 0.17 * uniform();
		}
		else
		{
			int			j = (int) (uniform() * 20);
			double		s = 30.0 + 120.0 * (j / 19.0);

			lat[i] = lm[j][0] + gaussian() * s / (R_EARTH * DEG);
			lon[i] = lm[j][1] + gaussian() * s / (R_EARTH * DEG * cos(lm[j][0] * DEG));
		}
	}
}

typedef double (*kernel_fn) (long n, const void *arg);

/* Best time of RUNS runs of a kernel, its checksum in *sum */
static double
best_of(kernel_fn f, long n, const void *arg, double *sum)
{
	double		best = INFINITY;

	for (int r = 0; r < RUNS; r++)
	{
		double		t0 = now();

		*sum = f(n, arg);
		best = fmin(best, now() - t0);
	}
	return best;
}

typedef struct Data
{
	const double *lat;
	const double *lon;
	double	   *v;				/* 3 per point */
	double	   *p;				/* 2 per point */
	const double *c3;			/* k centers */
	const double *c2;
	int			k;
	int		   *label;
	double	   *d3;				/* squared distance to the nearest center: chord (3-D) */
	double	   *d2;				/* metres^2 (2-D) */
} Data;

static double
convert3(long n, const void *arg)
{
	const Data *d = arg;
	double		s = 0;

	for (long i = 0; i < n; i++)
	{
		CmlVec3		v = CmlLatLonToVec(d->lat[i], d->lon[i]);

		d->v[3 * i] = v.x;
		d->v[3 * i + 1] = v.y;
		d->v[3 * i + 2] = v.z;
		s += v.x;
	}
	return s;
}

static double
convert2(long n, const void *arg)
{
	const Data *d = arg;
	double		kx = R_EARTH * DEG * cos(48.8566 * DEG),
				ky = R_EARTH * DEG,
				s = 0;

	for (long i = 0; i < n; i++)
	{
		d->p[2 * i] = d->lon[i] * kx;
		d->p[2 * i + 1] = d->lat[i] * ky;
		s += d->p[2 * i];
	}
	return s;
}

static double
assign3(long n, const void *arg)
{
	const Data *d = arg;
	double		s = 0;

	for (long i = 0; i < n; i++)
	{
		const double *x = d->v + 3 * i;
		double		best = INFINITY;
		int			b = 0;

		for (int j = 0; j < d->k; j++)
		{
			double		dx = x[0] - d->c3[3 * j],
						dy = x[1] - d->c3[3 * j + 1],
						dz = x[2] - d->c3[3 * j + 2],
						e = dx * dx + dy * dy + dz * dz;

			if (e < best)
			{
				best = e;
				b = j;
			}
		}
		d->label[i] = b;
		d->d3[i] = best;
		s += b;
	}
	return s;
}

static double
assign2(long n, const void *arg)
{
	const Data *d = arg;
	double		s = 0;

	for (long i = 0; i < n; i++)
	{
		const double *x = d->p + 2 * i;
		double		best = INFINITY;
		int			b = 0;

		for (int j = 0; j < d->k; j++)
		{
			double		dx = x[0] - d->c2[2 * j],
						dy = x[1] - d->c2[2 * j + 1],
						e = dx * dx + dy * dy;

			if (e < best)
			{
				best = e;
				b = j;
			}
		}
		d->label[i] = b;
		d->d2[i] = best;
		s += b;
	}
	return s;
}

static double
metres3(long n, const void *arg)
{
	const Data *d = arg;
	double		s = 0;

	for (long i = 0; i < n; i++)
		s += 2.0 * R_EARTH * asin(fmin(1.0, 0.5 * sqrt(d->d3[i])));
	return s;
}

static double
metres2(long n, const void *arg)
{
	const Data *d = arg;
	double		s = 0;

	for (long i = 0; i < n; i++)
		s += sqrt(d->d2[i]);
	return s;
}

int
main(int argc, char **argv)
{
	long		n = argc > 1 ? atol(argv[1]) : 1000000;
	double	   *lat = malloc(sizeof(double) * n),
			   *lon = malloc(sizeof(double) * n);
	double	   *c3 = malloc(sizeof(double) * 3 * 64),
			   *c2 = malloc(sizeof(double) * 2 * 64);
	Data		d = {lat, lon, malloc(sizeof(double) * 3 * n), malloc(sizeof(double) * 2 * n),
	c3, c2, 16, malloc(sizeof(int) * n), malloc(sizeof(double) * n), malloc(sizeof(double) * n)};
	double		sum,
				t3,
				t2;

	if (n < 64 || !lat || !lon || !d.v || !d.p || !d.label || !d.d3 || !d.d2)
	{
		fprintf(stderr, "geometry_cost: n must be at least 64 (and memory available)\n");
		return 1;
	}
	for (int i = 0; i < 256; i++)
		sincos(i * CML_SINCOS_STEP_DEG * DEG, &CmlSinTable[i], &CmlCosTable[i]);
	paris_points(n, lat, lon);
	printf("geometry cost on %ld Paris-like points: 3-D unit vectors (cinematic_ml) against a 2-D local projection\n", n);
	printf("%-28s %12s %12s %10s %14s\n", "kernel", "3-D ns/pt", "2-D ns/pt", "3-D/2-D", "3-D extra ms");
	t3 = best_of(convert3, n, &d, &sum);
	t2 = best_of(convert2, n, &d, &sum);
	printf("%-28s %12.2f %12.2f %10.2f %14.1f\n", "convert (lat, lon)", t3 * 1e9 / n, t2 * 1e9 / n, t3 / t2,
		   (t3 - t2) * 1e3);
	for (int k = 16; k <= 64; k *= 4)
	{
		char		name[40];

		/* the same k points as centers in both forms */
		for (int j = 0; j < k; j++)
		{
			long		i = (long) ((j + 0.5) * n / k);

			for (int a = 0; a < 3; a++)
				c3[3 * j + a] = d.v[3 * i + a];
			for (int a = 0; a < 2; a++)
				c2[2 * j + a] = d.p[2 * i + a];
		}
		d.k = k;
		t3 = best_of(assign3, n, &d, &sum);
		t2 = best_of(assign2, n, &d, &sum);
		snprintf(name, sizeof(name), "assignment pass, k=%d", k);
		printf("%-28s %12.2f %12.2f %10.2f %14.1f\n", name, t3 * 1e9 / n, t2 * 1e9 / n, t3 / t2,
			   (t3 - t2) * 1e3);
	}
	t3 = best_of(metres3, n, &d, &sum);
	t2 = best_of(metres2, n, &d, &sum);
	printf("%-28s %12.2f %12.2f %10.2f %14.1f\n", "distance to metres", t3 * 1e9 / n, t2 * 1e9 / n, t3 / t2,
		   (t3 - t2) * 1e3);
	printf("checksum %.6g\n", sum);
	return 0;
}
