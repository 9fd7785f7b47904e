/*
 * Unit tests of the cluster TLS layer (common/cluster_tls.c): gen-cert's
 * files, shared-mode pinning, pki-mode chains, host names and the
 * allow-list, inline PEM values, and the configuration errors.
 *
 * Every verdict is checked with a real TLS 1.3 handshake between a server
 * and a client SSL over a socketpair, both non-blocking and driven in turn on
 * this thread until each has finished or failed, then one message each way.
 * Certificates come from sl_cluster_gen_cert, from a small certificate
 * factory below (CAs, leaves, names, validity), and from the openssl command
 * line. Each test gets a fresh mkdtemp directory that teardown removes.
 */
#include "cluster_tls.h"

#include "errors.h"
#include "util.h"

#include <fcntl.h>
#include <ftw.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define DAY 86400

/* ------------------------------------------------------------------------ */
/* Fixtures and helpers                                                      */

struct fx {
    char dir[64];
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/sluice-tls-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* A path inside the test's directory; valid until the next call with the
 * same slot. */
static const char *path_in(struct fx *f, const char *name)
{
    static char bufs[8][256];
    static unsigned slot;
    char *b = bufs[slot++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", f->dir, name);
    return b;
}

static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(sl_read_file(path, 1 << 20, &text, &len), SL_OK);
    return text;
}

static void spit(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Runs sl_cluster_gen_cert, which must succeed. */
static void gen_cert(const char *cert, const char *key, int days)
{
    sl_errors_t errs;
    sl_errors_init(&errs);
    int rc = sl_cluster_gen_cert(cert, key, days, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "gen-cert: %s\n", errs.items[i]);
    assert_int_equal(rc, SL_OK);
    assert_int_equal(errs.n, 0);
    sl_errors_dispose(&errs);
}

/* Runs a shell command (the openssl CLI), which must succeed. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    assert_int_equal(rc, 0);
}

static X509 *read_cert(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    EVP_PKEY *k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(k);
    return k;
}

static int64_t not_after(X509 *x)
{
    struct tm tm;
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm), 1);
    return (int64_t)timegm(&tm);
}

static int64_t not_before(X509 *x)
{
    struct tm tm;
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm), 1);
    return (int64_t)timegm(&tm);
}

/* ------------------------------------------------------------------------ */
/* A certificate factory                                                     */

struct ident {
    X509 *cert;
    EVP_PKEY *key;
};

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/*
 * Makes a P-256 key and a certificate for it: subject CN=cn, optional
 * subjectAltName (OpenSSL syntax: "DNS:a.test,IP:127.0.0.1"), a CA or a
 * leaf, valid from now+from to now+to seconds, signed by `issuer` (or by
 * itself when issuer is NULL).
 */
static struct ident make_ident(const char *cn, const char *san, bool ca, const struct ident *issuer,
                               long from, long to)
{
    static long serial = 1000;
    struct ident id;
    id.key = EVP_EC_gen("P-256");
    assert_non_null(id.key);
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), from);
    X509_gmtime_adj(X509_getm_notAfter(x), to);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x,
                         issuer ? X509_get_subject_name(issuer->cert) : X509_get_subject_name(x));
    X509_set_pubkey(x, id.key);
    X509 *signer = issuer ? issuer->cert : x;
    add_ext(x, signer, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(x, signer, NID_key_usage,
            ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    if (!ca)
        add_ext(x, signer, NID_ext_key_usage, "serverAuth,clientAuth");
    add_ext(x, signer, NID_subject_key_identifier, "hash");
    if (issuer)
        add_ext(x, signer, NID_authority_key_identifier, "keyid:always");
    if (san)
        add_ext(x, signer, NID_subject_alt_name, san);
    assert_true(X509_sign(x, issuer ? issuer->key : id.key, EVP_sha256()) > 0);
    id.cert = x;
    return id;
}

static struct ident make_ca(const char *cn)
{
    return make_ident(cn, NULL, true, NULL, -DAY, 365 * DAY);
}

static struct ident make_leaf(const char *cn, const char *san, const struct ident *ca)
{
    return make_ident(cn, san, false, ca, -DAY, 30 * DAY);
}

static void ident_free(struct ident *id)
{
    X509_free(id->cert);
    EVP_PKEY_free(id->key);
}

static char *cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    char *s = sl_xstrndup(p, (size_t)n);
    BIO_free(b);
    return s;
}

static char *key_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    char *s = sl_xstrndup(p, (size_t)n);
    BIO_free(b);
    return s;
}

/* Writes <name>.crt (the certificate, then `chain` if given) and <name>.key;
 * their paths go to cert/key (buffers of 256). */
static void save_ident(struct fx *f, const char *name, const struct ident *id, X509 *chain,
                       char *cert, char *key)
{
    snprintf(cert, 256, "%s/%s.crt", f->dir, name);
    snprintf(key, 256, "%s/%s.key", f->dir, name);
    char *c = cert_pem(id->cert), *k = key_pem(id->key);
    char *ch = chain ? cert_pem(chain) : sl_xstrdup("");
    char *both = sl_xasprintf("%s%s", c, ch);
    spit(cert, both);
    spit(key, k);
    free(c);
    free(k);
    free(ch);
    free(both);
}

static void save_cert(struct fx *f, const char *name, X509 *x, char *path)
{
    snprintf(path, 256, "%s/%s", f->dir, name);
    char *c = cert_pem(x);
    spit(path, c);
    free(c);
}

/* ------------------------------------------------------------------------ */
/* Handshakes over a socketpair                                              */

struct side {
    SSL *ssl;
    bool done, failed;
    char err[512];
};

struct conn {
    struct side c, s;
    bool established; /* both handshakes done and a message went each way */
    int64_t c_expiry, s_expiry;
    int version;
};

static void on_failure(struct side *x)
{
    x->failed = true;
    sl_cluster_tls_error(x->ssl, x->err, sizeof(x->err));
}

