/*
 * floorrelay.c — the cheapest TCP relay we can write, as a floor for tools/bench.
 *
 *   floorrelay [-t THREADS] [-m splice|copy] [-b BYTES] LISTEN_ADDR LISTEN_PORT TARGET_ADDR TARGET_PORT
 *
 *   -t THREADS  event loops, each with its own SO_REUSEPORT listener and epoll (default 1)
 *   -m MODE     splice: socket -> pipe -> socket, the bytes never enter user space (default);
 *               copy: read()/write() through a user-space buffer
 *   -b BYTES    copy: the buffer per direction; splice: the pipe's size (F_SETPIPE_SZ) (default 262144)
 *
 * For each accepted connection it connects to the fixed target and copies both ways, with the
 * semantics a real relay owes its users: a FIN is passed on as shutdown(SHUT_WR) once the bytes
 * before it are written; a reset (or a failed connect) is passed on as a reset (SO_LINGER 0, then
 * close); and when one side stops reading, the relay stops reading the other (one buffer or pipe
 * per direction, nothing more). No framing, no crypto, no limits: it is what the kernel and the
 * syscalls cost, not a product. Edge-triggered epoll, every socket registered once and never
 * modified: a read shorter than the buffer means the receive queue was empty (unless the FIN is
 * next), and a write that hits EAGAIN waits for EPOLLOUT; connection structs and pipes are recycled.
 *
 * Built by tools/bench at run time: gcc -O2 -pthread -o floorrelay floorrelay.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define EVENTS 256
#define FREE_MAX 1024   /* recycled connection structs kept per thread */

/* One direction: bytes read from fd[s] wait here until written to fd[1-s]. */
struct dir {
    char *buf;            /* copy mode */
    int pipe[2];          /* splice mode; -1 when not made yet */
    size_t len, off;      /* bytes waiting (in buf from off, or in the pipe) */
    int eof;              /* read 0 from the source */
    int shut;             /* shutdown(SHUT_WR) done on the destination */
    int wblocked;         /* the destination said EAGAIN: wait for its EPOLLOUT */
    int drained;          /* copy: the last read was short, the source's queue is empty */
    int fin_seen;         /* the source's FIN was signalled: a short read may just stop before it */
};

struct conn {
    int fd[2];            /* [0] the user's (accepted), [1] ours to the target */
    int connected;        /* fd[1]'s connect finished */
    int dead;             /* closed in this batch of events; freed after it */
    struct dir d[2];      /* d[s]: fd[s] -> fd[1-s] */
    struct conn *next;    /* free list / dead list */
};

struct loop {
    int ep, lfd;
    struct conn *free, *dead;
    int nfree;
};

static struct sockaddr_in listen_sa, target_sa;
static int use_splice = 1;
static size_t bufsize = 262144;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void parse_addr(struct sockaddr_in *sa, const char *host, const char *port) {
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        fprintf(stderr, "floorrelay: bad IPv4 address %s\n", host);
        exit(2);
    }
}

static struct conn *conn_get(struct loop *l) {
    struct conn *c = l->free;
    if (c) {
        l->free = c->next;
        l->nfree--;
    } else {
        if (!(c = calloc(1, sizeof *c))) die("calloc");
        for (int s = 0; s < 2; s++) {
            c->d[s].pipe[0] = c->d[s].pipe[1] = -1;
            if (!use_splice && !(c->d[s].buf = malloc(bufsize))) die("malloc");
        }
    }
    for (int s = 0; s < 2; s++) {
        struct dir *d = &c->d[s];
        if (use_splice && d->pipe[0] < 0) {
            if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0) return NULL;
            fcntl(d->pipe[1], F_SETPIPE_SZ, (int)bufsize);   /* best effort: the default is 64 KiB */
        }
        d->len = d->off = 0;
        d->eof = d->shut = d->wblocked = d->drained = d->fin_seen = 0;
    }
    c->connected = c->dead = 0;
    return c;
}

/* Close both sockets; with RESET, as a reset (SO_LINGER 0) so the peer learns what we learnt. */
static void conn_close(struct loop *l, struct conn *c, int reset) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    for (int s = 0; s < 2; s++) {
        if (reset) setsockopt(c->fd[s], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c->fd[s]);
        if (c->d[s].len && c->d[s].pipe[0] >= 0) {   /* a pipe with bytes in it is not reused */
            close(c->d[s].pipe[0]);
            close(c->d[s].pipe[1]);
            c->d[s].pipe[0] = c->d[s].pipe[1] = -1;
        }
    }
    c->dead = 1;
    c->next = l->dead;
    l->dead = c;
}

