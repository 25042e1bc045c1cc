/*
 * libFuzzer target for the receive-path bookkeeping (csrc/rxpath.c, ring.c, writer.c): the
 * receive window, duplicate detection, SACK/credit feedback, ring publish/reclaim and the
 * writer's bounds, with frames from a hostile wire AND a hostile process scribbling on the
 * shared ring regions.  Built with ASan + UBSan by tests/fuzz/build.sh fuzz_rxwindow; any
 * invariant failure aborts, which libFuzzer reports as a crash (a hang is its timeout).
 *
 * Frames reach l2f_rx_run through an AF_UNIX datagram socketpair (the receive loop accepts any
 * datagram socket).  Rings are malloc'd (64-byte aligned) so ASan flags any access outside them.
 * The writers write into a memfd sized to the file: the file must never grow past file_size.
 *
 * Input: a config header (see take_config), then ops until the input runs out:
 *   0 send a DATA frame built here (valid CRC) for a chunk near the window, of a fuzzed length
 *   1 send a frame of raw fuzz bytes (any type, any CRC)
 *   2 l2f_rx_run with budget 0 and a small control arena
 *   3 l2f_rx_feedback, checking its invariants
 *   4 l2f_writer_drain on one ring (the consumer side)
 *   5 scribble fuzz bytes over one ring region (header counters, descriptors, slots)
 *   6 send a non-DATA control frame with a valid CRC
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datapath.h"
#include "fuzz_input.h"

#define MAX_RINGS 3
#define CTRL_MAX 4
#define MAX_FRAME 1024

static int sock_rx = -1, sock_tx = -1, file_fd = -1;

static void setup_once(void)
{
    if (sock_rx >= 0)
        return;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    sock_rx = sv[0];
    sock_tx = sv[1];
    file_fd = memfd_create("fuzz_rxwindow", MFD_CLOEXEC);
    CHECK(file_fd >= 0);
}

static void drain_socket(void)
{
    uint8_t buf[MAX_FRAME];
    while (recv(sock_rx, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        ;
}

static const uint8_t DST[6] = {2, 0, 0, 0, 0, 1}, SRC[6] = {2, 0, 0, 0, 0, 2};

static void send_frame(uint8_t type, uint16_t flags, uint32_t session, uint64_t seq,
                       const uint8_t *payload, uint32_t len, int corrupt_at)
{
    uint8_t frame[L2F_FRAME_OVERHEAD + MAX_FRAME];
    if (len > MAX_FRAME)
        len = MAX_FRAME;
    CHECK(l2f_build_header(frame, sizeof frame, DST, SRC, L2F_DEFAULT_ETHERTYPE, type, flags,
                           session, seq, payload, len) == L2F_FRAME_OVERHEAD);
    if (len)
        memcpy(frame + L2F_FRAME_OVERHEAD, payload, len);
    if (corrupt_at >= 0)
        frame[(uint32_t)corrupt_at % (L2F_FRAME_OVERHEAD + len)] ^= 0x10;
    (void)send(sock_tx, frame, L2F_FRAME_OVERHEAD + len, MSG_DONTWAIT); /* EAGAIN: queue full */
}

