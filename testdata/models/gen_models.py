#!/usr/bin/python3
"""Generates the small ONNX test models in this directory, plus cases.json.

Run with Debian's python3 (onnx 1.12, numpy):  /usr/bin/python3 testdata/models/gen_models.py
Output is deterministic (fixed seeds); see README.md.
"""
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = [helper.make_opsetid("", 17)]
OPSET_ML = OPSET + [helper.make_opsetid("ai.onnx.ml", 3)]
IR_VERSION = 8


def save(model, name):
    model.ir_version = IR_VERSION
    model.producer_name = "nimbus-gen_models"
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, name))


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def init(name, arr):
    return numpy_helper.from_array(arr, name)


def relu(x):
    return np.maximum(x, 0)


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def tensor_case(dtype, arr):
    """A tensor of cases.json. FP16 and BF16 data are the elements' bit patterns
    (uint16); BYTES data are strings."""
    if dtype == "FP16":
        data = arr.astype(np.float16).view(np.uint16).reshape(-1).tolist()
    elif dtype == "BF16":
        data = bf16_bits(arr).reshape(-1).tolist()
    elif dtype == "BYTES":
        data = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1).tolist()]
    else:
        data = arr.reshape(-1).tolist()
    return {"datatype": dtype, "shape": list(arr.shape), "data": data}


def bf16_bits(arr):
    """The bfloat16 bit patterns of float32 values that bfloat16 holds exactly."""
    bits = np.asarray(arr, dtype=np.float32).view(np.uint32)
    assert not (bits & 0xFFFF).any(), "the test values must be exact in bfloat16"
    return (bits >> 16).astype(np.uint16)


# ---------------------------------------------------------------- mlp
def gen_mlp():
    rng = np.random.default_rng(1)
    w1 = rng.normal(0, 0.5, (4, 16)).astype(np.float32)
    b1 = rng.normal(0, 0.1, (16,)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (16, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.1, (3,)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["y"]),
        helper.make_node("Softmax", ["y"], ["probs"], axis=1),
    ]
    g = helper.make_graph(
        nodes, "mlp",
        [vi("x", TensorProto.FLOAT, ["batch", 4])],
        [vi("y", TensorProto.FLOAT, ["batch", 3]), vi("probs", TensorProto.FLOAT, ["batch", 3])],
        [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2)],
    )
    save(helper.make_model(g, opset_imports=OPSET), "mlp.onnx")

    cases = []
    for n in (1, 3):
        x = rng.normal(0, 1, (n, 4)).astype(np.float32)
        y = relu(x @ w1 + b1) @ w2 + b2
        cases.append({
            "inputs": {"x": tensor_case("FP32", x)},
            "outputs": {"y": tensor_case("FP32", y), "probs": tensor_case("FP32", softmax(y))},
        })
    return cases


def gen_mlp_medium():
    rng = np.random.default_rng(2)
    dims = [64, 512, 512, 10]
    inits, nodes = [], []
    cur = "x"
    for i in range(3):
        w = rng.normal(0, 1 / np.sqrt(dims[i]), (dims[i], dims[i + 1])).astype(np.float32)
        b = np.zeros(dims[i + 1], np.float32)
        inits += [init(f"w{i}", w), init(f"b{i}", b)]
        out = "y" if i == 2 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"w{i}", f"b{i}"], [out]))
        if i < 2:
            nodes.append(helper.make_node("Relu", [out], [out + "r"]))
            out += "r"
        cur = out
    g = helper.make_graph(nodes, "mlp_medium", [vi("x", TensorProto.FLOAT, ["batch", 64])],
                          [vi("y", TensorProto.FLOAT, ["batch", 10])], inits)
    save(helper.make_model(g, opset_imports=OPSET), "mlp_medium.onnx")


