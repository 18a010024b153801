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

from . import functional as F
from ._config import Config
from ._lstm import checked_config

__all__ = ["LSTM"]

_NP_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


class _Function(torch.autograd.Function):
    """(x, h0, c0, *params) -> (y, h_n, c_n) through fastlstm.functional; backward through its BPTT."""

    @staticmethod
    def forward(ctx, owner, x, h0, c0, lengths, dropout_seed, *params):
        train = any(ctx.needs_input_grad)
        weights = owner._weights_for(params, training=train)
        # Masks follow torch's generator (through the seed), so torch.manual_seed reproduces them.
        rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
        y, (h_n, c_n), ctx.tape = F.forward(weights, x.detach().numpy(), (h0.detach().numpy(), c0.detach().numpy()),
                                            lengths=lengths, train=train, rng=rng)
        return torch.from_numpy(y), torch.from_numpy(h_n), torch.from_numpy(c_n)

    @staticmethod
    def backward(ctx, dy, dh_n, dc_n):
        dx, (dh0, dc0), grads = F.backward(ctx.tape, dy.numpy(), dh_n.numpy(), dc_n.numpy())
        param_grads = [torch.from_numpy(g) for g in grads.values()]
        return (None, torch.from_numpy(dx), torch.from_numpy(dh0), torch.from_numpy(dc0), None, None, *param_grads)


class LSTM(nn.Module):
    """torch.nn.LSTM's interface on fastlstm, plus peepholes."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, *, peephole: bool = False):
        super().__init__()
        cfg = self._config = checked_config(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                                            bidirectional, proj_size, peephole)
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
        self._packed: dict[str, tuple] = {}  # dtype -> (weights, versions, bits of the packed parameters)
        self.reset_parameters()

    def __getstate__(self):  # packed weights are a cache, rebuilt from the parameters after unpickling
        state = self.__dict__.copy()
        state["_packed"] = {}
        return state

    @property
    def config(self) -> Config:
        return self._config

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

    def _weights_for(self, params, training: bool) -> F.Weights:
        """The parameters packed for the engine of their dtype (fastlstm.functional.Weights), packed again only
        when a parameter changed since: a change is seen by the tensors' version counters (optimizers, in-place
        ops) or, where those did not move, by comparing the bits with those packed: writes through `.data`
        (old-style init and optimizer code) bump no counter. The comparison reads the weights once, about 1 ms
        for 16 MB, against the tens of milliseconds of a repack."""
        dtype = params[0].dtype
        if dtype not in _NP_DTYPES:
            raise TypeError(f"parameters: fastlstm computes in float32 or float64, not {dtype}")
        key = _NP_DTYPES[dtype]
        arrays = [p.detach().numpy() for p in params]
        versions = tuple((p._version, p.data_ptr()) for p in params)
        cached = self._packed.get(key)
        if cached is not None:
            weights, seen, bits = cached
            if (weights.training or not training) and not weights.stale and seen == versions and all(
                    np.array_equal(_bits(a), b) for a, b in zip(arrays, bits, strict=True)):
                return weights
        weights = F.pack(self.config, dict(zip(self._flat_weights_names, arrays, strict=True)), dtype=key,
                         training=training)
        self._packed[key] = (weights, versions, [_bits(a).copy() for a in arrays])
        return weights

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
