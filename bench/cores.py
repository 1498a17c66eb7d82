"""How many cores this shared machine actually gives right now: the same decoding work done in
this process alone, then split across worker processes, side by side."""

from __future__ import annotations

import io
import time
from concurrent.futures import ProcessPoolExecutor
from types import TracebackType

from PIL import Image

DECODES_PER_WORKER = 3


def _decode(data: bytes, times: int) -> None:
    for _ in range(times):
        Image.open(io.BytesIO(data)).load()


class CoreProbe:
    """``measure()`` returns sequential time / parallel time of the same decodes (1..workers)."""

    def __init__(self, workers: int, sample: bytes) -> None:
        self.workers, self.sample = workers, sample
        self._pool = ProcessPoolExecutor(max_workers=workers)
        list(self._pool.map(_decode, [sample] * workers, [1] * workers))  # start the workers

    def measure(self) -> float:
        started = time.perf_counter()
        _decode(self.sample, DECODES_PER_WORKER * self.workers)
        alone = time.perf_counter() - started
        started = time.perf_counter()
        jobs = [self.sample] * self.workers
        list(self._pool.map(_decode, jobs, [DECODES_PER_WORKER] * self.workers))
        split = time.perf_counter() - started
        return max(1.0, min(float(self.workers), alone / split))

    def __enter__(self) -> CoreProbe:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._pool.shutdown()
