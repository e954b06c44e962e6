// Argument checks of the delay ops (delays.cpp, cuda/delays_cuda.cu): every device
// implementation calls the same function before it touches a pointer. The fake (meta)
// implementations in snn_delays_ext/_op_args.py mirror these checks message for message; the
// fuzz test (tests/_op_fuzz.py) holds the two to the same answers.
//
// Errors name the op and the argument: a TypeError for a dtype, a ValueError for a shape, a
// device, a code or a value out of range.
//
// Value checks (the start lags) read the tensor, so they run for CPU tensors only: on CUDA they
// would synchronise the stream on every call. The CUDA kernels clamp the lags they read
// (safe_lag in common.h), so a start lag out of range reads nothing there instead of memory
// outside the tensors.
#pragma once

#include <ATen/ATen.h>

#include <c10/util/Optional.h>

#include <cmath>
#include <initializer_list>
#include <vector>

#include "common.h"

namespace snn_delays_ext {
namespace checks {

inline void floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
                   ": expected float32 or float64, got ", t.scalar_type());
}

inline void on_device_of(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name,
                         const char* ref_name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), op, ": ", name, ": expected a tensor on ", ref.device(),
                    " (the device of ", ref_name, "), got one on ", t.device());
}

// Same dtype and device as `ref`.
inline void like(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name,
                 const char* ref_name) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": ", name, ": expected dtype ", ref.scalar_type(),
                   " (that of ", ref_name, "), got ", t.scalar_type());
  on_device_of(t, ref, op, name, ref_name);
}

inline void shape(const at::Tensor& t, at::IntArrayRef expected, const char* op, const char* name,
                  const char* layout) {
  TORCH_CHECK_VALUE(t.sizes() == expected, op, ": ", name, ": expected shape ", expected, " ", layout, ", got ",
                    t.sizes());
}

// A time-first (T, B, F) float32/float64 sequence.
inline void sequence(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK_VALUE(x.dim() == 3, op, ": ", name, ": expected a (T, B, F) tensor, got ", x.dim(), " dims");
  floating(x, op, name);
}

// Banded taps: start (int64, `shape`) and vals (x's dtype, `shape` + (W,)), on x's device, the
// start lags in [-kLagLimit, kLagLimit) (read on CPU only) and W <= kLagLimit.
inline void taps(const at::Tensor& start, const at::Tensor& vals, const at::Tensor& x, at::IntArrayRef expected,
                 const char* op, const char* layout) {
  TORCH_CHECK_TYPE(start.scalar_type() == at::kLong, op, ": start: expected int64, got ", start.scalar_type());
  on_device_of(start, x, op, "start", "x");
  shape(start, expected, op, "start", layout);
  like(vals, x, op, "vals", "x");
  TORCH_CHECK_VALUE(vals.dim() == start.dim() + 1 && vals.sizes().slice(0, start.dim()) == expected, op,
                    ": vals: expected shape ", expected, " + (W,) (the shape of start and the taps), got ",
                    vals.sizes());
  TORCH_CHECK_VALUE(vals.size(-1) <= kLagLimit, op, ": vals: expected at most 2^31 taps, got ", vals.size(-1));
  if (start.is_cpu() && start.numel() > 0) {
    const auto mm = at::aminmax(start);
    const int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
    TORCH_CHECK_VALUE(lo >= -kLagLimit && hi < kLagLimit, op, ": start: expected lags in [-2^31, 2^31), got ",
                      "values in [", lo, ", ", hi, "]");
  }
}

inline void code(int64_t value, int64_t lo, int64_t hi, const char* op, const char* name, const char* meaning) {
  TORCH_CHECK_VALUE(value >= lo && value <= hi, op, ": ", name, ": expected ", meaning, ", got ", value);
}

inline void finite(double value, const char* op, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(value), op, ": ", name, ": expected a finite float, got ", value);
}

// ---- the ops ---------------------------------------------------------------------------------

inline void delay_channels(const at::Tensor& x, const at::Tensor& start, const at::Tensor& vals,
                           const char* op = "delay_channels") {
  sequence(x, op, "x");
  taps(start, vals, x, {x.size(2)}, op, "(C,) (the channels of x)");
}

inline void delay_channels_backward(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& start,
                                    const at::Tensor& vals) {
  const char* op = "delay_channels_backward";
  delay_channels(x, start, vals, op);
  like(grad_y, x, op, "grad_y", "x");
  shape(grad_y, x.sizes(), op, "grad_y", "(that of x)");
}

inline void synaptic_delay(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& start,
                           const at::Tensor& vals, const char* op = "synaptic_delay") {
  sequence(x, op, "x");
  like(weight, x, op, "weight", "x");
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(1) == x.size(2), op, ": weight: expected shape (out, ",
                    x.size(2), ") (in = the features of x), got ", weight.sizes());
  taps(start, vals, x, weight.sizes(), op, "(out, in) (that of weight)");
}

inline void synaptic_delay_backward(const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& weight,
                                    const at::Tensor& start, const at::Tensor& vals) {
  const char* op = "synaptic_delay_backward";
  synaptic_delay(x, weight, start, vals, op);
  like(grad_y, x, op, "grad_y", "x");
  shape(grad_y, {x.size(0), x.size(1), weight.size(0)}, op, "grad_y", "(T, B of x, out of weight)");
}

