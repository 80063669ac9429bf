// A measurement program, not part of softreg: the seed's recipe (bytes, batch 256, lr 0.1) with its two
// products taken on AMX-INT8 tiles in exact integer sums, to see what that arithmetic would give an
// epoch on a CPU with AMX (issue 8; BENCHMARKS.md, "Exact integer products on AMX").
//
// The idea: a batch's rows are bytes, which AMX multiplies as they lie (TDPBUSD: unsigned bytes times
// signed bytes, sums in 32-bit integers). W's column of class c is written as an integer q = round(W *
// 2^(30 - e_c)) (2^e_c above the column's largest |w|), and q as four signed bytes (q = s0 + 256 s1 +
// 65536 s2 + 2^24 s3: the bytes of q + 0x80808080, each less 128); each slice's products are summed
// exactly, and the four sums combine exactly in 64-bit integers. A logit is then the exact dot product
// of the row with the quantized W, rounded once (to double, then float): its bits depend on no order,
// thread count or instruction set. The update takes the dlogits the same way (d * 2^30, four slices),
// G = X^T D exactly, and steps W in double. 30 bits below each column's largest weight is finer than a
// float's 24: every weight within 2^-6 of its column's largest is held exactly.
//
// It trains with its own initial W (N(0, 0.01) from std::mt19937, not softreg's generator) and checks
// itself against the same step summed in double (--check): their losses must agree to 1e-8 relative
// (1.4e-9 after one epoch here, 5e-9 after three; without the update's lowest slice 3.0e-8).
// Exit code 77 where the CPU or the OS has no AMX-INT8 (CTest counts it as skipped).
//
//   build/bench/exact_int8_recipe [--epochs N] [--check] [--data DIR]
#include <softreg/dataset.hpp>

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#define AMX_INT8_TARGET __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512dq,avx512vl")))

namespace {

constexpr int kBatch = 256, kSlices = 4, kMaxInputs = 1024, kMaxClasses = 16;
constexpr double kLr = 0.1;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct alignas(64) TileConfig {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
};

bool amx_int8_usable() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  const bool avx512bw = ebx & (1u << 30), amx_tile = edx & (1u << 24), amx_int8 = edx & (1u << 25);
  if (!avx512bw || !amx_tile || !amx_int8) return false;
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;  // Linux 5.16+: ask for the tiles
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

AMX_INT8_TARGET void configure_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.bytes_per_row[t] = 64;
    config.rows[t] = 16;
  }
  // GCC 12's _tile_loadconfig tells the compiler it reads 8 bytes of the configuration: without this
  // barrier the rest of its stores may be dropped as dead (the tiles then fault as unconfigured).
  asm volatile("" : : "r"(&config) : "memory");
  _tile_loadconfig(&config);
}

AMX_INT8_TARGET void release_tiles() {
  _tile_release();
}

struct Phases {
  double gather = 0, quantize_w = 0, forward_tiles = 0, softmax = 0, quads = 0, update_tiles = 0, step = 0;
};

// One thread's trainer. Layouts (zeros in every padding, so they add nothing):
//   rows   [256][DP]            the batch's rows, DP = inputs rounded up to 64;
//   w_tiles[slice][DP/64][16][64] W's slices as TDPBUSD's right operand: row i of step k holds, for each
//                                class n, its slices of inputs 64k + 4i .. 64k + 4i + 3;
//   d_tiles[slice][4][16][64]     the dlogits' slices as TDPBSUD's left operand: class n, 64 rows a step;
//   quads  [DP/64][4][64][64]    the rows as its right operand: quad q of rows 4q..4q+3, the 16 inputs
//                                64c + 16(n/4) + 4m + n%4 of part m (what two rounds of unpacks give).
struct Int8Trainer {
  int inputs = 0, padded = 0, classes = 0, steps = 0;
  alignas(64) float W[kMaxClasses][kMaxInputs] = {};
  float b[kMaxClasses] = {};
  double w_scale[kMaxClasses] = {};
  alignas(64) std::int8_t w_tiles[kSlices][kMaxInputs / 64 + 1][16][64] = {};  // + 1: slices not 16 KB apart
  alignas(64) std::uint8_t rows[kBatch][kMaxInputs + 64] = {};  // + 64: tile rows not 1 KB apart (L1 sets)
  alignas(64) std::int8_t d_tiles[kSlices][kBatch / 64][kMaxClasses][64] = {};
  alignas(64) std::uint8_t quads[kMaxInputs / 64][4][kBatch / 4][64] = {};
  alignas(64) std::int32_t sums[kSlices][16][16] = {};
  alignas(64) float logits[kBatch][kMaxClasses] = {};
  alignas(64) float dlogits[kBatch][kMaxClasses] = {};
  Phases phases;

