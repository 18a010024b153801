"""Weight converters between fastlstm (= torch.nn.LSTM's state_dict) and PyTorch, Keras and ONNX, and an
ONNX export of a fastlstm LSTM. NumPy only: torch and onnx are imported by the functions that need them.

Gate order of the 4H axis (every gate weight and bias is 4 blocks of H rows or columns):

    block   fastlstm / torch   Keras LSTM   ONNX LSTM
    0       i  input           i            i
    1       f  forget          f            o
    2       g  cell            c            f
    3       o  output          o            c

Layouts, per layer k and direction (torch names end _l{k}{sfx}; sfx "" / d = 0 forward, "_reverse" / d = 1
backward):

    fastlstm / torch           Keras LSTM.get_weights()                ONNX LSTM inputs (stacked over d)
    weight_ih (4H, I_k)        kernel (I_k, 4H) = weight_ih.T          W [D, 4H, I_k] = weight_ih, reordered
    weight_hh (4H, H)          recurrent_kernel (H, 4H) = weight_hh.T  R [D, 4H, H] = weight_hh, reordered
    bias_ih, bias_hh (4H,)     bias (4H,) = bias_ih + bias_hh          B [D, 8H] = [bias_ih, bias_hh], each
                                                                       reordered (ONNX's Wb, then Rb)
    peephole_{i,f,o} (H,)      (none)                                  P [D, 3H] = [p_i, p_o, p_f]
    weight_hr (P, H)           (none)                                  (none)

Keras's gate order is torch's, so its weights are transposes. Keras has one bias where torch has two
(only the sum matters): from_keras puts it in bias_ih and zeros in bias_hh. A Keras Bidirectional layer's
get_weights() is the forward layer's arrays then the backward layer's, i.e. torch's "" then "_reverse".
The Keras maps hold for activation="tanh", recurrent_activation="sigmoid" (Keras's defaults since 2.3;
older Keras defaulted to hard_sigmoid, which no fastlstm option reproduces).
ONNX's reorder is _onnx.ONNX_GATES, shared with the ONNX model builder of the benchmark.
"""

from __future__ import annotations

import numpy as np

from . import _onnx
from ._config import Config

__all__ = ["from_torch", "to_torch", "from_keras", "to_keras", "to_onnx_weights", "from_onnx_weights",
           "export_onnx"]

_FROM_ONNX = tuple(int(j) for j in np.argsort(_onnx.ONNX_GATES))  # ONNX's blocks back into torch's order


def _np(value) -> np.ndarray:
    """A numpy copy of an array or a (CPU or GPU, possibly grad-requiring) torch tensor."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # numpy has no bfloat16; float32 holds it exactly
            value = value.float()
        value = value.numpy()
    return np.array(value, copy=True)


def _config(cfg) -> Config:
    """A Config, or a module that has one (fastlstm.LSTM, fastlstm.torch.LSTM)."""
    cfg = getattr(cfg, "config", cfg)
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg: expected a fastlstm Config or a module with .config, got {type(cfg).__name__}")
    return cfg


def _blocks(a: np.ndarray, order) -> np.ndarray:
    """The 4 gate blocks of a's first axis, taken in ``order``."""
    b = np.split(a, 4, axis=0)
    return np.concatenate([b[j] for j in order], axis=0)


# -- PyTorch: the same names, shapes and gate order ---------------------------------------------------------
def from_torch(state_dict) -> dict[str, np.ndarray]:
    """torch.nn.LSTM's (or fastlstm.torch.LSTM's) state_dict -> fastlstm params: the same names, values
    copied into numpy arrays."""
    return {name: _np(value) for name, value in state_dict.items()}


