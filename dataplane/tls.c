/*
 * tls.c: server contexts, the default certificate and the SNI callback
 * (see tls.h). The generation's certificates are gen_tls.c's.
 */
#include "tls.h"
#include "dp_conf.h"
#include "gen.h"
#include "log.h"
#include "proxy-t.h"
#include "util.h"
#include "worker.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

static SSL_CTX *default_ctx;
static SSL_CTX *upstream_ctx; /* tls_verify off (sl_tls_upstream_ctx) */

/* The last OpenSSL error as text (the queue is cleared). */
static const char *ssl_error(void)
{
    static _Thread_local char buf[256];
    unsigned long e = ERR_get_error();
    if (!e)
        return "unknown error";
    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return buf;
}

/* ---- the SNI callback and ALPN ------------------------------------------ */

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    sl_conn_t *c = SSL_get_app_data(ssl);
    if (!name || !c)
        return SSL_TLSEXT_ERR_OK; /* the default certificate */
    char lower[256];
    size_t n = strlen(name);
    if (n >= sizeof(lower))
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i <= n; i++)
        lower[i] = sl_lower(name[i]);
    SSL_CTX *ctx = sl_gen_tls_ctx(sl_worker_gen(c->w), lower);
    if (ctx && ctx != SSL_get_SSL_CTX(ssl))
        SSL_set_SSL_CTX(ssl, ctx); /* takes a reference: the generation may go */
    return SSL_TLSEXT_ERR_OK;
}

/* The certificate phase runs when the ClientHello is in, and may make the
 * handshake wait (proxy.c resumes it). */
static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    sl_conn_t *c = SSL_get_app_data(ssl);
    if (!c)
        return SSL_CLIENT_HELLO_SUCCESS;
    switch (sl_conn_certificate(c)) {
    case SL_OK:
        return SSL_CLIENT_HELLO_SUCCESS;
    case SL_AGAIN:
        return SSL_CLIENT_HELLO_RETRY;
    default:
        *alert = SSL_AD_HANDSHAKE_FAILURE;
        return SSL_CLIENT_HELLO_ERROR;
    }
}

/* h2 first on http2 listeners, then http/1.1; a client that offers
 * neither gets no ALPN answer (and HTTP/1.1). */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char both[] = "\x02h2\x08http/1.1";
    const sl_conn_t *c = SSL_get_app_data(ssl);
    bool h2 = c && c->h2_ok;
    const unsigned char *ours = h2 ? both : both + 3;
    unsigned ours_len = h2 ? sizeof(both) - 1 : sizeof(both) - 4;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- contexts ----------------------------------------------------------- */

/* An encrypted key is refused rather than asked for on a terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

/* Loads a certificate (and its chain: the PEM blocks after the first) and
 * its key into ctx. */
static bool use_pair(SSL_CTX *ctx, const char *cert_pem, const char *key_pem, const char *what,
                     char *err, size_t errlen)
{
    BIO *b = BIO_new_mem_buf(cert_pem, -1);
    X509 *leaf = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    bool ok = leaf && SSL_CTX_use_certificate(ctx, leaf) == 1;
    if (!ok) {
        snprintf(err, errlen, "%s: not a PEM certificate (%s)", what, ssl_error());
        goto out;
    }
    X509 *extra;
    while ((extra = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (SSL_CTX_add1_chain_cert(ctx, extra) != 1) {
            X509_free(extra);
            snprintf(err, errlen, "%s: its chain cannot be used (%s)", what, ssl_error());
            ok = false;
            goto out;
        }
        X509_free(extra);
    }
    ERR_clear_error(); /* the end of the PEM blocks */
    BIO *kb = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL) : NULL;
    BIO_free(kb);
    if (!key || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        snprintf(err, errlen, "%s: the key is not a PEM private key (%s)", what, ssl_error());
        ok = false;
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "%s: the key does not belong to the certificate", what);
        ERR_clear_error();
        ok = false;
    }
    EVP_PKEY_free(key);
out:
    X509_free(leaf);
    BIO_free(b);
    return ok;
}

