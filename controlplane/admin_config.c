/*
 * admin_config.c owns the Admin API endpoints that are not generated CRUD:
 *
 *   GET  /schemas/{entity}            the entity's schema as JSON
 *   POST /schemas/{entity}/validate   validate a body without storing it
 *   GET  /schemas/plugins/{name}      an enabled plugin's schema
 *   POST /schemas/plugins/validate    validate a plugin entity (name, config)
 *   GET  /tags, /tags/{tag}           the tag index
 *   GET  /config                      the whole configuration as Kong's flat
 *                                     _format_version 3.0 YAML text
 *   POST /config                      validate a declarative document, then
 *                                     replace everything in one transaction
 *
 * Runs on the main thread within one request callback.
 */
#include "admin_int.h"
#include "declarative.h"
#include "entities.h"
#include "log.h"
#include "plugins.h"
#include "schema_json.h"
#include "strbuf.h"
#include "util.h"
#include "uuid.h"
#include "yaml_json.h"

#include <openssl/evp.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

static bool get_only(sl_areq_t *r)
{
    if (r->method == EVHTTP_REQ_GET || r->method == EVHTTP_REQ_HEAD)
        return true;
    sl_admin_reply_msg(r, 405, "Method not allowed");
    return false;
}

static bool post_only(sl_areq_t *r)
{
    if (r->method == EVHTTP_REQ_POST)
        return true;
    sl_admin_reply_msg(r, 405, "Method not allowed");
    return false;
}

/* ------------------------------------------------------------------------ */
/* schemas                                                                   */

static const sl_schema_t *schema_by_url_name(const char *name)
{
    const sl_schema_t *s = sl_entity_schema(name);
    if (s)
        return s;
    for (size_t i = 0; sl_entity_schemas[i]; i++)
        if (!strcmp(sl_admin_collection_name(sl_entity_schemas[i]), name))
            return sl_entity_schemas[i];
    return NULL;
}

static void reply_schema_violation(sl_areq_t *r, json_t *fields)
{
    char *msg = sl_admin_schema_message(fields);
    sl_admin_reply_err(r, 400, SL_KERR_SCHEMA_VIOLATION, msg, fields);
    free(msg);
}

/* POST .../validate: validates the body against schema without storing it. */
static void validate_body(sl_areq_t *r, const sl_schema_t *s)
{
    json_t *body;
    sl_body_kind_t kind;
    if (sl_admin_body(r, &body, &kind) != SL_OK)
        return;
    if (!json_is_object(body)) {
        json_decref(body);
        sl_admin_reply_msg(r, 400, "Cannot parse JSON body");
        return;
    }
    if (kind == SL_BODY_FORM)
        sl_admin_body_infer_schema(s, body);
    json_t *fields = json_object();
    if (sl_schema_validate(s, body, "", NULL, fields) != SL_OK) {
        json_decref(body);
        reply_schema_violation(r, fields);
        return;
    }
    json_decref(fields);
    json_decref(body);
    sl_admin_reply_msg(r, 200, "schema validation successful");
}

int sl_admin_schemas(sl_areq_t *r)
{
    if (r->nseg < 2 || strcmp(r->seg[0], "schemas") != 0 || r->nseg > 3)
        return SL_DECLINED;
    char msg[300];
    if (!strcmp(r->seg[1], "plugins") && r->nseg == 3) {
        if (!strcmp(r->seg[2], "validate")) {
            if (!post_only(r))
                return SL_DONE;
            validate_body(r, sl_entity_schema("plugins"));
            return SL_DONE;
        }
        if (!get_only(r))
            return SL_DONE;
        const sl_plugin_info_t *p = sl_plugins_find(r->seg[2]);
        if (!p) {
            snprintf(msg, sizeof(msg), "No plugin named '%.200s'", r->seg[2]);
            sl_admin_reply_msg(r, 404, msg);
            return SL_DONE;
        }
        sl_admin_reply(r, 200, sl_schema_json(p->schema));
        return SL_DONE;
    }
    const sl_schema_t *s = schema_by_url_name(r->seg[1]);
    if (!s) {
        snprintf(msg, sizeof(msg), "No entity named '%.200s'", r->seg[1]);
        sl_admin_reply_msg(r, 404, msg);
        return SL_DONE;
    }
    if (r->nseg == 2) {
        if (!get_only(r))
            return SL_DONE;
        json_t *o = sl_schema_json(s);
        json_object_set_new(o, "primary_key", json_pack("[s]", "id"));
        sl_admin_reply(r, 200, o);
        return SL_DONE;
    }
    if (strcmp(r->seg[2], "validate") != 0)
        return SL_DECLINED;
    if (!post_only(r))
        return SL_DONE;
    validate_body(r, s);
    return SL_DONE;
}

