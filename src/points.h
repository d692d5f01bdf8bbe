/*
 * points.h — collecting training points (aggregate state, source queries)
 * and parsing jsonb options
 */
#ifndef CML_POINTS_H
#define CML_POINTS_H

#include "fmgr.h"
#include "utils/jsonb.h"

#include "geo.h"
#include "model.h"

/* Points gathered by the fitting aggregates; shared by k-means and DBSCAN */
typedef struct CmlPoints
{
	int64		n;
	int64		cap;
	double	   *ll;				/* lat, lon pairs */
	int32	   *label;			/* zone per point (zone_metrics), or NULL */
	bool		has_params;
	double		param[2];		/* k-means: k; DBSCAN: eps_m, min_points */
	Jsonb	   *options;		/* k-means options, or NULL */
	bool		linkable;		/* k-means: partial states are linked, not copied */
	/*
	 * Linked partial states (run_ll not NULL): the points are in nruns arrays
	 * (runs), run r at run_ll[r], ending at point run_end[r] (ll is run 0 or
	 * not read)
	 */
	int32		nruns;
	int64	   *run_end;
	double	  **run_ll;
} CmlPoints;

/* At most this many runs (parallel partial states) are linked rather than copied */
#define CML_LINK_MAX_RUNS 64

/* One recognised key of an options jsonb */
typedef enum CmlOptType
{
	CML_OPT_INT,
	CML_OPT_INT64,
	CML_OPT_FLOAT
} CmlOptType;

typedef struct CmlOptSpec
{
	const char *name;
	CmlOptType	type;
	double		min;
	double		max;
	void	   *dest;			/* int32 *, int64 * or double * */
} CmlOptSpec;

extern void CmlParseOptions(Jsonb *options, const char *what,
							const CmlOptSpec *spec, int nspec);

extern void CmlAdviseHugePages(void *p, Size size);
extern CmlPoints *CmlPointsCreate(void);
extern void CmlPointsAdd(CmlPoints *pts, double lat, double lon);
extern void CmlPointsAddLabelled(CmlPoints *pts, double lat, double lon, int32 label);
extern CmlVec3 *CmlPointsToVectors(const CmlPoints *pts);
extern CmlPoints *CmlPointsFromQuery(const char *query, const char *what);

/* Window functions: fill labels[0..pts->n-1] for the partition's points (reads its own args) */
typedef void (*CmlWindowFitFn) (FunctionCallInfo fcinfo, const CmlPoints *pts, int32 *labels);
extern bool CmlWindowLabel(FunctionCallInfo fcinfo, CmlWindowFitFn fit, int32 *label);

/* Fitting entry points (kmeans.c, dbscan.c), model allocated in the current context */
extern CmlModel *CmlKmeansFitPoints(const CmlPoints *pts, int32 k, bool k_in_options,
									Jsonb *options, int32 **labels_out);
extern CmlModel *CmlDbscanFitPoints(const CmlPoints *pts, double eps_m, int32 min_points,
									int32 **labels_out);
extern void CmlKmeansCheckParams(Jsonb *params);
extern void CmlDbscanParseParams(Jsonb *params, double *eps_m, int32 *min_points);

#endif							/* CML_POINTS_H */
