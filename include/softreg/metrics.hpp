// Evaluating a model on a whole dataset: mean loss, accuracy and each example's predicted class.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/model.hpp"
#include "softreg/parallel.hpp"

namespace softreg {

struct Evaluation {
  std::size_t count = 0;
  double loss = 0;                        // mean cross-entropy
  double accuracy = 0;                    // fraction of argmax predictions equal to the label
  std::vector<std::uint8_t> predictions;  // argmax class per example
};

/// Evaluates over fixed blocks of rows spread over the pool; the blocks are combined in order, so the
/// result does not depend on the number of threads.
Evaluation evaluate(const SoftmaxModel& model, const Dataset& data, ThreadPool& pool);

/// The seed's acceptance checks on the final epoch: train loss < 0.5, train acc > 0.7, test acc > 0.7.
struct AcceptanceCheck {
  std::string name;  // e.g. "train loss < 0.5"
  double value = 0;
  bool passed = false;
};
std::vector<AcceptanceCheck> acceptance_checks(double train_loss, double train_acc, double test_acc);

}  // namespace softreg
