// Measures what this machine can do, for softreg bench's "distance to the floor": peak FMA throughput
// of one core with the best SIMD target, and read bandwidth for a data set's size.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/probe.cpp"
// clang-format off
#include <hwy/foreach_target.h>  // must come before highway.h: it re-includes this file per target
#include <hwy/highway.h>
// clang-format on

#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "softreg/bytes.hpp"
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

// The read probe's buffer sizes, and about how much it reads in all for a small one.
constexpr std::size_t kReadProbeMinBytes = std::size_t{1} << 20, kReadProbeMaxBytes = std::size_t{256} << 20;

std::size_t probe_read_size(std::size_t bytes) {
  return std::clamp(bytes, kReadProbeMinBytes, kReadProbeMaxBytes) / 64 * 64;
}

// The data's own size, not a buffer larger than every cache as before: a data set that fits in a cache is
// read from there epoch after epoch, and a floor that training beats is no floor. On an Intel Xeon guest
// whose L3 holds Fashion-MNIST's 47 MB, that size read at 29 GB/s on one core and 54 on two, where the
// old 256 MB buffer read at 12-16 (and 30 on two): `bench` gave (2, 784, u8) 0.95x its floor
// (BENCHMARKS.md). Whole 2 MB pieces in 2 MB pages where the kernel gives them, as the data's mapping
// is; the first pass places the buffer where such a data set would be read from.
double probe_read_bytes_per_second(std::size_t bytes, int threads) {
  const std::size_t size = probe_read_size(bytes);
  const std::vector<std::uint8_t> buffer = zeroed_bytes(size);
  const auto* data = reinterpret_cast<const float*>(buffer.data());
  const std::size_t count = size / sizeof(float);
  const std::size_t team = static_cast<std::size_t>(std::max(threads, 1));
  // At least 4 timed passes, and about kReadProbeMaxBytes read in all for a small buffer (a pass of 1 MB
  // takes tens of microseconds).
  const int passes = static_cast<int>(std::max<std::size_t>(4, kReadProbeMaxBytes / size));
  std::barrier meet(static_cast<std::ptrdiff_t>(team));
  std::vector<double> pass_seconds(static_cast<std::size_t>(passes));
  std::vector<float> sinks(team);
  const auto read_share = [&](std::size_t t) {
    const std::size_t begin = count * t / team, end = count * (t + 1) / team;
    float sum = 0;
    for (int pass = -1; pass < passes; ++pass) {  // pass -1 places the buffer
      meet.arrive_and_wait();
      const auto start = std::chrono::steady_clock::now();
      sum += HWY_DYNAMIC_DISPATCH(SumBuffer)(data + begin, end - begin);
      meet.arrive_and_wait();  // the pass ends when every share is read
      if (t == 0 && pass >= 0)
        pass_seconds[static_cast<std::size_t>(pass)] =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    sinks[t] = sum;  // keeps the sums from being optimised away
  };
  std::vector<std::thread> helpers;
  for (std::size_t t = 1; t < team; ++t)
    helpers.emplace_back(read_share, t);
  read_share(0);
  for (auto& helper : helpers)
    helper.join();
  volatile float sink = sinks[0];
  (void)sink;
  const double best = *std::min_element(pass_seconds.begin(), pass_seconds.end());
  return best > 0 ? static_cast<double>(size) / best : 0.0;
}

}  // namespace softreg
#endif  // HWY_ONCE
