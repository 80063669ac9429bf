// The fast path of training and evaluation: SIMD over the inputs with Google Highway, compiled for
// several instruction sets (SSE4, AVX2, AVX-512, ...) and dispatched at run time to the best the CPU
// has. Rows are bytes (pixels, stay bytes until they are used: converted in registers, 1/255 applied to
// the sums instead of to every value) or float32 features. The backward pass either returns the
// gradient (for any optimizer) or, for plain SGD, applies the step as it goes (fused, so W is read and
// written once per batch):
//   forward_rows:     per row, logits o = (x . W_k) * scale + b_k, stable softmax, loss, argmax,
//                     dlogits = softmax(o) - onehot(y)
//   gradient_columns: for d in a range of inputs, dW_k[d] = scale * sum_rows dlogits[r][k] * x_r[d]
//   update_columns:   the same sum, applied at once: W_k[d] -= step * scale * sum_rows ...
// The naive twins are loss_and_grad (loss.hpp) and accumulate_gradient + sgd_step; tests compare them.
//
// N = rows, D = inputs, K = classes (any number, in register tiles of up to 10 classes).
// W is (K,D) row-major: class k's D weights are contiguous (our column-major (D,K) WeightMatrix).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/fused_softmax.cpp"
// clang-format off
#include <hwy/foreach_target.h>  // must come before highway.h: it re-includes this file per target
#include <hwy/highway.h>
// clang-format on
#include <hwy/cache_control.h>
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/lane_sums.hpp"
#include "softreg/error.hpp"
#include "softreg/kernels.hpp"

#ifndef SOFTREG_FUSED_SOFTMAX_ONCE  // this file is included once per target
#define SOFTREG_FUSED_SOFTMAX_ONCE
// For a lambda whose body is a hot loop over registers (GCC and clang take it after the parameters).
#define SOFTREG_ALWAYS_INLINE __attribute__((always_inline))
namespace softreg {
// What set_update_broadcasts asked for; every target's FoldedBroadcastsPay reads it.
extern std::atomic<UpdateBroadcasts> forced_update_broadcasts;
}  // namespace softreg
#endif

