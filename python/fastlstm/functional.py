"""fastlstm.functional: the LSTM as functions of packed weights, the layer fastlstm.LSTM and
fastlstm.torch.LSTM are built on (and a user's own module can be).

    from fastlstm import Config, functional as F

    cfg = Config(input_size=80, hidden_size=256, num_layers=2)
    w = F.pack(cfg, params)                         # params: state_dict names -> arrays; pack once, call often
    y, (h_n, c_n), _ = F.forward(w, x)              # inference
    h, (h_n, c_n) = F.step(w, x_t, (h_n, c_n))      # one streaming step

    wt = F.pack(cfg, params, training=True)         # training: the weights backward needs, too
    y, (h_n, c_n), tape = F.forward(wt, x, train=True, rng=np.random.default_rng(0))
    dx, (dh0, dc0), grads = F.backward(tape, dy)    # grads: state_dict names -> arrays

Shapes are those of fastlstm.LSTM (docs/api.md): x (T, B, I), (B, T, I) with config.batch_first, or
unbatched (T, I); hx = (h0 (D*L, B, H_out), c0 (D*L, B, H)), without the B axis for unbatched input. Arrays
are converted to the weights' dtype (float16/32/64 accepted; integer, bool, complex and object arrays raise
TypeError naming the argument). Packed weights are immutable and do not follow later changes of ``params``:
pack again after an update. On a CUDA device, x (and hx) may also be device arrays of any DLPack framework
(torch, cupy, jax: float32, hx C-contiguous): the results are then new arrays of x's framework on the same
device, without host copies; lengths stay a host array. Training too: backward on a device dy (dh_n, dc_n
device arrays as well) returns device arrays; dropout masks may be device or numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from . import _backends
from ._config import Config

__all__ = ["Config", "Weights", "Tape", "pack", "forward", "backward", "step", "sizes", "restore_tape"]

_DTYPES = ("float32", "float64")


def as_numpy(name: str, value) -> np.ndarray:
    """Anything numpy.asarray takes, torch tensors included (detached, on the CPU); TypeError naming ``name``."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists, objects without __array__ ...
        raise TypeError(f"{name}: cannot be read as an array ({exc})") from None


_KDL_CUDA = 2  # DLPack's device type of CUDA memory


def device_array(weights, value) -> bool:
    """Whether ``value`` is a DLPack array in CUDA memory that ``weights``' engine takes as it is."""
    if weights.device == "cpu" or isinstance(value, np.ndarray) or not hasattr(value, "__dlpack_device__"):
        return False
    return value.__dlpack_device__()[0] == _KDL_CUDA


def float_array(name: str, value, dtype: np.dtype) -> np.ndarray:
    """A real floating array converted to ``dtype``; TypeError naming ``name`` for any other kind."""
    a = as_numpy(name, value)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {a.dtype}")
    return a.astype(dtype, copy=False)


class Weights:
    """A model's parameters packed by one engine (device, dtype, precision): immutable, shared by any number of
    concurrent calls. ``training=True`` weights also hold what backward needs (and serve inference too).

    Attributes: ``config`` (Config), ``dtype`` (numpy dtype of the arrays calls take and return),
    ``precision`` (None or the name given to pack), ``device``, ``training``, ``nbytes`` (the packed size),
    ``engine_name`` (what runs: e.g. "cpu avx512, float32 math, float32 weights")."""

    __slots__ = ("config", "dtype", "precision", "device", "training", "engine", "packed", "_run", "_streams")

    def __init__(self, config: Config, dtype: np.dtype, precision, device: str, training: bool, engine, packed):
        self.config, self.dtype, self.precision, self.device = config, dtype, precision, device
        self.training, self.engine, self.packed = training, engine, packed
        self._run = engine.forward  # step's fast path: one attribute away
        self._streams = not config.bidirectional

    @property
    def nbytes(self) -> int:
        return self.packed.nbytes

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def stale(self) -> bool:
        """True once the engine that packed them was replaced (the CPU kernel family selection changed)."""
        return self.engine.stale

    def __repr__(self) -> str:
        return (f"fastlstm.functional.Weights({self.engine.name}, {self.nbytes} bytes, "
                f"training={self.training})")


@dataclass(frozen=True, eq=False)
class Tape:
    """What a ``train=True`` forward keeps for backward; backward() may use it more than once.

    Fields: ``weights`` (the Weights it ran on), ``saved`` (the engine's state: per step, layer and direction the
    gates and c, and each layer's input), ``dropout_masks`` (the masks it applied, or None), ``unbatched`` and
    ``batch_first`` (x's layout), ``T`` and ``B`` (steps and rows)."""

    weights: Weights
    saved: object
    dropout_masks: tuple | None
    unbatched: bool
    batch_first: bool
    T: int
    B: int

    @property
    def nbytes(self) -> int:
        """The saved state's size (the dropout masks, T * B * D*H_out values per layer but the last, come on top)."""
        return self.saved.nbytes


