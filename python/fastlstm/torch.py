"""fastlstm.torch: a drop-in torch.nn.LSTM that runs on fastlstm's engines (importable only with torch).

    from fastlstm.torch import LSTM          # instead of torch.nn.LSTM
    lstm = LSTM(80, 256, num_layers=2, bidirectional=True)

The same constructor (positional order included), attributes, parameter names and order (so torch.manual_seed
gives nn.LSTM's initial weights), state_dict, forward(input, hx=None) with tensors or a PackedSequence, the same
outputs and gradients, and the same errors and warnings for malformed arguments. The LSTM runs as two torch
custom operators (fastlstm::lstm and its backward), so it works under torch.compile(fullgraph=True) and
torch.export, and with DistributedDataParallel. What differs: ``peephole=True`` adds peephole_{i,f,o}_l{k}{sfx}
parameters; dropout masks are drawn from a seed taken from torch's generator (by NumPy for CPU tensors, by a
torch generator on the device for CUDA tensors: torch.manual_seed reproduces them, but they are not nn.LSTM's
masks); CPU tensors in float32 or float64, CUDA tensors in float32.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from . import _backends, _torch_ops
from ._config import Config
from ._lstm import checked_config

__all__ = ["LSTM"]


def _check_like_torch(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size) -> None:
    """torch.nn.RNNBase's argument checks, with its exceptions, messages and warning."""
    if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
        raise ValueError("dropout should be a number in range [0, 1] representing the probability of an element "
                         "being zeroed")
    if dropout > 0 and num_layers == 1:
        warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                      f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                      stacklevel=3)
    for name, value in (("bias", bias), ("batch_first", batch_first)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int):
            raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be greater than zero")
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


