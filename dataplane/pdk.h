/*
 * The C PDK: what a plugin can see and change of the request it runs for,
 * named after Kong's PDK (kong.request.get_header is sl_pdk_request_get_header).
 * Native plugins call these directly; the plugin-server bridge answers the
 * PDK calls of external plugins with the same functions.
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
 */
#ifndef SL_PDK_H
#define SL_PDK_H

#include "gen.h"
#include "plugin.h"
#include "util-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
/* "1.0" or "1.1" as a number times ten (10, 11). */
int sl_pdk_request_get_http_version(sl_pdk_t *p);

/* The first value of a header; false when absent. */
bool sl_pdk_request_get_header(sl_pdk_t *p, const char *name, sl_str_t *value);
/* Every header field in order: count, then each by index. */
size_t sl_pdk_request_header_count(sl_pdk_t *p);
bool sl_pdk_request_header_at(sl_pdk_t *p, size_t i, sl_str_t *name, sl_str_t *value);

/* The first value of a query argument, percent-decoded ('+' is a space);
 * an argument without '=' has an empty value. False when absent. */
bool sl_pdk_request_get_query_arg(sl_pdk_t *p, const char *name, sl_str_t *value);

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

/* ---- kong.client -------------------------------------------------------- */

/* The peer's address, and the client's address as trusted proxies report
 * it (the X-Real-IP address of a trusted_ips peer; else the peer). */
const char *sl_pdk_client_get_ip(sl_pdk_t *p);
const char *sl_pdk_client_get_forwarded_ip(sl_pdk_t *p);
int sl_pdk_client_get_port(sl_pdk_t *p);

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

/* ---- kong.service.request: what goes upstream --------------------------- */

/* Replaces every field of that name ("host" sets the upstream Host). */
void sl_pdk_service_request_set_header(sl_pdk_t *p, const char *name, const char *value);
void sl_pdk_service_request_add_header(sl_pdk_t *p, const char *name, const char *value);
void sl_pdk_service_request_clear_header(sl_pdk_t *p, const char *name);
void sl_pdk_service_request_set_method(sl_pdk_t *p, const char *method);
/* The upstream path, replacing what the route and service would make. */
void sl_pdk_service_request_set_path(sl_pdk_t *p, const char *path);
/* The raw query string, without '?' ("" removes it). */
void sl_pdk_service_request_set_raw_query(sl_pdk_t *p, const char *query);
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
/* In header_filter and log: the status and headers as the client gets them. */
int sl_pdk_response_get_status(sl_pdk_t *p);
bool sl_pdk_response_get_header(sl_pdk_t *p, const char *name, sl_str_t *value);
/* Every response field as the client gets it (the upstream's, then what
 * plugins set and added), in order; for header_filter. */
size_t sl_pdk_response_header_count(sl_pdk_t *p);
bool sl_pdk_response_header_at(sl_pdk_t *p, size_t i, sl_str_t *name, sl_str_t *value);
/* "service" (the upstream answered), "exit" (a plugin answered) or "error"
 * (the gateway answered: no route, upstream failure, ...). */
const char *sl_pdk_response_get_source(sl_pdk_t *p);

/* ---- kong.service.response and bodies: response and body_filter --------- */

/* The upstream's status and fields (response, body_filter; 0 / false
 * before the upstream answered). */
int sl_pdk_service_response_get_status(sl_pdk_t *p);
bool sl_pdk_service_response_get_header(sl_pdk_t *p, const char *name, sl_str_t *value);
/* The upstream's whole body (de-chunked), as received. */
bool sl_pdk_service_response_get_raw_body(sl_pdk_t *p, sl_str_t *body);
/* The body the client will get (the upstream's, or what set_raw_body put),
 * and replacing it; the Content-Length follows. */
bool sl_pdk_response_get_raw_body(sl_pdk_t *p, sl_str_t *body);
void sl_pdk_response_set_raw_body(sl_pdk_t *p, const char *body, size_t len);
/* The status the client will get (response phase). */
void sl_pdk_response_set_status(sl_pdk_t *p, int status);

/* ---- kong.router, kong.ctx, kong.log, the rest --------------------------- */

/* The configuration generation the request is pinned to. */
const sl_gen_t *sl_pdk_gen(sl_pdk_t *p);

const sl_route_t *sl_pdk_router_get_route(sl_pdk_t *p);
const sl_service_t *sl_pdk_router_get_service(sl_pdk_t *p);

/* kong.ctx.shared with string values: visible to every plugin of the
 * request; NULL when unset. */
void sl_pdk_ctx_shared_set(sl_pdk_t *p, const char *key, const char *value);
const char *sl_pdk_ctx_shared_get(sl_pdk_t *p, const char *key);

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

/* The worker's event loop (libevent), for asynchronous work and timers. */
struct event_base *sl_pdk_event_base(sl_pdk_t *p);
/* The worker's index, 0 .. workers-1 (per-worker state). */
int sl_pdk_worker_id(sl_pdk_t *p);

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

#endif
