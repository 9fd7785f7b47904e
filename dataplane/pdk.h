/*
 * The C PDK: what a plugin can see and change of the request it runs for,
 * named after Kong's PDK (kong.request.get_header is sl_pdk_request_get_header).
 * Native plugins call these directly; the plugin-server bridge answers the
 * PDK calls of external plugins with the same functions: every method of
 * go-pdk's table has one here (docs/pdk.md maps them).
 *
 * Every function takes the sl_pdk_t handle a phase handler was given and is
 * valid only during that call, on that worker thread. Strings handed in are
 * copied (into the request's arena); strings handed out stay valid until the
 * request ends. Header names are matched case-insensitively.
 *
 * The request as the client sent it and the request as it will go upstream
 * are one: sl_pdk_service_request_set_header changes what
 * sl_pdk_request_get_header returns afterwards (as nginx's request headers
 * do under Kong). Response headers set before the upstream answered (in
 * access) apply to the response the client eventually gets, replacing the
 * upstream's fields of the same name.
 *
 * Tables (Kong's Lua tables: headers, query arguments, captures, ctx values,
 * memory statistics) are jansson values. A function returning json_t *
 * returns a new reference the caller owns (json_decref it); one taking a
 * const json_t * only reads it. Multi-maps (headers, query arguments) are
 * objects whose values are a string, or an array once a name repeats, as
 * Kong's tables are; bytes that are not UTF-8 come out as U+FFFD. Functions
 * that Kong makes raise an error on bad input return NULL or false here,
 * with the reason in the error log.
 */
#ifndef SL_PDK_H
#define SL_PDK_H

#include "gen.h"
#include "plugin.h"
#include "util-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The bounds of Kong's get_headers / get_query max argument: 1..1000, and
 * what go-pdk sends for -1 (and Kong uses when none is given). */
#define SL_PDK_MAX_DEFAULT 100
#define SL_PDK_MAX_LIMIT 1000

/* ---- kong.request: the client's request --------------------------------- */

sl_str_t sl_pdk_request_get_method(sl_pdk_t *p);
sl_str_t sl_pdk_request_get_scheme(sl_pdk_t *p); /* "http" or "https" */
/* The host the client asked for, lower-cased, without a port. */
sl_str_t sl_pdk_request_get_host(sl_pdk_t *p);
/* The port the client connected to. */
int sl_pdk_request_get_port(sl_pdk_t *p);
/* The normalised path (Kong's get_path), the raw path as received, the
 * raw query string without '?' (empty when none). */
sl_str_t sl_pdk_request_get_path(sl_pdk_t *p);
sl_str_t sl_pdk_request_get_raw_path(sl_pdk_t *p);
sl_str_t sl_pdk_request_get_raw_query(sl_pdk_t *p);
/* kong.request.get_path_with_query: nginx's $request_uri, the path and
 * query exactly as the client sent them (not what plugins changed). */
sl_str_t sl_pdk_request_get_path_with_query(sl_pdk_t *p);
/* "1.0" or "1.1" as a number times ten (10, 11); Kong's number is this / 10. */
int sl_pdk_request_get_http_version(sl_pdk_t *p);

/*
 * Kong's forwarded getters: when the peer is in trusted_ips, what its
 * X-Forwarded-* fields say, else the request's own value.
 *  - scheme: X-Forwarded-Proto lower-cased, else get_scheme;
 *  - host: X-Forwarded-Host without userinfo ("u@") and port, lower-cased,
 *    else get_host;
 *  - port: X-Forwarded-Port when 1..65535, else the port of
 *    X-Forwarded-Host, else get_port;
 *  - path: X-Forwarded-Path as sent, else get_path;
 *  - prefix: X-Forwarded-Prefix as sent, else the path prefix the route
 *    strips (what the proxy sends upstream as X-Forwarded-Prefix); false
 *    when none (Kong's nil).
 * The first field of a name counts, as sl_pdk_request_get_header.
 */
