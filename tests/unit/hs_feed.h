/*
 * Feeding an HTTP head to the handshake parsers every way a connection
 * could: whole, each prefix alone, one byte at a time, and resumed after
 * every split point, each call reading from a buffer that ends at a guard
 * page. Shared by the handshake tests.
 */
#ifndef KZ_TEST_HS_FEED_H
#define KZ_TEST_HS_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kaze/handshake.h"

#define MAX_HEADERS 64

struct parsed {
    bool response;
    uint8_t *buf; /* guard copy of the whole text */
    size_t len;
    int rc;
    struct kz_header headers[MAX_HEADERS];
    struct kz_hs_request req;
    struct kz_hs_response resp;
};

/*
 * Parses `text` whole and every other way; all must agree. Returns the
 * whole text's answer and leaves its parse in *out (free with parsed_free()).
 */
int parse_every_way(struct parsed *out, bool response, const char *text, size_t len,
                    size_t max_headers, size_t max_size);
/* parse_every_way() of a NUL-terminated request or response, default limits. */
int parse_req(struct parsed *out, const char *text);
int parse_resp(struct parsed *out, const char *text);
void parsed_free(struct parsed *p);
/* A span equals a C string. */
void str_is(struct kz_str s, const char *expected);

#endif
