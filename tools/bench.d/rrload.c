/*
 * rrload.c — request/response load generator and responder for tools/bench.
 *
 *   rrload serve ADDR PORT [THREADS]        echo responder (epoll, SO_REUSEPORT, one listener per thread)
 *   rrload probe HOST PORT TIMEOUT_S        retry connect + one 64 B round trip until it works
 *   rrload ping  HOST PORT N                N round trips of 64 B on ONE connection: p50/p99 in µs
 *   rrload rate  HOST PORT THREADS SECONDS  connect, 64 B request, 64 B response, close — in a loop
 *   rrload hold  HOST PORT COUNT SECONDS    open COUNT connections (one round trip each), hold them idle
 *   rrload blast ADDR PORT                  bulk source: writes to each connection until it closes
 *   rrload drain HOST PORT SECONDS          reads one connection's bulk for SECONDS: Gbit/s
 *
 * With RRLOAD_SOCKS=IPv4:PORT every client mode dials through that SOCKS5 proxy (no
 * authentication; CONNECT to HOST:PORT) instead of connecting directly.
 *
 * Results are printed as key=value lines on stdout (parsed by tools/bench).
 * Built by tools/bench at run time: gcc -O2 -pthread -o rrload rrload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64

static struct sockaddr_in target;
static struct sockaddr_in socks_proxy;
static int use_socks;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void parse_target(const char *host, const char *port) {
    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address %s\n", host);
        exit(2);
    }
}

/* Blocking connect with send/receive timeouts; -1 and errno on failure. */
static int dial(int timeout_s) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = timeout_s, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in *to = use_socks ? &socks_proxy : &target;
    if (connect(fd, (struct sockaddr *)to, sizeof *to) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (use_socks) {
        /* Greeting (no authentication) and CONNECT in one write; then the two answers. */
        unsigned char hs[13] = {5, 1, 0, 5, 1, 0, 1};
        memcpy(hs + 7, &target.sin_addr, 4);
        memcpy(hs + 11, &target.sin_port, 2);
        unsigned char ans[12];
        ssize_t off = 0;
        if (write(fd, hs, sizeof hs) != (ssize_t)sizeof hs) { close(fd); return -1; }
        while (off < (ssize_t)sizeof ans) {
            ssize_t n = read(fd, ans + off, sizeof ans - (size_t)off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { close(fd); errno = ECONNRESET; return -1; }
            off += n;
        }
        if (ans[0] != 5 || ans[1] != 0 || ans[3] != 0 || ans[5] != 1) { close(fd); errno = ECONNREFUSED; return -1; }
    }
    return fd;
}

/* One request/response: 0 on success (the echo matches), -1 otherwise. */
static int roundtrip(int fd, unsigned seq) {
    unsigned char req[MSG], resp[MSG];
    for (int i = 0; i < MSG; i++) req[i] = (unsigned char)(seq * 31u + (unsigned)i);
    ssize_t off = 0;
    while (off < MSG) {
        ssize_t n = write(fd, req + off, MSG - off);
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        off += n;
    }
    off = 0;
    while (off < MSG) {
        ssize_t n = read(fd, resp + off, MSG - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { if (n == 0) errno = ECONNRESET; return -1; }
        off += n;
    }
    if (memcmp(req, resp, MSG) != 0) { errno = EPROTO; return -1; }
    return 0;
}

/* ------------------------------------------------------------ serve --- */

struct conn { int fd; size_t pending; unsigned char buf[4096]; };
static const char *serve_addr, *serve_port;

static void *serve_thread(void *arg) {
    (void)arg;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(serve_port))};
    if (inet_pton(AF_INET, serve_addr, &a.sin_addr) != 1) { fprintf(stderr, "bad address\n"); exit(2); }
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {                       /* the listener */
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            int closeit = 0;
            if (c->pending == 0 && (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
                ssize_t r = read(c->fd, c->buf, sizeof c->buf);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) closeit = 1;
                else if (r > 0) c->pending = (size_t)r;
            }
            if (c->pending > 0) {
                ssize_t w = write(c->fd, c->buf, c->pending);
                if (w < 0 && errno != EAGAIN && errno != EINTR) closeit = 1;
                else if (w > 0) {
                    memmove(c->buf, c->buf + w, c->pending - (size_t)w);
                    c->pending -= (size_t)w;
                }
                struct epoll_event cev = {.events = c->pending ? EPOLLOUT : (EPOLLIN | EPOLLRDHUP), .data.ptr = c};
                if (!closeit) epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
            }
            if (closeit) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                free(c);
            }
        }
    }
    return NULL;
}

