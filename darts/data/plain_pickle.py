"""Read a bz2-compressed pickle that may hold only plain data: containers, strings and numbers.

NATS-Bench ships its archive as pickles (``nats_bench/api_utils.py`` ``pickle_load``: a plain ``pickle.load`` of a
``bz2.BZ2File``), and a plain ``pickle.load`` runs whatever callable the file names. ``load_plain`` admits only what
the archive's files are made of: the pickle opcodes of dicts, lists, tuples, sets, strings, bytes, numbers, booleans
and None, plus three names a pickle must look up:

- ``collections.OrderedDict``, a dict;
- ``numpy.dtype`` and ``numpy.core.multiarray.scalar`` (``numpy._core`` since NumPy 2), as NumPy pickles a scalar
  such as ``np.float64(0.0117)``: read here into the Python number of a boolean, integer or floating-point dtype,
  never by calling NumPy's own constructors.

Any other name (a class instance, a function reference, ``os.system``...) refuses the whole file with one line naming
the file and what it asked for.
"""
from __future__ import annotations

import bz2
import collections
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

_NUMERIC_DTYPE = re.compile(r"[biuf]\d{1,2}")  # bool, int, uint, float dtype codes as NumPy pickles them ('f8')


class _DType:
    """A NumPy dtype as pickled (``dtype('f8', False, True)`` then its byte order by BUILD): numeric codes only."""

    def __init__(self, code: Any, align: Any = False, copy: Any = True):
        if not isinstance(code, str) or not _NUMERIC_DTYPE.fullmatch(code):
            raise pickle.UnpicklingError(f"numpy.dtype({code!r}), not a numeric dtype")
        self.code, self.order = code, "="

    def __setstate__(self, state: Any) -> None:
        """NumPy's dtype state: (version, byte order, ...); only the byte order matters for a number."""
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"a numpy.dtype state {str(state)[:60]}")
        self.order = state[1]

    def number(self, data: Any) -> bool | int | float:
        """The Python number of one scalar's raw bytes."""
        dtype = np.dtype(self.order.replace("|", "=") + self.code)
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise pickle.UnpicklingError(f"{len(data) if isinstance(data, bytes) else type(data).__name__} bytes "
                                         f"for a numpy scalar of dtype {self.code}")
        return np.frombuffer(data, dtype=dtype)[0].item()


def _scalar(dtype: Any, data: Any = None) -> bool | int | float:
    """``numpy.core.multiarray.scalar(dtype, bytes)`` as a Python number."""
    if not isinstance(dtype, _DType):
        raise pickle.UnpicklingError(f"numpy scalar of {type(dtype).__name__}, not of a numeric dtype")
    return dtype.number(data)


ADMITTED = {("collections", "OrderedDict"): collections.OrderedDict, ("builtins", "set"): set,
            ("builtins", "frozenset"): frozenset, ("numpy", "dtype"): _DType,
            ("numpy.core.multiarray", "scalar"): _scalar, ("numpy._core.multiarray", "scalar"): _scalar}


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that looks up only the names of ``ADMITTED``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ADMITTED:
            raise pickle.UnpicklingError(f"{module}.{name}")
        return ADMITTED[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"a persistent id {str(pid)[:40]!r}")


def load_plain(path: str | Path) -> Any:
    """The plain data of a bz2-compressed pickle; ValueError naming the file if it holds anything else or is not one."""
    try:
        with bz2.open(path, "rb") as f:
            return _PlainUnpickler(f).load()
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} holds {err}, not only plain containers and numbers: refused (a NATS-Bench archive "
                         "file is dicts, lists, strings and numbers)") from None
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise ValueError(f"{path} is not a bz2-compressed pickle of plain data ({type(err).__name__}: {err})") from None
