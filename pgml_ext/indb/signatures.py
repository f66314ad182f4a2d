"""Which signature an input feeds, how it is fed, and which output answers.

Works on the JSON description stored in ``pgml.model_versions.signatures`` (written at
registration from the SavedModel itself), so none of this needs TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pgml_ext.indb import examples
from pgml_ext.indb.errors import (
    INVALID_PARAMETER,
    NULL_NOT_ALLOWED,
    UNDEFINED_OBJECT,
    WRONG_OBJECT_TYPE,
    PgmlError,
)

DEFAULT = "serving_default"
SCORE_OUTPUTS = ("scores", "probabilities", "predictions", "outputs", "output_0", "logits")
FLOAT_DTYPES = {"float16", "float32", "float64", "bfloat16"}
NUMPY_DTYPES = {
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
}


@dataclass(frozen=True)
class Signature:
    name: str
    method: str
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    features: dict[str, dict[str, Any]] | None

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> Signature:
        return cls(name, d.get("method", ""), d["inputs"], d["outputs"], d.get("features"))

    @property
    def takes_examples(self) -> bool:
        return len(self.inputs) == 1 and next(iter(self.inputs.values()))["dtype"] == "string"

    @property
    def takes_one_tensor(self) -> bool:
        return len(self.inputs) == 1 and not self.takes_examples

    def describe_inputs(self) -> str:
        if self.takes_examples:
            if not self.features:
                return "a serialized tf.Example"
            return "a tf.Example with " + ", ".join(
                f"{k} {v['dtype']}{_shape_text(v['shape'])}" for k, v in self.features.items()
            )
        return ", ".join(
            f"{k} {v['dtype']}{_shape_text(v['shape'])}" for k, v in self.inputs.items()
        )


def _shape_text(shape: list | None) -> str:
    if shape is None:
        return "[?]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def _ordered(sigs: dict[str, Signature]) -> list[Signature]:
    """serving_default first, then the rest by name: the choice is deterministic."""
    return sorted(sigs.values(), key=lambda s: (s.name != DEFAULT, s.name))


def choose(sigs: dict[str, Signature], model: str, kind: str, requested: str | None) -> Signature:
    """The signature for an input of ``kind`` ('example' for bytea, 'tensor' for float4[])."""
    if requested:
        if requested not in sigs:
            raise PgmlError(
                f"model '{model}' has no signature '{requested}'",
                UNDEFINED_OBJECT,
                detail=f"Its signatures: {', '.join(sorted(sigs))}.",
            )
        return sigs[requested]
    ordered = _ordered(sigs)
    if kind == "example":
        candidates = [s for s in ordered if s.takes_examples] or [
            s for s in ordered if not s.takes_examples
        ]
    else:
        candidates = [
            s
            for s in ordered
            if s.takes_one_tensor and next(iter(s.inputs.values()))["dtype"] in FLOAT_DTYPES
        ]
    if not candidates:
        what = "a tf.Example (bytea)" if kind == "example" else "a float4[]"
        raise PgmlError(
            f"model '{model}' has no signature that takes {what}",
            WRONG_OBJECT_TYPE,
            detail="Its signatures: "
            + "; ".join(f"{s.name}({s.describe_inputs()})" for s in ordered)
            + ".",
            hint="Pass the other input form, or export the model with a signature for it.",
        )
    return candidates[0]


def _fit(
    values: np.ndarray, spec: dict[str, Any], model: str, sig: Signature, what: str
) -> np.ndarray:
    """Make one example's values a batch of one with the input's shape and dtype."""
    dtype = NUMPY_DTYPES.get(spec["dtype"])
    if dtype is None:
        raise PgmlError(
            f"model '{model}' signature '{sig.name}' input {what} has dtype {spec['dtype']}, "
            "which pgml cannot feed",
            WRONG_OBJECT_TYPE,
        )
    shape = spec["shape"]
    inner = None if shape is None else shape[1:]
    if inner is None:
        return values.astype(dtype).reshape(1, -1)
    if all(d is not None for d in inner):
        expected = int(np.prod(inner)) if inner else 1
        if values.size != expected:
            raise PgmlError(
                f"model '{model}' expects {what} with {expected} values "
                f"(shape {_shape_text(shape)}), got {values.size}",
                INVALID_PARAMETER,
                detail=f"Signature '{sig.name}' takes {sig.describe_inputs()}.",
            )
        return values.astype(dtype).reshape([1, *inner])
    if values.ndim == len(inner):
        return values.astype(dtype)[np.newaxis]
    if len(inner) == 1:
        return values.astype(dtype).reshape(1, -1)
    raise PgmlError(
        f"model '{model}' expects {what} of shape {_shape_text(shape)}, got {values.shape}",
        INVALID_PARAMETER,
    )


def tensor_from_array(values: list, model: str) -> np.ndarray:
    """A float4[] argument: a Python list, nested for a multi-dimensional array."""
    if values and isinstance(values[0], list):  # PostgreSQL arrays are rectangular
        has_null = any(v is None for v in np.array(values, dtype=object).ravel())
    else:
        has_null = None in values
    if has_null:
        raise PgmlError(
            f"input array for model '{model}' contains NULL elements",
            NULL_NOT_ALLOWED,
            hint="Replace NULLs (coalesce) or filter those rows out.",
        )
    return np.asarray(values, dtype=np.float32)


def feeds_for_tensor(sig: Signature, arr: np.ndarray, model: str) -> dict[str, np.ndarray]:
    name, spec = next(iter(sig.inputs.items()))
    return {name: _fit(arr, spec, model, sig, f"input '{name}'")}


def feeds_for_example(
    sig: Signature, data: bytes, model: str, feature_map: dict[str, str] | None
) -> dict[str, np.ndarray]:
    """Serialized examples go in as they are; tensor inputs come from named features."""
    features = examples.decode(data, model)
    if sig.takes_examples:
        _check_features(sig, features, model)
        return {next(iter(sig.inputs)): np.asarray([data], dtype=object)}
    feeds = {}
    for name, spec in sig.inputs.items():
        feature = (feature_map or {}).get(name, name)
        if feature not in features and len(sig.inputs) == 1 and len(features) == 1:
            feature = next(iter(features))  # one input, one feature: pair them whatever the names
        if feature not in features:
            raise PgmlError(
                f"tf.Example for model '{model}' has no feature '{feature}'",
                INVALID_PARAMETER,
                detail=f"Signature '{sig.name}' takes {sig.describe_inputs()}; the Example has "
                f"{_feature_text(features)}.",
                hint="Name the feature after the input, or register the model with a "
                "feature_map {input: feature}.",
            )
        feeds[name] = _fit(features[feature], spec, model, sig, f"feature '{feature}'")
    return feeds


def _feature_text(features: examples.Features) -> str:
    if not features:
        return "no features"
    return ", ".join(f"{k} ({v.dtype.name}, {v.size} values)" for k, v in features.items())


def _check_features(sig: Signature, features: examples.Features, model: str) -> None:
    """Check against the model's parse spec so errors name the feature, not a TF op."""
    for name, spec in (sig.features or {}).items():
        got = features.get(name)
        expected = int(np.prod(spec["shape"])) if spec["shape"] is not None else None
        if got is None:
            problem = f"has no feature '{name}'"
        elif spec["dtype"] in FLOAT_DTYPES and got.dtype.kind != "f":
            problem = f"has feature '{name}' as {got.dtype.name}, the model reads floats"
        elif expected is not None and got.size != expected:
            problem = f"has feature '{name}' with {got.size} values, the model reads {expected}"
        else:
            continue
        raise PgmlError(
            f"tf.Example for model '{model}' {problem}",
            INVALID_PARAMETER,
            detail=f"Signature '{sig.name}' takes {sig.describe_inputs()}; the Example has "
            f"{_feature_text(features)}.",
        )


def score_output(sig: Signature, model: str, requested: str | None) -> str:
    """The output that predict() returns: named, the only float one, or a usual name."""
    outputs = sig.outputs
    if requested:
        if requested not in outputs:
            raise PgmlError(
                f"model '{model}' signature '{sig.name}' has no output '{requested}'",
                UNDEFINED_OBJECT,
                detail=f"Its outputs: {', '.join(sorted(outputs))}.",
            )
        return requested
    floats = [k for k, v in outputs.items() if v["dtype"] in FLOAT_DTYPES]
    if len(floats) == 1:
        return floats[0]
    for name in SCORE_OUTPUTS:
        if name in floats:
            return name
    raise PgmlError(
        f"model '{model}' signature '{sig.name}' has several outputs; name one",
        INVALID_PARAMETER,
        detail=f"Its outputs: {', '.join(sorted(outputs))}.",
        hint="Pass output => 'name' to pgml.predict.",
    )


def class_output(sig: Signature) -> str | None:
    """A string output aligned with the scores (TF Serving's classification 'classes')."""
    out = sig.outputs.get("classes")
    return "classes" if out is not None and out["dtype"] == "string" else None
