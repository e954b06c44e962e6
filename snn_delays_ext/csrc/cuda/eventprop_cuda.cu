// CUDA kernels of the EventProp ops (schemas and CPU kernels in ../eventprop.cpp; the host
// side of the CUDA ops, with their checks and errors, in eventprop_cuda_ops.cpp).
//
// Same math as the CPU kernels and the plain-PyTorch reference (snn_delays_ext/eventprop/
// functional.py). A thread block runs the whole time loop of one batch element: of all its neurons
// in a recurrent layer, of a slice of them in a feed-forward one (grid (B, parts), see plan: the
// slices are independent, and a small batch still fills the GPU). Its threads own the neurons
// (n = n_lo + threadIdx.x, + blockDim.x, ...), so the block's state, a ring buffer (arrivals
// forward, adjoint history backward; L >= max_delay + 1 slots, L a power of two, indexed
// [slot][neuron] so that the per-step accesses of a warp are coalesced) and the per-neuron
// variables, needs no atomics. The state lives in shared memory where it fits (plan: the step's
// reads and writes then avoid the L2 round trips that make the time loop latency-bound), else in
// global scratch memory. Recurrent spikes of a step are broadcast through a shared-memory flag array. The
// forward multiply-adds use round-to-nearest intrinsics (no FMA contraction) so that the spikes are
// the same as on the CPU. The backward reduces the per-spike and per-input-event sums over the
// block (32 events at a time) and adds the weight/delay gradients, and a split layer's input
// gradients, with atomics (summation order, hence the last bits, vary between runs).
//
// This file holds device code and the launchers only: nothing here throws (the launchers
// return the launch status), so every error is raised by host-compiled code.

#include <ATen/cuda/Atomic.cuh>

#include <cstdint>

#include "eventprop_launch.h"

