// CUDA kernels of the snn_delays_ext custom ops (schemas in ../delays.cpp).
//
// Same math and banded-tap conventions as the CPU kernels. Feed-forward ops run one thread per
// output element, except synaptic delays on sparse inputs, which run event-driven (see
// kEventDensity). The recurrent op runs the whole sequence in one kernel per direction (one block
// per batch element) for layers of up to kWholeSequenceMaxN neurons; larger ones keep the time
// loop on the host: per step one gather kernel, one cuBLAS GEMM (axonal: delayed (B, N) x W^T)
// and one LIF kernel, and the reverse loop with one adjoint kernel and one GEMM per step. Both
// then take the weight gradient as one GEMM over all steps and the tap gradient as a reduction.

#include <Python.h>

#include <ATen/ATen.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "../common.h"
#include "../op_checks.h"

extern "C" {
PyObject* PyInit__C_cuda(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C_cuda", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace snn_delays_ext {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

// Threads for a block whose threads loop over n items: n rounded up to whole warps, at most cap.
inline int warp_multiple(int64_t n, int64_t cap) {
  return static_cast<int>(std::min<int64_t>(cap, (n + 31) / 32 * 32));
}

template <typename scalar_t>
__device__ scalar_t block_sum(scalar_t v) {
  __shared__ scalar_t buf[kThreads];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  return buf[0];
}

// ---- delay_channels -------------------------------------------------------------------------
template <typename scalar_t>
__global__ void delay_channels_fwd_kernel(const scalar_t* x, const int64_t* start, const scalar_t* vals,
                                          scalar_t* y, int64_t T, int64_t B, int64_t C, int64_t W) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= T * B * C) return;
  const int64_t c = idx % C, b = (idx / C) % B, t = idx / (B * C);
  scalar_t acc = 0;
  for (int64_t w = 0; w < W; ++w) {
    const scalar_t v = vals[c * W + w];
    const int64_t lag = safe_lag(start[c]) + w;
    if (v == scalar_t(0) || lag < 0 || lag > t) continue;
    acc += v * x[((t - lag) * B + b) * C + c];
  }
  y[idx] = acc;
}

template <typename scalar_t>
__global__ void delay_channels_bwd_x_kernel(const scalar_t* gy, const int64_t* start, const scalar_t* vals,
                                            scalar_t* gx, int64_t T, int64_t B, int64_t C, int64_t W) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= T * B * C) return;
  const int64_t c = idx % C, b = (idx / C) % B, t = idx / (B * C);
  scalar_t acc = 0;
  for (int64_t w = 0; w < W; ++w) {
    const scalar_t v = vals[c * W + w];
    const int64_t lag = safe_lag(start[c]) + w;
    if (v == scalar_t(0) || lag < 0 || t + lag >= T) continue;
    acc += v * gy[((t + lag) * B + b) * C + c];
  }
  gx[idx] = acc;
}

// one block per (c, w): sum over (t, b) of gy[t, b, c] x[t - lag, b, c]
template <typename scalar_t>
__global__ void delay_channels_bwd_vals_kernel(const scalar_t* gy, const scalar_t* x, const int64_t* start,
                                               scalar_t* gv, int64_t T, int64_t B, int64_t C, int64_t W) {
  const int64_t cw = blockIdx.x;
  const int64_t c = cw / W, w = cw % W;
  const int64_t lag = safe_lag(start[c]) + w;
  scalar_t acc = 0;
  if (lag >= 0) {
    for (int64_t tb = threadIdx.x; tb < T * B; tb += blockDim.x) {
      const int64_t t = tb / B, b = tb % B;
      if (lag > t) continue;
      acc += gy[(t * B + b) * C + c] * x[((t - lag) * B + b) * C + c];
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) gv[cw] = acc;
}

at::Tensor delay_channels_cuda(const at::Tensor& x_, const at::Tensor& start_, const at::Tensor& vals_) {
  checks::delay_channels(x_, start_, vals_);
  c10::cuda::CUDAGuard guard(x_.device());
  auto x = x_.contiguous();
  auto start = start_.contiguous();
  auto vals = vals_.to(x.scalar_type()).contiguous();
  const int64_t T = x.size(0), B = x.size(1), C = x.size(2), W = vals.size(-1);
  auto y = at::empty_like(x);
  if (y.numel() == 0) return y;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "delay_channels_cuda", [&] {
    delay_channels_fwd_kernel<scalar_t><<<blocks_for(T * B * C), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), start.data_ptr<int64_t>(), vals.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
        T, B, C, W);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

std::tuple<at::Tensor, at::Tensor> delay_channels_backward_cuda(const at::Tensor& gy_, const at::Tensor& x_,
                                                                const at::Tensor& start_, const at::Tensor& vals_) {
  checks::delay_channels_backward(gy_, x_, start_, vals_);
  c10::cuda::CUDAGuard guard(x_.device());
  auto x = x_.contiguous();
  auto gy = gy_.to(x.scalar_type()).contiguous();
  auto start = start_.contiguous();
  auto vals = vals_.to(x.scalar_type()).contiguous();
  const int64_t T = x.size(0), B = x.size(1), C = x.size(2), W = vals.size(-1);
  auto gx = at::zeros_like(x);
  auto gv = at::zeros({C, W}, x.options());
  if (x.numel() == 0) return {gx, gv};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "delay_channels_backward_cuda", [&] {
    delay_channels_bwd_x_kernel<scalar_t><<<blocks_for(T * B * C), kThreads, 0, stream>>>(
        gy.data_ptr<scalar_t>(), start.data_ptr<int64_t>(), vals.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(),
        T, B, C, W);
    delay_channels_bwd_vals_kernel<scalar_t><<<C * W, kThreads, 0, stream>>>(
        gy.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), start.data_ptr<int64_t>(), gv.data_ptr<scalar_t>(),
        T, B, C, W);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {gx, gv};
}

// ---- synaptic_delay (feed-forward) ----------------------------------------------------------
// Dense synaptic kernels: one thread per output element (t, b, o) (forward) or input element
// (t, b, i) (grad_x), the batch index fastest, reading the other side from a (F, T, B) copy:
// the 32 threads of a warp share (t, o, i) and so the lag, and read 32 consecutive entries.
// The result is written in the same (F, T, B) layout and permuted by the host.
template <typename scalar_t>
__global__ void synaptic_fwd_kernel(const scalar_t* xF, const scalar_t* wgt, const int64_t* start,
                                    const scalar_t* vals, scalar_t* yF, int64_t T, int64_t B, int64_t I,
                                    int64_t O, int64_t W) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= T * B * O) return;
  const int64_t b = idx % B, t = (idx / B) % T, o = idx / (T * B);
  scalar_t acc = 0;
  for (int64_t i = 0; i < I; ++i) {
    const scalar_t* v = vals + (o * I + i) * W;
    const int64_t s0 = safe_lag(start[o * I + i]);
    const scalar_t* xi = xF + i * T * B + b;
    scalar_t a = 0;
    for (int64_t w = 0; w < W; ++w) {
      const int64_t src = t - (s0 + w);  // a negative lag reads ahead, as on the CPU
      if (v[w] == scalar_t(0) || src < 0 || src >= T) continue;
      a += v[w] * xi[src * B];
    }
    acc += wgt[o * I + i] * a;
  }
  yF[idx] = acc;
}

