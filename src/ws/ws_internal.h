/*
 * Private to src/ws: the server and connection structs and the functions the
 * server's files share. The write path (outq.c), the read path (conn.c), the
 * server (server.c) and the client (client.c) meet here.
 *
 * A client connection is a kz_conn too: it runs on a kz_server that has no
 * listener (the client's context: allocator, limits, callbacks, buffers and
 * pools), created by the kz_client that owns it. What differs by role is
 * small: client frames are masked with a fresh random key each, the parser
 * refuses masked frames, and after the close handshake the client waits for
 * the server to end the TCP connection instead of ending it first.
 */
#ifndef KZ_WS_INTERNAL_H
#define KZ_WS_INTERNAL_H

#include "kaze/server.h"
#include "kaze/tcp.h"
#include "io/tls.h"
#include "proto/frame_parser.h"

/* Output is queued in pooled chunks of this size; a large send spans several. */
#define KZ_CHUNK_SIZE (16u * 1024u)
/* A send at least this large, with nothing queued before it, is written at once. */
#define KZ_DIRECT_WRITE_MIN (16u * 1024u)
/* A frame with at least this much payload still to come is read straight into its message. */
#define KZ_DIRECT_READ_MIN (8u * 1024u)
/* Free chunks a server keeps for reuse; more are given back to the allocator. */
#define KZ_CHUNK_POOL_MAX 64u
/* The read buffer every connection of a server reads into, in turn. */
#define KZ_READ_BUF_SIZE (256u * 1024u)
/* A client's context has one connection at a time: smaller buffers do. */
#define KZ_CLIENT_READ_BUF_SIZE (64u * 1024u)
#define KZ_CLIENT_CORK_SIZE     (16u * 1024u)
/* Random bytes drawn from OpenSSL at a time for client mask keys. */
#define KZ_MASK_POOL_SIZE 256u
/* Input kept between reads outside a handshake: a partial header or control frame. */
#define KZ_KEPT_MAX (KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX)
/*
 * Replies a connection makes while its input is being processed are corked
 * in one buffer the whole server shares, and leave in one send when the
 * processing ends: an echo costs no queue chunk and one syscall per read.
 */
#define KZ_CORK_SIZE (64u * 1024u)
/*
 * Message buffers of finished messages are kept for the next message that
 * arrives in pieces, so that a stream of large messages does not allocate,
 * fault in and free a buffer each time. Bounded in count and in size.
 */
#define KZ_MSG_CACHE_COUNT 8
#define KZ_MSG_CACHE_MAX   (1u << 20)
/* The largest TLS record's plaintext. */
#define KZ_TLS_RECORD (16u * 1024u)
/* iovecs gathered per writev. */
#define KZ_IOV_MAX 64

/*
 * One piece of a connection's output queue: bytes the connection owns
 * (a pooled chunk of KZ_CHUNK_SIZE) or a reference to a shared kz_msg.
 * [start, end) is what is still to be written.
 */
struct kz_chunk {
    struct kz_chunk *next;
    struct kz_msg *msg;   /* NULL: the bytes are in data[] */
    const uint8_t *bytes; /* with msg: its plain or its compressed frame */
    uint32_t start;
    uint32_t end;
    uint8_t data[];
};

struct kz_msg {
    uint32_t refs;
    uint32_t len;  /* of the frame in data[] */
    uint32_t zlen; /* of the compressed frame z, 0 if none */
    uint8_t hlen;  /* header bytes in data[] */
    uint8_t op;
    bool z_done; /* compression was tried (it is kept only if it saves bytes) */
    struct kz_server *srv;
    uint8_t *z; /* the frame compressed once, without context, for every taker */
    uint8_t data[];
};

