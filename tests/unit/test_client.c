/*
 * The client on a real loop and real TCP sockets, against libkaze's server
 * or a scripted fake server on the same loop, driven one iteration at a
 * time: open, echo (the server refuses unmasked frames, so every echo also
 * proves masking), both close handshakes, every wrong handshake answer, a
 * proxy's refusal, timeouts and the reconnection schedule with an injected
 * clock and injected randomness (no test sleeps), reconnection rules, and
 * the offline queue.
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

#include "kaze/client.h"
#include "kaze/tcp.h"

/* ------------------------------------------------------------------------
 * Fixture: a loop with an injected clock, a libkaze echo server, a client
 */

struct fixture {
    struct kz_loop *loop;
    uint64_t now;
    struct kz_server *srv;
    struct kz_server_config scfg;
    uint16_t port;
    struct kz_client *cl;
    struct kz_client_config ccfg;
    /* what the server saw */
    int srv_messages;
    char srv_log[256];             /* messages the server received, '|'-separated */
    uint16_t srv_close_on_message; /* close with this code on the first message */
    char srv_protocol[32];
    char srv_header[64]; /* the value of X-Test the client sent */
    /* what the client saw */
    int opens, closes, errors, reconnects, connectings, ends;
    int messages;
    char last_message[256];
    uint16_t close_code;
    struct kz_client_error last_error;
    char last_detail[256];
    uint32_t delays[16];
    /* behaviour */
    const char *send_on_open;
    int send_on_open_rc;
    /* randomness for the backoff, in turn */
    uint32_t randoms[8];
    unsigned next_random;
    /* a fake server: accepts, reads the request, answers `answer` */
    int fake_fd;
    struct kz_io fake_listener;
    struct kz_io fake_conn;
    char fake_request[4096];
    size_t fake_request_len;
    const char *answer; /* "%s" in it is replaced by the right Sec-WebSocket-Accept */
    bool fake_silent;   /* never answer */
};

static uint64_t fake_clock(void *ud)
{
    return ((struct fixture *)ud)->now;
}

static uint32_t fake_random(void *ud)
{
    struct fixture *f = ud;
    return f->randoms[f->next_random++ % 8];
}

/* server side */
static void s_on_upgrade(struct kz_conn *c, const struct kz_hs_request *req, struct kz_upgrade *up)
{
    struct fixture *f = kz_server_user(kz_conn_server(c));
    static const char *const protos[] = {"superchat"};
    if (kz_upgrade_pick_protocol(up, req, protos, 1))
        snprintf(f->srv_protocol, sizeof(f->srv_protocol), "%.*s", (int)up->subprotocol.len,
                 up->subprotocol.ptr);
    struct kz_str h = kz_hs_header(req->headers, req->num_headers, "X-Test");
    snprintf(f->srv_header, sizeof(f->srv_header), "%.*s", (int)h.len, h.ptr ? h.ptr : "");
}

static void s_on_message(struct kz_conn *c, enum kz_opcode op, const uint8_t *data, size_t len)
{
    struct fixture *f = kz_server_user(kz_conn_server(c));
    f->srv_messages++;
    size_t at = strlen(f->srv_log);
    snprintf(f->srv_log + at, sizeof(f->srv_log) - at, "%s%.*s", at ? "|" : "",
             (int)(len < 64 ? len : 64), (const char *)data);
    if (f->srv_close_on_message) {
        kz_conn_close(c, f->srv_close_on_message, "go away", 7);
        return;
    }
    kz_conn_send(c, op, data, len);
}

static const struct kz_server_callbacks server_cb = {
    .on_upgrade = s_on_upgrade,
    .on_message = s_on_message,
};

/* client side */
static struct fixture *fx(struct kz_conn *c)
{
    return kz_client_user(kz_conn_client(c));
}

