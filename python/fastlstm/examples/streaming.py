"""Streaming: next-sample prediction one LSTM.step at a time, and its latency.

An LSTM is trained briefly to predict the next sample of a noisy sine whose frequency jumps, then run one
sample at a time on a live-like stream through LSTM.step, carrying its state (h, c) from sample to sample
the way an on-line system does (a sensor, audio, a trading feed). What matters there is the latency of
one step at batch 1; it is measured for fastlstm's step and, when torch is installed, for
torch.nn.LSTMCell holding the same weights on the same thread count.

Command:
    python -m fastlstm.examples.streaming [--quick] [--out DIR] [--seed N] [--hidden N]

Options:
    --quick     300 training steps and a stream of 2000 samples: a few seconds
    --out DIR   folder for streaming.png (default: the current folder)
    --seed N    seed of the data and weights (default 0)
    --hidden N  hidden size of the LSTM (default 64)

Expected result (full run, H = 64, 20000 samples, measured on 2 CPU cores with 2 threads): median step
5.3 us against 21.0 us for torch.nn.LSTMCell with the same weights (4.0 times faster), the two agreeing
to 4e-7; about 9 s. Latencies depend on the machine. The next-sample error is well below that of
repeating the last sample (with --quick too: below 0.01, against about 0.5 untrained).

Output: the next-sample MSE and, for each implementation, the median and 99th percentile step latency;
with matplotlib installed, streaming.png plots the predictions around a frequency jump and the histogram
of step latencies."""

from __future__ import annotations

import gc
import time

import numpy as np

import fastlstm

from ._common import Adam, Linear, mse, parser, progress, save_plot, update

NOISE = 0.05


def sine_stream(rng, T, batch, mean_run, lo=0.05, hi=0.3):
    """(T, batch) noisy sines whose angular frequency (rad/sample, in [lo, hi]) jumps to a new random
    value every `mean_run` samples on average, phase continuous: the model cannot learn one frequency,
    it must keep estimating it from what it has seen. Also returns the step indices of the jumps."""
    jump = rng.random((T, batch)) < 1 / mean_run
    jump[0] = True
    last = np.maximum.accumulate(np.where(jump, np.arange(T)[:, None], 0), axis=0)
    w = rng.uniform(lo, hi, (T, batch))[last, np.arange(batch)]
    phase = rng.uniform(0, 2 * np.pi, batch) + np.cumsum(w, 0)
    return (np.sin(phase) + rng.normal(0, NOISE, phase.shape)).astype(np.float32), np.flatnonzero(jump[:, 0])


def train(hidden, steps, seed, T=100, batch=32):
    rng = np.random.default_rng(seed)
    lstm, head, opt = fastlstm.LSTM(1, hidden, seed=seed), Linear(hidden, 1, rng), Adam(lr=3e-3)
    bar = progress(steps, "training")
    for _ in bar:
        s = sine_stream(rng, T + 1, batch, mean_run=50)[0][..., None]
        y, _ = lstm(s[:-1], train=True)
        loss, dpred = mse(head(y), s[1:])  # predict every next sample
        lstm.backward(head.backward(dpred))
        update(opt, lstm=lstm, head=head)
        bar.set_postfix_str(f"mse {loss:.4f}", refresh=False)
    bar.close()
    return lstm, head


def stream_fastlstm(lstm, head, xs, H):
    """xs (N, 1, 1): one sample per call, as it arrives; H the hidden size. Returns predictions and
    per-step times (s)."""
    hx = (np.zeros((1, 1, H), np.float32), np.zeros((1, 1, H), np.float32))
    preds, times = np.empty(len(xs), np.float32), np.empty(len(xs))
    clock = time.perf_counter
    for i in progress(len(xs), "streaming (fastlstm)"):
        t0 = clock()
        out, hx = lstm.step(xs[i], hx)
        times[i] = clock() - t0
        preds[i] = head(out)[0, 0]
    return preds, times


def stream_torch(lstm, head, xs, H):
    """The same stream through torch.nn.LSTMCell with the same weights, or None without torch."""
    try:
        import torch
    except ImportError:
        print("note: torch is not installed, so there is no torch.nn.LSTMCell latency to compare with")
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(fastlstm.get_num_threads())  # the same cores for both
    try:
        cell = torch.nn.LSTMCell(1, H)
        sd = lstm.state_dict()  # torch's LSTM and LSTMCell share names, less the layer suffix
        cell.load_state_dict({k: torch.from_numpy(sd[f"{k}_l0"]) for k in ("weight_ih", "weight_hh",
                                                                             "bias_ih", "bias_hh")})
        xt = torch.from_numpy(xs.copy())
        hx = (torch.zeros(1, H), torch.zeros(1, H))
        preds, times = np.empty(len(xs), np.float32), np.empty(len(xs))
        clock = time.perf_counter
        with torch.inference_mode():
            for i in progress(len(xs), "streaming (torch LSTMCell)"):
                x = xt[i]
                t0 = clock()
                hx = cell(x, hx)
                times[i] = clock() - t0
                preds[i] = head(hx[0].numpy())[0, 0]
    finally:
        torch.set_num_threads(threads)
    return preds, times


