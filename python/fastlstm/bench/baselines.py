"""The implementations one row times: fastlstm and its baselines (torch.nn.LSTM with oneDNN on and off,
torch.nn.LSTMCell for the step row, onnxruntime's LSTM, the NumPy reference), all with the same weights and
inputs. An implementation does one call and returns its outputs by name, so each baseline can be checked
against fastlstm's outputs before it is timed."""

from __future__ import annotations

import importlib.util

import numpy as np

import fastlstm
from fastlstm import reference

from .cases import Case, flops, weight_bytes_per_step
from .timing import row_seconds, settle, timed

TOL = 1e-3  # max |baseline - fastlstm| allowed, relative to max(1, max|fastlstm|) (gradients sum over T*B)
REFERENCE_LIMIT_S = 2.0  # the NumPy reference is timed only where one run takes less than this
STEP_CHECK = 100  # the step row compares the state after this many calls
TORCH_MODES = ("torch-onednn", "torch-native", "torch-lstmcell")
INSTALL = {
    "torch": "pip install torch --index-url https://download.pytorch.org/whl/cpu",
    "onnx": "pip install onnx onnxruntime",
    "onnxruntime": "pip install onnx onnxruntime",
    "openvino": "pip install openvino",
}


class Skip(Exception):
    """A baseline that cannot run here; the message is the reason reported."""


def installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (blocked)
        return False


def _not_installed(*names: str) -> Skip | None:
    missing = [n for n in names if not installed(n)]
    if not missing:
        return None
    return Skip(f"not installed ({', '.join(missing)}); install with: {INSTALL[missing[0]]}")


def compare(ours: dict, theirs: dict) -> dict:
    """fastlstm's outputs against a baseline's, by name; a missing name or another shape fails the check."""
    same = [k for k in ours if k in theirs and np.shape(theirs[k]) == np.shape(ours[k])]
    diffs = {k: float(np.max(np.abs(np.asarray(theirs[k], np.float64) - ours[k]))) for k in same}
    scale = {k: max(1.0, float(np.max(np.abs(ours[k])))) for k in diffs}
    missing = sorted(set(ours) - set(same))
    passed = not missing and all(diffs[k] <= TOL * scale[k] for k in diffs)
    return {"passed": passed, "max_abs_diff": diffs, "not_compared": missing,
            "tolerance": f"{TOL:g} x max(1, max|fastlstm|)"}


def _attempt(make):
    """make() or the exception it raised: a baseline that fails to set up is reported, not fatal."""
    try:
        return make()
    except Exception as exc:
        return exc


def build(case: Case, threads: int):
    """-> (fastlstm impl, {baseline: impl or the exception that prevents it}, lengths or None). For the step
    row a call is one step: it reads the next input of a cycle of STEP_CHECK and keeps its own state."""
    T, B, H, kind = case.T, case.B, case.H, case.kind
    m = fastlstm.LSTM(H, H, case.layers, bidirectional=case.bidirectional, seed=0)
    params = m.state_dict()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (STEP_CHECK if kind == "step" else T, B, H)).astype(np.float32)
    dy = rng.uniform(-1, 1, (T, B, (2 if case.bidirectional else 1) * H)).astype(np.float32)
    lengths = np.random.default_rng(1234).integers(20, T + 1, B) if kind == "lengths" else None
    zeros = np.zeros((case.layers, B, H), np.float32)

    if kind == "step":  # streaming: every call feeds the state back
        state = [0, (zeros, zeros)]  # the step count and (h, c)

        def ours():
            h, state[1] = m.step(x[state[0] % len(x)], state[1])
            state[0] += 1
            return {"h": h, "c_n": state[1][1][-1]}
    elif kind == "train":
        def ours():
            y, _ = m(x, train=True)
            dx, _ = m.backward(dy)
            return {"y": y, "dx": dx, **m.grads}
    else:
        def ours():
            y, (h_n, c_n) = m(x, lengths=lengths)
            return {"y": y, "h_n": h_n, "c_n": c_n}

    base: dict = {}
    skip = _not_installed("torch")
    if skip:
        base["torch"] = skip
    else:
        modes = _attempt(lambda: _torch_impls(case, params, x, dy, lengths, threads))
        base.update(modes if isinstance(modes, dict) else {"torch": modes})
    base["onnxruntime"] = _attempt(lambda: _onnxruntime_impl(case, m.config, params, x, lengths, threads))
    base["reference"] = _attempt(lambda: _reference_impl(case, m.config, params, x, dy, lengths))
    return ours, base, lengths


