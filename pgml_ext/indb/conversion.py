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

from dataclasses import dataclass
from typing import Any

import numpy as np

from pgml_ext.indb.signatures import FLOAT_DTYPES, NUMPY_DTYPES, Signature

TOLERANCE = 1e-4
RANDOM_SAMPLES = 8


@dataclass
class Outcome:
    signature: str
    runtime: str  # "litert" or "tensorflow"
    reason: str
    max_abs_diff: float | None = None
    flatbuffer: bytes | None = None

    def note(self) -> dict[str, Any]:
        note: dict[str, Any] = {"runtime": self.runtime, "reason": self.reason}
        if self.max_abs_diff is not None and np.isfinite(self.max_abs_diff):
            note["max_abs_diff"] = float(self.max_abs_diff)
        return note


def sample_inputs(sig: Signature, user: np.ndarray | None) -> list[dict[str, np.ndarray]]:
    """Batches to compare on: seeded random, zeros, and the user's samples (one input)."""
    rng = np.random.default_rng(0)
    random_batch, zeros = {}, {}
    for name, spec in sig.inputs.items():
        inner = [d if d is not None else 1 for d in (spec["shape"] or [None, 1])[1:]]
        dtype = NUMPY_DTYPES[spec["dtype"]]
        random_batch[name] = rng.random([RANDOM_SAMPLES, *inner]).astype(dtype)
        zeros[name] = np.zeros([1, *inner], dtype=dtype)
    batches = [random_batch, zeros]
    if user is not None and len(sig.inputs) == 1:
        name, spec = next(iter(sig.inputs.items()))
        shape = [d if d is not None else -1 for d in (spec["shape"] or [None, -1])[1:]]
        batches.append({name: user.astype(NUMPY_DTYPES[spec["dtype"]]).reshape(-1, *shape)})
    return batches


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


def convert_signature(
    path: str, sig: Signature, tensorflow_runtime, user_samples: np.ndarray | None
) -> Outcome:
    """Convert one signature and check it against TensorFlow."""
    if not convertible(sig):
        return Outcome(sig.name, "tensorflow", "takes serialized tf.Examples or unknown shapes")
    import tensorflow as tf

    from pgml_ext.indb.runtimes.litert import LiteRTRuntime

    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=[sig.name])
        flatbuffer = converter.convert()
        lite = LiteRTRuntime({sig.name: flatbuffer})
    except Exception as e:  # the converter raises many kinds; any of them means "no"
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        return Outcome(sig.name, "tensorflow", f"conversion failed: {first}")
    worst = 0.0
    for batch in sample_inputs(sig, user_samples):
        expected = tensorflow_runtime.run(sig.name, batch)
        try:
            got = lite.run(sig.name, batch)
        except Exception as e:
            return Outcome(sig.name, "tensorflow", f"LiteRT failed on samples: {e}")
        diff, problem = compare(expected, got)
        worst = max(worst, diff)
        if problem:
            return Outcome(
                sig.name,
                "tensorflow",
                f"LiteRT does not match TensorFlow: {problem}",
                max_abs_diff=diff,
            )
    return Outcome(
        sig.name,
        "litert",
        f"matches TensorFlow within {TOLERANCE:g}",
        max_abs_diff=worst,
        flatbuffer=flatbuffer,
    )
