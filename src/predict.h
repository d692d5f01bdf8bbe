/*
 * predict.h — the per-backend model cache
 */
#ifndef CML_PREDICT_H
#define CML_PREDICT_H

extern void CmlPredictInit(void);
extern char *cml_default_model;

#endif							/* CML_PREDICT_H */