static void step_handshake(struct side *x)
{
    if (x->done || x->failed)
        return;
    ERR_clear_error();
    int r = SSL_do_handshake(x->ssl);
    if (r == 1) {
        x->done = true;
        return;
    }
    int e = SSL_get_error(x->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        on_failure(x);
}

/* Writes msg on `from` and reads it on `to`; false (with the failing side's
 * error recorded) if either fails. */
static bool send_one(struct side *from, struct side *to, const char *msg)
{
    size_t len = strlen(msg);
    ERR_clear_error();
    if (SSL_write(from->ssl, msg, (int)len) != (int)len) {
        on_failure(from);
        return false;
    }
    char buf[64];
    for (int i = 0; i < 100; i++) {
        ERR_clear_error();
        int r = SSL_read(to->ssl, buf, sizeof(buf));
        if (r > 0)
            return (size_t)r == len && memcmp(buf, msg, len) == 0;
        int e = SSL_get_error(to->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            on_failure(to);
            return false;
        }
    }
    return false;
}

/* Drives a handshake between a server SSL on sctx and the client SSL `cssl`
 * (taking ownership of it). After a finished handshake, a message each way
 * shows whether the server let the client in (TLS 1.3 tells a refused client
 * only on its first read). */
static struct conn run_conn(SSL_CTX *sctx, SSL *cssl)
{
    struct conn k;
    memset(&k, 0, sizeof(k));
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    k.s.ssl = SSL_new(sctx);
    k.c.ssl = cssl;
    assert_non_null(k.s.ssl);
    SSL_set_fd(k.s.ssl, fds[0]);
    SSL_set_fd(k.c.ssl, fds[1]);
    SSL_set_accept_state(k.s.ssl);
    SSL_set_connect_state(k.c.ssl);
    for (int i = 0; i < 200; i++) {
        step_handshake(&k.c);
        step_handshake(&k.s);
        if ((k.c.done || k.c.failed) && (k.s.done || k.s.failed))
            break;
    }
    /* In TLS 1.3 a client the server refused has finished its handshake;
     * the alert arrives on its first read. */
    if (k.c.done && k.s.failed) {
        char buf[16];
        for (int i = 0; i < 100 && !k.c.failed; i++) {
            ERR_clear_error();
            int r = SSL_read(k.c.ssl, buf, sizeof(buf));
            int e = SSL_get_error(k.c.ssl, r);
            if (r > 0 || (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE))
                on_failure(&k.c);
        }
    }
    if (k.c.done && k.s.done) {
        k.established = send_one(&k.c, &k.s, "hello") && send_one(&k.s, &k.c, "world");
        k.c_expiry = sl_cluster_tls_peer_expiry(k.c.ssl);
        k.s_expiry = sl_cluster_tls_peer_expiry(k.s.ssl);
        k.version = SSL_version(k.c.ssl);
    }
    if (!k.established && !k.c.failed && !k.s.failed)
        fprintf(stderr, "handshake neither finished nor failed\n");
    SSL_free(k.s.ssl);
    SSL_free(k.c.ssl);
    close(fds[0]);
    close(fds[1]);
    ERR_clear_error();
    return k;
}

static SSL_CTX *server_ctx(const sl_cluster_tls_opts_t *o)
{
    sl_errors_t errs;
    sl_errors_init(&errs);
    SSL_CTX *ctx = NULL;
    int rc = sl_cluster_tls_server_ctx(o, &ctx, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "server ctx: %s\n", errs.items[i]);
    assert_int_equal(rc, SL_OK);
    assert_non_null(ctx);
    sl_errors_dispose(&errs);
    return ctx;
}

static SSL_CTX *client_ctx(const sl_cluster_tls_opts_t *o)
{
    sl_errors_t errs;
    sl_errors_init(&errs);
    SSL_CTX *ctx = NULL;
    int rc = sl_cluster_tls_client_ctx(o, &ctx, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "client ctx: %s\n", errs.items[i]);
    assert_int_equal(rc, SL_OK);
    assert_non_null(ctx);
    sl_errors_dispose(&errs);
    return ctx;
}

/* A handshake between a server built from so and a client built from co. */
static struct conn connect_opts(const sl_cluster_tls_opts_t *so, const sl_cluster_tls_opts_t *co)
{
    SSL_CTX *sctx = server_ctx(so), *cctx = client_ctx(co);
    SSL *cssl = NULL;
    assert_int_equal(sl_cluster_tls_client_ssl(cctx, co, &cssl), SL_OK);
    struct conn k = run_conn(sctx, cssl);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    return k;
}

/* A client that is not ours: it trusts any server, presents cert/key if
 * given (else no certificate), and speaks at most `max_version`. */
static SSL *raw_client(const char *cert, const char *key, int max_version, SSL_CTX **ctx_out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (max_version)
        SSL_CTX_set_max_proto_version(ctx, max_version);
    if (cert) {
        assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    }
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    *ctx_out = ctx;
    return ssl;
}

static struct conn connect_raw(const sl_cluster_tls_opts_t *so, const char *cert, const char *key,
                               int max_version)
{
    SSL_CTX *sctx = server_ctx(so), *rctx = NULL;
    SSL *cssl = raw_client(cert, key, max_version, &rctx);
    struct conn k = run_conn(sctx, cssl);
    SSL_CTX_free(sctx);
    SSL_CTX_free(rctx);
    return k;
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) {
        fprintf(stderr, "expected \"%s\" in \"%s\"\n", needle, hay);
        fail();
    }
}

static sl_cluster_tls_opts_t shared_opts(const char *cert, const char *key)
{
    return (sl_cluster_tls_opts_t){.mode = SL_MTLS_SHARED, .cert = cert, .key = key};
}

static sl_cluster_tls_opts_t pki_opts(const char *cert, const char *key, const char *ca,
                                      const char *server_name, const char *allowed)
{
    return (sl_cluster_tls_opts_t){.mode = SL_MTLS_PKI,
                                   .cert = cert,
                                   .key = key,
                                   .ca_cert = ca,
                                   .server_name = server_name,
                                   .allowed_names = allowed};
}

/* Building a context from `o` fails, and one of the messages contains each
 * of the NULL-terminated needles. */
