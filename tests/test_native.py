"""The native scorer (src/native.c): rows of LiteRT models scored in C, with the
PL/Python path (pgml.native_scoring = off) as its reference. Same answers, same
errors, and the rows it cannot take go to PL/Python."""

import os
import struct
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz import inputs as fuzz_inputs

from conftest import new_engine
from pgml_ext import reference
from pgml_ext.indb import examples

pytestmark = pytest.mark.usefixtures("models", "inputs")

SERVER_EXAMPLES = int(os.environ.get("PGML_FUZZ_EXAMPLES", "800")) // 4


@pytest.fixture(scope="module")
def conn(db_url):
    """One autocommit session: an ERROR does not end the next statement's transaction."""
    engine = new_engine(db_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        yield c
    engine.dispose()


def status(conn) -> dict:
    return conn.execute(sa.text("SELECT pgml.backend_status()")).scalar()


def examples_around(names: list[str], keys: list[bytes]) -> st.SearchStrategy[bytes]:
    """Examples around a model's features (NAMES, and others): each present or not, of
    each kind and of odd lengths, odd values, bytes values from KEYS or any; sometimes
    mutated bytes."""

    @st.composite
    def build(draw) -> bytes:
        ex = examples.example_class()()
        for name in draw(st.lists(st.sampled_from([*names, "other"]), max_size=len(names) + 1)):
            feature = ex.features.feature[name]
            kind = draw(st.sampled_from(["float_list", "int64_list", "bytes_list"]))
            size = draw(st.sampled_from([1, 1, 1, 0, 2]))
            if kind == "float_list":
                values = st.floats(width=32)
            elif kind == "int64_list":
                values = st.integers(-(2**63), 2**63 - 1) | st.integers(0, 4)
            else:
                values = st.sampled_from(keys) | st.binary(max_size=6)
            getattr(feature, kind).value.extend(
                draw(st.lists(values, min_size=size, max_size=size))
            )
        data = ex.SerializeToString()
        if draw(st.booleans()):
            return data
        if draw(st.booleans()):
            return draw(fuzz_inputs) + data
        return data[: draw(st.integers(0, len(data)))]

    return build()


def outcome(conn, sql: str, native: bool, **params):
    """('ok', rows) or ('error', SQLSTATE, message) of SQL, on the chosen path."""
    conn.execute(sa.text(f"SET pgml.native_scoring = {'on' if native else 'off'}"))
    try:
        return ("ok", [tuple(r) for r in conn.execute(sa.text(sql), params).all()])
    except sa.exc.DatabaseError as e:
        fields = e.orig.args[0]
        return ("error", fields["C"], fields["M"])
    finally:
        conn.execute(sa.text("RESET pgml.native_scoring"))


@pytest.mark.parametrize("column", ["example", "pixels"])
@pytest.mark.parametrize("model", ["mlp", "mlp_labels"])
def test_native_answers_every_digit_as_pl_python_does(conn, model, column):
    sql = (
        f"SELECT pgml.predict('{model}', {column}), pgml.predict_class('{model}', {column}), "
        f"pgml.classify('{model}', {column}) FROM inputs ORDER BY id"
    )
    before = status(conn)
    native = outcome(conn, sql, native=True)
    after = status(conn)
    general = outcome(conn, sql, native=False)
    assert native[0] == general[0] == "ok" and len(native[1]) == 1797
    assert native == general  # float4 scores bit for bit, classes, labels
    assert after["native_rows"] - before["native_rows"] == 3 * 1797
    assert after["general_rows"] == before["general_rows"]
    assert after["native_models"] >= 1
    if model == "mlp_labels":
        assert native[1][0][2] == "zero"  # digit 0: the registered label, in C


def test_tf_serving_classify_signature_is_parsed_and_scored_in_c(conn):
    """mnist's default signature for Examples is TF Serving's classify: its parse and
    its top_k are pgml's (the plan), the rest LiteRT's. Every digit is answered in C,
    scores sorted and classes looked up as PL/Python (and TensorFlow) answer them."""
    sql = (
        "SELECT pgml.predict('mnist', example), pgml.predict_class('mnist', example), "
        "pgml.classify('mnist', example) FROM inputs ORDER BY id"
    )
    batches = (
        "SELECT pgml.classify_batch('mnist', array_agg(example ORDER BY id)), "
        "pgml.predict_class_batch('mnist', array_agg(example ORDER BY id)) FROM inputs"
    )
    before = status(conn)
    native = outcome(conn, sql, native=True)
    native_batches = outcome(conn, batches, native=True)
    after = status(conn)
    assert native[0] == "ok" and len(native[1]) == 1797
    assert native == outcome(conn, sql, native=False)
    assert native_batches == outcome(conn, batches, native=False)
    assert after["native_rows"] - before["native_rows"] == 5 * 1797
    assert after["general_rows"] == before["general_rows"]
    scores = np.array([r[0] for r in native[1]])
    assert (np.diff(scores, axis=1) <= 0).all()  # top_k: sorted down
    assert [r[2] for r in native[1]] == [str(r[1]) for r in native[1]]


def test_a_named_output_goes_to_pl_python(conn):
    sql = "SELECT pgml.predict('mnist', example, output => 'scores') FROM inputs LIMIT 50"
    before = status(conn)
    native = outcome(conn, sql, native=True)
    after = status(conn)
    assert native == outcome(conn, sql, native=False) and native[0] == "ok"
    assert after["native_rows"] == before["native_rows"]
    assert after["general_rows"] - before["general_rows"] == 50


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    n, size = len(payload), b""
    while True:
        size += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return bytes([number << 3 | 2]) + size + payload


def _example(features: list[tuple[bytes, bytes]]) -> bytes:
    """A serialized Example written by hand: keys of any bytes, duplicates allowed."""
    entries = b"".join(_field(1, _field(1, key) + _field(2, value)) for key, value in features)
    return _field(1, entries)


def _floats(values) -> bytes:
    """A Feature holding a float_list (packed)."""
    return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))


