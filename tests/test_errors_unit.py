"""errors.reported() with a fake plpy: our errors become ERRORs, PostgreSQL's pass."""

import sys
import types

import pytest

from pgml_ext.indb import errors


class FakeError(Exception):
    pass


class FakeSPIError(Exception):
    pass


@pytest.fixture
def fake_plpy(monkeypatch):
    plpy = types.SimpleNamespace(Error=FakeError, SPIError=FakeSPIError)
    monkeypatch.setitem(sys.modules, "plpy", plpy)
    monkeypatch.setattr(errors, "_sql_error", None)
    return plpy


def test_pgml_error_becomes_sql_error_named_pgml(fake_plpy):
    with pytest.raises(FakeError) as info, errors.reported("m"):
        raise errors.PgmlError("bad", errors.INVALID_PARAMETER, hint="do x")
    err = info.value
    assert type(err).__name__ == "pgml" and type(err).__module__ == "builtins"
    assert (str(err), err.sqlstate, err.hint) == ("bad", "22023", "do x")


def test_postgres_errors_pass_through(fake_plpy):
    with pytest.raises(FakeSPIError), errors.reported("m"):
        raise FakeSPIError("canceling statement due to user request")


def test_unexpected_exception_is_internal_error(fake_plpy):
    with pytest.raises(FakeError) as info, errors.reported("m"):
        raise KeyError("boom")
    assert info.value.sqlstate == errors.INTERNAL and "model 'm'" in str(info.value)