SSL_CTX *sl_tls_ctx_new(const char *cert_pem, const char *key_pem, const char *cert_alt_pem,
                        const char *key_alt_pem, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot make a TLS context: %s", ssl_error());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    if (!cert_pem || !key_pem || !use_pair(ctx, cert_pem, key_pem, "cert", err, errlen) ||
        (cert_alt_pem && key_alt_pem &&
         !use_pair(ctx, cert_alt_pem, key_alt_pem, "cert_alt", err, errlen))) {
        if (!cert_pem || !key_pem)
            snprintf(err, errlen, "a certificate needs both cert and key");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* ---- the default certificate -------------------------------------------- */

/* A setting that is PEM text, or the path of a file holding it. */
static char *pem_setting(const char *v, const char *key, sl_errors_t *errs)
{
    if (strstr(v, "-----BEGIN"))
        return sl_xstrdup(v);
    char *text;
    size_t len;
    if (sl_read_file(v, 1u << 20, &text, &len) != SL_OK) {
        sl_errors_add(errs, "%s: cannot read '%s': %s (give a PEM file's path or the PEM text)",
                      key, v, strerror(errno));
        return NULL;
    }
    return text;
}

/* A P-256 key and a self-signed certificate for "localhost", one year. */
static int make_default(char **cert_pem, char **key_pem)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    int rc = SL_ERR_INVALID;
    if (!key || !x)
        goto out;
    unsigned char serial[16];
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Sluice", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost");
    if (san) {
        X509_add_ext(x, san, -1);
        X509_EXTENSION_free(san);
    }
    if (!X509_sign(x, key, EVP_sha256()))
        goto out;
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    if (cb && kb && PEM_write_bio_X509(cb, x) &&
        PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL)) {
        char *p;
        long n = BIO_get_mem_data(cb, &p);
        *cert_pem = sl_xstrndup(p, (size_t)n);
        n = BIO_get_mem_data(kb, &p);
        *key_pem = sl_xstrndup(p, (size_t)n);
        rc = SL_OK;
    }
    BIO_free(cb);
    BIO_free(kb);
out:
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* The default pair from <prefix>/ssl/, made and written there the first
 * time (as Kong keeps its kong-default.crt across restarts). */
static int default_pair(const char *prefix, char **cert_pem, char **key_pem, sl_errors_t *errs)
{
    char *dir = sl_xasprintf("%s/ssl", prefix);
    char *cpath = sl_xasprintf("%s/sluice-default.crt", dir);
    char *kpath = sl_xasprintf("%s/sluice-default.key", dir);
    size_t len;
    int rc = SL_OK;
    if (sl_read_file(cpath, 1u << 20, cert_pem, &len) == SL_OK &&
        sl_read_file(kpath, 1u << 20, key_pem, &len) == SL_OK)
        goto out;
    free(*cert_pem);
    *cert_pem = NULL;
    if (make_default(cert_pem, key_pem) != SL_OK) {
        sl_errors_add(errs, "ssl_cert: cannot make a default certificate: %s", ssl_error());
        rc = SL_ERR_INVALID;
        goto out;
    }
    /* The key is never readable by others, not even for a moment (start-up:
     * no other thread creates files yet). */
    mode_t mask = umask(077);
    bool kept =
        sl_mkdir_p(dir) == 0 && sl_write_file_atomic(kpath, *key_pem, strlen(*key_pem)) == SL_OK;
    umask(mask);
    if (!kept || sl_write_file_atomic(cpath, *cert_pem, strlen(*cert_pem)) != SL_OK)
        SL_WARN("cannot keep the default certificate in %s: %s (a new one is made at each "
                "start)",
                dir, strerror(errno));
    else
        SL_NOTICE("made a self-signed default certificate for TLS listeners: %s (set ssl_cert "
                  "and ssl_cert_key to serve your own)",
                  cpath);
out:
    free(dir);
    free(cpath);
    free(kpath);
    return rc;
}

