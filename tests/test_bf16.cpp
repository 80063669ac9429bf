// The bfloat16 compute mode (kernels/bf16.cpp, TrainConfig::compute): its kernels against double-
// precision sums of the same bfloat16-rounded values, and its trainer against the float32 one. On a CPU
// without AVX-512 BF16 only the refusals are tested.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "softreg/error.hpp"
#include "softreg/kernels.hpp"
#include "softreg/train.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

#define SKIP_WITHOUT_BF16() \
  if (!fast_bf16_supported()) GTEST_SKIP() << "this CPU has no AVX-512 BF16"

// float32 to bfloat16 bits, rounding to nearest even (no NaNs here): what VCVTNEPS2BF16 does.
std::uint16_t to_bf16(float x) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
  return static_cast<std::uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}
double from_bf16(std::uint16_t h) {
  return static_cast<double>(std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16));
}
double rounded(float x) {
  return from_bf16(to_bf16(x));
}

// n rows of D values of one element type with K classes, and a model whose weights are not bfloat16
// values (so that rounding them matters).
struct Problem {
  Dataset data;
  std::vector<const std::uint8_t*> rows;
  std::vector<float> W, b;  // (K, D), K
  std::size_t n, D, K;

  Problem(std::size_t count, std::size_t inputs, int classes, ElementType element, std::uint32_t seed)
      : data(synthetic_dataset(count, inputs, classes,
                               element == ElementType::kU8 ? element : ElementType::kF32, seed)),
        n(count),
        D(inputs),
        K(static_cast<std::size_t>(classes)) {
    if (element == ElementType::kF64) {  // the same values widened
      std::vector<std::uint8_t> wide(n * D * sizeof(double));
      for (std::size_t i = 0; i < n * D; ++i) {
        float v;
        std::memcpy(&v, data.pixels.data() + i * sizeof(float), sizeof(float));
        const double x = v;
        std::memcpy(wide.data() + i * sizeof(double), &x, sizeof(double));
      }
      data.pixels = std::move(wide);
      data.element = ElementType::kF64;
    }
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal(0.0f, 0.05f);
    W.resize(K * D);
    b.resize(K);
    for (float& w : W)
      w = normal(gen);
    for (float& v : b)
      v = normal(gen);
    for (std::size_t i = 0; i < n; ++i)  // shuffled, as a batch is
      rows.push_back(data.image((i * 7 + 3) % n));
  }
  // Row r's value d as stored (a byte for pixels: the kernels apply the scale to sums).
  double value(std::size_t r, std::size_t d) const {
    const std::size_t row = (r * 7 + 3) % n;
    return data.element == ElementType::kU8 ? data.image(row)[d] : data.value(row, d);
  }
};

// Lane sums of float32 products may differ from the exact sum by about (terms) * 2^-24 of the sum of
// the products' sizes.
double sum_tolerance(double magnitude, std::size_t terms) {
  return static_cast<double>(terms) * 6e-8 * magnitude + 1e-7;
}

void expect_logits_match(const Problem& p, const std::string& where) {
  const std::size_t stride = bf16_row_stride(p.D);
  ASSERT_EQ(stride % 32, 0u);
  std::vector<std::uint16_t> rows16(p.n * stride, 0xFFFF), W16(p.K * stride, 0xFFFF);
  fast_bf16_pack_rows(p.rows.data(), p.n, p.D, p.data.element, rows16.data());
  fast_bf16_round_weights(p.W.data(), p.K, p.D, W16.data());
  // The packed values are the round-to-nearest-even bfloat16 of each float32 value, padded with zeros.
  for (std::size_t r = 0; r < p.n; ++r) {
    for (std::size_t d = 0; d < stride; ++d) {
      const std::uint16_t want = d < p.D ? to_bf16(static_cast<float>(p.value(r, d))) : 0;
      ASSERT_EQ(rows16[r * stride + d], want) << where << " row " << r << " input " << d;
    }
  }
  for (std::size_t k = 0; k < p.K; ++k) {
    for (std::size_t d = 0; d < stride; ++d) {
      ASSERT_EQ(W16[k * stride + d], d < p.D ? to_bf16(p.W[k * p.D + d]) : 0) << where << " class " << k;
    }
  }
  std::vector<float> logits(p.n * p.K, -1.0f);
  const float scale = p.data.scale();
  fast_bf16_logits({rows16.data(), p.n, stride, p.K, W16.data(), p.b.data(), scale, logits.data()});
  for (std::size_t r = 0; r < p.n; ++r) {
    for (std::size_t k = 0; k < p.K; ++k) {
      double sum = 0, magnitude = 0;
      for (std::size_t d = 0; d < p.D; ++d) {
        const double product = rounded(static_cast<float>(p.value(r, d))) * rounded(p.W[k * p.D + d]);
        sum += product;
        magnitude += std::abs(product);
      }
      const double want = sum * scale + p.b[k];
      ASSERT_NEAR(logits[r * p.K + k], want, sum_tolerance(magnitude * scale, p.D) + 1e-6 * std::abs(want))
          << where << " row " << r << " class " << k;
    }
  }
}

