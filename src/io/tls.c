/*
 * OpenSSL glue for servers and clients.
 *
 * Server certificates live in a "set": one SSL_CTX per certificate, the
 * first being the default, whose servername callback moves a handshake to
 * the context whose certificate matches the SNI name. A reload builds a new
 * set and swaps it in under a mutex; each SSL holds a reference to the set
 * it came from (its app data), so a set outlives every handshake that may
 * still call its callback.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdint.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "kaze/loop.h"
#include "io/tls.h"

struct tls_set {
    struct kz_tls_server *owner;
    int refs; /* the server's, plus one per SSL made from it; under owner->mu */
    size_t n;
    SSL_CTX *ctx[];
};

struct kz_tls_server {
    pthread_mutex_t mu;
    struct tls_set *cur;
    struct kz_tls_server_config cfg; /* strings point into `strings` */
    struct kz_tls_cert *certs;
    char *strings;
};

/* ------------------------------------------------------------------------
 * A socket BIO that never raises SIGPIPE
 *
 * OpenSSL's own socket BIO writes with write(): a peer that has gone away
 * would kill a program that has not ignored SIGPIPE. This one sends with
 * MSG_NOSIGNAL, so a library user need not know.
 */

static BIO_METHOD *sock_method;
static pthread_once_t sock_method_once = PTHREAD_ONCE_INIT;

