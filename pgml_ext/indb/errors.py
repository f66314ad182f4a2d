"""Errors that become a PostgreSQL ERROR with a SQLSTATE, a message and a hint."""

from __future__ import annotations

from pgml_ext.indb import server

# SQLSTATEs we raise (https://www.postgresql.org/docs/current/errcodes-appendix.html).
UNDEFINED_OBJECT = "42704"  # unknown model / signature / output
INVALID_PARAMETER = "22023"  # input of the wrong shape, missing feature, bad argument
INVALID_BINARY = "22P03"  # bytea that is not a tf.Example
NULL_NOT_ALLOWED = "22004"  # NULL element inside an input array
NUMERIC_OUT_OF_RANGE = "22003"  # NaN or infinite scores: no top class
DATA_CORRUPTED = "XX001"  # model blob fails its checksum
WRONG_OBJECT_TYPE = "42809"  # model with no signature we can use for this input
PREREQUISITE_STATE = "55000"  # e.g. TensorFlow cannot load after LLVM JIT
QUERY_CANCELED = "57014"  # a cancel or timeout seen in a parallel worker
INSUFFICIENT_PRIVILEGE = "42501"  # e.g. a graph with file-system ops, without opt-in
UNDEFINED_FILE = "58P01"  # this server's copy of a model is missing or damaged
CARDINALITY_VIOLATION = "21000"  # score_into's source has a key twice
STATEMENT_TOO_COMPLEX = "54001"  # a document nested too deeply to read
INTERNAL = "XX000"


def first_line(e: Exception) -> str:
    """The first line of an exception from a library (the converter, LiteRT), cut to 200
    characters, or its type's name when it has no message: for a reason or a message."""
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


class PgmlError(Exception):
    """An error meant for the SQL user; ``reported()`` turns it into ``plpy.error``."""

    def __init__(
        self, message: str, sqlstate: str, *, detail: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint


_sql_error: type | None = None


def sql_error(message: str, sqlstate: str, detail: str | None = None, hint: str | None = None):
    """A plpy.Error that PL/Python reports as ``ERROR:  pgml: <message>``.

    PL/Python prefixes messages with the exception's class name ("plpy.Error: ...");
    a subclass named ``pgml`` in ``builtins`` makes that prefix our own.
    """
    global _sql_error
    if _sql_error is None:
        _sql_error = type("pgml", (server.plpy().Error,), {"__module__": "builtins"})
    err = _sql_error(message)
    err.sqlstate, err.detail, err.hint = sqlstate, detail, hint
    return err


def translate(exc: Exception, model: str | None = None) -> Exception:
    """The exception to raise for EXC, caught in an entry point scoring with MODEL: ours
    become a clean ERROR (no traceback dump); PostgreSQL's own (plpy.SPIError, including
    query cancel) stay as they are, so it reports them with their own SQLSTATE; anything
    else is an internal error that names the model."""
    if isinstance(exc, PgmlError):
        return sql_error(exc.message, exc.sqlstate, exc.detail, exc.hint)
    plpy = server.plpy()
    message = str(exc.args[0]) if exc.args else ""
    if isinstance(exc, plpy.SPIError) and message.startswith("pgml: "):
        # pgml's own ERROR from SQL it ran (model_ref ...): as raised, not prefixed
        # "spiexceptions.UndefinedObject: " by PL/Python
        # (PL/Python keeps the ERROR's fields in spidata: sqlstate, detail, hint, ...)
        _, detail, hint, *_ = getattr(exc, "spidata", None) or (None, None, None)
        return sql_error(message[6:], exc.sqlstate, detail, hint)
    if isinstance(exc, plpy.SPIError | plpy.Error):
        return exc
    where = ""
    if model:
        from pgml_ext.indb import cache  # only on this rare path: cache imports us

        where = f" with model '{cache.name_of(model)}'"
    if isinstance(exc, RecursionError):  # a jsonb document nested thousands deep
        return sql_error(
            f"the input{where} is nested too deeply",
            STATEMENT_TOO_COMPLEX,
            hint="A feature's value is a number, a string or a flat list of them.",
        )
    failure = _invoke_failure(exc)
    if failure is not None:
        return sql_error(
            f"the input cannot be scored{where}: LiteRT: {failure}",
            INVALID_PARAMETER,
            hint="A value is outside what the model takes (for example an id beyond an "
            "embedding's table); TensorFlow refuses it too.",
        )
    return sql_error(
        f"internal error{where}: {type(exc).__name__}: {exc}",
        INTERNAL,
        hint="This is a bug in pgml_ext or in the model; please report it.",
    )


_INVOKE_FAILED = "failed to invoke."


def _invoke_failure(exc: Exception) -> str | None:
    """What LiteRT says when a model cannot run an input (an op refuses a value), or
    None. Its error reporter keeps the earlier failures of the same interpreter in the
    message: only this call's, the last, is kept (one answer whatever came before)."""
    text = str(exc)
    if not isinstance(exc, RuntimeError) or _INVOKE_FAILED not in text:
        return None
    failures = text.split(_INVOKE_FAILED)[:-1]
    return (failures[-1] + _INVOKE_FAILED).strip()[:300]


class reported:
    """``with reported(model):`` raises what translate() makes of an exception.

    The per-row entry points use try/except and translate() directly: a ``with`` costs
    two method calls per row, a try block nothing.
    """

    __slots__ = ("model",)

    def __init__(self, model: str | None = None) -> None:
        self.model = model

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # KeyboardInterrupt & co, as they are
        translated = translate(exc, self.model)
        if translated is exc:
            return False
        raise translated from None