void expect_update_matches(const Problem& p, const std::string& where) {
  const std::size_t stride = bf16_row_stride(p.D), pairs = (p.n + 1) / 2;
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> dlogits(p.n * p.K);
  for (float& g : dlogits)
    g = uniform(gen);
  std::vector<std::uint32_t> dlogit_pairs(pairs * p.K, 0xFFFFFFFFu);
  fast_bf16_pack_dlogit_pairs(dlogits.data(), p.n, p.K, dlogit_pairs.data());
  // Pair j holds rows 2j (low half) and 2j+1 (high half); an odd last row is paired with zero.
  for (std::size_t j = 0; j < pairs; ++j) {
    for (std::size_t k = 0; k < p.K; ++k) {
      const std::uint32_t pair = dlogit_pairs[j * p.K + k];
      ASSERT_EQ(pair & 0xFFFFu, to_bf16(dlogits[2 * j * p.K + k])) << where;
      ASSERT_EQ(pair >> 16, 2 * j + 1 < p.n ? to_bf16(dlogits[(2 * j + 1) * p.K + k]) : 0) << where;
    }
  }
  const float step = 0.1f / static_cast<float>(p.n), scale = p.data.scale();
  // The rows packed in two calls, the first (n+1)/2 and the rest, as two threads split by classes pack
  // them: pairing the packed rows gives the pairs of the rows themselves.
  const std::size_t first_half = (p.n + 1) / 2;
  std::vector<std::uint16_t> packed(p.n * stride);
  fast_bf16_pack_rows(p.rows.data(), first_half, p.D, p.data.element, packed.data());
  fast_bf16_pack_rows(p.rows.data() + first_half, p.n - first_half, p.D, p.data.element,
                      packed.data() + first_half * stride);
  // The update over one range of inputs, and over three whose bounds are not multiples of 16 (threads'
  // slices): the same bits.
  const auto update = [&](const std::vector<std::pair<std::size_t, std::size_t>>& ranges) {
    std::pair<std::vector<float>, std::vector<std::uint16_t>> out{p.W,
                                                                  std::vector<std::uint16_t>(p.K * stride)};
    fast_bf16_round_weights(p.W.data(), p.K, p.D, out.second.data());
    for (auto [d0, d1] : ranges) {
      const std::size_t width = bf16_pair_width(d0, d1);
      EXPECT_GE(width, d1 - d0);
      std::vector<std::uint32_t> row_pairs(pairs * width, 0xFFFFFFFFu);
      fast_bf16_pack_row_pairs(p.rows.data(), p.n, p.data.element, d0, d1, row_pairs.data());
      std::vector<std::uint32_t> paired_packed(pairs * width, 0xFFFFFFFFu);
      fast_bf16_pair_packed_rows(packed.data(), p.n, stride, d0, d1, paired_packed.data());
      EXPECT_TRUE(paired_packed == row_pairs) << where << " inputs " << d0 << " to " << d1;
      fast_bf16_update_columns({row_pairs.data(), dlogit_pairs.data(), pairs, p.D, p.K, d0, d1, step, scale,
                                out.first.data(), out.second.data(), stride});
    }
    return out;
  };
  const auto [W, W16] = update({{0, p.D}});
  const std::size_t a = std::min<std::size_t>(7, p.D), c = std::max(a, p.D - p.D / 3);
  const auto [W_split, W16_split] = update({{0, a}, {a, c}, {c, p.D}});
  EXPECT_TRUE(W == W_split) << where;
  EXPECT_TRUE(W16 == W16_split) << where;
  bool stepped = false;
  for (std::size_t k = 0; k < p.K; ++k) {
    for (std::size_t d = 0; d < p.D; ++d) {
      double sum = 0, magnitude = 0;
      for (std::size_t r = 0; r < p.n; ++r) {
        const double product = rounded(dlogits[r * p.K + k]) * rounded(static_cast<float>(p.value(r, d)));
        sum += product;
        magnitude += std::abs(product);
      }
      const float w = W[k * p.D + d];
      const double want = p.W[k * p.D + d] - static_cast<double>(step) * scale * sum;
      ASSERT_NEAR(w, want, step * scale * sum_tolerance(magnitude, p.n) + 2e-7 * std::abs(want))
          << where << " class " << k << " input " << d;
      ASSERT_EQ(W16[k * stride + d], to_bf16(w)) << where << " class " << k << " input " << d;
      stepped = stepped || w != p.W[k * p.D + d];
    }
    for (std::size_t d = p.D; d < stride; ++d)
      ASSERT_EQ(W16[k * stride + d], 0) << where << " padding";
  }
  EXPECT_TRUE(stepped) << where;
}

