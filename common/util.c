/*
 * util.c owns the process-wide helpers of util.h. Everything here is
 * thread-safe and allocation-free except the sl_x* allocators, which abort on
 * failure because they are only ever used for bookkeeping, never for sizes a
 * peer chooses.
 */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void sl_panic(const char *file, int line, const char *what)
{
    fprintf(stderr, "sluice: assertion failed at %s:%d: %s\n", file, line, what);
    abort();
}

const char *sl_strerror(int rc)
{
    switch (rc) {
    case SL_OK:
        return "ok";
    case SL_AGAIN:
        return "incomplete";
    case SL_DECLINED:
        return "declined";
    case SL_DONE:
        return "done";
    case SL_ERR_NOMEM:
        return "out of memory";
    case SL_ERR_INVALID:
        return "invalid input";
    case SL_ERR_IO:
        return "i/o error";
    case SL_ERR_TOO_BIG:
        return "too big";
    case SL_ERR_TIMEOUT:
        return "timed out";
    case SL_ERR_NOT_FOUND:
        return "not found";
    case SL_ERR_EXISTS:
        return "already exists";
    }
    return "unknown error";
}

static void *oom(size_t n)
{
    fprintf(stderr, "sluice: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sl_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *sl_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    return p ? p : oom(nmemb * size);
}

void *sl_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *sl_xstrdup(const char *s)
{
    return sl_xstrndup(s, strlen(s));
}

char *sl_xstrndup(const char *s, size_t n)
{
    char *p = sl_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sl_xasprintf(const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(strlen(fmt));
    return s;
}

bool sl_strcaseeq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (sl_lower(a[i]) != sl_lower(b[i]))
            return false;
    return true;
}

int sl_parse_u64(const char *p, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return SL_ERR_INVALID;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return SL_ERR_INVALID;
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (max - d) / 10)
            return SL_ERR_INVALID;
        v = v * 10 + d;
    }
    *out = v;
    return SL_OK;
}

/* Splits "123unit" into a number and a unit suffix. */
static int split_number(const char *s, uint64_t *num, const char **unit)
{
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9')
        n++;
    if (sl_parse_u64(s, n, UINT64_MAX / (1024ULL * 1024 * 1024 * 1024), num) != SL_OK)
        return SL_ERR_INVALID;
    *unit = s + n;
    return SL_OK;
}

int sl_parse_size(const char *s, uint64_t *out)
{
    uint64_t n;
    const char *u;
    if (split_number(s, &n, &u) != SL_OK)
        return SL_ERR_INVALID;
    if (*u == '\0' || !strcmp(u, "b"))
        *out = n;
    else if (!strcmp(u, "k") || !strcmp(u, "K"))
        *out = n * 1024;
    else if (!strcmp(u, "m") || !strcmp(u, "M"))
        *out = n * 1024 * 1024;
    else if (!strcmp(u, "g") || !strcmp(u, "G"))
        *out = n * 1024 * 1024 * 1024;
    else
        return SL_ERR_INVALID;
    return SL_OK;
}

int sl_parse_duration_ms(const char *s, uint64_t *out)
{
    uint64_t n;
    const char *u;
    if (split_number(s, &n, &u) != SL_OK)
        return SL_ERR_INVALID;
    if (*u == '\0' || !strcmp(u, "s"))
        *out = n * 1000;
    else if (!strcmp(u, "ms"))
        *out = n;
    else if (!strcmp(u, "m"))
        *out = n * 60000;
    else if (!strcmp(u, "h"))
        *out = n * 3600000;
    else if (!strcmp(u, "d"))
        *out = n * 86400000;
    else
        return SL_ERR_INVALID;
    return SL_OK;
}

uint64_t sl_now_ms(void)
{
    return sl_now_us() / 1000;
}

uint64_t sl_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

double sl_wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sl_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int sl_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

uint64_t sl_hash(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

uint64_t sl_hash_lower(const void *p, size_t len)
{
    const char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)sl_lower(s[i]);
        h *= 1099511628211ULL;
    }
    return h;
}

int sl_write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp))
        return SL_ERR_INVALID;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return SL_ERR_IO;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0)
        goto fail;
    close(fd);
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return SL_ERR_IO;
    }
    return SL_OK;
fail:
    close(fd);
    unlink(tmp);
    return SL_ERR_IO;
}

int sl_read_file(const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return SL_ERR_IO;
    /* Reads up to max + 1 bytes: a file of exactly max bytes is accepted,
     * one byte more is too big. */
    size_t cap = SL_MIN((size_t)4096, max + 1), n = 0;
    char *buf = sl_xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if (cap == max + 1)
                break;
            cap = cap * 2 < max + 1 ? cap * 2 : max + 1;
            buf = sl_xrealloc(buf, cap + 1);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    int err = ferror(f);
    fclose(f);
    if (err || n > max) {
        free(buf);
        return err ? SL_ERR_IO : SL_ERR_TOO_BIG;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return SL_OK;
}

int sl_mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return SL_ERR_INVALID;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return SL_ERR_IO;
            *p = '/';
        }
    }
    return (mkdir(buf, 0755) == 0 || errno == EEXIST) ? SL_OK : SL_ERR_IO;
}

/* The length of the valid UTF-8 sequence starting at s (at most n bytes), or
 * 0 when it is not one (overlong forms, surrogates and values above U+10FFFF
 * included, as jansson's utf8_check_full decides). */
size_t sl_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || (len == 3 && cp < 0x800) ||
        (len == 4 && cp < 0x10000))
        return 0;
    return len;
}

/* ngx_http_lua_unescape_uri for a URI component: '+' is a space, %XX a
 * byte; after a '%', a character that is not a hex digit is kept if it
 * comes first and dropped if it comes second, as nginx's state machine
 * does. Writes into out (at least n bytes); returns the length. */
size_t sl_unescape_arg(const char *s, size_t n, char *out)
{
    enum { USUAL, QUOTED, QUOTED_SECOND } state = USUAL;
    size_t k = 0;
    int hi = 0;
    for (size_t i = 0; i < n; i++) {
        int d = sl_hex_value(s[i]);
        switch (state) {
        case USUAL:
            if (s[i] == '%')
                state = QUOTED;
            else
                out[k++] = s[i] == '+' ? ' ' : s[i];
            break;
        case QUOTED:
            if (d >= 0) {
                hi = d;
                state = QUOTED_SECOND;
            } else {
                out[k++] = s[i];
                state = USUAL;
            }
            break;
        case QUOTED_SECOND:
            if (d >= 0)
                out[k++] = (char)(hi << 4 | d);
            state = USUAL;
            break;
        }
    }
    return k;
}

void sl_quote_bytes(char *dst, size_t cap, const void *s, size_t n, size_t max)
{
    const unsigned char *p = s;
    size_t o = 0, i;
    if (!cap)
        return;
    for (i = 0; i < n && i < max && o + 5 < cap; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
            dst[o++] = (char)p[i];
        else
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", p[i]);
    }
    if (i < n && o + 4 < cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

void sl_codec_err_set(sl_codec_err_t *e, const char *fmt, ...)
{
    if (!e)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}
