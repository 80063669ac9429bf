// Model construction.
#include "softreg/model.hpp"

namespace softreg {

SoftmaxModel SoftmaxModel::initialized(int inputs, int classes, double init_std, Rng& rng) {
  SoftmaxModel model;
  model.W.resize(inputs, classes);
  // Draw in row-major (D,K) order, the order in which torch.normal fills the seed's (784,10) W.
  for (int d = 0; d < inputs; ++d) {
    for (int k = 0; k < classes; ++k)
      model.W(d, k) = static_cast<float>(rng.normal(0.0, init_std));
  }
  model.b = BiasVector::Zero(classes);
  return model;
}

}  // namespace softreg