// The ways the bfloat16 kernels may take their products on this CPU: VDPBF16PS's vectors, and AMX's
// TDPBF16PS tiles where the CPU has them.
std::vector<bool> amx_ways() {
  allow_bf16_amx(true);
  return bf16_uses_amx() ? std::vector<bool>{false, true} : std::vector<bool>{false};
}

// allow_bf16_amx for the life of one object.
class AllowedAmx {
 public:
  explicit AllowedAmx(bool allowed) { allow_bf16_amx(allowed); }
  ~AllowedAmx() { allow_bf16_amx(true); }
  AllowedAmx(const AllowedAmx&) = delete;
  AllowedAmx& operator=(const AllowedAmx&) = delete;
};

TEST(Bf16Kernels, MatchDoubleSumsOfTheRoundedValues) {
  SKIP_WITHOUT_BF16();
  struct Shape {
    int K;
    std::size_t D;
    ElementType element;
  };
  // Class counts around the vectors' tiles (10 at once; 5 for more than 10) and AMX's (two of 16), inputs
  // around the 32-value vector, odd row counts (a row paired with zeros, rows beyond a block of four, and
  // 37 rows: a last 16 of pairs that is 3).
  for (const bool amx : amx_ways()) {
    const AllowedAmx allowed(amx);
    ASSERT_EQ(bf16_uses_amx(), amx);
    for (auto [K, D, element] :
         {Shape{2, 784, ElementType::kU8}, Shape{3, 37, ElementType::kF32}, Shape{10, 784, ElementType::kU8},
          Shape{10, 33, ElementType::kF64}, Shape{17, 64, ElementType::kF32},
          Shape{33, 100, ElementType::kF32}, Shape{100, 130, ElementType::kF32},
          Shape{1000, 40, ElementType::kU8}, Shape{7, 1, ElementType::kF32}}) {
      for (std::size_t n : {std::size_t{1}, std::size_t{23}, std::size_t{37}}) {
        const Problem p(n, D, K, element, static_cast<std::uint32_t>(K + D));
        const std::string where =
            fmt::format("K={} D={} {} n={}{}", K, D, element_name(element), n, amx ? " AMX" : "");
        expect_logits_match(p, where);
        expect_update_matches(p, where);
      }
    }
  }
}

