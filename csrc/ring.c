/*
 * Single-producer single-consumer ring in a shared-memory region (layout and rules in
 * csrc/datapath.h).  The receive process produces, one writer process consumes; they share the
 * region through a MAP_SHARED mapping, so every cross-process access to the counters is an
 * __atomic operation:
 *   - the producer writes slots and descriptors with plain stores, then publishes with a RELEASE
 *     store of head; the consumer's ACQUIRE load of head makes those stores visible to it;
 *   - symmetrically, the consumer's RELEASE store of tail hands slots back (and any flag it set in
 *     a descriptor, e.g. REFUSED) to the producer's ACQUIRE load of tail.
 * Counters are free-running u64 (they never wrap in practice: 2^64 frames), so "used" is simply
 * head - tail and a full ring is distinguishable from an empty one without a spare slot.
 *
 * The consumer may sleep on a futex in the region instead of spinning: on a 2-core machine a
 * spinning writer would steal the CPU that the receive loop and the kernel's softirq need.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "datapath.h"

#define RING_MAGIC 0x4C3246524E470001ull /* "L2FRNG" + layout version 1 */

/* The shared header.  Not wire data: it is written only by l2fast's own processes, but its
 * counters are still checked before they are trusted for an index (see used_ok). */
struct ring_shared {
    /* Line pair 0: geometry, written once by l2f_ring_init. */
    uint64_t magic;
    uint32_t nslots;
    uint32_t slot_size;
    uint64_t desc_off;
    uint64_t slot_off;
    uint64_t total;
    uint8_t pad0[128 - 40];
    /* Line pair 1: the producer's counter.  128 bytes apart, not 64, because x86's adjacent-line
     * prefetcher pulls cache lines in pairs and would make the two sides contend anyway. */
    uint64_t head;
    uint8_t pad1[120];
    /* Line pair 2: the consumer's counter. */
    uint64_t tail;
    uint8_t pad2[120];
    /* Line pair 3: consumer sleep protocol (l2f_ring_wait). */
    uint32_t wake_seq;  /* futex word: bumped by the producer when it wakes the consumer */
    uint32_t sleeping;  /* 1 while the consumer is (about to be) in FUTEX_WAIT */
    uint8_t pad3[120];
};

_Static_assert(sizeof(struct ring_shared) == L2F_RING_HDR_SIZE, "ring header size");
_Static_assert(offsetof(struct ring_shared, head) == 128, "head on its own line pair");
_Static_assert(offsetof(struct ring_shared, tail) == 256, "tail on its own line pair");
_Static_assert(sizeof(struct l2f_desc) == 24, "descriptor layout");

static inline struct ring_shared *sh(const struct l2f_ring *r)
{
    return (struct ring_shared *)(void *)r->base;
}

static int geometry_ok(uint32_t nslots, uint32_t slot_size)
{
    return nslots >= 2 && nslots <= L2F_RING_MAX_SLOTS && (nslots & (nslots - 1)) == 0 &&
           slot_size >= L2F_RING_MIN_SLOT && slot_size <= L2F_RING_MAX_SLOT &&
           slot_size % 64 == 0;
}

/* Offsets of the descriptor and slot arrays; slots start on a 64-byte boundary so that each slot
 * (a multiple of 64 bytes) starts a cache line. */
static void layout(uint32_t nslots, uint32_t slot_size, uint64_t *desc_off, uint64_t *slot_off,
                   uint64_t *total)
{
    *desc_off = L2F_RING_HDR_SIZE;
    uint64_t d_end = *desc_off + (uint64_t)nslots * sizeof(struct l2f_desc);
    *slot_off = (d_end + 63) & ~(uint64_t)63;
    *total = *slot_off + (uint64_t)nslots * slot_size; /* < 2^20 * 2^17: no overflow */
}

int64_t l2f_ring_size(uint32_t nslots, uint32_t slot_size)
{
    if (!geometry_ok(nslots, slot_size))
        return -L2F_E_ARG;
    uint64_t d, s, total;
    layout(nslots, slot_size, &d, &s, &total);
    if (total > (uint64_t)L2F_RING_MAX_BYTES)
        return -L2F_E_TOOBIG;
    return (int64_t)total;
}

