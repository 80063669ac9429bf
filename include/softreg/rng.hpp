// The seeded random source for initialization and shuffling. The standard distributions and
// std::shuffle are implementation-defined, so the draws are written out here: the same seed gives the
// same weights and the same batch order with any standard library.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>

namespace softreg {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}

  /// Uniform in [0, 1) with 53 random bits.
  double uniform();
  /// Uniform integer in [0, n), n > 0, without modulo bias.
  std::uint64_t below(std::uint64_t n);
  /// Normal(mean, stddev) by the Box-Muller transform.
  double normal(double mean, double stddev);
  /// Fisher-Yates shuffle.
  void shuffle(std::span<std::uint32_t> values);

  /// The complete engine state as text, and back (for checkpoints).
  std::string state() const;
  void set_state(const std::string& state);

 private:
  std::mt19937_64 engine_;  // its output sequence is fixed by the standard
};

}  // namespace softreg
