// Softmax, cross-entropy and the gradient: properties, central finite differences in double
// precision, and the fixture computed by PyTorch (tools/make_fixtures.py).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "softreg/kernels.hpp"
#include "softreg/loss.hpp"
#include "softreg/optim.hpp"

namespace softreg {
namespace {

using RowMatrixD = RowMatrix<double>;

TEST(Softmax, RowsSumToOne) {
  RowMatrixD logits(3, 4);
  logits << 1, 2, 3, 4, -1, 0, 1, 50, 0.5, 0.25, -3, 7;
  const RowMatrixD p = softmax_rows(logits);
  for (Eigen::Index i = 0; i < p.rows(); ++i) {
    EXPECT_NEAR(p.row(i).sum(), 1.0, 1e-15);
    EXPECT_TRUE((p.row(i).array() >= 0).all());
  }
  EXPECT_GT(p(0, 3), p(0, 2));  // order preserved
}

TEST(Softmax, EqualLogitsGiveUniform) {
  RowMatrix<float> logits = RowMatrix<float>::Constant(2, 10, 3.5f);
  logits.row(1).setConstant(-1e4f);
  const RowMatrix<float> p = softmax_rows(logits);
  for (Eigen::Index k = 0; k < 10; ++k) {
    EXPECT_FLOAT_EQ(p(0, k), 0.1f);
    EXPECT_FLOAT_EQ(p(1, k), 0.1f);
  }
  const std::vector<Label> labels = {0, 7};
  const Vector<float> loss = cross_entropy_rows(logits, labels);
  EXPECT_NEAR(loss(0), std::log(10.0f), 1e-6);
  EXPECT_NEAR(loss(1), std::log(10.0f), 1e-6);
}

TEST(Softmax, ExtremeLogitsStayFinite) {
  // The seed's exp(o) overflows to inf here (exp(1e4)); log-sum-exp must not.
  RowMatrix<float> logits(2, 3);
  logits << 1e4f, -1e4f, 0.0f, -1e4f, -1e4f + 1.0f, -1e4f;
  const RowMatrix<float> p = softmax_rows(logits);
  EXPECT_TRUE(p.allFinite());
  EXPECT_FLOAT_EQ(p(0, 0), 1.0f);
  const std::vector<Label> labels = {1, 1};
  const Vector<float> loss = cross_entropy_rows(logits, labels);
  ASSERT_TRUE(loss.allFinite());
  EXPECT_FLOAT_EQ(loss(0), 2e4f);  // log-prob of the far class is exactly -(1e4 - -1e4)
  EXPECT_NEAR(loss(1), std::log(1 + 2 * std::exp(-1.0f)), 1e-3);

  // The same through the gradient, in the reference and in the training kernel.
  RowMatrix<float> X(1, 2);
  X << 1.0f, 0.0f;
  ColMatrix<float> W(2, 3);
  W << 1e4f, -1e4f, 0.0f, 0, 0, 0;
  const Vector<float> b = Vector<float>::Zero(3);
  const std::vector<Label> y = {1};
  const LossAndGrad<float> g = loss_and_grad(X, W, b, y);
  EXPECT_TRUE(std::isfinite(g.loss_sum));
  EXPECT_TRUE(g.dW.allFinite());
  EXPECT_TRUE(g.db.allFinite());
  EXPECT_FLOAT_EQ(g.db(0), 1.0f);  // softmax 1 minus onehot 0
  EXPECT_FLOAT_EQ(g.db(1), -1.0f);
}

// Loss of the summed batch as a function of W and b, for the finite differences.
double summed_loss(const RowMatrixD& X, const ColMatrix<double>& W, const Vector<double>& b,
                   std::span<const Label> y) {
  const RowMatrixD logits = (X * W).rowwise() + b.transpose();
  return cross_entropy_rows(logits, y).sum();
}

TEST(Gradient, MatchesCentralFiniteDifferences) {
  std::mt19937 gen(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int N = 6, D = 5, K = 4;
  RowMatrixD X(N, D);
  ColMatrix<double> W(D, K);
  Vector<double> b(K);
  X = RowMatrixD::NullaryExpr(N, D, [&] { return normal(gen); });
  W = ColMatrix<double>::NullaryExpr(D, K, [&] { return normal(gen); });
  b = Vector<double>::NullaryExpr(K, [&] { return normal(gen); });
  const std::vector<Label> y = {0, 3, 1, 1, 2, 3};
  const LossAndGrad<double> g = loss_and_grad(X, W, b, y);

  // Central differences have O(h^2) truncation error and O(eps/h) rounding error; h = 1e-5 puts both
  // near 1e-10 for these O(1) values, so 1e-7 leaves a wide margin while catching any real mistake.
  const double h = 1e-5, tolerance = 1e-7;
  for (int d = 0; d < D; ++d) {
    for (int k = 0; k < K; ++k) {
      ColMatrix<double> Wp = W, Wm = W;
      Wp(d, k) += h;
      Wm(d, k) -= h;
      const double numeric = (summed_loss(X, Wp, b, y) - summed_loss(X, Wm, b, y)) / (2 * h);
      EXPECT_NEAR(g.dW(d, k), numeric, tolerance) << "dW(" << d << "," << k << ")";
    }
  }
  for (int k = 0; k < K; ++k) {
    Vector<double> bp = b, bm = b;
    bp(k) += h;
    bm(k) -= h;
    const double numeric = (summed_loss(X, W, bp, y) - summed_loss(X, W, bm, y)) / (2 * h);
    EXPECT_NEAR(g.db(k), numeric, tolerance) << "db(" << k << ")";
  }
}

// ---- The PyTorch fixture ------------------------------------------------------------------------

struct TorchFixture {
  nlohmann::json j;
  Dataset data;
  RowMatrixD X;
  ColMatrix<double> W0;
  Vector<double> b0;

  TorchFixture() {
    std::ifstream in(SOFTREG_FIXTURES_DIR "/torch_reference.json");
    j = nlohmann::json::parse(in);
    data.height = j["height"];
    data.width = j["width"];
    data.num_classes = j["classes"];
    data.pixels = j["pixels"].get<std::vector<std::uint8_t>>();
    data.labels = j["labels"].get<std::vector<Label>>();
    data.count = data.labels.size();
    const auto N = static_cast<Eigen::Index>(data.count), D = static_cast<Eigen::Index>(data.features());
    X.resize(N, D);
    for (Eigen::Index i = 0; i < N; ++i)
      for (Eigen::Index d = 0; d < D; ++d)
        X(i, d) = data.pixels[static_cast<std::size_t>(i * D + d)] / 255.0;
    W0 = matrix(j["W0"]);
    b0 = vector(j["b0"]);
  }
  static ColMatrix<double> matrix(const nlohmann::json& rows) {
    ColMatrix<double> m(static_cast<Eigen::Index>(rows.size()), static_cast<Eigen::Index>(rows[0].size()));
    for (Eigen::Index r = 0; r < m.rows(); ++r)
      for (Eigen::Index c = 0; c < m.cols(); ++c)
        m(r, c) = rows[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)];
    return m;
  }
  static Vector<double> vector(const nlohmann::json& values) {
    Vector<double> v(static_cast<Eigen::Index>(values.size()));
    for (Eigen::Index i = 0; i < v.size(); ++i)
      v(i) = values[static_cast<std::size_t>(i)];
    return v;
  }
};

TEST(TorchReference, DoublePrecisionLossAndGradientMatch) {
  const TorchFixture f;
  const LossAndGrad<double> g = loss_and_grad(f.X, f.W0, f.b0, f.data.labels);
  // Same float64 math in a different order: agreement to a few ulps of O(1) values.
  EXPECT_NEAR(g.loss_sum, f.j["loss_sum"].get<double>(), 1e-12);
  EXPECT_EQ(g.correct, f.j["correct"].get<int>());
  EXPECT_LT((g.dW - TorchFixture::matrix(f.j["dW"])).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_LT((g.db - TorchFixture::vector(f.j["db"])).cwiseAbs().maxCoeff(), 1e-12);
}

TEST(TorchReference, FloatKernelAndSgdStepsMatch) {
  const TorchFixture f;
  SoftmaxModel model;
  model.W = f.W0.cast<float>();
  model.b = f.b0.cast<float>();
  const double lr = f.j["sgd"]["lr"];
  std::vector<std::uint32_t> rows(f.data.count);
  for (std::uint32_t i = 0; i < rows.size(); ++i)
    rows[i] = i;

  // Float32 against float64: values of order 1 over a few terms agree to ~1e-6; 1e-5 is the bound.
  const double tolerance = 1e-5;
  WeightMatrix dW = WeightMatrix::Zero(model.W.rows(), model.W.cols());
  BiasVector db = BiasVector::Zero(model.b.size());
  KernelWorkspace ws;
  const BatchSums all = accumulate_gradient(f.data, rows, model, dW, db, ws);
  EXPECT_NEAR(all.loss, f.j["loss_sum"].get<double>(), tolerance);
  EXPECT_LT((dW.cast<double>() - TorchFixture::matrix(f.j["dW"])).cwiseAbs().maxCoeff(), tolerance);
  EXPECT_LT((db.cast<double>() - TorchFixture::vector(f.j["db"])).cwiseAbs().maxCoeff(), tolerance);

  // Three SGD steps over batches of 4, 4 and 2 rows: the last divides by its own size, 2.
  const auto& batches = f.j["sgd"]["batches"];
  for (std::size_t s = 0; s < batches.size(); ++s) {
    const std::size_t lo = batches[s][0], hi = batches[s][1];
    dW.setZero();
    db.setZero();
    const BatchSums step =
        accumulate_gradient(f.data, std::span(rows).subspan(lo, hi - lo), model, dW, db, ws);
    EXPECT_NEAR(step.loss, f.j["sgd"]["batch_loss_sums"][s].get<double>(), tolerance) << "step " << s;
    sgd_step(model, dW, db, lr, hi - lo);
  }
  EXPECT_LT((model.W.cast<double>() - TorchFixture::matrix(f.j["sgd"]["W"])).cwiseAbs().maxCoeff(),
            tolerance);
  EXPECT_LT((model.b.cast<double>() - TorchFixture::vector(f.j["sgd"]["b"])).cwiseAbs().maxCoeff(),
            tolerance);
  KernelWorkspace eval_ws;
  const BatchSums after = evaluate_rows(f.data, 0, f.data.count, model, {}, eval_ws);
  EXPECT_NEAR(after.loss / static_cast<double>(f.data.count), f.j["sgd"]["final_mean_loss"].get<double>(),
              tolerance);
}

}  // namespace
}  // namespace softreg
