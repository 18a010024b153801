"""The low-precision table: fastlstm in a row's precision (bf16, int8) against fastlstm float32 and the peers'
own low-precision paths, all on the same weights and inputs. A row has sides (implementations); each is
measured for its error against the float64 NumPy reference before it is timed, and timed alternating with
the others as in the float32 table.

Peers: bf16 rows: torch.nn.LSTM under torch.autocast("cpu", dtype=torch.bfloat16) (inference under
torch.no_grad(); training: the autocast forward, then backward). int8 rows: torch's dynamic int8 LSTM
(torch.ao.quantization.quantize_dynamic) and onnxruntime's dynamically quantized LSTM
(onnxruntime.quantization.quantize_dynamic: DynamicQuantizeLSTM). bf16 inference rows also: OpenVINO (an
optional peer: pip install openvino) compiling the float32 ONNX model with INFERENCE_PRECISION_HINT bf16,
the precision it picks by itself on CPUs with AVX512_BF16. The int8 step row: torch.nn.LSTMCell in float32
and torch's dynamic int8 LSTMCell."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import warnings
from dataclasses import asdict

import numpy as np

import fastlstm
from fastlstm import reference

from . import report, timing
from .baselines import STEP_CHECK, Skip, _not_installed, installed

LABELS = {  # side -> what the table calls it
    "fastlstm-bf16": "fastlstm bf16", "fastlstm-int8": "fastlstm int8", "fastlstm-fp32": "fastlstm fp32",
    "torch-bf16": "torch bf16 autocast", "torch-int8": "torch dynamic int8", "onnxruntime-int8": "onnxruntime int8",
    "torch-lstmcell": "torch LSTMCell fp32", "torch-int8-lstmcell": "torch int8 LSTMCell",
    "openvino-bf16": "OpenVINO bf16",
}
INSTRUCTIONS = {"bf16": "AVX512_BF16", "int8": "AVX512_VNNI"}
ERROR_OF = {"infer": "y", "train": "dx", "step": f"h of {STEP_CHECK} steps"}


def flops(case) -> float:
    """Forward FLOPs 2*steps*4H*(I + H), steps = T*B (B for the step row); 3x that for training."""
    steps = (1 if case.kind == "step" else case.T) * case.B
    total = 2 * steps * 4 * case.H * (case.I + case.H)
    return 3 * total if case.kind == "train" else total


def peers(case) -> list[str]:
    """The row's peer sides (besides fastlstm in the row's precision and in float32)."""
    if case.kind == "step":
        return ["torch-lstmcell", f"torch-{case.precision}-lstmcell"]
    if case.precision == "bf16":
        return ["torch-bf16"] + (["openvino-bf16"] if case.kind == "infer" else [])
    return ["torch-int8", "onnxruntime-int8"]


def errors(out, ref) -> dict:
    """The max abs and RMS error of a side's outputs against the float64 reference's."""
    if np.shape(out) != np.shape(ref):
        raise ValueError(f"outputs of shape {np.shape(out)}, the reference's {np.shape(ref)}")
    e = np.asarray(out, np.float64) - ref
    return {"max_abs": float(np.max(np.abs(e))), "rms": float(np.sqrt(np.mean(e * e)))}


class _Inputs:
    """A row's weights and inputs, and the float64 reference's outputs on them."""

    def __init__(self, case):
        self.case = case
        m = fastlstm.LSTM(case.I, case.H, seed=0)
        self.cfg, self.params = m.config, m.state_dict()
        rng = np.random.default_rng(0)
        self.x = rng.uniform(-1, 1, (STEP_CHECK if case.kind == "step" else case.T, case.B, case.I)).astype(np.float32)
        self.dy = rng.uniform(-1, 1, (case.T, case.B, case.H)).astype(np.float32)

    def reference(self) -> np.ndarray:
        """y (h at every step for the step row) or, for training, dx: float64."""
        p64 = {k: v.astype(np.float64) for k, v in self.params.items()}
        train = self.case.kind == "train"
        (y, _), tape = reference.forward(self.cfg, p64, self.x.astype(np.float64), train=train)
        return reference.backward(self.cfg, p64, tape, self.dy.astype(np.float64))[0] if train else y


def _fastlstm(case, inp: _Inputs, precision: str | None):
    """-> (call, check): call() is one timed call, check() the outputs compared with the reference."""
    m = fastlstm.LSTM(case.I, case.H, precision=precision)
    m.load_state_dict(inp.params)
    x, dy = inp.x, inp.dy
    if case.kind == "step":
        state = [0, None]

        def call():
            h, state[1] = m.step(x[state[0] % len(x)], state[1])
            state[0] += 1
            return h

        def check():
            state[:] = [0, None]
            return np.stack([call() for _ in range(len(x))])
        return call, check
    if case.kind == "train":
        def call():
            m(x, train=True)
            return m.backward(dy)[0]
        return call, call
    return (lambda: m(x)[0]), (lambda: m(x)[0])


@functools.cache
def _onednn_runs_bf16_lstm(torch) -> bool:
    """Whether torch's oneDNN LSTM accepts bf16 on this CPU. It refuses without AVX512 ('could not create a
    primitive descriptor for the LSTM forward propagation primitive')."""
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(4, 4)(torch.zeros(2, 1, 4))
        return True
    except RuntimeError:
        return False


