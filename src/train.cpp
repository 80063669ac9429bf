// Training loop. Each batch is cut into one contiguous slice per thread; the slices' gradients are
// summed in slice order, so a run is bit-for-bit repeatable for a given seed and thread count.
#include "softreg/train.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iterator>
#include <limits>
#include <numeric>
#include <string_view>
#include <utility>

#include "softreg/error.hpp"
#include "softreg/metrics.hpp"

namespace softreg {

namespace {

// sums[k] = the sum of values[r * stride + k] over the rows r = 0..count-1, in that order from 0, for
// k < width: each class's dlogits over a batch's rows, for its bias, added as on one thread whatever
// the schedule. Rows outside and 16 classes inside, so that the classes' chains of additions run side
// by side: one class after the other, each addition waited for the one before (`bench` of the recipe
// on two threads, perf: that loop 2.6 % of the samples, sum_columns 0.9 %; the epoch's change was
// inside the noise).
void sum_columns(const float* values, std::size_t count, std::size_t stride, std::size_t width, float* sums) {
  constexpr std::size_t kSide = 16;
  for (std::size_t k0 = 0; k0 < width; k0 += kSide) {
    const std::size_t n = std::min(kSide, width - k0);
    float acc[kSide] = {};
    for (std::size_t r = 0; r < count; ++r) {
      const float* row = values + r * stride + k0;
      for (std::size_t k = 0; k < n; ++k)
        acc[k] += row[k];
    }
    std::copy_n(acc, n, sums + k0);
  }
}

// Copies n floats, n small (a row's logits of half of the classes): as std::copy_n, the compiler calls
// memmove for each row, which took 2.7 % of the split-by-classes epoch's samples (Zen 4, perf) for 20
// bytes at a time. Fixed-size pieces are moves in registers.
void copy_few(const float* src, std::size_t n, float* dst) {
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4)
    std::memcpy(dst + i, src + i, 4 * sizeof(float));
  switch (n - i) {
    case 3:
      dst[i + 2] = src[i + 2];
      [[fallthrough]];
    case 2:
      dst[i + 1] = src[i + 1];
      [[fallthrough]];
    case 1:
      dst[i] = src[i];
      break;
    default:
      break;
  }
}

// The margin's weights W_1 - W_0 (W of two classes, (2, D)) into margin_W; returns its bias b_1 - b_0.
float margin_weights(const float* W, const float* b, std::size_t D, float* margin_W) {
  for (std::size_t d = 0; d < D; ++d)
    margin_W[d] = W[D + d] - W[d];
  return b[1] - b[0];
}

// Two classes as one (Trainer::trains_two_classes_as_one), for a forward pass set up for both classes
// (their W and b, one dlogit a row out): the margin's weights W_1 - W_0 into margin_W, then the margins
// o_1 - o_0 and their sigmoid, loss and dlogit. Returns the rows predicted right. Three threads or more
// take it (their slices of rows are not the halves of the sums); one or two take fast_margin_pass.
std::int64_t forward_two_classes_as_one(FastForwardArgs forward, float* margin_W) {
  const float margin_b = margin_weights(forward.W, forward.b, forward.inputs, margin_W);
  forward.classes = 1;
  forward.W = margin_W;
  forward.b = &margin_b;
  forward.logits_only = true;
  fast_forward_rows(forward);
  return fast_binary_softmax({forward.labels, forward.count, forward.dlogits, forward.row_loss});
}
}  // namespace

void check_recipe(const TrainConfig& c) {
  const auto fail = [](std::string_view name, std::string_view range, auto value) {
    throw Error(fmt::format("{} must be {}, got {}", name, range, value));
  };
  const auto known = [](const auto& names, const std::string& name) {
    return std::find(std::begin(names), std::end(names), name) != std::end(names);
  };
  if (!(std::isfinite(c.lr) && c.lr > 0)) fail("lr", "> 0", c.lr);
  if (c.batch_size < 1) fail("batch-size", ">= 1", c.batch_size);
  if (c.epochs < 1 || c.epochs > kMaxEpochs)
    fail("epochs", fmt::format("between 1 and {}", kMaxEpochs), c.epochs);
  if (c.threads < 1) fail("threads", ">= 1", c.threads);
  if (!(c.init_std >= 0 && c.init_std <= kMaxInitStd))
    fail("init-std", fmt::format("between 0 and {}", kMaxInitStd), c.init_std);
  if (!known(kOptimizerNames, c.optimizer))
    fail("optimizer", "one of sgd, momentum, nesterov, adam, adamw, lbfgs", c.optimizer);
  for (const auto& [name, value] :
       {std::pair{"momentum", c.momentum}, {"beta1", c.beta1}, {"beta2", c.beta2}}) {
    if (!(value >= 0 && value < 1)) fail(name, "in [0, 1)", value);
  }
  if (!(std::isfinite(c.eps) && c.eps > 0)) fail("eps", "> 0", c.eps);
  if (!(std::isfinite(c.weight_decay) && c.weight_decay >= 0)) fail("weight-decay", ">= 0", c.weight_decay);
  if (!(std::isfinite(c.l2) && c.l2 >= 0)) fail("l2", ">= 0", c.l2);
  if (!known(kScheduleNames, c.schedule.kind))
    fail("schedule", "one of constant, step, cosine", c.schedule.kind);
  if (!(c.schedule.warmup_epochs >= 0 && c.schedule.warmup_epochs <= c.epochs))
    fail("warmup", fmt::format("between 0 and the number of epochs ({})", c.epochs),
         c.schedule.warmup_epochs);
  if (c.schedule.step_epochs < 1 || c.schedule.step_epochs > kMaxEpochs)
    fail("lr-step", fmt::format("between 1 and {}", kMaxEpochs), c.schedule.step_epochs);
  if (!(c.schedule.gamma > 0 && c.schedule.gamma <= 1)) fail("lr-gamma", "in (0, 1]", c.schedule.gamma);
  if (!(c.val_fraction >= 0 && c.val_fraction < 1)) fail("val-fraction", "in [0, 1)", c.val_fraction);
  if (c.early_stop < 0 || c.early_stop > kMaxEpochs)
    fail("early-stop", fmt::format("between 0 and {}", kMaxEpochs), c.early_stop);
  if (c.max_iter < 1 || c.max_iter > kMaxLbfgsIterations)
    fail("max-iter", fmt::format("between 1 and {}", kMaxLbfgsIterations), c.max_iter);
  if (!(std::isfinite(c.tol) && c.tol >= 0)) fail("tol", ">= 0", c.tol);
  if (c.history_size < 1 || c.history_size > kMaxLbfgsHistory)
    fail("history-size", fmt::format("between 1 and {}", kMaxLbfgsHistory), c.history_size);
  if (c.compute != "f32" && c.compute != "bf16") fail("compute", "f32 or bf16", c.compute);
  if (c.compute == "bf16") {
    // The bfloat16 kernels are the fused SGD step's: the other recipes need the float32 gradient.
    const auto needs = [](std::string_view what) { throw Error(fmt::format("compute bf16 needs {}", what)); };
    if (c.kernel != KernelChoice::kFast) needs("the fast kernel");
    if (c.optimizer != "sgd") needs("optimizer sgd");
    if (c.l2 != 0) needs("l2 0");
    if (c.standardize) needs("inputs that are not standardized");
  }
}

Trainer::Trainer(const TrainConfig& config, const Dataset& train, const Dataset& test,
                 const Dataset* validation)
    : Trainer(config, train, test,
              // A full-batch (L-BFGS) run takes no minibatch steps; TrainingRun fits it instead.
              config.optimizer == "lbfgs" ? std::make_unique<Sgd>(config.lr)
                                          : make_optimizer(config.optimizer_settings()),
              validation) {}

