// The fused SIMD kernels against their naive twins (loss_and_grad in double precision, the Eigen
// training path), on every instruction set this CPU has, and the fast trainer's determinism.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>

#include "softreg/error.hpp"
#include "softreg/kernels.hpp"
#include "softreg/loss.hpp"
#include "softreg/metrics.hpp"
#include "softreg/train.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

// A batch of n rows of side x side values with K classes, as bytes or as float32 features.
struct Batch {
  int K;
  Dataset data;
  SoftmaxModel model;
  std::vector<std::uint32_t> rows;
  std::vector<const std::uint8_t*> pixels;
  std::vector<Label> labels;

  Batch(std::size_t side, std::size_t n, double init_std, std::uint32_t seed, int classes = 10,
        ElementType element = ElementType::kU8)
      : K(classes), data(test::random_dataset(n + 50, side, side, classes, seed)) {
    if (element == ElementType::kF32) data = test::as_float_features(data);
    Rng rng(seed);
    model = SoftmaxModel::initialized(static_cast<int>(side * side), K, init_std, rng);
    for (int k = 0; k < K; ++k)
      model.b(k) = 0.05f * static_cast<float>(k % 9 - 4);
    for (std::size_t i = 0; i < n; ++i)
      rows.push_back(static_cast<std::uint32_t>((i * 37 + 11) % data.count));
    for (auto r : rows) {
      pixels.push_back(data.image(r));
      labels.push_back(data.labels[r]);
    }
  }
  // The dlogits of the fast forward pass.
  std::vector<float> dlogits() const {
    const std::size_t n = rows.size(), D = data.features(), k = static_cast<std::size_t>(K);
    std::vector<float> loss(n), out(n * k);
    fast_forward_rows({pixels.data(), labels.data(), n, D, k, data.element, model.W.data(), model.b.data(),
                       data.scale(), loss.data(), nullptr, out.data()});
    return out;
  }
  // W after fast_update_columns (a step of 0.1 / n, the sums in two halves from second_half when it is
  // not 0), then dW from fast_gradient_columns: what every form of the update must give bit for bit.
  std::vector<float> stepped_weights_then_sums(const std::vector<float>& dlogits,
                                               std::size_t second_half) const {
    const std::size_t n = rows.size(), D = data.features(), k = static_cast<std::size_t>(K);
    std::vector<float> W(model.W.data(), model.W.data() + k * D), dW(k * D);
    FastUpdateArgs update{
        pixels.data(), dlogits.data(), n, D, k, data.element, 0, D, 0.1f / static_cast<float>(n),
        data.scale(),  W.data()};
    update.second_half = second_half;
    fast_update_columns(update);
    fast_gradient_columns(
        {pixels.data(), dlogits.data(), n, D, k, data.element, 0, D, data.scale(), dW.data()});
    W.insert(W.end(), dW.begin(), dW.end());
    return W;
  }
  LossAndGrad<double> reference() const {
    RowMatrix<double> X(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(data.features()));
    for (std::size_t i = 0; i < rows.size(); ++i)
      for (std::size_t d = 0; d < data.features(); ++d)
        X(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(d)) = data.value(rows[i], d);
    return loss_and_grad(X, ColMatrix<double>(model.W.cast<double>()), Vector<double>(model.b.cast<double>()),
                         labels);
  }
};

// Runs the fused forward and update on the batch and checks both against the double-precision math.
void expect_fast_matches_reference(const Batch& batch, const std::string& where) {
  const std::size_t n = batch.rows.size(), D = batch.data.features(), K = static_cast<std::size_t>(batch.K);
  const LossAndGrad<double> ref = batch.reference();
  std::vector<float> loss(n), dlogits(n * K);
  std::vector<Label> predictions(n);
  const ElementType element = batch.data.element;
  const float scale = batch.data.scale();
  const std::int64_t correct =
      fast_forward_rows({batch.pixels.data(), batch.labels.data(), n, D, K, element, batch.model.W.data(),
                         batch.model.b.data(), scale, loss.data(), predictions.data(), dlogits.data()});
  // Float32 sums of D products of O(0.1) values: relative error ~1e-6 in the logits; 2e-5 leaves room.
  EXPECT_NEAR(std::accumulate(loss.begin(), loss.end(), 0.0), ref.loss_sum, 2e-5 * ref.loss_sum) << where;
  EXPECT_EQ(correct, ref.correct) << where;

  // dlogits reproduce the reference gradient: db = column sums.
  for (std::size_t k = 0; k < K; ++k) {
    double db = 0;
    for (std::size_t r = 0; r < n; ++r)
      db += dlogits[r * K + k];
    EXPECT_NEAR(db, ref.db(static_cast<Eigen::Index>(k)), 2e-5 * static_cast<double>(n))
        << where << " class " << k;
  }
  // The fused update, split into two input ranges as two threads would: W - step * dW.
  SoftmaxModel updated = batch.model;
  const float step = 0.1f / static_cast<float>(n);
  const std::size_t split = D / 2 / 16 * 16;
  for (auto [d0, d1] : {std::pair<std::size_t, std::size_t>{0, split}, {split, D}}) {
    fast_update_columns(
        {batch.pixels.data(), dlogits.data(), n, D, K, element, d0, d1, step, scale, updated.W.data()});
  }
  const ColMatrix<double> expected = batch.model.W.cast<double>() - static_cast<double>(step) * ref.dW;
  EXPECT_LT((updated.W.cast<double>() - expected).cwiseAbs().maxCoeff(), 1e-6) << where;
  // Asking memory for other rows on the way (the trainer's next batch) changes no bit of the update,
  // whether the pass is long enough to ask for them all as it goes or has to finish the job after.
  for (std::size_t ahead : {std::size_t{3}, n}) {
    SoftmaxModel prefetching = batch.model;
    const std::vector<const std::uint8_t*> next(batch.pixels.rbegin(), batch.pixels.rbegin() + ahead);
    for (auto [d0, d1] : {std::pair<std::size_t, std::size_t>{0, split}, {split, D}}) {
      fast_update_columns({batch.pixels.data(), dlogits.data(), n, D, K, element, d0, d1, step, scale,
                           prefetching.W.data(), next.data(), next.size(), batch.data.row_bytes()});
    }
    EXPECT_TRUE(prefetching.W == updated.W) << where << ", " << ahead << " rows asked for";
  }
  // Each sum taken as two halves of rows (the trainer's way for small models): in registers in one
  // pass, or as two threads do it, each half's sums apart and then the step from both, over two
  // ranges of inputs: the same bits. Also for one row, whose second half is empty.
  for (const std::size_t rows : {n, std::size_t{1}}) {
    const std::size_t second_half = (rows + 1) / 2;
    SoftmaxModel in_registers = batch.model, from_halves = batch.model;
    for (auto [d0, d1] : {std::pair<std::size_t, std::size_t>{0, split}, {split, D}}) {
      FastUpdateArgs args{batch.pixels.data(),  dlogits.data(), rows, D, K, element, d0, d1, step, scale,
                          in_registers.W.data()};
      args.second_half = second_half;
      fast_update_columns(args);
    }
    std::vector<float> first(K * D, -1.0f), second(K * D, -1.0f);
    fast_gradient_columns(
        {batch.pixels.data(), dlogits.data(), second_half, D, K, element, 0, D, 1.0f, first.data()});
    fast_gradient_columns({batch.pixels.data() + second_half, dlogits.data() + second_half * K,
                           rows - second_half, D, K, element, 0, D, 1.0f, second.data()});
    for (auto [d0, d1] : {std::pair<std::size_t, std::size_t>{0, split}, {split, D}})
      fast_step_from_halves({first.data(), second.data(), D, K, d0, d1, step, scale, from_halves.W.data()});
    EXPECT_TRUE(from_halves.W == in_registers.W) << where << ", halves of " << rows << " rows";
    if (rows == n) {
      EXPECT_LT((in_registers.W.cast<double>() - expected).cwiseAbs().maxCoeff(), 1e-6) << where;
      if (K > 1) {  // it stepped (one class has a zero gradient)
        EXPECT_FALSE(in_registers.W == batch.model.W) << where;
      }
    }
  }
  // The gradient alone, over three ranges: the same sums.
  WeightMatrix dW = WeightMatrix::Zero(batch.model.W.rows(), batch.model.W.cols());
  for (auto [d0, d1] : {std::pair<std::size_t, std::size_t>{0, 16}, {16, split}, {split, D}}) {
    fast_gradient_columns({batch.pixels.data(), dlogits.data(), n, D, K, element, d0, d1, scale, dW.data()});
  }
  EXPECT_LT((dW.cast<double>() - ref.dW).cwiseAbs().maxCoeff(), 2e-5 * static_cast<double>(n)) << where;
}

TEST(FastKernels, MatchNaiveMathOnEachSimdTarget) {
  const std::vector<std::string> targets = simd_targets_available();
  ASSERT_FALSE(targets.empty());
  const Batch mnist_shaped(/*side=*/28, /*n=*/77, /*init_std=*/0.05, /*seed=*/1);
  const Batch odd_width(/*side=*/5, /*n=*/9, /*init_std=*/0.3, /*seed=*/2);  // D = 25: vector tails
  for (const std::string& target : targets) {
    restrict_simd_targets(target);
    EXPECT_EQ(simd_target(), target);
    expect_fast_matches_reference(mnist_shaped, target + " 28x28");
    expect_fast_matches_reference(odd_width, target + " 5x5");
  }
  restrict_simd_targets("");
  EXPECT_EQ(simd_target(), targets.front());  // the best one again
  EXPECT_THROW(restrict_simd_targets("NOT-A-TARGET"), Error);
}

