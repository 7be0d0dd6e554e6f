/*
 * kaze bench: the load generator.
 *
 *   kaze bench echo URL [options]     echo throughput and round-trip latency
 *   kaze bench connect URL [options]  handshakes/s, and memory per idle connection
 *
 * Either may add --deflate: permessage-deflate negotiated on every
 * connection, every message compressed (see bench_worker.c), and either
 * speaks TLS for a wss:// URL: one SSL_CTX for the run, an SSL per
 * connection, the server's certificate verified against --ca FILE or the
 * system's store unless --insecure.
 *
 * This file parses the options, runs the phases from the main thread (which
 * only sleeps, samples clocks and /proc, and wakes the workers) and prints
 * the report. The traffic itself is in bench_worker.c.
 *
 * The server's CPU time (--server-pid) is the figure that matters: a load
 * generator on the same machine competes with the server for cores, so
 * throughput alone says as much about the generator as about the server,
 * while the server's CPU seconds per million messages do not depend on how
 * fast it was driven.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kaze/tcp.h"
#include "bench.h"
#include "cli.h"

/* The close phase always gets this long, whatever is left of --timeout. */
#define CLOSE_GRACE_NS (10ull * 1000000000ull)
/* The main thread looks at the run this often while it waits (it sleeps exactly to a phase change).
 */
#define POLL_NS 10000000ull
/* Descriptors kept for stdio, /proc reads, epoll and the asyncs. */
#define FD_RESERVE 32

static void usage(FILE *f)
{
    fprintf(f, "usage: kaze bench echo URL [OPTIONS]\n"
               "       kaze bench connect URL [OPTIONS]\n"
               "\n"
               "URL is ws://HOST[:PORT][/PATH] or wss://HOST[:PORT][/PATH] (TLS); HOST is an\n"
               "address (IPv4, [IPv6]) or a name, resolved once at the start (localhost is\n"
               "127.0.0.1). --host, --port and --path may override the URL's parts.\n"
               "\n"
               "echo: each connection keeps DEPTH messages in flight, sending one more for\n"
               "every echo, and checks each echo's type, length and sequence tag.\n"
               "  -c, --connections N    connections (default 100)\n"
               "  -s, --size BYTES       payload per message (default 32, 1K with --deflate;\n"
               "                         K/M suffixes)\n"
               "  -d, --depth N          messages in flight per connection (default 8)\n"
               "  -D, --duration SECONDS measured time (default 5)\n"
               "  -n, --messages N       stop after N echoes in total instead\n"
               "      --warmup SECONDS   excluded from the figures first (default 0.5; with -n\n"
               "                         the first 5%% of the messages, or none if 0)\n"
               "      --binary, --text   message type (default binary, text with --deflate)\n"
               "\n"
               "connect: opens N connections as fast as possible and measures handshakes/s\n"
               "(TCP connect, the TLS handshake for wss://, the WebSocket handshake), then\n"
               "keeps them open idle.\n"
               "  -c, --connections N    connections (default 100)\n"
               "      --hold SECONDS     keep the connections open this long (default 0)\n"
               "  -s, --size BYTES       with --deflate: the one message's size (default 1K)\n"
               "\n"
               "both:\n"
               "      --concurrency K    handshakes in progress at once (default 100)\n"
               "  -t, --threads T        event loops, one per thread (default 1)\n"
               "      --server-pid PID   also report the server's CPU time (from /proc/PID/stat):\n"
               "                         per million echoes, or per handshake; and for connect\n"
               "                         its RSS growth per connection (/proc/PID/status)\n"
               "      --timeout SECONDS  overall deadline (default: the planned time + 30;\n"
               "                         120 with -n)\n"
               "      --deflate          permessage-deflate (RFC 7692): offer it, fail unless the\n"
               "                         server accepts, compress every message sent, inflate\n"
               "                         compressed echoes (uncompressed ones are taken too).\n"
               "                         Payloads become JSON-like text (records with the same\n"
               "                         keys and changing values, cut at --size); text\n"
               "                         messages of 1K unless set otherwise. connect: each\n"
               "                         connection exchanges one such message before it counts\n"
               "                         as open (so the server's compression state exists),\n"
               "                         then idles; the server CPU per handshake includes it\n"
               "      --deflate-offer S  offer S instead of the default\n"
               "                         \"permessage-deflate; client_max_window_bits\" (one\n"
               "                         permessage-deflate element; implies --deflate)\n"
               "      --deflate-level N  our compressor's zlib level 0..9 (default 6, zlib's)\n"
               "  -h, --help\n"
               "\n"
               "wss:// (TLS 1.2 or 1.3, a full handshake per connection, SNI when HOST is a\n"
               "name). The server's certificate must be valid for HOST (its name, or its\n"
               "address for a literal) and chain up to a CA of the system's store, unless:\n"
               "      --ca FILE          trust the CA certificates in FILE (PEM) instead\n"
               "      --insecure         do not verify the certificate at all (the server's\n"
               "                         side of the handshake costs the same)\n"
               "A TLS handshake that fails stops the run with its reason.\n"
               "\n"
               "Connections end with a close handshake (1000). A connection or handshake that\n"
               "fails stops the run with exit status 1. Wrong echoes and connections lost\n"
               "during the run are counted as errors, and also make the exit status 1.\n"
               "Lines starting with 'bench: ' are for scripts: NAME VALUE UNIT.\n");
}