int sl_tls_init(const sl_dp_conf_t *conf, sl_errors_t *errs)
{
    if (default_ctx)
        return SL_OK;
    size_t before = errs->n;
    char *cert = NULL, *key = NULL;
    if (!!conf->ssl_cert != !!conf->ssl_cert_key) {
        sl_errors_add(errs, "%s: set ssl_cert and ssl_cert_key together",
                      conf->ssl_cert ? "ssl_cert_key" : "ssl_cert");
        return SL_ERR_INVALID;
    }
    if (conf->ssl_cert) {
        cert = pem_setting(conf->ssl_cert, "ssl_cert", errs);
        key = pem_setting(conf->ssl_cert_key, "ssl_cert_key", errs);
    } else {
        default_pair(conf->prefix, &cert, &key, errs);
    }
    if (errs->n == before) {
        char err[512];
        default_ctx = sl_tls_ctx_new(cert, key, NULL, NULL, err, sizeof(err));
        if (!default_ctx)
            sl_errors_add(errs, "ssl_cert: %s", err);
    }
    if (key)
        OPENSSL_cleanse(key, strlen(key));
    free(cert);
    free(key);
    return errs->n > before ? SL_ERR_INVALID : SL_OK;
}

void sl_tls_cleanup(void)
{
    SSL_CTX_free(default_ctx);
    default_ctx = NULL;
    SSL_CTX_free(upstream_ctx);
    upstream_ctx = NULL;
}

SSL_CTX *sl_tls_default_ctx(void)
{
    return default_ctx;
}

/* ---- upstream contexts -------------------------------------------------- */

static SSL_CTX *client_ctx_new(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
}

static pthread_once_t upstream_once = PTHREAD_ONCE_INIT;

static void make_upstream_ctx(void)
{
    upstream_ctx = client_ctx_new();
    if (upstream_ctx)
        SSL_CTX_set_verify(upstream_ctx, SSL_VERIFY_NONE, NULL);
}

SSL_CTX *sl_tls_upstream_ctx(void)
{
    pthread_once(&upstream_once, make_upstream_ctx);
    return upstream_ctx;
}

SSL_CTX *sl_tls_upstream_ctx_new(const json_t *doc, bool verify, const json_t *ca_ids, char *err,
                                 size_t errlen)
{
    SSL_CTX *ctx = client_ctx_new();
    if (!ctx) {
        snprintf(err, errlen, "cannot make a TLS context: %s", ssl_error());
        return NULL;
    }
    if (!verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (json_array_size(ca_ids) == 0) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1)
            SL_WARN("tls_verify: the system's trust store cannot be loaded: %s", ssl_error());
        return ctx;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    const json_t *cas = json_object_get(doc, "ca_certificates");
    size_t i;
    const json_t *id;
    json_array_foreach(ca_ids, i, id)
    {
        const char *want = json_string_value(id);
        const json_t *found = NULL, *ca;
        size_t k;
        json_array_foreach(cas, k, ca)
        {
            const char *cid = json_string_value(json_object_get(ca, "id"));
            if (want && cid && !strcmp(want, cid))
                found = ca;
        }
        const char *pem = json_string_value(json_object_get(found, "cert"));
        BIO *b = pem ? BIO_new_mem_buf(pem, -1) : NULL;
        X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!x || X509_STORE_add_cert(store, x) != 1) {
            snprintf(err, errlen, "%s %s",
                     found ? "the certificate of ca_certificate" : "no ca_certificate with id",
                     want ? want : "(not a string)");
            X509_free(x);
            SSL_CTX_free(ctx);
            return NULL;
        }
        X509_free(x);
    }
    return ctx;
}

bool sl_tls_use_client_cert(SSL_CTX *ctx, const json_t *doc, const char *cert_id, char *err,
                            size_t errlen)
{
    const json_t *cert, *found = NULL;
    size_t i;
    json_array_foreach(json_object_get(doc, "certificates"), i, cert)
    {
        const char *id = json_string_value(json_object_get(cert, "id"));
        if (id && !strcmp(id, cert_id))
            found = cert;
    }
    const char *pem = json_string_value(json_object_get(found, "cert"));
    const char *key = json_string_value(json_object_get(found, "key"));
    if (!pem || !key) {
        snprintf(err, errlen, "no certificate with id %s", cert_id);
        return false;
    }
    return use_pair(ctx, pem, key, "the certificate", err, errlen);
}
