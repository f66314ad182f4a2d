"""The per-row fast path: one input, one LiteRT call, nothing in between.

For the common case (the chosen signature takes one float32 tensor of known size and
runs on LiteRT) the steps of scoring a row are worked out once per model: parse the
Example, view its floats without converting them one by one (or take the float4[]
array), run LiteRT, return the score vector. Anything
unusual (bad protobuf, a missing or bytes feature, the wrong number of values, NaN,
Infinity, NULL) makes it return None and the caller takes the general path, which
handles and reports every case. The fast path therefore never decides an error, and
its answers are the general path's (tests/test_parity.py compares both with TensorFlow).
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from pgml_ext.indb import examples, signatures
from pgml_ext.indb.errors import PgmlError
from pgml_ext.indb.signatures import Signature

if TYPE_CHECKING:
    from pgml_ext.indb.runtimes.litert import LiteRTRuntime

# Infinity in an input makes the check in RowPath._run warn; the input then goes to the
# general path, whose ERROR says what is wrong: no need for a line in the server log too.
warnings.filterwarnings("ignore", category=RuntimeWarning, module=__name__)


class RowPath:
    __slots__ = (
        "_runner",
        "_input",
        "_output",
        "_shape",
        "_count",
        "_zeros",
        "_read",
    )

    def __init__(
        self,
        runner,
        sig: Signature,
        output: str,
        feature_map: dict[str, str] | None,
        for_examples: bool,
    ) -> None:
        name, feature = _input_and_feature(sig, feature_map)
        plan = sig.plans[name]
        self._runner = runner
        self._input = name
        self._output = output
        self._shape = (1, *plan.inner)
        self._count = plan.expected
        self._zeros = np.zeros(plan.expected, dtype=np.float32)
        self._read = examples.DenseReader(feature, plan.expected) if for_examples else None

    @classmethod
    def build(
        cls,
        runtime: LiteRTRuntime,
        sig: Signature,
        output: str,
        feature_map: dict[str, str] | None,
        for_examples: bool,
    ) -> RowPath | None:
        """A fast path for SIG (scoring OUTPUT, see output_for) on RUNTIME, or None when
        its runner cannot score one row directly."""
        runner = runtime.runner_for(sig.name)
        if runner is None or output not in runner.output_index:
            return None
        return cls(runner, sig, output, feature_map, for_examples)

    @staticmethod
    def output_for(sig: Signature) -> str | None:
        """The output a fast path scores, if SIG can have one: one float32 input tensor
        of known size, a float32 score output and no class-name output."""
        if not sig.takes_one_tensor or signatures.class_output(sig):
            return None
        plan = next(iter(sig.plans.values()))
        if plan.dtype is not np.float32 or not plan.expected:
            return None
        try:
            output = signatures.score_output(sig, sig.name, None)
        except PgmlError:
            return None
        return output if sig.outputs[output]["dtype"] == "float32" else None

    def example(self, data: bytes) -> np.ndarray | None:
        values = self._read(data)
        return None if values is None else self._run(values)

    def tensor(self, values: np.ndarray) -> np.ndarray | None:
        """A float4[] (float32, from signatures.tensor_from_packed)."""
        return self._run(values) if values.size == self._count else None

    def _run(self, values: np.ndarray) -> np.ndarray | None:
        # Any NaN or Infinity times zero is NaN, finite values give 0 (and never overflow):
        # one dot product instead of an isfinite pass and its temporary array. (numpy's
        # "invalid value" warning for Infinity is filtered for this module, below.)
        flat = values if values.ndim == 1 else values.reshape(-1)
        if not math.isfinite(flat.dot(self._zeros)):
            return None
        return self._runner.one(self._input, values.reshape(self._shape), self._output)


def _input_and_feature(sig: Signature, feature_map: dict[str, str] | None) -> tuple[str, str]:
    """SIG's one input, and the tf.Example feature that feeds it."""
    name = next(iter(sig.inputs))
    return name, signatures.feature_for(name, feature_map)


