"""What the examples share: a tiny Adam, a linear readout with its gradient, losses, a progress bar, plot
saving and the command line. NumPy only; tqdm and matplotlib are used when installed and skipped otherwise."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np


class Adam:
    """Adam (Kingma & Ba 2015) over named arrays, with global-norm gradient clipping: recurrent nets get
    the occasional huge gradient (Pascanu et al. 2013), and one such step can undo hours of training."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, clip=1.0):
        self.lr, self.betas, self.eps, self.clip = lr, betas, eps, clip
        self.t, self.m, self.v = 0, {}, {}

    def step(self, params: dict, grads: dict) -> float:
        """Updates `params` in place; returns the gradient norm before clipping."""
        norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
        scale = min(1.0, self.clip / (norm + 1e-12)) if self.clip else 1.0
        self.t += 1
        b1, b2 = self.betas
        lr = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)  # bias correction folded into lr
        for k, p in params.items():
            g = grads[k] * scale
            m = self.m[k] = b1 * self.m.get(k, 0.0) + (1 - b1) * g
            v = self.v[k] = b2 * self.v.get(k, 0.0) + (1 - b2) * g * g
            p -= (lr * m / (np.sqrt(v) + self.eps)).astype(p.dtype)
        return norm


def update(opt: Adam, **modules) -> float:
    """One Adam step over several modules (fastlstm.LSTM or Linear) after their backward calls. An LSTM's
    parameters are read-only inside it, so they go out through state_dict and back through load_state_dict."""
    params, grads = {}, {}
    for name, mod in modules.items():
        for k, v in mod.state_dict().items():
            params[f"{name}.{k}"], grads[f"{name}.{k}"] = v, mod.grads[k]
    norm = opt.step(params, grads)
    for name, mod in modules.items():
        mod.load_state_dict({k[len(name) + 1:]: v for k, v in params.items() if k.startswith(name + ".")})
    return norm


def chrono_init(lstm, max_lag, rng):
    """Chrono initialisation (Tallec & Ollivier 2018) of every layer and direction: forget-gate biases
    log(U(1, max_lag)) give the cells memory time scales up to max_lag steps, and input-gate biases, their
    negatives, keep the cells closed to input until training opens them for what is worth storing."""
    sd = lstm.state_dict()
    for name in sd:
        if name.startswith("bias_"):
            H = sd[name].shape[0] // 4
            sd[name][:] = 0.0
            if name.startswith("bias_hh"):
                bf = np.log(rng.uniform(1.0, max(max_lag, 2), H))
                sd[name][H:2 * H] = bf  # gate blocks i, f, g, o as in torch
                sd[name][:H] = -bf
    lstm.load_state_dict(sd)


class Linear:
    """y = x W^T + b over the last axis of x (any leading axes), with backward; the same
    state_dict/load_state_dict/grads interface as fastlstm.LSTM so `update` treats both alike."""

    def __init__(self, in_features, out_features, rng, dtype=np.float32):
        bound = 1 / math.sqrt(in_features)  # torch.nn.Linear's default init
        self.W = rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype)
        self.b = rng.uniform(-bound, bound, out_features).astype(dtype)
        self.grads, self._x = {}, None

    def __call__(self, x):
        self._x = x
        return x @ self.W.T + self.b

    def backward(self, dy):
        x = self._x.reshape(-1, self.W.shape[1])
        dy2 = dy.reshape(-1, self.W.shape[0])
        self.grads = {"W": dy2.T @ x, "b": dy2.sum(0)}
        return dy @ self.W

    def state_dict(self):
        return {"W": self.W.copy(), "b": self.b.copy()}

    def load_state_dict(self, d):
        self.W, self.b = d["W"], d["b"]


def cross_entropy(logits, targets, mask=None):
    """Mean softmax cross-entropy over the positions where mask is true -> (loss, dlogits)."""
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    mask = np.ones(targets.shape, bool) if mask is None else mask
    n = max(int(mask.sum()), 1)
    picked = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    grad = np.exp(logp)
    np.put_along_axis(grad, targets[..., None], np.take_along_axis(grad, targets[..., None], -1) - 1, -1)
    grad *= mask[..., None] / n
    return float(-(picked * mask).sum() / n), grad.astype(logits.dtype)


def mse(pred, target):
    """Mean squared error -> (loss, dpred)."""
    diff = pred - target
    return float((diff ** 2).mean()), (2 * diff / diff.size).astype(pred.dtype)


class _PlainBar:
    """tqdm's small subset used here, printing a line every ~10% when tqdm is not installed."""

    def __init__(self, iterable, total, desc):
        self.iterable, self.total, self.desc, self.postfix = iterable, total, desc, ""
        self.t0, self.next_print = time.perf_counter(), 0

    def __iter__(self):
        for i, item in enumerate(self.iterable):
            if i >= self.next_print:
                print(f"{self.desc}: {i}/{self.total} {self.postfix} [{time.perf_counter() - self.t0:.0f}s]",
                      file=sys.stderr, flush=True)
                self.next_print = i + max(1, self.total // 10)
            yield item

    def set_postfix_str(self, s, refresh=True):
        self.postfix = s

    def close(self):
        print(f"{self.desc}: done {self.postfix} [{time.perf_counter() - self.t0:.1f}s]", file=sys.stderr)


def progress(total: int, desc: str):
    """A progress bar over range(total): tqdm when installed, otherwise plain lines on stderr."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar(range(total), total, desc)
    return tqdm(range(total), desc=desc, dynamic_ncols=True, mininterval=0.5)


NO_MATPLOTLIB = "matplotlib is not installed: no plot written (pip install matplotlib)"


def save_plot(out_dir, name: str, draw, grid=(1, 1), figsize=(10, 4)):
    """Writes out_dir/name.png drawn by draw(axes), axes being a new figure's grid of subplots (one Axes
    for grid (1, 1), else an array of them; ax.figure is the figure). Returns the PNG's path, or None after
    printing a note when matplotlib is not installed: draw is then never called, so no caller has a missing
    figure to handle. Uses matplotlib's object API (Figure, not pyplot), so it leaves the process-wide
    backend alone and works headless and beside any GUI."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(NO_MATPLOTLIB)
        return None
    fig = Figure(figsize=figsize, layout="constrained")
    draw(fig.subplots(*grid))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.png")
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")
    return path


def parser(name: str, doc: str) -> argparse.ArgumentParser:
    """The command line of example `name`, shown as `python -m fastlstm.examples.<name>` (not as the file's
    name); --help prints the docstring's first two paragraphs and its expected result."""
    paragraphs = doc.strip().split("\n\n")
    epilog = [p for p in paragraphs if p.startswith("Expected result")]
    p = argparse.ArgumentParser(prog=f"python -m fastlstm.examples.{name}",
                                description="\n\n".join(paragraphs[:2]), epilog="\n\n".join(epilog) or None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a small configuration that runs in seconds")
    p.add_argument("--out", default=".", metavar="DIR",
                   help=f"folder for the plot {name}.png (default: the current folder)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the data and weights (default 0)")
    return p
