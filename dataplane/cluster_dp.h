/*
 * The data plane side of the cluster protocol (role = data_plane): connects
 * to cluster_control_plane over mutual TLS, applies the snapshots and deltas
 * it receives by building a new generation and publishing it, reports
 * Applied, answers pings, reconnects with jittered exponential backoff, and
 * keeps the last applied configuration in <prefix>/cluster_config.pb so that
 * a restart without a control plane still serves it.
 *
 * Runs on the data plane's main thread (not a worker): a generation is built
 * there and swapped in atomically, so requests never wait for it.
 */
#ifndef SL_CLUSTER_DP_H
#define SL_CLUSTER_DP_H

#include "dp_conf.h"
#include "errors.h"

#include <event2/event.h>

/* Loads <prefix>/cluster_config.pb when present and publishes it. Returns
 * SL_OK (loaded), SL_ERR_NOT_FOUND (none) or SL_ERR_INVALID (unusable; the
 * reason is logged and the file left alone). */
int sl_dp_cluster_load_persisted(const sl_dp_conf_t *conf);

/* Checks the cluster settings and builds the TLS context; problems go to
 * errs naming the key. */
int sl_dp_cluster_check(const sl_dp_conf_t *conf, sl_errors_t *errs);

/* Starts connecting. Returns SL_OK or SL_ERR_INVALID with errs. */
int sl_dp_cluster_start(struct event_base *base, const sl_dp_conf_t *conf, sl_errors_t *errs);
void sl_dp_cluster_stop(void);

/* Appends ,"cluster":{connected, control_plane, bytes_received,
 * snapshots_applied, deltas_applied, last_apply_ms, last_error} to a
 * /status body when this node is a data plane; nothing otherwise. Main
 * thread only. */
struct evbuffer;
void sl_dp_cluster_status(struct evbuffer *body);

#endif
