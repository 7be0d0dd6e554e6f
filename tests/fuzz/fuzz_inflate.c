/*
 * fuzz_inflate: the inflater, fed messages in pieces, against zlib's own
 * inflate fed each message whole, and against the bound.
 *
 * Input: byte 0 picks the configuration (window 8..15 in bits 0-2, no
 * context takeover in bit 3, the bound in bits 4-5: none, 1, 1000 or
 * 65536 bytes; bit 6 an allocator without realloc), byte 1 seeds how each
 * message is cut into pieces and whether the inflater is trimmed after it.
 * Then messages, each a 2-byte little-endian length and its payload (the
 * last one may be cut short).
 *
 * Checked on every call: the new bytes are exactly what the message grew
 * by, the message never passes the bound, the memory the inflater reports
 * is what the allocator handed out and stays within the bound plus zlib's
 * state and window, and a dead inflater keeps its error. Checked per
 * message against the reference (which inflates the payload with the tail
 * in one call, into one buffer): the same bytes when the inflater accepts
 * a message; the same verdict, except that with windows under 15 bits
 * zlib's reference may accept distances that reach into output it wrote in
 * the same call, which the inflater, writing across calls, may refuse.
 * After a BFINAL block the reference stops following (it does not carry
 * its window into a new stream). At the end, after a reset, a message
 * from kz_deflater must come back intact.
 */
#define ZLIB_CONST
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kaze/deflate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, size_t msg)
{
    fprintf(stderr, "fuzz_inflate: %s (message %zu)\n", what, msg);
    abort();
}

/* ---- an allocator that counts live bytes ------------------------------ */

struct counter {
    size_t live;
};

union hdr {
    size_t size;
    max_align_t align;
};

static void *c_malloc(size_t n, void *ud)
{
    struct counter *c = ud;
    union hdr *h = malloc(sizeof(*h) + n);
    if (!h)
        return NULL;
    h->size = n;
    c->live += n;
    return h + 1;
}

static void c_free(void *p, void *ud)
{
    struct counter *c = ud;
    if (!p)
        return;
    union hdr *h = (union hdr *)p - 1;
    c->live -= h->size;
    free(h);
}

static void *c_realloc(void *p, size_t n, void *ud)
{
    struct counter *c = ud;
    if (!p)
        return c_malloc(n, ud);
    union hdr *h = (union hdr *)p - 1;
    size_t old = h->size;
    union hdr *nh = realloc(h, sizeof(*nh) + n);
    if (!nh)
        return NULL;
    nh->size = n;
    c->live = c->live - old + n;
    return nh + 1;
}

/* ---- the reference ---------------------------------------------------- */

enum ref_result { REF_OK, REF_BAD, REF_TOO_BIG, REF_ENDED };

/* The most the reference inflates of one message when there is no bound. */
#define REF_CAP ((size_t)64 << 20)

static uint8_t *ref_out;
static size_t ref_cap;

/*
 * Inflates payload + tail in one call into one buffer of `limit` + 1
 * bytes. REF_ENDED: a BFINAL block ended the stream (not followed).
 */
static enum ref_result ref_inflate(z_stream *zs, const uint8_t *p, size_t n, size_t limit,
                                   size_t *out_len)
{
    if (ref_cap < limit + 1) {
        free(ref_out);
        ref_out = malloc(limit + 1);
        if (!ref_out)
            abort();
        ref_cap = limit + 1;
    }
    uint8_t *in = malloc(n + 4);
    if (!in)
        abort();
    memcpy(in, p, n);
    memcpy(in + n, "\x00\x00\xff\xff", 4);
    zs->next_in = in;
    zs->avail_in = (uInt)(n + 4);
    zs->next_out = ref_out;
    zs->avail_out = (uInt)(limit + 1);
    int zr = inflate(zs, Z_SYNC_FLUSH);
    *out_len = limit + 1 - zs->avail_out;
    uInt left_in = zs->avail_in;
    free(in);
    if (*out_len > limit)
        return REF_TOO_BIG;
    if (zr == Z_STREAM_END)
        return REF_ENDED;
    if (zr != Z_OK && zr != Z_BUF_ERROR)
        return REF_BAD;
    /* All taken, and the tail closed an empty stored block. */
    if (left_in != 0 || !(zs->data_type & 128))
        return REF_BAD;
    return REF_OK;
}

/* ---- pieces ----------------------------------------------------------- */

