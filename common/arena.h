/*
 * A bump allocator for objects that share one lifetime (a request). Memory is
 * taken from chained blocks and given back all at once by sl_arena_reset or
 * sl_arena_dispose. The first block can be embedded in the owner so a small
 * request allocates nothing.
 */
#ifndef SL_ARENA_H
#define SL_ARENA_H

#include <stddef.h>

typedef struct sl_arena_block_s {
    struct sl_arena_block_s *next;
    size_t size;
    size_t used;
    _Alignas(16) char data[];
} sl_arena_block_t;

typedef struct sl_arena_s {
    sl_arena_block_t *head; /* owned: the chain of heap blocks */
    char *cur;              /* bump pointer into the current block */
    char *end;
    size_t block; /* size of a new block; 0: 4 KiB */
} sl_arena_t;

void sl_arena_init(sl_arena_t *a);
/* An arena whose blocks are `block` bytes (for long-lived structures built
 * from many small pieces, such as a router). */
void sl_arena_init_sized(sl_arena_t *a, size_t block);
/* Frees every block. */
void sl_arena_dispose(sl_arena_t *a);
/* Frees all but the first block and rewinds it, for reuse by the next request. */
void sl_arena_reset(sl_arena_t *a);

/* Aligned to 16 bytes; aborts on OOM (callers cap peer-sized requests first). */
void *sl_arena_alloc(sl_arena_t *a, size_t n);
/* Zeroed. */
void *sl_arena_zalloc(sl_arena_t *a, size_t n);
char *sl_arena_strndup(sl_arena_t *a, const char *s, size_t n);
char *sl_arena_strdup(sl_arena_t *a, const char *s);
/* A copy of the first `used` bytes of p in n new bytes (p's bytes stay
 * allocated until the arena goes). */
void *sl_arena_grow(sl_arena_t *a, const void *p, size_t used, size_t n);

#endif
