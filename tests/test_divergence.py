"""The divergence classifier: each rule recognises its case and rejects a near miss."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import numpy_helper

import refquant
from refquant.divergence import classify, load_divergences
from refquant.errors import RefquantError

from .helpers import single_node_model

# acc = 50 * 41 = 2050 with multiplier 0.02f * 0.05f / 0.1f:
# float32: 2050f * 0.01f = 20.500001907 -> 21;  float64: 20.499999542 -> 20
SCALES = dict(a_s=np.float32(0.02), b_s=np.float32(0.05), y_s=np.float32(0.1))


def qmatmul_tie_case():
    init = {
        "a_s": np.array(SCALES["a_s"]), "a_zp": np.array(0, np.uint8),
        "b": np.array([[41, 2]], np.int8), "b_s": np.array(SCALES["b_s"]), "b_zp": np.array(0, np.int8),
        "y_s": np.array(SCALES["y_s"]), "y_zp": np.array(0, np.uint8),
    }
    inputs = {"a": (T.UINT8, [2, 1]), **init}
    model = single_node_model("QLinearMatMul", inputs, {"y": T.UINT8}, opset=13, initializers=init)
    return model, {"a": np.array([[50], [3]], np.uint8)}


def test_premise_float32_and_float64_requantization_differ():
    model, feeds = qmatmul_tie_case()
    spec = refquant.Session(model).run(None, feeds)[0]
    ort_like = refquant.Session(model, profile="onnxruntime").run(None, feeds)[0]
    assert spec[0, 0] == 20 and ort_like[0, 0] == 21
    assert (spec.ravel()[1:] == ort_like.ravel()[1:]).all()


def test_exact_agreement_is_exact():
    model, feeds = qmatmul_tie_case()
    spec = refquant.Session(model).run(None, feeds)[0]
    (report,) = classify(model, feeds, "ort-cpu", {"y": spec})
    assert report.status == "exact" and report.exact == spec.size and report.max_abs_diff == 0


def test_float32_requantization_explains_ort_tie():
    model, feeds = qmatmul_tie_case()
    backend = refquant.Session(model, profile="onnxruntime").run(None, feeds)[0]
    (report,) = classify(model, feeds, "ort-cpu", {"y": backend})
    assert report.status == "explained"
    assert report.explained == {"float32-requantization": 1} and report.unexplained == 0
    assert report.max_abs_diff == 1.0
    assert report.worst == [{"index": [0, 0], "reference": 20, "backend": 21, "class": "explained:float32-requantization"}]


def test_near_miss_off_by_one_elsewhere_is_unexplained():
    model, feeds = qmatmul_tie_case()
    backend = refquant.Session(model, profile="onnxruntime").run(None, feeds)[0].copy()
    backend[1, 1] += 1  # not a tie: no profile reproduces it
    (report,) = classify(model, feeds, "ort-cpu", {"y": backend})
    assert report.status == "unexplained" and report.unexplained == 1
    assert report.worst[0]["class"] == "unexplained" and report.worst[0]["index"] == [1, 1]


def test_divergence_applies_only_to_its_backends():
    model, feeds = qmatmul_tie_case()
    backend = refquant.Session(model, profile="onnxruntime").run(None, feeds)[0]
    (report,) = classify(model, feeds, "openvino", {"y": backend})
    assert report.status == "unexplained"


def test_int32_cast_explains_onnx_reference_wrap_and_rejects_near_miss():
    x = np.array([1e10, 1.0], np.float32)
    init = {"s": np.array(1, np.float32), "zp": np.array(0, np.uint8)}
    model = single_node_model("QuantizeLinear", {"x": x, **init}, {"y": T.UINT8}, opset=13, initializers=init)
    feeds = {"x": x}
    (report,) = classify(model, feeds, "onnx-reference", {"y": np.array([0, 1], np.uint8)})
    assert report.explained == {"int32-indefinite-cast": 1} and report.status == "explained"
    (report,) = classify(model, feeds, "onnx-reference", {"y": np.array([7, 1], np.uint8)})
    assert report.status == "unexplained"


def test_nan_refused_by_spec_is_explained_only_by_a_divergence():
    x = np.array([np.nan, 2.0], np.float32)
    init = {"s": np.array(1, np.float32), "zp": np.array(5, np.uint8)}
    model = single_node_model("QuantizeLinear", {"x": x, **init}, {"y": T.UINT8}, opset=13, initializers=init)
    (report,) = classify(model, {"x": x}, "ort-cpu", {"y": np.array([0, 7], np.uint8)})
    assert report.reference_error and "NaN" in report.reference_error
    assert report.explained == {"nan-to-qmin": 2} and report.exact == 0
    (report,) = classify(model, {"x": x}, "ort-cpu", {"y": np.array([5, 7], np.uint8)})  # NaN -> zero point
    assert report.unexplained == 1


def test_dtype_or_shape_mismatch_is_a_problem():
    model, feeds = qmatmul_tie_case()
    (report,) = classify(model, feeds, "ort-cpu", {"y": np.zeros((2, 2), np.int8)})
    assert report.status == "unexplained" and "int8" in report.problem


def test_shipped_divergences_load_and_are_valid():
    divergences = load_divergences()
    assert {d.name for d in divergences} >= {"float32-requantization", "int32-indefinite-cast", "nan-to-qmin"}
    for d in divergences:
        assert d.evidence and d.summary and d.backends
        d.profile()  # options are real profile options


@pytest.mark.parametrize(
    "text, match",
    [
        ('[[divergence]]\nname = "x"\n', "lacks"),
        ('[[divergence]]\nname="a"\nsummary="s"\nbackends=["b"]\nevidence="e"\noptions={ rounding = "up" }\n', "unknown profile option"),
        ('[[divergence]]\nname="a"\nsummary="s"\nbackends=["b"]\nevidence="e"\noptions={}\n' * 2, "repeat"),
        ("not toml [", "cannot read divergences file"),
    ],
)
def test_bad_divergence_files(tmp_path, text, match):
    path = tmp_path / "d.toml"
    path.write_text(text)
    with pytest.raises(RefquantError, match=match):
        load_divergences(path)


def _maxpool_model(dilations):
    model = single_node_model(
        "MaxPool", {"x": (T.UINT8, [1, 1, 7, 6])}, {"y": T.UINT8}, opset=13,
        attrs=dict(auto_pad="SAME_UPPER", kernel_shape=[3, 3], strides=[1, 1], dilations=dilations),
    )
    return model, {"x": np.arange(42, dtype=np.uint8).reshape(1, 1, 7, 6)}


def test_defect_rule_recognises_its_node_and_rejects_near_misses():
    model, feeds = _maxpool_model([1, 2])
    assert refquant.Session(model).run(None, feeds)[0].shape == (1, 1, 7, 6)  # ceil(input / stride)
    wrong_shape = np.zeros((1, 1, 7, 4), np.uint8)  # what onnxruntime 1.32 returns
    (report,) = classify(model, feeds, "ort-cpu", {"y": wrong_shape})
    assert report.status == "explained" and report.explained == {"ort-same-padding-ignores-dilation": 28}
    (report,) = classify(model, feeds, "openvino", {"y": wrong_shape})
    assert report.status == "unexplained"
    undilated, feeds = _maxpool_model([1, 1])
    (report,) = classify(undilated, feeds, "ort-cpu", {"y": wrong_shape})
    assert report.status == "unexplained"


def test_a_divergence_may_name_a_whole_profile(tmp_path):
    (combined,) = [d for d in load_divergences() if d.name == "onnxruntime-arithmetic"]
    assert combined.options["requantize_precision"] == "float32" and "name" not in combined.options
    assert combined.profile().requantize_precision == "float32"
    path = tmp_path / "d.toml"
    path.write_text('[[divergence]]\nname="a"\nsummary="s"\nbackends=["b"]\nevidence="e"\nprofile="nonesuch"\n')
    with pytest.raises(RefquantError, match="unknown profile 'nonesuch'"):
        load_divergences(path)


def test_a_backend_optimized_graph_divergence_replays_the_graph_the_backend_gives():
    """The tie case's QLinearMatMul, with the backend's "rewritten" graph a QLinearMatMul whose y_scale
    is doubled: its 2050 * 0.005 -> 10 (spec 20) is explained only by replaying that graph."""
    model, feeds = qmatmul_tie_case()
    rewritten, _ = qmatmul_tie_case()
    rewritten.graph.initializer[5].CopyFrom(numpy_helper.from_array(np.array(SCALES["y_s"] * 2), "y_s"))
    backend = refquant.Session(rewritten, profile="onnxruntime").run(None, feeds)[0]
    (graph_divergence,) = [d for d in load_divergences() if d.graph == "backend-optimized"]
    calls = []

    def optimized():
        calls.append(1)
        return rewritten

    (report,) = classify(model, feeds, "ort-cpu-opt", {"y": backend}, optimized_model=optimized)
    assert report.explained[graph_divergence.name] >= 1
    assert report.unexplained == 0 and calls == [1]
    (report,) = classify(model, feeds, "ort-cpu-opt", {"y": backend})  # no graph given: nothing to replay
    assert report.status == "unexplained"
    (report,) = classify(model, feeds, "ort-cpu", {"y": backend}, optimized_model=optimized)  # not its backend
    assert report.status == "unexplained"
    spec = refquant.Session(model).run(None, feeds)[0]
    classify(model, feeds, "ort-cpu-opt", {"y": spec}, optimized_model=optimized)
    assert calls == [1]  # nothing differs: the graph is never asked for


def test_graph_must_be_known_and_defects_replay_nothing(tmp_path):
    path = tmp_path / "d.toml"
    entry = '[[divergence]]\nname="a"\nsummary="s"\nbackends=["b"]\nevidence="e"\n'
    path.write_text(entry + 'options={}\ngraph="compiled"\n')
    with pytest.raises(RefquantError, match="graph must be one of model, backend-optimized"):
        load_divergences(path)
    path.write_text(entry + 'when={ ceil_mode = [1] }\ngraph="backend-optimized"\n')
    with pytest.raises(RefquantError, match="a defect's is the model"):
        load_divergences(path)
