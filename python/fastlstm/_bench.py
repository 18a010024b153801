"""The CPU benchmark of BENCHMARKS.md: fastlstm against torch.nn.LSTM (oneDNN on and off), onnxruntime and
fastlstm.reference, side by side in one process. ``python -m fastlstm bench`` and benchmarks/run.py run this.

Every baseline gets the same weights and inputs and must match fastlstm's outputs before it is timed. The
implementations alternate within each repetition, so machine noise hits all alike, and the reported time is
the median over repetitions. Baselines that cannot run are reported as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import importlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import fastlstm
from fastlstm import reference

from . import _onnx

TOL = 1e-3  # max |baseline - fastlstm| allowed, relative to max(1, max|fastlstm|) (gradients sum over T*B)
REFERENCE_LIMIT_S = 2.0  # the NumPy reference is timed only where one run takes less than this
STEP_CHECK = 100  # the step row compares the state after this many calls
BLOCK_S = 0.02  # calls shorter than this are timed in blocks of back-to-back calls (the steady state)
SHORT_S = 0.05  # calls shorter than this are also timed once after IDLE_S of idleness
IDLE_S = 0.06  # long enough for every runtime's worker threads to stop spinning and sleep
# After idleness, multi-threaded calls on this VM take up to ~30 ms to get back to speed (vCPUs woken by
# the hypervisor): calls under PRIME_MAX_S are preceded by PRIME_S of untimed calls.
PRIME_S, PRIME_MAX_S = 0.03, 0.3
BASELINES = ("torch", "onnxruntime", "reference")  # the ratio columns; "torch" is the faster torch mode
BUSY_CORES = 0.2  # more CPU than this used by other processes during a row gets a warning
TORCH_MODES = ("torch-onednn", "torch-native", "torch-lstmcell")


@dataclass(frozen=True)
class Case:
    name: str
    T: int
    B: int
    H: int  # I = H
    layers: int = 1
    bidirectional: bool = False
    kind: str = "infer"  # infer | step | lengths | train
    goals: dict = field(default_factory=dict)  # baseline -> minimum time ratio baseline/fastlstm
    peak_goal: float | None = None  # minimum fraction of the FMA peak


CASES = [
    Case("b1-h128", 100, 1, 128, goals={"torch": 3, "onnxruntime": 2}),
    Case("b1-h512", 100, 1, 512, goals={"torch": 2.5, "onnxruntime": 1.15}),
    Case("b16-h256", 100, 16, 256, goals={"torch": 1.25, "onnxruntime": 1.4}),
    Case("b64-h512", 100, 64, 512, goals={"torch": 1.25, "onnxruntime": 1.3}, peak_goal=0.8),
    Case("b256-h1024", 50, 256, 1024, goals={"torch": 1.25, "onnxruntime": 1.5}, peak_goal=0.8),
    Case("step-b1-h256", 1, 1, 256, kind="step", goals={"torch": 5}),
    Case("lengths", 200, 64, 256, kind="lengths", goals={"torch": 2, "onnxruntime": 1.5}),
    Case("bi2", 100, 32, 256, layers=2, bidirectional=True, goals={"torch": 1.3}),
    Case("train-b16-h256", 100, 16, 256, kind="train", goals={"torch": 1.25}),
    Case("train-b64-h512", 100, 64, 512, kind="train", goals={"torch": 1.3}),
    Case("train-bi2", 100, 32, 256, layers=2, bidirectional=True, kind="train", goals={"torch": 1.4}),
]


class Skip(Exception):
    """A baseline that cannot run here; the message is the reason reported."""


def _optional(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# -- the machine ----------------------------------------------------------------------------------------

def _lscpu() -> dict:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def machine_info(threads: int) -> dict:
    cpu = _lscpu()
    cores = int(cpu.get("Core(s) per socket", 0)) * int(cpu.get("Socket(s)", 1)) or os.cpu_count() or 1
    mhz, clock = cpu.get("CPU max MHz"), "lscpu 'CPU max MHz'"
    if not mhz:  # VMs often hide the boost clock: the nominal one gives a lower, labelled estimate
        info = Path("/proc/cpuinfo")
        found = re.search(r"cpu MHz\s*:\s*([\d.]+)", info.read_text()) if info.exists() else None
        mhz, clock = (found.group(1), "/proc/cpuinfo 'cpu MHz': nominal, the boost clock is not shown") \
            if found else (None, "unknown")
    flags = cpu.get("Flags", "").split()
    # 2 FMA pipes x 8 fp32 lanes x 2 flops: AVX2 on Zen and Intel, and AVX-512 on Zen 4 (double-pumped)
    per_cycle = 32 if "fma" in flags else 16 if "avx" in flags else 8
    used = min(threads, cores)
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "fastlstm": fastlstm.__version__}
    for name in ("torch", "onnxruntime", "onnx", "matplotlib", "tqdm"):
        mod = _optional(name)
        versions[name] = getattr(mod, "__version__", "?") if mod else "not installed"
    return {
        "model_name": cpu.get("Model name", platform.processor() or "unknown"), "cores": cores,
        "threads": threads, "backends": fastlstm.backends(), "versions": versions,
        "theoretical_peak": {
            "gflops": used * float(mhz) * per_cycle / 1e3 if mhz else None,
            "label": f"theoretical FMA peak: {used} cores x {float(mhz or 0):.0f} MHz x {per_cycle} "
                     "flop/cycle",
            "clock_source": clock,
        },
    }


def measure_gemm_peak(threads: int) -> dict:
    """The best fp32 square-matmul rate on `threads` threads: what a tuned GEMM reaches on this machine."""
    n = 2048  # smaller squares stay well under the peak (1024: ~145 vs ~185 GFLOP/s here)
    torch = _optional("torch")
    a, b = (np.random.default_rng(0).standard_normal((n, n), dtype=np.float32) for _ in range(2))
    if torch is not None:
        torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        mm, label = (lambda: torch.mm(ta, tb)), f"torch.mm {n}x{n} fp32, {threads} threads"
    else:
        mm, label = (lambda: a @ b), f"numpy {n}x{n} fp32 (torch not installed)"
    _settle()
    load = _LoadMonitor()
    mm()
    best = min(_timed(mm) for _ in range(10))  # the rate varies by ~10% from run to run here: keep the best
    peak = {"gflops": 2 * n**3 / best / 1e9, "label": f"measured GEMM peak: {label}"}
    core = getattr(fastlstm, "_core", None)
    if hasattr(core, "fma_peak_gflops"):  # fastlstm's own register-only FMA loop, for information
        peak["fma_loop_gflops"] = core.fma_peak_gflops(fastlstm.backends()["cpu"]["isa"], threads, 0.2)
    peak["load"] = load.stop()
    return peak


# The machine probes of the B = 1 bounds: key -> (measure, samples). A sample is the read bandwidth and the h
# exchange measured back to back; the bound takes the best sample as a whole. Each key is measured when a
# row first needs it and again at the end of the run: the VM's 2 vCPUs are at times placed on one physical
# core (the bandwidth then halves and the exchange gets 5x cheaper), and a bound from one such moment, or one
# mixing the two placements, is not the machine's.
_PROBES: dict = {}


def _b1_samples(threads: int, share: int, group: int, nbytes: int) -> list[tuple[float, float]]:
    """[(GB/s of `threads` threads each sweeping `share` bytes, us to exchange `nbytes` of h among `group`
    threads, 0 for one)]: fastlstm's probes, the best of three each."""
    key = (threads, max(4096, int(share)), group, nbytes)
    if key not in _PROBES:
        isa = fastlstm.backends()["cpu"]["isa"]

        def measure():
            _settle()
            bw = max(fastlstm._core.read_bandwidth_gbs(isa, threads, key[1], 0.1) for _ in range(3))
            ex = min(fastlstm._core.step_exchange_us(group, nbytes) for _ in range(3)) if group > 1 else 0.0
            return bw, ex
        _PROBES[key] = (measure, [measure()])
    return _PROBES[key][1]


