// synaptic_sequence: snnTorch's current-based Synaptic neuron over a whole time-first sequence, the
// time loop inside the op (CPU kernels; schemas declared into the library of delays.cpp,
// TORCH_LIBRARY_FRAGMENT). The model is leaky_sequence.cpp; the step and its adjoint are
// synaptic_step / synaptic_adjoint of common.h, shared with the CUDA kernels.
//
// Ops
//   synaptic_sequence(x, alpha, beta, threshold, reset, surrogate, surrogate_param, reset_delay=True,
//                     detach_reset=False) -> (spk, syn, mem, pre_mem)
//       x (T, B, N) the input current, alpha, beta and threshold (N,) (alpha and beta clamped by
//       the caller); from zero current and membrane, per step as snnTorch 1.0's Synaptic:
//         rs  = H(m_{t-1} - thr)                             (the late reset, detached)
//         syn = alpha syn_{t-1} + x_t
//         m1  = beta m_{t-1} + syn - rs thr                  (subtract; none: no rs term)
//               (beta m_{t-1} + syn) (1 - rs)                (zero)
//         s_t = H(m1 - thr)
//         m_t = m1, or with reset_delay=False m1 - (s_t - rs) thr (subtract) / m1 - (s_t - rs) m1
//       (zero), the same-step reset carrying the spike's surrogate gradient unless detach_reset.
//       Reset codes as leaky_sequence (common.h): 0 subtract, 1 zero, 2 none, 3 / 4 subtract /
//       zero once per spike (no late reset; reset_delay=False only). pre_mem: m1
//       (reset_delay=False, else empty), for the backward pass.
//   synaptic_sequence_backward(grad_spk, grad_syn, grad_mem, alpha, beta, threshold, syn, mem, pre_mem,
//                              reset, surrogate, surrogate_param, reset_delay=True, detach_reset=False)
//       -> (grad_x, grad_alpha, grad_beta, grad_threshold)
//       reverse-time surrogate BPTT; the parameter gradients (N,) are summed over the batch.
//
// Threads own blocks of batch rows and run the whole time loop over them; the loop over a row's
// neurons has the reset, its timing and the surrogate as compile-time constants.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// As leaky_sequence.cpp: let GCC vectorise the selects of the resets.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "common.h"
#include "op_checks.h"

