/*
 * cluster_tls.c owns the TLS of the cluster protocol (cluster_tls.h): the
 * SSL_CTX each side builds from cluster_cert, cluster_cert_key and
 * cluster_ca_cert, the verify callback that decides inside the handshake
 * whether a peer may join, the words that explain a refusal, and the
 * certificate maker behind `sluice-cp gen-cert`.
 *
 * Everything a peer is judged by is decided in OpenSSL's verify callback
 * rather than after the handshake: a refused peer never completes the
 * handshake, so no code above this file can forget to look. One consequence
 * of TLS 1.3 is worth knowing: the client finishes its side before the
 * server has judged the client certificate, so a data plane the control
 * plane refuses learns of it on its first read, as an alert.
 *
 * Threads: contexts are built once at start-up. The callback runs on
 * whichever thread drives a handshake and reads only the context's immutable
 * data and writes only its own SSL, so one context serves every thread.
 *
 * Lifetimes: the per-context data (the pinned digest, the allow-list) hangs
 * off the SSL_CTX as ex_data and is freed by OpenSSL's ex_data free hook when
 * the last reference to the context goes. The per-connection refusal reason
 * is an integer stored in the SSL's ex_data: there is nothing to free.
 */
#include "cluster_tls.h"

#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHARED_SNI "kong_clustering"
#define PEM_MAX (1u << 20) /* largest cert/key/ca file we read */
#define PKI_VERIFY_DEPTH 4 /* Kong's ssl_verify_depth for cluster_ca_cert */
#define PIN_LEN 32         /* SHA-256 */

/* ------------------------------------------------------------------------ */
/* Per-context and per-connection data                                       */

struct ctx_data {
    sl_cluster_mtls_t mode;
    unsigned char pin[PIN_LEN]; /* SHA-256 of our own cluster_cert's DER */
    char **allowed;             /* owned: server, pki; NULL when any name will do */
    size_t nallowed;
};

/* Why our verify callback refused a peer; stored in the SSL's ex_data as
 * reason | x509_error << 4. */
enum { REFUSED_NONE = 0, REFUSED_PIN, REFUSED_VERIFY, REFUSED_NAME };

static pthread_once_t ex_once = PTHREAD_ONCE_INIT;
static int ctx_idx = -1, ssl_idx = -1;

static void free_ctx_data(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    struct ctx_data *d = ptr;
    if (!d)
        return;
    for (size_t i = 0; i < d->nallowed; i++)
        free(d->allowed[i]);
    free(d->allowed);
    free(d);
}

static void init_ex_indexes(void)
{
    ctx_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_ctx_data);
    ssl_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static bool ex_indexes_ready(void)
{
    pthread_once(&ex_once, init_ex_indexes);
    return ctx_idx >= 0 && ssl_idx >= 0;
}

static void refuse(SSL *ssl, int why, int x509_error)
{
    SSL_set_ex_data(ssl, ssl_idx, (void *)(intptr_t)(why | (x509_error << 4)));
}

int sl_cluster_mtls_parse(const char *s, sl_cluster_mtls_t *out)
{
    if (s && !strcmp(s, "shared")) {
        *out = SL_MTLS_SHARED;
        return SL_OK;
    }
    if (s && !strcmp(s, "pki")) {
        *out = SL_MTLS_PKI;
        return SL_OK;
    }
    return SL_ERR_INVALID;
}

/* ------------------------------------------------------------------------ */
/* Verification                                                              */

