/*
 * l2fast echo responder: answers PINGs with PONGs from a C thread of the daemon, so the round
 * trip a peer measures never waits for Python or the GIL (issue 6).
 *
 * The block between CDEF-BEGIN and CDEF-END is read verbatim by csrc/build_ffi.py as part of the
 * cffi cdef: plain C declarations and integer #defines only.  (A header of its own, like
 * relay.h, so that the echo's declarations stay apart from the core's.)
 *
 * Conventions (as l2fast_core.h): functions return >= 0 on success and a negative errno-style
 * code on failure (l2f_strerror describes it); nothing prints, exits or allocates per frame.
 *
 * What a received frame goes through (l2f_echo_handle_frame), in the order NodeEngine.answer_ping
 * and the daemon's runner apply them (PROTOCOL.md §Receiving, §PING, PONG):
 *   1. the frame parser (l2f_parse_frame): any verdict but OK is counted under that verdict;
 *   2. not a PING: counted as not_ping (the socket filter lets only PINGs through, so the daemon
 *      never sees one);
 *   3. our own source MAC: own_frame; a group (multicast/broadcast) source: bad_source;
 *   4. not addressed to our MAC: not_for_us;
 *   5. a payload shorter than the PING header (ident + ts_ns, 12 bytes): bad_payload;
 *   6. the rate limits: a per-peer token bucket, then a global one (the per-peer check first, so
 *      a peer over its own share does not drain the global bucket): rate_limited;
 *   7. otherwise the frame is rewritten in place into its PONG (MACs swapped, type PONG, session
 *      0, flags 0, same seq, same payload, CRC32C recomputed) and sent at once.
 */
#ifndef L2FAST_ECHO_H
#define L2FAST_ECHO_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
#define L2F_ECHO_PEER_SLOTS 1024
#define L2F_ECHO_PING_HEADER 12
#define L2F_ECHO_MAX_BATCH 64

struct l2f_echo_config {
    uint8_t mac[6];           /* this node's MAC: PINGs must be addressed to it */
    uint16_t ethertype;
    uint32_t mtu;             /* the interface MTU: receive slots hold MTU + 14 + 18 bytes */
    uint32_t batch;           /* frames per recvmmsg (1..L2F_ECHO_MAX_BATCH) */
    int32_t qdisc_bypass;     /* PACKET_QDISC_BYPASS on the PONGs (off when a lab shapes the link) */
    double rate_per_peer;     /* PONGs per second to one peer, and its burst */
    double burst_per_peer;
    double rate_global;       /* PONGs per second in all, and the burst */
    double burst_global;
    uint64_t hash_seed;       /* keys the per-peer table (random, so a flood cannot aim) */
};

/* Totals since l2f_echo_new.  Only the responder's thread writes them; read them with
 * l2f_echo_counters (relaxed atomic loads: each value is exact, the set is not one instant). */
struct l2f_echo_counters {
    uint64_t rx;                        /* frames the responder's socket received */
    uint64_t accepted;                  /* valid PINGs that reached the decision (steps 3..7) */
    uint64_t answered;                  /* PONGs built */
    uint64_t tx;                        /* PONGs the kernel took */
    uint64_t tx_errors;                 /* PONGs the kernel refused (queue full, link down) */
    uint64_t rate_limited;
    uint64_t own_frame;
    uint64_t bad_source;
    uint64_t not_for_us;
    uint64_t bad_payload;
    uint64_t not_ping;
    uint64_t verdicts[8];               /* parse verdicts, indexed by L2F_V_* ([0], OK, unused) */
    uint64_t peers_evicted;             /* per-peer buckets handed to a new peer */
    uint64_t recv_errors;               /* failed receive calls (link down) */
    uint64_t wakeups;                   /* poll returns with frames waiting */
};

struct l2f_echo;

