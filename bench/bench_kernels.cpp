// Google Benchmark cases for the hot kernels: the fused SIMD path against its naive Eigen twin, per
// batch size, per SIMD target and per thread count. Registered as quick CTest smoke runs; for real
// figures run build/bench/softreg_bench directly (see BENCHMARKS.md).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "softreg/kernels.hpp"
#include "softreg/optim.hpp"
#include "softreg/parallel.hpp"
#include "softreg/train.hpp"

namespace softreg {
namespace {

constexpr std::size_t kFlopsPerRow = 2 * 2 * 784 * 10;  // forward + backward multiply-adds

// A training set shaped like Fashion-MNIST (60,000 images of 28x28) with random pixels.
const Dataset& synthetic_train() {
  static const Dataset data = [] {
    Dataset d;
    d.count = 60000;
    d.height = d.width = 28;
    d.num_classes = 10;
    std::vector<std::uint8_t> pixels(d.count * 784);
    d.labels.resize(d.count);
    std::uint32_t state = 12345;
    for (auto& p : pixels)
      p = static_cast<std::uint8_t>((state = state * 1664525u + 1013904223u) >> 24);
    d.pixels = std::move(pixels);
    for (std::size_t i = 0; i < d.count; ++i)
      d.labels[i] = static_cast<Label>(i % 10);
    return d;
  }();
  return data;
}

std::string shape_label(std::size_t K, std::size_t D, ElementType element) {
  return std::to_string(K) + " classes, " + std::to_string(D) + " " + std::string(element_name(element));
}

std::vector<std::uint32_t> shuffled_rows(std::size_t n) {
  std::vector<std::uint32_t> rows(n);
  std::iota(rows.begin(), rows.end(), 0u);
  Rng rng(1);
  rng.shuffle(rows);
  return rows;
}

// `count` rows of synthetic data, and pointers to them as the kernels take a batch's rows: a benchmark
// that passes them again and again finds them in cache.
struct ResidentRows {
  Dataset data;
  std::vector<const std::uint8_t*> rows;
};
ResidentRows resident_rows(std::size_t count, std::size_t features, int classes, ElementType element,
                           std::uint32_t seed) {
  ResidentRows resident{synthetic_dataset(count, features, classes, element, seed), {}};
  for (std::size_t r = 0; r < count; ++r)
    resident.rows.push_back(resident.data.image(r));
  return resident;
}

// Dlogits for the update's benchmarks: small, of both signs, none zero.
std::vector<float> made_up_dlogits(std::size_t n) {
  std::vector<float> dlogits(n);
  for (std::size_t i = 0; i < n; ++i)
    dlogits[i] = static_cast<float>(i % 13) * 0.01f - 0.06f;
  return dlogits;
}

SoftmaxModel initial_model() {
  Rng rng(0);
  return SoftmaxModel::initialized(784, 10, 0.01, rng);
}

// Consecutive batches of shuffled rows and the fused kernels' buffers for them.
struct FusedBatches {
  const Dataset& data = synthetic_train();
  std::size_t batch;
  std::vector<std::uint32_t> rows = shuffled_rows(data.count);
  SoftmaxModel model = initial_model();
  std::vector<const std::uint8_t*> pixels;
  std::vector<Label> labels;
  std::vector<float> dlogits, loss;
  std::size_t offset = 0;

  bool resident = false;  // every batch the same rows: they stay in cache, memory is out of the picture

  explicit FusedBatches(std::size_t batch_size)
      : batch(batch_size),
        pixels(batch_size),
        labels(batch_size),
        dlogits(batch_size * 10, 0.01f),
        loss(batch_size) {}
  void next() {
    if (offset + batch > data.count || resident) offset = 0;
    for (std::size_t r = 0; r < batch; ++r) {
      pixels[r] = data.image(rows[offset + r]);
      labels[r] = data.labels[rows[offset + r]];
    }
    offset += batch;
  }
  std::int64_t forward() {
    return fast_forward_rows({pixels.data(), labels.data(), batch, 784, 10, ElementType::kU8, model.W.data(),
                              model.b.data(), 1.0f / 255, loss.data(), nullptr, dlogits.data()});
  }
  void update(float step) {
    fast_update_columns({pixels.data(), dlogits.data(), batch, 784, 10, ElementType::kU8, 0, 784, step,
                         1.0f / 255, model.W.data()});
  }
};

// One SGD step on a batch of shuffled rows with the fused kernels, one thread.
void BM_FusedStep(benchmark::State& state) {
  const auto B = static_cast<std::size_t>(state.range(0));
  FusedBatches batches(B);
  for (auto _ : state) {
    batches.next();
    benchmark::DoNotOptimize(batches.forward());
    batches.update(0.1f / static_cast<float>(B));
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * B));
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * B * kFlopsPerRow) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(simd_target());
}
BENCHMARK(BM_FusedStep)->Arg(64)->Arg(256)->Arg(1024);

