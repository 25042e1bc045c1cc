/*
 * l2fast bulk data path (issue 5, docs/ARCHITECTURE.md "A file"): the C primitives that move DATA
 * frames between the wire, shared-memory rings and the file without any Python per frame.
 *
 *   sender:   l2f_tx_ranges      mmap'd file --(header + CRC32C, sendmmsg, payload iovec points
 *                                into the mapping)--> wire
 *             l2f_tx_stream      the same for new data, as far as the FEEDBACK credit it reads
 *                                itself allows (csrc/txstream.c)
 *   receiver: l2f_rx_run         wire --(recvmmsg straight into ring slots, verify, receive window,
 *                                dedup)--> one SPSC ring per writer process, batches of
 *                                >= publish_bytes handed over round-robin
 *             l2f_writer_drain   ring --(pwritev of contiguous chunks)--> <name>.part
 *             l2f_rx_feedback    cum_ack, highest, SACK ranges and credit for a FEEDBACK frame
 *
 * The block between CDEF-BEGIN and CDEF-END is read verbatim by csrc/build_ffi.py as part of the
 * cffi cdef: plain C declarations and integer #defines only.
 *
 * Conventions (as l2fast_core.h): functions return >= 0 on success and a negative errno-style code
 * on failure (l2f_strerror describes it); nothing prints or exits, and nothing allocates except
 * l2f_rx_new.  Wire layout: docs/PROTOCOL.md (§Header, §DATA, §FEEDBACK).
 *
 * ---- The shared-memory ring (csrc/ring.c) ----
 * One region, allocated by the caller (an anonymous MAP_SHARED mapping made before fork, or a file
 * on tmpfs) so that two processes see it at once:
 *
 *     [ header: 512 bytes ][ nslots descriptors of 24 bytes ][ pad to 64 ][ nslots slots ]
 *
 * The header holds the geometry (written once by l2f_ring_init), the producer's `head` and the
 * consumer's `tail` (free-running u64 counters, each on its own 128-byte line so the two processes
 * never write the same cache line pair), and a futex word the consumer sleeps on.  Position p uses
 * descriptor p & (nslots - 1) and slot p & (nslots - 1).  The producer fills slots and
 * descriptors at head..head+n-1, then publishes them with ONE release store of head; the consumer
 * reads up to head (acquire), then releases with ONE release store of tail.  A whole recvmmsg batch
 * thus costs one head update, never one per frame (FACTS.md).
 *
 * A process uses the region through its own `struct l2f_ring` handle (l2f_ring_attach); the
 * handle caches the other side's counter so that most calls touch only their own cache line.
 * Values read from the shared header are checked (head - tail <= nslots, descriptor offsets
 * inside their slot) so a corrupted region yields an error, never an out-of-bounds access.
 */
#ifndef L2FAST_DATAPATH_H
#define L2FAST_DATAPATH_H

#include <stddef.h>
#include <stdint.h>

#include "l2fast_core.h"

/* CDEF-BEGIN */
/* ---- ring geometry ---- */
#define L2F_RING_HDR_SIZE 512
#define L2F_RING_MIN_SLOT 64          /* slot_size: a multiple of 64 in 64..L2F_RING_MAX_SLOT */
#define L2F_RING_MAX_SLOT 65664       /* L2F_FRAME_PHASE + Ethernet header + the largest MTU + a VLAN tag, rounded */
#define L2F_RING_MAX_SLOTS 1048576    /* nslots: a power of two in 2..this */
#define L2F_RING_MAX_BYTES 2147483648 /* a whole region is at most 2 GiB */

/* Descriptor flags. */
#define L2F_DESC_SKIP 1      /* the slot holds nothing for the writer (bad, duplicate, control...) */
#define L2F_DESC_REFUSED 2   /* set by the writer: this descriptor broke a bound and was not written */
#define L2F_DESC_LAST 4      /* the DATA frame carried flag LAST (informational) */