TEST(FastKernels, AnyClassCountAndFloatFeaturesOnEachSimdTarget) {
  // Tiles of 10 classes plus every partial tile width, bytes and floats, D with and without tails
  // (81 or 121: never a whole number of vectors). With 1,600 inputs a forward tile of 8 classes' W
  // (51 KB) does not fit in L1, and the 512-bit targets take 5 classes at a time instead.
  const std::pair<int, std::size_t> shapes[] = {{2, 11},  {3, 11},  {10, 11}, {17, 11},
                                                {17, 40}, {100, 9}, {1000, 9}};
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (const auto& [K, side] : shapes) {
      for (ElementType element : {ElementType::kU8, ElementType::kF32}) {
        const std::size_t n = K >= 1000 ? 13 : 37;
        const Batch batch(side, n, /*init_std=*/0.05, /*seed=*/static_cast<std::uint32_t>(K), K, element);
        expect_fast_matches_reference(batch, fmt::format("{} K={} {}", target, K, element_name(element)));
      }
    }
  }
  restrict_simd_targets("");
}

// Writable memory whose last byte is followed by a page that cannot be read: a read past it faults.
class GuardedBytes {
 public:
  explicit GuardedBytes(std::size_t size) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    mapped_ = (size + page - 1) / page * page + page;
    void* p = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw Error("mmap failed");
    base_ = static_cast<std::uint8_t*>(p);
    if (::mprotect(base_ + mapped_ - page, page, PROT_NONE) != 0) throw Error("mprotect failed");
    data_ = base_ + mapped_ - page - size;
  }
  ~GuardedBytes() { ::munmap(base_, mapped_); }
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;
  std::uint8_t* data() const { return data_; }

 private:
  std::uint8_t* base_ = nullptr;
  std::uint8_t* data_ = nullptr;
  std::size_t mapped_ = 0;
};

TEST(FastKernels, TheLastInputsReadAndWriteNothingPastTheRowsOrW) {
  // Rows, W and the gradient placed so that each ends where an unreadable page begins: the last
  // inputs of a row (D not a multiple of the vector width) are loaded under a mask on AVX-512, which
  // must touch no byte past them. The same calls on ordinary memory give the same bits.
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (ElementType element : {ElementType::kU8, ElementType::kF32, ElementType::kF64}) {
      for (std::size_t D : {1, 7, 21, 37}) {
        for (std::size_t K : {3, 10, 17}) {
          const std::string where = fmt::format("{} {} D={} K={}", target, element_name(element), D, K);
          const std::size_t n = 7, value_bytes = element == ElementType::kU8    ? 1
                                                 : element == ElementType::kF32 ? 4
                                                                                : 8;
          const std::size_t row_bytes = D * value_bytes;
          const float scale = element == ElementType::kU8 ? 1.0f / 255 : 1.0f;
          std::mt19937 random(static_cast<std::uint32_t>(D * 100 + K));
          std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
          std::vector<std::uint8_t> plain_rows(n * row_bytes);
          for (std::size_t i = 0; i < n * D; ++i) {
            const float v = uniform(random);
            if (element == ElementType::kU8) plain_rows[i] = static_cast<std::uint8_t>(random() % 256);
            if (element == ElementType::kF32) std::memcpy(plain_rows.data() + i * 4, &v, 4);
            if (element == ElementType::kF64) {
              const double d = v;
              std::memcpy(plain_rows.data() + i * 8, &d, 8);
            }
          }
          std::vector<float> plain_W(K * D), b(K);
          for (float& w : plain_W)
            w = 0.1f * uniform(random);
          for (float& v : b)
            v = 0.1f * uniform(random);
          std::vector<Label> labels(n);
          for (std::size_t r = 0; r < n; ++r)
            labels[r] = static_cast<Label>(r % K);

          const GuardedBytes guarded_rows(n * row_bytes), guarded_W(K * D * sizeof(float)),
              guarded_dW(K * D * sizeof(float));
          std::memcpy(guarded_rows.data(), plain_rows.data(), plain_rows.size());
          std::memcpy(guarded_W.data(), plain_W.data(), plain_W.size() * sizeof(float));
          std::vector<const std::uint8_t*> plain(n), at_edge(n);
          for (std::size_t r = 0; r < n; ++r) {
            plain[r] = plain_rows.data() + r * row_bytes;
            at_edge[r] = guarded_rows.data() + r * row_bytes;
          }
          auto* edge_W = reinterpret_cast<float*>(guarded_W.data());
          auto* edge_dW = reinterpret_cast<float*>(guarded_dW.data());

          std::vector<float> loss(n), dlogits(n * K), edge_loss(n), edge_dlogits(n * K);
          fast_forward_rows({plain.data(), labels.data(), n, D, K, element, plain_W.data(), b.data(), scale,
                             loss.data(), nullptr, dlogits.data()});
          fast_forward_rows({at_edge.data(), labels.data(), n, D, K, element, edge_W, b.data(), scale,
                             edge_loss.data(), nullptr, edge_dlogits.data()});
          EXPECT_EQ(edge_loss, loss) << where;
          ASSERT_EQ(edge_dlogits, dlogits) << where;

          std::vector<float> dW(K * D);
          fast_gradient_columns({plain.data(), dlogits.data(), n, D, K, element, 0, D, scale, dW.data()});
          fast_gradient_columns({at_edge.data(), dlogits.data(), n, D, K, element, 0, D, scale, edge_dW});
          EXPECT_TRUE(std::equal(dW.begin(), dW.end(), edge_dW)) << where;
          FastUpdateArgs step{plain.data(), dlogits.data(), n, D, K, element, 0, D, 0.5f,
                              scale,        plain_W.data()};
          fast_update_columns(step);
          step.rows = at_edge.data();
          step.W = edge_W;
          step.second_half = 0;
          fast_update_columns(step);
          EXPECT_TRUE(std::equal(plain_W.begin(), plain_W.end(), edge_W)) << where;
        }
      }
    }
  }
  restrict_simd_targets("");
}

TEST(FastKernels, CpusWithoutAvx512StillGetAVectorPath) {
  // On an AVX-512 machine, pretend it is an AVX2-only CPU: dispatch must pick AVX2, not a scalar path.
  const auto targets = simd_targets_available();
  if (std::find(targets.begin(), targets.end(), "AVX2") == targets.end())
    GTEST_SKIP() << "no AVX2 on this CPU";
  restrict_simd_targets("AVX2");
  EXPECT_EQ(simd_target(), "AVX2");
  expect_fast_matches_reference(Batch(28, 40, 0.05, 3), "AVX2 only");
  restrict_simd_targets("");
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// g++ says __SANITIZE_ADDRESS__, clang __has_feature(address_sanitizer).
#if defined(__SANITIZE_ADDRESS__)
#define SOFTREG_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOFTREG_TEST_UNDER_ASAN 1
#endif
#endif

TEST(FastKernels, TargetsOfferedAreExactlyThoseTheCpuAndOsSupport) {
  // softreg checks the CPU itself (src/kernels/simd_targets.cpp) instead of loading libhwy.so; the
  // compiler's runtime (libgcc or compiler-rt, which also asks the OS which registers it saves) is the
  // independent witness. Only the features both compilers can name are compared.
  const auto targets = simd_targets_available(), compiled = simd_targets_compiled();
  const auto offered = [&](const char* name) {
    return std::find(targets.begin(), targets.end(), name) != targets.end();
  };
  // A target that is not compiled in (the sanitizer build leaves SSSE3 and SSE4 out) cannot be offered;
  // the Release build compiles them all, so there every comparison below is made.
  const auto built = [&](const char* name) {
    return std::find(compiled.begin(), compiled.end(), name) != compiled.end();
  };
  const bool sse4 = __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse4.2") &&
                    __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("aes");
  const bool avx2 = sse4 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  const bool avx3 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512cd");
  EXPECT_EQ(offered("SSE4"), sse4 && built("SSE4"));
  EXPECT_EQ(offered("AVX2"), avx2 && built("AVX2"));
  EXPECT_EQ(offered("AVX3"), avx3 && built("AVX3"));
#if !defined(SOFTREG_TEST_UNDER_ASAN)
  EXPECT_TRUE(built("SSE4") && built("AVX2") &&
              built("AVX3"));  // only the instrumented builds leave some out
#endif
  // The portable fallback is always there: SCALAR, or EMU128 where Highway compiles that instead
  // (under the sanitizers).
  EXPECT_TRUE(offered("SCALAR") || offered("EMU128"));
  EXPECT_EQ(simd_target(), targets.front());
}
#endif

TEST(FastKernels, TheUpdatesBroadcastsFoldedOrInRegistersGiveTheSameBits) {
  // On 512-bit targets the update's multiply-adds take each dlogit from a shared broadcast register
  // or each from memory, whichever this CPU runs faster (timed once); the same instruction on the same
  // values, so W must come out the same bit for bit either way, for every tile width, the vector tails
  // and the sums in two halves.
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (int K : {1, 2, 5, 7, 10, 17}) {
      for (ElementType element : {ElementType::kU8, ElementType::kF32}) {
        for (std::size_t side : {11, 28}) {  // D = 121 (tails) or 784
          const Batch batch(side, /*n=*/41, /*init_std=*/0.05, /*seed=*/static_cast<std::uint32_t>(K + 7), K,
                            element);
          const std::size_t D = side * side;
          const std::vector<float> dlogits = batch.dlogits();
          const auto updated = [&](UpdateBroadcasts how, std::size_t second_half) {
            set_update_broadcasts(how);
            return batch.stepped_weights_then_sums(dlogits, second_half);
          };
          const std::string where = fmt::format("{} K={} D={} {}", target, K, D, element_name(element));
          for (std::size_t second_half : {std::size_t{0}, std::size_t{21}}) {
            const std::vector<float> folded = updated(UpdateBroadcasts::kFolded, second_half);
            EXPECT_EQ(folded, updated(UpdateBroadcasts::kInRegisters, second_half)) << where;
            EXPECT_EQ(folded, updated(UpdateBroadcasts::kMeasured, second_half)) << where;
            EXPECT_NE(folded, std::vector<float>(folded.size(), 0.0f)) << where;
          }
        }
      }
    }
    // What bench reports: a choice only where the instruction set has one.
    set_update_broadcasts(UpdateBroadcasts::kFolded);
    const bool wide = target.starts_with("AVX3");
    EXPECT_EQ(update_broadcasts(), wide ? "folded" : "") << target;
    set_update_broadcasts(UpdateBroadcasts::kInRegisters);
    EXPECT_EQ(update_broadcasts(), wide ? "in registers" : "") << target;
    set_update_broadcasts(UpdateBroadcasts::kMeasured);
    if (wide) {
      const std::string measured = update_broadcasts();
      EXPECT_TRUE(measured == "folded" || measured == "in registers") << target << ": " << measured;
    }
  }
  restrict_simd_targets("");
}

