"""fastlstm.torch.LSTM against torch.nn.LSTM: outputs and every gradient for every option nn.LSTM has
(PackedSequence included), gradcheck, an optimizer loop, state_dict and torch.save round trips, DDP."""

from __future__ import annotations

import gc
import io
import os
import socket

import pytest

from oracles import require

torch = require("torch")
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

from fastlstm.torch import LSTM  # noqa: E402

OPTIONS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(bias=False, batch_first=True),
    dict(proj_size=3, num_layers=2),
    dict(num_layers=3, bidirectional=True, proj_size=2, batch_first=True),
]


def _pair(opts, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    ref = torch.nn.LSTM(5, 7, dtype=dtype, **opts)
    torch.manual_seed(seed)
    fast = LSTM(5, 7, dtype=dtype, **opts)
    return ref, fast


def _run(model, x, hx, packed_lengths=None):
    inp = x
    if packed_lengths is not None:
        inp = pack_padded_sequence(x, packed_lengths, batch_first=model.batch_first, enforce_sorted=False)
    y, (h, c) = model(inp, hx)
    if packed_lengths is not None:
        assert isinstance(y, torch.nn.utils.rnn.PackedSequence)
        y = y.data
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    loss = (y * weights).sum() + (h * 0.3).sum() + (c * 0.7).sum()
    loss.backward()
    return y, h, c


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("opts", OPTIONS)
def test_same_numbers_and_gradients_as_nn_lstm(opts, packed):
    ref, fast = _pair(opts)
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), fast.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)  # same names, order and seeded init
    gen = torch.Generator().manual_seed(1)
    B, T = 4, 6
    shape = (B, T, 5) if fast.batch_first else (T, B, 5)
    D = 2 if fast.bidirectional else 1
    hout = fast.proj_size or 7
    x1 = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(D * fast.num_layers, B, hout, generator=gen, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(D * fast.num_layers, B, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 2, 5, 1]) if packed else None
    x2, h2, c2 = (t.detach().clone().requires_grad_() for t in (x1, h0, c0))
    out_ref = _run(ref, x1, (h0, c0), lengths)
    out_fast = _run(fast, x2, (h2, c2), lengths)
    for a, b in zip(out_ref, out_fast, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    for a, b in ((x1, x2), (h0, h2), (c0, c2)):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12)
    for (name, p1), (_, p2) in zip(ref.named_parameters(), fast.named_parameters(), strict=True):
        torch.testing.assert_close(p2.grad, p1.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_float32_unbatched_and_no_grad():
    ref, fast = _pair(dict(num_layers=2), dtype=torch.float32)
    x = torch.randn(6, 5)
    with torch.no_grad():
        torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=1e-5, atol=1e-5)
    fast.eval()
    y, (h, c) = fast(x)
    assert y.shape == (6, 7) and h.shape == (2, 7)


def _grads_of(model, x, hx, unbatched=False):
    """Outputs, and the gradients of a fixed weighting of them, for every input and parameter."""
    y, (h, c) = model(x, hx)
    w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    ((y * w).sum() + 0.3 * h.sum() + 0.7 * c.sum()).backward()
    leaves = [x] + ([] if hx is None else list(hx))
    return [y, h, c] + [t.grad for t in leaves] + [p.grad for p in model.parameters()]