/* One published slot. payload_off/payload_len locate the payload inside the slot. */
struct l2f_desc {
    uint64_t seq;            /* chunk index (PROTOCOL.md §DATA) */
    uint32_t payload_off;
    uint32_t payload_len;
    uint32_t flags;          /* L2F_DESC_* */
    uint32_t session;
};

/* Process-local handle on a ring region (fill it with l2f_ring_attach). */
struct l2f_ring {
    uint8_t *base;           /* start of the shared region */
    uint64_t len;            /* its length in bytes */
    uint32_t nslots;
    uint32_t slot_size;
    struct l2f_desc *desc;   /* descriptor array inside the region */
    uint8_t *slots;          /* slot array inside the region */
    uint64_t tail_seen;      /* producer's cache of the consumer's tail */
    uint64_t head_seen;      /* consumer's cache of the producer's head */
};

/* Bytes a region needs for nslots slots of slot_size bytes, or a negative code (-L2F_E_ARG for a
 * geometry outside the limits above, -L2F_E_TOOBIG above L2F_RING_MAX_BYTES). */
int64_t l2f_ring_size(uint32_t nslots, uint32_t slot_size);

/* Lay out an empty ring in region[0..len) (len >= l2f_ring_size). Only the header and descriptors
 * are written; slots are left as they are. Returns 0 or a negative code. */
int l2f_ring_init(uint8_t *region, uint64_t len, uint32_t nslots, uint32_t slot_size);

/* Check the region's header and fill the process-local handle *r. Returns 0, or -L2F_E_ARG when
 * the region is not an initialised ring that fits in len bytes. */
int l2f_ring_attach(struct l2f_ring *r, uint8_t *region, uint64_t len);

/* Producer: how many slots (<= max) are free starting at *pos (= head). Returns the count (0 when
 * full) or -EPROTO when the shared counters are inconsistent. */
int l2f_ring_reserve(struct l2f_ring *r, uint32_t max, uint64_t *pos);

/* Producer: make the next n reserved slots visible to the consumer (one release store), and wake
 * it if it sleeps in l2f_ring_wait. Returns 0, or -L2F_E_ARG when n exceeds the free space. */
int l2f_ring_publish(struct l2f_ring *r, uint32_t n);

/* Consumer: how many published slots (<= max) start at *pos (= tail). Returns the count or
 * -EPROTO. */
int l2f_ring_peek(struct l2f_ring *r, uint32_t max, uint64_t *pos);

/* Consumer: hand the next n slots back to the producer (one release store). Returns 0, or
 * -L2F_E_ARG when n exceeds what was published. */
int l2f_ring_release(struct l2f_ring *r, uint32_t n);

/* Consumer: wait until something is published or timeout_us passes (futex on the shared region,
 * so the producer's publish wakes it at once). Returns the number available (0 on timeout or
 * signal) or a negative code. */
int l2f_ring_wait(struct l2f_ring *r, int32_t timeout_us);

/* Counters for monitoring from any process: head, tail (either may be NULL). Returns the number
 * of slots in use. */
int l2f_ring_counts(const struct l2f_ring *r, uint64_t *head, uint64_t *tail);

/* Producer, copying (tests, tools): publish up to n descriptors from descs and, when payload is
 * not NULL, copy payload_len bytes from payload + i * stride into slot i at descs[i].payload_off
 * (payload_len is then descs[i].payload_len, capped by stride). Returns how many were published
 * (fewer when the ring fills), -L2F_E_ARG for a descriptor that does not fit its slot or a
 * source shorter than n * stride. */
int l2f_ring_push(struct l2f_ring *r, const struct l2f_desc *descs, uint32_t n,
                  const uint8_t *payload, uint64_t payload_len, uint32_t stride);

/* Consumer, copying: take up to max descriptors into out and, when payload is not NULL, copy up
 * to stride bytes of each payload to payload + i * stride; then release them. Returns the count,
 * -EPROTO for a descriptor outside its slot. */
int l2f_ring_pop(struct l2f_ring *r, struct l2f_desc *out, uint32_t max, uint8_t *payload,
                 uint64_t payload_len, uint32_t stride);

