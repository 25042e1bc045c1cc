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
 *  - fold: on CPUs that also have VPCLMULQDQ and AVX2, each step of the main loop feeds 128
 *    bytes to carry-less-multiply folding (four 256-bit accumulators, on the vector units) *and*
 *    three 48-byte lanes to the `crc32` instruction (on the integer unit).  The two run side by
 *    side, so the pair is 1.5-1.7x the three lanes alone on frame-sized buffers (measured on the
 *    target EPYC: 265 against 437 ns for 8986 bytes, 70 against 108 ns for 1486).  l2f_crc32c
 *    uses it from FOLD_MIN_LEN bytes on (see there why not below).
 *  - fold128: carry-less-multiply folding alone, 128 bits at a time (eight xmm accumulators,
 *    SSE encodings only), for AMD CPUs with PCLMULQDQ but not VPCLMULQDQ/AVX2 (Zen 1 and 2).
 *    There the `crc32` instruction issues only once every ~3 cycles, so three lanes run barely
 *    faster than one (6.6 against 5.2 GB/s on the EPYC measured) and the multiplier is the
 *    faster unit: 11 GB/s from 1 KiB on, 1.6-2x the three lanes from 256 bytes up
 *    (bench/crc_paths.sh; BENCHMARKS.md "CRC32C without VPCLMULQDQ").  Keeping crc32 lanes busy
 *    beside it, as the 256-bit path does, gained nothing there (2 to 6 words per lane and step
 *    tried).  Intel CPUs without VPCLMULQDQ issue `crc32` every cycle, so they keep the three
 *    lanes: the fold was not measured on one.
 *  - software: slicing-by-8 tables (8 KiB), for CPUs without SSE4.2 and as the test oracle.
 *
 * Internally all work on the "raw" CRC register (no pre/post inversion); the public functions
 * add the inversions, which is what makes the zlib-style chaining work.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "l2fast_core.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#define L2F_HAVE_X86_CRC 1
#else
#define L2F_HAVE_X86_CRC 0
#endif
/* The fold path needs compiler support for target("vpclmulqdq") (GCC 8, Clang 6 and later). */
#if L2F_HAVE_X86_CRC && (defined(__clang__) || __GNUC__ >= 8)
#include <immintrin.h>
#define L2F_HAVE_X86_FOLD 1
#else
#define L2F_HAVE_X86_FOLD 0
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
static int fold_ok;
static int fold128_ok;
static int fold512_ok;
/* What l2f_crc32c runs; the numbers are l2f_crc32c_best's, so new paths go at the end. */
static enum { BEST_TABLE, BEST_HW, BEST_FOLD, BEST_FOLD128, BEST_FOLD512 } best;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Advance a raw register over n zero bytes, one byte at a time: slow, used only to build the shift
 * tables at init. */
static uint32_t raw_zeros(uint32_t crc, size_t n)
{
    while (n--)
        crc = (crc >> 8) ^ sw_table[0][crc & 0xFF];
    return crc;
}

#if L2F_HAVE_X86_FOLD
/* One step of the fold path: 128 bytes folded, and FOLD_WORDS 8-byte words in each of three
 * crc32 lanes (six words keep the integer unit about as busy as the vector units; 4, 5 and 8 were
 * slower).  A call takes at least FOLD_MIN_STEPS steps (below that, fold_only is faster) and at
 * most FOLD_MAX_STEPS (the size of the lane shift table). */
#define FOLD_WORDS 6
#define FOLD_LANE_STEP (8 * FOLD_WORDS)
#define FOLD_STEP (128 + 3 * FOLD_LANE_STEP)
#define FOLD_MIN_STEPS 6
#define FOLD_MAX_STEPS 1024

/* Buffers of FAR_MIN_LEN bytes or more are taken to come from memory rather than cache (a frame,
 * checked right after the kernel copied it, is at most 64 KiB), and their fold loops prefetch
 * the folded part FAR_PREFETCH_BYTES ahead.  On session 27's Zen 5, a 64 MiB buffer: 24.6-27.8
 * against 40.5-51.0 GB/s with 4-16 KiB ahead (8 KiB best), a plain 512-bit read 35-60 GB/s;
 * the same prefetch on frames in cache cost 2-4 % (72 against 70 GB/s at 8976 bytes), hence the
 * threshold.  Prefetching the three crc32 lanes as well gained nothing.  A prefetch past the
 * buffer's end cannot fault. */
