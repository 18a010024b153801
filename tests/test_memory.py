"""Workspace bounds of the inference engine (issue: O(chunk*B*4H + B*H) besides outputs and packed weights).
Measured in a fresh process, so the peak RSS belongs to this call alone."""

from __future__ import annotations

import subprocess
import sys

# Peak-RSS growth of one inference call of LSTM(I, H) on x (T, 1, I), with x and the thread pool made first.
INFER_PROBE = """
import resource, numpy as np, fastlstm
m = fastlstm.LSTM({I}, {H}, seed=0)
x = np.random.default_rng(0).standard_normal(({T}, 1, {I}), dtype=np.float32)
fastlstm.LSTM(4, 4)(np.zeros((2, 1, 4), np.float32))  # start the thread pool outside the measurement
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
y, _ = m(x)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((peak - base) * 1024, y.nbytes, m.packed().nbytes)
"""


def _growth(probe: str):
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return map(int, out.split())


def test_long_sequence_workspace_is_bounded():
    growth, y_bytes, weight_bytes = _growth(INFER_PROBE.format(I=256, H=256, T=10000))
    assert growth <= y_bytes + weight_bytes + (16 << 20), (growth, y_bytes, weight_bytes)


def test_a_million_steps_run_in_bounded_workspace():
    """T = 1e6, B = 1: besides y (128 MB here) and the weights, the call's workspace stays O(chunk*B*4H)."""
    growth, y_bytes, weight_bytes = _growth(INFER_PROBE.format(I=4, H=32, T=10**6))
    assert y_bytes == 10**6 * 32 * 4
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
print((peak - base) * 1024, m._tape.nbytes)
"""


def test_repeated_training_calls_do_not_grow_memory():
    """A train=True call frees the previous call's saved state; the engine keeps at most one freed big buffer
    for reuse. Twenty more calls after the first must not grow the peak by more than one saved state."""
    growth, state_bytes = _growth(TRAIN_PROBE)
    assert state_bytes > (8 << 20)  # big enough for the reuse path
    assert growth <= state_bytes + (8 << 20), (growth, state_bytes)


OUTPUT_PROBE = """
import numpy as np, fastlstm
m = fastlstm.LSTM(256, 256, seed=0)
x = np.random.default_rng(0).standard_normal((40, 128, 256), dtype=np.float32)
y1, _ = m(x)  # 5.2 MB: an engine buffer
small, _ = m(x[:4])  # 0.5 MB: numpy's own memory
ref = y1.copy()
addr = y1.__array_interface__["data"][0]
del y1
y2, _ = m(x)
same = y2.__array_interface__["data"][0] == addr
equal = np.array_equal(y2, ref)
del m
y2[:] = 7  # the array owns its memory: valid and writable after the module is gone
print(int(same), int(equal and (y2 == 7).all()), int(small.flags.owndata), int(y2.flags.c_contiguous))
"""


def test_big_outputs_reuse_the_memory_of_freed_ones():
    """Outputs from 1 MiB up live in engine buffers that go back to its cache of freed big blocks: the next
    call's output of that size reuses the pages (no fault and clear per page). They are ordinary arrays."""
    same, equal, small_owns, contiguous = _growth(OUTPUT_PROBE)
    assert same == 1 and equal == 1 and small_owns == 1 and contiguous == 1
