/*
 * Frame parser throughput on what a busy server mostly receives: small
 * masked binary frames from clients (32-byte payloads, 38 bytes on the
 * wire). One buffer holds many frames; each pass parses all of it. Parsing
 * unmasks in place, so the masked bytes are copied back before each pass,
 * outside the timed region. A repetition times passes until at least 50 ms
 * of parsing have accumulated; the figure is the median of 9 repetitions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kaze/frame.h"

#define PAYLOAD     32
#define FRAME_SIZE  (2 + 4 + PAYLOAD)
#define FRAMES      16384 /* about 620 KB: a few receive buffers' worth */
#define REPS        9
#define MIN_SECONDS 0.05

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Frame i carries bytes (i + j) & 0xff, masked with a key derived from i. */
static void build(uint8_t *wire)
{
    for (size_t i = 0; i < FRAMES; i++) {
        uint8_t *f = wire + i * FRAME_SIZE;
        uint8_t key[4] = {(uint8_t)i, (uint8_t)(i >> 8), 0x5a, 0xc3};
        uint8_t plain[PAYLOAD];
        for (size_t j = 0; j < PAYLOAD; j++)
            plain[j] = (uint8_t)(i + j);
        size_t n = kz_frame_write_header(f, KZ_OP_BINARY, true, 0, PAYLOAD, key);
        if (n != 6)
            abort();
        kz_mask_copy(f + n, plain, PAYLOAD, key, 0);
    }
}

static volatile size_t sink;

/* Parses the whole buffer; returns the number of events. */
static size_t parse_all(struct kz_parser *p, uint8_t *buf, size_t len, enum kz_event_type want)
{
    size_t pos = 0, events = 0, bytes = 0;
    while (pos < len) {
        struct kz_event ev;
        ptrdiff_t n = kz_parser_parse(p, buf + pos, len - pos, &ev);
        if (n <= 0 || ev.type != want) {
            fprintf(stderr, "bench_frames: parse failed (%td, event %d)\n", n, ev.type);
            exit(1);
        }
        pos += (size_t)n;
        bytes += ev.len + ev.data[0];
        events++;
    }
    sink += bytes;
    return events;
}

/* Checks one pass against the plain text before timing anything. */
static void verify(struct kz_parser *p, uint8_t *buf, size_t len)
{
    size_t pos = 0;
    for (size_t i = 0; i < FRAMES; i++) {
        struct kz_event ev;
        ptrdiff_t n = kz_parser_parse(p, buf + pos, len - pos, &ev);
        if (n != FRAME_SIZE || ev.len != PAYLOAD) {
            fprintf(stderr, "bench_frames: frame %zu not parsed whole\n", i);
            exit(1);
        }
        for (size_t j = 0; j < PAYLOAD; j++) {
            if (ev.data[j] != (uint8_t)(i + j)) {
                fprintf(stderr, "bench_frames: frame %zu byte %zu wrong\n", i, j);
                exit(1);
            }
        }
        pos += (size_t)n;
    }
}

static double run(enum kz_parse_mode mode, const uint8_t *pristine, uint8_t *work, size_t len)
{
    struct kz_parser_config cfg;
    kz_parser_config_default(&cfg, KZ_ROLE_SERVER);
    cfg.mode = mode;
    struct kz_parser *p = kz_parser_new(&cfg, NULL);
    if (!p)
        abort();
    enum kz_event_type want = mode == KZ_PARSE_FRAMES ? KZ_EV_DATA : KZ_EV_MESSAGE;
    memcpy(work, pristine, len);
    verify(p, work, len);

    double rate[REPS];
    for (int r = 0; r < REPS; r++) {
        double spent = 0;
        size_t frames = 0;
        while (spent < MIN_SECONDS) {
            memcpy(work, pristine, len);
            double t0 = now();
            frames += parse_all(p, work, len, want);
            spent += now() - t0;
        }
        rate[r] = (double)frames / spent;
    }
    kz_parser_free(p);
    qsort(rate, REPS, sizeof(rate[0]), cmp_double);
    printf("%-9s min %.3g  median %.3g  max %.3g frames/s  (%.1f ns/frame, %.2f GB/s of wire)\n",
           mode == KZ_PARSE_FRAMES ? "frames" : "messages", rate[0], rate[REPS / 2], rate[REPS - 1],
           1e9 / rate[REPS / 2], rate[REPS / 2] * FRAME_SIZE / 1e9);
    return rate[REPS / 2];
}

int main(void)
{
    size_t len = (size_t)FRAMES * FRAME_SIZE;
    uint8_t *pristine = malloc(len), *work = malloc(len);
    if (!pristine || !work)
        return 1;
    build(pristine);
    printf("parse %d masked binary frames of %d bytes per pass, server role, median of %d\n",
           FRAMES, PAYLOAD, REPS);
    double frames = run(KZ_PARSE_FRAMES, pristine, work, len);
    double messages = run(KZ_PARSE_MESSAGES, pristine, work, len);
    printf("bench: parse_small_frames %.0f frames/s\n", frames);
    printf("bench: parse_small_messages %.0f frames/s\n", messages);
    free(pristine);
    free(work);
    return 0;
}
