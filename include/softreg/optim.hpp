// Optimizers: what to do with the gradient of a minibatch. Training computes the gradient of the summed
// batch loss (dW, db) and hands it to an Optimizer: the seed's plain SGD, SGD with momentum or
// Nesterov momentum, Adam and AdamW, each tested against torch.optim. Also the L2 penalty and the
// learning-rate schedules.
// Plain SGD also has a fused fast path (kernels.hpp: fast_update_columns) that applies the step inside
// the backward pass; the trainer picks it automatically when the optimizer is Sgd, and tests check that
// it equals the gradient kernel followed by Sgd::step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "softreg/model.hpp"

namespace softreg {

/// param -= lr * grad_sum / batch_size, for W and b; grad_sum is the gradient of the summed batch loss
/// and batch_size the number of examples actually in the batch (the last one may be short).
void sgd_step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum, double lr,
              std::size_t batch_size);

/// What an optimizer carries from step to step, for checkpoints: named buffers shaped like W (D,K) or
/// b (K), stored flat, and the number of steps taken. Plain SGD has none.
struct OptimizerState {
  std::map<std::string, std::vector<float>> buffers;
  std::int64_t steps = 0;
};

/// One optimizer of a training run. It may keep state between steps (momentum buffers, moments); it
/// sees every batch of the run in order, and is used by one thread at a time.
class Optimizer {
 public:
  virtual ~Optimizer() = default;

  /// A short name for reports and model files ("sgd").
  virtual std::string name() const = 0;

  /// Updates `model` from the gradient of the summed loss over a batch of `batch_size` examples:
  /// dW_sum is (D,K) like W, db_sum is (K). The mean gradient is dW_sum / batch_size.
  virtual void step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum,
                    std::size_t batch_size) = 0;

  /// The learning rate of the next steps (a schedule changes it between batches).
  virtual void set_learning_rate(double lr) = 0;

  /// The state to checkpoint, and to restore into an optimizer made with the same settings for a model
  /// shaped like `like` (an Error if the buffers do not fit it).
  virtual OptimizerState state() const { return {}; }
  virtual void restore(const OptimizerState& state, const SoftmaxModel& like);
};

/// The seed's minibatch SGD (d2l.sgd): W -= lr * dW_sum / batch_size, the same for b.
class Sgd final : public Optimizer {
 public:
  explicit Sgd(double lr) : lr_(lr) {}
  std::string name() const override { return "sgd"; }
  void step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum,
            std::size_t batch_size) override {
    sgd_step(model, dW_sum, db_sum, lr_, batch_size);
  }
  void set_learning_rate(double lr) override { lr_ = lr; }
  double lr() const { return lr_; }

 private:
  double lr_;
};

/// SGD with momentum as torch.optim.SGD does it (dampening 0): buf = momentum * buf + g (buf = g on
/// the first step), then param -= lr * buf, or with Nesterov param -= lr * (g + momentum * buf);
/// g is the mean gradient.
class Momentum final : public Optimizer {
 public:
  Momentum(double lr, double momentum, bool nesterov) : lr_(lr), momentum_(momentum), nesterov_(nesterov) {}
  std::string name() const override { return nesterov_ ? "nesterov" : "momentum"; }
  void step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum,
            std::size_t batch_size) override;
  void set_learning_rate(double lr) override { lr_ = lr; }
  OptimizerState state() const override;
  void restore(const OptimizerState& state, const SoftmaxModel& like) override;

 private:
  double lr_, momentum_;
  bool nesterov_;
  std::int64_t steps_ = 0;
  WeightMatrix buf_W_;
  BiasVector buf_b_;
};

/// Adam (Kingma and Ba) as torch.optim.Adam does it, with bias correction; with `decoupled_decay` > 0
/// it is AdamW (torch.optim.AdamW): W is first shrunk by lr * decoupled_decay (b is not).
class Adam final : public Optimizer {
 public:
  Adam(double lr, double beta1, double beta2, double eps, double decoupled_decay = 0)
      : lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps), decay_(decoupled_decay) {}
  std::string name() const override { return decay_ > 0 ? "adamw" : "adam"; }
  void step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum,
            std::size_t batch_size) override;
  void set_learning_rate(double lr) override { lr_ = lr; }
  OptimizerState state() const override;
  void restore(const OptimizerState& state, const SoftmaxModel& like) override;

 private:
  double lr_, beta1_, beta2_, eps_, decay_;
  std::int64_t steps_ = 0;
  WeightMatrix m_W_, v_W_;
  BiasVector m_b_, v_b_;
};

/// The L2 penalty lambda/2 * ||W||^2 of the objective (b is not penalized), added to the gradient of a
/// batch's summed loss: dW_sum += batch_size * lambda * W, so the mean gradient gains lambda * W.
void add_l2_gradient(WeightMatrix& dW_sum, const WeightMatrix& W, double lambda, std::size_t batch_size);

/// The optimizers by name, for flags and model files.
/// "lbfgs" is the full-batch solver (lbfgs.hpp) that TrainingRun runs instead of minibatch epochs.
inline constexpr const char* kOptimizerNames[] = {"sgd", "momentum", "nesterov", "adam", "adamw", "lbfgs"};

/// Settings of every optimizer; each uses the ones that apply to it.
struct OptimizerSettings {
  std::string name = "sgd";
  double lr = 0.1;
  double momentum = 0.9;       // momentum, nesterov
  double beta1 = 0.9;          // adam, adamw
  double beta2 = 0.999;        // adam, adamw
  double eps = 1e-8;           // adam, adamw
  double weight_decay = 0.01;  // adamw (decoupled)
};
/// The optimizer named by settings.name; an Error for an unknown name.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerSettings& settings);

/// Learning-rate schedules over a run: constant, step (times gamma every step_epochs epochs) or cosine
/// (from lr down to 0 by the last batch), after an optional linear warmup from lr / warmup_steps.
struct LrSchedule {
  std::string kind = "constant";  // constant, step, cosine
  double warmup_epochs = 0;
  int step_epochs = 1;  // step: epochs between reductions
  double gamma = 0.1;   // step: the factor of each reduction
};
inline constexpr const char* kScheduleNames[] = {"constant", "step", "cosine"};

/// The learning rate for batch `batch` (0-based) of epoch `epoch` (0-based) of `epochs`.
double scheduled_lr(const LrSchedule& schedule, double base_lr, int epoch, std::size_t batch,
                    std::size_t batches_per_epoch, int epochs);

}  // namespace softreg
