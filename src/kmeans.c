/*
 * kmeans.c — k-means on the sphere's 3-D unit vectors
 *
 * k-means++ seeding (greedy, 2 + ln k local trials, as scikit-learn, with
 * the triangle inequality skipping the tiles of points a candidate cannot
 * get nearer to), several initialisations keeping the lowest inertia, and
 * Lloyd's iterations accelerated with Hamerly's bounds, kept for tiles of
 * nearby points as long as each tile's points share a center, and each
 * center's neighbours sorted by distance: these only skip distance
 * computations that cannot change an assignment, so the result is the one
 * plain Lloyd reaches from the same seeds.  Inertia is the sum of squared
 * chord distances in metres (scikit-learn on unit vectors scaled by the
 * Earth's radius gives the same number).  The seeds are drawn from the points
 * in a canonical order, by latitude, so the model depends only on the set of
 * points and the seed.  From 200,000 points and 32 centers the passes over
 * them run in parallel workers (as many as max_parallel_workers_per_gather
 * and the CPUs allow), with the same result to the bit.
 */
#include "postgres.h"

#include <sys/mman.h>

#include "access/parallel.h"
#include "access/xact.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "optimizer/cost.h"
#include "port/atomics.h"
#include "storage/barrier.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "windowapi.h"

#include "points.h"

typedef struct KmeansOptions
{
	int32		k;
	int64		seed;
	int32		n_init;
	int32		max_iter;
	double		tol;
} KmeansOptions;

/* Defaults, then the options jsonb; with_k when k may be given in it (train) */
static void
KmeansParseOptions(Jsonb *options, bool with_k, KmeansOptions *o)
{
	CmlOptSpec	spec[] = {
		{"seed", CML_OPT_INT64, 0, 9007199254740991.0, &o->seed},
		{"n_init", CML_OPT_INT, 1, 1000, &o->n_init},
		{"max_iter", CML_OPT_INT, 1, 100000, &o->max_iter},
		{"tol", CML_OPT_FLOAT, 0, 1, &o->tol},
		{"k", CML_OPT_INT, 1, CML_MAX_K, &o->k},
	};

	o->seed = 0;
	o->n_init = 10;
	o->max_iter = 300;
	o->tol = 1e-4;
	if (with_k)
		o->k = 0;
	CmlParseOptions(options, with_k ? "k-means parameters" : "k-means options",
					spec, with_k ? lengthof(spec) : lengthof(spec) - 1);
}

/* A mapping of BigAlloc's, unmapped when its memory context goes */
typedef struct BigMapping
{
	MemoryContextCallback cb;
	void	   *addr;
	Size		len;
} BigMapping;

static void
BigUnmap(void *arg)
{
	BigMapping *m = (BigMapping *) arg;

	(void) munmap(m->addr, m->len);
}

#define BIG_PAGE ((Size) 2 * 1024 * 1024)

/*
 * A large work array that lives as long as the current memory context (not
 * to be pfree'd): a mapping of its own, aligned to 2 MB and on transparent
 * huge pages where the system offers them, so that its fresh memory faults
 * in 2 MB at a time rather than 4 kB.  Small ones are palloc'd.
 */
static void *
BigAlloc(Size size)
{
	Size		len = TYPEALIGN(BIG_PAGE, size);
	char	   *p;
	char	   *q;
	BigMapping *m;

	if (size < BIG_PAGE)
		return palloc_extended(Max(size, 1), MCXT_ALLOC_HUGE);
	m = palloc(sizeof(BigMapping));
	p = mmap(NULL, len + BIG_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu.", size)));
	q = (char *) TYPEALIGN(BIG_PAGE, p);
	if (q > p)
		(void) munmap(p, q - p);
	(void) munmap(q + len, p + BIG_PAGE - q);
#ifdef MADV_HUGEPAGE
	(void) madvise(q, len, MADV_HUGEPAGE);
#endif
	m->addr = q;
	m->len = len;
	m->cb.func = BigUnmap;
	m->cb.arg = m;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &m->cb);
	return q;
}

/* Raise the error for an unusable k */
static void
CheckK(int32 k, int64 n)
{
	if (k < 1 || k > CML_MAX_K)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must be between 1 and %d, not %d", CML_MAX_K, k)));
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no points to cluster"),
				 errdetail("The input is empty or every row has a NULL coordinate.")));
	if (k > n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k = %d is larger than the number of points (%lld)", k, (long long) n)));
}

/* Up to this k, each center's others are sorted by distance at every iteration */
#define LLOYD_SORTED_MAX_K 1024

/*
 * ---------- Lloyd's iterations: passes by chunks, serial or parallel ----------
 *
 * Every pass over the points (the first assignment, each E-step, the
 * inertia) goes by chunks of consecutive points, which depend only on n and
 * k.  The points are in tile order, so a tile of FIT_TILE consecutive points is
 * a small patch of the map: the first assignment and the E-steps test a
 * tile as a whole, with Hamerly's bounds for all its points, and look at its
 * points one by one only when it straddles two centers' cells.  A chunk
 * writes its own sums, changes and inertia, and the leader adds
 * them up in chunk order: the arithmetic, hence the model, is the same
 * whether one process did every chunk or parallel workers shared them.  With
 * workers, the points, labels and bounds live in a dynamic shared memory
 * segment; the participants take chunks from a shared counter and meet at a
 * barrier after each pass.  The leader alone seeds, and runs the steps over
 * the k centers between passes (M-step, gaps, re-seeding of empty clusters).
 */

#define FIT_TILE 32					/* points in a tile */
#define TILE_COUNT(n) (((n) + FIT_TILE - 1) / FIT_TILE)	/* tiles of n points */
#define FIT_CHUNK_MIN 32768			/* points in a chunk (whole tiles), at least ... */
#define FIT_MAX_CHUNKS 64			/* ... in at most this many chunks ... */
#define FIT_MAX_CHUNK_SUMS (1 << 20)	/* ... with at most this many sums (chunks x k) */

/* Parallel workers for n points: one per this many, from this many on */
#define FIT_POINTS_PER_WORKER 100000
#define FIT_PARALLEL_MIN_POINTS 200000

/*
 * With tiles, the passes at k = 16 on 1M points take ~35 ms in all, of
 * which a worker saves ~16; a new segment costs ~30 ms (measured on 2 CPUs),
 * and even one from min_dynamic_shared_memory left k = 16 no faster
 */
#define FIT_PARALLEL_MIN_K 32

/* The shared state's key in the parallel context's table of contents */
#define FIT_TOC_KEY UINT64CONST(0xC1E0A7000000001)

typedef enum FitPass
{
	FIT_PASS_FIRST,				/* the first assignment, and each chunk's sums */
	FIT_PASS_ASSIGN,			/* an E-step, and each chunk's changes to the sums */
	FIT_PASS_INERTIA,			/* each chunk's inertia */
	FIT_PASS_ZONES,				/* each chunk's part of the zone figures */
	FIT_PASS_DONE				/* the workers leave */
} FitPass;

/* What a chunk reports besides its sums */
typedef struct FitChunkOut
{
	int64		changed;
	double		inertia;
} FitChunkOut;

/*
 * The state every participant reads: fixed fields, then the arrays at the
 * offsets given (from this struct).  The point arrays are in it only when
 * there are workers; a serial fit points at the caller's buffers.
 */
typedef struct FitShared
{
	Size		size;			/* of the whole, with workers */
	int64		n;
	int32		k;
	int32		n_init;			/* one run needs one label array, several two */
	int32		nchunks;
	int64		chunk_len;
	bool		sorted_nb;		/* nb holds each center's others by distance */
	FitPass		pass;			/* what the participants are to do */
	int32		cur;			/* which label array the current run writes */
	double		drift_max;		/* the largest move of each M-step, summed */
	int64		zstride;		/* the silhouette's sampling stride */
	pg_atomic_uint32 next_chunk;
	Barrier		barrier;
	Size		off_c;
	Size		off_drift;
	Size		off_s;
	Size		off_nb;
	Size		off_dsum;
	Size		off_dcnt;
	Size		off_out;
	Size		off_zunit;
	Size		off_znb;
	Size		off_zsum;
	Size		off_zmax;
	Size		off_zsil;
	Size		off_tsum;
	Size		off_tq;
	Size		off_trad;
	Size		off_tss;
	Size		off_ta;
	Size		off_tu;
	Size		off_tl;
	Size		off_x;
	Size		off_labels[2];
	Size		off_u;
	Size		off_l;
} FitShared;

/* A participant's view of the fit */
typedef struct Fit
{
	FitShared  *sh;
	CmlVec3    *x;
	int32	   *labels[2];
	int32	   *a;				/* labels[sh->cur]: the current assignment */
	/*
	 * Hamerly's bounds, relative to the centers' cumulative moves so that
	 * only the points looked at are written: u[i] + drift[a[i]] bounds the
	 * distance to c[a[i]] from above, l[i] - drift_max every other center's
	 * from below.
	 */
	double	   *u;
	double	   *l;
	/*
	 * The tiles: sum of their points, center q (their mean), radius (no
	 * point farther from q) and sum of squared distances to q; the center of
	 * all their points (-1: they are split, each with its own center and
	 * bounds), and then bounds as above that hold for each of them
	 */
	CmlVec3    *tsum;
	CmlVec3    *tq;
	double	   *trad;
	double	   *tss;
	int32	   *ta;
	double	   *tu;
	double	   *tl;
	CmlVec3    *c;				/* centers */
	double	   *drift;			/* how far each center moved, summed over the M-steps */
	double	   *s;				/* half the distance to the nearest other center */
	CmlNeighbour   *nb;				/* each center's others by distance, or NULL */
	CmlVec3    *dsum;			/* per chunk, k each: sums and counts, or changes */
	int64	   *dcnt;
	FitChunkOut *out;
	/* the zone figures: centroids, their neighbours, per chunk sums, maxima, silhouette */
	CmlVec3    *zunit;
	CmlNeighbour  *znb;
	double	   *zsum;
	double	   *zmax;
	double	   *zsil;
	/* the leader's */
	int64	   *ref;			/* each point's reference to the input, for labels (or NULL) */
	int32	   *band;			/* each point's latitude band (k-means++'s draws) ... */
	int64		nbands;
	int64	   *band_start;		/* ... band b's points are band_pts[band_start[b] ..] */
	int64	   *band_pts;		/* (in tile order, or canonical once band_sorted) */
	bool	   *band_sorted;
	CmlVec3    *sum;			/* sum and count of each center's points */
	int64	   *cnt;
	ParallelContext *pcxt;		/* NULL for a serial fit */
	int			nworkers;		/* workers launched */
	bool		attached;		/* and known to have started */
} Fit;

