// Full-batch objective on the training kernels, and L-BFGS with a strong Wolfe line search.
#include "softreg/lbfgs.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <numeric>
#include <optional>
#include <string>

#include "softreg/clock.hpp"
#include "softreg/error.hpp"

namespace softreg {
namespace {

// The fast path reads each row from memory once per evaluation: a block of kBlockRows rows (a few hundred KB,
// resident in L2) goes through the forward pass and at once through the gradient over all inputs. Blocks
// form fixed groups of kGroupBlocks; a group's blocks are summed in order into the group's double sums and
// the groups in order at the end, so the result never depends on the thread count.
constexpr std::size_t kBlockRows = 256;
constexpr std::size_t kGroupBlocks = 8;
// The naive path's blocks (one gradient each, summed in block order).
constexpr std::size_t kNaiveBlockRows = 1024;

using Vec = Eigen::VectorXd;

// W (D,K) and b (K) as one vector: the model's parameters, or a gradient's.
Vec flatten(const WeightMatrix& W, const BiasVector& b) {
  Vec x(W.size() + b.size());
  x.head(W.size()) = Eigen::Map<const Eigen::VectorXf>(W.data(), W.size()).cast<double>();
  x.tail(b.size()) = b.cast<double>();
  return x;
}

void unflatten(const Vec& x, SoftmaxModel& m) {
  for (Eigen::Index i = 0; i < m.W.size(); ++i)
    m.W.data()[i] = static_cast<float>(x[i]);
  for (Eigen::Index k = 0; k < m.b.size(); ++k)
    m.b[k] = static_cast<float>(x[m.W.size() + k]);
}

}  // namespace

struct FullBatchObjective::Buffers {
  const Dataset& data;
  std::vector<std::uint32_t> rows;
  double l2;
  ThreadPool& pool;
  KernelChoice kernel;
  std::optional<Standardization> standardization;
  SoftmaxModel folded;                      // the model on raw inputs, with a standardization
  std::vector<const std::uint8_t*> pixels;  // row pointers, for the fast path
  std::vector<Label> labels;
  std::vector<float> loss;  // N
  // Per group: rows whose argmax is the label, and the gradient sums (K,D) and (K) in double.
  std::vector<std::int64_t> group_correct;
  std::vector<double> group_dW;
  std::vector<double> group_db;
  // Per thread: one block's dlogits (kBlockRows,K) and gradient (K,D).
  std::vector<std::vector<float>> thread_dlogits;
  std::vector<std::vector<float>> thread_partial;
  // The naive path: one gradient per block, summed in block order.
  std::vector<WeightMatrix> block_dW;
  std::vector<BiasVector> block_db;
  std::vector<BatchSums> block_sums;
  std::vector<KernelWorkspace> workspaces;

