/*
 * libFuzzer target for the opening handshake. The input is parsed as a
 * request and as a response: whole, fed one byte at a time, and split at
 * points derived from the input, each prefix in a buffer of its exact size
 * so that ASan sees any over-read. All feeds must agree. A parsed head is
 * then judged, its lists and extensions iterated, and every span checked to
 * lie inside the head. A request the server accepts must get a 101 answer
 * that the client's judge accepts in turn.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kaze/handshake.h"

#define MAX_HEADERS 40

/* Fails loudly: libFuzzer records the input that got here. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* What feeding varies: limits and split points, from a hash of the input. */
struct plan {
    size_t max_size;
    size_t max_headers;
    size_t split[2];
};

static uint64_t fnv1a(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    return h;
}

static struct plan make_plan(const uint8_t *data, size_t size)
{
    uint64_t h = fnv1a(data, size);
    struct plan p;
    /* Mostly the default limit; sometimes one inside the input. */
    p.max_size = (h & 3) != 0 ? KZ_HS_MAX_HEADER_SIZE_DEFAULT : (size_t)(h >> 8) % (size + 2);
    p.max_headers = (h & 4) != 0 ? MAX_HEADERS : (size_t)(h >> 16) % (MAX_HEADERS + 1);
    size_t a = (size_t)(h >> 24) % (size + 1);
    size_t b = (size_t)(h >> 44) % (size + 1);
    p.split[0] = a < b ? a : b;
    p.split[1] = a < b ? b : a;
    return p;
}

/* ------------------------------------------------------------------------
 * Invariants of spans
 */

static bool inside(struct kz_str s, const char *buf, size_t len)
{
    if (s.ptr == NULL)
        return s.len == 0;
    return s.ptr >= buf && s.len <= len && (size_t)(s.ptr - buf) <= len - s.len;
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_token(struct kz_str s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        if (!is_tchar(s.ptr[i]))
            return false;
    }
    return true;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Trimmed, without CR, LF or other controls but HTAB. */
static void check_value(struct kz_str v)
{
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
    }
    if (v.len != 0)
        CHECK(!is_ows(v.ptr[0]) && !is_ows(v.ptr[v.len - 1]));
}

static void check_headers(const struct kz_header *h, size_t n, size_t max, const char *buf,
                          size_t head)
{
    CHECK(n <= max);
    for (size_t i = 0; i < n; i++) {
        CHECK(inside(h[i].name, buf, head) && h[i].name.ptr != NULL);
        CHECK(inside(h[i].value, buf, head) && h[i].value.ptr != NULL);
        CHECK(is_token(h[i].name));
        check_value(h[i].value);
    }
}

/* Every element of a list is non-empty, trimmed, comma-free and in the head. */
static void walk_list(const struct kz_header *h, size_t n, const char *name, const char *buf,
                      size_t head)
{
    struct kz_hs_iter it = {0, 0};
    struct kz_str item;
    size_t count = 0;
    while (kz_hs_list_next(h, n, name, &it, &item)) {
        CHECK(inside(item, buf, head) && item.len != 0);
        CHECK(!is_ows(item.ptr[0]) && !is_ows(item.ptr[item.len - 1]));
        CHECK(memchr(item.ptr, ',', item.len) == NULL);
        CHECK(++count <= head);
    }
}

/* Every extension read follows §9.1; the walk ends or fails, never loops. */
static int walk_extensions(const struct kz_header *h, size_t n, const char *buf, size_t head)
{
    struct kz_hs_iter it = {0, 0};
    struct kz_ext_offer ext;
    size_t count = 0;
    int r;
    while ((r = kz_hs_next_extension(h, n, &it, &ext)) == 1) {
        CHECK(++count <= head);
        CHECK(inside(ext.name, buf, head) && is_token(ext.name));
        CHECK(ext.num_params <= KZ_EXT_MAX_PARAMS);
        for (size_t i = 0; i < ext.num_params; i++) {
            const struct kz_ext_param *p = &ext.params[i];
            CHECK(inside(p->name, buf, head) && is_token(p->name));
            CHECK(inside(p->value, buf, head));
            CHECK(p->has_value || (p->value.len == 0 && !p->quoted));
            char value[256];
            int len = kz_ext_param_value(p, value, sizeof(value));
            if (len == KZ_ERR_BUFFER_TOO_SMALL) {
                CHECK(p->value.len >= sizeof(value) / 2);
                continue;
            }
            /* Once unescaped, a value is a token (or absent). */
            CHECK(len >= 0 && (size_t)len <= p->value.len && value[len] == '\0');
            struct kz_str plain = {value, (size_t)len};
            CHECK(p->has_value ? is_token(plain) : len == 0);
        }
    }
    CHECK(r == 0 || r == KZ_ERR_HS_BAD_EXTENSIONS);
    return r;
}

