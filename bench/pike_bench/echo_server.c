/*
 * Reference echo server for the pike-core benchmark suite.
 *
 * It exists to show the practical limit of this machine, so it does the
 * least work an honest echo server can do: one thread, one epoll set, one
 * read buffer shared by every connection, and a per-connection buffer only
 * for bytes the kernel would not take yet.
 *
 * Usage: echo_server [--host ADDR] [--port P]
 *   --host  address to bind (default 127.0.0.1)
 *   --port  port to bind; 0 picks a free one (default 0)
 * Prints "PORT <n>" on stdout once listening; exits 0 on SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

/* One read per wakeup of this size keeps the syscall count low for large
 * streams while still bounding what a slow reader can make us hold. */
#define READ_SIZE (64 * 1024)
#define MAX_EVENTS 512

struct conn {
    char *pending;    /* bytes read but not yet accepted by send() */
    size_t len;       /* valid bytes in pending, starting at off */
    size_t off;
    int open;
};

static struct conn *conns;
static size_t conns_cap;
static int epfd = -1;
static int listen_fd = -1;
static int signal_fd = -1;
/* Kept open so that, when the fd table is full, we can free one slot to
 * accept-and-close the waiting connection; otherwise level-triggered epoll
 * would report the listening socket forever and we would spin. */
static int spare_fd = -1;
static char rbuf[READ_SIZE];

static void die(const char *what)
{
    fprintf(stderr, "echo_server: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: echo_server [--host ADDR] [--port P]\n");
    exit(2);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("getrlimit");
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            die("setrlimit");
    }
    /* Size the table by the limit so an fd can index it directly; an
     * unlimited hard limit is capped to something we can allocate. */
    conns_cap = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1u << 20)
                    ? (1u << 20)
                    : (size_t)rl.rlim_cur;
    conns = calloc(conns_cap, sizeof *conns);
    if (conns == NULL)
        die("calloc");
}

static void set_interest(int fd, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
        die("epoll_ctl(MOD)");
}

static void close_conn(int fd)
{
    struct conn *c = &conns[fd];
    /* close() drops the fd from the epoll set as it is the only reference. */
    close(fd);
    free(c->pending);
    c->pending = NULL;
    c->len = c->off = 0;
    c->open = 0;
}

static void accept_all(void)
{
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                static int warned;
                if (!warned) {
                    fprintf(stderr, "echo_server: out of file descriptors; "
                                    "refusing connections until some close\n");
                    warned = 1;
                }
                if (spare_fd < 0)
                    return;
                close(spare_fd);
                fd = accept(listen_fd, NULL, NULL);
                spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                /* accept reports EMFILE even with an empty queue, so stop
                 * once the shed accept finds nothing waiting. */
                if (fd < 0)
                    return;
                close(fd);
                continue;
            }
            die("accept4");
        }
        if ((size_t)fd >= conns_cap) {
            close(fd);
            continue;
        }
        int one = 1;
        /* Ping-pong traffic would otherwise stall on Nagle + delayed ACK. */
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
            die("setsockopt(TCP_NODELAY)");
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl(ADD)");
        conns[fd].open = 1;
    }
}

/* Returns 0 when everything pending went out, 1 if some is left, -1 on a
 * dead peer. */
static int flush_pending(int fd, struct conn *c)
{
    while (c->len > 0) {
        ssize_t n = send(fd, c->pending + c->off, c->len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            return -1;
        }
        c->off += (size_t)n;
        c->len -= (size_t)n;
    }
    c->off = 0;
    return 0;
}

static void on_readable(int fd)
{
    struct conn *c = &conns[fd];
    ssize_t n = recv(fd, rbuf, sizeof rbuf, 0);
    if (n == 0) {
        /* We stop reading while output is pending, so a seen EOF means
         * every byte the peer sent has already been echoed. */
        close_conn(fd);
        return;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        close_conn(fd);
        return;
    }
    size_t got = (size_t)n;
    size_t sent = 0;
    while (sent < got) {
        ssize_t w = send(fd, rbuf + sent, got - sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            close_conn(fd);
            return;
        }
        sent += (size_t)w;
    }
    if (sent == got)
        return;
    /* The peer is not draining; keep the rest and stop reading until it
     * does, so memory per connection stays bounded by one read. */
    if (c->pending == NULL) {
        c->pending = malloc(READ_SIZE);
        if (c->pending == NULL)
            die("malloc");
    }
    memcpy(c->pending, rbuf + sent, got - sent);
    c->off = 0;
    c->len = got - sent;
    set_interest(fd, EPOLLOUT);
}

static void on_writable(int fd)
{
    struct conn *c = &conns[fd];
    int r = flush_pending(fd, c);
    if (r < 0)
        close_conn(fd);
    else if (r == 0)
        set_interest(fd, EPOLLIN);
}

static int open_listener(const char *host, const char *port)
{
    struct addrinfo hints = {0}, *res, *ai;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "echo_server: %s: %s\n", host, gai_strerror(rc));
        exit(1);
    }
    int fd = -1;
    int last_errno = 0;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        /* Lets a benchmark rerun bind the same port despite TIME_WAIT. */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
            break;
        last_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        errno = last_errno;
        die("bind/listen");
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        die("getsockname");
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    const char *port = "0";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = argv[++i];
        else
            usage();
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || p < 0 || p > 65535)
        usage();

    raise_nofile();

    /* Signals arrive through an fd so shutdown is just another epoll event,
     * with no race between checking a flag and blocking in epoll_wait. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
        die("sigprocmask");
    signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd < 0)
        die("signalfd");
    signal(SIGPIPE, SIG_IGN);

    listen_fd = open_listener(host, port);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listen_fd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) != 0)
        die("epoll_ctl(listen)");
    ev.data.fd = signal_fd;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, signal_fd, &ev) != 0)
        die("epoll_ctl(signalfd)");

    printf("PORT %d\n", bound_port(listen_fd));
    fflush(stdout);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t e = events[i].events;
            if (fd == listen_fd) {
                accept_all();
            } else if (fd == signal_fd) {
                goto shutdown;
            } else if (conns[fd].open) {
                /* A connection closed earlier in this batch may have had its
                 * fd reused by accept; the open flag is all we can check,
                 * and handling a fresh connection early is harmless. */
                if (e & EPOLLOUT)
                    on_writable(fd);
                else if (e & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    on_readable(fd);
            }
        }
    }

shutdown:
    for (size_t fd = 0; fd < conns_cap; fd++)
        if (conns[fd].open)
            close_conn((int)fd);
    close(listen_fd);
    close(epfd);
    close(signal_fd);
    if (spare_fd >= 0)
        close(spare_fd);
    free(conns);
    return 0;
}