static void c_on_open(struct kz_conn *c)
{
    struct fixture *f = fx(c);
    f->opens++;
    if (f->send_on_open)
        f->send_on_open_rc = kz_conn_send(c, KZ_OP_TEXT, f->send_on_open, strlen(f->send_on_open));
}

static void c_on_message(struct kz_conn *c, enum kz_opcode op, const uint8_t *data, size_t len)
{
    struct fixture *f = fx(c);
    f->messages++;
    snprintf(f->last_message, sizeof(f->last_message), "%.*s", (int)len, (const char *)data);
}

static void c_on_close(struct kz_conn *c, uint16_t code, struct kz_str reason)
{
    struct fixture *f = fx(c);
    f->closes++;
    f->close_code = code;
}

static void c_on_connecting(struct kz_client *cl, uint32_t attempt)
{
    struct fixture *f = kz_client_user(cl);
    f->connectings++;
}

static void c_on_error(struct kz_client *cl, const struct kz_client_error *e)
{
    struct fixture *f = kz_client_user(cl);
    f->errors++;
    f->last_error = *e;
    snprintf(f->last_detail, sizeof(f->last_detail), "%s", e->detail);
    f->last_error.detail = f->last_detail;
}

static void c_on_reconnect(struct kz_client *cl, uint32_t attempt, uint32_t delay_ms)
{
    struct fixture *f = kz_client_user(cl);
    if (f->reconnects < 16)
        f->delays[f->reconnects] = delay_ms;
    f->reconnects++;
}

static void c_on_end(struct kz_client *cl)
{
    struct fixture *f = kz_client_user(cl);
    f->ends++;
}

static const struct kz_client_callbacks client_cb = {
    .on_open = c_on_open,
    .on_message = c_on_message,
    .on_close = c_on_close,
    .on_connecting = c_on_connecting,
    .on_connect_error = c_on_error,
    .on_reconnect = c_on_reconnect,
    .on_end = c_on_end,
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->loop = kz_loop_new(NULL);
    f->now = 5000000;
    kz_loop_set_clock(f->loop, fake_clock, f);
    kz_server_config_default(&f->scfg);
    kz_client_config_default(&f->ccfg);
    f->fake_fd = -1;
    *state = f;
    return 0;
}

static void start_server(struct fixture *f)
{
    f->srv = kz_server_new(f->loop, &f->scfg, &server_cb, f, NULL);
    assert_non_null(f->srv);
    assert_int_equal(kz_server_listen(f->srv, "127.0.0.1", f->port, false, &f->port), KZ_OK);
}

static void stop_server(struct fixture *f)
{
    kz_server_free(f->srv);
    f->srv = NULL;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kz_client_free(f->cl);
    kz_server_free(f->srv);
    if (f->fake_conn.fd > 0)
        kz_io_close(f->loop, &f->fake_conn);
    if (f->fake_listener.fd > 0)
        kz_io_close(f->loop, &f->fake_listener);
    kz_loop_free(f->loop);
    free(f);
    return 0;
}

/* A client for ws://host[:port]rest (no port when `port` is 0). */
static void new_client(struct fixture *f, const char *host, uint16_t port, const char *rest)
{
    char url[256];
    if (port)
        snprintf(url, sizeof(url), "ws://%s:%u%s", host, port, rest);
    else
        snprintf(url, sizeof(url), "ws://%s%s", host, rest);
    int err = 1;
    f->cl = kz_client_new(f->loop, url, &f->ccfg, &client_cb, f, NULL, &err);
    assert_int_equal(err, KZ_OK);
    assert_non_null(f->cl);
    kz_client_set_random(f->cl, fake_random, f);
}

/* Runs iterations until `cond` holds (real I/O on loopback; the clock stands still). */
#define RUN_UNTIL(f, cond)                                                                         \
    do {                                                                                           \
        for (int i_ = 0; i_ < 2000 && !(cond); i_++)                                               \
            kz_loop_run_once((f)->loop, 10);                                                       \
        assert_true(cond);                                                                         \
    } while (0)