/* ---- receive path (csrc/rxpath.c) ---- */
#define L2F_RX_MAX_RINGS 16
#define L2F_RX_MAX_BATCH 256          /* frames per recvmmsg */
#define L2F_RX_MAX_WINDOW 16777216    /* chunks (2 MiB of bitmap) */
#define L2F_FB_MAX_RANGES 64          /* PROTOCOL.md §Limits */

/* Config flags. */
#define L2F_RX_RAW 1                  /* bench ceiling: recvmmsg into ring 0's slots and count only */
#define L2F_RX_DISCARD 2              /* bench stream: verify and window every frame in ring 0's first
                                       * slots, publish nothing; the credit is credit_slots */

/* Why l2f_rx_run returned (a bit set). */
#define L2F_RX_STOP_BUDGET 1          /* the time budget ran out */
#define L2F_RX_STOP_FRAMES 2          /* max_frames were read */
#define L2F_RX_STOP_RING_FULL 4       /* no ring had a free slot: the socket was left alone */
#define L2F_RX_STOP_CTRL_FULL 8       /* the control arena is full: handle those frames first */
#define L2F_RX_STOP_COMPLETE 16       /* every chunk of the file has been received */

struct l2f_rx_config {
    int32_t fd;               /* AF_PACKET socket bound to the EtherType (any datagram socket works) */
    uint16_t ethertype;
    uint16_t flags;           /* L2F_RX_* */
    uint32_t session;         /* DATA of other sessions is dropped and counted */
    uint32_t chunk_size;      /* PROTOCOL.md §DATA: 1..65511 */
    uint64_t first_chunk;     /* the file's first chunk index in the session's data space */
    uint64_t file_size;       /* bytes; the file has ceil(file_size / chunk_size) chunks */
    uint32_t window;          /* receive window in chunks: a power of two, 64..L2F_RX_MAX_WINDOW */
    uint32_t batch;           /* frames per recvmmsg, 1..L2F_RX_MAX_BATCH */
    uint8_t *written;         /* bit k (LSB first) set: chunk first_chunk + k is on disk; may be NULL */
    uint64_t written_len;     /* bytes of that bitmap: at least ceil(nchunks / 8) when not NULL */
    uint32_t publish_bytes;   /* publish a ring's batch once it holds this many payload bytes (0: every recvmmsg) */
    uint32_t publish_us;      /* ...or once its oldest frame waited this long and the socket is empty (<= 1 s) */
    uint32_t gather_us;       /* socket drained mid-stream: sleep this long to let frames gather before the next read, instead of waking per frame (0: off; <= 10 ms) */
    uint32_t credit_slots;    /* L2F_RX_DISCARD: the slots the credit counts as free (more than batch) */
};

struct l2f_rx_counters {
    uint64_t frames;          /* frames read from the socket */
    uint64_t bytes;           /* their lengths */
    uint64_t verdicts[8];     /* per L2F_V_* (PROTOCOL.md §Receiving) */
    uint64_t data_new;        /* DATA chunks accepted and published to a ring (discarded: L2F_RX_DISCARD) */
    uint64_t data_bytes;      /* their payload bytes */
    uint64_t duplicates;      /* DATA chunks already received */
    uint64_t out_of_window;   /* DATA chunks at or beyond cum_ack + window */
    uint64_t out_of_range;    /* DATA chunks outside the file */
    uint64_t bad_size;        /* DATA whose payload is not the chunk's length (or is ZLIB) */
    uint64_t other_session;   /* DATA of another session */
    uint64_t control;         /* other valid frames copied to the control arena */
    uint64_t control_dropped; /* other valid frames dropped because no arena was given */
    uint64_t ring_full;       /* times no ring had room, so reading stopped */
    uint64_t batches;         /* batches published (one head update each) */
    uint64_t recv_calls;      /* recvmmsg calls */
    uint64_t polls;           /* waits for the socket */
    uint64_t written;         /* chunks marked in the written bitmap after their writer released them */
    uint64_t refused;         /* descriptors a writer refused (never marked written) */
    uint64_t gathers;         /* gather_us sleeps */
};