  AMX_INT8_TARGET void quantize_w() {
    for (int n = 0; n < kMaxClasses; ++n) {
      __m512 largest = _mm512_setzero_ps();
      for (int d = 0; d < padded; d += 16)
        largest = _mm512_max_ps(largest, _mm512_abs_ps(_mm512_load_ps(&W[n][d])));
      const float m = _mm512_reduce_max_ps(largest);
      int e = 0;
      if (m > 0) std::frexp(m, &e);  // m < 2^e
      w_scale[n] = std::ldexp(1.0, e - 30);
      const __m512 to_integer = _mm512_set1_ps(m > 0 ? std::ldexp(1.0f, 30 - e) : 0.0f);
      for (int d = 0; d < padded; d += 16) {
        const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(&W[n][d]), to_integer));
        const __m512i bias = _mm512_set1_epi32(static_cast<int>(0x80808080u));
        const __m512i bytes = _mm512_xor_si512(_mm512_add_epi32(q, bias), bias);  // byte s = slice s
        for (int s = 0; s < kSlices; ++s) {  // lanes 4u..4u+3's slice s: one 32-bit piece of a tile row
          const __m128i slice = _mm512_cvtepi32_epi8(_mm512_srli_epi32(bytes, 8 * s));
          std::int8_t(*tile)[64] = w_tiles[s][d / 64];
          const int row = d % 64 / 4;
          *reinterpret_cast<std::int32_t*>(&tile[row][4 * n]) = _mm_extract_epi32(slice, 0);
          *reinterpret_cast<std::int32_t*>(&tile[row + 1][4 * n]) = _mm_extract_epi32(slice, 1);
          *reinterpret_cast<std::int32_t*>(&tile[row + 2][4 * n]) = _mm_extract_epi32(slice, 2);
          *reinterpret_cast<std::int32_t*>(&tile[row + 3][4 * n]) = _mm_extract_epi32(slice, 3);
        }
      }
    }
  }

  // e^x for x <= 0 (Cephes' polynomial for expf; within 2 ulp): the prototype's stand-in for softreg's.
  AMX_INT8_TARGET static __m512 exp_of(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    const __m512 whole =
        _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(whole, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(whole, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, whole);
  }

  AMX_INT8_TARGET void store_sums() {
    _tile_stored(0, sums[0], 64);
    _tile_stored(1, sums[1], 64);
    _tile_stored(2, sums[2], 64);
    _tile_stored(3, sums[3], 64);
  }

  AMX_INT8_TARGET void forward_group(int g) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int k = 0; k < steps; ++k) {
      _tile_loadd(4, &rows[16 * g][64 * k], kMaxInputs + 64);
      _tile_loadd(5, w_tiles[0][k], 64);
      _tile_dpbusd(0, 4, 5);
      _tile_loadd(6, w_tiles[1][k], 64);
      _tile_dpbusd(1, 4, 6);
      _tile_loadd(5, w_tiles[2][k], 64);
      _tile_dpbusd(2, 4, 5);
      _tile_loadd(6, w_tiles[3][k], 64);
      _tile_dpbusd(3, 4, 6);
    }
    store_sums();
  }

  // sum_s sums[s][i][8 half .. 8 half + 7] 256^s, exactly, as 8 int64.
  AMX_INT8_TARGET static __m512i combine(const std::int32_t (&sums)[kSlices][16][16], int i, int half) {
    __m512i total = _mm512_setzero_si512();
    for (int s = kSlices - 1; s >= 0; --s) {
      const __m512i v = _mm512_load_si512(sums[s][i]);
      const __m256i part = half ? _mm512_extracti64x4_epi64(v, 1) : _mm512_castsi512_si256(v);
      total = _mm512_add_epi64(_mm512_slli_epi64(total, 8), _mm512_cvtepi32_epi64(part));
    }
    return total;
  }

  AMX_INT8_TARGET void logits_of_group(int g) {
    for (int i = 0; i < 16; ++i) {
      __m256 halves[2];
      for (int h = 0; h < 2; ++h) {
        const __m512d scale = _mm512_mul_pd(_mm512_loadu_pd(w_scale + 8 * h), _mm512_set1_pd(1.0 / 255.0));
        const __m512d exact = _mm512_cvtepi64_pd(combine(sums, i, h));
        halves[h] = _mm512_cvtpd_ps(
            _mm512_add_pd(_mm512_mul_pd(exact, scale), _mm512_cvtps_pd(_mm256_loadu_ps(b + 8 * h))));
      }
      _mm512_store_ps(logits[16 * g + i],
                      _mm512_insertf32x8(_mm512_castps256_ps512(halves[0]), halves[1], 1));
    }
  }

  // Softmax, loss and dlogits of row r (label y); the dlogits' slices into d_tiles.
  AMX_INT8_TARGET double softmax_row(int r, int y, int& correct) {
    const __mmask16 valid = static_cast<__mmask16>((1u << classes) - 1);
    const __m512 l = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), valid, _mm512_load_ps(logits[r]));
    const float top = _mm512_reduce_max_ps(l);
    const __m512 e = _mm512_maskz_mov_ps(valid, exp_of(_mm512_sub_ps(l, _mm512_set1_ps(top))));
    const float total = _mm512_reduce_add_ps(e);
    correct += __builtin_ctz(_mm512_cmp_ps_mask(l, _mm512_set1_ps(top), _CMP_EQ_OQ)) == y;
    __m512 d = _mm512_mul_ps(e, _mm512_set1_ps(1.0f / total));
    d = _mm512_mask_sub_ps(d, static_cast<__mmask16>(1u << y), d, _mm512_set1_ps(1.0f));
    _mm512_store_ps(dlogits[r], d);
    const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(d, _mm512_set1_ps(1073741824.0f)));  // |d| <= 1
    const __m512i bias = _mm512_set1_epi32(static_cast<int>(0x80808080u));
    alignas(64) std::uint32_t lanes[16];
    _mm512_store_si512(lanes, _mm512_xor_si512(_mm512_add_epi32(q, bias), bias));
    for (int s = 0; s < kSlices; ++s)
      for (int n = 0; n < kMaxClasses; ++n)
        d_tiles[s][r / 64][n][r % 64] = static_cast<std::int8_t>(lanes[n] >> (8 * s));
    return std::log(static_cast<double>(total)) - static_cast<double>(logits[r][y] - top);
  }

  AMX_INT8_TARGET void make_quads() {
    for (int c = 0; c < steps; ++c)
      for (int q = 0; q < kBatch / 4; ++q) {
        const __m512i r0 = _mm512_load_si512(&rows[4 * q][64 * c]),
                      r1 = _mm512_load_si512(&rows[4 * q + 1][64 * c]);
        const __m512i r2 = _mm512_load_si512(&rows[4 * q + 2][64 * c]),
                      r3 = _mm512_load_si512(&rows[4 * q + 3][64 * c]);
        const __m512i lo01 = _mm512_unpacklo_epi8(r0, r1), hi01 = _mm512_unpackhi_epi8(r0, r1);
        const __m512i lo23 = _mm512_unpacklo_epi8(r2, r3), hi23 = _mm512_unpackhi_epi8(r2, r3);
        _mm512_store_si512(quads[c][0][q], _mm512_unpacklo_epi16(lo01, lo23));
        _mm512_store_si512(quads[c][1][q], _mm512_unpackhi_epi16(lo01, lo23));
        _mm512_store_si512(quads[c][2][q], _mm512_unpacklo_epi16(hi01, hi23));
        _mm512_store_si512(quads[c][3][q], _mm512_unpackhi_epi16(hi01, hi23));
      }
  }

  AMX_INT8_TARGET void update_tiles(int c, int m) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int k = 0; k < kBatch / 64; ++k) {
      _tile_loadd(4, quads[c][m][16 * k], 64);
      _tile_loadd(5, d_tiles[0][k], 64);
      _tile_dpbsud(0, 5, 4);
      _tile_loadd(6, d_tiles[1][k], 64);
      _tile_dpbsud(1, 6, 4);
      _tile_loadd(5, d_tiles[2][k], 64);
      _tile_dpbsud(2, 5, 4);
      _tile_loadd(6, d_tiles[3][k], 64);
      _tile_dpbsud(3, 6, 4);
    }
    store_sums();
  }

  void step_block(int c, int m) {
    const double scale = -kLr / (255.0 * std::ldexp(1.0, 30) * kBatch);
    for (int n = 0; n < 16; ++n) {
      const int d = 64 * c + 16 * (n / 4) + 4 * m + n % 4;
      if (d >= inputs) continue;
      for (int k = 0; k < classes; ++k) {
        std::int64_t exact = sums[kSlices - 1][k][n];
        for (int s = kSlices - 2; s >= 0; --s)
          exact = exact * 256 + sums[s][k][n];
        W[k][d] = static_cast<float>(static_cast<double>(W[k][d]) + static_cast<double>(exact) * scale);
      }
    }
  }

  AMX_INT8_TARGET double batch(const softreg::Dataset& data, const std::uint32_t* order, int& correct) {
    auto start = Clock::now();
    for (int r = 0; r < kBatch; ++r)
      std::memcpy(rows[r], data.image(order[r]), static_cast<std::size_t>(inputs));
    phases.gather += since(start);
    start = Clock::now();
    quantize_w();
    phases.quantize_w += since(start);
    double loss = 0;
    for (int g = 0; g < kBatch / 16; ++g) {
      start = Clock::now();
      forward_group(g);
      phases.forward_tiles += since(start);
      start = Clock::now();
      logits_of_group(g);
      for (int r = 16 * g; r < 16 * g + 16; ++r)
        loss += softmax_row(r, data.labels[order[r]], correct);
      phases.softmax += since(start);
    }
    start = Clock::now();
    make_quads();
    phases.quads += since(start);
    for (int c = 0; c < steps; ++c)
      for (int m = 0; m < 4; ++m) {
        start = Clock::now();
        update_tiles(c, m);
        phases.update_tiles += since(start);
        start = Clock::now();
        step_block(c, m);
        phases.step += since(start);
      }
    start = Clock::now();
    for (int n = 0; n < classes; ++n) {
      float total = 0;
      for (int r = 0; r < kBatch; ++r)
        total += dlogits[r][n];
      b[n] -= static_cast<float>(kLr) * total / kBatch;
    }
    phases.step += since(start);
    return loss;
  }
};