def run(*, hidden=64, train_steps=600, stream_len=20000, seed=0, out="."):
    lstm, head = train(hidden, train_steps, seed)
    stream, jumps = sine_stream(np.random.default_rng(seed + 1000), stream_len + 1, 1, mean_run=400)
    stream = stream[:, 0]
    xs = np.ascontiguousarray(stream[:-1].reshape(-1, 1, 1))
    gc.disable()  # a collection in the middle of a timed step is not the step's latency
    try:
        preds, times = stream_fastlstm(lstm, head, xs, hidden)
        ref = stream_torch(lstm, head, xs, hidden)
    finally:
        gc.enable()
    warm = slice(100, None)  # skip the first calls (weight packing, caches)
    err, naive = float(((preds - stream[1:]) ** 2).mean()), float(((stream[:-1] - stream[1:]) ** 2).mean())
    lat = {"fastlstm LSTM.step": times[warm] * 1e6}
    if ref is not None:
        lat["torch.nn.LSTMCell"] = ref[1][warm] * 1e6
        agree = float(np.abs(ref[0] - preds).max())
    print(f"\nstreaming, H = {hidden}, {stream_len} samples one at a time, "
          f"{fastlstm.get_num_threads()} threads:")
    print(f"  next-sample MSE {err:.4f} (repeating the last sample: {naive:.4f}; the floor set by the "
          f"unpredictable noise: {NOISE ** 2:.4f})")
    for name, us in lat.items():
        print(f"  {name:<20} per-step latency: median {np.median(us):6.1f} us, "
              f"p99 {np.percentile(us, 99):6.1f} us")
    if ref is not None:
        ratio = np.median(lat["torch.nn.LSTMCell"]) / np.median(lat["fastlstm LSTM.step"])
        print(f"  torch's predictions agree to {agree:.1e}; median step time torch / fastlstm = {ratio:.2f}")
    save_plot(out, "streaming", lambda axes: draw(axes, stream, jumps, preds, lat, hidden, err, naive),
              grid=(1, 2), figsize=(12, 4.2))
    return dict(mse=err, naive_mse=naive, latency_us={k: (float(np.median(v)), float(np.percentile(v, 99)))
                                                      for k, v in lat.items()},
                torch_max_abs_diff=agree if ref is not None else None)


def draw(axes, stream, jumps, preds, lat, hidden, err, naive):
    ax1, ax2 = axes
    # A window around the last frequency jump with room on both sides: how fast the model re-tunes.
    k = max([j for j in jumps if 100 <= j <= len(preds) - 200], default=100)
    t = np.arange(k - 100, min(k + 200, len(preds)))
    ax1.plot(t, stream[t + 1], ".", ms=3, color="gray", label="stream: the next sample")
    ax1.plot(t, preds[t], color="C0", label="its prediction (LSTM.step)")
    ax1.axvline(k, color="C3", ls=":", label="frequency jump")
    ax1.set(xlabel="sample", ylabel="value", title=f"Live next-sample prediction: MSE {err:.4f} "
            f"(repeat-last: {naive:.4f})")
    ax1.set_ylim(-1.3, 1.55)  # headroom for the legend
    ax1.legend(loc="upper center", ncol=3, fontsize=8)
    bins = np.geomspace(min(np.percentile(v, 0.1) for v in lat.values()) * 0.8,
                        max(np.percentile(v, 99.9) for v in lat.values()) * 1.2, 80)
    for i, (name, us) in enumerate(lat.items()):
        ax2.hist(us, bins=bins, alpha=0.6, color=f"C{i}",
                 label=f"{name}: median {np.median(us):.1f} us, p99 {np.percentile(us, 99):.1f} us")
        ax2.axvline(np.median(us), color=f"C{i}", ls="--")
    ax2.set_xscale("log")
    ax2.set(xlabel="latency per step, batch 1 (microseconds, log scale)", ylabel="steps",
            title=f"Per-step latency, H = {hidden}, {fastlstm.get_num_threads()} threads")
    ax2.legend(fontsize=8)


def main(argv=None):
    p = parser("streaming", __doc__)
    p.add_argument("--hidden", type=int, default=64, metavar="N", help="hidden size of the LSTM (default 64)")
    args = p.parse_args(argv)
    if args.quick:
        return run(hidden=args.hidden, train_steps=300, stream_len=2000, seed=args.seed, out=args.out)
    return run(hidden=args.hidden, seed=args.seed, out=args.out)


if __name__ == "__main__":
    main()
