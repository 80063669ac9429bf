// The seed's training loop: shuffle, minibatches (the last one partial), an optimizer step per batch
// (the seed's SGD unless another Optimizer is given), and per-epoch metrics (train loss and accuracy
// as seen during the epoch, then test loss and accuracy). run.hpp builds a whole run on top of it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/kernels.hpp"
#include "softreg/model.hpp"
#include "softreg/optim.hpp"
#include "softreg/parallel.hpp"
#include "softreg/rng.hpp"
#include "softreg/standardize.hpp"

namespace softreg {

/// The recipe; the defaults are the seed's.
struct TrainConfig {
  double lr = 0.1;
  std::size_t batch_size = 256;
  int epochs = 10;
  std::uint64_t seed = 0;
  double init_std = 0.01;
  int threads = 1;
  /// kFast: the SIMD kernels (any number of classes, bytes or floats); kNaive: the Eigen reference path.
  KernelChoice kernel = KernelChoice::kFast;

  // Beyond the seed (the defaults leave its recipe as it is):
  std::string optimizer = "sgd";  // sgd, momentum, nesterov, adam, adamw (kOptimizerNames)
  double momentum = 0.9;          // momentum, nesterov
  double beta1 = 0.9;             // adam, adamw
  double beta2 = 0.999;           // adam, adamw
  double eps = 1e-8;              // adam, adamw
  double weight_decay = 0.01;     // adamw: decoupled decay of W
  /// The objective is mean cross-entropy + l2/2 * ||W||^2 (b is not penalized); scikit-learn's
  /// LogisticRegression(C) is l2 = 1 / (C * training examples).
  double l2 = 0;
  LrSchedule schedule;
  /// Part of the training set held out (seeded, stratified) for validation; 0: none. The model never
  /// trains on it, and only it chooses anything (early stopping); the test set never does.
  double val_fraction = 0;
  /// With validation: stop after this many epochs without a better validation accuracy; 0: never.
  int early_stop = 0;
  /// optimizer "lbfgs": full-batch L-BFGS with at most max_iter iterations, until the gradient's largest
  /// entry is at most tol (the run then counts as one epoch).
  int max_iter = 100;
  double tol = 1e-4;
  /// optimizer "lbfgs": correction pairs kept (PyTorch's history_size; scipy keeps 10). Raw pixels make
  /// an ill-conditioned problem, where a long history saves most iterations: on Fashion-MNIST 100 pairs
  /// need 93 iterations where 10 need 354. Fewer are kept when the pairs would exceed kMaxLbfgsHistoryBytes.
  int history_size = 100;
  /// Train on standardized inputs ((x - mean) / std of the training rows; see standardize.hpp).
  bool standardize = false;
  /// "f32", or "bf16": the fast path's products in bfloat16 (its inputs rounded to 8 significant bits,
  /// sums and weights float32; kernels/bf16.cpp), about twice as fast where the CPU has AVX-512 BF16.
  /// Plain SGD without l2 or standardization only; evaluation stays float32.
  std::string compute = "f32";
  /// Stop (TrainingDiverged) at a batch whose mean loss runs far above ln K, not only at a non-finite
  /// one. The CLI always stops; Python may go on as scikit-learn's SGD estimators do, and warn.
  bool stop_on_runaway_loss = true;

