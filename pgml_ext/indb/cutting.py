"""Cut an Example-parsing signature after its parse, so that the rest converts to LiteRT.

TF Serving / TFX exports take serialized tf.Examples and parse them in the graph
(``ParseExample``/``ParseExampleV2``, TF1 or TF2). LiteRT has no such op, but everything
after the parse is ordinary math. At registration the signature's graph is frozen
(variables become constants), every dense output of the parse is replaced by an input of
its own (``input_0``, ``input_1``, ... in the parse's key order) and the rest is saved as a
small SavedModel for the converter. The parse itself is then done by pgml (C, or Python in
the fallback) following the spec read from the same op: keys, dtypes, shapes, defaults.

String outputs: a lookup in a constant table (TF Serving's ``classes``, looked up from
``top_k`` indices) is cut before the lookup, so LiteRT outputs the integer keys and the
table's values become the plan's vocabulary (read back from TensorFlow's own answers by
conversion.py, which checks them on every sample). Any other string output is left out
here and must be constant per model (an Estimator head tiles its class names).

TF Serving's classify takes ``top_k`` of the probabilities for its scores and classes.
LiteRT sizes top_k's outputs at run time when the batch is dynamic, so they cannot be
the caller's buffers (the C path's); the graph is cut before it too, LiteRT outputs the
probabilities and pgml takes the top k (the plan's "top_k").

Registration only: imports TensorFlow.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

from pgml_ext.indb.runtimes.tensorflow import parse_spec

_PARSE_OPS = ("ParseExampleV2", "ParseExample")
_LOOKUP = "LookupTableFindV2"


class NotCut(Exception):
    """The signature cannot be cut after its parse; the message says why."""


@dataclass
class Cut:
    directory: str  # SavedModel of the graph after the parse, signature of the same name
    inputs: list[dict[str, Any]]  # {"name", "feature", "dtype", "shape", "default"}
    keyed: list[str] = field(default_factory=list)  # string outputs that LiteRT gives as keys
    dropped: list[str] = field(default_factory=list)  # string outputs left out (constant)
    top_k: dict[str, Any] | None = None  # {"of", "k", "values", "indices"}: done by pgml
    lookups: list[dict[str, Any]] = field(default_factory=list)  # tables applied by pgml


def _tensor(ref: str) -> tuple[str, int]:
    name, _, index = ref.partition(":")
    return name, int(index or 0)


def _frozen(tf, fn) -> tuple[Any, dict[str, str]]:
    """(GraphDef with variables as constants and functions inlined, {output: tensor})."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    keys = sorted(fn.structured_outputs)  # fn.outputs follow tf.nest's (sorted) order
    graph_def = fn.graph.as_graph_def()
    if graph_def.library.function:  # TF2 traces: grappler inlines the calls as it freezes
        try:
            frozen = convert_variables_to_constants_v2(fn)
        except Exception as e:  # many kinds; any of them means "no"
            raise NotCut(f"its graph could not be frozen ({type(e).__name__})") from None
        names = [t.name for t in frozen.outputs]
        return frozen.graph.as_graph_def(), dict(zip(keys, names, strict=True))
    # TF1 graphs (SavedModelBuilder): no calls to inline, and grappler refuses their
    # in-graph tables, so variable reads become constants here.
    captured = {_tensor(inner.name)[0]: outer for outer, inner in fn.graph.captures}
    for node in graph_def.node:
        handle = captured.get(_tensor(node.input[0])[0]) if node.input else None
        if node.op != "ReadVariableOp" or handle is None:
            continue
        dtype = node.attr["dtype"].type
        value = tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype)
        node.op = "Const"
        del node.input[:]
        node.attr.clear()
        node.attr["dtype"].type = dtype
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value.numpy()))
    return graph_def, {k: fn.structured_outputs[k].name for k in keys}