HWY_BEFORE_NAMESPACE();
namespace softreg {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// How many rows ahead the update asks for a row's values of its block into L1: each row's block lies in
// another page (rows of 4 KB, or shuffled), where the L1 prefetchers do not follow, so every row's lines
// came from L2 at the multiply-adds. On an Intel Xeon guest (AMX, 48 KB L1), BM_UpdatePass (100, 512,
// f32) 152-154 -> 142 us, (500, 1024, f32) 1886-1928 -> 1723-1838 us; `bench` (1000, 1024, f32, 100,000
// rows) 1.90 -> 1.81 s an epoch, (100, 512, f32) 56.8 -> 54.6 ms; the recipe and (10, 20, f32) unchanged
// (BENCHMARKS.md).
constexpr std::size_t kUpdateRowsAhead = 8;

// The fewest inputs for which the update copies the dlogits tile by tile (TiledDlogits): D = 512 (16
// blocks of 2 vectors for a tile of 10 classes) gained, D = 40 lost.
constexpr std::size_t kTiledDlogitsInputs = 128;

// How many rows ahead the forward pass prefetches: the shuffled rows come from anywhere in the 47 MB
// training set, so each must be on its way from memory well before it is needed.
constexpr std::size_t kPrefetchRowsAhead = 4;
// Rows of bytes are asked for inside the forward pass's loop, a line of each row kPrefetchRowsAhead
// blocks on every 64 inputs, instead of all their lines at once before a block: on an Intel Xeon guest
// such a burst (26 lines for the recipe) met the core's queue of misses full and the loop waited behind
// it (perf: 30 % of the forward pass's samples on the requests). With no other request for the rows
// (AskAheadChoice's rolling way, which the recipe then learns) its epoch took 17.4 against 20.3 ms on
// one thread, 10.7 against 11.6 on two (BENCHMARKS.md). Floats need a line a row every step, and with
// those in the loop the many-class passes took 10-13 % longer on resident rows: they keep the burst. A
// model of few classes asks in the loop for floats too: on Zen 3, `bench --dtype f32` alternated, the
// forward pass of (10, 784) 43.3 -> 34.8 ms an epoch on one thread, 24.6 -> 22.2 on two, (17, 512) 43.6
// -> 39.5, (32, 512) 63.5 -> 60.1, but (100, 512) 141 -> 158; two classes as one (fast_margin_pass) 0.76x
// the epoch on one thread, 0.79x on two (BENCHMARKS.md). Doubles (floats once converted) follow floats.
template <class T>
constexpr bool kAsksInLoop = sizeof(T) == 1;
constexpr std::size_t kValuesAskInLoopMaxClasses = 32;
// Whether the forward pass asks for rows of T in its loop, for a model of `model_classes` classes.
template <class T>
HWY_INLINE bool AsksInLoop(std::size_t model_classes) {
  return kAsksInLoop<T> || model_classes <= kValuesAskInLoopMaxClasses;
}

// Classes are handled in tiles of up to kTile: a tile's accumulators stay in registers while the rows
// (forward) or the inputs (backward) stream past. Fashion-MNIST's 10 classes are one tile.
constexpr int kTile = 10;
// With more than one tile the forward pass takes 5 classes and 4 rows at a time instead (or 8 and 3,
// kWideTile below, where those fit in L1): a tile of W and the rows it meets then fit in L1 together
// (for D = 1,024 floats, 20 + 16 KB instead of 40 + 8 KB), which measured 1.2-1.4x faster for 1,000
// classes and slower for 10.
constexpr int kNarrowTile = 5;
// Targets with 32 vector registers keep 20 accumulators live; AVX2 and SSE have 16 registers.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int kAccumulators = 20;
#else
constexpr int kAccumulators = 10;
#endif
// With 32 registers the forward pass can also take 8 classes and 3 rows at a time (24 accumulators, 3
// rows' values and a vector of W: 28 registers). The rows stream from L2 past a tile of W held in L1,
// and 3 rows' lines serve 24 multiply-adds where 4 served 20: on an Intel Xeon (AMX, 48 KB L1) the
// forward pass of (100, 512, f32) one thread took 46.4 ms an epoch against 52.9, (1000, 1024, f32) two
// threads 792 ms against 910 (BENCHMARKS.md). It is used where the tile of W and its 3 rows fit in L1
// together (D = 1,024 floats: 32 + 12 KB), as the narrow tile was chosen for: on Zen 4's 32 KB L1
// that keeps 5 x 4 for D = 1,024, where it measured faster than a tile of W twice as wide.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int kWideTile = 8, kWideTileRows = 3;
#else
constexpr int kWideTile = 0, kWideTileRows = 0;
#endif
// With 16 registers a tile of 10 classes leaves room for one row (forward) or one vector of inputs
// (backward) per block, so every load of W or of a row's values serves one multiply-add, and the
// recipe's 31 KB of W does not stay in a 32 KB L1 beside the rows: tiles of 5 classes by 2 rows or 2
// vectors measured 1.2-1.5x faster there on Zen 3, in both passes (BENCHMARKS.md). The update takes
// them for any number of classes: each tile reads every row of the batch again, which cost a thousand
// classes of float rows 13-17 % when those came from L3, but the many-class update now reads chunks
// copied into L2 (CopyChunk), and there the narrow tiles measured faster on Zen 3 too: BM_UpdatePass
// (100, 512, f32) 0.82-0.85x the time, (500, 1024, f32) 0.85-0.93x; `bench` (1000, 1024, f32, 20,000
// rows) the update 0.82x on one thread, 0.87x on two (BENCHMARKS.md).
constexpr bool kNarrowTiles = kAccumulators < 2 * kTile;
// The width of the forward pass's full tiles of classes, for `classes` classes, and of the update's.
HWY_INLINE int ForwardTileFor(std::size_t classes) {
  return kNarrowTiles || classes > static_cast<std::size_t>(kTile) ? kNarrowTile : kTile;
}
constexpr int kUpdateTile = kNarrowTiles ? kNarrowTile : kTile;
// Rows (forward) or vectors of inputs (backward) per block for a tile of KT classes: enough
// independent accumulators to hide the multiply-add latency when KT is small.
constexpr int BlockFor(int KT) {
  const int n = kAccumulators / KT;
  return n < 1 ? 1 : (n > 4 ? 4 : n);
}

// 512-bit targets: the update's multiply-adds can take their dlogit from memory, broadcast in the
// instruction ({1to16}) ("folded"), instead of from one broadcast register shared by the block's
// vectors. Which is faster depends on the CPU. On Zen 4 (512-bit FMAs at half rate) the separate
// broadcast takes time on the floating-point pipes from the multiply-adds: a loop of the update's shape
// from L1 ran at 102-105 GFLOP/s with it and at about 116 folded, the probe's 118. On Zen 5 (full rate)
// the folded loads are what limits it: 22 loads a row for 20 multiply-adds against 12, and the
// recipe's resident update took 24-27 us a batch folded against 19-20 in registers (BENCHMARKS.md).
// So both are compiled and FoldedBroadcastsPay measures them once. Compilers fold a broadcast only
// into its one user, so folded, each of a block's B vectors gets its own copy of the dlogit
// (TileDlogits). The same instruction on the same values either way: the same bits.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr bool kCanFoldBroadcasts = true;
#else
constexpr bool kCanFoldBroadcasts = false;
#endif

// Compilers fold a load into each multiply-add that uses it, which loads W once per row instead of once
// per block of rows and saturates the load ports; an empty asm pins the loaded vector in a register.
template <class V>
HWY_INLINE void KeepInRegister(V& v) {
#if HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128 && \
    (defined(__GNUC__) || defined(__clang__))
  asm("" : "+x"(v.raw));
#else
  (void)v;
#endif
}

// a * b + c for the scalar parts (tails, the logit's scale and bias), fused wherever the target has
// FMA: the compiler would contract some of these and not others depending on inlining, and then a
// float64 row (rounded to float) would not give exactly what its float32 rounding gives.
HWY_INLINE float ScalarMulAdd(float a, float b, float c) {
#if HWY_NATIVE_FMA
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

#undef SOFTREG_SIXTEEN_LANE_SUMS  // this file is compiled once per target: decided anew each time
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// 512-bit vectors: the lane sums of up to 16 accumulators come out of one transposing tree of 15 adds
// (SixteenLaneSums) instead of a reduction each, which cost more than the multiply-adds of a row on a
// CPU with full-width 512-bit FMAs (BENCHMARKS.md).
#define SOFTREG_SIXTEEN_LANE_SUMS 1
// m[i] lane j becomes m[j] lane i: 16 rows of 16 floats in, 16 columns out.
HWY_INLINE void Transpose16(__m512 (&m)[16]) {
  __m512 pairs[16], quads[16], octets[16];
  for (int i = 0; i < 8; ++i) {
    pairs[2 * i] = _mm512_unpacklo_ps(m[2 * i], m[2 * i + 1]);
    pairs[2 * i + 1] = _mm512_unpackhi_ps(m[2 * i], m[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(pairs[4 * i]), b = _mm512_castps_pd(pairs[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(pairs[4 * i + 2]), d = _mm512_castps_pd(pairs[4 * i + 3]);
    quads[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    quads[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    quads[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    quads[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 4; ++j) {
      octets[8 * i + j] = _mm512_shuffle_f32x4(quads[8 * i + j], quads[8 * i + j + 4], 0x88);
      octets[8 * i + j + 4] = _mm512_shuffle_f32x4(quads[8 * i + j], quads[8 * i + j + 4], 0xDD);
    }
  }
  for (int j = 0; j < 8; ++j) {
    m[j] = _mm512_shuffle_f32x4(octets[j], octets[j + 8], 0x88);
    m[j + 8] = _mm512_shuffle_f32x4(octets[j], octets[j + 8], 0xDD);
  }
}
#endif

#undef SOFTREG_EIGHT_LANE_SUMS
#if HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2
// 256-bit vectors, 16 registers: the same idea as the sixteen-lane sums above, for 8 accumulators. One
// reduction per accumulator (SumOfLanes, 6 shuffles and adds each) cost the recipe's forward pass about
// as much on Zen 3 as a fifth of its multiply-adds (BENCHMARKS.md).
#define SOFTREG_EIGHT_LANE_SUMS 1
// Lane j of the result is the sum of v[j]'s lanes, added in the same tree as Highway's AVX2 SumOfLanes
// (lanes i and i+4, then 0+2 and 1+3, then those two), so each sum is bit for bit what it gives.
HWY_INLINE __m256 EightLaneSums(const __m256 (&v)[8]) {
  __m256 halves[4];  // halves[m]: lanes 0-3 v[m]'s (i + i+4) sums, lanes 4-7 v[m+4]'s
  for (int m = 0; m < 4; ++m) {
    halves[m] = _mm256_add_ps(_mm256_permute2f128_ps(v[m], v[m + 4], 0x20),
                              _mm256_permute2f128_ps(v[m], v[m + 4], 0x31));
  }
  __m256 quarters[2];  // quarters[n], each 128-bit half: (0+2, 1+3) of halves[2n]'s vector, then 2n+1's
  for (int n = 0; n < 2; ++n) {
    const __m256 a = halves[2 * n], b = halves[2 * n + 1];
    quarters[n] = _mm256_add_ps(_mm256_shuffle_ps(a, b, 0x44), _mm256_shuffle_ps(a, b, 0xEE));
  }
  return _mm256_add_ps(_mm256_shuffle_ps(quarters[0], quarters[1], 0x88),
                       _mm256_shuffle_ps(quarters[0], quarters[1], 0xDD));
}
// m[i] lane j becomes m[j] lane i: 8 rows of 8 floats in, 8 columns out.
HWY_INLINE void Transpose8(__m256 (&m)[8]) {
  __m256 pairs[8], quads[8];
  for (int i = 0; i < 4; ++i) {
    pairs[2 * i] = _mm256_unpacklo_ps(m[2 * i], m[2 * i + 1]);
    pairs[2 * i + 1] = _mm256_unpackhi_ps(m[2 * i], m[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    quads[4 * i] = _mm256_shuffle_ps(pairs[4 * i], pairs[4 * i + 2], 0x44);
    quads[4 * i + 1] = _mm256_shuffle_ps(pairs[4 * i], pairs[4 * i + 2], 0xEE);
    quads[4 * i + 2] = _mm256_shuffle_ps(pairs[4 * i + 1], pairs[4 * i + 3], 0x44);
    quads[4 * i + 3] = _mm256_shuffle_ps(pairs[4 * i + 1], pairs[4 * i + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    m[j] = _mm256_permute2f128_ps(quads[j], quads[j + 4], 0x20);
    m[j + 4] = _mm256_permute2f128_ps(quads[j], quads[j + 4], 0x31);
  }
}
#endif

// A row's values d.. as floats: bytes are widened in registers, floats loaded as they are, doubles
// rounded to float (as converting the array first would).
template <class T, class D>
HWY_INLINE auto LoadValues(D df, const std::uint8_t* row, std::size_t d) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::LoadU(df, reinterpret_cast<const float*>(row) + d);
  } else if constexpr (std::is_same_v<T, double>) {
    const double* p = reinterpret_cast<const double*>(row) + d;
#if HWY_TARGET == HWY_SCALAR
    return hn::Set(df, static_cast<float>(*p));  // one lane: nothing to combine
#else
    const hn::Repartition<double, D> dd;  // half as many doubles as floats fill a vector
    const hn::Rebind<float, decltype(dd)> dh;
    const auto lo = hn::DemoteTo(dh, hn::LoadU(dd, p));
    const auto hi = hn::DemoteTo(dh, hn::LoadU(dd, p + hn::Lanes(dd)));
    return hn::Combine(df, hi, lo);
#endif
  } else {
    const hn::Rebind<std::int32_t, D> di;
    const hn::Rebind<std::uint8_t, D> du8;
    return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(du8, row + d)));
  }
}
template <class T>
HWY_INLINE float ValueAt(const std::uint8_t* row, std::size_t d) {
  if constexpr (std::is_same_v<T, float>) {
    float v;
    std::memcpy(&v, row + d * sizeof(float), sizeof(float));
    return v;
  } else if constexpr (std::is_same_v<T, double>) {
    double v;
    std::memcpy(&v, row + d * sizeof(double), sizeof(double));
    return static_cast<float>(v);
  } else {
    return static_cast<float>(row[d]);
  }
}

#undef SOFTREG_MASKED_TAILS  // decided anew for each target, as SOFTREG_SIXTEEN_LANE_SUMS
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// The last inputs of a row (D not a multiple of 16) go through the vector loops too, as one more vector
// with zeros in the lanes of inputs already taken, instead of a scalar loop per (row, class) that cost
// more than the vectors for small D: (1000, 40, f32) one thread, the update 155-164 -> 18 ms an epoch
// (BENCHMARKS.md). That vector ends where the row does (TailSpan), so no line past the row is read: a
// masked load past a row's end brought in the next row's line, a cache miss the row does not need,
// which made the forward pass of (10, 20, f32) slower than the scalar loop. Only rows shorter than a
// vector are loaded under a mask (AVX-512 masked loads touch no byte outside the mask). The update's
// lanes run the scalar loop's multiply-adds in its order (the same bits); the forward pass's last
// inputs join the lanes before they are summed instead of after.
#define SOFTREG_MASKED_TAILS 1
// Where the vector of inputs [d, end) (0 < end - d < lanes) is loaded from: inputs [start, start +
// lanes) when a whole vector fits before `end` (`whole`), those in `lanes` being [d, end); otherwise, a
// row shorter than a vector, [d, end) alone under the mask `lanes` (its first end - d).
template <class D>
struct TailSpan {
  std::size_t start, count;
  bool whole;
  decltype(hn::FirstN(D(), 0)) lanes;
};
template <class D>
HWY_INLINE TailSpan<D> TailSpanOf(D df, std::size_t d, std::size_t end) {
  const std::size_t width = hn::Lanes(df), count = end - d;
  if (end >= width) return {end - width, count, true, hn::Not(hn::FirstN(df, width - count))};
  return {d, count, false, hn::FirstN(df, count)};
}
// A row's values d..d+n (n < the vector's lanes) as LoadValues gives them, the other lanes zero; nothing
// past value d + n - 1 is read.
template <class T, class D>
HWY_INLINE auto LoadFirstValues(D df, const std::uint8_t* row, std::size_t d, std::size_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return hn::MaskedLoad(hn::FirstN(df, n), df, reinterpret_cast<const float*>(row) + d);
  } else if constexpr (std::is_same_v<T, double>) {
    const double* p = reinterpret_cast<const double*>(row) + d;
    const hn::Repartition<double, D> dd;
    const hn::Rebind<float, decltype(dd)> dh;
    const std::size_t half = hn::Lanes(dd);
    const auto lo = hn::DemoteTo(dh, hn::MaskedLoad(hn::FirstN(dd, std::min(n, half)), dd, p));
    const auto hi = hn::DemoteTo(dh, hn::MaskedLoad(hn::FirstN(dd, n > half ? n - half : 0), dd, p + half));
    return hn::Combine(df, hi, lo);
  } else {
    const hn::Rebind<std::int32_t, D> di;
    const hn::Rebind<std::uint8_t, D> du8;
    return hn::ConvertTo(df, hn::PromoteTo(di, hn::MaskedLoad(hn::FirstN(du8, n), du8, row + d)));
  }
}
// A row's values in `span` as LoadValues gives them, zeros in the other lanes; nothing outside the row
// is read.
template <class T, class D>
HWY_INLINE auto LoadTailValues(D df, const std::uint8_t* row, const TailSpan<D>& span) {
  if (span.whole) return hn::IfThenElseZero(span.lanes, LoadValues<T>(df, row, span.start));
  return LoadFirstValues<T>(df, row, span.start, span.count);
}
#endif

// The first address from p on that starts a cache line (p's buffer holds 64 bytes more than it needs).
template <class T>
HWY_INLINE T* StartOfLine(T* p) {
  return p + (64 - reinterpret_cast<std::uintptr_t>(p) % 64) % 64 / sizeof(T);
}

// Walks rows to prefetch one cache line at a time, spread over a backward pass (FastUpdateArgs::prefetch;
// request_rows asks for all at once, before a forward pass). Hint 2 (T1): on Zen 4 it measured faster
// than T0 or NTA for the forward pass (BENCHMARKS.md).
struct PrefetchCursor {
  const std::uint8_t* const* rows = nullptr;
  std::size_t count = 0, row_bytes = 0;
  std::size_t row = 0, offset = 0;
  std::size_t every = 1, countdown = 1;  // a line every `every` calls of maybe_next_line

  HWY_INLINE void maybe_next_line() {
    if (HWY_LIKELY(--countdown != 0)) return;  // the line's code out of the row loop's way
    countdown = every;
    next_line();
  }
  HWY_INLINE void next_line() {
    if (row >= count) return;
    __builtin_prefetch(rows[row] + offset, 0, 2);
    offset += 64;
    if (offset >= row_bytes) {
      offset = 0;
      ++row;
    }
  }
  // A line every so many calls of maybe_next_line that all the rows' lines are asked for within `steps`.
  HWY_INLINE void spread_over(std::size_t steps) {
    const std::size_t lines = count * ((row_bytes + 63) / 64);
    every = countdown = std::max<std::size_t>(1, steps / std::max<std::size_t>(1, lines));
  }
  HWY_INLINE void all_remaining_lines() {
    while (row < count)
      next_line();
  }
};

// logits[r][k] = (x_r . W_k) * scale + b_k for `rows` rows starting at `first` and the KT classes
// from k0. Computing all the dot products first keeps the multiply-adds streaming; the softmax follows
// in a separate pass. A (row, class) sum is accumulated in the same order whatever R and KT are, so the
// logits do not depend on how rows and classes are blocked: the vectors of inputs lane by lane (with
// SOFTREG_MASKED_TAILS the last D % lanes inputs as one more vector, the one that ends with the row,
// zeros in the lanes of inputs already taken), their lanes summed, then (without it) the last inputs
// one by one.
template <class T, int KT, int R, bool kAsks = kAsksInLoop<T>>
void DotRows(const FastForwardArgs& a, std::size_t first, std::size_t k0, const float* bias, float* logits,
             const std::uint8_t* const* ahead = nullptr) {
  const hn::ScalableTag<float> df;
  using V = decltype(hn::Zero(df));
  const std::size_t lanes = hn::Lanes(df);
  const std::size_t D = a.inputs, K = a.classes;
  const std::size_t vector_end = D - D % lanes;
  const float* W = a.W + k0 * D;
  const std::uint8_t* x[R];
  for (int r = 0; r < R; ++r)
    x[r] = a.rows[first + static_cast<std::size_t>(r)];
  V acc[R][KT];
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < KT; ++k)
      acc[r][k] = hn::Zero(df);
  // Bytes: the R rows `ahead` (when given) are asked for a line at a time as this block's loop reaches
  // the same place in its own rows (kAsksInLoop).
  constexpr std::size_t kStepBytes = hn::MaxLanes(df) * sizeof(T);
  for (std::size_t d = 0; d < vector_end; d += lanes) {
    if constexpr (kAsks) {
      const std::size_t byte = d * sizeof(T);
      if (ahead && byte % 64 < kStepBytes) {  // the step that starts a line
        for (int r = 0; r < R; ++r)
          __builtin_prefetch(ahead[r] + byte, 0, 2);
      }
    }
    V xv[R];
    for (int r = 0; r < R; ++r)
      xv[r] = LoadValues<T>(df, x[r], d);
    for (int k = 0; k < KT; ++k) {
      V w = hn::LoadU(df, W + k * D + d);  // loaded once for R rows
      KeepInRegister(w);
      for (int r = 0; r < R; ++r)
        acc[r][k] = hn::MulAdd(xv[r], w, acc[r][k]);
    }
  }
  if (kAsks && ahead) {  // the line of each row's last value, which the loop's may not reach
    for (int r = 0; r < R; ++r) {
      if (vector_end == 0) __builtin_prefetch(ahead[r], 0, 2);
      __builtin_prefetch(ahead[r] + D * sizeof(T) - 1, 0, 2);
    }
  }
#if SOFTREG_MASKED_TAILS
  if (vector_end != D) {
    const auto span = TailSpanOf(df, vector_end, D);
    V xv[R];
    for (int r = 0; r < R; ++r)
      xv[r] = LoadTailValues<T>(df, x[r], span);
    for (int k = 0; k < KT; ++k) {
      const V w = hn::MaskedLoad(span.lanes, df, W + k * D + span.start);
      for (int r = 0; r < R; ++r)
        acc[r][k] = hn::MulAdd(xv[r], w, acc[r][k]);
    }
  }
#endif
#if SOFTREG_SIXTEEN_LANE_SUMS
  static_assert(SOFTREG_MASKED_TAILS, "the last inputs above need masked loads");
  // The R*KT sums in (row, class) order, 16 to a vector (at most two: R*KT <= kAccumulators).
  constexpr int kSums = R * KT, kGroups = (kSums + 15) / 16;
  static_assert(kGroups <= 2);
  __m512 totals[kGroups];
  for (int g = 0; g < kGroups; ++g) {
    __m512 v[16];
    for (int s = 0; s < 16; ++s) {
      const int i = g * 16 + s;
      v[s] = i < kSums ? acc[i / KT][i % KT].raw : _mm512_setzero_ps();
    }
    totals[g] = lane_sums::SixteenLaneSums(v);
  }
  // Scale and bias in the vector (bias[] holds b in the same (row, class) order, DotTile), an FMA as
  // exact as ScalarMulAdd's.
  __m512 out[kGroups];
  for (int g = 0; g < kGroups; ++g)
    out[g] = _mm512_fmadd_ps(totals[g], _mm512_set1_ps(a.scale), _mm512_load_ps(bias + g * 16));
  if (K == KT) {  // one tile: the block's logits are contiguous
    for (int g = 0; g < kGroups; ++g) {
      const int used = kSums - g * 16;
      _mm512_mask_storeu_ps(logits + g * 16, static_cast<__mmask16>(used >= 16 ? 0xFFFF : (1u << used) - 1),
                            out[g]);
    }
  } else {  // each row's KT logits to its own place: moved to lanes 0..KT-1, then stored
    for (int r = 0; r < R; ++r) {
      const __m512i from = _mm512_add_epi32(
          _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(r * KT));
      __m512 row;
      if constexpr (kGroups == 1) {
        row = _mm512_permutexvar_ps(from, out[0]);
      } else {
        row = _mm512_permutex2var_ps(out[0], from, out[kGroups - 1]);
      }
      _mm512_mask_storeu_ps(logits + static_cast<std::size_t>(r) * K + k0,
                            static_cast<__mmask16>((1u << KT) - 1), row);
    }
  }
#else
  (void)bias;
#if SOFTREG_EIGHT_LANE_SUMS
  // The R*KT sums in (row, class) order, 8 to a vector.
  constexpr int kSums = R * KT, kGroups = (kSums + 7) / 8;
  HWY_ALIGN float sums[kGroups * 8];
  for (int g = 0; g < kGroups; ++g) {
    __m256 v[8];
    for (int s = 0; s < 8; ++s) {
      const int i = g * 8 + s;
      v[s] = i < kSums ? acc[i / KT][i % KT].raw : _mm256_setzero_ps();
    }
    _mm256_store_ps(sums + g * 8, EightLaneSums(v));
  }
#endif
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < KT; ++k) {
#if SOFTREG_EIGHT_LANE_SUMS
      float sum = sums[r * KT + k];
#else
      float sum = hn::GetLane(hn::SumOfLanes(df, acc[r][k]));
#endif
      for (std::size_t d = vector_end; d < D; ++d)
        sum = ScalarMulAdd(ValueAt<T>(x[r], d), W[k * D + d], sum);
      logits[static_cast<std::size_t>(r) * K + k0 + k] = ScalarMulAdd(sum, a.scale, a.b[k0 + k]);
    }
  }
#endif
}

// The dot products of all rows with the KT classes from k0.
template <class T, int KT, int R = BlockFor(KT)>
void DotTile(const FastForwardArgs& a, std::size_t k0, float* logits) {
  const std::size_t K = a.classes, row_bytes = a.inputs * sizeof(T);
  // b[k0..k0+KT) repeated for R rows, in the (row, class) order of a block's logits (DotRows).
  HWY_ALIGN float bias[(R * KT + 15) / 16 * 16] = {};
  for (int i = 0; i < R * KT; ++i)
    bias[i] = a.b[k0 + static_cast<std::size_t>(i % KT)];
  const bool in_loop = AsksInLoop<T>(a.model_classes != 0 ? a.model_classes : K);
  std::size_t i = 0;
  for (; i + R <= a.count; i += R) {
    // The first tile brings the rows in; later tiles find them in cache.
    const std::size_t ahead_first = i + kPrefetchRowsAhead * R;
    if (in_loop) {
      const bool asks = k0 == 0 && ahead_first + R <= a.count;
      DotRows<T, KT, R, true>(a, i, k0, bias, logits + i * K, asks ? a.rows + ahead_first : nullptr);
    } else if constexpr (!kAsksInLoop<T>) {  // (bytes always ask in the loop)
      if (k0 == 0) {
        for (std::size_t r = ahead_first; r < std::min(a.count, ahead_first + R); ++r) {
          for (std::size_t offset = 0; offset < row_bytes; offset += 64)
            hwy::Prefetch(a.rows[r] + offset);
        }
      }
      DotRows<T, KT, R, false>(a, i, k0, bias, logits + i * K);
    }
  }
  for (; i < a.count; ++i)  // a row's lanes are the first KT of a block's: the same bias
    DotRows<T, KT, 1>(a, i, k0, bias, logits + i * K);
}

// The last tile has K % kTile classes: one instantiation per possible width.
template <class T, int KT = kTile>
void DotPartialTile(const FastForwardArgs& a, std::size_t k0, std::size_t width, float* logits) {
  if constexpr (KT >= 1) {
    if (width == static_cast<std::size_t>(KT)) return DotTile<T, KT>(a, k0, logits);
    DotPartialTile<T, KT - 1>(a, k0, width, logits);
  }
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// Many classes of float rows: the logits summed input by input with 16 rows in each vector's lanes (an
// outer product: each of W's values, broadcast, meets 16 rows at once), instead of DotTile's dot
// products, whose lanes are summed at the end. The rows are first copied into panels of kPanelRows
// rows where each input's values of the panel's rows lie side by side (PackPanel); every tile of
// classes then reads the panels, which stay in L2, and no lanes are summed. On an Intel Xeon guest
// (AMX, 48 KB L1; the probe's 217 GFLOP/s a core) `BM_ForwardPass` (500, 1024, f32) 2.04-2.14 -> 1.91-1.98
// ms, (1000, 40, f32) 756 -> 402 us; `bench`, two threads: (1000, 1024, f32) 2.00 -> 1.81 s an epoch,
// (1000, 40, f32) 178 -> 142 ms, (100, 512, f32) 70.2 -> 67.9 ms; (32, 512, f32) alike, and rows of
// bytes lost, (100, 784, u8) 81.0 -> 87.9 ms (a batch of bytes as floats is 4 times the bytes, and the
// update that follows found its rows further away): bytes keep the dot products (BENCHMARKS.md).
// A (row, class) logit is the multiply-adds of its inputs in order, then the scale and the bias: the same
// bits whatever the blocking, the thread or the classes of a call; the choice between the two sums
// depends on the element and the model's classes only (FastForwardArgs::model_classes).
constexpr int kOuterTile = 8;  // classes a tile: 8 x 3 vectors of rows are 24 accumulators
constexpr int kPanelVectors = 3;
constexpr std::size_t kPanelRows = 16 * kPanelVectors;
constexpr std::size_t kOuterMinClasses = 64;
template <class T>
HWY_INLINE bool SumsInputByInput(std::size_t model_classes) {
  return std::is_same_v<T, float> && model_classes >= kOuterMinClasses;
}

// Rows [0, count) (count <= 16 * NV) as NV vectors of 16 rows per input: panel[d * 16 * NV + r] is row r's
// value d, zero for rows past count.
// The rows `ahead` (ahead_count of them, the next panel's) are asked for a line at a time as the same
// place in this panel's rows is reached, so that they arrive while this one is copied.
template <class T>
void PackPanel(const std::uint8_t* const* rows, std::size_t count, std::size_t D, int NV, float* panel,
               const std::uint8_t* const* ahead, std::size_t ahead_count) {
  const hn::ScalableTag<float> df;
  const std::size_t stride = 16 * static_cast<std::size_t>(NV);
  for (int v = 0; v < NV; ++v) {
    const std::size_t r0 = 16 * static_cast<std::size_t>(v);
    // This group's share of the rows ahead: all of them by the last group.
    const std::size_t ask_begin = ahead_count * static_cast<std::size_t>(v) / static_cast<std::size_t>(NV);
    const std::size_t ask_end = ahead_count * static_cast<std::size_t>(v + 1) / static_cast<std::size_t>(NV);
    for (std::size_t d = 0; d < D; d += 16) {
      const std::size_t n = std::min<std::size_t>(16, D - d);
      for (std::size_t byte = d * sizeof(T); byte < (d + n) * sizeof(T); byte += 64) {
        for (std::size_t r = ask_begin; r < ask_end; ++r)
          __builtin_prefetch(ahead[r] + byte - byte % 64, 0, 2);
      }
      __m512 m[16];
      for (std::size_t i = 0; i < 16; ++i) {
        if (r0 + i >= count) {
          m[i] = _mm512_setzero_ps();
        } else if (n == 16) {
          m[i] = LoadValues<T>(df, rows[r0 + i], d).raw;
        } else {
          m[i] = LoadFirstValues<T>(df, rows[r0 + i], d, n).raw;
        }
      }
      Transpose16(m);
      for (std::size_t i = 0; i < n; ++i)
        _mm512_store_ps(panel + (d + i) * stride + r0, m[i]);
    }
  }
}

// The logits of a panel's rows (count of them) for the KT classes from k0.
template <int KT, int NV>
void OuterTile(const FastForwardArgs& a, const float* panel, std::size_t count, std::size_t k0, float* logits,
               PrefetchCursor* ahead) {
  const std::size_t D = a.inputs, K = a.classes;
  const float* w[KT];
  for (int k = 0; k < KT; ++k)
    w[k] = a.W + (k0 + static_cast<std::size_t>(k)) * D;
  __m512 acc[KT][NV];
  for (int k = 0; k < KT; ++k)
    for (int v = 0; v < NV; ++v)
      acc[k][v] = _mm512_setzero_ps();
  for (std::size_t d = 0; d < D; ++d) {
    if (ahead) ahead->maybe_next_line();
    __m512 x[NV];
    for (int v = 0; v < NV; ++v)
      x[v] = _mm512_load_ps(panel + d * 16 * NV + 16 * v);
    for (int k = 0; k < KT; ++k) {
      const __m512 weight = _mm512_set1_ps(w[k][d]);
      for (int v = 0; v < NV; ++v)
        acc[k][v] = _mm512_fmadd_ps(x[v], weight, acc[k][v]);
    }
  }
  // Scale and bias as ScalarMulAdd's FMA, then each row's KT logits to its place.
  HWY_ALIGN float out[KT][16 * NV];
  const __m512 scale = _mm512_set1_ps(a.scale);
  for (int k = 0; k < KT; ++k) {
    const __m512 bias = _mm512_set1_ps(a.b[k0 + static_cast<std::size_t>(k)]);
    for (int v = 0; v < NV; ++v)
      _mm512_store_ps(&out[k][16 * v], _mm512_fmadd_ps(acc[k][v], scale, bias));
  }
  for (std::size_t r = 0; r < count; ++r)
    for (int k = 0; k < KT; ++k)
      logits[r * K + k0 + static_cast<std::size_t>(k)] = out[k][r];
}

// A panel of NV vectors of rows against the KT classes from k0, KT < kOuterTile for the last classes.
template <int NV, int KT = kOuterTile>
void OuterTileOfWidth(const FastForwardArgs& a, const float* panel, std::size_t count, std::size_t k0,
                      std::size_t width, float* logits, PrefetchCursor* ahead) {
  if constexpr (KT >= 1) {
    if (width == static_cast<std::size_t>(KT)) return OuterTile<KT, NV>(a, panel, count, k0, logits, ahead);
    OuterTileOfWidth<NV, KT - 1>(a, panel, count, k0, width, logits, ahead);
  }
}
template <int NV = kPanelVectors>
void OuterTileOfRows(const FastForwardArgs& a, const float* panel, std::size_t count, std::size_t k0,
                     std::size_t width, float* logits, PrefetchCursor* ahead = nullptr) {
  if constexpr (NV >= 1) {
    if (count > 16 * static_cast<std::size_t>(NV - 1))
      return OuterTileOfWidth<NV>(a, panel, count, k0, width, logits, ahead);
    OuterTileOfRows<NV - 1>(a, panel, count, k0, width, logits, ahead);
  }
}

// The logits of all a.count rows (a chunk that fits in half of L2 as floats), panel by panel or tile by
// tile (below). Asks memory for the rows itself unless a.rows_requested.
template <class T>
void OuterLogits(const FastForwardArgs& a, float* logits) {
  const std::size_t D = a.inputs, K = a.classes, row_bytes = D * sizeof(T);
  const std::size_t panels = (a.count + kPanelRows - 1) / kPanelRows;
  const auto rows_of = [&](std::size_t p) { return std::min(kPanelRows, a.count - p * kPanelRows); };
  const auto vectors_of = [](std::size_t count) { return static_cast<int>((count + 15) / 16); };
  // Panels outside when W is small enough to be read again for every panel from L2, and the panels too
  // many for L1: then the next panel's rows are asked for a line at a time while this panel meets every
  // tile, and arrive from memory while the multiply-adds go on: on an Intel Xeon guest, against copying
  // every panel first, (100, 512, f32) 105.4 -> 99.1 ms an epoch on one thread, 65.4 -> 57.4 on two.
  // Otherwise the rows are copied first and each tile of W stays in L1 while all the panels pass it (a
  // thousand classes: megabytes of W; (1000, 40, f32), whose panels fit in L1, lost panel by panel).
  const bool panels_outside =
      K * D * sizeof(float) <= l2_cache_bytes() / 4 && a.count * D * sizeof(float) > l1_data_cache_bytes();
  thread_local std::vector<float> buffer;
  buffer.resize(std::max(buffer.size(), (panels_outside ? 1 : panels) * kPanelRows * D + 16));
  float* const packed = StartOfLine(buffer.data());
  if (panels_outside) {
    if (!a.rows_requested) request_rows(a.rows, rows_of(0), row_bytes);
    for (std::size_t p = 0; p < panels; ++p) {
      const std::size_t count = rows_of(p);
      PackPanel<T>(a.rows + p * kPanelRows, count, D, vectors_of(count), packed, nullptr, 0);
      PrefetchCursor ahead;
      if (p + 1 < panels) {
        ahead = {a.rows + (p + 1) * kPanelRows, rows_of(p + 1), row_bytes};
        ahead.spread_over((K + kOuterTile - 1) / kOuterTile * D);  // the tiles' steps
      }
      for (std::size_t k0 = 0; k0 < K; k0 += kOuterTile)
        OuterTileOfRows(a, packed, count, k0, std::min<std::size_t>(kOuterTile, K - k0),
                        logits + p * kPanelRows * K, &ahead);
      ahead.all_remaining_lines();
    }
    return;
  }
  if (!a.rows_requested) request_rows(a.rows, a.count, row_bytes);
  for (std::size_t p = 0; p < panels; ++p) {
    const std::size_t count = rows_of(p);
    const bool last = p + 1 == panels;
    PackPanel<T>(a.rows + p * kPanelRows, count, D, vectors_of(count), packed + p * kPanelRows * D,
                 last ? nullptr : a.rows + (p + 1) * kPanelRows, last ? 0 : rows_of(p + 1));
  }
  for (std::size_t k0 = 0; k0 < K; k0 += kOuterTile) {
    const std::size_t width = std::min<std::size_t>(kOuterTile, K - k0);
    for (std::size_t p = 0; p < panels; ++p)
      OuterTileOfRows(a, packed + p * kPanelRows * D, rows_of(p), k0, width, logits + p * kPanelRows * K);
  }
}
#else
template <class T>
HWY_INLINE bool SumsInputByInput(std::size_t) {
  return false;
}
#endif

// exp of each lane, for the softmax, with a NaN kept NaN: Highway's exp of a NaN is 0, which dropped a
// NaN logit (a weight gone NaN) from its row's softmax and loss without a trace, where the loss must
// turn NaN for the run to stop as diverged and the gradient must carry the NaN as the reference's does.
template <class D, class V>
HWY_INLINE V ExpOf(D d, V x) {
  return hn::IfThenElse(hn::IsNaN(x), x, hn::Exp(d, x));
}

// The logs of a vector of exp sums, for the losses: Highway's log, as the exps are Highway's. On the
// sums' range, [1, K], it is within 1 ulp of the exact log (every float in [1, 4096], AVX-512 and SSSE3:
// relative error at most 8.5e-8, std::log's result for 91-99.8 % of them), a lane's result does not
// depend on the others, and one call serves a vector of rows where std::log took a call a row (with the
// NaN flag below, the per-row work of a 10-class forward pass, `BM_ForwardPass` at D = 16, went from
// 22.2 to 20.5 ns a row on Zen 4; the 2-class forward pass at D = 784 from 44.4 to 42.5).
// Its log of a NaN is a finite number: a NaN sum stays NaN, since a NaN loss is how a run that diverged
// is caught.
template <class D, class V>
HWY_INLINE V LogOfSums(D d, V sums) {
  return hn::IfThenElse(hn::IsNaN(sums), sums, hn::Log(d, sums));
}

// Stable softmax of rows [first, count) of the logits, in place: subtract each row's max so every exp
// is <= 1, then loss = log sum exp(o - max) - (o_y - max) and, with dlogits, softmax - onehot.
// Returns the rows whose argmax (the first class at the max) is the label.
std::int64_t SoftmaxRows(const FastForwardArgs& a, float* logits, std::size_t first) {
  const std::size_t K = a.classes;
  thread_local std::vector<float> label_logit, exp_sum;
  label_logit.resize(a.count);
  exp_sum.resize(a.count);
  // Each label's shifted logit is kept for the loss.
  std::int64_t correct = 0;
  for (std::size_t row = first; row < a.count; ++row) {
    float* o = logits + row * K;
    std::size_t best = 0;
    for (std::size_t k = 1; k < K; ++k) {
      if (o[k] > o[best]) best = k;
    }
    const float row_max = o[best];
    for (std::size_t k = 0; k < K; ++k)
      o[k] -= row_max;
    label_logit[row] = o[a.labels[row]];
    correct += best == a.labels[row];
    if (a.predictions) a.predictions[row] = static_cast<Label>(best);
  }
  // exp over all rows at once: a flat array, whole vectors.
  const hn::ScalableTag<float> df;
  const std::size_t lanes = hn::Lanes(df);
  const std::size_t total = a.count * K;
  std::size_t j = first * K;
  for (; j + lanes <= total; j += lanes)
    hn::StoreU(ExpOf(df, hn::LoadU(df, logits + j)), df, logits + j);
  if (j < total) {
    // The remainder goes through the same vector exp (padded), so a value's exp never depends on where
    // its row falls in the batch: results stay independent of how rows are split between threads.
    HWY_ALIGN float tail[hn::MaxLanes(df)] = {};
    for (std::size_t t = j; t < total; ++t)
      tail[t - j] = logits[t];
    hn::Store(ExpOf(df, hn::Load(df, tail)), df, tail);
    for (std::size_t t = j; t < total; ++t)
      logits[t] = tail[t - j];
  }

  for (std::size_t row = first; row < a.count; ++row) {
    float* e = logits + row * K;
    float sum = 0;
    for (std::size_t k = 0; k < K; ++k)
      sum += e[k];
    exp_sum[row] = sum;
    if (a.dlogits) {
      const float inv_sum = 1.0f / sum;
      for (std::size_t k = 0; k < K; ++k)
        e[k] *= inv_sum;
      e[a.labels[row]] -= 1.0f;
    }
  }
  // loss = log sum exp(o - max) - (o_y - max), the logs a vector of rows at a time, the last one padded
  // (a row's log does not depend on its neighbours).
  for (std::size_t row = first; row < a.count; row += lanes) {
    const std::size_t n = std::min(lanes, a.count - row);
    HWY_ALIGN float block[hn::MaxLanes(df)];
    for (std::size_t i = 0; i < lanes; ++i)
      block[i] = i < n ? exp_sum[row + i] : 1.0f;
    hn::Store(LogOfSums(df, hn::Load(df, block)), df, block);
    for (std::size_t i = 0; i < n; ++i)
      a.row_loss[row + i] = block[i] - label_logit[row + i];
  }
  return correct;
}

#if SOFTREG_SIXTEEN_LANE_SUMS
// The steps the two column forms below share, for the 16 rows from row0:
// their labels as 16 int32 lanes;
HWY_INLINE __m512i SixteenLabels(const FastForwardArgs& a, std::size_t row0) {
  return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.labels + row0)));
}
// the argmax classes `best` stored as predictions (if asked for), and how many equal the label;
HWY_INLINE std::int64_t CountAndPredict(const FastForwardArgs& a, std::size_t row0, __m512i best,
                                        __m512i labels) {
  if (a.predictions) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(a.predictions + row0), _mm512_cvtepi32_epi16(best));
  }
  return __builtin_popcount(_mm512_cmpeq_epi32_mask(best, labels));
}
// the losses log(sum) - label_logit, with the log SoftmaxRows takes.
HWY_INLINE void StoreLosses(const FastForwardArgs& a, std::size_t row0, __m512 sum, __m512 label_logit) {
  const hn::ScalableTag<float> df;
  _mm512_storeu_ps(a.row_loss + row0, _mm512_sub_ps(LogOfSums(df, hn::Vec512<float>{sum}).raw, label_logit));
}

// SoftmaxRows for rows [0, rows) (a multiple of 16) with K <= 16, sixteen rows at a time in columns
// held in registers: a row per lane, a vector per class, so that no step works across lanes. It repeats
// SoftmaxRows' arithmetic step for step (the same running argmax, exp, sums in class order, log,
// division), so its results are SoftmaxRows' bit for bit, in a fraction of its scalar loops' time.
std::int64_t SoftmaxSixteenRowsInRegisters(const FastForwardArgs& a, float* logits, std::size_t rows) {
  const hn::ScalableTag<float> df;
  const int K = static_cast<int>(a.classes);
  const __mmask16 classes = static_cast<__mmask16>(K >= 16 ? 0xFFFF : (1u << K) - 1);
  std::int64_t correct = 0;
  for (std::size_t row0 = 0; row0 < rows; row0 += 16) {
    float* o = logits + row0 * a.classes;
    __m512 v[16];
    for (int r = 0; r < 16; ++r)
      v[r] = _mm512_maskz_loadu_ps(classes, o + static_cast<std::size_t>(r) * a.classes);
    Transpose16(v);  // v[k]: class k's logits of the 16 rows
    const __m512i labels = SixteenLabels(a, row0);
    __m512 row_max = v[0];
    __m512i best = _mm512_setzero_si512();
    __mmask16 has_nan = _mm512_cmp_ps_mask(v[0], v[0], _CMP_UNORD_Q);
    for (int k = 1; k < K; ++k) {
      const __mmask16 above = _mm512_cmp_ps_mask(v[k], row_max, _CMP_GT_OQ);
      has_nan = static_cast<__mmask16>(has_nan | _mm512_cmp_ps_mask(v[k], v[k], _CMP_UNORD_Q));
      row_max = _mm512_mask_blend_ps(above, row_max, v[k]);
      best = _mm512_mask_blend_epi32(above, best, _mm512_set1_epi32(k));
    }
    correct += CountAndPredict(a, row0, best, labels);
    __m512 label_logit = _mm512_setzero_ps(), sum = _mm512_setzero_ps();
    __mmask16 is_label[16];
    for (int k = 0; k < K; ++k) {
      const __m512 shifted = _mm512_sub_ps(v[k], row_max);
      is_label[k] = _mm512_cmpeq_epi32_mask(labels, _mm512_set1_epi32(k));
      label_logit = _mm512_mask_blend_ps(is_label[k], label_logit, shifted);
      v[k] = hn::Exp(df, hn::Vec512<float>{shifted}).raw;
      sum = _mm512_add_ps(sum, v[k]);
    }
    // Highway's exp of a NaN is 0 (ExpOf): a row with a NaN logit gets a NaN sum instead, and so a NaN
    // loss and NaN dlogits. (Flagged once per class here, measured faster than ExpOf's per-exp check.)
    sum = _mm512_mask_mov_ps(sum, has_nan, _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
    StoreLosses(a, row0, sum, label_logit);
    if (!a.dlogits) continue;
    const __m512 inv_sum = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
    for (int k = 0; k < K; ++k) {
      const __m512 softmax = _mm512_mul_ps(v[k], inv_sum);
      v[k] = _mm512_mask_sub_ps(softmax, is_label[k], softmax, _mm512_set1_ps(1.0f));
    }
    for (int k = K; k < 16; ++k)
      v[k] = _mm512_setzero_ps();
    Transpose16(v);  // back to rows
    for (int r = 0; r < 16; ++r)
      _mm512_mask_storeu_ps(o + static_cast<std::size_t>(r) * a.classes, classes, v[r]);
  }
  return correct;
}

// SoftmaxRows for rows [0, rows) (a multiple of 16), sixteen rows at a time in columns: a row per
// lane, a vector per class (16 x 16 blocks transposed in registers), so that no step works across
// lanes. It repeats SoftmaxRows' arithmetic step for step (the same running argmax, exp, sums in class
// order, log, division), so its results are SoftmaxRows' bit for bit, in a fraction of the time
// of its scalar loops.
std::int64_t SoftmaxSixteenRowsAtATime(const FastForwardArgs& a, float* logits, std::size_t rows) {
  const hn::ScalableTag<float> df;
  const std::size_t K = a.classes;
  thread_local std::vector<float> column_store;
  column_store.resize(K * 16);
  float* const columns = column_store.data();  // class k's 16 values at columns + 16 k
  const auto block_mask = [K](std::size_t k0) {
    return static_cast<__mmask16>(K - k0 >= 16 ? 0xFFFF : (1u << (K - k0)) - 1);
  };
  std::int64_t correct = 0;
  for (std::size_t row0 = 0; row0 < rows; row0 += 16) {
    float* o = logits + row0 * K;
    __m512 v[16];
    for (std::size_t k0 = 0; k0 < K; k0 += 16) {
      const __mmask16 mask = block_mask(k0);
      for (std::size_t r = 0; r < 16; ++r)
        v[r] = _mm512_maskz_loadu_ps(mask, o + r * K + k0);
      Transpose16(v);  // v[j]: class k0 + j's logits of the 16 rows
      for (std::size_t j = 0; j < 16 && k0 + j < K; ++j)
        _mm512_storeu_ps(columns + (k0 + j) * 16, v[j]);
    }
    const __m512i labels = SixteenLabels(a, row0);
    __m512 row_max = _mm512_loadu_ps(columns);
    __m512i best = _mm512_setzero_si512();
    for (std::size_t k = 1; k < K; ++k) {
      const __m512 logit = _mm512_loadu_ps(columns + k * 16);
      const __mmask16 above = _mm512_cmp_ps_mask(logit, row_max, _CMP_GT_OQ);
      row_max = _mm512_mask_blend_ps(above, row_max, logit);
      best = _mm512_mask_blend_epi32(above, best, _mm512_set1_epi32(static_cast<int>(k)));
    }
    correct += CountAndPredict(a, row0, best, labels);
    __m512 label_logit = _mm512_setzero_ps(), sum = _mm512_setzero_ps();
    for (std::size_t k = 0; k < K; ++k) {
      const __m512 shifted = _mm512_sub_ps(_mm512_loadu_ps(columns + k * 16), row_max);
      const __mmask16 is_label = _mm512_cmpeq_epi32_mask(labels, _mm512_set1_epi32(static_cast<int>(k)));
      label_logit = _mm512_mask_blend_ps(is_label, label_logit, shifted);
      const __m512 e = ExpOf(df, hn::Vec512<float>{shifted}).raw;
      _mm512_storeu_ps(columns + k * 16, e);
      sum = _mm512_add_ps(sum, e);
    }
    StoreLosses(a, row0, sum, label_logit);
    if (!a.dlogits) continue;
    const __m512 inv_sum = _mm512_div_ps(_mm512_set1_ps(1.0f), sum);
    for (std::size_t k0 = 0; k0 < K; k0 += 16) {
      for (std::size_t j = 0; j < 16; ++j) {
        const std::size_t k = k0 + j;
        if (k >= K) {
          v[j] = _mm512_setzero_ps();
          continue;
        }
        const __m512 softmax = _mm512_mul_ps(_mm512_loadu_ps(columns + k * 16), inv_sum);
        const __mmask16 is_label = _mm512_cmpeq_epi32_mask(labels, _mm512_set1_epi32(static_cast<int>(k)));
        v[j] = _mm512_mask_sub_ps(softmax, is_label, softmax, _mm512_set1_ps(1.0f));
      }
      Transpose16(v);  // back to rows
      const __mmask16 mask = block_mask(k0);
      for (std::size_t r = 0; r < 16; ++r)
        _mm512_mask_storeu_ps(o + r * K + k0, mask, v[r]);
    }
  }
  return correct;
}
#endif

#if SOFTREG_EIGHT_LANE_SUMS
// SoftmaxRows for rows [0, rows) (a multiple of 8), eight rows at a time in columns: a row per lane, a
// vector per class (8 x 8 blocks transposed in registers; a last block of fewer classes copied one by
// one), so that no step works across lanes. As SoftmaxSixteenRowsAtATime does for 512-bit vectors, it
// repeats SoftmaxRows' arithmetic step for step, so its results are SoftmaxRows' bit for bit.
std::int64_t SoftmaxEightRowsAtATime(const FastForwardArgs& a, float* logits, std::size_t rows) {
  const hn::ScalableTag<float> df;
  const std::size_t K = a.classes;
  thread_local std::vector<float> column_store;
  column_store.resize(K * 8);
  float* const columns = column_store.data();  // class k's 8 values at columns + 8 k
  const auto is_label_of = [](__m256i labels, std::size_t k) {
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(labels, _mm256_set1_epi32(static_cast<int>(k))));
  };
  std::int64_t correct = 0;
  for (std::size_t row0 = 0; row0 < rows; row0 += 8) {
    float* o = logits + row0 * K;
    std::size_t k0 = 0;
    for (; k0 + 8 <= K; k0 += 8) {
      __m256 v[8];
      for (std::size_t r = 0; r < 8; ++r)
        v[r] = _mm256_loadu_ps(o + r * K + k0);
      Transpose8(v);  // v[j]: class k0 + j's logits of the 8 rows
      for (std::size_t j = 0; j < 8; ++j)
        _mm256_storeu_ps(columns + (k0 + j) * 8, v[j]);
    }
    for (std::size_t k = k0; k < K; ++k) {
      for (std::size_t r = 0; r < 8; ++r)
        columns[k * 8 + r] = o[r * K + k];
    }
    const __m256i labels =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a.labels + row0)));
    __m256 row_max = _mm256_loadu_ps(columns);
    __m256i best = _mm256_setzero_si256();
    for (std::size_t k = 1; k < K; ++k) {
      const __m256 logit = _mm256_loadu_ps(columns + k * 8);
      const __m256 above = _mm256_cmp_ps(logit, row_max, _CMP_GT_OQ);
      row_max = _mm256_blendv_ps(row_max, logit, above);
      best = _mm256_castps_si256(_mm256_blendv_ps(
          _mm256_castsi256_ps(best), _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(k))), above));
    }
    correct += __builtin_popcount(
        static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(best, labels)))));
    if (a.predictions) {
      HWY_ALIGN std::int32_t classes[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(classes), best);
      for (std::size_t r = 0; r < 8; ++r)
        a.predictions[row0 + r] = static_cast<Label>(classes[r]);
    }
    __m256 label_logit = _mm256_setzero_ps(), sum = _mm256_setzero_ps();
    for (std::size_t k = 0; k < K; ++k) {
      const __m256 shifted = _mm256_sub_ps(_mm256_loadu_ps(columns + k * 8), row_max);
      label_logit = _mm256_blendv_ps(label_logit, shifted, is_label_of(labels, k));
      const __m256 e = ExpOf(df, hn::Vec256<float>{shifted}).raw;
      _mm256_storeu_ps(columns + k * 8, e);
      sum = _mm256_add_ps(sum, e);
    }
    _mm256_storeu_ps(a.row_loss + row0,
                     _mm256_sub_ps(LogOfSums(df, hn::Vec256<float>{sum}).raw, label_logit));
    if (!a.dlogits) continue;
    const __m256 inv_sum = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
    for (std::size_t k = 0; k < K; ++k) {
      const __m256 softmax = _mm256_mul_ps(_mm256_loadu_ps(columns + k * 8), inv_sum);
      _mm256_storeu_ps(
          columns + k * 8,
          _mm256_blendv_ps(softmax, _mm256_sub_ps(softmax, _mm256_set1_ps(1.0f)), is_label_of(labels, k)));
    }
    for (k0 = 0; k0 + 8 <= K; k0 += 8) {
      __m256 v[8];
      for (std::size_t j = 0; j < 8; ++j)
        v[j] = _mm256_loadu_ps(columns + (k0 + j) * 8);
      Transpose8(v);  // back to rows
      for (std::size_t r = 0; r < 8; ++r)
        _mm256_storeu_ps(o + r * K + k0, v[r]);
    }
    for (std::size_t k = k0; k < K; ++k) {
      for (std::size_t r = 0; r < 8; ++r)
        o[r * K + k] = columns[k * 8 + r];
    }
  }
  return correct;
}
#endif