# ---------------------------------------------------------------- multi_io
def gen_multi_io():
    nodes = [
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["a", "bf"], ["sum"]),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("zero_v", TensorProto.FLOAT, [], [0.0])),
        helper.make_node("Where", ["mask", "a", "zero"], ["masked"]),
        helper.make_node("Cast", ["mask"], ["mask_i"], to=TensorProto.INT64),
        helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("axes_v", TensorProto.INT64, [1], [1])),
        helper.make_node("ReduceSum", ["mask_i", "axes"], ["count"], keepdims=0),
    ]
    g = helper.make_graph(
        nodes, "multi_io",
        [vi("a", TensorProto.FLOAT, ["batch", 3]), vi("b", TensorProto.INT64, ["batch", 3]),
         vi("mask", TensorProto.BOOL, ["batch", 3])],
        [vi("sum", TensorProto.FLOAT, ["batch", 3]), vi("masked", TensorProto.FLOAT, ["batch", 3]),
         vi("count", TensorProto.INT64, ["batch"])],
    )
    save(helper.make_model(g, opset_imports=OPSET), "multi_io.onnx")

    rng = np.random.default_rng(3)
    cases = []
    for n in (1, 4):
        a = rng.normal(0, 2, (n, 3)).astype(np.float32)
        b = rng.integers(-1000, 1000, (n, 3)).astype(np.int64)
        mask = rng.random((n, 3)) < 0.5
        cases.append({
            "inputs": {"a": tensor_case("FP32", a), "b": tensor_case("INT64", b), "mask": tensor_case("BOOL", mask)},
            "outputs": {
                "sum": tensor_case("FP32", a + b.astype(np.float32)),
                "masked": tensor_case("FP32", np.where(mask, a, np.float32(0))),
                "count": tensor_case("INT64", mask.astype(np.int64).sum(axis=1)),
            },
        })
    return cases


# ---------------------------------------------------------------- tree
N_TREES, DEPTH, N_FEAT, N_CLASS = 5, 3, 4, 3


def make_forest(rng):
    """Full binary trees of depth DEPTH: node i has children 2i+1, 2i+2."""
    n_internal = 2 ** DEPTH - 1
    n_nodes = 2 ** (DEPTH + 1) - 1
    trees = []
    for _ in range(N_TREES):
        feat = rng.integers(0, N_FEAT, n_internal)
        thr = rng.normal(0, 1, n_internal).astype(np.float32)
        leaf_p = rng.dirichlet(np.ones(N_CLASS), n_nodes - n_internal).astype(np.float32)
        trees.append((feat, thr, leaf_p))
    return trees


def forest_attrs(trees):
    n_internal = 2 ** DEPTH - 1
    n_nodes = 2 ** (DEPTH + 1) - 1
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                         "nodes_truenodeids", "nodes_falsenodeids", "class_treeids", "class_nodeids", "class_ids",
                         "class_weights")}
    for t, (feat, thr, leaf_p) in enumerate(trees):
        for n in range(n_nodes):
            a["nodes_treeids"].append(t)
            a["nodes_nodeids"].append(n)
            if n < n_internal:
                a["nodes_featureids"].append(int(feat[n]))
                a["nodes_values"].append(float(thr[n]))
                a["nodes_modes"].append("BRANCH_LEQ")
                a["nodes_truenodeids"].append(2 * n + 1)
                a["nodes_falsenodeids"].append(2 * n + 2)
            else:
                a["nodes_featureids"].append(0)
                a["nodes_values"].append(0.0)
                a["nodes_modes"].append("LEAF")
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                # As skl2onnx does for a random forest: each leaf votes its class
                # probabilities divided by the number of trees, so the sum is the mean.
                for c in range(N_CLASS):
                    a["class_treeids"].append(t)
                    a["class_nodeids"].append(n)
                    a["class_ids"].append(c)
                    a["class_weights"].append(float(leaf_p[n - n_internal][c] / np.float32(N_TREES)))
    return a


