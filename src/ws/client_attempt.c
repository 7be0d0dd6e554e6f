/*
 * A client's connection attempt: RESOLVING (a host name, in resolve.c's
 * thread; an IP literal is taken at once) → CONNECTING (each address in
 * turn) → PROXY (CONNECT through an HTTP proxy, if one is set) → TLS
 * (wss://) → HANDSHAKE (the upgrade request out, the answer judged) → the
 * socket handed to a kz_conn of the client's context. Every failure goes
 * to kz__client_fail_attempt with its own error and a line for people.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kaze/tcp.h"
#include "ws/client_internal.h"

#define KZ_HS_RESP_MAX_LINES 64

static size_t slen(const char *s)
{
    return s ? strlen(s) : 0;
}

void kz__client_drop_attempt(struct kz_client *cl)
{
    if (cl->resolving) {
        kz__resolve_cancel(cl->resolving);
        cl->resolving = NULL;
    }
    if (cl->addrs) {
        freeaddrinfo(cl->addrs);
        cl->addrs = cl->next_addr = NULL;
    }
    kz__tls_free(cl->ssl);
    cl->ssl = NULL;
    if (cl->io.fd >= 0) {
        kz_io_close(cl->loop, &cl->io);
        cl->io.fd = -1;
    }
    kz__free(cl->ctx, cl->hs);
    cl->hs = NULL;
    cl->hs_cap = cl->hs_len = cl->hs_out = cl->hs_sent = 0;
}

void kz__client_attempt_timed_out(struct kz_client *cl)
{
    char detail[160];
    switch (cl->state) {
    case CL_RESOLVING:
    case CL_CONNECTING:
    case CL_PROXY:
        snprintf(detail, sizeof(detail), "connecting to %s: timed out", cl->where);
        break;
    case CL_TLS:
        snprintf(detail, sizeof(detail), "TLS with %s: no handshake in time", cl->where);
        break;
    case CL_HANDSHAKE:
        snprintf(detail, sizeof(detail), "handshake with %s: no answer in time", cl->where);
        break;
    default:
        return;
    }
    kz__client_fail_attempt(cl, KZ_ERR_TIMEOUT, 0, 0, detail);
}

static void wait_for(struct kz_client *cl, unsigned events);
static void after_tunnel(struct kz_client *cl);
static void on_io(struct kz_loop *loop, struct kz_io *io, unsigned events);

/* Sends what is left of cl->hs; true when all of it has gone. */
static bool send_pending(struct kz_client *cl)
{
    while (cl->hs_sent < cl->hs_out) {
        ssize_t n;
        if (cl->ssl) {
            unsigned want = KZ_IO_WRITE;
            n = kz__tls_write(cl->ssl, cl->hs + cl->hs_sent, cl->hs_out - cl->hs_sent, &want);
            if (n == -1) {
                wait_for(cl, want);
                return false;
            }
            if (n == -2) {
                errno = EPIPE;
                n = -1;
            }
        } else {
            n = send(cl->io.fd, cl->hs + cl->hs_sent, cl->hs_out - cl->hs_sent, MSG_NOSIGNAL);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                wait_for(cl, KZ_IO_WRITE);
                return false;
            }
            char detail[160];
            int e = errno;
            snprintf(detail, sizeof(detail), "sending to %s: %s", cl->where, strerror(e));
            kz__client_fail_attempt(cl, KZ_ERR_CONNECT, e, 0, detail);
            return false;
        }
        cl->hs_sent += (size_t)n;
    }
    cl->hs_out = cl->hs_sent = cl->hs_len = 0;
    wait_for(cl, KZ_IO_READ);
    return true;
}

/*
 * Reads more of an answer into cl->hs. Returns the bytes now held, or -1
 * when the attempt failed (the caller returns) or nothing came yet.
 */
