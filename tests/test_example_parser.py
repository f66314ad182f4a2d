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


@pytest.fixture(scope="module")
def parse(tmp_path_factory):
    lib = tmp_path_factory.mktemp("parser") / "example.so"
    flags = SANITIZE.split() or ["-O2"]
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wall", "-Werror", *flags, "-o", str(lib), "src/example.c"],
        cwd=ROOT,
        check=True,
    )
    fn = ctypes.CDLL(str(lib)).pgml_example_floats
    fn.restype = ctypes.c_int
    fn.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_void_p),
    ]

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def c_floats(data: bytes, feature: str, count: int) -> bytes | None:
        out = ctypes.c_void_p()
        # exactly LEN bytes of malloc's: under ASan, one byte more read is a report
        buf = libc.malloc(max(len(data), 1))
        try:
            ctypes.memmove(buf, data, len(data))
            if not fn(buf, len(data), feature.encode(), count, ctypes.byref(out)):
                return None
            offset = out.value - buf
        finally:
            libc.free(buf)
        assert offset >= 0 and offset + 4 * count <= len(data)
        return data[offset : offset + 4 * count]

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
            f.bytes_list.value.extend([bytes(rng.integers(0, 256, 3, dtype=np.uint8))] * n)
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


def test_c_reader_answers_only_as_upb_does(parse):
    rng = np.random.default_rng(int(os.environ.get("PGML_FUZZ_SEED", "0")))
    answered = plain_taken = plain_fit = 0
    for i in range(INPUTS):
        count = 4 if i % 8 else 784
        data = generated(rng, count)
        is_plain = rng.random() < 0.3
        if not is_plain:
            data = mutated(rng, data)
        feature = "x" if rng.random() < 0.8 else WANTED[int(rng.integers(len(WANTED)))]
        got = parse(data, feature, count)
        want = upb_floats(data, feature, count)
        if got is not None:
            answered += 1
            assert got == want, (data.hex(), feature, count)
        if is_plain and want is not None:
            plain_fit += 1
            plain_taken += got is not None
    # the C path is not trivially declining: it takes every plain Example that fits
    assert plain_taken == plain_fit > 0
    assert answered > INPUTS // 20
    print(f"\n{INPUTS} inputs: C answered {answered}, all as upb; plain taken {plain_taken}")


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