/* ------------------------------------------------------------------------
 * The shared run
 */

void bench_broadcast(struct bench_shared *sh)
{
    for (unsigned i = 0; i < sh->nworkers; i++) {
        if (sh->workers[i])
            bench_worker_wake(sh->workers[i]);
    }
}

void bench_fail(struct bench_shared *sh, const char *fmt, ...)
{
    pthread_mutex_lock(&sh->lock);
    if (sh->error[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sh->error, sizeof(sh->error), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&sh->lock);
    atomic_store(&sh->phase, PHASE_ABORT);
    bench_broadcast(sh);
}

static void take_sample(const struct bench_shared *sh, struct bench_sample *s)
{
    s->t_ns = bench_now_ns();
    s->client_cpu = bench_self_cpu();
    s->server_ok = sh->o->server_pid && bench_proc_cpu(sh->o->server_pid, &s->server_cpu);
}

/* Moves the phase from `from` to `to` unless the run aborted meanwhile. */
static bool move_phase(struct bench_shared *sh, int from, int to)
{
    int expect = from;
    return atomic_compare_exchange_strong(&sh->phase, &expect, to);
}

void bench_open_window(struct bench_shared *sh)
{
    /* Only one thread ever opens the window: the sample is written before the phase says so. */
    take_sample(sh, &sh->start);
    move_phase(sh, PHASE_WARMUP, PHASE_MEASURE);
}

void bench_close_window(struct bench_shared *sh)
{
    take_sample(sh, &sh->end);
    if (move_phase(sh, PHASE_MEASURE, PHASE_CLOSE))
        bench_broadcast(sh);
}

/* ------------------------------------------------------------------------
 * Waiting, from the main thread
 */

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int phase_of(struct bench_shared *sh)
{
    return atomic_load(&sh->phase);
}

/* Sleeps until `until` (bench_now_ns time); false if the run aborts or the deadline passes. */
static bool wait_until(struct bench_shared *sh, uint64_t until, uint64_t deadline, const char *what)
{
    for (;;) {
        if (phase_of(sh) == PHASE_ABORT)
            return false;
        uint64_t now = bench_now_ns();
        if (now >= deadline) {
            bench_fail(sh, "the run did not finish within --timeout (while %s)", what);
            return false;
        }
        if (now >= until)
            return true;
        uint64_t left = until - now;
        sleep_ns(left < POLL_NS ? left : POLL_NS);
    }
}

static bool all_ready(struct bench_shared *sh)
{
    return atomic_load(&sh->ready) == sh->nworkers;
}

static bool all_finished(struct bench_shared *sh)
{
    return atomic_load(&sh->finished) == sh->nstarted;
}

static bool window_closed(struct bench_shared *sh)
{
    return phase_of(sh) >= PHASE_CLOSE;
}

/* Waits until `done` holds; false if the run aborts or the deadline passes first. */
static bool wait_for(struct bench_shared *sh, bool (*done)(struct bench_shared *),
                     uint64_t deadline, const char *what)
{
    for (;;) {
        if (done(sh))
            return true;
        if (phase_of(sh) == PHASE_ABORT)
            return false;
        if (bench_now_ns() >= deadline) {
            bench_fail(sh, "the run did not finish within --timeout (while %s)", what);
            return false;
        }
        sleep_ns(POLL_NS);
    }
}

static uint64_t secs_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

/* ------------------------------------------------------------------------
 * The two modes, as the main thread sees them
 */

static void run_echo(struct bench_shared *sh, uint64_t deadline)
{
    const struct bench_opts *o = sh->o;
    if (!wait_for(sh, all_ready, deadline, "opening connections"))
        return;
    if (o->messages) {
        sh->warm_count = o->warmup_set && o->warmup == 0 ? 0 : o->messages / 20;
        atomic_store(&sh->phase, PHASE_WARMUP);
        if (sh->warm_count == 0)
            bench_open_window(sh);
        bench_broadcast(sh);
        wait_for(sh, window_closed, deadline, "exchanging messages");
        return;
    }
    uint64_t go = bench_now_ns();
    atomic_store(&sh->phase, PHASE_WARMUP);
    bench_broadcast(sh);
    if (!wait_until(sh, go + secs_ns(o->warmup), deadline, "warming up"))
        return;
    bench_open_window(sh);
    if (!wait_until(sh, sh->start.t_ns + secs_ns(o->duration), deadline, "exchanging messages"))
        return;
    bench_close_window(sh);
}

/*
 * What connect mode samples: before the first connect, once all are open,
 * after the hold. `ok` says the server's figures could be read.
 */
struct connect_samples {
    double cpu_before, cpu_open;               /* server */
    double client_cpu_before, client_cpu_open; /* this process */
    uint64_t rss_before, rss_open, rss_held;
    bool ok;
};

static void run_connect(struct bench_shared *sh, uint64_t deadline, struct connect_samples *cs)
{
    const struct bench_opts *o = sh->o;
    if (!wait_for(sh, all_ready, deadline, "opening connections"))
        return;
    cs->client_cpu_open = bench_self_cpu();
    if (o->server_pid) {
        cs->ok = bench_proc_cpu(o->server_pid, &cs->cpu_open) &&
                 bench_proc_rss(o->server_pid, &cs->rss_open);
    }
    atomic_store(&sh->phase, PHASE_HOLD);
    if (!wait_until(sh, bench_now_ns() + secs_ns(o->hold), deadline, "holding the connections"))
        return;
    if (o->server_pid)
        cs->ok = cs->ok && bench_proc_rss(o->server_pid, &cs->rss_held);
    if (move_phase(sh, PHASE_HOLD, PHASE_CLOSE))
        bench_broadcast(sh);
}

/* ------------------------------------------------------------------------
 * Report
 */

static void add_stats(struct bench_stats *t, const struct bench_stats *s)
{
    t->msgs += s->msgs;
    t->bytes += s->bytes;
    t->all_msgs += s->all_msgs;
    t->errors += s->errors;
    t->opened += s->opened;
    t->closed_clean += s->closed_clean;
    if (s->first_start_ns && (!t->first_start_ns || s->first_start_ns < t->first_start_ns))
        t->first_start_ns = s->first_start_ns;
    if (s->last_open_ns > t->last_open_ns)
        t->last_open_ns = s->last_open_ns;
    bench_hist_merge(&t->lat, &s->lat);
    bench_hist_merge(&t->hs, &s->hs);
    t->z_sent_msgs += s->z_sent_msgs;
    t->z_sent_plain += s->z_sent_plain;
    t->z_sent_wire += s->z_sent_wire;
    t->z_echo_msgs += s->z_echo_msgs;
    t->z_echo_plain += s->z_echo_plain;
    t->z_echo_wire += s->z_echo_wire;
    t->z_echo_raw += s->z_echo_raw;
    if (s->pmd_seen && !t->pmd_seen) {
        t->pmd_seen = true;
        t->pmd = s->pmd;
    }
    if (s->tls_agreed[0] && !t->tls_agreed[0])
        memcpy(t->tls_agreed, s->tls_agreed, sizeof(t->tls_agreed));
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static double ratio(uint64_t part, uint64_t whole)
{
    return whole ? (double)part / (double)whole : 0;
}

/* What permessage-deflate agreed to and did (--deflate). */
static void report_deflate(const struct bench_stats *t)
{
    const struct kz_pmd_params *p = &t->pmd;
    if (t->pmd_seen)
        printf("  deflate     agreed: server window %u%s, client window %u%s\n",
               p->server_max_window_bits,
               p->server_no_context_takeover ? " without context takeover" : "",
               p->client_max_window_bits,
               p->client_no_context_takeover ? " without context takeover" : "");
    double sent = ratio(t->z_sent_wire, t->z_sent_plain);
    double echo = ratio(t->z_echo_wire, t->z_echo_plain);
    printf("  compressed  sent %llu messages at %.1f%% of their size; echoes: %llu compressed "
           "(%.1f%%), %llu not\n",
           (unsigned long long)t->z_sent_msgs, sent * 100, (unsigned long long)t->z_echo_msgs,
           echo * 100, (unsigned long long)t->z_echo_raw);
    printf("bench: deflate_sent_ratio %.3f ratio\n", sent);
    printf("bench: deflate_echo_ratio %.3f ratio\n", echo);
    printf("bench: deflate_echoes_uncompressed %llu count\n", (unsigned long long)t->z_echo_raw);
}

/* wss://: what TLS agreed to, and how the certificate was taken. */
static void report_tls(const struct bench_opts *o, const struct bench_stats *t)
{
    if (!o->tls)
        return;
    printf("  tls         %s; certificate %s%s\n", t->tls_agreed[0] ? t->tls_agreed : "-",
           o->tls_insecure ? "not verified (--insecure)"
           : o->tls_ca     ? "verified against "
                           : "verified against the system's store",
           !o->tls_insecure && o->tls_ca ? o->tls_ca : "");
}

static void report_echo(const struct bench_shared *sh, const struct bench_stats *t,
                        double close_secs)
{
    const struct bench_opts *o = sh->o;
    double secs = (double)(sh->end.t_ns - sh->start.t_ns) / 1e9;
    double rate = secs > 0 ? (double)t->msgs / secs : 0;
    double mbps = secs > 0 ? (double)t->bytes / secs / 1e6 : 0;
    double p50 = us(bench_hist_quantile(&t->lat, 0.50));
    double p99 = us(bench_hist_quantile(&t->lat, 0.99));
    double p999 = us(bench_hist_quantile(&t->lat, 0.999));
    double mega = (double)t->msgs / 1e6;
    double client_cpu = sh->end.client_cpu - sh->start.client_cpu;

    printf("kaze bench echo: %s%s, %zu connection%s, %zu-byte %s messages%s, depth %u, %u "
           "thread%s\n",
           o->tls ? "wss://" : "", o->host_header, o->conns, o->conns == 1 ? "" : "s", o->size,
           o->text ? "text" : "binary", o->deflate ? " (JSON-like, permessage-deflate)" : "",
           o->depth, o->threads, o->threads == 1 ? "" : "s");
    report_tls(o, t);
    printf("  measured    %.2f s, %llu echoes (%llu in the whole run)\n", secs,
           (unsigned long long)t->msgs, (unsigned long long)t->all_msgs);
    printf("  throughput  %.0f msgs/s, %.2f MB/s of payload echoed\n", rate, mbps);
    printf("  round trip  p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n", p50, p99, p999,
           us(t->lat.max));
    printf("  errors      %llu; %llu of %zu connections closed cleanly in %.2f s\n",
           (unsigned long long)t->errors, (unsigned long long)t->closed_clean, o->conns,
           close_secs);
    if (mega > 0)
        printf("  client CPU  %.2f s (%.3f s per million echoes)\n", client_cpu, client_cpu / mega);
    bool server = sh->start.server_ok && sh->end.server_ok && mega > 0;
    double server_cpu = sh->end.server_cpu - sh->start.server_cpu;
    if (server)
        printf("  server CPU  %.2f s (%.3f s per million echoes; /proc resolution 10 ms)\n",
               server_cpu, server_cpu / mega);
    if (o->deflate)
        report_deflate(t);

    printf("bench: echo_msgs_per_s %.0f msgs/s\n", rate);
    printf("bench: echo_MB_per_s %.2f MB/s\n", mbps);
    printf("bench: echo_p50_us %.1f us\n", p50);
    printf("bench: echo_p99_us %.1f us\n", p99);
    printf("bench: echo_p999_us %.1f us\n", p999);
    printf("bench: echo_errors %llu count\n", (unsigned long long)t->errors);
    if (mega > 0)
        printf("bench: client_cpu_s_per_M_msgs %.3f s\n", client_cpu / mega);
    if (server)
        printf("bench: server_cpu_s_per_M_msgs %.3f s\n", server_cpu / mega);
}

static void report_connect(const struct bench_shared *sh, const struct bench_stats *t,
                           const struct connect_samples *cs, double close_secs)
{
    const struct bench_opts *o = sh->o;
    double secs = (double)(t->last_open_ns - t->first_start_ns) / 1e9;
    double rate = secs > 0 ? (double)t->opened / secs : 0;
    double p50 = us(bench_hist_quantile(&t->hs, 0.50));
    double p99 = us(bench_hist_quantile(&t->hs, 0.99));
    printf("kaze bench connect: %s%s, %zu connections, concurrency %zu, %u thread%s\n",
           o->tls ? "wss://" : "", o->host_header, o->conns, o->concurrency, o->threads,
           o->threads == 1 ? "" : "s");
    report_tls(o, t);
    if (o->deflate)
        printf("  deflate     each connection exchanged one %zu-byte compressed %s message, "
               "then idled\n",
               o->size, o->text ? "text" : "binary");
    printf("  handshakes  %llu in %.3f s: %.0f handshakes/s\n", (unsigned long long)t->opened, secs,
           rate);
    printf("  handshake   p50 %.1f us, p99 %.1f us, max %.1f us (TCP connect + %supgrade)\n", p50,
           p99, us(t->hs.max), o->tls ? "TLS + " : "");
    printf("  held        %.1f s; errors %llu; %llu closed cleanly in %.2f s\n", o->hold,
           (unsigned long long)t->errors, (unsigned long long)t->closed_clean, close_secs);
    double client_us = 0, cpu_us = 0, rss_per = 0;
    if (t->opened > 0) {
        client_us = (cs->client_cpu_open - cs->client_cpu_before) * 1e6 / (double)t->opened;
        printf("  client CPU  %.1f us per handshake\n", client_us);
    }
    bool server = cs->ok && t->opened > 0;
    if (server) {
        cpu_us = (cs->cpu_open - cs->cpu_before) * 1e6 / (double)t->opened;
        rss_per = ((double)cs->rss_held - (double)cs->rss_before) / (double)t->opened;
        printf("  server CPU  %.2f s for the handshakes%s: %.1f us per handshake (10 ms "
               "resolution)\n",
               cs->cpu_open - cs->cpu_before, o->deflate ? " and messages" : "", cpu_us);
        printf("  server RSS  %.1f MB before, %.1f MB open, %.1f MB after the hold: %.0f bytes "
               "per %sconnection\n",
               (double)cs->rss_before / 1e6, (double)cs->rss_open / 1e6, (double)cs->rss_held / 1e6,
               rss_per, o->deflate ? "idle compressed " : "");
    }
    if (o->deflate)
        report_deflate(t);
    printf("bench: connect_handshakes_per_s %.0f hs/s\n", rate);
    printf("bench: connect_p50_us %.1f us\n", p50);
    printf("bench: connect_p99_us %.1f us\n", p99);
    printf("bench: connect_errors %llu count\n", (unsigned long long)t->errors);
    if (t->opened > 0)
        printf("bench: client_cpu_us_per_handshake %.1f us\n", client_us);
    if (server) {
        printf("bench: server_cpu_us_per_handshake %.1f us\n", cpu_us);
        printf("bench: server_rss_bytes_per_conn %.0f bytes\n", rss_per);
    }
}

/* ------------------------------------------------------------------------
 * Options
 */

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kaze bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static double parse_seconds(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0 || v > 1e6)
        die("%s: '%s' is not a number of seconds", opt, s);
    return v;
}

/* The parts of a URL or of --host/--port/--path, before they are checked. */
struct target {
    char host[256];
    unsigned port;
    char path[1024];
    bool tls; /* wss:// */
};

static void copy_part(char *dst, size_t cap, const char *src, size_t len, const char *what)
{
    if (len == 0 || len >= cap)
        die("the %s in the URL is %s", what, len ? "too long" : "missing");
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void parse_url(const char *url, struct target *t)
{
    const char *p;
    if (strncmp(url, "ws://", 5) == 0)
        p = url + 5;
    else if (strncmp(url, "wss://", 6) == 0)
        p = url + 6;
    else
        die("'%s' is not a ws:// or wss:// URL", url);
    t->tls = p == url + 6;
    t->port = t->tls ? 443 : 80;
    const char *h_end;
    if (*p == '[') {
        h_end = strchr(p, ']');
        if (!h_end)
            die("'%s': unterminated [IPv6] host", url);
        h_end++;
    } else {
        h_end = p + strcspn(p, ":/?");
    }
    copy_part(t->host, sizeof(t->host), p, (size_t)(h_end - p), "host");
    p = h_end;
    if (*p == ':') {
        size_t n = strcspn(p + 1, "/?");
        char port[8];
        copy_part(port, sizeof(port), p + 1, n, "port");
        t->port = (unsigned)cli_uint("port", port, 65535);
        p += 1 + n;
    }
    if (*p == '?')
        snprintf(t->path, sizeof(t->path), "/%s", p);
    else if (*p)
        snprintf(t->path, sizeof(t->path), "%s", p);
}

/* A name (not a literal): its first address, looked up once, before the run. */
static void resolve(struct bench_opts *o, const char *host, unsigned port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    char serv[8];
    snprintf(serv, sizeof(serv), "%u", port);
    int rc = getaddrinfo(host, serv, &hints, &res);
    if (rc != 0)
        die("cannot resolve '%s': %s", host, gai_strerror(rc));
    memcpy(&o->addr, res->ai_addr, res->ai_addrlen);
    o->addr_len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
}

/* Resolves the target into the address to connect to, the Host header and the TLS name. */
static void set_target(struct bench_opts *o, const struct target *t)
{
    if (t->host[0] == '\0')
        die("no server given: a ws:// or wss:// URL or --host (see --help)");
    if (t->port == 0)
        die("port 0 is not a server's port");
    /* localhost is IPv4's: the servers compared listen on 127.0.0.1. */
    const char *literal = strcmp(t->host, "localhost") == 0 ? "127.0.0.1" : t->host;
    bool is_ip = kz_tcp_addr(literal, (uint16_t)t->port, &o->addr, &o->addr_len) == KZ_OK &&
                 literal == t->host;
    if (!is_ip && literal == t->host)
        resolve(o, t->host, t->port);
    o->tls = t->tls;
    o->tls_name_is_ip = is_ip;
    /* The name certificates are checked against and SNI carries: no brackets, no port. */
    size_t hl = strlen(t->host);
    if (t->host[0] == '[' && hl >= 2)
        snprintf(o->tls_name, sizeof(o->tls_name), "%.*s", (int)(hl - 2), t->host + 1);
    else
        snprintf(o->tls_name, sizeof(o->tls_name), "%s", t->host);
    bool v6 = strchr(t->host, ':') && t->host[0] != '[';
    snprintf(o->host_header, sizeof(o->host_header), v6 ? "[%s]:%u" : "%s:%u", t->host, t->port);
    snprintf(o->target, sizeof(o->target), "%s", t->path[0] ? t->path : "/");
    if (o->target[0] != '/')
        die("the path must start with '/'");
}

enum {
    OPT_BINARY = 256,
    OPT_TEXT,
    OPT_WARMUP,
    OPT_SERVER_PID,
    OPT_CONCURRENCY,
    OPT_HOLD,
    OPT_TIMEOUT,
    OPT_HOST,
    OPT_PORT,
    OPT_PATH,
    OPT_DEFLATE,
    OPT_DEFLATE_OFFER,
    OPT_DEFLATE_LEVEL,
    OPT_CA,
    OPT_INSECURE,
};

static const struct option longopts[] = {
    {"connections", required_argument, NULL, 'c'},
    {"size", required_argument, NULL, 's'},
    {"depth", required_argument, NULL, 'd'},
    {"duration", required_argument, NULL, 'D'},
    {"messages", required_argument, NULL, 'n'},
    {"threads", required_argument, NULL, 't'},
    {"help", no_argument, NULL, 'h'},
    {"binary", no_argument, NULL, OPT_BINARY},
    {"text", no_argument, NULL, OPT_TEXT},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"server-pid", required_argument, NULL, OPT_SERVER_PID},
    {"concurrency", required_argument, NULL, OPT_CONCURRENCY},
    {"hold", required_argument, NULL, OPT_HOLD},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"path", required_argument, NULL, OPT_PATH},
    {"deflate", no_argument, NULL, OPT_DEFLATE},
    {"deflate-offer", required_argument, NULL, OPT_DEFLATE_OFFER},
    {"deflate-level", required_argument, NULL, OPT_DEFLATE_LEVEL},
    {"ca", required_argument, NULL, OPT_CA},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {NULL, 0, NULL, 0},
};

