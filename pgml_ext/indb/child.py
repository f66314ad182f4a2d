"""Registration's model work (describing.py) in a child process of the backend.

The backend starts the server venv's Python on ``python -m pgml_ext.indb.child``, hands
it the job as a JSON file on stdin and waits, acting on a cancel or statement_timeout (the
child is killed). The child writes its answer as JSON into the registration's private
work directory, and each LiteRT flatbuffer as a file beside it. A child that dies (a
converter or TensorFlow crash on a hostile graph) is an ERROR of this registration,
not a crash-restart of the cluster; TensorFlow never loads into the backend.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pgml_ext.indb.errors import INTERNAL, PgmlError

ANSWER = "answer.json"
# How often the backend looks for a cancel while it waits (seconds).
POLL_SECONDS = 0.1


def _python() -> tuple[str, dict[str, str]]:
    """The interpreter of the venv this package is installed in, and its environment;
    the server's own Python (the version PL/Python embeds) with this package on its
    path when there is no venv."""
    package_parent = Path(__file__).resolve().parents[2]
    # what this backend imports from (the server venv, put on PL/Python's path), first
    path = [str(package_parent), *(p for p in sys.path if p and os.path.isdir(p))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONDONTWRITEBYTECODE": "1"}
    for folder in package_parent.parents:
        if (folder / "pyvenv.cfg").is_file() and (folder / "bin" / "python").exists():
            return str(folder / "bin" / "python"), env
    return f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}", env


def run(job: dict[str, Any], workdir: str, what: str) -> dict[str, Any]:
    """JOB's answer, worked out by a child process writing into WORKDIR (for WHAT)."""
    from pgml_ext.indb import registry

    python, env = _python()
    log_path = os.path.join(workdir, "child.log")
    with open(os.path.join(workdir, "job.json"), "w") as f:
        json.dump(job, f)
    with open(log_path, "wb") as log, open(os.path.join(workdir, "job.json"), "rb") as stdin:
        try:
            proc = subprocess.Popen(
                [python, "-m", "pgml_ext.indb.child", workdir],
                stdin=stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=workdir,
            )
        except OSError as e:
            raise PgmlError(
                f"{what}: the model process could not start: {e}",
                INTERNAL,
                hint="The server's Python (the venv `make setup` makes) must be readable "
                "by the server's operating-system user.",
            ) from None
        try:
            while True:
                try:
                    proc.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    registry.check_for_interrupts()  # a cancel raises here
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    answer_path = os.path.join(workdir, ANSWER)
    if proc.returncode != 0 or not os.path.isfile(answer_path):
        raise PgmlError(
            f"{what}: the model process {_death(proc.returncode)} while it read the model",
            INTERNAL,
            detail=_tail(log_path),
            hint="The model may be damaged or use what TensorFlow cannot run; the database "
            "is unharmed. Export it again, or report it with this message.",
        )
    with open(answer_path) as f:
        answer = json.load(f)
    if "error" in answer:
        e = answer["error"]
        raise PgmlError(e["message"], e["sqlstate"], detail=e.get("detail"), hint=e.get("hint"))
    return answer


def _death(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _tail(path: str, lines: int = 5) -> str | None:
    try:
        with open(path, errors="replace") as f:
            kept = [line.rstrip() for line in f.read().splitlines() if line.strip()][-lines:]
    except OSError:
        return None
    return "\n".join(kept) or None


# -- in the child ------------------------------------------------------------------------


def _outcomes(outcomes: list, workdir: str) -> list[dict[str, Any]]:
    """Outcomes as JSON, each flatbuffer written to a file of WORKDIR (named in it)."""
    out = []
    for i, o in enumerate(outcomes):
        item = asdict(o)
        data = item.pop("flatbuffer")
        if data is not None:
            item["flatbuffer_file"] = f"signature-{i}.tflite"
            Path(workdir, item["flatbuffer_file"]).write_bytes(data)
        out.append(item)
    return out


def read_outcomes(answer: dict[str, Any], workdir: str) -> list:
    """The child's outcomes (conversion.Outcome), flatbuffers read back from WORKDIR."""
    from pgml_ext.indb.conversion import Outcome

    outcomes = []
    for item in answer["outcomes"]:
        name = item.pop("flatbuffer_file", None)
        data = Path(workdir, name).read_bytes() if name else None
        outcomes.append(Outcome(**item, flatbuffer=data))
    return outcomes


def _work(job: dict[str, Any], workdir: str) -> dict[str, Any]:
    from pgml_ext.indb import describing

    samples = Path(job["samples"]).read_bytes() if job.get("samples") else None
    if job["kind"] == "flatbuffer":
        data = Path(job["path"]).read_bytes()
        found, described, outcomes = describing.flatbuffer(
            job["what"], data, job["runtime"], job["options"], job["threads"]
        )
    else:
        found, described, outcomes = describing.savedmodel(
            job["what"],
            job["path"],
            job["runtime"],
            job["options"],
            samples,
            workdir,
            job["threads"],
        )
    return {"found": found, "described": described, "outcomes": _outcomes(outcomes, workdir)}


def _exit_with_parent() -> None:
    """Stop when the backend that started us is gone (killed, or its server stopped)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            threading.Event().wait(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def main(workdir: str) -> int:
    _exit_with_parent()
    job = json.load(sys.stdin)
    try:
        answer = _work(job, workdir)
    except PgmlError as e:
        answer = {
            "error": {
                "message": e.message,
                "sqlstate": e.sqlstate,
                "detail": e.detail,
                "hint": e.hint,
            }
        }
    except Exception as e:  # a bug of ours: said, with its traceback in the child's log
        import traceback

        traceback.print_exc()
        answer = {
            "error": {
                "message": f"{job['what']}: internal error while reading the model: "
                f"{type(e).__name__}: {e}",
                "sqlstate": INTERNAL,
                "hint": "This is a bug in pgml_ext; please report it with this message.",
            }
        }
    tmp = os.path.join(workdir, ANSWER + ".tmp")
    with open(tmp, "w") as f:
        json.dump(answer, f)
    os.replace(tmp, os.path.join(workdir, ANSWER))
    sys.stdout.flush()
    # TensorFlow's threads and atexit handlers can take seconds or hang: the answer is out
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
