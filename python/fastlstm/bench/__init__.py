"""``python -m fastlstm bench``: times fastlstm against torch.nn.LSTM (oneDNN on and off), onnxruntime and
the NumPy reference on this machine's CPU, side by side in one process; and, in a second table, fastlstm's
low precisions (bf16, int8) against fastlstm float32 and torch's and onnxruntime's own low precisions.

Every baseline gets the same weights and inputs and must match fastlstm's outputs before it is timed (in the
low-precision table every side's error against the float64 reference is measured and reported instead). The
implementations alternate within each repetition, each starting once no thread pool spins, and the reported
time is the median over repetitions. Baselines that cannot run are reported as skipped, with the reason.

main(argv, extra) is the command; run() does the measuring and returns the results that report.table()
prints and results.json holds; an Extra adds columns to both.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np

import fastlstm

from . import baselines, lowp, lowp_report, machine, report, timing
from .cases import CASES, LOWP_CASES, Case, LowpCase, flops, select, weight_bytes_per_step
from .report import Extra

__all__ = ["CASES", "LOWP_CASES", "Case", "Extra", "LowpCase", "main", "parser", "run"]

DESCRIPTION = __doc__.split("\n\n")[0].removeprefix("``python -m fastlstm bench``: ")


def parser(prog: str = "python -m fastlstm bench") -> argparse.ArgumentParser:
    configs = "\n".join(f"  {c.name:<15} {c.shape()}" for c in CASES)
    lowp_configs = "\n".join(f"  {c.name:<20} {c.shape()}" for c in LOWP_CASES)
    p = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION[0].upper() + DESCRIPTION[1:],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"configurations (float32, input size = H):\n{configs}\n\n"
               f"low precision (against fastlstm float32 and the peers' low precision; errors against "
               f"float64):\n{lowp_configs}\n\n"
               "baselines: pip install onnx onnxruntime matplotlib tqdm\n"
               "torch (CPU build): pip install torch --index-url https://download.pytorch.org/whl/cpu\n"
               "Keep the machine otherwise idle while it runs.")
    p.add_argument("--quick", action="store_true", help="3 repetitions and less warm-up: a short check")
    p.add_argument("--only", metavar="NAME[,NAME]", help="run only these configurations (listed below)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default ./bench-results-<time>)")
    p.add_argument("--threads", type=int, default=fastlstm.get_num_threads(), metavar="N",
                   help="threads of every library (default: fastlstm's, %(default)s here)")
    p.add_argument("--reps", type=int, metavar="N", help="timed repetitions (default 7; 3 with --quick)")
    p.add_argument("--no-plot", action="store_true", help="do not write ratios.png")
    return p


def run_case(case: Case, threads: int, reps: int, warmup: int, desc: str) -> dict:
    """Checks and times one configuration: the row's times, ratios and GFLOP/s (add_bounds() adds the
    figures that need the run's final measurements of the machine)."""
    check_calls = baselines.STEP_CHECK if case.kind == "step" else 1  # the step row checks many steps
    row: dict = {"name": case.name, "shape": case.shape(), "case": asdict(case), "baselines": {}}
    load = timing.LoadMonitor()  # from the start: a busy machine distorts the reference's estimate too
    progress = report.Progress(reps, desc)
    try:
        try:
            ours, base, lengths = baselines.build(case, threads)
            expect = [ours() for _ in range(check_calls)][-1]
        except Exception as exc:  # a fastlstm failure is a result to report, not a reason to stop
            row["error"] = f"fastlstm: {type(exc).__name__}: {exc}"
            return row
        row["case"]["lengths_sum"] = None if lengths is None else int(np.sum(lengths))
        impls = {"fastlstm": ours}
        for name, impl in base.items():
            entry = row["baselines"][name] = {}
            if isinstance(impl, Exception):
                status = "skipped" if isinstance(impl, baselines.Skip) else "error"
                entry.update(status=status, reason=str(impl) if status == "skipped"
                             else f"setup: {type(impl).__name__}: {impl}")
                continue
            try:
                entry["check"] = baselines.compare(expect, [impl() for _ in range(check_calls)][-1])
            except Exception as exc:
                entry.update(status="error", reason=f"{type(exc).__name__}: {exc}")
                continue
            entry["status"] = "ok"
            impls[name] = impl
        try:
            times = timing.time_alternating(impls, reps, warmup, progress.update)
        except Exception as exc:  # the check passed but a later call failed: still a result, still reported
            row["error"] = f"while timing: {type(exc).__name__}: {exc}"
            return row
    finally:
        progress.close()
    row["load"] = load.stop()
    ms = {name: float(np.median(t["steady"])) * 1e3 for name, t in times.items()}

    def timing_of(name):
        t = times[name]
        extra = {"after_idle_ms": float(np.median(t["after_idle"])) * 1e3} if "after_idle" in t else {}
        return {"ms": ms[name], "times_ms": [v * 1e3 for v in t["steady"]], "calls_per_timing": t["calls"],
                **extra}

    f = row["fastlstm"] = timing_of("fastlstm")
    f["flops"] = flops(case, row["case"]["lengths_sum"])
    f["gflops"] = f["flops"] / f["ms"] / 1e6
    if case.B == 1:
        steps = 1 if case.kind == "step" else case.T
        f["weights_gbps"] = weight_bytes_per_step(case) * steps / f["ms"] / 1e6
    for name, entry in row["baselines"].items():
        if name in ms:
            entry.update(timing_of(name), ratio=ms[name] / ms["fastlstm"])
    # "torch": the faster of oneDNN on and off (LSTMCell for the step row)
    ran = [n for n in baselines.TORCH_MODES if n in ms]
    if ran:
        best = min(ran, key=ms.get)
        row["baselines"]["torch"] = dict(status="ok", ms=ms[best], ratio=ms[best] / ms["fastlstm"],
                                         source=best, check=row["baselines"][best]["check"])
    elif "torch" not in row["baselines"]:
        row["baselines"]["torch"] = dict(status="error", reason="no torch mode ran (see the torch-* entries)")
    return row


