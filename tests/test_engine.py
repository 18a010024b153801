"""The compiled CPU engine against the float64 reference: every option, tail-hitting sizes, every kernel
family built and runnable here, both dtypes; and the engine's reproducibility promises."""

from __future__ import annotations

import numpy as np
import pytest

import fastlstm
from fastlstm import _runtime, reference
from tolerance import assert_close_to_reference

DTYPES = ["float32", "float64"]

# (options, T, B, I, H): each option appears with sizes that hit the vector tails (H not a multiple of 8
# or 16) and the row-tile tails (B not a multiple of 3 or 6).
CASES = [
    (dict(), 1, 1, 1, 1),
    (dict(), 5, 1, 3, 7),
    (dict(), 4, 13, 17, 33),
    (dict(), 3, 7, 129, 17),
    (dict(), 2, 2, 33, 257),
    (dict(bias=False), 4, 5, 7, 17),
    (dict(batch_first=True), 4, 8, 7, 17),
    (dict(num_layers=3), 4, 5, 3, 17),
    (dict(bidirectional=True), 5, 7, 7, 33),
    (dict(bidirectional=True, num_layers=2), 4, 13, 17, 7),
    (dict(proj_size=5), 4, 7, 7, 17),
    (dict(proj_size=17, num_layers=2, bidirectional=True), 3, 4, 9, 33),
    (dict(peephole=True), 5, 7, 7, 17),
    (dict(peephole=True, proj_size=3, bidirectional=True, num_layers=2, batch_first=True), 4, 5, 3, 17),
]


def _inputs(m, rng, T, B, *, hx=True, lengths=False, dtype="float64"):
    c = m.config
    shape = (B, T, c.input_size) if c.batch_first else (T, B, c.input_size)
    x = rng.standard_normal(shape).astype(dtype)
    state = None
    if hx:
        DL = c.num_layers * c.num_directions
        state = (rng.standard_normal((DL, B, c.out_size)).astype(dtype),
                 rng.standard_normal((DL, B, c.hidden_size)).astype(dtype))
    lens = rng.integers(1, T + 1, size=B) if lengths else None
    return x, state, lens


def _check(m, x, state, lens, dtype):
    params64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
    params_dt = m.state_dict()
    y, (h, c) = m(x, state, lengths=lens)
    (y64, (h64, c64)), _ = reference.forward(m.config, params64, x.astype(np.float64),
                                              None if state is None else tuple(a.astype(np.float64) for a in state),
                                              lengths=lens)
    (ydt, (hdt, cdt)), _ = reference.forward(m.config, params_dt, x, state, lengths=lens)
    for name, fast, rdt, r64 in (("y", y, ydt, y64), ("h_n", h, hdt, h64), ("c_n", c, cdt, c64)):
        assert fast.dtype == np.dtype(dtype), name
        assert_close_to_reference(fast, rdt, r64, dtype, name)
    return y, h, c


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts,T,B,I,H", CASES)
def test_engine_matches_reference(isa, rng, dtype, opts, T, B, I, H):
    m = fastlstm.LSTM(I, H, dtype=dtype, seed=int(rng.integers(1 << 30)), **opts)
    for hx, lengths in ((False, False), (True, False), (True, True)):
        x, state, lens = _inputs(m, rng, T, B, hx=hx, lengths=lengths, dtype=dtype)
        y, _, _ = _check(m, x, state, lens, dtype)
        if lens is not None:  # padding is exactly zero, whatever x held there
            for b, n in enumerate(lens):
                pad = y[b, n:] if m.batch_first else y[n:, b]
                assert not pad.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_unbatched_and_strided_inputs(isa, rng, dtype):
    m = fastlstm.LSTM(7, 17, num_layers=2, bidirectional=True, dtype=dtype, seed=3)
    x = rng.standard_normal((6, 7)).astype(dtype)
    state = (rng.standard_normal((4, 17)).astype(dtype), rng.standard_normal((4, 17)).astype(dtype))
    y, (h, c) = m(x, state)
    assert y.shape == (6, 34) and h.shape == (4, 17) and c.shape == (4, 17)
    _check(m, x, state, None, dtype)
    big = rng.standard_normal((9, 8, 14)).astype(dtype)
    for view in (big[::2, 1::2, ::2], big[::-1, :, :7], np.swapaxes(big[:, :, :7], 0, 1)):
        assert np.array_equal(m(view)[0], m(np.ascontiguousarray(view))[0])


