/*
 * TLS on non-blocking sockets, private to libkaze: SSL objects for the
 * server's accepted sockets and the client's connected ones, the handshake
 * and reads and writes that say which readiness to wait for next.
 */
#ifndef KZ_IO_TLS_H
#define KZ_IO_TLS_H

#include <sys/types.h>

#include <openssl/ssl.h>

#include "kaze/tls.h"

/* A server-side SSL on `fd` from the current certificates; NULL if memory runs out. */
SSL *kz__tls_server_ssl(struct kz_tls_server *t, int fd);

/*
 * A client context: certificates verified against `ca_file` (PEM), or the
 * system's store when NULL, unless `insecure`. NULL on failure, with the
 * reason in `err`.
 */
SSL_CTX *kz__tls_client_ctx(const char *ca_file, bool insecure, char *err, size_t err_len);

/*
 * A client-side SSL on `fd` for `host` (`host_len` bytes, an IPv4/IPv6
 * literal when `is_ip`): SNI for names, and unless the context is insecure,
 * the certificate must be valid for that name or address.
 */
SSL *kz__tls_client_ssl(SSL_CTX *ctx, int fd, const char *host, size_t host_len, bool is_ip);

/* Frees an SSL from either function above. NULL is ignored. */
void kz__tls_free(SSL *ssl);

/*
 * Advances the handshake. Returns 1 when it is done, 0 when it must wait
 * for *want (KZ_IO_READ or KZ_IO_WRITE), KZ_ERR_CLOSED when the peer hung
 * up, or KZ_ERR_CRYPTO (certificate verification, protocol mismatch, plain
 * HTTP at a TLS port: *plain_http is set then), with the reason in `err`.
 */
int kz__tls_handshake(SSL *ssl, unsigned *want, bool *plain_http, char *err, size_t err_len);

/*
 * Reads decrypted bytes: > 0, 0 at the end of the stream (close_notify or
 * TCP EOF), -1 to wait for *want, -2 on an error (the connection is
 * unusable).
 */
ssize_t kz__tls_read(SSL *ssl, void *buf, size_t len, unsigned *want);

/* Writes: > 0 bytes taken (possibly fewer than `len`), -1 to wait for *want, -2 on an error. */
ssize_t kz__tls_write(SSL *ssl, const void *buf, size_t len, unsigned *want);

/* Sends close_notify if it can go at once (best effort: the TCP close follows). */
void kz__tls_close_notify(SSL *ssl);

#endif
