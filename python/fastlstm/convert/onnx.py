"""ONNX: the LSTM operator's weight inputs W, R, B, P both ways, an ONNX model (opset 17, one LSTM node per
layer) of a fastlstm LSTM, and a reusable onnxruntime session for such a model (the benchmark's
onnxruntime baseline). onnx and onnxruntime are imported by the functions that need them.

W, R, B, P are laid out as the table in fastlstm.convert's docstring shows (torch's gate blocks i, f, g, o
reordered to ONNX's i, o, f, c; B = [Wb, Rb]; P in ONNX's peephole order i, o, f). to_onnx_weights is the
one place these tensors are built; lstm_model and export_onnx take them from it.

Graph of lstm_model: X0 [T, B, I] (and sequence_lens [B] int32) -> per layer LSTM -> Y [T, D, B, H] ->
[T, B, D*H] (Squeeze for D = 1, else Transpose to [T, B, D, H] and Reshape) -> the next layer; outputs
y [T, B, D*H] and h_n, c_n [L*D, B, H] (the layers' Y_h / Y_c concatenated, interleaved per layer exactly
like torch's). The initial state is zero.
"""

from __future__ import annotations

import numpy as np

from ._layout import (
    ONNX_GATE_ORDER,
    ONNX_PEEPHOLE_ORDER,
    TORCH_GATE_ORDER,
    TORCH_PEEPHOLE_ORDER,
    as_config,
    block_order,
    naming,
    numpy_copy,
    reorder,
)
from .torch import from_torch

__all__ = ["to_onnx_weights", "from_onnx_weights", "export_onnx", "lstm_model", "OnnxLSTM", "run_onnx",
           "ONNX_GATES"]

ONNX_GATES = block_order(TORCH_GATE_ORDER, ONNX_GATE_ORDER)  # (0, 3, 1, 2): torch's blocks in ONNX's order
OPSET = 17


def _to_onnx(a) -> np.ndarray:
    return reorder(a, TORCH_GATE_ORDER, ONNX_GATE_ORDER)


def _from_onnx(a) -> np.ndarray:
    return reorder(a, ONNX_GATE_ORDER, TORCH_GATE_ORDER)


def to_onnx_weights(params, cfg) -> list[dict[str, np.ndarray | None]]:
    """fastlstm params -> the ONNX LSTM operator's weight inputs, one dict per layer (LSTM node).

    Args:
        params: fastlstm params (e.g. ``fastlstm.LSTM.state_dict()``), arrays or tensors.
        cfg: the model's Config (its ``.config``) or the module itself (fastlstm.LSTM, fastlstm.torch.LSTM).

    Returns:
        Per layer k, {"W": [D, 4H, I_k], "R": [D, 4H, H], "B": [D, 8H] or None, "P": [D, 3H] or None}, new
        arrays of the params' dtype (D = 2 when bidirectional). B is None when cfg.bias is False and P None
        when cfg.peephole is False; ONNX reads an absent B or P as zeros.

    Raises:
        TypeError: cfg is neither a Config nor a module with ``.config``.
        ValueError: cfg.proj_size > 0 (ONNX's LSTM has no projection).
        KeyError: params lacks a weight that cfg has.
    """
    cfg = as_config(cfg)
    if cfg.proj_size > 0:
        raise ValueError(f"cfg.proj_size: ONNX's LSTM has no projection; expected 0, got {cfg.proj_size}")
    layers = []
    for k in range(cfg.num_layers):
        lp = [{n: None if a is None else numpy_copy(a) for n, a in cfg.layer_params(params, k, d).items()}
              for d in range(cfg.num_directions)]
        layers.append({
            "W": np.stack([_to_onnx(p["w_ih"]) for p in lp]),
            "R": np.stack([_to_onnx(p["w_hh"]) for p in lp]),
            "B": np.stack([np.concatenate([_to_onnx(p["b_ih"]), _to_onnx(p["b_hh"])]) for p in lp])
            if cfg.bias else None,
            "P": np.stack([reorder(np.concatenate([p[f"p_{g}"] for g in TORCH_PEEPHOLE_ORDER]),
                                   TORCH_PEEPHOLE_ORDER, ONNX_PEEPHOLE_ORDER) for p in lp])
            if cfg.peephole else None,
        })
    return layers