  OptimizerSettings optimizer_settings() const {
    return {optimizer, lr, momentum, beta1, beta2, eps, weight_decay};
  }
};

/// A batch whose mean loss is this many times ln(K), the loss of a fresh model, has run away: even a
/// learning rate ten times the seed's stays far below it. (Non-finite losses count too.)
inline constexpr double kRunawayLossFactor = 100;

/// Upper bounds that only catch typos (nothing in the code needs them).
inline constexpr int kMaxEpochs = 1'000'000;
inline constexpr int kMaxLbfgsIterations = 1'000'000;
inline constexpr int kMaxLbfgsHistory = 10'000;
/// Initial weights wider than this make logits in the hundreds on 784 inputs (the seed uses 0.01).
inline constexpr double kMaxInitStd = 1.0;

/// Checks every field of a recipe against its range; throws Error naming the first one outside it,
/// spelled as the CLI's flag without the dashes: "momentum must be in [0, 1), got 1".
void check_recipe(const TrainConfig& config);

struct EpochMetrics {
  int epoch = 0;
  double train_loss = 0;  // mean over the epoch's examples, each from the forward pass before its update
  double train_acc = 0;
  double test_acc = 0;
  double test_loss = 0;
  double seconds = 0;        // training plus test evaluation
  double train_seconds = 0;  // the pass over the training set alone
  double eval_seconds = 0;   // the test (and validation) evaluation alone
  /// Of train_seconds, the time the threads waited for each other at the fast path's barriers
  /// (their mean); 0 with one thread and on the naive path.
  double barrier_wait_seconds = 0;
  /// Of train_seconds, the fast path's forward passes (softmax and loss included) and backward passes
  /// (with the update and the bookkeeping), each the mean over the threads; 0 on the naive path. With
  /// the barrier wait they make up the pass: they show which half fails to scale with threads.
  double forward_seconds = 0;
  double backward_seconds = 0;
  /// Of train_seconds, each thread's forward and backward passes (thread 0 first), without its waits;
  /// empty on the naive path. Their mean is forward_seconds + backward_seconds (but where the team
  /// stalled part-way, alone_after_stall: thread 0's then holds the epoch's rest alone too). Two threads do
  /// equal work (thread 0 a little more: the bookkeeping), so one far above the other is a slower core: on a
  /// cloud machine, a vCPU whose physical core another guest is using (BENCHMARKS.md). On more threads
  /// a small model's halves are summed by threads 0 and 1 alone.
  std::vector<double> thread_busy_seconds;
  /// Two threads training with plain SGD split each batch by classes (each thread half of the classes
  /// for every row) instead of by rows, as EpochWayChoice learned or tried (from 8 classes; a small
  /// model starts so from 10 classes, any other when a cache line took long between their cores:
  /// core_round_trip_seconds, measured at the run's first epoch, 0 when not measured);
  /// SOFTREG_SPLIT=rows|classes forces one. The results are the same bit for bit either way.
  bool split_by_classes = false;
  double core_round_trip_seconds = 0;
  /// The threads that trained this epoch: the team's, or 1 where one of a team of two trained alone
  /// (EpochWayChoice); 0 on the naive path.
  int threads_used = 0;
  /// One thread trained this epoch, or its rest, because the team stalled (EpochWayChoice): a machine
  /// busy with other work.
  bool alone_after_stall = false;
  /// Who asks memory for each batch's rows (AskAheadChoice), after this epoch: "learning", "asking",
  /// "not asking" or "rolling"; empty on the naive path.
  std::string ask_ahead;
  /// The fast path trained two classes as one margin (plain SGD, a small model): one dot product a row
  /// and one gradient sum an input, half the multiply-adds of the two-class softmax (kernels.hpp,
  /// fast_binary_softmax).
  bool two_classes_as_one = false;
  bool has_validation = false;  // the two below are set
  double val_loss = 0;
  double val_acc = 0;
};

/// Everything needed to continue training bit for bit: the model, the generator state before the
/// current epoch's shuffle, and how far into that epoch training got (0 batches at an epoch boundary).
struct TrainerState {
  SoftmaxModel model;
  std::string epoch_rng_state;
  int epochs_done = 0;
  std::size_t batches_done = 0;
  double partial_loss = 0;  // summed loss of the batches done in the unfinished epoch
  std::int64_t partial_correct = 0;
  OptimizerState optimizer;  // momentum buffers, moments (none for plain SGD)
};

/// Who asks memory for a batch's shuffled rows before the fast path's forward pass reads them: the
/// previous batch's backward pass, spread over it ("asking"); the forward pass, for all its rows at its
/// start ("not asking"); or nobody but the forward pass as it goes, each block of rows asking for the
/// block a few blocks on ("rolling"; every way has those: rows of bytes a line at a time between its
/// multiply-adds, rows of floats all their lines before the block).
/// Which wins depends on the machine: asking, the forward pass waits less for memory and the backward
/// pass more; the recipe's epoch on one thread was 1.5 ms faster asking on a Zen 4 guest, about 5 ms
/// slower on a Zen 5 one whose memory read 20 GB/s; on an Intel Xeon guest rolling took 16.6 ms against
/// 19.6 learned between the other two (BENCHMARKS.md). So a run learns it from its own batches: until it
/// has decided, blocks of kBlock batches take the ways in turn, thread 0 times each batch (time_batch),
/// and once kRounds rounds of blocks are timed, the way that took the least time a row in the most
/// rounds is kept for the rest of the run. It decides between epochs (end_epoch), so that every thread
/// reads the same answer for a batch. Asking only reads: the weights are the same bit for bit.
/// A forward pass that packs its rows first (bfloat16) has no rolling requests: it is offered the
/// first two ways only. SOFTREG_ASK_AHEAD=yes|no|rolling forces a way (benchmarks).
class AskAheadChoice {
 public:
  static constexpr std::size_t kBlock = 16, kRounds = 7;
  enum class Way { kAsk, kAtStart, kRolling };
  static constexpr std::size_t kWays = 3;