class LSTM(nn.Module):
    """torch.nn.LSTM's interface on fastlstm, plus peepholes and low precisions.

    LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0, bidirectional=False,
         proj_size=0, device=None, dtype=None, *, peephole=False, precision=None)

    Arguments, parameters, forward(input, hx=None) and its outputs are torch.nn.LSTM's (help(torch.nn.LSTM));
    ``peephole=True`` adds the parameters peephole_{i,f,o}_l{k}{sfx} of shape (hidden_size,). device: the CPU
    or a CUDA device (.cuda() / .to("cuda") move it too): CUDA tensors run inference and training on fastlstm's
    CUDA engine (float32, deterministic gradients); dtype float32 (the default) or float64. ``precision``: the
    math inside, as fastlstm.LSTM's (None: the dtype's own; on a float32 module "bf16" or "int8" on the CPU,
    int8 for inference only; "tf32", "bf16" or "fp16" on CUDA); parameters and gradients stay in the dtype. A
    precision the module's device cannot run raises ValueError naming it, at construction and at the call after
    a move.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, *, peephole: bool = False, precision: str | None = None):
        super().__init__()
        _check_like_torch(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size)
        if precision is not None and not isinstance(precision, str):
            raise TypeError(f"precision: expected None or a name such as 'bf16', got {type(precision).__name__}")
        if precision not in _torch_ops.PRECISIONS:
            raise ValueError(f"precision: expected one of {list(_torch_ops.PRECISIONS)}, got {precision!r}")
        cfg = self._config = checked_config(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                                            bidirectional, proj_size, peephole)
        self.mode = "LSTM"
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size, self.peephole = bidirectional, proj_size, peephole
        if device is not None and torch.device(device).type not in ("cpu", "cuda"):
            raise RuntimeError(f"device={device!r}: fastlstm runs on the CPU and on CUDA devices")
        factory = {"dtype": dtype or torch.get_default_dtype(), "device": device}
        if factory["dtype"] in _torch_ops.DTYPES:  # a precision this device cannot run: ValueError, now
            kind = torch.device(device).type if device is not None else "cpu"
            _backends.engine_for("cpu" if kind == "cpu" else "cuda", _torch_ops.DTYPES[factory["dtype"]], precision)
        self.precision = precision
        self._flat_weights_names = list(cfg.param_shapes())
        for name, shape in cfg.param_shapes().items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    # nn.LSTM's own checks of forward's arguments (its exceptions and messages); they read only attributes the
    # two modules share.
    check_input = nn.LSTM.check_input
    check_hidden_size = nn.LSTM.check_hidden_size
    get_expected_hidden_size = nn.LSTM.get_expected_hidden_size
    get_expected_cell_size = nn.LSTM.get_expected_cell_size
    check_forward_args = nn.LSTM.check_forward_args

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
                              ("bidirectional", False), ("proj_size", 0), ("peephole", False), ("precision", None)):
            value = getattr(self, name)
            if value != default:
                s += f", {name}={value!r}" if isinstance(value, str) else f", {name}={value}"
        return s

    def _op_config(self) -> list[int]:
        c = self.config
        return [c.input_size, c.hidden_size, c.num_layers, c.proj_size, int(c.bias), int(c.batch_first),
                int(c.bidirectional), int(c.peephole), _torch_ops.PRECISIONS.index(self.precision)]

    def forward(self, input, hx=None):
        """torch.nn.LSTM.forward: input (L, N, H_in), (N, L, H_in) with batch_first, unbatched (L, H_in), or a
        PackedSequence; hx = (h_0, c_0) or None -> (output, (h_n, c_n)) as nn.LSTM returns them."""
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:
            # nn.LSTM's checks of a packed input and its hx, before unpacking it for the engine (which takes the
            # padded batch in the original order and each sequence's length).
            batch_sizes = input.batch_sizes
            if hx is not None:
                self.check_forward_args(input.data, hx, batch_sizes)
            x, lengths = pad_packed_sequence(input, batch_first=self.batch_first)
        else:
            x = input
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"input: expected a tensor or PackedSequence, got {type(x).__name__}")
            if x.dim() not in (2, 3):
                raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {x.dim()}D instead")
        if x.device.type not in ("cpu", "cuda"):
            raise RuntimeError(f"input: fastlstm runs on the CPU and on CUDA devices, not {x.device.type}")
        if any(p.device != x.device for p in self._flat_weights):
            raise RuntimeError(f"input: on {x.device}, the parameters on {self._flat_weights[0].device} "
                               "(move the module with .to(device))")
        unbatched = x.dim() == 2
        c = self.config
        DL = c.num_layers * c.num_directions
        if hx is None:
            B = 1 if unbatched else x.shape[0 if self.batch_first else 1]
            lead = (DL,) if unbatched else (DL, B)
            hx = (x.new_zeros(lead + (c.out_size,)), x.new_zeros(lead + (c.hidden_size,)))
        elif not packed:
            want = 2 if unbatched else 3
            if hx[0].dim() != want or hx[1].dim() != want:
                kind = "unbatched 2-D input, hx and cx should also be 2-D" if unbatched else \
                    "batched 3-D input, hx and cx should also be 3-D"
                raise RuntimeError(f"For {kind} but got ({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
        if not packed:
            x3 = x.unsqueeze(0 if self.batch_first else 1) if unbatched else x
            h3 = (hx[0].unsqueeze(1), hx[1].unsqueeze(1)) if unbatched else hx
            self.check_forward_args(x3, h3, None)
        params = self._flat_weights
        train = torch.is_grad_enabled() and (
            x.requires_grad or hx[0].requires_grad or hx[1].requires_grad or any(p.requires_grad for p in params))
        # The dropout masks' generator: a seed drawn from torch's generator (as a tensor: no graph break).
        use_dropout = self.training and train and c.dropout > 0 and c.num_layers > 1
        seed = torch.randint(0, 2**62, (1,)) if use_dropout else torch.zeros(1, dtype=torch.int64)
        y, h_n, c_n, _, _ = _torch_ops.lstm(x, hx[0], hx[1], params, lengths, self._op_config(), c.dropout, seed,
                                             use_dropout, train)
        if packed:
            # The same packed layout as the input: time-major, sorted rows alive at each step.
            if self.batch_first:
                y = y.transpose(0, 1)
            idx = input.sorted_indices if input.sorted_indices is not None else torch.arange(y.shape[1])
            rows = [y[t, idx[: int(n)]] for t, n in enumerate(input.batch_sizes)]
            y = PackedSequence(torch.cat(rows), input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        return y, (h_n, c_n)


def _numpy_ok() -> bool:  # torch built without numpy support cannot share memory with fastlstm
    try:
        torch.from_numpy(np.zeros(1))
        return True
    except Exception:
        return False


if not _numpy_ok():  # pragma: no cover
    raise ImportError("fastlstm.torch needs a torch build with numpy support")
