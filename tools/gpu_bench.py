#!/usr/bin/env python3
"""The GPU benchmark rows of tools/gpu_check.sh, timed with CUDA events, written as one JSON file.

Rows today: the fused cell kernel (cuda/testing/gpu/gpu_cell.cu, kernel time alone) and, when torch with CUDA
is importable, torch's eager elementwise equivalent on the same shapes; the sequence engine's inference
(fastlstm.LSTM(device="cuda"), numpy in and out) against torch.nn.LSTM on CUDA (cuDNN) in fp32 and fp16, both
timed from numpy to numpy (host copies included on both sides), and both sides' device-only time with CUDA
events (fastlstm on torch CUDA tensors through DLPack);
and the same for training (forward + backward: fastlstm's train=True call and backward, torch's autograd) on
T=1024 B=16 H=768 and DeepBench-style shapes (T=25). A row family is a function in ROWS (it gets the arguments
and returns a list of dicts); the JSON is rewritten after each family, so a stage that runs out of time keeps
the rows done.

Usage: gpu_bench.py --driver PATH/gpu_cell --out bench.json [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from collections.abc import Callable


def cell_rows(args: argparse.Namespace) -> list[dict]:
    p = subprocess.run([args.driver, "bench", str(args.repeats)], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def _torch_cuda(row: str):
    """(torch, None) when torch runs on a GPU here, else (None, the skipped row)."""
    try:
        import torch
    except ImportError:
        return None, [{"row": row, "impl": "torch", "skipped": "torch not importable"}]
    if not torch.cuda.is_available():
        return None, [{"row": row, "impl": "torch", "skipped": "torch has no CUDA device"}]
    return torch, None


def torch_cell_rows(args: argparse.Namespace) -> list[dict]:
    """torch eager on the same shapes and data layout: the reference point a fused kernel must beat."""
    torch, skipped = _torch_cuda("cell_forward_f32")
    if skipped:
        return skipped
    rows = []
    for B, H in [(64, 1024), (256, 4096), (4096, 4096), (16384, 8192)]:
        g = torch.Generator(device="cuda").manual_seed(7)
        z = torch.randn(B, 4 * H, device="cuda", generator=g)
        c = torch.randn(B, H, device="cuda", generator=g)

        def step(z=z, c=c):
            i, f, gg, o = z.chunk(4, 1)
            c2 = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
            return torch.sigmoid(o) * torch.tanh(c2), c2

        for _ in range(5):
            step()
        times = []
        for _ in range(args.repeats):
            t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0.record()
            for _ in range(20):
                step()
            t1.record()
            t1.synchronize()
            times.append(t0.elapsed_time(t1) / 20)
        times.sort()
        med = times[len(times) // 2]
        rows.append({"row": "cell_forward_f32", "impl": "torch-eager", "B": B, "H": H, "peephole": False,
                     "median_us": round(med * 1e3, 3), "min_us": round(times[0] * 1e3, 3),
                     "GBps": round(28 * B * H / (med * 1e-3) / 1e9, 1), "repeats": args.repeats,
                     "torch": torch.__version__})  # fmt: skip
    return rows


SEQ_SHAPES = [(100, 1, 256), (100, 16, 512), (100, 64, 1024), (1024, 16, 768), (50, 256, 1024)]  # T, B, H (I = H)


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    import time

    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2], times[0]


def _device_only_ms(torch, fn, repeats: int) -> float:
    """The median of `repeats` calls of fn timed with CUDA events: device time only."""
    times = []
    for _ in range(repeats):
        t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0.record()
        fn()
        t1.record()
        t1.synchronize()
        times.append(t0.elapsed_time(t1))
    times.sort()
    return times[len(times) // 2]


def sequence_rows(args: argparse.Namespace) -> list[dict]:
    import numpy as np

    import fastlstm

    rows = []
    for T, B, H in SEQ_SHAPES:
        x = np.random.default_rng(1).standard_normal((T, B, H)).astype(np.float32)
        for precision in (None, "bf16"):
            m = fastlstm.LSTM(H, H, device="cuda", precision=precision, seed=1)
            med, best = _median_ms(lambda m=m, x=x: m(x), args.repeats)
            row = {"row": f"lstm-T{T}-B{B}-H{H}", "impl": f"fastlstm-{precision or 'fp32'}", "median_ms":
                   round(med, 4), "min_ms": round(best, 4), "numpy_to_numpy": True}  # fmt: skip
            rows.append(_with_device_only(row, args, lambda xd, m=m: m(xd), x))
    return rows


def _with_device_only(row: dict, args: argparse.Namespace, fn, *arrays) -> dict:
    """The row with fastlstm's device-only time (fn on torch CUDA tensors of `arrays`, CUDA events) when torch
    runs on the GPU: the number to hold against cuDNN's device-only time and the goals."""
    torch, skipped = _torch_cuda(row["row"])
    if not skipped:
        tensors = [torch.from_numpy(a).cuda() for a in arrays]
        row["device_only_median_ms"] = round(_device_only_ms(torch, lambda: fn(*tensors), args.repeats), 4)
    return row


