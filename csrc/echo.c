/*
 * l2fast echo responder (see echo.h for the checks and the API contract).
 *
 * Why a thread of its own: a PING answered by the daemon's Python loop waits for that loop's
 * wake-up, its turn and the GIL, which made l2fast ping's round trip 8-10x ICMP's on a veth
 * pair.  This thread blocks in poll() on its own socket, whose filter passes only PINGs to this
 * node, and turns each PING into its PONG in the receive slot: no copy, no allocation, no
 * Python.  It shares nothing with the rest of the process but its counters (written only here,
 * read with relaxed atomic loads) and the read-only configuration.
 */
#define _GNU_SOURCE
#include "echo.h"

#include "l2fast_core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <math.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FRAME_PING 0x38
#define FRAME_PONG 0x39
/* Receive slots hold MTU + Ethernet header + room for a VLAN tag (as the runner's arena). */
#define SLOT_EXTRA (L2F_ETH_HLEN + 18)
/* Batches taken per wake-up before poll() again: the stop request is seen within this many. */
#define BATCHES_PER_WAKE 16
/* Probes per lookup in the per-peer table; the least recently used of them is evicted. */
#define PEER_PROBES 8
#define RCVBUF_BYTES (4 << 20)
#define SNDBUF_BYTES (1 << 20)

struct bucket {
    double tokens;
    int64_t stamp_ns;
};

struct peer_slot {
    uint64_t key;      /* MAC in the low 48 bits, bit 63 set when the slot is used */
    uint64_t last_use; /* the table's use clock when this peer last sent a PING */
    struct bucket bucket;
};

struct l2f_echo {
    struct l2f_echo_config cfg;
    uint32_t slot_size;
    uint8_t *arena;
    /* ---- the responder thread's alone (and a test's, when no thread runs) ---- */
    struct bucket global;
    int global_ready;
    uint64_t use_clock;
    struct peer_slot peers[L2F_ECHO_PEER_SLOTS];
    /* ---- written by the thread, read by anyone: relaxed atomics ---- */
    struct l2f_echo_counters c;
    int running;
    int exit_code;
    /* ---- owned by the thread that calls start/stop ---- */
    int sock_fd;
    int stop_fd;
    int started;
    pid_t owner_pid;
    pthread_t thread;
};

_Static_assert(L2F_V_COUNT == 8, "l2f_echo_counters.verdicts has one entry per verdict");
_Static_assert(sizeof(struct l2f_echo_counters) % sizeof(uint64_t) == 0,
               "l2f_echo_counters holds only uint64_t (l2f_echo_counters copies it word by word)");

/* One writer (the responder's thread) per counter, so a relaxed load and store is an exact
 * increment; readers in other threads use relaxed loads of the naturally aligned 64-bit words,
 * which cannot tear.  No ordering between counters is promised (a snapshot may be a frame
 * apart from one counter to the next), which status output does not need, and nothing costs
 * more than a plain add on x86-64. */
static inline void bump(uint64_t *counter)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