void BM_ProbeFma(benchmark::State& state) {
  double flops = 0;
  for (auto _ : state)
    flops = probe_fma_flops_per_second(0.05);
  state.counters["GFLOP/s"] = flops / 1e9;
  state.SetLabel(simd_target());
}
BENCHMARK(BM_ProbeFma)->Iterations(3);

// The two halves of the fused step on their own (batch 256, one thread), on shuffled rows of the whole
// training set or (second argument 1) on the same cache-resident rows every time. In training the
// update always follows the forward pass over the same rows, so its figure there is the resident one
// (it does not prefetch: on rows from memory it waits for each).
void BM_FusedHalves(benchmark::State& state) {
  const bool forward = state.range(0) == 0;
  FusedBatches batches(256);
  batches.resident = state.range(1) == 1;
  for (auto _ : state) {
    batches.next();
    if (forward)
      benchmark::DoNotOptimize(batches.forward());
    else
      batches.update(1e-9f);  // a tiny step: the weights stay as they are, the work is the same
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * 256));
  state.SetLabel(std::string(forward ? "forward" : "update") + (batches.resident ? ", resident rows" : ""));
}
BENCHMARK(BM_FusedHalves)->ArgsProduct({{0, 1}, {0, 1}});

// One thread's share of the two-thread recipe's backward pass: the sums of its half of a batch (128
// cache-resident rows, all 784 inputs, 10 classes; fast_gradient_columns), the kernel behind most of
// that phase. Second argument 1: asking memory for the next batch's 128 shuffled rows on the way, as
// training does. Floor: 2 * 128 * 784 * 10 flops at BM_ProbeFma's rate.
void BM_HalfSums(benchmark::State& state) {
  const bool ask_ahead = state.range(0) == 1;
  constexpr std::size_t kHalf = 128;
  FusedBatches batches(2 * kHalf);
  batches.resident = true;
  batches.next();  // the first half: this thread's rows
  std::vector<const std::uint8_t*> next(kHalf);
  const Dataset& data = batches.data;
  std::size_t offset = 0;
  std::vector<float> sums(10 * 784);
  for (auto _ : state) {
    for (std::size_t r = 0; r < kHalf; ++r)
      next[r] = data.image(batches.rows[(offset + r) % data.count]);
    offset += kHalf;
    fast_gradient_columns({batches.pixels.data(), batches.dlogits.data(), kHalf, 784, 10, ElementType::kU8, 0,
                           784, 1.0f, sums.data(), ask_ahead ? next.data() : nullptr, kHalf,
                           data.row_bytes()});
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kHalf));
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kHalf * 2 * 784 * 10) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(ask_ahead ? "asking for the next rows, " : "") + simd_target());
}
BENCHMARK(BM_HalfSums)->Arg(0)->Arg(1);

// The update's sums on 256 cache-resident rows of 784 bytes for K classes (fast_gradient_columns),
// each dlogit broadcast in a register (second argument 0) or folded into every multiply-add (1); the
// fast path times both once and takes the faster (UpdateBroadcasts). K = 10 is the recipe's one
// thread, 5 its two threads split by classes, 1 two classes as one margin. Below AVX-512 both are the
// same loop.
void BM_UpdateBroadcasts(benchmark::State& state) {
  const auto K = static_cast<std::size_t>(state.range(0));
  const bool folded = state.range(1) == 1;
  constexpr std::size_t kRows = 256, kD = 784;
  const auto [data, rows] = resident_rows(kRows, kD, 10, ElementType::kU8, /*seed=*/3);
  const std::vector<float> dlogits = made_up_dlogits(kRows * K);
  std::vector<float> sums(K * kD);
  set_update_broadcasts(folded ? UpdateBroadcasts::kFolded : UpdateBroadcasts::kInRegisters);
  for (auto _ : state) {
    fast_gradient_columns(
        {rows.data(), dlogits.data(), kRows, kD, K, ElementType::kU8, 0, kD, 1.0f / 255, sums.data()});
    benchmark::DoNotOptimize(sums.data());
  }
  set_update_broadcasts(UpdateBroadcasts::kMeasured);
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kRows * 2 * kD * K) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(folded ? "folded, " : "in registers, ") + simd_target());
}
BENCHMARK(BM_UpdateBroadcasts)->ArgNames({"K", "folded"})->ArgsProduct({{10, 5, 1}, {0, 1}});