sl_str_t sl_pdk_request_get_forwarded_scheme(sl_pdk_t *p);
sl_str_t sl_pdk_request_get_forwarded_host(sl_pdk_t *p);
int sl_pdk_request_get_forwarded_port(sl_pdk_t *p);
sl_str_t sl_pdk_request_get_forwarded_path(sl_pdk_t *p);
bool sl_pdk_request_get_forwarded_prefix(sl_pdk_t *p, sl_str_t *prefix);

/* The first value of a header; false when absent. */
bool sl_pdk_request_get_header(sl_pdk_t *p, const char *name, sl_str_t *value);
/* Every header field in order: count, then each by index. */
size_t sl_pdk_request_header_count(sl_pdk_t *p);
bool sl_pdk_request_header_at(sl_pdk_t *p, size_t i, sl_str_t *name, sl_str_t *value);
/*
 * kong.request.get_headers(max): the first max fields (1..SL_PDK_MAX_LIMIT)
 * as a multi-map keyed by the lower-cased name ({"host": "example.com",
 * "x-a": ["1", "2"]}); *truncated (may be NULL) tells whether fields were
 * left out (Kong's second value "truncated"). NULL when max is out of
 * range (Kong raises "max_headers must be >= 1" / "<= 1000").
 */
json_t *sl_pdk_request_get_headers(sl_pdk_t *p, int max, bool *truncated);

/* Percent-decodes s as nginx decodes query arguments (sl_unescape_arg),
 * into the request's memory. */
sl_str_t sl_pdk_unescape(sl_pdk_t *p, const char *s, size_t n);

/* The first value of a query argument, percent-decoded ('+' is a space);
 * an argument without '=' has an empty value. False when absent. */
bool sl_pdk_request_get_query_arg(sl_pdk_t *p, const char *name, sl_str_t *value);
/*
 * kong.request.get_query(max): the first max arguments of the query string
 * as it is now (after set_raw_query and friends), names and values decoded
 * as get_query_arg, an argument without '=' as true: "?a=1&a&b=" gives
 * {"a": ["1", true], "b": ""}. Arguments with an empty name are skipped,
 * as OpenResty does. Bounds, *truncated and NULL as get_headers.
 */
json_t *sl_pdk_request_get_query(sl_pdk_t *p, int max, bool *truncated);

/*
 * kong.request.get_uri_captures: the router's regex captures,
 * {"unnamed": ["c1", "c2", ...], "named": {"name": "c1"}}. unnamed[0] is
 * group 1 (Kong's captures[1]); a group that did not take part is "".
 * Both are empty for a prefix match or without a route.
 */
json_t *sl_pdk_request_get_uri_captures(sl_pdk_t *p);

/* nginx's $server_addr (the local address the client connected to),
 * $connection (the connection's serial number in this process) and
 * $connection_requests (this request's number on its connection, from 1). */
const char *sl_pdk_server_get_addr(sl_pdk_t *p);
uint64_t sl_pdk_connection_serial(sl_pdk_t *p);
uint64_t sl_pdk_connection_requests(sl_pdk_t *p);

/* kong.request.get_raw_body: the whole request body, read before the access
 * phase because a plugin of the route wants it (sl_native_plugin_t
 * wants_body). True with len 0 when there is no body; false when the body
 * was not read (no plugin asked for it). */
bool sl_pdk_request_get_raw_body(sl_pdk_t *p, sl_str_t *body);

/* When get_raw_body is false: Kong's message for a body larger than
 * client_body_buffer_size, which streamed on unread (body_if_fits), or NULL
 * when the body was not read because nothing asked for it. */
const char *sl_pdk_request_raw_body_error(sl_pdk_t *p);

/* kong.request.get_start_time: when the request started, in milliseconds
 * since the epoch. */
uint64_t sl_pdk_request_get_start_time(sl_pdk_t *p);

/* ---- kong.client -------------------------------------------------------- */

