"""The project's CPU performance goals and their scoring: benchmarks/run.py adds them to the table and the
results.json of the installed harness (fastlstm.bench) through its Extra hook. Not part of the package.

A goal is either a time ratio against a baseline ("torch": 3 means torch's time >= 3x fastlstm's; "torch" is
the faster of oneDNN on and off, LSTMCell for the step row) or a share of the row's measured bound ("bound":
0.85 means fastlstm takes at most 1/0.85 of the least time the machine's measured limits allow; at B > 1
that is 85% of the FMA-loop peak, for the lengths row counting the useful steps only).
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
}
# goals whose configurations the harness does not run yet
NOT_MEASURED = ("bf16-b16-h512", "bf16-b64-h512", "bf16-train-b16-h256", "int8-b16-h512", "int8-b1-h512",
                "int8-step-b1-h256", "the GPU table")
SHORT = {"onnxruntime": "ORT"}


def label(key: str, target: float) -> str:
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


def verdicts(row: dict) -> str:
    """The goals cell: "85% of bound: met, 3x torch: NOT met"."""
    words = {None: "n/a", True: "met", False: "NOT met"}
    return ", ".join(f"{g['goal']}: {words[g['met']]}" for g in row.get("goals", []))


class Goals(Extra):
    """The goals as columns, notes, legend lines and plot marks of the harness's report."""

    columns = (("goals", -40, verdicts),)
    marks_label = "goal"

    def __init__(self, goals: dict[str, dict[str, float]] | None = None):
        self.goals = GOALS if goals is None else goals

    def score(self, row: dict) -> None:
        row["goals"] = score(row, self.goals.get(row["name"], {}))

    def notes(self, row: dict) -> list[str]:
        out = []
        for g in row.get("goals", []):
            if g["met"] is False and "bound_allows" in g:
                out.append(f"{row['name']}: {g['goal']} needs {fmt_time(g['needs_ms'])}, "
                           f"{g['needs_pct_bound']:.0f}% of bound (at the bound: {g['bound_allows']:.2f}x)")
        return out

    def legend(self) -> list[str]:
        return ["goals       the project's targets (benchmarks/goals.py): a share of the bound or a ratio",
                "            an unmet ratio's note: the time it needs as % of bound (over 100%: unreachable)"]

    def plot_mark(self, row: dict, baseline: str) -> float | None:
        return self.goals.get(row["name"], {}).get(baseline)

    def finish(self, results: dict) -> None:
        results["goals"] = {"table": self.goals, "not_measured": list(NOT_MEASURED)}
