/*
 * permessage-deflate payloads: the RFC 7692 §7.2.3 examples byte for byte,
 * round trips of text and random payloads of many sizes in both modes,
 * inflation in pieces of every size (each piece ending at a guard page),
 * context takeover kept and reset, every window size on both sides,
 * streams made by zlib directly, the decompression-bomb bound, corrupt
 * streams, trim and the memory it gives back, and a failure at every
 * allocation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#define ZLIB_CONST
#include <zlib.h>

#include "kaze/deflate.h"
#include "helpers.h"

/* ------------------------------------------------------------------------
 * Payloads and references
 */

static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static uint8_t *random_bytes(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    uint32_t s = seed | 1;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rng_next(&s) >> 24);
    return p;
}

/* JSON-like text: records with repeated keys and varying values. */
static uint8_t *json_text(size_t n, uint32_t seed)
{
    static const char *const words[] = {"alpha",   "bravo", "charlie", "delta", "echo",
                                        "foxtrot", "golf",  "hotel",   "india", "juliet"};
    uint8_t *p = malloc(n + 1);
    assert_non_null(p);
    uint32_t s = seed | 1;
    size_t len = 0;
    char rec[256];
    while (len < n) {
        int k = snprintf(rec, sizeof(rec),
                         "{\"id\":%u,\"user\":\"%s%u\",\"text\":\"%s %s %s\",\"score\":%u.%02u},",
                         rng_next(&s) % 100000, words[rng_next(&s) % 10], rng_next(&s) % 100,
                         words[rng_next(&s) % 10], words[rng_next(&s) % 10],
                         words[rng_next(&s) % 10], rng_next(&s) % 1000, rng_next(&s) % 100);
        size_t c = (size_t)k < n - len ? (size_t)k : n - len;
        memcpy(p + len, rec, c);
        len += c;
    }
    return p;
}

/* zlib's own raw deflate: a sync flush after each of `pieces` parts, tail removed. */
static uint8_t *zlib_deflate(const uint8_t *in, size_t len, int wbits, int level, int strategy,
                             size_t pieces, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, level, Z_DEFLATED, -wbits, 8, strategy), Z_OK);
    size_t cap = len + len / 8 + 64 + 6 * pieces;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    size_t off = 0;
    for (size_t k = 0; k < pieces; k++) {
        size_t end = k + 1 == pieces ? len : len / pieces * (k + 1);
        zs.next_in = in + off;
        zs.avail_in = (uInt)(end - off);
        assert_int_equal(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
        assert_int_equal(zs.avail_in, 0);
        assert_true(zs.avail_out > 0);
        off = end;
    }
    size_t n = cap - zs.avail_out;
    deflateEnd(&zs);
    assert_true(n >= 4);
    assert_memory_equal(out + n - 4, "\x00\x00\xff\xff", 4);
    *out_len = n - 4;
    return out;
}