static void expect_ctx_errors(const sl_cluster_tls_opts_t *o, bool server, ...)
{
    sl_errors_t errs;
    sl_errors_init(&errs);
    SSL_CTX *ctx = NULL;
    int rc = server ? sl_cluster_tls_server_ctx(o, &ctx, &errs)
                    : sl_cluster_tls_client_ctx(o, &ctx, &errs);
    assert_int_equal(rc, SL_ERR_INVALID);
    assert_null(ctx);
    assert_true(errs.n > 0);
    va_list ap;
    va_start(ap, server);
    for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;) {
        bool found = false;
        for (size_t i = 0; i < errs.n; i++)
            found = found || strstr(errs.items[i], needle) != NULL;
        if (!found) {
            fprintf(stderr, "expected an error containing \"%s\"; got:\n", needle);
            for (size_t i = 0; i < errs.n; i++)
                fprintf(stderr, "  %s\n", errs.items[i]);
            fail();
        }
    }
    va_end(ap);
    sl_errors_dispose(&errs);
}

/* ------------------------------------------------------------------------ */
/* gen-cert                                                                  */

static void test_mtls_parse(void **state)
{
    (void)state;
    sl_cluster_mtls_t m = SL_MTLS_PKI;
    assert_int_equal(sl_cluster_mtls_parse("shared", &m), SL_OK);
    assert_int_equal(m, SL_MTLS_SHARED);
    assert_int_equal(sl_cluster_mtls_parse("pki", &m), SL_OK);
    assert_int_equal(m, SL_MTLS_PKI);
    assert_int_equal(sl_cluster_mtls_parse("pki_check_cn", &m), SL_ERR_INVALID);
    assert_int_equal(sl_cluster_mtls_parse("", &m), SL_ERR_INVALID);
    assert_int_equal(sl_cluster_mtls_parse("Shared", &m), SL_ERR_INVALID);
    assert_int_equal(sl_cluster_mtls_parse(NULL, &m), SL_ERR_INVALID);
    assert_int_equal(m, SL_MTLS_PKI);
}

static void test_gen_cert_files(void **state)
{
    struct fx *f = *state;
    const char *cert = path_in(f, "cluster.crt"), *key = path_in(f, "cluster.key");
    /* The modes are exact whatever the umask. */
    mode_t old = umask(077);
    int64_t before = (int64_t)time(NULL);
    gen_cert(cert, key, 30);
    int64_t after = (int64_t)time(NULL);
    umask(old);

    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(cert, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);

    EVP_PKEY *k = read_key(key);
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    char group[64] = "";
    assert_int_equal(EVP_PKEY_get_group_name(k, group, sizeof(group), NULL), 1);
    assert_string_equal(group, "secp384r1");
    assert_int_equal(EVP_PKEY_get_bits(k), 384);

    X509 *x = read_cert(cert);
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    char cn[64] = "";
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "kong_clustering");
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    assert_int_equal(X509_verify(x, k), 1);
    assert_true(not_before(x) >= before - 1 && not_before(x) <= after);
    assert_true(not_after(x) >= before + 30 * DAY - 1 && not_after(x) <= after + 30 * DAY);
    /* A random 128-bit serial: fewer than 64 bits happens once in 2^64. */
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    assert_true(BN_num_bits(serial) > 64 && BN_num_bits(serial) <= 128);
    assert_false(BN_is_negative(serial));

    /* A second run makes a different serial and key. */
    gen_cert(path_in(f, "b.crt"), path_in(f, "b.key"), 1);
    X509 *y = read_cert(path_in(f, "b.crt"));
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(y)), 0);
    assert_int_not_equal(X509_check_private_key(y, k), 1);
    ERR_clear_error();

    BN_free(serial);
    X509_free(x);
    X509_free(y);
    EVP_PKEY_free(k);
}

static void test_gen_cert_longest(void **state)
{
    struct fx *f = *state;
    const char *cert = path_in(f, "c.crt");
    gen_cert(cert, path_in(f, "c.key"), 36500);
    X509 *x = read_cert(cert);
    int64_t want = (int64_t)time(NULL) + 36500LL * DAY;
    assert_true(not_after(x) > want - 60 && not_after(x) <= want);
    X509_free(x);
}

static void expect_gen_error(const char *cert, const char *key, int days, const char *needle)
{
    sl_errors_t errs;
    sl_errors_init(&errs);
    assert_int_equal(sl_cluster_gen_cert(cert, key, days, &errs), SL_ERR_INVALID);
    assert_true(errs.n > 0);
    bool found = false;
    for (size_t i = 0; i < errs.n; i++)
        found = found || strstr(errs.items[i], needle) != NULL;
    if (!found) {
        fprintf(stderr, "expected a gen-cert error containing \"%s\"; got:\n", needle);
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "  %s\n", errs.items[i]);
        fail();
    }
    sl_errors_dispose(&errs);
}

static void test_gen_cert_refuses(void **state)
{
    struct fx *f = *state;
    char cert[256], key[256], msg[512];
    snprintf(cert, sizeof(cert), "%s", path_in(f, "x.crt"));
    snprintf(key, sizeof(key), "%s", path_in(f, "x.key"));

    /* An existing certificate: untouched, and no key is written. */
    spit(cert, "mine\n");
    snprintf(msg, sizeof(msg), "%s: already exists; remove it or choose another path", cert);
    expect_gen_error(cert, key, 30, msg);
    char *text = slurp(cert);
    assert_string_equal(text, "mine\n");
    free(text);
    assert_int_not_equal(access(key, F_OK), 0);

    /* An existing key: untouched, and no certificate is written. */
    unlink(cert);
    spit(key, "secret\n");
    snprintf(msg, sizeof(msg), "%s: already exists; remove it or choose another path", key);
    expect_gen_error(cert, key, 30, msg);
    text = slurp(key);
    assert_string_equal(text, "secret\n");
    free(text);
    assert_int_not_equal(access(cert, F_OK), 0);
    unlink(key);

    /* A dangling symlink is in the way too: we never write through one. */
    assert_int_equal(symlink(path_in(f, "elsewhere"), cert), 0);
    expect_gen_error(cert, key, 30, "already exists");
    assert_int_not_equal(access(path_in(f, "elsewhere"), F_OK), 0);
    unlink(cert);

    /* Bad days, same paths, a missing directory: nothing is left behind. */
    expect_gen_error(cert, key, 0, "days: 0 is out of range (use 1 to 36500)");
    expect_gen_error(cert, key, 36501, "days: 36501 is out of range (use 1 to 36500)");
    expect_gen_error(cert, key, -5, "out of range");
    expect_gen_error(cert, cert, 30, "need different paths");
    expect_gen_error(cert, "", 30, "must not be empty");
    expect_gen_error(path_in(f, "no/such/dir.crt"), key, 30, "cannot create it");
    assert_int_not_equal(access(cert, F_OK), 0);
    assert_int_not_equal(access(key, F_OK), 0);
}

