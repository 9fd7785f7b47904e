/*
 * jwt.c: the jwt plugin (Kong 3.10's kong/plugins/jwt), PRIORITY 1450,
 * access phase only.
 *
 * A request carries a JSON Web Token (RFC 7519) in a query argument named by
 * config.uri_param_names, a cookie named by config.cookie_names, or a header
 * named by config.header_names holding "Bearer <token>". Every source is
 * read and the distinct tokens collected, as Kong does: none is 401
 * "Unauthorized", two different ones are 401 "Multiple tokens provided".
 *
 * The token is a JWS in compact form: base64url(header).base64url(claims).
 * base64url(signature). The claim config.key_claim_name ("iss"; the header
 * is consulted when the claims lack it) names a jwt_secrets row by its key;
 * the header's "alg" must be the row's algorithm; the signature is checked
 * with the row's secret (HS*, optionally base64-encoded) or its
 * rsa_public_key (RS*, PS*, ES*, EdDSA) with OpenSSL; then the registered
 * claims of config.claims_to_verify (exp, nbf; no clock leeway, as Kong) and
 * config.maximum_expiration. The row's consumer becomes the request's
 * authenticated consumer with Kong's upstream headers, X-Credential-Identifier
 * being the row's key (not its id) for this plugin.
 *
 * Failures are Kong's kong.response.exit bodies ({"message": ...}, or for the
 * claims an object such as {"exp": "token expired"}), status 401, with
 * WWW-Authenticate: Bearer [realm="..."] and, once a token was found,
 * error="invalid_token". With config.anonymous a failure continues as the
 * anonymous consumer instead (Kong's logical OR), and a request another
 * plugin already authenticated passes untouched.
 *
 * Where this differs from Kong, on purpose:
 *  - A signature of the wrong length for ES* (Kong asserts 64/96/132 bytes)
 *    and any PS* signature that is not 256 bytes (Kong asserts it whatever
 *    the key size) make Kong fail with a 500; here they are 401 "Invalid
 *    signature", and PS* works with RSA keys of any size.
 *  - A token longer than MAX_TOKEN is 401 "Bad token; too large" (nginx's
 *    header buffers keep such a token from ever reaching Kong's plugin).
 *  - base64url segments may carry '=' padding but nothing after it (nginx
 *    ignores what follows the first '='); a secret with secret_is_base64 may
 *    use either base64 alphabet (Kong 3.5+ refuses '+' and '/' there).
 *  - JSON is parsed by jansson: a NUL escape or invalid UTF-8 in the header
 *    or the claims is "invalid JSON", as is nesting deeper than MAX_DEPTH.
 *  - A key claim that is not a string finds no credential (Kong errors).
 *
 * Threads: configure and dispose run where a generation is built; access
 * runs on any worker, concurrently, reading the conf and writing only into
 * the request's arena and into the worker's own key cache (below), which
 * worker_exit empties.
 */
#include "log.h"
#include "conf_read.h"
#include "pdk.h"
#include "plugin.h"
#include "util.h"