// The forward pass alone on 256 cache-resident rows of any shape (classes, features, u8 or f32),
// rows already asked for (as in training, where the previous batch's passes asked for them): the
// dot products, their lane sums and the softmax, with memory out of the picture. Its floor is
// 2 * 256 * D * K flops at BM_ProbeFma's rate; the minimum of 15 repetitions is the figure to quote on
// a noisy machine.
void BM_ForwardPass(benchmark::State& state) {
  const auto K = static_cast<std::size_t>(state.range(0)), D = static_cast<std::size_t>(state.range(2));
  const ElementType element = state.range(1) == 0 ? ElementType::kU8 : ElementType::kF32;
  constexpr std::size_t kRows = 256;
  const auto [data, rows] = resident_rows(kRows, D, static_cast<int>(K), element, /*seed=*/7);
  Rng rng(0);
  const SoftmaxModel model = SoftmaxModel::initialized(static_cast<int>(D), static_cast<int>(K), 0.01, rng);
  std::vector<float> loss(kRows), dlogits(kRows * K);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        fast_forward_rows({rows.data(), data.labels.data(), kRows, D, K, element, model.W.data(),
                           model.b.data(), data.scale(), loss.data(), nullptr, dlogits.data(),
                           /*rows_requested=*/true}));
  }
  state.SetLabel(shape_label(K, D, element));
}
BENCHMARK(BM_ForwardPass)
    ->ArgNames({"K", "f32", "D"})
    ->Args({10, 0, 784})
    ->Args({2, 0, 784})
    ->Args({16, 1, 512})
    ->Args({100, 1, 512})
    ->Args({500, 1, 1024})  // a thread's half of a 1,000-class linear probe, split by classes
    ->Args({10, 0, 16})     // the per-row work alone: lane sums and softmax
    ->Args({10, 1, 20})     // a small table's rows: 16 inputs and the last 4 (SOFTREG_MASKED_TAILS)
    ->Args({1000, 1, 40})
    ->Repetitions(15)
    ->ComputeStatistics("min",
                        [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); })
    ->ReportAggregatesOnly(true);

// The update's sums (fast_gradient_columns) on BM_ForwardPass's 256 cache-resident rows of any shape,
// the inputs taken in chunks of about chunk_kb KB of the batch's values (set_update_chunk_bytes; 0: the
// default). Floor: 2 * 256 * D * K flops at BM_ProbeFma's rate.
void BM_UpdatePass(benchmark::State& state) {
  const auto K = static_cast<std::size_t>(state.range(0)), D = static_cast<std::size_t>(state.range(2));
  const ElementType element = state.range(1) == 0 ? ElementType::kU8 : ElementType::kF32;
  constexpr std::size_t kRows = 256;
  const auto [data, rows] = resident_rows(kRows, D, static_cast<int>(K), element, /*seed=*/7);
  const std::vector<float> dlogits = made_up_dlogits(kRows * K);
  std::vector<float> sums(K * D);
  set_update_chunk_bytes(static_cast<std::size_t>(state.range(3)) << 10);
  for (auto _ : state) {
    fast_gradient_columns(
        {rows.data(), dlogits.data(), kRows, D, K, element, 0, D, data.scale(), sums.data()});
    benchmark::DoNotOptimize(sums.data());
  }
  set_update_chunk_bytes(0);
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * kRows * 2 * D * K) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(shape_label(K, D, element));
}
BENCHMARK(BM_UpdatePass)
    ->ArgNames({"K", "f32", "D", "chunk_kb"})
    ->Args({10, 0, 784, 0})
    ->Args({100, 1, 512, 0})
    ->Args({10, 1, 20, 0})  // inputs past the last whole vector (SOFTREG_MASKED_TAILS)
    ->Args({1000, 1, 40, 0})
    // a thread's half of a 1,000-class linear probe split by classes, one chunk (the whole batch) or the
    // default
    ->ArgsProduct({{500}, {1}, {1024}, {1 << 20, 0}})
    ->Repetitions(9)
    ->ComputeStatistics("min",
                        [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); })
    ->ReportAggregatesOnly(true);