template <typename scalar_t>
__global__ void synaptic_bwd_x_kernel(const scalar_t* gyF, const scalar_t* wgt, const int64_t* start,
                                      const scalar_t* vals, scalar_t* gxF, int64_t T, int64_t B, int64_t I,
                                      int64_t O, int64_t W) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= T * B * I) return;
  const int64_t b = idx % B, t = (idx / B) % T, i = idx / (T * B);
  scalar_t acc = 0;
  for (int64_t o = 0; o < O; ++o) {
    const scalar_t* v = vals + (o * I + i) * W;
    const int64_t s0 = safe_lag(start[o * I + i]);
    const scalar_t* go = gyF + o * T * B + b;
    scalar_t a = 0;
    for (int64_t w = 0; w < W; ++w) {
      const int64_t dst = t + s0 + w;
      if (v[w] == scalar_t(0) || dst < 0 || dst >= T) continue;
      a += v[w] * go[dst * B];
    }
    acc += wgt[o * I + i] * a;
  }
  gxF[idx] = acc;
}

// one block per connection (o, i): reductions over (t, b) for the weight and tap gradients, on
// (F, T, B) copies of grad_y and x (consecutive threads read consecutive entries)
template <typename scalar_t>
__global__ void synaptic_bwd_wv_kernel(const scalar_t* gyF, const scalar_t* xF, const scalar_t* wgt,
                                       const int64_t* start, const scalar_t* vals, scalar_t* gw, scalar_t* gv,
                                       int64_t T, int64_t B, int64_t I, int64_t O, int64_t W) {
  const int64_t oi = blockIdx.x;
  const int64_t o = oi / I, i = oi % I;
  const int64_t s0 = safe_lag(start[oi]);
  scalar_t accw = 0;
  for (int64_t w = 0; w < W; ++w) {
    const int64_t lag = s0 + w;
    scalar_t a = 0;
    for (int64_t tb = threadIdx.x; tb < T * B; tb += blockDim.x) {
      const int64_t t = tb / B;
      if (t + lag < 0 || t + lag >= T) continue;
      a += gyF[o * T * B + tb + lag * B] * xF[i * T * B + tb];
    }
    a = block_sum(a);
    __syncthreads();
    if (threadIdx.x == 0) {
      gv[oi * W + w] = wgt[oi] * a;
      accw += vals[oi * W + w] * a;
    }
  }
  if (threadIdx.x == 0) gw[oi] = accw;
}

// ---- synaptic_delay, event-driven ----------------------------------------------------------
// Spike inputs are mostly zeros. Below kEventDensity non-zeros the op works on the input's
// events (the non-zeros, grouped by input channel): the forward scatters each event through its
// channel's fan-out (out x W taps, atomic adds into y), the backward gathers the output gradient
// at each event's delayed steps for the weight and tap gradients. Work is proportional to
// events x out x W instead of T x B x in x out x W. grad_x (when asked for) stays dense: it is
// needed at every input position. The same threshold as the CPU kernels' compressed path.
constexpr double kEventDensity = 0.15;
// Events of one channel that one block of the weight/tap-gradient kernel walks.
constexpr int64_t kEventsPerBlock = 256;

// The non-zeros of x (T, B, I), grouped by channel: channel i owns entries
// [offsets[i], offsets[i + 1]) of pos (t * B + b) and val; max_count = the largest group.
struct InputEvents {
  at::Tensor pos, val, chan, offsets;
  int64_t count = 0, max_count = 0;
};

InputEvents input_events(const at::Tensor& x) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2);
  const int64_t TB = T * B;
  auto flat = x.permute({2, 0, 1}).contiguous().view(-1);  // channel-major: (I, T, B)
  auto nz = at::nonzero(flat).view(-1);                    // sorted: grouped by channel
  InputEvents ev;
  ev.count = nz.numel();
  ev.val = flat.index_select(0, nz);
  ev.pos = nz.remainder(TB);
  ev.chan = nz.div(TB, "floor");
  ev.offsets = at::searchsorted(nz, at::arange(I + 1, nz.options()).mul_(TB));
  ev.max_count = ev.count == 0 ? 0 : ev.offsets.diff().max().item<int64_t>();
  return ev;
}

// Whether the event-driven kernels run for x: sparse enough, and not asked for deterministic
// algorithms (the scatter's atomic adds sum in no fixed order).
bool use_events(const at::Tensor& x) {
  const int64_t n = x.numel();
  if (n == 0 || at::globalContext().deterministicAlgorithms()) return false;
  return static_cast<double>(at::count_nonzero(x).item<int64_t>()) < kEventDensity * static_cast<double>(n);
}

