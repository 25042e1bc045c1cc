/*
 * bench/txring_probe.c: does PACKET_TX_RING save the sending core its copy on a veth pair?
 *
 * The sending core is the bottleneck of `l2fast bench` at MTU 65535, and half of its time is
 * the kernel copying each payload from user memory into a fresh skb (BENCHMARKS.md).
 * PACKET_TX_RING hands the kernel frames in a ring shared with user space and, on a real NIC,
 * attaches the ring's pages to the skb instead of copying them. Whether that holds on veth
 * (where the skb crosses into another namespace and is orphaned before the receiver copies
 * it) is what this measures: a blast of same-size frames with sendmmsg from one buffer, or
 * from a TX ring, into a counting socket in the other namespace.
 *
 *   txring_probe recv SECONDS            count what arrives (prints Gbit/s, frames)
 *   txring_probe sendmmsg SECONDS LEN    blast LEN-byte frames, 16 per sendmmsg, taken in turn
 *                                        from 256 buffers 128 KiB apart (the ring's footprint)
 *   txring_probe txring SECONDS LEN      blast LEN-byte frames through a 256-frame TX ring
 *
 * Both senders print Gbit/s offered and the CPU seconds they used (user + system, which
 * includes the veth receive softirq that runs on the sending core). EtherType 0x88B6, so a
 * daemon of the lab is not disturbed. Used by bench/txring_probe.sh.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ETHERTYPE 0x88B6
#define MAX_FRAME 65549 /* MTU 65535 + the Ethernet header */
#define BATCH 16
#define RING_FRAMES 256
#define RING_SLOT (1u << 17) /* one frame per 128 KiB block: a frame never crosses a block */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int open_socket(void)
{
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETHERTYPE));
    if (fd < 0)
        die("socket (root needed)");
    int bytes = 8 << 20, one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes);
    (void)setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    struct sockaddr_ll addr = {.sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE)};
    addr.sll_ifindex = (int)if_nametoindex("eth0");
    if (addr.sll_ifindex == 0)
        die("eth0");
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    return fd;
}

/* A broadcast frame of `len` bytes: Ethernet header, then a fixed byte pattern. */
static void fill_frame(uint8_t *f, size_t len)
{
    static const uint8_t head[14] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x4c,
                                     0x32, 0x00, 0x00, 0x01, ETHERTYPE >> 8, ETHERTYPE & 0xff};
    memcpy(f, head, sizeof head);
    for (size_t i = sizeof head; i < len; i++)
        f[i] = (uint8_t)i;
}

static int do_recv(double seconds)
{
    int fd = open_socket();
    struct timeval wait = {1, 0}; /* stop once the sender has gone quiet for a second */
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    static uint8_t buf[BATCH][MAX_FRAME];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){buf[i], MAX_FRAME};
        msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    double first = 0, last = 0;
    long frames = 0, bytes = 0;
    for (;;) {
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            break;
        double t = now_s();
        if (first == 0) { /* time from the first batch's arrival: count what came after it */
            first = t;
        } else {
            for (int i = 0; i < n; i++)
                bytes += msgs[i].msg_len;
            frames += n;
        }
        last = t;
        if (t - first > seconds + 1)
            break;
    }
    double span = last - first;
    printf("recv: %.2f Gbit/s, %ld frames in %.2f s\n", span > 0 ? (double)bytes * 8 / span / 1e9 : 0.0,
           frames, span);
    return 0;
}

