// Custom ops of snn_delays_ext: schemas and CPU kernels.
//
// Conventions: sequences are time-first (T, B, F) and contiguous; delays come as banded taps
// (see common.h): `start` int64 with the delay's shape, `vals` the same shape plus (W,).
//
// Ops
//   delay_channels(x, start, vals) -> y
//       y[t,b,c] = sum_w vals[c,w] x[t - start[c] - w, b, c]     (axonal / dendritic)
//   delay_channels_backward(grad_y, x, start, vals) -> (grad_x, grad_vals)
//   synaptic_delay(x, weight, start, vals) -> y
//       y[t,b,o] = sum_i weight[o,i] sum_w vals[o,i,w] x[t - start[o,i] - w, b, i]
//   synaptic_delay_backward(grad_y, x, weight, start, vals, input_grad=True)
//       -> (grad_x, grad_weight, grad_vals)
//       input_grad=False skips grad_x (returned empty, shape (0,)): the input of a first layer
//       (data) needs none, and it is the one dense part of the backward pass
//   recurrent_lif(x, weight, bias, start, vals, beta, threshold, reset, surrogate, param,
//                 synaptic, reset_delay=True, detach_reset=False, rec_scale=None)
//       -> (spk, mem, spk_bits, pre_mem)
//       the whole sequence of a delayed recurrent LIF layer (snnTorch RLeaky convention:
//       reset_delay=True resets one step after the spike, False in the spike's own step, the
//       reset then carrying the spike's surrogate gradient unless detach_reset), time loop
//       inside the op; spk_bits holds the spikes as bytes and pre_mem (reset_delay=False only,
//       else empty) the membrane the spike was tested on, for the backward pass; rec_scale
//       (B, N), optional, multiplies each neuron's recurrent synaptic input (not the bias) for
//       the whole sequence (DelRec's recurrent dropout mask)
//   recurrent_lif_backward(grad_spk, grad_mem, weight, start, vals, beta, threshold, mem,
//                          spk_bits, pre_mem, reset, surrogate, param, synaptic, reset_delay,
//                          detach_reset, rec_scale=None)
//       -> (grad_x, grad_weight, grad_vals, grad_beta, grad_threshold)
//       reverse-time surrogate BPTT; grad_x is also the gradient of the bias (summed over time
//       and batch) and, times rec_scale, of the recurrent synaptic input.

#include <Python.h>

#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "common.h"
#include "op_checks.h"

