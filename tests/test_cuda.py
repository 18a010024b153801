"""The CUDA library: the fused cell kernel against the reference's cell on a GPU; without one, a clear
RuntimeError instead of a crash. The device is queried inside tests only, never at import."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest

from fastlstm import _core, reference

pytestmark = pytest.mark.skipif(not _core.cuda_built, reason="fastlstm was built without CUDA")


def _has_gpu() -> bool:
    return len(_core.cuda_devices()) > 0


# The device of a FASTLSTM_CUDA=EMU build: the same engine, bindings and package on the CPU execution model
# (tools/ci_cuda.sh runs this file on it). Its launches run on fibers, so the large cases are a GPU's.
MODEL = "the CPU execution model"


def _on_model() -> bool:
    return _has_gpu() and _core.cuda_devices()[0]["name"] == MODEL


def _skip_large_on_model(T: int, B: int, H: int) -> None:
    if _on_model() and T * B * H > 20000:
        pytest.skip("too large for the CPU execution model (its launches run on fibers); a GPU runs it")


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("B,H", [(1, 1), (3, 7), (16, 129), (5, 1000)])
def test_cell_matches_reference(B, H, peephole):
    if not _has_gpu():
        pytest.skip("no CUDA device visible")
    rng = np.random.default_rng(B * 1000 + H)
    z = (rng.standard_normal((B, 4 * H)) * 3).astype(np.float32)
    c_prev = rng.standard_normal((B, H)).astype(np.float32)
    peeps = [rng.standard_normal(H).astype(np.float32) for _ in range(3)] if peephole else [None] * 3
    h, c = _core.cuda_cell_forward(z, c_prev, *peeps)
    h64, c64, _ = reference.cell(z.astype(np.float64), c_prev.astype(np.float64),
                                 *[None if p is None else p.astype(np.float64) for p in peeps])
    np.testing.assert_allclose(c, c64, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(h, h64, rtol=2e-6, atol=2e-6)


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="z"):
        _core.cuda_cell_forward(np.zeros((2, 7), np.float32), np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="c_prev"):
        _core.cuda_cell_forward(np.zeros((2, 8), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="z"):
        _core.cuda_cell_forward(np.zeros((2, 8)), np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="peephole"):
        _core.cuda_cell_forward(np.zeros((2, 8), np.float32), np.zeros((2, 2), np.float32), np.zeros(2, np.float32))


def test_without_a_gpu_the_call_is_a_runtime_error():
    if _has_gpu():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(RuntimeError, match="CUDA"):
        _core.cuda_cell_forward(np.zeros((2, 8), np.float32), np.zeros((2, 2), np.float32))


# The sequence engine on a real GPU: every option, against the float64 reference; tolerances per precision
# (fp32 as on the CPU; tf32 ~1e-3; bf16 / fp16 ~1e-2 of the outputs' scale). Realistic and tail sizes.
SEQ_CASES = [
    (dict(), 7, 3, 5, 13),
    (dict(num_layers=2, bidirectional=True), 6, 4, 8, 33),
    (dict(peephole=True, proj_size=5, bidirectional=True, num_layers=2, batch_first=True), 5, 5, 6, 11),
    (dict(bias=False), 1, 1, 3, 10),
    (dict(), 100, 16, 256, 512),
    (dict(num_layers=2, bidirectional=True, proj_size=128), 50, 64, 128, 768),
]
SEQ_TOL = {None: 2e-5, "tf32": 3e-3, "bf16": 3e-2, "fp16": 5e-3}


@functools.cache
def _seq_case(index: int):
    """A case's inputs and its float64 reference (the same for every precision: computed once)."""
    opts, T, B, I, H = SEQ_CASES[index]
    import fastlstm

    rng = np.random.default_rng(T * 7919 + H)
    params = fastlstm.LSTM(I, H, seed=int(rng.integers(1 << 30)), **opts).state_dict()
    c = fastlstm.LSTM(I, H, **opts).config
    x = rng.standard_normal((B, T, I) if c.batch_first else (T, B, I)).astype(np.float32)
    DL = c.num_layers * c.num_directions
    state = (rng.standard_normal((DL, B, c.out_size)).astype(np.float32),
             rng.standard_normal((DL, B, c.hidden_size)).astype(np.float32))
    lens = rng.integers(1, T + 1, size=B)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    runs = []
    for hx, lengths in ((None, None), (state, lens)):
        (y64, (h64, c64)), _ = reference.forward(c, p64, x.astype(np.float64),
                                                  None if hx is None else tuple(a.astype(np.float64) for a in hx),
                                                  lengths=lengths)
        runs.append((hx, lengths, y64, h64, c64))
    return params, x, runs


