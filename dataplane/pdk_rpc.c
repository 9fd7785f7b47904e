/*
 * pdk_rpc.c: the PDK calls of external plugins (ProtoBuf:1), answered with
 * the C PDK (see pdk_rpc.h).
 *
 * Kong's bridge does three things per call (plugin-protocol 2.5): unwrap
 * the argument message into Lua arguments, call the PDK function of the
 * same name, wrap its first return value into the output message. Here the
 * argument is decoded once by the method's input type (sl_pb_arg_decode);
 * most methods then fall into a handful of shapes (a getter without
 * argument, a lookup by name, a headers table, a header setter, a table
 * setter) that the ops table below maps to their PDK function, and the
 * rest, one of a kind, are the switch in call_special.
 *
 * Go never sees an error from Kong's PDK (2.4): a function that raises or
 * returns nil, err gives the output type's zero value, which is always a
 * zero-length frame, and a warn line naming the method goes to the error
 * log (refuse). Only an argument that does not decode fails the call.
 *
 * Runs on the request's worker thread, inside the event of one plugin.
 * Nothing outlives a call but what the PDK keeps in the request's arena
 * (the consumer and credential of kong.client.authenticate).
 */
#include "pdk_rpc.h"
#include "h1_parser.h"
#include "log.h"
#include "uuid.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* One call being performed. */
struct call {
    sl_pdk_t *p;
    const sl_pb_method_t *m;
    sl_pb_arg_t a; /* the decoded argument (frame B) */
    sl_sb_t *out;  /* where the answer (frame C) goes */
};

/* ------------------------------------------------------------------------ */
/* Answers                                                                   */

/* Logs why the call is refused and answers the zero value (2.4: go-pdk gets
 * no error either way, as under Kong). */
static void refuse(struct call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(struct call *c, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    sl_pdk_log(c->p, SL_LOG_WARN, "%s refused: %s", c->m->name, why);
    sl_pb_put_empty(c->out);
}

static void put_str(struct call *c, sl_str_t s)
{
    sl_pb_put_string(c->out, s.p, s.len);
}

/* A C string; NULL (Kong's nil) is the empty frame, as "" is. */
static void put_cstr(struct call *c, const char *s)
{
    sl_pb_put_string(c->out, s ? s : "", s ? strlen(s) : 0);
}

/* A table (Struct, Value, an entity) as m->out; takes the reference to v.
 * NULL is nil. A value the codec cannot encode is refused. */
static void put_table(struct call *c, json_t *v)
{
    sl_pb_err_t err;
    if (sl_pb_put_json(c->out, c->m->out, v, NULL, &err) != SL_OK)
        refuse(c, "the answer cannot be encoded: %s", err.msg);
    json_decref(v);
}

/* The result of a call that succeeds or is refused (why: for the log; the
 * PDK logged the details): Bool for the methods that answer one
 * (kong.service.set_upstream since Kong 3.7), else Empty. */
static void put_done(struct call *c, bool ok, const char *why)
{
    if (!ok) {
        refuse(c, "%s", why);
        return;
    }
    if (c->m->out == SL_PB_T_BOOL)
        sl_pb_put_bool(c->out, true);
    else
        sl_pb_put_empty(c->out);
}

/* ------------------------------------------------------------------------ */
/* Shapes shared by several methods                                          */

/* Kong's get_headers / get_query(max): go-pdk already maps -1 to the
 * default; another client's -1 is taken the same way. Out of 1..1000 Kong
 * raises. NULL from the PDK otherwise means there is nothing to read in
 * this phase (service.response.get_headers before the upstream answered). */
static void get_multimap(struct call *c, json_t *(*fn)(sl_pdk_t *, int, bool *))
{
    int max = c->a.v.i == -1 ? SL_PDK_MAX_DEFAULT : c->a.v.i;
    if (max < 1 || max > SL_PDK_MAX_LIMIT) {
        refuse(c, "max must be between 1 and %d, got %d", SL_PDK_MAX_LIMIT, max);
        return;
    }
    json_t *t = fn(c->p, max, NULL);
    if (!t) {
        refuse(c, "nothing to read in this phase");
        return;
    }
    put_table(c, t);
}

static bool name_ok(struct call *c, const char *name)
{
    if (*name && sl_h1_is_token(name, strlen(name)))
        return true;
    refuse(c, "invalid header name \"%.64s\"", name);
    return false;
}

/* The header setters of kong.response and kong.service.request. */
struct header_ops {
    void (*set)(sl_pdk_t *, const char *, const char *);
    void (*add)(sl_pdk_t *, const char *, const char *);
    void (*clear)(sl_pdk_t *, const char *);
};

static const struct header_ops response_headers = {
    sl_pdk_response_set_header, sl_pdk_response_add_header, sl_pdk_response_clear_header};
static const struct header_ops upstream_headers = {sl_pdk_service_request_set_header,
                                                   sl_pdk_service_request_add_header,
                                                   sl_pdk_service_request_clear_header};

/*
 * set_header / add_header(k, v) with KV's value: a string, number or
 * boolean is one field; an array of strings is one field each (set
 * replaces with the first and adds the rest; an empty array clears), as
 * Kong's normalize_multi_header. Every name and value is checked first, so
 * a refused call changes nothing.
 */
static void set_header_kv(struct call *c, const struct header_ops *ops, bool add)
{
    const char *name = c->a.v.key.p;
    const json_t *v = c->a.json;
    if (!name_ok(c, name))
        return;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        const char *text =
            json_is_array(v) && !json_is_string(e) ? NULL : sl_pdk_scalar_text(c->p, e);
        if (!text) {
            refuse(c,
                   "invalid value for header \"%.64s\": expected a string, number, boolean "
                   "or array of strings",
                   name);
            return;
        }
        if (!sl_h1_is_field_value(text, strlen(text))) {
            refuse(c, "invalid value for header \"%.64s\": control characters", name);
            return;
        }
    }
    if (n == 0 && !add)
        ops->clear(c->p, name);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(v) ? json_array_get(v, i) : v;
        const char *text = sl_pdk_scalar_text(c->p, e);
        (add || i > 0 ? ops->add : ops->set)(c->p, name, text);
    }
    sl_pb_put_empty(c->out);
}

