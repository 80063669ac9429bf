// The hot loops of training and evaluation, on rows of a byte Dataset (pixels scaled by 1/255 as they
// are read). The math is loss.hpp's; these versions only avoid allocation and copies, and tests check
// them against loss_and_grad in double precision.
//
// N = rows in a block, D = inputs, K = classes. X is (N,D), W is (D,K), logits is (N,K).
#pragma once

#include <cstdint>
#include <span>

#include "softreg/dataset.hpp"
#include "softreg/loss.hpp"
#include "softreg/model.hpp"

namespace softreg {

/// Summed loss and number of correct predictions over some rows.
struct BatchSums {
  double loss = 0;
  std::int64_t correct = 0;

  BatchSums& operator+=(const BatchSums& other) {
    loss += other.loss;
    correct += other.correct;
    return *this;
  }
};

/// Scratch memory reused from call to call, so the training loop does not allocate.
struct KernelWorkspace {
  RowMatrix<float> X;       // (N,D) the rows as floats in [0,1]
  RowMatrix<float> logits;  // (N,K), then dlogits in place
};

/// Over the rows `rows` of `data`: returns the summed cross-entropy and correct count, and adds the
/// gradient of the summed loss to dW (D,K) and db (K).
BatchSums accumulate_gradient(const Dataset& data, std::span<const std::uint32_t> rows,
                              const SoftmaxModel& model, WeightMatrix& dW, BiasVector& db,
                              KernelWorkspace& workspace);

/// Forward pass over the contiguous rows [begin, end): summed loss and correct count. When
/// `predictions` is not empty it receives the argmax class of each row (end - begin entries).
BatchSums evaluate_rows(const Dataset& data, std::size_t begin, std::size_t end, const SoftmaxModel& model,
                        std::span<std::uint8_t> predictions, KernelWorkspace& workspace);

/// Logits of the contiguous rows [begin, end), (end - begin, K).
RowMatrix<float> logits_of_rows(const Dataset& data, std::size_t begin, std::size_t end,
                                const SoftmaxModel& model);

}  // namespace softreg
