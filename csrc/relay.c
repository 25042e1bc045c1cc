/*
 * l2fast impairment relay (see relay.h for the fault model and the API contract).
 *
 * Data path: for each port with frames waiting, one recvmmsg fills a fixed arena; every frame is
 * decided on in place (corruption flips a bit in the arena) and queued as an iovec on the egress
 * ports' transmit queues; the queues go out with one sendmmsg per port before the arena is
 * reused.  Only held frames are copied, into preallocated hold slots.  Nothing is allocated after
 * l2f_relay_new/l2f_relay_add_port.
 */
#define _GNU_SOURCE
#include "relay.h"

#include "l2fast_core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23 /* Linux >= 4.20; older kernels are handled by sll_pkttype */
#endif

#define MAC_TABLE_SIZE 1024u /* power of two */
#define MAC_PROBES 16u
#define DRAWS_PER_FRAME 5u
#define TX_RETRY_WAITS 64u /* bounded waits for a full transmit queue per flush */

enum hold_state { HOLD_FREE = 0, HOLD_HELD = 1, HOLD_RELEASING = 2 };

struct held_frame {
    uint8_t *buf;
    uint32_t len;
    uint32_t port_in;
    uint32_t out_mask;
    uint8_t state;
    uint8_t dup;
    uint64_t release_seq; /* release once port_in has received this many frames */
    uint64_t deadline_ns; /* ... or at this monotonic time */
};

struct tx_queue {
    struct mmsghdr *msgs;
    struct iovec *iov;
    uint32_t n;
};

struct relay_port {
    int fd;
    int ifindex;
    struct sockaddr_ll dst; /* protocol 0: the kernel takes the EtherType from the frame */
    uint64_t rng[4];        /* xoshiro256** state, one stream per ingress port */
    uint64_t rx_seq;        /* frames received from this port */
    struct tx_queue txq;
    struct l2f_relay_counters c;
};

struct mac_entry {
    uint64_t key; /* MAC in the low 48 bits, bit 63 set when the entry is used */
    uint32_t port;
};

struct l2f_relay {
    struct l2f_relay_config cfg;
    uint64_t th_loss, th_dup, th_reorder, th_corrupt;
    uint32_t nports;
    uint32_t txcap;
    struct relay_port ports[L2F_RELAY_MAX_PORTS];
    /* receive arena */
    uint8_t *arena;
    struct mmsghdr *rxmsgs;
    struct iovec *rxiov;
    struct sockaddr_ll *rxaddr;
    /* reordering */
    uint8_t *hold_arena;
    struct held_frame *held;
    uint32_t *active; /* indices of HOLD_HELD slots, in the order they were held */
    uint32_t nactive;
    uint32_t nreleasing; /* slots released but still referenced by a transmit queue */
    struct mac_entry macs[MAC_TABLE_SIZE];
};

/* ---- PRNG: splitmix64 seeds xoshiro256** (Blackman & Vigna, public domain algorithms) ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t xoshiro_next(uint64_t s[4])
{
    const uint64_t result = rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* p in [0, 1] -> threshold such that P(u < threshold) = p for a uniform 64-bit u. */