extern "C" {
// An importable (empty) Python module: `import snn_delays_ext._C` loads the ops.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace snn_delays_ext {

namespace {

// ------------------------------------------------------------------------------------------
// delay_channels
// ------------------------------------------------------------------------------------------
at::Tensor delay_channels_cpu(const at::Tensor& x_, const at::Tensor& start_, const at::Tensor& vals_) {
  checks::delay_channels(x_, start_, vals_);
  const int64_t T = x_.size(0), B = x_.size(1), C = x_.size(2);
  auto x = x_.contiguous();
  auto start = start_.contiguous();
  auto vals = vals_.to(x.scalar_type()).contiguous();
  const int64_t W = vals.size(1);
  auto y = at::zeros_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "delay_channels_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* vp = vals.data_ptr<scalar_t>();
    const int64_t* sp = start.data_ptr<int64_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    at::parallel_for(0, T * B, 16, [&](int64_t lo, int64_t hi) {
      for (int64_t tb = lo; tb < hi; ++tb) {
        const int64_t t = tb / B, b = tb % B;
        scalar_t* yrow = yp + tb * C;
        for (int64_t c = 0; c < C; ++c) {
          scalar_t acc = 0;
          for (int64_t w = 0; w < W; ++w) {
            const scalar_t v = vp[c * W + w];
            const int64_t lag = sp[c] + w;
            if (v == scalar_t(0) || lag < 0 || lag > t) continue;
            acc += v * xp[((t - lag) * B + b) * C + c];
          }
          yrow[c] = acc;
        }
      }
    });
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> delay_channels_backward_cpu(
    const at::Tensor& gy_, const at::Tensor& x_, const at::Tensor& start_, const at::Tensor& vals_) {
  checks::delay_channels_backward(gy_, x_, start_, vals_);
  const int64_t T = x_.size(0), B = x_.size(1), C = x_.size(2);
  auto x = x_.contiguous();
  auto gy = gy_.to(x.scalar_type()).contiguous();
  auto start = start_.contiguous();
  auto vals = vals_.to(x.scalar_type()).contiguous();
  const int64_t W = vals.size(1);
  auto gx = at::zeros_like(x);
  auto gv = at::zeros({C, W}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "delay_channels_backward_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gyp = gy.data_ptr<scalar_t>();
    const scalar_t* vp = vals.data_ptr<scalar_t>();
    const int64_t* sp = start.data_ptr<int64_t>();
    scalar_t* gxp = gx.data_ptr<scalar_t>();
    scalar_t* gvp = gv.data_ptr<scalar_t>();
    at::parallel_for(0, T * B, 16, [&](int64_t lo, int64_t hi) {
      for (int64_t tb = lo; tb < hi; ++tb) {
        const int64_t t = tb / B, b = tb % B;
        for (int64_t c = 0; c < C; ++c) {
          scalar_t acc = 0;
          for (int64_t w = 0; w < W; ++w) {
            const scalar_t v = vp[c * W + w];
            const int64_t lag = sp[c] + w;
            if (v == scalar_t(0) || lag < 0 || t + lag >= T) continue;
            acc += v * gyp[((t + lag) * B + b) * C + c];
          }
          gxp[tb * C + c] = acc;
        }
      }
    });
    at::parallel_for(0, C, 1, [&](int64_t lo, int64_t hi) {
      std::vector<scalar_t> acc(W);
      for (int64_t c = lo; c < hi; ++c) {
        std::fill(acc.begin(), acc.end(), scalar_t(0));
        for (int64_t t = 0; t < T; ++t) {
          for (int64_t w = 0; w < W; ++w) {
            const int64_t lag = sp[c] + w;
            if (lag < 0 || lag > t) continue;
            const scalar_t* g = gyp + (t * B) * C + c;
            const scalar_t* xx = xp + ((t - lag) * B) * C + c;
            scalar_t a = 0;
            for (int64_t b = 0; b < B; ++b) a += g[b * C] * xx[b * C];
            acc[w] += a;
          }
        }
        for (int64_t w = 0; w < W; ++w) gvp[c * W + w] = acc[w];
      }
    });
  });
  return {gx, gv};
}

// ------------------------------------------------------------------------------------------
// synaptic_delay (feed-forward, one delay per connection)
// ------------------------------------------------------------------------------------------
// Feature-major helpers for the synaptic kernels: with sequences laid out (F, T, B), the
// contribution of one tap at lag L is a shift by L*B of a whole contiguous row, so the inner
// loops are unit-stride axpys and dot products the compiler vectorises.
// x86-64 Linux with GCC: also compile an AVX2 version of the inner loops, picked at load time
// on CPUs that have it (the default build targets baseline x86-64, i.e. SSE2).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SDX_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SDX_VECTOR_CLONES
#endif

#define SDX_AXPY_DOT(scalar_t)                                                                    \
  SDX_VECTOR_CLONES void axpy(scalar_t* __restrict__ y, const scalar_t* __restrict__ x, scalar_t a, \
                              int64_t n) {                                                        \
    for (int64_t k = 0; k < n; ++k) y[k] += a * x[k];                                            \
  }                                                                                               \
  /* y += c0 a0 + c1 a1 + c2 a2 + c3 a3: four sources per load and store of y */                 \
  SDX_VECTOR_CLONES void axpy4(scalar_t* __restrict__ y, const scalar_t* __restrict__ a0,          \
                               const scalar_t* __restrict__ a1, const scalar_t* __restrict__ a2,   \
                               const scalar_t* __restrict__ a3, const scalar_t* c, int64_t n) {    \
    const scalar_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];                                    \
    for (int64_t k = 0; k < n; ++k) y[k] += (c0 * a0[k] + c1 * a1[k]) + (c2 * a2[k] + c3 * a3[k]); \
  }                                                                                               \
  /* independent partial sums: vectorisable without -ffast-math */                               \
  SDX_VECTOR_CLONES scalar_t dot(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,  \
                                 int64_t n) {                                                     \
    constexpr int64_t kLanes = 8;                                                                 \
    scalar_t acc[kLanes] = {};                                                                    \
    int64_t k = 0;                                                                                \
    for (; k + kLanes <= n; k += kLanes)                                                          \
      for (int64_t j = 0; j < kLanes; ++j) acc[j] += a[k + j] * b[k + j];                         \
    scalar_t s = 0;                                                                               \
    for (; k < n; ++k) s += a[k] * b[k];                                                          \
    for (int64_t j = 0; j < kLanes; ++j) s += acc[j];                                             \
    return s;                                                                                     \
  }
SDX_AXPY_DOT(float)
SDX_AXPY_DOT(double)
#undef SDX_AXPY_DOT

// Spike trains are mostly zeros: below this fraction of non-zeros the synaptic kernels walk a
// compressed copy of x (about 2-3x faster than the dense axpy/dot at 5% density, one thread).
constexpr double kSparseDensity = 0.15;

// The non-zeros of each row of a feature-major (F, T, B) sequence, with per-step offsets: the
// entries of row f at steps t0 <= t < t1 are idx/val[ptr[f*(T+1)+t0] .. ptr[f*(T+1)+t1]),
// idx = t*B + b (the position in the row).
template <typename scalar_t>
struct SparseRows {
  std::vector<int64_t> ptr, idx;
  std::vector<scalar_t> val;
  int64_t T;
  SparseRows(const scalar_t* x, int64_t F, int64_t T_, int64_t B) : ptr(F * (T_ + 1)), T(T_) {
    for (int64_t f = 0; f < F; ++f) {
      for (int64_t t = 0; t < T; ++t) {
        ptr[f * (T + 1) + t] = static_cast<int64_t>(idx.size());
        for (int64_t b = 0; b < B; ++b) {
          const scalar_t v = x[(f * T + t) * B + b];
          if (v != scalar_t(0)) {
            idx.push_back(t * B + b);
            val.push_back(v);
          }
        }
      }
      ptr[f * (T + 1) + T] = static_cast<int64_t>(idx.size());
    }
  }
  int64_t begin(int64_t f, int64_t t) const { return ptr[f * (T + 1) + t]; }
};

// The compressed copy of a feature-major (F, T, B) sequence when it is sparse enough, else null
// (the kernels then use the dense rows).
template <typename scalar_t>
std::unique_ptr<SparseRows<scalar_t>> sparse_rows_if_sparse(const at::Tensor& xF) {
  const int64_t n = xF.numel();
  if (n == 0 || static_cast<double>(at::count_nonzero(xF).item<int64_t>()) >= kSparseDensity * n) return nullptr;
  return std::make_unique<SparseRows<scalar_t>>(xF.data_ptr<scalar_t>(), xF.size(0), xF.size(1), xF.size(2));
}

// Steps t of a source row whose tap at `lag` lands inside a T-step target row: x[t] reaches
// y[t + lag] for max(0, -lag) <= t < min(T, T - lag); empty (t1 <= t0) when |lag| >= T.
inline std::pair<int64_t, int64_t> lag_overlap(int64_t lag, int64_t T) {
  return lag < 0 ? std::make_pair(-lag, T) : std::make_pair(int64_t(0), T - lag);
}

// acc[w] = sum_q val[q] g0[idx[q] + w * B] over events q0 <= q < q1, for the W taps of one delay
// at once (W a compile-time constant up to 8: the sums stay in registers).
template <typename scalar_t, int64_t NW>
inline void fused_tap_sums_n(const scalar_t* val, const int64_t* idx, int64_t q0, int64_t q1, const scalar_t* g0,
                             int64_t B, scalar_t* acc) {
  scalar_t a[NW] = {};
  for (int64_t q = q0; q < q1; ++q) {
    const scalar_t xv = val[q];
    const scalar_t* g = g0 + idx[q];
    for (int64_t w = 0; w < NW; ++w) a[w] += xv * g[w * B];
  }
  for (int64_t w = 0; w < NW; ++w) acc[w] = a[w];
}

template <typename scalar_t>
inline void fused_tap_sums(const scalar_t* val, const int64_t* idx, int64_t q0, int64_t q1, const scalar_t* g0,
                           int64_t B, int64_t W, scalar_t* acc) {
  switch (W) {
    case 1: return fused_tap_sums_n<scalar_t, 1>(val, idx, q0, q1, g0, B, acc);
    case 2: return fused_tap_sums_n<scalar_t, 2>(val, idx, q0, q1, g0, B, acc);
    case 3: return fused_tap_sums_n<scalar_t, 3>(val, idx, q0, q1, g0, B, acc);
    case 4: return fused_tap_sums_n<scalar_t, 4>(val, idx, q0, q1, g0, B, acc);
    case 5: return fused_tap_sums_n<scalar_t, 5>(val, idx, q0, q1, g0, B, acc);
    case 6: return fused_tap_sums_n<scalar_t, 6>(val, idx, q0, q1, g0, B, acc);
    case 7: return fused_tap_sums_n<scalar_t, 7>(val, idx, q0, q1, g0, B, acc);
    case 8: return fused_tap_sums_n<scalar_t, 8>(val, idx, q0, q1, g0, B, acc);
    default:
      for (int64_t w = 0; w < W; ++w) acc[w] = 0;
      for (int64_t q = q0; q < q1; ++q)
        for (int64_t w = 0; w < W; ++w) acc[w] += val[q] * g0[idx[q] + w * B];
  }
}

// s + sum_q val[q] g[idx[q]] over events q0 <= q < q1 (one tap).
template <typename scalar_t>
inline scalar_t gather_events(const scalar_t* __restrict__ val, const int64_t* __restrict__ idx, int64_t q0, int64_t q1,
                              const scalar_t* __restrict__ g, scalar_t s) {
  for (int64_t q = q0; q < q1; ++q) s += val[q] * g[idx[q]];
  return s;
}

// y[idx[q]] += c val[q] over events q0 <= q < q1 (one tap).
template <typename scalar_t>
inline void scatter_events(const scalar_t* __restrict__ val, const int64_t* __restrict__ idx, int64_t q0, int64_t q1,
                           scalar_t* __restrict__ y, scalar_t c) {
  for (int64_t q = q0; q < q1; ++q) y[idx[q]] += c * val[q];
}

// y0[idx[q] + k * B] += c[k] val[q] over events q0 <= q < q1, for the NK taps of one delay at
// once (one read of each event).
template <typename scalar_t, int64_t NK>
inline void fused_tap_scatter_n(const scalar_t* val, const int64_t* idx, int64_t q0, int64_t q1, scalar_t* y0,
                                int64_t B, const scalar_t* c) {
  scalar_t cc[NK];
  for (int64_t k = 0; k < NK; ++k) cc[k] = c[k];
  for (int64_t q = q0; q < q1; ++q) {
    const scalar_t xv = val[q];
    scalar_t* y = y0 + idx[q];
    for (int64_t k = 0; k < NK; ++k) y[k * B] += cc[k] * xv;
  }
}

// Widest band of nonzero taps the forward scatters in one walk of the events.
constexpr int64_t kFusedScatterTaps = 8;

template <typename scalar_t>
inline void fused_tap_scatter(const scalar_t* val, const int64_t* idx, int64_t q0, int64_t q1, scalar_t* y0,
                              int64_t B, int64_t NK, const scalar_t* c) {
  switch (NK) {
    case 2: return fused_tap_scatter_n<scalar_t, 2>(val, idx, q0, q1, y0, B, c);
    case 3: return fused_tap_scatter_n<scalar_t, 3>(val, idx, q0, q1, y0, B, c);
    case 4: return fused_tap_scatter_n<scalar_t, 4>(val, idx, q0, q1, y0, B, c);
    default:
      for (int64_t q = q0; q < q1; ++q)
        for (int64_t k = 0; k < NK; ++k) y0[idx[q] + k * B] += c[k] * val[q];
  }
}

at::Tensor synaptic_delay_cpu(const at::Tensor& x_, const at::Tensor& weight_, const at::Tensor& start_,
                              const at::Tensor& vals_) {
  checks::synaptic_delay(x_, weight_, start_, vals_);
  const int64_t T = x_.size(0), B = x_.size(1), I = x_.size(2);
  const int64_t O = weight_.size(0);
  // feature-major (F, T, B): a tap at lag L adds a whole input row, shifted by L*B, to an
  // output row (a unit-stride axpy); each thread owns some output rows
  auto xF = x_.permute({2, 0, 1}).contiguous();
  auto w = weight_.to(x_.scalar_type()).contiguous();                 // (O, I)
  auto st = start_.contiguous();                                     // (O, I)
  auto v = vals_.to(x_.scalar_type()).contiguous();                  // (O, I, W)
  const int64_t W = v.size(2);
  const int64_t TB = T * B;
  auto yF = at::zeros({O, T, B}, xF.options());
  AT_DISPATCH_FLOATING_TYPES(xF.scalar_type(), "synaptic_delay_cpu", [&] {
    const scalar_t* xp = xF.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const int64_t* sp = st.data_ptr<int64_t>();
    const scalar_t* vp = v.data_ptr<scalar_t>();
    scalar_t* yp = yF.data_ptr<scalar_t>();
    const auto sx = sparse_rows_if_sparse<scalar_t>(xF);
    at::parallel_for(0, O, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; ++o) {
        scalar_t* yo = yp + o * TB;
        for (int64_t i = 0; i < I; ++i) {
          const scalar_t wv = wp[o * I + i];
          if (wv == scalar_t(0)) continue;
          const scalar_t* vv = vp + (o * I + i) * W;
          const int64_t s0 = sp[o * I + i];
          // the nonzero taps k0 <= k < k1; sparse input: the events all of whose nonzero taps
          // land inside the sequence (tm0 <= t < tm1) scatter them in one walk
          int64_t k0 = 0, k1 = W;
          while (k0 < W && vv[k0] == scalar_t(0)) ++k0;
          while (k1 > k0 && vv[k1 - 1] == scalar_t(0)) --k1;
          const int64_t tm0 = std::max<int64_t>(0, -(s0 + k0)), tm1 = std::min<int64_t>(T, T - (s0 + k1 - 1));
          const bool fused = sx && k1 - k0 > 1 && k1 - k0 <= kFusedScatterTaps && tm0 < tm1;
          if (fused) {
            scalar_t c[kFusedScatterTaps];
            for (int64_t k = k0; k < k1; ++k) c[k - k0] = wv * vv[k];
            fused_tap_scatter<scalar_t>(sx->val.data(), sx->idx.data(), sx->begin(i, tm0), sx->begin(i, tm1),
                                        yo + (s0 + k0) * B, B, k1 - k0, c);
          }
          for (int64_t k = k0; k < k1; ++k) {
            const int64_t lag = s0 + k;
            const auto [t0, t1] = lag_overlap(lag, T);
            if (vv[k] == scalar_t(0) || t1 <= t0) continue;
            const scalar_t c = wv * vv[k];
            if (sx) {
              const scalar_t* ev = sx->val.data();
              const int64_t* ix = sx->idx.data();
              scalar_t* ys = yo + lag * B;
              if (fused) {  // the steps of [t0, t1) outside [tm0, tm1)
                if (t0 < tm0) scatter_events(ev, ix, sx->begin(i, t0), sx->begin(i, std::min(t1, tm0)), ys, c);
                if (tm1 < t1) scatter_events(ev, ix, sx->begin(i, std::max(t0, tm1)), sx->begin(i, t1), ys, c);
              } else {
                scatter_events(ev, ix, sx->begin(i, t0), sx->begin(i, t1), ys, c);
              }
            } else {
              axpy(yo + (t0 + lag) * B, xp + i * TB + t0 * B, c, (t1 - t0) * B);
            }
          }
        }
      }
    });
  });
  return yF.permute({1, 2, 0}).contiguous();
}