/* ------------------------------------------------------------------------ */
/* tags                                                                      */

int sl_admin_tags(sl_areq_t *r)
{
    if (r->nseg < 1 || r->nseg > 2 || strcmp(r->seg[0], "tags") != 0)
        return SL_DECLINED;
    if (!get_only(r))
        return SL_DONE;
    size_t size = 100;
    const char *sz = json_string_value(json_object_get(r->query, "size"));
    const char *off = json_string_value(json_object_get(r->query, "offset"));
    if (sz) {
        char *end;
        long v = strtol(sz, &end, 10);
        if (end == sz || *end) {
            sl_admin_reply_err(r, 400, SL_KERR_INVALID_SIZE, "size must be a number", NULL);
            return SL_DONE;
        }
        if (v < 1 || v > 1000) {
            sl_admin_reply_err(r, 400, SL_KERR_INVALID_SIZE,
                               "size must be an integer between 1 and 1000", NULL);
            return SL_DONE;
        }
        size = (size_t)v;
    }
    /* the cursor: "[tag\n]entity\nid" */
    char *cur = NULL, *parts[3] = {NULL, NULL, NULL};
    size_t want = r->nseg == 2 ? 2 : 3;
    if (off) {
        size_t n;
        cur = sl_admin_unb64(off, &n);
        size_t np = 0;
        for (char *p = cur; p && np < 3;) {
            parts[np++] = p;
            char *nl = strchr(p, '\n');
            if (!nl)
                break;
            *nl = '\0';
            p = nl + 1;
        }
        if (!cur || np != want || !*parts[0]) {
            free(cur);
            char msg[512];
            snprintf(msg, sizeof(msg), "'%.400s' is not a valid offset: bad base64 encoding", off);
            sl_admin_reply_err(r, 400, SL_KERR_INVALID_OFFSET, msg, NULL);
            return SL_DONE;
        }
    }
    sl_txn_t *t;
    int rc = sl_store_begin(r->admin->store, false, &t);
    if (rc != SL_OK) {
        free(cur);
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    json_t *data = NULL;
    bool more = false;
    if (r->nseg == 2)
        rc = sl_txn_list_tag(t, r->seg[1], parts[0], parts[1], size, &data, &more);
    else
        rc = sl_txn_list_tags(t, parts[0], parts[1], parts[2], size, &data, &more);
    sl_txn_abort(t);
    free(cur);
    if (rc == SL_ERR_INVALID) {
        char msg[512];
        snprintf(msg, sizeof(msg), "'%.400s' is not a valid offset: bad base64 encoding",
                 off ? off : "");
        sl_admin_reply_err(r, 400, SL_KERR_INVALID_OFFSET, msg, NULL);
        return SL_DONE;
    }
    if (rc != SL_OK) {
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    json_t *body = json_pack("{s:o}", "data", data);
    size_t n = json_array_size(data);
    if (more && n > 0) {
        json_t *last = json_array_get(data, n - 1);
        char raw[1024];
        int len;
        if (r->nseg == 2)
            len = snprintf(raw, sizeof(raw), "%s\n%s",
                           json_string_value(json_object_get(last, "entity_name")),
                           json_string_value(json_object_get(last, "entity_id")));
        else
            len = snprintf(raw, sizeof(raw), "%s\n%s\n%s",
                           json_string_value(json_object_get(last, "tag")),
                           json_string_value(json_object_get(last, "entity_name")),
                           json_string_value(json_object_get(last, "entity_id")));
        if (len < 0 || (size_t)len >= sizeof(raw))
            len = 0;
        char *tok = sl_admin_b64(raw, (size_t)len);
        char *etok = evhttp_uriencode(tok, -1, 0);
        char *etag = r->nseg == 2 ? evhttp_uriencode(r->seg[1], -1, 0) : NULL;
        char next[2048];
        snprintf(next, sizeof(next), "/tags%s%s?offset=%s", etag ? "/" : "", etag ? etag : "",
                 etok);
        json_object_set_new(body, "offset", json_string(tok));
        json_object_set_new(body, "next", json_string(next));
        free(etag);
        free(etok);
        free(tok);
    } else {
        json_object_set_new(body, "next", json_null());
    }
    sl_admin_reply(r, 200, body);
    return SL_DONE;
}

/* ------------------------------------------------------------------------ */
/* GET /config: YAML emission                                                */

static bool needs_quotes(const char *s)
{
    if (!*s)
        return true;
    static const char *const special[] = {"true", "false", "yes", "no", "on", "off",
                                          "null", "~",     "y",   "n",  NULL};
    for (int i = 0; special[i]; i++)
        if (!strcasecmp(s, special[i]))
            return true;
    /* anything that starts like a number */
    const char *p = s;
    if (*p == '+' || *p == '-' || *p == '.')
        p++;
    if (isdigit((unsigned char)*p))
        return true;
    return false;
}

static int emit_scalar(yaml_emitter_t *em, const char *v, bool plain_ok)
{
    yaml_event_t ev;
    yaml_scalar_style_t style = plain_ok ? YAML_ANY_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)v, (int)strlen(v), plain_ok,
                                 !plain_ok, style);
    return yaml_emitter_emit(em, &ev);
}

