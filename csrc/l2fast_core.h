/*
 * l2fast C core: the per-frame hot path (CRC32C, header build/parse, batched AF_PACKET I/O).
 *
 * The block between CDEF-BEGIN and CDEF-END is read verbatim by csrc/build_ffi.py as the cffi
 * cdef, so it must stay plain C declarations (no #include, no #if, no macros other than integer
 * #defines).  Wire layout: docs/PROTOCOL.md.
 *
 * Conventions: functions return >= 0 on success and a negative errno-style code on failure; the
 * library never prints, never exits and never allocates on the per-frame path.
 */
#ifndef L2FAST_CORE_H
#define L2FAST_CORE_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
#define L2F_ETH_HLEN 14
#define L2F_HDR_LEN 24
#define L2F_FRAME_OVERHEAD 38
#define L2F_MAGIC 0x4C32
#define L2F_VERSION 1
#define L2F_MAX_PAYLOAD 65511
#define L2F_DEFAULT_ETHERTYPE 0x88B5

/* Where l2fast places bulk frames in its own memory (docs/ARCHITECTURE.md "Copy alignment").
 * The kernel copies between user memory and socket buffers with `rep movsb`, which on this
 * machine's AMD EPYC runs ~16x slower when the destination is 1..31 bytes ahead of the source
 * modulo 4096 (bench/movsb_probe.sh).  A frame longer than a page leaves packet_snd() with
 * everything after its Ethernet header in page-aligned fragments, so:
 *   L2F_FRAME_PHASE: a whole frame (sent or received) starts at this offset modulo 64, which
 *     puts its byte 14 on a 64-byte line and every such copy at a distance that is a multiple
 *     of 64;
 *   L2F_PAYLOAD_PAGE_OFFSET: a payload sent after its separate 38-byte header starts at this
 *     offset modulo 4096 (24 modulo 64, as byte 24 after the Ethernet header; 88 rather than 24
 *     because a frame below a page is copied into a linear skb head 16 bytes in, where a payload
 *     at 24 would sit 30 bytes behind for half of the heads: -6 % at MTU 1500). */
#define L2F_FRAME_PHASE 50
#define L2F_PAYLOAD_PAGE_OFFSET 88

/* Verdicts of l2f_parse_frame / l2f_parse_batch, in the order PROTOCOL.md §Receiving applies them. */
#define L2F_V_OK 0
#define L2F_V_SHORT 1
#define L2F_V_ETHERTYPE 2
#define L2F_V_BAD_MAGIC 3
#define L2F_V_BAD_VERSION 4
#define L2F_V_BAD_LENGTH 5
#define L2F_V_BAD_CRC 6
#define L2F_V_UNKNOWN_TYPE 7
#define L2F_V_COUNT 8

/* Error codes beyond errno (negated when returned). */
#define L2F_E_ARG 1001
#define L2F_E_TOOBIG 1002

/* Which fields a parse fills (the pure-Python codec, l2fast/wire/header.py, does the same):
 *   - everything starts at 0;
 *   - dst = frame[0..5] when len >= 6, src = frame[6..11] when len >= 12, whatever the verdict
 *     (the Python binding reports a MAC the frame does not hold as b"", not as zeros);
 *   - SHORT, ETHERTYPE, BAD_MAGIC: nothing else -- until the magic matches, the bytes are not
 *     known to be an l2fast header;
 *   - BAD_VERSION, BAD_LENGTH, BAD_CRC, UNKNOWN_TYPE, OK: every header field as on the wire
 *     (type, version, flags, session, seq, payload_len) and payload_off = 38; for BAD_LENGTH
 *     payload_len is the claimed length that does not fit. */
struct l2f_frame_info {
    int32_t verdict;        /* L2F_V_* */
    uint8_t type;
    uint8_t version;
    uint16_t flags;
    uint32_t session;
    uint64_t seq;
    uint32_t payload_off;   /* offset of the payload from the start of the frame (38) */
    uint32_t payload_len;
    uint8_t dst[6];
    uint8_t src[6];
};

