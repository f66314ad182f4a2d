"""Convert a SavedModel's signatures to LiteRT at registration, and keep a conversion
only if it scores like TensorFlow.

TFLite conversion can silently produce a wrong model (a SavedModel from a tf.Module
wrapping a Keras 3 model converts to a flatbuffer without its weights), so each
converted signature runs beside TensorFlow on sample inputs: the model's own input
signature filled with seeded random values in [0, 1) and zeros, plus any samples the
user gave. It is kept when every output agrees within ``TOLERANCE`` (absolute) and the
arg-max of every score vector is the same; otherwise that signature stays on TensorFlow.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgml_ext.indb import examples, signatures
from pgml_ext.indb.errors import first_line
from pgml_ext.indb.signatures import FLOAT_DTYPES, NUMPY_DTYPES, Signature

TOLERANCE = 1e-4
RANDOM_SAMPLES = 8
# Rows per LiteRT call when a version's cost is measured: the block scan's usual block.
TIMED_ROWS = 64


@dataclass
class Outcome:
    signature: str
    runtime: str  # "litert" or "tensorflow"
    reason: str
    max_abs_diff: float | None = None
    flatbuffer: bytes | None = None
    plan: dict[str, Any] | None = None  # how pgml feeds and reads it (signatures.py)
    row_us: float | None = None  # LiteRT's time per row in blocks (the planner's cost)

    def note(self) -> dict[str, Any]:
        note: dict[str, Any] = {"runtime": self.runtime, "reason": self.reason}
        if self.max_abs_diff is not None and np.isfinite(self.max_abs_diff):
            note["max_abs_diff"] = float(self.max_abs_diff)
        if self.row_us is not None:
            note["row_us"] = round(self.row_us, 3)
        return note


def sample_inputs(sig: Signature, user: np.ndarray | None) -> list[dict[str, np.ndarray]]:
    """Batches to compare on: seeded random, zeros, and the user's samples (one input)."""
    rng = np.random.default_rng(0)
    random_batch, zeros = {}, {}
    for name, spec in sig.inputs.items():
        inner = _sample_shape(spec)
        dtype = NUMPY_DTYPES[spec["dtype"]]
        random_batch[name] = rng.random([RANDOM_SAMPLES, *inner]).astype(dtype)
        zeros[name] = np.zeros([1, *inner], dtype=dtype)
    batches = [random_batch, zeros]
    if user is not None and len(sig.inputs) == 1:
        name, spec = next(iter(sig.inputs.items()))
        shape = [d if d is not None else -1 for d in (spec["shape"] or [None, -1])[1:]]
        batches.append({name: user.astype(NUMPY_DTYPES[spec["dtype"]]).reshape(-1, *shape)})
    return batches


def _sample_shape(spec: dict[str, Any]) -> list[int]:
    """An input's shape without its batch dimension, unknown dimensions as 1."""
    return [d if d is not None else 1 for d in (spec["shape"] or [None, 1])[1:]]


def convertible(sig: Signature) -> bool:
    return all(
        spec["dtype"] in NUMPY_DTYPES and spec["dtype"] != "string" and spec["shape"] is not None
        for spec in sig.inputs.values()
    )


def compare(expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> tuple[float, str]:
    """(max abs diff, problem or '') between TensorFlow's and LiteRT's outputs."""
    worst = 0.0
    for name, want in expected.items():
        have = got.get(name)
        if have is None:
            return float("inf"), f"output '{name}' missing"
        if want.dtype.name not in FLOAT_DTYPES:
            if not np.array_equal(want, have):
                return float("inf"), f"output '{name}' differs"
            continue
        if have.shape != want.shape:
            return float("inf"), f"output '{name}' has shape {have.shape}, expected {want.shape}"
        diff = np.abs(have.astype(np.float64) - want.astype(np.float64))
        if not np.all(np.isfinite(have) == np.isfinite(want)):
            return float("inf"), f"output '{name}' has NaN/Inf where TensorFlow has none"
        worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
        if want.ndim >= 2 and want.shape[-1] > 1 and (want.argmax(-1) != have.argmax(-1)).any():
            return worst, f"output '{name}' arg-max differs"
    if worst > TOLERANCE:
        return worst, f"max abs diff {worst:.2g} > {TOLERANCE:g}"
    return worst, ""


def _convert(directory: str, signature: str):
    """(flatbuffer, LiteRTRuntime) of SIGNATURE of the SavedModel in DIRECTORY; raises
    whatever the converter or LiteRT raise."""
    import tensorflow as tf

    from pgml_ext.indb.runtimes.litert import LiteRTRuntime

    converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=[signature])
    flatbuffer = converter.convert()
    return flatbuffer, LiteRTRuntime({signature: flatbuffer})