def from_onnx_weights(layers) -> dict[str, np.ndarray]:
    """The ONNX LSTM operator's weight inputs -> fastlstm params.

    Args:
        layers: one mapping per stacked LSTM node (a non-empty sequence), with "W" [D, 4H, I_k],
            "R" [D, 4H, H] and optionally "B" [D, 8H] and "P" [D, 3H] (missing or None: zeros, as in
            ONNX); arrays or tensors. D = 2 for a "bidirectional" node, else 1.

    Returns:
        fastlstm params in state_dict order, new arrays, each of its ONNX tensor's dtype (a missing B or P
        gives zeros of W's dtype). The sizes and the direction come from the shapes: load them into
        ``fastlstm.LSTM(I_0, H, len(layers), bias=..., bidirectional=D == 2, peephole=...)``. Bias
        (peephole) parameters are produced for every layer when any layer has a B (P), as fastlstm's
        options hold for all layers.

    Raises:
        ValueError: no layers, a missing W or R, or shapes other than the above with D in (1, 2) and the
            same D and H in every layer.

    The numbers match the ONNX node's for its default activations (Sigmoid, Tanh, Tanh), no clip and
    input_forget=0.
    """
    layers = [{n: None if layer.get(n) is None else numpy_copy(layer[n]) for n in "WRBP"} for layer in layers]
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
    cfg = naming(len(layers), D == 2)
    params: dict[str, np.ndarray] = {}
    for k, layer in enumerate(layers):
        W, R = layer["W"], layer["R"]
        B = layer["B"] if layer["B"] is not None else np.zeros((D, 8 * H), W.dtype)
        P = layer["P"] if layer["P"] is not None else np.zeros((D, 3 * H), W.dtype)
        for d in range(D):
            params[cfg.param_name("w_ih", k, d)] = _from_onnx(W[d])
            params[cfg.param_name("w_hh", k, d)] = _from_onnx(R[d])
            if bias:
                params[cfg.param_name("b_ih", k, d)] = _from_onnx(B[d, :4 * H])
                params[cfg.param_name("b_hh", k, d)] = _from_onnx(B[d, 4 * H:])
            if peephole:
                blocks = np.split(reorder(P[d], ONNX_PEEPHOLE_ORDER, TORCH_PEEPHOLE_ORDER), 3)
                for g, a in zip(TORCH_PEEPHOLE_ORDER, blocks, strict=True):
                    params[cfg.param_name(f"p_{g}", k, d)] = a.copy()
    return params


