"""The project's CPU performance goals and their scoring: benchmarks/run.py adds them to the table and the
results.json of the installed harness (fastlstm.bench) through its Extra hook. Not part of the package.

A goal is either a time ratio against a baseline ("torch": 3 means torch's time >= 3x fastlstm's; "torch" is
the faster of oneDNN on and off, LSTMCell for the step row) or a share of the row's measured bound ("bound":
0.85 means fastlstm takes at most 1/0.85 of the least time the machine's measured limits allow; at B > 1
that is 85% of the FMA-loop peak, for the lengths row counting the useful steps only).

A low-precision row's goals compare fastlstm in the row's precision with one of the row's sides: a side's name
("torch-bf16": 1.5 means torch bf16 autocast's time >= 1.5x fastlstm's; "fastlstm-fp32": fastlstm float32),
or "peers": the faster of the row's peers (int8: torch's dynamic int8 and onnxruntime's int8). An "error:"
goal compares errors against the float64 reference: "error:torch-bf16": 1 means fastlstm's RMS error <= torch
bf16's ("error:peers": the peer with the lower RMS error). The RMS, not the max: over thousands of rounding
errors the largest moves by +-15% from one set of weights to another, the RMS by a few percent.
"""

from __future__ import annotations

from fastlstm.bench import Extra
from fastlstm.bench.report import fmt_time

GOALS: dict[str, dict[str, float]] = {
    "b1-h128": {"bound": 0.85, "torch": 3, "onnxruntime": 2},
    "b1-h512": {"bound": 0.85},
    "b16-h256": {"bound": 0.85},
    "b64-h512": {"bound": 0.85},
    "b256-h1024": {"bound": 0.85},
    "step-b1-h256": {"torch": 5},
    "lengths": {"bound": 0.85},
    "bi2": {"bound": 0.85},
    "train-b16-h256": {"bound": 0.85},
    "train-b64-h512": {"bound": 0.85},
    "train-bi2": {"bound": 0.85},
    # the low-precision table
    "bf16-b16-h512": {"torch-bf16": 1.5, "fastlstm-fp32": 1.8, "error:torch-bf16": 1},
    "bf16-b64-h512": {"torch-bf16": 1.5, "fastlstm-fp32": 1.8, "error:torch-bf16": 1},
    "bf16-train-b16-h256": {"torch-bf16": 1.5},
    "int8-b16-h512": {"peers": 2, "error:peers": 1},
    "int8-b1-h512": {"peers": 2, "fastlstm-fp32": 3},
    "int8-step-b1-h256": {"torch-lstmcell": 10},
}
# goals whose configurations the harness does not run yet
NOT_MEASURED = ("the GPU table",)
SHORT = {"onnxruntime": "ORT", "torch-bf16": "torch bf16", "fastlstm-fp32": "fastlstm fp32", "peers": "faster peer",
         "torch-lstmcell": "torch LSTMCell fp32", "torch-int8": "torch int8", "onnxruntime-int8": "ORT int8"}


def label(key: str, target: float) -> str:
    if key.startswith("error:"):
        name = "better peer" if key == "error:peers" else SHORT.get(key[6:], key[6:])
        return f"error <= {name}'s" if target == 1 else f"error <= {1 / target:g}x {name}'s"
    return f"{target:.0%} of bound" if key == "bound" else f"{target:g}x {SHORT.get(key, key)}"


def score(row: dict, goals: dict[str, float]) -> list[dict]:
    """Each goal of a timed row (one with fastlstm's bound: see fastlstm.bench.add_bounds): its value, met
    (None where the baseline did not run) and, where the bound is known, what it asks of fastlstm:
    needs_ms (the time that meets it), needs_pct_bound (the "% of bound" that time is: above 100, nothing
    can meet it on this machine) and, for a ratio goal, bound_allows (the ratio fastlstm would have at the
    bound)."""
    f = row["fastlstm"]
    bound_ms = f.get("bound_ms")
    out = []
    for key, target in goals.items():
        goal = {"goal": label(key, target), "baseline": key, "target": target}
        if key == "bound":
            value = f["pct_bound"] / 100 if "pct_bound" in f else None
            if bound_ms:
                goal.update(needs_ms=bound_ms / target, needs_pct_bound=100 * target)
        else:
            base = row["baselines"].get(key, {})
            value = base.get("ratio") if base.get("status") == "ok" else None
            if value is not None and bound_ms:
                goal.update(needs_ms=base["ms"] / target, bound_allows=base["ms"] / bound_ms,
                            needs_pct_bound=100 * target * bound_ms / base["ms"])
        goal.update(value=value, met=None if value is None else value >= target)
        out.append(goal)
    return out


