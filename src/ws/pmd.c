/*
 * permessage-deflate on a server connection: negotiation during the
 * handshake, inflating compressed messages as their frames arrive (bounded
 * by the message limit, UTF-8 checked on the inflated bytes, fail-fast
 * across frames), and compressing what the connection sends.
 *
 * Memory: the inflater and a dedicated deflater are trimmed after every
 * message, which frees everything when there is no context takeover in that
 * direction. In KZ_DEFLATE_SHARED mode the connection has no deflater: the
 * server's one, reset after every message, serves every connection.
 */
#include <string.h>

#include "ws/ws_internal.h"

struct kz_pmd_conn {
    struct kz_pmd_params params;
    struct kz_deflater *tx; /* NULL: the server's shared deflater */
    struct kz_inflater *rx;
    kz_utf8_state utf8; /* of the inflated text of the message in progress */
    bool check_utf8;
    bool plain_only; /* send uncompressed (a client held to an 8-bit window) */
};

static struct kz_deflater *new_deflater(struct kz_server *s, uint8_t window_bits,
                                        bool no_context_takeover)
{
    struct kz_deflate_config dc = {
        .window_bits = window_bits,
        .level = s->cfg.deflate_level,
        .mem_level = s->cfg.deflate_mem_level,
        .no_context_takeover = no_context_takeover,
    };
    return kz_deflater_new(&dc, &s->alloc);
}

int kz__pmd_accept(struct kz_conn *c, const struct kz_hs_request *req, char *ext, size_t cap)
{
    struct kz_server *s = c->srv;
    struct kz_pmd_policy pol = s->cfg.deflate;
    if (!pol.enabled)
        return 0;
    if (s->cfg.deflate_mode == KZ_DEFLATE_SHARED)
        pol.server_no_context_takeover = true;
    struct kz_pmd_params params;
    int rc = kz_pmd_negotiate(req, &pol, &params, ext, cap);
    if (rc <= 0)
        return rc;
    rc = kz__pmd_setup(c, &params);
    return rc == KZ_OK ? 1 : rc;
}

int kz__pmd_setup(struct kz_conn *c, const struct kz_pmd_params *params)
{
    struct kz_server *s = c->srv;
    /* What each side compresses with, seen from this end. */
    uint8_t rx_bits = c->client ? params->server_max_window_bits : params->client_max_window_bits;
    bool rx_nct =
        c->client ? params->server_no_context_takeover : params->client_no_context_takeover;
    uint8_t tx_bits = c->client ? params->client_max_window_bits : params->server_max_window_bits;
    bool tx_nct =
        c->client ? params->client_no_context_takeover : params->server_no_context_takeover;
    struct kz_pmd_conn *pc = kz__alloc(s, sizeof(*pc));
    if (!pc)
        return KZ_ERR_NOMEM;
    memset(pc, 0, sizeof(*pc));
    pc->params = *params;
    struct kz_inflate_config ic = {
        .window_bits = rx_bits,
        .no_context_takeover = rx_nct,
        .max_message = s->cfg.max_message_size,
    };
    pc->rx = kz_inflater_new(&ic, &s->alloc);
    /*
     * A client held to an 8-bit window sends plainly: zlib cannot compress
     * within 256 bytes, and an uncompressed message is always allowed.
     */
    pc->plain_only = c->client && tx_bits < 9;
    bool own_tx = c->client ? !pc->plain_only : s->cfg.deflate_mode == KZ_DEFLATE_DEDICATED;
    if (own_tx)
        pc->tx = new_deflater(s, tx_bits, tx_nct);
    if (!pc->rx || (own_tx && !pc->tx)) {
        kz_inflater_free(pc->rx);
        kz_deflater_free(pc->tx);
        kz__free(s, pc);
        return KZ_ERR_NOMEM;
    }
    c->pmd = pc;
    c->parser.rsv_allowed = KZ_RSV1; /* compressed messages are marked with RSV1 */
    /*
     * The message limit is on what the application receives: the inflated
     * size of a compressed message (the inflater enforces it). Its wire size
     * may be a little larger than the limit (incompressible data grows by
     * deflate's block overhead), so the parser gets a looser bound, and
     * uncompressed messages are held to the exact limit in conn.c.
     */
    uint64_t max = s->cfg.max_message_size;
    uint64_t wire = max + max / 8 + 4096;
    c->parser.max_msg = wire;
    if (c->parser.max_frame == max)
        c->parser.max_frame = wire;
    return KZ_OK;
}

void kz__pmd_free(struct kz_conn *c)
{
    if (!c->pmd)
        return;
    kz_inflater_free(c->pmd->rx);
    kz_deflater_free(c->pmd->tx);
    kz__free(c->srv, c->pmd);
    c->pmd = NULL;
}

