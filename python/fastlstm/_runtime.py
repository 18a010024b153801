"""Process-wide engine state: the selected CPU kernel family, the thread count, devices.

Never touches a GPU at import: devices are queried only when asked (backends(), device="cuda").
"""

from __future__ import annotations

import numbers
import os
import re

from . import _core

_cpu = _core.cpu_info()


def _initial_isa() -> str:
    name = os.environ.get("FASTLSTM_ISA", "").strip().lower()
    if not name:
        return _cpu["best_isa"]
    if name not in _cpu["supported_isas"]:
        raise ImportError(f"FASTLSTM_ISA={name!r}: expected one of {_cpu['supported_isas']} "
                          f"(built: {_cpu['built_isas']}, supported by this CPU: {_cpu['supported_isas']})")
    return name


_isa = _initial_isa()


def selected_isa() -> str:
    return _isa


def _set_isa(name: str) -> None:
    """Selects a CPU kernel family for the calls that follow (tests and comparisons; not thread-safe)."""
    global _isa
    if name not in _cpu["supported_isas"]:
        raise ValueError(f"isa: expected one of {_cpu['supported_isas']}, got {name!r}")
    _isa = name


def available_isas() -> list[str]:
    return list(_cpu["supported_isas"])


def set_num_threads(n) -> None:
    """The thread team size of the CPU engine's calls (default: FASTLSTM_NUM_THREADS, else all cores)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a thread count >= 1, got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    return _core.get_num_threads()


def cuda_devices() -> list[dict]:
    return _core.cuda_devices() if _core.cuda_built else []


def backends() -> dict:
    cuda = {"built": True, "devices": cuda_devices()} if _core.cuda_built else None
    return {
        "cpu": {"isa": _isa, "available_isas": available_isas(), "built_isas": list(_cpu["built_isas"]),
                "threads": get_num_threads()},
        "cuda": cuda,
    }


def parse_device(device) -> str:
    if not isinstance(device, str):
        raise TypeError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {type(device).__name__}")
    if device == "cpu":
        return device
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not m:
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if not _core.cuda_built:
        raise RuntimeError(f"device={device!r}: this fastlstm was built without CUDA (FASTLSTM_CUDA=OFF or no nvcc)")
    devices = cuda_devices()
    index = int(m.group(1) or 0)
    if index >= len(devices):
        raise RuntimeError(f"device={device!r}: no such CUDA device ({len(devices)} visible)")
    raise RuntimeError(f"device={device!r}: the CUDA sequence engine is not available yet in this version "
                       "(only the fused cell kernel is; see the README's feature list)")


def available_memory() -> int | None:
    """Bytes the kernel says can still be had (MemAvailable + SwapFree), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        return None


# Calls that allocate less than this skip the check: reading /proc/meminfo costs ~30 us, a tenth of a
# whole short sequence, and a shortfall this small is no different from any other allocation's.
CHECK_MEMORY_ABOVE = 64 << 20


def check_memory(nbytes: int, what: str) -> None:
    """MemoryError before an allocation the machine cannot back: overcommitted memory would otherwise be
    promised now and the process killed later, when the engine first touches it."""
    if nbytes < CHECK_MEMORY_ABOVE:
        return
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{what}: needs {nbytes / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available")
