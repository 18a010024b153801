"""fastlstm.torch: a drop-in torch.nn.LSTM that runs on fastlstm's engines (importable only with torch).

    from fastlstm.torch import LSTM          # instead of torch.nn.LSTM
    lstm = LSTM(80, 256, num_layers=2, bidirectional=True, peephole=False)

Same constructor, attributes, parameter names and order (so torch.manual_seed gives the same initial weights
as nn.LSTM), state_dict, forward(input, hx=None) with tensors or a PackedSequence, the same outputs, and
gradients through a torch.autograd.Function that calls fastlstm's forward and backward. What differs:
`peephole=True` adds peephole_{i,f,o}_l{k}{sfx} parameters; dropout masks are drawn by NumPy from a seed taken
from torch's generator (torch.manual_seed reproduces them, but they are not nn.LSTM's masks); CPU tensors only
until the CUDA engine lands.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ._config import Config
from ._lstm import LSTM as _CoreLSTM

__all__ = ["LSTM"]

_NP_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


class _Function(torch.autograd.Function):
    """(x, h0, c0, *params) -> (y, h_n, c_n); backward through fastlstm's BPTT."""

    @staticmethod
    def forward(ctx, owner, x, h0, c0, lengths, dropout, *params):
        core = owner._core_for(params)
        if dropout is not None:  # masks follow torch's generator, so torch.manual_seed reproduces them
            core._rng = np.random.default_rng(dropout)
        x_np = x.detach().numpy()
        state = (h0.detach().numpy(), c0.detach().numpy())
        x_np, x3, h0_np, c0_np, lengths, unbatched = core._check_input(x_np, state, lengths)
        if any(ctx.needs_input_grad):
            (y, (h_n, c_n)), ctx.tape = core._train_call(x3, h0_np, c0_np, lengths, unbatched,
                                                          dropout=dropout is not None)
            ctx.core = core
        else:
            y, (h_n, c_n) = core._infer(x3, h0_np, c0_np, lengths, unbatched)
        return torch.from_numpy(y), torch.from_numpy(h_n), torch.from_numpy(c_n)

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        core = ctx.core
        dx, (dh0, dc0), grads = core._backward_tape(ctx.tape, dy.numpy(), dh_n.numpy(), dc_n.numpy())
        param_grads = [torch.from_numpy(grads[name]) for name in core.config.param_shapes()]
        return (None, torch.from_numpy(dx), torch.from_numpy(dh0), torch.from_numpy(dc0), None, None, *param_grads)


