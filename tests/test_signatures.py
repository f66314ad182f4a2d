"""Signature choice and feeding, on stored descriptions (no TensorFlow, no server)."""

import numpy as np
import pytest

from pgml_ext.indb import examples, signatures
from pgml_ext.indb.errors import (
    INVALID_PARAMETER,
    UNDEFINED_OBJECT,
    WRONG_OBJECT_TYPE,
    PgmlError,
)
from pgml_ext.indb.signatures import Signature

F784 = {"dtype": "float32", "shape": [None, 784]}
SERVING = {
    "predict_images": Signature(
        "predict_images",
        "tensorflow/serving/predict",
        {"images": F784},
        {"scores": {"dtype": "float32", "shape": [None, 10]}},
        None,
    ),
    "serving_default": Signature(
        "serving_default",
        "tensorflow/serving/classify",
        {"inputs": {"dtype": "string", "shape": [None]}},
        {
            "classes": {"dtype": "string", "shape": [None, 10]},
            "scores": {"dtype": "float32", "shape": [None, 10]},
        },
        {"x": {"dtype": "float32", "shape": [784]}},
    ),
}
KERAS = {
    "serving_default": Signature(
        "serving_default",
        "",
        {"pixels": F784},
        {"output_0": {"dtype": "float32", "shape": [None, 10]}},
        None,
    )
}


def test_bytea_prefers_the_signature_that_takes_examples():
    assert signatures.choose(SERVING, "m", "example", None).name == "serving_default"


def test_float_array_takes_the_float_signature():
    assert signatures.choose(SERVING, "m", "tensor", None).name == "predict_images"


def test_named_signature_wins_and_unknown_is_an_error():
    assert signatures.choose(SERVING, "m", "example", "predict_images").name == "predict_images"
    with pytest.raises(PgmlError) as info:
        signatures.choose(SERVING, "m", "example", "nope")
    assert info.value.sqlstate == UNDEFINED_OBJECT and "predict_images" in info.value.detail


def test_no_float_signature_is_wrong_object_type():
    only_examples = {"serving_default": SERVING["serving_default"]}
    with pytest.raises(PgmlError) as info:
        signatures.choose(only_examples, "m", "tensor", None)
    assert info.value.sqlstate == WRONG_OBJECT_TYPE


def test_single_input_pairs_with_single_feature_whatever_the_names():
    data = examples.encode({"x": np.ones(784, dtype=np.float32)})
    feeds = signatures.feeds_for_example(KERAS["serving_default"], data, "m", None)
    assert feeds["pixels"].shape == (1, 784) and feeds["pixels"].dtype == np.float32


def test_feature_map_and_missing_feature():
    sig = Signature("s", "", {"a": F784, "b": F784}, {"y": F784}, None)
    data = examples.encode({"fa": np.ones(784), "b": np.zeros(784)})
    feeds = signatures.feeds_for_example(sig, data, "m", {"a": "fa"})
    assert set(feeds) == {"a", "b"}
    with pytest.raises(PgmlError) as info:
        signatures.feeds_for_example(sig, data, "m", None)
    assert info.value.sqlstate == INVALID_PARAMETER and "'a'" in info.value.message


def test_parse_spec_checks_name_type_and_length():
    sig = SERVING["serving_default"]
    cases = {
        "no feature 'x'": {"y": np.ones(784, dtype=np.float32)},
        "as integers": {"x": np.ones(784, dtype=np.int64)},
        "with 783 values": {"x": np.ones(783, dtype=np.float32)},
    }
    for expected, features in cases.items():
        with pytest.raises(PgmlError) as info:
            signatures.feeds_for_example(sig, examples.encode(features), "m", None)
        assert expected in info.value.message


def test_float_array_shapes():
    sig = KERAS["serving_default"]
    assert signatures.feeds_for_tensor(sig, np.ones(784, np.float32), "m")["pixels"].shape == (
        1,
        784,
    )
    assert signatures.feeds_for_tensor(sig, np.ones((28, 28), np.float32), "m")["pixels"].shape == (
        1,
        784,
    )
    with pytest.raises(PgmlError) as info:
        signatures.feeds_for_tensor(sig, np.ones(10, np.float32), "m")
    assert "784" in info.value.message and "got 10" in info.value.message


def test_output_choice():
    assert signatures.score_output(SERVING["serving_default"], "m", None) == "scores"
    assert signatures.score_output(KERAS["serving_default"], "m", None) == "output_0"
    two = Signature("s", "", {"a": F784}, {"p": F784, "q": F784}, None)
    with pytest.raises(PgmlError):
        signatures.score_output(two, "m", None)
    assert signatures.score_output(two, "m", "q") == "q"