#define FAR_MIN_LEN (256u << 10)
#define FAR_PREFETCH_BYTES 8192
#define PREFETCH_LINES(q, n)                                                                 \
    do {                                                                                     \
        for (int line_ = 0; line_ < (n); line_ += 64)                                        \
            _mm_prefetch((const char *)(q) + line_, _MM_HINT_T0);                            \
    } while (0)

/* Multipliers, in the reflected register convention (bit 31 is x^0): folding a 128-bit value
 * forward over d bits multiplies its low half (earlier bytes) by x^(d+31) mod P and its high half
 * by x^(d-33) mod P; the clmul product of two such values has one extra bit of degree, hence 33.
 * fold_k128 folds by 128 bits, fold_k1024 by 1024 (both 128-bit halves of a ymm register).
 * fold_lane_shift[m] advances a register over m lane steps (m * FOLD_LANE_STEP bytes): multiply by
 * x^(bits-33) with clmul, then one crc32 of the 64-bit product reduces it mod P. */
static uint64_t fold_k128[2];
static uint64_t fold_k1024[4];
static uint64_t fold_k2048[2]; /* the 512-bit path's: by 2048 bits, broadcast to four lanes */
static uint32_t fold_lane_shift[FOLD_MAX_STEPS + 1];
#endif

#if L2F_HAVE_X86_FOLD
/* x^n mod P as a raw register (bit 31 is x^0). */
static uint32_t x_pow_mod(size_t n)
{
    return raw_zeros(0x80000000u >> (n & 7), n >> 3);
}
#endif

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
    /* L2FAST_CRC32C=sse4.2 (or =table) caps the path l2f_crc32c picks, for same-minute A/B
     * benchmarks of whole transfers (bench/env_ab.sh); =fold128 picks the 128-bit fold wherever
     * the CPU can run it.  The explicit entry points stay usable. */
    const char *cap = getenv("L2FAST_CRC32C");
    const int cap_table = cap && strcmp(cap, "table") == 0;
    const int cap_hw = cap && strcmp(cap, "sse4.2") == 0;
#if L2F_HAVE_X86_FOLD
    /* __builtin_cpu_supports("avx2") also checks that the OS saves the ymm registers (XGETBV). */
    fold_ok = hw_ok && __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("avx2") &&
              __builtin_cpu_supports("vpclmulqdq");
    fold_k128[0] = x_pow_mod(128 + 31);
    fold_k128[1] = x_pow_mod(128 - 33);
    fold_k1024[0] = fold_k1024[2] = x_pow_mod(1024 + 31);
    fold_k1024[1] = fold_k1024[3] = x_pow_mod(1024 - 33);
    fold_k2048[0] = x_pow_mod(2048 + 31);
    fold_k2048[1] = x_pow_mod(2048 - 33);
    /* avx512f also checks that the OS saves the zmm and mask registers (XGETBV). */
    fold512_ok = fold_ok && __builtin_cpu_supports("avx512f");
    fold_lane_shift[1] = x_pow_mod(8 * FOLD_LANE_STEP - 33);
    for (size_t m = 2; m <= FOLD_MAX_STEPS; m++)
        fold_lane_shift[m] = raw_zeros(fold_lane_shift[m - 1], FOLD_LANE_STEP);
    fold128_ok = hw_ok && __builtin_cpu_supports("pclmul");
    /* The 128-bit fold is what l2f_crc32c runs only where it was measured to win (see the top). */
    const int fold128_best = fold128_ok && __builtin_cpu_is("amd");
#else
    fold_ok = fold128_ok = fold512_ok = 0;
    const int fold128_best = 0;