@pytest.mark.parametrize("precision", list(SEQ_TOL))
@pytest.mark.parametrize("index", range(len(SEQ_CASES)))
def test_sequence_engine_matches_reference(index, precision):
    if not _has_gpu():
        pytest.skip("no CUDA device visible")
    import fastlstm

    opts, T, B, I, H = SEQ_CASES[index]
    _skip_large_on_model(T, B, H)
    params, x, runs = _seq_case(index)
    m = fastlstm.LSTM(I, H, device="cuda", precision=precision, **opts)
    m.load_state_dict(params)
    c = m.config
    for hx, lengths, y64, h64, c64 in runs:
        y, (h, cn) = m(x, hx, lengths=lengths)
        tol = SEQ_TOL[precision] * max(1.0, float(np.abs(c64).max()))
        for name, got, want in (("y", y, y64), ("h_n", h, h64), ("c_n", cn, c64)):
            assert got.dtype == np.float32, name
            np.testing.assert_allclose(got, want, rtol=SEQ_TOL[precision], atol=tol, err_msg=name)
        if lengths is not None:  # padding is exactly zero
            for b, n in enumerate(lengths):
                assert not (y[b, n:] if c.batch_first else y[n:, b]).any()


def test_sequence_engine_step_matches_the_sequence():
    if not _has_gpu():
        pytest.skip("no CUDA device visible")
    import fastlstm

    m = fastlstm.LSTM(6, 20, num_layers=2, device="cuda", seed=3)
    x = np.random.default_rng(1).standard_normal((5, 2, 6)).astype(np.float32)
    y, _ = m(x)
    hx = None
    for t in range(5):
        yt, hx = m.step(x[t], hx)
        np.testing.assert_allclose(yt, y[t], rtol=1e-5, atol=1e-6)


# Training on a real GPU against the CPU engine in float64 (itself held to the reference and to finite
# differences by the CPU tests): every gradient, with the same dropout masks; tolerances per precision, of the
# gradients' scale. Then: bitwise the same gradients from a second backward and a second training call.
TRAIN_CASES = [
    (dict(), 7, 3, 5, 13),
    (dict(num_layers=2, bidirectional=True, dropout=0.3), 6, 4, 8, 33),
    (dict(peephole=True, proj_size=5, bidirectional=True, num_layers=2, batch_first=True, dropout=0.2), 5, 5, 6, 11),
    (dict(bias=False), 1, 1, 3, 10),
    (dict(num_layers=2), 50, 16, 128, 256),
]
TRAIN_TOL = {None: 1e-4, "tf32": 5e-3, "bf16": 5e-2, "fp16": 5e-3}