static ssize_t receive(struct kz_client *cl, const char *what)
{
    if (cl->hs_len == cl->hs_cap) {
        kz__client_fail_attempt(cl, cl->state == CL_PROXY ? KZ_ERR_PROXY : KZ_ERR_HS_RESP_TOO_LARGE,
                                0, 0, NULL);
        return -1;
    }
    ssize_t n;
    if (cl->ssl) {
        unsigned want = KZ_IO_READ;
        n = kz__tls_read(cl->ssl, cl->hs + cl->hs_len, cl->hs_cap - cl->hs_len, &want);
        if (n == -1) {
            wait_for(cl, want);
            return -1;
        }
        if (n == -2) {
            errno = ECONNRESET;
            n = -1;
        }
    } else {
        do
            n = recv(cl->io.fd, cl->hs + cl->hs_len, cl->hs_cap - cl->hs_len, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -1;
    }
    if (n <= 0) {
        char detail[160];
        int e = n < 0 ? errno : 0;
        snprintf(detail, sizeof(detail), "%s %s: connection closed during the %s", what, cl->where,
                 n < 0 ? strerror(e) : "answer");
        kz__client_fail_attempt(cl, KZ_ERR_CLOSED, e, 0, detail);
        return -1;
    }
    cl->hs_len += (size_t)n;
    return (ssize_t)cl->hs_len;
}

static void send_upgrade(struct kz_client *cl)
{
    char host[300], target[8192];
    int hn = kz_url_host_header(&cl->url, host, sizeof(host));
    int tn = kz_url_target(&cl->url, target, sizeof(target));
    if (hn < 0 || tn < 0 || kz_hs_client_key(cl->key) != KZ_OK) {
        kz__client_fail_attempt(cl, hn < 0 || tn < 0 ? KZ_ERR_INVALID_ARGUMENT : KZ_ERR_CRYPTO, 0,
                                0, NULL);
        return;
    }
    struct kz_hs_client_request req = {
        .host = {host, (size_t)hn},
        .target = {target, (size_t)tn},
        .origin = {cl->cfg.origin, slen(cl->cfg.origin)},
        .protocols = cl->protocols,
        .num_protocols = cl->cfg.num_subprotocols,
        .extensions = {cl->offer, cl->cfg.deflate ? strlen(cl->offer) : 0},
        .extra_headers = cl->cfg.headers,
        .num_extra_headers = cl->cfg.num_headers,
    };
    int n = kz_hs_write_request(cl->hs, cl->hs_cap, &req, cl->key);
    if (n < 0) {
        kz__client_fail_attempt(cl, n, 0, 0,
                                n == KZ_ERR_BUFFER_TOO_SMALL
                                    ? "upgrade request larger than max_header_size"
                                    : "invalid header, subprotocol or URL");
        return;
    }
    cl->state = CL_HANDSHAKE;
    if (cl->cfg.handshake_timeout_ms)
        kz__client_timer(cl, cl->cfg.handshake_timeout_ms);
    else
        kz_timer_stop(cl->loop, &cl->timer);
    cl->hs_out = (size_t)n;
    cl->hs_sent = 0;
    send_pending(cl);
}

static void read_upgrade_answer(struct kz_client *cl)
{
    size_t prev = cl->hs_len;
    ssize_t have = receive(cl, "handshake with");
    if (have < 0)
        return;
    struct kz_header lines[KZ_HS_RESP_MAX_LINES];
    struct kz_hs_response resp = {.headers = lines, .max_headers = KZ_HS_RESP_MAX_LINES};
    int head = kz_hs_parse_response(cl->hs, (size_t)have, prev, cl->cfg.max_header_size, &resp);
    if (head == KZ_ERR_PARTIAL)
        return;
    char detail[200];
    if (head < 0) {
        snprintf(detail, sizeof(detail), "handshake with %s: %s", cl->where, kz_strerror(head));
        kz__client_fail_attempt(cl, head, 0, 0, detail);
        return;
    }
    struct kz_hs_client_request offered = {
        .protocols = cl->protocols,
        .num_protocols = cl->cfg.num_subprotocols,
        .extensions = {cl->offer, cl->cfg.deflate ? strlen(cl->offer) : 0},
    };
    struct kz_str proto = {NULL, 0};
    int rc = kz_hs_check_response(&resp, cl->key, &offered, &proto);
    struct kz_pmd_params pmd;
    int agreed = 0;
    if (rc == KZ_OK && cl->cfg.deflate) {
        agreed =
            kz_pmd_check_response(resp.headers, resp.num_headers, &cl->cfg.deflate_offer, &pmd);
        if (agreed < 0)
            rc = agreed;
    }
    if (rc != KZ_OK) {
        if (rc == KZ_ERR_HS_RESP_STATUS)
            snprintf(detail, sizeof(detail), "handshake with %s: status %d %.*s", cl->where,
                     resp.status, (int)(resp.reason.len < 80 ? resp.reason.len : 80),
                     resp.reason.ptr ? resp.reason.ptr : "");
        else
            snprintf(detail, sizeof(detail), "handshake with %s: %s", cl->where, kz_strerror(rc));
        kz__client_fail_attempt(cl, rc, 0, resp.status, detail);
        return;
    }
    cl->subprotocol = -1;
    for (size_t i = 0; proto.len && i < cl->cfg.num_subprotocols; i++)
        if (cl->protocols[i].len == proto.len &&
            !memcmp(cl->protocols[i].ptr, proto.ptr, proto.len))
            cl->subprotocol = (int)i;
    /* The socket goes to a kz_conn; what came behind the 101 goes with it. */
    int fd = cl->io.fd;
    kz_io_stop(cl->loop, &cl->io);
    cl->io.fd = -1;
    SSL *ssl = cl->ssl;
    cl->ssl = NULL;
    kz_timer_stop(cl->loop, &cl->timer);
    char *hs = cl->hs;
    cl->hs = NULL;
    size_t early = (size_t)have - (size_t)head;
    cl->state = CL_OPEN; /* tr_open confirms it; a failure below undoes it */
    struct kz_conn *c = kz__conn_adopt(cl->ctx, fd, ssl, agreed == 1 ? &pmd : NULL, cl->user,
                                       (const uint8_t *)hs + head, early);
    kz__free(cl->ctx, hs);
    if (!c && cl->state == CL_OPEN && !cl->conn) {
        cl->state = CL_HANDSHAKE;
        kz__client_fail_attempt(cl, KZ_ERR_NOMEM, 0, 0, NULL);
    }
}

/* Advances the TLS handshake; the upgrade request follows it. */
static void tls_step(struct kz_client *cl)
{
    unsigned want = KZ_IO_READ;
    bool plain = false;
    char err[256], detail[400];
    int rc = kz__tls_handshake(cl->ssl, &want, &plain, err, sizeof(err));
    if (rc == 0) {
        wait_for(cl, want);
        return;
    }
    if (rc < 0) {
        snprintf(detail, sizeof(detail), "TLS with %s: %s", cl->where, err);
        /* A hang-up may be a server restarting (worth retrying); a refused certificate is not. */
        kz__client_fail_attempt(cl, rc == KZ_ERR_CLOSED ? KZ_ERR_CLOSED : KZ_ERR_TLS, 0, 0, detail);
        return;
    }
    send_upgrade(cl);
}

/* The TCP connection (or the proxy's tunnel) is up: TLS for wss://, then the upgrade. */
static void after_tunnel(struct kz_client *cl)
{
    if (!cl->tls_ctx) {
        send_upgrade(cl);
        return;
    }
    cl->ssl = kz__tls_client_ssl(cl->tls_ctx, cl->io.fd, cl->url.host.ptr, cl->url.host.len,
                                 cl->host_is_ip);
    if (!cl->ssl) {
        kz__client_fail_attempt(cl, KZ_ERR_NOMEM, 0, 0, "could not set up TLS");
        return;
    }
    cl->state = CL_TLS;
    if (cl->cfg.tls_handshake_timeout_ms)
        kz__client_timer(cl, cl->cfg.tls_handshake_timeout_ms);
    tls_step(cl);
}

static void send_connect(struct kz_client *cl)
{
    int n = kz_proxy_write_connect(cl->hs, cl->hs_cap, &cl->proxy, cl->url.host, cl->url.port);
    if (n < 0) {
        kz__client_fail_attempt(cl, n, 0, 0, "invalid proxy credentials or target");
        return;
    }
    cl->state = CL_PROXY;
    cl->hs_out = (size_t)n;
    cl->hs_sent = 0;
    send_pending(cl);
}

static void read_proxy_answer(struct kz_client *cl)
{
    size_t prev = cl->hs_len;
    ssize_t have = receive(cl, "proxy");
    if (have < 0)
        return;
    int status = 0;
    int head = kz_proxy_parse_reply(cl->hs, (size_t)have, prev, cl->cfg.max_header_size, &status);
    if (head == KZ_ERR_PARTIAL)
        return;
    if (head < 0) {
        char detail[200];
        if (head == KZ_ERR_PROXY)
            snprintf(detail, sizeof(detail), "proxy %s refused CONNECT: %d%s", cl->where, status,
                     status == 407 ? " (proxy authentication required)" : "");
        else
            snprintf(detail, sizeof(detail), "proxy %s: %s", cl->where, kz_strerror(head));
        kz__client_fail_attempt(cl, KZ_ERR_PROXY, 0, status, detail);
        return;
    }
    if ((size_t)have > (size_t)head) {
        /* A server does not speak before the upgrade request: nothing may follow the 200. */
        kz__client_fail_attempt(cl, KZ_ERR_PROXY, 0, status,
                                "proxy sent data before the tunnel was used");
        return;
    }
    after_tunnel(cl);
}

static void describe(struct kz_client *cl, const struct sockaddr *sa)
{
    char ip[64] = "?";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(cl->where, sizeof(cl->where), "%s:%u", ip, port);
    } else {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        snprintf(cl->where, sizeof(cl->where), "[%s]:%u", ip, port);
    }
}

