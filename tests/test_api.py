"""The public API (docs/api.md): construction, parameters, the error contract (every bad argument gets the
documented error naming it, and leaves the module unchanged), threads and concurrent calls."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastlstm
from fastlstm import reference


def _model(**kw):
    return fastlstm.LSTM(3, 5, seed=0, **kw)


def test_backends_report():
    b = fastlstm.backends()
    assert b["cpu"]["isa"] in b["cpu"]["available_isas"]
    assert "scalar" in b["cpu"]["available_isas"] and set(b["cpu"]["available_isas"]) <= set(b["cpu"]["built_isas"])
    assert b["cpu"]["threads"] >= 1
    assert b["cuda"] is None or (b["cuda"]["built"] is True and isinstance(b["cuda"]["devices"], list))


def test_parameters_names_shapes_and_init():
    m = fastlstm.LSTM(3, 4, 2, bidirectional=True, proj_size=2, peephole=True, seed=1)
    sd = m.state_dict()
    assert list(sd) == list(m.config.param_shapes())
    assert sd["weight_ih_l1_reverse"].shape == (16, 4) and sd["weight_hr_l0"].shape == (2, 4)
    assert sd["peephole_o_l1_reverse"].shape == (4,)
    for v in sd.values():
        assert v.dtype == np.float32 and np.all(np.abs(v) <= 0.5)
    again = fastlstm.LSTM(3, 4, 2, bidirectional=True, proj_size=2, peephole=True, seed=1).state_dict()
    assert all(np.array_equal(sd[k], again[k]) for k in sd)
    sd["weight_hh_l0"][:] = 7  # a copy: the module is untouched
    assert not np.any(m.state_dict()["weight_hh_l0"] == 7)


def test_load_state_dict_round_trip_and_strictness():
    m = _model()
    sd = {k: v * 2 for k, v in m.state_dict().items()}
    m.load_state_dict(sd)
    assert np.array_equal(m.state_dict()["bias_ih_l0"], sd["bias_ih_l0"])
    m.load_state_dict({"bias_ih_l0": np.zeros(20)}, strict=False)
    assert not m.state_dict()["bias_ih_l0"].any()
    m.load_state_dict({k: v.tolist() for k, v in sd.items()})  # anything numpy.asarray takes


BAD_CONSTRUCTORS = [
    (dict(input_size=0), ValueError, "input_size"),
    (dict(input_size=2.5), TypeError, "input_size"),
    (dict(hidden_size=True), TypeError, "hidden_size"),
    (dict(hidden_size=-1), ValueError, "hidden_size"),
    (dict(num_layers=0), ValueError, "num_layers"),
    (dict(proj_size=5), ValueError, "proj_size"),
    (dict(proj_size=-1), ValueError, "proj_size"),
    (dict(dropout=1.5), ValueError, "dropout"),
    (dict(dropout="0.1"), TypeError, "dropout"),
    (dict(bias=1), TypeError, "bias"),
    (dict(batch_first=None), TypeError, "batch_first"),
    (dict(bidirectional="yes"), TypeError, "bidirectional"),
    (dict(peephole=0), TypeError, "peephole"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(dtype="int32"), ValueError, "dtype"),
    (dict(device="tpu"), ValueError, "device"),
    (dict(device=0), TypeError, "device"),
    (dict(seed=1.5), TypeError, "seed"),
]


@pytest.mark.parametrize("kw,err,name", BAD_CONSTRUCTORS)
def test_constructor_errors(kw, err, name):
    args = dict(input_size=3, hidden_size=5)
    args.update(kw)
    with pytest.raises(err, match=name):
        fastlstm.LSTM(args.pop("input_size"), args.pop("hidden_size"), **args)


def test_cuda_device_without_a_gpu_is_a_clear_error():
    if fastlstm.backends()["cuda"] and fastlstm.backends()["cuda"]["devices"]:
        pytest.skip("a CUDA device is visible")
    with pytest.raises(RuntimeError, match="device"):
        fastlstm.LSTM(3, 5, device="cuda")


@pytest.mark.parametrize("kw,name", [(dict(precision="int8"), "precision"), (dict(dtype="float64"), "dtype")])
def test_what_no_cuda_device_runs_is_a_value_error(kw, name):
    # Checked before the device is looked for: the same error on every build and machine.
    with pytest.raises(ValueError, match=name):
        fastlstm.LSTM(3, 5, device="cuda", **kw)


def _bad_calls(m):
    x = np.zeros((4, 2, 3), np.float32)
    h = np.zeros((1, 2, 5), np.float32)
    return [
        (lambda: m(np.zeros((4, 2, 3), np.int64)), TypeError, "x"),
        (lambda: m("hello"), TypeError, "x"),
        (lambda: m(np.zeros((4, 2, 4), np.float32)), ValueError, "x"),
        (lambda: m(np.zeros((4,), np.float32)), ValueError, "x"),
        (lambda: m(np.zeros((0, 2, 3), np.float32)), ValueError, "x"),
        (lambda: m(np.zeros((4, 0, 3), np.float32)), ValueError, "x"),
        (lambda: m(x, h), TypeError, "hx"),
        (lambda: m(x, (h, h, h)), TypeError, "hx"),
        (lambda: m(x, (h, np.zeros((1, 3, 5), np.float32))), ValueError, "c0"),
        (lambda: m(x, (np.zeros((2, 2, 5)), h)), ValueError, "h0"),
        (lambda: m(x, (h.astype(np.int32), h)), TypeError, "hx"),
        (lambda: m(x, lengths=[1, 5]), ValueError, "lengths"),
        (lambda: m(x, lengths=[0, 2]), ValueError, "lengths"),
        (lambda: m(x, lengths=[1, 2, 3]), ValueError, "lengths"),
        (lambda: m(x, lengths=[1.0, 2.0]), TypeError, "lengths"),
        (lambda: m(x[:, 0], lengths=[2]), ValueError, "lengths"),
        (lambda: m(x, train="no"), TypeError, "train"),
        (lambda: m.step(np.zeros((2, 4), np.float32)), ValueError, "x_t"),
        (lambda: m.step(np.zeros((2, 3), np.int8)), TypeError, "x_t"),
        (lambda: m.step(np.zeros((2, 3), np.float32), (h, np.zeros((1, 2, 4)))), ValueError, "c0"),
        (lambda: m.load_state_dict({"weight_ih_l0": np.zeros((20, 3))}), ValueError, "missing"),
        (lambda: m.load_state_dict({**m.state_dict(), "extra": np.zeros(1)}), ValueError, "extra"),
        (lambda: m.load_state_dict({**m.state_dict(), "weight_hh_l0": np.zeros((20, 4))}), ValueError,
         "weight_hh_l0"),
        (lambda: m.load_state_dict({**m.state_dict(), "bias_hh_l0": np.array(["a"] * 20)}), TypeError,
         "bias_hh_l0"),
        (lambda: m.load_state_dict([1, 2]), TypeError, "state_dict"),
        (lambda: fastlstm.set_num_threads(0), ValueError, "n"),
        (lambda: fastlstm.set_num_threads(1.5), TypeError, "n"),
    ]


def test_call_errors_name_the_argument_and_change_nothing():
    m = _model()
    before = m.state_dict()
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    y_before = m(x)[0]
    for call, err, name in _bad_calls(m):
        with pytest.raises(err, match=name):
            call()
    after = m.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert np.array_equal(m(x)[0], y_before)


def test_step_on_bidirectional_is_refused():
    m = fastlstm.LSTM(3, 5, bidirectional=True)
    with pytest.raises(ValueError, match="step"):
        m.step(np.zeros((1, 3), np.float32))


def test_parameters_are_read_only_views_inside():
    m = _model()
    with pytest.raises(ValueError):
        m._params["weight_ih_l0"][0, 0] = 1.0


def test_backward_needs_a_train_call():
    m = _model()
    with pytest.raises(RuntimeError, match="train=True"):
        m.backward(np.zeros((4, 2, 5), np.float32))
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    m(x, train=True)
    with pytest.raises(ValueError, match="dy"):
        m.backward(np.zeros((4, 2, 6), np.float32))
    with pytest.raises(ValueError, match="dh_n"):
        m.backward(np.zeros((4, 2, 5), np.float32), np.zeros((1, 2, 6)))
    dx, (dh0, dc0) = m.backward(np.ones((4, 2, 5), np.float32))
    assert dx.shape == x.shape and dh0.shape == (1, 2, 5) and dc0.shape == (1, 2, 5)
    assert set(m.grads) == set(m.state_dict()) and all(m.grads[k].shape == v.shape for k, v in m.state_dict().items())


def test_train_call_matches_reference_with_dropout_masks_from_the_module_rng():
    m = fastlstm.LSTM(3, 5, 3, dropout=0.5, seed=4, dtype="float64")
    x = np.random.default_rng(1).standard_normal((6, 2, 3))
    y_eval = m(x)[0]
    (y_ref, _), _ = reference.forward(m.config, m.state_dict(), x)
    np.testing.assert_allclose(y_eval, y_ref, atol=1e-12)  # train=False: no dropout
    y_train = m(x, train=True)[0]
    assert not np.allclose(y_train, y_eval)  # dropout applied between layers


def test_threads_setting(threads):
    fastlstm.set_num_threads(1)
    assert fastlstm.get_num_threads() == 1
    fastlstm.set_num_threads(2)
    assert fastlstm.get_num_threads() == 2


def _fresh_process(code: str, **env) -> str:
    """stdout of `code` run by a new interpreter with these environment variables (read at import)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("FASTLSTM_")} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full,
                          check=True).stdout.strip()