// grad_x of synaptic_delay, (T, B, I):
//   grad_x[t, b, i] = sum_{o, w} weight[o, i] vals[o, i, w] grad_y[t + start[o, i] + w, b, o].
// The batch is cut into tiles of kBatchTileBytes (one AVX vector) and both sequences are
// copied tile-major: grad_y as (tiles, O, P0 + T + P1, bt), with P0 zero steps before and P1
// after the sequence so that a tap at any lag -P0 <= lag <= P1 reads a whole T-step window
// (zeros outside), and grad_x as (tiles, I, T, bt). A tap at lag L is then a shift by L*bt of a
// contiguous T*bt tile row (32-byte aligned, unit-stride axpys, four sources per pass), and the
// grad_x tiles of a block of inputs and the grad_y tiles of a group of outputs are small enough
// to stay in the L1 cache while all the taps of the group are added to the block. With whole
// (T*B) rows, grad_x and grad_y came from the L2 cache or beyond on every pass: the tiles made
// this part 1.2-1.9x faster on one thread (a busy 2-core AMD EPYC; least at T250 D64, most with
// one tap per connection). Each element sums the same terms in the same order as with whole
// rows (sources in fours per group of kOutputGroup outputs, groups in order): the same result
// to the bit.
constexpr int64_t kBatchTileBytes = 32;