def remeasure_probes() -> None:
    """Adds a sample to every probe measured so far (at the end of a run)."""
    for measure, samples in _PROBES.values():
        samples.append(measure())


def weight_bytes_per_step(case: Case) -> int:
    """The weights a B = 1 step streams: W_hh of every layer and direction (and W_ih too for the step call,
    whose projection is not hoisted over a sequence)."""
    D = 2 if case.bidirectional else 1
    return case.layers * D * 4 * case.H * case.H * 4 * (2 if case.kind == "step" else 1)


def bound(case: Case, peak: dict, threads: int, lengths_sum: int | None = None) -> dict | None:
    """The least time the machine allows for one call, from the measured limits: the FMA-loop peak for the
    FLOPs, and at B = 1, where each step must stream the recurrent weights from the cache level they fit in,
    the input projection at the FMA peak plus T sweeps of the weights at the read bandwidth measured for each
    thread's share of them plus T exchanges of h between the threads."""
    gf = peak.get("fma_loop_gflops")
    if not gf:
        return None
    total = flops(case, lengths_sum)  # the lengths row: the useful steps only
    if case.B != 1:
        return {"ms": total / gf / 1e6, "limit": f"FLOPs at the FMA-loop peak {gf:.0f} GFLOP/s"}
    per_step = weight_bytes_per_step(case)
    share = per_step // threads  # the hidden units, and so the weights, are split evenly across threads
    steps = 1 if case.kind == "step" else case.T
    projection_ms = 0 if case.kind == "step" else total / 2 / gf / 1e6  # half the FLOPs are the projection
    # Each layer's step waits for every thread's share of h; the two directions run side by side on half
    # the threads each.
    group = threads // (2 if case.bidirectional else 1)

    def ms(sample):
        bw, exchange_us = sample
        return steps * per_step / bw / 1e6 + projection_ms + steps * case.layers * exchange_us / 1e3
    bw, exchange_us = min(_b1_samples(threads, share, group, 4 * case.H), key=ms)
    return {"ms": ms((bw, exchange_us)),
            "limit": f"{per_step / 2**10:.0f} KiB of weights a step at {bw:.0f} GB/s (read bandwidth measured "
                     f"for {share / 2**10:.0f} KiB per thread)"
                     + ("" if case.kind == "step" else f" + the input projection at {gf:.0f} GFLOP/s")
                     + (f" + {exchange_us:.2f} us a step to exchange h between threads" if exchange_us else "")}