static int emit_json(yaml_emitter_t *em, const json_t *v)
{
    yaml_event_t ev;
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        if (!yaml_emitter_emit(em, &ev))
            return 0;
        json_object_foreach((json_t *)v, k, x)
        {
            if (!emit_scalar(em, k, !needs_quotes(k)) || !emit_json(em, x))
                return 0;
        }
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev);
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                             json_array_size(v) ? YAML_BLOCK_SEQUENCE_STYLE
                                                                : YAML_FLOW_SEQUENCE_STYLE);
        if (!yaml_emitter_emit(em, &ev))
            return 0;
        json_array_foreach(v, i, x) if (!emit_json(em, x)) return 0;
        yaml_sequence_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev);
    }
    case JSON_STRING:
        return emit_scalar(em, json_string_value(v), !needs_quotes(json_string_value(v)));
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return emit_scalar(em, num, true);
    case JSON_REAL:
        /* the shortest text that reads back as the same double */
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(num, sizeof(num), "%.*g", prec, json_real_value(v));
            if (strtod(num, NULL) == json_real_value(v))
                break;
        }
        if (!strpbrk(num, ".eEn"))
            strcat(num, ".0");
        return emit_scalar(em, num, true);
    case JSON_TRUE:
        return emit_scalar(em, "true", true);
    case JSON_FALSE:
        return emit_scalar(em, "false", true);
    default:
        return emit_scalar(em, "null", true);
    }
}

static int yaml_write_cb(void *data, unsigned char *buf, size_t size)
{
    sl_sb_t *b = data;
    sl_sb_add(b, buf, size);
    return 1;
}