TEST(FastKernels, TheUpdateGivesTheSameBitsInAnyChunksOfInputs) {
  // With more than one tile of classes the update takes its inputs in chunks (set_update_chunk_bytes)
  // and passes every tile over a chunk before the next. Each (class, input) sum still runs over the
  // rows in order, so W and dW must come out the same bit for bit with one chunk, chunks of 64 inputs
  // (the least), chunks of 128 with a short last one and the default; for one tile too (no chunks),
  // the vector tails (D = 121, 841) and the sums in two halves, on every target.
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (int K : {3, 10, 11, 17, 100}) {
      for (ElementType element : {ElementType::kU8, ElementType::kF32}) {
        for (std::size_t side : {11, 29}) {
          const Batch batch(side, /*n=*/41, /*init_std=*/0.05, /*seed=*/static_cast<std::uint32_t>(K + 3), K,
                            element);
          const std::size_t n = batch.rows.size(), D = side * side;
          const std::size_t value_bytes = element == ElementType::kU8 ? 1 : 4;
          const std::vector<float> dlogits = batch.dlogits();
          const auto updated = [&](std::size_t chunk_inputs, std::size_t second_half) {
            set_update_chunk_bytes(chunk_inputs * n * value_bytes);
            std::vector<float> out = batch.stepped_weights_then_sums(dlogits, second_half);
            set_update_chunk_bytes(0);
            return out;
          };
          const std::string where = fmt::format("{} K={} D={} {}", target, K, D, element_name(element));
          for (std::size_t second_half : {std::size_t{0}, std::size_t{21}}) {
            const std::vector<float> whole = updated(/*chunk_inputs=*/1 << 20, second_half);
            EXPECT_EQ(whole, updated(64, second_half)) << where;
            EXPECT_EQ(whole, updated(128, second_half)) << where;
            EXPECT_EQ(whole, updated(0, second_half)) << where;  // 0: the default
            EXPECT_NE(whole, std::vector<float>(whole.size(), 0.0f)) << where;
          }
        }
      }
    }
  }
  restrict_simd_targets("");
}

TEST(FastKernels, ARowGivesTheSameBitsAloneAsInABatch) {
  // Rows are blocked (2 to 4 at a time, by class count), with 512-bit (256-bit) vectors the lane sums
  // of a block's accumulators come out of one shared tree, and the softmax of 16 (8) rows at a time
  // runs in columns (a row per lane): each row must still get the arithmetic of a row alone (the
  // scalar softmax), bit for bit. D = 64: whole vectors, the path without a tail; 37 rows: two groups
  // of 16 and 5 more, or four of 8 and 5 more.
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (int K : {1, 2, 3, 5, 8, 10, 16, 17, 32, 100, 1000}) {
      for (ElementType element : {ElementType::kU8, ElementType::kF32}) {
        const std::size_t n = 37, D = 64, k = static_cast<std::size_t>(K);
        const Batch batch(/*side=*/8, n, /*init_std=*/0.1, /*seed=*/static_cast<std::uint32_t>(K + 40), K,
                          element);
        const auto forward = [&](std::size_t first, std::size_t count, float* loss, Label* predictions,
                                 float* dlogits) {
          return fast_forward_rows({batch.pixels.data() + first, batch.labels.data() + first, count, D, k,
                                    element, batch.model.W.data(), batch.model.b.data(), batch.data.scale(),
                                    loss, predictions, dlogits});
        };
        std::vector<float> loss(n), dlogits(n * k), alone_loss(n), alone_dlogits(n * k), eval_loss(n);
        std::vector<Label> predictions(n), alone_predictions(n);
        const std::int64_t correct = forward(0, n, loss.data(), predictions.data(), dlogits.data());
        std::int64_t alone_correct = 0;
        for (std::size_t r = 0; r < n; ++r)
          alone_correct += forward(r, 1, &alone_loss[r], &alone_predictions[r], &alone_dlogits[r * k]);
        const std::string where = fmt::format("{} K={} {}", target, K, element_name(element));
        EXPECT_EQ(loss, alone_loss) << where;
        EXPECT_EQ(dlogits, alone_dlogits) << where;
        EXPECT_EQ(predictions, alone_predictions) << where;
        EXPECT_EQ(correct, alone_correct) << where;
        EXPECT_EQ(forward(0, n, eval_loss.data(), nullptr, nullptr), correct) << where;  // evaluation
        EXPECT_EQ(eval_loss, loss) << where;
        expect_fast_matches_reference(batch, where);
      }
    }
  }
  restrict_simd_targets("");
}

// Rows that would not fit in half of L2 go through the tiles of classes in chunks that do: a batch of
// more than two chunks' rows (1,024 floats a row) gives each row the bits of a row alone.
TEST(FastKernels, RowsBeyondHalfOfL2GoInChunksWithTheSameBits) {
  const std::size_t D = 1024, chunk = l2_cache_bytes() / 2 / (D * sizeof(float)), n = 2 * chunk + 5;
  for (int K : {3, 17}) {
    const std::size_t k = static_cast<std::size_t>(K);
    const Batch batch(/*side=*/32, n, /*init_std=*/0.1, /*seed=*/static_cast<std::uint32_t>(K + 60), K,
                      ElementType::kF32);
    ASSERT_EQ(batch.data.features(), D);
    const auto forward = [&](std::size_t first, std::size_t count, float* loss, float* dlogits) {
      return fast_forward_rows({batch.pixels.data() + first, batch.labels.data() + first, count, D, k,
                                ElementType::kF32, batch.model.W.data(), batch.model.b.data(), 1.0f, loss,
                                nullptr, dlogits});
    };
    std::vector<float> loss(n), dlogits(n * k), alone_loss(n), alone_dlogits(n * k);
    const std::int64_t correct = forward(0, n, loss.data(), dlogits.data());
    std::int64_t alone_correct = 0;
    for (std::size_t r = 0; r < n; ++r)
      alone_correct += forward(r, 1, &alone_loss[r], &alone_dlogits[r * k]);
    EXPECT_EQ(loss, alone_loss) << "K=" << K;
    EXPECT_EQ(dlogits, alone_dlogits) << "K=" << K;
    EXPECT_EQ(correct, alone_correct) << "K=" << K;
  }
}

// The losses and dlogits of `count` rows of `batch` from `first`, through the fast forward pass in one call.
std::pair<std::vector<float>, std::vector<float>> fast_loss_and_dlogits(const Batch& batch, std::size_t first,
                                                                        std::size_t count) {
  const std::size_t k = static_cast<std::size_t>(batch.K);
  std::vector<float> loss(count), dlogits(count * k);
  fast_forward_rows({batch.pixels.data() + first, batch.labels.data() + first, count, batch.data.features(),
                     k, batch.data.element, batch.model.W.data(), batch.model.b.data(), batch.data.scale(),
                     loss.data(), nullptr, dlogits.data()});
  return {loss, dlogits};
}

TEST(FastKernels, ANanOrInfiniteLogitLeavesTheRowNoFiniteLossAndNanDlogits) {
  // A non-finite loss is how a run that diverged is caught (Trainer::check_batch_loss), and the
  // reference's gradient carries a NaN on. One class's logit NaN (a weight gone NaN): the label's
  // shifted logit stays finite, so only the exp sum can carry the NaN to the loss and the dlogits, and
  // Highway's exp of a NaN is 0 and its log of a NaN is finite unless the kernels keep them NaN: the
  // loss must be NaN. One class's logit +inf: it is the row's max, its shifted logit inf - inf = NaN,
  // every other one -inf: the loss must not be finite. Every row, in a batch (rows in vectors, the rest
  // alone) and alone, every target.
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (const float logit :
         {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
      for (int K : {2, 3, 10, 17}) {
        const std::size_t n = 37, k = static_cast<std::size_t>(K);
        Batch batch(/*side=*/8, n, /*init_std=*/0.1, /*seed=*/static_cast<std::uint32_t>(K + 90), K);
        batch.model.b(1) = logit;
        const auto loss_as_expected = [&](float loss) {
          return std::isnan(logit) ? std::isnan(loss) : !std::isfinite(loss);
        };
        const auto [loss, dlogits] = fast_loss_and_dlogits(batch, 0, n);
        for (std::size_t r = 0; r < n; ++r) {
          const std::string where =
              fmt::format("{} logit {} K={} row {} label {}", target, logit, K, r, batch.labels[r]);
          EXPECT_TRUE(loss_as_expected(loss[r])) << where << ": " << loss[r];
          for (std::size_t c = 0; c < k; ++c)
            EXPECT_TRUE(std::isnan(dlogits[r * k + c]))
                << where << " class " << c << ": " << dlogits[r * k + c];
          EXPECT_TRUE(loss_as_expected(fast_loss_and_dlogits(batch, r, 1).first[0])) << where;
        }
      }
    }
  }
  restrict_simd_targets("");
}

