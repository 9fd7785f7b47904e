/*
 * A list of user-facing error messages, each naming the thing at fault and
 * the fix ("routes[3].paths[0]: ..."). Used by the configuration loaders and
 * validators, which report every problem at once rather than the first.
 */
#ifndef SL_ERRORS_H
#define SL_ERRORS_H

#include "util-t.h"

#include <stdarg.h>

typedef struct sl_errors_s {
    char **items; /* owned, each NUL-terminated */
    size_t n;
    size_t cap;
} sl_errors_t;

void sl_errors_init(sl_errors_t *e);
void sl_errors_dispose(sl_errors_t *e);
void sl_errors_add(sl_errors_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sl_errors_vadd(sl_errors_t *e, const char *fmt, va_list ap);

#endif
