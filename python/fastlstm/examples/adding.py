"""The adding problem: sum two values marked far apart in a sequence.

The task of Hochreiter & Schmidhuber 1997: each input is a sequence of T pairs (a value in [0, 1], a
marker); two values are marked, one in each half of the sequence, and at the end the model must output
their sum. The first marked value must be held for at least T/2 steps while about T unmarked values
stream past. Always answering 1.0 (the mean of the sum) scores a mean squared error of 1/6 = 0.167; a
model has learned the task only when its error falls well below that.

Command:
    python -m fastlstm.examples.adding [--quick] [--out DIR] [--seed N] [--T N]

Options:
    --quick    T = 30 (at most), a smaller model and 400 training steps: a few seconds
    --out DIR  folder for adding.png (default: the current folder)
    --seed N   seed of the data and weights (default 0)
    --T N      sequence length (default 200)

Expected result (full run, T = 200, measured on 2 CPU cores): validation MSE 0.0003 after 2500 training
steps, against 0.167 for always answering 1.0 (below a tenth of that from step 1100); about 60 s. With
--quick: an MSE below 0.05 (about 0.01) in a few seconds.

Output: the final validation MSE and the step from which it stays below a tenth of the baseline; with
matplotlib installed, adding.png plots the learning curve (validation MSE against training step, log
scale) beside the 0.167 baseline."""

from __future__ import annotations

import time

import numpy as np

import fastlstm

from ._common import Adam, Linear, chrono_init, mse, parser, progress, save_plot, update

BASELINE = 1 / 6  # variance of the sum of two U(0, 1): the error of always answering its mean 1.0


def make_batch(rng, batch, T):
    """x (T, batch, 2): channel 0 the values, channel 1 the two markers; target (batch, 1)."""
    x = np.zeros((T, batch, 2), np.float32)
    x[:, :, 0] = rng.uniform(0, 1, (T, batch))
    first = rng.integers(0, T // 2, batch)
    second = rng.integers(T // 2, T, batch)
    cols = np.arange(batch)
    x[first, cols, 1] = x[second, cols, 1] = 1.0
    target = (x[first, cols, 0] + x[second, cols, 0])[:, None]
    return x, target


def run(T=200, *, steps=2500, batch=64, hidden=64, lr=3e-3, eval_every=50, seed=0, out="."):
    rng = np.random.default_rng(seed)
    lstm = fastlstm.LSTM(2, hidden, seed=seed)
    chrono_init(lstm, T, rng)  # memories as long as the sequence from the start (see _common)
    head = Linear(hidden, 1, rng)
    opt = Adam(lr=lr)
    x_val, t_val = make_batch(np.random.default_rng(seed + 1000), 1000, T)

    def val_mse():
        return mse(head(lstm(x_val)[0][-1]), t_val)[0]

    curve, t0 = [(0, val_mse())], time.perf_counter()
    bar = progress(steps, f"adding T={T}")
    for step in bar:
        x, target = make_batch(rng, batch, T)
        y, _ = lstm(x, train=True)
        loss, dpred = mse(head(y[-1]), target)
        dy = np.zeros_like(y)
        dy[-1] = head.backward(dpred)
        lstm.backward(dy)
        update(opt, lstm=lstm, head=head)
        if (step + 1) % eval_every == 0:
            curve.append((step + 1, val_mse()))
            bar.set_postfix_str(f"train {loss:.4f} val {curve[-1][1]:.4f}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - t0
    final = curve[-1][1]
    below = next((s for s, v in curve if v < 0.1 * BASELINE), None)
    print(f"\nadding problem, T = {T}: validation MSE {final:.4f} after {steps} steps ({seconds:.0f} s); "
          f"baseline 0.167 (always answer 1.0); below 1/10 of it from step {below}")
    save_plot(out, "adding", lambda ax: draw(ax, curve, T), figsize=(7.5, 4.2))
    return dict(T=T, mse=final, curve=curve, seconds=seconds, below_tenth_at=below)


def draw(ax, curve, T):
    steps, err = zip(*curve, strict=True)
    ax.semilogy(steps, err, label="LSTM (fastlstm), validation MSE")
    ax.axhline(BASELINE, color="C3", ls="--", label="always answer 1.0: MSE 0.167")
    ax.annotate(f"final MSE {err[-1]:.4f}", (steps[-1], err[-1]), xytext=(0, 12), textcoords="offset points",
                ha="right")
    ax.set(xlabel="training step (batch of 64 sequences)", ylabel="mean squared error (log scale)",
           title=f"Adding problem, T = {T}: sum of two marked values")
    ax.legend()


def main(argv=None):
    p = parser("adding", __doc__)
    p.add_argument("--T", type=int, default=200, metavar="N", help="sequence length (default 200)")
    args = p.parse_args(argv)
    if args.quick:
        # a shorter T and a smaller, faster-learning model: solved in ~400 steps, a second or two
        return run(min(args.T, 30), steps=400, hidden=32, lr=1e-2, eval_every=50, seed=args.seed,
                   out=args.out)
    return run(args.T, seed=args.seed, out=args.out)


if __name__ == "__main__":
    main()
