"""fastlstm's torch custom operators (torch.library): the LSTM and its backward as opaque operators with fake
(meta) implementations, so torch.compile(fullgraph=True) and torch.export see them without a graph break and
autograd differentiates through fastlstm's own backward. Private: fastlstm.torch.LSTM is the interface.

    fastlstm::lstm(x, h0, c0, params, lengths, config, dropout, seed, use_dropout, train)
        -> (y, h_n, c_n, reserve, masks)
    fastlstm::lstm_backward(dy, dh_n, dc_n, reserve, masks, params, lengths, config, dropout, x_shape)
        -> [dx, dh0, dc0, *param_grads]

x, h0, c0 as torch.nn.LSTM takes them (batch_first per config, unbatched 2-D); params in state_dict order;
lengths an int64 CPU tensor (B,) or None; config = [input_size, hidden_size, num_layers, proj_size, bias,
batch_first, bidirectional, peephole, precision] (precision: an index into PRECISIONS); dropout the module's;
seed an int64 tensor of one element, the dropout masks' generator (drawn by the caller from torch's generator,
so torch.manual_seed reproduces them), used when use_dropout (a training call of a module in training mode
with dropout between layers).
reserve is the engine's saved state as a uint8 tensor (cuDNN's "reserve space": held by autograd between the
two operators), empty unless train; masks the dropout masks applied, (L-1, T, B, D*H_out) or empty.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np
import torch

from . import _backends
from . import functional as F
from ._config import Config

DTYPES = {torch.float32: "float32", torch.float64: "float64"}
PRECISIONS = (None, "fp32", "fp64", "bf16", "int8", "tf32", "fp16")  # the module's precision, config[8]


@functools.lru_cache(maxsize=64)
def _config(config: tuple, dropout: float) -> Config:
    input_size, hidden_size, num_layers, proj_size, bias, batch_first, bidirectional, peephole = config[:8]
    return Config(input_size, hidden_size, num_layers, bool(bias), bool(batch_first), dropout, bool(bidirectional),
                  proj_size, bool(peephole))


def _precision(config) -> str | None:
    return PRECISIONS[config[8]] if len(config) > 8 else None


def _dtype(t: torch.Tensor) -> str:
    if t.dtype not in DTYPES:
        raise TypeError(f"parameters: fastlstm computes in float32 or float64, not {t.dtype}")
    return DTYPES[t.dtype]


def _bits(a: np.ndarray) -> np.ndarray:
    """The array as unsigned integers of its width: equality of bits (NaN equals itself, -0 differs from 0)."""
    return a.view(np.uint32 if a.itemsize == 4 else np.uint64)


class _PackedCache:
    """Packed weights per set of parameter tensors, packed again only when a parameter changed: a change is seen
    by the tensors' version counters (optimizers, in-place ops) or, where those did not move, by comparing the
    bits with those packed (writes through `.data`, as old-style init and optimizer code do, bump no counter).
    The comparison reads the weights once, about 1 ms for 16 MB, against the tens of milliseconds of a repack.
    A few sets are kept (least recently used first out)."""

    def __init__(self, size: int = 8):
        self.size = size
        self.entries: OrderedDict[tuple, tuple] = OrderedDict()

    def get(self, params: list[torch.Tensor], cfg: Config, training: bool, precision: str | None) -> F.Weights:
        if params[0].device.type == "cuda":
            return self._get_cuda(params, cfg, precision)
        dtype = _dtype(params[0])
        key = (cfg, dtype, precision, tuple(p.data_ptr() for p in params))
        arrays = [p.detach().numpy() for p in params]
        versions = tuple(p._version for p in params)
        cached = self.entries.get(key)
        if cached is not None:
            weights, seen, bits = cached
            if (weights.training or not training) and not weights.stale and seen == versions and all(
                    np.array_equal(_bits(a), b) for a, b in zip(arrays, bits, strict=True)):
                self.entries.move_to_end(key)
                return weights
        weights = F.pack(cfg, dict(zip(cfg.param_shapes(), arrays, strict=True)), dtype=dtype, precision=precision,
                         training=training)
        self.entries[key] = (weights, versions, [_bits(a).copy() for a in arrays])
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return weights

    def _get_cuda(self, params: list[torch.Tensor], cfg: Config, precision: str | None) -> F.Weights:
        """As get() for parameters on a GPU, packed for the CUDA engine (its one image serves inference and
        training): the bits are compared on the device (one concatenation and torch.equal), the parameters
        copied to the host only to pack."""
        device = params[0].device
        key = (cfg, "cuda", device.index, precision, tuple(p.data_ptr() for p in params))
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        versions = tuple(p._version for p in params)
        cached = self.entries.get(key)
        if cached is not None:
            weights, seen, bits = cached
            if seen == versions and torch.equal(flat, bits):
                self.entries.move_to_end(key)
                return weights
        arrays = [p.detach().cpu().numpy() for p in params]
        weights = F.pack(cfg, dict(zip(cfg.param_shapes(), arrays, strict=True)), device=_cuda_name(device),
                         dtype=_dtype(params[0]), precision=precision, training=True)
        self.entries[key] = (weights, versions, flat)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return weights


_cache = _PackedCache()


def _cuda_name(device: torch.device) -> str:
    return f"cuda:{device.index or 0}"


def _reserve_bytes(x: torch.Tensor, cfg: Config, precision: str | None, T, B):
    """The saved state's size of a training call on x (the engine of x's device; fake tensors too)."""
    if not (isinstance(T, int) and isinstance(B, int)):  # symbolic shapes: a size only the run knows
        return torch.library.get_ctx().new_dynamic_size()
    device = _cuda_name(x.device) if x.device.type == "cuda" else "cpu"
    return _backends.engine_for(device, _dtype(x), precision).sizes(cfg, T, B, True)["saved"]


def _layout(x_shape, cfg: Config) -> tuple[int, int, bool]:
    """(T, B, unbatched) of an input of x's shape."""
    unbatched = len(x_shape) == 2
    if unbatched:
        return x_shape[0], 1, True
    return (x_shape[1], x_shape[0], False) if cfg.batch_first else (x_shape[0], x_shape[1], False)


