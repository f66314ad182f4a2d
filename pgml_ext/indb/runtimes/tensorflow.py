"""TensorFlow runtime: always works, heavy (seconds to import, ~0.5 GB per backend)."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import numpy as np

from pgml_ext.indb.audit import node_name
from pgml_ext.indb.errors import INVALID_PARAMETER, PREREQUISITE_STATE, PgmlError

_PARSE_OPS = {"ParseExampleV2", "ParseExample", "ParseSingleExample"}


def _refuse_after_llvm() -> None:
    """TensorFlow never shares a process with PostgreSQL's JIT (src/jit_guard.c): it
    carries an LLVM of its own, and the two crash the backend in either order. Once
    TensorFlow is in, jit_guard.c keeps JIT off; a backend that already JIT-compiled a
    query has LLVM loaded, and TensorFlow must not load into it."""
    from pgml_ext.indb import server

    if server.llvm_loaded():
        raise PgmlError(
            "this session has run a JIT-compiled query, so TensorFlow cannot load into it",
            PREREQUISITE_STATE,
            detail="PostgreSQL's JIT (LLVM) and TensorFlow crash each other in one process; "
            "the model is served by TensorFlow.",
            hint="Score it from a new session; pgml's own queries are planned without JIT, "
            "so keep other JIT-compiled queries out of that session (or SET jit = off).",
        )


def _jit_off_now() -> None:
    """jit_guard.c turns jit off when it next sees TensorFlow in the process, at a plan
    or an executor start: one now, so that SHOW jit says so at once."""
    from pgml_ext.indb import server

    if not server.in_parallel_mode():
        server.plpy().execute("SELECT 1")


def import_tensorflow(threads: int = 1):
    """Import TensorFlow once per process, never into a backend with LLVM (see above)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-for-bit equal to client TF
    if not getattr(sys, "argv", None):  # PL/Python has no argv; absl expects one
        sys.argv = ["postgres"]
    in_server = "plpy" in sys.builtin_module_names
    if in_server:
        _refuse_after_llvm()
    flags = sys.getdlopenflags()
    try:
        if in_server:
            sys.setdlopenflags(os.RTLD_NOW | os.RTLD_DEEPBIND)
        import tensorflow as tf
    except (ImportError, OSError) as e:
        raise PgmlError(
            f"TensorFlow could not be loaded in the server: {e}",
            PREREQUISITE_STATE,
            hint="Install it into the venv the server reads (make setup, see README).",
        ) from None
    finally:
        sys.setdlopenflags(flags)
    if in_server:
        _jit_off_now()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised by an earlier caller in this process
        pass
    return tf


