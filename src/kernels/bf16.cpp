// The fast path's bfloat16 mode (TrainConfig::bf16): the dot products of the forward pass and the
// sums of the backward pass are taken with AVX-512 BF16's VDPBF16PS, which does two multiply-adds of
// bfloat16 pairs into each float32 lane: twice the float32 FMA's work per instruction, on Zen 4 and
// Zen 5 twice its throughput (BENCHMARKS.md). The inputs are rounded to bfloat16 (8 significant bits;
// pixel bytes 0..255 stay exact), the products are exact in float32 and the sums are float32, as are
// the weights that SGD updates: only what the sums read is rounded. The softmax, the loss, the bias and
// the weights' update stay float32 (fast_forward_rows with FastForwardArgs::logits_given).
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
#include <chrono>
#include <cstdint>
#include <cstring>

#include "kernels/lane_sums.hpp"
#include "softreg/error.hpp"
#include "softreg/kernels.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SOFTREG_BF16_KERNELS 1
#define SOFTREG_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))
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

// Asks for the lines of W and W16 that the block of B vectors of inputs from d and KT classes from k0
// steps, to be written. A block's rows of W are lines no block before touched (for many classes W is
// megabytes, in L3), 256 bytes of a row 4 KB long: the step after each block's sums waited for them
// (a fifth of UpdateBlock's samples under perf, 1,000 classes of 1,024 inputs, Zen 5).
template <int KT, int B>
SOFTREG_BF16_TARGET inline void RequestWeights(const FastBf16UpdateArgs& a, std::size_t d, std::size_t k0) {
  for (int k = 0; k < KT; ++k) {
    const std::size_t row = k0 + static_cast<std::size_t>(k);
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
      RequestWeights<KT, B>(a, d + B * kLanes, k0);
    } else if (k0 + 2 * KT <= a.classes) {
      RequestWeights<KT, B>(a, a.d_begin, k0 + KT);
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
    const double flops = DotLoop(1'000'000, &sink);
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
