/*
 * TLS termination on the proxy listeners (proxy_listen entries with the
 * `ssl` flag), as Kong: the certificate is chosen by the client's SNI among
 * the configuration's certificates (their snis: exact names, then
 * "*.example.com" and "example.*" wildcards), else the node's default
 * (ssl_cert / ssl_cert_key, or one made at start when they are unset, as
 * Kong's kong-default.crt). Requests over TLS have the scheme https.
 *
 * Server contexts: one per certificate entity, built with the generation
 * (gen_tls.c) and freed with it; the default one per process. A handshake
 * starts on the default context; the SNI callback switches the connection
 * to the certificate's context of the worker's current generation.
 *
 * Thread-safety: contexts are read-only once built; the SNI callback runs
 * on the worker that accepted the connection.
 */
#ifndef SL_TLS_H
#define SL_TLS_H

#include "errors.h"

#include <jansson.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>

struct sl_dp_conf_s;
struct sl_gen_s;

/*
 * A server context for one certificate: the leaf and its chain (the PEM
 * blocks after the first), the key, and optionally a second pair (Kong's
 * cert_alt / key_alt: an ECDSA certificate beside an RSA one). TLS 1.2 and
 * 1.3, ALPN http/1.1, the SNI callback installed. Returns NULL with the
 * reason in err (cert and key not PEM, the key not the certificate's).
 */
SSL_CTX *sl_tls_ctx_new(const char *cert_pem, const char *key_pem, const char *cert_alt_pem,
                        const char *key_alt_pem, char *err, size_t errlen);

/*
 * The process's default context, from ssl_cert / ssl_cert_key (paths or PEM
 * text) or, when both are unset, a self-signed certificate made now (P-256,
 * CN "localhost", one year) and written to <prefix>/ssl/sluice-default.crt
 * and .key. Called once at start when some proxy_listen has `ssl`.
 * Returns SL_OK or SL_ERR_INVALID with the reason in errs.
 */
int sl_tls_init(const struct sl_dp_conf_s *conf, sl_errors_t *errs);
void sl_tls_cleanup(void);

/* The certificate phase of a connection's handshake (proxy.c): SL_OK to
 * go on, SL_AGAIN while a plugin waits, SL_ERR_INVALID when one refused. */
struct sl_conn_s;
int sl_conn_certificate(struct sl_conn_s *c);

/* ---- Upstream connections (services with protocol https) ---------------- */

/* The context for upstreams whose certificate is not checked (tls_verify
 * off, Kong's default): TLS 1.2 and 1.3. Made on first use; shared. */
SSL_CTX *sl_tls_upstream_ctx(void);

/*
 * A context of a service's own (tls_verify, or a client certificate). With
 * verify the upstream's certificate must chain to one of the
 * ca_certificates entities it names (their ids, an array; doc's
 * ca_certificates table holds their PEM), or to the system's trust store
 * when it names none; the host is checked per connection. NULL with the
 * reason in err (an unknown id, a PEM that does not parse).
 */
SSL_CTX *sl_tls_upstream_ctx_new(const json_t *doc, bool verify, const json_t *ca_ids, char *err,
                                 size_t errlen);

/* Presents the certificate entity cert_id of doc (its chain and key) to
 * upstreams reached with ctx (a service's client_certificate). False with
 * the reason in err. */
bool sl_tls_use_client_cert(SSL_CTX *ctx, const json_t *doc, const char *cert_id, char *err,
                            size_t errlen);

/* The default context (NULL before sl_tls_init). */
SSL_CTX *sl_tls_default_ctx(void);

/*
 * The context of the certificate whose snis match name (lower-cased by
 * the caller): an exact sni first, then a "*." prefix wildcard, then a
 * ".*" suffix wildcard; NULL when none does (the default applies).
 * (gen_tls.c)
 */
SSL_CTX *sl_gen_tls_ctx(const struct sl_gen_s *g, const char *name);

/* Builds and frees a generation's contexts from its document's
 * certificates and snis (gen.c calls these). Errors name the entity:
 * "certificates[2].cert: ...". */
int sl_gen_tls_build(struct sl_gen_s *g, const json_t *doc, sl_errors_t *errs);
void sl_gen_tls_free(struct sl_gen_s *g);

#endif
