// SGD update.
#include "softreg/optim.hpp"

#include <cassert>

namespace softreg {

void sgd_step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum, double lr,
              std::size_t batch_size) {
  assert(batch_size > 0);
  const float step = static_cast<float>(lr / static_cast<double>(batch_size));
  model.W -= step * dW_sum;
  model.b -= step * db_sum;
}

}  // namespace softreg
