"""Loading pickles that hold numpy arrays without letting the file run code.

A pickle names the callables that rebuild its objects; an ordinary load calls whatever it names. Here only
numpy's array and scalar reconstructors, ``numpy.dtype``, ``_codecs.encode`` (how Python 3 pickles bytes at
protocol 2, as PaddleVideo 1.x did) and ``collections.OrderedDict`` may be named; anything else is refused
before it is called. Used for PaddleVideo 1.x feature pickles and ``.pdparams`` weight files.
"""

from __future__ import annotations

import pickle
from typing import Any, BinaryIO

ALLOWED = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
)


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asked for a callable outside :data:`ALLOWED`; nothing from it was executed."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise RefusedPickle(
            f"it asks to call {module}.{name}; only numpy arrays and plain containers are allowed"
        )


def load(file: BinaryIO) -> Any:
    """Unpickle ``file`` (latin1 for Python 2 era pickles) admitting only :data:`ALLOWED` callables."""
    return _RestrictedUnpickler(file, encoding="latin1").load()
