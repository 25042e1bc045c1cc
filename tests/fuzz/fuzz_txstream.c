/*
 * libFuzzer target for the sender's streaming burst (csrc/txstream.c l2f_tx_stream): whatever
 * arrives on its FEEDBACK socket (hostile frames, forged FEEDBACKs with any fields, truncated
 * ones), the burst sends exactly the chunks it logs, never at or above the credit it was given or
 * read from a plain FEEDBACK, and keeps exactly the frames that are this session's FEEDBACK.
 * Built with ASan + UBSan by tests/fuzz/build.sh fuzz_txstream; a broken invariant aborts.
 *
 * DATA leaves on one AF_UNIX datagram pair and FEEDBACK arrives on another (the burst accepts
 * any datagram socket; ifindex 0 sends to the peer).
 *
 * Input: a config header (see below), then records until the input runs out:
 *   [0] flags, [1] length, ([2..3] seq with flag bit 0), then up to `length` bytes.  Flag bit 0
 *   makes the record a well-formed FEEDBACK header (our session unless bit 1, correct CRC unless bit 2) around the record's
 *   bytes as payload, so the fuzzer reaches the field checks behind the parser; without it the
 *   bytes are sent as a frame as they are.
 * Invariants:
 *   - the call returns 0 with a known stop reason; `next` lies in [start, end];
 *   - the sends are consecutive from `start`, add up to next - start, and each lies below the
 *     final credit; the peer received exactly those DATA frames, in order, with valid CRCs;
 *   - the final credit is the larger of the initial one and every kept plain FEEDBACK's credit;
 *   - every kept frame parses as a FEEDBACK of our session; a plain one has no ranges and no
 *     drops and its logged fields are the frame's; kept + ignored <= frames sent to it;
 *   - stop NEWS only with a kept frame that is not plain.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "datapath.h"
#include "l2fast_core.h"
#include "fuzz_input.h"

#define CHUNK 64
#define CHUNKS 200
#define MAX_SENDS 8
#define MAX_FB 8
#define SLOT 512
#define SESSION 0x5EEDu
#define ET 0x88B5

static const uint8_t DST[6] = {0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee};
static const uint8_t SRC[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0xff};

static int data_tx = -1, data_rx = -1, fb_tx = -1, fb_rx = -1;
static uint8_t file[CHUNK * CHUNKS];

static void setup_once(void)
{
    if (data_tx >= 0)
        return;
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    data_tx = sv[0];
    data_rx = sv[1];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    fb_tx = sv[0];
    fb_rx = sv[1];
    int big = 4 << 20;
    setsockopt(data_tx, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(data_rx, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    for (size_t i = 0; i < sizeof file; i++)
        file[i] = (uint8_t)(i * 31 + 7);
}

static void drain(int fd)
{
    uint8_t buf[SLOT];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        ;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup_once();
    drain(data_rx);
    drain(fb_rx);
    struct input in = {data, size};
    const uint64_t first = take(&in, 1);
    const uint64_t start = first + take(&in, 1) % CHUNKS;
    const uint64_t end = start + take(&in, 1) % (first + CHUNKS - start + 1);
    const uint64_t credit0 = first + take(&in, 1);
    const uint32_t turn = (uint32_t)take(&in, 1) % 70 + 1;

    /* The records, sent as datagrams before the burst starts. */
    uint32_t sent_frames = 0;
    while (in.n && sent_frames < 64) {
        const uint8_t flags = (uint8_t)take(&in, 1);
        size_t len = (size_t)take(&in, 1);
        const uint64_t fb_seq = (flags & 1) ? take(&in, 2) : 0;
        len = len < in.n ? len : in.n;
        uint8_t frame[SLOT + 88]; /* longer than a slot: such frames arrive cut short */
        size_t flen;
        if (flags & 1) {
            size_t plen = len + L2F_FRAME_OVERHEAD <= sizeof frame ? len : sizeof frame - 38;
            CHECK(l2f_build_header(frame, sizeof frame, SRC, DST, ET, 0x21, 0,
                                   (flags & 2) ? SESSION + 1 : SESSION, fb_seq, in.p,
                                   plen) == L2F_FRAME_OVERHEAD);
            memcpy(frame + L2F_FRAME_OVERHEAD, in.p, plen);
            if (flags & 4)
                frame[L2F_FRAME_OVERHEAD - 1] ^= 1; /* break the CRC */
            flen = L2F_FRAME_OVERHEAD + plen;
        } else {
            flen = len < sizeof frame ? len : sizeof frame;
            memcpy(frame, in.p, flen);
        }
        in.p += len;
        in.n -= len;
        if (send(fb_tx, frame, flen, MSG_DONTWAIT) == (ssize_t)flen)
            sent_frames++;
    }

    struct l2f_tx_template t;
    memset(&t, 0, sizeof t);
    memcpy(t.dst, DST, 6);
    memcpy(t.src, SRC, 6);
    t.ethertype = ET;
    t.session = SESSION;
    t.batch = 16;
    static uint64_t send_start[MAX_SENDS], cum[MAX_FB], cred[MAX_FB], high[MAX_FB], seq[MAX_FB];
    static uint32_t send_count[MAX_SENDS], fb_len[MAX_FB];
    static int64_t send_ns[MAX_SENDS], fb_ns[MAX_FB];
    static uint8_t arena[MAX_FB * SLOT], plain[MAX_FB];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    struct l2f_tx_burst b = {
        .fb_fd = fb_rx,
        .turn_frames = turn,
        .next = start,
        .end = end,
        .credit = credit0,
        .deadline_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + 1000000,
        .send_start = send_start,
        .send_count = send_count,
        .send_ns = send_ns,
        .max_sends = MAX_SENDS,
        .fb_arena = arena,
        .fb_arena_len = sizeof arena,
        .fb_slot = SLOT,
        .max_fb = MAX_FB,
        .fb_len = fb_len,
        .fb_ns = fb_ns,
        .fb_plain = plain,
        .fb_seq = seq,
        .fb_cum_ack = cum,
        .fb_credit = cred,
        .fb_highest = high,
    };
    CHECK(l2f_tx_stream(data_tx, 0, &t, file, sizeof file, sizeof file, first, CHUNK, &b, NULL) ==
          0);
    CHECK(b.stop <= L2F_BURST_ERROR && b.stop != L2F_BURST_ERROR);
    CHECK(start <= b.next && b.next <= end);

    /* Sends: consecutive, below the final credit; the peer got exactly them. */
    uint64_t at = start;
    for (uint32_t i = 0; i < b.n_sends; i++) {
        CHECK(send_start[i] == at && send_count[i] > 0);
        at += send_count[i];
        CHECK(at <= b.credit && at <= end);
    }
    CHECK(at == b.next);
    for (uint64_t k = start; k < b.next; k++) {
        uint8_t buf[SLOT];
        ssize_t got = recv(data_rx, buf, sizeof buf, MSG_DONTWAIT);
        CHECK(got == L2F_FRAME_OVERHEAD + CHUNK);
        struct l2f_frame_info info;
        CHECK(l2f_parse_frame(buf, (size_t)got, ET, &info) == L2F_V_OK);
        CHECK(info.type == 0x20 && info.seq == k && info.session == SESSION);
        CHECK(memcmp(buf + L2F_FRAME_OVERHEAD, file + (k - first) * CHUNK, CHUNK) == 0);
    }
    uint8_t extra[SLOT];
    CHECK(recv(data_rx, extra, sizeof extra, MSG_DONTWAIT) < 0);

    /* Kept frames: this session's FEEDBACKs; the credit is the largest plain grant. */
    uint64_t expect_credit = credit0;
    CHECK(b.n_fb <= MAX_FB);
    for (uint32_t i = 0; i < b.n_fb; i++) {
        const uint8_t *f = arena + (size_t)i * SLOT;
        const uint32_t len = fb_len[i] < SLOT ? fb_len[i] : SLOT;
        struct l2f_frame_info info;
        CHECK(l2f_parse_frame(f, len, ET, &info) == L2F_V_OK);
        CHECK(info.type == 0x21 && info.session == SESSION);
        if (plain[i]) {
            const uint8_t *p = f + info.payload_off;
            CHECK(info.payload_len >= 30);
            CHECK(p[24] == 0 && p[25] == 0 && p[26] == 0 && p[27] == 0); /* no drops */
            CHECK(p[28] == 0 && p[29] == 0);                             /* no ranges */
            CHECK(cum[i] == be64(p) && cred[i] == be64(p + 8) && high[i] == be64(p + 16));
            CHECK(seq[i] == info.seq);
            if (cred[i] > expect_credit)
                expect_credit = cred[i];
        }
    }
    CHECK(b.credit == expect_credit);
    if (b.stop == L2F_BURST_NEWS) { /* in the last batch read: nothing was sent after it */
        uint32_t news = 0;
        for (uint32_t i = 0; i < b.n_fb; i++)
            news += !plain[i];
        CHECK(news > 0);
    }
    CHECK(b.n_fb + b.ignored <= sent_frames);
    return 0;
}
