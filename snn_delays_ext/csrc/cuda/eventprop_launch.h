// Kernel launchers of the EventProp CUDA ops: defined in eventprop_cuda.cu (device code),
// called from eventprop_cuda_ops.cpp (host code: argument checks, allocation, errors).
//
// The split keeps every C++ exception on the host compiler's side: the launchers take raw
// pointers of tensors the caller has checked and allocated, never throw, and return the launch
// status (cudaGetLastError) for the caller to report.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace snn_delays_ext {
namespace eventprop_cuda {

constexpr int kThreads = 256;  // threads per block at most (whole warps: warp reductions)

// A kernel's layout: a block per batch element and slice of `per` neurons (`parts` slices: a
// feed-forward layer at a small batch; a recurrent layer keeps one), `threads` threads a block,
// and whether the block keeps its neurons' state (ring or adjoint history, and the per-neuron
// variables) in shared memory (`in_shared`; the global scratch buffers of the launchers are then
// not read and may be null) instead of global memory; `shared_bytes` of dynamic shared memory.
struct EpPlan {
  unsigned parts;
  int64_t per;
  unsigned threads;
  bool in_shared;
  size_t shared_bytes;
};

// The layout of the forward (backward = false) or backward kernel for B samples, N neurons, a
// ring of L slots and elem-byte scalars, on the current device.
EpPlan plan(bool backward, bool recurrent, int64_t B, int64_t N, int64_t L, size_t elem);

// Forward: the whole time loop. rT/eT (recurrent weights and delays) and mem may be null. Unless
// p.in_shared: ring (B, L, N) zeros, S/V (B, N) zeros. spk: (T, B, N) zeros; the kernel writes
// each spike's rise U - V (> 0: U >= threshold > V) into spk at the spike, so that no second
// (T, B, N) tensor is needed: the host lists the spikes, keeps their rises and then sets them to
// 1. mask = L - 1 (L a power of two >= max_delay + 1).
template <typename scalar_t>
cudaError_t launch_forward(const EpPlan& p, const scalar_t* x, const scalar_t* wT, const int32_t* dT,
                           const scalar_t* rT, const int32_t* eT, scalar_t* ring, scalar_t* S, scalar_t* V,
                           scalar_t* spk, scalar_t* mem, int64_t T, int64_t B, int64_t F, int64_t N, int64_t mask,
                           double alpha, double beta, double syn_scale, double threshold, cudaStream_t stream);

// A loss gradient of spk or mem, (T, B, N), read through its strides (t, b, n): a loss that sums
// or averages hands over a broadcast (stride-0) tensor, which is never densified. p null: none.
template <typename scalar_t>
struct GradView {
  const scalar_t* p;
  int64_t st, sb, sn;
};

// Backward: the reverse-time adjoint. gs/gm (gradients of spikes and membranes, (T, B, N), null
// pointers for none), rT/eT/grT/geT and reg may be null. s_off/x_off: (T B + 1) offsets of the
// spikes / input events of each (t, b) cell into s_n/s_rise and x_i. Unless p.in_shared: hist
// (B, L, N, 2) zeros, gU, gV, gUn, gSn (B, N) zeros. gx: (T, B, F) zeros; gwT, gdT: (F, N)
// zeros; grT, geT: (N, N) zeros.
template <typename scalar_t>
cudaError_t launch_backward(const EpPlan& p, GradView<scalar_t> gs, GradView<scalar_t> gm, const int64_t* s_off,
                            const int64_t* s_n, const scalar_t* s_rise, const int64_t* x_off, const int64_t* x_i,
                            const scalar_t* wT, const int32_t* dT, const scalar_t* rT, const int32_t* eT,
                            const scalar_t* reg, scalar_t* hist, scalar_t* gU, scalar_t* gV, scalar_t* gUn,
                            scalar_t* gSn, scalar_t* gx, scalar_t* gwT, scalar_t* gdT, scalar_t* grT, scalar_t* geT,
                            int64_t T, int64_t B, int64_t F, int64_t N, int64_t mask, double alpha, double beta,
                            double syn_scale, double threshold, double min_denominator, cudaStream_t stream);

}  // namespace eventprop_cuda
}  // namespace snn_delays_ext