TEST(FastKernels, LogitsOfSomeClassesAreThoseColumnsOfAllAndTheSoftmaxOfThemIsTheFusedOne) {
  // logits_only for the classes [k0, k1) (W + k0 * D, b + k0, model_classes K) gives those columns of the
  // logits of all classes bit for bit, which are the double-precision x . W_k * scale + b_k within float
  // rounding; the softmax of logits put together from two such calls (logits_given) is the fused forward
  // pass's, bit for bit: what two threads that each own half of the classes rely on
  // (train_epoch_split_classes).
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (int K : {2, 3, 10, 17, 40, 100}) {
      for (ElementType element : {ElementType::kU8, ElementType::kF32}) {
        const std::size_t n = 37, k = static_cast<std::size_t>(K);
        const Batch batch(/*side=*/11, n, /*init_std=*/0.1, /*seed=*/static_cast<std::uint32_t>(K + 70), K,
                          element);
        const std::size_t D = batch.data.features();
        const std::string where = fmt::format("{} K={} {}", target, K, element_name(element));
        const auto logits_of = [&](std::size_t k0, std::size_t k1) {
          std::vector<float> logits(n * (k1 - k0));
          FastForwardArgs args{batch.pixels.data(),
                               nullptr,
                               n,
                               D,
                               k1 - k0,
                               element,
                               batch.model.W.data() + k0 * D,
                               batch.model.b.data() + k0,
                               batch.data.scale(),
                               nullptr,
                               nullptr,
                               logits.data()};
          args.logits_only = true;
          args.model_classes = k;  // summed as for all the classes (many: input by input)
          EXPECT_EQ(fast_forward_rows(args), 0) << where;
          return logits;
        };
        const std::vector<float> all = logits_of(0, k);
        for (std::size_t r = 0; r < n; ++r) {
          for (std::size_t c = 0; c < k; ++c) {
            double sum = batch.model.b(static_cast<Eigen::Index>(c));
            for (std::size_t d = 0; d < D; ++d)
              sum += batch.data.value(batch.rows[r], d) *
                     static_cast<double>(
                         batch.model.W(static_cast<Eigen::Index>(d), static_cast<Eigen::Index>(c)));
            // Float32 sums of D = 121 products of O(0.1) values: about 1e-6 of their size.
            EXPECT_NEAR(all[r * k + c], sum, 1e-5 * (1 + std::abs(sum)))
                << where << " row " << r << " class " << c;
          }
        }
        const std::size_t split = (k + 1) / 2;
        const std::vector<float> first = logits_of(0, split), second = logits_of(split, k);
        std::vector<float> joined(n * k);
        for (std::size_t r = 0; r < n; ++r) {
          std::copy_n(first.data() + r * split, split, joined.data() + r * k);
          std::copy_n(second.data() + r * (k - split), k - split, joined.data() + r * k + split);
        }
        EXPECT_EQ(joined, all) << where;

        std::vector<float> loss(n), dlogits(n * k), given_loss(n);
        std::vector<Label> predictions(n), given_predictions(n);
        const std::int64_t correct = fast_forward_rows(
            {batch.pixels.data(), batch.labels.data(), n, D, k, element, batch.model.W.data(),
             batch.model.b.data(), batch.data.scale(), loss.data(), predictions.data(), dlogits.data()});
        FastForwardArgs given{batch.pixels.data(),
                              batch.labels.data(),
                              n,
                              D,
                              k,
                              element,
                              batch.model.W.data(),
                              batch.model.b.data(),
                              batch.data.scale(),
                              given_loss.data(),
                              given_predictions.data(),
                              joined.data()};
        given.logits_given = true;
        EXPECT_EQ(fast_forward_rows(given), correct) << where;
        EXPECT_EQ(given_loss, loss) << where;
        EXPECT_EQ(given_predictions, predictions) << where;
        EXPECT_EQ(joined, dlogits) << where;  // the logits became the dlogits in place
      }
    }
  }
  restrict_simd_targets("");
}

TEST(FastKernels, ExtremeLogitsStayFinite) {
  Batch batch(28, 16, 0.01, 4);
  batch.model.W *= 1e4f;  // logits of order +-1e4: the seed's exp would overflow
  std::vector<float> loss(16), dlogits(16 * 10);
  fast_forward_rows({batch.pixels.data(), batch.labels.data(), 16, 784, 10, ElementType::kU8,
                     batch.model.W.data(), batch.model.b.data(), 1.0f / 255, loss.data(), nullptr,
                     dlogits.data()});
  for (float l : loss)
    EXPECT_TRUE(std::isfinite(l) && l >= 0);
  for (float g : dlogits)
    EXPECT_TRUE(std::isfinite(g) && g >= -1 && g <= 1);
}

// The margin's softmax (fast_binary_softmax) against the two-class softmax in double precision and
// against the fused forward pass's of the logits (0, z): margins from 0 to where exp overflows and
// beyond, both labels, on every target. A margin that is not finite (weights gone infinite or NaN) must
// leave a NaN loss and dlogit, as an infinite logit does in the softmax, however well it separates: a
// run with weights of +-inf once trained on to losses of 0. A row's results do not depend on where a
// call begins or ends around it (two threads take a batch's rows in two calls).
TEST(FastKernels, TheMarginsSoftmaxIsTheTwoClassSoftmax) {
  std::vector<float> margins = {0.0f,  -0.0f,  1e-7f, -1e-7f, 1e-3f, -1e-3f, 0.5f,   -0.5f,   3.0f,  -3.0f,
                                17.0f, -17.0f, 88.0f, -88.0f, 89.0f, -89.0f, 200.0f, -200.0f, 1e30f, -1e30f};
  std::mt19937 random(7);
  std::normal_distribution<float> spread(0.0f, 6.0f);
  for (int i = 0; i < 40; ++i)
    margins.push_back(spread(random));
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  margins.insert(margins.end(), {inf, -inf, nan});
  std::vector<float> z;  // each margin with label 0 and with label 1
  std::vector<Label> labels;
  for (float m : margins) {
    for (Label y : {Label{0}, Label{1}}) {
      z.push_back(m);
      labels.push_back(y);
    }
  }
  const std::size_t n = z.size();
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    std::vector<float> dlogits = z, loss(n, -1.0f);
    const std::int64_t correct = fast_binary_softmax({labels.data(), n, dlogits.data(), loss.data()});
    // The fused forward pass on the logits (0, z): its loss and class 1's dlogit.
    std::vector<float> pairs(2 * n), pair_loss(n);
    for (std::size_t r = 0; r < n; ++r)
      pairs[2 * r + 1] = z[r];
    FastForwardArgs two_classes{nullptr, labels.data(),     n,       0,
                                2,       ElementType::kF32, nullptr, nullptr,
                                1.0f,    pair_loss.data(),  nullptr, pairs.data()};
    two_classes.logits_given = true;
    std::int64_t expected_correct = 0;
    for (std::size_t r = 0; r < n; ++r) {
      const std::string where = fmt::format("{} margin {} label {}", target, z[r], labels[r]);
      const double m = z[r], y = labels[r];
      if (!std::isfinite(m)) {
        EXPECT_TRUE(std::isnan(loss[r])) << where << ": " << loss[r];
        EXPECT_TRUE(std::isnan(dlogits[r])) << where << ": " << dlogits[r];
        // the prediction as the softmax's argmax: class 1 only above class 0
        expected_correct += std::isnan(m) ? labels[r] == 0 : (m > 0) == (y == 1);
        continue;
      }
      const double s = y == 1 ? -m : m;  // the loss is softplus(s)
      const double softplus = std::max(s, 0.0) + std::log1p(std::exp(-std::abs(s)));
      const double sigmoid = m >= 0 ? 1 / (1 + std::exp(-m)) : std::exp(m) / (1 + std::exp(m));
      EXPECT_NEAR(loss[r], softplus, 2e-7 * (1 + softplus)) << where;
      EXPECT_NEAR(dlogits[r], sigmoid - y, 2e-7) << where;
      expected_correct += (m > 0) == (y == 1);
    }
    EXPECT_EQ(correct, expected_correct) << target;
    EXPECT_EQ(fast_forward_rows(two_classes), correct) << target;
    for (std::size_t r = 0; r < n; ++r) {
      if (std::isnan(z[r]) || std::isinf(z[r])) continue;  // (0, inf): inf - inf in the softmax
      const std::string where = fmt::format("{} margin {} label {}", target, z[r], labels[r]);
      EXPECT_NEAR(loss[r], pair_loss[r], 1e-6 * (1 + pair_loss[r])) << where;
      EXPECT_NEAR(dlogits[r], pairs[2 * r + 1], 1e-6) << where;
      EXPECT_NEAR(-dlogits[r], pairs[2 * r], 1e-6) << where;
    }
    // Cut anywhere: the same bits as in one call.
    for (std::size_t cut = 1; cut < 40; cut += 3) {
      std::vector<float> cut_dlogits = z, cut_loss(n);
      const std::int64_t cut_correct =
          fast_binary_softmax({labels.data(), cut, cut_dlogits.data(), cut_loss.data()}) +
          fast_binary_softmax(
              {labels.data() + cut, n - cut, cut_dlogits.data() + cut, cut_loss.data() + cut});
      EXPECT_EQ(cut_correct, correct) << target << " cut " << cut;
      for (std::size_t r = 0; r < n; ++r) {
        EXPECT_TRUE(std::memcmp(&cut_dlogits[r], &dlogits[r], sizeof(float)) == 0)
            << target << " cut " << cut;
        EXPECT_TRUE(std::memcmp(&cut_loss[r], &loss[r], sizeof(float)) == 0) << target << " cut " << cut;
      }
    }
  }
  restrict_simd_targets("");
}

// The step from the halves' sums with a mirror: class 1's step as without it, and class 0's its
// opposite, so weights that start opposite stay exactly opposite; a mirror needs one class.
TEST(FastKernels, AMirrorTakesTheOppositeStep) {
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (const std::size_t D : {std::size_t{37}, std::size_t{784}}) {
      std::mt19937 random(static_cast<unsigned>(D));
      std::normal_distribution<float> normal;
      std::vector<float> first(D), second(D), W(D);
      for (std::size_t d = 0; d < D; ++d) {
        first[d] = normal(random);
        second[d] = normal(random);
        W[d] = 0.01f * normal(random);
      }
      std::vector<float> plain = W, stepped = W, mirror(D);
      for (std::size_t d = 0; d < D; ++d)
        mirror[d] = -W[d];
      const float step = 0.1f / 256, scale = 1.0f / 255;
      fast_step_from_halves({first.data(), second.data(), D, 1, 0, D, step, scale, plain.data()});
      for (auto [d0, d1] : {std::pair<std::size_t, std::size_t>{0, 16}, {16, D}}) {
        fast_step_from_halves(
            {first.data(), second.data(), D, 1, d0, d1, step, scale, stepped.data(), mirror.data()});
      }
      const std::string where = fmt::format("{} D={}", target, D);
      EXPECT_EQ(stepped, plain) << where;
      EXPECT_NE(stepped, W) << where;
      for (std::size_t d = 0; d < D; ++d)
        EXPECT_EQ(mirror[d], -stepped[d]) << where << " input " << d;
    }
  }
  restrict_simd_targets("");
  std::vector<float> sums(4), W(4), mirror(4);
  EXPECT_THROW(
      fast_step_from_halves({sums.data(), sums.data(), 2, 2, 0, 2, 0.1f, 1.0f, W.data(), mirror.data()}),
      Error);
}

