"""The engine seam: one place that maps (device, dtype, precision, cell) to an engine object.

An engine packs a model's parameters into its own weights format and runs calls on them:

    engine.pack(config, params, training) -> packed weights (opaque, immutable)
    engine.forward(packed, x3, h0, c0, lengths, batch_first) -> (y, h_n, c_n)
    engine.forward_train(packed, x3, h0, c0, lengths, batch_first, masks, saved=None) -> (y, h_n, c_n, state)
    engine.saved_view(packed, saved, T, B, lengths) -> state       (a state forward_train wrote into `saved`)
    engine.backward(packed, state, dy3, dh_n, dc_n, batch_first, masks) -> (dx, dh0, dc0, per-layer grads)
    engine.sizes(config, T, B, train) -> {"outputs", "workspace", "saved"} bytes (at most)
    engine.name, engine.device, engine.trains, engine.stale

x3 is (T, B, I) or, with batch_first, (B, T, I), in the engine's dtype with a contiguous last axis; h0/c0
are 3-D contiguous or None; lengths is a contiguous int64 (B,) array or None; saved, a writable uint8 array of
at least sizes(..)["saved"] bytes (64-byte aligned) that keeps the training state instead of the engine's
own memory (a framework's reserve tensor). The engine checks every
shape, layout and value a raw pointer depends on (ValueError / TypeError naming the argument) and the
memory a call needs (MemoryError). ``stale`` turns True when the engine should no longer be used (the CPU
kernel family selection changed): weights it packed are packed again by a fresh engine.
fastlstm.functional is the only caller.

Adding a backend: a module here with make_engine() and describe(), and its line in ``_DEVICES``
(docs/design.md has the recipe).
"""

from __future__ import annotations

from . import cpu, cuda

_DEVICES = {"cpu": cpu, "cuda": cuda}
_engines: dict[tuple, object] = {}


def parse_device(device) -> tuple[str, int]:
    """'cpu' | 'cuda' | 'cuda:N' -> (kind, index); TypeError / ValueError naming ``device``."""
    if not isinstance(device, str):
        raise TypeError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {type(device).__name__}")
    kind, colon, index = device.partition(":")
    if kind in _DEVICES and (not colon or (kind != "cpu" and index.isdigit())):
        return kind, int(index or 0)
    raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def engine_for(device: str, dtype: str, precision: str | None, cell: str = "lstm"):
    """The engine of a key: device 'cpu' | 'cuda' | 'cuda:N', dtype 'float32' | 'float64', precision None
    (the dtype's own math) or a name ('bf16', 'int8', 'tf32', 'fp16'; 'fp32' is None's name on float32).
    Raises ValueError naming ``precision`` when the device cannot run it (and says what it offers), and
    RuntimeError when the device itself is missing."""
    key = (device, dtype, precision, cell)
    engine = _engines.get(key)
    if engine is None or engine.stale:
        kind, index = parse_device(device)
        engine = _engines[key] = _DEVICES[kind].make_engine(index, dtype, precision, cell)
    return engine


def describe() -> dict:
    """Per device: what is built and what runs here (fastlstm.backends())."""
    return {kind: module.describe() for kind, module in _DEVICES.items()}