def label(side: str) -> str:
    """What the table calls a side: torch's bf16 side says where it runs ATen's LSTM (torch_bf16_autocast)."""
    if side == "torch-bf16" and installed("torch"):
        import torch

        if not _onednn_runs_bf16_lstm(torch):
            return "torch bf16 (ATen)"
    return LABELS.get(side, side)


def torch_bf16_autocast(torch):
    """-> context(): torch.autocast("cpu", dtype=torch.bfloat16), with oneDNN off where oneDNN refuses its bf16
    LSTM: there autocast runs ATen's LSTM on bf16 matmuls, the bf16 LSTM torch offers on such a CPU."""
    onednn = _onednn_runs_bf16_lstm(torch)

    @contextlib.contextmanager
    def context():
        enabled = torch.backends.mkldnn.enabled  # (mkldnn.flags() would also set TF32, and warn about it)
        torch.backends.mkldnn.enabled = enabled and onednn
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                yield
        finally:
            torch.backends.mkldnn.enabled = enabled
    return context


def _quiet_quantize(torch, module, kind):
    """torch's dynamic int8 version of module (torch.nn.LSTM or LSTMCell; a bare one is not swapped: wrap it)."""
    with warnings.catch_warnings():  # torch's eager quantization is deprecated (and says so)
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), {kind}, dtype=torch.qint8)[0]
    if "quantized.dynamic" not in type(q).__module__:
        raise Skip(f"torch's quantize_dynamic left {type(q).__name__} in float32")
    return q


