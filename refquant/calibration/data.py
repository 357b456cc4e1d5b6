"""Where calibration data comes from, which tensors it calibrates, and who runs the model.

Data: an object with ``get_next()`` (onnxruntime's CalibrationDataReader
protocol: a feed dict per call, None or an empty dict at the end), an
iterable of feed dicts, a directory of ``.npz`` (one batch each, keyed by
input name) or ``.npy`` files (one batch each of a one-input model), or one
``.npz`` whose arrays hold the batches along axis 0. Files are read under
refquant's file rule (regular files only, no pickles: refquant.files), so a
FIFO named ``*.npz`` is refused instead of blocking.

A method that needs two passes replays the data: lists, directories and
files are read again; a reader or iterator is read once and its feeds are
kept in a temporary directory (never the activations).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import ModelProto, TensorProto

from ..errors import FeedError, ModelError
from ..files import load_npy, load_npz
from .core import CalibrationError

__all__ = ["select_tensors", "FeedSource", "feed_source", "default_profile", "default_runner", "DATA_HELP"]

#: the --data help of the commands that read batches from a path
DATA_HELP = (
    "a directory of .npz files (one batch each, arrays keyed by input name) or of .npy files (one-input "
    "models), or one .npz whose arrays stack the batches along a new first axis"
)

#: element types onnxruntime's calibrators calibrate
CALIBRATED_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16)

Runner = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


# ----------------------------------------------------------------------------
# tensors
# ----------------------------------------------------------------------------


def _typed_values(model: ModelProto) -> dict[str, int]:
    """{tensor name: element type} after ONNX shape inference, as onnxruntime sees them."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception as exc:  # onnx raises its own InferenceError and plain ValueError
        raise ModelError(f"shape inference failed: {exc}") from None
    graph = inferred.graph
    types = {}
    for info in itertools.chain(graph.value_info, graph.output, graph.input):
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


def select_tensors(model: ModelProto, op_types: Sequence[str] | None = None) -> list[str]:
    """The tensors onnxruntime's calibrators pick, in graph order.

    Every input and output of a node (of ``op_types``, when given) that shape
    inference types as float or float16 and that is not an initializer.
    """
    types = _typed_values(model)
    initializers = {t.name for t in model.graph.initializer}
    chosen: dict[str, None] = {}
    for node in model.graph.node:
        if op_types and node.op_type not in op_types:
            continue
        for name in itertools.chain(node.input, node.output):
            if types.get(name) in CALIBRATED_TYPES and name not in initializers:
                chosen[name] = None
    return list(chosen)


# ----------------------------------------------------------------------------
# feeds
# ----------------------------------------------------------------------------


class FeedSource:
    """Feed dicts, batch after batch, as many passes as asked.

    ``passes(count)`` yields one iterator per pass; ``length`` is the number
    of batches, known for lists and files (None otherwise, until the first
    pass has ended).
    """

    def __init__(
        self, first: Callable[[], Iterator[dict]], again: Callable[[], Iterator[dict]] | None, length: int | None
    ):
        self._first = first
        self._again = again
        self.length = length

    def passes(self, count: int) -> Iterator[Iterator[dict]]:
        if count <= 1 or self._again is not None:
            yield self._counted(self._first())
            for _ in range(count - 1):
                yield self._counted(self._again())
            return
        with tempfile.TemporaryDirectory(prefix="refquant-feeds-") as spill:
            yield self._counted(_spilling(self._first(), Path(spill)))
            for _ in range(count - 1):
                yield self._counted(_unspilled(sorted(Path(spill).glob("*.npz"))))

    def _counted(self, batches: Iterator[dict]) -> Iterator[dict]:
        count = 0
        for count, feeds in enumerate(batches, 1):
            yield feeds
        self.length = count


def _spilling(batches: Iterator[dict], directory: Path) -> Iterator[dict]:
    """Yield the batches, saving each as arrays arr_0 (the input names), arr_1, ... (any name is safe)."""
    for index, feeds in enumerate(batches):
        np.savez(directory / f"{index:08d}.npz", np.array(list(feeds), dtype=str), *map(np.asarray, feeds.values()))
        yield feeds


def _unspilled(paths: Sequence[Path]) -> Iterator[dict]:
    for path in paths:
        with np.load(path) as archive:
            names = archive["arr_0"].tolist()
            yield {name: archive[f"arr_{i}"] for i, name in enumerate(names, 1)}


def _checked(feeds, index: int) -> dict:
    if not isinstance(feeds, Mapping):
        raise FeedError(f"batch {index + 1} is a {type(feeds).__name__}, not a dict of input name to array")
    return dict(feeds)


def _reader_batches(reader) -> Iterator[dict]:
    for index in itertools.count():
        feeds = reader.get_next()
        if not feeds:  # onnxruntime stops at None and at an empty dict
            return
        yield _checked(feeds, index)