// Both passes of two classes as one in a single pass over the rows (fast_margin_pass): the same bits as
// the margins (fast_forward_rows, one class, logits only), fast_binary_softmax and fast_gradient_columns
// (scale 1) over the same rows, for any number of rows and inputs, bytes, floats and doubles, on every
// target. Which rows it is told come next, and whether its first rows were asked for, change nothing;
// no rows leave sums of zero, as the gradient's columns do.
TEST(FastKernels, TheMarginPassIsTheMarginsSoftmaxAndSumsApart) {
  constexpr std::size_t kRows = 70;
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (ElementType element : {ElementType::kU8, ElementType::kF32, ElementType::kF64}) {
      for (std::size_t D : {1, 5, 8, 17, 40, 100, 784}) {
        const std::size_t row_bytes = D * element_size(element);
        std::mt19937 random(static_cast<unsigned>(D * 31 + row_bytes));
        std::normal_distribution<double> normal;
        std::uniform_int_distribution<int> byte(0, 255), label(0, 1);
        // Rows a few bytes apart, so that they start anywhere in a line.
        std::vector<std::uint8_t> storage(kRows * (row_bytes + 12));
        std::vector<const std::uint8_t*> rows(kRows);
        std::vector<Label> labels(kRows);
        for (std::size_t r = 0; r < kRows; ++r) {
          std::uint8_t* row = storage.data() + ((r * 37 + 5) % kRows) * (row_bytes + 12) + r % 3 * 4;
          for (std::size_t d = 0; d < D; ++d) {
            if (element == ElementType::kU8) {
              row[d] = static_cast<std::uint8_t>(byte(random));
            } else if (element == ElementType::kF32) {
              const auto value = static_cast<float>(normal(random));
              std::memcpy(row + d * sizeof(float), &value, sizeof(float));
            } else {
              const double value = normal(random);
              std::memcpy(row + d * sizeof(double), &value, sizeof(double));
            }
          }
          rows[r] = row;
          labels[r] = static_cast<Label>(label(random));
        }
        std::vector<float> W(D);
        for (float& w : W)
          w = static_cast<float>(0.05 * normal(random));
        const float b = 0.1f, scale = element == ElementType::kU8 ? 1.0f / 255 : 1.0f;
        for (std::size_t count : {0, 1, 3, 16, 17, 37, 70}) {
          const std::string where =
              fmt::format("{} {} D={} rows={}", target, element_name(element), D, count);
          std::vector<float> dlogits(count + 1), loss(count + 1), sums(D, -1.0f);
          FastForwardArgs margins{rows.data(), labels.data(),  count, D,     1,
                                  element,     W.data(),       &b,    scale, nullptr,
                                  nullptr,     dlogits.data(), true};
          margins.logits_only = true;
          fast_forward_rows(margins);
          const std::int64_t correct =
              fast_binary_softmax({labels.data(), count, dlogits.data(), loss.data()});
          fast_gradient_columns({rows.data(), dlogits.data(), count, D, 1, element, 0, D, 1.0f, sums.data()});
          for (int told = 0; told < 3; ++told) {  // nothing next, the rest next, and asked for first
            std::vector<float> pass_dlogits(count + 1), pass_loss(count + 1);
            std::vector<float> pass_sums(D, std::numeric_limits<float>::quiet_NaN());
            const std::int64_t pass_correct = fast_margin_pass(
                {rows.data(), labels.data(), count, D, element, W.data(), b, scale, pass_dlogits.data(),
                 pass_loss.data(), pass_sums.data(), told > 0 ? rows.data() + count : nullptr,
                 told > 0 ? kRows - count : 0, told == 2});
            EXPECT_EQ(pass_correct, correct) << where;
            EXPECT_EQ(std::memcmp(pass_dlogits.data(), dlogits.data(), count * sizeof(float)), 0) << where;
            EXPECT_EQ(std::memcmp(pass_loss.data(), loss.data(), count * sizeof(float)), 0) << where;
            EXPECT_EQ(std::memcmp(pass_sums.data(), sums.data(), D * sizeof(float)), 0) << where;
          }
          if (count == 0) {
            EXPECT_EQ(sums, std::vector<float>(D, 0.0f)) << where;
          } else {
            EXPECT_NE(sums, std::vector<float>(D, 0.0f)) << where;
          }
        }
      }
    }
  }
  restrict_simd_targets("");
}

// Ten classes of 28x28 images that a linear model can learn: each label brightens its own band of pixels.
Dataset learnable_28x28(std::size_t n, std::uint32_t seed) {
  return test::banded_dataset(n, /*side=*/28, /*classes=*/10, /*band=*/70, /*dim=*/3, /*bright=*/200, seed);
}