def torch_sequence_rows(args: argparse.Namespace) -> list[dict]:
    torch, skipped = _torch_cuda("lstm")
    if skipped:
        return skipped
    import numpy as np

    rows = []
    for T, B, H in SEQ_SHAPES:
        x = np.random.default_rng(1).standard_normal((T, B, H)).astype(np.float32)
        for dt in (torch.float32, torch.float16):
            lstm = torch.nn.LSTM(H, H).cuda().to(dt)
            xd = torch.from_numpy(x).cuda().to(dt)
            with torch.no_grad():
                def call(lstm=lstm, x=x, dt=dt):
                    return lstm(torch.from_numpy(x).cuda().to(dt))[0].float().cpu().numpy()

                med, best = _median_ms(call, args.repeats)
                device_ms = _device_only_ms(torch, lambda lstm=lstm, xd=xd: lstm(xd), args.repeats)
            name = "fp32" if dt == torch.float32 else "fp16"
            rows.append({"row": f"lstm-T{T}-B{B}-H{H}", "impl": f"torch-cudnn-{name}", "median_ms": round(med, 4),
                         "min_ms": round(best, 4), "numpy_to_numpy": True,
                         "device_only_median_ms": round(device_ms, 4), "torch": torch.__version__})  # fmt: skip
    return rows


TRAIN_SHAPES = [(1024, 16, 768), (25, 16, 512), (25, 64, 1024), (25, 128, 2048)]  # T, B, H (I = H)


def training_rows(args: argparse.Namespace) -> list[dict]:
    import numpy as np

    import fastlstm

    rows = []
    for T, B, H in TRAIN_SHAPES:
        rng = np.random.default_rng(1)
        x = rng.standard_normal((T, B, H)).astype(np.float32)
        dy = rng.standard_normal((T, B, H)).astype(np.float32)
        for precision in (None, "bf16"):
            m = fastlstm.LSTM(H, H, device="cuda", precision=precision, seed=1)

            def call(m=m, x=x, dy=dy):
                m(x, train=True)
                return m.backward(dy)

            med, best = _median_ms(call, max(3, args.repeats // 3))
            row = {"row": f"train-T{T}-B{B}-H{H}", "impl": f"fastlstm-{precision or 'fp32'}",
                   "median_ms": round(med, 4), "min_ms": round(best, 4), "numpy_to_numpy": True}  # fmt: skip
            rows.append(_with_device_only(row, args, lambda xd, dyd, call=call: call(x=xd, dy=dyd), x, dy))
    return rows


def torch_training_rows(args: argparse.Namespace) -> list[dict]:
    """torch.nn.LSTM forward + backward with autograd on CUDA (cuDNN), from numpy (x, dy) to numpy (dx and the
    weight gradients), and device-only with CUDA events."""
    torch, skipped = _torch_cuda("train")
    if skipped:
        return skipped
    import numpy as np

    rows = []
    for T, B, H in TRAIN_SHAPES:
        rng = np.random.default_rng(1)
        x = rng.standard_normal((T, B, H)).astype(np.float32)
        dy = rng.standard_normal((T, B, H)).astype(np.float32)
        for dt in (torch.float32, torch.float16):
            lstm = torch.nn.LSTM(H, H).cuda().to(dt)

            def step(xd, dyd, lstm=lstm):
                xd.requires_grad_(True)
                lstm.zero_grad(set_to_none=True)
                lstm(xd)[0].backward(dyd)
                return xd.grad

            def call(lstm=lstm, dt=dt, step=step, x=x, dy=dy):
                dx = step(torch.from_numpy(x).cuda().to(dt), torch.from_numpy(dy).cuda().to(dt))
                return dx.float().cpu().numpy(), [p.grad.float().cpu().numpy() for p in lstm.parameters()]

            med, best = _median_ms(call, max(3, args.repeats // 3))
            xd, dyd = torch.from_numpy(x).cuda().to(dt), torch.from_numpy(dy).cuda().to(dt)
            device_ms = _device_only_ms(torch, lambda step=step, xd=xd, dyd=dyd: step(xd.detach(), dyd),
                                        max(3, args.repeats // 3))
            name = "fp32" if dt == torch.float32 else "fp16"
            rows.append({"row": f"train-T{T}-B{B}-H{H}", "impl": f"torch-cudnn-{name}", "median_ms": round(med, 4),
                         "min_ms": round(best, 4), "numpy_to_numpy": True,
                         "device_only_median_ms": round(device_ms, 4), "torch": torch.__version__})  # fmt: skip
    return rows


# The extension point: each function returns rows (dicts with at least "row" and "impl").
ROWS: list[Callable[[argparse.Namespace], list[dict]]] = [cell_rows, torch_cell_rows, sequence_rows,
                                                          torch_sequence_rows, training_rows, torch_training_rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    query = ["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.mem", "--format=csv,noheader"]
    try:
        gpu = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    except OSError as e:
        gpu = repr(e)
    rows: list[dict] = []
    for fn in ROWS:
        try:
            rows += fn(args)
        except Exception as e:  # one failing row family must not lose the others
            rows.append({"row": fn.__name__, "error": repr(e)})
        doc = {"host": platform.node(), "gpu": gpu, "python": sys.version.split()[0], "rows": rows}
        with open(args.out, "w") as f:  # after each family: a stage cut short keeps what is done
            json.dump(doc, f, indent=1)
    for r in rows:
        if "median_ms" in r:
            print(f"{r['row']:<24} {r['impl']:<20} {r['median_ms']:10.4f} ms (numpy to numpy)"
                  + (f", device only {r['device_only_median_ms']:.4f} ms" if "device_only_median_ms" in r else ""))
        elif "median_us" in r:
            print(f"{r['row']:<18} {r['impl']:<12} B={r['B']:<6} H={r['H']:<5} peep={r['peephole']!s:<5} "
                  f"{r['median_us']:9.2f} us {r['GBps']:7.1f} GB/s")  # fmt: skip
        else:
            print(r)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