#endif
    /* L2FAST_CRC32C=fold128 picks the 128-bit fold on a CPU that has the 256-bit one too;
     * =fold256 the 256-bit one on a CPU with the 512-bit one. */
    const int cap_f128 = cap && strcmp(cap, "fold128") == 0;
    const int cap_f256 = cap && strcmp(cap, "fold256") == 0;
    if (cap_table)
        best = BEST_TABLE;
    else if (fold512_ok && !cap_hw && !cap_f128 && !cap_f256)
        best = BEST_FOLD512;
    else if (fold_ok && !cap_hw && !cap_f128)
        best = BEST_FOLD;
    else if (fold128_ok && !cap_hw && (fold128_best || cap_f128))
        best = BEST_FOLD128;
    else
        best = hw_ok ? BEST_HW : BEST_TABLE;
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
    /* Below the smallest tier's block (a frame header, a short control payload) one lane does
     * it all: the tier calls alone cost ~10 ns, 40 % of a 64-byte CRC. */
    if (len >= 3 * lane_len[N_TIERS - 1])
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

#if L2F_HAVE_X86_FOLD

#define FOLD_TARGET __attribute__((target("sse4.2,pclmul,avx2,vpclmulqdq")))

/* Both fold paths (the 256-bit one and the 128-bit one below) end here.  Their accumulators are
 * eight 128-bit values in memory order (parts[0] the earliest); each is folded forward over 128
 * bits into the next, and the one value left is reduced to the raw register with two crc32
 * instructions: the CRC of those 16 bytes from a zero register is the CRC of everything folded
 * into them.  Legacy SSE encodings only, so the 128-bit path runs no AVX; the 256-bit path
 * inlines it under its own target. */
#define F128_TARGET __attribute__((target("sse4.2,pclmul")))

F128_TARGET static inline uint32_t reduce_parts(const __m128i parts[8])
{
    const __m128i k = _mm_loadu_si128((const __m128i *)fold_k128);
    __m128i acc = parts[0];
    for (int i = 1; i < 8; i++) {
        __m128i lo = _mm_clmulepi64_si128(acc, k, 0x00);
        __m128i hi = _mm_clmulepi64_si128(acc, k, 0x11);
        acc = _mm_xor_si128(parts[i], _mm_xor_si128(lo, hi));
    }
    uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(acc));
    return (uint32_t)_mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(acc, 1));
}

/* Fold four ymm accumulators (eight 128-bit values, in memory order) into the raw register. */
FOLD_TARGET static uint32_t fold_reduce(__m256i x0, __m256i x1, __m256i x2, __m256i x3)
{
    const __m128i parts[8] = {
        _mm256_castsi256_si128(x0), _mm256_extracti128_si256(x0, 1),
        _mm256_castsi256_si128(x1), _mm256_extracti128_si256(x1, 1),
        _mm256_castsi256_si128(x2), _mm256_extracti128_si256(x2, 1),
        _mm256_castsi256_si128(x3), _mm256_extracti128_si256(x3, 1),
    };
    return reduce_parts(parts);
}

/* acc = acc folded forward over 1024 bits, xor the next 32 bytes at p. */
FOLD_TARGET static inline __m256i fold_1024(__m256i acc, __m256i k, const uint8_t *p)
{
    __m256i lo = _mm256_clmulepi64_epi128(acc, k, 0x00);
    __m256i hi = _mm256_clmulepi64_epi128(acc, k, 0x11);
    return _mm256_xor_si256(_mm256_xor_si256(lo, hi), _mm256_loadu_si256((const __m256i *)p));
}

/* The four accumulators are named variables, not an array: GCC -O2 then keeps them in registers
 * (with an array it spilled them, and the fold ran 1.4x slower). */
#define FOLD_LOAD(p, crc)                                                                    \
    __m256i x0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p)),                  \
                                  _mm256_zextsi128_si256(_mm_cvtsi32_si128((int)(crc))));    \
    __m256i x1 = _mm256_loadu_si256((const __m256i *)((p) + 32));                            \
    __m256i x2 = _mm256_loadu_si256((const __m256i *)((p) + 64));                            \
    __m256i x3 = _mm256_loadu_si256((const __m256i *)((p) + 96))
#define FOLD_NEXT(p, k)                                                                      \
    do {                                                                                     \
        x0 = fold_1024(x0, k, (p));                                                          \
        x1 = fold_1024(x1, k, (p) + 32);                                                     \
        x2 = fold_1024(x2, k, (p) + 64);                                                     \
        x3 = fold_1024(x3, k, (p) + 96);                                                     \
    } while (0)

