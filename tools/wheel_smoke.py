"""Smoke test of an installed fastlstm (a wheel in a fresh environment): the import, backends(), a forward, a
training forward + backward against fastlstm.reference, the functional layer, and fastlstm.torch.LSTM against
torch.nn.LSTM when torch is importable. Prints each check; exits 1 if any fails.

    python -I wheel_smoke.py [--require-torch] [--expect-cuda] [--allow-source-tree]

Run it from outside the source tree with -I (no script directory, no PYTHONPATH on sys.path), so that the
fastlstm it tests is the installed one; it checks that fastlstm comes from this interpreter's site-packages
unless --allow-source-tree. tools/ci_wheel.sh and cibuildwheel ([tool.cibuildwheel] in pyproject.toml) run it.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable

import numpy as np

# float32 throughout: fastlstm and the NumPy reference differ by rounding only (docs/api.md promises within
# twice the reference's own float32 error), far below this bound on a model this small.
TOL = 1e-4

# A small model with the options that take the most distinct code paths: 2 layers, both directions, a
# projection-free hidden state, explicit initial state and variable lengths (in no particular order).
CFG = dict(input_size=6, hidden_size=12, num_layers=2, bidirectional=True)
T, B = 7, 3
LENGTHS = np.array([5, 7, 2])


def max_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def expect_close(name: str, got, want) -> str:
    got = np.asarray(got)
    if not np.all(np.isfinite(got)):
        raise AssertionError(f"{name}: not finite")
    d = max_diff(got, want)
    if not d < TOL:
        raise AssertionError(f"{name}: max abs diff {d:.3g} >= {TOL}")
    return f"{name} {d:.1e}"


def inputs(dtype=np.float32):
    rng = np.random.default_rng(1)
    d = 2 * CFG["num_layers"]
    x = rng.standard_normal((T, B, CFG["input_size"])).astype(dtype)
    h0 = rng.standard_normal((d, B, CFG["hidden_size"])).astype(dtype)
    c0 = rng.standard_normal((d, B, CFG["hidden_size"])).astype(dtype)
    return x, h0, c0


def check_import(args) -> str:
    import fastlstm

    where = os.path.realpath(fastlstm.__file__)
    site = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    if not args.allow_source_tree and not any(where.startswith(s + os.sep) for s in site):
        raise AssertionError(f"fastlstm imported from {where}, not from site-packages {sorted(site)}")
    core = fastlstm._core.__file__  # the compiled extension, next to the package
    return f"fastlstm {fastlstm.__version__} from {os.path.dirname(where)} (extension {os.path.basename(core)})"


def check_backends(args) -> str:
    import fastlstm

    b = fastlstm.backends()
    print(f"    backends() = {b}")
    cpu = b["cpu"]
    if cpu["isa"] not in cpu["available_isas"] or cpu["isa"] not in cpu["built_isas"]:
        raise AssertionError(f"selected ISA {cpu['isa']} not available/built")
    if args.expect_cuda and not (b["cuda"] and b["cuda"].get("built")):
        raise AssertionError("--expect-cuda: the wheel was built without the CUDA library")
    cuda = "not built" if b["cuda"] is None else f"built, {len(b['cuda']['devices'])} device(s)"
    return f"cpu isa {cpu['isa']} of {cpu['available_isas']}, {cpu['threads']} threads; cuda {cuda}"


def check_forward(args) -> str:
    import fastlstm
    from fastlstm import reference

    lstm = fastlstm.LSTM(**CFG, seed=0)
    x, h0, c0 = inputs()
    y, (h, c) = lstm(x, (h0, c0), lengths=LENGTHS)
    (ry, (rh, rc)), _ = reference.forward(lstm.config, lstm.state_dict(), x, (h0, c0), lengths=LENGTHS)
    return "; ".join(expect_close(n, a, r) for n, a, r in (("y", y, ry), ("h_n", h, rh), ("c_n", c, rc)))


def check_backward(args) -> str:
    import fastlstm
    from fastlstm import reference

    lstm = fastlstm.LSTM(**CFG, seed=0)
    x, h0, c0 = inputs()
    y, _ = lstm(x, (h0, c0), lengths=LENGTHS, train=True)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
    dx, (dh0, dc0) = lstm.backward(dy)
    params = lstm.state_dict()
    _, tape = reference.forward(lstm.config, params, x, (h0, c0), lengths=LENGTHS, train=True)
    rdx, (rdh0, rdc0), rgrads = reference.backward(lstm.config, params, tape, dy)
    out = [expect_close(n, a, r) for n, a, r in (("dx", dx, rdx), ("dh0", dh0, rdh0), ("dc0", dc0, rdc0))]
    if set(lstm.grads) != set(params):
        raise AssertionError(f"grads names {sorted(lstm.grads)} != parameter names {sorted(params)}")
    worst = max(lstm.grads, key=lambda k: max_diff(lstm.grads[k], rgrads[k]))
    for k in lstm.grads:
        expect_close(f"grads[{k}]", lstm.grads[k], rgrads[k])
    out.append(f"{len(params)} parameter grads, worst {expect_close(worst, lstm.grads[worst], rgrads[worst])}")
    return "; ".join(out)


def check_functional(args) -> str:
    import fastlstm
    from fastlstm import functional

    lstm = fastlstm.LSTM(**CFG, seed=0)
    x, h0, c0 = inputs()
    w = functional.pack(lstm.config, lstm.state_dict())
    y, (h, c), tape = functional.forward(w, x, (h0, c0), lengths=LENGTHS)
    my, (mh, mc) = lstm(x, (h0, c0), lengths=LENGTHS)
    # The module is built on this layer: the same engine on the same packed weights gives the same bits.
    if tape is not None or not all(np.array_equal(a, b) for a, b in ((y, my), (h, mh), (c, mc))):
        raise AssertionError("functional.forward differs from LSTM.__call__")
    return f"pack ({w.engine_name}, {w.nbytes} bytes) + forward: bitwise equal to LSTM.__call__"


def check_torch(args) -> str | None:
    try:
        import torch
    except ImportError:
        if args.require_torch:
            raise AssertionError("--require-torch: torch is not importable") from None
        return None
    import fastlstm.torch

    torch.manual_seed(0)
    ref = torch.nn.LSTM(CFG["input_size"], CFG["hidden_size"], CFG["num_layers"], bidirectional=True)
    ours = fastlstm.torch.LSTM(CFG["input_size"], CFG["hidden_size"], CFG["num_layers"], bidirectional=True)
    ours.load_state_dict(ref.state_dict())
    x_np, h0_np, c0_np = inputs()
    results = []
    for m in (ref, ours):
        x, h0, c0 = (torch.tensor(a, requires_grad=True) for a in (x_np, h0_np, c0_np))
        y, (h, c) = m(x, (h0, c0))
        dy = torch.from_numpy(np.random.default_rng(3).standard_normal(tuple(y.shape)).astype(np.float32))
        ((y * dy).sum() + h.sum() + 0.5 * c.sum()).backward()
        grads = {n: p.grad.numpy().copy() for n, p in m.named_parameters()}
        results.append((y.detach().numpy(), h.detach().numpy(), c.detach().numpy(), x.grad.numpy(),
                        h0.grad.numpy(), c0.grad.numpy(), grads))
    (ry, rh, rc, rdx, rdh0, rdc0, rg), (y, h, c, dx, dh0, dc0, g) = results
    out = [expect_close(n, a, r) for n, a, r in
           (("y", y, ry), ("h_n", h, rh), ("c_n", c, rc), ("dx", dx, rdx), ("dh0", dh0, rdh0), ("dc0", dc0, rdc0))]
    if list(g) != list(rg):
        raise AssertionError(f"parameter names/order differ: {list(g)} vs {list(rg)}")
    for k in g:
        expect_close(f"{k}.grad", g[k], rg[k])
    out.append(f"{len(g)} parameter grads")
    return f"torch {torch.__version__}: " + "; ".join(out)


CHECKS: list[tuple[str, Callable]] = [
    ("import", check_import),
    ("backends()", check_backends),
    ("forward vs reference", check_forward),
    ("train forward + backward vs reference", check_backward),
    ("functional pack + forward", check_functional),
    ("fastlstm.torch.LSTM vs torch.nn.LSTM (forward + backward)", check_torch),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--require-torch", action="store_true", help="fail when torch is not importable")
    p.add_argument("--expect-cuda", action="store_true", help="fail when the CUDA library was not built in")
    p.add_argument("--allow-source-tree", action="store_true", help="do not insist on an installed fastlstm")
    args = p.parse_args(argv)
    print(f"wheel smoke test: python {sys.version.split()[0]} at {sys.executable}; float32, tolerance {TOL}")
    failed = skipped = 0
    for name, fn in CHECKS:
        try:
            detail = fn(args)
        except Exception:  # every failure is reported, then the remaining checks still run
            failed += 1
            print(f"FAIL  {name}")
            traceback.print_exc(file=sys.stdout)
            continue
        skipped += detail is None
        print(f"skip  {name}: torch not installed" if detail is None else f"ok    {name}: {detail}")
    passed = len(CHECKS) - failed - skipped
    print(f"wheel smoke test: {passed} passed, {skipped} skipped, {failed} failed" + (": FAILED" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
