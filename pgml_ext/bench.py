"""`pgml-ext bench` / `make bench`: the reference workload, every way of scoring it,
side by side in one run on the embedded cluster.

For the MLP and the CNN, with tf.Example (bytea) and float4[] inputs, every way ending
with (id, class) in a table:
- inline    CREATE TABLE p AS SELECT id, pgml.classify(model, col) FROM inputs, in
            the plan the planner picks (serial or parallel: it weighs each model's
            measured cost per row, src/scoring_cost.c); rows scored in blocks
- serial    the same with max_parallel_workers_per_gather = 0
- batch     CREATE TABLE AS SELECT unnest(ids), unnest(pgml.classify_batch(model,
            inputs)) over array_agg(id ORDER BY id), array_agg(col ORDER BY id)
- best      the best client pipeline we know: psycopg 3, binary COPY out, one batch
            parse (tf.io.parse_example; numpy over the binary COPY for float4[]),
            TensorFlow on all cores, binary COPY of (id, class) back
- client    the seeds' pipeline (003/004): pull rows with pg8000, score with
            TensorFlow in the client, write the classes back
            (for both clients, TensorFlow's import and model load are not counted)
- naive     per-row TensorFlow in PL/Python (the same model registered with
            runtime => 'tensorflow'), on a sample of rows
- floor     the same LiteRT model on an in-memory numpy array: the fastest of one
            call and calls over chunks of 64 or 1,024 rows
- read      the batch form's array_agg alone, no scoring: the cost of reading inputs
- serial with LiteRT on every core (pgml.threads), and the two runtimes alone on every
  core, in-process on numpy: LiteRT bounds scoring in the server, TensorFlow the best
  client
And once, on a larger MLP table (--parallel-rows, 100,000): serial vs the planner's plan.
Each figure is the median of --repeats runs; ratios are computed from those medians.
Also: first call in a new connection (import + load) and backend RSS after scoring.
"""

from __future__ import annotations

import io
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from pgml_ext import client, reference
from pgml_ext.cluster import Cluster
from pgml_ext.demo import embedded_database, say, trained_cnn, trained_mlp