/* zlib's own raw inflate of a payload with the tail put back; NULL if zlib refuses it. */
static uint8_t *zlib_inflate(const uint8_t *in, size_t len, int wbits, size_t max_out,
                             size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(inflateInit2(&zs, -wbits), Z_OK);
    uint8_t *buf = malloc(len + 4);
    uint8_t *out = malloc(max_out + 1);
    assert_non_null(buf);
    assert_non_null(out);
    if (len)
        memcpy(buf, in, len);
    memcpy(buf + len, "\x00\x00\xff\xff", 4);
    zs.next_in = buf;
    zs.avail_in = (uInt)(len + 4);
    zs.next_out = out;
    zs.avail_out = (uInt)(max_out + 1);
    int zr = inflate(&zs, Z_SYNC_FLUSH);
    *out_len = max_out + 1 - zs.avail_out;
    inflateEnd(&zs);
    free(buf);
    if (zr != Z_OK || zs.avail_in != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------------------
 * Driving the deflater and the inflater
 */

static struct kz_deflater *new_deflater(int wbits, int level, int mem_level, bool nct,
                                        const struct kz_allocator *a)
{
    struct kz_deflate_config cfg = {(uint8_t)wbits, (uint8_t)level, (uint8_t)mem_level, nct};
    return kz_deflater_new(&cfg, a);
}

static struct kz_inflater *new_inflater(int wbits, bool nct, uint64_t max,
                                        const struct kz_allocator *a)
{
    struct kz_inflate_config cfg = {(uint8_t)wbits, nct, max};
    return kz_inflater_new(&cfg, a);
}

/* Compresses into a malloc'd copy. */
static uint8_t *deflate_copy(struct kz_deflater *d, const uint8_t *in, size_t len, size_t *n)
{
    const uint8_t *out;
    assert_int_equal(kz_deflate_message(d, in, len, &out, n), KZ_OK);
    uint8_t *c = malloc(*n ? *n : 1);
    assert_non_null(c);
    memcpy(c, out, *n);
    return c;
}

/*
 * Inflates one message fed in pieces of `piece` bytes (0: whole), each
 * piece ending at a guard page. Checks that the new bytes of the calls
 * add up to kz_inflater_message(). Returns the first error, or KZ_OK with
 * the message in *msg (malloc'd) and *msg_len.
 */
static int inflate_pieces(struct kz_inflater *inf, const uint8_t *in, size_t len, size_t piece,
                          uint8_t **msg, size_t *msg_len)
{
    uint8_t *g = kzt_guard_copy(in, len);
    size_t cap = 1024, got = 0;
    uint8_t *acc = malloc(cap);
    assert_non_null(acc);
    size_t off = 0;
    int rc = KZ_OK;
    if (piece == 0)
        piece = len ? len : 1;
    do {
        size_t c = len - off < piece ? len - off : piece;
        bool fin = off + c == len;
        /* Copy the piece to end at the guard page too. */
        uint8_t *pg = kzt_guard_copy(g + off, c);
        const uint8_t *out = NULL;
        size_t out_len = 0;
        rc = kz_inflate_piece(inf, pg, c, fin, &out, &out_len);
        kzt_guard_free(pg, c);
        if (rc != KZ_OK)
            break;
        if (got + out_len > cap) {
            while (got + out_len > cap)
                cap *= 2;
            acc = realloc(acc, cap);
            assert_non_null(acc);
        }
        if (out_len)
            memcpy(acc + got, out, out_len);
        got += out_len;
        const uint8_t *whole;
        size_t whole_len;
        kz_inflater_message(inf, &whole, &whole_len);
        assert_int_equal(whole_len, got);
        if (got)
            assert_memory_equal(whole, acc, got);
        off += c;
    } while (off < len);
    kzt_guard_free(g, len);
    if (rc != KZ_OK) {
        free(acc);
        return rc;
    }
    *msg = acc;
    *msg_len = got;
    return KZ_OK;
}

/* Inflates and expects exactly `want`. */
static void expect_inflate(struct kz_inflater *inf, const uint8_t *in, size_t len, size_t piece,
                           const void *want, size_t want_len)
{
    uint8_t *msg;
    size_t n;
    assert_int_equal(inflate_pieces(inf, in, len, piece, &msg, &n), KZ_OK);
    assert_int_equal(n, want_len);
    if (n)
        assert_memory_equal(msg, want, n);
    free(msg);
}

static void expect_inflate_hex(struct kz_inflater *inf, const char *hex, const char *want)
{
    uint8_t in[256];
    size_t n = kzt_hex(hex, in, sizeof(in));
    expect_inflate(inf, in, n, 0, want, strlen(want));
}

/* Feeds the hex pieces of one message, the last with fin; returns the first error. */
static int feed_hex(struct kz_inflater *inf, const char *const *pieces, size_t npieces)
{
    for (size_t k = 0; k < npieces; k++) {
        uint8_t in[256];
        size_t n = kzt_hex(pieces[k], in, sizeof(in));
        const uint8_t *out;
        size_t out_len;
        int rc = kz_inflate_piece(inf, in, n, k + 1 == npieces, &out, &out_len);
        if (rc != KZ_OK)
            return rc;
    }
    return KZ_OK;
}

static void expect_message(struct kz_inflater *inf, const char *want)
{
    const uint8_t *m;
    size_t n;
    kz_inflater_message(inf, &m, &n);
    assert_int_equal(n, strlen(want));
    if (n)
        assert_memory_equal(m, want, n);
}

static void expect_deflate_hex(struct kz_deflater *d, const char *in, const char *hex)
{
    uint8_t want[64];
    size_t wn = kzt_hex(hex, want, sizeof(want));
    const uint8_t *out;
    size_t n;
    assert_int_equal(kz_deflate_message(d, (const uint8_t *)in, strlen(in), &out, &n), KZ_OK);
    assert_int_equal(n, wn);
    assert_memory_equal(out, want, n);
}

/* ------------------------------------------------------------------------
 * A counting allocator: live bytes and their peak
 */

struct counter {
    struct kz_allocator alloc;
    size_t live, peak;
    long blocks;
};

union chdr {
    size_t size;
    max_align_t align;
};

static void *c_malloc(size_t n, void *ud)
{
    struct counter *c = ud;
    union chdr *h = malloc(sizeof(*h) + n);
    if (!h)
        return NULL;
    h->size = n;
    c->live += n;
    c->blocks++;
    if (c->live > c->peak)
        c->peak = c->live;
    return h + 1;
}

static void c_free(void *p, void *ud)
{
    struct counter *c = ud;
    if (!p)
        return;
    union chdr *h = (union chdr *)p - 1;
    c->live -= h->size;
    c->blocks--;
    free(h);
}

static void *c_realloc(void *p, size_t n, void *ud)
{
    struct counter *c = ud;
    if (!p)
        return c_malloc(n, ud);
    union chdr *h = (union chdr *)p - 1;
    size_t old = h->size;
    union chdr *nh = realloc(h, sizeof(*nh) + n);
    if (!nh)
        return NULL;
    nh->size = n;
    c->live = c->live - old + n;
    if (c->live > c->peak)
        c->peak = c->live;
    return nh + 1;
}

static void counter_init(struct counter *c, bool with_realloc)
{
    memset(c, 0, sizeof(*c));
    c->alloc.malloc = c_malloc;
    c->alloc.realloc = with_realloc ? c_realloc : NULL;
    c->alloc.free = c_free;
    c->alloc.ud = c;
}

/* ------------------------------------------------------------------------
 * RFC 7692 §7.2.3
 */

#define HELLO_HEX "f2 48 cd c9 c9 07 00"

static void rfc_hello_compressed(void **state)
{
    (void)state;
    /* §7.2.3.1: the same bytes with any window and with either mode. */
    for (int w = 8; w <= 15; w++) {
        for (int nct = 0; nct <= 1; nct++) {
            struct kz_deflater *d = new_deflater(w, 6, 8, nct, NULL);
            assert_non_null(d);
            expect_deflate_hex(d, "Hello", HELLO_HEX);
            kz_deflater_free(d);
        }
    }
}

static void rfc_hello_twice(void **state)
{
    (void)state;
    /* §7.2.3.2: with context takeover the second "Hello" points back into the first. */
    for (int level = 1; level <= 9; level++) {
        struct kz_deflater *d = new_deflater(15, level, 8, false, NULL);
        assert_non_null(d);
        expect_deflate_hex(d, "Hello", HELLO_HEX);
        expect_deflate_hex(d, "Hello", "f2 00 11 00 00");
        /* zlib's choice for the third: a match of 10 at distance 5 */
        expect_deflate_hex(d, "Hello", "02 13 00 00");
        kz_deflater_free(d);

        d = new_deflater(15, level, 8, true, NULL);
        assert_non_null(d);
        expect_deflate_hex(d, "Hello", HELLO_HEX);
        expect_deflate_hex(d, "Hello", HELLO_HEX);
        kz_deflater_trim(d);
        expect_deflate_hex(d, "Hello", HELLO_HEX);
        kz_deflater_free(d);
    }
}

static void rfc_empty_message(void **state)
{
    (void)state;
    /* §7.2.3.6: an empty payload is the single byte 00, in any state. */
    for (int nct = 0; nct <= 1; nct++) {
        struct kz_deflater *d = new_deflater(15, 1, 8, nct, NULL);
        assert_non_null(d);
        expect_deflate_hex(d, "", "00");
        expect_deflate_hex(d, "", "00");
        expect_deflate_hex(d, "Hello", HELLO_HEX);
        expect_deflate_hex(d, "", "00");
        expect_deflate_hex(d, "Hello", nct ? HELLO_HEX : "f2 00 11 00 00");
        const uint8_t *out;
        size_t n;
        assert_int_equal(kz_deflate_message(d, NULL, 0, &out, &n), KZ_OK);
        assert_int_equal(n, 1);
        assert_int_equal(out[0], 0);
        kz_deflater_free(d);
    }
}

static void rfc_inflate_examples(void **state)
{
    (void)state;
    for (int nct = 0; nct <= 1; nct++) {
        struct kz_inflater *inf = new_inflater(15, nct, 0, NULL);
        assert_non_null(inf);
        /* §7.2.3.1, one frame and two fragments */
        expect_inflate_hex(inf, HELLO_HEX, "Hello");
        const char *const frags[] = {"f2 48 cd", "c9 c9 07 00"};
        assert_int_equal(feed_hex(inf, frags, 2), KZ_OK);
        expect_message(inf, "Hello");
        /* §7.2.3.3, a stored block */
        expect_inflate_hex(inf, "00 05 00 fa ff 48 65 6c 6c 6f 00", "Hello");
        /* §7.2.3.4, BFINAL set: a new stream starts after it */
        expect_inflate_hex(inf, "f3 48 cd c9 c9 07 00 00", "Hello");
        expect_inflate_hex(inf, HELLO_HEX, "Hello");
        /* §7.2.3.5, two blocks */
        expect_inflate_hex(inf, "f2 48 05 00 00 00 ff ff ca c9 c9 07 00", "Hello");
        /* §7.2.3.6, an empty last fragment after a flushed one */
        const char *const empty_last[] = {"f2 48 cd c9 c9 07 00 00 00 ff ff", "00"};
        assert_int_equal(feed_hex(inf, empty_last, 2), KZ_OK);
        expect_message(inf, "Hello");
        expect_inflate_hex(inf, "00", "");
        kz_inflater_free(inf);
    }
    /* §7.2.3.2, the second message refers to the first one's window */
    struct kz_inflater *inf = new_inflater(15, false, 0, NULL);
    assert_non_null(inf);
    expect_inflate_hex(inf, HELLO_HEX, "Hello");
    expect_inflate_hex(inf, "f2 00 11 00 00", "Hello");
    expect_inflate_hex(inf, "02 13 00 00", "Hello");
    kz_inflater_free(inf);
    /* ... which a reset window cannot inflate */
    inf = new_inflater(15, true, 0, NULL);
    assert_non_null(inf);
    expect_inflate_hex(inf, HELLO_HEX, "Hello");
    const char *const second[] = {"f2 00 11 00 00"};
    assert_int_equal(feed_hex(inf, second, 1), KZ_ERR_INFLATE);
    kz_inflater_free(inf);
}

static void bfinal_window_carried(void **state)
{
    (void)state;
    /*
     * A peer that ends each message with BFINAL starts a new stream for the
     * next; with context takeover it may still refer to the old window.
     */
    uint8_t text[2000];
    uint8_t *t = json_text(sizeof(text), 7);
    memcpy(text, t, sizeof(text));
    free(t);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uint8_t m1[4096], m2[4096];
    zs.next_in = text;
    zs.avail_in = sizeof(text);
    zs.next_out = m1;
    zs.avail_out = sizeof(m1);
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t n1 = sizeof(m1) - zs.avail_out;
    m1[n1++] = 0x00; /* §7.2.1: an empty stored block follows, minus its tail */
    /* The second message: the same text, a new stream with the first as its dictionary. */
    assert_int_equal(deflateReset(&zs), Z_OK);
    assert_int_equal(deflateSetDictionary(&zs, text, sizeof(text)), Z_OK);
    zs.next_in = text;
    zs.avail_in = sizeof(text);
    zs.next_out = m2;
    zs.avail_out = sizeof(m2);
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t n2 = sizeof(m2) - zs.avail_out;
    deflateEnd(&zs);
    assert_true(n2 < 100); /* it does refer back */

    for (size_t piece = 0; piece <= 7; piece += 7) {
        struct kz_inflater *inf = new_inflater(15, false, 0, NULL);
        assert_non_null(inf);
        expect_inflate(inf, m1, n1, piece, text, sizeof(text));
        /* m2 ends with BFINAL and no stored block after it: the tail is not needed. */
        expect_inflate(inf, m2, n2, piece, text, sizeof(text));
        expect_inflate_hex(inf, HELLO_HEX, "Hello");
        kz_inflater_free(inf);
    }
    /* In one message: the second stream follows the first and refers to it. */
    uint8_t both[8192];
    memcpy(both, m1, n1 - 1);
    memcpy(both + n1 - 1, m2, n2);
    uint8_t twice[4000];
    memcpy(twice, text, 2000);
    memcpy(twice + 2000, text, 2000);
    for (size_t piece = 0; piece <= 5; piece += 5) {
        struct kz_inflater *inf = new_inflater(15, true, 0, NULL);
        assert_non_null(inf);
        expect_inflate(inf, both, n1 - 1 + n2, piece, twice, sizeof(twice));
        kz_inflater_free(inf);
    }
}

/* ------------------------------------------------------------------------
 * Round trips
 */

static const size_t sizes[] = {0, 1, 125, 126, 1000, 65535, 65536, 1u << 20};

static void round_trip_sizes(void **state)
{
    (void)state;
    for (int nct = 0; nct <= 1; nct++) {
        for (int kind = 0; kind < 2; kind++) {
            struct kz_deflater *d = new_deflater(15, 1, 8, nct, NULL);
            struct kz_inflater *inf = new_inflater(15, nct, 0, NULL);
            assert_non_null(d);
            assert_non_null(inf);
            for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
                size_t n = sizes[k];
                uint8_t *msg = kind ? random_bytes(n, (uint32_t)k + 1) : json_text(n, (uint32_t)k);
                size_t clen;
                uint8_t *c = deflate_copy(d, msg, n, &clen);
                if (kind == 0 && n >= 1000)
                    assert_true(clen < n / 2);
                if (kind == 1 && n)
                    assert_true(clen <= n + n / 1000 + 16);
                if (nct) {
                    /* Each message stands alone: plain zlib inflates it too. */
                    size_t zn;
                    uint8_t *z = zlib_inflate(c, clen, 15, n, &zn);
                    assert_non_null(z);
                    assert_int_equal(zn, n);
                    if (n)
                        assert_memory_equal(z, msg, n);
                    free(z);
                }
                expect_inflate(inf, c, clen, 0, msg, n);
                free(c);
                free(msg);
            }
            kz_deflater_free(d);
            kz_inflater_free(inf);
        }
    }
}

static void round_trip_levels_and_windows(void **state)
{
    (void)state;
    /* Text with repeats at long distances, so that large windows matter. */
    size_t n = 100000;
    uint8_t *msg = json_text(n, 99);
    uint8_t *blk = random_bytes(3000, 5);
    for (size_t off = 0; off + 3000 <= n; off += 20000)
        memcpy(msg + off, blk, 3000);
    free(blk);
    for (int w = 8; w <= 15; w++) {
        for (int level = 0; level <= 9; level += 3) {
            for (int mem = 1; mem <= 9; mem += 4) {
                struct kz_deflater *d = new_deflater(w, level, mem, false, NULL);
                assert_non_null(d);
                /* Every window at least the deflater's inflates it; 8 and 9 alike. */
                for (int iw = w < 9 ? 8 : w; iw <= 15; iw += 3) {
                    struct kz_inflater *inf = new_inflater(iw, false, 0, NULL);
                    assert_non_null(inf);
                    for (int rep = 0; rep < 2; rep++) {
                        size_t clen;
                        uint8_t *c = deflate_copy(d, msg, n, &clen);
                        expect_inflate(inf, c, clen, 0, msg, n);
                        free(c);
                    }
                    kz_inflater_free(inf);
                    kz_deflater_free(d);
                    d = new_deflater(w, level, mem, false, NULL);
                    assert_non_null(d);
                }
                kz_deflater_free(d);
            }
        }
    }
    free(msg);
}

static void window_eight_for_real(void **state)
{
    (void)state;
    /*
     * 8 is compressed with zlib's 9-bit window, whose matches never reach
     * back more than 250 bytes: an inflater with a real 256-byte window
     * (zlib accepts -8 for inflation) takes the stream.
     */
    size_t n = 50000;
    uint8_t *msg = json_text(n, 3);
    struct kz_deflater *d = new_deflater(8, 9, 9, false, NULL);
    assert_non_null(d);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(inflateInit2(&zs, -8), Z_OK);
    uint8_t *out = malloc(n);
    assert_non_null(out);
    for (int rep = 0; rep < 3; rep++) {
        size_t clen;
        uint8_t *c = deflate_copy(d, msg, n, &clen);
        assert_true(clen < n / 2);
        uint8_t *buf = malloc(clen + 4);
        assert_non_null(buf);
        memcpy(buf, c, clen);
        memcpy(buf + clen, "\x00\x00\xff\xff", 4);
        zs.next_in = buf;
        zs.avail_in = (uInt)(clen + 4);
        zs.next_out = out;
        zs.avail_out = (uInt)n;
        assert_int_equal(inflate(&zs, Z_SYNC_FLUSH), Z_OK);
        assert_int_equal(zs.avail_in, 0);
        assert_int_equal(zs.avail_out, 0);
        assert_memory_equal(out, msg, n);
        free(buf);
        free(c);
    }
    inflateEnd(&zs);
    free(out);
    kz_deflater_free(d);
    free(msg);
}

static void window_too_small_refused(void **state)
{
    (void)state;
    /*
     * A 4 KiB repeat 20 KiB back: a 15-bit stream that smaller windows
     * refuse. (Fed in small pieces: within one call zlib also resolves
     * distances from the output it has just written, window or not.)
     */
    size_t n = 30000;
    uint8_t *msg = random_bytes(n, 11);
    memcpy(msg + 24000, msg + 4000, 4096);
    size_t clen;
    uint8_t *c = zlib_deflate(msg, n, 15, 9, Z_DEFAULT_STRATEGY, 1, &clen);
    assert_true(clen < n - 3000);
    for (int w = 8; w <= 14; w++) {
        struct kz_inflater *inf = new_inflater(w, false, 0, NULL);
        assert_non_null(inf);
        uint8_t *m;
        size_t mn;
        assert_int_equal(inflate_pieces(inf, c, clen, 64, &m, &mn), KZ_ERR_INFLATE);
        kz_inflater_free(inf);
    }
    struct kz_inflater *inf = new_inflater(15, false, 0, NULL);
    assert_non_null(inf);
    expect_inflate(inf, c, clen, 64, msg, n);
    kz_inflater_free(inf);
    free(c);
    free(msg);
}

/* ------------------------------------------------------------------------
 * Pieces
 */

static void inflate_every_piece_size(void **state)
{
    (void)state;
    /* Text, then random bytes (stored blocks), in one message of either mode. */
    size_t n = 6000;
    uint8_t *msg = json_text(n, 21);
    uint8_t *rnd = random_bytes(1500, 4);
    memcpy(msg + 4000, rnd, 1500);
    free(rnd);
    for (int nct = 0; nct <= 1; nct++) {
        struct kz_deflater *d = new_deflater(15, 1, 8, nct, NULL);
        assert_non_null(d);
        size_t c1len, c2len;
        uint8_t *c1 = deflate_copy(d, msg, n, &c1len);
        uint8_t *c2 = deflate_copy(d, msg, n, &c2len);
        kz_deflater_free(d);
        if (!nct)
            assert_true(c2len < c1len / 4);
        for (size_t piece = 1; piece <= c1len; piece++) {
            struct kz_inflater *inf = new_inflater(15, nct, 0, NULL);
            assert_non_null(inf);
            expect_inflate(inf, c1, c1len, piece, msg, n);
            expect_inflate(inf, c2, c2len, piece, msg, n);
            kz_inflater_free(inf);
        }
        free(c1);
        free(c2);
    }
    free(msg);
}

static void inflate_empty_pieces(void **state)
{
    (void)state;
    /* Empty pieces anywhere, and a final piece that is empty. */
    uint8_t hello[16];
    size_t hn = kzt_hex(HELLO_HEX, hello, sizeof(hello));
    struct kz_inflater *inf = new_inflater(15, false, 0, NULL);
    assert_non_null(inf);
    for (int rep = 0; rep < 3; rep++) {
        const uint8_t *out;
        size_t out_len = 99;
        assert_int_equal(kz_inflate_piece(inf, NULL, 0, false, &out, &out_len), KZ_OK);
        assert_int_equal(out_len, 0);
        assert_int_equal(kz_inflate_piece(inf, hello, 3, false, &out, &out_len), KZ_OK);
        assert_int_equal(kz_inflate_piece(inf, hello + 3, 0, false, &out, &out_len), KZ_OK);
        assert_int_equal(kz_inflate_piece(inf, hello + 3, hn - 3, false, &out, &out_len), KZ_OK);
        assert_int_equal(kz_inflate_piece(inf, NULL, 0, true, &out, &out_len), KZ_OK);
        expect_message(inf, "Hello");
    }
    /* A message with no bytes at all is empty; the window is untouched. */
    const uint8_t *out;
    size_t out_len = 99;
    assert_int_equal(kz_inflate_piece(inf, NULL, 0, true, &out, &out_len), KZ_OK);
    assert_int_equal(out_len, 0);
    expect_message(inf, "");
    expect_inflate_hex(inf, "f2 00 11 00 00", "Hello");
    kz_inflater_free(inf);
}

static void out_is_new_bytes(void **state)
{
    (void)state;
    size_t n = 20000;
    uint8_t *msg = json_text(n, 8);
    struct kz_deflater *d = new_deflater(15, 1, 8, false, NULL);
    assert_non_null(d);
    size_t clen;
    uint8_t *c = deflate_copy(d, msg, n, &clen);
    struct kz_inflater *inf = new_inflater(15, false, 0, NULL);
    assert_non_null(inf);
    size_t got = 0;
    for (size_t off = 0; off < clen; off += 100) {
        size_t k = clen - off < 100 ? clen - off : 100;
        const uint8_t *out;
        size_t out_len;
        assert_int_equal(kz_inflate_piece(inf, c + off, k, off + k == clen, &out, &out_len), KZ_OK);
        const uint8_t *m;
        size_t mn;
        kz_inflater_message(inf, &m, &mn);
        assert_int_equal(mn, got + out_len);
        if (out_len) {
            assert_ptr_equal(out, m + got);
            assert_memory_equal(out, msg + got, out_len);
        }
        got += out_len;
    }
    assert_int_equal(got, n);
    /* The next call starts a new message. */
    const uint8_t *out;
    size_t out_len;
    uint8_t hello[16];
    size_t hn = kzt_hex("00 05 00 fa ff 48 65 6c 6c 6f 00", hello, sizeof(hello));
    assert_int_equal(kz_inflate_piece(inf, hello, hn, true, &out, &out_len), KZ_OK);
    assert_int_equal(out_len, 5);
    expect_message(inf, "Hello");
    kz_inflater_free(inf);
    kz_deflater_free(d);
    free(c);
    free(msg);
}

/* ------------------------------------------------------------------------
 * Context takeover
 */

static void context_takeover_across_messages(void **state)
{
    (void)state;
    enum { MSGS = 12, LEN = 1500 };
    uint8_t *msgs[MSGS];
    for (int k = 0; k < MSGS; k++)
        msgs[k] = json_text(LEN, (uint32_t)(k % 3) + 40);
    size_t total[2] = {0, 0};
    for (int nct = 0; nct <= 1; nct++) {
        struct kz_deflater *d = new_deflater(15, 6, 8, nct, NULL);
        struct kz_inflater *inf = new_inflater(15, nct, 0, NULL);
        assert_non_null(d);
        assert_non_null(inf);
        for (int k = 0; k < MSGS; k++) {
            size_t clen;
            uint8_t *c = deflate_copy(d, msgs[k], LEN, &clen);
            total[nct] += clen;
            expect_inflate(inf, c, clen, 0, msgs[k], LEN);
            /* A fresh inflater takes it only if each message stands alone. */
            struct kz_inflater *fresh = new_inflater(15, nct, 0, NULL);
            assert_non_null(fresh);
            uint8_t *m;
            size_t mn;
            int rc = inflate_pieces(fresh, c, clen, 0, &m, &mn);
            if (nct || k == 0) {
                assert_int_equal(rc, KZ_OK);
                assert_int_equal(mn, LEN);
                assert_memory_equal(m, msgs[k], LEN);
                free(m);
            } else {
                assert_int_equal(rc, KZ_ERR_INFLATE);
            }
            kz_inflater_free(fresh);
            if (k % 4 == 3) {
                kz_deflater_trim(d);
                kz_inflater_trim(inf);
            }
            free(c);
        }
        kz_deflater_free(d);
        kz_inflater_free(inf);
    }
    /* Repeats of earlier messages cost almost nothing with the window kept. */
    assert_true(total[0] < total[1] / 3);
    for (int k = 0; k < MSGS; k++)
        free(msgs[k]);
}

/* ------------------------------------------------------------------------
 * zlib on the other side
 */

static void interop_zlib_streams(void **state)
{
    (void)state;
    static const int strategies[] = {Z_DEFAULT_STRATEGY, Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE,
                                     Z_FIXED};
    size_t n = 70000;
    uint8_t *msg = json_text(n, 77);
    for (size_t s = 0; s < sizeof(strategies) / sizeof(strategies[0]); s++) {
        for (int level = 0; level <= 9; level += 3) {
            for (int w = 9; w <= 15; w += 2) {
                for (size_t pieces = 1; pieces <= 5; pieces += 4) {
                    size_t clen;
                    uint8_t *c = zlib_deflate(msg, n, w, level, strategies[s], pieces, &clen);
                    struct kz_inflater *inf = new_inflater(w, true, 0, NULL);
                    assert_non_null(inf);
                    expect_inflate(inf, c, clen, 0, msg, n);
                    expect_inflate(inf, c, clen, 997, msg, n);
                    kz_inflater_free(inf);
                    free(c);
                }
            }
        }
    }
    /* And ours to zlib, with the window carried over between messages. */
    struct kz_deflater *d = new_deflater(12, 5, 4, false, NULL);
    assert_non_null(d);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(inflateInit2(&zs, -12), Z_OK);
    uint8_t *out = malloc(n);
    assert_non_null(out);
    for (int rep = 0; rep < 3; rep++) {
        size_t clen;
        uint8_t *c = deflate_copy(d, msg, n, &clen);
        zs.next_in = c;
        zs.avail_in = (uInt)clen;
        zs.next_out = out;
        zs.avail_out = (uInt)n;
        assert_int_equal(inflate(&zs, Z_SYNC_FLUSH), Z_OK);
        zs.next_in = (const Bytef *)"\x00\x00\xff\xff";
        zs.avail_in = 4;
        int zr = inflate(&zs, Z_SYNC_FLUSH);
        assert_true(zr == Z_OK || zr == Z_BUF_ERROR);
        assert_int_equal(zs.avail_in, 0);
        assert_int_equal(zs.avail_out, 0);
        assert_memory_equal(out, msg, n);
        free(c);
    }
    inflateEnd(&zs);
    free(out);
    kz_deflater_free(d);
    free(msg);
}

/* ------------------------------------------------------------------------
 * The bound
 */

static void bomb_bounded(void **state)
{
    (void)state;
    size_t big = (size_t)64 << 20;
    uint8_t *zeros = calloc(1, big);
    assert_non_null(zeros);
    struct kz_deflater *d = new_deflater(15, 9, 9, true, NULL);
    assert_non_null(d);
    size_t clen;
    uint8_t *c = deflate_copy(d, zeros, big, &clen);
    kz_deflater_free(d);
    free(zeros);
    assert_true(clen < 80 * 1024);
    uint64_t max = 1u << 20;
    size_t pieces[] = {0, 4096, 1};
    for (size_t k = 0; k < 3; k++) {
        for (int with_realloc = 0; with_realloc <= 1; with_realloc++) {
            struct counter ctr;
            counter_init(&ctr, with_realloc);
            struct kz_inflater *inf = new_inflater(15, false, max, &ctr.alloc);
            assert_non_null(inf);
            uint8_t *m;
            size_t mn;
            /* Byte by byte only over the first 2000 bytes: they inflate past the bound. */
            size_t feed = pieces[k] == 1 ? 2000 : clen;
            assert_int_equal(inflate_pieces(inf, c, feed, pieces[k], &m, &mn),
                             KZ_ERR_MESSAGE_TOO_BIG);
            /*
             * The bound, zlib's state and window, and the inflater: nothing
             * more, ever; but without realloc, growing to the bound holds
             * the old half and the new whole for a moment.
             */
            assert_true(ctr.peak <= max + (with_realloc ? 0 : max / 2) + 48 * 1024);
            assert_true(kz_inflater_memory(inf) <= max + 48 * 1024);
            assert_int_equal(kz_inflater_memory(inf), ctr.live);
            /* Dead until reset. */
            const uint8_t *out;
            size_t out_len;
            assert_int_equal(kz_inflate_piece(inf, c, 10, false, &out, &out_len),
                             KZ_ERR_MESSAGE_TOO_BIG);
            kz_inflater_reset(inf);
            expect_inflate_hex(inf, HELLO_HEX, "Hello");
            kz_inflater_free(inf);
            assert_int_equal(ctr.live, 0);
        }
    }
    free(c);
}

static void bound_exact(void **state)
{
    (void)state;
    size_t n = 10000;
    uint8_t *msg = json_text(n, 2);
    struct kz_deflater *d = new_deflater(15, 1, 8, true, NULL);
    assert_non_null(d);
    size_t clen;
    uint8_t *c = deflate_copy(d, msg, n, &clen);
    kz_deflater_free(d);
    for (size_t piece = 0; piece <= 13; piece += 13) {
        /* Exactly the bound passes; one byte less does not. */
        struct counter ctr;
        counter_init(&ctr, true);
        struct kz_inflater *inf = new_inflater(15, true, n, &ctr.alloc);
        assert_non_null(inf);
        expect_inflate(inf, c, clen, piece, msg, n);
        expect_inflate(inf, c, clen, piece, msg, n);
        assert_true(ctr.peak <= n + 48 * 1024);
        kz_inflater_free(inf);

        inf = new_inflater(15, true, n - 1, NULL);
        assert_non_null(inf);
        uint8_t *m;
        size_t mn;
        assert_int_equal(inflate_pieces(inf, c, clen, piece, &m, &mn), KZ_ERR_MESSAGE_TOO_BIG);
        kz_inflater_reset(inf);
        expect_inflate_hex(inf, HELLO_HEX, "Hello");
        kz_inflater_free(inf);
    }
    /* The bound is per message, and an empty message fits any bound. */
    struct kz_inflater *inf = new_inflater(15, false, 5, NULL);
    assert_non_null(inf);
    for (int rep = 0; rep < 3; rep++)
        expect_inflate_hex(inf, "00 05 00 fa ff 48 65 6c 6c 6f 00", "Hello");
    expect_inflate_hex(inf, "00", "");
    kz_inflater_free(inf);
    free(c);
    free(msg);
}

/* ------------------------------------------------------------------------
 * Corrupt streams
 */

static void corrupt_streams(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "06",                /* block type 11, reserved */
        "07",                /* the same with BFINAL */
        "00 05 00 00 00 48", /* stored block whose NLEN is not ~LEN */
        "02 80 00",          /* fixed block: distance before the start */
        "f2 48 cd c9 c9",    /* cut inside a block */
        "f2 48 cd c9 c9 07", /* ends after the block, without the stored block header */
        "f2 48 cd c9 c9 07 00 00 00 ff ff", /* the tail left on: a stray 00 00 ff ff */
        "ff ff ff ff ff ff ff ff",
        "f3 48 cd c9 c9 07 00 ff", /* garbage after a final block */
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        for (int nct = 0; nct <= 1; nct++) {
            struct kz_inflater *inf = new_inflater(15, nct, 0, NULL);
            assert_non_null(inf);
            const char *const one[] = {bad[k]};
            assert_int_equal(feed_hex(inf, one, 1), KZ_ERR_INFLATE);
            /* Dead: the same answer again, whatever the input. */
            const char *const good[] = {HELLO_HEX};
            assert_int_equal(feed_hex(inf, good, 1), KZ_ERR_INFLATE);
            kz_inflater_trim(inf);
            assert_int_equal(feed_hex(inf, good, 1), KZ_ERR_INFLATE);
            /* Reset revives, with a new window. */
            kz_inflater_reset(inf);
            expect_inflate_hex(inf, HELLO_HEX, "Hello");
            expect_inflate_hex(inf, nct ? HELLO_HEX : "f2 00 11 00 00", "Hello");
            kz_inflater_free(inf);
        }
    }
}

