/*
 * ws:// and wss:// URLs (RFC 6455 §3): scheme, host, port, and the request
 * target, all as spans of the caller's text. Also the host and port rules
 * the proxy parser shares (client_internal.h).
 */
#include <arpa/inet.h>
#include <string.h>

#include "kaze/client.h"
#include "proto/client_internal.h"

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool kz_cli_ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        if (lower(a[i]) != lower(b[i]))
            return false;
    }
    return true;
}

/* inet_pton needs a NUL-terminated copy; longer text cannot be an address. */
static bool pton(int af, const char *s, size_t len)
{
    char tmp[INET6_ADDRSTRLEN];
    unsigned char addr[16];
    if (len == 0 || len >= sizeof(tmp) || memchr(s, '\0', len) != NULL)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return inet_pton(af, tmp, addr) == 1;
}

bool kz_cli_is_ipv4(const char *s, size_t len)
{
    return pton(AF_INET, s, len);
}

bool kz_cli_is_ipv6(const char *s, size_t len)
{
    return pton(AF_INET6, s, len);
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
}

static bool name_valid(const char *s, size_t len)
{
    if (len == 0 || len > 254 || (len == 254 && s[253] != '.'))
        return false;
    bool numeric = true;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            /* Empty labels are refused, except after a final dot. */
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (++label > 63)
            return false;
        if (s[i] < '0' || s[i] > '9')
            numeric = false;
    }
    /* "1.2.3" or "300.1.1.1" would reach the resolver as something else. */
    return !numeric || kz_cli_is_ipv4(s, len);
}

const char *kz_cli_host(const char *p, const char *e, struct kz_str *host, bool *ipv6)
{
    if (p < e && *p == '[') {
        const char *close = memchr(p, ']', (size_t)(e - p));
        if (close == NULL || !kz_cli_is_ipv6(p + 1, (size_t)(close - p - 1)))
            return NULL;
        host->ptr = p + 1;
        host->len = (size_t)(close - p - 1);
        *ipv6 = true;
        return close + 1;
    }
    const char *q = p;
    while (q < e && is_name_char(*q))
        q++;
    if (!name_valid(p, (size_t)(q - p)))
        return NULL;
    host->ptr = p;
    host->len = (size_t)(q - p);
    *ipv6 = false;
    return q;
}

bool kz_cli_port(const char *p, const char *e, uint16_t *port)
{
    if (e - p < 1 || e - p > 5)
        return false;
    uint32_t v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint32_t)(*p - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* ------------------------------------------------------------------------
 * URLs
 */

/* Printable ASCII other than space: a request line carries nothing else. */
static bool all_visible(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f)
            return false;
    }
    return true;
}

int kz_url_parse(const char *text, size_t len, struct kz_url *url)
{
    if (url == NULL || (text == NULL && len != 0))
        return KZ_ERR_INVALID_ARGUMENT;
    memset(url, 0, sizeof(*url));
    if (len == 0 || !all_visible(text, len) || memchr(text, '#', len) != NULL)
        return KZ_ERR_INVALID_ARGUMENT;
    const char *e = text + len;
    const char *colon = memchr(text, ':', len);
    if (colon == NULL || e - colon < 3 || colon[1] != '/' || colon[2] != '/')
        return KZ_ERR_INVALID_ARGUMENT;
    size_t slen = (size_t)(colon - text);
    bool tls;
    if (kz_cli_ieq(text, slen, "ws", 2) || kz_cli_ieq(text, slen, "http", 4))
        tls = false;
    else if (kz_cli_ieq(text, slen, "wss", 3) || kz_cli_ieq(text, slen, "https", 5))
        tls = true;
    else
        return KZ_ERR_INVALID_ARGUMENT;

    const char *auth = colon + 3;
    const char *auth_end = auth;
    while (auth_end < e && *auth_end != '/' && *auth_end != '?')
        auth_end++;
    if (memchr(auth, '@', (size_t)(auth_end - auth)) != NULL)
        return KZ_ERR_INVALID_ARGUMENT; /* userinfo */
    struct kz_str host;
    bool ipv6;
    const char *p = kz_cli_host(auth, auth_end, &host, &ipv6);
    if (p == NULL)
        return KZ_ERR_INVALID_ARGUMENT;
    uint16_t port = tls ? 443 : 80;
    bool explicit_port = false;
    if (p < auth_end) {
        if (*p != ':' || !kz_cli_port(p + 1, auth_end, &port))
            return KZ_ERR_INVALID_ARGUMENT;
        explicit_port = true;
    }

    url->tls = tls;
    url->host = host;
    url->host_is_ipv6 = ipv6;
    url->port = port;
    url->port_explicit = explicit_port;
    url->target.ptr = auth_end;
    url->target.len = (size_t)(e - auth_end);
    const char *q = memchr(auth_end, '?', (size_t)(e - auth_end));
    url->path.ptr = auth_end;
    url->path.len = (size_t)((q != NULL ? q : e) - auth_end);
    if (q != NULL) {
        url->query.ptr = q + 1;
        url->query.len = (size_t)(e - q - 1);
    } else {
        url->query.ptr = e;
        url->query.len = 0;
    }
    return KZ_OK;
}

static size_t put_u16(char *out, uint16_t v)
{
    char tmp[5];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

int kz_url_host_header(const struct kz_url *url, char *out, size_t cap)
{
    if (url == NULL || (out == NULL && cap != 0) || url->host.len > 1024)
        return KZ_ERR_INVALID_ARGUMENT;
    char port[6];
    size_t port_len = 0;
    if (url->port != (url->tls ? 443 : 80)) {
        port[0] = ':';
        port_len = 1 + put_u16(port + 1, url->port);
    }
    size_t brackets = url->host_is_ipv6 ? 2 : 0;
    size_t need = url->host.len + brackets + port_len;
    if (need + 1 > cap)
        return KZ_ERR_BUFFER_TOO_SMALL;
    char *o = out;
    if (url->host_is_ipv6)
        *o++ = '[';
    memcpy(o, url->host.ptr, url->host.len);
    o += url->host.len;
    if (url->host_is_ipv6)
        *o++ = ']';
    memcpy(o, port, port_len);
    o[port_len] = '\0';
    return (int)need;
}

int kz_url_target(const struct kz_url *url, char *out, size_t cap)
{
    if (url == NULL || (out == NULL && cap != 0) || url->target.len > INT32_MAX - 2)
        return KZ_ERR_INVALID_ARGUMENT;
    bool slash = url->target.len == 0 || url->target.ptr[0] != '/';
    size_t need = url->target.len + (slash ? 1 : 0);
    if (need + 1 > cap)
        return KZ_ERR_BUFFER_TOO_SMALL;
    if (slash)
        out[0] = '/';
    if (url->target.len != 0)
        memcpy(out + (slash ? 1 : 0), url->target.ptr, url->target.len);
    out[need] = '\0';
    return (int)need;
}