static int cmd_serve(int argc, char **argv) {
    if (argc < 4) return 2;
    serve_addr = argv[2];
    serve_port = argv[3];
    int threads = argc > 4 ? atoi(argv[4]) : 2;
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    pthread_t t[64];
    for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, serve_thread, NULL);
    printf("serving %s:%s threads=%d\n", serve_addr, serve_port, threads);
    fflush(stdout);
    pthread_join(t[0], NULL);
    return 0;
}

/* ------------------------------------------------------------ probe --- */

static int cmd_probe(int argc, char **argv) {
    if (argc < 5) return 2;
    parse_target(argv[2], argv[3]);
    double end = now() + atof(argv[4]);
    int last = 0;
    do {
        int fd = dial(2);
        if (fd >= 0) {
            int ok = roundtrip(fd, 7) == 0;
            last = errno;
            close(fd);
            if (ok) { printf("probe=ok\n"); return 0; }
        } else {
            last = errno;
        }
        usleep(100000);
    } while (now() < end);
    printf("probe=fail error=%s\n", strerror(last));
    return 1;
}

/* ------------------------------------------------------------- ping --- */

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmd_ping(int argc, char **argv) {
    if (argc < 5) return 2;
    parse_target(argv[2], argv[3]);
    int n = atoi(argv[4]);
    int warm = n / 20 < 200 ? n / 20 : 200;
    int fd = dial(5);
    if (fd < 0) { printf("error=connect:%s\n", strerror(errno)); return 1; }
    for (int i = 0; i < warm; i++)
        if (roundtrip(fd, (unsigned)i) < 0) { printf("error=warmup:%s\n", strerror(errno)); return 1; }
    double *lat = malloc(sizeof(double) * (size_t)n);
    double t0 = now();
    for (int i = 0; i < n; i++) {
        double s = now();
        if (roundtrip(fd, (unsigned)i) < 0) { printf("error=rt%d:%s\n", i, strerror(errno)); return 1; }
        lat[i] = (now() - s) * 1e6;
    }
    double total = now() - t0;
    close(fd);
    qsort(lat, (size_t)n, sizeof(double), cmpd);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += lat[i];
    printf("n=%d\np50_us=%.1f\np90_us=%.1f\np99_us=%.1f\nmax_us=%.1f\nmean_us=%.1f\nmin_us=%.1f\nseconds=%.3f\n",
           n, lat[n / 2], lat[(int)(n * 0.90)], lat[(int)(n * 0.99)], lat[n - 1], sum / n, lat[0], total);
    return 0;
}

/* ------------------------------------------------------------- rate --- */

static atomic_long ok_count, fail_count;
static atomic_long fail_connect, fail_io, fail_addr;
static double rate_end;

static void *rate_thread(void *arg) {
    unsigned seq = (unsigned)(uintptr_t)arg * 1000003u;
    while (now() < rate_end) {
        int fd = dial(3);
        if (fd < 0) {
            atomic_fetch_add(&fail_count, 1);
            if (errno == EADDRNOTAVAIL) { atomic_fetch_add(&fail_addr, 1); usleep(1000); }
            else atomic_fetch_add(&fail_connect, 1);
            continue;
        }
        if (roundtrip(fd, seq++) == 0) atomic_fetch_add(&ok_count, 1);
        else { atomic_fetch_add(&fail_count, 1); atomic_fetch_add(&fail_io, 1); }
        close(fd);
    }
    return NULL;
}

static int cmd_rate(int argc, char **argv) {
    if (argc < 6) return 2;
    parse_target(argv[2], argv[3]);
    int threads = atoi(argv[4]);
    double secs = atof(argv[5]);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    pthread_t t[256];
    double t0 = now();
    rate_end = t0 + secs;
    for (int i = 0; i < threads && i < 256; i++) pthread_create(&t[i], NULL, rate_thread, (void *)(uintptr_t)i);
    for (int i = 0; i < threads && i < 256; i++) pthread_join(t[i], NULL);
    double el = now() - t0;
    printf("ok=%ld\nfailed=%ld\nfail_connect=%ld\nfail_io=%ld\nfail_addrnotavail=%ld\nseconds=%.3f\nconn_per_s=%.0f\n",
           atomic_load(&ok_count), atomic_load(&fail_count), atomic_load(&fail_connect), atomic_load(&fail_io),
           atomic_load(&fail_addr), el, atomic_load(&ok_count) / el);
    return 0;
}

