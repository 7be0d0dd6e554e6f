/*
 * permessage-deflate payloads (RFC 7692 §7.2) over zlib's raw DEFLATE.
 *
 * Compression: a message is deflated with Z_SYNC_FLUSH, which ends it on
 * a byte boundary with an empty stored block; the block's last four bytes
 * (00 00 ff ff) are cut off (§7.2.1). Inflation puts them back after the
 * last piece, which also proves that the message ended on a block boundary
 * (a compliant sender always ends with a stored block's header; anything
 * else is KZ_ERR_INFLATE). A block with BFINAL ends zlib's stream, but not
 * the peer's data (§7.2.1 lets blocks follow it, §7.2.3.4): the next bytes
 * start a new stream that inherits the window. A message of no bytes at
 * all is taken as empty.
 *
 * Memory is what a compressed connection mostly owns, so every zlib
 * allocation goes through the user's allocator behind a small header that
 * records its size (kz_*_memory() count them), zlib's state is created
 * only when a message needs it and dropped by trim when there is no
 * context takeover, and output buffers start small and grow by doubling.
 *
 * The inflater never lets zlib write past `max_message`: its output space
 * is capped at what the bound still allows, and once the message is at the
 * bound zlib gets a one-byte probe outside the buffer; if it writes there,
 * the message is too big. A bomb thus costs the bound, not its payload.
 */
#define ZLIB_CONST
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kaze/deflate.h"

/* The first output buffer; it then doubles as needed. */
#define KZD_MIN_CAP 256u
/* The most handed to zlib's 32-bit avail_in/avail_out in one call. */
#define KZD_CHUNK ((size_t)1 << 30)

static const uint8_t sync_tail[4] = {0x00, 0x00, 0xff, 0xff};

static void *std_malloc(size_t size, void *ud)
{
    (void)ud;
    return malloc(size);
}

static void *std_realloc(void *ptr, size_t size, void *ud)
{
    (void)ud;
    return realloc(ptr, size);
}

static void std_free(void *ptr, void *ud)
{
    (void)ud;
    free(ptr);
}

static const struct kz_allocator std_alloc = {std_malloc, std_realloc, std_free, NULL};

/* ---- zlib's memory, through the user's allocator, counted ----------- */

/* The allocator, and the bytes zlib holds through it (headers included). */
struct zmem {
    struct kz_allocator a;
    size_t held;
};

/* Put before each zlib allocation: its size, so that zfree can count it. */
union zhdr {
    size_t size;
    max_align_t align;
};

static voidpf zmem_alloc(voidpf opaque, uInt items, uInt size)
{
    struct zmem *m = opaque;
    if (size && items > (SIZE_MAX - sizeof(union zhdr)) / size)
        return Z_NULL;
    size_t n = (size_t)items * size + sizeof(union zhdr);
    union zhdr *h = m->a.malloc(n, m->a.ud);
    if (!h)
        return Z_NULL;
    h->size = n;
    m->held += n;
    return h + 1;
}

static void zmem_free(voidpf opaque, voidpf p)
{
    struct zmem *m = opaque;
    if (!p)
        return;
    union zhdr *h = (union zhdr *)p - 1;
    m->held -= h->size;
    m->a.free(h, m->a.ud);
}

static void zmem_setup(struct zmem *m, z_stream *zs)
{
    memset(zs, 0, sizeof(*zs));
    zs->zalloc = zmem_alloc;
    zs->zfree = zmem_free;
    zs->opaque = m;
}

static bool zmem_init(struct zmem *m, const struct kz_allocator *alloc)
{
    const struct kz_allocator *a = alloc ? alloc : &std_alloc;
    if (!a->malloc || !a->free)
        return false;
    m->a = *a;
    m->held = 0;
    return true;
}

