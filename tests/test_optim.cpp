// The gradient and the update apart: the gradient kernel against the double-precision math, the fused
// SGD kernel against the gradient kernel followed by Sgd::step, and the trainer handing every batch's
// gradient to whatever Optimizer it is given, on the fast and the naive path.
#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "softreg/kernels.hpp"
#include "softreg/loss.hpp"
#include "softreg/model_io.hpp"
#include "softreg/optim.hpp"
#include "softreg/train.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

constexpr int K = 10;

// SGD with the same arithmetic as Sgd, but not of type Sgd: the trainer cannot fuse it, so it takes the
// general path (gradient kernel, then step()).
class UnfusedSgd final : public Optimizer {
 public:
  explicit UnfusedSgd(double lr) : lr_(lr) {}
  std::string name() const override { return "unfused-sgd"; }
  void step(SoftmaxModel& model, const WeightMatrix& dW, const BiasVector& db, std::size_t n) override {
    sgd_step(model, dW, db, lr_, n);
  }
  void set_learning_rate(double lr) override { lr_ = lr; }

 private:
  double lr_;
};

// Records what it is given and changes nothing.
class Recorder final : public Optimizer {
 public:
  std::string name() const override { return "recorder"; }
  void set_learning_rate(double lr) override { lrs.push_back(lr); }
  void step(SoftmaxModel&, const WeightMatrix& dW, const BiasVector& db, std::size_t n) override {
    batch_sizes.push_back(n);
    db_sums.push_back(static_cast<double>(db.sum()));
    last_dW = dW;
  }
  std::vector<std::size_t> batch_sizes;
  std::vector<double> lrs;
  std::vector<double> db_sums;
  WeightMatrix last_dW;
};

TEST(GradientKernel, MatchesTheDoublePrecisionGradientAndTheFusedStep) {
  for (const std::string& target : simd_targets_available()) {
    restrict_simd_targets(target);
    for (std::size_t side : {28u, 5u}) {  // D = 784, and D = 25 with vector tails
      const std::size_t n = 53, D = side * side;
      const Dataset data = test::random_dataset(n, side, side, K, /*seed=*/11);
      Rng rng(3);
      const SoftmaxModel model = SoftmaxModel::initialized(static_cast<int>(D), K, 0.05, rng);
      std::vector<const std::uint8_t*> pixels;
      for (std::size_t i = 0; i < n; ++i)
        pixels.push_back(data.image(i));
      std::vector<float> loss(n), dlogits(n * K);
      fast_forward_rows({pixels.data(), data.labels.data(), n, D, K, ElementType::kU8, model.W.data(),
                         model.b.data(), kPixelScale, loss.data(), nullptr, dlogits.data()});

      // The gradient, in two input ranges as two threads compute it.
      WeightMatrix dW = WeightMatrix::Constant(model.W.rows(), model.W.cols(), -99.0f);
      const std::size_t split = D / 2 / 16 * 16;
      for (auto [d0, d1] : {std::pair<std::size_t, std::size_t>{0, split}, {split, D}})
        fast_gradient_columns(
            {pixels.data(), dlogits.data(), n, D, K, ElementType::kU8, d0, d1, kPixelScale, dW.data()});

      RowMatrix<double> X(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(D));
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t d = 0; d < D; ++d)
          X(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(d)) = data.image(i)[d] / 255.0;
      const LossAndGrad<double> ref =
          loss_and_grad(X, ColMatrix<double>(model.W.cast<double>()), Vector<double>(model.b.cast<double>()),
                        std::span<const Label>(data.labels));
      // Float sums of n products of O(1) terms: absolute error well under 1e-4 for n = 53.
      EXPECT_LT((dW.cast<double>() - ref.dW).cwiseAbs().maxCoeff(), 1e-4) << target << " D=" << D;

      // The fused kernel = the gradient kernel followed by the SGD step, up to the rounding of the
      // separate multiply (one or two float ulps of W).
      SoftmaxModel fused = model, unfused = model;
      const double lr = 0.1;
      fast_update_columns({pixels.data(), dlogits.data(), n, D, K, ElementType::kU8, 0, D,
                           static_cast<float>(lr / static_cast<double>(n)), kPixelScale, fused.W.data()});
      sgd_step(unfused, dW, BiasVector::Zero(K), lr, n);
      EXPECT_LT((fused.W - unfused.W).cwiseAbs().maxCoeff(), 2e-8f) << target << " D=" << D;
      EXPECT_NE(fused.W, model.W);
    }
  }
  restrict_simd_targets("");
}

