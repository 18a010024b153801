"""The benchmark: the bound and its probes, the project's goal scoring (benchmarks/goals.py, not part of the
package) on synthetic rows with known times and errors, for the float32 table and the low-precision one, and
the command itself in short subprocess runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fastlstm
from fastlstm import bench
from fastlstm.bench import cases, lowp, machine, report

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
    assert set(goals.GOALS) == {c.name for c in cases.CASES + cases.LOWP_CASES}
    assert goals.NOT_MEASURED == ("the GPU table",)
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
    assert cases.select(None) == cases.CASES + cases.LOWP_CASES
    assert cases.select("int8-b1-h512,b1-h128") == [b1, cases.LOWP_CASES[4]]  # float32 first
    with pytest.raises(ValueError, match="nope"):
        cases.select("b1-h128,nope")
    from fastlstm.bench import baselines

    small = baselines.expected_seconds(b1, 400.0, reps=3, warmup=1)
    assert 0 < small < baselines.expected_seconds(b1, 400.0, reps=7, warmup=2)
    assert small < baselines.expected_seconds(big, 400.0, reps=3, warmup=1)


# -- the low-precision table -----------------------------------------------------------------------------

def _side(ms, rms, label, max_abs=None, status="ok"):
    return {"label": label, "status": status, "ms": ms, "error": {"rms": rms, "max_abs": max_abs or 8 * rms}}


def _lowp_row(name, precision, sides, status="ok", reason=None):
    """A low-precision row as lowp.run_case() makes it: {side: (ms, rms)}, fastlstm's low precision first."""
    case = next(c for c in cases.LOWP_CASES if c.name == name)
    ours = f"fastlstm-{precision}"
    row = {"name": name, "table": "low precision", "precision": precision, "ours": ours,
           "peers": lowp.peers(case), "status": status, "sides": {}}
    if status != "ok":
        return {**row, "reason": reason}
    for key, value in sides.items():
        entry = row["sides"][key] = (_side(*value, lowp.LABELS[key]) if isinstance(value, tuple)
                                     else {"label": lowp.LABELS[key], **value})
        if "ms" in entry:
            entry["ratio"] = entry["ms"] / sides[ours][0]
    return row


def _lowp_results(rows):
    return {"rows": [], "low_precision_rows": rows, "args": {"reps": 3}, "peak": {"fma_loop_gflops": 200.0}}


def test_int8_goals_compare_with_the_faster_and_the_more_accurate_peer(goals):
    row = _lowp_row("int8-b16-h512", "int8", {
        "fastlstm-int8": (10.0, 4e-4), "fastlstm-fp32": (40.0, 4e-8),
        "torch-int8": (30.0, 3e-4),  # slower but more accurate
        "onnxruntime-int8": (15.0, 5e-4)})
    extra = goals.Goals()
    extra.score(row)
    speed, error = row["goals"]
    assert speed["side"] == "onnxruntime-int8" and speed["value"] == pytest.approx(1.5) and speed["met"] is False
    assert speed["needs_ms"] == pytest.approx(7.5)
    assert error["side"] == "torch-int8" and error["value"] == pytest.approx(0.75) and error["met"] is False

    text = report.table(_lowp_results([row]), extra)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120
    line = {side: next(ln for ln in lines if lowp.LABELS[side] in ln and "x " in ln) for side in row["sides"]}
    assert line["fastlstm-int8"].startswith("int8-b16-h512") and "10.00 ms" in line["fastlstm-int8"]
    assert "1.00x" in line["fastlstm-int8"] and "4.0e-04" in line["fastlstm-int8"]  # time, ratio, RMS error
    assert "1.50x" in line["onnxruntime-int8"] and ">=2x: NOT met" in line["onnxruntime-int8"]
    assert "3.00x" in line["torch-int8"] and "3.0e-04" in line["torch-int8"]
    assert "error no worse: NOT met" in line["torch-int8"]
    assert "int8-b16-h512: 2x faster peer needs 7.50 ms" in text
    assert "RMS error 4.00e-04 against torch dynamic int8's 3.00e-04" in text
    assert extra.plot_mark(row, "onnxruntime-int8") == 2 and extra.plot_mark(row, "torch-int8") is None


