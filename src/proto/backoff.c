/*
 * The reconnection schedule: exponential backoff with jitter. The random
 * value comes from the caller, so a test can replay any sequence.
 *
 * Out-of-range settings are clamped rather than refused, since a schedule
 * must always produce a delay: a factor below 1 (or NaN) counts as 1, a
 * jitter below 0 (or NaN) as 0 and above 1 as 1, and a cap below the
 * initial delay as the initial delay. Delays are rounded down to whole
 * milliseconds, but never to 0 unless the initial delay is 0.
 */
#include "kaze/client.h"

void kz_backoff_config_default(struct kz_backoff_config *cfg)
{
    if (cfg == NULL)
        return;
    cfg->initial_ms = 1000;
    cfg->max_ms = 30000;
    cfg->factor = 1.5;
    cfg->jitter = 0.5;
}

void kz_backoff_reset(struct kz_backoff *b)
{
    if (b == NULL)
        return;
    b->attempt = 0;
    b->base_ms = 0;
}

uint32_t kz_backoff_next(struct kz_backoff *b, const struct kz_backoff_config *cfg, uint32_t random)
{
    struct kz_backoff_config def;
    if (cfg == NULL) {
        kz_backoff_config_default(&def);
        cfg = &def;
    }
    double initial = cfg->initial_ms;
    double max = cfg->max_ms < cfg->initial_ms ? initial : (double)cfg->max_ms;
    /* Written so that NaN fails each test and falls to the safe side. */
    double factor = cfg->factor >= 1.0 ? cfg->factor : 1.0;
    double jitter = cfg->jitter > 0.0 ? cfg->jitter : 0.0;
    if (jitter > 1.0)
        jitter = 1.0;
    if (factor > max) /* also catches +inf: one step to the cap */
        factor = max > 1.0 ? max : 1.0;

    double base = initial;
    if (b != NULL && b->base_ms > initial)
        base = b->base_ms;
    if (base > max)
        base = max;

    double delay = base - jitter * base * ((double)random / 4294967296.0);
    uint32_t ms = (uint32_t)delay; /* 0 <= delay <= max <= UINT32_MAX */
    if (ms == 0 && base >= 1.0)
        ms = 1;

    if (b != NULL) {
        if (b->attempt != UINT32_MAX)
            b->attempt++;
        double next = base * factor;
        b->base_ms = next < max ? next : max;
    }
    return ms;
}