TrainConfig config_for(int threads, KernelChoice kernel) {
  TrainConfig c;
  c.batch_size = 64;  // 1000 = 15 * 64 + 40
  c.seed = 5;
  c.threads = threads;
  c.kernel = kernel;
  return c;
}

TEST(Trainer, FusedSgdIsChosenOnlyForSgdOnTheFastPath) {
  const Dataset train = test::learnable_8x8(1000, 1), test = test::learnable_8x8(100, 2);
  EXPECT_TRUE(Trainer(config_for(1, KernelChoice::kFast), train, test).uses_fused_sgd());
  EXPECT_FALSE(Trainer(config_for(1, KernelChoice::kNaive), train, test).uses_fused_sgd());
  Trainer general(config_for(1, KernelChoice::kFast), train, test, std::make_unique<UnfusedSgd>(0.1));
  EXPECT_TRUE(general.uses_fast_path());
  EXPECT_FALSE(general.uses_fused_sgd());
  EXPECT_EQ(general.optimizer().name(), "unfused-sgd");
  EXPECT_EQ(Trainer(config_for(1, KernelChoice::kFast), train, test).optimizer().name(), "sgd");
}

TEST(Trainer, FusedSgdEqualsTheGradientThenTheStep) {
  const Dataset train = test::learnable_8x8(1000, 3), test = test::learnable_8x8(200, 4);
  Trainer fused(config_for(2, KernelChoice::kFast), train, test);
  Trainer general(config_for(2, KernelChoice::kFast), train, test, std::make_unique<UnfusedSgd>(0.1));
  for (int epoch = 0; epoch < 3; ++epoch) {
    const EpochMetrics a = fused.run_epoch().value(), b = general.run_epoch().value();
    EXPECT_NEAR(a.train_loss, b.train_loss, 1e-6 * a.train_loss) << epoch;
    EXPECT_NEAR(a.test_loss, b.test_loss, 1e-6 * a.test_loss) << epoch;
  }
  // 705 steps, each differing by an ulp or so of rounding: far below the weights' scale (~0.1-1).
  EXPECT_LT((fused.model().W - general.model().W).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_LT((fused.model().b - general.model().b).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_GT(fused.model().W.cwiseAbs().maxCoeff(), 0.05f);  // it did learn
}

TEST(Trainer, NaivePathWithAnyOptimizerIsTheSeedsSgdBitForBit) {
  const Dataset train = test::learnable_8x8(1000, 5), test = test::learnable_8x8(100, 6);
  Trainer builtin(config_for(2, KernelChoice::kNaive), train, test);
  Trainer given(config_for(2, KernelChoice::kNaive), train, test, std::make_unique<UnfusedSgd>(0.1));
  builtin.run_epoch();
  given.run_epoch();
  EXPECT_EQ(builtin.model().W, given.model().W);
  EXPECT_EQ(builtin.model().b, given.model().b);
}

TEST(Trainer, GeneralPathDoesNotDependOnTheThreadCount) {
  const Dataset train = test::learnable_8x8(1000, 7), test = test::learnable_8x8(100, 8);
  std::vector<SoftmaxModel> models;
  for (int threads : {1, 2, 3}) {
    Trainer trainer(config_for(threads, KernelChoice::kFast), train, test, std::make_unique<UnfusedSgd>(0.1));
    trainer.run_epoch();
    models.push_back(trainer.model());
  }
  for (std::size_t i = 1; i < models.size(); ++i) {
    EXPECT_EQ(models[i].W, models[0].W) << i;
    EXPECT_EQ(models[i].b, models[0].b) << i;
  }
}

TEST(Trainer, EveryBatchGoesToTheOptimizer) {
  const Dataset train = test::learnable_8x8(1000, 9), test = test::learnable_8x8(100, 10);
  for (KernelChoice kernel : {KernelChoice::kFast, KernelChoice::kNaive}) {
    auto recorder = std::make_unique<Recorder>();
    Recorder& seen = *recorder;
    Trainer trainer(config_for(2, kernel), train, test, std::move(recorder));
    const SoftmaxModel before = trainer.model();
    trainer.run_epoch();
    ASSERT_EQ(seen.batch_sizes.size(), 16u);  // 15 batches of 64 and one of 40
    EXPECT_EQ(seen.batch_sizes.front(), 64u);
    EXPECT_EQ(seen.batch_sizes.back(), 40u);
    // db of the summed loss: each row's softmax - onehot sums to zero over the classes.
    for (double s : seen.db_sums)
      EXPECT_NEAR(s, 0.0, 1e-4);
    EXPECT_GT(seen.last_dW.cwiseAbs().maxCoeff(), 0.0f);
    // The optimizer changed nothing, so the weights are the initial ones: no hidden update anywhere.
    EXPECT_EQ(trainer.model().W, before.W);
    EXPECT_EQ(trainer.model().b, before.b);
  }
}

}  // namespace
}  // namespace softreg

