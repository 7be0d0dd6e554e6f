/*
 * Non-blocking TCP helpers (kaze/tcp.h). Every socket is created with
 * SOCK_NONBLOCK | SOCK_CLOEXEC (or accepted with accept4) so that no
 * descriptor is ever blocking or leaks into a child, even for an instant.
 */
#include "kaze/tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

static void close_keep_errno(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
}

static int set_flag(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value));
}

static int addr_v4(const char *host, uint16_t port, struct sockaddr_storage *out, socklen_t *len)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return KZ_ERR_INVALID_ARGUMENT;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    *len = sizeof(*sin);
    return KZ_OK;
}

static int addr_v6(const char *host, uint16_t port, struct sockaddr_storage *out, socklen_t *len)
{
    char buf[INET6_ADDRSTRLEN];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n >= sizeof(buf))
        return KZ_ERR_INVALID_ARGUMENT;
    memcpy(buf, host, n);
    buf[n] = '\0';
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1)
        return KZ_ERR_INVALID_ARGUMENT;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    *len = sizeof(*sin6);
    return KZ_OK;
}

int kz_tcp_addr(const char *host, uint16_t port, struct sockaddr_storage *out, socklen_t *len)
{
    if (!host || !*host)
        return KZ_ERR_INVALID_ARGUMENT;
    if (addr_v4(host, port, out, len) == KZ_OK)
        return KZ_OK;
    return addr_v6(host, port, out, len);
}

static int open_listener(const struct sockaddr_storage *addr, socklen_t len, int backlog,
                         bool reuseport, bool v6only)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return KZ_ERR_SYSTEM;
    /* TCP_NODELAY on the listener: Linux copies it to every accepted socket. */
    if (set_flag(fd, SOL_SOCKET, SO_REUSEADDR, 1) != 0 ||
        set_flag(fd, IPPROTO_TCP, TCP_NODELAY, 1) != 0 ||
        (reuseport && set_flag(fd, SOL_SOCKET, SO_REUSEPORT, 1) != 0) ||
        (addr->ss_family == AF_INET6 && set_flag(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only) != 0) ||
        bind(fd, (const struct sockaddr *)addr, len) != 0 ||
        listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0) {
        close_keep_errno(fd);
        return KZ_ERR_SYSTEM;
    }
    return fd;
}

/* Every local address: dual-stack IPv6, or IPv4 where the kernel lacks IPv6. */
static int listen_any(uint16_t port, int backlog, bool reuseport)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = in6addr_any;
    sin6->sin6_port = htons(port);
    int fd = open_listener(&ss, sizeof(*sin6), backlog, reuseport, false);
    if (fd >= 0 || errno != EAFNOSUPPORT)
        return fd;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_ANY);
    sin->sin_port = htons(port);
    return open_listener(&ss, sizeof(*sin), backlog, reuseport, false);
}

static int local_port(int fd, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return KZ_ERR_SYSTEM;
    if (ss.ss_family == AF_INET6)
        *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return KZ_OK;
}

int kz_tcp_listen(const char *host, uint16_t port, int backlog, bool reuseport,
                  uint16_t *bound_port)
{
    int fd;
    if (!host || !*host) {
        fd = listen_any(port, backlog, reuseport);
    } else {
        struct sockaddr_storage ss;
        socklen_t len;
        int rc = kz_tcp_addr(host, port, &ss, &len);
        if (rc != KZ_OK)
            return rc;
        fd = open_listener(&ss, len, backlog, reuseport, true);
    }
    if (fd >= 0 && bound_port && local_port(fd, bound_port) != KZ_OK) {
        close_keep_errno(fd);
        return KZ_ERR_SYSTEM;
    }
    return fd;
}

int kz_tcp_accept(int listen_fd, struct sockaddr_storage *peer, socklen_t *len)
{
    struct sockaddr_storage scratch;
    socklen_t slen;
    int fd;
    do {
        slen = sizeof(scratch);
        fd = accept4(listen_fd, (struct sockaddr *)(peer ? peer : &scratch), &slen,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        /* ECONNABORTED: that peer gave up while queued; the next one may be there. */
    } while (fd < 0 && (errno == EINTR || errno == ECONNABORTED));
    if (fd < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? KZ_ERR_PARTIAL : KZ_ERR_SYSTEM;
    if (len)
        *len = slen;
    return fd;
}

int kz_tcp_connect(const struct sockaddr *addr, socklen_t len)
{
    if (!addr || (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return KZ_ERR_INVALID_ARGUMENT;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return KZ_ERR_SYSTEM;
    if (set_flag(fd, IPPROTO_TCP, TCP_NODELAY, 1) != 0) {
        close_keep_errno(fd);
        return KZ_ERR_SYSTEM;
    }
    /* EINTR: the connect goes on in the background, exactly like EINPROGRESS. */
    if (connect(fd, addr, len) == 0 || errno == EINPROGRESS || errno == EINTR)
        return fd;
    close_keep_errno(fd);
    return KZ_ERR_SYSTEM;
}

int kz_tcp_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return KZ_ERR_SYSTEM;
    if (err != 0) {
        errno = err;
        return KZ_ERR_SYSTEM;
    }
    return KZ_OK;
}
