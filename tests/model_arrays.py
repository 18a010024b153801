"""Device arrays of the CPU execution model, for the DLPack tests of a FASTLSTM_CUDA=EMU build (its device
memory is host memory): ModelArray wraps a numpy array and exports it as a DLPack capsule of CUDA device 0,
and from_dlpack() takes the device arrays the engine hands back (host copies, as ModelArrays again).
Test-only; with a real GPU the tests use torch tensors instead."""

from __future__ import annotations

import ctypes

import numpy as np

from fastlstm import _core

_KDL_CUDA = 2
_CODES = {"f": 2, "u": 1, "i": 0}


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _Device), ("ndim", ctypes.c_int32), ("dtype", _DType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _Managed(ctypes.Structure):
    pass


_Deleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Managed))
_Managed._fields_ = [("dl_tensor", _Tensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _Deleter)]

_alive: dict[int, tuple] = {}  # managed tensor address -> what it keeps alive until its deleter runs


@_Deleter
def _delete(managed):
    _alive.pop(ctypes.addressof(managed.contents), None)


_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.restype = ctypes.py_object
_new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class ModelArray:
    """A numpy array as a device array of the execution model (DLPack device (CUDA, 0))."""

    def __init__(self, a: np.ndarray):
        self.a = a

    shape = property(lambda self: self.a.shape)
    ndim = property(lambda self: self.a.ndim)

    def __getitem__(self, index):
        return ModelArray(self.a[index])

    def __dlpack_device__(self):
        return (_KDL_CUDA, 0)

    def __dlpack__(self, stream=None, **_):
        a = self.a
        shape = (ctypes.c_int64 * a.ndim)(*a.shape)
        strides = (ctypes.c_int64 * a.ndim)(*(s // a.itemsize for s in a.strides))
        m = _Managed()
        m.dl_tensor = _Tensor(a.ctypes.data, _Device(_KDL_CUDA, 0), a.ndim,
                              _DType(_CODES[a.dtype.kind], a.itemsize * 8, 1), shape, strides, 0)
        m.deleter = _delete
        _alive[ctypes.addressof(m)] = (m, a, shape, strides)
        return _new_capsule(ctypes.addressof(m), b"dltensor", None)


def from_dlpack(exported) -> ModelArray:
    """This module's from_dlpack (the engine hands its results to it): a host copy, as a device array again."""
    return ModelArray(host(exported))


def host(result) -> np.ndarray:
    """A copy of a float32 device array the engine returned (its capsule is freed afterwards)."""
    capsule = result.__dlpack__()
    d = _core.dlpack_describe(capsule)
    assert tuple(d["device"]) == (_KDL_CUDA, 0) and tuple(d["dtype"]) == (2, 32, 1), d
    n = int(np.prod(d["shape"]))
    flat = np.ctypeslib.as_array(ctypes.cast(d["first"], ctypes.POINTER(ctypes.c_float)), shape=(max(n, 1),))
    return flat[:n].reshape(d["shape"]).copy()