#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kong reads at most this many query arguments and header fields
 * (kong.request.get_query and get_headers' defaults). */
#define MAX_QUERY_ARGS 100
#define MAX_HEADERS 100

/* The longest token looked at. It bounds everything a request makes the
 * plugin allocate: the decoded segments and the JSON parsed from them. */
#define MAX_TOKEN 16384

/* The deepest JSON nesting accepted in a token's header or claims. */
#define MAX_DEPTH 64

/* Parsed public keys kept per worker thread (see the key cache). */
#define KEY_CACHE_SLOTS 128
#define KEY_CACHE_MAX_TEXT 16384

enum claim { CLAIM_EXP, CLAIM_NBF };

struct jwt_conf {
    char **uri_params; /* owned */
    size_t nuri;
    char **cookies; /* owned */
    size_t ncookies;
    char **headers; /* owned: lower-cased, '_' spelled '-' (as nginx looks names up) */
    size_t nheaders;
    char *key_claim; /* owned */
    bool secret_is_base64;
    bool run_on_preflight;
    enum claim claims[2]; /* config.claims_to_verify, in order, without repeats */
    size_t nclaims;
    double maximum_expiration; /* 0: none */
    char *anonymous;           /* owned; NULL: none */
    char *www_base;            /* owned: Bearer [realm="..."] */
    char *www_error;           /* owned: the same with error="invalid_token" */
};

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */

static bool read_claims(const json_t *config, struct jwt_conf *c, char *err, size_t errlen)
{
    const json_t *claims = json_object_get(config, "claims_to_verify");
    if (!claims || json_is_null(claims))
        return true;
    if (!json_is_array(claims)) {
        sl_cf_fail(err, errlen, "config.claims_to_verify: expected an array");
        return false;
    }
    for (size_t i = 0; i < json_array_size(claims); i++) {
        const char *s = json_string_value(json_array_get(claims, i));
        enum claim which;
        if (s && !strcmp(s, "exp"))
            which = CLAIM_EXP;
        else if (s && !strcmp(s, "nbf"))
            which = CLAIM_NBF;
        else {
            sl_cf_fail(err, errlen, "config.claims_to_verify[%zu]: expected one of: exp, nbf", i);
            return false;
        }
        bool seen = false;
        for (size_t k = 0; k < c->nclaims; k++)
            seen |= c->claims[k] == which;
        if (!seen)
            c->claims[c->nclaims++] = which;
    }
    return true;
}

static bool read_maximum_expiration(const json_t *config, struct jwt_conf *c, char *err,
                                    size_t errlen)
{
    const json_t *v = json_object_get(config, "maximum_expiration");
    if (!v || json_is_null(v))
        return true;
    if (!json_is_number(v)) {
        sl_cf_fail(err, errlen, "config.maximum_expiration: expected a number");
        return false;
    }
    double d = json_number_value(v);
    if (!(d >= 0 && d <= 31536000)) {
        sl_cf_fail(err, errlen,
                   "config.maximum_expiration: value should be between 0 and 31536000");
        return false;
    }
    /* Kong's schema wants "exp" in claims_to_verify with a maximum, but its
     * conditional check lets a null claims_to_verify through; the maximum
     * then applies on its own (an expired token is within it). */
    c->maximum_expiration = d;
    return true;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void dispose(void *p)
{
    struct jwt_conf *c = p;
    if (!c)
        return;
    free_names(c->uri_params, c->nuri);
    free_names(c->cookies, c->ncookies);
    free_names(c->headers, c->nheaders);
    free(c->key_claim);
    free(c->anonymous);
    free(c->www_base);
    free(c->www_error);
    free(c);
}

/*
 * Reads config (schema-validated by the control plane or the declarative
 * loader, but checked again: it may come from a peer). Returns the conf, or
 * NULL with err naming the field.
 */
static void *configure(const json_t *config, const char *instance_id, char *err, size_t errlen)
{
    (void)instance_id;
    static const char *const def_uri[] = {"jwt", NULL};
    static const char *const def_none[] = {NULL};
    static const char *const def_headers[] = {"authorization", NULL};
    struct jwt_conf *c = sl_xcalloc(1, sizeof(*c));
    char *realm = NULL;
    if (!sl_cf_strv(config, "uri_param_names", def_uri, &c->uri_params, &c->nuri, err, errlen) ||
        !sl_cf_strv(config, "cookie_names", def_none, &c->cookies, &c->ncookies, err, errlen) ||
        !sl_cf_strv(config, "header_names", def_headers, &c->headers, &c->nheaders, err, errlen) ||
        !sl_cf_text(config, "key_claim_name", "iss", &c->key_claim, err, errlen) ||
        !sl_cf_bool(config, "secret_is_base64", false, &c->secret_is_base64, err, errlen) ||
        !sl_cf_bool(config, "run_on_preflight", true, &c->run_on_preflight, err, errlen) ||
        !read_claims(config, c, err, errlen) || !read_maximum_expiration(config, c, err, errlen) ||
        !sl_cf_text(config, "anonymous", NULL, &c->anonymous, err, errlen) ||
        !sl_cf_text(config, "realm", NULL, &realm, err, errlen))
        goto fail_conf;
    for (size_t i = 0; i < c->nheaders; i++)
        for (char *s = c->headers[i]; *s; s++)
            *s = *s == '_' ? '-' : sl_lower(*s);
    c->www_base = realm ? sl_xasprintf("Bearer realm=\"%s\"", realm) : sl_xstrdup("Bearer");
    c->www_error = sl_xasprintf("%s error=\"invalid_token\"", c->www_base);
    free(realm);
    return c;

fail_conf:
    free(realm);
    dispose(c);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Finding the token                                                         */

/*
 * The distinct tokens a request carries, as Kong's token_set: only whether
 * there are none, one (which) or several matters, so collecting stops at
 * the second. A query argument without '=' is Kong's boolean `true`, a token
 * of its own kind ("Unrecognizable token" when it is the only one).
 */
struct tokens {
    size_t n; /* 0, 1, or 2 for "several" */
    sl_str_t first;
    bool first_is_flag;
};

static void add_token(struct tokens *t, sl_str_t tok, bool flag)
{
    if (t->n >= 2 || (!flag && tok.len == 0))
        return;
    if (t->n == 1) {
        bool same = flag ? t->first_is_flag
                         : !t->first_is_flag && t->first.len == tok.len &&
                               !memcmp(t->first.p, tok.p, tok.len);
        if (!same)
            t->n = 2;
        return;
    }
    t->n = 1;
    t->first = tok;
    t->first_is_flag = flag;
}

/* Every value of every config.uri_param_names argument among the first
 * MAX_QUERY_ARGS arguments, names and values percent-decoded. */
static void tokens_from_query(sl_pdk_t *p, const struct jwt_conf *c, struct tokens *t)
{
    if (c->nuri == 0)
        return;
    sl_str_t q = sl_pdk_request_get_raw_query(p);
    const char *s = q.p, *end = q.p + q.len;
    size_t nargs = 0;
    while (s < end && nargs < MAX_QUERY_ARGS && t->n < 2) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(stop - s));
        size_t rawlen = (size_t)((eq ? eq : stop) - s);
        if (rawlen) {
            nargs++;
            sl_str_t name = sl_pdk_unescape(p, s, rawlen);
            for (size_t i = 0; i < c->nuri; i++) {
                if (strlen(c->uri_params[i]) != name.len ||
                    memcmp(c->uri_params[i], name.p, name.len))
                    continue;
                if (eq)
                    add_token(t, sl_pdk_unescape(p, eq + 1, (size_t)(stop - eq - 1)), false);
                else
                    add_token(t, (sl_str_t){NULL, 0}, true);
                break;
            }
        }
        s = stop + 1;
    }
}

/*
 * nginx's $cookie_<name>: the value of the first cookie of that name (the
 * name compared case-insensitively) across every Cookie field, from after
 * '=' and its spaces up to ';'. Returns false when there is none.
 */
static bool find_cookie(sl_pdk_t *p, const char *name, sl_str_t *value)
{
    size_t nlen = strlen(name);
    size_t nh = sl_pdk_request_header_count(p);
    for (size_t h = 0; h < nh; h++) {
        sl_str_t hn, hv;
        if (!sl_pdk_request_header_at(p, h, &hn, &hv) || !sl_strcaseeq(hn.p, hn.len, "cookie", 6))
            continue;
        const char *s = hv.p, *end = hv.p + hv.len;
        while (s < end) {
            if ((size_t)(end - s) >= nlen && sl_strcaseeq(s, nlen, name, nlen)) {
                const char *v = s + nlen;
                while (v < end && *v == ' ')
                    v++;
                if (v < end && *v == '=') {
                    v++;
                    while (v < end && *v == ' ')
                        v++;
                    const char *last = v;
                    while (last < end && *last != ';')
                        last++;
                    *value = (sl_str_t){v, (size_t)(last - v)};
                    return true;
                }
            }
            while (s < end) {
                char ch = *s++;
                if (ch == ';' || ch == ',')
                    break;
            }
            while (s < end && *s == ' ')
                s++;
        }
    }
    return false;
}

static void tokens_from_cookies(sl_pdk_t *p, const struct jwt_conf *c, struct tokens *t)
{
    for (size_t i = 0; i < c->ncookies && t->n < 2; i++) {
        sl_str_t v;
        if (find_cookie(p, c->cookies[i], &v))
            add_token(t, v, false);
    }
}

/* PCRE's \s. */
static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/*
 * Kong's re_gmatch(value, [[\s*[Bb]earer\s+(.+)]]): the first place where
 * "Bearer" or "bearer" is followed by white space and something; the token
 * is what follows the white space. (A field value has no trailing white
 * space, so (.+) never has to take back a character of \s+.) Returns false
 * when nothing matches.
 */
static bool match_bearer(sl_str_t v, sl_str_t *token)
{
    for (size_t i = 0; i + 6 < v.len; i++) {
        if ((v.p[i] != 'B' && v.p[i] != 'b') || memcmp(v.p + i + 1, "earer", 5))
            continue;
        size_t j = i + 6, ws = 0;
        while (j + ws < v.len && is_space(v.p[j + ws]))
            ws++;
        if (ws == 0)
            continue;
        size_t rest = j + ws;
        if (rest < v.len) {
            *token = (sl_str_t){v.p + rest, v.len - rest};
            return true;
        }
    }
    return false;
}

/* Whether a request header name is the configured name `want` (already
 * lower-cased with '-' for '_'), as nginx's header table compares them. */
static bool header_is(sl_str_t h, const char *want, size_t wantlen)
{
    if (h.len != wantlen)
        return false;
    for (size_t i = 0; i < wantlen; i++)
        if (sl_lower(h.p[i]) != want[i])
            return false;
    return true;
}

/* For each config.header_names, the first field of that name among the
 * first MAX_HEADERS, when it holds a bearer token. */
static void tokens_from_headers(sl_pdk_t *p, const struct jwt_conf *c, struct tokens *t)
{
    size_t nh = SL_MIN(sl_pdk_request_header_count(p), (size_t)MAX_HEADERS);
    for (size_t i = 0; i < c->nheaders && t->n < 2; i++) {
        size_t wantlen = strlen(c->headers[i]);
        for (size_t h = 0; h < nh; h++) {
            sl_str_t name, value, tok;
            if (!sl_pdk_request_header_at(p, h, &name, &value) ||
                !header_is(name, c->headers[i], wantlen))
                continue;
            if (match_bearer(value, &tok))
                add_token(t, tok, false);
            break;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Decoding the token                                                        */

static int b64_value(unsigned char c, bool url, bool std)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if ((url && c == '-') || (std && c == '+'))
        return 62;
    if ((url && c == '_') || (std && c == '/'))
        return 63;
    return -1;
}

/*
 * Decodes base64 (the URL-safe alphabet, the standard one, or either) into
 * out, which has room for n * 3 / 4 + 3 bytes. Padding is optional but must
 * end the text; a length that leaves a single character over is refused.
 * Returns false on malformed input.
 */
static bool b64_decode(const char *s, size_t n, bool url, bool std, unsigned char *out,
                       size_t *outlen)
{
    size_t len = n;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            len = i;
            break;
        }
    }
    if (n - len > 2)
        return false;
    for (size_t i = len; i < n; i++)
        if (s[i] != '=')
            return false;
    if (len % 4 == 1)
        return false;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i], url, std);
        if (v < 0)
            return false;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (unsigned char)(acc >> bits);
        }
    }
    *outlen = k;
    return true;
}