PGDLLEXPORT void cml_kmeans_fit_worker(dsm_segment *seg, shm_toc *toc);

/* Reserve bytes at *off (cache-line aligned, so chunks' outputs share no line) */
static Size
FitPlace(Size *off, Size bytes)
{
	Size		at = *off;

	*off += CACHELINEALIGN(bytes);
	return at;
}

/* Lay out the arrays after sh (n, k, sorted_nb set); returns the total size */
static Size
FitLayout(FitShared *sh, bool with_points)
{
	Size		off = CACHELINEALIGN(sizeof(FitShared));
	Size		k = sh->k;
	Size		n = sh->n;
	int64		nc;
	Size		nt;

	nc = (sh->n + FIT_CHUNK_MIN - 1) / FIT_CHUNK_MIN;
	nc = Min(nc, FIT_MAX_CHUNKS);
	nc = Min(nc, FIT_MAX_CHUNK_SUMS / sh->k);
	sh->nchunks = (int32) Max(nc, 1);
	sh->chunk_len = (sh->n + sh->nchunks - 1) / sh->nchunks;
	sh->chunk_len = (sh->chunk_len + FIT_TILE - 1) / FIT_TILE * FIT_TILE;
	nt = TILE_COUNT(sh->n);

	sh->off_c = FitPlace(&off, sizeof(CmlVec3) * k);
	sh->off_drift = FitPlace(&off, sizeof(double) * k);
	sh->off_s = FitPlace(&off, sizeof(double) * k);
	sh->off_nb = sh->sorted_nb ? FitPlace(&off, sizeof(CmlNeighbour) * Max(k * (k - 1), 1)) : 0;
	sh->off_dsum = FitPlace(&off, sizeof(CmlVec3) * k * sh->nchunks);
	sh->off_dcnt = FitPlace(&off, sizeof(int64) * k * sh->nchunks);
	sh->off_out = FitPlace(&off, sizeof(FitChunkOut) * sh->nchunks);
	sh->off_zunit = FitPlace(&off, sizeof(CmlVec3) * k);
	sh->off_znb = CmlZoneNeighbourCount(k) > 0 ?
		FitPlace(&off, sizeof(CmlNeighbour) * CmlZoneNeighbourCount(k)) : 0;
	sh->off_zsum = FitPlace(&off, sizeof(double) * k * sh->nchunks);
	sh->off_zmax = FitPlace(&off, sizeof(double) * k * sh->nchunks);
	sh->off_zsil = FitPlace(&off, sizeof(double) * 2 * sh->nchunks);
	sh->off_tsum = FitPlace(&off, sizeof(CmlVec3) * nt);
	sh->off_tq = FitPlace(&off, sizeof(CmlVec3) * nt);
	sh->off_trad = FitPlace(&off, sizeof(double) * nt);
	sh->off_tss = FitPlace(&off, sizeof(double) * nt);
	sh->off_ta = FitPlace(&off, sizeof(int32) * nt);
	sh->off_tu = FitPlace(&off, sizeof(double) * nt);
	sh->off_tl = FitPlace(&off, sizeof(double) * nt);
	sh->off_x = sh->off_labels[0] = sh->off_labels[1] = sh->off_u = sh->off_l = 0;
	if (with_points)
	{
		sh->off_x = FitPlace(&off, sizeof(CmlVec3) * n);
		sh->off_labels[0] = FitPlace(&off, sizeof(int32) * n);
		if (sh->n_init > 1)
			sh->off_labels[1] = FitPlace(&off, sizeof(int32) * n);
		sh->off_u = FitPlace(&off, sizeof(double) * n);
		sh->off_l = FitPlace(&off, sizeof(double) * n);
	}
	return off;
}

#define FIT_AT(sh, off) ((void *) ((char *) (sh) + (off)))

/* Point f at the shared state's arrays */
static void
FitAttach(Fit *f, FitShared *sh)
{
	memset(f, 0, sizeof(Fit));
	f->sh = sh;
	f->c = FIT_AT(sh, sh->off_c);
	f->drift = FIT_AT(sh, sh->off_drift);
	f->s = FIT_AT(sh, sh->off_s);
	f->nb = sh->sorted_nb ? FIT_AT(sh, sh->off_nb) : NULL;
	f->dsum = FIT_AT(sh, sh->off_dsum);
	f->dcnt = FIT_AT(sh, sh->off_dcnt);
	f->out = FIT_AT(sh, sh->off_out);
	f->zunit = FIT_AT(sh, sh->off_zunit);
	f->znb = sh->off_znb != 0 ? FIT_AT(sh, sh->off_znb) : NULL;
	f->zsum = FIT_AT(sh, sh->off_zsum);
	f->zmax = FIT_AT(sh, sh->off_zmax);
	f->zsil = FIT_AT(sh, sh->off_zsil);
	f->tsum = FIT_AT(sh, sh->off_tsum);
	f->tq = FIT_AT(sh, sh->off_tq);
	f->trad = FIT_AT(sh, sh->off_trad);
	f->tss = FIT_AT(sh, sh->off_tss);
	f->ta = FIT_AT(sh, sh->off_ta);
	f->tu = FIT_AT(sh, sh->off_tu);
	f->tl = FIT_AT(sh, sh->off_tl);
	if (sh->off_x != 0)
	{
		f->x = FIT_AT(sh, sh->off_x);
		f->labels[0] = FIT_AT(sh, sh->off_labels[0]);
		f->labels[1] = sh->off_labels[1] != 0 ? FIT_AT(sh, sh->off_labels[1]) : NULL;
		f->u = FIT_AT(sh, sh->off_u);
		f->l = FIT_AT(sh, sh->off_l);
	}
}

/*
 * Parallel workers worth asking for to fit n points with k centers: as for a
 * query's Gather, max_parallel_workers_per_gather caps them (0 keeps the fit
 * serial); none where parallel mode is not available, nor below
 * FIT_PARALLEL_MIN_K centers, where the passes that workers share are too
 * short to pay for the shared memory segment (creating it, mapping it,
 * letting it go).  Every pass ends at a barrier, where a participant waiting
 * for a CPU holds up the others, so there are no more participants (leader
 * and workers) than CPUs online, but at least two.
 */
static int
FitWorkersWanted(int64 n, int32 k)
{
	if (n < FIT_PARALLEL_MIN_POINTS || k < FIT_PARALLEL_MIN_K ||
		max_parallel_workers_per_gather <= 0 || !IsUnderPostmaster || IsParallelWorker() ||
		!IsTransactionState() || !ActiveSnapshotSet())
		return 0;
	{
		long		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		int64		w = Min((int64) max_parallel_workers_per_gather, n / FIT_POINTS_PER_WORKER);

		if (ncpu >= 1)
			w = Min(w, Max(ncpu - 1, 1));
		return (int) w;
	}
}

/*
 * Map the pages of shared memory [p, p + len) in this process now, in one
 * call, rather than by a page fault at each first touch (the segment's pages
 * are allocated when it is created).  Where the kernel cannot, they are
 * mapped at first touch as before.
 */
static void
FitPrefault(void *p, Size len)
{
#ifdef MADV_POPULATE_WRITE
	uintptr_t	page = (uintptr_t) sysconf(_SC_PAGESIZE);
	uintptr_t	start = (uintptr_t) p & ~(page - 1);

	(void) madvise((void *) start, len + ((uintptr_t) p - start), MADV_POPULATE_WRITE);
#endif
}

/*
 * Set up the fit of n points with k centers.  With parallel workers, the
 * points, labels and bounds are in shared memory and f->x is where the
 * caller puts the points; serial, f->x, f->u and f->l are NULL and the caller
 * points them at its own buffers.  The workers start now and wait for the
 * first pass, while the leader prepares the points and seeds.
 */
static void
FitBegin(Fit *f, int64 n, int32 k, int32 n_init)
{
	FitShared	tmpl = {0};
	int			nworkers = FitWorkersWanted(n, k);
	FitShared  *sh;

	tmpl.n = n;
	tmpl.k = k;
	tmpl.n_init = n_init;
	tmpl.sorted_nb = k <= LLOYD_SORTED_MAX_K;
	if (nworkers > 0)
	{
		Size		size = FitLayout(&tmpl, true);
		ParallelContext *pcxt;

		EnterParallelMode();
		pcxt = CreateParallelContext("cinematic_ml", "cml_kmeans_fit_worker", nworkers);
		shm_toc_estimate_chunk(&pcxt->estimator, size);
		shm_toc_estimate_keys(&pcxt->estimator, 1);
		InitializeParallelDSM(pcxt);
		sh = shm_toc_allocate(pcxt->toc, size);
		memcpy(sh, &tmpl, sizeof(FitShared));
		sh->size = size;
		pg_atomic_init_u32(&sh->next_chunk, 0);
		/* one participant per worker asked for, less those not launched */
		BarrierInit(&sh->barrier, 1 + pcxt->nworkers);
		shm_toc_insert(pcxt->toc, FIT_TOC_KEY, sh);
		LaunchParallelWorkers(pcxt);
		for (int w = pcxt->nworkers_launched; w < pcxt->nworkers; w++)
			BarrierDetach(&sh->barrier);
		FitAttach(f, sh);
		f->pcxt = pcxt;
		f->nworkers = pcxt->nworkers_launched;
		elog(DEBUG1, "k-means fit of %lld points: parallel workers launched: %d of %d asked for",
			 (long long) n, f->nworkers, nworkers);
	}
	else
	{
		Size		size = FitLayout(&tmpl, false);

		sh = palloc_extended(size, MCXT_ALLOC_HUGE);
		memcpy(sh, &tmpl, sizeof(FitShared));
		pg_atomic_init_u32(&sh->next_chunk, 0);
		FitAttach(f, sh);
		f->labels[0] = BigAlloc(sizeof(int32) * n);
		f->labels[1] = n_init > 1 ? BigAlloc(sizeof(int32) * n) : NULL;
	}
	f->sum = palloc(sizeof(CmlVec3) * k);
	f->cnt = palloc(sizeof(int64) * k);
}

