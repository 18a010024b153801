"""fastlstm: fused LSTM kernels (C++ SIMD on the CPU, CUDA on the GPU) behind a torch.nn.LSTM-compatible
NumPy API. See API.md for the contract; ``fastlstm.reference`` is the same math in plain NumPy."""

from . import reference
from ._lstm import LSTM
from ._runtime import backends, get_num_threads, set_num_threads

__all__ = ["LSTM", "backends", "get_num_threads", "set_num_threads", "reference"]
__version__ = "0.1.0"
