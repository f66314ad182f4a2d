"""What each way of handing a model a table's columns costs: the stored tf.Example, the
row itself (converted in C), a jsonb object converted in C, and the same jsonb object
converted by the PL/Python twin (the 0.1.0 path), side by side in one run on the
embedded cluster.

    /opt/pgml_ext/venv/bin/python benchmarks/row_inputs.py [--rows N] [--repeats N]

The reference MLP reads one feature, "pixels" (784 floats), so the conversion is the
work of 784 values a row: serial scans, one backend, the forms alternating within each
repeat; medians, and each form's time ÷ the stored Example's.
"""

from __future__ import annotations

import argparse
import statistics
import time

from pgml_ext import client, reference
from pgml_ext.demo import embedded_database, trained_mlp

DOCUMENT = "jsonb_build_object('pixels', pixels)"
FORMS = {
    "stored tf.Example (bytea)": "pgml.classify('mlp', example)",
    "row, converted in C": "pgml.classify('mlp', r)",
    "jsonb, converted in C": f"pgml.classify('mlp', {DOCUMENT})",
    "jsonb, converted by PL/Python": (
        f"pgml.classify('mlp', pgml_internal.example(pgml_internal.model_ref('mlp'), {DOCUMENT},"
        " NULL))"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    _, engine = embedded_database("pgml_row_inputs")
    client.register_model(engine, "mlp", trained_mlp())
    reference.load_table(engine, "big", args.rows)
    times: dict[str, list[float]] = {form: [] for form in FORMS}
    with engine.connect() as conn:
        conn.exec_driver_sql("SET max_parallel_workers_per_gather = 0")
        for _ in range(args.repeats + 1):  # the first round loads the model and the table
            for form, call in FORMS.items():
                sql = f"SELECT count({call}) FROM (SELECT pixels, example FROM big) r"
                started = time.perf_counter()
                conn.exec_driver_sql(sql)
                times[form].append((time.perf_counter() - started) * 1000)
    print(f"MLP, {args.rows:,} rows, one backend, serial; medians of {args.repeats}")
    print("| input | ms | rows/s | ÷ stored Example (time) |")
    print("|---|---:|---:|---:|")
    base = statistics.median(times["stored tf.Example (bytea)"][1:])
    for form, spent in times.items():
        ms = statistics.median(spent[1:])
        print(f"| {form} | {ms:.0f} | {args.rows / ms * 1000:,.0f} | {ms / base:.2f} |")
    engine.dispose()


if __name__ == "__main__":
    main()