/*
 * A worker that failed to start is an error here, not a barrier never met;
 * waited for only before the first pass, so that their start overlaps the
 * seeding
 */
static void
FitWaitAttached(Fit *f)
{
	if (f->nworkers > 0 && !f->attached)
	{
		WaitForParallelWorkersToAttach(f->pcxt);
		f->attached = true;
	}
}

/* Let the workers go after the last pass: they exit while the leader goes on */
static void
FitRelease(Fit *f)
{
	if (f->nworkers > 0 && f->sh->pass != FIT_PASS_DONE)
	{
		FitWaitAttached(f);
		f->sh->pass = FIT_PASS_DONE;
		BarrierArriveAndWait(&f->sh->barrier, PG_WAIT_EXTENSION);
	}
}

/* Release the workers and leave parallel mode; the shared arrays are gone after */
static void
FitEnd(Fit *f)
{
	if (f->pcxt == NULL)
		return;
	FitRelease(f);
	WaitForParallelWorkersToFinish(f->pcxt);
	DestroyParallelContext(f->pcxt);
	ExitParallelMode();
	f->pcxt = NULL;
}

/* Tile t's points: [t * FIT_TILE, Min((t + 1) * FIT_TILE, n)) */
#define TILE_START(t) ((int64) (t) * FIT_TILE)
#define TILE_END(sh, t) Min(TILE_START(t) + FIT_TILE, (sh)->n)

/* The sum, center, radius and sum of squares about the center of tile t */
static void
FitTileFigures(Fit *f, int64 t)
{
	const CmlVec3 *x = f->x;
	int64		i0 = TILE_START(t);
	int64		i1 = TILE_END(f->sh, t);
	CmlVec3		sum = {0, 0, 0};
	CmlVec3		q;
	double		r2 = 0.0;
	double		ss = 0.0;

	for (int64 i = i0; i < i1; i++)
	{
		sum.x += x[i].x;
		sum.y += x[i].y;
		sum.z += x[i].z;
	}
	q.x = sum.x / (i1 - i0);
	q.y = sum.y / (i1 - i0);
	q.z = sum.z / (i1 - i0);
	for (int64 i = i0; i < i1; i++)
	{
		double		d2 = CmlChord2(x[i], q);

		r2 = Max(r2, d2);
		ss += d2;
	}
	f->tsum[t] = sum;
	f->tq[t] = q;
	f->tss[t] = ss;
	/* rounded outwards: no point is farther from q */
	f->trad[t] = sqrt(r2) * (1.0 + 1e-12) + 1e-15;
}

/*
 * The nearest of the k centers c[] to x, and the distances to the nearest
 * and second nearest, searched from center g (at squared distance dg2 from
 * x) with the centers' sorted neighbours nb, or all of them if nb is NULL
 */
static pg_attribute_always_inline int32
NearestTwoIn(const CmlVec3 *c, const CmlNeighbour *nb, int32 k, CmlVec3 x, int32 g, double dg2,
			 double *d1, double *d2)
{
	int32		best;

	if (nb != NULL)
		best = CmlNearestTwoSorted(x, c, nb + (int64) g * (k - 1), k, g, dg2, d1, d2);
	else
		best = CmlNearestTwo(x, c, k, d1, d2);
	*d1 = sqrt(*d1);
	*d2 = sqrt(*d2);
	return best;
}

/* The same with the fit's centers */
static inline int32
NearestTwoOf(const Fit *f, CmlVec3 x, int32 g, double dg2, double *d1, double *d2)
{
	return NearestTwoIn(f->c, f->nb, f->sh->k, x, g, dg2, d1, d2);
}

/*
 * Whether a tile whose center q has d1 and d2 for nearest and second nearest
 * center distances goes whole to the nearest: the second is farther by more
 * than twice its radius (so the nearest is every point's nearest: the same
 * answer as a look at each)
 */
static inline bool
FitTileClear(const Fit *f, int64 t, double d1, double d2)
{
	return (d2 - d1) * (1.0 - 1e-12) - 1e-15 > 2.0 * f->trad[t];
}

/* Make tile t whole, at center j, nearest to its center at d1, second at d2 */
static inline void
FitTileWhole(Fit *f, int64 t, int32 j, double d1, double d2)
{
	f->ta[t] = j;
	f->tu[t] = d1 + f->trad[t] - f->drift[j];
	f->tl[t] = d2 - f->trad[t] + f->sh->drift_max;
}

/*
 * After a look at a split tile's points one by one: when they all have the
 * same center and the tile is clearly in its cell, it is whole again.  A
 * tile near a cell's boundary stays split, its points keeping their own
 * (tighter) bounds, rather than being joined and split again.
 */
static inline void
FitTryJoin(Fit *f, int64 t)
{
	int64		i0 = TILE_START(t);
	int64		i1 = TILE_END(f->sh, t);
	int32		a = f->a[i0];
	double		d1;
	double		d2;

	for (int64 i = i0 + 1; i < i1; i++)
		if (f->a[i] != a)
			return;
	if (NearestTwoOf(f, f->tq[t], a, CmlChord2(f->tq[t], f->c[a]), &d1, &d2) == a &&
		FitTileClear(f, t, d1, d2))
		FitTileWhole(f, t, a, d1, d2);
}

/* Split whole tile t: its bounds become each of its points' */
static inline void
FitSplit(Fit *f, int64 t)
{
	for (int64 i = TILE_START(t); i < TILE_END(f->sh, t); i++)
	{
		f->u[i] = f->tu[t];
		f->l[i] = f->tl[t];
	}
	f->ta[t] = -1;
}

/* Chunk ch's sums and counts (k each), zeroed */
static inline void
ChunkSums(Fit *f, int32 ch, CmlVec3 **sum, int64 **cnt)
{
	int32		k = f->sh->k;

	*sum = f->dsum + (int64) ch * k;
	*cnt = f->dcnt + (int64) ch * k;
	memset(*sum, 0, sizeof(CmlVec3) * k);
	memset(*cnt, 0, sizeof(int64) * k);
}

/* Add m points, whose vectors sum to v, to center j's sum and count */
static inline void
AddSum(CmlVec3 *sum, int64 *cnt, int32 j, CmlVec3 v, int64 m)
{
	sum[j].x += v.x;
	sum[j].y += v.y;
	sum[j].z += v.z;
	cnt[j] += m;
}

/* Move m points, whose vectors sum to v, from center a's sum and count to b's */
static inline void
MoveSum(CmlVec3 *sum, int64 *cnt, int32 a, int32 b, CmlVec3 v, int64 m)
{
	CmlVec3		neg = {-v.x, -v.y, -v.z};

	AddSum(sum, cnt, a, neg, -m);
	AddSum(sum, cnt, b, v, m);
}

/*
 * The first assignment of a chunk's tiles, and their sums.  A tile goes
 * whole to the center nearest its own center q when the second nearest is
 * farther by more than twice the tile's radius (so it is every point's
 * nearest: the same answer as a look at each); the other tiles' points are
 * assigned one by one.
 */
static void
FitFirstChunk(Fit *f, int32 ch, int64 t0, int64 t1)
{
	const FitShared *sh = f->sh;
	const CmlVec3 *x = f->x;
	int32	   *a = f->a;
	CmlVec3    *sum;
	int64	   *cnt;
	int32		g = 0;

	ChunkSums(f, ch, &sum, &cnt);
	for (int64 t = t0; t < t1; t++)
	{
		int64		i0 = TILE_START(t);
		int64		i1 = TILE_END(sh, t);
		double		d1;
		double		d2;
		int32		j;

		/* the search starts from the previous tile's center: a near tile */
		j = NearestTwoOf(f, f->tq[t], g, CmlChord2(f->tq[t], f->c[g]), &d1, &d2);
		g = j;
		if (FitTileClear(f, t, d1, d2))
		{
			FitTileWhole(f, t, j, d1, d2);
			for (int64 i = i0; i < i1; i++)
				a[i] = j;
			AddSum(sum, cnt, j, f->tsum[t], i1 - i0);
			continue;
		}
		for (int64 i = i0; i < i1; i++)
		{
			double		ui;
			double		li;
			int32		b = NearestTwoOf(f, x[i], g, CmlChord2(x[i], f->c[g]), &ui, &li);

			f->u[i] = ui - f->drift[b];
			f->l[i] = li + sh->drift_max;
			a[i] = b;
			AddSum(sum, cnt, b, x[i], 1);
		}
		f->ta[t] = -1;
	}
	f->out[ch].changed = 0;
}

/*
 * E-step of a chunk's tiles with Hamerly's test, first on whole tiles (their
 * bounds hold for each of their points), then on the points of split ones.
 * A whole tile whose upper bound is below max(s, lower bound) keeps its
 * center; otherwise it gets a tight upper bound (distance from its center q
 * plus its radius), and if that is not enough, a search of the centers from
 * q: it goes whole to the nearest if that is clear, else it is split.  A
 * point's test is the same; a point that fails it gets a tight upper bound
 * and, if still needed, a search of the centers.  A tiny slack keeps
 * rounding from skipping a real change.  The chunk's changes to the sums and
 * the number of points that changed center go to its slots.
 */
