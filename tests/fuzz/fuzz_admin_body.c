/*
 * libFuzzer target: the Admin API body decoders of controlplane/admin_body.c
 * (sl_admin_body_parse for JSON with its depth bound, form-urlencoded,
 * multipart/form-data and YAML; sl_admin_form_urlencoded, the query-string
 * decoder; sl_admin_url_decode; sl_admin_body_infer with real schemas).
 *
 * Input: the Content-Type, a '\n', then the body. An input without '\n' in
 * its first 256 bytes is a body without Content-Type.
 *
 * Invariants checked (abort on violation, so libFuzzer and the gcc replay
 * both report it):
 *   - the return code is SL_OK or SL_ERR_INVALID;
 *   - on SL_OK: kind is a known kind, *out is an object (any JSON value for
 *     a JSON body), and it serialises (jansson refuses invalid UTF-8 and
 *     non-finite numbers);
 *   - on error: *out and kind untouched, a NUL-terminated non-empty message;
 *   - JSON results are no deeper than SL_ADMIN_JSON_MAX_DEPTH;
 *   - percent-decoding never lengthens its input.
 *
 * The fuzz build links the data plane and common libraries only, so the
 * decoder is compiled into this file.
 */
#include "fuzz_check.h"
#include "../../controlplane/admin_body.c"

#include "entities.h"
#include "errors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t depth_of(const json_t *v)
{
    size_t d = 0, i;
    const char *k;
    json_t *x;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, x)
        {
            size_t c = depth_of(x);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        json_array_foreach(v, i, x)
        {
            size_t c = depth_of(x);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    return 0;
}

static void check_serialises(const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    CHECK(text != NULL);
    free(text);
}

static void parse_one(const char *ctype, const char *body, size_t len)
{
    json_t *sentinel = json_object(), *out = sentinel;
    sl_body_kind_t kind = (sl_body_kind_t)77;
    char err[256];
    memset(err, 'x', sizeof(err));
    int rc = sl_admin_body_parse(ctype, body, len, &out, &kind, err, sizeof(err));
    CHECK(rc == SL_OK || rc == SL_ERR_INVALID);
    if (rc != SL_OK) {
        CHECK(out == sentinel);
        CHECK((int)kind == 77);
        CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
        json_decref(sentinel);
        return;
    }
    json_decref(sentinel);
    /* a JSON body may be any value (the callers answer 400 to a non-object) */
    CHECK(out != NULL && (kind == SL_BODY_JSON || json_is_object(out)));
    CHECK(kind == SL_BODY_EMPTY || kind == SL_BODY_JSON || kind == SL_BODY_FORM ||
          kind == SL_BODY_YAML || kind == SL_BODY_UNKNOWN);
    if (kind == SL_BODY_JSON)
        CHECK(depth_of(out) <= SL_ADMIN_JSON_MAX_DEPTH);
    check_serialises(out);
    if (kind == SL_BODY_FORM) {
        /* what the CRUD code does next: infer types against a schema */
        static const char *const tables[] = {"routes", "services", "plugins", "upstreams"};
        for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
            const sl_schema_t *s = sl_entity_schema(tables[i]);
            if (!s)
                continue;
            json_t *copy = json_deep_copy(out);
            sl_admin_body_infer(s->fields, NULL, copy);
            CHECK(json_is_object(copy));
            check_serialises(copy);
            json_decref(copy);
        }
    }
    json_decref(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size < 256 ? size : 256);
    char *ctype = NULL;
    const char *body = in;
    size_t len = size;
    if (nl) {
        ctype = sl_xstrndup(in, (size_t)(nl - in)); /* stops at a NUL too */
        body = nl + 1;
        len = size - (size_t)(nl - in) - 1;
    }
    /* The decoders are handed exactly len bytes, no terminator. */
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        free(ctype);
        return 0;
    }
    memcpy(copy, body, len);
    parse_one(ctype, copy, len);

    /* the query-string decoder */
    json_t *q = json_object();
    int rc = sl_admin_form_urlencoded(copy, len, q);
    CHECK(rc == SL_OK || rc == SL_ERR_INVALID);
    CHECK(json_is_object(q));
    json_decref(q);

    char *dec = sl_admin_url_decode(copy, len, true);
    CHECK(dec != NULL && strlen(dec) <= len);
    free(dec);

    free(copy);
    free(ctype);
    return 0;
}
