// What this core gives the recipe's forward loop, step by step (issue 8: the reason a ratio to the floor
// is what it is, measured on each machine). The loop of DotRows<u8, 10, 2>: two rows by ten classes, 20
// accumulators, each step 16 inputs of both rows against the ten classes' 16 weights (20 multiply-adds),
// over all 784 inputs of the batch's 256 rows (128 pairs). Four versions add what the real loop does, one
// thing at a time:
//   0: the multiply-adds alone (rows and weights in registers)
//   1: + the ten weight vectors loaded each step (W, 31 KB, stays in L1)
//   2: + the two rows' 16 values loaded each step, rows of floats (800 KB: from L2)
//   3: the two rows as bytes widened to floats in registers (200 KB: from L2), the recipe's loop
// And the loop of the update (ColumnBlock<u8, 10, 2>): a block of 32 inputs (2 vectors) of the ten classes'
// sums, 20 accumulators, each row of the batch in turn: its 32 values times its ten dlogits, broadcast (20
// multiply-adds), for 24 blocks (768 inputs). Its versions: 0 the multiply-adds alone, 1 + the dlogits
// broadcast from memory (10 KB, L1), 2 + the row's values, floats from L2, 3 bytes widened (the recipe's).
// Set each GFLOP/s against BM_ProbeFma's, in the same run. No lanes summed, no softmax, no step: these
// are the loops' own ceilings, not the passes'. AVX-512 only (skipped elsewhere).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

#include "loop_ceiling.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SOFTREG_LOOP_CEILING 1
#endif

namespace {

using namespace softreg::loop_ceiling;
constexpr int kSteps = kInputs / 16;

#if SOFTREG_LOOP_CEILING
#define SOFTREG_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

// One pass of version V over all 128 pairs of rows; returns the accumulators' sum (kept from the optimiser).
template <int V>
SOFTREG_AVX512 __m512 LoopPass(const LoopData& data) {
  __m512 total = _mm512_setzero_ps();
  const float* W = data.W.data();
  for (int r = 0; r < kRows; r += 2) {
    __m512 acc0[kClasses], acc1[kClasses];
    for (int k = 0; k < kClasses; ++k)
      acc0[k] = acc1[k] = _mm512_setzero_ps();
    const std::uint8_t* b0 = data.bytes.data() + r * kInputs;
    const std::uint8_t* b1 = b0 + kInputs;
    const float* f0 = data.floats.data() + r * kInputs;
    const float* f1 = f0 + kInputs;
    __m512 x0 = _mm512_set1_ps(f0[0]), x1 = _mm512_set1_ps(f1[0]);  // read: nothing hoisted
    const __m512 fixed_w[2] = {_mm512_set1_ps(0.25f), _mm512_set1_ps(0.75f)};
    for (int s = 0; s < kSteps; ++s) {
      if constexpr (V == 2) {
        x0 = _mm512_loadu_ps(f0 + 16 * s);
        x1 = _mm512_loadu_ps(f1 + 16 * s);
      } else if constexpr (V == 3) {
        x0 = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + 16 * s))));
        x1 = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + 16 * s))));
      }
      for (int k = 0; k < kClasses; ++k) {
        __m512 w = V == 0 ? fixed_w[k % 2] : _mm512_loadu_ps(W + k * kInputs + 16 * s);
        asm("" : "+v"(w));  // one load for both rows, as KeepInRegister does in the kernel
        acc0[k] = _mm512_fmadd_ps(x0, w, acc0[k]);
        acc1[k] = _mm512_fmadd_ps(x1, w, acc1[k]);
      }
      if constexpr (V < 2) {  // values that change, so that nothing is hoisted out of the loop
        asm("" : "+v"(x0), "+v"(x1));
      }
    }
    for (int k = 0; k < kClasses; ++k)
      total = _mm512_add_ps(total, _mm512_add_ps(acc0[k], acc1[k]));
  }
  return total;
}

constexpr int kUpdateBlocks = kInputs / 32;  // 24 blocks of 2 vectors: 768 of the 784 inputs

