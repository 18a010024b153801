"""DLPack import, the half of the CUDA engine's array exchange a CPU can check: what the bindings read from a
producer's capsule (device, dtype, shape, strides in elements, byte offset), for numpy and torch producers,
contiguous and strided; and the protocol's rules (a capsule is consumed once)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastlstm import _core, functional


def test_numpy_capsule_is_read_as_numpy_sees_it():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    d = _core.dlpack_describe(a.__dlpack__())
    assert d["device"] == (1, 0)  # kDLCPU
    assert d["dtype"] == (2, 32, 1)  # kDLFloat, 32 bits, 1 lane
    assert d["shape"] == [2, 3, 4]
    assert d["strides"] == [12, 4, 1]
    assert d["byte_offset"] == 0


def test_strided_torch_tensor_keeps_its_strides():
    t = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5).transpose(0, 1)  # (4, 3, 5), strides (5, 20, 1)
    d = _core.dlpack_describe(torch.utils.dlpack.to_dlpack(t))
    assert d["shape"] == [4, 3, 5]
    assert d["strides"] == list(t.stride())
    assert d["dtype"] == (2, 32, 1)
    sliced = torch.arange(40, dtype=torch.float64).reshape(8, 5)[3:, 1:]
    d = _core.dlpack_describe(torch.utils.dlpack.to_dlpack(sliced))
    assert d["dtype"] == (2, 64, 1)
    assert d["shape"] == [5, 4] and d["strides"] == [5, 1]
    # The view's first element: the data pointer plus byte_offset (producers may use either).
    assert d["first"] == sliced.data_ptr()
    a = np.arange(30, dtype=np.float32).reshape(5, 6)[2:, 3:]
    assert _core.dlpack_describe(a.__dlpack__())["first"] == a.__array_interface__["data"][0]


def test_only_unconsumed_capsules_are_read():
    with pytest.raises(TypeError, match="capsule"):
        _core.dlpack_describe(np.zeros(3, np.float32))
    cap = np.zeros(3, np.float32).__dlpack__()
    torch.utils.dlpack.from_dlpack(cap)  # a consumer renames the capsule "used_dltensor"
    with pytest.raises(TypeError, match="already consumed"):
        _core.dlpack_describe(cap)


def test_host_arrays_never_take_the_device_path():
    w = functional.pack(functional.Config(3, 4), {k: np.zeros(s, np.float32) for k, s in
                                                   functional.Config(3, 4).param_shapes().items()})
    assert not functional.device_array(w, np.zeros((2, 1, 3), np.float32))
    assert not functional.device_array(w, torch.zeros(2, 1, 3))


def test_the_cuda_backends_dlpack_glue():
    from fastlstm._backends import cuda

    assert cuda._importer(torch.zeros(1)) is torch.from_dlpack  # results come back as the caller's framework's
    assert cuda._importer(np.zeros(1)) is np.from_dlpack  # or its module's from_dlpack

    class Producer:  # a producer whose module (this test file) has none gets the DLPack objects themselves
        pass

    assert cuda._importer(Producer())("obj") == "obj"
    cap = np.zeros(3, np.float32).__dlpack__()
    exported = cuda._Exported(cap, 1)
    assert exported.__dlpack_device__() == (2, 1)
    assert exported.__dlpack__(stream=7) is cap
    with pytest.raises(BufferError, match="already taken"):
        exported.__dlpack__()
    with pytest.raises(TypeError, match="hx\\[0\\]"):
        cuda._capsule("hx[0] (h0)", [[1.0]])
    assert cuda._capsule("h0", None) is None
    assert _core.dlpack_describe(cuda._capsule("h0", np.ones((2, 2), np.float32)))["shape"] == [2, 2]