def test_environment_selects_threads_and_kernel_family():
    report = "import fastlstm; b = fastlstm.backends()['cpu']; print(b['threads'], b['isa'])"
    assert _fresh_process(report, FASTLSTM_NUM_THREADS="1", FASTLSTM_ISA="scalar") == "1 scalar"
    for isa in fastlstm.backends()["cpu"]["available_isas"]:
        assert _fresh_process(report, FASTLSTM_NUM_THREADS="2", FASTLSTM_ISA=isa) == f"2 {isa}"
    # A family this CPU cannot run is refused at import, naming the variable; a bad thread count is ignored.
    bad = subprocess.run([sys.executable, "-c", "import fastlstm"], capture_output=True, text=True,
                         env=os.environ | {"FASTLSTM_ISA": "avx1024"})
    assert bad.returncode != 0 and "FASTLSTM_ISA='avx1024'" in bad.stderr
    assert _fresh_process(report, FASTLSTM_NUM_THREADS="zero") == _fresh_process(report)


def test_the_gil_is_released_during_a_call(threads):
    """Another Python thread keeps running while a long call computes: the engine holds no GIL."""
    fastlstm.set_num_threads(1)  # leaves a core for this thread on a 2-core machine
    m = fastlstm.LSTM(256, 256, seed=0)
    x = np.random.default_rng(0).standard_normal((600, 16, 256)).astype(np.float32)
    t0 = time.perf_counter()
    m(x)
    call_s = time.perf_counter() - t0
    ticks, gaps = [], []
    worker = threading.Thread(target=m, args=(x,))
    worker.start()
    last = time.perf_counter()
    while worker.is_alive():
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
        ticks.append(now)
    worker.join()
    # Holding the GIL would stall this loop for the whole call (call_s); released, it stalls at most for
    # the interpreter's switch interval (5 ms) around the call's entry and exit.
    assert len(ticks) > 1000 and max(gaps) < max(0.5 * call_s, 0.05), (max(gaps), call_s, len(ticks))


