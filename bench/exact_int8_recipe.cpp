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
// itself (--check): each epoch's first batch's tile sums must equal the same sums taken one product at
// a time in 64-bit integers, and the losses must agree with the same step summed in double to 1e-8
// relative (8e-10 after one epoch here, 1e-9 after two; without the update's lowest slice 2.9e-8).
// Exit code 77 where the CPU or the OS has no AMX-INT8, or SOFTREG_AMX=no (CTest counts it as skipped).
//
// Measured on an Intel Xeon guest (BENCHMARKS.md): one thread 10-15 % faster than softreg's float32
// epoch, two threads 15-25 % slower (the exact partial sums that cross between the cores are 8 bytes
// an entry); neither near issue 8's 1.5x of the floor, which gathering the shuffled rows alone nearly
// spends on this machine.
//
//   build/bench/exact_int8_recipe [--epochs N] [--threads 1|2] [--check] [--ask LINES_A_PAIR LINES_A_BLOCK]
//                                 [--data DIR]
#include <softreg/dataset.hpp>

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
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
  const char* allowed = std::getenv("SOFTREG_AMX");  // "no", as for softreg's kernels: as if there were none
  if (allowed != nullptr && std::string_view(allowed) == "no") return false;
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

// Asks memory for the lines of the next batch's rows a few at a time (--ask: after each forward pair of
// groups and each update block), so that they arrive in L2 while this batch's tiles run. Measured: the
// wait moves from the gathering into the passes that ask (BENCHMARKS.md); off by default.
struct RowRequests {
  const softreg::Dataset* data = nullptr;
  const std::uint32_t* order = nullptr;
  std::size_t row_bytes = 0;
  int row = 0, rows = 0;
  std::uintptr_t line = 0, end = 0;  // the current row's next line and its end

  void start(const softreg::Dataset& d, const std::uint32_t* next, int count) {
    data = &d;
    order = next;
    row_bytes = d.row_bytes();
    row = -1;
    rows = next ? count : 0;
    line = end = 0;
  }
  void ask(int lines) {
    for (; lines > 0; --lines) {
      if (line >= end) {
        if (++row >= rows) return;
        const auto first = reinterpret_cast<std::uintptr_t>(data->image(order[row]));
        line = first & ~std::uintptr_t{63};
        end = first + row_bytes;
      }
      _mm_prefetch(reinterpret_cast<const char*>(line), _MM_HINT_T1);
      line += 64;
    }
  }
};

// Two threads meet three times a batch (a spin: a meeting is a few hundred nanoseconds here).
struct SpinBarrier {
  explicit SpinBarrier(int n) : count(n) {}
  void wait() {
    if (count == 1) return;
    const int generation = passed.load(std::memory_order_acquire);
    if (arrived.fetch_add(1, std::memory_order_acq_rel) == count - 1) {
      arrived.store(0, std::memory_order_relaxed);
      passed.fetch_add(1, std::memory_order_release);
    } else {
      while (passed.load(std::memory_order_acquire) == generation)
        _mm_pause();
    }
  }
  const int count;
  std::atomic<int> arrived{0}, passed{0};
};

struct Phases {
  double gather = 0, quantize_w = 0, forward_tiles = 0, softmax = 0, quads = 0, update = 0;
};

