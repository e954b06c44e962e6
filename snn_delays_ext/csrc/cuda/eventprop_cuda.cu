// CUDA kernels of the EventProp ops (schemas and CPU kernels in ../eventprop.cpp).
//
// Same math as the CPU kernels and the plain-PyTorch reference (snn_delays_ext/eventprop/
// functional.py). Kept deliberately simple: one thread block per batch element runs the whole
// time loop; its threads own the neurons (n = threadIdx.x, threadIdx.x + blockDim.x, ...), so the
// per-element ring buffers (arrivals forward, adjoint history backward, in global scratch
// memory, L >= max_delay + 1 slots, L a power of two, indexed [slot][neuron] so that the per-step
// accesses of a warp are coalesced) need no atomics. Recurrent spikes of a step are broadcast through a
// shared-memory flag array. The forward multiply-adds use round-to-nearest intrinsics (no FMA
// contraction) so that the spikes are the same as on the CPU. The backward reduces the per-spike
// and per-input-event sums over the block and adds the weight/delay gradients with atomics
// (summation order, hence the last bits, vary between runs).
//
// The forward kernel writes spk densely and the rise U - V of each spike into a temporary dense
// buffer; the compact spike list (flat indices and one rise per spike) is then taken with
// at::nonzero / index_select, and the temporary is freed before the op returns.

#include <ATen/ATen.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../eventprop_common.h"

