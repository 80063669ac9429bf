// Evaluating a model on a whole dataset: mean loss, accuracy and each example's predicted class.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/kernels.hpp"
#include "softreg/model.hpp"
#include "softreg/parallel.hpp"

namespace softreg {

struct Evaluation {
  std::size_t count = 0;
  double loss = 0;                 // mean cross-entropy
  double accuracy = 0;             // fraction of argmax predictions equal to the label
  std::vector<Label> predictions;  // argmax class per example
};

/// Evaluates over fixed blocks of rows spread over the pool; the blocks are combined in order, so the
/// result does not depend on the number of threads.
Evaluation evaluate(const SoftmaxModel& model, const Dataset& data, ThreadPool& pool,
                    KernelChoice kernel = KernelChoice::kFast);

/// Per-class figures from a confusion matrix. A class never predicted has precision 0, one absent
/// from the labels recall 0, and F1 is 0 when both are (the convention of scikit-learn's zero_division=0).
struct ClassMetrics {
  double precision = 0;
  double recall = 0;
  double f1 = 0;
  std::int64_t support = 0;  // examples of this class
};

struct ClassificationReport {
  std::size_t count = 0;
  double accuracy = 0;
  double accuracy_stderr = 0;                        // binomial standard error sqrt(acc (1 - acc) / n)
  std::vector<std::vector<std::int64_t>> confusion;  // [true class][predicted class], K x K
  std::vector<ClassMetrics> per_class;
};

/// Confusion matrix, accuracy with its standard error and per-class precision, recall and F1.
ClassificationReport classification_report(std::span<const Label> labels, std::span<const Label> predictions,
                                           int num_classes);

/// The class most rows have and its share of them: the accuracy of always answering it, the least a
/// model should beat (scikit-learn's DummyClassifier, "most_frequent"). `per_class`: the rows of each
/// class. On a tie the lowest class; {0, 0, 0} for no rows.
struct MajorityClass {
  std::size_t label = 0;
  std::int64_t count = 0;
  double share = 0;
};
MajorityClass majority_class(std::span<const std::int64_t> per_class);

/// Whether an accuracy over the rows `per_class` counts is no better than the majority's: compared as
/// counts of rows, so a model right on exactly as many rows as the class has is caught whatever the
/// fractions' rounding. NaN counts as no better; no rows, as better (nothing to say).
bool no_better_than_majority(double accuracy, std::span<const std::int64_t> per_class);

/// The seed's acceptance checks on the final epoch: train loss < 0.5, train acc > 0.7, test acc > 0.7.
struct AcceptanceCheck {
  std::string name;  // e.g. "train loss < 0.5"
  double value = 0;
  bool passed = false;
};
std::vector<AcceptanceCheck> acceptance_checks(double train_loss, double train_acc, double test_acc);

}  // namespace softreg
