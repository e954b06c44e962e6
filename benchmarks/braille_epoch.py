"""One training step of the Braille preset's network, and where its time goes.

Times a whole training step (forward, cross-entropy, backward, Adam step, delay clamp) of the
``braille`` preset's network (``FeedForwardSNN``: 24 -> 256 -> 256 -> 27, synaptic delays up to
20 steps on the hidden layers, ``"round"`` interpolation, per-neuron learnable decays, dropout
0.3, ``li_mean`` readout; B128, T66) on random input spikes of a given density, three ways,
round-robin in one process:

- ``snntorch_loop``: the hidden neurons as snnTorch's ``Leaky`` module called once per step in a
  Python loop (the path before the fused op; written out here, the model has no such option);
- ``fused``: the model as it runs today (``FeedForwardSNN.forward``: the neurons on the fused
  ``leaky_sequence`` op);
- ``no_delay``: the ``ff-nodelay`` control (``nn.Linear`` instead of ``DelayedLinear``, the same
  neurons on the fused op).

Then a breakdown per hidden layer, each part timed alone on the layer's real input (the
network's own hidden spikes after dropout for the second layer): delayed linear map forward and
backward, the neurons forward and backward (fused op and snnTorch loop), the ``nn.Linear`` of
the no-delay control, and the readout, loss and optimiser step. Medians of ``--repeats``; compare
ratios within one run.

    python -m benchmarks.braille_epoch [--density 0.05] [--threads 1] [--repeats 5] [--json out.json]
                                       [--batch 128] [--steps 66] [--hidden 256 256] [--sigma 2.0]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from snn_delays_ext import clamp_delays_, delay_parameters, set_sigma, weight_parameters
from snn_delays_ext.functional import leaky_sequence
from snn_delays_ext.functional.leaky_sequence import leaky_sequence_choice
from snn_delays_ext.train.config import make_config
from snn_delays_ext.train.models import _leaky_parameters, build_model, readout_logits

N_IN, N_OUT = 24, 27  # Braille: 12 taxels x ON/OFF channels, 27 letters


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _snntorch_neurons(lif: nn.Module, cur: torch.Tensor) -> torch.Tensor:
    """snnTorch's module called once per step (the old path)."""
    mem = lif.init_leaky()
    spikes = []
    for c in cur.unbind(0):
        spk, mem = lif(c, mem)
        spikes.append(spk)
    return torch.stack(spikes).to(cur.dtype)


def _fused_neurons(lif: nn.Module, cur: torch.Tensor) -> torch.Tensor:
    params = _leaky_parameters(lif)
    assert params is not None, "the preset's neurons should run on the fused op"
    return leaky_sequence(cur, params)[0]