TEST(FastTrainer, AgreesWithTheNaivePath) {
  const Dataset train = learnable_28x28(3000, 5), test = learnable_28x28(500, 6);
  TrainConfig config;
  config.batch_size = 256;  // 3000 = 11 * 256 + 184: a partial last batch
  config.seed = 3;
  config.threads = 2;
  config.kernel = KernelChoice::kNaive;
  Trainer naive(config, train, test);
  config.kernel = KernelChoice::kFast;
  Trainer fast(config, train, test);
  for (int epoch = 0; epoch < 3; ++epoch) {
    const EpochMetrics a = naive.run_epoch().value(), b = fast.run_epoch().value();
    // Same math in another order and with 1/255 applied to sums instead of pixels: float rounding only.
    EXPECT_NEAR(a.train_loss, b.train_loss, 1e-5 * a.train_loss) << "epoch " << epoch;
    EXPECT_NEAR(a.test_loss, b.test_loss, 1e-5 * a.test_loss) << "epoch " << epoch;
    EXPECT_NEAR(a.train_acc, b.train_acc, 2.0 / 3000) << "epoch " << epoch;  // a near-tie may flip
    EXPECT_NEAR(a.test_acc, b.test_acc, 2.0 / 500) << "epoch " << epoch;
  }
  EXPECT_LT((naive.model().W - fast.model().W).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_LT((naive.model().b - fast.model().b).cwiseAbs().maxCoeff(), 1e-5f);
  ThreadPool pool(2);
  const Evaluation ea = evaluate(fast.model(), test, pool, KernelChoice::kNaive);
  const Evaluation eb = evaluate(fast.model(), test, pool, KernelChoice::kFast);
  EXPECT_NEAR(ea.loss, eb.loss, 1e-5 * ea.loss);
  EXPECT_EQ(ea.predictions, eb.predictions);
}

TEST(FastTrainer, WeightsDoNotDependOnTheThreadCount) {
  // Each thread owns whole inputs of W and sums every row in the same order, or (a model this small)
  // every sum is two halves of rows however many threads there are, so the result is the same bit for
  // bit with 1, 2 or 3 threads (the naive path only promises this per thread count).
  const Dataset train = learnable_28x28(1500, 7), test = learnable_28x28(200, 8);
  std::vector<SoftmaxModel> models;
  std::vector<double> losses;
  for (int threads : {1, 2, 3}) {
    TrainConfig config;
    config.batch_size = 100;
    config.seed = 4;
    config.threads = threads;
    Trainer trainer(config, train, test);
    trainer.run_epoch();
    losses.push_back(trainer.run_epoch()->train_loss);
    models.push_back(trainer.model());
  }
  for (std::size_t i = 1; i < models.size(); ++i) {
    EXPECT_EQ(models[i].W, models[0].W) << i;
    EXPECT_EQ(models[i].b, models[0].b) << i;
    EXPECT_EQ(losses[i], losses[0]) << i;
  }
}

TEST(FastTrainer, AnyShapeAgreesWithTheNaivePathAndIgnoresTheThreadCount) {
  // Many classes (several tiles and a partial one) on float features, and bytes with 2 classes: models
  // small enough for the sums in two halves of rows; and one too large for them (40 x 1000 floats,
  // 160 KB), whose threads each sum all rows for their own inputs. 100 classes of 300 inputs: one
  // thread's forward pass goes panel by panel (OuterLogits), two threads' tile by tile. 100 classes of
  // 1,030 floats: the update's copied chunks (CopyChunk), the last of 6 inputs, which a masked load ending
  // there reads.
  struct Shape {
    int K;
    ElementType element;
    std::size_t D;
  };
  for (auto [K, element, D] : {Shape{17, ElementType::kF32, 37}, Shape{2, ElementType::kU8, 37},
                               Shape{123, ElementType::kF32, 37}, Shape{40, ElementType::kF32, 1000},
                               Shape{100, ElementType::kF32, 300}, Shape{100, ElementType::kF32, 1030}}) {
    const Dataset train = synthetic_dataset(900, D, K, element, 1),
                  test = synthetic_dataset(200, D, K, element, 2);
    TrainConfig config;
    config.batch_size = 64;
    config.seed = 9;
    config.kernel = KernelChoice::kNaive;
    config.threads = 1;
    Trainer naive(config, train, test);
    config.kernel = KernelChoice::kFast;
    std::vector<SoftmaxModel> fast_models;
    std::vector<EpochMetrics> fast_metrics;
    for (int threads : {1, 2, 3}) {
      config.threads = threads;
      Trainer fast(config, train, test);
      fast.run_epoch();
      fast_metrics.push_back(fast.run_epoch().value());
      fast_models.push_back(fast.model());
    }
    naive.run_epoch();
    const EpochMetrics a = naive.run_epoch().value();
    const std::string where = fmt::format("K={} D={} {}", K, D, element_name(element));
    EXPECT_NEAR(a.train_loss, fast_metrics[0].train_loss, 1e-5 * a.train_loss + 1e-6) << where;
    EXPECT_NEAR(a.test_loss, fast_metrics[0].test_loss, 1e-5 * a.test_loss + 1e-6) << where;
    EXPECT_LT((naive.model().W - fast_models[0].W).cwiseAbs().maxCoeff(), 1e-5f) << where;
    for (std::size_t i = 1; i < fast_models.size(); ++i) {
      EXPECT_EQ(fast_models[i].W, fast_models[0].W) << where << " threads " << i + 1;
      EXPECT_EQ(fast_models[i].b, fast_models[0].b) << where << " threads " << i + 1;
    }
  }
}

// Two classes train as one (fast_binary_softmax): class 0 takes exactly the opposite of class 1's step,
// so weights and biases that start opposite stay opposite bit for bit, on any thread count (the two-class
// softmax's dlogits, p_0 - y_0 and p_1 - y_1, are opposite only up to rounding, and break it).
TEST(FastTrainer, TwoClassesTrainAsOneMargin) {
  for (ElementType element : {ElementType::kU8, ElementType::kF32}) {
    const Dataset train = synthetic_dataset(900, 50, 2, element, 3),
                  test = synthetic_dataset(100, 50, 2, element, 4);
    SoftmaxModel start;
    start.W = WeightMatrix(50, 2);
    start.b = BiasVector(2);
    Rng rng(6);
    const SoftmaxModel drawn = SoftmaxModel::initialized(50, 1, 0.05, rng);
    start.W.col(1) = drawn.W.col(0);
    start.W.col(0) = -drawn.W.col(0);
    start.b << -0.25f, 0.25f;
    for (int threads : {1, 2, 3}) {
      const std::string where = fmt::format("{} threads {}", element_name(element), threads);
      TrainConfig config;
      config.batch_size = 64;
      config.seed = 2;
      config.threads = threads;
      Trainer trainer(config, train, test);
      trainer.warm_start(start);
      for (int epoch = 0; epoch < 2; ++epoch) {
        const std::optional<EpochMetrics> metrics = trainer.run_epoch();
        ASSERT_TRUE(metrics.has_value()) << where;
        EXPECT_TRUE(metrics->two_classes_as_one) << where;
      }
      const SoftmaxModel& model = trainer.model();
      EXPECT_FALSE(model.W == start.W) << where;
      EXPECT_TRUE(model.W.col(0) == -model.W.col(1)) << where;
      EXPECT_EQ(model.b(0), -model.b(1)) << where;
      EXPECT_NE(model.b(1), 0.25f) << where;
    }
    // Not on the naive path, nor with an optimizer that needs the gradient (momentum).
    TrainConfig naive;
    naive.kernel = KernelChoice::kNaive;
    EXPECT_FALSE(Trainer(naive, train, test).run_epoch()->two_classes_as_one);
    TrainConfig momentum;
    momentum.optimizer = "momentum";
    EXPECT_FALSE(Trainer(momentum, train, test).run_epoch()->two_classes_as_one);
  }
}

// What one epoch under `config` throws as TrainingDiverged, or "no error".
std::string divergence_of(const TrainConfig& config, const Dataset& train, const Dataset& test) {
  Trainer trainer(config, train, test);
  try {
    trainer.run_epoch();
  } catch (const TrainingDiverged& e) {
    return e.what();
  }
  return "no error";
}

// Two threads and two classes (train_epoch_two_copies, each thread stepping its own copy of the model):
// the model after each batch as the callback sees it, a stop after some batches and the rest of the
// epoch under a warm-up and cosine schedule, and a run that diverges: as on one thread, bit for bit.
TEST(FastTrainer, TwoClassesOnTwoThreadsStopAndDivergeWhereOneThreadDoes) {
  const Dataset train = synthetic_dataset(1500, 60, 2, ElementType::kU8, 7),
                test = synthetic_dataset(200, 60, 2, ElementType::kU8, 8);
  const auto stopped = [&](int threads) {
    TrainConfig config;
    config.batch_size = 100;
    config.seed = 4;
    config.threads = threads;
    config.epochs = 2;
    config.schedule.kind = "cosine";
    config.schedule.warmup_epochs = 1;
    Trainer trainer(config, train, test);
    std::vector<SoftmaxModel> seen;  // the model as each batch's callback finds it
    EXPECT_FALSE(trainer.run_epoch([&](std::size_t, std::size_t) { seen.push_back(trainer.model()); },
                                   [&] { return seen.size() >= 3; }));
    const TrainerState state = trainer.state();
    EXPECT_EQ(state.batches_done, 3u) << threads;
    const EpochMetrics rest =
        trainer.run_epoch([&](std::size_t, std::size_t) { seen.push_back(trainer.model()); })
            .value();  // the rest of the epoch
    return std::tuple(seen, trainer.model(), rest.train_loss, rest.train_acc);
  };
  const auto [one_seen, one_end, one_loss, one_acc] = stopped(1);
  const auto [two_seen, two_end, two_loss, two_acc] = stopped(2);
  ASSERT_EQ(two_seen.size(), 15u);
  ASSERT_EQ(one_seen.size(), two_seen.size());
  for (std::size_t i = 0; i < one_seen.size(); ++i) {
    EXPECT_EQ(two_seen[i].W, one_seen[i].W) << "batch " << i + 1;
    EXPECT_EQ(two_seen[i].b, one_seen[i].b) << "batch " << i + 1;
  }
  EXPECT_FALSE(one_seen[1].W == one_seen[0].W);
  EXPECT_EQ(two_end.W, one_end.W);
  EXPECT_EQ(two_loss, one_loss);
  EXPECT_EQ(two_acc, one_acc);

  const auto diverged = [&](int threads) {
    TrainConfig config;
    config.lr = 1e6;
    config.threads = threads;
    return divergence_of(config, train, test);
  };
  const std::string message = diverged(1);
  EXPECT_NE(message.find("training diverged in epoch 1, batch"), std::string::npos) << message;
  EXPECT_EQ(diverged(2), message);
}

// The model and each epoch's metrics after two epochs of `config`.
std::pair<SoftmaxModel, std::vector<EpochMetrics>> two_epochs(const TrainConfig& config, const Dataset& train,
                                                              const Dataset& test) {
  Trainer trainer(config, train, test);
  std::vector<EpochMetrics> epochs;
  for (int epoch = 0; epoch < 2; ++epoch)
    epochs.push_back(trainer.run_epoch().value());
  return {trainer.model(), epochs};
}

// SOFTREG_SPLIT for the life of one object: which way two threads split a small model's batches.
class ForcedSplit : public test::ScopedEnv {
 public:
  explicit ForcedSplit(const char* split) : test::ScopedEnv("SOFTREG_SPLIT", split) {}
};

// Two threads that each own half of the classes compute every logit, dlogit and sum as one thread does
// (the sums as two halves of rows, or over all rows for a model of more than 128 KB): the same weights,
// bias and metrics bit for bit as one thread, and as two threads splitting the rows; auto (no
// SOFTREG_SPLIT) starts a small model split by classes from 10 classes, and from 8 (any model) when
// the round trip it measures is long (EpochWayChoice then tries the other way at the third epoch).
TEST(FastTrainer, SplittingByClassesGivesTheBitsOfOneThread) {
  struct Shape {
    int K;
    ElementType element;
    std::size_t D, batch;
  };
  // Partial last batches (900 = 14 * 64 + 4; 900 = 11 * 77 + 53) and odd batches (halves of unequal size);
  // K = 3 splits its classes 2 + 1, K = 7 4 + 3; batches of 899 leave a last batch of one row (its second
  // half empty). From 32 classes each thread takes the softmax of its half of the rows (K = 40). 12
  // classes of 3,000 floats (144 KB) take their sums over all rows, and 256 rows of 12 KB go to the
  // forward pass in chunks that fit in half of L2. 70 classes of floats are summed input by input, also
  // by a thread that computes 35 of them; with 300 inputs one thread's 64 rows (75 KB as floats, more
  // than L1) go panel by panel, two threads' 32 tile by tile (OuterLogits).
  for (const Shape& shape : {Shape{10, ElementType::kU8, 784, 256}, Shape{2, ElementType::kU8, 37, 64},
                             Shape{3, ElementType::kF32, 37, 77}, Shape{17, ElementType::kF32, 37, 64},
                             Shape{40, ElementType::kF32, 37, 64}, Shape{40, ElementType::kF32, 37, 899},
                             Shape{9, ElementType::kU8, 37, 899}, Shape{7, ElementType::kF32, 37, 64},
                             Shape{12, ElementType::kF32, 3000, 256}, Shape{70, ElementType::kF32, 37, 64},
                             Shape{70, ElementType::kF32, 300, 64}}) {
    const int K = shape.K;
    const ElementType element = shape.element;
    const std::size_t D = shape.D, batch = shape.batch;  // names the lambda below can capture
    const Dataset train = synthetic_dataset(900, D, K, element, 11),
                  test = synthetic_dataset(150, D, K, element, 12);
    const std::string where = fmt::format("K={} D={} {} batch {}", K, D, element_name(element), batch);
    const auto run = [&](int threads, const char* split) {
      const ForcedSplit forced(split);
      TrainConfig config;
      config.batch_size = batch;
      config.seed = 5;
      config.threads = threads;
      return two_epochs(config, train, test);
    };
    const auto [one_model, one] = run(1, nullptr);
    for (const char* split : {"classes", "rows", static_cast<const char*>(nullptr)}) {
      const auto [model, epochs] = run(2, split);
      const std::string how = where + " split " + (split ? split : "auto");
      EXPECT_EQ(model.W, one_model.W) << how;
      EXPECT_EQ(model.b, one_model.b) << how;
      for (std::size_t e = 0; e < epochs.size(); ++e) {
        EXPECT_EQ(epochs[e].train_loss, one[e].train_loss) << how << " epoch " << e;
        EXPECT_EQ(epochs[e].train_acc, one[e].train_acc) << how << " epoch " << e;
        EXPECT_EQ(epochs[e].test_loss, one[e].test_loss) << how << " epoch " << e;
        EXPECT_FALSE(one[e].split_by_classes);
        if (split) {
          // Two classes train as one margin, with one class's sums: never split by classes.
          EXPECT_EQ(epochs[e].split_by_classes, std::string(split) == "classes" && K != 2) << how;
          EXPECT_EQ(epochs[e].core_round_trip_seconds, 0.0) << how;  // forced: not measured
          EXPECT_FALSE(epochs[e].alone_after_stall) << how;          // forced: never alone
        } else if (epochs[e].alone_after_stall) {
          // a machine so busy that the team stalled and left the epoch, or its rest, to one thread
        } else if (K >= 10 && K * D * sizeof(float) <= 128 * 1024) {
          // auto splits 10 classes or more of a small model by classes, without measuring
          EXPECT_TRUE(epochs[e].split_by_classes) << how;
          EXPECT_EQ(epochs[e].core_round_trip_seconds, 0.0) << how;
        } else if (K >= 8) {
          // auto measures the round trip at the run's first epoch (8 or 9 classes, or a model too large
          // for the sums in halves): which way starts
          if (e == 0) {
            EXPECT_GT(epochs[e].core_round_trip_seconds, 0.0) << how;
          } else {
            EXPECT_EQ(epochs[e].core_round_trip_seconds, 0.0) << how;
          }
        } else {  // auto never splits fewer classes by classes (each thread would read every row for 1-3)
          EXPECT_FALSE(epochs[e].split_by_classes) << how;
          EXPECT_EQ(epochs[e].core_round_trip_seconds, 0.0) << how;
        }
      }
    }
  }
}

// Whether the backward passes ask for the next batch's rows only changes what memory is asked for
// when: forced either way or learned, on one thread, two split by rows (two copies of a small model, or
// a large one) and two split by classes, the weights and metrics are the same bit for bit. The
// learning alternates blocks of 16 batches until 7 pairs are timed: 15 batches an epoch here, so
// after 2 epochs it is still learning.
TEST(EpochWayChoice, KeepsTheWayWhoseTimedEpochWasFastest) {
  using enum EpochWay;
  EpochWayChoice only({kByRows});
  for (int epoch = 0; epoch < 5; ++epoch) {
    EXPECT_FALSE(only.learning());
    EXPECT_EQ(only.way(), kByRows);
    only.timed(epoch == 2 ? 0.001 : 1.0);
  }
  // Two ways: the first warms up (not compared) and is timed, then the second; the faster one stays.
  for (const double second : {0.5, 2.5}) {  // the second way faster, then slower, than the first's 2.0
    EpochWayChoice choice({kByClasses, kByRows});
    EXPECT_TRUE(choice.learning());
    EXPECT_EQ(choice.way(), kByClasses);
    choice.timed(0.001);  // a warm-up faster than everything: still not compared
    EXPECT_EQ(choice.way(), kByClasses);
    choice.timed(2.0);
    EXPECT_EQ(choice.way(), kByRows);
    EXPECT_TRUE(choice.learning());
    choice.timed(second);
    EXPECT_FALSE(choice.learning());
    for (int epoch = 0; epoch < 3; ++epoch) {
      EXPECT_EQ(choice.way(), second < 2.0 ? kByRows : kByClasses) << second;
      choice.timed(second < 2.0 ? 100.0 : 0.001);  // decided: later times change nothing
    }
  }
  // Three ways, each timed once in the order given; a tie keeps the earlier way.
  for (const auto& [times, fastest] :
       {std::pair{std::array{3.0, 2.0, 1.0}, kOneThread}, std::pair{std::array{1.0, 2.0, 3.0}, kByRows},
        std::pair{std::array{2.0, 1.0, 1.0}, kByClasses}}) {
    EpochWayChoice choice({kByRows, kByClasses, kOneThread});
    choice.timed(9.0);
    const std::array tried{kByRows, kByClasses, kOneThread};
    for (std::size_t i = 0; i < times.size(); ++i) {
      EXPECT_EQ(choice.way(), tried[i]);
      choice.timed(times[i]);
    }
    EXPECT_EQ(choice.way(), fastest) << times[0] << " " << times[1] << " " << times[2];
  }
}

// A team whose epoch stalled (its threads waited most of it for each other) trains alone, and tries the
// team again after 2, 4, 8, ... 16 epochs alone; the learning of ways goes on where it stood.
TEST(EpochWayChoice, AStalledTeamTrainsAloneAndTriesAgainLater) {
  using enum EpochWay;
  EpochWayChoice team({kByRows}, /*may_go_alone=*/true);
  team.timed(1.0, 0.45);     // waits, but less than half of the epoch
  team.timed(0.025, 0.019);  // most of an epoch too short to tell a stall from a meeting's waits
  EXPECT_EQ(team.way(), kByRows);
  EXPECT_FALSE(team.alone_after_stall());
  team.timed(1.0, 0.6);  // stalled
  EXPECT_TRUE(team.alone_after_stall());
  const auto alone_for = [](EpochWayChoice& choice, std::size_t epochs, double seconds) {
    for (std::size_t e = 0; e < epochs; ++e) {
      EXPECT_EQ(choice.way(), kOneThread) << e;
      choice.timed(seconds, 0);
    }
  };
  alone_for(team, 2, 0.3);
  EXPECT_EQ(team.way(), kByRows);  // the team's try
  team.timed(0.9, 0.8);            // stalled again: twice as long alone
  alone_for(team, 4, 0.3);
  team.timed(0.35, 0.01);  // no stall, but slower than alone: twice as long again
  alone_for(team, 8, 0.3);
  team.timed(0.2, 0.01);  // faster than alone: the team again
  EXPECT_FALSE(team.alone_after_stall());
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(team.way(), kByRows);
    team.timed(0.2, 0.01);
  }
  // Tries after at most 16 epochs alone.
  team.timed(1.0, 0.9);
  for (const std::size_t epochs : {2, 4, 8, 16, 16}) {
    alone_for(team, epochs, 0.3);
    EXPECT_EQ(team.way(), kByRows) << epochs;
    team.timed(1.0, 0.9);
  }
  // A team stopped part-way for a stall counts as stalled, whatever its waits over the whole epoch.
  EpochWayChoice stopped({kByRows}, /*may_go_alone=*/true);
  stopped.timed(1.0, 0.1, /*stopped_stalled=*/true);
  EXPECT_EQ(stopped.way(), kOneThread);
  // Where the team may not go alone, or trains alone already, nothing changes.
  EpochWayChoice kept({kByRows}, /*may_go_alone=*/false);
  kept.timed(1.0, 0.9);
  EXPECT_EQ(kept.way(), kByRows);
  // While learning: a stalled warm-up goes alone, and the team's try is the warm-up again; the ways
  // are then timed as without the stall.
  EpochWayChoice learning({kByClasses, kByRows}, /*may_go_alone=*/true);
  learning.timed(1.0, 0.9);
  alone_for(learning, 2, 0.3);
  EXPECT_EQ(learning.way(), kByClasses);
  learning.timed(0.1, 0.01);  // the warm-up
  EXPECT_FALSE(learning.alone_after_stall());
  EXPECT_EQ(learning.way(), kByClasses);
  learning.timed(0.2, 0.01);
  EXPECT_EQ(learning.way(), kByRows);
  learning.timed(0.1, 0.01);
  EXPECT_FALSE(learning.learning());
  EXPECT_EQ(learning.way(), kByRows);
}

