/* The timer heap: order, ties, removal, moves, growth, against a reference. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "helpers.h"
#include "io/timer_heap.h"

/* Checks the heap property and that every timer knows its own position. */
static void check_heap(const struct kz_timer_heap *h)
{
    for (uint32_t i = 0; i < h->len; i++) {
        const struct kz_timer *t = h->items[i];
        assert_int_equal(t->index, i + 1);
        if (i == 0)
            continue;
        const struct kz_timer *p = h->items[(i - 1) / 2];
        bool ordered = p->deadline < t->deadline || (p->deadline == t->deadline && p->seq < t->seq);
        assert_true(ordered);
    }
}

static struct kz_timer *pop(struct kz_timer_heap *h)
{
    struct kz_timer *t = kz_timer_heap_min(h);
    if (t)
        kz_timer_heap_remove(h, t);
    return t;
}

static void pops_in_deadline_order(void **state)
{
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    const struct kz_allocator *a = &fa.alloc;
    static const uint64_t deadlines[] = {50, 10, 90, 30, 70, 20, 80, 40, 60, 0, 100};
    enum { N = sizeof(deadlines) / sizeof(deadlines[0]) };
    struct kz_timer t[N];
    memset(t, 0, sizeof(t));
    struct kz_timer_heap h;
    kz_timer_heap_init(&h);
    assert_null(kz_timer_heap_min(&h));
    for (int i = 0; i < N; i++) {
        assert_int_equal(kz_timer_heap_schedule(&h, a, &t[i], deadlines[i]), KZ_OK);
        check_heap(&h);
    }
    assert_int_equal(h.len, N);
    for (uint64_t want = 0; want <= 100; want += 10) {
        struct kz_timer *got = pop(&h);
        assert_non_null(got);
        assert_int_equal(got->deadline, want);
        assert_int_equal(got->index, 0);
        check_heap(&h);
    }
    assert_null(pop(&h));
    kz_timer_heap_destroy(&h, a);
    assert_int_equal(fa.live, 0);
}

static void equal_deadlines_pop_in_schedule_order(void **state)
{
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    const struct kz_allocator *a = &fa.alloc;
    enum { N = 40 };
    struct kz_timer t[N];
    memset(t, 0, sizeof(t));
    struct kz_timer_heap h;
    kz_timer_heap_init(&h);
    /* Interleave two deadlines so that ties are spread all over the heap. */
    for (int i = 0; i < N; i++)
        assert_int_equal(kz_timer_heap_schedule(&h, a, &t[i], i % 2 ? 7 : 5), KZ_OK);
    for (int i = 0; i < N; i += 2)
        assert_ptr_equal(pop(&h), &t[i]);
    for (int i = 1; i < N; i += 2)
        assert_ptr_equal(pop(&h), &t[i]);
    kz_timer_heap_destroy(&h, a);
    assert_int_equal(fa.live, 0);
}

static void remove_from_the_middle(void **state)
{
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    const struct kz_allocator *a = &fa.alloc;
    enum { N = 31 };
    struct kz_timer t[N];
    memset(t, 0, sizeof(t));
    struct kz_timer_heap h;
    kz_timer_heap_init(&h);
    for (int i = 0; i < N; i++)
        assert_int_equal(kz_timer_heap_schedule(&h, a, &t[i], (uint64_t)(N - i) * 3), KZ_OK);
    /* Remove every third timer wherever it sits, then the root, then a leaf. */
    for (int i = 0; i < N; i += 3) {
        kz_timer_heap_remove(&h, &t[i]);
        assert_int_equal(t[i].index, 0);
        check_heap(&h);
    }
    kz_timer_heap_remove(&h, kz_timer_heap_min(&h));
    kz_timer_heap_remove(&h, h.items[h.len - 1]);
    check_heap(&h);
    /* Removing a timer that is not in the heap changes nothing. */
    uint32_t len = h.len;
    kz_timer_heap_remove(&h, &t[0]);
    assert_int_equal(h.len, len);
    uint64_t last = 0;
    struct kz_timer *x;
    while ((x = pop(&h))) {
        assert_true(x->deadline >= last);
        assert_int_not_equal((x - t) % 3, 0);
        last = x->deadline;
    }
    kz_timer_heap_destroy(&h, a);
    assert_int_equal(fa.live, 0);
}

