/*
 * A server connection's life: the upgrade request, frames in, the close
 * handshake, heartbeats, and the end of the TCP connection.
 *
 * Reading. Every connection of a server reads into the server's one read
 * buffer. The few bytes a read leaves unparsed (a partial frame header or
 * control frame, or a partial upgrade request) are kept in a small buffer of
 * the connection's own and put back in front of the next read. A message
 * that arrives whole in one read is handed to the application straight from
 * the read buffer; only a message that arrives in pieces is gathered.
 *
 * Closing. States go HANDSHAKE → OPEN → CLOSING (we sent a close frame and
 * wait for the peer's) → LINGER (nothing more to say or to read: flush, shut
 * our side of the TCP connection so the peer sees our FIN first, then wait
 * for its FIN, bounded by the close timeout) → DEAD (socket closed; the
 * struct is freed at the end of the loop iteration, so that nothing still
 * running can point at freed memory). Failing the connection because of a
 * protocol error goes straight from OPEN to LINGER after queuing the close
 * frame, and whatever the peer sends after the bad frame is read and
 * dropped, unparsed.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ws/ws_internal.h"

#define KZ_HS_MAX_LINES 64

static void on_timer(struct kz_loop *loop, struct kz_timer *t);

static struct kz_str cstr(const char *s)
{
    struct kz_str r = {s, s ? strlen(s) : 0};
    return r;
}

/* ------------------------------------------------------------------------
 * Ending
 */

static void report_close(struct kz_conn *c, uint16_t code, struct kz_str reason)
{
    if (!(c->flags & KZ_CF_OPENED) || (c->flags & KZ_CF_CLOSE_REPORTED))
        return;
    c->flags |= KZ_CF_CLOSE_REPORTED;
    c->srv->open_count--;
    if (c->srv->cb.on_close)
        c->srv->cb.on_close(c, code, reason);
}

/* Closes the socket now; the struct is freed at the end of the iteration. */
static void kill(struct kz_conn *c)
{
    struct kz_server *s = c->srv;
    if (c->state == KZ_CONN_DEAD)
        return;
    if (s->corked == c)
        s->cork_len = 0; /* nothing more goes to this peer */
    kz_io_close(s->loop, &c->io);
    kz_timer_stop(s->loop, &c->timer);
    kz__tls_free(c->ssl);
    c->ssl = NULL;
    c->state = KZ_CONN_DEAD;
    kz__conn_drop_output(c);
    /* A connection on the flush list is freed by the flush pass when it gets there. */
    if (!(c->flags & KZ_CF_FLUSH_QUEUED)) {
        c->flush_next = s->dead_list;
        s->dead_list = c;
    }
    kz__server_kick(s);
}

void kz__conn_abort(struct kz_conn *c, uint16_t code, const char *reason)
{
    report_close(c, code, cstr(reason));
    kill(c);
}

static void start_timer(struct kz_conn *c, uint32_t ms)
{
    if (ms)
        kz_timer_start(c->srv->loop, &c->timer, ms, on_timer);
    else
        kz_timer_stop(c->srv->loop, &c->timer);
}

/* Nothing more to say: flush what is queued, then end the TCP connection. */
static void linger(struct kz_conn *c)
{
    if (c->state == KZ_CONN_DEAD)
        return;
    c->state = KZ_CONN_LINGER;
    c->flags |= KZ_CF_DISCARD;
    start_timer(c, c->srv->cfg.close_timeout_ms ? c->srv->cfg.close_timeout_ms : 1000);
    kz__conn_want_flush(c);
}

static void queue_close_frame(struct kz_conn *c, uint16_t code, const char *reason, size_t len)
{
    uint8_t frame[KZ_FRAME_HEADER_MAX + KZ_CONTROL_PAYLOAD_MAX], keybuf[4];
    const uint8_t *key = kz__conn_mask_key(c, keybuf);
    if (c->client && !key)
        return;
    int n = kz_frame_write_close(frame, sizeof(frame), code, reason, len, key);
    if (n < 0) /* only reasons of our own reach here; fall back to the bare code */
        n = kz_frame_write_close(frame, sizeof(frame), code, NULL, 0, key);
    if (n > 0)
        kz__conn_queue(c, frame, (size_t)n, NULL, 0);
}

