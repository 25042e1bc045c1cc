/*
 * Batched AF_PACKET I/O: one SOCK_RAW socket per interface and EtherType, frames moved with
 * sendmmsg/recvmmsg so one system call carries many frames (FACTS.md: ~2 us fixed cost per frame,
 * and one cffi call costs ~160 ns, so batching is what makes the data path cheap).
 * No function here prints, exits or allocates; errors are negative errno values.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/filter.h>
#include <linux/if_packet.h>

#include "echo.h"
#include "l2fast_core.h"

/* Frames per sendmmsg/recvmmsg call: bounded so the message arrays live on the stack (~13 KiB)
 * and stay below the kernel's UIO_MAXIOV (1024) cap on vlen. */
#define CHUNK 128

/* Largest frame we hand to or accept from the kernel: Ethernet header + the largest MTU. */
#define MAX_FRAME (L2F_ETH_HLEN + 65535u)

static int copy_ifname(char dst[IFNAMSIZ], const char *ifname)
{
    if (!ifname)
        return -L2F_E_ARG;
    size_t n = strnlen(ifname, IFNAMSIZ);
    /* An empty name or one that does not fit IFNAMSIZ cannot name an interface. */
    if (n == 0 || n >= IFNAMSIZ)
        return -ENODEV;
    memcpy(dst, ifname, n + 1);
    return 0;
}

/* The interface ioctls only need some socket in the caller's network namespace; an AF_UNIX one
 * needs no privilege and touches no network stack. */
static int if_info_fd(int fd, const char *ifname, struct l2f_ifinfo *out)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    int rc = copy_ifname(ifr.ifr_name, ifname);
    if (rc)
        return rc;

    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0)
        return -errno;
    out->ifindex = ifr.ifr_ifindex;
    if (ioctl(fd, SIOCGIFMTU, &ifr) < 0)
        return -errno;
    out->mtu = ifr.ifr_mtu;
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        return -errno;
    /* IFF_RUNNING means carrier: a veth whose peer is down is up but cannot carry frames. */
    out->is_up = (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING);
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
        return -errno;
    memcpy(out->mac, ifr.ifr_hwaddr.sa_data, sizeof out->mac);
    return 0;
}

int l2f_if_info(const char *ifname, struct l2f_ifinfo *out)
{
    if (!out)
        return -L2F_E_ARG;
    memset(out, 0, sizeof *out);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = if_info_fd(fd, ifname, out);
    close(fd);
    return rc;
}

/* Large buffers keep bursts from being dropped (the default ~212 KB holds ~100 full frames).
 * The FORCE variant needs CAP_NET_ADMIN; without it the plain option still raises the buffer up
 * to net.core.{w,r}mem_max, which is better than nothing, so neither failure is fatal. */
static void set_buf(int fd, int force_opt, int opt, int32_t size)
{
    if (size <= 0)
        return;
    int v = size;
    if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof v) == 0)
        return;
    (void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v);
}