static void reschedule_moves_both_ways(void **state)
{
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    const struct kz_allocator *a = &fa.alloc;
    enum { N = 20 };
    struct kz_timer t[N];
    memset(t, 0, sizeof(t));
    struct kz_timer_heap h;
    kz_timer_heap_init(&h);
    for (int i = 0; i < N; i++)
        assert_int_equal(kz_timer_heap_schedule(&h, a, &t[i], 100 + (uint64_t)i), KZ_OK);
    /* Later: the first timer goes to the back. */
    assert_int_equal(kz_timer_heap_schedule(&h, a, &t[0], 1000), KZ_OK);
    check_heap(&h);
    assert_ptr_equal(kz_timer_heap_min(&h), &t[1]);
    /* Earlier: the last goes to the front. */
    assert_int_equal(kz_timer_heap_schedule(&h, a, &t[N - 1], 1), KZ_OK);
    check_heap(&h);
    assert_ptr_equal(kz_timer_heap_min(&h), &t[N - 1]);
    /* Same deadline as another: it now counts as scheduled after it. */
    assert_int_equal(kz_timer_heap_schedule(&h, a, &t[5], 106), KZ_OK);
    check_heap(&h);
    assert_int_equal(h.len, N);
    struct kz_timer *order[N];
    for (int i = 0; i < N; i++)
        order[i] = pop(&h);
    assert_ptr_equal(order[0], &t[N - 1]);
    assert_ptr_equal(order[N - 1], &t[0]);
    /* 101..104 are t[1..4], then 106 twice: t[6] before the moved t[5]. */
    assert_ptr_equal(order[5], &t[6]);
    assert_ptr_equal(order[6], &t[5]);
    kz_timer_heap_destroy(&h, a);
    assert_int_equal(fa.live, 0);
}

/* A reference: timers kept sorted by (deadline, seq) in a plain array. */
struct ref {
    struct kz_timer *items[256];
    int len;
};

static bool ref_before(const struct kz_timer *x, const struct kz_timer *y)
{
    return x->deadline < y->deadline || (x->deadline == y->deadline && x->seq < y->seq);
}

static void ref_remove(struct ref *r, struct kz_timer *t)
{
    for (int i = 0; i < r->len; i++) {
        if (r->items[i] == t) {
            memmove(&r->items[i], &r->items[i + 1], (size_t)(r->len - i - 1) * sizeof(t));
            r->len--;
            return;
        }
    }
}