/*
 * The peer's address and port, and the client's as trusted proxies report
 * them: nginx's realip module as Kong configures it (real_ip_header
 * X-Real-IP, set_real_ip_from trusted_ips, real_ip_recursive off). For a
 * trusted_ips peer whose first X-Real-IP field is an address, optionally
 * with a port ("192.0.2.1", "192.0.2.1:5000", "[2001:db8::1]:5000"), the
 * forwarded address is that address and the forwarded port that port, or
 * 0 when the field has none (Kong's nil); otherwise they are the peer's.
 */
const char *sl_pdk_client_get_ip(sl_pdk_t *p);
const char *sl_pdk_client_get_forwarded_ip(sl_pdk_t *p);
int sl_pdk_client_get_port(sl_pdk_t *p);
int sl_pdk_client_get_forwarded_port(sl_pdk_t *p);

/*
 * kong.client.get_protocol(allow_terminated): the route's protocol when it
 * has one ("http" or "https"); for a route with both, "https" when the
 * client's connection is TLS (never, yet) or, with allow_terminated, when a
 * trusted_ips peer sent X-Forwarded-Proto: https; else "http". NULL with
 * *err (may be NULL) set without a route ("No active route found") or when
 * a trusted peer sent X-Forwarded-Proto more than once ("Only one
 * X-Forwarded-Proto header allowed").
 */
const char *sl_pdk_client_get_protocol(sl_pdk_t *p, bool allow_terminated, const char **err);

/* Sets the authenticated consumer and credential (either may be NULL). */
void sl_pdk_client_authenticate(sl_pdk_t *p, const sl_consumer_t *consumer,
                                const sl_credential_t *credential);
const sl_consumer_t *sl_pdk_client_get_consumer(sl_pdk_t *p);
const sl_credential_t *sl_pdk_client_get_credential(sl_pdk_t *p);

/* A consumer of the request's configuration by id or, failing that, by
 * username (Kong's load_consumer(id, true)); NULL when none. */
const sl_consumer_t *sl_pdk_client_load_consumer(sl_pdk_t *p, const char *id_or_username);

/* A credential by its lookup key: keyauth_credentials by key,
 * basicauth_credentials by username, jwt_secrets by key. */
const sl_credential_t *sl_pdk_credential_lookup(sl_pdk_t *p, const char *table, const char *key);

/*
 * What Kong's auth plugins do on success or with an anonymous consumer:
 * authenticate, then set the upstream headers X-Consumer-ID,
 * X-Consumer-Custom-ID, X-Consumer-Username (each cleared when the consumer
 * has none), X-Credential-Identifier (the credential's id) and
 * X-Anonymous-Consumer: true when there is no credential.
 */
void sl_pdk_auth_set_consumer(sl_pdk_t *p, const sl_consumer_t *consumer,
                              const sl_credential_t *credential);

/* What Kong's auth plugins do when authentication failed and `anonymous` is
 * configured: continue as that consumer (id or username; X-Anonymous-Consumer
 * set), or answer 500 "anonymous consumer <x> is configured but doesn't
 * exist" when there is none. Returns what the access handler returns. */
int sl_pdk_auth_anonymous(sl_pdk_t *p, const char *anonymous);

/* ---- kong.ip ------------------------------------------------------------ */

/* kong.ip.is_trusted: whether addr (an IPv4 or IPv6 address) is in the
 * data plane's trusted_ips, matched as the proxy matches its peers. False
 * for anything that is not an address, except that a list holding both
 * 0.0.0.0/0 and ::/0 trusts everything (as Kong). */
bool sl_pdk_ip_is_trusted(sl_pdk_t *p, const char *addr);

/* ---- kong.node ---------------------------------------------------------- */

/*
 * kong.node.get_id: this node's id, a v4 UUID, the same for every worker.
 * In hybrid mode it is the id the data plane gives the control plane
 * (<prefix>/node.id, written by the cluster client at start-up). In DB-less
 * mode it is <prefix>/node.id when that file holds a UUID (an operator can
 * pin the id there), else one generated when first asked for and kept for
 * the life of the process (Kong also makes a new one at each start).
 */