def cut_after_parse(tf, fn, name: str, workdir: str) -> Cut:
    """Cut signature NAME (concrete function FN) after its parse; raise NotCut."""
    from tensorflow.core.framework import node_def_pb2

    graph_def, outputs = _frozen(tf, fn)
    parses = [n for n in graph_def.node if n.op in _PARSE_OPS]
    if len(parses) != 1:
        raise NotCut(f"its graph has {len(parses)} Example parses (one is cut)")
    parse = parses[0]
    spec = parse_spec([list(graph_def.node)])
    if spec is None:
        raise NotCut("its parse keys are computed at run time")
    sparse = parse.attr["num_sparse" if parse.op == "ParseExampleV2" else "Nsparse"].i
    # the op's outputs: sparse indices, values and shapes, then the dense values
    by_output = {3 * sparse + i: f"input_{i}" for i in range(len(spec))}
    for node in graph_def.node:
        for j, ref in enumerate(node.input):
            if ref.startswith("^") or _tensor(ref)[0] != parse.name:
                continue
            index = _tensor(ref)[1]
            if index not in by_output:
                raise NotCut("it reads var-len (sparse or ragged) features")
            node.input[j] = by_output[index]
    inputs = []
    for i, (key, feature) in enumerate(spec.items()):
        placeholder = node_def_pb2.NodeDef(name=f"input_{i}", op="Placeholder")
        dtype = tf.dtypes.as_dtype(feature["dtype"])
        placeholder.attr["dtype"].type = dtype.as_datatype_enum
        placeholder.attr["shape"].shape.CopyFrom(
            tf.TensorShape([None, *feature["shape"]]).as_proto()
        )
        graph_def.node.append(placeholder)
        inputs.append({"name": f"input_{i}", "feature": key, **feature})

    by_name = {n.name: n for n in graph_def.node}
    fetches, keyed, dropped = {}, [], []
    for output, ref in outputs.items():
        node_name, index = _tensor(ref)
        if node_name == parse.name:
            ref = by_output.get(index, ref)
        if fn.structured_outputs[output].dtype != tf.string:
            fetches[output] = ref
            continue
        node, _ = _source(by_name, ref, ("Identity",))
        if node.op == _LOOKUP:
            fetches[output] = node.input[1]  # the keys it looks up
            keyed.append(output)
        else:
            dropped.append(output)
    if not fetches:
        raise NotCut("it has no numeric outputs")
    top_k = _cut_top_k(tf, by_name, fetches)

    keep = [_tensor(r)[0] for r in fetches.values()] + [i["name"] for i in inputs]
    graph_def = _sub_graph(graph_def, keep)
    for node in graph_def.node:
        if node.op == "Placeholder" and not node.name.startswith("input_"):
            raise NotCut(f"its graph after the parse reads {node.name} (a table or variable)")
    directory = _saved(tf, graph_def, inputs, fetches, name, workdir)
    return Cut(directory, inputs, keyed, dropped, top_k)


def cut_lookups(tf, fn, name: str, workdir: str) -> Cut:
    """Cut signature NAME's table lookups of its own inputs (Keras StringLookup and
    IntegerLookup): LiteRT's converter has no hash tables, so each lookup's ids become
    an input of their own ("lookup_0", ...) and its table goes to the plan, for pgml to
    apply. Raise NotCut."""
    from tensorflow.core.framework import node_def_pb2

    graph_def, outputs = _frozen(tf, fn)
    # the tables stay placeholders of the frozen graph, named as the signature's captures
    captured = {_tensor(inner.name)[0]: outer for outer, inner in fn.graph.captures}
    args = fn.structured_input_signature[1]
    by_name = {n.name: n for n in graph_def.node}
    lookups, renamed = [], {}
    for node in list(graph_def.node):
        if node.op != _LOOKUP:
            continue
        source, _ = _source(by_name, node.input[1], ("Identity",))
        table, _ = _source(by_name, node.input[0], ("Identity",))
        default, _ = _source(by_name, node.input[2], ("Identity",))
        tin, tout = (tf.dtypes.as_dtype(node.attr[a].type) for a in ("Tin", "Tout"))
        if source.op != "Placeholder" or source.name not in args or table.name not in captured:
            raise NotCut("it looks up values other than its inputs")
        if tout != tf.int64 or tin not in (tf.string, tf.int64):
            raise NotCut(f"it looks up {tin.name} -> {tout.name} (pgml does string/int64 -> int64)")
        keys, values = tf.raw_ops.LookupTableExportV2(
            table_handle=captured[table.name], Tkeys=tin, Tvalues=tout
        )
        if default.op == "Const":
            fallback = tf.make_ndarray(default.attr["value"].tensor)
        elif default.name in captured:
            fallback = captured[default.name].numpy()
        else:
            raise NotCut("its lookup default is computed at run time")
        try:
            keys = [k.decode() if tin == tf.string else int(k) for k in keys.numpy().tolist()]
        except UnicodeDecodeError:
            raise NotCut("its lookup table has keys that are not UTF-8") from None
        feed = f"lookup_{len(lookups)}"
        renamed[node.name] = feed
        lookups.append(
            {
                "input": source.name,
                "name": feed,
                "keys": keys,
                "values": [int(v) for v in values.numpy().tolist()],
                "default": int(fallback),
            }
        )
    if not lookups:
        raise NotCut("it has no table lookups")
    for node in graph_def.node:
        refs = [r for r in node.input if not (r.startswith("^") and r[1:] in renamed)]
        del node.input[:]  # control edges to a lookup go with it
        node.input.extend(renamed.get(_tensor(r)[0], r) if r[0] != "^" else r for r in refs)
    for lookup in lookups:
        placeholder = node_def_pb2.NodeDef(name=lookup["name"], op="Placeholder")
        placeholder.attr["dtype"].type = tf.int64.as_datatype_enum
        graph_def.node.append(placeholder)
    keep = [_tensor(r)[0] for r in outputs.values()]
    graph_def = _sub_graph(graph_def, keep)
    present = {n.name for n in graph_def.node}
    looked_up = {lookup["input"] for lookup in lookups}
    if looked_up & present:
        raise NotCut("it reads a looked-up input other than by its lookup")
    inputs = [
        {"name": arg, "dtype": spec.dtype.name, "shape": list(spec.shape[1:])}
        for arg, spec in sorted(args.items())
        if arg in present
    ] + [
        {"name": lookup["name"], "dtype": "int64", "shape": list(args[lookup["input"]].shape[1:])}
        for lookup in lookups
        if lookup["name"] in present
    ]
    for node in graph_def.node:
        if node.op == "Placeholder" and node.name not in {i["name"] for i in inputs}:
            raise NotCut(f"its graph reads {node.name} (a table or variable) after the lookups")
    if any(i["dtype"] == "string" for i in inputs):
        raise NotCut("it reads text other than by a lookup")
    directory = _saved(tf, graph_def, inputs, outputs, name, workdir)
    return Cut(directory, inputs, lookups=lookups)


