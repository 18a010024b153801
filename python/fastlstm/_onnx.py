"""An ONNX model (opset 17, one LSTM node per layer) with the numbers of a fastlstm LSTM, and a reusable
onnxruntime session for it: the onnxruntime baseline of the benchmark.

Parameter map, fastlstm/torch (state_dict names, layer k, sfx "" or "_reverse") -> ONNX LSTM inputs:

    W [D, 4H, I_k]  = weight_ih_l{k}{sfx}, 4H blocks reordered            torch i, f, g, o -> ONNX i, o, f, c
    R [D, 4H, H]    = weight_hh_l{k}{sfx}, same reordering                 (block order (0, 3, 1, 2))
    B [D, 8H]       = [bias_ih reordered, bias_hh reordered]               ONNX's Wb then Rb
    P [D, 3H]       = [peephole_i, peephole_o, peephole_f]_l{k}{sfx}       ONNX's peephole order i, o, f
    direction d = 0 forward, 1 reverse ("bidirectional" node), as torch's "" and "_reverse".

Graph: X [T, B, I] (and sequence_lens [B] int32) -> per layer LSTM -> Y [T, D, B, H] -> [T, B, D*H] (Squeeze
for D = 1, else Transpose to [T, B, D, H] and Reshape) -> the next layer; outputs y [T, B, D*H] and
h_n, c_n [L*D, B, H] (the layers' Y_h / Y_c concatenated, interleaved per layer exactly like torch's).
The initial state is zero. proj_size > 0 has no ONNX LSTM equivalent (ValueError). onnxruntime's CPU
LSTM kernel computes in float32 only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["lstm_model", "OnnxLSTM", "run_onnx", "ONNX_GATES"]

ONNX_GATES = (0, 3, 1, 2)  # torch's 4H blocks i, f, g, o, taken in this order, give ONNX's i, o, f, c
OPSET = 17


def _gates(a: np.ndarray) -> np.ndarray:
    blocks = np.split(a, 4, axis=0)
    return np.concatenate([blocks[j] for j in ONNX_GATES], axis=0)


def lstm_model(cfg, params, *, dtype=np.float32, with_lengths: bool = False) -> bytes:
    """The serialized ONNX model of a fastlstm LSTM with Config ``cfg`` and ``params`` (state_dict names).
    with_lengths adds the input sequence_lens [B] int32 (torch's packed-sequence semantics)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if cfg.proj_size > 0:
        raise ValueError(f"cfg.proj_size: ONNX's LSTM has no projection; expected 0, got {cfg.proj_size}")
    dtype = np.dtype(dtype)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    D, L, H = cfg.num_directions, cfg.num_layers, cfg.hidden_size
    # the shape constant of the Y reshape (D = 2) or the axis of the Squeeze (D = 1); onnxruntime warns
    # about initializers that no node reads, so only the one used is added
    inits = [numpy_helper.from_array(np.array([0, 0, -1] if D == 2 else [1], np.int64), "dir_shape")]
    nodes = []

    def init(name, arrays):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(np.stack(arrays), dtype), name))
        return name

    for k in range(L):
        lp = [cfg.layer_params(params, k, d) for d in range(D)]
        w = init(f"W{k}", [_gates(np.asarray(p["w_ih"])) for p in lp])
        r = init(f"R{k}", [_gates(np.asarray(p["w_hh"])) for p in lp])
        b = init(f"B{k}", [np.concatenate([_gates(np.asarray(p["b_ih"])), _gates(np.asarray(p["b_hh"]))])
                           for p in lp]) if cfg.bias else ""
        pp = init(f"P{k}", [np.concatenate([p["p_i"], p["p_o"], p["p_f"]]) for p in lp]) \
            if cfg.peephole else ""
        # optional inputs left out are named "" (positions: X W R B sequence_lens initial_h initial_c P)
        inputs = [f"X{k}", w, r, b, "sequence_lens" if with_lengths else "", "", "", pp]
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


class OnnxLSTM:
    """An onnxruntime session over ``lstm_model`` bytes, built once: ``__call__(x, lengths=None)`` ->
    (y, (h_n, c_n)) as numpy arrays, like fastlstm.LSTM.__call__ with batch_first=False and hx=None."""

    def __init__(self, model_bytes: bytes, threads: int = 2):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # one node runs at a time in an LSTM chain
        self.session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        self.with_lengths = any(i.name == "sequence_lens" for i in self.session.get_inputs())
        self.dtype = np.float32 if self.session.get_inputs()[0].type == "tensor(float)" else np.float64

    def __call__(self, x, lengths=None):
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
    """One-off run (builds a session each call; use OnnxLSTM to reuse one): -> (y, (h_n, c_n))."""
    return OnnxLSTM(model_bytes, threads)(x, lengths)