  Buffers(const Dataset& d, std::span<const std::uint32_t> r, double lambda, ThreadPool& p, KernelChoice k,
          std::optional<Standardization> s)
      : data(d), rows(r.begin(), r.end()), l2(lambda), pool(p), kernel(k), standardization(std::move(s)) {
    if (rows.empty()) {
      rows.resize(data.count);
      std::iota(rows.begin(), rows.end(), 0u);
    }
    if (rows.empty()) throw Error("the full-batch objective needs at least one row");
  }
};

FullBatchObjective::FullBatchObjective(const Dataset& data, std::span<const std::uint32_t> rows, double l2,
                                       ThreadPool& pool, KernelChoice kernel,
                                       std::optional<Standardization> standardization)
    : buffers_(std::make_unique<Buffers>(data, rows, l2, pool, kernel, std::move(standardization))) {}
FullBatchObjective::~FullBatchObjective() = default;

std::size_t FullBatchObjective::rows() const {
  return buffers_->rows.size();
}

FullBatchValue FullBatchObjective::operator()(const SoftmaxModel& parameters) {
  Buffers& b = *buffers_;
  if (b.standardization) fold_standardization(parameters, *b.standardization, b.folded);
  const SoftmaxModel& model = b.standardization ? b.folded : parameters;  // what the kernels compute with
  const std::size_t N = b.rows.size(), D = b.data.features();
  const auto K = static_cast<std::size_t>(model.classes());
  FullBatchValue v;
  double loss_sum = 0;
  if (b.kernel == KernelChoice::kFast) {
    if (b.pixels.size() != N) {
      b.pixels.resize(N);
      b.labels.resize(N);
      for (std::size_t i = 0; i < N; ++i) {
        b.pixels[i] = b.data.image(b.rows[i]);
        b.labels[i] = b.data.labels[b.rows[i]];
      }
      b.loss.resize(N);
      const auto threads = static_cast<std::size_t>(b.pool.threads());
      b.thread_dlogits.assign(threads, std::vector<float>(kBlockRows * K));
      b.thread_partial.assign(threads, std::vector<float>(K * D));
    }
    const std::size_t blocks = (N + kBlockRows - 1) / kBlockRows;
    const std::size_t groups = (blocks + kGroupBlocks - 1) / kGroupBlocks;
    b.group_correct.assign(groups, 0);
    b.group_dW.assign(groups * K * D, 0.0);
    b.group_db.assign(groups * K, 0.0);
    b.pool.run(groups, [&](std::size_t group) {
      const std::size_t thread = group % static_cast<std::size_t>(b.pool.threads());  // ThreadPool's rule
      float* dlogits = b.thread_dlogits[thread].data();
      float* partial = b.thread_partial[thread].data();
      double* dW = b.group_dW.data() + group * K * D;
      double* db = b.group_db.data() + group * K;
      const std::size_t block_end = std::min(blocks, (group + 1) * kGroupBlocks);
      for (std::size_t block = group * kGroupBlocks; block < block_end; ++block) {
        const std::size_t r0 = block * kBlockRows, count = std::min(N, r0 + kBlockRows) - r0;
        b.group_correct[group] += fast_forward_rows({b.pixels.data() + r0, b.labels.data() + r0, count, D, K,
                                                     b.data.element, model.W.data(), model.b.data(),
                                                     b.data.scale(), b.loss.data() + r0, nullptr, dlogits});
        fast_gradient_columns(
            {b.pixels.data() + r0, dlogits, count, D, K, b.data.element, 0, D, b.data.scale(), partial});
        for (std::size_t i = 0; i < K * D; ++i)
          dW[i] += partial[i];
        for (std::size_t r = 0; r < count; ++r)
          for (std::size_t k = 0; k < K; ++k)
            db[k] += dlogits[r * K + k];
      }
    });
    std::vector<double> dW_sum(b.group_dW.begin(), b.group_dW.begin() + static_cast<std::ptrdiff_t>(K * D));
    std::vector<double> db_sum(b.group_db.begin(), b.group_db.begin() + static_cast<std::ptrdiff_t>(K));
    for (std::size_t group = 1; group < groups; ++group) {
      for (std::size_t i = 0; i < K * D; ++i)
        dW_sum[i] += b.group_dW[group * K * D + i];
      for (std::size_t k = 0; k < K; ++k)
        db_sum[k] += b.group_db[group * K + k];
    }
    v.dW.resize(model.W.rows(), model.W.cols());
    for (std::size_t i = 0; i < D * K; ++i)
      v.dW.data()[i] = static_cast<float>(dW_sum[i]);
    v.db.resize(static_cast<Eigen::Index>(K));
    for (std::size_t k = 0; k < K; ++k)
      v.db[static_cast<Eigen::Index>(k)] = static_cast<float>(db_sum[k]);
    for (std::size_t r = 0; r < N; ++r)
      loss_sum += b.loss[r];
    for (std::int64_t c : b.group_correct)
      v.correct += c;
  } else {
    const std::size_t blocks = (N + kNaiveBlockRows - 1) / kNaiveBlockRows;
    b.block_dW.assign(blocks, WeightMatrix::Zero(model.W.rows(), model.W.cols()));
    b.block_db.assign(blocks, BiasVector::Zero(model.b.size()));
    b.block_sums.assign(blocks, {});
    b.workspaces.resize(static_cast<std::size_t>(b.pool.threads()));
    b.pool.run(blocks, [&](std::size_t block) {
      const std::size_t r0 = block * kNaiveBlockRows, r1 = std::min(N, r0 + kNaiveBlockRows);
      b.block_sums[block] = accumulate_gradient(
          b.data, std::span<const std::uint32_t>(b.rows).subspan(r0, r1 - r0), model, b.block_dW[block],
          b.block_db[block], b.workspaces[block % b.workspaces.size()]);
    });
    v.dW = b.block_dW[0];
    v.db = b.block_db[0];
    for (std::size_t block = 1; block < blocks; ++block) {
      v.dW += b.block_dW[block];
      v.db += b.block_db[block];
    }
    for (const BatchSums& s : b.block_sums) {
      loss_sum += s.loss;
      v.correct += s.correct;
    }
  }
  if (b.standardization) standardize_gradient(v.dW, v.db, *b.standardization);
  const double n = static_cast<double>(N);
  v.mean_loss = loss_sum / n;
  v.objective = v.mean_loss + 0.5 * b.l2 * parameters.W.cast<double>().squaredNorm();
  v.dW = v.dW / static_cast<float>(n) + static_cast<float>(b.l2) * parameters.W;
  v.db /= static_cast<float>(n);
  return v;
}

namespace {

struct Point {
  double alpha = 0;
  double f = 0;
  double slope = 0;  // phi'(alpha) = g(x + alpha d) . d
  FullBatchValue value;
};

// The minimizer of the cubic through (a, fa, da) and (b, fb, db), or NaN when it has none.
double cubic_minimizer(double a, double fa, double da, double b, double fb, double db) {
  const double d1 = da + db - 3 * (fa - fb) / (a - b);
  const double disc = d1 * d1 - da * db;
  if (!(disc >= 0)) return std::nan("");
  const double d2 = std::copysign(std::sqrt(disc), b - a);
  return b - (b - a) * (db + d2 - d1) / (db - da + 2 * d2);
}

// The relative error of f evaluated with float kernels (per-row losses summed in double), measured on
// Fashion-MNIST-sized problems at about 2.5e-9; the line search treats differences below it as noise.
constexpr double kObjectiveNoise = 1e-8;

// Strong Wolfe line search along d from x (f0, slope0 < 0). Returns the accepted point, or nullopt.
std::optional<Point> wolfe_search(const Vec& x, const Vec& d, double f0, double slope0, double alpha_init,
                                  SoftmaxModel& trial, FullBatchObjective& objective, int& evaluations) {
  constexpr double c1 = 1e-4, c2 = 0.9;
  constexpr int kMaxEvaluations = 25;
  const auto evaluate = [&](double alpha) {
    unflatten(x + alpha * d, trial);
    Point p;
    p.alpha = alpha;
    p.value = objective(trial);
    p.f = p.value.objective;
    p.slope = flatten(p.value.dW, p.value.db).dot(d);
    ++evaluations;
    return p;
  };
  // Near the optimum the decrease c1 * alpha * slope0 falls below the noise of evaluating f in float
  // (about 1e-9 relative), and the Armijo test cannot see progress. Then the approximate Wolfe condition
  // of Hager and Zhang (2005) decides from the slope, which the gradient gives accurately: f no higher
  // than the noise allows and phi'(alpha) <= (2 c1 - 1) phi'(0).
  const double noise = kObjectiveNoise * std::max(1.0, std::abs(f0));
  const auto sufficient = [&](const Point& p) {
    return p.f <= f0 + c1 * p.alpha * slope0 || (p.f <= f0 + noise && p.slope <= (2 * c1 - 1) * slope0);
  };
  const auto curvature = [&](const Point& p) { return std::abs(p.slope) <= -c2 * slope0; };
  const auto zoom = [&](Point lo, Point hi) -> std::optional<Point> {
    while (evaluations < kMaxEvaluations) {
      const double left = std::min(lo.alpha, hi.alpha), width = std::abs(hi.alpha - lo.alpha);
      double alpha = cubic_minimizer(lo.alpha, lo.f, lo.slope, hi.alpha, hi.f, hi.slope);
      if (!std::isfinite(alpha) || alpha < left + 0.1 * width || alpha > left + 0.9 * width)
        alpha = 0.5 * (lo.alpha + hi.alpha);  // bisection when the cubic is no help
      const Point p = evaluate(alpha);
      if (!sufficient(p) || p.f >= lo.f) {
        hi = p;
      } else {
        if (curvature(p)) return p;
        if (p.slope * (hi.alpha - lo.alpha) >= 0) hi = lo;
        lo = p;
      }
      if (width < 1e-16 * std::max(1.0, std::abs(lo.alpha))) break;
    }
    return sufficient(lo) && lo.alpha > 0 ? std::optional<Point>(lo) : std::nullopt;
  };
  Point previous{0, f0, slope0, {}};
  double alpha = alpha_init;
  for (int i = 0; evaluations < kMaxEvaluations; ++i) {
    const Point p = evaluate(alpha);
    if (!std::isfinite(p.f) || !sufficient(p) || (i > 0 && p.f >= previous.f)) return zoom(previous, p);
    if (curvature(p)) return p;
    if (p.slope >= 0) return zoom(p, previous);
    previous = p;
    alpha *= 2;
  }
  return std::nullopt;
}

}  // namespace

LbfgsResult lbfgs_minimize(SoftmaxModel& model, FullBatchObjective& objective, const LbfgsOptions& options,
                           const std::function<void(const LbfgsIteration&)>& on_iteration,
                           const std::function<bool()>& should_stop) {
  const auto start = std::chrono::steady_clock::now();
  LbfgsResult result;
  Vec x = flatten(model.W, model.b);
  FullBatchValue value = objective(model);
  result.evaluations = 1;
  Vec g = flatten(value.dW, value.db);
  const std::size_t pair_bytes = 2 * sizeof(double) * static_cast<std::size_t>(x.size());
  result.memory = static_cast<int>(std::clamp<std::size_t>(
      kMaxLbfgsHistoryBytes / pair_bytes, 1, static_cast<std::size_t>(std::max(1, options.memory))));
  std::deque<std::pair<Vec, Vec>> pairs;  // (s, y), newest last
  SoftmaxModel trial = model;
  result.stop_reason = "max_iter";
  for (int iter = 1; iter <= options.max_iter; ++iter) {
    if (g.lpNorm<Eigen::Infinity>() <= options.tol) {
      result.stop_reason = "converged";
      break;
    }
    // Two-loop recursion: d = -H g, with H0 = (s'y / y'y) I from the newest pair.
    Vec q = g;
    std::vector<double> a(pairs.size());
    for (std::size_t i = pairs.size(); i-- > 0;) {
      const auto& [s, y] = pairs[i];
      a[i] = s.dot(q) / y.dot(s);
      q -= a[i] * y;
    }
    if (!pairs.empty()) q *= pairs.back().first.dot(pairs.back().second) / pairs.back().second.squaredNorm();
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      const auto& [s, y] = pairs[i];
      q += s * (a[i] - y.dot(q) / y.dot(s));
    }
    Vec d = -q;
    double slope = g.dot(d);
    if (!(slope < 0)) {  // not a descent direction (rounding): restart from steepest descent
      pairs.clear();
      d = -g;
      slope = g.dot(d);
    }
    // The first step is scaled so that it moves by about 1 in the largest coordinate.
    const double alpha_init = pairs.empty() ? 1.0 / std::max(1.0, g.lpNorm<Eigen::Infinity>()) : 1.0;
    int evaluations = 0;
    const std::optional<Point> accepted =
        wolfe_search(x, d, value.objective, slope, alpha_init, trial, objective, evaluations);
    result.evaluations += evaluations;
    if (!accepted) {
      result.stop_reason = "line search failed";
      break;
    }
    const Vec x_new = x + accepted->alpha * d;
    const Vec g_new = flatten(accepted->value.dW, accepted->value.db);
    const Vec s = x_new - x, y = g_new - g;
    if (s.dot(y) > 1e-12 * y.squaredNorm()) {  // keep only pairs with positive curvature
      pairs.emplace_back(s, y);
      if (static_cast<int>(pairs.size()) > result.memory) pairs.pop_front();
    }
    x = x_new;
    g = g_new;
    value = accepted->value;
    result.iterations = iter;
    if (on_iteration) {
      on_iteration({iter, value.objective, g.lpNorm<Eigen::Infinity>(), accepted->alpha, evaluations,
                    seconds_since(start)});
    }
    if (should_stop && should_stop()) {
      result.stop_reason = "stopped";
      break;
    }
  }
  unflatten(x, model);
  result.objective = value.objective;
  result.mean_loss = value.mean_loss;
  result.correct = value.correct;
  result.grad_inf_norm = g.lpNorm<Eigen::Infinity>();
  result.converged = result.grad_inf_norm <= options.tol;
  if (result.converged) result.stop_reason = "converged";
  return result;
}

}  // namespace softreg
