// Whole-dataset evaluation on top of the forward kernel.
#include "softreg/metrics.hpp"

#include <algorithm>

#include "softreg/kernels.hpp"

namespace softreg {
namespace {
// Rows per evaluation block: large enough for efficient matrix products, small enough to stay in cache.
constexpr std::size_t kEvalBlockRows = 512;
}  // namespace

Evaluation evaluate(const SoftmaxModel& model, const Dataset& data, ThreadPool& pool) {
  Evaluation result;
  result.count = data.count;
  result.predictions.resize(data.count);
  const std::size_t blocks = (data.count + kEvalBlockRows - 1) / kEvalBlockRows;
  std::vector<BatchSums> block_sums(blocks);
  std::vector<KernelWorkspace> workspaces(static_cast<std::size_t>(pool.threads()));
  pool.run(blocks, [&](std::size_t block) {
    const std::size_t begin = block * kEvalBlockRows;
    const std::size_t end = std::min(data.count, begin + kEvalBlockRows);
    auto& workspace = workspaces[block % workspaces.size()];  // task i runs on thread i % threads
    block_sums[block] = evaluate_rows(data, begin, end, model,
                                      std::span(result.predictions).subspan(begin, end - begin), workspace);
  });
  BatchSums total;
  for (const BatchSums& sums : block_sums)
    total += sums;
  if (data.count > 0) {
    result.loss = total.loss / static_cast<double>(data.count);
    result.accuracy = static_cast<double>(total.correct) / static_cast<double>(data.count);
  }
  return result;
}

std::vector<AcceptanceCheck> acceptance_checks(double train_loss, double train_acc, double test_acc) {
  // The seed asserts train_loss < 0.5 and 0.7 < acc <= 1; NaN fails every comparison, as it should.
  return {
      {"train loss < 0.5", train_loss, train_loss < 0.5},
      {"train acc > 0.7", train_acc, train_acc > 0.7 && train_acc <= 1.0},
      {"test acc > 0.7", test_acc, test_acc > 0.7 && test_acc <= 1.0},
  };
}

}  // namespace softreg
