"""The engine's vector sigmoid and tanh against numpy float64, over the whole float range, for every
kernel family: the documented error bound (lstm_kernels.h), saturation, denormals, +-inf and NaN."""

from __future__ import annotations

import numpy as np
import pytest

from fastlstm import _core, reference

ISAS = _core.cpu_info()["supported_isas"]
TRUTH = {"sigmoid": reference.sigmoid, "tanh": np.tanh}
BOUND = {np.float32: (1e-7, 4.0), np.float64: (4e-16, 4.0)}  # (absolute, ulp where the result is normal)


def _sweep(dtype) -> np.ndarray:
    rng = np.random.default_rng(7)
    finfo = np.finfo(dtype)
    mags = np.concatenate([
        # every binade
        np.logspace(np.log10(float(finfo.smallest_subnormal)), np.log10(float(finfo.max)) - 1e-9, 100_003),
        rng.uniform(0, 25, 300_001),  # where the functions curve and saturate
        np.linspace(0, 1, 10_001),  # the polynomial / exp switch of tanh
    ]).astype(dtype)
    return np.concatenate([mags, -mags])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("which", ["sigmoid", "tanh"])
@pytest.mark.parametrize("isa", ISAS)
def test_error_bound_over_the_float_range(isa, which, dtype):
    x = _sweep(dtype)
    y = _core.activation(x, which, isa).astype(np.float64)
    truth = TRUTH[which](x.astype(np.float64))
    err = np.abs(y - truth)
    abs_bound, ulp_bound = BOUND[dtype]
    assert err.max() <= abs_bound
    normal = np.abs(truth) >= np.finfo(dtype).tiny
    ulp = err[normal] / np.spacing(np.abs(truth[normal]).astype(dtype)).astype(np.float64)
    assert ulp.max() <= ulp_bound
    assert np.all((y >= -1) & (y <= 1))  # never outside the range, saturation included


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", ISAS)
def test_special_values(isa, dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30], dtype)
    s = _core.activation(x, "sigmoid", isa)
    t = _core.activation(x, "tanh", isa)
    np.testing.assert_array_equal(s[[0, 1, 2, 3, 5, 6]], [0.5, 0.5, 1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(t[[0, 1, 2, 3, 5, 6]], [0.0, -0.0, 1.0, -1.0, 1.0, -1.0])
    assert np.signbit(t[1]) and np.isnan(s[4]) and np.isnan(t[4])
    tiny = np.array([np.finfo(dtype).smallest_subnormal, -np.finfo(dtype).tiny / 3], dtype)
    np.testing.assert_array_equal(_core.activation(tiny, "tanh", isa), tiny)  # tanh(x) = x, exactly
    np.testing.assert_array_equal(_core.activation(tiny, "sigmoid", isa), [0.5, 0.5])


@pytest.mark.parametrize("n", [0, 1, 7, 15, 16, 17, 33])
def test_all_families_agree_bitwise(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 10
    outs = [_core.activation(x, w, isa) for isa in ISAS for w in ("sigmoid", "tanh")]
    for i in range(2, len(outs)):
        assert np.array_equal(outs[i], outs[i % 2])
