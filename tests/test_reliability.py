"""Reliability: property-based fuzzing of the whole call surface (each call gives the reference's numbers or
the documented error, and never changes the parameters), resource limits and extreme numerics."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastlstm
from fastlstm import _runtime, reference
from tolerance import assert_close_to_reference

FUZZ_CASES = 2000  # calls: __call__ (inference and training, then backward)
FUZZ_SURFACE_CASES = 1000  # step, backward, load_state_dict and the constructor
FUZZ_COUNTS: dict[str, int] = {}  # what the fuzzers tried, printed at the end of the run (conftest.py)
MUTATIONS = ["input_size", "T0", "B0", "int_x", "bad_dtype", "hx_shape", "hx_type", "lengths_range",
             "lengths_unbatched", "lengths_float"]
# mutation -> (error, the argument its message must name)
ERRORS = {"input_size": (ValueError, "x"), "T0": (ValueError, "x"), "B0": (ValueError, "x"),
          "int_x": (TypeError, "x"), "bad_dtype": (TypeError, "x"), "hx_shape": (ValueError, "hx"),
          "hx_type": (TypeError, "hx"), "lengths_range": (ValueError, "lengths"),
          "lengths_unbatched": (ValueError, "lengths"), "lengths_float": (TypeError, "lengths")}
ISAS = _runtime.available_isas()


def _count(*keys: str) -> None:
    for k in keys:
        FUZZ_COUNTS[k] = FUZZ_COUNTS.get(k, 0) + 1


@pytest.fixture
def restore_isa():
    previous = _runtime.selected_isa()
    yield
    _runtime._set_isa(previous)


@st.composite
def calls(draw):
    H = draw(st.integers(1, 9))
    opts = dict(
        num_layers=draw(st.integers(1, 3)), bias=draw(st.booleans()), batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()), proj_size=draw(st.sampled_from([0, 0, max(H - 1, 0)])),
        peephole=draw(st.booleans()), dtype=draw(st.sampled_from(["float32", "float64"])),
        dropout=draw(st.sampled_from([0.0, 0.5])))
    call = dict(I=draw(st.integers(1, 6)), T=draw(st.integers(1, 5)), B=draw(st.integers(1, 4)),
                unbatched=draw(st.booleans()), hx=draw(st.booleans()), lengths=draw(st.booleans()),
                layout=draw(st.sampled_from(["contiguous", "strided", "reversed", "readonly", "fortran"])),
                x_dtype=draw(st.sampled_from(["float32", "float64", "float16"])), train=draw(st.booleans()),
                alias_hx=draw(st.booleans()), isa=draw(st.sampled_from(ISAS)),
                bad_dtype=draw(st.sampled_from(["bool", "complex64", "object", "uint8"])),
                mutation=draw(st.sampled_from([None] * len(MUTATIONS) + MUTATIONS)),  # half of them valid
                seed=draw(st.integers(0, 2**31)))
    return H, opts, call


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    if layout == "strided":
        big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
        big[tuple(slice(None, None, 2) for _ in a.shape)] = a
        return big[tuple(slice(None, None, 2) for _ in a.shape)]
    if layout == "reversed":
        r = np.ascontiguousarray(a[::-1])
        return r[::-1]
    if layout == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    if layout == "fortran":
        return np.asfortranarray(a)
    return a


@settings(max_examples=FUZZ_CASES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(calls())
def test_fuzz_every_call_is_right_or_a_documented_error(restore_isa, case):
    """Random options, shapes (T, B down to 1, and 0 as an error), dtypes, layouts (strided, reversed,
    read-only, Fortran), h0 and c0 one array, lengths and kernel families: each call gives the reference's
    numbers or the documented error naming the argument, and changes neither the parameters nor its inputs."""
    H, opts, c = case
    _runtime._set_isa(c["isa"])
    rng = np.random.default_rng(c["seed"])
    m = fastlstm.LSTM(c["I"], H, seed=c["seed"], **opts)
    cfg = m.config
    before = m.state_dict()
    T, B, I, mut = c["T"], c["B"], c["I"], c["mutation"]
    unbatched = c["unbatched"] and mut not in ("B0", "lengths_range", "lengths_float")
    if mut == "T0":
        T = 0
    if mut == "B0":
        B = 0
    shape = (T, I) if unbatched else ((B, T, I) if cfg.batch_first else (T, B, I))
    x = rng.standard_normal(shape)
    if mut == "input_size":
        x = rng.standard_normal(shape[:-1] + (I + 1,))
    if mut == "int_x":
        x = (x * 10).astype(np.int32)
    elif mut == "bad_dtype":
        x = x.astype(c["bad_dtype"]) if c["bad_dtype"] != "object" else x.astype(object)
    else:
        x = x.astype(c["x_dtype"])
    x = _layout(x, c["layout"])
    DL = cfg.num_layers * cfg.num_directions
    hx = None
    if c["hx"] or mut in ("hx_shape", "hx_type"):
        sh, sc = ((DL, cfg.out_size), (DL, H)) if unbatched else ((DL, B, cfg.out_size), (DL, B, H))
        if mut == "hx_shape":
            sc = sc[:-1] + (H + 1,)
        h0 = rng.standard_normal(sh)
        hx = (h0, h0) if c["alias_hx"] and sh == sc else (h0, rng.standard_normal(sc))
        if mut == "hx_type":
            hx = hx[0]
    lengths = None
    if (c["lengths"] and not unbatched) or mut in ("lengths_range", "lengths_unbatched", "lengths_float"):
        lengths = rng.integers(1, T + 1, size=B) if T > 0 else np.ones(B, np.int64)
        if mut == "lengths_range":
            lengths[0] = T + 1
        if mut == "lengths_float":
            lengths = lengths.astype(np.float64)
        if mut == "lengths_unbatched":
            x = _layout(rng.standard_normal((max(T, 1), I)).astype(c["x_dtype"]), c["layout"])
            hx = None
    inputs = [np.array(a, copy=True) for a in ([x] + ([] if hx is None or not isinstance(hx, tuple) else list(hx)))]
    _count("call cases")
    if mut is not None:
        err, name = ERRORS[mut]
        with pytest.raises(err, match=name):
            m(x, hx, lengths=lengths, train=c["train"])
        _count("call errors (documented type, argument named)")
    else:
        y, (h, cn) = m(x, hx, lengths=lengths, train=c["train"])
        assert not np.shares_memory(y, x) and (hx is None or not any(np.shares_memory(h, a) for a in hx))
        x_dt = x.astype(opts["dtype"])
        hx_dt = None if hx is None else tuple(a.astype(opts["dtype"]) for a in hx)
        p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
        x64 = x.astype(np.float64)
        if c["train"]:
            masks = m._tape.dropout_masks
            masks64 = None if masks is None else [a.astype(np.float64) for a in masks]
            (ydt, _), tape_dt = reference.forward(cfg, m.state_dict(), x_dt, hx_dt, lengths=lengths, train=True,
                                                  dropout_masks=masks)
            (y64, _), tape64 = reference.forward(cfg, p64, x64, hx, lengths=lengths, train=True,
                                                 dropout_masks=masks64)
            dy = rng.standard_normal(y.shape)
            dx, _ = m.backward(dy)
            dx_dt, _, _ = reference.backward(cfg, m.state_dict(), tape_dt, dy.astype(opts["dtype"]))
            dx64, _, _ = reference.backward(cfg, p64, tape64, dy)
            assert_close_to_reference(dx, dx_dt, dx64, opts["dtype"], "dx")
            _count("valid training calls compared with the reference (y, dx)")
        else:
            (ydt, _), _ = reference.forward(cfg, m.state_dict(), x_dt, hx_dt, lengths=lengths)
            (y64, _), _ = reference.forward(cfg, p64, x64, hx, lengths=lengths)
            _count("valid inference calls compared with the reference (y)")
        assert_close_to_reference(y, ydt, y64, opts["dtype"], "y")
    after = m.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    now = [x] + ([] if hx is None or not isinstance(hx, tuple) else list(hx))
    assert all(np.array_equal(a, b) for a, b in zip(inputs, now, strict=True)), "an input was changed"


@st.composite
def surface_calls(draw):
    H = draw(st.integers(1, 9))
    opts = dict(num_layers=draw(st.integers(1, 2)), bias=draw(st.booleans()),
                proj_size=draw(st.sampled_from([0, max(H - 1, 0)])), peephole=draw(st.booleans()),
                dtype=draw(st.sampled_from(["float32", "float64"])))
    action = draw(st.sampled_from(["step", "step", "backward", "backward", "load_state_dict", "constructor"]))
    return H, opts, dict(I=draw(st.integers(1, 5)), B=draw(st.integers(1, 4)), action=action,
                         bad=draw(st.integers(0, 5)), isa=draw(st.sampled_from(ISAS)),
                         bidirectional=draw(st.booleans()), seed=draw(st.integers(0, 2**31)))


def _bad_surface_call(m, c, rng):
    """-> (a call that must fail, the error, the argument its message names), by c["action"] and c["bad"]."""
    cfg, I, B, bad = m.config, c["I"], c["B"], c["bad"]
    DL = cfg.num_layers * cfg.num_directions
    h0, c0 = np.zeros((DL, B, cfg.out_size)), np.zeros((DL, B, cfg.hidden_size))
    if c["action"] == "step":
        if cfg.bidirectional:
            return lambda: m.step(np.zeros((B, I))), ValueError, "step"
        return [(lambda: m.step(np.zeros((B, I + 1))), ValueError, "x_t"),
                (lambda: m.step(np.zeros((B, I), np.int16)), TypeError, "x_t"),
                (lambda: m.step(np.zeros((B, I)), (h0, c0[:, :, :-1] if cfg.hidden_size > 1 else c0[:, :0])),
                 ValueError, "c0"),
                (lambda: m.step(np.zeros((B, I)), (h0[:, :1] if B > 1 else h0[:, :0], c0)), ValueError, "h0"),
                (lambda: m.step(np.zeros((B, I)), h0), TypeError, "hx"),
                (lambda: m.step(np.zeros((0, I))), ValueError, "x_t")][bad]
    if c["action"] == "backward":
        T = 3
        y, _ = m(rng.standard_normal((T, B, I)), train=True)
        return [(lambda: m.backward(np.zeros(y.shape[:-1] + (y.shape[-1] + 1,))), ValueError, "dy"),
                (lambda: m.backward(np.zeros(y.shape, np.int32)), TypeError, "dy"),
                (lambda: m.backward(np.zeros(y.shape), np.zeros((DL, B + 1, cfg.out_size))), ValueError, "dh_n"),
                (lambda: m.backward(np.zeros(y.shape), None, np.zeros((DL, B, cfg.hidden_size + 1))), ValueError,
                 "dc_n"),
                (lambda: m.backward(np.zeros(y.shape), None, np.zeros((DL, B, cfg.hidden_size), bool)), TypeError,
                 "dc_n"),
                (lambda: m.backward(np.zeros((T + 1,) + y.shape[1:])), ValueError, "dy")][bad]
    if c["action"] == "load_state_dict":
        sd = m.state_dict()
        name = sorted(sd)[bad % len(sd)]
        return [(lambda: m.load_state_dict({k: v for k, v in sd.items() if k != name}), ValueError, "missing"),
                (lambda: m.load_state_dict({**sd, "weight_ih_l9": sd[name]}), ValueError, "unexpected"),
                (lambda: m.load_state_dict({**sd, name: np.zeros(sd[name].shape + (1,))}), ValueError, name),
                (lambda: m.load_state_dict({**sd, name: np.zeros(sd[name].shape, complex)}), TypeError, name),
                (lambda: m.load_state_dict({**sd, name: [[1, 2], [3]]}), TypeError, name),
                (lambda: m.load_state_dict(list(sd.items())), TypeError, "state_dict")][bad]
    H = cfg.hidden_size
    return [(lambda: fastlstm.LSTM(I, 0), ValueError, "hidden_size"),
            (lambda: fastlstm.LSTM(0, H), ValueError, "input_size"),
            (lambda: fastlstm.LSTM(I, H, proj_size=H), ValueError, "proj_size"),
            (lambda: fastlstm.LSTM(I, H, dropout=1.5), ValueError, "dropout"),
            (lambda: fastlstm.LSTM(I, H, dtype="float16"), ValueError, "dtype"),
            (lambda: fastlstm.LSTM(float(I), H), TypeError, "input_size")][bad]


@settings(max_examples=FUZZ_SURFACE_CASES, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(surface_calls())
def test_fuzz_step_backward_and_parameters(restore_isa, case):
    """The rest of the surface: a malformed step, backward, load_state_dict or constructor raises its
    documented error naming the argument and leaves the module as it was (the same parameters, the same
    results after); a valid one gives the reference's numbers (step against a T = 1 reference call,
    load_state_dict round-trips)."""
    H, opts, c = case
    _runtime._set_isa(c["isa"])
    rng = np.random.default_rng(c["seed"])
    m = fastlstm.LSTM(c["I"], H, seed=c["seed"], bidirectional=c["bidirectional"], **opts)
    before = m.state_dict()
    probe = rng.standard_normal((2, c["B"], c["I"]))
    y_before = m(probe)[0]
    call, err, name = _bad_surface_call(m, c, rng)
    with pytest.raises(err, match=name):
        call()
    _count("surface cases", f"surface errors ({c['action']})")
    after = m.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert np.array_equal(m(probe)[0], y_before)
    # And the valid counterpart of the action, against the reference.
    cfg = m.config
    if c["action"] == "step" and not cfg.bidirectional:
        x_t = rng.standard_normal((c["B"], c["I"]))
        out, (h, cn) = m.step(x_t)
        (ref, (rh, rc)), _ = reference.forward(cfg, {k: v.astype(np.float64) for k, v in before.items()}, x_t[None])
        np.testing.assert_allclose(out, ref[0], atol=1e-5)
        np.testing.assert_allclose(cn, rc, atol=1e-5)
        _count("valid steps compared with the reference")
    elif c["action"] == "load_state_dict":
        new = {k: rng.standard_normal(v.shape) for k, v in before.items()}
        m.load_state_dict(new)
        assert all(np.array_equal(m.state_dict()[k], new[k].astype(m.dtype)) for k in new)
        _count("valid load_state_dict round trips")
def test_huge_shapes_raise_memory_error_before_allocating():
    m = fastlstm.LSTM(4, 8)
    x = np.broadcast_to(np.zeros((1, 1, 4), np.float32), (10**5, 10**5, 4))  # a 4 GB view of 16 bytes
    with pytest.raises(MemoryError):
        m(x)
    with pytest.raises(MemoryError):
        m(x, train=True)
    with pytest.raises(MemoryError):
        fastlstm.LSTM(10**6, 10**6)


def test_a_million_steps_run():
    """T = 1e6, B = 1 (its workspace is measured in test_memory.py): finite, and the last output is h_n."""
    m = fastlstm.LSTM(2, 4, seed=0)
    x = np.broadcast_to(np.float32(0.1), (10**6, 1, 2))
    y, (h, c) = m(x)
    assert y.shape == (10**6, 1, 4) and np.isfinite(y).all()
    assert np.array_equal(y[-1], h[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_values_propagate_like_the_reference(dtype):
    m = fastlstm.LSTM(3, 5, seed=1, dtype=dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([[[1e30, -1e30, 0.0]], [[tiny, -tiny, 1.0]], [[np.inf, 0.0, 0.0]], [[np.nan, 0.0, 0.0]]], dtype)
    y, (h, c) = m(x)
    (ref, _), _ = reference.forward(m.config, m.state_dict(), x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(y[finite], ref[finite], atol=1e-6 if dtype == "float32" else 1e-14)
    # Backward: the same NaN pattern as the reference's, and its values wherever those are finite.
    m(x, train=True)
    dy = np.ones((4, 1, 5), dtype)
    dx, (dh0, dc0) = m.backward(dy)
    with np.errstate(all="ignore"):  # inf * 0 in the reference's products: NaN is the expected result
        (_, _), tape = reference.forward(m.config, m.state_dict(), x, train=True)
        rdx, (rdh0, rdc0), rgrads = reference.backward(m.config, m.state_dict(), tape, dy)
    for name, ours, ref in [("dx", dx, rdx), ("dh0", dh0, rdh0), ("dc0", dc0, rdc0)] + \
            [(k, m.grads[k], rgrads[k]) for k in rgrads]:
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=name)
        ok = np.isfinite(ref)
        scale = 1 + np.max(np.abs(ref[ok]), initial=0.0)
        atol = (1e-5 if dtype == "float32" else 1e-12) * scale
        np.testing.assert_allclose(ours[ok], ref[ok], atol=atol, err_msg=name)


def test_float32_long_sequences_stay_within_the_drift_bound():
    """T = 100000 in float32: finite, and over every step no farther from the float64 truth than twice the
    float32 reference's own drift (the tolerance rule of tests/tolerance.py), for y and the final state."""
    m = fastlstm.LSTM(4, 8, seed=3)
    x = np.random.default_rng(0).standard_normal((100_000, 1, 4)).astype(np.float32)
    y, (h, c) = m(x)
    assert np.isfinite(y).all()
    (y32, (h32, c32)), _ = reference.forward(m.config, m.state_dict(), x)
    p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
    (y64, (h64, c64)), _ = reference.forward(m.config, p64, x.astype(np.float64))
    assert_close_to_reference(y, y32, y64, "float32", "y")
    assert_close_to_reference(c, c32, c64, "float32", "c_n")