const char *sl_pdk_node_get_id(sl_pdk_t *p);
/* kong.node.get_hostname: gethostname(2). */
const char *sl_pdk_node_get_hostname(sl_pdk_t *p);
/*
 * kong.node.get_memory_stats in Kong's shape:
 * {"lua_shared_dicts": {}, "workers_lua_vms": [{"pid": P, "http_allocated_gc": B}]}.
 * Sluice has no shared dictionaries (the object is empty; a protobuf
 * answer still sends zeroed kong and kong_db_cache messages) and its
 * workers are threads of one process sharing one heap, so there is one
 * entry: the process's pid and its resident set size in bytes
 * (/proc/self/statm; 0 when unreadable).
 */
json_t *sl_pdk_node_get_memory_stats(sl_pdk_t *p);

/* ---- kong.nginx --------------------------------------------------------- */

/*
 * kong.nginx.get_var: an nginx variable by name, as Kong's nginx would
 * have it. Known names: request_uri, uri (the normalised path), args and
 * query_string (the current query; not found when there is none), is_args,
 * request, request_method (after set_method), server_protocol, scheme,
 * https (""), host, hostname, remote_addr and remote_port (after the realip
 * rules of get_forwarded_ip), realip_remote_addr, realip_remote_port,
 * binary_remote_addr, server_addr, server_port, request_id and
 * kong_request_id, connection, connection_requests, request_length,
 * request_time, msec, pid, content_type, content_length, request_body
 * (when read), status ("000" before a response), body_bytes_sent,
 * upstream_uri (the path and query the upstream gets), upstream_host,
 * upstream_scheme, upstream_addr (once connected), upstream_status,
 * upstream_x_forwarded_{for,proto,host,port,path,prefix}, and the families
 * http_<name> (request fields; several are joined with ", ", Cookie with
 * "; "), arg_<name> (raw query argument), cookie_<name>, sent_http_<name>
 * (the response as the client gets it) and upstream_http_<name>. Variable
 * names are lower-case; the <name> part matches a field in any case, '_'
 * standing for '-' (arg_ and cookie_ compare names as sent). False for any
 * other name and for a known one without a value (nginx's nil).
 */
bool sl_pdk_nginx_get_var(sl_pdk_t *p, const char *name, sl_str_t *value);
/* kong.nginx.get_tls1_version_str: the client connection's TLS version;
 * NULL (Kong's nil) since the data plane does not terminate TLS yet. */
const char *sl_pdk_nginx_get_tls1_version_str(sl_pdk_t *p);
/* kong.nginx.set_ctx / get_ctx: per-request values under names of the
 * plugin's choosing (ngx.ctx), separate from kong.ctx.shared; values as
 * sl_pdk_ctx_shared_set_value. */
bool sl_pdk_nginx_set_ctx(sl_pdk_t *p, const char *key, const json_t *value);
json_t *sl_pdk_nginx_get_ctx(sl_pdk_t *p, const char *key);
/* kong.nginx.req_start_time: ngx.req.start_time(), seconds since the epoch
 * with microseconds. */
double sl_pdk_nginx_req_start_time(sl_pdk_t *p);
/* kong.nginx.get_subsystem: "http". */
const char *sl_pdk_nginx_get_subsystem(sl_pdk_t *p);

/* ---- kong.service: where the request goes ------------------------------- */

/*
 * kong.service.set_upstream: balance this request over the targets of the
 * upstream of that name (case-insensitive) instead of the service's host.
 * False when no upstream has the name (Kong's nil, "could not find an
 * Upstream named ..."). Replaces an earlier set_target.
 */
bool sl_pdk_service_set_upstream(sl_pdk_t *p, const char *name);
/*
 * kong.service.set_target: connect to host (a name or address) and port
 * (0..65535) instead of the service's, without balancing. As in Kong the
 * upstream Host becomes host (unless a plugin sets Host afterwards).
 * False on a bad host or port. Replaces an earlier set_upstream.
 * Both are access-phase calls recorded in the request (pdk_upstream,
 * target_host/target_port) for the proxy to read when it connects; its
 * connect_upstream does not act on them yet.
 */
