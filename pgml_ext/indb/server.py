"""The running PostgreSQL backend, as seen from PL/Python.

``plpy`` is a builtin of PL/Python, imported lazily so pgml_ext.indb stays importable
outside the server (unit tests put a fake in sys.modules). The rest reads the backend's
own state through ctypes, without a query: PL/Python runs every query in a
subtransaction, which PostgreSQL forbids in parallel workers, and a query also costs
far more than a read. Only functions and variables that cannot raise an ERROR are
touched (an ERROR's longjmp must never cross Python frames).
"""

from __future__ import annotations

import ctypes
from functools import cache


def plpy():
    import plpy as module

    return module


@cache
def process() -> ctypes.CDLL:
    """This backend's symbols: PostgreSQL's, and the extension's (loaded RTLD_GLOBAL)."""
    lib = ctypes.CDLL(None)
    if not hasattr(lib, "pgml_models_root"):
        # a server that does not preload pgml_ext, and no C function called yet in this
        # backend: calling one makes PostgreSQL load the library (not in a parallel
        # worker, which has the leader's libraries)
        plpy().execute("SELECT pgml_internal.native_status()")
    return lib


@cache
def _get_config_option():
    fn = process().GetConfigOption
    fn.restype = ctypes.c_char_p
    fn.argtypes = [ctypes.c_char_p, ctypes.c_bool, ctypes.c_bool]
    return fn


def setting(name: str, default: str) -> str:
    """A configuration setting (missing_ok, unrestricted: never raises), or DEFAULT."""
    value = _get_config_option()(name.encode(), True, False)
    return value.decode() if value else default


@cache
def _is_in_parallel_mode():
    fn = process().IsInParallelMode
    fn.restype = ctypes.c_bool
    fn.argtypes = []
    return fn


def in_parallel_mode() -> bool:
    """True in a parallel worker, and in the leader while a parallel plan runs."""
    return bool(_is_in_parallel_mode()())


def cancel_pending() -> bool:
    """A cancel, statement_timeout or termination is waiting to be acted on."""
    lib = process()
    return bool(
        ctypes.c_int.in_dll(lib, "QueryCancelPending").value
        or ctypes.c_int.in_dll(lib, "ProcDiePending").value
    )


@cache
def _ref_issued():
    fn = process().pgml_ref_issued  # src/pgml_ext.c, loaded with RTLD_GLOBAL
    fn.restype = ctypes.c_bool
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    return fn


def ref_issued(ref: str) -> bool:
    """Whether pgml_internal.model_ref handed out REF in this statement (never raises)."""
    raw = ref.encode()
    return bool(_ref_issued()(raw, len(raw)))


@cache
def _llvm_loaded():
    fn = process().pgml_llvm_loaded  # src/jit_guard.c
    fn.restype = ctypes.c_bool
    fn.argtypes = []
    return fn


def llvm_loaded() -> bool:
    """Whether PostgreSQL's JIT provider (LLVM) is loaded in this backend (never raises)."""
    return bool(_llvm_loaded()())


@cache
def models_root() -> str:
    """Where pgml_internal.model_ref (src/pgml_ext.c) writes this database's model files."""
    fn = process().pgml_models_root
    fn.restype = ctypes.c_char_p
    fn.argtypes = []
    return fn().decode()