static pg_noinline void
FitAssignChunk(Fit *f, int32 ch, int64 t0, int64 t1)
{
	const FitShared *sh = f->sh;
	const int32 k = sh->k;
	const CmlVec3 *x = f->x;
	const CmlVec3 *c = f->c;
	const CmlNeighbour *nb = f->nb;
	int32	   *a = f->a;
	double	   *u = f->u;
	double	   *l = f->l;
	const double *drift = f->drift;
	const double drift_max = sh->drift_max;
	const double *s = f->s;
	CmlVec3    *sum;
	int64	   *cnt;
	int64		changed = 0;

	ChunkSums(f, ch, &sum, &cnt);
	for (int64 t = t0; t < t1; t++)
	{
		int32		ta = f->ta[t];

		if (ta >= 0)
		{
			double		ut = f->tu[t] + drift[ta];
			double		z = Max(s[ta], f->tl[t] - drift_max) * (1.0 - 1e-12) - 1e-15;
			double		dq2;
			double		d1;
			double		d2;
			int32		j;

			if (ut <= z)
				continue;
			dq2 = CmlChord2(f->tq[t], c[ta]);
			ut = sqrt(dq2) + f->trad[t];
			f->tu[t] = ut - drift[ta];
			if (ut <= z)
				continue;
			/* the centers nearest the tile's: still whole, maybe elsewhere? */
			j = NearestTwoOf(f, f->tq[t], ta, dq2, &d1, &d2);
			if (FitTileClear(f, t, d1, d2))
			{
				FitTileWhole(f, t, j, d1, d2);
				if (j != ta)
				{
					int64		len = TILE_END(sh, t) - TILE_START(t);

					MoveSum(sum, cnt, ta, j, f->tsum[t], len);
					for (int64 i = TILE_START(t); i < TILE_END(sh, t); i++)
						a[i] = j;
					changed += len;
				}
				continue;
			}
			/* split: every point's bounds, the nearest other than ta from q's */
			f->tl[t] = (j == ta ? d2 : d1) - f->trad[t] + drift_max;
			FitSplit(f, t);
		}
		for (int64 i = TILE_START(t); i < TILE_END(sh, t); i++)
		{
			int32		ai = a[i];
			double		ui = u[i] + drift[ai];
			double		z = Max(s[ai], l[i] - drift_max) * (1.0 - 1e-12) - 1e-15;
			double		da2;
			double		li;
			int32		bi;

			if (ui <= z)
				continue;
			da2 = CmlChord2(x[i], c[ai]);
			ui = sqrt(da2);
			if (ui <= z)
			{
				u[i] = ui - drift[ai];
				continue;
			}
			bi = NearestTwoIn(c, nb, k, x[i], ai, da2, &ui, &li);
			u[i] = ui - drift[bi];
			l[i] = li + drift_max;
			if (bi != ai)
			{
				MoveSum(sum, cnt, ai, bi, x[i], 1);
				a[i] = bi;
				changed++;
			}
		}
		FitTryJoin(f, t);
	}
	f->out[ch].changed = changed;
}

/*
 * Sum of squared distances from tile t's points (whole, of center c) to c:
 * theirs to the tile's center q, and n |q - c|^2 + 2 (sum - n q).(q - c)
 */
static inline double
FitTileInertia(const Fit *f, int64 t, CmlVec3 c)
{
	double		m = (double) (TILE_END(f->sh, t) - TILE_START(t));
	CmlVec3		q = f->tq[t];
	CmlVec3		e = {f->tsum[t].x - m * q.x, f->tsum[t].y - m * q.y, f->tsum[t].z - m * q.z};
	CmlVec3		d = {q.x - c.x, q.y - c.y, q.z - c.z};

	return f->tss[t] + m * CmlChord2(q, c) + 2.0 * (e.x * d.x + e.y * d.y + e.z * d.z);
}

/* The inertia of a chunk's tiles: a whole one's from its figures */
static void
FitInertiaChunk(Fit *f, int32 ch, int64 t0, int64 t1)
{
	double		inertia = 0.0;

	for (int64 t = t0; t < t1; t++)
	{
		if (f->ta[t] >= 0)
			inertia += FitTileInertia(f, t, f->c[f->ta[t]]);
		else
			for (int64 i = TILE_START(t); i < TILE_END(f->sh, t); i++)
				inertia += CmlChord2(f->x[i], f->c[f->a[i]]);
	}
	f->out[ch].inertia = inertia;
}

/* Do chunks of the current pass until none is left */
static void
FitWork(Fit *f)
{
	FitShared  *sh = f->sh;

	f->a = f->labels[sh->cur];
	for (;;)
	{
		uint32		ch = pg_atomic_fetch_add_u32(&sh->next_chunk, 1);
		int64		i0;
		int64		i1;
		int64		t1;

		if (ch >= (uint32) sh->nchunks)
			break;
		CHECK_FOR_INTERRUPTS();
		i0 = Min((int64) ch * sh->chunk_len, sh->n);
		i1 = Min(i0 + sh->chunk_len, sh->n);
		/* a chunk's tiles: [i0 / FIT_TILE, t1) */
		t1 = TILE_COUNT(i1);
		switch (sh->pass)
		{
			case FIT_PASS_FIRST:
				FitFirstChunk(f, (int32) ch, i0 / FIT_TILE, t1);
				break;
			case FIT_PASS_ASSIGN:
				FitAssignChunk(f, (int32) ch, i0 / FIT_TILE, t1);
				break;
			case FIT_PASS_INERTIA:
				FitInertiaChunk(f, (int32) ch, i0 / FIT_TILE, t1);
				break;
			case FIT_PASS_ZONES:
				/* each point's distance goes to u, free after the last run */
				CmlZoneScan(f->zunit, sh->k, f->znb, f->x, f->a, i0, i1, sh->zstride, f->u,
							f->zsum + (int64) ch * sh->k, f->zmax + (int64) ch * sh->k,
							f->zsil + 2 * ch);
				break;
			case FIT_PASS_DONE:
				break;
		}
	}
}

/* The leader runs a pass, with the workers when there are */
static void
FitRunPass(Fit *f, FitPass pass)
{
	FitWaitAttached(f);
	f->sh->pass = pass;
	pg_atomic_write_u32(&f->sh->next_chunk, 0);
	if (f->nworkers > 0)
		BarrierArriveAndWait(&f->sh->barrier, PG_WAIT_EXTENSION);
	FitWork(f);
	if (f->nworkers > 0)
		BarrierArriveAndWait(&f->sh->barrier, PG_WAIT_EXTENSION);
}

/* A parallel worker: the leader's passes until it says done */
void
cml_kmeans_fit_worker(dsm_segment *seg, shm_toc *toc)
{
	Fit			f;

	FitAttach(&f, shm_toc_lookup(toc, FIT_TOC_KEY, false));
	/* while the leader sorts and seeds */
	FitPrefault(f.sh, f.sh->size);
	for (;;)
	{
		BarrierArriveAndWait(&f.sh->barrier, PG_WAIT_EXTENSION);
		if (f.sh->pass == FIT_PASS_DONE)
			break;
		FitWork(&f);
		BarrierArriveAndWait(&f.sh->barrier, PG_WAIT_EXTENSION);
	}
}

/*
 * Add the chunks' sums (reset) or changes to them, in chunk order; returns
 * the number of points that changed center
 */
static int64
FitAddChunks(Fit *f, bool reset)
{
	int32		k = f->sh->k;
	int64		changed = 0;

	if (reset)
	{
		memset(f->sum, 0, sizeof(CmlVec3) * k);
		memset(f->cnt, 0, sizeof(int64) * k);
	}
	for (int32 ch = 0; ch < f->sh->nchunks; ch++)
	{
		const CmlVec3 *ds = f->dsum + (int64) ch * k;
		const int64 *dc = f->dcnt + (int64) ch * k;

		for (int32 j = 0; j < k; j++)
			AddSum(f->sum, f->cnt, j, ds[j], dc[j]);
		changed += f->out[ch].changed;
	}
	return changed;
}

/*
 * Half the distance from each center to its nearest other center; and, when
 * there are not too many centers, each center's others sorted by distance
 */
static void
LloydHalfGaps(Fit *f)
{
	int32		k = f->sh->k;

	if (f->nb != NULL)
	{
		CmlSortedNeighbours(f->c, k, f->nb);
		for (int32 j = 0; j < k; j++)
			f->s[j] = k > 1 ? 0.5 * f->nb[(int64) j * (k - 1)].d : INFINITY;
		return;
	}
	for (int32 j = 0; j < k; j++)
	{
		double		m = INFINITY;

		for (int32 j2 = 0; j2 < k; j2++)
			if (j2 != j)
			{
				double		d = CmlChord2(f->c[j], f->c[j2]);

				if (d < m)
					m = d;
			}
		f->s[j] = 0.5 * sqrt(m);
	}
}

/* Re-seed empty clusters on the points farthest from their centers */
static void
LloydReseedEmpty(Fit *f)
{
	const CmlVec3 *x = f->x;
	int32	   *a = f->a;

	for (int32 j = 0; j < f->sh->k; j++)
	{
		double		far = -1.0;
		int64		fi = -1;
		int32		af;

		if (f->cnt[j] > 0)
			continue;
		for (int64 i = 0; i < f->sh->n; i++)
		{
			double		d;

			if (f->cnt[a[i]] <= 1)
				continue;
			d = CmlChord2(x[i], f->c[a[i]]);
			if (d > far)
			{
				far = d;
				fi = i;
			}
		}
		if (fi < 0)
			elog(ERROR, "k-means could not re-seed an empty cluster. Please report a bug.");
		elog(DEBUG2, "k-means: cluster %d is empty, re-seeded on the point farthest from its center",
			 j);
		if (f->ta[fi / FIT_TILE] >= 0)
			FitSplit(f, fi / FIT_TILE);
		af = a[fi];
		f->sum[af].x -= x[fi].x;
		f->sum[af].y -= x[fi].y;
		f->sum[af].z -= x[fi].z;
		f->cnt[af]--;
		f->sum[j] = x[fi];
		f->cnt[j] = 1;
		a[fi] = j;
		f->u[fi] = -f->drift[j];
		f->l[fi] = f->sh->drift_max;
	}
}

