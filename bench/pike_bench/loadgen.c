/*
 * Load generator for the pike-core echo benchmarks.
 *
 * It must never be the bottleneck, so it is one thread on one epoll set,
 * allocates every buffer before the clock starts, and sends straight out
 * of a precomputed pattern table instead of building messages.
 *
 * Usage: loadgen WORKLOAD --port P [options]
 *   WORKLOAD (or --workload W): pingpong | stream | idle | churn
 *   --host ADDR     server address (default 127.0.0.1)
 *   --port P        server port (required)
 *   --conns N       active connections / churn slots (default 1)
 *   --size S        message size; chunk size for stream
 *                   (default 1024; 65536 for stream)
 *   --idle N        idle connections opened first (idle workload only); the
 *                   warm-up starts once the server has answered every active
 *                   connection, so it has accepted the idle ones before (a
 *                   server that accepts slowly is measured in its steady state)
 *   --seconds T     measured duration (default 3)
 *   --warmup W      uncounted warm-up before measuring (default 0.5)
 *   --cpu K         pin this process to core K
 *   --src-addrs K   spread connections over source addresses 127.0.0.1 ..
 *                   127.0.0.K (IPv4 loopback targets only; default 16 for
 *                   churn on loopback, else 1 = let the kernel choose)
 * Prints one JSON line on stdout; exits 1 on any mismatch or connection
 * error (the JSON line is still printed, with "error" set), 2 on bad usage.
 *
 * ops: pingpong/idle = round trips, stream = CHUNK-sized units echoed,
 * churn = connect-send-echo-close cycles; bytes = echoed bytes verified.
 * Counts and CPU (getrusage user+sys) cover only the measured window.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Prime, so the pattern never lines up with power-of-two message sizes:
 * consecutive messages on a connection carry different bytes, and a
 * dropped, duplicated or reordered block shows up as a mismatch. */
#define PAT_LEN 65521u
#define RBUF_SIZE (256 * 1024)
#define MAX_SIZE (64u * 1024 * 1024)
#define MAX_EVENTS 512
/* Opening thousands of idle connections at once would overflow the
 * server's accept backlog and stall on SYN retransmits; a window keeps the
 * handshakes flowing. */
#define CONNECT_WINDOW 256
#define IDLE_OPEN_TIMEOUT 60.0

enum workload { W_PINGPONG, W_STREAM, W_IDLE, W_CHURN };
static const char *const workload_names[] = {"pingpong", "stream", "idle", "churn"};

enum cstate { CS_FREE, CS_CONNECTING, CS_ACTIVE, CS_IDLE };

struct conn {
    int fd;
    enum cstate state;
    int idle;          /* an idle connection: must stay silent */
    uint32_t gen;      /* bumps with every new fd, to spot stale events */
    uint32_t events;   /* current epoll interest, to skip redundant MODs */
    uint32_t seed;     /* per-connection offset into the pattern */
    int answered;      /* the server has echoed a whole message on it */
    size_t sent;       /* bytes of the current message sent */
    size_t recvd;      /* bytes of the current message echoed back */
    uint64_t tx_off;   /* stream position of the next byte to send */
    uint64_t rx_off;   /* stream position of the next byte expected */
};

struct snapshot {
    double t;
    double cpu_user;
    double cpu_sys;
    uint64_t ops;
    uint64_t bytes;
};

static struct {
    enum workload workload;
    const char *host;
    const char *port;
    long conns;
    long size;
    long idle;
    double seconds;
    double warmup;
    int cpu;
    long src_addrs;
} opt = {
    .host = "127.0.0.1",
    .port = NULL,
    .conns = -1,
    .size = -1,
    .idle = 0,
    .seconds = 3.0,
    .warmup = 0.5,
    .cpu = -1,
    .src_addrs = -1,
};

static struct addrinfo *server;
static int epfd = -1;
static struct conn *conns;
static size_t nconns;
static uint8_t *pattern;
static uint8_t *rbuf;
static size_t msg_size;

static uint64_t ops_total;
static uint64_t bytes_total;
static long idle_opened;
static long idle_connecting;
static long active_answered;

static struct snapshot snap_start;
static int measuring;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void take_snapshot(struct snapshot *s)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s->t = now();
    s->cpu_user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6;
    s->cpu_sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    s->ops = ops_total;
    s->bytes = bytes_total;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* Reports whatever was measured so far; a run that failed before the
 * measured window reports zeros rather than warm-up numbers. */