/* Resizes *buf, of which the first `used` bytes matter, to `cap` bytes. */
static int buf_resize(const struct kz_allocator *a, uint8_t **buf, size_t used, size_t cap)
{
    uint8_t *nb;
    if (*buf && a->realloc) {
        nb = a->realloc(*buf, cap, a->ud);
        if (!nb)
            return KZ_ERR_NOMEM;
    } else {
        nb = a->malloc(cap, a->ud);
        if (!nb)
            return KZ_ERR_NOMEM;
        if (*buf) {
            memcpy(nb, *buf, used);
            a->free(*buf, a->ud);
        }
    }
    *buf = nb;
    return KZ_OK;
}

/*
 * The next capacity of a buffer that is full at `cap`: `first` (at least
 * KZD_MIN_CAP) when there is none yet, else double, never above `limit`
 * (nonzero). Past half the limit it goes straight to the limit, so that
 * the last step is never a small one that copies nearly the whole buffer.
 * Returns 0 when the buffer cannot grow.
 */
static size_t next_cap(size_t cap, size_t first, size_t limit)
{
    size_t n;
    if (cap == 0)
        n = first > KZD_MIN_CAP ? first : KZD_MIN_CAP;
    else
        n = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    if (n > limit / 2)
        n = limit;
    return n > cap ? n : 0;
}

/* ---- compression ----------------------------------------------------- */

struct kz_deflater {
    struct zmem mem;
    z_stream zs;
    bool live;  /* zs holds an initialized stream */
    bool stale; /* its window must go before the next message */
    bool no_context_takeover;
    int window_bits, level, mem_level;
    uint8_t *buf; /* output, `cap` bytes */
    size_t cap;
};

struct kz_deflater *kz_deflater_new(const struct kz_deflate_config *cfg,
                                    const struct kz_allocator *alloc)
{
    if (!cfg || cfg->window_bits < 8 || cfg->window_bits > 15 || cfg->level > 9 ||
        cfg->mem_level < 1 || cfg->mem_level > 9)
        return NULL;
    struct zmem m;
    if (!zmem_init(&m, alloc))
        return NULL;
    struct kz_deflater *d = m.a.malloc(sizeof(*d), m.a.ud);
    if (!d)
        return NULL;
    memset(d, 0, sizeof(*d));
    d->mem = m;
    /* zlib's raw deflate refuses 8; a 9-bit window never reaches back 256 bytes anyway. */
    d->window_bits = cfg->window_bits < 9 ? 9 : cfg->window_bits;
    d->level = cfg->level;
    d->mem_level = cfg->mem_level;
    d->no_context_takeover = cfg->no_context_takeover;
    return d;
}

void kz_deflater_free(struct kz_deflater *d)
{
    if (!d)
        return;
    if (d->live)
        deflateEnd(&d->zs);
    struct kz_allocator a = d->mem.a;
    if (d->buf)
        a.free(d->buf, a.ud);
    a.free(d, a.ud);
}

static int deflater_start(struct kz_deflater *d)
{
    if (d->live) {
        /* Reset here rather than after the message: a trim may end the stream first. */
        if (d->stale)
            deflateReset(&d->zs);
        d->stale = false;
        return KZ_OK;
    }
    zmem_setup(&d->mem, &d->zs);
    int zr = deflateInit2(&d->zs, d->level, Z_DEFLATED, -d->window_bits, d->mem_level,
                          Z_DEFAULT_STRATEGY);
    if (zr != Z_OK)
        return zr == Z_MEM_ERROR ? KZ_ERR_NOMEM : KZ_ERR_INVALID_ARGUMENT;
    d->live = true;
    return KZ_OK;
}

/*
 * A message that failed halfway has fed the window bytes the peer will
 * never see: start afresh, which a peer reading on from its own window
 * accepts (a new block may simply not refer back).
 */
static int deflater_abandon(struct kz_deflater *d, int rc)
{
    d->stale = true;
    return rc;
}