static bool leaf_is_pinned(X509 *leaf, const unsigned char pin[PIN_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    return leaf && X509_digest(leaf, EVP_sha256(), md, &n) == 1 && n == PIN_LEN &&
           CRYPTO_memcmp(md, pin, PIN_LEN) == 0;
}

/* The errors that only say "nobody vouches for this chain". Pinning makes
 * them moot: we vouch for the leaf ourselves. Anything else (expired, not yet
 * valid, wrong purpose, bad signature) still refuses the peer, as nginx's
 * `ssl_verify_client optional_no_ca` in Kong does. */
static bool is_trust_error(int err)
{
    switch (err) {
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return true;
    default:
        return false;
    }
}

static bool name_allowed(const struct ctx_data *d, const char *p, size_t len)
{
    for (size_t i = 0; i < d->nallowed; i++)
        if (sl_strcaseeq(p, len, d->allowed[i], strlen(d->allowed[i])))
            return true;
    return false;
}

/* True when one of the certificate's subject CNs or DNS SANs is on the
 * allow-list. Names compare case-insensitively, as host names do; a wildcard
 * SAN matches only the identical allow-list entry. */
static bool peer_names_allowed(const struct ctx_data *d, X509 *cert)
{
    const X509_NAME *subj = X509_get_subject_name(cert);
    for (int i = -1; (i = X509_NAME_get_index_by_NID(subj, NID_commonName, i)) >= 0;) {
        const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
        unsigned char *utf8 = NULL;
        int n = ASN1_STRING_to_UTF8(&utf8, s);
        bool hit = n >= 0 && name_allowed(d, (const char *)utf8, (size_t)n);
        OPENSSL_free(utf8);
        if (hit)
            return true;
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    bool hit = false;
    for (int i = 0; !hit && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS)
            hit = name_allowed(d, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                               (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    return hit;
}

/*
 * OpenSSL calls this once per problem it finds in the peer's chain (ok = 0)
 * and once per certificate, top down, when the chain checks out (ok = 1).
 * Returning 0 aborts the handshake with an alert; before doing so we record
 * why in the SSL, for sl_cluster_tls_error().
 *
 * shared: the store is empty, so every self-signed or CA-issued peer raises
 *         trust errors; those are forgiven when the leaf is our own
 *         certificate, and any peer whose leaf is not is refused.
 * pki:    OpenSSL's verdict stands (chain to cluster_ca_cert, depth, the
 *         host name set by sl_cluster_tls_client_ssl); the server then holds
 *         the leaf's names against the allow-list.
 */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    const struct ctx_data *d = ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_idx) : NULL;
    if (!d)
        return 0; /* not a context of ours: refuse rather than guess */
    int err = X509_STORE_CTX_get_error(xs);

    if (d->mode == SL_MTLS_SHARED) {
        if (!leaf_is_pinned(X509_STORE_CTX_get0_cert(xs), d->pin)) {
            X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
            refuse(ssl, REFUSED_PIN, 0);
            return 0;
        }
        if (ok)
            return 1;
        if (is_trust_error(err)) {
            X509_STORE_CTX_set_error(xs, X509_V_OK); /* SSL_get_verify_result stays truthful */
            return 1;
        }
        refuse(ssl, REFUSED_VERIFY, err);
        return 0;
    }

    if (!ok) {
        refuse(ssl, REFUSED_VERIFY, err);
        return 0;
    }
    if (X509_STORE_CTX_get_error_depth(xs) == 0 && d->nallowed &&
        !peer_names_allowed(d, X509_STORE_CTX_get_current_cert(xs))) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
        refuse(ssl, REFUSED_NAME, 0);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Loading cert, key and CA values                                           */

/* The text of a cert/key/ca value: inline PEM as is, or the file it names. */
struct pem {
    BIO *bio;    /* owned: a read-only memory BIO over the text */
    char *text;  /* owned: the file's contents; NULL for inline values */
    char *where; /* owned: "'<path>'" or "the inline PEM", for messages */
};

static bool is_inline_pem(const char *v)
{
    v += strspn(v, " \t\r\n");
    return strncmp(v, "-----BEGIN", 10) == 0;
}

/* OpenSSL's default would prompt on the terminal for a pass phrase; a
 * daemon must not. Records that one was asked for. */
static int no_pass_phrase_cb(char *buf, int size, int rwflag, void *asked)
{
    if (asked)
        *(bool *)asked = true;
    return -1;
}

/* The most recent OpenSSL error as a short reason, then clears the queue. */
static const char *openssl_reason(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r)
        snprintf(buf, size, "%s", r);
    else if (e)
        ERR_error_string_n(e, buf, size);
    else
        snprintf(buf, size, "unknown error");
    ERR_clear_error();
    return buf;
}

static void pem_close(struct pem *p)
{
    BIO_free(p->bio);
    free(p->text);
    free(p->where);
    memset(p, 0, sizeof(*p));
}

/* Opens the value of configuration key `key`. Returns SL_OK, or
 * SL_ERR_INVALID with a message in errs. */
static int pem_open(struct pem *p, const char *key, const char *value, sl_errors_t *errs)
{
    memset(p, 0, sizeof(*p));
    const char *text = value;
    size_t len = strlen(value);
    if (is_inline_pem(value)) {
        /* PEM wants "-----BEGIN" at the start of a line: drop what precedes
         * it (indentation from a YAML or shell quote). */
        text = value + strspn(value, " \t\r\n");
        len = strlen(text);
        p->where = sl_xstrdup("the inline PEM");
    } else {
        int rc = sl_read_file(value, PEM_MAX, &p->text, &len);
        if (rc == SL_ERR_TOO_BIG) {
            sl_errors_add(errs, "%s: '%s' is too big for a PEM file (over %u bytes)", key, value,
                          PEM_MAX);
            return SL_ERR_INVALID;
        }
        if (rc != SL_OK) {
            sl_errors_add(errs, "%s: cannot read '%s' (%s)", key, value, strerror(errno));
            return SL_ERR_INVALID;
        }
        text = p->text;
        p->where = sl_xasprintf("'%s'", value);
    }
    p->bio = BIO_new_mem_buf(text, (int)len);
    if (!p->bio) {
        sl_errors_add(errs, "%s: cannot read %s (out of memory)", key, p->where);
        pem_close(p);
        return SL_ERR_INVALID;
    }
    return SL_OK;
}

/* Reads every certificate of `value` (blocks of other types are skipped).
 * Returns a stack of at least one, which the caller frees with
 * sk_X509_pop_free(.., X509_free), or NULL with a message in errs. */
static STACK_OF(X509) * load_certs(const char *key, const char *value, sl_errors_t *errs)
{
    struct pem p;
    if (pem_open(&p, key, value, errs) != SL_OK)
        return NULL;
    STACK_OF(X509) *certs = sk_X509_new_null();
    SL_ASSERT(certs != NULL);
    ERR_clear_error();
    X509 *x;
    while ((x = PEM_read_bio_X509(p.bio, NULL, no_pass_phrase_cb, NULL)) != NULL)
        if (!sk_X509_push(certs, x))
            X509_free(x);
    /* The loop ends on "no start line" at the end of the text, or on the
     * first certificate that does not parse. */
    unsigned long e = ERR_peek_last_error();
    bool at_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    char why[256];
    if (sk_X509_num(certs) == 0) {
        sl_errors_add(errs, "%s: %s holds no PEM certificate (%s)", key, p.where,
                      at_end ? "no BEGIN CERTIFICATE line" : openssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (!at_end) {
        sl_errors_add(errs, "%s: certificate %d of %s is not valid PEM (%s)", key,
                      sk_X509_num(certs) + 1, p.where, openssl_reason(why, sizeof(why)));
        goto fail;
    }
    ERR_clear_error();
    pem_close(&p);
    return certs;

fail:
    ERR_clear_error();
    sk_X509_pop_free(certs, X509_free);
    pem_close(&p);
    return NULL;
}

/* Reads the private key of `value`. Returns it, or NULL with a message. */
static EVP_PKEY *load_key(const char *key, const char *value, sl_errors_t *errs)
{
    struct pem p;
    if (pem_open(&p, key, value, errs) != SL_OK)
        return NULL;
    bool asked = false;
    char why[256];
    ERR_clear_error();
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(p.bio, NULL, no_pass_phrase_cb, &asked);
    if (!pkey && asked)
        sl_errors_add(errs,
                      "%s: %s is encrypted; give an unencrypted key "
                      "(`openssl pkey -in KEY -out PLAIN_KEY` decrypts it)",
                      key, p.where);
    else if (!pkey)
        sl_errors_add(errs, "%s: %s holds no PEM private key (%s)", key, p.where,
                      openssl_reason(why, sizeof(why)));
    ERR_clear_error();
    pem_close(&p);
    return pkey;
}

/* Splits the comma-separated allow-list. Returns the number of names. */
static size_t parse_names(const char *list, char ***out)
{
    char **names = NULL;
    size_t n = 0;
    for (const char *p = list; *p;) {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, ",");
        size_t end = len;
        while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        if (end > 0) {
            names = sl_xrealloc(names, (n + 1) * sizeof(*names));
            names[n++] = sl_xstrndup(p, end);
        }
        p += len;
    }
    *out = names;
    return n;
}

static bool is_empty(const char *s)
{
    return !s || !*s;
}

/* ------------------------------------------------------------------------ */
/* Contexts                                                                  */

/*
 * Builds the context of either side. Every problem with the options is
 * reported at once. Returns SL_OK with *out set, or SL_ERR_INVALID with
 * *out untouched.
 */
static int build_ctx(const sl_cluster_tls_opts_t *o, bool server, SSL_CTX **out, sl_errors_t *errs)
{
    size_t nerrs = errs->n;
    STACK_OF(X509) *certs = NULL, *cas = NULL;
    EVP_PKEY *pkey = NULL;
    SSL_CTX *ctx = NULL;
    struct ctx_data *d = sl_xcalloc(1, sizeof(*d));
    char why[256];

    if (!ex_indexes_ready()) {
        sl_errors_add(errs, "cluster TLS: OpenSSL cannot allocate ex_data indexes");
        goto fail;
    }
    if (is_empty(o->cert))
        sl_errors_add(errs, "cluster_cert: required (a PEM file or inline PEM; "
                            "`sluice-cp gen-cert` makes one)");
    else
        certs = load_certs("cluster_cert", o->cert, errs);
    if (is_empty(o->key))
        sl_errors_add(errs, "cluster_cert_key: required (the PEM private key of cluster_cert)");
    else
        pkey = load_key("cluster_cert_key", o->key, errs);
    if (o->mode == SL_MTLS_PKI) {
        if (is_empty(o->ca_cert))
            sl_errors_add(errs, "cluster_ca_cert: required when cluster_mtls = pki");
        else
            cas = load_certs("cluster_ca_cert", o->ca_cert, errs);
        if (server && !is_empty(o->allowed_names) &&
            (d->nallowed = parse_names(o->allowed_names, &d->allowed)) == 0)
            sl_errors_add(errs,
                          "cluster_allowed_common_names: '%s' lists no names (give "
                          "comma-separated names, or leave it unset to accept any "
                          "certificate cluster_ca_cert signed)",
                          o->allowed_names);
    }
    if (errs->n > nerrs)
        goto fail;

    ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
        sl_errors_add(errs, "cluster TLS: cannot create a TLS 1.3 context (%s)",
                      openssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (server) {
        /* No resumption: every connection is judged by a full handshake.
         * (With SSL_VERIFY_PEER, OpenSSL would also refuse resumption
         * without a session id context.) */
        SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }

    X509 *leaf = sk_X509_value(certs, 0);
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        sl_errors_add(errs, "cluster_cert: the certificate cannot be used (%s)",
                      openssl_reason(why, sizeof(why)));
        goto fail;
    }
    for (int i = 1; i < sk_X509_num(certs); i++) {
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(certs, i)) != 1) {
            sl_errors_add(errs, "cluster_cert: chain certificate %d cannot be used (%s)", i + 1,
                          openssl_reason(why, sizeof(why)));
            goto fail;
        }
    }
    /* SSL_CTX_use_PrivateKey already refuses some mismatches (same key
     * type, other key); SSL_CTX_check_private_key catches the rest. */
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        sl_errors_add(errs, "cluster_cert_key: does not match cluster_cert");
        goto fail;
    }

    d->mode = o->mode;
    unsigned int n = 0;
    if (X509_digest(leaf, EVP_sha256(), d->pin, &n) != 1 || n != PIN_LEN) {
        sl_errors_add(errs, "cluster_cert: cannot compute its SHA-256 digest (%s)",
                      openssl_reason(why, sizeof(why)));
        goto fail;
    }
    if (o->mode == SL_MTLS_PKI) {
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        for (int i = 0; i < sk_X509_num(cas); i++) {
            if (X509_STORE_add_cert(store, sk_X509_value(cas, i)) != 1) {
                sl_errors_add(errs, "cluster_ca_cert: certificate %d cannot be used (%s)", i + 1,
                              openssl_reason(why, sizeof(why)));
                goto fail;
            }
        }
        SSL_CTX_set_verify_depth(ctx, PKI_VERIFY_DEPTH);
    }
    if (SSL_CTX_set_ex_data(ctx, ctx_idx, d) != 1) {
        sl_errors_add(errs, "cluster TLS: cannot attach data to the context (%s)",
                      openssl_reason(why, sizeof(why)));
        goto fail;
    }
    d = NULL; /* the context owns it now */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                       verify_cb);

    sk_X509_pop_free(certs, X509_free);
    sk_X509_pop_free(cas, X509_free);
    EVP_PKEY_free(pkey);
    *out = ctx;
    return SL_OK;