def add_bounds(row: dict, case: Case, peak: dict, threads: int) -> None:
    """The row's share of the FMA-loop rate and its bound, from the final measurements of the machine."""
    gf = peak.get("fma_loop_gflops")
    if "error" in row or not gf:
        return
    f = row["fastlstm"]
    f["pct_fma_loop_peak"] = 100 * f["gflops"] / gf
    least = machine.bound(case, gf, threads, row["case"]["lengths_sum"])
    f["bound_ms"], f["bound_limit"] = least["ms"], least["limit"]
    f["pct_bound"] = 100 * least["ms"] / f["ms"]


def run(args: argparse.Namespace, extra: Extra | None = None) -> dict:
    """Measures the machine, checks and times every selected configuration (printing each row as it
    finishes), measures the machine again, and returns the results (rows with bounds and extra's scores)."""
    extra = extra or Extra()
    cases = select(args.only)
    lowp_cases = [c for c in cases if isinstance(c, LowpCase)]
    cases = [c for c in cases if not isinstance(c, LowpCase)]
    reps = args.reps or (3 if args.quick else 7)
    warmup = 1 if args.quick else 2
    t_start = time.perf_counter()
    fastlstm.set_num_threads(args.threads)
    machine.reset_probes()
    info = machine.machine_info(args.threads)
    peak = machine.measure_fma_peak(args.threads)
    gf_start = peak["fma_loop_gflops"]
    forecast = (machine.probe_seconds(cases, args.threads) + baselines.forecast(cases, gf_start, reps, warmup)
                + sum(lowp.expected_seconds(c, gf_start, reps, warmup) for c in lowp_cases))
    total = len(cases) + len(lowp_cases)
    print(f"fastlstm {fastlstm.__version__} bench: {info['model_name']}, {info['cores']} cores, "
          f"{args.threads} threads, kernels {info['backends']['cpu']['isa']}", flush=True)
    print(f"{total} configuration{'s' * (total > 1)} x {reps} repetitions, about "
          f"{report.fmt_seconds(forecast)} (an estimate; keep the machine otherwise idle)", flush=True)
    print()
    if cases:
        report.write(report.header(report.COLUMNS + [("progress", 14, None)]))

    def progress(i):
        return f"{i + 1}/{total}, {report.fmt_seconds(time.perf_counter() - t_start)}"

    rows, lowp_rows = [], []
    for i, case in enumerate(cases):
        row = run_case(case, args.threads, reps, warmup, f"[{i + 1}/{total}] {case.name}")
        machine.sample_probes(case, args.threads)
        rows.append(row)
        done = progress(i)
        report.write(report.row_line(row, report.COLUMNS + [("progress", 14, lambda r, d=done: d)]))
    if lowp_cases:
        report.write(("\n" if cases else "") + report.header(lowp_report.COLUMNS + [("progress", 14, None)]))
    for i, case in enumerate(lowp_cases, start=len(cases)):
        row = lowp.run_case(case, args.threads, reps, warmup, f"[{i + 1}/{total}] {case.name}")
        lowp_rows.append(row)
        done = progress(i)
        column = ("progress", 14, lambda r, s, d=done: d if s == r["ours"] else "")
        for line in lowp_report.row_lines(row, lowp_report.COLUMNS + [column], f"  ({done})"):
            report.write(line)
    # a busy moment at the start would understate the limits: measure again, keep the better
    again = machine.measure_fma_peak(args.threads)
    machine.remeasure_probes()
    peak["fma_loop_gflops_start_end"] = [gf_start, again["fma_loop_gflops"]]
    peak["fma_loop_gflops"] = max(peak["fma_loop_gflops_start_end"])
    peak["load_end"] = again["load"]
    for row, case in zip(rows, cases, strict=True):
        add_bounds(row, case, peak, args.threads)
        if "error" not in row:
            extra.score(row)
    for row in lowp_rows:
        extra.score(row)
    cuda = info["backends"].get("cuda")
    return {"machine": info, "peak": peak,
            "args": {**{k: str(v) for k, v in vars(args).items()}, "reps": reps},
            "timing": "ms per call, median over repetitions; the implementations alternate within each "
                      "repetition (order rotated), each starting once no thread pool spins; calls under "
                      f"{timing.BLOCK_S * 1e3:g} ms are timed as a block of back-to-back calls; calls under "
                      f"{timing.SHORT_S * 1e3:g} ms are also timed once after {timing.IDLE_S * 1e3:g} ms "
                      "idle (after_idle_ms); the step row's call is one step",
            "gpu": "not yet implemented" if cuda and cuda.get("devices")
                   else "no CUDA device" if cuda else "fastlstm built without CUDA",
            "estimated_s": forecast, "elapsed_s": time.perf_counter() - t_start, "rows": rows,
            "low_precision_rows": lowp_rows,
            "low_precision": "each side's error: max abs and RMS of its outputs (y; dx for training; h of each "
                             f"of {baselines.STEP_CHECK} steps for the step row) minus the float64 reference's "
                             "(fastlstm.reference) on the same weights and inputs; ratio: the side's time / "
                             "fastlstm's time in the row's precision"}


