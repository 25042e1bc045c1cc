/*
 * The receive loop of a bulk transfer (csrc/datapath.h, docs/ARCHITECTURE.md "A file").
 *
 * recvmmsg writes frames straight into free slots of the writers' shared-memory rings (iovecs
 * point at the slots: zero copy; a frame starts L2F_FRAME_PHASE bytes into its slot, where the
 * kernel's copy runs fastest, l2fast_core.h), each frame is verified with the core parser (PROTOCOL.md
 * §Receiving, CRC32C included; every wire read goes through csrc/wire_guard.h there), DATA of the
 * active session is filtered through the receive window, and frames accumulate in one ring until
 * they are published together with one head update.  Slots whose frame is not a new chunk get a SKIP descriptor
 * rather than being compacted away: moving payloads would cost a copy, and a SKIP costs the writer
 * one branch.
 *
 * Batches are published by the byte (publish_bytes) rather than per recvmmsg: see "Publishing"
 * above l2f_rx_run.
 *
 * Receive window: a circular bitmap of `window` bits (a power of two) whose bit (c & mask) stands
 * for chunk c, for c in [base, base + window), base being the cumulative ack.  When base moves past
 * a chunk, that bit is reused for chunk c + window, so it is cleared, then set again at once if
 * the written bitmap says chunk c + window is already on disk (a resumed transfer): chunks on disk
 * are thus never accepted twice and count toward the cumulative ack like received ones.
 *
 * Written bitmap (resume): the writer releases a descriptor only after pwritev returned, so when
 * this loop sees the ring's tail pass a descriptor (reclaim) its chunk is in the file (in the page
 * cache: that survives a SIGKILLed daemon; surviving power loss needs an fsync of the data before
 * the bitmap is synced, which is the caller's job).  Slots are reused only after they have been
 * reclaimed, so the descriptor is still intact when it is read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "datapath.h"

#define TYPE_DATA 0x20   /* PROTOCOL.md §Frame types */
#define FLAG_ZLIB 0x0001 /* PROTOCOL.md §Flags */
#define FLAG_LAST 0x0002
/* Chunk indices stay below 2^62 so that base + window and first_chunk + nchunks never wrap. */
#define MAX_CHUNK_INDEX (1ull << 62)

_Static_assert(L2F_V_COUNT == 8, "struct l2f_rx_counters.verdicts has 8 entries");

struct l2f_rx {
    struct l2f_rx_config cfg;
    struct l2f_rx_counters c;
    struct l2f_ring rings[L2F_RX_MAX_RINGS];
    uint64_t reclaimed[L2F_RX_MAX_RINGS]; /* per ring: tail as of the last reclaim */
    uint32_t nrings;
    uint32_t next_ring;
    uint64_t nchunks;
    uint64_t end;       /* first_chunk + nchunks */
    uint32_t last_len;  /* payload length of the file's last chunk */
    uint64_t *win;      /* window bitmap, window / 64 words */
    uint64_t wmask;     /* window - 1 */
    uint64_t base;      /* cumulative ack */
    uint64_t highest;   /* highest chunk received + 1 */
    /* The batch being accumulated in ring `cur` (see "Publishing" above l2f_rx_run). */
    int have_cur;
    uint32_t cur;
    uint32_t pend;       /* slots filled after the ring's head, not yet published */
    uint32_t pend_keep;  /* 1 + index among them of the last new chunk: what a flush publishes */
    uint64_t pend_bytes; /* payload bytes of the new chunks among them */
    int64_t pend_since;  /* when the first of them arrived */
    struct mmsghdr msgs[L2F_RX_MAX_BATCH];
    struct iovec iov[L2F_RX_MAX_BATCH];
};

/* ---- bitmaps ---- */

static inline int win_test(const struct l2f_rx *rx, uint64_t c)
{
    uint64_t b = c & rx->wmask;
    return (int)((rx->win[b >> 6] >> (b & 63)) & 1);
}

static inline void win_set(struct l2f_rx *rx, uint64_t c)
{
    uint64_t b = c & rx->wmask;
    rx->win[b >> 6] |= 1ull << (b & 63);
}

