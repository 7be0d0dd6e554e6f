/*
 * Shared helpers for the unit tests: buffers with a guard page after them
 * (a one-byte over-read faults even without ASan), an allocator that fails
 * on demand, and hex decoding for test vectors.
 */
#ifndef KZ_TEST_HELPERS_H
#define KZ_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>
#include "kaze/common.h"

/*
 * Copies `len` bytes into memory that ends exactly at an inaccessible page.
 * Free with kzt_guard_free(). Aborts if mmap fails.
 */
uint8_t *kzt_guard_copy(const void *data, size_t len);
void kzt_guard_free(uint8_t *p, size_t len);

/*
 * An allocator that counts allocations and fails the one numbered
 * `fail_at` (1-based; 0 never fails), and every later one if `fail_after`.
 * `live` counts allocations not yet freed, to prove no leak after a failure.
 */
struct kzt_failalloc {
    struct kz_allocator alloc;
    unsigned long count;
    unsigned long fail_at;
    bool fail_after;
    long live;
};
void kzt_failalloc_init(struct kzt_failalloc *fa, unsigned long fail_at);

/* Decodes hex ("81 05 48 65" with or without spaces) into out; returns length. */
size_t kzt_hex(const char *hex, uint8_t *out, size_t cap);

#endif