def forest_predict(trees, x):
    """The forest by hand: mean of the leaf distributions; label = argmax."""
    n_internal = 2 ** DEPTH - 1
    probs = np.zeros((x.shape[0], N_CLASS), np.float32)
    for r in range(x.shape[0]):
        for feat, thr, leaf_p in trees:
            n = 0
            while n < n_internal:
                n = 2 * n + 1 if x[r, feat[n]] <= thr[n] else 2 * n + 2
            probs[r] += leaf_p[n - n_internal] / np.float32(N_TREES)
    return probs.argmax(axis=1).astype(np.int64), probs


def gen_tree():
    rng = np.random.default_rng(4)
    trees = make_forest(rng)
    attrs = forest_attrs(trees)
    common = dict(domain="ai.onnx.ml", classlabels_int64s=list(range(N_CLASS)), post_transform="NONE", **attrs)
    tree_node = helper.make_node("TreeEnsembleClassifier", ["input"], ["label", "probabilities"], **common)
    inputs = [vi("input", TensorProto.FLOAT, ["batch", N_FEAT])]
    label = vi("label", TensorProto.INT64, ["batch"])
    g = helper.make_graph([tree_node], "tree", inputs,
                          [label, vi("probabilities", TensorProto.FLOAT, ["batch", N_CLASS])])
    save(helper.make_model(g, opset_imports=OPSET_ML), "tree.onnx")

    # tree_zipmap: what skl2onnx emits by default (zipmap=True).
    zip_node = helper.make_node("ZipMap", ["probabilities"], ["output_probability"], domain="ai.onnx.ml",
                                classlabels_int64s=list(range(N_CLASS)))
    map_type = onnx.TypeProto()
    map_type.map_type.key_type = TensorProto.INT64
    map_type.map_type.value_type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    seq_map = helper.make_value_info("output_probability", helper.make_sequence_type_proto(map_type))
    tree_node2 = helper.make_node("TreeEnsembleClassifier", ["input"], ["label", "probabilities"], **common)
    g2 = helper.make_graph([tree_node2, zip_node], "tree_zipmap", inputs, [label, seq_map])
    save(helper.make_model(g2, opset_imports=OPSET_ML), "tree_zipmap.onnx")

    cases = []
    for n in (1, 6):
        x = rng.normal(0, 1.2, (n, N_FEAT)).astype(np.float32)
        lab, probs = forest_predict(trees, x)
        cases.append({
            "inputs": {"input": tensor_case("FP32", x)},
            "outputs": {"label": tensor_case("INT64", lab), "probabilities": tensor_case("FP32", probs)},
        })
    return cases


# ---------------------------------------------------------------- dtypes
DTYPES = [  # suffix, ONNX elem type: every OIP type. ORT 1.24 runs Identity (opset 16) on all of them.
    ("bool", TensorProto.BOOL), ("uint8", TensorProto.UINT8), ("uint16", TensorProto.UINT16),
    ("uint32", TensorProto.UINT32), ("uint64", TensorProto.UINT64), ("int8", TensorProto.INT8),
    ("int16", TensorProto.INT16), ("int32", TensorProto.INT32), ("int64", TensorProto.INT64),
    ("fp16", TensorProto.FLOAT16), ("fp32", TensorProto.FLOAT), ("fp64", TensorProto.DOUBLE),
    ("string", TensorProto.STRING), ("bf16", TensorProto.BFLOAT16),
]


def gen_dtypes():
    nodes = [helper.make_node("Identity", [f"in_{s}"], [f"out_{s}"]) for s, _ in DTYPES]
    g = helper.make_graph(nodes, "dtypes", [vi(f"in_{s}", t, ["batch", 2]) for s, t in DTYPES],
                          [vi(f"out_{s}", t, ["batch", 2]) for s, t in DTYPES])
    save(helper.make_model(g, opset_imports=OPSET), "dtypes.onnx")


