// The fast path's bfloat16 mode (TrainConfig::bf16): the dot products of the forward pass and the
// sums of the backward pass are taken with AVX-512 BF16's VDPBF16PS, which does two multiply-adds of
// bfloat16 pairs into each float32 lane: twice the float32 FMA's work per instruction, on Zen 4 and
// Zen 5 twice its throughput (BENCHMARKS.md). The inputs are rounded to bfloat16 (8 significant bits;
// pixel bytes 0..255 stay exact), the products are exact in float32 and the sums are float32, as are
// the weights that SGD updates: only what the sums read is rounded. The softmax, the loss, the bias and
// the weights' update stay float32 (fast_forward_rows with FastForwardArgs::logits_given).
// Where the CPU has AMX (Intel Sapphire Rapids and later), the logits and the update's sums are taken on
// its tiles instead (TDPBF16PS, 16 times VDPBF16PS's work an instruction), from the same layouts
// (AmxLogits, AmxUpdate; bf16_uses_amx).
//
// Layouts (padding is zeros, so it adds nothing to a sum):
//   rows16 (count, stride):      a batch's rows as bfloat16, in input order, for the forward pass;
//   W16    (K, stride):          W rounded to bfloat16, refreshed by the update as it steps W;
//   row pairs (pairs x width):   for the backward pass, the inputs [d_begin, d_begin + width) of rows
//                                2j and 2j+1 side by side in one 32-bit lane (row 2j in the low half),
//                                in panels: each 64 inputs (the 4 vectors an update block sums) of
//                                every pair j together, j after j, then each last vector's 16 the same
//                                way (PanelOf). A block then reads its inputs in one sequential stream;
//                                in rows of `width` pairs, j after j was a new 4 KB page (1,024 inputs);
//   dlogit pairs (pairs, K):     dlogits[2j][k] and dlogits[2j+1][k] side by side in the same way.
// An odd last row is paired with a row of zeros.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernels/lane_sums.hpp"
#include "softreg/error.hpp"
#include "softreg/kernels.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SOFTREG_BF16_KERNELS 1
#define SOFTREG_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
#if defined(__linux__)
// AMX (Sapphire Rapids and later): the tile instructions, which Linux lets a process use once it asks.
#define SOFTREG_AMX_KERNELS 1
#define SOFTREG_AMX_TARGET \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
#endif
#endif

namespace softreg {

#if SOFTREG_BF16_KERNELS
namespace {

constexpr std::size_t kLanes = 16;  // float32 lanes of a 512-bit vector: 32 bfloat16 values

SOFTREG_BF16_TARGET inline __mmask16 FirstLanes(std::size_t n) {
  return n >= kLanes ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

// Values [d, d + n) of a row (n <= 16) as floats, zeros in the lanes past n.
SOFTREG_BF16_TARGET inline __m512 LoadValues(const std::uint8_t* row, ElementType element, std::size_t d,
                                             std::size_t n) {
  const __mmask16 mask = FirstLanes(n);
  switch (element) {
    case ElementType::kF32:
      return _mm512_maskz_loadu_ps(mask, reinterpret_cast<const float*>(row) + d);
    case ElementType::kF64: {
      const double* p = reinterpret_cast<const double*>(row) + d;
      const __m256 lo = _mm512_cvtpd_ps(_mm512_maskz_loadu_pd(static_cast<__mmask8>(mask & 0xFF), p));
      const __m256 hi = _mm512_cvtpd_ps(_mm512_maskz_loadu_pd(static_cast<__mmask8>(mask >> 8), p + 8));
      return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
    }
    case ElementType::kU8:
      break;
  }
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, row + d)));
}

// The row pairs' panels (the layout above): the update sums the pairs of 4 vectors of inputs at a time,
// and of a last vector or three after the last 64 inputs one vector at a time.
constexpr std::size_t kPanelVectors = 4;
constexpr std::size_t kPanelLanes = kPanelVectors * kLanes;

struct Panel {
  std::size_t first;   // where the inputs from the offset lie for pair 0
  std::size_t stride;  // and from one pair to the next
};
// The panel of the inputs from offset `o` (a multiple of 16, from d_begin) of `n` inputs and `pairs` pairs.
inline Panel PanelOf(std::size_t o, std::size_t n, std::size_t pairs) {
  const std::size_t whole = n / kPanelLanes * kPanelLanes;  // the inputs of whole panels
  if (o < whole) return {o / kPanelLanes * kPanelLanes * pairs + o % kPanelLanes, kPanelLanes};
  return {whole * pairs + (o - whole) * pairs, kLanes};
}