class LSTM(nn.Module):
    """torch.nn.LSTM's interface on fastlstm, plus peepholes."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, *, peephole: bool = False):
        super().__init__()
        # The core validates every argument (naming it) and owns the packed weights.
        self._config_core = _CoreLSTM(input_size, hidden_size, num_layers, bias=bias, batch_first=batch_first,
                                      dropout=float(dropout), bidirectional=bidirectional, proj_size=proj_size,
                                      peephole=peephole)
        cfg = self._config_core.config
        self.mode = "LSTM"
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size, self.peephole = bidirectional, proj_size, peephole
        if device is not None and torch.device(device).type != "cpu":
            raise RuntimeError(f"device={device!r}: fastlstm.torch runs on the CPU until the CUDA engine lands")
        factory = {"dtype": dtype or torch.get_default_dtype()}
        self._flat_weights_names = list(cfg.param_shapes())
        for name, shape in cfg.param_shapes().items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
        self._cores: dict[str, _CoreLSTM] = {}
        self._synced: dict[str, tuple] = {}
        self.reset_parameters()

    def __getstate__(self):  # the cached engine modules are rebuilt from the parameters after unpickling
        state = self.__dict__.copy()
        state["_cores"], state["_synced"] = {}, {}
        return state

    @property
    def config(self) -> Config:
        return self._config_core.config

    @property
    def _flat_weights(self):
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self):
        per = len(self._flat_weights_names) // (self.num_layers * self.config.num_directions)
        w = self._flat_weights
        return [w[i:i + per] for i in range(0, len(w), per)]

    def flatten_parameters(self) -> None:
        """nn.LSTM's hook to compact weights for cuDNN; fastlstm packs its own (on the next call after a
        change), so there is nothing to do."""

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("proj_size", 0), ("peephole", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    def _core_for(self, params) -> _CoreLSTM:
        """The fastlstm module of the parameters' dtype, with their current values (reloaded and repacked
        only when a parameter changed since the last call). A change is seen by the tensors' version counters
        (optimizers, in-place ops) or, where those did not move, by comparing the bits: writes through
        `.data` (old-style init and optimizer code) bump no counter. The comparison reads the weights once,
        about 1 ms for 16 MB, against the tens of milliseconds of a repack."""
        dtype = params[0].dtype
        if dtype not in _NP_DTYPES:
            raise TypeError(f"parameters: fastlstm computes in float32 or float64, not {dtype}")
        key = _NP_DTYPES[dtype]
        core = self._cores.get(key)
        if core is None:
            c = self.config
            core = self._cores[key] = _CoreLSTM(c.input_size, c.hidden_size, c.num_layers, bias=c.bias,
                                                batch_first=c.batch_first, dropout=c.dropout,
                                                bidirectional=c.bidirectional, proj_size=c.proj_size,
                                                peephole=c.peephole, dtype=key)
        version = tuple((p._version, p.data_ptr()) for p in params)
        if self._synced.get(key) != version or not all(
                np.array_equal(_bits(p.detach().numpy()), _bits(core._params[n]))
                for n, p in zip(self._flat_weights_names, params)):
            core.load_state_dict({n: p.detach().numpy() for n, p in zip(self._flat_weights_names, params)})
            self._synced[key] = version
        return core

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        if packed:
            padded, lengths = pad_packed_sequence(input, batch_first=self.batch_first)
            x, lengths = padded, lengths.numpy()
        else:
            x, lengths = input, None
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input: expected a tensor or PackedSequence, got {type(x).__name__}")
        if x.device.type != "cpu":
            raise RuntimeError("input: fastlstm.torch runs on the CPU until the CUDA engine lands")
        params = self._flat_weights
        x = x.to(params[0].dtype)
        c = self.config
        unbatched = x.dim() == 2
        B = 1 if unbatched else x.shape[0 if self.batch_first else 1]
        DL = c.num_layers * c.num_directions
        if hx is None:
            shape_h = (DL, c.out_size) if unbatched else (DL, B, c.out_size)
            shape_c = (DL, c.hidden_size) if unbatched else (DL, B, c.hidden_size)
            hx = (x.new_zeros(shape_h), x.new_zeros(shape_c))
        h0, c0 = (t.to(params[0].dtype) for t in hx)
        dropout_seed = None  # None: no dropout (eval mode, or nothing to drop)
        if self.training and self.dropout > 0 and self.num_layers > 1:
            dropout_seed = int(torch.randint(0, 2**62, (1,)).item())
        y, h_n, c_n = _Function.apply(self, x, h0, c0, lengths, dropout_seed, *params)
        if packed:
            # The same packed layout as the input: time-major, sorted rows alive at each step.
            if self.batch_first:
                y = y.transpose(0, 1)
            idx = input.sorted_indices if input.sorted_indices is not None else torch.arange(y.shape[1])
            rows = [y[t, idx[: int(n)]] for t, n in enumerate(input.batch_sizes)]
            y = PackedSequence(torch.cat(rows), input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        return y, (h_n, c_n)


def _bits(a: np.ndarray) -> np.ndarray:
    """The array as unsigned integers of its width: equality of bits (NaN equals itself, -0 differs from 0)."""
    return a.view(np.uint32 if a.itemsize == 4 else np.uint64)


def _numpy_ok() -> bool:  # torch built without numpy support cannot share memory with fastlstm
    try:
        torch.from_numpy(np.zeros(1))
        return True
    except Exception:
        return False


if not _numpy_ok():  # pragma: no cover
    raise ImportError("fastlstm.torch needs a torch build with numpy support")