template <class T>
std::int64_t ForwardRowsT(const FastForwardArgs& a) {
  const std::size_t K = a.classes;
  // Without dlogits the logits go to a scratch buffer (evaluation).
  thread_local std::vector<float> scratch;
  float* logits = a.dlogits;
  if (!logits) {
    scratch.resize(a.count * K);
    logits = scratch.data();
  }

  // Tiles of classes outside, rows inside: a tile of W stays in cache while every row passes it (for a
  // thousand classes W is megabytes; rows outside would stream all of it for every row). Rows that
  // would not fit in half of L2 go in chunks that do, or every tile would bring them from L3 again.
  const std::size_t row_bytes = a.inputs * sizeof(T);
  const bool wide = K > static_cast<std::size_t>(kTile) &&
                    kWideTile * a.inputs * sizeof(float) + kWideTileRows * row_bytes <= l1_data_cache_bytes();
  const bool input_by_input = SumsInputByInput<T>(a.model_classes != 0 ? a.model_classes : K);
  // Input by input, the rows are read once, into float panels that the tiles read: chunks of those.
  const std::size_t chunk = std::max<std::size_t>(
      1,
      l2_cache_bytes() / 2 / std::max<std::size_t>(1, input_by_input ? a.inputs * sizeof(float) : row_bytes));
  for (std::size_t first = 0; first < a.count && !a.logits_given; first += chunk) {
    FastForwardArgs part = a;
    part.rows += first;
    part.count = std::min(chunk, a.count - first);
    float* const part_logits = logits + first * K;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
    if constexpr (std::is_same_v<T, float>) {
      if (input_by_input) {  // asks for its rows itself
        OuterLogits<T>(part, part_logits);
        continue;
      }
    }
#endif
    // Ask for every row of the chunk at once: the shuffled rows are scattered over the whole training
    // set, and a light loop of prefetches keeps many memory requests in flight, where the arithmetic
    // below would reach each row only after the previous one is done.
    if (!a.rows_requested) request_rows(part.rows, part.count, row_bytes);
    std::size_t k0 = 0;
    if constexpr (kWideTile > 0) {
      if (wide) {
        for (; k0 + kWideTile <= K; k0 += kWideTile)
          DotTile<T, kWideTile, kWideTileRows>(part, k0, part_logits);
      }
    }
    if (ForwardTileFor(K) == kNarrowTile) {
      for (; k0 + kNarrowTile <= K; k0 += kNarrowTile)
        DotTile<T, kNarrowTile>(part, k0, part_logits);
    }
    if (k0 < K) DotPartialTile<T>(part, k0, K - k0, part_logits);
  }
  if (a.logits_only) return 0;

  std::size_t done = 0;  // rows whose softmax is done
  std::int64_t correct = 0;
#if SOFTREG_SIXTEEN_LANE_SUMS
  done = a.count / 16 * 16;
  correct =
      K <= 16 ? SoftmaxSixteenRowsInRegisters(a, logits, done) : SoftmaxSixteenRowsAtATime(a, logits, done);
#elif SOFTREG_EIGHT_LANE_SUMS
  done = a.count / 8 * 8;
  correct = SoftmaxEightRowsAtATime(a, logits, done);
#endif
  return correct + SoftmaxRows(a, logits, done);
}