/* Renders doc as a YAML document. Caller frees; NULL on emitter failure. */
static char *to_yaml(const json_t *doc)
{
    yaml_emitter_t em;
    yaml_event_t ev;
    char st[4096];
    sl_sb_t b;
    char *out = NULL;
    sl_sb_init(&b, st, sizeof(st));
    if (!yaml_emitter_initialize(&em))
        return NULL;
    yaml_emitter_set_output(&em, yaml_write_cb, &b);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    if (!yaml_emitter_emit(&em, &ev))
        goto done;
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    if (!yaml_emitter_emit(&em, &ev) || !emit_json(&em, doc))
        goto done;
    yaml_document_end_event_initialize(&ev, 1);
    if (!yaml_emitter_emit(&em, &ev))
        goto done;
    yaml_stream_end_event_initialize(&ev);
    if (!yaml_emitter_emit(&em, &ev) || !yaml_emitter_flush(&em))
        goto done;
    out = sl_xstrndup(b.p, b.len);
done:
    yaml_emitter_delete(&em);
    sl_sb_dispose(&b);
    return out;
}

/* Drops null members recursively (Kong's export removes them too). */
static void remove_nulls(json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        void *tmp;
        json_object_foreach_safe(v, tmp, k, x)
        {
            if (json_is_null(x))
                json_object_del(v, k);
            else
                remove_nulls(x);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) remove_nulls(x);
    }
}

/* The whole configuration in flat form, as one document. */
static int export_doc(sl_txn_t *t, json_t **out)
{
    json_t *doc = json_pack("{s:s,s:b}", "_format_version", "3.0", "_transform", 0);
    for (size_t i = 0; sl_entity_schemas[i]; i++) {
        const sl_schema_t *s = sl_entity_schemas[i];
        json_t *all = json_array();
        char after[37] = "";
        for (;;) {
            json_t *arr = NULL;
            bool more = false;
            int rc =
                sl_txn_list(t, s->name, NULL, NULL, after[0] ? after : NULL, 1000, &arr, &more);
            if (rc != SL_OK) {
                json_decref(all);
                json_decref(doc);
                return rc;
            }
            size_t j;
            json_t *x;
            json_array_foreach(arr, j, x)
            {
                const char *id = json_string_value(json_object_get(x, "id"));
                if (id)
                    snprintf(after, sizeof(after), "%s", id);
                remove_nulls(x);
                json_array_append(all, x);
            }
            json_decref(arr);
            if (!more)
                break;
        }
        if (json_array_size(all))
            json_object_set_new(doc, s->name, all);
        else
            json_decref(all);
    }
    *out = doc;
    return SL_OK;
}

/* True when the n bytes at p name an entity table. */
static bool is_table_name(const char *p, size_t n)
{
    char name[64];
    if (n == 0 || n >= sizeof(name))
        return false;
    memcpy(name, p, n);
    name[n] = '\0';
    return sl_entity_schema(name) != NULL;
}

/* ------------------------------------------------------------------------ */
/* POST /config                                                              */

/* Adds one "path: message" error to the nested fields object, following
 * Kong's layout (names become object keys, [i] array positions). */
static void nest_error(json_t *fields, const char *item)
{
    const char *sep = strstr(item, ": ");
    if (!sep) {
        json_t *e = json_object_get(fields, "@entity");
        if (!e) {
            e = json_array();
            json_object_set_new(fields, "@entity", e);
        }
        json_array_append_new(e, json_string(item));
        return;
    }
    char *path = sl_xstrndup(item, (size_t)(sep - item));
    const char *msg = sep + 2;
    json_t *cur = fields; /* an object or an array */
    char *p = path;
    char key[256] = "";
    long idx = -1;
    bool have = false;
    for (;;) {
        /* next token: name or [n] */
        char tok[256];
        long tidx = -1;
        bool is_idx = false;
        if (*p == '[') {
            char *e = strchr(p, ']');
            if (!e)
                break;
            tidx = strtol(p + 1, NULL, 10);
            is_idx = true;
            p = e + 1;
        } else {
            size_t n = strcspn(p, ".[");
            snprintf(tok, sizeof(tok), "%.*s", (int)n, p);
            p += n;
        }
        if (*p == '.')
            p++;
        if (have) {
            /* descend into the previous token, creating what the new one needs */
            json_t *next = is_idx ? json_array() : json_object();
            json_t *existing =
                idx >= 0 ? json_array_get(cur, (size_t)idx) : json_object_get(cur, key);
            if (existing && (json_is_array(existing) == json_is_array(next)) &&
                !json_is_string(existing)) {
                json_decref(next);
                next = existing;
            } else if (idx >= 0) {
                while (json_array_size(cur) <= (size_t)idx)
                    json_array_append_new(cur, json_null());
                json_array_set_new(cur, (size_t)idx, next);
            } else {
                json_object_set_new(cur, key, next);
            }
            cur = next;
        }
        have = true;
        if (is_idx) {
            if (tidx < 0 || tidx > 100000)
                break;
            idx = tidx;
        } else {
            idx = -1;
            snprintf(key, sizeof(key), "%s", tok);
        }
        if (!*p) {
            json_t *leaf = json_string(msg);
            if (idx >= 0) {
                while (json_array_size(cur) <= (size_t)idx)
                    json_array_append_new(cur, json_null());
                json_array_set_new(cur, (size_t)idx, leaf);
            } else {
                json_t *old = json_object_get(cur, key);
                if (json_is_string(old)) {
                    json_t *arr = json_pack("[O]", old);
                    json_array_append_new(arr, leaf);
                    json_object_set_new(cur, key, arr);
                } else if (json_is_array(old) && json_array_size(old) &&
                           json_is_string(json_array_get(old, 0))) {
                    json_array_append_new(old, leaf);
                } else {
                    json_object_set_new(cur, key, leaf);
                }
            }
            break;
        }
    }
    free(path);
}