/* What parsing collects besides the options themselves. */
struct parse_state {
    struct target over; /* --host, --port, --path */
    bool timeout_set;
    bool size_set;
    bool type_set; /* --text or --binary */
};

/* A window in an offer: 8..15, nothing else. 0 if `v` is not one. */
static uint8_t offer_window(const char *v)
{
    if (v[0] >= '8' && v[0] <= '9' && v[1] == '\0')
        return (uint8_t)(v[0] - '0');
    if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && v[2] == '\0')
        return (uint8_t)(10 + v[1] - '0');
    return 0;
}

static bool param_is(const struct kz_ext_param *p, const char *name)
{
    return p->name.len == strlen(name) && memcmp(p->name.ptr, name, p->name.len) == 0;
}

/*
 * Reads the permessage-deflate parameters of --deflate-offer into `off`,
 * dying on anything kz_pmd_check_response could not judge an answer by.
 */
static void read_offer_params(const char *s, const struct kz_ext_offer *ext,
                              struct kz_pmd_offer *off)
{
    static const char *const names[4] = {"server_no_context_takeover", "client_no_context_takeover",
                                         "server_max_window_bits", "client_max_window_bits"};
    bool seen[4] = {false};
    memset(off, 0, sizeof(*off));
    for (size_t i = 0; i < ext->num_params; i++) {
        const struct kz_ext_param *p = &ext->params[i];
        unsigned k = 0;
        while (k < 4 && !param_is(p, names[k]))
            k++;
        if (k == 4 || seen[k])
            die("--deflate-offer '%s': parameter '%.*s' is %s", s, (int)p->name.len, p->name.ptr,
                k == 4 ? "not one of permessage-deflate's" : "there twice");
        seen[k] = true;
        if ((k <= 1 && p->has_value) || (k == 2 && !p->has_value))
            die("--deflate-offer '%s': %s %s", s, names[k],
                k <= 1 ? "takes no value" : "needs a value");
        char v[8];
        uint8_t bits = 0;
        if (p->has_value && (kz_ext_param_value(p, v, sizeof(v)) < 0 || !(bits = offer_window(v))))
            die("--deflate-offer '%s': %s wants a window of 8..15", s, names[k]);
        if (k == 0)
            off->server_no_context_takeover = true;
        else if (k == 1)
            off->client_no_context_takeover = true;
        else if (k == 2)
            off->server_max_window_bits = bits;
        else if (bits)
            off->client_max_window_bits = bits;
        else {
            off->client_max_window_bits = 15;
            off->client_max_window_bits_bare = true;
        }
    }
}

