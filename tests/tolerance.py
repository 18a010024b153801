"""The tolerance rule of the tests (docs/design.md, "Testing"), in one place.

One step: |fast - ref64| <= STEP_TOL[dtype]. Whole sequences: max|fast - ref64| <= 2 * max|ref_dt - ref64| + floor,
where ref_dt is the NumPy reference run in the fast path's dtype: the engine may not be more than twice as far
from the float64 truth as the reference itself is in that dtype.
"""

from __future__ import annotations

import numpy as np

FLOOR = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}


def assert_close_to_reference(fast, ref_dt, ref64, dtype, what="") -> None:
    fast, ref_dt, ref64 = (np.asarray(a, np.float64) for a in (fast, ref_dt, ref64))
    assert fast.shape == ref64.shape, f"{what}: shape {fast.shape} != {ref64.shape}"
    bound = 2 * np.max(np.abs(ref_dt - ref64), initial=0.0) + FLOOR[np.dtype(dtype)]
    err = np.max(np.abs(fast - ref64), initial=0.0)
    assert err <= bound, f"{what}: max |fast - ref64| = {err:.3g} > bound {bound:.3g}"
