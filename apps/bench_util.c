/* kaze bench: histogram, mask-key seed, compressible text, clocks and the /proc readers. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

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