static void clear_header(struct call *c, const struct header_ops *ops)
{
    if (!name_ok(c, c->a.v.str.p))
        return;
    ops->clear(c->p, c->a.v.str.p);
    sl_pb_put_empty(c->out);
}

/* ------------------------------------------------------------------------ */
/* The methods of one shape, by id                                           */

/*
 * One entry per method that fits a shape; exactly one member is set. The
 * input and output types are the method table's (pb_codec.c):
 *   str, cstr   Empty -> String          num    Empty -> Int
 *   lookup      String -> String (an empty frame when absent: nil; a present
 *               empty value is sent as a field, which go-pdk reads as ""
 *               either way and a MsgPack client sees as "")
 *   multimap    Int (max) -> Struct      json   Empty -> the output table
 *   value_get   String -> Value          value_set   KV -> Empty or String
 *   set         String -> Empty          table  Struct -> Empty
 *   headers     KV -> Empty (set or add) clear  String -> Empty
 *   test        String -> Bool or Empty (false: refused)
 *   log         ListValue -> Empty at the level the name ends with
 */
struct op {
    sl_str_t (*str)(sl_pdk_t *);
    const char *(*cstr)(sl_pdk_t *);
    int (*num)(sl_pdk_t *);
    bool (*lookup)(sl_pdk_t *, const char *, sl_str_t *);
    json_t *(*multimap)(sl_pdk_t *, int, bool *);
    json_t *(*json)(sl_pdk_t *);
    json_t *(*value_get)(sl_pdk_t *, const char *);
    bool (*value_set)(sl_pdk_t *, const char *, const json_t *);
    void (*set)(sl_pdk_t *, const char *);
    bool (*table)(sl_pdk_t *, const json_t *);
    bool (*test)(sl_pdk_t *, const char *);
    const struct header_ops *headers, *clear;
    bool add; /* headers: add_header rather than set_header */
    bool log;
    const char *why; /* value_set, table, test: what a refusal means */
};

#define OP(id, ...) [SL_PB_M_##id] = {__VA_ARGS__}