/*
 * --deflate-offer: one permessage-deflate element, sent as written and
 * parsed into o->pmd, which the server's answer is judged against.
 */
static void parse_offer(struct bench_opts *o, const char *s)
{
    size_t len = strlen(s);
    if (len == 0)
        die("--deflate-offer: empty (leave out --deflate to offer nothing)");
    if (len >= sizeof(o->deflate_offer))
        die("--deflate-offer: longer than %zu bytes", sizeof(o->deflate_offer) - 1);
    struct kz_header h = {{"Sec-WebSocket-Extensions", 24}, {s, len}};
    struct kz_hs_iter it = {0, 0};
    struct kz_ext_offer ext;
    int r = kz_hs_next_extension(&h, 1, &it, &ext);
    if (r <= 0)
        die("--deflate-offer '%s': %s", s,
            r == 0 ? "empty" : "not an extension offer (RFC 6455 9.1)");
    if (!(ext.name.len == 18 && memcmp(ext.name.ptr, "permessage-deflate", 18) == 0))
        die("--deflate-offer '%s': offers '%.*s', not permessage-deflate", s, (int)ext.name.len,
            ext.name.ptr);
    read_offer_params(s, &ext, &o->pmd);
    if (kz_hs_next_extension(&h, 1, &it, &ext) != 0)
        die("--deflate-offer '%s': one permessage-deflate element only", s);
    char canon[KZ_PMD_ELEMENT_MAX];
    if (kz_pmd_write_offer(canon, sizeof(canon), &o->pmd) < 0)
        die("--deflate-offer '%s': not a valid permessage-deflate offer", s);
    memcpy(o->deflate_offer, s, len + 1);
    o->deflate = true;
}