// Two classes taken as one margin (Trainer::trains_two_classes_as_one) on BM_ForwardPass's 256 resident
// rows of 784 bytes: the margin's weights W_1 - W_0, one dot product a row (fast_forward_rows with one
// class, logits only) and fast_binary_softmax. Set it beside BM_ForwardPass/K:2/f32:0/D:784, the same
// rows through the two-class softmax.
void BM_MarginForwardPass(benchmark::State& state) {
  constexpr std::size_t kRows = 256, D = 784;
  const auto [data, rows] = resident_rows(kRows, D, 2, ElementType::kU8, /*seed=*/7);
  Rng rng(0);
  const SoftmaxModel model = SoftmaxModel::initialized(static_cast<int>(D), 2, 0.01, rng);
  std::vector<float> margin_W(D), loss(kRows), dlogits(kRows);
  for (auto _ : state) {
    const float* W = model.W.data();
    for (std::size_t d = 0; d < D; ++d)
      margin_W[d] = W[D + d] - W[d];
    const float margin_b = model.b(1) - model.b(0);
    FastForwardArgs margins{rows.data(),
                            nullptr,
                            kRows,
                            D,
                            1,
                            ElementType::kU8,
                            margin_W.data(),
                            &margin_b,
                            data.scale(),
                            nullptr,
                            nullptr,
                            dlogits.data(),
                            /*rows_requested=*/true};
    margins.logits_only = true;
    fast_forward_rows(margins);
    benchmark::DoNotOptimize(fast_binary_softmax({data.labels.data(), kRows, dlogits.data(), loss.data()}));
  }
}
BENCHMARK(BM_MarginForwardPass)
    ->Repetitions(15)
    ->ComputeStatistics("min",
                        [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); })
    ->ReportAggregatesOnly(true);

// Both passes of two classes taken as one on one thread's batch of 256 resident rows of 784 bytes, in its
// two halves of 128 rows: apart (the margins, fast_binary_softmax, then fast_gradient_columns over the
// half) or in one pass over the rows (fast_margin_pass), the same bits. The step from the halves is left
// out: the same in both.
void BM_MarginPasses(benchmark::State& state) {
  const bool fused = state.range(0) == 1;
  constexpr std::size_t kRows = 256, kHalf = kRows / 2, D = 784;
  const auto [data, rows] = resident_rows(kRows, D, 2, ElementType::kU8, /*seed=*/7);
  Rng rng(0);
  const SoftmaxModel model = SoftmaxModel::initialized(static_cast<int>(D), 2, 0.01, rng);
  std::vector<float> margin_W(D), loss(kRows), dlogits(kRows), sums(2 * D);
  for (auto _ : state) {
    const float* W = model.W.data();
    for (std::size_t d = 0; d < D; ++d)
      margin_W[d] = W[D + d] - W[d];
    const float margin_b = model.b(1) - model.b(0);
    std::int64_t correct = 0;
    for (std::size_t half = 0; half < 2; ++half) {
      const std::size_t h0 = half * kHalf;
      if (fused) {
        correct += fast_margin_pass({rows.data() + h0, data.labels.data() + h0, kHalf, D, ElementType::kU8,
                                     margin_W.data(), margin_b, data.scale(), dlogits.data() + h0,
                                     loss.data() + h0, sums.data() + half * D, nullptr, 0,
                                     /*rows_requested=*/true});
        continue;
      }
      FastForwardArgs margins{
          rows.data() + h0,       nullptr,   kHalf,        D,       1,       ElementType::kU8,
          margin_W.data(),        &margin_b, data.scale(), nullptr, nullptr, dlogits.data() + h0,
          /*rows_requested=*/true};
      margins.logits_only = true;
      fast_forward_rows(margins);
      correct += fast_binary_softmax({data.labels.data() + h0, kHalf, dlogits.data() + h0, loss.data() + h0});
      fast_gradient_columns({rows.data() + h0, dlogits.data() + h0, kHalf, D, 1, ElementType::kU8, 0, D,
                             /*scale=*/1.0f, sums.data() + half * D});
    }
    benchmark::DoNotOptimize(correct);
    benchmark::ClobberMemory();
  }
  state.SetLabel(fused ? "one pass" : "apart");
}
BENCHMARK(BM_MarginPasses)
    ->ArgName("fused")
    ->Arg(0)
    ->Arg(1)
    ->Repetitions(9)
    ->ComputeStatistics("min",
                        [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); })
    ->ReportAggregatesOnly(true);

