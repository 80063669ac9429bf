// The lane sums of up to 16 512-bit accumulators in one transposing tree of 15 adds, shared by the
// float32 kernels (fused_softmax.cpp, AVX-512 target) and the bfloat16 ones (bf16.cpp).
#pragma once

#include <immintrin.h>

// A target attribute rather than GCC's target pragma, which Clang does not read (the fuzzers' build).
#if defined(__GNUC__) || defined(__clang__)
#define SOFTREG_LANE_SUMS_TARGET __attribute__((target("avx512f"), always_inline))
#else
#define SOFTREG_LANE_SUMS_TARGET
#endif

namespace softreg::lane_sums {

// Lane j of the result is the sum of v[j]'s lanes, added in the same tree as Highway's SumOfLanes
// (_mm512_reduce_add_ps: lanes i and i+8, then j and j+4, then 0+2 and 1+3, then those two), so the
// logits are bit for bit what one reduction per accumulator gives.
SOFTREG_LANE_SUMS_TARGET inline __m512 SixteenLaneSums(const __m512 (&v)[16]) {
  // Slot s takes v[4 * (s % 4) + s / 4]: the tree leaves slot 4j + c in lane 4c + j.
  __m512 halves[8];  // halves[m]: lanes 0-7 slot 2m's (i + i+8) sums, lanes 8-15 slot 2m+1's
  for (int m = 0; m < 8; ++m) {
    const __m512 a = v[4 * ((2 * m) % 4) + (2 * m) / 4], b = v[4 * ((2 * m + 1) % 4) + (2 * m + 1) / 4];
    halves[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  }
  __m512 quarters[4];  // quarters[n]: 128-bit block c holds slot 4n+c's (j + j+4) sums
  for (int n = 0; n < 4; ++n) {
    const __m512 a = halves[2 * n], b = halves[2 * n + 1];
    quarters[n] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
  }
  __m512 pairs[2];  // pairs[p], block c: slot 8p+c's (0+2, 1+3), then slot 8p+4+c's
  for (int p = 0; p < 2; ++p) {
    const __m512 a = quarters[2 * p], b = quarters[2 * p + 1];
    pairs[p] = _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xEE));
  }
  return _mm512_add_ps(_mm512_shuffle_ps(pairs[0], pairs[1], 0x88),
                       _mm512_shuffle_ps(pairs[0], pairs[1], 0xDD));
}

}  // namespace softreg::lane_sums