static void corrupt_random(void **state)
{
    (void)state;
    /* Random payloads and flipped bits: an error or some bytes, never a crash. */
    size_t n = 4000;
    uint8_t *msg = json_text(n, 1);
    size_t clen;
    uint8_t *c = zlib_deflate(msg, n, 15, 6, Z_DEFAULT_STRATEGY, 1, &clen);
    struct kz_inflater *inf = new_inflater(15, false, 8192, NULL);
    assert_non_null(inf);
    uint32_t s = 12345;
    int errors = 0;
    for (int t = 0; t < 2000; t++) {
        uint8_t *in;
        size_t len;
        if (t % 2) {
            len = rng_next(&s) % 300;
            in = random_bytes(len, rng_next(&s));
        } else {
            len = clen;
            in = malloc(clen);
            assert_non_null(in);
            memcpy(in, c, clen);
            size_t bit = rng_next(&s) % (clen * 8);
            in[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        uint8_t *m;
        size_t mn;
        int rc = inflate_pieces(inf, in, len, 1 + rng_next(&s) % 50, &m, &mn);
        if (rc == KZ_OK) {
            /* Whatever it made, zlib makes too. */
            size_t zn;
            uint8_t *z = zlib_inflate(in, len, 15, 8192, &zn);
            assert_non_null(z);
            assert_int_equal(zn, mn);
            if (mn)
                assert_memory_equal(z, m, mn);
            free(z);
            free(m);
        } else {
            assert_true(rc == KZ_ERR_INFLATE || rc == KZ_ERR_MESSAGE_TOO_BIG);
            errors++;
        }
        kz_inflater_reset(inf);
        free(in);
    }
    assert_true(errors > 1000);
    kz_inflater_free(inf);
    free(c);
    free(msg);
}

/* ------------------------------------------------------------------------
 * Trim and memory
 */

static void trim_releases(void **state)
{
    (void)state;
    size_t n = 50000;
    uint8_t *msg = json_text(n, 31);
    for (int nct = 0; nct <= 1; nct++) {
        struct counter ctr;
        counter_init(&ctr, true);
        struct kz_deflater *d = new_deflater(15, 1, 8, nct, &ctr.alloc);
        struct kz_inflater *inf = new_inflater(15, nct, 0, &ctr.alloc);
        assert_non_null(d);
        assert_non_null(inf);
        /* Nothing of zlib's until a message needs it. */
        assert_true(kz_deflater_memory(d) < 512);
        assert_true(kz_inflater_memory(inf) < 512);
        assert_int_equal(kz_deflater_memory(d) + kz_inflater_memory(inf), ctr.live);
        for (int rep = 0; rep < 3; rep++) {
            size_t clen;
            uint8_t *c = deflate_copy(d, msg, n, &clen);
            expect_inflate(inf, c, clen, 4000, msg, n);
            free(c);
            size_t dm = kz_deflater_memory(d), im = kz_inflater_memory(inf);
            assert_int_equal(dm + im, ctr.live);
            assert_true(dm > 200 * 1024); /* window, hash chains, pending buffer */
            assert_true(im > 32 * 1024 + n);
            kz_deflater_trim(d);
            kz_inflater_trim(inf);
            dm = kz_deflater_memory(d);
            im = kz_inflater_memory(inf);
            assert_int_equal(dm + im, ctr.live);
            if (nct) {
                assert_true(dm < 512);
                assert_true(im < 512);
            } else {
                /* The windows stay; the buffers go. */
                assert_true(dm > 200 * 1024 && dm < 300 * 1024);
                assert_true(im > 32 * 1024 && im < 48 * 1024);
            }
            kz_deflater_trim(d);
            kz_inflater_trim(inf);
            assert_int_equal(kz_deflater_memory(d) + kz_inflater_memory(inf), ctr.live);
        }
        /* The window survives trim with context takeover. */
        size_t clen;
        uint8_t *c = deflate_copy(d, (const uint8_t *)"Hello", 5, &clen);
        kz_deflater_trim(d);
        expect_inflate(inf, c, clen, 0, "Hello", 5);
        kz_inflater_trim(inf);
        free(c);
        c = deflate_copy(d, (const uint8_t *)"Hello", 5, &clen);
        if (nct)
            assert_int_equal(clen, 7);
        else
            assert_true(clen < 7);
        kz_deflater_trim(d);
        expect_inflate(inf, c, clen, 0, "Hello", 5);
        free(c);
        kz_deflater_free(d);
        kz_inflater_free(inf);
        assert_int_equal(ctr.live, 0);
    }
    free(msg);
}

static void small_config_memory(void **state)
{
    (void)state;
    /* Window 9 with mem_level 1: the whole compressed connection in a few KiB. */
    size_t n = 4000;
    uint8_t *msg = json_text(n, 6);
    struct counter ctr;
    counter_init(&ctr, true);
    struct kz_deflater *d = new_deflater(9, 1, 1, false, &ctr.alloc);
    struct kz_inflater *inf = new_inflater(9, false, 0, &ctr.alloc);
    assert_non_null(d);
    assert_non_null(inf);
    size_t clen;
    uint8_t *c = deflate_copy(d, msg, n, &clen);
    expect_inflate(inf, c, clen, 0, msg, n);
    free(c);
    kz_deflater_trim(d);
    kz_inflater_trim(inf);
    assert_int_equal(kz_deflater_memory(d) + kz_inflater_memory(inf), ctr.live);
    assert_true(kz_deflater_memory(d) < 12 * 1024);
    assert_true(kz_inflater_memory(inf) < 10 * 1024);
    kz_deflater_free(d);
    kz_inflater_free(inf);
    assert_int_equal(ctr.live, 0);
    free(msg);
}

static void trim_keeps_open_message(void **state)
{
    (void)state;
    struct kz_inflater *inf = new_inflater(15, true, 0, NULL);
    assert_non_null(inf);
    const uint8_t *out;
    size_t out_len;
    uint8_t hello[16];
    size_t hn = kzt_hex(HELLO_HEX, hello, sizeof(hello));
    assert_int_equal(kz_inflate_piece(inf, hello, 4, false, &out, &out_len), KZ_OK);
    kz_inflater_trim(inf);
    assert_int_equal(kz_inflate_piece(inf, hello + 4, hn - 4, true, &out, &out_len), KZ_OK);
    expect_message(inf, "Hello");
    kz_inflater_trim(inf);
    expect_message(inf, "");
    /* Reset mid-message forgets it. */
    assert_int_equal(kz_inflate_piece(inf, hello, 4, false, &out, &out_len), KZ_OK);
    kz_inflater_reset(inf);
    expect_inflate_hex(inf, HELLO_HEX, "Hello");
    kz_inflater_free(inf);
}

static void invalid_arguments(void **state)
{
    (void)state;
    struct kz_deflate_config dc = {15, 1, 8, false};
    struct kz_inflate_config ic = {15, false, 0};
    assert_null(kz_deflater_new(NULL, NULL));
    assert_null(kz_inflater_new(NULL, NULL));
    static const uint8_t bad_windows[] = {0, 7, 16, 255};
    for (size_t k = 0; k < sizeof(bad_windows); k++) {
        dc.window_bits = bad_windows[k];
        ic.window_bits = bad_windows[k];
        assert_null(kz_deflater_new(&dc, NULL));
        assert_null(kz_inflater_new(&ic, NULL));
    }
    dc.window_bits = 15;
    ic.window_bits = 15;
    dc.level = 10;
    assert_null(kz_deflater_new(&dc, NULL));
    dc.level = 1;
    dc.mem_level = 0;
    assert_null(kz_deflater_new(&dc, NULL));
    dc.mem_level = 10;
    assert_null(kz_deflater_new(&dc, NULL));
    dc.mem_level = 8;
    /* An allocator needs malloc and free. */
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    struct kz_allocator half = fa.alloc;
    half.free = NULL;
    assert_null(kz_deflater_new(&dc, &half));
    assert_null(kz_inflater_new(&ic, &half));
    half = fa.alloc;
    half.malloc = NULL;
    assert_null(kz_deflater_new(&dc, &half));
    assert_null(kz_inflater_new(&ic, &half));
    assert_int_equal(fa.count, 0);
    struct kz_deflater *d = kz_deflater_new(&dc, NULL);
    assert_non_null(d);
    const uint8_t *out;
    size_t n;
    assert_int_equal(kz_deflate_message(d, NULL, 1, &out, &n), KZ_ERR_INVALID_ARGUMENT);
    expect_deflate_hex(d, "Hello", HELLO_HEX);
    kz_deflater_free(d);
    struct kz_inflater *inf = kz_inflater_new(&ic, NULL);
    assert_non_null(inf);
    assert_int_equal(kz_inflate_piece(inf, NULL, 1, true, &out, &n), KZ_ERR_INVALID_ARGUMENT);
    expect_inflate_hex(inf, HELLO_HEX, "Hello");
    kz_inflater_free(inf);
    kz_deflater_free(NULL);
    kz_inflater_free(NULL);
    kz_deflater_trim(NULL);
    kz_inflater_trim(NULL);
    kz_inflater_reset(NULL);
    assert_int_equal(kz_deflater_memory(NULL), 0);
    assert_int_equal(kz_inflater_memory(NULL), 0);
}

/* ------------------------------------------------------------------------
 * Allocation failures
 */

/*
 * One run of a deflater's life with the failing allocator: messages of
 * several sizes, trims between them. A message that fails with NOMEM is
 * tried again (the allocator fails once), and every message made is
 * checked by a plain zlib inflater that follows the stream, which proves
 * a failed message left the deflater consistent. Returns whether some
 * allocation failed.
 */
static bool deflater_run(unsigned long fail_at, bool nct, bool with_realloc, const uint8_t *text,
                         size_t text_len)
{
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, fail_at);
    if (!with_realloc)
        fa.alloc.realloc = NULL;
    bool failed = false;
    struct kz_deflater *d = new_deflater(15, 1, 8, nct, &fa.alloc);
    if (!d) {
        assert_int_equal(fa.live, 0);
        return true;
    }
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(inflateInit2(&zs, -15), Z_OK);
    uint8_t *out = malloc(text_len);
    assert_non_null(out);
    static const size_t lens[] = {5, 1000, 0, 30000, 200};
    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        size_t len = lens[k] < text_len ? lens[k] : text_len;
        const uint8_t *c;
        size_t clen;
        int rc = kz_deflate_message(d, text, len, &c, &clen);
        if (rc != KZ_OK) {
            assert_int_equal(rc, KZ_ERR_NOMEM);
            failed = true;
            rc = kz_deflate_message(d, text, len, &c, &clen);
            assert_int_equal(rc, KZ_OK);
        }
        zs.next_in = c;
        zs.avail_in = (uInt)clen;
        zs.next_out = out;
        zs.avail_out = (uInt)text_len;
        int zr = inflate(&zs, Z_SYNC_FLUSH);
        assert_true(zr == Z_OK || zr == Z_BUF_ERROR);
        zs.next_in = (const Bytef *)"\x00\x00\xff\xff";
        zs.avail_in = 4;
        zr = inflate(&zs, Z_SYNC_FLUSH);
        assert_true(zr == Z_OK || zr == Z_BUF_ERROR);
        assert_int_equal(text_len - zs.avail_out, len);
        if (len)
            assert_memory_equal(out, text, len);
        if (nct)
            inflateReset(&zs);
        if (k % 2)
            kz_deflater_trim(d);
    }
    inflateEnd(&zs);
    free(out);
    kz_deflater_free(d);
    assert_int_equal(fa.live, 0);
    return failed || fa.count >= fail_at;
}