Trainer::Trainer(const TrainConfig& config, const Dataset& train, const Dataset& test,
                 std::unique_ptr<Optimizer> optimizer, const Dataset* validation)
    : config_(config),
      optimizer_(std::move(optimizer)),
      train_(train),
      test_(test),
      rng_(config.seed),
      model_(SoftmaxModel::initialized(static_cast<int>(train.features()), train.num_classes, config.init_std,
                                       rng_)),
      pool_(config.threads),
      order_(train.count) {
  if (!optimizer_) throw Error("the trainer needs an optimizer");
  if (config.compute == "bf16" && !fast_bf16_supported()) {
    throw Error(
        cpu_has_avx512_bf16()
            ? fmt::format("compute bf16 needs the AVX-512 fast path (restricted to {})", simd_target())
            : fmt::format("compute bf16: this CPU has no AVX-512 BF16 (the fast path runs {})",
                          simd_target()));
  }
  ask_ahead_.fill(AskAheadChoice(/*can_roll=*/config.compute != "bf16"));
  train_rows_.resize(train.count);
  std::iota(train_rows_.begin(), train_rows_.end(), 0u);
  if (validation) {
    if (config.val_fraction > 0) throw Error("a validation set is given: no validation fraction applies");
    if (validation->features() != train.features() || validation->num_classes != train.num_classes) {
      throw Error(fmt::format("the validation set has {} features and {} classes, the training set {} and {}",
                              validation->features(), validation->num_classes, train.features(),
                              train.num_classes));
    }
    if (validation->count == 0) throw Error("the validation set has no rows");
    validation_ = *validation;
  } else if (config.val_fraction > 0) {
    const std::vector<std::uint32_t> held =
        stratified_holdout_of_some(train, config.val_fraction, config.seed, "validation");
    validation_ = subset(train, held);
    std::vector<std::uint32_t> rest;
    std::set_difference(train_rows_.begin(), train_rows_.end(), held.begin(), held.end(),
                        std::back_inserter(rest));
    train_rows_ = std::move(rest);
    order_.resize(train_rows_.size());
  }
  epoch_rng_state_ = rng_.state();
  if (config.standardize) {
    standardization_ = fit_standardization(train, train_rows_, pool_);
    fold_standardization(model_, *standardization_, folded_);
  }
  // Two classes as one on one or two threads: one pass over the rows, asking for them as it goes.
  if (trains_two_classes_as_one() && pool_.threads() <= 2)
    ask_ahead_.fill(AskAheadChoice::decided(AskAheadChoice::Way::kRolling));
  if (uses_fast_path()) return;  // the per-thread gradient buffers below serve only the naive path
  const auto threads = static_cast<std::size_t>(pool_.threads());
  thread_dW_.assign(threads, WeightMatrix::Zero(model_.W.rows(), model_.W.cols()));
  thread_db_.assign(threads, BiasVector::Zero(model_.b.size()));
  thread_sums_.resize(threads);
  workspaces_.resize(threads);
}

TrainerState Trainer::state() const {
  return {model_,
          epoch_rng_state_,
          epochs_done_,
          batches_done_,
          partial_sums_.loss,
          partial_sums_.correct,
          optimizer_->state()};
}

std::size_t Trainer::batches_per_epoch() const {
  return (train_rows_.size() + config_.batch_size - 1) / config_.batch_size;
}

double Trainer::lr_of_batch(std::size_t batch) const {
  return scheduled_lr(config_.schedule, config_.lr, epochs_done_, batch, batches_per_epoch(), config_.epochs);
}

void Trainer::restore(const TrainerState& state) {
  if (state.model.W.rows() != model_.W.rows() || state.model.W.cols() != model_.W.cols() ||
      state.model.b.size() != model_.b.size()) {
    throw Error(fmt::format("the checkpoint's model has {} inputs and {} classes, but the data has {} and {}",
                            state.model.W.rows(), state.model.W.cols(), model_.W.rows(), model_.W.cols()));
  }
  if (state.batches_done >= batches_per_epoch()) throw Error("checkpoint is past the end of its epoch");
  rng_.set_state(state.epoch_rng_state);
  model_ = state.model;
  if (standardization_) fold_standardization(model_, *standardization_, folded_);
  epoch_rng_state_ = state.epoch_rng_state;
  epochs_done_ = state.epochs_done;
  batches_done_ = state.batches_done;
  partial_sums_ = {state.partial_loss, state.partial_correct};
  optimizer_->restore(state.optimizer, model_);
}

void Trainer::warm_start(const SoftmaxModel& parameters) {
  if (epochs_done_ > 0 || batches_done_ > 0) throw Error("a warm start comes before any training");
  if (parameters.W.rows() != model_.W.rows() || parameters.W.cols() != model_.W.cols() ||
      parameters.b.size() != model_.b.size()) {
    throw Error("the warm start's model shape does not match the data");
  }
  model_ = parameters;
  if (standardization_) fold_standardization(model_, *standardization_, folded_);
}

BatchSums Trainer::train_batch(std::span<const std::uint32_t> rows, double lr) {
  const std::size_t slices = thread_dW_.size();
  const std::size_t slice_rows = (rows.size() + slices - 1) / slices;
  pool_.run(slices, [&](std::size_t s) {
    thread_dW_[s].setZero();
    thread_db_[s].setZero();
    thread_sums_[s] = {};
    const std::size_t begin = std::min(rows.size(), s * slice_rows);
    const std::size_t end = std::min(rows.size(), begin + slice_rows);
    if (begin < end) {
      thread_sums_[s] = accumulate_gradient(train_, rows.subspan(begin, end - begin), model(), thread_dW_[s],
                                            thread_db_[s], workspaces_[s]);
    }
  });
  BatchSums sums = thread_sums_[0];
  for (std::size_t s = 1; s < slices; ++s) {
    thread_dW_[0] += thread_dW_[s];
    thread_db_[0] += thread_db_[s];
    sums += thread_sums_[s];
  }
  step(thread_dW_[0], thread_db_[0], rows.size(), lr);
  return sums;
}

void Trainer::step(WeightMatrix& dW, const BiasVector& db, std::size_t count, double lr) {
  if (standardization_) standardize_gradient(dW, db, *standardization_);
  add_l2_gradient(dW, model_.W, config_.l2, count);
  optimizer_->set_learning_rate(lr);
  optimizer_->step(model_, dW, db, count);
  if (standardization_) fold_standardization(model_, *standardization_, folded_);
}

bool Trainer::uses_fast_path() const {
  return config_.kernel == KernelChoice::kFast;
}

bool Trainer::uses_fused_sgd() const {
  // The fused kernel applies the plain step to the model it reads; an L2 term needs the gradient
  // first, and standardized parameters are not the model the kernels read.
  return uses_fast_path() && config_.l2 == 0 && !standardization_ &&
         dynamic_cast<const Sgd*>(optimizer_.get()) != nullptr;
}

void Trainer::check_batch_loss(double loss_sum, std::size_t count, double lr) {
  const double mean = loss_sum / static_cast<double>(count);
  const int K = model_.classes();
  const bool runaway = mean > kRunawayLossFactor * std::log(std::max(K, 2));
  if (runaway) ++runaway_batches_;
  if (!std::isfinite(mean) || (runaway && config_.stop_on_runaway_loss)) {
    throw TrainingDiverged(epochs_done_ + 1, batches_done_ + 1, mean, lr, K);
  }
}

bool Trainer::train_epoch_naive(const BatchCallback& on_batch, const StopRequest& should_stop) {
  for (std::size_t begin = batches_done_ * config_.batch_size; begin < order_.size();
       begin += config_.batch_size) {
    const std::size_t end = std::min(order_.size(), begin + config_.batch_size);
    const double lr = current_lr();
    const BatchSums sums =
        train_batch(std::span<const std::uint32_t>(order_).subspan(begin, end - begin), lr);
    check_batch_loss(sums.loss, end - begin, lr);
    partial_sums_ += sums;
    ++batches_done_;
    if (on_batch) on_batch(end, order_.size());
    if (end < order_.size() && should_stop && should_stop()) return false;
  }
  return true;
}

EpochWayChoice::EpochWayChoice(std::vector<EpochWay> ways, bool may_go_alone)
    : ways_(std::move(ways)), seconds_(ways_.size()), chosen_(ways_.at(0)), may_go_alone_(may_go_alone) {}

EpochWay EpochWayChoice::learned_way() const {
  if (!learning()) return chosen_;
  return epochs_timed_ == 0 ? ways_[0] : ways_[epochs_timed_ - 1];
}

EpochWay EpochWayChoice::way() const {
  return alone_ && epochs_alone_ < epochs_alone_before_try_ ? EpochWay::kOneThread : learned_way();
}

void EpochWayChoice::timed(double seconds, double waited_seconds, bool stopped_stalled) {
  if (alone_ && epochs_alone_ < epochs_alone_before_try_) {
    ++epochs_alone_;
    alone_seconds_ = seconds;
    return;
  }
  const bool stalled = may_go_alone_ && learned_way() != EpochWay::kOneThread &&
                       (stopped_stalled || is_stall(waited_seconds, seconds));
  if (alone_) {  // the team's try
    if (stalled || seconds >= alone_seconds_) {
      epochs_alone_ = 0;
      epochs_alone_before_try_ = std::min(2 * epochs_alone_before_try_, kMostEpochsAlone);
      return;
    }
    alone_ = false;
  } else if (stalled) {
    alone_ = true;
    epochs_alone_ = 0;
    epochs_alone_before_try_ = kFirstEpochsAlone;
    return;
  }
  if (!learning()) return;
  ++epochs_timed_;
  if (epochs_timed_ == 1) return;  // the first epoch warms up: not compared
  seconds_[epochs_timed_ - 2] = seconds;
  if (epochs_timed_ == ways_.size() + 1) {
    const auto fastest = std::min_element(seconds_.begin(), seconds_.end()) - seconds_.begin();
    chosen_ = ways_[static_cast<std::size_t>(fastest)];
  }
}

AskAheadChoice::AskAheadChoice(bool can_roll) : ways_(can_roll ? kWays : 2) {
  const char* forced = std::getenv("SOFTREG_ASK_AHEAD");
  if (!forced) return;
  const std::string_view name = forced;
  if (name != "yes" && name != "no" && (name != "rolling" || !can_roll)) return;
  learning_ = false;
  way_ = name == "yes" ? Way::kAsk : name == "no" ? Way::kAtStart : Way::kRolling;
}

