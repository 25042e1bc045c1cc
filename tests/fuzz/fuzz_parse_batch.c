/*
 * libFuzzer target for the C frame parser (csrc/frame.c) and CRC32C (csrc/crc32c.c).
 * Built with ASan + UBSan by tests/fuzz/build.sh; any invariant failure aborts, which libFuzzer
 * reports as a crash.
 *
 * Input layout (everything optional; missing bytes read as 0):
 *   [0..1]  slot size selector (u16 LE): slot_size = 1 + sel % 2048, so slots both shorter and
 *           longer than the 38-byte header occur
 *   [2]     bit 0: use the default EtherType, else the u16 BE at [3..4]; bit 1: also compare the
 *           CRC paths over a long buffer tiled from the input
 *   [5..]   records: u16 LE claimed length, then up to that many bytes of frame data (at most
 *           slot_size are stored).  The claimed length goes into lens[] as is, so lengths above
 *           slot_size (frames truncated by recv) and above the stored data are both exercised.
 * The arena is exactly n * slot_size bytes from malloc, so ASan flags any read past it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "l2fast_core.h"
#include "fuzz_input.h"

#define MAX_FRAMES 64

static size_t take_bytes(const uint8_t *data, size_t size, size_t *pos, uint8_t *dst, size_t n)
{
    size_t avail = *pos < size ? size - *pos : 0;
    size_t k = n < avail ? n : avail;
    if (k)
        memcpy(dst, data + *pos, k);
    *pos += k;
    return k;
}

static int info_equal(const struct l2f_frame_info *a, const struct l2f_frame_info *b)
{
    return a->verdict == b->verdict && a->type == b->type && a->version == b->version &&
           a->flags == b->flags && a->session == b->session && a->seq == b->seq &&
           a->payload_off == b->payload_off && a->payload_len == b->payload_len &&
           memcmp(a->dst, b->dst, 6) == 0 && memcmp(a->src, b->src, 6) == 0;
}

static void check_frame(const uint8_t *frame, size_t len, uint16_t ethertype,
                        const struct l2f_frame_info *fi)
{
    static const uint8_t zero6[6];
    CHECK(fi->verdict >= 0 && fi->verdict < L2F_V_COUNT);

    /* MAC rule: present bytes are copied, absent ones are zero. */
    CHECK(memcmp(fi->dst, len >= 6 ? frame : zero6, 6) == 0);
    CHECK(memcmp(fi->src, len >= 12 ? frame + 6 : zero6, 6) == 0);

    if (fi->verdict >= L2F_V_SHORT && fi->verdict <= L2F_V_BAD_MAGIC) {
        /* Header not reached: every header field stays 0. */
        CHECK(fi->type == 0 && fi->version == 0 && fi->flags == 0 && fi->session == 0 &&
              fi->seq == 0 && fi->payload_off == 0 && fi->payload_len == 0);
        CHECK(fi->verdict != L2F_V_SHORT || len < L2F_FRAME_OVERHEAD);
        return;
    }
    CHECK(len >= L2F_FRAME_OVERHEAD);
    CHECK(fi->payload_off == L2F_FRAME_OVERHEAD);
    CHECK(fi->payload_len <= 0xFFFF);
    if (fi->verdict == L2F_V_BAD_LENGTH)
        CHECK((size_t)fi->payload_off + fi->payload_len > len);
    if (fi->verdict != L2F_V_OK)
        return;

    CHECK((size_t)fi->payload_off + fi->payload_len <= len);
    CHECK(fi->version == L2F_VERSION);
    CHECK(l2f_type_known(fi->type));
    /* Rebuilding the header from what the parser reported must give back the same 38 bytes:
     * this checks every decoded field and the CRC with the independent table path. */
    uint8_t hdr[L2F_FRAME_OVERHEAD];
    int rc = l2f_build_header(hdr, sizeof hdr, fi->dst, fi->src, ethertype, fi->type, fi->flags,
                              fi->session, fi->seq, frame + fi->payload_off, fi->payload_len);
    CHECK(rc == L2F_FRAME_OVERHEAD);
    CHECK(memcmp(hdr, frame, L2F_FRAME_OVERHEAD) == 0);
    uint32_t crc = l2f_crc32c_sw(l2f_crc32c_sw(0, frame + 14, 20), frame + 38, fi->payload_len);
    uint32_t wire = (uint32_t)frame[34] << 24 | (uint32_t)frame[35] << 16 |
                    (uint32_t)frame[36] << 8 | frame[37];
    CHECK(wire == crc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    uint8_t sel[2] = {0, 0}, mode = 0, et[2] = {0, 0};
    take_bytes(data, size, &pos, sel, 2);
    take_bytes(data, size, &pos, &mode, 1);
    take_bytes(data, size, &pos, et, 2);
    uint32_t slot_size = 1 + (uint32_t)(sel[0] | sel[1] << 8) % 2048;
    uint16_t ethertype = (mode & 1) ? L2F_DEFAULT_ETHERTYPE : (uint16_t)(et[0] << 8 | et[1]);

    /* CRC paths agree on the raw input, whole and chained at an arbitrary split. */
    uint32_t sw = l2f_crc32c_sw(0, data, size);
    CHECK(l2f_crc32c(0, data, size) == sw);
    if (l2f_crc32c_hw_available()) {
        CHECK(l2f_crc32c_hw(0, data, size) == sw);
        size_t cut = size ? sel[0] % (size + 1) : 0;
        CHECK(l2f_crc32c_hw(l2f_crc32c_hw(0, data, cut), data + cut, size - cut) == sw);
        /* Inputs are short (max_len), so the long lane tiers (3 x 16 KiB blocks) are reached by
         * tiling the input into a larger buffer of an input-chosen length (mode bit 1). */
        if ((mode & 2) && size) {
            static uint8_t big[3 * 16384 + 2 * 3 * 2048 + 2 * 3 * 192 + 64];
            size_t n = (size_t)(sel[0] | sel[1] << 8) * 7 % sizeof big;
            for (size_t i = 0; i < n; i += size)
                memcpy(big + i, data, size < n - i ? size : n - i);
            CHECK(l2f_crc32c_hw(0, big, n) == l2f_crc32c_sw(0, big, n));
        }
    }

    uint32_t lens[MAX_FRAMES];
    uint8_t *arena = malloc((size_t)MAX_FRAMES * slot_size);
    if (!arena)
        return 0;
    uint32_t n = 0;
    while (n < MAX_FRAMES && pos < size) {
        uint8_t lb[2] = {0, 0};
        take_bytes(data, size, &pos, lb, 2);
        uint32_t claimed = (uint32_t)(lb[0] | lb[1] << 8);
        uint8_t *slot = arena + (size_t)n * slot_size;
        memset(slot, 0xA5, slot_size);
        take_bytes(data, size, &pos, slot, claimed < slot_size ? claimed : slot_size);
        lens[n++] = claimed;
    }
    /* Shrink to exactly n slots so ASan sees any read past the last one. */
    uint8_t *exact = malloc(n ? (size_t)n * slot_size : 1);
    if (!exact) {
        free(arena);
        return 0;
    }
    if (n)
        memcpy(exact, arena, (size_t)n * slot_size);
    free(arena);

    struct l2f_frame_info out[MAX_FRAMES];
    uint64_t counters[L2F_V_COUNT] = {0};
    int ok = l2f_parse_batch(exact, (size_t)n * slot_size, slot_size, lens, n, ethertype, out,
                             counters);
    CHECK(ok >= 0 && (uint32_t)ok <= n);

    uint64_t total = 0;
    int ok_seen = 0;
    for (int v = 0; v < L2F_V_COUNT; v++)
        total += counters[v];
    CHECK(total == n);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *frame = exact + (size_t)i * slot_size;
        size_t len = lens[i] < slot_size ? lens[i] : slot_size;
        struct l2f_frame_info single;
        int v = l2f_parse_frame(frame, len, ethertype, &single);
        CHECK(v == single.verdict);
        CHECK(info_equal(&single, &out[i]));
        check_frame(frame, len, ethertype, &out[i]);
        ok_seen += out[i].verdict == L2F_V_OK;
    }
    CHECK(ok_seen == ok && counters[L2F_V_OK] == (uint64_t)ok);

    /* Too small an arena is refused, never read past. */
    if (n)
        CHECK(l2f_parse_batch(exact, (size_t)n * slot_size - 1, slot_size, lens, n, ethertype,
                              out, counters) == -L2F_E_ARG);
    free(exact);
    return 0;
}