// The blocking of both parts of the synaptic backward: a thread works on kInputBlock input
// features at a time, and the taps of kOutputGroup outputs are applied to the block together
// (their grad_y rows or tiles read once per block, not once per input).
constexpr int64_t kInputBlock = 8;
constexpr int64_t kOutputGroup = 4;

// The (F, T, B) copy of a (T, B, F) sequence, at the start of a buffer of at least min_numel values.
inline at::Tensor feature_major(const at::Tensor& seq, int64_t min_numel) {
  const int64_t T = seq.size(0), B = seq.size(1), F = seq.size(2);
  auto buf = at::empty({std::max(F * T * B, min_numel)}, seq.options());
  auto rows = buf.narrow(0, 0, F * T * B).view({F, T, B});
  rows.copy_(seq.permute({2, 0, 1}));
  return rows;
}

struct InputGradTiles {
  int64_t P0 = 0, L = 0, bt = 1, nbt = 0;  // padding before, padded length, tile width, tiles
  int64_t gy_numel(int64_t O) const { return nbt * O * L * bt; }
  int64_t gx_numel(int64_t I, int64_t T) const { return nbt * I * T * bt; }
};

inline InputGradTiles input_grad_tiles(const at::Tensor& sT, int64_t W, int64_t T, int64_t B, int64_t elem_size) {
  InputGradTiles g;
  int64_t P1 = 0;
  if (sT.numel() > 0 && W > 0) {
    g.P0 = std::clamp<int64_t>(-sT.min().item<int64_t>(), 0, T);
    P1 = std::clamp<int64_t>(sT.max().item<int64_t>() + W - 1, 0, T);
  }
  g.L = g.P0 + T + P1;
  g.bt = std::max<int64_t>(1, kBatchTileBytes / elem_size);
  g.nbt = (B + g.bt - 1) / g.bt;  // the last tile is zero-padded when bt does not divide B
  return g;
}