// The layer parameters shared by the forward and the backward op; `ref` is x (forward) or mem
// (backward), (T, B, N).
inline void recurrent_parameters(const at::Tensor& ref, const char* ref_name, const at::Tensor& weight,
                                 const at::Tensor& start, const at::Tensor& vals, const at::Tensor& beta,
                                 const at::Tensor& threshold, int64_t reset, int64_t surrogate, double sparam,
                                 bool synaptic, const char* op) {
  const int64_t N = ref.size(2);
  like(weight, ref, op, "weight", ref_name);
  shape(weight, {N, N}, op, "weight", "(N, N) (N = the neurons of the sequence)");
  if (synaptic) {
    taps(start, vals, ref, {N, N}, op, "(N, N) (synaptic delays)");
  } else {
    taps(start, vals, ref, {N}, op, "(N,) (axonal delays)");
  }
  like(beta, ref, op, "beta", ref_name);
  shape(beta, {N}, op, "beta", "(N,)");
  like(threshold, ref, op, "threshold", ref_name);
  shape(threshold, {N}, op, "threshold", "(N,)");
  code(reset, kSubtract, kOnceOffset + kZero, op, "reset",
       "0 (subtract), 1 (zero), 2 (none), 3 (subtract once) or 4 (zero once)");
  code(surrogate, kATan, kTriangle, op, "surrogate", "a surrogate code in [0, 6]");
  finite(sparam, op, "surrogate_param");
}

// rec_scale: a (B, N) factor on the recurrent synaptic input (recurrent dropout), x's dtype and device
inline void recurrent_scale(const c10::optional<at::Tensor>& rec_scale, const at::Tensor& x, const char* op,
                            const char* ref_name) {
  if (!rec_scale.has_value() || !rec_scale->defined()) return;
  like(*rec_scale, x, op, "rec_scale", ref_name);
  shape(*rec_scale, {x.size(1), x.size(2)}, op, "rec_scale", "(B, N)");
}

// reset codes 3, 4 (once per spike, spikingjelly's) are same-step resets
inline void once_needs_same_step(int64_t reset, bool reset_delay, const char* op) {
  TORCH_CHECK_VALUE(carries_reset(reset) || !reset_delay, op, ": reset: codes 3 and 4 (reset once, in the spike's step) "
                    "need reset_delay=False, got reset ", reset, " with reset_delay=True");
}

inline void recurrent_lif(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                          const at::Tensor& start, const at::Tensor& vals, const at::Tensor& beta,
                          const at::Tensor& threshold, int64_t reset, int64_t surrogate, double sparam,
                          bool synaptic, const c10::optional<at::Tensor>& rec_scale = c10::nullopt,
                          bool reset_delay = true) {
  const char* op = "recurrent_lif";
  sequence(x, op, "x");
  recurrent_parameters(x, "x", weight, start, vals, beta, threshold, reset, surrogate, sparam, synaptic, op);
  if (bias.has_value() && bias->defined()) {
    like(*bias, x, op, "bias", "x");
    shape(*bias, {x.size(2)}, op, "bias", "(N,)");
  }
  recurrent_scale(rec_scale, x, op, "x");
  once_needs_same_step(reset, reset_delay, op);
}

inline void recurrent_lif_backward(const at::Tensor& grad_spk, const at::Tensor& grad_mem, const at::Tensor& weight,
                                   const at::Tensor& start, const at::Tensor& vals, const at::Tensor& beta,
                                   const at::Tensor& threshold, const at::Tensor& mem, const at::Tensor& spk_bits,
                                   const at::Tensor& pre_mem, int64_t reset, int64_t surrogate, double sparam,
                                   bool synaptic, bool reset_delay,
                                   const c10::optional<at::Tensor>& rec_scale = c10::nullopt) {
  const char* op = "recurrent_lif_backward";
  sequence(mem, op, "mem");
  recurrent_parameters(mem, "mem", weight, start, vals, beta, threshold, reset, surrogate, sparam, synaptic, op);
  like(grad_spk, mem, op, "grad_spk", "mem");
  shape(grad_spk, mem.sizes(), op, "grad_spk", "(that of mem)");
  like(grad_mem, mem, op, "grad_mem", "mem");
  shape(grad_mem, mem.sizes(), op, "grad_mem", "(that of mem)");
  TORCH_CHECK_TYPE(spk_bits.scalar_type() == at::kByte, op, ": spk_bits: expected uint8, got ",
                   spk_bits.scalar_type());
  on_device_of(spk_bits, mem, op, "spk_bits", "mem");
  shape(spk_bits, mem.sizes(), op, "spk_bits", "(that of mem)");
  if (!reset_delay) {  // the membranes the spikes were tested on, from the forward op
    like(pre_mem, mem, op, "pre_mem", "mem");
    shape(pre_mem, mem.sizes(), op, "pre_mem", "(that of mem, with reset_delay=False)");
  }
  recurrent_scale(rec_scale, mem, op, "mem");
  once_needs_same_step(reset, reset_delay, op);
}

