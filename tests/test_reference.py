"""fastlstm.reference, the oracle of every other test, checked in float64 against other people's
implementations (torch.nn.LSTM, onnxruntime's LSTM operator) and against finite differences."""

from __future__ import annotations

import dataclasses
import itertools
import random

import numpy as np
import pytest

from fastlstm import reference
from fastlstm._config import Config
from oracles import require

SIZES = (1, 3, 7, 17, 33)  # sizes that hit the loop tails of the fast kernels
TOL = {"rtol": 1e-10, "atol": 1e-10}


def close(actual, expected, what, **tol):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), err_msg=what, **(tol or TOL))


def rand_params(cfg: Config, rng, scale=0.6) -> dict:
    # Wider than torch's 1/sqrt(H) init so that the gates leave their linear regime.
    return {n: rng.uniform(-scale, scale, s) for n, s in cfg.param_shapes().items()}


def rand_x(cfg: Config, rng, T: int, B: int | None) -> np.ndarray:
    """x in the layout cfg asks for; B=None means unbatched (T, I)."""
    if B is None:
        return rng.standard_normal((T, cfg.input_size))
    return rng.standard_normal((B, T, cfg.input_size) if cfg.batch_first else (T, B, cfg.input_size))


def rand_hx(cfg: Config, rng, B: int | None):
    b = () if B is None else (B,)
    n = cfg.num_directions * cfg.num_layers
    return rng.standard_normal((n, *b, cfg.out_size)), rng.standard_normal((n, *b, cfg.hidden_size))


def ref_run(cfg, params, x, hx, rng, **kw):
    """Reference forward (train=True) and backward of sum(y*dy) + sum(h_n*dh_n) + sum(c_n*dc_n) with
    random upstream gradients. Returns the outputs, the gradients and the upstream gradients."""
    (y, (hn, cn)), tape = reference.forward(cfg, params, x, hx, train=True, **kw)
    up = tuple(rng.standard_normal(a.shape) for a in (y, hn, cn))
    dx, (dh0, dc0), grads = reference.backward(cfg, params, tape, *up)
    return (y, hn, cn), (dx, dh0, dc0, grads), up


def torch_run(cfg, params, x, hx, up, lengths=None):
    """torch.nn.LSTM in float64: the same outputs and gradients as ref_run. hx must be given: with the
    reference's hx=None, pass zeros, so torch yields the dh0, dc0 the reference returns for None."""
    torch = require("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    lstm = torch.nn.LSTM(cfg.input_size, cfg.hidden_size, cfg.num_layers, bias=cfg.bias,
                         batch_first=cfg.batch_first, bidirectional=cfg.bidirectional,
                         proj_size=cfg.proj_size, dtype=torch.float64)
    lstm.load_state_dict({n: torch.from_numpy(a) for n, a in params.items()})
    xt, h0, c0 = (torch.tensor(a, requires_grad=True) for a in (x, *hx))
    if lengths is None:
        y, (hn, cn) = lstm(xt, (h0, c0))
    else:
        packed = pack_padded_sequence(xt, torch.as_tensor(lengths), batch_first=cfg.batch_first,
                                      enforce_sorted=False)
        out, (hn, cn) = lstm(packed, (h0, c0))
        T = x.shape[1 if cfg.batch_first else 0]
        y, _ = pad_packed_sequence(out, batch_first=cfg.batch_first, total_length=T)
    loss = sum((a * torch.from_numpy(u)).sum() for a, u in zip((y, hn, cn), up, strict=True))
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in lstm.named_parameters()}
    outs = tuple(a.detach().numpy() for a in (y, hn, cn))
    return outs, (xt.grad.numpy(), h0.grad.numpy(), c0.grad.numpy(), grads)


def compare_with_torch(cfg, params, x, hx, rng, lengths=None):
    outs, (dx, dh0, dc0, grads), up = ref_run(cfg, params, x, hx, rng, lengths=lengths)
    if hx is None:
        hx = (np.zeros_like(outs[1]), np.zeros_like(outs[2]))
    t_outs, (t_dx, t_dh0, t_dc0, t_grads) = torch_run(cfg, params, x, hx, up, lengths)
    for name, a, b in zip(("y", "h_n", "c_n", "dx", "dh0", "dc0"), (*outs, dx, dh0, dc0),
                          (*t_outs, t_dx, t_dh0, t_dc0), strict=True):
        assert a.shape == b.shape, name
        close(a, b, name)
    assert list(grads) == list(t_grads)  # same names, same (state_dict) order
    for name in grads:
        close(grads[name], t_grads[name], f"grad {name}")
    return outs, (dx, dh0, dc0, grads)


