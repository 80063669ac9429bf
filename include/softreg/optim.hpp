// Optimizers: what to do with the gradient of a minibatch. Training computes the gradient of the summed
// batch loss (dW, db) and hands it to an Optimizer; the seed's plain SGD is the first member.
// Plain SGD also has a fused fast path (kernels.hpp: fast_update_columns) that applies the step inside
// the backward pass; the trainer picks it automatically when the optimizer is Sgd, and tests check that
// it equals the gradient kernel followed by Sgd::step.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "softreg/model.hpp"

namespace softreg {

/// param -= lr * grad_sum / batch_size, for W and b; grad_sum is the gradient of the summed batch loss
/// and batch_size the number of examples actually in the batch (the last one may be short).
void sgd_step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum, double lr,
              std::size_t batch_size);

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
  double lr() const { return lr_; }

 private:
  double lr_;
};

}  // namespace softreg