namespace snn_delays_ext {

namespace {

template <int64_t V>
using Code = std::integral_constant<int64_t, V>;

// Calls f(Code<reset kind>{}, std::bool_constant<reset_delay>{}).
template <typename F>
void on_reset(int64_t kind, bool reset_delay, F&& f) {
  const auto go = [&](auto k) { reset_delay ? f(k, std::true_type{}) : f(k, std::false_type{}); };
  kind == kSubtract ? go(Code<kSubtract>{}) : kind == kZero ? go(Code<kZero>{}) : go(Code<kNone>{});
}

// Calls f(Code<surrogate>{}) for the surrogate codes kATan .. kTriangle.
template <typename F, int64_t... S>
void on_surrogate(int64_t surrogate, F&& f, std::integer_sequence<int64_t, S...>) {
  (void)((surrogate == S ? (f(Code<S>{}), true) : false) || ...);
}

// Batch rows per block: about 512 neurons, the step's slices staying in the L1 cache.
inline int64_t block_rows(int64_t N) { return std::max<int64_t>(1, 512 / std::max<int64_t>(1, N)); }

// Runs body(lo, hi, zeros) over blocks of batch rows in parallel; zeros: N zeros (the state
// before the first step).
template <typename scalar_t, typename F>
void over_row_blocks(int64_t B, int64_t N, F&& body) {
  at::parallel_for(0, B, /*grain_size=*/8, [&](int64_t begin, int64_t end) {
    const std::vector<scalar_t> zeros(N, scalar_t(0));
    for (int64_t lo = begin; lo < end; lo += block_rows(N)) body(lo, std::min(end, lo + block_rows(N)), zeros);
  });
}

// One step of one batch row of N neurons (sprev, mprev: the previous step's, zeros at t = 0).
// Every pointer __restrict, so that the loop vectorises without alias checks.
template <typename scalar_t, int64_t kind, bool late>
void forward_row(const scalar_t* __restrict sprev, const scalar_t* __restrict mprev, const scalar_t* __restrict x,
                 const scalar_t* __restrict alpha, const scalar_t* __restrict beta, const scalar_t* __restrict thr,
                 scalar_t* __restrict syn, scalar_t* __restrict mem, scalar_t* __restrict spk,
                 scalar_t* __restrict pre, int64_t N, bool carries) {
  for (int64_t j = 0; j < N; ++j) {
    const SynapticStep<scalar_t> o =
        synaptic_step<scalar_t>(sprev[j], mprev[j], x[j], alpha[j], beta[j], thr[j], carries, kind, late);
    syn[j] = o.syn;
    mem[j] = o.mem;
    spk[j] = o.spk ? scalar_t(1) : scalar_t(0);
    if (!late) pre[j] = o.m1;
  }
}

// One reverse step of one batch row: m1 the membranes the spikes were tested on; cs and cm hold
// dL/dsyn_t and dL/dm_t from step t + 1 and receive those of step t - 1; ga, gb, gh accumulate.
template <typename scalar_t, int64_t kind, bool late, int64_t sg>
void backward_row(const scalar_t* __restrict sprev, const scalar_t* __restrict mprev,
                  const scalar_t* __restrict m1, const scalar_t* __restrict alpha, const scalar_t* __restrict beta,
                  const scalar_t* __restrict thr, const scalar_t* __restrict gs, const scalar_t* __restrict gsyn,
                  const scalar_t* __restrict gm, scalar_t* __restrict cs, scalar_t* __restrict cm,
                  scalar_t* __restrict gx, scalar_t* __restrict ga, scalar_t* __restrict gb, scalar_t* __restrict gh,
                  int64_t N, bool carries, double sparam, bool detach_reset) {
  for (int64_t j = 0; j < N; ++j) {
    const SynapticAdjoint<scalar_t> a =
        synaptic_adjoint<scalar_t>(sprev[j], mprev[j], m1[j], alpha[j], beta[j], thr[j], gs[j], gsyn[j] + cs[j],
                                   gm[j] + cm[j], carries, kind, sg, sparam, late, detach_reset);
    gx[j] = a.gx;
    cs[j] = a.gsyn_prev;
    cm[j] = a.gmem_prev;
    ga[j] += a.galpha;
    gb[j] += a.gbeta;
    gh[j] += a.gthr;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> synaptic_sequence_cpu(
    const at::Tensor& x_, const at::Tensor& alpha_, const at::Tensor& beta_, const at::Tensor& threshold_,
    int64_t reset, int64_t surrogate, double sparam, bool reset_delay, bool detach_reset) {
  (void)detach_reset;  // the forward is the same; the backward reads it
  checks::synaptic_sequence(x_, alpha_, beta_, threshold_, reset, surrogate, sparam, reset_delay);
  const bool carries = carries_reset(reset);
  const int64_t T = x_.size(0), B = x_.size(1), N = x_.size(2), BN = B * N;
  auto x = x_.contiguous();
  auto alpha = alpha_.contiguous();
  auto beta = beta_.contiguous();
  auto thr = threshold_.contiguous();
  auto spk = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto syn = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto mem = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto pre = reset_delay ? at::empty({0}, x.options()) : at::empty_like(x, at::MemoryFormat::Contiguous);
  if (T == 0 || BN == 0) return {spk, syn, mem, pre};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "synaptic_sequence_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* ap = alpha.data_ptr<scalar_t>();
    const scalar_t* bp = beta.data_ptr<scalar_t>();
    const scalar_t* hp = thr.data_ptr<scalar_t>();
    scalar_t* spkp = spk.data_ptr<scalar_t>();
    scalar_t* synp = syn.data_ptr<scalar_t>();
    scalar_t* memp = mem.data_ptr<scalar_t>();
    scalar_t* prep = reset_delay ? nullptr : pre.data_ptr<scalar_t>();
    on_reset(reset_kind(reset), reset_delay, [&](auto kind_c, auto late_c) {
      constexpr int64_t kind = decltype(kind_c)::value;
      constexpr bool late = decltype(late_c)::value;
      over_row_blocks<scalar_t>(B, N, [&](int64_t lo, int64_t hi, const std::vector<scalar_t>& zeros) {
        for (int64_t t = 0; t < T; ++t) {
          for (int64_t b = lo; b < hi; ++b) {
            const int64_t off = t * BN + b * N;
            forward_row<scalar_t, kind, late>(t > 0 ? synp + off - BN : zeros.data(),
                                              t > 0 ? memp + off - BN : zeros.data(), xp + off, ap, bp, hp,
                                              synp + off, memp + off, spkp + off, late ? nullptr : prep + off, N,
                                              carries);
          }
        }
      });
    });
  });
  return {spk, syn, mem, pre};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> synaptic_sequence_backward_cpu(
    const at::Tensor& grad_spk_, const at::Tensor& grad_syn_, const at::Tensor& grad_mem_, const at::Tensor& alpha_,
    const at::Tensor& beta_, const at::Tensor& threshold_, const at::Tensor& syn_, const at::Tensor& mem_,
    const at::Tensor& pre_mem_, int64_t reset, int64_t surrogate, double sparam, bool reset_delay,
    bool detach_reset) {
  checks::synaptic_sequence_backward(grad_spk_, grad_syn_, grad_mem_, alpha_, beta_, threshold_, syn_, mem_,
                                     pre_mem_, reset, surrogate, sparam, reset_delay);
  const bool carries = carries_reset(reset);
  const int64_t T = mem_.size(0), B = mem_.size(1), N = mem_.size(2), BN = B * N;
  auto syn = syn_.contiguous();
  auto mem = mem_.contiguous();
  auto pre = reset_delay ? mem : pre_mem_.contiguous();  // the membranes the spikes were tested on
  auto gsp = grad_spk_.contiguous();
  auto gsy = grad_syn_.contiguous();
  auto gmm = grad_mem_.contiguous();
  auto alpha = alpha_.contiguous();
  auto beta = beta_.contiguous();
  auto thr = threshold_.contiguous();
  auto gx = at::empty_like(mem, at::MemoryFormat::Contiguous);
  auto gpar = at::zeros({3, B, N}, mem.options());  // alpha, beta, threshold per (b, n)
  if (T > 0 && BN > 0) {
    AT_DISPATCH_FLOATING_TYPES(mem.scalar_type(), "synaptic_sequence_backward_cpu", [&] {
      const scalar_t* synp = syn.data_ptr<scalar_t>();
      const scalar_t* memp = mem.data_ptr<scalar_t>();
      const scalar_t* m1p = pre.data_ptr<scalar_t>();
      const scalar_t* gsp_p = gsp.data_ptr<scalar_t>();
      const scalar_t* gsy_p = gsy.data_ptr<scalar_t>();
      const scalar_t* gmm_p = gmm.data_ptr<scalar_t>();
      const scalar_t* ap = alpha.data_ptr<scalar_t>();
      const scalar_t* bp = beta.data_ptr<scalar_t>();
      const scalar_t* hp = thr.data_ptr<scalar_t>();
      scalar_t* gxp = gx.data_ptr<scalar_t>();
      scalar_t* gap = gpar.data_ptr<scalar_t>();
      scalar_t* gbp = gap + BN;
      scalar_t* ghp = gap + 2 * BN;
      on_reset(reset_kind(reset), reset_delay, [&](auto kind_c, auto late_c) {
        on_surrogate(surrogate, [&](auto sg_c) {
          constexpr int64_t kind = decltype(kind_c)::value;
          constexpr bool late = decltype(late_c)::value;
          constexpr int64_t sg = decltype(sg_c)::value;
          over_row_blocks<scalar_t>(B, N, [&](int64_t lo, int64_t hi, const std::vector<scalar_t>& zeros) {
            // dL/dsyn_t and dL/dm_t from step t + 1, per row of the block
            std::vector<scalar_t> carry_syn((hi - lo) * N, scalar_t(0)), carry_mem((hi - lo) * N, scalar_t(0));
            for (int64_t t = T - 1; t >= 0; --t) {
              for (int64_t b = lo; b < hi; ++b) {
                const int64_t off = t * BN + b * N;
                backward_row<scalar_t, kind, late, sg>(
                    t > 0 ? synp + off - BN : zeros.data(), t > 0 ? memp + off - BN : zeros.data(), m1p + off,
                    ap, bp, hp, gsp_p + off, gsy_p + off, gmm_p + off, carry_syn.data() + (b - lo) * N,
                    carry_mem.data() + (b - lo) * N, gxp + off, gap + b * N, gbp + b * N, ghp + b * N, N, carries,
                    sparam, detach_reset);
              }
            }
          });
        }, std::make_integer_sequence<int64_t, kTriangle + 1>{});
      });
    });
  }
  return {gx, gpar[0].sum(0), gpar[1].sum(0), gpar[2].sum(0)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(snn_delays_ext, m) {
  m.def("synaptic_sequence(Tensor x, Tensor alpha, Tensor beta, Tensor threshold, int reset, int surrogate,"
        " float surrogate_param, bool reset_delay=True, bool detach_reset=False) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("synaptic_sequence_backward(Tensor grad_spk, Tensor grad_syn, Tensor grad_mem, Tensor alpha, Tensor beta,"
        " Tensor threshold, Tensor syn, Tensor mem, Tensor pre_mem, int reset, int surrogate, float surrogate_param,"
        " bool reset_delay=True, bool detach_reset=False) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(snn_delays_ext, CPU, m) {
  m.impl("synaptic_sequence", &synaptic_sequence_cpu);
  m.impl("synaptic_sequence_backward", &synaptic_sequence_backward_cpu);
}

}  // namespace snn_delays_ext
