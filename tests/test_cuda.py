"""The CUDA library: the fused cell kernel against the reference's cell on a GPU; without one, a clear
RuntimeError instead of a crash. The device is queried inside tests only, never at import."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from fastlstm import _core, reference

pytestmark = pytest.mark.skipif(not _core.cuda_built, reason="fastlstm was built without CUDA")


def _has_gpu() -> bool:
    return len(_core.cuda_devices()) > 0


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


def test_sequence_engine_refuses_foreign_pointers_and_device_array_training():
    if not _has_gpu():
        pytest.skip("no CUDA device visible")
    import fastlstm

    m = fastlstm.LSTM(3, 5, device="cuda", seed=1)
    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match="numpy arrays"):
        m(torch.zeros((2, 1, 3), device="cuda"), train=True)
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


@pytest.mark.parametrize("batch_first", [False, True])
def test_dlpack_arrays_stay_on_the_device(batch_first):
    torch = _torch_cuda()
    import fastlstm

    m = fastlstm.LSTM(6, 20, num_layers=2, bidirectional=True, proj_size=7, batch_first=batch_first,
                      device="cuda", seed=4)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 6) if batch_first else (5, 3, 6)).astype(np.float32)
    h0 = rng.standard_normal((4, 3, 7)).astype(np.float32)
    c0 = rng.standard_normal((4, 3, 20)).astype(np.float32)
    lens = np.array([5, 2, 4])
    y, (h, c) = m(x, (h0, c0), lengths=lens)  # the numpy path: the reference of this test
    xt = torch.from_numpy(x).cuda()
    yt, (ht, ct) = m(xt, (torch.from_numpy(h0).cuda(), torch.from_numpy(c0).cuda()), lengths=lens)
    for got, want in ((yt, y), (ht, h), (ct, c)):
        assert isinstance(got, torch.Tensor) and got.device == xt.device and got.dtype == torch.float32
        np.testing.assert_array_equal(got.cpu().numpy(), want)
    # A strided x (a transposed view) and unbatched input take the same path.
    yv, _ = m(xt.transpose(0, 1).contiguous().transpose(0, 1))
    np.testing.assert_array_equal(yv.cpu().numpy(), m(x)[0])
    yu, (hu, _) = m(xt[:, 0] if not batch_first else xt[0])
    assert yu.dim() == 2 and hu.dim() == 2


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


def test_torch_drop_in_runs_inference_on_cuda_tensors():
    torch = _torch_cuda()
    from fastlstm.torch import LSTM

    torch.manual_seed(0)
    ref = torch.nn.LSTM(6, 16, num_layers=2, bidirectional=True, batch_first=True)
    m = LSTM(6, 16, num_layers=2, bidirectional=True, batch_first=True)
    m.load_state_dict(ref.state_dict())
    ref, m = ref.cuda(), m.cuda()
    x = torch.randn(3, 7, 6, device="cuda")
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
    with pytest.raises(RuntimeError, match="training on CUDA"):
        m(x)  # grad enabled and parameters that require it: a training call
