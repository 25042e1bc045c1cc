/*
 * Transmit side of a bulk transfer (csrc/datapath.h): DATA frames for ranges of chunks of a mapped
 * file, sent with sendmmsg.
 *
 * Each frame is two iovecs: its 38-byte header (Ethernet + l2fast, CRC32C over header and payload)
 * and the payload, which points straight into the caller's mapping of the file.  The kernel copies
 * the payload once into its buffer; user space never does, and retransmissions are just other
 * ranges over the same mapping.  One call sends up to max_frames frames in batches of t->batch,
 * so the Python caller pays one cffi call per many frames (FACTS.md: ~160 ns per call, ~2 us per
 * frame in the kernel).
 *
 * Backpressure: a full device queue shows as ENOBUFS/EAGAIN (or sendmmsg taking fewer frames than
 * offered).  The call then stops and reports exactly how many frames, counted in range order, the
 * kernel took, so the caller resumes from there: no frame is silently skipped or sent twice.
 *
 * The CRC helper (L2F_TX_CRC_HELPER).  On a veth pair the sending core is the bottleneck: it runs
 * sendmmsg, the copy of every payload into the kernel and the peer's receive softirq, and CRC32C
 * over each payload was the only per-frame work on it beyond what an unreliable blast does (~1 us
 * of 4.6 per 9000-byte frame, BENCHMARKS.md).  So the frames are taken a window (up to WINDOW
 * frames) at a time; their descriptors are listed first, and the headers are built in groups of
 * GROUP frames that either thread may claim: the process's helper thread claims groups ahead of
 * the sender, and the sender claims (and builds) any group nobody has claimed by the time its
 * batch is due, so the helper is never waited for unless it is in the middle of a group.  A
 * window's groups are all built before the call leaves it (the helper must not read payloads or
 * write headers of a window that is over), and a call that stops early (backpressure) first
 * closes the window to further claims and waits for the groups in progress.
 *
 * Claims are one 64-bit atomic word: job number (32 bits), next group (16), group count (16).
 * The helper claims with compare-and-swap against the word it read, so a helper that read a
 * finished job's word can never claim a group of the next one.  A group is ready when its entry
 * in ready[] holds the job number (release store by the builder, acquire load by the sender).
 * The helper sleeps on a futex on the word's job half when it has nothing to claim.  One helper
 * serves the process; a second thread sending at the same time builds its own headers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/if_packet.h>

#include "datapath.h"

#define TYPE_DATA 0x20    /* PROTOCOL.md §Frame types */
#define FLAG_LAST 0x0002  /* PROTOCOL.md §Flags */
#define MAX_INDEX (1ull << 62)

/* Frames per window and per claimable group.  A window of 512 frames is ~4.6 MB at MTU 9000:
 * long enough that the helper runs far ahead of sendmmsg, short enough that the sender never
 * waits long for the last groups.  Groups of 8 frames keep a claim (one atomic) rare next to the
 * CRC it buys (~1 us per 9000-byte frame) and the wait for a group in progress short. */
#define WINDOW 512
#define GROUP 8
#define NGROUPS (WINDOW / GROUP)

struct frame_desc {
    const uint8_t *payload;
    uint64_t seq;
    uint32_t len;
    uint16_t flags;
};

struct window {
    struct l2f_tx_template t;             /* the job's header fields */
    uint32_t n;                           /* frames in this window */
    struct frame_desc desc[WINDOW];
    uint8_t hdrs[WINDOW][L2F_FRAME_OVERHEAD];
    _Atomic uint32_t ready[NGROUPS];      /* == job number once the group's headers are built */
};