def _config_arg(config) -> Config:
    config = getattr(config, "config", config)  # a module that has one
    if not isinstance(config, Config):
        raise TypeError(f"config: expected a fastlstm Config, got {type(config).__name__}")
    return config


def pack(config, params, *, device: str = "cpu", dtype="float32", precision: str | None = None,
         training: bool = False) -> Weights:
    """Packs ``params`` (a mapping with state_dict's names and shapes; numpy arrays, torch tensors or anything
    numpy.asarray takes) for the engine of (device, dtype, precision). ``config`` is a Config (or a module
    with one). ``training=True`` adds what backward needs.

    Raises TypeError / ValueError naming the argument: a missing parameter, a wrong shape, a non-numeric
    array, a dtype other than 'float32' / 'float64', a precision the device cannot run (the message says what
    it offers); RuntimeError when the device is not available."""
    config = _config_arg(config)
    dt = np.dtype(dtype) if not isinstance(dtype, np.dtype) else dtype
    if dt.name not in _DTYPES:
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    if precision is not None and not isinstance(precision, str):
        raise TypeError(f"precision: expected None or a name such as 'bf16', got {type(precision).__name__}")
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a mapping of names to arrays, got {type(params).__name__}")
    engine = _backends.engine_for(device, dt.name, precision)
    arrays = {}
    for name, shape in config.param_shapes().items():
        if name not in params:
            raise ValueError(f"params: missing {name!r}")
        a = as_numpy(f"params[{name!r}]", params[name])
        if a.dtype.kind not in "fiu":
            raise TypeError(f"params[{name!r}]: expected a real numeric array, got dtype {a.dtype}")
        if a.shape != shape:
            raise ValueError(f"params[{name!r}]: expected shape {shape}, got {a.shape}")
        arrays[name] = np.ascontiguousarray(a, dtype=dt)
    packed = engine.pack(config, arrays, bool(training))
    return Weights(config, dt, precision, device, bool(training), engine, packed)


def _operand(weights: Weights, name: str, a, shape: tuple, unbatched: bool = False, on_device: bool | None = None):
    """``a`` as the engine takes it: a device array as it is (its engine checks dtype and layout), else a
    C-contiguous numpy array of the weights' dtype; ValueError naming ``name`` unless its shape is ``shape``.
    unbatched: given the B axis of 1 after the first. on_device: whether a is taken as a device array (None: as it
    is one)."""
    on_device = device_array(weights, a) if on_device is None else on_device
    if not on_device:
        a = float_array(name, a, weights.dtype)
    if tuple(a.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(a.shape)}")
    a = a[:, None] if unbatched else a
    return a if on_device else np.ascontiguousarray(a)


def _state(weights: Weights, hx, B: int, unbatched: bool):
    """hx -> (h0 [D*L,B,H_out], c0 [D*L,B,H]) contiguous in the weights' dtype, or (None, None)."""
    if hx is None:
        return None, None
    c = weights.config
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError("hx: expected a pair (h0, c0) or None")
    DL = c.num_directions * c.num_layers
    shapes = ((DL, c.out_size), (DL, c.hidden_size)) if unbatched else ((DL, B, c.out_size), (DL, B, c.hidden_size))
    h0, c0 = (_operand(weights, name, a, shape, unbatched)
              for name, a, shape in zip(("hx[0] (h0)", "hx[1] (c0)"), hx, shapes, strict=True))
    return h0, c0


def _masks(weights: Weights, dropout_masks, T: int, B: int):
    c = weights.config
    if c.num_layers < 2:
        return None
    shape = (T, B, c.num_directions * c.out_size)
    if not isinstance(dropout_masks, (list, tuple)) or len(dropout_masks) != c.num_layers - 1:
        raise TypeError(f"dropout_masks: expected {c.num_layers - 1} arrays of shape {shape}")
    return tuple(_operand(weights, f"dropout_masks[{k}]", m, shape) for k, m in enumerate(dropout_masks))


