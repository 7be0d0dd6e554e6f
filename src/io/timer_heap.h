/*
 * io/timer_heap.h — the loop's timers: a binary min-heap of pointers to
 * the callers' struct kz_timer, ordered by (deadline, seq). Each timer
 * keeps its heap position (plus one) in `index`, so stopping or moving a
 * timer anywhere in the heap is O(log n) with no search. The heap array is
 * the only allocation: it grows by doubling and never shrinks, so steady
 * state (timers restarted, started and stopped around a stable count)
 * allocates nothing.
 */
#ifndef KZ_IO_TIMER_HEAP_H
#define KZ_IO_TIMER_HEAP_H

#include "kaze/loop.h"

struct kz_timer_heap {
    struct kz_timer **items;
    uint32_t len;
    uint32_t cap;
    uint64_t next_seq; /* the start order given to the next scheduled timer */
};

/* An empty heap; allocates nothing. */
void kz_timer_heap_init(struct kz_timer_heap *h);

/*
 * Frees the array through `alloc`. Timers still in the heap are not
 * touched (they keep a stale index): the loop's owner stops them first.
 */
void kz_timer_heap_destroy(struct kz_timer_heap *h, const struct kz_allocator *alloc);

/*
 * Sets `t` to fire at `deadline`, after every timer already scheduled for
 * the same deadline: inserts it, or moves it if it is in the heap already.
 * `alloc` (non-NULL, with malloc and free; realloc optional) grows the
 * array. Returns KZ_OK or KZ_ERR_NOMEM, in which case `t` is untouched.
 * Moving never allocates.
 */
int kz_timer_heap_schedule(struct kz_timer_heap *h, const struct kz_allocator *alloc,
                           struct kz_timer *t, uint64_t deadline);

/* Takes `t` out of the heap; does nothing if it is not in it. */
void kz_timer_heap_remove(struct kz_timer_heap *h, struct kz_timer *t);

/* The timer that fires first, or NULL if the heap is empty. */
static inline struct kz_timer *kz_timer_heap_min(const struct kz_timer_heap *h)
{
    return h->len ? h->items[0] : NULL;
}

#endif
