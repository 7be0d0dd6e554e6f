/*
 * The client's half of the opening handshake (RFC 6455 §4.1): a fresh key,
 * the upgrade request, and the judgement of the server's answer, with one
 * error per reason a client must fail the connection.
 */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "hs_internal.h"

int kz_hs_client_key(char out[KZ_HS_KEY_LEN + 1])
{
    if (out == NULL)
        return KZ_ERR_INVALID_ARGUMENT;
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return KZ_ERR_CRYPTO;
    /* 16 bytes encode to exactly 24 characters, then a NUL. */
    EVP_EncodeBlock((unsigned char *)out, nonce, sizeof(nonce));
    return KZ_OK;
}

/* ------------------------------------------------------------------------
 * The request
 */

/* An origin-form target we can put on the request line as it is. */
static bool target_valid(struct kz_str t)
{
    if (t.len == 0)
        return true;
    if (t.ptr == NULL || t.ptr[0] != '/')
        return false;
    for (size_t i = 0; i < t.len; i++) {
        unsigned char c = (unsigned char)t.ptr[i];
        if (c <= ' ' || c == 0x7f)
            return false;
    }
    return true;
}

/* Tokens, each offered once: anything else our own server would refuse. */
static bool protocols_valid(const struct kz_str *p, size_t n)
{
    if (p == NULL)
        return n == 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].ptr == NULL || !kz_hsi_is_token(p[i].ptr, p[i].len))
            return false;
        for (size_t k = 0; k < i; k++) {
            if (p[k].len == p[i].len && memcmp(p[k].ptr, p[i].ptr, p[i].len) == 0)
                return false;
        }
    }
    return true;
}

static bool request_valid(const struct kz_hs_client_request *r, const char *key)
{
    return r->host.len != 0 && kz_hsi_safe_value(r->host) && target_valid(r->target) &&
           kz_hsi_safe_value(r->origin) && protocols_valid(r->protocols, r->num_protocols) &&
           kz_hsi_safe_value(r->extensions) &&
           kz_hsi_safe_headers(r->extra_headers, r->num_extra_headers) &&
           kz_hsi_key_valid(key, KZ_HS_KEY_LEN);
}

int kz_hs_write_request(char *out, size_t cap, const struct kz_hs_client_request *r,
                        const char key[KZ_HS_KEY_LEN])
{
    if (r == NULL || key == NULL || (out == NULL && cap != 0) || !request_valid(r, key))
        return KZ_ERR_INVALID_ARGUMENT;
    struct kz_hsi_out o = {out, cap, 0, false};
    KZ_HSI_PUT_LIT(&o, "GET ");
    if (r->target.len != 0)
        kz_hsi_put(&o, r->target.ptr, r->target.len);
    else
        KZ_HSI_PUT_LIT(&o, "/");
    KZ_HSI_PUT_LIT(&o, " HTTP/1.1\r\nHost: ");
    kz_hsi_put(&o, r->host.ptr, r->host.len);
    KZ_HSI_PUT_LIT(&o, "\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Key: ");
    kz_hsi_put(&o, key, KZ_HS_KEY_LEN);
    KZ_HSI_PUT_LIT(&o, "\r\n"
                       "Sec-WebSocket-Version: 13\r\n");
    if (r->origin.len != 0)
        kz_hsi_put_header(&o, "Origin", 6, r->origin);
    if (r->num_protocols != 0) {
        KZ_HSI_PUT_LIT(&o, "Sec-WebSocket-Protocol: ");
        for (size_t i = 0; i < r->num_protocols; i++) {
            if (i != 0)
                KZ_HSI_PUT_LIT(&o, ", ");
            kz_hsi_put(&o, r->protocols[i].ptr, r->protocols[i].len);
        }
        KZ_HSI_PUT_LIT(&o, "\r\n");
    }
    if (r->extensions.len != 0)
        kz_hsi_put_header(&o, "Sec-WebSocket-Extensions", 24, r->extensions);
    kz_hsi_put_extra(&o, r->extra_headers, r->num_extra_headers);
    KZ_HSI_PUT_LIT(&o, "\r\n");
    return kz_hsi_out_result(&o);
}

/* ------------------------------------------------------------------------
 * Judging the response
 */

/* §4.1 step 2: Upgrade is there and says "websocket", and nothing else. */
static bool upgrade_is_websocket(const struct kz_header *h, size_t n)
{
    struct kz_hs_iter it = {0, 0};
    struct kz_str item;
    size_t count = 0;
    while (kz_hs_list_next(h, n, "Upgrade", &it, &item)) {
        if (!kz_hsi_ieq(item, "websocket", 9))
            return false;
        count++;
    }
    return count != 0;
}

