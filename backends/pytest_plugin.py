"""pytest plugin: a ``quant_backend`` fixture over the available backends, and ``assert_conforms``.

Installed with refquant (entry point ``pytest11``), so in any test suite::

    from refquant.backends.pytest_plugin import assert_conforms

    def test_my_model(quant_backend):
        assert_conforms("model.onnx", {"x": x}, quant_backend)

runs once per available backend (``--quant-backends a,b`` narrows the list), and fails with the
classified differences when the backend differs from refquant's reference unexplained.
Nothing is imported from an engine until a test asks for the fixture.
"""

from __future__ import annotations

import pytest

__all__ = ["assert_conforms"]


def pytest_addoption(parser):
    parser.addoption(
        "--quant-backends",
        default=None,
        help="refquant: comma-separated backends for the quant_backend fixture (default: every available one)",
    )


def pytest_generate_tests(metafunc):
    if "quant_backend" not in metafunc.fixturenames:
        return
    import refquant.backends as backends

    chosen = metafunc.config.getoption("--quant-backends")
    if chosen:
        names = [n.strip() for n in chosen.split(",") if n.strip()]
    else:
        names = [n for n, status in backends.available().items() if status and n != "reference"]
    metafunc.parametrize("quant_backend", names, indirect=True)


@pytest.fixture
def quant_backend(request):
    """The adapter of one available backend (skips when it cannot run here)."""
    import refquant.backends as backends

    try:
        return backends.get(request.param)
    except backends.BackendUnavailable as exc:
        pytest.skip(str(exc))


def assert_conforms(model, feeds, backend, *, all_tensors: bool = False) -> None:
    """Fail unless every element of the backend's outputs is exact or explained; skip if unsupported."""
    from .conformance import compare
    from .report import comparison

    name = backend if isinstance(backend, str) else backend.name
    (result,) = compare(model, feeds, [name], all_tensors=all_tensors)
    if result.verdict == "unsupported":
        pytest.skip(f"{name}: {result.message}")
    if result.verdict in ("unexplained", "error", "unavailable"):
        pytest.fail(f"{name} does not conform to refquant's reference:\n{comparison([result], all_tensors=all_tensors)}")