int l2f_sock_open(const char *ifname, uint16_t ethertype, int32_t sndbuf, int32_t rcvbuf,
                  int32_t qdisc_bypass, struct l2f_ifinfo *info)
{
    if (!info)
        return -L2F_E_ARG;
    /* Interface checks first: they need no privilege, so an unknown or down interface is
     * reported as such even to an unprivileged user. */
    int rc = l2f_if_info(ifname, info);
    if (rc)
        return rc;
    if (!info->is_up)
        return -ENETDOWN;

    /* Protocol 0 at socket() so nothing is queued before bind() narrows reception to our
     * interface and EtherType (never ETH_P_ALL, which would also tap every transmitted frame). */
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;

    if (qdisc_bypass) {
        int one = 1;
        /* Optional speed-up (skips the qdisc layer); a kernel without it still works. */
        (void)setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    }
    set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf);
    set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf);

    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ethertype);
    sll.sll_ifindex = info->ifindex;
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int l2f_send_batch(int32_t fd, int32_t ifindex, const struct l2f_txdesc *descs, uint32_t n)
{
    if (n == 0)
        return 0;
    if (!descs || n > INT32_MAX || fd < 0)
        return -L2F_E_ARG;
    for (uint32_t i = 0; i < n; i++) {
        const struct l2f_txdesc *d = &descs[i];
        if ((!d->hdr && d->hdr_len) || (!d->payload && d->payload_len))
            return -L2F_E_ARG;
        if ((uint64_t)d->hdr_len + d->payload_len > MAX_FRAME)
            return -L2F_E_TOOBIG;
    }

    /* sll_protocol 0: the kernel takes the EtherType from the frame's own header. */
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex;

    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK][2];
    uint32_t sent = 0;
    while (sent < n) {
        uint32_t k = n - sent < CHUNK ? n - sent : CHUNK;
        memset(msgs, 0, sizeof(msgs[0]) * k);
        for (uint32_t j = 0; j < k; j++) {
            const struct l2f_txdesc *d = &descs[sent + j];
            /* The iovec API takes non-const pointers but sendmsg never writes through them. */
            iov[j][0].iov_base = (void *)(uintptr_t)d->hdr;
            iov[j][0].iov_len = d->hdr_len;
            iov[j][1].iov_base = (void *)(uintptr_t)d->payload;
            iov[j][1].iov_len = d->payload_len;
            msgs[j].msg_hdr.msg_name = &sll;
            msgs[j].msg_hdr.msg_namelen = sizeof sll;
            msgs[j].msg_hdr.msg_iov = iov[j];
            msgs[j].msg_hdr.msg_iovlen = d->payload_len ? 2 : 1;
        }
        int r = sendmmsg(fd, msgs, k, MSG_DONTWAIT);
        if (r < 0) {
            /* Frames already taken count as success; the caller resends the rest later. */
            return sent ? (int)sent : -errno;
        }
        sent += (uint32_t)r;
        if ((uint32_t)r < k)
            break; /* the queue filled up part-way: report what was taken */
    }
    return (int)sent;
}

int l2f_sock_rx_timestamps(int32_t fd, int32_t on)
{
    if (fd < 0)
        return -EBADF;
    int v = on ? 1 : 0;
    return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &v, sizeof v) < 0 ? -errno : 0;
}

/* The SCM_TIMESTAMPNS of one received message in ns since the epoch, or 0 when it has none. */
static int64_t rx_stamp(struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
        }
    }
    return 0;
}

int l2f_recv_batch(int32_t fd, uint8_t *arena, size_t arena_len, uint32_t slot_size,
                   uint32_t max_frames, uint32_t *lens, int64_t *stamps, int32_t timeout_ms)
{
    if (max_frames == 0)
        return 0;
    if (!arena || !lens || slot_size == 0 || max_frames > INT32_MAX || fd < 0)
        return -L2F_E_ARG;
    if ((uint64_t)max_frames * slot_size > (uint64_t)arena_len)
        return -L2F_E_ARG;

    if (timeout_ms != 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN, .revents = 0};
        int pr = poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms);
        if (pr < 0)
            return -errno;
        if (pr == 0)
            return 0;
        /* On POLLERR the recvmmsg below reports the pending socket error. */
    }

    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    /* Room for one SCM_TIMESTAMPNS per message (only asked for when stamps is given); the
     * union aligns it for cmsghdr. */
    union {
        char buf[CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } ctrl[CHUNK];
    uint32_t got = 0;
    while (got < max_frames) {
        uint32_t k = max_frames - got < CHUNK ? max_frames - got : CHUNK;
        memset(msgs, 0, sizeof(msgs[0]) * k);
        for (uint32_t j = 0; j < k; j++) {
            iov[j].iov_base = arena + (size_t)(got + j) * slot_size;
            iov[j].iov_len = slot_size;
            msgs[j].msg_hdr.msg_iov = &iov[j];
            msgs[j].msg_hdr.msg_iovlen = 1;
            if (stamps) {
                msgs[j].msg_hdr.msg_control = ctrl[j].buf;
                msgs[j].msg_hdr.msg_controllen = sizeof ctrl[j].buf;
            }
        }
        /* MSG_TRUNC on a packet socket makes msg_len the frame's real length even when it did
         * not fit the slot, so the parser sees that the frame was cut. */
        int r = recvmmsg(fd, msgs, k, MSG_DONTWAIT | MSG_TRUNC, NULL);
        if (r < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK)
                break;
            return got ? (int)got : -e;
        }
        for (int j = 0; j < r; j++) {
            lens[got + (uint32_t)j] = msgs[j].msg_len;
            if (stamps)
                stamps[got + (uint32_t)j] = rx_stamp(&msgs[j].msg_hdr);
        }
        got += (uint32_t)r;
        if ((uint32_t)r < k)
            break; /* queue drained */
    }
    return (int)got;
}

