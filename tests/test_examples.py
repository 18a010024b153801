"""The examples (python/fastlstm/examples) in their --quick configurations: each must still learn its task
(bounds stated per test, well clear of chance) and write its plot, so the examples cannot rot."""

from __future__ import annotations

import importlib.util

import numpy as np

from fastlstm.examples import _common, adding, latching, seq2seq, streaming
from oracles import require

require("matplotlib")  # the PNGs are part of what is checked (a test extra: CI must not skip these)


def _png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_adam_and_linear_follow_their_gradients(rng):
    """The shared pieces: Linear's backward against finite differences, Adam driving a quadratic down."""
    head = _common.Linear(5, 3, rng, dtype=np.float64)
    x, t = rng.standard_normal((4, 2, 5)), rng.integers(0, 3, (4, 2))
    loss, dl = _common.cross_entropy(head(x), t)
    dx = head.backward(dl)
    for name, arr, grad in (("W", head.W, head.grads["W"]), ("x", x, dx)):
        idx = (1, 2) if name == "W" else (3, 1, 4)
        arr[idx] += 1e-6
        up = _common.cross_entropy(head(x), t)[0]
        arr[idx] -= 2e-6
        down = _common.cross_entropy(head(x), t)[0]
        arr[idx] += 1e-6
        assert abs((up - down) / 2e-6 - grad[idx]) < 1e-6
    p = {"a": np.full(3, 5.0)}
    opt = _common.Adam(lr=0.1, clip=None)
    for _ in range(300):
        opt.step(p, {"a": 2 * p["a"]})
    assert np.abs(p["a"]).max() < 0.05


def test_latching(tmp_path):
    results = latching.main(["--quick", "--out", str(tmp_path)])
    for r in results:  # 8 classes: chance is 0.125
        assert r["accuracy"] >= 0.9, r
    assert _png(tmp_path / "latching.png")


def test_adding(tmp_path):
    r = adding.main(["--quick", "--out", str(tmp_path)])
    assert r["mse"] < 0.05, r["curve"]  # always answering 1.0 scores 0.167
    assert _png(tmp_path / "adding.png")


def test_seq2seq(tmp_path):
    r = seq2seq.main(["--quick", "--out", str(tmp_path)])
    assert r["accuracy"] > 0.8, r  # exact match of whole reversed strings; chance is ~0
    assert _png(tmp_path / "seq2seq.png")


def test_streaming(tmp_path):
    r = streaming.main(["--quick", "--out", str(tmp_path)])
    # Untrained, the error is ~0.5 (the signal's variance); the unpredictable noise alone gives 0.0025.
    assert r["mse"] < min(0.01, r["naive_mse"]), r
    median, p99 = r["latency_us"]["fastlstm LSTM.step"]
    assert 0 < median <= p99
    if importlib.util.find_spec("torch") is not None:  # then the comparison is part of the result
        t_median, t_p99 = r["latency_us"]["torch.nn.LSTMCell"]
        assert 0 < t_median <= t_p99
        assert r["torch_max_abs_diff"] < 1e-4
    assert _png(tmp_path / "streaming.png")


def test_plain_progress_and_no_matplotlib(tmp_path, monkeypatch, capsys):
    """Without tqdm and matplotlib: plain progress lines and a printed note instead of the plot."""
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in ("tqdm", "matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    bar = _common.progress(20, "demo")
    assert sum(1 for _ in bar) == 20
    bar.close()
    fig, ax = _common.new_figure()
    assert fig is None and ax is None and _common.save_figure(fig, tmp_path, "x") is None
    out = capsys.readouterr()
    assert "demo: 0/20" in out.err and "matplotlib is not installed" in out.out
    assert not list(tmp_path.iterdir())