// gy (T, B, O) -> grad_x (T, B, I); gyp and gxp: room for the tiled grad_y and grad_x
// (tg.gy_numel(O), tg.gx_numel(I, T) values; their contents are overwritten)
template <typename scalar_t>
at::Tensor synaptic_input_grad(const at::Tensor& gy_, const at::Tensor& wT, const at::Tensor& sT,
                               const at::Tensor& vT, const InputGradTiles& tg, scalar_t* gyp, scalar_t* gxp) {
  constexpr int64_t kCopyBlock = 16;   // features per block of the layout changes
  const int64_t T = gy_.size(0), B = gy_.size(1), O = gy_.size(2);
  const int64_t I = wT.size(0), W = vT.size(2);
  const int64_t P0 = tg.P0, L = tg.L, bt = tg.bt, nbt = tg.nbt;
  const int64_t n = T * bt;  // a grad_x tile row
  const auto gy = gy_.contiguous();
  const scalar_t* gp = gy.data_ptr<scalar_t>();
  // (T, B, O) -> (tiles, O, L, bt), zeros in the padding; grad_x tiles zeroed
  at::parallel_for(0, nbt, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t tile = lo; tile < hi; ++tile) {
      std::fill(gxp + tile * I * n, gxp + (tile + 1) * I * n, scalar_t(0));
      scalar_t* d0 = gyp + tile * O * L * bt;
      const int64_t b0 = tile * bt, nb = std::min(bt, B - b0);
      for (int64_t o = 0; o < O; ++o) {
        scalar_t* row = d0 + o * L * bt;
        std::fill(row, row + P0 * bt, scalar_t(0));
        std::fill(row + (P0 + T) * bt, row + L * bt, scalar_t(0));
        if (nb < bt)
          for (int64_t t = P0; t < P0 + T; ++t) std::fill(row + t * bt + nb, row + (t + 1) * bt, scalar_t(0));
      }
      for (int64_t c0 = 0; c0 < O; c0 += kCopyBlock) {
        const int64_t c1 = std::min(O, c0 + kCopyBlock);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t j = 0; j < nb; ++j) {
            const scalar_t* s = gp + (t * B + b0 + j) * O;
            scalar_t* d = d0 + (P0 + t) * bt + j;
            for (int64_t o = c0; o < c1; ++o) d[o * L * bt] = s[o];
          }
      }
    }
  });
  // the nonzero taps of each input, by output group: offsets in a grad_y tile and coefficients;
  // those of input i and group g are entries gb[i*(nG+1)+g] <= q < gb[i*(nG+1)+g+1]
  const int64_t nG = (O + kOutputGroup - 1) / kOutputGroup;
  std::vector<int64_t> off(I * O * W), gb(I * (nG + 1));
  std::vector<scalar_t> coef(I * O * W);
  const scalar_t* wp = wT.data_ptr<scalar_t>();
  const int64_t* sp = sT.data_ptr<int64_t>();
  const scalar_t* vp = vT.data_ptr<scalar_t>();
  at::parallel_for(0, I, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      int64_t q = i * O * W;
      for (int64_t g = 0; g < nG; ++g) {
        gb[i * (nG + 1) + g] = q;
        for (int64_t o = g * kOutputGroup; o < std::min(O, (g + 1) * kOutputGroup); ++o) {
          const scalar_t wv = wp[i * O + o];
          const scalar_t* v = vp + (i * O + o) * W;
          const int64_t s0 = sp[i * O + o];
          for (int64_t w = 0; w < W; ++w) {
            const int64_t lag = s0 + w;
            if (v[w] == scalar_t(0) || wv == scalar_t(0) || lag <= -T || lag >= T) continue;
            off[q] = (o * L + P0 + lag) * bt;
            coef[q] = wv * v[w];
            ++q;
          }
        }
      }
      gb[i * (nG + 1) + nG] = q;
    }
  });
  // work items (tile, block of inputs), tile-major: a thread's grad_y tiles stay in the L2 cache
  const int64_t nIB = (I + kInputBlock - 1) / kInputBlock;
  at::parallel_for(0, nbt * nIB, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t tile = item / nIB, i0 = (item % nIB) * kInputBlock, i1 = std::min(I, i0 + kInputBlock);
      const scalar_t* g0 = gyp + tile * O * L * bt;
      for (int64_t g = 0; g < nG; ++g) {
        for (int64_t i = i0; i < i1; ++i) {
          scalar_t* gxi = gxp + (tile * I + i) * n;
          int64_t q = gb[i * (nG + 1) + g];
          const int64_t q1 = gb[i * (nG + 1) + g + 1];
          for (; q + 4 <= q1; q += 4)
            axpy4(gxi, g0 + off[q], g0 + off[q + 1], g0 + off[q + 2], g0 + off[q + 3], &coef[q], n);
          for (; q < q1; ++q) axpy(gxi, g0 + off[q], coef[q], n);
        }
      }
    }
  });
  // (tiles, I, T, bt) -> (T, B, I)
  auto gx = at::empty({T, B, I}, gy.options());
  scalar_t* dst = gx.data_ptr<scalar_t>();
  at::parallel_for(0, nbt, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t tile = lo; tile < hi; ++tile) {
      const int64_t b0 = tile * bt, nb = std::min(bt, B - b0);
      for (int64_t c0 = 0; c0 < I; c0 += kCopyBlock) {
        const int64_t c1 = std::min(I, c0 + kCopyBlock);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t j = 0; j < nb; ++j) {
            const scalar_t* s = gxp + tile * I * n + t * bt + j;
            scalar_t* d = dst + (t * B + b0 + j) * I;
            for (int64_t i = c0; i < c1; ++i) d[i] = s[i * n];
          }
      }
    }
  });
  return gx;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> synaptic_delay_backward_cpu(
    const at::Tensor& gy_, const at::Tensor& x_, const at::Tensor& weight_, const at::Tensor& start_,
    const at::Tensor& vals_, bool input_grad) {
  checks::synaptic_delay_backward(gy_, x_, weight_, start_, vals_);
  const int64_t T = x_.size(0), B = x_.size(1), I = x_.size(2);
  const int64_t O = weight_.size(0);
  auto wT = weight_.to(x_.scalar_type()).t().contiguous();                  // (I, O)
  auto sT = start_.t().contiguous();                                        // (I, O)
  auto vT = vals_.to(x_.scalar_type()).transpose(0, 1).contiguous();        // (I, O, W)
  const int64_t W = vT.size(2);
  const int64_t TB = T * B;
  InputGradTiles tg;
  if (input_grad) tg = input_grad_tiles(sT, W, T, B, x_.element_size());
  // feature-major copies (F, T, B): one row per input / output feature; with grad_x, in buffers
  // that then hold the tiled grad_x and grad_y (one allocation less for each)
  auto xF = feature_major(x_, input_grad ? tg.gx_numel(I, T) : 0);
  auto gyF = feature_major(gy_, input_grad ? tg.gy_numel(O) : 0);
  auto gwT = at::empty({I, O}, xF.options());
  auto gvT = at::empty({I, O, W}, xF.options());
  at::Tensor gx;
  AT_DISPATCH_FLOATING_TYPES(xF.scalar_type(), "synaptic_delay_backward_cpu", [&] {
    const scalar_t* xp = xF.data_ptr<scalar_t>();
    const scalar_t* gyp = gyF.data_ptr<scalar_t>();
    const scalar_t* wp = wT.data_ptr<scalar_t>();
    const int64_t* sp = sT.data_ptr<int64_t>();
    const scalar_t* vp = vT.data_ptr<scalar_t>();
    scalar_t* gwp = gwT.data_ptr<scalar_t>();
    scalar_t* gvp = gvT.data_ptr<scalar_t>();
    const auto sx = sparse_rows_if_sparse<scalar_t>(xF);
    // each thread owns some blocks of kInputBlock input features i: their rows of grad_weight^T,
    // grad_vals^T; groups of kOutputGroup outputs are the outer loop within a block, so each
    // grad_y row is read from memory once per block rather than once per input
    constexpr int64_t kFusedTaps = 16;  // widest band whose taps are summed in one walk of the events
    // grad_weight[o, i] and grad_vals[o, i, :] of one connection
    auto connection_grads = [&](int64_t i, int64_t o) {
      const scalar_t* xi = xp + i * TB;
      const scalar_t* gyo = gyp + o * TB;  // row o
      const scalar_t* v = vp + (i * O + o) * W;
      scalar_t* gv = gvp + (i * O + o) * W;
      const int64_t s0 = sp[i * O + o];
      const scalar_t wv = wp[i * O + o];
      scalar_t gw = 0;
      // sparse input: the events whose every tap lands inside the sequence (steps tm0 <= t < tm1)
      // are walked once for all W taps (independent sums, one read of each event)
      const int64_t tm0 = std::max<int64_t>(0, -s0), tm1 = std::min<int64_t>(T, T - (s0 + W - 1));
      const bool fused = sx && W <= kFusedTaps && tm0 < tm1;
      scalar_t acc[kFusedTaps];
      if (fused)
        fused_tap_sums<scalar_t>(sx->val.data(), sx->idx.data(), sx->begin(i, tm0), sx->begin(i, tm1), gyo + s0 * B,
                                 B, W, acc);
      for (int64_t w = 0; w < W; ++w) {
        const int64_t lag = s0 + w;
        const auto [t0, t1] = lag_overlap(lag, T);
        if (t1 <= t0) {
          gv[w] = 0;
          continue;
        }
        scalar_t g = 0;  // sum_t,b x[t] gy[t + lag]
        if (sx) {
          const scalar_t* ev = sx->val.data();
          const int64_t* ix = sx->idx.data();
          const scalar_t* gs = gyo + lag * B;
          if (fused) {  // the steps of [t0, t1) outside [tm0, tm1)
            g = acc[w];
            if (t0 < tm0) g = gather_events(ev, ix, sx->begin(i, t0), sx->begin(i, std::min(t1, tm0)), gs, g);
            if (tm1 < t1) g = gather_events(ev, ix, sx->begin(i, std::max(t0, tm1)), sx->begin(i, t1), gs, g);
          } else {
            g = gather_events(ev, ix, sx->begin(i, t0), sx->begin(i, t1), gs, g);
          }
        } else {
          g = dot(xi + t0 * B, gyo + (t0 + lag) * B, (t1 - t0) * B);
        }
        gv[w] = wv * g;
        gw += v[w] * g;
      }
      gwp[i * O + o] = gw;
    };
    at::parallel_for(0, (I + kInputBlock - 1) / kInputBlock, 1, [&](int64_t blo, int64_t bhi) {
      const int64_t i0 = blo * kInputBlock, i1 = std::min(I, bhi * kInputBlock);
      for (int64_t o0 = 0; o0 < O; o0 += kOutputGroup) {
        const int64_t o1 = std::min(O, o0 + kOutputGroup);
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t o = o0; o < o1; ++o) connection_grads(i, o);
      }
    });
    // (the weight gradients are done: xF and gyF are dead, and their storage holds the tiles)
    if (input_grad)
      gx = synaptic_input_grad<scalar_t>(gy_, wT, sT, vT, tg, gyF.data_ptr<scalar_t>(), xF.data_ptr<scalar_t>());
  });
  if (!input_grad) gx = at::empty({0}, x_.options());
  return {gx, gwT.t().contiguous(), gvT.transpose(0, 1).contiguous()};
}

// ------------------------------------------------------------------------------------------
// recurrent LIF over a whole sequence
// ------------------------------------------------------------------------------------------