def forward_snntorch_loop(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``FeedForwardSNN.forward`` with the hidden neurons stepped by snnTorch's module."""
    h = x
    on_current = net.dropout_placement == "current"
    for lin, norm, lif in zip(net.linears, net.norms, net.lifs):
        cur = norm(lin(h))
        h = _snntorch_neurons(lif, net.drop(cur) if on_current else cur)
        if not on_current:
            h = net.drop(h)
    return readout_logits(net.out(h), net.readout, net.beta_out)


def forward_model(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own forward (today's path)."""
    return net(x)


def build(delays: bool, hidden: Sequence[int], max_delay: int, sigma: float, device: str) -> nn.Module:
    """The ``braille`` preset's network (``ff-delays``) or its no-delay control (``ff-nodelay``)."""
    cfg = make_config("braille", overrides={"data_dir": "unused", "model.hidden": list(hidden),
                                            "model.max_delay": max_delay})
    torch.manual_seed(0)
    net = build_model("ff-delays" if delays else "ff-nodelay", N_IN, N_OUT, cfg).to(device).train()
    if delays:
        set_sigma(net, sigma)
    net.lr, net.delay_lr, net.weight_decay = cfg.optim.lr, cfg.optim.delay_lr, cfg.optim.weight_decay
    return net


def optimizer(net: nn.Module) -> torch.optim.Optimizer:
    """Adam with the training engine's two groups (weights and decays; delays without weight decay)."""
    groups = [{"params": weight_parameters(net), "lr": net.lr, "weight_decay": net.weight_decay}]
    if delay_parameters(net):
        groups.append({"params": delay_parameters(net), "lr": net.delay_lr, "weight_decay": 0.0})
    return torch.optim.Adam(groups)


Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def train_step(net: nn.Module, opt: torch.optim.Optimizer, forward: Forward, x: torch.Tensor,
               y: torch.Tensor) -> float:
    """One training step as the engine runs it; seconds."""
    _sync(str(x.device))
    t0 = time.perf_counter()
    logits = forward(net, x)
    loss = nn.functional.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    clamp_delays_(net)
    _sync(str(x.device))
    return time.perf_counter() - t0


def check_same_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """The snnTorch loop and the model's forward give the same loss and gradients (same dropout
    masks), so the timings compare like with like."""
    grads = []
    for forward in (forward_snntorch_loop, forward_model):
        net.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        nn.functional.cross_entropy(forward(net, x), y).backward()
        grads.append([p.grad.clone() for p in net.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1])
    for a, e in zip(*grads):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * max(1.0, float(e.abs().max())))
    net.zero_grad(set_to_none=True)


def _timed(fn: Callable[[], object], device: str) -> Tuple[float, object]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def layer_parts(label: str, lin: nn.Module, lif: nn.Module, plain: nn.Module, h: torch.Tensor, input_grad: bool,
                repeats: int, gen: torch.Generator) -> Dict[str, object]:
    """Median times (ms) of the parts of one hidden layer on the input ``h``: the delayed linear
    map, the ``nn.Linear`` of the control, the neurons on the fused op and stepped by snnTorch,
    each forward and backward (of ``(out * g).sum()`` for a fixed random ``g``)."""
    device = str(h.device)
    h_in = h.detach().requires_grad_(input_grad)
    T, B, _ = h_in.shape
    g = torch.randn(T, B, lin.out_features, generator=gen).to(h.device)
    times: Dict[str, List[float]] = {}
    for r in range(repeats + 1):  # the first round warms up
        parts = []
        for name, layer in (("delayed_linear", lin), ("linear", plain)):
            tf, cur = _timed(lambda layer=layer: layer(h_in), device)
            tb, _ = _timed(lambda cur=cur: cur.backward(g), device)
            parts += [(f"{name}_fwd", tf), (f"{name}_bwd", tb)]
        cur = lin(h_in).detach().requires_grad_()
        for name, neurons in (("neurons_fused", _fused_neurons), ("neurons_snntorch", _snntorch_neurons)):
            tf, spk = _timed(lambda neurons=neurons: neurons(lif, cur), device)
            tb, _ = _timed(lambda spk=spk: (spk * g).sum().backward(), device)
            parts += [(f"{name}_fwd", tf), (f"{name}_bwd", tb)]
        for name, seconds in parts if r else ():
            times.setdefault(name, []).append(seconds)
    med = {k: round(statistics.median(v) * 1e3, 2) for k, v in times.items()}
    with torch.no_grad():
        rate = float((_fused_neurons(lif, lin(h)) != 0).float().mean())
    cur_like = h.new_empty(()).expand(T, B, lin.out_features)
    return {"layer": label,
            "backend": {"connections": lin.backend(h).backend,
                        "neurons": leaky_sequence_choice(cur_like, _leaky_parameters(lif))[0].backend},
            "input_density": round(float((h != 0).float().mean()), 4), "spike_rate": round(rate, 4), **med}


def breakdown(net: nn.Module, control: nn.Module, x: torch.Tensor, y: torch.Tensor, density: float, repeats: int
              ) -> Tuple[List[Dict[str, object]], Dict[str, float]]:
    """Per hidden layer, the median time (ms) of each part on the layer's real input, and the
    last hidden layer once more on random input spikes of ``density`` (a layer whose input has
    that event rate); and the parts outside the hidden layers (readout + loss, optimiser step)."""
    device = str(x.device)
    # the inputs of each hidden layer: the data, then the hidden spikes after dropout
    inputs = []
    with torch.no_grad():
        torch.manual_seed(2)
        h = x
        for lin, norm, lif in zip(net.linears, net.norms, net.lifs):
            inputs.append(h)
            h = net.drop(_fused_neurons(lif, norm(lin(h))))
        readout_in = h
    gen = torch.Generator(device="cpu").manual_seed(3)
    rows = []
    for i, (lin, lif, plain) in enumerate(zip(net.linears, net.lifs, control.linears)):
        label = f"{lin.in_features}->{lin.out_features}"
        rows.append(layer_parts(label, lin, lif, plain, inputs[i], i > 0, repeats, gen))  # layer 0's input is data
    if len(net.linears) > 1:
        lin, lif, plain = net.linears[-1], net.lifs[-1], control.linears[-1]
        T, B, _ = x.shape
        spikes = (torch.rand(T, B, lin.in_features, generator=gen) < density).float().to(x.device)
        label = f"{lin.in_features}->{lin.out_features} on {density:g} input events"
        rows.append(layer_parts(label, lin, lif, plain, spikes, True, repeats, gen))
    # the readout, loss and optimiser step
    other: Dict[str, List[float]] = {"readout_loss_fwd_bwd": [], "optimizer_step": [], "dropout_fwd_bwd": []}
    opt = optimizer(net)
    h_in = readout_in.detach().requires_grad_()
    for r in range(repeats + 1):
        def readout() -> None:
            logits = readout_logits(net.out(h_in), net.readout, net.beta_out)
            nn.functional.cross_entropy(logits, y).backward()

        t_read, _ = _timed(readout, device)
        for p in net.parameters():  # every parameter has a gradient, as after a step
            if p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)

        def step() -> None:
            opt.step()
            clamp_delays_(net)

        t_opt, _ = _timed(step, device)

        def dropout() -> None:  # after every hidden layer
            for h in inputs[1:] + [readout_in]:
                h = h.detach().requires_grad_()
                net.drop(h).sum().backward()

        t_drop, _ = _timed(dropout, device)
        if r:
            other["readout_loss_fwd_bwd"].append(t_read)
            other["optimizer_step"].append(t_opt)
            other["dropout_fwd_bwd"].append(t_drop)
    net.zero_grad(set_to_none=True)
    return rows, {k: round(statistics.median(v) * 1e3, 2) for k, v in other.items()}


def run(device: str, batch: int, steps: int, hidden: Sequence[int], max_delay: int, density: float,
        sigma: float, repeats: int) -> Dict[str, object]:
    net = build(True, hidden, max_delay, sigma, device)
    control = build(False, hidden, max_delay, sigma, device)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(steps, batch, N_IN, generator=g) < density).float().to(device)
    y = torch.randint(0, N_OUT, (batch,), generator=g).to(device)
    check_same_gradients(net, x, y)
    # each way trains its own copy (the same initialisation: built with the same seed)
    ways: Dict[str, Tuple[nn.Module, Forward]] = {
        "snntorch_loop": (build(True, hidden, max_delay, sigma, device), forward_snntorch_loop),
        "fused": (build(True, hidden, max_delay, sigma, device), forward_model),
        "no_delay": (build(False, hidden, max_delay, sigma, device), forward_model),
    }
    opts = {k: optimizer(m) for k, (m, _) in ways.items()}
    # every timed step starts from the initial parameters (restored outside the timer): the
    # cost of the event-driven kernels follows the spike rates, which training would change
    start = {k: copy.deepcopy(m.state_dict()) for k, (m, _) in ways.items()}
    times: Dict[str, List[float]] = {k: [] for k in ways}
    for r in range(repeats + 1):  # the first round warms up
        for k, (m, f) in ways.items():
            t = train_step(m, opts[k], f, x, y)
            m.load_state_dict(start[k])
            if r:
                times[k].append(t)
    step_ms = {k: round(statistics.median(v) * 1e3, 2) for k, v in times.items()}
    layers, other = breakdown(net, control, x, y, density, repeats)
    per_layer_ratio = []
    for r in layers:
        delayed = r["delayed_linear_fwd"] + r["delayed_linear_bwd"] + r["neurons_fused_fwd"] + r["neurons_fused_bwd"]
        plain = r["linear_fwd"] + r["linear_bwd"] + r["neurons_fused_fwd"] + r["neurons_fused_bwd"]
        per_layer_ratio.append(round(delayed / plain, 2))
    return {
        "shape": f"B{batch} T{steps} {N_IN}-{'-'.join(map(str, hidden))}-{N_OUT} D{max_delay}",
        "density": density, "sigma": sigma, "step_ms": step_ms,
        "snntorch_loop_over_fused": round(step_ms["snntorch_loop"] / step_ms["fused"], 2),
        "fused_over_no_delay": round(step_ms["fused"] / step_ms["no_delay"], 2),
        "layers": layers, "delayed_layer_over_linear_layer": per_layer_ratio, "other_ms": other,
        # the parts of today's step timed alone (the hidden layers on their real inputs), summed
        "fused_parts_ms": round(sum(r[k] for r in layers[:len(hidden)] for k in
                                    ("delayed_linear_fwd", "delayed_linear_bwd", "neurons_fused_fwd",
                                     "neurons_fused_bwd")) + sum(other.values()), 2),
    }