static void advance(struct fixture *f, uint64_t ms)
{
    f->now += ms;
    kz_loop_update_time(f->loop);
    for (int i = 0; i < 5; i++)
        kz_loop_run_once(f->loop, 0);
}

/* ------------------------------------------------------------------------
 * A fake server that answers the handshake with a canned response
 */

static void fake_on_conn(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct fixture *f = KZ_CONTAINER_OF(io, struct fixture, fake_conn);
    ssize_t n = read(io->fd, f->fake_request + f->fake_request_len,
                     sizeof(f->fake_request) - 1 - f->fake_request_len);
    if (n <= 0) {
        kz_io_close(loop, io);
        return;
    }
    f->fake_request_len += (size_t)n;
    f->fake_request[f->fake_request_len] = '\0';
    if (!strstr(f->fake_request, "\r\n\r\n") || f->fake_silent)
        return;
    char accept[KZ_HS_ACCEPT_LEN + 1] = "";
    const char *k = strstr(f->fake_request, "Sec-WebSocket-Key: ");
    if (k)
        kz_hs_accept_key(k + 19, KZ_HS_KEY_LEN, accept);
    /* The answer's "%s", if any, becomes the right Sec-WebSocket-Accept. */
    char out[1024];
    const char *mark = strstr(f->answer, "%s");
    size_t len;
    if (mark)
        len = (size_t)snprintf(out, sizeof(out), "%.*s%s%s", (int)(mark - f->answer), f->answer,
                               accept, mark + 2);
    else
        len = (size_t)snprintf(out, sizeof(out), "%s", f->answer);
    assert_int_equal(write(io->fd, out, len), (ssize_t)len);
    kz_io_set_events(loop, io, 0);
}

static void fake_on_accept(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct fixture *f = KZ_CONTAINER_OF(io, struct fixture, fake_listener);
    int fd = kz_tcp_accept(io->fd, NULL, NULL);
    if (fd < 0)
        return;
    if (f->fake_conn.fd > 0)
        kz_io_close(loop, &f->fake_conn);
    f->fake_request_len = 0;
    kz_io_start(loop, &f->fake_conn, fd, KZ_IO_READ, fake_on_conn);
}

static void start_fake(struct fixture *f, const char *answer)
{
    f->answer = answer;
    int fd = kz_tcp_listen("127.0.0.1", 0, 0, false, &f->port);
    assert_true(fd >= 0);
    assert_int_equal(kz_io_start(f->loop, &f->fake_listener, fd, KZ_IO_READ, fake_on_accept),
                     KZ_OK);
}

#define GOOD_101                                                                                   \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"            \
    "Sec-WebSocket-Accept: %s\r\n"

/* ------------------------------------------------------------------------
 * Tests
 */

static void open_echo_and_close(void **state)
{
    struct fixture *f = *state;
    start_server(f);
    static const char *const protos[] = {"chat", "superchat"};
    static const struct kz_header hdr[] = {{{"X-Test", 6}, {"hello", 5}}};
    f->ccfg.subprotocols = protos;
    f->ccfg.num_subprotocols = 2;
    f->ccfg.headers = hdr;
    f->ccfg.num_headers = 1;
    f->send_on_open = "first";
    new_client(f, "127.0.0.1", f->port, "/path?q=1");
    assert_int_equal(kz_client_start(f->cl), KZ_OK);
    assert_int_equal(kz_client_start(f->cl), KZ_ERR_INVALID_ARGUMENT); /* already running */
    RUN_UNTIL(f, f->messages == 1);
    assert_int_equal(f->opens, 1);
    assert_int_equal(f->send_on_open_rc, KZ_OK);
    assert_string_equal(f->last_message, "first");
    assert_string_equal(kz_client_subprotocol(f->cl), "superchat");
    assert_string_equal(f->srv_protocol, "superchat");
    assert_string_equal(f->srv_header, "hello");
    /* Large messages in both directions: masked in pieces across queue chunks. */
    char *big = malloc(200000);
    for (int i = 0; i < 200000; i++)
        big[i] = (char)('a' + i % 26);
    assert_int_equal(kz_client_send(f->cl, KZ_OP_TEXT, big, 200000), KZ_OK);
    RUN_UNTIL(f, f->messages == 2);
    assert_memory_equal(f->last_message, big, 255);
    free(big);
    assert_int_equal(kz_client_close(f->cl, KZ_CLOSE_NORMAL, "done", 4), KZ_OK);
    RUN_UNTIL(f, f->ends == 1);
    assert_int_equal(f->closes, 1);
    assert_int_equal(f->close_code, KZ_CLOSE_NORMAL);
    assert_int_equal(f->reconnects, 0);
    assert_int_equal(kz_server_conn_count(f->srv), 0);
}

