/*
 * The write path: frames are appended to a connection's queue of pooled
 * chunks during the iteration (corked) and leave in one sendmsg (writev without SIGPIPE) per
 * connection at the end of it; what the kernel does not take stays queued
 * and the connection asks for KZ_IO_WRITE. A large send with nothing queued
 * before it goes out at once, header and payload in one writev, and only the
 * rest is copied. Shared messages (kz_msg) are queued by reference.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "ws/ws_internal.h"

static struct kz_chunk *chunk_get(struct kz_server *s)
{
    struct kz_chunk *ch = s->pool;
    if (ch) {
        s->pool = ch->next;
        s->pool_len--;
    } else {
        ch = kz__alloc(s, sizeof(*ch) + KZ_CHUNK_SIZE);
        if (!ch)
            return NULL;
    }
    ch->next = NULL;
    ch->msg = NULL;
    ch->start = ch->end = 0;
    return ch;
}

static struct kz_chunk *node_get(struct kz_server *s)
{
    struct kz_chunk *ch = s->node_pool;
    if (ch) {
        s->node_pool = ch->next;
        s->node_pool_len--;
    } else {
        ch = kz__alloc(s, sizeof(*ch));
        if (!ch)
            return NULL;
    }
    ch->next = NULL;
    ch->start = ch->end = 0;
    return ch;
}

static void chunk_put(struct kz_server *s, struct kz_chunk *ch)
{
    if (ch->msg) {
        kz_msg_unref(ch->msg);
        if (s->node_pool_len < KZ_CHUNK_POOL_MAX * 4) {
            ch->next = s->node_pool;
            s->node_pool = ch;
            s->node_pool_len++;
            return;
        }
    } else if (s->pool_len < KZ_CHUNK_POOL_MAX) {
        ch->next = s->pool;
        s->pool = ch;
        s->pool_len++;
        return;
    }
    kz__free(s, ch);
}

void kz__server_pool_free(struct kz_server *s)
{
    while (s->pool) {
        struct kz_chunk *ch = s->pool;
        s->pool = ch->next;
        kz__free(s, ch);
    }
    while (s->node_pool) {
        struct kz_chunk *ch = s->node_pool;
        s->node_pool = ch->next;
        kz__free(s, ch);
    }
    s->pool_len = s->node_pool_len = 0;
}

static void append_chunk(struct kz_conn *c, struct kz_chunk *ch)
{
    if (c->out_tail)
        c->out_tail->next = ch;
    else
        c->out_head = ch;
    c->out_tail = ch;
}

/*
 * Copies bytes to the end of the queue, filling the last chunk first; with
 * `key`, masks them on the way (client frames), continuing the key's cycle
 * at `off`.
 */
static int queue_copy_masked(struct kz_conn *c, const uint8_t *p, size_t n, const uint8_t *key,
                             size_t off)
{
    while (n > 0) {
        struct kz_chunk *tail = c->out_tail;
        if (!tail || tail->msg || tail->end == KZ_CHUNK_SIZE) {
            tail = chunk_get(c->srv);
            if (!tail)
                return KZ_ERR_NOMEM;
            append_chunk(c, tail);
        }
        size_t room = KZ_CHUNK_SIZE - tail->end;
        size_t take = n < room ? n : room;
        if (key)
            off = kz_mask_copy(tail->data + tail->end, p, take, key, off);
        else
            memcpy(tail->data + tail->end, p, take);
        tail->end += (uint32_t)take;
        c->buffered += take;
        p += take;
        n -= take;
    }
    return KZ_OK;
}

static int queue_copy(struct kz_conn *c, const uint8_t *p, size_t n)
{
    return queue_copy_masked(c, p, n, NULL, 0);
}

const uint8_t *kz__conn_mask_key(struct kz_conn *c, uint8_t key[4])
{
    struct kz_server *s = c->srv;
    if (!c->client)
        return NULL;
    /*
     * RFC 6455 §5.3: each frame's key must be unpredictable, from a strong
     * source of entropy. OpenSSL's CSPRNG is asked for many keys at a time,
     * not for every frame; should it ever fail, the kernel's is used.
     */
    if (s->mask_pos + 4 > KZ_MASK_POOL_SIZE) {
        if (RAND_bytes(s->mask_pool, (int)KZ_MASK_POOL_SIZE) != 1 &&
            getrandom(s->mask_pool, KZ_MASK_POOL_SIZE, 0) != (ssize_t)KZ_MASK_POOL_SIZE)
            return NULL;
        s->mask_pos = 0;
    }
    memcpy(key, s->mask_pool + s->mask_pos, 4);
    s->mask_pos += 4;
    return key;
}