struct l2f_rx_feedback {
    uint64_t cum_ack;         /* every chunk < cum_ack has been received (or was on disk already) */
    uint64_t credit;          /* the sender may send chunks < credit */
    uint64_t highest;         /* highest chunk received + 1 (at least cum_ack) */
    uint64_t free_slots;      /* free ring slots across all rings */
    uint64_t end_chunk;       /* first_chunk + number of chunks */
    uint32_t n_ranges;
    uint32_t reserved;
    uint64_t ranges[128];     /* n_ranges pairs start, end (exclusive), ascending, above cum_ack */
};

struct l2f_rx;

/* Validate cfg and allocate the receive state (window bitmap included) with no rings. The window
 * starts at first_chunk and, when cfg->written is given, already holds the chunks it marks (a
 * resumed transfer). Returns 0 and sets *out, or -L2F_E_ARG, -ENOMEM. */
int l2f_rx_new(const struct l2f_rx_config *cfg, struct l2f_rx **out);

/* Attach one writer's ring (batches go round-robin over the rings in the order added). Its
 * slot_size must hold a frame of the interface (the caller's job: MTU + 18 rounded up to 64).
 * Returns the ring's index, -L2F_E_ARG (not a ring, too many, or slots too small for a chunk) or
 * -EBUSY (the ring still holds descriptors: drain it first). */
int l2f_rx_add_ring(struct l2f_rx *rx, uint8_t *region, uint64_t len);

/* Read and dispatch frames for up to budget_us microseconds (waiting for the socket within it)
 * or max_frames frames, whichever comes first; budget_us = 0 reads what is queued and never
 * waits. Valid frames other than DATA are copied to the
 * control arena (frame i at ctrl + i * ctrl_slot, its stored length in ctrl_lens[i], at most
 * ctrl_slot: a longer frame is cut to the slot) while it has room; with
 * ctrl_max = 0 they are dropped and counted. *ctrl_count receives the number copied. Returns the
 * L2F_RX_STOP_* bits that ended the call (L2F_RX_STOP_COMPLETE is also set whenever the file is
 * complete), or a negative code (-EINTR: a signal interrupted the wait); state, counters and
 * *ctrl_count stay valid after a negative return, so copied control frames are never lost. */
int l2f_rx_run(struct l2f_rx *rx, uint32_t max_frames, int64_t budget_us, uint8_t *ctrl,
               uint64_t ctrl_len, uint32_t ctrl_slot, uint32_t *ctrl_lens, uint32_t ctrl_max,
               uint32_t *ctrl_count);

/* Take back the slots the writers released, marking their chunks in the written bitmap, then
 * fill *fb (PROTOCOL.md §FEEDBACK): cum_ack, highest, up to 64 SACK ranges above cum_ack (lowest
 * first) and credit = cum_ack + free ring slots minus one batch of slack (room for frames that
 * do not become chunks), bounded by the window. Returns n_ranges. */
int l2f_rx_feedback(struct l2f_rx *rx, struct l2f_rx_feedback *fb);

/* Copy the counters. Returns 0. */
int l2f_rx_counters(const struct l2f_rx *rx, struct l2f_rx_counters *out);

void l2f_rx_free(struct l2f_rx *rx);

/* ---- writer (csrc/writer.c) ---- */
struct l2f_writer_stats {
    uint64_t bytes;           /* payload bytes written (or, in bench mode, that would be) */
    uint64_t chunks;          /* descriptors written */
    uint64_t writes;          /* pwritev calls */
    uint64_t refused;         /* descriptors refused: outside the file, wrong length, outside the slot */
    uint64_t skipped;         /* SKIP descriptors */
    uint64_t batches;         /* non-empty drains */
    uint64_t waits;           /* sleeps on an empty ring */
};

