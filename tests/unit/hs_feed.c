/* Feeding heads to the handshake parsers every way: see hs_feed.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "helpers.h"
#include "hs_feed.h"

static int parse_once(struct parsed *p, const uint8_t *buf, size_t len, size_t prev_len,
                      size_t max_headers, size_t max_size)
{
    if (p->response) {
        p->resp.headers = p->headers;
        p->resp.max_headers = max_headers;
        return kz_hs_parse_response((const char *)buf, len, prev_len, max_size, &p->resp);
    }
    p->req.headers = p->headers;
    p->req.max_headers = max_headers;
    return kz_hs_parse_request((const char *)buf, len, prev_len, max_size, &p->req);
}

/* Spans of two parses of the same text agree if they sit at the same offsets. */
static void same_str(struct kz_str a, const uint8_t *abase, struct kz_str b, const uint8_t *bbase)
{
    assert_int_equal(a.len, b.len);
    assert_int_equal(a.ptr == NULL, b.ptr == NULL);
    if (a.ptr != NULL)
        assert_int_equal(a.ptr - (const char *)abase, b.ptr - (const char *)bbase);
}

static void same_result(const struct parsed *a, const uint8_t *abase, const struct parsed *b,
                        const uint8_t *bbase)
{
    size_t n;
    if (a->response) {
        assert_int_equal(a->resp.status, b->resp.status);
        assert_int_equal(a->resp.http_minor, b->resp.http_minor);
        same_str(a->resp.reason, abase, b->resp.reason, bbase);
        n = a->resp.num_headers;
        assert_int_equal(n, b->resp.num_headers);
    } else {
        const struct kz_hs_request *x = &a->req, *y = &b->req;
        same_str(x->method, abase, y->method, bbase);
        same_str(x->target, abase, y->target, bbase);
        same_str(x->path, abase, y->path, bbase);
        same_str(x->query, abase, y->query, bbase);
        same_str(x->host, abase, y->host, bbase);
        same_str(x->origin, abase, y->origin, bbase);
        same_str(x->key, abase, y->key, bbase);
        same_str(x->version, abase, y->version, bbase);
        same_str(x->cookie, abase, y->cookie, bbase);
        same_str(x->authorization, abase, y->authorization, bbase);
        assert_int_equal(x->http_minor, y->http_minor);
        assert_int_equal(x->dup_mask, y->dup_mask);
        n = x->num_headers;
        assert_int_equal(n, y->num_headers);
    }
    for (size_t i = 0; i < n; i++) {
        same_str(a->headers[i].name, abase, b->headers[i].name, bbase);
        same_str(a->headers[i].value, abase, b->headers[i].value, bbase);
    }
}

/*
 * A prefix of k bytes either has not reached the end yet (KZ_ERR_PARTIAL)
 * or gives the whole text's answer; once it gives the answer, every longer
 * prefix does. For a head of size n, the answer comes exactly at k == n.
 */
static void check_prefix(const struct parsed *whole, const struct parsed *t, const uint8_t *tbuf,
                         int r, size_t k, bool *final)
{
    if (whole->rc > 0)
        assert_int_equal(r, k < (size_t)whole->rc ? KZ_ERR_PARTIAL : whole->rc);
    if (r == KZ_ERR_PARTIAL) {
        assert_false(*final);
        return;
    }
    *final = true;
    assert_int_equal(r, whole->rc);
    if (r > 0)
        same_result(whole, whole->buf, t, tbuf);
}

/*
 * Parses `text` whole, then as every prefix alone, as a one-byte-at-a-time
 * feed (each prefix with prev_len one less), and resumed on the whole text
 * after every split point. All must agree; returns the whole text's answer
 * and leaves its parse in *out (free with parsed_free()).
 */
int parse_every_way(struct parsed *out, bool response, const char *text, size_t len,
                    size_t max_headers, size_t max_size)
{
    memset(out, 0, sizeof(*out));
    out->response = response;
    out->len = len;
    out->buf = kzt_guard_copy(text, len);
    out->rc = parse_once(out, out->buf, len, 0, max_headers, max_size);

    static struct parsed t;
    memset(&t, 0, sizeof(t));
    t.response = response;
    bool final_alone = false, final_fed = false;
    for (size_t k = 0; k <= len; k++) {
        uint8_t *pre = kzt_guard_copy(text, k);
        int alone = parse_once(&t, pre, k, 0, max_headers, max_size);
        check_prefix(out, &t, pre, alone, k, &final_alone);
        /* Fed one byte at a time, the caller stops at the first answer. */
        if (k > 0 && !final_fed) {
            int r = parse_once(&t, pre, k, k - 1, max_headers, max_size);
            check_prefix(out, &t, pre, r, k, &final_fed);
        }
        kzt_guard_free(pre, k);
        /* The contract: a caller calls again only after KZ_ERR_PARTIAL. */
        if (alone != KZ_ERR_PARTIAL || k == len)
            continue;
        int r = parse_once(&t, out->buf, len, k, max_headers, max_size);
        assert_int_equal(r, out->rc);
        if (r > 0)
            same_result(out, out->buf, &t, out->buf);
    }
    assert_int_equal(final_alone, out->rc != KZ_ERR_PARTIAL);
    assert_int_equal(final_fed, out->rc != KZ_ERR_PARTIAL);
    return out->rc;
}

int parse_req(struct parsed *out, const char *text)
{
    return parse_every_way(out, false, text, strlen(text), MAX_HEADERS,
                           KZ_HS_MAX_HEADER_SIZE_DEFAULT);
}

int parse_resp(struct parsed *out, const char *text)
{
    return parse_every_way(out, true, text, strlen(text), MAX_HEADERS,
                           KZ_HS_MAX_HEADER_SIZE_DEFAULT);
}

void parsed_free(struct parsed *p)
{
    kzt_guard_free(p->buf, p->len);
    p->buf = NULL;
}

/* A span equals a C string. */
void str_is(struct kz_str s, const char *expected)
{
    assert_non_null(s.ptr);
    assert_int_equal(s.len, strlen(expected));
    assert_memory_equal(s.ptr, expected, s.len);
}