def _saved(tf, graph_def, inputs: list[dict[str, Any]], fetches: dict[str, str], name, workdir):
    """GRAPH_DEF's FETCHES from its placeholders INPUTS (name, dtype, shape without the
    batch dimension), saved as a SavedModel with signature NAME; its directory."""
    wrapped = tf.compat.v1.wrap_function(
        lambda: tf.graph_util.import_graph_def(graph_def, name=""), []
    )
    pruned = wrapped.prune(
        [wrapped.graph.get_tensor_by_name(f"{i['name']}:0") for i in inputs],
        {
            k: wrapped.graph.get_tensor_by_name(v if ":" in v else f"{v}:0")
            for k, v in fetches.items()
        },
    )
    specs = [
        tf.TensorSpec([None, *i["shape"]], tf.dtypes.as_dtype(i["dtype"]), name=i["name"])
        for i in inputs
    ]
    after_cut = tf.function(lambda *tensors: pruned(*tensors), input_signature=specs)
    module = tf.Module()
    module.after_cut = after_cut
    directory = tempfile.mkdtemp(prefix="cut-", dir=workdir)
    tf.saved_model.save(module, directory, signatures={name: after_cut.get_concrete_function()})
    return directory


def _sub_graph(graph_def, keep: list[str]):
    """GRAPH_DEF with only the nodes KEEP needs (their inputs, transitively), in order:
    what tf.compat.v1.graph_util.extract_sub_graph does, without its deprecation log."""
    by_name = {n.name: n for n in graph_def.node}
    needed, pending = set(), list(keep)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending.extend(_tensor(ref.lstrip("^"))[0] for ref in by_name[name].input)
    out = type(graph_def)()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    out.node.extend(n for n in graph_def.node if n.name in needed)
    return out


TOP_K_INPUT = "top_k_input"


def _source(by_name: dict, ref: str, through: tuple[str, ...]) -> tuple[Any, int]:
    """The node (and output index) REF comes from, through ops that keep its values."""
    node_name, index = _tensor(ref)
    node = by_name[node_name]
    while node.op in through:
        node_name, index = _tensor(node.input[0])
        node = by_name[node_name]
    return node, index


def _cut_top_k(tf, by_name: dict, fetches: dict[str, str]) -> dict[str, Any] | None:
    """When outputs are a sorted top_k's values (directly) and indices (maybe cast), of
    one constant k: fetch its input instead and say which outputs take what."""
    uses: dict[str, list[tuple[str, int]]] = {}
    for output, ref in fetches.items():
        node, index = _source(by_name, ref, ("Identity", "Cast"))
        if node.op == "TopKV2":
            values, _ = _source(by_name, ref, ("Identity",))
            if index == 1 or values is node:  # values only through Identity (no cast)
                uses.setdefault(node.name, []).append((output, index))
    if len(uses) != 1 or TOP_K_INPUT in fetches:
        return None
    ((name, taken),) = uses.items()
    node = by_name[name]
    k = by_name[_tensor(node.input[1])[0]]
    if k.op != "Const" or not node.attr["sorted"].b:
        return None
    for output, _ in taken:
        del fetches[output]
    fetches[TOP_K_INPUT] = node.input[0]
    return {
        "of": TOP_K_INPUT,
        "k": int(tf.make_ndarray(k.attr["value"].tensor)),
        "values": [o for o, i in taken if i == 0],
        "indices": [o for o, i in taken if i == 1],
    }
