/*
 * wss:// end to end on one loop: libkaze's TLS server and client with
 * certificates made by the test (OpenSSL, in a temporary directory), and a
 * raw OpenSSL client for what kz_client does not expose (the certificate a
 * server presents, by SNI and after a reload). Covers verification (CA,
 * host name, --insecure), plain HTTP at a TLS port (400), TLS at a plain
 * port, SNI, reloading certificates under open connections, and the TLS
 * handshake deadline with an injected clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "kaze/client.h"
#include "kaze/tcp.h"
#include "kaze/tls.h"

/* ------------------------------------------------------------------------
 * Certificates
 */

struct cert_files {
    char cert[96];
    char key[96];
};

static char tmpdir[64];

/* A self-signed certificate for `cn` with subjectAltName `san`, usable as its own CA. */
static void make_cert(const char *name, const char *cn, const char *san, long serial,
                      struct cert_files *out)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *subject = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, subject);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    static const char *const exts[][2] = {{"basicConstraints", "critical,CA:TRUE"},
                                          {"subjectAltName", NULL}};
    for (int i = 0; i < 2; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1] ? exts[i][1] : san);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    snprintf(out->cert, sizeof(out->cert), "%s/%s.pem", tmpdir, name);
    snprintf(out->key, sizeof(out->key), "%s/%s.key", tmpdir, name);
    FILE *f = fopen(out->cert, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(out->key, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

static struct cert_files main_cert, other_cert, wrong_cert;

static int group_setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kaze-tls-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    make_cert("main", "kaze main", "DNS:localhost,IP:127.0.0.1", 1, &main_cert);
    make_cert("other", "kaze other", "DNS:other.test", 2, &other_cert);
    make_cert("wrong", "kaze wrong", "DNS:wrong.test", 3, &wrong_cert);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------
 * Fixture
 */

struct fixture {
    struct kz_loop *loop;
    uint64_t now;
    struct kz_tls_server *tls;
    struct kz_server *srv;
    struct kz_server_config scfg;
    uint16_t port;
    struct kz_client *cl;
    struct kz_client_config ccfg;
    int tls_errors;
    char tls_error[256];
    int opens, closes, errors, messages;
    size_t last_len;
    char last_message[64];
    struct kz_client_error last_error;
    char last_detail[256];
};

static uint64_t fake_clock(void *ud)
{
    return ((struct fixture *)ud)->now;
}

static void s_on_message(struct kz_conn *c, enum kz_opcode op, const uint8_t *data, size_t len)
{
    kz_conn_send(c, op, data, len);
}

static void s_on_tls_error(struct kz_conn *c, const char *detail)
{
    struct fixture *f = kz_server_user(kz_conn_server(c));
    f->tls_errors++;
    snprintf(f->tls_error, sizeof(f->tls_error), "%s", detail);
}

static const struct kz_server_callbacks server_cb = {
    .on_message = s_on_message,
    .on_tls_error = s_on_tls_error,
};

static void c_on_open(struct kz_conn *c)
{
    struct fixture *f = kz_client_user(kz_conn_client(c));
    f->opens++;
}

static void c_on_message(struct kz_conn *c, enum kz_opcode op, const uint8_t *data, size_t len)
{
    struct fixture *f = kz_client_user(kz_conn_client(c));
    f->messages++;
    f->last_len = len;
    snprintf(f->last_message, sizeof(f->last_message), "%.*s", (int)(len < 63 ? len : 63),
             (const char *)data);
}

static void c_on_close(struct kz_conn *c, uint16_t code, struct kz_str reason)
{
    struct fixture *f = kz_client_user(kz_conn_client(c));
    f->closes++;
}

static void c_on_error(struct kz_client *cl, const struct kz_client_error *e)
{
    struct fixture *f = kz_client_user(cl);
    f->errors++;
    f->last_error = *e;
    snprintf(f->last_detail, sizeof(f->last_detail), "%s", e->detail);
}

static const struct kz_client_callbacks client_cb = {
    .on_open = c_on_open,
    .on_message = c_on_message,
    .on_close = c_on_close,
    .on_connect_error = c_on_error,
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->loop = kz_loop_new(NULL);
    f->now = 1000000;
    kz_loop_set_clock(f->loop, fake_clock, f);
    kz_server_config_default(&f->scfg);
    kz_client_config_default(&f->ccfg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kz_client_free(f->cl);
    kz_server_free(f->srv);
    kz_tls_server_free(f->tls);
    kz_loop_free(f->loop);
    free(f);
    return 0;
}

/* A server presenting `certs` (none: plain ws://). */
static void start_server(struct fixture *f, const struct cert_files *certs, size_t n)
{
    if (n) {
        struct kz_tls_cert tc[4];
        for (size_t i = 0; i < n; i++)
            tc[i] = (struct kz_tls_cert){certs[i].cert, certs[i].key};
        struct kz_tls_server_config cfg = {.certs = tc, .num_certs = n};
        char err[256];
        f->tls = kz_tls_server_new(&cfg, err, sizeof(err));
        assert_non_null(f->tls);
        f->scfg.tls = f->tls;
    }
    f->srv = kz_server_new(f->loop, &f->scfg, &server_cb, f, NULL);
    assert_non_null(f->srv);
    assert_int_equal(kz_server_listen(f->srv, "127.0.0.1", 0, false, &f->port), KZ_OK);
}

static void start_client(struct fixture *f, const char *scheme)
{
    char url[64];
    snprintf(url, sizeof(url), "%s://127.0.0.1:%u/", scheme, f->port);
    int err;
    f->cl = kz_client_new(f->loop, url, &f->ccfg, &client_cb, f, NULL, &err);
    assert_non_null(f->cl);
    assert_int_equal(kz_client_start(f->cl), KZ_OK);
}

#define RUN_UNTIL(f, cond)                                                                         \
    do {                                                                                           \
        for (int i_ = 0; i_ < 3000 && !(cond); i_++)                                               \
            kz_loop_run_once((f)->loop, 10);                                                       \
        assert_true(cond);                                                                         \
    } while (0)

/*
 * A raw OpenSSL client on a non-blocking socket, its handshake driven
 * between loop iterations (the server runs on the same thread). Returns the
 * CN of the certificate the server presented, for `sni` (NULL: none).
 */
static void presented_cn(struct fixture *f, const char *sni, char *cn, size_t cap)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = kz_tcp_connect((struct sockaddr *)&sa, sizeof(sa));
    assert_true(fd >= 0);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    int rc = 0;
    for (int i = 0; i < 3000 && rc != 1; i++) {
        rc = SSL_connect(ssl);
        if (rc != 1) {
            int e = SSL_get_error(ssl, rc);
            assert_true(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
            kz_loop_run_once(f->loop, 5);
        }
    }
    assert_int_equal(rc, 1);
    X509 *peer = SSL_get1_peer_certificate(ssl);
    assert_non_null(peer);
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, (int)cap);
    X509_free(peer);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    ERR_clear_error();
}

/* ------------------------------------------------------------------------
 * Tests
 */

static void wss_echo_verified(void **state)
{
    struct fixture *f = *state;
    start_server(f, &main_cert, 1);
    f->ccfg.tls_ca_file = main_cert.cert;
    start_client(f, "wss");
    RUN_UNTIL(f, f->opens == 1);
    struct kz_conn *c = kz_client_conn(f->cl);
    assert_int_equal(kz_conn_send(c, KZ_OP_TEXT, "over tls", 8), KZ_OK);
    RUN_UNTIL(f, f->messages == 1);
    assert_string_equal(f->last_message, "over tls");
    /* Larger than a TLS record and than a queue chunk, both ways. */
    size_t n = 300000;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 7);
    assert_int_equal(kz_conn_send(c, KZ_OP_BINARY, big, n), KZ_OK);
    RUN_UNTIL(f, f->messages == 2);
    assert_int_equal(f->last_len, n);
    free(big);
    /* Many small messages: corked into few records, and all come back. */
    for (int i = 0; i < 500; i++)
        kz_conn_send(c, KZ_OP_TEXT, "x", 1);
    RUN_UNTIL(f, f->messages == 502);
    kz_client_close(f->cl, KZ_CLOSE_NORMAL, NULL, 0);
    RUN_UNTIL(f, f->closes == 1);
    RUN_UNTIL(f, kz_server_conn_count(f->srv) == 0);
    assert_int_equal(f->tls_errors, 0);
}

static void wrong_host_is_refused(void **state)
{
    struct fixture *f = *state;
    start_server(f, &wrong_cert, 1);
    f->ccfg.tls_ca_file = wrong_cert.cert;
    start_client(f, "wss");
    RUN_UNTIL(f, f->errors == 1);
    assert_int_equal(f->last_error.err, KZ_ERR_TLS);
    assert_non_null(strstr(f->last_detail, "verification failed"));
    assert_int_equal(f->opens, 0);
    RUN_UNTIL(f, f->tls_errors == 1); /* the server saw the client's alert */
}

static void untrusted_ca_is_refused(void **state)
{
    struct fixture *f = *state;
    start_server(f, &main_cert, 1);
    f->ccfg.tls_ca_file = other_cert.cert; /* trusts another certificate */
    start_client(f, "wss");
    RUN_UNTIL(f, f->errors == 1);
    assert_int_equal(f->last_error.err, KZ_ERR_TLS);
}

static void insecure_skips_verification(void **state)
{
    struct fixture *f = *state;
    start_server(f, &wrong_cert, 1);
    f->ccfg.tls_insecure = true;
    start_client(f, "wss");
    RUN_UNTIL(f, f->opens == 1);
}

static void plain_http_at_tls_port_gets_400(void **state)
{
    struct fixture *f = *state;
    start_server(f, &main_cert, 1);
    start_client(f, "ws");
    RUN_UNTIL(f, f->errors == 1);
    assert_int_equal(f->last_error.err, KZ_ERR_HS_RESP_STATUS);
    assert_int_equal(f->last_error.status, 400);
    assert_int_equal(f->tls_errors, 1);
    assert_non_null(strstr(f->tls_error, "plain HTTP"));
    RUN_UNTIL(f, kz_server_conn_count(f->srv) == 0);
}

static void tls_at_plain_port_fails_cleanly(void **state)
{
    struct fixture *f = *state;
    start_server(f, NULL, 0);
    f->ccfg.tls_insecure = true;
    start_client(f, "wss");
    RUN_UNTIL(f, f->errors == 1);
    assert_int_equal(f->last_error.err, KZ_ERR_TLS);
    RUN_UNTIL(f, kz_server_conn_count(f->srv) == 0);
}

static void sni_picks_the_certificate(void **state)
{
    struct fixture *f = *state;
    struct cert_files both[2] = {main_cert, other_cert};
    start_server(f, both, 2);
    char cn[64];
    presented_cn(f, "other.test", cn, sizeof(cn));
    assert_string_equal(cn, "kaze other");
    presented_cn(f, "localhost", cn, sizeof(cn));
    assert_string_equal(cn, "kaze main");
    presented_cn(f, NULL, cn, sizeof(cn));
    assert_string_equal(cn, "kaze main");
}

static void reload_keeps_open_connections(void **state)
{
    struct fixture *f = *state;
    /* The server's files are copies this test may overwrite. */
    struct cert_files live;
    snprintf(live.cert, sizeof(live.cert), "%s/live.pem", tmpdir);
    snprintf(live.key, sizeof(live.key), "%s/live.key", tmpdir);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s %s", main_cert.cert, live.cert, main_cert.key,
             live.key);
    assert_int_equal(system(cmd), 0);
    start_server(f, &live, 1);
    f->ccfg.tls_insecure = true;
    start_client(f, "wss");
    RUN_UNTIL(f, f->opens == 1);

    snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s %s", other_cert.cert, live.cert, other_cert.key,
             live.key);
    assert_int_equal(system(cmd), 0);
    char err[256];
    assert_int_equal(kz_tls_server_reload(f->tls, err, sizeof(err)), KZ_OK);
    char cn[64];
    presented_cn(f, NULL, cn, sizeof(cn));
    assert_string_equal(cn, "kaze other"); /* new connections: the new certificate */
    kz_conn_send(kz_client_conn(f->cl), KZ_OP_TEXT, "still here", 10);
    RUN_UNTIL(f, f->messages == 1); /* the open one: untouched */
    assert_string_equal(f->last_message, "still here");

    /* A broken file: the reload fails, says why, and the old certificates stay. */
    snprintf(cmd, sizeof(cmd), "echo broken > %s", live.key);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(kz_tls_server_reload(f->tls, err, sizeof(err)), KZ_ERR_CRYPTO);
    assert_non_null(strstr(err, "private key"));
    presented_cn(f, NULL, cn, sizeof(cn));
    assert_string_equal(cn, "kaze other");
}

