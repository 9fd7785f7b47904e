/*
 * arena.c owns the blocks of an sl_arena_t. An arena belongs to one thread
 * (the worker running its request); nothing here locks.
 */
#include "arena.h"
#include "util.h"

#define ARENA_BLOCK 4096

void sl_arena_init(sl_arena_t *a)
{
    sl_arena_init_sized(a, 0);
}

void sl_arena_init_sized(sl_arena_t *a, size_t block)
{
    a->head = NULL;
    a->cur = a->end = NULL;
    a->block = block;
}

void sl_arena_dispose(sl_arena_t *a)
{
    sl_arena_block_t *b = a->head;
    while (b) {
        sl_arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    sl_arena_init_sized(a, a->block);
}

void sl_arena_reset(sl_arena_t *a)
{
    if (!a->head)
        return;
    /* Keep the oldest block (the last in the chain) and free the newer ones. */
    sl_arena_block_t *b = a->head;
    while (b->next) {
        sl_arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    a->head = b;
    a->cur = b->data;
    a->end = b->data + b->size;
}

void *sl_arena_alloc(sl_arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if ((size_t)(a->end - a->cur) < n || !a->cur) {
        size_t block = a->block ? a->block : ARENA_BLOCK;
        size_t size = n > block ? n : block;
        sl_arena_block_t *b = sl_xmalloc(sizeof(*b) + size);
        b->size = size;
        b->used = 0;
        b->next = a->head;
        a->head = b;
        a->cur = b->data;
        a->end = b->data + size;
    }
    void *p = a->cur;
    a->cur += n;
    return p;
}

char *sl_arena_strndup(sl_arena_t *a, const char *s, size_t n)
{
    char *p = sl_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sl_arena_strdup(sl_arena_t *a, const char *s)
{
    return sl_arena_strndup(a, s, strlen(s));
}

void *sl_arena_zalloc(sl_arena_t *a, size_t n)
{
    void *p = sl_arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

void *sl_arena_grow(sl_arena_t *a, const void *p, size_t used, size_t n)
{
    void *q = sl_arena_alloc(a, n);
    if (used)
        memcpy(q, p, used);
    return q;
}
