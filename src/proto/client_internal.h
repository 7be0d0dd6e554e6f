/*
 * Pieces the URL and proxy parsers share: host names, IP literals and ports
 * as they appear in the authority part of a URL (RFC 3986 §3.2).
 */
#ifndef KZ_CLIENT_INTERNAL_H
#define KZ_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kaze/common.h"

/* ASCII case-insensitive equality of two byte strings. */
bool kz_cli_ieq(const char *a, size_t alen, const char *b, size_t blen);

/* True if the `len` bytes are a dotted-quad IPv4 address / an IPv6 address. */
bool kz_cli_is_ipv4(const char *s, size_t len);
bool kz_cli_is_ipv6(const char *s, size_t len);

/*
 * Reads a host at `p` (before `e`): a bracketed IPv6 literal, a dotted-quad
 * IPv4 address, or a registered name of letters, digits, '-' and '.'
 * (non-empty labels of at most 63 bytes, 253 bytes in all, one trailing dot
 * allowed; all-numeric names must be valid IPv4). Stops at the first byte
 * that cannot belong to the host. Sets *host (without brackets) and *ipv6
 * and returns where the host ends, or NULL if there is no valid host.
 */
const char *kz_cli_host(const char *p, const char *e, struct kz_str *host, bool *ipv6);

/* Reads a port of 1 to 5 digits, 1..65535, filling exactly [p, e). */
bool kz_cli_port(const char *p, const char *e, uint16_t *port);

#endif
