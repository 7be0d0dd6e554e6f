/*
 * bench_deflate: permessage-deflate throughput on JSON-like text messages
 * of 1 KiB and 16 KiB, and the memory an idle compressed connection holds.
 *
 * Throughput is in MB/s of uncompressed text. The messages of a run are
 * all different (records drawn from a fixed seed) and are sent in order,
 * so context takeover helps as much as it would for a real feed and no
 * more. Compression: one deflater for the whole run. Inflation: the
 * messages compressed once beforehand, inflated in order by a fresh
 * inflater per pass. Configurations: zlib level 1, window 15, mem_level 8
 * with context takeover (what browsers negotiate); the same without
 * context takeover, trimmed after every message as a server does (so zlib's
 * state is made and freed per message); and window 9 with mem_level 1.
 * Each figure is the median of REPS rounds of at least MIN_NS each; the
 * benchmarks take turns so that noise hits them alike.
 *
 * Memory: the bytes kz_deflater_memory() and kz_inflater_memory() report
 * after one 16 KiB message and a trim, i.e. what an idle connection holds
 * for each direction.
 *
 * Output: a table, then `bench: NAME VALUE UNIT` lines.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kaze/deflate.h"

#define REPS   7
#define MIN_NS 100000000ull
#define PASS   (1u << 20) /* bytes of text per pass */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what)
{
    fprintf(stderr, "bench_deflate: %s\n", what);
    exit(1);
}

/* ---- messages ------------------------------------------------------------ */