// A team whose thread 0 keeps the other waiting (here: on_batch sleeps, as a thread off its CPU would)
// stops at a batch's close once the waits are most of the epoch so far, and one thread trains the rest
// of it and the next two epochs: the bits of one thread all along. SOFTREG_SOLO=no keeps the team.
TEST(FastTrainer, AStalledTeamLeavesTheEpochsRestToOneThread) {
  for (int K : {3, 10}) {  // by rows (two copies), and by classes first
    const Dataset train = synthetic_dataset(64 * 40, 200, K, ElementType::kU8, 41),
                  test = synthetic_dataset(100, 200, K, ElementType::kU8, 42);
    const auto run = [&](int threads, const char* solo, bool sleepy) {
      const test::ScopedEnv forced("SOFTREG_SOLO", solo);
      TrainConfig config;
      config.batch_size = 64;
      config.seed = 5;
      config.threads = threads;
      Trainer trainer(config, train, test);
      std::vector<EpochMetrics> epochs;
      for (int epoch = 0; epoch < 3; ++epoch) {
        const auto slow_books = [&](std::size_t, std::size_t) {
          if (sleepy && epoch == 0) std::this_thread::sleep_for(std::chrono::milliseconds(3));
        };
        epochs.push_back(trainer.run_epoch(slow_books).value());
      }
      return std::make_pair(trainer.model(), epochs);
    };
    const auto [one_model, one] = run(1, nullptr, false);
    const auto [model, epochs] = run(2, nullptr, true);
    EXPECT_EQ(model.W, one_model.W) << K;
    EXPECT_EQ(model.b, one_model.b) << K;
    for (std::size_t e = 0; e < epochs.size(); ++e) {
      EXPECT_EQ(epochs[e].train_loss, one[e].train_loss) << K << " epoch " << e;
      EXPECT_EQ(epochs[e].threads_used, 1) << K << " epoch " << e;
      EXPECT_TRUE(epochs[e].alone_after_stall) << K << " epoch " << e;
    }
    // The stalled epoch's waits stopped the team well before its end (40 batches of 3 ms).
    EXPECT_LT(epochs[0].barrier_wait_seconds, 0.06) << K;
    const auto [kept_model, kept] = run(2, "no", true);
    EXPECT_EQ(kept_model.W, one_model.W) << K;
    for (std::size_t e = 0; e < kept.size(); ++e) {
      EXPECT_EQ(kept[e].threads_used, 2) << K << " epoch " << e;
      EXPECT_FALSE(kept[e].alone_after_stall) << K << " epoch " << e;
    }
    EXPECT_GT(kept[0].barrier_wait_seconds, 0.03) << K;
  }
}