def _outputs_like(x: torch.Tensor, cfg: Config):
    T, B, unbatched = _layout(x.shape, cfg)
    DL, width = cfg.num_layers * cfg.num_directions, cfg.num_directions * cfg.out_size
    if unbatched:
        shapes = ((T, width), (DL, cfg.out_size), (DL, cfg.hidden_size))
    else:
        shapes = ((B, T, width) if cfg.batch_first else (T, B, width), (DL, B, cfg.out_size), (DL, B, cfg.hidden_size))
    return [x.new_empty(s) for s in shapes]


def _has_masks(cfg: Config, use_dropout: bool, train: bool) -> bool:
    return use_dropout and train and cfg.dropout > 0 and cfg.num_layers > 1


@torch.library.custom_op("fastlstm::lstm", mutates_args=())
def lstm(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, params: list[torch.Tensor],
         lengths: torch.Tensor | None, config: list[int], dropout: float, seed: torch.Tensor, use_dropout: bool,
         train: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg, precision = _config(tuple(config), dropout), _precision(config)
    weights = _cache.get(params, cfg, train, precision)
    lens = None if lengths is None else lengths.numpy()
    rng, reserve = None, torch.empty(0, dtype=torch.uint8)
    if train:
        T, B, _ = _layout(x.shape, cfg)
        reserve = torch.empty(_reserve_bytes(x, cfg, precision, T, B), dtype=torch.uint8)
        if _has_masks(cfg, use_dropout, train):
            rng = np.random.default_rng(int(seed.item()))
    y, (h_n, c_n), tape = F.forward(weights, x.detach().numpy(), (h0.detach().numpy(), c0.detach().numpy()),
                                    lengths=lens, train=train, rng=rng, saved=reserve.numpy() if train else None)
    masks = torch.empty(0, dtype=x.dtype)
    if tape is not None and tape.dropout_masks is not None:
        masks = torch.from_numpy(np.stack(tape.dropout_masks))
    return torch.from_numpy(y), torch.from_numpy(h_n), torch.from_numpy(c_n), reserve, masks


@lstm.register_kernel("cuda")
def _lstm_cuda(x, h0, c0, params, lengths, config, dropout, seed, use_dropout, train):
    """CUDA tensors: the CUDA engine through DLPack (results on x's device, no host copies). Training keeps the
    state in a reserve tensor of torch's allocator; the dropout masks are drawn on the device by a torch
    generator seeded with ``seed``."""
    cfg, precision = _config(tuple(config), dropout), _precision(config)
    weights = _cache.get(params, cfg, train, precision)
    lens = None if lengths is None else lengths.numpy()
    hx = (h0.detach().contiguous(), c0.detach().contiguous())
    reserve, masks = x.new_empty(0, dtype=torch.uint8), x.new_empty(0)
    if not train:
        y, (h_n, c_n), _ = F.forward(weights, x.detach(), hx, lengths=lens)
        return y, h_n, c_n, reserve, masks
    T, B, _ = _layout(x.shape, cfg)
    reserve = x.new_empty(_reserve_bytes(x, cfg, precision, T, B), dtype=torch.uint8)
    if _has_masks(cfg, use_dropout, train):
        keep = 1.0 - cfg.dropout
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(seed.item()))
        masks = x.new_empty((cfg.num_layers - 1, T, B, cfg.num_directions * cfg.out_size))
        masks.bernoulli_(keep, generator=generator).mul_(1.0 / keep if keep > 0 else 0.0)
    y, (h_n, c_n), _ = F.forward(weights, x.detach(), hx, lengths=lens, train=True,
                                 dropout_masks=list(masks) if masks.numel() else None, saved=reserve)
    return y, h_n, c_n, reserve, masks