BENCH_DB = "pgml_bench"


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class Workload:
    def __init__(self, engine: sa.Engine, table: str, rows: int) -> None:
        self.engine, self.table, self.rows = engine, table, rows
        self.x, self.y = reference.cycled(rows)

    def sql(self, conn, text: str) -> list:
        return conn.execute(sa.text(text)).all()

    # -- the ways of scoring -------------------------------------------------------------

    def inline(self, conn, model: str, col: str, limit: int | None = None) -> None:
        where = f" WHERE id < {limit}" if limit else ""
        conn.execute(sa.text("DROP TABLE IF EXISTS inline_predictions"))
        conn.execute(
            sa.text(
                f"CREATE TABLE inline_predictions AS SELECT id, pgml.classify('{model}', {col}) "
                f"AS class FROM {self.table}{where}"
            )
        )
        got = self.sql(conn, "SELECT count(*) FROM inline_predictions")
        assert got[0][0] == (limit or self.rows)

    def inline_plpython(self, conn, model: str, col: str) -> None:
        """serial with the native scorer off: every row through PL/Python."""
        conn.execute(sa.text("SET pgml.native_scoring = off"))
        try:
            self.serial(conn, model, col)
        finally:
            conn.execute(sa.text("RESET pgml.native_scoring"))

    def serial(self, conn, model: str, col: str) -> None:
        conn.execute(sa.text("SET max_parallel_workers_per_gather = 0"))
        try:
            self.inline(conn, model, col)
        finally:
            conn.execute(sa.text("RESET max_parallel_workers_per_gather"))

    def workers_planned(self, conn, model: str, col: str) -> int:
        """The workers of the plan the planner picks for inline (0: serial)."""
        plan = self.sql(
            conn,
            f"EXPLAIN CREATE TABLE p AS SELECT id, pgml.classify('{model}', {col}) "
            f"FROM {self.table}",
        )
        for (line,) in plan:
            if "Workers Planned:" in line:
                return int(line.split(":")[1])
        return 0

    def read(self, conn, col: str) -> None:
        """The batch form's input, array_agg, with no scoring: what reading costs."""
        got = self.sql(
            conn, f"SELECT array_length(array_agg({col} ORDER BY id), 1) FROM {self.table}"
        )
        assert got[0][0] == self.rows

    def batch(self, conn, model: str, col: str) -> None:
        conn.execute(sa.text("DROP TABLE IF EXISTS batch_predictions"))
        conn.execute(
            sa.text(
                "CREATE TABLE batch_predictions AS SELECT unnest(ids) AS id, "
                "unnest(classes) AS class FROM (SELECT array_agg(id ORDER BY id) AS ids, "
                f"pgml.classify_batch('{model}', array_agg({col} ORDER BY id)) AS classes "
                f"FROM {self.table}) s"
            )
        )
        got = self.sql(conn, "SELECT count(*) FROM batch_predictions")
        assert got[0][0] == self.rows

    def best_client(self, conninfo: str, signature, col: str) -> None:
        """The best client pipeline we know (see the top of this file)."""
        import psycopg
        import tensorflow as tf

        with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
            query = f"COPY (SELECT id, {col} FROM {self.table}) TO STDOUT (FORMAT BINARY)"
            with cur.copy(query) as copy:
                if col == "example":
                    copy.set_types(["int4", "bytea"])
                    rows = list(copy.rows())
                    ids = [r[0] for r in rows]
                    x = tf.io.parse_example(
                        [r[1] for r in rows],
                        {reference.FEATURE: tf.io.FixedLenFeature([784], tf.float32)},
                    )[reference.FEATURE]
                else:
                    ids, x = float4_rows(b"".join(copy), 784)
            name, spec = signature["input"]
            x = tf.reshape(x, [-1, *spec[1:]])
            scores = signature["fn"](**{name: x})[signature["output"]].numpy()
            classes = scores.argmax(axis=1).astype(str)
            cur.execute("TRUNCATE client_predictions")
            with cur.copy("COPY client_predictions (id, class) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text"])
                for row in zip(ids, classes.tolist(), strict=True):
                    copy.write_row(row)

    def client(self, dbapi_conn, signature, col: str) -> None:
        """Seeds 003/004: pull, score in the client with TensorFlow, push the classes back."""
        import tensorflow as tf

        cur = dbapi_conn.cursor()
        cur.execute(f"SELECT id, {col} FROM {self.table}")
        fetched = cur.fetchall()
        ids = [r[0] for r in fetched]
        if col == "example":
            parsed = tf.io.parse_example(
                [r[1] for r in fetched],
                {reference.FEATURE: tf.io.FixedLenFeature([784], tf.float32)},
            )[reference.FEATURE]
            x = parsed.numpy()
        else:
            x = np.asarray([r[1] for r in fetched], dtype=np.float32)
        name, spec = signature["input"]
        x = x.reshape([-1, *spec[1:]])
        scores = signature["fn"](**{name: tf.constant(x)})[signature["output"]].numpy()
        classes = [str(c) for c in scores.argmax(axis=1).tolist()]
        cur.execute("TRUNCATE client_predictions")
        cur.execute(
            "INSERT INTO client_predictions SELECT * FROM unnest(%s::int[], %s::text[])",
            (ids, classes),
        )
        dbapi_conn.commit()


