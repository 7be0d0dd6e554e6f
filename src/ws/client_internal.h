/*
 * Private to src/ws: the kz_client struct, shared by the client object
 * (client.c: configuration, reconnection, the application's calls) and its
 * connection attempts (client_attempt.c: resolve, connect, proxy, TLS,
 * upgrade).
 */
#ifndef KZ_WS_CLIENT_INTERNAL_H
#define KZ_WS_CLIENT_INTERNAL_H

#include <netdb.h>

#include "kaze/client.h"
#include "ws/resolve.h"
#include "ws/ws_internal.h"

enum cl_state {
    CL_IDLE = 0,   /* not started, or ended */
    CL_RESOLVING,  /* waiting for the resolver thread */
    CL_CONNECTING, /* TCP connect in progress */
    CL_PROXY,      /* CONNECT sent or being sent; reading the proxy's answer */
    CL_TLS,        /* the TLS handshake (wss://) */
    CL_HANDSHAKE,  /* upgrade request sent or being sent; reading the answer */
    CL_OPEN,       /* a kz_conn has the socket */
    CL_WAITING,    /* backoff delay before the next attempt */
    CL_ENDING,     /* stopped; on_end comes once the last connection is gone */
};

/* A message kz_client_send accepted while not open. */
struct offline_msg {
    struct offline_msg *next;
    size_t len;
    uint8_t op;
    uint8_t data[];
};

struct kz_client {
    struct kz_server *ctx; /* allocator, limits, callbacks, buffers; no listener */
    struct kz_loop *loop;
    struct kz_client_callbacks cb;
    struct kz_client_config cfg; /* strings and arrays point into `copies` */
    void *user;
    char *copies; /* one block: URL, proxy, origin, subprotocols, headers */
    struct kz_url url;
    struct kz_proxy proxy;
    bool use_proxy;
    struct kz_str *protocols; /* cfg.subprotocols as kz_str */
    char offer[KZ_PMD_ELEMENT_MAX];
    SSL_CTX *tls_ctx; /* wss:// only */
    bool host_is_ip;

    enum cl_state state;
    bool stopping; /* the application closed: no reconnection */
    struct kz_timer timer;
    struct kz_defer end_defer;
    uint32_t attempt; /* attempts since the last open */
    struct kz_backoff backoff;
    uint32_t (*random)(void *ud);
    void *random_ud;

    /* The attempt in progress. */
    struct kz_resolve *resolving;
    SSL *ssl; /* wss://: this attempt's TLS session */
    struct addrinfo *addrs, *next_addr;
    struct kz_io io;
    char *hs; /* the request or CONNECT going out, then the answer coming in */
    size_t hs_cap;
    size_t hs_out, hs_sent; /* going out: bytes to send, bytes sent */
    size_t hs_len;          /* coming in: bytes of the answer so far */
    char key[KZ_HS_KEY_LEN + 1];
    char where[96]; /* the address being tried, for error details */

    struct kz_conn *conn;
    int subprotocol; /* index in cfg.subprotocols, -1 for none */
    uint16_t close_code;

    struct offline_msg *offline_head, *offline_tail;
    size_t offline_bytes;
};

/* client_attempt.c */
/* Starts attempt cl->attempt + 1: resolve, connect, (proxy), (TLS), upgrade. */
void kz__client_start_attempt(struct kz_client *cl);
/* Gives back what the attempt in progress holds; the client's state is the caller's. */
void kz__client_drop_attempt(struct kz_client *cl);
/* The attempt's deadline passed (the state says which one). */
void kz__client_attempt_timed_out(struct kz_client *cl);

/* client.c */
/* The attempt failed before the connection opened: report, then retry or end. */
void kz__client_fail_attempt(struct kz_client *cl, int err, int sys_errno, int status,
                             const char *detail);
/* (Re)starts the client's one timer: the attempt's deadline or the backoff delay. */
void kz__client_timer(struct kz_client *cl, uint32_t ms);

#endif
