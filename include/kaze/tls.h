/*
 * kaze/tls.h — TLS for servers (wss://), with OpenSSL 3.
 *
 * A kz_tls_server holds the certificates a server presents: a default one
 * and, for SNI, any number of others, each chosen when the name the client
 * asks for matches it (its subjectAltName DNS names or, lacking those, its
 * common name; wildcards as RFC 6125 allows). TLS 1.2 is the minimum (1.3
 * is preferred), TLS 1.2 uses ECDHE with AEAD ciphers only, renegotiation
 * and compression are off, ALPN answers "http/1.1" when the client offers it.
 *
 * One kz_tls_server may serve several kz_servers on several threads
 * (kz_server_config.tls): creating connections from it is thread-safe, and
 * so is kz_tls_server_reload, which swaps in freshly read certificates for
 * new connections while the connections made before it keep theirs. Free it
 * after every server that uses it.
 *
 * Clients configure TLS in kz_client_config (a CA file or the system store,
 * hostname verification, SNI; no verification only when asked).
 */
#ifndef KAZE_TLS_H
#define KAZE_TLS_H

#include "kaze/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A certificate chain (PEM: the leaf first, then intermediates) and its private key (PEM). */
struct kz_tls_cert {
    const char *cert_file;
    const char *key_file;
};

struct kz_tls_server_config {
    const struct kz_tls_cert *certs; /* certs[0] is the default; the others are chosen by SNI */
    size_t num_certs;
    bool tls13_only;          /* default false: TLS 1.2 and 1.3 */
    const char *ciphers;      /* TLS 1.2 cipher list; NULL: ECDHE with AES-GCM or ChaCha20 */
    const char *ciphersuites; /* TLS 1.3 suites; NULL: OpenSSL's default */
};

struct kz_tls_server;

/*
 * Loads the certificates and keys. Returns NULL on failure, with a
 * NUL-terminated reason in `err` (`err_len` bytes; may be NULL): a missing
 * or unreadable file, a key that does not match its certificate, ...
 * The config's strings are read during the call only.
 */
KZ_EXPORT struct kz_tls_server *kz_tls_server_new(const struct kz_tls_server_config *cfg, char *err,
                                                  size_t err_len);

/*
 * Reads the same files again (for a certificate renewed on disk). New
 * connections get the new certificates; open ones are not touched. On
 * failure the old certificates stay in use, KZ_ERR_CRYPTO is returned and
 * `err` says why. Callable from any thread.
 */
KZ_EXPORT int kz_tls_server_reload(struct kz_tls_server *t, char *err, size_t err_len);

KZ_EXPORT void kz_tls_server_free(struct kz_tls_server *t);

#ifdef __cplusplus
}
#endif
#endif