/* One option. */
static void parse_one(int ch, struct bench_opts *o, struct parse_state *ps)
{
    switch (ch) {
    case 'c':
        o->conns = cli_uint("--connections", optarg, 10000000);
        break;
    case 's':
        o->size = cli_size("--size", optarg);
        ps->size_set = true;
        break;
    case 'd':
        o->depth = (unsigned)cli_uint("--depth", optarg, 1u << 16);
        break;
    case 'D':
        o->duration = parse_seconds("--duration", optarg);
        break;
    case 'n':
        o->messages = cli_uint("--messages", optarg, ~0ul);
        break;
    case 't':
        o->threads = (unsigned)cli_uint("--threads", optarg, 256);
        break;
    case 'h':
        usage(stdout);
        exit(0);
    case OPT_BINARY:
        o->text = false;
        ps->type_set = true;
        break;
    case OPT_TEXT:
        o->text = true;
        ps->type_set = true;
        break;
    case OPT_WARMUP:
        o->warmup = parse_seconds("--warmup", optarg);
        o->warmup_set = true;
        break;
    case OPT_SERVER_PID:
        o->server_pid = (long)cli_uint("--server-pid", optarg, 1ul << 22);
        break;
    case OPT_CONCURRENCY:
        o->concurrency = cli_uint("--concurrency", optarg, 1000000);
        break;
    case OPT_HOLD:
        o->hold = parse_seconds("--hold", optarg);
        break;
    case OPT_TIMEOUT:
        o->timeout = parse_seconds("--timeout", optarg);
        ps->timeout_set = true;
        break;
    case OPT_HOST:
        snprintf(ps->over.host, sizeof(ps->over.host), "%s", optarg);
        break;
    case OPT_PORT:
        ps->over.port = (unsigned)cli_uint("--port", optarg, 65535);
        break;
    case OPT_PATH:
        snprintf(ps->over.path, sizeof(ps->over.path), "%s", optarg);
        break;
    case OPT_DEFLATE:
        o->deflate = true;
        break;
    case OPT_DEFLATE_OFFER:
        parse_offer(o, optarg);
        break;
    case OPT_DEFLATE_LEVEL:
        o->deflate_level = (uint8_t)cli_uint("--deflate-level", optarg, 9);
        break;
    case OPT_CA:
        o->tls_ca = optarg;
        break;
    case OPT_INSECURE:
        o->tls_insecure = true;
        break;
    default:
        usage(stderr);
        exit(2);
    }
}

