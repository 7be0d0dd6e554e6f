/*
 * Header lookups and the comma-separated lists of the handshake: plain
 * token lists (Upgrade, Connection, Sec-WebSocket-Protocol) and the
 * extension grammar of RFC 6455 §9.1. Several header lines with the same
 * name form one list (RFC 7230 §3.2.2), so iterators walk across lines.
 */
#include <limits.h>
#include <string.h>

#include "hs_internal.h"

static bool name_is(const struct kz_header *h, const char *name, size_t name_len)
{
    return kz_hsi_ieq(h->name, name, name_len);
}

struct kz_str kz_hs_header(const struct kz_header *headers, size_t num_headers, const char *name)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < num_headers; i++) {
        if (name_is(&headers[i], name, name_len))
            return headers[i].value;
    }
    struct kz_str none = {NULL, 0};
    return none;
}

size_t kz_hsi_count(const struct kz_header *headers, size_t num_headers, const char *name)
{
    size_t name_len = strlen(name);
    size_t n = 0;
    for (size_t i = 0; i < num_headers; i++)
        n += name_is(&headers[i], name, name_len);
    return n;
}

/* ------------------------------------------------------------------------
 * Token lists
 */

bool kz_hsi_list_step(struct kz_str value, size_t *pos, struct kz_str *item)
{
    size_t i = *pos;
    /* Empty elements ("a, , b", ", a") are allowed and skipped (RFC 7230 §7). */
    while (i < value.len && (value.ptr[i] == ',' || kz_hsi_is_ows(value.ptr[i])))
        i++;
    if (i >= value.len) {
        *pos = i;
        return false;
    }
    const char *start = value.ptr + i;
    const char *comma = memchr(start, ',', value.len - i);
    const char *end = comma != NULL ? comma : value.ptr + value.len;
    *pos = (size_t)(end - value.ptr);
    /* The element starts on a non-blank byte, so trimming leaves at least it. */
    while (kz_hsi_is_ows(end[-1]))
        end--;
    item->ptr = start;
    item->len = (size_t)(end - start);
    return true;
}

bool kz_hs_list_next(const struct kz_header *headers, size_t num_headers, const char *name,
                     struct kz_hs_iter *it, struct kz_str *item)
{
    size_t name_len = strlen(name);
    for (; it->header < num_headers; it->header++, it->pos = 0) {
        const struct kz_header *h = &headers[it->header];
        if (name_is(h, name, name_len) && kz_hsi_list_step(h->value, &it->pos, item))
            return true;
    }
    return false;
}