int l2f_ring_init(uint8_t *region, uint64_t len, uint32_t nslots, uint32_t slot_size)
{
    int64_t need = l2f_ring_size(nslots, slot_size);
    if (need < 0)
        return (int)need;
    /* The region must be 64-byte aligned for the cache-line layout and for aligned atomics;
     * mmap gives page alignment. */
    if (!region || len < (uint64_t)need || ((uintptr_t)region & 63))
        return -L2F_E_ARG;
    struct ring_shared *h = (struct ring_shared *)(void *)region;
    memset(h, 0, sizeof *h);
    h->nslots = nslots;
    h->slot_size = slot_size;
    layout(nslots, slot_size, &h->desc_off, &h->slot_off, &h->total);
    memset(region + h->desc_off, 0, (size_t)nslots * sizeof(struct l2f_desc));
    /* Magic last, with release: a process that sees it also sees the geometry. */
    __atomic_store_n(&h->magic, RING_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

int l2f_ring_attach(struct l2f_ring *r, uint8_t *region, uint64_t len)
{
    if (!r || !region || len < L2F_RING_HDR_SIZE || ((uintptr_t)region & 63))
        return -L2F_E_ARG;
    const struct ring_shared *h = (const struct ring_shared *)(const void *)region;
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != RING_MAGIC)
        return -L2F_E_ARG;
    uint32_t nslots = h->nslots, slot_size = h->slot_size;
    if (!geometry_ok(nslots, slot_size))
        return -L2F_E_ARG;
    /* Recompute the layout rather than trusting the stored offsets. */
    uint64_t d, s, total;
    layout(nslots, slot_size, &d, &s, &total);
    if (d != h->desc_off || s != h->slot_off || total != h->total || total > len)
        return -L2F_E_ARG;
    memset(r, 0, sizeof *r);
    r->base = region;
    r->len = len;
    r->nslots = nslots;
    r->slot_size = slot_size;
    r->desc = (struct l2f_desc *)(void *)(region + d);
    r->slots = region + s;
    r->tail_seen = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
    r->head_seen = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
    return 0;
}

static int handle_ok(const struct l2f_ring *r)
{
    return r && r->base && r->nslots;
}

int l2f_ring_reserve(struct l2f_ring *r, uint32_t max, uint64_t *pos)
{
    if (!handle_ok(r) || !pos)
        return -L2F_E_ARG;
    struct ring_shared *h = sh(r);
    /* Only this process writes head, so a relaxed load of it is exact. */
    uint64_t head = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
    uint64_t used = head - r->tail_seen;
    if (used > r->nslots)
        return -EPROTO;
    if (r->nslots - used < max) {
        /* Only now look at the consumer's line: most reserves are answered from the cache. */
        r->tail_seen = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
        used = head - r->tail_seen;
        if (used > r->nslots)
            return -EPROTO;
    }
    uint64_t free_slots = r->nslots - used;
    *pos = head;
    return (int)(free_slots < max ? free_slots : max);
}

int l2f_ring_publish(struct l2f_ring *r, uint32_t n)
{
    if (!handle_ok(r))
        return -L2F_E_ARG;
    if (n == 0)
        return 0;
    struct ring_shared *h = sh(r);
    uint64_t head = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
    /* tail_seen only lags the real tail, so this check can refuse but never wrongly accept. */
    if (head + n - r->tail_seen > r->nslots)
        return -L2F_E_ARG;
    __atomic_store_n(&h->head, head + n, __ATOMIC_RELEASE);
    /* Dekker-style pairing with l2f_ring_wait: store head, full fence, load sleeping; the consumer
     * stores sleeping, full fence, loads head.  At least one of the two sees the other's store,
     * so a consumer can never sleep through a publish. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&h->sleeping, __ATOMIC_RELAXED)) {
        __atomic_fetch_add(&h->wake_seq, 1, __ATOMIC_SEQ_CST);
        /* Not FUTEX_PRIVATE: the waiter is another process sharing the mapping. */
        (void)syscall(SYS_futex, &h->wake_seq, FUTEX_WAKE, 1, NULL, NULL, 0);
    }
    return 0;
}

int l2f_ring_peek(struct l2f_ring *r, uint32_t max, uint64_t *pos)
{
    if (!handle_ok(r) || !pos)
        return -L2F_E_ARG;
    struct ring_shared *h = sh(r);
    uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_RELAXED);
    uint64_t avail = r->head_seen - tail;
    if (avail > r->nslots)
        return -EPROTO;
    if (avail < max) {
        r->head_seen = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
        avail = r->head_seen - tail;
        if (avail > r->nslots)
            return -EPROTO;
    }
    *pos = tail;
    return (int)(avail < max ? avail : max);
}

int l2f_ring_release(struct l2f_ring *r, uint32_t n)
{
    if (!handle_ok(r))
        return -L2F_E_ARG;
    if (n == 0)
        return 0;
    struct ring_shared *h = sh(r);
    uint64_t tail = __atomic_load_n(&h->tail, __ATOMIC_RELAXED);
    if (n > r->head_seen - tail)
        return -L2F_E_ARG;
    __atomic_store_n(&h->tail, tail + n, __ATOMIC_RELEASE);
    return 0;
}