/* Parses a declarative text (JSON or YAML) as given, without validation;
 * NULL when it does not parse to an object. */
static json_t *parse_raw(const char *text, size_t len)
{
    json_t *raw = NULL;
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    if (i < len && text[i] == '{') {
        raw = json_loadb(text, len, 0, NULL);
    } else {
        sl_errors_t errs;
        sl_errors_init(&errs);
        if (sl_yaml_to_json(text, len, 64, &raw, &errs) != SL_OK)
            raw = NULL;
        sl_errors_dispose(&errs);
    }
    if (!json_is_object(raw)) {
        json_decref(raw);
        return NULL;
    }
    return raw;
}

/*
 * The loader stamps updated_at with the load time, as Kong does. A document
 * that carries updated_at for an entity given by id (GET /config's output)
 * keeps it, so that export -> import -> export is the identity.
 */
static void keep_updated_at(const json_t *raw, json_t *doc)
{
    for (size_t s = 0; raw && sl_entity_schemas[s]; s++) {
        const char *name = sl_entity_schemas[s]->name;
        json_t *in = json_object_get(raw, name), *out = json_object_get(doc, name);
        if (!json_is_array(in) || !json_is_array(out))
            continue;
        json_t *by_id = json_object();
        size_t j;
        json_t *x;
        json_array_foreach(in, j, x)
        {
            const char *id = json_string_value(json_object_get(x, "id"));
            json_t *u = json_object_get(x, "updated_at");
            if (id && json_is_number(u))
                json_object_set(by_id, id, u);
        }
        json_array_foreach(out, j, x)
        {
            const char *id = json_string_value(json_object_get(x, "id"));
            json_t *u = id ? json_object_get(by_id, id) : NULL;
            json_t *cur = json_object_get(x, "updated_at");
            if (u && cur && json_typeof(u) == json_typeof(cur))
                json_object_set(x, "updated_at", u);
            else if (u && json_is_real(cur) && json_is_integer(u))
                json_object_set_new(x, "updated_at", json_real((double)json_integer_value(u)));
        }
        json_decref(by_id);
    }
}

/* Kong's singular(): "services" -> "service". */
static json_t *singular(const char *name)
{
    size_t n = strlen(name);
    return json_stringn(name, n && name[n - 1] == 's' ? n - 1 : n);
}

/*
 * Kong's ?flatten_errors=1 form: one element per entity that has errors,
 * {entity_type, entity_name, entity_id, entity_tags, entity, errors:[{type,
 * field, message}]}, nested entities hoisted to the top level. Built from the
 * loader's "services[0].routes[1].paths[0]: message" strings and the raw
 * input; field paths use dots and 1-based indexes as Kong's do.
 */