def _torch_impls(case: Case, params: dict, x, dy, lengths, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    tp = {k: torch.from_numpy(v) for k, v in params.items()}
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    if case.kind == "step":
        cell = torch.nn.LSTMCell(case.H, case.H)
        cell.load_state_dict({k.removesuffix("_l0"): v for k, v in tp.items()})
        state = [0, (torch.zeros(case.B, case.H), torch.zeros(case.B, case.H))]

        def run_cell():
            with torch.no_grad():
                state[1] = cell(xt[state[0] % len(xt)], state[1])
            state[0] += 1
            return {"h": state[1][0].numpy(), "c_n": state[1][1].numpy()}
        return {"torch-lstmcell": run_cell}

    lstm = torch.nn.LSTM(case.H, case.H, case.layers, bidirectional=case.bidirectional)
    lstm.load_state_dict(tp)
    lt = torch.from_numpy(lengths) if lengths is not None else None
    rnn = torch.nn.utils.rnn

    def make(onednn: bool):
        def flags():  # allow_tf32=False is torch's default; flags()' own default (True) would change it
            return torch.backends.mkldnn.flags(enabled=onednn, allow_tf32=False)

        if case.kind == "train":
            def run():
                with flags():
                    for p in lstm.parameters():
                        p.grad = None
                    xg = xt.detach().requires_grad_()
                    y, _ = lstm(xg)
                    y.backward(dyt)  # the gradients of sum(y * dy)
                return {"y": y.detach().numpy(), "dx": xg.grad.numpy(),
                        **{n: p.grad.numpy() for n, p in lstm.named_parameters()}}
        elif case.kind == "lengths":
            def run():
                with torch.no_grad(), flags():
                    packed = rnn.pack_padded_sequence(xt, lt, enforce_sorted=False)
                    out, (h_n, c_n) = lstm(packed)
                    y, _ = rnn.pad_packed_sequence(out, total_length=case.T)
                return {"y": y.numpy(), "h_n": h_n.numpy(), "c_n": c_n.numpy()}
        else:
            def run():
                with torch.no_grad(), flags():
                    y, (h_n, c_n) = lstm(xt)
                return {"y": y.numpy(), "h_n": h_n.numpy(), "c_n": c_n.numpy()}
        return run

    return {"torch-onednn": make(True), "torch-native": make(False)}


def _onnxruntime_impl(case: Case, cfg, params: dict, x, lengths, threads: int):
    if case.kind in ("step", "train"):
        raise Skip("no streaming step API" if case.kind == "step" else "inference only (no training)")
    skip = _not_installed("onnx", "onnxruntime")
    if skip:
        raise skip
    from fastlstm.convert.onnx import OnnxLSTM, lstm_model

    ort = OnnxLSTM(lstm_model(cfg, params, with_lengths=lengths is not None), threads)

    def run():
        y, (h_n, c_n) = ort(x, lengths)
        return {"y": y, "h_n": h_n, "c_n": c_n}
    return run


def _reference_impl(case: Case, cfg, params: dict, x, dy, lengths):
    """The NumPy reference in float32, where a run is estimated (from a few steps) to take less than
    REFERENCE_LIMIT_S; numpy's BLAS picks its own thread count."""
    state = [0, (np.zeros((case.layers, case.B, case.H), np.float32),) * 2]

    def run(n=None):
        if case.kind == "step":  # n is ignored: one step is the unit
            t = state[0] % len(x)
            (y, state[1]), _ = reference.forward(cfg, params, x[t:t + 1], state[1])
            state[0] += 1
            return {"h": y[0], "c_n": state[1][1][-1]}
        xs = x[:n] if n else x
        ls = np.minimum(lengths, len(xs)) if lengths is not None else None
        (y, (h_n, c_n)), tape = reference.forward(cfg, params, xs, lengths=ls, train=case.kind == "train")
        if case.kind != "train":
            return {"y": y, "h_n": h_n, "c_n": c_n}
        dx, _, grads = reference.backward(cfg, params, tape, dy[:len(xs)])
        return {"y": y, "dx": dx, **grads}

    n = 1 if case.kind == "step" else min(8, len(x))
    settle()  # a still-spinning pool would inflate the estimate several-fold
    run(1)  # the first call pays one-time costs (allocation, BLAS start-up)
    estimate = min(timed(lambda: run(n)) for _ in range(2)) * (1 if case.kind == "step" else len(x) / n)
    state[:] = [0, (np.zeros((case.layers, case.B, case.H), np.float32),) * 2]  # the check starts from zero
    if estimate > REFERENCE_LIMIT_S:
        raise Skip(f"estimated {estimate:.1f} s per run from {n} steps (> {REFERENCE_LIMIT_S:g} s limit)")
    return run


def call_estimates(case: Case, fma_gflops: float) -> tuple[dict[str, float], float]:
    """({implementation: rough seconds per call}, rough seconds to set the row up) for the implementations
    that will run here: a forecast of the run time from the case's work and the FMA-loop rate, not a
    measurement (a library that runs at a tenth of the estimate only lengthens the run)."""
    work = flops(case) / (fma_gflops * 1e9)
    D = 2 if case.bidirectional else 1
    steps = (1 if case.kind == "step" else case.T) * case.layers * D * (3 if case.kind == "train" else 1)
    if case.B == 1:  # latency: read the weights each step, a microsecond of synchronisation
        native = (1 if case.kind == "step" else case.T) * (weight_bytes_per_step(case) / 150e9 + 1e-6)
    else:
        native = work / 0.8
    calls = {"fastlstm": native}
    if installed("torch"):
        if case.kind == "step":
            calls["torch-lstmcell"] = 50e-6
        else:
            calls.update({"torch-onednn": native * 1.2, "torch-native": native * 2.5})
    if case.kind not in ("step", "train") and installed("onnx") and installed("onnxruntime"):
        calls["onnxruntime"] = native * 1.3
    ref = work / 0.2 + steps * 30e-6
    setup = 0.3  # the models and sessions
    if case.kind == "step" or ref <= REFERENCE_LIMIT_S:
        calls["reference"] = ref
        setup += 3 * ref * (1 if case.kind == "step" else min(8, case.T) / case.T)
    else:
        setup += 3 * ref * min(8, case.T) / case.T  # the estimate that decides to skip it
    return calls, setup


def expected_seconds(case: Case, fma_gflops: float, reps: int, warmup: int) -> float:
    """The forecast of one row's wall time (setup, checks, warm-up and the timed repetitions)."""
    calls, setup = call_estimates(case, fma_gflops)
    check_calls = STEP_CHECK if case.kind == "step" else 1
    return setup + row_seconds(list(calls.values()), reps, warmup, check_calls)


def forecast(cases: list[Case], fma_gflops: float, reps: int, warmup: int) -> float:
    """The forecast of the rows' wall time, with a second for the libraries' first-use costs."""
    return 1.0 + sum(expected_seconds(c, fma_gflops, reps, warmup) for c in cases)
