"""PyTorch: fastlstm's parameters are torch.nn.LSTM's state_dict (same names, shapes and gate order), so
these converters only copy values between numpy arrays and torch tensors. torch is imported by to_torch
alone."""

from __future__ import annotations

import numpy as np

from ._layout import numpy_copy

__all__ = ["from_torch", "to_torch"]


def from_torch(state_dict) -> dict[str, np.ndarray]:
    """torch.nn.LSTM's (or fastlstm.torch.LSTM's) state_dict -> fastlstm params.

    Args:
        state_dict: a mapping of parameter name -> torch tensor (CPU or GPU, any requires_grad) or array,
            e.g. ``nn_lstm.state_dict()``; names like ``weight_ih_l0``, ``bias_hh_l1_reverse``,
            ``weight_hr_l0``, ``peephole_i_l0``.

    Returns:
        A new dict with the same names in the same order, each value a numpy copy (never a view of the
        tensor) with the tensor's shape and dtype; bfloat16 becomes float32 (exact). It loads into
        ``fastlstm.LSTM.load_state_dict`` for the matching configuration.

    Needs no torch import: tensors are converted through their own ``.detach().cpu().numpy()``. A value
    numpy cannot convert raises what numpy raises.
    """
    return {name: numpy_copy(value) for name, value in state_dict.items()}


def to_torch(params) -> dict:
    """fastlstm params -> a state_dict of torch tensors that ``torch.nn.LSTM.load_state_dict`` takes.

    Args:
        params: a mapping of parameter name -> numpy array (or tensor), e.g. ``fastlstm.LSTM.state_dict()``.

    Returns:
        A new dict with the same names in the same order, each value a CPU ``torch.Tensor`` that owns a copy
        of the array (same shape and dtype: float32 -> torch.float32, float64 -> torch.float64).

    Raises:
        ImportError: PyTorch is not installed.

    Parameters nn.LSTM does not have (``peephole_*`` of a peephole=True model) are kept; nn.LSTM's strict
    load_state_dict rejects them.
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError(f"to_torch needs PyTorch ({exc}); fastlstm.LSTM takes numpy arrays") from None
    return {name: torch.from_numpy(numpy_copy(value)) for name, value in params.items()}
