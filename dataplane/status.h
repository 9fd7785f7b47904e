/*
 * The status listener (main thread): /status, /status/ready, /metrics.
 */
#ifndef SL_STATUS_H
#define SL_STATUS_H

#include "worker.h"

#include <event2/event.h>

typedef struct sl_status_s sl_status_t;

/* Serves on an already bound, listening fd (takes ownership). */
sl_status_t *sl_status_new(struct event_base *base, int fd, sl_worker_t **workers, int nworkers);
void sl_status_set_draining(sl_status_t *s);
void sl_status_free(sl_status_t *s);

#endif