@pytest.mark.parametrize("precision", list(TRAIN_TOL))
@pytest.mark.parametrize("index", range(len(TRAIN_CASES)))
def test_sequence_engine_trains_like_the_cpu_in_float64(index, precision):
    if not _has_gpu():
        pytest.skip("no CUDA device visible")
    import fastlstm
    from fastlstm import functional as F

    opts, T, B, I, H = TRAIN_CASES[index]
    _skip_large_on_model(T, B, H)
    rng = np.random.default_rng(index * 31 + 7)
    module = fastlstm.LSTM(I, H, seed=index, **opts)
    c, params = module.config, module.state_dict()
    x = rng.standard_normal((B, T, I) if c.batch_first else (T, B, I)).astype(np.float32)
    DL = c.num_layers * c.num_directions
    hx = (rng.standard_normal((DL, B, c.out_size)).astype(np.float32),
          rng.standard_normal((DL, B, c.hidden_size)).astype(np.float32))
    lengths = rng.integers(1, T + 1, size=B)
    masks = c.dropout_masks(T, B, np.float32, rng)
    y_shape = (B, T, c.num_directions * c.out_size) if c.batch_first else (T, B, c.num_directions * c.out_size)
    dy = rng.standard_normal(y_shape).astype(np.float32)
    dh_n, dc_n = (rng.standard_normal(a.shape).astype(np.float32) for a in hx)

    def run(device, dtype, prec):
        w = F.pack(c, params, device=device, dtype=dtype, precision=prec, training=True)

        def cast(a):
            return None if a is None else np.asarray(a, dtype)
        y, _, tape = F.forward(w, cast(x), tuple(cast(a) for a in hx), lengths=lengths, train=True,
                               dropout_masks=None if masks is None else [cast(m) for m in masks])
        dx, (dh0, dc0), grads = F.backward(tape, cast(dy), cast(dh_n), cast(dc_n))
        return {"y": y, "dx": dx, "dh0": dh0, "dc0": dc0, **grads}, tape

    want, _ = run("cpu", "float64", None)
    got, tape = run("cuda", "float32", precision)
    for name, ref in want.items():
        tol = TRAIN_TOL[precision] * max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(got[name], ref, rtol=TRAIN_TOL[precision], atol=tol, err_msg=name)
    again = F.backward(tape, dy, dh_n, dc_n)
    assert np.array_equal(again[0], got["dx"]) and all(np.array_equal(again[2][k], got[k]) for k in again[2])
    repeat, _ = run("cuda", "float32", precision)
    assert all(np.array_equal(repeat[k], got[k]) for k in got), "a second training call gave other bits"


def test_sequence_engine_refuses_foreign_pointers():
    if not _has_gpu() or _on_model():
        pytest.skip("no GPU visible (on the CPU execution model every address is device memory)")
    import fastlstm

    m = fastlstm.LSTM(3, 5, device="cuda", seed=1)
    eng = _core.cuda_engine(0, "float32")
    w = eng.pack(_core.Shape(3, 5, 1, 0, False, True, False),
                 [{k: v for k, v in m.config.layer_params(m.state_dict(), 0, 0).items()}])
    with pytest.raises(ValueError, match="x: not memory of cuda:0"):  # host pointers into the device engine
        eng.forward(w, np.zeros((2, 1, 3), np.float32), None, None, None, False)


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not _has_gpu() or not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to fastlstm and torch")
    return torch


@pytest.fixture
def dev():
    """This machine's device arrays: torch CUDA tensors on a GPU, the execution model's on a FASTLSTM_CUDA=EMU
    build (tests/model_arrays.py). put(numpy) -> device array; get(device array) -> numpy; swap01: a view with
    the first two axes swapped; owns(r): r is a float32 device array."""
    if _on_model():
        import model_arrays

        return SimpleNamespace(put=lambda a: model_arrays.ModelArray(np.ascontiguousarray(a)), get=lambda r: r.a,
                               swap01=lambda r: model_arrays.ModelArray(r.a.swapaxes(0, 1)),
                               owns=lambda r: isinstance(r, model_arrays.ModelArray))
    torch = _torch_cuda()
    return SimpleNamespace(put=lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda(),
                           get=lambda r: r.cpu().numpy(), swap01=lambda r: r.transpose(0, 1),
                           owns=lambda r: isinstance(r, torch.Tensor) and r.is_cuda and r.dtype == torch.float32)