def to_torch(params) -> dict:
    """fastlstm params -> a state_dict of torch tensors (copies) that torch.nn.LSTM.load_state_dict takes."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"to_torch needs PyTorch ({exc}); fastlstm.LSTM takes numpy arrays") from None
    return {name: torch.from_numpy(_np(value)) for name, value in params.items()}


# -- Keras: transposed weights, one bias -------------------------------------------------------------------
def from_keras(layers, *, bidirectional: bool = False) -> dict[str, np.ndarray]:
    """Keras LSTM weights -> fastlstm params. ``layers``: one entry per stacked layer, each what
    ``keras.layers.LSTM.get_weights()`` returns ([kernel (I, 4U), recurrent_kernel (U, 4U), bias (4U,)],
    without bias when use_bias=False), or with bidirectional=True what ``keras.layers.Bidirectional``'s
    get_weights() returns (the forward layer's arrays, then the backward layer's)."""
    D = 2 if bidirectional else 1
    if not layers:
        raise ValueError("layers: expected at least one layer")
    params: dict[str, np.ndarray] = {}
    cfg = Config(1, 1, len(layers), bidirectional=bidirectional)  # only its parameter naming is used
    units = None
    for k, entry in enumerate(layers):
        entry = [_np(a) for a in entry]
        if len(entry) not in (2 * D, 3 * D):
            raise ValueError(f"layers[{k}]: expected {2 * D} or {3 * D} arrays ([kernel, recurrent_kernel, "
                             f"bias]{' per direction' if D == 2 else ''}), got {len(entry)}")
        n = len(entry) // D
        for d in range(D):
            kernel, recurrent, *bias = entry[d * n:(d + 1) * n]
            U = recurrent.shape[0] if recurrent.ndim == 2 else -1
            if (kernel.ndim != 2 or recurrent.shape != (U, 4 * U) or kernel.shape[1] != 4 * U
                    or (bias and bias[0].shape != (4 * U,)) or (units is not None and U != units)):
                shapes = [a.shape for a in entry]
                raise ValueError(f"layers[{k}]: expected kernel (I, 4U), recurrent_kernel (U, 4U), bias "
                                 f"(4U,) with the same U in every layer, got shapes {shapes}")
            units = U
            params[cfg.param_name("w_ih", k, d)] = np.ascontiguousarray(kernel.T)
            params[cfg.param_name("w_hh", k, d)] = np.ascontiguousarray(recurrent.T)
            if bias:
                params[cfg.param_name("b_ih", k, d)] = bias[0]
                params[cfg.param_name("b_hh", k, d)] = np.zeros_like(bias[0])
    return params


def to_keras(params, cfg) -> list[list[np.ndarray]]:
    """fastlstm params of Config (or module) ``cfg`` -> one get_weights()-style list per layer, for
    ``keras.layers.LSTM.set_weights`` ([kernel, recurrent_kernel, bias]; no bias when cfg.bias is False)
    or, when bidirectional, ``keras.layers.Bidirectional.set_weights`` (forward's arrays, then backward's)."""
    cfg = _config(cfg)
    if cfg.peephole:
        raise ValueError("cfg.peephole: Keras's LSTM has no peepholes; expected peephole=False")
    if cfg.proj_size > 0:
        raise ValueError(f"cfg.proj_size: Keras's LSTM has no projection; expected 0, got {cfg.proj_size}")
    layers = []
    for k in range(cfg.num_layers):
        entry = []
        for d in range(cfg.num_directions):
            p = cfg.layer_params(params, k, d)
            entry += [np.ascontiguousarray(_np(p["w_ih"]).T), np.ascontiguousarray(_np(p["w_hh"]).T)]
            if cfg.bias:
                entry.append(_np(p["b_ih"]) + _np(p["b_hh"]))
        layers.append(entry)
    return layers


# -- ONNX: LSTM operator inputs W, R, B, P ----------------------------------------------------------------
def to_onnx_weights(params, cfg) -> list[dict[str, np.ndarray | None]]:
    """fastlstm params of Config (or module) ``cfg`` -> per layer the ONNX LSTM inputs {"W", "R", "B", "P"}
    (B is None without bias, P None without peepholes: ONNX reads an absent B or P as zeros)."""
    cfg = _config(cfg)
    if cfg.proj_size > 0:
        raise ValueError(f"cfg.proj_size: ONNX's LSTM has no projection; expected 0, got {cfg.proj_size}")
    layers = []
    for k in range(cfg.num_layers):
        lp = [{n: None if a is None else _np(a) for n, a in cfg.layer_params(params, k, d).items()}
              for d in range(cfg.num_directions)]
        g = _onnx.ONNX_GATES
        layers.append({
            "W": np.stack([_blocks(p["w_ih"], g) for p in lp]),
            "R": np.stack([_blocks(p["w_hh"], g) for p in lp]),
            "B": np.stack([np.concatenate([_blocks(p["b_ih"], g), _blocks(p["b_hh"], g)]) for p in lp])
            if cfg.bias else None,
            "P": np.stack([np.concatenate([p["p_i"], p["p_o"], p["p_f"]]) for p in lp])
            if cfg.peephole else None,
        })
    return layers


def from_onnx_weights(layers) -> dict[str, np.ndarray]:
    """ONNX LSTM inputs -> fastlstm params. ``layers``: one mapping per stacked LSTM node with "W" [D, 4H, I],
    "R" [D, 4H, H] and optionally "B" [D, 8H] and "P" [D, 3H] (missing or None: zeros, as in ONNX). Sizes
    and the direction come from the shapes; bias (peephole) parameters are produced when any layer has a
    B (P), as fastlstm's bias and peephole options hold for every layer."""
    layers = [{n: None if layer.get(n) is None else _np(layer[n]) for n in "WRBP"} for layer in layers]
    if not layers:
        raise ValueError("layers: expected at least one layer")
    R0 = layers[0]["R"]
    D, H = (R0.shape[0], R0.shape[-1]) if R0 is not None and R0.ndim == 3 else (0, 0)
    for k, layer in enumerate(layers):
        W, R, B, P = (layer[n] for n in "WRBP")
        if (D not in (1, 2) or W is None or R is None or W.ndim != 3 or W.shape[:2] != (D, 4 * H)
                or R.shape != (D, 4 * H, H) or (B is not None and B.shape != (D, 8 * H))
                or (P is not None and P.shape != (D, 3 * H))):
            shapes = {n: None if a is None else a.shape for n, a in layer.items()}
            raise ValueError(f"layers[{k}]: expected W [D, 4H, I], R [D, 4H, H], B [D, 8H], P [D, 3H] with "
                             f"D in (1, 2) and the same D, H in every layer, got shapes {shapes}")
    bias = any(layer["B"] is not None for layer in layers)
    peephole = any(layer["P"] is not None for layer in layers)
    cfg = Config(1, 1, len(layers), bidirectional=D == 2)  # only its parameter naming is used
    params: dict[str, np.ndarray] = {}
    for k, layer in enumerate(layers):
        W, R = layer["W"], layer["R"]
        B = layer["B"] if layer["B"] is not None else np.zeros((D, 8 * H), W.dtype)
        P = layer["P"] if layer["P"] is not None else np.zeros((D, 3 * H), W.dtype)
        for d in range(D):
            params[cfg.param_name("w_ih", k, d)] = _blocks(W[d], _FROM_ONNX)
            params[cfg.param_name("w_hh", k, d)] = _blocks(R[d], _FROM_ONNX)
            if bias:
                params[cfg.param_name("b_ih", k, d)] = _blocks(B[d, :4 * H], _FROM_ONNX)
                params[cfg.param_name("b_hh", k, d)] = _blocks(B[d, 4 * H:], _FROM_ONNX)
            if peephole:
                p_i, p_o, p_f = np.split(P[d], 3)
                for short, a in (("p_i", p_i), ("p_f", p_f), ("p_o", p_o)):
                    params[cfg.param_name(short, k, d)] = a.copy()
    return params


def export_onnx(model, path=None, *, with_lengths: bool = False) -> bytes:
    """The ONNX model (opset 17, one LSTM node per layer, float32) of a fastlstm.LSTM or fastlstm.torch.LSTM;
    written to ``path`` too when given. Inputs X [T, B, I] (time-major whatever batch_first is) and, with
    with_lengths, sequence_lens [B] int32; outputs y [T, B, D*H], h_n, c_n [L*D, B, H] as the module's with
    hx=None (the graph's initial state is zero). proj_size > 0 has no ONNX equivalent (ValueError)."""
    if not hasattr(model, "config") or not hasattr(model, "state_dict"):
        raise TypeError(f"model: expected a fastlstm.LSTM or fastlstm.torch.LSTM, got {type(model).__name__}")
    cfg = _config(model)
    if cfg.proj_size > 0:
        raise ValueError(f"model: ONNX's LSTM has no projection; expected proj_size=0, got {cfg.proj_size}")
    # onnxruntime's CPU LSTM kernel computes in float32 only
    params = {name: a.astype(np.float32) for name, a in from_torch(model.state_dict()).items()}
    data = _onnx.lstm_model(cfg, params, dtype=np.float32, with_lengths=with_lengths)
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data
