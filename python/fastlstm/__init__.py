"""fastlstm: fused LSTM kernels (C++ with SIMD on the CPU) behind a NumPy API with torch.nn.LSTM's parameters,
shapes and numbers, plus peepholes, fast variable lengths and a low-latency streaming step.

    lstm = fastlstm.LSTM(80, 256, num_layers=2, bidirectional=True, seed=0)
    y, (h_n, c_n) = lstm(x)                      # x: (T, B, 80) float32

Public names: LSTM (help(fastlstm.LSTM)), Config, functional (the layer LSTM is built on), backends(),
get_num_threads() / set_num_threads(n), reference (the same math in plain NumPy), convert (weights to and
from PyTorch, Keras and ONNX), torch (a drop-in torch.nn.LSTM, importable when torch is installed).
The full reference is docs/api.md; ``python -m fastlstm bench`` times it on this machine.
"""

from . import functional, reference
from ._config import Config
from ._lstm import LSTM
from ._runtime import backends, get_num_threads, set_num_threads

__all__ = ["LSTM", "Config", "backends", "functional", "get_num_threads", "set_num_threads", "reference"]
__version__ = "0.1.0"
