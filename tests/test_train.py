"""The compiled training engine (train=True forward + backward) against the float64 reference: every option,
tail-hitting sizes, every kernel family, both dtypes; finite differences of the float64 engine; bitwise
determinism; the saved-state budget."""

from __future__ import annotations

import numpy as np
import pytest

import fastlstm
from fastlstm import _core, _runtime, reference
from test_engine import CASES, DTYPES, _inputs
from tolerance import assert_close_to_reference


def _as64(a):
    if a is None:
        return None
    if isinstance(a, (tuple, list)):
        return type(a)(_as64(v) for v in a)
    return a.astype(np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts,T,B,I,H", CASES + [(dict(num_layers=3, dropout=0.5, bidirectional=True), 4, 5, 3, 17)])
def test_gradients_match_reference(isa, rng, dtype, opts, T, B, I, H):
    m = fastlstm.LSTM(I, H, dtype=dtype, seed=int(rng.integers(1 << 30)), **opts)
    for hx, lengths in ((False, False), (True, True)):
        x, state, lens = _inputs(m, rng, T, B, hx=hx, lengths=lengths, dtype=dtype)
        y, (h, c) = m(x, state, lengths=lens, train=True)
        masks = m._tape.dropout_masks
        dy, dhn, dcn = (rng.standard_normal(a.shape).astype(dtype) for a in (y, h, c))
        dx, (dh0, dc0) = m.backward(dy, dhn, dcn)
        p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
        (y64, _), t64 = reference.forward(m.config, p64, _as64(x), _as64(state), lengths=lens, train=True,
                                          dropout_masks=_as64(masks))
        r64 = reference.backward(m.config, p64, t64, *(_as64(a) for a in (dy, dhn, dcn)))
        (ydt, _), tdt = reference.forward(m.config, m.state_dict(), x, state, lengths=lens, train=True,
                                          dropout_masks=masks)
        rdt = reference.backward(m.config, m.state_dict(), tdt, dy, dhn, dcn)
        assert_close_to_reference(y, ydt, y64, dtype, "y")
        for name, fast, pick in (("dx", dx, lambda r: r[0]), ("dh0", dh0, lambda r: r[1][0]),
                                 ("dc0", dc0, lambda r: r[1][1])):
            assert_close_to_reference(fast, pick(rdt), pick(r64), dtype, name)
        assert list(m.grads) == list(m.state_dict())
        for name, g in m.grads.items():
            assert g.dtype == np.dtype(dtype)
            assert_close_to_reference(g, rdt[2][name], r64[2][name], dtype, name)
        if lens is not None:  # padded steps get no gradient
            for b, n in enumerate(lens):
                assert not (dx[b, n:] if m.batch_first else dx[n:, b]).any()


def test_unbatched_training(rng):
    m = fastlstm.LSTM(3, 7, 2, bidirectional=True, proj_size=2, dtype="float64", seed=2)
    x = rng.standard_normal((5, 3))
    y, (h, c) = m(x, train=True)
    dx, (dh0, dc0) = m.backward(np.ones_like(y), np.ones_like(h), np.ones_like(c))
    (_, _), tape = reference.forward(m.config, m.state_dict(), x, train=True)
    rdx, (rdh0, rdc0), grads = reference.backward(m.config, m.state_dict(), tape, np.ones_like(y), np.ones_like(h),
                                                  np.ones_like(c))
    np.testing.assert_allclose(dx, rdx, atol=1e-12)
    np.testing.assert_allclose(dh0, rdh0, atol=1e-12)
    assert dx.shape == x.shape and dh0.shape == h.shape and dc0.shape == c.shape
    for k in grads:
        np.testing.assert_allclose(m.grads[k], grads[k], atol=1e-12)


def test_finite_differences_of_the_float64_engine(rng):
    """Spot checks of the engine's own gradients, no reference involved."""
    m = fastlstm.LSTM(3, 5, 2, bidirectional=True, proj_size=2, peephole=True, dtype="float64", seed=7)
    x, state, lens = _inputs(m, rng, 4, 3, lengths=True)
    y, (h, c) = m(x, state, lengths=lens, train=True)
    dy, dhn, dcn = (rng.standard_normal(a.shape) for a in (y, h, c))
    dx, (dh0, _) = m.backward(dy, dhn, dcn)
    grads = dict(m.grads)

    def loss(model, xx, st):
        yy, (hh, cc) = model(xx, st, lengths=lens)
        return float((yy * dy).sum() + (hh * dhn).sum() + (cc * dcn).sum())

    eps = 1e-6
    sd = m.state_dict()
    for name in ("weight_ih_l0", "weight_hh_l1_reverse", "bias_hh_l0", "weight_hr_l1", "peephole_f_l0_reverse"):
        flat = rng.integers(sd[name].size, size=3)
        for i in flat:
            idx = np.unravel_index(i, sd[name].shape)
            vals = []
            for s in (eps, -eps):
                p = {k: v.copy() for k, v in sd.items()}
                p[name][idx] += s
                m.load_state_dict(p)
                vals.append(loss(m, x, state))
            m.load_state_dict(sd)
            assert abs((vals[0] - vals[1]) / (2 * eps) - grads[name][idx]) <= 1e-6 * (1 + abs(grads[name][idx]))
    for arr, grad in ((x, dx), (state[0], dh0)):
        for i in rng.integers(arr.size, size=4):
            idx = np.unravel_index(i, arr.shape)
            vals = []
            for s in (eps, -eps):
                arr[idx] += s
                vals.append(loss(m, x, state))
                arr[idx] -= s
            assert abs((vals[0] - vals[1]) / (2 * eps) - grad[idx]) <= 1e-6 * (1 + abs(grad[idx]))


def test_gradients_are_bitwise_reproducible(rng, threads):
    """Fixed reduction order: the same bits on every run and for any thread count. (Across kernel families the
    sums over 4H run in each family's packed gate order, so only the forward is bitwise family-independent.)"""
    m = fastlstm.LSTM(17, 33, 2, bidirectional=True, proj_size=7, peephole=True, seed=3)
    x, state, lens = _inputs(m, rng, 6, 13, lengths=True, dtype="float32")
    dy = rng.standard_normal((6, 13, 14)).astype(np.float32)
    previous = _runtime.selected_isa()
    runs = []
    try:
        for isa in _runtime.available_isas():
            _runtime._set_isa(isa)
            for n in (1, 2, 3, 2):
                fastlstm.set_num_threads(n)
                m(x, state, lengths=lens, train=True)
                dx, _ = m.backward(dy)
                runs.append((isa, n, dx, dict(m.grads)))
    finally:
        _runtime._set_isa(previous)
    first = {}
    for isa, n, dx, g in runs:
        dx0, g0 = first.setdefault(isa, (dx, g))
        assert np.array_equal(dx, dx0), (isa, n)
        assert all(np.array_equal(g[k], g0[k]) for k in g0), (isa, n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [dict(num_layers=2, bidirectional=True, peephole=True, dropout=0.3),
                                  dict(proj_size=11)])
def test_cache_blocking_keeps_every_bit(isa, rng, threads, dtype, opts):
    """The cache model only changes how the products are blocked (the forward's input-projection chunks;
    backward's dh = dz W_hh and dx = dz W_ih in k and row slices once the weights outgrow half of L2): a tiny L2
    forces one-step chunks and the blocking at test sizes, with k slices that end inside the packed gate rows
    and row chunks that end inside a batch, and the outputs and gradients keep every bit, for 1 and 2 threads,
    with dropout masks on the layer input's gradient."""
    from fastlstm import functional as F

    m = fastlstm.LSTM(13, 37, dtype=dtype, seed=5, **opts)
    w = F.pack(m.config, m.state_dict(), dtype=dtype, training=True)
    x, state, lens = _inputs(m, rng, 9, 7, hx=True, lengths=True, dtype=dtype)
    masks = m.config.dropout_masks(9, 7, dtype, rng)
    dy = rng.standard_normal(m(x, state)[0].shape).astype(dtype)
    runs = []
    try:
        for l2 in (0, 4096, 0, 9000, 1 << 30):  # 1 GiB: the longest input-projection chunks
            _core.set_l2_cache_bytes(l2)
            for n in (1, 2):
                fastlstm.set_num_threads(n)
                y, _, tape = F.forward(w, x, state, lengths=lens, train=True, dropout_masks=masks)
                dx, (dh0, dc0), grads = F.backward(tape, dy)
                runs.append((l2, n, [y, F.forward(w, x, state, lengths=lens)[0], dx, dh0, dc0, *grads.values()]))
    finally:
        _core.set_l2_cache_bytes(0)
    for l2, n, got in runs:
        assert all(np.array_equal(a, b) for a, b in zip(got, runs[0][2], strict=True)), (l2, n)


def test_saved_state_budget(isa):
    """(5 H' + input width) * B values per step, layer and direction, H' = H rounded up to the SIMD width
    (the __call__ docstring; at most 16 floats), plus the dropout masks between layers, T * B * input width
    each; and exactly what the engine answers beforehand."""
    T, B, I = 50, 4, 24
    for L, bi, H, dropout in ((1, False, 64, 0.0), (2, True, 64, 0.0), (2, False, 20, 0.25), (3, True, 33, 0.5)):
        m = fastlstm.LSTM(I, H, L, bidirectional=bi, dropout=dropout, seed=0)
        m(np.zeros((T, B, I), np.float32), train=True)
        tape = m._tape
        Hp = -(-H // 16) * 16
        D = 2 if bi else 1
        budget = sum((5 * Hp + m.config.layer_input_size(k)) * B * T * D for k in range(L)) * 4
        state = L * D * B * 2 * Hp * 4 + 64 * (4 * L * D + L)  # h0, c0 and alignment
        assert tape.nbytes <= budget + state, (tape.nbytes, budget)
        w = m.packed(True)
        assert tape.nbytes == fastlstm.functional.sizes(w, T, B, train=True)["saved"]
        mask_bytes = sum(mk.nbytes for mk in tape.dropout_masks or [])
        inputs_above = sum(T * B * m.config.layer_input_size(k) * 4 for k in range(1, L))
        assert mask_bytes == (inputs_above if dropout else 0)


def test_load_state_dict_discards_a_pending_training_call(rng):
    m = fastlstm.LSTM(3, 5, seed=1, dtype="float64")
    x = rng.standard_normal((4, 2, 3))
    m(x, train=True)
    m.load_state_dict(m.state_dict())
    with pytest.raises(RuntimeError, match="train=True"):
        m.backward(np.ones((4, 2, 5)))


def test_backward_uses_the_weights_of_its_forward(rng):
    """A tape differentiates the weights it ran on, whatever was packed since (fastlstm.functional)."""
    m = fastlstm.LSTM(3, 5, seed=1, dtype="float64")
    x = rng.standard_normal((4, 2, 3))
    sd = m.state_dict()
    w = fastlstm.functional.pack(m.config, sd, dtype="float64", training=True)
    _, _, tape = fastlstm.functional.forward(w, x, train=True)
    fastlstm.functional.pack(m.config, {k: v * 0 for k, v in sd.items()}, dtype="float64", training=True)
    dx, _, grads = fastlstm.functional.backward(tape, np.ones((4, 2, 5)))
    m(x, train=True)
    dx2, _ = m.backward(np.ones((4, 2, 5)))
    np.testing.assert_array_equal(dx, dx2)
    assert all(np.array_equal(grads[k], m.grads[k]) for k in sd)


def test_backward_twice_on_one_forward_gives_the_same_bits(rng):
    """The saved state is read only: backward may run again (autograd's retain_graph, gradcheck)."""
    m = fastlstm.LSTM(5, 17, 2, bidirectional=True, peephole=True, seed=4)
    x = rng.standard_normal((6, 3, 5)).astype(np.float32)
    y, _ = m(x, train=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx1, _ = m.backward(dy)
    g1 = dict(m.grads)
    dx2, _ = m.backward(dy)
    assert np.array_equal(dx1, dx2) and all(np.array_equal(g1[k], m.grads[k]) for k in g1)


def test_padding_is_never_read(isa, rng):
    """Finished sequences leave the batch: NaN in x and dy past each length changes no bit of any output,
    gradient or dx (dx is 0 there), in both directions and every layer."""
    m = fastlstm.LSTM(5, 16, 2, bidirectional=True, seed=4)
    T, B = 9, 5
    lengths = np.array([9, 3, 7, 1, 5])
    x = rng.standard_normal((T, B, 5)).astype(np.float32)
    dy = rng.standard_normal((T, B, 32)).astype(np.float32)
    pad = np.arange(T)[:, None] >= lengths[None, :]  # (T, B)
    x[pad], dy[pad] = 0, 0
    x_nan, dy_nan = x.copy(), dy.copy()
    x_nan[pad], dy_nan[pad] = np.nan, np.nan
    results = []
    for xs, dys in ((x, dy), (x_nan, dy_nan)):
        y_inf, (h_inf, _) = m(xs, lengths=lengths)
        y, (h, c) = m(xs, lengths=lengths, train=True)
        dx, (dh0, dc0) = m.backward(dys)
        results.append([y_inf, h_inf, y, h, c, dx, dh0, dc0, *m.grads.values()])
    for a, b in zip(*results, strict=True):
        assert np.all(np.isfinite(b))
        np.testing.assert_array_equal(a, b)
    assert np.all(results[1][5][pad] == 0)
