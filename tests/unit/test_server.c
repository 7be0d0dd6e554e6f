/*
 * The server on a real loop and real TCP sockets, driven one iteration at a
 * time from the test: handshake, echo, both close handshakes, protocol
 * failures, refusals, backpressure, heartbeats and timeouts (with an
 * injected clock, so no test sleeps), shared messages, graceful shutdown.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kaze/server.h"
#include "kaze/tcp.h"

#include <zlib.h>

struct fixture {
    struct kz_loop *loop;
    struct kz_server *srv;
    struct kz_server_config cfg;
    uint16_t port;
    uint64_t now; /* the injected clock */
    /* what the callbacks saw */
    int opens;
    int closes;
    uint16_t close_code;
    char close_reason[128];
    int messages;
    int drains;
    int pongs;
    struct kz_conn *last_conn;
    int send_rc;
    /* behaviour switches */
    size_t reply_size; /* 0: echo; else answer each message with this many bytes */
    int refuse_status; /* on_upgrade refuses with this status when set */
    bool close_on_message;
};

static uint64_t fake_clock(void *ud)
{
    return ((struct fixture *)ud)->now;
}

static void on_upgrade(struct kz_conn *c, const struct kz_hs_request *req, struct kz_upgrade *up)
{
    struct fixture *f = kz_server_user(kz_conn_server(c));
    static const char *const protos[] = {"chat", "superchat"};
    kz_upgrade_pick_protocol(up, req, protos, 2);
    if (f->refuse_status) {
        up->status = f->refuse_status;
        up->reason = "not for you";
    }
}

static void on_open(struct kz_conn *c)
{
    struct fixture *f = kz_server_user(kz_conn_server(c));
    f->opens++;
    f->last_conn = c;
}

static void on_message(struct kz_conn *c, enum kz_opcode op, const uint8_t *data, size_t len)
{
    struct fixture *f = kz_server_user(kz_conn_server(c));
    f->messages++;
    if (f->close_on_message) {
        f->send_rc = kz_conn_close(c, 4000, "bye", 3);
        return;
    }
    if (f->reply_size) {
        uint8_t *big = calloc(1, f->reply_size);
        f->send_rc = kz_conn_send(c, KZ_OP_BINARY, big, f->reply_size);
        free(big);
        return;
    }
    f->send_rc = kz_conn_send(c, op, data, len);
}

static void on_pong(struct kz_conn *c, const uint8_t *data, size_t len)
{
    struct fixture *f = kz_server_user(kz_conn_server(c));
    f->pongs++;
}

static void on_drain(struct kz_conn *c)
{
    struct fixture *f = kz_server_user(kz_conn_server(c));
    f->drains++;
}

static void on_close(struct kz_conn *c, uint16_t code, struct kz_str reason)
{
    struct fixture *f = kz_server_user(kz_conn_server(c));
    f->closes++;
    if (f->last_conn == c)
        f->last_conn = NULL; /* freed once this returns */
    f->close_code = code;
    size_t n = reason.len < sizeof(f->close_reason) - 1 ? reason.len : sizeof(f->close_reason) - 1;
    memcpy(f->close_reason, reason.ptr, n);
    f->close_reason[n] = '\0';
}

static const struct kz_server_callbacks callbacks = {
    .on_upgrade = on_upgrade,
    .on_open = on_open,
    .on_message = on_message,
    .on_pong = on_pong,
    .on_drain = on_drain,
    .on_close = on_close,
};

static void start(struct fixture *f)
{
    f->loop = kz_loop_new(NULL);
    assert_non_null(f->loop);
    f->now = 1000000;
    kz_loop_set_clock(f->loop, fake_clock, f);
    f->srv = kz_server_new(f->loop, &f->cfg, &callbacks, f, NULL);
    assert_non_null(f->srv);
    assert_int_equal(kz_server_listen(f->srv, "127.0.0.1", 0, false, &f->port), KZ_OK);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    kz_server_config_default(&f->cfg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->srv)
        kz_server_free(f->srv);
    if (f->loop)
        kz_loop_free(f->loop);
    free(f);
    return 0;
}

static void pump(struct fixture *f, int n)
{
    for (int i = 0; i < n; i++)
        kz_loop_run_once(f->loop, 1);
}

