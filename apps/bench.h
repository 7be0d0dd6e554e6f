/*
 * The insides of `kaze bench`, shared by its three files:
 *   bench.c         options, the run's phases (driven from the main thread),
 *                   the report;
 *   bench_worker.c  one event loop per thread with its share of the
 *                   connections: connect, handshake, echo traffic, close;
 *   bench_util.c    latency histogram, mask-key generator, the JSON-like
 *                   text of compressed runs, clocks, /proc, the TLS
 *                   context (wss://) and the text of TLS errors.
 *
 * Threads. The main thread never touches a loop: it moves the run from
 * phase to phase through `bench_shared.phase` and wakes every worker with
 * its async. Workers read the phase once per batch of input. The only
 * other shared writes are the counters below, all atomic. The TLS context
 * is made before the workers start and only read by them (SSL_new is
 * thread-safe on a shared SSL_CTX).
 */
#ifndef KAZE_APP_BENCH_H
#define KAZE_APP_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "kaze/deflate.h"
#include "kaze/handshake.h"

/* ------------------------------------------------------------------------
 * Histogram: log-linear buckets, 2^5 per power of two (about 3% wide), so
 * that recording a value is a few instructions and a whole run fits in
 * 16 KB whatever its length. Values are nanoseconds.
 */
#define BENCH_HIST_SUB_BITS 5
#define BENCH_HIST_SUB      (1u << BENCH_HIST_SUB_BITS)
#define BENCH_HIST_BUCKETS  ((64 - BENCH_HIST_SUB_BITS + 1) * BENCH_HIST_SUB)

struct bench_hist {
    uint64_t count;
    uint64_t max;
    uint64_t bucket[BENCH_HIST_BUCKETS];
};

/* Values below 2^6 get a bucket each; above, 32 buckets per octave. */
static inline size_t bench_hist_index(uint64_t v)
{
    if (v < BENCH_HIST_SUB)
        return (size_t)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - BENCH_HIST_SUB_BITS;
    return (size_t)(shift + 1) * BENCH_HIST_SUB + ((v >> shift) & (BENCH_HIST_SUB - 1));
}