# -- timing -----------------------------------------------------------------------------------------------

def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _settle(max_wait: float = 0.25, window: float = 0.004) -> None:
    """Waits until no thread of this process burns CPU. The thread pools of torch (OpenMP), onnxruntime,
    numpy's BLAS and fastlstm spin for a while after each call (onnxruntime ~35 ms here); on 2 cores a
    spinning pool of the previous implementation slows the next one several-fold."""
    deadline = time.perf_counter() + max_wait
    while time.perf_counter() < deadline:
        c0, w0 = time.process_time(), time.perf_counter()
        time.sleep(window)
        if time.process_time() - c0 < 0.1 * (time.perf_counter() - w0):
            return


def time_alternating(impls: dict, reps: int, warmup: int, progress) -> dict[str, dict]:
    """Per implementation: "steady" (s per call, one value per repetition), "calls" per timing and, in rows
    with short calls, "after_idle" (s, the first call after IDLE_S without work). Each repetition runs every
    implementation once, in an order rotated per repetition; the timed part is a block of back-to-back
    calls (>= BLOCK_S) after PRIME_S of untimed ones: the steady state of a loop of calls."""
    names = list(impls)
    fastest = {}  # the steady per-call time: the fastest of at least `warmup` calls and PRIME_S
    for name in names:
        _settle()
        t_end, times = time.perf_counter() + PRIME_S, []
        while len(times) < warmup or time.perf_counter() < t_end:
            times.append(_timed(impls[name]))
        fastest[name] = min(times)
    out = {n: {"steady": [], "calls": max(1, math.ceil(BLOCK_S / max(fastest[n], 1e-7)))} for n in names}
    short = min(fastest.values()) < SHORT_S  # then every implementation of the row gets an after-idle call
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one implementation's timing would be charged to it alone
    try:
        for r in range(reps):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn, k = impls[name], out[name]["calls"]
                _settle()
                if short:
                    time.sleep(IDLE_S)
                    out[name].setdefault("after_idle", []).append(_timed(fn))
                if fastest[name] < PRIME_MAX_S:
                    t_end = time.perf_counter() + PRIME_S
                    while time.perf_counter() < t_end:
                        fn()
                t0 = time.perf_counter()
                for _ in range(k):
                    fn()
                out[name]["steady"].append((time.perf_counter() - t0) / k)
            progress.update()
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