def test_concurrent_calls_give_serial_results(threads):
    """Inference and step on a shared module and on separate ones from many Python threads at once."""
    rng = np.random.default_rng(3)
    shared = fastlstm.LSTM(16, 32, num_layers=2, seed=9)
    own = [fastlstm.LSTM(16, 32, seed=i) for i in range(4)]
    xs = [rng.standard_normal((20, 3, 16)).astype(np.float32) for _ in range(8)]
    expect_shared = [shared(x)[0] for x in xs]
    expect_own = [own[i % 4](x)[0] for i, x in enumerate(xs)]
    expect_step = [shared.step(x[0])[0] for x in xs]
    failures = []

    def worker(i):
        for _ in range(15):
            if not np.array_equal(shared(xs[i])[0], expect_shared[i]):
                failures.append(("shared", i))
            if not np.array_equal(own[i % 4](xs[i])[0], expect_own[i]):
                failures.append(("own", i))
            if not np.array_equal(shared.step(xs[i][0])[0], expect_step[i]):
                failures.append(("step", i))
            if i == 0:
                fastlstm.set_num_threads(1 + _ % 2)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in ts), "deadlock"
    assert failures == []


def test_nan_and_inf_propagate_without_crashing():
    m = _model()
    x = np.zeros((3, 2, 3), np.float32)
    x[1, 0, 0] = np.nan
    x[0, 1, :] = np.inf
    y, (h, c) = m(x)
    assert np.isnan(y[1:, 0]).all() and np.isfinite(y[0, 0]).all()
    huge = np.full((3, 1, 3), 1e30, np.float32)
    assert np.isfinite(m(huge)[0]).all()