/*
 * An inflater's life: messages made beforehand (text, BFINAL streams, a
 * bound), inflated in pieces. At a failure: NOMEM, dead until reset, and
 * with no context takeover the next messages inflate after the reset.
 */
static bool inflater_run(unsigned long fail_at, bool nct, bool with_realloc, uint8_t *const *cs,
                         const size_t *clens, size_t nmsgs, const uint8_t *text, const size_t *lens)
{
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, fail_at);
    if (!with_realloc)
        fa.alloc.realloc = NULL;
    struct kz_inflater *inf = new_inflater(15, nct, 0, &fa.alloc);
    if (!inf) {
        assert_int_equal(fa.live, 0);
        return true;
    }
    bool failed = false;
    for (size_t k = 0; k < nmsgs; k++) {
        uint8_t *m;
        size_t mn;
        int rc = inflate_pieces(inf, cs[k], clens[k], 700, &m, &mn);
        if (rc != KZ_OK) {
            assert_int_equal(rc, KZ_ERR_NOMEM);
            const uint8_t *out;
            size_t out_len;
            assert_int_equal(kz_inflate_piece(inf, cs[k], 1, false, &out, &out_len), KZ_ERR_NOMEM);
            failed = true;
            kz_inflater_reset(inf);
            if (!nct)
                break;
            continue;
        }
        assert_int_equal(mn, lens[k]);
        assert_memory_equal(m, text, mn);
        free(m);
        if (k % 2)
            kz_inflater_trim(inf);
    }
    kz_inflater_free(inf);
    assert_int_equal(fa.live, 0);
    return failed || fa.count >= fail_at;
}