static inline void win_clear(struct l2f_rx *rx, uint64_t c)
{
    uint64_t b = c & rx->wmask;
    rx->win[b >> 6] &= ~(1ull << (b & 63));
}

/* Chunk c (absolute) is marked on disk.  The caller guarantees first_chunk <= c < end, and the
 * bitmap holds at least ceil(nchunks / 8) bytes (checked in l2f_rx_new). */
static inline int written_test(const struct l2f_rx *rx, uint64_t c)
{
    if (!rx->cfg.written)
        return 0;
    uint64_t k = c - rx->cfg.first_chunk;
    return (rx->cfg.written[k >> 3] >> (k & 7)) & 1;
}

/* First chunk in [c, hi) whose window bit equals want (1 or 0), or hi.  Steps a word at a time;
 * window is a multiple of 64, so the circular index never splits a word. */
static uint64_t win_next(const struct l2f_rx *rx, uint64_t c, uint64_t hi, int want)
{
    while (c < hi) {
        uint64_t b = c & rx->wmask;
        unsigned off = (unsigned)(b & 63);
        uint64_t w = rx->win[b >> 6];
        if (!want)
            w = ~w;
        w >>= off;
        if (w) {
            uint64_t found = c + (uint64_t)__builtin_ctzll(w);
            return found < hi ? found : hi;
        }
        c += 64 - off;
    }
    return hi;
}

/* Move the cumulative ack over every contiguous received chunk, recycling window bits. */
static void advance_base(struct l2f_rx *rx)
{
    const uint64_t window = rx->wmask + 1;
    while (rx->base < rx->end && win_test(rx, rx->base)) {
        win_clear(rx, rx->base);
        uint64_t incoming = rx->base + window; /* the chunk this bit stands for from now on */
        if (incoming < rx->end && written_test(rx, incoming))
            win_set(rx, rx->base);
        rx->base++;
    }
    if (rx->highest < rx->base)
        rx->highest = rx->base;
}

/* ---- setup ---- */

static int config_ok(const struct l2f_rx_config *cfg)
{
    if (cfg->fd < 0 || cfg->chunk_size == 0 || cfg->chunk_size > L2F_MAX_PAYLOAD)
        return 0;
    if (cfg->window < 64 || cfg->window > L2F_RX_MAX_WINDOW || (cfg->window & (cfg->window - 1)))
        return 0;
    if (cfg->batch == 0 || cfg->batch > L2F_RX_MAX_BATCH || cfg->publish_us > 1000000 ||
        cfg->gather_us > 10000)
        return 0;
    if (cfg->flags & ~(uint32_t)(L2F_RX_RAW | L2F_RX_DISCARD) ||
        (cfg->flags & L2F_RX_RAW && cfg->flags & L2F_RX_DISCARD))
        return 0;
    if (cfg->flags & L2F_RX_DISCARD &&
        (cfg->credit_slots <= cfg->batch || cfg->credit_slots > L2F_RX_MAX_WINDOW || cfg->written))
        return 0;
    if (cfg->file_size >= MAX_CHUNK_INDEX || cfg->first_chunk >= MAX_CHUNK_INDEX)
        return 0;
    uint64_t nchunks = (cfg->file_size + cfg->chunk_size - 1) / cfg->chunk_size;
    if (cfg->first_chunk + nchunks >= MAX_CHUNK_INDEX)
        return 0;
    if (cfg->written && cfg->written_len < (nchunks + 7) / 8)
        return 0;
    return 1;
}