def test_bf16_goals_met_and_a_skipped_row_or_peer_gets_no_verdict(goals):
    row = _lowp_row("bf16-b16-h512", "bf16", {
        "fastlstm-bf16": (10.0, 1.5e-4), "fastlstm-fp32": (20.0, 4e-8), "torch-bf16": (16.0, 2e-4)})
    train = _lowp_row("bf16-train-b16-h256", "bf16", {}, status="skipped",
                      reason="bf16 training: not in this version")
    int8 = _lowp_row("int8-b1-h512", "int8", {
        "fastlstm-int8": (1.0, 5e-4), "fastlstm-fp32": (2.0, 5e-8),
        "torch-int8": {"status": "skipped", "reason": "not installed (torch); install with: pip install torch"},
        "onnxruntime-int8": {"status": "error", "reason": "RuntimeError: boom"}})
    extra = goals.Goals()
    for r in (row, train, int8):
        extra.score(r)
    assert [(g["goal"], g["met"]) for g in row["goals"]] == [
        ("1.5x torch bf16", True), ("1.8x fastlstm fp32", True), ("error <= torch bf16's", True)]
    assert [g["met"] for g in train["goals"]] == [None]
    assert [(g["goal"], g["side"], g["met"]) for g in int8["goals"]] == [
        ("2x faster peer", None, None), ("3x fastlstm fp32", "fastlstm-fp32", False)]

    text = report.table(_lowp_results([row, train, int8]), extra)
    assert max(map(len, text.splitlines())) <= 120
    assert ">=1.5x: met, error no worse: met" in text and ">=1.8x: met" in text
    assert "bf16-train-b16-h256  skipped: bf16 training: not in this version" in text
    assert "2x faster peer: n/a" in next(ln for ln in text.splitlines() if ln.startswith("int8-b1-h512"))
    assert "int8-b1-h512: torch dynamic int8 skipped: not installed (torch)" in text
    assert "int8-b1-h512: onnxruntime int8 error: RuntimeError: boom" in text
    assert "int8-b1-h512: 3x fastlstm fp32 needs 666.7 us" in text
    assert "% of bound" not in text and "goals       low precision" in text  # no float32 table, its legend