@lstm.register_fake
def _lstm_fake(x, h0, c0, params, lengths, config, dropout, seed, use_dropout, train):
    cfg = _config(tuple(config), dropout)
    y, h_n, c_n = _outputs_like(x, cfg)
    T, B, _ = _layout(x.shape, cfg)
    reserve = x.new_empty(_reserve_bytes(x, cfg, _precision(config), T, B) if train else 0, dtype=torch.uint8)
    masks = x.new_empty(0)
    if _has_masks(cfg, use_dropout, train):
        masks = x.new_empty((cfg.num_layers - 1, T, B, cfg.num_directions * cfg.out_size))
    return y, h_n, c_n, reserve, masks


@torch.library.custom_op("fastlstm::lstm_backward", mutates_args=())
def lstm_backward(dy: torch.Tensor, dh_n: torch.Tensor, dc_n: torch.Tensor, reserve: torch.Tensor,
                  masks: torch.Tensor, params: list[torch.Tensor], lengths: torch.Tensor | None, config: list[int],
                  dropout: float, x_shape: list[int]) -> list[torch.Tensor]:
    """Either device: CPU tensors as numpy arrays, CUDA tensors as they are (DLPack, results on their device)."""
    cfg = _config(tuple(config), dropout)
    weights = _cache.get(params, cfg, True, _precision(config))
    T, B, unbatched = _layout(x_shape, cfg)
    cpu = dy.device.type == "cpu"
    arrays = [t.numpy() if cpu else t for t in (reserve, masks, dy, dh_n, dc_n)]
    reserve, masks, dy, dh_n, dc_n = arrays
    tape = F.restore_tape(weights, reserve, T, B, lengths=None if lengths is None else lengths.numpy(),
                          dropout_masks=list(masks) if len(masks) else None, unbatched=unbatched)
    dx, (dh0, dc0), grads = F.backward(tape, dy, dh_n, dc_n)
    return [torch.from_numpy(a) if cpu else a for a in (dx, dh0, dc0, *grads.values())]


@lstm_backward.register_fake
def _lstm_backward_fake(dy, dh_n, dc_n, reserve, masks, params, lengths, config, dropout, x_shape):
    return [dy.new_empty(x_shape), dh_n.new_empty(dh_n.shape), dc_n.new_empty(dc_n.shape),
            *[p.new_empty(p.shape) for p in params]]


def _setup_context(ctx, inputs, output):
    x, h0, c0, params, lengths, config, dropout, seed, use_dropout, train = inputs
    _, _, _, reserve, masks = output
    has_lengths = lengths is not None
    ctx.save_for_backward(reserve, masks, lengths if has_lengths else reserve.new_empty(0), *params)
    ctx.meta = (list(config), dropout, list(x.shape), has_lengths)


def _backward(ctx, dy, dh_n, dc_n, _dreserve, _dmasks):
    reserve, masks, lengths, *params = ctx.saved_tensors
    config, dropout, x_shape, has_lengths = ctx.meta
    dx, dh0, dc0, *grads = lstm_backward(dy.contiguous(), dh_n.contiguous(), dc_n.contiguous(), reserve, masks, params,
                                         lengths if has_lengths else None, config, dropout, x_shape)
    return dx, dh0, dc0, grads, None, None, None, None, None, None


lstm.register_autograd(_backward, setup_context=_setup_context)
