"""What the benchmark shows: the rows as they finish, the final table with its notes and legend, the plot,
the progress of a run; and Extra, the hook through which a caller adds its own columns."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .machine import optional
from .timing import IDLE_S, busy

BASELINES = {"torch": "torch", "onnxruntime": "onnxruntime", "reference": "NumPy ref"}  # key -> column
SHORT = {"torch": "torch", "onnxruntime": "onnxrt", "reference": "ref"}


class Extra:
    """What a caller adds to the final tables, their notes and results.json; this base adds nothing.
    (The source repository's benchmarks/run.py scores the rows against the project's targets this way.)
    score, notes and plot_mark get the rows of both tables: a low-precision row has "table": "low precision"
    and "sides" (fastlstm's low precision, fastlstm float32, the peers) where a float32 row has "baselines"."""

    columns: tuple = ()  # (header, width, fn(row) -> str), after the final float32 table's own columns
    side_columns: tuple = ()  # (header, width, fn(row, side) -> str): the same for the low-precision table
    marks_label = "mark"  # the plot's legend entry for plot_mark()

    def score(self, row: dict) -> None:
        """Adds entries to a finished row (after its bound is known); they go into results.json."""

    def notes(self, row: dict) -> list[str]:
        return []

    def legend(self) -> list[str]:
        return []

    def plot_mark(self, row: dict, baseline: str) -> float | None:
        """A ratio to mark on the row's bar of this baseline (or low-precision side), or None."""
        return None

    def finish(self, results: dict) -> None:
        """Adds entries to the whole results (before results.json is written)."""


def fmt_time(ms: float) -> str:
    return f"{ms * 1e3:.1f} us" if ms < 1 else f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_seconds(s: float) -> str:
    s = round(s)
    return f"{s} s" if s < 90 else f"{s // 60} min {s % 60:02d} s"


def _time(name):
    def cell(row):
        e = row["baselines"].get(name, {})
        return fmt_time(e["ms"]) if e.get("status") == "ok" else e.get("status", "-")
    return cell


def _ratio(name):
    def cell(row):
        e = row["baselines"].get(name, {})
        if e.get("status") != "ok":
            return "-"
        return f"{e['ratio']:.2f}x" if e["check"]["passed"] else "MISMATCH"
    return cell


def _pct_bound(row):
    f = row["fastlstm"]
    return f"{f['pct_bound']:.0f}%" if "pct_bound" in f else "-"


COLUMNS = [("config", -14, lambda r: r["name"]), ("fastlstm", 10, lambda r: fmt_time(r["fastlstm"]["ms"]))]
for _key, _head in BASELINES.items():
    COLUMNS += [(_head, 11, _time(_key)), (f"vs {SHORT[_key]}", 9, _ratio(_key))]
COLUMNS += [("GFLOP/s", 8, lambda r: f"{r['fastlstm']['gflops']:.1f}")]
FINAL_COLUMNS = COLUMNS + [("% of bound", 10, _pct_bound)]


def _line(cells: list[str], columns) -> str:
    widths = [w for _, w, _ in columns]
    return "  ".join(f"{c:<{-w}}" if w < 0 else f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))


def header(columns) -> str:
    return _line([h for h, _, _ in columns], columns).rstrip()


def row_line(row: dict, columns) -> str:
    if "error" in row:
        return f"{row['name']:<14}  ERROR: {row['error']}"
    flag = "  [busy]" if busy(row.get("load")) else ""
    return _line([fn(row) for _, _, fn in columns], columns).rstrip() + flag


def notes(row: dict, extra: Extra) -> list[str]:
    name, out = row["name"], []
    for base, e in row["baselines"].items():
        if e.get("status") in ("skipped", "error"):
            if base != "torch" or not any(k.startswith("torch-") for k in row["baselines"]):
                out.append(f"{name}: {base} {e['status']}: {e['reason']}")
        elif base != "torch" and not e["check"]["passed"]:
            diffs = {k: f"{v:.1e}" for k, v in e["check"]["max_abs_diff"].items()}
            missing = f", not compared: {e['check']['not_compared']}" if e["check"]["not_compared"] else ""
            out.append(f"{name}: {base}'s outputs differ from fastlstm's: max|diff| {diffs}{missing}")
    if "error" in row:
        return out + extra.notes(row)
    modes = [f"oneDNN {'on' if n == 'torch-onednn' else 'off'} {fmt_time(row['baselines'][n]['ms'])}"
             for n in ("torch-onednn", "torch-native") if "ms" in row["baselines"].get(n, {})]
    if len(modes) == 2:
        out.append(f"{name}: torch " + ", ".join(modes))
    idle = [f"{n} {fmt_time(e['after_idle_ms'])}" for n, e in [("fastlstm", row["fastlstm"]),
            *row["baselines"].items()] if "after_idle_ms" in e and n != "torch"]
    if idle:
        out.append(f"{name}: first call after {IDLE_S * 1e3:.0f} ms idle: " + ", ".join(idle))
    if busy(row.get("load")):
        load = row["load"]
        out.append(f"{name}: WARNING: other processes used {load['other_processes_cores']:.1f} cores (the "
                   f"hypervisor stole {load['steal_cores']:.1f}) while it ran: its times are unreliable")
    f = row["fastlstm"]
    if "bound_ms" in f:
        reads = f"; fastlstm reads the weights at {f['weights_gbps']:.0f} GB/s" if "weights_gbps" in f else ""
        out.append(f"{name}: bound {fmt_time(f['bound_ms'])} = {f['bound_limit']}{reads}")
    return out + extra.notes(row)