/* Pop up to max_batch descriptors (waiting up to wait_us for the first when the ring is empty),
 * write their payloads to fd at (seq - first_chunk) * chunk_size with as few pwritev calls as
 * contiguous chunks allow, then release them. A descriptor whose bytes would fall outside
 * [0, file_size), whose length is not its chunk's, or whose payload lies outside its slot is never
 * written: it is flagged L2F_DESC_REFUSED and counted. fd < 0 is bench mode: validate and release
 * without writing. Returns the bytes written (0 when the ring stayed empty) or a negative code; on
 * a write error the descriptors already written are released and the rest stay in the ring. */
int64_t l2f_writer_drain(struct l2f_ring *ring, int32_t fd, uint64_t first_chunk,
                         uint32_t chunk_size, uint64_t file_size, uint32_t max_batch,
                         int32_t wait_us, struct l2f_writer_stats *stats);

/* Start writing a file's dirty pages back without waiting (sync_file_range WRITE). Placing
 * several received files queues all their data first, so that the fsync of each then finds it
 * written and a journaling file system commits them together. Returns 0 or a negative code. */
int l2f_start_writeback(int32_t fd);

/* Give back the blocks of bytes [offset, offset + length) of a part file, keeping its size
 * (fallocate PUNCH_HOLE | KEEP_SIZE): the preallocated space of chunks that never arrived, when
 * a transfer stops. Returns 0, or a negative code (-EOPNOTSUPP where the file system cannot). */
int l2f_punch_hole(int32_t fd, uint64_t offset, uint64_t length);

/* ---- transmit (csrc/txpath.c) ---- */
#define L2F_TX_BATCH 64               /* most frames per sendmmsg */
/* Template modes. */
#define L2F_TX_BENCH 1                /* data holds one chunk, sent as every chunk's payload */
#define L2F_TX_RAW 2                  /* bench ceiling: one prebuilt header for every frame, no CRC */
#define L2F_TX_MARK_LAST 4            /* set flag LAST on the file's final chunk */
#define L2F_TX_CRC_HELPER 8           /* headers and CRC32C also built by a helper thread */

struct l2f_tx_template {
    uint8_t dst[6];
    uint8_t src[6];
    uint16_t ethertype;
    uint16_t flags;           /* PROTOCOL.md §Flags for every frame (e.g. RETRANSMIT) */
    uint32_t session;
    uint32_t mode;            /* L2F_TX_* */
    uint32_t batch;           /* frames per sendmmsg, 1..L2F_TX_BATCH (0: L2F_TX_BATCH) */
};

struct l2f_tx_stats {
    uint64_t frames;          /* frames the kernel took */
    uint64_t bytes;           /* their payload bytes */
    uint64_t calls;           /* sendmmsg calls */
    uint64_t backpressure;    /* times the kernel queue was full (ENOBUFS/EAGAIN or a short batch) */
    uint64_t helper_frames;   /* headers the CRC helper thread built (L2F_TX_CRC_HELPER) */
};

/* Send the chunks of ranges[0..2*n_ranges) (pairs start, end exclusive, in the order given) as
 * DATA frames, at most max_frames of them: header and CRC32C built here, payload iovecs pointing
 * into data (the mapped file: chunk k is data[(k - first_chunk) * chunk_size ...], the last one
 * short), sendmmsg in batches of t->batch frames to ifindex (0: the socket's own binding). Every
 * range must lie inside the file's chunks. Stops early when the kernel queue is full. Returns the
 * number of frames taken, in range order (fewer than asked means backpressure: retry the rest
 * later), or a negative code when none was taken (-L2F_E_ARG for a bad range, checked before
 * anything is sent). stats may be NULL. With L2F_TX_CRC_HELPER the process's CRC helper thread
 * builds headers ahead of the sendmmsg calls (see txpath.c); frames and results are the same. */
int64_t l2f_tx_ranges(int32_t fd, int32_t ifindex, const struct l2f_tx_template *t,
                      const uint8_t *data, uint64_t data_len, uint64_t file_size,
                      uint64_t first_chunk, uint32_t chunk_size, const uint64_t *ranges,
                      uint32_t n_ranges, uint64_t max_frames, struct l2f_tx_stats *stats);
