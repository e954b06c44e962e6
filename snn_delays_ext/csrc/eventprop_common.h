// Host-side helpers shared by the CPU (eventprop.cpp) and CUDA (cuda/eventprop_cuda.cu) kernels
// of the EventProp ops: argument checks, the rounding of the delays and the index dtype.
//
// The model and the adjoint are documented in snn_delays_ext/eventprop/functional.py; the
// kernels follow that reference line by line (same arithmetic in the same order where it
// matters for bit-exact spikes).
#pragma once

#include <ATen/ATen.h>

#include <c10/util/Optional.h>

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

inline void check_forward_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& delays,
                               const c10::optional<at::Tensor>& rec_weight,
                               const c10::optional<at::Tensor>& rec_delays, int64_t max_delay) {
  TORCH_CHECK(x.dim() == 3, "x: expected a (T, B, F) spike tensor, got ", x.dim(), " dims");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "x: expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == x.size(2), "weight: expected shape (N, ", x.size(2),
              "), got ", weight.sizes());
  TORCH_CHECK(delays.sizes() == weight.sizes(), "delays: expected shape ", weight.sizes(), ", got ",
              delays.sizes());
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() && delays.scalar_type() == x.scalar_type(),
              "weight, delays: expected dtype ", x.scalar_type(), " (the dtype of x), got ",
              weight.scalar_type(), " and ", delays.scalar_type());
  TORCH_CHECK(weight.device() == x.device() && delays.device() == x.device(),
              "weight, delays: expected tensors on ", x.device(), " (the device of x)");
  const bool has_rw = rec_weight.has_value() && rec_weight->defined();
  const bool has_rd = rec_delays.has_value() && rec_delays->defined();
  TORCH_CHECK(has_rw == has_rd, "rec_weight, rec_delays: expected both or neither");
  if (has_rw) {
    const int64_t N = weight.size(0);
    TORCH_CHECK(rec_weight->dim() == 2 && rec_weight->size(0) == N && rec_weight->size(1) == N,
                "rec_weight: expected shape (", N, ", ", N, "), got ", rec_weight->sizes());
    TORCH_CHECK(rec_delays->sizes() == rec_weight->sizes(), "rec_delays: expected shape (", N, ", ", N,
                "), got ", rec_delays->sizes());
    TORCH_CHECK(rec_weight->scalar_type() == x.scalar_type() && rec_delays->scalar_type() == x.scalar_type(),
                "rec_weight, rec_delays: expected dtype ", x.scalar_type());
    TORCH_CHECK(rec_weight->device() == x.device() && rec_delays->device() == x.device(),
                "rec_weight, rec_delays: expected tensors on ", x.device());
  }
  TORCH_CHECK(max_delay >= 1 && max_delay < (int64_t(1) << 30), "max_delay: expected an int in [1, 2^30), got ",
              max_delay);
}

inline void check_backward_args(const at::Tensor& grad_spk, const at::Tensor& grad_mem, const at::Tensor& x_idx,
                                const at::Tensor& s_idx, const at::Tensor& s_rise, const at::Tensor& weight,
                                const at::Tensor& d_ff, const c10::optional<at::Tensor>& rec_weight,
                                const c10::optional<at::Tensor>& d_rec, int64_t T, int64_t B, int64_t max_delay) {
  const int64_t N = weight.size(0);
  TORCH_CHECK(weight.dim() == 2, "weight: expected (N, F), got ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kDouble,
              "weight: expected float32 or float64, got ", weight.scalar_type());
  TORCH_CHECK(d_ff.sizes() == weight.sizes() && !at::isFloatingType(d_ff.scalar_type()),
              "d_ff: expected integer delays of shape ", weight.sizes(), ", got ", d_ff.scalar_type(), " ",
              d_ff.sizes());
  for (const at::Tensor* g : {&grad_spk, &grad_mem}) {
    TORCH_CHECK(g->numel() == 0 || (g->dim() == 3 && g->size(0) == T && g->size(1) == B && g->size(2) == N),
                "grad_spk, grad_mem: expected (", T, ", ", B, ", ", N, ") or empty, got ", g->sizes());
    TORCH_CHECK(g->numel() == 0 || g->scalar_type() == weight.scalar_type(),
                "grad_spk, grad_mem: expected dtype ", weight.scalar_type());
  }
  TORCH_CHECK(x_idx.dim() == 1 && s_idx.dim() == 1 && s_rise.dim() == 1 && s_idx.numel() == s_rise.numel(),
              "x_idx, s_idx, s_rise: expected 1-d tensors, s_idx and s_rise of the same length");
  TORCH_CHECK(!at::isFloatingType(x_idx.scalar_type()) && !at::isFloatingType(s_idx.scalar_type()),
              "x_idx, s_idx: expected integer indices");
  TORCH_CHECK(s_rise.scalar_type() == weight.scalar_type(), "s_rise: expected dtype ", weight.scalar_type());
  const bool has_rw = rec_weight.has_value() && rec_weight->defined();
  const bool has_rd = d_rec.has_value() && d_rec->defined();
  TORCH_CHECK(has_rw == has_rd, "rec_weight, d_rec: expected both or neither");
  if (has_rw) {
    TORCH_CHECK(rec_weight->dim() == 2 && rec_weight->size(0) == N && rec_weight->size(1) == N,
                "rec_weight: expected (", N, ", ", N, "), got ", rec_weight->sizes());
    TORCH_CHECK(d_rec->sizes() == rec_weight->sizes() && !at::isFloatingType(d_rec->scalar_type()),
                "d_rec: expected integer delays of shape (", N, ", ", N, ")");
    TORCH_CHECK(rec_weight->scalar_type() == weight.scalar_type(), "rec_weight: expected dtype ",
                weight.scalar_type());
  }
  TORCH_CHECK(T >= 0 && B >= 0, "T, B: expected non-negative sizes, got ", T, ", ", B);
  TORCH_CHECK(max_delay >= 1 && max_delay < (int64_t(1) << 30), "max_delay: expected an int in [1, 2^30), got ",
              max_delay);
}

}  // namespace eventprop
}  // namespace snn_delays_ext