/* Starts a connect to the next address; fails the attempt when none is left. */
static void connect_next(struct kz_client *cl, int last_errno)
{
    while (cl->next_addr) {
        struct addrinfo *ai = cl->next_addr;
        cl->next_addr = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        describe(cl, ai->ai_addr);
        int fd = kz_tcp_connect(ai->ai_addr, ai->ai_addrlen);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (kz_io_start(cl->loop, &cl->io, fd, KZ_IO_WRITE, on_io) != KZ_OK) {
            last_errno = errno;
            close(fd);
            cl->io.fd = -1;
            continue;
        }
        cl->state = CL_CONNECTING;
        return;
    }
    char detail[200];
    snprintf(detail, sizeof(detail), "connect %s: %s", cl->where,
             last_errno ? strerror(last_errno) : "no address");
    kz__client_fail_attempt(cl, KZ_ERR_CONNECT, last_errno, 0, detail);
}

static void on_connected(struct kz_client *cl)
{
    if (kz_tcp_connect_result(cl->io.fd) != KZ_OK) {
        int e = errno;
        kz_io_close(cl->loop, &cl->io);
        cl->io.fd = -1;
        connect_next(cl, e);
        return;
    }
    freeaddrinfo(cl->addrs); /* connected: the other addresses are not needed */
    cl->addrs = cl->next_addr = NULL;
    if (cl->use_proxy)
        send_connect(cl);
    else
        after_tunnel(cl);
}

