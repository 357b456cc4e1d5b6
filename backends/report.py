"""Plain-text rendering of conformance results for the command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .conformance import BackendResult, CheckRow

__all__ = ["check_table", "unsupported_summary", "comparison", "Progress"]

_COLUMNS = ("cases", "exact", "explained", "attributed", "unexplained", "unsupported", "errors")


def check_table(rows: Sequence[CheckRow]) -> str:
    """backend x op: cases, exact, explained, attributed, unexplained, unsupported, errors; then a total per
    backend. attributed: cases where a documented defect, which refquant does not reproduce, accounts for
    every remaining difference (a weaker verdict than explained, always shown)."""
    columns = _COLUMNS
    header = ("backend", "op") + columns
    body = [(r.backend, r.op) + tuple(str(getattr(r, c)) for c in columns) for r in rows]
    totals: dict[str, list[int]] = {}
    for r in rows:
        sums = totals.setdefault(r.backend, [0] * len(columns))
        for i, column in enumerate(columns):
            sums[i] += getattr(r, column)
    body += [(backend, "(all)") + tuple(map(str, sums)) for backend, sums in totals.items()]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row):
        return "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *map(line, body), *unsupported_summary(rows)])


def unsupported_summary(rows: Sequence[CheckRow], top: int = 3) -> list[str]:
    """Per backend: the cases that ran (exact, explained, unexplained: coverage) against the unsupported
    ones (no coverage), and the most frequent reasons for the latter."""
    backends: dict[str, list] = {}
    for r in rows:
        ran_unsupported_reasons = backends.setdefault(r.backend, [0, 0, {}])
        ran_unsupported_reasons[0] += r.cases - r.unsupported - r.errors
        ran_unsupported_reasons[1] += r.unsupported
        for reason, count in getattr(r, "unsupported_reasons", {}).items():
            key = f"{r.op}: {reason}" if not reason.startswith(r.op) else reason
            ran_unsupported_reasons[2][key] = ran_unsupported_reasons[2].get(key, 0) + count
    lines = ["", "ran (coverage) / unsupported (no coverage), per backend:"]
    for backend, (ran, unsupported, reasons) in backends.items():
        lines.append(f"  {backend}: ran {ran}, unsupported {unsupported}")
        for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:top]:
            lines.append(f"    {count:4d}  {reason}")
    return lines


def comparison(results: Sequence[BackendResult], *, all_tensors: bool = False) -> str:
    """Per backend, per tensor: dtype, shape, max |diff| (quantized steps for integer tensors), counts per class."""
    lines = []
    for result in results:
        lines.append(f"{result.backend}: {result.verdict}" + (f" ({result.message})" if result.message else ""))
        for report in result.reports:
            counts = [f"exact {report.exact}"] + [f"explained:{k} {v}" for k, v in report.explained.items()]
            counts += [f"attributed:{k} {v}" for k, v in report.attributed.items()]
            if report.unexplained:
                counts.append(f"UNEXPLAINED {report.unexplained}")
            differing = report.size - report.exact
            lines.append(
                f"  {report.name}: {report.dtype} {list(report.shape)}  differing {differing}  "
                f"max|diff| {report.max_abs_diff:g}  " + ", ".join(counts)
            )
            for note in (report.problem, report.reference_error):
                if note:
                    lines.append(f"    note: {note}")
            for worst in report.worst:
                lines.append(
                    f"    at {worst['index']}: reference {worst['reference']}  backend {worst['backend']}  {worst['class']}"
                )
        if all_tensors:
            first = result.first_unexplained()
            if first is not None:
                lines.append(f"  first tensor diverging unexplained: {first.name}")
    return "\n".join(lines)


class Progress:
    """A one-line progress bar on stderr (silent when stderr is not a terminal, except the final line)."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def __call__(self, done: int, total: int | None = None, what: str = "") -> None:
        if not self.live and (total is None or done < total):
            return
        if total:
            filled = int(30 * done / total)
            text = f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {what}"
        else:
            text = f"{self.label}: {done} {what}"
        end = "\n" if total and done >= total else ""
        self.stream.write("\r" + text[:120].ljust(120) + end if self.live else text + "\n")
        self.stream.flush()
