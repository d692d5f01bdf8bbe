/*
 * registry.c — SQL entry points behind train(): fitting from a source query,
 * and the registry trigger that tells every backend a version changed
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

#include "points.h"

PG_FUNCTION_INFO_V1(fit);
/*
 * fit(source_query, algorithm, params) -> model bytea.  The query runs with
 * the caller's rights; it must return two numeric columns (lat, lon).
 */
Datum
fit(PG_FUNCTION_ARGS)
{
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *alg = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *params = PG_GETARG_JSONB_P(2);
	CmlPoints  *pts;
	CmlModel   *model;

	if (strcmp(alg, "kmeans") != 0 && strcmp(alg, "dbscan") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown algorithm \"%s\"", alg),
				 errhint("Use 'kmeans' or 'dbscan'.")));
	/* check the parameters before running a possibly long query */
	if (strcmp(alg, "dbscan") == 0)
	{
		double		eps_m;
		int32		min_points;

		CmlDbscanParseParams(params, &eps_m, &min_points);
		pts = CmlPointsFromQuery(query, "source query");
		model = CmlDbscanFitPoints(pts, eps_m, min_points, NULL);
	}
	else
	{
		CmlKmeansCheckParams(params);
		pts = CmlPointsFromQuery(query, "source query");
		model = CmlKmeansFitPoints(pts, 0, true, params, NULL);
	}
	PG_RETURN_BYTEA_P(CmlModelSerialize(model));
}

PG_FUNCTION_INFO_V1(registry_invalidate);
/* Statement trigger on model_versions: other backends drop their cached models at commit */
Datum
registry_invalidate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "registry_invalidate must be called as a trigger");
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
