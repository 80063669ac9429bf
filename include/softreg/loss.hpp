// Softmax, cross-entropy and their gradient, written for reading: the reference every faster kernel
// is tested against. Templated on the scalar so tests can run them in double precision.
//
// N = batch, D = inputs, K = classes. X is (N,D), W is (D,K), b is (K), logits o = XW + b is (N,K).
//   softmax(o)_j      = exp(o_j - m) / sum_k exp(o_k - m), m = max_k o_k (any m gives the same value;
//                       the max keeps every exp <= 1, so nothing overflows)
//   loss(o, y)        = log sum_k exp(o_k) - o_y = m + log sum_k exp(o_k - m) - o_y
//   dloss/do          = softmax(o) - onehot(y)                   (the seed's derivation)
//   dW = X^T dlogits, db = sum over rows of dlogits               (for the summed batch loss)
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <span>

#include "softreg/model.hpp"

namespace softreg {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ColMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// Row-wise log-softmax through log-sum-exp.
template <class T>
RowMatrix<T> log_softmax_rows(const RowMatrix<T>& logits) {
  RowMatrix<T> out(logits.rows(), logits.cols());
  for (Eigen::Index i = 0; i < logits.rows(); ++i) {
    const T row_max = logits.row(i).maxCoeff();
    const T log_sum = std::log((logits.row(i).array() - row_max).exp().sum());
    out.row(i) = logits.row(i).array() - row_max - log_sum;
  }
  return out;
}

/// Row-wise softmax: each row is a probability distribution.
template <class T>
RowMatrix<T> softmax_rows(const RowMatrix<T>& logits) {
  return log_softmax_rows(logits).array().exp().matrix();
}

/// Per-row cross-entropy -log softmax(o)_y.
template <class T>
Vector<T> cross_entropy_rows(const RowMatrix<T>& logits, std::span<const Label> labels) {
  const RowMatrix<T> log_probs = log_softmax_rows(logits);
  Vector<T> loss(logits.rows());
  for (Eigen::Index i = 0; i < logits.rows(); ++i)
    loss(i) = -log_probs(i, labels[static_cast<std::size_t>(i)]);
  return loss;
}

/// Index of the largest logit (the first one on ties).
template <class Row>
int argmax(const Row& row) {
  Eigen::Index best = 0;
  row.maxCoeff(&best);
  return static_cast<int>(best);
}

template <class T>
struct LossAndGrad {
  T loss_sum = 0;            // sum over the batch of the cross-entropy
  std::int64_t correct = 0;  // rows whose argmax logit is the label
  ColMatrix<T> dW;           // (D,K) gradient of loss_sum
  Vector<T> db;              // (K)
};

/// The summed batch loss and its analytic gradient.
template <class T>
LossAndGrad<T> loss_and_grad(const RowMatrix<T>& X, const ColMatrix<T>& W, const Vector<T>& b,
                             std::span<const Label> labels) {
  const RowMatrix<T> logits = (X * W).rowwise() + b.transpose();
  RowMatrix<T> dlogits = softmax_rows(logits);
  LossAndGrad<T> result;
  result.loss_sum = cross_entropy_rows(logits, labels).sum();
  for (Eigen::Index i = 0; i < X.rows(); ++i) {
    const int y = labels[static_cast<std::size_t>(i)];
    if (argmax(logits.row(i)) == y) ++result.correct;
    dlogits(i, y) -= T(1);
  }
  result.dW = X.transpose() * dlogits;
  result.db = dlogits.colwise().sum().transpose();
  return result;
}

}  // namespace softreg