DIGIT = reference.cycled(1)[0][0].astype(np.float32)
NAN = DIGIT.copy()
NAN[5] = np.nan
ODD_INPUTS = {
    "not protobuf": b"\xff\xfe garbage",
    "empty": b"",
    "NaN": _example([(b"pixels", _floats(NAN))]),
    "Infinity": _example([(b"pixels", _floats([np.inf] * 784))]),
    "783 values": _example([(b"pixels", _floats(DIGIT[:783]))]),
    "int64 feature": _example([(b"pixels", _field(3, _field(1, b"\x01")))]),
    "two features, neither named": _example([(b"a", _floats(DIGIT)), (b"b", _floats(DIGIT))]),
    "key not UTF-8": _example([(b"\xff", _floats(DIGIT))]),
    "duplicate key": _example([(b"q", _floats(DIGIT)), (b"q", _floats(DIGIT * 0))]),
    "named among others": _example([(b"a", _floats(DIGIT * 0)), (b"pixels", _floats(DIGIT))]),
    "merged Examples": _example([(b"pixels", _floats(DIGIT))])
    + _example([(b"other", _floats(DIGIT * 0))]),
}


@pytest.mark.parametrize("case", sorted(ODD_INPUTS))
def test_odd_examples_get_the_pl_python_answer_or_error(conn, case):
    sql = (
        "SELECT pgml.predict('mlp_labels', :d), pgml.predict_class('mlp_labels', :d), "
        "pgml.classify('mlp_labels', :d)"
    )
    native = outcome(conn, sql, native=True, d=ODD_INPUTS[case])
    assert native == outcome(conn, sql, native=False, d=ODD_INPUTS[case])


@pytest.mark.parametrize(
    "array",
    [
        "ARRAY[1,2,3]::float4[]",
        "array_fill(0::float4, ARRAY[28,28])",
        "array_fill('NaN'::float4, ARRAY[784])",
        "array_fill(NULL::float4, ARRAY[784])",
        "'{}'::float4[]",
        "NULL::float4[]",
    ],
)
def test_odd_arrays_get_the_pl_python_answer_or_error(conn, array):
    sql = (
        f"SELECT pgml.predict('mlp', {array}), pgml.predict_class('mlp', {array}), "
        f"pgml.classify('mlp', {array})"
    )
    assert outcome(conn, sql, native=True) == outcome(conn, sql, native=False)


