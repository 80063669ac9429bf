// Training loop. Each batch is cut into one contiguous slice per thread; the slices' gradients are
// summed in slice order, so a run is bit-for-bit repeatable for a given seed and thread count.
#include "softreg/train.hpp"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "softreg/metrics.hpp"
#include "softreg/optim.hpp"

namespace softreg {

Trainer::Trainer(const TrainConfig& config, const Dataset& train, const Dataset& test)
    : config_(config),
      train_(train),
      test_(test),
      rng_(config.seed),
      model_(SoftmaxModel::initialized(static_cast<int>(train.features()), train.num_classes, config.init_std,
                                       rng_)),
      pool_(config.threads),
      order_(train.count) {
  const auto threads = static_cast<std::size_t>(pool_.threads());
  thread_dW_.assign(threads, WeightMatrix::Zero(model_.W.rows(), model_.W.cols()));
  thread_db_.assign(threads, BiasVector::Zero(model_.b.size()));
  thread_sums_.resize(threads);
  workspaces_.resize(threads);
}

BatchSums Trainer::train_batch(std::span<const std::uint32_t> rows) {
  const std::size_t slices = thread_dW_.size();
  const std::size_t slice_rows = (rows.size() + slices - 1) / slices;
  pool_.run(slices, [&](std::size_t s) {
    thread_dW_[s].setZero();
    thread_db_[s].setZero();
    thread_sums_[s] = {};
    const std::size_t begin = std::min(rows.size(), s * slice_rows);
    const std::size_t end = std::min(rows.size(), begin + slice_rows);
    if (begin < end) {
      thread_sums_[s] = accumulate_gradient(train_, rows.subspan(begin, end - begin), model_, thread_dW_[s],
                                            thread_db_[s], workspaces_[s]);
    }
  });
  BatchSums sums = thread_sums_[0];
  for (std::size_t s = 1; s < slices; ++s) {
    thread_dW_[0] += thread_dW_[s];
    thread_db_[0] += thread_db_[s];
    sums += thread_sums_[s];
  }
  sgd_step(model_, thread_dW_[0], thread_db_[0], config_.lr, rows.size());
  return sums;
}

EpochMetrics Trainer::run_epoch(const BatchCallback& on_batch) {
  const auto start = std::chrono::steady_clock::now();
  // A fresh permutation each epoch (like torch.randperm), so it depends only on the generator state.
  std::iota(order_.begin(), order_.end(), 0u);
  rng_.shuffle(order_);

  BatchSums epoch_sums;
  for (std::size_t begin = 0; begin < order_.size(); begin += config_.batch_size) {
    const std::size_t end = std::min(order_.size(), begin + config_.batch_size);
    epoch_sums += train_batch(std::span<const std::uint32_t>(order_).subspan(begin, end - begin));
    if (on_batch) on_batch(end, order_.size());
  }
  const Evaluation test = evaluate(model_, test_, pool_);
  ++epochs_done_;

  EpochMetrics metrics;
  metrics.epoch = epochs_done_;
  metrics.train_loss = epoch_sums.loss / static_cast<double>(train_.count);
  metrics.train_acc = static_cast<double>(epoch_sums.correct) / static_cast<double>(train_.count);
  metrics.test_loss = test.loss;
  metrics.test_acc = test.accuracy;
  metrics.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return metrics;
}

}  // namespace softreg