/* Vector folding alone over the largest multiple of 128 bytes (*np >= 256).  FOLD_LOAD xors the
 * running register into the first four bytes: raw(c, D) = raw(0, D with c xored into them). */
FOLD_TARGET static uint32_t fold_only(uint32_t crc, const uint8_t **pp, size_t *np)
{
    const uint8_t *p = *pp;
    size_t n = *np - 128;
    const __m256i k = _mm256_loadu_si256((const __m256i *)fold_k1024);
    FOLD_LOAD(p, crc);
    for (p += 128; n >= 128; p += 128, n -= 128)
        FOLD_NEXT(p, k);
    *pp = p;
    *np = n;
    return fold_reduce(x0, x1, x2, x3);
}

/* One step of the three crc32 lanes (b, c, d; registers cb, cc, cd) in both fold loops. */
#define LANE_WORDS()                                                                         \
    for (int w = 0; w < FOLD_WORDS; w++, b += 8, c += 8, d += 8) {                           \
        uint64_t u, v, z;                                                                    \
        memcpy(&u, b, 8);                                                                    \
        memcpy(&v, c, 8);                                                                    \
        memcpy(&z, d, 8);                                                                    \
        cb = _mm_crc32_u64(cb, u);                                                           \
        cc = _mm_crc32_u64(cc, v);                                                           \
        cd = _mm_crc32_u64(cd, z);                                                           \
    }

/* The folded part's register r, then the three lanes' registers, each after the one before has
 * been advanced over a lane of m steps: the raw CRC of the whole span. */
FOLD_TARGET static inline uint32_t join_lanes(uint32_t r, size_t m, uint64_t cb, uint64_t cc,
                                              uint64_t cd)
{
    const __m128i shift = _mm_cvtsi32_si128((int)fold_lane_shift[m]);
    const uint32_t lanes[3] = {(uint32_t)cb, (uint32_t)cc, (uint32_t)cd};
    for (int i = 0; i < 3; i++) {
        __m128i prod = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)r), shift, 0x00);
        r = (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(prod)) ^ lanes[i];
    }
    return r;
}

/* m steps over m * FOLD_STEP bytes laid out as [A: 128m folded][B][C][D: three crc32 lanes of
 * m * FOLD_LANE_STEP], both kinds in one loop so they overlap in the core.  Since the raw CRC is
 * linear, raw(A|B|C|D) = s(s(s(raw(A)) ^ raw(B)) ^ raw(C)) ^ raw(D), s advancing over one lane. */
FOLD_TARGET static inline __attribute__((always_inline)) uint32_t
fold_steps_body(uint32_t crc, const uint8_t *p, size_t m, int far)
{
    const size_t lane = m * FOLD_LANE_STEP;
    const uint8_t *b = p + 128 * m, *c = b + lane, *d = c + lane;
    const __m256i k = _mm256_loadu_si256((const __m256i *)fold_k1024);
    uint64_t cb = 0, cc = 0, cd = 0;
    FOLD_LOAD(p, crc);
    for (size_t step = 1; step < m; step++) {
        p += 128;
        if (far)
            PREFETCH_LINES(p + FAR_PREFETCH_BYTES, 128);
        FOLD_NEXT(p, k);
        LANE_WORDS();
    }
    LANE_WORDS(); /* the lanes have m steps, the fold m - 1 after its load */
    return join_lanes(fold_reduce(x0, x1, x2, x3), m, cb, cc, cd);
}

FOLD_TARGET static uint32_t fold_steps(uint32_t crc, const uint8_t *p, size_t m)
{
    return fold_steps_body(crc, p, m, 0);
}

FOLD_TARGET static uint32_t fold_steps_far(uint32_t crc, const uint8_t *p, size_t m)
{
    return fold_steps_body(crc, p, m, 1);
}

/* Run `steps` (fold_steps, fold512_steps or a _far one; step `step` bytes) over *bufp while at
 * least FOLD_MIN_STEPS steps are left, at most FOLD_MAX_STEPS a call (its shift table's size). */