/* Fails the connection: the close frame goes out, the rest of the input is dropped. */
static void fail(struct kz_conn *c, uint16_t code, const char *reason)
{
    if (c->state == KZ_CONN_OPEN)
        queue_close_frame(c, code, reason, strlen(reason));
    if (c->state != KZ_CONN_DEAD)
        linger(c);
    report_close(c, code, cstr(reason));
}

static void refuse(struct kz_conn *c, int status, const char *reason)
{
    char out[512];
    int n = kz_hs_write_refusal(out, sizeof(out), status, reason);
    if (n < 0)
        n = kz_hs_write_refusal(out, sizeof(out), status, NULL);
    if (n > 0)
        kz__conn_queue(c, (const uint8_t *)out, (size_t)n, NULL, 0);
    if (c->state != KZ_CONN_DEAD) /* a failed write has already closed it */
        linger(c);
}

void kz__conn_after_flush(struct kz_conn *c)
{
    if ((c->flags & KZ_CF_DRAIN) && c->state == KZ_CONN_OPEN) {
        c->flags &= (uint8_t)~KZ_CF_DRAIN;
        if (c->srv->cb.on_drain)
            c->srv->cb.on_drain(c);
    }
    /*
     * A server's FIN goes first and the peer's ends it. A client leaves
     * that to the server (RFC 6455 §7.1.1) and waits for its FIN, bounded
     * by the close timeout.
     */
    if (c->state == KZ_CONN_LINGER && !c->client) {
        if (c->ssl)
            kz__tls_close_notify(c->ssl);
        shutdown(c->io.fd, SHUT_WR);
    }
    /* TLS already took the peer's end off the socket: epoll will not report it. */
    if (c->state == KZ_CONN_LINGER && (c->flags & KZ_CF_EOF))
        kill(c);
}

void kz__conn_going_away(struct kz_conn *c)
{
    if (c->state == KZ_CONN_HANDSHAKE)
        refuse(c, 503, "server shutting down");
    else if (c->state == KZ_CONN_OPEN)
        kz_conn_close(c, KZ_CLOSE_GOING_AWAY, "server shutting down", 20);
}

int kz_conn_close(struct kz_conn *c, uint16_t code, const char *reason, size_t reason_len)
{
    if (c->state != KZ_CONN_OPEN)
        return KZ_ERR_CLOSED;
    if ((code != 0 && !kz_close_code_valid(code)) || (code == 0 && reason_len) ||
        reason_len > KZ_CLOSE_REASON_MAX)
        return KZ_ERR_INVALID_ARGUMENT;
    if (reason_len && !kz_utf8_valid((const uint8_t *)reason, reason_len))
        return KZ_ERR_INVALID_UTF8;
    char *copy = NULL;
    if (reason_len) {
        copy = kz__alloc(c->srv, reason_len + 1);
        if (!copy)
            return KZ_ERR_NOMEM;
        memcpy(copy, reason, reason_len);
        copy[reason_len] = '\0';
    }
    queue_close_frame(c, code, reason, reason_len);
    if (c->state != KZ_CONN_OPEN) { /* the write failed and killed it */
        kz__free(c->srv, copy);
        return KZ_OK;
    }
    c->close_reason = copy;
    c->close_code = code ? code : KZ_CLOSE_NO_STATUS;
    c->state = KZ_CONN_CLOSING;
    start_timer(c, c->srv->cfg.close_timeout_ms);
    return KZ_OK;
}

/* The peer answered the close we started. */
static void closing_done(struct kz_conn *c)
{
    linger(c);
    report_close(c, c->close_code, cstr(c->close_reason));
}

/* ------------------------------------------------------------------------
 * Heartbeat
 */

static void arm_heartbeat(struct kz_conn *c)
{
    const struct kz_server_config *cfg = &c->srv->cfg;
    uint64_t now = kz_loop_now(c->srv->loop);
    uint64_t next = UINT64_MAX;
    if (c->flags & KZ_CF_AWAIT_PONG) {
        if (cfg->pong_timeout_ms)
            next = c->ping_sent + cfg->pong_timeout_ms;
    } else if (cfg->ping_interval_ms) {
        next = c->last_rx + cfg->ping_interval_ms;
    }
    if (cfg->idle_timeout_ms && c->last_rx + cfg->idle_timeout_ms < next)
        next = c->last_rx + cfg->idle_timeout_ms;
    if (next == UINT64_MAX)
        kz_timer_stop(c->srv->loop, &c->timer);
    else
        kz_timer_start(c->srv->loop, &c->timer, next > now ? next - now : 0, on_timer);
}

