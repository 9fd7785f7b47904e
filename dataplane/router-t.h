/*
 * Types of the router: Kong's traditional_compatible matching over hosts,
 * paths, methods and headers.
 */
#ifndef SL_ROUTER_T_H
#define SL_ROUTER_T_H

#include "util-t.h"

#include <stdbool.h>
#include <stdint.h>

#define SL_ROUTER_MAX_CAPTURES 16

enum sl_route_protocol {
    SL_PROTO_HTTP = 1u << 0,
    SL_PROTO_HTTPS = 1u << 1,
};

typedef struct sl_route_header_spec_s {
    const char *name;    /* header name, any case */
    const char **values; /* alternatives; a single value "~*re" is a regex */
    size_t nvalues;
} sl_route_header_spec_t;

/* One route as the router needs it. Strings are borrowed for the duration of
 * sl_router_new only: the router copies what it keeps. */
typedef struct sl_route_spec_s {
    const char **hosts; /* "example.com", "example.com:8080", "*.example.com", "example.*" */
    size_t nhosts;
    const char **paths; /* "/prefix" or "~/regex" */
    size_t npaths;
    const char **methods; /* uppercase */
    size_t nmethods;
    const sl_route_header_spec_t *headers;
    size_t nheaders;
    unsigned protocols; /* SL_PROTO_* bits; 0 means http|https */
    int64_t regex_priority;
    void *data; /* returned in the match; the caller's route object */
} sl_route_spec_t;

/* A request as the router sees it. */
typedef struct sl_router_req_s {
    sl_str_t method;
    sl_str_t path;   /* normalised, without query */
    sl_str_t host;   /* Host header value, possibly with :port; may be empty */
    unsigned scheme; /* SL_PROTO_HTTP or SL_PROTO_HTTPS */
    /* Header lookup: returns the number of values of header `name` (lowercase)
     * and stores up to max of them in out. */
    size_t (*get_header)(void *ud, const char *name, sl_str_t *out, size_t max);
    void *ud;
} sl_router_req_t;

typedef struct sl_router_capture_s {
    const char *name; /* NULL for numbered captures; borrowed from the router */
    int index;        /* capture number (1..) */
    sl_str_t value;   /* points into req->path */
} sl_router_capture_t;

typedef struct sl_router_match_s {
    void *data;        /* the matched route's spec.data */
    sl_str_t path;     /* the route path that matched, as configured ("/api" or "~/re") */
    bool regex;        /* the path was a regex */
    size_t prefix_len; /* bytes of req->path consumed by the matched prefix/regex match */
    size_t ncaptures;  /* regex captures, named and numbered (0 for prefix matches) */
    sl_router_capture_t captures[SL_ROUTER_MAX_CAPTURES];
    bool protocol_mismatch; /* matched, but not for this scheme (caller answers 426) */
} sl_router_match_t;

typedef struct sl_router_s sl_router_t;

#endif