OIP_NAMES = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "fp16": "FP16", "fp32": "FP32",
    "fp64": "FP64", "string": "BYTES", "bf16": "BF16",
}
SCALAR_VALUES = {  # one value per type, exact in the type
    "bool": np.array(True), "uint8": np.array(200, dtype=np.uint8), "uint16": np.array(60000, dtype=np.uint16),
    "uint32": np.array(4000000000, dtype=np.uint32), "uint64": np.array(2**63 + 5, dtype=np.uint64),
    "int8": np.array(-100, dtype=np.int8), "int16": np.array(-30000, dtype=np.int16),
    "int32": np.array(-2000000000, dtype=np.int32), "int64": np.array(-(2**62), dtype=np.int64),
    "fp16": np.array(-2.5, dtype=np.float32), "fp32": np.array(3.25, dtype=np.float32),
    "fp64": np.array(1e300, dtype=np.float64), "string": np.array("héllo\x00world", dtype=object),
    "bf16": np.array(-0.75, dtype=np.float32),
}


def gen_scalars(name, types):
    """types as rank-0 (scalar) inputs and outputs: scalars.onnx holds every OIP
    type but BF16, which onnxruntime-node cannot exchange; scalars_bf16.onnx
    holds BF16."""
    nodes = [helper.make_node("Identity", [f"in_{s}"], [f"out_{s}"]) for s, _ in types]
    g = helper.make_graph(nodes, name, [vi(f"in_{s}", t, []) for s, t in types],
                          [vi(f"out_{s}", t, []) for s, t in types])
    save(helper.make_model(g, opset_imports=OPSET), name + ".onnx")
    case = {"inputs": {}, "outputs": {}}
    for s, _ in types:
        v = SCALAR_VALUES[s]
        case["inputs"][f"in_{s}"] = tensor_case(OIP_NAMES[s], v)
        case["outputs"][f"out_{s}"] = tensor_case(OIP_NAMES[s], v)
    return [case]


def gen_vad_like():
    """Shaped like a voice-activity model (Silero VAD's `sr` is an INT64 scalar):
    prob = Sigmoid(mean(input, axis 1) * sr / 16000) [batch,1], rate = sr (a
    scalar output), energy = sum(input^2) (a scalar computed from the batch)."""
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["srf", "base"], ["scale"]),
        helper.make_node("Mul", ["mean", "scale"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["prob"]),
        helper.make_node("Identity", ["sr"], ["rate"]),
        helper.make_node("Mul", ["input", "input"], ["sq"]),
        helper.make_node("ReduceSum", ["sq"], ["energy"], keepdims=0),
    ]
    g = helper.make_graph(
        nodes, "vad_like",
        [vi("input", TensorProto.FLOAT, ["batch", 8]), vi("sr", TensorProto.INT64, [])],
        [vi("prob", TensorProto.FLOAT, ["batch", 1]), vi("rate", TensorProto.INT64, []),
         vi("energy", TensorProto.FLOAT, [])],
        [init("base", np.array(16000.0, dtype=np.float32))],
    )
    save(helper.make_model(g, opset_imports=OPSET), "vad_like.onnx")
    rng = np.random.default_rng(7)
    cases = []
    for n, sr in ((1, 16000), (3, 8000)):
        x = rng.normal(0, 1, (n, 8)).astype(np.float32)
        logit = x.mean(axis=1, keepdims=True) * np.float32(sr / 16000.0)
        cases.append({
            "inputs": {"input": tensor_case("FP32", x), "sr": tensor_case("INT64", np.array(sr, dtype=np.int64))},
            "outputs": {"prob": tensor_case("FP32", (1 / (1 + np.exp(-logit))).astype(np.float32)),
                        "rate": tensor_case("INT64", np.array(sr, dtype=np.int64)),
                        "energy": tensor_case("FP32", np.array((x * x).sum(), dtype=np.float32))},
        })
    return cases