int l2f_sock_stats(int32_t fd, uint64_t *packets, uint64_t *drops)
{
    if (!packets || !drops)
        return -L2F_E_ARG;
    struct tpacket_stats st;
    socklen_t sl = sizeof st;
    memset(&st, 0, sizeof st);
    if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) < 0)
        return -errno;
    *packets = st.tp_packets;
    *drops = st.tp_drops;
    return 0;
}

/* Frame offsets the filters read (PROTOCOL.md §Header: type is header byte 3, session bytes
 * 8..11 big-endian, after the 14-byte Ethernet header). */
#define FILTER_MAGIC_OFF (L2F_ETH_HLEN + 0)
#define FILTER_TYPE_OFF (L2F_ETH_HLEN + 3)
#define FILTER_SESSION_OFF (L2F_ETH_HLEN + 8)
#define FILTER_ACCEPT 0x40000u /* bytes kept: more than the largest frame */
#define FRAME_DATA 0x20
#define FRAME_FEEDBACK 0x21
#define FILTER_CONTROL_HEAD 11 /* instructions before the session list */
#define FILTER_ECHO_LEN 7      /* instructions that drop the echo responder's PINGs:
                                  PING_TEST_LEN, the drop and the type reload */
#define FRAME_PING 0x38

int l2f_sock_filter(int32_t fd, int32_t mode, uint32_t session)
{
    if (fd < 0)
        return -EBADF;
    if (mode == L2F_FILTER_NONE) {
        int dummy = 0;
        if (setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &dummy, sizeof dummy) < 0 &&
            errno != ENOENT)
            return -errno;
        return 0;
    }
    /* The control socket gives bulk frames to the data-path processes, but nothing else may
     * vanish in the kernel: a frame too short to hold a header, or one without l2fast's magic,
     * is accepted so that the parser drops and COUNTS it (short, bad_magic...).  Only frames
     * that look like l2fast DATA or FEEDBACK are dropped here.  (A BPF load past the end of the
     * frame would abort the program and silently drop the frame: the length test comes first.) */
    struct sock_filter control[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, L2F_FRAME_OVERHEAD, 0, 5),
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, FILTER_MAGIC_OFF),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, L2F_MAGIC, 0, 3),
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, FILTER_TYPE_OFF),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FRAME_DATA, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FRAME_FEEDBACK, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, FILTER_ACCEPT),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    uint32_t type = mode == L2F_FILTER_DATA ? FRAME_DATA : FRAME_FEEDBACK;
    struct sock_filter one_session[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, FILTER_TYPE_OFF),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, type, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, FILTER_SESSION_OFF), /* loaded in network order */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, session, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, FILTER_ACCEPT),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_filter reject[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
    struct sock_fprog prog;
    if (mode == L2F_FILTER_REJECT) {
        prog.len = 1;
        prog.filter = reject;
    } else if (mode == L2F_FILTER_CONTROL) {
        prog.len = sizeof control / sizeof control[0];
        prog.filter = control;
    } else if (mode == L2F_FILTER_DATA || mode == L2F_FILTER_FEEDBACK) {
        prog.len = sizeof one_session / sizeof one_session[0];
        prog.filter = one_session;
    } else {
        return -L2F_E_ARG;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
        return -errno;
    return 0;
}

/* A MAC as the two loads a filter compares it with: bytes 0..3 and 4..5, in network order. */
static uint32_t mac_high(const uint8_t *mac)
{
    return (uint32_t)mac[0] << 24 | (uint32_t)mac[1] << 16 | (uint32_t)mac[2] << 8 | mac[3];
}

static uint32_t mac_low(const uint8_t *mac)
{
    return (uint32_t)mac[4] << 8 | mac[5];
}

/* "A PING addressed to mac", the frame's type already in A: the one encoding of that test
 * that the responder's filter, the controller's filter and the fanout program share, so that
 * they always agree on which frames are the responder's (each PING answered and counted
 * once).  Writes PING_TEST_LEN instructions to p that fall through on a match; a frame of
 * another type jumps `not_ping` instructions past them (with A still its type), a PING for
 * another MAC `other_mac` past them.  The MAC is loaded from mac_off (0 in a socket filter,
 * which sees the Ethernet header; SKF_LL_OFF in the fanout program). */
#define PING_TEST_LEN 5
static uint32_t put_ping_test(struct sock_filter *p, uint32_t mac_off, const uint8_t *mac,
                              uint8_t not_ping, uint8_t other_mac)
{
    const struct sock_filter test[PING_TEST_LEN] = {
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FRAME_PING, 0, (uint8_t)(4 + not_ping)),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, mac_off), /* destination MAC bytes 0..3 */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mac_high(mac), 0, (uint8_t)(2 + other_mac)),
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, mac_off + 4), /* bytes 4..5 */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mac_low(mac), 0, other_mac),
    };
    memcpy(p, test, sizeof test);
    return PING_TEST_LEN;
}