// logits[r][k0 + k] = scale * (x_r . W_k) + b_k for R rows from `first` and KT classes from k0.
template <int KT, int R>
SOFTREG_BF16_TARGET void DotBlock(const FastBf16LogitsArgs& a, std::size_t first, std::size_t k0) {
  __m512 acc[R][KT];
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < KT; ++k)
      acc[r][k] = _mm512_setzero_ps();
  const std::uint16_t* x = a.rows16 + first * a.stride;
  const std::uint16_t* W = a.W16 + k0 * a.stride;
  for (std::size_t d = 0; d < a.stride; d += 2 * kLanes) {
    __m512bh xv[R];
    for (int r = 0; r < R; ++r)
      xv[r] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(x + static_cast<std::size_t>(r) * a.stride + d));
    for (int k = 0; k < KT; ++k) {
      const __m512bh w =
          reinterpret_cast<__m512bh>(_mm512_loadu_si512(W + static_cast<std::size_t>(k) * a.stride + d));
      for (int r = 0; r < R; ++r)
        acc[r][k] = _mm512_dpbf16_ps(acc[r][k], xv[r], w);
    }
  }
  // The R*KT sums in (row, class) order, 16 to a vector.
  constexpr int kSums = R * KT, kGroups = (kSums + 15) / 16;
  alignas(64) float sums[kGroups * 16];
  for (int g = 0; g < kGroups; ++g) {
    __m512 v[16];
    for (int s = 0; s < 16; ++s) {
      const int i = g * 16 + s;
      v[s] = i < kSums ? acc[i / KT][i % KT] : _mm512_setzero_ps();
    }
    _mm512_store_ps(sums + g * 16, lane_sums::SixteenLaneSums(v));
  }
  for (int r = 0; r < R; ++r) {
    float* out = a.logits + (first + static_cast<std::size_t>(r)) * a.classes + k0;
    for (int k = 0; k < KT; ++k)
      out[k] = sums[r * KT + k] * a.scale + a.b[k0 + static_cast<std::size_t>(k)];
  }
}

template <int KT>
SOFTREG_BF16_TARGET void DotTile(const FastBf16LogitsArgs& a, std::size_t k0) {
  constexpr int R = std::clamp(20 / KT, 1, 4);  // 20 accumulators of 32 registers
  std::size_t r = 0;
  for (; r + R <= a.count; r += R)
    DotBlock<KT, R>(a, r, k0);
  for (; r < a.count; ++r)
    DotBlock<KT, 1>(a, r, k0);
}

template <int KT = 10>
SOFTREG_BF16_TARGET void DotPartialTile(const FastBf16LogitsArgs& a, std::size_t k0, std::size_t width) {
  if constexpr (KT >= 1) {
    if (width == static_cast<std::size_t>(KT)) return DotTile<KT>(a, k0);
    DotPartialTile<KT - 1>(a, k0, width);
  }
}

// W[k][d..] -= step * scale * sum_j pairs, and W16 refreshed, for B vectors of inputs from d and KT
// classes from k0.
template <int KT, int B>
SOFTREG_BF16_TARGET void UpdateBlock(const FastBf16UpdateArgs& a, std::size_t d, std::size_t k0) {
  __m512 acc[B][KT];
  for (int b = 0; b < B; ++b)
    for (int k = 0; k < KT; ++k)
      acc[b][k] = _mm512_setzero_ps();
  const std::size_t K = a.classes;
  const Panel panel = PanelOf(d - a.d_begin, a.d_end - a.d_begin, a.pairs);
  const std::uint32_t* x = a.row_pairs + panel.first;
  for (std::size_t j = 0; j < a.pairs; ++j, x += panel.stride) {
    __m512bh xv[B];
    for (int b = 0; b < B; ++b)
      xv[b] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(x + static_cast<std::size_t>(b) * kLanes));
    const std::uint32_t* g = a.dlogit_pairs + j * K + k0;
    for (int k = 0; k < KT; ++k) {
      const __m512bh gk = reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(g[k])));
      for (int b = 0; b < B; ++b)
        acc[b][k] = _mm512_dpbf16_ps(acc[b][k], gk, xv[b]);
    }
  }
  // Each vector's loads of W before its stores, unmasked but for a last partial vector: interleaved,
  // each load of a row followed the stores to the rows above it at the same offset, 4 KB apart for
  // 1,024 inputs (with RequestWeights, the backward pass of 1,000 classes took 96 against 104 ms an
  // epoch on two threads; BENCHMARKS.md).
  const __m512 minus_scale = _mm512_set1_ps(-(a.step * a.scale));
  for (int b = 0; b < B; ++b) {
    const std::size_t at = d + static_cast<std::size_t>(b) * kLanes;
    if (at >= a.d_end) break;
    float* const w = a.W + k0 * a.inputs + at;
    std::uint16_t* const w16 = a.W16 + k0 * a.stride + at;
    if (at + kLanes <= a.d_end) {
      for (int k = 0; k < KT; ++k)
        acc[b][k] = _mm512_fmadd_ps(minus_scale, acc[b][k], _mm512_loadu_ps(w + k * a.inputs));
      for (int k = 0; k < KT; ++k) {
        _mm512_storeu_ps(w + k * a.inputs, acc[b][k]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(w16 + k * a.stride),
                            reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(acc[b][k])));
      }
    } else {
      const __mmask16 mask = FirstLanes(a.d_end - at);
      for (int k = 0; k < KT; ++k)
        acc[b][k] = _mm512_fmadd_ps(minus_scale, acc[b][k], _mm512_maskz_loadu_ps(mask, w + k * a.inputs));
      for (int k = 0; k < KT; ++k) {
        _mm512_mask_storeu_ps(w + k * a.inputs, mask, acc[b][k]);
        _mm256_mask_storeu_epi16(w16 + k * a.stride, mask,
                                 reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(acc[b][k])));
      }
    }
  }
}

