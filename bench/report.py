"""Statistics and the printed table of a benchmark: plain Python, no Django."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p95(samples: Sequence[float]) -> float:
    """The 95th percentile by nearest rank (of 20 samples: the 19th smallest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Comparison:
    """One step: GuestGate's timings against the floor's, in milliseconds."""

    step: str
    guestgate: Sequence[float]
    floor: Sequence[float]
    target: float | None  # the highest allowed ratio of medians; None: for reference only

    @property
    def ratio(self) -> float:
        return median(self.guestgate) / median(self.floor)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "(ref)"
        return "PASS" if self.ratio <= self.target else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "n": len(self.guestgate),
            "guestgate_ms": {"median": median(self.guestgate), "p95": p95(self.guestgate)},
            "floor_ms": {"median": median(self.floor), "p95": p95(self.floor)},
            "ratio": self.ratio,
            "target": self.target,
            "verdict": self.verdict,
        }


def comparison_table(rows: Sequence[Comparison]) -> str:
    header = (
        "step",
        "n",
        "GuestGate med/p95 ms",
        "floor med/p95 ms",
        "ratio",
        "target",
        "verdict",
    )
    lines = [
        (
            row.step,
            str(len(row.guestgate)),
            f"{median(row.guestgate):.0f} / {p95(row.guestgate):.0f}",
            f"{median(row.floor):.0f} / {p95(row.floor):.0f}",
            f"{row.ratio:.2f}x",
            f"<= {row.target:.1f}x" if row.target is not None else "-",
            row.verdict,
        )
        for row in rows
    ]
    return _table([header, *lines])


def breakdown_table(title: str, marks: Mapping[str, Sequence[float]]) -> str:
    """Median and p95 of each mark (milliseconds since the step started), in order."""
    rows = [(f"{title}: ms since start", "median", "p95")]
    rows += [(name, f"{median(v):.0f}", f"{p95(v):.0f}") for name, v in marks.items() if v]
    return _table(rows)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    return _table([header, *rows])


@dataclass
class Outcome:
    """What one benchmark of the suite printed, and its verdicts (a MISS is not a failure)."""

    name: str
    tables: list[str] = field(default_factory=list)
    verdicts: list[tuple[str, str]] = field(default_factory=list)  # (what, PASS/MISS/...)

    def verdict(self, what: str, passed: bool) -> str:
        word = "PASS" if passed else "MISS"
        self.verdicts.append((what, word))
        return word


def verdict_table(outcomes: Sequence[Outcome]) -> str:
    rows = [(f"{o.name}: {what}", word) for o in outcomes for what, word in o.verdicts]
    return table(("verdicts", ""), rows)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        first, *rest = row
        cells = [first.ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])
