// The seeded random source for initialization and shuffling. The standard distributions and
// std::shuffle are implementation-defined, so the draws are written out here: the same seed gives the
// same weights and the same batch order with any standard library.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace softreg {

/// MT19937-64, the generator of std::mt19937_64: the same outputs for the same seed (the standard
/// fixes them) and the same state text as libstdc++'s `<<` (312 words, then the position), so that
/// checkpoints move freely between the two. Written out because libstdc++'s refill branches on a
/// random bit for each of its 312 words: at about 5 ns a draw, an epoch's shuffle of 60,000 rows
/// took 0.6 ms of a 7 ms epoch (Zen 5); this one refills without branches and tempers all 312 at once.
class Mt19937_64 {
 public:
  static constexpr std::size_t kWords = 312;
  explicit Mt19937_64(std::uint64_t seed);
  std::uint64_t operator()() {
    if (position_ >= kWords) refill();
    return tempered_[position_++];
  }
  /// The state as std::mt19937_64's `<<` writes it, and back; false (state unchanged) when `text` is
  /// not such a state.
  std::string text() const;
  bool set_text(const std::string& text);

 private:
  void refill();  // the next 312 words of state, tempered into tempered_
  std::array<std::uint64_t, kWords> words_;
  std::array<std::uint64_t, kWords> tempered_{};
  std::size_t position_ = kWords;  // the next output is tempered_[position_]; kWords: refill first
};

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
  Mt19937_64 engine_;  // its output sequence is fixed by the standard
};

}  // namespace softreg