namespace softreg {
namespace {

TEST(Trainer, ReportsTheTimeThreadsWaitAtBarriers) {
  const Dataset train = test::learnable_8x8(1000, 11), test = test::learnable_8x8(100, 12);
  for (int threads : {1, 2}) {
    for (KernelChoice kernel : {KernelChoice::kFast, KernelChoice::kNaive}) {
      Trainer trainer(config_for(threads, kernel), train, test);
      const EpochMetrics m = trainer.run_epoch().value();
      EXPECT_GE(m.barrier_wait_seconds, 0.0);
      EXPECT_LE(m.barrier_wait_seconds, m.train_seconds);
      // One thread never waits; the naive path has no barriers of its own.
      if (threads == 1 || kernel == KernelChoice::kNaive) {
        EXPECT_EQ(m.barrier_wait_seconds, 0.0);
      }
    }
  }
  // Two threads meet twice per batch: some waiting is always measured (clock reads alone take time).
  Trainer two(config_for(2, KernelChoice::kFast), train, test);
  EXPECT_GT(two.run_epoch()->barrier_wait_seconds, 0.0);
}

TEST(Trainer, SplitsTheFastPassIntoForwardBackwardAndWaiting) {
  const Dataset train = test::learnable_8x8(1000, 11), test = test::learnable_8x8(100, 12);
  for (int threads : {1, 2}) {
    Trainer fast(config_for(threads, KernelChoice::kFast), train, test);
    const EpochMetrics m = fast.run_epoch().value();
    EXPECT_GT(m.forward_seconds, 0.0) << threads;
    EXPECT_GT(m.backward_seconds, 0.0) << threads;
    // Each thread's three parts are consecutive intervals inside the pass, so they cannot exceed it
    // (the rest is the shuffle and the thread pool's start).
    EXPECT_LE(m.forward_seconds + m.backward_seconds + m.barrier_wait_seconds, m.train_seconds) << threads;
    // Each thread's busy time, whose mean is the two phases'.
    ASSERT_EQ(m.thread_busy_seconds.size(), static_cast<std::size_t>(threads));
    double mean = 0;
    for (double busy : m.thread_busy_seconds) {
      EXPECT_GT(busy, 0.0) << threads;
      EXPECT_LE(busy, m.train_seconds) << threads;
      mean += busy / threads;
    }
    // (Unless the machine was so busy that the team stalled and thread 0 trained the rest alone.)
    if (!m.alone_after_stall) {
      EXPECT_NEAR(mean, m.forward_seconds + m.backward_seconds, 1e-9) << threads;
    }
  }
  // The naive path has no such phases.
  Trainer naive(config_for(1, KernelChoice::kNaive), train, test);
  const EpochMetrics m = naive.run_epoch().value();
  EXPECT_EQ(m.forward_seconds, 0.0);
  EXPECT_EQ(m.backward_seconds, 0.0);
  EXPECT_TRUE(m.thread_busy_seconds.empty());
}

}  // namespace
}  // namespace softreg