static uint32_t run_steps(uint32_t c, const uint8_t **bufp, size_t *lenp, size_t step,
                          uint32_t (*steps)(uint32_t, const uint8_t *, size_t))
{
    while (*lenp >= FOLD_MIN_STEPS * step) {
        size_t m = *lenp / step;
        if (m > FOLD_MAX_STEPS)
            m = FOLD_MAX_STEPS;
        c = steps(c, *bufp, m);
        *bufp += m * step;
        *lenp -= m * step;
    }
    return c;
}

/* The 256-bit path on the raw register (no pre- and post-inversion). */
static uint32_t fold256_raw(uint32_t c, const uint8_t *buf, size_t len)
{
    c = run_steps(c, &buf, &len, FOLD_STEP, len >= FAR_MIN_LEN ? fold_steps_far : fold_steps);
    if (len >= 256)
        c = fold_only(c, &buf, &len);
    return hw_one_lane(c, buf, len);
}

uint32_t l2f_crc32c_fold(uint32_t crc, const uint8_t *buf, size_t len)
{
    if (!buf || !len)
        return crc;
    ensure_init();
    if (!fold_ok)  /* never execute an illegal instruction: callers should have checked */
        return l2f_crc32c_hw(crc, buf, len);
    return ~fold256_raw(~crc, buf, len);
}

/* The 512-bit path, for CPUs with AVX-512 and VPCLMULQDQ: fold_steps on four zmm accumulators
 * (256 bytes folded per step, by 2048 bits) beside the same three crc32 lanes, which keep their
 * step (FOLD_LANE_STEP) and so their shift table.  On session 25's Zen 5, buffers in cache:
 * 75 against 57 GB/s at 8976 bytes, 85 against 65 at 65511 (four zmm accumulators without the
 * lanes: 69 and 71; 4, 8 and 10 lane words: slower than 6).  The bulk is done in such steps; the
 * tail (under FOLD_MIN_STEPS of them) by the 256-bit path. */
#define FOLD512_TARGET __attribute__((target("sse4.2,pclmul,avx2,vpclmulqdq,avx512f")))
#define FOLD512_STEP (256 + 3 * FOLD_LANE_STEP)

/* a's four 128-bit parts each folded forward over the distance k holds (2048 bits in the loop,
 * 1024 at its end), xor b: one three-way xor. */
FOLD512_TARGET static inline __m512i fold512_into(__m512i a, __m512i b, __m512i k)
{
    const __m512i lo = _mm512_clmulepi64_epi128(a, k, 0x00);
    const __m512i hi = _mm512_clmulepi64_epi128(a, k, 0x11);
    return _mm512_ternarylogic_epi64(lo, hi, b, 0x96);
}

/* m steps over m * FOLD512_STEP bytes laid out as fold_steps' are, with 256 folded bytes a step.
 * Named accumulators, as in FOLD_LOAD: kept in registers at -O2. */
FOLD512_TARGET static inline __attribute__((always_inline)) uint32_t
fold512_steps_body(uint32_t crc, const uint8_t *p, size_t m, int far)
{
    const size_t lane = m * FOLD_LANE_STEP;
    const uint8_t *b = p + 256 * m, *c = b + lane, *d = c + lane;
    const __m512i k = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)fold_k2048));
    uint64_t cb = 0, cc = 0, cd = 0;
    __m512i x0 = _mm512_xor_si512(_mm512_loadu_si512((const void *)p),
                                  _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)crc)));
    __m512i x1 = _mm512_loadu_si512((const void *)(p + 64));
    __m512i x2 = _mm512_loadu_si512((const void *)(p + 128));
    __m512i x3 = _mm512_loadu_si512((const void *)(p + 192));
    for (size_t step = 1; step < m; step++) {
        p += 256;
        if (far)
            PREFETCH_LINES(p + FAR_PREFETCH_BYTES, 256);
        x0 = fold512_into(x0, _mm512_loadu_si512(p), k);
        x1 = fold512_into(x1, _mm512_loadu_si512(p + 64), k);
        x2 = fold512_into(x2, _mm512_loadu_si512(p + 128), k);
        x3 = fold512_into(x3, _mm512_loadu_si512(p + 192), k);
        LANE_WORDS();
    }
    LANE_WORDS(); /* the lanes have m steps, the fold m - 1 after its load */
    /* x0 and x1 over 1024 bits into x2 and x3: eight 128-bit parts in memory order, reduced as
     * the 256-bit path's are. */
    const __m512i k1024 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)fold_k1024));
    const __m512i y0 = fold512_into(x0, x2, k1024), y1 = fold512_into(x1, x3, k1024);
    const __m128i parts[8] = {
        _mm512_extracti32x4_epi32(y0, 0), _mm512_extracti32x4_epi32(y0, 1),
        _mm512_extracti32x4_epi32(y0, 2), _mm512_extracti32x4_epi32(y0, 3),
        _mm512_extracti32x4_epi32(y1, 0), _mm512_extracti32x4_epi32(y1, 1),
        _mm512_extracti32x4_epi32(y1, 2), _mm512_extracti32x4_epi32(y1, 3),
    };
    return join_lanes(reduce_parts(parts), m, cb, cc, cd);
}