/* ---- streaming burst (csrc/txstream.c) ---- */
/* Why l2f_tx_stream returned (struct l2f_tx_burst.stop). */
#define L2F_BURST_END 0          /* next reached end */
#define L2F_BURST_DEADLINE 1     /* deadline_ns passed (maybe waiting for credit) */
#define L2F_BURST_BLOCKED 2      /* the kernel queue was full: retry soon */
#define L2F_BURST_NEWS 3         /* a FEEDBACK with SACK ranges or kernel drops was read */
#define L2F_BURST_FULL 4         /* the send log or the FEEDBACK arena is full */
#define L2F_BURST_ERROR 5        /* a send or receive failed after the burst began: see error */

/* One burst: what it may send, where it logs what it did. The caller owns every array. */
struct l2f_tx_burst {
    int32_t fb_fd;            /* socket the session's FEEDBACK arrives on */
    uint32_t turn_frames;     /* most frames sent between two reads of fb_fd */
    uint64_t next;            /* in: first chunk to send; out: the first one not sent */
    uint64_t end;             /* never send at or above this chunk */
    uint64_t credit;          /* in: the receiver's grant; out: raised by plain FEEDBACKs read */
    int64_t deadline_ns;      /* CLOCK_MONOTONIC: return by then */
    int64_t quiet_ns;         /* ...and once this long passed without a FEEDBACK whose cum_ack
                               * is new (the caller's retransmission timer); 0: no such bound */
    /* Send log: send_count[i] frames from send_start[i], sent at send_ns[i] (monotonic ns). */
    uint64_t *send_start;
    uint32_t *send_count;
    int64_t *send_ns;
    uint32_t max_sends;
    uint32_t n_sends;
    /* FEEDBACK frames read, in order: frame i at fb_arena + i*fb_slot, fb_len[i] bytes long as
     * received (more than fb_slot: cut short), read at fb_ns[i]. Frames that are not a valid
     * FEEDBACK of the template's session are dropped and counted in `ignored`. */
    uint8_t *fb_arena;
    uint64_t fb_arena_len;
    uint32_t fb_slot;
    uint32_t max_fb;
    uint32_t *fb_len;
    int64_t *fb_ns;
    /* For a plain FEEDBACK (no SACK ranges, no kernel drops: fb_plain[i] = 1) its header seq and
     * fields, so that the caller need not decode it; 0 for one the caller must decode itself. */
    uint8_t *fb_plain;
    uint64_t *fb_seq;
    uint64_t *fb_cum_ack;
    uint64_t *fb_credit;
    uint64_t *fb_highest;
    uint32_t n_fb;
    uint32_t stop;            /* L2F_BURST_* */
    int32_t error;            /* negative code with L2F_BURST_ERROR, else 0 */
    uint64_t ignored;         /* frames read and dropped (added to) */
};

/* Send new DATA chunks [next, end) of one file as l2f_tx_ranges does (same arguments), never at or
 * above the credit, reading FEEDBACK frames from b->fb_fd between sends and taking the credit of
 * those without SACK ranges or kernel drops; returns as soon as one has either (see txstream.c).
 * Returns 0 with b->stop saying why it returned, or a negative code when the arguments are bad
 * (then nothing was sent). */
int l2f_tx_stream(int32_t fd, int32_t ifindex, const struct l2f_tx_template *t,
                  const uint8_t *data, uint64_t data_len, uint64_t file_size,
                  uint64_t first_chunk, uint32_t chunk_size, struct l2f_tx_burst *b,
                  struct l2f_tx_stats *stats);
/* CDEF-END */

/* Internal to the C core (not exported to Python): the receive loop reclaims slots itself so that
 * it can read their descriptors before it reuses them (csrc/rxpath.c). */
uint64_t l2f_ring_load_tail(const struct l2f_ring *r); /* acquire */
uint64_t l2f_ring_load_head(const struct l2f_ring *r); /* relaxed: for the producer only */

#endif
