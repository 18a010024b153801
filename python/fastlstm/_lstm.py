"""fastlstm.LSTM: validates the constructor's arguments, owns the parameters, the dropout generator and the
packed weights; every call goes through fastlstm.functional to the engine of (device, dtype, precision)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from . import _backends
from . import functional as F
from ._config import Config

__all__ = ["LSTM"]

_step = F.step  # bound once: step() is called once per sample in streaming loops


def _int_arg(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def _bool_arg(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def _dtype_arg(value) -> np.dtype:
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(f"dtype: expected 'float32' or 'float64', got {value!r}") from None
    if dt.name not in ("float32", "float64"):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return dt


def checked_config(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                   bidirectional=False, proj_size=0, peephole=False) -> Config:
    """The Config of the constructor's arguments, each checked: TypeError / ValueError naming it."""
    input_size = _int_arg("input_size", input_size, 1)
    hidden_size = _int_arg("hidden_size", hidden_size, 1)
    num_layers = _int_arg("num_layers", num_layers, 1)
    proj_size = _int_arg("proj_size", proj_size, 0)
    if proj_size >= hidden_size:
        raise ValueError(f"proj_size: expected 0 <= proj_size < hidden_size = {hidden_size}, got {proj_size}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
        raise TypeError(f"dropout: expected a float, got {type(dropout).__name__}")
    if not 0.0 <= float(dropout) <= 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1], got {dropout}")
    return Config(input_size, hidden_size, num_layers, _bool_arg("bias", bias), _bool_arg("batch_first", batch_first),
                  float(dropout), _bool_arg("bidirectional", bidirectional), proj_size, _bool_arg("peephole", peephole))