static uint64_t prob_threshold(double p)
{
    if (!(p > 0.0))
        return 0;
    if (p >= 1.0)
        return UINT64_MAX;
    return (uint64_t)(p * 18446744073709551616.0);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int valid_prob(double p)
{
    return p >= 0.0 && p <= 1.0; /* also false for NaN */
}

/* ---- setup ---- */

int l2f_relay_new(const struct l2f_relay_config *cfg, struct l2f_relay **out)
{
    if (cfg == NULL || out == NULL)
        return -L2F_E_ARG;
    *out = NULL;
    if (!valid_prob(cfg->loss) || !valid_prob(cfg->dup) || !valid_prob(cfg->reorder) ||
        !valid_prob(cfg->corrupt))
        return -L2F_E_ARG;
    if (cfg->reorder_depth < 1 || cfg->reorder_depth > L2F_RELAY_MAX_DEPTH)
        return -L2F_E_ARG;
    if (cfg->hold_slots < 1 || cfg->hold_slots > L2F_RELAY_MAX_HOLD)
        return -L2F_E_ARG;
    if (cfg->slot_size < L2F_RELAY_MIN_SLOT || cfg->slot_size > L2F_RELAY_MAX_SLOT)
        return -L2F_E_ARG;
    if (cfg->batch < 1 || cfg->batch > L2F_RELAY_MAX_BATCH)
        return -L2F_E_ARG;
    if (cfg->sndbuf < 0 || cfg->rcvbuf < 0)
        return -L2F_E_ARG;

    struct l2f_relay *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->cfg = *cfg;
    r->th_loss = prob_threshold(cfg->loss);
    r->th_dup = prob_threshold(cfg->dup);
    r->th_reorder = prob_threshold(cfg->reorder);
    r->th_corrupt = prob_threshold(cfg->corrupt);
    /* A queue takes at most two copies of each frame of a batch plus every released frame. */
    r->txcap = 2 * cfg->batch + 2 * cfg->hold_slots;
    for (uint32_t i = 0; i < L2F_RELAY_MAX_PORTS; i++)
        r->ports[i].fd = -1;

    size_t b = cfg->batch, s = cfg->slot_size, h = cfg->hold_slots;
    r->arena = malloc(b * s);
    r->rxmsgs = calloc(b, sizeof(*r->rxmsgs));
    r->rxiov = calloc(b, sizeof(*r->rxiov));
    r->rxaddr = calloc(b, sizeof(*r->rxaddr));
    r->hold_arena = malloc(h * s);
    r->held = calloc(h, sizeof(*r->held));
    r->active = calloc(h, sizeof(*r->active));
    if (!r->arena || !r->rxmsgs || !r->rxiov || !r->rxaddr || !r->hold_arena || !r->held ||
        !r->active) {
        l2f_relay_free(r);
        return -ENOMEM;
    }
    for (size_t i = 0; i < h; i++)
        r->held[i].buf = r->hold_arena + i * s;
    *out = r;
    return 0;
}

static int port_setup_socket(int fd, int ifindex, const struct l2f_relay_config *cfg)
{
    int one = 1;
    /* Forwarded frames need not wait in a qdisc: the lab shapes the hosts, not the relay. */
    (void)setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
    /* Without this the socket would read back every frame it sends and forward it again. */
    (void)setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
    if (cfg->sndbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &cfg->sndbuf, sizeof(cfg->sndbuf)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cfg->sndbuf, sizeof(cfg->sndbuf));
    if (cfg->rcvbuf > 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &cfg->rcvbuf, sizeof(cfg->rcvbuf)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cfg->rcvbuf, sizeof(cfg->rcvbuf));
    /* A hub must see frames addressed to other stations (veth delivers them anyway; a physical
     * NIC filters them unless promiscuous). Membership ends with the socket. */
    struct packet_mreq mr;
    memset(&mr, 0, sizeof(mr));
    mr.mr_ifindex = ifindex;
    mr.mr_type = PACKET_MR_PROMISC;
    (void)setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr));
    return 0;
}

int l2f_relay_add_port(struct l2f_relay *r, const char *ifname)
{
    if (r == NULL || ifname == NULL)
        return -L2F_E_ARG;
    if (r->nports >= L2F_RELAY_MAX_PORTS)
        return -L2F_E_ARG;
    size_t namelen = strnlen(ifname, IFNAMSIZ);
    if (namelen == 0 || namelen >= IFNAMSIZ)
        return -ENODEV;

    /* Protocol 0 at creation so the socket sees nothing until bind() attaches it to one
     * interface; creating it with ETH_P_ALL would briefly tap every interface. */
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, ifname, namelen);
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
        int e = errno;
        close(fd);
        return e == ENODEV ? -ENODEV : -e;
    }
    int ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFMTU, &ifr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (ifr.ifr_mtu < 0 || (uint64_t)ifr.ifr_mtu + 14u > r->cfg.slot_size) {
        close(fd);
        return -L2F_E_TOOBIG;
    }
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!(ifr.ifr_flags & IFF_UP)) {
        close(fd);
        return -ENETDOWN;
    }
    port_setup_socket(fd, ifindex, &r->cfg);

    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL); /* every EtherType: the relay impairs all traffic */
    sll.sll_ifindex = ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }

    uint32_t idx = r->nports;
    struct relay_port *p = &r->ports[idx];
    p->txq.msgs = calloc(r->txcap, sizeof(*p->txq.msgs));
    p->txq.iov = calloc(r->txcap, sizeof(*p->txq.iov));
    if (p->txq.msgs == NULL || p->txq.iov == NULL) {
        free(p->txq.msgs);
        free(p->txq.iov);
        p->txq.msgs = NULL;
        p->txq.iov = NULL;
        close(fd);
        return -ENOMEM;
    }
    p->fd = fd;
    p->ifindex = ifindex;
    memset(&p->dst, 0, sizeof(p->dst));
    p->dst.sll_family = AF_PACKET;
    p->dst.sll_protocol = 0;
    p->dst.sll_ifindex = ifindex;
    p->dst.sll_halen = 6;
    /* Distinct, seed-derived stream per port: the faults of one direction do not depend on the
     * interleaving with the other. */
    uint64_t sm = r->cfg.seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(idx + 1));
    for (int i = 0; i < 4; i++)
        p->rng[i] = splitmix64(&sm);
    for (uint32_t i = 0; i < r->txcap; i++) {
        p->txq.msgs[i].msg_hdr.msg_name = &p->dst;
        p->txq.msgs[i].msg_hdr.msg_namelen = sizeof(p->dst);
        p->txq.msgs[i].msg_hdr.msg_iov = &p->txq.iov[i];
        p->txq.msgs[i].msg_hdr.msg_iovlen = 1;
    }
    r->nports++;
    return (int)idx;
}

