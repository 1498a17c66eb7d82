"""Order statistics and side-by-side timing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


@dataclass(frozen=True)
class Summary:
    """Median of a sample and its spread: min..max for a few repeats, else p10..p90."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if len(values) <= 5:
            return cls(median(values), min(values), max(values), len(values))
        return cls(median(values), percentile(values, 10), percentile(values, 90), len(values))

    @property
    def spread_label(self) -> str:
        return "min–max" if self.count <= 5 else "p10–p90"

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        return (
            f"{self.median:.{digits}f}{unit} ({self.spread_label} {self.low:.{digits}f}–"
            f"{self.high:.{digits}f}, n={self.count})"
        )


def timed(action: Callable[[], object]) -> float:
    """Seconds taken by ``action()``."""
    return clocked(action)[0]


def clocked(action: Callable[[], T]) -> tuple[float, T]:
    """Seconds taken by ``action()``, and what it returned."""
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def rotated(measures: Sequence[Callable[[], float]], repeats: int) -> list[list[float]]:
    """Run the measurements in turn, forward then backward (ABBA), so drift hits all alike;
    returns each one's results."""
    results: list[list[float]] = [[] for _ in measures]
    for repeat in range(repeats):
        order = range(len(measures)) if repeat % 2 == 0 else reversed(range(len(measures)))
        for index in order:
            results[index].append(measures[index]())
    return results


def interleaved(
    first: Callable[[], float], second: Callable[[], float], repeats: int
) -> tuple[list[float], list[float]]:
    """Two measurements in ABBA order."""
    a, b = rotated([first, second], repeats)
    return a, b
