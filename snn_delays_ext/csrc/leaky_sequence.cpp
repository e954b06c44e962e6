// leaky_sequence: snnTorch's Leaky neuron over a whole time-first sequence, the time loop inside
// the op (CPU kernels; schemas declared into the library of delays.cpp, TORCH_LIBRARY_FRAGMENT).
//
// Ops
//   leaky_sequence(x, beta, threshold, reset, surrogate, surrogate_param, reset_delay=True,
//                  detach_reset=False) -> (spk, mem, pre_mem)
//       x (T, B, N) the input current, beta and threshold (N,) (beta clamped by the caller);
//       from a zero membrane, per step as snnTorch 1.0's Leaky from init_leaky():
//         rs = H(m_{t-1} - thr)                               (the late reset, detached)
//         m1 = beta (1 - rs) m_{t-1} + x_t                    (zero)
//              beta m_{t-1} + x_t - rs thr                    (subtract; none: no rs term)
//         s_t = H(m1 - thr)
//         m_t = m1, or with reset_delay=False m1 - (s_t - rs) thr (subtract) / m1 - (s_t - rs) m1
//       (zero), the same-step reset carrying the spike's surrogate gradient unless detach_reset.
//       Reset codes as recurrent_lif (common.h): 0 subtract, 1 zero, 2 none, 3 / 4 subtract / zero
//       once per spike (no late reset; reset_delay=False only). pre_mem: m1 (reset_delay=False,
//       else empty), for the backward pass; the spikes are recomputed from it (or from mem).
//   leaky_sequence_backward(grad_spk, grad_mem, beta, threshold, mem, pre_mem, reset, surrogate,
//                           surrogate_param, reset_delay=True, detach_reset=False)
//       -> (grad_x, grad_beta, grad_threshold)
//       reverse-time surrogate BPTT; grad_beta and grad_threshold (N,) are summed over the batch.
//
// Every (b, n) is independent: threads own ranges of the B * N neurons and run the whole time
// loop over them, reading each step's contiguous slice.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "common.h"
#include "op_checks.h"