namespace softreg {
namespace {

// torch.optim on a fixed sequence of gradients (tests/fixtures/torch_optim.json, made by
// tools/make_optim_fixtures.py): each optimizer's weights after every step.
struct TorchOptimFixture {
  nlohmann::json json;
  int K = 0, D = 0;

  TorchOptimFixture() {
    std::ifstream in(std::string(SOFTREG_FIXTURES_DIR) + "/torch_optim.json");
    json = nlohmann::json::parse(in);
    K = json["classes"];
    D = json["inputs"];
  }
  SoftmaxModel initial() const {
    SoftmaxModel m;
    m.W.resize(D, K);
    m.b.resize(K);
    const auto W0 = json["W0"].get<std::vector<float>>();
    const auto b0 = json["b0"].get<std::vector<float>>();
    std::copy(W0.begin(), W0.end(), m.W.data());  // torch's [K, D] row-major is our (D,K) column-major
    std::copy(b0.begin(), b0.end(), m.b.data());
    return m;
  }
  static OptimizerSettings settings(const nlohmann::json& c) {
    OptimizerSettings s;
    s.name = c["optimizer"];
    s.lr = c["lr"];
    s.momentum = c.value("momentum", s.momentum);
    s.beta1 = c.value("beta1", s.beta1);
    s.beta2 = c.value("beta2", s.beta2);
    s.eps = c.value("eps", s.eps);
    s.weight_decay = c.value("weight_decay", s.weight_decay);
    return s;
  }
  // Step i of case c: the fixture's mean gradient handed over as the summed gradient of a batch of 4
  // (the optimizer divides by the batch size; multiplying and dividing by 4 are exact), plus L2.
  void step(Optimizer& opt, SoftmaxModel& m, const nlohmann::json& c, std::size_t i) const {
    constexpr std::size_t n = 4;
    const auto dW = json["grads"][i]["dW"].get<std::vector<float>>();
    const auto db = json["grads"][i]["db"].get<std::vector<float>>();
    WeightMatrix dW_sum = Eigen::Map<const WeightMatrix>(dW.data(), D, K) * static_cast<float>(n);
    const BiasVector db_sum = Eigen::Map<const BiasVector>(db.data(), K) * static_cast<float>(n);
    add_l2_gradient(dW_sum, m.W, c.value("l2", 0.0), n);
    opt.set_learning_rate(c["lrs"][i].get<double>());
    opt.step(m, dW_sum, db_sum, n);
  }
};

TEST(TorchOptim, EveryOptimizerMatchesTorchStepByStep) {
  const TorchOptimFixture f;
  ASSERT_EQ(f.json["cases"].size(), 8u);
  for (const nlohmann::json& c : f.json["cases"]) {
    const std::string label = c.dump().substr(0, 90);
    const std::unique_ptr<Optimizer> opt = make_optimizer(TorchOptimFixture::settings(c));
    SoftmaxModel m = f.initial();
    for (std::size_t i = 0; i < c["W"].size(); ++i) {
      f.step(*opt, m, c, i);
      const auto W = c["W"][i].get<std::vector<float>>();
      const auto b = c["b"][i].get<std::vector<float>>();
      // Float32 on both sides, the same operations in the same order up to where the scalar factors
      // are rounded: a few units in the last place of values of order 1.
      for (std::size_t j = 0; j < W.size(); ++j)
        ASSERT_NEAR(m.W.data()[j], W[j], 2e-6 * (1 + std::abs(W[j]))) << label << " step " << i << " W " << j;
      for (std::size_t k = 0; k < b.size(); ++k)
        ASSERT_NEAR(m.b(static_cast<Eigen::Index>(k)), b[k], 2e-6 * (1 + std::abs(b[k])))
            << label << " step " << i << " b " << k;
    }
    EXPECT_EQ(opt->name(), c["optimizer"].get<std::string>());
    EXPECT_NE(m.W, f.initial().W);
  }
}

TEST(TorchOptim, StateRestoredMidwayContinuesBitForBit) {
  const TorchOptimFixture f;
  for (const nlohmann::json& c : f.json["cases"]) {
    const std::unique_ptr<Optimizer> straight = make_optimizer(TorchOptimFixture::settings(c));
    const std::unique_ptr<Optimizer> first = make_optimizer(TorchOptimFixture::settings(c));
    SoftmaxModel a = f.initial(), b = f.initial();
    for (std::size_t i = 0; i < 6; ++i)
      f.step(*straight, a, c, i);
    for (std::size_t i = 0; i < 3; ++i)
      f.step(*first, b, c, i);
    const OptimizerState saved = first->state();
    const std::unique_ptr<Optimizer> second = make_optimizer(TorchOptimFixture::settings(c));
    second->restore(saved, b);
    for (std::size_t i = 3; i < 6; ++i)
      f.step(*second, b, c, i);
    EXPECT_EQ(a.W, b.W) << c["optimizer"];
    EXPECT_EQ(a.b, b.b) << c["optimizer"];
    const bool stateful = c["optimizer"] != "sgd";
    EXPECT_EQ(saved.buffers.empty(), !stateful) << c["optimizer"];
    if (stateful) {
      EXPECT_EQ(saved.steps, 3);
      OptimizerState wrong = saved;
      wrong.buffers.begin()->second.pop_back();
      test::expect_error([&] { make_optimizer(TorchOptimFixture::settings(c))->restore(wrong, b); },
                         "values, the model");
    } else {
      OptimizerState some;
      some.steps = 2;
      test::expect_error([&] { make_optimizer(TorchOptimFixture::settings(c))->restore(some, b); },
                         "keeps no state");
    }
  }
  test::expect_error([] { make_optimizer({.name = "rmsprop"}); }, "unknown optimizer 'rmsprop'");
}

TEST(Schedule, ConstantStepCosineAndWarmup) {
  // 10 batches an epoch, 4 epochs.
  const auto lr = [](const LrSchedule& s, int epoch, std::size_t batch) {
    return scheduled_lr(s, 0.1, epoch, batch, 10, 4);
  };
  const LrSchedule constant;
  EXPECT_EQ(lr(constant, 0, 0), 0.1);  // exactly the recipe's: the seed's run stays bit for bit
  EXPECT_EQ(lr(constant, 3, 9), 0.1);
  const LrSchedule step{.kind = "step", .warmup_epochs = 0, .step_epochs = 2, .gamma = 0.5};
  EXPECT_DOUBLE_EQ(lr(step, 1, 9), 0.1);
  EXPECT_DOUBLE_EQ(lr(step, 2, 0), 0.05);
  EXPECT_DOUBLE_EQ(lr(step, 3, 5), 0.05);
  const LrSchedule cosine{.kind = "cosine"};
  EXPECT_DOUBLE_EQ(lr(cosine, 0, 0), 0.1);
  EXPECT_NEAR(lr(cosine, 2, 0), 0.05, 1e-15);  // half way
  EXPECT_GT(lr(cosine, 3, 9), 0.0);
  EXPECT_LT(lr(cosine, 3, 9), 0.001);
  const LrSchedule warm{.kind = "cosine", .warmup_epochs = 1};
  EXPECT_DOUBLE_EQ(lr(warm, 0, 0), 0.01);  // 1/10 of the way up
  EXPECT_DOUBLE_EQ(lr(warm, 0, 9), 0.1);
  EXPECT_DOUBLE_EQ(lr(warm, 1, 0), 0.1);  // cosine starts after the warmup
  EXPECT_NEAR(lr(warm, 2, 5), 0.05, 1e-15);
}

TEST(Trainer, UsesTheScheduleAndTheL2Term) {
  const Dataset train = test::learnable_8x8(1000, 13), test = test::learnable_8x8(100, 14);
  TrainConfig config = config_for(2, KernelChoice::kFast);
  config.epochs = 2;
  config.schedule = {.kind = "step", .warmup_epochs = 0.5, .step_epochs = 1, .gamma = 0.1};
  auto recorder = std::make_unique<Recorder>();
  Recorder& seen = *recorder;
  Trainer trainer(config, train, test, std::move(recorder));
  trainer.run_epoch();
  trainer.run_epoch();
  ASSERT_EQ(seen.lrs.size(), 32u);
  EXPECT_DOUBLE_EQ(seen.lrs[0], 0.1 / 8);  // warmup over 8 of the 16 batches
  EXPECT_DOUBLE_EQ(seen.lrs[7], 0.1);
  EXPECT_DOUBLE_EQ(seen.lrs[15], 0.1);
  EXPECT_DOUBLE_EQ(seen.lrs[16], 0.01);  // the second epoch, one step down

  // L2 on the fast path: the gradient the optimizer gets is the data's plus n * lambda * W.
  for (KernelChoice kernel : {KernelChoice::kFast, KernelChoice::kNaive}) {
    TrainConfig plain = config_for(1, kernel), with_l2 = plain;
    with_l2.l2 = 0.5;
    auto a = std::make_unique<Recorder>(), b = std::make_unique<Recorder>();
    Recorder &ra = *a, &rb = *b;
    Trainer ta(plain, train, test, std::move(a)), tb(with_l2, train, test, std::move(b));
    EXPECT_FALSE(tb.uses_fused_sgd());
    ta.run_epoch();
    tb.run_epoch();
    // The recorder never moves W, so W is the initial one in both: the last batch had 40 rows.
    const WeightMatrix expected = ra.last_dW + 40 * 0.5f * ta.model().W;
    EXPECT_LT((rb.last_dW - expected).cwiseAbs().maxCoeff(), 1e-5f);
  }
}

TEST(Trainer, MomentumAndAdamTrainAndResumeBitForBit) {
  const Dataset train = test::learnable_8x8(1000, 15), test = test::learnable_8x8(200, 16);
  for (const char* name : {"momentum", "nesterov", "adam", "adamw"}) {
    TrainConfig config = config_for(2, KernelChoice::kFast);
    config.optimizer = name;
    config.lr = std::string(name).starts_with("adam") ? 0.01 : 0.05;
    config.l2 = 1e-4;
    Trainer straight(config, train, test);
    const EpochMetrics first = straight.run_epoch().value();
    const EpochMetrics second = straight.run_epoch().value();
    EXPECT_LT(second.train_loss, first.train_loss) << name;
    EXPECT_GT(second.test_acc, 0.9) << name;

    Trainer stopped(config, train, test);
    int batches = 0;
    EXPECT_FALSE(stopped.run_epoch({}, [&] { return ++batches == 5; }).has_value());
    const TrainerState state = stopped.state();
    EXPECT_EQ(state.optimizer.steps, 5) << name;
    Trainer resumed(config, train, test);
    resumed.restore(state);
    resumed.run_epoch();
    resumed.run_epoch();
    EXPECT_EQ(resumed.model().W, straight.model().W) << name;
    EXPECT_EQ(resumed.model().b, straight.model().b) << name;
  }
}

}  // namespace
}  // namespace softreg

namespace softreg {
namespace {

TEST(ModelFile, CarriesTheOptimizerStateAsExtraTensors) {
  ModelFile file;
  file.model.W = WeightMatrix::Constant(3, 2, 0.5f);
  file.model.b = BiasVector::Constant(2, -1.0f);
  file.height = 1;
  file.width = 3;
  file.class_names = {"a", "b"};
  file.extra_tensors["optimizer.adam_m_W"] = {1, 2, 3, 4, 5, 6};
  file.extra_tensors["optimizer.adam_m_b"] = {7, 8};
  const ModelFile back = parse_model(serialize_model(file), "m");
  EXPECT_EQ(back.extra_tensors, file.extra_tensors);
  EXPECT_EQ(back.model.W, file.model.W);

  file.extra_tensors["optimizer.adam_m_b"] = {7, std::numeric_limits<float>::quiet_NaN()};
  test::expect_error([&] { parse_model(serialize_model(file), "m"); },
                     "m: tensor 'optimizer.adam_m_b' holds NaN or infinite values");
  file.extra_tensors = {{"weight", {1}}};
  test::expect_error([&] { serialize_model(file); }, "extra tensor name 'weight' is taken");
}

}  // namespace
}  // namespace softreg
