"""Fits the small-|x| branch of the engines' tanh: tanh(a) = a + a*s*Q(s), s = a*a, 0 <= a <= A.

Least squares on Chebyshev nodes in float64 (close to minimax), weighted by 1/tanh(a) so the error is
relative. Prints the coefficients of Q (constant first) and the maximum relative error of the fitted
polynomial evaluated in float64. The coefficients in csrc/activations.h come from this script:
    python tools/fit_tanh_poly.py 0.625 5     (float)
    python tools/fit_tanh_poly.py 0.625 11    (double)
"""
import sys

import numpy as np

A, n = float(sys.argv[1]), int(sys.argv[2])
nodes = A * 0.5 * (1 + np.cos(np.pi * (np.arange(4000) + 0.5) / 4000))
a = np.concatenate([nodes, [A]])
s = a * a
target = (np.tanh(a) - a) / (a * s)  # Q(s) exactly
# relative weighting of tanh's error: err(tanh) = a*s*err(Q) -> relative err = s*err(Q)*a/tanh(a)
w = s * a / np.tanh(a)
V = np.vander(s, n, increasing=True)
coef, *_ = np.linalg.lstsq(V * w[:, None], target * w, rcond=None)
grid = np.linspace(1e-6, A, 200001)
gs = grid * grid
approx = grid + grid * gs * np.polynomial.polynomial.polyval(gs, coef)
rel = np.abs(approx - np.tanh(grid)) / np.tanh(grid)
print("max rel err", rel.max())
for c in coef:
    print(repr(float(c)))