def float4_rows(data: bytes, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, [rows, WIDTH] float32) from a binary COPY of (int4, float4[WIDTH]) rows,
    read by numpy in one pass: every row has the same layout, which is checked."""
    header, trailer = 19, 2  # PGCOPY signature, flags, extension; the -1 field count
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i4"),
            ("array_len", ">i4"),
            ("ndim", ">i4"),
            ("has_nulls", ">i4"),
            ("element", ">i4"),
            ("dim", ">i4"),
            ("lower", ">i4"),
            ("values", [("len", ">i4"), ("value", ">f4")], width),
        ]
    )
    body = np.frombuffer(
        data, row, offset=header, count=(len(data) - header - trailer) // row.itemsize
    )
    expected = (2, 4, 4, 20 + 8 * width, 1, 0, 700, width, 1)
    fields = ("fields", "id_len", "array_len", "ndim", "has_nulls", "element", "dim", "lower")
    if (
        (len(data) - header - trailer) % row.itemsize
        or any(
            (body[f] != e).any() for f, e in zip(fields, expected[:2] + expected[3:], strict=True)
        )
        or (body["values"]["len"] != 4).any()
    ):
        raise ValueError("rows of another layout: not one float4[] of the expected width each")
    return body["id"].astype(np.int32), body["values"]["value"].astype(np.float32)


def _client_signature(saved_model: Path) -> dict[str, Any]:
    import tensorflow as tf

    fn = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    ((name, spec),) = fn.structured_input_signature[1].items()
    (output,) = fn.structured_outputs
    return {"fn": fn, "input": (name, [-1, *spec.shape.as_list()[1:]]), "output": output}


def _litert_runner(engine: sa.Engine, model: str, x: np.ndarray, threads: int):
    """LiteRT's runner of the flatbuffer the server runs for MODEL (serving_default), on
    THREADS threads, in this process; its input's name, and X shaped for it."""
    from ai_edge_litert.interpreter import Interpreter

    with engine.connect() as conn:
        fb = conn.execute(
            sa.text(
                "SELECT l.data FROM pgml.model_litert l JOIN pgml.model_versions m ON m.id = "
                "l.model_id WHERE m.name = :m AND l.signature = 'serving_default'"
            ),
            {"m": model},
        ).scalar_one()
    runner = Interpreter(model_content=fb, num_threads=threads).get_signature_runner(
        "serving_default"
    )
    ((name, details),) = runner.get_input_details().items()
    return runner, name, x.reshape([-1, *details["shape_signature"][1:]])


def _floor(engine: sa.Engine, model: str, x: np.ndarray, repeats: int) -> float:
    """The same LiteRT flatbuffer the server runs, on numpy in this process: the fastest
    of one call over every row and calls over chunks of 64 and 1,024 rows (a big batch
    is not always the fastest: its activations leave the CPU's caches)."""
    runner, name, rows = _litert_runner(engine, model, x, threads=1)

    def chunked(size: int) -> None:
        for start in range(0, len(rows), size):
            runner(**{name: rows[start : start + size]})

    timings = []
    for size in (64, 1024, len(rows)):
        chunked(size)  # warm up: allocate for the chunk size
        timings.append(_median_seconds(lambda size=size: chunked(size), repeats))
    return min(timings)


def _runtimes_on_all_cores(
    engine: sa.Engine, model: str, x: np.ndarray, signature: dict, repeats: int
) -> dict[str, float]:
    """Rows/s of the two runtimes alone, in this process on numpy, on every core, over
    chunks of 1,024 rows: LiteRT (the flatbuffer the server runs) bounds what scoring in
    the server can reach, TensorFlow what the best client can."""
    runner, name, rows = _litert_runner(engine, model, x, threads=os.cpu_count() or 1)
    tf_name, spec = signature["input"]

    def litert() -> None:
        for start in range(0, len(rows), 1024):
            runner(**{name: rows[start : start + 1024]})

    def tensorflow() -> None:
        for start in range(0, len(rows), 1024):
            signature["fn"](**{tf_name: rows[start : start + 1024].reshape([-1, *spec[1:]])})

    rates = {}
    for runtime, fn in (("litert", litert), ("tensorflow", tensorflow)):
        fn()  # warm up
        rates[runtime] = len(rows) / _median_seconds(fn, repeats)
    return rates


def _serial_on_all_cores(work: Workload, model: str, col: str, repeats: int) -> float:
    """Rows/s of inline scoring in a serial plan with LiteRT on every core (pgml.threads):
    the setting for a costly model on an otherwise idle server."""
    with work.engine.connect() as conn:
        conn.execute(sa.text(f"SET pgml.threads = {os.cpu_count()}"))
        work.serial(conn, model, col)  # load the model with that many threads
        seconds = _median_seconds(lambda: work.serial(conn, model, col), repeats)
    return work.rows / seconds


