"""The configurations the benchmark times: shapes, and the work each call does (FLOPs, weight bytes). Two
tables: CASES in float32 (input size = H) and LOWP_CASES in a low precision (bf16, int8), each side of which
is also measured for its error against the float64 reference."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = {
    "infer": "inference over the whole sequence",
    "step": "one step per call, from Python (streaming; torch: LSTMCell)",
    "lengths": "inference, each sequence's length uniform in 20..T (torch: a packed sequence)",
    "train": "forward + backward (torch: autograd)",
}


@dataclass(frozen=True)
class Case:
    """One configuration: T steps, batch B, hidden size H (input size I = H), float32."""

    name: str
    T: int
    B: int
    H: int  # I = H
    layers: int = 1
    bidirectional: bool = False
    kind: str = "infer"  # a key of KINDS

    def shape(self) -> str:
        """The configuration in words, e.g. "T=100 B=1 H=128" or "2 layers, bidirectional"."""
        parts = [" ".join(["T=1" if self.kind == "step" else f"T={self.T}", f"B={self.B}", f"H={self.H}"])]
        if self.layers > 1:
            parts.append(f"{self.layers} layers")
        if self.bidirectional:
            parts.append("bidirectional")
        return ", ".join(parts) + f": {KINDS[self.kind].replace('..T', f'..{self.T}')}"


CASES = [
    Case("b1-h128", 100, 1, 128),
    Case("b1-h512", 100, 1, 512),
    Case("b16-h256", 100, 16, 256),
    Case("b64-h512", 100, 64, 512),
    Case("b256-h1024", 50, 256, 1024),
    Case("step-b1-h256", 1, 1, 256, kind="step"),
    Case("lengths", 200, 64, 256, kind="lengths"),
    Case("bi2", 100, 32, 256, layers=2, bidirectional=True),
    Case("train-b16-h256", 100, 16, 256, kind="train"),
    Case("train-b64-h512", 100, 64, 512, kind="train"),
    Case("train-bi2", 100, 32, 256, layers=2, bidirectional=True, kind="train"),
]



@dataclass(frozen=True)
class LowpCase:
    """One configuration of the low-precision table: T steps, batch B, input size I, hidden size H, one
    layer, in `precision` ("bf16" or "int8"; fastlstm.LSTM's precision argument)."""

    name: str
    precision: str
    T: int
    B: int
    I: int
    H: int
    kind: str = "infer"  # "infer", "train" or "step": a key of KINDS

    def shape(self) -> str:
        """The configuration in words, e.g. "T=100 B=16 I=256 H=512: int8 inference over the whole sequence"."""
        kind = "one step per call, from Python" if self.kind == "step" else KINDS[self.kind].split(" (")[0]
        return f"{'T=1' if self.kind == 'step' else f'T={self.T}'} B={self.B} I={self.I} H={self.H}: " \
               f"{self.precision} {kind}"


LOWP_CASES = [
    LowpCase("bf16-b16-h512", "bf16", 100, 16, 256, 512),
    LowpCase("bf16-b64-h512", "bf16", 100, 64, 512, 512),
    LowpCase("bf16-train-b16-h256", "bf16", 100, 16, 256, 256, kind="train"),
    LowpCase("int8-b16-h512", "int8", 100, 16, 256, 512),
    LowpCase("int8-b1-h512", "int8", 100, 1, 512, 512),
    LowpCase("int8-step-b1-h256", "int8", 1, 1, 256, 256, kind="step"),
]


def select(only: str | None) -> list[Case | LowpCase]:
    """The cases named in a comma-separated list, float32 ones first (all of both tables for None);
    ValueError names any unknown one."""
    everything = [*CASES, *LOWP_CASES]
    if not only:
        return everything
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = [c.name for c in everything]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown configuration(s) {unknown}; expected some of {known}")
    return [c for c in everything if c.name in names]


def flops(case: Case, lengths_sum: int | None = None) -> float:
    """Forward FLOPs, 2*steps*4H*(I_k + H_out) per layer and direction with steps = T*B (sum(lengths) for
    the lengths row: the useful work); 3x that for training."""
    steps = lengths_sum if lengths_sum is not None else case.T * case.B
    D = 2 if case.bidirectional else 1
    total = sum(D * 2 * steps * 4 * case.H * ((case.H if k == 0 else D * case.H) + case.H)
                for k in range(case.layers))
    return 3 * total if case.kind == "train" else total


def weight_bytes_per_step(case: Case) -> int:
    """The weights a B = 1 step streams: W_hh of every layer and direction (and W_ih too for the step call,
    whose input projection is not done ahead for a whole sequence)."""
    D = 2 if case.bidirectional else 1
    return case.layers * D * 4 * case.H * case.H * 4 * (2 if case.kind == "step" else 1)