static const struct op ops[SL_PB_M_COUNT] = {
    OP(CLIENT_GET_FORWARDED_IP, .cstr = sl_pdk_client_get_forwarded_ip),
    OP(CLIENT_GET_FORWARDED_PORT, .num = sl_pdk_client_get_forwarded_port),
    OP(CLIENT_GET_IP, .cstr = sl_pdk_client_get_ip),
    OP(CLIENT_GET_PORT, .num = sl_pdk_client_get_port),
    OP(CTX_SHARED_GET, .value_get = sl_pdk_ctx_shared_get_value),
    OP(CTX_SHARED_SET, .value_set = sl_pdk_ctx_shared_set_value, .why = "value not encodable"),
    OP(LOG_ALERT, .log = true),
    OP(LOG_CRIT, .log = true),
    OP(LOG_DEBUG, .log = true),
    OP(LOG_ERR, .log = true),
    OP(LOG_INFO, .log = true),
    OP(LOG_NOTICE, .log = true),
    OP(LOG_WARN, .log = true),
    OP(NGINX_GET_CTX, .value_get = sl_pdk_nginx_get_ctx),
    OP(NGINX_GET_SUBSYSTEM, .cstr = sl_pdk_nginx_get_subsystem),
    OP(NGINX_GET_TLS1_VERSION_STR, .cstr = sl_pdk_nginx_get_tls1_version_str),
    OP(NGINX_GET_VAR, .lookup = sl_pdk_nginx_get_var),
    OP(NGINX_SET_CTX, .value_set = sl_pdk_nginx_set_ctx, .why = "value not encodable"),
    OP(NODE_GET_ID, .cstr = sl_pdk_node_get_id),
    OP(NODE_GET_MEMORY_STATS, .json = sl_pdk_node_get_memory_stats),
    OP(REQUEST_GET_FORWARDED_HOST, .str = sl_pdk_request_get_forwarded_host),
    OP(REQUEST_GET_FORWARDED_PORT, .num = sl_pdk_request_get_forwarded_port),
    OP(REQUEST_GET_FORWARDED_SCHEME, .str = sl_pdk_request_get_forwarded_scheme),
    OP(REQUEST_GET_HEADER, .lookup = sl_pdk_request_get_header),
    OP(REQUEST_GET_HEADERS, .multimap = sl_pdk_request_get_headers),
    OP(REQUEST_GET_HOST, .str = sl_pdk_request_get_host),
    OP(REQUEST_GET_METHOD, .str = sl_pdk_request_get_method),
    OP(REQUEST_GET_PATH, .str = sl_pdk_request_get_path),
    OP(REQUEST_GET_PATH_WITH_QUERY, .str = sl_pdk_request_get_path_with_query),
    OP(REQUEST_GET_PORT, .num = sl_pdk_request_get_port),
    OP(REQUEST_GET_QUERY, .multimap = sl_pdk_request_get_query),
    OP(REQUEST_GET_QUERY_ARG, .lookup = sl_pdk_request_get_query_arg),
    OP(REQUEST_GET_RAW_QUERY, .str = sl_pdk_request_get_raw_query),
    OP(REQUEST_GET_SCHEME, .str = sl_pdk_request_get_scheme),
    OP(REQUEST_GET_URI_CAPTURES, .json = sl_pdk_request_get_uri_captures),
    OP(RESPONSE_ADD_HEADER, .headers = &response_headers, .add = true),
    OP(RESPONSE_CLEAR_HEADER, .clear = &response_headers),
    OP(RESPONSE_GET_HEADER, .lookup = sl_pdk_response_get_header),
    OP(RESPONSE_GET_HEADERS, .multimap = sl_pdk_response_get_headers),
    OP(RESPONSE_GET_SOURCE, .cstr = sl_pdk_response_get_source),
    OP(RESPONSE_GET_STATUS, .num = sl_pdk_response_get_status),
    OP(RESPONSE_SET_HEADER, .headers = &response_headers),
    OP(RESPONSE_SET_HEADERS, .table = sl_pdk_response_set_headers, .why = "invalid headers"),
    OP(SERVICE_REQUEST_ADD_HEADER, .headers = &upstream_headers, .add = true),
    OP(SERVICE_REQUEST_CLEAR_HEADER, .clear = &upstream_headers),
    OP(SERVICE_REQUEST_SET_HEADER, .headers = &upstream_headers),
    OP(SERVICE_REQUEST_SET_HEADERS, .table = sl_pdk_service_request_set_headers,
       .why = "invalid headers"),
    OP(SERVICE_REQUEST_SET_METHOD, .set = sl_pdk_service_request_set_method),
    OP(SERVICE_REQUEST_SET_PATH, .set = sl_pdk_service_request_set_path),
    OP(SERVICE_REQUEST_SET_QUERY, .table = sl_pdk_service_request_set_query,
       .why = "invalid query arguments"),
    OP(SERVICE_REQUEST_SET_RAW_QUERY, .set = sl_pdk_service_request_set_raw_query),
    OP(SERVICE_REQUEST_SET_SCHEME, .test = sl_pdk_service_request_set_scheme,
       .why = "unsupported scheme"),
    OP(SERVICE_RESPONSE_GET_HEADER, .lookup = sl_pdk_service_response_get_header),
    OP(SERVICE_RESPONSE_GET_HEADERS, .multimap = sl_pdk_service_response_get_headers),
    OP(SERVICE_RESPONSE_GET_STATUS, .num = sl_pdk_service_response_get_status),
    OP(SERVICE_SET_UPSTREAM, .test = sl_pdk_service_set_upstream, .why = "no such upstream"),
};

