"""Known backend divergences, as data, and the classifier of differing elements.

``divergences.toml`` (shipped beside this module; spec/ links to it) lists each divergence: the backends and operators it
concerns, the profile options under which refquant reproduces it, and the
evidence. An element where a backend differs from the spec profile is

- ``exact`` when the two agree bit for bit (NaN agreeing with NaN),
- ``explained:<name>`` when the reference, run with that divergence's
  options, computes exactly the backend's value at that element (a
  *profile* divergence), or when the graph holds a node that a *defect*
  divergence recognises (a backend bug whose output no arithmetic option
  reproduces, such as a wrong output shape),
- ``unexplained`` otherwise.

No tolerance is involved: an explanation is a reproduction or a recognised, documented defect.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from onnx import helper, numpy_helper

from .errors import RefquantError
from .profiles import SPEC, Profile, get_profile
from .window import same_total

__all__ = ["Divergence", "OutputReport", "load_divergences", "classify", "DIVERGENCES_FILE"]

DIVERGENCES_FILE = Path(__file__).with_name("divergences.toml")

#: what a divergence's options are replayed on (Divergence.graph)
GRAPHS = ("model", "backend-optimized")

#: how many of the largest differences a report keeps
WORST = 5


@dataclass(frozen=True)
class Divergence:
    """One known way a backend's arithmetic departs from the spec profile."""

    name: str
    summary: str
    backends: tuple[str, ...]
    ops: tuple[str, ...]
    options: Mapping[str, object]
    evidence: str
    #: defects only: conditions a node must meet, all of them (spec/backends.md lists the vocabulary):
    #: {attribute: [allowed values]}; "dilated" (true) asks for some dilation > 1; "same_padding"
    #: ([kinds]) for a spatial axis whose SAME padding is one of the kinds (see same_padding_kinds); the
    #: tensor conditions (TENSOR_CONDITIONS) map an input or output index ("0", "1", ...) to what it must satisfy
    when: Mapping[str, object] = field(default_factory=dict)
    #: the graph its options are replayed on: "model" (the one given) or "backend-optimized" (the graph
    #: the backend says it runs after its own rewrites, when the caller of classify() can supply it)
    graph: str = "model"

    @property
    def is_defect(self) -> bool:
        return not self.options

    def applies_to(self, backend: str, nodes: Iterable, values: Mapping[str, np.ndarray] | None = None) -> bool:
        """True if ``backend`` matches a pattern and some node is one of the ops (meeting ``when``).

        ``values`` (tensor name -> array: initializers, feeds, computed tensors) decides the tensor
        conditions; a tensor it lacks meets none.
        """
        if not any(fnmatch.fnmatchcase(backend, pattern) for pattern in self.backends):
            return False
        return any((not self.ops or node.op_type in self.ops) and self._meets(node, values or {}) for node in nodes)

    def _meets(self, node, values: Mapping[str, np.ndarray]) -> bool:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        for key, allowed in self.when.items():
            if key in TENSOR_CONDITIONS:
                if not all(_tensor_meets(node, values, key, int(index), want) for index, want in allowed.items()):
                    return False
                continue
            if key == "dilated":
                if bool(allowed) != any(d > 1 for d in attrs.get("dilations", [])):
                    return False
                continue
            if key == "same_padding":
                if not set(allowed) & same_padding_kinds(node, attrs, values):
                    return False
                continue
            value = attrs.get(key)
            value = value.decode() if isinstance(value, bytes) else value
            if value not in allowed:
                return False
        return True

    def profile(self, base: Profile = SPEC) -> Profile:
        return base.with_options(name=f"{base.name}+{self.name}", **self.options)


SAME_PADDING_KINDS = {"negative", "odd", "uneven"}


def same_padding_kinds(node, attrs: Mapping[str, object], values: Mapping[str, np.ndarray]) -> set[str]:
    """What ONNX's SAME padding looks like on a window's spatial axes (an empty set when it cannot tell).

    Per axis of extent D, stride s and kernel extent e = (k - 1) * d + 1, the SAME total is
    (ceil(D / s) - 1) * s + e - D: "negative" when it is below 0, "odd" when odd and positive,
    and "uneven" when s does not divide D.
    """
    x = values.get(node.input[0]) if node.input else None
    weight = values.get(node.input[1]) if len(node.input) > 1 else None
    kernel = attrs.get("kernel_shape") or (weight.shape[2:] if weight is not None else None)
    if x is None or kernel is None or np.ndim(x) != len(kernel) + 2:
        return set()
    ones = [1] * len(kernel)
    kinds = set()
    for size, k, s, d in zip(np.shape(x)[2:], kernel, attrs.get("strides") or ones, attrs.get("dilations") or ones):
        total = same_total(size, (k - 1) * d + 1, s)
        if total < 0:
            kinds.add("negative")
        elif total % 2:
            kinds.add("odd")
        if size % s:
            kinds.add("uneven")
    return kinds


