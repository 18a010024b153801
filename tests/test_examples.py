"""The examples (python/fastlstm/examples) in their --quick configurations: each must still learn its task
(bounds stated per test, well clear of chance), print its result, then write its plot, and run to the end
without matplotlib too; their command lines, docstrings and listing; their use of the public API only."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastlstm
from fastlstm.examples import _common, adding, latching, seq2seq, streaming
from oracles import require

NAMES = ("latching", "adding", "seq2seq", "streaming")
# The line each example prints with its result (in its --quick configuration).
RESULT = {
    "latching": r"^latching: 3 bits, then T steps.*\n.*\n +20 +\d+ +0\.\d{3}.*\n +50 +\d+ +0\.\d{3}",
    "adding": r"^adding problem, T = 30: validation MSE 0\.\d{4} after 400 steps",
    "seq2seq": r"^seq2seq \(reverse 3-5 digits\): exact match on 300 held-out strings [01]\.\d{3}",
    "streaming": r"^  fastlstm LSTM\.step +per-step latency: median +\d+\.\d us",
}
# The README's measured figures (full runs on 2 cores), which each docstring states.
FIGURES = {
    "latching": ("99% validation accuracy", "T = 1000 after 3200", "about 165 s"),
    "adding": ("validation MSE 0.0003", "about 60 s"),
    "seq2seq": ("97.4% exact match", "about 57 s"),
    "streaming": ("5.3 us against 21.0 us", "about 9 s"),
}


def _run(args, env=None, cwd=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)


def _printed_before_plot(out, name):
    """The result is printed, and before the plot is written (a failing plot cannot lose it)."""
    m = re.search(RESULT[name], out, re.MULTILINE)
    assert m, out
    assert m.start() < out.index("plot: "), out


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


# The PNGs are part of what these check (matplotlib is a test extra: CI must not skip them).
def test_latching(tmp_path, capsys):
    require("matplotlib")
    results = latching.main(["--quick", "--out", str(tmp_path)])
    for r in results:  # 8 classes: chance is 0.125
        assert r["accuracy"] >= 0.9, r
    assert _png(tmp_path / "latching.png")
    _printed_before_plot(capsys.readouterr().out, "latching")


def test_adding(tmp_path, capsys):
    require("matplotlib")
    r = adding.main(["--quick", "--out", str(tmp_path)])
    assert r["mse"] < 0.05, r["curve"]  # always answering 1.0 scores 0.167
    assert _png(tmp_path / "adding.png")
    _printed_before_plot(capsys.readouterr().out, "adding")


def test_seq2seq(tmp_path, capsys):
    require("matplotlib")
    r = seq2seq.main(["--quick", "--out", str(tmp_path)])
    assert r["accuracy"] > 0.8, r  # exact match of whole reversed strings; chance is ~0
    assert _png(tmp_path / "seq2seq.png")
    _printed_before_plot(capsys.readouterr().out, "seq2seq")


def test_streaming(tmp_path, capsys):
    require("matplotlib")
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
    _printed_before_plot(capsys.readouterr().out, "streaming")


@pytest.mark.parametrize("name", NAMES)
def test_runs_to_the_end_without_matplotlib(name, tmp_path):
    """`python -m fastlstm.examples.NAME --quick` where matplotlib cannot be imported (a package of that
    name that raises ModuleNotFoundError, first on PYTHONPATH): exit 0, the result printed, a note for
    the plot and no file, as in an environment where matplotlib was never installed."""
    blocker = tmp_path / "no_matplotlib" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'matplotlib\'", name="matplotlib")\n')
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(blocker.parent), env.get("PYTHONPATH")) if p)
    out = tmp_path / "out"
    proc = _run(["-m", f"fastlstm.examples.{name}", "--quick", "--out", str(out)], env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(RESULT[name], proc.stdout, re.MULTILINE), proc.stdout
    assert _common.NO_MATPLOTLIB in proc.stdout and "plot: " not in proc.stdout, proc.stdout
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.parametrize("name", NAMES)
def test_command_line_and_docstring(name):
    """--help names the module as it is run (not the file), and the docstring that help() shows says what
    the example shows, the command, every option, the expected result with the measured figures, and
    the run time; --help repeats the description and the expected result."""
    proc = _run(["-m", f"fastlstm.examples.{name}", "--help"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m fastlstm.examples.{name} "), proc.stdout
    assert f"{name}.py" not in proc.stdout
    doc = importlib.import_module(f"fastlstm.examples.{name}").__doc__
    summary, what = doc.split("\n\n")[:2]
    assert "\n" not in summary and len(summary) <= 80, summary
    assert len(what) > 200 and what.splitlines()[0] in proc.stdout
    assert f"    python -m fastlstm.examples.{name} [--quick]" in doc
    options = set(re.findall(r"--[a-zA-Z]+", proc.stdout)) - {"--help"}
    assert "--quick" in options and "--out" in options and "--seed" in options
    for option in options:
        assert f"\n    {option} " in doc, option  # listed under Options
    expected = next(p for p in doc.split("\n\n") if p.startswith("Expected result"))
    for figure in FIGURES[name]:
        assert figure in expected, figure
    assert "--quick" in expected and expected.splitlines()[0] in proc.stdout


def test_listing():
    """python -m fastlstm.examples: one line per example, its name and the first line of its docstring."""
    proc = _run(["-m", "fastlstm.examples"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in NAMES:
        summary = importlib.import_module(f"fastlstm.examples.{name}").__doc__.splitlines()[0]
        assert sum(line.split()[:1] == [name] for line in lines) == 1, proc.stdout
        assert f"  {name} " in proc.stdout and summary in proc.stdout
    assert "python -m fastlstm.examples.NAME" in proc.stdout
    assert max(map(len, lines)) <= 100


def test_examples_use_only_the_public_api():
    """What a user may copy: fastlstm's exported names, and of an LSTM only its calls, backward, step,
    state_dict, load_state_dict and grads; no private name (leading underscore) of anything but the
    example's own objects (self) and its own helper module."""
    lstm_public = {"backward", "step", "state_dict", "load_state_dict", "grads"}
    lstm_internal = {n for n in dir(fastlstm.LSTM(1, 2)) if not n.startswith("__")}
    lstm_internal -= lstm_public | set(dir(np.ndarray))  # x.dtype etc. are numpy's
    bad = []
    for path in sorted(Path(_common.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute):
                receiver = node.value.id if isinstance(node.value, ast.Name) else None
                if receiver == "fastlstm" and node.attr not in fastlstm.__all__:
                    bad.append(f"{where} fastlstm.{node.attr}")
                elif receiver != "self" and (node.attr in lstm_internal or node.attr.startswith("_")
                                             and not node.attr.endswith("__")):
                    bad.append(f"{where} .{node.attr}")
            elif isinstance(node, ast.Import):
                bad += [f"{where} import {a.name}" for a in node.names if a.name.startswith("fastlstm.")]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0 and (node.module or "").startswith("fastlstm"):
                    bad += [f"{where} from {node.module} import {a.name}" for a in node.names
                            if node.module != "fastlstm" or a.name not in fastlstm.__all__]
                elif node.level > 0 and node.module != "_common":  # the examples' own helpers only
                    bad.append(f"{where} from {'.' * node.level}{node.module or ''} import ...")
    assert not bad, bad


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
    drawn = []
    assert _common.save_plot(tmp_path, "x", drawn.append) is None and not drawn
    out = capsys.readouterr()
    assert "demo: 0/20" in out.err and _common.NO_MATPLOTLIB in out.out
    assert not list(tmp_path.iterdir())
