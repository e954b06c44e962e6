// CUDA kernels of the synaptic_sequence ops (schemas and CPU kernels in ../synaptic_sequence.cpp).
//
// One thread per neuron (b, n) with the whole time loop inside, as leaky_sequence_cuda.cu: the
// neurons are independent, and at each step a warp reads 32 consecutive values of the (T, B, N)
// sequences. The step and its adjoint are those of the CPU kernels (synaptic_step and
// synaptic_adjoint, ../common.h). The backward kernel accumulates the alpha, beta and threshold
// gradients per (b, n) in registers; they are summed over the batch afterwards.

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

constexpr int kSynapticThreads = 256;

inline int synaptic_blocks(int64_t n) { return static_cast<int>((n + kSynapticThreads - 1) / kSynapticThreads); }

template <typename scalar_t>
__global__ void synaptic_sequence_fwd_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ alpha,
                                             const scalar_t* __restrict__ beta, const scalar_t* __restrict__ thr,
                                             scalar_t* __restrict__ spk, scalar_t* __restrict__ syn,
                                             scalar_t* __restrict__ mem, scalar_t* __restrict__ pre, int64_t T,
                                             int64_t BN, int64_t N, int64_t kind, bool carries) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= BN) return;
  const int64_t j = idx % N;
  const scalar_t a = alpha[j], b = beta[j], h = thr[j];
  scalar_t sp = scalar_t(0), mp = scalar_t(0);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t off = t * BN + idx;
    const SynapticStep<scalar_t> o = synaptic_step<scalar_t>(sp, mp, x[off], a, b, h, carries, kind, pre == nullptr);
    if (pre) pre[off] = o.m1;  // reset_delay=False: the membrane the spike was tested on
    syn[off] = o.syn;
    mem[off] = o.mem;
    spk[off] = o.spk ? scalar_t(1) : scalar_t(0);
    sp = o.syn;
    mp = o.mem;
  }
}

