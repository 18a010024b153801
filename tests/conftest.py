"""Shared fixtures: seeded randomness, the kernel-family (ISA) parametrisation, tolerances."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastlstm
from fastlstm import _runtime

ISAS = _runtime.available_isas()  # every family built AND runnable on this host runs the suite


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: fresh inputs per test, the same on every run."""
    seed = zlib.crc32(request.node.nodeid.encode())  # str hash() differs per process
    return np.random.default_rng(seed)


@pytest.fixture(params=ISAS)
def isa(request):
    """Selects one CPU kernel family for the test, restoring the previous one afterwards."""
    previous = _runtime.selected_isa()
    _runtime._set_isa(request.param)
    yield request.param
    _runtime._set_isa(previous)


@pytest.fixture
def threads():
    """Restores the engine's thread count after a test that changes it."""
    previous = fastlstm.get_num_threads()
    yield
    fastlstm.set_num_threads(previous)


def pytest_configure(config):
    """The suite's marks, registered here too, so the tests run from a copy without pyproject.toml (the
    sanitizer build runs them that way)."""
    config.addinivalue_line("markers", "slow: long-running checks (still run in CI)")


def pytest_terminal_summary(terminalreporter):
    """The fuzzers' counts (tests/test_reliability.py), so a CI log says how many cases ran."""
    import sys

    counts = getattr(sys.modules.get("test_reliability"), "FUZZ_COUNTS", None)
    if counts:
        terminalreporter.write_sep("-", "fuzzing")
        for what, n in counts.items():
            terminalreporter.write_line(f"{n:6d} {what}")
