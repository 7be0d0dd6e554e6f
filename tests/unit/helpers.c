#include "helpers.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static size_t guard_span(size_t len)
{
    size_t ps = page_size();
    return (len + ps - 1) / ps * ps + ps;
}

uint8_t *kzt_guard_copy(const void *data, size_t len)
{
    size_t span = guard_span(len);
    uint8_t *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        abort();
    size_t ps = page_size();
    if (mprotect(base + span - ps, ps, PROT_NONE) != 0)
        abort();
    uint8_t *p = base + span - ps - len;
    if (len)
        memcpy(p, data, len);
    return p;
}

void kzt_guard_free(uint8_t *p, size_t len)
{
    size_t span = guard_span(len);
    uint8_t *base = p + len + page_size() - span;
    munmap(base, span);
}

static bool should_fail(struct kzt_failalloc *fa)
{
    fa->count++;
    if (fa->fail_at == 0)
        return false;
    return fa->fail_after ? fa->count >= fa->fail_at : fa->count == fa->fail_at;
}

static void *fa_malloc(size_t size, void *ud)
{
    struct kzt_failalloc *fa = ud;
    if (should_fail(fa))
        return NULL;
    void *p = malloc(size);
    if (p)
        fa->live++;
    return p;
}

static void *fa_realloc(void *ptr, size_t size, void *ud)
{
    struct kzt_failalloc *fa = ud;
    if (should_fail(fa))
        return NULL;
    void *p = realloc(ptr, size);
    if (p && !ptr)
        fa->live++;
    return p;
}

static void fa_free(void *ptr, void *ud)
{
    struct kzt_failalloc *fa = ud;
    if (ptr)
        fa->live--;
    free(ptr);
}

void kzt_failalloc_init(struct kzt_failalloc *fa, unsigned long fail_at)
{
    memset(fa, 0, sizeof(*fa));
    fa->alloc.malloc = fa_malloc;
    fa->alloc.realloc = fa_realloc;
    fa->alloc.free = fa_free;
    fa->alloc.ud = fa;
    fa->fail_at = fail_at;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t kzt_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (*hex) {
        if (*hex == ' ') {
            hex++;
            continue;
        }
        int hi = hexval(hex[0]), lo = hex[1] ? hexval(hex[1]) : -1;
        if (hi < 0 || lo < 0 || n == cap)
            abort();
        out[n++] = (uint8_t)(hi << 4 | lo);
        hex += 2;
    }
    return n;
}