static uint32_t rng(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

static const uint64_t bounds[4] = {0, 1, 1000, 65536};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t cfg_byte = data[0];
    uint32_t seed = data[1];
    data += 2;
    size -= 2;

    struct kz_inflate_config cfg = {
        .window_bits = (uint8_t)(8 + (cfg_byte & 7)),
        .no_context_takeover = (cfg_byte >> 3) & 1,
        .max_message = bounds[(cfg_byte >> 4) & 3],
    };
    int wbits = cfg.window_bits < 9 ? 9 : cfg.window_bits;
    struct counter ctr = {0};
    struct kz_allocator alloc = {c_malloc, (cfg_byte & 0x40) ? NULL : c_realloc, c_free, &ctr};
    struct kz_inflater *inf = kz_inflater_new(&cfg, &alloc);
    if (!inf)
        fail("kz_inflater_new", 0);
    size_t slack = 48 * 1024; /* the inflater, zlib's state and a 32 KiB window */

    z_stream ref;
    memset(&ref, 0, sizeof(ref));
    if (inflateInit2(&ref, -wbits) != Z_OK)
        abort();
    bool ref_lost = false;
    size_t limit = cfg.max_message ? (size_t)cfg.max_message : REF_CAP;

    for (size_t k = 0; size >= 2; k++) {
        size_t n = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2;
        size -= 2;
        if (n > size)
            n = size;
        const uint8_t *msg = data;
        data += n;
        size -= n;

        /* Ours, in pieces. */
        int rc = KZ_OK;
        size_t off = 0, got = 0;
        uint32_t scale = 2 + rng(&seed) % 200;
        do {
            /* Sizes 0..scale-1, scale >= 2: empty pieces too, but not only those. */
            size_t c = rng(&seed) % scale;
            if (c > n - off)
                c = n - off;
            bool fin = off + c == n;
            const uint8_t *out = NULL;
            size_t out_len = 0;
            rc = kz_inflate_piece(inf, msg + off, c, fin, &out, &out_len);
            if (kz_inflater_memory(inf) != ctr.live)
                fail("memory reported is not what was allocated", k);
            if (cfg.max_message && ctr.live > cfg.max_message + slack)
                fail("memory past the bound", k);
            if (rc != KZ_OK)
                break;
            const uint8_t *whole;
            size_t whole_len;
            kz_inflater_message(inf, &whole, &whole_len);
            if (whole_len != got + out_len || (out_len && out != whole + got))
                fail("new bytes are not the message's growth", k);
            got += out_len;
            if (cfg.max_message && got > cfg.max_message)
                fail("message past the bound", k);
            off += c;
        } while (off < n);

        if (rc != KZ_OK) {
            if (rc != KZ_ERR_INFLATE && rc != KZ_ERR_MESSAGE_TOO_BIG)
                fail("unexpected error", k);
            const uint8_t *out;
            size_t out_len;
            if (kz_inflate_piece(inf, msg, n, true, &out, &out_len) != rc)
                fail("a dead inflater changed its answer", k);
        }

        /* The reference, whole. */
        if (!ref_lost && n > 0) {
            size_t ref_len = 0;
            enum ref_result r = ref_inflate(&ref, msg, n, limit, &ref_len);
            if (r == REF_ENDED) {
                ref_lost = true;
            } else if (r == REF_TOO_BIG) {
                if (rc != KZ_ERR_MESSAGE_TOO_BIG && !(rc == KZ_ERR_INFLATE && cfg.window_bits < 15))
                    fail("reference passed the bound, the inflater did not say so", k);
            } else if (r == REF_BAD) {
                if (rc == KZ_OK)
                    fail("the inflater took what zlib refuses", k);
                if (rc == KZ_ERR_MESSAGE_TOO_BIG)
                    fail("too big where zlib stopped first", k);
            } else if (rc == KZ_OK) {
                const uint8_t *whole;
                size_t whole_len;
                kz_inflater_message(inf, &whole, &whole_len);
                if (whole_len != ref_len || (ref_len && memcmp(whole, ref_out, ref_len) != 0))
                    fail("bytes differ from zlib's", k);
            } else if (!(rc == KZ_ERR_INFLATE && cfg.window_bits < 15)) {
                fail("refused what zlib takes", k);
            }
        }
        if (rc == KZ_OK && n == 0) {
            const uint8_t *whole;
            size_t whole_len;
            kz_inflater_message(inf, &whole, &whole_len);
            if (whole_len != 0)
                fail("an empty payload made bytes", k);
        }

        /* After an error both start over; with no context takeover, after every message. */
        if (rc != KZ_OK) {
            kz_inflater_reset(inf);
            inflateReset(&ref);
            ref_lost = false;
        } else if (cfg.no_context_takeover) {
            inflateReset(&ref);
            ref_lost = false;
        }
        if (rng(&seed) % 4 == 0)
            kz_inflater_trim(inf);
    }

    /* Revived by a reset, whatever happened. */
    kz_inflater_reset(inf);
    static const char text[] = "{\"channel\":\"fuzz\",\"data\":\"permessage-deflate\"}";
    struct kz_deflate_config dcfg = {cfg.window_bits, 6, 8, false};
    struct kz_deflater *d = kz_deflater_new(&dcfg, NULL);
    if (!d)
        abort();
    const uint8_t *c;
    size_t clen;
    if (kz_deflate_message(d, (const uint8_t *)text, sizeof(text) - 1, &c, &clen) != KZ_OK)
        fail("kz_deflate_message", 0);
    const uint8_t *out;
    size_t out_len;
    size_t want = cfg.max_message && cfg.max_message < sizeof(text) - 1 ? 0 : sizeof(text) - 1;
    int rc = kz_inflate_piece(inf, c, clen, true, &out, &out_len);
    if (want ? rc != KZ_OK || out_len != want || memcmp(out, text, want) != 0
             : rc != KZ_ERR_MESSAGE_TOO_BIG)
        fail("not revived by reset", 0);
    kz_deflater_free(d);
    kz_inflater_free(inf);
    inflateEnd(&ref);
    if (ctr.live != 0)
        fail("leak", 0);
    return 0;
}
