"""The CUDA side of the seam: the CUDA sequence engine (built when nvcc was found at build time).

Inference only in this version: pack, forward (numpy arrays in, staged through device memory, numpy arrays
out) and therefore ``step``; precisions fp32 (None), tf32, bf16 and fp16, parameters kept in float32.
Training, float64 modules and int8 raise with a message that says so.
"""

from __future__ import annotations

import functools

from .. import _core

PRECISIONS = ["fp32", "tf32", "bf16", "fp16"]


def devices() -> list[dict]:
    return _core.cuda_devices() if _core.cuda_built else []


@functools.lru_cache(maxsize=256)
def _shape(config):
    return _core.Shape(config.input_size, config.hidden_size, config.num_layers, config.proj_size,
                       config.bidirectional, config.bias, config.peephole)


def _training_error(device: str) -> RuntimeError:
    return RuntimeError(f"device={device!r}: training on CUDA is not available in this version (inference and "
                        "step run there; train on device='cpu')")


class CudaEngine:
    """Packs parameters onto one GPU and runs inference calls on them (the interface: fastlstm._backends)."""

    trains = False
    stale = False

    def __init__(self, core, index: int):
        self.core = core
        self.index = index
        self.device = f"cuda:{index}"

    @property
    def name(self) -> str:
        return self.core.name

    def pack(self, config, params: dict, training: bool):
        if training:
            raise _training_error(self.device)
        layers = [config.layer_params(params, k, d) for k in range(config.num_layers)
                  for d in range(config.num_directions)]
        return self.core.pack(_shape(config), layers, False)

    def forward(self, packed, x3, h0, c0, lengths, batch_first):
        return _core.cuda_forward(self.core, packed, self.index, x3, h0, c0, lengths, batch_first)

    def forward_train(self, *args, **kwargs):
        raise _training_error(self.device)

    def backward(self, *args, **kwargs):
        raise _training_error(self.device)

    def saved_view(self, *args, **kwargs):
        raise _training_error(self.device)

    def sizes(self, config, T: int, B: int, train: bool) -> dict:
        if train:
            raise _training_error(self.device)
        return self.core.sizes(_shape(config), T, B, False)


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
            "trains": False}