bool sl_pdk_service_set_target(sl_pdk_t *p, const char *host, int port);

/* ---- kong.service.request: what goes upstream --------------------------- */

/* Replaces every field of that name ("host" sets the upstream Host). */
void sl_pdk_service_request_set_header(sl_pdk_t *p, const char *name, const char *value);
void sl_pdk_service_request_add_header(sl_pdk_t *p, const char *name, const char *value);
void sl_pdk_service_request_clear_header(sl_pdk_t *p, const char *name);
/*
 * kong.service.request.set_headers: for each name of the object, in
 * lexicographic order, replaces the fields of that name by the value (a
 * string, number or boolean) or by one field per string of an array (an
 * empty array removes them). Every name and value is checked first: on a
 * bad one nothing changes and the result is false.
 */
bool sl_pdk_service_request_set_headers(sl_pdk_t *p, const json_t *headers);
void sl_pdk_service_request_set_method(sl_pdk_t *p, const char *method);
/* The upstream path, replacing what the route and service would make. */
void sl_pdk_service_request_set_path(sl_pdk_t *p, const char *path);
/* The raw query string, without '?' ("" removes it). */
void sl_pdk_service_request_set_raw_query(sl_pdk_t *p, const char *query);
/*
 * kong.service.request.set_query: the query string made from an object of
 * arguments, as Kong's make_ordered_args: each value a string or number
 * ("k=v", percent-encoded but for A-Z a-z 0-9 - . _ ~), true ("k"), false
 * (left out) or an array of those (one argument each, in order); the
 * arguments of each name together, names in lexicographic order. False,
 * with nothing changed, when a value is of another type.
 */
bool sl_pdk_service_request_set_query(sl_pdk_t *p, const json_t *args);
/* kong.service.request.set_scheme: "http" or "https", the upstream
 * connection plain or TLS whatever the service's protocol; false (with a
 * log line) for any other value, as Kong's "invalid scheme". */
bool sl_pdk_service_request_set_scheme(sl_pdk_t *p, const char *scheme);
/* kong.service.request.set_raw_body: the body sent upstream instead of the
 * client's (with its Content-Length; chunked framing is dropped). Only once
 * the client's body was read (wants_body) or when it had none. */
void sl_pdk_service_request_set_raw_body(sl_pdk_t *p, const char *body, size_t len);
/* Removes every occurrence of a query argument. */
void sl_pdk_service_request_clear_query_arg(sl_pdk_t *p, const char *name);

/* ---- kong.response ------------------------------------------------------ */

/*
 * Ends the access phase with this response (Kong's kong.response.exit):
 * the status, the headers set so far with sl_pdk_response_set_header, and
 * body (len bytes; NULL for none) with Content-Length. Returns
 * SL_PLUGIN_EXIT for the handler to return.
 */
int sl_pdk_response_exit(sl_pdk_t *p, int status, const char *body, size_t len);
/* The same with Kong's JSON body {"message": message} and its
 * Content-Type "application/json; charset=utf-8". */
int sl_pdk_response_exit_message(sl_pdk_t *p, int status, const char *message);

/* Kong's kong.response.error: {"message": message, "request_id": id}
 * with Content-Type "application/json; charset=utf-8", the body the
 * gateway's own errors have. */
int sl_pdk_response_error(sl_pdk_t *p, int status, const char *message);

/* Headers of the response to the client. In access they apply to the
 * response to come; in header_filter to the one going out. */
void sl_pdk_response_set_header(sl_pdk_t *p, const char *name, const char *value);
void sl_pdk_response_add_header(sl_pdk_t *p, const char *name, const char *value);
void sl_pdk_response_clear_header(sl_pdk_t *p, const char *name);
/*
 * kong.response.set_headers: as sl_pdk_service_request_set_headers, on the
 * response to the client; Transfer-Encoding is ignored with a warning (as
 * Kong). False, with nothing changed, on a bad name or value.
 */