/* The controller's filter (l2f_sock_filter_control, and l2f_sock_filter_control_echo when a C
 * echo responder serves the node).  With echo_mac, PINGs at least a header long addressed to it
 * are dropped: the responder's socket takes exactly those (l2f_sock_filter_echo).  With
 * all_bulk, every DATA and FEEDBACK is dropped; otherwise those of the n sessions only. */
static int attach_control_filter(int32_t fd, const uint32_t *sessions, uint32_t n, int all_bulk,
                                 const uint8_t *echo_mac)
{
    if (fd < 0)
        return -EBADF;
    if (n > L2F_FILTER_MAX_SESSIONS || (n > 0 && !sessions))
        return -L2F_E_ARG;
    /* Each session costs a compare and a return, so every jump is at most one instruction
     * forward (classic BPF jump offsets are 8 bits). */
    struct sock_filter prog_buf[FILTER_CONTROL_HEAD + FILTER_ECHO_LEN + 2 * L2F_FILTER_MAX_SESSIONS +
                                2];
    struct sock_filter head[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, L2F_FRAME_OVERHEAD, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, FILTER_ACCEPT), /* too short for a header: the parser counts */
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, FILTER_MAGIC_OFF),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, L2F_MAGIC, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, FILTER_ACCEPT), /* no magic: the parser counts bad_magic */
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, FILTER_TYPE_OFF),
    };
    uint32_t len = 0;
    for (size_t i = 0; i < sizeof head / sizeof head[0]; i++)
        prog_buf[len++] = head[i];
    if (echo_mac) {
        /* The responder's PINGs: dropped here (it takes them); anything else goes on to the
         * type reload after the drop (the MAC loads replaced A). */
        len += put_ping_test(&prog_buf[len], 0, echo_mac, 1, 1);
        struct sock_filter drop_ping = BPF_STMT(BPF_RET | BPF_K, 0);
        struct sock_filter reload = BPF_STMT(BPF_LD | BPF_B | BPF_ABS, FILTER_TYPE_OFF);
        prog_buf[len++] = drop_ping;
        prog_buf[len++] = reload;
    }
    struct sock_filter bulk[] = {
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FRAME_DATA, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FRAME_FEEDBACK, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, FILTER_ACCEPT), /* neither DATA nor FEEDBACK */
    };
    for (size_t i = 0; i < sizeof bulk / sizeof bulk[0]; i++)
        prog_buf[len++] = bulk[i];
    struct sock_filter drop = BPF_STMT(BPF_RET | BPF_K, 0);
    if (all_bulk) {
        prog_buf[len++] = drop;
    } else {
        struct sock_filter load_session = BPF_STMT(BPF_LD | BPF_W | BPF_ABS, FILTER_SESSION_OFF);
        prog_buf[len++] = load_session; /* in network order */
        for (uint32_t i = 0; i < n; i++) {
            struct sock_filter cmp = BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, sessions[i], 0, 1);
            prog_buf[len++] = cmp;
            prog_buf[len++] = drop;
        }
        struct sock_filter accept = BPF_STMT(BPF_RET | BPF_K, FILTER_ACCEPT);
        prog_buf[len++] = accept;
    }
    struct sock_fprog prog = {.len = (unsigned short)len, .filter = prog_buf};
    /* SO_ATTACH_FILTER swaps the program atomically: no frame sees the socket unfiltered. */
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
        return -errno;
    return 0;
}

