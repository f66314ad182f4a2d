"""Which signature an input feeds, how it is fed, and which output answers.

Works on the JSON description stored in ``pgml.model_versions.signatures`` (written at
registration from the SavedModel itself), so none of this needs TensorFlow.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pgml_ext.indb import examples
from pgml_ext.indb.errors import (
    INVALID_PARAMETER,
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
    "string": object,  # bytes: text (or keys) from a tf.Example's bytes_list
}


@dataclass(frozen=True)
class InputPlan:
    """How one example's values become this input's batch of one (computed once)."""

    dtype: Any  # numpy dtype, or None when pgml cannot feed it
    inner: tuple | None  # shape without the batch dimension; None: unknown rank
    expected: int | None  # element count when every inner dimension is known


def _plan(spec: dict[str, Any]) -> InputPlan:
    shape = spec["shape"]
    inner = None if shape is None else tuple(shape[1:])
    known = inner is not None and all(d is not None for d in inner)
    return InputPlan(NUMPY_DTYPES.get(spec["dtype"]), inner, int(np.prod(inner)) if known else None)


@dataclass(frozen=True)
class Signature:
    name: str
    method: str
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    features: dict[str, dict[str, Any]] | None
    parses_examples: bool = True  # rows registered before this was recorded: as before
    plan: dict[str, Any] | None = None  # an Example-parsing signature cut after its parse
    plans: dict[str, InputPlan] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plans", {k: _plan(v) for k, v in self.inputs.items()})

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> Signature:
        return cls(
            name,
            d.get("method", ""),
            d["inputs"],
            d["outputs"],
            d.get("features"),
            d.get("parses_examples", True),
            d.get("plan"),
        )

    @property
    def takes_examples(self) -> bool:
        """Serialized tf.Examples, parsed in the graph: a string input that the graph
        does not parse is text, fed from a bytes feature."""
        return (
            len(self.inputs) == 1
            and next(iter(self.inputs.values()))["dtype"] == "string"
            and self.parses_examples
        )

    @property
    def takes_text(self) -> bool:
        """One string input that the graph does not parse as a tf.Example: text."""
        return (
            len(self.inputs) == 1
            and next(iter(self.inputs.values()))["dtype"] == "string"
            and not self.parses_examples
        )

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
    """The signature for an input of ``kind`` ('example' for bytea, 'tensor' for float4[],
    'text' for text)."""
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
    elif kind == "text":
        candidates = [s for s in ordered if s.takes_text]
    else:
        candidates = [
            s
            for s in ordered
            if s.takes_one_tensor and next(iter(s.inputs.values()))["dtype"] in FLOAT_DTYPES
        ]
    if not candidates:
        what = {"example": "a tf.Example (bytea)", "text": "text"}.get(kind, "a float4[]")
        raise PgmlError(
            f"model '{model}' has no signature that takes {what}",
            WRONG_OBJECT_TYPE,
            detail="Its signatures: "
            + "; ".join(f"{s.name}({s.describe_inputs()})" for s in ordered)
            + ".",
            hint="Pass a tf.Example as bytea (a literal needs a cast: '\\x0a…'::bytea) or a "
            "float4[]."
            if kind == "text"
            else "Pass the other input form, or export the model with a signature for it.",
        )
    return candidates[0]


def _fit(values: np.ndarray, sig: Signature, name: str, model: str, what: str) -> np.ndarray:
    """Make one example's values a batch of one with the input's shape and dtype."""
    plan = sig.plans[name]
    if plan.dtype is None:
        raise PgmlError(
            f"model '{model}' signature '{sig.name}' input {what} has dtype "
            f"{sig.inputs[name]['dtype']}, which pgml cannot feed",
            WRONG_OBJECT_TYPE,
        )
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise PgmlError(
            f"{what} for model '{model}' contains NaN or Infinity",
            INVALID_PARAMETER,
            detail=f"First bad value at position {int(np.argmin(np.isfinite(values.ravel())))}.",
            hint="Clean the input (e.g. replace NaN with 0) before scoring.",
        )
    if plan.expected is not None:
        if values.size != plan.expected:
            raise PgmlError(
                f"model '{model}' expects {what} with {plan.expected} values "
                f"(shape {_shape_text(sig.inputs[name]['shape'])}), got {values.size}",
                INVALID_PARAMETER,
                detail=f"Signature '{sig.name}' takes {sig.describe_inputs()}.",
            )
        return values.astype(plan.dtype, copy=False).reshape((1, *plan.inner))
    if plan.inner is None or len(plan.inner) == 1:
        return values.astype(plan.dtype, copy=False).reshape(1, -1)
    if values.ndim == len(plan.inner):
        return values.astype(plan.dtype, copy=False)[np.newaxis]
    raise PgmlError(
        f"model '{model}' expects {what} of shape {_shape_text(sig.inputs[name]['shape'])}, "
        f"got {values.shape}",
        INVALID_PARAMETER,
    )


MAX_DIMS = 6  # PostgreSQL's MAXDIM


def tensor_from_packed(packed: bytes) -> np.ndarray:
    """A float4[] as pgml_internal.tensor (C) packed it: int32 ndim, int32 dims, float32 values
    (NULL elements were refused there). Every float4[] reaches Python this way. The
    header is checked against the bytes before anything is sized from it: the internal
    functions that take it can be called with any bytea."""
    size = len(packed)
    ndim = struct.unpack_from("=i", packed)[0] if size >= 4 else -1
    header = 4 * (1 + ndim)
    ok = 0 <= ndim <= MAX_DIMS and size >= header
    dims = struct.unpack_from(f"={ndim}i", packed, 4) if ok else ()
    count = 1
    for d in dims:
        count *= d
    if not ok or any(d < 1 for d in dims) or size != header + 4 * (count if dims else 0):
        raise PgmlError(
            "not a float4[] packed by pgml_internal.tensor",
            INVALID_PARAMETER,
            hint="Pass a float4[] to pgml.predict/classify/predict_class; the pgml_internal "
            "functions are internal.",
        )
    values = np.frombuffer(packed, np.float32, offset=header)
    return values.reshape(dims) if ndim > 1 else values


def feeds_for_text(sig: Signature, text: str, model: str) -> dict[str, np.ndarray]:
    """A text argument, as UTF-8, for a signature that takes_text."""
    name = next(iter(sig.inputs))
    return {name: _fit(np.array([text.encode()], dtype=object), sig, name, model, "the text")}


def feeds_for_tensor(sig: Signature, arr: np.ndarray, model: str) -> dict[str, np.ndarray]:
    name = next(iter(sig.inputs))
    return {name: _fit(arr, sig, name, model, f"input '{name}'")}


def feeds_for_tensor_batch(sig: Signature, arr: np.ndarray, model: str) -> dict[str, np.ndarray]:
    """Rows of a 2-D (or higher) float4[]: one input per first-dimension entry."""
    name = next(iter(sig.inputs))
    rows = arr.shape[0] if arr.ndim else 0
    plan = sig.plans[name]
    if (
        rows
        and plan.dtype is not None
        and plan.expected is not None
        and arr[0].size == plan.expected
        and np.isfinite(arr).all()
    ):  # the usual case in one step; otherwise row by row, for errors that say which
        return {name: arr.astype(plan.dtype, copy=False).reshape((rows, *plan.inner))}
    fitted = [_fit(arr[i], sig, name, model, f"input '{name}' (row {i + 1})") for i in range(rows)]
    if not fitted:
        raise PgmlError(f"no inputs for model '{model}'", INVALID_PARAMETER)
    return {name: np.concatenate(fitted)}


def feature_for(name: str, feature_map: dict[str, str] | None) -> str:
    """The tf.Example feature that feeds input NAME: its own name unless the model was
    registered with a feature_map {input: feature}."""
    return (feature_map or {}).get(name, name)


def feeds_for_examples(
    sig: Signature, batch: list[bytes], model: str, feature_map: dict[str, str] | None
) -> dict[str, np.ndarray]:
    """Several serialized Examples: fed as one batch."""
    if not sig.takes_examples and len(sig.inputs) == 1:
        name = next(iter(sig.inputs))
        plan = sig.plans[name]
        if plan.expected is not None and plan.dtype is np.float32:
            feature = feature_for(name, feature_map)
            dense = examples.dense_floats(batch, feature, plan.inner)
            if dense is not None:
                return {name: dense}
    per_row = [feeds_for_example(sig, data, model, feature_map) for data in batch]
    if not per_row:
        raise PgmlError(f"no inputs for model '{model}'", INVALID_PARAMETER)
    return {name: np.concatenate([f[name] for f in per_row]) for name in per_row[0]}


def feeds_for_example(
    sig: Signature, data: bytes, model: str, feature_map: dict[str, str] | None
) -> dict[str, np.ndarray]:
    """Serialized examples go in as they are; tensor inputs come from named features."""
    features = examples.decode(data, model)
    if sig.takes_examples:
        _check_features(sig, features, model)
        return {next(iter(sig.inputs)): np.asarray([data], dtype=object)}
    feeds = {}
    for name in sig.inputs:
        feature = feature_for(name, feature_map)
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
        values = features[feature]
        reads_text = sig.inputs[name]["dtype"] == "string"
        if reads_text != (values.dtype.kind == "O"):
            given, wanted = ("bytes", "numbers") if not reads_text else ("numbers", "text")
            raise PgmlError(
                f"tf.Example for model '{model}' has feature '{feature}' as {given}, "
                f"the model reads {wanted}",
                INVALID_PARAMETER,
                detail=f"Signature '{sig.name}' takes {sig.describe_inputs()}.",
            )
        feeds[name] = _fit(values, sig, name, model, f"feature '{feature}'")
    return feeds


def parsed_feeds(
    plan: dict[str, Any], batch: list[bytes], model: str, sig: Signature
) -> dict[str, np.ndarray]:
    """Serialized Examples parsed as the signature's own parse would (the plan's "parse":
    one runtime input per dense feature, defaults honoured): the graph after the parse
    runs on LiteRT (cutting.py)."""
    inputs = plan["parse"]
    if len(inputs) == 1 and inputs[0]["dtype"] == "float32" and inputs[0]["default"] is None:
        spec = inputs[0]  # the usual case, read without decoding whole Examples
        dense = examples.dense_floats(batch, spec["feature"], tuple(spec["shape"]), exact=True)
        if dense is not None:
            return {spec["name"]: dense}
    columns: dict[str, list[np.ndarray]] = {i["name"]: [] for i in inputs}
    for data in batch:
        features = examples.decode(data, model)
        _check_features(sig, features, model)
        for spec in inputs:
            got = features.get(spec["feature"])
            values = got if got is not None else np.asarray(spec["default"])
            dtype = NUMPY_DTYPES[spec["dtype"]]
            columns[spec["name"]].append(values.astype(dtype).reshape(spec["shape"]))
    if not batch:
        raise PgmlError(f"no inputs for model '{model}'", INVALID_PARAMETER)
    return {name: np.stack(values) for name, values in columns.items()}


def finish_outputs(
    plan: dict[str, Any], out: dict[str, np.ndarray], model: str
) -> dict[str, np.ndarray]:
    """The runtime's outputs as the whole signature gives them: a cut top_k is taken,
    keys of a cut lookup become its strings, constant string outputs come back (see
    cutting.py)."""
    out = top_k_outputs(plan, out)
    rows = len(next(iter(out.values())))
    for name, vocabulary in plan.get("vocabularies", {}).items():
        keys = out[name]
        table = np.asarray([v.encode() for v in vocabulary], dtype=object)
        if keys.size and (keys.min() < 0 or keys.max() >= len(table)):
            raise PgmlError(
                f"model '{model}' looked up a key outside its '{name}' vocabulary",
                INVALID_PARAMETER,
            )
        out[name] = table[keys]
    for name, values in plan.get("constants", {}).items():
        out[name] = np.tile(np.asarray([v.encode() for v in values], dtype=object), (rows, 1))
    return out


_TABLES: dict[int, tuple[dict[str, Any], dict]] = {}


def _table(lookup: dict[str, Any]) -> dict:
    """LOOKUP's keys -> ids as a dict (bytes keys for strings), made once per plan."""
    cached = _TABLES.get(id(lookup))
    if cached is None or cached[0] is not lookup:
        keys = [k.encode() if isinstance(k, str) else k for k in lookup["keys"]]
        cached = _TABLES[id(lookup)] = (lookup, dict(zip(keys, lookup["values"], strict=True)))
    return cached[1]