// What each thread keeps of its own (two threads keep two copies of the model, which take the same
// steps and stay equal). Layouts, zeros in every padding so that they add nothing:
//   W       [input][16]           the model, an input's classes side by side (what the step writes);
//   w_tiles [slice][DP/64][16][64] W's slices as TDPBUSD's right operand (DP: the inputs rounded up to
//                                 64): row i of step k holds, for each class n, its slices of inputs
//                                 64k + 4i .. 64k + 4i + 3;
//   d_tiles [slice][4][16][64]     the dlogits' slices as TDPBSUD's left operand: class n, 64 rows a step
//                                 (each thread fills and reads the steps of its own rows);
//   quads   [DP/64][4][64][64]     the rows as its right operand: quad q of rows 4q..4q+3, the 16 inputs
//                                 64c + 16(n/4) + 4m + n%4 of part m (what two rounds of unpacks give);
//   partial [parity][input][16]    G over this thread's rows, exact, for the other thread to add.
struct alignas(64) ThreadPart {
  alignas(64) float W[kMaxInputs][kMaxClasses] = {};  // input by input: a vector is an input's 16 classes
  alignas(64) std::int8_t w_tiles[kSlices][kMaxInputs / 64 + 1][16][64] = {};  // + 1: slices not 16 KB apart
  alignas(64) std::int8_t d_tiles[kSlices][kBatch / 64][kMaxClasses][64] = {};
  alignas(64) std::uint8_t quads[kMaxInputs / 64][4][kBatch / 4][64] = {};
  alignas(64) std::int64_t partial[2][kMaxInputs][kMaxClasses] = {};  // by batch parity: its rows' exact G
  alignas(64) std::int32_t sums[kSlices][16][16] = {};
  alignas(64) std::int32_t pair_sums[2][kSlices][16][16] = {};
  std::int64_t bias_sums[2][kMaxClasses] = {};  // by batch parity
  double w_scale[kMaxClasses] = {};
  alignas(64) float to_integer[kMaxClasses] = {};  // 2^(30 - e) a class: W's integers are W times it
  float b[kMaxClasses] = {};
  Phases phases;
  RowRequests next_rows;
  bool verify = false;  // set for a batch: the checks of its tile sums and logits
  std::int64_t mismatches = 0;
  double loss = 0;
  int correct = 0;
};

struct Int8Trainer {
  int inputs = 0, padded = 0, classes = 0, steps = 0, threads = 1;
  // The batch's rows side by side (each thread copies its own), + 64: tile rows not 1 KB apart (L1 sets).
  alignas(64) std::uint8_t rows[kBatch][kMaxInputs + 64] = {};
  int lines_a_pair = 0, lines_a_block = 0;
  ThreadPart part[2];

  // Four vectors whose 32-bit lanes hold four slices (bytes) of 16 classes each, for 4 inputs (or rows)
  // u = 0..3, to four vectors, one a slice, whose lane n holds class n's slice of the 4 inputs in order:
  // a 4 x 4 byte transpose inside each lane, then a 4 x 4 lane transpose inside each 128 bits.
  AMX_INT8_TARGET static void slices_of_four(const __m512i (&t)[4], __m512i (&slice)[4]) {
    const __m512i a = _mm512_unpacklo_epi8(t[0], t[1]), b = _mm512_unpackhi_epi8(t[0], t[1]);
    const __m512i c = _mm512_unpacklo_epi8(t[2], t[3]), d = _mm512_unpackhi_epi8(t[2], t[3]);
    // r[j]'s 128-bit part L: class 4L + j's slices 0..3, each the 4 inputs' bytes.
    const __m512i r0 = _mm512_unpacklo_epi16(a, c), r1 = _mm512_unpackhi_epi16(a, c);
    const __m512i r2 = _mm512_unpacklo_epi16(b, d), r3 = _mm512_unpackhi_epi16(b, d);
    const __m512i e0 = _mm512_unpacklo_epi32(r0, r1), e1 = _mm512_unpacklo_epi32(r2, r3);
    const __m512i f0 = _mm512_unpackhi_epi32(r0, r1), f1 = _mm512_unpackhi_epi32(r2, r3);
    slice[0] = _mm512_unpacklo_epi64(e0, e1);
    slice[1] = _mm512_unpackhi_epi64(e0, e1);
    slice[2] = _mm512_unpacklo_epi64(f0, f1);
    slice[3] = _mm512_unpackhi_epi64(f0, f1);
  }

  // q's four signed bytes, q = s0 + 256 s1 + 65536 s2 + 2^24 s3 (|q| <= 2^30): the bytes of q + 0x80808080
  // are s + 128 each.
  AMX_INT8_TARGET static __m512i slice_bytes(__m512i q) {
    const __m512i bias = _mm512_set1_epi32(static_cast<int>(0x80808080u));
    return _mm512_xor_si512(_mm512_add_epi32(q, bias), bias);
  }