namespace snn_delays_ext {
namespace {

using eventprop::check_backward_args;
using eventprop::check_forward_args;
using eventprop::index_dtype;
using eventprop::ring_len;
using eventprop::round_delays;

constexpr int kEpThreads = 256;  // a power of two (block reduction)

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// Sum of v over the block (all threads get the result); buf has kEpThreads entries.
template <typename scalar_t>
__device__ scalar_t ep_block_sum(scalar_t v, scalar_t* buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  const scalar_t r = buf[0];
  __syncthreads();
  return r;
}

// ---- forward ----------------------------------------------------------------------------------
template <typename scalar_t>
__global__ void ep_forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ wT,
                                  const int32_t* __restrict__ dT, const scalar_t* __restrict__ rT,
                                  const int32_t* __restrict__ eT, scalar_t* ring, scalar_t* Sb, scalar_t* Vb,
                                  scalar_t* spk, scalar_t* mem, scalar_t* rise, int64_t T, int64_t B, int64_t F,
                                  int64_t N, int64_t mask, scalar_t a, scalar_t bs, scalar_t kc, scalar_t th) {
  extern __shared__ unsigned char fired[];  // N flags: spikes of the current step
  const int64_t b = blockIdx.x;
  scalar_t* rg = ring + b * N * (mask + 1);
  scalar_t* S = Sb + b * N;
  scalar_t* V = Vb + b * N;
  const bool recurrent = rT != nullptr;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t st = t & mask;
    const scalar_t* xr = x + (t * B + b) * F;
    for (int64_t i = 0; i < F; ++i) {
      if (xr[i] == scalar_t(0)) continue;  // uniform over the block
      for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
        scalar_t* r = rg + ((st + dT[i * N + n]) & mask) * N + n;
        *r = add_rn(*r, wT[i * N + n]);
      }
    }
    int mine = 0;
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
      const int64_t idx = (t * B + b) * N + n;
      const scalar_t r = rg[st * N + n];
      rg[st * N + n] = scalar_t(0);
      const scalar_t Sn = add_rn(mul_rn(bs, S[n]), r);
      S[n] = Sn;
      const scalar_t U = add_rn(mul_rn(a, V[n]), mul_rn(kc, Sn));
      if (U >= th) {
        spk[idx] = scalar_t(1);
        rise[idx] = U - V[n];
        V[n] = scalar_t(0);
        fired[n] = 1;
        mine = 1;
      } else {
        V[n] = U;
        fired[n] = 0;
      }
      if (mem != nullptr) mem[idx] = V[n];
    }
    if (recurrent) {
      if (__syncthreads_count(mine) > 0) {  // also a barrier: fired[] is complete
        for (int64_t j = 0; j < N; ++j) {
          if (!fired[j]) continue;
          for (int64_t m = threadIdx.x; m < N; m += blockDim.x) {
            scalar_t* r = rg + ((st + eT[j * N + m]) & mask) * N + m;
            *r = add_rn(*r, rT[j * N + m]);
          }
        }
      }
      __syncthreads();  // before fired[] is rewritten in the next step
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> eventprop_lif_forward_cuda(
    const at::Tensor& x_, const at::Tensor& weight, const at::Tensor& delays,
    const c10::optional<at::Tensor>& rec_weight, const c10::optional<at::Tensor>& rec_delays, int64_t max_delay,
    double alpha, double beta, double threshold, double syn_scale, double /*min_denominator*/,
    double /*reg_strength*/, double /*reg_target*/, int64_t max_spikes, bool record_mem) {
  check_forward_args(x_, weight, delays, rec_weight, rec_delays, max_delay);
  TORCH_CHECK(x_.is_cuda(), "x: expected a CUDA tensor");
  const c10::cuda::CUDAGuard guard(x_.device());
  const auto x = x_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), F = x.size(2), N = weight.size(0), L = ring_len(max_delay);
  const bool recurrent = rec_weight.has_value() && rec_weight->defined();
  const auto wT = weight.t().contiguous();
  const auto dT = round_delays(delays, 0, max_delay).t().contiguous();
  at::Tensor rT, eT;
  if (recurrent) {
    rT = rec_weight->t().contiguous();
    eT = round_delays(*rec_delays, 1, max_delay).t().contiguous();
  }
  const auto opts = x.options();
  auto spk = at::zeros({T, B, N}, opts);
  auto mem = record_mem ? at::empty({T, B, N}, opts) : at::empty({0}, opts);
  const auto idt = index_dtype(T, B, N, F);
  auto x_idx = at::nonzero(x.reshape({-1})).reshape({-1}).to(idt);
  if (T * B * N == 0) {
    return {spk, mem, x_idx, at::empty({0}, opts.dtype(idt)), at::empty({0}, opts)};
  }
  auto rise = at::empty({T, B, N}, opts);
  auto ring = at::zeros({B, L, N}, opts);
  auto Sb = at::zeros({B, N}, opts);
  auto Vb = at::zeros({B, N}, opts);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "eventprop_lif_forward_cuda", [&] {
    ep_forward_kernel<scalar_t><<<static_cast<unsigned int>(B), kEpThreads, static_cast<size_t>(N), stream>>>(
        x.data_ptr<scalar_t>(), wT.data_ptr<scalar_t>(), dT.data_ptr<int32_t>(),
        recurrent ? rT.data_ptr<scalar_t>() : nullptr, recurrent ? eT.data_ptr<int32_t>() : nullptr,
        ring.data_ptr<scalar_t>(), Sb.data_ptr<scalar_t>(), Vb.data_ptr<scalar_t>(), spk.data_ptr<scalar_t>(),
        record_mem ? mem.data_ptr<scalar_t>() : nullptr, rise.data_ptr<scalar_t>(), T, B, F, N, L - 1,
        static_cast<scalar_t>(beta), static_cast<scalar_t>(alpha), static_cast<scalar_t>((1.0 - beta) * syn_scale),
        static_cast<scalar_t>(threshold));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  auto s_idx = at::nonzero(spk.reshape({-1})).reshape({-1});  // sorted (t, b, n)
  TORCH_CHECK(max_spikes < 0 || s_idx.numel() <= max_spikes, "spike buffer overflow: more than max_spikes=",
              max_spikes, " spikes (", s_idx.numel(), " in ", T,
              " steps); raise max_spikes (the EventProp gradient would be wrong with dropped spikes)");
  auto s_rise = rise.reshape({-1}).index_select(0, s_idx);
  return {spk, mem, x_idx, s_idx.to(idt), s_rise};
}

// ---- backward ---------------------------------------------------------------------------------
template <typename scalar_t>
__global__ void ep_backward_kernel(const scalar_t* __restrict__ gs, const scalar_t* __restrict__ gm,
                                   const int64_t* __restrict__ s_off, const int64_t* __restrict__ s_n,
                                   const scalar_t* __restrict__ s_rise, const int64_t* __restrict__ x_off,
                                   const int64_t* __restrict__ x_i, const scalar_t* __restrict__ wT,
                                   const int32_t* __restrict__ dT, const scalar_t* __restrict__ rT,
                                   const int32_t* __restrict__ eT, const scalar_t* __restrict__ reg, scalar_t* hist_all,
                                   scalar_t* gU_all, scalar_t* gV_all, scalar_t* gUn_all, scalar_t* gSn_all,
                                   scalar_t* gx, scalar_t* gwT, scalar_t* gdT, scalar_t* grT, scalar_t* geT,
                                   int64_t T, int64_t B, int64_t F, int64_t N, int64_t mask, scalar_t a, scalar_t bs,
                                   scalar_t one_a_c, scalar_t th, scalar_t th_term, scalar_t min_den) {
  __shared__ scalar_t red[kEpThreads];
  const int64_t b = blockIdx.x;
  scalar_t* hist = hist_all + b * N * (mask + 1) * 2;  // [slot][n][gS, G]
  scalar_t* gU = gU_all + b * N;
  scalar_t* gV = gV_all + b * N;
  scalar_t* gUn = gUn_all + b * N;
  scalar_t* gSn = gSn_all + b * N;
  const bool recurrent = rT != nullptr;
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t st = t & mask;
    const int64_t cell = t * B + b;
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
      scalar_t v = a * gUn[n];
      if (gm != nullptr) v = v + gm[cell * N + n];
      gV[n] = v;
      gU[n] = v;
    }
    __syncthreads();
    // spikes of step t: jump of g_U at the spiking neuron
    for (int64_t q = s_off[cell]; q < s_off[cell + 1]; ++q) {
      const int64_t n = s_n[q];
      scalar_t part = 0;
      if (recurrent) {
        for (int64_t m = threadIdx.x; m < N; m += blockDim.x) {
          const scalar_t* h = hist + (((st + eT[n * N + m]) & mask) * N + m) * 2;
          const scalar_t wG = rT[n * N + m] * h[1];
          part += wG;
          gpuAtomicAdd(grT + n * N + m, h[0]);
          gpuAtomicAdd(geT + n * N + m, wG);
        }
      }
      const scalar_t sum = ep_block_sum(part, red);
      if (threadIdx.x == 0) {
        scalar_t tsens = gs != nullptr ? gs[cell * N + n] : scalar_t(0);
        if (recurrent) tsens = tsens + sum;
        const scalar_t r = s_rise[q];
        // the loss on V jumps with the reset: (l_V^- - l_V^+) = theta dL/dV_t
        if (gm != nullptr) tsens = tsens + th * gm[cell * N + n];
        tsens = tsens - (r + th_term) * gV[n];
        scalar_t jump = -tsens / (r > min_den ? r : min_den);
        if (reg != nullptr) jump = jump + reg[n];
        gU[n] = jump;
      }
    }
    __syncthreads();
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
      const scalar_t u = gU[n];
      const scalar_t gS = one_a_c * u + bs * gSn[n];
      // arrival one step later: g_S,t+1 - g_S,t (the forward difference of the loss)
      const scalar_t G = gSn[n] - gS;
      scalar_t* h = hist + (st * N + n) * 2;
      h[0] = gS;
      h[1] = G;
      gUn[n] = u;
      gSn[n] = gS;
    }
    __syncthreads();
    // input spikes of step t sample the history at t + d
    for (int64_t q = x_off[cell]; q < x_off[cell + 1]; ++q) {
      const int64_t i = x_i[q];
      scalar_t part = 0;
      for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
        const scalar_t* h = hist + (((st + dT[i * N + n]) & mask) * N + n) * 2;
        const scalar_t wG = wT[i * N + n] * h[1];
        part += wG;
        gpuAtomicAdd(gwT + i * N + n, h[0]);
        gpuAtomicAdd(gdT + i * N + n, wG);
      }
      const scalar_t sum = ep_block_sum(part, red);
      if (threadIdx.x == 0) gx[cell * F + i] = sum;
    }
    __syncthreads();
  }
}