def parsed_plan_for_c(sig: Signature) -> list[str] | None:
    """What src/native_model.c needs for a signature whose Examples pgml parses (the
    plan's "parse", see cutting.py): every input from its feature by exact name, with
    its default; None if C cannot feed or answer it (bytes features)."""
    inputs: list[str] = []
    for spec in sig.plan["parse"]:
        count = int(np.prod(spec["shape"]))
        if spec["dtype"] not in C_DTYPES or count < 1:
            return None
        default = ""
        if spec["default"] is not None:
            values = np.asarray(spec["default"], dtype=C_DTYPES[spec["dtype"]]).reshape(-1)
            if values.size != count or not np.isfinite(values).all():
                return None
            default = " ".join(repr(v.item()) for v in values)
        inputs += [spec["name"], spec["feature"], spec["dtype"], str(count), default]
    return _outputs_for_c(sig, inputs, [], only=False)


def named_plan_for_c(sig: Signature, feature_map: dict[str, str] | None) -> list[str] | None:
    """What src/native_model.c needs for a signature of named tensor inputs (Keras dict
    inputs), each fed by the feature of its name as signatures.feeds_for_example feeds
    it, the plan's lookups (cutting.cut_lookups) applied by C; None if C cannot (an
    input of unknown size, or of a type it does not copy)."""
    lookups = {t["input"]: t for t in (sig.plan or {}).get("lookups", [])}
    inputs: list[str] = []
    tables: list[str] = []
    for name, spec in sig.inputs.items():
        count = sig.plans[name].expected
        feature = signatures.feature_for(name, feature_map)
        dtype = "bytes" if spec["dtype"] == "string" else spec["dtype"]
        table = lookups.get(name)
        if not count:
            return None
        if table is not None and dtype in ("bytes", "int64"):
            keys = [str(k) for k in table["keys"]]
            if any("\x00" in k for k in keys):
                return None  # SQL text holds no NUL: such a table stays in PL/Python
            inputs += [table["name"], feature, f"lookup:{dtype}", str(count), ""]
            tables += [str(len(keys)), str(table["default"]), *keys]
            tables += [str(v) for v in table["values"]]
        elif table is None and dtype in C_DTYPES:
            inputs += [name, feature, dtype, str(count), ""]
        else:
            return None
    return _outputs_for_c(sig, inputs, tables, only=len(sig.inputs) == 1)


def _outputs_for_c(
    sig: Signature, inputs: list[str], tables: list[str], only: bool
) -> list[str] | None:
    """[signature, output, classes output, top k, only feature, inputs, heads,
    INPUTS..., heads..., TABLES...]: the output C scores, and the classes output it
    reads keys from (one of the plan's vocabularies), or the top k it takes of the
    probabilities; the heads: the float32 outputs a call may name, when classes are
    by position (then a named output's are too, as LoadedModel.top_classes)."""
    try:
        output = signatures.score_output(sig, sig.name, None)
    except PgmlError:
        output = ""  # no default (several heads): each call names one
    plan = sig.plan or {}
    classes = signatures.class_output(sig)
    keys = classes if classes in plan.get("vocabularies", {}) else ""
    k = "0"
    top = plan.get("top_k")
    if top is not None:
        # C takes the top k of the probabilities; the top class is then the key itself
        if not output or output not in top["values"] or (classes and classes not in top["indices"]):
            return None
        output, keys, k = top["of"], "", str(top["k"])
    heads = []
    if classes is None and top is None:
        heads = [h for h, o in sig.outputs.items() if o["dtype"] == "float32"]
    n = str(len(inputs) // 5)
    only_feature = "1" if only else "0"
    return [sig.name, output, keys, k, only_feature, n, str(len(heads)), *inputs, *heads, *tables]


# The input types src/native_model.c copies into LiteRT, and how their defaults are written.
C_DTYPES = {"float32": np.float32, "int64": np.int64}