fail:
    SSL_CTX_free(ctx);
    free_ctx_data(NULL, d, NULL, 0, 0, NULL);
    sk_X509_pop_free(certs, X509_free);
    sk_X509_pop_free(cas, X509_free);
    EVP_PKEY_free(pkey);
    return SL_ERR_INVALID;
}

int sl_cluster_tls_server_ctx(const sl_cluster_tls_opts_t *o, SSL_CTX **out, sl_errors_t *errs)
{
    return build_ctx(o, true, out, errs);
}

int sl_cluster_tls_client_ctx(const sl_cluster_tls_opts_t *o, SSL_CTX **out, sl_errors_t *errs)
{
    return build_ctx(o, false, out, errs);
}

/*
 * The mode is the context's (the one it was built with), so a context built
 * for pki can never be used without the host name check. In pki mode
 * o->server_name is required: SL_ERR_INVALID without it. An IP address is
 * checked against the certificate's IP SANs and, as RFC 6066 3 asks, not
 * sent as SNI. Returns SL_OK with *out set (caller frees with SSL_free),
 * SL_ERR_INVALID, or SL_ERR_NOMEM.
 */
int sl_cluster_tls_client_ssl(SSL_CTX *ctx, const sl_cluster_tls_opts_t *o, SSL **out)
{
    const struct ctx_data *d = ex_indexes_ready() ? SSL_CTX_get_ex_data(ctx, ctx_idx) : NULL;
    if (!d)
        return SL_ERR_INVALID;
    bool pki = d->mode == SL_MTLS_PKI;
    const char *name = pki ? o->server_name : SHARED_SNI;
    if (is_empty(name))
        return SL_ERR_INVALID;
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;

    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return SL_ERR_NOMEM;
    if (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1)
        goto fail;
    if (pki) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name)
                   : X509_VERIFY_PARAM_set1_host(vp, name, 0)) != 1)
            goto fail;
    }
    *out = ssl;
    return SL_OK;