/* ------------------------------------------------------------------------
 * Requests
 */

struct req_parse {
    struct kz_header headers[MAX_HEADERS];
    struct kz_hs_request req;
};

static int parse_req(struct req_parse *p, const char *buf, size_t len, size_t prev,
                     const struct plan *plan)
{
    p->req.headers = p->headers;
    p->req.max_headers = plan->max_headers;
    return kz_hs_parse_request(buf, len, prev, plan->max_size, &p->req);
}

static void same_span(struct kz_str a, const char *abuf, struct kz_str b, const char *bbuf)
{
    CHECK(a.len == b.len && (a.ptr == NULL) == (b.ptr == NULL));
    CHECK(a.ptr == NULL || a.ptr - abuf == b.ptr - bbuf);
}

static void same_request(const struct kz_hs_request *a, const char *abuf,
                         const struct kz_hs_request *b, const char *bbuf)
{
    same_span(a->method, abuf, b->method, bbuf);
    same_span(a->target, abuf, b->target, bbuf);
    same_span(a->path, abuf, b->path, bbuf);
    same_span(a->query, abuf, b->query, bbuf);
    same_span(a->host, abuf, b->host, bbuf);
    same_span(a->origin, abuf, b->origin, bbuf);
    same_span(a->key, abuf, b->key, bbuf);
    same_span(a->version, abuf, b->version, bbuf);
    same_span(a->cookie, abuf, b->cookie, bbuf);
    same_span(a->authorization, abuf, b->authorization, bbuf);
    CHECK(a->http_minor == b->http_minor && a->dup_mask == b->dup_mask);
    CHECK(a->num_headers == b->num_headers);
    for (size_t i = 0; i < a->num_headers; i++) {
        same_span(a->headers[i].name, abuf, b->headers[i].name, bbuf);
        same_span(a->headers[i].value, abuf, b->headers[i].value, bbuf);
    }
}

/* A later answer from a feed must be the whole input's answer. */
static void agree_req(int whole, const struct req_parse *w, const char *wbuf, int r,
                      const struct req_parse *p, const char *pbuf)
{
    CHECK(r == whole);
    if (r > 0)
        same_request(&w->req, wbuf, &p->req, pbuf);
}

static void feed_request(const uint8_t *data, size_t size, const struct plan *plan,
                         const char *whole_buf, int whole, const struct req_parse *w)
{
    static struct req_parse p;
    /* Split at two points, each prefix in a buffer of its own exact size. */
    size_t prev = 0;
    int r = KZ_ERR_PARTIAL;
    for (int i = 0; i < 2 && r == KZ_ERR_PARTIAL; i++) {
        size_t k = plan->split[i];
        char *pre = malloc(k ? k : 1);
        memcpy(pre, data, k);
        r = parse_req(&p, pre, k, prev, plan);
        if (r != KZ_ERR_PARTIAL)
            agree_req(whole, w, whole_buf, r, &p, pre);
        free(pre);
        prev = k;
    }
    if (r == KZ_ERR_PARTIAL) {
        r = parse_req(&p, whole_buf, size, prev, plan);
        agree_req(whole, w, whole_buf, r, &p, whole_buf);
    }
    /* One byte at a time, stopping at the first answer. */
    r = KZ_ERR_PARTIAL;
    for (size_t k = 1; k <= size && r == KZ_ERR_PARTIAL; k++) {
        r = parse_req(&p, whole_buf, k, k - 1, plan);
        if (r > 0)
            CHECK((size_t)r <= k);
    }
    agree_req(whole, w, whole_buf, r, &p, whole_buf);
}