// ---- leaky_sequence (leaky_sequence.cpp): snnTorch's Leaky over a sequence --------------------
// The neuron parameters shared by the forward and the backward op; `ref` is x or mem, (T, B, N).
inline void leaky_parameters(const at::Tensor& ref, const char* ref_name, const at::Tensor& beta,
                             const at::Tensor& threshold, int64_t reset, int64_t surrogate, double sparam,
                             bool reset_delay, const char* op) {
  like(beta, ref, op, "beta", ref_name);
  shape(beta, {ref.size(2)}, op, "beta", "(N,) (N = the neurons of the sequence)");
  like(threshold, ref, op, "threshold", ref_name);
  shape(threshold, {ref.size(2)}, op, "threshold", "(N,) (N = the neurons of the sequence)");
  code(reset, kSubtract, kOnceOffset + kZero, op, "reset",
       "0 (subtract), 1 (zero), 2 (none), 3 (subtract once) or 4 (zero once)");
  code(surrogate, kATan, kTriangle, op, "surrogate", "a surrogate code in [0, 6]");
  finite(sparam, op, "surrogate_param");
  once_needs_same_step(reset, reset_delay, op);
}

inline void leaky_sequence(const at::Tensor& x, const at::Tensor& beta, const at::Tensor& threshold, int64_t reset,
                           int64_t surrogate, double sparam, bool reset_delay) {
  const char* op = "leaky_sequence";
  sequence(x, op, "x");
  leaky_parameters(x, "x", beta, threshold, reset, surrogate, sparam, reset_delay, op);
}

inline void leaky_sequence_backward(const at::Tensor& grad_spk, const at::Tensor& grad_mem, const at::Tensor& beta,
                                    const at::Tensor& threshold, const at::Tensor& mem, const at::Tensor& pre_mem,
                                    int64_t reset, int64_t surrogate, double sparam, bool reset_delay) {
  const char* op = "leaky_sequence_backward";
  sequence(mem, op, "mem");
  leaky_parameters(mem, "mem", beta, threshold, reset, surrogate, sparam, reset_delay, op);
  like(grad_spk, mem, op, "grad_spk", "mem");
  shape(grad_spk, mem.sizes(), op, "grad_spk", "(that of mem)");
  like(grad_mem, mem, op, "grad_mem", "mem");
  shape(grad_mem, mem.sizes(), op, "grad_mem", "(that of mem)");
  if (!reset_delay) {  // the membranes the spikes were tested on, from the forward op
    like(pre_mem, mem, op, "pre_mem", "mem");
    shape(pre_mem, mem.sizes(), op, "pre_mem", "(that of mem, with reset_delay=False)");
  }
}

// ---- synaptic_sequence (synaptic_sequence.cpp): snnTorch's Synaptic over a sequence ------------
inline void synaptic_parameters(const at::Tensor& ref, const char* ref_name, const at::Tensor& alpha,
                                const at::Tensor& beta, const at::Tensor& threshold, int64_t reset,
                                int64_t surrogate, double sparam, bool reset_delay, const char* op) {
  like(alpha, ref, op, "alpha", ref_name);
  shape(alpha, {ref.size(2)}, op, "alpha", "(N,) (N = the neurons of the sequence)");
  leaky_parameters(ref, ref_name, beta, threshold, reset, surrogate, sparam, reset_delay, op);
}

inline void synaptic_sequence(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& beta,
                              const at::Tensor& threshold, int64_t reset, int64_t surrogate, double sparam,
                              bool reset_delay) {
  const char* op = "synaptic_sequence";
  sequence(x, op, "x");
  synaptic_parameters(x, "x", alpha, beta, threshold, reset, surrogate, sparam, reset_delay, op);
}

inline void synaptic_sequence_backward(const at::Tensor& grad_spk, const at::Tensor& grad_syn,
                                       const at::Tensor& grad_mem, const at::Tensor& alpha, const at::Tensor& beta,
                                       const at::Tensor& threshold, const at::Tensor& syn, const at::Tensor& mem,
                                       const at::Tensor& pre_mem, int64_t reset, int64_t surrogate, double sparam,
                                       bool reset_delay) {
  const char* op = "synaptic_sequence_backward";
  sequence(mem, op, "mem");
  synaptic_parameters(mem, "mem", alpha, beta, threshold, reset, surrogate, sparam, reset_delay, op);
  const auto as_mem = [&](const at::Tensor& t, const char* name) {
    like(t, mem, op, name, "mem");
    shape(t, mem.sizes(), op, name, "(that of mem)");
  };
  as_mem(grad_spk, "grad_spk");
  as_mem(grad_syn, "grad_syn");
  as_mem(grad_mem, "grad_mem");
  as_mem(syn, "syn");
  if (!reset_delay) {  // the membranes the spikes were tested on, from the forward op
    like(pre_mem, mem, op, "pre_mem", "mem");
    shape(pre_mem, mem.sizes(), op, "pre_mem", "(that of mem, with reset_delay=False)");
  }
}

}  // namespace checks
}  // namespace snn_delays_ext
