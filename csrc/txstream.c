/*
 * The sender's streaming burst (csrc/datapath.h, l2f_tx_stream): new DATA of one file sent as far
 * as the receiver's credit allows, with the FEEDBACK frames that extend the credit read here, in C,
 * instead of one trip through the Python event loop per FEEDBACK.
 *
 * Why: at MTU 65535 on the veth lab the sending core is the bottleneck, and its Python (event
 * loop, FEEDBACK decode, the sans-IO window) was 15 % of it, ~240 us per FEEDBACK at ~620 a
 * second; a temporary 100 us more per FEEDBACK cost 7.6 % of the throughput (BENCHMARKS.md,
 * "Session 9").  The work that must stay in Python (acknowledgements, RTT, loss detection,
 * pacing) does not need to happen per FEEDBACK in the common case: FEEDBACKs of one receive
 * process are cumulative, so the newest one of a run says everything the older ones did
 * (reliability.coalesce_feedback).  What does have to happen per FEEDBACK is taking its credit, and
 * that is one field at a fixed offset.
 *
 * So a burst loops: send [next, min(credit, end)) with l2f_tx_ranges; read whatever FEEDBACK
 * frames are queued (waiting for one only when the credit is used up); take the credit of each
 * plain one.  It logs every send (first chunk, count, time) and keeps every FEEDBACK frame it read
 * with its arrival time, and the caller replays both into its window afterwards.  It returns at
 * the deadline, once the receiver has been quiet for as long as the caller's retransmission timer
 * allows (the timer restarts on every new acknowledgement, so it is bound to no fixed time), at
 * `end`, when a log is full, on backpressure or a send error, and as soon as a
 * FEEDBACK carries news that the window must act on before anything more is sent: SACK ranges
 * (the receiver misses chunks: maybe a loss) or kernel drops (pacing).  Such a FEEDBACK's credit
 * is not taken here, and the caller decodes it in full; the rest of the frames of that read are
 * kept as usual, and nothing more is sent.
 *
 * Nothing here decides what a frame means beyond that: the verdict, type and session are checked
 * with the one frame parser (l2f_parse_frame, CRC included), and a frame that fails them is
 * counted and dropped, as the Python reader does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "datapath.h"
#include "l2fast_core.h"
#include "wire_guard.h"

#define TYPE_FEEDBACK 0x21 /* PROTOCOL.md §Frame types */
/* PROTOCOL.md §FEEDBACK: offsets in the payload. */
#define FB_CUM_ACK 0
#define FB_CREDIT 8
#define FB_HIGHEST 16
#define FB_DROPS 24
#define FB_NRANGES 28
#define FB_FIXED 30

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Milliseconds to wait for the next FEEDBACK: until the deadline, rounded up, at least 1. */
static int32_t wait_ms(int64_t deadline_ns, int64_t now)
{
    int64_t ms = (deadline_ns - now + 999999) / 1000000;
    return ms < 1 ? 1 : ms > 1000 ? 1000 : (int32_t)ms;
}

/* What one received frame is to the burst. */
enum fb_kind { FB_IGNORED, FB_PLAIN, FB_NEWS };

/* The fields of a plain FEEDBACK. */
struct plain_fb {
    uint64_t seq, cum_ack, credit, highest;
};

static enum fb_kind classify(const uint8_t *frame, uint32_t len, uint16_t ethertype,
                             uint32_t session, struct plain_fb *out)
{
    struct l2f_frame_info info;
    if (l2f_parse_frame(frame, len, ethertype, &info) != L2F_V_OK || info.type != TYPE_FEEDBACK ||
        info.session != session)
        return FB_IGNORED;
    const struct l2f_wire w = l2f_wire_view(frame + info.payload_off, info.payload_len);
    uint32_t drops;
    uint16_t nranges;
    if (l2f_wire_be64(&w, FB_CUM_ACK, &out->cum_ack) || l2f_wire_be64(&w, FB_CREDIT, &out->credit) ||
        l2f_wire_be64(&w, FB_HIGHEST, &out->highest) || l2f_wire_be32(&w, FB_DROPS, &drops) ||
        l2f_wire_be16(&w, FB_NRANGES, &nranges))
        return FB_NEWS; /* too short to be a FEEDBACK: the caller's decoder says why */
    if (drops || nranges)
        return FB_NEWS;
    out->seq = info.seq;
    return FB_PLAIN;
}

