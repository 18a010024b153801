"""The benchmark: the bound and its probes, the project's goal scoring (benchmarks/goals.py, not part of the
package) on synthetic rows with known times, and the command itself in a short subprocess run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fastlstm
from fastlstm import bench
from fastlstm.bench import cases, machine, report

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def goals(monkeypatch):
    """benchmarks/goals.py, imported from the repository's benchmarks/ folder."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import goals

    return goals


def _row(case, ours_ms, torch_ms, peak=200.0):
    """A timed row as bench.run_case() makes it, with its bound added (FMA-loop peak `peak` GFLOP/s)."""
    ok = {"status": "ok", "check": {"passed": True, "max_abs_diff": {}, "not_compared": []}}
    f = {"ms": ours_ms, "gflops": cases.flops(case) / ours_ms / 1e6}
    row = {"name": case.name, "case": {"lengths_sum": None}, "fastlstm": f,
           "baselines": {"torch": {**ok, "ms": torch_ms, "ratio": torch_ms / ours_ms,
                                   "source": "torch-onednn"}}}
    bench.add_bounds(row, case, {"fma_loop_gflops": peak}, threads=2)
    return row


def _results(rows):
    return {"rows": rows, "args": {"reps": 7}, "peak": {"fma_loop_gflops": 200.0}}


def test_the_bound_at_b16_is_the_flops_at_the_fma_loop_rate():
    case = cases.Case("b16-h256", 100, 16, 256)
    bound_ms = cases.flops(case) / 200e9 * 1e3
    row = _row(case, ours_ms=1.25 * bound_ms, torch_ms=1.5 * bound_ms)
    f = row["fastlstm"]
    assert f["bound_ms"] == pytest.approx(bound_ms)
    assert f["pct_bound"] == pytest.approx(80)
    assert f["pct_fma_loop_peak"] == pytest.approx(80)
    text = report.table(_results([row]))
    assert " 80%" in text and "1.20x" in text  # % of bound; torch's time / fastlstm's
    assert "goal" not in text  # the package's own table has no goals


def test_ratio_goal_states_what_it_asks_of_the_bound(goals):
    case = cases.Case("b16-h256", 100, 16, 256)
    bound_ms = cases.flops(case) / 200e9 * 1e3
    row = _row(case, ours_ms=1.2 * bound_ms, torch_ms=1.3 * bound_ms)
    extra = goals.Goals({"b16-h256": {"torch": 1.25, "bound": 0.8}})
    extra.score(row)

    ratio, share = row["goals"]
    assert ratio["met"] is False and ratio["value"] == pytest.approx(1.3 / 1.2)
    assert ratio["needs_ms"] == pytest.approx(1.3 * bound_ms / 1.25)
    assert ratio["bound_allows"] == pytest.approx(1.3)
    assert ratio["needs_pct_bound"] == pytest.approx(100 * 1.25 / 1.3)
    assert share["met"] is True and share["value"] == pytest.approx(1 / 1.2)

    text = report.table(_results([row]), extra)
    assert "1.25x torch: NOT met, 80% of bound: met" in text
    assert "1.25x torch needs" in text and "96% of bound (at the bound: 1.30x)" in text


def test_a_met_goal_gets_no_note_and_a_missing_baseline_no_verdict(goals):
    case = cases.Case("b16-h256", 100, 16, 256)
    bound_ms = cases.flops(case) / 200e9 * 1e3
    row = _row(case, ours_ms=1.1 * bound_ms, torch_ms=2 * bound_ms)
    row["baselines"]["onnxruntime"] = {"status": "skipped", "reason": "not installed (onnxruntime)"}
    extra = goals.Goals({"b16-h256": {"torch": 1.25, "onnxruntime": 1.4}})
    extra.score(row)
    torch_goal, ort_goal = row["goals"]
    assert torch_goal["met"] is True and ort_goal["met"] is None and "needs_ms" not in ort_goal
    assert extra.notes(row) == []
    text = report.table(_results([row]), extra)
    assert "1.25x torch: met, 1.4x ORT: n/a" in text
    assert "onnxruntime skipped: not installed (onnxruntime)" in text


