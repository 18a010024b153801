"""fastlstm.convert: every converter round-trips bitwise, and converted weights give the other framework's
numbers (torch.nn.LSTM, onnxruntime on export_onnx's model, and Keras's LSTM equations written out in NumPy,
as Keras is not installable here)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastlstm
from fastlstm import convert
from fastlstm.convert import _layout
from fastlstm.convert import onnx as convert_onnx
from oracles import require

CONFIGS = [  # fastlstm.LSTM kwargs (input_size 5, hidden_size 7)
    pytest.param(dict(), id="basic"),
    pytest.param(dict(num_layers=2, bidirectional=True), id="L2-bi"),
    pytest.param(dict(bias=False, num_layers=2), id="nobias-L2"),
    pytest.param(dict(peephole=True, bidirectional=True), id="peephole-bi"),
    pytest.param(dict(peephole=True, num_layers=2, bidirectional=True, batch_first=True),
                 id="peephole-L2-bi-bf"),
]


def _model(dtype="float64", seed=0, **kw):
    return fastlstm.LSTM(5, 7, dtype=dtype, seed=seed, **kw)


def _assert_same(a: dict, b: dict):
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _input(rng, m, T=6, B=3, dtype=np.float64):
    x = rng.standard_normal((T, B, m.input_size)).astype(dtype)
    return np.ascontiguousarray(x.transpose(1, 0, 2)) if m.batch_first else x


# -- bitwise round trips (numpy only) ------------------------------------------------------------------------
@pytest.mark.parametrize("kw", CONFIGS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_weights_round_trip(kw, dtype):
    m = _model(dtype, **kw)
    p = m.state_dict()
    onnx_layers = convert.to_onnx_weights(p, m.config)
    _assert_same(convert.from_onnx_weights(onnx_layers), p)
    again = convert.to_onnx_weights(convert.from_onnx_weights(onnx_layers), m)  # a module works as cfg too
    for a, b in zip(onnx_layers, again, strict=True):
        for n in "WRBP":
            assert (a[n] is None) == (b[n] is None)
            if a[n] is not None:
                np.testing.assert_array_equal(a[n], b[n])


def test_onnx_weights_layout():
    """The gate map written out by hand: torch's blocks i, f, g, o -> ONNX's i, o, f, c; P = i, o, f."""
    m = _model(peephole=True)
    p, H = m.state_dict(), 7
    (layer,) = convert.to_onnx_weights(p, m.config)
    i, f, g, o = np.split(p["weight_ih_l0"], 4)
    np.testing.assert_array_equal(layer["W"][0], np.concatenate([i, o, f, g]))
    bi, bf, bg, bo = np.split(p["bias_hh_l0"], 4)
    np.testing.assert_array_equal(layer["B"][0, 4 * H:], np.concatenate([bi, bo, bf, bg]))
    np.testing.assert_array_equal(layer["P"][0], np.concatenate([p["peephole_i_l0"], p["peephole_o_l0"],
                                                                 p["peephole_f_l0"]]))


def test_from_onnx_weights_missing_b_and_p_are_zeros():
    m = _model(bias=False, num_layers=2)
    layers = convert.to_onnx_weights(m.state_dict(), m.config)
    layers[1]["B"] = np.ones((1, 8 * 7))  # one layer with a bias: fastlstm's bias holds for all layers
    layers[0]["P"] = np.ones((1, 3 * 7))
    p = convert.from_onnx_weights(layers)
    assert not p["bias_ih_l0"].any() and not p["bias_hh_l0"].any() and (p["bias_ih_l1"] == 1).all()
    assert not p["peephole_o_l1"].any() and (p["peephole_o_l0"] == 1).all()
    fastlstm.LSTM(5, 7, 2, peephole=True).load_state_dict(p)  # names and shapes fastlstm takes


@pytest.mark.parametrize("kw", [c for c in CONFIGS if "peephole" not in c.id])
def test_keras_round_trip(kw, rng):
    m = _model(**kw)
    p = m.state_dict()
    if m.bias:  # Keras keeps one bias: exact only when bias_hh is zero
        p.update({n: np.zeros_like(a) for n, a in p.items() if n.startswith("bias_hh")})
    keras = convert.to_keras(p, m.config)
    _assert_same(convert.from_keras(keras, bidirectional=m.bidirectional), p)
    # and Keras -> fastlstm -> Keras, with any bias
    per = 3 if m.bias else 2
    assert all(len(entry) == per * m.config.num_directions for entry in keras)
    keras = [[rng.standard_normal(a.shape) for a in entry] for entry in keras]
    again = convert.to_keras(convert.from_keras(keras, bidirectional=m.bidirectional), m)
    for e1, e2 in zip(keras, again, strict=True):
        for a, b in zip(e1, e2, strict=True):
            np.testing.assert_array_equal(a, b)


def test_keras_bias_is_the_sum():
    m = _model()
    p = m.state_dict()
    (entry,) = convert.to_keras(p, m.config)
    np.testing.assert_array_equal(entry[2], p["bias_ih_l0"] + p["bias_hh_l0"])
    np.testing.assert_array_equal(entry[0], p["weight_ih_l0"].T)


def test_errors():
    with pytest.raises(ValueError, match="peephole"):
        convert.to_keras({}, _model(peephole=True).config)
    with pytest.raises(ValueError, match="proj_size"):
        convert.to_keras({}, _model(proj_size=3).config)
    with pytest.raises(ValueError, match="proj_size"):
        convert.to_onnx_weights({}, _model(proj_size=3).config)
    with pytest.raises(ValueError, match="proj_size"):
        convert.export_onnx(_model(proj_size=3))
    with pytest.raises(TypeError, match="model"):
        convert.export_onnx({})
    with pytest.raises(TypeError, match="cfg"):
        convert.to_keras({}, None)
    k, r, b = np.zeros((5, 28)), np.zeros((7, 28)), np.zeros(28)
    with pytest.raises(ValueError, match=r"layers\[0\]: expected 4 or 6 arrays"):
        convert.from_keras([[k, r, b]], bidirectional=True)
    with pytest.raises(ValueError, match=r"layers\[1\]"):
        convert.from_keras([[k, r, b], [np.zeros((7, 24)), np.zeros((6, 24)), np.zeros(24)]])
    with pytest.raises(ValueError, match=r"layers\[0\]"):
        convert.from_keras([[k, r, np.zeros(27)]])
    with pytest.raises(ValueError, match="layers"):
        convert.from_keras([])
    layers = convert.to_onnx_weights(_model().state_dict(), _model().config)
    layers[0]["P"] = np.zeros((1, 20))
    with pytest.raises(ValueError, match=r"layers\[0\]"):
        convert.from_onnx_weights(layers)
    with pytest.raises(ValueError, match=r"layers\[0\]"):
        convert.from_onnx_weights([{"W": np.zeros((1, 28, 5))}])


def test_import_needs_neither_torch_nor_onnx():
    code = ("import sys; sys.modules.update(torch=None, onnx=None, onnxruntime=None); "
            "import fastlstm.convert as c; from fastlstm.convert.onnx import lstm_model; "
            "m = __import__('fastlstm').LSTM(2, 3); "
            "c.from_onnx_weights(c.to_onnx_weights(m.state_dict(), m)); c.to_keras(m.state_dict(), m)\n"
            "for f in (lambda: c.to_torch(m.state_dict()), lambda: lstm_model(m.config, m.state_dict())):\n"
            "    try:\n        f()\n    except ImportError as e:\n        print('ImportError', e)")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastlstm.__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout + out.stderr
    assert lines[0].startswith("ImportError to_torch needs PyTorch"), out.stdout + out.stderr
    assert lines[1].startswith("ImportError building an ONNX model needs the onnx package"), out.stdout


def test_gate_reorders_are_inverses(rng):
    """One constant per order: each forward reorder and its inverse undo each other, and move the named
    blocks where each framework keeps them."""
    a = rng.standard_normal((4 * 3, 5))
    for order in (_layout.ONNX_GATE_ORDER, _layout.KERAS_GATE_ORDER):
        there = _layout.reorder(a, _layout.TORCH_GATE_ORDER, order)
        np.testing.assert_array_equal(_layout.reorder(there, order, _layout.TORCH_GATE_ORDER), a)
        np.testing.assert_array_equal(_layout.reorder(a[:, 0], _layout.TORCH_GATE_ORDER, order), there[:, 0])
    blocks = dict(zip("ifgo", np.split(a, 4), strict=True))
    np.testing.assert_array_equal(_layout.reorder(a, _layout.TORCH_GATE_ORDER, _layout.ONNX_GATE_ORDER),
                                  np.concatenate([blocks[g] for g in "iofg"]))  # ONNX's i, o, f, c
    p = rng.standard_normal(3 * 4)
    there = _layout.reorder(p, _layout.TORCH_PEEPHOLE_ORDER, _layout.ONNX_PEEPHOLE_ORDER)
    np.testing.assert_array_equal(there, np.concatenate([p[:4], p[8:], p[4:8]]))  # i, f, o -> i, o, f
    np.testing.assert_array_equal(
        _layout.reorder(there, _layout.ONNX_PEEPHOLE_ORDER, _layout.TORCH_PEEPHOLE_ORDER), p)
    assert convert_onnx.ONNX_GATES == (0, 3, 1, 2)
    back = _layout.block_order(_layout.ONNX_GATE_ORDER, _layout.TORCH_GATE_ORDER)
    assert [convert_onnx.ONNX_GATES[j] for j in back] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="gate orders"):
        _layout.reorder(a, _layout.TORCH_GATE_ORDER, ("i", "f", "c", "o"))


# -- PyTorch ---------------------------------------------------------------------------------------------
TORCH_OPTIONS = [dict(), dict(num_layers=2, bidirectional=True), dict(bias=False, batch_first=True),
                 dict(proj_size=3, num_layers=2, bidirectional=True)]


@pytest.mark.parametrize("opts", TORCH_OPTIONS)
def test_from_torch_gives_nn_lstm_numbers(opts, rng):
    torch = require("torch")
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 7, dtype=torch.float64, **opts)
    m = _model(**opts)
    m.load_state_dict(convert.from_torch(ref.state_dict()))
    D = m.config.num_directions
    x = _input(rng, m)
    h0 = rng.standard_normal((D * m.num_layers, 3, m.config.out_size))
    c0 = rng.standard_normal((D * m.num_layers, 3, 7))
    y, (h, c) = m(x, (h0, c0))
    with torch.no_grad():
        y_r, (h_r, c_r) = ref(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    for a, b in ((y, y_r), (h, h_r), (c, c_r)):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opts", TORCH_OPTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")  # torch's own path
def test_to_torch_loads_into_nn_lstm_unchanged(opts, dtype, rng):
    torch = require("torch")
    m = _model(dtype, **opts)
    p = m.state_dict()
    sd = convert.to_torch(p)
    assert all(isinstance(t, torch.Tensor) for t in sd.values())
    ref = torch.nn.LSTM(5, 7, dtype=getattr(torch, dtype), **opts)
    ref.load_state_dict(sd)  # strict: same names and shapes
    _assert_same(convert.from_torch(ref.state_dict()), p)
    _assert_same(convert.from_torch(sd), p)
    sd["weight_ih_l0"] += 1  # copies: converting never aliases the module's or the caller's arrays
    np.testing.assert_array_equal(m.state_dict()["weight_ih_l0"], p["weight_ih_l0"])
    x = _input(rng, m, dtype=np.dtype(dtype))
    with torch.no_grad():
        y_r = ref(torch.from_numpy(x))[0].numpy()
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m(x)[0], y_r, **tol)


def test_from_torch_takes_the_drop_in_module():
    torch = require("torch")
    from fastlstm.torch import LSTM

    t = LSTM(5, 7, bidirectional=True, peephole=True, dtype=torch.float64)
    p = convert.from_torch(t.state_dict())
    assert all(isinstance(a, np.ndarray) for a in p.values())
    m = _model(bidirectional=True, peephole=True)
    m.load_state_dict(p)
    _assert_same(m.state_dict(), p)
    require("onnx")
    assert convert.export_onnx(t) == convert.export_onnx(m)


# -- Keras: its documented layout and equations, in NumPy ----------------------------------------------------
def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _keras_lstm(x, kernel, recurrent_kernel, bias=None):
    """keras.layers.LSTM(return_sequences=True, return_state=True) with its default activations:
    x [B, T, I] -> (sequence [B, T, U], h, c); z = x kernel + h recurrent_kernel + bias, gates i, f, c, o."""
    B, U = x.shape[0], recurrent_kernel.shape[0]
    h, c, seq = np.zeros((B, U)), np.zeros((B, U)), []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent_kernel + (0 if bias is None else bias)
        zi, zf, zc, zo = np.split(z, 4, axis=1)
        c = _sigmoid(zf) * c + _sigmoid(zi) * np.tanh(zc)
        h = _sigmoid(zo) * np.tanh(c)
        seq.append(h)
    return np.stack(seq, axis=1), h, c


def _keras_stack(x, layers, bidirectional):
    """Stacked LSTM layers (or Bidirectional(LSTM) layers, merge_mode="concat") -> (sequence, [h...], [c...])
    with the states in torch's h_n order: layer by layer, forward then backward."""
    hs, cs = [], []
    for entry in layers:
        n = len(entry) // (2 if bidirectional else 1)
        seq, h, c = _keras_lstm(x, *entry[:n])
        hs.append(h)
        cs.append(c)
        if bidirectional:  # go_backwards on the reversed input; Bidirectional flips its sequence back
            seq_b, h_b, c_b = _keras_lstm(x[:, ::-1], *entry[n:])
            seq = np.concatenate([seq, seq_b[:, ::-1]], axis=-1)
            hs.append(h_b)
            cs.append(c_b)
        x = seq
    return x, np.stack(hs), np.stack(cs)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_from_keras_gives_keras_numbers(bidirectional, num_layers, bias, rng):
    I, U, B, T = 5, 7, 3, 6
    D = 2 if bidirectional else 1
    layers = []
    for k in range(num_layers):  # get_weights() of LSTM(U) or Bidirectional(LSTM(U)) as Keras documents it
        shapes = [(I if k == 0 else D * U, 4 * U), (U, 4 * U), (4 * U,)][:3 if bias else 2]
        layers.append([rng.uniform(-0.5, 0.5, s) for _ in range(D) for s in shapes])
    x = rng.standard_normal((B, T, I))
    seq, h, c = _keras_stack(x, layers, bidirectional)
    m = fastlstm.LSTM(I, U, num_layers, bias=bias, batch_first=True, bidirectional=bidirectional,
                      dtype="float64")
    m.load_state_dict(convert.from_keras(layers, bidirectional=bidirectional))
    y, (h_n, c_n) = m(x)
    for a, b in ((y, seq), (h_n, h), (c_n, c)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


# -- ONNX export ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("kw", CONFIGS)
def test_export_onnx_matches_fastlstm(kw, with_lengths, rng, tmp_path):
    require("onnx")
    ort = require("onnxruntime")
    m = _model("float32", **kw)
    path = tmp_path / "lstm.onnx"
    data = convert.export_onnx(m, path, with_lengths=with_lengths)
    assert path.read_bytes() == data
    x = _input(rng, m, T=7, B=4, dtype=np.float32)
    lengths = np.array([7, 2, 5, 1]) if with_lengths else None
    y, (h_n, c_n) = m(x, lengths=lengths)
    x_tm = x.transpose(1, 0, 2) if m.batch_first else x  # the graph is time-major whatever batch_first is
    feeds = {"X0": np.ascontiguousarray(x_tm)}
    if with_lengths:
        feeds["sequence_lens"] = lengths.astype(np.int32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y_o, h_o, c_o = sess.run(["y", "h_n", "c_n"], feeds)
    y_o = y_o.transpose(1, 0, 2) if m.batch_first else y_o
    for a, b in ((y, y_o), (h_n, h_o), (c_n, c_o)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_export_onnx_initializers_are_to_onnx_weights():
    onnx = require("onnx")
    from onnx import numpy_helper

    m = _model("float64", peephole=True, num_layers=2, bidirectional=True)
    graph = onnx.load_from_string(convert.export_onnx(m)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for k, layer in enumerate(convert.to_onnx_weights(m.state_dict(), m.config)):
        for n in "WRBP":
            assert inits[f"{n}{k}"].dtype == np.float32  # onnxruntime's LSTM runs in float32 only
            np.testing.assert_array_equal(inits[f"{n}{k}"], layer[n].astype(np.float32))


@pytest.mark.parametrize("kw", CONFIGS)
def test_lstm_model_initializers_are_to_onnx_weights(kw, monkeypatch):
    """One code path builds W, R, B, P: lstm_model takes them from to_onnx_weights, in any dtype."""
    onnx = require("onnx")
    from onnx import numpy_helper

    calls, original = [], convert_onnx.to_onnx_weights

    def spy(params, cfg):
        calls.append(original(params, cfg))
        return calls[-1]

    monkeypatch.setattr(convert_onnx, "to_onnx_weights", spy)
    m = _model("float64", **kw)
    data = convert_onnx.lstm_model(m.config, m.state_dict(), dtype=np.float64)
    assert len(calls) == 1
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(data).graph.initializer}
    names = set()
    for k, layer in enumerate(calls[0]):
        for n in "WRBP":
            if layer[n] is None:
                assert f"{n}{k}" not in inits
                continue
            names.add(f"{n}{k}")
            assert inits[f"{n}{k}"].dtype == np.float64
            np.testing.assert_array_equal(inits[f"{n}{k}"], layer[n])
    assert set(inits) - names == {"dir_shape"}


@pytest.mark.parametrize("kw", [CONFIGS[1], CONFIGS[4]])
def test_onnx_lstm_session_matches_fastlstm(kw, rng):
    require("onnx")
    require("onnxruntime")
    m = _model("float32", **kw)
    x = _input(rng, m, T=5, B=3, dtype=np.float32)
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2)) if m.batch_first else x
    lengths = np.array([5, 1, 3])
    session = convert_onnx.OnnxLSTM(convert_onnx.lstm_model(m.config, m.state_dict(), with_lengths=True))
    y, (h_n, c_n) = m(x, lengths=lengths)
    y_o, (h_o, c_o) = session(x_tm, lengths)
    np.testing.assert_allclose(y_o.transpose(1, 0, 2) if m.batch_first else y_o, y, rtol=1e-5, atol=1e-5)
    for a, b in ((h_o, h_n), (c_o, c_n)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    plain = convert_onnx.lstm_model(m.config, m.state_dict())
    y_full = m(x)[0]
    y_run = convert_onnx.run_onnx(plain, x_tm)[0]
    np.testing.assert_allclose(y_run.transpose(1, 0, 2) if m.batch_first else y_run, y_full, rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="sequence_lens"):
        convert_onnx.OnnxLSTM(plain)(x_tm, lengths)
