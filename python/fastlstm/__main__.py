"""The command line: ``python -m fastlstm bench [options]`` runs the benchmark (fastlstm.bench),
``python -m fastlstm info`` prints the backends, ``python -m fastlstm --version`` the version."""

from __future__ import annotations

import json
import sys

USAGE = """usage: python -m fastlstm [--version] [--help] COMMAND [options]

commands:
  bench [options]   time fastlstm against torch, onnxruntime and the NumPy reference on this CPU
                    (python -m fastlstm bench --help lists the options and configurations)
  info              print the backends: CPU kernel family, threads, CUDA devices

options:
  --version         print fastlstm's version
  -h, --help        print this help"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command, rest = (argv[0], argv[1:]) if argv else (None, [])
    if command == "bench":
        from . import bench  # imports the optional baselines; only the bench command pays for it

        return bench.main(rest)
    if command == "info":
        import fastlstm

        print(json.dumps(fastlstm.backends(), indent=2))
        return 0
    if command in ("--version", "-V", "version"):
        import fastlstm

        print(f"fastlstm {fastlstm.__version__}")
        return 0
    if command in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    print(USAGE if command is None else f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