void l2f_relay_free(struct l2f_relay *r)
{
    if (r == NULL)
        return;
    for (uint32_t i = 0; i < L2F_RELAY_MAX_PORTS; i++) {
        if (r->ports[i].fd >= 0)
            close(r->ports[i].fd);
        free(r->ports[i].txq.msgs);
        free(r->ports[i].txq.iov);
    }
    free(r->arena);
    free(r->rxmsgs);
    free(r->rxiov);
    free(r->rxaddr);
    free(r->hold_arena);
    free(r->held);
    free(r->active);
    free(r);
}

int l2f_relay_port_count(const struct l2f_relay *r)
{
    return r == NULL ? -L2F_E_ARG : (int)r->nports;
}

int l2f_relay_counters(const struct l2f_relay *r, int32_t port, struct l2f_relay_counters *out)
{
    if (r == NULL || out == NULL)
        return -L2F_E_ARG;
    if (port >= 0) {
        if ((uint32_t)port >= r->nports)
            return -L2F_E_ARG;
        *out = r->ports[port].c;
        return 0;
    }
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < r->nports; i++) {
        const struct l2f_relay_counters *c = &r->ports[i].c;
        out->rx += c->rx;
        out->rx_bytes += c->rx_bytes;
        out->tx += c->tx;
        out->tx_bytes += c->tx_bytes;
        out->dropped += c->dropped;
        out->duplicated += c->duplicated;
        out->reordered += c->reordered;
        out->corrupted += c->corrupted;
        out->tx_errors += c->tx_errors;
        out->truncated += c->truncated;
        out->filtered += c->filtered;
        out->hold_full += c->hold_full;
        out->kernel_drops += c->kernel_drops;
    }
    return 0;
}

/* ---- forwarding ---- */

static uint64_t mac_key(const uint8_t *mac)
{
    uint64_t k = 0;
    for (int i = 0; i < 6; i++)
        k = (k << 8) | mac[i];
    return k;
}

static uint32_t mac_slot(uint64_t key)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 54) & (MAC_TABLE_SIZE - 1);
}

static void mac_learn(struct l2f_relay *r, const uint8_t *mac, uint32_t port)
{
    if (mac[0] & 1)
        return; /* group addresses never own a port */
    uint64_t key = mac_key(mac) | (1ull << 63);
    uint32_t s = mac_slot(key);
    for (uint32_t i = 0; i < MAC_PROBES; i++) {
        struct mac_entry *e = &r->macs[(s + i) & (MAC_TABLE_SIZE - 1)];
        if (e->key == key || e->key == 0) {
            e->key = key;
            e->port = port;
            return;
        }
    }
    /* Table full around this slot: evict the first candidate (stations move, so the newest
     * sighting is the best guess). */
    r->macs[s].key = key;
    r->macs[s].port = port;
}

static int mac_lookup(const struct l2f_relay *r, const uint8_t *mac)
{
    uint64_t key = mac_key(mac) | (1ull << 63);
    uint32_t s = mac_slot(key);
    for (uint32_t i = 0; i < MAC_PROBES; i++) {
        const struct mac_entry *e = &r->macs[(s + i) & (MAC_TABLE_SIZE - 1)];
        if (e->key == key)
            return (int)e->port;
        if (e->key == 0)
            return -1;
    }
    return -1;
}