def _outside(array: np.ndarray, bounds) -> bool:
    values = array.astype(np.float64)
    return bool(((values < bounds[0]) | (values > bounds[1])).any())


#: condition -> (the node's inputs or outputs, test of one tensor against the condition's value)
TENSOR_CONDITIONS = {
    "input_rank": ("input", lambda array, ranks: array.ndim in ranks),  # its rank is one of these
    "input_type": ("input", lambda array, names: array.dtype.name in names),  # its element type is one of these
    "input_min_size": ("input", lambda array, size: array.size >= size),  # it holds at least this many elements
    "input_outside": ("input", _outside),  # some element lies outside [low, high]
    "input_equals": ("input", lambda array, wanted: bool(np.isin(array.astype(np.float64), wanted).any())),
    "output_type": ("output", lambda array, names: array.dtype.name in names),
}


def _tensor_meets(node, values: Mapping[str, np.ndarray], condition: str, index: int, want) -> bool:
    side, test = TENSOR_CONDITIONS[condition]
    names = node.input if side == "input" else node.output
    array = values.get(names[index]) if index < len(names) and names[index] else None
    return array is not None and test(np.asarray(array), want)


def _profile_options(name: str | None, path: Path) -> dict:
    """The options by which the named profile departs from the spec profile ({} when no profile is named)."""
    if name is None:
        return {}
    try:
        profile = get_profile(name)
    except RefquantError:
        raise RefquantError(f"{path}: unknown profile {name!r}") from None
    return {
        f.name: getattr(profile, f.name)
        for f in fields(profile)
        if f.name != "name" and getattr(profile, f.name) != getattr(SPEC, f.name)
    }


def load_divergences(path: str | Path | None = None) -> list[Divergence]:
    """Parse the divergences file (default: the one shipped beside this module)."""
    path = Path(path or DIVERGENCES_FILE)
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8")).get("divergence", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RefquantError(f"cannot read divergences file '{path}': {exc}") from None
    divergences = []
    for index, entry in enumerate(entries):
        missing = {"name", "summary", "backends", "evidence"} - set(entry)
        if missing or sum(key in entry for key in ("options", "profile", "when")) != 1:
            raise RefquantError(
                f"{path}: divergence #{index + 1} lacks {sorted(missing) or 'exactly one of options / profile / when'}"
            )
        divergence = Divergence(
            name=entry["name"],
            summary=entry["summary"],
            backends=tuple(entry["backends"]),
            ops=tuple(entry.get("ops", ())),
            options=dict(entry["options"]) if "options" in entry else _profile_options(entry.get("profile"), path),
            evidence=entry["evidence"],
            when=dict(entry.get("when", {})),
            graph=entry.get("graph", "model"),
        )
        if divergence.graph not in GRAPHS or (divergence.graph != "model" and "when" in entry):
            raise RefquantError(
                f"{path}: divergence '{divergence.name}': graph must be one of {', '.join(GRAPHS)} "
                "(and a defect's is the model)"
            )
        divergence.profile()  # unknown option names or values fail here, with the option named
        for key, value in divergence.when.items():
            if key in TENSOR_CONDITIONS and not (isinstance(value, dict) and all(i.isdigit() for i in value)):
                raise RefquantError(
                    f"{path}: divergence '{divergence.name}': {key} must map tensor indices "
                    f"(\"0\", \"1\", ...) to values"
                )
        unknown = set(divergence.when.get("same_padding", ())) - SAME_PADDING_KINDS
        if unknown:
            raise RefquantError(
                f"{path}: divergence '{divergence.name}': same_padding kinds are {sorted(SAME_PADDING_KINDS)}, "
                f"not {sorted(unknown)}"
            )
        divergences.append(divergence)
    names = [d.name for d in divergences]
    if len(set(names)) != len(names):
        raise RefquantError(f"{path}: divergence names repeat: {sorted(n for n in names if names.count(n) > 1)}")
    return divergences