/* §4.1 step 4: one Sec-WebSocket-Accept, and the right one. */
static int check_accept(const struct kz_header *h, size_t n, const char *key)
{
    if (kz_hsi_count(h, n, "Sec-WebSocket-Accept") != 1)
        return KZ_ERR_HS_RESP_ACCEPT;
    char expected[KZ_HS_ACCEPT_LEN + 1];
    int err = kz_hs_accept_key(key, KZ_HS_KEY_LEN, expected);
    if (err != KZ_OK)
        return err;
    struct kz_str got = kz_hs_header(h, n, "Sec-WebSocket-Accept");
    if (got.len != KZ_HS_ACCEPT_LEN || memcmp(got.ptr, expected, KZ_HS_ACCEPT_LEN) != 0)
        return KZ_ERR_HS_RESP_ACCEPT;
    return KZ_OK;
}

/*
 * §4.1 step 6: at most one Sec-WebSocket-Protocol, holding a single token
 * that the client offered (subprotocol names are case-sensitive).
 */
static int check_subprotocol(const struct kz_header *h, size_t n,
                             const struct kz_hs_client_request *offered, struct kz_str *chosen)
{
    size_t count = kz_hsi_count(h, n, "Sec-WebSocket-Protocol");
    if (count == 0)
        return KZ_OK;
    if (count > 1 || offered == NULL || offered->protocols == NULL)
        return KZ_ERR_HS_RESP_SUBPROTOCOL;
    struct kz_str v = kz_hs_header(h, n, "Sec-WebSocket-Protocol");
    if (!kz_hsi_is_token(v.ptr, v.len))
        return KZ_ERR_HS_RESP_SUBPROTOCOL;
    for (size_t i = 0; i < offered->num_protocols; i++) {
        struct kz_str p = offered->protocols[i];
        if (p.len == v.len && memcmp(p.ptr, v.ptr, v.len) == 0) {
            *chosen = v;
            return KZ_OK;
        }
    }
    return KZ_ERR_HS_RESP_SUBPROTOCOL;
}

/* True if the client's offer names extension `name`. */
static bool extension_offered(struct kz_str offer, struct kz_str name)
{
    if (offer.len == 0)
        return false;
    /* The offer is a header value: iterate it as the one header of a list. */
    struct kz_header line = {{"Sec-WebSocket-Extensions", 24}, offer};
    struct kz_hs_iter it = {0, 0};
    struct kz_ext_offer ext;
    while (kz_hs_next_extension(&line, 1, &it, &ext) > 0) {
        if (kz_hsi_ieq(ext.name, name.ptr, name.len))
            return true;
    }
    return false;
}

/* §4.1 step 5 and §9.1: every extension accepted was offered. */
static int check_extensions(const struct kz_header *h, size_t n,
                            const struct kz_hs_client_request *offered)
{
    struct kz_str offer = {NULL, 0};
    if (offered != NULL)
        offer = offered->extensions;
    struct kz_hs_iter it = {0, 0};
    struct kz_ext_offer ext;
    int r;
    while ((r = kz_hs_next_extension(h, n, &it, &ext)) > 0) {
        if (!extension_offered(offer, ext.name))
            return KZ_ERR_HS_RESP_EXTENSION;
    }
    return r == 0 ? KZ_OK : KZ_ERR_HS_RESP_EXTENSION;
}

int kz_hs_check_response(const struct kz_hs_response *resp, const char key[KZ_HS_KEY_LEN],
                         const struct kz_hs_client_request *offered, struct kz_str *subprotocol)
{
    struct kz_str chosen = {NULL, 0};
    if (subprotocol != NULL)
        *subprotocol = chosen;
    if (resp == NULL || key == NULL || (resp->headers == NULL && resp->num_headers != 0))
        return KZ_ERR_INVALID_ARGUMENT;
    const struct kz_header *h = resp->headers;
    size_t n = resp->num_headers;

    if (resp->status != 101)
        return KZ_ERR_HS_RESP_STATUS;
    if (!upgrade_is_websocket(h, n))
        return KZ_ERR_HS_RESP_UPGRADE;
    if (!kz_hs_list_has(h, n, "Connection", "Upgrade"))
        return KZ_ERR_HS_RESP_CONNECTION;
    int err = check_accept(h, n, key);
    if (err != KZ_OK)
        return err;
    err = check_subprotocol(h, n, offered, &chosen);
    if (err != KZ_OK)
        return err;
    err = check_extensions(h, n, offered);
    if (err != KZ_OK)
        return err;
    if (subprotocol != NULL)
        *subprotocol = chosen;
    return KZ_OK;
}