/* The process's helper and the window it serves (only one sender at a time, under `busy`). */
static struct {
    pthread_mutex_t busy;
    pthread_once_t once;
    int started;                          /* the thread runs (0 if it could not be created) */
    _Atomic uint64_t claim;               /* job << 32 | next << 16 | ngroups */
    _Atomic uint32_t job_word;            /* futex: the current job number */
    _Atomic uint64_t built;               /* headers the helper built, for stats */
    struct window w;
} helper = {.busy = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

static uint32_t job_of(uint64_t c) { return (uint32_t)(c >> 32); }
static uint32_t next_of(uint64_t c) { return (uint32_t)(c >> 16) & 0xFFFF; }
static uint32_t groups_of(uint64_t c) { return (uint32_t)c & 0xFFFF; }

static void build_frame(const struct l2f_tx_template *t, const struct frame_desc *d, uint8_t *out)
{
    /* Cannot fail: every argument was checked before the window was listed. */
    (void)l2f_build_header(out, L2F_FRAME_OVERHEAD, t->dst, t->src, t->ethertype, TYPE_DATA,
                           d->flags, t->session, d->seq, d->payload, d->len);
}

/* Build the headers of group g; returns how many frames it holds (the last may be short). */
static uint32_t build_group(struct window *w, uint32_t g)
{
    uint32_t end = (g + 1) * GROUP < w->n ? (g + 1) * GROUP : w->n;
    for (uint32_t i = g * GROUP; i < end; i++)
        build_frame(&w->t, &w->desc[i], w->hdrs[i]);
    return end - g * GROUP;
}

static void *helper_main(void *arg)
{
    (void)arg;
    prctl(PR_SET_NAME, "l2f-txcrc", 0, 0, 0);
    /* SCHED_BATCH: woken by the sender (window_open's FUTEX_WAKE), a normal thread often
     * preempted the sender on the sender's own CPU, where it only took the sender's time; a
     * batch thread does not preempt on wake-up, so it runs where a CPU has room, and a group it
     * has not built when its batch is due the sender builds itself.  `l2fast bench` at MTU 9000
     * +6 % in 10 of 10 alternating pairs; 65535 +4 %, 1500 the same (BENCHMARKS.md "CRC helper
     * as a batch thread").  L2FAST_TX_CRC_HELPER_BATCH=0 keeps it a normal thread, for A/B. */
    const char *batch = getenv("L2FAST_TX_CRC_HELPER_BATCH");
    if (!batch || strcmp(batch, "0") != 0) {
        const struct sched_param sp = {.sched_priority = 0};
        (void)sched_setscheduler(0, SCHED_BATCH, &sp); /* Linux: this thread; failure is harmless */
    }
    for (;;) {
        uint64_t c = atomic_load_explicit(&helper.claim, memory_order_acquire);
        uint32_t g = next_of(c);
        if (g < groups_of(c)) {
            if (atomic_compare_exchange_weak_explicit(&helper.claim, &c, c + (1u << 16),
                                                      memory_order_acq_rel,
                                                      memory_order_acquire)) {
                atomic_fetch_add_explicit(&helper.built, build_group(&helper.w, g),
                                          memory_order_relaxed);
                atomic_store_explicit(&helper.w.ready[g], job_of(c), memory_order_release);
            }
            continue;
        }
        /* Nothing to claim in this job: sleep until the job number changes. */
        syscall(SYS_futex, &helper.job_word, FUTEX_WAIT_PRIVATE, job_of(c), NULL, NULL, 0);
    }
    return NULL;
}

/* A forked child has no helper thread (only the forking thread survives fork): start afresh. */
static void helper_after_fork_child(void)
{
    pthread_mutex_init(&helper.busy, NULL);
    helper.started = 0;
    helper.once = (pthread_once_t)PTHREAD_ONCE_INIT;
    atomic_store(&helper.claim, 0);
    atomic_store(&helper.job_word, 0);
    for (int g = 0; g < NGROUPS; g++) /* job numbers start again: forget the parent's */
        atomic_store(&helper.w.ready[g], 0);
}

static void helper_start(void)
{
    pthread_atfork(NULL, NULL, helper_after_fork_child);
    pthread_attr_t attr;
    pthread_t th;
    if (pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 << 10);
    helper.started = pthread_create(&th, &attr, helper_main, NULL) == 0;
    pthread_attr_destroy(&attr);
}

/* Wait until group g of `job` is built.  Spin first (a group takes microseconds); then yield,
 * because the helper may have been preempted, and on two cores spinning would hold the very CPU
 * it needs. */
static void wait_ready(struct window *w, uint32_t g, uint32_t job)
{
    for (unsigned spins = 0; atomic_load_explicit(&w->ready[g], memory_order_acquire) != job;
         spins++) {
        if (spins < 4096)
            __builtin_ia32_pause();
        else
            sched_yield();
    }
}

/* Open a window of w->n listed frames to claims (by the helper, when one serves it). */
static uint32_t window_open(struct window *w, int shared, uint32_t *job)
{
    uint32_t groups = (w->n + GROUP - 1) / GROUP;
    if (!shared)
        return groups;
    *job = atomic_load_explicit(&helper.job_word, memory_order_relaxed) + 1;
    if (*job == 0)
        *job = 1; /* 0 means "not ready" in ready[] */
    atomic_store_explicit(&helper.claim, (uint64_t)*job << 32 | groups, memory_order_release);
    atomic_store_explicit(&helper.job_word, *job, memory_order_release);
    syscall(SYS_futex, &helper.job_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    return groups;
}

/* Make the headers of groups [0, upto) usable: build the unclaimed ones here.  A group the
 * helper is still building after a short spin is built again into `spare` (the same bytes), and
 * its frames use that copy: the sender never waits on a preempted helper. Groups [first, upto)
 * are looked at. Returns the first group that is not ready (its frames and all later ones of the
 * batch then get their headers built into the caller's spare arena), or `upto`. */
static uint32_t window_need(struct window *w, int shared, uint32_t job, uint32_t *own_next,
                            uint32_t first, uint32_t upto)
{
    if (!shared) {
        for (; *own_next < upto; (*own_next)++)
            build_group(w, *own_next);
        return upto;
    }
    for (uint32_t g = first; g < upto; g++) {
        if (atomic_load_explicit(&w->ready[g], memory_order_acquire) == job)
            continue;
        uint64_t c = atomic_load_explicit(&helper.claim, memory_order_acquire);
        while (next_of(c) <= g) {
            /* Unclaimed: claim the next group (whichever it is) and build it here. */
            if (atomic_compare_exchange_weak_explicit(&helper.claim, &c, c + (1u << 16),
                                                      memory_order_acq_rel,
                                                      memory_order_acquire)) {
                uint32_t mine = next_of(c);
                build_group(w, mine);
                atomic_store_explicit(&w->ready[mine], job, memory_order_release);
                c = atomic_load_explicit(&helper.claim, memory_order_acquire);
            }
        }
        /* Claimed by the helper, which is building it right now. */
        unsigned spins = 0;
        while (atomic_load_explicit(&w->ready[g], memory_order_acquire) != job) {
            if (++spins == 4096)
                return g;
            __builtin_ia32_pause();
        }
    }
    return upto;
}

/* Close the window to claims and wait for the groups in progress: after this the helper touches
 * neither the window's headers nor the payloads it points at. */
static void window_close(struct window *w, int shared, uint32_t job)
{
    if (!shared)
        return;
    uint64_t c = atomic_load_explicit(&helper.claim, memory_order_acquire);
    /* next := groups, so nothing more can be claimed; groups below `next` were claimed. */
    while (!atomic_compare_exchange_weak_explicit(
        &helper.claim, &c, (c & ~(uint64_t)0xFFFF0000u) | (uint64_t)groups_of(c) << 16,
        memory_order_acq_rel, memory_order_acquire))
        ;
    for (uint32_t g = 0; g < next_of(c) && g < groups_of(c); g++)
        wait_ready(w, g, job);
}

int64_t l2f_tx_ranges(int32_t fd, int32_t ifindex, const struct l2f_tx_template *t,
                      const uint8_t *data, uint64_t data_len, uint64_t file_size,
                      uint64_t first_chunk, uint32_t chunk_size, const uint64_t *ranges,
                      uint32_t n_ranges, uint64_t max_frames, struct l2f_tx_stats *stats)
{
    struct l2f_tx_stats dummy;
    struct l2f_tx_stats *st = stats ? stats : &dummy;
    if (fd < 0 || ifindex < 0 || !t || (!ranges && n_ranges) || chunk_size == 0 ||
        chunk_size > L2F_MAX_PAYLOAD || file_size >= MAX_INDEX || first_chunk >= MAX_INDEX)
        return -L2F_E_ARG;
    if (t->mode & ~(uint32_t)(L2F_TX_BENCH | L2F_TX_RAW | L2F_TX_MARK_LAST | L2F_TX_CRC_HELPER) ||
        t->batch > L2F_TX_BATCH)
        return -L2F_E_ARG;
    const uint32_t batch = t->batch ? t->batch : L2F_TX_BATCH;
    const int one_chunk = (t->mode & (L2F_TX_BENCH | L2F_TX_RAW)) != 0;
    const int raw = (t->mode & L2F_TX_RAW) != 0;
    const uint64_t nchunks = (file_size + chunk_size - 1) / chunk_size;
    const uint64_t end = first_chunk + nchunks;
    /* The payload source must cover every byte a frame can point at. */
    if (nchunks && (!data || data_len < (one_chunk ? chunk_size : file_size)))
        return -L2F_E_ARG;
    /* Check every range before sending anything, so a bad call has no effect. */
    for (uint32_t r = 0; r < n_ranges; r++) {
        uint64_t s = ranges[2 * r], e = ranges[2 * r + 1];
        if (s >= e || s < first_chunk || e > end)
            return -L2F_E_ARG;
    }
    if (max_frames == 0 || n_ranges == 0)
        return 0;

    /* The window: the helper's when it serves this call, else one of this call's own. */
    int shared = 0;
    struct window *w;
    static __thread struct window *own;
    if (!raw && (t->mode & L2F_TX_CRC_HELPER)) {
        pthread_once(&helper.once, helper_start);
        shared = helper.started && pthread_mutex_trylock(&helper.busy) == 0;
    }
    if (shared) {
        w = &helper.w;
    } else {
        /* 38 KB: per thread, allocated once, rather than on a Python thread's stack. */
        if (!own && !(own = calloc(1, sizeof *own)))
            return -ENOMEM;
        w = own;
    }
    w->t = *t;

    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex; /* sll_protocol 0: the EtherType comes from the frame itself */

    struct mmsghdr msgs[L2F_TX_BATCH];
    struct iovec iov[L2F_TX_BATCH][2];
    uint8_t spare[L2F_TX_BATCH][L2F_FRAME_OVERHEAD];

    /* Raw ceiling mode: one header, built once; its CRC matches only the first frame. */
    if (raw) {
        int rc = l2f_build_header(w->hdrs[0], L2F_FRAME_OVERHEAD, t->dst, t->src, t->ethertype,
                                  TYPE_DATA, t->flags, t->session, ranges[0], data, chunk_size);
        if (rc < 0)
            return rc;
    }

    const uint64_t built0 = atomic_load_explicit(&helper.built, memory_order_relaxed);
    uint64_t sent = 0;
    uint32_t r = 0;
    uint64_t c = ranges[0];
    int stop = 0;
    while (!stop && sent < max_frames && r < n_ranges) {
        /* List one window of frames, walking the ranges in order. */
        uint32_t n = 0;
        while (n < WINDOW && sent + n < max_frames && r < n_ranges) {
            const uint64_t k = c - first_chunk;
            const uint64_t off = k * chunk_size; /* < file_size < 2^62: no overflow */
            struct frame_desc *d = &w->desc[n++];
            d->len = raw ? chunk_size : k + 1 == nchunks ? (uint32_t)(file_size - off) : chunk_size;
            d->payload = one_chunk ? data : data + off;
            d->seq = c;
            d->flags = t->flags;
            if ((t->mode & L2F_TX_MARK_LAST) && k + 1 == nchunks)
                d->flags |= FLAG_LAST;
            if (++c == ranges[2 * r + 1] && ++r < n_ranges)
                c = ranges[2 * r];
        }
        w->n = n;
        uint32_t job = 0, own_next = 0;
        const uint32_t groups = raw ? 0 : window_open(w, shared, &job);

        /* Send it in batches, each once its headers are built. */
        uint32_t done = 0; /* frames of the window the kernel took */
        while (done < n) {
            const uint32_t cnt = n - done < batch ? n - done : batch;
            uint32_t spare_from = cnt; /* frames of the batch from here on use spare[] */
            if (!raw) {
                uint32_t upto = (done + cnt + GROUP - 1) / GROUP;
                upto = upto < groups ? upto : groups;
                uint32_t late = window_need(w, shared, job, &own_next, done / GROUP, upto);
                if (late < upto) {
                    spare_from = late * GROUP > done ? late * GROUP - done : 0;
                    for (uint32_t j = spare_from; j < cnt; j++)
                        build_frame(t, &w->desc[done + j], spare[j]);
                }
            }
            for (uint32_t j = 0; j < cnt; j++) {
                const struct frame_desc *d = &w->desc[done + j];
                memset(&msgs[j], 0, sizeof msgs[j]);
                /* iovec takes non-const pointers; sendmsg never writes through them. */
                iov[j][0].iov_base = raw ? w->hdrs[0] : j >= spare_from ? spare[j] : w->hdrs[done + j];
                iov[j][0].iov_len = L2F_FRAME_OVERHEAD;
                iov[j][1].iov_base = (void *)(uintptr_t)d->payload;
                iov[j][1].iov_len = d->len;
                msgs[j].msg_hdr.msg_iov = iov[j];
                msgs[j].msg_hdr.msg_iovlen = 2;
                if (ifindex > 0) {
                    msgs[j].msg_hdr.msg_name = &sll;
                    msgs[j].msg_hdr.msg_namelen = sizeof sll;
                }
            }
            int got = sendmmsg(fd, msgs, cnt, MSG_DONTWAIT);
            st->calls++;
            if (got < 0) {
                int e = errno;
                if (e == ENOBUFS || e == EAGAIN || e == EWOULDBLOCK) {
                    st->backpressure++;
                    stop = 1;
                    break;
                }
                stop = 1;
                if (sent + done == 0) {
                    window_close(w, shared, job);
                    if (shared)
                        pthread_mutex_unlock(&helper.busy);
                    return -e;
                }
                break; /* report what was taken; the error comes back on the next call */
            }
            for (int j = 0; j < got; j++)
                st->bytes += w->desc[done + j].len;
            st->frames += (uint64_t)got;
            done += (uint32_t)got;
            if ((uint32_t)got < cnt) {
                st->backpressure++;
                stop = 1;
                break;
            }
        }
        if (!raw)
            window_close(w, shared, job);
        sent += done;
    }
    if (shared) {
        st->helper_frames += atomic_load_explicit(&helper.built, memory_order_relaxed) - built0;
        pthread_mutex_unlock(&helper.busy);
    }
    return (int64_t)sent;
}