static void nomem_every_allocation(void **state)
{
    (void)state;
    size_t text_len = 40000;
    uint8_t *text = json_text(text_len, 55);
    for (int nct = 0; nct <= 1; nct++) {
        for (int with_realloc = 0; with_realloc <= 1; with_realloc++) {
            unsigned long fail_at = 1;
            while (deflater_run(fail_at, nct, with_realloc, text, text_len))
                fail_at++;
            assert_true(fail_at > 5);

            /* Messages: text in both modes' streams, and BFINAL-ended streams. */
            enum { NM = 5 };
            uint8_t *cs[NM];
            size_t clens[NM], lens[NM] = {30000, 2000, 2000, 100, 30000};
            struct kz_deflater *d = new_deflater(15, 1, 8, nct, NULL);
            assert_non_null(d);
            cs[0] = deflate_copy(d, text, lens[0], &clens[0]);
            cs[1] = deflate_copy(d, text, lens[1], &clens[1]);
            kz_deflater_free(d);
            /* A stream ended with BFINAL, then its stored block: a restart mid-message. */
            z_stream zs;
            memset(&zs, 0, sizeof(zs));
            assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
            cs[2] = malloc(4096);
            assert_non_null(cs[2]);
            zs.next_in = text;
            zs.avail_in = (uInt)lens[2];
            zs.next_out = cs[2];
            zs.avail_out = 4095;
            assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
            clens[2] = 4095 - zs.avail_out;
            cs[2][clens[2]++] = 0x00;
            deflateEnd(&zs);
            /* Stored blocks, as level 0 makes them. */
            cs[3] = zlib_deflate(text, lens[3], 15, 0, Z_DEFAULT_STRATEGY, 1, &clens[3]);
            cs[4] = zlib_deflate(text, lens[4], 15, 9, Z_DEFAULT_STRATEGY, 3, &clens[4]);
            unsigned long at = 1;
            while (inflater_run(at, nct, with_realloc, cs, clens, NM, text, lens))
                at++;
            assert_true(at > 4);
            for (int k = 0; k < NM; k++)
                free(cs[k]);
        }
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc_hello_compressed),
        cmocka_unit_test(rfc_hello_twice),
        cmocka_unit_test(rfc_empty_message),
        cmocka_unit_test(rfc_inflate_examples),
        cmocka_unit_test(bfinal_window_carried),
        cmocka_unit_test(round_trip_sizes),
        cmocka_unit_test(round_trip_levels_and_windows),
        cmocka_unit_test(window_eight_for_real),
        cmocka_unit_test(window_too_small_refused),
        cmocka_unit_test(inflate_every_piece_size),
        cmocka_unit_test(inflate_empty_pieces),
        cmocka_unit_test(out_is_new_bytes),
        cmocka_unit_test(context_takeover_across_messages),
        cmocka_unit_test(interop_zlib_streams),
        cmocka_unit_test(bomb_bounded),
        cmocka_unit_test(bound_exact),
        cmocka_unit_test(corrupt_streams),
        cmocka_unit_test(corrupt_random),
        cmocka_unit_test(trim_releases),
        cmocka_unit_test(small_config_memory),
        cmocka_unit_test(trim_keeps_open_message),
        cmocka_unit_test(invalid_arguments),
        cmocka_unit_test(nomem_every_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