@pytest.mark.parametrize("batch_first", [False, True])
def test_dlpack_inference_gives_the_numpy_paths_bits(dev, batch_first):
    import fastlstm

    m = fastlstm.LSTM(6, 20, num_layers=2, bidirectional=True, proj_size=7, batch_first=batch_first,
                      device="cuda", seed=4)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 6) if batch_first else (5, 3, 6)).astype(np.float32)
    h0 = rng.standard_normal((4, 3, 7)).astype(np.float32)
    c0 = rng.standard_normal((4, 3, 20)).astype(np.float32)
    lens = np.array([5, 2, 4])
    y, (h, c) = m(x, (h0, c0), lengths=lens)  # the numpy path: the reference of this test
    got = m(dev.put(x), (dev.put(h0), dev.put(c0)), lengths=lens)
    for r, want in zip((got[0], *got[1]), (y, h, c), strict=True):
        assert dev.owns(r)
        np.testing.assert_array_equal(dev.get(r), want)
    strided = dev.swap01(dev.put(x.swapaxes(0, 1)))  # x's values in a transposed view: the same path and bits
    np.testing.assert_array_equal(dev.get(m(strided)[0]), m(x)[0])
    yu, (hu, _) = m(dev.put(x[:, 0] if not batch_first else x[0]))
    assert dev.owns(yu) and len(yu.shape) == 2 and len(hu.shape) == 2
    with pytest.raises(ValueError, match="hx\\[0\\]"):  # a host array beside device arrays
        m(dev.put(x), (h0, dev.put(c0)))


def test_dlpack_errors_name_the_argument():
    torch = _torch_cuda()
    import fastlstm

    m = fastlstm.LSTM(3, 4, device="cuda", seed=1)
    x = torch.zeros(2, 1, 3, device="cuda")
    with pytest.raises(TypeError, match="x: expected float32"):
        m(x.double())
    with pytest.raises(ValueError, match="hx\\[0\\]"):
        m(x, (np.zeros((1, 1, 4), np.float32), torch.zeros(1, 1, 4, device="cuda")))
    with pytest.raises(ValueError, match="hx\\[1\\]"):
        m(x, (torch.zeros(1, 1, 4, device="cuda"), torch.zeros(1, 1, 8, device="cuda")[:, :, ::2]))  # strided


def test_torch_drop_in_runs_inference_on_cuda_tensors(monkeypatch):
    torch = _torch_cuda()
    from fastlstm.torch import LSTM

    torch.manual_seed(0)
    ref = torch.nn.LSTM(6, 16, num_layers=2, bidirectional=True, batch_first=True)
    m = LSTM(6, 16, num_layers=2, bidirectional=True, batch_first=True)
    m.load_state_dict(ref.state_dict())
    ref, m = ref.cuda(), m.cuda()
    x = torch.randn(3, 7, 6, device="cuda")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # cuDNN's fp32 in fp32, not on TF32 cores
    with torch.no_grad():
        y_ref, (h_ref, c_ref) = ref(x)
        y, (h, c) = m(x)
        assert y.device == x.device
        for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        m.weight_hh_l0.data.mul_(0.5)  # a write through .data repacks
        ref.weight_hh_l0.data.mul_(0.5)
        torch.testing.assert_close(m(x)[0], ref(x)[0], rtol=1e-4, atol=1e-5)
        compiled = torch.compile(m, fullgraph=True)
        torch.testing.assert_close(compiled(x)[0], ref(x)[0], rtol=1e-4, atol=1e-5)


def _device_training_case(unbatched):
    import fastlstm

    opts = dict(num_layers=2, bidirectional=True, proj_size=5, peephole=True, batch_first=True, dropout=0.25)
    module = fastlstm.LSTM(6, 12, seed=5, **opts)
    c, rng = module.config, np.random.default_rng(8)
    T, B = 9, 1 if unbatched else 4
    lead = (T,) if unbatched else (B, T)
    DL = c.num_layers * c.num_directions
    state_lead = (DL,) if unbatched else (DL, B)
    arrays = {"x": rng.standard_normal(lead + (6,)), "dy": rng.standard_normal(lead + (2 * c.out_size,)),
              "h0": rng.standard_normal(state_lead + (c.out_size,)), "c0": rng.standard_normal(state_lead + (12,)),
              "dh_n": rng.standard_normal(state_lead + (c.out_size,)), "dc_n": rng.standard_normal(state_lead + (12,))}
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    masks = c.dropout_masks(T, B, np.float32, rng)
    lengths = None if unbatched else np.array([9, 3, 7, 1])
    return module, arrays, masks, lengths, T, B