static int sock_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int sock_write(BIO *b, const char *data, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n;
    do
        n = send(sock_fd(b), data, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static int sock_read(BIO *b, char *data, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n;
    do
        n = recv(sock_fd(b), data, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    return (int)n;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    switch (cmd) {
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = sock_fd(b);
        return sock_fd(b);
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static void make_sock_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kaze socket");
    if (!m)
        return;
    BIO_meth_set_write(m, sock_write);
    BIO_meth_set_read(m, sock_read);
    BIO_meth_set_ctrl(m, sock_ctrl);
    sock_method = m;
}

/* Binds `ssl` to `fd` through the BIO above. */
static bool attach_fd(SSL *ssl, int fd)
{
    pthread_once(&sock_method_once, make_sock_method);
    BIO *b = sock_method ? BIO_new(sock_method) : NULL;
    if (!b)
        return false;
    BIO_set_data(b, (void *)(intptr_t)fd);
    BIO_set_init(b, 1);
    SSL_set_bio(ssl, b, b);
    return true;
}

static void set_err(char *err, size_t len, const char *what, const char *file)
{
    if (!err || !len)
        return;
    char ssl[200] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, ssl, sizeof(ssl));
    snprintf(err, len, "%s%s%s%s%s", what, file ? " " : "", file ? file : "", *ssl ? ": " : "",
             ssl);
    ERR_clear_error();
}

static void set_release(struct tls_set *set)
{
    struct kz_tls_server *t = set->owner;
    pthread_mutex_lock(&t->mu);
    bool last = --set->refs == 0;
    pthread_mutex_unlock(&t->mu);
    if (!last)
        return;
    for (size_t i = 0; i < set->n; i++)
        SSL_CTX_free(set->ctx[i]);
    free(set);
}

/* Picks the certificate for the name the client asked for; the default otherwise. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    (void)arg;
    struct tls_set *set = SSL_get_app_data(ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!set || !name)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 1; i < set->n; i++) {
        X509 *leaf = SSL_CTX_get0_certificate(set->ctx[i]);
        if (leaf && X509_check_host(leaf, name, 0, 0, NULL) == 1) {
            SSL_set_SSL_CTX(ssl, set->ctx[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ALPN: WebSocket runs over HTTP/1.1 (RFC 6455); a client offering only h2 gets no answer. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char http11[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    unsigned char sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, http11, sizeof(http11) - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        *outlen = sel_len;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *server_ctx(const struct kz_tls_server_config *cfg, const struct kz_tls_cert *cert,
                           char *err, size_t err_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        set_err(err, err_len, "SSL_CTX_new failed", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, cfg->tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const unsigned char sid[] = "kaze";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    SSL_CTX_set_num_tickets(ctx, 1); /* one resumption ticket, not OpenSSL's two */
    /*
     * Read ahead: one recv takes every record the socket holds, rather than
     * a header and then a body per record.
     */
    SSL_CTX_set_read_ahead(ctx, 1);
    /*
     * AES-128-GCM first: as strong as a WebSocket needs, and its SHA-256
     * key schedule runs on the CPU's SHA extensions where SHA-384's does
     * not (a fifth of a TLS 1.3 handshake's instructions otherwise).
     */
    const char *ciphers =
        cfg->ciphers ? cfg->ciphers : "ECDHE+AESGCM+AES128:ECDHE+CHACHA20:ECDHE+AESGCM";
    const char *suites = cfg->ciphersuites ? cfg->ciphersuites
                                           : "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:"
                                             "TLS_AES_256_GCM_SHA384";
    if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1 || SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
        set_err(err, err_len, "invalid cipher list", NULL);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert->cert_file) != 1) {
        set_err(err, err_len, "cannot load certificate chain", cert->cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cert->key_file, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        bool mismatch =
            ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH;
        set_err(err, err_len,
                mismatch ? "private key does not match certificate" : "cannot load private key",
                mismatch ? cert->cert_file : cert->key_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        set_err(err, err_len, "private key does not match certificate", cert->cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    return ctx;
}

static struct tls_set *load_set(struct kz_tls_server *t, char *err, size_t err_len)
{
    size_t n = t->cfg.num_certs;
    struct tls_set *set = calloc(1, sizeof(*set) + n * sizeof(SSL_CTX *));
    if (!set) {
        if (err)
            snprintf(err, err_len, "out of memory");
        return NULL;
    }
    set->owner = t;
    set->refs = 1;
    for (size_t i = 0; i < n; i++) {
        set->ctx[i] = server_ctx(&t->cfg, &t->certs[i], err, err_len);
        if (!set->ctx[i]) {
            for (size_t j = 0; j < i; j++)
                SSL_CTX_free(set->ctx[j]);
            free(set);
            return NULL;
        }
        set->n = i + 1;
    }
    return set;
}

static size_t slen(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *keep(char **at, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*at, s, n);
    const char *r = *at;
    *at += n;
    return r;
}

struct kz_tls_server *kz_tls_server_new(const struct kz_tls_server_config *cfg, char *err,
                                        size_t err_len)
{
    if (err && err_len)
        err[0] = '\0';
    if (!cfg || cfg->num_certs == 0 || !cfg->certs) {
        if (err)
            snprintf(err, err_len, "no certificate given");
        return NULL;
    }
    size_t n = slen(cfg->ciphers) + slen(cfg->ciphersuites);
    for (size_t i = 0; i < cfg->num_certs; i++) {
        if (!cfg->certs[i].cert_file || !cfg->certs[i].key_file) {
            if (err)
                snprintf(err, err_len,
                         "a certificate without its key, or a key without its certificate");
            return NULL;
        }
        n += slen(cfg->certs[i].cert_file) + slen(cfg->certs[i].key_file);
    }
    struct kz_tls_server *t = calloc(1, sizeof(*t));
    if (t) {
        t->certs = calloc(cfg->num_certs, sizeof(*t->certs));
        t->strings = malloc(n);
    }
    if (!t || !t->certs || !t->strings) {
        if (t) {
            free(t->certs);
            free(t->strings);
            free(t);
        }
        if (err)
            snprintf(err, err_len, "out of memory");
        return NULL;
    }
    char *at = t->strings;
    t->cfg = *cfg;
    t->cfg.ciphers = keep(&at, cfg->ciphers);
    t->cfg.ciphersuites = keep(&at, cfg->ciphersuites);
    for (size_t i = 0; i < cfg->num_certs; i++) {
        t->certs[i].cert_file = keep(&at, cfg->certs[i].cert_file);
        t->certs[i].key_file = keep(&at, cfg->certs[i].key_file);
    }
    t->cfg.certs = t->certs;
    pthread_mutex_init(&t->mu, NULL);
    t->cur = load_set(t, err, err_len);
    if (!t->cur) {
        pthread_mutex_destroy(&t->mu);
        free(t->certs);
        free(t->strings);
        free(t);
        return NULL;
    }
    return t;
}

int kz_tls_server_reload(struct kz_tls_server *t, char *err, size_t err_len)
{
    struct tls_set *set = load_set(t, err, err_len);
    if (!set)
        return KZ_ERR_CRYPTO;
    pthread_mutex_lock(&t->mu);
    struct tls_set *old = t->cur;
    t->cur = set;
    pthread_mutex_unlock(&t->mu);
    set_release(old);
    return KZ_OK;
}

void kz_tls_server_free(struct kz_tls_server *t)
{
    if (!t)
        return;
    set_release(t->cur); /* SSLs still holding it (there should be none) keep it alive */
    pthread_mutex_destroy(&t->mu);
    free(t->certs);
    free(t->strings);
    free(t);
}

SSL *kz__tls_server_ssl(struct kz_tls_server *t, int fd)
{
    pthread_mutex_lock(&t->mu);
    struct tls_set *set = t->cur;
    set->refs++;
    pthread_mutex_unlock(&t->mu);
    SSL *ssl = SSL_new(set->ctx[0]);
    if (!ssl || !attach_fd(ssl, fd)) {
        SSL_free(ssl);
        set_release(set);
        return NULL;
    }
    SSL_set_app_data(ssl, set);
    SSL_set_accept_state(ssl);
    return ssl;
}

/* ------------------------------------------------------------------------
 * Clients
 */

SSL_CTX *kz__tls_client_ctx(const char *ca_file, bool insecure, char *err, size_t err_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        set_err(err, err_len, "SSL_CTX_new failed", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    SSL_CTX_set_read_ahead(ctx, 1);
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        set_err(err, err_len, "cannot load CA certificates", ca_file ? ca_file : "(system store)");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL *kz__tls_client_ssl(SSL_CTX *ctx, int fd, const char *host, size_t host_len, bool is_ip)
{
    char name[256];
    if (host_len >= sizeof(name))
        return NULL;
    memcpy(name, host, host_len);
    name[host_len] = '\0';
    SSL *ssl = SSL_new(ctx);
    if (!ssl || !attach_fd(ssl, fd)) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    /* RFC 6066: SNI carries host names, never address literals. */
    if (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    if (SSL_CTX_get_verify_mode(ctx) != SSL_VERIFY_NONE) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) : SSL_set1_host(ssl, name);
        if (ok != 1) {
            SSL_free(ssl);
            return NULL;
        }
    }
    return ssl;
}

void kz__tls_free(SSL *ssl)
{
    if (!ssl)
        return;
    struct tls_set *set = SSL_get_app_data(ssl);
    SSL_free(ssl);
    if (set)
        set_release(set);
}

/* ------------------------------------------------------------------------
 * Handshake, reads, writes
 */

int kz__tls_handshake(SSL *ssl, unsigned *want, bool *plain_http, char *err, size_t err_len)
{
    *plain_http = false;
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl);
    if (rc == 1)
        return 1;
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        *want = KZ_IO_READ;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        *want = KZ_IO_WRITE;
        return 0;
    }
    unsigned long code = ERR_peek_error();
    if (ERR_GET_LIB(code) == ERR_LIB_SSL && ERR_GET_REASON(code) == SSL_R_HTTP_REQUEST)
        *plain_http = true;
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK && err) {
        snprintf(err, err_len, "certificate verification failed: %s",
                 X509_verify_cert_error_string(verify));
        ERR_clear_error();
        return KZ_ERR_CRYPTO;
    }
    if (e == SSL_ERROR_SYSCALL || (e == SSL_ERROR_SSL && !code)) {
        if (err)
            snprintf(err, err_len, "connection closed by the peer during the handshake%s%s",
                     errno ? ": " : "", errno ? strerror(errno) : "");
        ERR_clear_error();
        return KZ_ERR_CLOSED;
    }
    const char *why = code ? ERR_reason_error_string(code) : NULL;
    bool not_tls =
        ERR_GET_LIB(code) == ERR_LIB_SSL && (ERR_GET_REASON(code) == SSL_R_WRONG_VERSION_NUMBER ||
                                             ERR_GET_REASON(code) == SSL_R_PACKET_LENGTH_TOO_LONG);
    if (err)
        snprintf(err, err_len, "%s%s", why ? why : "protocol error",
                 not_tls ? " (the peer does not speak TLS on this port?)" : "");
    ERR_clear_error();
    return KZ_ERR_CRYPTO;
}

static int clamp(size_t len)
{
    return len > INT_MAX ? INT_MAX : (int)len;
}

ssize_t kz__tls_read(SSL *ssl, void *buf, size_t len, unsigned *want)
{
    ERR_clear_error();
    int n = SSL_read(ssl, buf, clamp(len));
    if (n > 0)
        return n;
    switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_WANT_READ:
        *want = KZ_IO_READ;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        *want = KZ_IO_WRITE;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            *want = KZ_IO_READ;
            return -1;
        }
        ERR_clear_error();
        return errno ? -2 : 0;
    default:
        ERR_clear_error();
        return -2;
    }
}

ssize_t kz__tls_write(SSL *ssl, const void *buf, size_t len, unsigned *want)
{
    ERR_clear_error();
    int n = SSL_write(ssl, buf, clamp(len));
    if (n > 0)
        return n;
    switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_WANT_WRITE:
        *want = KZ_IO_WRITE;
        return -1;
    case SSL_ERROR_WANT_READ:
        *want = KZ_IO_READ;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            *want = KZ_IO_WRITE;
            return -1;
        }
        ERR_clear_error();
        return -2;
    default:
        ERR_clear_error();
        return -2;
    }
}

void kz__tls_close_notify(SSL *ssl)
{
    ERR_clear_error();
    if (SSL_is_init_finished(ssl))
        SSL_shutdown(ssl);
    ERR_clear_error();
}