#undef OP

/* Performs a method of ops; false when it has no shape there. */
static bool call_shaped(struct call *c)
{
    const struct op *o = &ops[c->m->id];
    const char *s = c->a.v.str.p; /* the argument of the String methods */
    sl_str_t v;
    if (o->str) {
        put_str(c, o->str(c->p));
    } else if (o->cstr) {
        put_cstr(c, o->cstr(c->p));
    } else if (o->num) {
        sl_pb_put_int(c->out, o->num(c->p));
    } else if (o->lookup) {
        if (o->lookup(c->p, s, &v))
            sl_pb_put_string_set(c->out, v.p, v.len);
        else
            sl_pb_put_empty(c->out); /* nil */
    } else if (o->multimap) {
        get_multimap(c, o->multimap);
    } else if (o->json) {
        put_table(c, o->json(c->p));
    } else if (o->value_get) {
        put_table(c, o->value_get(c->p, s));
    } else if (o->value_set) {
        put_done(c, o->value_set(c->p, c->a.v.key.p, c->a.json), o->why);
    } else if (o->set) {
        o->set(c->p, s);
        sl_pb_put_empty(c->out);
    } else if (o->table) {
        put_done(c, o->table(c->p, c->a.json), o->why);
    } else if (o->test) {
        put_done(c, o->test(c->p, s), o->why);
    } else if (o->headers) {
        set_header_kv(c, o->headers, o->add);
    } else if (o->clear) {
        clear_header(c, o->clear);
    } else if (o->log) {
        /* "kong.log.<level>": each argument as Lua's tostring, joined. */
        sl_pdk_log_values(c->p, sl_pdk_log_level(c->m->name + strlen("kong.log.")), c->a.json);
        sl_pb_put_empty(c->out);
    } else {
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Consumers, credentials, routes and services                               */

static char *dup_str(sl_pdk_t *p, const char *s)
{
    return sl_pdk_strndup(p, s, strlen(s));
}

/* A proto3 string field: "" is "not given" (Kong's lua-protobuf gives ""
 * too; the C side has NULL for absent optional fields). */
static const char *opt_str(sl_pdk_t *p, const char *s)
{
    return s && *s ? dup_str(p, s) : NULL;
}

/* A configured consumer by id or username; none without a configuration
 * (a request object built by hand). */
static const sl_consumer_t *find_consumer(sl_pdk_t *p, const char *id_or_username)
{
    return sl_pdk_gen(p) ? sl_pdk_client_load_consumer(p, id_or_username) : NULL;
}

/*
 * The consumer with this id: the configured one when there is one (so that
 * its ACL groups count, as Kong's acl plugin loads them by the consumer's
 * id), else one in the request's memory made of what the plugin sent (m,
 * may be NULL: the id alone).
 */
static const sl_consumer_t *consumer_by_id(sl_pdk_t *p, const char *id,
                                           const KongPluginProtocol__Consumer *m)
{
    const sl_consumer_t *known = find_consumer(p, id);
    if (known && !strcmp(known->id, id))
        return known;
    sl_consumer_t *x = sl_pdk_alloc(p, sizeof(*x));
    memset(x, 0, sizeof(*x));
    x->id = dup_str(p, id);
    x->username = m ? opt_str(p, m->username) : NULL;
    x->custom_id = m ? opt_str(p, m->custom_id) : NULL;
    return x;
}

/*
 * kong.client.authenticate(consumer, credential): Kong stores the tables
 * the plugin gave as the request's consumer and credential (without the
 * X-Consumer-* headers its auth plugins add), and raises when both are nil.
 */
static void authenticate(struct call *c)
{
    const KongPluginProtocol__Consumer *mc = c->a.v.auth.consumer;
    const KongPluginProtocol__AuthenticatedCredential *mk = c->a.v.auth.credential;
    if (!mc && !mk) {
        refuse(c, "either credential or consumer must be provided");
        return;
    }
    const sl_consumer_t *consumer = mc ? consumer_by_id(c->p, mc->id, mc) : NULL;
    sl_credential_t *cred = NULL;
    if (mk) {
        cred = sl_pdk_alloc(c->p, sizeof(*cred));
        memset(cred, 0, sizeof(*cred));
        cred->id = dup_str(c->p, mk->id);
        if (consumer && !strcmp(consumer->id, mk->consumer_id))
            cred->consumer = consumer;
        else if (*mk->consumer_id)
            cred->consumer = consumer_by_id(c->p, mk->consumer_id, NULL);
    }
    sl_pdk_client_authenticate(c->p, consumer, cred);
    sl_pb_put_empty(c->out);
}

/* A consumer as Kong's entity (the configured object when there is one);
 * NULL: nil. */
static json_t *consumer_json(const sl_consumer_t *x)
{
    if (!x)
        return NULL;
    if (x->json)
        return json_incref((json_t *)x->json);
    return json_pack("{s:s,s:s?,s:s?}", "id", x->id, "username", x->username, "custom_id",
                     x->custom_id);
}

/* AuthenticatedCredential: its id and its consumer's (Kong sends the row,
 * where the consumer is {"id": ...}, so its consumer_id is empty for
 * credentials of Kong's own auth plugins; it is given here). */
static json_t *credential_json(const sl_credential_t *x)
{
    if (!x)
        return NULL;
    return json_pack("{s:s,s:s?}", "id", x->id, "consumer_id",
                     x->consumer ? x->consumer->id : NULL);
}

/* kong.client.load_consumer(id, by_username): by id only, where Kong
 * raises for an id that is not a UUID; by id, then username. */
static void load_consumer(struct call *c)
{
    const char *id = c->a.v.consumer_spec.id.p;
    bool by_username = c->a.v.consumer_spec.by_username;
    if (!by_username && !sl_uuid_valid(id)) {
        refuse(c, "cannot load a consumer with an id that is not a uuid");
        return;
    }
    const sl_consumer_t *x = find_consumer(c->p, id);
    if (x && !by_username && strcmp(x->id, id))
        x = NULL; /* found by its username */
    put_table(c, consumer_json(x));
}

static json_t *protocols_json(unsigned bits)
{
    json_t *a = json_array();
    if (!bits || (bits & SL_PROTO_HTTP))
        json_array_append_new(a, json_string("http"));
    if (!bits || (bits & SL_PROTO_HTTPS))
        json_array_append_new(a, json_string("https"));
    return a;
}

/* The route as configured (Kong's entity: fields by name, service as
 * {"id": ...}); for a route built without its entity, what the data plane
 * kept of it. */
static json_t *route_json(const sl_route_t *r)
{
    if (!r)
        return NULL;
    if (r->json)
        return json_incref((json_t *)r->json);
    json_t *o = json_pack("{s:s?,s:s?,s:b,s:b,s:o}", "id", r->id, "name", r->name, "strip_path",
                          r->strip_path, "preserve_host", r->preserve_host, "protocols",
                          protocols_json(r->protocols));
    if (o && r->https_redirect_status_code)
        json_object_set_new(o, "https_redirect_status_code",
                            json_integer(r->https_redirect_status_code));
    if (o && r->service && r->service->id)
        json_object_set_new(o, "service", json_pack("{s:s}", "id", r->service->id));
    return o;
}

static json_t *service_json(const sl_service_t *s)
{
    if (!s)
        return NULL;
    if (s->json)
        return json_incref((json_t *)s->json);
    return json_pack(
        "{s:s?,s:s?,s:s,s:s?,s:i,s:s?,s:i,s:I,s:I,s:I}", "id", s->id, "name", s->name, "protocol",
        s->https ? "https" : "http", "host", s->host, "port", (int)s->port, "path", s->path,
        "retries", s->retries, "connect_timeout", (json_int_t)s->connect_timeout_ms, "read_timeout",
        (json_int_t)s->read_timeout_ms, "write_timeout", (json_int_t)s->write_timeout_ms);
}

/* ------------------------------------------------------------------------ */
/* The methods of their own shape                                            */

/*
 * kong.response.exit(status, body, headers): the headers first (Kong
 * validates and sets them as set_headers does, then raises on a bad one:
 * a 500), then the response. Never answered.
 */
static int response_exit(struct call *c)
{
    int status = c->a.v.exit.status;
    sl_str_t body = c->a.v.exit.body;
    if (c->a.json && !sl_pdk_response_set_headers(c->p, c->a.json)) {
        sl_pdk_log(c->p, SL_LOG_WARN, "%s refused: bad headers; answering 500", c->m->name);
        sl_pdk_response_exit(c->p, 500, NULL, 0);
        return SL_DONE;
    }
    sl_pdk_response_exit(c->p, status, body.p, body.len);
    return SL_DONE;
}

static void log_serialize(struct call *c)
{
    json_t *o = sl_pdk_log_serialize(c->p);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!text) {
        refuse(c, "the log object cannot be encoded");
        return;
    }
    put_cstr(c, text);
    free(text);
}

/* kong.log.set_serialize_value(key, value): the C PDK keeps strings; a
 * number or boolean is stored as its text, a table as its JSON text, nil
 * removes the key. */
static void set_serialize_value(struct call *c)
{
    const json_t *v = c->a.json;
    char *dumped = NULL;
    const char *text = NULL;
    if (!json_is_null(v) && !(text = sl_pdk_scalar_text(c->p, v)))
        text = dumped = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!*c->a.v.key.p) {
        refuse(c, "key must be a non-empty string");
    } else if (!text && !json_is_null(v)) {
        refuse(c, "the value cannot be encoded");
    } else {
        sl_pdk_log_set_serialize_value(c->p, c->a.v.key.p, text);
        sl_pb_put_empty(c->out);
    }
    free(dumped);
}