  /// `can_roll`: whether the forward pass asks for its rows as it goes (not in bfloat16).
  explicit AskAheadChoice(bool can_roll = true);
  /// Decided from the start, nothing timed: where one way is all there is (two classes trained as one
  /// on one or two threads ask for their rows as they go, fast_margin_pass).
  static AskAheadChoice decided(Way way);
  /// The current epoch's answers, copied by each thread at its start (the choice changes only between
  /// epochs, and thread 0 writes its timings beside it every batch).
  struct Plan {
    bool learning;
    Way way;                   // once decided
    std::size_t ways;          // the ways taken in turn while learning
    std::size_t timed_before;  // the learning's batches in earlier epochs
    /// The way of batch `batch` of the epoch (counted from its start).
    Way way_of(std::size_t batch) const {
      return learning ? static_cast<Way>((timed_before + batch) / kBlock % ways) : way;
    }
    /// Whether batch `batch`'s backward pass asks for the next one's rows.
    bool asks(std::size_t batch) const { return way_of(batch) == Way::kAsk; }
    /// Whether batch `batch`'s forward pass leaves its rows to its rolling requests.
    bool rolls(std::size_t batch) const { return way_of(batch) == Way::kRolling; }
  };
  Plan plan() const { return {learning_, way_, ways_, timed_before_}; }
  /// Whether it is still timing batches (time_batch does nothing once it has decided).
  bool learning() const { return learning_; }
  /// Thread 0: batch `batch` of `rows` rows took `seconds`. An epoch's first batch is left out (its
  /// time holds the epoch's start: caches that the evaluation and the shuffle emptied).
  void time_batch(std::size_t batch, std::size_t rows, double seconds);
  /// Between epochs: the epoch that ended had `batches` batches. Decides once kRounds rounds are timed.
  void end_epoch(std::size_t batches);
  /// "learning", "asking", "not asking" or "rolling".
  const char* state_name() const;
  /// Of the rounds of blocks timed, how many `way` took the least time a row in.
  std::size_t rounds_won(Way way) const { return rounds_won_[static_cast<std::size_t>(way)]; }