fail:
    SSL_free(ssl);
    ERR_clear_error();
    return SL_ERR_INVALID;
}

/* ------------------------------------------------------------------------ */
/* After the handshake                                                       */

/* Our own reason when our callback refused the peer; else the most recent
 * error on this thread's OpenSSL queue (which it then clears); else "no
 * certificate" when the peer sent none. */
void sl_cluster_tls_error(SSL *ssl, char *out, size_t size)
{
    if (size == 0)
        return;
    intptr_t r = ssl && ex_indexes_ready() ? (intptr_t)SSL_get_ex_data(ssl, ssl_idx) : 0;
    unsigned long e = ERR_peek_last_error();
    switch (r & 0xf) {
    case REFUSED_PIN:
        snprintf(out, size, "certificate does not match cluster_cert (shared mode)");
        break;
    case REFUSED_VERIFY:
        snprintf(out, size, "certificate verify failed: %s",
                 X509_verify_cert_error_string((long)(r >> 4)));
        break;
    case REFUSED_NAME:
        snprintf(out, size, "certificate name not in cluster_allowed_common_names");
        break;
    default:
        if (e)
            ERR_error_string_n(e, out, size);
        else if (!ssl || !SSL_get0_peer_certificate(ssl))
            snprintf(out, size, "no certificate");
        else
            snprintf(out, size, "TLS handshake failed (the connection was closed)");
        break;
    }
    ERR_clear_error();
}

