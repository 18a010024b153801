"""The CUDA side of the seam: the CUDA sequence engine (built when nvcc was found at build time).

Pack, forward (and therefore ``step``), the training forward and backward; precisions fp32 (None), tf32, bf16
and fp16, parameters kept in float32. float64 modules and int8 raise with a message that says so.
Arrays: numpy in -> staged through device memory -> numpy out; device arrays of any DLPack framework in
(torch, cupy, jax; taken with __dlpack__(stream=1), the legacy default stream the kernels run on) -> new
device arrays of x's framework out, complete when returned (the call waits for its kernels). Training runs on
either: numpy arrays keep the saved state in the engine's device memory until backward; device arrays may
keep it in a caller's uint8 device array (a framework's reserve tensor, found again by saved_view), and
backward on device arrays (dy) returns device arrays.
"""

from __future__ import annotations

import functools
import sys

import numpy as np

from .. import _core

PRECISIONS = ["fp32", "tf32", "bf16", "fp16"]


def devices() -> list[dict]:
    return _core.cuda_devices() if _core.cuda_built else []


@functools.lru_cache(maxsize=256)
def _shape(config):
    return _core.Shape(config.input_size, config.hidden_size, config.num_layers, config.proj_size,
                       config.bidirectional, config.bias, config.peephole)


class CudaEngine:
    """Packs parameters onto one GPU and runs calls on them (the interface: fastlstm._backends)."""

    trains = True
    stale = False

    def __init__(self, core, index: int):
        self.core = core
        self.index = index
        self.device = f"cuda:{index}"

    @property
    def name(self) -> str:
        return self.core.name

    def pack(self, config, params: dict, training: bool):
        layers = [config.layer_params(params, k, d) for k in range(config.num_layers)
                  for d in range(config.num_directions)]
        return self.core.pack(_shape(config), layers, bool(training))

    def forward(self, packed, x3, h0, c0, lengths, batch_first):
        if isinstance(x3, np.ndarray):
            return _core.cuda_forward(self.core, packed, self.index, x3, h0, c0, lengths, batch_first)
        out = _core.cuda_forward_dlpack(self.core, packed, self.index, *_states(x3, h0, c0), lengths, batch_first)
        return _imported(x3, out, self.index)

    def forward_train(self, packed, x3, h0, c0, lengths, batch_first, masks, saved):
        if isinstance(x3, np.ndarray):
            if saved is not None:
                raise ValueError("saved: a state kept in a caller's buffer needs device arrays (x on the GPU); "
                                 "with numpy arrays it stays in the engine's device memory (pass None)")
            return _core.cuda_forward_train(self.core, packed, self.index, x3, h0, c0, lengths, batch_first, masks)
        y, h_n, c_n, state = _core.cuda_forward_train_dlpack(
            self.core, packed, self.index, *_states(x3, h0, c0), lengths, batch_first, _masks(masks),
            None if saved is None else _capsule("saved", saved))
        return (*_imported(x3, (y, h_n, c_n), self.index), state)

    def backward(self, packed, saved, dy3, dh_n, dc_n, batch_first, masks):
        if isinstance(dy3, np.ndarray):
            return _core.cuda_backward(self.core, packed, self.index, saved, dy3, dh_n, dc_n, batch_first, masks)
        dx, dh0, dc0, grads = _core.cuda_backward_dlpack(
            self.core, packed, self.index, saved, _capsule("dy", dy3), _capsule("dh_n", dh_n),
            _capsule("dc_n", dc_n), batch_first, _masks(masks))
        wrap = _importer(dy3)
        grads = [{k: wrap(_Exported(v, self.index)) for k, v in g.items()} for g in grads]
        return (*_imported(dy3, (dx, dh0, dc0), self.index), grads)

    def saved_view(self, packed, saved, T: int, B: int, lengths):
        if isinstance(saved, np.ndarray) or not hasattr(saved, "__dlpack__"):
            raise TypeError(f"saved: on {self.device!r} the state lives in device memory: expected the uint8 device "
                            f"array the training forward filled, got {type(saved).__name__}")
        return _core.cuda_saved_view(self.core, packed, self.index, _capsule("saved", saved), T, B)

    def sizes(self, config, T: int, B: int, train: bool) -> dict:
        return self.core.sizes(_shape(config), T, B, bool(train))