def _parallel_at_scale(engine: sa.Engine, model: str, rows: int, repeats: int) -> dict:
    """Inline scoring on a larger table, serial plan vs the plan the planner picks: the
    workers' start-up (a new process per query) is amortised here."""
    reference.load_table(engine, "inputs_large", rows)
    query = f"SELECT count(pgml.classify('{model}', example)) FROM inputs_large"
    with engine.connect() as conn:
        conn.execute(sa.text("SET max_parallel_workers_per_gather = 0"))
        conn.execute(sa.text(f"{query} WHERE id < 10"))  # load the model in this backend
        serial = _median_seconds(lambda: conn.execute(sa.text(query)).scalar(), repeats)
        conn.execute(sa.text("RESET max_parallel_workers_per_gather"))
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {query}")).scalars())
        assert "Gather" in plan, plan
        parallel = _median_seconds(lambda: conn.execute(sa.text(query)).scalar(), repeats)
        conn.execute(sa.text("DROP TABLE inputs_large, inputs_large_distinct"))
        conn.commit()
    return {
        "model": model,
        "rows": rows,
        "serial_rows_per_s": rows / serial,
        "parallel_rows_per_s": rows / parallel,
    }


def backend_rss_mb(conn) -> float:
    """The backend's resident memory, read from /proc (benchmarks run on the server's
    machine): asking the backend (pgml.backend_status) would load PL/Python into it."""
    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for backend {pid}")


def _cold_start(url: str | sa.URL, model: str, col: str) -> dict[str, float]:
    """First call and RSS in a new backend (the version's files are on the server)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        started = time.perf_counter()
        conn.execute(sa.text(f"SELECT pgml.classify('{model}', {col}) FROM inputs LIMIT 1")).all()
        first_ms = (time.perf_counter() - started) * 1000
        conn.execute(sa.text(f"SELECT pgml.classify('{model}', {col}) FROM inputs")).all()
        rss = backend_rss_mb(conn)
        status = conn.execute(sa.text("SELECT pgml.backend_status()")).scalar()
    engine.dispose()
    return {
        "first_call_ms": first_ms,
        "rss_mb": rss,
        "tensorflow_imported": status["tensorflow_imported"],
    }


def _measure(
    work: Workload, model: str, col: str, signature: dict, naive_rows: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Median seconds and rows/s of each way of scoring one model on one input column."""
    n, naive_n = work.rows, min(naive_rows, work.rows)
    seconds: dict[str, tuple[float, int]] = {}
    with work.engine.connect() as conn:
        work.inline(conn, model, col, limit=10)  # load the model in this backend
        seconds["inline"] = _median_seconds(lambda: work.inline(conn, model, col), repeats), n
        seconds["inline_plpython"] = (
            _median_seconds(lambda: work.inline_plpython(conn, model, col), repeats),
            n,
        )
        seconds["serial"] = _median_seconds(lambda: work.serial(conn, model, col), repeats), n
        seconds["batch"] = _median_seconds(lambda: work.batch(conn, model, col), repeats), n
        seconds["read"] = _median_seconds(lambda: work.read(conn, col), repeats), n
    raw = work.engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        work.client(dbapi, signature, col)  # warm up
        seconds["client"] = _median_seconds(lambda: work.client(dbapi, signature, col), repeats), n
    finally:
        raw.close()
    url = work.engine.url
    conninfo = f"host={url.host} port={url.port} dbname={url.database} user={url.username}"
    work.best_client(conninfo, signature, col)  # warm up
    seconds["best"] = (
        _median_seconds(lambda: work.best_client(conninfo, signature, col), repeats),
        n,
    )
    with work.engine.connect() as conn:
        naive = f"{model}_tf"
        work.inline(conn, naive, col, limit=10)
        seconds["naive"] = (
            _median_seconds(lambda: work.inline(conn, naive, col, limit=naive_n), repeats),
            naive_n,
        )
    return {k: {"seconds": s, "rows_per_s": count / s} for k, (s, count) in seconds.items()}