  // Each class's power of 2 above its largest |w| (into tp.w_scale and tp.to_integer).
  AMX_INT8_TARGET void scales_of(ThreadPart& tp) {
    __m512 largest = _mm512_setzero_ps();
    for (int d = 0; d < inputs; ++d)
      largest = _mm512_max_ps(largest, _mm512_abs_ps(_mm512_load_ps(tp.W[d])));
    alignas(64) float tops[kMaxClasses];
    _mm512_store_ps(tops, largest);
    for (int n = 0; n < kMaxClasses; ++n) {
      const float top = tops[n];
      int e = 0;
      if (top > 0) std::frexp(top, &e);  // top < 2^e
      tp.w_scale[n] = std::ldexp(1.0, e - 30);
      tp.to_integer[n] = top > 0 ? std::ldexp(1.0f, 30 - e) : 0.0f;
    }
  }

  // tp's W as slices into its w_tiles.
  AMX_INT8_TARGET void quantize_w(ThreadPart& tp) {
    const __m512 scale = _mm512_load_ps(tp.to_integer);
    for (int d = 0; d < padded; d += 4) {
      __m512i t[4], slice[4];
      for (int u = 0; u < 4; ++u)
        t[u] = slice_bytes(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_load_ps(tp.W[d + u]), scale)));
      slices_of_four(t, slice);
      for (int s = 0; s < kSlices; ++s)
        _mm512_store_si512(tp.w_tiles[s][d / 64][d % 64 / 4], slice[s]);
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

  AMX_INT8_TARGET static void store_sums(std::int32_t (&sums)[kSlices][16][16]) {
    _tile_stored(0, sums[0], 64);
    _tile_stored(1, sums[1], 64);
    _tile_stored(2, sums[2], 64);
    _tile_stored(3, sums[3], 64);
  }