int kz_deflate_message(struct kz_deflater *d, const uint8_t *in, size_t len, const uint8_t **out,
                       size_t *out_len)
{
    if (!d || !out || !out_len || (!in && len))
        return KZ_ERR_INVALID_ARGUMENT;
    if (len == 0) {
        /*
         * A sync flush of nothing is an empty stored block, 00 00 00 ff ff,
         * and leaves the window as it was: made here, because zlib refuses
         * to flush twice in a row with no input in between.
         */
        static const uint8_t empty_block = 0x00;
        *out = &empty_block;
        *out_len = 1;
        return KZ_OK;
    }
    int rc = deflater_start(d);
    if (rc != KZ_OK)
        return rc;

    size_t n = 0, left = len;
    const uint8_t *next = in;
    d->zs.avail_in = 0;
    for (;;) {
        if (d->zs.avail_in == 0 && left) {
            size_t c = left < KZD_CHUNK ? left : KZD_CHUNK;
            d->zs.next_in = next;
            d->zs.avail_in = (uInt)c;
            next += c;
            left -= c;
        }
        int flush = left ? Z_NO_FLUSH : Z_SYNC_FLUSH;
        if (n == d->cap) {
            /* Text shrinks well; a quarter of the input is a fair first guess. */
            size_t cap = next_cap(d->cap, len / 4 + 64, SIZE_MAX);
            if (cap == 0 || buf_resize(&d->mem.a, &d->buf, n, cap) != KZ_OK)
                return deflater_abandon(d, KZ_ERR_NOMEM);
            d->cap = cap;
        }
        size_t room = d->cap - n < KZD_CHUNK ? d->cap - n : KZD_CHUNK;
        d->zs.next_out = d->buf + n;
        d->zs.avail_out = (uInt)room;
        int zr = deflate(&d->zs, flush);
        n += room - d->zs.avail_out;
        if (zr == Z_STREAM_ERROR)
            return deflater_abandon(d, KZ_ERR_INVALID_ARGUMENT);
        /* Space left after a sync flush: the flush is complete. */
        if (flush == Z_SYNC_FLUSH && d->zs.avail_out != 0)
            break;
    }
    if (n >= 4 && memcmp(d->buf + n - 4, sync_tail, 4) == 0)
        n -= 4;
    d->stale = d->no_context_takeover;
    *out = d->buf;
    *out_len = n;
    return KZ_OK;
}

void kz_deflater_trim(struct kz_deflater *d)
{
    if (!d)
        return;
    if (d->buf) {
        d->mem.a.free(d->buf, d->mem.a.ud);
        d->buf = NULL;
        d->cap = 0;
    }
    if (d->no_context_takeover && d->live) {
        deflateEnd(&d->zs);
        d->live = false;
        d->stale = false;
    }
}

size_t kz_deflater_memory(const struct kz_deflater *d)
{
    return d ? sizeof(*d) + d->mem.held + d->cap : 0;
}

/* ---- inflation ------------------------------------------------------- */

struct kz_inflater {
    struct zmem mem;
    z_stream zs;
    bool live;   /* zs holds an initialized stream */
    bool ended;  /* the peer's DEFLATE stream ended (a block with BFINAL) */
    bool in_msg; /* a message is open: pieces came, its `fin` did not */
    bool done;   /* the last call ended a message: the next one starts anew */
    bool fed;    /* the open message has had compressed bytes */
    int err;     /* nonzero: dead, and this is returned until a reset */
    bool no_context_takeover;
    int window_bits;
    uint64_t max; /* 0: no bound */
    uint8_t *buf; /* the message: `len` bytes of `cap` */
    size_t cap, len;
};