// The most floats TileDlogits writes for a row, over the tile widths.
constexpr std::size_t MostTileDlogits() {
  int most = 0;
  for (int KT = 1; KT <= kTile; ++KT)
    most = std::max(most, KT * BlockFor(KT));
  return static_cast<std::size_t>(most);
}
constexpr std::size_t kMostTileDlogits = MostTileDlogits();

// A tile's dlogits as ColumnBlock reads them folded (kCanFoldBroadcasts): for row r and class k of the tile,
// BlockFor(KT) copies of dlogits[r][k0 + k] side by side, one for each vector of a block.
template <int KT>
void TileDlogits(const FastUpdateArgs& a, std::size_t k0, float* out) {
  constexpr int kCopies = BlockFor(KT);
  for (std::size_t r = 0; r < a.count; ++r) {
    const float* g = a.dlogits + r * a.classes + k0;
    for (int k = 0; k < KT; ++k)
      for (int c = 0; c < kCopies; ++c)
        *out++ = g[k];
  }
}

// sum_r g[r][k] * x_r[d..d+lanes*B) for the KT classes from k0: KT*B accumulators stay in registers
// while every row of the batch streams past them; each broadcast of g[r][k] serves B vectors (on
// 512-bit targets, kFolded: each multiply-add reads its own copy of it, kCanFoldBroadcasts). g is the
// tile's dlogits: TileDlogits' copies, or (in registers) row r's from g[r * row_stride].
// kApplyStep: W[k][d..] -= scale * sum (the fused SGD step); otherwise out[k][d..] = scale * sum.
// With a.second_half set, the sum is that of rows [0, second_half) plus that of the rest, each in row
// order: what fast_step_from_halves adds up from the two halves computed on two threads.
template <class T, int KT, int B, bool kApplyStep, bool kFolded>
void ColumnBlock(const FastUpdateArgs& a, std::size_t d, std::size_t k0, float scale,
                 const float* tile_dlogits, std::size_t row_stride, PrefetchCursor& cursor) {
  const hn::ScalableTag<float> df;
  using V = decltype(hn::Zero(df));
  const std::size_t lanes = hn::Lanes(df);
  const std::size_t D = a.inputs;
  // A copy in registers: through the reference, each row's countdown would be a store that the
  // compiler cannot tell from the accumulators', and they went to the stack every row (AVX2, GCC 12).
  PrefetchCursor ahead = cursor;
  V acc[B][KT];
  // Inlined by force: GCC 12 had left it out of line for most tiles on every target (the AVX2 recipe's
  // among them), where the accumulators live in the captured array and every row stored each of them.
  const auto accumulate = [&](std::size_t r_begin, std::size_t r_end) SOFTREG_ALWAYS_INLINE {
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < KT; ++k)
        acc[b][k] = hn::Zero(df);
    for (std::size_t r = r_begin; r < r_end; ++r) {
      V xv[B];
      for (int b = 0; b < B; ++b)
        xv[b] = LoadValues<T>(df, a.rows[r], d + static_cast<std::size_t>(b) * lanes);
      if (r + kUpdateRowsAhead < r_end) {  // that row's values of this block, into L1
        const std::uint8_t* next = a.rows[r + kUpdateRowsAhead] + d * sizeof(T);
        for (std::size_t offset = 0; offset < B * lanes * sizeof(T); offset += 64)
          hwy::Prefetch(next + offset);
      }
      ahead.maybe_next_line();
      if constexpr (kFolded) {
        constexpr int kCopies = BlockFor(KT);
        const float* g = tile_dlogits + r * static_cast<std::size_t>(KT * kCopies);
        for (int k = 0; k < KT; ++k)
          for (int b = 0; b < B; ++b)
            acc[b][k] = hn::MulAdd(hn::Set(df, g[k * kCopies + b]), xv[b], acc[b][k]);
      } else {
        const float* g = tile_dlogits + r * row_stride;
        for (int k = 0; k < KT; ++k) {
          const V gk = hn::Set(df, g[k]);
          for (int b = 0; b < B; ++b)
            acc[b][k] = hn::MulAdd(gk, xv[b], acc[b][k]);
        }
      }
    }
  };
  if (a.second_half == 0) {
    accumulate(0, a.count);
  } else {
    accumulate(0, a.second_half);
    V first[B][KT];
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < KT; ++k)
        first[b][k] = acc[b][k];
    accumulate(a.second_half, a.count);
    for (int b = 0; b < B; ++b)
      for (int k = 0; k < KT; ++k)
        acc[b][k] = hn::Add(first[b][k], acc[b][k]);
  }
  cursor = ahead;
  for (int b = 0; b < B; ++b) {
    for (int k = 0; k < KT; ++k) {
      float* out = a.W + (k0 + k) * D + d + static_cast<std::size_t>(b) * lanes;
      if constexpr (kApplyStep) {
        hn::StoreU(hn::MulAdd(hn::Set(df, -scale), acc[b][k], hn::LoadU(df, out)), df, out);
      } else {
        hn::StoreU(hn::Mul(hn::Set(df, scale), acc[b][k]), df, out);
      }
    }
  }
}