int l2f_ring_wait(struct l2f_ring *r, int32_t timeout_us)
{
    uint64_t pos;
    int n = l2f_ring_peek(r, UINT32_MAX, &pos);
    if (n != 0 || timeout_us <= 0)
        return n;
    struct ring_shared *h = sh(r);
    uint32_t seq = __atomic_load_n(&h->wake_seq, __ATOMIC_ACQUIRE);
    __atomic_store_n(&h->sleeping, 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    n = l2f_ring_peek(r, UINT32_MAX, &pos);
    if (n == 0) {
        struct timespec ts = {.tv_sec = timeout_us / 1000000,
                              .tv_nsec = (long)(timeout_us % 1000000) * 1000};
        /* Returns at once (EAGAIN) if the producer bumped wake_seq after we read it. EINTR and
         * timeouts are not errors here: the caller re-checks the ring. */
        (void)syscall(SYS_futex, &h->wake_seq, FUTEX_WAIT, seq, &ts, NULL, 0);
        n = l2f_ring_peek(r, UINT32_MAX, &pos);
    }
    __atomic_store_n(&h->sleeping, 0, __ATOMIC_RELAXED);
    return n;
}

int l2f_ring_counts(const struct l2f_ring *r, uint64_t *head, uint64_t *tail)
{
    if (!handle_ok(r))
        return -L2F_E_ARG;
    const struct ring_shared *h = (const struct ring_shared *)(const void *)r->base;
    uint64_t t = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
    uint64_t hd = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
    if (head)
        *head = hd;
    if (tail)
        *tail = t;
    uint64_t used = hd - t;
    /* Two loads are not one snapshot; a tail read before a racing release can only make used
     * look larger, so clamp instead of failing. */
    return (int)(used > r->nslots ? r->nslots : used);
}

/* A descriptor's payload must lie inside its slot. */
static int desc_fits(const struct l2f_ring *r, const struct l2f_desc *d)
{
    return d->payload_off <= r->slot_size && d->payload_len <= r->slot_size - d->payload_off;
}

int l2f_ring_push(struct l2f_ring *r, const struct l2f_desc *descs, uint32_t n,
                  const uint8_t *payload, uint64_t payload_len, uint32_t stride)
{
    if (!handle_ok(r) || (!descs && n) || n > INT32_MAX)
        return -L2F_E_ARG;
    if (payload && (uint64_t)n * stride > payload_len)
        return -L2F_E_ARG;
    for (uint32_t i = 0; i < n; i++)
        if (!desc_fits(r, &descs[i]))
            return -L2F_E_ARG;
    uint64_t pos;
    int k = l2f_ring_reserve(r, n, &pos);
    if (k <= 0)
        return k;
    uint32_t mask = r->nslots - 1;
    for (uint32_t i = 0; i < (uint32_t)k; i++) {
        uint32_t idx = (uint32_t)(pos + i) & mask;
        /* descs is the caller's memory, which another thread may change while this runs (the
         * binding releases the GIL): copy each field once and use only the checked copy. */
        struct l2f_desc d;
        d.seq = __atomic_load_n(&descs[i].seq, __ATOMIC_RELAXED);
        d.payload_off = __atomic_load_n(&descs[i].payload_off, __ATOMIC_RELAXED);
        d.payload_len = __atomic_load_n(&descs[i].payload_len, __ATOMIC_RELAXED);
        d.flags = __atomic_load_n(&descs[i].flags, __ATOMIC_RELAXED);
        d.session = __atomic_load_n(&descs[i].session, __ATOMIC_RELAXED);
        if (!desc_fits(r, &d))
            return -L2F_E_ARG; /* nothing was published */
        r->desc[idx] = d;
        if (payload) {
            uint32_t len = d.payload_len < stride ? d.payload_len : stride;
            memcpy(r->slots + (size_t)idx * r->slot_size + d.payload_off,
                   payload + (size_t)i * stride, len);
        }
    }
    int rc = l2f_ring_publish(r, (uint32_t)k);
    return rc < 0 ? rc : k;
}

int l2f_ring_pop(struct l2f_ring *r, struct l2f_desc *out, uint32_t max, uint8_t *payload,
                 uint64_t payload_len, uint32_t stride)
{
    if (!handle_ok(r) || (!out && max) || max > INT32_MAX)
        return -L2F_E_ARG;
    if (payload && (uint64_t)max * stride > payload_len)
        return -L2F_E_ARG;
    uint64_t pos;
    int k = l2f_ring_peek(r, max, &pos);
    if (k <= 0)
        return k;
    uint32_t mask = r->nslots - 1;
    for (uint32_t i = 0; i < (uint32_t)k; i++) {
        uint32_t idx = (uint32_t)(pos + i) & mask;
        out[i] = r->desc[idx];
        if (!desc_fits(r, &out[i]))
            return -EPROTO; /* nothing released: the ring is corrupt, not ours to skip */
        if (payload) {
            uint32_t len = out[i].payload_len < stride ? out[i].payload_len : stride;
            memcpy(payload + (size_t)i * stride,
                   r->slots + (size_t)idx * r->slot_size + out[i].payload_off, len);
        }
    }
    int rc = l2f_ring_release(r, (uint32_t)k);
    return rc < 0 ? rc : k;
}

uint64_t l2f_ring_load_tail(const struct l2f_ring *r)
{
    return __atomic_load_n(&sh(r)->tail, __ATOMIC_ACQUIRE);
}

uint64_t l2f_ring_load_head(const struct l2f_ring *r)
{
    return __atomic_load_n(&sh(r)->head, __ATOMIC_RELAXED);
}
