/*
 * Unit tests of a generation's certificates (dataplane/gen_tls.c): Kong's
 * SNI selection (exact name, then "*.rest" for one leading label, then
 * "rest.*" for one trailing label, then the "*" sni), case folding, the
 * errors that name the entity and field, and generations that share no
 * context. Certificates are made here with OpenSSL (P-256, self-signed, the
 * common name telling which one a lookup found), so no key file is
 * committed. Documents go through the real declarative loader and generation
 * builder, except where the loader itself would refuse the bad input: those
 * are normalised documents as a control plane could send them.
 */
#include "declarative.h"
#include "gen.h"
#include "tls.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ------------------------------------------------------------ fixtures */

struct pair {
    char *cert, *key; /* PEM text */
};

static char *bio_text(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

/* A self-signed P-256 certificate whose subject CN is cn, and its key. */
static struct pair make_pair(const char *cn)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, k);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);

    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(cb, x), 1);
    assert_int_equal(PEM_write_bio_PrivateKey(kb, k, NULL, NULL, 0, NULL, NULL), 1);
    struct pair p = {bio_text(cb), bio_text(kb)};
    X509_free(x);
    EVP_PKEY_free(k);
    return p;
}

static void pair_dispose(struct pair *p)
{
    free(p->cert);
    free(p->key);
}

/* Three certificates, CN "A", "B" and "C", made once for the file. */
static struct pair A, B, C;

static int setup(void **state)
{
    A = make_pair("A");
    B = make_pair("B");
    C = make_pair("C");
    return 0;
}

static int teardown(void **state)
{
    pair_dispose(&A);
    pair_dispose(&B);
    pair_dispose(&C);
    return 0;
}

/* A declarative certificate entity with nested snis (NULL-terminated). */
static json_t *decl_cert(const struct pair *p, ...)
{
    json_t *snis = json_array();
    va_list ap;
    va_start(ap, p);
    for (const char *n; (n = va_arg(ap, const char *));)
        json_array_append_new(snis, json_pack("{s:s}", "name", n));
    va_end(ap);
    return json_pack("{s:s, s:s, s:o}", "cert", p->cert, "key", p->key, "snis", snis);
}

/* Loads a declarative document of the given certificates (stolen) through
 * the real loader and builds a generation from it. */
static sl_gen_t *build_decl(json_t *certs)
{
    json_t *file = json_pack("{s:s, s:o}", "_format_version", "3.0", "certificates", certs);
    char *text = json_dumps(file, 0);
    json_decref(file);
    sl_errors_t errs;
    sl_errors_init(&errs);
    json_t *doc = NULL;
    sl_gen_t *g = NULL;
    int rc = sl_declarative_load_string(text, strlen(text), &doc, &errs);
    if (rc == SL_OK)
        rc = sl_gen_build(doc, 1, &g, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  %s\n", errs.items[i]);
    assert_int_equal(rc, SL_OK);
    assert_non_null(g);
    sl_errors_dispose(&errs);
    json_decref(doc);
    free(text);
    return g;
}

/* Builds a generation straight from a normalised document (stolen), as a
 * control plane sends it; the errors joined by newlines (NULL when it built:
 * *out holds the generation, when out is given). */
static char *build_norm(json_t *doc, sl_gen_t **out)
{
    sl_errors_t errs;
    sl_errors_init(&errs);
    sl_gen_t *g = NULL;
    int rc = sl_gen_build(doc, 1, &g, &errs);
    json_decref(doc);
    char *joined = NULL;
    if (rc != SL_OK) {
        assert_null(g);
        assert_true(errs.n > 0);
        size_t len = 1;
        for (size_t i = 0; i < errs.n; i++)
            len += strlen(errs.items[i]) + 1;
        joined = calloc(1, len);
        for (size_t i = 0; i < errs.n; i++) {
            strcat(joined, errs.items[i]);
            strcat(joined, "\n");
        }
    }
    sl_errors_dispose(&errs);
    if (out)
        *out = g;
    else
        sl_gen_unref(g);
    return joined;
}

/* A normalised certificate row. */
static json_t *norm_cert(const char *id, const char *cert, const char *key)
{
    return json_pack("{s:s, s:s, s:s, s:n, s:n}", "id", id, "cert", cert, "key", key, "cert_alt",
                     "key_alt");
}

static json_t *norm_sni(const char *name, const char *cert_id)
{
    return json_pack("{s:s, s:{s:s}}", "name", name, "certificate", "id", cert_id);
}

#define CERT1 "11111111-1111-4111-8111-111111111111"
#define CERT2 "22222222-2222-4222-8222-222222222222"

/* The subject CN of a context's certificate ("-" for no context). */
static const char *cn_of(SSL_CTX *ctx)
{
    static char buf[64];
    if (!ctx)
        return "-";
    X509 *x = SSL_CTX_get0_certificate(ctx);
    assert_non_null(x);
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf)) > 0);
    return buf;
}

static void assert_selects(const sl_gen_t *g, const char *name, const char *cn)
{
    const char *got = cn_of(sl_gen_tls_ctx(g, name));
    if (strcmp(got, cn) != 0)
        fail_msg("sni '%s': expected certificate %s, got %s", name ? name : "(none)", cn, got);
}