int l2f_rx_new(const struct l2f_rx_config *cfg, struct l2f_rx **out)
{
    if (!cfg || !out || !config_ok(cfg))
        return -L2F_E_ARG;
    struct l2f_rx *rx = calloc(1, sizeof *rx);
    if (!rx)
        return -ENOMEM;
    rx->win = calloc(cfg->window / 64, sizeof(uint64_t));
    if (!rx->win) {
        free(rx);
        return -ENOMEM;
    }
    rx->cfg = *cfg;
    rx->nchunks = (cfg->file_size + cfg->chunk_size - 1) / cfg->chunk_size;
    rx->end = cfg->first_chunk + rx->nchunks;
    rx->last_len = rx->nchunks
                       ? (uint32_t)(cfg->file_size - (rx->nchunks - 1) * cfg->chunk_size)
                       : 0;
    rx->wmask = cfg->window - 1;
    rx->base = cfg->first_chunk;
    rx->highest = cfg->first_chunk;

    /* Resume: seed the window with the chunks already on disk and find the highest of them. */
    if (cfg->written) {
        uint64_t lim = rx->nchunks < cfg->window ? rx->nchunks : cfg->window;
        for (uint64_t k = 0; k < lim; k++)
            if (written_test(rx, cfg->first_chunk + k))
                win_set(rx, cfg->first_chunk + k);
        for (uint64_t byte = (rx->nchunks + 7) / 8; byte-- > 0;) {
            uint8_t v = cfg->written[byte];
            if (byte == rx->nchunks / 8)
                v &= (uint8_t)((1u << (rx->nchunks & 7)) - 1); /* ignore bits past the file */
            if (v) {
                rx->highest = cfg->first_chunk + byte * 8 + (uint64_t)(31 - __builtin_clz(v)) + 1;
                break;
            }
        }
    }
    advance_base(rx);
    *out = rx;
    return 0;
}

int l2f_rx_add_ring(struct l2f_rx *rx, uint8_t *region, uint64_t len)
{
    if (!rx || rx->nrings >= L2F_RX_MAX_RINGS)
        return -L2F_E_ARG;
    struct l2f_ring *r = &rx->rings[rx->nrings];
    int rc = l2f_ring_attach(r, region, len);
    if (rc < 0)
        return rc;
    /* A frame is stored whole or not at all: the slot must hold the 38 header bytes and a full
     * chunk after the L2F_FRAME_PHASE bytes it starts at, or every DATA frame would be truncated
     * and dropped. */
    if ((uint64_t)r->slot_size <
        (uint64_t)L2F_FRAME_PHASE + L2F_FRAME_OVERHEAD + rx->cfg.chunk_size) {
        memset(r, 0, sizeof *r);
        return -L2F_E_ARG;
    }
    /* The ring must be drained: descriptors another receive state published (an earlier file)
     * would otherwise be reclaimed into this file's written bitmap. */
    uint64_t tail = l2f_ring_load_tail(r);
    if (l2f_ring_load_head(r) != tail) {
        memset(r, 0, sizeof *r);
        return -EBUSY;
    }
    rx->reclaimed[rx->nrings] = tail;
    r->tail_seen = rx->reclaimed[rx->nrings];
    return (int)rx->nrings++;
}

void l2f_rx_free(struct l2f_rx *rx)
{
    if (!rx)
        return;
    free(rx->win);
    free(rx);
}

int l2f_rx_counters(const struct l2f_rx *rx, struct l2f_rx_counters *out)
{
    if (!rx || !out)
        return -L2F_E_ARG;
    *out = rx->c;
    return 0;
}

/* ---- reclaim: the writers' releases come back ---- */

/* Read the descriptors the writer of ring i released since the last reclaim (marking written
 * chunks), then let the producer side reuse their slots.  Returns the ring's free slots. */
static uint64_t reclaim(struct l2f_rx *rx, uint32_t i)
{
    struct l2f_ring *r = &rx->rings[i];
    uint64_t head = l2f_ring_load_head(r);
    uint64_t tail = l2f_ring_load_tail(r);
    /* Both counters live in the shared region, where the other process can scribble on them.
     * The writer can release only what we published, and we never publish more than nslots
     * ahead of the last reclaim: anything else means a corrupt region.  Keep the old tail then,
     * so nothing is marked, no slot is reused before its time and this loop stays within
     * nslots steps (a head far ahead would otherwise let it run ~2^64 times). */
    if (head - rx->reclaimed[i] > r->nslots || tail - rx->reclaimed[i] > head - rx->reclaimed[i]) {
        tail = rx->reclaimed[i];
        head = tail + r->nslots; /* report no free slot */
    }
    const uint32_t mask = r->nslots - 1;
    for (uint64_t p = rx->reclaimed[i]; p != tail; p++) {
        const struct l2f_desc *d = &r->desc[(uint32_t)p & mask];
        /* Shared memory: read each field once and check the copy that is used. */
        uint32_t flags = __atomic_load_n(&d->flags, __ATOMIC_RELAXED);
        if (flags & L2F_DESC_REFUSED) {
            rx->c.refused++;
            continue;
        }
        if (flags & L2F_DESC_SKIP)
            continue;
        /* Only in-file chunks are ever published, but the descriptor lives in shared memory:
         * check before touching the bitmap. */
        uint64_t seq = __atomic_load_n(&d->seq, __ATOMIC_RELAXED);
        if (rx->cfg.written && seq >= rx->cfg.first_chunk && seq < rx->end) {
            uint64_t k = seq - rx->cfg.first_chunk;
            rx->cfg.written[k >> 3] |= (uint8_t)(1u << (k & 7));
            rx->c.written++;
        }
    }
    rx->reclaimed[i] = tail;
    r->tail_seen = tail; /* l2f_ring_publish checks against this */
    uint64_t used = head - tail;
    return used > r->nslots ? 0 : r->nslots - used;
}