// Asks for the lines of W and W16 that the block of B vectors of inputs from d and `classes` classes
// from k0 steps, to be written. A block's rows of W are lines no block before touched (for many classes
// W is megabytes, in L3), 256 bytes of a row 4 KB long: the step after each block's sums waited for them
// (a fifth of UpdateBlock's samples under perf, 1,000 classes of 1,024 inputs, Zen 5).
template <int B>
SOFTREG_BF16_TARGET inline void RequestWeights(const FastBf16UpdateArgs& a, std::size_t d, std::size_t k0,
                                               std::size_t classes) {
  for (std::size_t k = 0; k < classes; ++k) {
    const std::size_t row = k0 + k;
    for (int b = 0; b < B; ++b)
      __builtin_prefetch(a.W + row * a.inputs + d + static_cast<std::size_t>(b) * kLanes, 1, 3);
    for (int b = 0; b < B; b += 2)  // 32 bfloat16 a line
      __builtin_prefetch(a.W16 + row * a.stride + d + static_cast<std::size_t>(b) * kLanes, 1, 3);
  }
}

template <int KT>
SOFTREG_BF16_TARGET void UpdateTile(const FastBf16UpdateArgs& a, std::size_t k0) {
  constexpr int B = std::clamp(20 / KT, 1, 4);
  static_assert(B == kPanelVectors, "a block sums the inputs of one panel");
  std::size_t d = a.d_begin;
  for (; d + B * kLanes <= a.d_end; d += B * kLanes) {
    // The next block's lines, while this one's sums run: the next inputs of these classes, or after
    // the last whole block the first of the next tile's (when it is a whole tile too).
    if (d + 2 * B * kLanes <= a.d_end) {
      RequestWeights<B>(a, d + B * kLanes, k0, KT);
    } else if (k0 + 2 * KT <= a.classes) {
      RequestWeights<B>(a, a.d_begin, k0 + KT, KT);
    }
    UpdateBlock<KT, B>(a, d, k0);
  }
  for (; d < a.d_end; d += kLanes)  // the last vector may be partial (masked)
    UpdateBlock<KT, 1>(a, d, k0);
}

template <int KT = 4>  // the classes after the last tile of 5
SOFTREG_BF16_TARGET void UpdatePartialTile(const FastBf16UpdateArgs& a, std::size_t k0, std::size_t width) {
  if constexpr (KT >= 1) {
    if (width == static_cast<std::size_t>(KT)) return UpdateTile<KT>(a, k0);
    UpdatePartialTile<KT - 1>(a, k0, width);
  }
}

SOFTREG_BF16_TARGET void PackRows(const std::uint8_t* const* rows, std::size_t count, std::size_t D,
                                  ElementType element, std::size_t stride, std::uint16_t* out) {
  for (std::size_t r = 0; r < count; ++r) {
    std::uint16_t* o = out + r * stride;
    for (std::size_t d = 0; d < stride; d += 2 * kLanes) {
      const __m512 lo = d < D ? LoadValues(rows[r], element, d, D - d) : _mm512_setzero_ps();
      const __m512 hi =
          d + kLanes < D ? LoadValues(rows[r], element, d + kLanes, D - d - kLanes) : _mm512_setzero_ps();
      _mm512_storeu_si512(o + d, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
    }
  }
}

// Word 2i of the result is word i of `lo_row`'s 16 values, word 2i+1 word i of `hi_row`'s.
SOFTREG_BF16_TARGET inline __m512i Interleave(__m512 lo_row, __m512 hi_row) {
  // cvtne2ps puts lo_row's 16 bfloat16 in words 0-15 and hi_row's in words 16-31.
  const __m512i both = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi_row, lo_row));
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                         22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(order, both);
}

// Writes the pairs of rows 2j and 2j+1 for inputs [d_begin, d_end) in their panels, panel by panel, so
// that the stores run in one stream. rows.pair(j) gives pair j, whose lanes(d, n) are its 16 lanes from
// input d, n <= 16 of them inputs (zeros past n). The pair's row pointers are taken once, outside the
// stores (which may alias them as far as the compiler knows).
template <class PairsOf>
SOFTREG_BF16_TARGET void WritePanels(const PairsOf& rows, std::size_t pairs, std::size_t d_begin,
                                     std::size_t d_end, std::uint32_t* out) {
  const std::size_t width = bf16_pair_width(d_begin, d_end);
  for (std::size_t i = 0; i < width;) {
    const Panel panel = PanelOf(i, d_end - d_begin, pairs);
    for (std::size_t j = 0; j < pairs; ++j) {
      const auto pair = rows.pair(j);
      std::uint32_t* o = out + panel.first + j * panel.stride;
      for (std::size_t v = 0; v < panel.stride; v += kLanes) {
        const std::size_t d = d_begin + i + v;
        _mm512_storeu_si512(o + v, pair.lanes(d, std::min(kLanes, d_end - d)));
      }
    }
    i += panel.stride;
  }
}