#if SOFTREG_MASKED_TAILS
// The last n < 16 inputs from d, as ColumnBlock takes a vector of them: the vector that ends with them
// (TailSpan; zeros in the lanes of other inputs, nothing outside the row read), W stored in their lanes. Each
// lane is the chain of multiply-adds over the rows, in row order and halves, that the scalar loop of
// ColumnTile runs for its input: the same bits.
template <class T, int KT, bool kApplyStep>
void ColumnTail(const FastUpdateArgs& a, std::size_t d, std::size_t n, std::size_t k0, float scale) {
  const hn::ScalableTag<float> df;
  using V = decltype(hn::Zero(df));
  const std::size_t D = a.inputs, K = a.classes;
  const auto span = TailSpanOf(df, d, d + n);
  V acc[KT];
  // Inlined by force, as ColumnBlock's.
  const auto accumulate = [&](std::size_t r_begin, std::size_t r_end) SOFTREG_ALWAYS_INLINE {
    for (int k = 0; k < KT; ++k)
      acc[k] = hn::Zero(df);
    for (std::size_t r = r_begin; r < r_end; ++r) {
      const V xv = LoadTailValues<T>(df, a.rows[r], span);
      const float* g = a.dlogits + r * K + k0;
      for (int k = 0; k < KT; ++k)
        acc[k] = hn::MulAdd(hn::Set(df, g[k]), xv, acc[k]);
    }
  };
  if (a.second_half == 0) {
    accumulate(0, a.count);
  } else {
    accumulate(0, a.second_half);
    V first[KT];
    for (int k = 0; k < KT; ++k)
      first[k] = acc[k];
    accumulate(a.second_half, a.count);
    for (int k = 0; k < KT; ++k)
      acc[k] = hn::Add(first[k], acc[k]);
  }
  for (int k = 0; k < KT; ++k) {
    float* out = a.W + (k0 + k) * D + span.start;
    if constexpr (kApplyStep) {
      hn::BlendedStore(hn::MulAdd(hn::Set(df, -scale), acc[k], hn::MaskedLoad(span.lanes, df, out)),
                       span.lanes, df, out);
    } else {
      hn::BlendedStore(hn::Mul(hn::Set(df, scale), acc[k]), span.lanes, df, out);
    }
  }
}
#endif