def lstm_model(cfg, params, *, dtype=np.float32, with_lengths: bool = False) -> bytes:
    """The serialized ONNX model (opset 17) of a fastlstm LSTM; its graph is described in this module's
    docstring.

    Args:
        cfg: the model's Config (its ``.config``) or the module itself.
        params: fastlstm params (state_dict names), arrays or tensors; the initializers W{k}, R{k}, B{k},
            P{k} are ``to_onnx_weights(params, cfg)`` cast to ``dtype``.
        dtype: the element type of the weights, input and outputs: np.float32 (onnxruntime's CPU LSTM
            kernel computes in float32 only) or np.float64.
        with_lengths: add the input sequence_lens [B] int32 (fastlstm's ``lengths``: torch's
            packed-sequence semantics).

    Returns:
        The model as bytes (``onnx.ModelProto.SerializeToString()``), checked with ``onnx.checker``. Inputs
        X0 [T, B, I] (time-major) and, with with_lengths, sequence_lens [B]; outputs y [T, B, D*H],
        h_n and c_n [L*D, B, H].

    Raises:
        ImportError: onnx is not installed.
        TypeError, ValueError, KeyError: as to_onnx_weights (ValueError for proj_size > 0).
    """
    cfg = as_config(cfg)
    weights = to_onnx_weights(params, cfg)  # before importing onnx: its errors do not need onnx
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise ImportError(f"building an ONNX model needs the onnx package ({exc})") from None

    dtype = np.dtype(dtype)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    D, L, H = cfg.num_directions, cfg.num_layers, cfg.hidden_size
    # the shape constant of the Y reshape (D = 2) or the axis of the Squeeze (D = 1); onnxruntime warns
    # about initializers that no node reads, so only the one used is added
    inits = [numpy_helper.from_array(np.array([0, 0, -1] if D == 2 else [1], np.int64), "dir_shape")]
    nodes = []
    for k, layer in enumerate(weights):
        names = {}
        for n in "WRBP":  # an absent B or P is the input named "" (ONNX's optional input left out)
            names[n] = "" if layer[n] is None else f"{n}{k}"
            if layer[n] is not None:
                inits.append(numpy_helper.from_array(np.ascontiguousarray(layer[n], dtype), names[n]))
        # input positions: X W R B sequence_lens initial_h initial_c P; trailing absent ones are dropped
        lengths = "sequence_lens" if with_lengths else ""
        inputs = [f"X{k}", names["W"], names["R"], names["B"], lengths, "", "", names["P"]]
        while inputs[-1] == "":
            inputs.pop()
        nodes.append(helper.make_node("LSTM", inputs, [f"Y{k}", f"Yh{k}", f"Yc{k}"], hidden_size=H,
                                      direction="bidirectional" if D == 2 else "forward"))
        out = "y" if k == L - 1 else f"X{k + 1}"
        if D == 1:  # what torch's exporter emits; no data movement
            nodes.append(helper.make_node("Squeeze", [f"Y{k}", "dir_shape"], [out]))
        else:
            nodes += [helper.make_node("Transpose", [f"Y{k}"], [f"Yt{k}"], perm=[0, 2, 1, 3]),
                      helper.make_node("Reshape", [f"Yt{k}", "dir_shape"], [out])]
    for s in ("h", "c"):
        nodes.append(helper.make_node("Concat", [f"Y{s}{k}" for k in range(L)], [f"{s}_n"], axis=0)
                     if L > 1 else helper.make_node("Identity", [f"Y{s}0"], [f"{s}_n"]))

    inputs = [helper.make_tensor_value_info("X0", elem, ["T", "B", cfg.input_size])]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, ["B"]))
    outputs = [helper.make_tensor_value_info("y", elem, ["T", "B", D * H]),
               helper.make_tensor_value_info("h_n", elem, [L * D, "B", H]),
               helper.make_tensor_value_info("c_n", elem, [L * D, "B", H])]
    graph = helper.make_graph(nodes, "fastlstm", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fastlstm")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(model, path=None, *, with_lengths: bool = False) -> bytes:
    """The ONNX model of a fastlstm.LSTM or fastlstm.torch.LSTM: lstm_model in float32, one LSTM node per
    layer, starting from a zero state (as the module with hx=None).

    Args:
        model: a fastlstm.LSTM or fastlstm.torch.LSTM (anything with ``.config`` and ``.state_dict()``).
        path: when given, a file path (str or os.PathLike) the model is also written to (overwritten).
        with_lengths: add the input sequence_lens [B] int32 (the module's ``lengths``).

    Returns:
        The model as bytes. Inputs X0 [T, B, I] float32, time-major whatever batch_first is, and with
        with_lengths sequence_lens [B] int32; outputs y [T, B, D*H], h_n and c_n [L*D, B, H] float32. A
        float64 model's weights are rounded to float32 (onnxruntime's CPU LSTM kernel computes in float32
        only).

    Raises:
        TypeError: model has no ``.config`` or ``.state_dict``.
        ValueError: proj_size > 0 (ONNX's LSTM has no projection).
        ImportError: onnx is not installed.
        OSError: path cannot be written.
    """
    if not hasattr(model, "config") or not hasattr(model, "state_dict"):
        raise TypeError(f"model: expected a fastlstm.LSTM or fastlstm.torch.LSTM, got {type(model).__name__}")
    cfg = as_config(model)
    if cfg.proj_size > 0:
        raise ValueError(f"model: ONNX's LSTM has no projection; expected proj_size=0, got {cfg.proj_size}")
    data = lstm_model(cfg, from_torch(model.state_dict()), dtype=np.float32, with_lengths=with_lengths)
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data


class OnnxLSTM:
    """An onnxruntime session over ``lstm_model`` bytes, built once and called many times.

    Args:
        model_bytes: a model from lstm_model or export_onnx (bytes).
        threads: onnxruntime's intra-op thread count (int >= 1; 0 lets onnxruntime choose).

    Raises:
        ImportError: onnxruntime is not installed.
        Exception: onnxruntime's own error types for bytes that are not a valid model.

    ``__call__(x, lengths=None)`` -> ``(y, (h_n, c_n))`` as numpy arrays, like fastlstm.LSTM's with
    batch_first=False and hx=None.
    """

    def __init__(self, model_bytes: bytes, threads: int = 2):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # one node runs at a time in an LSTM chain
        self.session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        self.with_lengths = any(i.name == "sequence_lens" for i in self.session.get_inputs())
        self.dtype = np.float32 if self.session.get_inputs()[0].type == "tensor(float)" else np.float64

    def __call__(self, x, lengths=None):
        """Run the model.

        Args:
            x: input [T, B, I] (time-major), cast to the model's dtype (float32 or float64).
            lengths: per-sequence lengths [B] (ints in 1..T), only for a model built with with_lengths;
                None there means every sequence has length T.

        Returns:
            (y [T, B, D*H], (h_n [L*D, B, H], c_n [L*D, B, H])), numpy arrays of the model's dtype.

        Raises:
            ValueError: lengths given to a model built without sequence_lens.
        """
        x = np.ascontiguousarray(x, self.dtype)
        feeds = {"X0": x}
        if self.with_lengths:
            feeds["sequence_lens"] = np.asarray(lengths if lengths is not None else [x.shape[0]] * x.shape[1],
                                                np.int32)
        elif lengths is not None:
            raise ValueError("lengths: this model was built without sequence_lens (with_lengths=False)")
        y, h_n, c_n = self.session.run(None, feeds)
        return y, (h_n, c_n)


def run_onnx(model_bytes: bytes, x, lengths=None, threads: int = 2):
    """One run of a model from lstm_model or export_onnx; builds a session on each call (OnnxLSTM reuses
    one). Arguments, return value and errors: those of ``OnnxLSTM(model_bytes, threads)(x, lengths)``:
    x [T, B, I], lengths [B] or None -> (y [T, B, D*H], (h_n, c_n [L*D, B, H]))."""
    return OnnxLSTM(model_bytes, threads)(x, lengths)