/* Whether JSON text nests no deeper than MAX_DEPTH (jansson recurses on
 * the worker's stack; the text came from a client). */
static bool depth_ok(const unsigned char *s, size_t n)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH)
                return false;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return true;
}

/* One base64url segment parsed as JSON; NULL when either step fails. The
 * caller owns the result. Numbers all become reals, as Lua's cjson reads
 * them (no integer overflow). */
static json_t *decode_json_segment(sl_pdk_t *p, const char *s, size_t n)
{
    unsigned char *buf = sl_pdk_alloc(p, n / 4 * 3 + 3);
    size_t len;
    if (!b64_decode(s, n, true, false, buf, &len) || !depth_ok(buf, len))
        return NULL;
    return json_loadb((const char *)buf, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
}

/* The algorithms Kong's jwt_parser verifies. */
enum family { FAM_HMAC, FAM_RSA, FAM_PSS, FAM_EC, FAM_EDDSA };

struct alg {
    const char *name;
    enum family family;
    const EVP_MD *(*md)(void); /* NULL for EdDSA */
    size_t ec_bytes;           /* ES*: the size of r and of s */
};

static const struct alg ALGS[] = {
    {"HS256", FAM_HMAC, EVP_sha256, 0}, {"HS384", FAM_HMAC, EVP_sha384, 0},
    {"HS512", FAM_HMAC, EVP_sha512, 0}, {"RS256", FAM_RSA, EVP_sha256, 0},
    {"RS384", FAM_RSA, EVP_sha384, 0},  {"RS512", FAM_RSA, EVP_sha512, 0},
    {"PS256", FAM_PSS, EVP_sha256, 0},  {"PS384", FAM_PSS, EVP_sha384, 0},
    {"PS512", FAM_PSS, EVP_sha512, 0},  {"ES256", FAM_EC, EVP_sha256, 32},
    {"ES384", FAM_EC, EVP_sha384, 48},  {"ES512", FAM_EC, EVP_sha512, 66},
    {"EdDSA", FAM_EDDSA, NULL, 0},
};

static const struct alg *find_alg(const char *name)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(ALGS); i++)
        if (!strcmp(ALGS[i].name, name))
            return &ALGS[i];
    return NULL;
}

