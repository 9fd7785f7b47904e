/*
 * Request bodies and query strings as Kong's plugins see them: the argument
 * tables of kong.request.get_body (application/x-www-form-urlencoded through
 * ngx.decode_args, application/json through cjson, multipart/form-data
 * through lua-multipart) and of kong.request.get_query, and their encodings
 * back (kong.service.request.set_body, set_query, lua-multipart's tostring).
 *
 * Everything here allocates in the request's arena (sl_pdk_alloc) except a
 * parsed JSON document, which is a jansson value the caller releases with
 * sl_body_dispose. Decoders are linear in the input; argument tables keep
 * Kong's bounds (the first SL_ARGS_MAX form or query arguments).
 */
#ifndef SL_BODY_ARGS_H
#define SL_BODY_ARGS_H

#include "pdk.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* ngx.decode_args' and kong.request.get_body's default bound (100): later
 * arguments are not read. */
#define SL_ARGS_MAX 100

/* ---- form and query arguments -------------------------------------------- */

/* One value: `flag` is an argument without '=' (Lua's true). */
typedef struct sl_arg_val_s {
    const char *p;
    size_t len;
    bool flag;
} sl_arg_val_t;

/* One argument name with its values in order: one value is a Lua string (or
 * true), several a Lua array. */
typedef struct sl_arg_s {
    const char *name;
    size_t name_len;
    sl_arg_val_t *vals;
    size_t nvals, cap;
} sl_arg_t;

/* An argument table, in the order names first appeared. */
typedef struct sl_args_s {
    sl_arg_t *v;
    size_t n, cap;
} sl_args_t;

/* ngx.decode_args (and ngx.req.get_post_args, get_uri_args): '&'-separated
 * pairs, names and values percent-decoded ('+' is a space), an argument
 * without '=' a flag, an empty name skipped, the first SL_ARGS_MAX pairs. */
void sl_args_decode(sl_pdk_t *p, sl_str_t raw, sl_args_t *out);
sl_arg_t *sl_args_find(sl_args_t *a, const char *name, size_t len);
/* Appends a new argument without values (the name is borrowed). */
sl_arg_t *sl_args_add(sl_pdk_t *p, sl_args_t *a, const char *name, size_t len);
void sl_arg_push(sl_pdk_t *p, sl_arg_t *arg, sl_arg_val_t v);
void sl_args_remove(sl_args_t *a, sl_arg_t *arg);
/* ngx.encode_args of each argument ("k=v&k=v2", "k" for a flag, names and
 * values escaped as ngx.escape_uri escapes a component), joined by '&';
 * with `sorted`, the pieces sorted as kong.service.request.set_query and
 * set_body sort them, else in table order. NUL-terminated, in the arena. */
char *sl_args_encode(sl_pdk_t *p, const sl_args_t *a, bool sorted, size_t *len);

/* ---- multipart/form-data ------------------------------------------------- */

/* One part: its name (Content-Disposition's name parameter), its header
 * lines as received, its value. */
typedef struct sl_part_s {
    sl_str_t name;
    sl_str_t *headers;
    size_t nheaders;
    sl_str_t value;
} sl_part_t;

typedef struct sl_multipart_s {
    sl_str_t boundary; /* empty: the Content-Type named none */
    sl_part_t *parts;
    size_t n, cap;
} sl_multipart_t;

/* lua-multipart's boundary: after "; boundary=" in the Content-Type, the
 * run of non-space characters, one pair of enclosing quotes removed. False
 * when there is none. */
bool sl_multipart_boundary(sl_str_t content_type, sl_str_t *boundary);
/* lua-multipart's decoder: parts between boundary lines, each with a name;
 * nameless parts (and the preamble) are dropped. Without a boundary the
 * body has no parts. */