class _LoadMonitor:
    """CPU time used by other processes (and stolen by the hypervisor) while a row runs, from /proc/stat:
    compiles or tests running beside the benchmark make its numbers meaningless, so each row records it."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        busy = sum(fields[i] for i in (0, 1, 2, 5, 6)) / ticks  # user nice system irq softirq
        steal = fields[7] / ticks if len(fields) > 7 else 0.0
        t = os.times()
        return time.perf_counter(), busy, steal, t.user + t.system

    def stop(self) -> dict | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall, busy, steal, ours = (e - s for e, s in zip(end, self.start, strict=True))
        return {"other_processes_cores": max(0.0, (busy - ours) / wall), "steal_cores": steal / wall}


class _Progress:
    """tqdm when installed, else one line per repetition."""

    def __init__(self, total: int, desc: str):
        tqdm = _optional("tqdm")
        self.bar = tqdm.tqdm(total=total, desc=f"{desc:>15}", leave=False) if tqdm else None
        self.desc, self.total, self.n = desc, total, 0

    def update(self) -> None:
        self.n += 1
        if self.bar is not None:
            self.bar.update(1)
        else:
            print(f"  {self.desc}: repetition {self.n}/{self.total}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _write(msg: str) -> None:
    tqdm = _optional("tqdm")
    (tqdm.tqdm.write if tqdm else print)(msg)


# -- the implementations of one configuration ------------------------------------------------------------

def flops(case: Case, lengths_sum: int | None = None) -> float:
    """Forward FLOPs, 2*steps*4H*(I_k + H_out) per layer and direction with steps = T*B (sum(lengths) for
    the lengths row: the useful work); 3x that for training."""
    steps = lengths_sum if lengths_sum is not None else case.T * case.B
    D = 2 if case.bidirectional else 1
    total = sum(D * 2 * steps * 4 * case.H * ((case.H if k == 0 else D * case.H) + case.H)
                for k in range(case.layers))
    return 3 * total if case.kind == "train" else total


def _compare(ours: dict, theirs: dict) -> dict:
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
    """-> (fastlstm impl, {baseline: impl or the exception that prevents it}, lengths or None). An impl
    does one call and returns its outputs by name (y, h_n, c_n; dx and gradients for train). For the step
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
    torch = _optional("torch")
    if torch is None:
        base["torch"] = Skip("not installed (torch)")
    else:
        torch.set_num_threads(threads)
        modes = _attempt(lambda: _torch_impls(torch, case, params, x, dy, lengths))
        base.update(modes if isinstance(modes, dict) else {"torch": modes})

    def ort_impl():
        if kind in ("step", "train"):
            raise Skip("no streaming step API" if kind == "step" else "inference only (no training)")
        missing = [name for name in ("onnx", "onnxruntime") if _optional(name) is None]
        if missing:
            raise Skip(f"not installed ({', '.join(missing)})")
        ort = _onnx.OnnxLSTM(_onnx.lstm_model(m.config, params, with_lengths=lengths is not None), threads)

        def run():
            y, (h_n, c_n) = ort(x, lengths)
            return {"y": y, "h_n": h_n, "c_n": c_n}
        return run

    base["onnxruntime"] = _attempt(ort_impl)
    base["reference"] = _attempt(lambda: _reference_impl(case, m.config, params, x, dy, lengths))
    return ours, base, lengths


