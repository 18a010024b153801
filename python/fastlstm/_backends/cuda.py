"""The CUDA side of the seam. The CUDA library is built when nvcc was found (the fused cell kernel and the
device queries); the sequence engine that runs whole calls is not part of this version, so a CUDA device
cannot be selected yet: make_engine says so plainly."""

from __future__ import annotations

from .. import _core


def devices() -> list[dict]:
    return _core.cuda_devices() if _core.cuda_built else []


def make_engine(index: int, dtype: str, precision: str | None, cell: str):
    """Raises RuntimeError: the CUDA sequence engine is not part of this version (see the module's doc)."""
    device = f"cuda:{index}"
    if not _core.cuda_built:
        raise RuntimeError(f"device={device!r}: this fastlstm was built without CUDA (no nvcc at build time, "
                           "or FASTLSTM_CUDA=OFF)")
    found = devices()
    if index >= len(found):
        raise RuntimeError(f"device={device!r}: no such CUDA device ({len(found)} visible)")
    raise RuntimeError(f"device={device!r}: the CUDA sequence engine is not available in this version; "
                       "fastlstm runs on the CPU (device='cpu')")


def describe() -> dict | None:
    if not _core.cuda_built:
        return None
    return {"built": True, "devices": devices(), "sequence_engine": False}