static uint64_t reclaim_all(struct l2f_rx *rx)
{
    uint64_t free_slots = 0;
    for (uint32_t i = 0; i < rx->nrings; i++)
        free_slots += reclaim(rx, i);
    return free_slots;
}

/* Ring for the next batch, and its free slots (0: every ring is full).  Round-robin, so each
 * writer gets whole batches of consecutive chunks (one pwritev each); a ring with room for a full
 * batch is preferred over one that would force a short recvmmsg. */
static uint32_t pick_ring(struct l2f_rx *rx, uint32_t *free_out)
{
    uint32_t best = 0;
    uint64_t best_free = 0;
    for (uint32_t k = 0; k < rx->nrings; k++) {
        uint32_t i = (rx->next_ring + k) % rx->nrings;
        struct l2f_ring *r = &rx->rings[i];
        uint64_t used = l2f_ring_load_head(r) - rx->reclaimed[i];
        uint64_t free_slots = used > r->nslots ? 0 : r->nslots - used;
        if (free_slots < rx->cfg.batch)
            free_slots = reclaim(rx, i);
        if (free_slots >= rx->cfg.batch) {
            *free_out = rx->cfg.batch;
            return i;
        }
        if (free_slots > best_free) {
            best_free = free_slots;
            best = i;
        }
    }
    *free_out = (uint32_t)best_free;
    return best;
}

/* ---- per-frame classification (the only per-frame work) ---- */

/* Expected payload length of chunk c of the file. */
static inline uint32_t chunk_len(const struct l2f_rx *rx, uint64_t c)
{
    return c + 1 == rx->end ? rx->last_len : rx->cfg.chunk_size;
}

/* Fill d for a verified DATA frame; returns 1 when it is a new chunk to be written. */
static int classify_data(struct l2f_rx *rx, const struct l2f_frame_info *fi, struct l2f_desc *d)
{
    const uint64_t c = fi->seq;
    d->seq = c;
    d->session = fi->session;
    if (fi->session != rx->cfg.session) {
        rx->c.other_session++;
        return 0;
    }
    if (c < rx->cfg.first_chunk || c >= rx->end) {
        rx->c.out_of_range++;
        return 0;
    }
    if (c < rx->base) {
        rx->c.duplicates++;
        return 0;
    }
    if (c - rx->base > rx->wmask) {
        rx->c.out_of_window++;
        return 0;
    }
    if (win_test(rx, c)) {
        rx->c.duplicates++;
        return 0;
    }
    /* A ZLIB payload would need inflating, which is not this path's job; PROTOCOL.md §DATA fixes
     * every other chunk's length, so any other length is a broken sender. */
    if ((fi->flags & FLAG_ZLIB) || fi->payload_len != chunk_len(rx, c)) {
        rx->c.bad_size++;
        return 0;
    }
    win_set(rx, c);
    if (c + 1 > rx->highest)
        rx->highest = c + 1;
    d->flags = (fi->flags & FLAG_LAST) ? L2F_DESC_LAST : 0;
    d->payload_off = L2F_FRAME_PHASE + fi->payload_off; /* from the slot's start */
    d->payload_len = fi->payload_len;
    rx->c.data_new++;
    rx->c.data_bytes += fi->payload_len;
    if (c == rx->base)
        advance_base(rx);
    return 1;
}

