// The fast path of training and evaluation: SIMD over the 784 inputs with Google Highway, compiled
// for several instruction sets (SSE4, AVX2, AVX-512, ...) and dispatched at run time to the best the
// CPU has. Pixels stay bytes until they are used (converted in registers), 1/255 is applied to the
// sums instead of to every pixel. The backward pass either returns the gradient (for any optimizer) or,
// for plain SGD, applies the step as it goes (fused, so W is read and written once per batch):
//   forward_rows:     per row, logits o = (x . W_k) / 255 + b_k, stable softmax, loss, argmax,
//                     dlogits = softmax(o) - onehot(y)
//   gradient_columns: for d in a range of inputs, dW_k[d] = 1/255 * sum_rows dlogits[r][k] * x_r[d]
//   update_columns:   the same sum, applied at once: W_k[d] -= step / 255 * sum_rows ...
// The naive twins are loss_and_grad (loss.hpp) and accumulate_gradient + sgd_step; tests compare them.
//
// N = rows, D = inputs, K = classes (10 here: the register blocking keeps K accumulators live).
// W is (K,D) row-major: class k's D weights are contiguous (our column-major (D,K) WeightMatrix).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/fused_softmax.cpp"
// clang-format off
#include <hwy/foreach_target.h>  // must come before highway.h: it re-includes this file per target
#include <hwy/highway.h>
// clang-format on
#include <hwy/cache_control.h>
#include <hwy/contrib/math/math-inl.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "softreg/error.hpp"
#include "softreg/kernels.hpp"