static void emit_result(const char *error)
{
    struct snapshot end;
    take_snapshot(&end);
    struct snapshot start = measuring ? snap_start : end;
    double secs = end.t - start.t;
    double user = end.cpu_user - start.cpu_user;
    double sys = end.cpu_sys - start.cpu_sys;
    uint64_t ops = end.ops - start.ops;
    uint64_t bytes = end.bytes - start.bytes;
    double rate = secs > 0 ? (double)ops / secs : 0.0;
    double brate = secs > 0 ? (double)bytes / secs : 0.0;
    double pct = secs > 0 ? (user + sys) / secs * 100.0 : 0.0;

    printf("{\"workload\":\"%s\",\"host\":", workload_names[opt.workload]);
    json_string(opt.host);
    printf(",\"port\":%s,\"conns\":%ld,\"size\":%ld,\"idle\":%ld,\"idle_opened\":%ld,"
           "\"src_addrs\":%ld,\"warmup\":%.3f,\"ops\":%llu,\"seconds\":%.6f,\"ops_per_sec\":%.1f,"
           "\"bytes\":%llu,\"bytes_per_sec\":%.1f,\"errors\":%d,\"error\":",
           opt.port, opt.conns, opt.size, opt.idle, idle_opened,
           opt.src_addrs < 0 ? 1 : opt.src_addrs, opt.warmup,
           (unsigned long long)ops, secs, rate, (unsigned long long)bytes, brate,
           error ? 1 : 0);
    if (error)
        json_string(error);
    else
        fputs("null", stdout);
    printf(",\"cpu_user\":%.6f,\"cpu_sys\":%.6f,\"cpu_seconds\":%.6f,"
           "\"cpu_percent\":%.1f}\n",
           user, sys, user + sys, pct);
    fflush(stdout);
}

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "loadgen: %s\n", msg);
    emit_result(msg);
    exit(1);
}

__attribute__((noreturn)) static void usage(const char *why)
{
    if (why)
        fprintf(stderr, "loadgen: %s\n", why);
    fprintf(stderr,
            "usage: loadgen {pingpong|stream|idle|churn} --port P [--host ADDR]\n"
            "               [--conns N] [--size S] [--idle N] [--seconds T]\n"
            "               [--warmup W] [--cpu K] [--src-addrs K]\n");
    exit(2);
}

static long parse_long(const char *s, const char *name, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be an integer in [%ld, %ld], got '%s'", name,
                 lo, hi, s);
        usage(msg);
    }
    return v;
}

static double parse_double(const char *s, const char *name, double lo)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(v >= lo) || v > 1e6) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be a number >= %g, got '%s'", name, lo, s);
        usage(msg);
    }
    return v;
}

static int parse_workload(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, workload_names[i]) == 0)
            return i;
    char msg[128];
    snprintf(msg, sizeof msg, "unknown workload '%s'", s);
    usage(msg);
}

static char port_buf[8];

static void parse_args(int argc, char **argv)
{
    int have_workload = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            usage(NULL);
        if (a[0] != '-') {
            if (have_workload)
                usage("more than one workload given");
            opt.workload = (enum workload)parse_workload(a);
            have_workload = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage("option needs a value");
        const char *v = argv[++i];
        if (strcmp(a, "--workload") == 0) {
            if (have_workload)
                usage("more than one workload given");
            opt.workload = (enum workload)parse_workload(v);
            have_workload = 1;
        } else if (strcmp(a, "--host") == 0) {
            opt.host = v;
        } else if (strcmp(a, "--port") == 0) {
            /* Canonical digits: the string goes into the JSON verbatim. */
            snprintf(port_buf, sizeof port_buf, "%ld", parse_long(v, "--port", 1, 65535));
            opt.port = port_buf;
        } else if (strcmp(a, "--conns") == 0) {
            opt.conns = parse_long(v, "--conns", 1, 1000000);
        } else if (strcmp(a, "--size") == 0) {
            opt.size = parse_long(v, "--size", 1, MAX_SIZE);
        } else if (strcmp(a, "--idle") == 0) {
            opt.idle = parse_long(v, "--idle", 0, 1000000);
        } else if (strcmp(a, "--seconds") == 0) {
            opt.seconds = parse_double(v, "--seconds", 0.001);
        } else if (strcmp(a, "--warmup") == 0) {
            opt.warmup = parse_double(v, "--warmup", 0.0);
        } else if (strcmp(a, "--cpu") == 0) {
            opt.cpu = (int)parse_long(v, "--cpu", 0, CPU_SETSIZE - 1);
        } else if (strcmp(a, "--src-addrs") == 0) {
            opt.src_addrs = parse_long(v, "--src-addrs", 1, 65536);
        } else {
            char msg[128];
            snprintf(msg, sizeof msg, "unknown option '%s'", a);
            usage(msg);
        }
    }
    if (!have_workload)
        usage("no workload given");
    if (opt.port == NULL)
        usage("--port is required");
    if (opt.workload == W_STREAM) {
        if (opt.conns > 1)
            usage("stream uses exactly one connection");
        opt.conns = 1;
        if (opt.size < 0)
            opt.size = 65536;
    }
    if (opt.idle > 0 && opt.workload != W_IDLE)
        usage("--idle only applies to the idle workload");
    if (opt.conns < 0)
        opt.conns = 1;
    if (opt.size < 0)
        opt.size = 1024;
}

