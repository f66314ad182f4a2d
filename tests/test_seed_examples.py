"""The seeds' workflows in examples/ run against a real server, as a newcomer runs them."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


@pytest.fixture(scope="module")
def examples_url(cluster):
    import setup as examples_setup

    return examples_setup.prepare(cluster.url(), force=True)


def _psql(url: str, script: str) -> str:
    dsn = url.replace("postgresql+pg8000", "postgresql")
    proc = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-f", str(ROOT / script), dsn],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_hana_eml_flow(examples_url):
    out = _psql(examples_url, "examples/01_hana_eml_mnist.sql")
    assert "rows_scored" in out and "1797" in out
    accuracy = float(out.split("accuracy")[1].split("\n")[2].strip())
    assert accuracy > 0.9


def test_mariadb_categories_flow(examples_url):
    out = _psql(examples_url, "examples/02_mariadb_categories.sql")
    assert " zero " in out and " seven " in out and "(15 rows)" in out


def test_ecl_parallel_flow(examples_url):
    import ecl_parallel

    result = ecl_parallel.run(examples_url, workers=2)
    assert result["rows"] == 1797 and result["workers_launched"] >= 1
    assert sum(result["rows_per_worker"]) + result["rows_by_leader"] == 1797
    assert sum(result["rows_per_worker"]) > 0  # workers really scored rows
    assert result["accuracy"] > 0.95


def test_fastapi_flow(examples_url):
    import fastapi_app
    from fastapi.testclient import TestClient

    from pgml_ext import reference

    x, y = reference.digits()
    api = TestClient(fastapi_app.create_app(examples_url))
    created = api.post("/predictions", json={"pixels": x[3].tolist()})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["predicted"] == "3" and len(body["scores"]) == 10
    assert api.get(f"/predictions/{body['id']}").json() == body
    assert api.get("/predictions/999999").status_code == 404
    assert api.post("/predictions", json={"pixels": [0.0] * 10}).status_code == 422
    # the server's error reaches the API client as a message, not a stack trace
    broken = TestClient(fastapi_app.create_app(examples_url, model="no_such_model"))
    bad = broken.post("/predictions", json={"pixels": x[3].tolist()})
    assert bad.status_code == 422 and "not registered" in bad.json()["detail"]
