/*
 * cluster_config.c: zstd-compressed Config messages.
 */
#include "cluster_config.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>

/* Fast enough to compress a 20,000-entity configuration in tens of
 * milliseconds, and within a few percent of level 3's ratio on JSON. */
#define ZSTD_LEVEL 1

uint8_t *sl_config_compress(const Sluice__Config__Config *cfg, size_t *zlen, uint64_t *raw_size)
{
    size_t len = sluice__config__config__get_packed_size(cfg);
    uint8_t *raw = sl_xmalloc(len ? len : 1);
    sluice__config__config__pack(cfg, raw);
    size_t cap = ZSTD_compressBound(len);
    uint8_t *z = sl_xmalloc(cap);
    size_t n = ZSTD_compress(z, cap, raw, len, ZSTD_LEVEL);
    SL_ASSERT(!ZSTD_isError(n));
    free(raw);
    *zlen = n;
    *raw_size = len;
    return z;
}

Sluice__Config__Config *sl_config_decompress(const uint8_t *z, size_t zlen, uint64_t raw_size,
                                             char *err, size_t errlen)
{
    if (raw_size > SL_CONFIG_MAX_RAW) {
        snprintf(err, errlen, "snapshot of %llu bytes exceeds the %u MiB limit",
                 (unsigned long long)raw_size, SL_CONFIG_MAX_RAW >> 20);
        return NULL;
    }
    unsigned long long content = ZSTD_getFrameContentSize(z, zlen);
    if (content == ZSTD_CONTENTSIZE_ERROR ||
        (content != ZSTD_CONTENTSIZE_UNKNOWN && content != raw_size)) {
        snprintf(err, errlen, "snapshot is not a zstd frame of the announced size");
        return NULL;
    }
    uint8_t *raw = sl_xmalloc(raw_size ? raw_size : 1);
    size_t n = ZSTD_decompress(raw, raw_size, z, zlen);
    if (ZSTD_isError(n) || n != raw_size) {
        snprintf(err, errlen, "snapshot does not decompress: %s",
                 ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size differs from the announced one");
        free(raw);
        return NULL;
    }
    Sluice__Config__Config *cfg = sluice__config__config__unpack(NULL, n, raw);
    free(raw);
    if (!cfg)
        snprintf(err, errlen, "snapshot is not a sluice.config.Config message");
    return cfg;
}
