"""A model loaded in this backend: its row, its signatures and, lazily, its runtimes.

Signatures that matched TensorFlow at registration run on LiteRT (flatbuffers from the
version's files, see registry); the rest load the SavedModel into TensorFlow, only when
first used, so a backend that only scores LiteRT signatures never imports TensorFlow.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from pgml_ext.indb import archive, registry, server, signatures
from pgml_ext.indb.errors import (
    INVALID_PARAMETER,
    NUMERIC_OUT_OF_RANGE,
    WRONG_OBJECT_TYPE,
    PgmlError,
)
from pgml_ext.indb.registry import ModelRow
from pgml_ext.indb.rowpath import RowPath, named_plan_for_c, parsed_plan_for_c
from pgml_ext.indb.runtimes import Runtime
from pgml_ext.indb.signatures import Signature


def threads() -> int:
    """Runtime threads per backend (pgml.threads): 1 by default, so that many backends
    do not oversubscribe the cores."""
    return max(1, int(server.setting("pgml.threads", "1")))


# The layout of the plans above (src/native_model.c reads only this one).
PLAN_FORMAT = "pgml-plan-2"

# The ai-edge-litert versions whose C API src/native.c was written and tested against.
NATIVE_LITERT = "2.3."


def litert_library() -> str | None:
    """LiteRT's C library in the ai-edge-litert wheel, for the native scorer; None for a
    version it was not built for (its rows then go through PL/Python)."""
    import importlib.metadata
    import importlib.util

    try:
        if not importlib.metadata.version("ai-edge-litert").startswith(NATIVE_LITERT):
            return None
    except importlib.metadata.PackageNotFoundError:
        return None

    spec = importlib.util.find_spec("ai_edge_litert")  # found, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "libLiteRt.so")
    return path if os.path.exists(path) else None


def unpacked_savedmodel(row: ModelRow) -> Path:
    """The version's SavedModel unpacked for TensorFlow, inside the version's own
    directory (once per server, by one process while others wait)."""
    target = Path(row.directory) / "savedmodel"
    if not (target / "saved_model.pb").is_file():
        with registry.version_lock(str(target)):
            if not (target / "saved_model.pb").is_file():
                for leftover in target.parent.glob("savedmodel.tmp*"):  # a writer died
                    shutil.rmtree(leftover, ignore_errors=True)
                archive.unpack(registry.savedmodel(row), target)
    return target


_UNKNOWN = object()


class LoadedModel:
    def __init__(self, row: ModelRow) -> None:
        started = time.perf_counter()
        self.row = row
        self.signatures = {k: Signature.from_json(k, v) for k, v in row.signatures.items()}
        self._choices: dict[tuple[str, str | None], Signature] = {}
        self._row_paths: dict[tuple[bool, str | None], RowPath | None] = {}
        self._default_signature = row.options.get("signature")
        self._feature_map = row.options.get("feature_map")
        self._litert: Runtime | None = None
        self._tensorflow: Runtime | None = None
        self.load_ms = (time.perf_counter() - started) * 1000

    load = classmethod(lambda cls, row: cls(row))

    @property
    def litert(self) -> Runtime:
        """LiteRT in Python, loaded on first use: rows that src/native.c scores never
        need it, and the backend then holds the model's weights once."""
        if self._litert is None:
            started = time.perf_counter()
            from pgml_ext.indb.runtimes.litert import LiteRTRuntime

            self._litert = LiteRTRuntime(registry.litert_files(self.row), threads())
            self.load_ms += (time.perf_counter() - started) * 1000
        return self._litert

    def _load_tensorflow(self) -> Runtime:
        started = time.perf_counter()
        path = unpacked_savedmodel(self.row)
        from pgml_ext.indb.runtimes.tensorflow import TensorFlowRuntime

        runtime = TensorFlowRuntime(str(path), threads())
        self.load_ms += (time.perf_counter() - started) * 1000
        return runtime

    def runtime_for(self, signature: str) -> Runtime:
        if self.row.runtime_of(signature) == "litert":
            return self.litert
        if self._tensorflow is None:
            self._tensorflow = self._load_tensorflow()
        return self._tensorflow

    def example(self, document: dict[str, Any], signature: str | None) -> bytes:
        """A serialized tf.Example of DOCUMENT's values (pgml.example), for the signature
        an Example would be scored by, each feature typed as that signature reads it."""
        sig = self.choose("example", signature or self._default_signature)
        wanted = signatures.example_features(sig, self._feature_map)
        return signatures.example_from_document(document, wanted, sig, self.row.name)

    def choose(self, kind: str, requested: str | None) -> Signature:
        """The signature for an input form ('example' or 'tensor'), remembered."""
        key = (kind, requested)
        sig = self._choices.get(key)
        if sig is None:
            sig = self._choices[key] = signatures.choose(
                self.signatures, self.row.name, kind, requested
            )
        return sig

    def on_plan(self, sig: Signature) -> bool:
        """Whether SIG runs on LiteRT by a plan (cutting.py): pgml does the parse, the
        lookups and the output steps the plan names; otherwise the graph does them."""
        return sig.plan is not None and self.row.runtime_of(sig.name) == "litert"

    def parsed_by_plan(self, sig: Signature) -> bool:
        """Whether SIG's Examples are parsed here (the plan's "parse")."""
        return self.on_plan(sig) and "parse" in sig.plan

    def run(self, sig: Signature, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        planned = self.on_plan(sig)
        if planned:
            feeds = signatures.looked_up(sig.plan, feeds)
        out = self.runtime_for(sig.name).run(sig.name, feeds)
        if planned:
            out = signatures.finish_outputs(sig.plan, out, self.row.name)
        return out

    def score(
        self, data: bytes | str | list | np.ndarray, signature: str | None, batch: bool = False
    ) -> tuple[Signature, dict[str, np.ndarray]]:
        """Run one input (a serialized Example, text, or a float4[] as an array) or, with
        ``batch``, a list of Examples / an array of rows, through the signature the
        input form calls for."""
        model = self.row.name
        requested = signature or self._default_signature
        feature_map = self._feature_map
        if isinstance(data, bytes | bytearray | memoryview) or (batch and isinstance(data, list)):
            sig = self.choose("example", requested)
            if self.parsed_by_plan(sig):
                rows = data if batch else [data if type(data) is bytes else bytes(data)]
                feeds = signatures.parsed_feeds(sig.plan, rows, model, sig)
            elif batch:
                feeds = signatures.feeds_for_examples(sig, data, model, feature_map)
            else:
                data = data if type(data) is bytes else bytes(data)
                feeds = signatures.feeds_for_example(sig, data, model, feature_map)
        elif isinstance(data, str):
            sig = self.choose("text", requested)
            feeds = signatures.feeds_for_text(sig, data, model)
        else:
            sig = self.choose("tensor", requested)
            if batch:
                feeds = signatures.feeds_for_tensor_batch(sig, data, model)
            else:
                feeds = signatures.feeds_for_tensor(sig, data, model)
        return sig, self.run(sig, feeds)

    def scores(self, sig: Signature, out: dict[str, np.ndarray], output: str | None) -> np.ndarray:
        """The numeric output predict() returns, as [batch, values]."""
        name = signatures.score_output(sig, self.row.name, output)
        values = out[name]
        if values.dtype.kind not in "fiub":
            raise PgmlError(
                f"output '{name}' of model '{self.row.name}' is {values.dtype.name}, not numbers",
                INVALID_PARAMETER,
                hint="Use pgml.classify for text class labels.",
            )
        return values.astype(np.float32).reshape(len(values), -1)

    def top_classes(
        self, sig: Signature, out: dict[str, np.ndarray], output: str | None = None
    ) -> list[tuple[int, str]]:
        """(class index, label) of the highest score, per batch row, of OUTPUT (a head of
        a multi-head model) or the default scores.

        Label: registered labels, else the signature's own 'classes' output (for the
        default scores), else the index as text. Index: for a 'classes' output, the
        label's position among the registered labels, or the label itself when it is a
        number.
        """
        scores = self.scores(sig, out, output)
        self.check_classifies(sig, scores.shape[1], output)
        self.check_finite(scores)
        classes = signatures.class_output(sig) if output is None else None
        best = scores.argmax(axis=1)
        if classes is None:
            return [self._indexed(int(i)) for i in best]
        class_rows = out[classes].reshape(len(best), -1)
        return [
            self._named_class(row[i].decode() if isinstance(row[i], bytes) else str(row[i]), int(i))
            for row, i in zip(class_rows, best, strict=True)
        ]

    def check_finite(self, scores: np.ndarray) -> None:
        """Scores with NaN or infinity name no class (their arg-max was class 0) and
        have no place in a table of predictions: an ERROR, as for such an input."""
        if not np.isfinite(scores).all():
            raise PgmlError(
                f"model '{self.row.name}' gave NaN or infinite scores for this input",
                NUMERIC_OUT_OF_RANGE,
                hint="pgml.predict shows the scores; the input may be far outside the range "
                "the model was trained on.",
            )

    def _named_class(self, label: str, position: int) -> tuple[int, str]:
        """(index, label) of the class a string output names: a registered label's
        position, else the label as a number, else POSITION (the top score's)."""
        labels = self.row.labels
        if labels and label in labels:
            return labels.index(label), label
        if label.lstrip("-").isdigit():
            index = int(label)
            return index, labels[index] if labels and 0 <= index < len(labels) else label
        return position, label

    def classifies(self, sig: Signature, width: int, output: str | None = None) -> bool:
        """Whether scores WIDTH wide (of OUTPUT, else the default ones) name a class: one
        value per row is a regressor's answer (or a sigmoid's), whose arg-max would be 0
        for every row; TF Serving's classify has its own 'classes' instead."""
        return width > 1 or (output is None and signatures.class_output(sig) is not None)

    def check_classifies(self, sig: Signature, width: int, output: str | None = None) -> None:
        if not self.classifies(sig, width, output):
            raise PgmlError(
                f"model '{self.row.name}' signature '{sig.name}' gives one value per row, "
                "not a score per class",
                WRONG_OBJECT_TYPE,
                detail="A regressor (or a single sigmoid) has no top class.",
                hint="Use pgml.predict_value (or pgml.predict) for its value; for a sigmoid, "
                "compare it with 0.5.",
            )

    def _indexed(self, index: int) -> tuple[int, str]:
        """(INDEX, its registered label, else the index as text): a plain arg-max."""
        labels = self.row.labels
        return index, labels[index] if labels and index < len(labels) else str(index)

    def scores_by_class(
        self, sig: Signature, out: dict[str, np.ndarray]
    ) -> tuple[list[str] | None, np.ndarray]:
        """Scores with one column per class, in class order.

        A TF Serving classify signature returns its scores sorted, each row with its own
        ``classes``; tables of predictions want a fixed column per class, so rows are
        re-ordered by class (registered label order, else numeric, else text). Returns
        (class names, or None when columns are already by index; scores).
        """
        scores = self.scores(sig, out, None)
        classes = signatures.class_output(sig)
        if classes is None:
            return None, scores
        labels = self.row.labels or []

        def order(name: str) -> tuple:
            if name in labels:
                return (0, labels.index(name), "")
            return (1, int(name), "") if name.lstrip("-").isdigit() else (2, 0, name)

        rows = [
            [c.decode() if isinstance(c, bytes) else str(c) for c in row]
            for row in out[classes].reshape(len(scores), -1)
        ]
        names = sorted(rows[0], key=order)
        by_class = np.empty_like(scores)
        for r, row_names in enumerate(rows):
            lookup = dict(zip(row_names, scores[r], strict=True))
            by_class[r] = [lookup.get(n, np.nan) for n in names]
        return names, by_class

    def _row_signature(
        self, is_example: bool, signature: str | None
    ) -> tuple[Signature, str] | None:
        """The signature rows of this form and request run, and the output scored, if
        it can take the fast path."""
        try:
            kind = "example" if is_example else "tensor"
            sig = self.choose(kind, signature or self._default_signature)
        except PgmlError:
            return None  # the general path raises it again, for this row
        output = RowPath.output_for(sig)
        if self.row.runtime_of(sig.name) != "litert" or output is None:
            return None
        return sig, output

    def _row_path(self, is_example: bool, signature: str | None) -> RowPath | None:
        """The fast path for one input form and requested signature, if it has one."""
        found = self._row_signature(is_example, signature)
        if found is None:
            return None
        sig, output = found
        return RowPath.build(self.litert, sig, output, self._feature_map, is_example)

    def _fast_scores(self, data: bytes | np.ndarray, signature: str | None) -> np.ndarray | None:
        """One row's scores on the fast path, or None: then the general path scores it."""
        if isinstance(data, str):
            return None  # text: no fast path
        is_example = type(data) is bytes
        key = (is_example, signature)
        path = self._row_paths.get(key, _UNKNOWN)
        if path is _UNKNOWN:
            path = self._row_paths[key] = self._row_path(is_example, signature)
        if path is None:
            return None
        return path.example(data) if is_example else path.tensor(data)

    def native_plan(self, is_example: bool, signature: str | None) -> list[str] | None:
        """How src/native_model.c may score rows of this form in C: [PLAN_FORMAT,
        libLiteRt.so, flatbuffer file (in the version's directory), signature, output,
        classes output, top k, only feature, inputs, heads, (input, feature, dtype,
        values, default) per input, heads, (keys N, id of others, keys, ids) per
        lookup, (class index, label) per position or key...], or None when C cannot
        take them. Worked out at registration and stored (native_plans); asked for by
        C only for versions registered before (or changed since)."""
        library = litert_library()
        if library is None:
            return None
        sig = self._litert_signature(is_example, signature)
        if sig is None:
            return None
        if self.parsed_by_plan(sig):
            plan = parsed_plan_for_c(sig)
        else:
            plan = named_plan_for_c(sig, self._feature_map)
        if plan is None:
            return None
        classes = self._classes_for_c(sig, bool(plan[2]))
        if classes is None:
            return None
        return [PLAN_FORMAT, library, self.row.litert[sig.name]["file"], *plan, *classes]

    def native_plans(self) -> dict[str, dict[str, list[str] | None]]:
        """Every plan C may ask for, stored at registration: {"example" | "tensor":
        {signature, or "" for the default: plan or None}}."""
        names = ["", *self.signatures]
        return {
            form: {name: self.native_plan(form == "example", name or None) for name in names}
            for form in ("example", "tensor")
        }

    def _classes_for_c(self, sig: Signature, by_key: bool) -> list[str] | None:
        """(class index, label) pairs, flat, as top_classes answers for the top score's
        position (or, BY_KEY, for each key of the classes output's vocabulary); index -1:
        the position itself. None when C cannot answer as top_classes does."""
        classes = signatures.class_output(sig)
        plan = sig.plan or {}
        if classes is None:
            pairs = [self._indexed(i) for i in range(len(self.row.labels or []))]
        elif by_key:
            pairs = [self._named_class(v, -1) for v in plan["vocabularies"][classes]]
        elif "top_k" in plan and classes in plan.get("vocabularies", {}):
            # C's key is the position among the probabilities; it is 0 in the top k
            pairs = [self._named_class(v, 0) for v in plan["vocabularies"][classes]]
        elif classes in plan.get("constants", {}):
            pairs = [self._named_class(v, i) for i, v in enumerate(plan["constants"][classes])]
        else:
            return None
        return [item for index, label in pairs for item in (str(index), label)]

    def _litert_signature(self, is_example: bool, signature: str | None) -> Signature | None:
        """The signature inputs of this form and request go to, if it runs on LiteRT:
        pgml then parses Examples (by its plan) or reads its inputs' features by name,
        or takes a float4[] as its one input."""
        try:
            sig = self.choose(
                "example" if is_example else "tensor", signature or self._default_signature
            )
        except PgmlError:
            return None
        if self.row.runtime_of(sig.name) != "litert":
            return None
        if not is_example:  # a float4[] feeds a tensor input, never a parse
            return sig if not sig.takes_examples and not self.parsed_by_plan(sig) else None
        return sig if self.parsed_by_plan(sig) or not sig.takes_examples else None

    def _untyped_bytes(self, data: bytes | str | np.ndarray) -> bytes | str | np.ndarray:
        """DATA, or the bytes it stands for: an untyped parameter resolves to text, so a
        driver that sends bytes untyped (pg8000) hands over a bytea's text form
        '\\x0a…'; for a model with no text input that can only mean the bytes."""
        if (
            isinstance(data, str)
            and data.startswith("\\x")
            and not any(s.takes_text for s in self.signatures.values())
        ):
            try:
                return bytes.fromhex(data[2:])
            except ValueError:
                pass
        return data

    def predict(
        self, data: bytes | str | np.ndarray, output: str | None, signature: str | None
    ) -> list[float]:
        data = self._untyped_bytes(data)
        if output is None:
            scores = self._fast_scores(data, signature)
            if scores is not None:
                return scores.ravel().tolist()
        sig, out = self.score(data, signature)
        return self.scores(sig, out, output)[0].tolist()

    def top_class(
        self, data: bytes | str | np.ndarray, signature: str | None, output: str | None = None
    ) -> tuple[int, str]:
        data = self._untyped_bytes(data)
        if output is None:
            scores = self._fast_scores(data, signature)
            if scores is not None and scores.size > 1:
                self.check_finite(scores)
                return self._indexed(int(scores.argmax()))
        sig, out = self.score(data, signature)
        return self.top_classes(sig, out, output)[0]

    def info(self) -> dict[str, Any]:
        loaded = [r.name for r in (self._litert, self._tensorflow) if r is not None]
        if not loaded and any(self.row.runtime_of(s) == "litert" for s in self.signatures):
            loaded = ["litert"]  # in C only (src/native.c)
        return {
            "name": self.row.name,
            "version": self.row.version,
            "runtime": "+".join(loaded) or "none",
            "load_ms": round(self.load_ms, 1),
        }