 private:
  bool learning_ = true;
  Way way_ = Way::kAsk;
  std::size_t ways_ = kWays;
  std::size_t timed_before_ = 0;  // batches of earlier epochs in the learning
  std::array<double, kWays * kRounds> block_seconds_{}, block_rows_{};  // by block
  std::array<std::size_t, kWays> rounds_won_{};
};

/// How a team of threads shares an epoch's batches (Trainer::run_epoch). Every way gives the same bits.
enum class EpochWay {
  kByRows,     ///< each thread a share of the rows (two copies of a small model, or one large model)
  kByClasses,  ///< two threads, each half of the classes for every row
  kOneThread,  ///< one thread of the team alone
};

/// Which way a team of two trains its epochs, where more than one may be the faster: learned from the
/// run's own epochs, since which wins depends on the machine as much as on the shape.
/// - By classes each thread reads every row for half of the classes; by rows the threads hand each
///   other their halves' sums (the recipe's 31 KB a batch). On a Zen 4 guest the recipe's epoch took
///   11.3-11.8 ms by classes against 11.6-12.0 by rows on one die and 13.9-16.0 against 17.5-19.0 on two;
///   on an Intel Xeon guest (AMX, round trip 100-120 ns) 10.3 by classes against 9.0 by rows
///   (BENCHMARKS.md).
/// - With few inputs a row, what two threads share a batch is about as large as the arithmetic it saves
///   each: on a Zen 5 guest (two dies), (10, 20, f32) 7.9 ms an epoch on one thread against 14.6 on two,
///   (100, 33, f32) 17.5 against 23.8, but (1000, 40, f32) 76 against 46. So models of fewer than
///   kMostInputsAlone inputs may train on one thread.
/// The first way given trains the first whole epoch (which also warms caches and the other choices up,
/// so it is not compared), then each way one timed epoch in the order given, and the fastest of those
/// trains the rest; it does not look again. With one way given there is nothing to learn.
///
/// A team whose epoch stalled trains alone, where the team may (`may_go_alone`): its threads waited
/// for each other more than kStalledWaitFraction of the epoch and kStalledWaitSeconds in all (their
/// mean over the whole epoch; or, as Trainer::run_epoch checks at every batch's close, one thread's so
/// far, in 8 waits of a time slice or more, and one thread then trains the epoch's rest): one of them was off
/// its CPU, the machine busy with other work. It tries the team again after 2, 4, 8, up to 16 epochs alone,
/// and stays a team again when that epoch did not stall and took less than the last alone. Why: two threads
/// that meet twice a batch wait a time slice for a partner that lost its CPU. On a 2-vCPU Zen 3 guest
/// compiling with two jobs beside, the recipe took 750-880 ms an epoch on two threads (90-93 % of it waiting)
/// and 52 ms on one (BENCHMARKS.md). A stalled epoch, and a stalled or slower try of the team, leaves the
/// learning where it was.
class EpochWayChoice {
 public:
  static constexpr std::size_t kMostInputsAlone = 128;
  static constexpr double kStalledWaitFraction = 0.5, kStalledWaitSeconds = 0.02;
  static constexpr int kStalledLongWaits = 8;  // of a time slice or more, in run_epoch's check
  static constexpr std::size_t kFirstEpochsAlone = 2, kMostEpochsAlone = 16;
  explicit EpochWayChoice(std::vector<EpochWay> ways = {EpochWay::kByRows}, bool may_go_alone = false);
  /// The way the next epoch trains.
  EpochWay way() const;
  /// After a whole epoch: its training took `seconds`, of which its threads waited for each other
  /// `waited_seconds` (their mean); `stopped_stalled`: the team stalled part-way and one thread trained
  /// the rest (Trainer::run_epoch).
  void timed(double seconds, double waited_seconds = 0, bool stopped_stalled = false);
  /// Whether it is still trying ways.
  bool learning() const { return ways_.size() > 1 && epochs_timed_ <= ways_.size(); }
  /// Whether the team trains alone since one of its epochs stalled.
  bool alone_after_stall() const { return alone_; }
  /// Whether a stalled team may train alone (the constructor's `may_go_alone`).
  bool may_go_alone() const { return may_go_alone_; }
  /// Whether waits of `waited_seconds` in `seconds` of training are a stall: over kStalledWaitFraction
  /// of the time and kStalledWaitSeconds in all (timed's whole epoch, run_epoch's epoch so far).
  static bool is_stall(double waited_seconds, double seconds) {
    return waited_seconds > kStalledWaitFraction * seconds && waited_seconds > kStalledWaitSeconds;
  }