bool kz_hs_list_has(const struct kz_header *headers, size_t num_headers, const char *name,
                    const char *token)
{
    size_t token_len = strlen(token);
    struct kz_hs_iter it = {0, 0};
    struct kz_str item;
    while (kz_hs_list_next(headers, num_headers, name, &it, &item)) {
        if (kz_hsi_ieq(item, token, token_len))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------------
 * Extensions (RFC 6455 §9.1, with the OWS of RFC 7230 around separators)
 */

#define EXTENSIONS_HEADER     "Sec-WebSocket-Extensions"
#define EXTENSIONS_HEADER_LEN (sizeof(EXTENSIONS_HEADER) - 1)

static size_t skip_ows(struct kz_str v, size_t i)
{
    while (i < v.len && kz_hsi_is_ows(v.ptr[i]))
        i++;
    return i;
}

static size_t skip_token(struct kz_str v, size_t i)
{
    while (i < v.len && kz_hsi_is_tchar(v.ptr[i]))
        i++;
    return i;
}

/*
 * A quoted-string opening at `i` whose unescaped content is a token, as
 * §9.1 demands: every byte, escaped or not, is a tchar. Returns the offset
 * just past the closing quote, or 0 if the string breaks that rule.
 */
static size_t skip_quoted_token(struct kz_str v, size_t i)
{
    size_t start = ++i;
    while (i < v.len && v.ptr[i] != '"') {
        if (v.ptr[i] == '\\')
            i++;
        if (i >= v.len || !kz_hsi_is_tchar(v.ptr[i]))
            return 0;
        i++;
    }
    if (i >= v.len || i == start)
        return 0;
    return i + 1;
}

/* token [ OWS "=" OWS ( token | quoted-string ) ] at *i. */
static bool parse_param(struct kz_str v, size_t *i, struct kz_ext_param *param)
{
    size_t end = skip_token(v, *i);
    if (end == *i)
        return false;
    param->name.ptr = v.ptr + *i;
    param->name.len = end - *i;
    param->value.ptr = NULL;
    param->value.len = 0;
    param->has_value = false;
    param->quoted = false;
    size_t j = skip_ows(v, end);
    if (j == v.len || v.ptr[j] != '=') {
        *i = end;
        return true;
    }
    j = skip_ows(v, j + 1);
    if (j < v.len && v.ptr[j] == '"') {
        end = skip_quoted_token(v, j);
        if (end == 0)
            return false;
        param->value.ptr = v.ptr + j + 1;
        param->value.len = end - j - 2;
        param->quoted = true;
    } else {
        end = skip_token(v, j);
        if (end == j)
            return false;
        param->value.ptr = v.ptr + j;
        param->value.len = end - j;
    }
    param->has_value = true;
    *i = end;
    return true;
}

/*
 * token *( OWS ";" OWS param ) at *i, which must then be followed by OWS
 * and a comma or the end of the value; *i is left on that comma or end.
 */
static bool parse_extension(struct kz_str v, size_t *i, struct kz_ext_offer *ext)
{
    size_t end = skip_token(v, *i);
    if (end == *i)
        return false;
    ext->name.ptr = v.ptr + *i;
    ext->name.len = end - *i;
    ext->num_params = 0;
    for (;;) {
        size_t j = skip_ows(v, end);
        if (j == v.len || v.ptr[j] == ',') {
            *i = j;
            return true;
        }
        if (v.ptr[j] != ';' || ext->num_params == KZ_EXT_MAX_PARAMS)
            return false;
        j = skip_ows(v, j + 1);
        if (!parse_param(v, &j, &ext->params[ext->num_params]))
            return false;
        ext->num_params++;
        end = j;
    }
}

int kz_hs_next_extension(const struct kz_header *headers, size_t num_headers, struct kz_hs_iter *it,
                         struct kz_ext_offer *ext)
{
    for (; it->header < num_headers; it->header++, it->pos = 0) {
        const struct kz_header *h = &headers[it->header];
        if (!name_is(h, EXTENSIONS_HEADER, EXTENSIONS_HEADER_LEN))
            continue;
        struct kz_str v = h->value;
        /*
         * pos is 0 only before a line's first extension: a line that has
         * none breaks 1#extension, even though empty elements are allowed.
         */
        bool first = it->pos == 0;
        size_t i = it->pos;
        while (i < v.len && (v.ptr[i] == ',' || kz_hsi_is_ows(v.ptr[i])))
            i++;
        if (i >= v.len) {
            if (first)
                return KZ_ERR_HS_BAD_EXTENSIONS;
            continue;
        }
        if (!parse_extension(v, &i, ext))
            return KZ_ERR_HS_BAD_EXTENSIONS;
        it->pos = i;
        return 1;
    }
    return 0;
}

int kz_ext_param_value(const struct kz_ext_param *param, char *dst, size_t cap)
{
    if (param == NULL || (dst == NULL && cap != 0))
        return KZ_ERR_INVALID_ARGUMENT;
    const char *s = param->value.ptr;
    size_t len = param->value.len;
    /* Count first, so that a short buffer is left untouched. */
    size_t out_len = 0;
    for (size_t i = 0; i < len; i++, out_len++) {
        if (param->quoted && s[i] == '\\' && i + 1 < len)
            i++;
    }
    if (out_len >= cap || out_len > INT_MAX)
        return KZ_ERR_BUFFER_TOO_SMALL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (param->quoted && s[i] == '\\' && i + 1 < len)
            i++;
        dst[n++] = s[i];
    }
    dst[n] = '\0';
    return (int)n;
}
