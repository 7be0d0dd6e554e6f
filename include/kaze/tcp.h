/*
 * kaze/tcp.h — non-blocking TCP sockets for the loop: listen, accept,
 * connect. Every descriptor returned here is non-blocking and close-on-exec,
 * and no function here blocks: hosts are numeric literals, never names to
 * resolve (resolve names before, off the loop thread).
 *
 * Descriptors returned belong to the caller, who closes them (after
 * kz_io_stop if they are watched).
 */
#ifndef KAZE_TCP_H
#define KAZE_TCP_H

#include <sys/socket.h>
#include "kaze/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Fills `out` with the address of a numeric host and a port: an IPv4
 * literal ("127.0.0.1") or an IPv6 literal with or without brackets ("::1",
 * "[::1]"; no zone index). `len` receives the address length. Returns KZ_OK
 * or KZ_ERR_INVALID_ARGUMENT (NULL, empty or not a literal).
 */
KZ_EXPORT int kz_tcp_addr(const char *host, uint16_t port, struct sockaddr_storage *out,
                          socklen_t *len);

/*
 * Opens a listening socket on `host`:`port`. `host` is a literal as for
 * kz_tcp_addr, or NULL or "" for every local address (IPv6 and IPv4 on one
 * dual-stack socket, or IPv4 only where the kernel has no IPv6). An explicit
 * IPv6 literal listens on IPv6 only, so "::" and "0.0.0.0" can be bound
 * side by side. Port 0 lets the kernel pick a free port; `bound_port`, if
 * not NULL, receives the port bound. SO_REUSEADDR is always set (a restart
 * does not wait for TIME_WAIT); SO_REUSEPORT when `reuseport` is true, so
 * that several listeners (one per loop thread) share the port and the
 * kernel spreads connections across them (to share a port the kernel
 * picks, pass 0 to the first call and the port it reports to the others).
 * TCP_NODELAY is set as well, for the accepted sockets to inherit.
 * `backlog` <= 0 means SOMAXCONN.
 * Returns the descriptor (non-blocking, close-on-exec), KZ_ERR_INVALID_ARGUMENT
 * (not a literal) or KZ_ERR_SYSTEM (errno says why, e.g. EADDRINUSE).
 */
KZ_EXPORT int kz_tcp_listen(const char *host, uint16_t port, int backlog, bool reuseport,
                            uint16_t *bound_port);

/*
 * Accepts one pending connection with accept4. It has TCP_NODELAY (a
 * WebSocket writes whole frames; Nagle would only delay them) when the
 * listener came from kz_tcp_listen, which sets it on the listening socket:
 * Linux copies it to every accepted socket, which saves a system call per
 * connection. On another listener, set it yourself. `peer`
 * (may be NULL) receives the peer's address, and `len` (may be NULL) its
 * length. Returns the new descriptor (non-blocking, close-on-exec),
 * KZ_ERR_PARTIAL when no connection is pending (call again on the next
 * KZ_IO_READ), or KZ_ERR_SYSTEM with errno set. Connections the peer
 * aborted while queued are skipped. With EMFILE or ENFILE the pending
 * connection stays queued and the listener stays readable: pause the
 * listener's watcher rather than retrying at once.
 */
KZ_EXPORT int kz_tcp_accept(int listen_fd, struct sockaddr_storage *peer, socklen_t *len);

/*
 * Starts connecting a new socket (TCP_NODELAY set) to `addr` (AF_INET or
 * AF_INET6). Returns the descriptor with the connection in progress: watch
 * it for KZ_IO_WRITE, then ask kz_tcp_connect_result. Returns
 * KZ_ERR_INVALID_ARGUMENT (another family) or KZ_ERR_SYSTEM (the socket
 * could not be made or the connect failed at once, errno set).
 */
KZ_EXPORT int kz_tcp_connect(const struct sockaddr *addr, socklen_t len);

/*
 * The outcome of a connect started by kz_tcp_connect, read once the socket
 * reports KZ_IO_WRITE (an error reports it too): KZ_OK when connected, or
 * KZ_ERR_SYSTEM with errno set to the connect's error (ECONNREFUSED,
 * ETIMEDOUT, ...). Reading the error clears it, so ask once.
 */
KZ_EXPORT int kz_tcp_connect_result(int fd);

#ifdef __cplusplus
}
#endif
#endif
