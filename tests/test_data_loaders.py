"""Dataset loaders: tiny files in the real layouts, and the shared real data."""

from __future__ import annotations

import gzip
import math
import pickle
import shutil
import struct

import numpy as np
import pytest
import torch

from snn_delays_ext.data import (SHD, SSC, Braille, PermutedSequentialMNIST, SequenceDetection, YinYang,
                                 bin_events, make_loader, read_heidelberg_h5, read_idx, time_first_collate,
                                 yin_yang_points)

h5py = pytest.importorskip("h5py")


def write_hsd(path, times, units, labels):
    """An h5 file in the SHD/SSC layout (ragged spikes/times, spikes/units, labels)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        ft = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float16))
        fu = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(zip(times, units)):
            ft[i] = np.asarray(t, dtype=np.float16)
            fu[i] = np.asarray(u, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint8))


TIMES = [[0.0, 0.0042, 0.0158, 0.5, 1.2], [0.0312, 0.0312, 0.099]]
UNITS = [[3, 699, 3, 10, 5], [0, 4, 699]]


def test_collate_time_first_and_padding():
    a, b = torch.arange(6.0).reshape(3, 2), torch.ones(5, 2)
    x, y = time_first_collate([(a, 2), (b, 0)])
    assert x.shape == (5, 2, 2) and y.tolist() == [2, 0]
    assert torch.equal(x[:3, 0], a) and torch.equal(x[3:, 0], torch.zeros(2, 2))
    assert torch.equal(x[:, 1], b)
    with pytest.raises(ValueError, match="batch"):
        time_first_collate([])


def test_bin_events_counts_by_hand():
    x = bin_events(np.array([0.0, 0.009, 0.01, 0.025, 0.03]), np.array([1, 1, 0, 2, 2]), 0.01, 3, 4, pool=2)
    # bins: [0,10) ms -> units 1,1 -> pooled ch 0 twice; [10,20) -> unit 0 -> ch 0; [20,30) -> unit 2 -> ch 1
    assert x.tolist() == [[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]]


def test_shd_tiny_file_binning_pooling(tmp_path, monkeypatch):
    write_hsd(tmp_path / "shd_train.h5", TIMES, UNITS, [7, 19])
    write_hsd(tmp_path / "SHD" / "shd_test.h5", TIMES[:1], UNITS[:1], [3])  # tonic's sub-folder layout
    import tonic

    def no_download(*a, **k):
        raise AssertionError("a download was attempted although the files are present")

    monkeypatch.setattr(tonic.datasets, "SHD", no_download)
    ds = SHD(tmp_path, "train", dt=0.01, download=True)
    assert len(ds) == 2 and ds.n_steps == 100 and ds.n_features == 700
    x, y = ds[0]
    assert y == 7 and x.shape == (100, 700)
    # stored as float16 like the real files: 0.0042 -> bin 0, 0.0158 -> bin 1, 1.2 s is after 1 s
    assert x[0, 3] == 1 and x[0, 699] == 1 and x[1, 3] == 1 and x[50, 10] == 1
    assert x.sum() == 4
    x1, _ = ds[1]
    assert x1[3, 0] == 1 and x1[3, 4] == 1 and x1[9, 699] == 1
    pooled = SHD(tmp_path, "train", dt=0.01, pool=5)
    xp, _ = pooled[0]
    assert xp.shape == (100, 140)
    assert torch.equal(xp, x.reshape(100, 140, 5).sum(-1))
    fixed = SHD(tmp_path, "test", n_steps=4, duration=1.4)
    xf, yf = fixed[0]
    assert yf == 3 and xf.shape == (4, 700) and xf.sum() == 5  # 1.2 s kept: bins of 0.35 s
    assert xf[3, 5] == 1
    xb, yb = next(iter(make_loader(ds, batch_size=2)))
    assert xb.shape == (100, 2, 700) and yb.tolist() == [7, 19]


def test_shd_gz_is_unpacked_and_ssc_splits(tmp_path):
    src = tmp_path / "tmp.h5"
    write_hsd(src, TIMES, UNITS, [1, 2])
    with open(src, "rb") as a, gzip.open(tmp_path / "ssc_valid.h5.gz", "wb") as b:
        shutil.copyfileobj(a, b)
    ds = SSC(tmp_path, "valid", n_steps=250)
    assert len(ds) == 2 and ds[0][0].shape == (250, 700) and (tmp_path / "ssc_valid.h5").is_file()
    with pytest.raises(ValueError, match="split"):
        SSC(tmp_path, "validation")


def test_shd_gz_in_read_only_folder_unpacks_to_cache(tmp_path, monkeypatch):
    from snn_delays_ext.data import heidelberg
    data = tmp_path / "ro"
    data.mkdir()
    write_hsd(tmp_path / "tmp.h5", TIMES, UNITS, [3, 4])
    with open(tmp_path / "tmp.h5", "rb") as a, gzip.open(data / "shd_test.h5.gz", "wb") as b:
        shutil.copyfileobj(a, b)
    real_mkstemp = heidelberg.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kw):  # the data folder refuses writes (chmod does not stop root)
        if str(dir) == str(data):
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kw)

    monkeypatch.setattr(heidelberg.tempfile, "mkstemp", mkstemp)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ds = SHD(data, "test", n_steps=100)
    assert ds.labels.tolist() == [3, 4]
    assert sorted(p.name for p in data.iterdir()) == ["shd_test.h5.gz"]
    assert [p.name.endswith("shd_test.h5") for p in (tmp_path / "cache" / "snn_delays_ext").iterdir()] == [True]
    assert SHD(data, "test", n_steps=100).path == ds.path  # unpacked once


def test_gunzip_leaves_no_partial_file(tmp_path, monkeypatch):
    from snn_delays_ext.data import heidelberg
    with gzip.open(tmp_path / "shd_test.h5.gz", "wb") as b:
        b.write(b"x" * 1000)

    def boom(src, dst):
        dst.write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(heidelberg.shutil, "copyfileobj", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        heidelberg._gunzip_once(tmp_path / "shd_test.h5.gz", tmp_path / "shd_test.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shd_test.h5.gz"]


def test_heidelberg_missing_folder_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="zenkelab"):
        SHD(tmp_path / "nothing")
    with pytest.raises(ValueError, match="pool"):
        write_hsd(tmp_path / "shd_train.h5", TIMES, UNITS, [0, 1])
        SHD(tmp_path, pool=3)


def test_shd_layout_demo_file(shared_data, tmp_path):
    path = shared_data / "shd_format_demo" / "hd_lauscher700_speaker04_demo.h5"
    times, units, labels = read_heidelberg_h5(path)
    assert len(times) == len(labels) == 6
    (tmp_path / "shd_test.h5").symlink_to(path)
    ds = SHD(tmp_path, "test", dt=0.01, duration=2.0)
    for i in range(len(ds)):
        x, y = ds[i]
        t = np.asarray(times[i])
        assert x.sum() == int((t < 2.0).sum()) and y == int(labels[i])


def test_braille_shared(shared_data):
    root = shared_data / "braille"
    parts = [Braille(root, s) for s in ("train", "val", "test")]
    assert [len(p) for p in parts] == [3780, 540, 1080]
    idx = [set(p.indices.tolist()) for p in parts]
    assert not (idx[0] & idx[1]) and not (idx[0] & idx[2]) and not (idx[1] & idx[2])
    assert np.bincount(parts[0].labels).tolist() == [140] * 27
    with open(root / "data_braille_letters_th10.pkl", "rb") as f:
        records = pickle.load(f)
    tr = parts[0]
    for k in range(3):
        rec = records[tr.indices[k]]
        x, y = tr[k]
        assert x.shape == (131, 24)
        # independent count: ON spikes of taxel 5 -> channel 10, OFF -> channel 11
        assert x[:, 10].sum() == len(rec["events"][5][0]) and x[:, 11].sum() == len(rec["events"][5][1])
        assert y == (0 if rec["letter"] == "Space" else ord(rec["letter"]) - ord("A") + 1)
    x, y = next(iter(make_loader(tr, batch_size=8)))
    assert x.shape == (131, 8, 24)


def test_braille_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="6556273"):
        Braille(tmp_path / "none")


@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_yin_yang_generator_matches_published_arrays(shared_data, split):
    x, y = yin_yang_points({"train": 5000, "validation": 1000, "test": 1000}[split],
                           {"train": 42, "validation": 41, "test": 40}[split])
    ref_x = np.load(shared_data / "yin_yang" / f"{split}_samples.npy")
    ref_y = np.load(shared_data / "yin_yang" / f"{split}_labels.npy")
    assert np.array_equal(x, ref_x) and np.array_equal(y, ref_y)


def test_yin_yang_encoding(shared_data):
    ds = YinYang("test", root=shared_data / "yin_yang", n_steps_enc=11, n_steps=15)
    x, y = ds[3]
    p = np.load(shared_data / "yin_yang" / "test_samples.npy")[3]
    assert x.shape == (15, 5) and x.sum() == 5 and x[0, 4] == 1
    for f in range(4):
        assert int(x[:, f].argmax()) == int(np.rint(p[f] * 10))
    gen = YinYang("test", size=50, n_steps_enc=11, n_steps=15)
    assert torch.equal(gen.x, ds.x[:50])


def _write_idx(path, arr, code):
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(arr.dtype.newbyteorder(">")).tobytes())


def test_read_idx_hand_made(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.gz", a, 0x08)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="IDX"):
        read_idx(tmp_path / "bad")


def test_psmnist_shared(shared_data):
    ds = PermutedSequentialMNIST(shared_data / "mnist", "test", limit=16)
    raw = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")[:16].reshape(16, 784)
    perm = ds.permutation
    assert sorted(perm.tolist()) == list(range(784)) and not np.array_equal(perm, np.arange(784))
    x, y = ds[5]
    assert x.shape == (784, 1)
    assert torch.allclose(x[:, 0], torch.from_numpy(raw[5][perm].astype(np.float32) / 255.0))
    val = PermutedSequentialMNIST(shared_data / "mnist", "val", limit=4)
    assert val.images.shape[0] == 4
    xb, yb = next(iter(make_loader(ds, batch_size=4)))
    assert xb.shape == (784, 4, 1)


def test_psmnist_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST"):
        PermutedSequentialMNIST(tmp_path / "none")


def test_sequence_detection_semantics():
    ds = SequenceDetection("val", size=20, n_steps=30, gap=7)
    for i in range(len(ds)):
        x, y = ds[i]
        t0, t1 = int(x[:, 0].argmax()), int(x[:, 1].argmax())
        assert x.sum() == 2
        assert (t1 - t0 == 7) if y == 0 else (t0 - t1 == 7)
        assert max(t0, t1) + 7 < 30  # room for a delay of `gap` steps
    assert not torch.equal(ds.x, SequenceDetection("train", size=20, n_steps=30, gap=7).x)
    with pytest.raises(ValueError, match="n_steps"):
        SequenceDetection(n_steps=15, gap=10)


def test_random_time_shift_moves_each_sample_by_its_own_shift():
    from snn_delays_ext.data import random_time_shift

    T, B, F = 12, 40, 3
    x = torch.rand(T, B, F)
    g = torch.Generator().manual_seed(3)
    y = random_time_shift(x, 4, generator=g)
    shifts = torch.randint(-4, 5, (B,), generator=torch.Generator().manual_seed(3))
    assert len(set(shifts.tolist())) > 3
    for b in range(B):  # naive per-sample shift with zero fill
        s = int(shifts[b])
        ref = torch.zeros(T, F)
        for t in range(T):
            if 0 <= t - s < T:
                ref[t] = x[t - s, b]
        assert torch.equal(y[:, b], ref)
    assert random_time_shift(x, 0) is x
    with pytest.raises(ValueError, match="max_shift"):
        random_time_shift(x, -1)
    with pytest.raises(ValueError, match=r"x: expected a \(T, B, F\)"):
        random_time_shift(x[0], 2)


def test_random_time_stretch_moves_each_event_to_its_stretched_bin():
    from snn_delays_ext.data import random_time_stretch

    T, B, F = 30, 25, 4
    x = torch.poisson(torch.full((T, B, F), 0.3))  # event counts per bin
    y = random_time_stretch(x, 0.3, generator=torch.Generator().manual_seed(5))
    s = 1.0 + 0.3 * (2.0 * torch.rand(B, generator=torch.Generator().manual_seed(5), dtype=torch.float64) - 1.0)
    assert s.min() < 0.9 and s.max() > 1.1
    for b in range(B):  # naive: every event of bin t sits at the bin centre t + 0.5, times s, re-binned
        ref = torch.zeros(T, F)
        for t in range(T):
            for f in range(F):
                for _ in range(int(x[t, b, f])):
                    k = math.floor((t + 0.5) * float(s[b]))
                    if k < T:
                        ref[k, f] += 1
        assert torch.equal(y[:, b], ref)
        if s[b] <= 1.0:  # compressing keeps every event
            assert y[:, b].sum() == x[:, b].sum()
        # the events' mean time scales with the sample's factor
        w = torch.arange(T, dtype=torch.float64) + 0.5
        mx = (x[:, b].sum(1).double() * w).sum() / x[:, b].sum()
        my = (y[:, b].sum(1).double() * w).sum() / y[:, b].sum()
        if s[b] <= 1.0:
            assert abs(float(my) - float(mx * s[b])) < 0.6
    assert random_time_stretch(x, 0.0) is x
    with pytest.raises(ValueError, match="max_stretch"):
        random_time_stretch(x, 1.0)
    with pytest.raises(ValueError, match="max_stretch"):
        random_time_stretch(x, -0.1)
    with pytest.raises(ValueError, match=r"x: expected a \(T, B, F\)"):
        random_time_stretch(x[0], 0.1)


def test_random_drop_event_thins_each_event_independently():
    """Per event: kept with probability 1 - p. Over many draws a bin of n events keeps on
    average n (1 - p) with the binomial variance n p (1 - p); 0/1 spikes become Bernoulli."""
    from snn_delays_ext.data import random_drop_event

    p, draws = 0.3, 4000
    x = torch.tensor([0.0, 1.0, 2.0, 7.0]).view(1, 1, 4).expand(draws, 1, 4).contiguous()  # draws as time steps
    y = random_drop_event(x, p, generator=torch.Generator().manual_seed(3))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert bool((y <= x).all()) and bool((y >= 0).all()) and bool((y == y.round()).all())
    n = torch.tensor([0.0, 1.0, 2.0, 7.0])
    mean, var = y[:, 0].mean(0), y[:, 0].var(0)
    se = torch.sqrt(n * p * (1 - p) / draws)
    assert torch.all((mean - n * (1 - p)).abs() <= 4 * se + 1e-12)
    assert torch.allclose(var[1:], n[1:] * p * (1 - p), rtol=0.1)
    assert float(y[:, 0, 0].abs().sum()) == 0.0  # nothing appears where there was nothing
    # each event is dropped independently: for n = 2, P(0, 1, 2 kept) = p^2, 2p(1-p), (1-p)^2
    freq = torch.bincount(y[:, 0, 2].long(), minlength=3).double() / draws
    expect = torch.tensor([p * p, 2 * p * (1 - p), (1 - p) ** 2], dtype=torch.float64)
    assert torch.allclose(freq, expect, atol=0.03)
    assert random_drop_event(x, 0.0) is x
    with pytest.raises(ValueError, match=r"p: expected a probability in \[0, 1\)"):
        random_drop_event(x, 1.0)
    with pytest.raises(ValueError, match="x: expected event counts"):
        random_drop_event(torch.full((3, 2, 2), 0.5), 0.1)  # graded input (e.g. a TTFS code)
    with pytest.raises(ValueError, match="x: expected event counts"):
        random_drop_event(-torch.ones(3, 2, 2), 0.1)
    with pytest.raises(TypeError, match="x: expected a floating-point tensor"):
        random_drop_event(torch.ones(3, 2, 2, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match=r"x: expected a \(T, B, F\)"):
        random_drop_event(x[0], 0.1)


def test_random_blend_hand_made_with_and_without_alignment():
    """Two samples of class 5 (values 1 and 2, centres of mass at steps 2 and 5) and one of class
    7. With p = 1 each of the pair is blended with the other; with alignment the partner is moved
    by 5 - 2 = 3 steps onto the sample's centre, so its events land on the sample's own steps."""
    from snn_delays_ext.data import random_blend

    x = torch.zeros(8, 3, 1)
    x[[1, 3], 0, 0] = 1.0
    x[[4, 6], 1, 0] = 2.0
    x[[0, 7], 2, 0] = 3.0
    labels = torch.tensor([5, 5, 7])
    seen_aligned, seen_plain = set(), set()
    for seed in range(30):
        y = random_blend(x, labels, 1.0, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(y[:, 2], x[:, 2])  # no partner of its class: unchanged
        for b, own in ((0, [1, 3]), (1, [4, 6])):
            assert torch.count_nonzero(y[:, b]) <= 2
            rest = [t for t in range(8) if t not in own]
            assert float(y[rest, b].abs().sum()) == 0.0  # aligned: only the sample's own steps
            seen_aligned.update(float(v) for v in y[own, b, 0])
        z = random_blend(x, labels, 1.0, align=False, generator=torch.Generator().manual_seed(seed))
        assert set(torch.nonzero(z[:, 0, 0]).flatten().tolist()) <= {1, 3, 4, 6}
        assert set(z[[1, 3], 0, 0].tolist()) <= {0.0, 1.0} and set(z[[4, 6], 0, 0].tolist()) <= {0.0, 2.0}
        seen_plain.update(z[:, 0, 0].tolist())
    assert seen_aligned == {1.0, 2.0}  # each bin comes from one or the other
    assert seen_plain == {0.0, 1.0, 2.0}


def test_random_blend_partners_are_random_members_of_the_class():
    from snn_delays_ext.data import random_blend

    B, draws = 6, 600
    x = torch.arange(1.0, B + 1).view(1, B, 1).expand(4, B, 5).contiguous()  # sample b holds the value b + 1
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    g = torch.Generator().manual_seed(0)
    partners, blended = torch.zeros(B, B), 0
    for _ in range(draws):
        y = random_blend(x, labels, 0.5, align=False, generator=g)
        for b in range(B):
            vals = set(y[:, b].flatten().tolist())
            assert b + 1.0 in vals or len(vals) == 1
            others = vals - {b + 1.0}
            assert len(others) <= 1
            if others:
                o = int(others.pop()) - 1
                assert labels[o] == labels[b] and o != b
                partners[b, o] += 1
                blended += 1
    # a blended sample shows its partner's value in 20 bins with probability 1 - 2**-20
    assert abs(blended / (draws * B) - 0.5) < 0.03
    for b in range(4):  # class 0: the three others about equally often
        row = partners[b, [o for o in range(4) if o != b]]
        assert float(row.min()) > 0.25 * float(row.sum())


def test_random_blend_bad_input():
    from snn_delays_ext.data import random_blend

    x = torch.ones(5, 3, 2)
    assert random_blend(x, torch.tensor([0, 0, 1]), 0.0) is x
    assert torch.equal(random_blend(x, torch.tensor([0, 1, 2]), 1.0), x)  # no pairs at all
    with pytest.raises(ValueError, match="labels: expected 3 labels"):
        random_blend(x, torch.tensor([0, 1]), 0.5)
    with pytest.raises(ValueError, match="labels: expected a 1-D integer tensor"):
        random_blend(x, torch.tensor([0.0, 1.0, 1.0]), 0.5)
    with pytest.raises(ValueError, match=r"p: expected a probability in \[0, 1\]"):
        random_blend(x, torch.tensor([0, 1, 1]), 1.5)
    with pytest.raises(TypeError, match="p: expected a float >= 0"):
        random_blend(x, torch.tensor([0, 1, 1]), "0.5")
    with pytest.raises(TypeError, match="align"):
        random_blend(x, torch.tensor([0, 1, 1]), 0.5, align=1)
    with pytest.raises(ValueError, match=r"x: expected a \(T, B, F\)"):
        random_blend(x[0], torch.tensor([0, 1]), 0.5)
