/*
 * gen_tls.c owns a generation's server certificates: one TLS context per
 * certificate entity that some sni names, and the index from sni name to
 * context that the SNI callback (tls.c) consults during a handshake.
 *
 * Building runs where the rest of the generation is built (the main thread)
 * and reads the normalised document: certificates (cert, key, cert_alt,
 * key_alt as PEM text) and snis (name, certificate: {"id": ...}); the
 * declarative loader turns a file's certificates[].snis into that top-level
 * table. As in gen.c, the document may come from a control plane rather than
 * the loader, so every field is checked and an error names the entity and
 * field ("certificates[1].key: ...").
 *
 * Only certificates that an sni refers to get a context. Nothing else can
 * select one for a proxy listener, an SSL_CTX costs a key parse and tens of
 * kilobytes, and Kong itself parses a certificate only when an SNI lookup
 * reaches it. A document without snis allocates nothing: g->tls stays NULL.
 *
 * Selection is Kong's (kong/runloop/certificate.lua, find_certificate and
 * produce_wild_snis): for a client name, the sni of that exact name; else
 * the name with its first label replaced by "*" ("*.example.com" serves
 * www.example.com but neither example.com nor a.b.example.com), tried only
 * when at least three labels remain; else the name with its last label
 * replaced by "*" ("example.*" serves example.com but not www.example.com);
 * else an sni named "*", Kong's catch-all; else nothing, and the listener's
 * default certificate stays. Each candidate is one lookup in one map, as
 * Kong's are cache lookups by name. Names are DNS names, so both the snis
 * and the client's name are compared lower-cased.
 *
 * Lifetime: the contexts and the index belong to the generation and die
 * with it (sl_gen_tls_free from gen_free). Workers only read them; a
 * connection that switched to a context holds its own reference
 * (SSL_set_SSL_CTX), so it outlives the generation safely.
 */
#include "tls.h"
#include "gen.h"
#include "log.h"
#include "util.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#define MAX_NAME 255 /* a DNS name; a longer client name can only meet the "*" sni */

struct sl_gen_tls_s {
    SSL_CTX **ctxs; /* owned, one reference each */
    size_t nctxs;
    json_t *by_name; /* owned: lower-cased sni name -> index in ctxs */
};

/* ------------------------------------------------------------ reading JSON */

/* v's text when it is a string without NUL bytes, else NULL. */
static const char *str_value(const json_t *v)
{
    const char *s = json_string_value(v);
    return s && strlen(s) == json_string_length(v) ? s : NULL;
}

/* A string field of table[i]; NULL when absent or null (an error when
 * required) or of the wrong type (always an error). */
static const char *str_field(const json_t *o, const char *table, size_t i, const char *key,
                             bool required, sl_errors_t *errs)
{
    json_t *v = json_object_get(o, key);
    const char *s = str_value(v);
    if (s)
        return s;
    if (v != NULL && !json_is_null(v))
        sl_errors_add(errs, "%s[%zu].%s: %s", table, i, key,
                      json_is_string(v) ? "expected a string without NUL bytes"
                                        : "expected a string");
    else if (required)
        sl_errors_add(errs, "%s[%zu].%s: required field missing", table, i, key);
    return NULL;
}

/* ------------------------------------------------------------ building */

static int refuse_pass_phrase_cb(char *buf, int size, int rwflag, void *u)
{
    return 0; /* an encrypted key is refused, never prompted for on a tty */
}

/* The reason OpenSSL gives for the last failure (the queue is cleared). */
static const char *openssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, len, "no PEM block found");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* Reports why certificates[i]'s pair (cert, key) cannot be used, naming the
 * field at fault; false when the pair is fine. */
static bool pair_error(size_t i, const char *cert_pem, const char *key_pem, const char *cert_key,
                       const char *key_key, sl_errors_t *errs)
{
    char why[256];
    bool bad = true;
    ERR_clear_error();
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, refuse_pass_phrase_cb, NULL) : NULL;
    EVP_PKEY *k = NULL;
    if (!x) {
        sl_errors_add(errs, "certificates[%zu].%s: not a PEM certificate (%s)", i, cert_key,
                      openssl_reason(why, sizeof(why)));
        goto out;
    }
    k = kb ? PEM_read_bio_PrivateKey(kb, NULL, refuse_pass_phrase_cb, NULL) : NULL;
    if (!k) {
        sl_errors_add(errs, "certificates[%zu].%s: not a PEM private key, or one encrypted (%s)", i,
                      key_key, openssl_reason(why, sizeof(why)));
        goto out;
    }
    if (X509_check_private_key(x, k) != 1) {
        sl_errors_add(errs,
                      "certificates[%zu].%s: the key does not belong to the certificate in %s", i,
                      key_key, cert_key);
        goto out;
    }
    bad = false;
