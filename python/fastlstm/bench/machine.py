"""The machine: what it is (CPU, cores, versions) and what it can do, measured on it rather than looked up.

The "bound" of a configuration is the least time the measured limits of this machine allow for one call:
- every row: the row's FLOPs at the rate of fastlstm's FMA loop (a register-only loop of fused multiply-adds
  on every thread: the most floating-point work the cores do per second);
- at B = 1, where a step has too little work to keep the FMA units busy and instead has to read the
  recurrent weights from the cache they fit in: the weights read at the measured read bandwidth (per
  thread's share of them), plus the input projection at the FMA-loop rate, plus the measured time for the
  threads to exchange h each step.
"""

from __future__ import annotations

import importlib
import os
import platform
import subprocess

import numpy as np

import fastlstm

from .cases import Case, flops, weight_bytes_per_step
from .timing import LoadMonitor, settle


def optional(name: str):
    """The module, or None where it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _lscpu() -> dict:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def machine_info(threads: int) -> dict:
    """The CPU model, its cores, the thread count used, fastlstm's backends and the libraries' versions."""
    cpu = _lscpu()
    cores = int(cpu.get("Core(s) per socket", 0)) * int(cpu.get("Socket(s)", 1)) or os.cpu_count() or 1
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "fastlstm": fastlstm.__version__}
    for name in ("torch", "onnxruntime", "onnx", "matplotlib", "tqdm"):
        mod = optional(name)
        versions[name] = getattr(mod, "__version__", "?") if mod else "not installed"
    return {"model_name": cpu.get("Model name", platform.processor() or "unknown"), "cores": cores,
            "threads": threads, "backends": fastlstm.backends(), "versions": versions}


def _isa() -> str:
    return fastlstm.backends()["cpu"]["isa"]


def measure_fma_peak(threads: int) -> dict:
    """fastlstm's FMA-loop rate on `threads` threads (GFLOP/s) and the load while it ran."""
    settle()
    load = LoadMonitor()
    gflops = fastlstm._core.fma_peak_gflops(_isa(), threads, 0.2)
    return {"fma_loop_gflops": gflops, "load": load.stop()}


# The probes of the B = 1 bounds: key -> (measure, samples). A sample is the read bandwidth and the h
# exchange measured back to back; the bound takes the best sample as a whole. Each key is measured after the
# first row that needs it and again at the end of the run: a VM's vCPUs are at times placed on fewer
# physical cores (the bandwidth then drops and the exchange gets cheaper), and a bound from one such
# moment, or one mixing two placements, is not the machine's.
_PROBES: dict = {}


def _b1_key(case: Case, threads: int) -> tuple[int, int, int, int]:
    """(threads, bytes each thread sweeps, threads exchanging h, bytes of h) for a B = 1 case."""
    share = weight_bytes_per_step(case) // threads  # the hidden units, and so the weights, are split evenly
    group = threads // (2 if case.bidirectional else 1)  # the two directions run on half the threads each
    return threads, max(4096, int(share)), group, 4 * case.H


def _b1_samples(key: tuple[int, int, int, int]) -> list[tuple[float, float]]:
    """[(GB/s of `threads` threads each sweeping `share` bytes, us to exchange `nbytes` of h among `group`
    threads, 0 for one)]: fastlstm's probes, the best of three each."""
    if key not in _PROBES:
        threads, share, group, nbytes = key

        def measure():
            settle()
            bw = max(fastlstm._core.read_bandwidth_gbs(_isa(), threads, share, 0.1) for _ in range(3))
            ex = min(fastlstm._core.step_exchange_us(group, nbytes) for _ in range(3)) if group > 1 else 0.0
            return bw, ex
        _PROBES[key] = (measure, [measure()])
    return _PROBES[key][1]


def sample_probes(case: Case, threads: int) -> None:
    """Measures the B = 1 probes this case's bound needs, unless measured already."""
    if case.B == 1:
        _b1_samples(_b1_key(case, threads))


def probe_seconds(cases: list[Case], threads: int) -> float:
    """A forecast of the time the probes take in a run of these cases: each B = 1 key measured twice at
    ~1.3 s a sample, and the FMA loop measured again at the end."""
    keys = {_b1_key(c, threads) for c in cases if c.B == 1}
    return 2 * 1.3 * len(keys) + 0.5


def reset_probes() -> None:
    """Forgets the probes' samples (at the start of a run)."""
    _PROBES.clear()


def remeasure_probes() -> None:
    """Adds a sample to every probe measured so far (at the end of a run)."""
    for measure, samples in _PROBES.values():
        samples.append(measure())


def bound(case: Case, fma_gflops: float, threads: int, lengths_sum: int | None = None) -> dict:
    """{"ms": the least time the measured limits allow for one call, "limit": those limits in words}."""
    total = flops(case, lengths_sum)  # the lengths row: the useful steps only
    if case.B != 1:
        return {"ms": total / fma_gflops / 1e6,
                "limit": f"the FLOPs at the FMA-loop rate {fma_gflops:.0f} GFLOP/s"}
    per_step = weight_bytes_per_step(case)
    steps = 1 if case.kind == "step" else case.T
    projection_ms = 0 if case.kind == "step" else total / 2 / fma_gflops / 1e6  # half the FLOPs
    key = _b1_key(case, threads)

    def ms(sample):
        bw, exchange_us = sample
        return steps * per_step / bw / 1e6 + projection_ms + steps * case.layers * exchange_us / 1e3
    bw, exchange_us = min(_b1_samples(key), key=ms)
    limit = [f"{per_step / 2**10:.0f} KiB of weights read per step at {bw:.0f} GB/s (measured for "
             f"{key[1] / 2**10:.0f} KiB per thread)"]
    if case.kind != "step":
        limit.append(f"the input projection at {fma_gflops:.0f} GFLOP/s")
    if exchange_us:
        limit.append(f"{exchange_us:.2f} us per step to exchange h between threads")
    return {"ms": ms((bw, exchange_us)), "limit": " + ".join(limit)}
