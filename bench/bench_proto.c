/*
 * bench_proto: throughput of unmasking and UTF-8 validation on buffers that
 * stay in cache, next to memcpy of the same buffer as the yardstick.
 *
 * Each measurement is a loop over the same buffer that runs for at least
 * MIN_NS; the benchmarks take turns, REPS rounds in all, and each reports
 * the median of its rounds, so that a burst of noise or a frequency change
 * hits every benchmark alike. Output: a table, then `bench: NAME VALUE UNIT`
 * lines for scripts.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kaze/frame.h"
#include "kaze/utf8.h"
#include "proto/utf8_internal.h"
#include "../tests/support/utf8_encode.h"

#define REPS   9
#define MIN_NS 50000000ull
#define MAXLEN (64 * 1024)

/* Makes the compiler assume `p`'s memory is read and changed here, so no work is dropped. */
static inline void clobber(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct bench {
    const char *name; /* for the bench: lines, e.g. "unmask_16k" */
    const char *what; /* for the table */
    size_t len;
    /* One pass over the buffer; returns something that depends on the work. */
    size_t (*run)(size_t len);
    double gbps[REPS];
    double median;
};

static uint8_t *src_buf, *dst_buf, *ascii_buf, *multi_buf;
static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

static size_t run_memcpy(size_t len)
{
    memcpy(dst_buf, src_buf, len);
    clobber(dst_buf);
    return dst_buf[len - 1];
}

static size_t run_unmask(size_t len)
{
    size_t r = kz_mask(dst_buf, len, key, 0);
    clobber(dst_buf);
    return r;
}

#if KZ_HAVE_SSE2
static size_t run_unmask_sse2(size_t len)
{
    size_t r = kz__mask_copy_sse2(dst_buf, dst_buf, len, key, 0);
    clobber(dst_buf);
    return r;
}
#else
#define run_unmask_sse2 NULL
#endif

static size_t run_unmask_word(size_t len)
{
    size_t r = kz__mask_copy_word(dst_buf, dst_buf, len, key, 0);
    clobber(dst_buf);
    return r;
}

static size_t run_utf8_ascii(size_t len)
{
    clobber(ascii_buf);
    return kz_utf8_valid(ascii_buf, len);
}

static size_t run_utf8_multi(size_t len)
{
    clobber(multi_buf);
    return kz_utf8_valid(multi_buf, len);
}

static size_t run_utf8_multi_feed(size_t len)
{
    clobber(multi_buf);
    kz_utf8_state st = KZ_UTF8_ACCEPT;
    return kz_utf8_feed(&st, multi_buf, len) == KZ_OK && st == KZ_UTF8_ACCEPT;
}

static size_t run_utf8_ascii_scalar(size_t len)
{
    clobber(ascii_buf);
    kz_utf8_state st = KZ_UTF8_ACCEPT;
    return kz__utf8_feed_scalar(&st, ascii_buf, len) == KZ_OK && st == KZ_UTF8_ACCEPT;
}

static size_t run_utf8_multi_scalar(size_t len)
{
    clobber(multi_buf);
    kz_utf8_state st = KZ_UTF8_ACCEPT;
    return kz__utf8_feed_scalar(&st, multi_buf, len) == KZ_OK && st == KZ_UTF8_ACCEPT;
}

/* Runs passes until MIN_NS have gone by; returns GB/s. */
static double measure(struct bench *b, size_t *sink)
{
    uint64_t passes = 0, start = now_ns(), elapsed;
    do {
        for (int i = 0; i < 16; i++)
            *sink += b->run(b->len);
        passes += 16;
        elapsed = now_ns() - start;
    } while (elapsed < MIN_NS);
    return (double)passes * (double)b->len / (double)elapsed;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/*
 * Words of 2..8 letters separated by spaces and the odd punctuation: Greek
 * and Cyrillic (2 bytes), CJK (3 bytes), emoji (4 bytes), from a fixed
 * seed; padded with spaces to exactly `len` bytes.
 */
static void make_multibyte(uint8_t *out, size_t len)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    size_t i = 0;
    while (i + 4 * 8 + 2 <= len) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        unsigned pick = (unsigned)(x >> 33) % 10, letters = 2 + (unsigned)(x >> 45) % 7;
        for (unsigned k = 0; k < letters; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            unsigned r = (unsigned)(x >> 35);
            uint32_t cp = pick < 3   ? 0x3B1 + r % 25     /* Greek */
                          : pick < 6 ? 0x430 + r % 32     /* Cyrillic */
                          : pick < 9 ? 0x4E00 + r % 20000 /* CJK */
                                     : 0x1F600 + r % 80;  /* emoji */
            i += kzt_utf8_encode(cp, out + i);
        }
        out[i++] = (x >> 60) == 0 ? ',' : ' ';
    }
    memset(out + i, ' ', len - i);
}