namespace snn_delays_ext {

namespace {

constexpr int64_t kGrain = 2048;  // neurons per task

std::tuple<at::Tensor, at::Tensor, at::Tensor> leaky_sequence_cpu(const at::Tensor& x_, const at::Tensor& beta_,
                                                                  const at::Tensor& threshold_, int64_t reset,
                                                                  int64_t surrogate, double sparam,
                                                                  bool reset_delay, bool detach_reset) {
  (void)detach_reset;  // the forward is the same; the backward reads it
  checks::leaky_sequence(x_, beta_, threshold_, reset, surrogate, sparam, reset_delay);
  const bool carries = carries_reset(reset);
  reset = reset_kind(reset);
  const int64_t T = x_.size(0), BN = x_.size(1) * x_.size(2), N = x_.size(2);
  auto x = x_.contiguous();
  auto beta = beta_.contiguous();
  auto thr = threshold_.contiguous();
  auto spk = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto mem = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto pre = reset_delay ? at::empty({0}, x.options()) : at::empty_like(x, at::MemoryFormat::Contiguous);
  if (T == 0 || BN == 0) return {spk, mem, pre};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "leaky_sequence_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* bp = beta.data_ptr<scalar_t>();
    const scalar_t* hp = thr.data_ptr<scalar_t>();
    scalar_t* spkp = spk.data_ptr<scalar_t>();
    scalar_t* memp = mem.data_ptr<scalar_t>();
    scalar_t* prep = reset_delay ? nullptr : pre.data_ptr<scalar_t>();
    at::parallel_for(0, BN, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t t = 0; t < T; ++t) {
        const int64_t row = t * BN;
        for (int64_t idx = lo, j = lo % N; idx < hi; ++idx, j = (j + 1 == N ? 0 : j + 1)) {
          const int64_t off = row + idx;
          const scalar_t mp = t > 0 ? memp[off - BN] : scalar_t(0);
          const bool rs = carries && (mp - hp[j]) > scalar_t(0);
          scalar_t m = leaky_charge<scalar_t>(mp, xp[off], bp[j], hp[j], rs, reset);
          const bool s = (m - hp[j]) > scalar_t(0);
          if (!reset_delay) {  // snnTorch's reset_delay=False: the spike resets in its own step
            prep[off] = m;
            m = lif_reset_same_step<scalar_t>(m, hp[j], rs, s, reset);
          }
          memp[off] = m;
          spkp[off] = s ? scalar_t(1) : scalar_t(0);
        }
      }
    });
  });
  return {spk, mem, pre};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> leaky_sequence_backward_cpu(
    const at::Tensor& grad_spk_, const at::Tensor& grad_mem_, const at::Tensor& beta_, const at::Tensor& threshold_,
    const at::Tensor& mem_, const at::Tensor& pre_mem_, int64_t reset, int64_t surrogate, double sparam,
    bool reset_delay, bool detach_reset) {
  checks::leaky_sequence_backward(grad_spk_, grad_mem_, beta_, threshold_, mem_, pre_mem_, reset, surrogate, sparam,
                                  reset_delay);
  const bool carries = carries_reset(reset);
  reset = reset_kind(reset);
  const int64_t T = mem_.size(0), B = mem_.size(1), N = mem_.size(2), BN = B * N;
  auto mem = mem_.contiguous();
  auto gsp = grad_spk_.contiguous();
  auto gmm = grad_mem_.contiguous();
  auto beta = beta_.contiguous();
  auto thr = threshold_.contiguous();
  auto pre = reset_delay ? at::Tensor() : pre_mem_.contiguous();
  auto gx = at::empty_like(mem, at::MemoryFormat::Contiguous);
  auto gbeta = at::zeros({B, N}, mem.options());
  auto gthr = at::zeros({B, N}, mem.options());
  if (T == 0 || BN == 0) return {gx, gbeta.sum(0), gthr.sum(0)};
  AT_DISPATCH_FLOATING_TYPES(mem.scalar_type(), "leaky_sequence_backward_cpu", [&] {
    const scalar_t* memp = mem.data_ptr<scalar_t>();
    const scalar_t* prep = reset_delay ? nullptr : pre.data_ptr<scalar_t>();
    const scalar_t* gsp_p = gsp.data_ptr<scalar_t>();
    const scalar_t* gmm_p = gmm.data_ptr<scalar_t>();
    const scalar_t* bp = beta.data_ptr<scalar_t>();
    const scalar_t* hp = thr.data_ptr<scalar_t>();
    scalar_t* gxp = gx.data_ptr<scalar_t>();
    scalar_t* gbp = gbeta.data_ptr<scalar_t>();
    scalar_t* ghp = gthr.data_ptr<scalar_t>();
    at::parallel_for(0, BN, kGrain, [&](int64_t lo, int64_t hi) {
      std::vector<scalar_t> carry(hi - lo, scalar_t(0));  // dL/dm_t from step t + 1
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t row = t * BN;
        for (int64_t idx = lo, j = lo % N; idx < hi; ++idx, j = (j + 1 == N ? 0 : j + 1)) {
          const int64_t off = row + idx;
          const scalar_t mp = t > 0 ? memp[off - BN] : scalar_t(0);
          const bool rs = carries && (mp - hp[j]) > scalar_t(0);
          const scalar_t m1 = reset_delay ? memp[off] : prep[off];  // the membrane the spike was tested on
          const bool s = (m1 - hp[j]) > scalar_t(0);
          const LifAdjoint<scalar_t> a =
              lif_adjoint<scalar_t>(m1, hp[j], rs, s, gsp_p[off], gmm_p[off] + carry[idx - lo], reset, surrogate,
                                    sparam, reset_delay, detach_reset, /*zero_clears_base=*/false);
          gxp[off] = a.gbase;
          carry[idx - lo] = a.gbase * bp[j] * leaky_previous<scalar_t>(scalar_t(1), rs, reset);
          gbp[idx] += a.gbase * leaky_previous<scalar_t>(mp, rs, reset);
          ghp[idx] += a.gthr;
        }
      }
    });
  });
  return {gx, gbeta.sum(0), gthr.sum(0)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(snn_delays_ext, m) {
  m.def("leaky_sequence(Tensor x, Tensor beta, Tensor threshold, int reset, int surrogate, float surrogate_param,"
        " bool reset_delay=True, bool detach_reset=False) -> (Tensor, Tensor, Tensor)");
  m.def("leaky_sequence_backward(Tensor grad_spk, Tensor grad_mem, Tensor beta, Tensor threshold, Tensor mem,"
        " Tensor pre_mem, int reset, int surrogate, float surrogate_param, bool reset_delay=True,"
        " bool detach_reset=False) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(snn_delays_ext, CPU, m) {
  m.impl("leaky_sequence", &leaky_sequence_cpu);
  m.impl("leaky_sequence_backward", &leaky_sequence_backward_cpu);
}

}  // namespace snn_delays_ext