static inline void add(uint64_t *counter, uint64_t n)
{
    __atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static int rate_ok(double rate, double burst)
{
    return isfinite(rate) && isfinite(burst) && rate >= 0.0 && burst >= 0.0 && burst <= 1e9 &&
           rate <= 1e9;
}

int l2f_echo_new(const struct l2f_echo_config *cfg, struct l2f_echo **out)
{
    if (!cfg || !out)
        return -L2F_E_ARG;
    *out = NULL;
    if (cfg->mtu < 68 || cfg->mtu > 65535 || cfg->batch < 1 || cfg->batch > L2F_ECHO_MAX_BATCH ||
        !rate_ok(cfg->rate_per_peer, cfg->burst_per_peer) ||
        !rate_ok(cfg->rate_global, cfg->burst_global))
        return -L2F_E_ARG;
    struct l2f_echo *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->cfg = *cfg;
    e->slot_size = cfg->mtu + SLOT_EXTRA;
    e->arena = malloc((size_t)e->slot_size * cfg->batch);
    if (!e->arena) {
        free(e);
        return -ENOMEM;
    }
    e->sock_fd = -1;
    e->stop_fd = -1;
    *out = e;
    return 0;
}

/* ---- rate limits: the semantics of node/ratelimit.py (TokenBucket, ReplyLimiter) ---- */

static void bucket_init(struct bucket *b, double burst, int64_t now_ns)
{
    b->tokens = burst;
    b->stamp_ns = now_ns;
}

static int bucket_take(struct bucket *b, double rate, double burst, int64_t now_ns)
{
    /* A clock that steps back must not mint tokens. */
    int64_t elapsed = now_ns - b->stamp_ns;
    if (elapsed < 0)
        elapsed = 0;
    else
        b->stamp_ns = now_ns;
    double tokens = b->tokens + (double)elapsed * 1e-9 * rate;
    if (tokens > burst)
        tokens = burst;
    if (tokens >= 1.0) {
        b->tokens = tokens - 1.0;
        return 1;
    }
    b->tokens = tokens;
    return 0;
}

static uint64_t mac_key(const uint8_t mac[6])
{
    uint64_t k = 0;
    for (int i = 0; i < 6; i++)
        k = (k << 8) | mac[i];
    return k | (1ull << 63);
}

static uint32_t peer_hash(uint64_t key, uint64_t seed)
{
    /* splitmix64's finaliser: the slot a MAC lands in depends on a per-daemon random seed,
     * so a flood cannot choose MACs that all evict one real peer's bucket. */
    uint64_t z = key ^ seed;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (uint32_t)(z & (L2F_ECHO_PEER_SLOTS - 1));
}

/* The peer's bucket: found among PEER_PROBES slots, or a free one of them, or the least
 * recently used of them handed over (bounded work per PING, bounded memory, whatever the
 * flood).  A fresh or handed-over bucket starts full, as a new peer does in ReplyLimiter; as
 * there, the global bucket is what finally caps the PONGs a flood of forged MACs gets. */
static struct bucket *peer_bucket(struct l2f_echo *e, const uint8_t mac[6], int64_t now_ns)
{
    uint64_t key = mac_key(mac);
    uint32_t home = peer_hash(key, e->cfg.hash_seed);
    struct peer_slot *victim = NULL;
    e->use_clock++;
    for (uint32_t i = 0; i < PEER_PROBES; i++) {
        struct peer_slot *s = &e->peers[(home + i) & (L2F_ECHO_PEER_SLOTS - 1)];
        if (s->key == key) {
            s->last_use = e->use_clock;
            return &s->bucket;
        }
        if (s->key == 0) {
            if (!victim || victim->key != 0)
                victim = s; /* the first free slot */
        } else if (!victim || (victim->key != 0 && s->last_use < victim->last_use)) {
            victim = s;
        }
    }
    if (victim->key != 0)
        bump(&e->c.peers_evicted);
    victim->key = key;
    victim->last_use = e->use_clock;
    bucket_init(&victim->bucket, e->cfg.burst_per_peer, now_ns);
    return &victim->bucket;
}

static int may_answer(struct l2f_echo *e, const uint8_t mac[6], int64_t now_ns)
{
    const struct l2f_echo_config *cfg = &e->cfg;
    if (!e->global_ready) {
        bucket_init(&e->global, cfg->burst_global, now_ns);
        e->global_ready = 1;
    }
    struct bucket *b = peer_bucket(e, mac, now_ns);
    /* Per-peer first: a peer over its own share must not drain the global bucket. */
    return bucket_take(b, cfg->rate_per_peer, cfg->burst_per_peer, now_ns) &&
           bucket_take(&e->global, cfg->rate_global, cfg->burst_global, now_ns);
}

/* ---- one frame ---- */

int l2f_echo_handle_frame(struct l2f_echo *e, uint8_t *buf, size_t len, size_t cap,
                          int64_t now_ns)
{
    if (!e || !buf || len > cap)
        return -L2F_E_ARG;
    struct l2f_echo_counters *c = &e->c;
    bump(&c->rx);
    struct l2f_frame_info info;
    int v = l2f_parse_frame(buf, len, e->cfg.ethertype, &info);
    if (v != L2F_V_OK) {
        if (v > 0 && v < L2F_V_COUNT)
            bump(&c->verdicts[v]);
        return 0;
    }
    bump(&c->accepted);
    const uint8_t *mac = e->cfg.mac;
    if (info.type != FRAME_PING)
        bump(&c->not_ping);
    else if (memcmp(info.src, mac, 6) == 0)
        bump(&c->own_frame);
    else if (info.src[0] & 1) /* a group address never sends */
        bump(&c->bad_source);
    else if (memcmp(info.dst, mac, 6) != 0)
        bump(&c->not_for_us);
    else if (info.payload_len < L2F_ECHO_PING_HEADER)
        bump(&c->bad_payload);
    else if (!may_answer(e, info.src, now_ns))
        bump(&c->rate_limited);
    else {
        /* The parser's OK verdict put the payload inside buf[38..len): the PONG is that same
         * payload behind a new header, written over the PING's in place (the header builder
         * reads the payload only for the CRC).  Padding after the payload is not sent. */
        uint8_t peer[6];
        memcpy(peer, info.src, sizeof peer);
        int rc = l2f_build_header(buf, cap, peer, mac, e->cfg.ethertype, FRAME_PONG, 0, 0,
                                  info.seq, buf + L2F_FRAME_OVERHEAD, info.payload_len);
        if (rc < 0)
            return rc; /* cannot happen for a parsed frame; reported rather than sent */
        bump(&c->answered);
        return (int)(L2F_FRAME_OVERHEAD + info.payload_len);
    }
    return 0;
}

/* ---- the thread ---- */

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void send_pongs(struct l2f_echo *e, struct mmsghdr *msgs, uint32_t n)
{
    uint32_t sent = 0;
    while (sent < n) {
        int r = sendmmsg(e->sock_fd, msgs + sent, n - sent, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* Queue full or link down: these PONGs are lost, as any frame can be, and the
             * pinger reports them lost.  Not retried: a PONG sent late measures nothing. */
            add(&e->c.tx_errors, n - sent);
            return;
        }
        add(&e->c.tx, (uint64_t)r);
        sent += (uint32_t)r;
    }
}

/* Returns 0 when the queue is drained, 1 when more may wait, or -errno of a receive failure. */
static int serve_batch(struct l2f_echo *e, struct mmsghdr *rx, struct iovec *rxiov,
                       struct mmsghdr *tx, struct iovec *txiov)
{
    uint32_t batch = e->cfg.batch;
    for (uint32_t i = 0; i < batch; i++) {
        rxiov[i].iov_base = e->arena + (size_t)i * e->slot_size;
        rxiov[i].iov_len = e->slot_size;
        memset(&rx[i].msg_hdr, 0, sizeof rx[i].msg_hdr);
        rx[i].msg_hdr.msg_iov = &rxiov[i];
        rx[i].msg_hdr.msg_iovlen = 1;
        rx[i].msg_len = 0;
    }
    int n = recvmmsg(e->sock_fd, rx, batch, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return 0;
        return -errno;
    }
    int64_t now = monotonic_ns();
    uint32_t k = 0;
    for (int i = 0; i < n; i++) {
        uint8_t *slot = e->arena + (size_t)i * e->slot_size;
        /* MSG_TRUNC reports a longer frame's full length; only slot_size bytes were stored. */
        size_t len = rx[i].msg_len < e->slot_size ? rx[i].msg_len : e->slot_size;
        int pong_len = l2f_echo_handle_frame(e, slot, len, e->slot_size, now);
        if (pong_len <= 0)
            continue;
        txiov[k].iov_base = slot;
        txiov[k].iov_len = (size_t)pong_len;
        memset(&tx[k].msg_hdr, 0, sizeof tx[k].msg_hdr);
        tx[k].msg_hdr.msg_iov = &txiov[k];
        tx[k].msg_hdr.msg_iovlen = 1; /* no address: the socket is bound to the interface */
        k++;
    }
    if (k)
        send_pongs(e, tx, k);
    return (uint32_t)n == batch ? 1 : 0;
}

static void *echo_main(void *arg)
{
    struct l2f_echo *e = arg;
    struct mmsghdr rx[L2F_ECHO_MAX_BATCH], tx[L2F_ECHO_MAX_BATCH];
    struct iovec rxiov[L2F_ECHO_MAX_BATCH], txiov[L2F_ECHO_MAX_BATCH];
    struct pollfd fds[2] = {{.fd = e->sock_fd, .events = POLLIN}, {.fd = e->stop_fd, .events = POLLIN}};
    int exit_code = 0;
    for (;;) {
        int r = poll(fds, 2, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            exit_code = -errno;
            break;
        }
        if (fds[1].revents)
            break; /* stop requested */
        if (fds[0].revents & (POLLHUP | POLLNVAL)) {
            /* Not something a packet socket reports in normal life; polling again would
             * spin.  The daemon sees the thread gone and answers PINGs in its loop. */
            exit_code = (fds[0].revents & POLLNVAL) ? -EBADF : -EPIPE;
            break;
        }
        if (!(fds[0].revents & (POLLIN | POLLERR)))
            continue;
        bump(&e->c.wakeups);
        for (int round = 0; round < BATCHES_PER_WAKE; round++) {
            int more = serve_batch(e, rx, rxiov, tx, txiov);
            if (more < 0) {
                /* The link went down (ENETDOWN...): the error is reported once per event and
                 * cleared by the failed call; frames flow again when the link is back.  The
                 * pause keeps a link that fails over and over from spinning a core. */
                bump(&e->c.recv_errors);
                struct timespec pause = {0, 1000000};
                nanosleep(&pause, NULL);
                break;
            }
            if (!more)
                break;
        }
    }
    __atomic_store_n(&e->exit_code, exit_code, __ATOMIC_RELAXED);
    __atomic_store_n(&e->running, 0, __ATOMIC_RELEASE);
    return NULL;
}

static void set_buffer(int fd, int force_opt, int opt, int bytes)
{
    /* FORCE needs CAP_NET_ADMIN; without it the kernel caps the plain option, which is enough
     * for PINGs (each is one small frame). */
    if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) < 0)
        (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
}

