/*
 * TCP helpers on loopback: listen on IPv4, IPv6 and the any address with a
 * kernel-chosen port, connect and accept through the loop, exchange bytes,
 * refused connects, an empty accept queue and SO_REUSEPORT.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"
#include "kaze/loop.h"
#include "kaze/tcp.h"

static void assert_nonblocking_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0 && (fl & O_NONBLOCK));
    int fdfl = fcntl(fd, F_GETFD);
    assert_true(fdfl >= 0 && (fdfl & FD_CLOEXEC));
}

static int nodelay(int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
    return v;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* ------------------------------------------------------------------------
 * A client and a server exchange "hello" and "world" through the loop.
 */

struct session {
    struct kz_loop *loop;
    struct kz_io listener, server, client;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    char server_got[16];
    char client_got[16];
    int accepted;
};

static void client_cb(struct kz_loop *loop, struct kz_io *io, unsigned events);
static void server_cb(struct kz_loop *loop, struct kz_io *io, unsigned events);

static void listener_cb(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct session *s = KZ_CONTAINER_OF(io, struct session, listener);
    int fd = kz_tcp_accept(io->fd, &s->peer, &s->peer_len);
    assert_true(fd >= 0);
    s->accepted++;
    assert_nonblocking_cloexec(fd);
    assert_int_not_equal(nodelay(fd), 0);
    /* One connection is expected: the queue is empty now. */
    assert_int_equal(kz_tcp_accept(io->fd, NULL, NULL), KZ_ERR_PARTIAL);
    kz_io_stop(loop, io);
    assert_int_equal(kz_io_start(loop, &s->server, fd, KZ_IO_READ, server_cb), KZ_OK);
}

static void server_cb(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct session *s = KZ_CONTAINER_OF(io, struct session, server);
    ssize_t n = read(io->fd, s->server_got, sizeof(s->server_got) - 1);
    if (n < 0 && errno == EAGAIN)
        return;
    assert_int_equal(n, 5);
    assert_int_equal(write(io->fd, "world", 5), 5);
    kz_io_stop(loop, io);
}

static void client_cb(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct session *s = KZ_CONTAINER_OF(io, struct session, client);
    if (io->events == KZ_IO_WRITE) {
        /* The first writability is the end of the connect. */
        assert_int_equal(kz_tcp_connect_result(io->fd), KZ_OK);
        assert_int_equal(write(io->fd, "hello", 5), 5);
        assert_int_equal(kz_io_set_events(loop, io, KZ_IO_READ), KZ_OK);
        return;
    }
    ssize_t n = read(io->fd, s->client_got, sizeof(s->client_got) - 1);
    if (n < 0 && errno == EAGAIN)
        return;
    assert_int_equal(n, 5);
    kz_io_stop(loop, io);
}

