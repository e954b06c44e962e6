// EventProp ops of snn_delays_ext: schemas and CPU kernels.
//
// A delayed current-based LIF layer over a whole sequence with the EventProp backward (exact
// event-based gradients for weights and integer-rounded delays). The math, variable names and
// the order of the floating-point operations follow the plain-PyTorch reference
// `_EventPropLIF` in snn_delays_ext/eventprop/functional.py (read its module docstring first);
// the forward spikes are bit-identical to the reference, the gradients equal up to the order of
// the sums.
//
// Ops (declared into the same library as delays.cpp, TORCH_LIBRARY_FRAGMENT)
//   eventprop_lif_forward(x, weight, delays, rec_weight?, rec_delays?, max_delay, alpha, beta,
//                         threshold, syn_scale, min_denominator, reg_strength, reg_target,
//                         max_spikes, record_mem) -> (spk, mem, x_idx, s_idx, s_rise)
//       x (T, B, F) binary; weight, delays (N, F) (real-valued delays, clamped to
//       [0, max_delay] and rounded halves up here); recurrent (N, N) delays clamped to
//       [1, max_delay]. spk (T, B, N); mem (T, B, N) post-reset membranes or empty when
//       record_mem is false; x_idx the flat indices (t B + b) F + i of the input spikes, s_idx
//       the flat indices (t B + b) N + n of the output spikes (both sorted, int32 unless the
//       grid needs int64), s_rise the voltage rise U_t - V_{t-1} of each output spike.
//       min_denominator, reg_strength and reg_target are not used by the forward pass; they are
//       arguments so that the autograd formula can read them. max_spikes < 0: unlimited;
//       otherwise more spikes than that raise an error.
//   eventprop_lif_backward(grad_spk, grad_mem, x_idx, s_idx, s_rise, weight, d_ff, rec_weight?,
//                          d_rec?, T, B, max_delay, alpha, beta, threshold, syn_scale,
//                          min_denominator, reg_strength, reg_target)
//       -> (grad_x, grad_weight, grad_delays, grad_rec_weight, grad_rec_delays)
//       grad_spk, grad_mem (T, B, N) or empty (no gradient); d_ff, d_rec the rounded integer
//       delays (any integer dtype). grad_x (T, B, F): dL/dt of each input spike (zero
//       elsewhere); the recurrent gradients are empty for a feed-forward layer.
//
// Layout of the CPU kernels: batch elements are independent, so each runs its whole time loop
// in one task of at::parallel_for. Per element a ring buffer of L >= max_delay + 1 steps (L a
// power of two, slot = step & (L - 1), no branch) holds the arrivals in the forward pass and the
// adjoint history g_S, G in the backward pass, indexed [slot][neuron]: the per-step update reads
// and writes one contiguous row, the scatter/gather of a presynaptic event over its targets
// jumps between rows by the delays. Weight and delay gradients are summed per fixed chunk of the batch and then
// over chunks in order (deterministic for a given thread count).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <tuple>
#include <vector>

#include "eventprop_common.h"

