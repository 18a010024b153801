"""The CUDA library: the fused cell kernel against the reference's cell on a GPU; without one, a clear
RuntimeError instead of a crash. The device is queried inside tests only, never at import."""

from __future__ import annotations

import numpy as np
import pytest

from fastlstm import _core, reference

pytestmark = pytest.mark.skipif(not _core.cuda_built, reason="fastlstm was built without CUDA")


def _has_gpu() -> bool:
    return len(_core.cuda_devices()) > 0


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("B,H", [(1, 1), (3, 7), (16, 129), (5, 1000)])
def test_cell_matches_reference(B, H, peephole):
    if not _has_gpu():
        pytest.skip("no CUDA device visible")
    rng = np.random.default_rng(B * 1000 + H)
    z = (rng.standard_normal((B, 4 * H)) * 3).astype(np.float32)
    c_prev = rng.standard_normal((B, H)).astype(np.float32)
    peeps = [rng.standard_normal(H).astype(np.float32) for _ in range(3)] if peephole else [None] * 3
    h, c = _core.cuda_cell_forward(z, c_prev, *peeps)
    h64, c64, _ = reference.cell(z.astype(np.float64), c_prev.astype(np.float64),
                                 *[None if p is None else p.astype(np.float64) for p in peeps])
    np.testing.assert_allclose(c, c64, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(h, h64, rtol=2e-6, atol=2e-6)


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="z"):
        _core.cuda_cell_forward(np.zeros((2, 7), np.float32), np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="c_prev"):
        _core.cuda_cell_forward(np.zeros((2, 8), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="z"):
        _core.cuda_cell_forward(np.zeros((2, 8)), np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="peephole"):
        _core.cuda_cell_forward(np.zeros((2, 8), np.float32), np.zeros((2, 2), np.float32), np.zeros(2, np.float32))


def test_without_a_gpu_the_call_is_a_runtime_error():
    if _has_gpu():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(RuntimeError, match="CUDA"):
        _core.cuda_cell_forward(np.zeros((2, 8), np.float32), np.zeros((2, 2), np.float32))


# The sequence engine on a real GPU: every option, against the float64 reference; tolerances per precision
# (fp32 as on the CPU; tf32 ~1e-3; bf16 / fp16 ~1e-2 of the outputs' scale). Realistic and tail sizes.
SEQ_CASES = [
    (dict(), 7, 3, 5, 13),
    (dict(num_layers=2, bidirectional=True), 6, 4, 8, 33),
    (dict(peephole=True, proj_size=5, bidirectional=True, num_layers=2, batch_first=True), 5, 5, 6, 11),
    (dict(bias=False), 1, 1, 3, 10),
    (dict(), 100, 16, 256, 512),
    (dict(num_layers=2, bidirectional=True, proj_size=128), 50, 64, 128, 768),
]
SEQ_TOL = {None: 2e-5, "tf32": 3e-3, "bf16": 3e-2, "fp16": 5e-3}


@pytest.mark.parametrize("precision", list(SEQ_TOL))
@pytest.mark.parametrize("opts,T,B,I,H", SEQ_CASES)
def test_sequence_engine_matches_reference(opts, T, B, I, H, precision):
    if not _has_gpu():
        pytest.skip("no CUDA device visible")
    import fastlstm

    rng = np.random.default_rng(T * 7919 + H)
    m = fastlstm.LSTM(I, H, device="cuda", precision=precision, seed=int(rng.integers(1 << 30)), **opts)
    c = m.config
    x = rng.standard_normal((B, T, I) if c.batch_first else (T, B, I)).astype(np.float32)
    DL = c.num_layers * c.num_directions
    state = (rng.standard_normal((DL, B, c.out_size)).astype(np.float32),
             rng.standard_normal((DL, B, c.hidden_size)).astype(np.float32))
    lens = rng.integers(1, T + 1, size=B)
    p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
    for hx, lengths in ((None, None), (state, lens)):
        y, (h, cn) = m(x, hx, lengths=lengths)
        (y64, (h64, c64)), _ = reference.forward(c, p64, x.astype(np.float64),
                                                  None if hx is None else tuple(a.astype(np.float64) for a in hx),
                                                  lengths=lengths)
        tol = SEQ_TOL[precision] * max(1.0, float(np.abs(c64).max()))
        for name, got, want in (("y", y, y64), ("h_n", h, h64), ("c_n", cn, c64)):
            assert got.dtype == np.float32, name
            np.testing.assert_allclose(got, want, rtol=SEQ_TOL[precision], atol=tol, err_msg=name)
        if lengths is not None:  # padding is exactly zero
            for b, n in enumerate(lengths):
                assert not (y[b, n:] if c.batch_first else y[n:, b]).any()


def test_sequence_engine_step_matches_the_sequence():
    if not _has_gpu():
        pytest.skip("no CUDA device visible")
    import fastlstm

    m = fastlstm.LSTM(6, 20, num_layers=2, device="cuda", seed=3)
    x = np.random.default_rng(1).standard_normal((5, 2, 6)).astype(np.float32)
    y, _ = m(x)
    hx = None
    for t in range(5):
        yt, hx = m.step(x[t], hx)
        np.testing.assert_allclose(yt, y[t], rtol=1e-5, atol=1e-6)


def test_sequence_engine_refuses_training_and_foreign_pointers():
    if not _has_gpu():
        pytest.skip("no CUDA device visible")
    import fastlstm

    m = fastlstm.LSTM(3, 5, device="cuda", seed=1)
    with pytest.raises(RuntimeError, match="training"):
        m(np.zeros((2, 1, 3), np.float32), train=True)
    eng = _core.cuda_engine(0, "float32")
    w = eng.pack(_core.Shape(3, 5, 1, 0, False, True, False),
                 [{k: v for k, v in m.config.layer_params(m.state_dict(), 0, 0).items()}])
    with pytest.raises(ValueError, match="x: not memory of cuda:0"):  # host pointers into the device engine
        eng.forward(w, np.zeros((2, 1, 3), np.float32), None, None, None, False)
