"""fastlstm.LSTM: validates arguments, owns the parameters and their packed form, shapes outputs.

No math here: inference and training run in the compiled engine (fastlstm._core); the dropout masks are
drawn here from the module's generator. Every check that protects a raw pointer is repeated in the bindings.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from . import _core, _runtime, reference
from ._config import Config

__all__ = ["LSTM"]

_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


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
    if dt.name not in _DTYPES:
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return dt


def _as_numpy(name: str, value) -> np.ndarray:
    """Anything numpy.asarray takes, torch tensors included (detached, on the CPU)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists, objects without __array__ ...
        raise TypeError(f"{name}: cannot be read as an array ({exc})") from None


def _float_array(name: str, value, dtype: np.dtype) -> np.ndarray:
    a = _as_numpy(name, value)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array, got dtype {a.dtype}")
    return a.astype(dtype, copy=False)


class LSTM:
    """A multi-layer LSTM with torch.nn.LSTM's parameters, shapes and numbers (see API.md)."""

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, peephole=False, device="cpu", dtype="float32", seed=None):
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
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
        self.config = Config(input_size, hidden_size, num_layers, _bool_arg("bias", bias),
                             _bool_arg("batch_first", batch_first), float(dropout),
                             _bool_arg("bidirectional", bidirectional), proj_size, _bool_arg("peephole", peephole))
        self.dtype = _dtype_arg(dtype)
        self.device = _runtime.parse_device(device)
        self._rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(hidden_size)
        self._params = {name: self._frozen(self._rng.uniform(-bound, bound, shape))
                        for name, shape in self.config.param_shapes().items()}
        self._packed = None  # the parameters packed for the engine, built on first use
        self._packed_isa = None
        self._packed_train = None
        self._tape = None
        self.grads: dict[str, np.ndarray] = {}

    def __getstate__(self):  # packed weights and the tape are caches: rebuilt on use after unpickling
        state = self.__dict__.copy()
        state.update(_packed=None, _packed_isa=None, _packed_train=None, _tape=None)
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
                f"dtype={self.dtype.name!r})")

    def _frozen(self, a) -> np.ndarray:
        a = np.array(a, dtype=self.dtype, copy=True, order="C")
        a.flags.writeable = False  # the module's parameters change only through load_state_dict
        return a

    # -- parameters -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self._params.items()}

    def load_state_dict(self, state_dict, strict=True) -> None:
        """Replaces parameters by name; all or nothing (a failing call leaves the module unchanged)."""
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
            a = _as_numpy(f"state_dict[{name!r}]", value)
            if a.dtype.kind not in "fiu":
                raise TypeError(f"state_dict[{name!r}]: expected a real numeric array, got dtype {a.dtype}")
            if a.shape != shapes[name]:
                raise ValueError(f"state_dict[{name!r}]: expected shape {shapes[name]}, got {a.shape}")
            new[name] = self._frozen(a)
        self._params = new
        self._packed = self._packed_train = None

    def _engine(self, training: bool = False):
        """The parameters packed for the selected kernel family (cached until they change); training adds the
        transposed panels backward needs."""
        isa = _runtime._isa
        if training:
            packed = self._packed_train
            if packed is None or packed.isa != isa:
                packed = self._packed_train = self._pack(isa, True)
            return packed
        packed = self._packed
        if packed is None or self._packed_isa is not isa:
            packed = self._pack(isa, False)
            self._packed, self._packed_isa = packed, isa
        return packed

    def _pack(self, isa: str, training: bool):
        c = self.config
        layers = [c.layer_params(self._params, k, d) for k in range(c.num_layers) for d in range(c.num_directions)]
        return _core.pack(c.input_size, c.hidden_size, c.num_layers, c.proj_size, c.bidirectional, c.bias,
                          c.peephole, self.dtype.name, isa, layers, training)

    # -- calls ----------------------------------------------------------------------------------------
    def _check_state(self, hx, B: int, unbatched: bool):
        """hx -> (h0 [D*L,B,H_out], c0 [D*L,B,H]) as contiguous arrays of the module's dtype, or (None, None)."""
        if hx is None:
            return None, None
        c = self.config
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("hx: expected a pair (h0, c0) or None")
        DL = c.num_directions * c.num_layers
        shapes = ((DL, c.out_size), (DL, c.hidden_size)) if unbatched else \
            ((DL, B, c.out_size), (DL, B, c.hidden_size))
        out = []
        for name, a, shape in zip(("hx[0] (h0)", "hx[1] (c0)"), hx, shapes):
            a = _float_array(name, a, self.dtype)
            if a.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
            out.append(np.ascontiguousarray(a[:, None, :] if unbatched else a))
        return out[0], out[1]

    def _check_input(self, x, hx, lengths):
        """-> x3 [T,B,I] view (batch_first: [B,T,I]), h0, c0 (3-D or None), lengths (int64 or None), unbatched."""
        c = self.config
        x = _float_array("x", x, self.dtype)
        if x.ndim not in (2, 3):
            raise ValueError(f"x: expected (T, B, I), (B, T, I) with batch_first, or unbatched (T, I); got shape {x.shape}")
        if x.shape[-1] != c.input_size:
            raise ValueError(f"x: expected input size {c.input_size} in the last axis, got shape {x.shape}")
        unbatched = x.ndim == 2
        x3 = x[:, None, :] if unbatched else x
        ta, ba = (1, 0) if (c.batch_first and not unbatched) else (0, 1)
        T, B = x3.shape[ta], x3.shape[ba]
        if T < 1:
            raise ValueError(f"x: the sequence length T must be >= 1, got shape {x.shape}")
        if B < 1:
            raise ValueError(f"x: the batch size B must be >= 1, got shape {x.shape}")
        h0, c0 = self._check_state(hx, B, unbatched)
        if lengths is not None:
            if unbatched:
                raise ValueError("lengths: not supported with unbatched input (there is one sequence; slice x)")
            lengths = _as_numpy("lengths", lengths)
            if lengths.dtype.kind not in "iu":
                raise TypeError(f"lengths: expected integers, got dtype {lengths.dtype}")
            if lengths.shape != (B,):
                raise ValueError(f"lengths: expected shape ({B},), got {lengths.shape}")
            if lengths.min() < 1 or lengths.max() > T:
                raise ValueError(f"lengths: every length must be in [1, T = {T}], got min {lengths.min()}, "
                                 f"max {lengths.max()}")
            lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        return x, x3, h0, c0, lengths, unbatched

    def __call__(self, x, hx=None, *, lengths=None, train=False):
        """(y, (h_n, c_n)) of API.md. train=True applies dropout and keeps what backward needs: per time step,
        layer and direction, (5 H' + input width) * B values (the four post-activation gates and c, and the
        layer's input; H' is H rounded up to the SIMD width, 16 floats with AVX-512, so H' = H for H a
        multiple of it), plus the dropout masks between layers (T * B * input width each). backward
        recomputes h and the rest."""
        train = _bool_arg("train", train)
        x, x3, h0, c0, lengths, unbatched = self._check_input(x, hx, lengths)
        if train:
            self._tape = None  # a failing call must not leave a stale tape behind
            out, self._tape = self._train_call(x3, h0, c0, lengths, unbatched, dropout=True)
            return out
        return self._infer(x3, h0, c0, lengths, unbatched)

    def _call_bytes(self, T: int, B: int, train: bool) -> int:
        """What a call allocates besides the packed weights: outputs, and for training the saved state
        and backward's workspace (an upper bound)."""
        c, item = self.config, self.dtype.itemsize
        D, L, H, width = c.num_directions, c.num_layers, c.hidden_size, c.num_directions * c.out_size
        n = T * B * width + 2 * D * L * B * H
        if train:
            inputs = sum(c.layer_input_size(k) for k in range(L))
            n += T * B * (inputs + L * D * 5 * (H + 16)) + T * B * D * (6 * (H + 16) + 2 * width)
        elif L > 1:
            n += 2 * T * B * width
        return n * item

    def _train_call(self, x3, h0, c0, lengths, unbatched, dropout: bool):
        """The training forward on checked inputs: -> ((y, (h_n, c_n)), tape). The tape keeps, per step, layer
        and direction, the gates and c ((5H + input width) * B values, H rounded up to the SIMD width) plus the
        dropout masks; backward recomputes the rest. dropout=False: no dropout (eval mode with gradients)."""
        c = self.config
        if x3.strides[-1] != x3.itemsize:
            x3 = np.ascontiguousarray(x3)
        batch_first = c.batch_first and not unbatched
        T, B = (x3.shape[1], x3.shape[0]) if batch_first else x3.shape[:2]
        _runtime.check_memory(self._call_bytes(T, B, True), "x")
        masks = None
        if dropout and c.dropout > 0 and c.num_layers > 1:
            masks = [np.ascontiguousarray(mk) for mk in reference.make_dropout_masks(c, T, B, self.dtype, self._rng)]
        packed = self._engine(training=True)
        y, h_n, c_n, saved = _core.forward_train(packed, x3, h0, c0, lengths, batch_first, masks)
        tape = (packed, saved, masks, unbatched, batch_first, T, B)
        if unbatched:
            return (y[:, 0, :], (h_n[:, 0, :], c_n[:, 0, :])), tape
        return (y, (h_n, c_n)), tape

    def _infer(self, x3, h0, c0, lengths, unbatched):
        if x3.strides[-1] != x3.itemsize:
            x3 = np.ascontiguousarray(x3)
        batch_first = self.config.batch_first and not unbatched
        T, B = (x3.shape[1], x3.shape[0]) if batch_first else x3.shape[:2]
        _runtime.check_memory(self._call_bytes(T, B, False), "x")
        y, h_n, c_n = _core.forward(self._engine(), x3, h0, c0, lengths, batch_first)
        if unbatched:
            return y[:, 0, :], (h_n[:, 0, :], c_n[:, 0, :])
        return y, (h_n, c_n)

    def backward(self, dy, dh_n=None, dc_n=None):
        """Gradients of the last train=True call: returns (dx, (dh0, dc0)) and sets self.grads (state_dict's
        names and shapes; written, not accumulated). Deterministic: the same bits on every run."""
        if self._tape is None:
            raise RuntimeError("backward: no train=True call to differentiate (call the module with train=True first)")
        dx, states, self.grads = self._backward_tape(self._tape, dy, dh_n, dc_n)
        return dx, states

    def _backward_tape(self, tape, dy, dh_n, dc_n):
        """-> (dx, (dh0, dc0), grads) of the call that made `tape`."""
        packed, saved, masks, unbatched, batch_first, T, B = tape
        c = self.config
        DL, width = c.num_directions * c.num_layers, c.num_directions * c.out_size
        y_shape = (T, width) if unbatched else ((B, T, width) if batch_first else (T, B, width))
        state_shapes = ((DL, c.out_size), (DL, c.hidden_size)) if unbatched else \
            ((DL, B, c.out_size), (DL, B, c.hidden_size))
        dy = _float_array("dy", dy, self.dtype)
        if dy.shape != y_shape:
            raise ValueError(f"dy: expected y's shape {y_shape}, got {dy.shape}")
        states = []
        for name, a, shape in (("dh_n", dh_n, state_shapes[0]), ("dc_n", dc_n, state_shapes[1])):
            if a is not None:
                a = _float_array(name, a, self.dtype)
                if a.shape != shape:
                    raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
                a = np.ascontiguousarray(a[:, None, :] if unbatched else a)
            states.append(a)
        dy3 = np.ascontiguousarray(dy[:, None, :] if unbatched else dy)
        dx, dh0, dc0, per_layer = _core.backward(packed, saved, dy3, states[0], states[1], batch_first, masks)
        by_name = {c.param_name(short, k, d): g[short]
                   for (k, d), g in zip(((k, d) for k in range(c.num_layers) for d in range(c.num_directions)),
                                        per_layer)
                   for short in g}
        grads = {name: by_name[name] for name in c.param_shapes()}
        if unbatched:
            return dx[:, 0, :], (dh0[:, 0, :], dc0[:, 0, :]), grads
        return dx, (dh0, dc0), grads

    def step(self, x_t, hx=None):
        """One time step for streaming: x_t (B, I) or (I,) -> (h, (h_n, c_n)) with h the step's output
        (B, H_out) and (h_n, c_n) the new state (L, B, H_out), (L, B, H); the numbers of __call__ on T = 1."""
        # The streaming fast path: a batched numpy x_t and an hx of None or two numpy arrays go straight to
        # the bindings, which check every dtype, shape and layout themselves; what they refuse goes the
        # checked way below, which converts what it can and raises with the caller's argument names (x_t,
        # hx). A refused call has no effect: its outputs are new arrays.
        packed = self._packed
        if (packed is not None and self._packed_isa is _runtime._isa and type(x_t) is np.ndarray
                and x_t.ndim == 2 and not self.config.bidirectional):
            if hx is None:
                h0 = c0 = None
            elif (type(hx) is tuple and len(hx) == 2
                  and type(hx[0]) is np.ndarray and type(hx[1]) is np.ndarray):
                h0, c0 = hx
            else:
                return self._step_checked(x_t, hx)
            try:
                y, h_n, c_n = _core.forward(packed, x_t[None], h0, c0, None, False)
                return y[0], (h_n, c_n)
            except (TypeError, ValueError):
                pass
        return self._step_checked(x_t, hx)

    def _step_checked(self, x_t, hx):
        c = self.config
        if c.bidirectional:
            raise ValueError("step: a bidirectional LSTM needs the whole sequence (use __call__)")
        x_t = _float_array("x_t", x_t, self.dtype)
        if x_t.ndim not in (1, 2) or x_t.shape[-1] != c.input_size:
            raise ValueError(f"x_t: expected (B, {c.input_size}) or ({c.input_size},), got shape {x_t.shape}")
        unbatched = x_t.ndim == 1
        B = 1 if unbatched else x_t.shape[0]
        if B < 1:
            raise ValueError(f"x_t: the batch size B must be >= 1, got shape {x_t.shape}")
        h0, c0 = self._check_state(hx, B, unbatched)
        y, h_n, c_n = _core.forward(self._engine(), x_t.reshape(1, B, c.input_size), h0, c0, None, False)
        if unbatched:
            return y[0, 0], (h_n[:, 0], c_n[:, 0])
        return y[0], (h_n, c_n)