int64_t sl_cluster_tls_peer_expiry(SSL *ssl)
{
    X509 *peer = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    struct tm tm;
    if (!peer || ASN1_TIME_to_tm(X509_get0_notAfter(peer), &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* ------------------------------------------------------------------------ */
/* gen-cert                                                                  */

/* Creates `path` (which must not exist) with exactly `mode`, whatever the
 * umask, and writes the memory BIO's contents. On failure nothing is left
 * behind. */
static int write_new_file(const char *path, BIO *mem, mode_t mode, sl_errors_t *errs)
{
    char *data = NULL;
    long len = BIO_get_mem_data(mem, &data);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST)
            sl_errors_add(errs, "%s: already exists; remove it or choose another path", path);
        else
            sl_errors_add(errs, "%s: cannot create it (%s)", path, strerror(errno));
        return SL_ERR_INVALID;
    }
    int err = fchmod(fd, mode) == 0 ? 0 : errno;
    for (long off = 0; !err && off < len;) {
        ssize_t w = write(fd, data + off, (size_t)(len - off));
        if (w < 0 && errno != EINTR)
            err = errno;
        else if (w > 0)
            off += w;
    }
    if (!err && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && !err)
        err = errno;
    if (err) {
        unlink(path);
        sl_errors_add(errs, "%s: cannot write it (%s)", path, strerror(err));
        return SL_ERR_INVALID;
    }
    return SL_OK;
}

/* The certificate itself: v3, random 128-bit serial, CN=kong_clustering as
 * subject and issuer, now .. now + days, signed by its own key with SHA-256.
 * Like Kong's, it carries no extensions. Returns NULL on OpenSSL failure. */
static X509 *make_self_signed(EVP_PKEY *pkey, int days)
{
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    unsigned char rnd[16];
    bool ok = x && serial && RAND_bytes(rnd, sizeof(rnd)) == 1 &&
              BN_bin2bn(rnd, sizeof(rnd), serial) != NULL;
    if (ok && BN_is_zero(serial))
        ok = BN_one(serial) == 1; /* a serial must be positive (RFC 5280 4.1.2.2) */
    ok = ok && X509_set_version(x, X509_VERSION_3) == 1 &&
         BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) != NULL &&
         X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
         X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) != NULL &&
         X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                    (const unsigned char *)SHARED_SNI, -1, -1, 0) == 1 &&
         X509_set_issuer_name(x, X509_get_subject_name(x)) == 1 && X509_set_pubkey(x, pkey) == 1 &&
         X509_sign(x, pkey, EVP_sha256()) > 0;
    BN_free(serial);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