namespace snn_delays_ext {
namespace eventprop_cuda {
namespace {

constexpr int kEpThreads = kThreads;

template <typename scalar_t>
__device__ __forceinline__ scalar_t smallest_normal();
template <>
__device__ __forceinline__ float smallest_normal<float>() { return 1.17549435e-38f; }
template <>
__device__ __forceinline__ double smallest_normal<double>() { return 2.2250738585072014e-308; }

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// Reductions in the backward: the sums of up to kBatch events of a step are reduced together,
// each over its warp by shuffles and then over the block's warps through shared memory, with
// one barrier per batch (a tree over the block would cost log2(threads) barriers per event).
static_assert(kEpThreads % 32 == 0, "whole warps per block");
constexpr int kWarps = kEpThreads / 32;
constexpr int kBatch = 32;
// shared memory: what a launch may use without opting in, and what is kept free of the opt-in
// limit for the kernels' static arrays (part_sums: kBatch x kWarps doubles = 2 KiB)
constexpr size_t kDefaultShared = 48 * 1024;
constexpr int kStaticSharedReserve = 4 * 1024;

template <typename scalar_t>
__device__ __forceinline__ scalar_t warp_sum(scalar_t v) {  // the sum lands in lane 0
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// ---- forward ----------------------------------------------------------------------------------
template <typename scalar_t>
__global__ void ep_forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ wT,
                                  const int32_t* __restrict__ dT, const scalar_t* __restrict__ rT,
                                  const int32_t* __restrict__ eT, scalar_t* ring, scalar_t* Sb, scalar_t* Vb,
                                  scalar_t* spk, scalar_t* mem, int64_t T, int64_t B, int64_t F,
                                  int64_t N, int64_t per, bool in_shared, int64_t mask, scalar_t a, scalar_t bs,
                                  scalar_t kc, scalar_t th) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int64_t b = blockIdx.x;
  const int64_t n_lo = blockIdx.y * per, n_hi = n_lo + per < N ? n_lo + per : N;  // this block's neurons
  // the block's state: arrival ring [slot][neuron], S, V; neuron n at n - nb, rows rs apart
  scalar_t *rg, *S, *V;
  unsigned char* fired;  // N flags: spikes of the current step
  int64_t rs, nb;
  if (in_shared) {
    rg = reinterpret_cast<scalar_t*>(smem);
    S = rg + (mask + 1) * per;
    V = S + per;
    fired = reinterpret_cast<unsigned char*>(V + per);
    rs = per;
    nb = n_lo;
    for (int64_t k = threadIdx.x; k < (mask + 3) * per; k += blockDim.x) rg[k] = scalar_t(0);
    __syncthreads();
  } else {
    rg = ring + b * N * (mask + 1);
    S = Sb + b * N;
    V = Vb + b * N;
    fired = smem;
    rs = N;
    nb = 0;
  }
  const bool recurrent = rT != nullptr;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t st = t & mask;
    const scalar_t* xr = x + (t * B + b) * F;
    for (int64_t i = 0; i < F; ++i) {
      if (xr[i] == scalar_t(0)) continue;  // uniform over the block
      for (int64_t n = n_lo + threadIdx.x; n < n_hi; n += blockDim.x) {
        scalar_t* r = rg + ((st + dT[i * N + n]) & mask) * rs + n - nb;
        *r = add_rn(*r, wT[i * N + n]);
      }
    }
    int mine = 0;
    for (int64_t n = n_lo + threadIdx.x; n < n_hi; n += blockDim.x) {
      const int64_t idx = (t * B + b) * N + n;
      const int64_t k = n - nb;
      const scalar_t r = rg[st * rs + k];
      rg[st * rs + k] = scalar_t(0);
      const scalar_t Sn = add_rn(mul_rn(bs, S[k]), r);
      S[k] = Sn;
      const scalar_t U = add_rn(mul_rn(a, V[k]), mul_rn(kc, Sn));
      if (U >= th) {
        // the rise, kept in the spike's entry until the host has listed the spikes (> 0, as
        // U >= th > V; the smallest normal number stands in for a subnormal one, which the
        // backward's min_denominator clamps anyway)
        const scalar_t r = U - V[k];
        spk[idx] = r >= smallest_normal<scalar_t>() ? r : smallest_normal<scalar_t>();
        V[k] = scalar_t(0);
        fired[n] = 1;
        mine = 1;
      } else {
        V[k] = U;
        fired[n] = 0;
      }
      if (mem != nullptr) mem[idx] = V[k];
    }
    if (recurrent) {
      if (__syncthreads_count(mine) > 0) {  // also a barrier: fired[] is complete
        for (int64_t j = 0; j < N; ++j) {
          if (!fired[j]) continue;
          for (int64_t m = threadIdx.x; m < N; m += blockDim.x) {
            scalar_t* r = rg + ((st + eT[j * N + m]) & mask) * rs + m;  // recurrent: nb = 0
            *r = add_rn(*r, rT[j * N + m]);
          }
        }
      }
      __syncthreads();  // before fired[] is rewritten in the next step
    }
  }
}

// ---- backward ---------------------------------------------------------------------------------
// Events q0 .. q0 + ne - 1 of a step (sources src[q]: spiking neurons or input channels) sample
// the adjoint history (target n at row offset n - nb, rows rs apart) at their arrival steps, over
// the targets [lo, hi): each connection's weight and delay gradients get g_S and w G there
// (atomics), and event j's sum of w G over those targets is left per warp in part_sums[j] (read
// with batch_sum after the barrier at the end).
template <typename scalar_t>
__device__ void sample_history(const int64_t* __restrict__ src, int64_t q0, int ne, const scalar_t* __restrict__ w,
                               const int32_t* __restrict__ d, const scalar_t* hist, int64_t rs, int64_t nb,
                               scalar_t* gw, scalar_t* gd, int64_t st, int64_t mask, int64_t N, int64_t lo,
                               int64_t hi, scalar_t (*part_sums)[kWarps]) {
  for (int j = 0; j < ne; ++j) {
    const int64_t s = src[q0 + j];
    scalar_t part = 0;
    for (int64_t n = lo + threadIdx.x; n < hi; n += blockDim.x) {
      const scalar_t* h = hist + (((st + d[s * N + n]) & mask) * rs + n - nb) * 2;
      const scalar_t wG = w[s * N + n] * h[1];
      part += wG;
      gpuAtomicAdd(gw + s * N + n, h[0]);
      gpuAtomicAdd(gd + s * N + n, wG);
    }
    part = warp_sum(part);
    if ((threadIdx.x & 31) == 0) part_sums[j][threadIdx.x >> 5] = part;
  }
  __syncthreads();
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t batch_sum(scalar_t (*part_sums)[kWarps], int j) {
  scalar_t sum = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) sum += part_sums[j][w];
  return sum;
}

template <typename scalar_t>
__global__ void ep_backward_kernel(const GradView<scalar_t> gs, const GradView<scalar_t> gm,
                                   const int64_t* __restrict__ s_off, const int64_t* __restrict__ s_n,
                                   const scalar_t* __restrict__ s_rise, const int64_t* __restrict__ x_off,
                                   const int64_t* __restrict__ x_i, const scalar_t* __restrict__ wT,
                                   const int32_t* __restrict__ dT, const scalar_t* __restrict__ rT,
                                   const int32_t* __restrict__ eT, const scalar_t* __restrict__ reg, scalar_t* hist_all,
                                   scalar_t* gU_all, scalar_t* gV_all, scalar_t* gUn_all, scalar_t* gSn_all,
                                   scalar_t* gx, scalar_t* gwT, scalar_t* gdT, scalar_t* grT, scalar_t* geT,
                                   int64_t T, int64_t B, int64_t F, int64_t N, int64_t per, bool in_shared,
                                   int64_t mask, scalar_t a, scalar_t bs, scalar_t one_a_c, scalar_t th,
                                   scalar_t th_term, scalar_t min_den) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ scalar_t part_sums[kBatch][kWarps];  // per event of a batch, per warp
  const int64_t b = blockIdx.x;
  const int64_t n_lo = blockIdx.y * per, n_hi = n_lo + per < N ? n_lo + per : N;  // this block's neurons
  const bool split = gridDim.y > 1;  // other blocks hold the sample's other neurons
  // the block's state: history [slot][neuron][gS, G], gU, gV, gUn, gSn; neuron n at n - nb
  scalar_t *hist, *gU, *gV, *gUn, *gSn;
  int64_t rs, nb;
  if (in_shared) {
    hist = reinterpret_cast<scalar_t*>(smem);
    gU = hist + (mask + 1) * per * 2;
    rs = per;
    nb = n_lo;
    for (int64_t k = threadIdx.x; k < ((mask + 1) * 2 + 4) * per; k += blockDim.x) hist[k] = scalar_t(0);
    __syncthreads();
  } else {
    hist = hist_all + b * N * (mask + 1) * 2;
    gU = gU_all + b * N;
    rs = N;
    nb = 0;
  }
  gV = in_shared ? gU + per : gV_all + b * N;
  gUn = in_shared ? gV + per : gUn_all + b * N;
  gSn = in_shared ? gUn + per : gSn_all + b * N;
  const bool recurrent = rT != nullptr;
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t st = t & mask;
    const int64_t cell = t * B + b;
    const scalar_t* gs_row = gs.p != nullptr ? gs.p + t * gs.st + b * gs.sb : nullptr;
    const scalar_t* gm_row = gm.p != nullptr ? gm.p + t * gm.st + b * gm.sb : nullptr;
    for (int64_t n = n_lo + threadIdx.x; n < n_hi; n += blockDim.x) {
      scalar_t v = a * gUn[n - nb];
      if (gm_row != nullptr) v = v + gm_row[n * gm.sn];
      gV[n - nb] = v;
      gU[n - nb] = v;
    }
    __syncthreads();
    // spikes of step t: jump of g_U at the spiking neuron (a neuron spikes at most once a step)
    const auto jump = [&](int64_t q, int64_t n, scalar_t rec_sum) {
      scalar_t tsens = gs_row != nullptr ? gs_row[n * gs.sn] : scalar_t(0);
      if (recurrent) tsens = tsens + rec_sum;
      const scalar_t r = s_rise[q];
      // the loss on V jumps with the reset: (l_V^- - l_V^+) = theta dL/dV_t
      if (gm_row != nullptr) tsens = tsens + th * gm_row[n * gm.sn];
      tsens = tsens - (r + th_term) * gV[n - nb];
      scalar_t g = -tsens / (r > min_den ? r : min_den);
      if (reg != nullptr) g = g + reg[n];
      gU[n - nb] = g;
    };
    const int64_t s0 = s_off[cell], s1 = s_off[cell + 1];
    if (!recurrent) {  // no sum over other neurons: the thread that owns the neuron
      for (int64_t q = s0; q < s1; ++q) {
        const int64_t n = s_n[q];
        if (n >= n_lo && n < n_hi && (n - n_lo) % blockDim.x == threadIdx.x) jump(q, n, scalar_t(0));
      }
    }
    for (int64_t q0 = s0; recurrent && q0 < s1; q0 += kBatch) {
      const int ne = static_cast<int>(s1 - q0 < kBatch ? s1 - q0 : kBatch);
      sample_history(s_n, q0, ne, rT, eT, hist, rs, nb, grT, geT, st, mask, N, n_lo, n_hi, part_sums);
      if (threadIdx.x < ne) jump(q0 + threadIdx.x, s_n[q0 + threadIdx.x], batch_sum(part_sums, threadIdx.x));
      __syncthreads();  // before part_sums is rewritten
    }
    __syncthreads();
    for (int64_t n = n_lo + threadIdx.x; n < n_hi; n += blockDim.x) {
      const int64_t k = n - nb;
      const scalar_t u = gU[k];
      const scalar_t gS = one_a_c * u + bs * gSn[k];
      // arrival one step later: g_S,t+1 - g_S,t (the forward difference of the loss)
      const scalar_t G = gSn[k] - gS;
      scalar_t* h = hist + (st * rs + k) * 2;
      h[0] = gS;
      h[1] = G;
      gUn[k] = u;
      gSn[k] = gS;
    }
    __syncthreads();
    // input spikes of step t sample the history at t + d
    const int64_t e0 = x_off[cell], e1 = x_off[cell + 1];
    for (int64_t q0 = e0; q0 < e1; q0 += kBatch) {
      const int ne = static_cast<int>(e1 - q0 < kBatch ? e1 - q0 : kBatch);
      sample_history(x_i, q0, ne, wT, dT, hist, rs, nb, gwT, gdT, st, mask, N, n_lo, n_hi, part_sums);
      if (threadIdx.x < ne) {
        const scalar_t sum = batch_sum(part_sums, threadIdx.x);
        scalar_t* g = gx + cell * F + x_i[q0 + threadIdx.x];
        if (split) {
          gpuAtomicAdd(g, sum);
        } else {
          *g = sum;
        }
      }
      __syncthreads();  // before part_sums is rewritten
    }
  }
}