class LSTM:
    """A multi-layer LSTM with torch.nn.LSTM's parameters, shapes, gate order and numbers, on fastlstm's engines.

    LSTM(input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False, dropout=0.0,
         bidirectional=False, proj_size=0, peephole=False, device="cpu", dtype="float32", seed=None,
         precision=None)

    Arguments (torch.nn.LSTM's, plus the last five):
        input_size, hidden_size (H): ints >= 1.   num_layers (L): int >= 1.
        bias: the b_ih and b_hh parameters.       batch_first: x and y are (B, T, ...) instead of (T, B, ...).
        dropout: probability in [0, 1] of zeroing each output of every layer but the last, in training calls.
        bidirectional: a reverse direction too (D = 2; its outputs are concatenated to the forward ones).
        proj_size (P): 0 or in [1, H): h is projected to P values (H_out = P, else H_out = H).
        peephole: the peephole connections p_i, p_f, p_o (ONNX's LSTM input P; Gers & Schmidhuber).
        device: "cpu", or "cuda" / "cuda:N" (inference, step, and training on numpy arrays).
        dtype: "float32" (the fast path) or "float64": the parameters', inputs' and outputs' type.
        seed: int or None: the generator of the initial parameters and of the dropout masks.
        precision: None (the dtype's own math; "fp32" names it on float32) or a low-precision mode; a mode
            this device cannot run raises ValueError naming what it offers (fastlstm.backends()).

    Parameters (state_dict(), the names and shapes of torch.nn.LSTM; sfx "" or "_reverse", k the layer):
        weight_ih_l{k}{sfx} (4H, I or D*H_out), weight_hh_l{k}{sfx} (4H, H_out), bias_ih/bias_hh_l{k}{sfx} (4H,),
        weight_hr_l{k}{sfx} (P, H) with a projection, peephole_{i,f,o}_l{k}{sfx} (H,) with peepholes;
        gate blocks in the order i, f, g, o. Initial values uniform(-1/sqrt(H), 1/sqrt(H)) from ``seed``.

    Calls: ``lstm(x, hx=None, lengths=None, train=False)`` -> (y, (h_n, c_n)); ``lstm.backward(dy)`` after a
    train=True call -> (dx, (dh0, dc0)) and ``lstm.grads``; ``lstm.step(x_t, hx)`` for streaming. See each
    method's help. Errors: TypeError for a wrong type, ValueError for a wrong value or shape, both naming the
    argument; a failing call never changes the parameters. docs/api.md is the full reference.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, peephole=False, device="cpu", dtype="float32", seed=None,
                 precision=None):
        self.config = checked_config(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                                     proj_size, peephole)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
        if precision is not None and not isinstance(precision, str):
            raise TypeError(f"precision: expected None or a name such as 'bf16', got {type(precision).__name__}")
        self.dtype = _dtype_arg(dtype)
        _backends.parse_device(device)
        self.device = device
        self.precision = precision
        _backends.engine_for(device, self.dtype.name, precision)  # a device or precision that cannot run: now
        self._rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.config.hidden_size)
        self._params = {name: self._frozen(self._rng.uniform(-bound, bound, shape))
                        for name, shape in self.config.param_shapes().items()}
        self._weights: dict[bool, F.Weights] = {}  # packed on first use: {training: weights}
        self._step_weights: F.Weights | None = None  # those step() last used
        self._tape: F.Tape | None = None
        self.grads: dict[str, np.ndarray] = {}

    def __getstate__(self):  # packed weights and the tape are caches: rebuilt on use after unpickling
        state = self.__dict__.copy()
        state.update(_weights={}, _step_weights=None, _tape=None)
        return state

    # -- the torch-like attributes -------------------------------------------------------------------
    input_size = property(lambda self: self.config.input_size)
    hidden_size = property(lambda self: self.config.hidden_size)
    num_layers = property(lambda self: self.config.num_layers)
    bias = property(lambda self: self.config.bias)
    batch_first = property(lambda self: self.config.batch_first)
    dropout = property(lambda self: self.config.dropout)
    bidirectional = property(lambda self: self.config.bidirectional)
    proj_size = property(lambda self: self.config.proj_size)
    peephole = property(lambda self: self.config.peephole)

    def __repr__(self) -> str:
        c = self.config
        return (f"fastlstm.LSTM({c.input_size}, {c.hidden_size}, num_layers={c.num_layers}, bias={c.bias}, "
                f"batch_first={c.batch_first}, dropout={c.dropout}, bidirectional={c.bidirectional}, "
                f"proj_size={c.proj_size}, peephole={c.peephole}, device={self.device!r}, "
                f"dtype={self.dtype.name!r}, precision={self.precision!r})")

    def _frozen(self, a) -> np.ndarray:
        a = np.array(a, dtype=self.dtype, copy=True, order="C")
        a.flags.writeable = False  # the module's parameters change only through load_state_dict
        return a

    # -- parameters -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The parameters, as a new dict of copies (numpy arrays of the module's dtype), under torch.nn.LSTM's
        names and in its order (peepholes last per layer and direction). torch.nn.LSTM.load_state_dict takes
        it after ``{k: torch.from_numpy(v) for k, v in d.items()}``."""
        return {name: value.copy() for name, value in self._params.items()}

    def load_state_dict(self, state_dict, strict=True) -> None:
        """Replaces parameters by name, all or nothing: a failing call leaves the module unchanged.

        state_dict: a mapping of names to numpy arrays, torch tensors or anything numpy.asarray takes (real
        numbers, converted to the module's dtype); ``torch.nn.LSTM(...).state_dict()`` loads unchanged.
        strict=True: missing or unexpected names raise ValueError listing them; strict=False ignores unknown
        names and keeps the current value of missing ones. A wrong shape raises ValueError naming the key, a
        non-numeric array TypeError. A pending train=True call is discarded (backward raises RuntimeError)."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
        shapes = self.config.param_shapes()
        if strict:
            missing = [k for k in shapes if k not in state_dict]
            unexpected = [k for k in state_dict if k not in shapes]
            if missing or unexpected:
                raise ValueError(f"state_dict: missing keys {missing}, unexpected keys {unexpected}")
        new = dict(self._params)
        for name, value in state_dict.items():
            if name not in shapes:
                continue
            a = F.as_numpy(f"state_dict[{name!r}]", value)
            if a.dtype.kind not in "fiu":
                raise TypeError(f"state_dict[{name!r}]: expected a real numeric array, got dtype {a.dtype}")
            if a.shape != shapes[name]:
                raise ValueError(f"state_dict[{name!r}]: expected shape {shapes[name]}, got {a.shape}")
            new[name] = self._frozen(a)
        self._params = new
        self._weights = {}
        self._step_weights = None
        self._tape = None

    def packed(self, training: bool = False) -> F.Weights:
        """The parameters packed for this module's engine (fastlstm.functional.Weights), built on first use and
        kept until the parameters change; training=True also holds what backward needs (and serves inference)."""
        w = self._weights.get(True)
        if not training and (w is None or w.stale):
            w = self._weights.get(False)
        if w is None or w.stale:
            w = F.pack(self.config, self._params, device=self.device, dtype=self.dtype, precision=self.precision,
                       training=training)
            self._weights = {training: w}
            self._step_weights = None  # step() takes these too (training weights serve inference)
        return w

    # -- calls ----------------------------------------------------------------------------------------
    def __call__(self, x, hx=None, *, lengths=None, train=False):
        """Runs the LSTM over a sequence: -> (y, (h_n, c_n)).

        x: (T, B, I), or (B, T, I) with batch_first, or unbatched (T, I); any real floating dtype (converted to
            the module's dtype). T, B >= 1.
        hx: (h0, c0) with h0 (D*L, B, H_out) and c0 (D*L, B, H) (no B axis for unbatched input), or None (zeros).
        lengths: B integers, each in [1, T], in any order (torch's pack_padded_sequence semantics): y[t, b] = 0
            for t >= lengths[b], h_n and c_n come from each sequence's last valid step, the reverse direction
            starts at lengths[b] - 1, and the work done is proportional to sum(lengths).
        train: keep what backward() needs and apply dropout (masks drawn from the module's generator). Kept
            per step, layer and direction: (5 H' + input width) * B values (the four gates and c, and the layer's
            input; H' is H rounded up to the SIMD width, 16 floats with AVX-512), plus the dropout masks between
            layers (T * B * D*H_out each). backward recomputes h and the rest.

        Returns y: (T, B, D*H_out) (batch_first: (B, T, D*H_out); unbatched: (T, D*H_out)), the directions
        concatenated; h_n: (D*L, B, H_out) and c_n: (D*L, B, H), layers and directions interleaved as torch's.
        New arrays of the module's dtype.

        Raises TypeError (an integer, bool, complex or object array; hx not a pair) or ValueError (a shape, T or
        B of 0, a length out of range, lengths with unbatched input), naming the argument; MemoryError when the
        call needs more memory than the machine has."""
        train = _bool_arg("train", train)
        if train:
            self._tape = None  # a failing call must not leave a stale tape behind
            y, state, self._tape = F.forward(self.packed(True), x, hx, lengths=lengths, train=True, rng=self._rng)
            return y, state
        y, state, _ = F.forward(self.packed(False), x, hx, lengths=lengths)
        return y, state

    def backward(self, dy, dh_n=None, dc_n=None):
        """Gradients of the last train=True call: -> (dx, (dh0, dc0)), and sets ``self.grads``.

        dy: y's shape; dh_n, dc_n: h_n's and c_n's shapes, or None (zeros). dx has x's shape (0 past each
        length), dh0/dc0 hx's. ``grads`` is a new dict with state_dict()'s names and shapes (written, not
        accumulated). Deterministic: the same bits on every run and for any thread count.

        Raises RuntimeError without a preceding train=True call (or after load_state_dict), TypeError /
        ValueError naming a malformed argument."""
        if self._tape is None:
            raise RuntimeError("backward: no train=True call to differentiate (call the module with train=True first)")
        dx, states, self.grads = F.backward(self._tape, dy, dh_n, dc_n)
        return dx, states

    def step(self, x_t, hx=None):
        """One time step for streaming, with the least overhead: -> (h, (h_n, c_n)).

        x_t: (B, I) or unbatched (I,). hx: (h, c) with h (L, B, H_out) and c (L, B, H) (no B axis when
        unbatched), or None (zeros). Returns the step's output h (B, H_out) and the new state (h_n, c_n); the
        numbers of __call__ on T = 1. A bidirectional module raises ValueError (its reverse direction needs
        the future). Feed the returned state back as the next call's hx."""
        w = self._step_weights
        if w is None or w.engine.stale:
            w = self._step_weights = self.packed(False)
        return _step(w, x_t, hx)