// --compute bf16's two passes on one thread's slice of a batch (128 cache-resident rows, as two threads
// split 256), against BM_ForwardPass's float32: the forward pass (pack the rows, logits; the float32
// softmax after it is the same in both modes and left out) or the update (pair the rows, sums and
// step). Floor: 2 * 128 * D * K flops at the bfloat16 probe's rate. Skipped where the CPU lacks BF16.
void BM_Bf16Pass(benchmark::State& state) {
  if (!fast_bf16_supported()) {
    state.SkipWithError("this CPU has no AVX-512 BF16");
    return;
  }
  const auto K = static_cast<std::size_t>(state.range(0)), D = static_cast<std::size_t>(state.range(2));
  const ElementType element = state.range(1) == 0 ? ElementType::kU8 : ElementType::kF32;
  const bool forward = state.range(3) == 0;
  constexpr std::size_t kRows = 128;
  const auto [data, rows] = resident_rows(kRows, D, static_cast<int>(K), element, /*seed=*/7);
  Rng rng(0);
  SoftmaxModel model = SoftmaxModel::initialized(static_cast<int>(D), static_cast<int>(K), 0.01, rng);
  const std::size_t stride = bf16_row_stride(D), width = bf16_pair_width(0, D), pairs = kRows / 2;
  std::vector<std::uint16_t> rows16(kRows * stride), W16(K * stride);
  std::vector<std::uint32_t> row_pairs(pairs * width), dlogit_pairs(pairs * K);
  std::vector<float> logits(kRows * K, 0.01f);
  fast_bf16_round_weights(model.W.data(), K, D, W16.data());
  fast_bf16_pack_dlogit_pairs(logits.data(), kRows, K, dlogit_pairs.data());
  for (auto _ : state) {
    if (forward) {
      fast_bf16_pack_rows(rows.data(), kRows, D, element, rows16.data(), /*rows_requested=*/true);
      fast_bf16_logits(
          {rows16.data(), kRows, stride, K, W16.data(), model.b.data(), data.scale(), logits.data()});
    } else {
      fast_bf16_pack_row_pairs(rows.data(), kRows, element, 0, D, row_pairs.data());
      fast_bf16_update_columns({row_pairs.data(), dlogit_pairs.data(), pairs, D, K, 0, D,
                                /*step=*/1e-9f, data.scale(), model.W.data(), W16.data(), stride});
    }
    benchmark::DoNotOptimize(logits.data());
    benchmark::ClobberMemory();
  }
  state.SetLabel(shape_label(K, D, element) + (forward ? ", forward" : ", update"));
}
BENCHMARK(BM_Bf16Pass)
    ->ArgNames({"K", "f32", "D", "update"})
    ->ArgsProduct({{10}, {0}, {784}, {0, 1}})
    ->ArgsProduct({{1000}, {1}, {1024}, {0, 1}})
    ->Repetitions(15)
    ->ComputeStatistics("min",
                        [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); })
    ->ReportAggregatesOnly(true);

// The same step with the naive twin: gather to floats, Eigen products, separate SGD update.
void BM_NaiveStep(benchmark::State& state) {
  const Dataset& data = synthetic_train();
  const auto B = static_cast<std::size_t>(state.range(0));
  const auto rows = shuffled_rows(data.count);
  SoftmaxModel model = initial_model();
  WeightMatrix dW(784, 10);
  BiasVector db(10);
  KernelWorkspace ws;
  std::size_t offset = 0;
  for (auto _ : state) {
    if (offset + B > data.count) offset = 0;
    dW.setZero();
    db.setZero();
    benchmark::DoNotOptimize(
        accumulate_gradient(data, std::span(rows).subspan(offset, B), model, dW, db, ws));
    sgd_step(model, dW, db, 0.1, B);
    offset += B;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * B));
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * B * kFlopsPerRow) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_NaiveStep)->Arg(64)->Arg(256)->Arg(1024);