static void heartbeat(struct kz_conn *c)
{
    const struct kz_server_config *cfg = &c->srv->cfg;
    uint64_t now = kz_loop_now(c->srv->loop);
    if ((c->flags & KZ_CF_AWAIT_PONG) && c->last_rx > c->ping_sent)
        c->flags &= (uint8_t)~KZ_CF_AWAIT_PONG; /* the peer spoke since: it is alive */
    if (cfg->idle_timeout_ms && now - c->last_rx >= cfg->idle_timeout_ms) {
        kz_conn_close(c, KZ_CLOSE_GOING_AWAY, "idle timeout", 12);
        return;
    }
    if (c->flags & KZ_CF_AWAIT_PONG) {
        if (cfg->pong_timeout_ms && now - c->ping_sent >= cfg->pong_timeout_ms) {
            kz__conn_abort(c, KZ_CLOSE_ABNORMAL, "no pong: peer unreachable");
            return;
        }
    } else if (cfg->ping_interval_ms && now - c->last_rx >= cfg->ping_interval_ms) {
        if (kz__conn_queue_frame(c, KZ_OP_PING, NULL, 0) != KZ_OK || c->state != KZ_CONN_OPEN)
            return;
        c->flags |= KZ_CF_AWAIT_PONG;
        c->ping_sent = now;
    }
    arm_heartbeat(c);
}

static void on_timer(struct kz_loop *loop, struct kz_timer *t)
{
    struct kz_conn *c = KZ_CONTAINER_OF(t, struct kz_conn, timer);
    switch (c->state) {
    case KZ_CONN_TLS:
    case KZ_CONN_HANDSHAKE:
        kill(c); /* never opened: nothing to report */
        break;
    case KZ_CONN_OPEN:
        heartbeat(c);
        break;
    case KZ_CONN_CLOSING:
        kz__conn_abort(c, c->close_code, c->close_reason ? c->close_reason : "close timeout");
        break;
    default:
        kill(c);
        break;
    }
}

/* ------------------------------------------------------------------------
 * Frames in
 */

/* Takes the smallest cached buffer that holds `need` bytes, else the largest one. */
static void msg_from_cache(struct kz_conn *c, size_t need)
{
    struct kz_server *s = c->srv;
    if (s->msg_cache_len == 0)
        return;
    unsigned best = 0;
    for (unsigned i = 1; i < s->msg_cache_len; i++) {
        bool fits = s->msg_cache_cap[i] >= need;
        bool best_fits = s->msg_cache_cap[best] >= need;
        if ((fits && (!best_fits || s->msg_cache_cap[i] < s->msg_cache_cap[best])) ||
            (!fits && !best_fits && s->msg_cache_cap[i] > s->msg_cache_cap[best]))
            best = i;
    }
    c->msg = s->msg_cache[best];
    c->msg_cap = s->msg_cache_cap[best];
    s->msg_cache_len--;
    s->msg_cache[best] = s->msg_cache[s->msg_cache_len];
    s->msg_cache_cap[best] = s->msg_cache_cap[s->msg_cache_len];
}

/* Gives a finished message's buffer back to the cache, or frees it. */
static void msg_release(struct kz_conn *c)
{
    struct kz_server *s = c->srv;
    if (c->msg && c->msg_cap <= KZ_MSG_CACHE_MAX && s->msg_cache_len < KZ_MSG_CACHE_COUNT) {
        s->msg_cache[s->msg_cache_len] = c->msg;
        s->msg_cache_cap[s->msg_cache_len] = c->msg_cap;
        s->msg_cache_len++;
    } else {
        kz__free(s, c->msg);
    }
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
}

/*
 * Appends a piece of a message. The rest of the current frame is known
 * (`more`), so the buffer grows once per frame to fit it, not by doubling
 * through every size on the way; the parser has already checked the total
 * against the message limit.
 */
