"""What the benchmarks share in one run: the plan, the photos, the stack, pipeline outputs."""

from __future__ import annotations

from typing import Any

from bench.photos import Photo, phone_photos
from bench.plan import Plan
from bench.stackproc import StackProcess


class Context:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._photos: list[Photo] | None = None
        self._stack: StackProcess | None = None
        self.batch_outputs: list[bytes] | None = None  # basic_clean outputs, if already made
        self.pipeline_results: dict[str, Any] = {}  # floor's per-pipeline timings, if run

    def photos(self, count: int | None = None) -> list[Photo]:
        wanted = count or self.plan.images
        if self._photos is None or len(self._photos) < wanted:
            self._photos = phone_photos(max(wanted, self.plan.images))
        return self._photos[:wanted]

    def stack(self) -> StackProcess:
        if self._stack is None:
            self._stack = StackProcess.start()
        return self._stack

    def stop_stack(self) -> None:
        if self._stack is not None:
            self._stack.stop()
            self._stack = None
