"""How the benchmark times: every implementation of a row in turn, in a rotated order per repetition, each
starting once no thread pool of the process spins, timed over a block of back-to-back calls; the result is
the median over repetitions. Also the load monitor that flags rows timed on a busy machine, and the run-time
estimate printed before a run."""

from __future__ import annotations

import gc
import math
import os
import time
from pathlib import Path

BLOCK_S = 0.02  # calls shorter than this are timed in blocks of back-to-back calls (the steady state)
SHORT_S = 0.05  # calls shorter than this are also timed once after IDLE_S of idleness
IDLE_S = 0.06  # long enough for every runtime's worker threads to stop spinning and sleep
# After idleness, multi-threaded calls on a VM take up to ~30 ms to get back to speed (vCPUs woken by the
# hypervisor): calls under PRIME_MAX_S are preceded by PRIME_S of untimed calls.
PRIME_S, PRIME_MAX_S = 0.03, 0.3
BUSY_CORES = 0.2  # more CPU than this used by other processes during a row gets a warning
SETTLE_S = 0.01  # what settle() typically waits (an estimate; it waits up to 0.25 s)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def settle(max_wait: float = 0.25, window: float = 0.004) -> None:
    """Waits until no thread of this process burns CPU. The thread pools of torch (OpenMP), onnxruntime,
    numpy's BLAS and fastlstm spin for a while after each call (onnxruntime for ~35 ms); on a few cores a
    spinning pool of the previous implementation slows the next one several-fold."""
    deadline = time.perf_counter() + max_wait
    while time.perf_counter() < deadline:
        c0, w0 = time.process_time(), time.perf_counter()
        time.sleep(window)
        if time.process_time() - c0 < 0.1 * (time.perf_counter() - w0):
            return


def time_alternating(impls: dict, reps: int, warmup: int, on_repetition=None) -> dict[str, dict]:
    """Per implementation: "steady" (s per call, one value per repetition), "calls" per timing and, in rows
    with short calls, "after_idle" (s, the first call after IDLE_S without work). Each repetition runs every
    implementation once, in an order rotated per repetition; the timed part is a block of back-to-back
    calls (>= BLOCK_S) after PRIME_S of untimed ones: the steady state of a loop of calls."""
    names = list(impls)
    fastest = {}  # the steady per-call time: the fastest of at least `warmup` calls and PRIME_S
    for name in names:
        settle()
        t_end, times = time.perf_counter() + PRIME_S, []
        while len(times) < warmup or time.perf_counter() < t_end:
            times.append(timed(impls[name]))
        fastest[name] = min(times)
    out = {n: {"steady": [], "calls": max(1, math.ceil(BLOCK_S / max(fastest[n], 1e-7)))} for n in names}
    short = min(fastest.values()) < SHORT_S  # then every implementation of the row gets an after-idle call
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one implementation's timing would be charged to it alone
    try:
        for r in range(reps):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn, k = impls[name], out[name]["calls"]
                settle()
                if short:
                    time.sleep(IDLE_S)
                    out[name].setdefault("after_idle", []).append(timed(fn))
                if fastest[name] < PRIME_MAX_S:
                    t_end = time.perf_counter() + PRIME_S
                    while time.perf_counter() < t_end:
                        fn()
                t0 = time.perf_counter()
                for _ in range(k):
                    fn()
                out[name]["steady"].append((time.perf_counter() - t0) / k)
            if on_repetition is not None:
                on_repetition()
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


def row_seconds(call_s: list[float], reps: int, warmup: int, check_calls: int) -> float:
    """The wall time time_alternating (plus the output checks) takes for implementations whose calls take
    call_s seconds each: an estimate for the run-time forecast, not a measurement."""
    short = min(call_s, default=1.0) < SHORT_S
    total = 0.0
    for s in call_s:
        prime = max(PRIME_S, s) if s < PRIME_MAX_S else 0  # at least one call
        per_rep = SETTLE_S + (IDLE_S + s if short else 0) + prime + max(BLOCK_S, s)
        total += check_calls * s + SETTLE_S + max(warmup * s, PRIME_S) + reps * per_rep
    return total


class LoadMonitor:
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


def busy(load: dict | None) -> bool:
    """Whether other processes (or the hypervisor) took enough CPU during a row to distort its times."""
    return max((load or {}).values(), default=0) > BUSY_CORES
