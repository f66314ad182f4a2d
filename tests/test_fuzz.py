"""Fuzz the tf.Example decoder and the feeding code with hypothesis.

Whatever the bytes, decoding and feeding end in a result or a PgmlError (a clean SQL
ERROR) — never another exception, a crash or a hang (each input has a deadline).
CI runs a short version; `make fuzz` runs 6 targets x 25,000 = 150,000 inputs.
"""

import os
from datetime import timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgml_ext.indb import examples, signatures
from pgml_ext.indb.errors import PgmlError
from pgml_ext.indb.rowpath import RowPath
from pgml_ext.indb.signatures import Signature

EXAMPLES = int(os.environ.get("PGML_FUZZ_EXAMPLES", "800"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(milliseconds=500),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=False,
)

F784 = {"dtype": "float32", "shape": [None, 784]}
TENSOR = Signature(
    "serving_default",
    "",
    {"pixels": F784},
    {"output_0": {"dtype": "float32", "shape": [None, 10]}},
    None,
)
CLASSIFY = Signature(
    "serving_default",
    "tensorflow/serving/classify",
    {"inputs": {"dtype": "string", "shape": [None]}},
    {"scores": {"dtype": "float32", "shape": [None, 10]}},
    {"x": {"dtype": "float32", "shape": [784]}},
)
VALID = examples.encode({"x": np.linspace(0, 1, 784, dtype=np.float32)})


@st.composite
def mutated(draw):
    """Valid Examples with bytes flipped, cut, or spliced: deeper than random bytes."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@st.composite
def structured(draw):
    """Well-formed Examples with arbitrary feature names, kinds and lengths."""
    features = {}
    for name in draw(st.lists(st.sampled_from(["x", "pixels", "y", ""]), max_size=3, unique=True)):
        kind = draw(st.sampled_from(["f", "i", "b"]))
        n = draw(st.sampled_from([0, 1, 783, 784, 785]))
        if kind == "f":
            values = draw(st.lists(st.floats(width=32), min_size=n, max_size=n))
            features[name] = np.asarray(values, dtype=np.float32)
        elif kind == "i":
            features[name] = np.full(n, draw(st.integers(-(2**63), 2**63 - 1)), dtype=np.int64)
        else:
            features[name] = np.asarray([b"v"] * n, dtype=object)
    return examples.encode(features)


inputs = st.one_of(st.binary(max_size=4096), mutated(), structured())


def _only_clean_errors(fn, data) -> None:
    try:
        fn(data)
    except PgmlError as e:
        assert e.sqlstate and e.message


@FUZZ
@given(inputs)
def test_decode(data):
    _only_clean_errors(examples.decode, data)


@FUZZ
@given(inputs)
def test_feed_a_tensor_signature(data):
    _only_clean_errors(lambda d: signatures.feeds_for_example(TENSOR, d, "m", None), data)


@FUZZ
@given(inputs)
def test_feed_a_classify_signature(data):
    _only_clean_errors(lambda d: signatures.feeds_for_example(CLASSIFY, d, "m", None), data)


@FUZZ
@given(st.lists(inputs, min_size=1, max_size=4))
def test_feed_a_batch(batch):
    _only_clean_errors(lambda b: signatures.feeds_for_examples(TENSOR, b, "m", None), batch)


class _Echo:
    """A runner that returns the row it is fed: what the fast path would score."""

    output_index = {"output_0": 0}

    def one(self, name, value, output):
        return value[0]


FAST = RowPath(_Echo(), TENSOR, "output_0", None, True)


@FUZZ
@given(inputs)
def test_fast_path_feeds_what_the_general_path_feeds(data):
    """The per-row fast path answers only when the general path would feed the very
    same values; otherwise it steps aside (None) and the general path decides."""
    fast = FAST.example(data)
    try:
        general = signatures.feeds_for_example(TENSOR, data, "m", None)["pixels"][0]
    except PgmlError:
        general = None
    if fast is not None:
        assert general is not None and np.array_equal(fast, general)


@FUZZ
@given(
    st.lists(st.floats(width=32), min_size=0, max_size=790).map(
        lambda v: np.asarray(v, dtype=np.float32)
    )
)
def test_fast_path_on_float_arrays(values):
    fast = FAST.tensor(values)
    try:
        general = signatures.feeds_for_tensor(TENSOR, values, "m")["pixels"][0]
    except PgmlError:
        general = None
    if fast is not None:
        assert general is not None and np.array_equal(fast, general)
    if general is not None:
        assert fast is not None  # every input the general path takes, the fast one takes
