"""LiteRT runtime: TFLite flatbuffers converted at registration. Loads in milliseconds,
~10x less memory than TensorFlow, microseconds per call; never imports TensorFlow."""

from __future__ import annotations

import numpy as np


class _Signature:
    """One signature's runner, minus the per-call re-allocation.

    LiteRT's SignatureRunner resizes and re-allocates every input on every call, which
    is most of the cost of scoring one row; we do that only when the batch shape
    changes. Falls back to the public runner if LiteRT's internals ever move.
    """

    def __init__(self, runner) -> None:
        self.runner = runner
        try:
            self.wrapper = runner._interpreter_wrapper
            self.inputs = dict(runner._inputs)
            self.output_index = dict(runner._outputs)
            self.subgraph = runner._subgraph_index
        except AttributeError:
            self.wrapper = None
        self.shapes: dict[str, tuple] = {}

    def _allocate(self, feeds: dict[str, np.ndarray]) -> None:
        w = self.wrapper
        for name, value in feeds.items():
            w.ResizeInputTensor(
                self.inputs[name], np.array(value.shape, dtype=np.int32), False, self.subgraph
            )
        w.AllocateTensors(self.subgraph)
        self.shapes = {k: v.shape for k, v in feeds.items()}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        w = self.wrapper
        if w is None:
            return self.runner(**feeds)
        if any(self.shapes.get(k) != v.shape for k, v in feeds.items()):
            self._allocate(feeds)
        for name, value in feeds.items():
            w.SetTensor(self.inputs[name], value, self.subgraph)
        w.Invoke(self.subgraph)
        return {
            name: w.GetTensor(index, self.subgraph) for name, index in self.output_index.items()
        }

    def one(self, name: str, value: np.ndarray, output: str) -> np.ndarray:
        """One input tensor in, the first row of one output out: the per-row path."""
        w = self.wrapper
        if self.shapes.get(name) != value.shape:
            self._allocate({name: value})
        w.SetTensor(self.inputs[name], value, self.subgraph)
        w.Invoke(self.subgraph)
        return w.GetTensor(self.output_index[output], self.subgraph)[0]


class LiteRTRuntime:
    name = "litert"

    def __init__(self, flatbuffers: dict[str, bytes | str], threads: int = 1) -> None:
        """FLATBUFFERS: signature -> the flatbuffer, or the path of a file holding it."""
        from ai_edge_litert.interpreter import Interpreter

        self._signatures: dict[str, _Signature] = {}
        self._interpreters = []  # keep them alive: the runners borrow them
        for signature, model in flatbuffers.items():
            source = {"model_path": model} if isinstance(model, str) else {"model_content": model}
            interpreter = Interpreter(**source, num_threads=threads)
            self._interpreters.append(interpreter)
            self._signatures[signature] = _Signature(interpreter.get_signature_runner(signature))

    def run(self, signature: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._signatures[signature](feeds)

    def runner_for(self, signature: str) -> _Signature | None:
        """The signature's runner, if it can score one row directly (RowPath)."""
        runner = self._signatures.get(signature)
        return runner if runner is not None and runner.wrapper is not None else None


def verify_flatbuffers(directory: str) -> None:
    """LiteRT's own checks on every flatbuffer in DIRECTORY (the flatbuffer verifier,
    then the interpreter's builder and tensor allocation): the C scorer maps these files
    and must never be handed one that could crash it. XX001 for a bad one."""
    import os

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from pgml_ext.indb.errors import DATA_CORRUPTED, PgmlError, first_line

    for name in sorted(os.listdir(directory)):
        if not name.endswith(".tflite"):
            continue
        try:
            interpreter = Interpreter(
                model_path=os.path.join(directory, name),
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
            interpreter.allocate_tensors()
        except Exception as e:
            raise PgmlError(
                f"stored LiteRT model {name} is not a valid flatbuffer ({first_line(e)})",
                DATA_CORRUPTED,
                hint="Register the model again; its stored LiteRT conversion is damaged.",
            ) from None


def flatbuffer_signatures(what: str, flatbuffer: bytes) -> dict[str, dict]:
    """The signatures of a LiteRT flatbuffer registered as it is, described as a
    SavedModel's are (inputs and outputs: dtype, shape with None for a dynamic size),
    after LiteRT's own checks (verify_flatbuffers). 22023 for one LiteRT cannot read or
    that has no signatures."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from pgml_ext.indb.errors import INVALID_PARAMETER, WRONG_OBJECT_TYPE, PgmlError, first_line

    try:
        interpreter = Interpreter(
            model_content=flatbuffer,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interpreter.allocate_tensors()
        listed = interpreter.get_signature_list()
    except Exception as e:
        raise PgmlError(
            f"{what} is not a LiteRT flatbuffer LiteRT can read ({first_line(e)})",
            INVALID_PARAMETER,
            hint="Convert it again with tf.lite.TFLiteConverter (builtin ops only), or "
            "register the SavedModel it came from.",
        ) from None
    if not listed:
        raise PgmlError(
            f"{what} has no signatures",
            WRONG_OBJECT_TYPE,
            hint="Convert with TFLiteConverter.from_saved_model (or from_keras_model), which "
            "keeps the signatures, or register the SavedModel.",
        )

    def spec(detail: dict) -> dict:
        shape = detail.get("shape_signature", detail["shape"])
        dtype = np.dtype(detail["dtype"])
        return {
            "dtype": "string" if dtype.kind in "OSU" else dtype.name,
            "shape": [int(d) if d >= 0 else None for d in shape],
        }

    described = {}
    for name in sorted(listed):
        runner = interpreter.get_signature_runner(name)
        described[name] = {
            "method": "",
            "inputs": {k: spec(v) for k, v in sorted(runner.get_input_details().items())},
            "outputs": {k: spec(v) for k, v in sorted(runner.get_output_details().items())},
        }
    return described
