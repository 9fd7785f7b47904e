/*
 * TLS for the cluster protocol: TLS 1.3 only, mutual authentication in one
 * of Kong's two modes, and the `sluice-cp gen-cert` certificate maker.
 *
 *   shared: every node holds the same certificate and key
 *           (cluster_cert/cluster_cert_key). Each side accepts a peer only
 *           when the peer's leaf certificate is byte-for-byte the same as its
 *           own (compared by SHA-256 of the DER). Any certificate works: one
 *           from gen-cert, or from `openssl req -x509`.
 *   pki:    both sides verify the peer's chain against cluster_ca_cert. The
 *           data plane also checks that the control plane's certificate
 *           names cluster_server_name (CN or DNS SAN); the control plane
 *           optionally checks the data plane's CN/DNS SAN against an
 *           allow-list.
 *
 * Verification happens inside the handshake, so a peer that fails it never
 * completes the handshake and never sees a byte of configuration.
 * cert/key/ca values are file paths or inline PEM text (starting with
 * "-----BEGIN"), as Kong accepts.
 */
#ifndef SL_CLUSTER_TLS_H
#define SL_CLUSTER_TLS_H

#include "errors.h"

#include <openssl/ssl.h>
#include <stdint.h>

typedef enum sl_cluster_mtls_e {
    SL_MTLS_SHARED = 0,
    SL_MTLS_PKI,
} sl_cluster_mtls_t;

typedef struct sl_cluster_tls_opts_s {
    sl_cluster_mtls_t mode;
    const char *cert;    /* cluster_cert: path or PEM (required) */
    const char *key;     /* cluster_cert_key: path or PEM (required) */
    const char *ca_cert; /* cluster_ca_cert: path or PEM (required in pki mode) */
    /* Client: the name sent as SNI and, in pki mode, required in the control
     * plane's certificate. Shared mode always sends "kong_clustering". */
    const char *server_name;
    /* Server, pki mode: comma-separated names a data plane's certificate
     * must carry one of (CN or DNS SAN); NULL or "": any chain the CA signed. */
    const char *allowed_names;
} sl_cluster_tls_opts_t;

/* Parses "shared" / "pki"; SL_ERR_INVALID otherwise. */
int sl_cluster_mtls_parse(const char *s, sl_cluster_mtls_t *out);

/*
 * Builds the control plane's (server) or the data plane's (client) context.
 * Errors name the configuration key at fault and the fix, e.g.
 * "cluster_cert: cannot read '/x.crt' (No such file or directory)",
 * "cluster_cert_key: does not match cluster_cert",
 * "cluster_ca_cert: required when cluster_mtls = pki".
 * Returns SL_OK with *out set (caller frees with SSL_CTX_free) or
 * SL_ERR_INVALID.
 */
int sl_cluster_tls_server_ctx(const sl_cluster_tls_opts_t *o, SSL_CTX **out, sl_errors_t *errs);
int sl_cluster_tls_client_ctx(const sl_cluster_tls_opts_t *o, SSL_CTX **out, sl_errors_t *errs);

/* Prepares a client SSL (SNI per mode, host name checks per mode). */
int sl_cluster_tls_client_ssl(SSL_CTX *ctx, const sl_cluster_tls_opts_t *o, SSL **out);

/* After a failed handshake: why the peer was refused, if our verification
 * refused it ("certificate does not match cluster_cert (shared mode)",
 * "certificate verify failed: unable to get local issuer certificate", ...),
 * else the OpenSSL error text. Writes a NUL-terminated string. */
void sl_cluster_tls_error(SSL *ssl, char *out, size_t size);

/* The peer certificate's notAfter as epoch seconds, or 0 (Kong's
 * cert_details.expiry_timestamp). */
int64_t sl_cluster_tls_peer_expiry(SSL *ssl);

/*
 * Writes a self-signed cluster certificate and key as Kong's
 * `kong hybrid gen_cert` does: an EC P-384 key, CN=kong_clustering, valid
 * from now for `days` days, SHA-256 signature. The key file is created with
 * mode 0600, the certificate with 0644; existing files are not overwritten
 * (an error names them). Returns SL_OK or SL_ERR_INVALID.
 */
int sl_cluster_gen_cert(const char *cert_path, const char *key_path, int days, sl_errors_t *errs);

#endif