/* Validate cfg and allocate a responder with no socket (l2f_echo_handle_frame works at once;
 * tests and the fuzzer use it that way). Returns 0 and sets *out, or -L2F_E_ARG, -ENOMEM. */
int l2f_echo_new(const struct l2f_echo_config *cfg, struct l2f_echo **out);

/* Decide on one received frame of len bytes in buf (cap bytes writable), at now_ns (a monotonic
 * clock, for the rate limits), counting it as described above.  Returns the length of the PONG
 * now in buf[0..len) to send, or 0 for no reply.  Never reads or writes outside buf[0..cap).
 * Not thread-safe: only one thread (the responder's, or a test's) may call it. */
int l2f_echo_handle_frame(struct l2f_echo *e, uint8_t *buf, size_t len, size_t cap,
                          int64_t now_ns);

/* Open a raw socket on ifname (its filter attached before it is bound, so it never holds a
 * frame the filter would refuse: only PINGs addressed to cfg.mac, at least a header long) and
 * start the responder's thread (all signals blocked in it, so Python's handlers keep running
 * in the main thread).  Returns 0, or -EPERM/-EACCES (no CAP_NET_RAW), -ENODEV, -EALREADY (started
 * before), -L2F_E_ARG, or another -errno; on failure nothing is left open. */
int l2f_echo_start(struct l2f_echo *e, const char *ifname);

/* Copy the counters into *out. Safe while the thread runs. Returns 0 or -L2F_E_ARG. */
int l2f_echo_counters(const struct l2f_echo *e, struct l2f_echo_counters *out);

/* Kernel receive counters of the responder's socket since the previous call (PACKET_STATISTICS;
 * packets includes drops).  Returns 0, -ENOTCONN (not started) or -errno. */
int l2f_echo_sock_stats(struct l2f_echo *e, uint64_t *packets, uint64_t *drops);

/* Make the responder's socket the next member of the node's fanout group `id` (see
 * l2f_fanout_create in l2fast_core.h); the group's program must then route PINGs to it.
 * Returns 0, -ENOTCONN (not started) or -errno. */
int l2f_echo_join_fanout(struct l2f_echo *e, uint32_t id);

/* 1 while the thread runs (it ends only when stopped, or after a socket error it reports as
 * l2f_echo_exit_code). */
int l2f_echo_running(const struct l2f_echo *e);

/* Why the thread ended on its own: 0 (it did not), or the -errno of the failing call. */
int l2f_echo_exit_code(const struct l2f_echo *e);

/* Stop the thread (wake it through its eventfd, join it: bounded by one batch of frames) and
 * close its descriptors. Called in a process forked from the one that started the responder,
 * it only closes that process's copies of the descriptors: the thread lives in the parent
 * alone, and the eventfd is shared with it.  Calling it again does nothing. Returns 0. */
int l2f_echo_stop(struct l2f_echo *e);

/* Stop if needed and free; NULL is accepted. */
void l2f_echo_free(struct l2f_echo *e);

/* The responder's own socket filter: keep only PINGs at least a header long addressed to mac
 * (the set l2f_sock_filter_control_echo drops).  Defined in rawsock.c beside that filter, so
 * the two complementary programs are read together.  Returns 0 or -errno. */
int l2f_sock_filter_echo(int32_t fd, const uint8_t *mac);

/* The control socket's filter when this responder serves the node: as l2f_sock_filter_control
 * (drop DATA and FEEDBACK of the n listed sessions; with all_bulk set, drop every DATA and
 * FEEDBACK instead, as L2F_FILTER_CONTROL does), and also drop every frame the responder's
 * socket takes (a PING at least a header long addressed to mac), so each PING gets exactly one
 * PONG and is counted once.  Defined in rawsock.c beside the other filters. */
int l2f_sock_filter_control_echo(int32_t fd, const uint32_t *sessions, uint32_t n,
                                 int32_t all_bulk, const uint8_t *mac);
/* CDEF-END */

#endif