def run(
    rows: int = 20_000,
    cnn_rows: int = 5_000,
    naive_rows: int = 2_000,
    repeats: int = 3,
    parallel_rows: int = 100_000,
    out_dir: str | os.PathLike = "benchmarks/results",
    port: int | None = None,
) -> dict:
    say(f"starting the embedded cluster (port {Cluster.default(port).port})")
    _, engine = embedded_database(BENCH_DB, port)
    url = engine.url
    mlp_dir = trained_mlp()
    cnn_dir = trained_cnn()
    say("registering the MLP and the CNN (LiteRT after the parity check, and TensorFlow)")
    for name, path in (("mlp", mlp_dir), ("cnn", cnn_dir)):
        client.register_model(engine, name, path)
        client.register_model(engine, f"{name}_tf", path, runtime="tensorflow")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE client_predictions (id int, class text)"))
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "repeats": repeats,
        "models": {},
    }
    for model, path, n in (("mlp", mlp_dir, rows), ("cnn", cnn_dir, cnn_rows)):
        say(f"loading {n:,} rows for the {model}")
        reference.load_table(engine, "inputs", n)
        work = Workload(engine, "inputs", n)
        signature = _client_signature(path)
        floor_s = _floor(engine, model, work.x, repeats)
        model_results: dict[str, Any] = {
            "rows": n,
            "inputs": {},
            "runtimes_all_cores": _runtimes_on_all_cores(engine, model, work.x, signature, repeats),
        }
        for col, form in (("example", "tf.Example"), ("pixels", "float4[]")):
            say(f"{model} / {form}: inline, serial, batch, clients, naive ({repeats} runs each)")
            timings = _measure(work, model, col, signature, naive_rows, repeats)
            timings["floor"] = {"seconds": floor_s, "rows_per_s": n / floor_s}
            with engine.connect() as conn:
                workers = work.workers_planned(conn, model, col)
            model_results["inputs"][form] = {
                "timings": timings,
                "serial_all_cores_rows_per_s": _serial_on_all_cores(work, model, col, repeats),
                "workers_planned": workers,
                "cold_litert": _cold_start(url, model, col),
                "cold_tensorflow": _cold_start(url, f"{model}_tf", col),
            }
        results["models"][model] = model_results
    if parallel_rows:
        say(f"mlp / tf.Example on {parallel_rows:,} rows: serial vs parallel plan")
        results["parallel_at_scale"] = _parallel_at_scale(engine, "mlp", parallel_rows, repeats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    table = format_table(results)
    (out / "latest.md").write_text(table + "\n")
    _chart(results, out / "latest.png")
    print()
    print(table)
    print(f"\nSaved {out / 'latest.json'}, {out / 'latest.md'} and {out / 'latest.png'}.")
    return results


def format_table(results: dict) -> str:
    lines = [
        "| model | input | rows | inline rows/s (plan) | serial rows/s | batch rows/s | "
        "best client rows/s | seeds' client rows/s | naive TF rows/s | floor rows/s | "
        "**inline ÷ best client** | inline ÷ serial | inline ÷ seeds' client | "
        "inline ÷ naive | batch ÷ floor (time) | batch less its read ÷ floor | first call | RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, m in results["models"].items():
        for form, r in m["inputs"].items():
            t = r["timings"]
            batch_alone = t["batch"]["seconds"] - t["read"]["seconds"]
            rate = {k: v["rows_per_s"] for k, v in t.items()}
            cold = r["cold_litert"]
            workers = r.get("workers_planned", 0)
            plan = f"{workers} worker{'s' if workers > 1 else ''}" if workers else "serial"
            lines.append(
                f"| {model} | {form} | {m['rows']:,} | {rate['inline']:,.0f} ({plan}) | "
                f"{rate['serial']:,.0f} | {rate['batch']:,.0f} | "
                f"{rate['best']:,.0f} | {rate['client']:,.0f} | {rate['naive']:,.0f} | "
                f"{rate['floor']:,.0f} | **{rate['inline'] / rate['best']:.2f}×** | "
                f"{rate['inline'] / rate['serial']:.2f}× | "
                f"{rate['inline'] / rate['client']:.2f}× | "
                f"{rate['inline'] / rate['naive']:.1f}× | "
                f"{t['batch']['seconds'] / t['floor']['seconds']:.2f}× | "
                f"{batch_alone / t['floor']['seconds']:.2f}× | "
                f"{cold['first_call_ms']:,.0f} ms | {cold['rss_mb']:,.0f} MB |"
            )
    cold_tf = [
        r["cold_tensorflow"] for m in results["models"].values() for r in m["inputs"].values()
    ]
    lines.append("")
    reads = [
        f"{model} {form} {r['timings']['read']['seconds'] / r['timings']['floor']['seconds']:.2f}×"
        for model, m in results["models"].items()
        for form, r in m["inputs"].items()
        if "read" in r["timings"]
    ]
    plpython = []
    for model, m in results["models"].items():
        for form, r in m["inputs"].items():
            rate = {k: v["rows_per_s"] for k, v in r["timings"].items()}
            if "inline_plpython" in rate:
                plpython.append(
                    f"{model} {form} {rate['inline_plpython']:,.0f} rows/s "
                    f"(C {rate['serial'] / rate['inline_plpython']:.2f}×)"
                )
    if plpython:
        lines.append(
            "serial with every row through PL/Python (`pgml.native_scoring = off`): "
            + ", ".join(plpython)
            + "."
        )
    scale = results.get("parallel_at_scale")
    if scale:
        serial, parallel = scale["serial_rows_per_s"], scale["parallel_rows_per_s"]
        lines.append(
            f"Parallel query on {scale['rows']:,} {scale['model']} tf.Example rows "
            f"(`count(pgml.classify(...))`, the planner's own parallel plan): serial "
            f"{serial:,.0f} rows/s, parallel {parallel:,.0f} rows/s "
            f"({parallel / serial:.2f}×)."
        )
    threaded = []
    for model, m in results["models"].items():
        for form, r in m["inputs"].items():
            if "serial_all_cores_rows_per_s" in r:
                rate, best = r["serial_all_cores_rows_per_s"], r["timings"]["best"]["rows_per_s"]
                threaded.append(
                    f"{model} {form} {rate:,.0f} rows/s (÷ best client {rate / best:.2f}×)"
                )
    if threaded:
        lines.append(
            f"Serial, LiteRT on all {results['machine']['cpus']} cores (`pgml.threads`): "
            + ", ".join(threaded)
            + "."
        )
    bounds = [
        f"{model} LiteRT {m['runtimes_all_cores']['litert']:,.0f} rows/s, TensorFlow "
        f"{m['runtimes_all_cores']['tensorflow']:,.0f} rows/s (LiteRT ÷ TensorFlow "
        f"{m['runtimes_all_cores']['litert'] / m['runtimes_all_cores']['tensorflow']:.2f}×)"
        for model, m in results["models"].items()
        if "runtimes_all_cores" in m
    ]
    if bounds:
        lines.append(
            "The runtimes alone, in-process on numpy, all cores (what bounds scoring in the "
            "server, and the best client): " + "; ".join(bounds) + "."
        )
    if reads:
        lines.append(
            "Reading the inputs into the batch's array (array_agg, no scoring) alone takes, "
            "in multiples of the floor's time: " + ", ".join(reads) + "."
        )
    lines.append(
        f"Medians of {results['repeats']} runs, {results['machine']['cpus']} cores. First call and "
        "RSS: a new connection on LiteRT; on TensorFlow the first call takes "
        + ", ".join(f"{c['first_call_ms']:,.0f} ms" for c in cold_tf)
        + " and RSS reaches "
        + ", ".join(f"{c['rss_mb']:,.0f} MB" for c in cold_tf)
        + "."
    )
    return "\n".join(lines)


def _chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ways = ["inline", "serial", "batch", "best", "client", "naive", "floor"]
    groups = [(m, f) for m, r in results["models"].items() for f in r["inputs"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(ways)
    for i, way in enumerate(ways):
        values = [
            results["models"][m]["inputs"][f]["timings"][way]["rows_per_s"] for m, f in groups
        ]
        ax.bar([g + i * width for g in range(len(groups))], values, width, label=way)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))])
    ax.set_xticklabels([f"{m}\n{f}" for m, f in groups])
    ax.set_yscale("log")
    ax.set_ylabel("rows/s (log scale, median)")
    ax.set_title("pgml_ext: scoring the reference workload, side by side")
    ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    path.write_bytes(buf.getvalue())
    plt.close(fig)