/* M-step: the means of the current assignment; returns the sum of squared moves */
static double
LloydMove(Fit *f)
{
	double		shift = 0.0;
	double		pmax = 0.0;

	for (int32 j = 0; j < f->sh->k; j++)
	{
		CmlVec3		nc;
		double		pj;

		nc.x = f->sum[j].x / f->cnt[j];
		nc.y = f->sum[j].y / f->cnt[j];
		nc.z = f->sum[j].z / f->cnt[j];
		pj = CmlChord2(nc, f->c[j]);
		shift += pj;
		pj = sqrt(pj);
		f->drift[j] += pj;
		f->c[j] = nc;
		if (pj > pmax)
			pmax = pj;
	}
	f->sh->drift_max += pmax;
	return shift;
}

/*
 * ---------- the input points, and their order ----------
 *
 * The points come as they were collected: one array, or up to
 * CML_LINK_MAX_RUNS arrays (runs) linked by the combine of parallel partial
 * states.  A reference names a point by its run and its place in the run.
 * Points in the same cell of the tile order's grid are ordered by (lat, lon),
 * through order-preserving integer images of the latitudes, so that the tile
 * order is a function of the point set.
 */

/* A tile order key: a grid cell of at least this many bits a coordinate, and a reference */
#define TILE_GRID_MIN_BITS 11
#define TILE_GRID_MAX_BITS 16

typedef struct PointInput
{
	int32		nruns;
	const double *ll[CML_LINK_MAX_RUNS];	/* run r's (lat, lon) pairs ... */
	int64		start[CML_LINK_MAX_RUNS + 1];	/* ... are points start[r] .. start[r + 1] - 1 */
	int			ref_bits;		/* a reference: run << run_shift | offset, */
	int			run_shift;		/* in ref_bits bits */
} PointInput;

/* Bits to write the numbers 0 .. v - 1 */
static inline int
BitsFor(uint64 v)
{
	int			bits = 0;

	while (bits < 64 && (v - 1) >> bits != 0)
		bits++;
	return bits;
}

/* The input runs of pts */
static void
PointInputOf(const CmlPoints *pts, PointInput *in)
{
	int64		longest = 1;

	in->nruns = pts->run_ll ? pts->nruns : 1;
	in->start[0] = 0;
	for (int32 r = 0; r < in->nruns; r++)
	{
		in->ll[r] = pts->run_ll ? pts->run_ll[r] : pts->ll;
		in->start[r + 1] = pts->run_ll ? pts->run_end[r] : pts->n;
		longest = Max(longest, in->start[r + 1] - in->start[r]);
	}
	in->run_shift = BitsFor((uint64) longest);
	in->ref_bits = in->run_shift + BitsFor((uint64) in->nruns);
	if (in->ref_bits > 64 - 2 * TILE_GRID_MIN_BITS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("k-means cannot fit %lld points", (long long) pts->n),
				 errdetail("The limit is 2^%d points.", 64 - 2 * TILE_GRID_MIN_BITS - 6)));
}

/* The input position of reference ref */
static inline int64
RefIndex(const PointInput *in, uint64 ref)
{
	return in->start[ref >> in->run_shift] +
		(int64) (ref & ((UINT64CONST(1) << in->run_shift) - 1));
}

/* A point's latitude image, longitude and a reference to it, or its tile position */
typedef struct OrderedPoint
{
	uint64		key;
	double		lon;
	int64		pos;
} OrderedPoint;

/* Unsigned integer with the order of a finite double (-0.0 and 0.0 are equal) */
static inline uint64
OrderKey(double v)
{
	uint64		b;

	if (v == 0.0)
		v = 0.0;
	memcpy(&b, &v, sizeof(b));
	return (b & UINT64CONST(0x8000000000000000)) ? ~b : b | UINT64CONST(0x8000000000000000);
}

/* The double whose key this is */
static inline double
OrderKeyValue(uint64 key)
{
	double		v;

	key = (key & UINT64CONST(0x8000000000000000)) ? key & ~UINT64CONST(0x8000000000000000) : ~key;
	memcpy(&v, &key, sizeof(v));
	return v;
}

/* An ordered point for (lat, lon) (-0.0 becomes 0.0) */
static inline OrderedPoint
OrderedPointOf(const double *latlon, int64 pos)
{
	OrderedPoint p;

	p.key = OrderKey(latlon[0]);
	p.lon = latlon[1] + 0.0;
	p.pos = pos;
	return p;
}

/* Order of two points by (lat, lon) (equal points: any order) */
static inline int
ComparePointOrder(const OrderedPoint *a, const OrderedPoint *b)
{
	if (a->key != b->key)
		return a->key < b->key ? -1 : 1;
	if (a->lon != b->lon)
		return a->lon < b->lon ? -1 : 1;
	return 0;
}

#define ST_SORT sort_points
#define ST_ELEMENT_TYPE OrderedPoint
#define ST_COMPARE(a, b) ComparePointOrder(a, b)
#define ST_SCOPE static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * ---------- k-means++ seeding ----------
 *
 * Greedy k-means++ as scikit-learn does it: the first center is a uniform
 * pick, then each next center is the best (lowest potential) of 2 + ln k
 * candidates drawn with probability proportional to the squared distance to
 * the nearest center already chosen (D^2 sampling).
 *
 * The draws walk the points in a canonical order, by latitude, so the seeds
 * depend on the point set only, not on the tile order (nor on the data being
 * turned in longitude).  The points are in latitude bands (about SEED_BLOCK
 * points each, a function of the latitudes only) whose sums of squared
 * distances are kept: a draw passes the bands in order, and walks only the
 * points of the band it falls in, sorted the first time by their unit
 * vectors' z (the sine of the latitude), then x (equal latitudes only).
 * The potentials go by tiles: a candidate at distance D from a tile's center
 * cannot get nearer than D - radius to any of its points, so a tile whose
 * points are all nearer than that to their centers keeps its potential
 * without a look at them.
 */

#define SEED_BLOCK 256			/* points in a latitude band, on average */
#define SEED_GROUP 32			/* tiles in a group */

/*
 * a below b by more than rounding: sums over the points in tile order, whose
 * rounding changes when the data set is turned, must not decide between two
 * candidates (or two runs) of the same worth
 */
static inline bool
ClearlyBelow(double a, double b)
{
	return a < b * (1.0 - 1e-9);
}

typedef struct SeedState
{
	const Fit  *f;				/* the points in tile order, their bands, the tiles */
	int64		ntiles;
	double	   *d2;				/* squared distance to the nearest center, tile order */
	double	   *tpot;			/* per tile: sum of its points' d2, how far (squared) */
	double	   *treach;			/* a candidate must be from its center to get nearer */
	double	   *tgrab;			/* to any point, and how near to get nearer to all */
	double	   *trr;			/* the reach's radius */
	int64		ngroups;		/* groups of SEED_GROUP tiles: */
	CmlVec3    *gq;				/* center, */
	double	   *gd;				/* each tile's center's distance to it (at most), */
	double	   *gpot;			/* potential, */
	double	   *greach;			/* and reach, as a tile's */
	double	   *bsum;			/* per band: sum of its points' d2 */
} SeedState;

/*
 * Band b's points (tile positions), in canonical order: sorted the first
 * time they are asked for
 */
static const int64 *
SeedBandPoints(const SeedState *st, int64 b)
{
	const Fit  *f = st->f;
	int64	   *pts = f->band_pts + f->band_start[b];
	int64		len = f->band_start[b + 1] - f->band_start[b];

	if (!f->band_sorted[b] && len > 1)
	{
		OrderedPoint *p = palloc_extended(sizeof(OrderedPoint) * len, MCXT_ALLOC_HUGE);

		for (int64 m = 0; m < len; m++)
		{
			/* by latitude (the sine), then x: a function of the point alone */
			p[m].key = OrderKey(f->x[pts[m]].z);
			p[m].lon = f->x[pts[m]].x + 0.0;
			p[m].pos = pts[m];
		}
		sort_points(p, len);
		for (int64 m = 0; m < len; m++)
			pts[m] = p[m].pos;
		pfree(p);
	}
	f->band_sorted[b] = true;
	return pts;
}

/*
 * Set tile t's potential, reach and grasp from its points' largest and
 * smallest d2: a candidate farther from its center than radius + sqrt(far)
 * is farther from each point than the point's center; one nearer than
 * sqrt(near) - radius is nearer to each (both rounded to the safe side)
 */
static inline void
SeedTileSet(SeedState *st, int64 t, double pot, double far, double near)
{
	double		r = (st->f->trad[t] + sqrt(far)) * (1.0 + 1e-9);
	double		g = sqrt(near) * (1.0 - 1e-9) - st->f->trad[t];

	st->tpot[t] = pot;
	st->trr[t] = r;
	st->treach[t] = r * r * (1.0 + 1e-9);
	st->tgrab[t] = g > 0.0 ? g * g * (1.0 - 1e-9) : -1.0;
}

/* Tiles of group g: [*t0, *t1) */
static inline void
SeedGroupTiles(const SeedState *st, int64 g, int64 *t0, int64 *t1)
{
	*t0 = g * SEED_GROUP;
	*t1 = Min(*t0 + SEED_GROUP, st->ntiles);
}

