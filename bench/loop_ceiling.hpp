// What bench_loop_ceiling.cpp (AVX-512) and bench_loop_ceiling_avx2.cpp (AVX2) share: the recipe's
// batch of rows, W and dlogits on 64-byte boundaries, and the step from a benchmark's version argument
// to the instantiation of its loop.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace softreg::loop_ceiling {

constexpr int kClasses = 10, kInputs = 784, kRows = 256;

// Everything on 64-byte boundaries, as the kernels keep W: a vector of W across two lines costs two reads
// of L1, and malloc's 16-byte alignment made the same loop up to a third slower from build to build.
template <class T>
struct Lines {
  explicit Lines(std::size_t n) : storage((n * sizeof(T) + 127) / 64 * 64 / sizeof(T)) {}
  T* data() {
    return storage.data() + (64 - reinterpret_cast<std::uintptr_t>(storage.data()) % 64) % 64 / sizeof(T);
  }
  const T* data() const { return const_cast<Lines*>(this)->data(); }
  std::vector<T> storage;
};

// The batch's 256 rows of 784 values (as bytes and as the same values in floats), W for 10 classes and
// a batch of dlogits, made up by a fixed generator.
struct LoopData {
  Lines<std::uint8_t> bytes{kRows * kInputs};
  Lines<float> floats{kRows * kInputs};
  Lines<float> W{kClasses * kInputs};
  Lines<float> dlogits{kRows * kClasses};
  LoopData() {
    std::uint32_t state = 12345;
    const auto next = [&] { return state = state * 1664525u + 1013904223u; };
    for (std::size_t i = 0; i < kRows * kInputs; ++i)
      floats.data()[i] = bytes.data()[i] = static_cast<std::uint8_t>(next() >> 24);
    for (std::size_t i = 0; i < kClasses * kInputs; ++i)
      W.data()[i] = static_cast<float>(next() >> 20) * 1e-7f;
    for (std::size_t i = 0; i < kRows * kClasses; ++i)
      dlogits.data()[i] = static_cast<float>(next() >> 20) * 1e-6f;
  }
};

// run.template operator()<V>() for V = version, 0 <= version < kVersions (larger: the last).
template <int kVersions, class Run>
void WithVersion(std::int64_t version, Run&& run) {
  [&]<int... V>(std::integer_sequence<int, V...>) {
    (void)((V == version || V == kVersions - 1 ? (run.template operator()<V>(), true) : false) || ...);
  }
  (std::make_integer_sequence<int, kVersions>{});
}

// The GFLOP/s of `flops` a pass, and the version's name.
inline void Report(benchmark::State& state, double flops, const char* name) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * flops / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(name);
}

}  // namespace softreg::loop_ceiling