@pytest.mark.parametrize("case", ["eval_dropout", "no_hx", "sorted_packing", "unbatched", "float32"])
def test_more_cases_match_nn_lstm(case):
    """The rest of nn.LSTM's surface: dropout layers in eval mode, hx=None with gradients, enforce_sorted=True
    packing, unbatched input with hx and gradients, float32 gradients."""
    opts = {"eval_dropout": dict(num_layers=3, dropout=0.4), "no_hx": dict(num_layers=2, bidirectional=True,
            proj_size=3), "sorted_packing": dict(num_layers=2, bidirectional=True), "unbatched": dict(num_layers=2,
            proj_size=2), "float32": dict(num_layers=2, bidirectional=True)}[case]
    dtype = torch.float32 if case == "float32" else torch.float64
    ref, fast = _pair(opts, dtype=dtype)
    if case == "eval_dropout":
        ref.eval()
        fast.eval()
    gen = torch.Generator().manual_seed(2)
    D, L, hout = 2 if fast.bidirectional else 1, fast.num_layers, fast.proj_size or 7
    T, B = 5, 3
    x = torch.randn((T, 5) if case == "unbatched" else (T, B, 5), generator=gen, dtype=dtype)
    hx = None
    if case in ("eval_dropout", "unbatched", "float32"):
        lead = (D * L,) if case == "unbatched" else (D * L, B)
        hx = (torch.randn(lead + (hout,), generator=gen, dtype=dtype),
              torch.randn(lead + (7,), generator=gen, dtype=dtype))
    outs = []
    for model in (ref, fast):
        xi = x.clone().requires_grad_()
        hxi = None if hx is None else tuple(t.clone().requires_grad_() for t in hx)
        if case == "sorted_packing":
            inp = pack_padded_sequence(xi, torch.tensor([5, 4, 2]), enforce_sorted=True)
            y, (h, c) = model(inp, hxi)
            w = torch.linspace(-1, 1, y.data.numel(), dtype=dtype).reshape(y.data.shape)
            ((y.data * w).sum() + 0.3 * h.sum() + 0.7 * c.sum()).backward()
            outs.append([y.data, h, c, xi.grad] + [p.grad for p in model.parameters()])
        else:
            outs.append(_grads_of(model, xi, hxi))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    assert len(outs[0]) == len(outs[1])
    for i, (a, b) in enumerate(zip(*outs, strict=True)):
        torch.testing.assert_close(b, a, **tol, msg=f"{case}: output {i}")


def test_flatten_parameters_is_accepted():
    """Code written for nn.LSTM on cuDNN calls flatten_parameters(); here it changes nothing."""
    ref, fast = _pair(dict(num_layers=2))
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    before = fast(x)[0]
    assert fast.flatten_parameters() is None
    torch.testing.assert_close(fast(x)[0], before, rtol=0, atol=0)


def test_gradcheck():
    """torch.autograd.gradcheck in float64 over the inputs, the initial state and every parameter (peepholes
    and projection included), through torch.func.functional_call."""
    torch.manual_seed(0)
    m = LSTM(3, 4, 2, bidirectional=True, proj_size=2, dtype=torch.float64, peephole=True)
    names = [n for n, _ in m.named_parameters()]
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 2, 4, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, h0, c0, *ps):
        y, (h, c) = torch.func.functional_call(m, dict(zip(names, ps, strict=True)), (x, (h0, c0)))
        return y, h, c

    assert torch.autograd.gradcheck(f, (x, h0, c0, *params))


def test_writes_through_data_reach_the_engine():
    """p.data.* changes no version counter; the next forward must still use the new values."""
    ref, fast = _pair(dict(num_layers=2))
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    fast(x)  # packed and cached
    for p1, p2 in zip(ref.parameters(), fast.parameters(), strict=True):
        p1.data.mul_(0.5)
        p2.data.mul_(0.5)
    with torch.no_grad():
        torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=1e-10, atol=1e-12)


