"""fastlstm.torch.LSTM where nn.LSTM users notice the difference: torch.compile(fullgraph=True) and torch.export
(the LSTM runs as custom operators with fake implementations, checked by torch's opcheck), and the errors and
warnings nn.LSTM gives for malformed arguments (the same exception types and messages)."""

from __future__ import annotations

import warnings

import pytest

from oracles import require

torch = require("torch")
from torch.library import opcheck  # noqa: E402

from fastlstm import _torch_ops  # noqa: E402
from fastlstm.torch import LSTM  # noqa: E402

# torch's own compiler stack warns about its internals (torch.jit.script_method); the suite turns warnings
# into errors, so those are let through here.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


def _model(seed=0, **opts):
    torch.manual_seed(seed)
    return LSTM(5, 7, dtype=torch.float64, **opts)


@pytest.mark.parametrize("opts", [dict(), dict(num_layers=2, bidirectional=True, proj_size=3, peephole=True),
                                  dict(batch_first=True, num_layers=2)])
def test_compile_fullgraph_forward_and_backward_match_eager(opts):
    """The compiled graph calls the same operators: outputs and gradients are the same bits as eager."""
    m = _model(**opts).eval()
    x = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)
    results = []
    for run in (torch.compile(lambda x: m(x), fullgraph=True), m):
        x.grad = None
        m.zero_grad()
        y, (h, c) = run(x)
        (y.sum() + 0.5 * h.sum() + 0.25 * c.sum()).backward()
        results.append([y, h, c, x.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_compile_dynamic_shapes_and_training_mode():
    m = _model(num_layers=2, dropout=0.3)
    compiled = torch.compile(lambda x: m(x)[0], fullgraph=True, dynamic=True)
    for T, B in ((6, 3), (9, 4)):
        x = torch.randn(T, B, 5, dtype=torch.float64, requires_grad=True)
        m.eval()
        torch.testing.assert_close(compiled(x), m(x)[0], rtol=0, atol=0)
        m.train()  # dropout: compiled code draws its seed with its own generator, so compare run to run
        torch.manual_seed(1)
        a = compiled(x)
        torch.manual_seed(1)
        assert torch.equal(compiled(x), a)
        a.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()


def test_export_runs_the_same_numbers():
    m = _model(num_layers=2, bidirectional=True).eval()
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        program = torch.export.export(m, (x,))
        assert "fastlstm.lstm" in str(program.graph)
        x2 = torch.randn(6, 3, 5, dtype=torch.float64)
        for a, b in zip(program.module()(x2)[0:1], m(x2)[0:1], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def _op_args(m, x, lengths=None, train=True):
    c = m.config
    DL = c.num_layers * c.num_directions
    B = x.shape[0 if c.batch_first else 1]
    h0 = torch.randn(DL, B, c.out_size, dtype=x.dtype, requires_grad=train)
    c0 = torch.randn(DL, B, c.hidden_size, dtype=x.dtype, requires_grad=train)
    params = [p if train else p.detach() for p in m.parameters()]  # train=False: no gradient to take
    return (x if train else x.detach(), h0, c0, params, lengths, m._op_config(), c.dropout, torch.tensor([7]),
            c.dropout > 0, train)


@pytest.mark.parametrize("opts,lengths", [(dict(), None), (dict(num_layers=2, bidirectional=True, dropout=0.5), None),
                                          (dict(num_layers=2, proj_size=3, peephole=True), [6, 2, 5])])
def test_opcheck(opts, lengths):
    """torch's own checks of a custom operator: schema, fake implementation, autograd registration and
    tracing by AOTAutograd with dynamic shapes (outputs compared with eager, the reserve included)."""
    m = _model(**opts)
    x = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)
    lens = None if lengths is None else torch.tensor(lengths)
    opcheck(torch.ops.fastlstm.lstm.default, _op_args(m, x, lens))
    opcheck(torch.ops.fastlstm.lstm.default, _op_args(m, x.detach(), lens, train=False))
    y, h_n, c_n, reserve, masks = _torch_ops.lstm(*_op_args(m, x, lens))
    assert reserve.dtype == torch.uint8 and reserve.numel() > 0
    # The backward operator has no derivative of its own (first-order gradients): checked without grads.
    bwd_args = (torch.ones_like(y), torch.ones_like(h_n), torch.ones_like(c_n), reserve.detach(), masks.detach(),
                [p.detach() for p in m.parameters()], lens, m._op_config(), m.config.dropout, list(x.shape))
    opcheck(torch.ops.fastlstm.lstm_backward.default, bwd_args)


def test_float64_input_to_a_float32_module_raises_as_nn_lstm():
    ref, fast = torch.nn.LSTM(5, 7), LSTM(5, 7)
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    for m in (ref, fast):
        with pytest.raises(ValueError, match=r"RNN input dtype \(torch.float64\) does not match weight dtype"):
            m(x)


def test_malformed_arguments_raise_as_nn_lstm():
    ref, fast = torch.nn.LSTM(5, 7), LSTM(5, 7)
    cases = [
        ((torch.randn(4, 2, 6),), RuntimeError, "input.size(-1) must be equal to input_size"),
        ((torch.randn(4, 2, 5), (torch.zeros(1, 3, 7), torch.zeros(1, 2, 7))), RuntimeError, "Expected hidden[0] size"),
        ((torch.randn(4, 2, 5), (torch.zeros(1, 2, 7), torch.zeros(1, 2, 6))), RuntimeError, "Expected hidden[1] size"),
        ((torch.randn(4, 2, 5), (torch.zeros(2, 7), torch.zeros(2, 7))), RuntimeError, "should also be 3-D"),
        ((torch.randn(4, 5), (torch.zeros(1, 1, 7), torch.zeros(1, 1, 7))), RuntimeError, "should also be 2-D"),
        ((torch.randn(1, 4, 2, 5),), ValueError, "Expected input to be 2D or 3D"),
    ]
    for args, exc, text in cases:
        messages = []
        for m in (ref, fast):
            with pytest.raises(exc) as info:
                m(*args)
            messages.append(str(info.value))
        assert text in messages[0] and messages[0] == messages[1], messages


@pytest.mark.parametrize("kwargs,exc", [(dict(dropout=1.5), ValueError), (dict(dropout=True), ValueError),
                                        (dict(bias=1), TypeError), (dict(batch_first="yes"), TypeError),
                                        (dict(num_layers=0), ValueError), (dict(proj_size=7), ValueError),
                                        (dict(proj_size=-1), ValueError)])
def test_constructor_errors_as_nn_lstm(kwargs, exc):
    messages = []
    for cls in (torch.nn.LSTM, LSTM):
        with pytest.raises(exc) as info:
            cls(5, 7, **kwargs)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    for bad in ((5.0, 7), (5, 0)):
        with pytest.raises((TypeError, ValueError)):
            LSTM(*bad)


def test_dropout_with_one_layer_warns_as_nn_lstm():
    caught = {}
    for cls in (torch.nn.LSTM, LSTM):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            cls(5, 7, dropout=0.5)
        caught[cls] = [str(x.message) for x in w if issubclass(x.category, UserWarning)]
    assert caught[LSTM] and caught[LSTM] == caught[torch.nn.LSTM]


def test_compile_low_precision_training_matches_eager():
    """A bf16 module's saved state has its own size (the fake implementation asks the bf16 engine): the compiled
    training step gives eager's bits."""
    torch.manual_seed(2)
    m = LSTM(5, 7, num_layers=2, precision="bf16")
    x = torch.randn(6, 3, 5, requires_grad=True)
    results = []
    for run in (torch.compile(lambda x: m(x), fullgraph=True), m):
        x.grad = None
        m.zero_grad()
        y, (h, c) = run(x)
        (y.sum() + 0.5 * h.sum()).backward()
        results.append([y, h, c, x.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