/* ------------------------------------------------------------ selection */

/* Exact names, "*.rest" and "rest.*" wildcards, and their precedence, as
 * Kong's produce_wild_snis and find_certificate have them. */
static void test_selection(void **state)
{
    sl_gen_t *g =
        build_decl(json_pack("[o, o, o]", decl_cert(&A, "a.example.com", "www.foo.test", NULL),
                             decl_cert(&B, "*.example.com", "*.foo.test", "*.foo.org", NULL),
                             decl_cert(&C, "example.*", "www.foo.*", NULL)));
    static const struct {
        const char *name, *cn;
    } cases[] = {
        /* exact */
        {"a.example.com", "A"},
        /* prefix: exactly one leading label, and at least three labels */
        {"b.example.com", "B"},
        {"x.b.example.com", "-"},
        {"example.com", "C"}, /* not *.example.com: the suffix wildcard */
        /* suffix: exactly one trailing label */
        {"example.org", "C"},
        {"example.co.uk", "-"},
        {"www.example.org", "-"},
        /* precedence: exact, then prefix, then suffix */
        {"www.foo.test", "A"},
        {"x.foo.test", "B"},
        {"www.foo.org", "B"},
        {"www.foo.net", "C"},
        /* a client's own wildcard only meets the sni of that name */
        {"*.example.com", "B"},
        {"*.example.org", "-"},
        /* no match: the listener's default */
        {"other.net", "-"},
        {"com", "-"},
        {".example.com", "-"},
        {"a..example.com", "-"},
        {"example.", "-"},
        {"", "-"},
        {NULL, "-"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_selects(g, cases[i].name, cases[i].cn);
    sl_gen_unref(g);
}

/* The "*" sni (Kong's DEFAULT_SNI) serves any name nothing else does, but
 * not a client that sent no SNI. */
static void test_catch_all(void **state)
{
    sl_gen_t *g =
        build_decl(json_pack("[o, o]", decl_cert(&A, "a.test", NULL), decl_cert(&B, "*", NULL)));
    assert_selects(g, "a.test", "A");
    assert_selects(g, "b.test", "B");
    assert_selects(g, "x.y.z", "B");
    assert_selects(g, "*.test", "B");
    assert_selects(g, NULL, "-");
    sl_gen_unref(g);
}

/* snis are compared lower-cased, whatever the case of the entity or the
 * client; two names equal but for case (the loader lets both through) are
 * one, and the first in the table keeps it. */
static void test_case(void **state)
{
    sl_gen_t *g =
        build_decl(json_pack("[o, o]", decl_cert(&A, "Mixed.Example.NET", "dup.test", NULL),
                             decl_cert(&B, "*.Wild.Test", "Suffix.*", "DUP.test", NULL)));
    assert_selects(g, "mixed.example.net", "A");
    assert_selects(g, "MIXED.example.Net", "A");
    assert_selects(g, "www.wild.test", "B");
    assert_selects(g, "WWW.WILD.TEST", "B");
    assert_selects(g, "suffix.io", "B");
    assert_selects(g, "SUFFIX.IO", "B");
    assert_selects(g, "dup.test", "A");
    assert_selects(g, "Dup.Test", "A");
    sl_gen_unref(g);
}

/* No snis, no allocation; and a certificate no sni names gets no context
 * (so one the TLS library would refuse is no error). */
static void test_nothing_to_build(void **state)
{
    sl_gen_t *g = NULL;
    assert_null(build_norm(json_pack("{s:[]}", "snis"), &g));
    assert_null(g->tls);
    assert_null(sl_gen_tls_ctx(g, "a.test"));
    sl_gen_unref(g);

    assert_null(
        build_norm(json_pack("{s:[o]}", "certificates", norm_cert(CERT1, A.cert, A.key)), &g));
    assert_null(g->tls);
    sl_gen_unref(g);

    assert_null(
        build_norm(json_pack("{s:[o, o], s:[o]}", "certificates",
                             norm_cert(CERT1, "not a certificate", "nor a key"),
                             norm_cert(CERT2, B.cert, B.key), "snis", norm_sni("b.test", CERT2)),
                   &g));
    assert_non_null(g->tls);
    assert_selects(g, "b.test", "B");
    sl_gen_unref(g);

    assert_null(sl_gen_tls_ctx(NULL, "b.test"));
}

/* ------------------------------------------------------------ errors */

static void assert_error(char *errs, const char *want)
{
    assert_non_null(errs);
    if (!strstr(errs, want))
        fail_msg("expected '%s' among:\n%s", want, errs);
    free(errs);
}

/* certificates[1] unusable, certificates[0] fine: the error names [1] and
 * the field. */
static char *build_second(const char *cert, const char *key)
{
    return build_norm(json_pack("{s:[o, o], s:[o, o]}", "certificates",
                                norm_cert(CERT1, A.cert, A.key), norm_cert(CERT2, cert, key),
                                "snis", norm_sni("a.test", CERT1), norm_sni("b.test", CERT2)),
                      NULL);
}

static void test_bad_pem(void **state)
{
    assert_error(
        build_second("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", B.key),
        "certificates[1].cert: not a PEM certificate");
    assert_error(build_second("hello", B.key), "certificates[1].cert: not a PEM certificate");
    assert_error(build_second(B.cert, "hello"), "certificates[1].key: not a PEM private key");
    /* The alternative pair is checked the same way, and needs both halves. */
    json_t *c = norm_cert(CERT1, A.cert, A.key);
    json_object_set_new(c, "cert_alt", json_string("junk"));
    json_object_set_new(c, "key_alt", json_string(B.key));
    assert_error(build_norm(json_pack("{s:[o], s:[o]}", "certificates", c, "snis",
                                      norm_sni("a.test", CERT1)),
                            NULL),
                 "certificates[0].cert_alt: not a PEM certificate");
    c = norm_cert(CERT1, A.cert, A.key);
    json_object_set_new(c, "cert_alt", json_string(B.cert));
    assert_error(build_norm(json_pack("{s:[o], s:[o]}", "certificates", c, "snis",
                                      norm_sni("a.test", CERT1)),
                            NULL),
                 "certificates[0].key_alt: required when cert_alt is set");
    /* The loader refuses the same before a generation is built. */
    sl_errors_t errs;
    sl_errors_init(&errs);
    json_t *doc = NULL;
    const char *text = "{\"_format_version\": \"3.0\", \"certificates\": [{\"cert\": \"x\", "
                       "\"key\": \"y\", \"snis\": [{\"name\": \"a.test\"}]}]}";
    assert_int_not_equal(sl_declarative_load_string(text, strlen(text), &doc, &errs), SL_OK);
    assert_null(doc);
    sl_errors_dispose(&errs);
}

static void test_key_mismatch(void **state)
{
    assert_error(build_second(B.cert, C.key),
                 "certificates[1].key: the key does not belong to the certificate in cert");
}

static void test_sni_errors(void **state)
{
    assert_error(
        build_norm(json_pack("{s:[o], s:[o]}", "certificates", norm_cert(CERT1, A.cert, A.key),
                             "snis", norm_sni("b.test", CERT2)),
                   NULL),
        "snis[0].certificate: no certificate with id " CERT2);
    assert_error(build_norm(json_pack("{s:[o], s:[{s:i, s:{s:s}}]}", "certificates",
                                      norm_cert(CERT1, A.cert, A.key), "snis", "name", 7,
                                      "certificate", "id", CERT1),
                            NULL),
                 "snis[0].name: expected a string");
    assert_error(build_norm(json_pack("{s:[o], s:[{s:s}]}", "certificates",
                                      norm_cert(CERT1, A.cert, A.key), "snis", "name", "a.test"),
                            NULL),
                 "snis[0].certificate: required field missing");
    assert_error(
        build_norm(json_pack("{s:{}, s:[o]}", "certificates", "snis", norm_sni("a.test", CERT1)),
                   NULL),
        "certificates: expected an array");
}

/* ------------------------------------------------------------ lifetime */

/* Two generations from one document have contexts of their own: the first
 * can go while the second serves (AddressSanitizer sees any sharing). */
static void test_generations_share_nothing(void **state)
{
    json_t *certs =
        json_pack("[o, o]", decl_cert(&A, "a.test", NULL), decl_cert(&B, "*.b.test", NULL));
    sl_gen_t *g1 = build_decl(json_deep_copy(certs));
    sl_gen_t *g2 = build_decl(certs);
    SSL_CTX *a1 = sl_gen_tls_ctx(g1, "a.test"), *a2 = sl_gen_tls_ctx(g2, "a.test");
    assert_non_null(a1);
    assert_non_null(a2);
    assert_ptr_not_equal(a1, a2);
    assert_ptr_not_equal(sl_gen_tls_ctx(g1, "x.b.test"), sl_gen_tls_ctx(g2, "x.b.test"));
    assert_ptr_not_equal(g1->tls, g2->tls);

    /* A connection keeps its context past its generation (SSL_set_SSL_CTX
     * takes a reference, as tls.c's SNI callback does). */
    SSL *ssl = SSL_new(a1);
    assert_non_null(ssl);
    SSL_set_SSL_CTX(ssl, sl_gen_tls_ctx(g1, "x.b.test"));
    sl_gen_unref(g1);
    assert_string_equal(cn_of(SSL_get_SSL_CTX(ssl)), "B");
    SSL_free(ssl);

    assert_selects(g2, "a.test", "A");
    assert_selects(g2, "x.b.test", "B");
    ssl = SSL_new(a2);
    assert_non_null(ssl);
    SSL_free(ssl);
    sl_gen_unref(g2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selection),  cmocka_unit_test(test_catch_all),
        cmocka_unit_test(test_case),       cmocka_unit_test(test_nothing_to_build),
        cmocka_unit_test(test_bad_pem),    cmocka_unit_test(test_key_mismatch),
        cmocka_unit_test(test_sni_errors), cmocka_unit_test(test_generations_share_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
