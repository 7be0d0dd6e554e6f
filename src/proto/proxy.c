/*
 * HTTP proxies for the client role: the proxy's URL, the choice between
 * the environment's proxies and no_proxy, the CONNECT request and the
 * proxy's answer (RFC 9110 §9.3.6).
 */
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>

#include "kaze/client.h"
#include "kaze/handshake.h"
#include "proto/client_internal.h"

/* Bounds that keep every size in range of an int, and the stack small. */
#define KZ_PROXY_MAX_USERINFO 1024
#define KZ_PROXY_MAX_HOST     1024

/* ------------------------------------------------------------------------
 * The proxy's URL
 */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decodes userinfo's percent escapes ("p%40ss" is "p@ss") into `out`, which
 * holds at least `len` bytes. Refuses raw control characters, a '%' not
 * followed by two hex digits, and an escape that decodes to CR, LF or NUL.
 * Returns the decoded length or -1.
 */
static long decode_userinfo(const char *s, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < ' ' || c == 0x7f)
            return -1;
        if (c == '%') {
            int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi * 16 + lo);
            if (c == '\r' || c == '\n' || c == '\0')
                return -1;
            i += 2;
        }
        out[n++] = (char)c;
    }
    return (long)n;
}

/* Userinfo in a URL: visible ASCII, escapes well formed. */
static bool userinfo_valid(const char *s, size_t len)
{
    char tmp[KZ_PROXY_MAX_USERINFO];
    if (len == 0 || len > sizeof(tmp))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || c == '/' || c == '@')
            return false;
    }
    return decode_userinfo(s, len, tmp) >= 0;
}

int kz_proxy_parse(const char *text, size_t len, struct kz_proxy *proxy)
{
    if (proxy == NULL || (text == NULL && len != 0))
        return KZ_ERR_INVALID_ARGUMENT;
    memset(proxy, 0, sizeof(*proxy));
    const char *p = text;
    const char *e = text + len;
    /* A scheme is whatever comes before "://"; only http is supported. */
    for (const char *s = p; e - s >= 3; s++) {
        if (s[0] == ':' && s[1] == '/' && s[2] == '/') {
            if (!kz_cli_ieq(p, (size_t)(s - p), "http", 4))
                return KZ_ERR_INVALID_ARGUMENT;
            p = s + 3;
            break;
        }
    }
    /* "http://proxy:3128/" is common in the environment: one '/' may end it. */
    if (e > p && e[-1] == '/')
        e--;
    const char *at = NULL;
    for (const char *s = p; s < e; s++) {
        if (*s == '@')
            at = s;
    }
    if (at != NULL) {
        if (!userinfo_valid(p, (size_t)(at - p)))
            return KZ_ERR_INVALID_ARGUMENT;
        proxy->userinfo.ptr = p;
        proxy->userinfo.len = (size_t)(at - p);
        p = at + 1;
    }
    bool ipv6;
    const char *q = kz_cli_host(p, e, &proxy->host, &ipv6);
    if (q == NULL)
        return KZ_ERR_INVALID_ARGUMENT;
    proxy->port = 80;
    if (q < e && (*q != ':' || !kz_cli_port(q + 1, e, &proxy->port)))
        return KZ_ERR_INVALID_ARGUMENT;
    return KZ_OK;
}

/* ------------------------------------------------------------------------
 * Choosing a proxy
 */

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Does one no_proxy entry (trimmed, non-empty) cover `url`? An entry is
 * "*", a host name or domain (".example.com", "*.example.com" and
 * "example.com" all cover example.com and its subdomains), an IP address
 * (matched exactly; IPv6 with or without brackets), each with an optional
 * ":port" that must then be the URL's port. An entry that cannot be read
 * covers nothing.
 */
static bool entry_matches(const char *s, size_t len, const struct kz_url *url)
{
    if (len == 1 && s[0] == '*')
        return true;
    const char *e = s + len;
    const char *host = s;
    const char *host_end = e;
    const char *port = NULL;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return false;
        host = s + 1;
        host_end = close;
        if (close + 1 < e) {
            if (close[1] != ':')
                return false;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', len);
        /* More than one ':' without brackets: an IPv6 address, no port. */
        if (colon != NULL && memchr(colon + 1, ':', (size_t)(e - colon - 1)) == NULL) {
            host_end = colon;
            port = colon + 1;
        }
    }
    if (port != NULL) {
        uint16_t n;
        if (!kz_cli_port(port, e, &n) || n != url->port)
            return false;
    }
    size_t hlen = (size_t)(host_end - host);
    if (host_end - host >= 2 && host[0] == '*' && host[1] == '.') {
        host++;
        hlen--;
    }
    if (hlen > 0 && host[0] == '.') {
        host++;
        hlen--;
    }
    if (hlen == 0)
        return false;
    if (kz_cli_ieq(host, hlen, url->host.ptr, url->host.len))
        return true;
    /* Addresses match only exactly: "0.0.1" must not cover 10.0.0.1. */
    if (url->host_is_ipv6 || kz_cli_is_ipv4(url->host.ptr, url->host.len))
        return false;
    /* With or without the leading dot, an entry covers subdomains. */
    return url->host.len > hlen && url->host.ptr[url->host.len - hlen - 1] == '.' &&
           kz_cli_ieq(host, hlen, url->host.ptr + url->host.len - hlen, hlen);
}