int kz__pmd_on_data(struct kz_conn *c, const struct kz_event *ev)
{
    struct kz_pmd_conn *pc = c->pmd;
    if (ev->first) {
        pc->utf8 = KZ_UTF8_ACCEPT;
        pc->check_utf8 = ev->opcode == KZ_OP_TEXT;
    }
    const uint8_t *out;
    size_t out_len;
    int rc = kz_inflate_piece(pc->rx, ev->data, ev->len, ev->fin, &out, &out_len);
    if (rc != KZ_OK)
        return rc;
    /* Checked as the inflated bytes come: invalid text fails on the frame that carries it. */
    if (pc->check_utf8 && kz_utf8_feed(&pc->utf8, out, out_len) != KZ_OK)
        return KZ_ERR_INVALID_UTF8;
    if (!ev->fin)
        return KZ_OK;
    if (pc->check_utf8 && kz_utf8_finish(pc->utf8) != KZ_OK)
        return KZ_ERR_INVALID_UTF8;
    const uint8_t *msg;
    size_t len;
    kz_inflater_message(pc->rx, &msg, &len);
    c->srv->cb.on_message(c, (enum kz_opcode)ev->opcode, msg, len);
    kz_inflater_trim(pc->rx); /* pc lives until the connection is freed, after this */
    return KZ_OK;
}

static struct kz_deflater *shared_deflater(struct kz_server *s)
{
    if (!s->shared_tx)
        s->shared_tx = new_deflater(s, s->cfg.deflate.server_max_window_bits, true);
    return s->shared_tx;
}

/*
 * A shared message compressed once, without context, by the server's
 * shared deflater: valid for every connection whose server side has no
 * context takeover and a window at least as large. Kept only if smaller.
 */
static void compress_once(struct kz_msg *m)
{
    struct kz_server *s = m->srv;
    m->z_done = true;
    struct kz_deflater *d = shared_deflater(s);
    const uint8_t *z;
    size_t zlen;
    size_t plen = m->len - m->hlen;
    if (!d || kz_deflate_message(d, m->data + m->hlen, plen, &z, &zlen) != KZ_OK || zlen >= plen)
        return;
    size_t hl = kz_frame_header_size(zlen, false);
    m->z = kz__alloc(s, hl + zlen);
    if (!m->z)
        return;
    kz_frame_write_header(m->z, m->op, true, KZ_RSV1, zlen, NULL);
    memcpy(m->z + hl, z, zlen);
    m->zlen = (uint32_t)(hl + zlen);
}

int kz__pmd_send_msg(struct kz_conn *c, struct kz_msg *m, const uint8_t **bytes, uint32_t *len)
{
    struct kz_server *s = c->srv;
    const struct kz_pmd_params *pp = &c->pmd->params;
    size_t plen = m->len - m->hlen;
    if (plen < s->cfg.deflate_min_size)
        return 0; /* plain, by reference */
    if (!pp->server_no_context_takeover ||
        pp->server_max_window_bits < s->cfg.deflate.server_max_window_bits)
        return kz__pmd_send(c, m->op, m->data + m->hlen, plen); /* this peer needs its own */
    if (!m->z_done)
        compress_once(m);
    if (m->z) {
        *bytes = m->z;
        *len = m->zlen;
    }
    return 0;
}

int kz__pmd_send(struct kz_conn *c, unsigned op, const uint8_t *data, size_t len)
{
    struct kz_server *s = c->srv;
    if (!c->pmd || len < s->cfg.deflate_min_size || c->pmd->plain_only)
        return 0;
    struct kz_deflater *d = c->pmd->tx;
    if (!d) {
        d = shared_deflater(s);
        if (!d)
            return KZ_ERR_NOMEM;
        /* A smaller window than the shared one's was negotiated: use one of its own. */
        if (c->pmd->params.server_max_window_bits < s->cfg.deflate.server_max_window_bits) {
            c->pmd->tx = new_deflater(s, c->pmd->params.server_max_window_bits, true);
            if (!c->pmd->tx)
                return KZ_ERR_NOMEM;
            d = c->pmd->tx;
        }
    }
    const uint8_t *z;
    size_t zlen;
    int rc = kz_deflate_message(d, data, len, &z, &zlen);
    if (rc != KZ_OK)
        return rc;
    rc = kz__conn_queue_frame_rsv(c, op, KZ_RSV1, z, zlen);
    /*
     * The shared compressor stays warm: it serves every connection. A
     * client's stays too: it has one connection, and setting zlib up again
     * for every message of a stream costs more than the memory it keeps.
     */
    if (d != s->shared_tx && !c->client)
        kz_deflater_trim(d);
    return rc == KZ_OK ? 1 : rc;
}
