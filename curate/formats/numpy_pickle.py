"""Pickles of numpy arrays (AVA's released proposals), loaded without running anything a pickle names: the
unpickler builds dicts, lists, tuples, numbers, strings and numpy arrays, and refuses every other global before it
is looked up."""
from __future__ import annotations

import pickle
from pathlib import Path

from curate.core.files import FileFormatError

# What numpy arrays and scalars are rebuilt from, in numpy 1.x (numpy.core) and 2.x (numpy._core) spelling;
# `_frombuffer` is protocol 5's array; protocols 0-2 store bytes through `_codecs.encode` (empty ones: `bytes()`).
ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("__builtin__", "bytes")} | {
    (f"numpy.{core}.{module}", name) for core in ("core", "_core")
    for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}


class PickleFileError(FileFormatError):
    """A pickle that cannot be read; the message names the file."""


class UnsafePickleError(PickleFileError):
    """A pickle that names a global other than what numpy arrays are built from; the message names it."""


class _NumpyUnpickler(pickle.Unpickler):
    def __init__(self, fh, path: Path):
        super().__init__(fh, encoding="latin1")    # latin1: Python 2 pickles of numpy arrays
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise UnsafePickleError(f"{self.path}: refused to load the global {module}.{name}: only numpy arrays, "
                                    "dicts, lists, numbers and strings may be unpickled")
        if module.startswith("numpy.core."):   # numpy >= 1.26 has numpy._core; numpy 2 warns on numpy.core
            module = "numpy._core." + module.split(".", 2)[2]
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.path}: refused a persistent id ({pid!r})")


def load_numpy_pickle(path: str | Path) -> object:
    """Unpickle a file that may hold only numpy arrays, dicts, lists, tuples, numbers and strings."""
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            return _NumpyUnpickler(fh, path).load()
        except UnsafePickleError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt pickle fails in many ways; name the file
            raise PickleFileError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