class TensorFlowRuntime:
    name = "tensorflow"

    def __init__(self, path: str, threads: int = 1) -> None:
        self._tf = tf = import_tensorflow(threads)
        self._loaded = tf.saved_model.load(path)
        self._signatures = dict(self._loaded.signatures)

    def signature(self, name: str):
        """The concrete function of signature NAME (kept alive by this runtime)."""
        return self._signatures[name]

    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tf = self._tf
        fn = self._signatures[signature]
        try:
            out = fn(**{k: tf.constant(v) for k, v in feeds.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            cause, where = error_cause(getattr(e, "message", None) or str(e))
            raise PgmlError(
                f"TensorFlow rejected the input: {cause}", INVALID_PARAMETER, detail=where
            ) from None
        return {k: v.numpy() for k, v in out.items()}

    def describe(self, path: str) -> dict[str, dict[str, Any]]:
        """Signatures as plain JSON: inputs, outputs, method and tf.Example parse spec."""
        defs = _signature_defs(path)
        described = {}
        for name, fn in sorted(self._signatures.items()):
            inputs = fn.structured_input_signature[1]
            outputs = fn.structured_outputs
            sig_def = defs.get(name)
            described[name] = {
                "method": sig_def.method_name if sig_def else "",
                "inputs": {
                    k: _spec(v, sig_def and sig_def.inputs.get(k))
                    for k, v in sorted(inputs.items())
                },
                "outputs": {
                    k: _spec(v, sig_def and sig_def.outputs.get(k))
                    for k, v in sorted(outputs.items())
                },
                **_example_parsing(fn, inputs),
            }
        return described


def _spec(t, info=None) -> dict[str, Any]:
    """dtype and shape (None for unknown dims); TF1 exports keep shapes only in the
    SignatureDef's TensorInfo, so fall back to it when the traced spec has no rank."""
    shape = None if t.shape.rank is None else list(t.shape.as_list())
    if shape is None and info is not None and not info.tensor_shape.unknown_rank:
        shape = [d.size if d.size >= 0 else None for d in info.tensor_shape.dim]
    return {"dtype": t.dtype.name, "shape": shape}


def _takes_strings(inputs: dict) -> bool:
    return len(inputs) == 1 and next(iter(inputs.values())).dtype.name == "string"


def _signature_defs(path: str) -> dict[str, Any]:
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    return {k: v for mg in sm.meta_graphs for k, v in mg.signature_def.items()}


# Lines of a TensorFlow error that say where, not what.
_NOISE = re.compile(r"^(Graph execution error:|Detected at node|File \"|in user code:|\[\[)")


def error_cause(message: str) -> tuple[str, str | None]:
    """(the line of a TensorFlow error that says what is wrong, the op it happened in):
    "Graph execution error:" and the Python stack TF puts first are dropped."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    causes = [line for line in lines if not _NOISE.match(line)]
    cause = causes[0] if causes else (lines[0] if lines else "unknown error")
    node = re.search(r"\{\{node ([^}]+)\}\}", message)
    cause = re.sub(r"\s*\[\[\{\{node [^]]*\]\]|\s*\[Op:[^]]*\]", "", cause).strip()
    return cause, f"In TensorFlow op {node.group(1)}." if node else None


# Ops between a constant and an op input that keep its values (in order).
_SAME_VALUES = {"Identity", "Reshape", "ExpandDims", "Squeeze"}


def _default(by_name: dict, tf, tensor: str) -> list | None:
    """A dense feature's default (a FixedLenFeature default_value), or None if the
    feature is required (an empty default) or its default is not a constant."""
    node = by_name.get(node_name(tensor))
    while node is not None and node.op in _SAME_VALUES:  # tf.io.parse_example reshapes
        node = by_name.get(node_name(node.input[0]))
    if node is None or node.op != "Const":
        return None
    values = tf.make_ndarray(node.attr["value"].tensor)
    if values.size == 0:
        return None
    return [v.decode() if isinstance(v, bytes) else v.item() for v in values.ravel()]


def _example_parsing(fn, inputs: dict) -> dict[str, Any]:
    """{"features": the parse spec, "parses_examples": bool} of a signature. A single
    string input that the graph does not parse as an Example is text (or a key)."""
    if not _takes_strings(inputs):
        return {"features": None, "parses_examples": False}
    graph_def = fn.graph.as_graph_def()
    bodies = [list(graph_def.node)] + [list(f.node_def) for f in graph_def.library.function]
    parses = any(node.op in _PARSE_OPS for nodes in bodies for node in nodes)
    return {"features": parse_spec(bodies) if parses else None, "parses_examples": parses}


def parse_spec(bodies: list[list]) -> dict[str, dict[str, Any]] | None:
    """The dense features a signature's ParseExample op reads, from the graph itself.

    Looks through the signature's graph and every function in its library (TF2 traces
    put the op inside a nested function: BODIES), resolving the constant keys and
    defaults.
    """
    tf = sys.modules["tensorflow"]
    for nodes in bodies:
        by_name = {n.name: n for n in nodes}
        for node in nodes:
            if node.op not in _PARSE_OPS:
                continue
            n_dense = len(node.attr["Tdense"].list.type)
            if node.op == "ParseExampleV2":  # one tensor of keys, then ragged keys
                key_inputs, first_default = [node.input[3]], 5
            elif node.op == "ParseExample":  # one scalar input per key
                n_sparse = node.attr["Nsparse"].i
                key_inputs = list(node.input[2 + n_sparse : 2 + n_sparse + n_dense])
                first_default = 2 + n_sparse + n_dense
            else:  # ParseSingleExample keeps its keys in attributes
                key_inputs, first_default = [], 1
            keys = [k.decode() for k in node.attr["dense_keys"].list.s]
            for key_input in key_inputs:
                const = by_name.get(node_name(key_input))
                if const is None or const.op != "Const":
                    break
                keys += [k.decode() for k in tf.make_ndarray(const.attr["value"].tensor).ravel()]
            if len(keys) != n_dense:
                continue  # keys computed at run time: no spec
            shapes = [[d.size for d in s.dim] for s in node.attr["dense_shapes"].list.shape]
            dtypes = [tf.dtypes.as_dtype(t).name for t in node.attr["Tdense"].list.type]
            defaults = [
                _default(by_name, tf, name) for name in node.input[first_default:][:n_dense]
            ]
            spec = {
                k: {"dtype": dt, "shape": sh, "default": d}
                for k, dt, sh, d in zip(keys, dtypes, shapes, defaults, strict=False)
            }
            return spec | _var_len_spec(node, by_name, tf)
    return None


def _const_strings(by_name: dict, tf, tensors: list[str]) -> list[str] | None:
    """The strings of the constants TENSORS name, in order; None if one is not constant."""
    out = []
    for tensor in tensors:
        const = by_name.get(node_name(tensor))
        if const is None or const.op != "Const":
            return None
        out += [k.decode() for k in tf.make_ndarray(const.attr["value"].tensor).ravel()]
    return out


def _var_len_spec(node, by_name: dict, tf) -> dict[str, dict[str, Any]]:
    """The var-len (VarLenFeature: sparse; RaggedFeature) features a parse op reads: any
    number of values, none when missing ({"var_len": true, "default": []})."""
    if node.op == "ParseExampleV2":
        groups = [(node.input[2], "sparse_types"), (node.input[4], "ragged_value_types")]
        found = [(_const_strings(by_name, tf, [k]), node.attr[t].list.type) for k, t in groups]
    elif node.op == "ParseExample":
        n_sparse = node.attr["Nsparse"].i
        keys = _const_strings(by_name, tf, list(node.input[2 : 2 + n_sparse]))
        found = [(keys, node.attr["sparse_types"].list.type)]
    else:
        keys = [k.decode() for k in node.attr["sparse_keys"].list.s]
        found = [(keys, node.attr["sparse_types"].list.type)]
    spec = {}
    for keys, types in found:
        if keys is None or len(keys) != len(types):
            continue
        for key, t in zip(keys, types, strict=True):
            dtype = tf.dtypes.as_dtype(t).name
            spec[key] = {"dtype": dtype, "shape": None, "default": [], "var_len": True}
    return spec