// The fused step forced onto each SIMD target this CPU has (AVX-512, AVX2, SSE4, ...).
void BM_FusedStepPerTarget(benchmark::State& state) {
  const auto targets = simd_targets_available();
  const auto index = static_cast<std::size_t>(state.range(0));
  if (index >= targets.size()) {
    state.SkipWithError("target not available on this CPU");
    return;
  }
  restrict_simd_targets(targets[index]);
  FusedBatches batches(256);
  for (auto _ : state) {
    batches.next();
    benchmark::DoNotOptimize(batches.forward());
    batches.update(0.1f / 256);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * 256));
  state.SetLabel(simd_target());
  restrict_simd_targets("");
}
BENCHMARK(BM_FusedStepPerTarget)->DenseRange(0, 3);

// A whole epoch of the seed's recipe (batch 256) through Trainer, per kernel and thread count.
void BM_Epoch(benchmark::State& state) {
  const Dataset& data = synthetic_train();
  static const Dataset tiny_test = [] {
    Dataset d = synthetic_train();
    d.count = 256;
    d.pixels.resize(256 * 784);
    d.labels.resize(256);
    return d;
  }();
  TrainConfig config;
  config.threads = static_cast<int>(state.range(0));
  config.kernel = state.range(1) ? KernelChoice::kFast : KernelChoice::kNaive;
  Trainer trainer(config, data, tiny_test);
  for (auto _ : state)
    benchmark::DoNotOptimize(trainer.run_epoch());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * data.count));
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * data.count * kFlopsPerRow) / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(state.range(1) ? "fast" : "naive");
}
BENCHMARK(BM_Epoch)->ArgsProduct({{1, 2}, {0, 1}})->Unit(benchmark::kMillisecond);

// The OR of every 8 bytes of the rows order[r0..r1) (row_bytes a multiple of 16, as the synthetic set's
// 784), read with the widest loads the CPU has: a loop of 8-byte loads is bound by its own loads, not by
// memory (on Zen 5, 60,000 shuffled rows asked for first: 5.3 ms an epoch with 8-byte loads, 2.4-2.9 with
// 64-byte ones; BENCHMARKS.md), and the kernels read rows 16 bytes (bytes widened) or 64 (floats) at a time.
using RowBytesOr = std::uint64_t (*)(const std::uint8_t* base, std::size_t row_bytes,
                                     const std::uint32_t* order, std::size_t r0, std::size_t r1);
std::uint64_t or_rows_by_8(const std::uint8_t* base, std::size_t row_bytes, const std::uint32_t* order,
                           std::size_t r0, std::size_t r1) {
  std::uint64_t bits = 0;
  for (std::size_t r = r0; r < r1; ++r) {
    const std::uint8_t* row = base + order[r] * row_bytes;
    for (std::size_t offset = 0; offset + 8 <= row_bytes; offset += 8) {
      std::uint64_t word;
      std::memcpy(&word, row + offset, 8);
      bits |= word;
    }
  }
  return bits;
}
#if defined(__x86_64__)
__attribute__((target("avx512f"))) std::uint64_t or_rows_by_64(const std::uint8_t* base,
                                                               std::size_t row_bytes,
                                                               const std::uint32_t* order, std::size_t r0,
                                                               std::size_t r1) {
  __m512i bits = _mm512_setzero_si512();
  for (std::size_t r = r0; r < r1; ++r) {
    const std::uint8_t* row = base + order[r] * row_bytes;
    std::size_t offset = 0;
    for (; offset + 64 <= row_bytes; offset += 64)
      bits = _mm512_or_si512(bits, _mm512_loadu_si512(row + offset));
    for (; offset + 16 <= row_bytes; offset += 16)
      bits = _mm512_or_si512(
          bits, _mm512_zextsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + offset))));
  }
  alignas(64) std::uint64_t lanes[8];
  _mm512_store_si512(lanes, bits);
  return std::accumulate(lanes, lanes + 8, std::uint64_t{0}, std::bit_or<>());
}
__attribute__((target("avx2"))) std::uint64_t or_rows_by_32(const std::uint8_t* base, std::size_t row_bytes,
                                                            const std::uint32_t* order, std::size_t r0,
                                                            std::size_t r1) {
  __m256i bits = _mm256_setzero_si256();
  for (std::size_t r = r0; r < r1; ++r) {
    const std::uint8_t* row = base + order[r] * row_bytes;
    std::size_t offset = 0;
    for (; offset + 32 <= row_bytes; offset += 32)
      bits = _mm256_or_si256(bits, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + offset)));
    for (; offset + 16 <= row_bytes; offset += 16)
      bits = _mm256_or_si256(
          bits, _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + offset))));
  }
  const __m128i half = _mm_or_si128(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
  return static_cast<std::uint64_t>(_mm_cvtsi128_si64(half)) |
         static_cast<std::uint64_t>(_mm_extract_epi64(half, 1));
}
#endif
// The widest reader this CPU runs, and its load width in bytes.
std::pair<RowBytesOr, int> widest_row_reader() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) return {or_rows_by_64, 64};
  if (__builtin_cpu_supports("avx2")) return {or_rows_by_32, 32};