// Pairs from the rows' own values (a row past the batch's count is zeros).
struct PairsOfRows {
  const std::uint8_t* const* rows;
  std::size_t count;
  ElementType element;
  struct Pair {
    const std::uint8_t *first, *second;
    ElementType element;
    SOFTREG_BF16_TARGET __m512i lanes(std::size_t d, std::size_t n) const {
      const __m512 lo = LoadValues(first, element, d, n);
      const __m512 hi = second ? LoadValues(second, element, d, n) : _mm512_setzero_ps();
      return Interleave(lo, hi);
    }
  };
  Pair pair(std::size_t j) const {
    return {rows[2 * j], 2 * j + 1 < count ? rows[2 * j + 1] : nullptr, element};
  }
};

// Pairs from rows already in bfloat16: each 32-bit lane is row 2j's word, then row 2j+1's.
struct PairsOfPackedRows {
  const std::uint16_t* rows16;
  std::size_t count, stride;
  struct Pair {
    const std::uint16_t *first, *second;
    SOFTREG_BF16_TARGET __m512i lanes(std::size_t d, std::size_t n) const {
      const __mmask16 mask = FirstLanes(n);
      const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, first + d));
      if (!second) return lo;
      const __m512i hi = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, second + d));
      return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
    }
  };
  Pair pair(std::size_t j) const {
    const std::uint16_t* first = rows16 + 2 * j * stride;
    return {first, 2 * j + 1 < count ? first + stride : nullptr};
  }
};

SOFTREG_BF16_TARGET void PackDlogitPairs(const float* dlogits, std::size_t count, std::size_t K,
                                         std::uint32_t* out) {
  for (std::size_t j = 0; j < (count + 1) / 2; ++j) {
    const float* first = dlogits + 2 * j * K;
    const float* second = 2 * j + 1 < count ? first + K : nullptr;
    for (std::size_t k = 0; k < K; k += kLanes) {
      const __mmask16 mask = FirstLanes(K - k);
      const __m512 lo = _mm512_maskz_loadu_ps(mask, first + k);
      const __m512 hi = second ? _mm512_maskz_loadu_ps(mask, second + k) : _mm512_setzero_ps();
      _mm512_mask_storeu_epi32(out + j * K + k, mask, Interleave(lo, hi));
    }
  }
}

SOFTREG_BF16_TARGET void RoundWeights(const float* W, std::size_t K, std::size_t D, std::size_t stride,
                                      std::uint16_t* out) {
  for (std::size_t k = 0; k < K; ++k) {
    for (std::size_t d = 0; d < stride; d += kLanes) {
      const __m512 w = d < D ? _mm512_maskz_loadu_ps(FirstLanes(D - d), W + k * D + d) : _mm512_setzero_ps();
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k * stride + d),
                          reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(w)));
    }
  }
}

// Twelve independent VDPBF16PS chains, as probe_fma_flops_per_second's FMA loop: 4 operations (two
// multiply-adds) per lane per instruction.
SOFTREG_BF16_TARGET double DotLoop(std::int64_t iterations, float* sink) {
  constexpr int kChains = 12;
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c)
    acc[c] = _mm512_set1_ps(0.001f * static_cast<float>(c));
  __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
  __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  asm("" : "+v"(a), "+v"(b));  // not constants the compiler could fold
  for (std::int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c)
      acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  }
  __m512 total = acc[0];
  for (int c = 1; c < kChains; ++c)
    total = _mm512_add_ps(total, acc[c]);
  *sink = total[0];
  return 4.0 * kChains * kLanes * static_cast<double>(iterations);
}

#if SOFTREG_AMX_KERNELS
// ---- AMX tiles ----------------------------------------------------------------------------------------
// A tile holds 16 rows of 64 bytes: 16 x 16 floats (an accumulator C), 16 rows of 32 bfloat16 (the left
// operand A) or 16 rows of 16 pairs of bfloat16 (the right operand B, row p holding for each of 16
// columns its values 2p and 2p+1). TDPBF16PS adds to each float C[m][n] the 32 products of row m of A
// with column n of B, pair after pair: 16 x 16 x 32 multiply-adds an instruction, 16 times VDPBF16PS's
// (on an Intel Xeon guest one core did 3.8 TFLOP/s with it, the FMA probe 249 GFLOP/s; BENCHMARKS.md).
// Each float of a result is one such chain over the pairs in order, whatever else a call computes, so
// the results do not depend on the thread count; their bits are not VDPBF16PS's (other sums' order).
constexpr std::size_t kTile = 16;

struct alignas(64) TileConfig {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
};

// Tiles 0-7, each 16 rows of 64 bytes: 0-3 accumulators (zeroed), 4-5 left operands, 6-7 right operands.
SOFTREG_AMX_TARGET void ConfigureTiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.bytes_per_row[t] = 64;
    config.rows[t] = 16;
  }
  // GCC 12's _tile_loadconfig declares only 8 bytes of the configuration read, so the optimiser may drop
  // the other stores as dead (bench/exact_int8_recipe.cpp's tiles faulted as unconfigured that way):
  // every store is made to happen first.
  asm volatile("" : : "r"(&config) : "memory");
  _tile_loadconfig(&config);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

