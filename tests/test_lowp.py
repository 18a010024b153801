"""The low-precision CPU kernels (precision="bf16", "int8"): every inference option (and bf16 training) at
tail-hitting sizes against the float64 reference within each precision's documented bound (docs/api.md), no
worse than the peers' own low-precision paths on the same weights and inputs (torch bf16 autocast, forward and
backward; torch dynamic int8 and onnxruntime's DynamicQuantizeLSTM), the same bits for any thread count and
call path, NaN propagated, and clear errors for what a precision or this CPU does not offer."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest

import fastlstm
from fastlstm import _runtime, reference
from fastlstm._backends import cpu as cpu_backend
from fastlstm.bench.lowp import torch_bf16_autocast
from test_engine import CASES, _inputs

NATIVE = fastlstm.backends()["cpu"]["precisions"]["float32"]  # what this CPU runs (natively or on AVX2)
# The kernel families that run low precision here: the widest ISA's and, below it, AVX2's (the emulations a CPU
# without AVX512_BF16 / AVX512_VNNI runs): every test below runs on each.
LOWP_ISAS = [i for i in _runtime.available_isas() if i != "scalar"]
BOUND = {"bf16": 1e-2, "int8": 3e-2}  # max |y - y64| on these shapes; docs/api.md states the same
PRECISIONS = [pytest.param(p, marks=pytest.mark.skipif(p not in NATIVE, reason=f"this CPU does not run {p}"))
              for p in ("bf16", "int8")]


# Runs a test on each of those families through conftest's `isa` fixture.
on_each_family = pytest.mark.parametrize("isa", LOWP_ISAS, indirect=True)


def as64(a):
    return None if a is None else a.astype(np.float64)


def _ref64(m, x, state, lens):
    p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
    s64 = None if state is None else tuple(a.astype(np.float64) for a in state)
    (y, (h, c)), _ = reference.forward(m.config, p64, x.astype(np.float64), s64, lengths=lens)
    return y, h, c


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("opts,T,B,I,H", CASES)
@on_each_family
def test_every_option_within_the_bound(rng, isa, precision, opts, T, B, I, H):
    m = fastlstm.LSTM(I, H, seed=int(rng.integers(1 << 30)), precision=precision, **opts)
    for hx, lengths in ((False, False), (True, True)):
        x, state, lens = _inputs(m, rng, T, B, hx=hx, lengths=lengths, dtype="float32")
        y, (h, c) = m(x, state, lengths=lens)
        y64, h64, c64 = _ref64(m, x, state, lens)
        assert y.dtype == np.float32
        for name, fast, ref in (("y", y, y64), ("h_n", h, h64)):
            err = np.abs(fast - ref).max()
            assert err <= BOUND[precision], f"{name}: {err:.3g}"
        assert np.abs(c - c64).max() <= BOUND[precision] * (1 + np.abs(c64).max())
        if lens is not None:
            for b, n in enumerate(lens):
                assert not (y[b, n:] if m.batch_first else y[n:, b]).any()


@pytest.mark.parametrize("precision", PRECISIONS)
@on_each_family
def test_same_bits_for_any_thread_count_batch_and_call_path(rng, isa, threads, precision):
    m = fastlstm.LSTM(17, 40, 2, bidirectional=True, proj_size=7, peephole=True, seed=5, precision=precision)
    x, state, lens = _inputs(m, rng, 6, 13, lengths=True, dtype="float32")
    runs = []
    for n in (1, 2, 3):
        fastlstm.set_num_threads(n)
        runs.append(m(x, state, lengths=lens))
    for y, (h, c) in runs[1:]:
        assert np.array_equal(y, runs[0][0]) and np.array_equal(h, runs[0][1][0]) and np.array_equal(c, runs[0][1][1])
    sub = m(x[:, 5:6], (state[0][:, 5:6], state[1][:, 5:6]), lengths=lens[5:6])
    assert np.array_equal(sub[0][:, 0], runs[0][0][:, 5])
    uni = fastlstm.LSTM(17, 40, 2, seed=5, precision=precision)
    out, st = uni.step(x[0])
    assert np.array_equal(out, uni(x[:1])[0][0])


@pytest.mark.parametrize("precision", PRECISIONS)
@on_each_family
def test_nan_propagates(isa, precision):
    m = fastlstm.LSTM(4, 8, seed=1, precision=precision)
    x = np.zeros((3, 2, 4), np.float32)
    x[1, 0, 2] = np.nan
    y, _ = m(x)
    assert np.isnan(y[1:, 0]).all() and np.isfinite(y[:, 1]).all() and np.isfinite(y[0]).all()


def test_precision_errors_name_the_argument():
    for bad in ("tf32", "fp16"):
        with pytest.raises(ValueError, match="precision"):
            fastlstm.LSTM(4, 8, precision=bad)
    with pytest.raises(ValueError, match="precision"):
        fastlstm.LSTM(4, 8, dtype="float64", precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        fastlstm.LSTM(4, 8, precision="nope")
    with pytest.raises(TypeError, match="precision"):
        fastlstm.LSTM(4, 8, precision=16)
    if "int8" in NATIVE:
        m = fastlstm.LSTM(4, 8, precision="int8")
        with pytest.raises(ValueError, match="inference only"):
            m(np.zeros((2, 1, 4), np.float32), train=True)


def test_a_family_without_the_precision_says_what_it_offers():
    """Under FASTLSTM_ISA=scalar (no bf16 / int8 family there) the constructor says what the CPU offers."""
    code = ("import fastlstm\n"
            "print(fastlstm.backends()['cpu']['precisions']['float32'])\n"
            "try:\n    fastlstm.LSTM(4, 8, precision='int8')\nexcept ValueError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(),
                         env=dict(os.environ, FASTLSTM_ISA="scalar"), check=True).stdout
    assert out.splitlines()[0] == "['fp32']"
    assert "precision: 'int8' is not available" in out and "offers: default" in out


@pytest.mark.skipif("avx2" not in LOWP_ISAS, reason="no AVX2 on this CPU")
def test_avx2_runs_the_low_precisions_without_their_instructions():
    """AVX2 alone runs bf16 and int8 (emulated: not native), and a wider ISA lacking them falls back to it."""
    runs = cpu_backend.precisions("avx2")["float32"]
    native = cpu_backend.precisions("avx2", native_only=True)["float32"]
    assert runs == ["fp32", "bf16", "int8"] and native == ["fp32"]
    info = fastlstm.backends()["cpu"]
    assert set(info["native_precisions"]["float32"]) <= set(info["precisions"]["float32"])


@pytest.mark.skipif(len(LOWP_ISAS) < 2, reason="one low-precision kernel family on this CPU")
@pytest.mark.parametrize("precision", PRECISIONS)
def test_avx2_emulation_gives_the_native_family_s_numbers(rng, precision):
    """int8: the same int32 sums and the same dequantization, so the same bits by construction. bf16: the same
    rounding of operands and two exact products per pair added in the x86 manual's order (odd element first);
    the same bits wherever the CPU's vdpbf16ps follows that definition (measured on AMD Zen 5), asserted
    to 1e-6 here. Gradients (bf16) within the bf16 bound of each other."""
    m = fastlstm.LSTM(37, 45, 2, bidirectional=True, proj_size=11, peephole=True, seed=3, precision=precision)
    x, state, lens = _inputs(m, rng, 9, 19, hx=True, lengths=True, dtype="float32")
    previous = _runtime.selected_isa()
    outs = []
    try:
        for name in LOWP_ISAS:
            _runtime._set_isa(name)
            outs.append(m(x, state, lengths=lens))
    finally:
        _runtime._set_isa(previous)
    (y0, (h0, c0)), (y1, (h1, c1)) = outs[0], outs[-1]
    if precision == "int8":
        assert np.array_equal(y0, y1) and np.array_equal(h0, h1) and np.array_equal(c0, c1)
    else:
        for a, b in ((y0, y1), (h0, h1), (c0, c1)):
            assert np.abs(a - b).max() <= 1e-6


GRAD_BOUND = 2e-2  # bf16 training: max |g - g64| / max |g64| per gradient, on these shapes (docs/api.md)


@pytest.mark.skipif("bf16" not in NATIVE, reason="this CPU does not run bf16")
@pytest.mark.parametrize("opts,T,B,I,H", CASES + [(dict(num_layers=3, dropout=0.5, bidirectional=True), 4, 5, 3, 17)])
@on_each_family
def test_bf16_training_within_the_bound(rng, isa, opts, T, B, I, H):
    m = fastlstm.LSTM(I, H, seed=int(rng.integers(1 << 30)), precision="bf16", **opts)
    for hx, lengths in ((False, False), (True, True)):
        x, state, lens = _inputs(m, rng, T, B, hx=hx, lengths=lengths, dtype="float32")
        y, (h, c) = m(x, state, lengths=lens, train=True)
        masks = m._tape.dropout_masks
        dy, dhn, dcn = (rng.standard_normal(a.shape).astype(np.float32) for a in (y, h, c))
        dx, (dh0, dc0) = m.backward(dy, dhn, dcn)
        p64 = {k: v.astype(np.float64) for k, v in m.state_dict().items()}
        (y64, _), tape = reference.forward(m.config, p64, x.astype(np.float64),
                                           None if state is None else tuple(map(as64, state)), lengths=lens,
                                           train=True, dropout_masks=None if masks is None else list(map(as64, masks)))
        rdx, (rdh0, rdc0), rg = reference.backward(m.config, p64, tape, *map(as64, (dy, dhn, dcn)))
        assert np.abs(y - y64).max() <= BOUND["bf16"]
        for name, fast, ref in [("dx", dx, rdx), ("dh0", dh0, rdh0), ("dc0", dc0, rdc0)] + \
                [(k, m.grads[k], rg[k]) for k in rg]:
            # Relative to the gradient's largest magnitude, floored at 0.25 (the upstream gradients are N(0, 1)):
            # a gradient whose few terms cancel (H = 1: dc0 = 1.4e-3 from terms near 1) carries the terms' bf16
            # error, not its own magnitude's. Over 150 seeds of these cases the worst is 1.3e-2.
            err = np.abs(fast - ref).max() / max(np.abs(ref).max(), 0.25)
            assert err <= GRAD_BOUND, f"{name}: {err:.3g}"


@pytest.mark.skipif("bf16" not in NATIVE, reason="this CPU does not run bf16")
@on_each_family
def test_bf16_gradients_same_bits_for_any_thread_count(rng, isa, threads):
    m = fastlstm.LSTM(17, 40, 2, bidirectional=True, proj_size=7, peephole=True, seed=5, precision="bf16")
    x, state, lens = _inputs(m, rng, 6, 13, lengths=True, dtype="float32")
    dy = rng.standard_normal((6, 13, 14)).astype(np.float32)
    runs = []
    for n in (1, 2, 3):
        fastlstm.set_num_threads(n)
        m(x, state, lengths=lens, train=True)
        dx, _ = m.backward(dy)
        runs.append((dx, m.grads))
    for dx, g in runs[1:]:
        assert np.array_equal(dx, runs[0][0]) and all(np.array_equal(g[k], runs[0][1][k]) for k in g)


# -- the peers, on the same weights and inputs -----------------------------------------------------------

def _peer_case(seed, T, B, I, H):
    from oracles import require

    torch = require("torch")
    torch.manual_seed(seed)
    net = torch.nn.LSTM(I, H)
    x = torch.randn(T, B, I)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    cfg = fastlstm.LSTM(I, H).config
    (y64, _), _ = reference.forward(cfg, {k: v.astype(np.float64) for k, v in sd.items()}, x.double().numpy())
    return torch, net, x, sd, cfg, y64


def _ours(precision, sd, x, I, H):
    m = fastlstm.LSTM(I, H, precision=precision)
    m.load_state_dict(sd)
    return m(x)[0]


SHAPES = [(0, 40, 16, 96, 128), (1, 40, 1, 128, 128), (2, 20, 5, 33, 40)]  # seed, T, B, I, H


def _errors(y, y64) -> tuple[float, float]:
    """(RMS, max) of |y - y64|. The RMS is the comparison: the largest of thousands of rounding errors moves by
    +-15% from seed to seed for either side, the RMS by a few percent."""
    e = np.asarray(y, np.float64) - y64
    return float(np.sqrt(np.mean(e * e))), float(np.abs(e).max())


@pytest.mark.skipif("bf16" not in NATIVE, reason="this CPU does not run bf16")
@pytest.mark.parametrize("seed,T,B,I,H", SHAPES)
def test_bf16_no_worse_than_torch_autocast(seed, T, B, I, H):
    torch, net, x, sd, cfg, y64 = _peer_case(seed, T, B, I, H)
    with torch.no_grad(), torch_bf16_autocast(torch)():  # ATen's LSTM where oneDNN has no bf16 one
        yt, _ = net(x)
    rms_torch, max_torch = _errors(yt.float().numpy(), y64)
    rms_ours, max_ours = _errors(_ours("bf16", sd, x.numpy(), I, H), y64)
    assert rms_ours <= rms_torch and max_ours <= 1.25 * max_torch, (rms_ours, rms_torch, max_ours, max_torch)


@pytest.mark.skipif("int8" not in NATIVE, reason="this CPU does not run int8")
@pytest.mark.parametrize("seed,T,B,I,H", SHAPES)
def test_int8_no_worse_than_torch_and_onnxruntime_dynamic_int8(seed, T, B, I, H):
    from oracles import require

    torch, net, x, sd, cfg, y64 = _peer_case(seed, T, B, I, H)
    with warnings.catch_warnings():  # torch's eager quantization is deprecated (and says so)
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(net), {torch.nn.LSTM}, dtype=torch.qint8)
        with torch.no_grad():
            yq, _ = q[0](x)
    assert "quantized.dynamic" in type(q[0]).__module__  # the int8 module, not the float one
    require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from fastlstm.convert import onnx as conv

    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "lstm.onnx"), os.path.join(d, "lstm_int8.onnx")
        with open(src, "wb") as f:
            f.write(conv.lstm_model(cfg, sd))
        quantize_dynamic(src, dst, op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)
        with open(dst, "rb") as f:
            yo, _ = conv.OnnxLSTM(f.read())(x.numpy())
    ours, peers = _errors(_ours("int8", sd, x.numpy(), I, H), y64), (_errors(yq.numpy(), y64), _errors(yo, y64))
    for peer in peers:
        assert ours[0] <= peer[0] and ours[1] <= 1.25 * peer[1], (ours, peers)


@pytest.mark.skipif("bf16" not in NATIVE, reason="this CPU does not run bf16")
@pytest.mark.parametrize("seed,T,B,I,H", SHAPES)
def test_bf16_training_no_worse_than_torch_autocast(seed, T, B, I, H):
    """The input and weight gradients of one backward, against the float64 reference's, beside torch's under
    bf16 autocast (RMS no larger; max within the seed-to-seed spread of a maximum)."""
    torch, net, x, sd, cfg, y64 = _peer_case(seed, T, B, I, H)
    dy = torch.randn(T, B, H, generator=torch.Generator().manual_seed(seed))
    (_, _), tape = reference.forward(cfg, {k: v.astype(np.float64) for k, v in sd.items()}, x.double().numpy(),
                                     train=True)
    rdx, _, rg = reference.backward(cfg, {k: v.astype(np.float64) for k, v in sd.items()}, tape,
                                    dy.double().numpy())
    xt = x.clone().requires_grad_()
    with torch_bf16_autocast(torch)():
        yt, _ = net(xt)
    yt.float().backward(dy)
    m = fastlstm.LSTM(I, H, precision="bf16")
    m.load_state_dict(sd)
    m(x.numpy(), train=True)
    dx, _ = m.backward(dy.numpy())
    for ours, theirs, ref in ((dx, xt.grad.numpy(), rdx),
                              (m.grads["weight_hh_l0"], net.weight_hh_l0.grad.numpy(), rg["weight_hh_l0"]),
                              (m.grads["weight_ih_l0"], net.weight_ih_l0.grad.numpy(), rg["weight_ih_l0"])):
        (rms_o, max_o), (rms_t, max_t) = _errors(ours, ref), _errors(theirs, ref)
        assert rms_o <= rms_t and max_o <= 1.25 * max_t, (rms_o, rms_t, max_o, max_t)
