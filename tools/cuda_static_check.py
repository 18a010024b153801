#!/usr/bin/env python3
"""Static checks of the CUDA build, no GPU needed (docs/cuda.md, "Static checks").

1. Every CUDA source of the library compiles for the shipped architectures with warnings and spills as
   errors: nvcc -Werror all-warnings -Xptxas -v,-warn-spills,-warn-lmem-usage,-Werror.
2. Per kernel and architecture, ptxas's resources against the budget its plan asks for (emu_budgets):
   registers x threads per block <= 64 K, static + dynamic shared memory <= 163 KiB (sm_80) / 227 KiB (sm_90).
   Every kernel of the library must have a budget.
3. SASS asserts (cuobjdump -sass): no local memory (LDL / STL) in any library kernel, the tensor-core rules
   below, and a self-test kernel (cuda/testing/sass/selftest.cu) whose SASS must show HMMA, LDSM and LDGSTS
   on sm_80 and sm_90a, proving that the asserts see what they look for.

Usage: cuda_static_check.py --budgets budgets.json [--cuobjdump PATH] [--work DIR] [--jobs N]
Exit status 0 when every check passes; the report is printed either way.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The library's CUDA sources and architectures (as CMakeLists.txt builds them).
LIBRARY_SOURCES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cuda").glob("*/*.cu") if "testing" not in p.parts)
LIBRARY_ARCHS = ["80", "90"]
SELFTEST_SOURCE = "cuda/testing/sass/selftest.cu"
SELFTEST_ARCHS = ["80", "90a"]
# Must show local memory (compiled without the local-memory warning): the LDL / STL assert's own self-test.
LOCAL_SELFTEST_SOURCE = "cuda/testing/sass/local_memory.cu"
# tools/gpu_check.sh's GPU programs: compiled here too (warnings as errors), so the one-shot GPU run never
# meets a compile error. Not budgeted (test kernels).
GPU_TOOL_SOURCES = [("cuda/testing/probe/probe.cpp", ["-x", "cu"]), ("cuda/testing/gpu/gpu_cell.cu", [])]

# Shared memory per block (static + dynamic, opt-in maximum) and registers per SM, per architecture.
SMEM_LIMIT = {"80": 163 * 1024, "90": 227 * 1024, "90a": 227 * 1024}
REGS_PER_SM = 65536

# Instruction asserts: (kernel regex on the mangled name, required SASS regex, why). Empty-safe: a rule whose
# kernels do not exist yet is reported as "no kernel yet" and passes. The bf16 / fp16 engine kernels add theirs.
TENSOR_CORE_RULES: list[tuple[str, str, str]] = [
    (r"_bf16|bf16_", r"\bHMMA\.\d+\.F32\.BF16\b", "bf16 kernels must use the tensor cores"),
    (r"_f16|f16_|_fp16", r"\bHMMA\.\d+\.F32\b", "fp16 kernels must use the tensor cores"),
    (r"input_proj_mma_kernel", r"\bHMMA\.\d+\.F32\b", "the tensor-core input projection must use the tensor cores"),
    (r"recurrence_kernelILNS\d+_7OperandE[123]", r"\bHMMA\.\d+\.F32\b",
     "the tf32 / bf16 / fp16 recurrence must run its step GEMM on the tensor cores"),
    (r"recurrence_backward_kernelILNS\d+_7OperandE[123]", r"\bHMMA\.\d+\.F32\b",
     "the tf32 / bf16 / fp16 backward recurrence must run dh = dz W_hh on the tensor cores"),
    (r"(outer|input)_grad_kernelILNS\d+_7OperandE[123]", r"\bHMMA\.\d+\.F32\b",
     "the tf32 / bf16 / fp16 weight and input gradients must run on the tensor cores"),
]
# Library kernels allowed to use local memory (none: a stack array or spill in a hot kernel is a bug).
LOCAL_MEMORY_EXEMPT: list[str] = []
# What the self-test kernel's SASS must contain, per architecture.
SELFTEST_RULES = [
    (r"\bHMMA\.16816\.F32\.BF16\b", "mma.sync m16n8k16 bf16"),
    (r"\bHMMA\.16816\.F32\b", "mma.sync m16n8k16 f16"),
    (r"\bHMMA\.1688\.F32\.TF32\b", "mma.sync m16n8k8 tf32"),
    (r"\bLDSM\.16\.M88\.4\b", "ldmatrix x4"),
    (r"\bLDGSTS\b", "cp.async"),
]


@dataclass
class Kernel:
    name: str
    arch: str
    registers: int = 0
    smem: int = 0
    stack: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    sass: list[str] = field(default_factory=list)


def find_tool(name: str, given: str | None = None) -> str | None:
    """PATH first, then the pip packages nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm (13.x reads nvcc 13.0's
    objects); cuobjdump -sass runs nvdisasm, which it looks for on PATH or NVDISASM_PATH."""
    if given:
        return given
    found = shutil.which(name)
    if found:
        return found
    try:
        import nvidia  # noqa: PLC0415

        for base in nvidia.__path__:
            for cand in Path(base).glob(f"*/bin/{name}"):
                return str(cand)
    except ImportError:
        pass
    return None


def gencodes(archs: list[str]) -> list[str]:
    return [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]


@dataclass
class Job:
    src: str
    archs: list[str]
    out: Path
    library: bool = False  # kernels need a budget and may not use local memory
    extra: list[str] = field(default_factory=list)
    ptxas: str = "-v,-warn-spills,-warn-lmem-usage,-Werror"


def compile_one(job: Job) -> tuple[Job, int, str]:
    cmd = [
        "nvcc", "-std=c++20", "-c", "-Icuda", "-Icuda/include", "-Icsrc/include", "-Icuda/testing",
        *gencodes(job.archs),
        "-Werror", "all-warnings", "-Xptxas", job.ptxas, *job.extra, "-o", str(job.out), job.src,
    ]  # fmt: skip
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return job, p.returncode, p.stdout + p.stderr


PTXAS_ENTRY = re.compile(r"Compiling entry function '([^']+)' for 'sm_(\w+)'")
PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
PTXAS_USED = re.compile(r"Used (\d+) registers(?:.*?, (\d+) bytes smem)?")


def parse_ptxas(log: str) -> list[Kernel]:
    kernels: list[Kernel] = []
    cur: Kernel | None = None
    for line in log.splitlines():
        if m := PTXAS_ENTRY.search(line):
            cur = Kernel(m.group(1), m.group(2))
            kernels.append(cur)
        elif cur and (m := PTXAS_FRAME.search(line)):
            cur.stack, cur.spill_stores, cur.spill_loads = (int(g) for g in m.groups())
        elif cur and (m := PTXAS_USED.search(line)):
            cur.registers = int(m.group(1))
            cur.smem = int(m.group(2) or 0)
    return kernels


def parse_sass(text: str) -> dict[tuple[str, str], list[str]]:
    """(function, arch) -> its SASS lines, from cuobjdump -sass."""
    out: dict[tuple[str, str], list[str]] = {}
    arch, func = "", None
    for line in text.splitlines():
        if m := re.match(r"\s*arch = sm_(\w+)", line):
            arch, func = m.group(1), None
        elif m := re.match(r"\s*Function : (\S+)", line):
            func = m.group(1)
            out[(func, arch)] = []
        elif func and re.match(r"\s*/\*[0-9a-f]{4,}\*/", line):
            out[(func, arch)].append(line.strip())
    return out


def demangle(names: list[str]) -> dict[str, str]:
    if not names or not shutil.which("c++filt"):
        return {n: n for n in names}
    p = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    return dict(zip(names, p.stdout.splitlines(), strict=False)) if p.returncode == 0 else {n: n for n in names}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", required=True, help="JSON from cuda/testing emu_budgets")
    ap.add_argument("--cuobjdump", help="cuobjdump binary (default: PATH, then the nvidia-cuda-cuobjdump package)")
    ap.add_argument("--work", help="folder for the objects (default: a temporary one)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    budgets = json.loads(Path(args.budgets).read_text())
    work = Path(args.work or tempfile.mkdtemp(prefix="cuda_static_"))
    work.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    notes: list[str] = []

    # 1. Compile, warnings and spills as errors.
    jobs = [Job(s, LIBRARY_ARCHS, work / (Path(s).stem + ".o"), library=True) for s in LIBRARY_SOURCES]
    jobs.append(Job(SELFTEST_SOURCE, SELFTEST_ARCHS, work / "selftest.o"))
    jobs.append(Job(LOCAL_SELFTEST_SOURCE, ["80"], work / "local_memory.o", ptxas="-v"))
    jobs += [Job(s, ["90"], work / (Path(s).stem + "_tool.o"), extra=x) for s, x in GPU_TOOL_SOURCES]
    kernels: list[tuple[Kernel, bool]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for job, rc, log in pool.map(compile_one, jobs):
            if rc != 0:
                failures.append(f"{job.src}: nvcc failed (warnings and spills are errors)\n{log}")
            kernels += [(k, job.library) for k in parse_ptxas(log) if "local_memory_selftest" not in k.name]
    print(f"compiled {len(jobs)} sources with -Werror all-warnings, ptxas -warn-spills -warn-lmem-usage -Werror: "
          f"the library for sm_{', sm_'.join(LIBRARY_ARCHS)}, "
          f"the SASS self-test for sm_{', sm_'.join(SELFTEST_ARCHS)}, "
          "the GPU check's programs for sm_90")

    # 2. Resources against the plans' budgets.
    names = demangle(sorted({k.name for k, _ in kernels}))
    def short(name: str) -> str:
        return names[name].replace("fastlstm::cuda::", "").replace("unsigned ", "u")[:70]

    print(f"\n{'kernel':<70} {'arch':>5} {'regs':>5} {'threads':>7} {'regs*thr':>8} {'smem':>7} {'dyn':>7} "
          f"{'stack':>5} {'spill':>5}")
    for k, lib in sorted(kernels, key=lambda x: (names[x[0].name], x[0].arch)):
        budget = next((b for b in budgets if b["kernel"] in k.name), None)
        if lib and budget is None:
            failures.append(f"{names[k.name]}: no budget (add its plan to cuda/testing/budgets.cpp)")
        threads = budget["threads"] if budget else 32
        dyn = budget["dynamic_smem"][k.arch.rstrip("a")] if budget else 0  # the plan on that architecture's device
        print(f"{short(k.name):<70} {k.arch:>5} {k.registers:>5} {threads:>7} {k.registers * threads:>8} "
              f"{k.smem:>7} {dyn:>7} {k.stack:>5} {k.spill_stores + k.spill_loads:>5}")
        if k.registers * threads > REGS_PER_SM:
            failures.append(f"{names[k.name]} sm_{k.arch}: {k.registers} registers x {threads} threads > 64 K")
        if k.smem + dyn > SMEM_LIMIT[k.arch]:
            failures.append(f"{names[k.name]} sm_{k.arch}: {k.smem} + {dyn} bytes of shared memory > "
                            f"{SMEM_LIMIT[k.arch]} (the sm_{k.arch} limit per block)")
        if k.spill_stores or k.spill_loads:
            failures.append(
                f"{names[k.name]} sm_{k.arch}: spills ({k.spill_stores} B stored, {k.spill_loads} B loaded)"
            )

    # 3. SASS.
    cuobjdump, nvdisasm = find_tool("cuobjdump", args.cuobjdump), find_tool("nvdisasm")
    env = dict(os.environ)
    if nvdisasm:
        env["PATH"] = f"{Path(nvdisasm).parent}{os.pathsep}{env.get('PATH', '')}"
    if cuobjdump is None or nvdisasm is None:
        failures.append("cuobjdump / nvdisasm not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm): "
                        "the SASS asserts cannot run")
    else:
        sass: dict[tuple[str, str], list[str]] = {}
        for job in jobs:
            if job.out.exists():
                p = subprocess.run([cuobjdump, "-sass", str(job.out)], capture_output=True, text=True, env=env)
                if p.returncode != 0:
                    failures.append(f"cuobjdump -sass {job.out.name} failed: {p.stderr.strip()}")
                sass.update(parse_sass(p.stdout))
        lib_names = {k.name for k, lib in kernels if lib}
        for (func, arch), lines in sorted(sass.items()):
            if func not in lib_names:
                continue
            local = [ln for ln in lines if re.search(r"\b(LDL|STL)\b", ln)]
            if local and not any(re.search(p, func) for p in LOCAL_MEMORY_EXEMPT):
                failures.append(f"{names.get(func, func)} sm_{arch}: local memory in SASS: {local[0]}")
        for kpat, ipat, why in TENSOR_CORE_RULES:
            hits = [(f, a) for (f, a) in sass if f in lib_names and re.search(kpat, f)]
            if not hits:
                notes.append(f"rule '{kpat}' -> '{ipat}': no kernel yet")
            for f, a in hits:
                if not any(re.search(ipat, ln) for ln in sass[(f, a)]):
                    failures.append(f"{names.get(f, f)} sm_{a}: {why} (no {ipat} in its SASS)")
        local_self = [ln for (f, _), lines in sass.items() if "local_memory_selftest" in f for ln in lines]
        if not any(re.search(r"\b(LDL|STL)\b", ln) for ln in local_self):
            failures.append("local-memory self-test: no LDL / STL found, so the local-memory assert would be blind")
        self_keys = [(f, a) for (f, a) in sass if "tensor_core_selftest" in f]
        if sorted(a for _, a in self_keys) != sorted(SELFTEST_ARCHS):
            failures.append(f"self-test kernel SASS missing for some of sm_{SELFTEST_ARCHS}: found {self_keys}")
        for f, a in self_keys:
            for ipat, what in SELFTEST_RULES:
                if not any(re.search(ipat, ln) for ln in sass[(f, a)]):
                    failures.append(f"self-test sm_{a}: no {ipat} ({what}): the SASS asserts would be blind")
        print(f"\nSASS ({Path(cuobjdump).name}): {len(sass)} functions; no LDL/STL in the library's kernels "
              "(the local-memory self-test shows them); the self-test shows "
              f"{', '.join(w for _, w in SELFTEST_RULES)} on sm_{' and sm_'.join(SELFTEST_ARCHS)}")
    for n in notes:
        print(f"note: {n}")
    if failures:
        print("\nFAILED:\n" + "\n".join(f"  - {f}" for f in failures))
        return 1
    print("\nstatic checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
