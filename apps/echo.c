/*
 * kaze echo: sends every message back as it came, text as text, binary as
 * binary. One loop and one server per thread, all listening on the same port
 * (SO_REUSEPORT). SIGINT or SIGTERM starts a graceful shutdown: every open
 * connection is closed with 1001; a second signal exits at once. With
 * --tls-cert and --tls-key it speaks wss://, and SIGHUP reloads the
 * certificates without touching open connections.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kaze/server.h"
#include "cli.h"

#define MAX_PROTOCOLS 16
#define MAX_CERTS     8

struct echo_opts {
    const char *host;
    uint16_t port;
    unsigned threads;
    const char *protocols[MAX_PROTOCOLS];
    size_t num_protocols;
    bool quiet;
    struct kz_server_config cfg;
    struct kz_tls_cert certs[MAX_CERTS];
    size_t num_certs, num_keys;
    bool tls13_only;
};

struct worker {
    struct echo_opts *opts;
    struct kz_loop *loop;
    struct kz_server *srv;
    struct kz_async stop;
    pthread_t thread;
    int rc;
};

static void on_upgrade(struct kz_conn *c, const struct kz_hs_request *req, struct kz_upgrade *up)
{
    struct worker *w = kz_server_user(kz_conn_server(c));
    kz_upgrade_pick_protocol(up, req, w->opts->protocols, w->opts->num_protocols);
}

static void on_message(struct kz_conn *c, enum kz_opcode op, const uint8_t *data, size_t len)
{
    kz_conn_send(c, op, data, len);
}

static void on_tls_error(struct kz_conn *c, const char *detail)
{
    (void)c;
    fprintf(stderr, "kaze echo: TLS handshake failed: %s\n", detail);
}

static void on_stop(struct kz_loop *loop, struct kz_async *a)
{
    struct worker *w = KZ_CONTAINER_OF(a, struct worker, stop);
    kz_async_stop(loop, a);
    kz_server_shutdown(w->srv);
}

static int worker_init(struct worker *w)
{
    static const struct kz_server_callbacks cb = {
        .on_upgrade = on_upgrade,
        .on_message = on_message,
        .on_tls_error = on_tls_error,
    };
    w->loop = kz_loop_new(NULL);
    if (!w->loop)
        return KZ_ERR_NOMEM;
    w->srv = kz_server_new(w->loop, &w->opts->cfg, &cb, w, NULL);
    if (!w->srv)
        return KZ_ERR_NOMEM;
    /* The first worker may be given port 0; the others then share the port it got. */
    int rc = kz_server_listen(w->srv, w->opts->host, w->opts->port, true, &w->opts->port);
    if (rc != KZ_OK)
        return rc;
    return kz_async_start(w->loop, &w->stop, on_stop);
}

static void worker_free(struct worker *w)
{
    kz_server_free(w->srv);
    kz_loop_free(w->loop);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->rc = kz_loop_run(w->loop);
    return NULL;
}

/* The main thread watches the signals and tells every worker to shut down. */
struct control {
    struct kz_signal sigint, sigterm, sighup;
    struct kz_tls_server *tls;
    struct worker *workers;
    unsigned n;
    bool stopping;
};

static void on_hangup(struct kz_loop *loop, struct kz_signal *s)
{
    struct control *ctl = KZ_CONTAINER_OF(s, struct control, sighup);
    char err[512];
    if (kz_tls_server_reload(ctl->tls, err, sizeof(err)) == KZ_OK)
        fprintf(stderr, "kaze echo: certificates reloaded\n");
    else
        fprintf(stderr, "kaze echo: reload failed, keeping the old certificates: %s\n", err);
}