void kz__conn_want_flush(struct kz_conn *c)
{
    struct kz_server *s = c->srv;
    if (c->flags & KZ_CF_FLUSH_QUEUED)
        return;
    c->flags |= KZ_CF_FLUSH_QUEUED;
    c->flush_next = s->flush_list;
    s->flush_list = c;
    kz__server_kick(s);
}

/* Writes through TLS until all is taken or TLS would block; returns the bytes taken, or -1. */
static ssize_t tls_put(SSL *ssl, const uint8_t *p, size_t len)
{
    size_t done = 0;
    unsigned want;
    while (done < len) {
        ssize_t n = kz__tls_write(ssl, p + done, len - done, &want);
        if (n == -2)
            return -1;
        if (n == -1)
            break;
        done += (size_t)n; /* one record at a time (partial writes) */
    }
    return (ssize_t)done;
}

/*
 * write_now under TLS. A frame's header goes in one record with the start
 * of its payload (copied into a record-sized buffer on the stack); the rest
 * of the payload is encrypted straight from the caller's buffer. Should
 * TLS stop half-way, the caller queues the rest from the same bytes, which
 * is what OpenSSL's retry after WANT_WRITE asks for.
 */
static ssize_t write_now_tls(struct kz_conn *c, const uint8_t *hdr, size_t hlen,
                             const uint8_t *payload, size_t plen)
{
    if (!plen)
        return tls_put(c->ssl, hdr, hlen);
    uint8_t rec[KZ_TLS_RECORD];
    size_t first = plen < sizeof(rec) - hlen ? plen : sizeof(rec) - hlen;
    memcpy(rec, hdr, hlen);
    memcpy(rec + hlen, payload, first);
    ssize_t n = tls_put(c->ssl, rec, hlen + first);
    if (n < 0 || (size_t)n < hlen + first)
        return n;
    ssize_t m = tls_put(c->ssl, payload + first, plen - first);
    return m < 0 ? -1 : n + m;
}

