/*
 * The server's half of the opening handshake (RFC 6455 §4.2): judging a
 * parsed request, computing Sec-WebSocket-Accept, and writing the 101 answer
 * or a refusal. Answers are built with memcpy into the caller's buffer: this
 * runs once per connection, on the accept path.
 */
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>

#include "hs_internal.h"

/*
 * Duplicate subprotocols are found by comparing each with those before it;
 * bounding how many a request may offer keeps that cheap whatever the head
 * size limit is. Real clients offer a handful.
 */
#define MAX_OFFERED_PROTOCOLS 64

static const char websocket_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ------------------------------------------------------------------------
 * Writers, shared with the client
 */

void kz_hsi_put_header(struct kz_hsi_out *o, const char *name, size_t name_len, struct kz_str value)
{
    kz_hsi_put(o, name, name_len);
    KZ_HSI_PUT_LIT(o, ": ");
    kz_hsi_put(o, value.ptr, value.len);
    KZ_HSI_PUT_LIT(o, "\r\n");
}

int kz_hsi_out_result(const struct kz_hsi_out *o)
{
    if (o->full || o->len > INT_MAX)
        return KZ_ERR_BUFFER_TOO_SMALL;
    return (int)o->len;
}

bool kz_hsi_safe_value(struct kz_str v)
{
    if (v.len == 0)
        return true;
    if (v.ptr == NULL)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] == '\r' || v.ptr[i] == '\n' || v.ptr[i] == '\0')
            return false;
    }
    return true;
}

bool kz_hsi_safe_headers(const struct kz_header *h, size_t n)
{
    if (h == NULL)
        return n == 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name.ptr == NULL || !kz_hsi_is_token(h[i].name.ptr, h[i].name.len) ||
            !kz_hsi_safe_value(h[i].value))
            return false;
    }
    return true;
}

void kz_hsi_put_extra(struct kz_hsi_out *o, const struct kz_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kz_hsi_put_header(o, h[i].name.ptr, h[i].name.len, h[i].value);
}

/* ------------------------------------------------------------------------
 * Judging the request
 */

/*
 * 22 base64 characters and "==" are exactly 16 bytes, so checking the
 * alphabet is the whole of decoding for validation. The 4 bits of padding
 * in the last character are not required to be zero: RFC 6455's own
 * example key ("...EC==") has them set.
 */
bool kz_hsi_key_valid(const char *key, size_t len)
{
    if (key == NULL || len != KZ_HS_KEY_LEN || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        if (!(kz_hsi_class[(unsigned char)key[i]] & KZ_HSI_B64))
            return false;
    }
    return true;
}

/* Bytes after the head are frames, never a body: no framing may announce one. */
static bool announces_body(const struct kz_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (kz_hsi_ieq(h[i].name, "transfer-encoding", 17))
            return true;
        if (kz_hsi_ieq(h[i].name, "content-length", 14)) {
            struct kz_str v = h[i].value;
            if (v.len == 0)
                return true;
            for (size_t j = 0; j < v.len; j++) {
                if (v.ptr[j] != '0')
                    return true;
            }
        }
    }
    return false;
}

static bool str_eq(struct kz_str a, struct kz_str b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/*
 * Every Sec-WebSocket-Protocol line is 1#token, and a subprotocol may not be
 * offered twice (§4.1 item 10) across all of them.
 */
static bool protocols_valid(const struct kz_header *h, size_t n)
{
    struct kz_str seen[MAX_OFFERED_PROTOCOLS];
    size_t num_seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (!kz_hsi_ieq(h[i].name, "sec-websocket-protocol", 22))
            continue;
        size_t pos = 0;
        struct kz_str item;
        bool any = false;
        while (kz_hsi_list_step(h[i].value, &pos, &item)) {
            if (!kz_hsi_is_token(item.ptr, item.len) || num_seen == MAX_OFFERED_PROTOCOLS)
                return false;
            for (size_t k = 0; k < num_seen; k++) {
                if (str_eq(seen[k], item))
                    return false;
            }
            seen[num_seen++] = item;
            any = true;
        }
        if (!any)
            return false;
    }
    return true;
}

static bool extensions_valid(const struct kz_header *h, size_t n)
{
    struct kz_hs_iter it = {0, 0};
    struct kz_ext_offer ext;
    int r;
    while ((r = kz_hs_next_extension(h, n, &it, &ext)) > 0)
        ;
    return r == 0;
}