def _torch(case, inp: _Inputs, side: str, threads: int):
    skip = _not_installed("torch")
    if skip:
        raise skip
    import torch

    torch.set_num_threads(threads)
    tp = {k: torch.from_numpy(v) for k, v in inp.params.items()}
    xt, dyt = torch.from_numpy(inp.x), torch.from_numpy(inp.dy)
    if case.kind == "step":
        cell = torch.nn.LSTMCell(case.I, case.H)
        cell.load_state_dict({k.removesuffix("_l0"): v for k, v in tp.items()})
        if side != "torch-lstmcell":
            if case.precision != "int8":
                raise Skip(f"no torch {case.precision} LSTMCell here")
            if not hasattr(torch.ao.nn.quantized.dynamic, "LSTMCell"):
                raise Skip("this torch has no dynamic int8 LSTMCell (torch.ao.nn.quantized.dynamic.LSTMCell)")
            cell = _quiet_quantize(torch, cell, torch.nn.LSTMCell)
        zeros = torch.zeros(case.B, case.H)
        state = [0, (zeros, zeros)]

        def call():
            with torch.no_grad():
                state[1] = cell(xt[state[0] % len(xt)], state[1])
            state[0] += 1
            return state[1][0].numpy()

        def check():
            state[:] = [0, (zeros, zeros)]
            return np.stack([call() for _ in range(len(xt))])
        return call, check

    lstm = torch.nn.LSTM(case.I, case.H)
    lstm.load_state_dict(tp)
    if side == "torch-int8":
        if case.kind == "train":
            raise Skip("torch's dynamic int8 LSTM is inference only")
        q = _quiet_quantize(torch, lstm, torch.nn.LSTM)

        def run():
            with torch.no_grad():
                return q(xt)[0].numpy()
        return run, run
    bf16 = torch_bf16_autocast(torch)
    if case.kind == "train":
        def train():
            for p in lstm.parameters():
                p.grad = None
            xg = xt.detach().requires_grad_()
            with bf16():
                y, _ = lstm(xg)
            y.backward(dyt.to(y.dtype))  # the gradients of sum(y * dy)
            return xg.grad.float().numpy()
        return train, train

    def infer():
        with torch.no_grad(), bf16():
            return lstm(xt)[0].float().numpy()
    return infer, infer


def _onnxruntime_int8(case, inp: _Inputs, threads: int):
    skip = _not_installed("onnx", "onnxruntime")
    if skip:
        raise skip
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from fastlstm.convert.onnx import OnnxLSTM, lstm_model

    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "lstm.onnx"), os.path.join(d, "lstm_int8.onnx")
        with open(src, "wb") as f:
            f.write(lstm_model(inp.cfg, inp.params))
        disabled = logging.root.manager.disable
        logging.disable(logging.WARNING)  # it advises pre-processing (for convolutions) on the root logger
        try:
            quantize_dynamic(src, dst, op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)
        finally:
            logging.disable(disabled)
        with open(dst, "rb") as f:
            model = f.read()
    ops = {n.op_type for n in onnx.load_from_string(model).graph.node}
    if "DynamicQuantizeLSTM" not in ops:
        raise Skip(f"onnxruntime's quantize_dynamic did not quantize the LSTM (ops: {sorted(ops)})")
    ort = OnnxLSTM(model, threads)

    def run():
        return ort(inp.x)[0]
    return run, run


def _openvino_bf16(case, inp: _Inputs, threads: int):
    skip = _not_installed("onnx", "openvino")
    if skip:
        raise skip
    import openvino as ov

    from fastlstm.convert.onnx import lstm_model

    core = ov.Core()
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise Skip("OpenVINO runs no bf16 on this CPU")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "lstm.onnx")
        with open(path, "wb") as f:
            f.write(lstm_model(inp.cfg, inp.params))
        model = core.read_model(path)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16",
                                                 "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    y = compiled.output(0)

    def run():
        return np.array(request.infer({"X0": inp.x})[y], np.float32)
    return run, run


def makers(case, inp: _Inputs, threads: int) -> dict:
    """{side: make}: make() sets the side up and returns (call, check), or raises (Skip: it cannot run here).
    The first side is fastlstm in the row's precision: its failure (a ValueError: this CPU or this version
    cannot run it) skips the row before the peers are set up."""
    out = {f"fastlstm-{case.precision}": lambda: _fastlstm(case, inp, case.precision),
           "fastlstm-fp32": lambda: _fastlstm(case, inp, None)}
    for side in peers(case):
        if side == "onnxruntime-int8":
            out[side] = lambda: _onnxruntime_int8(case, inp, threads)
        elif side == "openvino-bf16":
            out[side] = lambda: _openvino_bf16(case, inp, threads)
        else:
            out[side] = lambda s=side: _torch(case, inp, s, threads)
    return out


def skip_reason(case) -> str | None:
    """Why this CPU cannot run the row's precision, or None."""
    if case.precision not in fastlstm.backends()["cpu"]["precisions"]["float32"]:
        return f"this CPU does not run {case.precision} (neither AVX2 nor {INSTRUCTIONS.get(case.precision, '?')})"
    return None