def _states(x3, h0, c0) -> list:
    return [_capsule(name, a) for name, a in (("x", x3), ("hx[0] (h0)", h0), ("hx[1] (c0)", c0))]


def _masks(masks) -> list | None:
    """Dropout masks for the engine: numpy arrays as they are (uploaded for the call), device arrays as capsules."""
    if masks is None:
        return None
    return [m if isinstance(m, np.ndarray) else _capsule(f"dropout_masks[{k}]", m) for k, m in enumerate(masks)]


def _capsule(name: str, a):
    """A DLPack capsule of ``a`` (None stays None): device arrays made ready for the legacy default stream."""
    if a is None:
        return None
    if not hasattr(a, "__dlpack__"):
        raise TypeError(f"{name}: expected a DLPack array (torch, cupy, jax) like x, got {type(a).__name__}")
    return a.__dlpack__(stream=1) if a.__dlpack_device__()[0] == 2 else a.__dlpack__()


class _Exported:
    """One result as a DLPack producer, for the caller's framework's from_dlpack (consumed once)."""

    __slots__ = ("capsule", "index")

    def __init__(self, capsule, index: int):
        self.capsule, self.index = capsule, index

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        capsule, self.capsule = self.capsule, None
        if capsule is None:
            raise BufferError("this fastlstm result was already taken by a from_dlpack")
        return capsule  # complete already: the call waited for its kernels, so any stream may read it

    def __dlpack_device__(self):
        return (2, self.index)


def _imported(like, capsules, index: int) -> tuple:
    """The call's results as new arrays of ``like``'s framework."""
    wrap = _importer(like)
    return tuple(wrap(_Exported(c, index)) for c in capsules)


def _importer(x):
    """The from_dlpack of x's framework (torch, cupy, jax, or the from_dlpack of the module x's type comes from);
    any other producer gets the DLPack objects themselves."""
    framework = type(x).__module__.split(".")[0]
    if framework == "torch":
        import torch

        return torch.from_dlpack
    if framework == "cupy":
        import cupy

        return cupy.from_dlpack
    if framework in ("jax", "jaxlib"):
        import jax.dlpack

        return jax.dlpack.from_dlpack
    own = getattr(sys.modules.get(type(x).__module__), "from_dlpack", None)
    return own if callable(own) else (lambda exported: exported)


def _precision_name(dtype: str, precision: str | None) -> str:
    if dtype != "float32":
        raise ValueError(f"dtype: CUDA runs float32 modules (parameters in float32, math per precision), got {dtype!r}")
    if precision is None or precision == "fp32":
        return "default"
    if precision in ("tf32", "bf16", "fp16"):
        return precision
    raise ValueError(f"precision: {precision!r} does not run on CUDA; it offers {PRECISIONS} "
                     "(int8 runs on the CPU)")


def make_engine(index: int, dtype: str, precision: str | None, cell: str) -> CudaEngine:
    device = f"cuda:{index}"
    name = _precision_name(dtype, precision)  # what no CUDA device could run: ValueError, on any build
    if not _core.cuda_built:
        raise RuntimeError(f"device={device!r}: this fastlstm was built without CUDA (no nvcc at build time, "
                           "or FASTLSTM_CUDA=OFF)")
    found = devices()
    if index >= len(found):
        raise RuntimeError(f"device={device!r}: no such CUDA device ({len(found)} visible)")
    return CudaEngine(_core.cuda_engine(index, dtype, name, cell), index)


def describe() -> dict | None:
    if not _core.cuda_built:
        return None
    return {"built": True, "devices": devices(), "sequence_engine": True, "precisions": list(PRECISIONS),
            "trains": True}
