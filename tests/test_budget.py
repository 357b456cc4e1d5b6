"""The resource budget (refquant/budget.py, spec/model.md "Resource budget").

Every bomb runs in a subprocess under an address-space limit (RLIMIT_AS) and a timeout, so that a
regression fails the test instead of taking the machine down: it must end, quickly, with a
ResourceLimitError naming the node, the tensor and the limit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
from refquant import budget, registry
from refquant.cli import main
from refquant.errors import RefquantError, ResourceLimitError

from .helpers import node_case_as_run, node_cases, to_array

EXAMPLES = Path(refquant.__file__).parent / "examples"

#: the address space a bomb's subprocess may use (python, numpy, onnx and refquant need about 1 GiB of it)
ADDRESS_SPACE = 3 * 2**30
#: seconds a bomb may take, interpreter start included; the budget check itself takes milliseconds
QUICK = 60

_RUNNER = textwrap.dedent(
    """
    import os, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    import refquant
    from refquant.errors import ResourceLimitError
    session = refquant.Session(sys.argv[1])
    start = time.perf_counter()
    try:
        session.run(None, {{}})
    except ResourceLimitError as exc:
        print(f"{{time.perf_counter() - start:.3f}}")
        print(exc)
        print(exc.limit)
        sys.exit(0)
    print("ran to the end")
    sys.exit(3)
    """
)


def _model(nodes, initializers=(), *, outputs=("y",), opset=17, ms=False) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "bomb", [], [helper.make_tensor_value_info(name, T.FLOAT, None) for name in outputs], list(initializers)
    )
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    return helper.make_model(graph, opset_imports=imports, ir_version=8)


def _tensor(name, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _ints(name, values) -> onnx.TensorProto:
    return _tensor(name, np.array(values, np.int64))


def _uint8(name, shape) -> onnx.TensorProto:
    return _tensor(name, np.zeros(shape, np.uint8))


def _qparams(prefix):
    return [_tensor(f"{prefix}_s", np.float32(0.5)), _tensor(f"{prefix}_z", np.uint8(0))]


def _constant_of_shape_bomb():
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], name="bomb")
    return _model([node], [_ints("s", [10**6, 10**6])]), "ConstantOfShape 'bomb'", "max_memory", "[1000000, 1000000]"


def _expand_bomb():
    node = helper.make_node("Expand", ["x", "s"], ["y"], name="bomb")
    model = _model([node], [_tensor("x", np.ones(1, np.float32)), _ints("s", [10**6, 10**6])])
    return model, "Expand 'bomb'", "max_memory", "[1000000, 1000000]"


def _range_bomb():
    node = helper.make_node("Range", ["a", "b", "c"], ["y"], name="bomb")
    model = _model([node], [_tensor("a", np.int64(0)), _tensor("b", np.int64(10**12)), _tensor("c", np.int64(1))])
    return model, "Range 'bomb'", "max_memory", "[1000000000000]"


def _resize_bomb():
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="bomb", mode="nearest")
    scales = _tensor("scales", np.array([1, 1, 1e6, 1e6], np.float32))
    return _model([node], [_tensor("x", np.ones((1, 1, 4, 4), np.float32)), scales]), "Resize 'bomb'", "max_memory", "[1, 1, 4000000, 4000000]"


def _pad_bomb():
    node = helper.make_node("Pad", ["x", "p"], ["y"], name="bomb")
    model = _model([node], [_tensor("x", np.ones((1, 1), np.float32)), _ints("p", [0, 0, 10**6, 10**6])])
    return model, "Pad 'bomb'", "max_memory", "[1000001, 1000001]"


def _broadcast_bomb():
    node = helper.make_node("Add", ["a", "b"], ["y"], name="bomb")
    a, b = np.ones((100_000, 1), np.float32), np.ones((1, 100_000), np.float32)
    return _model([node], [_tensor("a", a), _tensor("b", b)]), "Add 'bomb'", "max_memory", "[100000, 100000]"


def _gather_bomb():
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="bomb")
    model = _model([node], [_tensor("x", np.ones((1, 100_000), np.float32)), _ints("i", np.zeros(100_000))])
    return model, "Gather 'bomb'", "max_memory", "[100000, 100000]"


def _reduce_empty_bomb():
    make = helper.make_node("ConstantOfShape", ["s"], ["e"], name="empty")
    node = helper.make_node("ReduceMax", ["e"], ["y"], name="bomb", axes=[1], keepdims=1)
    return _model([make, node], [_ints("s", [100_000, 0, 100_000])]), "ReduceMax 'bomb'", "max_memory", "[100000, 1, 100000]"


def _qlinear_conv_pads_bomb():
    node = helper.make_node(
        "QLinearConv", ["x", "x_s", "x_z", "w", "w_s", "w_z", "y_s", "y_z"], ["y"], name="bomb", pads=[10**6] * 4
    )
    inits = [_uint8("x", (1, 1, 4, 4)), _uint8("w", (1, 1, 1, 1)), *_qparams("x"), *_qparams("w"), *_qparams("y")]
    return _model([node], inits), "QLinearConv 'bomb'", "max_memory", "[1, 1, 2000004, 2000004]"


def _conv_pads_bomb():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="bomb", pads=[10**6] * 4)
    inits = [_tensor("x", np.ones((1, 1, 4, 4), np.float32)), _tensor("w", np.ones((1, 1, 1, 1), np.float32))]
    return _model([node], inits), "Conv 'bomb'", "max_memory", "[1, 1, 2000004, 2000004]"


def _conv_transpose_strides_bomb():
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="bomb", strides=[10**6, 10**6])
    inits = [_tensor("x", np.ones((1, 1, 4, 4), np.float32)), _tensor("w", np.ones((1, 1, 1, 1), np.float32))]
    return _model([node], inits), "ConvTranspose 'bomb'", "max_memory", "[1, 1, 3000001, 3000001]"


def _average_pool_bomb():
    node = helper.make_node("AveragePool", ["x"], ["y"], name="bomb", kernel_shape=[3, 3], pads=[10**6] * 4,
                            count_include_pad=1)
    return _model([node], [_tensor("x", np.ones((1, 1, 4, 4), np.float32))]), "AveragePool 'bomb'", "max_memory", "[1, 1, 2000004, 2000004]"


def _max_pool_bomb():
    node = helper.make_node("MaxPool", ["x"], ["y"], name="bomb", kernel_shape=[3, 3], pads=[10**6] * 4)
    return _model([node], [_tensor("x", np.ones((1, 1, 4, 4), np.float32))]), "MaxPool 'bomb'", "max_memory", "[1, 1, 2000004, 2000004]"


def _matmul_work_bomb():
    # two 3000 x 3000 float32 matrices (36 MB each): 2.7e10 multiply-adds, over the 1e10 default
    make_a = helper.make_node("ConstantOfShape", ["s"], ["a"], name="a",
                              value=numpy_helper.from_array(np.ones(1, np.float32)))
    make_b = helper.make_node("ConstantOfShape", ["s"], ["b"], name="b",
                              value=numpy_helper.from_array(np.ones(1, np.float32)))
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="bomb")
    return _model([make_a, make_b, node], [_ints("s", [3000, 3000])]), "MatMul 'bomb'", "max_work", "2.7e+10"


def _qlinear_conv_work_bomb():
    # the 309-byte model: ConstantOfShape feeding a QLinearConv that computes for minutes
    value = numpy_helper.from_array(np.ones(1, np.uint8))
    make_x = helper.make_node("ConstantOfShape", ["xs"], ["x"], name="x", value=value)
    make_w = helper.make_node("ConstantOfShape", ["ws"], ["w"], name="w", value=value)
    node = helper.make_node("QLinearConv", ["x", "x_s", "x_z", "w", "w_s", "w_z", "y_s", "y_z"], ["y"], name="bomb")
    inits = [_ints("xs", [1, 16, 512, 512]), _ints("ws", [64, 16, 9, 9]), *_qparams("x"), *_qparams("w"),
             *_qparams("y")]
    model = _model([make_x, make_w, node], inits)
    assert len(model.SerializeToString()) < 400
    return model, "QLinearConv 'bomb'", "max_work", "2.11e+10"


def _ms_qlinear_conv_bomb():
    node = helper.make_node(
        "QLinearConv", ["x", "x_s", "x_z", "w", "w_s", "w_z", "y_s", "y_z"], ["y"], name="bomb",
        domain="com.microsoft", channels_last=1, pads=[10**6] * 4,
    )
    inits = [_uint8("x", (1, 4, 4, 1)), _tensor("w", np.zeros((1, 1, 1, 1), np.int8)), *_qparams("x"),
             _tensor("w_s", np.float32(0.5)), _tensor("w_z", np.int8(0)), *_qparams("y")]
    return _model([node], inits, ms=True), "QLinearConv 'bomb'", "max_memory", "2000004"


BOMBS = {
    "ConstantOfShape": _constant_of_shape_bomb,
    "Expand": _expand_bomb,
    "Range": _range_bomb,
    "Resize": _resize_bomb,
    "Pad": _pad_bomb,
    "broadcasting": _broadcast_bomb,
    "Gather": _gather_bomb,
    "reduction-of-an-empty-axis": _reduce_empty_bomb,
    "QLinearConv-pads": _qlinear_conv_pads_bomb,
    "com.microsoft-QLinearConv-pads": _ms_qlinear_conv_bomb,
    "Conv-pads": _conv_pads_bomb,
    "ConvTranspose-strides": _conv_transpose_strides_bomb,
    "AveragePool": _average_pool_bomb,
    "MaxPool": _max_pool_bomb,
    "MatMul-work": _matmul_work_bomb,
    "QLinearConv-work": _qlinear_conv_work_bomb,
}


def _run_isolated(path: Path) -> subprocess.CompletedProcess:
    code = _RUNNER.format(limit=ADDRESS_SPACE)
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=QUICK,
                          env=env)


@pytest.mark.parametrize("bomb", list(BOMBS))
def test_each_bomb_is_refused_quickly_with_a_clear_error(bomb, tmp_path):
    model, node, limit, shown = BOMBS[bomb]()
    path = tmp_path / "bomb.onnx"
    onnx.save(model, path)
    result = _run_isolated(path)
    assert result.returncode == 0, result.stdout + result.stderr
    seconds, message, kind = result.stdout.strip().split("\n")
    assert kind == limit
    assert message.startswith(node + ":"), message
    assert shown in message and limit in message, message
    assert float(seconds) < 5, f"the refusal took {seconds} s"


def test_the_80_byte_constant_of_shape_model_is_refused_in_process():
    node = helper.make_node("ConstantOfShape", ["s"], ["y"])
    graph = helper.make_graph([node], "", [], [helper.make_tensor_value_info("y", T.FLOAT, None)],
                              [_ints("s", [10**6, 10**6])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert len(model.SerializeToString()) <= 80
    with pytest.raises(ResourceLimitError, match=r"ConstantOfShape '#0': output of shape \[1000000, 1000000\] .*exceeds max_memory 4 GiB"):
        refquant.Session(model).run(None, {})


# -- limits are configurable ----------------------------------------------------------------------------


def _constant(shape) -> onnx.ModelProto:
    return _model([helper.make_node("ConstantOfShape", ["s"], ["y"], name="c")], [_ints("s", shape)])


def _matmul(m, k, n) -> onnx.ModelProto:
    inits = [_tensor("a", np.ones((m, k), np.float32)), _tensor("b", np.ones((k, n), np.float32))]
    return _model([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], inits)


def test_a_model_just_over_a_custom_memory_limit_is_refused_and_just_under_runs():
    model = _constant([1000, 1000])  # 10**6 elements, counted at 8 bytes
    (y,) = refquant.Session(model, limits=refquant.Limits(max_memory=8 * 10**6)).run(None, {})
    assert y.shape == (1000, 1000)
    with pytest.raises(ResourceLimitError, match=r"ConstantOfShape 'c': output of shape \[1000, 1000\].*max_memory") as info:
        refquant.Session(model, limits=refquant.Limits(max_memory=8 * 10**6 - 1)).run(None, {})
    assert (info.value.limit, info.value.requested, info.value.allowed) == ("max_memory", 8 * 10**6, 8 * 10**6 - 1)


def test_a_model_just_over_a_custom_work_limit_is_refused_and_just_under_runs():
    model = _matmul(10, 20, 30)  # 6000 multiply-adds
    (y,) = refquant.Session(model, limits=refquant.Limits(max_work=6000)).run(None, {})
    assert (y == 20).all()
    with pytest.raises(ResourceLimitError, match=r"MatMul 'mm': 6000 multiply-adds .*exceed max_work 5999"):
        refquant.Session(model, limits=refquant.Limits(max_work=5999)).run(None, {})


def test_none_lifts_a_limit_and_use_limits_sets_the_default():
    model = _constant([1000, 1000])
    small = refquant.Limits(max_memory=1000)
    with refquant.use_limits(small):
        assert refquant.Session(model).limits is small
        with pytest.raises(ResourceLimitError):
            refquant.Session(model).run(None, {})
        (y,) = refquant.Session(model, limits=refquant.Limits(max_memory=None)).run(None, {})  # explicit wins
        assert y.shape == (1000, 1000)
    assert refquant.Session(model).limits == refquant.Limits()
    assert refquant.Limits.unlimited() == refquant.Limits(None, None)


@pytest.mark.parametrize("value", [0, -1, 1.5, "1GiB", True, float("inf")])
def test_limits_must_be_positive_whole_numbers(value):
    with pytest.raises(RefquantError, match="max_memory"):
        refquant.Limits(max_memory=value)
    with pytest.raises(RefquantError, match="limits must be a refquant.Limits"):
        refquant.Session(_constant([1]), limits={"max_memory": 10})


def test_the_defaults_are_documented():
    assert refquant.Limits() == refquant.Limits(4 * 2**30, 10**10)
    text = (Path(__file__).resolve().parent.parent / "spec" / "model.md").read_text()
    assert "## Resource budget" in text
    assert "4 GiB" in text and "10**10" in text


# -- memory errors ----------------------------------------------------------------------------------


def test_a_memory_error_in_a_kernel_is_a_resource_limit_error_naming_the_node(monkeypatch):
    model = _constant([2, 2])
    session = refquant.Session(model)

    def exhausted(node, *inputs):
        raise MemoryError

    session._plan[0].kernel = exhausted
    with pytest.raises(ResourceLimitError, match=r"ConstantOfShape 'c': ran out of memory") as info:
        session.run(None, {})
    assert info.value.limit == "memory"


# -- legal models are unchanged -----------------------------------------------------------------------


def test_legal_models_run_unchanged_under_the_default_limits():
    model = onnx.load(EXAMPLES / "qcnn.onnx")
    session = refquant.Session(model)
    feeds = {
        spec.name: np.random.default_rng(0).integers(0, 255, [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]).astype(spec.dtype)
        if spec.dtype.kind in "iu" else np.random.default_rng(0).standard_normal(
            [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]).astype(spec.dtype)
        for spec in session.inputs
    }
    limited = session.run_all(feeds)
    unlimited = refquant.Session(model, limits=refquant.Limits.unlimited()).run_all(feeds)
    assert limited.keys() == unlimited.keys()
    for name in limited:
        np.testing.assert_array_equal(limited[name], unlimited[name])


def test_every_registered_op_has_an_estimator():
    registry.supported_ops()
    assert set(registry._KERNELS) == budget.estimated_ops()


def test_estimates_bound_what_the_kernels_allocate():
    """On the bundled model, every node's estimated tensors hold at least its outputs' elements."""
    model = onnx.load(EXAMPLES / "qcnn.onnx")
    session = refquant.Session(model)
    feeds = {s.name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in s.shape], s.dtype) for s in session.inputs}
    values = session.run_all(feeds)
    for node in session._plan:
        found = budget.estimate(node, [values[n] if n else None for n in node.proto.input])
        assert found is not None, node
        produced = sum(values[n].size for n in node.proto.output if n)
        assert sum(a.elements for a in found.allocations) >= produced, node


def _single_node_cases_by_op() -> dict[str, list]:
    registered = {op for domain, op, _ in registry.supported_ops() if domain == ""}
    cases = {}
    for case in map(node_case_as_run, node_cases(r"^test_")):
        nodes = case.model.graph.node
        if len(nodes) == 1 and not nodes[0].domain and nodes[0].op_type in registered:
            cases.setdefault(case.model.graph.node[0].op_type, []).append(case)
    return cases


NODE_CASES_BY_OP = _single_node_cases_by_op()


@pytest.mark.parametrize("op", sorted(NODE_CASES_BY_OP))
def test_estimates_bound_the_outputs_of_every_node_case(op):
    """For each single-node ONNX node case of a registered op, the estimate's largest tensor holds at least the
    elements of each output the case expects (written by the ONNX test generators), whatever the kernel computes:
    max_memory is checked per tensor first."""
    checked = nothing_allocated = 0
    for case in NODE_CASES_BY_OP[op]:
        for inputs, expected in case.data_sets:
            values = iter(to_array(value) for value in inputs)
            given = {i.name: next(values) for i in case.model.graph.input}
            try:
                session = refquant.Session(case.model)
                session.run(None, given)
            except RefquantError:  # refused (an op, a version or an input refquant refuses): nothing to bound
                continue
            node = session._plan[0]
            found = budget.estimate(node, [given.get(n) if n else None for n in node.proto.input])
            assert found is not None, f"{case.name}: no estimate"
            if not found.allocations:  # Constant's value, control flow and optionals: nothing allocated here
                nothing_allocated += 1
                continue
            largest = max((a.elements for a in found.allocations), default=0)
            for value in expected:
                if isinstance(output := to_array(value), np.ndarray):  # tensors (sequences hold tensors sized alike)
                    assert largest >= output.size, f"{case.name}: an output of {output.size} elements, estimate {found}"
            checked += 1
    if not checked and not nothing_allocated:
        pytest.skip(f"refquant refuses every node case of {op}")


def test_a_malformed_node_keeps_its_own_error():
    """An estimator that cannot read its inputs leaves the error to the kernel."""
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], name="c")
    model = _model([node], [_ints("s", [2, -3])])
    with pytest.raises(RefquantError, match="negative dimension"):
        refquant.Session(model).run(None, {})


# -- command line ---------------------------------------------------------------------------------------


def test_cli_refuses_a_bomb_in_one_line_and_takes_custom_limits(tmp_path, capsys):
    path = tmp_path / "c.onnx"
    onnx.save(_constant([1000, 1000]), path)
    assert main(["run", str(path), "--max-memory", "1MiB"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("refquant: error: ConstantOfShape 'c': output of shape [1000, 1000]") and "max_memory 1 MiB" in err
    assert "\n" not in err
    assert main(["run", str(path), "--max-memory", "8e6"]) == 0
    assert main(["run", str(path), "--max-memory", "none"]) == 0
    path = tmp_path / "mm.onnx"
    onnx.save(_matmul(10, 20, 30), path)
    assert main(["run", str(path), "--max-work", "5999"]) == 1
    assert "exceed max_work 5999" in capsys.readouterr().err
    assert main(["run", str(path), "--max-work", "6e3"]) == 0


@pytest.mark.parametrize(
    "flag, value, match",
    [("--max-memory", "lots", "--max-memory must be a size"), ("--max-memory", "0", "at least 1 byte"),
     ("--max-work", "1.5", "whole number"), ("--max-work", "many", "--max-work must be a number")],
)
def test_cli_limit_values_are_checked(tmp_path, capsys, flag, value, match):
    path = tmp_path / "c.onnx"
    onnx.save(_constant([2]), path)
    assert main(["run", str(path), flag, value]) == 1
    assert match in capsys.readouterr().err


def test_sizes_parse_in_binary_units():
    assert budget.parse_size("4GiB", "--max-memory") == 4 * 2**30
    assert budget.parse_size("512m", "--max-memory") == 512 * 2**20
    assert budget.parse_size("1e9", "--max-memory") == 10**9
    assert budget.parse_size("2 KiB", "--max-memory") == 2048
    assert budget.parse_count("1e11", "--max-work") == 10**11


@pytest.mark.parametrize("command", ["run", "compare", "replay", "calibrate", "debug", "bench"])
def test_commands_that_run_models_take_the_limit_flags(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "--max-memory" in text and "--max-work" in text


def test_the_check_is_fast_for_ordinary_nodes():
    """The estimate is shape arithmetic: a thousand checks of a convolution take well under a second."""
    model = onnx.load(EXAMPLES / "qcnn.onnx")
    session = refquant.Session(model)
    node = next(n for n in session._plan if n.op_type == "QLinearConv")
    shapes = {i.name: i for i in model.graph.initializer}
    inputs = [numpy_helper.to_array(shapes[n]) if n in shapes else np.zeros((1, 1, 28, 28), np.uint8) for n in node.proto.input]
    start = time.perf_counter()
    for _ in range(1000):
        budget.check(node, inputs, refquant.Limits())
    assert time.perf_counter() - start < 1.0
