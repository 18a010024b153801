"""python -m fastlstm.examples: lists the examples, one line each (what it shows, how to run it)."""

from __future__ import annotations

import importlib

EXAMPLES = ("latching", "adding", "seq2seq", "streaming")


def main() -> None:
    print("fastlstm examples, NumPy and fastlstm only (matplotlib, when installed, draws the plots):")
    for name in EXAMPLES:
        summary = importlib.import_module(f"{__package__}.{name}").__doc__.splitlines()[0]
        print(f"  {name:<10} {summary}")
    print("Run one: python -m fastlstm.examples.NAME [--quick] [--out DIR]")
    print("(--quick: a short run, seconds; --help: its options, expected result and run time)")


if __name__ == "__main__":
    main()