int sl_cluster_gen_cert(const char *cert_path, const char *key_path, int days, sl_errors_t *errs)
{
    size_t nerrs = errs->n;
    if (days < 1 || days > 36500)
        sl_errors_add(errs, "days: %d is out of range (use 1 to 36500)", days);
    if (is_empty(cert_path) || is_empty(key_path)) {
        sl_errors_add(errs, "gen-cert: the certificate and key paths must not be empty");
        return SL_ERR_INVALID;
    }
    if (!strcmp(cert_path, key_path))
        sl_errors_add(errs, "%s: the certificate and the key need different paths", cert_path);
    /* Checked up front so that neither file is written when one is in the
     * way; O_EXCL below closes the race. */
    struct stat st;
    if (lstat(cert_path, &st) == 0)
        sl_errors_add(errs, "%s: already exists; remove it or choose another path", cert_path);
    if (strcmp(cert_path, key_path) != 0 && lstat(key_path, &st) == 0)
        sl_errors_add(errs, "%s: already exists; remove it or choose another path", key_path);
    if (errs->n > nerrs)
        return SL_ERR_INVALID;

    int rc = SL_ERR_INVALID;
    char why[256];
    X509 *x = NULL;
    BIO *key_pem = BIO_new(BIO_s_mem()), *cert_pem = BIO_new(BIO_s_mem());
    ERR_clear_error();
    EVP_PKEY *pkey = EVP_EC_gen("P-384");
    if (!pkey || !key_pem || !cert_pem || !(x = make_self_signed(pkey, days)) ||
        PEM_write_bio_PrivateKey(key_pem, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_X509(cert_pem, x) != 1) {
        sl_errors_add(errs, "gen-cert: cannot make the certificate (%s)",
                      openssl_reason(why, sizeof(why)));
        goto done;
    }
    if (write_new_file(key_path, key_pem, 0600, errs) != SL_OK)
        goto done;
    if (write_new_file(cert_path, cert_pem, 0644, errs) != SL_OK) {
        unlink(key_path); /* ours: created above */
        goto done;
    }
    rc = SL_OK;

done:
    X509_free(x);
    EVP_PKEY_free(pkey);
    BIO_free(key_pem);
    BIO_free(cert_pem);
    return rc;
}