static void raise_nofile(size_t needed)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        fail("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            fail("setrlimit: %s", strerror(errno));
    }
    if (rl.rlim_cur != RLIM_INFINITY && needed > rl.rlim_cur)
        fail("need %zu file descriptors but RLIMIT_NOFILE hard limit is %llu; "
             "raise it (ulimit -Hn) for this run",
             needed, (unsigned long long)rl.rlim_cur);
}

static void pin_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        fail("sched_setaffinity(cpu %d): %s", cpu, strerror(errno));
}

static void resolve(void)
{
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(opt.host, opt.port, &hints, &server);
    if (rc != 0)
        fail("%s:%s: %s", opt.host, opt.port, gai_strerror(rc));

    int loopback4 = server->ai_family == AF_INET &&
                    (ntohl(((struct sockaddr_in *)server->ai_addr)->sin_addr.s_addr) >> 24) == 127;
    if (opt.src_addrs < 0)
        opt.src_addrs = opt.workload == W_CHURN && loopback4 ? 16 : 1;
    if (opt.src_addrs > 1 && !loopback4)
        fail("--src-addrs > 1 needs an IPv4 loopback server address, got %s", opt.host);
}

static void build_pattern(void)
{
    size_t max_io = (size_t)opt.size > RBUF_SIZE ? (size_t)opt.size : RBUF_SIZE;
    /* The tail repeats the head so any (offset mod PAT_LEN, length <= max_io)
     * is one contiguous slice: sends and compares never wrap. */
    pattern = malloc(PAT_LEN + max_io);
    rbuf = malloc(RBUF_SIZE);
    if (pattern == NULL || rbuf == NULL)
        fail("out of memory for %zu-byte buffers", PAT_LEN + max_io);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < PAT_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (uint8_t)(x >> 32);
    }
    for (size_t i = PAT_LEN; i < PAT_LEN + max_io; i++)
        pattern[i] = pattern[i - PAT_LEN];
}

static inline const uint8_t *pattern_at(const struct conn *c, uint64_t off)
{
    return pattern + (size_t)((c->seed + off) % PAT_LEN);
}

static inline uint64_t tag(size_t idx, uint32_t gen)
{
    return (uint64_t)idx | ((uint64_t)gen << 32);
}

/* A fresh fd has events == 0 and is not in the epoll set yet, so its first
 * interest is an ADD; this saves a syscall per churn cycle. */
static void set_interest(struct conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    int op = c->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    struct epoll_event ev = {.events = events, .data.u64 = tag((size_t)(c - conns), c->gen)};
    if (epoll_ctl(epfd, op, c->fd, &ev) != 0)
        fail("epoll_ctl: %s", strerror(errno));
    c->events = events;
}

static void on_connected(struct conn *c);
static void pump_send(struct conn *c);