def _torch_impls(torch, case: Case, params: dict, x, dy, lengths) -> dict:
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
    _settle()  # a still-spinning pool would inflate the estimate several-fold
    run(1)  # the first call pays one-time costs (allocation, BLAS start-up)
    estimate = min(_timed(lambda: run(n)) for _ in range(2)) * (1 if case.kind == "step" else len(x) / n)
    state[:] = [0, (np.zeros((case.layers, case.B, case.H), np.float32),) * 2]  # the check starts from zero
    if estimate > REFERENCE_LIMIT_S:
        raise Skip(f"estimated {estimate:.1f} s per run from {n} steps (> {REFERENCE_LIMIT_S:g} s limit)")
    return run


# -- one row ----------------------------------------------------------------------------------------------

def run_case(case: Case, args) -> dict:
    """Checks and times one configuration; the row holds times and ratios (score() adds rates and goals)."""
    check_calls = STEP_CHECK if case.kind == "step" else 1  # a step row checks the state after many steps
    row: dict = {"name": case.name, "case": asdict(case), "baselines": {}}
    load = _LoadMonitor()  # from the start: the reference's time estimate suffers from a busy machine too
    try:
        ours, base, lengths = build(case, args.threads)
        expect = [ours() for _ in range(check_calls)][-1]
    except Exception as exc:  # a fastlstm failure is a result to report, not a reason to stop
        row["error"] = f"fastlstm: {type(exc).__name__}: {exc}"
        return row
    row["case"]["lengths_sum"] = None if lengths is None else int(np.sum(lengths))
    impls = {"fastlstm": ours}
    for name, impl in base.items():
        entry = row["baselines"][name] = {}
        if isinstance(impl, Skip):
            entry.update(status="skipped", reason=str(impl))
            continue
        if isinstance(impl, Exception):
            entry.update(status="error", reason=f"setup: {type(impl).__name__}: {impl}")
            continue
        try:
            entry["check"] = _compare(expect, [impl() for _ in range(check_calls)][-1])
        except Exception as exc:
            entry.update(status="error", reason=f"{type(exc).__name__}: {exc}")
            continue
        entry["status"] = "ok"
        impls[name] = impl

    progress = _Progress(args.reps, case.name)
    try:
        times = time_alternating(impls, args.reps, 1 if args.quick else 2, progress)
    except Exception as exc:  # the check passed but a later call failed: still a result, still reported
        row["error"] = f"while timing: {type(exc).__name__}: {exc}"
        return row
    finally:
        progress.close()
    row["load"] = load.stop()
    ms = {name: float(np.median(t["steady"])) * 1e3 for name, t in times.items()}

    def timing(name):
        t = times[name]
        extra = {"after_idle_ms": float(np.median(t["after_idle"])) * 1e3} if "after_idle" in t else {}
        return {"ms": ms[name], "times_ms": [v * 1e3 for v in t["steady"]], "calls_per_timing": t["calls"],
                **extra}

    row["fastlstm"] = timing("fastlstm")
    for name, entry in row["baselines"].items():
        if name in ms:
            entry.update(timing(name), ratio=ms[name] / ms["fastlstm"])
    # "torch": the faster of oneDNN on and off (LSTMCell for the step row), as BENCHMARKS.md defines it
    ran = [n for n in TORCH_MODES if n in ms]
    if ran:
        best = min(ran, key=ms.get)
        row["baselines"]["torch"] = dict(status="ok", ms=ms[best], ratio=ms[best] / ms["fastlstm"],
                                         source=best, check=row["baselines"][best]["check"])
    elif "torch" not in row["baselines"]:
        row["baselines"]["torch"] = dict(status="error", reason="no torch mode ran (see the torch-* entries)")
    return row


