"""Differential fuzz: src/example.c (the C scorer's tf.Example reader) against upb.

For every input, an answer from C must be upb's answer (same floats, bit for bit);
C may decline anything (the row then goes to PL/Python, i.e. to upb), but it must
take every Example of the plain form. Inputs: Examples generated with random
features, then mutated at the wire level (bytes flipped, cut, inserted; fields
duplicated, re-tagged, concatenated; unknown fields). CI runs a short version; `make
fuzz` runs 1,000,000 inputs. The C file is built here on its own (no PostgreSQL
headers); `make sanitize` runs this module against an ASan/UBSan build of it.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from pgml_ext.indb import examples

ROOT = Path(__file__).resolve().parents[1]
INPUTS = int(os.environ.get("PGML_FUZZ_PARSER", "40000"))
SANITIZE = os.environ.get("PGML_SANITIZE_FLAGS", "")


class Feature(ctypes.Structure):
    """src/example.h's PgmlFeature."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("kind", ctypes.c_int),
        ("count", ctypes.c_size_t),
        ("values", ctypes.c_void_p),
        ("found", ctypes.c_int),
    ]


KINDS = {"float_list": (2, "<f4"), "int64_list": (3, "<i8"), "bytes_list": (1, None)}


class Bytes(ctypes.Structure):
    """src/example.h's PgmlBytes: a value where it lies in the Example."""

    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _values(out, kind: str, count: int, buf: int, size: int):
    """What C wrote for a feature: the bytes of its numbers, or its bytes values (each
    checked to lie inside the input: buf .. buf + size)."""
    if kind != "bytes_list":
        return out.raw[: count * np.dtype(KINDS[kind][1]).itemsize]
    got = []
    for b in (Bytes * count).from_buffer(out):
        assert b.len == 0 or buf <= b.data and b.data + b.len <= buf + size
        got.append(ctypes.string_at(b.data, b.len) if b.len else b"")
    return tuple(got)


@pytest.fixture(scope="module")
def read(tmp_path_factory):
    """pgml_example_read on DATA for [(name, kind, count)]: per feature its values as
    bytes (None if absent), or None when C declines."""
    lib = tmp_path_factory.mktemp("parser") / "example.so"
    flags = SANITIZE.split() or ["-O2"]
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wall", "-Werror", *flags, "-o", str(lib), "src/example.c"],
        cwd=ROOT,
        check=True,
    )
    fn = ctypes.CDLL(str(lib)).pgml_example_read
    fn.restype = ctypes.c_int
    fn.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.POINTER(Feature),
        ctypes.c_int,
        ctypes.c_int,
    ]

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def c_read(data: bytes, wanted: list[tuple[str, str, int]], only: bool = False):
        outs = [ctypes.create_string_buffer(16 * count) for _, _, count in wanted]
        features = (Feature * len(wanted))(
            *(
                Feature(name.encode(), KINDS[kind][0], count, ctypes.addressof(out), -1)
                for (name, kind, count), out in zip(wanted, outs, strict=True)
            )
        )
        # exactly LEN bytes of malloc's: under ASan, one byte more read is a report
        buf = libc.malloc(max(len(data), 1))
        try:
            ctypes.memmove(buf, data, len(data))
            if not fn(buf, len(data), features, len(wanted), int(only)):
                return None
            return [
                _values(out, kind, count, buf, len(data)) if f.found else None
                for f, out, (_, kind, count) in zip(features, outs, wanted, strict=True)
            ]
        finally:
            libc.free(buf)

    return c_read


@pytest.fixture(scope="module")
def parse(read):
    """The one-input reader: FEATURE (else the only feature) as COUNT floats."""

    def c_floats(data: bytes, feature: str, count: int) -> bytes | None:
        got = read(data, [(feature, "float_list", count)], only=True)
        return None if got is None or got[0] is None else got[0]

    return c_floats


def upb_floats(data: bytes, feature: str, count: int) -> bytes | None:
    """What the PL/Python path (DenseReader, upb) reads from DATA."""
    try:
        features = examples.example_class().FromString(data).features.feature
    except DecodeError:
        return None
    name = feature if feature in features else None
    if name is None and len(features) == 1:
        name = next(iter(features))
    if name is None:
        return None
    f = features[name]
    if f.WhichOneof("kind") != "float_list" or len(f.float_list.value) != count:
        return None
    return np.array(f.float_list.value, dtype="<f4").tobytes()