namespace snn_delays_ext {
namespace {

using eventprop::check_backward_args;
using eventprop::check_forward_args;
using eventprop::index_dtype;
using eventprop::ring_len;
using eventprop::round_delays;

// Stable counting sort of flat event indices by their (t, b) cell: `order` lists the events of
// cell c at order[off[c]] .. order[off[c + 1] - 1].
void bucket_events(const at::Tensor& idx, int64_t row, int64_t cells, std::vector<int64_t>& off,
                   std::vector<int64_t>& order) {
  auto flat = idx.to(at::kLong).contiguous();
  const int64_t* p = flat.data_ptr<int64_t>();
  const int64_t E = flat.numel();
  off.assign(cells + 1, 0);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t c = p[e] / row;
    TORCH_CHECK(p[e] >= 0 && c < cells, "event index ", p[e], " out of range for ", cells, " cells of ", row);
    ++off[c + 1];
  }
  for (int64_t c = 0; c < cells; ++c) off[c + 1] += off[c];
  order.resize(E);
  std::vector<int64_t> pos(off.begin(), off.end() - 1);
  for (int64_t e = 0; e < E; ++e) order[pos[p[e] / row]++] = e;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> eventprop_lif_forward_cpu(
    const at::Tensor& x_, const at::Tensor& weight, const at::Tensor& delays,
    const c10::optional<at::Tensor>& rec_weight, const c10::optional<at::Tensor>& rec_delays, int64_t max_delay,
    double alpha, double beta, double threshold, double syn_scale, double min_denominator,
    double reg_strength, double reg_target, int64_t max_spikes, bool record_mem) {
  check_forward_args(x_, weight, delays, rec_weight, rec_delays, max_delay, alpha, beta, threshold, syn_scale,
                     min_denominator, reg_strength, reg_target, max_spikes);
  const auto x = x_.contiguous();
  const int64_t T = x.size(0), B = x.size(1), F = x.size(2), N = weight.size(0);
  const int64_t L = ring_len(max_delay), mask = L - 1;
  const bool recurrent = rec_weight.has_value() && rec_weight->defined();
  const auto wT = weight.t().contiguous();                           // (F, N): outgoing weights of input i
  const auto dT = round_delays(delays, 0, max_delay).t().contiguous();  // (F, N) int32
  at::Tensor rT, eT;
  if (recurrent) {
    rT = rec_weight->t().contiguous();                                // (N, N): row j = outgoing of neuron j
    eT = round_delays(*rec_delays, 1, max_delay).t().contiguous();
  }
  auto spk = at::zeros({T, B, N}, x.options());
  auto mem = record_mem ? at::empty({T, B, N}, x.options()) : at::empty({0}, x.options());
  const auto idt = index_dtype(T, B, N, F);
  auto x_idx = at::nonzero(x.reshape({-1})).reshape({-1}).to(idt);
  eventprop::check_binary(x, x_idx);

  std::vector<int64_t> cnt(T * B, 0);  // spikes per (b, t)
  std::vector<std::vector<int32_t>> neuron(B);
  std::atomic<int64_t> total{0};
  std::atomic<bool> overflow{false};
  std::atomic<int64_t> overflow_step{T};
  at::Tensor s_idx, s_rise;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "eventprop_lif_forward_cpu", [&] {
    // as in the reference: a = membrane decay (snnTorch beta), bs = synaptic decay (alpha)
    const scalar_t a = static_cast<scalar_t>(beta);
    const scalar_t bs = static_cast<scalar_t>(alpha);
    const scalar_t kc = static_cast<scalar_t>((1.0 - beta) * syn_scale);
    const scalar_t th = static_cast<scalar_t>(threshold);
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* wtp = wT.data_ptr<scalar_t>();
    const int32_t* dtp = dT.data_ptr<int32_t>();
    const scalar_t* rtp = recurrent ? rT.data_ptr<scalar_t>() : nullptr;
    const int32_t* etp = recurrent ? eT.data_ptr<int32_t>() : nullptr;
    scalar_t* spkp = spk.data_ptr<scalar_t>();
    scalar_t* memp = record_mem ? mem.data_ptr<scalar_t>() : nullptr;
    std::vector<std::vector<scalar_t>> rise(B);

    at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
      std::vector<scalar_t> ring(L * N), S(N), V(N);
      std::vector<int32_t> fired;
      fired.reserve(N);
      for (int64_t b = lo; b < hi; ++b) {
        // this element's spikes are collected in task-local vectors and handed over at the
        // end (the vector headers of neighbouring elements share cache lines)
        std::vector<int32_t> nb;
        std::vector<scalar_t> rb;
        std::fill(ring.begin(), ring.end(), scalar_t(0));
        std::fill(S.begin(), S.end(), scalar_t(0));
        std::fill(V.begin(), V.end(), scalar_t(0));
        for (int64_t t = 0; t < T; ++t) {
          if (overflow.load(std::memory_order_relaxed)) break;
          const int64_t st = t & mask;
          // input spikes of step t arrive at t + d (slot (t + d) mod L)
          const scalar_t* xr = xp + (t * B + b) * F;
          for (int64_t i = 0; i < F; ++i) {
            if (xr[i] == scalar_t(0)) continue;
            const scalar_t* wr = wtp + i * N;
            const int32_t* dr = dtp + i * N;
            for (int64_t n = 0; n < N; ++n) ring[((st + dr[n]) & mask) * N + n] += wr[n];
          }
          fired.clear();
          scalar_t* srow = spkp + (t * B + b) * N;
          scalar_t* mrow = memp ? memp + (t * B + b) * N : nullptr;
          scalar_t* row = ring.data() + st * N;
          for (int64_t n = 0; n < N; ++n) {
            scalar_t& r = row[n];
            S[n] = bs * S[n] + r;
            r = scalar_t(0);
            const scalar_t U = a * V[n] + kc * S[n];
            if (U >= th) {
              fired.push_back(static_cast<int32_t>(n));
              rb.push_back(U - V[n]);
              srow[n] = scalar_t(1);
              V[n] = scalar_t(0);
            } else {
              V[n] = U;
            }
            if (mrow) mrow[n] = V[n];
          }
          if (fired.empty()) continue;
          const int64_t nf = static_cast<int64_t>(fired.size());
          cnt[b * T + t] = nf;  // [b][t]: each task writes its own rows (no false sharing)
          nb.insert(nb.end(), fired.begin(), fired.end());
          if (max_spikes >= 0 && total.fetch_add(nf) + nf > max_spikes) {
            overflow.store(true);
            int64_t prev = overflow_step.load();
            while (t < prev && !overflow_step.compare_exchange_weak(prev, t)) {
            }
            break;
          }
          if (recurrent) {  // spikes of step t arrive at t + e, e >= 1
            for (const int32_t j : fired) {
              const scalar_t* rr = rtp + static_cast<int64_t>(j) * N;
              const int32_t* er = etp + static_cast<int64_t>(j) * N;
              for (int64_t m = 0; m < N; ++m) ring[((st + er[m]) & mask) * N + m] += rr[m];
            }
          }
        }
        neuron[b] = std::move(nb);
        rise[b] = std::move(rb);
      }
    });
    TORCH_CHECK(!overflow.load(), "spike buffer overflow: more than max_spikes=", max_spikes,
                " spikes by step ", overflow_step.load(), " of ", T,
                "; raise max_spikes (the EventProp gradient would be wrong with dropped spikes)");

