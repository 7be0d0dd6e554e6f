/*
 * kaze bench: histogram, mask-key seed, compressible text, clocks, the /proc
 * readers, and the TLS context with the text of its errors.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "kaze/common.h"
#include "bench.h"

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src)
{
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    if (src->max > dst->max)
        dst->max = src->max;
}

/* The middle of bucket `i`: the inverse of bench_hist_index(). */
static uint64_t bucket_mid(size_t i)
{
    if (i < 2 * BENCH_HIST_SUB)
        return i;
    unsigned shift = (unsigned)(i / BENCH_HIST_SUB) - 1;
    uint64_t low = (uint64_t)(BENCH_HIST_SUB + i % BENCH_HIST_SUB) << shift;
    return low + ((1ull << shift) >> 1);
}

uint64_t bench_hist_quantile(const struct bench_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    /* The rank of the value asked for, 1-based: the q-th fraction of them, at least the first. */
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = bucket_mid(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

int bench_rng_seed(struct bench_rng *r)
{
    unsigned char seed[sizeof(r->state)];
    if (RAND_bytes(seed, sizeof(seed)) != 1)
        return KZ_ERR_CRYPTO;
    memcpy(&r->state, seed, sizeof(seed));
    return KZ_OK;
}

/* ------------------------------------------------------------------------
 * Text for compressed runs
 */

static const char *const text_types[4] = {"trade", "quote", "cancel", "fill"};

/* Symbols and their prices in cents, around which each record's price moves. */
static const struct {
    const char *name;
    uint32_t cents;
} text_symbols[8] = {
    {"BTC-USD", 4312500}, {"ETH-USD", 223107}, {"SOL-USD", 10245}, {"ADA-USD", 58},
    {"XRP-USD", 61},      {"DOGE-USD", 9},     {"AVAX-USD", 3721}, {"LINK-USD", 1463},
};

#define PUT_LIT(p, s) ((p) = (uint8_t *)memcpy((p), (s), sizeof(s) - 1) + sizeof(s) - 1)

static uint8_t *put_str(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/* `v` in decimal, at least `width` digits (zero-padded). */
static uint8_t *put_uint(uint8_t *p, uint64_t v, unsigned width)
{
    uint8_t tmp[20];
    unsigned n = 0;
    do {
        tmp[n++] = (uint8_t)('0' + v % 10);
        v /= 10;
    } while (v || n < width);
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* `v` / 10^`decimals`, with exactly that many decimals. */
static uint8_t *put_fixed(uint8_t *p, uint64_t v, unsigned decimals)
{
    uint64_t scale = decimals == 2 ? 100 : 1000;
    p = put_uint(p, v / scale, 1);
    *p++ = '.';
    return put_uint(p, v % scale, decimals);
}

void bench_text_records(struct bench_text *g, uint8_t *p, const uint8_t *end)
{
    while (p < end) {
        /* One draw decides a record: 2 + 3 + 1 + 16 + 16 + 17 + 7 bits. */
        uint64_t r = bench_rng_next(&g->rng);
        unsigned sym = (r >> 2) & 7;
        uint64_t cents = text_symbols[sym].cents;
        /* +-1% around the symbol's price, in 65536 steps. */
        uint64_t swing = cents / 50 + 1;
        cents = cents - swing / 2 + ((r >> 6) & 0xffff) * swing / 0x10000;
        PUT_LIT(p, "{\"id\":");
        p = put_uint(p, g->id++, 1);
        PUT_LIT(p, ",\"ts\":");
        p = put_uint(p, g->ts, 1);
        g->ts += (r >> 55) & 0x7f;
        PUT_LIT(p, ",\"type\":\"");
        p = put_str(p, text_types[r & 3]);
        PUT_LIT(p, "\",\"symbol\":\"");
        p = put_str(p, text_symbols[sym].name);
        PUT_LIT(p, "\",\"side\":\"");
        p = (r >> 5) & 1 ? put_str(p, "buy") : put_str(p, "sell");
        PUT_LIT(p, "\",\"price\":");
        p = put_fixed(p, cents, 2);
        PUT_LIT(p, ",\"qty\":");
        p = put_fixed(p, ((r >> 22) & 0xffff) + 1, 3);
        PUT_LIT(p, ",\"user\":\"u");
        p = put_uint(p, ((r >> 38) & 0x1ffff) % 100000, 5);
        PUT_LIT(p, "\"},");
    }
}

/* ------------------------------------------------------------------------
 * Clocks and /proc
 */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double bench_self_cpu(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Reads a small /proc file whole into `buf` (NUL-terminated); false if it cannot. */
static bool read_small_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0;
}

bool bench_proc_cpu(long pid, double *seconds)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (!read_small_file(path, buf, sizeof(buf)))
        return false;
    /* The command name (field 2) may hold spaces and parentheses: start after the last ')'. */
    const char *p = strrchr(buf, ')');
    if (!p)
        return false;
    unsigned long utime, stime;
    /* Fields 3 to 13 are skipped; 14 and 15 are utime and stime in clock ticks. */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return false;
    long hz = sysconf(_SC_CLK_TCK);
    *seconds = (double)(utime + stime) / (double)(hz > 0 ? hz : 100);
    return true;
}

bool bench_proc_rss(long pid, uint64_t *bytes)
{
    char path[64], buf[8192];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    if (!read_small_file(path, buf, sizeof(buf)))
        return false;
    const char *p = strstr(buf, "\nVmRSS:");
    unsigned long kb;
    if (!p || sscanf(p + 7, " %lu kB", &kb) != 1)
        return false;
    *bytes = (uint64_t)kb * 1024;
    return true;
}

/* ------------------------------------------------------------------------
 * TLS
 */

/* Echo runs: OpenSSL's read buffer, so that one read() takes several 16 KiB records. */
#define TLS_ECHO_READ_BUF (64u * 1024u)
/* ... as long as the connections' buffers together stay under this. */
#define TLS_ECHO_READ_BUF_TOTAL (256ull << 20)

SSL_CTX *bench_tls_ctx(const struct bench_opts *o, char *err, size_t err_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, err_len, "SSL_CTX_new: %s", ERR_reason_error_string(ERR_get_error()));
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* A TCP end without close_notify is an end, as over plain TCP (the server closes first). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /*
     * Partial writes: SSL_write returns after each record, so progress is
     * known record by record. Moving buffer: a write that must be retried
     * may be retried after the output buffer was compacted.
     */
    long mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
    if (o->mode == BENCH_CONNECT) {
        mode |= SSL_MODE_RELEASE_BUFFERS;
    } else {
        SSL_CTX_set_read_ahead(ctx, 1);
        if ((uint64_t)o->conns * TLS_ECHO_READ_BUF <= TLS_ECHO_READ_BUF_TOTAL)
            SSL_CTX_set_default_read_buffer_len(ctx, TLS_ECHO_READ_BUF);
    }
    SSL_CTX_set_mode(ctx, mode);
    /*
     * No session is kept, so every connection makes a full handshake (the
     * tickets a TLS 1.3 server sends are read and dropped, as a browser
     * that has not come back yet would).
     */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    if (o->tls_insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    FILE *f = o->tls_ca ? fopen(o->tls_ca, "r") : NULL;
    if (o->tls_ca && !f) {
        snprintf(err, err_len, "--ca %s: %s", o->tls_ca, strerror(errno));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (f)
        fclose(f);
    int ok = o->tls_ca ? SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL)
                       : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        unsigned long e = ERR_peek_last_error();
        const char *why = e ? ERR_reason_error_string(e) : NULL;
        snprintf(err, err_len, "cannot load CA certificates from %s%s%s",
                 o->tls_ca ? o->tls_ca : "the system's store", why ? ": " : "", why ? why : "");
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

const char *bench_tls_error(SSL *ssl, int ssl_error, char *buf, size_t cap)
{
    int saved = errno;
    unsigned long code = ERR_peek_error();
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (verify != X509_V_OK && SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE) {
        bool issuer = verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                      verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
                      verify == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                      verify == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT;
        snprintf(buf, cap, "certificate verification failed: %s%s",
                 X509_verify_cert_error_string(verify),
                 issuer ? " (--ca FILE trusts the CA in FILE, --insecure trusts anything)" : "");
    } else if (ssl_error == SSL_ERROR_ZERO_RETURN) {
        snprintf(buf, cap, "the server ended the TLS session");
    } else if (ssl_error == SSL_ERROR_SYSCALL && !code) {
        if (saved)
            snprintf(buf, cap, "%s", strerror(saved));
        else
            snprintf(buf, cap, "the server closed the connection");
    } else if (code) {
        const char *why = ERR_reason_error_string(code);
        if (why)
            snprintf(buf, cap, "%s", why);
        else
            snprintf(buf, cap, "OpenSSL error %#lx", code);
    } else {
        snprintf(buf, cap, "SSL error %d", ssl_error);
    }
    ERR_clear_error();
    return buf;
}