class _LiteRTFailed(Exception):
    """LiteRT raised on a sample batch; the message is its first line."""


def _run_both(sig, tensorflow_runtime, lite, batches) -> tuple[list[tuple[dict, dict]], float]:
    """(TensorFlow's outputs, LiteRT's outputs) for each (TensorFlow feeds, LiteRT feeds)
    pair of BATCHES, each run once; and LiteRT's microseconds per row on the first."""
    runs = []
    for tf_feeds, lite_feeds in batches:
        expected = tensorflow_runtime.run(sig.name, tf_feeds)
        try:
            got = lite.run(sig.name, lite_feeds)
        except Exception as e:
            raise _LiteRTFailed(first_line(e)) from None
        runs.append((expected, got))
    try:
        row_us = microseconds_per_row(lambda feeds: lite.run(sig.name, feeds), batches[0][1])
    except Exception as e:
        raise _LiteRTFailed(first_line(e)) from None
    return runs, row_us


def microseconds_per_row(run, feeds: dict[str, np.ndarray], rows: int = TIMED_ROWS) -> float:
    """RUN's time per row on FEEDS repeated to ROWS rows: the median of 5 calls after a
    warm-up. The planner weighs a scoring call by it (src/scoring_cost.c)."""
    tiled = {k: np.resize(v, (rows, *np.shape(v)[1:])) for k, v in feeds.items()}
    run(tiled)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        run(tiled)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6 / rows


def convert_signature(
    path: str, sig: Signature, tensorflow_runtime, user_samples: np.ndarray | None, workdir: str
) -> Outcome:
    """Convert one signature and check it against TensorFlow."""
    if sig.takes_examples:
        return _convert_parsing(sig, tensorflow_runtime, user_samples, workdir)
    if not convertible(sig):
        return _convert_lookups(sig, tensorflow_runtime, workdir, "takes unknown shapes or text")
    try:
        flatbuffer, lite = _convert(path, sig.name)
    except Exception as e:  # the converter raises many kinds; any of them means "no"
        why = f"conversion failed: {first_line(e)}"
        return _convert_lookups(sig, tensorflow_runtime, workdir, why)
    try:
        runs, row_us = _run_both(
            sig, tensorflow_runtime, lite, [(b, b) for b in sample_inputs(sig, user_samples)]
        )
    except _LiteRTFailed as e:
        return Outcome(sig.name, "tensorflow", f"LiteRT failed on samples: {e}")
    return _judge(sig, runs, flatbuffer, None, row_us)


def _judge(sig, runs, flatbuffer, plan, row_us: float) -> Outcome:
    """Compare each (TensorFlow's, LiteRT's outputs) of RUNS; LiteRT's go through the
    plan's output steps first."""
    worst = 0.0
    for expected, got in runs:
        try:
            if plan is not None:
                got = signatures.finish_outputs(plan, got, sig.name)
        except Exception as e:
            return Outcome(sig.name, "tensorflow", f"LiteRT failed on samples: {first_line(e)}")
        diff, problem = compare(expected, got)
        worst = max(worst, diff)
        if problem:
            return Outcome(
                sig.name,
                "tensorflow",
                f"LiteRT does not match TensorFlow: {problem}",
                max_abs_diff=diff,
            )
    what = ""
    if plan is not None:
        what = "parsed by pgml, " if "parse" in plan else "lookups by pgml, "
    return Outcome(
        sig.name,
        "litert",
        f"{what}matches TensorFlow within {TOLERANCE:g}",
        max_abs_diff=worst,
        flatbuffer=flatbuffer,
        plan=plan,
        row_us=row_us,
    )


