"""A small end-to-end run for valgrind memcheck (tools/valgrind.sh): every engine path once, small sizes."""

import numpy as np

import fastlstm
from fastlstm import _runtime

rng = np.random.default_rng(0)
for isa in _runtime.available_isas():
    _runtime._set_isa(isa)
    for opts in (dict(), dict(num_layers=2, bidirectional=True, proj_size=3, peephole=True, dropout=0.3)):
        m = fastlstm.LSTM(5, 17, seed=1, **opts)
        x = rng.standard_normal((4, 3, 5)).astype(np.float32)
        y, _ = m(x, lengths=np.array([4, 1, 3]))
        y, _ = m(x, lengths=np.array([4, 1, 3]), train=True)
        m.backward(np.ones_like(y))
        if not m.bidirectional:
            m.step(x[0])
print("valgrind smoke: ok")