// A kernel launched with more dynamic shared memory than the default must opt in first.
template <typename Kernel>
cudaError_t allow_shared(Kernel kernel, size_t bytes) {
  if (bytes <= kDefaultShared) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

}  // namespace

EpPlan plan(bool backward, bool recurrent, int64_t B, int64_t N, int64_t L, size_t elem) {
  EpPlan p{1, N, static_cast<unsigned>(kEpThreads), false, backward ? 0 : static_cast<size_t>(N)};
  int dev = 0, sms = 1, optin = 0;
  if (B <= 0 || N <= 0 || cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    return p;
  }
  if (!recurrent && N > 64) {  // about two blocks per SM, at least 64 neurons a block
    const int64_t want = (2 * static_cast<int64_t>(sms) + B - 1) / B;
    const int64_t most = (N + 63) / 64;
    const int64_t parts = want < 1 ? 1 : (want < most ? want : most);
    p.parts = static_cast<unsigned>(parts);
    p.per = (N + parts - 1) / parts;
    const int64_t threads = (p.per + 31) / 32 * 32;
    p.threads = static_cast<unsigned>(threads < kEpThreads ? threads : kEpThreads);
  }
  // the state of a block's neurons: forward ring (L rows) + S + V, backward history (2 L rows) +
  // gU, gV, gUn, gSn; the forward's N spike flags come after it
  const int64_t rows = backward ? 2 * L + 4 : L + 2;
  const size_t state = static_cast<size_t>(rows * p.per) * elem;
  const size_t limit = optin > kStaticSharedReserve ? static_cast<size_t>(optin - kStaticSharedReserve) : 0;
  if (state + p.shared_bytes <= limit) {
    p.in_shared = true;
    p.shared_bytes += state;
  }
  return p;
}

