/*
 * Types and return codes shared by every part of Sluice.
 *
 * Functions return int: SL_OK (0), small positives with nginx's meanings, or a
 * negative SL_ERR_* that sl_strerror() turns into words. Results travel through
 * out-parameters.
 */
#ifndef SL_UTIL_T_H
#define SL_UTIL_T_H

#include <stddef.h>
#include <stdint.h>

enum {
    SL_OK = 0,       /* done */
    SL_AGAIN = 1,    /* incomplete: call again with more input */
    SL_DECLINED = 2, /* not mine / no match */
    SL_DONE = 3,     /* a response was produced */
};

enum {
    SL_ERR_NOMEM = -1,
    SL_ERR_INVALID = -2, /* bad input; a message says why */
    SL_ERR_IO = -3,
    SL_ERR_TOO_BIG = -4,
    SL_ERR_TIMEOUT = -5,
    SL_ERR_NOT_FOUND = -6,
    SL_ERR_EXISTS = -7,
};

/* A borrowed byte string: not NUL-terminated unless stated. */
typedef struct sl_str_s {
    const char *p;
    size_t len;
} sl_str_t;

#define SL_STR(lit) ((sl_str_t){(lit), sizeof(lit) - 1})
#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A macro's value as a string literal. */
#define SL_STRINGIFY_(x) #x
#define SL_XSTR(x) SL_STRINGIFY_(x)
#define SL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* The error of a codec call (the plugin protocols' sl_pb_err_t and
 * sl_mp_err_t): one message. */
typedef struct sl_codec_err_s {
    char msg[256];
} sl_codec_err_t;

#endif