def forward(weights: Weights, x, hx=None, *, lengths=None, train: bool = False, rng: np.random.Generator | None = None,
            dropout_masks=None, saved: np.ndarray | None = None):
    """Runs the LSTM over a sequence: -> (y, (h_n, c_n), tape).

    x: (T, B, I), (B, T, I) with config.batch_first, or unbatched (T, I). hx: (h0, c0) or None (zeros).
    lengths: B integers, each in [1, T], any order (not with unbatched input): y is 0 past each length and
    h_n, c_n come from each sequence's last valid step, as torch's packed sequences. y: (T, B, D*H_out)
    (batch_first: (B, T, D*H_out)); h_n (D*L, B, H_out); c_n (D*L, B, H); all new arrays of the weights' dtype.

    train=True (weights packed with training=True) keeps what backward needs in ``tape`` (None otherwise) and
    applies dropout between layers: masks drawn from ``rng`` as Config.dropout_masks draws them, or the given
    ``dropout_masks`` (one (T, B, D*H_out) array per layer but the last); neither: no dropout. ``saved``: a
    writable uint8 array of at least sizes(weights, T, B, train=True)["saved"] bytes (64-byte aligned) that
    keeps the state instead of the engine's own memory (on a CUDA device, with x a device array: a C-contiguous
    uint8 device array); restore_tape() makes a tape of it again.

    Raises TypeError / ValueError naming the argument (x, hx[0] (h0), hx[1] (c0), lengths, dropout_masks),
    MemoryError when the call needs more memory than the machine has."""
    c = weights.config
    on_device = device_array(weights, x)
    if not on_device:
        x = float_array("x", x, weights.dtype)
    shape = tuple(x.shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"x: expected (T, B, I), (B, T, I) with batch_first, or unbatched (T, I); got shape {shape}")
    if shape[-1] != c.input_size:
        raise ValueError(f"x: expected input size {c.input_size} in the last axis, got shape {shape}")
    unbatched = len(shape) == 2
    batch_first = c.batch_first and not unbatched
    x3 = x[:, None, :] if unbatched else x
    T, B = (x3.shape[1], x3.shape[0]) if batch_first else x3.shape[:2]
    if T < 1:
        raise ValueError(f"x: the sequence length T must be >= 1, got shape {shape}")
    if B < 1:
        raise ValueError(f"x: the batch size B must be >= 1, got shape {shape}")
    h0, c0 = _state(weights, hx, B, unbatched)
    if lengths is not None:
        if unbatched:
            raise ValueError("lengths: not supported with unbatched input (there is one sequence; slice x)")
        lengths = as_numpy("lengths", lengths)
        if lengths.dtype.kind not in "iu":
            raise TypeError(f"lengths: expected integers, got dtype {lengths.dtype}")
        if lengths.shape != (B,):
            raise ValueError(f"lengths: expected shape ({B},), got {lengths.shape}")
        # Values are the engine's to check (each in [1, T]); an unsigned value past int64 stays out of range.
        lengths = np.ascontiguousarray(np.minimum(lengths, T + 1) if lengths.dtype.kind == "u" else lengths,
                                       dtype=np.int64)
    if not on_device and x3.strides[-1] != x3.itemsize:
        x3 = np.ascontiguousarray(x3)
    if train:
        if not weights.training:
            raise ValueError("train: these weights were packed without training=True")
        masks = None
        if dropout_masks is not None:
            masks = _masks(weights, dropout_masks, T, B)
        elif rng is not None:
            drawn = c.dropout_masks(T, B, weights.dtype, rng)
            masks = None if drawn is None else tuple(drawn)
        y, h_n, c_n, state = weights.engine.forward_train(weights.packed, x3, h0, c0, lengths, batch_first,
                                                          None if masks is None else list(masks), saved)
        tape = Tape(weights, state, masks, unbatched, batch_first, T, B)
    else:
        y, h_n, c_n = weights.engine.forward(weights.packed, x3, h0, c0, lengths, batch_first)
        tape = None
    if unbatched:
        return y[:, 0, :], (h_n[:, 0, :], c_n[:, 0, :]), tape
    return y, (h_n, c_n), tape


def sizes(weights: Weights, T: int, B: int, *, train: bool = False) -> dict[str, int]:
    """Bytes a call on ``weights`` of T steps on B rows needs at most: ``outputs`` (the arrays it returns; with
    train, backward's too), ``workspace`` (the engine's, freed when the call returns) and ``saved`` (train: the
    state kept for backward). The engine checks them against the memory the machine can back before each
    call."""
    return weights.engine.sizes(weights.config, int(T), int(B), bool(train))


def restore_tape(weights: Weights, saved: np.ndarray, T: int, B: int, *, lengths=None, dropout_masks=None,
                 unbatched: bool = False) -> Tape:
    """The tape of a training forward that kept its state in ``saved`` (forward(..., saved=...)): the same
    weights, T, B, lengths, dropout_masks and unbatched layout as that call (other values give other
    gradients; sizes are checked). For frameworks that hold the state as their own tensor between forward and
    backward (fastlstm.torch's custom operators)."""
    if lengths is not None:
        lengths = np.ascontiguousarray(as_numpy("lengths", lengths), dtype=np.int64)
    masks = None if dropout_masks is None else _masks(weights, dropout_masks, T, B)
    state = weights.engine.saved_view(weights.packed, saved, int(T), int(B), lengths)
    batch_first = weights.config.batch_first and not unbatched
    return Tape(weights, state, masks, bool(unbatched), batch_first, int(T), int(B))