static int open_socket(struct l2f_echo *e, const char *ifname)
{
    if (!ifname || strnlen(ifname, IFNAMSIZ) == 0 || strnlen(ifname, IFNAMSIZ) >= IFNAMSIZ)
        return -ENODEV;
    unsigned ifindex = if_nametoindex(ifname);
    if (ifindex == 0)
        return -ENODEV;
    /* Protocol 0 until bound: the socket receives nothing before its filter is in place. */
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int rc = l2f_sock_filter_echo(fd, e->cfg.mac);
    if (rc < 0)
        goto fail;
    set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, RCVBUF_BYTES);
    set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, SNDBUF_BYTES);
    if (e->cfg.qdisc_bypass) {
        int one = 1;
        (void)setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    }
    struct sockaddr_ll addr;
    memset(&addr, 0, sizeof addr);
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(e->cfg.ethertype);
    addr.sll_ifindex = (int)ifindex;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        rc = -errno;
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}

int l2f_echo_start(struct l2f_echo *e, const char *ifname)
{
    if (!e)
        return -L2F_E_ARG;
    if (e->started || e->sock_fd >= 0)
        return -EALREADY;
    int fd = open_socket(e, ifname);
    if (fd < 0)
        return fd;
    int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    e->sock_fd = fd;
    e->stop_fd = stop_fd;
    e->owner_pid = getpid();
    __atomic_store_n(&e->running, 1, __ATOMIC_RELEASE);
    /* Every signal blocked in the new thread (it inherits the mask): the kernel then delivers
     * process signals to the Python thread, whose handlers and wake-ups stay prompt. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&e->thread, NULL, echo_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        __atomic_store_n(&e->running, 0, __ATOMIC_RELEASE);
        close(fd);
        close(stop_fd);
        e->sock_fd = e->stop_fd = -1;
        return -rc;
    }
#if defined(__GLIBC__)
    (void)pthread_setname_np(e->thread, "l2f-echo");
#endif
    e->started = 1;
    return 0;
}

int l2f_echo_counters(const struct l2f_echo *e, struct l2f_echo_counters *out)
{
    if (!e || !out)
        return -L2F_E_ARG;
    const uint64_t *src = (const uint64_t *)&e->c;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof e->c / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    return 0;
}

int l2f_echo_sock_stats(struct l2f_echo *e, uint64_t *packets, uint64_t *drops)
{
    if (!e || !packets || !drops)
        return -L2F_E_ARG;
    if (e->sock_fd < 0)
        return -ENOTCONN;
    return l2f_sock_stats(e->sock_fd, packets, drops);
}

int l2f_echo_join_fanout(struct l2f_echo *e, uint32_t id)
{
    if (!e)
        return -L2F_E_ARG;
    if (e->sock_fd < 0)
        return -ENOTCONN;
    return l2f_fanout_join(e->sock_fd, id);
}

int l2f_echo_running(const struct l2f_echo *e)
{
    return e ? __atomic_load_n(&e->running, __ATOMIC_ACQUIRE) : 0;
}

int l2f_echo_exit_code(const struct l2f_echo *e)
{
    return e ? __atomic_load_n(&e->exit_code, __ATOMIC_RELAXED) : 0;
}

static void close_fds(struct l2f_echo *e)
{
    if (e->sock_fd >= 0)
        close(e->sock_fd);
    if (e->stop_fd >= 0)
        close(e->stop_fd);
    e->sock_fd = e->stop_fd = -1;
}

int l2f_echo_stop(struct l2f_echo *e)
{
    if (!e)
        return 0;
    if (e->started && e->owner_pid != getpid()) {
        /* A forked child: the thread exists only in the parent, and the eventfd is the
         * parent's too, so writing it would stop the parent's responder.  Drop our copies. */
        e->started = 0;
        close_fds(e);
        return 0;
    }
    if (e->started) {
        uint64_t one = 1;
        /* An eventfd write only fails when the counter would overflow, and then it is
         * readable already: the thread wakes either way. */
        ssize_t w;
        do
            w = write(e->stop_fd, &one, sizeof one);
        while (w < 0 && errno == EINTR);
        pthread_join(e->thread, NULL);
        e->started = 0;
    }
    close_fds(e);
    return 0;
}

void l2f_echo_free(struct l2f_echo *e)
{
    if (!e)
        return;
    l2f_echo_stop(e);
    free(e->arena);
    free(e);
}
