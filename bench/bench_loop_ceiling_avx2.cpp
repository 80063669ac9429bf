// What an AVX2 core (16 vector registers: Zen 3) gives the recipe's two inner loops, step by step, as
// bench_loop_ceiling.cpp measures them for AVX-512 (issue 8: why a ratio to the floor is what it is).
// On AVX2 the recipe's forward pass takes tiles of 5 classes by 2 rows (DotRows<u8, 5, 2>: 10
// accumulators), one tile after the other over all 128 pairs of the batch's 256 rows, each step 8
// inputs of both rows against the tile's 5 weight vectors (10 multiply-adds). Versions, one thing added
// at a time, then other shapes of the same loop:
//   0: the multiply-adds alone (rows and weights in registers)
//   1: + the tile's five weight vectors loaded each step (15.7 KB a tile, stays in L1)
//   2: + the two rows' 8 values loaded each step, rows of floats (800 KB: from L3 beyond a 512 KB L2)
//   3: the two rows as bytes widened to floats in registers (200 KB, from L2): the recipe's loop, each
//      tile widening every row again
//   4: the bytes widened once: rows in chunks of 16; the first tile widens a chunk's rows and also
//      stores the floats (50 KB, L2), the second reads those floats
//   5: as 3, W's loads folded into the multiply-adds (loaded once a row instead of once a pair)
//   6: tiles of 10 classes by 1 row (W's 31 KB and the rows share a 32 KB L1)
//   7: tiles of 4, 4 and 2 classes by 3 rows (255 of the rows; 16 registers in use)
// And the update's loop (ColumnBlock<u8, 5, 2>): a block of 16 inputs (2 vectors) of a tile's 5 classes'
// sums, 10 accumulators, each row of the batch in turn (its 16 values times its 5 dlogits, broadcast),
// for 49 blocks (all 784 inputs) and both tiles. Its versions: 0 the multiply-adds alone, 1 + the
// dlogits broadcast from memory (10 KB, L1), 2 + the row's values, floats, 3 bytes widened (the
// recipe's); and other shapes: 4 tiles of 4, 4 and 2 classes by 3 vectors (768 of the inputs; 16
// registers in use), 5 tiles of 10 classes by 1 vector. Set each GFLOP/s against BM_ProbeFma's, in the same
// run. No lanes summed, no softmax, no step: the loops' own ceilings, not the passes'. x86-64 with AVX2 and
// FMA only (skipped elsewhere).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

#include "loop_ceiling.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SOFTREG_LOOP_CEILING_AVX2 1
#endif