 private:
  EpochWay learned_way() const;
  std::vector<EpochWay> ways_;
  std::vector<double> seconds_;  // of each way's timed epoch, in ways_'s order
  std::size_t epochs_timed_ = 0;
  EpochWay chosen_;
  bool may_go_alone_;
  bool alone_ = false;
  std::size_t epochs_alone_ = 0, epochs_alone_before_try_ = kFirstEpochsAlone;
  double alone_seconds_ = 0;  // the last epoch alone's
};

class Trainer {
 public:
  /// Draws the initial weights from the seed; trains with the optimizer the config names (the seed's
  /// SGD by default). The datasets must outlive the trainer. `validation`, when given, is the validation
  /// set (config.val_fraction must then be 0): every training row is trained on.
  Trainer(const TrainConfig& config, const Dataset& train, const Dataset& test,
          const Dataset* validation = nullptr);
  /// The same with another optimizer (config.lr and the schedule still set its learning rate).
  Trainer(const TrainConfig& config, const Dataset& train, const Dataset& test,
          std::unique_ptr<Optimizer> optimizer, const Dataset* validation = nullptr);

  /// Called after each batch with the examples done so far in the epoch and the epoch's total.
  using BatchCallback = std::function<void(std::size_t done, std::size_t total)>;

  /// Asked after each batch; returning true stops the epoch early (see run_epoch).
  using StopRequest = std::function<bool()>;

  /// One pass over the shuffled training set, then the test evaluation. Continues an epoch that was
  /// stopped or restored part-way. Returns nullopt when `should_stop` ended the epoch before its last
  /// batch; state() then describes the point reached, and the next call picks up from there.
  /// Throws TrainingDiverged at the first batch whose mean loss is not finite or above 100 ln(K); the
  /// trainer is then unusable (its weights took that step).
  std::optional<EpochMetrics> run_epoch(const BatchCallback& on_batch = {},
                                        const StopRequest& should_stop = {});

  /// Fills the test figures of the current model (when the test set has rows), and the validation
  /// figures when there is a hold-out.
  void evaluate_held_out(EpochMetrics& metrics);

  /// Starts from `parameters` (as parameters() would return them) instead of the seed's initial
  /// weights; only before the first batch. Tuning walks a regularization path this way.
  void warm_start(const SoftmaxModel& parameters);

  /// The state to save in a checkpoint, and to restore it into a trainer built with the same config.
  TrainerState state() const;
  void restore(const TrainerState& state);

  int epochs_done() const { return epochs_done_; }
  /// The examples trained on per epoch (the training set less the validation rows).
  std::size_t train_count() const { return train_rows_.size(); }
  const std::vector<std::uint32_t>& train_rows() const { return train_rows_; }
  const std::optional<Dataset>& validation() const { return validation_; }
  /// The model on raw inputs: what evaluates and predicts, and what model files store.
  const SoftmaxModel& model() const { return standardization_ ? folded_ : model_; }
  /// What the optimizer updates: the model itself, or its weights on standardized inputs.
  const SoftmaxModel& parameters() const { return model_; }
  /// With config.standardize: the training rows' means and deviations.
  const std::optional<Standardization>& standardization() const { return standardization_; }
  const TrainConfig& config() const { return config_; }
  const Optimizer& optimizer() const { return *optimizer_; }
  ThreadPool& pool() { return pool_; }

  /// Batches whose loss ran away (see kRunawayLossFactor) but training went on
  /// (config.stop_on_runaway_loss false), since the trainer was made.
  std::size_t runaway_batches() const { return runaway_batches_; }