def legend(results: dict, extra: Extra) -> list[str]:
    from . import lowp_report

    reps = results["args"]["reps"]
    gf = results["peak"].get("fma_loop_gflops")
    lowp = results.get("low_precision_rows")
    lines = [f"times       per call, median of {reps} repetitions (the step rows: one step from Python)"]
    if results["rows"] or not lowp:
        lines += [
            "vs X        X's time / fastlstm's time: above 1, fastlstm is faster (MISMATCH: outputs differ)",
            "torch       torch.nn.LSTM, the faster of oneDNN on and off (LSTMCell for step-b1-h256, a packed "
            "sequence for lengths)",
            "NumPy ref   fastlstm.reference, the same math in NumPy",
            "GFLOP/s     fastlstm's FLOPs per second (training: 3x the forward's)",
        ]
        if gf:
            lines += ["% of bound  the least time this machine's measured limits allow / fastlstm's time "
                      "(100%: at the limit)",
                      f"            the limits: an FMA loop's {gf:.0f} GFLOP/s; at B = 1 the cache bandwidth "
                      "(see the notes)"]
    return lines + (lowp_report.LEGEND if lowp else []) + extra.legend()


def table(results: dict, extra: Extra | None = None) -> str:
    """The final tables: every float32 row, with the columns that need the run's final measurements, then
    its notes; the low-precision rows and their notes; the legend."""
    from . import lowp_report

    extra = extra or Extra()
    lines, lowp = [], results.get("low_precision_rows", [])
    if results["rows"] or not lowp:
        columns = FINAL_COLUMNS + list(extra.columns)
        head = header(columns)
        lines = [head, "-" * len(head)] + [row_line(r, columns) for r in results["rows"]]
        all_notes = [n for r in results["rows"] for n in notes(r, extra)]
        lines += [""] + all_notes if all_notes else []
    if lowp:
        lines += ([""] if lines else []) + lowp_report.table(lowp, extra)
    return "\n".join(lines + [""] + legend(results, extra))


def plot(rows: list[dict], path: Path, title: str, extra: Extra | None = None, lowp_rows: list[dict] = ()) -> str:
    """ratios.png: per row a bar per baseline, its time over fastlstm's (log scale), and a second panel of
    the low-precision rows; the path, or why not."""
    mpl = optional("matplotlib")
    if mpl is None:
        return "skipped: matplotlib is not installed (pip install matplotlib)"
    from . import lowp_report

    extra = extra or Extra()
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "error" not in r]
    lowp = list(lowp_rows)
    widths = [max(6.0, 1.2 * len(rows) + 2)] * bool(rows or not lowp) + [max(6.0, 1.2 * len(lowp) + 2)] * bool(lowp)
    fig, axes = plt.subplots(len(widths), 1, figsize=(max(widths), 4.5 * len(widths)), squeeze=False)
    if lowp:  # the second panel, below the float32 one
        lowp_report.plot_panel(axes[-1][0], lowp, extra)
        if len(widths) == 1:
            fig.suptitle(title, fontsize="small")
            return _save(fig, plt, path)
    ax = axes[0][0]
    width = 0.8 / len(BASELINES)
    for j, (name, label) in enumerate(BASELINES.items()):
        xs = [i + (j - (len(BASELINES) - 1) / 2) * width for i in range(len(rows))]
        ratios = [r["baselines"].get(name, {}).get("ratio", np.nan) for r in rows]
        ax.bar(xs, ratios, width, label=label)
        for x, r, v in zip(xs, rows, ratios, strict=True):  # say why a bar is missing
            if np.isnan(v):
                ax.text(x, 1.0, r["baselines"].get(name, {}).get("status", "n/a"), rotation=90, ha="center",
                        va="bottom", fontsize="x-small", color="gray")
        marks = [extra.plot_mark(r, name) for r in rows]
        if any(m is not None for m in marks):
            ax.scatter(xs, [np.nan if m is None else m for m in marks], marker="_", s=300, linewidths=2,
                       color="black", zorder=3, label=extra.marks_label if j == 0 else None)
    ax.axhline(1.0, color="gray", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("baseline's time / fastlstm's time\n(above 1: fastlstm is faster)")
    ax.legend(fontsize="small")
    fig.suptitle(title, fontsize="small")
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


class Progress:
    """The repetitions of the running row, on a terminal only (a log gets the finished rows): a tqdm bar
    where tqdm is installed, else one line rewritten in place."""

    def __init__(self, total: int, desc: str):
        self.tty = sys.stderr.isatty()
        tqdm = optional("tqdm") if self.tty else None
        self.bar = tqdm.tqdm(total=total, desc=desc, leave=False) if tqdm else None
        self.desc, self.total, self.n = desc, total, 0
        self.update(0)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.tty:
            sys.stderr.write(f"\r{self.desc}: repetition {self.n}/{self.total}\033[K")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def write(msg: str) -> None:
    """print(), but under a live tqdm bar when there is one."""
    tqdm = optional("tqdm") if sys.stderr.isatty() else None
    (tqdm.tqdm.write if tqdm else print)(msg)
    sys.stdout.flush()
