"""The CPU engine behind the seam: fastlstm._core's engine on the selected kernel family (ISA).

The family is the widest this CPU runs, or FASTLSTM_ISA=scalar|avx2|avx512 (read once, at import).
select_isa() switches it for the calls that follow (tests and comparisons): every engine made before turns
stale, so the weights it packed are packed again for the new family.
"""

from __future__ import annotations

import functools
import os

from .. import _core

_info = _core.cpu_info()


def _initial_isa() -> str:
    name = os.environ.get("FASTLSTM_ISA", "").strip().lower()
    if not name:
        return _info["best_isa"]
    if name not in _info["supported_isas"]:
        raise ImportError(f"FASTLSTM_ISA={name!r}: expected one of {_info['supported_isas']} "
                          f"(built: {_info['built_isas']}, supported by this CPU: {_info['supported_isas']})")
    return name


_isa = _initial_isa()
_engines: dict[tuple, CpuEngine] = {}


def selected_isa() -> str:
    return _isa


def available_isas() -> list[str]:
    return list(_info["supported_isas"])


def select_isa(name: str) -> None:
    """Selects the kernel family of the calls that follow (not thread-safe: tests and comparisons)."""
    global _isa
    if name not in _info["supported_isas"]:
        raise ValueError(f"isa: expected one of {_info['supported_isas']}, got {name!r}")
    if name != _isa:
        _isa = name
        for engine in _engines.values():
            engine.stale = True
        _engines.clear()


def _precision_name(dtype: str, precision: str | None) -> str:
    """The engine's name of a precision: None (and 'fp32' on float32, 'fp64' on float64) is the dtype's own math."""
    own = {"float32": "fp32", "float64": "fp64"}[dtype]
    if precision is None or precision == own:
        return "default"
    if precision in ("fp32", "fp64", "default"):
        raise ValueError(f"precision: {precision!r} is not the math of a {dtype} module; use None (its own math)")
    return precision


@functools.lru_cache(maxsize=256)
def _shape(config):
    """The engine's form of a Config's shape and options."""
    return _core.Shape(config.input_size, config.hidden_size, config.num_layers, config.proj_size,
                       config.bidirectional, config.bias, config.peephole)


class CpuEngine:
    """Packs parameters for one CPU kernel family and runs calls on them (the interface: fastlstm._backends)."""

    device = "cpu"
    __slots__ = ("core", "stale", "forward", "forward_train", "backward", "saved_view")

    def __init__(self, core):
        self.core = core
        self.stale = False
        # The calls go straight to the compiled engine (bound methods: no Python frame per call).
        self.forward = core.forward
        self.forward_train = core.forward_train
        self.backward = core.backward
        self.saved_view = core.saved_view

    @property
    def name(self) -> str:
        return self.core.name

    @property
    def trains(self) -> bool:
        return self.core.trains

    def pack(self, config, params: dict, training: bool):
        layers = [config.layer_params(params, k, d) for k in range(config.num_layers)
                  for d in range(config.num_directions)]
        return self.core.pack(_shape(config), layers, training)

    def sizes(self, config, T: int, B: int, train: bool) -> dict:
        return self.core.sizes(_shape(config), T, B, train)


def make_engine(index: int, dtype: str, precision: str | None, cell: str) -> CpuEngine:
    if index != 0:
        raise ValueError(f"device: 'cpu' has no index, got 'cpu:{index}'")
    key = (dtype, precision, cell)
    engine = _engines.get(key)
    if engine is None:
        core = _core.cpu_engine(_isa, dtype, _precision_name(dtype, precision), cell)
        engine = _engines[key] = CpuEngine(core)
    return engine


def precisions(isa: str, native_only: bool = False) -> dict[str, list[str]]:
    """The precisions the CPU engine runs with a kernel family of ``isa`` (natively: with the precision's own
    instructions, not a narrower ISA's emulation), per module dtype."""
    out = {}
    for dtype, own in (("float32", "fp32"), ("float64", "fp64")):
        runs = _core.precisions(isa, dtype)
        out[dtype] = [own if p == "default" else p for p, native in runs if native or not native_only]
    return out


def describe() -> dict:
    return {
        "isa": _isa,
        "available_isas": available_isas(),
        "built_isas": list(_info["built_isas"]),
        "features": list(_info["features"]),
        "precisions": precisions(_isa),
        "native_precisions": precisions(_isa, native_only=True),
        "kernel_families": list(_info["families"]),
        "threads": _core.get_num_threads(),
    }
