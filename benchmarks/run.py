"""Runs the fastlstm benchmark; the same code as ``python -m fastlstm bench`` (see README.md here)."""

import sys

from fastlstm._bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