out:
    ERR_clear_error();
    EVP_PKEY_free(k);
    X509_free(x);
    BIO_free(kb);
    BIO_free(cb);
    return bad;
}

/* The context of certificates[i] (cert an object of the table), or NULL
 * after an error naming the entity and the field at fault. */
static SSL_CTX *build_ctx(const json_t *cert, size_t i, sl_errors_t *errs)
{
    size_t before = errs->n;
    const char *c = str_field(cert, "certificates", i, "cert", true, errs);
    const char *k = str_field(cert, "certificates", i, "key", true, errs);
    const char *ca = str_field(cert, "certificates", i, "cert_alt", false, errs);
    const char *ka = str_field(cert, "certificates", i, "key_alt", false, errs);
    if ((ca == NULL) != (ka == NULL) && errs->n == before)
        sl_errors_add(errs, "certificates[%zu].%s: required when %s is set", i,
                      ca ? "key_alt" : "cert_alt", ca ? "cert_alt" : "key_alt");
    if (errs->n > before)
        return NULL;

    char err[512] = "";
    SSL_CTX *ctx = sl_tls_ctx_new(c, k, ca, ka, err, sizeof(err));
    if (ctx)
        return ctx;
    /* Said again, this time naming the field: the failure path only, so a
     * good certificate is parsed once. */
    if (!pair_error(i, c, k, "cert", "key", errs) &&
        !(ca && pair_error(i, ca, ka, "cert_alt", "key_alt", errs)))
        sl_errors_add(errs, "certificates[%zu]: %s", i, err[0] ? err : "cannot be used");
    return NULL;
}

static void tls_free(struct sl_gen_tls_s *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nctxs; i++)
        SSL_CTX_free(t->ctxs[i]);
    free(t->ctxs);
    json_decref(t->by_name);
    free(t);
}

/*
 * Three passes: each sni is checked and its certificate found (marking the
 * certificate used); each used certificate gets its context, in table order;
 * each sni's lower-cased name goes into the index. Two snis whose names
 * differ only in case (the loader lets both through) are one name here: the
 * first in the table keeps it. Returns SL_OK with g->tls set (NULL when
 * there are no snis), or SL_ERR_INVALID with the reasons in errs and g->tls
 * NULL (nothing half-built is left behind).
 */
int sl_gen_tls_build(struct sl_gen_s *g, const json_t *doc, sl_errors_t *errs)
{
    size_t before = errs->n;
    json_t *certs = sl_gen_table(doc, "certificates", errs);
    json_t *snis = sl_gen_table(doc, "snis", errs);
    size_t ncerts = json_array_size(certs), nsnis = json_array_size(snis);
    g->tls = NULL;
    if (nsnis == 0)
        return errs->n > before ? SL_ERR_INVALID : SL_OK;

    /* Certificate id -> index in the table. */
    json_t *cert_index = json_object();
    for (size_t i = 0; i < ncerts; i++) {
        json_t *o = json_array_get(certs, i);
        if (!json_is_object(o)) {
            sl_errors_add(errs, "certificates[%zu]: expected a record", i);
            continue;
        }
        const char *id = str_field(o, "certificates", i, "id", true, errs);
        if (id && !json_object_get(cert_index, id))
            json_object_set_new(cert_index, id, json_integer((json_int_t)i));
    }

    /* Per sni: its certificate's index (-1: in error); per certificate: its
     * context's index (-1: not used, -2: used). */
    ssize_t *cert_of = sl_xcalloc(nsnis, sizeof(ssize_t));
    ssize_t *ctx_of = sl_xcalloc(ncerts ? ncerts : 1, sizeof(ssize_t));
    for (size_t i = 0; i < ncerts; i++)
        ctx_of[i] = -1;
    for (size_t i = 0; i < nsnis; i++) {
        json_t *o = json_array_get(snis, i);
        cert_of[i] = -1;
        if (!json_is_object(o)) {
            sl_errors_add(errs, "snis[%zu]: expected a record", i);
            continue;
        }
        const char *name = str_field(o, "snis", i, "name", true, errs);
        if (name && name[0] == '\0')
            sl_errors_add(errs, "snis[%zu].name: expected a host name", i);
        json_t *fk = json_object_get(o, "certificate");
        const char *cid = str_value(json_is_object(fk) ? json_object_get(fk, "id") : fk);
        json_t *ci = cid ? json_object_get(cert_index, cid) : NULL;
        if (fk == NULL || json_is_null(fk))
            sl_errors_add(errs, "snis[%zu].certificate: required field missing", i);
        else if (cid == NULL)
            sl_errors_add(errs, "snis[%zu].certificate: expected a record with a string id", i);
        else if (ci == NULL)
            sl_errors_add(errs, "snis[%zu].certificate: no certificate with id %s", i, cid);
        if (!name || !name[0] || !ci)
            continue;
        cert_of[i] = (ssize_t)json_integer_value(ci);
        ctx_of[cert_of[i]] = -2;
    }

    struct sl_gen_tls_s *t = sl_xcalloc(1, sizeof(*t));
    t->ctxs = sl_xcalloc(ncerts ? ncerts : 1, sizeof(SSL_CTX *));
    t->by_name = json_object();
    for (size_t i = 0; i < ncerts; i++) {
        if (ctx_of[i] != -2)
            continue;
        SSL_CTX *ctx = build_ctx(json_array_get(certs, i), i, errs);
        ctx_of[i] = ctx ? (ssize_t)t->nctxs : -1;
        if (ctx)
            t->ctxs[t->nctxs++] = ctx;
    }

    for (size_t i = 0; i < nsnis && errs->n == before; i++) {
        if (cert_of[i] < 0)
            continue;
        char *lower =
            sl_xstrdup(json_string_value(json_object_get(json_array_get(snis, i), "name")));
        for (char *p = lower; *p; p++)
            *p = sl_lower(*p);
        json_t *prev = json_object_get(t->by_name, lower);
        if (prev == NULL)
            json_object_set_new(t->by_name, lower, json_integer((json_int_t)ctx_of[cert_of[i]]));
        else
            SL_WARN("snis[%zu].name: '%s' is already an sni's name (case aside); the first "
                    "one's certificate serves it",
                    i, lower);
        free(lower);
    }

    free(ctx_of);
    free(cert_of);
    json_decref(cert_index);
    if (errs->n > before) {
        tls_free(t);
        return SL_ERR_INVALID;
    }
    g->tls = t;
    return SL_OK;
}

