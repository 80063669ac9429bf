// Feature standardization folded into the model (see standardize.hpp).
#include "softreg/standardize.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "softreg/error.hpp"

namespace softreg {
namespace {

// Rows per block of the statistics: each block's mean and squared deviations are taken in two passes
// over rows that are still in cache, and the blocks are merged in order (Chan et al.'s pairwise
// update), so the result is accurate for features far from zero and independent of the threads.
constexpr std::size_t kStatsBlockRows = 2048;

struct Moments {
  double count = 0;
  std::vector<double> mean;
  std::vector<double> m2;  // sum of squared deviations from the mean
};

// Row i's values as stored (bytes not yet scaled).
void raw_values(const Dataset& data, std::size_t i, std::vector<double>& x) {
  const std::uint8_t* row = data.image(i);
  if (data.element == ElementType::kF32) {
    for (std::size_t d = 0; d < x.size(); ++d) {
      float v;
      std::memcpy(&v, row + d * sizeof(float), sizeof(float));
      x[d] = v;
    }
  } else if (data.element == ElementType::kF64) {
    for (std::size_t d = 0; d < x.size(); ++d)
      x[d] = data.value(i, d);  // as the model sees them: rounded to float32
  } else {
    for (std::size_t d = 0; d < x.size(); ++d)
      x[d] = row[d];
  }
}

}  // namespace

Standardization fit_standardization(const Dataset& data, std::span<const std::uint32_t> rows,
                                    ThreadPool& pool) {
  std::vector<std::uint32_t> all;
  if (rows.empty()) {
    all.resize(data.count);
    std::iota(all.begin(), all.end(), 0u);
    rows = all;
  }
  if (rows.empty()) throw Error("standardization needs at least one training row");
  const std::size_t D = data.features(), N = rows.size();
  const std::size_t blocks = (N + kStatsBlockRows - 1) / kStatsBlockRows;
  std::vector<Moments> block_moments(blocks);
  pool.run(blocks, [&](std::size_t block) {
    const std::size_t r0 = block * kStatsBlockRows, r1 = std::min(N, r0 + kStatsBlockRows);
    Moments& m = block_moments[block];
    m.count = static_cast<double>(r1 - r0);
    m.mean.assign(D, 0.0);
    m.m2.assign(D, 0.0);
    std::vector<double> x(D);
    for (std::size_t r = r0; r < r1; ++r) {
      raw_values(data, rows[r], x);
      for (std::size_t d = 0; d < D; ++d)
        m.mean[d] += x[d];
    }
    for (std::size_t d = 0; d < D; ++d)
      m.mean[d] /= m.count;
    for (std::size_t r = r0; r < r1; ++r) {
      raw_values(data, rows[r], x);
      for (std::size_t d = 0; d < D; ++d) {
        const double deviation = x[d] - m.mean[d];
        m.m2[d] += deviation * deviation;
      }
    }
  });
  Moments total = std::move(block_moments[0]);
  for (std::size_t block = 1; block < blocks; ++block) {
    const Moments& m = block_moments[block];
    const double n = total.count + m.count;
    for (std::size_t d = 0; d < D; ++d) {
      const double delta = m.mean[d] - total.mean[d];
      total.mean[d] += delta * m.count / n;
      total.m2[d] += m.m2[d] + delta * delta * total.count * m.count / n;
    }
    total.count = n;
  }
  // Bytes were summed as they are; the model sees them divided by 255.
  const double scale = data.element == ElementType::kU8 ? 1.0 / 255.0 : 1.0;
  Standardization s;
  s.mean.resize(D);
  s.std.resize(D);
  for (std::size_t d = 0; d < D; ++d) {
    const double mean = total.mean[d] * scale;
    const double deviation = std::sqrt(total.m2[d] / total.count) * scale;
    s.mean[d] = static_cast<float>(mean);
    const bool constant = !(deviation > 1e-6 * std::max(std::abs(mean), 1e-30)) || !std::isfinite(deviation);
    s.std[d] = constant ? 1.0f : static_cast<float>(deviation);
  }
  return s;
}

void fold_standardization(const SoftmaxModel& standardized, const Standardization& s, SoftmaxModel& raw) {
  const Eigen::Index D = standardized.W.rows(), K = standardized.W.cols();
  raw.W.resize(D, K);
  raw.b.resize(K);
  for (Eigen::Index k = 0; k < K; ++k) {
    double shift = 0;
    for (Eigen::Index d = 0; d < D; ++d) {
      const auto i = static_cast<std::size_t>(d);
      const float w = standardized.W(d, k) / s.std[i];
      raw.W(d, k) = w;
      shift += static_cast<double>(w) * s.mean[i];
    }
    raw.b(k) = static_cast<float>(standardized.b(k) - shift);
  }
}

SoftmaxModel fold_standardization(const SoftmaxModel& standardized, const Standardization& s) {
  SoftmaxModel raw;
  fold_standardization(standardized, s, raw);
  return raw;
}

void standardize_gradient(WeightMatrix& dW, const BiasVector& db, const Standardization& s) {
  for (Eigen::Index k = 0; k < dW.cols(); ++k) {
    for (Eigen::Index d = 0; d < dW.rows(); ++d) {
      const auto i = static_cast<std::size_t>(d);
      dW(d, k) = (dW(d, k) - s.mean[i] * db(k)) / s.std[i];
    }
  }
}

void check_standardization(const Standardization& s, std::size_t inputs, const std::string& source) {
  if (s.mean.size() != inputs || s.std.size() != inputs) {
    throw Error(fmt::format("{}: the standardization has {} means and {} deviations for {} inputs", source,
                            s.mean.size(), s.std.size(), inputs));
  }
  for (std::size_t d = 0; d < inputs; ++d) {
    if (!std::isfinite(s.mean[d]) || !(s.std[d] > 0) || !std::isfinite(s.std[d])) {
      throw Error(fmt::format("{}: the standardization of input {} is invalid (mean {}, std {})", source, d,
                              s.mean[d], s.std[d]));
    }
  }
}

}  // namespace softreg