/* A decoded token. header and claims are owned (token_release). */
struct token {
    json_t *header;
    json_t *claims;
    const struct alg *alg;
    sl_str_t signing_input; /* header_64.claims_64 as received */
    unsigned char *sig;     /* in the request's arena */
    size_t siglen;
};

static void token_release(struct token *t)
{
    json_decref(t->header);
    json_decref(t->claims);
    t->header = t->claims = NULL;
}

/*
 * Kong's decode_token. Fills *t and returns NULL, or returns the reason the
 * token is bad ("Bad token; <reason>"), in Kong's order: a missing segment
 * or a header or claims that are not base64url JSON, then typ, alg, the
 * claims, and last a signature that is not base64url (which is where a
 * fourth segment ends up, since Kong's split keeps the rest of the text
 * after the second dot as the signature).
 */
static const char *decode_token(sl_pdk_t *p, sl_str_t tok, struct token *t)
{
    memset(t, 0, sizeof(*t));
    if (tok.len > MAX_TOKEN)
        return "too large";
    const char *d1 = memchr(tok.p, '.', tok.len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(tok.p + tok.len - d1 - 1)) : NULL;
    if (!d2)
        return "invalid JSON";
    const char *sig = d2 + 1, *end = tok.p + tok.len;
    t->header = decode_json_segment(p, tok.p, (size_t)(d1 - tok.p));
    t->claims = t->header ? decode_json_segment(p, d1 + 1, (size_t)(d2 - d1 - 1)) : NULL;
    if (!t->claims)
        return "invalid JSON";
    t->sig = sl_pdk_alloc(p, (size_t)(end - sig) / 4 * 3 + 3);
    bool sig_ok = b64_decode(sig, (size_t)(end - sig), true, false, t->sig, &t->siglen);

    const json_t *typ = json_object_get(t->header, "typ");
    if (typ && !json_is_false(typ) &&
        !(json_is_string(typ) && !strcasecmp(json_string_value(typ), "JWT") &&
          json_string_length(typ) == 3))
        return "invalid typ";
    const char *alg = json_string_value(json_object_get(t->header, "alg"));
    t->alg = alg ? find_alg(alg) : NULL;
    if (!t->alg)
        return "invalid alg";
    if (!json_is_object(t->claims))
        return "invalid claims";
    if (!sig_ok)
        return "invalid signature";
    t->signing_input = (sl_str_t){tok.p, (size_t)(d2 - tok.p)};
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The key cache                                                             */

/*
 * Reading the credential's PEM key is by far the dearest step for
 * RS/PS/ES/EdDSA tokens: OpenSSL 3's decoders take about 0.8 ms for an
 * RSA-2048 public key, thirty times the 25 us its signature check costs.
 * Each worker thread therefore keeps the last KEY_CACHE_SLOTS keys it parsed.
 *
 * Per thread rather than shared: no lock on the request path, and an
 * EVP_PKEY that only one thread ever touches needs no reference counting
 * or care about another thread freeing it. Per thread rather than per
 * plugin instance: instances are rebuilt with every configuration, and in
 * hybrid mode that can be often; the cache survives it.
 *
 * Entries are keyed by the exact key text (a copy is kept and compared in
 * full after a 64-bit hash matches), not by the credential's id: a
 * credential whose key changes can never get its old key back, two
 * credentials sharing a key share an entry, and a hash collision costs a
 * memcmp, not a wrong key. A text that OpenSSL cannot read is cached too
 * (pkey NULL), so that a bad credential does not cost a parse per request.
 * Keys longer than KEY_CACHE_MAX_TEXT are parsed every time. The least
 * recently used entry goes when the cache is full. worker_exit frees it all.
 *
 * The size: a key is parsed before the signature is checked, so a client
 * that cycles the key claim through more credentials than the cache holds
 * makes every request pay for a parse (Kong parses on every request). 128
 * entries cover most deployments' asymmetric credentials for about 400 KB
 * per worker, and the linear scan of their hashes costs well under a
 * microsecond.
 */
struct cached_key {
    uint64_t hash;
    char *text; /* owned; NULL: a free slot */
    size_t len;
    EVP_PKEY *pkey; /* owned; NULL: the text is not a key */
    uint64_t used;
};

static _Thread_local struct cached_key key_cache[KEY_CACHE_SLOTS];
static _Thread_local uint64_t key_cache_clock;

/* An encrypted private key has no passphrase here: without this callback
 * OpenSSL may ask for one on the process's terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

/* Reads a public or private key in PEM or DER, any type OpenSSL knows (as
 * lua-resty-openssl's pkey.new does). NULL when it is not one. */
static EVP_PKEY *parse_key(const char *text, size_t len)
{
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, NULL, NULL, NULL, 0, NULL, NULL);
    if (dctx && OSSL_DECODER_CTX_set_pem_password_cb(dctx, no_passphrase, NULL)) {
        const unsigned char *data = (const unsigned char *)text;
        size_t left = len;
        if (!OSSL_DECODER_from_data(dctx, &data, &left)) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
    }
    OSSL_DECODER_CTX_free(dctx);
    ERR_clear_error();
    return pkey;
}

