#!/usr/bin/env python3
"""The CUDA sequence engine on small shapes with every option, for tools/gpu_check.sh's compute-sanitizer
stages (memcheck, racecheck): inference and a training call with backward, each checked against float64 (the
reference's forward; the CPU engine's float64 backward), so a run that the sanitizer passes also computed the
right numbers. Exit status 0 when every call matched."""

from __future__ import annotations

import sys

import numpy as np

import fastlstm
from fastlstm import reference

CASES = [
    dict(),
    dict(num_layers=2, bidirectional=True, peephole=True),
    dict(proj_size=3, bidirectional=True, batch_first=True),
]


def main() -> int:
    rng = np.random.default_rng(0)
    worst = 0.0
    for opts in CASES:
        for precision in (None, "bf16"):
            m = fastlstm.LSTM(5, 9, device="cuda", precision=precision, seed=1, **opts)
            c = m.config
            x = rng.standard_normal((3, 4, 5)).astype(np.float32)
            lens = np.array([4, 1, 3]) if c.batch_first else np.array([3, 2, 1, 3])  # (B, T) = (3, 4) or (4, 3)
            y, _ = m(x, lengths=lens)
            p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
            (y64, _), _ = reference.forward(c, p64, x.astype(np.float64), lengths=lens)
            dy = rng.standard_normal(y.shape).astype(np.float32)
            m(x, lengths=lens, train=True)
            dx, _ = m.backward(dy)
            m64 = fastlstm.LSTM(5, 9, dtype="float64", **opts)
            m64.load_state_dict(p64)
            m64(x.astype(np.float64), lengths=lens, train=True)
            dx64, _ = m64.backward(dy.astype(np.float64))
            for name, got, want, tol in (("y", y, y64, 1e-5), ("dx", dx, dx64, 1e-4)):
                err = float(np.abs(got - want).max())
                worst = max(worst, err)
                if err > (5e-2 if precision else tol):
                    print(f"FAILED {name} {opts} {precision}: max error {err:.3g}")
                    return 1
    print(f"every call matched float64 (max error {worst:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
