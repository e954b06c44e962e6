// Shared helpers of the CPU and CUDA delay kernels.
//
// Delays reach the kernels as *banded taps*: for every delay a first integer lag `start`
// (int64) and `W` consecutive tap weights `vals[..., w]` for the lags `start + w`. Tap weights
// outside the valid lag range are zero (the Python side masks them), so the kernels only skip
// lags that would read the future or fall outside the sequence.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SDX_HD __host__ __device__ __forceinline__
#else
#define SDX_HD inline
#endif

namespace snn_delays_ext {

// Start lags are limited to [-kLagLimit, kLagLimit) and tap widths to kLagLimit, so that every
// index computation of the kernels (start + w, t - lag, (t - lag) * B) stays far from int64
// overflow. op_checks.h enforces it on CPU; the CUDA kernels read lags through safe_lag.
constexpr int64_t kLagLimit = int64_t(1) << 31;

// A start lag clamped to [-kLagLimit, kLagLimit]: the same (nothing read) for any sequence
// shorter than 2^31 steps when the lag lies outside, and no overflow in what follows.
SDX_HD int64_t safe_lag(int64_t lag) {
  return lag < -kLagLimit ? -kLagLimit : (lag > kLagLimit ? kLagLimit : lag);
}

// Surrogate kinds (keep in sync with snn_delays_ext/surrogate.py).
enum SurrogateKind : int64_t {
  kATan = 0,            // snntorch.surrogate.atan(alpha)
  kFastSigmoid = 1,     // snntorch.surrogate.fast_sigmoid(slope)
  kSigmoid = 2,         // snntorch.surrogate.sigmoid(slope)
  kTriangular = 3,      // snntorch.surrogate.triangular(threshold)
  kStraightThrough = 4, // snntorch.surrogate.straight_through_estimator()
  kHeaviside = 5,       // snntorch.surrogate.heaviside()
  kTriangle = 6,        // snn_delays_ext.surrogate.triangle(gamma)
};

// Reset mechanisms (keep in sync with snn_delays_ext/ops.py).
enum ResetKind : int64_t { kSubtract = 0, kZero = 1, kNone = 2 };
// Codes 3 and 4: subtract / zero reset once per spike, in its own step, with the threshold test on
// the charged membrane (spikingjelly's LIF, DelRec's neuron; reset_delay=False only). They differ
// from snnTorch's same-step reset (codes 0, 1 with reset_delay=False) only when a membrane is still
// above threshold after its reset: snnTorch then resets it again before the next test.
constexpr int64_t kOnceOffset = 3;
SDX_HD bool carries_reset(int64_t reset) { return reset < kOnceOffset; }
SDX_HD int64_t reset_kind(int64_t reset) { return reset < kOnceOffset ? reset : reset - kOnceOffset; }

// Derivative of the spike function at u = mem - threshold, as the Python surrogate's backward
// computes it (snnTorch's, or snn_delays_ext.surrogate.triangle).
template <typename scalar_t>
SDX_HD scalar_t surrogate_grad(scalar_t u, int64_t kind, double p) {
  const scalar_t a = static_cast<scalar_t>(p);
  switch (kind) {
    case kATan: {
      const scalar_t z = static_cast<scalar_t>(M_PI / 2.0) * a * u;
      return a / scalar_t(2) / (scalar_t(1) + z * z);
    }
    case kFastSigmoid: {
      const scalar_t d = a * (u < scalar_t(0) ? -u : u) + scalar_t(1);
      return scalar_t(1) / (d * d);
    }
    case kSigmoid: {
      const scalar_t e = exp(-a * u);
      return a * e / ((e + scalar_t(1)) * (e + scalar_t(1)));
    }
    case kTriangular:
      return u >= scalar_t(0) ? -a : a;
    case kStraightThrough:
      return scalar_t(1);
    case kHeaviside:
      return u > scalar_t(0) ? scalar_t(1) : scalar_t(0);
    case kTriangle: {
      const scalar_t v = a - (u < scalar_t(0) ? -u : u);
      return v > scalar_t(0) ? v / (a * a) : scalar_t(0);
    }
    default:
      return scalar_t(0);
  }
}

// ---- the LIF update of the recurrent op (snnTorch's RLeaky, reset_delay True or False) -------
// base = beta m_{t-1} + x_t + r_t; rs = H(m_{t-1} - thr), the previous step's spike as the
// membrane says (reset_delay=True resets with it, one step late).

// The membrane after the one-step-late reset: the one the spike is tested on.
template <typename scalar_t>
SDX_HD scalar_t lif_reset_start(scalar_t base, scalar_t thr, bool rs, int64_t reset) {
  if (reset == kSubtract) return rs ? base - thr : base;
  if (reset == kZero) return rs ? scalar_t(0) * base : base;
  return base;
}

// reset_delay=False: snnTorch undoes the late reset and resets with the step's own spike s,
// m = m1 - (s - rs) thr (subtract) or m1 - (s - rs) m1 (zero), in that order of operations.
template <typename scalar_t>
SDX_HD scalar_t lif_reset_same_step(scalar_t m1, scalar_t thr, bool rs, bool s, int64_t reset) {
  const scalar_t d = scalar_t(s ? 1 : 0) - scalar_t(rs ? 1 : 0);
  if (reset == kSubtract) return m1 - d * thr;
  if (reset == kZero) return m1 - d * m1;
  return m1;
}

template <typename scalar_t>
struct LifAdjoint {
  scalar_t gbase;  // dL/d(base)
  scalar_t gthr;   // this step's part of dL/d(threshold)
};

// One step of the adjoint. m1: the membrane the spike was tested on (the stored membrane for
// reset_delay=True, the pre-reset one otherwise); gs: dL/dspk_t; gm: dL/dm_t from the outputs
// and the next step. With reset_delay=False the reset carries the spike's surrogate gradient
// unless detach_reset. zero_clears_base: the one-step-late zero reset clears the whole base
// (RLeaky); false: the caller's base is never cleared (Leaky clears the previous membrane inside
// its base, see leaky_previous), so dL/dm1 is dL/dbase.
template <typename scalar_t>
SDX_HD LifAdjoint<scalar_t> lif_adjoint(scalar_t m1, scalar_t thr, bool rs, bool s, scalar_t gs, scalar_t gm,
                                        int64_t reset, int64_t surrogate, double sparam, bool reset_delay,
                                        bool detach_reset, bool zero_clears_base = true) {
  const scalar_t sg = surrogate_grad<scalar_t>(m1 - thr, surrogate, sparam);
  LifAdjoint<scalar_t> a;
  if (reset_delay || reset == kNone) {
    const scalar_t g = gm + gs * sg;
    a.gbase = (reset == kZero && rs && zero_clears_base) ? scalar_t(0) : g;
    a.gthr = -gs * sg;
    if (reset == kSubtract && rs) a.gthr -= g;
    return a;
  }
  const scalar_t r = rs ? scalar_t(1) : scalar_t(0);
  const scalar_t d = (s ? scalar_t(1) : scalar_t(0)) - r;
  const scalar_t live = detach_reset ? scalar_t(0) : scalar_t(1);  // the reset's spike carries a gradient
  if (reset == kSubtract) {
    const scalar_t g1 = gs * sg + gm * (scalar_t(1) - live * thr * sg);  // dL/dm1
    a.gbase = g1;
    a.gthr = -r * g1 - gs * sg + gm * (-d + live * thr * sg);
  } else {  // zero
    const scalar_t g1 = gs * sg + gm * (scalar_t(1) - d - live * m1 * sg);
    a.gbase = zero_clears_base ? g1 * (scalar_t(1) - r) : g1;
    a.gthr = -gs * sg + gm * live * m1 * sg;
  }
  return a;
}

// ---- the LIF update of the feed-forward sequence op (snnTorch's Leaky) -----------------------
// Leaky's step differs from RLeaky's (above) in its zero reset only: Leaky clears the previous
// membrane before the decay, m1 = beta ((1 - rs) m_{t-1}) + x, where RLeaky clears the charged
// membrane, input included. Subtract and none: m1 = beta m_{t-1} + x - rs thr, as RLeaky. The
// same-step reset (reset_delay=False) is lif_reset_same_step for both, and the adjoint is
// lif_adjoint with zero_clears_base=false, the (1 - rs) then applied to the previous membrane.

// The previous membrane as it enters the decay: (1 - rs) m_{t-1} for the zero reset (snnTorch's
// order of operations), else m_{t-1}. With mp = 1: its derivative in m_{t-1}.
template <typename scalar_t>
SDX_HD scalar_t leaky_previous(scalar_t mp, bool rs, int64_t reset) {
  return reset == kZero ? (scalar_t(1) - scalar_t(rs ? 1 : 0)) * mp : mp;
}

// The membrane the spike is tested on: beta * leaky_previous + x, less thr after a spike for
// the subtractive one-step-late reset.
template <typename scalar_t>
SDX_HD scalar_t leaky_charge(scalar_t mp, scalar_t x, scalar_t beta, scalar_t thr, bool rs, int64_t reset) {
  const scalar_t base = beta * leaky_previous<scalar_t>(mp, rs, reset) + x;
  return reset == kZero ? base : lif_reset_start<scalar_t>(base, thr, rs, reset);
}

// ---- snnTorch's Synaptic neuron (the synaptic_sequence op) ---------------------------------
// syn_t = alpha syn_{t-1} + x_t, never reset; the membrane is RLeaky's with syn_t for its input:
// base = beta m_{t-1} + syn_t, the late reset lif_reset_start (the zero reset clears base, the
// input included), the same-step reset lif_reset_same_step; rs = H(m_{t-1} - thr) where the reset
// code carries a late reset (carries_reset), the kind's constants as the other ops.

template <typename scalar_t>
struct SynapticStep {
  scalar_t syn;  // syn_t
  scalar_t m1;   // the membrane the spike is tested on
  scalar_t mem;  // m_t (m1 after a same-step reset)
  bool spk;
};

template <typename scalar_t>
SDX_HD SynapticStep<scalar_t> synaptic_step(scalar_t sp, scalar_t mp, scalar_t x, scalar_t alpha, scalar_t beta,
                                            scalar_t thr, bool carries, int64_t kind, bool reset_delay) {
  SynapticStep<scalar_t> o;
  o.syn = alpha * sp + x;
  const bool rs = carries && (mp - thr) > scalar_t(0);
  o.m1 = lif_reset_start<scalar_t>(beta * mp + o.syn, thr, rs, kind);
  o.spk = (o.m1 - thr) > scalar_t(0);
  o.mem = reset_delay ? o.m1 : lif_reset_same_step<scalar_t>(o.m1, thr, rs, o.spk, kind);
  return o;
}

template <typename scalar_t>
struct SynapticAdjoint {
  scalar_t gx;         // dL/dx_t (= dL/dsyn_t)
  scalar_t gsyn_prev;  // this step's part of dL/dsyn_{t-1}
  scalar_t gmem_prev;  // this step's part of dL/dm_{t-1}
  scalar_t galpha, gbeta, gthr;  // this step's parts of the parameter gradients
};

// One reverse step: sp, mp the previous step's current and membrane, m1 the membrane the spike
// was tested on; gs = dL/dspk_t, gsyn and gm: dL/dsyn_t and dL/dm_t from the outputs and step t+1.
template <typename scalar_t>
SDX_HD SynapticAdjoint<scalar_t> synaptic_adjoint(scalar_t sp, scalar_t mp, scalar_t m1, scalar_t alpha,
                                                  scalar_t beta, scalar_t thr, scalar_t gs, scalar_t gsyn,
                                                  scalar_t gm, bool carries, int64_t kind, int64_t surrogate,
                                                  double sparam, bool reset_delay, bool detach_reset) {
  const bool rs = carries && (mp - thr) > scalar_t(0);
  const bool s = (m1 - thr) > scalar_t(0);
  const LifAdjoint<scalar_t> a =
      lif_adjoint<scalar_t>(m1, thr, rs, s, gs, gm, kind, surrogate, sparam, reset_delay, detach_reset, true);
  SynapticAdjoint<scalar_t> o;
  o.gx = gsyn + a.gbase;  // base = beta m_{t-1} + syn_t
  o.gsyn_prev = o.gx * alpha;
  o.gmem_prev = a.gbase * beta;
  o.galpha = o.gx * sp;
  o.gbeta = a.gbase * mp;
  o.gthr = a.gthr;
  return o;
}

}  // namespace snn_delays_ext
