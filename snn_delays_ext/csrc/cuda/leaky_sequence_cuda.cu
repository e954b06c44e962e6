// CUDA kernels of the leaky_sequence ops (schemas and CPU kernels in ../leaky_sequence.cpp).
//
// One thread per neuron (b, n) with the whole time loop inside: the neurons are independent,
// and at each step a warp reads 32 consecutive values of the (T, B, N) sequences. The same
// step and adjoint helpers as the CPU kernels (../common.h). The backward kernel accumulates
// the beta and threshold gradients per (b, n) in registers; they are summed over the batch
// afterwards.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../common.h"
#include "../op_checks.h"

namespace snn_delays_ext {
namespace {

constexpr int kLeakyThreads = 256;

inline int leaky_blocks(int64_t n) { return static_cast<int>((n + kLeakyThreads - 1) / kLeakyThreads); }

template <typename scalar_t>
__global__ void leaky_sequence_fwd_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ beta,
                                          const scalar_t* __restrict__ thr, scalar_t* __restrict__ spk,
                                          scalar_t* __restrict__ mem, scalar_t* __restrict__ pre, int64_t T,
                                          int64_t BN, int64_t N, int64_t reset, bool carries) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= BN) return;
  const int64_t j = idx % N;
  const scalar_t b = beta[j], h = thr[j];
  scalar_t mp = scalar_t(0);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t off = t * BN + idx;
    const bool rs = carries && (mp - h) > scalar_t(0);
    scalar_t m = leaky_charge<scalar_t>(mp, x[off], b, h, rs, reset);
    const bool s = (m - h) > scalar_t(0);
    if (pre) {  // reset_delay=False: the spike resets in its own step
      pre[off] = m;
      m = lif_reset_same_step<scalar_t>(m, h, rs, s, reset);
    }
    mem[off] = m;
    spk[off] = s ? scalar_t(1) : scalar_t(0);
    mp = m;
  }
}

template <typename scalar_t>
__global__ void leaky_sequence_bwd_kernel(const scalar_t* __restrict__ gspk, const scalar_t* __restrict__ gmem,
                                          const scalar_t* __restrict__ beta, const scalar_t* __restrict__ thr,
                                          const scalar_t* __restrict__ mem, const scalar_t* __restrict__ pre,
                                          scalar_t* __restrict__ gx, scalar_t* __restrict__ gbeta,
                                          scalar_t* __restrict__ gthr, int64_t T, int64_t BN, int64_t N,
                                          int64_t reset, bool carries, int64_t surrogate, double sparam,
                                          bool detach_reset) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= BN) return;
  const int64_t j = idx % N;
  const scalar_t b = beta[j], h = thr[j];
  const bool reset_delay = pre == nullptr;
  scalar_t carry = scalar_t(0), gb = scalar_t(0), gh = scalar_t(0);
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t off = t * BN + idx;
    const scalar_t mp = t > 0 ? mem[off - BN] : scalar_t(0);
    const bool rs = carries && (mp - h) > scalar_t(0);
    const scalar_t m1 = reset_delay ? mem[off] : pre[off];  // the membrane the spike was tested on
    const bool s = (m1 - h) > scalar_t(0);
    const LifAdjoint<scalar_t> a = lif_adjoint<scalar_t>(m1, h, rs, s, gspk[off], gmem[off] + carry, reset, surrogate,
                                                         sparam, reset_delay, detach_reset, false);
    gx[off] = a.gbase;
    carry = a.gbase * b * leaky_previous<scalar_t>(scalar_t(1), rs, reset);
    gb += a.gbase * leaky_previous<scalar_t>(mp, rs, reset);
    gh += a.gthr;
  }
  gbeta[idx] = gb;
  gthr[idx] = gh;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> leaky_sequence_cuda(const at::Tensor& x_, const at::Tensor& beta_,
                                                                   const at::Tensor& threshold_, int64_t reset,
                                                                   int64_t surrogate, double sparam,
                                                                   bool reset_delay, bool detach_reset) {
  (void)detach_reset;
  checks::leaky_sequence(x_, beta_, threshold_, reset, surrogate, sparam, reset_delay);
  c10::cuda::CUDAGuard guard(x_.device());
  const bool carries = carries_reset(reset);
  const int64_t kind = reset_kind(reset);
  auto x = x_.contiguous();
  auto beta = beta_.contiguous();
  auto thr = threshold_.contiguous();
  const int64_t T = x.size(0), BN = x.size(1) * x.size(2), N = x.size(2);
  auto spk = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto mem = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto pre = reset_delay ? at::empty({0}, x.options()) : at::empty_like(x, at::MemoryFormat::Contiguous);
  if (T == 0 || BN == 0) return {spk, mem, pre};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "leaky_sequence_cuda", [&] {
    leaky_sequence_fwd_kernel<scalar_t><<<leaky_blocks(BN), kLeakyThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(), thr.data_ptr<scalar_t>(), spk.data_ptr<scalar_t>(),
        mem.data_ptr<scalar_t>(), reset_delay ? nullptr : pre.data_ptr<scalar_t>(), T, BN, N, kind, carries);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {spk, mem, pre};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> leaky_sequence_backward_cuda(
    const at::Tensor& grad_spk_, const at::Tensor& grad_mem_, const at::Tensor& beta_, const at::Tensor& threshold_,
    const at::Tensor& mem_, const at::Tensor& pre_mem_, int64_t reset, int64_t surrogate, double sparam,
    bool reset_delay, bool detach_reset) {
  checks::leaky_sequence_backward(grad_spk_, grad_mem_, beta_, threshold_, mem_, pre_mem_, reset, surrogate, sparam,
                                  reset_delay);
  c10::cuda::CUDAGuard guard(mem_.device());
  const bool carries = carries_reset(reset);
  const int64_t kind = reset_kind(reset);
  auto mem = mem_.contiguous();
  auto gsp = grad_spk_.contiguous();
  auto gmm = grad_mem_.contiguous();
  auto beta = beta_.contiguous();
  auto thr = threshold_.contiguous();
  auto pre = reset_delay ? at::Tensor() : pre_mem_.contiguous();
  const int64_t T = mem.size(0), B = mem.size(1), N = mem.size(2), BN = B * N;
  auto gx = at::empty_like(mem, at::MemoryFormat::Contiguous);
  if (T == 0 || BN == 0) {
    return {gx, at::zeros({N}, mem.options()), at::zeros({N}, mem.options())};
  }
  auto gbeta = at::empty({B, N}, mem.options());
  auto gthr = at::empty({B, N}, mem.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(mem.scalar_type(), "leaky_sequence_backward_cuda", [&] {
    leaky_sequence_bwd_kernel<scalar_t><<<leaky_blocks(BN), kLeakyThreads, 0, stream>>>(
        gsp.data_ptr<scalar_t>(), gmm.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(), thr.data_ptr<scalar_t>(),
        mem.data_ptr<scalar_t>(), reset_delay ? nullptr : pre.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(),
        gbeta.data_ptr<scalar_t>(), gthr.data_ptr<scalar_t>(), T, BN, N, kind, carries, surrogate, sparam,
        detach_reset);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {gx, gbeta.sum(0), gthr.sum(0)};
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_delays_ext, CUDA, m) {
  m.impl("leaky_sequence", &leaky_sequence_cuda);
  m.impl("leaky_sequence_backward", &leaky_sequence_backward_cuda);
}

}  // namespace snn_delays_ext