AskAheadChoice AskAheadChoice::decided(Way way) {
  AskAheadChoice choice;
  choice.learning_ = false;
  choice.way_ = way;
  return choice;
}

void AskAheadChoice::time_batch(std::size_t batch, std::size_t rows, double seconds) {
  if (!learning_ || batch == 0) return;
  const std::size_t block = (timed_before_ + batch) / kBlock;
  if (block >= ways_ * kRounds) return;  // enough: the epoch's end decides
  block_seconds_[block] += seconds;
  block_rows_[block] += static_cast<double>(rows);
}

void AskAheadChoice::end_epoch(std::size_t batches) {
  if (!learning_) return;
  timed_before_ += batches;
  if (timed_before_ < ways_ * kRounds * kBlock) return;
  // The blocks of a round were timed a few milliseconds apart, so a slow spell of the host mostly
  // falls on a whole round or on one; a majority of rounds outvotes it where the sums of all would not.
  // Equal wins go to the way of less time a row over all its blocks.
  std::array<double, kWays> per_row{};
  rounds_won_ = {};
  bool any = false;
  for (std::size_t round = 0; round < kRounds; ++round) {
    const std::size_t first = round * ways_;
    bool whole = true;
    for (std::size_t w = 0; w < ways_; ++w)
      whole = whole && block_rows_[first + w] > 0;
    if (!whole) continue;  // epochs of one batch
    any = true;
    std::size_t best = 0;
    for (std::size_t w = 0; w < ways_; ++w) {
      const double seconds_a_row = block_seconds_[first + w] / block_rows_[first + w];
      per_row[w] += seconds_a_row;
      if (seconds_a_row < block_seconds_[first + best] / block_rows_[first + best]) best = w;
    }
    ++rounds_won_[best];
  }
  learning_ = false;
  way_ = Way::kAsk;  // nothing to compare (every epoch one batch): ask, as before any learning
  if (!any) return;
  std::size_t best = 0;
  for (std::size_t w = 1; w < ways_; ++w) {
    if (rounds_won_[w] > rounds_won_[best] ||
        (rounds_won_[w] == rounds_won_[best] && per_row[w] < per_row[best]))
      best = w;
  }
  way_ = static_cast<Way>(best);
}

const char* AskAheadChoice::state_name() const {
  if (learning_) return "learning";
  switch (way_) {
    case Way::kAsk:
      return "asking";
    case Way::kAtStart:
      return "not asking";
    case Way::kRolling:
      return "rolling";
  }
  return "learning";
}

void Trainer::add_thread_tallies(std::span<const ThreadTally> tallies) {
  const double threads = static_cast<double>(tallies.size());
  // Never fewer: where a team stalled part-way (run_epoch), thread 0 adds the epoch's rest alone.
  thread_busy_seconds_.resize(std::max(thread_busy_seconds_.size(), tallies.size()));
  for (std::size_t t = 0; t < tallies.size(); ++t) {
    const ThreadTally& tally = tallies[t];
    thread_busy_seconds_[t] += tally.forward + tally.backward;
    partial_sums_.correct += tally.correct;
    barrier_wait_ += tally.waited / threads;
    forward_seconds_ += tally.forward / threads;
    backward_seconds_ += tally.backward / threads;
  }
}

void Trainer::order_labels(std::size_t first) {
  // Read in sequence by the forward passes. Looked up batch by batch instead, each was a cache miss: the
  // rows streaming through every cache level leave no label there (Zen 5: about 2 us a batch on one
  // thread, a third of the two-class backward pass).
  epoch_labels_.resize(order_.size());
  for (std::size_t i = first; i < order_.size(); ++i)
    epoch_labels_[i] = train_.labels[order_[i]];
}

void Trainer::close_batch_met_once(std::size_t batch, std::size_t end, std::size_t count, double lr,
                                   const BatchCallback& on_batch, const StopRequest& should_stop,
                                   const float* losses, MetOnceTeam& team) {
  try {
    if (close_batch(end, count, lr, on_batch, should_stop, losses)) team.stop_at = batch + 1;
  } catch (...) {
    team.error = std::current_exception();
    team.stop_at = batch + 1;
  }
}

bool Trainer::finish_met_once(const MetOnceTeam& team) {
  add_thread_tallies(team.tallies);
  if (team.error) std::rethrow_exception(team.error);
  return team.stop_at == MetOnceTeam::kNoStop;
}

std::chrono::steady_clock::time_point Trainer::ThreadTally::lap(double& phase) {
  const auto now = std::chrono::steady_clock::now();
  phase += std::chrono::duration<double>(now - mark).count();
  mark = now;
  return now;
}