void sl_gen_tls_free(struct sl_gen_s *g)
{
    tls_free(g->tls);
    g->tls = NULL;
}

/* ------------------------------------------------------------ selection */

static SSL_CTX *ctx_named(const struct sl_gen_tls_s *t, const char *name)
{
    json_t *i = json_object_get(t->by_name, name);
    return i ? t->ctxs[json_integer_value(i)] : NULL;
}

/*
 * Kong's candidates in order (see the top of the file). The name is folded
 * to lower case here as well, so a caller that forgot still matches. A name
 * with a '*' of its own only meets the sni of that very name (Kong makes no
 * wildcard of it). NULL name: the client sent no SNI, and Kong then serves
 * the default certificate without consulting even the "*" sni.
 */
SSL_CTX *sl_gen_tls_ctx(const struct sl_gen_s *g, const char *name)
{
    const struct sl_gen_tls_s *t = g ? g->tls : NULL;
    if (!t || !name)
        return NULL;
    size_t n = strlen(name);
    if (n == 0 || n > MAX_NAME)
        return ctx_named(t, "*");

    char buf[MAX_NAME + 2]; /* the name, or a wildcard one byte longer */
    for (size_t i = 0; i <= n; i++)
        buf[i] = sl_lower(name[i]);
    SSL_CTX *ctx = ctx_named(t, buf);
    if (ctx || strchr(buf, '*'))
        return ctx ? ctx : ctx_named(t, "*");

    /* "*.rest" when the name is label "." label "." something
     * (re_sub "([^.]+)(\.[^.]+\.\S+)" -> "*$2", anchored). */
    const char *dot = strchr(buf, '.');
    const char *dot2 = dot && dot != buf && dot[1] && dot[1] != '.' ? strchr(dot + 1, '.') : NULL;
    if (dot2 && dot2[1] && !strchr(" \t\r\n\f\v", dot2[1])) {
        char wild[MAX_NAME + 2];
        wild[0] = '*';
        memcpy(wild + 1, dot, n - (size_t)(dot - buf) + 1);
        if ((ctx = ctx_named(t, wild)))
            return ctx;
    }

    /* "rest.*" when the name ends in label "." label
     * (re_sub "([^.]+\.)([^.]+)$" -> "$1*"). */
    char *last = strrchr(buf, '.');
    if (last && last != buf && last[-1] != '.' && last[1]) {
        last[1] = '*';
        last[2] = '\0';
        if ((ctx = ctx_named(t, buf)))
            return ctx;
    }
    return ctx_named(t, "*");
}