def test_optimizer_loop_matches_nn_lstm():
    ref, fast = _pair(dict(num_layers=2))
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.1)
    opt_f = torch.optim.SGD(fast.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        x = torch.randn(6, 3, 5, generator=gen, dtype=torch.float64)
        target = torch.randn(6, 3, 7, generator=gen, dtype=torch.float64)
        for model, opt in ((ref, opt_r), (fast, opt_f)):
            opt.zero_grad()
            ((model(x)[0] - target) ** 2).mean().backward()
            opt.step()
    for p1, p2 in zip(ref.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p2, p1, rtol=1e-9, atol=1e-11)


def test_state_dict_round_trips_and_torch_save():
    ref, fast = _pair(dict(num_layers=2, bidirectional=True), dtype=torch.float32)
    fast.load_state_dict(ref.state_dict())
    ref.load_state_dict(fast.state_dict())
    buf = io.BytesIO()
    torch.save(fast, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(4, 2, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], fast(x)[0], rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(fast.state_dict(), buf)
    buf.seek(0)
    again = LSTM(5, 7, 2, bidirectional=True)
    again.load_state_dict(torch.load(buf))
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)


def _ddp_worker(rank, world, port, kind, out_dir):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    cls = torch.nn.LSTM if kind == "nn" else LSTM
    model = torch.nn.parallel.DistributedDataParallel(cls(5, 7, 2, dtype=torch.float64))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(100 + rank)
    for _ in range(3):
        x = torch.randn(6, 3, 5, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        (model(x)[0] ** 2).mean().backward()
        opt.step()
    if rank == 0:
        torch.save(model.module.state_dict(), os.path.join(out_dir, f"{kind}.pt"))
    # Tear down before the interpreter does: a gloo worker thread that drops its last AsyncWork during
    # Py_Finalize needs the GIL for a Python object in the work's saved thread-local state and aborts the
    # process (a torch race at exit, seen with custom autograd Functions; nn.LSTM's work holds none).
    dist.barrier()
    del model, opt
    gc.collect()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_data_parallel_matches_nn_lstm(tmp_path):
    import torch.multiprocessing as mp

    for kind in ("nn", "fast"):
        mp.spawn(_ddp_worker, args=(2, _free_port(), kind, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "nn.pt")
    b = torch.load(tmp_path / "fast.pt")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-9, atol=1e-11, msg=name)


def test_dropout_follows_torch_manual_seed():
    x = torch.randn(5, 2, 5)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = LSTM(5, 7, 3, dropout=0.5)
        outs.append(m(x)[0])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    m.eval()
    with torch.no_grad():
        assert not torch.equal(m(x)[0], outs[1])  # eval mode: no dropout


def test_devices_other_than_cpu_and_cuda_are_refused():
    with pytest.raises(RuntimeError, match="CPU and on CUDA"):
        LSTM(3, 5, device="meta")
    m = LSTM(3, 5)
    with pytest.raises(RuntimeError, match="CPU and on CUDA"):
        m(torch.zeros(2, 1, 3, device="meta"))


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_precision_runs_fastlstm_s_low_precision(precision):
    """precision= is fastlstm.LSTM's: the drop-in gives the same bits as fastlstm.LSTM in that precision (and,
    for bf16, the same gradients); int8 runs inference only (a training call raises ValueError naming it); a
    name or dtype the CPU cannot run is refused at construction, naming the argument."""
    import numpy as np

    import fastlstm

    torch.manual_seed(0)
    m = LSTM(6, 12, num_layers=2, bidirectional=True, proj_size=5, precision=precision)
    f = fastlstm.LSTM(6, 12, num_layers=2, bidirectional=True, proj_size=5, precision=precision)
    f.load_state_dict({k: v.detach().numpy() for k, v in m.state_dict().items()})
    x = torch.randn(5, 3, 6)
    with torch.no_grad():
        y, (h, c) = m(x)
    want_y, (want_h, want_c) = f(x.numpy())
    for got, want in ((y, want_y), (h, want_h), (c, want_c)):
        np.testing.assert_array_equal(got.numpy(), want)
    assert f"precision='{precision}'" in repr(m)
    if precision == "int8":
        with pytest.raises(ValueError, match="precision: 'int8' runs inference only"):
            m(x)  # parameters that require grad: a training call
    else:
        xg = x.clone().requires_grad_()
        y, _ = m(xg)
        y.backward(torch.ones_like(y))
        f(x.numpy(), train=True)
        dx, _ = f.backward(np.ones(tuple(y.shape), np.float32))
        np.testing.assert_array_equal(xg.grad.numpy(), dx)
        for name, p in m.named_parameters():
            np.testing.assert_array_equal(p.grad.numpy(), f.grads[name], err_msg=name)
    with pytest.raises(ValueError, match="precision"):
        LSTM(6, 12, precision="int4")
    with pytest.raises(TypeError, match="precision"):
        LSTM(6, 12, precision=8)
    with pytest.raises(ValueError, match="precision: 'bf16' is not available for float64"):
        LSTM(6, 12, precision="bf16", dtype=torch.float64)