def score_lowp(row: dict, goals: dict[str, float]) -> list[dict]:
    """Each goal of a low-precision row: the side it compares with ("side": the faster or better peer for
    "peers"; None where none ran), its value (that side's time / fastlstm's, or its RMS error / fastlstm's),
    met (None where the row or the side did not run) and, for a time ratio, needs_ms (the time that meets it)."""
    sides, out = row.get("sides", {}), []
    ours = sides.get(row.get("ours"), {})
    for key, target in goals.items():
        metric, _, ref = key.rpartition(":")
        ran = [s for s in (row.get("peers", []) if ref == "peers" else [ref]) if sides.get(s, {}).get("status") == "ok"]
        goal = {"goal": label(key, target), "baseline": key, "target": target, "metric": metric or "time",
                "side": None if ref == "peers" else ref, "value": None}
        if row.get("status") == "ok" and ran:
            if metric == "error":
                side = goal["side"] = min(ran, key=lambda s: sides[s]["error"]["rms"])
                theirs, mine = sides[side]["error"], ours["error"]
                goal.update(value=theirs["rms"] / mine["rms"] if mine["rms"] else float("inf"),
                            rms=[mine["rms"], theirs["rms"]], max_abs=[mine["max_abs"], theirs["max_abs"]])
            else:
                side = goal["side"] = min(ran, key=lambda s: sides[s]["ms"])
                goal.update(value=sides[side]["ms"] / ours["ms"], needs_ms=sides[side]["ms"] / target)
        goal["met"] = None if goal["value"] is None else goal["value"] >= target
        out.append(goal)
    return out


WORDS = {None: "n/a", True: "met", False: "NOT met"}


def verdicts(row: dict) -> str:
    """The goals cell: "85% of bound: met, 3x torch: NOT met"."""
    return ", ".join(f"{g['goal']}: {WORDS[g['met']]}" for g in row.get("goals", []))


def side_verdicts(row: dict, side: str) -> str:
    """The goals cell of a low-precision row's side line: the goals compared with that side (">=1.5x: met",
    "error no worse: NOT met"); fastlstm's own line has those whose side did not run ("2x faster peer: n/a")."""
    cells = []
    for g in row.get("goals", []):
        if g["side"] == side:
            what = "error no worse" if g["metric"] == "error" else f">={g['target']:g}x"
        elif g["side"] is None and side == row["ours"]:
            what = g["goal"]
        else:
            continue
        cells.append(f"{what}: {WORDS[g['met']]}")
    return ", ".join(cells)


class Goals(Extra):
    """The goals as columns, notes, legend lines and plot marks of the harness's report."""

    columns = (("goals", -40, verdicts),)
    side_columns = (("goals", -34, side_verdicts),)
    marks_label = "goal"

    def __init__(self, goals: dict[str, dict[str, float]] | None = None):
        self.goals = GOALS if goals is None else goals
        self.tables: set[str] = set()

    def score(self, row: dict) -> None:
        table = row.get("table", "float32")
        self.tables.add(table)
        row["goals"] = (score_lowp if table == "low precision" else score)(row, self.goals.get(row["name"], {}))

    def notes(self, row: dict) -> list[str]:
        out = []
        for g in row.get("goals", []):
            if g["met"] is False and "bound_allows" in g:
                out.append(f"{row['name']}: {g['goal']} needs {fmt_time(g['needs_ms'])}, "
                           f"{g['needs_pct_bound']:.0f}% of bound (at the bound: {g['bound_allows']:.2f}x)")
            elif g["met"] is False and row.get("table") == "low precision":
                ours, theirs = row["sides"][row["ours"]], row["sides"][g["side"]]
                if g["metric"] == "error":
                    out.append(f"{row['name']}: {g['goal']}: RMS error {ours['error']['rms']:.2e} against "
                               f"{theirs['label']}'s {theirs['error']['rms']:.2e}")
                else:
                    out.append(f"{row['name']}: {g['goal']} needs {fmt_time(g['needs_ms'])} ({ours['label']} "
                               f"takes {fmt_time(ours['ms'])}, {theirs['label']} {fmt_time(theirs['ms'])})")
        return out

    def legend(self) -> list[str]:
        lines = []
        if self.tables != {"low precision"}:
            lines += ["goals       the project's targets (benchmarks/goals.py): a share of the bound or a ratio",
                      "            an unmet ratio's note: the time it needs as % of bound (over 100%: unreachable)"]
        if "low precision" in self.tables:
            lines += ["goals       low precision: on the line of the side compared with; >=Nx: its time / "
                      "fastlstm's; error no worse:",
                      "            fastlstm's RMS error <= its; int8 rows compare with the faster (for the error: "
                      "the more accurate) peer"]
        return lines

    def plot_mark(self, row: dict, baseline: str) -> float | None:
        if row.get("table") == "low precision":
            return next((g["target"] for g in row.get("goals", [])
                         if g["side"] == baseline and g["metric"] == "time"), None)
        return self.goals.get(row["name"], {}).get(baseline)

    def finish(self, results: dict) -> None:
        results["goals"] = {"table": self.goals, "not_measured": list(NOT_MEASURED)}
