/*
 * Transmit side of a bulk transfer (csrc/datapath.h): DATA frames for ranges of chunks of a mapped
 * file, sent with sendmmsg.
 *
 * Each frame is two iovecs: its 38-byte header (Ethernet + l2fast, CRC32C over header and payload,
 * built here in a small stack arena) and the payload, which points straight into the caller's
 * mapping of the file.  The kernel copies the payload once into its buffer; user space never does,
 * and retransmissions are just other ranges over the same mapping.  One call sends up to
 * max_frames frames in batches of L2F_TX_BATCH, so the Python caller pays one cffi call per many
 * frames (FACTS.md: ~160 ns per call, ~2 us per frame in the kernel).
 *
 * Backpressure: a full device queue shows as ENOBUFS/EAGAIN (or sendmmsg taking fewer frames than
 * offered).  The call then stops and reports exactly how many frames, counted in range order, the
 * kernel took, so the caller resumes from there: no frame is silently skipped or sent twice.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <linux/if_packet.h>

#include "datapath.h"

#define TYPE_DATA 0x20    /* PROTOCOL.md §Frame types */
#define FLAG_LAST 0x0002  /* PROTOCOL.md §Flags */
#define MAX_INDEX (1ull << 62)

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
    if (t->mode & ~(uint32_t)(L2F_TX_BENCH | L2F_TX_RAW | L2F_TX_MARK_LAST) ||
        t->batch > L2F_TX_BATCH)
        return -L2F_E_ARG;
    const uint32_t batch = t->batch ? t->batch : L2F_TX_BATCH;
    const int one_chunk = (t->mode & (L2F_TX_BENCH | L2F_TX_RAW)) != 0;
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

    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = ifindex; /* sll_protocol 0: the EtherType comes from the frame itself */

    struct mmsghdr msgs[L2F_TX_BATCH];
    struct iovec iov[L2F_TX_BATCH][2];
    uint8_t hdrs[L2F_TX_BATCH][L2F_FRAME_OVERHEAD];
    uint32_t lens[L2F_TX_BATCH];

    /* Raw ceiling mode: one header, built once; its CRC matches only the first frame. */
    if (t->mode & L2F_TX_RAW) {
        int rc = l2f_build_header(hdrs[0], L2F_FRAME_OVERHEAD, t->dst, t->src, t->ethertype,
                                  TYPE_DATA, t->flags, t->session, ranges[0], data, chunk_size);
        if (rc < 0)
            return rc;
    }

    uint64_t sent = 0;
    uint32_t r = 0;
    uint64_t c = ranges[0];
    while (sent < max_frames && r < n_ranges) {
        /* Fill one batch, walking the ranges in order. */
        uint32_t cnt = 0;
        while (cnt < batch && sent + cnt < max_frames && r < n_ranges) {
            const uint64_t k = c - first_chunk;
            const uint64_t off = k * chunk_size; /* < file_size < 2^62: no overflow */
            const uint32_t len =
                (t->mode & L2F_TX_RAW) ? chunk_size
                : k + 1 == nchunks     ? (uint32_t)(file_size - off)
                                       : chunk_size;
            const uint8_t *payload = one_chunk ? data : data + off;
            const uint8_t *hdr = hdrs[0];
            if (!(t->mode & L2F_TX_RAW)) {
                uint16_t flags = t->flags;
                if ((t->mode & L2F_TX_MARK_LAST) && k + 1 == nchunks)
                    flags |= FLAG_LAST;
                /* Cannot fail: every argument was checked above. */
                (void)l2f_build_header(hdrs[cnt], L2F_FRAME_OVERHEAD, t->dst, t->src,
                                       t->ethertype, TYPE_DATA, flags, t->session, c, payload,
                                       len);
                hdr = hdrs[cnt];
            }
            memset(&msgs[cnt], 0, sizeof msgs[cnt]);
            /* iovec takes non-const pointers; sendmsg never writes through them. */
            iov[cnt][0].iov_base = (void *)(uintptr_t)hdr;
            iov[cnt][0].iov_len = L2F_FRAME_OVERHEAD;
            iov[cnt][1].iov_base = (void *)(uintptr_t)payload;
            iov[cnt][1].iov_len = len;
            msgs[cnt].msg_hdr.msg_iov = iov[cnt];
            msgs[cnt].msg_hdr.msg_iovlen = 2;
            if (ifindex > 0) {
                msgs[cnt].msg_hdr.msg_name = &sll;
                msgs[cnt].msg_hdr.msg_namelen = sizeof sll;
            }
            lens[cnt] = len;
            cnt++;
            if (++c == ranges[2 * r + 1] && ++r < n_ranges)
                c = ranges[2 * r];
        }
        int n = sendmmsg(fd, msgs, cnt, MSG_DONTWAIT);
        st->calls++;
        if (n < 0) {
            int e = errno;
            if (e == ENOBUFS || e == EAGAIN || e == EWOULDBLOCK) {
                st->backpressure++;
                break;
            }
            if (sent)
                break; /* report what was taken; the error comes back on the next call */
            return -e;
        }
        for (int j = 0; j < n; j++)
            st->bytes += lens[j];
        st->frames += (uint64_t)n;
        sent += (uint64_t)n;
        if ((uint32_t)n < cnt) {
            st->backpressure++;
            break;
        }
    }
    return (int64_t)sent;
}