int main(void)
{
    src_buf = aligned_alloc(64, MAXLEN);
    dst_buf = aligned_alloc(64, MAXLEN);
    ascii_buf = aligned_alloc(64, MAXLEN);
    multi_buf = aligned_alloc(64, MAXLEN);
    if (!src_buf || !dst_buf || !ascii_buf || !multi_buf)
        return 1;
    for (size_t i = 0; i < MAXLEN; i++) {
        src_buf[i] = (uint8_t)(i * 131 + 7);
        ascii_buf[i] = (uint8_t)(' ' + i * 7 % 95);
    }
    memcpy(dst_buf, src_buf, MAXLEN);
    make_multibyte(multi_buf, MAXLEN);
    if (!kz_utf8_valid(ascii_buf, MAXLEN) || !kz_utf8_valid(multi_buf, MAXLEN)) {
        fprintf(stderr, "bench_proto: the generated text is not valid UTF-8\n");
        return 1;
    }

    struct bench benches[] = {
        {"memcpy_16k", "memcpy", 16384, run_memcpy, {0}, 0},
        {"unmask_16k", "kz_mask (dispatch)", 16384, run_unmask, {0}, 0},
        {"unmask_sse2_16k", "kz_mask, SSE2 path", 16384, run_unmask_sse2, {0}, 0},
        {"unmask_word_16k", "kz_mask, word path", 16384, run_unmask_word, {0}, 0},
        {"utf8_ascii_16k", "kz_utf8_valid ASCII", 16384, run_utf8_ascii, {0}, 0},
        {"utf8_ascii_scalar_16k", "UTF-8 ASCII, scalar path", 16384, run_utf8_ascii_scalar, {0}, 0},
        {"utf8_multibyte_16k", "kz_utf8_valid multi-byte", 16384, run_utf8_multi, {0}, 0},
        {"utf8_multibyte_feed_16k", "kz_utf8_feed multi-byte", 16384, run_utf8_multi_feed, {0}, 0},
        {"utf8_multibyte_scalar_16k",
         "UTF-8 multi-byte, scalar",
         16384,
         run_utf8_multi_scalar,
         {0},
         0},
        {"memcpy_64k", "memcpy", 65536, run_memcpy, {0}, 0},
        {"unmask_64k", "kz_mask (dispatch)", 65536, run_unmask, {0}, 0},
        {"utf8_ascii_64k", "kz_utf8_valid ASCII", 65536, run_utf8_ascii, {0}, 0},
        {"utf8_multibyte_64k", "kz_utf8_valid multi-byte", 65536, run_utf8_multi, {0}, 0},
    };
    size_t nb = sizeof benches / sizeof benches[0];
    size_t sink = 0;

    size_t kept = 0;
    for (size_t i = 0; i < nb; i++)
        if (benches[i].run) /* NULL: a path this architecture does not have */
            benches[kept++] = benches[i];
    nb = kept;
    for (int rep = 0; rep < REPS; rep++)
        for (size_t i = 0; i < nb; i++)
            benches[i].gbps[rep] = measure(&benches[i], &sink);
    for (size_t i = 0; i < nb; i++) {
        qsort(benches[i].gbps, REPS, sizeof(double), cmp_double);
        benches[i].median = benches[i].gbps[REPS / 2];
    }

    printf("bench_proto: median of %d rounds of >= %llu ms each; AVX2 %s\n", REPS, MIN_NS / 1000000,
           kz__cpu_has_avx2() ? "used" : "not available");
    printf("%-28s %8s %10s %10s %10s\n", "benchmark", "buffer", "GB/s", "min", "max");
    for (size_t i = 0; i < nb; i++)
        printf("%-28s %7zuk %10.2f %10.2f %10.2f\n", benches[i].what, benches[i].len / 1024,
               benches[i].median, benches[i].gbps[0], benches[i].gbps[REPS - 1]);
    size_t high = 0;
    for (size_t i = 0; i < 16384; i++)
        high += multi_buf[i] >= 0x80;
    printf("(multi-byte text: %.0f%% of its bytes outside ASCII)\n", 100.0 * (double)high / 16384);

    for (size_t i = 0; i < nb; i++)
        printf("bench: %s %.2f GB/s\n", benches[i].name, benches[i].median);
    static const char *const ratios[][2] = {
        {"unmask_vs_memcpy", "unmask_16k"},
        {"utf8_ascii_vs_memcpy", "utf8_ascii_16k"},
        {"utf8_multibyte_vs_memcpy", "utf8_multibyte_16k"},
    };
    for (size_t r = 0; r < sizeof ratios / sizeof ratios[0]; r++)
        for (size_t i = 0; i < nb; i++)
            if (strcmp(benches[i].name, ratios[r][1]) == 0)
                printf("bench: %s %.3f ratio\n", ratios[r][0],
                       benches[i].median / benches[0].median);
    /* Printed so that the work above has a visible effect. */
    fprintf(stderr, "bench_proto: checksum %zu\n", sink);
    free(src_buf);
    free(dst_buf);
    free(ascii_buf);
    free(multi_buf);
    return 0;
}