/* ------------------------------------------------------------------------ */
/* Shared mode                                                               */

static void test_shared_same_cert(void **state)
{
    struct fx *f = *state;
    const char *cert = path_in(f, "cluster.crt"), *key = path_in(f, "cluster.key");
    gen_cert(cert, key, 90);
    sl_cluster_tls_opts_t o = shared_opts(cert, key);
    struct conn k = connect_opts(&o, &o);
    assert_true(k.established);
    assert_int_equal(k.version, TLS1_3_VERSION);

    X509 *x = read_cert(cert);
    assert_int_equal(k.c_expiry, not_after(x));
    assert_int_equal(k.s_expiry, not_after(x));
    int64_t want = (int64_t)time(NULL) + 90LL * DAY;
    assert_true(k.c_expiry > want - 60 && k.c_expiry <= want);
    X509_free(x);

    /* ca_cert and server_name mean nothing in shared mode. */
    o.ca_cert = "/nonexistent/ca.crt";
    o.server_name = "cp.example.test";
    k = connect_opts(&o, &o);
    assert_true(k.established);
}

static void test_shared_sends_kong_clustering(void **state)
{
    struct fx *f = *state;
    const char *cert = path_in(f, "cluster.crt"), *key = path_in(f, "cluster.key");
    gen_cert(cert, key, 30);
    sl_cluster_tls_opts_t o = shared_opts(cert, key);
    o.server_name = "ignored.example.test";
    SSL_CTX *cctx = client_ctx(&o);
    SSL *ssl = NULL;
    assert_int_equal(sl_cluster_tls_client_ssl(cctx, &o, &ssl), SL_OK);
    assert_string_equal(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), "kong_clustering");
    SSL_free(ssl);
    SSL_CTX_free(cctx);
}

static void test_shared_other_cert_refused(void **state)
{
    struct fx *f = *state;
    char cert[256], key[256], other[256], okey[256], rsa[256], rkey[256];
    snprintf(cert, sizeof(cert), "%s", path_in(f, "cluster.crt"));
    snprintf(key, sizeof(key), "%s", path_in(f, "cluster.key"));
    snprintf(other, sizeof(other), "%s", path_in(f, "other.crt"));
    snprintf(okey, sizeof(okey), "%s", path_in(f, "other.key"));
    snprintf(rsa, sizeof(rsa), "%s", path_in(f, "rsa.crt"));
    snprintf(rkey, sizeof(rkey), "%s", path_in(f, "rsa.key"));
    gen_cert(cert, key, 30);
    gen_cert(other, okey, 30);
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' -days 30 "
       "-subj /CN=kong_clustering 2>/dev/null",
       rkey, rsa);
    sl_cluster_tls_opts_t so = shared_opts(cert, key);

    /* Our client with another gen-cert pair refuses the server first. */
    sl_cluster_tls_opts_t co = shared_opts(other, okey);
    struct conn k = connect_opts(&so, &co);
    assert_false(k.established);
    assert_true(k.c.failed);
    assert_string_equal(k.c.err, "certificate does not match cluster_cert (shared mode)");
    assert_true(k.s.failed);

    /* So does one holding an RSA certificate from `openssl req`. */
    co = shared_opts(rsa, rkey);
    k = connect_opts(&so, &co);
    assert_false(k.established);
    assert_string_equal(k.c.err, "certificate does not match cluster_cert (shared mode)");

    /* A client that trusts anyone is refused by the server's pin. */
    const char *certs[][2] = {{other, okey}, {rsa, rkey}};
    for (size_t i = 0; i < 2; i++) {
        k = connect_raw(&so, certs[i][0], certs[i][1], 0);
        assert_false(k.established);
        assert_true(k.s.failed);
        assert_string_equal(k.s.err, "certificate does not match cluster_cert (shared mode)");
    }

    /* Same subject, same CN, different key: still not our certificate. And
     * a certificate signed by our own key but not byte-identical is not
     * either: the pin is the whole certificate. */
    EVP_PKEY *k0 = read_key(key);
    struct ident twin = make_ident("kong_clustering", NULL, false, NULL, -DAY, DAY);
    X509_set_pubkey(twin.cert, k0);
    assert_true(X509_sign(twin.cert, k0, EVP_sha256()) > 0);
    EVP_PKEY_free(twin.key);
    twin.key = k0;
    char tc[256], tk[256];
    save_ident(f, "twin", &twin, NULL, tc, tk);
    k = connect_raw(&so, tc, tk, 0);
    assert_false(k.established);
    assert_string_equal(k.s.err, "certificate does not match cluster_cert (shared mode)");
    ident_free(&twin);
}

static void test_shared_no_client_cert_refused(void **state)
{
    struct fx *f = *state;
    const char *cert = path_in(f, "cluster.crt"), *key = path_in(f, "cluster.key");
    gen_cert(cert, key, 30);
    sl_cluster_tls_opts_t so = shared_opts(cert, key);
    struct conn k = connect_raw(&so, NULL, NULL, 0);
    assert_false(k.established);
    assert_true(k.s.failed);
    assert_contains(k.s.err, "peer did not return a certificate");
    /* TLS 1.3: the client hears of it on its first read. */
    assert_true(k.c.failed);
    assert_contains(k.c.err, "certificate required");
}