/* Request.GetRawBody: the body, or the in-band error of RawBodyResult
 * (Kong's text when neither the body nor a file is there). */
static void request_raw_body(struct call *c)
{
    sl_str_t body;
    if (sl_pdk_request_get_raw_body(c->p, &body)) {
        sl_pb_put_raw_body(c->out, SL_PB_RAW_CONTENT, body.p, body.len);
        return;
    }
    const char *why = sl_pdk_request_raw_body_error(c->p);
    if (!why) {
        why = "Can't read request body";
        sl_pdk_log(c->p, SL_LOG_WARN,
                   "%s: the body was not read (no plugin of the route asked for it)", c->m->name);
    }
    sl_pb_put_raw_body(c->out, SL_PB_RAW_ERROR, why, strlen(why));
}

/* ServiceResponse.GetRawBody is declared ByteString but go-pdk reads a
 * RawBodyResult: field 1 is both, so the body goes as content (present
 * even when empty). */
static void service_raw_body(struct call *c)
{
    sl_str_t body;
    if (!sl_pdk_service_response_get_raw_body(c->p, &body)) {
        refuse(c, "no upstream response body is held in this phase");
        return;
    }
    sl_pb_put_raw_body(c->out, SL_PB_RAW_CONTENT, body.p, body.len);
}