void sl_multipart_decode(sl_pdk_t *p, sl_str_t body, sl_str_t boundary, sl_multipart_t *out);
/* The first part of that name, or NULL; how many parts have it. */
sl_part_t *sl_multipart_get(sl_multipart_t *m, const char *name, size_t len);
size_t sl_multipart_count(const sl_multipart_t *m, const char *name, size_t len);
/* Removes every part of that name. */
void sl_multipart_delete(sl_multipart_t *m, const char *name, size_t len);
/* lua-multipart's set_simple: the first part of that name becomes a plain
 * field (Content-Disposition: form-data; name="..."), or one is appended. */
void sl_multipart_set_simple(sl_pdk_t *p, sl_multipart_t *m, const char *name, size_t len,
                             const char *value, size_t vlen);
/* lua-multipart's tostring: every part with its headers between boundary
 * lines, then the closing boundary; "" without parts. */
char *sl_multipart_encode(sl_pdk_t *p, const sl_multipart_t *m, size_t *len);

/* ---- kong.request.get_body / kong.service.request.set_body -------------- */

typedef enum {
    SL_BODY_OTHER = 0, /* no Content-Type, or one of no other kind */
    SL_BODY_FORM,      /* application/x-www-form-urlencoded */
    SL_BODY_JSON,      /* application/json */
    SL_BODY_MULTIPART, /* multipart/form-data */
} sl_body_type_t;

/* kong.request.get_body's reading of a Content-Type: lower-cased, cut at
 * ';', starting with one of the three types. */
sl_body_type_t sl_body_type(sl_str_t content_type);
/* request-transformer's: lower-cased, containing "application/json", else
 * "multipart/form-data", else "application/x-www-form-urlencoded". */
sl_body_type_t sl_body_type_loose(sl_str_t content_type);

/* A parsed body: the table kong.request.get_body returns. */
typedef struct sl_body_s {
    sl_body_type_t type;
    sl_str_t content_type; /* the request's Content-Type */
    sl_args_t form;        /* SL_BODY_FORM */
    json_t *json;          /* SL_BODY_JSON: an object or an array; owned */
    sl_multipart_t mp;     /* SL_BODY_MULTIPART */
} sl_body_t;

/*
 * kong.request.get_body() for the request's Content-Type. Returns true with
 * *b filled, or false with *why saying why the body gives no table (no
 * Content-Type, another type, JSON that is not an object or array, a body
 * that was not read). Call sl_body_dispose either way.
 */
bool sl_body_get(sl_pdk_t *p, sl_body_t *b, const char **why);
void sl_body_dispose(sl_body_t *b);

/* What body[name] is in Lua. */
typedef enum {
    SL_BODY_ABSENT = 0, /* nil */
    SL_BODY_STRING,     /* a string: *value */
    SL_BODY_TABLE,      /* a table: a repeated field, a JSON object or array */
    SL_BODY_SCALAR,     /* true (a form flag), a JSON number, boolean or null */
} sl_body_value_t;

sl_body_value_t sl_body_lookup(sl_body_t *b, const char *name, sl_str_t *value);
/* body[name] = nil */
void sl_body_remove(sl_body_t *b, const char *name);
/*
 * kong.service.request.set_body(body): the table encoded for the request's
 * Content-Type (form fields sorted by name; JSON compact; multipart fields
 * as plain parts sorted by name, on the Content-Type's boundary or a new
 * one, with Content-Type set to match) and sent upstream instead of the
 * client's body.
 */
void sl_body_set(sl_pdk_t *p, sl_body_t *b);

/* Encodes a JSON body as Kong's cjson does (compact, '/' escaped, numbers
 * with 14 significant digits). NULL when jansson cannot. In the arena. */
char *sl_body_json_encode(sl_pdk_t *p, const json_t *j, size_t *len);
/* Parses a JSON body as Kong's cjson would accept it (NUL in strings
 * allowed, integers too large for 64 bits read as reals); NULL when it is
 * not JSON. The caller owns the result. */
json_t *sl_body_json_decode(sl_str_t body);

#endif
