/*
 * Vector byte searches (see tap_find.h).
 *
 * Both loops run at memory speed on log text: the newline count sums byte
 * counters 255 vectors at a time, and the literal search only looks at a
 * candidate's middle where its first and last bytes both matched.  AVX2 is
 * used where the CPU has it (checked once at run time), SSE2 otherwise.
 */
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TAP_AVX2 1
#endif

#include "tap_find.h"

/* Newlines in [b, b+n): byte counters summed 255 vectors at a time. */
static uint64_t count_nl_sse(const char *b, size_t n)
{
    uint64_t total = 0;
    size_t i = 0;

#ifdef __SSE2__
    const __m128i nl = _mm_set1_epi8('\n');
    const __m128i zero = _mm_setzero_si128();
    while (n - i >= 16) {
        size_t blocks = (n - i) / 16;
        if (blocks > 255)
            blocks = 255;
        __m128i acc = zero;
        for (size_t j = 0; j < blocks; j++, i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(v, nl));
        }
        __m128i sad = _mm_sad_epu8(acc, zero);
        total += (uint64_t)_mm_cvtsi128_si32(sad) + (uint64_t)_mm_extract_epi16(sad, 4);
    }
#endif
    for (; i < n; i++)
        total += b[i] == '\n';
    return total;
}

#ifdef TAP_AVX2
/* The same 32 bytes at a time, where the CPU has AVX2. */
__attribute__((target("avx2"))) static uint64_t count_nl_avx2(const char *b, size_t n)
{
    uint64_t total = 0;
    size_t i = 0;
    const __m256i nl = _mm256_set1_epi8('\n');
    const __m256i zero = _mm256_setzero_si256();

    while (n - i >= 32) {
        size_t blocks = (n - i) / 32;
        if (blocks > 255)
            blocks = 255;
        __m256i acc = zero;
        for (size_t j = 0; j < blocks; j++, i += 32) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(b + i));
            acc = _mm256_sub_epi8(acc, _mm256_cmpeq_epi8(v, nl));
        }
        __m256i sad = _mm256_sad_epu8(acc, zero);
        total += (uint64_t)_mm256_extract_epi64(sad, 0) + (uint64_t)_mm256_extract_epi64(sad, 1)
                 + (uint64_t)_mm256_extract_epi64(sad, 2)
                 + (uint64_t)_mm256_extract_epi64(sad, 3);
    }
    return total + count_nl_sse(b + i, n - i);
}

__attribute__((target("avx2"))) static const char *find_lit_avx2(const char *h, size_t n,
                                                                 const char *lit, size_t k)
{
    size_t i = 0;
    const __m256i first = _mm256_set1_epi8(lit[0]);
    const __m256i last = _mm256_set1_epi8(lit[k - 1]);

    for (; i + k - 1 + 32 <= n; i += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(h + i));
        __m256i z = _mm256_loadu_si256((const __m256i *)(const void *)(h + i + k - 1));
        unsigned mask = (unsigned)_mm256_movemask_epi8(
            _mm256_and_si256(_mm256_cmpeq_epi8(a, first), _mm256_cmpeq_epi8(z, last)));
        while (mask != 0) {
            size_t bit = (size_t)__builtin_ctz(mask);
            if (memcmp(h + i + bit + 1, lit + 1, k - 2) == 0)
                return h + i + bit;
            mask &= mask - 1;
        }
    }
    return memmem(h + i, n - i, lit, k);
}

static int have_avx2(void)
{
    /* a benign race: every thread computes the same answer */
    static int avx2 = -1;

    if (avx2 < 0)
        avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    return avx2;
}
#endif

uint64_t tap_count_nl(const char *b, size_t n)
{
#ifdef TAP_AVX2
    if (have_avx2())
        return count_nl_avx2(b, n);
#endif
    return count_nl_sse(b, n);
}

/*
 * memmem for the literal: compare its first and last bytes 16 positions at
 * a time and check the middle only where both agree.  Log text rarely has
 * both in place, so this runs at memory speed.
 */
const char *tap_find(const char *h, size_t n, const char *lit, size_t k)
{
    size_t i = 0;

    if (k == 0 || n < k)
        return NULL;
    if (k == 1)
        return memchr(h, lit[0], n);
#ifdef TAP_AVX2
    if (n >= 64 && have_avx2())
        return find_lit_avx2(h, n, lit, k);
#endif
#ifdef __SSE2__
    const __m128i first = _mm_set1_epi8(lit[0]);
    const __m128i last = _mm_set1_epi8(lit[k - 1]);
    for (; i + k - 1 + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(h + i));
        __m128i z = _mm_loadu_si128((const __m128i *)(const void *)(h + i + k - 1));
        unsigned mask = (unsigned)_mm_movemask_epi8(
            _mm_and_si128(_mm_cmpeq_epi8(a, first), _mm_cmpeq_epi8(z, last)));
        while (mask != 0) {
            size_t bit = (size_t)__builtin_ctz(mask);
            if (memcmp(h + i + bit + 1, lit + 1, k - 2) == 0)
                return h + i + bit;
            mask &= mask - 1;
        }
    }
#endif
    return memmem(h + i, n - i, lit, k);
}