// The column blocks of a tile, each broadcast folded or not: what FoldedBroadcastsPay times. `tiled`:
// the batch's dlogits tile by tile (TiledDlogits), or null to read them where they lie.
template <class T, int KT, bool kApplyStep, bool kFolded>
std::size_t ColumnBlocks(const FastUpdateArgs& a, std::size_t k0, float scale, const float* tiled,
                         float* tile_dlogits, PrefetchCursor& ahead) {
  constexpr int B = BlockFor(KT);
  const std::size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  const float* tile = a.dlogits + k0;  // in registers: row r's dlogits from tile[r * row_stride]
  std::size_t row_stride = a.classes;
  if constexpr (kFolded) {
    TileDlogits<KT>(a, k0, tile_dlogits);
    tile = tile_dlogits;
  } else if (tiled) {
    tile = tiled + k0 * a.count;
    row_stride = static_cast<std::size_t>(KT);
  }
  std::size_t d = a.d_begin;
  for (; d + B * lanes <= a.d_end; d += B * lanes)
    ColumnBlock<T, KT, B, kApplyStep, kFolded>(a, d, k0, scale, tile, row_stride, ahead);
  for (; d + lanes <= a.d_end; d += lanes)
    ColumnBlock<T, KT, 1, kApplyStep, kFolded>(a, d, k0, scale, tile, row_stride, ahead);
  return d;
}

// Whether the update's multiply-adds for a tile of KT classes of T values run faster with their
// broadcasts folded (kCanFoldBroadcasts), timed on this core: 64 resident rows, two column blocks,
// each form 40 times in a row, the fastest of 5 alternated rounds each (about 0.2 ms in all, once per
// process and tile shape). The forms differ by a fifth either way (Zen 4, Zen 5), far more than what
// the fastest of 5 leaves of a noisy host's spells.
template <class T, int KT>
bool FoldedBroadcastsMeasuredFaster() {
  constexpr std::size_t kRows = 64, kCalls = 40, kRounds = 5;
  const std::size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  const std::size_t D = 2 * static_cast<std::size_t>(BlockFor(KT)) * lanes;
  std::vector<T> values(kRows * D);
  for (std::size_t i = 0; i < values.size(); ++i)
    values[i] = static_cast<T>(i % 251);
  std::vector<const std::uint8_t*> rows(kRows);
  for (std::size_t r = 0; r < kRows; ++r)
    rows[r] = reinterpret_cast<const std::uint8_t*>(values.data() + r * D);
  std::vector<float> dlogits(kRows * KT), sums(KT * D), tile(kRows * kMostTileDlogits);
  for (std::size_t i = 0; i < dlogits.size(); ++i)
    dlogits[i] = static_cast<float>(i % 13) * 0.01f - 0.06f;
  const ElementType element = std::is_same_v<T, std::uint8_t> ? ElementType::kU8
                              : std::is_same_v<T, float>      ? ElementType::kF32
                                                              : ElementType::kF64;
  const FastUpdateArgs a{rows.data(), dlogits.data(), kRows,      D,          KT, element, 0,
                         D,           1.0f,           1.0f / 255, sums.data()};
  PrefetchCursor never;
  never.every = never.countdown = std::numeric_limits<std::size_t>::max();
  const auto fastest = [&](auto folded, std::int64_t& best) {
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t call = 0; call < kCalls; ++call)
      ColumnBlocks<T, KT, /*kApplyStep=*/false, decltype(folded)::value>(a, 0, a.scale, nullptr, tile.data(),
                                                                         never);
    const auto took = (std::chrono::steady_clock::now() - start).count();
    best = std::min<std::int64_t>(best, took);
  };
  std::int64_t folded = std::numeric_limits<std::int64_t>::max(), in_registers = folded;
  for (std::size_t round = 0; round < kRounds; ++round) {
    fastest(std::true_type{}, folded);
    fastest(std::false_type{}, in_registers);
  }
  return folded < in_registers;
}

template <class T, int KT>
bool FoldedBroadcastsPay() {
  if constexpr (!kCanFoldBroadcasts) {
    return false;
  } else {
    switch (forced_update_broadcasts.load(std::memory_order_relaxed)) {
      case UpdateBroadcasts::kFolded:
        return true;
      case UpdateBroadcasts::kInRegisters:
        return false;
      case UpdateBroadcasts::kMeasured:
        break;
    }
    static const bool measured = FoldedBroadcastsMeasuredFaster<T, KT>();
    return measured;
  }
}

// Columns [d_begin, d_end) for the KT classes from k0: blocks of B vectors, then single vectors, then
// the inputs left when D is not a multiple of the vector width (one masked vector, ColumnTail, or one
// by one). Every (class, input) sum runs over the
// rows in order, whatever the blocking, so the result does not depend on it.
template <class T, int KT, bool kApplyStep>
void ColumnTile(const FastUpdateArgs& a, std::size_t k0, float scale, const float* tiled, float* tile_dlogits,
                PrefetchCursor& ahead) {
  std::size_t d = 0;  // the first input the column blocks leave
  if constexpr (kCanFoldBroadcasts) {
    d = FoldedBroadcastsPay<T, KT>()
            ? ColumnBlocks<T, KT, kApplyStep, true>(a, k0, scale, tiled, tile_dlogits, ahead)
            : ColumnBlocks<T, KT, kApplyStep, false>(a, k0, scale, tiled, tile_dlogits, ahead);
  } else {
    d = ColumnBlocks<T, KT, kApplyStep, false>(a, k0, scale, tiled, tile_dlogits, ahead);
  }
#if SOFTREG_MASKED_TAILS
  if (d < a.d_end) ColumnTail<T, KT, kApplyStep>(a, d, a.d_end - d, k0, scale);
#else
  const std::size_t K = a.classes;
  for (; d < a.d_end; ++d) {
    for (std::size_t k = k0; k < k0 + KT; ++k) {
      const auto sum_of = [&](std::size_t r_begin, std::size_t r_end) {
        float sum = 0;
        for (std::size_t r = r_begin; r < r_end; ++r)
          sum = ScalarMulAdd(a.dlogits[r * K + k], ValueAt<T>(a.rows[r], d), sum);
        return sum;
      };
      const float sum =
          a.second_half == 0 ? sum_of(0, a.count) : sum_of(0, a.second_half) + sum_of(a.second_half, a.count);
      if constexpr (kApplyStep) {
        a.W[k * a.inputs + d] = ScalarMulAdd(-scale, sum, a.W[k * a.inputs + d]);
      } else {
        a.W[k * a.inputs + d] = scale * sum;
      }
    }
  }
#endif
}

template <class T, bool kApplyStep, int KT = kTile>
void ColumnPartialTile(const FastUpdateArgs& a, std::size_t k0, std::size_t width, float scale,
                       const float* tiled, float* tile_dlogits, PrefetchCursor& ahead) {
  if constexpr (KT >= 1) {
    if (width == static_cast<std::size_t>(KT))
      return ColumnTile<T, KT, kApplyStep>(a, k0, scale, tiled, tile_dlogits, ahead);
    ColumnPartialTile<T, kApplyStep, KT - 1>(a, k0, width, scale, tiled, tile_dlogits, ahead);
  }
}

// The batch's dlogits tile by tile, for tiles of `width` classes and a last one of the rest, as AllTiles
// takes them: tile k0's block starts at k0 * count, each row's dlogits of the tile side by side. In the
// batch's dlogits a row's dlogits of a tile lie a row of K classes from the next row's: for 1,000
// classes, in another page, beyond the prefetchers, and the update reads them again for every block of
// inputs. A standalone update loop (1000, 512, f32, rows from L2) ran at 160 GFLOP/s reading them
// there and at 202 from the tiles (Intel Xeon with AMX). The copy costs a pass over the dlogits: for few
// inputs (D = 40: 3 blocks) it cost more than it saved (BM_UpdatePass 207 -> 295 us).
HWY_INLINE const float* TiledDlogits(const FastUpdateArgs& a, int width) {
  const std::size_t K = a.classes, w = static_cast<std::size_t>(width);
  thread_local std::vector<float> tiled;
  tiled.resize(a.count * K);
  for (std::size_t k0 = 0; k0 < K; k0 += w) {
    const std::size_t n = std::min(w, K - k0);
    float* out = tiled.data() + k0 * a.count;
    for (std::size_t r = 0; r < a.count; ++r, out += n)
      std::copy_n(a.dlogits + r * K + k0, n, out);
  }
  return tiled.data();
}

// Whether the update reads its multiply-adds' dlogits from TiledDlogits: with more classes than one
// tile of kTile (for up to 10, a row's dlogits lie within a line or two: nothing measured to gain),
// broadcasts in registers (TileDlogits makes the folded ones' copies) and enough blocks of inputs to
// repay the copy.
template <class T>
bool TiledDlogitsPay(const FastUpdateArgs& a) {
  if (a.classes <= static_cast<std::size_t>(kTile)) return false;
  if (a.d_end - a.d_begin < kTiledDlogitsInputs) return false;
  if constexpr (kCanFoldBroadcasts) {
    if (FoldedBroadcastsPay<T, kUpdateTile>()) return false;
  }
  return true;
}