template <typename scalar_t>
__global__ void synaptic_sequence_bwd_kernel(
    const scalar_t* __restrict__ gspk, const scalar_t* __restrict__ gsyn, const scalar_t* __restrict__ gmem,
    const scalar_t* __restrict__ alpha, const scalar_t* __restrict__ beta, const scalar_t* __restrict__ thr,
    const scalar_t* __restrict__ syn, const scalar_t* __restrict__ mem, const scalar_t* __restrict__ pre,
    scalar_t* __restrict__ gx, scalar_t* __restrict__ gpar, int64_t T, int64_t BN, int64_t N, int64_t kind,
    bool carries, int64_t surrogate, double sparam, bool reset_delay, bool detach_reset) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= BN) return;
  const int64_t j = idx % N;
  const scalar_t a = alpha[j], b = beta[j], h = thr[j];
  scalar_t cs = scalar_t(0), cm = scalar_t(0), ga = scalar_t(0), gb = scalar_t(0), gh = scalar_t(0);
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t off = t * BN + idx;
    const scalar_t sp = t > 0 ? syn[off - BN] : scalar_t(0);
    const scalar_t mp = t > 0 ? mem[off - BN] : scalar_t(0);
    const SynapticAdjoint<scalar_t> g =
        synaptic_adjoint<scalar_t>(sp, mp, pre[off], a, b, h, gspk[off], gsyn[off] + cs, gmem[off] + cm, carries,
                                   kind, surrogate, sparam, reset_delay, detach_reset);
    gx[off] = g.gx;
    cs = g.gsyn_prev;
    cm = g.gmem_prev;
    ga += g.galpha;
    gb += g.gbeta;
    gh += g.gthr;
  }
  gpar[idx] = ga;
  gpar[BN + idx] = gb;
  gpar[2 * BN + idx] = gh;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> synaptic_sequence_cuda(
    const at::Tensor& x_, const at::Tensor& alpha_, const at::Tensor& beta_, const at::Tensor& threshold_,
    int64_t reset, int64_t surrogate, double sparam, bool reset_delay, bool detach_reset) {
  (void)detach_reset;
  checks::synaptic_sequence(x_, alpha_, beta_, threshold_, reset, surrogate, sparam, reset_delay);
  c10::cuda::CUDAGuard guard(x_.device());
  auto x = x_.contiguous();
  auto alpha = alpha_.contiguous();
  auto beta = beta_.contiguous();
  auto thr = threshold_.contiguous();
  const int64_t T = x.size(0), BN = x.size(1) * x.size(2), N = x.size(2);
  auto spk = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto syn = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto mem = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto pre = reset_delay ? at::empty({0}, x.options()) : at::empty_like(x, at::MemoryFormat::Contiguous);
  if (T == 0 || BN == 0) return {spk, syn, mem, pre};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "synaptic_sequence_cuda", [&] {
    synaptic_sequence_fwd_kernel<scalar_t><<<synaptic_blocks(BN), kSynapticThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(), thr.data_ptr<scalar_t>(),
        spk.data_ptr<scalar_t>(), syn.data_ptr<scalar_t>(), mem.data_ptr<scalar_t>(),
        reset_delay ? nullptr : pre.data_ptr<scalar_t>(), T, BN, N, reset_kind(reset), carries_reset(reset));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {spk, syn, mem, pre};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> synaptic_sequence_backward_cuda(
    const at::Tensor& grad_spk_, const at::Tensor& grad_syn_, const at::Tensor& grad_mem_, const at::Tensor& alpha_,
    const at::Tensor& beta_, const at::Tensor& threshold_, const at::Tensor& syn_, const at::Tensor& mem_,
    const at::Tensor& pre_mem_, int64_t reset, int64_t surrogate, double sparam, bool reset_delay,
    bool detach_reset) {
  checks::synaptic_sequence_backward(grad_spk_, grad_syn_, grad_mem_, alpha_, beta_, threshold_, syn_, mem_,
                                     pre_mem_, reset, surrogate, sparam, reset_delay);
  c10::cuda::CUDAGuard guard(mem_.device());
  auto syn = syn_.contiguous();
  auto mem = mem_.contiguous();
  auto pre = reset_delay ? mem : pre_mem_.contiguous();  // the membranes the spikes were tested on
  auto gsp = grad_spk_.contiguous();
  auto gsy = grad_syn_.contiguous();
  auto gmm = grad_mem_.contiguous();
  auto alpha = alpha_.contiguous();
  auto beta = beta_.contiguous();
  auto thr = threshold_.contiguous();
  const int64_t T = mem.size(0), B = mem.size(1), N = mem.size(2), BN = B * N;
  auto gx = at::empty_like(mem, at::MemoryFormat::Contiguous);
  auto gpar = at::zeros({3, B, N}, mem.options());  // alpha, beta, threshold per (b, n)
  if (T > 0 && BN > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(mem.scalar_type(), "synaptic_sequence_backward_cuda", [&] {
      synaptic_sequence_bwd_kernel<scalar_t><<<synaptic_blocks(BN), kSynapticThreads, 0, stream>>>(
          gsp.data_ptr<scalar_t>(), gsy.data_ptr<scalar_t>(), gmm.data_ptr<scalar_t>(), alpha.data_ptr<scalar_t>(),
          beta.data_ptr<scalar_t>(), thr.data_ptr<scalar_t>(), syn.data_ptr<scalar_t>(), mem.data_ptr<scalar_t>(),
          pre.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), gpar.data_ptr<scalar_t>(), T, BN, N,
          reset_kind(reset), carries_reset(reset), surrogate, sparam, reset_delay, detach_reset);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {gx, gpar[0].sum(0), gpar[1].sum(0), gpar[2].sum(0)};
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_delays_ext, CUDA, m) {
  m.impl("synaptic_sequence", &synaptic_sequence_cuda);
  m.impl("synaptic_sequence_backward", &synaptic_sequence_backward_cuda);
}

}  // namespace snn_delays_ext