def score(row: dict, case: Case, peak: dict, theo: dict, threads: int) -> None:
    """Adds GFLOP/s, the fractions of the peaks, GB/s (B = 1), the bound and the goals to a timed row."""
    if "error" in row:
        return
    f = row["fastlstm"]
    seconds = f["ms"] / 1e3
    f["flops"] = flops(case, row["case"]["lengths_sum"])
    f["gflops"] = f["flops"] / seconds / 1e9
    f["pct_gemm_peak"] = 100 * f["gflops"] / peak["gflops"]
    f["pct_theoretical_peak"] = 100 * f["gflops"] / theo["gflops"] if theo["gflops"] else None
    if "fma_loop_gflops" in peak:
        f["pct_fma_loop_peak"] = 100 * f["gflops"] / peak["fma_loop_gflops"]
    if case.B == 1:
        f["weights_gbps"] = weight_bytes_per_step(case) * (1 if case.kind == "step" else case.T) / seconds / 1e9
    least = bound(case, peak, threads, row["case"]["lengths_sum"])
    if least:
        f["bound_ms"], f["bound_limit"] = least["ms"], least["limit"]
        f["pct_bound"] = 100 * least["ms"] / f["ms"]
    row["goals"] = []
    for baseline, target in case.goals.items():
        ratio = row["baselines"].get(baseline, {}).get("ratio")
        goal = {"goal": f">= {target:g}x {baseline}", "baseline": baseline, "target": target,
                "value": ratio, "met": None if ratio is None else ratio >= target}
        if ratio is not None and least:  # how close to the machine's limit the goal asks fastlstm to run
            base_ms = row["baselines"][baseline]["ms"]
            goal.update(needs_ms=base_ms / target, bound_allows=base_ms / least["ms"],
                        needs_pct_bound=100 * target * least["ms"] / base_ms)
        row["goals"].append(goal)
    if case.peak_goal:  # BENCHMARKS.md: of the FMA peak (the measured GEMM peak where the probe is missing)
        fma = "pct_fma_loop_peak" in f
        key, label = ("pct_fma_loop_peak", "FMA peak") if fma else ("pct_gemm_peak", "GEMM peak")
        frac = f[key] / 100
        row["goals"].append({"goal": f">= {case.peak_goal:.0%} of the {label}", "baseline": "peak",
                             "target": case.peak_goal, "value": frac, "met": frac >= case.peak_goal})


# -- output ----------------------------------------------------------------------------------------------

def _fmt_time(ms: float) -> str:
    return f"{ms * 1e3:.1f} us" if ms < 1 else f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def _cell(entry: dict) -> str:
    if entry.get("status") != "ok":
        return entry.get("status", "-")
    mark = "" if entry["check"]["passed"] else " MISMATCH"
    return f"{_fmt_time(entry['ms'])} {entry['ratio']:.2f}x{mark}"


def _busy(row: dict) -> str:
    load = row.get("load") or {}
    if max(load.values(), default=0) <= BUSY_CORES:
        return ""
    return (f"busy machine: other processes used {load['other_processes_cores']:.1f} cores, the hypervisor "
            f"stole {load['steal_cores']:.1f}")


def _row_line(row: dict) -> str:
    if "error" in row:
        return f"{row['name']:<15} ERROR: {row['error']}"
    f, b = row["fastlstm"], row["baselines"]
    torch = b.get("torch", {})
    tcell = _cell(torch) + (f" [{torch['source'].removeprefix('torch-')}]" if "source" in torch else "")
    verdict = {None: "n/a", True: "met", False: "NOT met"}
    goals = ", ".join(f"{g['goal'].removeprefix('>= ')}: {verdict[g['met']]}" for g in row["goals"])
    gbps = f"{f['weights_gbps']:.1f}" if "weights_gbps" in f else "-"
    pct_bound = f"{f['pct_bound']:.0f}%" if "pct_bound" in f else "-"
    pct_fma = f"{f['pct_fma_loop_peak']:.0f}%" if "pct_fma_loop_peak" in f else "-"
    ort, ref = _cell(b.get("onnxruntime", {})), _cell(b.get("reference", {}))
    busy = " [BUSY]" if _busy(row) else ""
    return (f"{row['name']:<15} {_fmt_time(f['ms']):>10} {tcell:>25} {ort:>20} {ref:>20} "
            f"{f['gflops']:>8.1f} {pct_fma:>6} {gbps:>6} {pct_bound:>6}  {goals}{busy}")