static void test_tls12_refused(void **state)
{
    struct fx *f = *state;
    const char *cert = path_in(f, "cluster.crt"), *key = path_in(f, "cluster.key");
    gen_cert(cert, key, 30);
    sl_cluster_tls_opts_t so = shared_opts(cert, key);
    struct conn k = connect_raw(&so, cert, key, TLS1_2_VERSION);
    assert_false(k.established);
    assert_true(k.s.failed);
    assert_contains(k.s.err, "unsupported protocol");
}

static void test_shared_openssl_req_cert(void **state)
{
    struct fx *f = *state;
    char rsa[256], rkey[256], ec[256], ekey[256];
    snprintf(rsa, sizeof(rsa), "%s", path_in(f, "rsa.crt"));
    snprintf(rkey, sizeof(rkey), "%s", path_in(f, "rsa.key"));
    snprintf(ec, sizeof(ec), "%s", path_in(f, "ec.crt"));
    snprintf(ekey, sizeof(ekey), "%s", path_in(f, "ec.key"));
    /* The openssl defaults (v3_ca: CA:TRUE) and a bare EC certificate. */
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' -days 30 "
       "-subj /CN=kong_clustering 2>/dev/null",
       rkey, rsa);
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout '%s' "
       "-out '%s' -days 10 -subj /O=Example/CN=cluster.example.test 2>/dev/null",
       ekey, ec);
    sl_cluster_tls_opts_t o = shared_opts(rsa, rkey);
    struct conn k = connect_opts(&o, &o);
    assert_true(k.established);
    X509 *x = read_cert(rsa);
    assert_int_equal(k.c_expiry, not_after(x));
    assert_int_equal(k.s_expiry, not_after(x));
    X509_free(x);

    o = shared_opts(ec, ekey);
    k = connect_opts(&o, &o);
    assert_true(k.established);
}

static void test_shared_pinned_chain(void **state)
{
    struct fx *f = *state;
    /* A CA-issued certificate in shared mode: nobody knows the CA, the pin
     * alone decides, with or without the chain sent along. */
    struct ident ca = make_ca("Pinned CA");
    struct ident leaf = make_leaf("node", "DNS:node.example.test", &ca);
    char cert[256], key[256], chain[256], ckey[256];
    save_ident(f, "leaf", &leaf, NULL, cert, key);
    save_ident(f, "chain", &leaf, ca.cert, chain, ckey);
    sl_cluster_tls_opts_t o = shared_opts(cert, key), oc = shared_opts(chain, ckey);
    assert_true(connect_opts(&o, &o).established);
    assert_true(connect_opts(&oc, &oc).established);
    assert_true(connect_opts(&o, &oc).established);
    ident_free(&leaf);
    ident_free(&ca);
}

static void test_shared_expired_refused(void **state)
{
    struct fx *f = *state;
    /* Pinning forgives a missing trust anchor, not a lapsed certificate. */
    struct ident old = make_ident("kong_clustering", NULL, false, NULL, -10 * DAY, -DAY);
    char cert[256], key[256];
    save_ident(f, "old", &old, NULL, cert, key);
    sl_cluster_tls_opts_t o = shared_opts(cert, key);
    struct conn k = connect_opts(&o, &o);
    assert_false(k.established);
    assert_true(k.c.failed);
    assert_string_equal(k.c.err, "certificate verify failed: certificate has expired");

    struct ident early = make_ident("kong_clustering", NULL, false, NULL, DAY, 10 * DAY);
    save_ident(f, "early", &early, NULL, cert, key);
    o = shared_opts(cert, key);
    k = connect_raw(&o, cert, key, 0);
    assert_false(k.established);
    assert_string_equal(k.s.err, "certificate verify failed: certificate is not yet valid");
    ident_free(&old);
    ident_free(&early);
}

/* ------------------------------------------------------------------------ */
/* PKI mode                                                                  */

struct pki {
    struct ident ca, other_ca, cp, dp, dp_san, cp_cn_only, cp_ip, dp_other, cp_other;
    char ca_path[256], other_ca_path[256];
    char cp_cert[256], cp_key[256], dp_cert[256], dp_key[256];
    char dp_san_cert[256], dp_san_key[256], cp_cn_cert[256], cp_cn_key[256];
    char cp_ip_cert[256], cp_ip_key[256], dpo_cert[256], dpo_key[256], cpo_cert[256], cpo_key[256];
};

static struct pki *make_pki(struct fx *f)
{
    struct pki *p = calloc(1, sizeof(*p));
    p->ca = make_ca("Sluice Test CA");
    p->other_ca = make_ca("Other CA");
    p->cp = make_leaf("cp.example.test", "DNS:cp.example.test,DNS:cp2.example.test", &p->ca);
    p->dp = make_leaf("dp1.example.test", "DNS:dp1.example.test", &p->ca);
    p->dp_san = make_leaf("data plane seven", "DNS:dp7.example.test", &p->ca);
    p->cp_cn_only = make_leaf("cn.example.test", NULL, &p->ca);
    p->cp_ip = make_leaf("ip", "IP:127.0.0.1", &p->ca);
    p->dp_other = make_leaf("dp1.example.test", "DNS:dp1.example.test", &p->other_ca);
    p->cp_other = make_leaf("cp.example.test", "DNS:cp.example.test", &p->other_ca);
    save_cert(f, "ca.crt", p->ca.cert, p->ca_path);
    save_cert(f, "other_ca.crt", p->other_ca.cert, p->other_ca_path);
    save_ident(f, "cp", &p->cp, NULL, p->cp_cert, p->cp_key);
    save_ident(f, "dp", &p->dp, NULL, p->dp_cert, p->dp_key);
    save_ident(f, "dp_san", &p->dp_san, NULL, p->dp_san_cert, p->dp_san_key);
    save_ident(f, "cp_cn", &p->cp_cn_only, NULL, p->cp_cn_cert, p->cp_cn_key);
    save_ident(f, "cp_ip", &p->cp_ip, NULL, p->cp_ip_cert, p->cp_ip_key);
    save_ident(f, "dp_other", &p->dp_other, NULL, p->dpo_cert, p->dpo_key);
    save_ident(f, "cp_other", &p->cp_other, NULL, p->cpo_cert, p->cpo_key);
    return p;
}

