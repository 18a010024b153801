"""Keras: ``keras.layers.LSTM.get_weights()`` holds kernel (I, 4U), recurrent_kernel (U, 4U) and one bias
(4U,), the 4U axis in Keras's gate order (KERAS_GATE_ORDER); torch keeps the transposes and two biases
whose sum is Keras's. Keras and Keras's TensorFlow/JAX backends are never imported."""

from __future__ import annotations

import numpy as np

from ._layout import KERAS_GATE_ORDER, TORCH_GATE_ORDER, as_config, naming, numpy_copy, reorder

__all__ = ["from_keras", "to_keras"]


def from_keras(layers, *, bidirectional: bool = False) -> dict[str, np.ndarray]:
    """Keras LSTM weights -> fastlstm params.

    Args:
        layers: one entry per stacked layer (a non-empty sequence). Each entry is what
            ``keras.layers.LSTM.get_weights()`` returns: [kernel (I_k, 4U), recurrent_kernel (U, 4U),
            bias (4U,)], or without bias when the layer has use_bias=False. With bidirectional=True each
            entry is what ``keras.layers.Bidirectional(LSTM(U)).get_weights()`` returns: the forward
            layer's 2 or 3 arrays, then the backward layer's. Arrays or tensors of any float dtype.
        bidirectional: the layers are Bidirectional wrappers (merge_mode "concat").

    Returns:
        fastlstm params (``weight_ih_l{k}{sfx}`` (4U, I_k), ``weight_hh_l{k}{sfx}`` (4U, U), and with a bias
        ``bias_ih_l{k}{sfx}`` = Keras's bias and ``bias_hh_l{k}{sfx}`` = zeros, both (4U,)), new
        C-contiguous arrays of the input dtype, for ``fastlstm.LSTM(I_0, U, len(layers),
        bias=..., bidirectional=bidirectional)``.

    Raises:
        ValueError: no layers; an entry with other than 2 or 3 arrays per direction; shapes that are not
            kernel (I, 4U), recurrent_kernel (U, 4U), bias (4U,) with the same U in every layer.

    The numbers match Keras's for activation="tanh", recurrent_activation="sigmoid" (its defaults).
    """
    D = 2 if bidirectional else 1
    if not layers:
        raise ValueError("layers: expected at least one layer")
    params: dict[str, np.ndarray] = {}
    cfg = naming(len(layers), bidirectional)
    units = None
    for k, entry in enumerate(layers):
        entry = [numpy_copy(a) for a in entry]
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
            params[cfg.param_name("w_ih", k, d)] = reorder(kernel.T, KERAS_GATE_ORDER, TORCH_GATE_ORDER)
            params[cfg.param_name("w_hh", k, d)] = reorder(recurrent.T, KERAS_GATE_ORDER, TORCH_GATE_ORDER)
            if bias:
                params[cfg.param_name("b_ih", k, d)] = reorder(bias[0], KERAS_GATE_ORDER, TORCH_GATE_ORDER)
                params[cfg.param_name("b_hh", k, d)] = np.zeros_like(bias[0])
    return params


def to_keras(params, cfg) -> list[list[np.ndarray]]:
    """fastlstm params -> Keras LSTM weights, one ``set_weights`` list per stacked layer.

    Args:
        params: fastlstm params (e.g. ``fastlstm.LSTM.state_dict()``), arrays or tensors.
        cfg: the model's Config (its ``.config``) or the module itself (fastlstm.LSTM, fastlstm.torch.LSTM);
            it gives the layer count, the directions and whether there is a bias.

    Returns:
        One list per layer k: [kernel (I_k, 4H), recurrent_kernel (H, 4H), bias (4H,)] (no bias when
        cfg.bias is False) for ``keras.layers.LSTM(H).set_weights``; when cfg.bidirectional, forward's
        arrays then backward's, for ``keras.layers.Bidirectional.set_weights``. New C-contiguous arrays of
        the params' dtype; bias = bias_ih + bias_hh.

    Raises:
        TypeError: cfg is neither a Config nor a module with ``.config``.
        ValueError: cfg.peephole or cfg.proj_size > 0 (Keras's LSTM has neither).
        KeyError: params lacks a weight that cfg has.
    """
    cfg = as_config(cfg)
    if cfg.peephole:
        raise ValueError("cfg.peephole: Keras's LSTM has no peepholes; expected peephole=False")
    if cfg.proj_size > 0:
        raise ValueError(f"cfg.proj_size: Keras's LSTM has no projection; expected 0, got {cfg.proj_size}")

    def gates(a):  # torch's (4H, ...) -> Keras's order, transposed to (..., 4H)
        return np.ascontiguousarray(reorder(numpy_copy(a), TORCH_GATE_ORDER, KERAS_GATE_ORDER).T)

    layers = []
    for k in range(cfg.num_layers):
        entry = []
        for d in range(cfg.num_directions):
            p = cfg.layer_params(params, k, d)
            entry += [gates(p["w_ih"]), gates(p["w_hh"])]
            if cfg.bias:
                entry.append(gates(numpy_copy(p["b_ih"]) + numpy_copy(p["b_hh"])))
        layers.append(entry)
    return layers
