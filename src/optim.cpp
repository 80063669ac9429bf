// The optimizers' updates, the L2 gradient and the learning-rate schedules. The updates follow
// torch.optim's order of operations (float tensors, double scalars) so the fixture made with PyTorch
// matches to float rounding.
#include "softreg/optim.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numbers>

#include "softreg/error.hpp"

namespace softreg {
namespace {

std::vector<float> flat(const auto& matrix) {
  return std::vector<float>(matrix.data(), matrix.data() + matrix.size());
}

// Restores a buffer saved by flat() into the shape of `like`; an Error if it is missing or does not fit.
template <class Matrix>
void unflatten(const OptimizerState& state, const std::string& name, const Matrix& like, Matrix& out) {
  const auto it = state.buffers.find(name);
  if (it == state.buffers.end()) throw Error("optimizer state has no '" + name + "'");
  if (it->second.size() != static_cast<std::size_t>(like.size())) {
    throw Error(fmt::format("optimizer state '{}' has {} values, the model {}", name, it->second.size(),
                            like.size()));
  }
  out.resize(like.rows(), like.cols());
  std::copy(it->second.begin(), it->second.end(), out.data());
}

}  // namespace

void sgd_step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum, double lr,
              std::size_t batch_size) {
  assert(batch_size > 0);
  const float step = static_cast<float>(lr / static_cast<double>(batch_size));
  model.W -= step * dW_sum;
  model.b -= step * db_sum;
}

void Optimizer::restore(const OptimizerState& state, const SoftmaxModel&) {
  if (!state.buffers.empty() || state.steps != 0)
    throw Error("optimizer '" + name() + "' keeps no state, but the checkpoint has some");
}

void Momentum::step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum,
                    std::size_t batch_size) {
  const auto n = static_cast<float>(batch_size);
  const WeightMatrix gW = dW_sum / n;
  const BiasVector gb = db_sum / n;
  const auto m = static_cast<float>(momentum_), lr = static_cast<float>(lr_);
  if (steps_ == 0) {
    buf_W_ = gW;
    buf_b_ = gb;
  } else {
    buf_W_ = buf_W_ * m + gW;
    buf_b_ = buf_b_ * m + gb;
  }
  ++steps_;
  if (nesterov_) {
    model.W += -lr * (gW + m * buf_W_);
    model.b += -lr * (gb + m * buf_b_);
  } else {
    model.W += -lr * buf_W_;
    model.b += -lr * buf_b_;
  }
}

OptimizerState Momentum::state() const {
  if (steps_ == 0) return {};
  return {{{"momentum_W", flat(buf_W_)}, {"momentum_b", flat(buf_b_)}}, steps_};
}

void Momentum::restore(const OptimizerState& state, const SoftmaxModel& like) {
  steps_ = state.steps;
  if (steps_ == 0) return;
  unflatten(state, "momentum_W", like.W, buf_W_);
  unflatten(state, "momentum_b", like.b, buf_b_);
}

void Adam::step(SoftmaxModel& model, const WeightMatrix& dW_sum, const BiasVector& db_sum,
                std::size_t batch_size) {
  const auto n = static_cast<float>(batch_size);
  const WeightMatrix gW = dW_sum / n;
  const BiasVector gb = db_sum / n;
  if (steps_ == 0) {
    m_W_ = v_W_ = WeightMatrix::Zero(gW.rows(), gW.cols());
    m_b_ = v_b_ = BiasVector::Zero(gb.size());
  }
  ++steps_;
  if (decay_ > 0) model.W *= static_cast<float>(1.0 - lr_ * decay_);  // AdamW: decoupled, W only
  const auto b1 = static_cast<float>(beta1_), b2 = static_cast<float>(beta2_);
  m_W_ = m_W_ * b1 + static_cast<float>(1 - beta1_) * gW;
  m_b_ = m_b_ * b1 + static_cast<float>(1 - beta1_) * gb;
  v_W_ = v_W_ * b2 + static_cast<float>(1 - beta2_) * gW.cwiseProduct(gW);
  v_b_ = v_b_ * b2 + static_cast<float>(1 - beta2_) * gb.cwiseProduct(gb);
  // Scalars in double, as Python computes them.
  const double correction1 = 1 - std::pow(beta1_, static_cast<double>(steps_));
  const double correction2_sqrt = std::sqrt(1 - std::pow(beta2_, static_cast<double>(steps_)));
  const auto step_size = static_cast<float>(lr_ / correction1);
  const auto c2 = static_cast<float>(correction2_sqrt), eps = static_cast<float>(eps_);
  model.W.array() += -step_size * m_W_.array() / (v_W_.array().sqrt() / c2 + eps);
  model.b.array() += -step_size * m_b_.array() / (v_b_.array().sqrt() / c2 + eps);
}

OptimizerState Adam::state() const {
  if (steps_ == 0) return {};
  return {{{"adam_m_W", flat(m_W_)},
           {"adam_v_W", flat(v_W_)},
           {"adam_m_b", flat(m_b_)},
           {"adam_v_b", flat(v_b_)}},
          steps_};
}

void Adam::restore(const OptimizerState& state, const SoftmaxModel& like) {
  steps_ = state.steps;
  if (steps_ == 0) return;
  unflatten(state, "adam_m_W", like.W, m_W_);
  unflatten(state, "adam_v_W", like.W, v_W_);
  unflatten(state, "adam_m_b", like.b, m_b_);
  unflatten(state, "adam_v_b", like.b, v_b_);
}

void add_l2_gradient(WeightMatrix& dW_sum, const WeightMatrix& W, double lambda, std::size_t batch_size) {
  if (lambda == 0) return;
  dW_sum += static_cast<float>(lambda * static_cast<double>(batch_size)) * W;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerSettings& s) {
  if (s.name == "sgd") return std::make_unique<Sgd>(s.lr);
  if (s.name == "momentum" || s.name == "nesterov")
    return std::make_unique<Momentum>(s.lr, s.momentum, s.name == "nesterov");
  if (s.name == "adam") return std::make_unique<Adam>(s.lr, s.beta1, s.beta2, s.eps);
  if (s.name == "adamw") return std::make_unique<Adam>(s.lr, s.beta1, s.beta2, s.eps, s.weight_decay);
  throw Error("unknown optimizer '" + s.name + "' (known: sgd, momentum, nesterov, adam, adamw)");
}

double scheduled_lr(const LrSchedule& schedule, double base_lr, int epoch, std::size_t batch,
                    std::size_t batches_per_epoch, int epochs) {
  const double per_epoch = static_cast<double>(batches_per_epoch);
  const double step = epoch * per_epoch + static_cast<double>(batch);  // batches done before this one
  const double warmup_steps = schedule.warmup_epochs * per_epoch;
  if (step < warmup_steps) return base_lr * (step + 1) / warmup_steps;
  if (schedule.kind == "step")
    return base_lr * std::pow(schedule.gamma, epoch / std::max(1, schedule.step_epochs));
  if (schedule.kind == "cosine") {
    const double total = epochs * per_epoch - warmup_steps;
    const double progress = total > 0 ? (step - warmup_steps) / total : 0;
    return base_lr * 0.5 * (1 + std::cos(std::numbers::pi * progress));
  }
  return base_lr;  // constant
}

}  // namespace softreg