/*
 * The parsed key for text. Returns a key owned by the cache (valid until
 * this thread's next lookup), or, with *owned set, one the caller must
 * free; NULL when the text is not a key.
 */
static EVP_PKEY *lookup_key(const char *text, size_t len, bool *owned)
{
    *owned = false;
    if (len > KEY_CACHE_MAX_TEXT) {
        *owned = true;
        return parse_key(text, len);
    }
    uint64_t h = sl_hash(text, len);
    struct cached_key *victim = &key_cache[0];
    for (size_t i = 0; i < KEY_CACHE_SLOTS; i++) {
        struct cached_key *e = &key_cache[i];
        if (e->text && e->hash == h && e->len == len && !memcmp(e->text, text, len)) {
            e->used = ++key_cache_clock;
            return e->pkey;
        }
        if (!e->text)
            victim = e;
        else if (victim->text && e->used < victim->used)
            victim = e;
    }
    EVP_PKEY_free(victim->pkey);
    free(victim->text);
    victim->hash = h;
    victim->text = sl_xstrndup(text, len);
    victim->len = len;
    victim->pkey = parse_key(text, len);
    victim->used = ++key_cache_clock;
    return victim->pkey;
}

static void on_worker_exit(void)
{
    for (size_t i = 0; i < KEY_CACHE_SLOTS; i++) {
        EVP_PKEY_free(key_cache[i].pkey);
        free(key_cache[i].text);
        memset(&key_cache[i], 0, sizeof(key_cache[i]));
    }
}

