"""A/B of two fastlstm builds in one process: the benchmark's configurations through the public API, the two
builds alternating within each repetition (with a pause before each side, so neither side's thread pool is
still spinning), medians over repetitions, and their ratio.

    python tools/ab.py DIR_OF_OTHER_BUILD [--reps 7] [--only b1-h128,bi2] [--precision bf16]

DIR_OF_OTHER_BUILD holds an installed fastlstm package copied under the name fastlstm_before (e.g.
`cp -r <site-packages>/fastlstm /tmp/ab/fastlstm_before`); its relative imports keep it self-contained. The
other side is the fastlstm this Python imports. Both must agree on the outputs before anything is timed.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time

import numpy as np

CASES = {  # name: (T, B, H, layers, bidirectional, kind) with I = H, as the benchmark's rows
    "b1-h128": (100, 1, 128, 1, False, "infer"),
    "b1-h512": (100, 1, 512, 1, False, "infer"),
    "b16-h256": (100, 16, 256, 1, False, "infer"),
    "b16-h512": (100, 16, 512, 1, False, "infer"),
    "b64-h512": (100, 64, 512, 1, False, "infer"),
    "b256-h1024": (50, 256, 1024, 1, False, "infer"),
    "step-b1-h256": (1, 1, 256, 1, False, "step"),
    "lengths": (200, 64, 256, 1, False, "lengths"),
    "bi2": (100, 32, 256, 2, True, "infer"),
    "train-b16-h256": (100, 16, 256, 1, False, "train"),
    "train-b64-h512": (100, 64, 512, 1, False, "train"),
    "train-bi2": (100, 32, 256, 2, True, "train"),
}


def make_call(mod, name: str, precision: str | None = None):
    T, B, H, L, bi, kind = CASES[name]
    rng = np.random.default_rng(0)
    m = mod.LSTM(H, H, L, bidirectional=bi, seed=1, precision=precision)
    x = rng.standard_normal((T, B, H), dtype=np.float32)
    lengths = rng.integers(20, T + 1, size=B) if kind == "lengths" else None
    if kind == "step":
        x1 = x[0]
        state = m.step(x1)[1]

        def call():  # 200 steps per timed call: a step is microseconds
            s = state
            for _ in range(200):
                out, s = m.step(x1, s)
            return out
    elif kind == "train":
        dy = np.ones((T, B, (2 if bi else 1) * H), np.float32)

        def call():
            m(x, train=True)
            return m.backward(dy)[0]
    else:
        def call():
            return m(x, lengths=lengths)[0]
    return call


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("other")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--only", default="")
    p.add_argument("--precision", default=None, help="bf16 or int8 (default: the dtype's own)")
    args = p.parse_args(argv)
    sys.path.insert(0, args.other)
    before = importlib.import_module("fastlstm_before")
    import fastlstm as after

    names = [n for n in CASES if not args.only or n in args.only.split(",")]
    print(f"{'config':16s} {'before':>10s} {'after':>10s} {'after/before speed':>20s}")
    for name in names:
        calls = {k: make_call(mod, name, args.precision) for k, mod in (("before", before), ("after", after))}
        outs = {k: c() for k, c in calls.items()}
        if not np.array_equal(outs["before"], outs["after"]):
            print(f"{name}: outputs differ (max {np.max(np.abs(outs['before'] - outs['after'])):.3g})")
            return 1
        times = {k: [] for k in calls}
        for _ in range(args.reps):
            for k, c in calls.items():
                time.sleep(0.3)  # the other side's workers stop spinning
                c()  # one untimed call: wakes this side's workers
                t0 = time.perf_counter()
                c()
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["before"] / med["after"]
        print(f"{name:16s} {med['before'] * 1e3:9.2f}ms {med['after'] * 1e3:9.2f}ms {ratio:19.3f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
