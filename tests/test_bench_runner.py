"""The benchmark runner works end to end on a tiny shape (no timing is asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import run as bench_run  # noqa: E402
from benchmarks.cases import IMPLS, build_case, dcls_status  # noqa: E402
from snn_delays_ext.functional.recurrent_leaky import recurrent_history_length  # noqa: E402

TINY_REC = dict(T=6, B=2, C=5, N=8, D=4)
TINY_FF = dict(T=6, B=2, C=5, H=8, D=4)


def _group(scenario, shape, **kw):
    g = dict(name="tiny", scenario=scenario, shape=shape, sigma=0.0, device="cpu", repeats=2,
             warmup=1, max_gflop=1e3, max_mem_gb=1.0, threads=0, seed=0)
    g.update(kw)
    return g


def test_recurrent_group_measures_every_impl():
    res = bench_run.run_group(_group("recurrent", TINY_REC))
    by = {r["impl"]: r for r in res["results"]}
    assert set(by) == set(IMPLS["recurrent"])
    for r in by.values():
        assert r["status"] == "ok", r
        assert len(r["times_ms"]) == 2 and r["time_ms"] > 0
        assert r["peak_MB"] >= 0 and r["saved_MB"] > 0
    assert by["ours"]["time_vs_ours"] == 1.0
    # DelRec-style keeps each step's (B, N, K) product for the weight gradient: 4 T B N K bytes
    T, B, N = TINY_REC["T"], TINY_REC["B"], TINY_REC["N"]
    K = recurrent_history_length(TINY_REC["D"], 0.0)
    assert by["delrec_style"]["saved_MB"] * 2**20 >= 4 * T * B * N * K
    # the same network and input: the implementations with delays fire identically
    rates = {by[k]["spike_rate"] for k in ("ours", "reference", "delrec_style")}
    assert len(rates) == 1
    json.dumps(res)  # serialisable


def test_budget_skips_are_recorded():
    res = bench_run.run_group(_group("recurrent", TINY_REC, max_gflop=1e-9))
    assert all(r["status"] == "skipped" and "max-gflop" in r["reason"] for r in res["results"])
    assert "time_ms" not in res["results"][0]


def test_feedforward_group_and_dcls_status():
    res = bench_run.run_group(_group("feedforward", TINY_FF))
    by = {r["impl"]: r for r in res["results"]}
    assert by["ours"]["status"] == "ok" and by["no_delay"]["status"] == "ok"
    ok, info = dcls_status()
    assert by["dcls"]["status"] == ("ok" if ok else "skipped")
    if not ok:
        assert info in by["dcls"]["reason"]


def test_cases_share_inputs_and_outputs_match():
    # ours and the functional reference give the same loss on the same seeded network
    a = build_case("feedforward", "ours", TINY_FF, seed=3)
    b = build_case("feedforward", "reference", TINY_FF, seed=3)
    torch.testing.assert_close(a.step()[0], b.step()[0])
    with pytest.raises(ValueError, match="scenario"):
        build_case("conv", "ours", TINY_FF)
    with pytest.raises(ValueError, match="impl"):
        build_case("recurrent", "nope", TINY_REC)


def test_cli_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = bench_run.main(["--suite", "cpu", "--quick", "--only", "SHD-like", "--scale", "0.004",
                         "--repeats", "1", "--in-process", "--max-gflop", "1e3",
                         "--out", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["meta"]["backend"] in {"reference", "compiled"}
    assert [g["name"] for g in data["groups"]] == ["SHD-like"]
    assert data["groups"][0]["shape"]["B"] == 1
    printed = capsys.readouterr().out
    assert "delrec_style" in printed and "wrote" in printed


def test_eventprop_memory_measure_runs():
    from benchmarks.eventprop_memory import measure

    kw = dict(T=12, B=2, n_in=4, n_hid=6, max_delay=3, rate=0.3, device="cpu")
    ev = measure("eventprop", **kw)
    bp = measure("surrogate", **kw)
    assert ev["saved_MB"] > 0 and bp["saved_MB"] > 0 and ev["time_s"] > 0
    # BPTT keeps dense per-step state; EventProp only the spikes: never more at equal shape
    assert ev["saved_MB"] <= bp["saved_MB"]


def test_eventprop_memory_writes_the_rows_gpu_check_reads(tmp_path, monkeypatch):
    from benchmarks import eventprop_memory

    out = tmp_path / "ep.json"
    monkeypatch.setattr(sys, "argv", ["eventprop_memory", "--device", "cpu", "--T", "12", "--batch", "2",
                                      "--inputs", "4", "--hidden", "6", "--max-delay", "3", "--json", str(out)])
    eventprop_memory.main()
    rows = json.loads(out.read_text())["rows"]  # the layout of gpu_check's step_module_bench
    assert [r["method"] for r in rows] == ["eventprop", "surrogate"] and all(r["T"] == 12 for r in rows)


def test_sweep_group_interleaves_values():
    g = _group("recurrent", TINY_REC, impls=["ours", "no_delay_loop"],
               sweep=dict(key="D", values=[2, 5]))
    res = bench_run.run_group(g)
    rows = res["results"]
    assert [(r["impl"], r["shape"]["D"]) for r in rows] == [
        ("ours", 2), ("no_delay_loop", 2), ("ours", 5), ("no_delay_loop", 5)]
    assert rows[0]["time_vs_first"] == 1.0 and rows[1]["time_vs_first"] == 1.0
    assert rows[2]["time_vs_first"] > 0 and rows[2]["label"].endswith("D5")
    # more history is more saved state on the reference path, never less
    assert rows[2]["saved_MB"] >= rows[0]["saved_MB"]
    assert "x first" in bench_run.format_table([res])


@pytest.mark.skipif(__import__("snn_delays_ext").backend() != "compiled", reason="needs the compiled ops")
def test_synaptic_kernel_benchmark_checks_and_writes_json(tmp_path, capsys):
    from benchmarks import synaptic_kernel

    path = synaptic_kernel.main(["--batch", "3", "--T", "9", "--inputs", "7", "--outputs", "5", "--max-delay", "4",
                                 "--sigmas", "0", "1.5", "--repeats", "1", "--out", str(tmp_path)])
    rows = json.loads(path.read_text())["rows"]
    assert {(r["input"], r["sigma"], r["impl"]) for r in rows} == {
        (i, s, k) for i in ("spikes 5%", "dense") for s in (0.0, 1.5) for k in ("compiled", "reference")}
    assert all(r["total_s"] > 0 and r["ratio_to_compiled"] > 0 for r in rows)
    assert "reference" in capsys.readouterr().out
