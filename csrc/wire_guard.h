/*
 * The one bounds-check guard for reading bytes that came from the wire (STYLE.md §8).
 *
 * Every read of a received frame goes through l2f_wire_read(): it checks offset and size against
 * the frame length, then copies with memcpy, so no struct is ever cast over a wire buffer and
 * unaligned fields are fine.  The typed helpers below convert from network byte order and are
 * built on that single check.  Internal header: it has no CDEF block and is not part of the API.
 */
#ifndef L2FAST_WIRE_GUARD_H
#define L2FAST_WIRE_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A read-only view of len bytes received from the wire. */
struct l2f_wire {
    const uint8_t *p;
    size_t len;
};

static inline struct l2f_wire l2f_wire_view(const uint8_t *p, size_t len)
{
    struct l2f_wire w = {p, p ? len : 0};
    return w;
}

/* 1 when [off, off + n) lies inside the view.  Written as two comparisons so that a huge off or n
 * cannot wrap around (off + n is never computed). */
static inline int l2f_wire_has(const struct l2f_wire *w, size_t off, size_t n)
{
    return off <= w->len && n <= w->len - off;
}

/* THE guard: copy n bytes at off into dst, or return -1 (dst untouched) when they are not all
 * inside the view. */
static inline int l2f_wire_read(const struct l2f_wire *w, size_t off, void *dst, size_t n)
{
    if (!l2f_wire_has(w, off, n))
        return -1;
    if (n)
        memcpy(dst, w->p + off, n);
    return 0;
}

/* Pointer to the n bytes at off for bulk use (the CRC runs over the payload in place), or NULL when
 * they are not all inside the view.  Same check as l2f_wire_read. */
static inline const uint8_t *l2f_wire_span(const struct l2f_wire *w, size_t off, size_t n)
{
    if (!w->p || !l2f_wire_has(w, off, n))
        return NULL;  /* also avoids NULL + 0, which is undefined behaviour */
    return w->p + off;
}

static inline int l2f_wire_u8(const struct l2f_wire *w, size_t off, uint8_t *out)
{
    return l2f_wire_read(w, off, out, 1);
}

static inline int l2f_wire_be16(const struct l2f_wire *w, size_t off, uint16_t *out)
{
    uint8_t b[2];
    if (l2f_wire_read(w, off, b, sizeof b))
        return -1;
    *out = (uint16_t)((uint16_t)b[0] << 8 | b[1]);
    return 0;
}

static inline int l2f_wire_be32(const struct l2f_wire *w, size_t off, uint32_t *out)
{
    uint8_t b[4];
    if (l2f_wire_read(w, off, b, sizeof b))
        return -1;
    *out = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 0;
}

static inline int l2f_wire_be64(const struct l2f_wire *w, size_t off, uint64_t *out)
{
    uint32_t hi, lo;
    if (l2f_wire_be32(w, off, &hi) || l2f_wire_be32(w, off + 4, &lo))
        return -1;
    *out = (uint64_t)hi << 32 | lo;
    return 0;
}

/* Writers for buffers we build ourselves (never wire input): big-endian stores. */
static inline void l2f_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void l2f_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void l2f_put_be64(uint8_t *p, uint64_t v)
{
    l2f_put_be32(p, (uint32_t)(v >> 32));
    l2f_put_be32(p + 4, (uint32_t)v);
}

#endif
