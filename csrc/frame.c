/*
 * Build and validate l2fast frames: PROTOCOL.md §Ethernet framing, §Header, §CRC and §Receiving.
 *
 * Which l2f_frame_info fields a parse fills (the pure-Python codec must do exactly the same):
 *   - every field starts at 0 (MACs all-zero);
 *   - dst = bytes 0..5 when the frame is >= 6 bytes long, src = bytes 6..11 when it is >= 12,
 *     whatever the verdict;
 *   - SHORT, ETHERTYPE, BAD_MAGIC: nothing else (until the magic matches, the 24 bytes after the
 *     EtherType are not known to be an l2fast header, so they are not interpreted);
 *   - BAD_VERSION, BAD_LENGTH, BAD_CRC, UNKNOWN_TYPE, OK: the whole header is decoded (type,
 *     version, flags, session, seq, payload_len exactly as on the wire) and payload_off = 38.  For
 *     BAD_LENGTH payload_len is the claimed value, which does not fit in the frame.
 * All wire reads go through csrc/wire_guard.h.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "l2fast_core.h"
#include "wire_guard.h"

/* Offsets of the l2fast header fields from the start of the frame (PROTOCOL.md §Header + 14). */
enum {
    OFF_DST = 0,
    OFF_SRC = 6,
    OFF_ETHERTYPE = 12,
    OFF_MAGIC = L2F_ETH_HLEN + 0,
    OFF_VERSION = L2F_ETH_HLEN + 2,
    OFF_TYPE = L2F_ETH_HLEN + 3,
    OFF_FLAGS = L2F_ETH_HLEN + 4,
    OFF_PAYLOAD_LEN = L2F_ETH_HLEN + 6,
    OFF_SESSION = L2F_ETH_HLEN + 8,
    OFF_SEQ = L2F_ETH_HLEN + 12,
    OFF_CRC = L2F_ETH_HLEN + 20,
    CRC_COVERED_HDR = 20, /* header bytes 0..19 are covered by the CRC */
};

int l2f_type_known(uint8_t type)
{
    switch (type) {
    case 0x01: case 0x02:                                       /* HELLO, HELLO_ACK */
    case 0x10: case 0x11: case 0x12: case 0x13: case 0x14:     /* SYN .. PROBE_ACK */
    case 0x15: case 0x18: case 0x19:                           /* CTRL_ACK, KEEPALIVE, CLOSE */
    case 0x20: case 0x21:                                       /* DATA, FEEDBACK */
    case 0x30: case 0x38: case 0x39:                            /* CHAT, PING, PONG */
    case 0x40: case 0x41: case 0x42: case 0x43: case 0x44:     /* FILE_* */
    case 0x45: case 0x46:                                       /* FILE_HELD, FILE_INLINE */
    case 0x7F:                                                  /* ERROR */
        return 1;
    default:
        return 0;
    }
}

static int verdict(struct l2f_frame_info *out, int v)
{
    out->verdict = v;
    return v;
}

static int parse_one(const uint8_t *frame, size_t len, uint16_t ethertype,
                     struct l2f_frame_info *out)
{
    memset(out, 0, sizeof *out);
    const struct l2f_wire w = l2f_wire_view(frame, len);

    /* The MACs are reported for any frame that holds them, so drops can be attributed. */
    (void)l2f_wire_read(&w, OFF_DST, out->dst, sizeof out->dst);
    (void)l2f_wire_read(&w, OFF_SRC, out->src, sizeof out->src);

    /* Step 1.  After this check every header read below is in bounds, but each still goes
     * through the guard; a failure there would be a bug, reported as SHORT rather than UB. */
    if (!l2f_wire_has(&w, 0, L2F_FRAME_OVERHEAD))
        return verdict(out, L2F_V_SHORT);

    uint16_t et, magic, flags, plen;
    uint8_t version, type;
    uint32_t session, crc_wire;
    uint64_t seq;
    if (l2f_wire_be16(&w, OFF_ETHERTYPE, &et))
        return verdict(out, L2F_V_SHORT);
    if (et != ethertype) /* step 2 */
        return verdict(out, L2F_V_ETHERTYPE);
    if (l2f_wire_be16(&w, OFF_MAGIC, &magic))
        return verdict(out, L2F_V_SHORT);
    if (magic != L2F_MAGIC) /* step 3 */
        return verdict(out, L2F_V_BAD_MAGIC);

    if (l2f_wire_u8(&w, OFF_VERSION, &version) || l2f_wire_u8(&w, OFF_TYPE, &type) ||
        l2f_wire_be16(&w, OFF_FLAGS, &flags) || l2f_wire_be16(&w, OFF_PAYLOAD_LEN, &plen) ||
        l2f_wire_be32(&w, OFF_SESSION, &session) || l2f_wire_be64(&w, OFF_SEQ, &seq) ||
        l2f_wire_be32(&w, OFF_CRC, &crc_wire))
        return verdict(out, L2F_V_SHORT);
    out->version = version;
    out->type = type;
    out->flags = flags;
    out->session = session;
    out->seq = seq;
    out->payload_off = L2F_FRAME_OVERHEAD;
    out->payload_len = plen;

    if (version != L2F_VERSION) /* step 4 */
        return verdict(out, L2F_V_BAD_VERSION);

