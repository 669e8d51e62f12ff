"""Whether the oldest model server sst2 exports for can run a SavedModel, read off its graph.

`resources/serving_ops.json` records every op of TensorFlow 2.12.1 with
TensorFlow Text 2.12.1 (the op library of the stock `tensorflow/serving:2.12`
image) and each op's attribute names; `scripts/record_serving_ops.py`
regenerates it from that pinned environment. Every node of an export, in its
graphs and their function libraries, must name an op of that list, with only
attributes that op declares there: a newer runtime writes attributes an older
one does not know (TF 2.21's `TensorListSetItem` has
`resize_if_index_out_of_bounds`), and the older runtime drops them silently.
Internal attributes (`_class`, `_output_shapes`, ...) are not part of an op's
definition and are not checked; `HARMLESS_ATTRIBUTES` names the few newer ones
that change nothing an older runtime computes.

Example:
    >>> import tensorflow as tf
    >>> class Doubler(tf.Module):
    ...     @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    ...     def double(self, x):
    ...         return {"y": 2 * x}
    >>> path = os.path.join(tmp_dir, "doubler")
    >>> tf.saved_model.save(Doubler(), path)
    >>> unservable_ops(path)
    []
"""

import functools
import json
import os

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORD = os.path.join(PACKAGE_DIR, "resources",
                      "serving_ops.json")

# Newer attributes an older runtime may drop without changing any result, with why.
HARMLESS_ATTRIBUTES = {
    "VarHandleOp.debug_name": "a variable's name for error messages only",
    # The `explain` signature's gradients: a hint of which input a matmul is the gradient
    # of, read only by GPU BLAS to pick its precision (TF 2.21's matmul_op_impl.h).
    **{f"{op}.{attr}": "a gradient matmul's GPU BLAS hint; CPU results unchanged"
       for op, attrs in (("MatMul", ("grad_a", "grad_b")),
                         ("BatchMatMulV2", ("grad_x", "grad_y"))) for attr in attrs},
}


@functools.lru_cache(maxsize=None)
def serving_ops() -> dict:
    """The recorded runtime: `{"tensorflow": ..., "tensorflow_text": ..., "ops": {op: attrs}}`."""
    with open(RECORD) as f:
        return json.load(f)


def runtime_name() -> str:
    record = serving_ops()
    return f"TensorFlow {record['tensorflow']} + TensorFlow Text {record['tensorflow_text']}"


def nodes(export_dir: str):
    """Every NodeDef of a SavedModel, its graphs' and their function libraries', and the
    names of the library's functions (a node may call one by name)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    found, functions = [], set()
    for meta_graph in saved_model.meta_graphs:
        found.extend(meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            functions.add(function.signature.name)
            found.extend(function.node_def)
    return found, functions


def op_types(export_dir: str) -> set[str]:
    """Every op type in a SavedModel."""
    return {node.op for node in nodes(export_dir)[0]}


def unservable_ops(export_dir: str) -> list[str]:
    """What the recorded runtime cannot run: `"Op"` for an op it lacks, `"Op.attr"` for an
    attribute its definition of the op lacks. Empty when the export is servable there."""
    known = serving_ops()["ops"]
    found, functions = nodes(export_dir)
    problems = set()
    for node in found:
        if node.op in functions:
            continue
        if node.op not in known:
            problems.add(node.op)
            continue
        problems |= {f"{node.op}.{attr}" for attr in node.attr
                     if not attr.startswith("_") and attr not in known[node.op]
                     and f"{node.op}.{attr}" not in HARMLESS_ATTRIBUTES}
    return sorted(problems)