FOLD512_TARGET static uint32_t fold512_steps(uint32_t crc, const uint8_t *p, size_t m)
{
    return fold512_steps_body(crc, p, m, 0);
}

FOLD512_TARGET static uint32_t fold512_steps_far(uint32_t crc, const uint8_t *p, size_t m)
{
    return fold512_steps_body(crc, p, m, 1);
}

uint32_t l2f_crc32c_fold512(uint32_t crc, const uint8_t *buf, size_t len)
{
    if (!buf || !len)
        return crc;
    ensure_init();
    if (!fold512_ok) /* never execute an illegal instruction: callers should have checked */
        return l2f_crc32c_fold(crc, buf, len);
    const uint32_t c = run_steps(~crc, &buf, &len, FOLD512_STEP,
                                 len >= FAR_MIN_LEN ? fold512_steps_far : fold512_steps);
    return ~fold256_raw(c, buf, len);
}

/* The 128-bit path: the fold above on xmm registers and legacy SSE encodings only, for CPUs with
 * PCLMULQDQ but no VPCLMULQDQ/AVX2.  Its own loop, not the 256-bit path's with narrower types, so
 * that it never runs an instruction of the 256-bit path's set; the final reduction is shared. */

/* acc folded forward over 1024 bits (eight accumulators ahead), xor the next 16 bytes at p. */
F128_TARGET static inline __m128i f128_fold(__m128i acc, __m128i k, const uint8_t *p)
{
    __m128i lo = _mm_clmulepi64_si128(acc, k, 0x00);
    __m128i hi = _mm_clmulepi64_si128(acc, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), _mm_loadu_si128((const __m128i *)p));
}

/* Named accumulators, as in FOLD_LOAD: kept in registers at -O2. */
#define F128_LOAD(p, crc)                                                                     \
    __m128i y0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p)),                         \
                               _mm_cvtsi32_si128((int)(crc)));                                \
    __m128i y1 = _mm_loadu_si128((const __m128i *)((p) + 16));                                \
    __m128i y2 = _mm_loadu_si128((const __m128i *)((p) + 32));                                \
    __m128i y3 = _mm_loadu_si128((const __m128i *)((p) + 48));                                \
    __m128i y4 = _mm_loadu_si128((const __m128i *)((p) + 64));                                \
    __m128i y5 = _mm_loadu_si128((const __m128i *)((p) + 80));                                \
    __m128i y6 = _mm_loadu_si128((const __m128i *)((p) + 96));                                \
    __m128i y7 = _mm_loadu_si128((const __m128i *)((p) + 112))
#define F128_NEXT(p, k)                                                                       \
    do {                                                                                      \
        y0 = f128_fold(y0, k, (p));                                                           \
        y1 = f128_fold(y1, k, (p) + 16);                                                      \
        y2 = f128_fold(y2, k, (p) + 32);                                                      \
        y3 = f128_fold(y3, k, (p) + 48);                                                      \
        y4 = f128_fold(y4, k, (p) + 64);                                                      \
        y5 = f128_fold(y5, k, (p) + 80);                                                      \
        y6 = f128_fold(y6, k, (p) + 96);                                                      \
        y7 = f128_fold(y7, k, (p) + 112);                                                     \
    } while (0)