struct l2f_ifinfo {
    int32_t ifindex;
    int32_t mtu;
    int32_t is_up;          /* IFF_UP and IFF_RUNNING */
    uint8_t mac[6];
};

/* One frame to transmit: an Ethernet+l2fast header (38 bytes) and a payload that may point into
 * a mapped file; sent as two iovecs so the payload is never copied in user space. */
struct l2f_txdesc {
    const uint8_t *hdr;
    uint32_t hdr_len;
    const uint8_t *payload;
    uint32_t payload_len;
};

/* ---- CRC32C (zlib calling convention: start with 0, feed the previous result back) ---- */
uint32_t l2f_crc32c(uint32_t crc, const uint8_t *buf, size_t len);     /* best available path */
uint32_t l2f_crc32c_sw(uint32_t crc, const uint8_t *buf, size_t len);  /* portable table path */
uint32_t l2f_crc32c_hw(uint32_t crc, const uint8_t *buf, size_t len);  /* SSE4.2, 3 lanes; only if l2f_crc32c_hw_available() */
int l2f_crc32c_hw_available(void);
uint32_t l2f_crc32c_fold(uint32_t crc, const uint8_t *buf, size_t len); /* VPCLMULQDQ folding + 3 crc32 lanes; only if l2f_crc32c_fold_available() */
int l2f_crc32c_fold_available(void);
uint32_t l2f_crc32c_fold128(uint32_t crc, const uint8_t *buf, size_t len); /* PCLMULQDQ (128-bit) folding alone; only if l2f_crc32c_fold128_available() */
int l2f_crc32c_fold128_available(void);
uint32_t l2f_crc32c_fold512(uint32_t crc, const uint8_t *buf, size_t len); /* the fold on zmm (AVX-512) + 3 crc32 lanes; only if l2f_crc32c_fold512_available() */
int l2f_crc32c_fold512_available(void);
int l2f_crc32c_best(void); /* path of l2f_crc32c: 0 table, 1 SSE4.2 3 lanes, 2 fold, 3 fold128, 4 fold512 (L2FAST_CRC32C caps it) */

/* ---- frame build / parse ---- */
/* Write a complete Ethernet + l2fast header (38 bytes) into out[0..37] for the given payload,
 * including the CRC over header and payload. Returns 38 or a negative code. */
int l2f_build_header(uint8_t *out, size_t out_len, const uint8_t *dst, const uint8_t *src,
                     uint16_t ethertype, uint8_t type, uint16_t flags, uint32_t session,
                     uint64_t seq, const uint8_t *payload, size_t payload_len);

/* Build n headers of one type/session into hdr_arena (38 bytes each), one per payload, with
 * seq[i] and payload[i]/payload_len[i]. Returns n or a negative code. */
int l2f_build_batch(uint8_t *hdr_arena, size_t arena_len, uint32_t n, const uint8_t *dst,
                    const uint8_t *src, uint16_t ethertype, uint8_t type, uint16_t flags,
                    uint32_t session, const uint64_t *seq, const uint8_t *const *payload,
                    const uint32_t *payload_len);

/* Parse and verify one frame (starting at the Ethernet header). Returns the verdict (>= 0) and
 * fills *out; out->verdict holds the same value. */
int l2f_parse_frame(const uint8_t *frame, size_t len, uint16_t ethertype,
                    struct l2f_frame_info *out);

/* Parse and verify n frames stored in an arena of fixed-size slots: frame i starts at
 * arena + i*slot_size and is lens[i] bytes long. lens[i] > slot_size means recv truncated the
 * frame: only its first slot_size bytes are parsed (so it is BAD_LENGTH unless its payload lies
 * within them). Needs n*slot_size <= arena_len. Fills out[0..n-1]; adds one to
 * counters[verdict] per frame (counters has L2F_V_COUNT entries, may be NULL).
 * Returns the number of frames with verdict L2F_V_OK, or a negative code. */
