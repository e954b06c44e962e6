// Host-side helpers shared by the CPU (eventprop.cpp) and CUDA (cuda/eventprop_cuda.cu) kernels
// of the EventProp ops: argument checks, the rounding of the delays and the index dtype.
//
// The model and the adjoint are documented in snn_delays_ext/eventprop/functional.py; the
// kernels follow that reference line by line (same arithmetic in the same order where it
// matters for bit-exact spikes).
#pragma once

#include <ATen/ATen.h>

#include <c10/util/Optional.h>

#include <cmath>
#include <initializer_list>
#include <utility>
#include <vector>

#include "op_checks.h"

#include <limits>

namespace snn_delays_ext {
namespace eventprop {

// Flat spike indices fit in int32 unless the (T, B, max(N, F)) grid is larger (as in the
// reference's _index_dtype).
inline at::ScalarType index_dtype(int64_t T, int64_t B, int64_t N, int64_t F) {
  const int64_t total = T * B * (N > F ? N : F);
  return total < std::numeric_limits<int32_t>::max() ? at::kInt : at::kLong;
}

// Length of the per-element ring buffers: the smallest power of two >= max_delay + 1, so that
// slot = step & (L - 1) needs no branch.
inline int64_t ring_len(int64_t max_delay) {
  int64_t L = 1;
  while (L < max_delay + 1) L <<= 1;
  return L;
}

// Clamp to [lo, max_delay], round halves up (floor(d + 0.5), in the delays' dtype, as
// rounded_delays in Python) and return int32 lags.
inline at::Tensor round_delays(const at::Tensor& d, int64_t lo, int64_t max_delay) {
  return at::floor(d.clamp(static_cast<double>(lo), static_cast<double>(max_delay)) + 0.5).to(at::kInt);
}

// The layer constants, as EventPropConfig checks them in Python.
inline void check_constants(const char* op, int64_t max_delay, double alpha, double beta, double threshold,
                            double syn_scale, double min_denominator, double reg_strength, double reg_target) {
  TORCH_CHECK_VALUE(max_delay >= 1 && max_delay < (int64_t(1) << 30), op,
                    ": max_delay: expected an int in [1, 2^30), got ", max_delay);
  TORCH_CHECK_VALUE(alpha > 0.0 && alpha < 1.0, op, ": alpha: expected a decay in (0, 1), got ", alpha);
  TORCH_CHECK_VALUE(beta > 0.0 && beta < 1.0, op, ": beta: expected a decay in (0, 1), got ", beta);
  TORCH_CHECK_VALUE(threshold > 0.0, op, ": threshold: expected a float > 0 (or inf), got ", threshold);
  TORCH_CHECK_VALUE(std::isfinite(syn_scale) && syn_scale > 0.0, op, ": syn_scale: expected a finite float > 0, got ",
                    syn_scale);
  TORCH_CHECK_VALUE(std::isfinite(min_denominator) && min_denominator > 0.0, op,
                    ": min_denominator: expected a finite float > 0, got ", min_denominator);
  TORCH_CHECK_VALUE(std::isfinite(reg_strength) && reg_strength >= 0.0, op,
                    ": reg_strength: expected a finite float >= 0, got ", reg_strength);
  TORCH_CHECK_VALUE(std::isfinite(reg_target) && reg_target >= 0.0, op,
                    ": reg_target: expected a finite float >= 0, got ", reg_target);
}

// Integer tensors whose values must lie in [lo, hi]: one read-back for all of them (the
// EventProp ops synchronise anyway: their outputs have data-dependent sizes).
struct IndexRange {
  const at::Tensor* t;
  const char* name;
  int64_t lo, hi;
  const char* meaning;
};

inline void check_index_ranges(const char* op, std::initializer_list<IndexRange> ranges) {
  std::vector<at::Tensor> ends;
  std::vector<const IndexRange*> used;
  for (const auto& r : ranges) {
    if (!r.t->defined() || r.t->numel() == 0) continue;
    const auto mm = at::aminmax(*r.t);
    ends.push_back(std::get<0>(mm).to(at::kLong).reshape({1}));
    ends.push_back(std::get<1>(mm).to(at::kLong).reshape({1}));
    used.push_back(&r);
  }
  if (used.empty()) return;
  const auto host = at::cat(ends).cpu();
  const int64_t* p = host.data_ptr<int64_t>();
  for (size_t k = 0; k < used.size(); ++k) {
    const IndexRange& r = *used[k];
    TORCH_CHECK_VALUE(p[2 * k] >= r.lo && p[2 * k + 1] <= r.hi, op, ": ", r.name, ": expected ", r.meaning, " in [",
                      r.lo, ", ", r.hi, "], got values in [", p[2 * k], ", ", p[2 * k + 1], "]");
  }
}

inline void check_forward_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& delays,
                               const c10::optional<at::Tensor>& rec_weight,
                               const c10::optional<at::Tensor>& rec_delays, int64_t max_delay, double alpha,
                               double beta, double threshold, double syn_scale, double min_denominator,
                               double reg_strength, double reg_target, int64_t max_spikes) {
  const char* op = "eventprop_lif_forward";
  checks::sequence(x, op, "x");
  checks::like(weight, x, op, "weight", "x");
  TORCH_CHECK_VALUE(weight.dim() == 2 && weight.size(1) == x.size(2), op, ": weight: expected shape (N, ",
                    x.size(2), ") (F = the features of x), got ", weight.sizes());
  checks::like(delays, x, op, "delays", "x");
  checks::shape(delays, weight.sizes(), op, "delays", "(that of weight)");
  const bool has_rw = rec_weight.has_value() && rec_weight->defined();
  const bool has_rd = rec_delays.has_value() && rec_delays->defined();
  TORCH_CHECK_VALUE(has_rw == has_rd, op, ": rec_weight, rec_delays: expected both or neither, got ",
                    has_rw ? "rec_weight only" : "rec_delays only");
  if (has_rw) {
    const int64_t N = weight.size(0);
    checks::like(*rec_weight, x, op, "rec_weight", "x");
    checks::shape(*rec_weight, {N, N}, op, "rec_weight", "(N, N) (N = the rows of weight)");
    checks::like(*rec_delays, x, op, "rec_delays", "x");
    checks::shape(*rec_delays, {N, N}, op, "rec_delays", "(N, N) (that of rec_weight)");
  }
  check_constants(op, max_delay, alpha, beta, threshold, syn_scale, min_denominator, reg_strength, reg_target);
  TORCH_CHECK_VALUE(max_spikes >= -1, op, ": max_spikes: expected -1 (no limit) or a count >= 0, got ", max_spikes);
}

// The input spikes are binary: every non-zero entry (x_idx, from at::nonzero) is 1. Reads only
// the spikes, so it costs O(spikes), not a pass over x.
inline void check_binary(const at::Tensor& x, const at::Tensor& x_idx) {
  if (x_idx.numel() == 0) return;
  const auto bad = x.reshape({-1}).index_select(0, x_idx.to(at::kLong)).ne(1).any().item<bool>();
  TORCH_CHECK_VALUE(!bad, "eventprop_lif_forward: x: expected binary spikes (0 or 1), got other values");
}

// A loss gradient of spk or mem as the kernels read it: in place through its strides when its
// neuron stride is 0 or 1 (a loss that sums or averages hands over a broadcast, stride-0 tensor,
// which is never densified: a dense (T, B, N) tensor less at the backward's peak), else a
// contiguous copy (the kernels read along neurons). Empty: no gradient.
inline at::Tensor readable_grad(const at::Tensor& g) {
  if (g.numel() == 0 || g.stride(2) == 0 || g.stride(2) == 1) return g;
  return g.contiguous();
}

inline void check_backward_args(const at::Tensor& grad_spk, const at::Tensor& grad_mem, const at::Tensor& x_idx,
                                const at::Tensor& s_idx, const at::Tensor& s_rise, const at::Tensor& weight,
                                const at::Tensor& d_ff, const c10::optional<at::Tensor>& rec_weight,
                                const c10::optional<at::Tensor>& d_rec, int64_t T, int64_t B, int64_t max_delay,
                                double alpha, double beta, double threshold, double syn_scale,
                                double min_denominator, double reg_strength, double reg_target) {
  const char* op = "eventprop_lif_backward";
  TORCH_CHECK_VALUE(weight.dim() == 2, op, ": weight: expected a (N, F) tensor, got ", weight.dim(), " dims");
  checks::floating(weight, op, "weight");
  const int64_t N = weight.size(0), F = weight.size(1);
  TORCH_CHECK_VALUE(T >= 0 && B >= 0, op, ": T, B: expected sizes >= 0, got ", T, ", ", B);
  TORCH_CHECK_TYPE(at::isIntegralType(d_ff.scalar_type(), false), op, ": d_ff: expected integer delays, got ",
                   d_ff.scalar_type());
  checks::on_device_of(d_ff, weight, op, "d_ff", "weight");
  checks::shape(d_ff, weight.sizes(), op, "d_ff", "(that of weight)");
  const std::pair<const at::Tensor*, const char*> grads[] = {{&grad_spk, "grad_spk"}, {&grad_mem, "grad_mem"}};
  for (const auto& g : grads) {
    if (g.first->numel() == 0) continue;  // no gradient
    checks::like(*g.first, weight, op, g.second, "weight");
    checks::shape(*g.first, {T, B, N}, op, g.second, "(T, B, N) or empty");
  }
  for (const auto& idx : {std::make_pair(&x_idx, "x_idx"), std::make_pair(&s_idx, "s_idx")}) {
    TORCH_CHECK_TYPE(at::isIntegralType(idx.first->scalar_type(), false), op, ": ", idx.second,
                     ": expected integer indices, got ", idx.first->scalar_type());
    TORCH_CHECK_VALUE(idx.first->dim() == 1, op, ": ", idx.second, ": expected a 1-d tensor, got ",
                      idx.first->dim(), " dims");
    checks::on_device_of(*idx.first, weight, op, idx.second, "weight");
  }
  checks::like(s_rise, weight, op, "s_rise", "weight");
  checks::shape(s_rise, s_idx.sizes(), op, "s_rise", "(that of s_idx: one rise per output spike)");
  const bool has_rw = rec_weight.has_value() && rec_weight->defined();
  const bool has_rd = d_rec.has_value() && d_rec->defined();
  TORCH_CHECK_VALUE(has_rw == has_rd, op, ": rec_weight, d_rec: expected both or neither, got ",
                    has_rw ? "rec_weight only" : "d_rec only");
  if (has_rw) {
    checks::like(*rec_weight, weight, op, "rec_weight", "weight");
    checks::shape(*rec_weight, {N, N}, op, "rec_weight", "(N, N) (N = the rows of weight)");
    TORCH_CHECK_TYPE(at::isIntegralType(d_rec->scalar_type(), false), op, ": d_rec: expected integer delays, got ",
                     d_rec->scalar_type());
    checks::on_device_of(*d_rec, weight, op, "d_rec", "weight");
    checks::shape(*d_rec, {N, N}, op, "d_rec", "(that of rec_weight)");
  }
  check_constants(op, max_delay, alpha, beta, threshold, syn_scale, min_denominator, reg_strength, reg_target);
  const at::Tensor none;
  check_index_ranges(op, {{&x_idx, "x_idx", 0, T * B * F - 1, "flat (T, B, F) indices"},
                          {&s_idx, "s_idx", 0, T * B * N - 1, "flat (T, B, N) indices"},
                          {&d_ff, "d_ff", 0, max_delay, "delays"},
                          {has_rw ? &*d_rec : &none, "d_rec", 1, max_delay, "delays"}});
}

}  // namespace eventprop
}  // namespace snn_delays_ext
