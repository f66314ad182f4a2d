"""A model loaded in this backend: its row, its runtime and its signatures."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pgml_ext.indb import archive, registry, runtimes, signatures
from pgml_ext.indb.errors import INVALID_PARAMETER, PgmlError
from pgml_ext.indb.registry import ModelRow
from pgml_ext.indb.signatures import Signature


def model_dir() -> str:
    """Where blobs are unpacked for the runtime: one directory per checksum, shared by
    the backends of this server and readable by its OS user only."""
    default = os.path.join(tempfile.gettempdir(), f"pgml_ext-{os.getuid()}", "models")
    return registry.setting("pgml.model_dir", default)


@dataclass
class LoadedModel:
    row: ModelRow
    runtime: runtimes.Runtime
    load_ms: float
    signatures: dict[str, Signature] = field(init=False)

    def __post_init__(self) -> None:
        self.signatures = {k: Signature.from_json(k, v) for k, v in self.row.signatures.items()}

    @classmethod
    def load(cls, row: ModelRow) -> LoadedModel:
        started = time.perf_counter()
        data = registry.blob(row.id)
        archive.verify(data, row.checksum, f"model '{row.name}' v{row.version}")
        path = archive.unpack(data, model_dir(), row.checksum)
        threads = int(registry.setting("pgml.threads", "1"))
        runtime = runtimes.load(row.runtime, str(path), threads)
        return cls(row, runtime, (time.perf_counter() - started) * 1000)

    def score(
        self, data: bytes | list, signature: str | None
    ) -> tuple[Signature, dict[str, np.ndarray]]:
        """Run one input through the signature the input form calls for."""
        model = self.row.name
        requested = signature or self.row.options.get("signature")
        if isinstance(data, bytes | bytearray | memoryview):
            sig = signatures.choose(self.signatures, model, "example", requested)
            feeds = signatures.feeds_for_example(
                sig, bytes(data), model, self.row.options.get("feature_map")
            )
        else:
            sig = signatures.choose(self.signatures, model, "tensor", requested)
            arr = signatures.tensor_from_array(data, model)
            feeds = signatures.feeds_for_tensor(sig, arr, model)
        return sig, self.runtime.run(sig.name, feeds)

    def predict(self, data: bytes | list, output: str | None, signature: str | None) -> list[float]:
        sig, out = self.score(data, signature)
        name = signatures.score_output(sig, self.row.name, output)
        values = out[name]
        if values.dtype.kind not in "fiub":
            raise PgmlError(
                f"output '{name}' of model '{self.row.name}' is {values.dtype.name}, not numbers",
                INVALID_PARAMETER,
                hint="Use pgml.classify for text class labels.",
            )
        return values[0].astype(np.float32).ravel().tolist()

    def top_class(self, data: bytes | list, signature: str | None) -> tuple[int, str]:
        """(class index, label) of the highest score.

        Label: registered labels, else the signature's own 'classes' output, else the
        index as text. Index: for a 'classes' output, the label's position among the
        registered labels, or the label itself when it is a number.
        """
        sig, out = self.score(data, signature)
        scores = out[signatures.score_output(sig, self.row.name, None)][0].ravel()
        best = int(np.argmax(scores))
        labels = self.row.labels
        classes = signatures.class_output(sig)
        if classes is None:
            label = labels[best] if labels and best < len(labels) else str(best)
            return best, label
        raw = out[classes][0].ravel()[best]
        label = raw.decode() if isinstance(raw, bytes) else str(raw)
        if labels and label in labels:
            return labels.index(label), label
        if label.lstrip("-").isdigit():
            index = int(label)
            return index, labels[index] if labels and 0 <= index < len(labels) else label
        return best, label

    def info(self) -> dict[str, Any]:
        return {
            "name": self.row.name,
            "version": self.row.version,
            "runtime": self.row.runtime,
            "load_ms": round(self.load_ms, 1),
        }
