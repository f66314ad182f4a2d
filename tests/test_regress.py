"""Runs the pg_regress suite (test/sql, test/expected) via PGXS `make installcheck`."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pg_regress(cluster, mlp_dir, serving_dir):
    out = ROOT / "build" / "regress"
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PGHOST": cluster.host,
        "PGPORT": str(cluster.port),
        "PGUSER": cluster.user,
        "PGML_TEST_MLP_DIR": str(mlp_dir),
        "PGML_TEST_SERVING_DIR": str(serving_dir),
    }
    proc = subprocess.run(
        ["make", "-s", "installcheck"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    diffs = out / "regression.diffs"
    detail = diffs.read_text() if diffs.exists() else proc.stdout + proc.stderr
    assert proc.returncode == 0, detail