// delayed[b, j] = sum_w vals[j, w] s[t - lag, b, j] for one step t (axonal delays), s as bytes.
template <typename scalar_t>
inline void gather_axonal_step(const uint8_t* sb, const int64_t* sp, const scalar_t* vp, int64_t W,
                               int64_t t, int64_t B, int64_t N, int64_t b, scalar_t* out) {
  for (int64_t j = 0; j < N; ++j) {
    scalar_t acc = 0;
    for (int64_t w = 0; w < W; ++w) {
      const scalar_t v = vp[j * W + w];
      const int64_t lag = sp[j] + w;
      if (v == scalar_t(0) || lag < 1 || lag > t) continue;
      if (sb[((t - lag) * B + b) * N + j]) acc += v;
    }
    out[j] = acc;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> recurrent_lif_cpu(
    const at::Tensor& x_, const at::Tensor& weight_, const c10::optional<at::Tensor>& bias_,
    const at::Tensor& start_, const at::Tensor& vals_, const at::Tensor& beta_,
    const at::Tensor& threshold_, int64_t reset, int64_t surrogate, double sparam, bool synaptic,
    bool reset_delay, bool detach_reset, const c10::optional<at::Tensor>& rec_scale_) {
  (void)detach_reset;  // the forward is the same; the backward reads it
  checks::recurrent_lif(x_, weight_, bias_, start_, vals_, beta_, threshold_, reset, surrogate, sparam, synaptic,
                        rec_scale_, reset_delay);
  const bool carries = carries_reset(reset);
  reset = reset_kind(reset);
  const int64_t T = x_.size(0), B = x_.size(1), N = x_.size(2);
  auto x = x_.contiguous();
  const auto dt = x.scalar_type();
  auto weight = weight_.to(dt).contiguous();
  auto beta = beta_.to(dt).contiguous();
  auto thr = threshold_.to(dt).contiguous();
  auto spk = at::empty_like(x);
  auto mem = at::empty_like(x);
  auto bits = at::zeros({T, B, N}, x.options().dtype(at::kByte));
  // same-step reset: the membrane the spike is tested on (before the reset), for the backward
  auto pre = reset_delay ? at::empty({0}, x.options()) : at::empty_like(x);
  if (T == 0) return {spk, mem, bits, pre};

  at::Tensor wT, sT, vT, wT_ax;
  if (synaptic) {
    // presynaptic-major copies for the scatter of active columns
    wT = weight.t().contiguous();
    sT = start_.t().contiguous();
    vT = vals_.to(dt).transpose(0, 1).contiguous();
  } else {
    wT_ax = weight.t().contiguous();
  }
  auto vals = vals_.to(dt).contiguous();
  auto start = start_.contiguous();
  const int64_t W = vals.size(-1);
  at::Tensor bias, scale;
  if (bias_.has_value() && bias_->defined()) bias = bias_->to(dt).contiguous();
  if (rec_scale_.has_value() && rec_scale_->defined()) scale = rec_scale_->contiguous();

  AT_DISPATCH_FLOATING_TYPES(dt, "recurrent_lif_cpu", [&] {
    const scalar_t* scp = scale.defined() ? scale.data_ptr<scalar_t>() : nullptr;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* bp = beta.data_ptr<scalar_t>();
    const scalar_t* hp = thr.data_ptr<scalar_t>();
    scalar_t* spkp = spk.data_ptr<scalar_t>();
    scalar_t* memp = mem.data_ptr<scalar_t>();
    scalar_t* prep = reset_delay ? nullptr : pre.data_ptr<scalar_t>();
    uint8_t* sb = bits.data_ptr<uint8_t>();
    const int64_t* sp = start.data_ptr<int64_t>();
    const scalar_t* vp = vals.data_ptr<scalar_t>();

    auto lif = [&](int64_t t, int64_t b, const scalar_t* rrow) {
      const int64_t off = (t * B + b) * N;
      const scalar_t* xrow = xp + off;
      const scalar_t* mprev = t > 0 ? memp + off - B * N : nullptr;
      for (int64_t j = 0; j < N; ++j) {
        const scalar_t mp = mprev ? mprev[j] : scalar_t(0);
        const scalar_t base = bp[j] * mp + xrow[j] + rrow[j];
        const bool rs = carries && (mp - hp[j]) > scalar_t(0);
        scalar_t m = lif_reset_start<scalar_t>(base, hp[j], rs, reset);
        const bool s = (m - hp[j]) > scalar_t(0);
        if (!reset_delay) {  // snnTorch's reset_delay=False: the spike resets in its own step
          prep[off + j] = m;
          m = lif_reset_same_step<scalar_t>(m, hp[j], rs, s, reset);
        }
        memp[off + j] = m;
        spkp[off + j] = s ? scalar_t(1) : scalar_t(0);
        sb[off + j] = s ? 1 : 0;
      }
    };

    if (!synaptic) {
      // Batch elements are independent: each thread runs the whole time loop for its batch
      // elements (no synchronisation per step). Per step: gather the delayed presynaptic
      // activity from the byte spike history (2s taps per neuron), multiply it into the
      // weights skipping its zero entries (spikes are sparse), then the LIF update.
      const scalar_t* wtp = wT_ax.data_ptr<scalar_t>();  // (pre j, post i)
      const scalar_t* biasp = bias.defined() ? bias.data_ptr<scalar_t>() : nullptr;
      at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
        std::vector<scalar_t> del(N), rr(N);
        for (int64_t b = lo; b < hi; ++b) {
          for (int64_t t = 0; t < T; ++t) {
            gather_axonal_step<scalar_t>(sb, sp, vp, W, t, B, N, b, del.data());
            for (int64_t i = 0; i < N; ++i) rr[i] = scalar_t(0);
            for (int64_t j = 0; j < N; ++j) {
              const scalar_t dj = del[j];
              if (dj == scalar_t(0)) continue;
              const scalar_t* wrow = wtp + j * N;
              for (int64_t i = 0; i < N; ++i) rr[i] += dj * wrow[i];
            }
            const scalar_t* sc = scp ? scp + b * N : nullptr;
            for (int64_t i = 0; i < N; ++i) {
              if (sc) rr[i] *= sc[i];
              if (biasp) rr[i] += biasp[i];
            }
            lif(t, b, rr.data());
          }
        }
      });
    } else {
      const scalar_t* wp = wT.data_ptr<scalar_t>();
      const int64_t* stp = sT.data_ptr<int64_t>();
      const scalar_t* vtp = vT.data_ptr<scalar_t>();
      const scalar_t* biasp = bias.defined() ? bias.data_ptr<scalar_t>() : nullptr;
      // each batch element is independent: the whole time loop runs per element, with the
      // recurrent currents of its future steps in a thread-local (T, N) buffer
      at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
        std::vector<scalar_t> lc(T * N);
        for (int64_t b = lo; b < hi; ++b) {
          for (int64_t t = 0; t < T; ++t)
            for (int64_t i = 0; i < N; ++i) lc[t * N + i] = biasp ? biasp[i] : scalar_t(0);
          for (int64_t t = 0; t < T; ++t) {
            lif(t, b, lc.data() + t * N);
            const uint8_t* brow = sb + (t * B + b) * N;
            const scalar_t* sc = scp ? scp + b * N : nullptr;
            for (int64_t j = 0; j < N; ++j) {
              if (!brow[j]) continue;  // scatter only the active presynaptic columns
              for (int64_t i = 0; i < N; ++i) {
                const scalar_t* v = vtp + (j * N + i) * W;
                const int64_t s0 = stp[j * N + i];
                const scalar_t wv = sc ? wp[j * N + i] * sc[i] : wp[j * N + i];
                for (int64_t w = 0; w < W; ++w) {
                  const int64_t lag = s0 + w;
                  if (v[w] == scalar_t(0) || lag < 1 || t + lag >= T) continue;
                  lc[(t + lag) * N + i] += wv * v[w];
                }
              }
            }
          }
        }
      });
    }
  });
  return {spk, mem, bits, pre};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> recurrent_lif_backward_cpu(
    const at::Tensor& grad_spk_, const at::Tensor& grad_mem_, const at::Tensor& weight_,
    const at::Tensor& start_, const at::Tensor& vals_, const at::Tensor& beta_,
    const at::Tensor& threshold_, const at::Tensor& mem_, const at::Tensor& bits_, const at::Tensor& pre_mem_,
    int64_t reset, int64_t surrogate, double sparam, bool synaptic, bool reset_delay, bool detach_reset,
    const c10::optional<at::Tensor>& rec_scale_) {
  checks::recurrent_lif_backward(grad_spk_, grad_mem_, weight_, start_, vals_, beta_, threshold_, mem_, bits_,
                                 pre_mem_, reset, surrogate, sparam, synaptic, reset_delay, rec_scale_);
  const bool carries = carries_reset(reset);
  reset = reset_kind(reset);
  const int64_t T = mem_.size(0), B = mem_.size(1), N = mem_.size(2);
  auto mem = mem_.contiguous();
  const auto dt = mem.scalar_type();
  auto gsp = grad_spk_.to(dt).contiguous();
  auto gmm = grad_mem_.to(dt).contiguous();
  auto weight = weight_.to(dt).contiguous();
  auto beta = beta_.to(dt).contiguous();
  auto thr = threshold_.to(dt).contiguous();
  auto bits = bits_.contiguous();
  auto pre_mem = pre_mem_.contiguous();
  auto start = start_.contiguous();
  auto vals = vals_.to(dt).contiguous();
  const int64_t W = vals.size(-1);
  at::Tensor scale;
  if (rec_scale_.has_value() && rec_scale_->defined()) scale = rec_scale_->contiguous();

  auto gb = at::zeros({T, B, N}, mem.options());       // dL/d(beta m + x + r) per step
  auto gbeta_acc = at::zeros({B, N}, mem.options());
  auto gthr_acc = at::zeros({B, N}, mem.options());
  auto carry = at::zeros({B, N}, mem.options());       // dL/dm_t from step t + 1
  at::Tensor gdel;                                      // axonal: dL/d(delayed input)
  at::Tensor grad_w, grad_vals;
  if (!synaptic) gdel = at::zeros({T, B, N}, mem.options());
  at::Tensor wT, sT, vT;
  if (synaptic) {
    wT = weight.t().contiguous();
    sT = start.t().contiguous();
    vT = vals.transpose(0, 1).contiguous();
  }
  if (T == 0) {
    return {gb, at::zeros_like(weight), at::zeros_like(vals), at::zeros({N}, mem.options()),
            at::zeros({N}, mem.options())};
  }

  AT_DISPATCH_FLOATING_TYPES(dt, "recurrent_lif_backward_cpu", [&] {
    const scalar_t* memp = mem.data_ptr<scalar_t>();
    const scalar_t* gsp_p = gsp.data_ptr<scalar_t>();
    const scalar_t* gmm_p = gmm.data_ptr<scalar_t>();
    const scalar_t* bp = beta.data_ptr<scalar_t>();
    const scalar_t* hp = thr.data_ptr<scalar_t>();
    const uint8_t* sb = bits.data_ptr<uint8_t>();
    const int64_t* sp = start.data_ptr<int64_t>();
    const scalar_t* vp = vals.data_ptr<scalar_t>();
    scalar_t* gbp = gb.data_ptr<scalar_t>();
    scalar_t* gbeta_p = gbeta_acc.data_ptr<scalar_t>();
    scalar_t* gthr_p = gthr_acc.data_ptr<scalar_t>();
    scalar_t* carry_p = carry.data_ptr<scalar_t>();
    const scalar_t* scp = scale.defined() ? scale.data_ptr<scalar_t>() : nullptr;

    // one reverse step for batch element b given gs (dL/dspk_t from outside and from later
    // recurrent inputs)
    const scalar_t* prep = reset_delay ? nullptr : pre_mem.data_ptr<scalar_t>();
    auto step = [&](int64_t t, int64_t b, const scalar_t* gs_row) {
      const int64_t off = (t * B + b) * N;
      const scalar_t* mprev = t > 0 ? memp + off - B * N : nullptr;
      scalar_t* cr = carry_p + b * N;
      for (int64_t j = 0; j < N; ++j) {
        const scalar_t mp = mprev ? mprev[j] : scalar_t(0);
        const bool rs = carries && (mp - hp[j]) > scalar_t(0);
        const LifAdjoint<scalar_t> a = lif_adjoint<scalar_t>(
            reset_delay ? memp[off + j] : prep[off + j], hp[j], rs, sb[off + j] != 0, gs_row[j],
            gmm_p[off + j] + cr[j], reset, surrogate, sparam, reset_delay, detach_reset);
        gbp[off + j] = a.gbase;
        cr[j] = a.gbase * bp[j];
        gbeta_p[b * N + j] += a.gbase * mp;
        gthr_p[b * N + j] += a.gthr;
      }
    };

    if (!synaptic) {
      // Reverse time loop, again independent per batch element. Per step: dL/dspk from the
      // later steps that read this spike (a gather of dL/d(delayed) over the 2s taps), the LIF
      // adjoint, then dL/d(delayed)_t = gb_t W (skipping zero entries of gb_t). The weight
      // gradient is one GEMM over all steps at the end; the delayed activity it needs is
      // recomputed from the spike bytes rather than stored by the forward pass.
      scalar_t* gdp = gdel.data_ptr<scalar_t>();
      const scalar_t* wp = weight.data_ptr<scalar_t>();  // (post i, pre j)
      auto delayed = at::empty({T, B, N}, mem.options());
      scalar_t* dp = delayed.data_ptr<scalar_t>();
      auto gv_acc = at::zeros({B, N, W}, mem.options());
      scalar_t* gvap = gv_acc.data_ptr<scalar_t>();
      at::parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
        std::vector<scalar_t> gs(N);
        for (int64_t b = lo; b < hi; ++b) {
          scalar_t* gva = gvap + b * N * W;
          for (int64_t t = T - 1; t >= 0; --t) {
            const int64_t off = (t * B + b) * N;
            for (int64_t j = 0; j < N; ++j) {
              scalar_t acc = gsp_p[off + j];
              for (int64_t w = 0; w < W; ++w) {
                const scalar_t v = vp[j * W + w];
                const int64_t lag = sp[j] + w;
                if (v == scalar_t(0) || lag < 1 || t + lag >= T) continue;
                acc += v * gdp[((t + lag) * B + b) * N + j];
              }
              gs[j] = acc;
            }
            step(t, b, gs.data());
            scalar_t* gd = gdp + off;
            for (int64_t j = 0; j < N; ++j) gd[j] = scalar_t(0);
            const scalar_t* gbr = gbp + off;
            const scalar_t* sc = scp ? scp + b * N : nullptr;
            for (int64_t i = 0; i < N; ++i) {
              const scalar_t g = sc ? gbr[i] * sc[i] : gbr[i];
              if (g == scalar_t(0)) continue;
              const scalar_t* wrow = wp + i * N;
              for (int64_t j = 0; j < N; ++j) gd[j] += g * wrow[j];
            }
            // tap gradient: dL/d(delayed)_t times the spikes `lag` steps earlier
            for (int64_t j = 0; j < N; ++j) {
              for (int64_t w = 0; w < W; ++w) {
                const int64_t lag = sp[j] + w;
                if (lag < 1 || lag > t) continue;
                if (sb[((t - lag) * B + b) * N + j]) gva[j * W + w] += gd[j];
              }
            }
            gather_axonal_step<scalar_t>(sb, sp, vp, W, t, B, N, b, dp + off);
          }
        }
      });
      // the recurrent input's gradient is gb times the scale (the bias and x get gb itself)
      auto grec = scale.defined() ? gb * scale : gb;
      grad_w = at::mm(grec.view({T * B, N}).t(), delayed.view({T * B, N}));
      grad_vals = gv_acc.sum(0);
    } else {
      const scalar_t* wp = wT.data_ptr<scalar_t>();  // (pre j, post i)
      const int64_t* stp = sT.data_ptr<int64_t>();
      const scalar_t* vtp = vT.data_ptr<scalar_t>();
      // dL/dbase over time is kept batch-minor, g0[(t * N + i) * B + b], so that the gather over
      // later steps reads B contiguous values per (synapse, tap) and the inner loop over the
      // batch vectorises; zero padding on both ends of the buffer removes the bounds checks
      // (taps outside the valid lags are zero). Per step: the gather for all presynaptic j
      // (threads own blocks of j), then the LIF adjoint per batch element.
      int64_t smin = 0, smax = 0;
      for (int64_t q = 0; q < N * N; ++q) {
        smin = std::min(smin, stp[q]);
        smax = std::max(smax, stp[q]);
      }
      const int64_t pad_lo = -smin, pad_hi = smax + W + 1;
      std::vector<scalar_t> gbl((pad_lo + T + pad_hi) * N * B, scalar_t(0));
      scalar_t* g0 = gbl.data() + pad_lo * N * B;
      std::vector<scalar_t> gsb(B * N);  // dL/dspk_t, (b, j)
      const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, N * W));
      for (int64_t t = T - 1; t >= 0; --t) {
        at::parallel_for(0, N, grain, [&](int64_t lo, int64_t hi) {
          std::vector<scalar_t> acc_v(B), a_v(B);
          scalar_t* __restrict acc = acc_v.data();
          scalar_t* __restrict a = a_v.data();
          for (int64_t j = lo; j < hi; ++j) {
            const scalar_t* vj = vtp + j * N * W;
            const int64_t* sj = stp + j * N;
            const scalar_t* wj = wp + j * N;
            for (int64_t b = 0; b < B; ++b) acc[b] = scalar_t(0);
            for (int64_t i = 0; W > 0 && i < N; ++i) {
              const scalar_t wv = wj[i];
              const scalar_t* v = vj + i * W;
              const scalar_t* __restrict g = g0 + ((t + sj[i]) * N + i) * B;
              _Pragma("omp simd")
              for (int64_t b = 0; b < B; ++b) a[b] = v[0] * g[b];
              for (int64_t w = 1; w < W; ++w) {
                const scalar_t vw = v[w];
                const scalar_t* __restrict gw = g + w * N * B;
              _Pragma("omp simd")
                for (int64_t b = 0; b < B; ++b) a[b] += vw * gw[b];
              }
              _Pragma("omp simd")
              for (int64_t b = 0; b < B; ++b) acc[b] += wv * a[b];
            }
            for (int64_t b = 0; b < B; ++b) gsb[b * N + j] = gsp_p[(t * B + b) * N + j] + acc[b];
          }
        });
        for (int64_t b = 0; b < B; ++b) {
          step(t, b, gsb.data() + b * N);
          const scalar_t* gr = gbp + (t * B + b) * N;
          const scalar_t* sc = scp ? scp + b * N : nullptr;
          scalar_t* gt = g0 + t * N * B + b;
          for (int64_t i = 0; i < N; ++i) gt[i * B] = sc ? gr[i] * sc[i] : gr[i];
        }
      }
      // weight and tap gradients: walk the stored spikes; each thread owns presynaptic columns
      auto gbT = (scale.defined() ? gb * scale : gb).transpose(0, 1).contiguous();  // (B, T, N), recurrent input
      const scalar_t* gbtp = gbT.data_ptr<scalar_t>();
      auto gwT = at::zeros({N, N}, mem.options());
      auto gvT = at::zeros({N, N, W}, mem.options());
      scalar_t* gwp = gwT.data_ptr<scalar_t>();
      scalar_t* gvp = gvT.data_ptr<scalar_t>();
      at::parallel_for(0, N, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t j = lo; j < hi; ++j) {
          for (int64_t b = 0; b < B; ++b) {
            for (int64_t t = 0; t < T; ++t) {
              if (!sb[(t * B + b) * N + j]) continue;
              const scalar_t* gbb = gbtp + b * T * N;
              for (int64_t i = 0; i < N; ++i) {
                const scalar_t* v = vtp + (j * N + i) * W;
                scalar_t* gv = gvp + (j * N + i) * W;
                const int64_t s0 = stp[j * N + i];
                const scalar_t wv = wp[j * N + i];
                scalar_t gw = 0;
                for (int64_t w = 0; w < W; ++w) {
                  const int64_t lag = s0 + w;
                  if (lag < 1 || t + lag >= T) continue;
                  const scalar_t g = gbb[(t + lag) * N + i];
                  gv[w] += wv * g;
                  gw += v[w] * g;
                }
                gwp[j * N + i] += gw;
              }
            }
          }
        }
      });
      grad_w = gwT.t().contiguous();
      grad_vals = gvT.transpose(0, 1).contiguous();
    }
  });
  return {gb, grad_w, grad_vals, gbeta_acc.sum(0), gthr_acc.sum(0)};
}

}  // namespace

