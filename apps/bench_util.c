/* kaze bench: histogram, mask-key seed, clocks and the /proc readers. */
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