// One block per event (grid-stride), threads over the outputs: the parameters are read in the
// (in, out) layout, so a warp reads contiguous weights, lags and taps of the event's channel.
template <typename scalar_t>
__global__ void synaptic_event_fwd_kernel(const int64_t* pos, const int64_t* chan, const scalar_t* val,
                                          int64_t E, const scalar_t* wT, const int64_t* sT, const scalar_t* vT,
                                          scalar_t* y, int64_t T, int64_t B, int64_t O, int64_t W) {
  for (int64_t e = blockIdx.x; e < E; e += gridDim.x) {
    const int64_t p = pos[e], i = chan[e];
    const int64_t t = p / B, b = p % B;
    const scalar_t xv = val[e];
    for (int64_t o = threadIdx.x; o < O; o += blockDim.x) {
      const int64_t io = i * O + o;
      const scalar_t c = wT[io] * xv;
      const int64_t s0 = safe_lag(sT[io]);
      for (int64_t w = 0; w < W; ++w) {
        const scalar_t v = vT[io * W + w];
        const int64_t dst = t + s0 + w;
        if (v == scalar_t(0) || dst < 0 || dst >= T) continue;
        gpuAtomicAdd(y + (dst * B + b) * O + o, c * v);
      }
    }
  }
}

// Block (chunk, i): kEventsPerBlock events of channel i; threads over the outputs o. Each
// thread sums val * grad_y at the event's delayed steps per tap, then adds its partial sums to
// grad_vals (w[o, i] * sum) and grad_weight (sum_w vals * sum) of the connection (o, i).
template <typename scalar_t>
__global__ void synaptic_event_bwd_wv_kernel(const int64_t* pos, const scalar_t* val, const int64_t* offsets,
                                             const scalar_t* gy, const scalar_t* wT, const int64_t* sT,
                                             const scalar_t* vT, scalar_t* gwT, scalar_t* gvT, int64_t T,
                                             int64_t B, int64_t O, int64_t W) {
  const int64_t i = blockIdx.y;
  const int64_t e0 = offsets[i] + blockIdx.x * kEventsPerBlock;
  const int64_t e1 = offsets[i + 1] < e0 + kEventsPerBlock ? offsets[i + 1] : e0 + kEventsPerBlock;
  if (e0 >= e1) return;
  constexpr int kMaxW = 8;  // taps summed in registers; wider bands loop in groups of kMaxW
  for (int64_t o = threadIdx.x; o < O; o += blockDim.x) {
    const int64_t io = i * O + o;
    const int64_t s0 = safe_lag(sT[io]);
    scalar_t gw = 0;
    for (int64_t w0 = 0; w0 < W; w0 += kMaxW) {
      const int64_t nw = W - w0 < kMaxW ? W - w0 : kMaxW;
      scalar_t acc[kMaxW] = {};
      for (int64_t e = e0; e < e1; ++e) {
        const int64_t p = pos[e];
        const int64_t t = p / B, b = p % B;
        const scalar_t xv = val[e];
        for (int64_t k = 0; k < nw; ++k) {
          const int64_t dst = t + s0 + w0 + k;
          if (dst >= 0 && dst < T) acc[k] += xv * gy[(dst * B + b) * O + o];
        }
      }
      for (int64_t k = 0; k < nw; ++k) {
        gpuAtomicAdd(gvT + io * W + w0 + k, wT[io] * acc[k]);
        gw += vT[io * W + w0 + k] * acc[k];
      }
    }
    gpuAtomicAdd(gwT + io, gw);
  }
}

