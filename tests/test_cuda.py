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