int l2f_sock_filter_control(int32_t fd, const uint32_t *sessions, uint32_t n)
{
    /* Like L2F_FILTER_CONTROL, except that only DATA and FEEDBACK of the listed sessions (the
     * ones whose frames data-path sockets consume) are dropped; those of any other session
     * reach the controller, which counts them. */
    return attach_control_filter(fd, sessions, n, 0, NULL);
}

int l2f_sock_filter_echo(int32_t fd, const uint8_t *mac)
{
    if (fd < 0)
        return -EBADF;
    if (!mac)
        return -L2F_E_ARG;
    /* Exactly the set attach_control_filter's echo block drops (so each frame is counted
     * once): a PING at least a header long, with l2fast's magic, addressed to mac.  The
     * length and magic tests jump to "drop", the last instruction, unless taken. */
    struct sock_filter prog[5 + PING_TEST_LEN + 2] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, L2F_FRAME_OVERHEAD, 0, PING_TEST_LEN + 4),
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, FILTER_MAGIC_OFF),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, L2F_MAGIC, 0, PING_TEST_LEN + 2),
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, FILTER_TYPE_OFF),
    };
    uint32_t len = 5;
    len += put_ping_test(&prog[len], 0, mac, 1, 1);
    prog[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, FILTER_ACCEPT);
    prog[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0); /* drop */
    struct sock_fprog fprog = {.len = (unsigned short)len, .filter = prog};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) < 0)
        return -errno;
    return 0;
}

int l2f_sock_filter_control_echo(int32_t fd, const uint32_t *sessions, uint32_t n,
                                 int32_t all_bulk, const uint8_t *mac)
{
    if (!mac)
        return -L2F_E_ARG;
    return attach_control_filter(fd, sessions, n, all_bulk != 0, mac);
}

/* ---- one fanout group for a receiving node's sockets ---- */

int l2f_fanout_create(int32_t fd)
{
    if (fd < 0)
        return -EBADF;
    /* Id 0 with UNIQUEID: the kernel picks an id no group in this network namespace uses, so
     * the daemon never joins some other program's group by accident. */
    int v = (PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
    if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &v, sizeof v) < 0)
        return -errno;
    int got = 0;
    socklen_t len = sizeof got;
    if (getsockopt(fd, SOL_PACKET, PACKET_FANOUT, &got, &len) < 0)
        return -errno;
    return got & 0xffff;
}

int l2f_fanout_join(int32_t fd, uint32_t id)
{
    if (fd < 0)
        return -EBADF;
    if (id > 0xffff)
        return -L2F_E_ARG;
    int v = (int)(id | (uint32_t)PACKET_FANOUT_CBPF << 16);
    return setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &v, sizeof v) < 0 ? -errno : 0;
}

/* The demultiplexing program runs on the skb as the receive path holds it, its data at the
 * network header: the l2fast header starts at offset 0 and the length excludes the Ethernet
 * header; the destination MAC is read through SKF_LL_OFF. A load past the end ends the program
 * with 0, which is member 0, the controller: a malformed frame always lands there. */
#define DEMUX_MAGIC_OFF (FILTER_MAGIC_OFF - L2F_ETH_HLEN)
#define DEMUX_TYPE_OFF (FILTER_TYPE_OFF - L2F_ETH_HLEN)
#define DEMUX_SESSION_OFF (FILTER_SESSION_OFF - L2F_ETH_HLEN)
#define DEMUX_HEAD 7 /* length, magic and type tests */
#define DEMUX_ECHO (PING_TEST_LEN + 2)
#define DEMUX_BULK 4

