/*
 * What every libFuzzer target here shares: CHECK (a broken invariant aborts, which libFuzzer
 * reports as a crash) and a reader that takes little-endian integers from the fuzz input,
 * reading missing bytes as 0.
 */
#ifndef L2FAST_FUZZ_INPUT_H
#define L2FAST_FUZZ_INPUT_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

struct input {
    const uint8_t *p;
    size_t n;
};

/* The next `bytes` bytes (at most 8) as a little-endian integer. */
static inline uint64_t take(struct input *in, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        uint8_t b = 0;
        if (in->n) {
            b = *in->p++;
            in->n--;
        }
        v |= (uint64_t)b << (8 * i);
    }
    return v;
}

#endif