static inline void bench_hist_add(struct bench_hist *h, uint64_t v)
{
    h->bucket[bench_hist_index(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

void bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* The value at quantile q (0..1): the middle of its bucket; 0 if empty. */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);

/* ------------------------------------------------------------------------
 * Mask keys. RFC 6455 wants a fresh unpredictable key per frame so that a
 * browser's script cannot choose the bytes on the wire. The bench is a load
 * generator, not a browser: it needs keys that change per frame (so the
 * server's unmasking is exercised honestly), not secrecy, and RAND_bytes
 * per frame would cost more than the rest of the frame. So: splitmix64,
 * seeded once per thread from OpenSSL's RAND_bytes. One step is a handful
 * of multiplications and yields the key of one frame.
 */
struct bench_rng {
    uint64_t state;
};

/* Seeds from RAND_bytes; KZ_OK or KZ_ERR_CRYPTO. */
int bench_rng_seed(struct bench_rng *r);

static inline uint64_t bench_rng_next(struct bench_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------------
 * Text for compressed runs (--deflate). A payload that compresses like real
 * traffic: JSON records with the same keys over and over (what a window
 * matches) and values that change per record (what it cannot), e.g.
 *   {"id":1045,"ts":1700000051123,"type":"trade","symbol":"ETH-USD",
 *    "side":"buy","price":2231.07,"qty":0.125,"user":"u04821"},
 * Values come from a splitmix64 stream seeded per thread; the id counts up
 * and the timestamp creeps forward, as in a feed. Writing a record costs a
 * few dozen stores, no allocation and no printf.
 */
struct bench_text {
    struct bench_rng rng;
    uint64_t id; /* the next record's id */
    uint64_t ts; /* the next record's timestamp, in milliseconds */
};

/* The most bench_text_records() writes past `end`: less than one record. */
#define BENCH_TEXT_SLACK 256

/*
 * Writes records from `p` until `end` is reached or passed (by less than
 * BENCH_TEXT_SLACK bytes, which the caller's buffer must have room for).
 */
void bench_text_records(struct bench_text *g, uint8_t *p, const uint8_t *end);

/* ------------------------------------------------------------------------
 * Clocks and /proc
 */

/* CLOCK_MONOTONIC in nanoseconds (vDSO: no system call). */
uint64_t bench_now_ns(void);
/* This process's user + system CPU time in seconds (all threads). */
double bench_self_cpu(void);
/* utime + stime of process `pid` from /proc/PID/stat, in seconds; false if unreadable. */
bool bench_proc_cpu(long pid, double *seconds);
/* VmRSS of process `pid` from /proc/PID/status, in bytes; false if unreadable. */
bool bench_proc_rss(long pid, uint64_t *bytes);

/* ------------------------------------------------------------------------
 * TLS (wss://)
 */

struct bench_opts;

/*
 * The run's client context: TLS 1.2 or 1.3, the server's certificate
 * verified against o->tls_ca (or the system store) unless o->tls_insecure.
 * Echo runs keep OpenSSL's record buffers for the life of a connection (no
 * allocation per message) and read ahead (several records per read());
 * connect runs give the buffers back while a connection idles, as a server
 * would, so that thousands of idle connections do not cost the bench
 * 35 KB each. NULL on failure, with the reason in `err`.
 */
SSL_CTX *bench_tls_ctx(const struct bench_opts *o, char *err, size_t err_len);

/*
 * Why the SSL call that returned `ret` (<= 0) failed, for a message:
 * certificate verification, a TLS alert, the peer closing, a system call's
 * errno. `ssl_error` is SSL_get_error()'s answer; `ssl` may be NULL for a
 * call that made no connection. Clears OpenSSL's error queue.
 */
const char *bench_tls_error(SSL *ssl, int ssl_error, char *buf, size_t cap);

/* ------------------------------------------------------------------------
 * Options
 */

enum bench_mode {
    BENCH_ECHO = 0,
    BENCH_CONNECT = 1,
};

struct bench_opts {
    enum bench_mode mode;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host_header[300]; /* "host:port": the Host header, and the server in messages */
    char target[1024];     /* path and query */
    /*
     * wss://: TLS on every connection. The URL's host is the name the
     * certificate must match (an address for literals) and, when it is a
     * name, the SNI sent.
     */
    bool tls;
    bool tls_insecure;   /* --insecure: no verification at all */
    bool tls_name_is_ip; /* tls_name is an IPv4/IPv6 literal: no SNI, match the address */
    char tls_name[256];  /* the host, without brackets */
    const char *tls_ca;  /* --ca FILE (PEM); NULL: the system's store */
    size_t conns;
    size_t size;       /* payload bytes per message */
    unsigned depth;    /* messages in flight per connection */
    double duration;   /* seconds measured (echo, without -n) */
    uint64_t messages; /* -n: stop after this many echoes; 0 = by duration */
    double warmup;     /* seconds excluded before measuring (duration mode) */
    bool warmup_set;
    bool text;
    unsigned threads;
    size_t concurrency; /* handshakes in progress at once, all threads together */
    double hold;        /* connect: seconds to keep the connections idle */
    double timeout;     /* overall deadline in seconds */
    long server_pid;    /* 0: none */
    /*
     * --deflate: offer permessage-deflate, fail unless the server accepts,
     * compress every message sent and inflate the compressed echoes. In
     * connect mode each connection exchanges one compressed message.
     */
    bool deflate;
    uint8_t deflate_level;   /* our compressor's zlib level (default 6) */
    char deflate_offer[256]; /* the Sec-WebSocket-Extensions value sent */
    struct kz_pmd_offer pmd; /* the same, parsed: what the answer is judged against */
};

/* ------------------------------------------------------------------------
 * The run, shared between the main thread and the workers
 */

enum bench_phase {
    PHASE_CONNECT = 0, /* opening connections */
    PHASE_WARMUP,      /* echo traffic, not counted */
    PHASE_MEASURE,     /* echo traffic, counted */
    PHASE_HOLD,        /* connect mode: every connection open and idle */
    PHASE_CLOSE,       /* close every connection with 1000 */
    PHASE_ABORT,       /* a fatal error: drop everything now */
};

/* One end of the measured window: when, and the CPU clocks then. */
struct bench_sample {
    uint64_t t_ns;
    double server_cpu;
    double client_cpu;
    bool server_ok;
};

struct bench_worker;

struct bench_shared {
    const struct bench_opts *o;
    SSL_CTX *tls; /* wss://: the run's client context; NULL for ws:// */
    struct bench_worker **workers;
    unsigned nworkers;
    unsigned nstarted; /* threads started (main thread only) */
    _Atomic int phase;
    atomic_uint ready;             /* workers whose connections are all open */
    atomic_uint finished;          /* workers whose loops have ended */
    atomic_uint_fast64_t received; /* -n mode: echoes received so far, all threads */
    uint64_t warm_count;           /* -n mode: echoes excluded at the start */
    /* Written by whoever moves the phase into and out of PHASE_MEASURE. */
    struct bench_sample start, end;
    pthread_mutex_t lock; /* guards `error` */
    char error[512];
};

/* What one worker saw; summed by the main thread once the worker is joined. */
struct bench_stats {
    uint64_t msgs;           /* echoes received inside the measured window */
    uint64_t bytes;          /* their payload bytes */
    uint64_t all_msgs;       /* echoes received in the whole run */
    uint64_t errors;         /* wrong echoes, protocol errors, dropped connections */
    uint64_t opened;         /* handshakes completed */
    uint64_t closed_clean;   /* close handshakes completed (1000 answered, then FIN) */
    uint64_t first_start_ns; /* the first connect began */
    uint64_t last_open_ns;   /* the last handshake completed */
    struct bench_hist lat;   /* echo round trips in the window */
    struct bench_hist hs;    /* connect + handshake times */
    /* --deflate, over the whole run (connect mode: the one message each) */
    uint64_t z_sent_msgs;  /* messages compressed and sent */
    uint64_t z_sent_plain; /* their payload bytes */
    uint64_t z_sent_wire;  /* their compressed bytes */
    uint64_t z_echo_msgs;  /* echoes that came compressed */
    uint64_t z_echo_plain; /* their payload bytes, inflated */
    uint64_t z_echo_wire;  /* their compressed bytes */
    uint64_t z_echo_raw;   /* echoes that came uncompressed */
    bool pmd_seen;         /* `pmd` holds what a server answered */
    struct kz_pmd_params pmd;
    /* wss://: what the first connection's handshake agreed to ("TLSv1.3 TLS_AES_... X25519") */
    char tls_agreed[128];
};

/*
 * Records a fatal error (the first one wins), moves the run to
 * PHASE_ABORT and wakes every worker. Callable from any thread.
 */
void bench_fail(struct bench_shared *sh, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Wakes every worker so that it looks at the phase. */
void bench_broadcast(struct bench_shared *sh);
/* Opens the measured window (WARMUP → MEASURE), sampling the clocks. */
void bench_open_window(struct bench_shared *sh);
/* Closes it (MEASURE → CLOSE), sampling the clocks, and wakes the workers. */
void bench_close_window(struct bench_shared *sh);

/*
 * A worker: one loop on its own thread, connections `first_id` to
 * `first_id + n - 1`, at most `concurrency` handshakes at once. Returns NULL
 * (with the reason in sh->error) if it cannot be set up.
 */
struct bench_worker *bench_worker_new(struct bench_shared *sh, unsigned index, uint32_t first_id,
                                      size_t n, size_t concurrency);
/* Starts the thread, which opens the connections at once. KZ_OK or KZ_ERR_SYSTEM. */
int bench_worker_start(struct bench_worker *w);
/* Makes the worker look at the phase (any thread). */
void bench_worker_wake(struct bench_worker *w);
void bench_worker_join(struct bench_worker *w);
const struct bench_stats *bench_worker_stats(const struct bench_worker *w);
/* Frees a joined (or never started) worker. */
void bench_worker_free(struct bench_worker *w);

#endif