bool sl_pdk_response_set_headers(sl_pdk_t *p, const json_t *headers);
/* In header_filter and log: the status and headers as the client gets them. */
int sl_pdk_response_get_status(sl_pdk_t *p);
bool sl_pdk_response_get_header(sl_pdk_t *p, const char *name, sl_str_t *value);
/* Every response field as the client gets it (the upstream's, then what
 * plugins set and added), in order; for header_filter. */
size_t sl_pdk_response_header_count(sl_pdk_t *p);
bool sl_pdk_response_header_at(sl_pdk_t *p, size_t i, sl_str_t *name, sl_str_t *value);
/* kong.response.get_headers(max): those fields as a multi-map (see
 * sl_pdk_request_get_headers for max, *truncated and NULL). */
json_t *sl_pdk_response_get_headers(sl_pdk_t *p, int max, bool *truncated);
/* "service" (the upstream answered), "exit" (a plugin answered) or "error"
 * (the gateway answered: no route, upstream failure, ...). */
const char *sl_pdk_response_get_source(sl_pdk_t *p);

/* ---- kong.service.response and bodies: response and body_filter --------- */

/* The upstream's status and fields: in the response phase (the response
 * held whole) and in header_filter of a response from the upstream; 0 /
 * false / NULL otherwise (Kong's nil when the request was not proxied). */
int sl_pdk_service_response_get_status(sl_pdk_t *p);
bool sl_pdk_service_response_get_header(sl_pdk_t *p, const char *name, sl_str_t *value);
/* kong.service.response.get_headers(max): the upstream's fields as a
 * multi-map (see sl_pdk_request_get_headers); NULL as well when there is
 * no upstream response to read. */
json_t *sl_pdk_service_response_get_headers(sl_pdk_t *p, int max, bool *truncated);
/* The upstream's whole body (de-chunked), as received. */
bool sl_pdk_service_response_get_raw_body(sl_pdk_t *p, sl_str_t *body);
/* The body the client will get (the upstream's, or what set_raw_body put),
 * and replacing it; the Content-Length follows. */
bool sl_pdk_response_get_raw_body(sl_pdk_t *p, sl_str_t *body);
void sl_pdk_response_set_raw_body(sl_pdk_t *p, const char *body, size_t len);
/*
 * kong.response.set_status (100..599), by phase as under Kong's nginx:
 *  - access: accepted, but the status of what answers later (the upstream,
 *    an exit, a gateway error) replaces it, as it does in Kong;
 *  - response (the upstream response held whole): the status the client
 *    gets;
 *  - header_filter: the status of the head about to be written
 *    (kong.response.get_status reads it back; recorded as filter_status,
 *    which the proxy does not write into the head yet);
 *  - log: refused, the head is gone.
 * False when refused or out of range (with a log line).
 */
bool sl_pdk_response_set_status(sl_pdk_t *p, int status);

/* ---- kong.router, kong.ctx, kong.log, the rest --------------------------- */

/* The configuration generation the request is pinned to. */
const sl_gen_t *sl_pdk_gen(sl_pdk_t *p);

const sl_route_t *sl_pdk_router_get_route(sl_pdk_t *p);
const sl_service_t *sl_pdk_router_get_service(sl_pdk_t *p);

/* kong.ctx.shared with string values: visible to every plugin of the
 * request; NULL when unset or when the value is not a string. */
void sl_pdk_ctx_shared_set(sl_pdk_t *p, const char *key, const char *value);
const char *sl_pdk_ctx_shared_get(sl_pdk_t *p, const char *key);
/*
 * kong.ctx.shared with any value (Kong's Value): value is copied (NULL or
 * JSON null removes the key; a string is the same as
 * sl_pdk_ctx_shared_set). get_value returns a new reference to a copy, or
 * NULL when unset; a string set either way reads back either way. False
 * when the value cannot be stored (not encodable).
 */
bool sl_pdk_ctx_shared_set_value(sl_pdk_t *p, const char *key, const json_t *value);
json_t *sl_pdk_ctx_shared_get_value(sl_pdk_t *p, const char *key);