def test_named_outputs_and_signatures(conn):
    sql = (
        "SELECT pgml.predict('mlp', example, 'output_0'), "
        "pgml.predict('mlp', example, signature => 'serve'), "
        "pgml.classify('mlp', example, signature => 'nope') FROM inputs WHERE id < 3"
    )
    # a float4[] for a signature that parses Examples: refused on both paths alike
    parse = "SELECT pgml.predict('mnist', pixels, signature => 'serving_default') FROM inputs"
    assert outcome(conn, parse, native=True) == outcome(conn, parse, native=False)
    assert outcome(conn, parse, native=True)[0] == "error"
    native = outcome(conn, sql, native=True)
    assert native == outcome(conn, sql, native=False)
    assert native[0] == "error" and native[1] == "42704"  # the unknown signature


@pytest.mark.parametrize("column", ["example", "pixels"])
def test_named_heads_are_scored_in_c(conn, engine, column):
    """A multi-head model (no default output) and a named default output: C scores the
    head a call names, classes by position (registered labels), as PL/Python does.
    TF Serving's 'scores' (a top k pgml takes) stays with PL/Python, same answers."""
    from recipes import two_heads

    from conftest import LABELS, built_model
    from pgml_ext import client

    client.register_model(engine, "heads_c", built_model("real-two-heads", two_heads))
    sql = (
        f"SELECT pgml.predict('heads_c', {column}, output => 'digit'), "
        f"pgml.classify('heads_c', {column}, output => 'shape'), "
        f"pgml.predict_class('heads_c', {column}, output => 'digit'), "
        f"pgml.classify('mlp_labels', {column}, output => 'output_0') "
        "FROM inputs WHERE id < 300 ORDER BY id"
    )
    batches = (
        f"SELECT pgml.classify_batch('heads_c', array_agg({column} ORDER BY id), "
        "output => 'shape') FROM inputs WHERE id < 300"
    )
    before = status(conn)
    native = outcome(conn, sql, native=True)
    native_batches = outcome(conn, batches, native=True)
    after = status(conn)
    assert native[0] == "ok" and native == outcome(conn, sql, native=False)
    assert native_batches == outcome(conn, batches, native=False)
    assert after["native_rows"] - before["native_rows"] == 4 * 300 + 300
    assert after["general_rows"] == before["general_rows"]
    assert {r[3] for r in native[1]} <= set(LABELS)  # registered labels
    unnamed = outcome(conn, f"SELECT pgml.predict('heads_c', {column}) FROM inputs", True)
    assert unnamed[0] == "error"  # no default output: PL/Python says to name one
    sql = f"SELECT pgml.predict('mnist', {column}, output => 'scores') FROM inputs WHERE id < 5"
    assert outcome(conn, sql, native=True) == outcome(conn, sql, native=False)


def python_loaded(conn) -> bool:
    """Whether this session's backend has loaded PL/Python (its maps, read as root)."""
    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    return "plpython3" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize("column", ["example", "pixels"])
def test_a_new_backend_scores_by_the_stored_plan_without_python(db_url, column):
    """Registration stores each form's plan with the version: a new backend loads it
    and the flatbuffer in C, with no PL/Python (hence no numpy, no LiteRT Python).
    (The first use of a version on a server writes its files, whose flatbuffers
    LiteRT's verifier checks in PL/Python: once per server, not per backend.)"""
    sql = (
        f"SELECT pgml.predict('mlp', {column}), pgml.classify('mlp', {column}) "
        "FROM inputs WHERE id < 50 ORDER BY id"
    )
    engine = new_engine(db_url)
    try:
        with engine.connect() as c:
            c.execute(sa.text("SELECT pgml.predict('mlp', pixels) FROM inputs LIMIT 1")).all()
        with engine.connect() as c:
            native = c.execute(sa.text(sql)).all()
            assert not python_loaded(c)
        with engine.connect() as c:
            c.execute(sa.text("SET pgml.native_scoring = off"))
            assert native == c.execute(sa.text(sql)).all()
            assert python_loaded(c)  # the check can tell
    finally:
        engine.dispose()


def _mapped_kb(pid: int, suffix: str) -> int:
    """Resident kB of the backend's mappings of files whose names end with SUFFIX."""
    resident, counting = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0] and len(line.split()) >= 5:
            counting = line.rstrip().endswith(suffix)
        elif counting and line.startswith("Rss:"):
            resident += int(line.split()[1])
    return resident