static void tls_handshake_deadline(void **state)
{
    struct fixture *f = *state;
    f->scfg.tls_handshake_timeout_ms = 2000;
    start_server(f, &main_cert, 1);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, "\x16\x03\x01", 3), 3); /* the start of a ClientHello, no more */
    RUN_UNTIL(f, kz_server_conn_count(f->srv) == 1);
    f->now += 1999;
    kz_loop_update_time(f->loop);
    kz_loop_run_once(f->loop, 0);
    assert_int_equal(kz_server_conn_count(f->srv), 1);
    f->now += 1;
    kz_loop_update_time(f->loop);
    RUN_UNTIL(f, kz_server_conn_count(f->srv) == 0);
    char b;
    assert_true(read(fd, &b, 1) <= 0); /* closed on us */
    close(fd);
}

static void bad_server_config(void **state)
{
    char err[256];
    struct kz_tls_cert mismatched = {main_cert.cert, other_cert.key};
    struct kz_tls_server_config cfg = {.certs = &mismatched, .num_certs = 1};
    assert_null(kz_tls_server_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "does not match"));
    struct kz_tls_cert missing = {"/nonexistent.pem", main_cert.key};
    cfg.certs = &missing;
    assert_null(kz_tls_server_new(&cfg, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent.pem"));
    cfg.num_certs = 0;
    assert_null(kz_tls_server_new(&cfg, err, sizeof(err)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(wss_echo_verified, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_host_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(untrusted_ca_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(insecure_skips_verification, setup, teardown),
        cmocka_unit_test_setup_teardown(plain_http_at_tls_port_gets_400, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_at_plain_port_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(sni_picks_the_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(reload_keeps_open_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_handshake_deadline, setup, teardown),
        cmocka_unit_test(bad_server_config),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