def looked_up(plan: dict[str, Any], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """FEEDS with the plan's lookups applied (cutting.cut_lookups): each looked-up input
    replaced by the ids its table gives, its default for anything else."""
    lookups = plan.get("lookups")
    if not lookups:
        return feeds
    feeds = dict(feeds)
    for lookup in lookups:
        table, default = _table(lookup), lookup["default"]
        values = feeds[lookup["input"]]
        keys = values.ravel().tolist()
        ids = np.fromiter((table.get(k, default) for k in keys), np.int64, len(keys))
        feeds[lookup["name"]] = ids.reshape(values.shape)
    for lookup in lookups:
        feeds.pop(lookup["input"], None)
    return feeds


def top_k_outputs(plan: dict[str, Any], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The plan's top_k (tf.math.top_k, sorted: the lower index first among equal
    values) of the runtime's probabilities, into the outputs that take its values and
    indices."""
    top = plan.get("top_k")
    if top is None:
        return out
    out = dict(out)
    probabilities = out.pop(top["of"])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, : top["k"]]
    for name in top["values"]:
        out[name] = np.take_along_axis(probabilities, order, axis=1)
    for name in top["indices"]:
        out[name] = order.astype(np.int64)
    return out


def _feature_text(features: examples.Features) -> str:
    if not features:
        return "no features"
    return ", ".join(f"{k} ({v.dtype.name}, {v.size} values)" for k, v in features.items())


# What kind of tf.Example list (as examples.decode gives it) each parsed dtype reads.
_KINDS = {**dict.fromkeys(FLOAT_DTYPES, "f"), "int64": "i", "string": "O"}
_KIND_NAMES = {"f": "floats", "i": "integers", "O": "bytes"}


def _check_features(sig: Signature, features: examples.Features, model: str) -> None:
    """Check against the model's parse spec so errors name the feature, not a TF op."""
    for name, spec in (sig.features or {}).items():
        got = features.get(name)
        expected = int(np.prod(spec["shape"])) if spec["shape"] is not None else None
        if got is None and spec.get("default") is not None:
            continue  # TensorFlow fills in the FixedLenFeature's default
        if got is None:
            problem = f"has no feature '{name}'"
        elif _KINDS.get(spec["dtype"], got.dtype.kind) != got.dtype.kind:
            problem = (
                f"has feature '{name}' as {_KIND_NAMES[got.dtype.kind]}, "
                f"the model reads {_KIND_NAMES[_KINDS[spec['dtype']]]}"
            )
        elif got.dtype.kind == "f" and not np.isfinite(got).all():
            problem = f"has NaN or Infinity in feature '{name}'"
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


def _kind(dtype: str) -> str:
    """How a tf.Example carries a value of DTYPE: float_list, int64_list or bytes_list."""
    if dtype.startswith(("float", "bfloat", "half", "double")):
        return "floats"
    return "bytes" if dtype == "string" else "integers"


def example_features(sig: Signature, feature_map: dict[str, str] | None) -> dict[str, dict]:
    """The features an Example for SIG carries: {name: {"dtype", "default"?}}: its parse
    spec if its graph parses Examples, else one per input (named by the feature_map)."""
    if sig.takes_examples:
        return dict(sig.features or {})
    return {feature_for(name, feature_map): spec for name, spec in sig.inputs.items()}


def _double(number: int | float) -> float:
    """A JSON number as a double, infinite beyond its range (an integer of 400 digits)."""
    try:
        return float(number)
    except OverflowError:
        return math.copysign(math.inf, number)


def example_from_document(
    document: dict[str, Any], wanted: dict[str, dict], sig: Signature, model: str
) -> bytes:
    """A serialized tf.Example of the features WANTED, each from the key of its name in
    DOCUMENT (a jsonb object: a row's to_jsonb, named values), typed as the model reads
    it: numbers for float and int64 features, strings for bytes ones. A missing or null
    key is a missing feature (its default, if the parse spec has one); other keys are
    not read."""
    features: dict[str, np.ndarray] = {}
    for name, spec in wanted.items():
        value = document.get(name)
        if value is None:
            if spec.get("default") is not None:
                continue
            raise PgmlError(
                f"no value for feature '{name}' of model '{model}'",
                INVALID_PARAMETER,
                detail=f"Signature '{sig.name}' takes {sig.describe_inputs()}; the object has "
                + (", ".join(sorted(document)) or "no keys")
                + ".",
                hint="Name a column or key after the feature (SELECT x AS feature ...).",
            )
        values = np.asarray(value if isinstance(value, list) else [value], dtype=object).ravel()
        kind = _kind(spec["dtype"])
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if kind == "bytes":
            fits, must = all(isinstance(v, str) for v in values), "strings"
        elif kind == "integers":  # an exact integer, or a whole float, within int64
            fits = numbers and all(
                (isinstance(v, int) or v.is_integer()) and -(2**63) <= v < 2**63 for v in values
            )
            must = "integers (int64)"
        else:
            fits, must = numbers, "numbers"
        if not fits:
            raise PgmlError(
                f"feature '{name}' of model '{model}' must be {must}, not "
                + json.dumps(value)[:60],
                INVALID_PARAMETER,
                detail=f"Signature '{sig.name}' takes {sig.describe_inputs()}.",
            )
        if kind == "floats":  # beyond float's range (an integer beyond double's too): inf
            with np.errstate(over="ignore"):
                features[name] = np.array([_double(v) for v in values]).astype(np.float32)
        elif kind == "integers":
            features[name] = values.astype(np.int64)
        else:
            features[name] = np.array([v.encode() for v in values], dtype=object)
    return examples.encode(features)
