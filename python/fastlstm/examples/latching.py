"""Information latching: 3 bits kept through up to 1000 steps of noise.

The task of Bengio, Simard & Frasconi 1994: the class of a sequence (one of 8) is set by the sign pattern
of its first three inputs; then T steps of Gaussian noise as strong as the signal follow, and the class
is asked for only at the end. A model must store three bits for T steps while ignoring T noisy inputs:
the task on which plain RNNs trained by gradient descent fail as T grows. A fresh LSTM is trained for
each T until its validation accuracy reaches 99%.

Command:
    python -m fastlstm.examples.latching [--quick] [--out DIR] [--seed N]

Options:
    --quick    T = 20 and 50, at most 600 training steps each, stopping at 95%: a few seconds
    --out DIR  folder for latching.png (default: the current folder)
    --seed N   seed of the data and weights (default 0)

Expected result (full run, T = 50, 200 and 1000, measured on 2 CPU cores): 99% validation accuracy
(chance 12.5%) at T = 50 after 700 training steps, at T = 200 after 1100 and at T = 1000 after 3200;
about 165 s in all. With --quick: 95% or more at T = 20 and at T = 50 in a few seconds.

Output: a table of the steps to reach the target, the final accuracy and the time for each T; with
matplotlib installed, latching.png plots validation accuracy against training steps for each T, and the
steps needed to reach the target against T."""

from __future__ import annotations

import time

import numpy as np

import fastlstm

from ._common import Adam, Linear, chrono_init, cross_entropy, parser, progress, save_plot, update

BITS = 3  # informative steps at the start; 2**BITS classes, chance = 1/8


def make_batch(rng, batch, T, noise=1.0):
    """x (BITS+T, batch, 1): the class's bits as -1/+1, then N(0, noise^2); labels (batch,) in [0, 8)."""
    bits = rng.integers(0, 2, (batch, BITS))
    x = rng.normal(0.0, noise, (BITS + T, batch, 1)).astype(np.float32)
    x[:BITS, :, 0] = (2 * bits - 1).T
    return x, bits @ (1 << np.arange(BITS))


def accuracy(lstm, head, x, labels):
    y, _ = lstm(x)  # train=False: nothing kept for backward
    return float((head(y[-1]).argmax(-1) == labels).mean())


def train_one(T, *, steps, batch, hidden, lr, noise, target, eval_every, seed):
    """Trains a fresh model on gap T until validation accuracy >= target or `steps` run out."""
    rng = np.random.default_rng(seed)
    lstm = fastlstm.LSTM(1, hidden, seed=seed)
    # With torch's default init (f ~ 0.5) the bits are forgotten within a few dozen steps, and the
    # gradient that would teach the model to keep them vanishes just as fast: start with long memories.
    chrono_init(lstm, T, rng)
    head = Linear(hidden, 2 ** BITS, rng)
    opt = Adam(lr=lr)
    x_val, y_val = make_batch(np.random.default_rng(seed + 1000), 512, T, noise)
    curve, solved_at, t0 = [(0, accuracy(lstm, head, x_val, y_val))], None, time.perf_counter()
    bar = progress(steps, f"T={T:>4}")
    for step in bar:
        x, labels = make_batch(rng, batch, T, noise)
        y, _ = lstm(x, train=True)
        loss, dlogits = cross_entropy(head(y[-1]), labels)
        dy = np.zeros_like(y)
        dy[-1] = head.backward(dlogits)  # only the last step is read out
        lstm.backward(dy)
        update(opt, lstm=lstm, head=head)
        if (step + 1) % eval_every == 0:
            acc = accuracy(lstm, head, x_val, y_val)
            curve.append((step + 1, acc))
            bar.set_postfix_str(f"loss {loss:.3f} val acc {acc:.3f}", refresh=False)
            if acc >= target:
                solved_at = step + 1
                break
    bar.close()
    return dict(T=T, solved_at=solved_at, accuracy=curve[-1][1], curve=curve,
                seconds=time.perf_counter() - t0)


def draw(axes, results, target):
    ax1, ax2 = axes
    for r in results:
        steps, acc = zip(*r["curve"], strict=True)
        ax1.plot(steps, acc, label=f"T = {r['T']}")
    ax1.axhline(1 / 2 ** BITS, color="gray", ls=":", label="chance (1/8)")
    ax1.axhline(target, color="gray", ls="--", lw=0.8)
    ax1.set(xlabel="training step (batch of 64 sequences)", ylabel="validation accuracy", ylim=(0, 1.02),
            title="Learning curves: 3 bits latched across T noisy steps")
    ax1.legend(loc="center")
    Ts = [r["T"] for r in results]
    heights = [r["solved_at"] or r["curve"][-1][0] for r in results]
    bars = ax2.bar([str(t) for t in Ts], heights, color=[f"C{i}" for i in range(len(Ts))])
    for b, r in zip(bars, results, strict=True):
        if r["solved_at"]:
            note = f"{r['solved_at']} steps\n{r['seconds']:.0f} s"
        else:
            note = f"not solved\nacc {r['accuracy']:.2f}"
        ax2.annotate(note, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                     fontsize=9)
    ax2.set(xlabel="gap T (noise steps after the 3 informative ones)",
            ylabel=f"steps to {target:.0%} accuracy", title="Training cost against the gap")
    ax2.set_ylim(0, max(heights) * 1.25)


def run(Ts=(50, 200, 1000), *, steps=5000, batch=64, hidden=32, lr=3e-3, noise=1.0, target=0.99,
        eval_every=100, seed=0, out="."):
    results = [train_one(T, steps=steps, batch=batch, hidden=hidden, lr=lr, noise=noise, target=target,
                         eval_every=eval_every, seed=seed) for T in Ts]
    print(f"\nlatching: 3 bits, then T steps of N(0, {noise}^2) noise; {2 ** BITS} classes, chance 12.5%")
    print(f"     T   steps to {target:.0%}   final acc   time")
    for r in results:
        solved = r["solved_at"] if r["solved_at"] else f">{steps}"
        print(f"{r['T']:>6}   {solved:>12}   {r['accuracy']:>9.3f}   {r['seconds']:.0f} s")
    save_plot(out, "latching", lambda axes: draw(axes, results, target), grid=(1, 2), figsize=(11, 4.2))
    return results


def main(argv=None):
    args = parser("latching", __doc__).parse_args(argv)
    if args.quick:
        return run((20, 50), steps=600, eval_every=25, target=0.95, seed=args.seed, out=args.out)
    return run(seed=args.seed, out=args.out)


if __name__ == "__main__":
    main()
