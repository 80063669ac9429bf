// Minibatch forward/backward with Eigen's blocked matrix products on a gathered float block.
#include <array>
#include <cmath>
#include <cstring>

#include "softreg/kernels.hpp"

namespace softreg {
namespace {

// pixel / 255 for every byte value, computed as a float division exactly as ToTensor does.
const std::array<float, 256>& pixel_scale_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int v = 0; v < 256; ++v)
      t[static_cast<std::size_t>(v)] = static_cast<float>(v) / 255.0f;
    return t;
  }();
  return table;
}

template <class RowIndex>
void gather_rows(const Dataset& data, std::size_t n, RowIndex row_index, RowMatrix<float>& X) {
  const std::size_t D = data.features();
  const auto& scale = pixel_scale_table();
  X.resize(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(D));
  if (data.element == ElementType::kF32) {  // features as they are (scale 1)
    for (std::size_t i = 0; i < n; ++i)
      std::memcpy(X.data() + i * D, data.image(row_index(i)), D * sizeof(float));
    return;
  }
  if (data.element == ElementType::kF64) {  // rounded to float32, as the fast kernels see them
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t d = 0; d < D; ++d)
        X(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(d)) = data.value(row_index(i), d);
    }
    return;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t* src = data.image(row_index(i));
    float* dst = X.data() + i * D;
    for (std::size_t d = 0; d < D; ++d)
      dst[d] = scale[src[d]];
  }
}

// Turns each row of logits into softmax(o) - onehot(y) in place (when `to_gradient`), and returns the
// summed loss and correct count. Subtracting the row max keeps every exp <= 1.
template <class LabelOf>
BatchSums softmax_cross_entropy_rows(RowMatrix<float>& logits, LabelOf label_of, bool to_gradient,
                                     std::span<Label> predictions) {
  BatchSums sums;
  const Eigen::Index K = logits.cols();
  for (Eigen::Index i = 0; i < logits.rows(); ++i) {
    float* o = logits.data() + i * K;
    const int y = label_of(static_cast<std::size_t>(i));
    int best = 0;
    for (Eigen::Index k = 1; k < K; ++k) {
      if (o[k] > o[best]) best = static_cast<int>(k);
    }
    const float row_max = o[best];
    float sum = 0;
    for (Eigen::Index k = 0; k < K; ++k)
      sum += std::exp(o[k] - row_max);
    sums.loss += static_cast<double>(row_max + std::log(sum) - o[y]);
    sums.correct += (best == y);
    if (!predictions.empty()) predictions[static_cast<std::size_t>(i)] = static_cast<Label>(best);
    if (to_gradient) {
      const float inv_sum = 1.0f / sum;
      for (Eigen::Index k = 0; k < K; ++k)
        o[k] = std::exp(o[k] - row_max) * inv_sum;
      o[y] -= 1.0f;
    }
  }
  return sums;
}

}  // namespace

BatchSums accumulate_gradient(const Dataset& data, std::span<const std::uint32_t> rows,
                              const SoftmaxModel& model, WeightMatrix& dW, BiasVector& db,
                              KernelWorkspace& ws) {
  gather_rows(
      data, rows.size(), [&](std::size_t i) { return rows[i]; }, ws.X);
  ws.logits.noalias() = ws.X * model.W;
  ws.logits.rowwise() += model.b.transpose();
  const BatchSums sums = softmax_cross_entropy_rows(
      ws.logits, [&](std::size_t i) { return int{data.labels[rows[i]]}; }, /*to_gradient=*/true, {});
  dW.noalias() += ws.X.transpose() * ws.logits;
  db += ws.logits.colwise().sum().transpose();
  return sums;
}

BatchSums evaluate_rows(const Dataset& data, std::size_t begin, std::size_t end, const SoftmaxModel& model,
                        std::span<Label> predictions, KernelWorkspace& ws) {
  gather_rows(
      data, end - begin, [&](std::size_t i) { return begin + i; }, ws.X);
  ws.logits.noalias() = ws.X * model.W;
  ws.logits.rowwise() += model.b.transpose();
  return softmax_cross_entropy_rows(
      ws.logits, [&](std::size_t i) { return int{data.labels[begin + i]}; }, /*to_gradient=*/false,
      predictions);
}

RowMatrix<float> logits_of_rows(const Dataset& data, std::size_t begin, std::size_t end,
                                const SoftmaxModel& model) {
  KernelWorkspace ws;
  gather_rows(
      data, end - begin, [&](std::size_t i) { return begin + i; }, ws.X);
  RowMatrix<float> logits = ws.X * model.W;
  logits.rowwise() += model.b.transpose();
  return logits;
}

}  // namespace softreg
