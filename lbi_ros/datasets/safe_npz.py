"""Read object arrays (pickled dicts of arrays) from ``.npz`` files without trusting the file.

VideoPose3D's Human3.6M files store ``{subject: {action: array}}`` dicts as pickled object arrays, and
``np.load(..., allow_pickle=True)`` would execute whatever a crafted file's pickle asks for. This
reader parses the ``.npy`` member itself and unpickles with a whitelist: only numpy's own array
reconstruction (plus plain containers) may be constructed, anything else raises
:class:`UnsafePickleError` before it runs.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# What numpy needs to rebuild ndarrays, dtypes and scalars (numpy 1.x and 2.x module names), and the
# containers these files use. Nothing here can run user-chosen code.
_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"), ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
})


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something outside the whitelist."""


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(f"refusing to unpickle {module}.{name}: only numpy arrays and plain "
                                    "containers are allowed in data files")
        return super().find_class(module, name)


def load_npz_member(path: str | Path, key: str) -> np.ndarray:
    """Array ``key`` of the ``.npz`` at ``path``; object arrays are unpickled through the whitelist.

    Raises ``KeyError`` (no such member), ``ValueError`` (not a valid .npy member),
    :class:`UnsafePickleError` (disallowed content) or ``zipfile.BadZipFile``.
    """
    with zipfile.ZipFile(path) as archive:
        member = f"{key}.npy"
        if member not in archive.namelist():
            raise KeyError(f"{path} has no array {key!r} (has {[n.removesuffix('.npy') for n in archive.namelist()]})")
        raw = archive.read(member)
    stream = io.BytesIO(raw)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"{path}:{key}: unsupported .npy format version {version}")
    if dtype.hasobject:
        array = _ArrayUnpickler(stream).load()
        if not isinstance(array, np.ndarray):
            raise ValueError(f"{path}:{key}: the pickle holds a {type(array).__name__}, not an array")
        return array
    data = np.frombuffer(raw, dtype=dtype, offset=stream.tell(), count=int(np.prod(shape)) if shape else 1)
    return data.reshape(shape, order="F" if fortran else "C").copy()