struct kz_inflater *kz_inflater_new(const struct kz_inflate_config *cfg,
                                    const struct kz_allocator *alloc)
{
    if (!cfg || cfg->window_bits < 8 || cfg->window_bits > 15)
        return NULL;
    struct zmem m;
    if (!zmem_init(&m, alloc))
        return NULL;
    struct kz_inflater *i = m.a.malloc(sizeof(*i), m.a.ud);
    if (!i)
        return NULL;
    memset(i, 0, sizeof(*i));
    i->mem = m;
    /* A 9-bit window reaches back far enough for a stream made with 8. */
    i->window_bits = cfg->window_bits < 9 ? 9 : cfg->window_bits;
    i->no_context_takeover = cfg->no_context_takeover;
    i->max = cfg->max_message;
    return i;
}

void kz_inflater_free(struct kz_inflater *i)
{
    if (!i)
        return;
    if (i->live)
        inflateEnd(&i->zs);
    struct kz_allocator a = i->mem.a;
    if (i->buf)
        a.free(i->buf, a.ud);
    a.free(i, a.ud);
}

/*
 * Starts a new DEFLATE stream after one ended with a BFINAL block. The
 * message's next block may follow in the same payload (§7.2.1), and with
 * context takeover the next message may too; either may refer back to what
 * the ended stream inflated, so its window is carried over.
 */
static int inflater_restart(struct kz_inflater *i)
{
    size_t wsize = (size_t)1 << i->window_bits;
    uint8_t *w = i->mem.a.malloc(wsize, i->mem.a.ud);
    if (!w)
        return KZ_ERR_NOMEM;
    uInt have = 0;
    inflateGetDictionary(&i->zs, w, &have);
    inflateReset(&i->zs);
    /* The window's memory survives the reset, so this allocates nothing. */
    int zr = have ? inflateSetDictionary(&i->zs, w, have) : Z_OK;
    i->mem.a.free(w, i->mem.a.ud);
    if (zr != Z_OK)
        return zr == Z_MEM_ERROR ? KZ_ERR_NOMEM : KZ_ERR_INFLATE;
    i->ended = false;
    return KZ_OK;
}

/* Readies the stream for a new message. */
static int inflater_begin(struct kz_inflater *i)
{
    if (!i->live) {
        zmem_setup(&i->mem, &i->zs);
        int zr = inflateInit2(&i->zs, -i->window_bits);
        if (zr != Z_OK)
            return zr == Z_MEM_ERROR ? KZ_ERR_NOMEM : KZ_ERR_INVALID_ARGUMENT;
        i->live = true;
        i->ended = false;
        return KZ_OK;
    }
    return i->ended ? inflater_restart(i) : KZ_OK;
}

/* Inflates in[0..n) onto the message, within the bound. */
static int inflater_feed(struct kz_inflater *i, const uint8_t *in, size_t n)
{
    size_t left = n;
    const uint8_t *next = in;
    uint8_t probe;
    size_t limit = i->max && i->max < SIZE_MAX ? (size_t)i->max : SIZE_MAX;
    i->zs.avail_in = 0;
    for (;;) {
        if (i->zs.avail_in == 0 && left) {
            size_t c = left < KZD_CHUNK ? left : KZD_CHUNK;
            i->zs.next_in = next;
            i->zs.avail_in = (uInt)c;
            next += c;
            left -= c;
        }
        if (i->ended) {
            if (i->zs.avail_in == 0)
                return KZ_OK;
            int rc = inflater_restart(i);
            if (rc != KZ_OK)
                return rc;
        }
        bool probing = false;
        size_t room;
        if (i->len == limit) {
            /* At the bound: one more byte, anywhere, and the message is too big. */
            probing = true;
            i->zs.next_out = &probe;
            room = 1;
        } else {
            if (i->len == i->cap) {
                size_t cap = next_cap(i->cap, n > SIZE_MAX / 2 ? SIZE_MAX : 2 * n, limit);
                if (cap == 0 || buf_resize(&i->mem.a, &i->buf, i->len, cap) != KZ_OK)
                    return KZ_ERR_NOMEM;
                i->cap = cap;
            }
            room = i->cap - i->len < KZD_CHUNK ? i->cap - i->len : KZD_CHUNK;
            i->zs.next_out = i->buf + i->len;
        }
        i->zs.avail_out = (uInt)room;
        uInt in_before = i->zs.avail_in;
        int zr = inflate(&i->zs, Z_SYNC_FLUSH);
        size_t got = room - i->zs.avail_out;
        if (probing && got)
            return KZ_ERR_MESSAGE_TOO_BIG;
        if (!probing)
            i->len += got;
        switch (zr) {
        case Z_OK:
            break;
        case Z_BUF_ERROR:
            /* No progress with input and space both there would loop forever. */
            if (got == 0 && i->zs.avail_in && i->zs.avail_in == in_before)
                return KZ_ERR_INFLATE;
            break;
        case Z_STREAM_END:
            i->ended = true;
            continue;
        case Z_MEM_ERROR:
            return KZ_ERR_NOMEM;
        default: /* Z_DATA_ERROR, or Z_NEED_DICT, which a raw stream cannot ask */
            return KZ_ERR_INFLATE;
        }
        /* Space left over: zlib took all it could and gave all it had. */
        if (i->zs.avail_out != 0 && i->zs.avail_in == 0 && left == 0)
            return KZ_OK;
    }
}