HWY_BEFORE_NAMESPACE();
namespace softreg {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// How many rows ahead the forward pass prefetches: the shuffled rows come from anywhere in the 47 MB
// training set, so each must be on its way from memory well before it is needed.
constexpr std::size_t kPrefetchRowsAhead = 4;

// Targets with 32 vector registers can keep two blocks of K accumulators live; AVX2 and SSE have 16.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int kBlock = 2;
#else
constexpr int kBlock = 1;
#endif

// Compilers fold a load into each multiply-add that uses it, which loads W once per row instead of once
// per block of rows and saturates the load ports; an empty asm pins the loaded vector in a register.
template <class V>
HWY_INLINE void KeepInRegister(V& v) {
#if HWY_ARCH_X86 && HWY_TARGET != HWY_SCALAR && HWY_TARGET != HWY_EMU128 && \
    (defined(__GNUC__) || defined(__clang__))
  asm("" : "+x"(v.raw));
#else
  (void)v;
#endif
}

template <class D>
HWY_INLINE auto LoadPixels(D df, const std::uint8_t* p) {
  const hn::Rebind<std::int32_t, D> di;
  const hn::Rebind<std::uint8_t, D> du8;
  return hn::ConvertTo(df, hn::PromoteTo(di, hn::LoadU(du8, p)));
}

// logits[r][k] = (x_r . W_k) * pixel_scale + b_k for `rows` rows starting at `first`. Computing all the
// dot products first keeps the multiply-adds streaming; the softmax follows in a separate pass.
template <int K, int R>
void DotRows(const FastForwardArgs& a, std::size_t first, float* logits) {
  const hn::ScalableTag<float> df;
  using V = decltype(hn::Zero(df));
  const std::size_t lanes = hn::Lanes(df);
  const std::size_t D = a.inputs;
  const std::size_t vector_end = D - D % lanes;
  const std::uint8_t* x[R];
  for (int r = 0; r < R; ++r)
    x[r] = a.row_pixels[first + static_cast<std::size_t>(r)];
  V acc[R][K];
  for (int r = 0; r < R; ++r)
    for (int k = 0; k < K; ++k)
      acc[r][k] = hn::Zero(df);
  for (std::size_t d = 0; d < vector_end; d += lanes) {
    V xv[R];
    for (int r = 0; r < R; ++r)
      xv[r] = LoadPixels(df, x[r] + d);
    for (int k = 0; k < K; ++k) {
      V w = hn::LoadU(df, a.W + k * D + d);  // loaded once for R rows
      KeepInRegister(w);
      for (int r = 0; r < R; ++r)
        acc[r][k] = hn::MulAdd(xv[r], w, acc[r][k]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < K; ++k) {
      float sum = hn::GetLane(hn::SumOfLanes(df, acc[r][k]));
      for (std::size_t d = vector_end; d < D; ++d)
        sum += static_cast<float>(x[r][d]) * a.W[k * D + d];
      logits[static_cast<std::size_t>(r) * K + k] = sum * a.pixel_scale + a.b[k];
    }
  }
}

template <int K>
std::int64_t ForwardRowsK(const FastForwardArgs& a) {
  // Without dlogits the logits go to a scratch buffer (evaluation).
  thread_local std::vector<float> scratch;
  thread_local std::vector<float> label_logit;
  float* logits = a.dlogits;
  if (!logits) {
    scratch.resize(a.count * K);
    logits = scratch.data();
  }
  label_logit.resize(a.count);

  // Ask for every row at once (into L2): the shuffled rows are scattered over the whole training set,
  // and a light loop of prefetches keeps many memory requests in flight, where the arithmetic below
  // would reach each row only after the previous one is done.
  for (std::size_t row = 0; row < a.count; ++row) {
    for (std::size_t offset = 0; offset < a.inputs; offset += 64)
      __builtin_prefetch(a.row_pixels[row] + offset, 0, 2);
  }

  std::size_t i = 0;
  for (; i + kBlock <= a.count; i += kBlock) {
    for (int r = 0; r < kBlock; ++r) {
      if (i + r + kPrefetchRowsAhead * kBlock < a.count) {
        const std::uint8_t* ahead = a.row_pixels[i + r + kPrefetchRowsAhead * kBlock];
        for (std::size_t offset = 0; offset < a.inputs; offset += 64)
          hwy::Prefetch(ahead + offset);
      }
    }
    DotRows<K, kBlock>(a, i, logits + i * K);
  }
  for (; i < a.count; ++i)
    DotRows<K, 1>(a, i, logits + i * K);

  // Stable softmax: subtract each row's max so every exp is <= 1; remember the label's shifted logit.
  std::int64_t correct = 0;
  for (std::size_t row = 0; row < a.count; ++row) {
    float* o = logits + row * K;
    int best = 0;
    for (int k = 1; k < K; ++k) {
      if (o[k] > o[best]) best = k;
    }
    const float row_max = o[best];
    for (int k = 0; k < K; ++k)
      o[k] -= row_max;
    label_logit[row] = o[a.labels[row]];
    correct += best == a.labels[row];
    if (a.predictions) a.predictions[row] = static_cast<std::uint8_t>(best);
  }
  // exp over all rows at once: a flat array, whole vectors.
  const hn::ScalableTag<float> df;
  const std::size_t lanes = hn::Lanes(df);
  const std::size_t total = a.count * K;
  std::size_t j = 0;
  for (; j + lanes <= total; j += lanes)
    hn::StoreU(hn::Exp(df, hn::LoadU(df, logits + j)), df, logits + j);
  if (j < total) {
    // The remainder goes through the same vector exp (padded), so a value's exp never depends on where
    // its row falls in the batch: results stay independent of how rows are split between threads.
    HWY_ALIGN float tail[hn::MaxLanes(df)] = {};
    for (std::size_t t = j; t < total; ++t)
      tail[t - j] = logits[t];
    hn::Store(hn::Exp(df, hn::Load(df, tail)), df, tail);
    for (std::size_t t = j; t < total; ++t)
      logits[t] = tail[t - j];
  }

  for (std::size_t row = 0; row < a.count; ++row) {
    float* e = logits + row * K;
    float sum = 0;
    for (int k = 0; k < K; ++k)
      sum += e[k];
    a.row_loss[row] = std::log(sum) - label_logit[row];  // log sum exp(o - max) - (o_y - max)
    if (a.dlogits) {
      const float inv_sum = 1.0f / sum;
      for (int k = 0; k < K; ++k)
        e[k] *= inv_sum;
      e[a.labels[row]] -= 1.0f;
    }
  }
  return correct;
}

// sum_r g[r][k] * x_r[d..d+lanes*B) for every k: K*B accumulators stay in registers while every row of
// the batch streams past them; each broadcast of g[r][k] serves B vectors. kApplyStep: W[k][d..] -=
// scale * sum (the fused SGD step); otherwise out[k][d..] = scale * sum (the gradient).
template <int K, int B, bool kApplyStep>
void ColumnBlock(const FastUpdateArgs& a, std::size_t d, float scale) {
  const hn::ScalableTag<float> df;
  using V = decltype(hn::Zero(df));
  const std::size_t lanes = hn::Lanes(df);
  const std::size_t D = a.inputs;
  V acc[B][K];
  for (int b = 0; b < B; ++b)
    for (int k = 0; k < K; ++k)
      acc[b][k] = hn::Zero(df);
  for (std::size_t r = 0; r < a.count; ++r) {
    V xv[B];
    for (int b = 0; b < B; ++b)
      xv[b] = LoadPixels(df, a.row_pixels[r] + d + static_cast<std::size_t>(b) * lanes);
    const float* g = a.dlogits + r * K;
    for (int k = 0; k < K; ++k) {
      const V gk = hn::Set(df, g[k]);
      for (int b = 0; b < B; ++b)
        acc[b][k] = hn::MulAdd(gk, xv[b], acc[b][k]);
    }
  }
  for (int b = 0; b < B; ++b) {
    for (int k = 0; k < K; ++k) {
      float* out = a.W + k * D + d + static_cast<std::size_t>(b) * lanes;
      if constexpr (kApplyStep) {
        hn::StoreU(hn::MulAdd(hn::Set(df, -scale), acc[b][k], hn::LoadU(df, out)), df, out);
      } else {
        hn::StoreU(hn::Mul(hn::Set(df, scale), acc[b][k]), df, out);
      }
    }
  }
}

template <int K, bool kApplyStep>
void ColumnsK(const FastUpdateArgs& a) {
  const hn::ScalableTag<float> df;
  const std::size_t lanes = hn::Lanes(df);
  const float scale = kApplyStep ? a.step * a.pixel_scale : a.pixel_scale;
  // With several threads, half of the batch's rows were read by another core: ask for this range of
  // them up front, as the forward pass does.
  for (std::size_t r = 0; r < a.count; ++r) {
    for (std::size_t offset = a.d_begin; offset < a.d_end; offset += 64)
      __builtin_prefetch(a.row_pixels[r] + offset, 0, 2);
  }
  std::size_t d = a.d_begin;
  for (; d + kBlock * lanes <= a.d_end; d += kBlock * lanes)
    ColumnBlock<K, kBlock, kApplyStep>(a, d, scale);
  for (; d + lanes <= a.d_end; d += lanes)
    ColumnBlock<K, 1, kApplyStep>(a, d, scale);
  for (; d < a.d_end; ++d) {  // inputs left over when D is not a multiple of the vector width
    for (int k = 0; k < K; ++k) {
      float sum = 0;
      for (std::size_t r = 0; r < a.count; ++r)
        sum += a.dlogits[r * K + k] * static_cast<float>(a.row_pixels[r][d]);
      if constexpr (kApplyStep) {
        a.W[k * a.inputs + d] -= scale * sum;
      } else {
        a.W[k * a.inputs + d] = scale * sum;
      }
    }
  }
}

std::int64_t ForwardRows(const FastForwardArgs& args) {
  return ForwardRowsK<kFastClasses>(args);
}
void UpdateColumns(const FastUpdateArgs& args) {
  ColumnsK<kFastClasses, /*kApplyStep=*/true>(args);
}
void GradientColumns(const FastGradientArgs& args) {
  // The same loop as the fused update, writing scale * sum into dW instead of subtracting it from W.
  ColumnsK<kFastClasses, /*kApplyStep=*/false>({args.row_pixels, args.dlogits, args.count, args.inputs,
                                                args.d_begin, args.d_end, /*step=*/1.0f, args.pixel_scale,
                                                args.dW});
}
std::int64_t CompiledTarget() {
  return HWY_TARGET;
}

}  // namespace HWY_NAMESPACE
}  // namespace softreg
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace softreg {

HWY_EXPORT(ForwardRows);
HWY_EXPORT(UpdateColumns);
HWY_EXPORT(GradientColumns);
HWY_EXPORT(CompiledTarget);

std::int64_t fast_forward_rows(const FastForwardArgs& args) {
  return HWY_DYNAMIC_DISPATCH(ForwardRows)(args);
}
void fast_update_columns(const FastUpdateArgs& args) {
  HWY_DYNAMIC_DISPATCH(UpdateColumns)(args);
}
void fast_gradient_columns(const FastGradientArgs& args) {
  HWY_DYNAMIC_DISPATCH(GradientColumns)(args);
}

std::string simd_target() {
  return hwy::TargetName(HWY_DYNAMIC_DISPATCH(CompiledTarget)());
}

std::vector<std::string> simd_targets_available() {
  std::vector<std::string> names;
  for (std::int64_t target : hwy::SupportedAndGeneratedTargets())
    names.emplace_back(hwy::TargetName(target));
  return names;
}

void restrict_simd_targets(const std::string& name) {
  hwy::SetSupportedTargetsForTest(0);  // back to what the CPU supports, then narrow it down
  if (name.empty()) return;
  for (std::int64_t target : hwy::SupportedAndGeneratedTargets()) {
    if (name == hwy::TargetName(target)) {
      hwy::SetSupportedTargetsForTest(target);
      return;
    }
  }
  throw Error("SIMD target '" + name + "' is not available on this CPU");
}

}  // namespace softreg
#endif  // HWY_ONCE
