/*
 * libFuzzer target for what a client parses from the network or its user,
 * besides the handshake response itself (fuzz_handshake): a proxy's answer
 * to CONNECT, the server's permessage-deflate answer, and ws:// URLs. The
 * first byte picks the parser; the rest is its input.
 *
 * Checked: the proxy reply parser gives the same result whole and fed one
 * byte at a time, and only its documented results; an agreed deflate answer
 * stays within what was offered (windows 8..15, no larger than offered,
 * client_max_window_bits only when offered); a parsed URL's spans lie in
 * the text, its port is 1..65535, and the Host header and request target it
 * writes fit and start as they must.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kaze/client.h"
#include "kaze/deflate.h"
#include "kaze/handshake.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool inside(struct kz_str s, const char *buf, size_t len)
{
    return s.len == 0 || (s.ptr >= buf && s.ptr + s.len <= buf + len);
}

static void fuzz_proxy_reply(const char *buf, size_t len)
{
    int status = -1;
    int whole = kz_proxy_parse_reply(buf, len, 0, 4096, &status);
    CHECK(whole > 0 || whole == KZ_ERR_PARTIAL || whole == KZ_ERR_PROXY ||
          whole == KZ_ERR_HS_RESP_MALFORMED || whole == KZ_ERR_HS_RESP_TOO_LARGE);
    if (whole > 0)
        CHECK((size_t)whole <= len && status >= 200 && status <= 299);
    if (whole == KZ_ERR_PROXY)
        CHECK(status >= 0 && status <= 999 && (status < 200 || status > 299));
    int r = KZ_ERR_PARTIAL;
    int st = -1;
    for (size_t k = 1; k <= len && r == KZ_ERR_PARTIAL; k++)
        r = kz_proxy_parse_reply(buf, k, k - 1, 4096, &st);
    CHECK(r == whole);
    if (r > 0 || r == KZ_ERR_PROXY)
        CHECK(st == status);
}

static void fuzz_deflate_answer(const char *buf, size_t len, uint8_t how)
{
    struct kz_header lines[32];
    struct kz_hs_response resp = {.headers = lines, .max_headers = 32};
    if (kz_hs_parse_response(buf, len, 0, 8192, &resp) <= 0)
        return;
    struct kz_pmd_offer offer;
    kz_pmd_offer_default(&offer);
    offer.server_no_context_takeover = how & 1;
    offer.client_no_context_takeover = how & 2;
    offer.server_max_window_bits = (how & 4) ? (uint8_t)(8 + (how >> 5)) : 0;
    if (how & 8) {
        offer.client_max_window_bits = 0;
        offer.client_max_window_bits_bare = false;
    }
    struct kz_pmd_params p;
    int rc = kz_pmd_check_response(resp.headers, resp.num_headers, &offer, &p);
    CHECK(rc == 0 || rc == 1 || rc == KZ_ERR_HS_RESP_EXTENSION);
    if (rc != 1)
        return;
    CHECK(p.server_max_window_bits >= 8 && p.server_max_window_bits <= 15);
    CHECK(p.client_max_window_bits >= 8 && p.client_max_window_bits <= 15);
    if (offer.server_max_window_bits)
        CHECK(p.server_max_window_bits <= offer.server_max_window_bits);
    if (offer.server_no_context_takeover)
        CHECK(p.server_no_context_takeover);
    if (!offer.client_max_window_bits && !offer.client_max_window_bits_bare)
        CHECK(p.client_max_window_bits == 15);
}

static void fuzz_url(const char *buf, size_t len)
{
    struct kz_url url;
    if (kz_url_parse(buf, len, &url) != KZ_OK)
        return;
    CHECK(url.host.len > 0 && inside(url.host, buf, len));
    CHECK(inside(url.target, buf, len) && inside(url.path, buf, len) &&
          inside(url.query, buf, len));
    CHECK(url.port >= 1);
    char out[1024];
    int n = kz_url_host_header(&url, out, sizeof(out));
    CHECK(n == KZ_ERR_BUFFER_TOO_SMALL || (n > 0 && (size_t)n == strlen(out)));
    n = kz_url_target(&url, out, sizeof(out));
    CHECK(n == KZ_ERR_BUFFER_TOO_SMALL || (n > 0 && out[0] == '/' && (size_t)n == strlen(out)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t which = data[0];
    /* Each parser gets a buffer of the input's exact size, so ASan sees any over-read. */
    size_t len = size - 1;
    char *buf = malloc(len);
    memcpy(buf, data + 1, len);
    switch (which % 3) {
    case 0:
        fuzz_proxy_reply(buf, len);
        break;
    case 1:
        fuzz_deflate_answer(buf, len, (uint8_t)(which / 3));
        break;
    default:
        fuzz_url(buf, len);
        break;
    }
    free(buf);
    return 0;
}