  // The sums of groups g and g + 1 (16 rows each) into pair_sums, two slices at a time: 2 x 2 accumulators
  // share each tile loaded, and a pass's two slices of W (2 x 13 KB for 784 inputs) stay in L1 beside
  // the rows (all four slices, 52 KB, did not: the forward tiles took 4.2-4.6 ms an epoch against 3.0).
  AMX_INT8_TARGET void forward_pair(ThreadPart& tp, int g) {
    for (int s = 0; s < kSlices; s += 2) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int k = 0; k < steps; ++k) {
        _tile_loadd(4, &rows[16 * g][64 * k], kMaxInputs + 64);
        _tile_loadd(5, &rows[16 * g + 16][64 * k], kMaxInputs + 64);
        _tile_loadd(6, tp.w_tiles[s][k], 64);
        _tile_loadd(7, tp.w_tiles[s + 1][k], 64);
        _tile_dpbusd(0, 4, 6);
        _tile_dpbusd(1, 4, 7);
        _tile_dpbusd(2, 5, 6);
        _tile_dpbusd(3, 5, 7);
      }
      _tile_stored(0, tp.pair_sums[0][s], 64);
      _tile_stored(1, tp.pair_sums[0][s + 1], 64);
      _tile_stored(2, tp.pair_sums[1][s], 64);
      _tile_stored(3, tp.pair_sums[1][s + 1], 64);
    }
  }

  // Rows 16g..16g+15 from their exact sums: logits, softmax, loss, the rows predicted right, and the
  // dlogits' slices into d_tiles, 16 rows in a vector's lanes and a vector a class (the sums transposed
  // first), so a slice of a class's dlogits is 16 bytes in a row of its tile. The bias's sums are exact
  // too: the dlogits' integers summed in 64 bits.
  AMX_INT8_TARGET double softmax_group(ThreadPart& tp, int parity, int g,
                                       const std::int32_t (&group_sums)[kSlices][16][16], __m512i labels) {
    __m512i by_class[kSlices][16];
    for (int s = 0; s < kSlices; ++s) {
      for (int i = 0; i < 16; ++i)
        by_class[s][i] = _mm512_load_si512(group_sums[s][i]);
      transpose16(by_class[s]);
    }
    __m512 logit[kMaxClasses];
    __m512 top = _mm512_set1_ps(-INFINITY);
    for (int n = 0; n < classes; ++n) {
      const __m512d scale = _mm512_set1_pd(tp.w_scale[n] / 255.0), bias = _mm512_set1_pd(tp.b[n]);
      __m256 halves[2];
      for (int h = 0; h < 2; ++h) {
        const __m512i exact = combined_lanes(by_class, n, h);
        halves[h] = _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(_mm512_cvtepi64_pd(exact), scale), bias));
      }
      logit[n] = _mm512_insertf32x8(_mm512_castps256_ps512(halves[0]), halves[1], 1);
      if (tp.verify) {
        alignas(64) float lanes[16];
        _mm512_store_ps(lanes, logit[n]);
        verify_logits(tp, group_sums, n, lanes);
      }
      top = _mm512_max_ps(top, logit[n]);
    }
    __m512i predicted = _mm512_setzero_si512();
    __m512 total = _mm512_setzero_ps(), label_logit = _mm512_setzero_ps(), e[kMaxClasses];
    for (int n = classes - 1; n >= 0; --n)  // the first class of the largest logit, as max_element
      predicted = _mm512_mask_mov_epi32(predicted, _mm512_cmp_ps_mask(logit[n], top, _CMP_EQ_OQ),
                                        _mm512_set1_epi32(n));
    for (int n = 0; n < classes; ++n) {
      e[n] = exp_of(_mm512_sub_ps(logit[n], top));
      total = _mm512_add_ps(total, e[n]);
      label_logit =
          _mm512_mask_mov_ps(label_logit, _mm512_cmpeq_epi32_mask(labels, _mm512_set1_epi32(n)), logit[n]);
    }
    tp.correct += __builtin_popcount(_mm512_cmpeq_epi32_mask(predicted, labels));
    // sum of log(total) as the log of a product: each total is in [1, classes], 16 of them far inside a
    // double
    const __m512d product = _mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(total)),
                                          _mm512_cvtps_pd(_mm512_extractf32x8_ps(total, 1)));
    const double loss = std::log(_mm512_reduce_mul_pd(product)) -
                        _mm512_reduce_add_pd(_mm512_add_pd(
                            _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_sub_ps(label_logit, top))),
                            _mm512_cvtps_pd(_mm512_extractf32x8_ps(_mm512_sub_ps(label_logit, top), 1))));
    const __m512 inverse = _mm512_div_ps(_mm512_set1_ps(1.0f), total);
    for (int n = 0; n < classes; ++n) {
      __m512 d = _mm512_mul_ps(e[n], inverse);
      d = _mm512_mask_sub_ps(d, _mm512_cmpeq_epi32_mask(labels, _mm512_set1_epi32(n)), d,
                             _mm512_set1_ps(1.0f));
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(d, _mm512_set1_ps(1073741824.0f)));  // |d| <= 1
      const __m512i bytes = slice_bytes(q);
      for (int s = 0; s < kSlices; ++s)
        _mm_store_si128(reinterpret_cast<__m128i*>(&tp.d_tiles[s][16 * g / 64][n][16 * g % 64]),
                        _mm512_cvtepi32_epi8(_mm512_srli_epi32(bytes, 8 * s)));
      tp.bias_sums[parity][n] +=
          _mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(q)),
                                                   _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(q, 1))));
    }
    return loss;
  }

  AMX_INT8_TARGET void make_quads(ThreadPart& tp, int q0, int q1) {
    for (int c = 0; c < steps; ++c)
      for (int q = q0; q < q1; ++q) {
        const __m512i r0 = _mm512_load_si512(&rows[4 * q][64 * c]),
                      r1 = _mm512_load_si512(&rows[4 * q + 1][64 * c]);
        const __m512i r2 = _mm512_load_si512(&rows[4 * q + 2][64 * c]),
                      r3 = _mm512_load_si512(&rows[4 * q + 3][64 * c]);
        const __m512i lo01 = _mm512_unpacklo_epi8(r0, r1), hi01 = _mm512_unpackhi_epi8(r0, r1);
        const __m512i lo23 = _mm512_unpacklo_epi8(r2, r3), hi23 = _mm512_unpackhi_epi8(r2, r3);
        _mm512_store_si512(tp.quads[c][0][q], _mm512_unpacklo_epi16(lo01, lo23));
        _mm512_store_si512(tp.quads[c][1][q], _mm512_unpackhi_epi16(lo01, lo23));
        _mm512_store_si512(tp.quads[c][2][q], _mm512_unpacklo_epi16(hi01, hi23));
        _mm512_store_si512(tp.quads[c][3][q], _mm512_unpackhi_epi16(hi01, hi23));
      }
  }

  AMX_INT8_TARGET void update_tiles(ThreadPart& tp, int c, int m, int k0, int k1) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int k = k0; k < k1; ++k) {
      _tile_loadd(4, tp.quads[c][m][16 * k], 64);
      _tile_loadd(5, tp.d_tiles[0][k], 64);
      _tile_dpbsud(0, 5, 4);
      _tile_loadd(6, tp.d_tiles[1][k], 64);
      _tile_dpbsud(1, 6, 4);
      _tile_loadd(5, tp.d_tiles[2][k], 64);
      _tile_dpbsud(2, 5, 4);
      _tile_loadd(6, tp.d_tiles[3][k], 64);
      _tile_dpbsud(3, 6, 4);
    }
    store_sums(tp.sums);
  }

  // The exact sum of vector j's four slices, slices[s][j] times 256^s, for its lanes 8h .. 8h + 7 as 64-bit
  // integers.
  AMX_INT8_TARGET static __m512i combined_lanes(const __m512i (&slices)[kSlices][16], int j, int h) {
    __m512i exact = _mm512_setzero_si512();
    for (int s = kSlices - 1; s >= 0; --s) {
      const __m512i v = slices[s][j];
      const __m256i lanes = h ? _mm512_extracti64x4_epi64(v, 1) : _mm512_castsi512_si256(v);
      exact = _mm512_add_epi64(_mm512_slli_epi64(exact, 8), _mm512_cvtepi32_epi64(lanes));
    }
    return exact;
  }

  // 16 x 16 32-bit lanes transposed.
  AMX_INT8_TARGET static void transpose16(__m512i (&r)[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
      t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
      t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
      r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
      r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
      r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
      r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    // r[4g + j]'s 128-bit part L now holds column 4L + j of rows 4g..4g+3; regroup the parts.
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 2; ++j) {
        t[i + 8 * j] = _mm512_shuffle_i32x4(r[i + 8 * j], r[i + 4 + 8 * j], 0x88);
        t[i + 4 + 8 * j] = _mm512_shuffle_i32x4(r[i + 8 * j], r[i + 4 + 8 * j], 0xdd);
      }
    for (int i = 0; i < 8; ++i) {
      r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
      r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
  }

  // W's inputs of block (c, m) stepped from the block's exact sums (classes by the block's 16 inputs).
  // --check, on each epoch's first batch: the tiles' exact sums against the same sums taken one product
  // at a time in 64-bit integers, from W's integers (rounded as the vector conversion rounds, to nearest
  // even) and the dlogits' integers read back from their slices. Any difference is counted.
  std::int64_t weight_integer(const ThreadPart& tp, int n, int d) const {
    return static_cast<std::int64_t>(std::nearbyint(tp.W[d][n] * tp.to_integer[n]));
  }
  static std::int64_t dlogit_integer(const ThreadPart& tp, int r, int n) {
    std::int64_t q = 0;
    for (int s = kSlices - 1; s >= 0; --s)
      q = q * 256 + tp.d_tiles[s][r / 64][n][r % 64];
    return q;
  }
  static std::int64_t combined(const std::int32_t (&slices)[kSlices][16][16], int i, int j) {
    std::int64_t total = 0;
    for (int s = kSlices - 1; s >= 0; --s)
      total = total * 256 + slices[s][i][j];
    return total;
  }
  void verify_forward_pair(ThreadPart& tp, int g) {
    for (int j = 0; j < 2; ++j)
      for (int i = 0; i < 16; ++i)
        for (int n = 0; n < classes; ++n) {
          std::int64_t one_by_one = 0;
          for (int d = 0; d < inputs; ++d)
            one_by_one += rows[16 * (g + j) + i][d] * weight_integer(tp, n, d);
          tp.mismatches += combined(tp.pair_sums[j], i, n) != one_by_one;
        }
  }
  // Class n's logits of a group's 16 rows: the exact sum times the class's scale, plus its bias, in
  // double, rounded to float: the same operations one lane at a time (not inlined into the AVX-512
  // code, where the compiler could fuse the multiply and the add).
  __attribute__((noinline)) void verify_logits(ThreadPart& tp,
                                               const std::int32_t (&group_sums)[kSlices][16][16], int n,
                                               const float (&lanes)[16]) {
    for (int i = 0; i < 16; ++i) {
      const double product = static_cast<double>(combined(group_sums, i, n)) * (tp.w_scale[n] / 255.0);
      tp.mismatches += static_cast<float>(product + static_cast<double>(tp.b[n])) != lanes[i];
    }
  }
  void verify_update_block(ThreadPart& tp, int c, int m, int r0, int r1) {
    for (int n = 0; n < 16; ++n) {
      const int d = 64 * c + 16 * (n / 4) + 4 * m + n % 4;
      if (d >= inputs) continue;
      for (int k = 0; k < classes; ++k) {
        std::int64_t one_by_one = 0;
        for (int r = r0; r < r1; ++r)
          one_by_one += rows[r][d] * dlogit_integer(tp, r, k);
        tp.mismatches += combined(tp.sums, k, n) != one_by_one;
      }
    }
  }

  // Block (c, m)'s exact sums over this thread's rows (classes by 16 inputs, four slices) into its partial
  // G, an input's 16 classes in 64-bit integers.
  AMX_INT8_TARGET void partial_block(ThreadPart& tp, int parity, int c, int m) {
    __m512i by_input[kSlices][16];
    for (int s = 0; s < kSlices; ++s) {
      for (int k = 0; k < 16; ++k)
        by_input[s][k] = _mm512_load_si512(tp.sums[s][k]);
      transpose16(by_input[s]);
    }
    for (int n = 0; n < 16; ++n) {
      const int d = 64 * c + 16 * (n / 4) + 4 * m + n % 4;
      if (d >= inputs) continue;
      for (int h = 0; h < 2; ++h) {
        _mm512_store_si512(&tp.partial[parity][d][8 * h], combined_lanes(by_input, n, h));
      }
    }
  }

  // tp's copy of W stepped by G, the sum of every thread's partial (exact, so the copies stay equal and
  // the bits do not depend on the thread count).
  AMX_INT8_TARGET void step_all(ThreadPart& tp, int parity) {
    const __m512d scale = _mm512_set1_pd(-kLr / (255.0 * std::ldexp(1.0, 30) * kBatch));
    for (int d = 0; d < inputs; ++d) {
      __m256 halves[2];
      for (int h = 0; h < 2; ++h) {
        __m512i exact = _mm512_load_si512(&part[0].partial[parity][d][8 * h]);
        for (int u = 1; u < threads; ++u)
          exact = _mm512_add_epi64(exact, _mm512_load_si512(&part[u].partial[parity][d][8 * h]));
        const __m512d old = _mm512_cvtps_pd(_mm256_load_ps(tp.W[d] + 8 * h));
        halves[h] = _mm512_cvtpd_ps(_mm512_add_pd(old, _mm512_mul_pd(_mm512_cvtepi64_pd(exact), scale)));
      }
      _mm512_store_ps(tp.W[d], _mm512_insertf32x8(_mm512_castps256_ps512(halves[0]), halves[1], 1));
    }
  }

  // Thread t's share of a batch (t of `threads`): the forward pass, softmax and dlogits of its rows and
  // their exact partial G; after both partials are there (the only meeting), each thread steps its own
  // copy of W from their sum and makes its own slices of it for the next batch. What crosses between
  // the cores is each partial G, 64-bit integers (100 KB a batch for 16 classes of 784 inputs); a first
  // version that split the update by inputs instead, every thread reading the other's quads and slices
  // (about 300 KB a batch) and meeting three times, took 10.3-11.3 ms an epoch on two threads.
  AMX_INT8_TARGET void batch(int t, std::size_t index, const softreg::Dataset& data,
                             const std::uint32_t* order, const std::uint32_t* next, SpinBarrier& meet) {
    ThreadPart& tp = part[t];
    const int parity = static_cast<int>(index % 2);
    const int r0 = t * kBatch / threads, r1 = (t + 1) * kBatch / threads;
    tp.next_rows.start(data, next ? next + r0 : nullptr, r1 - r0);
    auto start = Clock::now();
    for (int r = r0; r < r1; ++r)
      std::memcpy(rows[r], data.image(order[r]), static_cast<std::size_t>(inputs));
    tp.phases.gather += since(start);
    std::fill(std::begin(tp.bias_sums[parity]), std::end(tp.bias_sums[parity]), 0);
    for (int g = r0 / 16; g < r1 / 16; g += 2) {
      start = Clock::now();
      forward_pair(tp, g);
      if (tp.verify) verify_forward_pair(tp, g);
      tp.next_rows.ask(lines_a_pair);
      tp.phases.forward_tiles += since(start);
      start = Clock::now();
      for (int j = 0; j < 2; ++j) {
        alignas(64) std::int32_t labels[16];
        for (int i = 0; i < 16; ++i)
          labels[i] = data.labels[order[16 * (g + j) + i]];
        tp.loss += softmax_group(tp, parity, g + j, tp.pair_sums[j], _mm512_load_si512(labels));
      }
      tp.phases.softmax += since(start);
    }
    start = Clock::now();
    make_quads(tp, r0 / 4, r1 / 4);
    tp.phases.quads += since(start);
    start = Clock::now();
    for (int c = 0; c < steps; ++c)
      for (int m = 0; m < 4; ++m) {
        update_tiles(tp, c, m, r0 / 64, r1 / 64);
        if (tp.verify) verify_update_block(tp, c, m, r0, r1);
        tp.next_rows.ask(lines_a_block);
        partial_block(tp, parity, c, m);
      }
    tp.phases.update += since(start);
    meet.wait();  // every thread's partial G and bias sums are there
    start = Clock::now();
    step_all(tp, parity);
    for (int n = 0; n < classes; ++n) {
      std::int64_t bias_sum = 0;
      for (int u = 0; u < threads; ++u)
        bias_sum += part[u].bias_sums[parity][n];
      tp.b[n] = static_cast<float>(tp.b[n] - kLr * std::ldexp(static_cast<double>(bias_sum), -30) / kBatch);
    }
    scales_of(tp);
    quantize_w(tp);
    tp.phases.quantize_w += since(start);
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
    std::vector<float> logit(K), d(K);
    std::vector<double> bias_sums(K, 0.0);
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
      b[n] = static_cast<float>(b[n] - kLr * bias_sums[n] / kBatch);
    return loss;
  }
};

}  // namespace