static uint32_t rng(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* A chat/feed-like JSON message of exactly `len` bytes. */
static void make_message(uint8_t *out, size_t len, uint32_t seed)
{
    static const char *const users[] = {"ada",     "grace",  "linus",    "ken",
                                        "barbara", "dennis", "margaret", "edsger"};
    static const char *const words[] = {"the",    "build",    "is",   "green",  "again",  "after",
                                        "fixing", "a",        "race", "in",     "the",    "timer",
                                        "heap",   "shipping", "now",  "please", "review", "merge"};
    uint32_t s = seed * 2654435761u | 1;
    size_t n = 0;
    char rec[512];
    n += (size_t)snprintf((char *)out, len, "{\"type\":\"batch\",\"seq\":%u,\"items\":[", seed);
    while (n < len) {
        int k = snprintf(rec, sizeof(rec),
                         "{\"id\":%u,\"user\":\"%s\",\"ts\":%u,\"likes\":%u,\"text\":\"", rng(&s),
                         users[rng(&s) % 8], 1700000000u + rng(&s) % 100000u, rng(&s) % 500);
        for (unsigned w = 3 + rng(&s) % 8; w > 0 && k < 400; w--)
            k += snprintf(rec + k, sizeof(rec) - (size_t)k, "%s%s", words[rng(&s) % 18],
                          w > 1 ? " " : "");
        k += snprintf(rec + k, sizeof(rec) - (size_t)k, "\"},");
        size_t c = (size_t)k < len - n ? (size_t)k : len - n;
        memcpy(out + n, rec, c);
        n += c;
    }
}

struct set {
    size_t len, count;
    uint8_t *text;       /* count messages of len bytes */
    uint8_t *z;          /* their compressed stream, message after message */
    size_t *zoff, *zlen; /* where each compressed message is */
};

static void make_set(struct set *st, size_t len)
{
    st->len = len;
    st->count = PASS / len;
    st->text = malloc(PASS);
    if (!st->text)
        die("out of memory");
    for (size_t i = 0; i < st->count; i++)
        make_message(st->text + i * len, len, (uint32_t)(i + 1));
}

/* Compresses the set once, in order, with a fresh deflater of `cfg`. */
static void compress_set(struct set *st, const struct kz_deflate_config *cfg)
{
    struct kz_deflater *d = kz_deflater_new(cfg, NULL);
    if (!d)
        die("kz_deflater_new");
    free(st->z);
    free(st->zoff);
    free(st->zlen);
    st->z = malloc(PASS + PASS / 8 + 64 * st->count);
    st->zoff = malloc(st->count * sizeof(size_t));
    st->zlen = malloc(st->count * sizeof(size_t));
    if (!st->z || !st->zoff || !st->zlen)
        die("out of memory");
    size_t pos = 0;
    for (size_t i = 0; i < st->count; i++) {
        const uint8_t *out;
        size_t n;
        if (kz_deflate_message(d, st->text + i * st->len, st->len, &out, &n) != KZ_OK)
            die("kz_deflate_message");
        memcpy(st->z + pos, out, n);
        st->zoff[i] = pos;
        st->zlen[i] = n;
        pos += n;
    }
    kz_deflater_free(d);
}

static size_t set_compressed(const struct set *st)
{
    size_t total = 0;
    for (size_t i = 0; i < st->count; i++)
        total += st->zlen[i];
    return total;
}

/* ---- the benchmarks ------------------------------------------------------ */

struct bench {
    const char *name;
    const char *what;
    struct set *set;
    struct kz_deflate_config dcfg;
    bool inflate; /* else deflate */
    bool trim;    /* trim after every message, as a server does */
    struct kz_deflater *d;
    double mbps[REPS];
    double median;
};

static volatile size_t sink;

/* One pass over the set; returns the bytes of text it handled. */
static size_t pass(struct bench *b)
{
    struct set *st = b->set;
    size_t acc = 0;
    if (!b->inflate) {
        for (size_t i = 0; i < st->count; i++) {
            const uint8_t *out;
            size_t n;
            if (kz_deflate_message(b->d, st->text + i * st->len, st->len, &out, &n) != KZ_OK)
                die("kz_deflate_message");
            acc += n + out[n - 1];
            if (b->trim)
                kz_deflater_trim(b->d);
        }
    } else {
        struct kz_inflate_config icfg = {b->dcfg.window_bits, b->dcfg.no_context_takeover,
                                         1u << 20};
        struct kz_inflater *inf = kz_inflater_new(&icfg, NULL);
        if (!inf)
            die("kz_inflater_new");
        for (size_t i = 0; i < st->count; i++) {
            const uint8_t *out;
            size_t n;
            if (kz_inflate_piece(inf, st->z + st->zoff[i], st->zlen[i], true, &out, &n) != KZ_OK ||
                n != st->len)
                die("kz_inflate_piece");
            acc += out[n - 1];
            if (b->trim)
                kz_inflater_trim(inf);
        }
        kz_inflater_free(inf);
    }
    sink += acc;
    return st->count * st->len;
}

/* Runs passes until MIN_NS have gone by; returns MB/s of text. */
static double measure(struct bench *b)
{
    uint64_t bytes = 0, start = now_ns(), elapsed;
    do {
        bytes += pass(b);
        elapsed = now_ns() - start;
    } while (elapsed < MIN_NS);
    return (double)bytes * 1e3 / (double)elapsed;
}

/* Checks that the compressed set inflates back to the text. */
static void verify(const struct set *st, const struct kz_deflate_config *cfg)
{
    struct kz_inflate_config icfg = {cfg->window_bits, cfg->no_context_takeover, 0};
    struct kz_inflater *inf = kz_inflater_new(&icfg, NULL);
    if (!inf)
        die("kz_inflater_new");
    for (size_t i = 0; i < st->count; i++) {
        const uint8_t *out;
        size_t n;
        if (kz_inflate_piece(inf, st->z + st->zoff[i], st->zlen[i], true, &out, &n) != KZ_OK ||
            n != st->len || memcmp(out, st->text + i * st->len, n) != 0)
            die("a message did not come back intact");
    }
    kz_inflater_free(inf);
}

/* ---- memory -------------------------------------------------------------- */

struct idle {
    const char *name;
    const char *what;
    struct kz_deflate_config cfg;
    size_t deflater, inflater;
};

static void measure_idle(struct idle *m, const struct set *st)
{
    struct kz_deflater *d = kz_deflater_new(&m->cfg, NULL);
    struct kz_inflate_config icfg = {m->cfg.window_bits, m->cfg.no_context_takeover, 1u << 20};
    struct kz_inflater *inf = kz_inflater_new(&icfg, NULL);
    if (!d || !inf)
        die("new");
    const uint8_t *z, *out;
    size_t zn, n;
    if (kz_deflate_message(d, st->text, st->len, &z, &zn) != KZ_OK ||
        kz_inflate_piece(inf, z, zn, true, &out, &n) != KZ_OK || n != st->len)
        die("round trip");
    kz_deflater_trim(d);
    kz_inflater_trim(inf);
    m->deflater = kz_deflater_memory(d);
    m->inflater = kz_inflater_memory(inf);
    kz_deflater_free(d);
    kz_inflater_free(inf);
}

int main(void)
{
    struct set s1k = {0}, s16k = {0};
    make_set(&s1k, 1024);
    make_set(&s16k, 16384);

    const struct kz_deflate_config ct15 = {15, 1, 8, false};
    const struct kz_deflate_config nct15 = {15, 1, 8, true};
    const struct kz_deflate_config ct9 = {9, 1, 1, false};

#define BENCH(name, what, set, cfg, inflate, trim)                                                 \
    {                                                                                              \
        name, what, set, cfg, inflate, trim, NULL, {0}, 0                                          \
    }
    struct bench benches[] = {
        BENCH("deflate_1k", "deflate 1 KiB, takeover w15", &s1k, ct15, false, false),
        BENCH("inflate_1k", "inflate 1 KiB, takeover w15", &s1k, ct15, true, false),
        BENCH("deflate_16k", "deflate 16 KiB, takeover w15", &s16k, ct15, false, false),
        BENCH("inflate_16k", "inflate 16 KiB, takeover w15", &s16k, ct15, true, false),
        BENCH("deflate_1k_nct_trim", "deflate 1 KiB, no takeover, trim", &s1k, nct15, false, true),
        BENCH("inflate_1k_nct_trim", "inflate 1 KiB, no takeover, trim", &s1k, nct15, true, true),
        BENCH("deflate_16k_nct_trim", "deflate 16 KiB, no takeover, trim", &s16k, nct15, false,
              true),
        BENCH("deflate_1k_w9", "deflate 1 KiB, takeover w9 mem1", &s1k, ct9, false, false),
        BENCH("inflate_1k_w9", "inflate 1 KiB, takeover w9 mem1", &s1k, ct9, true, false),
    };
#undef BENCH
    size_t nb = sizeof(benches) / sizeof(benches[0]);

    /* Compression ratios, from each configuration's own stream. */
    struct {
        const char *name;
        struct set *set;
        const struct kz_deflate_config *cfg;
        double ratio;
    } ratios[] = {
        {"ratio_1k_takeover", &s1k, &ct15, 0},     {"ratio_16k_takeover", &s16k, &ct15, 0},
        {"ratio_1k_no_takeover", &s1k, &nct15, 0}, {"ratio_16k_no_takeover", &s16k, &nct15, 0},
        {"ratio_1k_w9_mem1", &s1k, &ct9, 0},
    };
    size_t nr = sizeof(ratios) / sizeof(ratios[0]);
    for (size_t r = 0; r < nr; r++) {
        compress_set(ratios[r].set, ratios[r].cfg);
        verify(ratios[r].set, ratios[r].cfg);
        ratios[r].ratio = (double)set_compressed(ratios[r].set) / (double)PASS;
    }

    for (size_t i = 0; i < nb; i++) {
        struct bench *b = &benches[i];
        if (b->inflate)
            continue;
        b->d = kz_deflater_new(&b->dcfg, NULL);
        if (!b->d)
            die("kz_deflater_new");
    }
    for (int rep = 0; rep < REPS; rep++) {
        for (size_t i = 0; i < nb; i++) {
            struct bench *b = &benches[i];
            /* The stream this inflation reads is compressed with its configuration. */
            if (b->inflate)
                compress_set(b->set, &b->dcfg);
            b->mbps[rep] = measure(b);
        }
    }
    for (size_t i = 0; i < nb; i++) {
        qsort(benches[i].mbps, REPS, sizeof(double), cmp_double);
        benches[i].median = benches[i].mbps[REPS / 2];
        kz_deflater_free(benches[i].d);
    }

    struct idle idle[] = {
        {"idle_takeover_w15", "context takeover, window 15, mem_level 8", ct15, 0, 0},
        {"idle_takeover_w9_mem1", "context takeover, window 9, mem_level 1", ct9, 0, 0},
        {"idle_no_takeover", "no context takeover, after trim", nct15, 0, 0},
    };
    size_t ni = sizeof(idle) / sizeof(idle[0]);
    for (size_t i = 0; i < ni; i++)
        measure_idle(&idle[i], &s16k);

    printf("bench_deflate: zlib level 1, JSON-like text; median of %d rounds of >= %llu ms\n", REPS,
           MIN_NS / 1000000);
    printf("%-36s %10s %10s %10s\n", "benchmark", "MB/s", "min", "max");
    for (size_t i = 0; i < nb; i++)
        printf("%-36s %10.1f %10.1f %10.1f\n", benches[i].what, benches[i].median,
               benches[i].mbps[0], benches[i].mbps[REPS - 1]);
    printf("%-36s %10s\n", "compressed size / text size", "ratio");
    for (size_t r = 0; r < nr; r++)
        printf("%-36s %10.3f\n", ratios[r].name, ratios[r].ratio);
    printf("%-44s %10s %10s %10s\n", "idle connection, after trim", "deflater", "inflater", "both");
    for (size_t i = 0; i < ni; i++)
        printf("%-44s %10zu %10zu %10zu\n", idle[i].what, idle[i].deflater, idle[i].inflater,
               idle[i].deflater + idle[i].inflater);

    for (size_t i = 0; i < nb; i++)
        printf("bench: %s %.1f MB/s\n", benches[i].name, benches[i].median);
    for (size_t r = 0; r < nr; r++)
        printf("bench: %s %.3f ratio\n", ratios[r].name, ratios[r].ratio);
    for (size_t i = 0; i < ni; i++) {
        printf("bench: %s_deflater %zu bytes\n", idle[i].name, idle[i].deflater);
        printf("bench: %s_inflater %zu bytes\n", idle[i].name, idle[i].inflater);
    }
    fprintf(stderr, "bench_deflate: checksum %zu\n", (size_t)sink);
    free(s1k.text);
    free(s1k.z);
    free(s1k.zoff);
    free(s1k.zlen);
    free(s16k.text);
    free(s16k.z);
    free(s16k.zoff);
    free(s16k.zlen);
    return 0;
}
