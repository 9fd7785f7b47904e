/*
 * Cluster protocol frames: a 4-byte big-endian length, then one protobuf
 * sluice.cluster.ClusterMessage of that many bytes (proto/cluster.proto).
 * The reader checks the length against the configured maximum before
 * buffering the payload, so an oversized frame costs nothing.
 */
#ifndef SL_CLUSTER_FRAME_H
#define SL_CLUSTER_FRAME_H

#include "cluster.pb-c.h"
#include "config.pb-c.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stddef.h>

typedef Sluice__Cluster__ClusterMessage sl_cmsg_t;

/* The default and the bounds of cluster_max_payload. */
#define SL_CLUSTER_MAX_PAYLOAD_DEFAULT (16u << 20)
#define SL_CLUSTER_MAX_PAYLOAD_MIN (64u << 10)
#define SL_CLUSTER_MAX_PAYLOAD_MAX (1024u << 20)

/* Appends msg as one frame to out; returns the frame's size in bytes. */
size_t sl_frame_write(struct evbuffer *out, const sl_cmsg_t *msg);

/* Appends a Ping (pong false) or Pong frame carrying a configuration
 * version and hash: both sides send them alike. */
size_t sl_frame_write_ping(struct evbuffer *out, bool pong, uint64_t version, const char *hash);

/*
 * Takes one frame from in. Returns SL_OK with *msg set (free it with
 * sl_frame_free), SL_AGAIN when the frame is not complete yet,
 * SL_ERR_TOO_BIG when its length exceeds max, or SL_ERR_INVALID when the
 * payload is not a ClusterMessage (or carries none of its messages). After
 * an error the connection must be closed.
 */
int sl_frame_read(struct evbuffer *in, size_t max, sl_cmsg_t **msg);
void sl_frame_free(sl_cmsg_t *msg);

/* The message's name for logs ("Hello", "Delta", ...). */
const char *sl_frame_name(const sl_cmsg_t *msg);

#endif