static void advance(struct fixture *f, uint64_t ms)
{
    f->now += ms;
    pump(f, 3);
}

/* rcvbuf > 0 shrinks the client's receive buffer (before connecting, as TCP wants). */
static int client_connect_rcvbuf(struct fixture *f, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(f->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    pump(f, 2);
    return fd;
}

static int client_connect(struct fixture *f)
{
    return client_connect_rcvbuf(f, 0);
}

static void client_send(struct fixture *f, int fd, const void *p, size_t n)
{
    assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
    pump(f, 3);
}

/* Reads until `want` bytes arrived, EOF, or the loop has run 200 times. */
static size_t client_recv(struct fixture *f, int fd, uint8_t *buf, size_t want, bool *eof)
{
    size_t got = 0;
    *eof = false;
    for (int i = 0; i < 200 && got < want; i++) {
        pump(f, 1);
        ssize_t n = recv(fd, buf + got, want - got, MSG_DONTWAIT);
        if (n == 0) {
            *eof = true;
            break;
        }
        if (n > 0)
            got += (size_t)n;
    }
    return got;
}

static const char request[] = "GET /chat?room=1 HTTP/1.1\r\n"
                              "Host: server.example.com\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Protocol: superchat, chat\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n";

/* Reads the 101 response, byte by byte so as not to eat the frames behind it. */
static void expect_101(struct fixture *f, int fd)
{
    uint8_t buf[1024];
    size_t got = 0;
    bool eof;
    while (got < sizeof(buf) - 1) {
        got += client_recv(f, fd, buf + got, 1, &eof);
        if (got >= 4 && memcmp(buf + got - 4, "\r\n\r\n", 4) == 0)
            break;
        assert_false(eof);
    }
    buf[got] = 0;
    assert_non_null(strstr((char *)buf, "HTTP/1.1 101 Switching Protocols\r\n"));
    assert_non_null(strstr((char *)buf, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    /* the client's first offer the server supports */
    assert_non_null(strstr((char *)buf, "Sec-WebSocket-Protocol: superchat\r\n"));
}

static int open_client_rcvbuf(struct fixture *f, int rcvbuf)
{
    int fd = client_connect_rcvbuf(f, rcvbuf);
    client_send(f, fd, request, sizeof(request) - 1);
    expect_101(f, fd);
    return fd;
}

static int open_client(struct fixture *f)
{
    return open_client_rcvbuf(f, 0);
}

/* A masked client frame with key 01 02 03 04. */
static size_t make_frame(uint8_t *out, unsigned first_byte, const void *payload, size_t len)
{
    static const uint8_t key[4] = {1, 2, 3, 4};
    size_t h = kz_frame_write_header(out, first_byte & 0xF, first_byte & 0x80, 0, len, key);
    memcpy(out + h, payload, len);
    kz_mask(out + h, len, key, 0);
    return h + len;
}

static void expect_close(struct fixture *f, int fd, uint16_t code)
{
    uint8_t buf[256];
    bool eof;
    size_t got = client_recv(f, fd, buf, 4, &eof);
    assert_int_equal(got, 4);
    assert_int_equal(buf[0], 0x88);
    assert_int_equal(buf[1] & 0x80, 0); /* servers never mask */
    size_t len = buf[1];
    got += client_recv(f, fd, buf + 4, len - 2, &eof);
    assert_int_equal(got, 2 + len);
    assert_int_equal((buf[2] << 8) | buf[3], code);
}

static void expect_eof(struct fixture *f, int fd)
{
    uint8_t buf[64];
    bool eof = false;
    client_recv(f, fd, buf, sizeof(buf), &eof);
    assert_true(eof);
}

static void echo_and_client_close(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = open_client(f);
    assert_int_equal(f->opens, 1);

    uint8_t frame[64], buf[64];
    size_t n = make_frame(frame, 0x81, "Hello", 5);
    client_send(f, fd, frame, n);
    bool eof;
    assert_int_equal(client_recv(f, fd, buf, 7, &eof), 7);
    assert_memory_equal(buf, "\x81\x05Hello", 7);

    uint8_t close_payload[] = {0x03, 0xe8, 'o', 'k'};
    n = make_frame(frame, 0x88, close_payload, sizeof(close_payload));
    client_send(f, fd, frame, n);
    expect_close(f, fd, 1000);
    expect_eof(f, fd); /* the server closes TCP first */
    assert_int_equal(f->closes, 1);
    assert_int_equal(f->close_code, 1000);
    assert_string_equal(f->close_reason, "ok");
    close(fd);
    pump(f, 2);
    assert_int_equal(kz_server_conn_count(f->srv), 0);
}

static void frames_behind_the_request(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = client_connect(f);
    uint8_t all[1024];
    memcpy(all, request, sizeof(request) - 1);
    size_t n = sizeof(request) - 1;
    n += make_frame(all + n, 0x82, "\x01\x02\x03", 3);
    n += make_frame(all + n, 0x81, "abc", 3);
    client_send(f, fd, all, n);
    expect_101(f, fd);
    uint8_t buf[16];
    bool eof;
    assert_int_equal(client_recv(f, fd, buf, 10, &eof), 10);
    assert_memory_equal(buf,
                        "\x82\x03\x01\x02\x03\x81\x03"
                        "abc",
                        10);
    assert_int_equal(f->messages, 2);
    close(fd);
}

static void server_close_handshake(void **state)
{
    struct fixture *f = *state;
    f->close_on_message = true;
    start(f);
    int fd = open_client(f);
    uint8_t frame[64];
    size_t n = make_frame(frame, 0x81, "x", 1);
    client_send(f, fd, frame, n);
    assert_int_equal(f->send_rc, KZ_OK);
    expect_close(f, fd, 4000);
    assert_int_equal(f->closes, 0); /* waits for the peer's reply */
    uint8_t reply[] = {0x0f, 0xa0};
    n = make_frame(frame, 0x88, reply, 2);
    client_send(f, fd, frame, n);
    expect_eof(f, fd);
    assert_int_equal(f->closes, 1);
    assert_int_equal(f->close_code, 4000);
    assert_string_equal(f->close_reason, "bye");
    close(fd);
}

static void close_timeout_when_peer_is_silent(void **state)
{
    struct fixture *f = *state;
    f->close_on_message = true;
    f->cfg.close_timeout_ms = 2000;
    start(f);
    int fd = open_client(f);
    uint8_t frame[64];
    size_t n = make_frame(frame, 0x81, "x", 1);
    client_send(f, fd, frame, n);
    expect_close(f, fd, 4000);
    advance(f, 1999);
    assert_int_equal(f->closes, 0);
    advance(f, 2);
    assert_int_equal(f->closes, 1);
    expect_eof(f, fd);
    close(fd);
}

static void protocol_error_closes_with_1002(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = open_client(f);
    uint8_t frame[64];
    size_t n = make_frame(frame, 0x81, "ok", 2);
    frame[n++] = 0x81; /* unmasked: a client must mask */
    frame[n++] = 0x00;
    client_send(f, fd, frame, n);
    uint8_t buf[4];
    bool eof;
    assert_int_equal(client_recv(f, fd, buf, 4, &eof), 4);
    assert_memory_equal(buf, "\x81\x02ok", 4); /* the valid message first */
    expect_close(f, fd, 1002);
    assert_int_equal(f->closes, 1);
    assert_int_equal(f->close_code, 1002);
    shutdown(fd, SHUT_WR);
    expect_eof(f, fd);
    close(fd);
}

static void invalid_utf8_closes_with_1007(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = open_client(f);
    uint8_t frame[64];
    /* the first fragment is already invalid: the server must not wait for the rest */
    size_t n = make_frame(frame, 0x01, "\xce\xba\xed\xa0\x80", 5);
    client_send(f, fd, frame, n);
    expect_close(f, fd, 1007);
    assert_int_equal(f->close_code, 1007);
    close(fd);
}

static void too_big_closes_with_1009(void **state)
{
    struct fixture *f = *state;
    f->cfg.max_message_size = 100;
    start(f);
    int fd = open_client(f);
    uint8_t frame[256], payload[101] = {0};
    size_t n = make_frame(frame, 0x82, payload, sizeof(payload));
    client_send(f, fd, frame, n);
    expect_close(f, fd, 1009);
    close(fd);
}

static void malformed_request_gets_400(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = client_connect(f);
    const char bad[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n"; /* no Upgrade */
    client_send(f, fd, bad, sizeof(bad) - 1);
    char buf[512] = {0};
    bool eof;
    client_recv(f, fd, (uint8_t *)buf, sizeof(buf) - 1, &eof);
    assert_memory_equal(buf, "HTTP/1.1 400 ", 13);
    assert_true(eof);
    assert_int_equal(f->opens, 0);
    close(fd);
}

static void wrong_version_gets_426(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = client_connect(f);
    const char bad[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 8\r\n\r\n";
    client_send(f, fd, bad, sizeof(bad) - 1);
    char buf[512] = {0};
    bool eof;
    client_recv(f, fd, (uint8_t *)buf, sizeof(buf) - 1, &eof);
    assert_memory_equal(buf, "HTTP/1.1 426 ", 13);
    assert_non_null(strstr(buf, "Sec-WebSocket-Version: 13\r\n"));
    close(fd);
}

static void application_refusal(void **state)
{
    struct fixture *f = *state;
    f->refuse_status = 403;
    start(f);
    int fd = client_connect(f);
    client_send(f, fd, request, sizeof(request) - 1);
    char buf[512] = {0};
    bool eof;
    client_recv(f, fd, (uint8_t *)buf, sizeof(buf) - 1, &eof);
    assert_memory_equal(buf, "HTTP/1.1 403 ", 13);
    assert_non_null(strstr(buf, "not for you"));
    assert_true(eof);
    assert_int_equal(f->opens, 0);
    close(fd);
}

static void handshake_timeout(void **state)
{
    struct fixture *f = *state;
    f->cfg.handshake_timeout_ms = 3000;
    start(f);
    int fd = client_connect(f);
    client_send(f, fd, "GET / HTTP/1.1\r\n", 16); /* and then nothing */
    advance(f, 2999);
    assert_int_equal(kz_server_conn_count(f->srv), 1);
    advance(f, 2);
    expect_eof(f, fd);
    assert_int_equal(kz_server_conn_count(f->srv), 0);
    close(fd);
}

static void heartbeat_drops_a_silent_peer(void **state)
{
    struct fixture *f = *state;
    f->cfg.ping_interval_ms = 1000;
    f->cfg.pong_timeout_ms = 500;
    start(f);
    int fd = open_client(f);
    advance(f, 1000);
    uint8_t buf[8];
    bool eof;
    assert_int_equal(client_recv(f, fd, buf, 2, &eof), 2);
    assert_memory_equal(buf, "\x89\x00", 2); /* the heartbeat ping */
    advance(f, 499);
    assert_int_equal(f->closes, 0);
    advance(f, 2);
    assert_int_equal(f->closes, 1);
    assert_int_equal(f->close_code, 1006);
    expect_eof(f, fd);
    close(fd);
}

static void heartbeat_keeps_a_live_peer(void **state)
{
    struct fixture *f = *state;
    f->cfg.ping_interval_ms = 1000;
    f->cfg.pong_timeout_ms = 500;
    start(f);
    int fd = open_client(f);
    for (int round = 0; round < 5; round++) {
        advance(f, 1000);
        uint8_t buf[8], frame[16];
        bool eof;
        assert_int_equal(client_recv(f, fd, buf, 2, &eof), 2);
        assert_memory_equal(buf, "\x89\x00", 2);
        advance(f, 400);
        size_t n = make_frame(frame, 0x8A, "", 0);
        client_send(f, fd, frame, n);
    }
    assert_int_equal(f->pongs, 5);
    assert_int_equal(f->closes, 0);
    close(fd);
}

static void idle_timeout_closes_with_1001(void **state)
{
    struct fixture *f = *state;
    f->cfg.ping_interval_ms = 0;
    f->cfg.idle_timeout_ms = 5000;
    start(f);
    int fd = open_client(f);
    advance(f, 4000);
    uint8_t frame[16];
    size_t n = make_frame(frame, 0x81, "a", 1);
    client_send(f, fd, frame, n); /* activity moves the deadline */
    advance(f, 4000);
    uint8_t buf[8];
    bool eof;
    assert_int_equal(client_recv(f, fd, buf, 3, &eof), 3);
    advance(f, 1001);
    expect_close(f, fd, 1001);
    close(fd);
}

/* A client that never reads: the server's queue for it stays bounded. */
static void backpressure_closes_a_slow_reader(void **state)
{
    struct fixture *f = *state;
    f->cfg.max_buffered = 256 * 1024;
    f->reply_size = 64 * 1024;
    start(f);
    int slow = open_client_rcvbuf(f, 4096);
    uint8_t frame[16];
    size_t n = make_frame(frame, 0x81, "a", 1);
    for (int i = 0; i < 200 && f->closes == 0; i++) {
        client_send(f, slow, frame, n);
        if (f->last_conn)
            assert_true(kz_conn_buffered(f->last_conn) <= f->cfg.max_buffered);
    }
    assert_int_equal(f->closes, 1);
    assert_int_equal(f->close_code, 1008);

    /* another client is served as usual */
    f->reply_size = 0;
    int other = open_client(f);
    client_send(f, other, frame, n);
    uint8_t buf[3];
    bool eof;
    assert_int_equal(client_recv(f, other, buf, 3, &eof), 3);
    assert_memory_equal(buf,
                        "\x81\x01"
                        "a",
                        3);
    close(slow);
    close(other);
}

static void backpressure_drop_keeps_the_connection(void **state)
{
    struct fixture *f = *state;
    f->cfg.max_buffered = 256 * 1024;
    f->cfg.backpressure = KZ_BP_DROP;
    f->reply_size = 64 * 1024;
    start(f);
    int slow = open_client_rcvbuf(f, 4096);
    uint8_t frame[16];
    size_t n = make_frame(frame, 0x81, "a", 1);
    bool dropped = false;
    for (int i = 0; i < 200 && !dropped; i++) {
        client_send(f, slow, frame, n);
        dropped = f->send_rc == KZ_ERR_BACKPRESSURE;
        assert_non_null(f->last_conn);
        assert_true(kz_conn_buffered(f->last_conn) <= f->cfg.max_buffered);
    }
    assert_true(dropped);
    assert_int_equal(f->closes, 0);
    /* reading everything lets the queue drain, and on_drain says so */
    uint8_t sink[65536];
    for (int i = 0; i < 2000 && kz_conn_buffered(f->last_conn) > 0; i++) {
        pump(f, 1);
        while (recv(slow, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
        }
    }
    pump(f, 2);
    assert_int_equal(kz_conn_buffered(f->last_conn), 0);
    assert_true(f->drains >= 1);
    close(slow);
}

static void shared_message_to_many(void **state)
{
    struct fixture *f = *state;
    start(f);
    int a = open_client(f);
    struct kz_conn *ca = f->last_conn;
    int b = open_client(f);
    struct kz_conn *cb = f->last_conn;
    struct kz_msg *m = kz_msg_new(f->srv, KZ_OP_TEXT, "news", 4);
    assert_non_null(m);
    assert_int_equal(kz_conn_send_msg(ca, m), KZ_OK);
    assert_int_equal(kz_conn_send_msg(cb, m), KZ_OK);
    kz_msg_unref(m);
    uint8_t buf[6];
    bool eof;
    assert_int_equal(client_recv(f, a, buf, 6, &eof), 6);
    assert_memory_equal(buf, "\x81\x04news", 6);
    assert_int_equal(client_recv(f, b, buf, 6, &eof), 6);
    assert_memory_equal(buf, "\x81\x04news", 6);
    close(a);
    close(b);
}

static void max_connections_gets_503(void **state)
{
    struct fixture *f = *state;
    f->cfg.max_connections = 1;
    start(f);
    int a = open_client(f);
    int b = client_connect(f);
    client_send(f, b, request, sizeof(request) - 1); /* accepted once it speaks */
    char buf[256] = {0};
    bool eof;
    client_recv(f, b, (uint8_t *)buf, sizeof(buf) - 1, &eof);
    assert_memory_equal(buf, "HTTP/1.1 503 ", 13);
    close(a);
    close(b);
}

static void graceful_shutdown(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = open_client(f);
    kz_server_shutdown(f->srv);
    expect_close(f, fd, 1001);
    uint8_t frame[16];
    uint8_t reply[] = {0x03, 0xe9};
    size_t n = make_frame(frame, 0x88, reply, 2);
    client_send(f, fd, frame, n);
    expect_eof(f, fd);
    assert_int_equal(f->closes, 1);
    assert_int_equal(f->close_code, 1001);
    close(fd); /* the peer's FIN ends the server's wait */
    pump(f, 3);
    assert_int_equal(kz_server_conn_count(f->srv), 0);
    assert_false(kz_loop_alive(f->loop)); /* nothing left: the loop would return */
}

/* Raw DEFLATE with zlib, as an independent peer would do it (RFC 7692 §7.2.1). */
static size_t client_deflate(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    z_stream z = {0};
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    assert_true(n >= 4);
    assert_memory_equal(out + n - 4, "\x00\x00\xff\xff", 4);
    return n - 4;
}

static size_t client_inflate(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    uint8_t buf[70000];
    memcpy(buf, in, len);
    memcpy(buf + len, "\x00\x00\xff\xff", 4);
    z_stream z = {0};
    assert_int_equal(inflateInit2(&z, -15), Z_OK);
    z.next_in = buf;
    z.avail_in = (uInt)(len + 4);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_SYNC_FLUSH);
    assert_true(rc == Z_OK || rc == Z_BUF_ERROR);
    size_t n = cap - z.avail_out;
    inflateEnd(&z);
    return n;
}

static const char deflate_request[] = "GET / HTTP/1.1\r\n"
                                      "Host: server.example.com\r\n"
                                      "Upgrade: websocket\r\n"
                                      "Connection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                      "Sec-WebSocket-Extensions: permessage-deflate; "
                                      "client_max_window_bits\r\n"
                                      "Sec-WebSocket-Version: 13\r\n\r\n";

static int open_deflate_client(struct fixture *f)
{
    int fd = client_connect(f);
    client_send(f, fd, deflate_request, sizeof(deflate_request) - 1);
    char buf[1024];
    size_t got = 0;
    bool eof;
    while (got < sizeof(buf) - 1) {
        got += client_recv(f, fd, (uint8_t *)buf + got, 1, &eof);
        if (got >= 4 && memcmp(buf + got - 4, "\r\n\r\n", 4) == 0)
            break;
        assert_false(eof);
    }
    buf[got] = 0;
    assert_non_null(strstr(buf, "HTTP/1.1 101 "));
    assert_non_null(strstr(buf, "Sec-WebSocket-Extensions: permessage-deflate"));
    return fd;
}

static void deflate_echo(void **state)
{
    struct fixture *f = *state;
    f->cfg.deflate.enabled = true;
    start(f);
    int fd = open_deflate_client(f);
    uint8_t text[1000], z[2048], frame[2100], reply[2100], plain[1100];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (uint8_t)('a' + i % 7);
    size_t zn = client_deflate(text, sizeof(text), z, sizeof(z));
    size_t n = make_frame(frame, 0x81, z, zn);
    frame[0] |= 0x40; /* RSV1: compressed */
    client_send(f, fd, frame, n);
    bool eof;
    assert_int_equal(client_recv(f, fd, reply, 2, &eof), 2);
    assert_int_equal(reply[0], 0xC1); /* text, compressed: 1000 bytes is over the threshold */
    size_t len = reply[1] & 0x7F;
    assert_true(len < 126);
    assert_int_equal(client_recv(f, fd, reply + 2, len, &eof), len);
    assert_int_equal(client_inflate(reply + 2, len, plain, sizeof(plain)), sizeof(text));
    assert_memory_equal(plain, text, sizeof(text));
    assert_int_equal(f->messages, 1);

    /* A short message goes back uncompressed. */
    zn = client_deflate((const uint8_t *)"Hello", 5, z, sizeof(z));
    n = make_frame(frame, 0x81, z, zn);
    frame[0] |= 0x40;
    client_send(f, fd, frame, n);
    assert_int_equal(client_recv(f, fd, reply, 7, &eof), 7);
    assert_memory_equal(reply, "\x81\x05Hello", 7);
    close(fd);
}

static void deflate_bomb_closes_with_1009(void **state)
{
    struct fixture *f = *state;
    f->cfg.deflate.enabled = true;
    f->cfg.max_message_size = 64 * 1024;
    start(f);
    int fd = open_deflate_client(f);
    uint8_t *zeros = calloc(1, 1 << 20);
    static uint8_t z[8192];
    size_t zn = client_deflate(zeros, 1 << 20, z, sizeof(z)); /* 1 MiB of zeros: ~1 KiB */
    free(zeros);
    uint8_t *frame = malloc(zn + 16);
    size_t n = make_frame(frame, 0x82, z, zn);
    frame[0] |= 0x40;
    client_send(f, fd, frame, n);
    free(frame);
    expect_close(f, fd, 1009);
    assert_int_equal(f->messages, 0);
    close(fd);
}

/* Shared mode: a broadcast is compressed once and the same bytes go to every taker. */
static void deflate_shared_broadcast(void **state)
{
    struct fixture *f = *state;
    f->cfg.deflate.enabled = true;
    f->cfg.deflate_mode = KZ_DEFLATE_SHARED;
    start(f);
    int a = open_deflate_client(f);
    struct kz_conn *ca = f->last_conn;
    int b = open_deflate_client(f);
    struct kz_conn *cb = f->last_conn;
    static const char quote[] = "{\"price\": 12.5, \"sym\": \"KZE\"} ";
    char text[2000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = quote[i % (sizeof(quote) - 1)];
    struct kz_msg *m = kz_msg_new(f->srv, KZ_OP_TEXT, text, sizeof(text));
    assert_int_equal(kz_conn_send_msg(ca, m), KZ_OK);
    assert_int_equal(kz_conn_send_msg(cb, m), KZ_OK);
    kz_msg_unref(m);
    uint8_t fa[2100], fb[2100], plain[2100];
    bool eof;
    assert_int_equal(client_recv(f, a, fa, 2, &eof), 2);
    assert_int_equal(fa[0], 0xC1);
    size_t len = fa[1];
    assert_true(len < 126);
    assert_int_equal(client_recv(f, a, fa + 2, len, &eof), len);
    assert_int_equal(client_recv(f, b, fb, len + 2, &eof), len + 2);
    assert_memory_equal(fa, fb, len + 2);
    assert_int_equal(client_inflate(fa + 2, len, plain, sizeof(plain)), sizeof(text));
    assert_memory_equal(plain, text, sizeof(text));
    close(a);
    close(b);
}

static void rsv1_without_deflate_closes_with_1002(void **state)
{
    struct fixture *f = *state;
    start(f); /* deflate off */
    int fd = open_client(f);
    uint8_t frame[32];
    size_t n = make_frame(frame, 0x81, "abc", 3);
    frame[0] |= 0x40;
    client_send(f, fd, frame, n);
    expect_close(f, fd, 1002);
    close(fd);
}

static void abrupt_drop_reports_1006(void **state)
{
    struct fixture *f = *state;
    start(f);
    int fd = open_client(f);
    close(fd);
    pump(f, 5);
    assert_int_equal(f->closes, 1);
    assert_int_equal(f->close_code, 1006);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(echo_and_client_close),
        T(frames_behind_the_request),
        T(server_close_handshake),
        T(close_timeout_when_peer_is_silent),
        T(protocol_error_closes_with_1002),
        T(invalid_utf8_closes_with_1007),
        T(too_big_closes_with_1009),
        T(malformed_request_gets_400),
        T(wrong_version_gets_426),
        T(application_refusal),
        T(handshake_timeout),
        T(heartbeat_drops_a_silent_peer),
        T(heartbeat_keeps_a_live_peer),
        T(idle_timeout_closes_with_1001),
        T(backpressure_closes_a_slow_reader),
        T(backpressure_drop_keeps_the_connection),
        T(shared_message_to_many),
        T(max_connections_gets_503),
        T(graceful_shutdown),
        T(abrupt_drop_reports_1006),
        T(deflate_echo),
        T(deflate_bomb_closes_with_1009),
        T(deflate_shared_broadcast),
        T(rsv1_without_deflate_closes_with_1002),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