void Trainer::ThreadTally::meet(SpinBarrier& barrier, std::size_t thread, double& phase) {
  const auto arrived = lap(phase);
  barrier.arrive_and_wait(thread);
  mark = std::chrono::steady_clock::now();
  const double wait = std::chrono::duration<double>(mark - arrived).count();
  waited += wait;
  if (live) {  // only this thread writes its counts
    live->seconds.store(live->seconds.load(std::memory_order_relaxed) + wait, std::memory_order_relaxed);
    if (wait > LiveWait::kLongSeconds)
      live->long_waits.store(live->long_waits.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
}

bool Trainer::close_batch(std::size_t end, std::size_t count, double lr, const BatchCallback& on_batch,
                          const StopRequest& should_stop, const float* losses) {
  if (!losses) losses = batch_loss_.data();
  const double loss_before = partial_sums_.loss;
  for (std::size_t r = 0; r < count; ++r)
    partial_sums_.loss += losses[r];
  check_batch_loss(partial_sums_.loss - loss_before, count, lr);
  if (ask_ahead_now_ && ask_ahead_now_->learning()) {
    const auto now = std::chrono::steady_clock::now();
    ask_ahead_now_->time_batch(batches_done_, count,
                               std::chrono::duration<double>(now - batch_closed_).count());
    batch_closed_ = now;
  }
  ++batches_done_;
  if (on_batch) on_batch(end, order_.size());
  return end < order_.size() && should_stop && should_stop();
}

bool Trainer::sums_in_two_halves() const {
  constexpr std::size_t kHalvesMaxBytes = 128 * 1024;  // a half's sums: for the recipe, 31 KB
  // bfloat16 sums pairs of rows, 2j and 2j+1, together: no halves.
  return config_.compute != "bf16" && uses_fused_sgd() &&
         static_cast<std::size_t>(model_.classes()) * train_.features() * sizeof(float) <= kHalvesMaxBytes;
}

bool Trainer::trains_two_classes_as_one() const {
  // The margin halves the multiply-adds of both passes and the conversions of the forward pass's bytes
  // serve one instead of two: (2, 784, u8) 4.06 -> 3.10 ms an epoch on two threads (one die), 6.6-6.8
  // -> 4.8-4.9 ms on one (Zen 4, BENCHMARKS.md). Only with the sums in halves: the step from them is
  // where class 0 takes the opposite of class 1's (FastHalvesStepArgs::mirror).
  return model_.classes() == 2 && sums_in_two_halves();
}

bool Trainer::can_split_by_classes() const {
  // Split by classes, each thread takes its sums as train_epoch_fast does: as two halves of rows where
  // that takes halves, otherwise over all rows in order; in bfloat16 over the pairs of rows. Two
  // classes trained as one have one class's sums to split.
  return pool_.threads() == 2 && model_.classes() >= 2 && uses_fused_sgd() && !trains_two_classes_as_one();
}

bool Trainer::may_go_alone() const {
  const char* solo = std::getenv("SOFTREG_SOLO");
  const char* split = std::getenv("SOFTREG_SPLIT");
  return uses_fast_path() && pool_.threads() >= 2 && config_.compute != "bf16" &&
         !(solo && std::string_view(solo) == "no") && !(split && *split);
}

std::vector<EpochWay> Trainer::epoch_ways() {
  round_trip_ = 0;
  if (!uses_fast_path()) return {EpochWay::kByRows};
  const auto forced = [](const char* name) {
    const char* value = std::getenv(name);
    return std::string(value ? value : "");
  };
  const std::string split = forced("SOFTREG_SPLIT"), solo = forced("SOFTREG_SOLO");
  std::vector<EpochWay> ways;
  if (solo != "yes") {
    // Which way pays depends on the machine (EpochWayChoice learns it); the rule below only says which
    // may, and which starts (the run's first two epochs). Split by rows, the threads hand each other
    // their gradient sums every batch (for the recipe 31 KB; W's lines too, before
    // train_epoch_two_copies); by classes, only the logits (5 KB), but each thread reads every row.
    // On a Zen 4 KVM guest whose host moved the two vCPUs between dies from minute to minute, a
    // line's round trip took 50-70 ns on one die and 280-370 ns across two; the recipe's epoch split by
    // rows (W's lines and the sums crossing) took 11.6-12.6 and 17.5-19.0 ms, split by classes 12.3-13.8
    // and 13.9-16.0 ms (BENCHMARKS.md). The measurement takes about 40 us, once a run.
    // With few classes W is small, so little crosses split by rows, while split by classes each thread
    // still reads every row for its one or two classes: on two dies (round trip 290-320 ns), synthetic
    // bytes of 784 features, 10 epochs, rows against classes: K = 2 6.0 against 7.6 ms, K = 4 8.9
    // against 10.3, K = 6 11.1 against 10.8, K = 10 17.4 against 13.3, K = 17 27.7 against 22.7, K = 40
    // 64.4 against 41.6.
    // With many, split by classes wins on one die too: K = 17 19.0-19.1 against 19.2-19.4 ms, K = 40
    // 42.7 against 39.9-40.1 (round trip 64-66 ns, two rounds). Since the rows come in 2 MB pages
    // (map_file; each thread reading every row cost it a TLB miss a row), from 10 classes: on one die,
    // Fashion-MNIST 11.28-11.76 ms an epoch against 11.62-11.99 (5 of 5 alternated pairs), synthetic
    // K = 10 11.33-11.55 against 11.53-11.63, but K = 8 9.61-10.01 against 9.21-9.40 (BENCHMARKS.md).
    // A model too large for the sums in two halves splits by rows on one die: each thread's forward
    // pass then reads half the rows, W from L3 either way. Synthetic (100, 512, f32), rows against
    // classes, 3 epochs: one die 73.0-73.6 against 78.8-83.1 ms, two dies 107.6 against 85.3-86.7 ms;
    // (1000, 1024, f32, 100,000 rows): one die 2.38 against 2.49-2.59 s, two dies 2.84-2.97 against
    // 2.52-2.55 s (BENCHMARKS.md).
    // bfloat16 may split by classes only with W16 of 256 KB or more: three meetings a batch
    // (train_epoch_split_classes) against the half of W16 that crosses between the dies split by rows.
    // Two dies (round trip 320-380 ns), Zen 5, rows against classes: (1000, 1024, f32), 100,000 rows
    // 1.05-1.13 s against 0.90-1.09 s an epoch (4 of 4 alternated pairs faster, the backward pass 27 %);
    // (300, 1024, f32), 30,000 rows, 98-113 against 108-117 ms (about even); (100, 512, f32) 57 against
    // 52 ms; the recipe's shape 16.3 against 23.7 ms (BENCHMARKS.md).
    constexpr int kMinClassesToSplit = 8, kMinClassesToSplitOnOneDie = 10;
    constexpr std::size_t kMinBf16BytesToSplit = 256 * 1024;
    const bool classes_may_pay =
        model_.classes() >= kMinClassesToSplit &&
        (config_.compute != "bf16" ||
         static_cast<std::size_t>(model_.classes()) * train_.features() * sizeof(std::uint16_t) >=
             kMinBf16BytesToSplit);
    const bool by_classes =
        can_split_by_classes() && (split == "classes" || (split != "rows" && classes_may_pay));
    const bool by_rows = !by_classes || split != "classes";
    const auto classes_first = [&] {
      if (!by_rows) return true;
      if (model_.classes() >= kMinClassesToSplitOnOneDie && sums_in_two_halves()) return true;
      round_trip_ = core_round_trip_seconds(pool_, /*seconds=*/0);
      return round_trip_ > kTwoDiesRoundTripSeconds;
    };
    if (by_classes && classes_first()) {
      ways.push_back(EpochWay::kByClasses);
      if (by_rows) ways.push_back(EpochWay::kByRows);
    } else {
      ways.push_back(EpochWay::kByRows);
      if (by_classes) ways.push_back(EpochWay::kByClasses);
    }
  }
  const bool alone_may_pay = pool_.threads() >= 2 && config_.compute != "bf16" &&
                             train_.features() < EpochWayChoice::kMostInputsAlone;
  if (solo == "yes" || (solo != "no" && alone_may_pay)) ways.push_back(EpochWay::kOneThread);
  return ways;
}

bool Trainer::train_epoch_split_classes(const BatchCallback& on_batch, const StopRequest& should_stop) {
  // Two threads, each owning half of the classes: its rows of W and its entries of b, for all of the
  // batch's rows. They meet once a batch, when both have the logits of their classes; each then takes
  // the softmax of every row (counting the loss and accuracy of its half of them), and sums and steps
  // its classes from every row. What crosses between the cores is each batch's logits (for the recipe
  // 5 KB each way), where split by rows the threads hand each other their halves' sums (31 KB a
  // batch): on a host that puts the two vCPUs on two dies, those lines cost 350 ns each way
  // (BENCHMARKS.md). Each (row, class) logit, dlogit and (class, input) sum is computed as on one
  // thread (the sums as two halves of rows, FastUpdateArgs::second_half, where one thread takes them so;
  // over all rows in order for a larger model), so the bits do not change.
  //
  // In bfloat16 the team meets three times a batch: each thread packs half of the rows (its half of
  // the softmax's rows), and when both halves are packed takes its classes' logits from both; when
  // both have their logits, each takes the softmax of its half of the rows only; when both have their
  // dlogits, each pairs every row (from the packed rows, which is what one thread sums) and sums and
  // steps its classes. Its rows of W16 are then its own, where split by rows each forward pass reads
  // the half of W16 that the other thread's update has just written (for 1,000 classes of 1,024 inputs
  // 1 MB a batch), and neither thread reads or packs a row twice. (In float32 the first way, one
  // meeting and the softmax of every row on both threads, is faster with 10 classes, where the softmax
  // is cheap against a meeting; from 32 classes float32 takes the softmax in halves too: forced by
  // classes, 32 classes of 512 floats 27.0 -> 26.4 ms an epoch, 100 60.2 -> 56.8 and 58.9 -> 55.6, the
  // 1,000-class probe 1.83 -> 1.78 s, Intel Xeon; BENCHMARKS.md.)
  const std::size_t n = order_.size(), D = train_.features();
  const std::size_t B = std::min(config_.batch_size, n);
  const std::size_t K = static_cast<std::size_t>(model_.classes());
  const std::size_t split = (K + 1) / 2;  // thread 0's classes [0, split), thread 1's [split, K)
  const std::size_t first = batches_done_ * B;
  const bool sums_in_halves = sums_in_two_halves();
  const bool bf16 = config_.compute == "bf16";
  const bool softmax_halves = bf16 || K >= 32;  // each thread's softmax of its half of the rows (above)
  const std::size_t bf16_stride = bf16_row_stride(D), pair_width = bf16_pair_width(0, D);
  order_labels(first);
  batch_loss_.resize(B);
  for (std::size_t t = 0; t < 2; ++t) {
    ClassSplitBuffers& buffers = class_split_[t];
    const std::size_t own = t == 0 ? split : K - split;
    for (int parity = 0; parity < 2; ++parity) {
      buffers.rows[parity].resize(B);
      buffers.logits[parity].resize(B * own);
    }
    buffers.whole.resize(B * K);
    buffers.db.resize(own);
    buffers.own_dlogits.resize(B * own);
    buffers.other_loss.resize(B);
    if (bf16) {
      buffers.row_pairs.resize((B + 1) / 2 * pair_width);
      buffers.dlogit_pairs.resize((B + 1) / 2 * own);
    }
  }
  if (bf16) {
    for (auto& rows16 : class_split_rows16_)
      rows16.resize(B * bf16_stride);
    bf16_W_.resize(K * bf16_stride);
    fast_bf16_round_weights(model_.W.data(), K, D, bf16_W_.data());
  }
  MetOnceTeam team;
  // Each batch's rate from its index, not from batches_done_ (current_lr): thread 0 may close the batch
  // (moving batches_done_ on) before thread 1 has begun its softmax.
  const std::size_t first_batch = batches_done_;
  const std::uint8_t* const data_rows = train_.pixels.data();
  const std::size_t row_bytes = train_.row_bytes();

  pool_.run(2, [&](std::size_t t) {
    ThreadTally tally;
    tally.live = &live_waits_[t];
    ClassSplitBuffers& mine = class_split_[t];
    const ClassSplitBuffers& theirs = class_split_[1 - t];
    const std::size_t k0 = t == 0 ? 0 : split, own = t == 0 ? split : K - split;
    const std::size_t their_k0 = t == 0 ? split : 0, theirs_count = K - own;
    const AskAheadChoice::Plan plan = ask_ahead_now_->plan();
    float* const W = model_.W.data() + k0 * D;
    float* const b = model_.b.data() + k0;
    std::uint16_t* const W16 = bf16 ? bf16_W_.data() + k0 * bf16_stride : nullptr;
    const auto gather = [&](std::size_t batch_begin, int parity) {
      const std::size_t count = std::min(n, batch_begin + B) - batch_begin;
      for (std::size_t r = 0; r < count; ++r)
        mine.rows[parity][r] = data_rows + order_[batch_begin + r] * row_bytes;
      return count;
    };
    int parity = 0;
    if (first < n) gather(first, parity);
    bool requested = false;  // whether the previous backward pass asked for this batch's rows
    std::size_t batch = 0;
    for (std::size_t begin = first; begin < n; begin += B, parity ^= 1, ++batch) {
      const std::size_t count = std::min(n, begin + B) - begin;
      const std::uint8_t* const* rows = mine.rows[parity].data();
      std::uint16_t* const rows16 = bf16 ? class_split_rows16_[parity].data() : nullptr;
      const std::size_t second_half = (count + 1) / 2;
      const std::size_t my_r0 = t == 0 ? 0 : second_half, my_r1 = t == 0 ? second_half : count;
      if (bf16) {
        // Each thread packs its half of the rows; then each takes the logits of its classes from all.
        fast_bf16_pack_rows(rows + my_r0, my_r1 - my_r0, D, train_.element, rows16 + my_r0 * bf16_stride,
                            requested);
        tally.meet(team.barrier, t, tally.forward);
        fast_bf16_logits(
            {rows16, count, bf16_stride, own, W16, b, train_.scale(), mine.logits[parity].data()});
      } else {
        // Every row meets this thread's classes, but each thread takes its half of the rows first (which
        // it asked memory for during the last backward pass, or asks for now), then the other thread's
        // half, which by then the other core has fetched: the cores no longer both fetch every row from
        // memory. The 1,000-class probe 1.68-1.70 -> 1.60-1.62 s an epoch (Intel Xeon, BENCHMARKS.md).
        // Rolling, neither half is asked for at the start: the recipe forced by classes 12.05 -> 10.84
        // ms an epoch against asking for the other half first (Intel Xeon, BENCHMARKS.md).
        const bool rolls = plan.rolls(first_batch + batch);
        for (int part = 0; part < 2; ++part) {
          const std::size_t r0 = part == 0 ? my_r0 : (t == 0 ? second_half : 0);
          const std::size_t r1 = part == 0 ? my_r1 : (t == 0 ? count : second_half);
          if (r0 == r1) continue;
          FastForwardArgs logits{rows + r0,
                                 nullptr,
                                 r1 - r0,
                                 D,
                                 own,
                                 train_.element,
                                 W,
                                 b,
                                 train_.scale(),
                                 nullptr,
                                 nullptr,
                                 mine.logits[parity].data() + r0 * own,
                                 (part == 0 && requested) || rolls};
          logits.logits_only = true;
          logits.model_classes = K;  // summed as a pass over all the classes would
          fast_forward_rows(logits);
        }
      }
      tally.meet(team.barrier, t, tally.forward);  // both threads' logits of this batch are there
      if (team.stopped_before(batch)) break;
      const double lr = lr_of_batch(first_batch + batch);

      // The whole logits, then the softmax of every row; this thread counts the correct predictions of
      // its half of the rows. Both threads find every row's loss with the same bits; thread 0 keeps them
      // all for the books, so it need not wait for thread 1's half or read it from the other core.
      // In bfloat16 (softmax_halves) each thread takes the softmax of its half of the rows only, and
      // the team meets again before each reads its classes' dlogits of the other half.
      float* whole = mine.whole.data();
      const float* mine_logits = mine.logits[parity].data();
      const float* their_logits = theirs.logits[parity].data();
      const std::size_t whole_r0 = softmax_halves ? my_r0 : 0, whole_r1 = softmax_halves ? my_r1 : count;
      for (std::size_t r = whole_r0; r < whole_r1; ++r) {
        copy_few(mine_logits + r * own, own, whole + r * K + k0);
        copy_few(their_logits + r * theirs_count, theirs_count, whole + r * K + their_k0);
      }
      for (int half = 0; half < 2; ++half) {
        const std::size_t r0 = half == 0 ? 0 : second_half, r1 = half == 0 ? second_half : count;
        const bool counted = static_cast<std::size_t>(half) == t;
        if (r0 == r1 || (softmax_halves && !counted)) continue;
        float* const losses =
            t == 0 || softmax_halves ? batch_loss_.data() + r0 : mine.other_loss.data() + r0;
        FastForwardArgs softmax{rows + r0,
                                epoch_labels_.data() + begin + r0,
                                r1 - r0,
                                D,
                                K,
                                train_.element,
                                model_.W.data(),
                                model_.b.data(),
                                train_.scale(),
                                losses,
                                nullptr,
                                whole + r0 * K};
        softmax.logits_given = true;
        const std::int64_t correct = fast_forward_rows(softmax);
        if (counted) tally.correct += correct;
      }
      float* own_dlogits = mine.own_dlogits.data();
      if (softmax_halves) {
        tally.meet(team.barrier, t, tally.forward);  // both halves' dlogits (and losses) are there
        for (std::size_t r = 0; r < count; ++r) {
          const float* from = r >= my_r0 && r < my_r1 ? whole : theirs.whole.data();
          copy_few(from + r * K + k0, own, own_dlogits + r * own);
        }
      } else {
        for (std::size_t r = 0; r < count; ++r)
          copy_few(whole + r * K + k0, own, own_dlogits + r * own);
      }
      tally.lap(tally.forward);

      // This thread's classes' dlogits, summed over every row and stepped; the next batch's rows
      // asked for on the way when they fit in L2 beside this batch's.
      const std::size_t next_count = begin + count < n ? gather(begin + count, parity ^ 1) : 0;
      // (In bfloat16 the update streams W16 and the row pairs too.)
      const std::size_t streamed = own * D * sizeof(float) + (count + next_count) * row_bytes +
                                   (bf16 ? own * bf16_stride * sizeof(std::uint16_t) +
                                               (count + 1) / 2 * pair_width * sizeof(std::uint32_t)
                                         : 0);
      const bool asked = next_count > 0 && streamed <= l2_cache_bytes() && plan.asks(first_batch + batch);
      const float sgd_step = static_cast<float>(lr / static_cast<double>(count));
      // This thread's half of them, which it packs (bfloat16) or takes first (float32).
      const std::size_t next_half = (next_count + 1) / 2;
      const std::size_t ask0 = t == 0 ? 0 : next_half, ask1 = t == 0 ? next_half : next_count;
      if (bf16) {
        fast_bf16_pack_dlogit_pairs(own_dlogits, count, own, mine.dlogit_pairs.data());
        fast_bf16_pair_packed_rows(rows16, count, bf16_stride, 0, D, mine.row_pairs.data());
        if (asked) request_rows(mine.rows[parity ^ 1].data() + ask0, ask1 - ask0, row_bytes);
        fast_bf16_update_columns({mine.row_pairs.data(), mine.dlogit_pairs.data(), (count + 1) / 2, D, own, 0,
                                  D, sgd_step, train_.scale(), W, W16, bf16_stride});
      } else {
        fast_update_columns({rows, own_dlogits, count, D, own, train_.element, 0, D, sgd_step, train_.scale(),
                             W, asked ? mine.rows[parity ^ 1].data() + ask0 : nullptr, ask1 - ask0, row_bytes,
                             sums_in_halves ? second_half : 0});
      }
      requested = asked;
      float* const db = mine.db.data();
      sum_columns(own_dlogits, count, own, own, db);
      for (std::size_t k = 0; k < own; ++k)
        b[k] -= sgd_step * db[k];
      tally.lap(tally.backward);
      if (t == 0) {  // the books, from this thread's losses of every row
        close_batch_met_once(batch, begin + count, count, lr, on_batch, should_stop, nullptr, team);
        tally.lap(tally.backward);
      }
    }
    team.tallies[t] = tally;
  });
  return finish_met_once(team);
}

bool Trainer::train_epoch_two_copies(const BatchCallback& on_batch, const StopRequest& should_stop) {
  // Two threads, a model whose sums go in halves (sums_in_two_halves), split by rows: each thread takes
  // the forward pass and the sums of its half of the batch's rows as train_epoch_fast does. Then each
  // steps a whole copy of the model (thread 0 the model itself, thread 1 its own) from both halves'
  // sums, where train_epoch_fast has each step half of W: the other thread's half of W then crosses
  // between the cores every batch, and the team meets a second time before the next forward pass may
  // read W. The copies take the same steps, so they stay equal bit for bit, and the team meets once a
  // batch, when both halves' sums are there; what crosses is those sums, the other half's dlogits (for b)
  // and, to thread 0, its losses, each by batch parity so that a thread a batch ahead writes the other
  // buffer. Two classes trained as one (trains_two_classes_as_one) step two rows of W: 3.07 -> 2.80 ms
  // an epoch against two meetings (synthetic bytes of 784 features, one die); 3 and 6 classes 3-4 %
  // faster; for ten classes, where the doubled step is ten rows, it was about even (BENCHMARKS.md).
  const std::size_t n = order_.size(), D = train_.features();
  const std::size_t B = std::min(config_.batch_size, n);
  const std::size_t K = static_cast<std::size_t>(model_.classes());
  const bool binary = trains_two_classes_as_one();
  const std::size_t KS = binary ? 1 : K;  // classes the kernels see
  const std::size_t first = batches_done_ * B;
  order_labels(first);
  if (binary) {
    margin_W_.resize(2);
    for (auto& weights : margin_W_)
      weights.resize(D);
  }
  for (std::size_t t = 0; t < 2; ++t) {
    TwoCopiesBuffers& buffers = two_copies_[t];
    buffers.db.resize(KS);
    for (int parity = 0; parity < 2; ++parity) {
      buffers.rows[parity].resize(B);
      buffers.sums[parity].resize(KS * D);
    }
  }
  two_copies_[1].W = model_.W;
  two_copies_[1].b = model_.b;
  for (int parity = 0; parity < 2; ++parity) {
    two_copies_dlogits_[parity].resize(B * KS);
    two_copies_losses_[parity].resize(B);
  }
  MetOnceTeam team;
  const std::size_t first_batch = batches_done_;
  const std::uint8_t* const data_rows = train_.pixels.data();
  const std::size_t row_bytes = train_.row_bytes();

  pool_.run(2, [&](std::size_t t) {
    ThreadTally tally;
    tally.live = &live_waits_[t];
    TwoCopiesBuffers& mine = two_copies_[t];
    const AskAheadChoice::Plan plan = ask_ahead_now_->plan();
    float* const W = t == 0 ? model_.W.data() : mine.W.data();  // (K, D): class k's weights at W + k D
    float* const b = t == 0 ? model_.b.data() : mine.b.data();
    // This thread's half of a batch of `count` rows: the first (count + 1) / 2, or the rest.
    const auto half_of = [&](std::size_t count) {
      const std::size_t second_half = (count + 1) / 2;
      return t == 0 ? std::pair<std::size_t, std::size_t>(0, second_half) : std::pair(second_half, count);
    };
    const auto gather = [&](std::size_t batch_begin, int parity) {
      const auto [h0, h1] = half_of(std::min(n, batch_begin + B) - batch_begin);
      for (std::size_t r = h0; r < h1; ++r)
        mine.rows[parity][r - h0] = data_rows + order_[batch_begin + r] * row_bytes;
      return h1 - h0;
    };
    int parity = 0;
    if (first < n) gather(first, parity);
    bool requested = false;  // whether the previous backward pass asked for this batch's rows
    std::size_t batch = 0;
    for (std::size_t begin = first; begin < n; begin += B, parity ^= 1, ++batch) {
      const std::size_t count = std::min(n, begin + B) - begin;
      const auto [h0, h1] = half_of(count);
      const std::uint8_t* const* rows = mine.rows[parity].data();
      float* const dlogits = two_copies_dlogits_[parity].data();
      float* const losses = two_copies_losses_[parity].data();
      const Label* const labels = epoch_labels_.data() + begin;
      std::int64_t correct = 0;  // counted once past the meeting: a stop may leave this batch undone
      if (binary) {
        // Both passes in one over its half of the rows (fast_margin_pass), which asks for its half of the
        // next batch's first rows as it ends.
        const std::size_t next_count = begin + count < n ? gather(begin + count, parity ^ 1) : 0;
        const float margin_b = margin_weights(W, b, D, margin_W_[t].data());
        correct =
            fast_margin_pass({rows, labels + h0, h1 - h0, D, train_.element, margin_W_[t].data(), margin_b,
                              train_.scale(), dlogits + h0, losses + h0, mine.sums[parity].data(),
                              mine.rows[parity ^ 1].data(), next_count, requested});
        requested = next_count > 0;
        tally.lap(tally.forward);
      } else {
        if (h0 < h1) {
          FastForwardArgs forward{rows,
                                  labels + h0,
                                  h1 - h0,
                                  D,
                                  K,
                                  train_.element,
                                  W,
                                  b,
                                  train_.scale(),
                                  losses + h0,
                                  nullptr,
                                  dlogits + h0 * KS,
                                  requested || plan.rolls(first_batch + batch)};
          correct = fast_forward_rows(forward);
        }
        tally.lap(tally.forward);
        // Its half's sums, asking memory for its half of the next batch's rows when they fit in L2 beside
        // this batch's half and the sums.
        const std::size_t next_count = begin + count < n ? gather(begin + count, parity ^ 1) : 0;
        const bool asked = next_count > 0 &&
                           (h1 - h0 + next_count) * row_bytes + KS * D * sizeof(float) <= l2_cache_bytes() &&
                           plan.asks(first_batch + batch);
        fast_gradient_columns({rows, dlogits + h0 * KS, h1 - h0, D, KS, train_.element, 0, D, /*scale=*/1.0f,
                               mine.sums[parity].data(), asked ? mine.rows[parity ^ 1].data() : nullptr,
                               next_count, row_bytes});
        requested = asked;
      }
      tally.meet(team.barrier, t,
                 tally.backward);  // both halves' sums, dlogits and losses of this batch are there
      if (team.stopped_before(batch)) break;
      tally.correct += correct;

      // The whole step, on this thread's copy (two classes as one: W_1 against the margin's gradient,
      // W_0 the opposite way); b from the dlogits of every row in order, as on one thread.
      const double lr = lr_of_batch(first_batch + batch);
      const float sgd_step = static_cast<float>(lr / static_cast<double>(count));
      fast_step_from_halves({two_copies_[0].sums[parity].data(), two_copies_[1].sums[parity].data(), D, KS, 0,
                             D, sgd_step, train_.scale(), binary ? W + D : W, binary ? W : nullptr});
      float* const db = mine.db.data();
      sum_columns(dlogits, count, KS, KS, db);
      if (binary) {
        b[1] -= sgd_step * db[0];
        b[0] -= sgd_step * -db[0];
      } else {
        for (std::size_t k = 0; k < K; ++k)
          b[k] -= sgd_step * db[k];
      }
      tally.lap(tally.backward);
      if (t == 0) {  // the books, from both halves' losses
        close_batch_met_once(batch, begin + count, count, lr, on_batch, should_stop, losses, team);
        tally.lap(tally.backward);
      }
    }
    team.tallies[t] = tally;
  });
  return finish_met_once(team);
}

bool Trainer::train_epoch_fast(const BatchCallback& on_batch, const StopRequest& should_stop) {
  // The whole epoch runs as one team of threads that meet at two barriers per batch:
  //   1. each thread runs the forward pass on its slice of the batch's rows (writing dlogits);
  //   2. each thread computes its own range of inputs of dW from all the batch's rows; thread 0 also
  //      computes db and does the bookkeeping.
  // For plain SGD, step 2 applies the update as it goes (the fused kernel). Any other optimizer steps
  // on thread 0 once the whole gradient is there, and the team meets a third time before the next
  // batch reads W. The weights do not depend on the thread count: no sum is split by thread.
  //
  // Plain SGD on a small model (`halves`) splits each sum in two instead, over the batch's first and
  // second halves of rows, added before the step. Two threads take those in train_epoch_two_copies
  // (each thread's half is the slice its forward pass has just brought into its core's cache; step 2
  // would read half of every batch's rows from the other core's cache, which made the two-thread
  // backward pass about as slow as the one-thread one, Zen 5, BENCHMARKS.md). Here, on three or more
  // threads, threads 0 and 1 sum the halves after the first meeting, the team meets again, and each
  // thread steps its range of inputs from the two halves' sums. One thread takes the same two sums in
  // registers (FastUpdateArgs::second_half), so the bits still do not depend on the thread count; a
  // large model stays with step 2, whose sums fit in registers, where two halves of it would stream
  // through memory.
  const bool fused = uses_fused_sgd();
  // One thread of the team where it trains alone (EpochWayChoice): the team's other threads wait this out.
  const std::size_t threads = solo_now_ ? 1 : static_cast<std::size_t>(pool_.threads());
  const std::size_t n = order_.size(), D = train_.features();
  const std::size_t B = std::min(config_.batch_size, n);  // a batch larger than the data is the whole data
  const std::size_t K = static_cast<std::size_t>(model_.classes());
  // The weights the kernels read: the parameters themselves (which the fused SGD kernel updates in
  // place), or their folded copy in a standardized run (which step() refreshes).
  SoftmaxModel& kernel_model = standardization_ ? folded_ : model_;
  for (auto& pixels : batch_pixels_)
    pixels.resize(B);
  const std::size_t first = batches_done_ * B;
  order_labels(first);
  batch_loss_.resize(B);
  // bfloat16 (config_.compute): pairs of rows, 2j and 2j+1, are summed together, so each thread's
  // slice of rows starts at an even row, and the halves are not used.
  const bool bf16 = config_.compute == "bf16";
  const bool halves = sums_in_two_halves();
  // Two classes trained as one (fast_binary_softmax): the kernels see one class, the margin, whose
  // weights W_1 - W_0 each thread takes before its forward pass; the step from the halves' sums moves
  // W_1 and, the opposite way, W_0. One thread takes the halves' sums one after the other.
  const bool binary = trains_two_classes_as_one();
  const std::size_t KS = binary ? 1 : K;                      // classes the kernels see
  const bool sums_apart = halves && (threads > 1 || binary);  // fast_gradient_columns, then the step
  batch_dlogits_.resize(B * KS);
  if (sums_apart) {
    for (auto& sums : batch_half_sums_)
      sums.resize(KS * D);
  }
  if (binary) {
    margin_W_.resize(threads);
    for (auto& weights : margin_W_)
      weights.resize(D);
  }
  const std::size_t bf16_stride = bf16_row_stride(D);
  if (bf16) {
    bf16_rows_.resize(B * bf16_stride);
    bf16_dlogit_pairs_.resize((B + 1) / 2 * K);
    bf16_row_pairs_.resize(threads);
    bf16_W_.resize(K * bf16_stride);
    fast_bf16_round_weights(kernel_model.W.data(), K, D, bf16_W_.data());
  }
  if (!fused) {
    batch_dW_.resize(model_.W.rows(), model_.W.cols());
    batch_db_.resize(model_.b.size());
  }
  // Input ranges at multiples of 16 floats: whole SIMD vectors on every target (16 lanes at most).
  constexpr std::size_t kGrain = 16;
  const std::size_t d_chunk = (D + threads * kGrain - 1) / (threads * kGrain) * kGrain;
  std::vector<ThreadTally> tallies(threads);
  SpinBarrier barrier(static_cast<int>(threads));
  std::atomic<bool> stop{false};
  std::exception_ptr error;

  pool_.run(threads, [&](std::size_t t) {
    ThreadTally tally;
    tally.live = &live_waits_[t];
    const AskAheadChoice::Plan plan = ask_ahead_now_->plan();
    const auto meet = [&](double& phase) {  // one thread has no one to meet, nor any wait to count
      if (threads == 1) {
        tally.lap(phase);
      } else {
        tally.meet(barrier, t, phase);
      }
    };
    // This thread's rows [r0, r1) of a batch of `count`.
    const auto slice_of = [&](std::size_t count) {
      std::size_t slice = (count + threads - 1) / threads;
      if (bf16) slice += slice % 2;
      const std::size_t r0 = std::min(count, t * slice);
      return std::pair(r0, std::min(count, r0 + slice));
    };
    // This thread's rows of the batch from `batch_begin`: their pointers into `buffer`; returns the
    // thread's first row pointer and row count. The shuffled rows come from anywhere in the training
    // set: the fused backward pass asks memory for the next batch's rows while it computes, instead
    // of the next forward pass waiting for them at its start.
    const std::uint8_t* const rows = train_.pixels.data();
    const std::size_t row_bytes = train_.row_bytes();
    const auto gather = [&](std::size_t batch_begin, int buffer) {
      const auto [r0, r1] = slice_of(std::min(n, batch_begin + B) - batch_begin);
      for (std::size_t r = r0; r < r1; ++r)
        batch_pixels_[buffer][r] = rows + order_[batch_begin + r] * row_bytes;
      return std::pair(batch_pixels_[buffer].data() + r0, r1 - r0);
    };
    int buffer = 0;
    if (first < n) gather(first, buffer);
    bool requested = false;  // whether the previous backward pass asked for this batch's rows
    for (std::size_t begin = first; begin < n; begin += B, buffer ^= 1) {
      const std::size_t count = std::min(n, begin + B) - begin;
      // Read before the first barrier: thread 0 moves batches_done_ on after it.
      const double lr = current_lr();
      const auto [r0, r1] = slice_of(count);
      const std::uint8_t* const* pixels = batch_pixels_[buffer].data();
      // The next batch's rows go into the other buffer, whose last readers were the previous batch's
      // backward passes: several threads gather them after the first meeting, when those are all done;
      // one thread before its forward pass (two classes as one ask for them as their pass ends).
      using NextRows = std::pair<const std::uint8_t**, std::size_t>;
      const auto gather_next = [&] {
        return begin + count < n ? gather(begin + count, buffer ^ 1) : NextRows();
      };
      NextRows next = threads == 1 ? gather_next() : NextRows();
      if (r0 < r1) {
        float* dlogits = batch_dlogits_.data() + r0 * KS;
        FastForwardArgs forward{pixels + r0,
                                epoch_labels_.data() + begin + r0,
                                r1 - r0,
                                D,
                                K,
                                train_.element,
                                kernel_model.W.data(),
                                kernel_model.b.data(),
                                train_.scale(),
                                batch_loss_.data() + r0,
                                nullptr,
                                dlogits,
                                requested || plan.rolls(begin / B)};
        if (bf16) {  // the logits from bfloat16 products; the softmax and the rest as in float32
          std::uint16_t* rows16 = bf16_rows_.data() + r0 * bf16_stride;
          fast_bf16_pack_rows(pixels + r0, r1 - r0, D, train_.element, rows16, requested);
          fast_bf16_logits({rows16, r1 - r0, bf16_stride, K, bf16_W_.data(), kernel_model.b.data(),
                            train_.scale(), dlogits});
          forward.logits_given = true;
        }
        if (binary && threads == 1) {
          // Both passes in one over each half of the rows (fast_margin_pass): the first asks for the
          // second's first rows as it ends, the second for the next batch's.
          const std::size_t second_half = (count + 1) / 2;
          float* const margin_W = margin_W_[t].data();
          const float margin_b = margin_weights(kernel_model.W.data(), kernel_model.b.data(), D, margin_W);
          const Label* const labels = epoch_labels_.data() + begin;
          tally.correct +=
              fast_margin_pass({pixels, labels, second_half, D, train_.element, margin_W, margin_b,
                                train_.scale(), dlogits, batch_loss_.data(), batch_half_sums_[0].data(),
                                pixels + second_half, count - second_half, requested});
          tally.correct += fast_margin_pass({pixels + second_half, labels + second_half, count - second_half,
                                             D, train_.element, margin_W, margin_b, train_.scale(),
                                             dlogits + second_half, batch_loss_.data() + second_half,
                                             batch_half_sums_[1].data(), next.first, next.second, true});
        } else {
          tally.correct +=
              binary ? forward_two_classes_as_one(forward, margin_W_[t].data()) : fast_forward_rows(forward);
        }
        if (bf16) fast_bf16_pack_dlogit_pairs(dlogits, r1 - r0, K, bf16_dlogit_pairs_.data() + r0 / 2 * K);
      }
      meet(tally.forward);
      if (threads > 1) next = gather_next();
      const auto [next_rows, next_count] = next;

      // Thread 0 also does the bookkeeping, so it takes the last (shortest) range of inputs.
      const std::size_t chunk = threads - 1 - t;
      const std::size_t d0 = std::min(D, chunk * d_chunk), d1 = std::min(D, d0 + d_chunk);
      // Asking for the next batch's rows during the backward pass saved 3-11 % an epoch on two threads
      // (Zen 4). On one it once slowed the backward pass by more than the forward pass gained (2-6 %),
      // until the rows came in 2 MB pages (map_file): the requests had been waiting for page walks.
      // Now one thread's recipe epoch takes 19.4-19.8 ms with them against 20.9-21.6 (and 20.0-20.2
      // against 20.4-21.1 with the rows in 4 KB pages), two classes 6.6 against 8.4-8.6 ms. Only when
      // the rows can stay in this core's L2 cache until the next forward pass, beside what the
      // backward pass streams through it (its columns of W and of every row of the batch).
      const std::size_t streamed = (d1 - d0) * (K * sizeof(float) + count * element_size(train_.element));
      const bool ask_ahead =
          fused && streamed + next_count * row_bytes <= l2_cache_bytes() && plan.asks(begin / B);
      const float sgd_step = static_cast<float>(lr / static_cast<double>(count));
      const std::size_t second_half = (count + 1) / 2;  // the first row of the batch's second half
      bool asked = false;  // whether this pass asked memory for the next batch's rows
      if (sums_apart) {
        if (threads == 1) {  // two classes as one: both halves' sums are there (fast_margin_pass above)
          asked = next_count > 0;
        } else if (t < 2) {  // a half of rows from several threads' slices: no rows of its own to ask for
          const std::size_t h0 = t == 0 ? 0 : second_half, h1 = t == 0 ? second_half : count;
          fast_gradient_columns({pixels + h0, batch_dlogits_.data() + h0 * KS, h1 - h0, D, KS, train_.element,
                                 0, D, /*scale=*/1.0f, batch_half_sums_[t].data()});
        }
        meet(tally.backward);  // both halves' sums are there
        if (d0 < d1) {
          float* W = kernel_model.W.data();
          fast_step_from_halves({batch_half_sums_[0].data(), batch_half_sums_[1].data(), D, KS, d0, d1,
                                 sgd_step, train_.scale(), binary ? W + D : W, binary ? W : nullptr});
        }
      } else if (d0 < d1 && bf16) {
        // Each thread pairs the rows for its own inputs: all of the batch's rows, its columns of them.
        // One thread pairs the rows it has just packed, which are in its cache, and need no conversion
        // (Zen 5, `bench --compute bf16 --threads 1`, alternated: the recipe 16.8 -> 15.0 ms an epoch,
        // (100, 512, f32) 75 -> 59 ms, (1000, 1024, f32) 353 -> 343 ms). Two read the other half of
        // them from the other core's cache, and the next forward pass's stores then wait for those
        // lines to be taken back: the recipe 14.1 -> 16.4 ms, the forward pass 5.9 -> 9.8 ms.
        AlignedVector<std::uint32_t>& row_pairs = bf16_row_pairs_[t];
        const std::size_t width = bf16_pair_width(d0, d1), pairs = (count + 1) / 2;
        row_pairs.resize(pairs * width);
        if (threads == 1) {
          fast_bf16_pair_packed_rows(bf16_rows_.data(), count, bf16_stride, d0, d1, row_pairs.data());
        } else {
          fast_bf16_pack_row_pairs(pixels, count, train_.element, d0, d1, row_pairs.data());
        }
        // The update reads only the pairs and W from here on: the next rows arrive while it runs.
        asked = ask_ahead;
        if (asked) request_rows(next_rows, next_count, row_bytes);
        fast_bf16_update_columns({row_pairs.data(), bf16_dlogit_pairs_.data(), pairs, D, K, d0, d1, sgd_step,
                                  train_.scale(), kernel_model.W.data(), bf16_W_.data(), bf16_stride});
      } else if (d0 < d1 && fused) {
        asked = ask_ahead;
        fast_update_columns({pixels, batch_dlogits_.data(), count, D, K, train_.element, d0, d1, sgd_step,
                             train_.scale(), kernel_model.W.data(), asked ? next_rows : nullptr, next_count,
                             row_bytes, halves ? second_half : 0});
      } else if (d0 < d1) {
        fast_gradient_columns({pixels, batch_dlogits_.data(), count, D, K, train_.element, d0, d1,
                               train_.scale(), batch_dW_.data()});
      }
      requested = asked;  // then the next forward pass need not ask again
      if (t == 0) {
        batch_db_sum_.assign(K, 0.0f);  // K: two classes as one sum only class 1's (KS = 1)
        sum_columns(batch_dlogits_.data(), count, KS, KS, batch_db_sum_.data());
        if (binary) {  // class 1's dlogits g, class 0's -g
          batch_db_sum_[1] = batch_db_sum_[0];
          batch_db_sum_[0] = -batch_db_sum_[1];
        }
        for (std::size_t k = 0; k < K; ++k) {
          const auto i = static_cast<Eigen::Index>(k);
          if (fused) {
            kernel_model.b(i) -= sgd_step * batch_db_sum_[k];
          } else {
            batch_db_(i) = batch_db_sum_[k];
          }
        }
      }
      if (!fused) meet(tally.backward);  // the whole gradient is there
      if (t == 0) {
        try {
          if (!fused) step(batch_dW_, batch_db_, count, lr);
          if (close_batch(begin + count, count, lr, on_batch, should_stop)) stop = true;
        } catch (...) {
          error = std::current_exception();
          stop = true;
        }
      }
      meet(tally.backward);
      if (stop) break;
    }
    tallies[t] = tally;
  });
  add_thread_tallies(tallies);
  if (error) std::rethrow_exception(error);
  return !stop;
}

void Trainer::evaluate_held_out(EpochMetrics& metrics) {
  if (test_.count > 0) {  // tuning trains without a test set
    const Evaluation test = evaluate(model(), test_, pool_, config_.kernel);
    metrics.test_loss = test.loss;
    metrics.test_acc = test.accuracy;
  }
  if (validation_) {
    const Evaluation val = evaluate(model(), *validation_, pool_, config_.kernel);
    metrics.has_validation = true;
    metrics.val_loss = val.loss;
    metrics.val_acc = val.accuracy;
  }
}

std::optional<EpochMetrics> Trainer::run_epoch(const BatchCallback& on_batch,
                                               const StopRequest& should_stop) {
  const auto start = std::chrono::steady_clock::now();
  // A fresh permutation each epoch (like torch.randperm), drawn from the state saved at the epoch's
  // start: an epoch continued after a stop or a restore sees the same order.
  rng_.set_state(epoch_rng_state_);
  std::copy(train_rows_.begin(), train_rows_.end(), order_.begin());
  rng_.shuffle(order_);

  const bool whole_epoch = batches_done_ == 0;
  round_trip_ = 0;
  if (!way_choice_) way_choice_.emplace(epoch_ways(), may_go_alone());
  const EpochWay way = way_choice_->way();
  solo_now_ = way == EpochWay::kOneThread;
  const bool alone_for_stall = solo_now_ && way_choice_->alone_after_stall();
  const bool split = way == EpochWay::kByClasses;
  const bool two_copies =
      uses_fast_path() && way == EpochWay::kByRows && pool_.threads() == 2 && sums_in_two_halves();
  AskAheadChoice* const ask_ahead = !uses_fast_path() ? nullptr : &ask_ahead_[split ? 2 : two_copies ? 1 : 0];
  ask_ahead_now_ = ask_ahead;
  batch_closed_ = std::chrono::steady_clock::now();
  // A team one of whose threads has waited for the others most of the epoch so far (EpochWayChoice's
  // stall), in EpochWayChoice::kStalledLongWaits waits of a time slice or more, stops at the batch's close,
  // and one thread trains the epoch's rest: each further batch would wait a time slice again. (One long
  // hiccup of the host early in an epoch, seen unloaded on a Zen 3 guest, is not a stall.) Every way gives
  // the same bits, so where the team stops does not matter.
  const std::size_t threads = static_cast<std::size_t>(pool_.threads());
  if (!live_waits_) live_waits_ = std::make_unique<LiveWait[]>(threads);
  for (std::size_t t = 0; t < threads; ++t) {
    live_waits_[t].seconds.store(0, std::memory_order_relaxed);
    live_waits_[t].long_waits.store(0, std::memory_order_relaxed);
  }
  bool stalled = false;
  const bool may_stall = !solo_now_ && way_choice_->may_go_alone();
  const StopRequest stop_or_stall = [&] {
    if (should_stop && should_stop()) return true;
    if (!may_stall) return false;
    for (std::size_t t = 0; t < threads; ++t) {
      // The clock is read only for a thread with enough long waits to count.
      if (live_waits_[t].long_waits.load(std::memory_order_relaxed) < EpochWayChoice::kStalledLongWaits)
        continue;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (EpochWayChoice::is_stall(live_waits_[t].seconds.load(std::memory_order_relaxed), seconds))
        return stalled = true;
    }
    return false;
  };
  bool finished = !uses_fast_path() ? train_epoch_naive(on_batch, should_stop)
                  : split           ? train_epoch_split_classes(on_batch, stop_or_stall)
                  : two_copies      ? train_epoch_two_copies(on_batch, stop_or_stall)
                                    : train_epoch_fast(on_batch, stop_or_stall);
  if (!finished && stalled) {
    solo_now_ = true;
    ask_ahead_now_ = &ask_ahead_[0];
    finished = train_epoch_fast(on_batch, should_stop);
  }
  ask_ahead_now_ = nullptr;
  if (!finished) return std::nullopt;
  if (ask_ahead) ask_ahead->end_epoch(batches_per_epoch());
  EpochMetrics metrics;
  const auto eval_start = std::chrono::steady_clock::now();
  // A whole epoch only (a resumed one's rest would compare part of an epoch with a whole).
  if (whole_epoch)
    way_choice_->timed(std::chrono::duration<double>(eval_start - start).count(), barrier_wait_, stalled);
  evaluate_held_out(metrics);
  const auto end = std::chrono::steady_clock::now();
  metrics.train_loss = partial_sums_.loss / static_cast<double>(order_.size());
  metrics.train_acc = static_cast<double>(partial_sums_.correct) / static_cast<double>(order_.size());
  ++epochs_done_;
  batches_done_ = 0;
  partial_sums_ = {};
  epoch_rng_state_ = rng_.state();
  metrics.epoch = epochs_done_;
  metrics.seconds = std::chrono::duration<double>(end - start).count();
  metrics.train_seconds = std::chrono::duration<double>(eval_start - start).count();
  metrics.eval_seconds = std::chrono::duration<double>(end - eval_start).count();
  metrics.barrier_wait_seconds = barrier_wait_;
  metrics.forward_seconds = forward_seconds_;
  metrics.backward_seconds = backward_seconds_;
  metrics.thread_busy_seconds = std::move(thread_busy_seconds_);
  metrics.split_by_classes = split;
  metrics.threads_used = !uses_fast_path() ? 0 : solo_now_ ? 1 : pool_.threads();
  metrics.alone_after_stall = alone_for_stall || stalled;
  metrics.two_classes_as_one = uses_fast_path() && trains_two_classes_as_one();
  metrics.core_round_trip_seconds = round_trip_;
  if (ask_ahead) metrics.ask_ahead = ask_ahead->state_name();
  thread_busy_seconds_.clear();
  barrier_wait_ = forward_seconds_ = backward_seconds_ = 0;
  return metrics;
}

}  // namespace softreg
