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
// Every (b, n) is independent: threads own blocks of batch rows and run the whole time loop over
// them; the loop over a row's neurons has the reset, its timing and the surrogate as compile-time
// constants (no branch on them per neuron) and reads contiguous memory.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

// GCC vectorises the neuron loops only if it may compute both sides of the reset's selects, which
// it does not do for floating point by default in case an operation traps (-ftrapping-math).
// Nothing here installs a trap handler and the values are the same: allow it for the code below,
// the step helpers of common.h included (functions under other options are not inlined).
// Clang ignores floating-point exceptions by default.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "common.h"
#include "op_checks.h"


namespace snn_delays_ext {

namespace {

constexpr int64_t kGrainRows = 8;  // batch rows per task (at least)

// Rows of N neurons run through the whole time loop together: about 512 neurons, so that the
// step's slices of the sequences stay in the L1 cache from one step to the next.
inline int64_t rows_per_block(int64_t N) { return std::max<int64_t>(1, 512 / std::max<int64_t>(1, N)); }

template <int64_t V>
using Const = std::integral_constant<int64_t, V>;

// One step of one batch row of N neurons (mprev: the previous step's membranes, zeros at t = 0).
template <typename scalar_t, int64_t kind, bool late>
void forward_row(const scalar_t* __restrict mprev, const scalar_t* __restrict x,
                              const scalar_t* __restrict beta, const scalar_t* __restrict thr,
                              scalar_t* __restrict mem, scalar_t* __restrict spk, scalar_t* __restrict pre,
                              int64_t N, bool carries) {
  for (int64_t j = 0; j < N; ++j) {
    const scalar_t mp = mprev[j];
    const bool rs = carries && (mp - thr[j]) > scalar_t(0);
    scalar_t m = leaky_charge<scalar_t>(mp, x[j], beta[j], thr[j], rs, kind);
    const bool s = (m - thr[j]) > scalar_t(0);
    if (!late) {  // snnTorch's reset_delay=False: the spike resets in its own step
      pre[j] = m;
      m = lif_reset_same_step<scalar_t>(m, thr[j], rs, s, kind);
    }
    mem[j] = m;
    spk[j] = s ? scalar_t(1) : scalar_t(0);
  }
}

// One reverse step of one batch row: m1 the membranes the spikes were tested on; carry holds
// dL/dm_t from step t + 1 and receives dL/dm_{t-1}; gbeta and gthr accumulate.
template <typename scalar_t, int64_t kind, bool late, int64_t sg>
void backward_row(const scalar_t* __restrict mprev, const scalar_t* __restrict m1,
                               const scalar_t* __restrict gs, const scalar_t* __restrict gm,
                               const scalar_t* __restrict beta, const scalar_t* __restrict thr,
                               scalar_t* __restrict carry, scalar_t* __restrict gx, scalar_t* __restrict gbeta,
                               scalar_t* __restrict gthr, int64_t N, bool carries, double sparam, bool detach_reset) {
  for (int64_t j = 0; j < N; ++j) {
    const scalar_t mp = mprev[j];
    const bool rs = carries && (mp - thr[j]) > scalar_t(0);
    const bool s = (m1[j] - thr[j]) > scalar_t(0);
    const LifAdjoint<scalar_t> a = lif_adjoint<scalar_t>(m1[j], thr[j], rs, s, gs[j], gm[j] + carry[j], kind, sg,
                                                         sparam, late, detach_reset, /*zero_clears_base=*/false);
    gx[j] = a.gbase;
    carry[j] = a.gbase * beta[j] * leaky_previous<scalar_t>(scalar_t(1), rs, kind);
    gbeta[j] += a.gbase * leaky_previous<scalar_t>(mp, rs, kind);
    gthr[j] += a.gthr;
  }
}

// Calls f(Const<reset kind>, Const<reset_delay>) so that the step helpers' branches on the reset
// fold at compile time and the loop over the neurons of a row vectorises.
template <typename F>
void with_reset(int64_t kind, bool reset_delay, F&& f) {
  auto timing = [&](auto k) {
    if (reset_delay) f(k, Const<1>{}); else f(k, Const<0>{});
  };
  if (kind == kSubtract) timing(Const<kSubtract>{});
  else if (kind == kZero) timing(Const<kZero>{});
  else timing(Const<kNone>{});
}

// Calls f(Const<surrogate kind>) (its derivative then inlines into the adjoint loop).
template <typename F>
void with_surrogate(int64_t surrogate, F&& f) {
  switch (surrogate) {
    case kATan: f(Const<kATan>{}); break;
    case kFastSigmoid: f(Const<kFastSigmoid>{}); break;
    case kSigmoid: f(Const<kSigmoid>{}); break;
    case kTriangular: f(Const<kTriangular>{}); break;
    case kStraightThrough: f(Const<kStraightThrough>{}); break;
    case kHeaviside: f(Const<kHeaviside>{}); break;
    default: f(Const<kTriangle>{}); break;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> leaky_sequence_cpu(const at::Tensor& x_, const at::Tensor& beta_,
                                                                  const at::Tensor& threshold_, int64_t reset,
                                                                  int64_t surrogate, double sparam,
                                                                  bool reset_delay, bool detach_reset) {
  (void)detach_reset;  // the forward is the same; the backward reads it
  checks::leaky_sequence(x_, beta_, threshold_, reset, surrogate, sparam, reset_delay);
  const bool carries = carries_reset(reset);
  const int64_t T = x_.size(0), B = x_.size(1), N = x_.size(2), BN = B * N;
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
    with_reset(reset_kind(reset), reset_delay, [&](auto kind_c, auto delay_c) {
      constexpr int64_t kind = decltype(kind_c)::value;
      constexpr bool late = decltype(delay_c)::value != 0;
      at::parallel_for(0, B, kGrainRows, [&](int64_t lo_, int64_t hi_) {
        const std::vector<scalar_t> zeros(N, scalar_t(0));  // the membrane before the first step
        for (int64_t lo = lo_, hi; lo < hi_; lo = hi) {  // blocks of rows small enough for the L1 cache
          hi = std::min(hi_, lo + rows_per_block(N));
          for (int64_t t = 0; t < T; ++t) {
            for (int64_t b = lo; b < hi; ++b) {
              const int64_t off = t * BN + b * N;
              forward_row<scalar_t, kind, late>(t > 0 ? memp + off - BN : zeros.data(), xp + off, bp, hp,
                                                memp + off, spkp + off, late ? nullptr : prep + off, N, carries);
            }
          }
        }
      });
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
    with_reset(reset_kind(reset), reset_delay, [&](auto kind_c, auto delay_c) {
      with_surrogate(surrogate, [&](auto surrogate_c) {
        constexpr int64_t kind = decltype(kind_c)::value;
        constexpr bool late = decltype(delay_c)::value != 0;
        constexpr int64_t sg = decltype(surrogate_c)::value;
        at::parallel_for(0, B, kGrainRows, [&](int64_t lo_, int64_t hi_) {
          const std::vector<scalar_t> zeros(N, scalar_t(0));  // the membrane before the first step
          std::vector<scalar_t> carry_v(std::min(hi_ - lo_, rows_per_block(N)) * N);  // dL/dm_t from step t + 1
          for (int64_t lo = lo_, hi; lo < hi_; lo = hi) {  // blocks of rows small enough for the L1 cache
            hi = std::min(hi_, lo + rows_per_block(N));
            std::fill(carry_v.begin(), carry_v.end(), scalar_t(0));
            for (int64_t t = T - 1; t >= 0; --t) {
              for (int64_t b = lo; b < hi; ++b) {
                const int64_t off = t * BN + b * N;
                backward_row<scalar_t, kind, late, sg>(
                    t > 0 ? memp + off - BN : zeros.data(), late ? memp + off : prep + off, gsp_p + off,
                    gmm_p + off, bp, hp, carry_v.data() + (b - lo) * N, gxp + off, gbp + b * N, ghp + b * N, N,
                    carries, sparam, detach_reset);
              }
            }
          }
        });
      });
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