static int inflater_fail(struct kz_inflater *i, int rc)
{
    i->err = rc;
    return rc;
}

int kz_inflate_piece(struct kz_inflater *i, const uint8_t *in, size_t len, bool fin,
                     const uint8_t **out, size_t *out_len)
{
    if (!i || !out || !out_len || (!in && len))
        return KZ_ERR_INVALID_ARGUMENT;
    if (i->err)
        return i->err;
    if (i->done) {
        i->len = 0;
        i->done = false;
    }
    if (!i->in_msg) {
        int rc = inflater_begin(i);
        if (rc != KZ_OK)
            return inflater_fail(i, rc);
        i->in_msg = true;
        i->fed = false;
    }
    size_t start = i->len;
    int rc = inflater_feed(i, in, len);
    i->fed |= len != 0;
    /*
     * A message with no compressed bytes at all is taken as empty, as
     * zlib-based peers do, though its tail alone is no complete block.
     */
    if (rc == KZ_OK && fin && !i->ended && i->fed) {
        rc = inflater_feed(i, sync_tail, sizeof(sync_tail));
        /* The tail must close an empty stored block: the message ended on a block boundary. */
        if (rc == KZ_OK && !i->ended && !(i->zs.data_type & 128))
            rc = KZ_ERR_INFLATE;
    }
    if (rc != KZ_OK)
        return inflater_fail(i, rc);
    *out = i->buf ? i->buf + start : NULL;
    *out_len = i->len - start;
    if (fin) {
        i->in_msg = false;
        i->done = true;
        if (i->no_context_takeover) {
            inflateReset(&i->zs);
            i->ended = false;
        }
    }
    return KZ_OK;
}

void kz_inflater_message(const struct kz_inflater *i, const uint8_t **data, size_t *len)
{
    *data = i->buf;
    *len = i->len;
}

void kz_inflater_trim(struct kz_inflater *i)
{
    /* An open message keeps what it has. */
    if (!i || i->in_msg)
        return;
    if (i->buf) {
        i->mem.a.free(i->buf, i->mem.a.ud);
        i->buf = NULL;
        i->cap = 0;
        i->len = 0;
    }
    if (i->no_context_takeover && i->live) {
        inflateEnd(&i->zs);
        i->live = false;
    }
}

void kz_inflater_reset(struct kz_inflater *i)
{
    if (!i)
        return;
    if (i->live)
        inflateReset(&i->zs);
    i->ended = false;
    i->in_msg = false;
    i->done = false;
    i->err = 0;
    i->len = 0;
}

size_t kz_inflater_memory(const struct kz_inflater *i)
{
    return i ? sizeof(*i) + i->mem.held + i->cap : 0;
}