namespace {

using namespace softreg::loop_ceiling;
constexpr int kTileClasses = 5, kSteps = kInputs / 8;
constexpr int kChunkRows = 16;
constexpr int kUpdateBlocks = kInputs / 16;  // 49 blocks of 2 vectors

#if SOFTREG_LOOP_CEILING_AVX2
#define SOFTREG_AVX2 __attribute__((target("avx2,fma")))

// LoopData with a chunk of widened rows for version 4.
struct ChunkedLoopData : LoopData {
  mutable Lines<float> chunk{kChunkRows * kInputs};
};

SOFTREG_AVX2 inline __m256 Widened(const std::uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// One tile (classes k0..k0+4) over the pairs of rows [first, last); version V; stores (version 4's
// first tile) or reads (its second) the widened rows at `chunk` when given.
template <int V, bool kStores, bool kReads>
SOFTREG_AVX2 __m256 TilePass(const ChunkedLoopData& data, int k0, int first, int last) {
  __m256 total = _mm256_setzero_ps();
  const float* W = data.W.data() + k0 * kInputs;
  float* const chunk = data.chunk.data();
  for (int r = first; r < last; r += 2) {
    __m256 acc0[kTileClasses], acc1[kTileClasses];
    for (int k = 0; k < kTileClasses; ++k)
      acc0[k] = acc1[k] = _mm256_setzero_ps();
    const std::uint8_t* b0 = data.bytes.data() + r * kInputs;
    const std::uint8_t* b1 = b0 + kInputs;
    const float* f0 = data.floats.data() + r * kInputs;
    const float* f1 = f0 + kInputs;
    float* c0 = chunk + (r - first) * kInputs;
    float* c1 = c0 + kInputs;
    __m256 x0 = _mm256_set1_ps(f0[0]), x1 = _mm256_set1_ps(f1[0]);  // read: nothing hoisted
    const __m256 fixed_w[2] = {_mm256_set1_ps(0.25f + static_cast<float>(k0)),
                               _mm256_set1_ps(0.75f + static_cast<float>(k0))};  // the tiles differ
    for (int s = 0; s < kSteps; ++s) {
      if constexpr (kReads) {
        x0 = _mm256_load_ps(c0 + 8 * s);
        x1 = _mm256_load_ps(c1 + 8 * s);
      } else if constexpr (V == 2) {
        x0 = _mm256_loadu_ps(f0 + 8 * s);
        x1 = _mm256_loadu_ps(f1 + 8 * s);
      } else if constexpr (V >= 3) {
        x0 = Widened(b0 + 8 * s);
        x1 = Widened(b1 + 8 * s);
        if constexpr (kStores) {
          _mm256_store_ps(c0 + 8 * s, x0);
          _mm256_store_ps(c1 + 8 * s, x1);
        }
      }
      for (int k = 0; k < kTileClasses; ++k) {
        __m256 w = V == 0 ? fixed_w[k % 2] : _mm256_loadu_ps(W + k * kInputs + 8 * s);
        asm("" : "+x"(w));  // one load for both rows, as KeepInRegister does in the kernel
        acc0[k] = _mm256_fmadd_ps(x0, w, acc0[k]);
        acc1[k] = _mm256_fmadd_ps(x1, w, acc1[k]);
      }
      if constexpr (V < 2) {  // values that change, so that nothing is hoisted out of the loop
        asm("" : "+x"(x0), "+x"(x1));
      }
    }
    for (int k = 0; k < kTileClasses; ++k)
      total = _mm256_add_ps(total, _mm256_add_ps(acc0[k], acc1[k]));
  }
  return total;
}

// Other shapes: a tile of KT classes by R rows of bytes widened, W's loads kept in a register for the R
// rows or folded into each multiply-add (kFold), over rows [0, rows).
template <int KT, int R, bool kFold>
SOFTREG_AVX2 __m256 GenericTile(const ChunkedLoopData& data, int k0, int rows) {
  __m256 total = _mm256_setzero_ps();
  const float* W = data.W.data() + k0 * kInputs;
  for (int r = 0; r + R <= rows; r += R) {
    __m256 acc[R][KT];
    for (int i = 0; i < R; ++i)
      for (int k = 0; k < KT; ++k)
        acc[i][k] = _mm256_setzero_ps();
    const std::uint8_t* b = data.bytes.data() + r * kInputs;
    for (int s = 0; s < kSteps; ++s) {
      __m256 x[R];
      for (int i = 0; i < R; ++i)
        x[i] = Widened(b + i * kInputs + 8 * s);
      for (int k = 0; k < KT; ++k) {
        __m256 w = _mm256_loadu_ps(W + k * kInputs + 8 * s);
        if constexpr (!kFold) asm("" : "+x"(w));
        for (int i = 0; i < R; ++i)
          acc[i][k] = _mm256_fmadd_ps(x[i], w, acc[i][k]);
      }
    }
    for (int i = 0; i < R; ++i)
      for (int k = 0; k < KT; ++k)
        total = _mm256_add_ps(total, acc[i][k]);
  }
  return total;
}

// One pass of version V over the batch: both tiles.
template <int V>
SOFTREG_AVX2 __m256 LoopPass(const ChunkedLoopData& data) {
  if constexpr (V == 5) {
    return _mm256_add_ps(GenericTile<5, 2, true>(data, 0, kRows), GenericTile<5, 2, true>(data, 5, kRows));
  } else if constexpr (V == 6) {
    return GenericTile<10, 1, false>(data, 0, kRows);
  } else if constexpr (V == 7) {
    return _mm256_add_ps(
        _mm256_add_ps(GenericTile<4, 3, false>(data, 0, 255), GenericTile<4, 3, false>(data, 4, 255)),
        GenericTile<2, 3, false>(data, 8, 255));
  } else if constexpr (V == 4) {
    __m256 total = _mm256_setzero_ps();
    for (int first = 0; first < kRows; first += kChunkRows) {
      total = _mm256_add_ps(total, TilePass<V, true, false>(data, 0, first, first + kChunkRows));
      total = _mm256_add_ps(total, TilePass<V, false, true>(data, kTileClasses, first, first + kChunkRows));
    }
    return total;
  } else {
    return _mm256_add_ps(TilePass<V, false, false>(data, 0, 0, kRows),
                         TilePass<V, false, false>(data, kTileClasses, 0, kRows));
  }
}

// One pass of the update loop's version V: both tiles, 49 blocks each.
template <int V>
SOFTREG_AVX2 __m256 UpdateLoopPass(const ChunkedLoopData& data) {
  __m256 total = _mm256_setzero_ps();
  for (int k0 = 0; k0 < kClasses; k0 += kTileClasses) {
    const float* g = data.dlogits.data() + k0;
    const __m256 fixed_g[2] = {_mm256_set1_ps(g[0]), _mm256_set1_ps(g[1])};  // read: nothing hoisted
    for (int block = 0; block < kUpdateBlocks; ++block) {
      __m256 acc0[kTileClasses], acc1[kTileClasses];
      for (int k = 0; k < kTileClasses; ++k)
        acc0[k] = acc1[k] = _mm256_setzero_ps();
      __m256 x0 = fixed_g[1], x1 = fixed_g[0];
      for (int r = 0; r < kRows; ++r) {
        const std::size_t at = static_cast<std::size_t>(r) * kInputs + 16 * static_cast<std::size_t>(block);
        if constexpr (V == 2) {
          x0 = _mm256_loadu_ps(data.floats.data() + at);
          x1 = _mm256_loadu_ps(data.floats.data() + at + 8);
        } else if constexpr (V == 3) {
          x0 = Widened(data.bytes.data() + at);
          x1 = Widened(data.bytes.data() + at + 8);
        } else {
          asm("" : "+x"(x0), "+x"(x1));  // values that change, so that nothing is hoisted out of the loop
        }
        for (int k = 0; k < kTileClasses; ++k) {
          __m256 gk = V == 0 ? fixed_g[k % 2] : _mm256_set1_ps(g[r * kClasses + k]);
          if constexpr (V == 0) asm("" : "+x"(gk));  // five distinct chains, not two the compiler merges
          acc0[k] = _mm256_fmadd_ps(gk, x0, acc0[k]);
          acc1[k] = _mm256_fmadd_ps(gk, x1, acc1[k]);
        }
      }
      for (int k = 0; k < kTileClasses; ++k)
        total = _mm256_add_ps(total, _mm256_add_ps(acc0[k], acc1[k]));
    }
  }
  return total;
}

// Other shapes of the update's loop: tiles of KT classes by NV vectors of inputs, bytes widened, over
// the first `blocks` blocks of 8 * NV inputs.
template <int KT, int NV>
SOFTREG_AVX2 __m256 UpdateTile(const ChunkedLoopData& data, int k0, int blocks) {
  __m256 total = _mm256_setzero_ps();
  const float* g = data.dlogits.data() + k0;
  for (int block = 0; block < blocks; ++block) {
    __m256 acc[NV][KT];
    for (int v = 0; v < NV; ++v)
      for (int k = 0; k < KT; ++k)
        acc[v][k] = _mm256_setzero_ps();
    for (int r = 0; r < kRows; ++r) {
      const std::uint8_t* at = data.bytes.data() + static_cast<std::size_t>(r) * kInputs + 8 * NV * block;
      __m256 x[NV];
      for (int v = 0; v < NV; ++v)
        x[v] = Widened(at + 8 * v);
      for (int k = 0; k < KT; ++k) {
        const __m256 gk = _mm256_set1_ps(g[r * kClasses + k]);
        for (int v = 0; v < NV; ++v)
          acc[v][k] = _mm256_fmadd_ps(gk, x[v], acc[v][k]);
      }
    }
    for (int v = 0; v < NV; ++v)
      for (int k = 0; k < KT; ++k)
        total = _mm256_add_ps(total, acc[v][k]);
  }
  return total;
}

template <bool kUpdate, int V>
SOFTREG_AVX2 void RunLoop(benchmark::State& state, const ChunkedLoopData& data) {
  for (auto _ : state) {
    benchmark::ClobberMemory();  // the data may have changed: every pass runs
    __m256 total;
    if constexpr (kUpdate && V == 4) {  // 32 blocks of 24 inputs: 768 of the 784
      total = _mm256_add_ps(_mm256_add_ps(UpdateTile<4, 3>(data, 0, 32), UpdateTile<4, 3>(data, 4, 32)),
                            UpdateTile<2, 3>(data, 8, 32));
    } else if constexpr (kUpdate && V == 5) {
      total = UpdateTile<10, 1>(data, 0, kInputs / 8);
    } else if constexpr (kUpdate) {
      total = UpdateLoopPass<V>(data);
    } else {
      total = LoopPass<V>(data);
    }
    benchmark::DoNotOptimize(total);
  }
}

bool HasAvx2(benchmark::State& state) {
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return true;
  state.SkipWithError("needs AVX2 and FMA");
  return false;
}

void BM_ForwardLoopCeilingAvx2(benchmark::State& state) {
  if (!HasAvx2(state)) return;
  static const ChunkedLoopData data;
  static constexpr std::array<const char*, 8> kNames = {
      "multiply-adds alone",
      "+ W's loads (L1)",
      "+ rows of floats (L3)",
      "rows of bytes widened by each tile (the recipe's loop)",
      "rows of bytes widened once a chunk",
      "W's loads folded (5 x 2)",
      "tiles of 10 x 1",
      "tiles of 4, 4, 2 x 3"};
  const auto version = std::min<std::int64_t>(state.range(0), 7);
  WithVersion<8>(version, [&]<int V>() { RunLoop<false, V>(state, data); });
  const double rows = version == 7 ? kRows - 1 : kRows;  // 85 blocks of 3 rows
  Report(state, 2.0 * rows * kInputs * kClasses, kNames[static_cast<std::size_t>(version)]);
}

void BM_UpdateLoopCeilingAvx2(benchmark::State& state) {
  if (!HasAvx2(state)) return;
  static const ChunkedLoopData data;
  static constexpr std::array<const char*, 6> kNames = {"multiply-adds alone",
                                                        "+ dlogits broadcast (L1)",
                                                        "+ rows of floats",
                                                        "rows of bytes widened (the recipe's loop)",
                                                        "tiles of 4, 4, 2 x 3 vectors",
                                                        "tiles of 10 x 1 vector"};
  const auto version = std::min<std::int64_t>(state.range(0), 5);
  WithVersion<6>(version, [&]<int V>() { RunLoop<true, V>(state, data); });
  const double inputs = version == 4 ? 768 : kInputs;
  Report(state, 2.0 * kRows * inputs * kClasses, kNames[static_cast<std::size_t>(version)]);
}
#else
void BM_ForwardLoopCeilingAvx2(benchmark::State& state) {
  state.SkipWithError("needs x86-64 with AVX2");
}
void BM_UpdateLoopCeilingAvx2(benchmark::State& state) {
  state.SkipWithError("needs x86-64 with AVX2");
}
#endif
BENCHMARK(BM_ForwardLoopCeilingAvx2)->DenseRange(0, 7)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_UpdateLoopCeilingAvx2)->DenseRange(0, 5)->Repetitions(5)->ReportAggregatesOnly(true);

}  // namespace