static int call_special(struct call *c)
{
    const char *s = c->a.v.str.p;
    const char *err = NULL, *proto;
    switch (c->m->id) {
    case SL_PB_M_CLIENT_AUTHENTICATE:
        authenticate(c);
        break;
    case SL_PB_M_CLIENT_GET_CONSUMER:
        put_table(c, consumer_json(sl_pdk_client_get_consumer(c->p)));
        break;
    case SL_PB_M_CLIENT_GET_CREDENTIAL:
        put_table(c, credential_json(sl_pdk_client_get_credential(c->p)));
        break;
    case SL_PB_M_CLIENT_GET_PROTOCOL:
        proto = sl_pdk_client_get_protocol(c->p, c->a.v.b, &err);
        if (proto)
            put_cstr(c, proto);
        else
            refuse(c, "%s", err ? err : "no protocol");
        break;
    case SL_PB_M_CLIENT_LOAD_CONSUMER:
        load_consumer(c);
        break;
    case SL_PB_M_IP_IS_TRUSTED:
        sl_pb_put_bool(c->out, sl_pdk_ip_is_trusted(c->p, s));
        break;
    case SL_PB_M_LOG_SERIALIZE:
        log_serialize(c);
        break;
    case SL_PB_M_LOG_SET_SERIALIZE_VALUE:
        set_serialize_value(c);
        break;
    case SL_PB_M_NGINX_REQ_START_TIME:
        sl_pb_put_number(c->out, sl_pdk_nginx_req_start_time(c->p));
        break;
    case SL_PB_M_REQUEST_GET_HTTP_VERSION:
        sl_pb_put_number(c->out, sl_pdk_request_get_http_version(c->p) / 10.0);
        break;
    case SL_PB_M_REQUEST_GET_RAW_BODY:
        request_raw_body(c);
        break;
    case SL_PB_M_RESPONSE_EXIT:
        return response_exit(c);
    case SL_PB_M_RESPONSE_SET_STATUS:
        put_done(c, sl_pdk_response_set_status(c->p, c->a.v.i), "status not settable");
        break;
    case SL_PB_M_ROUTER_GET_ROUTE:
        put_table(c, route_json(sl_pdk_router_get_route(c->p)));
        break;
    case SL_PB_M_ROUTER_GET_SERVICE:
        put_table(c, service_json(sl_pdk_router_get_service(c->p)));
        break;
    case SL_PB_M_SERVICE_REQUEST_SET_RAW_BODY:
        sl_pdk_service_request_set_raw_body(c->p, c->a.v.bytes.p, c->a.v.bytes.len);
        sl_pb_put_empty(c->out);
        break;
    case SL_PB_M_SERVICE_RESPONSE_GET_RAW_BODY:
        service_raw_body(c);
        break;
    case SL_PB_M_SERVICE_SET_TARGET:
        put_done(c, sl_pdk_service_set_target(c->p, c->a.v.target.host.p, c->a.v.target.port),
                 "invalid target");
        break;
    default:
        SL_ASSERT(!"every method has a shape or a case");
        sl_pb_put_empty(c->out);
        break;
    }
    return SL_OK;
}

