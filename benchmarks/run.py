"""The developers' benchmark: the installed harness (python -m fastlstm bench, same options) with the
project's goals (goals.py here) added to its table, notes, plot and results.json.

    python benchmarks/run.py [--quick] [--only NAME[,NAME]] [--reps N] [--threads N] [--out DIR] [--no-plot]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastlstm.bench import main  # noqa: E402
from goals import Goals  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], extra=Goals(), prog="python benchmarks/run.py"))