/* Group g's center, and each of its tiles' distance to it */
static void
SeedGroupInit(SeedState *st, int64 g)
{
	const Fit  *f = st->f;
	int64		t0;
	int64		t1;
	CmlVec3		q = {0, 0, 0};

	SeedGroupTiles(st, g, &t0, &t1);
	for (int64 t = t0; t < t1; t++)
	{
		q.x += f->tq[t].x;
		q.y += f->tq[t].y;
		q.z += f->tq[t].z;
	}
	q.x /= (t1 - t0);
	q.y /= (t1 - t0);
	q.z /= (t1 - t0);
	st->gq[g] = q;
	for (int64 t = t0; t < t1; t++)
		st->gd[t] = sqrt(CmlChord2(f->tq[t], q)) * (1.0 + 1e-12) + 1e-15;
}

/*
 * Group g's potential, and its reach: a candidate out of it is out of each
 * tile's (rounded outwards)
 */
static void
SeedGroupSet(SeedState *st, int64 g)
{
	int64		t0;
	int64		t1;
	double		pot = 0.0;
	double		r = 0.0;

	SeedGroupTiles(st, g, &t0, &t1);
	for (int64 t = t0; t < t1; t++)
	{
		pot += st->tpot[t];
		r = Max(r, st->gd[t] + st->trr[t]);
	}
	r *= 1.0 + 1e-9;
	st->gpot[g] = pot;
	st->greach[g] = r * r * (1.0 + 1e-9);
}

/* Potential of every point if cand were added as a center */
static double
SeedTrialPotential(const SeedState *st, CmlVec3 cand)
{
	const CmlVec3 *x = st->f->x;
	double		total = 0.0;

	for (int64 g = 0; g < st->ngroups; g++)
	{
		int64		t0;
		int64		t1;

		if (CmlChord2(st->gq[g], cand) > st->greach[g])
		{
			total += st->gpot[g];
			continue;
		}
		SeedGroupTiles(st, g, &t0, &t1);
		for (int64 t = t0; t < t1; t++)
		{
			int64		i1 = TILE_END(st->f->sh, t);
			double		dq2 = CmlChord2(st->f->tq[t], cand);
			double		sum = 0.0;

			if (dq2 > st->treach[t])
			{
				total += st->tpot[t];
				continue;
			}
			/* every point nearer to cand: the tile's figures give the sum */
			if (dq2 < st->tgrab[t])
			{
				total += FitTileInertia(st->f, t, cand);
				continue;
			}
			for (int64 i = TILE_START(t); i < i1; i++)
			{
				double		d = CmlChord2(x[i], cand);

				sum += (d < st->d2[i]) ? d : st->d2[i];
			}
			total += sum;
		}
	}
	return total;
}

/*
 * Add center cand: the points nearer to it get their new distance (first:
 * it is the first center, every point's distance is set)
 */
static void
SeedAddCenter(SeedState *st, CmlVec3 cand, bool first)
{
	const CmlVec3 *x = st->f->x;
	const int32 *band = st->f->band;

	for (int64 g = 0; g < st->ngroups; g++)
	{
		int64		t0;
		int64		t1;

		if (!first && CmlChord2(st->gq[g], cand) > st->greach[g])
			continue;
		SeedGroupTiles(st, g, &t0, &t1);
		for (int64 t = t0; t < t1; t++)
		{
			int64		i1 = TILE_END(st->f->sh, t);
			double		pot = 0.0;
			double		far = 0.0;
			double		near = INFINITY;

			if (!first && CmlChord2(st->f->tq[t], cand) > st->treach[t])
				continue;
			for (int64 i = TILE_START(t); i < i1; i++)
			{
				double		d = CmlChord2(x[i], cand);

				if (first || d < st->d2[i])
				{
					st->bsum[band[i]] += first ? d : d - st->d2[i];
					st->d2[i] = d;
				}
				pot += st->d2[i];
				far = Max(far, st->d2[i]);
				near = Min(near, st->d2[i]);
			}
			SeedTileSet(st, t, pot, far, near);
		}
		SeedGroupSet(st, g);
	}
}

/*
 * A point drawn with probability proportional to its squared distance (the
 * bands' sums are kept by additions: one that rounding leaves above zero
 * with no point beyond zero is passed over)
 */
static CmlVec3
SeedSample(const SeedState *st, double total, pg_prng_state *rng)
{
	const Fit  *f = st->f;
	double		r = pg_prng_double(rng) * total;
	int64		last = -1;

	for (int64 b = 0; b < f->nbands; b++)
	{
		const int64 *pts;
		int64		len = f->band_start[b + 1] - f->band_start[b];

		if (len == 0 || (st->bsum[b] <= r && b + 1 < f->nbands))
		{
			r -= st->bsum[b];
			continue;
		}
		pts = SeedBandPoints(st, b);
		for (int64 m = 0; m < len; m++)
		{
			int64		i = pts[m];

			if (st->d2[i] <= 0.0)
				continue;
			last = i;
			r -= st->d2[i];
			if (r < 0.0)
				return f->x[i];
		}
	}
	/*
	 * rounding left r beyond the bands walked, and the last band has no
	 * weight: the last point that has one
	 */
	for (int64 b = f->nbands - 1; last < 0 && b >= 0; b--)
	{
		const int64 *pts = SeedBandPoints(st, b);

		for (int64 m = f->band_start[b + 1] - f->band_start[b] - 1; last < 0 && m >= 0; m--)
			if (st->d2[pts[m]] > 0.0)
				last = pts[m];
	}
	if (last < 0)
		elog(ERROR, "k-means++ found no point to draw. Please report a bug.");
	return f->x[last];
}

/* The point of rank `rank` in the canonical order */
static CmlVec3
SeedRanked(const SeedState *st, int64 rank)
{
	const Fit  *f = st->f;
	int64		lo = 0;
	int64		hi = f->nbands - 1;

	/* the band holding it: the last one starting at or before it */
	while (lo < hi)
	{
		int64		mid = (lo + hi + 1) / 2;

		if (f->band_start[mid] <= rank)
			lo = mid;
		else
			hi = mid - 1;
	}
	return f->x[SeedBandPoints(st, lo)[rank - f->band_start[lo]]];
}

/*
 * Greedy k-means++ seeding into f->c, from the points in tile order f->x
 * (the tiles' figures and the bands set), with f->u as scratch; errors when
 * there are fewer than k distinct points
 */
static void
SeedCenters(Fit *f, pg_prng_state *rng)
{
	int64		n = f->sh->n;
	int32		k = f->sh->k;
	int			trials = 2 + (int) log((double) k);
	SeedState	st;

	st.f = f;
	st.ntiles = TILE_COUNT(n);
	st.d2 = f->u;
	st.tpot = palloc_extended(sizeof(double) * st.ntiles, MCXT_ALLOC_HUGE);
	st.treach = palloc_extended(sizeof(double) * st.ntiles, MCXT_ALLOC_HUGE);
	st.tgrab = palloc_extended(sizeof(double) * st.ntiles, MCXT_ALLOC_HUGE);
	st.trr = palloc_extended(sizeof(double) * st.ntiles, MCXT_ALLOC_HUGE);
	st.gd = palloc_extended(sizeof(double) * st.ntiles, MCXT_ALLOC_HUGE);
	st.ngroups = (st.ntiles + SEED_GROUP - 1) / SEED_GROUP;
	st.gq = palloc_extended(sizeof(CmlVec3) * st.ngroups, MCXT_ALLOC_HUGE);
	st.gpot = palloc_extended(sizeof(double) * st.ngroups, MCXT_ALLOC_HUGE);
	st.greach = palloc_extended(sizeof(double) * st.ngroups, MCXT_ALLOC_HUGE);
	for (int64 g = 0; g < st.ngroups; g++)
		SeedGroupInit(&st, g);
	st.bsum = palloc_extended(sizeof(double) * f->nbands, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);

	f->c[0] = SeedRanked(&st, (int64) (pg_prng_double(rng) * n));
	SeedAddCenter(&st, f->c[0], true);
	for (int32 c = 1; c < k; c++)
	{
		double		pot = 0.0;
		double		best_pot = -1.0;
		CmlVec3		best = {0};

		CHECK_FOR_INTERRUPTS();
		/* the groups' sums are exact: all zero when every point is a center */
		for (int64 g = 0; g < st.ngroups; g++)
			pot += st.gpot[g];
		if (!(pot > 0.0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("k = %d is larger than the number of distinct points (%d)", k, c),
					 errhint("Use a smaller k, or DBSCAN for data with many duplicates.")));
		pot = 0.0;
		for (int64 b = 0; b < f->nbands; b++)
			pot += st.bsum[b];
		for (int t = 0; t < trials; t++)
		{
			CmlVec3		cand = SeedSample(&st, pot, rng);
			double		tpot = SeedTrialPotential(&st, cand);

			if (t == 0 || ClearlyBelow(tpot, best_pot))
			{
				best_pot = tpot;
				best = cand;
			}
		}
		f->c[c] = best;
		SeedAddCenter(&st, best, false);
	}
	pfree(st.tpot);
	pfree(st.treach);
	pfree(st.tgrab);
	pfree(st.trr);
	pfree(st.gd);
	pfree(st.gq);
	pfree(st.gpot);
	pfree(st.greach);
	pfree(st.bsum);
}

/*
 * One k-means run from k-means++ seeds: Lloyd with Hamerly's bounds, into
 * the label array sh->cur
 */
static void
KmeansOnce(Fit *f, const KmeansOptions *o, double tol_abs, pg_prng_state *rng,
		   double *inertia, int32 *n_iter)
{
	FitShared  *sh = f->sh;
	int32		it;

	f->a = f->labels[sh->cur];
	memset(f->drift, 0, sizeof(double) * sh->k);
	sh->drift_max = 0.0;
	SeedCenters(f, rng);
	LloydHalfGaps(f);
	FitRunPass(f, FIT_PASS_FIRST);
	FitAddChunks(f, true);

	for (it = 0; it < o->max_iter; it++)
	{
		double		shift;
		int64		changed;

		CHECK_FOR_INTERRUPTS();
		LloydReseedEmpty(f);
		shift = LloydMove(f);
		LloydHalfGaps(f);
		FitRunPass(f, FIT_PASS_ASSIGN);
		changed = FitAddChunks(f, false);
		/* converged within tol: the assignment is that of the final centers */
		if (shift <= tol_abs)
			break;
		/* strictly converged: the next M-step would not move any center */
		if (changed == 0)
		{
			it++;
			break;
		}
	}

	FitRunPass(f, FIT_PASS_INERTIA);
	*inertia = 0.0;
	for (int32 ch = 0; ch < sh->nchunks; ch++)
		*inertia += f->out[ch].inertia;
	*n_iter = Min(it + 1, o->max_iter);
}