static void free_pki(struct pki *p)
{
    struct ident *all[] = {&p->ca,         &p->other_ca, &p->cp,       &p->dp,      &p->dp_san,
                           &p->cp_cn_only, &p->cp_ip,    &p->dp_other, &p->cp_other};
    for (size_t i = 0; i < SL_ARRAY_LEN(all); i++)
        ident_free(all[i]);
    free(p);
}

static void test_pki_ok(void **state)
{
    struct pki *p = make_pki(*state);
    sl_cluster_tls_opts_t so = pki_opts(p->cp_cert, p->cp_key, p->ca_path, NULL, NULL);
    sl_cluster_tls_opts_t co = pki_opts(p->dp_cert, p->dp_key, p->ca_path, "cp.example.test", NULL);
    struct conn k = connect_opts(&so, &co);
    assert_true(k.established);
    assert_int_equal(k.version, TLS1_3_VERSION);
    assert_int_equal(k.c_expiry, not_after(p->cp.cert));
    assert_int_equal(k.s_expiry, not_after(p->dp.cert));

    /* Any DNS SAN will do; host names compare case-insensitively. */
    co.server_name = "CP2.Example.Test";
    assert_true(connect_opts(&so, &co).established);

    /* Without DNS SANs, the CN names the server. */
    so = pki_opts(p->cp_cn_cert, p->cp_cn_key, p->ca_path, NULL, NULL);
    co.server_name = "cn.example.test";
    assert_true(connect_opts(&so, &co).established);

    /* An IP address is matched against IP SANs. */
    so = pki_opts(p->cp_ip_cert, p->cp_ip_key, p->ca_path, NULL, NULL);
    co.server_name = "127.0.0.1";
    assert_true(connect_opts(&so, &co).established);
    co.server_name = "127.0.0.2";
    k = connect_opts(&so, &co);
    assert_false(k.established);
    assert_string_equal(k.c.err, "certificate verify failed: IP address mismatch");
    free_pki(p);
}

static void test_pki_sni(void **state)
{
    struct pki *p = make_pki(*state);
    sl_cluster_tls_opts_t co = pki_opts(p->dp_cert, p->dp_key, p->ca_path, "cp.example.test", NULL);
    SSL_CTX *cctx = client_ctx(&co);
    SSL *ssl = NULL;
    assert_int_equal(sl_cluster_tls_client_ssl(cctx, &co, &ssl), SL_OK);
    assert_string_equal(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), "cp.example.test");
    SSL_free(ssl);

    /* No SNI for an address (RFC 6066 3). */
    co.server_name = "127.0.0.1";
    ssl = NULL;
    assert_int_equal(sl_cluster_tls_client_ssl(cctx, &co, &ssl), SL_OK);
    assert_null(SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    SSL_free(ssl);

    /* pki without a name to check is refused rather than unchecked. */
    co.server_name = NULL;
    ssl = NULL;
    assert_int_equal(sl_cluster_tls_client_ssl(cctx, &co, &ssl), SL_ERR_INVALID);
    assert_null(ssl);
    co.server_name = "";
    assert_int_equal(sl_cluster_tls_client_ssl(cctx, &co, &ssl), SL_ERR_INVALID);
    assert_null(ssl);
    SSL_CTX_free(cctx);
    free_pki(p);
}

static void test_pki_client_from_other_ca(void **state)
{
    struct pki *p = make_pki(*state);
    sl_cluster_tls_opts_t so = pki_opts(p->cp_cert, p->cp_key, p->ca_path, NULL, NULL);
    /* The client trusts our CA but holds a certificate of another. */
    sl_cluster_tls_opts_t co =
        pki_opts(p->dpo_cert, p->dpo_key, p->ca_path, "cp.example.test", NULL);
    struct conn k = connect_opts(&so, &co);
    assert_false(k.established);
    assert_true(k.s.failed);
    assert_string_equal(k.s.err,
                        "certificate verify failed: unable to get local issuer certificate");
    assert_true(k.c.failed); /* told by an alert on its first read */

    /* A client that also trusts the other CA sends it along (OpenSSL
     * completes the chain from the store); a root we do not know. */
    char both[256];
    snprintf(both, sizeof(both), "%s/both-cas.crt", ((struct fx *)*state)->dir);
    char *a = slurp(p->ca_path), *b = slurp(p->other_ca_path);
    char *ab = sl_xasprintf("%s%s", a, b);
    spit(both, ab);
    free(a);
    free(b);
    free(ab);
    co.ca_cert = both;
    k = connect_opts(&so, &co);
    assert_false(k.established);
    assert_string_equal(k.s.err,
                        "certificate verify failed: self-signed certificate in certificate chain");

    /* A self-signed client certificate (gen-cert's) fares no better. */
    const char *gc = path_in(*state, "gen.crt"), *gk = path_in(*state, "gen.key");
    gen_cert(gc, gk, 30);
    k = connect_raw(&so, gc, gk, 0);
    assert_false(k.established);
    assert_contains(k.s.err, "certificate verify failed: ");
    /* Nor does no certificate at all. */
    k = connect_raw(&so, NULL, NULL, 0);
    assert_false(k.established);
    assert_contains(k.s.err, "peer did not return a certificate");
    free_pki(p);
}

static void test_pki_server_refused_by_client(void **state)
{
    struct pki *p = make_pki(*state);
    sl_cluster_tls_opts_t co = pki_opts(p->dp_cert, p->dp_key, p->ca_path, "cp.example.test", NULL);

    /* The name the data plane asked for is not in the certificate. */
    sl_cluster_tls_opts_t so = pki_opts(p->cp_cert, p->cp_key, p->ca_path, NULL, NULL);
    co.server_name = "other.example.test";
    struct conn k = connect_opts(&so, &co);
    assert_false(k.established);
    assert_true(k.c.failed);
    assert_string_equal(k.c.err, "certificate verify failed: hostname mismatch");
    /* No partial-label wildcards or suffix matches either. */
    co.server_name = "example.test";
    assert_false(connect_opts(&so, &co).established);

    /* A server whose certificate another CA signed. */
    so = pki_opts(p->cpo_cert, p->cpo_key, p->ca_path, NULL, NULL);
    co.server_name = "cp.example.test";
    k = connect_opts(&so, &co);
    assert_false(k.established);
    assert_true(k.c.failed);
    assert_string_equal(k.c.err,
                        "certificate verify failed: unable to get local issuer certificate");
    /* ... sending its own root along. */
    so.ca_cert = p->other_ca_path;
    k = connect_opts(&so, &co);
    assert_false(k.established);
    assert_string_equal(k.c.err,
                        "certificate verify failed: self-signed certificate in certificate chain");
    free_pki(p);
}

