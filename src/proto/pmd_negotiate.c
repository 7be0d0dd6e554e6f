/*
 * permessage-deflate negotiation (RFC 7692 §5, §7.1): the server's choice
 * among a client's offers, the client's offer, and the client's judgement
 * of the server's answer. Offers and answers are read with the extension
 * grammar of the handshake module; elements are built with memcpy into a
 * stack buffer and copied out whole, so a short buffer is left untouched.
 * Nothing here allocates.
 *
 * Names are compared exactly: the extension is registered as
 * "permessage-deflate" and its parameters in lower case, and every client
 * and server in use sends them so.
 *
 * A window of 8 bits. zlib refuses to compress with a raw 256-byte window
 * (deflateInit2 with -8 fails), so the compression half uses 9 in its
 * place; zlib inflates with 8 well. So:
 *  - a client offer of server_max_window_bits=8 asks for something our
 *    compressor cannot be configured to do: that offer is declined, and the
 *    next one is tried;
 *  - a policy's server window of 8 is answered as 9;
 *  - a server's answer of client_max_window_bits=8 is accepted by the
 *    client: failing the connection is the only alternative, and zlib with a
 *    512-byte window never emits a match farther than 250 bytes back
 *    (MAX_DIST = window - 262), so its output fits a 256-byte window.
 */
#include <string.h>

#include "kaze/deflate.h"

#define PMD_NAME     "permessage-deflate"
#define PMD_NAME_LEN (sizeof(PMD_NAME) - 1)

/* The smallest window our compressor can be set to (see above). */
#define MIN_DEFLATE_WINDOW 9

/* ------------------------------------------------------------------------
 * Parameters as written in one offer or one answer
 */

enum pmd_param {
    P_SERVER_NO_CONTEXT_TAKEOVER,
    P_CLIENT_NO_CONTEXT_TAKEOVER,
    P_SERVER_MAX_WINDOW_BITS,
    P_CLIENT_MAX_WINDOW_BITS,
    P_COUNT,
};

static const struct kz_str param_names[P_COUNT] = {
    {"server_no_context_takeover", 26},
    {"client_no_context_takeover", 26},
    {"server_max_window_bits", 22},
    {"client_max_window_bits", 22},
};

struct pmd_seen {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    uint8_t server_max_window_bits; /* 0: absent */
    uint8_t client_max_window_bits; /* 0: absent or without a value */
    bool client_max_window_bits_present;
};

static bool str_eq(struct kz_str s, const char *lit, size_t len)
{
    return s.len == len && memcmp(s.ptr, lit, len) == 0;
}

/* Equality with a lowercase literal, ignoring the ASCII case of `s`. */
static bool str_ieq_lower(struct kz_str s, const char *lower, size_t len)
{
    if (s.len != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s.ptr[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + ('a' - 'A'));
        if (c != lower[i])
            return false;
    }
    return true;
}

static bool is_pmd(struct kz_str name)
{
    return str_eq(name, PMD_NAME, PMD_NAME_LEN);
}

/*
 * A window value: a decimal integer 8..15 without leading zeroes (§7.1.2.1,
 * §7.1.2.2), possibly quoted. Returns it, or 0 if the value is anything else.
 */
static uint8_t window_value(const struct kz_ext_param *p)
{
    char v[3];
    int len = kz_ext_param_value(p, v, sizeof(v));
    if (len == 1 && (v[0] == '8' || v[0] == '9'))
        return (uint8_t)(v[0] - '0');
    if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return (uint8_t)(10 + (v[1] - '0'));
    return 0;
}

/*
 * Reads the parameters of one permessage-deflate element. False if one is
 * unknown or repeated, has a value where none belongs, lacks one where it
 * is required, or has an invalid one (§7: the server declines such an
 * offer, the client fails on such an answer). client_max_window_bits may
 * go without a value in an offer, never in an answer.
 */