def backward(tape: Tape, dy, dh_n=None, dc_n=None):
    """Backpropagation through time of the forward that made ``tape``: -> (dx, (dh0, dc0), grads).

    dy: y's shape; dh_n, dc_n: h_n's and c_n's shapes, or None (zeros). dx has x's shape, dh0/dc0 hx's;
    grads maps every state_dict name to its gradient (same shape). Gradients are bitwise reproducible
    (the same bits for any thread count). Raises TypeError / ValueError naming the argument."""
    if not isinstance(tape, Tape):
        raise TypeError(f"tape: expected the Tape of a train=True forward, got {type(tape).__name__}")
    w, c = tape.weights, tape.weights.config
    DL, width = c.num_directions * c.num_layers, c.num_directions * c.out_size
    T, B = tape.T, tape.B
    y_shape = (T, width) if tape.unbatched else ((B, T, width) if tape.batch_first else (T, B, width))
    state_shapes = ((DL, c.out_size), (DL, c.hidden_size)) if tape.unbatched else \
        ((DL, B, c.out_size), (DL, B, c.hidden_size))
    on_device = device_array(w, dy)  # then dh_n and dc_n are taken as device arrays too
    dy3 = _operand(w, "dy", dy, y_shape, tape.unbatched, on_device)
    states = [None if a is None else _operand(w, name, a, shape, tape.unbatched, on_device)
              for name, a, shape in (("dh_n", dh_n, state_shapes[0]), ("dc_n", dc_n, state_shapes[1]))]
    masks = None if tape.dropout_masks is None else list(tape.dropout_masks)
    dx, dh0, dc0, per_layer = w.engine.backward(w.packed, tape.saved, dy3, states[0], states[1], tape.batch_first,
                                                masks)
    layer_dirs = [(k, d) for k in range(c.num_layers) for d in range(c.num_directions)]
    by_name = {c.param_name(short, k, d): g[short] for (k, d), g in zip(layer_dirs, per_layer, strict=True)
               for short in g}
    grads = {name: by_name[name] for name in c.param_shapes()}
    if tape.unbatched:
        return dx[:, 0, :], (dh0[:, 0, :], dc0[:, 0, :]), grads
    return dx, (dh0, dc0), grads


def step(weights: Weights, x_t, hx=None):
    """One time step for streaming: x_t (B, I) or (I,), hx (h, c) as for forward with T = 1, or None ->
    (h, (h_n, c_n)) with h the step's output (B, H_out) and (h_n, c_n) the new state (L, B, H_out),
    (L, B, H); the numbers of forward on T = 1. Uni-directional weights only (ValueError otherwise)."""
    # The fast path: a batched numpy x_t and an hx of None or two numpy arrays go straight to the engine,
    # which checks every dtype, shape and layout itself; what it refuses goes the checked way below, which
    # converts what it can and raises with the caller's argument names. A refused call has no effect.
    if type(x_t) is np.ndarray and x_t.ndim == 2 and weights._streams:
        if hx is None:
            h0 = c0 = None
        elif type(hx) is tuple and len(hx) == 2 and type(hx[0]) is np.ndarray and type(hx[1]) is np.ndarray:
            h0, c0 = hx
        else:
            return _step_checked(weights, x_t, hx)
        try:
            y, h_n, c_n = weights._run(weights.packed, x_t[None], h0, c0, None, False)
            return y[0], (h_n, c_n)
        except (TypeError, ValueError):
            pass
    return _step_checked(weights, x_t, hx)


def _step_checked(weights: Weights, x_t, hx):
    c = weights.config
    if c.bidirectional:
        raise ValueError("step: a bidirectional LSTM needs the whole sequence (use __call__)")
    x_t = float_array("x_t", x_t, weights.dtype)
    if x_t.ndim not in (1, 2) or x_t.shape[-1] != c.input_size:
        raise ValueError(f"x_t: expected (B, {c.input_size}) or ({c.input_size},), got shape {x_t.shape}")
    unbatched = x_t.ndim == 1
    B = 1 if unbatched else x_t.shape[0]
    if B < 1:
        raise ValueError(f"x_t: the batch size B must be >= 1, got shape {x_t.shape}")
    h0, c0 = _state(weights, hx, B, unbatched)
    y, h_n, c_n = weights.engine.forward(weights.packed, x_t.reshape(1, B, c.input_size), h0, c0, None, False)
    if unbatched:
        return y[0, 0], (h_n[:, 0], c_n[:, 0])
    return y[0], (h_n, c_n)
