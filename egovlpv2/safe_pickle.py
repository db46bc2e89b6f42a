"""Loading pickled numpy arrays (the EK-100 relevancy matrix) so that only array data can come out.

A pickle names functions that the loader calls; a file whose ``__reduce__`` names ``os.system`` runs its
command during a plain ``pickle.load``, before any check of the result. This unpickler resolves only
numpy's own array reconstruction and refuses every other name, so a hostile file raises before anything
runs. Files pickled by Python 2 / numpy 1 (protocol 2, ``numpy.core``) and by current numpy (protocol 4/5,
``numpy._core``) both load.
"""
from __future__ import annotations

import io
import os
import pickle

import numpy as np

from egovlpv2.errors import UserError

# (module, name) pairs that numpy's ndarray pickles use; numpy 1 wrote numpy.core, numpy 2 numpy._core.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol-2 pickles by Python 3 store bytes as _codecs.encode(text, "latin1")
}


class UnsafePickleError(UserError):
    """A pickle that asks for anything but numpy array data."""


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(f"refusing to load {module}.{name}: only numpy array data may be unpickled")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def load_pickled_array(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """The numeric ndarray pickled in ``path``; raises UnsafePickleError for anything else."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        value = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a pickled numpy array ({type(exc).__name__}: {exc})") from exc
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise UnsafePickleError(f"{path}: holds {type(value).__name__}"
                                f"{'' if not isinstance(value, np.ndarray) else ' of ' + str(value.dtype)}, "
                                "not a numeric numpy array")
    if ndim is not None and value.ndim != ndim:
        raise UserError(f"{path}: expected a {ndim}-d array, got shape {value.shape}")
    return value