def _ours_failed(case, exc: Exception) -> tuple[str, str]:
    """(status, reason) of a row whose fastlstm side failed: a ValueError is this version's or this CPU's
    limit (skipped), anything else an error."""
    if not isinstance(exc, ValueError):
        return "error", f"fastlstm {case.precision}: {type(exc).__name__}: {exc}"
    if "inference only" in str(exc):
        return "skipped", f"{case.precision} training: not in this version"
    return "skipped", f"fastlstm {case.precision}: {exc}"


def run_case(case, threads: int, reps: int, warmup: int, desc: str) -> dict:
    """Measures every side's error, then times them alternating: the row of results.json."""
    ours = f"fastlstm-{case.precision}"
    row: dict = {"name": case.name, "shape": case.shape(), "case": asdict(case), "table": "low precision",
                 "precision": case.precision, "ours": ours, "peers": peers(case), "error_of": ERROR_OF[case.kind],
                 "flops": flops(case), "sides": {},
                 "native": case.precision in fastlstm.backends()["cpu"]["native_precisions"]["float32"]}
    reason = skip_reason(case)
    if reason:
        return {**row, "status": "skipped", "reason": reason}
    load = timing.LoadMonitor()
    progress = report.Progress(reps, desc)
    try:
        inp = _Inputs(case)
        impls = {}
        for side, make in makers(case, inp, threads).items():
            entry = row["sides"][side] = {"label": label(side)}
            try:
                call, check = make()
                out = check()
                if side == ours:  # fastlstm runs this row: now the reference is worth computing
                    ref = inp.reference()
                entry["error"] = errors(out, ref)
            except Exception as exc:
                if side == ours:
                    status, why = _ours_failed(case, exc)
                    return {**row, "sides": {}, "status": status, "reason": why,
                            "detail": f"{type(exc).__name__}: {exc}"}
                skipped = isinstance(exc, Skip)
                entry.update(status="skipped" if skipped else "error",
                             reason=str(exc) if skipped else f"{type(exc).__name__}: {exc}")
                continue
            entry["status"] = "ok"
            impls[side] = call
        try:
            times = timing.time_alternating(impls, reps, warmup, progress.update)
        except Exception as exc:
            return {**row, "status": "error", "reason": f"while timing: {type(exc).__name__}: {exc}"}
    finally:
        progress.close()
    row.update(status="ok", load=load.stop())
    ours_ms = float(np.median(times[ours]["steady"])) * 1e3
    for side, t in times.items():
        ms = float(np.median(t["steady"])) * 1e3
        row["sides"][side].update(ms=ms, ratio=ms / ours_ms, times_ms=[v * 1e3 for v in t["steady"]],
                                  calls_per_timing=t["calls"])
        if "after_idle" in t:
            row["sides"][side]["after_idle_ms"] = float(np.median(t["after_idle"])) * 1e3
    row["sides"][ours]["gflops"] = row["flops"] / ours_ms / 1e6
    return row


def expected_seconds(case, fma_gflops: float, reps: int, warmup: int) -> float:
    """A forecast of one row's wall time from its work and the FMA-loop rate (not a measurement)."""
    if skip_reason(case):
        return 0.0
    steps = 1 if case.kind == "step" else case.T
    if case.B == 1:
        fp32 = steps * (4 * case.H * (case.I + case.H) * 4 / 150e9 + 1e-6) + (20e-6 if case.kind == "step" else 0)
    else:
        fp32 = flops(case) / (fma_gflops * 1e9) / 0.8
    calls = [fp32 / 2, fp32] + [fp32 * 1.5] * len(peers(case))
    check = STEP_CHECK if case.kind == "step" else 1
    ref = flops(case) * (STEP_CHECK if case.kind == "step" else 1) / 5e9 + check * steps * 30e-6  # float64 BLAS
    return 1.0 + ref + timing.row_seconds(calls, reps, warmup, check)  # 1 s: the peers' set-up
