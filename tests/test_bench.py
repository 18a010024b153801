"""The benchmark's scoring (python -m fastlstm bench): rates, the bound, the goals and what each asks for,
on a synthetic row with known times (no timing here: CI runs the benchmark itself with --quick)."""

import pytest

from fastlstm import _bench


def _row(case, ours_ms, torch_ms):
    ok = {"status": "ok", "check": {"passed": True, "max_abs_diff": {}}}
    return {"name": case.name, "case": {"lengths_sum": None},
            "fastlstm": {"ms": ours_ms},
            "baselines": {"torch": {**ok, "ms": torch_ms, "ratio": torch_ms / ours_ms,
                                    "source": "torch-onednn"}}}


def test_score_states_what_each_goal_asks_of_the_bound():
    case = _bench.Case("b16-h256", 100, 16, 256, goals={"torch": 1.25})
    peak = {"gflops": 150.0, "fma_loop_gflops": 200.0}
    bound_ms = _bench.flops(case) / 200e9 * 1e3  # B > 1: the FLOPs at the FMA-loop peak
    row = _row(case, ours_ms=1.2 * bound_ms, torch_ms=1.3 * bound_ms)
    _bench.score(row, case, peak, {"gflops": None}, threads=2)

    f = row["fastlstm"]
    assert f["gflops"] == pytest.approx(200 / 1.2)
    assert f["pct_gemm_peak"] == pytest.approx(100 * (200 / 1.2) / 150)
    assert f["bound_ms"] == pytest.approx(bound_ms)
    assert f["pct_bound"] == pytest.approx(100 / 1.2)
    (goal,) = row["goals"]
    assert goal["met"] is False and goal["value"] == pytest.approx(1.3 / 1.2)
    assert goal["needs_ms"] == pytest.approx(1.3 * bound_ms / 1.25)
    assert goal["bound_allows"] == pytest.approx(1.3)
    assert goal["needs_pct_bound"] == pytest.approx(100 * 1.25 / 1.3)

    text = _bench.table([row])
    assert "1.25x torch: NOT met" in text
    assert "1.25x torch needs" in text and "96% of the bound (the bound allows 1.30x torch)" in text


def test_a_met_goal_gets_no_note_and_a_missing_baseline_no_verdict():
    case = _bench.Case("b16-h256", 100, 16, 256, goals={"torch": 1.25, "onnxruntime": 1.4})
    bound_ms = _bench.flops(case) / 200e9 * 1e3
    row = _row(case, ours_ms=1.1 * bound_ms, torch_ms=2 * bound_ms)
    row["baselines"]["onnxruntime"] = {"status": "skipped", "reason": "not installed (onnxruntime)"}
    _bench.score(row, case, {"gflops": 150.0, "fma_loop_gflops": 200.0}, {"gflops": None}, threads=2)
    torch_goal, ort_goal = row["goals"]
    assert torch_goal["met"] is True and ort_goal["met"] is None and "needs_ms" not in ort_goal
    text = _bench.table([row])
    assert "needs" not in text
    assert "onnxruntime skipped: not installed (onnxruntime)" in text


def test_the_peak_goal_is_a_fraction_of_the_fma_peak():
    case = _bench.Case("b64-h512", 100, 64, 512, peak_goal=0.8)
    row = _row(case, ours_ms=_bench.flops(case) / 170e9 * 1e3, torch_ms=1.0)
    _bench.score(row, case, {"gflops": 150.0, "fma_loop_gflops": 200.0}, {"gflops": None}, threads=2)
    (goal,) = row["goals"]
    assert goal["goal"] == ">= 80% of the FMA peak" and goal["value"] == pytest.approx(0.85) and goal["met"]
    assert " 85% " in _bench.table([row])  # the %fma column



def test_b1_bound_takes_the_best_probe_sample_of_the_run(monkeypatch):
    """The B = 1 probes are measured again at the end of the run; the bound takes the sample (bandwidth and
    exchange measured together) that allows the least time, never one mixing two samples."""
    import fastlstm

    # sample 1: the vCPUs on one core (half the bandwidth, a cheap exchange); sample 2: on two cores
    samples = {"bw": iter([100.0] * 3 + [200.0] * 3), "ex": iter([0.05] * 3 + [0.5] * 3)}
    monkeypatch.setattr(_bench, "_PROBES", {})
    monkeypatch.setattr(fastlstm._core, "read_bandwidth_gbs", lambda *a: next(samples["bw"]))
    monkeypatch.setattr(fastlstm._core, "step_exchange_us", lambda *a: next(samples["ex"]))
    case = _bench.Case("b1-h128", 100, 1, 128)
    peak = {"fma_loop_gflops": 200.0}
    stream_ms = 100 * (4 * 128 * 128 * 4) / 1e9 * 1e3  # T sweeps of W_hh at 1 GB/s
    projection_ms = _bench.flops(case) / 2 / 200e9 * 1e3

    first = _bench.bound(case, peak, threads=2)
    assert first["ms"] == pytest.approx(stream_ms / 100 + projection_ms + 100 * 0.05e-3)
    _bench.remeasure_probes()
    again = _bench.bound(case, peak, threads=2)
    assert again["ms"] == pytest.approx(stream_ms / 200 + projection_ms + 100 * 0.5e-3)
    assert again["ms"] < first["ms"]
    assert "200 GB/s" in again["limit"] and "0.50 us a step" in again["limit"]
