"""What ``register`` takes from a user's disk, as the bytes the server registers.

- a SavedModel directory (``saved_model.pb`` and ``variables/``): packed as a tar;
- a ``.tflite`` file (a LiteRT flatbuffer): sent as it is, and served by LiteRT as given;
- a Keras file (``.keras``, or a legacy ``.h5``): exported to a SavedModel here first
  (``model.export``), which needs TensorFlow on this machine.
Anything else is refused with what to pass instead.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pgml_ext.indb import archive
from pgml_ext.indb.errors import INVALID_PARAMETER, PgmlError

KERAS = (".keras", ".h5", ".hdf5")


@dataclass
class Source:
    blob: bytes
    options: dict = field(default_factory=dict)  # registration options it implies
    note: str | None = None  # what was done to it, for the user


def _refuse(message: str, hint: str) -> PgmlError:
    return PgmlError(message, INVALID_PARAMETER, hint=hint)


@contextmanager
def model_source(path: str | os.PathLike) -> Iterator[Source]:
    """PATH as the bytes to upload (and the options they need)."""
    p = Path(path)
    if not p.exists():
        raise _refuse(
            f"'{p}' does not exist",
            "Pass a SavedModel directory (model.export(dir)), a .keras file or a .tflite file.",
        )
    if p.is_dir():
        if (p / "saved_model.pb").is_file():
            yield Source(archive.pack(p))
            return
        inside = sorted(c.name for c in p.iterdir())[:8]
        models = [c for c in inside if c.endswith((*KERAS, ".tflite", ".pb"))]
        raise _refuse(
            f"'{p}' is not a SavedModel directory (no saved_model.pb in it)",
            f"Pass one of the models in it: {', '.join(models)}."
            if models
            else "Pass the directory written by model.export(dir) or "
            "tf.saved_model.save(obj, dir).",
        )
    if p.name == "saved_model.pb":
        raise _refuse(
            f"'{p}' is the graph of a SavedModel, not all of it",
            f"Pass its directory, '{p.parent}' (it holds variables/ too).",
        )
    if p.suffix == ".tflite":
        yield Source(
            p.read_bytes(), {"format": archive.FLATBUFFER}, "a LiteRT flatbuffer, served as given"
        )
        return
    if p.suffix in KERAS:
        with tempfile.TemporaryDirectory(prefix="pgml_ext-export-") as tmp:
            _export_keras(p, Path(tmp) / "savedmodel")
            yield Source(
                archive.pack(Path(tmp) / "savedmodel"),
                note=f"exported {p.name} to a SavedModel (model.export) for registration",
            )
        return
    raise _refuse(
        f"'{p}' is not a model pgml_ext can register",
        "Pass a SavedModel directory (model.export(dir) or tf.saved_model.save), a Keras "
        ".keras/.h5 file, or a LiteRT .tflite file.",
    )


def _export_keras(path: Path, out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    try:
        import keras
    except ImportError:
        raise _refuse(
            f"registering '{path.name}' exports it to a SavedModel first, which needs "
            "TensorFlow here",
            "pip install tensorflow-cpu (or pgml_ext[server]) on this machine, or export it "
            "yourself: keras.models.load_model(path).export(dir).",
        ) from None
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:
        raise _refuse(
            f"Keras cannot read '{path}': {str(e).splitlines()[0] if str(e) else type(e).__name__}",
            "Save it again with model.save('model.keras'), or export a SavedModel with "
            "model.export(dir).",
        ) from None
    model.export(str(out), verbose=False)
