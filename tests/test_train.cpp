// Training loop: seeded initialization and shuffling, partial last batch, bit-identical repeats.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

#include "softreg/error.hpp"
#include "softreg/optim.hpp"
#include "softreg/train.hpp"
#include "test_util.hpp"

namespace softreg {
namespace {

TEST(Rng, NormalHasTheRequestedMoments) {
  Rng rng(1);
  const int n = 200000;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    const double x = rng.normal(0.0, 0.01);
    sum += x;
    sum_sq += x * x;
  }
  const double mean = sum / n, stddev = std::sqrt(sum_sq / n - mean * mean);
  // Standard error of the mean is 0.01/sqrt(n) = 2.2e-5; of the std about 1.6e-5. Five of each.
  EXPECT_NEAR(mean, 0.0, 1.1e-4);
  EXPECT_NEAR(stddev, 0.01, 8e-5);
}

TEST(Rng, EngineIsStdMt19937_64WithTheSameStateText) {
  // The outputs across several refills of 312 words, and the state text (which checkpoints hold) at
  // the start, in the middle of a block and at its end, both ways between the two engines.
  for (std::uint64_t seed :
       {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{5489}, std::uint64_t{1} << 63 | 7}) {
    Mt19937_64 ours(seed);
    std::mt19937_64 standard(seed);
    for (int draws : {0, 1, 310, 1, 1, 500, 1000}) {
      for (int i = 0; i < draws; ++i)
        ASSERT_EQ(ours(), standard()) << "seed " << seed << ", draw " << i;
      std::ostringstream text;
      text << standard;
      EXPECT_EQ(ours.text(), text.str()) << "seed " << seed;

      Mt19937_64 restored(99);
      ASSERT_TRUE(restored.set_text(text.str()));
      std::mt19937_64 standard_restored;
      std::istringstream(ours.text()) >> standard_restored;
      for (int i = 0; i < 700; ++i) {
        const std::uint64_t expected = standard_restored();
        ASSERT_EQ(restored(), expected) << "seed " << seed << ", draw " << i << " after a restore";
      }
    }
  }
  Mt19937_64 engine(3);
  const std::string before = engine.text();
  std::string words_only;  // 312 words and no position
  for (int i = 0; i < 312; ++i)
    words_only += "1 ";
  for (const std::string& bad : {std::string(), std::string("1 2 3"), words_only, words_only + "313",
                                 words_only + "-1", words_only + "x"}) {
    EXPECT_FALSE(engine.set_text(bad)) << bad.size();
    EXPECT_EQ(engine.text(), before);
  }
  EXPECT_TRUE(engine.set_text(words_only + "312"));
}

TEST(Rng, BelowIsTheRejectionSamplerItWasWithOneDivision) {
  // below() skips computing the rejected sliver's start when a draw is clearly under it; the draws
  // must be those of the plain rejection sampler, including for n near 2^64, where about half of the
  // draws are rejected.
  const auto reference = [](std::mt19937_64& engine, std::uint64_t n) {
    const std::uint64_t max = std::numeric_limits<std::uint64_t>::max(), limit = max - max % n;
    std::uint64_t x = engine();
    while (x >= limit)
      x = engine();
    return x % n;
  };
  Rng rng(11);
  std::mt19937_64 engine(11);
  for (std::uint64_t n : {std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{7}, std::uint64_t{60000},
                          (std::uint64_t{1} << 63) + 1, std::numeric_limits<std::uint64_t>::max() - 1,
                          std::numeric_limits<std::uint64_t>::max()}) {
    for (int i = 0; i < 2000; ++i)
      ASSERT_EQ(rng.below(n), reference(engine, n)) << "n " << n << ", draw " << i;
  }
}

TEST(Rng, ShuffleIsAPermutationAndRepeatsFromState) {
  Rng a(42);
  std::vector<std::uint32_t> v(1000);
  std::iota(v.begin(), v.end(), 0u);
  const std::string state = a.state();
  a.shuffle(v);
  std::vector<std::uint32_t> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  for (std::uint32_t i = 0; i < 1000; ++i)
    EXPECT_EQ(sorted[i], i);
  EXPECT_FALSE(std::is_sorted(v.begin(), v.end()));

  Rng b(0);
  b.set_state(state);
  std::vector<std::uint32_t> w(1000);
  std::iota(w.begin(), w.end(), 0u);
  b.shuffle(w);
  EXPECT_EQ(v, w);
  EXPECT_THROW(b.set_state("not a state"), Error);
}

// The learning of AskAheadChoice with made-up batch times: blocks of 16 batches take the ways in turn,
// asking first; after 7 rounds of blocks the way that took the least time a row in most rounds is kept.
namespace {
using Way = AskAheadChoice::Way;
// Seconds a row of each way: asking, asking at the forward pass's start, rolling.
struct WayTimes {
  double asking, at_start, rolling;
  double of(Way way) const { return way == Way::kAsk ? asking : way == Way::kAtStart ? at_start : rolling; }
};
// Times every batch of `batches` (the epoch's first left out, as the trainer does) at its way's seconds
// a row, by the plan's answer, then ends the epoch.
void time_epoch(AskAheadChoice& choice, std::size_t batches, WayTimes times, std::size_t rows = 256) {
  const AskAheadChoice::Plan plan = choice.plan();
  for (std::size_t batch = 0; batch < batches; ++batch) {
    const double seconds = times.of(plan.way_of(batch)) * static_cast<double>(rows);
    choice.time_batch(batch, rows, batch == 0 ? 1.0 : seconds);  // the first: a slow epoch start
  }
  choice.end_epoch(batches);
}
}  // namespace

TEST(AskAheadChoice, TakesTheWaysInTurnUntilItKnowsThenKeepsTheFastest) {
  ::unsetenv("SOFTREG_ASK_AHEAD");
  AskAheadChoice choice;
  EXPECT_STREQ(choice.state_name(), "learning");
  const AskAheadChoice::Plan plan = choice.plan();
  EXPECT_TRUE(plan.asks(0));
  EXPECT_TRUE(plan.asks(15));
  EXPECT_FALSE(plan.asks(16));
  EXPECT_FALSE(plan.rolls(31));
  EXPECT_EQ(plan.way_of(31), Way::kAtStart);
  EXPECT_TRUE(plan.rolls(32));
  EXPECT_FALSE(plan.asks(47));
  EXPECT_TRUE(plan.asks(48));
  // 100 batches: not yet 7 rounds of blocks; the blocks go on across the epoch's end.
  time_epoch(choice, 100, {2e-6, 1e-6, 3e-6});
  EXPECT_STREQ(choice.state_name(), "learning");
  EXPECT_TRUE(choice.plan().asks(0));           // batch 100: block 6
  EXPECT_FALSE(choice.plan().asks(12));         // batch 112: block 7
  EXPECT_TRUE(choice.plan().rolls(28));         // batch 128: block 8
  time_epoch(choice, 234, {2e-6, 1e-6, 3e-6});  // the recipe's epoch: 334 batches, not yet 336
  EXPECT_STREQ(choice.state_name(), "learning");
  time_epoch(choice, 234, {2e-6, 1e-6, 3e-6});
  EXPECT_STREQ(choice.state_name(), "not asking");
  EXPECT_EQ(choice.rounds_won(Way::kAtStart), 7u);
  EXPECT_EQ(choice.rounds_won(Way::kAsk), 0u);
  for (std::size_t batch : {0, 16, 32, 500}) {
    EXPECT_FALSE(choice.plan().asks(batch));
    EXPECT_FALSE(choice.plan().rolls(batch));
  }
  time_epoch(choice, 234, {1e-6, 2e-6, 1e-6});  // decided: no more learning
  EXPECT_STREQ(choice.state_name(), "not asking");

  AskAheadChoice faster_asking;
  time_epoch(faster_asking, 400, {1e-6, 1.1e-6, 1.2e-6});
  EXPECT_STREQ(faster_asking.state_name(), "asking");
  EXPECT_EQ(faster_asking.rounds_won(Way::kAsk), 7u);
  EXPECT_TRUE(faster_asking.plan().asks(16));

  AskAheadChoice faster_rolling;
  time_epoch(faster_rolling, 400, {1.2e-6, 1.1e-6, 1e-6});
  EXPECT_STREQ(faster_rolling.state_name(), "rolling");
  EXPECT_EQ(faster_rolling.rounds_won(Way::kRolling), 7u);
  EXPECT_TRUE(faster_rolling.plan().rolls(16));
  EXPECT_FALSE(faster_rolling.plan().asks(0));
}

TEST(AskAheadChoice, ASlowSpellInOneRoundIsOutvoted) {
  ::unsetenv("SOFTREG_ASK_AHEAD");
  AskAheadChoice choice;
  const AskAheadChoice::Plan plan = choice.plan();
  for (std::size_t batch = 1; batch < 340; ++batch) {
    // Rolling is 10 % faster, but the host stalled its first block 5x: the sums would ask.
    const double per_row =
        WayTimes{1.1e-6, 1.2e-6, 1.0e-6}.of(plan.way_of(batch)) * (batch >= 32 && batch < 48 ? 5.0 : 1.0);
    choice.time_batch(batch, 256, per_row * 256);
  }
  choice.end_epoch(340);
  EXPECT_STREQ(choice.state_name(), "rolling");
  EXPECT_EQ(choice.rounds_won(Way::kRolling), 6u);
  EXPECT_EQ(choice.rounds_won(Way::kAsk), 1u);
}

TEST(AskAheadChoice, EqualWinsGoToTheLessTimeARow) {
  ::unsetenv("SOFTREG_ASK_AHEAD");
  // Asking wins rounds 0-2 by a little, rolling rounds 3-5 by much, round 6 goes to starting: 3, 3, 1.
  AskAheadChoice choice;
  const AskAheadChoice::Plan plan = choice.plan();
  for (std::size_t batch = 1; batch < 340; ++batch) {
    const std::size_t round = batch / 48;
    const WayTimes times = round < 3   ? WayTimes{1.0e-6, 1.1e-6, 1.01e-6}
                           : round < 6 ? WayTimes{1.0e-6, 1.1e-6, 0.5e-6}
                                       : WayTimes{1.0e-6, 0.9e-6, 1.0e-6};
    choice.time_batch(batch, 256, times.of(plan.way_of(batch)) * 256);
  }
  choice.end_epoch(340);
  EXPECT_EQ(choice.rounds_won(Way::kAsk), 3u);
  EXPECT_EQ(choice.rounds_won(Way::kRolling), 3u);
  EXPECT_STREQ(choice.state_name(), "rolling");
}

TEST(AskAheadChoice, TimesRowsNotBatchesAndEpochsOfOneBatchKeepAsking) {
  ::unsetenv("SOFTREG_ASK_AHEAD");
  // A short batch (an epoch's last) in each asking block: a block's mean batch took less time asking
  // (253 against 256 us), but a row took 5 % more.
  AskAheadChoice choice;
  const AskAheadChoice::Plan plan = choice.plan();
  for (std::size_t batch = 1; batch < 340; ++batch) {
    const std::size_t rows = batch % 48 == 4 ? 16 : 256;
    choice.time_batch(batch, rows,
                      WayTimes{1.05e-6, 1.0e-6, 1.02e-6}.of(plan.way_of(batch)) * static_cast<double>(rows));
  }
  choice.end_epoch(340);
  EXPECT_STREQ(choice.state_name(), "not asking");
  // Every epoch one batch, whose time holds the epoch's start: nothing to compare, so it keeps asking.
  AskAheadChoice one_batch;
  for (int epoch = 0; epoch < 400; ++epoch)
    time_epoch(one_batch, 1, {1.0, 2.0, 3.0});
  EXPECT_STREQ(one_batch.state_name(), "asking");
}

TEST(AskAheadChoice, WithoutRollingTakesTwoWaysInTurn) {
  ::unsetenv("SOFTREG_ASK_AHEAD");
  AskAheadChoice choice(/*can_roll=*/false);
  const AskAheadChoice::Plan plan = choice.plan();
  EXPECT_TRUE(plan.asks(0));
  EXPECT_EQ(plan.way_of(16), Way::kAtStart);
  EXPECT_TRUE(plan.asks(32));
  time_epoch(choice, 200, {1.2e-6, 1.1e-6, 1e-6});  // 7 rounds of two blocks are 224 batches
  EXPECT_STREQ(choice.state_name(), "learning");
  EXPECT_TRUE(choice.plan().asks(24));  // batch 224: block 14, past the learning's 14 blocks
  time_epoch(choice, 30, {1.2e-6, 1.1e-6, 1e-6});
  EXPECT_STREQ(choice.state_name(), "not asking");
  EXPECT_EQ(choice.rounds_won(Way::kAtStart), 7u);
  EXPECT_EQ(choice.rounds_won(Way::kRolling), 0u);
}

TEST(AskAheadChoice, TheEnvironmentForcesAWay) {
  ::setenv("SOFTREG_ASK_AHEAD", "no", 1);
  const AskAheadChoice never;
  ::setenv("SOFTREG_ASK_AHEAD", "yes", 1);
  const AskAheadChoice always;
  ::setenv("SOFTREG_ASK_AHEAD", "rolling", 1);
  const AskAheadChoice rolling, cannot_roll(/*can_roll=*/false);
  ::unsetenv("SOFTREG_ASK_AHEAD");
  EXPECT_STREQ(never.state_name(), "not asking");
  EXPECT_STREQ(always.state_name(), "asking");
  EXPECT_STREQ(rolling.state_name(), "rolling");
  EXPECT_STREQ(cannot_roll.state_name(), "learning");
  for (std::size_t batch : {0, 16, 17, 32}) {
    EXPECT_FALSE(never.plan().asks(batch));
    EXPECT_FALSE(never.plan().rolls(batch));
    EXPECT_TRUE(always.plan().asks(batch));
    EXPECT_TRUE(rolling.plan().rolls(batch));
    EXPECT_FALSE(rolling.plan().asks(batch));
    EXPECT_FALSE(cannot_roll.plan().rolls(batch));
  }
}

TEST(Model, InitializationFollowsTheSeed) {
  Rng a(5), b(5), c(6);
  const SoftmaxModel m1 = SoftmaxModel::initialized(784, 10, 0.01, a);
  const SoftmaxModel m2 = SoftmaxModel::initialized(784, 10, 0.01, b);
  const SoftmaxModel m3 = SoftmaxModel::initialized(784, 10, 0.01, c);
  EXPECT_EQ(m1.W, m2.W);
  EXPECT_NE(m1.W, m3.W);
  EXPECT_TRUE(m1.b.isZero(0));
  EXPECT_EQ(m1.inputs(), 784);
  EXPECT_EQ(m1.classes(), 10);
  const double stddev = std::sqrt(m1.W.cast<double>().array().square().mean());
  EXPECT_NEAR(stddev, 0.01, 0.0005);  // 7840 draws: standard error of the std about 8e-5
}

TEST(Optim, StepDividesByTheActualBatchSize) {
  SoftmaxModel m;
  m.W = WeightMatrix::Constant(2, 3, 1.0f);
  m.b = BiasVector::Constant(3, 1.0f);
  sgd_step(m, WeightMatrix::Constant(2, 3, 4.0f), BiasVector::Constant(3, 2.0f), /*lr=*/0.5,
           /*batch_size=*/4);
  EXPECT_FLOAT_EQ(m.W(1, 2), 0.5f);  // 1 - 0.5 * 4 / 4
  EXPECT_FLOAT_EQ(m.b(0), 0.75f);    // 1 - 0.5 * 2 / 4
}

struct SmallProblem {
  Dataset train = test::random_dataset(/*n=*/1000, 8, 8, /*classes=*/4, /*seed=*/1);
  Dataset test = test::random_dataset(/*n=*/200, 8, 8, /*classes=*/4, /*seed=*/2);
  SmallProblem() {
    // Make the classes learnable: brighten a band of pixels chosen by the label.
    for (auto* set : {&train, &test}) {
      for (std::size_t i = 0; i < set->count; ++i) {
        std::uint8_t* img = set->pixels.mutable_data() + i * set->features();
        for (std::size_t d = 16u * set->labels[i]; d < 16u * set->labels[i] + 16; ++d)
          img[d] = 255;
      }
    }
  }
};

TrainConfig small_config(int threads) {
  TrainConfig c;
  c.batch_size = 64;  // 1000 = 15 * 64 + 40: the last batch is partial
  c.epochs = 3;
  c.seed = 9;
  c.threads = threads;
  return c;
}

TEST(Trainer, SameSeedGivesBitIdenticalWeights) {
  const SmallProblem p;
  for (int threads : {1, 2, 3}) {
    Trainer a(small_config(threads), p.train, p.test);
    Trainer b(small_config(threads), p.train, p.test);
    const EpochMetrics ma = a.run_epoch().value();
    const EpochMetrics mb = b.run_epoch().value();
    EXPECT_EQ(a.model().W, b.model().W) << threads << " threads";
    EXPECT_EQ(a.model().b, b.model().b) << threads << " threads";
    EXPECT_EQ(ma.train_loss, mb.train_loss);
    EXPECT_EQ(ma.test_acc, mb.test_acc);
  }
  TrainConfig other = small_config(1);
  other.seed = 10;
  Trainer a(small_config(1), p.train, p.test), c(other, p.train, p.test);
  a.run_epoch();
  c.run_epoch();
  EXPECT_NE(a.model().W, c.model().W);
}

TEST(Trainer, ThreadCountsAgreeWithinRounding) {
  const SmallProblem p;
  Trainer one(small_config(1), p.train, p.test), two(small_config(2), p.train, p.test);
  const EpochMetrics m1 = one.run_epoch().value(), m2 = two.run_epoch().value();
  EXPECT_LT((one.model().W - two.model().W).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_NEAR(m1.train_loss, m2.train_loss, 1e-5);
}

TEST(Trainer, LearnsAndReportsEachBatch) {
  const SmallProblem p;
  Trainer trainer(small_config(2), p.train, p.test);
  std::vector<std::size_t> progress;
  EpochMetrics first = *trainer.run_epoch([&](std::size_t done, std::size_t total) {
    EXPECT_EQ(total, 1000u);
    progress.push_back(done);
  });
  ASSERT_EQ(progress.size(), 16u);  // 15 full batches and one of 40
  EXPECT_EQ(progress[14], 960u);
  EXPECT_EQ(progress.back(), 1000u);
  EpochMetrics last = first;
  for (int e = 0; e < 5; ++e)
    last = trainer.run_epoch().value();
  EXPECT_EQ(last.epoch, 6);
  EXPECT_EQ(trainer.epochs_done(), 6);
  EXPECT_LT(last.train_loss, first.train_loss);
  EXPECT_GT(last.test_acc, 0.9);  // the band makes the classes separable
  EXPECT_GT(first.train_loss, 0.0);
  EXPECT_TRUE(std::isfinite(last.test_loss));
}

}  // namespace
}  // namespace softreg
