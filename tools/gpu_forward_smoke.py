#!/usr/bin/env python3
"""The CUDA sequence engine on small shapes with every option, for tools/gpu_check.sh's compute-sanitizer
stages (memcheck, racecheck): each call is checked against the float64 reference, so a run that the sanitizer
passes also computed the right numbers. Exit status 0 when every call matched."""

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
            lens = np.array([4, 1, 3]) if c.batch_first else np.array([4, 2, 1, 3])
            y, _ = m(x, lengths=lens)
            p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
            (y64, _), _ = reference.forward(c, p64, x.astype(np.float64), lengths=lens)
            err = float(np.abs(y - y64).max())
            worst = max(worst, err)
            if err > (3e-2 if precision else 1e-5):
                print(f"FAILED {opts} {precision}: max error {err:.3g}")
                return 1
    print(f"every call matched the float64 reference (max error {worst:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
