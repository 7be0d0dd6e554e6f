/*
 * Binary min-heap of timer pointers (see io/timer_heap.h). Sifting moves a
 * hole instead of swapping, so each level costs one pointer store and one
 * index store.
 */
#include "io/timer_heap.h"

#include <string.h>

enum { HEAP_FIRST_CAP = 16 };

void kz_timer_heap_init(struct kz_timer_heap *h)
{
    memset(h, 0, sizeof(*h));
}

void kz_timer_heap_destroy(struct kz_timer_heap *h, const struct kz_allocator *alloc)
{
    if (h->items)
        alloc->free(h->items, alloc->ud);
    kz_timer_heap_init(h);
}

/* Equal deadlines fire in start order: seq only grows, 64 bits never wrap. */
static bool fires_before(const struct kz_timer *a, const struct kz_timer *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void place(struct kz_timer_heap *h, uint32_t i, struct kz_timer *t)
{
    h->items[i] = t;
    t->index = i + 1;
}

static void sift_up(struct kz_timer_heap *h, uint32_t i)
{
    struct kz_timer *t = h->items[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!fires_before(t, h->items[parent]))
            break;
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct kz_timer_heap *h, uint32_t i)
{
    struct kz_timer *t = h->items[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && fires_before(h->items[child + 1], h->items[child]))
            child++;
        if (!fires_before(h->items[child], t))
            break;
        place(h, i, h->items[child]);
        i = child;
    }
    place(h, i, t);
}

/* Restores the heap after the item at `i` changed its key in either direction. */
static void fix(struct kz_timer_heap *h, uint32_t i)
{
    if (i > 0 && fires_before(h->items[i], h->items[(i - 1) / 2]))
        sift_up(h, i);
    else
        sift_down(h, i);
}

static int grow(struct kz_timer_heap *h, const struct kz_allocator *alloc)
{
    if (h->cap > UINT32_MAX / 2)
        return KZ_ERR_NOMEM;
    uint32_t cap = h->cap ? h->cap * 2 : HEAP_FIRST_CAP;
    size_t size = (size_t)cap * sizeof(*h->items);
    struct kz_timer **items;
    if (alloc->realloc) {
        items = alloc->realloc(h->items, size, alloc->ud);
    } else {
        items = alloc->malloc(size, alloc->ud);
        if (items && h->items) {
            memcpy(items, h->items, (size_t)h->len * sizeof(*h->items));
            alloc->free(h->items, alloc->ud);
        }
    }
    if (!items)
        return KZ_ERR_NOMEM;
    h->items = items;
    h->cap = cap;
    return KZ_OK;
}

int kz_timer_heap_schedule(struct kz_timer_heap *h, const struct kz_allocator *alloc,
                           struct kz_timer *t, uint64_t deadline)
{
    if (t->index) {
        t->deadline = deadline;
        t->seq = h->next_seq++;
        fix(h, t->index - 1);
        return KZ_OK;
    }
    if (h->len == h->cap && grow(h, alloc) != KZ_OK)
        return KZ_ERR_NOMEM;
    t->deadline = deadline;
    t->seq = h->next_seq++;
    h->items[h->len] = t;
    h->len++;
    sift_up(h, h->len - 1);
    return KZ_OK;
}

void kz_timer_heap_remove(struct kz_timer_heap *h, struct kz_timer *t)
{
    if (!t->index)
        return;
    uint32_t i = t->index - 1;
    t->index = 0;
    struct kz_timer *last = h->items[--h->len];
    if (i == h->len)
        return;
    place(h, i, last);
    fix(h, i);
}