def _iterable_batches(items: Iterable) -> Iterator[dict]:
    for index, feeds in enumerate(items):
        yield _checked(feeds, index)


def _npz_batches(paths: Sequence[Path]) -> Iterator[dict]:
    for path in paths:
        yield load_npz(path, "calibration batch", FeedError)


def _npy_batches(paths: Sequence[Path], input_name: str) -> Iterator[dict]:
    for path in paths:
        yield {input_name: load_npy(path, "calibration batch", FeedError)}


def _stacked_batches(path: Path) -> tuple[Callable[[], Iterator[dict]], int]:
    arrays = load_npz(path, "calibration data", FeedError)
    lengths = {name: array.shape[0] if array.ndim else -1 for name, array in arrays.items()}
    if not lengths or len(set(lengths.values())) != 1 or -1 in lengths.values():
        raise FeedError(f"'{path}': every array must hold the batches along axis 0, in equal number; got {lengths}")

    def batches():
        arrays = load_npz(path, "calibration data", FeedError)
        for index in range(next(iter(lengths.values()))):
            yield {name: array[index] for name, array in arrays.items()}

    return batches, next(iter(lengths.values()))


def feed_source(data, input_names: Sequence[str]) -> FeedSource:
    """A :class:`FeedSource` for any supported kind of calibration data."""
    if hasattr(data, "get_next") and callable(data.get_next):
        return FeedSource(lambda: _reader_batches(data), None, None)
    if isinstance(data, (str, os.PathLike)):
        return _path_source(Path(data), input_names)
    if isinstance(data, Mapping):
        raise FeedError("data is a single feed dict; pass a list of feed dicts (one per batch)")
    if isinstance(data, (np.ndarray, bytes)):
        raise FeedError(f"data must be feed dicts, a reader or a path, not a {type(data).__name__}")
    if isinstance(data, Iterable):
        if iter(data) is data:  # an iterator: one pass only
            return FeedSource(lambda: _iterable_batches(data), None, None)
        length = len(data) if hasattr(data, "__len__") else None
        return FeedSource(lambda: _iterable_batches(data), lambda: _iterable_batches(data), length)
    raise FeedError(
        f"data must be a CalibrationDataReader, an iterable of feed dicts or a path, not {type(data).__name__}"
    )


def _path_source(path: Path, input_names: Sequence[str]) -> FeedSource:
    if path.is_dir():
        npz, npy = sorted(path.glob("*.npz")), sorted(path.glob("*.npy"))
        if npz and npy:
            raise FeedError(f"'{path}' mixes .npz and .npy files; use one kind")
        if npz:
            return FeedSource(lambda: _npz_batches(npz), lambda: _npz_batches(npz), len(npz))
        if npy:
            if len(input_names) != 1:
                raise FeedError(
                    f"'{path}' holds .npy files, which feed a one-input model; this model has inputs "
                    f"{list(input_names)}: save each batch as an .npz keyed by input name"
                )
            return FeedSource(
                lambda: _npy_batches(npy, input_names[0]), lambda: _npy_batches(npy, input_names[0]), len(npy)
            )
        raise FeedError(f"'{path}' holds no .npz or .npy files")
    if path.suffix == ".npz" and path.is_file():
        batches, count = _stacked_batches(path)
        return FeedSource(batches, batches, count)
    if not path.exists():
        raise FeedError(f"calibration data '{path}' does not exist")
    raise FeedError(f"calibration data '{path}' is neither a directory nor an .npz file")


# ----------------------------------------------------------------------------
# runners
# ----------------------------------------------------------------------------


#: the interpreter profile of the default runner for each compat mode (spec/calibration.md, "The forward pass")
DEFAULT_PROFILES = {"onnxruntime": "onnxruntime", "fixed": "spec"}


def default_profile(compat: str) -> str:
    """The interpreter profile that computes the activations by default under ``compat``.

    "onnxruntime": the ``onnxruntime`` profile (MLAS's float kernels replayed), so
    the activations are the ones onnxruntime's calibrators see; "fixed": ``spec``.
    """
    try:
        return DEFAULT_PROFILES[compat]
    except (KeyError, TypeError):
        raise CalibrationError(f"compat must be one of {tuple(DEFAULT_PROFILES)}, got {compat!r}") from None


def default_runner(model: ModelProto, profile="onnxruntime") -> Runner:
    """Run the float model on the refquant interpreter under ``profile`` and return every tensor."""
    from ..session import Session

    session = Session(model, profile=profile)
    return session.run_all


def activations_of(runner: Runner, feeds: Mapping[str, np.ndarray], tensors: Sequence[str], batch: int) -> dict:
    """The ``tensors`` among the runner's outputs for one batch."""
    values = runner(feeds)
    missing = [name for name in tensors if name not in values]
    if missing:
        raise CalibrationError(
            f"batch {batch}: the runner returned no value for {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
            "it must return every tensor to calibrate"
        )
    return {name: values[name] for name in tensors}