int l2f_parse_batch(const uint8_t *arena, size_t arena_len, uint32_t slot_size,
                    const uint32_t *lens, uint32_t n, uint16_t ethertype,
                    struct l2f_frame_info *out, uint64_t *counters);

/* 1 if the type is defined in PROTOCOL.md §Frame types. */
int l2f_type_known(uint8_t type);

/* ---- AF_PACKET socket ---- */
/* Look up an interface by name (needs no privilege). Returns 0, -ENODEV if it does not exist
 * (or the name cannot be one: empty or IFNAMSIZ bytes or longer), or another -errno. */
int l2f_if_info(const char *ifname, struct l2f_ifinfo *out);

/* Open a SOCK_RAW AF_PACKET socket bound to ifname and ethertype (protocol 0 -- transmit only --
 * when ethertype is 0), non-blocking, with PACKET_QDISC_BYPASS when qdisc_bypass is set and
 * SO_SNDBUFFORCE/SO_RCVBUFFORCE of the given sizes (falling back to the unforced option without
 * CAP_NET_ADMIN). Fills *info. Returns the fd or -errno (-EPERM/-EACCES without CAP_NET_RAW,
 * -ENODEV for an unknown interface, -ENETDOWN for an interface that is down). */
int l2f_sock_open(const char *ifname, uint16_t ethertype, int32_t sndbuf, int32_t rcvbuf,
                  int32_t qdisc_bypass, struct l2f_ifinfo *info);

/* Send n frames with sendmmsg (header and payload as separate iovecs), to ifindex. Returns the
 * number of frames the kernel took (possibly fewer than n), or -ENOBUFS / -EAGAIN when it took
 * none because its queue is full (backpressure: poll and retry), or another -errno. */
int l2f_send_batch(int32_t fd, int32_t ifindex, const struct l2f_txdesc *descs, uint32_t n);

/* Receive up to max_frames frames with recvmmsg into a caller-owned arena of fixed-size slots
 * (frame i at arena + i*slot_size, its length in lens[i]; longer frames are truncated and
 * reported with their full length, which the parser rejects). When stamps is not NULL,
 * stamps[i] is the kernel's receive time of frame i in ns since the epoch (CLOCK_REALTIME), or 0
 * when the socket does not deliver timestamps (see l2f_sock_rx_timestamps). Waits up to
 * timeout_ms (0: do not wait, -1: forever) for the first frame. Returns the number received, 0 on
 * timeout, or -errno (-EINTR when interrupted). */
int l2f_recv_batch(int32_t fd, uint8_t *arena, size_t arena_len, uint32_t slot_size,
                   uint32_t max_frames, uint32_t *lens, int64_t *stamps, int32_t timeout_ms);

/* Turn the kernel's receive timestamps (SO_TIMESTAMPNS) on or off for this socket: the time a
 * frame reached the stack, before any wake-up of the receiving process (what ping(8) measures
 * its round trips to). Returns 0 or -errno. */
int l2f_sock_rx_timestamps(int32_t fd, int32_t on);

/* Kernel counters from PACKET_STATISTICS since the last call (the kernel resets them on read);
 * packets counts every frame the socket saw, drops included. */
int l2f_sock_stats(int32_t fd, uint64_t *packets, uint64_t *drops);

/* Socket filters (classic BPF, SO_ATTACH_FILTER) so that every process sees only its frames:
 * every AF_PACKET socket bound to the EtherType receives a copy of every frame, and Python must
 * never run per DATA frame.
 *   L2F_FILTER_NONE      remove any filter;
 *   L2F_FILTER_CONTROL   drop DATA and FEEDBACK carrying l2fast's magic (the controller's
 *                        socket: the data-path processes consume them on their own
 *                        sockets); everything else, short or malformed frames too, passes;
 *   L2F_FILTER_DATA      accept only DATA of `session` (a receive process);
 *   L2F_FILTER_FEEDBACK  accept only FEEDBACK of `session` (a sender process);
 *   L2F_FILTER_REJECT    accept nothing (an idle socket of the receive pool).
 * The type is read at frame offset 17 and the session at 22 (big-endian u32); the DATA and
 * FEEDBACK filters drop a frame too short to hold them. Returns 0 or -errno. */
