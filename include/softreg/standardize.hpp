// Feature standardization (`--standardize`): each input is seen as (x - mean) / std, with the mean and
// standard deviation of the training rows, like scikit-learn's StandardScaler in front of the model.
//
// The data are never rewritten. A model on standardized inputs, with weights W and bias b, equals a
// model on the raw inputs with
//     W'[d][k] = W[d][k] / std[d],        b'[k] = b[k] - sum_d W'[d][k] * mean[d],
// so the kernels run on the raw rows with (W', b'), and a batch's raw gradient (G, db) becomes the
// gradient with respect to W by
//     dW[d][k] = (G[d][k] - mean[d] * db[k]) / std[d].
// The optimizers and the L2 penalty work on W and b; model files store (W', b') as `weight` and `bias`,
// so every reader applies the standardization without knowing of it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/model.hpp"
#include "softreg/parallel.hpp"

namespace softreg {

struct Standardization {
  std::vector<float> mean;  // per input, in the units the model sees (x / 255 for pixels)
  std::vector<float> std;   // per input; 1 for an input that is constant on the training rows
};

/// The mean and population standard deviation of every input over `rows` of `data` (all rows when
/// empty). Inputs whose deviation is below 1e-6 of their magnitude (constant ones) get std 1, as
/// scikit-learn does: they are only centered. The result does not depend on the thread count.
Standardization fit_standardization(const Dataset& data, std::span<const std::uint32_t> rows,
                                    ThreadPool& pool);

/// The model on raw inputs that equals `standardized` on standardized inputs: (W', b') above.
SoftmaxModel fold_standardization(const SoftmaxModel& standardized, const Standardization& s);
/// The same into `raw`, reusing its storage.
void fold_standardization(const SoftmaxModel& standardized, const Standardization& s, SoftmaxModel& raw);

/// Turns the raw-input gradient G (dW, as the kernels compute it with the folded model) into the
/// gradient with respect to the standardized weights, in place. `db` is the same for both.
void standardize_gradient(WeightMatrix& dW, const BiasVector& db, const Standardization& s);

/// Checks that `s` fits `inputs` inputs with finite means and positive finite deviations; throws
/// Error naming `source` otherwise.
void check_standardization(const Standardization& s, std::size_t inputs, const std::string& source);

}  // namespace softreg