static void check_feedback(const struct l2f_rx_feedback *fb, uint64_t first, uint64_t end,
                           uint32_t window, uint64_t *last_cum)
{
    CHECK(fb->end_chunk == end);
    CHECK(fb->cum_ack >= first && fb->cum_ack <= end);
    CHECK(fb->cum_ack >= *last_cum); /* the cumulative ack never goes back */
    *last_cum = fb->cum_ack;
    CHECK(fb->highest >= fb->cum_ack && fb->highest <= end);
    CHECK(fb->credit >= fb->cum_ack && fb->credit - fb->cum_ack <= window);
    CHECK(fb->n_ranges <= L2F_FB_MAX_RANGES);
    uint64_t prev = fb->cum_ack;
    for (uint32_t i = 0; i < fb->n_ranges; i++) {
        uint64_t s = fb->ranges[2 * i], e = fb->ranges[2 * i + 1];
        CHECK(s > prev && s < e); /* ascending, disjoint, not touching, above cum_ack */
        CHECK(e <= fb->highest && e <= fb->cum_ack + window);
        prev = e;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup_once();
    drain_socket();
    struct input in = {data, size};

    /* ---- config ---- */
    uint32_t chunk_size = 1 + (uint32_t)(take(&in, 2) % 600);
    uint64_t file_size = take(&in, 2) % (64u * 1024);
    uint64_t nchunks = (file_size + chunk_size - 1) / chunk_size;
    uint64_t first;
    switch (take(&in, 1) % 4) {
    case 0: first = 0; break;
    case 1: first = take(&in, 2); break;
    case 2: first = (1ull << 62) - nchunks - 1; break; /* the highest index allowed */
    default: first = take(&in, 8); break;              /* mostly refused by l2f_rx_new */
    }
    uint32_t window = 64u << (take(&in, 1) % 4);
    uint32_t batch = 1 + (uint32_t)(take(&in, 1) % 16);
    uint32_t publish_bytes = (uint32_t)take(&in, 2) * 8;
    uint8_t opts = (uint8_t)take(&in, 1);
    uint32_t session = 7;

    /* opts & 8: a discarding bench path (L2F_RX_DISCARD), which takes no written bitmap. */
    const int discard = (opts & 8) != 0;
    uint32_t credit_slots = discard ? batch + 1 + (uint32_t)(take(&in, 2) % 4096) : 0;

    uint64_t wlen = (nchunks + 7) / 8;
    uint8_t *written = NULL;
    if ((opts & 1) && wlen && !discard) {
        written = malloc(wlen);
        CHECK(written);
        for (uint64_t i = 0; i < wlen; i++)
            written[i] = (opts & 2) ? (uint8_t)take(&in, 1) : 0;
    }

    struct l2f_rx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.fd = sock_rx;
    cfg.ethertype = L2F_DEFAULT_ETHERTYPE;
    cfg.session = session;
    cfg.chunk_size = chunk_size;
    cfg.first_chunk = first;
    cfg.file_size = file_size;
    cfg.window = window;
    cfg.batch = batch;
    cfg.written = written;
    cfg.written_len = written ? wlen : 0;
    cfg.publish_bytes = publish_bytes;
    cfg.publish_us = 0;
    cfg.flags = discard ? L2F_RX_DISCARD : 0;
    cfg.credit_slots = credit_slots;
    struct l2f_rx *rx = NULL;
    if (l2f_rx_new(&cfg, &rx) < 0) {
        free(written);
        return 0;
    }
    CHECK(ftruncate(file_fd, 0) == 0 && ftruncate(file_fd, (off_t)file_size) == 0);

    /* ---- rings: one producer handle inside rx, one consumer handle here ---- */
    uint8_t *region[MAX_RINGS] = {0};
    uint64_t rsize[MAX_RINGS] = {0};
    struct l2f_ring cons[MAX_RINGS];
    int cons_ok[MAX_RINGS] = {0};
    uint32_t nrings = 1 + (uint32_t)(take(&in, 1) % MAX_RINGS);
    uint32_t min_slot = (L2F_FRAME_OVERHEAD + chunk_size + 63) / 64 * 64;
    for (uint32_t i = 0; i < nrings; i++) {
        uint32_t nslots = 2u << (take(&in, 1) % 6);
        uint32_t slot = min_slot + 64 * (uint32_t)(take(&in, 1) % 3);
        int64_t need = l2f_ring_size(nslots, slot);
        CHECK(need > 0);
        rsize[i] = (uint64_t)need;
        region[i] = aligned_alloc(64, (size_t)need);
        CHECK(region[i]);
        CHECK(l2f_ring_init(region[i], rsize[i], nslots, slot) == 0);
        if (opts & 4) {
            /* A header another process left behind: scribble before anyone attaches. */
            uint32_t off = (uint32_t)take(&in, 2) % L2F_RING_HDR_SIZE;
            uint8_t len = (uint8_t)(take(&in, 1) % 16);
            for (uint8_t k = 0; k < len && off + k < L2F_RING_HDR_SIZE; k++)
                region[i][off + k] = (uint8_t)take(&in, 1);
        }
        (void)l2f_rx_add_ring(rx, region[i], rsize[i]); /* may refuse a scribbled header */
        cons_ok[i] = l2f_ring_attach(&cons[i], region[i], rsize[i]) == 0;
    }

    /* ---- ops ---- */
    uint8_t ctrl[CTRL_MAX * 2048];
    uint32_t ctrl_lens[CTRL_MAX];
    uint64_t last_cum = first;
    int scribbled = (opts & 4) != 0;
    unsigned ops = 0;
    while (in.n && ops++ < 64) {
        switch (take(&in, 1) % 7) {
        case 0: {
            int64_t delta = (int8_t)take(&in, 1);
            uint64_t seq = first + (uint64_t)((int64_t)nchunks / 2 + delta);
            if (take(&in, 1) & 1)
                seq = first + (uint64_t)(delta < 0 ? -delta : delta);
            uint64_t k = seq - first;
            uint32_t len = chunk_size;
            if (k + 1 == nchunks)
                len = (uint32_t)(file_size - k * chunk_size);
            uint8_t how = (uint8_t)take(&in, 1);
            if (how & 1)
                len = (uint32_t)take(&in, 2) % (MAX_FRAME + 1); /* usually the wrong length */
            uint8_t payload[MAX_FRAME];
            memset(payload, (int)(seq & 0xFF), sizeof payload);
            uint16_t flags = (how & 2) ? 0x0002 : 0; /* LAST */
            if (how & 4)
                flags |= 0x0001; /* ZLIB: refused by the data path */
            uint32_t sess = (how & 8) ? session + 1 : session;
            send_frame(0x20, flags, sess, seq, payload, len, (how & 16) ? (int)take(&in, 1) : -1);
            break;
        }
        case 1: {
            uint8_t frame[MAX_FRAME];
            uint32_t len = (uint32_t)take(&in, 2) % MAX_FRAME;
            for (uint32_t k = 0; k < len; k++)
                frame[k] = (uint8_t)take(&in, 1);
            (void)send(sock_tx, frame, len, MSG_DONTWAIT);
            break;
        }
        case 2: {
            uint32_t count = 0;
            uint32_t cmax = (uint32_t)take(&in, 1) % (CTRL_MAX + 1);
            int rc = l2f_rx_run(rx, 1 + (uint32_t)take(&in, 1) % 64, 0, ctrl, sizeof ctrl,
                                2048, ctrl_lens, cmax, &count);
            CHECK(rc >= 0 || rc == -L2F_E_ARG); /* -L2F_E_ARG: no ring could be added */
            CHECK(count <= cmax);
            for (uint32_t k = 0; k < count; k++)
                CHECK(ctrl_lens[k] <= 2048);
            break;
        }
        case 3: {
            struct l2f_rx_feedback fb;
            CHECK(l2f_rx_feedback(rx, &fb) >= 0);
            check_feedback(&fb, first, first + nchunks, window, &last_cum);
            if (discard)
                CHECK(fb.free_slots == credit_slots); /* slots are freed as they are read */
            break;
        }
        case 4: {
            uint32_t i = (uint32_t)take(&in, 1) % nrings;
            if (!cons_ok[i])
                break;
            struct l2f_writer_stats st;
            memset(&st, 0, sizeof st);
            int64_t w = l2f_writer_drain(&cons[i], file_fd, first, chunk_size, file_size,
                                         1 + (uint32_t)take(&in, 1) % 64, 0, &st);
            CHECK(w >= 0 || w == -EPROTO);
            struct stat sb;
            CHECK(fstat(file_fd, &sb) == 0 && (uint64_t)sb.st_size == file_size);
            /* The loop checked every chunk's length as the writer does: no refusals unless
             * someone scribbled on the ring. */
            if (!scribbled)
                CHECK(st.refused == 0);
            if (discard && !scribbled)
                CHECK(w == 0); /* a discarding path publishes nothing */
            break;
        }
        case 5: {
            uint32_t i = (uint32_t)take(&in, 1) % nrings;
            uint64_t off;
            uint8_t len = (uint8_t)(take(&in, 1) % 24);
            switch (take(&in, 1) % 4) { /* aim at what the two sides read from each other */
            case 0: off = 128; len = 8; break; /* head (struct ring_shared in ring.c) */
            case 1: off = 256; len = 8; break; /* tail */
            case 2: off = L2F_RING_HDR_SIZE + take(&in, 2) % (rsize[i] / 64) * 4; break;
            default: off = take(&in, 3) % rsize[i]; break;
            }
            for (uint8_t k = 0; k < len && off + k < rsize[i]; k++)
                region[i][off + k] = (uint8_t)take(&in, 1);
            scribbled = 1;
            break;
        }
        default: {
            uint8_t body[64];
            uint32_t len = (uint32_t)take(&in, 1) % sizeof body;
            memset(body, 0xA5, sizeof body);
            send_frame((uint8_t)(take(&in, 1) & 1 ? 0x30 : 0x21), 0, session, take(&in, 1), body,
                       len, -1);
            break;
        }
        }
    }
    struct l2f_rx_feedback fb;
    CHECK(l2f_rx_feedback(rx, &fb) >= 0);
    check_feedback(&fb, first, first + nchunks, window, &last_cum);

    l2f_rx_free(rx);
    for (uint32_t i = 0; i < nrings; i++)
        free(region[i]);
    free(written);
    return 0;
}