/* Dispatch n frames just received into the current ring at its head + pend: fill their
 * descriptors and add them to the pending batch (published later by flush). */
static void dispatch(struct l2f_rx *rx, uint32_t n, uint8_t *ctrl, uint32_t ctrl_slot,
                     uint32_t *ctrl_lens, uint32_t ctrl_max, uint32_t *ctrl_count)
{
    struct l2f_ring *r = &rx->rings[rx->cur];
    const uint32_t mask = r->nslots - 1;
    const uint64_t pos = l2f_ring_load_head(r) + rx->pend;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t idx = (uint32_t)(pos + j) & mask;
        uint8_t *frame = r->slots + (size_t)idx * r->slot_size + L2F_FRAME_PHASE;
        uint32_t room = r->slot_size - L2F_FRAME_PHASE;
        uint32_t len = rx->msgs[j].msg_len;
        /* MSG_TRUNC reports the real length; only `room` bytes were stored. */
        uint32_t stored = len < room ? len : room;
        struct l2f_desc d = {0, 0, 0, L2F_DESC_SKIP, 0};
        struct l2f_frame_info fi;
        rx->c.frames++;
        rx->c.bytes += len;
        int v = l2f_parse_frame(frame, stored, rx->cfg.ethertype, &fi);
        if (v >= 0 && v < L2F_V_COUNT)
            rx->c.verdicts[v]++;
        if (v == L2F_V_OK) {
            if (fi.type == TYPE_DATA) {
                if (classify_data(rx, &fi, &d)) {
                    rx->pend_keep = rx->pend + j + 1;
                    rx->pend_bytes += d.payload_len;
                }
            } else if (ctrl_max) {
                /* The caller sized this recvmmsg to the free control entries, so it fits. */
                uint32_t k = (*ctrl_count)++;
                uint32_t copied = stored < ctrl_slot ? stored : ctrl_slot;
                memcpy(ctrl + (size_t)k * ctrl_slot, frame, copied);
                ctrl_lens[k] = copied; /* what the slot holds: a caller may read this many */
                rx->c.control++;
            } else {
                rx->c.control_dropped++;
            }
        }
        r->desc[idx] = d;
    }
    rx->pend += n;
}

/* Publish the pending batch with one head update.  Trailing SKIP slots are left out: they were
 * never published, so the next recvmmsg simply reuses them.  A batch with new chunks moves the
 * loop on to the next ring, so each writer gets whole batches of consecutive chunks. */
