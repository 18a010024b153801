"""The README's speed tables (Markdown) from a benchmark's results.json.

    python tools/speed_table.py RESULTS_JSON [--readme README.md]

Prints the tables; with --readme, puts them between the README's "<!-- speed table -->" and
"<!-- /speed table -->" lines instead (the tables of one run: ratios, not absolute times across runs).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

BEGIN, END = "<!-- speed table -->", "<!-- /speed table -->"


def _ratio(entry: dict | None) -> str:
    if not entry or entry.get("status") != "ok" or not entry.get("ratio"):
        return "-"
    return f"{entry['ratio']:.2f}x"


def _ms(ms: float) -> str:
    return f"{ms * 1e3:.1f} us" if ms < 1 else f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def fp_table(results: dict) -> list[str]:
    lines = ["| configuration | fastlstm | vs torch | vs onnxruntime | % of bound |", "|---|---|---|---|---|"]
    for row in results["rows"]:
        ours = row.get("fastlstm") or {}
        if "ms" not in ours:
            continue
        base = row.get("baselines", {})
        bound = ours.get("pct_bound")
        lines.append(f"| {row['name']}: {row['shape']} | {_ms(ours['ms'])} | {_ratio(base.get('torch'))} | "
                     f"{_ratio(base.get('onnxruntime'))} | {'-' if bound is None else f'{bound:.0f}%'} |")
    return lines


def lowp_table(results: dict) -> list[str]:
    lines = ["| configuration | fastlstm (error) | peer: its time / fastlstm's (its error) "
             "| fastlstm fp32 / fastlstm |", "|---|---|---|---|"]
    for row in results.get("low_precision_rows", []):
        if row.get("status") != "ok":
            continue
        sides = row["sides"]
        ours = sides[row["ours"]]
        peers = [f"{sides[p]['label']}: {_ratio(sides[p])} ({sides[p]['error']['max_abs']:.1e})"
                 for p in row["peers"] if sides.get(p, {}).get("status") == "ok"]
        fp32 = sides.get("fastlstm-fp32")
        emu = "" if row.get("native", True) else " (AVX2 emulation)"
        lines.append(f"| {row['name']}: {row['shape']}{emu} | {_ms(ours['ms'])} ({ours['error']['max_abs']:.1e}) | "
                     f"{'; '.join(peers) or '-'} | {_ratio(fp32)} |")
    return lines


def tables(results: dict) -> str:
    m = results["machine"]
    head = (f"Measured by `python -m fastlstm bench` on {m.get('model_name', 'this CPU')}, {m.get('cores')} cores, "
            f"kernel family {m['backends']['cpu']['isa']} (one run; ratios above 1: fastlstm is faster):")
    return "\n".join([head, ""] + fp_table(results) + [""] + lowp_table(results))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--readme")
    args = ap.parse_args(argv)
    text = tables(json.loads(Path(args.results).read_text()))
    if not args.readme:
        print(text)
        return 0
    readme = Path(args.readme)
    old = readme.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(old):
        print(f"{args.readme}: no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    readme.write_text(pattern.sub(lambda _: f"{BEGIN}\n{text}\n{END}", old))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