// 16 vectors of 16 32-bit lanes transposed in registers: lane j of vector i becomes lane i of vector j.
SOFTREG_AMX_TARGET inline void Transpose16(__m512i (&r)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit lane: rows i and i + 1 interleaved
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // per 128-bit lane: column m of rows i..i+3 in r[i + m]
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int m = 0; m < 4; ++m) {  // column 4L + m: lane L of r[m], r[4 + m], r[8 + m], r[12 + m]
    const __m512i v0 = _mm512_shuffle_i32x4(r[m], r[4 + m], 0x44),
                  v1 = _mm512_shuffle_i32x4(r[m], r[4 + m], 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(r[8 + m], r[12 + m], 0x44),
                  v3 = _mm512_shuffle_i32x4(r[8 + m], r[12 + m], 0xEE);
    t[m] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    t[4 + m] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    t[8 + m] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    t[12 + m] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
  for (int i = 0; i < 16; ++i)
    r[i] = t[i];
}

// A 16 x 16 block of 32-bit values transposed: out[j * 16 + i] = in[i * in_stride + j] for i < rows and
// j < cols, zeros elsewhere.
SOFTREG_AMX_TARGET inline void TransposeBlock(const std::uint32_t* in, std::size_t in_stride,
                                              std::size_t rows, std::size_t cols, std::uint32_t* out) {
  const __mmask16 mask = FirstLanes(cols);
  __m512i r[16];
  for (std::size_t i = 0; i < kTile; ++i)
    r[i] = i < rows ? _mm512_maskz_loadu_epi32(mask, in + i * in_stride) : _mm512_setzero_si512();
  Transpose16(r);
  for (std::size_t j = 0; j < kTile; ++j)
    _mm512_storeu_si512(out + j * kTile, r[j]);
}

// One step of a 2 x 2 block: accumulator tile 2i + j += A tile i (4: a0, 5: a1) times B tile j (6: b0,
// 7: b1); a1 or b1 null where the block has one of them.
SOFTREG_AMX_TARGET inline void BlockProducts(const void* a0, const void* a1, std::size_t a_stride,
                                             const void* b0, std::size_t b0_stride, const void* b1,
                                             std::size_t b1_stride) {
  _tile_loadd(4, a0, a_stride);
  _tile_loadd(6, b0, b0_stride);
  _tile_dpbf16ps(0, 4, 6);
  if (b1) {
    _tile_loadd(7, b1, b1_stride);
    _tile_dpbf16ps(1, 4, 7);
  }
  if (a1) {
    _tile_loadd(5, a1, a_stride);
    _tile_dpbf16ps(2, 5, 6);
    if (b1) _tile_dpbf16ps(3, 5, 7);
  }
}

// The block's accumulators to c[2i + j], 16 x 16 floats each; zeroed for the next block.
SOFTREG_AMX_TARGET inline void StoreBlock(float (&c)[4][kTile * kTile], bool two_a, bool two_b) {
  _tile_stored(0, c[0], 64);
  if (two_b) _tile_stored(1, c[1], 64);
  if (two_a) _tile_stored(2, c[2], 64);
  if (two_a && two_b) _tile_stored(3, c[3], 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

// fast_bf16_logits on tiles: 2 x 2 accumulators, classes by rows (C = W16 . rows16^T), for 32 classes
// and 32 rows at a time. A: W16's rows as they lie (a last partial tile of classes padded with zero
// rows); B: each group of 16 rows with its pairs of inputs transposed to columns.
SOFTREG_AMX_TARGET void AmxLogits(const FastBf16LogitsArgs& a) {
  const std::size_t K = a.classes, pairs = a.stride / 2, count = a.count;
  const std::size_t groups = (count + kTile - 1) / kTile;
  thread_local std::vector<std::uint32_t> rows_b, last_classes;
  // Group g's B operand for the pairs from p: rows_b + (g * pairs + p) * 16, 16 rows of 16 values.
  rows_b.resize(groups * pairs * kTile);
  const auto* rows32 = reinterpret_cast<const std::uint32_t*>(a.rows16);
  for (std::size_t g = 0; g < groups; ++g) {
    const std::size_t valid = std::min(kTile, count - g * kTile);
    for (std::size_t p = 0; p < pairs; p += kTile)
      TransposeBlock(rows32 + g * kTile * pairs + p, pairs, valid, kTile,
                     rows_b.data() + (g * pairs + p) * kTile);
  }
  const std::size_t whole_classes = K / kTile * kTile;
  if (whole_classes < K) {
    last_classes.assign(kTile * pairs, 0);
    std::memcpy(last_classes.data(), a.W16 + whole_classes * a.stride,
                (K - whole_classes) * a.stride * sizeof(std::uint16_t));
  }
  const auto class_tile = [&](std::size_t k) {
    return k < whole_classes ? a.W16 + k * a.stride
                             : reinterpret_cast<const std::uint16_t*>(last_classes.data());
  };
  const std::size_t a_stride = a.stride * sizeof(std::uint16_t);
  const __m512 scale = _mm512_set1_ps(a.scale);
  ConfigureTiles();
  alignas(64) float c[4][kTile * kTile];
  for (std::size_t k0 = 0; k0 < K; k0 += 2 * kTile) {
    const bool two_tiles = k0 + kTile < K;
    const std::uint16_t* A0 = class_tile(k0);
    const std::uint16_t* A1 = two_tiles ? class_tile(k0 + kTile) : nullptr;
    for (std::size_t g = 0; g < groups; g += 2) {
      const bool two_groups = g + 1 < groups;
      const std::uint32_t* B0 = rows_b.data() + g * pairs * kTile;
      const std::uint32_t* B1 = B0 + pairs * kTile;
      for (std::size_t p = 0; p < pairs; p += kTile)
        BlockProducts(A0 + 2 * p, two_tiles ? A1 + 2 * p : nullptr, a_stride, B0 + p * kTile, 64,
                      two_groups ? B1 + p * kTile : nullptr, 64);
      StoreBlock(c, two_tiles, two_groups);
      // c[t] is 16 classes by 16 rows: transposed, each row's classes are a vector.
      for (std::size_t t = 0; t < 4; ++t) {
        const std::size_t kt = k0 + t / 2 * kTile, row0 = (g + t % 2) * kTile;
        if (kt >= K || row0 >= count) continue;
        const std::size_t rows = std::min(kTile, count - row0);
        const __mmask16 classes = FirstLanes(K - kt);
        __m512i sums[16];
        for (std::size_t m = 0; m < kTile; ++m)
          sums[m] = _mm512_load_si512(c[t] + m * kTile);
        Transpose16(sums);
        const __m512 bias = _mm512_maskz_loadu_ps(classes, a.b + kt);
        for (std::size_t i = 0; i < rows; ++i)
          _mm512_mask_storeu_ps(a.logits + (row0 + i) * K + kt, classes,
                                _mm512_fmadd_ps(_mm512_castsi512_ps(sums[i]), scale, bias));
      }
    }
  }
  _tile_release();
}

// fast_bf16_update_columns on tiles: C = the dlogit pairs^T . the row pairs, 2 x 2 accumulators of 16
// classes by 16 inputs. A: the dlogit pairs transposed to 16 classes by 16 pairs; B: the row pairs'
// panels as they lie (16 pairs of a panel's 16 inputs, a panel's stride apart), a last partial 16 of
// pairs copied beside zero rows.
SOFTREG_AMX_TARGET void AmxUpdate(const FastBf16UpdateArgs& a) {
  const std::size_t K = a.classes, pairs = a.pairs, n = a.d_end - a.d_begin;
  const std::size_t width = bf16_pair_width(a.d_begin, a.d_end);
  const std::size_t chunks = (pairs + kTile - 1) / kTile, class_tiles = (K + kTile - 1) / kTile;
  thread_local std::vector<std::uint32_t> lhs, last_pairs;
  // Class tile c's A operand for pairs 16q..: lhs + (c * chunks + q) * 256.
  lhs.resize(class_tiles * chunks * kTile * kTile);
  for (std::size_t c = 0; c < class_tiles; ++c) {
    for (std::size_t q = 0; q < chunks; ++q)
      TransposeBlock(a.dlogit_pairs + q * kTile * K + c * kTile, K, std::min(kTile, pairs - q * kTile),
                     std::min(kTile, K - c * kTile), lhs.data() + (c * chunks + q) * kTile * kTile);
  }
  last_pairs.resize(2 * kTile * kTile);
  // The B operand of the inputs from offset o (from d_begin) and pairs 16q..: where it lies and its stride
  // in bytes; slot picks the scratch of a last partial 16 of pairs.
  const auto operand = [&](std::size_t o, std::size_t q, std::size_t slot) {
    const Panel panel = PanelOf(o, n, pairs);
    const std::uint32_t* first = a.row_pairs + panel.first + q * kTile * panel.stride;
    if ((q + 1) * kTile <= pairs) return std::pair(first, panel.stride * sizeof(std::uint32_t));
    std::uint32_t* copy = last_pairs.data() + slot * kTile * kTile;
    std::memset(copy, 0, kTile * kTile * sizeof(std::uint32_t));
    for (std::size_t i = 0; i < pairs - q * kTile; ++i)
      std::memcpy(copy + i * kTile, first + i * panel.stride, kTile * sizeof(std::uint32_t));
    return std::pair(static_cast<const std::uint32_t*>(copy), std::size_t{64});
  };
  const __m512 minus_scale = _mm512_set1_ps(-(a.step * a.scale));
  // The lines of W and W16 the block of class tiles from c0 and inputs from offset o steps (RequestWeights).
  const auto request_weights = [&](std::size_t c0, std::size_t o) {
    RequestWeights<2>(a, a.d_begin + o, c0 * kTile, std::min(K, (c0 + 2) * kTile) - c0 * kTile);
  };
  ConfigureTiles();
  alignas(64) float c[4][kTile * kTile];
  for (std::size_t c0 = 0; c0 < class_tiles; c0 += 2) {
    const bool two_tiles = c0 + 1 < class_tiles;
    for (std::size_t o = 0; o < width; o += 2 * kTile) {
      const bool two_vectors = o + kTile < width;
      if (o + 2 * kTile < width) {
        request_weights(c0, o + 2 * kTile);
      } else if (c0 + 2 < class_tiles) {
        request_weights(c0 + 2, 0);
      }
      for (std::size_t q = 0; q < chunks; ++q) {
        const auto [B0, B0_stride] = operand(o, q, 0);
        const auto [B1, B1_stride] =
            two_vectors ? operand(o + kTile, q, 1) : std::pair<const std::uint32_t*, std::size_t>(nullptr, 0);
        BlockProducts(lhs.data() + (c0 * chunks + q) * kTile * kTile,
                      two_tiles ? lhs.data() + ((c0 + 1) * chunks + q) * kTile * kTile : nullptr, 64, B0,
                      B0_stride, B1, B1_stride);
      }
      StoreBlock(c, two_tiles, two_vectors);
      // The step, as UpdateBlock takes it: W = -(step * scale) * sum + W, then W16 from W.
      for (std::size_t t = 0; t < 4; ++t) {
        const std::size_t k0 = (c0 + t / 2) * kTile, d = a.d_begin + o + t % 2 * kTile;
        if (k0 >= K || d >= a.d_end) continue;
        const __mmask16 mask = FirstLanes(a.d_end - d);
        for (std::size_t m = 0; m < std::min(kTile, K - k0); ++m) {
          float* const w = a.W + (k0 + m) * a.inputs + d;
          const __m512 stepped =
              _mm512_fmadd_ps(minus_scale, _mm512_load_ps(c[t] + m * kTile), _mm512_maskz_loadu_ps(mask, w));
          _mm512_mask_storeu_ps(w, mask, stepped);
          _mm256_mask_storeu_epi16(a.W16 + (k0 + m) * a.stride + d, mask,
                                   reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(stepped)));
        }
      }
    }
  }
  _tile_release();
}

// probe_bf16_flops_per_second on tiles: four independent accumulators.
SOFTREG_AMX_TARGET double AmxLoop(std::int64_t iterations, float* sink) {
  alignas(64) std::uint16_t values[kTile * 32];
  for (std::size_t i = 0; i < kTile * 32; ++i)
    values[i] = 0x3A83;  // about 1e-3
  alignas(64) float c[kTile * kTile];
  ConfigureTiles();  // the accumulators zeroed
  _tile_loadd(4, values, 64);
  _tile_loadd(5, values, 64);
  _tile_loadd(6, values, 64);
  _tile_loadd(7, values, 64);
  for (std::int64_t i = 0; i < iterations; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  _tile_release();
  *sink = c[0];
  return 4.0 * 2 * kTile * kTile * 32 * static_cast<double>(iterations);
}

// Whether the CPU has AMX-TILE and AMX-BF16 and Linux lets this process use the tiles' state (which it
// saves only for processes that ask, from kernel 5.16).
bool AmxPresent() {
  static const bool present = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    if ((edx & (1u << 24)) == 0 || (edx & (1u << 22)) == 0) return false;
    constexpr long kRequestPermission = 0x1023, kTileData = 18;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
    return syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
  }();
  return present;
}
#endif  // SOFTREG_AMX_KERNELS

void RequireSupport() {
  if (!fast_bf16_supported()) throw Error("bfloat16 compute needs a CPU with AVX-512 BF16 (AVX512_BF16)");
}

}  // namespace
#endif  // SOFTREG_BF16_KERNELS

std::size_t bf16_row_stride(std::size_t inputs) {
  return (inputs + 31) / 32 * 32;
}

std::size_t bf16_pair_width(std::size_t d_begin, std::size_t d_end) {
  return (d_end - d_begin + 15) / 16 * 16;
}

#if SOFTREG_BF16_KERNELS

namespace {
std::atomic<bool> amx_allowed{[] {
  const char* forced = std::getenv("SOFTREG_AMX");
  return !(forced && std::strcmp(forced, "no") == 0);
}()};
}  // namespace

void allow_bf16_amx(bool allowed) {
  amx_allowed = allowed;
}

bool bf16_uses_amx() {
#if SOFTREG_AMX_KERNELS
  return amx_allowed && fast_bf16_supported() && AmxPresent();
#else
  return false;
#endif
}

bool fast_bf16_supported() {
  // The float32 fast path restricted below AVX-512 (bench --simd AVX2, restrict_simd_targets) stands
  // for a CPU without it: the bfloat16 kernels follow, so that the refusal can be tried anywhere.
  return cpu_has_avx512_bf16() && simd_target().starts_with("AVX3");
}

void fast_bf16_pack_rows(const std::uint8_t* const* rows, std::size_t count, std::size_t inputs,
                         ElementType element, std::uint16_t* out, bool rows_requested) {
  RequireSupport();
  // The shuffled rows come from anywhere in the data: all requests first keep many in flight, where
  // the loop below would wait for each row in turn.
  if (!rows_requested) request_rows(rows, count, inputs * element_size(element));
  PackRows(rows, count, inputs, element, bf16_row_stride(inputs), out);
}

void fast_bf16_pack_row_pairs(const std::uint8_t* const* rows, std::size_t count, ElementType element,
                              std::size_t d_begin, std::size_t d_end, std::uint32_t* out) {
  RequireSupport();
  WritePanels(PairsOfRows{rows, count, element}, (count + 1) / 2, d_begin, d_end, out);
}

void fast_bf16_pair_packed_rows(const std::uint16_t* rows16, std::size_t count, std::size_t stride,
                                std::size_t d_begin, std::size_t d_end, std::uint32_t* out) {
  RequireSupport();
  WritePanels(PairsOfPackedRows{rows16, count, stride}, (count + 1) / 2, d_begin, d_end, out);
}

void fast_bf16_pack_dlogit_pairs(const float* dlogits, std::size_t count, std::size_t classes,
                                 std::uint32_t* out) {
  RequireSupport();
  PackDlogitPairs(dlogits, count, classes, out);
}

void fast_bf16_round_weights(const float* W, std::size_t classes, std::size_t inputs, std::uint16_t* out) {
  RequireSupport();
  RoundWeights(W, classes, inputs, bf16_row_stride(inputs), out);
}

void fast_bf16_logits(const FastBf16LogitsArgs& args) {
  RequireSupport();
  const std::size_t K = args.classes;
  // As the float32 forward pass: tiles of 5 classes and 4 rows keep a tile of W in L1, and rows that
  // would not fit in half of L2 go through the tiles in chunks that do.
  const std::size_t chunk =
      std::max<std::size_t>(1, l2_cache_bytes() / 2 / (args.stride * sizeof(std::uint16_t)));
  for (std::size_t first = 0; first < args.count; first += chunk) {
    FastBf16LogitsArgs part = args;
    part.rows16 += first * args.stride;
    part.count = std::min(chunk, args.count - first);
    part.logits += first * K;
#if SOFTREG_AMX_KERNELS
    if (bf16_uses_amx()) {
      AmxLogits(part);
      continue;
    }
#endif
    std::size_t k0 = 0;
    if (K > 10) {
      for (; k0 + 5 <= K; k0 += 5)
        DotTile<5>(part, k0);
    }
    if (k0 < K) DotPartialTile(part, k0, K - k0);
  }
}

void fast_bf16_update_columns(const FastBf16UpdateArgs& args) {
  RequireSupport();
#if SOFTREG_AMX_KERNELS
  if (bf16_uses_amx()) return AmxUpdate(args);
#endif
  // Tiles of 5 classes and 4 vectors of inputs: 9 loads (4 row-pair vectors, 5 broadcasts) for 20
  // VDPBF16PS, where 10 classes and 2 vectors need 12. BM_Bf16Pass, 1,000 classes: 1.40-1.42 ms
  // against 1.60-1.64 (Zen 4); the same for 10 classes.
  std::size_t k0 = 0;
  for (; k0 + 5 <= args.classes; k0 += 5)
    UpdateTile<5>(args, k0);
  if (k0 < args.classes) UpdatePartialTile(args, k0, args.classes - k0);
}

double probe_bf16_flops_per_second(double seconds) {
  RequireSupport();
  float sink = 0;
  double best = 0;
  const auto start = std::chrono::steady_clock::now();
  do {
    const auto t0 = std::chrono::steady_clock::now();
#if SOFTREG_AMX_KERNELS
    const double flops = bf16_uses_amx() ? AmxLoop(100'000, &sink) : DotLoop(1'000'000, &sink);
#else
    const double flops = DotLoop(1'000'000, &sink);
#endif
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, flops / elapsed);
  } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds);
  asm volatile("" : : "r"(&sink) : "memory");
  return best;
}

