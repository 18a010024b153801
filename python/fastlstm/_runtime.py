"""Process-wide settings: the thread count (FASTLSTM_NUM_THREADS, read once at import), the CPU kernel family
(fastlstm._backends.cpu) and fastlstm.backends().

Never touches a GPU at import: devices are queried only when asked (backends(), device="cuda").
"""

from __future__ import annotations

import numbers
import os
import warnings

from . import _backends, _core
from ._backends.cpu import available_isas, selected_isa
from ._backends.cpu import select_isa as _set_isa

__all__ = ["available_isas", "backends", "get_num_threads", "selected_isa", "set_num_threads", "_set_isa"]


def _initial_threads() -> None:
    value = os.environ.get("FASTLSTM_NUM_THREADS", "").strip()
    if not value:
        return
    if value.isdigit() and 1 <= int(value) <= 1024:
        _core.set_num_threads(int(value))
        return
    warnings.warn(f"FASTLSTM_NUM_THREADS={value!r} is not a thread count (an integer from 1 to 1024): ignored; "
                  f"fastlstm uses all {_core.get_num_threads()} hardware threads", RuntimeWarning, stacklevel=2)


_initial_threads()


def set_num_threads(n) -> None:
    """Sets the largest thread team of the CPU engine's calls (default: FASTLSTM_NUM_THREADS, else every
    hardware thread). A call takes the workers that join it in time; results never depend on the team.

    Raises TypeError when ``n`` is not an int, ValueError when it is < 1."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a thread count >= 1, got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The largest thread team of the CPU engine's calls (see set_num_threads)."""
    return _core.get_num_threads()


def backends() -> dict:
    """What this fastlstm runs, per device:

    ``{"cpu": {"isa": the selected kernel family, "available_isas": [...], "built_isas": [...],
    "features": optional instructions found (avx512_bf16, avx512_vnni, avx_vnni), "precisions":
    {"float32": [...], "float64": [...]} (those the CPU runs), "native_precisions": the same shape (those it
    runs with their own instructions; the others on AVX2 emulations), "kernel_families": [...],
    "threads": n}, "cuda": None (built without CUDA) or {"built": True, "devices": [...],
    "sequence_engine": True, "precisions": ["fp32", "tf32", "bf16", "fp16"], "trains": True}}``."""
    return _backends.describe()