static void host_name_resolved_off_the_loop(void **state)
{
    struct fixture *f = *state;
    start_server(f);
    f->send_on_open = "by name";
    new_client(f, "localhost", f->port, "/");
    kz_client_start(f->cl);
    /* The resolver thread answers through an async: the loop waits for it in epoll. */
    for (int i = 0; i < 500 && f->messages == 0 && f->errors == 0; i++)
        kz_loop_run_once(f->loop, 20);
    if (f->errors) /* a machine whose "localhost" is only ::1 while the server is on IPv4 */
        assert_int_equal(f->last_error.err, KZ_ERR_CONNECT);
    else
        assert_string_equal(f->last_message, "by name");
}

static void deflate_round_trip(void **state)
{
    struct fixture *f = *state;
    f->scfg.deflate.enabled = true;
    start_server(f);
    f->ccfg.deflate = true;
    f->ccfg.deflate_min_size = 0;
    new_client(f, "127.0.0.1", f->port, "/");
    kz_client_start(f->cl);
    RUN_UNTIL(f, f->opens == 1);
    for (int i = 0; i < 3; i++) {
        char msg[200];
        snprintf(msg, sizeof(msg), "compressible %d compressible compressible compressible", i);
        assert_int_equal(kz_client_send(f->cl, KZ_OP_TEXT, msg, strlen(msg)), KZ_OK);
        RUN_UNTIL(f, f->messages == i + 1);
        assert_string_equal(f->last_message, msg);
    }
}

/* Each wrong answer to the upgrade request gives its own error, and no retry. */
static void check_bad_answer(void **state, const char *answer, int err, int status)
{
    struct fixture *f = *state;
    f->ccfg.reconnect = true; /* none of these is retried all the same */
    start_fake(f, answer);
    new_client(f, "127.0.0.1", f->port, "/");
    kz_client_start(f->cl);
    RUN_UNTIL(f, f->errors == 1);
    assert_int_equal(f->last_error.err, err);
    assert_int_equal(f->last_error.status, status);
    assert_non_null(strstr(f->last_error.detail, "handshake"));
    RUN_UNTIL(f, f->ends == 1);
    assert_int_equal(f->opens, 0);
    assert_int_equal(f->reconnects, 0);
}

static void refused_with_403(void **state)
{
    check_bad_answer(state, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
                     KZ_ERR_HS_RESP_STATUS, 403);
    struct fixture *f = *state;
    assert_non_null(strstr(f->last_error.detail, "403"));
}

static void wrong_accept(void **state)
{
    check_bad_answer(state,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                     "Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=%s\r\n\r\n",
                     KZ_ERR_HS_RESP_ACCEPT, 101);
}

static void unrequested_subprotocol(void **state)
{
    check_bad_answer(state, GOOD_101 "Sec-WebSocket-Protocol: chat\r\n\r\n",
                     KZ_ERR_HS_RESP_SUBPROTOCOL, 101);
}