/* Move what direction S can move now; -1 when the connection must be reset. */
static int pump(struct conn *c, int s) {
    struct dir *d = &c->d[s];
    int src = c->fd[s], dst = c->fd[1 - s];
    int dst_ready = s == 1 || c->connected;   /* no write or shutdown before the connect finished */
    for (;;) {
        if (d->len) {
            if (d->wblocked || !dst_ready) return 0;
            ssize_t n = use_splice ? splice(d->pipe[0], NULL, dst, NULL, d->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                                   : write(dst, d->buf + d->off, d->len);
            if (n < 0) {
                if (errno == EAGAIN) {
                    d->wblocked = 1;
                    return 0;
                }
                if (errno == EINTR) continue;
                return -1;   /* EPIPE, ECONNRESET: the destination is gone */
            }
            d->len -= (size_t)n;
            d->off += (size_t)n;
            if (d->len) continue;   /* partial: the next write says EAGAIN (and arms EPOLLOUT) */
            d->off = 0;
            if (d->drained) {
                d->drained = 0;
                return 0;
            }
        }
        if (d->eof) {
            if (!d->shut && dst_ready) {
                shutdown(dst, SHUT_WR);
                d->shut = 1;
            }
            return 0;
        }
        ssize_t n = use_splice ? splice(src, NULL, d->pipe[1], NULL, bufsize, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                               : read(src, d->buf, bufsize);
        if (n > 0) {
            d->len = (size_t)n;
            d->drained = !use_splice && (size_t)n < bufsize && !d->fin_seen;
        } else if (n == 0) {
            d->eof = 1;
        } else if (errno == EAGAIN) {
            return 0;
        } else if (errno != EINTR) {
            return -1;   /* ECONNRESET: the source was reset */
        }
    }
}

static void on_accept(struct loop *l) {
    for (;;) {
        int a = accept4(l->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (a < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;   /* EAGAIN; EMFILE and the like: the kernel's backlog holds the rest */
        }
        int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct conn *c = t < 0 ? NULL : conn_get(l);
        if (!c || (connect(t, (struct sockaddr *)&target_sa, sizeof target_sa) < 0 && errno != EINPROGRESS)) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);   /* no target: the user gets a reset */
            close(a);
            if (t >= 0) close(t);
            if (c) {
                c->next = l->free;
                l->free = c;
                l->nfree++;
            }
            continue;
        }
        int one = 1;
        setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd[0] = a;
        c->fd[1] = t;
        for (int s = 0; s < 2; s++) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                     .data.u64 = (uint64_t)(uintptr_t)c | (uint64_t)s};
            if (epoll_ctl(l->ep, EPOLL_CTL_ADD, c->fd[s], &ev) < 0) die("epoll_ctl");
        }
    }
}

static void on_event(struct loop *l, struct conn *c, int s, uint32_t ev) {
    if (c->dead) return;
    if (ev & EPOLLERR) {   /* a reset, or the target refused the connect */
        conn_close(l, c, 1);
        return;
    }
    if (ev & EPOLLOUT) {
        c->d[1 - s].wblocked = 0;
        if (s == 1) c->connected = 1;   /* what the user sent (or its FIN) while we connected goes now */
        if ((c->d[1 - s].len || (c->d[1 - s].eof && !c->d[1 - s].shut)) && pump(c, 1 - s) < 0) goto reset;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
        c->d[s].drained = 0;   /* new bytes arrived since the short read: read again once flushed */
        if (ev & (EPOLLRDHUP | EPOLLHUP)) c->d[s].fin_seen = 1;   /* its edge is spent: read on to the 0 */
        if (pump(c, s) < 0) goto reset;
    }
    if (c->d[0].shut && c->d[1].shut) conn_close(l, c, 0);   /* both FINs passed on, nothing waits */
    return;
reset:
    conn_close(l, c, 1);
}

static void *run(void *arg) {
    struct loop *l = arg;
    struct epoll_event evs[EVENTS];
    for (;;) {
        int n = epoll_wait(l->ep, evs, EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == 0) {
                on_accept(l);
                continue;
            }
            struct conn *c = (struct conn *)(uintptr_t)(evs[i].data.u64 & ~(uint64_t)1);
            on_event(l, c, (int)(evs[i].data.u64 & 1), evs[i].events);
        }
        while (l->dead) {   /* only now: later events of the same batch may still name them */
            struct conn *c = l->dead;
            l->dead = c->next;
            if (l->nfree < FREE_MAX) {
                c->next = l->free;
                l->free = c;
                l->nfree++;
            } else {
                for (int s = 0; s < 2; s++) {
                    if (c->d[s].pipe[0] >= 0) {
                        close(c->d[s].pipe[0]);
                        close(c->d[s].pipe[1]);
                    }
                    free(c->d[s].buf);
                }
                free(c);
            }
        }
    }
    return NULL;
}

static void usage(void) {
    fprintf(stderr, "usage: floorrelay [-t THREADS] [-m splice|copy] [-b BYTES] LISTEN_ADDR LISTEN_PORT TARGET_ADDR TARGET_PORT\n");
    exit(2);
}

int main(int argc, char **argv) {
    int threads = 1, opt;
    while ((opt = getopt(argc, argv, "t:m:b:")) != -1) {
        if (opt == 't') threads = atoi(optarg);
        else if (opt == 'm' && !strcmp(optarg, "splice")) use_splice = 1;
        else if (opt == 'm' && !strcmp(optarg, "copy")) use_splice = 0;
        else if (opt == 'b') bufsize = (size_t)atol(optarg);
        else usage();
    }
    if (argc - optind != 4 || threads < 1 || bufsize < 4096) usage();
    parse_addr(&listen_sa, argv[optind], argv[optind + 1]);
    parse_addr(&target_sa, argv[optind + 2], argv[optind + 3]);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    pthread_t tid;
    for (int i = 0; i < threads; i++) {
        struct loop *l = calloc(1, sizeof *l);
        int one = 1;
        if (!l || (l->ep = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1");
        if ((l->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) die("socket");
        setsockopt(l->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(l->lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(l->lfd, (struct sockaddr *)&listen_sa, sizeof listen_sa) < 0) die("bind");
        if (listen(l->lfd, 4096) < 0) die("listen");
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};   /* level-triggered: 0 = the listener */
        if (epoll_ctl(l->ep, EPOLL_CTL_ADD, l->lfd, &ev) < 0) die("epoll_ctl");
        if (i + 1 == threads)
            run(l);   /* the last loop runs on the main thread */
        else if (pthread_create(&tid, NULL, run, l))
            die("pthread_create");
    }
    return 0;
}
