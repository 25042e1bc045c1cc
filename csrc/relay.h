/*
 * l2fast impairment relay: forwards every Ethernet frame between AF_PACKET ports with seeded,
 * reproducible faults (loss, duplication, reordering, single-bit corruption).  The lab
 * (l2fast/lab/) runs it in a middle network namespace because this kernel has no netem.
 *
 * The block between CDEF-BEGIN and CDEF-END is read verbatim by csrc/build_ffi.py as part of the
 * cffi cdef: plain C declarations and integer #defines only.
 *
 * Conventions (as l2fast_core.h): functions return >= 0 on success and a negative errno-style
 * code on failure (l2f_strerror describes it); nothing prints, exits or allocates per frame.
 *
 * Fault model, applied to each received frame in arrival order, per ingress port:
 *   1. lost with probability `loss` (the frame is never seen by the forwarding logic);
 *   2. one bit of the bytes after the 14-byte Ethernet header flipped with probability `corrupt`;
 *   3. sent twice with probability `dup`;
 *   4. held back with probability `reorder`, and released after `reorder_depth` later frames from
 *      the same port, or after `hold_us` microseconds, whichever comes first.
 * Every frame consumes the same number of draws from its port's PRNG whatever happens to it, so
 * the fate of the k-th frame from a port depends only on the seed, the port and k.
 */
#ifndef L2FAST_RELAY_H
#define L2FAST_RELAY_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
#define L2F_RELAY_MAX_PORTS 32
#define L2F_RELAY_MAX_BATCH 256
#define L2F_RELAY_MAX_HOLD 1024
#define L2F_RELAY_MAX_DEPTH 64
#define L2F_RELAY_MIN_SLOT 64
#define L2F_RELAY_MAX_SLOT 65600
#define L2F_RELAY_MAX_RUN_MS 60000

struct l2f_relay_config {
    uint64_t seed;            /* PRNG seed; equal seeds and equal input give equal faults */
    double loss;              /* probabilities per received frame, each in [0, 1] */
    double dup;
    double reorder;
    double corrupt;
    uint32_t reorder_depth;   /* later frames from the same port that overtake a held one (1..64) */
    uint32_t hold_us;         /* a held frame is released after this long at the latest */
    uint32_t hold_slots;      /* frames that can be held at once (1..1024) */
    uint32_t slot_size;       /* largest frame accepted, Ethernet header included (MTU + 18) */
    uint32_t batch;           /* frames per recvmmsg (1..256) */
    int32_t sndbuf;           /* socket buffer sizes in bytes (0: kernel default) */
    int32_t rcvbuf;
};

/* Totals since l2f_relay_new; per port, rx/tx count what entered/left through that port. */
struct l2f_relay_counters {
    uint64_t rx;              /* frames received (before any fault) */
    uint64_t rx_bytes;
    uint64_t tx;              /* frames the kernel accepted for transmission */
    uint64_t tx_bytes;
    uint64_t dropped;         /* frames lost on purpose (the loss fault) */
    uint64_t duplicated;      /* frames sent twice */
    uint64_t reordered;       /* frames held back so that later frames overtake them */
    uint64_t corrupted;       /* frames with one bit flipped */
    uint64_t tx_errors;       /* transmissions the kernel refused (queue full, frame too big...) */
    uint64_t truncated;       /* frames longer than slot_size, or shorter than an Ethernet header */
    uint64_t filtered;        /* frames whose destination lives behind the port they came from */
    uint64_t hold_full;       /* reorder decisions not applied because every hold slot was busy */
    uint64_t kernel_drops;    /* frames the kernel dropped before the relay read them (overload) */
};

struct l2f_relay;

/* Validate cfg and allocate a relay with no ports. Returns 0 and sets *out, or -L2F_E_ARG,
 * -ENOMEM. */
int l2f_relay_new(const struct l2f_relay_config *cfg, struct l2f_relay **out);

/* Open an ETH_P_ALL raw socket on ifname (promiscuous, ignoring its own transmissions) and add
 * it as the next port. Returns the port index, -ENODEV, -ENETDOWN, -EPERM, -L2F_E_TOOBIG (the
 * interface MTU does not fit slot_size), -L2F_E_ARG (too many ports) or another -errno. */
int l2f_relay_add_port(struct l2f_relay *r, const char *ifname);

/* Forward frames for up to duration_ms milliseconds (0: only what is already queued; capped at
 * L2F_RELAY_MAX_RUN_MS). Returns early with the count so far when a signal interrupts the wait,
 * so the caller can react to it. Returns the number of frames received, or -errno. */
int l2f_relay_run(struct l2f_relay *r, int32_t duration_ms);

/* Send every held frame now (used before stopping). Returns how many were released. */
int l2f_relay_release_held(struct l2f_relay *r);

/* Copy the totals (port < 0) or one port's counters into *out. Returns 0 or -L2F_E_ARG. */
int l2f_relay_counters(const struct l2f_relay *r, int32_t port, struct l2f_relay_counters *out);

/* Number of ports added so far. */
int l2f_relay_port_count(const struct l2f_relay *r);

/* Close the sockets and free everything; NULL is accepted. */
void l2f_relay_free(struct l2f_relay *r);
/* CDEF-END */

#endif
