/*
 * Internals shared by the Admin API's files (admin.c: server, routing and
 * node endpoints; admin_crud.c: entity endpoints; admin_config.c: /config,
 * schemas and tags). Not for use outside controlplane/admin*.c.
 */
#ifndef SL_ADMIN_INT_H
#define SL_ADMIN_INT_H

#include "admin.h"
#include "admin_body.h"
#include "schema.h"

#include <event2/http.h>
#include <stdbool.h>

#define SL_ADMIN_MAX_SEGS 8

/* Kong's error codes (kong/db/errors.lua). */
enum {
    SL_KERR_INVALID_PRIMARY_KEY = 1,
    SL_KERR_SCHEMA_VIOLATION = 2,
    SL_KERR_PRIMARY_KEY_VIOLATION = 3,
    SL_KERR_FOREIGN_KEY_VIOLATION = 4,
    SL_KERR_UNIQUE_VIOLATION = 5,
    SL_KERR_NOT_FOUND = 6,
    SL_KERR_INVALID_OFFSET = 7,
    SL_KERR_DATABASE_ERROR = 8,
    SL_KERR_INVALID_SIZE = 9,
    SL_KERR_INVALID_UNIQUE = 10,
    SL_KERR_INVALID_OPTIONS = 11,
    SL_KERR_OPERATION_UNSUPPORTED = 12,
    SL_KERR_FOREIGN_KEYS_UNRESOLVED = 13,
    SL_KERR_DECLARATIVE_CONFIG = 14,
    SL_KERR_TRANSFORMATION_ERROR = 15,
    SL_KERR_REFERENCED_BY_OTHERS = 19,
};

struct sl_admin_s {
    struct event_base *base;             /* borrowed */
    struct evhttp *http;                 /* owned: the plain listeners; NULL when there are none */
    struct evhttp *https;                /* owned: the TLS listeners; NULL when there are none */
    SSL_CTX *ssl_ctx;                    /* owned reference; NULL without TLS listeners */
    uint16_t ports[SL_ADMIN_MAX_LISTEN]; /* bound ports, in admin_listen order */
    size_t nlisten;
    sl_store_t *store; /* borrowed */
    char *token;       /* owned; NULL: no authentication */
    char *prefix;      /* owned */
    uint64_t map_size;
    char node_id[37];
    char hostname[256];
    json_t *configuration;        /* owned reference */
    struct sl_cluster_s *cluster; /* borrowed; NULL when cluster_listen = off */
    uint64_t total_requests;
    uint64_t connections_accepted;
};

/* One request being answered; lives on handle_request's stack. */
typedef struct sl_areq_s {
    sl_admin_t *admin;
    struct evhttp_request *req;
    int method;                   /* EVHTTP_REQ_* */
    char *seg[SL_ADMIN_MAX_SEGS]; /* owned: percent-decoded path segments */
    size_t nseg;
    json_t *query;     /* owned: query arguments (first value of each) */
    const char *ctype; /* borrowed: Content-Type or NULL */
    char *body;        /* owned: NUL-terminated copy */
    size_t body_len;
    uint64_t start_us;
    bool answered;
} sl_areq_t;

/* Replies with a JSON body (stolen; NULL for no body, as with 204). */
void sl_admin_reply(sl_areq_t *r, int status, json_t *body);
/* Replies with the JSON text in body (200-class answers built as text);
 * takes body's heap copy over, so only sl_sb_dispose remains to be done. */
void sl_admin_reply_sb(sl_areq_t *r, int status, struct sl_sb_s *body);
/* {"message": msg} */
void sl_admin_reply_msg(sl_areq_t *r, int status, const char *msg);
/* Kong's error object {code, name, message, fields}; fields stolen (may be NULL). */
void sl_admin_reply_err(sl_areq_t *r, int status, int code, const char *message, json_t *fields);
/* Maps a store error (SL_ERR_TOO_BIG -> 507 naming lmdb_map_size, else 500). */
void sl_admin_reply_store_err(sl_areq_t *r, int rc);

/* Kong's schema-violation message for a nested error object: "schema
 * violation (f: m)" or "N schema violations (f: m; g: n)". Caller frees. */
char *sl_admin_schema_message(const json_t *fields);
/* Renders a JSON value the way penlight's pretty.write(v, "") does
 * ({name="x"}). Caller frees. */
char *sl_admin_lua_pretty(const json_t *v);

/* Parses the request body; on failure answers 400 and returns SL_ERR_INVALID. */
int sl_admin_body(sl_areq_t *r, json_t **out, sl_body_kind_t *kind);

/* Entity endpoints: SL_DONE when the path was an entity path (answered),
 * SL_DECLINED when it is not one. */
int sl_admin_crud(sl_areq_t *r);

/* Schema, tag and /config endpoints: SL_DONE or SL_DECLINED. */
int sl_admin_schemas(sl_areq_t *r);
int sl_admin_tags(sl_areq_t *r);
int sl_admin_config(sl_areq_t *r);

/* "GET", "POST", ... for logs. */
const char *sl_admin_method_name(int method);

/* The admin collection name of a table ("keyauth_credentials" -> "key-auths"). */
const char *sl_admin_collection_name(const sl_schema_t *s);

/* Helpers for pagination tokens. Caller frees. */
char *sl_admin_b64(const char *s, size_t len);
char *sl_admin_unb64(const char *s, size_t *len);

#endif