static void on_io(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    (void)loop;
    struct kz_client *cl = KZ_CONTAINER_OF(io, struct kz_client, io);
    switch (cl->state) {
    case CL_CONNECTING:
        on_connected(cl);
        break;
    case CL_PROXY:
        if (cl->hs_sent < cl->hs_out)
            send_pending(cl);
        else if (events & KZ_IO_READ)
            read_proxy_answer(cl);
        break;
    case CL_TLS:
        tls_step(cl);
        break;
    case CL_HANDSHAKE:
        if (cl->hs_sent < cl->hs_out)
            send_pending(cl);
        else if (events & KZ_IO_READ)
            read_upgrade_answer(cl);
        break;
    default:
        break;
    }
}

static void wait_for(struct kz_client *cl, unsigned events)
{
    if (cl->io.fd >= 0 && cl->io.events != events)
        kz_io_set_events(cl->loop, &cl->io, events);
}

static void on_resolved(void *ud, int rc, struct addrinfo *res)
{
    struct kz_client *cl = ud;
    cl->resolving = NULL;
    if (rc != 0) {
        char detail[200];
        snprintf(detail, sizeof(detail), "resolving %s: %s", cl->where, gai_strerror(rc));
        kz__client_fail_attempt(cl, KZ_ERR_RESOLVE, 0, 0, detail);
        return;
    }
    cl->addrs = cl->next_addr = res;
    connect_next(cl, 0);
}

void kz__client_start_attempt(struct kz_client *cl)
{
    cl->attempt++;
    cl->state = CL_RESOLVING;
    if (cl->cb.on_connecting)
        cl->cb.on_connecting(cl, cl->attempt);
    if (cl->state != CL_RESOLVING)
        return; /* the callback closed the client */
    cl->hs_cap = cl->cfg.max_header_size + 1024;
    cl->hs = kz__alloc(cl->ctx, cl->hs_cap);
    if (!cl->hs) {
        kz__client_fail_attempt(cl, KZ_ERR_NOMEM, 0, 0, NULL);
        return;
    }
    if (cl->cfg.connect_timeout_ms)
        kz__client_timer(cl, cl->cfg.connect_timeout_ms);
    struct kz_str host = cl->use_proxy ? cl->proxy.host : cl->url.host;
    uint16_t port = cl->use_proxy ? cl->proxy.port : cl->url.port;
    snprintf(cl->where, sizeof(cl->where), "%s%.*s:%u", cl->use_proxy ? "proxy " : "",
             (int)(host.len < 64 ? host.len : 64), host.ptr, (unsigned)port);
    /* An IP literal needs no resolver thread. */
    char name[256], service[8];
    if (host.len >= sizeof(name)) {
        kz__client_fail_attempt(cl, KZ_ERR_RESOLVE, 0, 0, "host name too long");
        return;
    }
    memcpy(name, host.ptr, host.len);
    name[host.len] = '\0';
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    struct addrinfo *res = NULL;
    if (getaddrinfo(name, service, &hints, &res) == 0) {
        cl->addrs = cl->next_addr = res;
        connect_next(cl, 0);
        return;
    }
    cl->resolving = kz__resolve_start(cl->loop, host.ptr, host.len, port, on_resolved, cl);
    if (!cl->resolving)
        kz__client_fail_attempt(cl, KZ_ERR_SYSTEM, errno, 0, "could not start the resolver thread");
}
