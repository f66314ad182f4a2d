"""Decode serialized ``tf.train.Example`` protos with ``protobuf`` alone.

Importing TensorFlow costs seconds and hundreds of MB per backend, so the message
classes are built here from their descriptors (the same fields as TensorFlow's
``feature.proto`` and ``example.proto``) in a private descriptor pool, which also
keeps them from clashing with TensorFlow's own registration when both are loaded.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
from google.protobuf.message import DecodeError

from pgml_ext.indb.errors import INVALID_BINARY, PgmlError

if TYPE_CHECKING:
    from google.protobuf import descriptor_pb2


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    # Imported here, on the first Example: ~20 ms that float4[]-only backends (and the
    # parallel workers scoring them) do not pay.
    from google.protobuf import descriptor_pb2

    _F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(
        name="pgml_ext/tf_example.proto", package="tensorflow", syntax="proto3"
    )

    def message(name: str, *fields: tuple, parent=None):
        msg = (parent.nested_type if parent else fd.message_type).add(name=name)
        for number, fname, ftype, label, type_name, packed, oneof in fields:
            f = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
            if packed:
                f.options.packed = True
            if oneof is not None:
                f.oneof_index = oneof
        return msg

    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    message("BytesList", (1, "value", _F.TYPE_BYTES, rep, None, False, None))
    message("FloatList", (1, "value", _F.TYPE_FLOAT, rep, None, True, None))
    message("Int64List", (1, "value", _F.TYPE_INT64, rep, None, True, None))
    feature = message(
        "Feature",
        (1, "bytes_list", _F.TYPE_MESSAGE, opt, ".tensorflow.BytesList", False, 0),
        (2, "float_list", _F.TYPE_MESSAGE, opt, ".tensorflow.FloatList", False, 0),
        (3, "int64_list", _F.TYPE_MESSAGE, opt, ".tensorflow.Int64List", False, 0),
    )
    feature.oneof_decl.add(name="kind")
    features = message(
        "Features",
        (1, "feature", _F.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry", False, None),
    )
    entry = message(
        "FeatureEntry",
        (1, "key", _F.TYPE_STRING, opt, None, False, None),
        (2, "value", _F.TYPE_MESSAGE, opt, ".tensorflow.Feature", False, None),
        parent=features,
    )
    entry.options.map_entry = True
    message("Example", (1, "features", _F.TYPE_MESSAGE, opt, ".tensorflow.Features", False, None))
    return fd


@functools.cache
def example_class():
    """The ``tensorflow.Example`` message class, wire-compatible with TensorFlow's."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Features = dict[str, np.ndarray]


def decode(data: bytes, model: str | None = None) -> Features:
    """Serialized tf.Example -> {feature name: 1-D numpy array}.

    float_list -> float32, int64_list -> int64, bytes_list -> object array of bytes.
    """
    example = example_class()()
    try:
        example.ParseFromString(data)
    except DecodeError as e:
        where = f" for model '{model}'" if model else ""
        raise PgmlError(
            f"input{where} is not a serialized tf.train.Example ({len(data)} bytes)",
            INVALID_BINARY,
            detail=str(e),
            hint="Store inputs as tf.train.Example(...).SerializeToString(), "
            "or pass a float4[] instead.",
        ) from None
    out: Features = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "float_list":
            out[name] = floats(feature.float_list)
        elif kind == "int64_list":
            out[name] = np.asarray(feature.int64_list.value, dtype=np.int64)
        elif kind == "bytes_list":
            out[name] = np.asarray(list(feature.bytes_list.value), dtype=object)
        else:
            out[name] = np.zeros(0, dtype=np.float32)
    return out


def floats(float_list) -> np.ndarray:
    """A FloatList's values as float32, read from its packed wire form (field 1, a
    length, little-endian floats): protobuf re-serializes it in one copy, which is 2x
    faster than converting the repeated field value by value."""
    raw = float_list.SerializeToString()
    if raw[:1] == b"\x0a":
        length, start = 0, 1
        for shift, byte in zip(range(0, 35, 7), raw[1:6], strict=False):
            start += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
        if length % 4 == 0 and start + length <= len(raw):
            return np.frombuffer(raw, "<f4", count=length // 4, offset=start)
    return np.asarray(float_list.value, dtype=np.float32)


def float_header(count: int) -> bytes:
    """The wire prefix of a FloatList of COUNT floats: field 1 (packed) and byte length."""
    length, out = 4 * count, bytearray(b"\x0a")
    while True:
        out.append((length & 0x7F) | (0x80 if length >= 0x80 else 0))
        length >>= 7
        if not length:
            return bytes(out)


def floats_of_count(float_list, header: bytes, count: int) -> np.ndarray | None:
    """COUNT float32 values of a FloatList (HEADER = float_header(COUNT)), or None if
    it holds another number of values."""
    raw = float_list.SerializeToString()
    if not raw.startswith(header):
        return None
    return np.frombuffer(raw, "<f4", count=count, offset=len(header))


class DenseReader:
    """Reads COUNT float32 values of one float_list feature from serialized Examples,
    or None when an Example does not fit (not protobuf, feature missing or of another
    kind or length): the caller's general path then says what is wrong. An Example with
    a single feature pairs with the input whatever the feature's name, unless EXACT (a
    graph's own parse reads its keys only).

    The hot loop of per-row and batch scoring: one parse, one view, no dicts.
    """

    __slots__ = ("_feature", "_single", "_exact", "_count", "_header", "_parse")

    def __init__(self, feature: str, count: int, exact: bool = False) -> None:
        self._feature = self._single = feature
        self._exact = exact
        self._count = count
        self._header = float_header(count)
        # A new message per row: re-parsing into one message is 2x slower (upb must
        # detach the submessages Python still references before it can clear them).
        self._parse = example_class().FromString

    def __call__(self, data: bytes) -> np.ndarray | None:
        try:
            features = self._parse(data).features.feature
        except DecodeError:
            return None
        name = self._feature
        if name not in features:
            if len(features) != 1 or self._exact:
                return None
            # The single feature's name is usually the same on every row: remember it
            # (iterating a protobuf map from Python is slow).
            name = self._single
            if name not in features:
                name = self._single = next(iter(features))
        return floats_of_count(features[name].float_list, self._header, self._count)


def dense_floats(
    batch: list[bytes], feature: str, inner: tuple, exact: bool = False
) -> np.ndarray | None:
    """[len(batch), *inner] float32 from one float_list feature of each Example, or None
    if any Example does not fit (see DenseReader) or holds NaN or Infinity: the
    caller's row-by-row path then says what is wrong."""
    size = int(np.prod(inner))
    out = np.empty((len(batch), size), dtype=np.float32)
    read = DenseReader(feature, size, exact)
    for i, data in enumerate(batch):
        row = read(data)
        if row is None:
            return None
        out[i] = row
    return out.reshape((len(batch), *inner)) if np.isfinite(out).all() else None


def encode(features: dict[str, np.ndarray | list]) -> bytes:
    """{name: values} -> serialized tf.Example (floats, ints or bytes by dtype)."""
    example = example_class()()
    for name, values in features.items():
        arr = np.asarray(values)
        feature = example.features.feature[name]
        if arr.dtype.kind == "f":
            feature.float_list.value.extend(arr.astype(np.float32).ravel().tolist())
        elif arr.dtype.kind in "iub":
            feature.int64_list.value.extend(arr.astype(np.int64).ravel().tolist())
        else:
            feature.bytes_list.value.extend(
                v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel()
            )
    return example.SerializeToString()
