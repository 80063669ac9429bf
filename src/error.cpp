// Helpers for building softreg::Error messages.
#include "softreg/error.hpp"

#include <fmt/format.h>

#include <cmath>

namespace softreg {

Error Error::in_file(const std::filesystem::path& path, const std::string& what) {
  return Error(path.string() + ": " + what);
}

TrainingDiverged::TrainingDiverged(int epoch_, std::size_t batch_, double mean_loss_, double lr_, int classes)
    : Error(fmt::format(
          "training diverged in epoch {}, batch {}: the batch's mean loss is {:.4g}, where a fresh "
          "model starts at ln({}) = {:.2f}; try a learning rate below {:g}",
          epoch_, batch_, mean_loss_, classes, std::log(classes), lr_)),
      epoch(epoch_),
      batch(batch_),
      mean_loss(mean_loss_),
      lr(lr_) {}

}  // namespace softreg
