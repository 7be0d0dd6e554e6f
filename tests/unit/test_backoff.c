/* The reconnection schedule, replayed with fixed random values. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "kaze/client.h"

#define RMAX UINT32_MAX

static void defaults(void **state)
{
    struct kz_backoff_config cfg;
    memset(&cfg, 0xff, sizeof(cfg));
    kz_backoff_config_default(&cfg);
    assert_int_equal(cfg.initial_ms, 1000);
    assert_int_equal(cfg.max_ms, 30000);
    assert_true(cfg.factor == 1.5);
    assert_true(cfg.jitter == 0.5);
    kz_backoff_config_default(NULL); /* harmless */
}

/* Random 0 draws the top of the interval: the base itself. */
static void schedule_at_random_zero(void **state)
{
    static const uint32_t want[] = {1000,  1500,  2250,  3375,  5062,  7593,
                                    11390, 17085, 25628, 30000, 30000, 30000};
    struct kz_backoff_config cfg;
    kz_backoff_config_default(&cfg);
    struct kz_backoff b = {0};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(kz_backoff_next(&b, &cfg, 0), want[i]);
        assert_int_equal(b.attempt, i + 1);
    }
    assert_true(b.base_ms == 30000.0);
}

/* 2^32 − 1 draws the bottom: base·(1 − jitter), rounded down. */
static void schedule_at_random_max(void **state)
{
    static const uint32_t want[] = {500,  750,  1125,  1687,  2531, 3796,
                                    5695, 8542, 12814, 15000, 15000};
    struct kz_backoff_config cfg;
    kz_backoff_config_default(&cfg);
    struct kz_backoff b = {0};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_int_equal(kz_backoff_next(&b, &cfg, RMAX), want[i]);
}

static void schedule_mixed_sequence(void **state)
{
    /* Each draw uses its own attempt's base: 1000, 1500, 2250, 3375. */
    static const uint32_t rnd[] = {0x80000000u, 0x40000000u, 0, 0xC0000000u};
    static const uint32_t want[] = {750, 1312, 2250, 2109};
    struct kz_backoff_config cfg;
    kz_backoff_config_default(&cfg);
    struct kz_backoff b = {0};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(kz_backoff_next(&b, &cfg, rnd[i]), want[i]);
}

static void jitter_zero_gives_bases(void **state)
{
    struct kz_backoff_config cfg = {.initial_ms = 100, .max_ms = 1000, .factor = 2.0, .jitter = 0};
    static const uint32_t want[] = {100, 200, 400, 800, 1000, 1000};
    static const uint32_t rnd[] = {0, RMAX, 12345, 0x80000000u, RMAX, 7};
    struct kz_backoff b = {0};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(kz_backoff_next(&b, &cfg, rnd[i]), want[i]);
}

static void cap_and_reset(void **state)
{
    struct kz_backoff_config cfg = {.initial_ms = 1000, .max_ms = 4000, .factor = 3, .jitter = 0};
    struct kz_backoff b = {0};
    assert_int_equal(kz_backoff_next(&b, &cfg, 0), 1000);
    assert_int_equal(kz_backoff_next(&b, &cfg, 0), 3000);
    assert_int_equal(kz_backoff_next(&b, &cfg, 0), 4000);
    assert_int_equal(kz_backoff_next(&b, &cfg, 0), 4000);
    assert_int_equal(b.attempt, 4);
    kz_backoff_reset(&b);
    assert_int_equal(b.attempt, 0);
    assert_true(b.base_ms == 0);
    assert_int_equal(kz_backoff_next(&b, &cfg, 0), 1000);
    assert_int_equal(kz_backoff_next(&b, &cfg, 0), 3000);
    kz_backoff_reset(NULL); /* harmless */

    /* A cap below the initial delay counts as the initial delay. */
    struct kz_backoff_config low = {.initial_ms = 500, .max_ms = 100, .factor = 2, .jitter = 0};
    struct kz_backoff c = {0};
    assert_int_equal(kz_backoff_next(&c, &low, 0), 500);
    assert_int_equal(kz_backoff_next(&c, &low, 0), 500);

    /* Near the top of uint32_t nothing wraps. */
    struct kz_backoff_config big = {
        .initial_ms = 0x80000000u, .max_ms = UINT32_MAX, .factor = 10, .jitter = 0};
    struct kz_backoff d = {0};
    assert_int_equal(kz_backoff_next(&d, &big, 0), 0x80000000u);
    assert_int_equal(kz_backoff_next(&d, &big, 0), UINT32_MAX);
    assert_int_equal(kz_backoff_next(&d, &big, 0), UINT32_MAX);
}