/* Listens on `host`, connects to `connect_host` and checks the exchange. */
static void exchange(const char *host, const char *connect_host, int family)
{
    struct session s;
    memset(&s, 0, sizeof(s));
    s.loop = kz_loop_new(NULL);
    assert_non_null(s.loop);
    uint16_t port = 0;
    int lfd = kz_tcp_listen(host, 0, 16, false, &port);
    assert_true(lfd >= 0);
    assert_int_not_equal(port, 0);
    assert_nonblocking_cloexec(lfd);

    struct sockaddr_storage to;
    socklen_t to_len;
    assert_int_equal(kz_tcp_addr(connect_host, port, &to, &to_len), KZ_OK);
    int cfd = kz_tcp_connect((struct sockaddr *)&to, to_len);
    assert_true(cfd >= 0);
    assert_nonblocking_cloexec(cfd);
    assert_int_not_equal(nodelay(cfd), 0);

    assert_int_equal(kz_io_start(s.loop, &s.listener, lfd, KZ_IO_READ, listener_cb), KZ_OK);
    assert_int_equal(kz_io_start(s.loop, &s.client, cfd, KZ_IO_WRITE, client_cb), KZ_OK);
    assert_int_equal(kz_loop_run(s.loop), KZ_OK);

    assert_int_equal(s.accepted, 1);
    assert_string_equal(s.server_got, "hello");
    assert_string_equal(s.client_got, "world");
    /* The peer address is the client's local address. */
    struct sockaddr_storage local;
    socklen_t local_len = sizeof(local);
    assert_int_equal(getsockname(cfd, (struct sockaddr *)&local, &local_len), 0);
    assert_int_equal(s.peer.ss_family, family);
    assert_int_equal(s.peer_len,
                     family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    assert_int_equal(port_of(&s.peer), port_of(&local));

    close(s.server.fd);
    close(cfd);
    close(lfd);
    kz_loop_free(s.loop);
}

static void exchange_over_ipv4(void **state)
{
    exchange("127.0.0.1", "127.0.0.1", AF_INET);
}

static void exchange_over_ipv6(void **state)
{
    exchange("::1", "::1", AF_INET6);
    exchange("[::1]", "[::1]", AF_INET6);
}

/* The any address is dual-stack: IPv4 clients arrive as v4-mapped IPv6. */
static void exchange_on_any_address(void **state)
{
    exchange(NULL, "127.0.0.1", AF_INET6);
    exchange("", "::1", AF_INET6);
}

/* ------------------------------------------------------------------------
 * Errors and options
 */

static void addresses_are_literals_only(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    assert_int_equal(kz_tcp_addr("127.0.0.1", 80, &ss, &len), KZ_OK);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(port_of(&ss), 80);
    assert_int_equal(kz_tcp_addr("[2001:db8::1]", 443, &ss, &len), KZ_OK);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(port_of(&ss), 443);
    static const char *bad[] = {"",
                                "localhost",
                                "1.2.3",
                                "[::1",
                                "::1]",
                                "[]",
                                "[127.0.0.1]",
                                "::1::2",
                                "[0000:0000:0000:0000:0000:0000:0000:0000:0]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(kz_tcp_addr(bad[i], 1, &ss, &len), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_tcp_addr(NULL, 1, &ss, &len), KZ_ERR_INVALID_ARGUMENT);
    /* No name resolution, hence no blocking: a name is refused. */
    assert_int_equal(kz_tcp_listen("localhost", 0, 0, false, NULL), KZ_ERR_INVALID_ARGUMENT);
    assert_int_equal(kz_tcp_connect(NULL, 0), KZ_ERR_INVALID_ARGUMENT);
}

static void empty_accept_queue_is_partial(void **state)
{
    int lfd = kz_tcp_listen("127.0.0.1", 0, 0, false, NULL);
    assert_true(lfd >= 0);
    struct sockaddr_storage peer;
    socklen_t len = 0;
    assert_int_equal(kz_tcp_accept(lfd, &peer, &len), KZ_ERR_PARTIAL);
    assert_int_equal(kz_tcp_accept(lfd, NULL, NULL), KZ_ERR_PARTIAL);
    close(lfd);
    /* Not a socket at all: a real error, not "nothing pending". */
    int pfd[2];
    assert_int_equal(pipe2(pfd, O_NONBLOCK | O_CLOEXEC), 0);
    errno = 0;
    assert_int_equal(kz_tcp_accept(pfd[0], NULL, NULL), KZ_ERR_SYSTEM);
    assert_int_equal(errno, ENOTSOCK);
    close(pfd[0]);
    close(pfd[1]);
}

struct refused {
    struct kz_io io;
    int rc;
    int err;
};

static void refused_cb(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct refused *r = KZ_CONTAINER_OF(io, struct refused, io);
    errno = 0;
    r->rc = kz_tcp_connect_result(io->fd);
    r->err = errno;
    kz_io_stop(loop, io);
}

static void connect_to_closed_port_is_refused(void **state)
{
    /* A bound socket that does not listen holds the port and refuses connects. */
    int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(holder >= 0);
    struct sockaddr_storage to;
    socklen_t to_len;
    assert_int_equal(kz_tcp_addr("127.0.0.1", 0, &to, &to_len), KZ_OK);
    assert_int_equal(bind(holder, (struct sockaddr *)&to, to_len), 0);
    assert_int_equal(getsockname(holder, (struct sockaddr *)&to, &to_len), 0);

    int cfd = kz_tcp_connect((struct sockaddr *)&to, to_len);
    assert_true(cfd >= 0);
    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    struct refused r = {.rc = 1};
    assert_int_equal(kz_io_start(loop, &r.io, cfd, KZ_IO_WRITE, refused_cb), KZ_OK);
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_int_equal(r.rc, KZ_ERR_SYSTEM);
    assert_int_equal(r.err, ECONNREFUSED);
    kz_loop_free(loop);
    close(cfd);
    close(holder);
}

static void port_in_use_is_reported(void **state)
{
    uint16_t port = 0;
    int a = kz_tcp_listen("127.0.0.1", 0, 0, false, &port);
    assert_true(a >= 0);
    errno = 0;
    assert_int_equal(kz_tcp_listen("127.0.0.1", port, 0, false, NULL), KZ_ERR_SYSTEM);
    assert_int_equal(errno, EADDRINUSE);
    close(a);
}

/* Two listeners share a port; every connection is accepted by one of them. */
struct shared_port;

struct acceptor {
    struct kz_io io;
    struct shared_port *sp;
    int accepted;
};

struct shared_port {
    struct acceptor l[2];
    int fds[8];
    int nfds;
    int want;
};

static void shared_cb(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct acceptor *acc = KZ_CONTAINER_OF(io, struct acceptor, io);
    struct shared_port *sp = acc->sp;
    int fd;
    while ((fd = kz_tcp_accept(io->fd, NULL, NULL)) >= 0) {
        assert_true(sp->nfds < (int)(sizeof(sp->fds) / sizeof(sp->fds[0])));
        sp->fds[sp->nfds++] = fd;
        acc->accepted++;
    }
    assert_int_equal(fd, KZ_ERR_PARTIAL);
    if (sp->nfds == sp->want) {
        kz_io_stop(loop, &sp->l[0].io);
        kz_io_stop(loop, &sp->l[1].io);
    }
}

static void two_listeners_share_a_port(void **state)
{
    uint16_t port = 0, port2 = 0;
    int a = kz_tcp_listen("127.0.0.1", 0, 0, true, &port);
    assert_true(a >= 0);
    int b = kz_tcp_listen("127.0.0.1", port, 0, true, &port2);
    assert_true(b >= 0);
    assert_int_equal(port2, port);
    /* Without SO_REUSEPORT a third may not join them. */
    errno = 0;
    assert_int_equal(kz_tcp_listen("127.0.0.1", port, 0, false, NULL), KZ_ERR_SYSTEM);
    assert_int_equal(errno, EADDRINUSE);

    struct kz_loop *loop = kz_loop_new(NULL);
    assert_non_null(loop);
    struct shared_port sp;
    memset(&sp, 0, sizeof(sp));
    sp.want = 8;
    sp.l[0].sp = sp.l[1].sp = &sp;
    int clients[8];
    struct sockaddr_storage to;
    socklen_t to_len;
    assert_int_equal(kz_tcp_addr("127.0.0.1", port, &to, &to_len), KZ_OK);
    for (int i = 0; i < sp.want; i++) {
        clients[i] = kz_tcp_connect((struct sockaddr *)&to, to_len);
        assert_true(clients[i] >= 0);
    }
    assert_int_equal(kz_io_start(loop, &sp.l[0].io, a, KZ_IO_READ, shared_cb), KZ_OK);
    assert_int_equal(kz_io_start(loop, &sp.l[1].io, b, KZ_IO_READ, shared_cb), KZ_OK);
    assert_int_equal(kz_loop_run(loop), KZ_OK);
    assert_int_equal(sp.nfds, sp.want);
    assert_int_equal(sp.l[0].accepted + sp.l[1].accepted, sp.want);
    for (int i = 0; i < sp.nfds; i++)
        close(sp.fds[i]);
    for (int i = 0; i < sp.want; i++)
        close(clients[i]);
    kz_loop_free(loop);
    close(a);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exchange_over_ipv4),
        cmocka_unit_test(exchange_over_ipv6),
        cmocka_unit_test(exchange_on_any_address),
        cmocka_unit_test(addresses_are_literals_only),
        cmocka_unit_test(empty_accept_queue_is_partial),
        cmocka_unit_test(connect_to_closed_port_is_refused),
        cmocka_unit_test(port_in_use_is_reported),
        cmocka_unit_test(two_listeners_share_a_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
