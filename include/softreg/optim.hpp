// Minibatch stochastic gradient descent as the seed's d2l.sgd does it.
#pragma once

#include <cstddef>

#include "softreg/model.hpp"

namespace softreg {

/// param -= lr * grad_sum / batch_size, for W and b; grad_sum is the gradient of the summed batch loss
/// and batch_size the number of examples actually in the batch (the last one may be short).
void sgd_step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum, double lr,
              std::size_t batch_size);

}  // namespace softreg
