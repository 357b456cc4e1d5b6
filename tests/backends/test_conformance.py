"""compare / check / fuzz / replay, reproducers, the CLI commands and the pytest plugin."""

from __future__ import annotations

import importlib
import json

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import refquant
from refquant.backends import conformance, report
from refquant.backends.base import BackendError, UnsupportedOnBackend
from refquant.backends.reference import Reference
from refquant.cli import commands as cli


pytest_plugins = ["pytester"]


def two_node_model():
    """x -> QuantizeLinear -> q -> DequantizeLinear -> y, with the tie case x / 0.5 = 2.5 + zp 3."""
    init = {"s": np.array(0.5, np.float32), "zp": np.array(3, np.uint8)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="quant"),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dequant"),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", T.FLOAT, [4])],
        [helper.make_tensor_value_info("y", T.FLOAT, [4])],
        [numpy_helper.from_array(v, k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return model, {"x": np.array([1.25, 0.0, -3.0, 2.0], np.float32)}


class Shifty(Reference):
    """A fake engine: refquant, with the first element of every integer tensor one step off and of every
    float tensor 0.5 off (an unexplained bug)."""

    def __init__(self, name="shifty"):
        super().__init__(name=name)

    def _execute(self, prepared, feeds):
        out = {}
        for name, value in super()._execute(prepared, feeds).items():
            value = value.copy()
            if value.size and value.dtype.kind in "iuf":
                value.flat[0] += 1 if value.dtype.kind in "iu" else 0.5
            out[name] = value
        return out


@pytest.fixture
def shifty(monkeypatch):
    import refquant.backends as backends

    real_create = backends.create
    monkeypatch.setattr(
        conformance, "create", lambda name, **o: Shifty(name) if name.startswith("shifty") else real_create(name, **o)
    )
    return "shifty"


def test_compare_exact_on_the_reference_itself():
    model, feeds = two_node_model()
    (result,) = conformance.compare(model, feeds, ["reference"])
    assert result.verdict == "exact" and [r.name for r in result.reports] == ["y"]


def test_compare_all_tensors_names_the_first_unexplained_tensor(shifty):
    model, feeds = two_node_model()
    (result,) = conformance.compare(model, feeds, [shifty], all_tensors=True)
    assert result.verdict == "unexplained"
    assert [r.name for r in result.reports] == ["q", "y"]  # computation order
    assert result.first_unexplained().name == "q"
    q_report = result.reports[0]
    assert q_report.unexplained == 1 and q_report.max_abs_diff == 1.0 and q_report.worst[0]["index"] == [0]
    text = report.comparison([result], all_tensors=True)
    assert "first tensor diverging unexplained: q" in text and "UNEXPLAINED 1" in text


def test_unknown_backend_is_an_error_result():
    model, feeds = two_node_model()
    (result,) = conformance.compare(model, feeds, ["nonesuch"])
    assert result.verdict == "error" and "unknown backend" in result.message


@pytest.mark.parametrize(
    "dtype",
    # float8_e5m2's kind is "f", the other ml_dtypes' "V": a reproducer saved with it once could not be read
    [np.uint8, np.float32, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.int4, ml_dtypes.bfloat16],
)
def test_arrays_round_trip_with_their_dtype(tmp_path, dtype):
    array = np.array([[1, -2], [3, 0.5]], np.float32).astype(dtype)
    conformance.save_arrays(tmp_path / "a.npz", {"t": array})
    back = conformance.load_arrays(tmp_path / "a.npz")["t"]
    assert back.dtype == array.dtype and back.shape == array.shape
    assert (back.view(np.uint8) == array.view(np.uint8)).all()


def test_reproducer_save_and_replay(tmp_path, shifty):
    model, feeds = two_node_model()
    results = conformance.compare(model, feeds, [shifty, "reference"])
    case = conformance.ConformanceCase("qdq-demo", "QDQ", model, feeds)
    path = conformance.save_reproducer(tmp_path, case, results)
    assert {p.name for p in path.iterdir()} == {"model.onnx", "inputs.npz", "outputs_shifty.npz", "outputs_reference.npz", "report.json"}
    saved = json.loads((path / "report.json").read_text())
    assert saved["backends"] == ["shifty", "reference"] and saved["results"][0]["verdict"] == "unexplained"
    replayed = conformance.replay(path)
    assert [r.verdict for r in replayed] == ["unexplained", "exact"]
    assert cli.main(["replay", str(path), "--backends", "reference"]) == 0


def test_the_two_case_types_have_names_that_say_what_they_are_and_the_old_name_still_imports():
    import dataclasses

    from refquant.backends import strategies

    assert strategies.DrawnModel._fields == ("model", "feeds")
    assert [f.name for f in dataclasses.fields(conformance.ConformanceCase)] == ["name", "op", "model", "feeds"]
    drawn = next(iter(conformance.generated_suite(["QLinearMatMul"], per_op=1, seed=0)))
    assert type(drawn) is conformance.ConformanceCase and drawn.op == "QLinearMatMul"
    assert "Case" not in conformance.__all__ and "Case" not in strategies.__all__
    with pytest.warns(DeprecationWarning, match=r"conformance\.Case is now ConformanceCase"):
        assert conformance.Case is conformance.ConformanceCase
    with pytest.warns(DeprecationWarning, match=r"strategies\.Case is now DrawnModel"):
        assert strategies.Case is strategies.DrawnModel
    with pytest.raises(AttributeError, match="has no attribute 'Cases'"):
        conformance.Cases  # noqa: B018


def test_replay_of_a_non_reproducer_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["replay", str(tmp_path)]) == 1
    assert "is not a refquant reproducer" in capsys.readouterr().err


def test_generated_suite_is_deterministic():
    first = [c.model.SerializeToString() for c in conformance.generated_suite(["QLinearMatMul"], per_op=3, seed=5)]
    again = [c.model.SerializeToString() for c in conformance.generated_suite(["QLinearMatMul"], per_op=3, seed=5)]
    assert first == again and len(first) == 3


def test_generated_suite_ignores_literals_of_imported_modules(tmp_path, monkeypatch):
    """hypothesis draws literals harvested from imported local source; the seeded suite must not."""
    from hypothesis import given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    literals = set(range(700_001, 700_601, 3))
    (tmp_path / "literal_laden.py").write_text(f"LITERALS = {sorted(literals)!r}\n")
    numbers = st.lists(st.integers(0, 10**6), min_size=8, max_size=8)
    before = conformance.draw_cases(numbers, 60, seed=3)
    monkeypatch.syspath_prepend(tmp_path)
    importlib.import_module("literal_laden")

    unguarded = []

    @hypothesis_seed(3)
    @settings(max_examples=60, database=None)
    @given(numbers)
    def draw(example):
        unguarded.append(example)

    draw()
    assert literals & set(sum(unguarded, [])), "hypothesis no longer harvests literals: this test checks nothing"
    assert conformance.draw_cases(numbers, 60, seed=3) == before


def test_check_counts_every_case_per_backend_and_op(monkeypatch):
    cases = list(conformance.node_case_suite())[:4]
    monkeypatch.setattr(conformance, "node_case_suite", lambda: iter(cases))
    rows, failures = conformance.check(["reference", "onnx-reference"], per_op=1, seed=0)
    by_backend = {}
    for row in rows:
        assert row.cases == row.exact + row.explained + row.attributed + row.unexplained + row.unsupported + row.errors
        by_backend[row.backend] = by_backend.get(row.backend, 0) + row.cases
    assert by_backend["reference"] == 4 + len(conformance.SUITE_OPS)
    assert all(r.exact == r.cases for r in rows if r.backend == "reference")
    table = report.check_table(rows)
    header = ["backend", "op", "cases", "exact", "explained", "attributed", "unexplained", "unsupported", "errors"]
    assert table.splitlines()[0].split() == header  # attributed shown even where it is zero everywhere


def test_streamed_draws_are_draw_cases_own_and_stop_early():
    """generated_suite draws one case at a time (iter_draws): the same cases, in the same order, as drawing
    the whole list first, however slowly they are taken; closing it early ends the drawing thread."""
    import threading
    import time

    strategy = conformance.suite_strata("QLinearConv")[0][2]
    listed = [c.model.SerializeToString() for c in conformance.draw_cases(strategy, 4, seed=2)]
    streamed = []
    for case in conformance.iter_draws(strategy, 4, seed=2):
        time.sleep(0.2)  # a slow consumer: the drawing waits, it does not change
        streamed.append(case.model.SerializeToString())
    assert streamed == listed
    draws = conformance.generated_suite(per_op=20, seed=0)
    next(draws)
    draws.close()
    assert [t.name for t in threading.enumerate() if t.name == "refquant-draw"] == []


def test_check_stops_cleanly_at_its_time_limit(monkeypatch):
    cases = list(conformance.node_case_suite())[:4]
    monkeypatch.setattr(conformance, "node_case_suite", lambda: iter(cases))
    run = conformance.check(["reference"], per_op=1, seed=0, time_limit=0)
    assert (run.ran, run.stopped, run.rows, run.failures) == (0, True, [], [])
    assert run.planned == 4 + len(conformance.SUITE_OPS)
    complete = conformance.check(["reference"], per_op=1, seed=0, time_limit=3600)
    assert (complete.ran, complete.stopped) == (complete.planned, False)
    rows, failures = complete  # unpacks as before
    assert sum(r.cases for r in rows) == complete.ran


def test_cli_check_and_fuzz_take_a_time_limit(tmp_path, capsys, monkeypatch):
    cases = list(conformance.node_case_suite())[:2]
    monkeypatch.setattr(conformance, "node_case_suite", lambda: iter(cases))
    assert cli.main(["check", "--backends", "reference", "--per-op", "1", "--time-limit", "0.000001"]) == 0
    assert "stopped at --time-limit 1e-06 s: ran 0 of 10 cases" in capsys.readouterr().out
    assert cli.main(["fuzz", "--ops", "QuantizeLinear", "--backends", "reference", "--examples", "1000",
                     "--time-limit", "0.000001", "--out", str(tmp_path)]) == 0
    assert "stopped at --time-limit 1e-06 s: ran 0 example(s)" in capsys.readouterr().out
    assert cli.main(["check", "--time-limit", "-1"]) == 1
    assert "--time-limit must be a positive number" in capsys.readouterr().err


def test_fuzz_shrinks_and_saves_an_unexplained_mismatch(tmp_path, shifty):
    saved = conformance.fuzz(["QuantizeLinear"], [shifty], examples=5, seed=1, out=tmp_path)
    assert len(saved) == 1
    shrunk = json.loads((saved[0] / "report.json").read_text())
    assert shrunk["results"][0]["verdict"] == "unexplained"


def test_cli_compare_and_check_exit_status(tmp_path, capsys, shifty, monkeypatch):
    import onnx

    model, feeds = two_node_model()
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", feeds["x"])
    monkeypatch.setattr("refquant.backends.names", lambda: ["reference", "shifty"])
    assert cli.main(["compare", str(tmp_path / "m.onnx"), "--backends", "reference", "--input", f"x={tmp_path / 'x.npy'}"]) == 0
    assert cli.main(["compare", str(tmp_path / "m.onnx"), "--backends", "shifty", "--all-tensors",
                     "--json", str(tmp_path / "c.json")]) == 1
    out = capsys.readouterr().out
    assert "shifty: unexplained" in out and json.loads((tmp_path / "c.json").read_text())[0]["verdict"] == "unexplained"
    assert cli.main(["compare", str(tmp_path / "m.onnx"), "--backends", "warp-drive"]) == 1
    assert "unknown backend(s) ['warp-drive']" in capsys.readouterr().err


class _Refuser(Reference):
    """A fake engine that refuses every model (a documented limit)."""

    def _execute(self, prepared, feeds):
        raise UnsupportedOnBackend(self.name, "no kernel for this op at this opset")


class _Crasher(Reference):
    """A fake engine that crashes on a model it claims to run."""

    def _execute(self, prepared, feeds):
        raise BackendError(self.name, "run failed: ValueError: operands could not be broadcast")


def test_cli_compare_exit_status_tells_a_refusal_from_a_crash(tmp_path, capsys, monkeypatch):
    """A backend that refuses the model is unsupported, with its reason, and exits 0; one that fails on a
    model it does not refuse is an error and exits 1, as an unexplained difference does."""
    import onnx

    fakes = {"refuser": _Refuser, "crasher": _Crasher}
    real_create = conformance.create
    monkeypatch.setattr(
        conformance, "create", lambda name, **o: fakes[name](name=name) if name in fakes else real_create(name, **o)
    )
    monkeypatch.setattr("refquant.backends.names", lambda: ["reference", *fakes])
    model, _ = two_node_model()
    onnx.save(model, tmp_path / "m.onnx")
    argv = ["compare", str(tmp_path / "m.onnx"), "--json", str(tmp_path / "c.json"), "--backends"]
    assert cli.main([*argv, "reference,refuser"]) == 0
    assert "refuser: unsupported (no kernel for this op at this opset)" in capsys.readouterr().out
    refused = json.loads((tmp_path / "c.json").read_text())[1]
    assert refused["status"] == "unsupported" and refused["message"] == "no kernel for this op at this opset"
    assert cli.main([*argv, "reference,crasher"]) == 1
    assert "crasher: error (run failed: ValueError" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())[1]["verdict"] == "error"


