"""The shape of an LSTM: hyper-parameters, derived sizes and parameter names (API.md's letters).

One place decides parameter names, shapes and order; the LSTM class, the reference and the engines'
packing all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

GATES = ("i", "f", "g", "o")  # the order of the 4H blocks of every gate weight and bias (torch's)
PEEPHOLES = ("i", "f", "o")


@dataclass(frozen=True)
class Config:
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