// The same step with every sum in double (the reference the exact sums are checked against).
struct DoubleTrainer {
  int inputs = 0, classes = 0;
  std::vector<float> W;  // [class][input]
  std::vector<float> b;
  double batch(const softreg::Dataset& data, const std::uint32_t* order, int& correct) {
    const auto K = static_cast<std::size_t>(classes), D = static_cast<std::size_t>(inputs);
    std::vector<double> gradient(W.size(), 0.0);
    std::vector<float> logit(K), d(K), bias_sums(K, 0.0f);
    double loss = 0;
    for (int r = 0; r < kBatch; ++r) {
      const std::uint8_t* x = data.image(order[r]);
      for (std::size_t n = 0; n < K; ++n) {
        double sum = 0;
        for (std::size_t i = 0; i < D; ++i)
          sum += x[i] * static_cast<double>(W[n * D + i]);
        logit[n] = static_cast<float>(sum / 255.0 + b[n]);
      }
      const auto top = std::max_element(logit.begin(), logit.end());
      const std::size_t y = data.labels[order[r]];
      correct += static_cast<std::size_t>(top - logit.begin()) == y;
      float total = 0;
      for (std::size_t n = 0; n < K; ++n)
        total += (d[n] = std::exp(logit[n] - *top));
      loss += std::log(static_cast<double>(total)) - static_cast<double>(logit[y] - *top);
      for (std::size_t n = 0; n < K; ++n) {
        d[n] = d[n] / total - (n == y ? 1.0f : 0.0f);
        bias_sums[n] += d[n];
        for (std::size_t i = 0; i < D; ++i)
          gradient[n * D + i] += x[i] * static_cast<double>(d[n]);
      }
    }
    for (std::size_t j = 0; j < W.size(); ++j)
      W[j] = static_cast<float>(W[j] - kLr * gradient[j] / 255.0 / kBatch);
    for (std::size_t n = 0; n < K; ++n)
      b[n] -= static_cast<float>(kLr) * bias_sums[n] / kBatch;
    return loss;
  }
};

}  // namespace

