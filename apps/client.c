/*
 * kaze client: a terminal WebSocket client, for people and for scripts.
 *
 * Each line read from stdin is sent as a message (text, or binary with
 * --binary); each message received is printed on its own line. From a
 * terminal, received lines are marked "< " and end of input (^D) closes the
 * connection. From a pipe or a file, after end of input the client waits
 * until it has received as many messages as it sent (or --count N), bounded
 * by --wait, then closes with 1000. --echo sends every message back
 * unchanged until the server closes (the client side of a conformance
 * suite).
 *
 * Exit status: 0 after a clean close (1000, 1001 or no code) with every
 * expected message received; 1 when connecting or the handshake failed, the
 * connection closed with another code or dropped, or messages were missing;
 * 2 for usage errors. Reasons go to stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kaze/client.h"
#include "cli.h"

#define MAX_LIST       32
#define READ_CHUNK     (64u * 1024u)
#define PAUSE_BUFFERED (256u * 1024u) /* stop reading stdin while this much waits to be sent */

struct app {
    const char *url;
    bool echo, binary, quiet, interactive, insecure;
    uint64_t count; /* messages to wait for after end of input; 0: as many as were sent */
    bool count_set;
    uint32_t wait_ms; /* 0: wait as long as it takes */
    struct kz_client_config cfg;
    const char *protocols[MAX_LIST];
    struct kz_header headers[MAX_LIST];

    struct kz_loop *loop;
    struct kz_client *cl;
    struct kz_io in;         /* stdin, when epoll can watch it */
    struct kz_defer pump;    /* stdin, when it cannot (a regular file) */
    struct kz_defer recheck; /* after a pause: resume if the iteration's flush emptied the queue */
    bool in_pollable, in_reading, in_eof;
    char *line;
    size_t line_len, line_cap;
    uint64_t sent, received;
    struct kz_timer wait_timer;
    struct kz_signal sigint, sigterm;
    int signals;
    bool closing; /* we started the close */
    bool missing; /* we closed before every expected message came */
    int status;   /* exit status so far */
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kaze client [options] URL\n"
            "\n"
            "Connects to a ws:// or wss:// URL. Lines from stdin are sent as messages;\n"
            "messages received are printed one per line. Reading from a pipe or file,\n"
            "the client waits after end of input for as many messages as it sent, then\n"
            "closes.\n"
            "\n"
            "options:\n"
            "  --echo                send every message received back, until the server closes\n"
            "  --binary              send lines as binary messages\n"
            "  -H, --header 'N: V'   add a request header (repeatable)\n"
            "  -s, --subprotocol P   offer a subprotocol (repeatable, in preference order)\n"
            "  --origin ORIGIN       send an Origin header\n"
            "  --compress            offer permessage-deflate\n"
            "  --proxy URL           HTTP proxy (CONNECT); default: http_proxy / https_proxy,\n"
            "                        unless no_proxy matches the host\n"
            "  --no-proxy            ignore the proxy environment variables\n"
            "  --ca FILE             wss://: trust these CA certificates (PEM) instead of the\n"
            "                        system's store\n"
            "  --insecure            wss://: do not verify the server's certificate (tests only)\n"
            "  --reconnect           reconnect with backoff when the connection is lost\n"
            "  --count N             after end of input, wait for N messages\n"
            "  --wait SECONDS        wait at most this long after end of input (0: no limit)\n"
            "  --max-message SIZE    largest message accepted (default 16M)\n"
            "  -q, --quiet           no status lines on stderr\n");
}

/* ------------------------------------------------------------------------
 * Finishing
 */

static bool done_receiving(const struct app *a)
{
    uint64_t want = a->count_set ? a->count : a->sent;
    return a->received >= want;
}

static void close_now(struct app *a)
{
    if (a->closing)
        return;
    a->closing = true;
    if (kz_client_close(a->cl, KZ_CLOSE_NORMAL, NULL, 0) != KZ_OK)
        kz_loop_stop(a->loop);
}

/* After end of input: close once every expected message is in. */
static void maybe_finish(struct app *a)
{
    if (a->echo || !a->in_eof || a->closing || !kz_client_conn(a->cl))
        return;
    if (a->interactive || done_receiving(a))
        close_now(a);
}

