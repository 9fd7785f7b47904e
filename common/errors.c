/*
 * errors.c owns sl_errors_t: a growable array of formatted messages. Errors
 * lists are short-lived (one configuration load) and single-threaded.
 */
#include "errors.h"
#include "util.h"

#include <stdio.h>

void sl_errors_init(sl_errors_t *e)
{
    e->items = NULL;
    e->n = e->cap = 0;
}

void sl_errors_dispose(sl_errors_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->items[i]);
    free(e->items);
    sl_errors_init(e);
}

void sl_errors_vadd(sl_errors_t *e, const char *fmt, va_list ap)
{
    char *msg;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = sl_xstrdup("(error message lost: out of memory)");
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 8;
        e->items = sl_xrealloc(e->items, e->cap * sizeof(*e->items));
    }
    e->items[e->n++] = msg;
}

void sl_errors_add(sl_errors_t *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_errors_vadd(e, fmt, ap);
    va_end(ap);
}