enum kz_conn_state {
    KZ_CONN_HANDSHAKE = 0, /* reading the upgrade request */
    KZ_CONN_OPEN,          /* messages flow both ways */
    KZ_CONN_CLOSING,       /* we sent a close frame and wait for the peer's */
    KZ_CONN_LINGER,        /* nothing more to say: flush, then end the TCP connection */
    KZ_CONN_DEAD,          /* socket closed; freed at the end of the iteration */
    KZ_CONN_TLS,           /* the TLS handshake, before the upgrade request */
};

enum {
    KZ_CF_FLUSH_QUEUED = 1u << 0,   /* on the server's flush list */
    KZ_CF_AWAIT_PONG = 1u << 1,     /* our heartbeat ping is unanswered */
    KZ_CF_DRAIN = 1u << 2,          /* the queue outlived a flush: call on_drain when it empties */
    KZ_CF_OPENED = 1u << 3,         /* on_open was called, so on_close is owed */
    KZ_CF_CLOSE_REPORTED = 1u << 4, /* on_close was called */
    KZ_CF_DISCARD = 1u << 5,        /* the input stream is unusable: read and drop */
    KZ_CF_EOF = 1u << 6,            /* TLS saw the end of the stream behind data read first */
};

struct kz_conn {
    struct kz_io io;
    struct kz_timer timer; /* handshake, heartbeat or close deadline, by state */
    struct kz_server *srv;
    void *user;
    struct kz_conn *prev, *next; /* the server's list of connections */
    struct kz_conn *flush_next;  /* the server's flush list, or the dead list */
    struct kz_parser parser;
    uint8_t *kept; /* input kept between reads; NULL when none */
    uint32_t kept_len;
    uint32_t kept_cap;
    uint8_t *msg; /* reassembly of a message that arrived in pieces */
    size_t msg_len;
    size_t msg_cap;
    struct kz_chunk *out_head, *out_tail;
    size_t buffered;
    uint64_t last_rx;        /* loop time of the last read */
    uint64_t ping_sent;      /* loop time our heartbeat ping left */
    char *close_reason;      /* our close reason, while a close we started is pending */
    struct kz_pmd_conn *pmd; /* permessage-deflate state, if negotiated */
    SSL *ssl;                /* wss://; NULL for plain TCP */
    uint16_t close_code;     /* the code on_close will report */
    uint8_t state;
    uint8_t flags;
    uint8_t msg_op;
    bool client; /* client role: mask what we send, let the server close TCP first */
};

struct kz_server {
    struct kz_loop *loop;
    struct kz_allocator alloc;
    struct kz_server_config cfg;
    struct kz_server_callbacks cb;
    void *user;
    struct kz_io listener;
    struct kz_timer accept_pause; /* listener paused after EMFILE */
    struct kz_defer defer;        /* end of iteration: flush, then free the dead */
    struct kz_conn *conns;        /* every connection */
    struct kz_conn *flush_list;
    struct kz_conn *dead_list;
    struct kz_chunk *pool;      /* free chunks */
    struct kz_chunk *node_pool; /* free kz_msg reference nodes */
    size_t pool_len;
    size_t node_pool_len;
    size_t conn_count;
    size_t open_count;
    struct kz_sha1 *sha1;          /* fetched once: every handshake hashes a key */
    struct kz_deflater *shared_tx; /* KZ_DEFLATE_SHARED: the one compressor */
    uint8_t *rbuf;                 /* rbuf_size bytes */
    uint8_t *cork;                 /* cork_size bytes */
    size_t rbuf_size;
    size_t cork_size;
    size_t cork_len;
    struct kz_conn *corked; /* whose input is being processed, or NULL */
    uint8_t *msg_cache[KZ_MSG_CACHE_COUNT];
    size_t msg_cache_cap[KZ_MSG_CACHE_COUNT];
    unsigned msg_cache_len;
    bool shutting_down;
    bool client;                             /* a client's context: connections are client role */
    void (*conn_freed)(struct kz_server *s); /* client only: after each kz__conn_free */
    uint8_t mask_pool[KZ_MASK_POOL_SIZE];    /* client only: random bytes for mask keys */
    unsigned mask_pos;                       /* next unused byte of mask_pool */
};

