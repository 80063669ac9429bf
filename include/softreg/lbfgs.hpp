// Full-batch L-BFGS for softmax regression with an L2 penalty, a smooth convex problem:
//   f(W, b) = mean cross-entropy over the training rows + l2/2 * ||W||^2     (b is not penalized)
// The objective and its gradient over all rows come from the same kernels as minibatch training (the
// SIMD path when it serves the class count), summed in fixed blocks so that results do not depend on
// the thread count. The L-BFGS vectors are double precision; the line search satisfies the strong
// Wolfe conditions (Nocedal and Wright, Numerical Optimization, algorithms 3.5 and 3.6).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "softreg/dataset.hpp"
#include "softreg/kernels.hpp"
#include "softreg/model.hpp"
#include "softreg/parallel.hpp"
#include "softreg/standardize.hpp"

namespace softreg {

/// f and its gradient at one point.
struct FullBatchValue {
  double objective = 0;      // mean cross-entropy + l2/2 ||W||^2
  double mean_loss = 0;      // the cross-entropy part
  std::int64_t correct = 0;  // rows whose argmax is the label
  WeightMatrix dW;           // (D,K) gradient of f
  BiasVector db;             // (K)
};

/// Evaluates f over the rows `rows` of `data` (all rows when empty), reusing its buffers. With a
/// standardization, f is a function of the weights on standardized inputs (standardize.hpp).
class FullBatchObjective {
 public:
  FullBatchObjective(const Dataset& data, std::span<const std::uint32_t> rows, double l2, ThreadPool& pool,
                     KernelChoice kernel = KernelChoice::kFast,
                     std::optional<Standardization> standardization = std::nullopt);
  ~FullBatchObjective();
  FullBatchValue operator()(const SoftmaxModel& model);
  std::size_t rows() const;

 private:
  struct Buffers;
  std::unique_ptr<Buffers> buffers_;
};

struct LbfgsOptions {
  int max_iter = 100;  // iterations (each one line search)
  double tol = 1e-4;   // stop when the gradient's largest absolute entry is at most this
  int memory = 100;    // correction pairs kept, at most kMaxLbfgsHistoryBytes of them
};

/// The correction pairs (two double vectors each) are kept within this many bytes: for a model of a
/// million parameters that is 16 pairs, however many `memory` asks for.
inline constexpr std::size_t kMaxLbfgsHistoryBytes = std::size_t{256} << 20;

/// One iteration's report.
struct LbfgsIteration {
  int iteration = 0;  // 1-based
  double objective = 0;
  double grad_inf_norm = 0;
  double step = 0;      // the line search's step length along the search direction
  int evaluations = 0;  // objective evaluations in this iteration's line search
  double seconds = 0;   // since the start of the fit
};

struct LbfgsResult {
  int iterations = 0;
  int evaluations = 0;
  bool converged = false;    // the gradient reached tol
  double objective = 0;      // at the returned model, as are the two below
  double mean_loss = 0;      // the cross-entropy part of the objective
  std::int64_t correct = 0;  // rows whose argmax is the label
  double grad_inf_norm = 0;
  int memory = 0;           // correction pairs kept: options.memory within kMaxLbfgsHistoryBytes
  std::string stop_reason;  // "converged", "max_iter", "stopped", "line search failed"
};

/// Minimizes f from `model` (updated in place). `on_iteration` is called after every iteration;
/// `should_stop` returning true ends the fit after the current one (the model is the last accepted point).
LbfgsResult lbfgs_minimize(SoftmaxModel& model, FullBatchObjective& objective, const LbfgsOptions& options,
                           const std::function<void(const LbfgsIteration&)>& on_iteration = {},
                           const std::function<bool()>& should_stop = {});

}  // namespace softreg