@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("masks_on_device", [False, True])
def test_training_on_device_arrays_gives_the_numpy_paths_bits(dev, unbatched, masks_on_device):
    """The same kernels on the same numbers: device arrays in (the state in a caller's reserve array, found
    again by restore_tape; masks as device or numpy arrays) give bitwise the numpy path's results, as device
    arrays."""
    from fastlstm import functional as F

    module, a, masks, lengths, T, B = _device_training_case(unbatched)
    w = F.pack(module.config, module.state_dict(), device="cuda", training=True)
    y, (h_n, c_n), tape = F.forward(w, a["x"], (a["h0"], a["c0"]), lengths=lengths, train=True, dropout_masks=masks)
    dx, (dh0, dc0), grads = F.backward(tape, a["dy"], a["dh_n"], a["dc_n"])
    want = {"y": y, "h_n": h_n, "c_n": c_n, "dx": dx, "dh0": dh0, "dc0": dc0, **grads}

    d = {k: dev.put(v) for k, v in a.items()}
    dmasks = [dev.put(m) for m in masks] if masks_on_device else masks
    reserve = dev.put(np.zeros(F.sizes(w, T, B, train=True)["saved"], np.uint8))
    yd, (hd, cd), _ = F.forward(w, d["x"], (d["h0"], d["c0"]), lengths=lengths, train=True, dropout_masks=dmasks,
                                saved=reserve)
    tape_d = F.restore_tape(w, reserve, T, B, lengths=lengths, dropout_masks=dmasks, unbatched=unbatched)
    dxd, (dh0d, dc0d), grads_d = F.backward(tape_d, d["dy"], d["dh_n"], d["dc_n"])
    got = {"y": yd, "h_n": hd, "c_n": cd, "dx": dxd, "dh0": dh0d, "dc0": dc0d, **grads_d}
    assert got.keys() == want.keys()
    for name, value in got.items():
        assert dev.owns(value), name
        np.testing.assert_array_equal(dev.get(value), want[name], err_msg=name)
    with pytest.raises(TypeError, match="saved"):  # the state of a device call lives in device memory
        F.restore_tape(w, np.zeros(16, np.uint8), T, B)
    with pytest.raises(ValueError, match="saved"):
        F.forward(w, a["x"], train=True, saved=reserve)  # numpy x: the engine keeps the state itself
    with pytest.raises(ValueError, match="saved"):
        F.forward(w, d["x"], train=True, saved=reserve[:64])  # too small: refused before anything runs