int kz_hs_check_request(const struct kz_hs_request *req)
{
    if (req == NULL || (req->headers == NULL && req->num_headers != 0))
        return KZ_ERR_INVALID_ARGUMENT;
    const struct kz_header *h = req->headers;
    size_t n = req->num_headers;
    struct kz_str path, query;

    /* The method is case-sensitive (RFC 7231 §4.1). */
    if (req->method.len != 3 || memcmp(req->method.ptr, "GET", 3) != 0)
        return KZ_ERR_HS_METHOD;
    if (req->http_minor < 1)
        return KZ_ERR_HS_HTTP_VERSION;
    if (!kz_hsi_split_target(req->target, &path, &query))
        return KZ_ERR_HS_BAD_TARGET;
    if (req->host.ptr == NULL || req->host.len == 0 || (req->dup_mask & KZ_HS_SEEN_HOST))
        return KZ_ERR_HS_NO_HOST;
    if (!kz_hs_list_has(h, n, "Upgrade", "websocket"))
        return KZ_ERR_HS_NO_UPGRADE;
    if (!kz_hs_list_has(h, n, "Connection", "Upgrade"))
        return KZ_ERR_HS_NO_CONNECTION;
    if (announces_body(h, n))
        return KZ_ERR_HS_BODY;
    if (req->version.ptr == NULL)
        return KZ_ERR_HS_NO_VERSION;
    if ((req->dup_mask & KZ_HS_SEEN_VERSION) || req->version.len != 2 ||
        memcmp(req->version.ptr, "13", 2) != 0)
        return KZ_ERR_HS_VERSION;
    if ((req->dup_mask & KZ_HS_SEEN_KEY) || !kz_hsi_key_valid(req->key.ptr, req->key.len))
        return KZ_ERR_HS_BAD_KEY;
    if (!protocols_valid(h, n))
        return KZ_ERR_HS_BAD_PROTOCOLS;
    if (!extensions_valid(h, n))
        return KZ_ERR_HS_BAD_EXTENSIONS;
    return KZ_OK;
}

int kz_hs_err_status(int err)
{
    switch (err) {
    case KZ_ERR_HS_MALFORMED:
    case KZ_ERR_HS_HTTP_VERSION:
    case KZ_ERR_HS_BAD_TARGET:
    case KZ_ERR_HS_NO_HOST:
    case KZ_ERR_HS_NO_UPGRADE:
    case KZ_ERR_HS_NO_CONNECTION:
    case KZ_ERR_HS_BODY:
    case KZ_ERR_HS_BAD_KEY:
    case KZ_ERR_HS_BAD_PROTOCOLS:
    case KZ_ERR_HS_BAD_EXTENSIONS:
        return 400;
    case KZ_ERR_HS_METHOD:
        return 405;
    case KZ_ERR_HS_NO_VERSION:
    case KZ_ERR_HS_VERSION:
        return 426;
    case KZ_ERR_HS_TOO_LARGE:
    case KZ_ERR_HS_TOO_MANY_HEADERS:
        return 431;
    default:
        return 500;
    }
}

/* ------------------------------------------------------------------------
 * Answers
 */

struct kz_sha1 {
    EVP_MD *md;
};

struct kz_sha1 *kz_sha1_new(void)
{
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA1", NULL);
    if (md == NULL)
        return NULL;
    struct kz_sha1 *sha = OPENSSL_malloc(sizeof(*sha));
    if (sha == NULL) {
        EVP_MD_free(md);
        return NULL;
    }
    sha->md = md;
    return sha;
}

void kz_sha1_free(struct kz_sha1 *sha)
{
    if (sha == NULL)
        return;
    EVP_MD_free(sha->md);
    OPENSSL_free(sha);
}

int kz_hs_accept_key_with(const struct kz_sha1 *sha, const char *key, size_t key_len,
                          char out[KZ_HS_ACCEPT_LEN + 1])
{
    if (key == NULL || out == NULL || key_len != KZ_HS_KEY_LEN)
        return KZ_ERR_INVALID_ARGUMENT;
    unsigned char in[KZ_HS_KEY_LEN + sizeof(websocket_guid) - 1];
    memcpy(in, key, KZ_HS_KEY_LEN);
    memcpy(in + KZ_HS_KEY_LEN, websocket_guid, sizeof(websocket_guid) - 1);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    /* EVP_sha1() makes OpenSSL 3 look the digest up on every call; a fetched one does not. */
    const EVP_MD *md = sha ? sha->md : EVP_sha1();
    if (!EVP_Digest(in, sizeof(in), digest, &digest_len, md, NULL) || digest_len != 20)
        return KZ_ERR_CRYPTO;
    /* 20 bytes encode to exactly 28 characters, then a NUL. */
    EVP_EncodeBlock((unsigned char *)out, digest, 20);
    return KZ_OK;
}