TEST(FastTrainer, OneThreadOfATeamGivesTheTeamsBits) {
  // Short rows, where a team of two may leave its epochs to one thread (EpochWayChoice): forced either
  // way, or learned over five epochs, the weights and every epoch's figures are one thread's bits.
  for (ElementType element : {ElementType::kU8, ElementType::kF32}) {
    for (int K : {2, 10, 40}) {
      const Dataset train = synthetic_dataset(700, 20, K, element, 31),
                    test = synthetic_dataset(90, 20, K, element, 32);
      const auto run = [&](int threads, const char* solo) {
        const test::ScopedEnv forced("SOFTREG_SOLO", solo);
        TrainConfig config;
        config.batch_size = 64;
        config.seed = 4;
        config.epochs = 5;
        config.threads = threads;
        Trainer trainer(config, train, test);
        std::vector<EpochMetrics> epochs;
        for (int epoch = 0; epoch < 5; ++epoch)
          epochs.push_back(trainer.run_epoch().value());
        return std::make_pair(trainer.model(), epochs);
      };
      const auto [one_model, one] = run(1, nullptr);
      for (const char* solo : {"yes", "no", static_cast<const char*>(nullptr)}) {
        const auto [model, epochs] = run(2, solo);
        const std::string how =
            fmt::format("{} K={} solo {}", element_name(element), K, solo ? solo : "learned");
        EXPECT_EQ(model.W, one_model.W) << how;
        EXPECT_EQ(model.b, one_model.b) << how;
        bool stalled = false;  // on a busy machine the learned team may have gone alone (EpochWayChoice)
        for (std::size_t e = 0; e < epochs.size(); ++e) {
          EXPECT_EQ(epochs[e].train_loss, one[e].train_loss) << how << " epoch " << e;
          EXPECT_EQ(epochs[e].test_loss, one[e].test_loss) << how << " epoch " << e;
          EXPECT_EQ(one[e].threads_used, 1);
          stalled = stalled || epochs[e].alone_after_stall;
          if (stalled) {
            EXPECT_FALSE(solo) << how << " epoch " << e;  // forced either way, the team never goes alone
            continue;
          }
          // Forced, every epoch one way; learned, the team's epochs come first (two classes as one, by
          // rows; 10 or 40 classes, by classes twice, then by rows), then one thread's.
          const std::size_t alone = K == 2 ? 2 : 3;
          const int expected = solo         ? (std::string(solo) == "yes" ? 1 : 2)
                               : e < alone  ? 2
                               : e == alone ? 1
                                            : 0;
          if (expected != 0) {
            EXPECT_EQ(epochs[e].threads_used, expected) << how << " epoch " << e;
          }
          if (!solo && e < alone) {
            EXPECT_EQ(epochs[e].split_by_classes, K != 2 && e < 2) << how << " epoch " << e;
          }
        }
      }
    }
  }
}

TEST(FastTrainer, AskingAheadOrNotGivesTheSameBits) {
  struct Shape {
    int K;
    std::size_t D;
    const char* split;
  };
  for (const Shape& shape :
       {Shape{10, 784, "classes"}, Shape{10, 784, "rows"}, Shape{3, 37, "rows"}, Shape{12, 3000, "rows"}}) {
    const Dataset train = synthetic_dataset(900, shape.D, shape.K, ElementType::kU8, 21),
                  test = synthetic_dataset(150, shape.D, shape.K, ElementType::kU8, 22);
    const auto run = [&](int threads, const char* ask) {
      const ForcedSplit forced_split(shape.split);
      const test::ScopedEnv forced_ask("SOFTREG_ASK_AHEAD", ask);
      TrainConfig config;
      config.batch_size = 64;
      config.seed = 9;
      config.threads = threads;
      return two_epochs(config, train, test);
    };
    const auto [reference, reference_epochs] = run(1, "no");
    for (int threads : {1, 2}) {
      for (const char* ask : {"yes", "no", "rolling", static_cast<const char*>(nullptr)}) {
        const auto [model, epochs] = run(threads, ask);
        const std::string how = fmt::format("K={} D={} split {} threads {} ask {}", shape.K, shape.D,
                                            shape.split, threads, ask ? ask : "learned");
        EXPECT_EQ(model.W, reference.W) << how;
        EXPECT_EQ(model.b, reference.b) << how;
        for (std::size_t e = 0; e < epochs.size(); ++e) {
          EXPECT_EQ(epochs[e].train_loss, reference_epochs[e].train_loss) << how;
          EXPECT_EQ(epochs[e].ask_ahead, !ask                            ? "learning"
                                         : std::string(ask) == "yes"     ? "asking"
                                         : std::string(ask) == "rolling" ? "rolling"
                                                                         : "not asking")
              << how;
        }
      }
    }
  }
}

// Split by classes, a stop after some batches and a run that diverges end where split by rows does; the
// rest of the stopped epoch takes each batch's rate from a warm-up and cosine schedule (split by classes,
// thread 0 may close a batch before thread 1 has read its rate, so the rate comes from the batch index).
TEST(FastTrainer, SplittingByClassesStopsAndDivergesWhereRowsDo) {
  // In float32 and in bfloat16 (three meetings a batch split by classes, one by rows).
  const Dataset train = learnable_28x28(1500, 7), test = learnable_28x28(200, 8);
  for (const char* compute : {"f32", "bf16"}) {
    if (std::string(compute) == "bf16" && !fast_bf16_supported()) continue;
    const auto stopped = [&](const char* split) {
      const ForcedSplit forced(split);
      TrainConfig config;
      config.batch_size = 100;
      config.seed = 4;
      config.threads = 2;
      config.epochs = 2;
      config.compute = compute;
      config.schedule.kind = "cosine";
      config.schedule.warmup_epochs = 1;
      Trainer trainer(config, train, test);
      std::size_t batches = 0;
      EXPECT_FALSE(
          trainer.run_epoch([&](std::size_t, std::size_t) { ++batches; }, [&] { return batches >= 3; }));
      const TrainerState state = trainer.state();
      EXPECT_EQ(state.batches_done, 3u) << split << " " << compute;
      const EpochMetrics rest = trainer.run_epoch().value();  // the rest of the epoch
      EXPECT_EQ(rest.split_by_classes, std::string(split) == "classes") << compute;
      return std::tuple(state.model, trainer.model(), rest.train_loss);
    };
    const auto [rows_at_stop, rows_end, rows_loss] = stopped("rows");
    const auto [classes_at_stop, classes_end, classes_loss] = stopped("classes");
    EXPECT_EQ(classes_at_stop.W, rows_at_stop.W) << compute;
    EXPECT_EQ(classes_at_stop.b, rows_at_stop.b) << compute;
    EXPECT_EQ(classes_end.W, rows_end.W) << compute;
    EXPECT_EQ(classes_loss, rows_loss) << compute;

    const auto diverged = [&](const char* split) {
      const ForcedSplit forced(split);
      TrainConfig config;
      config.lr = 1e4;
      config.threads = 2;
      config.compute = compute;
      return divergence_of(config, train, test);
    };
    const std::string message = diverged("rows");
    EXPECT_NE(message.find("training diverged in epoch 1, batch"), std::string::npos) << message;
    EXPECT_EQ(diverged("classes"), message) << compute;
  }
}

}  // namespace
}  // namespace softreg

namespace softreg {
namespace {

// Float64 rows with bits below float32's precision, and their float32 rounding.
std::pair<Dataset, Dataset> float64_and_rounded(std::size_t n, std::size_t D, int K, std::uint64_t seed) {
  Dataset f32 = synthetic_dataset(n, D, K, ElementType::kF32, seed);
  Dataset f64 = f32;
  f64.element = ElementType::kF64;
  std::vector<std::uint8_t> wide(n * D * sizeof(double)), rounded(n * D * sizeof(float));
  std::mt19937_64 gen(seed);
  for (std::size_t i = 0; i < n * D; ++i) {
    float v;
    std::memcpy(&v, f32.pixels.data() + i * sizeof(float), sizeof(float));
    const double x = static_cast<double>(v) + (static_cast<double>(gen() % 1000) - 500.0) * 1e-12;
    std::memcpy(wide.data() + i * sizeof(double), &x, sizeof(double));
    const float r = static_cast<float>(x);
    std::memcpy(rounded.data() + i * sizeof(float), &r, sizeof(float));
  }
  f64.pixels = std::move(wide);
  f32.pixels = std::move(rounded);
  return {std::move(f64), std::move(f32)};
}

TEST(FastTrainer, Float64RowsTrainExactlyAsTheirFloat32Rounding) {
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (int K : {2, 3, 17}) {  // two classes train as one margin
      const auto [train64, train32] = float64_and_rounded(700, 37, K, 3);
      const auto [test64, test32] = float64_and_rounded(100, 37, K, 4);
      for (KernelChoice kernel : {KernelChoice::kFast, KernelChoice::kNaive}) {
        for (bool standardize : {false, true}) {
          TrainConfig config;
          config.batch_size = 64;
          config.kernel = kernel;
          config.standardize = standardize;
          config.threads = 2;
          Trainer wide(config, train64, test64), narrow(config, train32, test32);
          const EpochMetrics a = wide.run_epoch().value(), b = narrow.run_epoch().value();
          const std::string where =
              fmt::format("{} K={} {} standardize={}", target, K,
                          kernel == KernelChoice::kFast ? "fast" : "naive", standardize);
          EXPECT_EQ(wide.model().W, narrow.model().W) << where;
          EXPECT_EQ(wide.model().b, narrow.model().b) << where;
          EXPECT_EQ(a.train_loss, b.train_loss) << where;
          EXPECT_EQ(a.test_acc, b.test_acc) << where;
        }
      }
    }
  }
  restrict_simd_targets("");
}

}  // namespace
}  // namespace softreg