/* --deflate's defaults: the browsers' offer, 1K of text. */
static void set_deflate_defaults(struct bench_opts *o, const struct parse_state *ps)
{
    if (o->deflate_offer[0] == '\0') {
        kz_pmd_offer_default(&o->pmd);
        if (kz_pmd_write_offer(o->deflate_offer, sizeof(o->deflate_offer), &o->pmd) < 0)
            die("cannot write the default permessage-deflate offer");
    }
    if (!ps->size_set)
        o->size = 1024;
    if (!ps->type_set)
        o->text = true;
}

/* Values that make no sense together, and the descriptors the run needs. */
static void check_opts(struct bench_opts *o, const struct parse_state *ps)
{
    bool timeout_set = ps->timeout_set;
    if (o->deflate)
        set_deflate_defaults(o, ps);
    if (o->conns == 0)
        die("--connections must be at least 1");
    if (o->depth == 0)
        die("--depth must be at least 1");
    if (o->size > (64u << 20))
        die("--size is limited to 64M");
    if (o->concurrency == 0)
        die("--concurrency must be at least 1");
    if (o->mode == BENCH_ECHO && !o->messages && o->duration <= 0)
        die("--duration must be above 0");
    if ((o->tls_ca || o->tls_insecure) && !o->tls)
        die("--ca and --insecure apply to wss:// URLs only");
    if (o->tls_ca && o->tls_insecure)
        die("--ca and --insecure contradict each other: verify against FILE, or not at all");
    if (o->threads == 0)
        o->threads = 1;
    if (o->threads > o->conns)
        o->threads = (unsigned)o->conns;
    if (!timeout_set) {
        double planned = o->mode == BENCH_CONNECT ? o->hold
                         : o->messages            ? 90
                                                  : o->warmup + o->duration;
        o->timeout = planned + 30;
    }
    unsigned long nofile = cli_raise_nofile();
    if (o->conns + FD_RESERVE + 2ul * o->threads > nofile)
        die("%zu connections need %zu descriptors, but the open-file limit is %lu", o->conns,
            o->conns + FD_RESERVE + 2ul * o->threads, nofile);
    if (o->server_pid) {
        double cpu;
        uint64_t rss;
        if (!bench_proc_cpu(o->server_pid, &cpu) || !bench_proc_rss(o->server_pid, &rss))
            die("--server-pid %ld: cannot read /proc/%ld/stat and status", o->server_pid,
                o->server_pid);
    }
}

