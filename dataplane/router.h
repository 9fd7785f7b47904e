/*
 * The router: built once per configuration generation (immutable afterwards,
 * shared read-only by all workers), matched once per request.
 *
 * Lookup never scans all routes: exact hosts are found by hash, plain path
 * prefixes by a trie, and regexes are only run for routes whose other
 * conditions can still win.
 */
#ifndef SL_ROUTER_H
#define SL_ROUTER_H

#include "router-t.h"

/*
 * Builds a router from n specs. Regex paths are compiled with PCRE2 (JIT
 * where available). Returns SL_OK with *out set, or SL_ERR_INVALID with a
 * message in err ("routes[3].paths[0]: ..." is the caller's prefix; the router
 * writes "spec 3: paths[0]: invalid regex ...", where 3 is the index in specs).
 */
int sl_router_new(const sl_route_spec_t *specs, size_t n, sl_router_t **out, char *err,
                  size_t errlen);
void sl_router_free(sl_router_t *r);

/*
 * Finds the route with Kong's highest priority among those whose every
 * configured field matches. Returns SL_OK with *m filled, or SL_DECLINED when
 * no route matches.
 */
int sl_router_match(const sl_router_t *r, const sl_router_req_t *req, sl_router_match_t *m);

/* Kong's 64-bit traditional_compatible priority of one (route, path) pair;
 * path may be NULL for routes without paths. Exposed for tests. */
uint64_t sl_router_priority(const sl_route_spec_t *spec, const char *path);

/*
 * Builds the upstream path (Kong section 5.5). service_path may be NULL (then
 * "/"). req_path is the normalised request path, m the match. path_handling
 * is 0 for v0, 1 for v1. Writes a NUL-terminated path into out (capacity
 * outcap); returns SL_OK or SL_ERR_TOO_BIG.
 */
int sl_router_upstream_path(const char *service_path, sl_str_t req_path, const sl_router_match_t *m,
                            bool strip_path, int path_handling, char *out, size_t outcap);

#endif
