// Portable draws on MT19937-64 (the generator of std::mt19937_64, whose raw output the standard fixes).
#include "softreg/rng.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <numbers>
#include <utility>

#include "softreg/error.hpp"

namespace softreg {

namespace {
constexpr std::size_t kShift = 156;  // MT19937-64's m
constexpr std::uint64_t kTwist = 0xB5026F5AA96619E9ull, kUpper = 0xFFFFFFFF80000000ull,
                        kLower = 0x7FFFFFFFull;
// One word of the refill: the matrix's multiply by the low bit is a mask, not a branch.
std::uint64_t twisted(std::uint64_t word, std::uint64_t next, std::uint64_t far) {
  const std::uint64_t y = (word & kUpper) | (next & kLower);
  return far ^ (y >> 1) ^ ((0 - (y & 1)) & kTwist);
}
std::uint64_t tempered(std::uint64_t y) {
  y ^= (y >> 29) & 0x5555555555555555ull;
  y ^= (y << 17) & 0x71D67FFFEDA60000ull;
  y ^= (y << 37) & 0xFFF7EEE000000000ull;
  return y ^ (y >> 43);
}
}  // namespace

Mt19937_64::Mt19937_64(std::uint64_t seed) {
  words_[0] = seed;
  for (std::size_t i = 1; i < kWords; ++i)
    words_[i] = 6364136223846793005ull * (words_[i - 1] ^ (words_[i - 1] >> 62)) + i;
}

void Mt19937_64::refill() {
  std::size_t k = 0;
  for (; k < kWords - kShift; ++k)
    words_[k] = twisted(words_[k], words_[k + 1], words_[k + kShift]);
  for (; k < kWords - 1; ++k)
    words_[k] = twisted(words_[k], words_[k + 1], words_[k + kShift - kWords]);
  words_[kWords - 1] = twisted(words_[kWords - 1], words_[0], words_[kShift - 1]);
  for (std::size_t i = 0; i < kWords; ++i)
    tempered_[i] = tempered(words_[i]);
  position_ = 0;
}

// Checkpoints are written once an epoch: to_chars and from_chars rather than streams, which took
// about as long as a shuffle's draws.
std::string Mt19937_64::text() const {
  std::string out;
  out.reserve((kWords + 1) * 21);
  char digits[24];
  const auto append = [&](std::uint64_t value) {
    const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    out.append(digits, end);
  };
  for (std::uint64_t word : words_) {
    append(word);
    out += ' ';
  }
  append(position_);
  return out;
}

bool Mt19937_64::set_text(const std::string& text) {
  const char* at = text.data();
  const char* const end = text.data() + text.size();
  const auto next_number = [&](auto& value) {
    while (at != end && std::isspace(static_cast<unsigned char>(*at)))
      ++at;
    const auto [stop, error] = std::from_chars(at, end, value);
    at = stop;
    return error == std::errc();
  };
  std::array<std::uint64_t, kWords> words{};
  std::size_t position = 0;
  for (std::uint64_t& word : words) {
    if (!next_number(word)) return false;
  }
  if (!next_number(position) || position > kWords) return false;
  words_ = words;
  position_ = position;
  for (std::size_t i = 0; i < kWords; ++i)  // the outputs still to come from these words
    tempered_[i] = tempered(words_[i]);
  return true;
}

double Rng::uniform() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

std::uint64_t Rng::below(std::uint64_t n) {
  // Reject the top sliver of the 64-bit range that would make some results more likely than others.
  // That sliver starts above max - n, so a draw below it needs no second division to be accepted.
  constexpr std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t x = engine_();
  if (x > max - n) {
    const std::uint64_t limit = max - max % n;
    while (x >= limit)
      x = engine_();
  }
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
  return engine_.text();
}

void Rng::set_state(const std::string& state) {
  if (!engine_.set_text(state)) throw Error("random generator state is malformed");
}

}  // namespace softreg