static void on_wait_over(struct kz_loop *loop, struct kz_timer *t)
{
    (void)loop;
    struct app *a = KZ_CONTAINER_OF(t, struct app, wait_timer);
    uint64_t want = a->count_set ? a->count : a->sent;
    fprintf(stderr, "kaze client: timed out waiting for %llu messages, got %llu\n",
            (unsigned long long)want, (unsigned long long)a->received);
    a->missing = true;
    close_now(a);
}

static void on_signal(struct kz_loop *loop, struct kz_signal *s)
{
    struct app *a = s->signo == SIGINT ? KZ_CONTAINER_OF(s, struct app, sigint)
                                       : KZ_CONTAINER_OF(s, struct app, sigterm);
    if (++a->signals > 1)
        exit(130);
    a->missing = !a->echo && !done_receiving(a);
    if (kz_client_conn(a->cl)) {
        close_now(a);
    } else {
        a->status = 1;
        kz_loop_stop(loop);
    }
}

/* ------------------------------------------------------------------------
 * Input: lines from stdin
 */

static void reading(struct app *a, bool on);

static void send_line(struct app *a, const char *p, size_t n)
{
    int rc = kz_client_send(a->cl, a->binary ? KZ_OP_BINARY : KZ_OP_TEXT, p, n);
    if (rc == KZ_OK) {
        a->sent++;
        return;
    }
    fprintf(stderr, "kaze client: message not sent: %s\n", kz_strerror(rc));
    a->status = 1;
    a->in_eof = true;
    reading(a, false);
    close_now(a);
}

/* Splits what was read into lines; a partial line waits for the rest. */
static void take_input(struct app *a, const char *buf, size_t n)
{
    while (n > 0 && !a->closing) {
        const char *nl = memchr(buf, '\n', n);
        size_t piece = nl ? (size_t)(nl - buf) : n;
        if (a->line_len + piece > a->cfg.max_message_size) {
            fprintf(stderr, "kaze client: an input line is longer than --max-message\n");
            a->status = 1;
            a->in_eof = true;
            reading(a, false);
            close_now(a);
            return;
        }
        if (a->line_len + piece > a->line_cap) {
            size_t cap = a->line_cap ? a->line_cap : 4096;
            while (cap < a->line_len + piece)
                cap *= 2;
            char *p = realloc(a->line, cap);
            if (!p) {
                fprintf(stderr, "kaze client: out of memory\n");
                exit(1);
            }
            a->line = p;
            a->line_cap = cap;
        }
        if (piece) /* an empty line may come before any buffer exists */
            memcpy(a->line + a->line_len, buf, piece);
        a->line_len += piece;
        if (!nl)
            return;
        send_line(a, a->line, a->line_len);
        a->line_len = 0;
        buf += piece + 1;
        n -= piece + 1;
    }
}

static void input_ended(struct app *a)
{
    if (a->line_len) /* a last line without its newline is still a line */
        send_line(a, a->line, a->line_len);
    a->line_len = 0;
    a->in_eof = true;
    reading(a, false);
    if (a->wait_ms && !a->interactive)
        kz_timer_start(a->loop, &a->wait_timer, a->wait_ms, on_wait_over);
    maybe_finish(a);
}

static void on_recheck(struct kz_loop *loop, struct kz_defer *d)
{
    (void)loop;
    struct app *a = KZ_CONTAINER_OF(d, struct app, recheck);
    struct kz_conn *c = kz_client_conn(a->cl);
    if (!c || kz_conn_buffered(c) <= PAUSE_BUFFERED)
        reading(a, true);
}

/* Reads one chunk; false once input has ended or reading paused. */
static bool read_some(struct app *a)
{
    char buf[READ_CHUNK];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return false;
    if (n <= 0) {
        input_ended(a);
        return false;
    }
    take_input(a, buf, (size_t)n);
    struct kz_conn *c = kz_client_conn(a->cl);
    if (c && kz_conn_buffered(c) > PAUSE_BUFFERED) {
        /*
         * Paused. What is buffered may all leave in this iteration's flush
         * (then no on_drain follows): look again after it; if bytes are
         * still queued then, on_drain resumes.
         */
        reading(a, false);
        kz_defer(a->loop, &a->recheck, on_recheck);
        return false;
    }
    return a->in_reading;
}