static json_t *flatten(const sl_errors_t *errs, const json_t *raw)
{
    json_t *list = json_array();
    json_t *by_path = json_object(); /* entity path -> element of list */
    for (size_t i = 0; i < errs->n; i++) {
        const char *item = errs->items[i];
        const char *sep = strstr(item, ": ");
        if (!sep)
            continue;
        char *path = sl_xstrndup(item, (size_t)(sep - item));
        const char *msg = sep + 2;
        const json_t *ent = NULL, *cur = raw;
        const char *etype = NULL;
        char *p = path, *field_start = NULL, *ent_end = path;
        /* walk "<table>[i]" pairs while they name entities */
        for (;;) {
            size_t n = strcspn(p, ".[");
            if (p[n] != '[' || !is_table_name(p, n))
                break;
            char tname[64];
            snprintf(tname, sizeof(tname), "%.*s", (int)n, p);
            long idx = strtol(p + n + 1, NULL, 10);
            char *close = strchr(p + n, ']');
            const json_t *arr = json_object_get(cur, tname);
            const json_t *e = json_array_get(arr, (size_t)idx);
            if (!close || !json_is_object(e))
                break;
            ent = e;
            cur = e;
            etype = sl_entity_schema(tname)->name;
            ent_end = close + 1;
            p = close + 1;
            if (*p == '.')
                p++;
            else
                break;
        }
        if (!ent) {
            free(path);
            continue;
        }
        field_start = *ent_end == '.' ? ent_end + 1 : ent_end;
        char key[512];
        snprintf(key, sizeof(key), "%.*s", (int)(ent_end - path), path);
        json_t *el = json_object_get(by_path, key);
        if (!el) {
            json_t *copy = json_deep_copy(ent);
            const char *k;
            json_t *v;
            void *tmp;
            json_object_foreach_safe(copy, tmp, k, v) if (json_is_array(v) && sl_entity_schema(k))
                json_object_del(copy, k);
            el = json_pack("{s:o,s:o,s:[]}", "entity_type", singular(etype), "entity", copy,
                           "errors");
            const json_t *nm = json_object_get(ent, "name");
            if (json_is_string(nm) && json_string_length(nm))
                json_object_set(el, "entity_name", (json_t *)nm);
            const char *id = json_string_value(json_object_get(ent, "id"));
            if (id && sl_uuid_valid(id))
                json_object_set_new(el, "entity_id", json_string(id));
            const json_t *tags = json_object_get(ent, "tags");
            if (json_is_array(tags))
                json_object_set(el, "entity_tags", (json_t *)tags);
            json_array_append_new(list, el);
            json_object_set(by_path, key, el);
        }
        json_t *e;
        if (*field_start == '\0') {
            e = json_pack("{s:s,s:s}", "type", "entity", "message", msg);
        } else {
            /* "paths[0].x" -> "paths.1.x" */
            char field[512];
            size_t o = 0;
            for (const char *q = field_start; *q && o + 24 < sizeof(field); q++) {
                if (*q == '[') {
                    long n = strtol(q + 1, NULL, 10);
                    o += (size_t)snprintf(field + o, sizeof(field) - o, ".%ld", n + 1);
                    q = strchr(q, ']');
                    if (!q)
                        break;
                } else {
                    field[o++] = *q;
                }
            }
            field[o] = '\0';
            e = json_pack("{s:s,s:s,s:s}", "type", "field", "field", field, "message", msg);
        }
        json_array_append_new(json_object_get(el, "errors"), e);
        free(path);
    }
    json_decref(by_path);
    return list;
}

static void reply_declarative(sl_areq_t *r, json_t *fields, json_t *flattened)
{
    char *p = sl_admin_lua_pretty(fields);
    size_t n = strlen(p) + 64;
    char *msg = sl_xmalloc(n);
    snprintf(msg, n, "declarative config is invalid: %s", p);
    json_t *b = json_pack("{s:i,s:s,s:s,s:o}", "code", SL_KERR_DECLARATIVE_CONFIG, "name",
                          "invalid declarative configuration", "message", msg, "fields", fields);
    if (flattened)
        json_object_set_new(b, "flattened_errors", flattened);
    sl_admin_reply(r, 400, b);
    free(msg);
    free(p);
}