/* outq.c */
/* Queues bytes as they are: HTTP heads, and frames the caller has finished. */
int kz__conn_queue(struct kz_conn *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                   size_t plen);
/* Queues a whole frame (FIN set), masked with a fresh key on a client connection. */
int kz__conn_queue_frame_rsv(struct kz_conn *c, unsigned opcode, unsigned rsv,
                             const uint8_t *payload, size_t len);
int kz__conn_queue_frame(struct kz_conn *c, unsigned opcode, const uint8_t *payload, size_t len);
/* A fresh mask key for a client frame, or NULL on a server connection. */
const uint8_t *kz__conn_mask_key(struct kz_conn *c, uint8_t key[4]);
void kz__conn_want_flush(struct kz_conn *c);
void kz__conn_cork(struct kz_conn *c);
void kz__conn_uncork(struct kz_conn *c);
void kz__conn_flush(struct kz_conn *c);
void kz__conn_drop_output(struct kz_conn *c);
void kz__server_pool_free(struct kz_server *s);

/* conn.c */
void kz__conn_start(struct kz_server *s, int fd);
/*
 * A client connection whose opening handshake client.c has completed on
 * `fd` (through `ssl`, which the connection takes, for wss://; else NULL):
 * created OPEN, with permessage-deflate set up from `pmd` (NULL if none was
 * agreed). `early` holds bytes that arrived behind the 101 (frames the
 * server sent at once), processed right after on_open. Returns NULL (and
 * closes fd, frees ssl) if memory runs out.
 */
struct kz_conn *kz__conn_adopt(struct kz_server *s, int fd, SSL *ssl,
                               const struct kz_pmd_params *pmd, void *user, const uint8_t *early,
                               size_t early_len);
/*
 * Reads what the connection's transport (TCP or TLS) has: > 0 bytes, 0 at
 * the end of the stream or on an error, -1 when nothing is there yet.
 */
ssize_t kz__conn_read(struct kz_conn *c, void *buf, size_t len);
void kz__conn_on_io(struct kz_loop *loop, struct kz_io *io, unsigned events);
void kz__conn_after_flush(struct kz_conn *c);
void kz__conn_abort(struct kz_conn *c, uint16_t code, const char *reason);
void kz__conn_free(struct kz_conn *c);
void kz__conn_going_away(struct kz_conn *c);

/* pmd.c */
int kz__pmd_accept(struct kz_conn *c, const struct kz_hs_request *req, char *ext, size_t cap);
/* Sets up the agreed parameters on `c` (either role). KZ_OK or KZ_ERR_NOMEM. */
int kz__pmd_setup(struct kz_conn *c, const struct kz_pmd_params *params);
int kz__pmd_on_data(struct kz_conn *c, const struct kz_event *ev);
int kz__pmd_send(struct kz_conn *c, unsigned op, const uint8_t *data, size_t len);
void kz__pmd_free(struct kz_conn *c);
int kz__pmd_send_msg(struct kz_conn *c, struct kz_msg *m, const uint8_t **bytes, uint32_t *len);

/* server.c: makes sure the end-of-iteration pass (flush, free the dead) runs */
void kz__server_kick(struct kz_server *s);
/* A server with buffers of the given sizes; kz_server_new and client.c's context. */
struct kz_server *kz__server_new(struct kz_loop *loop, const struct kz_server_config *cfg,
                                 const struct kz_server_callbacks *cb, void *user,
                                 const struct kz_allocator *alloc, size_t rbuf_size,
                                 size_t cork_size);

/* allocation through the server's allocator */
void *kz__alloc(struct kz_server *s, size_t n);
void *kz__realloc(struct kz_server *s, void *p, size_t old, size_t n);
void kz__free(struct kz_server *s, void *p);

#endif