/*
 * Fit k-means on the unit vectors f->x (tile order, the bands set)
 * and build the model in out_cxt; *labels_out (if wanted) is set to the
 * fit's labels, valid until FitEnd
 */
static CmlModel *
KmeansFitVectors(Fit *f, const KmeansOptions *o, int32 **labels_out, MemoryContext out_cxt)
{
	const CmlVec3 *x = f->x;
	int64		n = f->sh->n;
	int64		ntiles = TILE_COUNT(n);
	pg_prng_state rng;
	CmlVec3		mean = {0, 0, 0};
	double		var = 0.0;
	double		tol_abs;
	CmlVec3    *best_centers = palloc(sizeof(CmlVec3) * o->k);
	CmlVec3    *best_sum = palloc(sizeof(CmlVec3) * o->k);
	int64	   *best_cnt = palloc(sizeof(int64) * o->k);
	double		best_inertia = INFINITY;
	int32		best_labels = -1;
	int32		best_iter = 0;
	MemoryContext old;
	CmlModel   *model;

	/*
	 * scikit-learn's tolerance: tol times the mean per-dimension variance,
	 * from the tiles' figures (each tile as a whole of center `mean`)
	 */
	for (int64 t = 0; t < ntiles; t++)
	{
		mean.x += f->tsum[t].x;
		mean.y += f->tsum[t].y;
		mean.z += f->tsum[t].z;
	}
	mean.x /= n;
	mean.y /= n;
	mean.z /= n;
	for (int64 t = 0; t < ntiles; t++)
		var += FitTileInertia(f, t, mean);
	tol_abs = o->tol * var / n / 3.0;

	pg_prng_seed(&rng, (uint64) o->seed);
	f->sh->cur = 0;
	for (int32 r = 0; r < o->n_init; r++)
	{
		double		inertia;
		int32		n_iter;

		KmeansOnce(f, o, tol_abs, &rng, &inertia, &n_iter);
		if (ClearlyBelow(inertia, best_inertia))
		{
			/* keep this run's labels: the next run writes the other array */
			best_inertia = inertia;
			best_labels = f->sh->cur;
			best_iter = n_iter;
			memcpy(best_centers, f->c, sizeof(CmlVec3) * o->k);
			memcpy(best_sum, f->sum, sizeof(CmlVec3) * o->k);
			memcpy(best_cnt, f->cnt, sizeof(int64) * o->k);
			f->sh->cur = 1 - f->sh->cur;
		}
	}

	old = MemoryContextSwitchTo(out_cxt);
	model = palloc0(sizeof(CmlModel));
	model->algorithm = CML_ALG_KMEANS;
	model->k = o->k;
	model->n_init = o->n_init;
	model->max_iter = o->max_iter;
	model->seed = (uint64) o->seed;
	model->tol = o->tol;
	model->n_train = n;
	model->n_zones = o->k;
	model->n_iter = best_iter;
	model->inertia = best_inertia * CML_EARTH_RADIUS_M * CML_EARTH_RADIUS_M;
	/*
	 * the zone figures: the centroids from the sums of the best run's last
	 * assignment, the pass over the points by chunks as Lloyd's
	 */
	CmlZoneCentroidsOfSums(model, best_sum, best_cnt, 0, x, f->labels[best_labels], n,
						   best_centers);
	for (int32 z = 0; z < o->k; z++)
		f->zunit[z] = model->zones[z].unit;
	if (f->znb != NULL)
		CmlSortedNeighbours(f->zunit, o->k, f->znb);
	f->sh->zstride = CmlZoneStride(n, o->k);
	f->sh->cur = best_labels;
	FitRunPass(f, FIT_PASS_ZONES);
	FitRelease(f);
	/* the distances are in u; l is free */
	CmlZoneFinish(model, f->labels[best_labels], n, f->u, f->sh->nchunks, f->zsum, f->zmax,
				  f->zsil, f->l);
	if (labels_out)
		*labels_out = f->labels[best_labels];
	MemoryContextSwitchTo(old);
	return model;
}

/* Validate train()'s k-means parameters, which must give k */
void
CmlKmeansCheckParams(Jsonb *params)
{
	KmeansOptions o;

	KmeansParseOptions(params, true, &o);
	if (o.k == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k-means parameters must give \"k\""),
				 errhint("For example '{\"k\": 16}'.")));
}

/*
 * ---------- the tile order of the points ----------
 *
 * Lloyd's passes take the points in an order that keeps near points near in
 * the array, so that tiles of consecutive points are small patches of the
 * map: the Z-order (Morton order) of their (lat, lon) on a grid of 65,536
 * cells a side over their bounding box, by a radix sort that carries the
 * coordinates (one pass by the cells' top bits, then each part in cache),
 * and within a cell by (lat, lon): a function of the point set.
 */

#define TILE_TOP_BITS 10			/* the first pass: by the cells' top bits ... */
#define TILE_LOCAL_BITS 8			/* ... then within each part, by this many at once */
#define TILE_WIDE_BITS 11			/* (or this many in a part of ... */
#define TILE_WIDE_PART 8192			/* ... this many points at least) */

/* A digit's histogram (of nvalues) becomes each value's first slot in the scatter */
static inline void
RadixOffsets(int64 *count, int nvalues)
{
	int64		total = 0;

	for (int v = 0; v < nvalues; v++)
	{
		int64		cnt = count[v];

		count[v] = total;
		total += cnt;
	}
}

/* The grid over the points' bounding box, and their latitude bands */
typedef struct TileGrid
{
	double		lat0;
	double		lon0;
	double		slat;			/* cells per degree */
	double		slon;
	double		sband;			/* bands per degree of latitude */
} TileGrid;

/* The 16 low bits of v spread to the even bits */
static inline uint64
TileSpread(uint64 v)
{
	v &= 0xFFFF;
	v = (v | (v << 8)) & UINT64CONST(0x00FF00FF);
	v = (v | (v << 4)) & UINT64CONST(0x0F0F0F0F);
	v = (v | (v << 2)) & UINT64CONST(0x33333333);
	return (v | (v << 1)) & UINT64CONST(0x55555555);
}

/* Z-order cell of (lat, lon) */
static inline uint64
TileCell(const TileGrid *g, double lat, double lon)
{
	int64		cy = (int64) ((lat - g->lat0) * g->slat);
	int64		cx = (int64) ((lon - g->lon0) * g->slon);

	return (TileSpread((uint64) cy) << 1) | TileSpread((uint64) cx);
}

/* Latitude band of lat (the latitudes alone decide it) */
static inline int32
TileBand(const TileGrid *g, double lat)
{
	return (int32) ((lat - g->lat0) * g->sband);
}

/* A point on its way to the tile order: its key (cell, reference) and coordinates */
typedef struct TileItem
{
	uint64		key;
	double		lat;
	double		lon;
} TileItem;

/* Sort the items of a cell, it[0 .. len - 1], by (lat, lon); tmp: room for len points */
static void
TileSortCell(TileItem *it, int64 len, OrderedPoint *tmp)
{
	for (int64 m = 0; m < len; m++)
		tmp[m] = OrderedPointOf(&it[m].lat, (int64) it[m].key);
	sort_points(tmp, len);
	for (int64 m = 0; m < len; m++)
	{
		it[m].key = (uint64) tmp[m].pos;
		it[m].lat = OrderKeyValue(tmp[m].key);
		it[m].lon = tmp[m].lon;
	}
}

/*
 * Sort a part, src[0 .. len - 1], into dst (as large) by the `nbits` bits of
 * its keys from bit `shift` on, with src as scratch: by LSD radix passes in
 * cache, of TILE_WIDE_BITS when the part is large enough to pay for their
 * histograms, else of TILE_LOCAL_BITS
 */
static void
TileSortPart(TileItem *src, TileItem *dst, int64 len, int shift, int nbits)
{
	int			bits = len >= TILE_WIDE_PART ? TILE_WIDE_BITS : TILE_LOCAL_BITS;
	int			npass = (nbits + bits - 1) / bits;
	const uint64 mask = (UINT64CONST(1) << bits) - 1;
	int64		cnt[1 << TILE_WIDE_BITS];
	TileItem   *a = src;
	TileItem   *b = dst;

	/* an even number of passes: the first moves the items to dst, and back */
	if (npass % 2 == 0)
	{
		memcpy(dst, src, sizeof(TileItem) * len);
		a = dst;
		b = src;
	}
	for (int p = 0; p < npass; p++)
	{
		int			sh = shift + p * bits;
		TileItem   *swap;

		memset(cnt, 0, sizeof(int64) << bits);
		for (int64 i = 0; i < len; i++)
			cnt[(a[i].key >> sh) & mask]++;
		RadixOffsets(cnt, 1 << bits);
		for (int64 i = 0; i < len; i++)
			b[cnt[(a[i].key >> sh) & mask]++] = a[i];
		swap = a;
		a = b;
		b = swap;
	}
}

/*
 * Put the input points into f->x in tile order as unit vectors, with their
 * references (f->ref) and latitude bands (f->band, f->band_start,
 * f->band_pts in tile order), and set the tiles' figures.  The grid has 2^16
 * cells a side (fewer if the references need the key's bits), so that few
 * cells hold more than one point.  The points go through the radix sort
 * with their coordinates, between f->x and scratch (as large), and end in
 * f->x, where each one's unit vector takes its place; the bands' lists of
 * points then take the last third of scratch (Lloyd's bounds may take the
 * rest).
 */
