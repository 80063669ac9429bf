// The hot loops of training and evaluation, on rows of a byte Dataset (pixels scaled by 1/255 as they
// are read). The math is loss.hpp's; these versions only avoid allocation and copies, and tests check
// them against loss_and_grad in double precision.
//
// N = rows in a block, D = inputs, K = classes. X is (N,D), W is (D,K), logits is (N,K).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "softreg/dataset.hpp"
#include "softreg/loss.hpp"
#include "softreg/model.hpp"

namespace softreg {

/// Summed loss and number of correct predictions over some rows.
struct BatchSums {
  double loss = 0;
  std::int64_t correct = 0;

  BatchSums& operator+=(const BatchSums& other) {
    loss += other.loss;
    correct += other.correct;
    return *this;
  }
};

/// Scratch memory reused from call to call, so the training loop does not allocate.
struct KernelWorkspace {
  RowMatrix<float> X;       // (N,D) the rows as floats in [0,1]
  RowMatrix<float> logits;  // (N,K), then dlogits in place
};

/// Over the rows `rows` of `data`: returns the summed cross-entropy and correct count, and adds the
/// gradient of the summed loss to dW (D,K) and db (K).
BatchSums accumulate_gradient(const Dataset& data, std::span<const std::uint32_t> rows,
                              const SoftmaxModel& model, WeightMatrix& dW, BiasVector& db,
                              KernelWorkspace& workspace);

/// Forward pass over the contiguous rows [begin, end): summed loss and correct count. When
/// `predictions` is not empty it receives the argmax class of each row (end - begin entries).
BatchSums evaluate_rows(const Dataset& data, std::size_t begin, std::size_t end, const SoftmaxModel& model,
                        std::span<Label> predictions, KernelWorkspace& workspace);

/// Logits of the contiguous rows [begin, end), (end - begin, K).
RowMatrix<float> logits_of_rows(const Dataset& data, std::size_t begin, std::size_t end,
                                const SoftmaxModel& model);

// ---- The fast path (kernels/fused_softmax.cpp) -----------------------------------------------------

/// Which implementation training and evaluation use.
enum class KernelChoice { kFast, kNaive };

/// Arguments of fast_forward_rows. Rows hold `inputs` values of type `element` (bytes or float32); the
/// model sees each value times `scale`. W is (K,D) row-major (the data of a WeightMatrix), b is (K).
struct FastForwardArgs {
  const std::uint8_t* const* rows;  // count pointers to rows of D values
  const Label* labels;              // count labels
  std::size_t count;
  std::size_t inputs;   // D
  std::size_t classes;  // K, any number from 1 to kMaxClasses
  ElementType element;
  const float* W;
  const float* b;
  float scale;         // 1/255 for pixels: applied to the dot products, not to every value
  float* row_loss;     // out: count losses
  Label* predictions;  // out, optional: count argmax classes
  float* dlogits;      // out, optional: (count,K) softmax - onehot
  // Memory is not asked for every row at the start: the previous backward pass asked for them, or the
  // rows are left to the requests each block of rows makes for the block a few blocks on, as the first
  // tile of classes goes (AskAheadChoice's rolling way; those are made either way).
  bool rows_requested = false;
  // dlogits already holds the logits, computed elsewhere (fast_bf16_logits, or logits_only calls for
  // parts of the classes): only the softmax, the loss, the argmax and dlogits are computed; rows and W
  // are not read.
  bool logits_given = false;
  // Only the logits, into dlogits as (count,K): no softmax, loss, argmax (row_loss and labels are not
  // used; returns 0). A (row, class) logit has the same bits whatever else is computed with it, so a
  // call for the classes [k0, k1) (W + k0 * D, b + k0, classes k1 - k0, model_classes K) gives those
  // columns of a call for all of them.
  bool logits_only = false;
  // The whole model's classes when this call takes some of them (W + k0 * D, classes k1 - k0); 0: the
  // call's. How a logit is summed depends on the model's classes (many: input by input, rows in the
  // vectors' lanes), and a call for part of the classes must sum as a call for all would.
  std::size_t model_classes = 0;
};
/// Forward pass; returns the number of rows whose argmax is the label.
std::int64_t fast_forward_rows(const FastForwardArgs& args);
/// Asks memory for every line of `count` rows of `row_bytes` (into L2), without waiting for them: what
/// fast_forward_rows and fast_bf16_pack_rows do first with shuffled rows (kernels/fused_softmax.cpp).
void request_rows(const std::uint8_t* const* rows, std::size_t count, std::size_t row_bytes);
/// Whether fast_forward_rows asks for rows of `element` a line at a time inside its loop, a few blocks
/// ahead (rows of bytes, or any rows for a model of few classes), for a model of `classes` classes;
/// otherwise all of a block's lines at once before it. Where it does, asking for every row first only
/// adds requests (evaluate leaves such rows to it).
bool forward_asks_rows_in_loop(ElementType element, std::size_t classes);

/// Arguments of fast_update_columns.
struct FastUpdateArgs {
  const std::uint8_t* const* rows;  // the batch's rows
  const float* dlogits;             // (count,K) from fast_forward_rows
  std::size_t count;
  std::size_t inputs;   // D
  std::size_t classes;  // K
  ElementType element;
  std::size_t d_begin;  // the inputs this call updates: [d_begin, d_end)
  std::size_t d_end;
  float step;   // lr / batch size
  float scale;  // 1/255 for pixels
  float* W;     // (K,D), updated in place
  // Optional: rows to ask memory for while the pass computes (the next batch's), one cache line per
  // row of this batch it reads, so that the requests never pile up in front of the pass's own loads.
  const std::uint8_t* const* prefetch = nullptr;
  std::size_t prefetch_count = 0;
  std::size_t prefetch_row_bytes = 0;
  // Optional: when non-zero, each sum is taken as two, over rows [0, second_half) and over the rest,
  // added before the step: the same bits as fast_gradient_columns on each half (on two threads, each
  // over the rows it has in cache) followed by fast_step_from_halves.
  std::size_t second_half = 0;
};
/// The fused backward pass and SGD step on W for inputs [d_begin, d_end):
/// W[k][d] -= step * sum_rows dlogits[r][k] * x_r[d]. Disjoint ranges can run on different threads.
/// This is fast_gradient_columns followed by sgd_step, done in one pass over the batch's rows.
void fast_update_columns(const FastUpdateArgs& args);

/// How the update's multiply-adds (fast_update_columns, fast_gradient_columns) take each row's dlogit
/// on 512-bit targets: from one broadcast register that the block's vectors share, or each from memory
/// in its own operand (folded). Which is faster depends on the CPU (Zen 4: folded; Zen 5: in
/// registers), so by default the fast path times both once per tile shape (kMeasured). The results are
/// the same bit for bit either way; tests and benchmarks can force one.
enum class UpdateBroadcasts { kMeasured, kFolded, kInRegisters };
void set_update_broadcasts(UpdateBroadcasts how);
/// What the recipe's update (10 classes of bytes) uses here: "folded", "in registers", or "" where
/// the instruction set has no choice (below AVX-512).
std::string update_broadcasts();

/// The update (fast_update_columns, fast_gradient_columns) takes its inputs in chunks that keep about
/// this many bytes of the batch's values, and passes every tile of classes over one chunk before the
/// next: a chunk stays in L2 while the tiles read it again, where a whole batch of wide rows (256 rows of
/// 1,024 floats: a megabyte) would come from L3 for every tile. Any chunking gives the same bits: each
/// (class, input) sum runs over the rows in order. 0 restores the default; tests force small chunks.
/// One tile of classes reads the rows once and takes no chunks.
constexpr std::size_t kDefaultUpdateChunkBytes = std::size_t{128} << 10;
void set_update_chunk_bytes(std::size_t bytes);
std::size_t update_chunk_bytes();

/// Arguments of fast_gradient_columns.
struct FastGradientArgs {
  const std::uint8_t* const* rows;  // the batch's rows
  const float* dlogits;             // (count,K) from fast_forward_rows
  std::size_t count;
  std::size_t inputs;   // D
  std::size_t classes;  // K
  ElementType element;
  std::size_t d_begin;  // the inputs this call computes: [d_begin, d_end)
  std::size_t d_end;
  float scale;  // 1/255 for pixels
  float* dW;    // out: (K,D), the data of a WeightMatrix; only inputs [d_begin, d_end) are written
  // Optional, as in FastUpdateArgs: rows to ask memory for while the pass computes.
  const std::uint8_t* const* prefetch = nullptr;
  std::size_t prefetch_count = 0;
  std::size_t prefetch_row_bytes = 0;
};
/// The backward pass on W for inputs [d_begin, d_end): the gradient of the summed loss,
/// dW[k][d] = sum_rows dlogits[r][k] * x_r[d], for any optimizer to apply. Disjoint ranges can run on
/// different threads.
void fast_gradient_columns(const FastGradientArgs& args);

/// Arguments of fast_step_from_halves.
struct FastHalvesStepArgs {
  const float* first;   // (K,D): fast_gradient_columns with scale 1 over rows [0, second_half)
  const float* second;  // (K,D): the same over the rest of the batch's rows
  std::size_t inputs;   // D
  std::size_t classes;  // K
  std::size_t d_begin;  // the inputs this call updates: [d_begin, d_end)
  std::size_t d_end;
  float step;   // lr / batch size
  float scale;  // 1/255 for pixels
  float* W;     // (K,D), updated in place
  // Optional, with one class: weights that take the opposite step, mirror[d] += step * scale * (first[d]
  // + second[d]) (class 0 of two classes trained as one, fast_binary_softmax).
  float* mirror = nullptr;
};
/// W[k][d] -= step * scale * (first[k][d] + second[k][d]) for inputs [d_begin, d_end): the SGD step of
/// fast_update_columns with FastUpdateArgs::second_half, bit for bit, from sums computed apart.
void fast_step_from_halves(const FastHalvesStepArgs& args);

/// Arguments of fast_binary_softmax.
struct FastBinaryArgs {
  const Label* labels;  // count labels, 0 or 1
  std::size_t count;
  float* margins;   // in: count margins o_1 - o_0; out: count dlogits of class 1, sigmoid(margin) - y
  float* row_loss;  // out: count losses
};
/// Two classes trained as one. Their softmax depends on the margin z = o_1 - o_0 alone: p_1 = sigmoid(z),
/// loss = softplus(-z) for label 1 and softplus(z) for label 0, and the dlogits are (-g, g) with
/// g = sigmoid(z) - y. So the forward pass takes one dot product a row, with W_1 - W_0 (fast_forward_rows,
/// one class, logits_only), the backward pass one sum an input (fast_gradient_columns on g), and class 0
/// takes the opposite of class 1's step (FastHalvesStepArgs::mirror): half the multiply-adds of the
/// two-class softmax, the same model up to rounding. A margin that is not finite gives a NaN loss and
/// dlogit, as an infinite logit does in fast_forward_rows (a run that diverged is caught by its loss).
/// Returns the rows whose prediction (class 1 when z > 0; class 0 at a tie, as the softmax's first largest
/// logit) is the label. A row's results do not depend on the rows beside it in the call.
std::int64_t fast_binary_softmax(const FastBinaryArgs& args);

/// Arguments of fast_margin_pass.
struct FastMarginArgs {
  const std::uint8_t* const* rows;  // count pointers to rows of D values
  const Label* labels;              // count labels, 0 or 1
  std::size_t count;
  std::size_t inputs;  // D
  ElementType element;
  const float* W;   // D: the margin's weights, W_1 - W_0
  float b;          // the margin's bias, b_1 - b_0
  float scale;      // 1/255 for pixels
  float* dlogits;   // out: count dlogits of class 1, sigmoid(margin) - y
  float* row_loss;  // out: count losses
  float* sums;      // out: D sums, sum_rows dlogits[r] * x_r[d] (no scale)
  // Optional: the rows the caller reads next (the rest of the batch, or the next batch's), asked for
  // as the pass nears its end, as its own rows are a few blocks ahead (the first of them at the start of
  // a pass too short to reach them).
  const std::uint8_t* const* ahead = nullptr;
  std::size_t ahead_count = 0;
  // Memory was asked for the first rows (by the previous call's `ahead`): the pass does not ask first.
  bool rows_requested = false;
};
/// Two classes trained as one, both passes in one over the rows: for a few rows at a time, their
/// margins, dlogits and losses, then their part of each input's sum while they are in L1. The same bits
/// as fast_forward_rows (one class, logits_only, W and b the margin's), fast_binary_softmax and
/// fast_gradient_columns (scale 1) over the same rows. Returns the rows predicted right.
std::int64_t fast_margin_pass(const FastMarginArgs& args);

// ---- bfloat16 compute (kernels/bf16.cpp; layouts described there) ----------------------------------

/// Whether this CPU runs the bfloat16 kernels (AVX-512 with BF16: Zen 4 and later, Cooper Lake, Sapphire
/// Rapids), and the fast path has not been restricted below AVX-512 (restrict_simd_targets). Every
/// fast_bf16_* function throws Error where it does not.
bool fast_bf16_supported();
/// bfloat16 values in a packed row: the inputs rounded up to a multiple of 32 (one 512-bit vector).
std::size_t bf16_row_stride(std::size_t inputs);
/// 32-bit pairs in a row of fast_bf16_pack_row_pairs's output for inputs [d_begin, d_end).
std::size_t bf16_pair_width(std::size_t d_begin, std::size_t d_end);
/// count rows as bfloat16 (round to nearest even), out: (count, bf16_row_stride(inputs)). Unless
/// rows_requested (request_rows was called for them), memory is first asked for every row.
void fast_bf16_pack_rows(const std::uint8_t* const* rows, std::size_t count, std::size_t inputs,
                         ElementType element, std::uint16_t* out, bool rows_requested = false);
/// Inputs [d_begin, d_end) of rows 2j and 2j+1 side by side, out: (count+1)/2 x bf16_pair_width(...)
/// values in the panels fast_bf16_update_columns reads (kernels/bf16.cpp).
void fast_bf16_pack_row_pairs(const std::uint8_t* const* rows, std::size_t count, ElementType element,
                              std::size_t d_begin, std::size_t d_end, std::uint32_t* out);
/// The same pairs from count rows already packed by fast_bf16_pack_rows, (count, stride): the same bits,
/// without reading the rows' own elements again.
void fast_bf16_pair_packed_rows(const std::uint16_t* rows16, std::size_t count, std::size_t stride,
                                std::size_t d_begin, std::size_t d_end, std::uint32_t* out);
/// dlogits (count, K) of rows 2j and 2j+1 side by side, out: ((count+1)/2, K).
void fast_bf16_pack_dlogit_pairs(const float* dlogits, std::size_t count, std::size_t classes,
                                 std::uint32_t* out);
/// W (K,D) as bfloat16, out: (K, bf16_row_stride(D)).
void fast_bf16_round_weights(const float* W, std::size_t classes, std::size_t inputs, std::uint16_t* out);

/// Arguments of fast_bf16_logits.
struct FastBf16LogitsArgs {
  const std::uint16_t* rows16;  // (count, stride) from fast_bf16_pack_rows
  std::size_t count;
  std::size_t stride;        // bf16_row_stride(D)
  std::size_t classes;       // K
  const std::uint16_t* W16;  // (K, stride) from fast_bf16_round_weights or fast_bf16_update_columns
  const float* b;
  float scale;
  float* logits;  // out: (count, K), scale * (x . W_k) + b_k
};
void fast_bf16_logits(const FastBf16LogitsArgs& args);

/// Arguments of fast_bf16_update_columns.
struct FastBf16UpdateArgs {
  const std::uint32_t* row_pairs;     // from fast_bf16_pack_row_pairs, for inputs from d_begin
  const std::uint32_t* dlogit_pairs;  // (pairs, K)
  std::size_t pairs;
  std::size_t inputs;   // D
  std::size_t classes;  // K
  std::size_t d_begin;  // the inputs this call updates: [d_begin, d_end)
  std::size_t d_end;
  float step;          // lr / batch size
  float scale;         // 1/255 for pixels
  float* W;            // (K,D), updated in place
  std::uint16_t* W16;  // (K, stride): inputs [d_begin, d_end) rewritten from the updated W
  std::size_t stride;  // bf16_row_stride(D)
};
/// The fused SGD step of fast_update_columns with bfloat16 sums:
/// W[k][d] -= step * scale * sum_j (g pairs . x pairs), then W16[k][d] = bfloat16(W[k][d]).
void fast_bf16_update_columns(const FastBf16UpdateArgs& args);
/// Whether the bfloat16 kernels run on AMX tiles (TDPBF16PS, 16 times VDPBF16PS's work an instruction):
/// where the CPU has AMX-BF16 and the OS lets the process use it (Linux 5.16+), unless SOFTREG_AMX=no or
/// allow_bf16_amx(false). Their results then have other bits than VDPBF16PS's (sums in another order),
/// still the same on any thread count.
bool bf16_uses_amx();
void allow_bf16_amx(bool allowed);
/// Peak single-core throughput of the bfloat16 products the kernels use (VDPBF16PS, or TDPBF16PS where
/// bf16_uses_amx) in operations per second (a pair's two multiply-adds count 4).
double probe_bf16_flops_per_second(double seconds);
/// Whether the CPU (and the operating system) supports AVX-512 F/BW/DQ/VL with BF16.
bool cpu_has_avx512_bf16();

/// Peak single-core multiply-add throughput with the fast path's SIMD target, in floating-point
/// operations per second: the best of repeated timed loops over `seconds`.
double probe_fma_flops_per_second(double seconds);
/// Read bandwidth of `threads` threads streaming together through a buffer of about `bytes` (the data's
/// own size, clamped to probe_read_size), each its share, in bytes per second: the best of several
/// passes after a first that places the buffer where a data set of that size is read from (a cache it
/// fits in, or memory).
double probe_read_bytes_per_second(std::size_t bytes, int threads);
/// The buffer probe_read_bytes_per_second reads for `bytes`: 1-256 MB, a multiple of 64 bytes.
std::size_t probe_read_size(std::size_t bytes);
/// One core's L1 data cache in bytes, as the C library reports it (32 KiB where it cannot tell).
std::size_t l1_data_cache_bytes();
/// One core's L2 cache in bytes, as the C library reports it (256 KiB where it cannot tell).
std::size_t l2_cache_bytes();

/// The instruction set the fast path runs with on this CPU (e.g. "AVX3" for AVX-512, "AVX2", "SSE4").
std::string simd_target();
/// The instruction sets compiled in and supported by this CPU, best first.
std::vector<std::string> simd_targets_available();
/// The instruction sets compiled in, whatever this CPU supports (the instrumented builds compile fewer).
std::vector<std::string> simd_targets_compiled();
/// Makes the fast path use the named instruction set (one of simd_targets_available()); "" undoes it.
/// For tests and benchmarks that show each path works.
void restrict_simd_targets(const std::string& name);

}  // namespace softreg