def test_a_compiled_flatbuffer_leaves_the_backends_memory(db_url):
    """Once compiled, XNNPACK runs on its own packed weights: the flatbuffer's mapped
    pages leave the backend's RSS (MADV_PAGEOUT) and scoring never reads them again."""
    engine = new_engine(db_url)
    with engine.connect() as c:
        pid = c.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        first = c.execute(sa.text("SELECT pgml.classify('mlp', example) FROM inputs")).all()
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert ".tflite" in maps  # LiteRT maps it ...
        assert _mapped_kb(pid, ".tflite") == 0  # ... and none of it stays resident
        again = c.execute(sa.text("SELECT pgml.classify('mlp', example) FROM inputs")).all()
        assert again == first and len(first) == 1797
        assert _mapped_kb(pid, ".tflite") == 0
    engine.dispose()


def test_a_version_without_stored_plans_asks_pl_python_for_one(engine, db_url, mlp_dir):
    """Versions registered before plans were stored: C asks PL/Python for the plan,
    then scores in C all the same."""
    from pgml_ext import client

    client.register_model(engine, "mlp_unplanned", mlp_dir)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "UPDATE pgml.model_versions SET native_plans = NULL WHERE name = 'mlp_unplanned'"
            )
        )
    session = new_engine(db_url)
    try:
        with session.connect() as c:
            got = (
                c.execute(
                    sa.text(
                        "SELECT pgml.predict_class('mlp_unplanned', example) "
                        "FROM inputs WHERE id < 20"
                    )
                )
                .scalars()
                .all()
            )
            assert python_loaded(c)
            assert status(c)["native_rows"] == 20
            want = (
                c.execute(
                    sa.text("SELECT pgml.predict_class('mlp', example) FROM inputs WHERE id < 20")
                )
                .scalars()
                .all()
            )
            assert got == want
    finally:
        session.dispose()


def _backend_threads(conn) -> int:
    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    status_lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status_lines if line.startswith("Threads:")))


def test_threads_setting_splits_litert_calls_in_c(db_url):
    """pgml.threads = 2 reaches C's LiteRT (a thread pool in the backend): same answers,
    still in C, and the model compiled for one thread is not reused for two."""
    engine = new_engine(db_url)
    query = sa.text("SELECT pgml.predict_class('mlp', pixels) FROM inputs ORDER BY id")
    with engine.connect() as c:
        one = c.execute(query).scalars().all()
        threads_before = _backend_threads(c)
        c.execute(sa.text("SET pgml.threads = 2"))
        two = c.execute(query).scalars().all()
        threads_after = _backend_threads(c)
        s = status(c)
    engine.dispose()
    assert two == one and len(one) == 1797
    assert s["native_rows"] == 2 * 1797 and s["general_rows"] == 0
    assert s["native_models"] == 2
    assert threads_after > threads_before


def test_clear_cache_forgets_native_models(db_url):
    engine = new_engine(db_url)
    with engine.connect() as c:
        first = c.execute(sa.text("SELECT pgml.classify('mlp', example) FROM inputs")).all()
        assert status(c)["native_models"] == 1
        c.execute(sa.text("SELECT pgml.clear_cache()"))
        assert status(c)["native_models"] == 0
        again = c.execute(sa.text("SELECT pgml.classify('mlp', example) FROM inputs")).all()
        assert again == first and status(c)["native_rows"] == 2 * 1797
    engine.dispose()


def _hand_written(draw) -> bytes:
    keys = st.one_of(st.sampled_from([b"pixels", b"x", b""]), st.binary(max_size=6))
    values = st.one_of(
        st.just(DIGIT.tolist()),
        st.lists(st.floats(width=32), min_size=783, max_size=785),
    )
    entries = draw(st.lists(st.tuples(keys, values), min_size=0, max_size=3))
    return _example([(k, _floats(v)) for k, v in entries])


server_inputs = st.one_of(
    fuzz_inputs,
    st.composite(_hand_written)(),
    st.tuples(fuzz_inputs, fuzz_inputs).map(lambda pair: pair[0] + pair[1]),
)


