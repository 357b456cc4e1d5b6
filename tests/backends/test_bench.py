"""`refquant bench --quick`: a smoke run. It checks the table's shape and content, never a time."""

from __future__ import annotations

import json

import pytest

from refquant.backends import bench
from refquant.cli import main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--quick", "--json", str(out / "bench.json")])
    return code, json.loads((out / "bench.json").read_text())


def test_quick_run_times_every_case_on_the_reference(quick_run, capsys):
    code, result = quick_run
    assert code == 0
    names = [row["case"] for row in result["rows"]]
    assert names == [case.name for case in bench.cases(bench.OPS)]
    assert result["backends"] == list(bench.DEFAULT_BACKENDS)
    for row in result["rows"]:
        assert row["ms"]["reference"] > 0 and row["calls"]["reference"] == 1
        for backend in result["backends"]:  # every engine has a time or a reason
            assert (row["ms"].get(backend) is not None) != (backend in row["notes"])


def test_quick_run_states_the_machine_memory_and_targets(quick_run):
    _, result = quick_run
    machine = result["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["blas"] and machine["date"]
    convolutions = [row for row in result["rows"] if row["op"] in ("QLinearConv", "ConvInteger")]
    assert len(convolutions) == 6
    for row in convolutions:
        assert 0 < row["peak_bytes"] and 0 < row["memory_limit_bytes"]
        assert "memory <=3x" in [t["target"] for t in row["targets"]]
    by_case = {row["case"]: row for row in result["rows"]}
    s8s8 = by_case["QLinearConv s8s8 1x64x56x56*64x64x3x3"]
    if s8s8["ms"].get("ort-cpu"):
        assert "faster than ort-cpu" in [t["target"] for t in s8s8["targets"]]
    assert result["fuzz"]["cases"] == len(bench.conformance.SUITE_OPS)
    assert result["fuzz"]["cases_per_s"] > 0


def test_table_has_one_line_per_case_and_the_ratio_columns():
    row = bench.Row("QLinearMatMul u8s8 256x512 @ 512x256", "QLinearMatMul", "u8s8",
                    ms={"reference": 1.0, "ort-cpu": 0.25, "onnx-reference": 50.0})  # fmt: skip
    result = bench.Result(bench.machine(), ["reference", "ort-cpu", "onnx-reference"], [row])
    lines = bench.table(result).splitlines()
    header = next(line for line in lines if line.startswith("| case"))
    assert "reference/ort-cpu" in header and "onnx-reference/reference" in header
    (body,) = [line for line in lines if line.startswith("| QLinearMatMul")]
    assert "| 4.00 |" in body and "| 50 |" in body
    assert row.targets() == [("<=3x ort-cpu", False), (">=40x onnx-reference", True)]


def test_unknown_op_is_refused(capsys):
    assert main(["bench", "--ops", "Conv"]) == 1
    assert "unknown bench case(s) ['Conv']" in capsys.readouterr().err