static void on_stdin(struct kz_loop *loop, struct kz_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    read_some(KZ_CONTAINER_OF(io, struct app, in));
}

static void on_pump(struct kz_loop *loop, struct kz_defer *d)
{
    struct app *a = KZ_CONTAINER_OF(d, struct app, pump);
    if (read_some(a))
        kz_defer(loop, d, on_pump); /* the next chunk, next iteration */
}

static void reading(struct app *a, bool on)
{
    if (a->echo || (on && (a->in_eof || a->closing)) || on == a->in_reading)
        return;
    a->in_reading = on;
    if (a->in_pollable)
        kz_io_set_events(a->loop, &a->in, on ? KZ_IO_READ : 0);
    else if (on)
        kz_defer(a->loop, &a->pump, on_pump);
    else
        kz_defer_cancel(a->loop, &a->pump);
}

/* ------------------------------------------------------------------------
 * The connection
 */

static void on_open(struct kz_conn *c)
{
    struct app *a = kz_conn_user(c);
    const char *proto = kz_client_subprotocol(a->cl);
    if (a->interactive && !a->quiet)
        fprintf(stderr, "connected to %s%s%s\n", a->url, *proto ? ", subprotocol " : "", proto);
    if (a->cfg.reconnect)
        a->status = 0; /* failed attempts before this one are behind us */
    reading(a, true);
    maybe_finish(a); /* input may have ended before we were open */
}