// Sort flat event indices and return (sorted, permutation, offsets per (t, b) cell).
std::tuple<at::Tensor, at::Tensor, at::Tensor> bucket_cuda(const at::Tensor& idx, int64_t row, int64_t cells) {
  auto flat = idx.to(at::kLong);
  at::Tensor sorted, perm;
  std::tie(sorted, perm) = at::sort(flat);
  auto cell = at::floor_divide(sorted, row);
  auto counts = cells > 0 ? at::bincount(cell, {}, cells) : at::zeros({0}, flat.options());
  auto off = at::cat({at::zeros({1}, flat.options()), at::cumsum(counts, 0)});
  return {sorted, perm, off.contiguous()};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> eventprop_lif_backward_cuda(
    const at::Tensor& grad_spk_, const at::Tensor& grad_mem_, const at::Tensor& x_idx, const at::Tensor& s_idx,
    const at::Tensor& s_rise_, const at::Tensor& weight, const at::Tensor& d_ff,
    const c10::optional<at::Tensor>& rec_weight, const c10::optional<at::Tensor>& d_rec, int64_t T, int64_t B,
    int64_t max_delay, double alpha, double beta, double threshold, double syn_scale, double min_denominator,
    double reg_strength, double reg_target) {
  check_backward_args(grad_spk_, grad_mem_, x_idx, s_idx, s_rise_, weight, d_ff, rec_weight, d_rec, T, B, max_delay);
  TORCH_CHECK(weight.is_cuda(), "weight: expected a CUDA tensor");
  const c10::cuda::CUDAGuard guard(weight.device());
  const int64_t N = weight.size(0), F = weight.size(1), L = ring_len(max_delay);
  const bool recurrent = rec_weight.has_value() && rec_weight->defined();
  const auto opts = weight.options();
  const auto grad_spk = grad_spk_.contiguous();
  const auto grad_mem = grad_mem_.contiguous();
  const auto wT = weight.contiguous().t().contiguous();
  const auto dT = d_ff.to(at::kInt).t().contiguous();
  at::Tensor rT, eT;
  if (recurrent) {
    rT = rec_weight->contiguous().t().contiguous();
    eT = d_rec->to(at::kInt).t().contiguous();
  }
  auto grad_x = at::zeros({T, B, F}, opts);
  auto gwT = at::zeros({F, N}, opts);
  auto gdT = at::zeros({F, N}, opts);
  auto grT = at::zeros({recurrent ? N : 0, N}, opts);
  auto geT = at::zeros({recurrent ? N : 0, N}, opts);
  if (T * B * N > 0) {
    at::Tensor xs, xperm, x_off, ss, sperm, s_off;
    std::tie(xs, xperm, x_off) = bucket_cuda(x_idx, F, T * B);
    std::tie(ss, sperm, s_off) = bucket_cuda(s_idx, N, T * B);
    auto x_i = at::remainder(xs, F).contiguous();
    auto s_n = at::remainder(ss, N).contiguous();
    auto s_rise = s_rise_.index_select(0, sperm).contiguous();
    at::Tensor reg;
    if (reg_strength != 0.0 && s_n.numel() > 0) {
      auto counts = at::bincount(s_n, {}, N).to(weight.scalar_type());
      reg = ((counts - reg_target * static_cast<double>(B)) * reg_strength / static_cast<double>(B * B)).contiguous();
    }
    auto hist = at::zeros({B, L, N, 2}, opts);
    auto gU = at::zeros({B, N}, opts);
    auto gV = at::zeros({B, N}, opts);
    auto gUn = at::zeros({B, N}, opts);
    auto gSn = at::zeros({B, N}, opts);
    auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "eventprop_lif_backward_cuda", [&] {
      ep_backward_kernel<scalar_t><<<static_cast<unsigned int>(B), kEpThreads, 0, stream>>>(
          grad_spk.numel() ? grad_spk.data_ptr<scalar_t>() : nullptr,
          grad_mem.numel() ? grad_mem.data_ptr<scalar_t>() : nullptr, s_off.data_ptr<int64_t>(),
          s_n.data_ptr<int64_t>(), s_rise.data_ptr<scalar_t>(), x_off.data_ptr<int64_t>(), x_i.data_ptr<int64_t>(),
          wT.data_ptr<scalar_t>(), dT.data_ptr<int32_t>(), recurrent ? rT.data_ptr<scalar_t>() : nullptr,
          recurrent ? eT.data_ptr<int32_t>() : nullptr, reg.defined() ? reg.data_ptr<scalar_t>() : nullptr,
          hist.data_ptr<scalar_t>(), gU.data_ptr<scalar_t>(), gV.data_ptr<scalar_t>(), gUn.data_ptr<scalar_t>(),
          gSn.data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), gwT.data_ptr<scalar_t>(), gdT.data_ptr<scalar_t>(),
          recurrent ? grT.data_ptr<scalar_t>() : nullptr, recurrent ? geT.data_ptr<scalar_t>() : nullptr, T, B, F, N,
          L - 1, static_cast<scalar_t>(beta), static_cast<scalar_t>(alpha),
          static_cast<scalar_t>((1.0 - beta) * syn_scale), static_cast<scalar_t>(threshold),
          static_cast<scalar_t>((1.0 - beta) * threshold), static_cast<scalar_t>(min_denominator));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  at::Tensor grad_r = at::empty({0}, opts), grad_e = at::empty({0}, opts);
  if (recurrent) {
    grad_r = grT.t().contiguous();
    grad_e = geT.t().contiguous();
  }
  return {grad_x, gwT.t().contiguous(), gdT.t().contiguous(), grad_r, grad_e};
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_delays_ext, CUDA, m) {
  m.impl("eventprop_lif_forward", &eventprop_lif_forward_cuda);
  m.impl("eventprop_lif_backward", &eventprop_lif_backward_cuda);
}

}  // namespace snn_delays_ext