static void test_pki_allowed_names(void **state)
{
    struct pki *p = make_pki(*state);
    sl_cluster_tls_opts_t co = pki_opts(p->dp_cert, p->dp_key, p->ca_path, "cp.example.test", NULL);
    sl_cluster_tls_opts_t so =
        pki_opts(p->cp_cert, p->cp_key, p->ca_path, NULL, " dp2.example.test ,dp1.example.test,, ");
    assert_true(connect_opts(&so, &co).established);
    so.allowed_names = "DP1.example.TEST";
    assert_true(connect_opts(&so, &co).established);
    so.allowed_names = ""; /* unset: any certificate the CA signed */
    assert_true(connect_opts(&so, &co).established);

    so.allowed_names = "dp2.example.test,dp1.example";
    struct conn k = connect_opts(&so, &co);
    assert_false(k.established);
    assert_true(k.s.failed);
    assert_string_equal(k.s.err, "certificate name not in cluster_allowed_common_names");
    assert_true(k.c.failed); /* told by an alert on its first read */

    /* A DNS SAN counts as much as the CN. */
    sl_cluster_tls_opts_t co7 =
        pki_opts(p->dp_san_cert, p->dp_san_key, p->ca_path, "cp.example.test", NULL);
    so.allowed_names = "dp7.example.test";
    assert_true(connect_opts(&so, &co7).established);
    so.allowed_names = "data plane seven";
    assert_true(connect_opts(&so, &co7).established);
    so.allowed_names = "dp1.example.test";
    k = connect_opts(&so, &co7);
    assert_false(k.established);
    assert_string_equal(k.s.err, "certificate name not in cluster_allowed_common_names");

    /* The client ignores allowed_names: it is the server's list. */
    co.allowed_names = "nobody";
    so.allowed_names = NULL;
    assert_true(connect_opts(&so, &co).established);
    free_pki(p);
}

static void test_pki_chain_and_depth(void **state)
{
    struct fx *f = *state;
    struct ident root = make_ca("Root");
    /* root -> i1 -> ... -> i5 -> leaf: five intermediates is one too many
     * for depth 4; leaves under i1 and i4 are fine. */
    struct ident im[5];
    for (int i = 0; i < 5; i++) {
        char cn[16];
        snprintf(cn, sizeof(cn), "I%d", i + 1);
        im[i] = make_ident(cn, NULL, true, i ? &im[i - 1] : &root, -DAY, 365 * DAY);
    }
    char ca[256], cp_cert[256], cp_key[256];
    save_cert(f, "root.crt", root.cert, ca);
    struct ident cp = make_leaf("cp.example.test", "DNS:cp.example.test", &root);
    save_ident(f, "cp", &cp, NULL, cp_cert, cp_key);
    sl_cluster_tls_opts_t so = pki_opts(cp_cert, cp_key, ca, NULL, "dp.example.test");

    struct {
        int under; /* index of the issuing intermediate */
        bool ok;
    } cases[] = {{0, true}, {3, true}, {4, false}};
    for (size_t c = 0; c < SL_ARRAY_LEN(cases); c++) {
        struct ident dp = make_leaf("dp.example.test", NULL, &im[cases[c].under]);
        /* the leaf, then its intermediates bottom-up */
        char cert[256], key[256];
        snprintf(cert, sizeof(cert), "%s/dp%zu.crt", f->dir, c);
        snprintf(key, sizeof(key), "%s/dp%zu.key", f->dir, c);
        char *text = cert_pem(dp.cert);
        for (int i = cases[c].under; i >= 0; i--) {
            char *one = cert_pem(im[i].cert), *more = sl_xasprintf("%s%s", text, one);
            free(one);
            free(text);
            text = more;
        }
        spit(cert, text);
        free(text);
        char *k = key_pem(dp.key);
        spit(key, k);
        free(k);
        sl_cluster_tls_opts_t co = pki_opts(cert, key, ca, "cp.example.test", NULL);
        struct conn r = connect_opts(&so, &co);
        if (r.established != cases[c].ok)
            fprintf(stderr, "chain case %zu: server said \"%s\"\n", c, r.s.err);
        assert_int_equal(r.established, cases[c].ok);
        if (!cases[c].ok)
            assert_string_equal(r.s.err, "certificate verify failed: certificate chain too long");
        ident_free(&dp);
    }
    for (int i = 0; i < 5; i++)
        ident_free(&im[i]);
    ident_free(&cp);
    ident_free(&root);
}

/* ------------------------------------------------------------------------ */
/* Values and errors                                                         */

static void test_inline_pem(void **state)
{
    struct fx *f = *state;
    const char *cert = path_in(f, "cluster.crt"), *key = path_in(f, "cluster.key");
    gen_cert(cert, key, 30);
    char *c = slurp(cert), *k = slurp(key);
    /* Inline on one side, a path on the other; leading blank lines are fine. */
    char *kk = sl_xasprintf("\n  %s", k);
    sl_cluster_tls_opts_t so = shared_opts(c, kk), co = shared_opts(cert, key);
    assert_true(connect_opts(&so, &co).established);
    free(c);
    free(k);
    free(kk);

    struct pki *p = make_pki(f);
    char *ca = slurp(p->ca_path), *cpc = slurp(p->cp_cert), *cpk = slurp(p->cp_key);
    char *dpc = slurp(p->dp_cert), *dpk = slurp(p->dp_key);
    so = pki_opts(cpc, cpk, ca, NULL, "dp1.example.test");
    co = pki_opts(dpc, dpk, ca, "cp.example.test", NULL);
    assert_true(connect_opts(&so, &co).established);
    /* A CA bundle holding several certificates. */
    char *other = slurp(p->other_ca_path), *bundle = sl_xasprintf("%s%s", other, ca);
    so.ca_cert = bundle;
    assert_true(connect_opts(&so, &co).established);
    free(other);
    free(bundle);
    free(ca);
    free(cpc);
    free(cpk);
    free(dpc);
    free(dpk);
    free_pki(p);
}