NAMES = ["x", "y", "pixels", "", "é", "x\x00", "label"]
WANTED = [n for n in NAMES if "\x00" not in n]  # a plan's feature name is SQL text: no NUL


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def generated(rng: np.random.Generator, count: int) -> bytes:
    """A plain Example: a few features of random kinds, one often the right one."""
    ex = examples.example_class()()
    for _ in range(int(rng.integers(0, 4))):
        name = NAMES[int(rng.integers(len(NAMES)))]
        f = ex.features.feature[name]
        kind = int(rng.integers(4))
        n = count if rng.random() < 0.7 else int(rng.integers(0, count + 2))
        if kind in (0, 1):
            values = rng.standard_normal(n).astype(np.float32)
            if n and rng.random() < 0.1:
                values[int(rng.integers(n))] = np.nan
            f.float_list.value.extend(values.tolist())
        elif kind == 2:
            f.int64_list.value.extend(rng.integers(-(2**62), 2**62, n).tolist())
        else:
            lengths = rng.integers(0, 5, n)
            f.bytes_list.value.extend(
                [bytes(rng.integers(0, 256, int(k), dtype=np.uint8)) for k in lengths]
            )
    return ex.SerializeToString(deterministic=True)  # reproducible from the seed


def mutated(rng: np.random.Generator, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(9))
        pos = int(rng.integers(0, len(out) + 1))
        if op == 0 and out:  # flip a byte
            out[min(pos, len(out) - 1)] ^= 1 << int(rng.integers(8))
        elif op == 1:  # cut
            del out[pos : pos + int(rng.integers(1, 16))]
        elif op == 2:  # insert random bytes
            out[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 6)), dtype=np.uint8))
        elif op == 3:  # the whole message again (a valid merge)
            out += data
        elif op == 4:  # an unknown or odd field at the end: any number, any wire type
            number = int(rng.choice([0, 1, 2, 3, 15, 16, 2**29 - 1, 2**29, 2**32 - 1]))
            wire = int(rng.integers(8))
            out += _varint((number << 3) | wire) + bytes(rng.integers(0, 256, 3, dtype=np.uint8))
        elif op == 5 and out:  # a tag re-encoded non-minimally
            out[0:1] = bytes([out[0] | 0x80, 0x00])
        elif op == 6:  # truncate
            del out[pos:]
        elif op == 7:  # a length made larger or smaller
            if out:
                i = min(pos, len(out) - 1)
                out[i] = (out[i] + int(rng.integers(-2, 3))) & 0xFF
        else:  # a second feature map with the same key
            extra = examples.example_class()()
            extra.features.feature["x"].float_list.value.extend([1.0] * 4)
            out += extra.SerializeToString()
    return bytes(out)


def _differential(seed: int, inputs: int, c_answer, upb_answer) -> int:
    """C_ANSWER and UPB_ANSWER (data, rng, count) on generated and mutated Examples: an
    answer from C is upb's, and C takes every plain Example upb takes. Answers counted."""
    rng = np.random.default_rng(int(os.environ.get("PGML_FUZZ_SEED", "0")) + seed)
    answered = plain_taken = plain_fit = 0
    for i in range(inputs):
        count = 4 if i % 8 else 784
        data = generated(rng, count)
        is_plain = rng.random() < 0.3
        if not is_plain:
            data = mutated(rng, data)
        question = rng.random(4)
        got = c_answer(data, question, count)
        want = upb_answer(data, question, count)
        if got is not None:
            answered += 1
            assert got == want, (data.hex(), question, count)
        if is_plain and want is not None:
            plain_fit += 1
            plain_taken += got is not None
    # the C path is not trivially declining: it takes every plain Example that fits
    assert plain_taken == plain_fit > 0
    print(f"\n{inputs} inputs: C answered {answered}, all as upb; plain taken {plain_taken}")
    return answered


