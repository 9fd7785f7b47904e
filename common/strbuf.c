/*
 * strbuf.c: the slow paths of sl_sb_t (growing, number formatting).
 */
#include "strbuf.h"

void sl_sb_grow(sl_sb_t *b, size_t need)
{
    size_t cap = b->cap * 2;
    while (cap < b->len + need)
        cap *= 2;
    if (b->heap) {
        b->heap = sl_xrealloc(b->heap, cap);
    } else {
        b->heap = sl_xmalloc(cap);
        memcpy(b->heap, b->p, b->len);
    }
    b->p = b->heap;
    b->cap = cap;
}

void sl_sb_addu(sl_sb_t *b, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sl_sb_add(b, tmp + sizeof(tmp) - n, n);
}