static void start_connect(struct conn *c)
{
    const struct addrinfo *ai = server;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    int one = 1;
    /* Match the servers: ping-pong must not wait on Nagle. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        fail("setsockopt(TCP_NODELAY): %s", strerror(errno));
    if (opt.src_addrs > 1) {
        /* Churn at loopback rates cycles through the ephemeral ports faster
         * than TIME_WAIT expires, and connect() then burns a quarter of
         * our CPU scanning for a usable port. A port is usable when no
         * TIME_WAIT holds the same 4-tuple, so rotating the source address
         * over 127/8 lets nearly the first port tried succeed. NO_PORT
         * defers the port choice to connect(), when the 4-tuple is known. */
        static uint32_t rot;
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(0x7f000001u + rot++ % (uint32_t)opt.src_addrs);
        if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0)
            fail("setsockopt(IP_BIND_ADDRESS_NO_PORT): %s", strerror(errno));
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
            fail("bind to source 127.0.0.%u: %s", 1 + (rot - 1) % (uint32_t)opt.src_addrs,
                 strerror(errno));
    }
    c->fd = fd;
    c->gen++;
    c->events = 0;
    c->sent = c->recvd = 0;
    c->state = CS_CONNECTING;
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno != EINPROGRESS)
        fail("connect to %s:%s: %s", opt.host, opt.port, strerror(errno));
    if (rc == 0) {
        on_connected(c);
        return;
    }
    if (!c->idle) {
        /* On loopback the handshake has usually finished by the time
         * connect() returns, so sending at once skips an epoll round trip,
         * a SO_ERROR query and an epoll_ctl per churn cycle. */
        ssize_t n = send(fd, pattern_at(c, c->tx_off), msg_size, MSG_NOSIGNAL);
        if (n >= 0) {
            c->sent = (size_t)n;
            c->tx_off += (uint64_t)n;
            c->state = CS_ACTIVE;
            pump_send(c);
            return;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            fail("connect to %s:%s: %s", opt.host, opt.port, strerror(errno));
    }
    set_interest(c, EPOLLOUT);
}

/* Sends the rest of the current message; in stream mode starts the next
 * chunk as soon as one is out, until the socket buffer is full. */
static void pump_send(struct conn *c)
{
    size_t size = msg_size;
    for (;;) {
        if (c->sent == size) {
            if (opt.workload != W_STREAM)
                break;
            c->sent = 0;
        }
        size_t want = size - c->sent;
        ssize_t n = send(c->fd, pattern_at(c, c->tx_off), want, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_interest(c, EPOLLIN | EPOLLOUT);
                return;
            }
            fail("send: %s", strerror(errno));
        }
        c->sent += (size_t)n;
        c->tx_off += (uint64_t)n;
    }
    set_interest(c, EPOLLIN);
}

static void on_connected(struct conn *c)
{
    if (c->idle) {
        c->state = CS_IDLE;
        idle_opened++;
        idle_connecting--;
        /* Watched only so a server that drops an idle connection, or sends
         * on one, is caught as an error. */
        set_interest(c, EPOLLIN);
        return;
    }
    c->state = CS_ACTIVE;
    pump_send(c);
}

static void on_message_done(struct conn *c)
{
    ops_total++;
    if (!c->answered) {
        c->answered = 1;
        active_answered++;
    }
    if (opt.workload == W_STREAM) {
        c->recvd = 0;
        return;
    }
    c->recvd = 0;
    c->sent = 0;
    if (opt.workload == W_CHURN) {
        /* close() also drops the fd from the epoll set. */
        close(c->fd);
        c->fd = -1;
        c->events = 0;
        start_connect(c);
        return;
    }
    pump_send(c);
}

static void pump_recv(struct conn *c)
{
    for (;;) {
        size_t limit = RBUF_SIZE;
        int nothing_owed = 0;
        if (opt.workload != W_STREAM) {
            /* Never read past what we sent, so a byte beyond it is caught
             * as an error instead of being taken for the next message. */
            limit = c->sent - c->recvd;
            if (limit == 0) {
                nothing_owed = 1;
                limit = 1;
            }
            if (limit > RBUF_SIZE)
                limit = RBUF_SIZE;
        }
        ssize_t n = recv(c->fd, rbuf, limit, 0);
        if (n > 0 && nothing_owed)
            fail("server echoed more bytes than were sent on connection %zu",
                 (size_t)(c - conns));
        if (n == 0)
            fail("server closed the connection after %llu echoed bytes",
                 (unsigned long long)c->rx_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            fail("recv: %s", strerror(errno));
        }
        size_t got = (size_t)n;
        if (memcmp(rbuf, pattern_at(c, c->rx_off), got) != 0) {
            const uint8_t *want = pattern_at(c, c->rx_off);
            size_t at = 0;
            while (rbuf[at] == want[at])
                at++;
            fail("echo mismatch on connection %zu at stream offset %llu: "
                 "got byte 0x%02x, expected 0x%02x",
                 (size_t)(c - conns), (unsigned long long)(c->rx_off + at), rbuf[at],
                 want[at]);
        }
        c->rx_off += got;
        bytes_total += got;
        if (opt.workload == W_STREAM) {
            c->recvd += got;
            while (c->recvd >= msg_size) {
                c->recvd -= msg_size;
                ops_total++;
            }
            /* One read per wakeup keeps sending and receiving interleaved. */
            return;
        }
        c->recvd += got;
        if (c->recvd == msg_size) {
            on_message_done(c);
            return;
        }
        if (c->recvd == c->sent)
            return;
    }
}