/* kong.ctx.plugin: one pointer per plugin per request, NULL at first; what
 * a plugin's access handler leaves there its header_filter and log see. */
void **sl_pdk_ctx_plugin(sl_pdk_t *p);

/*
 * Asynchronous work in an access handler (a network call): the handler
 * starts it, calls sl_pdk_suspend, and returns SL_PLUGIN_SUSPEND. When the
 * work is done, call sl_pdk_resume from the worker's event loop (never from
 * inside the handler) with what the handler would have returned
 * (SL_PLUGIN_CONTINUE, or SL_PLUGIN_EXIT after sl_pdk_response_exit*); the
 * request goes on with the next plugin. If the request goes away first (the
 * client closed, the worker shuts down), abort_cb(arg) is called instead and
 * the handle must not be used again. The work must bound its own time.
 */
void sl_pdk_suspend(sl_pdk_t *p, void (*abort_cb)(void *arg), void *arg);
void sl_pdk_resume(sl_pdk_t *p, int rc);

/* The phase whose handler runs (SL_PHASE_*: SL_PHASE_ACCESS until the
 * request is past access). */
unsigned sl_pdk_phase(sl_pdk_t *p);

/* The worker's event loop (libevent), for asynchronous work and timers. */
struct event_base *sl_pdk_event_base(sl_pdk_t *p);
/* The worker's index, 0 .. workers-1 (per-worker state). */
int sl_pdk_worker_id(sl_pdk_t *p);

/* The text of a header value or query argument as Kong's
 * normalize_multi_header makes it: a string as it is, a number or boolean
 * as Lua's tostring would print it (in the request's memory); NULL for any
 * other type. */
const char *sl_pdk_scalar_text(sl_pdk_t *p, const json_t *v);

/* Memory that lives as long as the request. */
void *sl_pdk_alloc(sl_pdk_t *p, size_t n);
char *sl_pdk_strndup(sl_pdk_t *p, const char *s, size_t n);

/* The request's id (32 hex characters, X-Kong-Request-Id) and start time
 * (microseconds, CLOCK_REALTIME; Kong's ngx.req.start_time() * 1e6). */
const char *sl_pdk_request_id(sl_pdk_t *p);
uint64_t sl_pdk_request_start_us(sl_pdk_t *p);

/*
 * kong.log.serialize: the request's log object as Kong's log plugins send
 * it (request, response, route, service, consumer, latencies, client_ip,
 * upstream_uri, started_at, tries, ...), a new reference the caller owns.
 * Meaningful in the log phase. (dataplane/serialize.c)
 */
json_t *sl_pdk_log_serialize(sl_pdk_t *p);
/* kong.log.set_serialize_value: sets (or with NULL removes) a dotted key of
 * the serialized object ("request.headers.x", "my_field"). */
void sl_pdk_log_set_serialize_value(sl_pdk_t *p, const char *key, const char *value);

/* kong.log.<level> (SL_LOG_*): a line prefixed with the plugin's name. */
void sl_pdk_log(sl_pdk_t *p, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The SL_LOG_* level of a kong.log function name: "debug", "info",
 * "notice", "warn", "err", "crit", "alert" (as crit; also "error"); -1 for
 * any other. */
int sl_pdk_log_level(const char *name);
/* kong.log.<level>(message): len bytes logged as they are, but that control
 * characters are escaped (\n, \xNN: one event, one line) and the message is
 * cut, with "...", to fit the error log's 2 KiB lines (1800 bytes). */
void sl_pdk_log_message(sl_pdk_t *p, int level, const char *msg, size_t len);
/* kong.log.<level>(...) with the arguments of a ListValue: each element
 * stringified as Lua's tostring does (strings as they are, numbers as
 * %.14g, true, false, nil for null; arrays and objects as compact JSON
 * where Lua would print "table: 0x...") and concatenated without a
 * separator, then logged as sl_pdk_log_message. */
void sl_pdk_log_values(sl_pdk_t *p, int level, const json_t *args);

#endif