    // gather the spikes in (t, b, n) order, as the reference stores them
    std::vector<int64_t> off(T * B + 1, 0);
    for (int64_t c = 0; c < T * B; ++c) off[c + 1] = off[c] + cnt[(c % B) * T + c / B];
    const int64_t S_total = off[T * B];
    s_idx = at::empty({S_total}, x.options().dtype(at::kLong));
    s_rise = at::empty({S_total}, x.options());
    int64_t* sip = s_idx.data_ptr<int64_t>();
    scalar_t* srp = s_rise.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        int64_t k = 0;
        for (int64_t t = 0; t < T; ++t) {
          const int64_t c = t * B + b;
          for (int64_t q = off[c]; q < off[c + 1]; ++q, ++k) {
            sip[q] = c * N + neuron[b][k];
            srp[q] = rise[b][k];
          }
        }
      }
    });
  });
  return {spk, mem, x_idx, s_idx.to(idt), s_rise};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> eventprop_lif_backward_cpu(
    const at::Tensor& grad_spk_, const at::Tensor& grad_mem_, const at::Tensor& x_idx, const at::Tensor& s_idx,
    const at::Tensor& s_rise_, const at::Tensor& weight, const at::Tensor& d_ff,
    const c10::optional<at::Tensor>& rec_weight, const c10::optional<at::Tensor>& d_rec, int64_t T, int64_t B,
    int64_t max_delay, double alpha, double beta, double threshold, double syn_scale, double min_denominator,
    double reg_strength, double reg_target) {
  check_backward_args(grad_spk_, grad_mem_, x_idx, s_idx, s_rise_, weight, d_ff, rec_weight, d_rec, T, B, max_delay,
                      alpha, beta, threshold, syn_scale, min_denominator, reg_strength, reg_target);
  const int64_t N = weight.size(0), F = weight.size(1);
  const int64_t L = ring_len(max_delay), mask = L - 1;
  const bool recurrent = rec_weight.has_value() && rec_weight->defined();
  const auto opts = weight.options();
  const auto grad_spk = eventprop::readable_grad(grad_spk_);
  const auto grad_mem = eventprop::readable_grad(grad_mem_);
  const auto s_rise = s_rise_.contiguous();
  const bool has_gs = grad_spk.numel() > 0, has_gm = grad_mem.numel() > 0;
  const auto wT = weight.contiguous().t().contiguous();
  const auto dT = d_ff.to(at::kInt).t().contiguous();
  at::Tensor rT, eT;
  if (recurrent) {
    rT = rec_weight->contiguous().t().contiguous();
    eT = d_rec->to(at::kInt).t().contiguous();
  }

  std::vector<int64_t> x_off, x_ord, s_off, s_ord;
  bucket_events(x_idx, F, T * B, x_off, x_ord);
  bucket_events(s_idx, N, T * B, s_off, s_ord);
  const auto x_flat = x_idx.to(at::kLong).contiguous();
  const auto s_flat = s_idx.to(at::kLong).contiguous();
  const int64_t* xfp = x_flat.data_ptr<int64_t>();
  const int64_t* sfp = s_flat.data_ptr<int64_t>();
  const int64_t n_spikes = s_flat.numel();

  auto grad_x = at::zeros({T, B, F}, opts);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(B, at::get_num_threads()));
  auto acc_ff = at::zeros({chunks, 2, F * N}, opts);                 // [gw | gd], source-major
  auto acc_rec = at::zeros({recurrent ? chunks : 0, 2, N * N}, opts);  // [gr | ge], source-major

  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "eventprop_lif_backward_cpu", [&] {
    const scalar_t a = static_cast<scalar_t>(beta);
    const scalar_t bs = static_cast<scalar_t>(alpha);
    const scalar_t one_a_c = static_cast<scalar_t>((1.0 - beta) * syn_scale);
    const scalar_t th = static_cast<scalar_t>(threshold);
    const scalar_t th_term = static_cast<scalar_t>((1.0 - beta) * threshold);
    const scalar_t min_den = static_cast<scalar_t>(min_denominator);
    const scalar_t* gsp = has_gs ? grad_spk.data_ptr<scalar_t>() : nullptr;
    const scalar_t* gmp = has_gm ? grad_mem.data_ptr<scalar_t>() : nullptr;
    // strides (t, b, n) of the loss gradients (read in place, broadcasts included)
    const int64_t gs_t = has_gs ? grad_spk.stride(0) : 0, gs_b = has_gs ? grad_spk.stride(1) : 0,
                  gs_n = has_gs ? grad_spk.stride(2) : 0;
    const int64_t gm_t = has_gm ? grad_mem.stride(0) : 0, gm_b = has_gm ? grad_mem.stride(1) : 0,
                  gm_n = has_gm ? grad_mem.stride(2) : 0;
    const scalar_t* rsp = s_rise.data_ptr<scalar_t>();
    const scalar_t* wtp = wT.data_ptr<scalar_t>();
    const int32_t* dtp = dT.data_ptr<int32_t>();
    const scalar_t* rtp = recurrent ? rT.data_ptr<scalar_t>() : nullptr;
    const int32_t* etp = recurrent ? eT.data_ptr<int32_t>() : nullptr;
    scalar_t* gxp = grad_x.data_ptr<scalar_t>();
    scalar_t* affp = acc_ff.data_ptr<scalar_t>();
    scalar_t* arcp = recurrent ? acc_rec.data_ptr<scalar_t>() : nullptr;

    // spike-count regulariser (per neuron, over the whole batch)
    std::vector<scalar_t> reg;
    if (reg_strength != 0.0 && n_spikes > 0) {
      std::vector<int64_t> counts(N, 0);
      for (int64_t k = 0; k < n_spikes; ++k) ++counts[sfp[k] % N];
      reg.resize(N);
      const scalar_t rs = static_cast<scalar_t>(reg_strength);
      const scalar_t rt = static_cast<scalar_t>(reg_target * static_cast<double>(B));
      const scalar_t bb = static_cast<scalar_t>(B * B);
      for (int64_t n = 0; n < N; ++n) reg[n] = rs * (static_cast<scalar_t>(counts[n]) - rt) / bb;
    }

    at::parallel_for(0, chunks, 1, [&](int64_t c_lo, int64_t c_hi) {
      std::vector<scalar_t> hist(L * N * 2), gU(N), gV(N), gUn(N), gSn(N);  // hist[slot][n][gS, G]
      for (int64_t ch = c_lo; ch < c_hi; ++ch) {
        scalar_t* gwT = affp + ch * 2 * F * N;
        scalar_t* gdT = gwT + F * N;
        scalar_t* grT = recurrent ? arcp + ch * 2 * N * N : nullptr;
        scalar_t* geT = recurrent ? grT + N * N : nullptr;
        const int64_t b_lo = ch * B / chunks, b_hi = (ch + 1) * B / chunks;
        for (int64_t b = b_lo; b < b_hi; ++b) {
          std::fill(hist.begin(), hist.end(), scalar_t(0));
          std::fill(gUn.begin(), gUn.end(), scalar_t(0));
          std::fill(gSn.begin(), gSn.end(), scalar_t(0));
          for (int64_t t = T - 1; t >= 0; --t) {
            const int64_t st = t & mask;
            const int64_t cell = t * B + b;
            const scalar_t* gs_row = gsp ? gsp + t * gs_t + b * gs_b : nullptr;
            const scalar_t* gm_row = gmp ? gmp + t * gm_t + b * gm_b : nullptr;
            for (int64_t n = 0; n < N; ++n) {
              scalar_t v = a * gUn[n];
              if (gm_row) v = v + gm_row[n * gm_n];
              gV[n] = v;
              gU[n] = v;
            }
            // spikes of step t: the jump of g_U (sensitivity to the spike time)
            for (int64_t q = s_off[cell]; q < s_off[cell + 1]; ++q) {
              const int64_t k = s_ord[q];
              const int64_t n = sfp[k] % N;
              scalar_t tsens = gs_row ? gs_row[n * gs_n] : scalar_t(0);
              if (recurrent) {
                const scalar_t* rr = rtp + n * N;
                const int32_t* er = etp + n * N;
                scalar_t* grr = grT + n * N;
                scalar_t* ger = geT + n * N;
                scalar_t sum = 0;
                for (int64_t m = 0; m < N; ++m) {
                  const scalar_t* h = hist.data() + (((st + er[m]) & mask) * N + m) * 2;
                  const scalar_t wG = rr[m] * h[1];
                  sum += wG;
                  grr[m] += h[0];
                  ger[m] += wG;
                }
                tsens = tsens + sum;
              }
              const scalar_t rise = rsp[k];
              // the loss on V jumps with the reset: (l_V^- - l_V^+) = theta dL/dV_t
              if (gm_row) tsens = tsens + th * gm_row[n * gm_n];
              tsens = tsens - (rise + th_term) * gV[n];
              scalar_t jump = -tsens / std::max(rise, min_den);
              if (!reg.empty()) jump = jump + reg[n];
              gU[n] = jump;
            }
            for (int64_t n = 0; n < N; ++n) {
              const scalar_t gS = one_a_c * gU[n] + bs * gSn[n];
              // arrival one step later: g_S,t+1 - g_S,t (the forward difference of the loss)
              const scalar_t G = gSn[n] - gS;
              scalar_t* h = hist.data() + (st * N + n) * 2;
              h[0] = gS;
              h[1] = G;
              gUn[n] = gU[n];
              gSn[n] = gS;
            }
            // input spikes of step t sample the history at t + d
            for (int64_t q = x_off[cell]; q < x_off[cell + 1]; ++q) {
              const int64_t i = xfp[x_ord[q]] % F;
              const scalar_t* wr = wtp + i * N;
              const int32_t* dr = dtp + i * N;
              scalar_t* gwr = gwT + i * N;
              scalar_t* gdr = gdT + i * N;
              scalar_t sum = 0;
              for (int64_t n = 0; n < N; ++n) {
                const scalar_t* h = hist.data() + (((st + dr[n]) & mask) * N + n) * 2;
                const scalar_t wG = wr[n] * h[1];
                gwr[n] += h[0];
                gdr[n] += wG;
                sum += wG;
              }
              gxp[cell * F + i] = sum;
            }
          }
        }
      }
    });
  });
  auto ff = acc_ff.sum(0);  // (2, F * N): over chunks, in order
  auto grad_w = ff[0].view({F, N}).t().contiguous();
  auto grad_d = ff[1].view({F, N}).t().contiguous();
  at::Tensor grad_r = at::empty({0}, opts), grad_e = at::empty({0}, opts);
  if (recurrent) {
    auto rc = acc_rec.sum(0);
    grad_r = rc[0].view({N, N}).t().contiguous();
    grad_e = rc[1].view({N, N}).t().contiguous();
  }
  return {grad_x, grad_w, grad_d, grad_r, grad_e};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(snn_delays_ext, m) {
  m.def("eventprop_lif_forward(Tensor x, Tensor weight, Tensor delays, Tensor? rec_weight, Tensor? rec_delays,"
        " int max_delay, float alpha, float beta, float threshold, float syn_scale, float min_denominator,"
        " float reg_strength, float reg_target, int max_spikes, bool record_mem)"
        " -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("eventprop_lif_backward(Tensor grad_spk, Tensor grad_mem, Tensor x_idx, Tensor s_idx, Tensor s_rise,"
        " Tensor weight, Tensor d_ff, Tensor? rec_weight, Tensor? d_rec, int T, int B, int max_delay,"
        " float alpha, float beta, float threshold, float syn_scale, float min_denominator,"
        " float reg_strength, float reg_target) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(snn_delays_ext, CPU, m) {
  m.impl("eventprop_lif_forward", &eventprop_lif_forward_cpu);
  m.impl("eventprop_lif_backward", &eventprop_lif_backward_cpu);
}

}  // namespace snn_delays_ext