def test_every_configuration_has_goals_and_the_package_none(goals):
    assert set(goals.GOALS) == {c.name for c in cases.CASES}
    sources = Path(bench.__file__).parent.glob("*.py")
    assert not [p.name for p in sources if "goal" in p.read_text().lower()]


def test_b1_bound_takes_the_best_probe_sample_of_the_run(monkeypatch):
    """The B = 1 probes are measured again at the end of the run; the bound takes the sample (bandwidth and
    exchange measured together) that allows the least time, never one mixing two samples."""
    # sample 1: the vCPUs on one core (half the bandwidth, a cheap exchange); sample 2: on two cores
    samples = {"bw": iter([100.0] * 3 + [200.0] * 3), "ex": iter([0.05] * 3 + [0.5] * 3)}
    monkeypatch.setattr(machine, "_PROBES", {})
    monkeypatch.setattr(fastlstm._core, "read_bandwidth_gbs", lambda *a: next(samples["bw"]))
    monkeypatch.setattr(fastlstm._core, "step_exchange_us", lambda *a: next(samples["ex"]))
    case = cases.Case("b1-h128", 100, 1, 128)
    stream_ms = 100 * (4 * 128 * 128 * 4) / 1e9 * 1e3  # T sweeps of W_hh at 1 GB/s
    projection_ms = cases.flops(case) / 2 / 200e9 * 1e3

    machine.sample_probes(case, threads=2)
    first = machine.bound(case, 200.0, threads=2)
    assert first["ms"] == pytest.approx(stream_ms / 100 + projection_ms + 100 * 0.05e-3)
    machine.remeasure_probes()
    again = machine.bound(case, 200.0, threads=2)
    assert again["ms"] == pytest.approx(stream_ms / 200 + projection_ms + 100 * 0.5e-3)
    assert again["ms"] < first["ms"]
    assert "200 GB/s" in again["limit"] and "0.50 us per step" in again["limit"]


def test_the_forecast_grows_with_the_work():
    b1, big = cases.select("b1-h128,b256-h1024")
    assert cases.select(None) == cases.CASES
    with pytest.raises(ValueError, match="nope"):
        cases.select("b1-h128,nope")
    from fastlstm.bench import baselines

    small = baselines.expected_seconds(b1, 400.0, reps=3, warmup=1)
    assert 0 < small < baselines.expected_seconds(b1, 400.0, reps=7, warmup=2)
    assert small < baselines.expected_seconds(big, 400.0, reps=3, warmup=1)


def _run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastlstm", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_version_and_help(tmp_path):
    out = _run("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"fastlstm {fastlstm.__version__}"
    out = _run("--help", cwd=tmp_path)
    assert out.returncode == 0 and "bench" in out.stdout and "info" in out.stdout
    out = _run("bench", "--only", "nope", cwd=tmp_path)
    assert out.returncode == 2 and "unknown configuration" in out.stderr


@pytest.mark.slow
def test_quick_bench_prints_a_header_and_writes_results(tmp_path):
    out = _run("bench", "--quick", "--only", "b1-h128", "--no-plot", "--out", str(tmp_path / "r"),
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(" about " in line for line in lines[:3])  # the forecast
    heads = [i for i, line in enumerate(lines) if line.startswith("config ")]
    rows = [i for i, line in enumerate(lines) if line.startswith("b1-h128 ")]
    assert len(heads) == 2 and len(rows) == 2 and heads[0] < rows[0] < heads[1] < rows[1]
    live, final = lines[rows[0]], lines[rows[1]]
    assert "vs torch" in lines[heads[0]] and "% of bound" in lines[heads[1]]
    shared = len(lines[heads[0]].split("GFLOP/s")[0]) + len("GFLOP/s")
    assert live[:shared] == final[:shared]  # the row's numbers are printed once, with one value each

    results = json.loads((tmp_path / "r" / "results.json").read_text())
    (row,) = results["rows"]
    assert row["name"] == "b1-h128" and row["fastlstm"]["ms"] > 0 and "pct_bound" in row["fastlstm"]
    assert results["plot"] == "skipped: --no-plot"
