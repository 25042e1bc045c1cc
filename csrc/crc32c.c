/*
 * CRC-32C (Castagnoli), PROTOCOL.md §CRC: reflected polynomial 0x82F63B78, init and final XOR
 * 0xFFFFFFFF, zlib calling convention (start with 0, feed the previous result back).
 *
 * Two implementations give identical results:
 *  - hardware: the SSE4.2 `crc32` instruction.  One instruction has a latency of ~3 cycles but a
 *    throughput of one per cycle, so a single dependency chain runs at a third of the possible
 *    speed.  Large buffers are therefore cut into three equal lanes whose CRCs are computed
 *    interleaved and then combined (see shift tables below).  Compiled with
 *    __attribute__((target("sse4.2"))) so the rest of the build stays baseline x86-64, and only
 *    called after CPUID says the instruction exists.
 *  - software: slicing-by-8 tables (8 KiB), for CPUs without SSE4.2 and as the test oracle.
 *
 * Internally both work on the "raw" CRC register (no pre/post inversion); the public functions
 * add the inversions, which is what makes the zlib-style chaining work.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "l2fast_core.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#define L2F_HAVE_X86_CRC 1
#else
#define L2F_HAVE_X86_CRC 0
#endif

#define CRC32C_POLY 0x82F63B78u

/* Lane lengths of the 3-way hardware path, largest first.  A combine costs two table-driven
 * shifts (8 lookups): noise next to 3 x 16 KiB of data, but not next to 3 x 192 bytes, so big
 * buffers use long lanes and only their tails fall to the shorter tiers, which let ~1.5 KiB
 * frames use all three lanes too (chosen by measuring 64 B..64 MiB buffers on the target CPU).
 * Each must be a multiple of 8 (the lanes step in 8-byte words).  -DL2F_CRC_TIERS=... overrides
 * them for experiments; tests/unit/test_crc32c.py probes the edges of the defaults. */
#ifndef L2F_CRC_TIERS
#define L2F_CRC_TIERS 16384u, 2048u, 192u
#endif
static const size_t lane_len[] = {L2F_CRC_TIERS};
#define N_TIERS (sizeof lane_len / sizeof lane_len[0])

static uint32_t sw_table[8][256];
/* shift_tab[t][k][b] = the raw CRC register (b << 8k) advanced over lane_len[t] zero bytes; the
 * four tables of a tier together apply that linear map to any 32-bit register value. */
static uint32_t shift_tab[N_TIERS][4][256];
static int hw_ok;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Advance a raw register over n zero bytes, one byte at a time: slow, used only to build the shift
 * tables at init. */
static uint32_t raw_zeros(uint32_t crc, size_t n)
{
    while (n--)
        crc = (crc >> 8) ^ sw_table[0][crc & 0xFF];
    return crc;
}

static void build_shift(uint32_t tab[4][256], size_t lane)
{
    uint32_t basis[32];
    for (int j = 0; j < 32; j++)
        basis[j] = raw_zeros(1u << j, lane);
    for (int k = 0; k < 4; k++) {
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int j = 0; j < 8; j++)
                if (b & (1u << j))
                    v ^= basis[8 * k + j];
            tab[k][b] = v;
        }
    }
}

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        sw_table[0][i] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int i = 0; i < 256; i++)
            sw_table[k][i] = (sw_table[k - 1][i] >> 8) ^ sw_table[0][sw_table[k - 1][i] & 0xFF];
    for (size_t t = 0; t < N_TIERS; t++)
        build_shift(shift_tab[t], lane_len[t]);
#if L2F_HAVE_X86_CRC
    __builtin_cpu_init();
    hw_ok = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    hw_ok = 0;
#endif
}

static void ensure_init(void)
{
    (void)pthread_once(&init_once, crc_init);
}

/* Little-endian loads so the table path is correct on any host byte order. */
static inline uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t sw_raw(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint32_t one = crc ^ load_le32(p);
        uint32_t two = load_le32(p + 4);
        crc = sw_table[7][one & 0xFF] ^ sw_table[6][(one >> 8) & 0xFF] ^
              sw_table[5][(one >> 16) & 0xFF] ^ sw_table[4][one >> 24] ^
              sw_table[3][two & 0xFF] ^ sw_table[2][(two >> 8) & 0xFF] ^
              sw_table[1][(two >> 16) & 0xFF] ^ sw_table[0][two >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ sw_table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

uint32_t l2f_crc32c_sw(uint32_t crc, const uint8_t *buf, size_t len)
{
    if (!buf || !len)
        return crc;
    ensure_init();
    return ~sw_raw(~crc, buf, len);
}

int l2f_crc32c_hw_available(void)
{
    ensure_init();
    return hw_ok;
}

#if L2F_HAVE_X86_CRC

static inline uint32_t shift_apply(const uint32_t tab[4][256], uint32_t c)
{
    return tab[0][c & 0xFF] ^ tab[1][(c >> 8) & 0xFF] ^ tab[2][(c >> 16) & 0xFF] ^
           tab[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t hw_one_lane(uint32_t crc, const uint8_t *p,
                                                               size_t n)
{
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
    while (n--)
        crc = _mm_crc32_u8(crc, *p++);
    return crc;
}

/* Consume as many 3*lane blocks as fit: lane A continues the running register, lanes B and C
 * start from 0, and because the raw CRC is linear,
 *   raw(A|B|C) = shift(shift(raw(A)) ^ raw(B)) ^ raw(C)
 * where shift advances a register over `lane` zero bytes. */
__attribute__((target("sse4.2"))) static uint32_t hw_three_lanes(uint32_t crc,
                                                                  const uint8_t **pp,
                                                                  size_t *np, size_t lane,
                                                                  const uint32_t tab[4][256])
{
    const uint8_t *p = *pp;
    size_t n = *np;
    while (n >= 3 * lane) {
        uint64_t a = crc, b = 0, c = 0;
        for (size_t i = 0; i < lane; i += 8) {
            uint64_t x, y, z;
            memcpy(&x, p + i, 8);
            memcpy(&y, p + lane + i, 8);
            memcpy(&z, p + 2 * lane + i, 8);
            a = _mm_crc32_u64(a, x);
            b = _mm_crc32_u64(b, y);
            c = _mm_crc32_u64(c, z);
        }
        crc = shift_apply(tab, shift_apply(tab, (uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)c;
        p += 3 * lane;
        n -= 3 * lane;
    }
    *pp = p;
    *np = n;
    return crc;
}

uint32_t l2f_crc32c_hw(uint32_t crc, const uint8_t *buf, size_t len)
{
    if (!buf || !len)
        return crc;
    ensure_init();
    if (!hw_ok)  /* never execute an illegal instruction: callers should have checked */
        return ~sw_raw(~crc, buf, len);
    uint32_t c = ~crc;
    for (size_t t = 0; t < N_TIERS; t++)
        c = hw_three_lanes(c, &buf, &len, lane_len[t], shift_tab[t]);
    return ~hw_one_lane(c, buf, len);
}

#else

uint32_t l2f_crc32c_hw(uint32_t crc, const uint8_t *buf, size_t len)
{
    return l2f_crc32c_sw(crc, buf, len);
}

#endif

uint32_t l2f_crc32c(uint32_t crc, const uint8_t *buf, size_t len)
{
    ensure_init();
    return hw_ok ? l2f_crc32c_hw(crc, buf, len) : l2f_crc32c_sw(crc, buf, len);
}
