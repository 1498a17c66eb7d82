"""Powertools Logger, Tracer and Metrics shared by every layer (no layer imports a handler)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer

F = TypeVar("F", bound=Callable[..., Any])

logger = Logger(service="pixelbatch")
metrics = Metrics(namespace="PixelBatch", service="pixelbatch")


class LazyTracer:
    """Powertools' Tracer, created on the first traced call rather than at import: creating
    one imports the X-Ray SDK, a third of a bare cold start, which a function should pay
    only once it has a request to trace. Decorating works as with Tracer itself."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._tracer: Tracer | None = None
        self._lock = threading.Lock()

    @property
    def tracer(self) -> Tracer:
        with self._lock:
            if self._tracer is None:
                self._tracer = Tracer(**self._options)
            return self._tracer

    def capture_lambda_handler(self, handler: F) -> F:
        return self._on_first_call(handler, lambda fn: self.tracer.capture_lambda_handler(fn))

    def capture_method(self, method: F) -> F:
        return self._on_first_call(method, lambda fn: self.tracer.capture_method(fn))

    @staticmethod
    def _on_first_call(fn: F, decorate: Callable[[F], Callable[..., Any]]) -> F:
        traced: list[Callable[..., Any]] = []

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not traced:
                traced.append(decorate(fn))
            return traced[0](*args, **kwargs)

        return call  # type: ignore[return-value]


tracer = LazyTracer(service="pixelbatch")
