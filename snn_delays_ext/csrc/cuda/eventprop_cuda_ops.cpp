// CUDA implementations of the EventProp ops (schemas and CPU kernels in ../eventprop.cpp):
// the host side. Checks every argument, allocates, launches the kernels of eventprop_cuda.cu
// through eventprop_launch.h, and raises every error (bad arguments, a failed launch, a
// spike-buffer overflow) from here, host-compiled code.
//
// The forward writes the rise U - V of each spike (> 0) into the spike's entry of the dense spk
// output (no second (T, B, N) buffer: the peak memory of a long sequence is one dense tensor
// less); the compact spike list (flat indices and one rise per spike) is then taken with
// at::nonzero / index_select and the entries set to 1 (nothing is written into a buffer sized by
// max_spikes, so an overflow cannot write past one: it is counted and raised before the lists
// are built).

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

#include "../eventprop_common.h"
#include "eventprop_launch.h"

namespace snn_delays_ext {
namespace {

using eventprop::check_backward_args;
using eventprop::check_forward_args;
using eventprop::index_dtype;
using eventprop::ring_len;
using eventprop::round_delays;

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

template <typename scalar_t>
const scalar_t* cptr(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<scalar_t>() : nullptr;
}

template <typename scalar_t>
scalar_t* mptr(at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<scalar_t>() : nullptr;
}

// A global scratch buffer of a kernel's state (zeros), or an empty tensor where the plan keeps
// that state in shared memory.
at::Tensor state_scratch(const eventprop_cuda::EpPlan& plan, const at::TensorOptions& opts, at::IntArrayRef sizes) {
  return plan.in_shared ? at::empty({0}, opts) : at::zeros(sizes, opts);
}

// A loss gradient (T, B, N) with its strides, or a null view for an empty one (no gradient).
template <typename scalar_t>
eventprop_cuda::GradView<scalar_t> grad_view(const at::Tensor& g) {
  if (g.numel() == 0) return {nullptr, 0, 0, 0};
  return {g.data_ptr<scalar_t>(), g.stride(0), g.stride(1), g.stride(2)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> eventprop_lif_forward_cuda(
    const at::Tensor& x_, const at::Tensor& weight, const at::Tensor& delays,
    const c10::optional<at::Tensor>& rec_weight, const c10::optional<at::Tensor>& rec_delays, int64_t max_delay,
    double alpha, double beta, double threshold, double syn_scale, double min_denominator,
    double reg_strength, double reg_target, int64_t max_spikes, bool record_mem) {
  check_forward_args(x_, weight, delays, rec_weight, rec_delays, max_delay, alpha, beta, threshold, syn_scale,
                     min_denominator, reg_strength, reg_target, max_spikes);
  TORCH_CHECK(x_.is_cuda(), "x: expected a CUDA tensor, got one on ", x_.device());
  const c10::cuda::CUDAGuard guard(x_.device());
  const auto x = x_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), F = x.size(2), N = weight.size(0), L = ring_len(max_delay);
  TORCH_CHECK(B <= std::numeric_limits<int32_t>::max(), "x: at most 2^31 - 1 samples per batch, got ", B);
  TORCH_CHECK(N <= 48 * 1024, "weight: at most 49152 neurons per layer on CUDA (one shared-memory flag each), got ",
              N);
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
  eventprop::check_binary(x, x_idx);
  if (T * B * N == 0) {
    return {spk, mem, x_idx, at::empty({0}, opts.dtype(idt)), at::empty({0}, opts)};
  }
  const auto plan = eventprop_cuda::plan(false, recurrent, B, N, L, x.element_size());
  auto ring = state_scratch(plan, opts, {B, L, N});
  auto Sb = state_scratch(plan, opts, {B, N});
  auto Vb = state_scratch(plan, opts, {B, N});
  const auto stream = c10::cuda::getCurrentCUDAStream().stream();
  cudaError_t err;
  if (x.scalar_type() == at::kDouble) {
    err = eventprop_cuda::launch_forward<double>(
        plan, cptr<double>(x), cptr<double>(wT), dT.data_ptr<int32_t>(), recurrent ? cptr<double>(rT) : nullptr,
        recurrent ? eT.data_ptr<int32_t>() : nullptr, mptr<double>(ring), mptr<double>(Sb), mptr<double>(Vb),
        mptr<double>(spk), record_mem ? mptr<double>(mem) : nullptr, T, B, F, N, L - 1, alpha,
        beta, syn_scale, threshold, stream);
  } else {
    err = eventprop_cuda::launch_forward<float>(
        plan, cptr<float>(x), cptr<float>(wT), dT.data_ptr<int32_t>(), recurrent ? cptr<float>(rT) : nullptr,
        recurrent ? eT.data_ptr<int32_t>() : nullptr, mptr<float>(ring), mptr<float>(Sb), mptr<float>(Vb),
        mptr<float>(spk), record_mem ? mptr<float>(mem) : nullptr, T, B, F, N, L - 1, alpha,
        beta, syn_scale, threshold, stream);
  }
  check_launch(err, "eventprop_lif_forward");
  // count before listing: an overflow is raised here, before any list is sized or written
  const int64_t n_spikes = spk.count_nonzero().item<int64_t>();
  TORCH_CHECK(max_spikes < 0 || n_spikes <= max_spikes, "spike buffer overflow: more than max_spikes=",
              max_spikes, " spikes (", n_spikes, " in ", T,
              " steps); raise max_spikes (the EventProp gradient would be wrong with dropped spikes)");
  // the kernel left each spike's rise (> 0) in its entry of spk: list them, keep the rises, set 1
  auto flat_spk = spk.view({-1});
  auto s_idx = at::nonzero(flat_spk).reshape({-1});  // sorted (t, b, n)
  auto s_rise = flat_spk.index_select(0, s_idx);
  flat_spk.index_fill_(0, s_idx, 1);
  return {spk, mem, x_idx, s_idx.to(idt), s_rise};
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
  check_backward_args(grad_spk_, grad_mem_, x_idx, s_idx, s_rise_, weight, d_ff, rec_weight, d_rec, T, B, max_delay,
                      alpha, beta, threshold, syn_scale, min_denominator, reg_strength, reg_target);
  TORCH_CHECK(weight.is_cuda(), "weight: expected a CUDA tensor, got one on ", weight.device());
  const c10::cuda::CUDAGuard guard(weight.device());
  const int64_t N = weight.size(0), F = weight.size(1), L = ring_len(max_delay);
  TORCH_CHECK(B <= std::numeric_limits<int32_t>::max(), "B: at most 2^31 - 1 samples per batch, got ", B);
  const bool recurrent = rec_weight.has_value() && rec_weight->defined();
  const auto opts = weight.options();
  const auto grad_spk = eventprop::readable_grad(grad_spk_);
  const auto grad_mem = eventprop::readable_grad(grad_mem_);
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
    const auto plan = eventprop_cuda::plan(true, recurrent, B, N, L, weight.element_size());
    auto hist = state_scratch(plan, opts, {B, L, N, 2});
    auto gU = state_scratch(plan, opts, {B, N});
    auto gV = state_scratch(plan, opts, {B, N});
    auto gUn = state_scratch(plan, opts, {B, N});
    auto gSn = state_scratch(plan, opts, {B, N});
    const auto stream = c10::cuda::getCurrentCUDAStream().stream();
    cudaError_t err;
    if (weight.scalar_type() == at::kDouble) {
      err = eventprop_cuda::launch_backward<double>(
          plan, grad_view<double>(grad_spk), grad_view<double>(grad_mem), s_off.data_ptr<int64_t>(), cptr<int64_t>(s_n),
          cptr<double>(s_rise), x_off.data_ptr<int64_t>(), cptr<int64_t>(x_i), cptr<double>(wT),
          dT.data_ptr<int32_t>(), recurrent ? cptr<double>(rT) : nullptr, recurrent ? eT.data_ptr<int32_t>() : nullptr,
          reg.defined() ? cptr<double>(reg) : nullptr, mptr<double>(hist), mptr<double>(gU), mptr<double>(gV),
          mptr<double>(gUn), mptr<double>(gSn), mptr<double>(grad_x), mptr<double>(gwT), mptr<double>(gdT),
          recurrent ? mptr<double>(grT) : nullptr, recurrent ? mptr<double>(geT) : nullptr, T, B, F, N, L - 1, alpha,
          beta, syn_scale, threshold, min_denominator, stream);
    } else {
      err = eventprop_cuda::launch_backward<float>(
          plan, grad_view<float>(grad_spk), grad_view<float>(grad_mem), s_off.data_ptr<int64_t>(), cptr<int64_t>(s_n),
          cptr<float>(s_rise), x_off.data_ptr<int64_t>(), cptr<int64_t>(x_i), cptr<float>(wT),
          dT.data_ptr<int32_t>(), recurrent ? cptr<float>(rT) : nullptr, recurrent ? eT.data_ptr<int32_t>() : nullptr,
          reg.defined() ? cptr<float>(reg) : nullptr, mptr<float>(hist), mptr<float>(gU), mptr<float>(gV),
          mptr<float>(gUn), mptr<float>(gSn), mptr<float>(grad_x), mptr<float>(gwT), mptr<float>(gdT),
          recurrent ? mptr<float>(grT) : nullptr, recurrent ? mptr<float>(geT) : nullptr, T, B, F, N, L - 1, alpha,
          beta, syn_scale, threshold, min_denominator, stream);
    }
    check_launch(err, "eventprop_lif_backward");
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
