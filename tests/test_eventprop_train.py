"""EventProp model presets in the training CLI: registry contract, engine integration, errors."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from snn_delays_ext.eventprop import (
    EventPropConfig,
    EventPropSNN,
    decays_from_taus,
    lif_sequence_surrogate,
    spike_count_planes,
    synaptic_scale,
)
from snn_delays_ext.train import TrainConfig, make_config
from snn_delays_ext.train.cli import main
from snn_delays_ext.train.models import available_models, build_model
from snn_delays_ext.utils import clamp_delays_, delay_parameters, quantize_delays, weight_parameters


def test_presets_registered():
    models = available_models()
    assert "eventprop-ff" in models and "eventprop-rec" in models
    cfg = make_config("braille-eventprop")
    assert cfg.model.name == "eventprop-ff" and cfg.model.hidden == [256, 256]
    assert make_config("shd-eventprop").model.name == "eventprop-rec"


def test_cli_end_to_end_sequence_task(tmp_path):
    # the paper's sequence-detection task (2 inputs -> 2 LI outputs) through the CLI
    out = tmp_path / "run"
    rc = main(["train", "--preset", "sequence-eventprop", "--out", str(out), "--no-progress", "--epochs", "3",
               "--seed", "0", "--train-limit", "400", "--eval-limit", "100"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["model"] == "eventprop-ff"
    assert res["test_acc"] >= 0.9 and res["test_acc_rounded"] >= 0.9  # chance is 0.5
    assert (out / "metrics.csv").is_file() and (out / "checkpoint.pt").is_file()


def test_cli_model_flag_on_hidden_network(tmp_path):
    # the sequence task's EventProp preset with a hidden layer; learns above chance
    out = tmp_path / "run"
    rc = main(["train", "--preset", "sequence-eventprop", "--hidden", "16", "--set", "model.readout=li_max",
               "--set", "eventprop.weight_mean=6", "--set", "eventprop.weight_std=2", "--sigma0", "0", "--out", str(out),
               "--no-progress",
               "--epochs", "3", "--lr", "0.01", "--delay-lr", "0.5", "--train-limit", "400", "--eval-limit", "100"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["test_acc"] > 0.7, res


def test_contract_and_engine_parameter_groups():
    torch.manual_seed(0)
    cfg = make_config("sequence-eventprop", overrides={"model": "eventprop-rec", "hidden": [6], "readout": "li_shaped",
                                                        "weight_mean": 3.0, "weight_std": 1.0})
    net = build_model("eventprop-rec", 2, 2, cfg)
    x = (torch.rand(30, 5, 2) < 0.3).float()
    logits = net(x)
    assert logits.shape == (5, 2)
    logits2, spikes = net(x, record=True)
    assert torch.equal(logits, logits2) and len(spikes) == 1 and spikes[0].shape == (30, 5, 6)
    # delays: ff + recurrent of the hidden layer and the readout's; weights: the rest
    d_ids = {id(p) for p in delay_parameters(net)}
    expected = {id(net.layers[0].delays), id(net.layers[0].rec_delays), id(net.out.delays)}
    assert d_ids == expected
    w_ids = {id(p) for p in weight_parameters(net)}
    assert w_ids == {id(net.layers[0].weight), id(net.layers[0].rec_weight), id(net.out.weight)}
    # gradients reach every delay tensor
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 0, 1, 0])).backward()
    assert all(p.grad is not None for p in delay_parameters(net))
    # clamping: ff to [0, max_delay], recurrent to [1, max_delay]
    with torch.no_grad():
        net.layers[0].delays.fill_(-3.0)
        net.layers[0].rec_delays.fill_(0.2)
        net.out.delays.fill_(99.0)
    clamp_delays_(net)
    assert float(net.layers[0].delays.detach().min()) == 0.0
    assert float(net.layers[0].rec_delays.detach().min()) == 1.0
    assert float(net.out.delays.detach().max()) == cfg.model.max_delay


def test_quantize_delays_keeps_the_forward():
    # the forward already runs the rounded delays, so quantising changes nothing
    torch.manual_seed(1)
    net = EventPropSNN(3, [8], 2, max_delay=6, weight_mean=3.0, weight_std=1.0)
    with torch.no_grad():
        for p in delay_parameters(net):
            p.uniform_(0, 6)
    x = (torch.rand(25, 4, 3) < 0.3).float()
    q = copy.deepcopy(net)
    quantize_delays(q)
    assert all(torch.equal(p, torch.round(p)) for p in delay_parameters(q))
    with torch.no_grad():
        assert torch.equal(net(x), q(x))


def test_output_delays_off():
    net = EventPropSNN(3, [4], 2, max_delay=5, output_delays=False)
    assert id(net.out.delays) not in {id(p) for p in delay_parameters(net)}
    assert float(net.out.delays.abs().max()) == 0.0


def test_spike_counts_match_reference():
    # a bin with c spikes = c spikes at that step. Independent reference: the BPTT path takes the
    # counts as they are (no planes). With a leaky-integrator readout only there is no spike
    # nonlinearity, so the exact EventProp weight gradient equals the BPTT one.
    torch.manual_seed(2)
    x = torch.randint(0, 4, (20, 3, 4)).float() * (torch.rand(20, 3, 4) < 0.3)
    assert float(x.max()) > 1
    net = EventPropSNN(4, [], 2, max_delay=5, readout="li_mean")
    with torch.no_grad():
        net.out.delays.copy_(torch.randint(0, 6, (2, 4)).float())
    v_ep = net.logits(net.out(x))
    v_ep.sum().backward()
    g_ep = net.out.weight.grad.clone()
    a, b = decays_from_taus(5.0, 20.0, 1.0)
    cfg = EventPropConfig(alpha=a, beta=b, threshold=math.inf, max_delay=5, syn_scale=synaptic_scale(a))
    w = net.out.weight.detach().clone().requires_grad_(True)
    _, mem = lif_sequence_surrogate(x, w, net.out.delays.detach(), config=cfg)
    mem.mean(0).sum().backward()
    assert torch.allclose(v_ep, mem.mean(0), atol=1e-5)
    assert torch.allclose(g_ep, w.grad, rtol=1e-4, atol=1e-6)


def test_spike_counts_in_a_spiking_layer_match_bptt_forward():
    torch.manual_seed(3)
    x = torch.randint(0, 3, (30, 2, 5)).float() * (torch.rand(30, 2, 5) < 0.4)
    net = EventPropSNN(5, [6], 2, max_delay=4, weight_mean=4.0, weight_std=1.0)
    with torch.no_grad():
        _, spikes = net(x, record=True)
    layer = net.layers[0]
    ref, _ = lif_sequence_surrogate(x, layer.weight.detach(), layer.delays.detach(), config=layer.config())
    assert spikes[0].sum() > 0
    assert torch.equal(spikes[0], ref)


def test_silent_neurons_are_bumped_once_per_epoch():
    net = EventPropSNN(3, [4], 2, max_delay=3, weight_mean=-5.0, weight_std=0.0, silent_bump=0.01)
    w0 = net.layers[0].weight.detach().clone()
    net.train()
    x = (torch.rand(10, 2, 3) < 0.5).float()
    net(x).sum().backward()
    assert net.on_train_epoch_end() == 4
    assert torch.allclose(net.layers[0].weight.detach() - w0, torch.full_like(w0, 0.01))
    assert net.on_train_epoch_end() == 0  # counts reset: nothing recorded since


def test_bad_values():
    with pytest.raises(ValueError, match="eventprop.tau_mem"):
        TrainConfig.from_dict({"tau_mem": 0.0}).validate()
    with pytest.raises(ValueError, match="eventprop.tau_syn"):
        TrainConfig.from_dict({"eventprop": {"tau_syn": -1.0}}).validate()
    with pytest.raises(ValueError, match="eventprop.weight_mean, eventprop.weight_std: give both"):
        TrainConfig.from_dict({"weight_mean": 1.0}).validate()
    with pytest.raises(ValueError, match="eventprop.weight_std"):
        TrainConfig.from_dict({"weight_mean": 1.0, "weight_std": -0.5}).validate()
    with pytest.raises(ValueError, match="readout"):
        EventPropSNN(2, [3], 2, readout="softmax")
    with pytest.raises(ValueError, match="silent_bump"):
        EventPropSNN(2, [3], 2, silent_bump=-1.0)
    with pytest.raises(ValueError, match="input_"):
        EventPropSNN(2, [3], 2)(torch.rand(5, 1, 2))  # analog values, not spike counts
    with pytest.raises(TypeError, match="input_"):
        spike_count_planes(torch.ones(3, 1, 2, dtype=torch.long))
    # surrogate-model options are refused, not silently ignored
    with pytest.raises(ValueError, match="surrogate.dropout: the EventProp models have current-based LIF neurons"):
        build_model("eventprop-ff", 2, 2, make_config("sequence-eventprop", overrides={"dropout": 0.2}))
    with pytest.raises(ValueError, match="surrogate.learn_beta"):
        build_model("eventprop-rec", 2, 2, make_config("sequence-eventprop", overrides={"learn_beta": True}))
    with pytest.raises(ValueError, match=r"surrogate.beta_out: .* expected 0.9 \(the default\), got 0.5"):
        build_model("eventprop-ff", 2, 2, make_config("sequence", overrides={"model": "eventprop-ff"}))


def test_cli_reports_bad_value(capsys):
    rc = main(["train", "--preset", "sequence-eventprop", "--set", "eventprop.tau_mem=0", "--print-config"])
    assert rc == 2
    assert "eventprop.tau_mem: expected a number in (0, inf], got 0" in capsys.readouterr().err


def test_relative_first_spike_loss_gradient_signs():
    from snn_delays_ext.eventprop import relative_first_spike_loss

    # correct output 0 fires at 5, wrong output 1 at 6, output 2 silent; delta 2:
    # L = 0.5 * (6 - 5 - 2)^2 = 0.5 (silent output: no gradient)
    spk = torch.zeros(12, 1, 3)
    spk[5, 0, 0] = 1
    spk[6, 0, 1] = 1
    spk.requires_grad_(True)
    loss = relative_first_spike_loss(spk, torch.tensor([0]), delta=2.0, no_spike=7.0)
    assert float(loss) == pytest.approx(0.5 + 0.5 * (7 - 5 - 2) ** 2)
    loss.backward()
    g = spk.grad[:, 0]
    assert float(g[6, 1]) == pytest.approx(-1.0)  # dL/dt of the wrong output: fire later
    assert float(g[5, 0]) == pytest.approx(1.0)   # dL/dt of the correct output: fire earlier
    assert float(g[:, 2].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="delta"):
        relative_first_spike_loss(spk, torch.tensor([0]), delta=0.0)


def test_resume_and_plots_with_an_eventprop_model(tmp_path, train_killed_then_resumed):
    # the silent-neuron bump runs before each checkpoint, so a resumed run ends with the same
    # weights as an uninterrupted one; the plot command handles the EventProp layers
    from snn_delays_ext.train import plot_run

    cfg = make_config("sequence-eventprop", overrides=dict(
        hidden=[8], weight_mean=0.0, weight_std=4.0, epochs=3, train_limit=100, eval_limit=50,
        progress=False, tensorboard=False))
    net = build_model(cfg.model.name, 2, 2, cfg)
    assert net.silent_bump > 0
    train_killed_then_resumed(cfg, tmp_path, kill_after=1)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["model"]
    for k, v in a.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b[k]), k
    names = {p.name for p in plot_run(tmp_path / "cut")}
    assert "learning_curves.png" in names and "raster.png" in names


@pytest.mark.slow
def test_torchrun_two_processes_match_one_with_the_bump(tmp_path):
    # EventProp models train under torchrun (gloo) to the same weights as one process
    from _ddp_helpers import train_ddp_and_single

    args = ["--preset", "sequence-eventprop", "--hidden", "8", "--set", "eventprop.weight_mean=0", "--set", "eventprop.weight_std=4",
            "--epochs", "1", "--batch-size", "50", "--train-limit", "200", "--eval-limit", "100",
            "--device", "cpu", "--no-progress"]
    a, b = train_ddp_and_single(tmp_path, args)
    assert a["history"][0]["val_acc"] == b["history"][0]["val_acc"]


def _bump_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        net = EventPropSNN(2, [2], 2, max_delay=2, silent_bump=0.5)
        with torch.no_grad():
            net.layers[0].weight.copy_(torch.tensor([[20.0, 0.0], [0.0, 0.0]]))
            net.layers[0].delays.zero_()
        x = torch.zeros(10, 1, 2)
        if rank == 0:
            x[0, 0, 0] = 1.0  # only process 0 sees a spike that makes hidden neuron 0 fire
        net.train()
        net(x).sum().backward()
        n = net.on_train_epoch_end()
        torch.save((n, net.layers[0].weight.detach()), f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_bump_sums_spike_counts_over_processes(tmp_path):
    # neuron 0 fires in process 0 only: summed over processes it is not silent, so each process
    # bumps neuron 1 alone and the replicas stay identical
    import socket

    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("needs torch.distributed gloo")
    with socket.socket() as sck:
        sck.bind(("127.0.0.1", 0))
        port = sck.getsockname()[1]
    mp.spawn(_bump_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    (n0, w0), (n1, w1) = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    assert n0 == n1 == 1
    assert torch.equal(w0, w1)
    assert torch.equal(w0, torch.tensor([[20.0, 0.0], [0.5, 0.5]]))


def test_spike_count_regulariser_reaches_the_layers_and_lowers_firing():
    """``--reg-strength/--reg-target`` reach every hidden layer; with target 0 a few plain
    gradient steps leave the hidden layer firing less than the same steps without it."""
    cfg = make_config("sequence-eventprop", overrides={"hidden": [12], "reg_strength": 5.0, "reg_target": 0.0,
                                                        "weight_mean": 2.0, "weight_std": 0.5})
    torch.manual_seed(0)
    reg = build_model("eventprop-ff", 2, 2, cfg)
    assert [(m.reg_strength, m.reg_target) for m in reg.layers] == [(5.0, 0.0)]
    plain = copy.deepcopy(reg)
    for m in plain.layers:
        m.reg_strength = 0.0
    x = (torch.rand(40, 16, 2) < 0.3).float()
    y = torch.randint(0, 2, (16,))
    with torch.no_grad():
        assert float(reg(x, record=True)[1][0].sum()) > 100  # the hidden layer fires
    counts = {}
    for name, net in (("reg", reg), ("plain", plain)):
        opt = torch.optim.SGD(weight_parameters(net), lr=0.05)
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        with torch.no_grad():
            counts[name] = float(net(x, record=True)[1][0].sum())
    assert counts["plain"] > 0 and counts["reg"] < 0.9 * counts["plain"], counts
    with pytest.raises(ValueError, match="eventprop.reg_strength: the EventProp options apply to the eventprop-"):
        build_model("ff-delays", 2, 2, make_config(overrides={"reg_strength": 1.0}))
    with pytest.raises(ValueError, match="eventprop.reg_target"):
        make_config(overrides={"reg_target": -1.0})


def test_readout_time_constant_tau_out_hand_computed():
    # readout only (no hidden layer), one input spike at t = 0, weight 1, no delay:
    # S_t = alpha S_{t-1} + x_t, I_t = c S_t, V_t = beta V_{t-1} + (1 - beta) I_t with
    # alpha = exp(-1/tau_syn), c = tau_syn (1 - alpha), and beta = exp(-1/tau_out) (not tau_mem)
    tau_syn, tau_mem, tau_out, T = 2.0, 3.0, 10.0, 12
    net = EventPropSNN(1, [], 1, max_delay=2, tau_syn=tau_syn, tau_mem=tau_mem, tau_out=tau_out, readout="sum",
                       output_delays=False)
    with torch.no_grad():
        net.out.weight.fill_(1.0)
    x = torch.zeros(T, 1, 1)
    x[0] = 1.0
    alpha, beta = math.exp(-1 / tau_syn), math.exp(-1 / tau_out)
    c = tau_syn * (1 - alpha)
    s = v = total = 0.0
    for t in range(T):
        s = alpha * s + float(x[t])
        v = beta * v + (1 - beta) * c * s
        total += v
    assert float(net(x).detach()) == pytest.approx(total, rel=1e-5)
    # the default follows tau_mem, so the two differ
    same = EventPropSNN(1, [], 1, max_delay=2, tau_syn=tau_syn, tau_mem=tau_mem, readout="sum", output_delays=False)
    assert same.out.config().beta == pytest.approx(math.exp(-1 / tau_mem))
    assert net.out.config().beta == pytest.approx(beta)


def test_tau_out_is_checked_and_refused_by_surrogate_models():
    for bad in (0.0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="tau_out: expected a finite float > 0"):
            EventPropSNN(2, [3], 2, tau_out=bad)
    with pytest.raises(TypeError, match=r"tau_out: expected a float > 0, got bool \(True\)"):
        EventPropSNN(2, [3], 2, tau_out=True)
    with pytest.raises(ValueError, match="eventprop.tau_out"):
        TrainConfig.from_dict({"tau_out": 0.0}).validate()
    cfg = make_config("braille-eventprop", overrides={"tau_out": 15.0, "hidden": [4]})
    assert build_model(cfg.model.name, 24, 27, cfg).out.config().beta == pytest.approx(math.exp(-1 / 15))
    with pytest.raises(ValueError, match="eventprop.tau_out: the EventProp options apply to the eventprop-"):
        build_model("ff-delays", 2, 2, make_config("braille", overrides={"tau_out": 15.0, "hidden": [4]}))