def main(argv: list[str] | None = None, extra: Extra | None = None, prog: str | None = None) -> int:
    """The command: parses argv, runs, prints the final table and writes results.json and ratios.png."""
    p = parser(prog or "python -m fastlstm bench")
    args = p.parse_args(argv)
    if args.threads < 1 or (args.reps is not None and args.reps < 1):
        p.error("--threads and --reps must be >= 1")
    try:
        select(args.only)
    except ValueError as exc:
        p.error(f"--only: {exc}")
    out = args.out or Path(f"bench-results-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    faulthandler.enable()  # four native thread pools in one process: a crash should leave a traceback
    with warnings.catch_warnings():
        # torch warns on every mkldnn.flags() that TF32 is for Intel GPUs only; it changes nothing on the CPU
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        results = run(args, extra)
    extra = extra or Extra()
    info = results["machine"]
    title = f"fastlstm vs baselines: {info['model_name']}, {args.threads} threads"
    results["plot"] = ("skipped: --no-plot" if args.no_plot
                       else report.plot(results["rows"], out / "ratios.png", title, extra,
                                        results["low_precision_rows"]))
    extra.finish(results)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    print()
    print(report.table(results, extra))
    print()
    if results["gpu"] == "not yet implemented":
        print("GPU: not benchmarked yet (CPU only)")
    if results["plot"].startswith("skipped"):
        print(f"ratios.png {results['plot']}")
    print(f"done in {report.fmt_seconds(results['elapsed_s'])}; results: {out.resolve()}")
    return 0

