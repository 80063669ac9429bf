// Portable draws on top of std::mt19937_64, whose raw output the standard fixes.
#include "softreg/rng.hpp"

#include <cmath>
#include <limits>
#include <numbers>
#include <sstream>
#include <utility>

#include "softreg/error.hpp"

namespace softreg {

double Rng::uniform() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

std::uint64_t Rng::below(std::uint64_t n) {
  // Reject the top sliver of the 64-bit range that would make some results more likely than others.
  const std::uint64_t limit =
      std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % n;
  std::uint64_t x = engine_();
  while (x >= limit)
    x = engine_();
  return x % n;
}

double Rng::normal(double mean, double stddev) {
  // One pair per call, the second value dropped: simple and stateless beyond the engine.
  const double u1 = 1.0 - uniform();  // in (0, 1], so log is finite
  const double u2 = uniform();
  return mean + stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

void Rng::shuffle(std::span<std::uint32_t> values) {
  for (std::size_t i = values.size(); i > 1; --i) {
    std::swap(values[i - 1], values[below(i)]);
  }
}

std::string Rng::state() const {
  std::ostringstream out;
  out << engine_;
  return out.str();
}

void Rng::set_state(const std::string& state) {
  std::istringstream in(state);
  std::mt19937_64 engine;
  if (!(in >> engine)) throw Error("random generator state is malformed");
  engine_ = engine;
}

}  // namespace softreg