  /// True when batches go through the SIMD kernels (kFast and a class count they are compiled for).
  bool uses_fast_path() const;
  /// True when the fast path applies plain SGD inside its backward pass instead of calling step().
  bool uses_fused_sgd() const;

 private:
  BatchSums train_batch(std::span<const std::uint32_t> rows, double lr);
  // The gradient sums of a batch (with respect to model()) to the step on the parameters.
  void step(WeightMatrix& dW, const BiasVector& db, std::size_t count, double lr);
  std::size_t batches_per_epoch() const;
  // The learning rate of batch `batch` of this epoch, from the recipe's schedule; current_lr() is the
  // next batch's.
  double lr_of_batch(std::size_t batch) const;
  double current_lr() const { return lr_of_batch(batches_done_); }
  // Throws TrainingDiverged if the batch's loss has run away.
  void check_batch_loss(double loss_sum, std::size_t count, double lr);
  // The rest of the epoch with the fast kernels; false if should_stop ended it early.
  bool train_epoch_fast(const BatchCallback& on_batch, const StopRequest& should_stop);
  // The rest of the epoch with the naive kernels; false if should_stop ended it early.
  bool train_epoch_naive(const BatchCallback& on_batch, const StopRequest& should_stop);
  // What each thread of the fast path counts in an epoch: its correct predictions, and the seconds it
  // spent in forward passes, in backward passes and waiting for the others. Kept on the thread's stack
  // and copied out at the end (counters written by both cores every batch would share a cache line).
  // A thread's waits for its team in the epoch so far, for run_epoch's check for a stall at each
  // batch's close (by thread 0, while the others go on: hence atomic, and a line each). Long waits,
  // those of a time slice, tell a thread off its CPU from a single hiccup of the host.
  struct alignas(64) LiveWait {
    static constexpr double kLongSeconds = 1e-3;
    std::atomic<double> seconds{0};
    std::atomic<int> long_waits{0};
  };
  struct ThreadTally {
    std::int64_t correct = 0;
    double forward = 0, backward = 0, waited = 0;
    LiveWait* live = nullptr;  // where meet() also counts the waits as they happen
    std::chrono::steady_clock::time_point mark = std::chrono::steady_clock::now();  // the last phase's end
    // Adds the time since the last mark to `phase` (forward or backward); returns the new mark.
    std::chrono::steady_clock::time_point lap(double& phase);
    // lap(phase), then meets the team at `barrier`; the time spent waiting for the others (what a second
    // thread fails to gain) goes to `waited`.
    void meet(SpinBarrier& barrier, std::size_t thread, double& phase);
  };
  // Adds the threads' tallies to the epoch's figures (correct count, busy, forward, backward, waiting).
  void add_thread_tallies(std::span<const ThreadTally> tallies);
  // Thread 0's books after the batch of `count` rows ending at `end`: its losses (`losses`, or batch_loss_)
  // row by row into the epoch's sum, the divergence check (throws), the batch count, on_batch; true when
  // should_stop asks the epoch to end there.
  bool close_batch(std::size_t end, std::size_t count, double lr, const BatchCallback& on_batch,
                   const StopRequest& should_stop, const float* losses = nullptr);
  // What two threads that meet once a batch share (train_epoch_split_classes, train_epoch_two_copies):
  // their barrier and tallies, the error thread 0's books raised, and the batch neither thread starts.
  // Thread 0 sets stop_at to the next batch when it stops after one, and both compare it with their
  // batch after the next meeting. A flag would not do with one meeting a batch: thread 1, late to read
  // it after a meeting, could find the one thread 0 raised after closing that same batch, and leave
  // thread 0 alone at the next meeting.
  struct MetOnceTeam {
    static constexpr std::size_t kNoStop = std::numeric_limits<std::size_t>::max();
    SpinBarrier barrier{2};
    std::array<ThreadTally, 2> tallies;
    std::atomic<std::size_t> stop_at{kNoStop};
    std::exception_ptr error;
    // After a meeting: whether thread 0 stopped after the batch before `batch`.
    bool stopped_before(std::size_t batch) const { return batch >= stop_at.load(std::memory_order_acquire); }
  };
  // close_batch for such a team: a stop, or an error (kept for finish_met_once to rethrow), sets
  // team.stop_at to the batch after `batch`, which neither thread then steps.
  void close_batch_met_once(std::size_t batch, std::size_t end, std::size_t count, double lr,
                            const BatchCallback& on_batch, const StopRequest& should_stop,
                            const float* losses, MetOnceTeam& team);
  // After the team's run: adds its tallies and rethrows its error; true when no stop ended the epoch.
  bool finish_met_once(const MetOnceTeam& team);
  // epoch_labels_ from position `first` of this epoch's order.
  void order_labels(std::size_t first);
  // Whether the fast path takes each gradient sum as two, over a batch's first and second halves of
  // rows (plain SGD, float32 products, a model of up to 128 KB), whatever the thread count.
  bool sums_in_two_halves() const;
  // Whether the fast path trains two classes as one, on their logits' margin (fast_binary_softmax):
  // two classes whose sums go in halves.
  bool trains_two_classes_as_one() const;
  // Whether two threads may split a batch by classes (plain SGD).
  bool can_split_by_classes() const;
  // The ways this run's epochs may train in, the one to start with first (EpochWayChoice); may measure
  // the round trip between the cores into round_trip_.
  std::vector<EpochWay> epoch_ways();
  // Whether a team whose epoch stalled may train alone (EpochWayChoice): on the fast path with two
  // threads or more and float32 products, unless the environment forces the way (SOFTREG_SOLO=no,
  // SOFTREG_SPLIT: what the tests and measurements of a way ask for).
  bool may_go_alone() const;
  // train_epoch_fast for two threads that each own half of the classes for all of the batch's rows.
  bool train_epoch_split_classes(const BatchCallback& on_batch, const StopRequest& should_stop);
  // train_epoch_fast for two threads and a model whose sums go in halves, split by rows, each thread
  // stepping a copy of the whole model.
  bool train_epoch_two_copies(const BatchCallback& on_batch, const StopRequest& should_stop);

