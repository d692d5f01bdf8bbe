/*
 * worker.h — the background worker: schedules and the export queue
 */
#ifndef CML_WORKER_H
#define CML_WORKER_H

extern void CmlWorkerInit(void);

#endif							/* CML_WORKER_H */