int kz_hs_accept_key(const char *key, size_t key_len, char out[KZ_HS_ACCEPT_LEN + 1])
{
    return kz_hs_accept_key_with(NULL, key, key_len, out);
}

int kz_hs_write_response(char *out, size_t cap, const struct kz_hs_request *req,
                         const struct kz_hs_accept *acc)
{
    if (req == NULL || (out == NULL && cap != 0))
        return KZ_ERR_INVALID_ARGUMENT;
    struct kz_str none = {NULL, 0};
    struct kz_str subprotocol = acc ? acc->subprotocol : none;
    struct kz_str extensions = acc ? acc->extensions : none;
    if (subprotocol.len != 0 &&
        (subprotocol.ptr == NULL || !kz_hsi_is_token(subprotocol.ptr, subprotocol.len)))
        return KZ_ERR_INVALID_ARGUMENT;
    if (!kz_hsi_safe_value(extensions) ||
        (acc && !kz_hsi_safe_headers(acc->extra_headers, acc->num_extra_headers)))
        return KZ_ERR_INVALID_ARGUMENT;
    char accept[KZ_HS_ACCEPT_LEN + 1];
    int err = kz_hs_accept_key_with(acc ? acc->sha1 : NULL, req->key.ptr, req->key.len, accept);
    if (err != KZ_OK)
        return err;

    struct kz_hsi_out o = {out, cap, 0, false};
    KZ_HSI_PUT_LIT(&o, "HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: ");
    kz_hsi_put(&o, accept, KZ_HS_ACCEPT_LEN);
    KZ_HSI_PUT_LIT(&o, "\r\n");
    if (subprotocol.len != 0)
        kz_hsi_put_header(&o, "Sec-WebSocket-Protocol", 22, subprotocol);
    if (extensions.len != 0)
        kz_hsi_put_header(&o, "Sec-WebSocket-Extensions", 24, extensions);
    if (acc)
        kz_hsi_put_extra(&o, acc->extra_headers, acc->num_extra_headers);
    KZ_HSI_PUT_LIT(&o, "\r\n");
    return kz_hsi_out_result(&o);
}

static const char *status_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return status < 500 ? "Client Error" : "Server Error";
    }
}

/* Decimal digits of `v` into `buf` (20 bytes hold any size_t); returns the count. */
static size_t format_size(size_t v, char buf[20])
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

int kz_hs_write_refusal(char *out, size_t cap, int status, const char *reason)
{
    if (status < 400 || status > 599 || (out == NULL && cap != 0))
        return KZ_ERR_INVALID_ARGUMENT;
    const char *phrase = status_phrase(status);
    const char *body = reason != NULL ? reason : phrase;
    size_t body_len = strlen(body);
    char code[3] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10)};
    char length[20];
    size_t length_len = format_size(body_len + 1, length);

    struct kz_hsi_out o = {out, cap, 0, false};
    KZ_HSI_PUT_LIT(&o, "HTTP/1.1 ");
    kz_hsi_put(&o, code, sizeof(code));
    KZ_HSI_PUT_LIT(&o, " ");
    kz_hsi_put(&o, phrase, strlen(phrase));
    KZ_HSI_PUT_LIT(&o, "\r\n"
                       "Connection: close\r\n"
                       "Content-Type: text/plain\r\n"
                       "Content-Length: ");
    kz_hsi_put(&o, length, length_len);
    KZ_HSI_PUT_LIT(&o, "\r\n");
    /* §4.4: tell the client which version we speak. */
    if (status == 426)
        KZ_HSI_PUT_LIT(&o, "Sec-WebSocket-Version: 13\r\n");
    if (status == 405)
        KZ_HSI_PUT_LIT(&o, "Allow: GET\r\n");
    KZ_HSI_PUT_LIT(&o, "\r\n");
    kz_hsi_put(&o, body, body_len);
    KZ_HSI_PUT_LIT(&o, "\n");
    return kz_hsi_out_result(&o);
}
