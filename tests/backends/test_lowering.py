"""refquant.backends.lowering: lowering IR/opset without changing meaning, and the binding rewrites."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import defs, helper, numpy_helper

import refquant
from refquant.backends.base import TensorInfo
from refquant.backends.lowering import STEPS, Binding, Limits, LoweringError, default_opset, expose, lower
from tests.helpers import assert_bit_exact


def _model(nodes, inputs, outputs, initializers=(), *, opset, ir_version):
    graph = helper.make_graph(
        nodes,
        "lowering",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    inferred = onnx.shape_inference.infer_shapes(model)  # declares output shapes, as check_model(full_check) wants
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    return model


def _qdq_relu(opset=28, ir_version=14, *, q_attrs=None, element_type=T.UINT8, zero_point=3):
    """x -> QuantizeLinear -> DequantizeLinear -> Relu -> Cast: opsets 26-28 changed none of them for these types."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **(q_attrs or {})),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("Relu", ["d"], ["r"]),
        helper.make_node("Cast", ["r"], ["y"], to=T.FLOAT),
    ]
    initializers = [
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        helper.make_tensor("z", element_type, [], [zero_point]),
    ]
    return _model(
        nodes, [("x", T.FLOAT, [1, 2, 2, 4])], [("y", T.FLOAT)], initializers, opset=opset, ir_version=ir_version
    )


X = (np.arange(16, dtype=np.float32).reshape(1, 2, 2, 4) - 6) * np.float32(0.05)  # many x / 0.1 ties


def _opset_and_ir(model):
    return default_opset(model), model.ir_version


# -- lowering that keeps the meaning --------------------------------------------------------------------------


def test_model_within_limits_is_returned_unchanged():
    model = _qdq_relu(opset=21, ir_version=10)
    assert lower(model, Limits(ir_version=14, opset=28)) is model


def test_lowering_to_ir_13_opset_26_keeps_semantics_and_validity():
    model = _qdq_relu()
    lowered = lower(model, Limits(ir_version=13, opset=26))
    assert _opset_and_ir(lowered) == (26, 13)
    assert _opset_and_ir(model) == (28, 14), "the input model is not modified"
    onnx.checker.check_model(lowered, full_check=True)
    expected = refquant.Session(model).run(None, {"x": X})[0]
    assert_bit_exact(refquant.Session(lowered).run(None, {"x": X})[0], expected)


def test_lowering_stops_at_the_highest_opset_with_kernels():
    # onnxruntime's rule: an open-ended kernel [25, inf) serves only since_version 25
    kernels = {"QuantizeLinear": 25, "DequantizeLinear": 25, "Relu": 14, "Cast": 25}
    lowered = lower(_qdq_relu(), Limits(14, 28, lambda op, since: kernels.get(op) == since))
    assert _opset_and_ir(lowered) == (27, 14)


def test_neutral_new_attributes_are_dropped():
    model = _qdq_relu(opset=21, ir_version=10, q_attrs={"output_dtype": T.INT8, "block_size": 0}, element_type=T.INT8)
    lowered = lower(model, Limits(ir_version=9, opset=19))
    (quantize,) = [n for n in lowered.graph.node if n.op_type == "QuantizeLinear"]
    assert [a.name for a in quantize.attribute] == []
    onnx.checker.check_model(lowered, full_check=True)


def test_lowered_qdq_model_runs_on_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    lowered = lower(_qdq_relu(), Limits(ir_version=13, opset=26))
    session = ort.InferenceSession(lowered.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = refquant.Session(_qdq_relu()).run(None, {"x": X})[0]
    assert_bit_exact(session.run(None, {"x": X})[0], expected)


# -- refusals ---------------------------------------------------------------------------------------------------


def test_changed_semantics_is_refused_maxpool_ceil_mode():
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2], strides=[2], pads=[0, 1], ceil_mode=1)]
    model = _model(nodes, [("x", T.FLOAT, [1, 1, 5])], [("y", T.FLOAT)], opset=22, ir_version=10)
    with pytest.raises(LoweringError, match=r"MaxPool.*ceil_mode=1.*opset 22"):
        lower(model, Limits(ir_version=10, opset=21))
    attributes = model.graph.node[0].attribute
    attributes.remove(next(a for a in attributes if a.name == "ceil_mode"))  # without it the change does not matter
    assert _opset_and_ir(lower(model, Limits(ir_version=10, opset=21))) == (21, 10)


