/*
 * A growable byte buffer for building protocol heads in one piece before a
 * single write into an evbuffer (many small evbuffer_add calls each run the
 * buffer's callbacks; printf-style formatting is slower still).
 *
 * Starts in caller-provided storage (usually the stack) and moves to the heap
 * only when a head outgrows it; sl_sb_dispose frees that heap copy.
 */
#ifndef SL_STRBUF_H
#define SL_STRBUF_H

#include "util.h"

typedef struct sl_sb_s {
    char *p;
    size_t len;
    size_t cap;
    char *heap; /* owned when the content moved off the initial storage */
} sl_sb_t;

static inline void sl_sb_init(sl_sb_t *b, char *storage, size_t cap)
{
    b->p = storage;
    b->len = 0;
    b->cap = cap;
    b->heap = NULL;
}

static inline void sl_sb_dispose(sl_sb_t *b)
{
    free(b->heap);
    b->heap = NULL;
}

void sl_sb_grow(sl_sb_t *b, size_t need);

static inline void sl_sb_add(sl_sb_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap)
        sl_sb_grow(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static inline void sl_sb_adds(sl_sb_t *b, const char *s)
{
    sl_sb_add(b, s, strlen(s));
}

static inline void sl_sb_addstr(sl_sb_t *b, sl_str_t s)
{
    sl_sb_add(b, s.p, s.len);
}

#define sl_sb_addlit(b, lit) sl_sb_add((b), (lit), sizeof(lit) - 1)

/* Appends an unsigned decimal number. */
void sl_sb_addu(sl_sb_t *b, uint64_t v);

/* Appends "name: value\r\n". */
static inline void sl_sb_header(sl_sb_t *b, const char *name, size_t nlen, const char *v,
                                size_t vlen)
{
    if (b->len + nlen + vlen + 4 > b->cap)
        sl_sb_grow(b, nlen + vlen + 4);
    char *o = b->p + b->len;
    memcpy(o, name, nlen);
    o[nlen] = ':';
    o[nlen + 1] = ' ';
    memcpy(o + nlen + 2, v, vlen);
    o[nlen + 2 + vlen] = '\r';
    o[nlen + 3 + vlen] = '\n';
    b->len += nlen + vlen + 4;
}

#endif
