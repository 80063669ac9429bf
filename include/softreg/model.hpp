// The linear model of softmax regression: logits = X W + b.
// D = inputs (784 for 28x28 images), K = classes (10). W is (D,K), b is (K).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "softreg/rng.hpp"

namespace softreg {

/// A class index. Two bytes: a model has at most kMaxClasses classes.
using Label = std::uint16_t;
/// The most classes a model may have: enough for ImageNet-scale probes (1,000 or 4,096 classes),
/// small enough that a K x K confusion matrix stays in memory.
inline constexpr int kMaxClasses = 4096;

/// Column-major (D,K) weights: each class's D weights are contiguous, which is also the memory layout
/// of torch.nn.Linear's (K,D) weight.
using WeightMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using BiasVector = Eigen::Matrix<float, Eigen::Dynamic, 1>;
/// A vector on the boundary Eigen aligns its heap blocks to (64 bytes: CMakeLists.txt), for buffers the
/// SIMD kernels read and write a vector at a time, as they do W: a 512-bit load that spans two cache
/// lines costs two.
template <class T>
using AlignedVector = std::vector<T, Eigen::aligned_allocator<T>>;

struct SoftmaxModel {
  WeightMatrix W;  // (D,K)
  BiasVector b;    // (K)

  int inputs() const { return static_cast<int>(W.rows()); }
  int classes() const { return static_cast<int>(W.cols()); }

  /// The seed's initialization: W ~ N(0, init_std^2) drawn column by column from `rng`, b = 0.
  static SoftmaxModel initialized(int inputs, int classes, double init_std, Rng& rng);
};

}  // namespace softreg