def _dequantize_model(opset: int):
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s"], ["y"])], "dq",
        [helper.make_tensor_value_info("q", T.UINT8, [3])], [helper.make_tensor_value_info("y", T.FLOAT, [3])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "s")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_onnx_reference_refuses_an_op_older_than_its_implementations_and_fails_on_the_rest():
    """onnx.reference implements DequantizeLinear from opset 19: at 13 it refuses (unsupported, saying so);
    an exception of its op code on a model it loads stays an error."""
    from refquant.backends.onnx_reference import OnnxReference

    backend = OnnxReference()
    q = np.array([0, 4, 255], np.uint8)
    assert backend.run(_dequantize_model(19), {"q": q})["y"].tolist() == [0.0, 2.0, 127.5]
    with pytest.raises(UnsupportedOnBackend) as refused:
        backend.run(_dequantize_model(13), {"q": q})
    assert "no DequantizeLinear for ai.onnx opset 13; it implements versions 19" in refused.value.message
    (result,) = conformance.compare(_dequantize_model(13), {"q": q}, ["onnx-reference"])
    assert result.status == "unsupported" and "DequantizeLinear" in result.message
    crash = backend._error(ValueError("operands could not be broadcast together"), "run failed")
    assert type(crash) is BackendError and crash.message == "run failed: ValueError: operands could not be broadcast together"
    other_runtime_error = backend._error(RuntimeError("Unable to run the node"), "run failed")
    assert type(other_runtime_error) is BackendError
    unknown = backend._error(NotImplementedError("Node type 'Foo' from domain 'com.x' is unknown"), "cannot load the model")
    assert type(unknown) is UnsupportedOnBackend