#else  // no x86-64: the mode is refused before any of these is called

bool fast_bf16_supported() {
  return false;
}
void allow_bf16_amx(bool) {}
bool bf16_uses_amx() {
  return false;
}
[[noreturn]] static void no_bf16() {
  throw Error("bfloat16 compute needs an x86-64 CPU with AVX-512 BF16");
}
void fast_bf16_pack_rows(const std::uint8_t* const*, std::size_t, std::size_t, ElementType, std::uint16_t*,
                         bool) {
  no_bf16();
}
void fast_bf16_pack_row_pairs(const std::uint8_t* const*, std::size_t, ElementType, std::size_t, std::size_t,
                              std::uint32_t*) {
  no_bf16();
}
void fast_bf16_pair_packed_rows(const std::uint16_t*, std::size_t, std::size_t, std::size_t, std::size_t,
                                std::uint32_t*) {
  no_bf16();
}
void fast_bf16_pack_dlogit_pairs(const float*, std::size_t, std::size_t, std::uint32_t*) {
  no_bf16();
}
void fast_bf16_round_weights(const float*, std::size_t, std::size_t, std::uint16_t*) {
  no_bf16();
}
void fast_bf16_logits(const FastBf16LogitsArgs&) {
  no_bf16();
}
void fast_bf16_update_columns(const FastBf16UpdateArgs&) {
  no_bf16();
}
double probe_bf16_flops_per_second(double) {
  no_bf16();
}

#endif

}  // namespace softreg
