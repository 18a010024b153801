"""Workspace bounds of the inference engine (issue: O(chunk*B*4H + B*H) besides outputs and packed weights).
Measured in a fresh process, so the peak RSS belongs to this call alone."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import resource, numpy as np, fastlstm
m = fastlstm.LSTM(256, 256, seed=0)
x = np.random.default_rng(0).standard_normal((10000, 1, 256), dtype=np.float32)
fastlstm.LSTM(4, 4)(np.zeros((2, 1, 4), np.float32))  # start the thread pool outside the measurement
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y, _ = m(x)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024, y.nbytes, m._engine().nbytes)
"""


def test_long_sequence_workspace_is_bounded():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    growth, y_bytes, weight_bytes = map(int, out.split())
    assert growth <= y_bytes + weight_bytes + (16 << 20), (growth, y_bytes, weight_bytes)


TRAIN_PROBE = """
import resource, numpy as np, fastlstm
m = fastlstm.LSTM(64, 256, seed=0)
x = np.random.default_rng(0).standard_normal((400, 16, 64), dtype=np.float32)
dy = np.ones((400, 16, 256), np.float32)
m(x, train=True); m.backward(dy)  # first call: workspace, pool, packed weights
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(20):
    m(x, train=True)
    m.backward(dy)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024, m._tape[1].nbytes)
"""


def test_repeated_training_calls_do_not_grow_memory():
    """A train=True call frees the previous call's saved state; the engine keeps at most one freed big buffer
    for reuse. Twenty more calls after the first must not grow the peak by more than one saved state."""
    out = subprocess.run([sys.executable, "-c", TRAIN_PROBE], capture_output=True, text=True, check=True).stdout
    growth, state_bytes = map(int, out.split())
    assert state_bytes > (8 << 20)  # big enough for the reuse path
    assert growth <= state_bytes + (8 << 20), (growth, state_bytes)