/* Writes header and payload now; returns the bytes the kernel took, or -1 on a hard error. */
static ssize_t write_now(struct kz_conn *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                         size_t plen)
{
    if (c->ssl)
        return write_now_tls(c, hdr, hlen, payload, plen);
    struct iovec iov[2] = {{(void *)hdr, hlen}, {(void *)payload, plen}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    for (;;) {
        /* One buffer (a cork) goes by send(): cheaper than importing an iovec. */
        ssize_t n =
            plen ? sendmsg(c->io.fd, &mh, MSG_NOSIGNAL) : send(c->io.fd, hdr, hlen, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -1;
    }
}

void kz__conn_cork(struct kz_conn *c)
{
    c->srv->corked = c;
    c->srv->cork_len = 0;
}

/* Sends what the connection corked; the kernel's leftovers join its queue. */
void kz__conn_uncork(struct kz_conn *c)
{
    struct kz_server *s = c->srv;
    size_t len = s->cork_len;
    s->corked = NULL;
    s->cork_len = 0;
    if (len == 0 || c->state == KZ_CONN_DEAD)
        return;
    c->buffered -= len;
    ssize_t n = write_now(c, s->cork, len, NULL, 0);
    if (n < 0) {
        kz__conn_abort(c, KZ_CLOSE_ABNORMAL, "write failed");
        return;
    }
    if ((size_t)n == len)
        return;
    if (queue_copy(c, s->cork + n, len - (size_t)n) != KZ_OK) {
        kz__conn_abort(c, KZ_CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    c->flags |= KZ_CF_DRAIN;
    kz_io_set_events(s->loop, &c->io, c->io.events | KZ_IO_WRITE);
}

/* Queues a header and its payload, which `key` (if not NULL) masks on the way. */
static int queue_bytes(struct kz_conn *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                       size_t plen, const uint8_t *key)
{
    struct kz_server *s = c->srv;
    size_t total = hlen + plen;
    if (s->corked == c && !c->out_head) {
        if (s->cork_len + total <= s->cork_size) {
            memcpy(s->cork + s->cork_len, hdr, hlen);
            if (plen && key)
                kz_mask_copy(s->cork + s->cork_len + hlen, payload, plen, key, 0);
            else if (plen)
                memcpy(s->cork + s->cork_len + hlen, payload, plen);
            s->cork_len += total;
            c->buffered += total;
            return KZ_OK;
        }
        /* Too big for the cork: what is corked goes first, then this. */
        kz__conn_uncork(c);
        s->corked = c;
        if (c->state == KZ_CONN_DEAD)
            return KZ_ERR_CLOSED;
    }
    /* Masked bytes must be copied anyway: only unmasked ones go straight from the caller. */
    if (!c->out_head && total >= KZ_DIRECT_WRITE_MIN && !key) {
        ssize_t n = write_now(c, hdr, hlen, payload, plen);
        if (n < 0) {
            kz__conn_abort(c, KZ_CLOSE_ABNORMAL, "write failed");
            return KZ_ERR_CLOSED;
        }
        size_t done = (size_t)n;
        if (done == total)
            return KZ_OK;
        if (done < hlen) {
            hdr += done;
            hlen -= done;
        } else {
            payload += done - hlen;
            plen -= done - hlen;
            hlen = 0;
        }
        c->flags |= KZ_CF_DRAIN;
    }
    int rc = queue_copy(c, hdr, hlen);
    if (rc == KZ_OK)
        rc = queue_copy_masked(c, payload, plen, key, 0);
    if (rc != KZ_OK)
        return rc;
    kz__conn_want_flush(c);
    return KZ_OK;
}

int kz__conn_queue(struct kz_conn *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                   size_t plen)
{
    return queue_bytes(c, hdr, hlen, payload, plen, NULL);
}

int kz__conn_queue_frame_rsv(struct kz_conn *c, unsigned opcode, unsigned rsv,
                             const uint8_t *payload, size_t len)
{
    uint8_t hdr[KZ_FRAME_HEADER_MAX], keybuf[4];
    const uint8_t *key = kz__conn_mask_key(c, keybuf);
    if (c->client && !key)
        return KZ_ERR_SYSTEM; /* no randomness: better unsent than predictably masked */
    size_t hlen = kz_frame_write_header(hdr, opcode, true, rsv, len, key);
    return queue_bytes(c, hdr, hlen, payload, len, key);
}

int kz__conn_queue_frame(struct kz_conn *c, unsigned opcode, const uint8_t *payload, size_t len)
{
    return kz__conn_queue_frame_rsv(c, opcode, 0, payload, len);
}

/* Applies the backpressure policy to a send of `n` more bytes. */
static int admit(struct kz_conn *c, size_t n)
{
    if (c->state != KZ_CONN_OPEN)
        return KZ_ERR_CLOSED;
    if (c->buffered + n <= c->srv->cfg.max_buffered)
        return KZ_OK;
    switch (c->srv->cfg.backpressure) {
    case KZ_BP_DROP:
        return KZ_ERR_BACKPRESSURE;
    case KZ_BP_CLOSE_TRY_AGAIN:
        kz__conn_abort(c, KZ_CLOSE_TRY_AGAIN_LATER, "send queue over its limit");
        return KZ_ERR_CLOSED;
    case KZ_BP_CLOSE:
    default:
        kz__conn_abort(c, KZ_CLOSE_POLICY, "send queue over its limit");
        return KZ_ERR_CLOSED;
    }
}

int kz_conn_send(struct kz_conn *c, enum kz_opcode op, const void *data, size_t len)
{
    if (op != KZ_OP_TEXT && op != KZ_OP_BINARY)
        return KZ_ERR_INVALID_ARGUMENT;
    int rc = admit(c, len + KZ_FRAME_HEADER_MAX);
    if (rc != KZ_OK)
        return rc;
    rc = kz__pmd_send(c, op, data, len);
    if (rc != 0)
        return rc > 0 ? KZ_OK : rc;
    return kz__conn_queue_frame(c, op, data, len);
}

int kz_conn_ping(struct kz_conn *c, const void *data, size_t len)
{
    if (len > KZ_CONTROL_PAYLOAD_MAX)
        return KZ_ERR_INVALID_ARGUMENT;
    int rc = admit(c, len + KZ_FRAME_HEADER_MAX);
    if (rc != KZ_OK)
        return rc;
    return kz__conn_queue_frame(c, KZ_OP_PING, data, len);
}

size_t kz_conn_buffered(const struct kz_conn *c)
{
    return c->buffered;
}

struct kz_msg *kz_msg_new(struct kz_server *s, enum kz_opcode op, const void *data, size_t len)
{
    if ((op != KZ_OP_TEXT && op != KZ_OP_BINARY) || len > UINT32_MAX - KZ_FRAME_HEADER_MAX)
        return NULL;
    size_t hlen = kz_frame_header_size(len, false);
    struct kz_msg *m = kz__alloc(s, sizeof(*m) + hlen + len);
    if (!m)
        return NULL;
    memset(m, 0, sizeof(*m));
    m->refs = 1;
    m->srv = s;
    m->len = (uint32_t)(hlen + len);
    m->hlen = (uint8_t)hlen;
    m->op = (uint8_t)op;
    kz_frame_write_header(m->data, op, true, 0, len, NULL);
    if (len)
        memcpy(m->data + hlen, data, len);
    return m;
}

void kz_msg_unref(struct kz_msg *m)
{
    if (m && --m->refs == 0) {
        kz__free(m->srv, m->z);
        kz__free(m->srv, m);
    }
}

int kz_conn_send_msg(struct kz_conn *c, struct kz_msg *m)
{
    if (c->client) /* a client masks every frame: a shared unmasked frame cannot go as it is */
        return kz_conn_send(c, (enum kz_opcode)m->op, m->data + m->hlen, m->len - m->hlen);
    int rc = admit(c, m->len);
    if (rc != KZ_OK)
        return rc;
    const uint8_t *bytes = m->data;
    uint32_t len = m->len;
    if (c->pmd) {
        rc = kz__pmd_send_msg(c, m, &bytes, &len);
        if (rc != 0)
            return rc > 0 ? KZ_OK : rc;
    }
    if (c->srv->corked == c && c->srv->cork_len) {
        /* The corked bytes go before the shared frame, which is queued by reference. */
        kz__conn_uncork(c);
        c->srv->corked = c;
        if (c->state == KZ_CONN_DEAD)
            return KZ_ERR_CLOSED;
    }
    struct kz_chunk *node = node_get(c->srv);
    if (!node)
        return KZ_ERR_NOMEM;
    m->refs++;
    node->msg = m;
    node->bytes = bytes;
    node->start = 0;
    node->end = len;
    append_chunk(c, node);
    c->buffered += len;
    kz__conn_want_flush(c);
    return KZ_OK;
}

void kz__conn_drop_output(struct kz_conn *c)
{
    while (c->out_head) {
        struct kz_chunk *ch = c->out_head;
        c->out_head = ch->next;
        chunk_put(c->srv, ch);
    }
    c->out_tail = NULL;
    c->buffered = 0;
}

static const uint8_t *chunk_bytes(const struct kz_chunk *ch)
{
    return ch->msg ? ch->bytes : ch->data;
}

/* Gives back the chunks the kernel has taken `n` bytes of. */
static void consume(struct kz_conn *c, size_t n)
{
    c->buffered -= n;
    while (n > 0) {
        struct kz_chunk *ch = c->out_head;
        size_t avail = ch->end - ch->start;
        if (n < avail) {
            ch->start += (uint32_t)n;
            return;
        }
        n -= avail;
        c->out_head = ch->next;
        if (!c->out_head)
            c->out_tail = NULL;
        chunk_put(c->srv, ch);
    }
}

/*
 * Writes the queue under TLS, a chunk per SSL_write (a 16 KiB chunk is one
 * record); false if the connection failed.
 * After a WANT_WRITE, OpenSSL expects the same bytes again; the queue's
 * head keeps them (and may only have grown), which
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows.
 */
static bool write_queue_tls(struct kz_conn *c)
{
    unsigned want = KZ_IO_WRITE;
    while (c->out_head) {
        struct kz_chunk *ch = c->out_head;
        ssize_t n = kz__tls_write(c->ssl, chunk_bytes(ch) + ch->start, ch->end - ch->start, &want);
        if (n == -2) {
            kz__conn_abort(c, KZ_CLOSE_ABNORMAL, "write failed");
            return false;
        }
        if (n < 0)
            break;
        consume(c, (size_t)n);
    }
    return true;
}

/* Writes the queue with sendmsg; false if the connection failed. */
static bool write_queue_tcp(struct kz_conn *c)
{
    while (c->out_head) {
        struct iovec iov[KZ_IOV_MAX];
        int cnt = 0;
        for (struct kz_chunk *ch = c->out_head; ch && cnt < KZ_IOV_MAX; ch = ch->next) {
            iov[cnt].iov_base = (void *)(chunk_bytes(ch) + ch->start);
            iov[cnt].iov_len = ch->end - ch->start;
            cnt++;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
        ssize_t n = sendmsg(c->io.fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            kz__conn_abort(c, KZ_CLOSE_ABNORMAL, "write failed");
            return false;
        }
        consume(c, (size_t)n);
    }
    return true;
}

void kz__conn_flush(struct kz_conn *c)
{
    if (!(c->ssl ? write_queue_tls(c) : write_queue_tcp(c)))
        return;
    if (c->out_head) {
        c->flags |= KZ_CF_DRAIN;
        kz_io_set_events(c->srv->loop, &c->io, c->io.events | KZ_IO_WRITE);
        return;
    }
    kz_io_set_events(c->srv->loop, &c->io, c->io.events & ~KZ_IO_WRITE);
    kz__conn_after_flush(c);
}
