"""What the benchmark shows of the low-precision table: one line per side (fastlstm in the row's precision
first), each with its time, its ratio to fastlstm's low-precision time and its error against the float64
reference; the notes, the legend and the plot's panel."""

from __future__ import annotations

from .report import Extra, _line, fmt_time, header
from .timing import IDLE_S, busy

WIDTH = 120  # a row's skip or error reason longer than fits on its line goes to the notes
PLOT_GROUPS = {  # side -> the plot's bar (and legend entry) it is drawn as
    "fastlstm-fp32": "fastlstm fp32", "torch-bf16": "torch low precision", "torch-int8": "torch low precision",
    "torch-int8-lstmcell": "torch low precision", "onnxruntime-int8": "onnxruntime int8",
    "torch-lstmcell": "torch fp32 (LSTMCell)", "openvino-bf16": "OpenVINO bf16",
}


def _side(row: dict, side: str) -> dict:
    return row["sides"].get(side, {})


def _time(row, side):
    e = _side(row, side)
    return fmt_time(e["ms"]) if "ms" in e else e.get("status", "-")


def _ratio(row, side):
    e = _side(row, side)
    return f"{e['ratio']:.2f}x" if "ratio" in e else "-"


def _err(key):
    def cell(row, side):
        e = _side(row, side).get("error")
        return f"{e[key]:.1e}" if e else "-"
    return cell


COLUMNS = [("low precision", -19, lambda r, s: r["name"] if s == r["ours"] else ""),
           ("side", -19, lambda r, s: _side(r, s).get("label", s)), ("time", 9, _time), ("ratio", 7, _ratio),
           ("max err", 8, _err("max_abs")), ("RMS err", 8, _err("rms"))]


def row_lines(row: dict, columns, not_run_tail: str = "") -> list[str]:
    """The row's lines: one per side, or one saying why the row did not run (ending with not_run_tail)."""
    if row.get("status") != "ok":
        line = f"{row['name']:<19}  {row.get('status', 'error')}: {row.get('reason', '')}"
        if len(line) > WIDTH:
            line = f"{row['name']:<19}  {row.get('status', 'error')} (see the notes)"
        return [line + not_run_tail]
    lines = [_line([fn(row, side) for _, _, fn in columns], columns).rstrip() for side in row["sides"]]
    lines[0] += "  [busy]" if busy(row.get("load")) else ""
    return lines


def notes(row: dict, extra: Extra) -> list[str]:
    name, out = row["name"], []
    if row.get("status") != "ok":
        if len(f"{name:<19}  {row.get('status')}: {row.get('reason', '')}") > WIDTH:
            out.append(f"{name}: {row.get('status')}: {row.get('reason', '')}")
        return out + extra.notes(row)
    for e in row["sides"].values():
        if e.get("status") in ("skipped", "error"):
            out.append(f"{name}: {e['label']} {e['status']}: {e['reason']}")
    idle = [f"{e['label']} {fmt_time(e['after_idle_ms'])}" for e in row["sides"].values() if "after_idle_ms" in e]
    if idle:
        out.append(f"{name}: first call after {IDLE_S * 1e3:.0f} ms idle: " + ", ".join(idle))
    if row.get("native") is False:
        out.append(f"{name}: fastlstm {row['precision']} runs on its AVX2 emulation here (this CPU lacks the "
                   "precision's dot-product instructions)")
    if busy(row.get("load")):
        load = row["load"]
        out.append(f"{name}: WARNING: other processes used {load['other_processes_cores']:.1f} cores (the "
                   f"hypervisor stole {load['steal_cores']:.1f}) while it ran: its times are unreliable")
    return out + extra.notes(row)


def table(rows: list[dict], extra: Extra) -> list[str]:
    """The final low-precision table and its notes, as lines."""
    columns = COLUMNS + list(extra.side_columns)
    head = header(columns)
    lines = [head, "-" * len(head)] + [line for r in rows for line in row_lines(r, columns)]
    all_notes = [n for r in rows for n in notes(r, extra)]
    return lines + ([""] + all_notes if all_notes else [])


LEGEND = [
    "low precision: a row's first line is fastlstm in the row's precision (natively with AVX512_BF16 / AVX512_VNNI,",
    "            else on its AVX2 emulation: the notes say which)",
    "ratio       the side's time / fastlstm's low-precision time: above 1, fastlstm's low precision is faster",
    "max err     the side's largest |output - float64 reference| (fastlstm.reference, same weights and inputs),",
    "            where the output is y (inference), dx (training), h after each of 100 steps (the step row)",
    "RMS err     the root mean square of the same differences",
    "peers       torch bf16 autocast: torch.nn.LSTM under torch.autocast(\"cpu\", dtype=torch.bfloat16) in",
    "            torch.no_grad() (training: the autocast forward, then backward); torch bf16 (ATen): the same with",
    "            oneDNN off, on CPUs where oneDNN refuses its bf16 LSTM (no AVX512); torch dynamic int8:",
    "            torch.ao.quantization.quantize_dynamic; onnxruntime int8: onnxruntime.quantization.quantize_dynamic",
    "            (DynamicQuantizeLSTM); torch LSTMCell fp32: torch.nn.LSTMCell, one step per call; OpenVINO bf16:",
    "            the float32 ONNX model compiled with INFERENCE_PRECISION_HINT bf16 (optional: pip install openvino)",
]


def plot_panel(ax, rows: list[dict], extra: Extra) -> None:
    """Per row a bar per side other than fastlstm's low precision: its time over that time (a row that did
    not run: its status)."""
    import numpy as np

    groups = list(dict.fromkeys(PLOT_GROUPS[s] for r in rows for s in r["sides"] if s in PLOT_GROUPS))
    width, marked = 0.8 / max(1, len(groups)), False
    for j, group in enumerate(groups):
        xs = [i + (j - (len(groups) - 1) / 2) * width for i in range(len(rows))]
        sides = [next((s for s in r["sides"] if PLOT_GROUPS.get(s) == group), None) for r in rows]
        ratios = [_side(r, s).get("ratio", np.nan) if s else np.nan for r, s in zip(rows, sides, strict=True)]
        ax.bar(xs, ratios, width, label=group)
        for x, r, s, v in zip(xs, rows, sides, ratios, strict=True):  # say why a bar is missing
            if s and np.isnan(v):
                ax.text(x, 1.0, _side(r, s).get("status", "n/a"), rotation=90, ha="center", va="bottom",
                        fontsize="x-small", color="gray")
        marks = [extra.plot_mark(r, s) if s else None for r, s in zip(rows, sides, strict=True)]
        if any(m is not None for m in marks):
            ax.scatter(xs, [np.nan if m is None else m for m in marks], marker="_", s=300, linewidths=2,
                       color="black", zorder=3, label=None if marked else extra.marks_label)
            marked = True
    for i, r in enumerate(rows):  # a row that did not run: say so where its bars would be
        if r.get("status") != "ok":
            ax.text(i, 1.0, r.get("status", "error"), rotation=90, ha="center", va="bottom", fontsize="x-small",
                    color="gray")
    ax.axhline(1.0, color="gray", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("side's time / fastlstm's low-precision time")
    ax.set_title("low precision", fontsize="small")
    ax.legend(fontsize="x-small")