@dataclass
class OutputReport:
    """How one tensor of a backend compares with the reference."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    size: int = 0
    exact: int = 0
    explained: dict[str, int] = field(default_factory=dict)
    unexplained: int = 0
    max_abs_diff: float = 0.0
    worst: list[dict] = field(default_factory=list)
    problem: str | None = None  # a mismatch of dtype or shape: nothing element-wise to classify
    reference_error: str | None = None  # the spec profile refuses the input (e.g. NaN): no element is exact

    @property
    def status(self) -> str:
        if (self.problem and not self.explained) or self.unexplained:
            return "unexplained"
        return "explained" if self.explained else "exact"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "status": self.status,
            "size": self.size,
            "exact": self.exact,
            "explained": dict(self.explained),
            "unexplained": self.unexplained,
            "max_abs_diff": self.max_abs_diff,
            "worst": self.worst,
            "problem": self.problem,
            "reference_error": self.reference_error,
        }


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality of values, NaN equal to NaN."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 == b64) | (np.isnan(a64) & np.isnan(b64))


def classify(
    model,
    feeds: Mapping[str, np.ndarray],
    backend: str,
    outputs: Mapping[str, np.ndarray],
    *,
    reference: Mapping[str, np.ndarray] | None = None,
    divergences: list[Divergence] | None = None,
    optimized_model: Callable[[], object] | None = None,
) -> list[OutputReport]:
    """Compare a backend's ``outputs`` (tensor name -> array) with the spec reference, element by element.

    ``reference`` may pass precomputed spec-profile tensors (e.g. from ``Session.run_all``);
    emulating sessions run only when some element differs. When the spec profile refuses the
    input (NaN, say), no element is exact and only a divergence can explain the backend's values.
    ``optimized_model`` returns the graph the backend runs after its own rewrites (or None); it is
    called only if a ``graph = "backend-optimized"`` divergence is needed.
    """
    from .session import Session

    session = Session(model)
    reference_error = None
    if reference is None:
        try:
            reference = session.run_all(feeds)
        except RefquantError as exc:
            reference, reference_error = {}, str(exc)
    nodes = list(session.model.graph.node)
    known = {tensor.name: numpy_helper.to_array(tensor) for tensor in session.model.graph.initializer}
    known.update(feeds)
    known.update(reference)
    candidates = [d for d in (divergences if divergences is not None else load_divergences())
                  if d.applies_to(backend, nodes, known)]
    defect = next((d for d in candidates if d.is_defect), None)
    candidates = [d for d in candidates if not d.is_defect]
    emulated: dict[str, Mapping[str, np.ndarray] | None] = {}

    def emulation(divergence: Divergence):
        if divergence.name not in emulated:
            graph = session.model if divergence.graph == "model" else optimized_model and optimized_model()
            try:
                emulated[divergence.name] = None if graph is None else _run_all(graph, divergence.profile(), feeds)
            except RefquantError:
                emulated[divergence.name] = None
        return emulated[divergence.name]

    reports = []
    for name, got in outputs.items():
        got = np.asarray(got)
        want = reference.get(name)
        if want is None:
            report = OutputReport(name, str(got.dtype), tuple(got.shape), size=int(got.size))
            report.reference_error = reference_error or f"the reference computes no tensor '{name}'"
            want, differ = got, np.ones(got.shape, bool)
        else:
            report = OutputReport(name, str(want.dtype), tuple(want.shape), size=int(want.size))
            if got.dtype != want.dtype or got.shape != want.shape:
                report.problem = f"backend gives {got.dtype} {list(got.shape)}, reference {want.dtype} {list(want.shape)}"
                if defect is not None:
                    report.explained[defect.name] = int(got.size)
                reports.append(report)
                continue
            differ = np.asarray(~_same(got, want))  # an array, not a numpy scalar, for a 0-d tensor
        labels = np.full(want.shape, "", dtype=object)
        report.exact = int(want.size - differ.sum())
        for divergence in candidates:
            if not differ.any():
                break
            other = emulation(divergence)
            if other is None or name not in other:
                continue
            explained = differ & _same(got, other[name])
            if explained.any():
                labels[explained] = f"explained:{divergence.name}"
                report.explained[divergence.name] = int(explained.sum())
                differ &= ~explained
        if defect is not None and differ.any():
            labels[differ] = f"explained:{defect.name}"
            report.explained[defect.name] = int(differ.sum())
            differ[...] = False
        labels[differ] = "unexplained"
        report.unexplained = int(differ.sum())
        _note_worst(report, got, want, labels)
        reports.append(report)
    return reports


def _run_all(model, profile: Profile, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of ``model`` under ``profile``, fed the feeds it takes (a backend's rewritten graph
    may hold some inputs as initializers)."""
    from .session import Session

    session = Session(model, profile=profile)
    takes = {value.name for value in session.model.graph.input}
    return session.run_all({name: value for name, value in feeds.items() if name in takes})


def _note_worst(report: OutputReport, got: np.ndarray, want: np.ndarray, labels: np.ndarray) -> None:
    """Record max |diff| (in the tensor's own units: quantized steps for integer tensors) and the worst elements."""
    changed = labels != ""
    if not changed.any() or report.reference_error:
        return
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, ranked below as the worst difference
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN against a number is the worst kind of difference
    diff = np.where(changed, diff, -1.0)
    report.max_abs_diff = float(diff.max())
    # unexplained first, then by size of the difference
    order = np.lexsort((-diff.ravel(), (labels.ravel() != "unexplained")))[:WORST]
    for flat in order:
        if not changed.ravel()[flat]:
            break
        index = np.unravel_index(flat, want.shape)
        report.worst.append({
            "index": [int(i) for i in index],
            "reference": want[index].item() if want.dtype.kind in "iufb" else float(want[index]),
            "backend": got[index].item() if got.dtype.kind in "iufb" else float(got[index]),
            "class": labels[index],
        })