static void unrequested_extension(void **state)
{
    check_bad_answer(state, GOOD_101 "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                     KZ_ERR_HS_RESP_EXTENSION, 101);
}

static void missing_upgrade(void **state)
{
    check_bad_answer(state,
                     "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     KZ_ERR_HS_RESP_UPGRADE, 101);
}

static void invalid_deflate_answer(void **state)
{
    struct fixture *f = *state;
    f->ccfg.deflate = true;
    f->ccfg.deflate_offer.client_max_window_bits = 0; /* offered without client_max_window_bits */
    f->ccfg.deflate_offer.client_max_window_bits_bare = false;
    check_bad_answer(state,
                     GOOD_101 "Sec-WebSocket-Extensions: permessage-deflate; "
                              "client_max_window_bits=10\r\n\r\n",
                     KZ_ERR_HS_RESP_EXTENSION, 101);
}

/* The server's first frames may arrive in the same segment as its 101. */
static void frames_right_behind_the_101(void **state)
{
    struct fixture *f = *state;
    start_fake(f, GOOD_101 "\r\n\x81\x02hi");
    new_client(f, "127.0.0.1", f->port, "/");
    kz_client_start(f->cl);
    RUN_UNTIL(f, f->messages == 1);
    assert_string_equal(f->last_message, "hi");
}

/* A masked frame from a server fails the connection with 1002 (RFC 6455 §5.1). */
static void masked_server_frame_fails_with_1002(void **state)
{
    struct fixture *f = *state;
    start_fake(f, GOOD_101 "\r\n\x81\x82\x01\x02\x03\x04\x69\x6b");
    new_client(f, "127.0.0.1", f->port, "/");
    kz_client_start(f->cl);
    RUN_UNTIL(f, f->closes == 1);
    assert_int_equal(f->close_code, KZ_CLOSE_PROTOCOL_ERROR);
    assert_int_equal(f->messages, 0);
}

static void handshake_timeout(void **state)
{
    struct fixture *f = *state;
    f->fake_silent = true;
    f->ccfg.handshake_timeout_ms = 3000;
    start_fake(f, "");
    new_client(f, "127.0.0.1", f->port, "/");
    kz_client_start(f->cl);
    RUN_UNTIL(f, f->fake_request_len > 0 && strstr(f->fake_request, "\r\n\r\n"));
    advance(f, 2999);
    assert_int_equal(f->errors, 0);
    advance(f, 1);
    assert_int_equal(f->errors, 1);
    assert_int_equal(f->last_error.err, KZ_ERR_TIMEOUT);
}

/* The request itself: what RFC 6455 §4.1 asks of a client. */
static void request_is_well_formed(void **state)
{
    struct fixture *f = *state;
    f->fake_silent = true;
    f->ccfg.origin = "http://example.com";
    start_fake(f, "");
    new_client(f, "127.0.0.1", f->port, "?room=1");
    kz_client_start(f->cl);
    RUN_UNTIL(f, strstr(f->fake_request, "\r\n\r\n"));
    struct kz_header lines[32];
    struct kz_hs_request req = {.headers = lines, .max_headers = 32};
    assert_true(kz_hs_parse_request(f->fake_request, f->fake_request_len, 0, 8192, &req) > 0);
    assert_int_equal(kz_hs_check_request(&req), KZ_OK);
    assert_int_equal(req.target.len, 8);
    assert_memory_equal(req.target.ptr, "/?room=1", 8);
    char host[32];
    snprintf(host, sizeof(host), "127.0.0.1:%u", f->port);
    struct kz_str h = kz_hs_header(req.headers, req.num_headers, "Host");
    assert_int_equal(h.len, strlen(host));
    assert_memory_equal(h.ptr, host, h.len);
    struct kz_str o = kz_hs_header(req.headers, req.num_headers, "Origin");
    assert_int_equal(o.len, 18);
}

/*
 * The server goes away and comes back. The delays follow the backoff
 * schedule exactly (the same function fed the same random values), no
 * attempt starts a millisecond early, and an open resets the schedule.
 */
static void reconnects_on_schedule(void **state)
{
    struct fixture *f = *state;
    start_server(f);
    f->ccfg.reconnect = true;
    for (int i = 0; i < 8; i++)
        f->randoms[i] = 0x40000000u * (uint32_t)(i % 4) + 12345u;
    new_client(f, "127.0.0.1", f->port, "/");
    kz_client_start(f->cl);
    RUN_UNTIL(f, f->opens == 1);
    uint16_t port = f->port;
    stop_server(f); /* drops the connection: 1006 */
    RUN_UNTIL(f, f->closes == 1);
    assert_int_equal(f->close_code, KZ_CLOSE_ABNORMAL);
    RUN_UNTIL(f, f->reconnects == 1);

    struct kz_backoff b = {0};
    unsigned r = 0;
    for (int k = 0; k < 4; k++) {
        uint32_t expect = kz_backoff_next(&b, &f->ccfg.backoff, f->randoms[r++ % 8]);
        assert_int_equal(f->delays[k], expect);
        int before = f->connectings;
        advance(f, expect - 1);
        assert_int_equal(f->connectings, before); /* not a millisecond early */
        advance(f, 1);
        assert_int_equal(f->connectings, before + 1);
        /* Nothing listens: refused at once, and the next delay is scheduled. */
        RUN_UNTIL(f, f->reconnects == k + 2);
        assert_int_equal(f->last_error.err, KZ_ERR_CONNECT);
        assert_int_equal(f->last_error.sys_errno, ECONNREFUSED);
    }

    /* The server comes back on the same port: the next attempt opens. */
    f->port = port;
    start_server(f);
    uint32_t expect = kz_backoff_next(&b, &f->ccfg.backoff, f->randoms[r++ % 8]);
    assert_int_equal(f->delays[4], expect);
    advance(f, expect);
    RUN_UNTIL(f, f->opens == 2);

    /* Lost again: the schedule starts over from the initial delay. */
    stop_server(f);
    RUN_UNTIL(f, f->reconnects == 6);
    struct kz_backoff fresh = {0};
    assert_int_equal(f->delays[5], kz_backoff_next(&fresh, &f->ccfg.backoff,
                                                   f->randoms[(f->next_random - 1) % 8]));
    assert_true(f->delays[5] <= f->ccfg.backoff.initial_ms);
}

static void gives_up_after_max_attempts(void **state)
{
    struct fixture *f = *state;
    f->ccfg.reconnect = true;
    f->ccfg.max_attempts = 3;
    /* A port nothing listens on: bind one, then close it. */
    int fd = kz_tcp_listen("127.0.0.1", 0, 0, false, &f->port);
    close(fd);
    new_client(f, "127.0.0.1", f->port, "/");
    kz_client_start(f->cl);
    for (int i = 0; i < 10 && f->ends == 0; i++) {
        RUN_UNTIL(f, f->errors == i + 1);
        advance(f, 60000);
    }
    assert_int_equal(f->errors, 3);
    assert_int_equal(f->reconnects, 2);
    assert_int_equal(f->ends, 1);
}

static void no_reconnect_after_listed_close_code(void **state)
{
    struct fixture *f = *state;
    f->srv_close_on_message = KZ_CLOSE_POLICY; /* 1008 is in the default list */
    start_server(f);
    f->ccfg.reconnect = true;
    f->send_on_open = "x";
    new_client(f, "127.0.0.1", f->port, "/");
    kz_client_start(f->cl);
    RUN_UNTIL(f, f->ends == 1);
    assert_int_equal(f->close_code, KZ_CLOSE_POLICY);
    assert_int_equal(f->reconnects, 0);
}

static void reconnect_after_other_close_code(void **state)
{
    struct fixture *f = *state;
    f->srv_close_on_message = KZ_CLOSE_INTERNAL_ERROR; /* 1011: worth another try */
    start_server(f);
    f->ccfg.reconnect = true;
    f->send_on_open = "x";
    new_client(f, "127.0.0.1", f->port, "/");
    kz_client_start(f->cl);
    RUN_UNTIL(f, f->reconnects == 1);
    assert_int_equal(f->close_code, KZ_CLOSE_INTERNAL_ERROR);
    assert_int_equal(f->ends, 0);
    /* The application's close while waiting stops it for good. */
    assert_int_equal(kz_client_close(f->cl, KZ_CLOSE_NORMAL, NULL, 0), KZ_OK);
    RUN_UNTIL(f, f->ends == 1);
    advance(f, 120000);
    assert_int_equal(f->connectings, 1);
}

/* Sends while not open: queued up to the bound, sent first, in order, after the handshake. */
static void offline_queue(void **state)
{
    struct fixture *f = *state;
    start_server(f);
    f->ccfg.reconnect = true;
    f->ccfg.offline_queue_max = 10;
    f->send_on_open = "live";
    new_client(f, "127.0.0.1", f->port, "/");
    assert_int_equal(kz_client_send(f->cl, KZ_OP_TEXT, "a", 1), KZ_ERR_CLOSED); /* not started */
    kz_client_start(f->cl);
    assert_int_equal(kz_client_send(f->cl, KZ_OP_TEXT, "one", 3), KZ_OK);
    assert_int_equal(kz_client_send(f->cl, KZ_OP_BINARY, "two", 3), KZ_OK);
    assert_int_equal(kz_client_send(f->cl, KZ_OP_TEXT, "three", 5), KZ_ERR_BACKPRESSURE);
    assert_int_equal(kz_client_send(f->cl, KZ_OP_TEXT, "four", 4), KZ_OK); /* 10 bytes: fits */
    RUN_UNTIL(f, f->srv_messages == 4);
    assert_string_equal(f->srv_log, "one|two|four|live");
}

static void no_offline_queue_refuses(void **state)
{
    struct fixture *f = *state;
    start_server(f);
    new_client(f, "127.0.0.1", f->port, "/");
    kz_client_start(f->cl);
    assert_int_equal(kz_client_send(f->cl, KZ_OP_TEXT, "early", 5), KZ_ERR_CLOSED);
    RUN_UNTIL(f, f->opens == 1);
    assert_int_equal(kz_client_send(f->cl, KZ_OP_TEXT, "now", 3), KZ_OK);
    RUN_UNTIL(f, f->messages == 1);
}

/* A proxy that wants credentials: KZ_ERR_PROXY with its status; the CONNECT names the server. */
static void proxy_refusal(void **state)
{
    struct fixture *f = *state;
    start_fake(f, "HTTP/1.1 407 Proxy Authentication Required\r\n"
                  "Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n");
    char proxy[64];
    snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%u", f->port);
    f->ccfg.proxy = proxy;
    f->port = 4321; /* the WebSocket server, as the proxy should be asked for it */
    new_client(f, "ws.example", f->port, "/chat");
    kz_client_start(f->cl);
    RUN_UNTIL(f, f->errors == 1);
    assert_int_equal(f->last_error.err, KZ_ERR_PROXY);
    assert_int_equal(f->last_error.status, 407);
    assert_non_null(strstr(f->fake_request, "CONNECT ws.example:4321 HTTP/1.1\r\n"));
    assert_non_null(strstr(f->last_error.detail, "407"));
}

static void proxy_tunnel(void **state)
{
    struct fixture *f = *state;
    /* The fake proxy answers 200 and then, in the same write, the server's 101: a tunnel. */
    start_fake(f, "HTTP/1.1 200 Connection established\r\n\r\n");
    char proxy[64];
    snprintf(proxy, sizeof(proxy), "user:p%%40ss@127.0.0.1:%u", f->port);
    f->ccfg.proxy = proxy;
    new_client(f, "ws.example", 0, "/");
    kz_client_start(f->cl);
    RUN_UNTIL(f, strstr(f->fake_request, "\r\n\r\n"));
    assert_non_null(strstr(f->fake_request, "CONNECT ws.example:80 HTTP/1.1\r\n"));
    /* base64("user:p@ss") */
    assert_non_null(strstr(f->fake_request, "Proxy-Authorization: Basic dXNlcjpwQHNz\r\n"));
    /* Then the upgrade request comes through the tunnel. */
    f->fake_request_len = 0;
    f->fake_request[0] = '\0';
    f->answer = GOOD_101 "\r\n\x81\x02ok";
    kz_io_set_events(f->loop, &f->fake_conn, KZ_IO_READ);
    RUN_UNTIL(f, f->messages == 1);
    assert_non_null(strstr(f->fake_request, "GET / HTTP/1.1\r\n"));
    assert_non_null(strstr(f->fake_request, "Host: ws.example\r\n"));
    assert_string_equal(f->last_message, "ok");
}

static void bad_urls_and_wss(void **state)
{
    struct fixture *f = *state;
    int err = 0;
    assert_null(kz_client_new(f->loop, "http//x", NULL, &client_cb, f, NULL, &err));
    assert_int_equal(err, KZ_ERR_INVALID_ARGUMENT);
    assert_null(kz_client_new(f->loop, "ws://h/#frag", NULL, &client_cb, f, NULL, &err));
    assert_int_equal(err, KZ_ERR_INVALID_ARGUMENT);
    struct kz_client_config cfg;
    kz_client_config_default(&cfg);
    cfg.tls_ca_file = "/nonexistent/ca.pem";
    assert_null(kz_client_new(f->loop, "wss://h/", &cfg, &client_cb, f, NULL, &err));
    assert_int_equal(err, KZ_ERR_TLS);
    cfg.tls_ca_file = NULL;
    cfg.proxy = "socks5://p:1080";
    assert_null(kz_client_new(f->loop, "ws://h/", &cfg, &client_cb, f, NULL, &err));
    assert_int_equal(err, KZ_ERR_INVALID_ARGUMENT);
}

static void proxy_from_env(void **state)
{
    struct kz_client_config cfg;
    kz_client_config_default(&cfg);
    assert_int_equal(kz_client_config_proxy_from_env(&cfg, "ws://a.example/", "http://p:3128",
                                                     "http://s:3128", "b.example"),
                     KZ_OK);
    assert_string_equal(cfg.proxy, "http://p:3128");
    kz_client_config_proxy_from_env(&cfg, "ws://x.b.example/", "http://p:3128", NULL, "b.example");
    assert_null(cfg.proxy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(open_echo_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(host_name_resolved_off_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(deflate_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_with_403, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(unrequested_subprotocol, setup, teardown),
        cmocka_unit_test_setup_teardown(unrequested_extension, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_deflate_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(frames_right_behind_the_101, setup, teardown),
        cmocka_unit_test_setup_teardown(masked_server_frame_fails_with_1002, setup, teardown),
        cmocka_unit_test_setup_teardown(handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(request_is_well_formed, setup, teardown),
        cmocka_unit_test_setup_teardown(reconnects_on_schedule, setup, teardown),
        cmocka_unit_test_setup_teardown(gives_up_after_max_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(no_reconnect_after_listed_close_code, setup, teardown),
        cmocka_unit_test_setup_teardown(reconnect_after_other_close_code, setup, teardown),
        cmocka_unit_test_setup_teardown(offline_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(no_offline_queue_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(proxy_refusal, setup, teardown),
        cmocka_unit_test_setup_teardown(proxy_tunnel, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_urls_and_wss, setup, teardown),
        cmocka_unit_test(proxy_from_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