/* ------------------------------------------------------------- hold --- */

static int cmd_hold(int argc, char **argv) {
    if (argc < 6) return 2;
    parse_target(argv[2], argv[3]);
    int count = atoi(argv[4]);
    double secs = atof(argv[5]);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    int *fds = malloc(sizeof(int) * (size_t)count);
    int open_ok = 0, failed = 0;
    double t0 = now();
    for (int i = 0; i < count; i++) {
        int fd = dial(5);
        if (fd < 0 || roundtrip(fd, (unsigned)i) < 0) {
            if (fd >= 0) close(fd);
            failed++;
            continue;
        }
        fds[open_ok++] = fd;
    }
    printf("open=%d\nopen_failed=%d\nopen_seconds=%.3f\nREADY\n", open_ok, failed, now() - t0);
    fflush(stdout);
    /* Hold the connections idle for the given time. */
    struct timespec ts = {.tv_sec = (time_t)secs, .tv_nsec = (long)((secs - (time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
    /* Still alive? All requests first, then all responses: pipelined, so a relay that delays
     * small writes (Nagle + delayed ACK) does not make this take 1,000 x 40 ms. */
    unsigned char req[MSG], resp[MSG];
    memset(req, 'h', MSG);
    char *ok = calloc((size_t)open_ok + 1, 1);
    for (int i = 0; i < open_ok; i++) ok[i] = write(fds[i], req, MSG) == MSG;
    int alive = 0;
    for (int i = 0; i < open_ok; i++) {
        ssize_t off = 0;
        while (ok[i] && off < MSG) {
            ssize_t n = read(fds[i], resp + off, MSG - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { ok[i] = 0; break; }
            off += n;
        }
        if (ok[i] && memcmp(req, resp, MSG) == 0) alive++;
        close(fds[i]);
    }
    printf("alive_after_hold=%d\n", alive);
    return 0;
}

/* ------------------------------------------------------ blast / drain --- */

static void *blast_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    static unsigned char zeros[1 << 20];
    while (write(fd, zeros, sizeof zeros) > 0) {}
    close(fd);
    return NULL;
}

static int cmd_blast(int argc, char **argv) {
    if (argc < 4) return 2;
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) { fprintf(stderr, "bad address\n"); return 2; }
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(lfd, 128) < 0) die("listen");
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        pthread_t t;
        pthread_create(&t, NULL, blast_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

static int cmd_drain(int argc, char **argv) {
    if (argc < 5) return 2;
    parse_target(argv[2], argv[3]);
    double secs = atof(argv[4]);
    int fd = dial(10);
    if (fd < 0) die("dial");
    static unsigned char buf[1 << 20];
    long long total = 0;
    double t0 = now(), end = t0 + secs;
    while (now() < end) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        total += n;
    }
    double el = now() - t0;
    close(fd);
    printf("bytes=%lld\nseconds=%.3f\ngbit_per_s=%.3f\n", total, el, total * 8 / el / 1e9);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *socks = getenv("RRLOAD_SOCKS");
    if (socks && *socks) {
        char host[64];
        const char *colon = strrchr(socks, ':');
        if (!colon || colon - socks >= (long)sizeof host) { fprintf(stderr, "RRLOAD_SOCKS must be IPv4:PORT\n"); return 2; }
        memcpy(host, socks, (size_t)(colon - socks));
        host[colon - socks] = 0;
        socks_proxy.sin_family = AF_INET;
        socks_proxy.sin_port = htons((uint16_t)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &socks_proxy.sin_addr) != 1) { fprintf(stderr, "bad RRLOAD_SOCKS address\n"); return 2; }
        use_socks = 1;
    }
    int rc = 2;
    if (argc >= 2) {
        if (!strcmp(argv[1], "serve")) rc = cmd_serve(argc, argv);
        else if (!strcmp(argv[1], "probe")) rc = cmd_probe(argc, argv);
        else if (!strcmp(argv[1], "ping")) rc = cmd_ping(argc, argv);
        else if (!strcmp(argv[1], "rate")) rc = cmd_rate(argc, argv);
        else if (!strcmp(argv[1], "hold")) rc = cmd_hold(argc, argv);
        else if (!strcmp(argv[1], "blast")) rc = cmd_blast(argc, argv);
        else if (!strcmp(argv[1], "drain")) rc = cmd_drain(argc, argv);
    }
    if (rc == 2) fprintf(stderr, "usage: rrload serve|probe|ping|rate|hold|blast|drain ... (see the header of rrload.c)\n");
    return rc;
}
