"""Every scoring function through a real server: both input forms, both TF Serving
signature styles (predict on floats, classify on serialized Examples) and a Keras
export, plus create_function, per-call versions and NULL handling."""

import pytest
import sqlalchemy as sa

from conftest import LABELS, committed, rows, scalar, sql_error

pytestmark = pytest.mark.usefixtures("models", "inputs")

ACCURACY = "SELECT avg(({expr} = label{cast})::int) FROM inputs"


@pytest.mark.parametrize("model", ["mlp", "mnist"])
@pytest.mark.parametrize("column", ["example", "pixels"])
def test_classify_and_predict_class_are_accurate(engine, model, column):
    classify = scalar(
        engine, ACCURACY.format(expr=f"pgml.classify('{model}', {column})", cast="::text")
    )
    index = scalar(
        engine, ACCURACY.format(expr=f"pgml.predict_class('{model}', {column})", cast="")
    )
    assert classify > 0.95 and index > 0.95
    assert classify == index


def test_classify_uses_registered_labels(engine, digits):
    got = rows(
        engine, "SELECT pgml.classify('mlp_labels', pixels), label FROM inputs ORDER BY id LIMIT 50"
    )
    assert sum(LABELS[label] == text for text, label in got) >= 48


def test_classification_signature_returns_its_own_classes(engine):
    # TF Serving's classify signature outputs classes (strings) and top-k scores
    got = rows(
        engine, "SELECT pgml.classify('mnist', example), label FROM inputs ORDER BY id LIMIT 20"
    )
    assert all(text.isdigit() for text, _ in got)
    assert sum(text == str(label) for text, label in got) >= 19


def test_predict_returns_probabilities(engine):
    for model, column in [("mlp", "example"), ("mlp", "pixels"), ("mnist", "pixels")]:
        scores = scalar(
            engine, f"SELECT pgml.predict('{model}', {column}) FROM inputs WHERE id = 0"
        )
        assert len(scores) == 10 and abs(sum(scores) - 1) < 1e-4
        assert max(range(10), key=scores.__getitem__) == 0


def test_output_and_signature_arguments(engine):
    # bytea through the classification signature: TF Serving's sorted top-k scores
    topk = scalar(
        engine, "SELECT pgml.predict('mnist', example, output => 'scores') FROM inputs WHERE id = 3"
    )
    assert topk == sorted(topk, reverse=True)
    # the same Example through predict_images, named per call: scores by class
    by_class = scalar(
        engine,
        "SELECT pgml.predict('mnist', example, signature => 'predict_images') "
        "FROM inputs WHERE id = 3",
    )
    assert max(range(10), key=by_class.__getitem__) == 3
    assert sorted(by_class, reverse=True) == pytest.approx(topk, abs=1e-6)


def test_create_function_makes_classify_work_as_written(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pgml.create_function('classify', 'mlp')"))
        conn.execute(sa.text("SELECT pgml.create_function('digit_scores', 'mnist', 'predict')"))
        conn.execute(sa.text("SELECT pgml.create_function('digit', 'mlp', 'predict_class')"))
    assert scalar(engine, ACCURACY.format(expr="classify(example)", cast="::text")) > 0.95
    assert scalar(engine, ACCURACY.format(expr="classify(pixels)", cast="::text")) > 0.95
    assert scalar(engine, ACCURACY.format(expr="digit(pixels)", cast="")) > 0.95
    assert len(scalar(engine, "SELECT digit_scores(pixels) FROM inputs LIMIT 1")) == 10


def test_create_function_quotes_names(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pgml.create_function('Odd Name; DROP TABLE inputs', 'mlp')"))
    assert (
        scalar(engine, 'SELECT "Odd Name; DROP TABLE inputs"(pixels) FROM inputs WHERE id = 1')
        == "1"
    )
    assert scalar(engine, "SELECT count(*) FROM inputs") > 0


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT pgml.predict('mlp', NULL::bytea)",
        "SELECT pgml.predict('mlp', NULL::float4[])",
        "SELECT pgml.classify('mlp', NULL::bytea)",
        "SELECT pgml.classify(NULL, NULL::float4[])",
        "SELECT pgml.predict_class('mlp', NULL::bytea)",
        "SELECT pgml.predict_class('mlp', NULL::float4[])",
    ],
)
def test_null_in_null_out(engine, sql):
    assert scalar(engine, sql) is None


