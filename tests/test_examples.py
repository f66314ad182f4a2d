"""tf.Example decoding without TensorFlow, checked against TensorFlow's own protos."""

import numpy as np
import pytest

from pgml_ext.indb import examples
from pgml_ext.indb.errors import INVALID_BINARY, PgmlError

tf = pytest.importorskip("tensorflow")


def test_decodes_what_tensorflow_writes():
    ex = tf.train.Example(
        features=tf.train.Features(
            feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5, 1.5])),
                "n": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
                "s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"ab"])),
            }
        )
    )
    got = examples.decode(ex.SerializeToString())
    assert got["x"].dtype == np.float32 and got["x"].tolist() == [0.5, 1.5]
    assert got["n"].dtype == np.int64 and got["n"].tolist() == [7]
    assert got["s"].tolist() == [b"ab"]


def test_encodes_what_tensorflow_reads():
    data = examples.encode({"x": np.arange(784, dtype=np.float32)})
    parsed = tf.io.parse_single_example(data, {"x": tf.io.FixedLenFeature([784], tf.float32)})
    np.testing.assert_array_equal(parsed["x"].numpy(), np.arange(784, dtype=np.float32))


def test_empty_bytes_is_an_example_without_features():
    assert examples.decode(b"") == {}


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"garbage!", b"\x0a\x05\x0a\x03"])
def test_garbage_is_a_clean_error(data):
    with pytest.raises(PgmlError) as info:
        examples.decode(data)
    assert info.value.sqlstate == INVALID_BINARY
    assert "tf.train.Example" in info.value.message