static void parse_opts(int argc, char **argv, struct bench_opts *o)
{
    struct target t = {.port = 0};
    struct parse_state ps = {.over = {.port = 0}};
    const struct target *over = &ps.over;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:s:d:D:n:t:h", longopts, NULL)) != -1)
        parse_one(ch, o, &ps);
    if (optind < argc)
        parse_url(argv[optind++], &t);
    if (optind < argc)
        die("unexpected argument '%s'", argv[optind]);
    if (over->host[0])
        memcpy(t.host, over->host, sizeof(t.host));
    if (over->port)
        t.port = over->port;
    if (over->path[0])
        memcpy(t.path, over->path, sizeof(t.path));
    if (t.port == 0 && !t.tls)
        t.port = 80; /* --host without a URL */
    set_target(o, &t);
    check_opts(o, &ps);
}

/* ------------------------------------------------------------------------
 * The command
 */

static bool start_workers(struct bench_shared *sh)
{
    const struct bench_opts *o = sh->o;
    size_t per = o->conns / o->threads, extra = o->conns % o->threads;
    size_t conc = (o->concurrency + o->threads - 1) / o->threads;
    uint32_t first = 0;
    for (unsigned i = 0; i < sh->nworkers; i++) {
        size_t n = per + (i < extra ? 1 : 0);
        sh->workers[i] = bench_worker_new(sh, i, first, n, conc);
        if (!sh->workers[i])
            return false;
        first += (uint32_t)n;
    }
    for (unsigned i = 0; i < sh->nworkers; i++) {
        if (bench_worker_start(sh->workers[i]) != KZ_OK) {
            bench_fail(sh, "cannot start thread %u: %s", i, strerror(errno));
            return false;
        }
        sh->nstarted++;
    }
    return true;
}