static void on_signal(struct kz_loop *loop, struct kz_signal *s)
{
    struct control *ctl = s->signo == SIGINT ? KZ_CONTAINER_OF(s, struct control, sigint)
                                             : KZ_CONTAINER_OF(s, struct control, sigterm);
    if (ctl->stopping) {
        fprintf(stderr, "kaze echo: second signal, exiting now\n");
        exit(1);
    }
    ctl->stopping = true;
    fprintf(stderr, "kaze echo: shutting down (closing connections with 1001)\n");
    for (unsigned i = 0; i < ctl->n; i++)
        kz_async_send(&ctl->workers[i].stop);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kaze echo [OPTIONS]\n"
            "  -p, --port N            port to listen on (default 9001; 0 picks a free one)\n"
            "      --host ADDR         numeric address to listen on (default: all)\n"
            "  -t, --threads N         event loops, one per thread (default: CPU count)\n"
            "      --subprotocol NAME  accept this subprotocol (repeatable; the client's first\n"
            "                          offered one that is accepted is chosen)\n"
            "      --max-message BYTES largest message (default 16M; K/M/G suffixes)\n"
            "      --max-frame BYTES   largest frame (default: --max-message)\n"
            "      --max-header BYTES  largest handshake request head (default 8K)\n"
            "      --max-buffered BYTES bytes queued per client before backpressure acts\n"
            "                          (default 2 x max-message + 1M)\n"
            "      --backpressure P    close (1008, default), try-again (1013) or drop\n"
            "      --max-connections N (default: what the open-file limit allows)\n"
            "      --handshake-timeout MS, --idle-timeout MS, --ping-interval MS,\n"
            "      --pong-timeout MS, --close-timeout MS   (0 disables; defaults 10000, 0,\n"
            "                          30000, 15000, 5000)\n"
            "      --no-deflate        do not negotiate permessage-deflate (on by default)\n"
            "      --deflate-mode M    dedicated (a compressor per connection, default) or\n"
            "                          shared (one per thread, no context takeover: less memory)\n"
            "      --deflate-window N  window bits of our compressor, 9..15 (default 15)\n"
            "      --deflate-mem-level N  zlib memLevel 1..9 (default 8)\n"
            "      --deflate-min-size BYTES  send shorter messages uncompressed (default 64)\n"
            "      --tls-cert FILE     serve wss://: certificate chain (PEM); repeat with\n"
            "      --tls-key FILE      its key for more certificates, chosen by SNI (the\n"
            "                          first is the default); SIGHUP reloads them\n"
            "      --tls13-only        refuse TLS 1.2 (default: 1.2 and 1.3)\n"
            "      --tls-handshake-timeout MS  (default 10000)\n"
            "  -q, --quiet             no start-up line\n");
}

enum {
    OPT_HOST = 256,
    OPT_SUBPROTOCOL,
    OPT_MAX_MESSAGE,
    OPT_MAX_FRAME,
    OPT_MAX_HEADER,
    OPT_MAX_BUFFERED,
    OPT_BACKPRESSURE,
    OPT_MAX_CONNECTIONS,
    OPT_HANDSHAKE_TIMEOUT,
    OPT_IDLE_TIMEOUT,
    OPT_PING_INTERVAL,
    OPT_PONG_TIMEOUT,
    OPT_CLOSE_TIMEOUT,
    OPT_NO_DEFLATE,
    OPT_DEFLATE_MODE,
    OPT_DEFLATE_WINDOW,
    OPT_DEFLATE_MEM_LEVEL,
    OPT_DEFLATE_MIN_SIZE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TLS13_ONLY,
    OPT_TLS_HANDSHAKE_TIMEOUT,
};

