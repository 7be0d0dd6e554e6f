/*
 * Private to the handshake module: the header-block parser shared by the
 * request and response parsers, character classes, and the bounded output
 * buffer the writers fill. Nothing here allocates.
 */
#ifndef KAZE_PROTO_HS_INTERNAL_H
#define KAZE_PROTO_HS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "kaze/common.h"
#include "kaze/handshake.h"

/* Character classes, indexed by byte. */
#define KZ_HSI_TCHAR 0x1u /* RFC 7230 tchar */
#define KZ_HSI_FIELD 0x2u /* allowed in a field value: HTAB, SP, VCHAR, obs-text */
#define KZ_HSI_B64   0x4u /* base64 alphabet, without '=' */
extern const unsigned char kz_hsi_class[256];

static inline bool kz_hsi_is_tchar(char c)
{
    return kz_hsi_class[(unsigned char)c] & KZ_HSI_TCHAR;
}

static inline bool kz_hsi_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static inline char kz_hsi_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

/* True if `s` is 1*tchar. */
bool kz_hsi_is_token(const char *s, size_t len);

/* ASCII case-insensitive equality of `s` with the `len` bytes at `lit`. */
bool kz_hsi_ieq(struct kz_str s, const char *lit, size_t len);

/*
 * The header block in three steps, shared by the request and the response
 * parser. kz_hsi_find_end() implements the incremental search of
 * kz_hs_parse_request(): the size of the head, KZ_ERR_PARTIAL or
 * KZ_ERR_HS_TOO_LARGE. Once the end is known, kz_hsi_first_line() takes the
 * start line (returning where the header lines begin) and
 * kz_hsi_parse_headers() the header lines, with the request's error codes.
 */
int kz_hsi_find_end(const char *buf, size_t len, size_t prev_len, size_t max_size);
size_t kz_hsi_first_line(const char *buf, size_t end, struct kz_str *line);
int kz_hsi_parse_headers(const char *buf, size_t from, size_t end, struct kz_header *headers,
                         size_t max_headers, size_t *num_headers);

/*
 * Splits an origin-form or absolute-form (http, https, ws, wss) target into
 * path and query. False for any other form.
 */
bool kz_hsi_split_target(struct kz_str target, struct kz_str *path, struct kz_str *query);

/* True if `key` is 22 base64 characters followed by "==": 16 bytes. */
bool kz_hsi_key_valid(const char *key, size_t len);

/*
 * Steps through one comma-separated header value from *pos: skips empty
 * elements and white space, and returns false at the end of the value.
 * Quoted strings are not special: none of the lists read this way has them.
 */
bool kz_hsi_list_step(struct kz_str value, size_t *pos, struct kz_str *item);

/* How many headers are named `name` (case-insensitive). */
size_t kz_hsi_count(const struct kz_header *headers, size_t num_headers, const char *name);

/*
 * Writers: a cursor over the caller's buffer. A write that does not fit
 * marks the cursor full and later writes are dropped, so one check at the
 * end says whether everything fitted.
 */
struct kz_hsi_out {
    char *buf;
    size_t cap;
    size_t len;
    bool full;
};

static inline void kz_hsi_put(struct kz_hsi_out *o, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (o->full || n > o->cap - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

#define KZ_HSI_PUT_LIT(o, lit) kz_hsi_put((o), (lit), sizeof(lit) - 1)

/* "Name: value\r\n" */
void kz_hsi_put_header(struct kz_hsi_out *o, const char *name, size_t name_len,
                       struct kz_str value);

/* The size written, or KZ_ERR_BUFFER_TOO_SMALL if it did not fit. */
int kz_hsi_out_result(const struct kz_hsi_out *o);

/* True if a value can be sent in a header: no CR, LF or NUL. */
bool kz_hsi_safe_value(struct kz_str v);

/* True if every extra header has a token name and a safe value. */
bool kz_hsi_safe_headers(const struct kz_header *h, size_t n);

void kz_hsi_put_extra(struct kz_hsi_out *o, const struct kz_header *h, size_t n);

#endif