/* Folding alone over the largest multiple of 128 bytes (*np >= 256), as fold_only. */
F128_TARGET static uint32_t f128_only(uint32_t crc, const uint8_t **pp, size_t *np)
{
    const uint8_t *p = *pp;
    size_t n = *np - 128;
    const __m128i k = _mm_loadu_si128((const __m128i *)fold_k1024);
    F128_LOAD(p, crc);
    for (p += 128; n >= 128; p += 128, n -= 128)
        F128_NEXT(p, k);
    *pp = p;
    *np = n;
    const __m128i parts[8] = {y0, y1, y2, y3, y4, y5, y6, y7};
    return reduce_parts(parts);
}

uint32_t l2f_crc32c_fold128(uint32_t crc, const uint8_t *buf, size_t len)
{
    if (!buf || !len)
        return crc;
    ensure_init();
    if (!fold128_ok) /* never execute an illegal instruction: callers should have checked */
        return l2f_crc32c_hw(crc, buf, len);
    uint32_t c = ~crc;
    if (len >= 256)
        c = f128_only(c, &buf, &len);
    return ~hw_one_lane(c, buf, len); /* the last 0..127 bytes */
}

#else

uint32_t l2f_crc32c_fold(uint32_t crc, const uint8_t *buf, size_t len)
{
    return l2f_crc32c_hw(crc, buf, len);
}

uint32_t l2f_crc32c_fold512(uint32_t crc, const uint8_t *buf, size_t len)
{
    return l2f_crc32c_hw(crc, buf, len);
}

uint32_t l2f_crc32c_fold128(uint32_t crc, const uint8_t *buf, size_t len)
{
    return l2f_crc32c_hw(crc, buf, len);
}

#endif

int l2f_crc32c_fold128_available(void)
{
    ensure_init();
    return fold128_ok;
}

int l2f_crc32c_fold_available(void)
{
    ensure_init();
    return fold_ok;
}

int l2f_crc32c_fold512_available(void)
{
    ensure_init();
    return fold512_ok;
}

/* l2f_crc32c folds only buffers of at least FOLD_MIN_LEN bytes and leaves shorter ones to the
 * three lanes.  Alone the fold is faster from 64 bytes on (bench/crc_paths.sh), but in whole
 * transfers at MTU 1500 (1.4 KiB payloads) it cost the sending core ~3 % (l2fast bench, 6 runs
 * each way: 4.41 against 4.57 Gbit/s median) while from 8 KiB payloads on it gains (MTU 9000
 * +1.8 %, 65535 +18 %; bench/env_ab.sh L2FAST_CRC32C=sse4.2 MTU 5).  The cause of the small-buffer
 * loss was not found: the ymm state the fold leaves in use is a suspect. */
#ifndef FOLD_MIN_LEN
#define FOLD_MIN_LEN 4096
#endif

int l2f_crc32c_best(void)
{
    ensure_init();
    return (int)best;
}

/* The 128-bit fold starts at 256 bytes (two blocks of its eight accumulators) and wins from there
 * on: 31 against 60 ns at 256 bytes, 200 against 290 at 1486.  It touches no ymm state, the
 * 256-bit path's suspect at small sizes (FOLD_MIN_LEN). */
#ifndef FOLD128_MIN_LEN
#define FOLD128_MIN_LEN 256
#endif

uint32_t l2f_crc32c(uint32_t crc, const uint8_t *buf, size_t len)
{
    ensure_init();
    if (best == BEST_FOLD512 && len >= FOLD_MIN_LEN)
        return l2f_crc32c_fold512(crc, buf, len);
    if (best == BEST_FOLD && len >= FOLD_MIN_LEN)
        return l2f_crc32c_fold(crc, buf, len);
    if (best == BEST_FOLD128 && len >= FOLD128_MIN_LEN)
        return l2f_crc32c_fold128(crc, buf, len);
    /* BEST_FOLD and BEST_FOLD512 below FOLD_MIN_LEN take the three lanes, as BEST_HW does. */
    return best == BEST_TABLE ? l2f_crc32c_sw(crc, buf, len) : l2f_crc32c_hw(crc, buf, len);
}
