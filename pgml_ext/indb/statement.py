"""Which top-level statement is running, read from the server without a query.

PL/Python runs inside the postgres process, whose C functions are visible to ctypes.
GetCurrentStatementStartTimestamp() is the same for every row of one statement (and in
its parallel workers) and changes with the next one, so model lookups can be done once
per statement instead of once per row. Outside a server it is None: no caching.
"""

from __future__ import annotations

import ctypes

_getter = None
_missing = False


def key() -> int | None:
    global _getter, _missing
    if _getter is None:
        if _missing:
            return None
        try:
            fn = ctypes.CDLL(None).GetCurrentStatementStartTimestamp
        except (OSError, AttributeError):
            _missing = True
            return None
        fn.restype = ctypes.c_int64
        fn.argtypes = []
        _getter = fn
    return _getter()