/* ------------------------------------------------------------------------ */
/* Verifying the signature                                                   */

enum verdict {
    SIG_GOOD,
    SIG_BAD,     /* 401 Invalid signature */
    SIG_BAD_KEY, /* the credential's key cannot be read: 500, as Kong */
};

static enum verdict verify_hmac(const struct alg *a, const struct token *t, const void *secret,
                                size_t secretlen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    static const unsigned char empty[1];
    if (!HMAC(a->md(), secretlen ? secret : empty, (int)secretlen,
              (const unsigned char *)t->signing_input.p, t->signing_input.len, mac, &maclen))
        return SIG_BAD;
    return maclen == t->siglen && CRYPTO_memcmp(mac, t->sig, maclen) == 0 ? SIG_GOOD : SIG_BAD;
}

/* JOSE's ECDSA signature is r || s, each ec_bytes long (RFC 7518 3.4);
 * OpenSSL verifies the DER ECDSA-Sig-Value. Returns the DER length, 0 on
 * failure; *der is OPENSSL_malloc'ed. */
static int ec_raw_to_der(const unsigned char *raw, size_t half, unsigned char **der)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)half, NULL);
    BIGNUM *s = BN_bin2bn(raw + half, (int)half, NULL);
    int len = 0;
    if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
        r = s = NULL; /* owned by es now */
        *der = NULL;
        len = i2d_ECDSA_SIG(es, der);
        if (len < 0)
            len = 0;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return len;
}

/* Whether the key's type suits the algorithm family (a mismatch is an
 * invalid signature, as OpenSSL's refusal is under Kong). */
static bool key_fits(const struct alg *a, EVP_PKEY *pkey, size_t siglen)
{
    switch (a->family) {
    case FAM_RSA:
        return EVP_PKEY_is_a(pkey, "RSA");
    case FAM_PSS:
        return EVP_PKEY_is_a(pkey, "RSA") || EVP_PKEY_is_a(pkey, "RSA-PSS");
    case FAM_EC:
        return EVP_PKEY_is_a(pkey, "EC") &&
               (size_t)(EVP_PKEY_get_bits(pkey) + 7) / 8 == a->ec_bytes &&
               siglen == 2 * a->ec_bytes;
    case FAM_EDDSA:
        return EVP_PKEY_is_a(pkey, "ED25519") || EVP_PKEY_is_a(pkey, "ED448");
    case FAM_HMAC:
        break;
    }
    return false;
}

static enum verdict verify_pkey(const struct alg *a, const struct token *t, EVP_PKEY *pkey)
{
    if (!key_fits(a, pkey, t->siglen))
        return SIG_BAD;
    const unsigned char *sig = t->sig;
    size_t siglen = t->siglen;
    unsigned char *der = NULL;
    if (a->family == FAM_EC) {
        int n = ec_raw_to_der(t->sig, a->ec_bytes, &der);
        if (n <= 0)
            return SIG_BAD;
        sig = der;
        siglen = (size_t)n;
    }
    enum verdict v = SIG_BAD;
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    if (mctx && EVP_DigestVerifyInit(mctx, &pctx, a->md ? a->md() : NULL, NULL, pkey) == 1) {
        bool ready = true;
        if (a->family == FAM_PSS)
            ready = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
                    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) > 0;
        if (ready && EVP_DigestVerify(mctx, sig, siglen, (const unsigned char *)t->signing_input.p,
                                      t->signing_input.len) == 1)
            v = SIG_GOOD;
    }
    EVP_MD_CTX_free(mctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return v;
}