static bool read_params(const struct kz_ext_offer *ext, bool answer, struct pmd_seen *s)
{
    memset(s, 0, sizeof(*s));
    bool seen[P_COUNT] = {false};
    for (size_t i = 0; i < ext->num_params; i++) {
        const struct kz_ext_param *p = &ext->params[i];
        size_t k = 0;
        while (k < P_COUNT && !str_eq(p->name, param_names[k].ptr, param_names[k].len))
            k++;
        if (k == P_COUNT || seen[k])
            return false;
        seen[k] = true;
        if (k == P_SERVER_NO_CONTEXT_TAKEOVER || k == P_CLIENT_NO_CONTEXT_TAKEOVER) {
            if (p->has_value)
                return false;
            if (k == P_SERVER_NO_CONTEXT_TAKEOVER)
                s->server_no_context_takeover = true;
            else
                s->client_no_context_takeover = true;
        } else if (k == P_SERVER_MAX_WINDOW_BITS) {
            s->server_max_window_bits = window_value(p);
            if (s->server_max_window_bits == 0)
                return false;
        } else {
            s->client_max_window_bits_present = true;
            if (!p->has_value && !answer)
                continue;
            s->client_max_window_bits = window_value(p);
            if (s->client_max_window_bits == 0)
                return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Writing an element
 */

/*
 * The longest element: the name, both no_context_takeover parameters and
 * both windows with two digits, 128 bytes; and the NUL.
 */
#define ELEMENT_MAX 129

struct element {
    char buf[ELEMENT_MAX];
    size_t len;
};

static void put(struct element *e, const char *s, size_t n)
{
    /* Callers write at most ELEMENT_MAX - 1 bytes in all. */
    memcpy(e->buf + e->len, s, n);
    e->len += n;
}

static void put_param(struct element *e, enum pmd_param k)
{
    put(e, "; ", 2);
    put(e, param_names[k].ptr, param_names[k].len);
}

/* "; name=N" for a window 8..15. */
static void put_window(struct element *e, enum pmd_param k, uint8_t bits)
{
    put_param(e, k);
    char v[3];
    size_t n = 0;
    v[n++] = '=';
    if (bits >= 10)
        v[n++] = '1';
    v[n++] = (char)('0' + bits % 10);
    put(e, v, n);
}

/*
 * Builds an element. `server_bits` and `client_bits` are written when
 * nonzero; `client_bare` writes client_max_window_bits without a value.
 */
static void build_element(struct element *e, bool snct, bool cnct, uint8_t server_bits,
                          uint8_t client_bits, bool client_bare)
{
    e->len = 0;
    put(e, PMD_NAME, PMD_NAME_LEN);
    if (snct)
        put_param(e, P_SERVER_NO_CONTEXT_TAKEOVER);
    if (cnct)
        put_param(e, P_CLIENT_NO_CONTEXT_TAKEOVER);
    if (server_bits != 0)
        put_window(e, P_SERVER_MAX_WINDOW_BITS, server_bits);
    if (client_bare)
        put_param(e, P_CLIENT_MAX_WINDOW_BITS);
    else if (client_bits != 0)
        put_window(e, P_CLIENT_MAX_WINDOW_BITS, client_bits);
}

/* Copies the element and a NUL into `dst`; its length or KZ_ERR_BUFFER_TOO_SMALL. */
static int copy_element(const struct element *e, char *dst, size_t cap)
{
    if (dst == NULL || e->len >= cap)
        return KZ_ERR_BUFFER_TOO_SMALL;
    memcpy(dst, e->buf, e->len);
    dst[e->len] = '\0';
    return (int)e->len;
}

static bool window_ok(uint8_t bits)
{
    return bits >= 8 && bits <= 15;
}

/* ------------------------------------------------------------------------
 * Server
 */

void kz_pmd_policy_default(struct kz_pmd_policy *pol)
{
    if (pol == NULL)
        return;
    memset(pol, 0, sizeof(*pol));
    pol->enabled = true;
    pol->server_max_window_bits = 15;
    pol->client_max_window_bits = 15;
}

/* What the server answers to one offer. */
struct answer {
    struct kz_pmd_params params;
    bool send_server_bits;
    bool send_client_bits;
};

/*
 * Judges one valid offer against the policy (§7.1). False if the policy
 * cannot accept it: the offer demands an 8-bit server window, or the policy
 * wants a client window below 15 and the offer gives no way to say so.
 */
static bool decide(const struct pmd_seen *off, const struct kz_pmd_policy *pol, struct answer *a)
{
    uint8_t pol_server = pol->server_max_window_bits;
    if (pol_server < MIN_DEFLATE_WINDOW)
        pol_server = MIN_DEFLATE_WINDOW;

    /* §7.1.2.1: accepting server_max_window_bits means answering it, <= offered. */
    uint8_t server = pol_server;
    if (off->server_max_window_bits != 0) {
        if (off->server_max_window_bits < MIN_DEFLATE_WINDOW)
            return false;
        if (off->server_max_window_bits < server)
            server = off->server_max_window_bits;
    }

    /*
     * §7.1.2.2: without client_max_window_bits in the offer the answer must
     * not have it, and the client may use a window of 15.
     */
    uint8_t client = 15;
    if (off->client_max_window_bits_present) {
        uint8_t hint = off->client_max_window_bits != 0 ? off->client_max_window_bits : 15;
        client = hint < pol->client_max_window_bits ? hint : pol->client_max_window_bits;
    } else if (pol->client_max_window_bits < 15) {
        return false;
    }

    /*
     * §7.1.1.1: the server may always answer server_no_context_takeover;
     * when offered, accepting the offer means answering it. §7.1.1.2: the
     * server may always answer client_no_context_takeover; when offered it is
     * a promise of the client, acknowledged so both sides agree on it.
     */
    a->params.server_no_context_takeover =
        off->server_no_context_takeover || pol->server_no_context_takeover;
    a->params.client_no_context_takeover =
        off->client_no_context_takeover || pol->client_no_context_takeover;
    a->params.server_max_window_bits = server;
    a->params.client_max_window_bits = client;
    a->send_server_bits = server < 15 || off->server_max_window_bits != 0;
    a->send_client_bits = client < 15;
    return true;
}

static bool policy_valid(const struct kz_pmd_policy *pol)
{
    return window_ok(pol->server_max_window_bits) && window_ok(pol->client_max_window_bits);
}

int kz_pmd_negotiate(const struct kz_hs_request *req, const struct kz_pmd_policy *pol,
                     struct kz_pmd_params *out, char *resp, size_t cap)
{
    if (req == NULL || pol == NULL || out == NULL || (resp == NULL && cap != 0) ||
        (req->headers == NULL && req->num_headers != 0))
        return KZ_ERR_INVALID_ARGUMENT;
    if (!pol->enabled)
        return 0;
    if (!policy_valid(pol))
        return KZ_ERR_INVALID_ARGUMENT;

    /*
     * The first acceptable offer wins (§5: offers come in order of
     * preference), but the whole header is read, so that a grammar error is
     * an error wherever it sits.
     */
    struct kz_hs_iter it = {0, 0};
    struct kz_ext_offer ext;
    struct answer chosen;
    bool found = false;
    int r;
    while ((r = kz_hs_next_extension(req->headers, req->num_headers, &it, &ext)) > 0) {
        if (found || !is_pmd(ext.name))
            continue;
        struct pmd_seen off;
        if (read_params(&ext, false, &off) && decide(&off, pol, &chosen))
            found = true;
    }
    if (r < 0)
        return r;
    if (!found)
        return 0;

    const struct kz_pmd_params *p = &chosen.params;
    struct element e;
    build_element(&e, p->server_no_context_takeover, p->client_no_context_takeover,
                  chosen.send_server_bits ? p->server_max_window_bits : 0,
                  chosen.send_client_bits ? p->client_max_window_bits : 0, false);
    r = copy_element(&e, resp, cap);
    if (r < 0)
        return r;
    *out = *p;
    return 1;
}

/* ------------------------------------------------------------------------
 * Client
 */

void kz_pmd_offer_default(struct kz_pmd_offer *offer)
{
    if (offer == NULL)
        return;
    memset(offer, 0, sizeof(*offer));
    offer->client_max_window_bits = 15;
    offer->client_max_window_bits_bare = true;
}

/*
 * Windows 0 (not offered) or 8..15; a bare client_max_window_bits goes with
 * 0 or 15, since without a value it promises nothing smaller.
 */
static bool offer_valid(const struct kz_pmd_offer *o)
{
    if (o->server_max_window_bits != 0 && !window_ok(o->server_max_window_bits))
        return false;
    if (o->client_max_window_bits != 0 && !window_ok(o->client_max_window_bits))
        return false;
    if (o->client_max_window_bits_bare && o->client_max_window_bits != 0 &&
        o->client_max_window_bits != 15)
        return false;
    return true;
}

int kz_pmd_write_offer(char *out, size_t cap, const struct kz_pmd_offer *offer)
{
    if (offer == NULL || (out == NULL && cap != 0) || !offer_valid(offer))
        return KZ_ERR_INVALID_ARGUMENT;
    struct element e;
    build_element(&e, offer->server_no_context_takeover, offer->client_no_context_takeover,
                  offer->server_max_window_bits, offer->client_max_window_bits,
                  offer->client_max_window_bits_bare);
    return copy_element(&e, out, cap);
}

/*
 * Judges the parameters of the answer against the offer (§7.1); fills `out`
 * or returns false if the client must fail the connection.
 */
static bool judge_answer(const struct pmd_seen *ans, const struct kz_pmd_offer *offer,
                         struct kz_pmd_params *out)
{
    /*
     * §7.1.1.1: server_no_context_takeover may come unasked; asked for, an
     * answer without it accepted some other offer than ours.
     */
    if (offer->server_no_context_takeover && !ans->server_no_context_takeover)
        return false;

    /* §7.1.2.1: asked for, it must be answered with the same or less. */
    uint8_t server = 15;
    if (ans->server_max_window_bits != 0) {
        if (offer->server_max_window_bits != 0 &&
            ans->server_max_window_bits > offer->server_max_window_bits)
            return false;
        server = ans->server_max_window_bits;
    } else if (offer->server_max_window_bits != 0) {
        return false;
    }

    /*
     * §7.1.2.2: only if offered, with no more than the offered value. Not
     * answered, the client keeps to the value it offered, or 15.
     */
    bool offered_client = offer->client_max_window_bits != 0 || offer->client_max_window_bits_bare;
    uint8_t offered_bits = offer->client_max_window_bits != 0 ? offer->client_max_window_bits : 15;
    uint8_t client = offered_client ? offered_bits : 15;
    if (ans->client_max_window_bits_present) {
        if (!offered_client || ans->client_max_window_bits > offered_bits)
            return false;
        client = ans->client_max_window_bits;
    }

    /* §7.1.1.2: offered, it is the client's promise whatever the answer. */
    out->server_no_context_takeover = ans->server_no_context_takeover;
    out->client_no_context_takeover =
        ans->client_no_context_takeover || offer->client_no_context_takeover;
    out->server_max_window_bits = server;
    out->client_max_window_bits = client;
    return true;
}

int kz_pmd_check_response(const struct kz_header *headers, size_t num_headers,
                          const struct kz_pmd_offer *offer, struct kz_pmd_params *out)
{
    if ((headers == NULL && num_headers != 0) || offer == NULL || out == NULL ||
        !offer_valid(offer))
        return KZ_ERR_INVALID_ARGUMENT;

    struct kz_hs_iter it = {0, 0};
    struct kz_ext_offer ext;
    struct kz_pmd_params params;
    bool found = false;
    int r;
    while ((r = kz_hs_next_extension(headers, num_headers, &it, &ext)) > 0) {
        if (!is_pmd(ext.name)) {
            /*
             * Other extensions are kz_hs_check_response's business, but a
             * differently cased permessage-deflate is one we did not offer,
             * and kz_hs_check_response compares names case-insensitively.
             */
            if (str_ieq_lower(ext.name, PMD_NAME, PMD_NAME_LEN))
                return KZ_ERR_HS_RESP_EXTENSION;
            continue;
        }
        /* §5: a second one would claim RSV1 again. */
        if (found)
            return KZ_ERR_HS_RESP_EXTENSION;
        struct pmd_seen ans;
        if (!read_params(&ext, true, &ans) || !judge_answer(&ans, offer, &params))
            return KZ_ERR_HS_RESP_EXTENSION;
        found = true;
    }
    if (r < 0)
        return KZ_ERR_HS_RESP_EXTENSION;
    if (!found)
        return 0;
    *out = params;
    return 1;
}
