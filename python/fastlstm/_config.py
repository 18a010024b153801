"""The shape of an LSTM: hyper-parameters, derived sizes, parameter names and the dropout masks.

One place decides parameter names, shapes and order, and how dropout masks are drawn; the LSTM class, the
functional layer, the torch drop-in and the NumPy reference all read them from here. Letters as in
docs/api.md: H hidden_size, H_out = proj_size if proj_size > 0 else H, D = 2 if bidirectional else 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GATES = ("i", "f", "g", "o")  # the order of the 4H blocks of every gate weight and bias (torch's)
PEEPHOLES = ("i", "f", "o")


@dataclass(frozen=True)
class Config:
    """The hyper-parameters of an LSTM (torch.nn.LSTM's, plus ``peephole``); immutable.

    Config(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
           bidirectional=False, proj_size=0, peephole=False)

    The meaning of each is fastlstm.LSTM's (help(fastlstm.LSTM)); no value is checked here (fastlstm.LSTM checks
    them). ``fastlstm.LSTM(...).config`` is one; build one directly for the functional layer
    (``fastlstm.functional``) and the NumPy reference: ``Config(input_size=80, hidden_size=256, num_layers=2)``.
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0
    peephole: bool = False

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def out_size(self) -> int:
        """H_out: the width of h (P with a projection, else H)."""
        return self.proj_size if self.proj_size > 0 else self.hidden_size

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.num_directions * self.out_size

    def suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter name -> shape, in torch.nn.LSTM's state_dict order (peepholes last)."""
        H, P = self.hidden_size, self.proj_size
        shapes: dict[str, tuple[int, ...]] = {}
        for k in range(self.num_layers):
            for sfx in self.suffixes():
                shapes[f"weight_ih_l{k}{sfx}"] = (4 * H, self.layer_input_size(k))
                shapes[f"weight_hh_l{k}{sfx}"] = (4 * H, self.out_size)
                if self.bias:
                    shapes[f"bias_ih_l{k}{sfx}"] = (4 * H,)
                    shapes[f"bias_hh_l{k}{sfx}"] = (4 * H,)
                if P > 0:
                    shapes[f"weight_hr_l{k}{sfx}"] = (P, H)
                if self.peephole:
                    for gate in PEEPHOLES:
                        shapes[f"peephole_{gate}_l{k}{sfx}"] = (H,)
        return shapes

    def layer_params(self, params: dict, layer: int, direction: int) -> dict:
        """The parameters of one layer and direction under short names (w_ih, w_hh, b_ih, b_hh,
        w_hr, p_i, p_f, p_o); absent ones are None."""
        sfx = self.suffixes()[direction]
        tag = f"l{layer}{sfx}"
        return {
            "w_ih": params[f"weight_ih_{tag}"],
            "w_hh": params[f"weight_hh_{tag}"],
            "b_ih": params.get(f"bias_ih_{tag}"),
            "b_hh": params.get(f"bias_hh_{tag}"),
            "w_hr": params.get(f"weight_hr_{tag}"),
            "p_i": params.get(f"peephole_i_{tag}"),
            "p_f": params.get(f"peephole_f_{tag}"),
            "p_o": params.get(f"peephole_o_{tag}"),
        }

    def param_name(self, short: str, layer: int, direction: int) -> str:
        """The inverse of layer_params' naming: ("w_ih", 0, 1) -> "weight_ih_l0_reverse"."""
        long = {
            "w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh",
            "w_hr": "weight_hr", "p_i": "peephole_i", "p_f": "peephole_f", "p_o": "peephole_o",
        }[short]
        return f"{long}_l{layer}{self.suffixes()[direction]}"

    def dropout_masks(self, T: int, B: int, dtype, rng: np.random.Generator) -> list[np.ndarray] | None:
        """The dropout masks of one training call of T steps on B rows: one (T, B, D*H_out) array of ``dtype`` per
        layer but the last, each element 0 with probability ``dropout``, else 1 / (1 - dropout), drawn from the
        numpy Generator ``rng`` in layer order; None when there is no dropout to apply (dropout = 0 or one
        layer)."""
        p = self.dropout
        if p <= 0 or self.num_layers < 2:
            return None
        shape = (T, B, self.num_directions * self.out_size)
        scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
        return [((rng.random(shape) >= p) * scale).astype(dtype) for _ in range(self.num_layers - 1)]