static uint32_t all_but(const struct l2f_relay *r, uint32_t port)
{
    uint32_t all = (r->nports >= 32) ? 0xFFFFFFFFu : ((1u << r->nports) - 1u);
    return all & ~(1u << port);
}

/* Egress ports of a frame (len >= 14) that came in on port_in: with two ports the other one,
 * otherwise a learning hub's choice. */
static uint32_t route(struct l2f_relay *r, uint32_t port_in, const uint8_t *frame)
{
    if (r->nports <= 2)
        return all_but(r, port_in);
    mac_learn(r, frame + 6, port_in);
    if (frame[0] & 1)
        return all_but(r, port_in); /* broadcast and multicast flood */
    int owner = mac_lookup(r, frame);
    if (owner < 0)
        return all_but(r, port_in); /* unknown unicast floods too */
    if ((uint32_t)owner == port_in)
        return 0;
    return 1u << (uint32_t)owner;
}

static void txq_flush(struct l2f_relay *r, uint32_t port)
{
    struct relay_port *p = &r->ports[port];
    struct tx_queue *q = &p->txq;
    uint32_t done = 0, waits = 0;
    while (done < q->n) {
        int rc = sendmmsg(p->fd, q->msgs + done, q->n - done, 0);
        if (rc > 0) {
            for (uint32_t i = done; i < done + (uint32_t)rc; i++) {
                p->c.tx++;
                p->c.tx_bytes += q->iov[i].iov_len;
            }
            done += (uint32_t)rc;
            continue;
        }
        int e = (rc < 0) ? errno : EAGAIN;
        if (e == EAGAIN || e == ENOBUFS || e == EINTR) {
            /* Transmit queue full: give the kernel a moment, but never wait unboundedly. */
            if (++waits > TX_RETRY_WAITS)
                break;
            struct pollfd pfd = {.fd = p->fd, .events = POLLOUT, .revents = 0};
            (void)poll(&pfd, 1, 1);
            continue;
        }
        /* A frame the kernel will never take (too big for the egress MTU, link down): skip it
         * and keep forwarding the rest. */
        p->c.tx_errors++;
        done++;
    }
    if (done < q->n)
        p->c.tx_errors += q->n - done;
    q->n = 0;
}

static void flush_all(struct l2f_relay *r)
{
    for (uint32_t i = 0; i < r->nports; i++)
        if (r->ports[i].txq.n)
            txq_flush(r, i);
    /* Hold slots released in this round may be reused only now that nothing points at them. */
    for (uint32_t i = 0; r->nreleasing && i < r->cfg.hold_slots; i++) {
        if (r->held[i].state == HOLD_RELEASING) {
            r->held[i].state = HOLD_FREE;
            r->nreleasing--;
        }
    }
}

static void txq_push(struct l2f_relay *r, uint32_t port, uint8_t *buf, uint32_t len)
{
    struct tx_queue *q = &r->ports[port].txq;
    if (q->n >= r->txcap)
        txq_flush(r, port);
    q->iov[q->n].iov_base = buf;
    q->iov[q->n].iov_len = len;
    q->n++;
}

static void emit(struct l2f_relay *r, uint32_t mask, uint8_t *buf, uint32_t len, int dup)
{
    for (uint32_t port = 0; mask != 0 && port < r->nports; port++) {
        if (!(mask & (1u << port)))
            continue;
        txq_push(r, port, buf, len);
        if (dup)
            txq_push(r, port, buf, len);
    }
}

static void release_slot(struct l2f_relay *r, uint32_t active_pos)
{
    uint32_t slot = r->active[active_pos];
    struct held_frame *h = &r->held[slot];
    emit(r, h->out_mask, h->buf, h->len, h->dup);
    h->state = HOLD_RELEASING;
    r->nreleasing++;
    /* Keep the active list in hold order so simultaneous releases go out oldest first. */
    memmove(&r->active[active_pos], &r->active[active_pos + 1],
            (size_t)(r->nactive - active_pos - 1) * sizeof(*r->active));
    r->nactive--;
}

/* Release the frames of port_in that enough later frames have overtaken. */
static void release_due_by_count(struct l2f_relay *r, uint32_t port_in)
{
    uint64_t seq = r->ports[port_in].rx_seq;
    uint32_t i = 0;
    while (i < r->nactive) {
        const struct held_frame *h = &r->held[r->active[i]];
        if (h->port_in == port_in && seq >= h->release_seq)
            release_slot(r, i);
        else
            i++;
    }
}