def test_the_package_table_and_plot_show_both_tables(tmp_path):
    case = cases.Case("b16-h256", 100, 16, 256)
    bound_ms = cases.flops(case) / 200e9 * 1e3
    fp32 = _row(case, ours_ms=1.25 * bound_ms, torch_ms=1.5 * bound_ms)
    row = _lowp_row("int8-step-b1-h256", "int8", {
        "fastlstm-int8": (0.01, 5e-4), "fastlstm-fp32": (0.02, 5e-8), "torch-lstmcell": (0.3, 2e-8),
        "torch-int8-lstmcell": {"status": "skipped", "reason": "this torch has no dynamic int8 LSTMCell"}})
    results = {**_lowp_results([row]), "rows": [fp32]}
    text = report.table(results)
    assert text.index("% of bound") < text.index("low precision") < text.index("RMS err")
    assert "goal" not in text and "30.00x" in text and "5.0e-04" in text
    if machine.optional("matplotlib") is None:
        pytest.skip("matplotlib is not installed")
    assert report.plot([fp32], tmp_path / "r.png", "t", lowp_rows=[row]) == str(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_a_low_precision_row_this_cpu_or_version_cannot_run_is_skipped(monkeypatch):
    backends = fastlstm.backends()
    backends["cpu"]["precisions"]["float32"] = ["fp32"]
    monkeypatch.setattr(fastlstm, "backends", lambda: backends)
    row = lowp.run_case(cases.LOWP_CASES[0], threads=1, reps=1, warmup=1, desc="")
    assert row["status"] == "skipped" and row["sides"] == {}
    assert row["reason"] == "this CPU does not run bf16 (neither AVX2 nor AVX512_BF16)"
    case = cases.LOWP_CASES[2]
    inference_only = ValueError("precision: 'bf16' runs inference only (train=True needs another precision)")
    assert lowp._ours_failed(case, inference_only) == ("skipped", "bf16 training: not in this version")
    assert lowp._ours_failed(case, RuntimeError("x"))[0] == "error"


@pytest.mark.skipif("int8" not in fastlstm.backends()["cpu"]["precisions"]["float32"],
                    reason="this CPU does not run int8")
def test_a_small_int8_row_measures_every_side(threads):
    row = lowp.run_case(cases.LowpCase("tiny", "int8", 12, 3, 16, 24), threads=1, reps=1, warmup=1, desc="")
    assert row["status"] == "ok" and list(row["sides"])[:2] == ["fastlstm-int8", "fastlstm-fp32"]
    ok = {k: e for k, e in row["sides"].items() if e["status"] == "ok"}
    for key, e in ok.items():  # a peer's own error, not ours: onnxruntime's AVX2 int8 kernel (vpmaddubsw on
        # u8 x s8) saturates its pair sums, 0.12 on this row on AMD Zen 3, 2.4e-3 with AVX512_VNNI
        bound = 0.05 if key.startswith("fastlstm") else 0.5
        assert e["ms"] > 0 and 0 < e["error"]["rms"] <= e["error"]["max_abs"] < bound, key
    assert ok["fastlstm-fp32"]["error"]["max_abs"] < 1e-5 < ok["fastlstm-int8"]["error"]["max_abs"]
    assert row["sides"]["fastlstm-int8"]["ratio"] == 1


@pytest.mark.skipif("bf16" not in fastlstm.backends()["cpu"]["precisions"]["float32"],
                    reason="this CPU does not run bf16")
def test_a_small_bf16_row_has_openvino_as_an_optional_peer(monkeypatch):
    """bf16 inference rows list OpenVINO among their peers (training rows do not: it does no training). Without
    openvino installed its side is skipped with the install command; with it (and bf16 in OpenVINO on this
    CPU) it is measured like the others."""
    case = cases.LowpCase("tiny", "bf16", 12, 3, 16, 24)
    assert lowp.peers(case) == ["torch-bf16", "openvino-bf16"]
    assert lowp.peers(cases.LowpCase("tiny", "bf16", 12, 3, 16, 24, kind="train")) == ["torch-bf16"]
    from fastlstm.bench import baselines

    real = baselines.installed
    with monkeypatch.context() as mp:
        mp.setattr(baselines, "installed", lambda name: name != "openvino" and real(name))
        row = lowp.run_case(case, threads=1, reps=1, warmup=1, desc="")
    side = row["sides"]["openvino-bf16"]
    assert side["status"] == "skipped" and side["reason"].endswith("install with: pip install openvino")
    row = lowp.run_case(case, threads=1, reps=1, warmup=1, desc="")
    side = row["sides"]["openvino-bf16"]
    if side["status"] == "ok":
        assert side["ms"] > 0 and 0 < side["error"]["rms"] <= side["error"]["max_abs"] < 0.02
    else:
        assert side["status"] == "skipped" and ("pip install openvino" in side["reason"] or "no bf16" in side["reason"])


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


@pytest.mark.slow
def test_quick_bench_runs_the_low_precision_rows(tmp_path):
    names = ["int8-b1-h512", "bf16-b16-h512"]
    out = _run("bench", "--quick", "--only", ",".join(names), "--no-plot", "--out", str(tmp_path / "r"),
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "low precision" in out.stdout and "RMS err" in out.stdout and "% of bound" not in out.stdout
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["rows"] == []
    rows = {r["name"]: r for r in results["low_precision_rows"]}
    assert sorted(rows) == sorted(names)
    native = fastlstm.backends()["cpu"]["precisions"]["float32"]
    for name, row in rows.items():
        if row["precision"] not in native:
            assert row["status"] == "skipped" and "does not run" in row["reason"]
            continue
        assert row["status"] == "ok", row
        ran = {k: e for k, e in row["sides"].items() if e["status"] == "ok"}
        assert {row["ours"], "fastlstm-fp32"} <= set(ran)
        for key, e in ran.items():
            assert e["ms"] > 0 and e["ratio"] > 0 and e["error"]["max_abs"] >= e["error"]["rms"] > 0, (name, key)
        for key, e in row["sides"].items():
            assert e["status"] == "ok" or e["reason"], (name, key)
