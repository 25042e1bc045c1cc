/*
 * libFuzzer target for the echo responder's per-frame decision (csrc/echo.c
 * l2f_echo_handle_frame): hostile frames, forged source MACs and arbitrary clocks, without a
 * socket or a thread.  Built with ASan + UBSan by tests/fuzz/build.sh; a broken invariant aborts.
 *
 * Input layout (missing bytes read as 0):
 *   [0]     rate selector: low nibble -> per-peer burst 0..15, high nibble -> global burst 0..15
 *   records: [0] flags, [1..2] u16 LE length, [3..4] u16 LE clock step in microseconds,
 *            then up to `length` frame bytes.  Flag bit 0 turns the record into a well-formed
 *            PING header (our MAC as destination unless bit 1, EtherType, magic, version, type
 *            PING, payload length = what follows the header unless bit 2) with a correct CRC,
 *            so the fuzzer reaches the checks behind the parser; bit 3 steps the clock back.
 * Invariants:
 *   - the result is 0 (no reply) or a PONG of 38 + payload bytes that parses OK, goes back to
 *     the PING's source from our MAC, session 0, same seq, payload byte for byte the PING's;
 *   - every frame lands in exactly one counter (answered, rate_limited, or one drop reason);
 *   - the PONGs never exceed what the global bucket allows (burst + rate x the span of the
 *     clock).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "echo.h"
#include "l2fast_core.h"
#include "fuzz_input.h"

#define MAX_FRAMES 128
#define SLOT 1600 /* MTU 1500 + 14 + 18 + room */

static const uint8_t US[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};

static uint64_t sum_outcomes(const struct l2f_echo_counters *c)
{
    uint64_t n = c->answered + c->rate_limited + c->own_frame + c->bad_source + c->not_for_us +
                 c->bad_payload + c->not_ping;
    for (int v = 1; v < L2F_V_COUNT; v++)
        n += c->verdicts[v];
    return n;
}

static void make_ping(uint8_t *frame, size_t len, uint8_t flags)
{
    if (len < L2F_FRAME_OVERHEAD)
        return;
    const uint8_t *dst = (flags & 2) ? frame : US; /* bit 1: keep the fuzzer's destination */
    uint8_t dst_copy[6], src[6];
    memcpy(dst_copy, dst, 6);
    memcpy(src, frame + 6, 6);
    uint64_t seq = 0;
    memcpy(&seq, frame + 26, sizeof seq);
    size_t plen = len - L2F_FRAME_OVERHEAD;
    if (flags & 4)
        plen = frame[20]; /* a claimed length that may not fit */
    if (plen > L2F_MAX_PAYLOAD)
        plen = L2F_MAX_PAYLOAD;
    uint8_t payload_len_ok = plen <= len - L2F_FRAME_OVERHEAD;
    CHECK(l2f_build_header(frame, len, dst_copy, src, L2F_DEFAULT_ETHERTYPE, 0x38, 0, 0, seq,
                           frame + L2F_FRAME_OVERHEAD,
                           payload_len_ok ? plen : len - L2F_FRAME_OVERHEAD) == L2F_FRAME_OVERHEAD);
    if (!payload_len_ok) { /* claim more than the frame holds: BAD_LENGTH */
        frame[L2F_ETH_HLEN + 6] = (uint8_t)(plen >> 8);
        frame[L2F_ETH_HLEN + 7] = (uint8_t)plen;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    uint8_t rates = size > 0 ? data[pos++] : 0;
    struct l2f_echo_config cfg;
    memset(&cfg, 0, sizeof cfg);
    memcpy(cfg.mac, US, 6);
    cfg.ethertype = L2F_DEFAULT_ETHERTYPE;
    cfg.mtu = 1500;
    cfg.batch = 8;
    cfg.rate_per_peer = 200.0;
    cfg.burst_per_peer = (double)(rates & 15);
    cfg.rate_global = 1000.0;
    cfg.burst_global = (double)(rates >> 4);
    cfg.hash_seed = 0x1234;
    struct l2f_echo *e = NULL;
    CHECK(l2f_echo_new(&cfg, &e) == 0 && e != NULL);

    /* Each frame gets its own malloc'd buffer of exactly SLOT bytes: ASan flags any access
     * beyond it. */
    int64_t now = 1000000000, earliest = now, latest = now;
    uint64_t frames = 0;
    for (int i = 0; i < MAX_FRAMES && pos + 5 <= size; i++) {
        uint8_t flags = data[pos];
        size_t len = (size_t)data[pos + 1] | (size_t)data[pos + 2] << 8;
        int64_t step_us = (int64_t)data[pos + 3] | (int64_t)data[pos + 4] << 8;
        pos += 5;
        now += (flags & 8) ? -step_us * 1000 : step_us * 1000;
        if (now > latest)
            latest = now;
        if (now < earliest)
            earliest = now;
        size_t avail = size - pos;
        if (len > SLOT)
            len = SLOT;
        if (len > avail)
            len = avail;
        uint8_t *frame = malloc(SLOT);
        CHECK(frame != NULL);
        memset(frame, 0, SLOT);
        memcpy(frame, data + pos, len);
        pos += len;
        if (flags & 1)
            make_ping(frame, len, flags);
        uint8_t before[SLOT];
        memcpy(before, frame, len);

        int rc = l2f_echo_handle_frame(e, frame, len, SLOT, now);
        frames++;
        CHECK(rc >= 0);
        if (rc > 0) {
            struct l2f_frame_info ping, pong;
            CHECK(l2f_parse_frame(before, len, L2F_DEFAULT_ETHERTYPE, &ping) == L2F_V_OK);
            CHECK((size_t)rc == L2F_FRAME_OVERHEAD + ping.payload_len && (size_t)rc <= len);
            CHECK(l2f_parse_frame(frame, (size_t)rc, L2F_DEFAULT_ETHERTYPE, &pong) == L2F_V_OK);
            CHECK(ping.type == 0x38 && pong.type == 0x39);
            CHECK(memcmp(pong.dst, ping.src, 6) == 0 && memcmp(pong.src, US, 6) == 0);
            CHECK(memcmp(ping.dst, US, 6) == 0 && !(ping.src[0] & 1));
            CHECK(pong.session == 0 && pong.flags == 0 && pong.seq == ping.seq);
            CHECK(memcmp(frame + L2F_FRAME_OVERHEAD, before + L2F_FRAME_OVERHEAD,
                         ping.payload_len) == 0);
        }
        free(frame);
    }

    struct l2f_echo_counters c;
    CHECK(l2f_echo_counters(e, &c) == 0);
    CHECK(c.rx == frames && sum_outcomes(&c) == frames);
    /* Tokens are minted only while the clock moves past every time already seen. */
    double elapsed_s = (double)(latest - earliest) * 1e-9;
    CHECK((double)c.answered <= cfg.burst_global + cfg.rate_global * elapsed_s + 1.0);
    l2f_echo_free(e);
    return 0;
}