int main(int argc, char** argv) {
  int epochs = 10;
  bool check = false;
  std::optional<std::filesystem::path> folder;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--epochs" && i + 1 < argc) {
      epochs = std::stoi(argv[++i]);
    } else if (arg == "--check") {
      check = true;
    } else if (arg == "--data" && i + 1 < argc) {
      folder = argv[++i];
    } else {
      std::fprintf(stderr, "usage: exact_int8_recipe [--epochs N] [--check] [--data DIR]\n");
      return 2;
    }
  }
  if (!amx_int8_usable()) {
    std::printf("exact_int8_recipe: no AMX-INT8 here (CPU or OS); skipped\n");
    return 77;
  }
  const softreg::TrainTestData data = softreg::load_train_test(softreg::locate_data(folder));
  const softreg::Dataset& train = data.train;
  static Int8Trainer exact;
  exact.inputs = static_cast<int>(train.features());
  exact.classes = train.num_classes;
  if (train.element != softreg::ElementType::kU8 || exact.inputs > kMaxInputs ||
      exact.classes > kMaxClasses) {
    std::fprintf(stderr, "exact_int8_recipe: needs bytes, at most %d inputs and %d classes\n", kMaxInputs,
                 kMaxClasses);
    return 1;
  }
  exact.padded = (exact.inputs + 63) / 64 * 64;
  exact.steps = exact.padded / 64;
  DoubleTrainer reference{
      exact.inputs, exact.classes, {}, std::vector<float>(static_cast<std::size_t>(exact.classes), 0.0f)};
  std::mt19937 generator(1);
  std::normal_distribution<float> normal(0.0f, 0.01f);
  for (int n = 0; n < exact.classes; ++n)
    for (int i = 0; i < exact.inputs; ++i) {
      exact.W[n][i] = normal(generator);
      reference.W.push_back(exact.W[n][i]);
    }
  configure_tiles();
  std::vector<std::uint32_t> order(train.count);
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = static_cast<std::uint32_t>(i);
  const std::size_t batches = train.count / kBatch;  // whole batches only
  const double rows = static_cast<double>(batches * kBatch);
  int status = 0;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), generator);
    exact.phases = {};
    double loss = 0;
    int correct = 0;
    const auto start = Clock::now();
    for (std::size_t i = 0; i < batches; ++i)
      loss += exact.batch(train, &order[i * kBatch], correct);
    const double seconds = since(start);
    const Phases& p = exact.phases;
    std::printf(
        "epoch %d: %.2f ms  loss %.10f  acc %.4f  (gather %.2f, quantize W %.2f, forward tiles %.2f, softmax "
        "%.2f, quads %.2f, update tiles %.2f, step %.2f ms)\n",
        epoch + 1, seconds * 1e3, loss / rows, correct / rows, p.gather * 1e3, p.quantize_w * 1e3,
        p.forward_tiles * 1e3, p.softmax * 1e3, p.quads * 1e3, p.update_tiles * 1e3, p.step * 1e3);
    if (check) {
      double reference_loss = 0;
      int reference_correct = 0;
      for (std::size_t i = 0; i < batches; ++i)
        reference_loss += reference.batch(train, &order[i * kBatch], reference_correct);
      const double relative = std::fabs(loss - reference_loss) / reference_loss;
      std::printf("  summed in double: loss %.10f  acc %.4f  (relative difference %.1e)\n",
                  reference_loss / rows, reference_correct / rows, relative);
      if (!(relative <= 1e-8)) status = 1;
    }
  }
  release_tiles();
  return status;
}