// Rows that would not fit in half of L2 go through the tiles of classes in chunks that do: the logits
// of more than two chunks' rows (1,024 inputs a row) in one call are those of each row alone.
TEST(Bf16Kernels, RowsBeyondHalfOfL2GoInChunksWithTheSameBits) {
  SKIP_WITHOUT_BF16();
  const std::size_t D = 1024, stride = bf16_row_stride(D);
  const std::size_t n = 2 * (l2_cache_bytes() / 2 / (stride * sizeof(std::uint16_t))) + 5;
  for (const bool amx : amx_ways()) {
    const AllowedAmx allowed(amx);
    for (int K : {3, 17}) {
      const Problem p(n, D, K, ElementType::kF32, static_cast<std::uint32_t>(K + 70));
      const std::size_t k = static_cast<std::size_t>(K);
      std::vector<std::uint16_t> rows16(n * stride), W16(k * stride);
      fast_bf16_pack_rows(p.rows.data(), n, D, ElementType::kF32, rows16.data());
      fast_bf16_round_weights(p.W.data(), k, D, W16.data());
      std::vector<float> logits(n * k), alone(n * k);
      fast_bf16_logits({rows16.data(), n, stride, k, W16.data(), p.b.data(), 1.0f, logits.data()});
      for (std::size_t r = 0; r < n; ++r)
        fast_bf16_logits(
            {rows16.data() + r * stride, 1, stride, k, W16.data(), p.b.data(), 1.0f, &alone[r * k]});
      EXPECT_EQ(logits, alone) << "K=" << K << (amx ? " AMX" : "");
    }
  }
}

TEST(Bf16Kernels, ProbeFindsTheDotProductRate) {
  SKIP_WITHOUT_BF16();
  EXPECT_GT(probe_bf16_flops_per_second(0.01), 1e9);
}

TEST(Bf16Config, OnlyThePlainFusedSgdStepHasABfloat16Mode) {
  TrainConfig config;
  config.compute = "bf16";
  EXPECT_NO_THROW(check_recipe(config));
  config.compute = "f16";
  test::expect_error([&] { check_recipe(config); }, "compute");
  const auto refused = [](auto change, const std::string& fragment) {
    TrainConfig c;
    c.compute = "bf16";
    change(c);
    test::expect_error([&] { check_recipe(c); }, fragment);
  };
  refused([](TrainConfig& c) { c.kernel = KernelChoice::kNaive; }, "fast kernel");
  refused([](TrainConfig& c) { c.optimizer = "adam"; }, "optimizer sgd");
  refused([](TrainConfig& c) { c.l2 = 1e-4; }, "l2 0");
  refused([](TrainConfig& c) { c.standardize = true; }, "standardized");
}

Dataset bands(std::size_t n, std::uint32_t seed) {
  return test::banded_dataset(n, /*side=*/28, /*classes=*/10, /*band=*/70, /*dim=*/3, /*bright=*/200, seed);
}

TEST(Bf16Trainer, RefusedWithoutTheInstructions) {
  // As the CPU is where it lacks AVX-512 BF16, and on any CPU with the fast path restricted below
  // AVX-512 (what the kernels then follow): every kernel and the trainer refuse, naming what is missing.
  std::vector<std::string> below_avx512;
  if (!fast_bf16_supported()) below_avx512.push_back("");  // "": the CPU as it is
  for (const std::string& target : simd_targets_available())
    if (!target.starts_with("AVX3")) below_avx512.push_back(target);
  ASSERT_FALSE(below_avx512.empty());  // every x86-64 CPU has SSE2 at least
  const Dataset train = bands(100, 1), test = bands(50, 2);
  TrainConfig config;
  config.compute = "bf16";
  std::vector<float> W(10, 0.0f);
  std::vector<std::uint16_t> out(32);
  for (const std::string& target : below_avx512) {
    restrict_simd_targets(target);
    EXPECT_FALSE(fast_bf16_supported()) << target;
    test::expect_error([&] { fast_bf16_round_weights(W.data(), 1, 10, out.data()); }, "AVX-512 BF16");
    test::expect_error([&] { probe_bf16_flops_per_second(0.01); }, "AVX-512 BF16");
    test::expect_error([&] { Trainer trainer(config, train, test); },
                       cpu_has_avx512_bf16()
                           ? "compute bf16 needs the AVX-512 fast path (restricted to " + target
                           : std::string("compute bf16: this CPU has no AVX-512 BF16"));
  }
  restrict_simd_targets("");
  EXPECT_EQ(fast_bf16_supported(), cpu_has_avx512_bf16() && simd_target().starts_with("AVX3"));
}

