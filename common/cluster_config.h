/*
 * Configuration snapshots on the wire and on disk: a sluice.config.Config
 * (proto/config.proto) packed and zstd-compressed. The decoder checks the
 * announced size against a limit before allocating and the decompressed
 * size against the announcement, so a hostile snapshot costs nothing.
 */
#ifndef SL_CLUSTER_CONFIG_H
#define SL_CLUSTER_CONFIG_H

#include "config.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* Largest decompressed configuration accepted. */
#define SL_CONFIG_MAX_RAW (1024u << 20)

/* Packs and compresses cfg. Returns a malloc'd buffer (*zlen bytes) and the
 * packed size in *raw_size. */
uint8_t *sl_config_compress(const Sluice__Config__Config *cfg, size_t *zlen, uint64_t *raw_size);

/* Decompresses and unpacks. Returns the Config (free with
 * sluice__config__config__free_unpacked(c, NULL)) or NULL with a reason in
 * err. */
Sluice__Config__Config *sl_config_decompress(const uint8_t *z, size_t zlen, uint64_t raw_size,
                                             char *err, size_t errlen);

#endif