at::Tensor synaptic_delay_cuda(const at::Tensor& x_, const at::Tensor& weight_, const at::Tensor& start_,
                               const at::Tensor& vals_) {
  checks::synaptic_delay(x_, weight_, start_, vals_);
  c10::cuda::CUDAGuard guard(x_.device());
  auto x = x_.contiguous();
  auto wgt = weight_.to(x.scalar_type()).contiguous();
  auto start = start_.contiguous();
  auto vals = vals_.to(x.scalar_type()).contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), O = wgt.size(0), W = vals.size(-1);
  if (T * B * O == 0) return at::empty({T, B, O}, x.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (use_events(x)) {
    auto y = at::zeros({T, B, O}, x.options());
    const auto ev = input_events(x);
    if (ev.count == 0 || W == 0) return y;
    auto wT = wgt.t().contiguous();
    auto sT = start.t().contiguous();
    auto vT = vals.transpose(0, 1).contiguous();
    const int threads = warp_multiple(O, kThreads);
    const int blocks = static_cast<int>(std::min<int64_t>(ev.count, int64_t(1) << 20));
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "synaptic_delay_cuda_events", [&] {
      synaptic_event_fwd_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
          ev.pos.data_ptr<int64_t>(), ev.chan.data_ptr<int64_t>(), ev.val.data_ptr<scalar_t>(), ev.count,
          wT.data_ptr<scalar_t>(), sT.data_ptr<int64_t>(), vT.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), T,
          B, O, W);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
  }
  auto xF = x.permute({2, 0, 1}).contiguous();  // (I, T, B)
  auto yF = at::empty({O, T, B}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "synaptic_delay_cuda", [&] {
    synaptic_fwd_kernel<scalar_t><<<blocks_for(T * B * O), kThreads, 0, stream>>>(
        xF.data_ptr<scalar_t>(), wgt.data_ptr<scalar_t>(), start.data_ptr<int64_t>(), vals.data_ptr<scalar_t>(),
        yF.data_ptr<scalar_t>(), T, B, I, O, W);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return yF.permute({1, 2, 0}).contiguous();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> synaptic_delay_backward_cuda(
    const at::Tensor& gy_, const at::Tensor& x_, const at::Tensor& weight_, const at::Tensor& start_,
    const at::Tensor& vals_, bool input_grad) {
  checks::synaptic_delay_backward(gy_, x_, weight_, start_, vals_);
  c10::cuda::CUDAGuard guard(x_.device());
  auto x = x_.contiguous();
  auto gy = gy_.to(x.scalar_type()).contiguous();
  auto wgt = weight_.to(x.scalar_type()).contiguous();
  auto start = start_.contiguous();
  auto vals = vals_.to(x.scalar_type()).contiguous();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), O = wgt.size(0), W = vals.size(-1);
  auto gx = at::empty({0}, x.options());  // input_grad=False: no grad_x
  auto gw = at::zeros_like(wgt);
  auto gv = at::zeros_like(vals);
  if (x.numel() == 0 || O == 0) return {input_grad ? at::zeros_like(x) : gx, gw, gv};
  auto stream = c10::cuda::getCurrentCUDAStream();
  const bool events = use_events(x);
  // (O, T, B) copy of grad_y for the dense kernels (grad_x, and the weight/tap gradients of a
  // dense input); the event kernel reads grad_y as it is
  auto gyF = (input_grad || !events) ? gy.permute({2, 0, 1}).contiguous() : at::Tensor();
  if (input_grad) {
    auto gxF = at::empty({I, T, B}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "synaptic_delay_backward_cuda", [&] {
      synaptic_bwd_x_kernel<scalar_t><<<blocks_for(T * B * I), kThreads, 0, stream>>>(
          gyF.data_ptr<scalar_t>(), wgt.data_ptr<scalar_t>(), start.data_ptr<int64_t>(),
          vals.data_ptr<scalar_t>(), gxF.data_ptr<scalar_t>(), T, B, I, O, W);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gx = gxF.permute({1, 2, 0}).contiguous();
  }
  if (events) {
    const auto ev = input_events(x);
    if (ev.count == 0 || W == 0) return {gx, gw, gv};
    auto wT = wgt.t().contiguous();
    auto sT = start.t().contiguous();
    auto vT = vals.transpose(0, 1).contiguous();
    auto gwT = at::zeros_like(wT);
    auto gvT = at::zeros_like(vT);
    const int threads = warp_multiple(O, kThreads);
    const dim3 grid(static_cast<unsigned>((ev.max_count + kEventsPerBlock - 1) / kEventsPerBlock),
                    static_cast<unsigned>(I));
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "synaptic_delay_backward_cuda_events", [&] {
      synaptic_event_bwd_wv_kernel<scalar_t><<<grid, threads, 0, stream>>>(
          ev.pos.data_ptr<int64_t>(), ev.val.data_ptr<scalar_t>(), ev.offsets.data_ptr<int64_t>(),
          gy.data_ptr<scalar_t>(), wT.data_ptr<scalar_t>(), sT.data_ptr<int64_t>(), vT.data_ptr<scalar_t>(),
          gwT.data_ptr<scalar_t>(), gvT.data_ptr<scalar_t>(), T, B, O, W);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {gx, gwT.t().contiguous(), gvT.transpose(0, 1).contiguous()};
  }
  auto xF = x.permute({2, 0, 1}).contiguous();  // (I, T, B)
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "synaptic_delay_backward_cuda_wv", [&] {
    synaptic_bwd_wv_kernel<scalar_t><<<O * I, kThreads, 0, stream>>>(
        gyF.data_ptr<scalar_t>(), xF.data_ptr<scalar_t>(), wgt.data_ptr<scalar_t>(), start.data_ptr<int64_t>(),
        vals.data_ptr<scalar_t>(), gw.data_ptr<scalar_t>(), gv.data_ptr<scalar_t>(), T, B, I, O, W);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {gx, gw, gv};
}

// ---- recurrent LIF ----------------------------------------------------------------------------
// Delayed activity of presynaptic neuron j of batch element b at step t (axonal delays).
template <typename scalar_t>
__device__ __forceinline__ scalar_t rec_axonal_activity(const uint8_t* bits, const int64_t* start, const scalar_t* vals,
                                                        int64_t t, int64_t b, int64_t j, int64_t B, int64_t N,
                                                        int64_t W) {
  scalar_t acc = 0;
  for (int64_t w = 0; w < W; ++w) {
    const scalar_t v = vals[j * W + w];
    const int64_t lag = safe_lag(start[j]) + w;
    if (v == scalar_t(0) || lag < 1 || lag > t) continue;
    if (bits[((t - lag) * B + b) * N + j]) acc += v;
  }
  return acc;
}

// delayed presynaptic activity at steps t0 .. t0 + nt - 1 (axonal), from the spike bytes
template <typename scalar_t>
__global__ void rec_gather_axonal_kernel(const uint8_t* bits, const int64_t* start, const scalar_t* vals,
                                         scalar_t* out, int64_t t0, int64_t nt, int64_t B, int64_t N, int64_t W) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= nt * B * N) return;
  const int64_t j = idx % N, b = (idx / N) % B, t = t0 + idx / (B * N);
  out[idx] = rec_axonal_activity<scalar_t>(bits, start, vals, t, b, j, B, N, W);
}

// Recurrent synaptic input of neuron i of batch element b at step t (synaptic delays): a gather
// over presynaptic neurons and taps of the spike bytes (before the dropout scale and the bias).
template <typename scalar_t>
__device__ __forceinline__ scalar_t rec_synaptic_input(const uint8_t* bits, const scalar_t* wgt, const int64_t* start,
                                                       const scalar_t* vals, int64_t t, int64_t b, int64_t i,
                                                       int64_t B, int64_t N, int64_t W) {
  scalar_t acc = 0;
  for (int64_t j = 0; j < N; ++j) {
    const scalar_t* v = vals + (i * N + j) * W;
    const int64_t s0 = safe_lag(start[i * N + j]);
    scalar_t a = 0;
    for (int64_t w = 0; w < W; ++w) {
      const int64_t lag = s0 + w;
      if (v[w] == scalar_t(0) || lag < 1 || lag > t) continue;
      if (bits[((t - lag) * B + b) * N + j]) a += v[w];
    }
    acc += wgt[i * N + j] * a;
  }
  return acc;
}

// recurrent current at step t (synaptic), with the dropout scale and the bias
template <typename scalar_t>
__global__ void rec_current_synaptic_kernel(const uint8_t* bits, const scalar_t* wgt, const int64_t* start,
                                            const scalar_t* vals, const scalar_t* bias, const scalar_t* scale,
                                            scalar_t* r, int64_t t, int64_t B, int64_t N, int64_t W) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * N) return;
  const int64_t i = idx % N, b = idx / N;
  scalar_t acc = rec_synaptic_input<scalar_t>(bits, wgt, start, vals, t, b, i, B, N, W);
  if (scale) acc *= scale[idx];
  r[idx] = bias ? acc + bias[i] : acc;
}

// The LIF update of element idx = b * N + j at step t with recurrent input r (snnTorch's
// membrane, reset and spike; shared by the per-step and the whole-sequence kernels).
template <typename scalar_t>
__device__ __forceinline__ void lif_update(const scalar_t* x, scalar_t r, const scalar_t* beta, const scalar_t* thr,
                                           scalar_t* mem, scalar_t* spk, uint8_t* bits, scalar_t* pre, int64_t t,
                                           int64_t BN, int64_t idx, int64_t j, int64_t reset) {
  const int64_t off = t * BN + idx;
  const scalar_t mp = t > 0 ? mem[off - BN] : scalar_t(0);
  const scalar_t base = beta[j] * mp + x[off] + r;
  const bool rs = carries_reset(reset) && (mp - thr[j]) > scalar_t(0);
  scalar_t m = lif_reset_start<scalar_t>(base, thr[j], rs, reset_kind(reset));
  const bool s = (m - thr[j]) > scalar_t(0);
  if (pre) {  // reset_delay=False: the spike resets in its own step
    pre[off] = m;
    m = lif_reset_same_step<scalar_t>(m, thr[j], rs, s, reset_kind(reset));
  }
  mem[off] = m;
  spk[off] = s ? scalar_t(1) : scalar_t(0);
  bits[off] = s ? 1 : 0;
}

template <typename scalar_t>
__global__ void rec_lif_kernel(const scalar_t* x, const scalar_t* r, const scalar_t* beta, const scalar_t* thr,
                               scalar_t* mem, scalar_t* spk, uint8_t* bits, scalar_t* pre, int64_t t, int64_t B,
                               int64_t N, int64_t reset) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * N) return;
  lif_update<scalar_t>(x, r[idx], beta, thr, mem, spk, bits, pre, t, B * N, idx, idx % N, reset);
}