def test_torch_drop_in_trains_on_cuda_tensors():
    """Gradients of every parameter, of x and of hx on CUDA tensors against the drop-in on the CPU in float64,
    with lengths (a PackedSequence) and a projection; bitwise repeatable; torch.compile(fullgraph=True) traces
    it without a graph break and gives the same bits."""
    torch = _torch_cuda()
    from torch.nn.utils.rnn import pack_padded_sequence

    from fastlstm.torch import LSTM

    torch.manual_seed(0)
    m = LSTM(6, 16, num_layers=2, bidirectional=True, proj_size=5).cuda()
    ref = LSTM(6, 16, num_layers=2, bidirectional=True, proj_size=5, dtype=torch.float64)
    ref.load_state_dict({k: v.double().cpu() for k, v in m.state_dict().items()})
    x = torch.randn(8, 3, 6, device="cuda")
    hx = (torch.randn(4, 3, 5, device="cuda"), torch.randn(4, 3, 16, device="cuda"))
    lengths = torch.tensor([8, 5, 2])

    def grads(module, to, packed=True):
        module.zero_grad()
        xs, hs = to(x).requires_grad_(), tuple(to(h).requires_grad_() for h in hx)
        out, (h_n, c_n) = module(pack_padded_sequence(xs, lengths) if packed else xs, hs)
        loss = ((out.data if packed else out) ** 2).sum() + (h_n * 1.5).sum() + c_n.sum()
        loss.backward()
        return [xs.grad, *(h.grad for h in hs), *(p.grad for p in module.parameters())]

    want = grads(ref, lambda t: t.detach().cpu().double())
    got = grads(m, lambda t: t.detach().clone())
    for g, r in zip(got, want, strict=True):
        assert g.is_cuda and g.dtype == torch.float32
        torch.testing.assert_close(g.cpu().double(), r, rtol=1e-4, atol=1e-4)
    again = grads(m, lambda t: t.detach().clone())
    assert all(torch.equal(g, a) for g, a in zip(got, again, strict=True)), "a second step gave other bits"
    eager = grads(m, lambda t: t.detach().clone(), packed=False)
    # AOTAutograd's trace (the operators' fake implementations, the reserve's size on CUDA) without Inductor's
    # code generation, which would take most of the one-shot GPU check's test stage.
    compiled = grads(torch.compile(m, fullgraph=True, backend="aot_eager"), lambda t: t.detach().clone(), packed=False)
    assert all(torch.equal(g, a) for g, a in zip(compiled, eager, strict=True)), "torch.compile changed the bits"


def test_torch_drop_in_dropout_on_cuda_matches_the_cpu_with_its_masks():
    """The CUDA kernel of fastlstm::lstm draws its masks on the device and returns them; the CPU engine in
    float64 with those masks gives the same outputs and gradients (to fp32 rounding)."""
    torch = _torch_cuda()
    from fastlstm import _torch_ops
    from fastlstm import functional as F
    from fastlstm.torch import LSTM

    torch.manual_seed(1)
    m = LSTM(5, 8, num_layers=3, dropout=0.4).cuda()
    x = torch.randn(6, 2, 5, device="cuda")
    h0, c0 = torch.zeros(3, 2, 8, device="cuda"), torch.zeros(3, 2, 8, device="cuda")
    params = list(m.parameters())
    seed = torch.tensor([1234])
    y, h_n, c_n, reserve, masks = _torch_ops.lstm(x, h0, c0, params, None, m._op_config(), 0.4, seed, True, True)
    assert masks.shape == (2, 6, 2, 8) and masks.is_cuda
    kept = masks.cpu().numpy()
    assert set(np.unique(kept)) <= {0.0, np.float32(1 / 0.6)} and 0 < (kept == 0).mean() < 1
    again = _torch_ops.lstm(x, h0, c0, params, None, m._op_config(), 0.4, seed, True, True)[4]
    assert torch.equal(again, masks), "the same seed draws the same masks"
    dy = torch.randn_like(y)
    dx, dh0, dc0, *pgrads = _torch_ops.lstm_backward(dy, torch.zeros_like(h_n), torch.zeros_like(c_n), reserve,
                                                     masks, params, None, m._op_config(), 0.4, list(x.shape))
    state = {k: v.detach().cpu().double().numpy() for k, v in m.state_dict().items()}
    w = F.pack(m.config, state, dtype="float64", training=True)
    y64, _, tape = F.forward(w, x.cpu().double().numpy(), train=True, dropout_masks=list(kept.astype(np.float64)))
    dx64, _, g64 = F.backward(tape, dy.cpu().double().numpy())
    np.testing.assert_allclose(y.cpu().numpy(), y64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx.cpu().numpy(), dx64, rtol=1e-4, atol=1e-4)
    for got, want in zip(pgrads, g64.values(), strict=True):
        np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-4, atol=1e-4)