@settings(
    max_examples=SERVER_EXAMPLES,
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=server_inputs)
def test_native_and_pl_python_agree_on_any_bytes(conn, data):
    """Through the server: whatever the bytes, the same scores, class and label, or
    the same ERROR, on both paths, and never a crash."""
    sql = (
        "SELECT pgml.predict('mlp_labels', :d), pgml.predict_class('mlp_labels', :d), "
        "pgml.classify('mlp_labels', :d)"
    )
    assert outcome(conn, sql, native=True, d=data) == outcome(conn, sql, native=False, d=data)


@pytest.mark.parametrize("column", ["example", "pixels"])
def test_batches_answer_as_pl_python_in_chunks(conn, column):
    """classify_batch / predict_class_batch in C, in chunks of 100 rows (so the model is
    resized for the last, shorter chunk): the PL/Python batch answers, and the per-row
    ones; NULL Examples give NULL."""
    inputs = f"array_agg({column} ORDER BY id)"
    if column == "example":
        inputs += " || NULL::bytea"
    sql = (
        f"SELECT pgml.classify_batch('mlp_labels', {inputs}), "
        f"pgml.predict_class_batch('mlp_labels', {inputs}) FROM inputs"
    )
    conn.execute(sa.text("SET pgml.batch_chunk_rows = 100"))
    try:
        before = status(conn)
        native = outcome(conn, sql, native=True)
        after = status(conn)
        general = outcome(conn, sql, native=False)
    finally:
        conn.execute(sa.text("RESET pgml.batch_chunk_rows"))
    assert native == general and native[0] == "ok"
    assert after["native_rows"] - before["native_rows"] == 2 * 1797
    labels, classes = native[1][0]
    per_row = outcome(
        conn, f"SELECT pgml.predict_class('mlp_labels', {column}) FROM inputs ORDER BY id", True
    )
    assert classes[:1797] == [r[0] for r in per_row[1]]
    assert labels[0] == "zero" and len(labels) == len(classes)
    if column == "example":
        assert labels[-1] is None and classes[-1] is None


ODD_BATCHES = {
    "one bad Example": "ARRAY[(SELECT example FROM inputs WHERE id = 1), '\\x00ff'::bytea]",
    "NaN among arrays": "ARRAY[array_fill(0::float4, ARRAY[784]), "
    "array_fill('NaN'::float4, ARRAY[784])]",
    "rows of 28 x 28": "array_fill(0.5::float4, ARRAY[3, 28, 28])",
    "one flat array": "array_fill(0.5::float4, ARRAY[784])",
    "rows of 783": "array_fill(0.5::float4, ARRAY[2, 783])",
    "no inputs": "'{}'::bytea[]",
    "only NULLs": "ARRAY[NULL, NULL]::bytea[]",
    "2-D bytea[]": "ARRAY[ARRAY[(SELECT example FROM inputs WHERE id = 1)]]",
}


@pytest.mark.parametrize("case", sorted(ODD_BATCHES))
def test_odd_batches_get_the_pl_python_answer_or_error(conn, case):
    batch = ODD_BATCHES[case]
    sql = f"SELECT pgml.classify_batch('mlp', {batch}), pgml.predict_class_batch('mlp', {batch})"
    assert outcome(conn, sql, native=True) == outcome(conn, sql, native=False)


def test_a_cancel_stops_a_native_batch(db_url):
    engine = new_engine(db_url)
    with engine.connect() as c:
        c.execute(sa.text("SET pgml.batch_chunk_rows = 1"))
        c.execute(
            sa.text(
                "CREATE TEMP TABLE big AS SELECT array_agg(example) AS a "
                "FROM inputs, generate_series(1, 20)"
            )
        )
        c.execute(sa.text("SET statement_timeout = '100ms'"))
        with pytest.raises(sa.exc.DatabaseError) as info:
            c.execute(sa.text("SELECT pgml.classify_batch('mlp', a) FROM big")).all()
        assert info.value.orig.args[0]["C"] == "57014"
        c.rollback()
        assert c.execute(sa.text("SELECT pgml.classify('mlp', pixels) FROM inputs")).all()
    engine.dispose()


def test_only_the_litert_version_native_c_was_built_for_is_used(monkeypatch):
    """src/native.c declares LiteRT's C API by hand: another ai-edge-litert version
    gives no library, so PL/Python scores (pyproject.toml pins the version too)."""
    import importlib.metadata

    from pgml_ext.indb import model

    assert model.litert_library().endswith("ai_edge_litert/libLiteRt.so")
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.4.0")
    assert model.litert_library() is None