def table(rows: list[dict]) -> str:
    head = (f"{'config':<15} {'fastlstm':>10} {'torch (best mode)':>25} {'onnxruntime':>20} "
            f"{'reference':>20} {'GFLOP/s':>8} {'%fma':>6} {'GB/s':>6} {'%bound':>6}  goals (ratio baseline/fastlstm)")
    lines, notes = [head, "-" * len(head)], []
    for row in rows:
        lines.append(_row_line(row))
        for name, e in row["baselines"].items():
            if e.get("status") in ("skipped", "error"):
                notes.append(f"{row['name']}: {name} {e['status']}: {e['reason']}")
            elif name != "torch" and not e["check"]["passed"]:
                diffs = {k: f"{v:.1e}" for k, v in e["check"]["max_abs_diff"].items()}
                notes.append(f"{row['name']}: {name} differs from fastlstm: max|diff| {diffs}")
        idle = [f"{n} {_fmt_time(e['after_idle_ms'])}" for n, e in [("fastlstm", row["fastlstm"]),
                *row["baselines"].items()] if "after_idle_ms" in e and n != "torch"]
        if idle:
            notes.append(f"{row['name']}: first call after {IDLE_S * 1e3:.0f} ms idle: " + ", ".join(idle))
        if _busy(row):
            notes.append(f"{row['name']}: WARNING, {_busy(row)} during this row: its numbers are unreliable")
        modes = [f"{n.removeprefix('torch-')} {_fmt_time(row['baselines'][n]['ms'])}"
                 for n in ("torch-onednn", "torch-native") if "ms" in row["baselines"].get(n, {})]
        if len(modes) == 2:
            notes.append(f"{row['name']}: torch " + ", ".join(modes))
        if "bound_ms" in row.get("fastlstm", {}):
            f = row["fastlstm"]
            notes.append(f"{row['name']}: bound {_fmt_time(f['bound_ms'])} ({f['bound_limit']}): fastlstm at "
                         f"{f['pct_bound']:.0f}% of it")
            for g in row["goals"]:
                if g["met"] is False and "needs_ms" in g:
                    notes.append(f"{row['name']}: {g['goal'].removeprefix('>= ')} needs {_fmt_time(g['needs_ms'])}, "
                                 f"{g['needs_pct_bound']:.0f}% of the bound (the bound allows "
                                 f"{g['bound_allows']:.2f}x {g['baseline']})")
    return "\n".join(lines + ([""] + notes if notes else []))