def gen_dynamic_out(bf16):
    """Outputs whose shape is known only after the run (Compress keeps what a
    mask selects, Slice up to an input's column): FP16 and BYTES in
    dynamic_out.onnx, BF16 in dynamic_bf16.onnx (onnxruntime-node opens no model
    with a BF16 tensor)."""
    if bf16:
        # Compress takes no BF16 in opset 17; Slice up to a requested column does.
        name = "dynamic_bf16"
        nodes = [helper.make_node("Cast", ["x"], ["xb"], to=TensorProto.BFLOAT16),
                 helper.make_node("Slice", ["xb", "zero", "n", "one"], ["bh"])]
        ins = [vi("x", TensorProto.FLOAT, ["batch", 4]), vi("n", TensorProto.INT64, [1])]
        outs = [vi("bh", TensorProto.BFLOAT16, ["batch", "kept"])]
        inits = [init("zero", np.array([0], dtype=np.int64)), init("one", np.array([1], dtype=np.int64))]
    else:
        name = "dynamic_out"
        nodes = [helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
                 helper.make_node("Compress", ["x16", "keep"], ["h"], axis=1),
                 helper.make_node("Compress", ["words", "wkeep"], ["w"], axis=0)]
        ins = [vi("x", TensorProto.FLOAT, ["batch", 4]), vi("keep", TensorProto.BOOL, [4]),
               vi("words", TensorProto.STRING, ["n"]), vi("wkeep", TensorProto.BOOL, ["n"])]
        outs = [vi("h", TensorProto.FLOAT16, ["batch", "kept"]), vi("w", TensorProto.STRING, ["kept_words"])]
        inits = []
    save(helper.make_model(helper.make_graph(nodes, name, ins, outs, inits), opset_imports=OPSET), name + ".onnx")
    cases = []
    for x, keep, words, wkeep in (
        ([[1.0, -2.5, 0.25, 8.0], [-0.5, 3.0, 100.0, -7.0]], [True, False, True, True],
         ["alpha", "", "gamma\x00delta", "é"], [True, True, False, True]),
        ([[0.75, 1.5, -3.0, 2.0]], [False, False, False, False], ["only"], [False]),
    ):
        x = np.array(x, dtype=np.float32)
        keep, wkeep = np.array(keep), np.array(wkeep)
        words = np.array(words, dtype=object)
        kept = x[:, keep]
        if bf16:
            n = int(keep.sum())
            cases.append({"inputs": {"x": tensor_case("FP32", x), "n": tensor_case("INT64", np.array([n], dtype=np.int64))},
                          "outputs": {"bh": tensor_case("BF16", x[:, :n])}})
            continue
        cases.append({
            "inputs": {"x": tensor_case("FP32", x), "keep": tensor_case("BOOL", keep),
                       "words": tensor_case("BYTES", words), "wkeep": tensor_case("BOOL", wkeep)},
            "outputs": {"h": tensor_case("FP16", kept), "w": tensor_case("BYTES", words[wkeep])},
        })
    return cases


def gen_optional_input():
    """y = x + bias, where bias is an optional(tensor(float)) input: left out,
    the model adds zeros."""
    then = helper.make_graph([helper.make_node("OptionalGetElement", ["bias"], ["b_then"])], "then", [],
                             [vi("b_then", TensorProto.FLOAT, [3])])
    other = helper.make_graph([helper.make_node("Constant", [], ["b_else"],
                                                value=numpy_helper.from_array(np.zeros(3, dtype=np.float32)))],
                              "else", [], [vi("b_else", TensorProto.FLOAT, [3])])
    nodes = [
        helper.make_node("OptionalHasElement", ["bias"], ["has"]),
        helper.make_node("If", ["has"], ["b"], then_branch=then, else_branch=other),
        helper.make_node("Add", ["x", "b"], ["y"]),
    ]
    bias = helper.make_value_info("bias", helper.make_optional_type_proto(
        helper.make_tensor_type_proto(TensorProto.FLOAT, [3])))
    g = helper.make_graph(nodes, "optional_input", [vi("x", TensorProto.FLOAT, ["batch", 3]), bias],
                          [vi("y", TensorProto.FLOAT, ["batch", 3])])
    save(helper.make_model(g, opset_imports=OPSET), "optional_input.onnx")
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]], dtype=np.float32)
    b = np.array([0.5, -1.0, 10.0], dtype=np.float32)
    return [
        {"inputs": {"x": tensor_case("FP32", x), "bias": tensor_case("FP32", b)},
         "outputs": {"y": tensor_case("FP32", x + b)}},
        {"inputs": {"x": tensor_case("FP32", x)}, "outputs": {"y": tensor_case("FP32", x)}},
    ]