static bool no_proxy_matches(const char *list, const struct kz_url *url)
{
    const char *p = list;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *a = p;
        const char *b = end;
        while (a < b && is_space(*a))
            a++;
        while (b > a && is_space(b[-1]))
            b--;
        if (a < b && entry_matches(a, (size_t)(b - a), url))
            return true;
        p = *end == ',' ? end + 1 : end;
    }
    return false;
}

const char *kz_proxy_select(const struct kz_url *url, const char *http_proxy,
                            const char *https_proxy, const char *no_proxy)
{
    if (url == NULL || url->host.ptr == NULL)
        return NULL;
    const char *proxy = url->tls ? https_proxy : http_proxy;
    if (proxy == NULL || proxy[0] == '\0')
        return NULL;
    if (no_proxy != NULL && no_proxy_matches(no_proxy, url))
        return NULL;
    return proxy;
}

/* ------------------------------------------------------------------------
 * CONNECT
 */

static bool visible(struct kz_str s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

/* "host:port", or "[host]:port" for IPv6; returns the length. */
static size_t put_authority(char *o, struct kz_str host, bool ipv6, const char *port,
                            size_t port_len)
{
    char *start = o;
    if (ipv6)
        *o++ = '[';
    memcpy(o, host.ptr, host.len);
    o += host.len;
    if (ipv6)
        *o++ = ']';
    *o++ = ':';
    memcpy(o, port, port_len);
    return (size_t)(o + port_len - start);
}

#define LIT(o, s) (memcpy((o), (s), sizeof(s) - 1), (o) += sizeof(s) - 1)

int kz_proxy_write_connect(char *out, size_t cap, const struct kz_proxy *proxy, struct kz_str host,
                           uint16_t port)
{
    static const char line_start[] = "CONNECT ";
    static const char line_end[] = " HTTP/1.1\r\nHost: ";
    static const char auth_start[] = "Proxy-Authorization: Basic ";
    if (proxy == NULL || (out == NULL && cap != 0) || host.ptr == NULL || host.len == 0 ||
        host.len > KZ_PROXY_MAX_HOST || port == 0 || !visible(host) ||
        (proxy->userinfo.len != 0 && proxy->userinfo.ptr == NULL) ||
        proxy->userinfo.len > KZ_PROXY_MAX_USERINFO)
        return KZ_ERR_INVALID_ARGUMENT;
    char user[KZ_PROXY_MAX_USERINFO];
    long user_len = decode_userinfo(proxy->userinfo.ptr, proxy->userinfo.len, user);
    if (user_len < 0)
        return KZ_ERR_INVALID_ARGUMENT;
    bool ipv6 = memchr(host.ptr, ':', host.len) != NULL;
    char digits[5];
    size_t nd = 0;
    for (uint16_t v = port; v != 0; v /= 10)
        digits[sizeof(digits) - 1 - nd++] = (char)('0' + v % 10);
    const char *port_s = digits + sizeof(digits) - nd;

    size_t auth_len = host.len + (ipv6 ? 2 : 0) + 1 + nd;
    size_t b64_len = ((size_t)user_len + 2) / 3 * 4;
    size_t need = sizeof(line_start) - 1 + auth_len + sizeof(line_end) - 1 + auth_len + 2;
    if (user_len != 0)
        need += sizeof(auth_start) - 1 + b64_len + 2;
    need += 2;
    if (need > cap)
        return KZ_ERR_BUFFER_TOO_SMALL;

    char *o = out;
    LIT(o, line_start);
    o += put_authority(o, host, ipv6, port_s, nd);
    LIT(o, line_end);
    o += put_authority(o, host, ipv6, port_s, nd);
    LIT(o, "\r\n");
    if (user_len != 0) {
        LIT(o, auth_start);
        /* EVP_EncodeBlock adds a NUL, which lands where "\r\n" goes next. */
        o += EVP_EncodeBlock((unsigned char *)o, (const unsigned char *)user, (int)user_len);
        LIT(o, "\r\n");
    }
    LIT(o, "\r\n");
    return (int)(o - out);
}

/* ------------------------------------------------------------------------
 * The proxy's answer
 */

/* Header lines a CONNECT answer may carry before it counts as too large. */
#define PROXY_MAX_HEADERS 32

int kz_proxy_parse_reply(const char *buf, size_t len, size_t prev_len, size_t max_size, int *status)
{
    struct kz_header headers[PROXY_MAX_HEADERS];
    struct kz_hs_response resp = {
        .headers = headers,
        .max_headers = PROXY_MAX_HEADERS,
    };
    int n = kz_hs_parse_response(buf, len, prev_len, max_size, &resp);
    if (n < 0)
        return n;
    if (status != NULL)
        *status = resp.status;
    return resp.status >= 200 && resp.status <= 299 ? n : KZ_ERR_PROXY;
}