TEST(Bf16Trainer, LearnsAsTheFloat32PathDoes) {
  SKIP_WITHOUT_BF16();
  const Dataset train = bands(3000, 5), test = bands(500, 6);
  TrainConfig config;
  config.batch_size = 256;
  config.seed = 3;
  config.threads = 2;
  Trainer f32(config, train, test);
  config.compute = "bf16";
  Trainer bf16(config, train, test);
  EpochMetrics a, b;
  for (int epoch = 0; epoch < 3; ++epoch) {
    a = f32.run_epoch().value();
    b = bf16.run_epoch().value();
  }
  // 8 significant bits in the products: the same model to about 1 %, not to the float32 path's 1e-5.
  EXPECT_NEAR(b.train_loss, a.train_loss, 0.02 * a.train_loss);
  EXPECT_NEAR(b.test_acc, a.test_acc, 0.02);
  EXPECT_GT(b.test_acc, 0.9);
  const float spread = (f32.model().W.array().abs()).maxCoeff();
  EXPECT_LT((f32.model().W - bf16.model().W).cwiseAbs().maxCoeff(), 0.05f * spread);
  EXPECT_FALSE(f32.model().W == bf16.model().W);  // it did round
}

TEST(Bf16Trainer, WeightsDoNotDependOnTheThreadCount) {
  SKIP_WITHOUT_BF16();
  // Bytes with 10 classes and float features with 17 (tiles of 5 and a partial one); batches of 101
  // rows, so that threads' slices and the last pair of a batch are odd (split by classes, the pair of
  // rows 50 and 51 lies in both threads' packed halves); batches of 999, so that the last has one row.
  // Two threads split by rows, by classes (each owning 5 or 9 and 8 classes) and as they choose, which
  // for a model this small is by rows without measuring.
  struct Shape {
    int K;
    ElementType element;
    std::size_t D, batch;
  };
  // And 40 classes (AMX's tiles of 16: two threads split by classes own 20 each, a tile and 4).
  for (const bool amx : amx_ways()) {
    const AllowedAmx allowed(amx);
    for (auto [K, element, D, batch] :
         {Shape{10, ElementType::kU8, 784, 101}, Shape{17, ElementType::kF32, 37, 101},
          Shape{9, ElementType::kF32, 40, 999}, Shape{40, ElementType::kF32, 70, 101}}) {
      const Dataset train = synthetic_dataset(1000, D, K, element, 7),
                    test = synthetic_dataset(200, D, K, element, 8);
      struct Run {
        int threads;
        const char* split;
      };
      std::vector<SoftmaxModel> models;
      std::vector<double> losses;
      const std::vector<Run> runs{{1, nullptr}, {2, "rows"}, {2, "classes"}, {2, nullptr}, {3, nullptr}};
      for (const auto [threads, split] : runs) {
        const test::ScopedEnv forced("SOFTREG_SPLIT", split);
        TrainConfig config;
        config.batch_size = batch;
        config.seed = 4;
        config.threads = threads;
        config.compute = "bf16";
        Trainer trainer(config, train, test);
        trainer.run_epoch();
        const EpochMetrics metrics = trainer.run_epoch().value();
        const std::string how =
            fmt::format("K={} threads {} split {}{}", K, threads, split ? split : "auto", amx ? " AMX" : "");
        EXPECT_EQ(metrics.split_by_classes, split && std::string(split) == "classes") << how;
        if (!split) {
          EXPECT_EQ(metrics.core_round_trip_seconds, 0.0) << how;  // small: not measured
        }
        losses.push_back(metrics.train_loss);
        models.push_back(trainer.model());
      }
      for (std::size_t i = 1; i < models.size(); ++i) {
        const std::string how = fmt::format("K={} threads {} split {}{}", K, runs[i].threads,
                                            runs[i].split ? runs[i].split : "auto", amx ? " AMX" : "");
        EXPECT_EQ(models[i].W, models[0].W) << how;
        EXPECT_EQ(models[i].b, models[0].b) << how;
        EXPECT_EQ(losses[i], losses[0]) << how;
      }
    }
  }
}

}  // namespace
}  // namespace softreg