def _convert_parsing(sig, tensorflow_runtime, user_samples, workdir) -> Outcome:
    """An Example-parsing signature: cut after the parse (cutting.py), convert the rest,
    and judge it on Examples made from the parse spec, parsed by pgml's own parser."""
    import tensorflow as tf

    from pgml_ext.indb import cutting

    fn = tensorflow_runtime.signature(sig.name)
    try:
        cut = cutting.cut_after_parse(tf, fn, sig.name, workdir)
        flatbuffer, lite = _convert(cut.directory, sig.name)
    except cutting.NotCut as e:
        return Outcome(sig.name, "tensorflow", f"takes serialized tf.Examples: {e}")
    except Exception as e:
        return Outcome(
            sig.name, "tensorflow", f"conversion after the parse failed: {first_line(e)}"
        )
    plan: dict[str, Any] = {"parse": cut.inputs}
    if cut.top_k is not None:
        plan["top_k"] = cut.top_k
    input_name = next(iter(sig.inputs))
    batches = []
    for batch in example_samples(cut.inputs, user_samples):
        tf_feeds = {input_name: np.asarray(batch, dtype=object)}
        batches.append((tf_feeds, signatures.parsed_feeds(plan, batch, "(registration)", sig)))
    try:
        runs, row_us = _run_both(sig, tensorflow_runtime, lite, batches)
    except _LiteRTFailed as e:
        return Outcome(sig.name, "tensorflow", f"LiteRT failed on samples: {e}")
    if cut.keyed or cut.dropped:
        try:
            learned = [(e, signatures.top_k_outputs(plan, g)) for e, g in runs]
            plan.update(_learn_string_outputs(learned, cut))
        except ValueError as e:
            return Outcome(sig.name, "tensorflow", f"string output: {e}")
    return _judge(sig, runs, flatbuffer, plan, row_us)


def _convert_lookups(sig, tensorflow_runtime, workdir: str, why: str) -> Outcome:
    """A signature that LiteRT cannot take as it is (WHY): if its table lookups of its
    own inputs are what stops it, cut them (cutting.cut_lookups), convert the rest and
    judge it with pgml applying the tables; otherwise TensorFlow, for WHY."""
    import tensorflow as tf

    from pgml_ext.indb import cutting

    if not any(n.op == "LookupTableFindV2" for n in _all_nodes(tensorflow_runtime, sig.name)):
        return Outcome(sig.name, "tensorflow", why)
    try:
        cut = cutting.cut_lookups(tf, tensorflow_runtime.signature(sig.name), sig.name, workdir)
        flatbuffer, lite = _convert(cut.directory, sig.name)
    except cutting.NotCut as e:
        return Outcome(sig.name, "tensorflow", f"{why}; its lookups: {e}")
    except Exception as e:
        return Outcome(sig.name, "tensorflow", f"{why}; after its lookups: {first_line(e)}")
    plan: dict[str, Any] = {"lookups": cut.lookups}
    batches = [(b, signatures.looked_up(plan, b)) for b in lookup_samples(sig, cut.lookups)]
    try:
        runs, row_us = _run_both(sig, tensorflow_runtime, lite, batches)
    except _LiteRTFailed as e:
        return Outcome(sig.name, "tensorflow", f"LiteRT failed on samples: {e}")
    return _judge(sig, runs, flatbuffer, plan, row_us)


def _all_nodes(tensorflow_runtime, name: str) -> list:
    graph_def = tensorflow_runtime.signature(name).graph.as_graph_def()
    return list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]


