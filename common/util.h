/*
 * Small helpers every part uses: allocation that aborts on bookkeeping OOM,
 * case-insensitive comparisons, number parsing without locale surprises.
 */
#ifndef SL_UTIL_H
#define SL_UTIL_H

#include "util-t.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SL_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            sl_panic(__FILE__, __LINE__, #cond);                                                   \
    } while (0)

_Noreturn void sl_panic(const char *file, int line, const char *what);

const char *sl_strerror(int rc);

/* Bookkeeping allocations: abort on OOM. Never use for peer-sized data. */
void *sl_xmalloc(size_t n);
void *sl_xcalloc(size_t nmemb, size_t size);
void *sl_xrealloc(void *p, size_t n);
char *sl_xstrdup(const char *s);
char *sl_xstrndup(const char *s, size_t n);
char *sl_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static inline char sl_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

bool sl_strcaseeq(const char *a, size_t alen, const char *b, size_t blen);

/* Compares a string with a literal (or any NUL-terminated string). */
#define sl_str_caseeq_lit(s, lit) sl_strcaseeq((s).p, (s).len, (lit), strlen(lit))

/* Parses a decimal unsigned integer filling the whole of [p, p+len). Returns
 * SL_OK, or SL_ERR_INVALID for empty input, non-digits or overflow past max. */
int sl_parse_u64(const char *p, size_t len, uint64_t max, uint64_t *out);

/* Parses sizes like "1m", "64k", "512" (bytes). */
int sl_parse_size(const char *s, uint64_t *out);

/* Parses durations like "60s", "500ms", "5m", "1h", "14d"; a bare number is seconds.
 * Result in milliseconds. */
int sl_parse_duration_ms(const char *s, uint64_t *out);

/* Monotonic and wall clocks. */
uint64_t sl_now_ms(void);
uint64_t sl_now_us(void);
double sl_wall_time(void);

/* Writes n bytes as 2n lower-case hex digits and a NUL: out holds 2n + 1. */
void sl_hex_encode(const unsigned char *in, size_t n, char *out);

/* The value of one hex digit (either case), or -1 for any other char. */
int sl_hex_value(char c);

/* Percent-decodes a query argument as nginx does (ngx_unescape_uri for a
 * component: '+' is a space; a malformed escape keeps or drops bytes as
 * nginx's state machine does). out has room for n bytes; returns the
 * length written. */
size_t sl_unescape_arg(const char *s, size_t n, char *out);

/* FNV-1a, case-folded variant for header names. */
uint64_t sl_hash(const void *p, size_t len);
uint64_t sl_hash_lower(const void *p, size_t len);

/* Creates a directory and its missing parents (mode 0755); errno says why
 * on failure. */
int sl_mkdir_p(const char *path);

/* Writes a file atomically (temp file + fsync + rename). */
int sl_write_file_atomic(const char *path, const void *data, size_t len);

/* Reads a whole file (bounded by max). Caller frees *out. */
int sl_read_file(const char *path, size_t max, char **out, size_t *len);

/* The length of the valid UTF-8 sequence starting at s (at most n bytes),
 * or 0 when it is not one: overlong forms, surrogates and values above
 * U+10FFFF are refused, as jansson refuses them. */
size_t sl_utf8_len(const unsigned char *s, size_t n);

/* Writes s[0, n) into dst (cap bytes, NUL-terminated) for a log message:
 * printable ASCII as is but for '"' and '\\', other bytes as \xNN; only the
 * first max bytes of s, then "..." when there was more. */
void sl_quote_bytes(char *dst, size_t cap, const void *s, size_t n, size_t max);

/* Formats e->msg; e may be NULL (the caller did not ask). */
void sl_codec_err_set(sl_codec_err_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