static bool known_request_error(int err)
{
    return err == KZ_OK || (err <= KZ_ERR_HS_MALFORMED && err >= KZ_ERR_HS_BODY);
}

static void check_parsed_request(const struct kz_hs_request *req, const char *buf, size_t head)
{
    check_headers(req->headers, req->num_headers, req->max_headers, buf, head);
    CHECK(inside(req->method, buf, head) && is_token(req->method));
    CHECK(inside(req->target, buf, head) && req->target.len != 0);
    CHECK(inside(req->path, buf, head) && inside(req->query, buf, head));
    CHECK(req->http_minor >= 0 && req->http_minor <= 9);
    if (req->path.ptr != NULL)
        CHECK(req->path.len != 0 && req->path.ptr[0] == '/');
    const struct kz_str known[] = {req->host,    req->origin, req->key,
                                   req->version, req->cookie, req->authorization};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        CHECK(inside(known[i], buf, head));

    static const char *const lists[] = {"Upgrade", "Connection", "Sec-WebSocket-Protocol"};
    for (size_t i = 0; i < 3; i++)
        walk_list(req->headers, req->num_headers, lists[i], buf, head);
    int ext = walk_extensions(req->headers, req->num_headers, buf, head);

    int err = kz_hs_check_request(req);
    CHECK(known_request_error(err));
    int status = kz_hs_err_status(err);
    CHECK(status == 400 || status == 405 || status == 426 || status == 431 || status == 500);
    if (err == KZ_OK)
        CHECK(ext == 0 && req->path.ptr != NULL);
    if (ext < 0)
        CHECK(err != KZ_OK);
}

/* An accepted request gets a 101 that the client side accepts. */
static void answer_request(const struct kz_hs_request *req)
{
    static char out[1024];
    int n = kz_hs_write_response(out, sizeof(out), req, NULL);
    CHECK(n > 0);
    struct kz_header h[8];
    struct kz_hs_response resp = {.headers = h, .max_headers = 8};
    CHECK(kz_hs_parse_response(out, (size_t)n, 0, (size_t)n, &resp) == n);
    CHECK(resp.status == 101);
    struct kz_hs_client_request offer = {.host = req->host};
    CHECK(kz_hs_check_response(&resp, req->key.ptr, &offer, NULL) == KZ_OK);
}

static void refuse_request(int err)
{
    static char out[512];
    int n = kz_hs_write_refusal(out, sizeof(out), kz_hs_err_status(err), kz_strerror(err));
    CHECK(n > 0);
    struct kz_header h[8];
    struct kz_hs_response resp = {.headers = h, .max_headers = 8};
    int head = kz_hs_parse_response(out, (size_t)n, 0, 8192, &resp);
    CHECK(head > 0 && resp.status == kz_hs_err_status(err));
}

static void fuzz_request(const uint8_t *data, size_t size, const struct plan *plan)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    static struct req_parse w;
    int whole = parse_req(&w, buf, size, 0, plan);
    CHECK(whole > 0 || whole == KZ_ERR_PARTIAL || whole == KZ_ERR_HS_TOO_LARGE ||
          whole == KZ_ERR_HS_TOO_MANY_HEADERS || whole == KZ_ERR_HS_MALFORMED);
    CHECK(whole <= 0 || ((size_t)whole <= size && (size_t)whole <= plan->max_size));
    feed_request(data, size, plan, buf, whole, &w);
    if (whole > 0) {
        check_parsed_request(&w.req, buf, (size_t)whole);
        int err = kz_hs_check_request(&w.req);
        if (err == KZ_OK)
            answer_request(&w.req);
        else
            refuse_request(err);
    } else if (whole != KZ_ERR_PARTIAL) {
        refuse_request(whole);
    }
    free(buf);
}

/* ------------------------------------------------------------------------
 * Responses
 */

struct resp_parse {
    struct kz_header headers[MAX_HEADERS];
    struct kz_hs_response resp;
};

static int parse_resp(struct resp_parse *p, const char *buf, size_t len, size_t prev,
                      const struct plan *plan)
{
    p->resp.headers = p->headers;
    p->resp.max_headers = plan->max_headers;
    return kz_hs_parse_response(buf, len, prev, plan->max_size, &p->resp);
}