#endif
  return {or_rows_by_8, 8};
}

// What the shuffled rows cost to bring in, without any arithmetic: an epoch of the synthetic set's
// 60,000 rows of 784 bytes, batch by batch (256) in a shuffled order (one of four, in turn), each of the
// team's threads reading its slice of every batch as the forward pass does (no barriers). Args: whether
// each batch's rows are asked for first (a line at a time, hint T1, as fast_forward_rows does), and the
// threads. The floor `softreg bench` reports for a memory-bound shape uses sequential read bandwidth,
// which shuffled rows do not reach; this is the figure to set beside it (BENCHMARKS.md). The rows are
// read with the widest loads there are (widest_row_reader), 8-byte loads with a third arg of 1.
void BM_ShuffledRowGather(benchmark::State& state) {
  const Dataset& data = synthetic_train();
  static const std::vector<std::vector<std::uint32_t>> orders = [] {
    std::vector<std::vector<std::uint32_t>> o(4, shuffled_rows(synthetic_train().count));
    Rng rng(7);
    for (auto& order : o)
      rng.shuffle(order);  // each shuffled once more from the same start: four different orders
    return o;
  }();
  const bool ask_first = state.range(0) != 0;
  const auto threads = static_cast<std::size_t>(state.range(1));
  const std::pair<RowBytesOr, int> reader =
      state.range(2) != 0 ? std::pair<RowBytesOr, int>{or_rows_by_8, 8} : widest_row_reader();
  const RowBytesOr read_rows = reader.first;
  ThreadPool pool(static_cast<int>(threads));
  const std::size_t n = data.count, row_bytes = data.row_bytes(), batch = 256;
  std::vector<std::uint64_t> seen(threads * 8);  // a cache line per thread
  std::size_t epoch = 0;
  for (auto _ : state) {
    const std::vector<std::uint32_t>& order = orders[epoch++ % orders.size()];
    pool.run(threads, [&](std::size_t t) {
      std::uint64_t bits = 0;
      for (std::size_t begin = 0; begin < n; begin += batch) {
        const std::size_t count = std::min(batch, n - begin), slice = (count + threads - 1) / threads;
        const std::size_t r0 = begin + std::min(count, t * slice),
                          r1 = begin + std::min(count, (t + 1) * slice);
        if (ask_first) {
          for (std::size_t r = r0; r < r1; ++r) {
            const std::uint8_t* row = data.image(order[r]);
            for (std::size_t offset = 0; offset < row_bytes; offset += 64)
              __builtin_prefetch(row + offset, 0, 2);  // PrefetchCursor's lines, no more
          }
        }
        bits |= read_rows(data.image(0), row_bytes, order.data(), r0, r1);
      }
      seen[t * 8] |= bits;
    });
  }
  benchmark::DoNotOptimize(seen.data());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * row_bytes));
  state.SetLabel(std::string(ask_first ? "rows asked for first" : "rows read as they come") + ", " +
                 std::to_string(reader.second) + "-byte loads");
}
BENCHMARK(BM_ShuffledRowGather)
    ->ArgNames({"ask", "threads", "by8"})
    ->ArgsProduct({{0, 1}, {1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace softreg

BENCHMARK_MAIN();