# --- a. against torch.nn.LSTM: every option, every odd size ------------------------------------------

# (T, B): general, T = 1, B = 1, and B = None: unbatched input (T, I)
SHAPES = ((5, 3), (1, 4), (6, 1), (4, None))


def _torch_grid():
    """Every combination of layers x bidirectional x projection x hx, three times, the other options drawn
    as balanced shuffles so each value of each appears (asserted, as the grid is built at collection)."""
    combos = list(itertools.product((1, 2), (False, True), (False, True), (False, True))) * 3
    n = len(combos)
    pick = random.Random(20240611)

    def balanced(values):
        out = list(values) * (n // len(values) + 1)
        pick.shuffle(out)
        return out[:n]

    cases = []
    for (L, bidir, proj, hx), bias, bf, shape, H, I in zip(
            combos, balanced((True, False)), balanced((False, True)), balanced(SHAPES), balanced(SIZES),
            balanced(SIZES), strict=True):
        if proj and H == 1:  # torch needs proj_size < hidden_size
            H = 3
        cfg = Config(I, H, L, bias=bias, batch_first=bf, bidirectional=bidir,
                     proj_size=max(1, H // 2) if proj else 0)
        T, B = shape
        cases.append(pytest.param(cfg, T, B, hx, id=(
            f"L{L}{'-bi' if bidir else ''}{f'-P{cfg.proj_size}' if proj else ''}{'' if bias else '-nobias'}"
            f"{'-bf' if bf else ''}{'-hx' if hx else ''}-T{T}B{B}-I{I}H{H}")))
    cfgs = [c.values[0] for c in cases]
    assert {c.hidden_size for c in cfgs} == {c.input_size for c in cfgs} == set(SIZES)
    assert {c.values[2] for c in cases} == {B for _, B in SHAPES}
    return cases


@pytest.mark.parametrize(("cfg", "T", "B", "with_hx"), _torch_grid())
def test_matches_torch(cfg, T, B, with_hx):
    rng = np.random.default_rng(1)
    params, x = rand_params(cfg, rng), rand_x(cfg, rng, T, B)
    hx = rand_hx(cfg, rng, B) if with_hx else None
    outs, _ = compare_with_torch(cfg, params, x, hx, rng)
    (y, (hn, cn)), tape = reference.forward(cfg, params, x, hx)  # train=False: same numbers, no tape
    assert tape is None
    for a, b in zip((y, hn, cn), outs, strict=True):
        np.testing.assert_array_equal(a, b)


# --- b. lengths against torch's pack_padded_sequence(enforce_sorted=False) ----------------------------

LENGTH_CASES = [  # Config kwargs, T, lengths (any order, 1 and T included), hx given
    pytest.param({"input_size": 3, "hidden_size": 5}, 6, [6, 1, 3, 6], False, id="basic"),
    pytest.param({"input_size": 7, "hidden_size": 4, "bidirectional": True}, 5, [2, 5, 1], True, id="bi"),
    pytest.param({"input_size": 3, "hidden_size": 7, "num_layers": 2, "bidirectional": True, "proj_size": 3,
                  "batch_first": True}, 6, [4, 6, 1, 2, 5], True, id="L2-bi-proj-bf"),
    pytest.param({"input_size": 1, "hidden_size": 3, "num_layers": 2, "bias": False, "batch_first": True},
                 4, [1, 3, 4], True, id="L2-nobias-bf"),
    pytest.param({"input_size": 17, "hidden_size": 17, "bidirectional": True, "proj_size": 5}, 7, [5], False,
                 id="B1-bi-proj"),
    pytest.param({"input_size": 4, "hidden_size": 6, "num_layers": 2, "bidirectional": True}, 3, [3, 3, 3],
                 True, id="all-full"),
]


def padded(cfg, x, lengths, fill):
    """x with every step t >= lengths[b] replaced by fill(shape); also returns the [T, B] valid mask."""
    T = x.shape[1] if cfg.batch_first else x.shape[0]
    valid = np.arange(T)[:, None] < np.asarray(lengths)[None, :]
    if cfg.batch_first:
        valid = valid.T
    return np.where(valid[..., None], x, fill(x.shape)), valid


@pytest.mark.parametrize(("kw", "T", "lengths", "with_hx"), LENGTH_CASES)
def test_lengths_match_torch_packed(kw, T, lengths, with_hx):
    cfg = Config(**kw)
    rng = np.random.default_rng(2)
    B = len(lengths)
    params, x = rand_params(cfg, rng), rand_x(cfg, rng, T, B)
    hx = rand_hx(cfg, rng, B) if with_hx else None
    x_garbage, valid = padded(cfg, x, lengths, lambda s: rng.uniform(-1e3, 1e3, s))
    x_zero, _ = padded(cfg, x, lengths, np.zeros)
    (y, hn, cn), (dx, dh0, dc0, grads) = compare_with_torch(cfg, params, x_garbage, hx, rng, lengths)
    assert not y[~valid].any(), "y must be 0 at padded steps"
    assert not dx[~valid].any(), "padded x must get dx = 0"
    # Padding must not be read: zero padding gives bitwise the same outputs and gradients.
    outs_z, (dx_z, dh0_z, dc0_z, grads_z), _ = ref_run(cfg, params, x_zero, hx, np.random.default_rng(2),
                                                       lengths=lengths)
    ref_again = ref_run(cfg, params, x_garbage, hx, np.random.default_rng(2), lengths=lengths)
    for a, b in zip((*outs_z, dx_z, dh0_z, dc0_z), (*ref_again[0], *ref_again[1][:3]), strict=True):
        np.testing.assert_array_equal(a, b)
    for name in grads_z:
        np.testing.assert_array_equal(grads_z[name], ref_again[1][3][name], err_msg=name)


# --- c. peepholes against onnxruntime's LSTM operator ----------------------------------------------

ONNX_GATES = (0, 3, 1, 2)  # torch's blocks i, f, g, o -> ONNX's i, o, f, c


def onnx_gates(a):
    blocks = np.split(a, 4, axis=0)
    return np.concatenate([blocks[j] for j in ONNX_GATES], axis=0)


def ort_run(cfg: Config, params, x, hx, lengths):
    """onnxruntime's LSTM, one node per layer (x [T,B,I], no projection); returns y, h_n, c_n in torch's
    layout. ORT's LSTM computes in float32 only ("does not support double yet"). ONNX's P is in order
    i, o, f."""
    onnx, ort = require("onnx"), require("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    T, B, _ = x.shape
    D, L, H = cfg.num_directions, cfg.num_layers, cfg.hidden_size
    inits, nodes = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "flat_dirs")], []
    f32 = np.float32
    feeds = {"X0": x.astype(f32), "seq": np.asarray(lengths if lengths is not None else [T] * B, np.int32),
             "h0": hx[0].astype(f32), "c0": hx[1].astype(f32)}
    for k in range(L):
        lp = [cfg.layer_params(params, k, d) for d in range(D)]
        arrays = {
            f"W{k}": np.stack([onnx_gates(p["w_ih"]) for p in lp]),
            f"R{k}": np.stack([onnx_gates(p["w_hh"]) for p in lp]),
            f"P{k}": np.stack([np.concatenate([p["p_i"], p["p_o"], p["p_f"]]) for p in lp]),
        }
        if cfg.bias:
            arrays[f"B{k}"] = np.stack([np.concatenate([onnx_gates(p["b_ih"]), onnx_gates(p["b_hh"])])
                                        for p in lp])
        inits += [numpy_helper.from_array(a.astype(f32), n) for n, a in arrays.items()]
        # torch interleaves h_n per layer as [k*D + d]: layer k's initial state is a contiguous slice
        nodes += [helper.make_node("Slice", [s, f"lo{k}", f"hi{k}"], [f"{s}_{k}"]) for s in ("h0", "c0")]
        inits += [numpy_helper.from_array(np.array([k * D], np.int64), f"lo{k}"),
                  numpy_helper.from_array(np.array([(k + 1) * D], np.int64), f"hi{k}")]
        nodes.append(helper.make_node(
            "LSTM",
            [f"X{k}", f"W{k}", f"R{k}", f"B{k}" if cfg.bias else "", "seq", f"h0_{k}", f"c0_{k}", f"P{k}"],
            [f"Y{k}", f"Yh{k}", f"Yc{k}"], hidden_size=H, direction="bidirectional" if D == 2 else "forward"))
        # Y [T, D, B, H] -> [T, B, D*H]: the next layer's input and torch's y
        nodes += [helper.make_node("Transpose", [f"Y{k}"], [f"Yt{k}"], perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", [f"Yt{k}", "flat_dirs"], [f"X{k + 1}"])]
    nodes += [helper.make_node("Concat", [f"Y{s}{k}" for k in range(L)], [f"{s}_n"], axis=0)
              for s in ("h", "c")]

    def io(name, shape, elem=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, elem, shape)

    graph = helper.make_graph(
        nodes, "lstm",
        [io("X0", x.shape), io("seq", [B], TensorProto.INT32), io("h0", hx[0].shape), io("c0", hx[1].shape)],
        [io(f"X{L}", [T, B, D * H]), io("h_n", [L * D, B, H]), io("c_n", [L * D, B, H])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [a.astype(np.float64) for a in sess.run(None, feeds)]


PEEPHOLE_CASES = [  # Config kwargs, T, lengths, hx given
    pytest.param({"input_size": 3, "hidden_size": 5}, 6, None, True, id="basic"),
    pytest.param({"input_size": 7, "hidden_size": 1, "bias": False}, 4, None, False, id="H1-nobias"),
    pytest.param({"input_size": 1, "hidden_size": 17, "bidirectional": True}, 5, None, True, id="bi"),
    pytest.param({"input_size": 33, "hidden_size": 3, "num_layers": 2}, 3, None, True, id="L2"),
    pytest.param({"input_size": 4, "hidden_size": 6}, 6, [6, 2, 1, 4], True, id="lengths"),
    pytest.param({"input_size": 5, "hidden_size": 7, "bidirectional": True}, 5, [3, 5, 1], True,
                 id="lengths-bi"),
    pytest.param({"input_size": 3, "hidden_size": 4, "num_layers": 2, "bidirectional": True}, 5, [5, 2, 4],
                 True, id="lengths-L2-bi"),
]


@pytest.mark.parametrize(("kw", "T", "lengths", "with_hx"), PEEPHOLE_CASES)
def test_peephole_matches_onnxruntime(kw, T, lengths, with_hx):
    cfg = Config(**kw, peephole=True)
    rng = np.random.default_rng(3)
    B = 3 if lengths is None else len(lengths)
    # ORT runs in float32: give the float64 reference the same float32-representable inputs, so that the
    # difference is ORT's rounding only
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    params = {n: f32(a) for n, a in rand_params(cfg, rng).items()}
    x = f32(rand_x(cfg, rng, T, B))
    hx = tuple(map(f32, rand_hx(cfg, rng, B))) if with_hx else None
    y, (hn, cn) = reference.forward(cfg, params, x, hx, lengths=lengths)[0]
    if hx is None:
        hx = (np.zeros_like(hn), np.zeros_like(cn))
    o_y, o_hn, o_cn = ort_run(cfg, params, x, hx, lengths)
    for name, a, b in (("y", y, o_y), ("h_n", hn, o_hn), ("c_n", cn, o_cn)):
        assert a.shape == b.shape, name
        close(a, b, name, rtol=1e-5, atol=1e-5)
    # the peepholes must matter at this scale, or the comparison proves nothing about them
    no_peep = {n: (np.zeros_like(a) if n.startswith("peephole") else a) for n, a in params.items()}
    assert np.abs(reference.forward(cfg, no_peep, x, hx, lengths=lengths)[0][0] - y).max() > 1e-3


# --- d. finite differences --------------------------------------------------------------------------

FD_CASES = [  # Config kwargs, T, B (None: unbatched), lengths
    pytest.param({"input_size": 3, "hidden_size": 4, "proj_size": 2}, 4, 2, None, id="proj"),
    pytest.param({"input_size": 2, "hidden_size": 3, "bias": False}, 3, None, None, id="unbatched-nobias"),
    pytest.param({"input_size": 2, "hidden_size": 3, "num_layers": 2, "bidirectional": True, "proj_size": 2},
                 5, 3, [5, 2, 1], id="lengths-L2-bi-proj"),
    pytest.param({"input_size": 3, "hidden_size": 3, "num_layers": 3, "bidirectional": True, "dropout": 0.4,
                  "batch_first": True}, 4, 2, [4, 3], id="dropout-L3-bi-bf-lengths"),
]


@pytest.mark.parametrize(("kw", "T", "B", "lengths"), FD_CASES)
def test_backward_matches_finite_differences(kw, T, B, lengths):
    cfg = Config(**kw, peephole=True)
    rng = np.random.default_rng(4)
    params, x, hx = rand_params(cfg, rng), rand_x(cfg, rng, T, B), rand_hx(cfg, rng, B)
    train = cfg.dropout > 0
    masks = None
    if train:  # fixed masks make the loss a deterministic function of the inputs
        masks = cfg.dropout_masks(T, B, np.float64, rng)
        assert all((m == 0).any() for m in masks)
    kw_fw = {"lengths": lengths, "train": train, "dropout_masks": masks}

    (y, (hn, cn)), tape = reference.forward(cfg, params, x, hx, **{**kw_fw, "train": True})
    up = [rng.standard_normal(a.shape) for a in (y, hn, cn)]
    dx, (dh0, dc0), grads = reference.backward(cfg, params, tape, *up)
    assert {n: g.shape for n, g in grads.items()} == cfg.param_shapes()

    def loss(params, x, hx):
        y, (hn, cn) = reference.forward(cfg, params, x, hx, **kw_fw)[0]
        return sum(float((a * u).sum()) for a, u in zip((y, hn, cn), up, strict=True))

    # every tensor the loss depends on, with a function that rebuilds the arguments around a new value
    targets = {name: (grads[name], lambda v, n=name: ({**params, n: v}, x, hx)) for name in params}
    targets["x"] = (dx, lambda v: (params, v, hx))
    targets["h0"] = (dh0, lambda v: (params, x, (v, hx[1])))
    targets["c0"] = (dc0, lambda v: (params, x, (hx[0], v)))
    values = {**params, "x": x, "h0": hx[0], "c0": hx[1]}
    eps = 1e-6
    for name, (grad, rebuild) in targets.items():
        value = values[name]
        for flat in rng.choice(value.size, size=min(4, value.size), replace=False):
            idx = np.unravel_index(flat, value.shape)
            plus, minus = value.copy(), value.copy()
            plus[idx] += eps
            minus[idx] -= eps
            fd = (loss(*rebuild(plus)) - loss(*rebuild(minus))) / (2 * eps)
            close(grad[idx], fd, f"d loss / d {name}{list(idx)}", rtol=1e-6, atol=1e-8)


# --- e. dropout ---------------------------------------------------------------------------------------

def test_dropout_masks_apply_between_layers():
    """train=True applies mask k to layer k's output (all layers but the last), as torch does;
    checked by running the layers one at a time."""
    cfg = Config(3, 4, num_layers=3, dropout=0.5, bidirectional=True, proj_size=2)
    rng = np.random.default_rng(5)
    T, B, D = 5, 2, cfg.num_directions
    params, x, (h0, c0) = rand_params(cfg, rng), rand_x(cfg, rng, T, B), rand_hx(cfg, rng, B)
    masks = cfg.dropout_masks(T, B, np.float64, rng)
    (y, (hn, cn)), _ = reference.forward(cfg, params, x, (h0, c0), train=True, dropout_masks=masks)

    inp, states = x, []
    for k in range(cfg.num_layers):
        one = dataclasses.replace(cfg, input_size=cfg.layer_input_size(k), num_layers=1, dropout=0.0)
        p = {one.param_name(s, 0, d): a for d in range(D) for s, a in cfg.layer_params(params, k, d).items()
             if a is not None}
        (inp, state), _ = reference.forward(one, p, inp, (h0[k * D:(k + 1) * D], c0[k * D:(k + 1) * D]))
        states.append(state)
        if k < cfg.num_layers - 1:
            inp = inp * masks[k]
    close(y, inp, "y", rtol=1e-14, atol=1e-14)
    close(hn, np.concatenate([s[0] for s in states]), "h_n", rtol=1e-14, atol=1e-14)
    close(cn, np.concatenate([s[1] for s in states]), "c_n", rtol=1e-14, atol=1e-14)

    # train=False applies no dropout, whatever masks are passed
    plain = reference.forward(dataclasses.replace(cfg, dropout=0.0), params, x, (h0, c0))[0]
    evald = reference.forward(cfg, params, x, (h0, c0), train=False, dropout_masks=masks)[0]
    for a, b in zip((plain[0], *plain[1]), (evald[0], *evald[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.abs(plain[0] - y).max() > 1e-3  # and the masks did change the training output


def test_dropout_masks_from_rng():
    cfg = Config(2, 5, num_layers=3, dropout=0.3, bidirectional=True)
    masks = cfg.dropout_masks(400, 8, np.float64, np.random.default_rng(6))
    assert len(masks) == cfg.num_layers - 1
    for m in masks:
        assert m.shape == (400, 8, 10) and m.dtype == np.float64
        assert set(np.unique(m)) == {0.0, 1 / 0.7}
        assert abs((m == 0).mean() - 0.3) < 0.02
    # without dropout_masks the masks come from rng, as Config.dropout_masks draws them
    rng = np.random.default_rng(7)
    params, x = rand_params(cfg, rng), rand_x(cfg, rng, 4, 3)
    drawn = reference.forward(cfg, params, x, train=True, rng=np.random.default_rng(8))[0]
    given = reference.forward(cfg, params, x, train=True, dropout_masks=cfg.dropout_masks(
        4, 3, np.float64, np.random.default_rng(8)))[0]
    np.testing.assert_array_equal(drawn[0], given[0])