static void test_config_errors(void **state)
{
    struct fx *f = *state;
    const char *cert = path_in(f, "cluster.crt"), *key = path_in(f, "cluster.key");
    gen_cert(cert, key, 30);
    char missing[256], msg[512];
    snprintf(missing, sizeof(missing), "%s/nope.crt", f->dir);

    /* Missing files, both reported at once. */
    sl_cluster_tls_opts_t o = shared_opts(missing, path_in(f, "nope.key"));
    snprintf(msg, sizeof(msg), "cluster_cert: cannot read '%s' (No such file or directory)",
             missing);
    expect_ctx_errors(&o, true, msg, "cluster_cert_key: cannot read '", NULL);
    expect_ctx_errors(&o, false, msg, NULL);

    /* Nothing set at all. */
    o = shared_opts(NULL, "");
    expect_ctx_errors(&o, true, "cluster_cert: required", "cluster_cert_key: required", NULL);

    /* A key of another certificate: EC/EC and RSA/EC. */
    const char *okey = path_in(f, "other.key");
    gen_cert(path_in(f, "other.crt"), okey, 30);
    o = shared_opts(cert, okey);
    expect_ctx_errors(&o, true, "cluster_cert_key: does not match cluster_cert", NULL);
    expect_ctx_errors(&o, false, "cluster_cert_key: does not match cluster_cert", NULL);
    const char *rkey = path_in(f, "rsa.key");
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '%s' 2>/dev/null", rkey);
    o = shared_opts(cert, rkey);
    expect_ctx_errors(&o, true, "cluster_cert_key: does not match cluster_cert", NULL);

    /* Swapped: the key where the certificate goes. */
    o = shared_opts(key, cert);
    snprintf(msg, sizeof(msg), "cluster_cert: '%s' holds no PEM certificate", key);
    expect_ctx_errors(&o, true, msg, "cluster_cert_key: ", NULL);

    /* pki without a CA; a CA that is not PEM; an empty allow-list. */
    o = pki_opts(cert, key, NULL, "cp.example.test", NULL);
    expect_ctx_errors(&o, true, "cluster_ca_cert: required when cluster_mtls = pki", NULL);
    expect_ctx_errors(&o, false, "cluster_ca_cert: required when cluster_mtls = pki", NULL);
    o.ca_cert = "";
    expect_ctx_errors(&o, false, "cluster_ca_cert: required when cluster_mtls = pki", NULL);
    o.ca_cert = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
    expect_ctx_errors(&o, true, "cluster_ca_cert: the inline PEM holds no PEM certificate", NULL);
    o.ca_cert = cert;
    o.allowed_names = " , ,";
    expect_ctx_errors(&o, true, "cluster_allowed_common_names: ' , ,' lists no names", NULL);

    /* Inline text that is not a key; a directory; an empty file. */
    o = shared_opts(cert, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    expect_ctx_errors(&o, true, "cluster_cert_key: the inline PEM holds no PEM private key", NULL);
    o = shared_opts(f->dir, key);
    snprintf(msg, sizeof(msg), "cluster_cert: cannot read '%s' (Is a directory)", f->dir);
    expect_ctx_errors(&o, true, msg, NULL);
    const char *empty = path_in(f, "empty.crt");
    spit(empty, "");
    o = shared_opts(empty, key);
    expect_ctx_errors(&o, true, "holds no PEM certificate (no BEGIN CERTIFICATE line)", NULL);

    /* A bad second certificate in the chain. */
    char *c = slurp(cert);
    char *bad = sl_xasprintf("%s-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", c);
    o = shared_opts(bad, key);
    expect_ctx_errors(&o, true, "cluster_cert: certificate 2 of the inline PEM is not valid PEM",
                      NULL);
    free(bad);
    free(c);

    /* An encrypted key: an error, never a pass-phrase prompt. */
    const char *enc = path_in(f, "enc.key");
    sh("openssl pkey -in '%s' -out '%s' -aes256 -passout pass:secret 2>/dev/null", key, enc);
    o = shared_opts(cert, enc);
    snprintf(msg, sizeof(msg), "cluster_cert_key: '%s' is encrypted", enc);
    expect_ctx_errors(&o, true, msg, NULL);

    /* sl_cluster_tls_client_ssl wants a context built here. */
    SSL_CTX *foreign = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    o = shared_opts(cert, key);
    assert_int_equal(sl_cluster_tls_client_ssl(foreign, &o, &ssl), SL_ERR_INVALID);
    assert_null(ssl);
    SSL_CTX_free(foreign);
}

static void test_error_text(void **state)
{
    (void)state;
    char buf[128];
    /* No SSL, nothing queued. */
    ERR_clear_error();
    sl_cluster_tls_error(NULL, buf, sizeof(buf));
    assert_string_equal(buf, "no certificate");
    /* Truncated, still terminated. */
    char small[8];
    sl_cluster_tls_error(NULL, small, sizeof(small));
    assert_string_equal(small, "no cert");
    /* No peer, no expiry. */
    assert_int_equal(sl_cluster_tls_peer_expiry(NULL), 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    assert_int_equal(sl_cluster_tls_peer_expiry(ssl), 0);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mtls_parse),
        cmocka_unit_test_setup_teardown(test_gen_cert_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gen_cert_longest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gen_cert_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_same_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_sends_kong_clustering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_other_cert_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_no_client_cert_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls12_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_openssl_req_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_pinned_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_expired_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_sni, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_client_from_other_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_server_refused_by_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_allowed_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pki_chain_and_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_pem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
        cmocka_unit_test(test_error_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