static void flush(struct l2f_rx *rx)
{
    if (rx->pend_keep) {
        (void)l2f_ring_publish(&rx->rings[rx->cur], rx->pend_keep); /* the slots were free */
        rx->c.batches++;
        rx->next_ring = (rx->cur + 1) % rx->nrings;
        rx->have_cur = 0;
    }
    rx->pend = rx->pend_keep = 0;
    rx->pend_bytes = 0;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Publishing.  FACTS.md asks for hand-overs of >= 256 KiB: every publish costs a cache-line
 * transfer of head to the writer's core and, when the writer sleeps, a futex wake and a context
 * switch, and the writer's pwritev calls grow with the batch.  So recvmmsg batches accumulate in
 * one ring until they hold publish_bytes of new chunks, the ring has no slot left, or the oldest
 * has waited publish_us (a quiet link must not hold data back), and every l2f_rx_run ends with a
 * flush, so nothing stays unpublished between calls.  Measured on veth at MTU 1500 (64 MiB):
 * publishing every recvmmsg gave ~8,000 batches of ~5 frames (the loop outpaces the link), each
 * a writer wake-up; 256 KiB batches cut the writers' CPU per GiB by about a fifth
 * (bench/datapath.py --publish-bytes).
 */
int l2f_rx_run(struct l2f_rx *rx, uint32_t max_frames, int64_t budget_us, uint8_t *ctrl,
               uint64_t ctrl_len, uint32_t ctrl_slot, uint32_t *ctrl_lens, uint32_t ctrl_max,
               uint32_t *ctrl_count)
{
    if (!rx || !ctrl_count || rx->nrings == 0 || max_frames == 0 || budget_us < 0 ||
        budget_us > 60000000)
        return -L2F_E_ARG;
    if (ctrl_max && (!ctrl || !ctrl_lens || ctrl_slot == 0 ||
                     (uint64_t)ctrl_max * ctrl_slot > ctrl_len))
        return -L2F_E_ARG;
    *ctrl_count = 0;
    const int raw = rx->cfg.flags & L2F_RX_RAW;
    const int discard = rx->cfg.flags & L2F_RX_DISCARD;
    const int64_t deadline = now_ns() + budget_us * 1000;
    const int64_t hold_ns = (int64_t)rx->cfg.publish_us * 1000;
    const int64_t gather_ns = (int64_t)rx->cfg.gather_us * 1000;
    const int was_complete = rx->base >= rx->end;
    uint32_t got = 0;
    int stop = 0;
    int rc = 0;

    while (!stop) {
        if (got >= max_frames) {
            stop = L2F_RX_STOP_FRAMES;
            break;
        }
        uint32_t want = max_frames - got;
        if (ctrl_max) {
            if (*ctrl_count >= ctrl_max) {
                stop = L2F_RX_STOP_CTRL_FULL;
                break;
            }
            if (want > ctrl_max - *ctrl_count)
                want = ctrl_max - *ctrl_count;
        }

        /* Where the frames go: the current ring after its pending slots. */
        struct l2f_ring *r;
        uint64_t pos;
        uint32_t room;
        if (raw || discard) {
            /* Scratch: nothing is ever published, so every read lands in ring 0's first slots,
             * which stay in cache (see L2F_RX_DISCARD in l2f_rx_feedback). */
            r = &rx->rings[0];
            rx->cur = 0;
            pos = 0;
            room = r->nslots;
        } else {
            if (!rx->have_cur) {
                uint32_t free_slots;
                rx->cur = pick_ring(rx, &free_slots);
                if (free_slots == 0) {
                    rx->c.ring_full++;
                    stop = L2F_RX_STOP_RING_FULL;
                    break;
                }
                rx->have_cur = 1;
            }
            r = &rx->rings[rx->cur];
            pos = l2f_ring_load_head(r) + rx->pend;
            uint64_t used = pos - rx->reclaimed[rx->cur];
            if (used >= r->nslots) {
                (void)reclaim(rx, rx->cur); /* its writer may have released slots since */
                used = pos - rx->reclaimed[rx->cur];
            }
            if (used >= r->nslots) {
                /* Full: publish what it holds and let pick_ring choose again (it reports
                 * RING_FULL when every ring is full). */
                flush(rx);
                rx->have_cur = 0;
                continue;
            }
            room = (uint32_t)(r->nslots - used);
        }
        if (want > room)
            want = room;
        if (want > rx->cfg.batch)
            want = rx->cfg.batch;

        const uint32_t mask = r->nslots - 1;
        memset(rx->msgs, 0, sizeof(rx->msgs[0]) * want);
        for (uint32_t j = 0; j < want; j++) {
            rx->iov[j].iov_base = r->slots + (size_t)((uint32_t)(pos + j) & mask) * r->slot_size +
                                  L2F_FRAME_PHASE;
            rx->iov[j].iov_len = r->slot_size - L2F_FRAME_PHASE;
            rx->msgs[j].msg_hdr.msg_iov = &rx->iov[j];
            rx->msgs[j].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(rx->cfg.fd, rx->msgs, want, MSG_DONTWAIT | MSG_TRUNC, NULL);
        rx->c.recv_calls++;
        if (n < 0) {
            int e = errno;
            if (e != EAGAIN && e != EWOULDBLOCK) {
                rc = -e; /* EINTR included: the caller sees its signal at once */
                break;
            }
            int64_t now = now_ns();
            int64_t left = deadline - now;
            if (rx->pend && now - rx->pend_since >= hold_ns)
                flush(rx); /* the link went quiet: do not hold the batch back */
            if (left <= 0) {
                stop = L2F_RX_STOP_BUDGET;
                break;
            }
            if (rx->pend && rx->pend_since + hold_ns - now < left)
                left = rx->pend_since + hold_ns - now;
            struct pollfd pfd = {.fd = rx->cfg.fd, .events = POLLIN, .revents = 0};
            struct timespec ts = {.tv_sec = left / 1000000000, .tv_nsec = left % 1000000000};
            rx->c.polls++;
            if (ppoll(&pfd, 1, &ts, NULL) < 0) {
                rc = -errno;
                break;
            }
            continue;
        }
        got += (uint32_t)n;
        if (raw) {
            rx->c.frames += (uint32_t)n;
            for (int j = 0; j < n; j++)
                rx->c.bytes += rx->msgs[j].msg_len;
        } else {
            if (rx->pend == 0)
                rx->pend_since = now_ns();
            dispatch(rx, (uint32_t)n, ctrl, ctrl_slot, ctrl_lens, ctrl_max, ctrl_count);
            if (discard) {
                /* Verified, windowed and counted: the slots are free again for the next read. */
                rx->c.batches += rx->pend_keep != 0;
                rx->pend = rx->pend_keep = 0;
                rx->pend_bytes = 0;
            } else if (rx->pend_bytes >= rx->cfg.publish_bytes) {
                flush(rx);
            }
        }
        if (!was_complete && rx->base >= rx->end) {
            stop = L2F_RX_STOP_COMPLETE;
            break;
        }
        /* A zero budget means "what is queued now": only an empty socket ends it. */
        if (budget_us > 0) {
            int64_t now = now_ns();
            if (now >= deadline) {
                stop = L2F_RX_STOP_BUDGET;
            } else if (gather_ns && (uint32_t)n < want && deadline - now > gather_ns) {
                /* A short read while frames flow: the socket is drained.  Sleep rather than wait
                 * on the socket: a reader blocked in poll is woken for every frame, and on veth
                 * that wake-up (and its IPI) is paid by the sending CPU, the bottleneck of a
                 * transfer.  Meanwhile the socket gathers a batch (its buffer holds far more than
                 * gather_us of frames) for the next recvmmsg to take in one call. */
                struct timespec g = {.tv_sec = 0, .tv_nsec = gather_ns};
                rx->c.gathers++;
                (void)nanosleep(&g, NULL); /* EINTR: the next read or poll reports the signal */
            }
        }
    }
    if (!raw)
        flush(rx);
    if (rc < 0)
        return rc;
    if (rx->base >= rx->end)
        stop |= L2F_RX_STOP_COMPLETE;
    return stop;
}

int l2f_rx_feedback(struct l2f_rx *rx, struct l2f_rx_feedback *fb)
{
    if (!rx || !fb)
        return -L2F_E_ARG;
    memset(fb, 0, sizeof *fb);
    /* A discarding path frees its slots as it reads them: what limits the sender is then the
     * socket's buffer, for which the caller sizes credit_slots. */
    uint64_t free_slots =
        rx->cfg.flags & L2F_RX_DISCARD ? rx->cfg.credit_slots : reclaim_all(rx);
    const uint64_t window = rx->wmask + 1;
    fb->cum_ack = rx->base;
    fb->highest = rx->highest > rx->base ? rx->highest : rx->base;
    fb->free_slots = free_slots;
    fb->end_chunk = rx->end;
    /* One batch of slack: a recvmmsg batch may hold frames that take a slot without being a new
     * chunk (duplicates, control, other sessions), so granting every free slot could overrun. */
    uint64_t room = free_slots > rx->cfg.batch ? free_slots - rx->cfg.batch : 0;
    fb->credit = rx->base + (room < window ? room : window);

    /* SACK: runs of received chunks in (base, min(highest, base + window)), lowest first. */
    uint64_t hi = fb->highest < rx->base + window ? fb->highest : rx->base + window;
    uint64_t c = rx->base;
    uint32_t n = 0;
    while (c < hi && n < L2F_FB_MAX_RANGES) {
        uint64_t s = win_next(rx, c, hi, 1);
        if (s >= hi)
            break;
        uint64_t e = win_next(rx, s, hi, 0);
        fb->ranges[2 * n] = s;
        fb->ranges[2 * n + 1] = e;
        n++;
        c = e;
    }
    fb->n_ranges = n;
    return (int)n;
}
