/*
 * Writer side of a receive ring (csrc/datapath.h): pop a batch of descriptors, write their payloads
 * into the file with pwritev straight from the ring slots, release the batch.
 *
 * Consecutive chunks are adjacent in the file (chunk k at (k - first_chunk) * chunk_size, and
 * every chunk but the last is exactly chunk_size bytes), so a run of consecutive sequence numbers
 * becomes one pwritev whose iovecs point at the slots: one system call per run instead of per
 * chunk, and no copy in user space.  The receive loop publishes whole recvmmsg batches to one
 * ring, so in-order traffic gives runs as long as a batch.
 *
 * Bounds: the descriptors come from another process through shared memory, so each is checked
 * (payload inside its slot, chunk inside the file, exact chunk length) before its bytes are
 * written; one that fails is flagged REFUSED, counted and never written.  Nothing is ever written
 * at or beyond file_size.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "datapath.h"

/* iovecs per pwritev: Linux's UIO_MAXIOV (IOV_MAX) is 1024. */
#define MAX_IOV 1024
/* Same bound as the receive path: offsets stay far from overflow. */
#define MAX_FILE_SIZE (1ull << 62)

struct run {
    struct iovec iov[MAX_IOV];
    int n;
    uint64_t off;       /* file offset of the first iovec */
    uint64_t bytes;
    uint64_t next_seq;  /* the chunk that would extend the run */
    uint32_t first_j;   /* batch index of its first descriptor */
};

/* Write the whole run at its offset, resuming after short writes. Returns bytes or -errno. */
static int64_t write_run(int fd, struct run *run, struct l2f_writer_stats *st)
{
    struct iovec *iov = run->iov;
    int cnt = run->n;
    uint64_t off = run->off;
    while (cnt > 0) {
        ssize_t w = pwritev(fd, iov, cnt, (off_t)off);
        st->writes++;
        if (w < 0)
            return -errno; /* EINTR too: the run stays in the ring and is rewritten later */
        if (w == 0)
            return -EIO;
        off += (uint64_t)w;
        size_t rem = (size_t)w;
        while (cnt > 0 && rem >= iov->iov_len) {
            rem -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0 && rem) {
            iov->iov_base = (uint8_t *)iov->iov_base + rem;
            iov->iov_len -= rem;
        }
    }
    return (int64_t)run->bytes;
}

int64_t l2f_writer_drain(struct l2f_ring *ring, int32_t fd, uint64_t first_chunk,
                         uint32_t chunk_size, uint64_t file_size, uint32_t max_batch,
                         int32_t wait_us, struct l2f_writer_stats *stats)
{
    struct l2f_writer_stats dummy;
    struct l2f_writer_stats *st = stats ? stats : &dummy;
    if (!ring || !ring->base || chunk_size == 0 || chunk_size > L2F_MAX_PAYLOAD ||
        max_batch == 0 || file_size >= MAX_FILE_SIZE || first_chunk >= MAX_FILE_SIZE)
        return -L2F_E_ARG;

    uint64_t pos;
    int n = l2f_ring_peek(ring, max_batch, &pos);
    if (n == 0 && wait_us > 0) {
        st->waits++;
        n = l2f_ring_wait(ring, wait_us);
        if (n > 0)
            n = l2f_ring_peek(ring, max_batch, &pos);
    }
    if (n <= 0)
        return n;
    st->batches++;

    const uint64_t nchunks = (file_size + chunk_size - 1) / chunk_size;
    const uint32_t mask = ring->nslots - 1;
    struct run run; /* 16 KiB of iovecs on the stack; the caller's thread has megabytes */
    run.n = 0;
    int64_t total = 0;

    for (uint32_t j = 0; j <= (uint32_t)n; j++) {
        struct l2f_desc *d = NULL;
        uint64_t k = 0, seq = 0;
        uint32_t len = 0, off = 0;
        if (j < (uint32_t)n) {
            d = &ring->desc[(uint32_t)(pos + j) & mask];
            /* The descriptor is shared memory another process can rewrite at any moment (even
             * during the pwritev below): read each field exactly once, check the copies, and use
             * only the copies. */
            uint32_t flags = __atomic_load_n(&d->flags, __ATOMIC_RELAXED);
            if (flags & L2F_DESC_SKIP) {
                st->skipped++;
                continue;
            }
            if (flags & L2F_DESC_REFUSED)
                continue; /* refused on an earlier pass whose write then failed */
            seq = __atomic_load_n(&d->seq, __ATOMIC_RELAXED);
            off = __atomic_load_n(&d->payload_off, __ATOMIC_RELAXED);
            len = __atomic_load_n(&d->payload_len, __ATOMIC_RELAXED);
            k = seq - first_chunk; /* meaningful only when seq >= first_chunk */
            uint64_t want = (seq >= first_chunk && k < nchunks)
                                ? (k + 1 == nchunks ? file_size - k * chunk_size : chunk_size)
                                : UINT64_MAX;
            int fits = off <= ring->slot_size && len <= ring->slot_size - off;
            if (!fits || want == UINT64_MAX || len != want) {
                __atomic_fetch_or(&d->flags, L2F_DESC_REFUSED, __ATOMIC_RELAXED);
                st->refused++;
                continue;
            }
        }
        /* Flush the open run when this descriptor cannot extend it (or at the end). */
        if (run.n > 0 && (!d || seq != run.next_seq || run.n == MAX_IOV)) {
            int64_t w = fd >= 0 ? write_run(fd, &run, st) : (int64_t)run.bytes;
            if (w < 0) {
                /* Everything before this run is done: release it, keep the rest. */
                (void)l2f_ring_release(ring, run.first_j);
                return total ? total : w;
            }
            total += w;
            st->bytes += (uint64_t)w;
            st->chunks += (uint64_t)run.n;
            run.n = 0;
        }
        if (!d)
            break;
        if (run.n == 0) {
            run.off = k * chunk_size; /* k < nchunks < 2^62: no overflow */
            run.bytes = 0;
            run.first_j = j;
        }
        run.iov[run.n].iov_base = ring->slots + (size_t)((uint32_t)(pos + j) & mask) *
                                                    ring->slot_size + off;
        run.iov[run.n].iov_len = len;
        run.n++;
        run.bytes += len;
        run.next_seq = seq + 1;
    }
    int rc = l2f_ring_release(ring, (uint32_t)n);
    return rc < 0 ? rc : total;
}

int l2f_start_writeback(int32_t fd)
{
    if (fd < 0)
        return -EINVAL;
    /* SYNC_FILE_RANGE_WRITE alone: queue the dirty pages for writing and return at once. It
     * makes nothing durable by itself (no metadata, no cache flush); the fsync that follows
     * does, and finds the data already on its way. */
    if (sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) < 0)
        return -errno;
    return 0;
}

int l2f_punch_hole(int32_t fd, uint64_t offset, uint64_t length)
{
    if (fd < 0 || offset > (uint64_t)INT64_MAX || length > (uint64_t)INT64_MAX - offset)
        return -EINVAL;
    if (length == 0)
        return 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) < 0)
        return -errno;
    return 0;
}
