/*
 * cinematic_ml.c — module entry: settings and subsystem initialisation
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "geo.h"
#include "predict.h"
#include "s3.h"
#include "stats.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static char *cml_audit_note = NULL;

/* Define the settings and initialise each subsystem */
void
_PG_init(void)
{
	DefineCustomStringVariable("cinematic_ml.default_model",
							   "Model used by predict functions called without a model name.",
							   "When empty, the only model with an active version is used.",
							   &cml_default_model,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("cinematic_ml.audit_note",
							   "Reason attached to registry audit rows (set by the retrain policy).",
							   NULL,
							   &cml_audit_note,
							   "",
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("cinematic_ml.use_avx2",
							 "Computes unit vectors and distances four at a time with AVX2 where the CPU has it.",
							 "The results are the same to the bit either way: off is for tests and comparisons.",
							 &cml_use_avx2,
							 true,
							 PGC_USERSET,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
	CmlS3Init();
	CmlPredictInit();
	CmlStatsInit();
	CmlWorkerInit();
	MarkGUCPrefixReserved("cinematic_ml");
}