static int gather(struct kz_conn *c, const uint8_t *data, size_t len, uint64_t more)
{
    if (len == 0)
        return KZ_OK; /* an empty fragment is legal, and may come with no pointer */
    if (!c->msg)
        msg_from_cache(c, len + (size_t)more);
    if (c->msg_len + len > c->msg_cap) {
        size_t cap = c->msg_len + len + (size_t)more;
        if (cap < 2 * c->msg_cap)
            cap = 2 * c->msg_cap; /* a message of many small fragments still grows geometrically */
        size_t limit = c->srv->cfg.max_message_size;
        if (cap > limit && limit >= c->msg_len + len + (size_t)more)
            cap = limit;
        uint8_t *p = kz__realloc(c->srv, c->msg, c->msg_len, cap);
        if (!p)
            return KZ_ERR_NOMEM;
        c->msg = p;
        c->msg_cap = cap;
    }
    if (data != c->msg + c->msg_len) /* else it was read straight into place */
        memcpy(c->msg + c->msg_len, data, len);
    c->msg_len += len;
    return KZ_OK;
}

static void on_data(struct kz_conn *c, const struct kz_event *ev)
{
    if (c->state != KZ_CONN_OPEN)
        return; /* after our close frame, data is no longer ours to take */
    if (c->pmd) {
        if (ev->rsv & KZ_RSV1) {
            int rc = kz__pmd_on_data(c, ev);
            if (rc < 0)
                fail(c, (uint16_t)kz_err_close_code(rc), kz_strerror(rc));
            return;
        }
        /* The parser's bound is loosened for compressed messages; plain ones keep the limit. */
        if (c->msg_len + ev->len + ev->remaining > c->srv->cfg.max_message_size) {
            fail(c, KZ_CLOSE_TOO_BIG, kz_strerror(KZ_ERR_MESSAGE_TOO_BIG));
            return;
        }
    }
    if (ev->first && ev->fin) {
        c->srv->cb.on_message(c, (enum kz_opcode)ev->opcode, ev->data, ev->len);
        return;
    }
    if (ev->first)
        c->msg_op = ev->opcode;
    if (gather(c, ev->data, ev->len, ev->remaining) != KZ_OK) {
        fail(c, KZ_CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    if (!ev->fin)
        return;
    c->srv->cb.on_message(c, (enum kz_opcode)c->msg_op, c->msg, c->msg_len);
    /* The buffer goes back to the server: an idle connection holds none. */
    msg_release(c);
}

static void on_peer_close(struct kz_conn *c, const struct kz_event *ev)
{
    if (c->state == KZ_CONN_CLOSING) {
        closing_done(c);
        return;
    }
    /* Echo the code (RFC 6455 §5.5.1); no code stays no code. */
    uint16_t code = ev->close_code == KZ_CLOSE_NO_STATUS ? 0 : ev->close_code;
    queue_close_frame(c, code, NULL, 0);
    if (c->state == KZ_CONN_DEAD)
        return;
    linger(c);
    report_close(c, ev->close_code, ev->close_reason);
}

static void on_event(struct kz_conn *c, const struct kz_event *ev)
{
    switch (ev->type) {
    case KZ_EV_DATA:
        on_data(c, ev);
        break;
    case KZ_EV_PING:
        if (c->state != KZ_CONN_OPEN)
            break;
        /* A peer that pings without reading cannot grow our queue without bound. */
        if (c->buffered > c->srv->cfg.max_buffered)
            fail(c, KZ_CLOSE_POLICY, "ping flood");
        else
            kz__conn_queue_frame(c, KZ_OP_PONG, ev->data, ev->len);
        break;
    case KZ_EV_PONG:
        c->flags &= (uint8_t)~KZ_CF_AWAIT_PONG;
        if (c->state == KZ_CONN_OPEN && c->srv->cb.on_pong)
            c->srv->cb.on_pong(c, ev->data, ev->len);
        break;
    case KZ_EV_CLOSE:
        on_peer_close(c, ev);
        break;
    default:
        break;
    }
}

/* Parses what can be parsed; returns how many bytes were consumed. */
static size_t process(struct kz_conn *c, uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (off < len && (c->state == KZ_CONN_OPEN || c->state == KZ_CONN_CLOSING)) {
        struct kz_event ev;
        ptrdiff_t used = kz_parser_parse(&c->parser, buf + off, len - off, &ev);
        if (used < 0) {
            int err = (int)used;
            fail(c, (uint16_t)kz_err_close_code(err), kz_strerror(err));
            return len;
        }
        off += (size_t)used;
        if (ev.type == KZ_EV_NONE)
            return off;
        on_event(c, &ev);
    }
    return c->state == KZ_CONN_OPEN || c->state == KZ_CONN_CLOSING ? off : len;
}

/* Keeps the unparsed tail of this read for the next one. */
static int keep(struct kz_conn *c, const uint8_t *p, size_t n)
{
    if (n == 0) {
        if (c->kept) {
            kz__free(c->srv, c->kept);
            c->kept = NULL;
            c->kept_cap = 0;
        }
        c->kept_len = 0;
        return KZ_OK;
    }
    if (n > c->kept_cap) {
        uint8_t *q = kz__realloc(c->srv, c->kept, 0, n);
        if (!q)
            return KZ_ERR_NOMEM;
        c->kept = q;
        c->kept_cap = (uint32_t)n;
    }
    memmove(c->kept, p, n);
    c->kept_len = (uint32_t)n;
    return KZ_OK;
}

ssize_t kz__conn_read(struct kz_conn *c, void *buf, size_t len)
{
    if (c->ssl) {
        if (c->flags & KZ_CF_EOF)
            return 0;
        /*
         * TLS hands out one record (at most 16 KiB) per call: read on while
         * it holds more and there is room, so that a burst is parsed in one
         * pass as over TCP.
         */
        size_t got = 0;
        while (got < len) {
            unsigned want = 0;
            ssize_t n = kz__tls_read(c->ssl, (uint8_t *)buf + got, len - got, &want);
            if (n > 0) {
                got += (size_t)n;
                if (!SSL_has_pending(c->ssl))
                    break; /* TLS holds no more: epoll says when the socket has */
                continue;
            }
            if (got && n != -1)
                c->flags |= KZ_CF_EOF; /* OpenSSL has taken it off the socket: epoll will not say */
            if (got)
                break; /* what came is processed first; the end is reported by the next read */
            return n == -1 ? -1 : 0;
        }
        return (ssize_t)got;
    }
    ssize_t n;
    do
        n = read(c->io.fd, buf, len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? -1 : 0;
    return n;
}

/* Reads after what was kept; returns the total in the read buffer, 0 at EOF, -1 for nothing. */
static ssize_t fill(struct kz_conn *c)
{
    uint8_t *buf = c->srv->rbuf;
    size_t have = c->kept_len;
    if (have)
        memcpy(buf, c->kept, have);
    ssize_t n = kz__conn_read(c, buf + have, c->srv->rbuf_size - have);
    if (n <= 0)
        return n;
    c->last_rx = kz_loop_now(c->srv->loop);
    return (ssize_t)have + n;
}

static void on_eof(struct kz_conn *c)
{
    if (c->state == KZ_CONN_CLOSING)
        kz__conn_abort(c, c->close_code, c->close_reason ? c->close_reason : "");
    else
        kz__conn_abort(c, KZ_CLOSE_ABNORMAL, "connection dropped without a close frame");
}

/*
 * The rest of a large frame is read straight into the message buffer it is
 * gathered in (room for it was made when the frame began), and parsed there:
 * one copy less than going through the read buffer. Only the frame's own
 * bytes are read, so nothing of the next frame lands in the message.
 */
static bool read_into_message(struct kz_conn *c)
{
    uint64_t rest = c->parser.remaining;
    if (c->kept_len || !c->msg || rest < KZ_DIRECT_READ_MIN || c->msg_cap - c->msg_len < rest)
        return false;
    uint8_t *dst = c->msg + c->msg_len;
    ssize_t n = kz__conn_read(c, dst, (size_t)rest);
    if (n < 0)
        return true;
    if (n == 0) {
        on_eof(c);
        return true;
    }
    c->last_rx = kz_loop_now(c->srv->loop);
    process(c, dst, (size_t)n);
    return true;
}

static void read_frames(struct kz_conn *c)
{
    if (c->state == KZ_CONN_OPEN && read_into_message(c))
        return;
    ssize_t total = fill(c);
    if (total < 0)
        return;
    if (total == 0) {
        on_eof(c);
        return;
    }
    size_t used = process(c, c->srv->rbuf, (size_t)total);
    if (c->state != KZ_CONN_OPEN && c->state != KZ_CONN_CLOSING)
        return;
    if (keep(c, c->srv->rbuf + used, (size_t)total - used) != KZ_OK)
        fail(c, KZ_CLOSE_INTERNAL_ERROR, "out of memory");
}

static void read_discard(struct kz_conn *c)
{
    ssize_t n = kz__conn_read(c, c->srv->rbuf, c->srv->rbuf_size);
    if (n == 0)
        kill(c); /* the peer's FIN (or reset) ends a lingering connection */
}

/* ------------------------------------------------------------------------
 * The opening handshake
 */

bool kz_upgrade_pick_protocol(struct kz_upgrade *up, const struct kz_hs_request *req,
                              const char *const *supported, size_t n)
{
    struct kz_hs_iter it = {0, 0};
    struct kz_str p;
    while (kz_hs_list_next(req->headers, req->num_headers, "Sec-WebSocket-Protocol", &it, &p)) {
        for (size_t i = 0; i < n; i++) {
            if (strlen(supported[i]) == p.len && memcmp(supported[i], p.ptr, p.len) == 0) {
                up->subprotocol = p;
                return true;
            }
        }
    }
    return false;
}

static bool protocol_offered(const struct kz_hs_request *req, struct kz_str want)
{
    struct kz_hs_iter it = {0, 0};
    struct kz_str p;
    while (kz_hs_list_next(req->headers, req->num_headers, "Sec-WebSocket-Protocol", &it, &p))
        if (p.len == want.len && memcmp(p.ptr, want.ptr, p.len) == 0)
            return true;
    return false;
}

static void open_conn(struct kz_conn *c, const struct kz_hs_request *req, struct kz_upgrade *up)
{
    char out[1024], ext[KZ_PMD_ELEMENT_MAX];
    struct kz_hs_accept acc = {.subprotocol = up->subprotocol, .sha1 = c->srv->sha1};
    int rc = kz__pmd_accept(c, req, ext, sizeof(ext));
    if (rc < 0) {
        refuse(c, kz_hs_err_status(rc), kz_strerror(rc));
        return;
    }
    if (rc == 1)
        acc.extensions = (struct kz_str){ext, strlen(ext)};
    int n = kz_hs_write_response(out, sizeof(out), req, &acc);
    if (n < 0) {
        refuse(c, 500, "response too large");
        return;
    }
    kz__conn_queue(c, (const uint8_t *)out, (size_t)n, NULL, 0);
    if (c->state != KZ_CONN_HANDSHAKE)
        return;
    c->user = up->user;
    c->state = KZ_CONN_OPEN;
    c->flags |= KZ_CF_OPENED;
    c->srv->open_count++;
    arm_heartbeat(c);
    if (c->srv->cb.on_open)
        c->srv->cb.on_open(c);
}

static void read_handshake(struct kz_conn *c)
{
    struct kz_server *s = c->srv;
    size_t had = c->kept_len;
    ssize_t total = fill(c);
    if (total < 0)
        return;
    if (total == 0) {
        kill(c);
        return;
    }
    /*
     * A request starts with its method, upper-case letters (or an empty
     * line, which RFC 9112 §2.2 lets a server skip): anything else (a TLS
     * ClientHello at a ws:// port, say) is refused at once rather than
     * waited on until the head limit or the timeout.
     */
    uint8_t first = s->rbuf[0];
    if (had == 0 && (first < 'A' || first > 'Z') && first != '\r' && first != '\n') {
        refuse(c, 400,
               first == 0x16 ? "this port does not speak TLS: use ws://" : "not an HTTP request");
        return;
    }
    struct kz_header lines[KZ_HS_MAX_LINES];
    struct kz_hs_request req = {.headers = lines, .max_headers = KZ_HS_MAX_LINES};
    const char *text = (const char *)s->rbuf;
    int head = kz_hs_parse_request(text, (size_t)total, had, s->cfg.max_header_size, &req);
    if (head == KZ_ERR_PARTIAL) {
        if (keep(c, s->rbuf, (size_t)total) != KZ_OK)
            kill(c);
        return;
    }
    keep(c, NULL, 0);
    int err = head < 0 ? head : kz_hs_check_request(&req);
    if (err < 0) {
        refuse(c, kz_hs_err_status(err), kz_strerror(err));
        return;
    }
    if (s->shutting_down) {
        refuse(c, 503, "server shutting down");
        return;
    }
    struct kz_upgrade up = {0};
    if (s->cb.on_upgrade)
        s->cb.on_upgrade(c, &req, &up);
    if (up.status >= 400 && up.status <= 599) {
        refuse(c, up.status, up.reason);
        return;
    }
    if (up.subprotocol.len && !protocol_offered(&req, up.subprotocol)) {
        refuse(c, 500, "the server chose a subprotocol the client did not offer");
        return;
    }
    open_conn(c, &req, &up);
    /* Frames the client sent right behind its request. */
    size_t rest = (size_t)total - (size_t)head;
    if (rest && c->state == KZ_CONN_OPEN) {
        size_t used = process(c, s->rbuf + head, rest);
        if ((c->state == KZ_CONN_OPEN || c->state == KZ_CONN_CLOSING) &&
            keep(c, s->rbuf + head + used, rest - used) != KZ_OK)
            fail(c, KZ_CLOSE_INTERNAL_ERROR, "out of memory");
    }
}

/* ------------------------------------------------------------------------
 * Start and dispatch
 */

/* The answer to plain HTTP at a TLS port: say what went wrong, in plain HTTP. */
static void refuse_plain_http(struct kz_conn *c)
{
    static const char body[] = "This port speaks TLS: use wss:// (or https://).\n";
    char out[256];
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     sizeof(body) - 1, body);
    if (n > 0 && send(c->io.fd, out, (size_t)n, MSG_NOSIGNAL) < 0) {
        /* best effort: the connection is closed either way */
    }
    /*
     * TLS looked at only the first bytes of the request: read the rest that
     * is here, so that closing sends a FIN rather than a reset that could
     * destroy the answer before the client reads it.
     */
    char sink[4096];
    for (int i = 0; i < 4 && recv(c->io.fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++) {
    }
}

/* Advances the server side of the TLS handshake; then reads the upgrade request. */
static void tls_step(struct kz_conn *c)
{
    struct kz_server *s = c->srv;
    unsigned want = KZ_IO_READ;
    bool plain = false;
    char err[256];
    int rc = kz__tls_handshake(c->ssl, &want, &plain, err, sizeof(err));
    if (rc == 0) {
        kz_io_set_events(s->loop, &c->io, want);
        return;
    }
    if (rc < 0) {
        if (plain) {
            refuse_plain_http(c);
            snprintf(err, sizeof(err), "plain HTTP sent to the TLS port (answered 400)");
        }
        if (s->cb.on_tls_error)
            s->cb.on_tls_error(c, err);
        kill(c);
        return;
    }
    c->state = KZ_CONN_HANDSHAKE;
    kz_io_set_events(s->loop, &c->io, KZ_IO_READ);
    start_timer(c, s->cfg.handshake_timeout_ms);
    kz__conn_cork(c);
    read_handshake(c); /* the request often came with the handshake's last flight */
    kz__conn_uncork(c);
}

void kz__conn_on_io(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    struct kz_conn *c = KZ_CONTAINER_OF(io, struct kz_conn, io);
    if (c->state == KZ_CONN_TLS) {
        tls_step(c);
        return;
    }
    if ((events & KZ_IO_WRITE) && c->out_head)
        kz__conn_flush(c);
    if (!(events & KZ_IO_READ))
        return;
    switch (c->state) {
    case KZ_CONN_HANDSHAKE:
        kz__conn_cork(c);
        read_handshake(c);
        kz__conn_uncork(c);
        break;
    case KZ_CONN_OPEN:
    case KZ_CONN_CLOSING:
        kz__conn_cork(c);
        /* Records TLS has already taken off the socket do not wake epoll: read them now. */
        for (int i = 0; i < 16; i++) {
            read_frames(c);
            if (!c->ssl || !(SSL_has_pending(c->ssl) || (c->flags & KZ_CF_EOF)) ||
                (c->state != KZ_CONN_OPEN && c->state != KZ_CONN_CLOSING))
                break;
        }
        kz__conn_uncork(c);
        break;
    case KZ_CONN_LINGER:
        read_discard(c);
        break;
    default:
        break;
    }
}

/* A connection on `fd`, registered with the loop and the server; NULL (fd closed) on failure. */
static struct kz_conn *conn_new(struct kz_server *s, int fd, bool client)
{
    struct kz_conn *c = kz__alloc(s, sizeof(*c));
    if (!c) {
        close(fd);
        return NULL;
    }
    memset(c, 0, sizeof(*c));
    c->srv = s;
    c->client = client;
    struct kz_parser_config pc;
    kz_parser_config_default(&pc, client ? KZ_ROLE_CLIENT : KZ_ROLE_SERVER);
    pc.max_message_size = s->cfg.max_message_size;
    pc.max_frame_size = s->cfg.max_frame_size;
    kz_parser_init(&c->parser, &pc, &s->alloc);
    if (kz_io_start(s->loop, &c->io, fd, KZ_IO_READ, kz__conn_on_io) != KZ_OK) {
        close(fd);
        kz__free(s, c);
        return NULL;
    }
    c->last_rx = kz_loop_now(s->loop);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->conn_count++;
    return c;
}

void kz__conn_start(struct kz_server *s, int fd)
{
    struct kz_conn *c = conn_new(s, fd, false);
    if (!c)
        return;
    if (s->cfg.tls) {
        c->ssl = kz__tls_server_ssl(s->cfg.tls, fd);
        if (!c->ssl) {
            kill(c);
            return;
        }
        c->state = KZ_CONN_TLS;
        start_timer(c, s->cfg.tls_handshake_timeout_ms);
        tls_step(c); /* the ClientHello is usually here already (TCP_DEFER_ACCEPT) */
        return;
    }
    start_timer(c, s->cfg.handshake_timeout_ms);
    /*
     * The listener defers accepting until the client has sent something
     * (TCP_DEFER_ACCEPT), so the request is usually here already: read it
     * now rather than after a trip through epoll.
     */
    kz__conn_cork(c);
    read_handshake(c);
    kz__conn_uncork(c);
}

struct kz_conn *kz__conn_adopt(struct kz_server *s, int fd, SSL *ssl,
                               const struct kz_pmd_params *pmd, void *user, const uint8_t *early,
                               size_t early_len)
{
    struct kz_conn *c = conn_new(s, fd, true);
    if (!c) {
        kz__tls_free(ssl);
        return NULL;
    }
    c->ssl = ssl;
    if (pmd && kz__pmd_setup(c, pmd) != KZ_OK) {
        kill(c);
        return NULL;
    }
    c->user = user;
    c->state = KZ_CONN_OPEN;
    c->flags |= KZ_CF_OPENED;
    s->open_count++;
    arm_heartbeat(c);
    kz__conn_cork(c);
    if (s->cb.on_open)
        s->cb.on_open(c);
    /* Frames the server sent right behind its 101. */
    if (early_len && c->state == KZ_CONN_OPEN) {
        uint8_t *buf = s->rbuf;
        memcpy(buf, early, early_len);
        size_t used = process(c, buf, early_len);
        if ((c->state == KZ_CONN_OPEN || c->state == KZ_CONN_CLOSING) &&
            keep(c, buf + used, early_len - used) != KZ_OK)
            fail(c, KZ_CLOSE_INTERNAL_ERROR, "out of memory");
    }
    kz__conn_uncork(c);
    return c;
}

void kz__conn_free(struct kz_conn *c)
{
    struct kz_server *s = c->srv;
    if (c->state != KZ_CONN_DEAD)
        kill(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->conn_count--;
    kz_parser_deinit(&c->parser);
    kz__free(s, c->kept);
    msg_release(c);
    kz__pmd_free(c);
    kz__free(s, c->close_reason);
    kz__free(s, c);
    if (s->conn_freed)
        s->conn_freed(s);
}

void *kz_conn_user(const struct kz_conn *c)
{
    return c->user;
}

void kz_conn_set_user(struct kz_conn *c, void *user)
{
    c->user = user;
}

struct kz_server *kz_conn_server(const struct kz_conn *c)
{
    return c->srv;
}