/* ------------------------------------------------------------------------ */

/* What Kong's PDK refuses before a request exists (the certificate
 * phase): the request, the response, the service and the router. The
 * client, ctx, log, ip, node and nginx functions answer. */
static bool needs_request(const sl_pb_method_t *m)
{
    static const char *const prefixes[] = {"kong.request.",
                                           "kong.response.",
                                           "kong.service.",
                                           "kong.router.",
                                           "kong.client.authenticate",
                                           "kong.client.get_consumer",
                                           "kong.client.get_credential"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (!strncmp(m->name, prefixes[i], strlen(prefixes[i])))
            return m->id != SL_PB_M_RESPONSE_EXIT; /* exit refuses the handshake */
    return false;
}

int sl_pdk_rpc_pb(sl_pdk_t *p, const sl_pb_method_t *m, const void *arg, size_t len, sl_sb_t *out,
                  sl_pb_err_t *err)
{
    struct call c = {.p = p, .m = m, .out = out};
    int rc = sl_pb_arg_decode(m->in, arg, len, NULL, NULL, &c.a, err);
    if (rc == SL_ERR_TOO_BIG)
        rc = SL_ERR_INVALID; /* beyond the limits: not an argument we take */
    if (rc != SL_OK)
        return rc;
    if (sl_pdk_phase(p) == SL_PHASE_CERTIFICATE && needs_request(m)) {
        refuse(&c, "there is no request in the certificate phase");
        rc = SL_OK;
    } else {
        rc = call_shaped(&c) ? SL_OK : call_special(&c);
    }
    sl_pb_arg_dispose(&c.a);
    return rc;
}