def test_onnxruntime_refuses_an_op_it_does_not_know():
    """onnxruntime's "is not a registered function/op" (status FAIL) is a refusal like NOT_IMPLEMENTED."""
    import refquant.backends as backends

    if not backends.available()["ort-cpu"]:
        pytest.skip("onnxruntime is not available")
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"], domain="com.microsoft")], "unknown",
        [helper.make_tensor_value_info("x", T.FLOAT, [2])], [helper.make_tensor_value_info("y", T.FLOAT, [2])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    with pytest.raises(UnsupportedOnBackend, match="com.microsoft:NoSuchOp.* is not a registered function/op"):
        backends.get("ort-cpu").run(model, {"x": np.zeros(2, np.float32)})


def test_pytest_plugin_fixture_and_assert_conforms(pytester):
    model, feeds = two_node_model()
    import onnx

    onnx.save(model, pytester.path / "m.onnx")
    np.save(pytester.path / "x.npy", feeds["x"])
    pytester.makepyfile(
        """
        import numpy as np
        from refquant.backends.pytest_plugin import assert_conforms

        def test_model(quant_backend):
            assert_conforms("m.onnx", {"x": np.load("x.npy")}, quant_backend)
        """
    )
    result = pytester.runpytest("--quant-backends", "reference,onnx-reference", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_node_reproducer_isolates_the_first_unexplained_node(tmp_path, shifty, monkeypatch, capsys):
    import onnx

    model, feeds = two_node_model()
    case = conformance.node_reproducer(model, feeds, "y")
    assert [n.op_type for n in case.model.graph.node] == ["DequantizeLinear"]
    assert list(case.feeds) == ["q"] and case.feeds["q"].dtype == np.uint8
    (y,) = refquant.Session(case.model).run(None, case.feeds)
    np.testing.assert_array_equal(y, refquant.Session(model).run(None, feeds)[0])
    onnx.save(model, tmp_path / "m.onnx")
    monkeypatch.setattr("refquant.backends.names", lambda: ["reference", "shifty", "shifty2"])
    assert cli.main(["compare", str(tmp_path / "m.onnx"), "--backends", "shifty,shifty2", "--all-tensors",
                     "--save", str(tmp_path / "repro")]) == 1
    saved = list((tmp_path / "repro").iterdir())  # both diverge first at q: one reproducer holds both
    assert len(saved) == 1 and saved[0].name.startswith("quantizelinear-")
    assert "saved the node computing q (shifty, shifty2)" in capsys.readouterr().out
    assert json.loads((saved[0] / "report.json").read_text())["backends"] == ["shifty", "shifty2"]
    assert cli.main(["compare", str(tmp_path / "m.onnx"), "--backends", "shifty", "--save", str(tmp_path / "r2")]) == 1
    assert "needs --all-tensors" in capsys.readouterr().err and not (tmp_path / "r2").exists()
