/*
 * A minimal echo server on libwebsockets, the baseline `make bench` compares
 * kaze echo with. It follows the library's own pattern: reassemble a
 * message in RECEIVE, queue it, and write one message per SERVER_WRITEABLE
 * callback (lws allows one lws_write per callback), asking for another
 * callback while messages remain.
 *
 *   lws_echo PORT [CERT KEY]
 *
 * prints PORT on stdout once listening; SIGINT/SIGTERM stop it. With CERT
 * and KEY (PEM: the chain, the private key) it serves wss:// with the
 * library's OpenSSL defaults.
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_MAX 64

struct pending {
    unsigned char *buf; /* LWS_PRE bytes of headroom, then the payload */
    size_t len;
    int binary;
};

struct session {
    struct pending q[QUEUE_MAX];
    unsigned head, count;
    unsigned char *msg; /* message being reassembled */
    size_t msg_len, msg_cap;
};

static volatile int stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int append(struct session *s, const void *in, size_t len)
{
    if (s->msg_len + len > s->msg_cap) {
        size_t cap = s->msg_cap ? s->msg_cap * 2 : 4096;
        while (cap < s->msg_len + len)
            cap *= 2;
        unsigned char *p = realloc(s->msg, LWS_PRE + cap);
        if (!p)
            return -1;
        s->msg = p;
        s->msg_cap = cap;
    }
    memcpy(s->msg + LWS_PRE + s->msg_len, in, len);
    s->msg_len += len;
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct session *s = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(s, 0, sizeof(*s));
        break;
    case LWS_CALLBACK_RECEIVE:
        if (append(s, in, len))
            return -1;
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
            break;
        if (s->count == QUEUE_MAX)
            return -1;
        {
            struct pending *p = &s->q[(s->head + s->count) % QUEUE_MAX];
            p->buf = s->msg;
            p->len = s->msg_len;
            p->binary = lws_frame_is_binary(wsi);
            s->count++;
            s->msg = NULL;
            s->msg_len = s->msg_cap = 0;
        }
        lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s->count) {
            struct pending *p = &s->q[s->head];
            int n = lws_write(wsi, p->buf + LWS_PRE, p->len,
                              p->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
            free(p->buf);
            s->head = (s->head + 1) % QUEUE_MAX;
            s->count--;
            if (n < (int)p->len)
                return -1;
            if (s->count)
                lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLOSED:
        while (s->count) {
            free(s->q[s->head].buf);
            s->head = (s->head + 1) % QUEUE_MAX;
            s->count--;
        }
        free(s->msg);
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"echo", callback, sizeof(struct session), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 9002;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = port;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (argc > 3) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = argv[2];
        info.ssl_private_key_filepath = argv[3];
    }
    info.pt_serv_buf_size = 65536;
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx)
        return 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("%d\n", port);
    fflush(stdout);
    while (!stop && lws_service(ctx, 0) >= 0) {
    }
    lws_context_destroy(ctx);
    return 0;
}