static void ref_insert(struct ref *r, struct kz_timer *t)
{
    int i = r->len;
    while (i > 0 && ref_before(t, r->items[i - 1])) {
        r->items[i] = r->items[i - 1];
        i--;
    }
    r->items[i] = t;
    r->len++;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void random_operations_match_reference(void **state)
{
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    const struct kz_allocator *a = &fa.alloc;
    enum { POOL = 200, OPS = 20000 };
    static struct kz_timer t[POOL];
    memset(t, 0, sizeof(t));
    static struct ref r;
    r.len = 0;
    struct kz_timer_heap h;
    kz_timer_heap_init(&h);
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (int op = 0; op < OPS; op++) {
        struct kz_timer *x = &t[xorshift(&seed) % POOL];
        /* Few distinct deadlines, so that ties are common. */
        uint64_t deadline = xorshift(&seed) % 50;
        switch (xorshift(&seed) % 4) {
        case 0:
        case 1:
            ref_remove(&r, x);
            assert_int_equal(kz_timer_heap_schedule(&h, a, x, deadline), KZ_OK);
            ref_insert(&r, x);
            break;
        case 2:
            kz_timer_heap_remove(&h, x);
            ref_remove(&r, x);
            break;
        default: {
            struct kz_timer *m = pop(&h);
            if (r.len == 0) {
                assert_null(m);
            } else {
                assert_ptr_equal(m, r.items[0]);
                ref_remove(&r, m);
            }
        }
        }
        assert_int_equal(h.len, r.len);
        assert_ptr_equal(kz_timer_heap_min(&h), r.len ? r.items[0] : NULL);
        if (op % 97 == 0)
            check_heap(&h);
    }
    check_heap(&h);
    while (r.len) {
        assert_ptr_equal(pop(&h), r.items[0]);
        ref_remove(&r, r.items[0]);
    }
    assert_int_equal(h.len, 0);
    kz_timer_heap_destroy(&h, a);
    assert_int_equal(fa.live, 0);
}

static void grows_and_fails_cleanly(void **state)
{
    enum { N = 1000 };
    struct kz_timer *t = calloc(N + 1, sizeof(*t));
    assert_non_null(t);
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    struct kz_timer_heap h;
    kz_timer_heap_init(&h);
    for (int i = 0; i < N; i++)
        assert_int_equal(kz_timer_heap_schedule(&h, &fa.alloc, &t[i], (uint64_t)(i * 7919 % N)),
                         KZ_OK);
    check_heap(&h);
    assert_int_equal(h.len, N);
    assert_true(h.cap >= N);
    /* Fill to capacity, then make the next growth fail. */
    static struct kz_timer extra[1024];
    memset(extra, 0, sizeof(extra));
    uint32_t filled = 0;
    while (h.len < h.cap)
        assert_int_equal(kz_timer_heap_schedule(&h, &fa.alloc, &extra[filled++], 5), KZ_OK);
    fa.fail_at = fa.count + 1;
    t[N].deadline = 77;
    assert_int_equal(kz_timer_heap_schedule(&h, &fa.alloc, &t[N], 3), KZ_ERR_NOMEM);
    assert_int_equal(t[N].index, 0);
    assert_int_equal(t[N].deadline, 77);
    check_heap(&h);
    /* A move needs no memory, even now. */
    assert_int_equal(kz_timer_heap_schedule(&h, &fa.alloc, &t[3], 0), KZ_OK);
    check_heap(&h);
    kz_timer_heap_destroy(&h, &fa.alloc);
    assert_int_equal(fa.live, 0);
    free(t);
}

/* An allocator without realloc: the heap grows by malloc, copy and free. */
static void grows_without_realloc(void **state)
{
    struct kzt_failalloc fa;
    kzt_failalloc_init(&fa, 0);
    fa.alloc.realloc = NULL;
    enum { N = 100 };
    struct kz_timer t[N];
    memset(t, 0, sizeof(t));
    struct kz_timer_heap h;
    kz_timer_heap_init(&h);
    for (int i = 0; i < N; i++)
        assert_int_equal(kz_timer_heap_schedule(&h, &fa.alloc, &t[i], (uint64_t)(N - i)), KZ_OK);
    assert_true(fa.count >= 3); /* 16 -> 32 -> 64 -> 128 */
    for (int i = N - 1; i >= 0; i--)
        assert_ptr_equal(pop(&h), &t[i]);
    kz_timer_heap_destroy(&h, &fa.alloc);
    assert_int_equal(fa.live, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pops_in_deadline_order),
        cmocka_unit_test(equal_deadlines_pop_in_schedule_order),
        cmocka_unit_test(remove_from_the_middle),
        cmocka_unit_test(reschedule_moves_both_ways),
        cmocka_unit_test(random_operations_match_reference),
        cmocka_unit_test(grows_and_fails_cleanly),
        cmocka_unit_test(grows_without_realloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