def test_null_rows_among_real_rows(engine):
    got = rows(
        engine,
        "SELECT pgml.classify('mlp', CASE WHEN id % 2 = 0 THEN example END) "
        "FROM inputs ORDER BY id LIMIT 4",
    )
    assert [r[0] is None for r in got] == [False, True, False, True]


def test_load_model_from_server_path(engine, mlp_dir):
    version = committed(
        engine, "SELECT pgml.load_model('from_path', :p, labels => :l)", p=str(mlp_dir), l=LABELS
    )
    assert version == 1
    assert (
        scalar(engine, "SELECT pgml.classify('from_path', pixels) FROM inputs WHERE id = 7")
        == "seven"
    )


def test_models_view_describes_signatures(engine):
    got = rows(
        engine,
        "SELECT name, version, runtime, signature, size, checksum, current "
        "FROM pgml.models WHERE name = 'mnist'",
    )
    ((name, version, runtime, signature, size, checksum, current),) = got
    assert runtime == "litert" and current and size > 0 and len(checksum) == 64
    assert set(signature) == {"predict_images", "serving_default"}
    assert signature["serving_default"]["features"] == {
        "x": {"dtype": "float32", "shape": [784], "default": None}  # required
    }
    assert signature["predict_images"]["inputs"]["images"]["shape"] == [None, 784]
    assert signature["serving_default"]["outputs"]["classes"]["dtype"] == "string"


def test_cached_models_lists_what_this_backend_loaded(engine):
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pgml.clear_cache()"))
        conn.execute(sa.text("SELECT pgml.classify('mlp', pixels) FROM inputs LIMIT 3")).all()
        cached = conn.execute(
            sa.text("SELECT name, version, runtime FROM pgml.cached_models()")
        ).all()
    assert cached == [("mlp", 1, "litert")]


@pytest.mark.parametrize("cast", ["float8[]", "numeric[]"])
def test_arrays_of_any_number_type_score_as_real(engine, cast):
    """double precision[] (ARRAY[...] of float8 columns) and numeric[] take the float4[]
    forms' path: the values cast to real, so the same answers, per row and in batches."""
    for fn in ("classify", "predict_class", "predict"):
        got = rows(engine, f"SELECT pgml.{fn}('mlp', pixels::{cast}) FROM inputs ORDER BY id")
        want = rows(engine, f"SELECT pgml.{fn}('mlp', pixels) FROM inputs ORDER BY id")
        assert got == want and len(got) == 1797
    batch = "SELECT pgml.classify_batch('mlp', array_agg(pixels{cast} ORDER BY id)) FROM inputs"
    assert scalar(engine, batch.format(cast=f"::{cast}")) == scalar(engine, batch.format(cast=""))
    same = scalar(
        engine,
        f"SELECT bool_and(pgml_internal.tensor(pixels::{cast}, 'mlp') = "
        "pgml_internal.tensor(pixels, 'mlp')) FROM inputs",
    )
    assert same is True


def test_integer_arrays_are_cast_to_real(engine):
    for cast in ("int2[]", "int4[]", "int8[]"):
        got = scalar(engine, f"SELECT pgml_internal.tensor(ARRAY[0, 7, -3, 16]::{cast}, 'mlp')")
        assert got == scalar(engine, "SELECT pgml_internal.tensor('{0,7,-3,16}'::real[], 'mlp')")


@pytest.mark.parametrize(
    ("value", "state", "words"),
    [
        ("ARRAY['a', 'b']", "42804", "takes numbers, not an array of text"),
        ("ARRAY[true, false]", "42804", "takes numbers, not an array of boolean"),
        ("ARRAY[1e300::float8]", "22003", "out of range for real"),
        ("ARRAY[1e-300::float8]", "22003", "out of range for real"),
        ("ARRAY[1, NULL]::float8[]", "22004", "contains NULL elements"),
    ],
)
def test_arrays_that_are_not_numbers_for_real_are_refused(engine, value, state, words):
    code, message, _ = sql_error(engine, f"SELECT pgml.classify('mlp', {value})")
    assert code == state and words in message and "'mlp'" in message