  TrainConfig config_;
  std::unique_ptr<Optimizer> optimizer_;
  const Dataset& train_;
  const Dataset& test_;
  std::vector<std::uint32_t> train_rows_;  // the rows trained on: all but the validation rows
  std::optional<Dataset> validation_;      // a copy of the held-out rows, or of the given validation set
  Rng rng_;
  SoftmaxModel model_;                              // the parameters
  std::optional<Standardization> standardization_;  // with it, folded_ is model_ on raw inputs
  SoftmaxModel folded_;
  ThreadPool pool_;
  int epochs_done_ = 0;
  std::string epoch_rng_state_;  // generator state before the current epoch's shuffle
  // Thread 0's books, written after every batch (close_batch), on cache lines of their own: members the
  // other thread reads every batch (order_, the buffers' pointers) that shared a line with them would
  // miss each time (the recipe's two-thread epoch 2 % slower when a member added elsewhere moved them).
  alignas(64) std::size_t batches_done_ = 0;
  BatchSums partial_sums_;
  std::size_t runaway_batches_ = 0;
  // Whether to ask ahead, learned for each way of splitting an epoch: by rows (train_epoch_fast), two
  // copies, by classes. ask_ahead_now_ is the current epoch's, whose batches close_batch times; the
  // threads read its plan() once an epoch.
  std::array<AskAheadChoice, 3> ask_ahead_;
  AskAheadChoice* ask_ahead_now_ = nullptr;
  // Built at the first epoch (the order of its ways may need the cores' round trip).
  std::optional<EpochWayChoice> way_choice_;
  bool solo_now_ = false;  // this epoch trains on one thread of the team (train_epoch_fast)
  std::chrono::steady_clock::time_point batch_closed_;  // when thread 0 closed the last batch
  alignas(64) double barrier_wait_ = 0;                 // in the current epoch so far
  std::unique_ptr<LiveWait[]> live_waits_;              // a thread's each, for this run_epoch's team
  double forward_seconds_ = 0, backward_seconds_ = 0;
  std::vector<double> thread_busy_seconds_;  // EpochMetrics::thread_busy_seconds, so far
  double round_trip_ = 0;                    // EpochMetrics::core_round_trip_seconds
  std::vector<std::uint32_t> order_;
  // One gradient buffer and workspace per thread; summed in thread order after each batch.
  std::vector<WeightMatrix> thread_dW_;
  std::vector<BiasVector> thread_db_;
  std::vector<BatchSums> thread_sums_;
  std::vector<KernelWorkspace> workspaces_;
  // Fast path buffers for one batch; the rows twice: each thread gathers its share of the next
  // batch's (and asks memory for those rows) while the current batch's are still being read.
  std::array<std::vector<const std::uint8_t*>, 2> batch_pixels_;
  std::vector<Label> epoch_labels_;  // train_.labels in order_'s order
  std::vector<float> batch_db_sum_;
  AlignedVector<float> batch_dlogits_;
  std::vector<float> batch_loss_;
  // The fused SGD step of a small model on several threads: the gradient's sums over the batch's
  // first and second halves of rows, each computed by the thread whose forward pass read those rows.
  std::array<AlignedVector<float>, 2> batch_half_sums_;
  // Two classes trained as one: each thread's copy of the margin's weights, W_1 - W_0, for its forward
  // pass.
  std::vector<AlignedVector<float>> margin_W_;
  // train_epoch_two_copies: thread 1's copy of W and b (thread 0 steps the model itself), each thread's
  // rows of the batch by parity, and by parity each thread's half sums and the batch's dlogits and losses.
  struct TwoCopiesBuffers {
    WeightMatrix W;
    BiasVector b;
    std::array<std::vector<const std::uint8_t*>, 2> rows;
    std::array<AlignedVector<float>, 2> sums;
    std::vector<float> db;  // the batch's bias gradient (sum_columns)
  };
  std::array<TwoCopiesBuffers, 2> two_copies_;
  std::array<AlignedVector<float>, 2> two_copies_dlogits_, two_copies_losses_;
  // train_epoch_split_classes: each thread's rows of the batch (all of them), its classes' logits by
  // batch parity (read by the other thread), and its own copies of the whole logits, its classes'
  // dlogits and (thread 1) the losses it finds, which thread 0 also finds and keeps in batch_loss_;
  // in bfloat16 (compute "bf16") also its pairs of rows and its classes' dlogit pairs as the update
  // reads them. class_split_rows16_: the batch's rows as bfloat16 by parity, each thread packing half.
  struct ClassSplitBuffers {
    std::array<std::vector<const std::uint8_t*>, 2> rows;
    std::array<AlignedVector<float>, 2> logits;
    AlignedVector<float> whole, own_dlogits, other_loss;
    AlignedVector<std::uint32_t> row_pairs, dlogit_pairs;
    std::vector<float> db;  // its classes' bias gradient (sum_columns)
  };
  std::array<ClassSplitBuffers, 2> class_split_;
  std::array<AlignedVector<std::uint16_t>, 2> class_split_rows16_;
  // compute "bf16" (kernels.hpp): the batch's rows, W and the dlogits as the bfloat16 kernels read them,
  // and each thread's pairs of rows for its inputs.
  AlignedVector<std::uint16_t> bf16_rows_, bf16_W_;
  AlignedVector<std::uint32_t> bf16_dlogit_pairs_;
  std::vector<AlignedVector<std::uint32_t>> bf16_row_pairs_;
  // The batch gradient, for optimizers other than the fused SGD.
  WeightMatrix batch_dW_;
  BiasVector batch_db_;
};

}  // namespace softreg