    /* Step 5: the claimed payload must lie inside the frame.  plen is a u16, so the cap on this
     * wire length is 65535 and the span check bounds it by what was actually received. */
    const uint8_t *payload = l2f_wire_span(&w, L2F_FRAME_OVERHEAD, plen);
    const uint8_t *hdr = l2f_wire_span(&w, OFF_MAGIC, CRC_COVERED_HDR);
    if (!payload || !hdr)
        return verdict(out, L2F_V_BAD_LENGTH);

    /* Step 6: header bytes 0..19 then the payload; padding after the payload is not covered. */
    uint32_t crc = l2f_crc32c(l2f_crc32c(0, hdr, CRC_COVERED_HDR), payload, plen);
    if (crc != crc_wire)
        return verdict(out, L2F_V_BAD_CRC);

    if (!l2f_type_known(type)) /* step 7 */
        return verdict(out, L2F_V_UNKNOWN_TYPE);
    return verdict(out, L2F_V_OK);
}

int l2f_parse_frame(const uint8_t *frame, size_t len, uint16_t ethertype,
                    struct l2f_frame_info *out)
{
    if (!out)
        return -L2F_E_ARG;
    return parse_one(frame, len, ethertype, out);
}

int l2f_parse_batch(const uint8_t *arena, size_t arena_len, uint32_t slot_size,
                    const uint32_t *lens, uint32_t n, uint16_t ethertype,
                    struct l2f_frame_info *out, uint64_t *counters)
{
    if (n == 0)
        return 0;
    if (!arena || !lens || !out || slot_size == 0 || n > INT32_MAX)
        return -L2F_E_ARG;
    /* u32 * u32 cannot overflow a u64. */
    if ((uint64_t)n * slot_size > (uint64_t)arena_len)
        return -L2F_E_ARG;

    int ok = 0;
    for (uint32_t i = 0; i < n; i++) {
        /* A length above slot_size means recv truncated the frame (MSG_TRUNC reports the full
         * length): only slot_size bytes are stored, so that is all the parser may look at.  A
         * truncated frame whose claimed payload does not fit there fails step 5 (BAD_LENGTH). */
        size_t len = lens[i] < slot_size ? lens[i] : slot_size;
        int v = parse_one(arena + (size_t)i * slot_size, len, ethertype, &out[i]);
        if (v == L2F_V_OK)
            ok++;
        if (counters)
            counters[v]++;
    }
    return ok;
}

static void put_header(uint8_t *out, const uint8_t *dst, const uint8_t *src, uint16_t ethertype,
                       uint8_t type, uint16_t flags, uint32_t session, uint64_t seq,
                       const uint8_t *payload, uint16_t payload_len)
{
    memcpy(out + OFF_DST, dst, 6);
    memcpy(out + OFF_SRC, src, 6);
    l2f_put_be16(out + OFF_ETHERTYPE, ethertype);
    l2f_put_be16(out + OFF_MAGIC, L2F_MAGIC);
    out[OFF_VERSION] = L2F_VERSION;
    out[OFF_TYPE] = type;
    l2f_put_be16(out + OFF_FLAGS, flags);
    l2f_put_be16(out + OFF_PAYLOAD_LEN, payload_len);
    l2f_put_be32(out + OFF_SESSION, session);
    l2f_put_be64(out + OFF_SEQ, seq);
    uint32_t crc = l2f_crc32c(0, out + OFF_MAGIC, CRC_COVERED_HDR);
    l2f_put_be32(out + OFF_CRC, l2f_crc32c(crc, payload, payload_len));
}

int l2f_build_header(uint8_t *out, size_t out_len, const uint8_t *dst, const uint8_t *src,
                     uint16_t ethertype, uint8_t type, uint16_t flags, uint32_t session,
                     uint64_t seq, const uint8_t *payload, size_t payload_len)
{
    if (!out || !dst || !src || out_len < L2F_FRAME_OVERHEAD || (!payload && payload_len))
        return -L2F_E_ARG;
    if (payload_len > L2F_MAX_PAYLOAD)
        return -L2F_E_TOOBIG;
    put_header(out, dst, src, ethertype, type, flags, session, seq, payload,
               (uint16_t)payload_len);
    return L2F_FRAME_OVERHEAD;
}

int l2f_build_batch(uint8_t *hdr_arena, size_t arena_len, uint32_t n, const uint8_t *dst,
                    const uint8_t *src, uint16_t ethertype, uint8_t type, uint16_t flags,
                    uint32_t session, const uint64_t *seq, const uint8_t *const *payload,
                    const uint32_t *payload_len)
{
    if (n == 0)
        return 0;
    if (!hdr_arena || !dst || !src || !seq || !payload || !payload_len || n > INT32_MAX)
        return -L2F_E_ARG;
    if ((uint64_t)n * L2F_FRAME_OVERHEAD > (uint64_t)arena_len)
        return -L2F_E_ARG;
    /* Check everything before writing anything, so a failed call leaves the arena untouched. */
    for (uint32_t i = 0; i < n; i++) {
        if (payload_len[i] > L2F_MAX_PAYLOAD)
            return -L2F_E_TOOBIG;
        if (!payload[i] && payload_len[i])
            return -L2F_E_ARG;
    }
    for (uint32_t i = 0; i < n; i++)
        put_header(hdr_arena + (size_t)i * L2F_FRAME_OVERHEAD, dst, src, ethertype, type, flags,
                   session, seq[i], payload[i], (uint16_t)payload_len[i]);
    return (int)n;
}
