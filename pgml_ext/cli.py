"""The ``pgml-ext`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from pgml_ext import __version__

URL_HELP = (
    "SQLAlchemy URL of the database, e.g. postgresql+pg8000://user@host:5432/db "
    "or any libpq URI or 'host=... dbname=...' string (default: $PGML_EXT_URL, else the "
    "embedded cluster's demo database after `make demo`, its postgres database before)"
)


def _url(args: argparse.Namespace) -> str:
    """--url, else $PGML_EXT_URL, else the embedded cluster: its demo's database once
    `make demo` made it (where the demo's models are), its postgres database before."""
    if args.url:
        return args.url
    if os.environ.get("PGML_EXT_URL"):
        return os.environ["PGML_EXT_URL"]
    import sqlalchemy as sa

    from pgml_ext.cluster import Cluster
    from pgml_ext.demo import DEMO_DB

    cluster = Cluster.default()
    engine = sa.create_engine(cluster.url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": DEMO_DB}
            ).scalar()
    except sa.exc.DBAPIError:  # not running: the command's own connection says so
        found = None
    finally:
        engine.dispose()
    return cluster.url(DEMO_DB) if found else cluster.url()


def _db(args: argparse.Namespace) -> int:
    from pgml_ext.cluster import Cluster

    if args.citus:
        return _citus_db(args)
    cluster = Cluster.default(args.port)
    if args.action == "start":
        print(cluster.start())
    elif args.action == "standby":
        primary = Cluster.default(args.primary_port)
        primary.start()
        port = args.port or primary.port + 1
        print(primary.standby(port).url())
    elif args.action == "stop":
        cluster.stop()
        print(f"stopped the cluster on port {cluster.port}", file=sys.stderr)
    else:
        print(cluster.url())
    return 0


def _citus_db(args: argparse.Namespace) -> int:
    """`db start|stop|url --citus`: a coordinator and two workers on loopback."""
    from pgml_ext.citus import CitusCluster

    citus = CitusCluster.default(args.port)
    if args.action == "start":
        print(citus.start())
        ports = ", ".join(str(w.port) for w in citus.workers)
        print(f"coordinator on port {citus.coordinator.port}, workers on {ports}; then:"
              " pgml-ext install, and SELECT pgml.distribute() on the coordinator",
              file=sys.stderr)  # fmt: skip
    elif args.action == "stop":
        citus.stop()
        print(f"stopped the Citus cluster on port {citus.coordinator.port}", file=sys.stderr)
    elif args.action == "url":
        print(citus.coordinator.url())
    else:
        raise ValueError("a standby of a Citus cluster is not supported")
    return 0


def _install(args: argparse.Namespace) -> int:
    from pgml_ext.client import install

    print(f"pgml_ext {install(_url(args))} installed")
    return 0


def _register(args: argparse.Namespace) -> int:
    from pgml_ext.client import register_model

    labels = args.labels.split(",") if args.labels else None
    version = register_model(
        _url(args),
        args.name,
        args.path,
        labels=labels,
        runtime=args.runtime,
        signature=args.signature,
        progress=True,
    )
    print(f"registered {args.name} version {version}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from pgml_ext.client import models

    rows = models(_url(args))
    header = ["name", "version", "runtime", "current", "size", "signatures", "created"]
    table = [
        [
            r["name"],
            str(r["version"]),
            r["runtime"],
            "*" if r["current"] else "",
            f"{r['size'] / 1e6:.1f} MB",
            r["signatures"] or "",
            r["created"].strftime("%Y-%m-%d %H:%M"),
        ]
        for r in rows
    ]
    _print_table(header, table, "(no models registered)")
    return 0


def _print_table(header: list[str], table: list[list[str]], empty: str) -> None:
    """Columns padded to their widest cell; numbers (cells starting with a digit)
    aligned right."""
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    for row in [header, *table]:
        cells = [
            c.rjust(w) if c[:1].isdigit() and row is not header else c.ljust(w)
            for c, w in zip(row, widths, strict=True)
        ]
        print("  ".join(cells).rstrip())
    if not table:
        print(empty)


def _stats(args: argparse.Namespace) -> int:
    from pgml_ext.client import stats, stats_dropped

    url = _url(args)
    header = [
        "model",
        "version",
        "calls",
        "rows",
        "in C",
        "PL/Python",
        "errors",
        "mean ms",
        "loads",
        "load ms",
        "last used",
    ]
    table = [
        [
            r["model"],
            str(r["version"]),
            f"{r['calls']:,}",
            f"{r['rows']:,}",
            f"{r['c_rows']:,}",
            f"{r['fallback_rows']:,}",
            f"{r['errors']:,}",
            f"{r['mean_ms']:.3f}" if r["mean_ms"] is not None else "",
            f"{r['loads']:,}",
            f"{r['load_ms']:.1f}",
            f"{r['last_used']:%Y-%m-%d %H:%M:%S}",
        ]
        for r in stats(url)
    ]
    _print_table(header, table, "(nothing scored since the last pgml.stats_reset())")
    if stats_dropped(url) is None:
        print(
            "pgml-ext: the server does not preload pgml_ext, so pgml.stats counts one session "
            "only (this one): add pgml_ext to shared_preload_libraries and restart it.",
            file=sys.stderr,
        )
    return 0


def _describe(args: argparse.Namespace) -> int:
    from pgml_ext.client import describe

    versions = describe(_url(args), args.name)
    if not versions:
        print(f"pgml-ext: model '{args.name}' is not registered", file=sys.stderr)
        return 1
    for v in versions:
        flags = ", ".join(f for f, on in (("current", v["current"]), ("pinned", v["pinned"])) if on)
        print(
            f"{args.name} v{v['version']}  runtime {v['runtime']}  {v['size'] / 1e6:.1f} MB  "
            f"created {v['created']:%Y-%m-%d %H:%M}" + (f"  [{flags}]" if flags else "")
        )
        for sig, spec in sorted((v["signature"] or {}).items()):
            note = (v["runtimes"] or {}).get(sig, {})
            ins = ", ".join(f"{k} {i['dtype']}{i['shape']}" for k, i in spec["inputs"].items())
            outs = ", ".join(f"{k} {o['dtype']}{o['shape']}" for k, o in spec["outputs"].items())
            print(f"  {sig}({ins}) -> {outs}")
            if spec.get("features"):
                feats = ", ".join(
                    f"{k} {f['dtype']}{f['shape']}" for k, f in spec["features"].items()
                )
                print(f"    tf.Example features: {feats}")
            print(f"    runtime {note.get('runtime', '?')}: {note.get('reason', '')}")
            if note.get("runtime") == "litert":
                forms = ", ".join(spec.get("c_path") or []) or "none (PL/Python per row)"
                print(f"    scored in C: {forms}")
            for line in _plan_lines(spec.get("plan")):
                print(f"    {line}")
        if v["labels"]:
            print(f"  labels: {', '.join(v['labels'])}")
    return 0


def _plan_lines(plan: dict | None) -> list[str]:
    """What pgml does for a signature cut after its parse or its lookups (see
    pgml.describe's plan)."""
    if not plan:
        return []
    lines = []
    for i in plan.get("parse", []):
        default = "" if i["default"] is None else f" (default {i['default']})"
        lines.append(
            f"parses feature {i['feature']} {i['dtype']}{i['shape']}{default} -> {i['name']}"
        )
    for lookup in plan.get("lookups", []):
        keys = ", ".join(str(k) for k in lookup["keys"][:10])
        more = ", ..." if len(lookup["keys"]) > 10 else ""
        lines.append(
            f"looks up input {lookup['input']} in {len(lookup['keys'])} keys ({keys}{more}; "
            f"else {lookup['default']}) -> {lookup['name']}"
        )
    if "top_k" in plan:
        top = plan["top_k"]
        lines.append(f"output {', '.join(top['values'] + top['indices'])}: top {top['k']}")
    for name, words in plan.get("vocabularies", {}).items():
        lines.append(f"output {name}: keys looked up in {', '.join(words)}")
    for name, words in plan.get("constants", {}).items():
        lines.append(f"output {name}: always {', '.join(words)}")
    return lines


def _delete(args: argparse.Namespace) -> int:
    from pgml_ext.client import delete_model

    n = delete_model(_url(args), args.name, args.version, force=args.force)
    print(f"deleted {n} version(s) of {args.name}")
    return 0 if n else 1


def _pin(args: argparse.Namespace) -> int:
    from pgml_ext.client import pin_model, rollback_model

    if args.command == "rollback":
        print(f"{args.name} pinned to version {rollback_model(_url(args), args.name)}")
    elif args.command == "unpin":
        was_pinned = pin_model(_url(args), args.name, None)
        what = "unpinned" if was_pinned else "was not pinned"
        print(f"{args.name} {what}: the newest version serves")
    else:
        pin_model(_url(args), args.name, args.version)
        print(f"{args.name} pinned to version {args.version}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from pgml_ext.client import export_model

    version = export_model(_url(args), args.name, args.dir, args.version)
    print(f"wrote {args.name} v{version} to {args.dir}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from pgml_ext.client import score_table

    n = score_table(
        _url(args),
        args.model,
        args.table,
        args.column,
        args.into,
        key=args.key,
        chunk_size=args.chunk_size,
        layout=args.layout,
        where=args.where,
        keep=args.keep or (),
        query=args.query,
    )
    print(f"scored {n:,} rows of {args.table or 'the query'} into {args.into}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pgml_ext import demo

    demo.run(rows=args.rows, port=args.port)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from pgml_ext import bench

    bench.run(
        rows=args.rows,
        cnn_rows=args.cnn_rows,
        naive_rows=args.naive_rows,
        repeats=args.repeats,
        parallel_rows=args.parallel_rows,
        out_dir=args.out,
        port=args.port,
    )
    return 0


def _soak(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from pgml_ext import client, demo, reference, soak
    from pgml_ext.cluster import Cluster

    url = args.url
    if not url:
        cluster = Cluster.default(args.port)
        cluster.start()
        url = client.create_database(cluster.url(), "pgml_soak", force=True)
        engine = sa.create_engine(url)
        client.install(engine)
        reference.load_table(engine, "inputs", 2_000)
    report = soak.run(url, demo.trained_mlp(), sessions=args.sessions, seconds=args.seconds)
    print(report.text())
    return 1 if report.server_restarted or report.mixed_statements or report.errors else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pgml-ext",
        description="Score TensorFlow models inside PostgreSQL: install the extension, "
        "register models, and run an embedded PostgreSQL cluster for trying it out.",
    )
    p.add_argument("--version", action="version", version=f"pgml_ext {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser(
        "db",
        help="start, stop or locate the embedded PostgreSQL cluster",
        description="The embedded cluster runs as an unprivileged OS user on "
        "127.0.0.1; `db start` prints its SQLAlchemy URL.",
    )
    db.add_argument(
        "action",
        choices=["start", "stop", "url", "standby"],
        help="standby: a hot standby of the cluster on --primary-port, "
        "streaming on loopback; prints its URL",
    )
    db.add_argument("--port", type=int, help="port (default $PGML_EXT_PORT or 54329)")
    db.add_argument(
        "--primary-port", type=int, help="with standby: the primary's port (default 54329)"
    )
    db.add_argument(
        "--citus",
        action="store_true",
        help="a Citus coordinator (on --port, default 54350) and two workers after it, "
        "each preloading Citus and pgml_ext (needs Citus installed: scripts/citus.sh)",
    )
    db.set_defaults(func=_db)

    inst = sub.add_parser("install", help="create or update the extension in a database")
    inst.add_argument("--url", help=URL_HELP)
    inst.set_defaults(func=_install)

    reg = sub.add_parser(
        "register",
        help="upload a model (SavedModel, .keras, .tflite) into the database",
        description="Uploads PATH as model NAME; registering a name again makes a new "
        "version. PATH is a SavedModel directory, a Keras .keras/.h5 file (exported to a "
        "SavedModel here first) or a LiteRT .tflite file (served by LiteRT as given).",
    )
    reg.add_argument("name")
    reg.add_argument(
        "path", help="SavedModel directory (with saved_model.pb), .keras/.h5 or .tflite file"
    )
    reg.add_argument("--url", help=URL_HELP)
    reg.add_argument("--labels", help="comma-separated class labels, in class-index order")
    reg.add_argument(
        "--runtime", default="auto", help="auto (default), litert (required) or tensorflow"
    )
    reg.add_argument("--signature", help="signature to use by default (else chosen by input)")
    reg.set_defaults(func=_register)

    mods = sub.add_parser("models", help="list registered models")
    mods.add_argument("--url", help=URL_HELP)
    mods.set_defaults(func=_models)

    st = sub.add_parser(
        "stats",
        help="what each model version scored, across all sessions (pgml.stats)",
        description="Calls, rows (in C and in PL/Python), errors, mean time and loads per "
        "model version since the last pgml.stats_reset(), counted across all backends and "
        "parallel workers (with pgml_ext in shared_preload_libraries).",
    )
    st.add_argument("--url", help=URL_HELP)
    st.set_defaults(func=_stats)

    desc = sub.add_parser("describe", help="versions, signatures, runtimes and labels of a model")
    desc.add_argument("name")
    desc.add_argument("--url", help=URL_HELP)
    desc.set_defaults(func=_describe)

    delete = sub.add_parser("delete", help="delete a model version, or all its versions")
    delete.add_argument("name")
    delete.add_argument("--version", type=int, help="only this version (default: all)")
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete the pinned version too (the newest version then serves)",
    )
    delete.add_argument("--url", help=URL_HELP)
    delete.set_defaults(func=_delete)

    pin = sub.add_parser("pin", help="serve VERSION of NAME instead of the newest")
    pin.add_argument("name")
    pin.add_argument("version", type=int)
    pin.add_argument("--url", help=URL_HELP)
    pin.set_defaults(func=_pin)
    unpin = sub.add_parser("unpin", help="serve the newest version of NAME again")
    unpin.add_argument("name")
    unpin.add_argument("--url", help=URL_HELP)
    unpin.set_defaults(func=_pin)
    rollback = sub.add_parser("rollback", help="pin NAME to the version before the current one")
    rollback.add_argument("name")
    rollback.add_argument("--url", help=URL_HELP)
    rollback.set_defaults(func=_pin)

    export = sub.add_parser("export", help="write a stored SavedModel back to a directory")
    export.add_argument("name")
    export.add_argument("dir", help="new directory for the SavedModel")
    export.add_argument("--version", type=int, help="default: the version serving now")
    export.add_argument("--url", help=URL_HELP)
    export.set_defaults(func=_export)

    score = sub.add_parser(
        "score",
        help="score a table into a predictions table, with a progress bar",
        description="Scores TABLE.COLUMN (tf.Example bytea or an array of numbers) with "
        "MODEL into table INTO (created if missing: key, the --keep columns, label, "
        "class_index, scores, model, version, scored_at), in committed chunks ordered by "
        "--key. A re-run replaces the rows of the keys it scores.",
    )
    score.add_argument("--model", required=True)
    rows = score.add_mutually_exclusive_group(required=True)
    rows.add_argument("--table", help="the table to score")
    rows.add_argument(
        "--query",
        help="a SELECT to score instead of a table (a join, computed inputs), e.g. "
        "'SELECT o.id, o.example, c.region FROM orders o JOIN customers c USING (cid)'",
    )
    score.add_argument("--column", required=True, help="the input column (bytea or numbers)")
    score.add_argument("--into", required=True)
    score.add_argument("--key", default="id", help="unique, ordered key column (default id)")
    score.add_argument("--chunk-size", type=int, default=5000)
    score.add_argument(
        "--where",
        help="score only the rows (of TABLE or QUERY) this SQL condition picks, e.g. 'id < 100'",
    )
    score.add_argument(
        "--keep",
        nargs="+",
        metavar="COLUMN",
        help="columns of TABLE to copy beside each answer (e.g. --keep region plan)",
    )
    score.add_argument(
        "--layout",
        choices=["json", "columns"],
        default="json",
        help="scores as json {label: score} in class order, or one column per class",
    )
    score.add_argument("--url", help=URL_HELP)
    score.set_defaults(func=_score)

    demo = sub.add_parser(
        "demo",
        help="train, register and score the reference model on 20,000 rows in an embedded cluster",
    )
    demo.add_argument("--rows", type=int, default=20_000)
    demo.add_argument("--port", type=int, help="embedded cluster port")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser(
        "bench",
        help="benchmark in-database scoring against the alternatives",
        description="Scores the reference workload (MLP and CNN, tf.Example and float4[]) "
        "inline (in the plan the planner picks, and serial), in batches, with the best "
        "client pipeline (psycopg 3, binary COPY, TensorFlow on all cores) and the seeds' "
        "pg8000 one, with naive per-row TensorFlow and on the compute floor, side by "
        "side; prints medians and ratios and saves JSON, Markdown and a PNG chart.",
    )
    bench.add_argument("--rows", type=int, default=20_000, help="rows for the MLP (20,000)")
    bench.add_argument("--cnn-rows", type=int, default=5_000, help="rows for the CNN (5,000)")
    bench.add_argument(
        "--naive-rows",
        type=int,
        default=2_000,
        help="rows sampled for naive per-row TensorFlow (2,000)",
    )
    bench.add_argument(
        "--parallel-rows",
        type=int,
        default=100_000,
        help="rows of the serial-vs-parallel-plan run on the MLP (100,000; 0 skips it)",
    )
    bench.add_argument("--repeats", type=int, default=3, help="runs per figure; medians (3)")
    bench.add_argument("--out", default="benchmarks/results", help="where results go")
    bench.add_argument("--port", type=int, help="embedded cluster port")
    bench.set_defaults(func=_bench)

    soak = sub.add_parser(
        "soak",
        help="many sessions score while model versions are registered and deleted",
        description="Runs SESSIONS scoring sessions for SECONDS while another session "
        "registers a new version every second and deletes old ones; checks that no "
        "statement mixes versions, counts errors, samples backend memory. Exit 1 on any "
        "error, mixed statement or server restart.",
    )
    soak.add_argument("--sessions", type=int, default=16)
    soak.add_argument("--seconds", type=float, default=60)
    soak.add_argument(
        "--url",
        help="database with pgml_ext and an 'inputs' table "
        "(default: a fresh database on the embedded cluster)",
    )
    soak.add_argument("--port", type=int, help="embedded cluster port")
    soak.set_defaults(func=_soak)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:  # show the server's message, not a traceback
        from sqlalchemy.exc import DBAPIError

        if isinstance(e, DBAPIError):
            print(f"pgml-ext: {_server_message(e)}", file=sys.stderr)
            return 1
        from pgml_ext.cluster import ClusterError
        from pgml_ext.indb.errors import PgmlError

        if isinstance(e, PgmlError):
            lines = [e.message, *(f"  {k}: {v}" for k, v in (("detail", e.detail),
                                                              ("hint", e.hint)) if v)]  # fmt: skip
            print("pgml-ext: " + "\n".join(lines), file=sys.stderr)
            return 1
        if isinstance(e, ClusterError | OSError | ValueError):
            print(f"pgml-ext: {e}", file=sys.stderr)
            return 1
        raise


def _server_message(e) -> str:
    orig = getattr(e, "orig", None)
    fields = (
        orig.args[0] if orig is not None and orig.args and isinstance(orig.args[0], dict) else None
    )
    if fields:  # pg8000: {'M': message, 'H': hint, ...}
        text = fields.get("M", "")
        hint = fields.get("H")
        # the pgml schema or its objects missing: this database has no pgml_ext
        if fields.get("C") in ("42P01", "3F000", "42883") and "pgml" in text and not hint:
            hint = "pgml_ext is not installed in this database: run pgml-ext install --url URL."
        if fields.get("D"):
            text += f"\n  detail: {fields['D']}"
        if hint:
            text += f"\n  hint: {hint}"
        return text
    return str(orig or e).splitlines()[0]


if __name__ == "__main__":
    sys.exit(main())
