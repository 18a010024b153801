"""Weight converters between fastlstm (= torch.nn.LSTM's state_dict) and PyTorch, Keras and ONNX, and an
ONNX export of a fastlstm LSTM. NumPy only: torch and onnx are imported by the functions that need them.

Gate order of the 4H axis (every gate weight and bias is 4 blocks of H rows or columns):

    block   fastlstm / torch   Keras LSTM   ONNX LSTM
    0       i  input           i            i
    1       f  forget          f            o
    2       g  cell            c            f
    3       o  output          o            c

Layouts, per layer k and direction (torch names end _l{k}{sfx}; sfx "" / d = 0 forward, "_reverse" / d = 1
backward):

    fastlstm / torch           Keras LSTM.get_weights()                ONNX LSTM inputs (stacked over d)
    weight_ih (4H, I_k)        kernel (I_k, 4H) = weight_ih.T          W [D, 4H, I_k] = weight_ih, reordered
    weight_hh (4H, H)          recurrent_kernel (H, 4H) = weight_hh.T  R [D, 4H, H] = weight_hh, reordered
    bias_ih, bias_hh (4H,)     bias (4H,) = bias_ih + bias_hh          B [D, 8H] = [bias_ih, bias_hh], each
                                                                       reordered (ONNX's Wb, then Rb)
    peephole_{i,f,o} (H,)      (none)                                  P [D, 3H] = [p_i, p_o, p_f]
    weight_hr (P, H)           (none)                                  (none)

Keras's gate order is torch's, so its weights are transposes. Keras has one bias where torch has two
(only the sum matters): from_keras puts it in bias_ih and zeros in bias_hh. A Keras Bidirectional layer's
get_weights() is the forward layer's arrays then the backward layer's, i.e. torch's "" then "_reverse".
The Keras maps hold for activation="tanh", recurrent_activation="sigmoid" (Keras's defaults since 2.3;
older Keras defaulted to hard_sigmoid, which no fastlstm option reproduces).

Submodules: fastlstm.convert.torch (from_torch, to_torch), fastlstm.convert.keras (from_keras, to_keras),
fastlstm.convert.onnx (to_onnx_weights, from_onnx_weights, export_onnx, and lstm_model, OnnxLSTM,
run_onnx: an ONNX model of any Config and an onnxruntime session over it). The gate orders above are
defined once, in fastlstm.convert._layout, with the one reorder every converter uses. A guide with
examples: docs/ecosystem.md.
"""

from __future__ import annotations

from .keras import from_keras, to_keras
from .onnx import export_onnx, from_onnx_weights, to_onnx_weights
from .torch import from_torch, to_torch

__all__ = ["from_torch", "to_torch", "from_keras", "to_keras", "to_onnx_weights", "from_onnx_weights",
           "export_onnx"]