static bool truthy(const char *v)
{
    return v && (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on") ||
                 !strcasecmp(v, "yes"));
}

/* <prefix>/config.hash holds "<md5 of the last POSTed text> <store version
 * after it>": ?check_hash=1 answers 304 when the same text is posted again
 * and nothing changed since. */
static void config_hash_path(sl_areq_t *r, char *out, size_t n)
{
    snprintf(out, n, "%s/config.hash", r->admin->prefix);
}

static void md5_hex(const char *text, size_t len, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(text, len, md, &mdlen, EVP_md5(), NULL);
    for (unsigned i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static bool same_config(sl_areq_t *r, const char *hash)
{
    char path[4096], *text = NULL, want[80];
    size_t len = 0;
    config_hash_path(r, path, sizeof(path));
    if (sl_read_file(path, 128, &text, &len) != SL_OK)
        return false;
    snprintf(want, sizeof(want), "%s %llu", hash,
             (unsigned long long)sl_store_version(r->admin->store));
    bool same = len >= strlen(want) && strncmp(text, want, strlen(want)) == 0 &&
                (text[strlen(want)] == '\n' || text[strlen(want)] == '\0');
    free(text);
    return same;
}

static int post_config(sl_areq_t *r)
{
    const char *text = r->body;
    size_t len = r->body_len;
    json_t *form = NULL;
    bool flat = truthy(json_string_value(json_object_get(r->query, "flatten_errors")));
    const char *ch = json_string_value(json_object_get(r->query, "check_hash"));
    bool check_hash = ch && !strcmp(ch, "1");
    if (r->ctype && (strncasecmp(r->ctype, "application/x-www-form-urlencoded", 33) == 0 ||
                     strncasecmp(r->ctype, "multipart/form-data", 19) == 0)) {
        sl_body_kind_t kind;
        if (sl_admin_body(r, &form, &kind) != SL_OK)
            return SL_DONE;
        json_t *c = json_object_get(form, "config");
        flat = flat || truthy(json_string_value(json_object_get(form, "flatten_errors")));
        text = json_is_string(c) ? json_string_value(c) : "";
        len = json_is_string(c) ? json_string_length(c) : 0;
    }
    if (len == 0) {
        json_decref(form);
        sl_admin_reply_msg(r, 400, "expected a declarative configuration");
        return SL_DONE;
    }
    char hash[33];
    md5_hex(text, len, hash);
    if (check_hash && same_config(r, hash)) {
        json_decref(form);
        sl_admin_reply(r, 304, NULL);
        return SL_DONE;
    }
    sl_errors_t errs;
    json_t *doc = NULL;
    sl_errors_init(&errs);
    int rc = sl_declarative_load_string(text, len, &doc, &errs);
    /* The text as given is needed for error reports and for updated_at
     * values; a large valid document without any is not parsed twice. */
    json_t *raw = rc != SL_OK || memmem(text, len, "updated_at", 10) ? parse_raw(text, len) : NULL;
    json_decref(form);
    if (rc != SL_OK) {
        json_t *fields = json_object(), *flattened = NULL;
        for (size_t i = 0; i < errs.n; i++)
            nest_error(fields, errs.items[i]);
        if (errs.n == 0)
            json_object_set_new(fields, "@entity", json_pack("[s]", sl_strerror(rc)));
        if (flat) {
            flattened = flatten(&errs, raw);
            /* as in Kong, the entity sections move to flattened_errors */
            for (size_t i = 0; sl_entity_schemas[i]; i++)
                if (raw && json_is_array(json_object_get(raw, sl_entity_schemas[i]->name)))
                    json_object_del(fields, sl_entity_schemas[i]->name);
        }
        sl_errors_dispose(&errs);
        json_decref(raw);
        reply_declarative(r, fields, flattened);
        return SL_DONE;
    }
    sl_errors_dispose(&errs);
    keep_updated_at(raw, doc);
    json_decref(raw);

    sl_txn_t *t;
    rc = sl_store_begin(r->admin->store, true, &t);
    if (rc != SL_OK) {
        json_decref(doc);
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    rc = sl_txn_clear(t);
    json_t *result = json_object();
    for (size_t i = 0; rc == SL_OK && sl_entity_schemas[i]; i++) {
        const sl_schema_t *s = sl_entity_schemas[i];
        json_t *arr = json_object_get(doc, s->name);
        size_t j;
        json_t *x;
        json_t *byid = json_object();
        json_array_foreach(arr, j, x)
        {
            const char *conflict = NULL;
            rc = sl_txn_put(t, s->name, x, &conflict);
            if (rc == SL_ERR_EXISTS || rc == SL_ERR_NOT_FOUND) {
                char m[256];
                snprintf(m, sizeof(m), "%s[%zu].%s: %s", s->name, j, conflict ? conflict : "id",
                         rc == SL_ERR_EXISTS ? "uniqueness violation"
                                             : "references a missing entity");
                json_t *fields = json_object();
                nest_error(fields, m);
                sl_txn_abort(t);
                json_decref(byid);
                json_decref(result);
                json_decref(doc);
                reply_declarative(r, fields, NULL);
                return SL_DONE;
            }
            if (rc != SL_OK)
                break;
            const char *id = json_string_value(json_object_get(x, "id"));
            if (id)
                json_object_set(byid, id, x);
        }
        if (json_object_size(byid))
            json_object_set_new(result, s->name, byid);
        else
            json_decref(byid);
    }
    json_decref(doc);
    if (rc == SL_OK)
        rc = sl_txn_commit(t);
    else
        sl_txn_abort(t);
    if (rc == SL_ERR_TOO_BIG) {
        /* Kong's /config answer for a full LMDB map */
        json_decref(result);
        SL_ERROR("admin: POST /config: the configuration does not fit in lmdb_map_size (%llu "
                 "bytes)",
                 (unsigned long long)r->admin->map_size);
        sl_admin_reply_msg(r, 413,
                           "Configuration does not fit in LMDB database, consider raising the "
                           "\"lmdb_map_size\" config for sluice-cp");
        return SL_DONE;
    }
    if (rc != SL_OK) {
        json_decref(result);
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    char path[4096], line[80];
    config_hash_path(r, path, sizeof(path));
    snprintf(line, sizeof(line), "%s %llu\n", hash,
             (unsigned long long)sl_store_version(r->admin->store));
    if (sl_write_file_atomic(path, line, strlen(line)) != SL_OK)
        SL_WARN("cannot write %s", path);
    SL_NOTICE("admin: POST /config replaced the configuration (version %llu)",
              (unsigned long long)sl_store_version(r->admin->store));
    sl_admin_reply(r, 201, result);
    return SL_DONE;
}

int sl_admin_config(sl_areq_t *r)
{
    if (r->nseg != 1 || strcmp(r->seg[0], "config") != 0)
        return SL_DECLINED;
    if (r->method == EVHTTP_REQ_POST)
        return post_config(r);
    if (!get_only(r))
        return SL_DONE;
    sl_txn_t *t;
    json_t *doc = NULL;
    int rc = sl_store_begin(r->admin->store, false, &t);
    if (rc == SL_OK) {
        rc = export_doc(t, &doc);
        sl_txn_abort(t);
    }
    if (rc != SL_OK) {
        sl_admin_reply_store_err(r, rc);
        return SL_DONE;
    }
    const char *fmt = json_string_value(json_object_get(r->query, "format"));
    char *text = (fmt && !strcmp(fmt, "json")) ? json_dumps(doc, JSON_INDENT(2)) : to_yaml(doc);
    json_decref(doc);
    if (!text) {
        sl_admin_reply_msg(r, 500, "An unexpected error occurred");
        return SL_DONE;
    }
    sl_admin_reply(r, 200, json_pack("{s:s}", "config", text));
    free(text);
    return SL_DONE;
}