/*
 * Waits for the workers to end and joins them. Closing is bounded by the
 * workers' own close timeout; should it still drag on, the run is aborted,
 * which makes every worker drop its connections at once.
 */
static void stop_workers(struct bench_shared *sh)
{
    uint64_t grace = bench_now_ns() + CLOSE_GRACE_NS;
    bool aborted = false;
    while (!all_finished(sh)) {
        uint64_t now = bench_now_ns();
        if (!aborted && now >= grace) {
            bench_fail(sh, "the connections did not close within %llu s",
                       (unsigned long long)(CLOSE_GRACE_NS / 1000000000ull));
            aborted = true;
        } else if (aborted && now >= grace + CLOSE_GRACE_NS) {
            /* A worker that ignores even an abort cannot be joined: leave without it. */
            fprintf(stderr, "kaze bench: %s; a worker thread is stuck\n", sh->error);
            fflush(stdout);
            _exit(1);
        }
        sleep_ns(POLL_NS);
    }
    for (unsigned i = 0; i < sh->nworkers; i++) {
        if (sh->workers[i])
            bench_worker_join(sh->workers[i]);
    }
}

static int run(struct bench_shared *sh)
{
    const struct bench_opts *o = sh->o;
    struct connect_samples cs = {.ok = false, .client_cpu_before = bench_self_cpu()};
    if (o->mode == BENCH_CONNECT && o->server_pid)
        cs.ok = bench_proc_cpu(o->server_pid, &cs.cpu_before) &&
                bench_proc_rss(o->server_pid, &cs.rss_before);
    uint64_t deadline = bench_now_ns() + secs_ns(o->timeout);
    if (start_workers(sh)) {
        if (o->mode == BENCH_ECHO)
            run_echo(sh, deadline);
        else
            run_connect(sh, deadline, &cs);
    }
    uint64_t close_start = bench_now_ns();
    stop_workers(sh);
    double close_secs = (double)(bench_now_ns() - close_start) / 1e9;

    if (phase_of(sh) == PHASE_ABORT) {
        fprintf(stderr, "kaze bench: %s\n", sh->error[0] ? sh->error : "the run failed");
        return 1;
    }
    struct bench_stats *t = calloc(1, sizeof(*t));
    if (!t) {
        fprintf(stderr, "kaze bench: %s\n", kz_strerror(KZ_ERR_NOMEM));
        return 1;
    }
    for (unsigned i = 0; i < sh->nworkers; i++)
        add_stats(t, bench_worker_stats(sh->workers[i]));
    if (o->mode == BENCH_ECHO)
        report_echo(sh, t, close_secs);
    else
        report_connect(sh, t, &cs, close_secs);
    int rc = t->errors ? 1 : 0;
    free(t);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    struct bench_opts o = {
        .conns = 100,
        .size = 32,
        .depth = 8,
        .duration = 5,
        .warmup = 0.5,
        .threads = 1,
        .concurrency = 100,
        .deflate_level = 6,
    };
    if (strcmp(argv[1], "echo") == 0)
        o.mode = BENCH_ECHO;
    else if (strcmp(argv[1], "connect") == 0)
        o.mode = BENCH_CONNECT;
    else
        die("unknown mode '%s': echo or connect (see --help)", argv[1]);
    parse_opts(argc - 1, argv + 1, &o);
    signal(SIGPIPE, SIG_IGN);

    struct bench_shared sh = {.o = &o, .nworkers = o.threads};
    pthread_mutex_init(&sh.lock, NULL);
    atomic_init(&sh.phase, PHASE_CONNECT);
    atomic_init(&sh.ready, 0);
    atomic_init(&sh.finished, 0);
    atomic_init(&sh.received, 0);
    sh.workers = calloc(o.threads, sizeof(*sh.workers));
    if (!sh.workers)
        die("%s", kz_strerror(KZ_ERR_NOMEM));
    if (o.tls) {
        char err[400];
        sh.tls = bench_tls_ctx(&o, err, sizeof(err));
        if (!sh.tls)
            die("%s", err);
    }
    int rc = run(&sh);
    for (unsigned i = 0; i < sh.nworkers; i++)
        bench_worker_free(sh.workers[i]);
    free(sh.workers);
    SSL_CTX_free(sh.tls);
    pthread_mutex_destroy(&sh.lock);
    return rc;
}