static enum verdict verify_signature(const struct token *t, const char *key, size_t keylen)
{
    bool owned;
    EVP_PKEY *pkey = lookup_key(key, keylen, &owned);
    if (!pkey)
        return SIG_BAD_KEY;
    enum verdict v = verify_pkey(t->alg, t, pkey);
    if (owned)
        EVP_PKEY_free(pkey);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Access                                                                    */

/* Why an authentication failed. */
struct failure {
    const char *message; /* {"message": message}; NULL when errors is set */
    json_t *errors;      /* owned: the claims' errors object */
    bool bare;           /* WWW-Authenticate without error="invalid_token" */
    bool internal;       /* answer 500 (an unusable credential), never anonymous */
};

static bool failed(struct failure *f, const char *message)
{
    f->message = message;
    return false;
}

static bool failed_fmt(sl_pdk_t *p, struct failure *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same with a message formatted into the request's arena. */
static bool failed_fmt(sl_pdk_t *p, struct failure *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *m = sl_pdk_alloc(p, n > 0 ? (size_t)n + 1 : 1);
    m[0] = '\0';
    va_start(ap, fmt);
    if (n > 0)
        vsnprintf(m, (size_t)n + 1, fmt, ap);
    va_end(ap);
    f->message = m;
    return false;
}

/* Kong's verify_registered_claims then check_maximum_expiration: true when
 * they pass, else false with f->errors set. now is in seconds. */
static bool check_claims(const struct jwt_conf *c, const json_t *claims, double now,
                         struct failure *f)
{
    json_t *errors = NULL;
    for (size_t i = 0; i < c->nclaims; i++) {
        const char *name = c->claims[i] == CLAIM_EXP ? "exp" : "nbf";
        const json_t *v = json_object_get(claims, name);
        const char *why = NULL;
        if (!json_is_number(v))
            why = "must be a number";
        else if (c->claims[i] == CLAIM_EXP && json_number_value(v) <= now)
            why = "token expired";
        else if (c->claims[i] == CLAIM_NBF && json_number_value(v) > now)
            why = "token not valid yet";
        if (why) {
            if (!errors)
                errors = json_object();
            json_object_set_new(errors, name, json_string(why));
        }
    }
    if (!errors && c->maximum_expiration > 0) {
        const json_t *exp = json_object_get(claims, "exp");
        if (!json_is_number(exp) || json_number_value(exp) - now > c->maximum_expiration) {
            errors = json_object();
            json_object_set_new(errors, "exp", json_string("exceeds maximum allowed expiration"));
        }
    }
    f->errors = errors;
    return errors == NULL;
}

/* The key claim's value: the claims', else the header's (Lua's `a or b`,
 * where false and an absent value fall through; a JSON null, which Kong's
 * cache lookup trips over, counts as absent here). NULL when neither. */
static const json_t *key_claim(const struct jwt_conf *c, const struct token *t)
{
    const json_t *v = json_object_get(t->claims, c->key_claim);
    if (!v || json_is_false(v) || json_is_null(v))
        v = json_object_get(t->header, c->key_claim);
    if (!v || json_is_false(v) || json_is_null(v))
        return NULL;
    return v;
}

/* Checks the decoded token against its credential: the key claim, the
 * algorithm, the signature, the claims. True when it passes, with *credp
 * set; else false with *f filled. */
static bool check_token(sl_pdk_t *p, const struct jwt_conf *c, const struct token *t,
                        const sl_credential_t **credp, struct failure *f)
{
    const json_t *kv = key_claim(c, t);
    if (!kv)
        return failed_fmt(p, f, "No mandatory '%s' in claims", c->key_claim);
    const char *key = json_string_value(kv);
    if (key && json_string_length(kv) == 0)
        return failed_fmt(p, f, "Invalid '%s' in claims", c->key_claim);
    const sl_credential_t *cred = NULL;
    /* jansson refuses \u0000, so a string key is NUL-free. */
    if (key)
        cred = sl_pdk_credential_lookup(p, "jwt_secrets", key);
    if (!cred)
        return failed_fmt(p, f, "No credentials found for given '%s'", c->key_claim);

    const json_t *algv = json_object_get(cred->row, "algorithm");
    const char *algorithm = json_is_string(algv) ? json_string_value(algv) : "HS256";
    if (strcmp(t->alg->name, algorithm))
        return failed(f, "Invalid algorithm");

    enum verdict v;
    if (t->alg->family == FAM_HMAC) {
        const json_t *sv = json_object_get(cred->row, "secret");
        if (!json_is_string(sv))
            return failed(f, "Invalid key/secret");
        const char *secret = json_string_value(sv);
        size_t len = json_string_length(sv);
        if (c->secret_is_base64) {
            unsigned char *raw = sl_pdk_alloc(p, len / 4 * 3 + 3);
            size_t rawlen;
            if (!b64_decode(secret, len, true, true, raw, &rawlen))
                return failed(f, "Invalid key/secret");
            v = verify_hmac(t->alg, t, raw, rawlen);
        } else {
            v = verify_hmac(t->alg, t, secret, len);
        }
    } else {
        /* Never base64-decoded, whatever secret_is_base64 says (Kong 3.9+). */
        const json_t *kt = json_object_get(cred->row, "rsa_public_key");
        if (!json_is_string(kt))
            return failed(f, "Invalid key/secret");
        v = verify_signature(t, json_string_value(kt), json_string_length(kt));
        if (v == SIG_BAD_KEY) {
            sl_pdk_log(p, SL_LOG_ERROR,
                       "jwt_secrets %s: rsa_public_key is not a key OpenSSL can read", cred->id);
            f->internal = true;
            return false;
        }
    }
    if (v != SIG_GOOD)
        return failed(f, "Invalid signature");

    double now = (double)(sl_pdk_request_start_us(p) / 1000000);
    if (!check_claims(c, t->claims, now, f))
        return false;
    *credp = cred;
    return true;
}

/*
 * Kong's do_authentication. Returns true when the request is authenticated
 * (the consumer and its upstream headers set), else false with *f filled.
 */
static bool authenticate(sl_pdk_t *p, const struct jwt_conf *c, struct failure *f)
{
    memset(f, 0, sizeof(*f));
    struct tokens toks = {0};
    tokens_from_query(p, c, &toks);
    tokens_from_cookies(p, c, &toks);
    tokens_from_headers(p, c, &toks);
    if (toks.n == 0) {
        f->bare = true;
        return failed(f, "Unauthorized");
    }
    if (toks.n > 1)
        return failed(f, "Multiple tokens provided");
    if (toks.first_is_flag)
        return failed(f, "Unrecognizable token");

    struct token t;
    const char *bad = decode_token(p, toks.first, &t);
    if (bad) {
        token_release(&t);
        return failed_fmt(p, f, "Bad token; %s", bad);
    }
    const sl_credential_t *cred = NULL;
    bool ok = check_token(p, c, &t, &cred, f);
    token_release(&t);
    if (!ok)
        return false;

    sl_pdk_auth_set_consumer(p, cred->consumer, cred);
    /* jwt identifies the credential by its key, not its id. */
    const char *key = json_string_value(json_object_get(cred->row, "key"));
    if (key)
        sl_pdk_service_request_set_header(p, "X-Credential-Identifier", key);
    else
        sl_pdk_service_request_clear_header(p, "X-Credential-Identifier");
    sl_pdk_ctx_shared_set(p, "authenticated_jwt_token",
                          sl_pdk_strndup(p, toks.first.p, toks.first.len));
    return true;
}

/* An unusable credential: Kong's plugin raises an error, which is a 500. */
static int internal_error(sl_pdk_t *p)
{
    return sl_pdk_response_error(p, 500, "An unexpected error occurred");
}

/* Kong's kong.response.exit(401, err.errors or {message = ...}, headers). */
static int refuse(sl_pdk_t *p, const struct jwt_conf *c, struct failure *f)
{
    sl_pdk_response_set_header(p, "WWW-Authenticate", f->bare ? c->www_base : c->www_error);
    if (!f->errors)
        return sl_pdk_response_exit_message(p, 401, f->message);
    char *text = json_dumps(f->errors, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(f->errors);
    f->errors = NULL;
    if (!text)
        return internal_error(p);
    sl_pdk_response_set_header(p, "Content-Type", "application/json; charset=utf-8");
    int rc = sl_pdk_response_exit(p, 401, text, strlen(text));
    free(text);
    return rc;
}

static int on_access(sl_pdk_t *p, void *conf)
{
    const struct jwt_conf *c = conf;
    if (!c->run_on_preflight) {
        sl_str_t m = sl_pdk_request_get_method(p);
        if (m.len == 7 && !memcmp(m.p, "OPTIONS", 7))
            return SL_PLUGIN_CONTINUE;
    }
    /* Logical OR: another plugin's credential is enough. */
    if (c->anonymous && sl_pdk_client_get_credential(p))
        return SL_PLUGIN_CONTINUE;
    struct failure f;
    if (authenticate(p, c, &f))
        return SL_PLUGIN_CONTINUE;
    if (f.internal) {
        json_decref(f.errors);
        return internal_error(p);
    }
    if (c->anonymous) {
        json_decref(f.errors);
        return sl_pdk_auth_anonymous(p, c->anonymous);
    }
    return refuse(p, c, &f);
}

const sl_native_plugin_t sl_plugin_jwt = {
    .name = "jwt",
    .configure = configure,
    .dispose = dispose,
    .access = on_access,
    .worker_exit = on_worker_exit,
};