def test_calls_larger_than_the_machine_are_refused_up_front():
    """A call whose outputs and workspace exceed what the kernel can back is refused before any
    allocation, instead of being overcommitted and killed later."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        avail = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError):
        pytest.skip("no /proc/meminfo here")
    m = fastlstm.LSTM(4, 1024)
    T = int(avail // (1024 * 4)) + 1  # y alone is larger than what is available
    x = np.broadcast_to(np.zeros((1, 1, 4), np.float32), (T, 1, 4))
    with pytest.raises(MemoryError, match="GiB"):
        m(x)
    with pytest.raises(MemoryError, match="GiB"):
        m(x, train=True)


def test_training_in_one_thread_while_others_infer(threads):
    import threading

    rng = np.random.default_rng(5)
    shared = fastlstm.LSTM(8, 16, 2, bidirectional=True, seed=1)
    trainer = fastlstm.LSTM(8, 16, 2, seed=2)
    xs = [rng.standard_normal((12, 3, 8)).astype(np.float32) for _ in range(6)]
    expect = [shared(x)[0] for x in xs]
    trainer(xs[0], train=True)
    dx_expect, _ = trainer.backward(np.ones((12, 3, 16), np.float32))
    g_expect = dict(trainer.grads)
    failures = []

    def infer(i):
        for _ in range(20):
            if not np.array_equal(shared(xs[i])[0], expect[i]):
                failures.append(("infer", i))

    def train():
        for n in range(20):
            fastlstm.set_num_threads(1 + n % 2)
            trainer(xs[0], train=True)
            dx, _ = trainer.backward(np.ones((12, 3, 16), np.float32))
            same = all(np.array_equal(trainer.grads[k], g_expect[k]) for k in g_expect)
            if not (np.array_equal(dx, dx_expect) and same):
                failures.append(("train", n))

    ts = [threading.Thread(target=infer, args=(i,)) for i in range(6)] + [threading.Thread(target=train)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in ts), "deadlock"
    assert failures == []


def test_results_do_not_depend_on_which_workers_join():
    """The team is formed per call: a short call does not wait for a sleeping worker, a long one does.
    Calls spaced so that the workers are found spinning, asleep or just woken give the one-thread results."""

    rng = np.random.default_rng(8)
    m = fastlstm.LSTM(24, 40, 2, bidirectional=True, seed=4)
    s = fastlstm.LSTM(24, 40, seed=5)
    xs = [rng.standard_normal((t, 3, 24)).astype(np.float32) for t in (1, 2, 40)]
    frames = rng.standard_normal((60, 24)).astype(np.float32)
    old = fastlstm.get_num_threads()
    try:
        fastlstm.set_num_threads(1)
        expect = [m(x) for x in xs]
        state, expect_steps = None, []
        for f in frames:
            out, state = s.step(f, state)
            expect_steps.append(out)
        fastlstm.set_num_threads(max(2, old))
        for gap in (0.0, 5e-5, 3e-4, 2e-3):
            for x, (y, (h, c)) in zip(xs, expect, strict=True):
                time.sleep(gap)
                y2, (h2, c2) = m(x)
                assert np.array_equal(y2, y) and np.array_equal(h2, h) and np.array_equal(c2, c)
            state = None
            for i, f in enumerate(frames):
                if i % 7 == 0:
                    time.sleep(gap)
                out, state = s.step(f, state)
                assert np.array_equal(out, expect_steps[i])
    finally:
        fastlstm.set_num_threads(old)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_forked_child_runs_on_a_pool_of_its_own():
    """multiprocessing's fork start method (torch DataLoader workers): the child inherits the pool's state
    but none of its threads; calls there must run (not wait forever for workers that do not exist)."""
    m = fastlstm.LSTM(16, 64, 2, seed=6)  # a call long enough to wait for its team
    x = np.random.default_rng(9).standard_normal((200, 8, 16)).astype(np.float32)
    old = fastlstm.get_num_threads()
    fastlstm.set_num_threads(2)
    try:
        y = m(x)[0]  # the parent's workers exist and have run
        pid = os.fork()
        if pid == 0:  # the child: exit status 0 only if both calls give the parent's result
            ok = np.array_equal(m(x)[0], y) and np.array_equal(m(x)[0], y)
            os._exit(0 if ok else 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        fastlstm.set_num_threads(old)