static void clamped_settings(void **state)
{
    struct kz_backoff b = {0};
    /* factor < 1, or NaN, counts as 1: the delay does not shrink. */
    struct kz_backoff_config shrink = {.initial_ms = 1000, .max_ms = 30000, .factor = 0.5};
    for (int i = 0; i < 5; i++)
        assert_int_equal(kz_backoff_next(&b, &shrink, 0), 1000);
    kz_backoff_reset(&b);
    shrink.factor = NAN;
    for (int i = 0; i < 3; i++)
        assert_int_equal(kz_backoff_next(&b, &shrink, 0), 1000);

    /* jitter > 1 counts as 1: down to 0 before rounding, but never 0. */
    struct kz_backoff_config wide = {
        .initial_ms = 1000, .max_ms = 30000, .factor = 1.5, .jitter = 7};
    kz_backoff_reset(&b);
    assert_int_equal(kz_backoff_next(&b, &wide, RMAX), 1);
    kz_backoff_reset(&b);
    assert_int_equal(kz_backoff_next(&b, &wide, 0x80000000u), 500);

    /* jitter < 0, or NaN, counts as 0. */
    struct kz_backoff_config neg = {
        .initial_ms = 1000, .max_ms = 30000, .factor = 1.5, .jitter = -0.5};
    kz_backoff_reset(&b);
    assert_int_equal(kz_backoff_next(&b, &neg, RMAX), 1000);
    neg.jitter = NAN;
    kz_backoff_reset(&b);
    assert_int_equal(kz_backoff_next(&b, &neg, RMAX), 1000);

    /* An infinite factor goes to the cap in one step. */
    struct kz_backoff_config inf = {.initial_ms = 10, .max_ms = 5000, .factor = INFINITY};
    kz_backoff_reset(&b);
    assert_int_equal(kz_backoff_next(&b, &inf, 0), 10);
    assert_int_equal(kz_backoff_next(&b, &inf, 0), 5000);
}

static void zero_initial(void **state)
{
    struct kz_backoff_config cfg = {.initial_ms = 0, .max_ms = 30000, .factor = 2, .jitter = 0.5};
    struct kz_backoff b = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(kz_backoff_next(&b, &cfg, i == 0 ? 0 : RMAX), 0);
    /* With initial 1 the smallest delay is still 1. */
    cfg.initial_ms = 1;
    cfg.jitter = 1;
    kz_backoff_reset(&b);
    assert_int_equal(kz_backoff_next(&b, &cfg, RMAX), 1);
}

static void null_arguments(void **state)
{
    /* No config: the defaults. No state: a first attempt, nothing stored. */
    struct kz_backoff b = {0};
    assert_int_equal(kz_backoff_next(&b, NULL, 0), 1000);
    assert_int_equal(kz_backoff_next(&b, NULL, 0), 1500);
    struct kz_backoff_config cfg;
    kz_backoff_config_default(&cfg);
    assert_int_equal(kz_backoff_next(NULL, &cfg, RMAX), 500);
    assert_int_equal(kz_backoff_next(NULL, &cfg, RMAX), 500);
}

/*
 * A fleet of 1000 clients that failed together, each with its own random
 * value, spreads its retries over the whole interval instead of coming back
 * at one instant.
 */
static void fleet_spreads(void **state)
{
    struct kz_backoff_config cfg;
    kz_backoff_config_default(&cfg);
    for (int attempt = 0; attempt < 3; attempt++) {
        uint32_t base = attempt == 0 ? 1000 : attempt == 1 ? 1500 : 2250;
        unsigned bins[10] = {0};
        unsigned same[3001] = {0};
        uint32_t lcg = 12345u + (uint32_t)attempt;
        uint32_t lo = UINT32_MAX, hi = 0;
        for (int c = 0; c < 1000; c++) {
            struct kz_backoff b = {0};
            for (int k = 0; k < attempt; k++)
                kz_backoff_next(&b, &cfg, 0);
            lcg = lcg * 1664525u + 1013904223u;
            uint32_t d = kz_backoff_next(&b, &cfg, lcg);
            assert_true(d >= base / 2 && d <= base);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
            unsigned bin = (d - base / 2) * 10 / (base / 2 + 1);
            bins[bin]++;
            same[d]++;
        }
        /* The ends of the interval are reached, ... */
        assert_true(lo < base / 2 + base / 50);
        assert_true(hi > base - base / 50);
        /* ... every tenth of it gets a fair share, ... */
        for (int i = 0; i < 10; i++) {
            if (bins[i] < 60 || bins[i] > 140)
                fail_msg("attempt %d bin %d has %u clients", attempt, i, bins[i]);
        }
        /* ... and no millisecond draws a crowd. */
        for (unsigned i = 0; i <= 3000; i++)
            assert_true(same[i] <= 10);
    }

    /*
     * Evenly spaced random values c·2^32/1000 give 1000 − c/2, rounded
     * down: every 50 ms of [500, 1000] holds 100 clients, the last one
     * also 1000 itself and the first one not 500.5 − ε.
     */
    unsigned bins[10] = {0};
    for (uint32_t c = 0; c < 1000; c++) {
        uint32_t r = (uint32_t)(((uint64_t)c << 32) / 1000);
        uint32_t d = kz_backoff_next(NULL, &cfg, r);
        assert_int_equal(d, 1000 - (c + 1) / 2);
        bins[d >= 950 ? 9 : (d - 500) / 50]++;
    }
    assert_int_equal(bins[0], 99);
    for (int i = 1; i < 9; i++)
        assert_int_equal(bins[i], 100);
    assert_int_equal(bins[9], 101);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(schedule_at_random_zero),
        cmocka_unit_test(schedule_at_random_max),
        cmocka_unit_test(schedule_mixed_sequence),
        cmocka_unit_test(jitter_zero_gives_bases),
        cmocka_unit_test(cap_and_reset),
        cmocka_unit_test(clamped_settings),
        cmocka_unit_test(zero_initial),
        cmocka_unit_test(null_arguments),
        cmocka_unit_test(fleet_spreads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