// ---- recurrent LIF, the whole sequence in one kernel ------------------------------------------
// Batch elements are independent, so one block runs the whole time loop of one batch element,
// one thread per neuron, with a __syncthreads() between steps and no launch per step (the
// per-step loop launches a gather, a GEMM and a LIF kernel per step). The same algorithm as the
// CPU kernel: per step the delayed presynaptic activity goes to shared memory, and the
// matrix-vector product skips the presynaptic neurons whose delayed activity is zero (spikes are
// sparse; a uniform branch, every thread reads the same entry), summing in the same order (j
// ascending). Used for N <= kWholeSequenceMaxN; the environment variable
// SNN_DELAYS_CUDA_RECURRENT=steps selects the per-step loop (to compare the two).
constexpr int64_t kWholeSequenceMaxN = 1024;

inline bool use_whole_sequence_kernel(int64_t N) {
  const char* env = std::getenv("SNN_DELAYS_CUDA_RECURRENT");
  if (env != nullptr && std::string(env) == "steps") return false;
  return N <= kWholeSequenceMaxN;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kWholeSequenceMaxN)
rec_forward_sequence_kernel(const scalar_t* x, const scalar_t* wgt, const scalar_t* wT,
                            const scalar_t* bias, const scalar_t* scale, const int64_t* start,
                            const scalar_t* vals, const scalar_t* beta, const scalar_t* thr,
                            scalar_t* mem, scalar_t* spk, uint8_t* bits, scalar_t* pre, int64_t T,
                            int64_t B, int64_t N, int64_t W, int64_t reset, bool synaptic){
  extern __shared__ __align__(16) unsigned char smem[];
  scalar_t* act = reinterpret_cast<scalar_t*>(smem);  // (N,) delayed activity of this step
  const int64_t b = blockIdx.x, n = threadIdx.x;
  const bool live = n < N;
  const int64_t idx = b * N + n;
  for (int64_t t = 0; t < T; ++t) {
    scalar_t r = 0;
    if (!synaptic) {
      if (live) act[n] = rec_axonal_activity<scalar_t>(bits, start, vals, t, b, n, B, N, W);
      __syncthreads();
      if (live) {
#pragma unroll 4
        for (int64_t j = 0; j < N; ++j) {
          const scalar_t a = act[j];
          if (a != scalar_t(0)) r += a * wT[j * N + n];
        }
      }
    } else if (live) {
      r = rec_synaptic_input<scalar_t>(bits, wgt, start, vals, t, b, n, B, N, W);
    }
    if (live) {
      if (scale) r *= scale[idx];
      if (bias) r += bias[n];
      lif_update<scalar_t>(x, r, beta, thr, mem, spk, bits, pre, t, B * N, idx, n, reset);
    }
    __syncthreads();  // this step's spikes (and act's readers) done before the next step
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> recurrent_lif_cuda(
    const at::Tensor& x_, const at::Tensor& weight_, const c10::optional<at::Tensor>& bias_,
    const at::Tensor& start_, const at::Tensor& vals_, const at::Tensor& beta_, const at::Tensor& threshold_,
    int64_t reset, int64_t surrogate, double sparam, bool synaptic, bool reset_delay, bool detach_reset,
    const c10::optional<at::Tensor>& rec_scale_) {
  (void)detach_reset;
  checks::recurrent_lif(x_, weight_, bias_, start_, vals_, beta_, threshold_, reset, surrogate, sparam, synaptic,
                        rec_scale_, reset_delay);
  (void)surrogate;
  (void)sparam;
  c10::cuda::CUDAGuard guard(x_.device());
  auto x = x_.contiguous();
  const auto dt = x.scalar_type();
  const int64_t T = x.size(0), B = x.size(1), N = x.size(2);
  auto wgt = weight_.to(dt).contiguous();
  auto beta = beta_.to(dt).contiguous();
  auto thr = threshold_.to(dt).contiguous();
  auto start = start_.contiguous();
  auto vals = vals_.to(dt).contiguous();
  const int64_t W = vals.size(-1);
  at::Tensor bias, scale;
  if (bias_.has_value() && bias_->defined()) bias = bias_->to(dt).contiguous();
  if (rec_scale_.has_value() && rec_scale_->defined()) scale = rec_scale_->contiguous();
  auto spk = at::empty_like(x);
  auto mem = at::empty_like(x);
  auto bits = at::zeros({T, B, N}, x.options().dtype(at::kByte));
  auto pre = reset_delay ? at::empty({0}, x.options()) : at::empty_like(x);
  if (x.numel() == 0) return {spk, mem, bits, pre};
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (use_whole_sequence_kernel(N)) {
    auto wT = synaptic ? at::Tensor() : wgt.t().contiguous();  // (pre j, post n): coalesced over n
    const int threads = warp_multiple(N, kWholeSequenceMaxN);
    AT_DISPATCH_FLOATING_TYPES(dt, "recurrent_lif_cuda_sequence", [&] {
      const size_t shared = synaptic ? 0 : static_cast<size_t>(N) * sizeof(scalar_t);
      rec_forward_sequence_kernel<scalar_t><<<static_cast<unsigned>(B), threads, shared, stream>>>(
          x.data_ptr<scalar_t>(), wgt.data_ptr<scalar_t>(), synaptic ? nullptr : wT.data_ptr<scalar_t>(),
          bias.defined() ? bias.data_ptr<scalar_t>() : nullptr, scale.defined() ? scale.data_ptr<scalar_t>() : nullptr,
          start.data_ptr<int64_t>(), vals.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(), thr.data_ptr<scalar_t>(),
          mem.data_ptr<scalar_t>(), spk.data_ptr<scalar_t>(), bits.data_ptr<uint8_t>(),
          reset_delay ? nullptr : pre.data_ptr<scalar_t>(), T, B, N, W, reset, synaptic);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {spk, mem, bits, pre};
  }
  auto delayed = at::empty({B, N}, x.options());
  auto r = at::empty({B, N}, x.options());
  auto wt = wgt.t();
  AT_DISPATCH_FLOATING_TYPES(dt, "recurrent_lif_cuda", [&] {
    for (int64_t t = 0; t < T; ++t) {
      if (!synaptic) {
        rec_gather_axonal_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
            bits.data_ptr<uint8_t>(), start.data_ptr<int64_t>(), vals.data_ptr<scalar_t>(),
            delayed.data_ptr<scalar_t>(), t, 1, B, N, W);
        if (scale.defined()) {  // recurrent dropout: scale the synaptic input, then the bias
          at::mm_out(r, delayed, wt);
          r.mul_(scale);
          if (bias.defined()) r.add_(bias);
        } else if (bias.defined()) {
          at::addmm_out(r, bias, delayed, wt);
        } else {
          at::mm_out(r, delayed, wt);
        }
      } else {
        rec_current_synaptic_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
            bits.data_ptr<uint8_t>(), wgt.data_ptr<scalar_t>(), start.data_ptr<int64_t>(),
            vals.data_ptr<scalar_t>(), bias.defined() ? bias.data_ptr<scalar_t>() : nullptr,
            scale.defined() ? scale.data_ptr<scalar_t>() : nullptr, r.data_ptr<scalar_t>(), t, B, N, W);
      }
      rec_lif_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(), thr.data_ptr<scalar_t>(),
          mem.data_ptr<scalar_t>(), spk.data_ptr<scalar_t>(), bits.data_ptr<uint8_t>(),
          reset_delay ? nullptr : pre.data_ptr<scalar_t>(), t, B, N, reset);
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {spk, mem, bits, pre};
}

// one reverse step of element idx = b * N + j: dL/dspk_t (external + later recurrent reads),
// LIF adjoint (shared by the per-step and the whole-sequence backward kernels)
template <typename scalar_t>
__device__ __forceinline__ void adjoint_update(const scalar_t* gspk, const scalar_t* gmem, const scalar_t* mem,
                                               const scalar_t* pre, const uint8_t* bits, const scalar_t* beta,
                                               const scalar_t* thr, const int64_t* start, const scalar_t* vals,
                                               const scalar_t* wgt, const scalar_t* gdel, const scalar_t* scale,
                                               scalar_t* gb, scalar_t* carry, scalar_t* gbeta, scalar_t* gthr,
                                               int64_t idx, int64_t t, int64_t T, int64_t B, int64_t N, int64_t W,
                                               int64_t reset, int64_t surrogate, double sparam, bool synaptic,
                                               bool detach_reset) {
  const int64_t j = idx % N, b = idx / N;
  const int64_t off = t * B * N + idx;
  scalar_t gs = gspk[off];
  if (!synaptic) {
    for (int64_t w = 0; w < W; ++w) {
      const scalar_t v = vals[j * W + w];
      const int64_t lag = safe_lag(start[j]) + w;
      if (v == scalar_t(0) || lag < 1 || t + lag >= T) continue;
      gs += v * gdel[((t + lag) * B + b) * N + j];
    }
  } else {
    for (int64_t i = 0; i < N; ++i) {
      const scalar_t* v = vals + (i * N + j) * W;
      const int64_t s0 = safe_lag(start[i * N + j]);
      scalar_t a = 0;
      for (int64_t w = 0; w < W; ++w) {
        const int64_t lag = s0 + w;
        if (v[w] == scalar_t(0) || lag < 1 || t + lag >= T) continue;
        a += v[w] * gb[((t + lag) * B + b) * N + i];
      }
      gs += (scale ? wgt[i * N + j] * scale[b * N + i] : wgt[i * N + j]) * a;
    }
  }
  const scalar_t mp = t > 0 ? mem[off - B * N] : scalar_t(0);
  const bool rs = carries_reset(reset) && (mp - thr[j]) > scalar_t(0);
  const LifAdjoint<scalar_t> a = lif_adjoint<scalar_t>(pre ? pre[off] : mem[off], thr[j], rs, bits[off] != 0, gs,
                                                       gmem[off] + carry[idx], reset_kind(reset), surrogate, sparam,
                                                       pre == nullptr, detach_reset);
  gb[off] = a.gbase;
  carry[idx] = a.gbase * beta[j];
  gbeta[idx] += a.gbase * mp;
  gthr[idx] += a.gthr;
}

template <typename scalar_t>
__global__ void rec_adjoint_kernel(const scalar_t* gspk, const scalar_t* gmem, const scalar_t* mem,
                                   const scalar_t* pre, const uint8_t* bits, const scalar_t* beta,
                                   const scalar_t* thr, const int64_t* start, const scalar_t* vals,
                                   const scalar_t* wgt, const scalar_t* gdel, const scalar_t* scale,
                                   scalar_t* gb, scalar_t* carry,
                                   scalar_t* gbeta, scalar_t* gthr, int64_t t, int64_t T, int64_t B, int64_t N,
                                   int64_t W, int64_t reset, int64_t surrogate, double sparam, bool synaptic,
                                   bool detach_reset) {
  const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= B * N) return;
  adjoint_update<scalar_t>(gspk, gmem, mem, pre, bits, beta, thr, start, vals, wgt, gdel, scale, gb, carry, gbeta,
                           gthr, idx, t, T, B, N, W, reset, surrogate, sparam, synaptic, detach_reset);
}

// The reverse time loop in one kernel (one block per batch element, one thread per neuron, as
// rec_forward_sequence_kernel). Axonal delays: after the adjoint of step t, the gradient of the
// delayed activity gdel[t, b, j] = sum_i W[i, j] scale[b, i] gb[t, b, i] is computed in the block
// (the per-step loop runs a GEMM), skipping zero gradients, summing i ascending.
template <typename scalar_t>
__global__ void __launch_bounds__(kWholeSequenceMaxN)
rec_backward_sequence_kernel(const scalar_t* gspk, const scalar_t* gmem, const scalar_t* mem,
                             const scalar_t* pre, const uint8_t* bits, const scalar_t* beta,
                             const scalar_t* thr, const int64_t* start, const scalar_t* vals,
                             const scalar_t* wgt, scalar_t* gdel, const scalar_t* scale,
                             scalar_t* gb, scalar_t* carry, scalar_t* gbeta, scalar_t* gthr,
                             int64_t T, int64_t B, int64_t N, int64_t W, int64_t reset,
                             int64_t surrogate, double sparam, bool synaptic, bool detach_reset){
  extern __shared__ __align__(16) unsigned char smem[];
  scalar_t* g = reinterpret_cast<scalar_t*>(smem);  // (N,) the recurrent input's gradient at step t
  const int64_t b = blockIdx.x, n = threadIdx.x;
  const bool live = n < N;
  const int64_t idx = b * N + n;
  for (int64_t t = T - 1; t >= 0; --t) {
    if (live)
      adjoint_update<scalar_t>(gspk, gmem, mem, pre, bits, beta, thr, start, vals, wgt, gdel, scale, gb, carry,
                               gbeta, gthr, idx, t, T, B, N, W, reset, surrogate, sparam, synaptic, detach_reset);
    if (!synaptic) {
      if (live) {
        const scalar_t gi = gb[t * B * N + idx];
        g[n] = scale ? gi * scale[idx] : gi;
      }
      __syncthreads();
      if (live) {
        scalar_t acc = 0;
#pragma unroll 8
        for (int64_t i = 0; i < N; ++i) {
          const scalar_t gi = g[i];
          if (gi != scalar_t(0)) acc += gi * wgt[i * N + n];
        }
        gdel[(t * B + b) * N + n] = acc;
      }
    }
    __syncthreads();  // step t's gradients (and g's readers) done before step t - 1
  }
}

// axonal tap gradient: one block per (j, w)
template <typename scalar_t>
__global__ void rec_axonal_vals_kernel(const scalar_t* gdel, const uint8_t* bits, const int64_t* start,
                                       scalar_t* gv, int64_t T, int64_t B, int64_t N, int64_t W) {
  const int64_t jw = blockIdx.x;
  const int64_t j = jw / W, w = jw % W;
  const int64_t lag = safe_lag(start[j]) + w;
  scalar_t acc = 0;
  if (lag >= 1) {
    for (int64_t tb = threadIdx.x; tb < T * B; tb += blockDim.x) {
      const int64_t t = tb / B, b = tb % B;
      if (lag > t) continue;
      if (bits[((t - lag) * B + b) * N + j]) acc += gdel[(t * B + b) * N + j];
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) gv[jw] = acc;
}

// synaptic weight and tap gradients: one block per connection (i, j)
template <typename scalar_t>
__global__ void rec_synaptic_wv_kernel(const scalar_t* gb, const uint8_t* bits, const scalar_t* wgt,
                                       const int64_t* start, const scalar_t* vals, scalar_t* gw, scalar_t* gv,
                                       int64_t T, int64_t B, int64_t N, int64_t W) {
  const int64_t ij = blockIdx.x;
  const int64_t i = ij / N, j = ij % N;
  const int64_t s0 = safe_lag(start[ij]);
  scalar_t accw = 0;
  for (int64_t w = 0; w < W; ++w) {
    const int64_t lag = s0 + w;
    scalar_t a = 0;
    if (lag >= 1) {
      for (int64_t tb = threadIdx.x; tb < T * B; tb += blockDim.x) {
        const int64_t t = tb / B, b = tb % B;
        if (t + lag >= T) continue;
        if (bits[(t * B + b) * N + j]) a += gb[((t + lag) * B + b) * N + i];
      }
    }
    a = block_sum(a);
    __syncthreads();
    if (threadIdx.x == 0) {
      gv[ij * W + w] = wgt[ij] * a;
      accw += vals[ij * W + w] * a;
    }
  }
  if (threadIdx.x == 0) gw[ij] = accw;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> recurrent_lif_backward_cuda(
    const at::Tensor& grad_spk_, const at::Tensor& grad_mem_, const at::Tensor& weight_, const at::Tensor& start_,
    const at::Tensor& vals_, const at::Tensor& beta_, const at::Tensor& threshold_, const at::Tensor& mem_,
    const at::Tensor& bits_, const at::Tensor& pre_mem_, int64_t reset, int64_t surrogate, double sparam,
    bool synaptic, bool reset_delay, bool detach_reset, const c10::optional<at::Tensor>& rec_scale_) {
  checks::recurrent_lif_backward(grad_spk_, grad_mem_, weight_, start_, vals_, beta_, threshold_, mem_, bits_,
                                 pre_mem_, reset, surrogate, sparam, synaptic, reset_delay, rec_scale_);
  at::Tensor scale;
  if (rec_scale_.has_value() && rec_scale_->defined()) scale = rec_scale_->contiguous();
  auto pre = reset_delay ? at::Tensor() : pre_mem_.contiguous();
  c10::cuda::CUDAGuard guard(mem_.device());
  auto mem = mem_.contiguous();
  const auto dt = mem.scalar_type();
  const int64_t T = mem.size(0), B = mem.size(1), N = mem.size(2);
  auto gsp = grad_spk_.to(dt).contiguous();
  auto gmm = grad_mem_.to(dt).contiguous();
  auto wgt = weight_.to(dt).contiguous();
  auto beta = beta_.to(dt).contiguous();
  auto thr = threshold_.to(dt).contiguous();
  auto start = start_.contiguous();
  auto vals = vals_.to(dt).contiguous();
  auto bits = bits_.contiguous();
  const int64_t W = vals.size(-1);
  auto gb = at::zeros({T, B, N}, mem.options());
  auto carry = at::zeros({B, N}, mem.options());
  auto gbeta = at::zeros({B, N}, mem.options());
  auto gthr = at::zeros({B, N}, mem.options());
  auto gdel = synaptic ? at::Tensor() : at::zeros({T, B, N}, mem.options());
  auto gw = at::zeros_like(wgt);
  auto gv = at::zeros_like(vals);
  if (mem.numel() == 0) return {gb, gw, gv, gbeta.sum(0), gthr.sum(0)};
  auto stream = c10::cuda::getCurrentCUDAStream();
  const bool whole = use_whole_sequence_kernel(N);
  AT_DISPATCH_FLOATING_TYPES(dt, "recurrent_lif_backward_cuda", [&] {
    if (whole) {
      const size_t shared = synaptic ? 0 : static_cast<size_t>(N) * sizeof(scalar_t);
      const int threads = warp_multiple(N, kWholeSequenceMaxN);
      rec_backward_sequence_kernel<scalar_t><<<static_cast<unsigned>(B), threads, shared, stream>>>(
          gsp.data_ptr<scalar_t>(), gmm.data_ptr<scalar_t>(), mem.data_ptr<scalar_t>(),
          reset_delay ? nullptr : pre.data_ptr<scalar_t>(), bits.data_ptr<uint8_t>(), beta.data_ptr<scalar_t>(),
          thr.data_ptr<scalar_t>(), start.data_ptr<int64_t>(), vals.data_ptr<scalar_t>(), wgt.data_ptr<scalar_t>(),
          synaptic ? nullptr : gdel.data_ptr<scalar_t>(), scale.defined() ? scale.data_ptr<scalar_t>() : nullptr,
          gb.data_ptr<scalar_t>(), carry.data_ptr<scalar_t>(), gbeta.data_ptr<scalar_t>(), gthr.data_ptr<scalar_t>(),
          T, B, N, W, reset, surrogate, sparam, synaptic, detach_reset);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    for (int64_t t = whole ? -1 : T - 1; t >= 0; --t) {
      rec_adjoint_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
          gsp.data_ptr<scalar_t>(), gmm.data_ptr<scalar_t>(), mem.data_ptr<scalar_t>(),
          reset_delay ? nullptr : pre.data_ptr<scalar_t>(), bits.data_ptr<uint8_t>(), beta.data_ptr<scalar_t>(),
          thr.data_ptr<scalar_t>(), start.data_ptr<int64_t>(), vals.data_ptr<scalar_t>(), wgt.data_ptr<scalar_t>(),
          synaptic ? nullptr : gdel.data_ptr<scalar_t>(), scale.defined() ? scale.data_ptr<scalar_t>() : nullptr,
          gb.data_ptr<scalar_t>(), carry.data_ptr<scalar_t>(),
          gbeta.data_ptr<scalar_t>(), gthr.data_ptr<scalar_t>(), t, T, B, N, W, reset, surrogate, sparam,
          synaptic, detach_reset);
      if (!synaptic) {
        auto gdel_t = gdel.select(0, t);
        at::mm_out(gdel_t, scale.defined() ? gb.select(0, t) * scale : gb.select(0, t), wgt);
      }
    }
    if (!synaptic) {
      auto delayed = at::empty({T, B, N}, mem.options());
      rec_gather_axonal_kernel<scalar_t><<<blocks_for(T * B * N), kThreads, 0, stream>>>(
          bits.data_ptr<uint8_t>(), start.data_ptr<int64_t>(), vals.data_ptr<scalar_t>(),
          delayed.data_ptr<scalar_t>(), 0, T, B, N, W);
      auto grec = scale.defined() ? gb * scale : gb;  // the recurrent input's gradient
      gw = at::mm(grec.view({T * B, N}).t(), delayed.view({T * B, N}));
      rec_axonal_vals_kernel<scalar_t><<<N * W, kThreads, 0, stream>>>(
          gdel.data_ptr<scalar_t>(), bits.data_ptr<uint8_t>(), start.data_ptr<int64_t>(), gv.data_ptr<scalar_t>(),
          T, B, N, W);
    } else {
      auto grec = scale.defined() ? gb * scale : gb;
      rec_synaptic_wv_kernel<scalar_t><<<N * N, kThreads, 0, stream>>>(
          grec.data_ptr<scalar_t>(), bits.data_ptr<uint8_t>(), wgt.data_ptr<scalar_t>(), start.data_ptr<int64_t>(),
          vals.data_ptr<scalar_t>(), gw.data_ptr<scalar_t>(), gv.data_ptr<scalar_t>(), T, B, N, W);
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {gb, gw, gv, gbeta.sum(0), gthr.sum(0)};
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_delays_ext, CUDA, m) {
  m.impl("delay_channels", &delay_channels_cuda);
  m.impl("delay_channels_backward", &delay_channels_backward_cuda);
  m.impl("synaptic_delay", &synaptic_delay_cuda);
  m.impl("synaptic_delay_backward", &synaptic_delay_backward_cuda);
  m.impl("recurrent_lif", &recurrent_lif_cuda);
  m.impl("recurrent_lif_backward", &recurrent_lif_backward_cuda);
}

}  // namespace snn_delays_ext