static void on_message(struct kz_conn *c, enum kz_opcode op, const uint8_t *data, size_t len)
{
    struct app *a = kz_conn_user(c);
    a->received++;
    if (a->echo) {
        kz_conn_send(c, op, data, len);
        return;
    }
    if (a->interactive)
        fputs("< ", stdout);
    fwrite(data, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    maybe_finish(a);
}

static void on_drain(struct kz_conn *c)
{
    reading(kz_conn_user(c), true);
}

static bool clean_code(uint16_t code)
{
    return code == KZ_CLOSE_NORMAL || code == KZ_CLOSE_GOING_AWAY || code == KZ_CLOSE_NO_STATUS;
}

static void on_close(struct kz_conn *c, uint16_t code, struct kz_str reason)
{
    struct app *a = kz_conn_user(c);
    if (!clean_code(code)) {
        fprintf(stderr, "kaze client: connection closed: %u%s%.*s\n", code, reason.len ? " " : "",
                (int)reason.len, reason.ptr ? reason.ptr : "");
        a->status = 1;
    } else if (a->interactive && !a->quiet) {
        fprintf(stderr, "closed: %u%s%.*s\n", code, reason.len ? " " : "", (int)reason.len,
                reason.ptr ? reason.ptr : "");
    }
    if (!a->echo && !a->closing && clean_code(code) && !(a->in_eof && done_receiving(a))) {
        uint64_t want = a->count_set ? a->count : a->sent;
        if (!a->interactive && a->in_eof)
            fprintf(stderr, "kaze client: the server closed after %llu of %llu messages\n",
                    (unsigned long long)a->received, (unsigned long long)want);
        if (!a->interactive && a->in_eof)
            a->status = 1;
    }
    if (a->cfg.reconnect && !a->closing)
        reading(a, true); /* lines go to the offline queue until the next open */
}

static void on_connect_error(struct kz_client *cl, const struct kz_client_error *e)
{
    struct app *a = kz_client_user(cl);
    fprintf(stderr, "kaze client: %s\n", e->detail);
    a->status = 1;
}

static void on_reconnect(struct kz_client *cl, uint32_t attempt, uint32_t delay_ms)
{
    struct app *a = kz_client_user(cl);
    if (!a->quiet)
        fprintf(stderr, "kaze client: reconnecting in %u ms (attempt %u)\n", delay_ms, attempt);
}

static void on_end(struct kz_client *cl)
{
    struct app *a = kz_client_user(cl);
    if (a->missing)
        a->status = 1;
    kz_loop_stop(a->loop);
}

/* ------------------------------------------------------------------------
 * Options
 */

static int parse_header(struct app *a, const char *text)
{
    const char *colon = strchr(text, ':');
    if (!colon || colon == text || a->cfg.num_headers == MAX_LIST)
        return -1;
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    struct kz_header *h = &a->headers[a->cfg.num_headers++];
    h->name = (struct kz_str){text, (size_t)(colon - text)};
    h->value = (struct kz_str){v, strlen(v)};
    return 0;
}

static const char *env(const char *lower, const char *upper)
{
    const char *v = getenv(lower);
    if (!v && upper)
        v = getenv(upper);
    return v && *v ? v : NULL;
}

enum {
    OPT_ECHO = 256,
    OPT_BINARY,
    OPT_ORIGIN,
    OPT_COMPRESS,
    OPT_PROXY,
    OPT_NO_PROXY,
    OPT_INSECURE,
    OPT_CA,
    OPT_RECONNECT,
    OPT_COUNT,
    OPT_WAIT,
    OPT_MAX_MESSAGE,
};

static int parse_args(struct app *a, int argc, char **argv)
{
    static const struct option longs[] = {
        {"echo", no_argument, NULL, OPT_ECHO},
        {"binary", no_argument, NULL, OPT_BINARY},
        {"header", required_argument, NULL, 'H'},
        {"subprotocol", required_argument, NULL, 's'},
        {"origin", required_argument, NULL, OPT_ORIGIN},
        {"compress", no_argument, NULL, OPT_COMPRESS},
        {"proxy", required_argument, NULL, OPT_PROXY},
        {"no-proxy", no_argument, NULL, OPT_NO_PROXY},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"ca", required_argument, NULL, OPT_CA},
        {"reconnect", no_argument, NULL, OPT_RECONNECT},
        {"count", required_argument, NULL, OPT_COUNT},
        {"wait", required_argument, NULL, OPT_WAIT},
        {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool proxy_set = false, no_proxy = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "H:s:qh", longs, NULL)) != -1) {
        switch (opt) {
        case OPT_ECHO:
            a->echo = true;
            break;
        case OPT_BINARY:
            a->binary = true;
            break;
        case 'H':
            if (parse_header(a, optarg) != 0) {
                fprintf(stderr, "kaze client: --header wants 'Name: value' (at most %d)\n",
                        MAX_LIST);
                return 2;
            }
            break;
        case 's':
            if (a->cfg.num_subprotocols == MAX_LIST) {
                fprintf(stderr, "kaze client: at most %d subprotocols\n", MAX_LIST);
                return 2;
            }
            a->protocols[a->cfg.num_subprotocols++] = optarg;
            break;
        case OPT_ORIGIN:
            a->cfg.origin = optarg;
            break;
        case OPT_COMPRESS:
            a->cfg.deflate = true;
            break;
        case OPT_PROXY:
            a->cfg.proxy = optarg;
            proxy_set = true;
            break;
        case OPT_NO_PROXY:
            no_proxy = true;
            break;
        case OPT_INSECURE:
            a->insecure = true;
            a->cfg.tls_insecure = true;
            break;
        case OPT_CA:
            a->cfg.tls_ca_file = optarg;
            break;
        case OPT_RECONNECT:
            a->cfg.reconnect = true;
            break;
        case OPT_COUNT:
            a->count = cli_uint("--count", optarg, UINT32_MAX);
            a->count_set = true;
            break;
        case OPT_WAIT:
            a->wait_ms = (uint32_t)cli_uint("--wait", optarg, 86400) * 1000u;
            break;
        case OPT_MAX_MESSAGE:
            a->cfg.max_message_size = cli_size("--max-message", optarg);
            break;
        case 'q':
            a->quiet = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    a->url = argv[optind];
    struct kz_url url;
    if (kz_url_parse(a->url, strlen(a->url), &url) != KZ_OK) {
        fprintf(stderr, "kaze client: invalid URL '%s' (ws://host[:port]/path)\n", a->url);
        return 2;
    }
    if ((a->insecure || a->cfg.tls_ca_file) && !url.tls) {
        fprintf(stderr, "kaze client: --insecure and --ca apply to wss:// URLs only\n");
        return 2;
    }
    if (a->cfg.max_message_size == 0) {
        fprintf(stderr, "kaze client: --max-message must be above 0\n");
        return 2;
    }
    if (!proxy_set && !no_proxy)
        kz_client_config_proxy_from_env(&a->cfg, a->url, env("http_proxy", NULL),
                                        env("https_proxy", "HTTPS_PROXY"),
                                        env("no_proxy", "NO_PROXY"));
    a->cfg.subprotocols = a->protocols;
    a->cfg.headers = a->headers;
    return 0;
}

/* ------------------------------------------------------------------------
 * main
 */

static int start_input(struct app *a)
{
    if (a->echo)
        return 0;
    a->interactive = isatty(STDIN_FILENO);
    /* epoll cannot watch a regular file (or /dev/null): those are read from a defer instead. */
    if (kz_io_start(a->loop, &a->in, STDIN_FILENO, KZ_IO_READ, on_stdin) == KZ_OK) {
        a->in_pollable = true;
        kz_io_set_events(a->loop, &a->in, 0); /* read once the connection is open */
    } else if (errno != EPERM) {
        return -1;
    }
    return 0;
}

int cmd_client(int argc, char **argv)
{
    static struct app app; /* static: signal and io watchers point into it */
    struct app *a = &app;
    kz_client_config_default(&a->cfg);
    a->cfg.max_message_size = 16u << 20;
    a->cfg.offline_queue_max = 1u << 20;
    int rc = parse_args(a, argc, argv);
    if (rc != 0)
        return rc;
    if (!a->cfg.reconnect)
        a->cfg.offline_queue_max = 0; /* nothing is sent before the one connection opens */
    /* --echo sends back messages as large as it accepts: the queue must hold one. */
    a->cfg.max_buffered = 2 * a->cfg.max_message_size + (1u << 20);
    a->loop = kz_loop_new(NULL);
    if (!a->loop) {
        fprintf(stderr, "kaze client: cannot create the event loop: %s\n", strerror(errno));
        return 1;
    }
    static const struct kz_client_callbacks cb = {
        .on_open = on_open,
        .on_message = on_message,
        .on_drain = on_drain,
        .on_close = on_close,
        .on_connect_error = on_connect_error,
        .on_reconnect = on_reconnect,
        .on_end = on_end,
    };
    int err = KZ_OK;
    a->cl = kz_client_new(a->loop, a->url, &a->cfg, &cb, a, NULL, &err);
    if (!a->cl) {
        if (err == KZ_ERR_TLS)
            fprintf(stderr, "kaze client: cannot load the CA certificates%s%s\n",
                    a->cfg.tls_ca_file ? " from " : "",
                    a->cfg.tls_ca_file ? a->cfg.tls_ca_file : " of the system");
        else if (err == KZ_ERR_INVALID_ARGUMENT)
            fprintf(stderr, "kaze client: invalid URL, proxy or option\n");
        else
            fprintf(stderr, "kaze client: %s\n", kz_strerror(err));
        kz_loop_free(a->loop);
        return err == KZ_ERR_NOMEM ? 1 : 2;
    }
    if (start_input(a) != 0) {
        fprintf(stderr, "kaze client: cannot watch stdin: %s\n", strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    kz_signal_start(a->loop, &a->sigint, SIGINT, on_signal);
    kz_signal_start(a->loop, &a->sigterm, SIGTERM, on_signal);
    if (a->interactive && !a->quiet)
        fprintf(stderr, "connecting to %s (^D to close)\n", a->url);
    kz_client_start(a->cl);
    kz_loop_run(a->loop);

    fflush(stdout);
    kz_timer_stop(a->loop, &a->wait_timer);
    kz_defer_cancel(a->loop, &a->pump);
    kz_defer_cancel(a->loop, &a->recheck);
    if (a->in_pollable)
        kz_io_stop(a->loop, &a->in);
    kz_signal_stop(a->loop, &a->sigint);
    kz_signal_stop(a->loop, &a->sigterm);
    kz_client_free(a->cl);
    kz_loop_free(a->loop);
    free(a->line);
    if (a->missing)
        a->status = 1;
    return a->status;
}