def test_attribute_without_equivalent_is_refused():
    def space_to_depth(mode):
        node = helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2, mode=mode)
        return _model([node], [("x", T.FLOAT, [1, 1, 2, 2])], [("y", T.FLOAT)], opset=28, ir_version=14)

    assert _opset_and_ir(lower(space_to_depth("DCR"), Limits(ir_version=14, opset=27))) == (27, 14)
    with pytest.raises(LoweringError, match="mode='CRD' has no equivalent before opset 28"):
        lower(space_to_depth("CRD"), Limits(ir_version=14, opset=27))


def test_version_without_rule_is_refused():
    nodes = [helper.make_node("Mod", ["a", "b"], ["y"], fmod=1)]
    model = _model(nodes, [("a", T.FLOAT, [2]), ("b", T.FLOAT, [2])], [("y", T.FLOAT)], opset=28, ir_version=14)
    with pytest.raises(LoweringError, match="Mod changed at opset 28 and no lowering rule"):
        lower(model, Limits(ir_version=14, opset=27))


def test_type_missing_at_the_older_version_is_refused():
    model = _qdq_relu(opset=21, ir_version=10, element_type=T.INT4, zero_point=1)
    with pytest.raises(LoweringError, match=r"tensor\(int4\), which version 19 does not accept"):
        lower(model, Limits(ir_version=10, opset=20))


def test_ir_version_limit_caps_the_opset():
    # IR 12 holds opsets up to 24; int2 arrived with QuantizeLinear-25
    lowered = lower(_qdq_relu(opset=25, ir_version=13), Limits(ir_version=12, opset=28))
    assert _opset_and_ir(lowered) == (24, 12)
    with pytest.raises(LoweringError, match=r"tensor\(int2\), which version 24 does not accept"):
        lower(_qdq_relu(opset=25, ir_version=13, element_type=T.INT2, zero_point=0), Limits(ir_version=12, opset=28))


def test_op_absent_at_the_target_opset_is_refused():
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])]
    model = _model(
        nodes, [("x", T.FLOAT, [2])], [("y", T.UINT8), ("s", T.FLOAT), ("z", T.UINT8)], opset=11, ir_version=6
    )
    with pytest.raises(LoweringError, match="DynamicQuantizeLinear does not exist at opset 10"):
        lower(model, Limits(ir_version=6, opset=10))


# -- the rule table agrees with onnx's schemas -----------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(STEPS))
def test_every_step_is_an_onnx_version_and_its_neutral_values_are_the_defaults(key):
    op_type, since = key
    schema = defs.get_schema(op_type, since, "")
    assert schema.since_version == since, f"{op_type} has no version {since}"
    previous = defs.get_schema(op_type, since - 1, "") if since > 1 else None
    for name, neutral in STEPS[key].neutral.items():
        assert name in schema.attributes, f"{op_type}-{since} has no attribute {name}"
        assert previous is None or name not in previous.attributes, f"{name} is not new in {op_type}-{since}"
        if not callable(neutral) and schema.attributes[name].default_value.name:
            default = helper.get_attribute_value(schema.attributes[name].default_value)
            assert (default.decode() if isinstance(default, bytes) else default) == neutral


# -- rewrites for bindings ----------------------------------------------------------------------------------------


def test_expose_adds_typed_intermediates_once():
    model = _qdq_relu(opset=21, ir_version=10)
    infos = {"q": TensorInfo(T.UINT8, None), "d": TensorInfo(T.FLOAT, None)}
    exposed = expose(model, ["q", "d", "y", "unknown"], infos)
    assert [o.name for o in exposed.graph.output] == ["y", "q", "d"]
    assert [o.name for o in model.graph.output] == ["y"]


def test_binding_inlines_unfeedable_inputs_and_restores_outputs_exactly():
    nodes = [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Relu", ["f"], ["g"])]
    model = _model(
        nodes,
        [("x", T.FLOAT8E4M3FN, [4]), ("f", T.FLOAT, [2])],
        [("y", T.FLOAT8E4M3FN), ("g", T.FLOAT)],
        opset=21,
        ir_version=10,
    )
    binding = Binding.of(model)
    assert list(binding.inline) == ["x"]
    assert binding.carriers == {"y__as_float": ("y", np.dtype(ml_dtypes.float8_e4m3fn))}
    x = np.array([448, -0.001953125, 3.5, -240], ml_dtypes.float8_e4m3fn)
    inlined, feeds = binding.split({"x": x, "f": np.ones(2, np.float32)})
    assert list(feeds) == ["f"] and [i.name for i in inlined.graph.input] == ["f"]
    assert_bit_exact(numpy_helper.to_array(inlined.graph.initializer[-1]), x)
    restored = binding.restore([("y__as_float", x.astype(np.float32)), ("g", np.ones(2, np.float32))])
    assert_bit_exact(restored["y"], x)