template <typename scalar_t>
cudaError_t launch_forward(const EpPlan& p, const scalar_t* x, const scalar_t* wT, const int32_t* dT,
                           const scalar_t* rT, const int32_t* eT, scalar_t* ring, scalar_t* S, scalar_t* V,
                           scalar_t* spk, scalar_t* mem, int64_t T, int64_t B, int64_t F, int64_t N, int64_t mask,
                           double alpha, double beta, double syn_scale, double threshold, cudaStream_t stream) {
  const cudaError_t e = allow_shared(ep_forward_kernel<scalar_t>, p.shared_bytes);
  if (e != cudaSuccess) return e;
  // a = membrane decay (snnTorch beta), bs = synaptic decay (alpha), as in the reference
  ep_forward_kernel<scalar_t><<<dim3(static_cast<unsigned int>(B), p.parts), p.threads, p.shared_bytes, stream>>>(
      x, wT, dT, rT, eT, ring, S, V, spk, mem, T, B, F, N, p.per, p.in_shared, mask, static_cast<scalar_t>(beta),
      static_cast<scalar_t>(alpha), static_cast<scalar_t>((1.0 - beta) * syn_scale), static_cast<scalar_t>(threshold));
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t launch_backward(const EpPlan& p, GradView<scalar_t> gs, GradView<scalar_t> gm, const int64_t* s_off,
                            const int64_t* s_n, const scalar_t* s_rise, const int64_t* x_off, const int64_t* x_i,
                            const scalar_t* wT, const int32_t* dT, const scalar_t* rT, const int32_t* eT,
                            const scalar_t* reg, scalar_t* hist, scalar_t* gU, scalar_t* gV, scalar_t* gUn,
                            scalar_t* gSn, scalar_t* gx, scalar_t* gwT, scalar_t* gdT, scalar_t* grT, scalar_t* geT,
                            int64_t T, int64_t B, int64_t F, int64_t N, int64_t mask, double alpha, double beta,
                            double syn_scale, double threshold, double min_denominator, cudaStream_t stream) {
  const cudaError_t e = allow_shared(ep_backward_kernel<scalar_t>, p.shared_bytes);
  if (e != cudaSuccess) return e;
  ep_backward_kernel<scalar_t><<<dim3(static_cast<unsigned int>(B), p.parts), p.threads, p.shared_bytes, stream>>>(
      gs, gm, s_off, s_n, s_rise, x_off, x_i, wT, dT, rT, eT, reg, hist, gU, gV, gUn, gSn, gx, gwT, gdT, grT, geT,
      T, B, F, N, p.per, p.in_shared, mask, static_cast<scalar_t>(beta), static_cast<scalar_t>(alpha),
      static_cast<scalar_t>((1.0 - beta) * syn_scale), static_cast<scalar_t>(threshold),
      static_cast<scalar_t>((1.0 - beta) * threshold), static_cast<scalar_t>(min_denominator));
  return cudaGetLastError();
}

#define SDX_EP_INSTANTIATE(T_)                                                                                \
  template cudaError_t launch_forward<T_>(const EpPlan&, const T_*, const T_*, const int32_t*, const T_*,        \
                                          const int32_t*, T_*, T_*, T_*, T_*, T_*, int64_t, int64_t, int64_t,    \
                                          int64_t, int64_t, double, double, double, double, cudaStream_t);       \
  template cudaError_t launch_backward<T_>(const EpPlan&, GradView<T_>, GradView<T_>, const int64_t*,            \
                                           const int64_t*, const T_*, const int64_t*, const int64_t*, const T_*, \
                                           const int32_t*, const T_*, const int32_t*, const T_*, T_*, T_*, T_*,  \
                                           T_*, T_*, T_*, T_*, T_*, T_*, T_*, int64_t, int64_t, int64_t,         \
                                           int64_t, int64_t, double, double, double, double, double, cudaStream_t);
SDX_EP_INSTANTIATE(float)
SDX_EP_INSTANTIATE(double)
#undef SDX_EP_INSTANTIATE

}  // namespace eventprop_cuda
}  // namespace snn_delays_ext
