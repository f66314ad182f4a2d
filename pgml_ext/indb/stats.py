"""pgml.stats from PL/Python: the rows, errors and time of the calls PL/Python answers,
and the models it loads, counted by src/stats.c through ctypes (no query: none is
allowed in a parallel worker, and one would cost more than the row). C counts the rows
it answers itself, so each row is counted once, by whoever answered it.
"""

from __future__ import annotations

import ctypes
import time
from functools import cache

from pgml_ext.indb import server


@cache
def _functions():
    """pgml_stats_count and pgml_stats_load (never raise), or None outside a server."""
    try:
        lib = server.process()
        count, load = lib.pgml_stats_count, lib.pgml_stats_load
    except (AttributeError, OSError):
        return None
    count.restype = load.restype = None
    count.argtypes = [ctypes.c_char_p, ctypes.c_size_t] + [ctypes.c_int64] * 3 + [ctypes.c_double]
    load.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_double]
    return count, load


def count(ref: str, rows: int, ms: float, failed: bool = False) -> None:
    """One call by REF that answered ROWS rows (or raised an ERROR) in MS."""
    functions = _functions()
    if functions is not None:
        raw = ref.encode()
        functions[0](raw, len(raw), 1, 0 if failed else rows, int(failed), ms)


def load(ref: str, ms: float) -> None:
    functions = _functions()
    if functions is not None:
        raw = ref.encode()
        functions[1](raw, len(raw), ms)


class scoring:
    """Counts the call in its block: ``rows`` rows (set it when known), or an error."""

    def __init__(self, ref: str, rows: int = 1) -> None:
        self.ref = ref
        self.rows = rows

    def __enter__(self) -> scoring:
        self.started = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        count(self.ref, self.rows, (time.perf_counter() - self.started) * 1000.0, exc is not None)
        return False