TORCH_LIBRARY(snn_delays_ext, m) {
  m.def("delay_channels(Tensor x, Tensor start, Tensor vals) -> Tensor");
  m.def("delay_channels_backward(Tensor grad_y, Tensor x, Tensor start, Tensor vals) -> (Tensor, Tensor)");
  m.def("synaptic_delay(Tensor x, Tensor weight, Tensor start, Tensor vals) -> Tensor");
  m.def("synaptic_delay_backward(Tensor grad_y, Tensor x, Tensor weight, Tensor start, Tensor vals,"
        " bool input_grad=True) -> (Tensor, Tensor, Tensor)");
  m.def("recurrent_lif(Tensor x, Tensor weight, Tensor? bias, Tensor start, Tensor vals, Tensor beta,"
        " Tensor threshold, int reset, int surrogate, float surrogate_param, bool synaptic,"
        " bool reset_delay=True, bool detach_reset=False, Tensor? rec_scale=None) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("recurrent_lif_backward(Tensor grad_spk, Tensor grad_mem, Tensor weight, Tensor start,"
        " Tensor vals, Tensor beta, Tensor threshold, Tensor mem, Tensor spk_bits, Tensor pre_mem, int reset,"
        " int surrogate, float surrogate_param, bool synaptic, bool reset_delay=True,"
        " bool detach_reset=False, Tensor? rec_scale=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(snn_delays_ext, CPU, m) {
  m.impl("delay_channels", &delay_channels_cpu);
  m.impl("delay_channels_backward", &delay_channels_backward_cpu);
  m.impl("synaptic_delay", &synaptic_delay_cpu);
  m.impl("synaptic_delay_backward", &synaptic_delay_backward_cpu);
  m.impl("recurrent_lif", &recurrent_lif_cpu);
  m.impl("recurrent_lif_backward", &recurrent_lif_backward_cpu);
}

}  // namespace snn_delays_ext
