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
from fastlstm import reference
from tolerance import assert_close_to_reference

FUZZ_CASES = 2000
MUTATIONS = [None, None, None, "input_size", "T0", "B0", "int_x", "hx_shape", "hx_type", "lengths_range",
             "lengths_unbatched", "lengths_float"]
ERRORS = {"input_size": ValueError, "T0": ValueError, "B0": ValueError, "int_x": TypeError, "hx_shape": ValueError,
          "hx_type": TypeError, "lengths_range": ValueError, "lengths_unbatched": ValueError, "lengths_float": TypeError}


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
                x_dtype=draw(st.sampled_from(["float32", "float64"])), train=draw(st.booleans()),
                mutation=draw(st.sampled_from(MUTATIONS)), seed=draw(st.integers(0, 2**31)))
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
def test_fuzz_every_call_is_right_or_a_documented_error(case):
    H, opts, c = case
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
    x = (x * 10).astype(np.int32) if mut == "int_x" else x.astype(c["x_dtype"])
    x = _layout(x, c["layout"])
    DL = cfg.num_layers * cfg.num_directions
    hx = None
    if c["hx"] or mut in ("hx_shape", "hx_type"):
        sh, sc = ((DL, cfg.out_size), (DL, H)) if unbatched else ((DL, B, cfg.out_size), (DL, B, H))
        if mut == "hx_shape":
            sc = sc[:-1] + (H + 1,)
        hx = (rng.standard_normal(sh), rng.standard_normal(sc))
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
    if mut is not None:
        with pytest.raises(ERRORS[mut]):
            m(x, hx, lengths=lengths, train=c["train"])
    else:
        y, (h, cn) = m(x, hx, lengths=lengths, train=c["train"])
        if c["train"]:
            masks = m._tape[2]
            (ydt, _), _ = reference.forward(cfg, m.state_dict(), x.astype(opts["dtype"]),
                                            None if hx is None else tuple(a.astype(opts["dtype"]) for a in hx),
                                            lengths=lengths, train=True, dropout_masks=masks)
            p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
            (y64, _), _ = reference.forward(cfg, p64, x.astype(np.float64), hx, lengths=lengths, train=True,
                                            dropout_masks=None if masks is None else [a.astype(np.float64) for a in masks])
            dx, _ = m.backward(np.ones_like(y))
            assert dx.shape == x.shape and np.isfinite(dx).all()
        else:
            (ydt, _), _ = reference.forward(cfg, m.state_dict(), x.astype(opts["dtype"]),
                                            None if hx is None else tuple(a.astype(opts["dtype"]) for a in hx),
                                            lengths=lengths)
            p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
            (y64, _), _ = reference.forward(cfg, p64, x.astype(np.float64), hx, lengths=lengths)
        assert_close_to_reference(y, ydt, y64, opts["dtype"], "y")
    after = m.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_huge_shapes_raise_memory_error_before_allocating():
    m = fastlstm.LSTM(4, 8)
    x = np.broadcast_to(np.zeros((1, 1, 4), np.float32), (10**5, 10**5, 4))  # a 4 GB view of 16 bytes
    with pytest.raises(MemoryError):
        m(x)
    with pytest.raises(MemoryError):
        m(x, train=True)
    with pytest.raises(MemoryError):
        fastlstm.LSTM(10**6, 10**6)


def test_a_million_steps_run_in_bounded_workspace():
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
    m(x, train=True)
    dx, _ = m.backward(np.ones((4, 1, 5), dtype))
    assert np.isnan(dx[3]).all() or np.isnan(dx[:4]).any()  # NaN propagates back, nothing crashes


def test_float32_long_sequences_stay_within_the_drift_bound():
    m = fastlstm.LSTM(4, 8, seed=3)
    x = np.random.default_rng(0).standard_normal((100_000, 1, 4)).astype(np.float32)
    y, _ = m(x)
    assert np.isfinite(y).all()
    (y32, _), _ = reference.forward(m.config, m.state_dict(), x[:20_000])
    p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
    (y64, _), _ = reference.forward(m.config, p64, x[:20_000].astype(np.float64))
    assert_close_to_reference(y[:20_000], y32, y64, "float32", "y")


def test_calls_larger_than_the_machine_are_refused_up_front():
    """A call whose outputs and workspace exceed what the kernel can back is refused before any
    allocation, instead of being overcommitted and killed later."""
    from fastlstm import _runtime

    avail = _runtime.available_memory()
    if avail is None:
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
            if not (np.array_equal(dx, dx_expect) and all(np.array_equal(trainer.grads[k], g_expect[k]) for k in g_expect)):
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