// The inputs of one chunk of the update (AllTiles): as many as keep `bytes` of the batch's values, in
// whole blocks of any tile width (64 floats: 4 vectors of 16, 8 of 8, 16 of 4).
HWY_INLINE std::size_t UpdateChunkInputs(std::size_t count, std::size_t value_bytes, std::size_t bytes) {
  constexpr std::size_t kWhole = 64;
  return std::max(kWhole, bytes / std::max<std::size_t>(1, count * value_bytes) / kWhole * kWhole);
}

// From this many tiles of classes the update copies its chunks of float rows (AllTiles).
constexpr std::size_t kCopiesForTiles = 10;

// The values [d, d + n) of every row of the batch (of value_bytes each), copied side by side into a
// buffer reused from batch to batch: returns rows that address the copy as a.rows address the rows (row
// r's value d + i at rows[r] + (d + i) * value_bytes). The shuffled rows' pieces lie in as many pages as
// there are rows, and every tile of classes read them all again; the copy is one block. Each piece
// starts on a line of its own, after a line of lead-in: a masked load of a row's last inputs may start
// up to a vector before d (TailSpanOf), and reads there (in lanes it then zeroes) stay in the buffer.
HWY_INLINE const std::uint8_t* const* CopyChunk(const FastUpdateArgs& a, std::size_t d, std::size_t n,
                                                std::size_t value_bytes) {
  thread_local std::vector<std::uint8_t> copy;
  thread_local std::vector<const std::uint8_t*> rows;
  const std::size_t bytes = n * value_bytes, stride = (bytes + 63) / 64 * 64;
  copy.resize(std::max(copy.size(), 128 + a.count * stride));
  rows.resize(std::max(rows.size(), a.count));
  std::uint8_t* const base = StartOfLine(copy.data()) + 64;
  for (std::size_t r = 0; r < a.count; ++r) {
    if (r + kUpdateRowsAhead < a.count) {
      for (std::size_t offset = 0; offset < bytes; offset += 64)
        hwy::Prefetch(a.rows[r + kUpdateRowsAhead] + d * value_bytes + offset);
    }
    std::memcpy(base + r * stride, a.rows[r] + d * value_bytes, bytes);
    // base + r * stride - d * value_bytes may lie outside the buffer: formed as an integer, and only
    // ever offset back inside it.
    rows[r] = reinterpret_cast<const std::uint8_t*>(reinterpret_cast<std::uintptr_t>(base + r * stride) -
                                                    d * value_bytes);
  }
  return rows.data();
}

// All tiles of classes, asking for the rows in `ahead` on the way.
template <class T, bool kApplyStep>
void AllTiles(const FastUpdateArgs& a, float scale, PrefetchCursor& ahead) {
  const std::size_t K = a.classes;
  // TileDlogits' copies for one tile at a time, reused from batch to batch.
  thread_local std::vector<float> tile_dlogits;
  if constexpr (kCanFoldBroadcasts) tile_dlogits.resize(a.count * kMostTileDlogits);
  float* const tile = tile_dlogits.data();
  const float* const tiled = TiledDlogitsPay<T>(a) ? TiledDlogits(a, kUpdateTile) : nullptr;
  // Chunks of inputs (set_update_chunk_bytes) that stay in L2 while every tile of classes reads them:
  // BM_UpdatePass, 500 classes of 1,024 floats, 1.30-1.46 ms against 1.63-1.75 for the whole batch
  // (Zen 5). One tile of classes reads the rows once: no chunks then.
  const std::size_t chunk = K <= static_cast<std::size_t>(kUpdateTile)
                                ? a.d_end - a.d_begin
                                : UpdateChunkInputs(a.count, sizeof(T), update_chunk_bytes());
  // Ten tiles or more of float rows: each chunk's values of the batch's rows are first copied side by
  // side (CopyChunk), and the tiles read the copy. On an Intel Xeon guest, alternated: the 1,000-class
  // probe (1000, 1024, f32) 1.91 -> 1.70 s an epoch on two threads (the update 1.00 -> 0.82 s),
  // (100, 512, f32) 113 -> 106 ms on one thread, 68.9 -> 65.3 on two; `BM_UpdatePass` (500, 1024, f32)
  // 2.17-2.47 -> 1.79-1.92 ms. With fewer tiles the copy cost more than it saved on two threads ((80,
  // 512, f32) the update 24.9 -> 26.5 ms, (32, 512) 13.2 -> 15.2), and rows of bytes gained nothing
  // ((100, 784, u8) alike): those are read where they lie.
  const bool copies =
      std::is_same_v<T, float> && K >= kCopiesForTiles * static_cast<std::size_t>(kUpdateTile);
  for (std::size_t d = a.d_begin; d < a.d_end; d += chunk) {
    FastUpdateArgs part = a;
    part.d_begin = d;
    part.d_end = std::min(a.d_end, d + chunk);
    if (copies) part.rows = CopyChunk(a, d, part.d_end - d, sizeof(T));
    std::size_t k0 = 0;
    for (; k0 + kUpdateTile <= K; k0 += kUpdateTile)
      ColumnTile<T, kUpdateTile, kApplyStep>(part, k0, scale, tiled, tile, ahead);
    if (k0 < K) ColumnPartialTile<T, kApplyStep>(part, k0, K - k0, scale, tiled, tile, ahead);
  }
}

template <class T, bool kApplyStep>
void ColumnsT(const FastUpdateArgs& a) {
  const float scale = kApplyStep ? a.step * a.scale : a.scale;
  // No prefetching of this batch's rows, unlike the forward pass: they are in this core's L2 or (with
  // several threads, the other half of the batch) in another core's, and each row's range of inputs is
  // read in order. Asking for every row's range up front made this pass about a fifth slower on two
  // threads (Zen 4, BENCHMARKS.md) and did not help on one.
  PrefetchCursor ahead;
  if (a.prefetch && a.prefetch_count > 0) ahead = {a.prefetch, a.prefetch_count, a.prefetch_row_bytes};
  if (ahead.count == 0) {
    // A countdown that never ends: a decrement a row, measured no slower, where a second copy of every
    // update loop without it made this file's compile 1.6x as long (Zen 3: g++ 126 against 74 s, clang
    // with ASan 145 against 92 s).
    ahead.every = ahead.countdown = std::numeric_limits<std::size_t>::max();
    return AllTiles<T, kApplyStep>(a, scale, ahead);
  }
  // The next batch's rows (FastUpdateArgs::prefetch), a line every `every` rows read, spread over the
  // whole pass: asked for all at once, they fill the core's queue of misses and the pass's own loads
  // wait behind them.
  const std::size_t lanes = hn::Lanes(hn::ScalableTag<float>());
  const auto blocks = [&](int KT) {  // column blocks of a tile of KT classes (ColumnTile)
    const std::size_t width = static_cast<std::size_t>(BlockFor(KT)) * lanes;
    return (a.d_end - a.d_begin + width - 1) / width;
  };
  const int tile = kUpdateTile, partial = static_cast<int>(a.classes % static_cast<std::size_t>(tile));
  const std::size_t rows_read = a.count * (a.classes / static_cast<std::size_t>(tile) * blocks(tile) +
                                           (partial > 0 ? blocks(partial) : 0));
  ahead.spread_over(rows_read);
  AllTiles<T, kApplyStep>(a, scale, ahead);
  ahead.all_remaining_lines();  // a pass too short to ask for them all on the way
}

std::int64_t ForwardRows(const FastForwardArgs& args) {
  switch (args.element) {
    case ElementType::kF32:
      return ForwardRowsT<float>(args);
    case ElementType::kF64:
      return ForwardRowsT<double>(args);
    case ElementType::kU8:
      break;
  }
  return ForwardRowsT<std::uint8_t>(args);
}
template <bool kApplyStep>
void Columns(const FastUpdateArgs& args) {
  switch (args.element) {
    case ElementType::kF32:
      return ColumnsT<float, kApplyStep>(args);
    case ElementType::kF64:
      return ColumnsT<double, kApplyStep>(args);
    case ElementType::kU8:
      break;
  }
  ColumnsT<std::uint8_t, kApplyStep>(args);
}
void UpdateColumns(const FastUpdateArgs& args) {
  Columns</*kApplyStep=*/true>(args);
}
void GradientColumns(const FastGradientArgs& args) {
  // The same loop as the fused update, writing scale * sum into dW instead of subtracting it from W.
  const FastUpdateArgs a{
      args.rows,     args.dlogits, args.count, args.inputs,   args.classes,        args.element,
      args.d_begin,  args.d_end,
      /*step=*/1.0f, args.scale,   args.dW,    args.prefetch, args.prefetch_count, args.prefetch_row_bytes};
  Columns</*kApplyStep=*/false>(a);
}
void StepFromHalves(const FastHalvesStepArgs& a) {
  const hn::ScalableTag<float> df;
  const std::size_t lanes = hn::Lanes(df), D = a.inputs;
  const float scale = a.step * a.scale;  // as ColumnsT's, so that the step is the fused kernel's bit for bit
  const auto minus_scale = hn::Set(df, -scale);
  for (std::size_t k = 0; k < a.classes; ++k) {
    const float* first = a.first + k * D;
    const float* second = a.second + k * D;
    float* W = a.W + k * D;
    std::size_t d = a.d_begin;
    for (; d + lanes <= a.d_end; d += lanes) {
      const auto sum = hn::Add(hn::LoadU(df, first + d), hn::LoadU(df, second + d));
      hn::StoreU(hn::MulAdd(minus_scale, sum, hn::LoadU(df, W + d)), df, W + d);
    }
    for (; d < a.d_end; ++d)
      W[d] = ScalarMulAdd(-scale, first[d] + second[d], W[d]);
  }
  if (a.mirror) {  // one class: the opposite step, as exactly (rounding is symmetric about zero)
    const auto plus_scale = hn::Set(df, scale);
    std::size_t d = a.d_begin;
    for (; d + lanes <= a.d_end; d += lanes) {
      const auto sum = hn::Add(hn::LoadU(df, a.first + d), hn::LoadU(df, a.second + d));
      hn::StoreU(hn::MulAdd(plus_scale, sum, hn::LoadU(df, a.mirror + d)), df, a.mirror + d);
    }
    for (; d < a.d_end; ++d)
      a.mirror[d] = ScalarMulAdd(scale, a.first[d] + a.second[d], a.mirror[d]);
  }
}

// fast_binary_softmax for one vector of rows, of which the first n are real (the rest padding).
template <class D, class V>
HWY_INLINE std::int64_t BinaryLanes(D df, V z, V y, std::size_t n, V& dlogit, V& loss) {
  const V zero = hn::Zero(df), one = hn::Set(df, 1.0f);
  const auto is_one = hn::Eq(y, one);
  // e = exp(-|z|) <= 1 serves both: sigmoid(z) = 1 / (1 + e) for z >= 0 and e / (1 + e) below, and
  // softplus(s) = max(s, 0) + log1p(e) for s = -z (label 1) or z (label 0).
  const V e = hn::Exp(df, hn::Neg(hn::Abs(z)));
  const V inv = hn::Div(one, hn::Add(one, e));
  const V p1 = hn::IfThenElse(hn::Ge(z, zero), inv, hn::Mul(e, inv));
  const V s = hn::IfThenElse(is_one, hn::Neg(z), z);
  // A margin that is not finite comes from weights that are not (0 * inf is NaN): NaN, as the softmax
  // gives a row with an infinite logit, so that the run is caught as diverged. Left alone, infinite
  // weights could separate the rows with losses of 0 (Highway's exp of a NaN is 0, too: ExpOf).
  const auto broken = hn::Not(hn::IsFinite(z));
  const V nan = hn::Set(df, std::numeric_limits<float>::quiet_NaN());
  dlogit = hn::IfThenElse(broken, nan, hn::Sub(p1, y));
  loss = hn::IfThenElse(broken, nan, hn::Add(hn::Max(s, zero), hn::Log1p(df, e)));
  const V predicted = hn::IfThenElseZero(hn::Gt(z, zero), one);
  return static_cast<std::int64_t>(hn::CountTrue(df, hn::And(hn::Eq(predicted, y), hn::FirstN(df, n))));
}

std::int64_t BinarySoftmax(const FastBinaryArgs& a) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<std::int32_t, decltype(df)> di;
  const hn::Rebind<std::uint16_t, decltype(df)> d16;
  using V = decltype(hn::Zero(df));
  const std::size_t lanes = hn::Lanes(df);
  std::int64_t correct = 0;
  std::size_t row = 0;
  for (; row + lanes <= a.count; row += lanes) {
    const V z = hn::LoadU(df, a.margins + row);
    const V y = hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(d16, a.labels + row)));
    V dlogit, loss;
    correct += BinaryLanes(df, z, y, lanes, dlogit, loss);
    hn::StoreU(dlogit, df, a.margins + row);
    hn::StoreU(loss, df, a.row_loss + row);
  }
  if (row < a.count) {  // the last rows through the same vector code, padded
    const std::size_t n = a.count - row;
    HWY_ALIGN float z[hn::MaxLanes(df)] = {}, y[hn::MaxLanes(df)] = {};
    for (std::size_t i = 0; i < n; ++i) {
      z[i] = a.margins[row + i];
      y[i] = static_cast<float>(a.labels[row + i]);
    }
    V dlogit, loss;
    correct += BinaryLanes(df, hn::Load(df, z), hn::Load(df, y), n, dlogit, loss);
    hn::Store(dlogit, df, z);
    hn::Store(loss, df, y);
    for (std::size_t i = 0; i < n; ++i) {
      a.margins[row + i] = z[i];
      a.row_loss[row + i] = y[i];
    }
  }
  return correct;
}

