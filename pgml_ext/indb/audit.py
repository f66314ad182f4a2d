"""The op audit of a SavedModel at registration: what its graph can do besides compute.

TensorFlow runs whatever ops a graph holds, with the server's OS-level rights: ReadFile
reads any file the server can, WriteFile writes one, PyFunc runs Python, and so on. A
model a pgml_admin registers must not be a way to act as the server's OS user, so every
op that TensorFlow may run for this model — when it loads (init ops, resources) and
when it scores (every signature) — is checked against the ops below; a graph that has
any is refused unless a superuser registers it with ``allow_unsafe_ops``.

The checkpoint subgraph (saver_def: SaveV2/RestoreV2 on the path the loader gives) is
the one place where checkpoint ops are expected; it is audited for everything else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Reads or writes files, or names them.
FILE_OPS = {
    "ReadFile",
    "WriteFile",
    "MatchingFiles",
    "MatchingFilesDataset",
    "ImmutableConst",
    "WholeFileReader",
    "WholeFileReaderV2",
    "TextLineReader",
    "TextLineReaderV2",
    "FixedLengthRecordReader",
    "FixedLengthRecordReaderV2",
    "TFRecordReader",
    "TFRecordReaderV2",
    "LMDBReader",
    "IdentityReader",
    "IdentityReaderV2",
    "TextLineDataset",
    "TFRecordDataset",
    "TFRecordDatasetV2",
    "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2",
    "LMDBDataset",
    "ExperimentalLMDBDataset",
    "SqlDataset",
    "ExperimentalSqlDataset",
    "CSVDataset",
    "CSVDatasetV2",
    "ExperimentalCSVDataset",
    "SnapshotDataset",
    "SnapshotDatasetV2",
    "SaveDataset",
    "SaveDatasetV2",
    "LoadDataset",
    "ExperimentalSaveDataset",
    "CacheDataset",
    "CacheDatasetV2",
    "DatasetToTFRecord",
    "ExperimentalDatasetToTFRecord",
    "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2",
    "LoadAndRemapMatrix",
    "GenerateVocabRemapping",
    "WriteSummary",
    "WriteRawProtoSummary",
    "WriteScalarSummary",
    "WriteHistogramSummary",
    "WriteImageSummary",
    "WriteAudioSummary",
    "WriteGraphSummary",
    "ImportEvent",
    "CreateSummaryFileWriter",
    "CreateSummaryDbWriter",
    "FlushSummaryWriter",
    "CloseSummaryWriter",
    "SummaryWriter",
    "FileSystemSetConfiguration",
    "Print",
    "PrintV2",
    "DebugIdentity",
    "DebugIdentityV2",
    "DebugIdentityV3",
    "DebugNanCount",
    "DebugNumericSummary",
    "DebugNumericSummaryV2",
    "Copy",
    "CopyHost",
}
# Checkpoint ops: only the loader's own restore may use them.
CHECKPOINT_OPS = {
    "Save",
    "SaveV2",
    "SaveSlices",
    "Restore",
    "RestoreV2",
    "RestoreSlice",
    "MergeV2Checkpoints",
    "ShardedFilename",
    "ShardedFilenames",
}
# Runs Python, or talks to other processes and machines.
PROCESS_OPS = {
    "PyFunc",
    "PyFuncStateless",
    "EagerPyFunc",
    "_Send",
    "_Recv",
    "_HostSend",
    "_HostRecv",
    "Rpc",
    "TryRpc",
    "RpcCall",
    "RpcClient",
    "RpcServer",
    "RpcServerStart",
    "RpcServerRegister",
    "RpcCheckStatus",
    "RpcGetValue",
    "DataServiceDataset",
    "DataServiceDatasetV2",
    "DataServiceDatasetV3",
    "DataServiceDatasetV4",
    "RegisterDataset",
    "RegisterDatasetV2",
    "DistributedSave",
    "CollectiveReduce",
    "CollectiveReduceV2",
    "CollectiveReduceV3",
    "CollectiveGather",
    "CollectiveGatherV2",
    "CollectiveBcastSend",
    "CollectiveBcastRecv",
    "CollectiveBcastSendV2",
    "CollectiveBcastRecvV2",
    "CollectiveAllToAllV2",
    "CollectiveAllToAllV3",
    "CollectiveInitializeCommunicator",
    "CollectiveAssignGroupV2",
    "NcclAllReduce",
    "NcclReduce",
    "NcclBroadcast",
    "BigQueryReader",
    "GenerateBigQueryReaderPartitions",
}
UNSAFE_OPS = FILE_OPS | CHECKPOINT_OPS | PROCESS_OPS


def node_name(tensor: str) -> str:
    """The node a NodeDef input names ("^node", "node:0", "node:output:0")."""
    return tensor.lstrip("^").split(":", 1)[0]


def _called(node) -> list[str]:
    """Functions a NodeDef calls: its op (a library function) and function attrs."""
    names = [node.op]
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(f.name for f in value.list.func)
    return names


def _reach(start: list[str], neighbours) -> set[str]:
    """Every name reachable from START through NEIGHBOURS(name)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(neighbours(name))
    return seen


class _Graph:
    def __init__(self, meta_graph) -> None:
        self.nodes = {n.name: n for n in meta_graph.graph_def.node}
        self.functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}

    def closure(self, roots: list[str]) -> tuple[set[str], set[str]]:
        """(graph nodes, library functions) that running ROOTS may run."""
        nodes = _reach(
            [r for r in roots if r in self.nodes],
            lambda n: [i for i in map(node_name, self.nodes[n].input) if i in self.nodes],
        )
        return nodes, self.called_from([f for n in nodes for f in _called(self.nodes[n])])

    def called_from(self, names: list[str]) -> set[str]:
        """The library functions NAMES (ops or function attrs) run, and theirs."""
        return _reach(
            [n for n in names if n in self.functions],
            lambda f: [
                c
                for node in self.functions[f].node_def
                for c in _called(node)
                if c in self.functions
            ],
        )

    def ops(self, nodes: set[str], functions: set[str]) -> set[str]:
        found = {self.nodes[n].op for n in nodes}
        for f in functions:
            found.update(node.op for node in self.functions[f].node_def)
        return found


def audit(saved_model_dir: str | Path) -> dict[str, Any]:
    """{"unsafe_ops": sorted op names, "ops": how many distinct ops} over every meta
    graph of the SavedModel."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    unsafe: set[str] = set()
    every: set[str] = set()
    for meta_graph in saved_model.meta_graphs:
        graph = _Graph(meta_graph)
        saver = meta_graph.saver_def
        saver_roots = [node_name(t) for t in (saver.save_tensor_name, saver.restore_op_name) if t]
        saver_nodes, saver_functions = graph.closure(saver_roots)
        other_nodes, other_functions = graph.closure(
            [n for n in graph.nodes if n not in saver_nodes]
        )
        # functions nothing in the graph calls (run by the TF2 loader): audited in full
        loose = set(graph.functions) - saver_functions - other_functions
        other_functions |= graph.called_from(sorted(loose))
        checkpoint_only = saver_functions - other_functions
        other_ops = graph.ops(other_nodes, other_functions)
        saver_ops = graph.ops(saver_nodes - other_nodes, checkpoint_only)
        every |= other_ops | saver_ops
        unsafe |= (other_ops & UNSAFE_OPS) | (saver_ops & (UNSAFE_OPS - CHECKPOINT_OPS))
    return {"unsafe_ops": sorted(unsafe), "ops": len(every)}
