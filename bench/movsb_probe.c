/*
 * bench/movsb_probe.c [movsb|movsq]: how fast the kernel's user-copy instruction copies 65000
 * bytes, by the distance from source to destination modulo 4096.  Both buffers stay in cache, so
 * only the distance changes between lines.  Prints one line per distance: "distance GB/s".
 *  - movsb (the default): `rep movsb`, what copy_to_user/copy_from_user run on CPUs with ERMS.
 *    On session 11's AMD EPYC, distances 1..31 ran at ~2.8 GB/s against ~45 GB/s elsewhere: the
 *    reason for L2F_FRAME_PHASE and L2F_PAYLOAD_PAGE_OFFSET (csrc/l2fast_core.h).
 *  - movsq: what they run without ERMS (rep_movs_alternative in arch/x86/lib/copy_user_64.S,
 *    Linux 6.x): one unaligned word, then `rep movsq` with the destination aligned to 8.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEN 65000
#define COPIES 2000
#define TRIES 5

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void movsb(void *dst, const void *src, size_t n)
{
    __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

/* The kernel's copy without ERMS, for n >= 64: the first 8 bytes unaligned, then whole words
 * from the next 8-byte boundary of the destination, then the tail. */
static void movsq(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    memcpy(d, s, 8);
    size_t head = 8 - ((uintptr_t)d & 7);
    d += head;
    s += head;
    n -= head;
    size_t words = n >> 3, tail = n & 7;
    __asm__ volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(words) : : "memory");
    memcpy(d, s, tail);
}

int main(int argc, char **argv)
{
    void (*copy)(void *, const void *, size_t) = movsb;
    if (argc > 1 && strcmp(argv[1], "movsq") == 0)
        copy = movsq;
    else if (argc > 1 && strcmp(argv[1], "movsb") != 0)
        return fprintf(stderr, "usage: %s [movsb|movsq]\n", argv[0]), 2;
    static const int distances[] = {0,  1,  8,  14, 16,  24,   30,   31,   32,
                                    33, 40, 48, 64, 96, 2048, 4064, 4088, 4095};
    uint8_t *src = aligned_alloc(4096, 2 * 65536), *dst = aligned_alloc(4096, 2 * 65536);
    if (!src || !dst)
        return 1;
    memset(src, 1, 2 * 65536);
    memset(dst, 2, 2 * 65536);
    for (size_t k = 0; k < sizeof distances / sizeof distances[0]; k++) {
        double best = 1e9;
        for (int t = 0; t < TRIES; t++) {
            double t0 = now_s();
            for (int i = 0; i < COPIES; i++)
                copy(dst + distances[k], src, LEN);
            double el = now_s() - t0;
            if (el < best)
                best = el;
        }
        printf("%4d %6.2f\n", distances[k], (double)LEN * COPIES / best / 1e9);
    }
    return 0;
}