// One pass of the update loop's version V over 24 blocks of inputs.
template <int V>
SOFTREG_AVX512 __m512 UpdateLoopPass(const LoopData& data) {
  __m512 total = _mm512_setzero_ps();
  const float* g = data.dlogits.data();
  const __m512 fixed_g[2] = {_mm512_set1_ps(g[0]), _mm512_set1_ps(g[1])};  // read: nothing hoisted
  for (int block = 0; block < kUpdateBlocks; ++block) {
    __m512 acc0[kClasses], acc1[kClasses];
    for (int k = 0; k < kClasses; ++k)
      acc0[k] = acc1[k] = _mm512_setzero_ps();
    __m512 x0 = fixed_g[1], x1 = fixed_g[0];
    for (int r = 0; r < kRows; ++r) {
      const std::size_t at = static_cast<std::size_t>(r) * kInputs + 32 * static_cast<std::size_t>(block);
      if constexpr (V == 2) {
        x0 = _mm512_loadu_ps(data.floats.data() + at);
        x1 = _mm512_loadu_ps(data.floats.data() + at + 16);
      } else if constexpr (V == 3) {
        x0 = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data.bytes.data() + at))));
        x1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(data.bytes.data() + at + 16))));
      } else {
        asm("" : "+v"(x0), "+v"(x1));  // values that change, so that nothing is hoisted out of the loop
      }
      for (int k = 0; k < kClasses; ++k) {
        __m512 gk = V == 0 ? fixed_g[k % 2] : _mm512_set1_ps(g[r * kClasses + k]);
        if constexpr (V == 0) asm("" : "+v"(gk));  // ten distinct chains, not two the compiler merges
        acc0[k] = _mm512_fmadd_ps(gk, x0, acc0[k]);
        acc1[k] = _mm512_fmadd_ps(gk, x1, acc1[k]);
      }
    }
    for (int k = 0; k < kClasses; ++k)
      total = _mm512_add_ps(total, _mm512_add_ps(acc0[k], acc1[k]));
  }
  return total;
}

// Version V of the forward loop (kUpdate false) or of the update loop, pass after pass.
template <bool kUpdate, int V>
SOFTREG_AVX512 void RunLoop(benchmark::State& state, const LoopData& data) {
  for (auto _ : state) {
    benchmark::ClobberMemory();  // the data may have changed: every pass runs
    __m512 total = kUpdate ? UpdateLoopPass<V>(data) : LoopPass<V>(data);
    benchmark::DoNotOptimize(total);
  }
}

template <bool kUpdate>
void LoopCeiling(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw")) {
    state.SkipWithError("needs AVX-512");
    return;
  }
  static const LoopData data;
  static constexpr std::array<const char*, 4> kNames = {
      "multiply-adds alone", kUpdate ? "+ dlogits broadcast (L1)" : "+ W's loads (L1)",
      "+ rows of floats (L2)", "rows of bytes widened (the recipe's loop)"};
  const auto version = state.range(0);
  WithVersion<4>(version, [&]<int V>() { RunLoop<kUpdate, V>(state, data); });
  const double inputs = kUpdate ? 32.0 * kUpdateBlocks : kInputs;
  Report(state, 2.0 * kRows * inputs * kClasses,
         kNames[static_cast<std::size_t>(std::min<std::int64_t>(version, 3))]);
}
void BM_ForwardLoopCeiling(benchmark::State& state) {
  LoopCeiling<false>(state);
}
void BM_UpdateLoopCeiling(benchmark::State& state) {
  LoopCeiling<true>(state);
}
#else
void BM_ForwardLoopCeiling(benchmark::State& state) {
  state.SkipWithError("needs x86-64 with AVX-512");
}
void BM_UpdateLoopCeiling(benchmark::State& state) {
  state.SkipWithError("needs x86-64 with AVX-512");
}
#endif
BENCHMARK(BM_ForwardLoopCeiling)->DenseRange(0, 3)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_UpdateLoopCeiling)->DenseRange(0, 3)->Repetitions(5)->ReportAggregatesOnly(true);

}  // namespace
