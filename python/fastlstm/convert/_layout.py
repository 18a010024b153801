"""The one definition of every framework's gate order, the one reorder between them, and the array and
config helpers the converters share.

Each order names the same four gates (peepholes: three) with torch's letters; Keras and ONNX call the cell
gate g "c". A framework's 4H axis (3H for ONNX's peepholes) is its gates' blocks of H in its order, so
``reorder(a, src, dst)`` moves blocks from one framework's order to another's, and ``reorder(a, dst, src)``
undoes it: the forward and inverse maps come from the same two constants.
"""

from __future__ import annotations

import numpy as np

from .._config import GATES, PEEPHOLES, Config

TORCH_GATE_ORDER = GATES  # i, f, g, o: fastlstm's and torch.nn.LSTM's (the engines read it from _config)
KERAS_GATE_ORDER = ("i", "f", "g", "o")  # Keras's i, f, c, o: torch's order
ONNX_GATE_ORDER = ("i", "o", "f", "g")  # ONNX's i, o, f, c
TORCH_PEEPHOLE_ORDER = PEEPHOLES  # i, f, o: the order of fastlstm's peephole_{i,f,o} parameters
ONNX_PEEPHOLE_ORDER = ("i", "o", "f")  # the 3H blocks of the ONNX LSTM input P


def block_order(src: tuple[str, ...], dst: tuple[str, ...]) -> tuple[int, ...]:
    """The indices of src's blocks taken in dst's order: block_order(TORCH_GATE_ORDER, ONNX_GATE_ORDER) is
    (0, 3, 1, 2). ValueError when dst is not a permutation of src."""
    if sorted(src) != sorted(dst) or len(set(src)) != len(src):
        raise ValueError(f"gate orders {src} and {dst}: expected two orders of the same distinct gates")
    return tuple(src.index(gate) for gate in dst)


def reorder(a: np.ndarray, src: tuple[str, ...], dst: tuple[str, ...]) -> np.ndarray:
    """``a``'s first axis, ``len(src)`` equal blocks in gate order ``src``, as a new C-contiguous array
    with the blocks in order ``dst`` (same dtype, same shape). ValueError when the axis does not split into
    len(src) equal blocks or the orders name different gates."""
    a = np.asarray(a)
    blocks = np.split(a, len(src), axis=0)
    out = np.empty(a.shape, a.dtype)  # C order whatever a's is (concatenate alone keeps a transpose's)
    return np.concatenate([blocks[j] for j in block_order(src, dst)], axis=0, out=out)


def numpy_copy(value) -> np.ndarray:
    """A numpy copy of an array or a (CPU or GPU, possibly grad-requiring) torch tensor; bfloat16 tensors
    become float32 (numpy has no bfloat16; float32 holds it exactly)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.array(value, copy=True)


def as_config(cfg) -> Config:
    """A Config, or a module that has one (fastlstm.LSTM, fastlstm.torch.LSTM); TypeError otherwise."""
    cfg = getattr(cfg, "config", cfg)
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg: expected a fastlstm Config or a module with .config, got {type(cfg).__name__}")
    return cfg


def naming(num_layers: int, bidirectional: bool) -> Config:
    """A Config used only for its parameter naming (param_name), for converters that read sizes from
    arrays."""
    return Config(1, 1, num_layers, bidirectional=bidirectional)
