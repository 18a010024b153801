"""Optional third-party oracles (torch, onnxruntime, onnx): skip when missing, except where CI demands them.

In CI the oracle tests must run, not skip; CI sets FASTLSTM_REQUIRE_ORACLES=1 to make a missing
oracle a failure instead of a silent skip.
"""

from __future__ import annotations

import importlib
import os

import pytest


def require(modname: str):
    """Import and return ``modname``; skip when it is missing, fail under FASTLSTM_REQUIRE_ORACLES=1."""
    try:
        return importlib.import_module(modname)
    except ImportError as exc:
        reason = f"oracle {modname!r} is not importable ({exc})"
        if os.environ.get("FASTLSTM_REQUIRE_ORACLES") == "1":
            pytest.fail(f"{reason}; FASTLSTM_REQUIRE_ORACLES=1 requires it: pip install {modname}",
                        pytrace=False)
        pytest.skip(reason, allow_module_level=True)