static int do_sendmmsg(double seconds, size_t len)
{
    int fd = open_socket();
    /* As many frames, as far apart, as in the TX ring: the same memory to copy from. */
    uint8_t *frames_mem = malloc((size_t)RING_FRAMES * RING_SLOT);
    if (!frames_mem)
        die("malloc");
    for (unsigned i = 0; i < RING_FRAMES; i++)
        fill_frame(frames_mem + (size_t)i * RING_SLOT, len);
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    long frames = 0;
    unsigned next = 0;
    double start = now_s(), cpu0 = cpu_s();
    while (now_s() - start < seconds) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){frames_mem + (size_t)((next + i) % RING_FRAMES) * RING_SLOT, len};
            msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0) {
            frames += n;
            next = (next + (unsigned)n) % RING_FRAMES;
        } else if (errno != ENOBUFS && errno != EAGAIN) {
            die("sendmmsg");
        }
    }
    double span = now_s() - start;
    printf("sendmmsg: %.2f Gbit/s offered, %.2f CPU s in %.2f s\n",
           (double)frames * (double)len * 8 / span / 1e9, cpu_s() - cpu0, span);
    return 0;
}

static int do_txring(double seconds, size_t len)
{
    int fd = open_socket();
    int version = TPACKET_V2;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0)
        die("PACKET_VERSION");
    struct tpacket_req req = {RING_SLOT, RING_FRAMES, RING_SLOT, RING_FRAMES};
    if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0)
        die("PACKET_TX_RING");
    size_t ring_bytes = (size_t)RING_SLOT * RING_FRAMES;
    uint8_t *ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED)
        die("mmap");
    /* Without PACKET_TX_HAS_OFF a frame's data starts right after the slot's header. */
    const size_t data_off = TPACKET2_HDRLEN - sizeof(struct sockaddr_ll);
    for (unsigned i = 0; i < RING_FRAMES; i++)
        fill_frame(ring + (size_t)i * RING_SLOT + data_off, len);
    long frames = 0;
    unsigned next = 0, queued = 0;
    double start = now_s(), cpu0 = cpu_s();
    while (now_s() - start < seconds) {
        struct tpacket2_hdr *slot = (void *)(ring + (size_t)next * RING_SLOT);
        uint32_t status = __atomic_load_n(&slot->tp_status, __ATOMIC_ACQUIRE);
        if (status == TP_STATUS_WRONG_FORMAT) {
            fprintf(stderr, "the kernel refused a %zu-byte frame\n", len);
            return 1;
        }
        if (status != TP_STATUS_AVAILABLE) { /* the ring is full: kick it, wait for room */
            if (send(fd, NULL, 0, MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != ENOBUFS)
                die("send");
            queued = 0;
            struct pollfd p = {fd, POLLOUT, 0};
            (void)poll(&p, 1, 1);
            continue;
        }
        slot->tp_len = (uint32_t)len; /* the payload is already in the slot, as in sendmmsg */
        __atomic_store_n(&slot->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
        frames++;
        next = (next + 1) % RING_FRAMES;
        if (++queued == BATCH) {
            if (send(fd, NULL, 0, MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != ENOBUFS)
                die("send");
            queued = 0;
        }
    }
    /* Hand the kernel what is still queued and wait until it took it all, inside the time. */
    if (send(fd, NULL, 0, 0) < 0 && errno != ENOBUFS)
        die("send");
    double span = now_s() - start;
    printf("txring: %.2f Gbit/s offered, %.2f CPU s in %.2f s\n",
           (double)frames * (double)len * 8 / span / 1e9, cpu_s() - cpu0, span);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s recv SECONDS | sendmmsg SECONDS LEN | txring SECONDS LEN\n",
                argv[0]);
        return 2;
    }
    double seconds = atof(argv[2]);
    size_t len = argc > 3 ? (size_t)atol(argv[3]) : MAX_FRAME;
    if (len < 60 || len > MAX_FRAME) {
        fprintf(stderr, "LEN must be 60..%d\n", MAX_FRAME);
        return 2;
    }
    if (!strcmp(argv[1], "recv"))
        return do_recv(seconds);
    if (!strcmp(argv[1], "sendmmsg"))
        return do_sendmmsg(seconds, len);
    if (!strcmp(argv[1], "txring"))
        return do_txring(seconds, len);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
