/*
 * model.h — the model: in-memory form, bytea format v1, validation
 *
 * Format v1 (all integers and floats little-endian):
 *
 *   header  (24 bytes)
 *     char[4]  magic "CMLM"
 *     uint16   format version (1)
 *     uint16   algorithm (1 = k-means, 2 = DBSCAN)
 *     uint32   reserved, always zero
 *     uint32   total length in bytes (header included)
 *     uint32   CRC-32C of everything after the header
 *     uint32   reserved, always zero
 *   parameters (48 bytes)
 *     int32 k, int32 n_init, int32 max_iter, int32 min_points,
 *     uint64 seed, float8 tol, float8 eps_m, int64 reserved (zero)
 *   training summary (48 bytes)
 *     int64 n_train, int64 n_noise, float8 inertia_m2, float8 silhouette,
 *     float8 davies_bouldin, int32 n_iter, int32 n_zones
 *   zones: n_zones x 72 bytes
 *     int64 n_points, float8 lat, float8 lon, float8 radius_m, float8 p90_m,
 *     float8 mean_m, float8 center x, y, z (k-means: the 3-D mean used for assignment)
 *   core points (DBSCAN only, otherwise n_core = 0): int64 n_core, then
 *     n_core x (float8 lat, float8 lon, int32 zone)
 */
#ifndef CML_MODEL_H
#define CML_MODEL_H

#include "lib/stringinfo.h"

#include "geo.h"

#define CML_MODEL_MAGIC "CMLM"
#define CML_FORMAT_VERSION 1
#define CML_HEADER_SIZE 24
#define CML_PARAMS_SIZE 48
#define CML_SUMMARY_SIZE 48
#define CML_ZONE_SIZE 72
#define CML_CORE_SIZE 20

/* Upper bounds that keep every size computation far from overflow */
#define CML_MAX_ZONES 1000000
#define CML_MAX_K 100000

typedef enum CmlAlgorithm
{
	CML_ALG_KMEANS = 1,
	CML_ALG_DBSCAN = 2
} CmlAlgorithm;

typedef struct CmlZone
{
	int64		n_points;
	double		lat;			/* centroid on the sphere */
	double		lon;
	double		radius_m;		/* max great-circle distance of a member to the centroid */
	double		p90_m;			/* 90th percentile of that distance */
	double		mean_m;			/* mean of that distance */
	CmlVec3		center;			/* k-means: 3-D mean (assignment); DBSCAN: unit centroid */
	CmlVec3		unit;			/* unit vector of (lat, lon), derived */
	double		radius_chord2;	/* radius_m as a squared chord, derived */
} CmlZone;

/* Spatial index over DBSCAN core points, built on load (see dbscan.c) */
typedef struct CmlCoreIndex CmlCoreIndex;

/*
 * A lat/lon grid of cells whose answer to predict_cluster is proven for every
 * point of the cell (built on load, see model.c).  A cell holds a zone below
 * 32767, -1 (noise), CML_GRID_UNKNOWN (search) or CML_GRID_REFINED (look in
 * its block of sub_f x sub_f sub-cells, which hold the same kinds of values).
 * Two bytes a cell keep a grid small enough for the CPU's caches.
 */
#define CML_GRID_UNKNOWN (-2)
#define CML_GRID_REFINED (-3)
#define CML_GRID_MAX_F 8

typedef struct CmlZoneGrid
{
	double		lat0;
	double		lon0;
	double		inv_dlat;
	double		inv_dlon;
	int32		nlat;
	int32		nlon;
	int16	   *cell;
	int32		sub_f;
	int32		nblock;
	int32	   *block;			/* per cell: its block of sub-cells, when refined */
	int16	   *sub;			/* the blocks, each row by row */
} CmlZoneGrid;

typedef struct CmlModel
{
	CmlAlgorithm algorithm;
	/* parameters */
	int32		k;
	int32		n_init;
	int32		max_iter;
	int32		min_points;
	uint64		seed;
	double		tol;
	double		eps_m;
	/* training summary */
	int64		n_train;
	int64		n_noise;
	double		inertia;		/* k-means: sum of squared chord metres; DBSCAN: 0 */
	double		silhouette;		/* simplified silhouette, NaN when undefined */
	double		davies_bouldin; /* NaN when undefined */
	int32		n_iter;
	int32		n_zones;
	CmlZone    *zones;
	/* DBSCAN core points */
	int64		n_core;
	double	   *core_lat;
	double	   *core_lon;
	int32	   *core_zone;
	CmlCoreIndex *core_index;	/* built lazily by CmlModelPrepare */
	CmlZoneGrid *zone_grid;		/* built by CmlModelPrepare (may stay NULL) */
} CmlModel;

/* Result of predicting one point */
typedef struct CmlPrediction
{
	int32		cluster;		/* -1 when no zone */
	bool		is_hotspot;
	double		distance_m;		/* to the zone's (or nearest zone's) centroid */
	double		zone_radius_m;	/* radius of that zone */
} CmlPrediction;

extern bytea *CmlModelSerialize(const CmlModel *model);
extern CmlModel *CmlModelDeserialize(const bytea *raw);
extern void CmlModelPrepare(CmlModel *model);
extern void CmlPredict(const CmlModel *model, double lat, double lon, CmlPrediction *out);
extern int32 CmlPredictZone(const CmlModel *model, CmlVec3 v, bool *is_hotspot, double *distance_m);
extern int32 CmlPredictCluster(const CmlModel *model, double lat, double lon, bool *is_hotspot);
extern const char *CmlAlgorithmName(CmlAlgorithm alg);
extern Datum CmlModelInfoJsonb(const CmlModel *model);

extern void CmlAppendJsonFloat(StringInfo buf, double v);

/* zones.c: per-zone figures and quality metrics from labelled unit vectors */
extern void CmlComputeZones(CmlModel *model, const CmlVec3 *pts, const int32 *labels,
							int64 n, const CmlVec3 *centers);

/* ... and the same in steps, the middle one by ranges of points (see zones.c) */
extern void CmlZoneCentroids(CmlModel *m, const CmlVec3 *x, const int32 *labels, int64 n,
							 const CmlVec3 *centers);
extern void CmlZoneCentroidsOfSums(CmlModel *m, const CmlVec3 *sum, const int64 *cnt,
								   int64 n_noise, const CmlVec3 *x, const int32 *labels, int64 n,
								   const CmlVec3 *centers);
extern int64 CmlZoneStride(int64 n, int32 nz);
extern int64 CmlZoneNeighbourCount(int32 nz);
extern void CmlZoneScan(const CmlVec3 *unit, int32 nz, const CmlNeighbour *nb, const CmlVec3 *x,
						const int32 *labels, int64 i0, int64 i1, int64 stride, double *dist,
						double *dsum, double *dmax, double *sil);
extern void CmlZoneFinish(CmlModel *m, const int32 *labels, int64 n, const double *dist,
						  int32 nparts, const double *dsum, const double *dmax,
						  const double *sil, double *scratch);
extern void CmlAppendZoneMetrics(StringInfo buf, const CmlModel *m);
extern void CmlCityFigures(const CmlModel *m, double *mean_points, double *mean_radius);

/* dbscan.c: core-point index used by predict */
extern CmlCoreIndex *CmlCoreIndexBuild(const CmlModel *model);
extern int32 CmlCoreIndexLookup(const CmlModel *model, CmlVec3 v);

#endif							/* CML_MODEL_H */