static void release_due_by_time(struct l2f_relay *r, uint64_t now)
{
    uint32_t i = 0;
    while (i < r->nactive) {
        if (now >= r->held[r->active[i]].deadline_ns)
            release_slot(r, i);
        else
            i++;
    }
}

static int hold(struct l2f_relay *r, uint32_t port_in, uint32_t mask, const uint8_t *buf,
                uint32_t len, int dup, uint64_t now)
{
    for (uint32_t i = 0; i < r->cfg.hold_slots; i++) {
        struct held_frame *h = &r->held[i];
        if (h->state != HOLD_FREE)
            continue;
        memcpy(h->buf, buf, len);
        h->len = len;
        h->port_in = port_in;
        h->out_mask = mask;
        h->dup = (uint8_t)dup;
        h->state = HOLD_HELD;
        h->release_seq = r->ports[port_in].rx_seq + r->cfg.reorder_depth;
        h->deadline_ns = now + (uint64_t)r->cfg.hold_us * 1000ull;
        r->active[r->nactive++] = i;
        return 1;
    }
    return 0;
}

static void process_frame(struct l2f_relay *r, uint32_t port_in, uint8_t *buf, uint32_t len,
                          uint64_t now)
{
    struct relay_port *p = &r->ports[port_in];
    /* Fixed number of draws per frame, used or not, so that fates depend on position only. */
    uint64_t u_loss = xoshiro_next(p->rng);
    uint64_t u_corrupt = xoshiro_next(p->rng);
    uint64_t u_bit = xoshiro_next(p->rng);
    uint64_t u_dup = xoshiro_next(p->rng);
    uint64_t u_reorder = xoshiro_next(p->rng);

    p->rx_seq++;
    p->c.rx++;
    p->c.rx_bytes += len;

    if (u_loss < r->th_loss) {
        p->c.dropped++;
    } else {
        if (u_corrupt < r->th_corrupt && len > 14) {
            /* Uniform bit among the bytes after the Ethernet header (multiply-shift, no modulo
             * bias); the addresses stay intact so the frame still reaches its receiver. */
            uint64_t nbits = (uint64_t)(len - 14) * 8u;
            uint64_t bit = (uint64_t)(((unsigned __int128)u_bit * nbits) >> 64);
            buf[14 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
            p->c.corrupted++;
        }
        int dup = u_dup < r->th_dup;
        uint32_t mask = route(r, port_in, buf);
        if (mask == 0) {
            p->c.filtered++;
        } else {
            if (dup)
                p->c.duplicated++;
            if (u_reorder < r->th_reorder) {
                if (hold(r, port_in, mask, buf, len, dup, now))
                    p->c.reordered++;
                else {
                    p->c.hold_full++;
                    emit(r, mask, buf, len, dup);
                }
            } else {
                emit(r, mask, buf, len, dup);
            }
        }
    }
    if (r->nactive)
        release_due_by_count(r, port_in);
}

/* One recvmmsg on a port and the forwarding of what it returned. Returns frames or -errno. */
static int pump_port(struct l2f_relay *r, uint32_t port_in, uint64_t now)
{
    struct relay_port *p = &r->ports[port_in];
    uint32_t b = r->cfg.batch, s = r->cfg.slot_size;
    for (uint32_t i = 0; i < b; i++) {
        r->rxiov[i].iov_base = r->arena + (size_t)i * s;
        r->rxiov[i].iov_len = s;
        memset(&r->rxmsgs[i].msg_hdr, 0, sizeof(r->rxmsgs[i].msg_hdr));
        r->rxmsgs[i].msg_hdr.msg_iov = &r->rxiov[i];
        r->rxmsgs[i].msg_hdr.msg_iovlen = 1;
        r->rxmsgs[i].msg_hdr.msg_name = &r->rxaddr[i];
        r->rxmsgs[i].msg_hdr.msg_namelen = sizeof(r->rxaddr[i]);
        r->rxmsgs[i].msg_len = 0;
    }
    /* MSG_TRUNC makes msg_len the frame's real length, so oversized frames are recognised. */
    int n = recvmmsg(p->fd, r->rxmsgs, b, MSG_DONTWAIT | MSG_TRUNC, NULL);
    if (n < 0) {
        int e = errno;
        return (e == EAGAIN || e == EWOULDBLOCK) ? 0 : -e;
    }
    for (int i = 0; i < n; i++) {
        const struct msghdr *mh = &r->rxmsgs[i].msg_hdr;
        uint32_t len = r->rxmsgs[i].msg_len;
        if (mh->msg_namelen >= sizeof(struct sockaddr_ll) &&
            r->rxaddr[i].sll_pkttype == PACKET_OUTGOING)
            continue; /* our own transmission, on kernels without PACKET_IGNORE_OUTGOING */
        if (len > s || (mh->msg_flags & MSG_TRUNC) || len < 14) {
            p->c.truncated++;
            continue;
        }
        process_frame(r, port_in, r->arena + (size_t)i * s, len, now);
    }
    flush_all(r);
    return n;
}

int l2f_relay_release_held(struct l2f_relay *r)
{
    if (r == NULL)
        return -L2F_E_ARG;
    int n = (int)r->nactive;
    while (r->nactive)
        release_slot(r, 0);
    flush_all(r);
    return n;
}

/* Add the kernel's receive drops (PACKET_STATISTICS resets on read) to the port counters. */
static void collect_kernel_drops(struct l2f_relay *r)
{
    for (uint32_t i = 0; i < r->nports; i++) {
        struct tpacket_stats st;
        socklen_t len = sizeof(st);
        memset(&st, 0, sizeof(st));
        if (getsockopt(r->ports[i].fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0)
            r->ports[i].c.kernel_drops += st.tp_drops;
    }
}

int l2f_relay_run(struct l2f_relay *r, int32_t duration_ms)
{
    if (r == NULL || duration_ms < 0)
        return -L2F_E_ARG;
    if (r->nports == 0)
        return -L2F_E_ARG;
    if (duration_ms > L2F_RELAY_MAX_RUN_MS)
        duration_ms = L2F_RELAY_MAX_RUN_MS;
    struct pollfd pfds[L2F_RELAY_MAX_PORTS];
    for (uint32_t i = 0; i < r->nports; i++) {
        pfds[i].fd = r->ports[i].fd;
        pfds[i].events = POLLIN;
        pfds[i].revents = 0;
    }
    uint64_t start = now_ns();
    uint64_t end = start + (uint64_t)duration_ms * UINT64_C(1000000);
    int64_t total = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (r->nactive) {
            release_due_by_time(r, now);
            flush_all(r);
        }
        int64_t wait_ns = (now < end) ? (int64_t)(end - now) : 0;
        for (uint32_t i = 0; i < r->nactive; i++) {
            uint64_t d = r->held[r->active[i]].deadline_ns;
            int64_t until = (d > now) ? (int64_t)(d - now) : 0;
            if (until < wait_ns)
                wait_ns = until;
        }
        /* Round up so a deadline less than 1 ms away does not turn into a busy loop. */
        int timeout_ms = (int)((wait_ns + 999999) / 1000000);
        int ready = poll(pfds, r->nports, timeout_ms);
        if (ready < 0) {
            int e = errno;
            collect_kernel_drops(r);
            return e == EINTR ? (int)total : -e;
        }
        now = now_ns(); /* poll may have slept: hold deadlines count from the frames' arrival */
        for (uint32_t i = 0; ready > 0 && i < r->nports; i++) {
            if (pfds[i].revents & POLLNVAL)
                return -EBADF;
            if (pfds[i].revents & POLLERR) {
                /* A pending socket error (the link went down for a moment): reading it clears
                 * it; the relay keeps going and the frames still queued are read below. */
                int err = 0;
                socklen_t errlen = sizeof(err);
                (void)getsockopt(pfds[i].fd, SOL_SOCKET, SO_ERROR, &err, &errlen);
            }
            if (!(pfds[i].revents & POLLIN))
                continue;
            /* Drain up to a few batches per port before looking at the others, so that one busy
             * direction cannot starve the other. */
            for (int round = 0; round < 4; round++) {
                int got = pump_port(r, i, now);
                if (got < 0) {
                    collect_kernel_drops(r);
                    return got;
                }
                total += got;
                if ((uint32_t)got < r->cfg.batch)
                    break;
                now = now_ns();
            }
        }
        if (now_ns() >= end)
            break;
        if (total > 1000000000)
            break; /* keep the return value far from INT_MAX */
    }
    collect_kernel_drops(r);
    return (int)total;
}