static void parse_opts(int argc, char **argv, struct echo_opts *o)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, 't'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"host", required_argument, NULL, OPT_HOST},
        {"subprotocol", required_argument, NULL, OPT_SUBPROTOCOL},
        {"max-message", required_argument, NULL, OPT_MAX_MESSAGE},
        {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
        {"max-header", required_argument, NULL, OPT_MAX_HEADER},
        {"max-buffered", required_argument, NULL, OPT_MAX_BUFFERED},
        {"backpressure", required_argument, NULL, OPT_BACKPRESSURE},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
        {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"ping-interval", required_argument, NULL, OPT_PING_INTERVAL},
        {"pong-timeout", required_argument, NULL, OPT_PONG_TIMEOUT},
        {"close-timeout", required_argument, NULL, OPT_CLOSE_TIMEOUT},
        {"no-deflate", no_argument, NULL, OPT_NO_DEFLATE},
        {"deflate-mode", required_argument, NULL, OPT_DEFLATE_MODE},
        {"deflate-window", required_argument, NULL, OPT_DEFLATE_WINDOW},
        {"deflate-mem-level", required_argument, NULL, OPT_DEFLATE_MEM_LEVEL},
        {"deflate-min-size", required_argument, NULL, OPT_DEFLATE_MIN_SIZE},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls13-only", no_argument, NULL, OPT_TLS13_ONLY},
        {"tls-handshake-timeout", required_argument, NULL, OPT_TLS_HANDSHAKE_TIMEOUT},
        {NULL, 0, NULL, 0},
    };
    struct kz_server_config *cfg = &o->cfg;
    bool buffered_set = false, conns_set = false;
    cfg->max_message_size = 16u << 20;
    cfg->deflate.enabled = true;
    int ch;
    while ((ch = getopt_long(argc, argv, "p:t:qh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            o->port = (uint16_t)cli_uint("--port", optarg, 65535);
            break;
        case 't':
            o->threads = (unsigned)cli_uint("--threads", optarg, 1024);
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case OPT_HOST:
            o->host = optarg;
            break;
        case OPT_SUBPROTOCOL:
            if (o->num_protocols == MAX_PROTOCOLS) {
                fprintf(stderr, "kaze echo: at most %d subprotocols\n", MAX_PROTOCOLS);
                exit(2);
            }
            o->protocols[o->num_protocols++] = optarg;
            break;
        case OPT_MAX_MESSAGE:
            cfg->max_message_size = cli_size("--max-message", optarg);
            break;
        case OPT_MAX_FRAME:
            cfg->max_frame_size = cli_size("--max-frame", optarg);
            break;
        case OPT_MAX_HEADER:
            cfg->max_header_size = cli_size("--max-header", optarg);
            break;
        case OPT_MAX_BUFFERED:
            cfg->max_buffered = cli_size("--max-buffered", optarg);
            buffered_set = true;
            break;
        case OPT_BACKPRESSURE:
            if (strcmp(optarg, "close") == 0)
                cfg->backpressure = KZ_BP_CLOSE;
            else if (strcmp(optarg, "try-again") == 0)
                cfg->backpressure = KZ_BP_CLOSE_TRY_AGAIN;
            else if (strcmp(optarg, "drop") == 0)
                cfg->backpressure = KZ_BP_DROP;
            else {
                fprintf(stderr, "kaze echo: --backpressure: close, try-again or drop\n");
                exit(2);
            }
            break;
        case OPT_MAX_CONNECTIONS:
            cfg->max_connections = cli_uint("--max-connections", optarg, 100000000);
            conns_set = true;
            break;
        case OPT_HANDSHAKE_TIMEOUT:
            cfg->handshake_timeout_ms = (uint32_t)cli_uint("--handshake-timeout", optarg, 86400000);
            break;
        case OPT_IDLE_TIMEOUT:
            cfg->idle_timeout_ms = (uint32_t)cli_uint("--idle-timeout", optarg, 86400000);
            break;
        case OPT_PING_INTERVAL:
            cfg->ping_interval_ms = (uint32_t)cli_uint("--ping-interval", optarg, 86400000);
            break;
        case OPT_PONG_TIMEOUT:
            cfg->pong_timeout_ms = (uint32_t)cli_uint("--pong-timeout", optarg, 86400000);
            break;
        case OPT_CLOSE_TIMEOUT:
            cfg->close_timeout_ms = (uint32_t)cli_uint("--close-timeout", optarg, 86400000);
            break;
        case OPT_NO_DEFLATE:
            cfg->deflate.enabled = false;
            break;
        case OPT_DEFLATE_MODE:
            if (strcmp(optarg, "dedicated") == 0)
                cfg->deflate_mode = KZ_DEFLATE_DEDICATED;
            else if (strcmp(optarg, "shared") == 0)
                cfg->deflate_mode = KZ_DEFLATE_SHARED;
            else {
                fprintf(stderr, "kaze echo: --deflate-mode: dedicated or shared\n");
                exit(2);
            }
            break;
        case OPT_DEFLATE_WINDOW:
            cfg->deflate.server_max_window_bits = (uint8_t)cli_uint("--deflate-window", optarg, 15);
            if (cfg->deflate.server_max_window_bits < 9) {
                fprintf(stderr, "kaze echo: --deflate-window: 9..15\n");
                exit(2);
            }
            break;
        case OPT_DEFLATE_MEM_LEVEL:
            cfg->deflate_mem_level = (uint8_t)cli_uint("--deflate-mem-level", optarg, 9);
            if (cfg->deflate_mem_level < 1) {
                fprintf(stderr, "kaze echo: --deflate-mem-level: 1..9\n");
                exit(2);
            }
            break;
        case OPT_DEFLATE_MIN_SIZE:
            cfg->deflate_min_size = cli_size("--deflate-min-size", optarg);
            break;
        case OPT_TLS_CERT:
        case OPT_TLS_KEY: {
            size_t *n = ch == OPT_TLS_CERT ? &o->num_certs : &o->num_keys;
            if (*n == MAX_CERTS) {
                fprintf(stderr, "kaze echo: at most %d certificates\n", MAX_CERTS);
                exit(2);
            }
            if (ch == OPT_TLS_CERT)
                o->certs[(*n)++].cert_file = optarg;
            else
                o->certs[(*n)++].key_file = optarg;
            break;
        }
        case OPT_TLS13_ONLY:
            o->tls13_only = true;
            break;
        case OPT_TLS_HANDSHAKE_TIMEOUT:
            cfg->tls_handshake_timeout_ms =
                (uint32_t)cli_uint("--tls-handshake-timeout", optarg, UINT32_MAX);
            break;
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kaze echo: unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
    if (o->num_certs != o->num_keys) {
        fprintf(stderr, "kaze echo: give each --tls-cert its --tls-key\n");
        exit(2);
    }
    if (!buffered_set)
        cfg->max_buffered = 2 * cfg->max_message_size + (1u << 20);
    unsigned long nofile = cli_raise_nofile();
    /* Each connection takes one descriptor; keep a few for the listeners and stdio. */
    unsigned long reserve = 16 + 2 * (unsigned long)o->threads;
    unsigned long cap = nofile > reserve ? nofile - reserve : 1;
    if (!conns_set)
        cfg->max_connections = cap;
    else if (cfg->max_connections > cap)
        fprintf(stderr,
                "kaze echo: the open-file limit (%lu) caps connections at about %lu, below "
                "--max-connections %zu\n",
                nofile, cap, cfg->max_connections);
    if (!o->quiet && !conns_set)
        fprintf(stderr, "kaze echo: open-file limit %lu: at most %lu connections\n", nofile, cap);
}

int cmd_echo(int argc, char **argv)
{
    struct echo_opts o = {.port = 9001, .threads = 0};
    kz_server_config_default(&o.cfg);
    o.threads = cli_cpus();
    parse_opts(argc, argv, &o);
    if (o.threads == 0)
        o.threads = 1;

    struct kz_tls_server *tls = NULL;
    if (o.num_certs) {
        struct kz_tls_server_config tc = {
            .certs = o.certs, .num_certs = o.num_certs, .tls13_only = o.tls13_only};
        char err[512];
        tls = kz_tls_server_new(&tc, err, sizeof(err));
        if (!tls) {
            fprintf(stderr, "kaze echo: %s\n", err);
            return 1;
        }
        o.cfg.tls = tls;
    }

    /* Signals go to the main loop's signalfd; block them before threads start. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct worker *workers = calloc(o.threads, sizeof(*workers));
    if (!workers)
        return 1;
    for (unsigned i = 0; i < o.threads; i++) {
        workers[i].opts = &o;
        int rc = worker_init(&workers[i]);
        if (rc != KZ_OK) {
            fprintf(stderr, "kaze echo: cannot listen on %s:%u: %s%s%s\n", o.host ? o.host : "*",
                    o.port, kz_strerror(rc), rc == KZ_ERR_SYSTEM ? ": " : "",
                    rc == KZ_ERR_SYSTEM ? strerror(errno) : "");
            return 1;
        }
    }
    if (!o.quiet)
        fprintf(stderr, "kaze echo: listening on %s:%u (%s) with %u thread%s\n",
                o.host ? o.host : "*", o.port, tls ? "wss" : "ws", o.threads,
                o.threads == 1 ? "" : "s");
    printf("%u\n", o.port);
    fflush(stdout);

    struct control ctl = {.workers = workers, .n = o.threads, .tls = tls};
    kz_signal_start(workers[0].loop, &ctl.sigint, SIGINT, on_signal);
    kz_signal_start(workers[0].loop, &ctl.sigterm, SIGTERM, on_signal);
    if (tls)
        kz_signal_start(workers[0].loop, &ctl.sighup, SIGHUP, on_hangup);
    for (unsigned i = 1; i < o.threads; i++)
        pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    /* The main thread's loop ends when its server is idle and the signals are stopped. */
    bool signals_on = true;
    while (kz_loop_alive(workers[0].loop)) {
        kz_loop_run_once(workers[0].loop, -1);
        if (signals_on && ctl.stopping && kz_server_conn_count(workers[0].srv) == 0) {
            kz_signal_stop(workers[0].loop, &ctl.sigint);
            kz_signal_stop(workers[0].loop, &ctl.sigterm);
            kz_signal_stop(workers[0].loop, &ctl.sighup);
            signals_on = false;
        }
    }
    int rc = 0;
    for (unsigned i = 1; i < o.threads; i++) {
        pthread_join(workers[i].thread, NULL);
        rc |= workers[i].rc;
    }
    for (unsigned i = 0; i < o.threads; i++)
        worker_free(&workers[i]);
    free(workers);
    kz_tls_server_free(tls);
    return rc ? 1 : 0;
}