def lookup_samples(sig: Signature, lookups: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    """Batches for a signature whose inputs are looked up: the usual random and zero
    values, each looked-up input drawn from its table's keys and one key it lacks."""
    rng = np.random.default_rng(0)
    batches = []
    for batch in sample_inputs(sig, None):
        rows = len(next(iter(batch.values())))
        batch = dict(batch)
        for lookup in lookups:
            spec = sig.inputs[lookup["input"]]
            if spec["dtype"] == "string":
                choices = [k.encode() for k in lookup["keys"]] + [b"pgml-unknown"]
                values = np.array(choices, dtype=object)
            else:
                values = np.array(lookup["keys"] + [max(lookup["keys"], default=0) + 1000])
            batch[lookup["input"]] = rng.choice(values, [rows, *_sample_shape(spec)])
        batches.append(batch)
    return batches


def _learn_string_outputs(runs, cut) -> dict[str, Any]:
    """The vocabulary of each keyed string output (key -> TensorFlow's string, read from
    its answers on the samples, RUNS; every key from 0 up must be seen) and the value of
    each constant one."""
    pairs: dict[str, dict[int, bytes]] = {name: {} for name in cut.keyed}
    constants: dict[str, list] = {}
    for expected, got in runs:
        for name in cut.keyed:
            for key, text in zip(got[name].ravel(), expected[name].ravel(), strict=True):
                if pairs[name].setdefault(int(key), text) != text:
                    raise ValueError(f"'{name}' is not a function of its keys")
        for name in cut.dropped:
            rows = {tuple(r) for r in expected[name].reshape(len(expected[name]), -1)}
            first = constants.setdefault(name, list(next(iter(rows))))
            if len(rows) != 1 or list(next(iter(rows))) != first:
                raise ValueError(f"'{name}' differs between rows")
    plan: dict[str, Any] = {}
    for name, seen in pairs.items():
        if sorted(seen) != list(range(len(seen))):
            raise ValueError(f"'{name}' looks up keys {sorted(seen)[:5]}..., not 0..n-1")
        plan.setdefault("vocabularies", {})[name] = [seen[k].decode() for k in range(len(seen))]
    for name, row in constants.items():
        plan.setdefault("constants", {})[name] = [v.decode() for v in row]
    return plan


def example_samples(inputs: list[dict[str, Any]], user: np.ndarray | None) -> list[list[bytes]]:
    """Serialized Examples to judge an Example-parsing signature on, made from its parse
    spec: seeded random rows (floats in [0, 1), integers 0 or 1, short strings), a row
    of zeros, the random rows without each defaulted feature, and the user's samples
    when the spec has a single float feature of their size."""
    rng = np.random.default_rng(0)

    def values(spec: dict[str, Any], zero: bool) -> np.ndarray:
        shape = spec["shape"]
        if spec["dtype"] == "string":
            return (
                np.full(shape, b"", dtype=object)
                if zero
                else rng.choice(np.array([b"a", b"b", b"pgml"], dtype=object), shape)
            )
        if spec["dtype"] in FLOAT_DTYPES:
            return np.zeros(shape, np.float32) if zero else rng.random(shape, np.float32)
        return np.zeros(shape, np.int64) if zero else rng.integers(0, 2, shape)

    rows = [{i["feature"]: values(i, False) for i in inputs} for _ in range(RANDOM_SAMPLES)]
    batches = [rows, [{i["feature"]: values(i, True) for i in inputs}]]
    for spec in inputs:
        if spec["default"] is not None:
            batches.append([{k: v for k, v in r.items() if k != spec["feature"]} for r in rows])
    floats = [i for i in inputs if i["dtype"] in FLOAT_DTYPES]
    if user is not None and len(inputs) == 1 and floats:
        size = int(np.prod(floats[0]["shape"]))
        if user.size % size == 0:
            batches.append([{floats[0]["feature"]: r} for r in user.reshape(-1, size)])
    return [[examples.encode(r) for r in batch] for batch in batches]