def plot(rows: list[dict], path: Path, title: str) -> str:
    mpl = _optional("matplotlib")
    if mpl is None:
        return "skipped: not installed (matplotlib)"
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "error" not in r]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rows) + 2), 4.5))
    width = 0.8 / len(BASELINES)
    for j, name in enumerate(BASELINES):
        xs = [i + (j - (len(BASELINES) - 1) / 2) * width for i in range(len(rows))]
        ratios = [r["baselines"].get(name, {}).get("ratio", np.nan) for r in rows]
        ax.bar(xs, ratios, width, label=name)
        for x, r, v in zip(xs, rows, ratios, strict=True):  # say why a bar is missing
            if np.isnan(v):
                ax.text(x, 1.0, r["baselines"].get(name, {}).get("status", "n/a"), rotation=90, ha="center",
                        va="bottom", fontsize="x-small", color="gray")
        goals = [next((g["target"] for g in r["goals"] if g["baseline"] == name), np.nan) for r in rows]
        ax.scatter(xs, goals, marker="_", s=300, linewidths=2, color="black", zorder=3,
                   label="goal" if j == 0 else None)
    ax.axhline(1.0, color="gray", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("time ratio baseline / fastlstm\n(above 1: fastlstm is faster)")
    ax.set_title(title, fontsize="small")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastlstm bench", description=__doc__.split("\n\n")[0],
                                epilog="configurations: " + ", ".join(c.name for c in CASES))
    p.add_argument("--quick", action="store_true", help="fewer repetitions and shorter loops (CI smoke)")
    p.add_argument("--only", metavar="NAME[,NAME]", help="run only these configurations (listed below)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default ./bench-results-<time>)")
    p.add_argument("--threads", type=int, default=fastlstm.get_num_threads(), metavar="N",
                   help="threads of every library (default: fastlstm's)")
    p.add_argument("--reps", type=int, metavar="N", help="timed repetitions (default 7; 3 with --quick)")
    p.add_argument("--no-plot", action="store_true", help="do not write ratios.png")
    args = p.parse_args(argv)
    args.reps = args.reps or (3 if args.quick else 7)
    if args.threads < 1 or args.reps < 1:
        p.error("--threads and --reps must be >= 1")
    cases = CASES
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in {c.name for c in CASES}]
        if unknown:
            p.error(f"--only: unknown configuration(s) {unknown}; expected some of {[c.name for c in CASES]}")
        cases = [c for c in CASES if c.name in names]
    out = args.out or Path(f"bench-results-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    faulthandler.enable()  # four native thread pools in one process: a crash should leave a traceback
    # torch warns on every mkldnn.flags() that TF32 is for Intel GPUs only; it changes nothing on the CPU
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")

    fastlstm.set_num_threads(args.threads)
    info = machine_info(args.threads)
    theo = info["theoretical_peak"]
    print(f"fastlstm bench: {info['model_name']}, {info['cores']} cores, {args.threads} threads, "
          f"isa {info['backends']['cpu']['isa']}, {args.reps} repetitions", flush=True)
    peak = measure_gemm_peak(args.threads)
    busy = " [BUSY: measured again at the end]" if _busy(peak) else ""
    print(f"{peak['label']}: {peak['gflops']:.0f} GFLOP/s{busy}", flush=True)

    rows = []
    for case in cases:
        rows.append(run_case(case, args))
        score(rows[-1], case, peak, theo, args.threads)
        _write(_row_line(rows[-1]))
    # a busy moment at the start would understate the peak (and the bounds' probes): measure again and keep
    # the better one
    again = measure_gemm_peak(args.threads)
    remeasure_probes()
    peak["gflops_start_end"] = [peak["gflops"], again["gflops"]]
    peak["gflops"] = max(peak["gflops_start_end"])
    if "fma_loop_gflops" in again:
        peak["fma_loop_gflops"] = max(peak["fma_loop_gflops"], again["fma_loop_gflops"])
    for row, case in zip(rows, cases, strict=True):
        score(row, case, peak, theo, args.threads)

    results = {"machine": info, "gemm_peak": peak, "args": {k: str(v) for k, v in vars(args).items()},
               "timing": "ms per call, median over repetitions; the implementations alternate within each "
                         f"repetition (order rotated), each starting once no thread pool spins; calls under "
                         f"{BLOCK_S * 1e3:g} ms are timed as a block of back-to-back calls; calls under "
                         f"{SHORT_S * 1e3:g} ms are also timed once after {IDLE_S * 1e3:g} ms idle "
                         "(after_idle_ms); the step row's call is one step",
               "rows": rows}
    cuda = info["backends"].get("cuda")
    if cuda and cuda.get("devices"):
        print("GPU benchmarks: not yet implemented")
        results["gpu"] = "not yet implemented"
    else:
        results["gpu"] = "no CUDA device" if cuda else "fastlstm built without CUDA"
    title = f"fastlstm vs baselines: {info['model_name']}, {args.threads} threads"
    results["plot"] = "skipped: --no-plot" if args.no_plot else plot(rows, out / "ratios.png", title)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    print()
    print(table(rows))
    gf = f"{theo['gflops']:.0f} GFLOP/s" if theo["gflops"] else "unknown"
    print()
    if "fma_loop_gflops" in peak:
        print(f"%fma: of the FMA peak, fastlstm's FMA-loop probe (best of start and end): "
              f"{peak['fma_loop_gflops']:.0f} GFLOP/s")
    print(f"{peak['label']}, best of start and end: {peak['gflops']:.0f} GFLOP/s (the JSON's pct_gemm_peak)")
    print(f"{theo['label']}: {gf} (clock: {theo['clock_source']})")
    print("%bound: the least time the measured limits allow (the row's note names them) over fastlstm's time")
    if results["plot"].startswith("skipped"):
        print(f"ratios.png {results['plot']}")
    print(f"results: {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