static void on_idle_event(struct conn *c)
{
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
    if (n == 0)
        fail("server closed idle connection %zu", (size_t)(c - conns));
    if (n > 0)
        fail("server sent data on idle connection %zu", (size_t)(c - conns));
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        fail("idle connection %zu: %s", (size_t)(c - conns), strerror(errno));
}

static void dispatch(uint64_t data, uint32_t ev)
{
    size_t idx = (size_t)(data & 0xffffffffu);
    uint32_t gen = (uint32_t)(data >> 32);
    struct conn *c = &conns[idx];
    if (c->gen != gen || c->state == CS_FREE)
        return; /* event for an fd already closed earlier in this batch */
    switch (c->state) {
    case CS_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            fail("getsockopt(SO_ERROR): %s", strerror(errno));
        if (err != 0)
            fail("connect to %s:%s: %s", opt.host, opt.port, strerror(err));
        if (ev & (EPOLLHUP | EPOLLERR))
            fail("connect to %s:%s: connection hung up", opt.host, opt.port);
        if (ev & EPOLLOUT)
            on_connected(c);
        break;
    }
    case CS_IDLE:
        on_idle_event(c);
        break;
    case CS_ACTIVE:
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            pump_recv(c);
            /* pump_recv may have closed and reopened the slot (churn). */
            if (c->gen != gen || c->state != CS_ACTIVE)
                break;
        }
        if (ev & EPOLLOUT)
            pump_send(c);
        break;
    case CS_FREE:
        break;
    }
}

static void run_events(int timeout_ms)
{
    static struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms);
    if (n < 0) {
        if (errno == EINTR)
            return;
        fail("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++)
        dispatch(events[i].data.u64, events[i].events);
}

static int ms_until(double deadline)
{
    double left = deadline - now();
    if (left <= 0)
        return 0;
    /* Round up so we never spin on a zero timeout just before the edge. */
    return (int)(left * 1000.0) + 1;
}

static void run_until(double deadline)
{
    while (now() < deadline)
        run_events(ms_until(deadline));
}

static void open_idle(size_t first, size_t count)
{
    double deadline = now() + IDLE_OPEN_TIMEOUT;
    size_t next = 0;
    while ((size_t)idle_opened < count) {
        while (next < count && idle_connecting < CONNECT_WINDOW) {
            struct conn *c = &conns[first + next++];
            c->idle = 1;
            idle_connecting++;
            start_connect(c);
        }
        if (now() > deadline)
            fail("opened only %ld of %zu idle connections in %.0f s", idle_opened,
                 count, IDLE_OPEN_TIMEOUT);
        run_events(100);
    }
}

/* Waits until the server has echoed a message on each of the `count` active
 * connections: they were opened after the idle ones, so it has accepted all. */
static void wait_answered(size_t count)
{
    double deadline = now() + IDLE_OPEN_TIMEOUT;
    while ((size_t)active_answered < count) {
        if (now() > deadline)
            fail("the server answered only %ld of %zu active connections within %.0f s "
                 "of the idle ones being opened", active_answered, count, IDLE_OPEN_TIMEOUT);
        run_events(100);
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    if (opt.cpu >= 0)
        pin_cpu(opt.cpu);

    size_t active = (size_t)opt.conns;
    size_t idle = opt.workload == W_IDLE ? (size_t)opt.idle : 0;
    nconns = active + idle;
    /* stdio, epoll, and slack for the resolver. */
    raise_nofile(nconns + 16);

    msg_size = (size_t)opt.size;
    resolve();
    build_pattern();
    conns = calloc(nconns, sizeof *conns);
    if (conns == NULL)
        fail("out of memory for %zu connections", nconns);
    for (size_t i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        /* Spread connections over the pattern so a cross-connection mix-up
         * is a mismatch too. */
        conns[i].seed = (uint32_t)((i * 7919u) % PAT_LEN);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        fail("epoll_create1: %s", strerror(errno));

    if (idle > 0)
        open_idle(active, idle);

    for (size_t i = 0; i < active; i++)
        start_connect(&conns[i]);
    if (idle > 0)
        wait_answered(active);

    run_until(now() + opt.warmup);
    take_snapshot(&snap_start);
    measuring = 1;
    run_until(snap_start.t + opt.seconds);
    emit_result(NULL);
    return 0;
}