#define L2F_FILTER_NONE 0
#define L2F_FILTER_CONTROL 1
#define L2F_FILTER_DATA 2
#define L2F_FILTER_FEEDBACK 3
#define L2F_FILTER_REJECT 4
int l2f_sock_filter(int32_t fd, int32_t mode, uint32_t session);

/* The controller's filter, keyed on the sessions whose bulk frames are consumed elsewhere: as
 * L2F_FILTER_CONTROL, but only DATA and FEEDBACK carrying one of the n `sessions` are dropped;
 * DATA and FEEDBACK of every other session pass, so the controller can count them. At most
 * L2F_FILTER_MAX_SESSIONS sessions (the program stays below the kernel's 4096 instructions).
 * Replaces any filter atomically. Returns 0 or -errno (-L2F_E_ARG for too many). */
#define L2F_FILTER_MAX_SESSIONS 1024
int l2f_sock_filter_control(int32_t fd, const uint32_t *sessions, uint32_t n);

/* One PACKET_FANOUT_CBPF group for the sockets of a receiving node (the controller's, the
 * data path's and the PING responder's), so that the kernel hands each arriving frame to one
 * socket chosen by a demultiplexing program, instead of offering it to every socket bound to
 * the EtherType (each offer runs a filter in the softirq, and the socket offered a frame first
 * must clone it: about a fifth of a bulk receiver's sending core at MTU 1500, see
 * bench/extra_sockets.py).  Members are numbered in the order they joined; the kernel moves
 * the last member into the place of one that leaves, so the caller keeps members that may
 * leave at the end.  All members must be bound to the same interface and EtherType.
 *
 * l2f_fanout_create makes fd the first member (number 0) of a new group with a kernel-chosen
 * id, and returns that id (0..65535) or -errno.  l2f_fanout_join adds fd to group `id` as the
 * next member; returns 0 or -errno (-ENOSPC when the group is full). */
int l2f_fanout_create(int32_t fd);
int l2f_fanout_join(int32_t fd, uint32_t id);

/* Install the demultiplexing program of fd's group (replacing the previous one atomically):
 * DATA and FEEDBACK of sessions[i] go to member members[i] (n at most L2F_FANOUT_MAX_ROUTES);
 * with echo_member > 0, a PING at least a header long addressed to mac goes to that member
 * (exactly the frames l2f_sock_filter_echo keeps); everything else, and anything too short
 * to hold a header, goes to member 0, the controller, whose own filter treats it as if no
 * group existed.  Each member's own filter still runs on what it is handed.  A member number
 * at or above the group's size wraps around (the kernel takes it modulo the size).
 * Returns 0 or -errno (-L2F_E_ARG for bad arguments). */
#define L2F_FANOUT_MAX_ROUTES 64
int l2f_fanout_route(int32_t fd, const uint32_t *sessions, const uint32_t *members, uint32_t n,
                     uint32_t echo_member, const uint8_t *mac);

/* Take (and so clear) the socket's pending error: 0 when none, else the positive errno the next
 * call would have failed with (ENETDOWN after the link went down, ...), or -errno when the
 * query itself fails. */
int l2f_sock_take_error(int32_t fd);

/* Instructions of the classic-BPF filter attached to the socket (0 when none), or -errno. */
int l2f_sock_filter_len(int32_t fd);

int l2f_close(int32_t fd);

/* Static description of an error code (errno or L2F_E_*), never NULL. */
const char *l2f_strerror(int32_t code);
/* CDEF-END */

#endif