def test_float_inputs_are_cast(rng):
    m = fastlstm.LSTM(3, 5, seed=0)
    x = rng.standard_normal((4, 2, 3))
    y64 = m(x)[0]
    assert y64.dtype == np.float32
    assert np.array_equal(y64, m(x.astype(np.float32))[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_reproducible_across_threads_tiles_and_isas(rng, threads, dtype):
    """The promise of lstm.h: one FMA chain per element in a fixed order, so neither the thread count,
    nor the rows sharing a tile, nor the kernel family changes a single bit."""
    m = fastlstm.LSTM(17, 33, num_layers=2, bidirectional=True, proj_size=7, peephole=True, dtype=dtype, seed=5)
    x, state, lens = _inputs(m, rng, 6, 13, lengths=True, dtype=dtype)
    previous = _runtime.selected_isa()
    results = []
    try:
        for isa in _runtime.available_isas():
            _runtime._set_isa(isa)
            for n in (1, 2, 3):
                fastlstm.set_num_threads(n)
                results.append((isa, n, m(x, state, lengths=lens)))
    finally:
        _runtime._set_isa(previous)
    _, _, (y0, (h0, c0)) = results[0]
    for isa, n, (y, (h, c)) in results[1:]:
        assert np.array_equal(y, y0) and np.array_equal(h, h0) and np.array_equal(c, c0), (isa, n)
    # A row alone gives the bits it gets inside the batch.
    for b in (0, 5, 12):
        sub = m(x[:, b:b + 1], (state[0][:, b:b + 1], state[1][:, b:b + 1]), lengths=lens[b:b + 1])
        assert np.array_equal(sub[0][:, 0], y0[:, b])


@pytest.mark.parametrize("dtype", DTYPES)
def test_step_equals_sequence(isa, rng, dtype):
    # H = 100: several unit blocks per thread, whose order alternates from step to step and from call to
    # call (each call starts where the last one ended): no bit may depend on it.
    for H, opts in ((17, dict()), (17, dict(num_layers=2, proj_size=3, peephole=True)), (17, dict(batch_first=True)),
                    (100, dict(num_layers=2))):
        m = fastlstm.LSTM(7, H, dtype=dtype, seed=11, **opts)
        x = rng.standard_normal((5, 3, 7)).astype(dtype)
        xs = np.swapaxes(x, 0, 1) if m.batch_first else x
        y, (h, c) = m(xs)
        state = None
        for t in range(5):
            out, state = m.step(x[t], state)
            assert np.array_equal(out, (y[:, t] if m.batch_first else y[t]))
        assert np.array_equal(state[0], h) and np.array_equal(state[1], c)
        assert np.array_equal(m(xs)[0], y)
        out, (h1, c1) = m.step(x[0, 0])  # unbatched
        assert out.shape == (m.config.out_size,) and h1.shape == (m.num_layers, m.config.out_size)
        assert np.array_equal(out, m(x[:1, :1])[0][0, 0])


def test_weights_are_packed_once_per_parameter_change(rng):
    """Calls and steps reuse the module's packed weights (training weights serve inference too);
    load_state_dict, and only it, makes new ones."""
    m = fastlstm.LSTM(6, 9, num_layers=2, seed=3)
    x = rng.standard_normal((4, 2, 6)).astype(np.float32)
    y0 = m(x)[0]
    packed = m.packed()
    assert not packed.training and packed.nbytes > 0
    for t in range(4):
        m.step(x[t])
        m(x)
    assert m.packed() is packed
    m(x, train=True)
    m.backward(np.ones_like(y0))
    train_packed = m.packed(True)
    assert train_packed.training and train_packed is not packed
    m(x, train=True)
    m(x)
    m.step(x[0])
    assert m.packed() is train_packed and m.packed(True) is train_packed
    sd = m.state_dict()
    sd["weight_hh_l1"] = sd["weight_hh_l1"] * 0.5
    m.load_state_dict(sd)
    y1 = m(x)[0]
    assert m.packed() is not train_packed and not np.array_equal(y0, y1)


def test_packed_weights_follow_the_kernel_family(rng):
    """Selecting another kernel family makes the module pack again for it (the old weights are stale)."""
    m = fastlstm.LSTM(6, 9, seed=3)
    x = rng.standard_normal((4, 2, 6)).astype(np.float32)
    m(x)
    before = m.packed()
    previous = _runtime.selected_isa()
    try:
        for isa in _runtime.available_isas():
            _runtime._set_isa(isa)
            m(x)
            assert isa in m.packed().engine_name
    finally:
        _runtime._set_isa(previous)
    assert len(_runtime.available_isas()) == 1 or before.stale


def test_long_sequence_stays_finite_and_close():
    m = fastlstm.LSTM(8, 16, seed=2)
    x = np.random.default_rng(1).standard_normal((3000, 2, 8)).astype(np.float32)
    y, _ = m(x)
    (y64, _), _ = reference.forward(m.config, {k: v.astype(np.float64) for k, v in m.state_dict().items()},
                                    x.astype(np.float64))
    (y32, _), _ = reference.forward(m.config, m.state_dict(), x)
    assert np.isfinite(y).all()
    assert_close_to_reference(y, y32, y64, "float32", "y")


def test_machine_probes(isa):
    """The benchmark's bounds: the FMA-loop peak and the read bandwidth of each kernel family and the cost of
    a step's exchange between threads, positive and finite; a size out of range is a ValueError naming it."""
    from fastlstm import _core

    assert 0 < _core.fma_peak_gflops(isa, 2, 0.01) < 1e5
    for size in (4096, 100_000, 1 << 20):  # not a multiple of the sweep: the tail is left out, not overrun
        assert 0 < _core.read_bandwidth_gbs(isa, 2, size, 0.01) < 1e5
    with pytest.raises(ValueError, match="bytes_per_thread"):
        _core.read_bandwidth_gbs(isa, 1, 0, 0.01)
    for threads in (1, 2):
        assert 0 <= _core.step_exchange_us(threads, 512, 1000) < 1e4
    with pytest.raises(ValueError, match="bytes"):
        _core.step_exchange_us(2, 0)