// fast_margin_pass: rows in groups of kMarginGroupRows. A group's rows, just read for its margins, are in
// L1 when its part of the sums is taken (the bytes widened again from there), where the forward pass and
// then fast_gradient_columns read every row twice, the second time from L2, and the requests for the rows
// ahead paused between them. On Zen 3 (AVX2), alternated with the passes apart: `bench --classes 2` (784
// bytes) 0.85-0.91x the epoch's time on one thread, 0.79-0.87x on two; 784 floats 0.94x and 0.87x; on
// resident rows (BM_MarginPasses) alike, 0.83-1.05x: what it saves is in the memory's time. Groups of 4 or
// 8 rows measured alike for floats and slower for bytes (BENCHMARKS.md). Each sum still runs over the rows
// in order from zero: a group's part is added to the sums stored after the group before, the multiply-adds
// and the order of the gradient's columns, so the same bits. A group of 784 bytes a row is 12.5 KB.
constexpr std::size_t kMarginGroupRows = 16;

template <class T>
std::int64_t MarginPassT(const FastMarginArgs& m) {
  const hn::ScalableTag<float> df;
  using V = decltype(hn::Zero(df));
  const std::size_t lanes = hn::Lanes(df);
  static_assert(hn::MaxLanes(hn::ScalableTag<float>()) <= kMarginGroupRows);
  const std::size_t D = m.inputs, row_bytes = D * sizeof(T);
  const std::size_t vector_end = D - D % lanes;
  constexpr int R = BlockFor(1);
  static_assert(kMarginGroupRows % R == 0);
  // DotRows' view: one class, the margin.
  FastForwardArgs a{};
  a.rows = m.rows;
  a.count = m.count;
  a.inputs = D;
  a.classes = 1;
  a.element = m.element;
  a.W = m.W;
  a.b = &m.b;
  a.scale = m.scale;
  HWY_ALIGN float bias[(R + 15) / 16 * 16] = {};
  for (int i = 0; i < R; ++i)
    bias[i] = m.b;
  // The rows this pass reads, then those the caller reads next: a block asks for those
  // kPrefetchRowsAhead blocks on, as DotTile's do.
  constexpr std::size_t kAheadRows = kPrefetchRowsAhead * R;
  const std::size_t known = m.count + (m.ahead ? m.ahead_count : 0);
  const auto row_at = [&](std::size_t i) { return i < m.count ? m.rows[i] : m.ahead[i - m.count]; };
  if (m.count == 0) {  // no rows: sums of zero, as fast_gradient_columns writes
    std::fill(m.sums, m.sums + D, 0.0f);
    return 0;
  }
  if (!m.rows_requested) request_rows(m.rows, std::min(m.count, kAheadRows), row_bytes);
  // A pass of fewer rows than it asks ahead reaches none of the first rows told to come next: those now,
  // so that the next pass may count on its first rows asked for.
  if (m.ahead && m.count < kAheadRows)
    request_rows(m.ahead, std::min(m.ahead_count, kAheadRows - m.count), row_bytes);

  std::int64_t correct = 0;
  HWY_ALIGN float z[kMarginGroupRows], y[kMarginGroupRows], g[kMarginGroupRows], loss[kMarginGroupRows];
  for (std::size_t g0 = 0; g0 < m.count; g0 += kMarginGroupRows) {
    const std::size_t n = std::min(kMarginGroupRows, m.count - g0);
    const std::uint8_t* const* x = m.rows + g0;
    // The margins, as DotTile takes them.
    std::size_t i = 0;
    for (; i + R <= n; i += R) {
      const std::size_t ahead_first = g0 + i + kAheadRows;
      const std::uint8_t* ahead[R];
      const bool asks = ahead_first + R <= known;
      if (asks) {
        for (int r = 0; r < R; ++r)
          ahead[r] = row_at(ahead_first + static_cast<std::size_t>(r));
      }
      static_assert(1 <= kValuesAskInLoopMaxClasses);  // AsksInLoop<T>(1): in the loop for any T
      DotRows<T, 1, R, true>(a, g0 + i, 0, bias, z + i, asks ? ahead : nullptr);
    }
    for (; i < n; ++i)
      DotRows<T, 1, 1>(a, g0 + i, 0, bias, z + i);
    // Their sigmoids, losses and dlogits, as fast_binary_softmax's (padded lanes left out).
    for (std::size_t r = 0; r < kMarginGroupRows; ++r) {
      y[r] = r < n ? static_cast<float>(m.labels[g0 + r]) : 0.0f;
      if (r >= n) z[r] = 0.0f;
    }
    for (std::size_t v = 0; v < n; v += lanes) {
      V dlogit, row_loss;
      correct +=
          BinaryLanes(df, hn::Load(df, z + v), hn::Load(df, y + v), std::min(lanes, n - v), dlogit, row_loss);
      hn::Store(dlogit, df, g + v);
      hn::Store(row_loss, df, loss + v);
    }
    for (std::size_t r = 0; r < n; ++r) {
      m.dlogits[g0 + r] = g[r];
      m.row_loss[g0 + r] = loss[r];
    }
    // The group's part of the sums, as ColumnBlock's and ColumnTile's multiply-adds.
    const bool first = g0 == 0;
    const auto columns = [&]<int B>(std::size_t d) SOFTREG_ALWAYS_INLINE {
      V acc[B];
      for (int b = 0; b < B; ++b)
        acc[b] = first ? hn::Zero(df) : hn::LoadU(df, m.sums + d + static_cast<std::size_t>(b) * lanes);
      for (std::size_t r = 0; r < n; ++r) {
        const V gr = hn::Set(df, g[r]);
        for (int b = 0; b < B; ++b)
          acc[b] = hn::MulAdd(gr, LoadValues<T>(df, x[r], d + static_cast<std::size_t>(b) * lanes), acc[b]);
      }
      for (int b = 0; b < B; ++b)
        hn::StoreU(acc[b], df, m.sums + d + static_cast<std::size_t>(b) * lanes);
    };
    constexpr int kBlock = 4;
    std::size_t d = 0;
    for (; d + kBlock * lanes <= vector_end; d += kBlock * lanes)
      columns.template operator()<kBlock>(d);
    for (; d < vector_end; d += lanes)
      columns.template operator()<1>(d);
    for (; d < D; ++d) {
      float sum = first ? 0.0f : m.sums[d];
      for (std::size_t r = 0; r < n; ++r)
        sum = ScalarMulAdd(g[r], ValueAt<T>(x[r], d), sum);
      m.sums[d] = sum;
    }
  }
  return correct;
}

std::int64_t MarginPass(const FastMarginArgs& args) {
  switch (args.element) {
    case ElementType::kF32:
      return MarginPassT<float>(args);
    case ElementType::kF64:
      return MarginPassT<double>(args);
    case ElementType::kU8:
      break;
  }
  return MarginPassT<std::uint8_t>(args);
}

std::int64_t CompiledTarget() {
  return HWY_TARGET;
}
// 1 folded, 0 in registers, -1 no choice: the recipe's tile (10 classes of bytes).
std::int64_t RecipeUpdateBroadcasts() {
  if constexpr (!kCanFoldBroadcasts) return -1;
  return FoldedBroadcastsPay<std::uint8_t, kTile>() ? 1 : 0;
}

}  // namespace HWY_NAMESPACE
}  // namespace softreg
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace softreg {

HWY_EXPORT(ForwardRows);
HWY_EXPORT(UpdateColumns);
HWY_EXPORT(GradientColumns);
HWY_EXPORT(StepFromHalves);
HWY_EXPORT(BinarySoftmax);
HWY_EXPORT(MarginPass);
HWY_EXPORT(CompiledTarget);
HWY_EXPORT(RecipeUpdateBroadcasts);

namespace {
// SOFTREG_UPDATE_BROADCASTS=folded|registers forces a form for the whole process, as
// set_update_broadcasts does (benchmarks; the sanitizer build, where the probe times instrumented loads).
UpdateBroadcasts update_broadcasts_from_environment() {
  const char* forced = std::getenv("SOFTREG_UPDATE_BROADCASTS");
  if (forced && std::strcmp(forced, "folded") == 0) return UpdateBroadcasts::kFolded;
  if (forced && std::strcmp(forced, "registers") == 0) return UpdateBroadcasts::kInRegisters;
  return UpdateBroadcasts::kMeasured;
}
}  // namespace

std::atomic<UpdateBroadcasts> forced_update_broadcasts{update_broadcasts_from_environment()};

namespace {
std::atomic<std::size_t> chunk_bytes{kDefaultUpdateChunkBytes};
}  // namespace

void set_update_chunk_bytes(std::size_t bytes) {
  chunk_bytes.store(bytes == 0 ? kDefaultUpdateChunkBytes : bytes, std::memory_order_relaxed);
}

std::size_t update_chunk_bytes() {
  return chunk_bytes.load(std::memory_order_relaxed);
}

void set_update_broadcasts(UpdateBroadcasts how) {
  forced_update_broadcasts.store(how, std::memory_order_relaxed);
}

std::string update_broadcasts() {
  switch (HWY_DYNAMIC_DISPATCH(RecipeUpdateBroadcasts)()) {
    case 1:
      return "folded";
    case 0:
      return "in registers";
    default:
      return "";
  }
}

void request_rows(const std::uint8_t* const* rows, std::size_t count, std::size_t row_bytes) {
  for (std::size_t r = 0; r < count; ++r) {
    for (std::size_t offset = 0; offset < row_bytes; offset += 64)
      __builtin_prefetch(rows[r] + offset, 0, 2);  // hint T1, as PrefetchCursor's
  }
}

bool forward_asks_rows_in_loop(ElementType element, std::size_t classes) {
  namespace target = HWY_NAMESPACE;  // AsksInLoop is the same on every target
  switch (element) {
    case ElementType::kF32:
      return target::AsksInLoop<float>(classes);
    case ElementType::kF64:
      return target::AsksInLoop<double>(classes);
    case ElementType::kU8:
      break;
  }
  return target::AsksInLoop<std::uint8_t>(classes);
}

std::int64_t fast_forward_rows(const FastForwardArgs& args) {
  return HWY_DYNAMIC_DISPATCH(ForwardRows)(args);
}
void fast_update_columns(const FastUpdateArgs& args) {
  HWY_DYNAMIC_DISPATCH(UpdateColumns)(args);
}
void fast_gradient_columns(const FastGradientArgs& args) {
  HWY_DYNAMIC_DISPATCH(GradientColumns)(args);
}
void fast_step_from_halves(const FastHalvesStepArgs& args) {
  if (args.mirror && args.classes != 1) throw Error("fast_step_from_halves: a mirror needs one class");
  HWY_DYNAMIC_DISPATCH(StepFromHalves)(args);
}
std::int64_t fast_binary_softmax(const FastBinaryArgs& args) {
  return HWY_DYNAMIC_DISPATCH(BinarySoftmax)(args);
}

std::int64_t fast_margin_pass(const FastMarginArgs& args) {
  return HWY_DYNAMIC_DISPATCH(MarginPass)(args);
}

std::string simd_target() {
  return hwy::TargetName(HWY_DYNAMIC_DISPATCH(CompiledTarget)());
}

std::vector<std::string> simd_targets_available() {
  std::vector<std::string> names;
  for (std::int64_t target : hwy::SupportedAndGeneratedTargets())
    names.emplace_back(hwy::TargetName(target));
  return names;
}

std::vector<std::string> simd_targets_compiled() {
  std::vector<std::string> names;
  const auto compiled = static_cast<std::uint64_t>(HWY_TARGETS);
  for (std::uint64_t bit = 1; bit != 0; bit <<= 1) {
    if ((compiled & bit) != 0) names.emplace_back(hwy::TargetName(static_cast<std::int64_t>(bit)));
  }
  return names;
}

void restrict_simd_targets(const std::string& name) {
  hwy::SetSupportedTargetsForTest(0);  // back to what the CPU supports, then narrow it down
  if (name.empty()) return;
  for (std::int64_t target : hwy::SupportedAndGeneratedTargets()) {
    if (name == hwy::TargetName(target)) {
      hwy::SetSupportedTargetsForTest(target);
      return;
    }
  }
  throw Error("SIMD target '" + name + "' is not available on this CPU");
}

}  // namespace softreg
#endif  // HWY_ONCE