int main(int argc, char** argv) {
  static Int8Trainer exact;
  int epochs = 10;
  bool check = false;
  std::optional<std::filesystem::path> folder;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--epochs" && i + 1 < argc) {
      epochs = std::stoi(argv[++i]);
    } else if (arg == "--ask" && i + 2 < argc) {  // lines asked for after each forward pair, update block
      exact.lines_a_pair = std::stoi(argv[++i]);
      exact.lines_a_block = std::stoi(argv[++i]);
    } else if (arg == "--threads" && i + 1 < argc) {
      exact.threads = std::stoi(argv[++i]);
    } else if (arg == "--check") {
      check = true;
    } else if (arg == "--data" && i + 1 < argc) {
      folder = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: exact_int8_recipe [--epochs N] [--threads 1|2] [--check] [--ask LINES LINES] "
                   "[--data DIR]\n");
      return 2;
    }
  }
  if (!amx_int8_usable()) {
    std::printf("exact_int8_recipe: no AMX-INT8 here (CPU, OS or SOFTREG_AMX=no); skipped\n");
    return 77;
  }
  const softreg::TrainTestData data = softreg::load_train_test(softreg::locate_data(folder));
  const softreg::Dataset& train = data.train;
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
      exact.part[0].W[i][n] = normal(generator);
      reference.W.push_back(exact.part[0].W[i][n]);
    }
  if (exact.threads != 1 && exact.threads != 2) {
    std::fprintf(stderr, "exact_int8_recipe: --threads is 1 or 2\n");
    return 2;
  }
  // W's first slices, before the first batch.
  for (int t = 0; t < exact.threads; ++t) {
    std::memcpy(exact.part[t].W, exact.part[0].W, sizeof exact.part[0].W);
    exact.scales_of(exact.part[t]);
    exact.quantize_w(exact.part[t]);
  }
  std::vector<std::uint32_t> order(train.count);
  for (std::size_t i = 0; i < order.size(); ++i)
    order[i] = static_cast<std::uint32_t>(i);
  const std::size_t batches = train.count / kBatch;  // whole batches only
  const double rows = static_cast<double>(batches * kBatch);
  SpinBarrier meet(exact.threads), epoch_edge(exact.threads);
  const auto epoch_of = [&](int t) {
    for (std::size_t i = 0; i < batches; ++i) {
      exact.part[t].verify = check && i == 0;  // (the epoch's time then includes the checking)
      exact.batch(t, i, train, &order[i * kBatch], i + 1 < batches ? &order[(i + 1) * kBatch] : nullptr,
                  meet);
    }
  };
  std::thread helper;
  if (exact.threads == 2)
    helper = std::thread([&] {
      configure_tiles();
      for (int epoch = 0; epoch < epochs; ++epoch) {
        epoch_edge.wait();  // the epoch's order is shuffled
        epoch_of(1);
        epoch_edge.wait();
      }
      release_tiles();
    });
  configure_tiles();
  int status = 0;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    std::shuffle(order.begin(), order.end(), generator);
    for (ThreadPart& tp : exact.part) {
      tp.phases = {};
      tp.loss = 0;
      tp.correct = 0;
      tp.mismatches = 0;
    }
    epoch_edge.wait();
    const auto start = Clock::now();
    epoch_of(0);
    epoch_edge.wait();
    const double seconds = since(start);
    double loss = 0;
    int correct = 0;
    std::int64_t mismatches = 0;
    for (const ThreadPart& tp : exact.part) {
      loss += tp.loss;
      correct += tp.correct;
      mismatches += tp.mismatches;
    }
    const Phases& p = exact.part[0].phases;
    std::printf(
        "epoch %d: %.2f ms  loss %.10f  acc %.4f  (thread 0: gather %.2f, forward tiles %.2f, softmax %.2f, "
        "quads %.2f, update tiles and partial G %.2f, step and W's slices %.2f ms)\n",
        epoch + 1, seconds * 1e3, loss / rows, correct / rows, p.gather * 1e3, p.forward_tiles * 1e3,
        p.softmax * 1e3, p.quads * 1e3, p.update * 1e3, p.quantize_w * 1e3);
    if (check) {
      double reference_loss = 0;
      int reference_correct = 0;
      for (std::size_t i = 0; i < batches; ++i)
        reference_loss += reference.batch(train, &order[i * kBatch], reference_correct);
      const double relative = std::fabs(loss - reference_loss) / reference_loss;
      std::printf("  summed in double: loss %.10f  acc %.4f  (relative difference %.1e)\n",
                  reference_loss / rows, reference_correct / rows, relative);
      std::printf(
          "  the first batch's tile sums and logits against one product at a time: %lld of %d differ\n",
          static_cast<long long>(mismatches), (2 * kBatch + exact.inputs) * exact.classes);
      if (!(relative <= 1e-8) || mismatches != 0) status = 1;
    }
  }
  if (helper.joinable()) helper.join();
  release_tiles();
  return status;
}
