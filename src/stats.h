/*
 * stats.h — shared-memory statistics per model (with shared_preload_libraries)
 */
#ifndef CML_STATS_H
#define CML_STATS_H

typedef enum CmlStat
{
	CML_STAT_PREDICTIONS,
	CML_STAT_PREDICTIONS_CHALLENGER,
	CML_STAT_MODEL_LOADS,
	CML_STAT_CACHE_HITS,
	CML_STAT_TRAININGS,
	CML_STAT_TRAINING_MS,
	CML_STAT_PROMOTIONS,
	CML_STAT_ROLLBACKS,
	CML_STAT_DRIFT_CHECKS,
	CML_STAT_DRIFT_DRIFTED,
	CML_STAT_DRIFT_INSUFFICIENT,
	CML_STAT_EXPORTS_OK,
	CML_STAT_EXPORTS_FAILED,
	CML_STAT_RETRAINS_FAILED,
	CML_STAT_COUNT
} CmlStat;

extern void CmlStatsInit(void);
/* Add to a counter; a no-op without the preload.  Safe in any context (atomics only). */
extern void CmlStatsAdd(const char *model, CmlStat stat, uint64 delta);
/* Make sure a model has a slot (takes a lock: not from callbacks during abort) */
extern void CmlStatsTrack(const char *model);
extern void CmlStatsModelLoaded(const char *model, int32 version);

#endif							/* CML_STATS_H */