static void
TileOrder(const PointInput *in, Fit *f, void *scratch, bool want_ref)
{
	int64		n = f->sh->n;
	const int	rb = in->ref_bits;
	const uint64 ref_mask = (UINT64CONST(1) << rb) - 1;
	const int	grid_bits = Min(TILE_GRID_MAX_BITS, (64 - rb) / 2);
	const int	top_shift = rb + 2 * grid_bits - TILE_TOP_BITS;
	/* the first pass from a to b, then each part back to a, x */
	TileItem   *a = (TileItem *) f->x;
	TileItem   *b = (TileItem *) scratch;
	double		lat1 = -INFINITY;
	double		lon1 = -INFINITY;
	TileGrid	g = {INFINITY, INFINITY, 0.0, 0.0, 0.0};
	int64	   *count;
	int64	   *band_fill;
	OrderedPoint *cell_tmp = NULL;
	int64		cell_cap = 0;
	int64		cell_end = 0;
	int64		c = 0;

	StaticAssertStmt(sizeof(TileItem) == sizeof(CmlVec3), "the points are sorted in x");
	Assert(rb <= 64 - 2 * TILE_GRID_MIN_BITS);

	for (int32 r = 0; r < in->nruns; r++)
		for (int64 j = 0; j < in->start[r + 1] - in->start[r]; j++)
		{
			g.lat0 = Min(g.lat0, in->ll[r][2 * j]);
			lat1 = Max(lat1, in->ll[r][2 * j]);
			g.lon0 = Min(g.lon0, in->ll[r][2 * j + 1]);
			lon1 = Max(lon1, in->ll[r][2 * j + 1]);
		}
	/* just below the grid size (band count), so that an index stays in range */
	f->nbands = Max(n / SEED_BLOCK, 1);
	if (lat1 > g.lat0)
	{
		g.slat = ((UINT64CONST(1) << grid_bits) - 0.5) / (lat1 - g.lat0);
		g.sband = (f->nbands - 0.5) / (lat1 - g.lat0);
	}
	if (lon1 > g.lon0)
		g.slon = ((UINT64CONST(1) << grid_bits) - 0.5) / (lon1 - g.lon0);

	/*
	 * Keys: the Z-order's bits above the reference; the top bits' histogram
	 * and the bands' sizes in the same pass
	 */
	count = palloc0(sizeof(int64) * ((1 << TILE_TOP_BITS) + 1));
	f->band_start = palloc0(sizeof(int64) * (f->nbands + 1));
	for (int32 r = 0; r < in->nruns; r++)
		for (int64 j = 0; j < in->start[r + 1] - in->start[r]; j++)
		{
			double		lat = in->ll[r][2 * j] + 0.0;
			double		lon = in->ll[r][2 * j + 1] + 0.0;
			uint64		key = (TileCell(&g, lat, lon) << rb) | ((uint64) r << in->run_shift) | (uint64) j;

			a[c].key = key;
			a[c].lat = lat;
			a[c].lon = lon;
			c++;
			count[(key >> top_shift) + 1]++;
			f->band_start[TileBand(&g, lat) + 1]++;
		}

	/*
	 * The first pass by the top bits of the cells (a part per value), then
	 * each part in cache by the rest
	 */
	for (int v = 0; v < (1 << TILE_TOP_BITS); v++)
		count[v + 1] += count[v];
	{
		int64	   *fill = palloc(sizeof(int64) << TILE_TOP_BITS);

		memcpy(fill, count, sizeof(int64) << TILE_TOP_BITS);
		for (int64 i = 0; i < n; i++)
			b[fill[a[i].key >> top_shift]++] = a[i];
		pfree(fill);
	}
	for (int v = 0; v < (1 << TILE_TOP_BITS); v++)
	{
		if ((v & 63) == 0)
			CHECK_FOR_INTERRUPTS();
		TileSortPart(b + count[v], a + count[v], count[v + 1] - count[v], rb,
					 2 * grid_bits - TILE_TOP_BITS);
	}
	pfree(count);

	for (int64 v = 0; v < f->nbands; v++)
		f->band_start[v + 1] += f->band_start[v];
	band_fill = palloc(sizeof(int64) * f->nbands);
	memcpy(band_fill, f->band_start, sizeof(int64) * f->nbands);
	f->ref = want_ref ? BigAlloc(sizeof(int64) * n) : NULL;
	f->band = BigAlloc(sizeof(int32) * n);
	/* in scratch's last third: the bounds take the other two */
	f->band_pts = (int64 *) ((char *) scratch + sizeof(double) * 2 * n);
	f->band_sorted = palloc0(sizeof(bool) * f->nbands);

	/*
	 * Tile by tile, each point's reference and band, a cell's points by
	 * (lat, lon) first; then the tile's unit vectors in its items' place
	 */
	for (int64 t0 = 0; t0 < n; t0 += FIT_TILE)
	{
		int64		t1 = Min(t0 + FIT_TILE, n);

		for (int64 i = t0; i < t1; i++)
		{
			int32		band;

			if (i == cell_end)
			{
				cell_end = i + 1;
				while (cell_end < n && (a[cell_end].key >> rb) == (a[i].key >> rb))
					cell_end++;
				if (cell_end - i > 1)
				{
					if (cell_end - i > cell_cap)
					{
						if (cell_tmp)
							pfree(cell_tmp);
						cell_cap = Max(cell_end - i, 2 * cell_cap);
						cell_tmp = palloc_extended(sizeof(OrderedPoint) * cell_cap, MCXT_ALLOC_HUGE);
					}
					TileSortCell(a + i, cell_end - i, cell_tmp);
				}
			}
			band = TileBand(&g, a[i].lat);
			if (f->ref)
				f->ref[i] = (int64) (a[i].key & ref_mask);
			f->band[i] = band;
			f->band_pts[band_fill[band]++] = i;
		}
		CmlLatLonToVecs(&a[t0].lat, 3, f->x + t0, t1 - t0);
		FitTileFigures(f, t0 / FIT_TILE);
	}
	if (cell_tmp)
		pfree(cell_tmp);
	pfree(band_fill);
}

/* Fit k-means on a point set; k_in_options when k comes from the options (train) */
CmlModel *
CmlKmeansFitPoints(const CmlPoints *pts, int32 k, bool k_in_options, Jsonb *options,
				   int32 **labels_out)
{
	MemoryContext callerCxt = CurrentMemoryContext;
	MemoryContext cxt;
	int64		n = pts->n;
	KmeansOptions o;
	PointInput	in;
	Fit			f;
	void	   *scratch;
	CmlModel   *model;
	int32	   *tile_labels = NULL;

	if (k_in_options)
		CmlKmeansCheckParams(options);
	KmeansParseOptions(options, k_in_options, &o);
	if (!k_in_options)
		o.k = k;
	CheckK(o.k, n);
	PointInputOf(pts, &in);

	cxt = AllocSetContextCreate(CurrentMemoryContext, "cinematic_ml k-means",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);
	FitBegin(&f, n, o.k, o.n_init);

	/*
	 * The fit takes the points in tile order, f.x, in the shared memory when
	 * there are workers; the seeding draws them in the canonical order
	 * through the latitude bands, so the model depends only on the set of
	 * points and the seed: not on the scan order, nor on the order in which
	 * parallel workers' partial states were combined.
	 */
	if (f.x == NULL)
	{
		f.x = BigAlloc(sizeof(CmlVec3) * n);
		scratch = BigAlloc(sizeof(TileItem) * n);
		f.u = scratch;
		f.l = f.u + n;
	}
	else
		scratch = BigAlloc(sizeof(TileItem) * n);
	TileOrder(&in, &f, scratch, labels_out != NULL);
	model = KmeansFitVectors(&f, &o, labels_out ? &tile_labels : NULL, callerCxt);
	if (labels_out)
	{
		/* back to the caller's order */
		*labels_out = MemoryContextAllocHuge(callerCxt, sizeof(int32) * Max(n, 1));
		for (int64 i = 0; i < n; i++)
			(*labels_out)[RefIndex(&in, (uint64) f.ref[i])] = tile_labels[i];
	}
	FitEnd(&f);
	MemoryContextSwitchTo(callerCxt);
	MemoryContextDelete(cxt);
	return model;
}

PG_FUNCTION_INFO_V1(kmeans_fit_final);
Datum
kmeans_fit_final(PG_FUNCTION_ARGS)
{
	CmlPoints  *pts;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	pts = (CmlPoints *) PG_GETARG_POINTER(0);
	if (pts->n == 0)
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(CmlModelSerialize(CmlKmeansFitPoints(pts, (int32) pts->param[0], false,
															pts->options, NULL)));
}

/* The window's k-means labels */
static void
KmeansWindowFit(FunctionCallInfo fcinfo, const CmlPoints *pts, int32 *labels)
{
	WindowObject winobj = PG_WINDOW_OBJECT();
	bool		isnull;
	Datum		d = WinGetFuncArgCurrent(winobj, 2, &isnull);
	Jsonb	   *options = NULL;
	int32	   *fitted;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("k must not be NULL")));
	if (PG_NARGS() > 3)
	{
		Datum		o = WinGetFuncArgCurrent(winobj, 3, &isnull);

		if (!isnull)
			options = DatumGetJsonbP(o);
	}
	(void) CmlKmeansFitPoints(pts, DatumGetInt32(d), false, options, &fitted);
	memcpy(labels, fitted, sizeof(int32) * pts->n);
	pfree(fitted);
}

PG_FUNCTION_INFO_V1(cluster_kmeans);
/* cluster_kmeans(lat, lon, k [, options]) OVER (...): each row's k-means zone */
Datum
cluster_kmeans(PG_FUNCTION_ARGS)
{
	int32		label;

	if (!CmlWindowLabel(fcinfo, KmeansWindowFit, &label))
		PG_RETURN_NULL();
	PG_RETURN_INT32(label);
}
