/*
 * HTTP/1.1 heads of the opening handshake, parsed the picohttpparser way:
 * the caller accumulates bytes and calls again; each call only searches the
 * bytes it has not searched before for the empty line that ends the head,
 * and the head is parsed once, when that line is found. Nothing is copied
 * or allocated: every span points into the caller's buffer.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "hs_internal.h"

/* clang-format off */
const unsigned char kz_hsi_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    2, 3, 2, 3, 3, 3, 3, 3, 2, 2, 3, 7, 2, 3, 3, 6, /* 0x20 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, /* 0x30 */
    2, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x40 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 2, 2, 3, 3, /* 0x50 */
    3, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x60 */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 2, 3, 2, 3, 0, /* 0x70 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x80 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x90 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xA0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xB0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xC0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xD0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xE0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xF0 */
};
/* clang-format on */

bool kz_hsi_is_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!kz_hsi_is_tchar(s[i]))
            return false;
    }
    return true;
}

bool kz_hsi_ieq(struct kz_str s, const char *lit, size_t len)
{
    if (s.len != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (kz_hsi_lower(s.ptr[i]) != kz_hsi_lower(lit[i]))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Finding the end of the head
 */

/*
 * The head ends at the first empty line. With bare LF allowed, that is a
 * "\n" followed by "\n" or "\r\n", so a terminator starts at most this many
 * bytes before the end of the data an earlier call searched.
 */
#define TERMINATOR_REACH 2

/* The offset just past the empty line, or 0 if [from, limit) has none. */
static size_t find_empty_line(const char *buf, size_t from, size_t limit)
{
    /* An empty first line ends the head at once; parsing then refuses it. */
    if (from == 0) {
        if (limit >= 1 && buf[0] == '\n')
            return 1;
        if (limit >= 2 && buf[0] == '\r' && buf[1] == '\n')
            return 2;
    }
    const char *p = buf + from;
    const char *e = buf + limit;
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        if (nl == NULL)
            break;
        p = nl + 1;
        if (p < e && p[0] == '\n')
            return (size_t)(p + 1 - buf);
        if (e - p >= 2 && p[0] == '\r' && p[1] == '\n')
            return (size_t)(p + 2 - buf);
    }
    return 0;
}

int kz_hsi_find_end(const char *buf, size_t len, size_t prev_len, size_t max_size)
{
    /* The size is returned as an int. */
    if (max_size > INT_MAX)
        max_size = INT_MAX;
    size_t limit = len < max_size ? len : max_size;
    /* A prev_len that cannot be right is not trusted: search everything. */
    size_t from = prev_len > TERMINATOR_REACH && prev_len <= len ? prev_len - TERMINATOR_REACH : 0;
    if (from > limit)
        from = limit;
    size_t end = find_empty_line(buf, from, limit);
    if (end != 0)
        return (int)end;
    return len >= max_size ? KZ_ERR_HS_TOO_LARGE : KZ_ERR_PARTIAL;
}

/* ------------------------------------------------------------------------
 * Lines
 */

/*
 * The line starting at `p`, which ends with '\n' before `e` (the search made
 * sure of it). Sets *line to its content, without CRLF or LF, and returns
 * where the next line starts. A CR anywhere else stays in the content, where
 * every caller refuses it as a control character.
 */
static const char *take_line(const char *p, const char *e, struct kz_str *line)
{
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    const char *end = (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
    line->ptr = p;
    line->len = (size_t)(end - p);
    return nl + 1;
}

size_t kz_hsi_first_line(const char *buf, size_t end, struct kz_str *line)
{
    return (size_t)(take_line(buf, buf + end, line) - buf);
}

#define BYTES_OF(b) (0x0101010101010101ull * (b))

/* True if one of the 8 bytes of `x` is below 0x20 or is 0x7f (DEL). */
static bool word_has_control(uint64_t x)
{
    /* Exact "any byte below n" tests: a borrow only starts at such a byte. */
    uint64_t below_space = (x - BYTES_OF(0x20)) & ~x & BYTES_OF(0x80);
    uint64_t del = x ^ BYTES_OF(0x7f);
    uint64_t is_del = (del - BYTES_OF(0x01)) & ~del & BYTES_OF(0x80);
    return (below_space | is_del) != 0;
}

/*
 * True if [p, e) holds only HTAB, SP, VCHAR and obs-text. Values are most
 * of a head, so they are checked eight bytes at a time; a word with a
 * control byte in it (usually an HTAB) is looked at byte by byte.
 */
static bool field_bytes_valid(const char *p, const char *e)
{
    while (p < e) {
        if (e - p >= 8) {
            uint64_t x;
            memcpy(&x, p, sizeof(x));
            if (!word_has_control(x)) {
                p += 8;
                continue;
            }
        }
        const char *stop = e - p >= 8 ? p + 8 : e;
        for (; p < stop; p++) {
            if (!(kz_hsi_class[(unsigned char)*p] & KZ_HSI_FIELD))
                return false;
        }
    }
    return true;
}

/* name ":" OWS value OWS, with no white space before the colon. */
static bool parse_header_line(struct kz_str line, struct kz_header *h)
{
    const char *p = line.ptr;
    const char *e = p + line.len;
    const char *name = p;
    /* A leading SP or HTAB (obsolete line folding) fails here too. */
    while (p < e && kz_hsi_is_tchar(*p))
        p++;
    if (p == name || p == e || *p != ':')
        return false;
    h->name.ptr = name;
    h->name.len = (size_t)(p - name);
    p++;
    while (p < e && kz_hsi_is_ows(*p))
        p++;
    if (!field_bytes_valid(p, e))
        return false;
    while (e > p && kz_hsi_is_ows(e[-1]))
        e--;
    h->value.ptr = p;
    h->value.len = (size_t)(e - p);
    return true;
}

int kz_hsi_parse_headers(const char *buf, size_t from, size_t end, struct kz_header *headers,
                         size_t max_headers, size_t *num_headers)
{
    const char *p = buf + from;
    const char *e = buf + end;
    size_t n = 0;
    *num_headers = 0;
    for (;;) {
        struct kz_str line;
        p = take_line(p, e, &line);
        if (line.len == 0)
            break;
        if (n == max_headers)
            return KZ_ERR_HS_TOO_MANY_HEADERS;
        if (!parse_header_line(line, &headers[n]))
            return KZ_ERR_HS_MALFORMED;
        n++;
    }
    *num_headers = n;
    return KZ_OK;
}

/* "HTTP/1." DIGIT at the start of [p, e): the minor version, or -1. */
static int parse_http_version(const char *p, const char *e)
{
    if (e - p < 8 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9')
        return -1;
    return p[7] - '0';
}

/* ------------------------------------------------------------------------
 * Requests
 */

/* Bytes a request target may hold: no white space, no control character. */
static bool is_target_char(char c)
{
    return c != ' ' && c != '\t' && (kz_hsi_class[(unsigned char)c] & KZ_HSI_FIELD);
}

/* method SP request-target SP HTTP-version, single spaces. */
static bool parse_request_line(struct kz_str line, struct kz_hs_request *req)
{
    const char *p = line.ptr;
    const char *e = p + line.len;
    const char *method = p;
    while (p < e && kz_hsi_is_tchar(*p))
        p++;
    if (p == method || p == e || *p != ' ')
        return false;
    req->method.ptr = method;
    req->method.len = (size_t)(p - method);
    const char *target = ++p;
    while (p < e && is_target_char(*p))
        p++;
    if (p == target || p == e || *p != ' ')
        return false;
    req->target.ptr = target;
    req->target.len = (size_t)(p - target);
    p++;
    req->http_minor = parse_http_version(p, e);
    return req->http_minor >= 0 && e - p == 8;
}

/* The four schemes an absolute-form target may use, with "://". */
static size_t scheme_length(struct kz_str t)
{
    static const struct kz_str schemes[] = {
        {"http://", 7},
        {"https://", 8},
        {"ws://", 5},
        {"wss://", 6},
    };
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        struct kz_str prefix = {t.ptr, schemes[i].len};
        if (t.len >= schemes[i].len && kz_hsi_ieq(prefix, schemes[i].ptr, schemes[i].len))
            return schemes[i].len;
    }
    return 0;
}

bool kz_hsi_split_target(struct kz_str t, struct kz_str *path, struct kz_str *query)
{
    path->ptr = query->ptr = NULL;
    path->len = query->len = 0;
    if (t.len == 0)
        return false;
    size_t start = 0;
    /*
     * An absolute form without a path means "/". Every span must point into
     * the buffer, so the "/" is the last one of "://".
     */
    const char *root = NULL;
    if (t.ptr[0] != '/') {
        size_t authority = scheme_length(t);
        if (authority == 0)
            return false;
        start = authority;
        while (start < t.len && t.ptr[start] != '/' && t.ptr[start] != '?')
            start++;
        if (start == authority)
            return false;
        root = t.ptr + authority - 1;
    }
    size_t q = start;
    while (q < t.len && t.ptr[q] != '?')
        q++;
    if (q == start) {
        path->ptr = root;
        path->len = 1;
    } else {
        path->ptr = t.ptr + start;
        path->len = q - start;
    }
    if (q < t.len) {
        query->ptr = t.ptr + q + 1;
        query->len = t.len - q - 1;
    }
    return true;
}

/* Files the well-known headers; `dup_mask` records repeats of the unique ones. */
static void note_known_header(struct kz_hs_request *req, const struct kz_header *h)
{
    struct kz_str *slot = NULL;
    unsigned bit = 0;
    switch (h->name.len) {
    case 4:
        if (kz_hsi_ieq(h->name, "host", 4)) {
            slot = &req->host;
            bit = KZ_HS_SEEN_HOST;
        }
        break;
    case 6:
        if (kz_hsi_ieq(h->name, "origin", 6)) {
            slot = &req->origin;
            bit = KZ_HS_SEEN_ORIGIN;
        } else if (kz_hsi_ieq(h->name, "cookie", 6)) {
            slot = &req->cookie;
        }
        break;
    case 13:
        if (kz_hsi_ieq(h->name, "authorization", 13))
            slot = &req->authorization;
        break;
    case 17:
        if (kz_hsi_ieq(h->name, "sec-websocket-key", 17)) {
            slot = &req->key;
            bit = KZ_HS_SEEN_KEY;
        }
        break;
    case 21:
        if (kz_hsi_ieq(h->name, "sec-websocket-version", 21)) {
            slot = &req->version;
            bit = KZ_HS_SEEN_VERSION;
        }
        break;
    default:
        break;
    }
    if (slot == NULL)
        return;
    if (slot->ptr != NULL)
        req->dup_mask |= bit;
    else
        *slot = h->value;
}

static void reset_request(struct kz_hs_request *req)
{
    struct kz_header *headers = req->headers;
    size_t max_headers = req->max_headers;
    memset(req, 0, sizeof(*req));
    req->headers = headers;
    req->max_headers = max_headers;
    req->http_minor = -1;
}

int kz_hs_parse_request(const char *buf, size_t len, size_t prev_len, size_t max_size,
                        struct kz_hs_request *req)
{
    if (req == NULL || (buf == NULL && len != 0) || (req->headers == NULL && req->max_headers))
        return KZ_ERR_INVALID_ARGUMENT;
    reset_request(req);
    int end = kz_hsi_find_end(buf, len, prev_len, max_size);
    if (end < 0)
        return end;
    struct kz_str line;
    size_t next = kz_hsi_first_line(buf, (size_t)end, &line);
    if (!parse_request_line(line, req))
        return KZ_ERR_HS_MALFORMED;
    int err = kz_hsi_parse_headers(buf, next, (size_t)end, req->headers, req->max_headers,
                                   &req->num_headers);
    if (err != KZ_OK)
        return err;
    kz_hsi_split_target(req->target, &req->path, &req->query);
    for (size_t i = 0; i < req->num_headers; i++)
        note_known_header(req, &req->headers[i]);
    return end;
}

/* ------------------------------------------------------------------------
 * Responses
 */

/* HTTP-version SP 3DIGIT [SP reason-phrase]. */
static bool parse_status_line(struct kz_str line, struct kz_hs_response *resp)
{
    const char *p = line.ptr;
    const char *e = p + line.len;
    resp->http_minor = parse_http_version(p, e);
    if (resp->http_minor < 0)
        return false;
    p += 8;
    if (e - p < 4 || p[0] != ' ')
        return false;
    int status = 0;
    for (int i = 1; i <= 3; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        status = status * 10 + (p[i] - '0');
    }
    resp->status = status;
    p += 4;
    /* Servers that send no reason at all are common enough to accept. */
    if (p < e && *p++ != ' ')
        return false;
    resp->reason.ptr = p;
    resp->reason.len = (size_t)(e - p);
    for (; p < e; p++) {
        if (!(kz_hsi_class[(unsigned char)*p] & KZ_HSI_FIELD))
            return false;
    }
    return true;
}

/* The response parser speaks the client's error codes. */
static int response_error(int err)
{
    switch (err) {
    case KZ_ERR_HS_MALFORMED:
        return KZ_ERR_HS_RESP_MALFORMED;
    case KZ_ERR_HS_TOO_LARGE:
    case KZ_ERR_HS_TOO_MANY_HEADERS:
        return KZ_ERR_HS_RESP_TOO_LARGE;
    default:
        return err;
    }
}

int kz_hs_parse_response(const char *buf, size_t len, size_t prev_len, size_t max_size,
                         struct kz_hs_response *resp)
{
    if (resp == NULL || (buf == NULL && len != 0) || (resp->headers == NULL && resp->max_headers))
        return KZ_ERR_INVALID_ARGUMENT;
    resp->http_minor = -1;
    resp->status = 0;
    resp->reason.ptr = NULL;
    resp->reason.len = 0;
    resp->num_headers = 0;
    int end = kz_hsi_find_end(buf, len, prev_len, max_size);
    if (end < 0)
        return response_error(end);
    struct kz_str line;
    size_t next = kz_hsi_first_line(buf, (size_t)end, &line);
    if (!parse_status_line(line, resp))
        return KZ_ERR_HS_RESP_MALFORMED;
    int err = kz_hsi_parse_headers(buf, next, (size_t)end, resp->headers, resp->max_headers,
                                   &resp->num_headers);
    if (err != KZ_OK)
        return response_error(err);
    return end;
}