static void agree_resp(int whole, const struct resp_parse *w, const char *wbuf, int r,
                       const struct resp_parse *p, const char *pbuf)
{
    CHECK(r == whole);
    if (r <= 0)
        return;
    CHECK(w->resp.status == p->resp.status && w->resp.http_minor == p->resp.http_minor);
    same_span(w->resp.reason, wbuf, p->resp.reason, pbuf);
    CHECK(w->resp.num_headers == p->resp.num_headers);
    for (size_t i = 0; i < w->resp.num_headers; i++) {
        same_span(w->headers[i].name, wbuf, p->headers[i].name, pbuf);
        same_span(w->headers[i].value, wbuf, p->headers[i].value, pbuf);
    }
}

static void feed_response(const uint8_t *data, size_t size, const struct plan *plan,
                          const char *whole_buf, int whole, const struct resp_parse *w)
{
    static struct resp_parse p;
    size_t prev = 0;
    int r = KZ_ERR_PARTIAL;
    for (int i = 0; i < 2 && r == KZ_ERR_PARTIAL; i++) {
        size_t k = plan->split[i];
        char *pre = malloc(k ? k : 1);
        memcpy(pre, data, k);
        r = parse_resp(&p, pre, k, prev, plan);
        if (r != KZ_ERR_PARTIAL)
            agree_resp(whole, w, whole_buf, r, &p, pre);
        free(pre);
        prev = k;
    }
    if (r == KZ_ERR_PARTIAL) {
        r = parse_resp(&p, whole_buf, size, prev, plan);
        agree_resp(whole, w, whole_buf, r, &p, whole_buf);
    }
    r = KZ_ERR_PARTIAL;
    for (size_t k = 1; k <= size && r == KZ_ERR_PARTIAL; k++)
        r = parse_resp(&p, whole_buf, k, k - 1, plan);
    agree_resp(whole, w, whole_buf, r, &p, whole_buf);
}

static void judge_response(const struct kz_hs_response *resp, const char *buf, size_t head)
{
    static const struct kz_str protocols[] = {{"chat", 4}, {"superchat", 9}};
    static const struct kz_hs_client_request offer = {
        .host = {"h", 1},
        .protocols = protocols,
        .num_protocols = 2,
        .extensions = {"permessage-deflate; client_max_window_bits, x-kaze", 50},
    };
    struct kz_str chosen = {"junk", 4};
    int err = kz_hs_check_response(resp, "dGhlIHNhbXBsZSBub25jZQ==", &offer, &chosen);
    CHECK(err == KZ_OK || (err <= KZ_ERR_HS_RESP_STATUS && err >= KZ_ERR_HS_RESP_EXTENSION));
    if (err != KZ_OK) {
        CHECK(chosen.ptr == NULL && chosen.len == 0);
        return;
    }
    CHECK(resp->status == 101 && inside(chosen, buf, head));
    CHECK(chosen.len == 0 || (chosen.len == 4 && memcmp(chosen.ptr, "chat", 4) == 0) ||
          (chosen.len == 9 && memcmp(chosen.ptr, "superchat", 9) == 0));
}

static void fuzz_response(const uint8_t *data, size_t size, const struct plan *plan)
{
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    static struct resp_parse w;
    int whole = parse_resp(&w, buf, size, 0, plan);
    CHECK(whole > 0 || whole == KZ_ERR_PARTIAL || whole == KZ_ERR_HS_RESP_TOO_LARGE ||
          whole == KZ_ERR_HS_RESP_MALFORMED);
    feed_response(data, size, plan, buf, whole, &w);
    if (whole > 0) {
        size_t head = (size_t)whole;
        check_headers(w.headers, w.resp.num_headers, plan->max_headers, buf, head);
        CHECK(w.resp.status >= 0 && w.resp.status <= 999);
        CHECK(inside(w.resp.reason, buf, head));
        walk_list(w.headers, w.resp.num_headers, "Upgrade", buf, head);
        walk_extensions(w.headers, w.resp.num_headers, buf, head);
        judge_response(&w.resp, buf, head);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct plan plan = make_plan(data, size);
    fuzz_request(data, size, &plan);
    fuzz_response(data, size, &plan);
    return 0;
}