int l2f_tx_stream(int32_t fd, int32_t ifindex, const struct l2f_tx_template *t,
                  const uint8_t *data, uint64_t data_len, uint64_t file_size,
                  uint64_t first_chunk, uint32_t chunk_size, struct l2f_tx_burst *b,
                  struct l2f_tx_stats *stats)
{
    if (!b || !t || b->fb_fd < 0 || !b->send_start || !b->send_count || !b->send_ns ||
        b->max_sends == 0 || b->max_fb == 0 || !b->fb_arena || !b->fb_len || !b->fb_ns ||
        !b->fb_plain || !b->fb_seq || !b->fb_cum_ack || !b->fb_credit || !b->fb_highest ||
        b->fb_slot < L2F_FRAME_OVERHEAD || b->turn_frames == 0 || b->next > b->end ||
        (uint64_t)b->max_fb * b->fb_slot > b->fb_arena_len)
        return -L2F_E_ARG;
    b->n_sends = b->n_fb = 0;
    b->error = 0;
    b->stop = L2F_BURST_END;
    /* The caller's retransmission timer restarts whenever the receiver acknowledges something
     * new (RFC 6298 §5.3), so the burst returns only once it has been quiet that long. */
    uint64_t cum_seen = 0;
    const int64_t start = mono_ns();
    int64_t deadline = b->deadline_ns;
    if (b->quiet_ns > 0 && start + b->quiet_ns < deadline)
        deadline = start + b->quiet_ns;
    for (;;) {
        int64_t now = mono_ns();
        const uint64_t limit = b->credit < b->end ? b->credit : b->end;
        if (b->next < limit) {
            if (b->n_sends == b->max_sends) {
                b->stop = L2F_BURST_FULL;
                return 0;
            }
            uint64_t want = limit - b->next;
            want = want < b->turn_frames ? want : b->turn_frames;
            const uint64_t range[2] = {b->next, b->next + want};
            int64_t took = l2f_tx_ranges(fd, ifindex, t, data, data_len, file_size, first_chunk,
                                         chunk_size, range, 1, want, stats);
            if (took < 0) {
                if (b->n_sends == 0 && took == -L2F_E_ARG)
                    return (int)took; /* a bad call: nothing was sent */
                b->error = (int32_t)took;
                b->stop = L2F_BURST_ERROR;
                return 0;
            }
            if (took > 0) {
                b->send_start[b->n_sends] = b->next;
                b->send_count[b->n_sends] = (uint32_t)took;
                b->send_ns[b->n_sends] = now;
                b->n_sends++;
                b->next += (uint64_t)took;
            }
            if ((uint64_t)took < want) {
                b->stop = L2F_BURST_BLOCKED;
                return 0;
            }
        }
        if (b->next >= b->end) {
            b->stop = L2F_BURST_END;
            return 0;
        }
        now = mono_ns();
        if (now >= deadline) {
            b->stop = L2F_BURST_DEADLINE;
            return 0;
        }
        if (b->n_fb == b->max_fb) {
            b->stop = L2F_BURST_FULL;
            return 0;
        }
        /* Read the FEEDBACKs queued; with no credit left, wait for one (until the deadline). */
        const int starved = b->next >= b->credit;
        uint8_t *slots = b->fb_arena + (size_t)b->n_fb * b->fb_slot;
        int got = l2f_recv_batch(b->fb_fd, slots, (size_t)(b->max_fb - b->n_fb) * b->fb_slot,
                                 b->fb_slot, b->max_fb - b->n_fb, b->fb_len + b->n_fb, NULL,
                                 starved ? wait_ms(deadline, now) : 0);
        if (got < 0 && got != -EINTR && got != -EAGAIN) {
            b->error = got;
            b->stop = L2F_BURST_ERROR;
            return 0;
        }
        const int64_t arrived = mono_ns();
        int news = 0;
        /* Keep this session's FEEDBACKs in order: a frame moves down into the slot of one
         * dropped before it (its own bytes only, so a read full of junk costs linear time). */
        const uint32_t first = b->n_fb;
        for (int r = 0; r < got; r++) {
            const uint32_t from = first + (uint32_t)r, k = b->n_fb;
            const uint32_t full = b->fb_len[from];
            const uint32_t len = full < b->fb_slot ? full : b->fb_slot;
            const uint8_t *frame = b->fb_arena + (size_t)from * b->fb_slot;
            struct plain_fb fb = {0, 0, 0, 0};
            const enum fb_kind kind = classify(frame, len, t->ethertype, t->session, &fb);
            if (kind == FB_IGNORED) {
                b->ignored++;
                continue;
            }
            if (k != from) {
                memcpy(b->fb_arena + (size_t)k * b->fb_slot, frame, len);
                b->fb_len[k] = full;
            }
            b->fb_plain[k] = kind == FB_PLAIN;
            if (kind == FB_PLAIN) {
                b->fb_seq[k] = fb.seq;
                b->fb_cum_ack[k] = fb.cum_ack;
                b->fb_credit[k] = fb.credit;
                b->fb_highest[k] = fb.highest;
                if (fb.credit > b->credit)
                    b->credit = fb.credit;
                if (fb.cum_ack > cum_seen && b->quiet_ns > 0) {
                    cum_seen = fb.cum_ack;
                    deadline = arrived + b->quiet_ns < b->deadline_ns ? arrived + b->quiet_ns
                                                                      : b->deadline_ns;
                }
            } else {
                news = 1;
            }
            b->fb_ns[k] = arrived;
            b->n_fb++;
        }
        if (news) {
            b->stop = L2F_BURST_NEWS;
            return 0;
        }
        if (starved && b->next >= b->credit && mono_ns() >= deadline) {
            b->stop = L2F_BURST_DEADLINE;
            return 0;
        }
    }
}