int l2f_fanout_route(int32_t fd, const uint32_t *sessions, const uint32_t *members, uint32_t n,
                     uint32_t echo_member, const uint8_t *mac)
{
    if (fd < 0)
        return -EBADF;
    if (n > L2F_FANOUT_MAX_ROUTES || (n > 0 && (!sessions || !members)) ||
        (echo_member > 0 && !mac))
        return -L2F_E_ARG;
    struct sock_filter prog[DEMUX_HEAD + DEMUX_ECHO + DEMUX_BULK + 2 * L2F_FANOUT_MAX_ROUTES + 1];
    uint32_t len = 0;
    const struct sock_filter to_control = BPF_STMT(BPF_RET | BPF_K, 0);
    struct sock_filter head[DEMUX_HEAD] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, L2F_FRAME_OVERHEAD - L2F_ETH_HLEN, 1, 0),
        to_control,
        BPF_STMT(BPF_LD | BPF_H | BPF_ABS, DEMUX_MAGIC_OFF),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, L2F_MAGIC, 1, 0),
        to_control,
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, DEMUX_TYPE_OFF),
    };
    for (uint32_t i = 0; i < DEMUX_HEAD; i++)
        prog[len++] = head[i];
    if (echo_member > 0) {
        /* A PING for this node to the responder; one for another MAC to the controller, which
         * counts it; anything else on to the bulk tests, with the type still in A. */
        len += put_ping_test(&prog[len], (uint32_t)SKF_LL_OFF, mac, 2, 1);
        struct sock_filter to_echo = BPF_STMT(BPF_RET | BPF_K, echo_member);
        prog[len++] = to_echo;
        prog[len++] = to_control;
    }
    struct sock_filter bulk[DEMUX_BULK] = {
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FRAME_DATA, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FRAME_FEEDBACK, 1, 0),
        to_control,
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, DEMUX_SESSION_OFF), /* in network order */
    };
    for (uint32_t i = 0; i < DEMUX_BULK; i++)
        prog[len++] = bulk[i];
    for (uint32_t i = 0; i < n; i++) {
        struct sock_filter cmp = BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, sessions[i], 0, 1);
        struct sock_filter ret = BPF_STMT(BPF_RET | BPF_K, members[i]);
        prog[len++] = cmp;
        prog[len++] = ret;
    }
    prog[len++] = to_control;
    struct sock_fprog fprog = {.len = (unsigned short)len, .filter = prog};
    if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT_DATA, &fprog, sizeof fprog) < 0)
        return -errno;
    return 0;
}

int l2f_sock_take_error(int32_t fd)
{
    if (fd < 0)
        return -EBADF;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return err;
}

int l2f_sock_filter_len(int32_t fd)
{
    if (fd < 0)
        return -EBADF;
    /* SO_GET_FILTER counts in instructions: asked with a length of 0, it stores the filter's
     * length there and copies nothing (any other length is an array the kernel fills). */
    socklen_t len = 0;
    if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &len) < 0)
        return -errno;
    return (int)len;
}

int l2f_close(int32_t fd)
{
    if (fd < 0)
        return -EBADF;
    /* Linux releases the descriptor even when close fails, so it must never be retried. */
    return close(fd) < 0 ? -errno : 0;
}

const char *l2f_strerror(int32_t code)
{
    if (code < 0)
        code = -code;
    switch (code) {
    case 0:
        return "success";
    case L2F_E_ARG:
        return "invalid argument to the l2fast core";
    case L2F_E_TOOBIG:
        return "frame or payload larger than the protocol allows";
    default:
        break;
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    /* strerrordesc_np returns a static string (thread-safe, unlike strerror's unknown-code
     * buffer) or NULL for codes it does not know. */
    const char *s = strerrordesc_np(code);
    return s ? s : "unknown error";
#else
    /* Other C libraries: the codes this library itself produces. */
    switch (code) {
    case EPERM: return "Operation not permitted";
    case EACCES: return "Permission denied";
    case ENODEV: return "No such device";
    case ENETDOWN: return "Network is down";
    case ENOBUFS: return "No buffer space available";
    case EAGAIN: return "Resource temporarily unavailable";
    case EINTR: return "Interrupted system call";
    case EINVAL: return "Invalid argument";
    case EMSGSIZE: return "Message too long";
    case EBADF: return "Bad file descriptor";
    case ENOMEM: return "Cannot allocate memory";
    case ENXIO: return "No such device or address";
    default: return "unknown error";
    }
#endif
}