def _print(res: Dict[str, object], device: str, threads: Optional[int], repeats: int) -> None:
    thr = f", {threads} thread(s)" if threads else ""
    print(f"Braille preset training step, {res['shape']}, input density {res['density']}, sigma {res['sigma']}, "
          f"{device}{thr}, medians of {repeats}")
    s = res["step_ms"]
    print(f"  step: snnTorch loop {s['snntorch_loop']:.1f} ms   fused (today) {s['fused']:.1f} ms   "
          f"no-delay control {s['no_delay']:.1f} ms")
    print(f"  snnTorch loop / fused {res['snntorch_loop_over_fused']:.2f}x   "
          f"fused / no-delay {res['fused_over_no_delay']:.2f}x")
    print(f"  the parts below (real inputs) add up to {res['fused_parts_ms']:.1f} ms of the fused step")
    print("  per hidden layer (ms)      fwd      bwd")
    for r, ratio in zip(res["layers"], res["delayed_layer_over_linear_layer"]):
        print(f"  layer {r['layer']} (input density {r['input_density']:.3f}, spike rate {r['spike_rate']:.3f}; "
              f"delayed linear: {r['backend']['connections']}, neurons: {r['backend']['neurons']})")
        for part, label in (("delayed_linear", "delayed linear"), ("neurons_fused", "neurons (fused)"),
                            ("neurons_snntorch", "neurons (snnTorch)"), ("linear", "nn.Linear")):
            print(f"    {label:<22} {r[part + '_fwd']:8.2f} {r[part + '_bwd']:8.2f}")
        print(f"    delayed layer / (nn.Linear + the same LIF): {ratio:.2f}x")
    o = res["other_ms"]
    print(f"  readout + loss fwd+bwd {o['readout_loss_fwd_bwd']:.2f} ms   dropout fwd+bwd "
          f"{o['dropout_fwd_bwd']:.2f} ms   optimiser step + clamp {o['optimizer_step']:.2f} ms")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=66, help="time steps T (the preset's 20 ms bins: 66)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    ap.add_argument("--max-delay", type=int, default=20)
    ap.add_argument("--density", type=float, default=0.05, help="fraction of input entries that are spikes")
    ap.add_argument("--sigma", type=float, default=2.0,
                    help="triangle width of the delay gradient (the preset's first epoch: sigma0 = 2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    for name in ("batch", "steps", "max_delay", "threads", "repeats"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')}: expected an int >= 1, got {getattr(a, name)}")
    if not 0.0 < a.density <= 1.0:
        ap.error(f"--density: expected a fraction in (0, 1], got {a.density}")
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    res = run(a.device, a.batch, a.steps, a.hidden, a.max_delay, a.density, a.sigma, a.repeats)
    _print(res, a.device, a.threads if a.device == "cpu" else None, a.repeats)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": a.device, "threads": a.threads if a.device == "cpu" else None,
                       "repeats": a.repeats, "torch": torch.__version__, **res}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
