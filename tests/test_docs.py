"""What a new user reads works as written: the README's code blocks run as they stand (in a fresh process), every
public callable's help() names its arguments, no product text cites a file outside the repository, the
compiled module's type stub is complete, and the environment variables are checked."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastlstm
from fastlstm import _core, convert, functional, reference

ROOT = Path(__file__).resolve().parents[1]


def _blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.S)


def _run(code: str, tmp_path, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=env)


def test_readme_quickstart_runs_as_written(tmp_path):
    first, *rest = _blocks("Quickstart")
    assert "torch" not in first  # the first block needs only the README's install
    out = _run(first, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:4] == ["(100,", "16,", "512)", "(1024,"]


def test_readme_torch_block_runs_as_written(tmp_path):
    from oracles import require

    require("torch")
    (block,) = _blocks("Quickstart")[1:]
    out = _run(block + "\nprint(tuple(y.shape), tuple(h_n.shape))\n", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("(16, 100, 512) (4, 16, 256)")


def _public_callables():
    yield fastlstm.LSTM
    for name in ("__call__", "backward", "step", "state_dict", "load_state_dict", "packed"):
        yield getattr(fastlstm.LSTM, name)
    yield fastlstm.Config
    yield fastlstm.Config.dropout_masks
    for module in (fastlstm, functional, convert):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not inspect.ismodule(obj):
                yield obj
    yield reference.forward
    yield reference.backward


def test_every_public_callable_explains_its_arguments():
    for obj in _public_callables():
        doc = inspect.getdoc(obj) or ""
        name = getattr(obj, "__qualname__", repr(obj))
        assert len(doc) >= 60, f"{name}: no real docstring"
        target = obj.__init__ if inspect.isclass(obj) else obj
        try:
            params = [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
        except (TypeError, ValueError):
            continue
        missing = [p for p in params if p not in doc]
        assert not missing, f"{name}: the docstring does not mention {missing}"


def test_no_product_text_cites_files_outside_the_repository():
    cited = re.compile(r"\b(API|DESIGN|BENCHMARKS)\.md\b|\.\./shared")
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "python").rglob("*.py"),
             *(ROOT / "csrc").rglob("*.[ch]*"), *(ROOT / "cuda").rglob("*.*")]
    offenders = [str(f.relative_to(ROOT)) for f in files if f.is_file() and cited.search(f.read_text(errors="ignore"))]
    assert not offenders


def test_the_compiled_module_stub_is_complete():
    stub = ast.parse((Path(fastlstm.__file__).parent / "_core.pyi").read_text())
    declared = {n.name for n in stub.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    declared |= {n.target.id for n in stub.body if isinstance(n, ast.AnnAssign)}
    actual = {n for n in dir(_core) if not n.startswith("__")}
    assert actual <= declared, actual - declared
    cuda_only = {"cuda_devices", "cuda_cell_forward", "cuda_engine", "cuda_forward", "cuda_forward_dlpack",
                 "cuda_forward_train", "cuda_backward", "cuda_forward_train_dlpack", "cuda_saved_view",
                 "cuda_backward_dlpack"}
    assert declared - actual <= cuda_only


@pytest.mark.parametrize("value,warns", [("abc", True), ("0", True), ("3", False)])
def test_num_threads_from_the_environment(tmp_path, value, warns):
    env = dict(os.environ, FASTLSTM_NUM_THREADS=value)
    out = _run("import warnings, fastlstm; print(fastlstm.get_num_threads())", tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert ("FASTLSTM_NUM_THREADS" in out.stderr) == warns, out.stderr
    if not warns:
        assert out.stdout.strip() == value


def test_readme_speed_section_is_a_measured_table(tmp_path):
    """The Speed section holds tables generated from a benchmark run (tools/speed_table.py), not a placeholder;
    the generator writes the block it finds and refuses a README without one."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import speed_table
    finally:
        sys.path.pop(0)
    speed = (ROOT / "README.md").read_text().split("## Speed\n", 1)[1].split("\n## ", 1)[0]
    block = speed.split(speed_table.BEGIN, 1)[1].split(speed_table.END, 1)[0]
    assert "| configuration | fastlstm | vs torch |" in block and "SPEED_TABLE" not in block
    assert re.search(r"\| b16-h256: .* \| \d+\.\d\dx \|", block)
    results = {"machine": {"model_name": "CPU X", "cores": 2, "backends": {"cpu": {"isa": "avx2"}}},
               "rows": [{"name": "r1", "shape": "T=1", "fastlstm": {"ms": 2.0, "pct_bound": 80.0},
                         "baselines": {"torch": {"status": "ok", "ratio": 1.5}}}],
               "low_precision_rows": [{"name": "q", "shape": "T=2", "status": "ok", "ours": "a", "peers": ["b"],
                                       "native": False,
                                       "sides": {"a": {"ms": 1.0, "error": {"max_abs": 1e-3}},
                                                 "b": {"status": "ok", "label": "B", "ratio": 2.0,
                                                       "error": {"max_abs": 2e-3}}}}]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{speed_table.BEGIN}\nold\n{speed_table.END}\nrest\n")
    assert speed_table.main([str(tmp_path / "results.json"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and "| r1: T=1 | 2.00 ms | 1.50x | - | 80% |" in text and text.endswith("rest\n")
    assert "| q: T=2 (AVX2 emulation) | 1.00 ms (1.0e-03) | B: 2.00x (2.0e-03) | - |" in text
    readme.write_text("# no block\n")
    assert speed_table.main([str(tmp_path / "results.json"), "--readme", str(readme)]) == 1