def _feature_asked(question: np.ndarray) -> str:
    return "x" if question[0] < 0.8 else WANTED[int(question[1] * len(WANTED))]


def test_c_reader_answers_only_as_upb_does(parse):
    answered = _differential(
        0,
        INPUTS,
        lambda data, q, count: parse(data, _feature_asked(q), count),
        lambda data, q, count: upb_floats(data, _feature_asked(q), count),
    )
    assert answered > INPUTS // 20


def test_c_reader_edge_cases(parse):
    x = np.arange(4, dtype="<f4")
    good = examples.encode({"x": x})
    assert parse(good, "x", 4) == x.tobytes()
    assert parse(good, "other", 4) == x.tobytes()  # the only feature
    assert parse(good, "x", 5) is None
    assert parse(b"", "x", 4) is None
    assert parse(good[:-1], "x", 4) is None
    assert parse(good + b"\x80\x00\x00", "x", 4) is None  # field 0, two-byte tag
    assert parse(good + good, "x", 4) is None  # features twice: upb merges


def upb_read(data: bytes, wanted: list[tuple[str, str, int]]) -> list | None:
    """What ParseExample takes from DATA (exact names, absent allowed), as bytes."""
    try:
        features = examples.example_class().FromString(data).features.feature
    except DecodeError:
        return None
    got = []
    for name, kind, count in wanted:
        if name not in features:
            got.append(None)
            continue
        f = features[name]
        values = getattr(f, kind).value
        if f.WhichOneof("kind") != kind or len(values) != count:
            return None
        if kind == "bytes_list":
            got.append(tuple(values))
        else:
            got.append(np.array(values, dtype=KINDS[kind][1]).tobytes())
    return got


def _two_features(question: np.ndarray, count: int) -> list[tuple[str, str, int]]:
    """Two features of two different names and kinds (any two of float, int64, bytes)."""
    first = int(question[1] * len(WANTED))
    second = (first + 1 + int(question[2] * (len(WANTED) - 1))) % len(WANTED)
    pair = int(question[3] * 6)
    kinds = list(KINDS)
    kinds = [kinds[pair % 3], kinds[(pair % 3 + 1 + pair // 3) % 3]]
    return [(WANTED[first], kinds[0], count), (WANTED[second], kinds[1], count)]


def test_c_reader_of_several_features_answers_only_as_upb_does(read):
    """The multi-input form: two features of float, int64 or bytes by exact name, either
    absent."""
    answered = _differential(
        1,
        INPUTS // 2,
        lambda data, q, count: read(data, _two_features(q, count)),
        lambda data, q, count: upb_read(data, _two_features(q, count)),
    )
    assert answered > INPUTS // 40


def test_c_reader_of_int64s_edge_cases(read):
    ints = np.array([0, -1, 2**63 - 1, -(2**63)], dtype="<i8")
    good = examples.example_class()()
    good.features.feature["n"].int64_list.value.extend(ints.tolist())
    data = good.SerializeToString()
    assert read(data, [("n", "int64_list", 4)]) == [ints.tobytes()]
    assert read(data, [("n", "int64_list", 3)]) is None  # one value too many
    assert read(data, [("n", "int64_list", 5)]) is None
    assert read(data, [("n", "float_list", 4)]) is None  # the wrong kind
    assert read(data, [("m", "int64_list", 4)]) == [None]  # absent: the caller's default
    assert read(data, [("m", "int64_list", 4)], only=True) == [ints.tobytes()]  # the only one


def test_c_reader_of_bytes_edge_cases(read):
    good = examples.example_class()()
    values = [b"north", b"", b"\xff\x00", b"x" * 300]
    good.features.feature["r"].bytes_list.value.extend(values)
    data = good.SerializeToString()
    assert read(data, [("r", "bytes_list", 4)]) == [tuple(values)]
    assert read(data, [("r", "bytes_list", 3)]) is None
    assert read(data, [("r", "bytes_list", 5)]) is None
    assert read(data, [("r", "int64_list", 4)]) is None  # the wrong kind
    empty = examples.example_class()()
    empty.features.feature["r"].bytes_list.SetInParent()
    assert read(empty.SerializeToString(), [("r", "bytes_list", 1)]) is None  # no values
