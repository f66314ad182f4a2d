"""A SavedModel directory <-> one bytes blob (tar), with its SHA-256 checksum.

The blob is what the database stores, so every backend on every server that has the
database can load the model without files being copied around.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from pgml_ext.indb.errors import DATA_CORRUPTED, INVALID_PARAMETER, PgmlError

CHUNK_SIZE = 8 * 1024 * 1024  # rows of pgml.model_chunks; keeps single values far below 1 GB


# options["format"] of a model uploaded as a LiteRT flatbuffer (a .tflite file) rather
# than as a SavedModel archive
FLATBUFFER = "tflite"


def pack(saved_model_dir: str | os.PathLike) -> bytes:
    """Tar a SavedModel directory (uncompressed: weights barely compress, TOAST tries)."""
    root = Path(saved_model_dir)
    if not (root / "saved_model.pb").is_file():
        raise PgmlError(
            f"'{root}' is not a SavedModel directory (no saved_model.pb in it)",
            INVALID_PARAMETER,
            hint="Pass the directory written by model.export(dir) "
            "or tf.saved_model.save(obj, dir).",
        )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0  # same directory -> same bytes -> same checksum
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            elif path.is_dir():
                tar.addfile(info)
    return buf.getvalue()


def checksum(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def chunks(blob: bytes, size: int = CHUNK_SIZE) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob), size)] or [b""]


def verify(blob: bytes, expected: str, what: str) -> None:
    actual = checksum(blob)
    if actual != expected:
        raise PgmlError(
            f"{what}: stored model is corrupt "
            f"(sha256 {actual[:12]}..., expected {expected[:12]}...)",
            DATA_CORRUPTED,
            hint="Register the model again; the stored blob does not match its checksum.",
        )


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Regular files and directories with relative paths only: a model blob must not
    be able to write outside its own directory."""
    members = []
    for m in tar.getmembers():
        parts = Path(m.name).parts
        if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
            raise PgmlError(f"model archive has an unsafe entry '{m.name}'", DATA_CORRUPTED)
        m.mode = 0o700 if m.isdir() else 0o600
        members.append(m)
    return members


def unpack(blob: bytes, target: str | os.PathLike) -> Path:
    """Extract ``blob`` into the new directory ``target``: into a private directory
    beside it first (0700), renamed into place when complete, so a directory that
    exists holds all of the archive. The caller makes sure nobody else writes TARGET."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp", dir=target.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
            tar.extractall(tmp, members=_safe_members(tar))
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