def gen_lookup():
    """Embedding-style lookup: out[i] = table[idx[i]]. An index outside 0..9 makes
    ONNX Runtime fail the run, so tests have a real model that errors on bad values."""
    table = (np.arange(10 * 3, dtype=np.float32).reshape(10, 3) / 10.0)
    nodes = [
        helper.make_node("Squeeze", ["idx", "axis1"], ["flat"]),
        helper.make_node("Gather", ["table", "flat"], ["out"], axis=0),
    ]
    g = helper.make_graph(nodes, "lookup", [vi("idx", TensorProto.INT64, ["batch", 1])],
                          [vi("out", TensorProto.FLOAT, ["batch", 3])],
                          [init("table", table), init("axis1", np.array([1], dtype=np.int64))])
    save(helper.make_model(g, opset_imports=OPSET), "lookup.onnx")


# ---------------------------------------------------------------- hostile
def save_external(model, name):
    """Saves model into hostile/ with every tensor (initializers and attribute
    tensors, subgraphs included) in an external data file <name>.bin, as
    onnx.save_model(..., save_as_external_data=True) writes it. The data file is
    not kept: Nimbus refuses such a model before anything reads it."""
    model.ir_version = IR_VERSION
    model.producer_name = "nimbus-gen_models"
    onnx.checker.check_model(model)
    base = os.path.splitext(name)[0]
    out = os.path.join(HERE, "hostile")
    os.makedirs(out, exist_ok=True)
    onnx.save_model(model, os.path.join(out, name), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=base + ".bin", size_threshold=0, convert_attribute=True)
    os.remove(os.path.join(out, base + ".bin"))


def gen_hostile():
    """Models whose tensors live in external files: an initializer, a Constant
    node's value, and a Constant inside an If branch (runtime/onnx tests)."""
    k = numpy_helper.from_array(np.array([2.0], dtype=np.float32), "k")  # raw_data: what gets moved out
    x, y = vi("x", TensorProto.FLOAT, ["batch", 1]), vi("y", TensorProto.FLOAT, ["batch", 1])

    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "external_initializer", [x], [y],
                          [init("w", np.array([1.0], dtype=np.float32))])
    save_external(helper.make_model(g, opset_imports=OPSET), "external_initializer.onnx")

    g = helper.make_graph([helper.make_node("Constant", [], ["k"], name="c", value=k),
                           helper.make_node("Add", ["x", "k"], ["y"])], "external_constant", [x], [y])
    save_external(helper.make_model(g, opset_imports=OPSET), "external_constant.onnx")

    then = helper.make_graph([helper.make_node("Constant", [], ["t"], name="k", value=k)], "then",
                             [], [vi("t", TensorProto.FLOAT, [1])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else",
                              [], [vi("e", TensorProto.FLOAT, ["batch", 1])])
    g = helper.make_graph([helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=other)],
                          "external_subgraph", [x, vi("cond", TensorProto.BOOL, [])], [vi("y", TensorProto.FLOAT, ["n", 1])])
    save_external(helper.make_model(g, opset_imports=OPSET), "external_subgraph.onnx")


def main():
    cases = {"mlp": gen_mlp(), "multi_io": gen_multi_io(), "tree": gen_tree(), "scalars": gen_scalars("scalars", [d for d in DTYPES if d[0] != "bf16"]),
             "scalars_bf16": gen_scalars("scalars_bf16", [d for d in DTYPES if d[0] == "bf16"]),
             "vad_like": gen_vad_like(), "dynamic_out": gen_dynamic_out(False),
             "dynamic_bf16": gen_dynamic_out(True), "optional_input": gen_optional_input()}
    gen_mlp_medium()
    gen_dtypes()
    gen_lookup()
    gen_hostile()
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
