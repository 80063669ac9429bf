// Measures what this machine can do, for softreg bench's "distance to the floor": peak FMA throughput
// of one core with the best SIMD target, and memory read bandwidth.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/probe.cpp"
// clang-format off
#include <hwy/foreach_target.h>  // must come before highway.h: it re-includes this file per target
#include <hwy/highway.h>
// clang-format on

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "softreg/kernels.hpp"

HWY_BEFORE_NAMESPACE();
namespace softreg {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Twelve independent multiply-add chains: enough to cover the FMA latency on two pipes, so the loop
// runs at the FMA units' throughput. Returns floating-point operations (2 per lane per FMA).
double FmaLoop(std::int64_t iterations, float* sink) {
  const hn::ScalableTag<float> df;
  using V = decltype(hn::Zero(df));
  constexpr int kChains = 12;
  V acc[kChains];
  for (int c = 0; c < kChains; ++c)
    acc[c] = hn::Set(df, 0.001f * static_cast<float>(c));
  const V a = hn::Set(df, 0.999999f), b = hn::Set(df, 1e-7f);
  for (std::int64_t i = 0; i < iterations; ++i) {
    for (int c = 0; c < kChains; ++c)
      acc[c] = hn::MulAdd(acc[c], a, b);
  }
  V total = acc[0];
  for (int c = 1; c < kChains; ++c)
    total = hn::Add(total, acc[c]);
  *sink = hn::GetLane(hn::SumOfLanes(df, total));  // keeps the loop from being optimised away
  return 2.0 * kChains * static_cast<double>(hn::Lanes(df)) * static_cast<double>(iterations);
}

// Sums a buffer: read bandwidth.
float SumBuffer(const float* data, std::size_t count) {
  const hn::ScalableTag<float> df;
  const std::size_t lanes = hn::Lanes(df);
  auto s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
  std::size_t i = 0;
  for (; i + 4 * lanes <= count; i += 4 * lanes) {
    s0 = hn::Add(s0, hn::LoadU(df, data + i));
    s1 = hn::Add(s1, hn::LoadU(df, data + i + lanes));
    s2 = hn::Add(s2, hn::LoadU(df, data + i + 2 * lanes));
    s3 = hn::Add(s3, hn::LoadU(df, data + i + 3 * lanes));
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  for (; i < count; ++i)
    sum += data[i];
  return sum;
}

}  // namespace HWY_NAMESPACE
}  // namespace softreg
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace softreg {

namespace {

// A cache's size as the C library reports it (sysconf's _SC_LEVEL*_CACHE_SIZE), `unknown` where it
// cannot tell (0 or -1).
std::size_t reported_cache_bytes(int name, std::size_t unknown) {
  const long reported = ::sysconf(name);
  return reported > 0 ? static_cast<std::size_t>(reported) : unknown;
}

}  // namespace

std::size_t l1_data_cache_bytes() {
  static const std::size_t bytes = reported_cache_bytes(_SC_LEVEL1_DCACHE_SIZE, std::size_t{32} << 10);
  return bytes;
}

std::size_t l2_cache_bytes() {
  static const std::size_t bytes = reported_cache_bytes(_SC_LEVEL2_CACHE_SIZE, std::size_t{256} << 10);
  return bytes;
}

HWY_EXPORT(FmaLoop);
HWY_EXPORT(SumBuffer);

double probe_fma_flops_per_second(double seconds) {
  float sink = 0;
  HWY_DYNAMIC_DISPATCH(FmaLoop)(1000, &sink);  // warm up: let the core reach its SIMD clock
  double best = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    const auto start = std::chrono::steady_clock::now();
    const double flops = HWY_DYNAMIC_DISPATCH(FmaLoop)(200000, &sink);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (elapsed > 0) best = std::max(best, flops / elapsed);
  }
  return best;
}

// The buffer is four times the L3, so that no pass finds the previous pass's lines there, and 64-256
// MB. Touching it first is most of what the probe costs where a page fault costs about 10 us: 0.6 s for
// 256 MB on a Zen 5 guest whose 32 MB L3 asks for 128 MB (0.3 s), which read at the same speed within
// the noise (BENCHMARKS.md).
double probe_read_bytes_per_second() {
  const std::size_t bytes = std::clamp(4 * reported_cache_bytes(_SC_LEVEL3_CACHE_SIZE, 0),
                                       std::size_t{64} << 20, std::size_t{256} << 20);
  std::vector<float> buffer(bytes / sizeof(float), 1.0f);
  volatile float sink = HWY_DYNAMIC_DISPATCH(SumBuffer)(buffer.data(), buffer.size());  // first touch
  double best = 0;
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto start = std::chrono::steady_clock::now();
    sink = HWY_DYNAMIC_DISPATCH(SumBuffer)(buffer.data(), buffer.size());
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (elapsed > 0) best = std::max(best, static_cast<double>(bytes) / elapsed);
  }
  (void)sink;
  return best;
}

}  // namespace softreg
#endif  // HWY_ONCE
